#include "eval_metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float score;
    uint8_t positive;
} roc_pair;

/* Descending by score; the order inside a tie does not matter (a tie is one step of the curve). */
static int roc_pair_cmp(const void *a, const void *b)
{
    float x = ((const roc_pair *)a)->score, y = ((const roc_pair *)b)->score;
    return x > y ? -1 : x < y ? 1 : 0;
}

void eval_roc_free(eval_roc *r)
{
    if (!r) return;
    free(r->fpr);
    free(r->tpr);
    free(r->threshold);
    memset(r, 0, sizeof *r);
    r->auc = NAN;
}

/* Allocates n points (threshold too when with_threshold). */
static cnn_status roc_alloc(eval_roc *r, int64_t n, int with_threshold)
{
    r->fpr = malloc((size_t)n * sizeof(double));
    r->tpr = malloc((size_t)n * sizeof(double));
    r->threshold = with_threshold ? malloc((size_t)n * sizeof(double)) : NULL;
    if (!r->fpr || !r->tpr || (with_threshold && !r->threshold)) {
        eval_roc_free(r);
        return CNN_ERR_NOMEM;
    }
    return CNN_OK;
}

cnn_status eval_roc_compute(const float *score, const uint8_t *positive, int64_t n, int reduce, eval_roc *out,
                            char *err, size_t err_bytes)
{
    memset(out, 0, sizeof *out);
    out->auc = NAN;
    if (n < 1) return cnn_err(err, err_bytes, CNN_ERR_ARG, "roc: no samples");
    if ((uint64_t)n > SIZE_MAX / sizeof(roc_pair))
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "roc: %lld samples are too many", (long long)n);
    for (int64_t i = 0; i < n; i++) {
        if (isnan(score[i])) return cnn_err(err, err_bytes, CNN_ERR_ARG, "roc: score %lld is NaN", (long long)i);
        if (positive[i]) out->n_pos++;
    }
    out->n_neg = n - out->n_pos;
    if (!out->n_pos || !out->n_neg) return CNN_OK;
    /* The area is summed exactly in integers: at most 2 * n_pos * n_neg. */
    if ((double)out->n_pos * (double)out->n_neg > 4e18)
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "roc: %lld samples are too many", (long long)n);

    roc_pair *pairs = malloc((size_t)n * sizeof *pairs);
    int64_t *fps = malloc((size_t)(n + 1) * sizeof *fps);
    int64_t *tps = malloc((size_t)(n + 1) * sizeof *tps);
    float *thr = malloc((size_t)(n + 1) * sizeof *thr);
    cnn_status st = CNN_OK;
    if (!pairs || !fps || !tps || !thr) {
        st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "roc: out of memory");
        goto out;
    }
    for (int64_t i = 0; i < n; i++) pairs[i] = (roc_pair){score[i], positive[i] ? 1 : 0};
    qsort(pairs, (size_t)n, sizeof *pairs, roc_pair_cmp);

    /* One point at the end of each group of tied scores (sklearn's _binary_clf_curve). */
    int64_t m = 0, tp = 0, fp = 0, area2 = 0;
    for (int64_t i = 0; i < n; i++) {
        if (pairs[i].positive) tp++;
        else fp++;
        if (i + 1 < n && pairs[i + 1].score == pairs[i].score) continue;
        int64_t prev_fp = m ? fps[m - 1] : 0, prev_tp = m ? tps[m - 1] : 0;
        area2 += (fp - prev_fp) * (tp + prev_tp);
        fps[m] = fp;
        tps[m] = tp;
        thr[m] = pairs[i].score;
        m++;
    }
    out->auc = (double)area2 / (2.0 * (double)out->n_pos * (double)out->n_neg);

    /* drop_intermediate: keep the ends and every point where the step changes. */
    int64_t kept = m;
    if (reduce && m > 2) {
        kept = 1;
        for (int64_t i = 1; i + 1 < m; i++) {
            if (fps[i - 1] - 2 * fps[i] + fps[i + 1] == 0 && tps[i - 1] - 2 * tps[i] + tps[i + 1] == 0) continue;
            fps[kept] = fps[i];
            tps[kept] = tps[i];
            thr[kept] = thr[i];
            kept++;
        }
        fps[kept] = fps[m - 1];
        tps[kept] = tps[m - 1];
        thr[kept] = thr[m - 1];
        kept++;
    }
    double auc = out->auc;
    if (roc_alloc(out, kept + 1, 1) != CNN_OK) {
        st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "roc: out of memory");
        goto out;
    }
    out->auc = auc;
    out->n_points = (int)(kept + 1);
    out->fpr[0] = out->tpr[0] = 0.0;
    out->threshold[0] = INFINITY;
    for (int64_t i = 0; i < kept; i++) {
        out->fpr[i + 1] = (double)fps[i] / (double)out->n_neg;
        out->tpr[i + 1] = (double)tps[i] / (double)out->n_pos;
        out->threshold[i + 1] = thr[i];
    }
