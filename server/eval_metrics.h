/* Classification metrics of `cnnserve eval`, pure math (no I/O): from an N x K score matrix
 * (class probabilities) and the true class of each sample, top-1/top-k accuracy, mean
 * cross-entropy, per-class precision/recall/F1, the confusion matrix and one-vs-rest ROC curves
 * with AUC, plus the micro- and macro-averaged ROC. The definitions follow scikit-learn:
 * - predictions: the first class of highest score (numpy argmax); top-k: the true class is among the
 *   first k of the classes ordered by score, descending, ties by class index ascending;
 * - precision/recall/F1 as precision_recall_fscore_support with zero_division=0; the macro averages
 *   are over the classes present in the truth or the predictions (sklearn's default label set);
 * - ROC as roc_curve: one point per distinct score (tied scores form one diagonal step), starting at
 *   (0, 0) with threshold +inf; curves keep every point (drop_intermediate=False) or, reduced, drop
 *   the points roc_curve's default drop_intermediate=True drops (equal consecutive steps), which
 *   changes no area. AUC is the exact trapezoidal area over all thresholds, computed on integer
 *   counts (= roc_auc_score, the Mann-Whitney statistic with ties counted 1/2);
 * - a class without positives (or without negatives) in the data has no ROC: auc is NAN and it is
 *   left out of the macro average (roc_auc_score would raise an error instead);
 * - micro: the N*K (score, is-true-class) pairs pooled into one curve (roc_auc_score micro);
 * - macro AUC: the mean of the per-class AUCs over the classes that have one; the macro curve is the
 *   mean of those classes' piecewise-linear curves on the union of their FPR values (at an FPR where
 *   a curve rises vertically, both its lowest and highest TPR), so its area equals the macro AUC. */
#ifndef CNN_EVAL_METRICS_H
#define CNN_EVAL_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

typedef struct {
    int64_t n_pos, n_neg;
    double auc;        /* NAN when n_pos or n_neg is 0 */
    int n_points;      /* 0 when auc is NAN */
    double *fpr, *tpr; /* n_points each, from (0,0) to (1,1) */
    double *threshold; /* n_points: the score at and above which a sample counts positive; [0] = +inf.
                        * NULL for the macro curve */
} eval_roc;

typedef struct {
    int n_classes;         /* K */
    int64_t n_samples;     /* N */
    int top_k;             /* min(5, K) */
    double top1, topk;     /* fractions of samples */
    double mean_nll;       /* mean cross-entropy, natural log */
    int64_t *confusion;    /* K x K: rows the true class, columns the predicted class */
    int64_t *support;      /* K: samples of each true class */
    int64_t *n_predicted;  /* K: samples predicted as each class */
    double *precision, *recall, *f1; /* K, 0 where undefined */
    int n_avg_classes;     /* classes in the truth or the predictions */
    double macro_precision, macro_recall, macro_f1;          /* over those classes */
    double weighted_precision, weighted_recall, weighted_f1; /* weighted by support */
    eval_roc *roc;         /* K curves (reduced when asked) */
    eval_roc micro, macro; /* macro.auc = mean per-class AUC */
    int n_auc_classes;     /* classes with a ROC (both positives and negatives) */
} eval_metrics;

/* Softmax of one row of K logits computed in double: prob[k] = exp(logit[k] - logsumexp) rounded to
 * float, and the return value -log p(label) = logsumexp - logit[label] (exact even where the float
 * probability underflows to 0). Non-finite logits give a NAN return. */
double eval_softmax_row(const float *logits, int k, int label, float *prob);

/* score: N x K row-major class probabilities (any finite scores work: only their order matters,
 * except that none may be NAN); label: N true classes in 0..K-1; nll: N per-sample cross-entropies
 * (their mean is reported) or NULL (mean_nll = NAN). reduce_curves: 1 for the drop_intermediate=True
 * point sets, 0 for every point. CNN_ERR_ARG for a label out of range, a NAN score or N < 1, K < 1;
 * CNN_ERR_NOMEM. On error *out holds nothing to free. */
cnn_status eval_metrics_compute(const float *score, const int *label, const double *nll, int64_t n, int k,
                                int reduce_curves, eval_metrics *out, char *err, size_t err_bytes);
void eval_metrics_free(eval_metrics *m);

/* One ROC curve of n (score, positive) pairs, as roc_curve; for callers and tests. */
cnn_status eval_roc_compute(const float *score, const uint8_t *positive, int64_t n, int reduce, eval_roc *out,
                            char *err, size_t err_bytes);
void eval_roc_free(eval_roc *r);

#endif