out:
    free(pairs);
    free(fps);
    free(tps);
    free(thr);
    return st;
}

double eval_softmax_row(const float *logits, int k, int label, float *prob)
{
    double mx = -INFINITY;
    for (int c = 0; c < k; c++)
        if (logits[c] > mx) mx = logits[c];
    double sum = 0.0;
    for (int c = 0; c < k; c++) sum += exp((double)logits[c] - mx);
    double lse = mx + log(sum);
    for (int c = 0; c < k; c++) prob[c] = (float)exp((double)logits[c] - lse);
    if (!isfinite(lse)) return NAN;
    return lse - (double)logits[label];
}

static int double_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* TPR of curve r at FPR x: the lowest and highest TPR the piecewise-linear curve takes there. *pos
 * walks the curve as x increases over successive calls. */
static void roc_tpr_at(const eval_roc *r, double x, int *pos, double *lo, double *hi)
{
    int i = *pos;
    while (i + 1 < r->n_points && r->fpr[i + 1] < x) i++;
    *pos = i;
    if (r->fpr[i] == x) { /* only at x = 0 on the first point */
        int j = i;
        while (j + 1 < r->n_points && r->fpr[j + 1] == x) j++;
        *lo = r->tpr[i];
        *hi = r->tpr[j];
        return;
    }
    int j = i + 1;
    if (j >= r->n_points) { /* x beyond the last point: cannot happen, every curve ends at fpr 1 */
        *lo = *hi = r->tpr[i];
        return;
    }
    if (r->fpr[j] == x) {
        int e = j;
        while (e + 1 < r->n_points && r->fpr[e + 1] == x) e++;
        *lo = r->tpr[j];
        *hi = r->tpr[e];
        return;
    }
    double t = (x - r->fpr[i]) / (r->fpr[j] - r->fpr[i]);
    *lo = *hi = r->tpr[i] + (r->tpr[j] - r->tpr[i]) * t;
}

/* The macro-averaged curve over the classes with a ROC (see the header). */
static cnn_status macro_curve(eval_metrics *m, char *err, size_t err_bytes)
{
    int64_t n_all = 0;
    for (int c = 0; c < m->n_classes; c++)
        if (!isnan(m->roc[c].auc)) n_all += m->roc[c].n_points;
    double *grid = malloc((size_t)n_all * sizeof *grid);
    double *lo_sum = calloc((size_t)n_all, sizeof *lo_sum);
    double *hi_sum = calloc((size_t)n_all, sizeof *hi_sum);
    cnn_status st = CNN_OK;
    if (!grid || !lo_sum || !hi_sum) {
        st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "macro roc: out of memory");
        goto out;
    }
    int64_t n_grid = 0;
    for (int c = 0; c < m->n_classes; c++)
        if (!isnan(m->roc[c].auc))
            for (int i = 0; i < m->roc[c].n_points; i++) grid[n_grid++] = m->roc[c].fpr[i];
    qsort(grid, (size_t)n_grid, sizeof *grid, double_cmp);
    int64_t n_unique = 0;
    for (int64_t g = 0; g < n_grid; g++)
        if (!n_unique || grid[g] != grid[n_unique - 1]) grid[n_unique++] = grid[g];
    double auc_sum = 0.0;
    for (int c = 0; c < m->n_classes; c++) {
        const eval_roc *r = &m->roc[c];
        if (isnan(r->auc)) continue;
        auc_sum += r->auc;
        int pos = 0;
        for (int64_t g = 0; g < n_unique; g++) {
            double lo, hi;
            roc_tpr_at(r, grid[g], &pos, &lo, &hi);
            lo_sum[g] += lo;
            hi_sum[g] += hi;
        }
    }
    int64_t n_points = 0;
    for (int64_t g = 0; g < n_unique; g++) n_points += hi_sum[g] != lo_sum[g] ? 2 : 1;
    if (roc_alloc(&m->macro, n_points, 0) != CNN_OK) {
        st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "macro roc: out of memory");
        goto out;
    }
    double n_cls = (double)m->n_auc_classes;
    int p = 0;
    for (int64_t g = 0; g < n_unique; g++) {
        m->macro.fpr[p] = grid[g];
        m->macro.tpr[p++] = lo_sum[g] / n_cls;
        if (hi_sum[g] != lo_sum[g]) {
            m->macro.fpr[p] = grid[g];
            m->macro.tpr[p++] = hi_sum[g] / n_cls;
        }
    }
    m->macro.n_points = p;
    m->macro.auc = auc_sum / n_cls;
out:
    free(grid);
    free(lo_sum);
    free(hi_sum);
    return st;
}

/* Accuracy, confusion matrix and per-class precision/recall/F1. */
static void count_predictions(const float *score, const int *label, int64_t n, int k, eval_metrics *m)
{
    int64_t n_top1 = 0, n_topk = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *s = score + i * k;
        int y = label[i], best = 0, rank = 0;
        for (int c = 1; c < k; c++)
            if (s[c] > s[best]) best = c;
        for (int c = 0; c < k; c++)
            if (s[c] > s[y] || (s[c] == s[y] && c < y)) rank++;
        n_top1 += best == y;
        n_topk += rank < m->top_k;
        m->confusion[(int64_t)y * k + best]++;
        m->support[y]++;
        m->n_predicted[best]++;
    }
    m->top1 = (double)n_top1 / (double)n;
    m->topk = (double)n_topk / (double)n;
    for (int c = 0; c < k; c++) {
        int64_t tp = m->confusion[(int64_t)c * k + c];
        int64_t fp = m->n_predicted[c] - tp, fn = m->support[c] - tp;
        m->precision[c] = m->n_predicted[c] ? (double)tp / (double)m->n_predicted[c] : 0.0;
        m->recall[c] = m->support[c] ? (double)tp / (double)m->support[c] : 0.0;
        m->f1[c] = tp ? 2.0 * (double)tp / (double)(2 * tp + fp + fn) : 0.0;
        m->weighted_precision += (double)m->support[c] * m->precision[c];
        m->weighted_recall += (double)m->support[c] * m->recall[c];
        m->weighted_f1 += (double)m->support[c] * m->f1[c];
        if (!m->support[c] && !m->n_predicted[c]) continue;
        m->n_avg_classes++;
        m->macro_precision += m->precision[c];
        m->macro_recall += m->recall[c];
        m->macro_f1 += m->f1[c];
    }
    m->macro_precision /= m->n_avg_classes;
    m->macro_recall /= m->n_avg_classes;
    m->macro_f1 /= m->n_avg_classes;
    m->weighted_precision /= (double)n;
    m->weighted_recall /= (double)n;
    m->weighted_f1 /= (double)n;
}

cnn_status eval_metrics_compute(const float *score, const int *label, const double *nll, int64_t n, int k,
                                int reduce_curves, eval_metrics *out, char *err, size_t err_bytes)
{
    memset(out, 0, sizeof *out);
    out->micro.auc = out->macro.auc = NAN;
    if (n < 1 || k < 1) return cnn_err(err, err_bytes, CNN_ERR_ARG, "metrics: %lld samples, %d classes", (long long)n, k);
    if ((uint64_t)n > SIZE_MAX / sizeof(float) / (uint64_t)k / 2)
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "metrics: %lld x %d scores are too many", (long long)n, k);
    for (int64_t i = 0; i < n; i++)
        if (label[i] < 0 || label[i] >= k)
            return cnn_err(err, err_bytes, CNN_ERR_ARG, "metrics: label %d of sample %lld is not in 0..%d", label[i],
                           (long long)i, k - 1);
    for (int64_t i = 0; i < n * k; i++)
        if (isnan(score[i]))
            return cnn_err(err, err_bytes, CNN_ERR_ARG, "metrics: score %lld of sample %lld is NaN",
                           (long long)(i % k), (long long)(i / k));

    cnn_status st = CNN_OK;
    out->n_classes = k;
    out->n_samples = n;
    out->top_k = k < 5 ? k : 5;
    out->confusion = calloc((size_t)k * (size_t)k, sizeof *out->confusion);
    out->support = calloc((size_t)k, sizeof *out->support);
    out->n_predicted = calloc((size_t)k, sizeof *out->n_predicted);
    out->precision = calloc((size_t)k, sizeof(double));
    out->recall = calloc((size_t)k, sizeof(double));
    out->f1 = calloc((size_t)k, sizeof(double));
    out->roc = calloc((size_t)k, sizeof *out->roc);
    float *column = malloc((size_t)n * sizeof *column);
    uint8_t *positive = malloc((size_t)n * (size_t)k);
    if (!out->confusion || !out->support || !out->n_predicted || !out->precision || !out->recall || !out->f1 ||
        !out->roc || !column || !positive) {
        st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "metrics: out of memory");
        goto out;
    }
    count_predictions(score, label, n, k, out);
    out->mean_nll = NAN;
    if (nll) {
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++) sum += nll[i];
        out->mean_nll = sum / (double)n;
    }

    for (int c = 0; c < k; c++) {
        for (int64_t i = 0; i < n; i++) {
            column[i] = score[i * k + c];
            positive[i] = label[i] == c;
        }
        if ((st = eval_roc_compute(column, positive, n, reduce_curves, &out->roc[c], err, err_bytes)) != CNN_OK)
            goto out;
        if (!isnan(out->roc[c].auc)) out->n_auc_classes++;
    }
    memset(positive, 0, (size_t)n * (size_t)k);
    for (int64_t i = 0; i < n; i++) positive[i * k + label[i]] = 1;
    if ((st = eval_roc_compute(score, positive, n * k, reduce_curves, &out->micro, err, err_bytes)) != CNN_OK) goto out;
    if (out->n_auc_classes && (st = macro_curve(out, err, err_bytes)) != CNN_OK) goto out;
out:
    free(column);
    free(positive);
    if (st != CNN_OK) eval_metrics_free(out);
    return st;
}

void eval_metrics_free(eval_metrics *m)
{
    if (!m) return;
    if (m->roc)
        for (int c = 0; c < m->n_classes; c++) eval_roc_free(&m->roc[c]);
    eval_roc_free(&m->micro);
    eval_roc_free(&m->macro);
    free(m->confusion);
    free(m->support);
    free(m->n_predicted);
    free(m->precision);
    free(m->recall);
    free(m->f1);
    free(m->roc);
    memset(m, 0, sizeof *m);
}
