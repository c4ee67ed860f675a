/* core/kernels_train + core/train: the linear head's loss and gradients against a double-precision
 * finite-difference reference, softmax edge cases, seeded init, and that head
 * training is deterministic and learns separable data. (tests/train/test_train_torch.py checks the
 * same kernels against PyTorch autograd and torch.optim.SGD.) */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/kernels_train.h"
#include "../../core/rng.h"
#include "../../core/train.h"
#include "../test.h"

static void fill(rng *r, float *x, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)((2.0 * rng_uniform(r) - 1.0) * scale);
}

/* Mean softmax cross-entropy of x . w^T + b in double (the reference). */
static double ref_loss(int n, int n_in, int k, const double *x, const double *w, const double *b, const int *y)
{
    double total = 0;
    for (int r = 0; r < n; r++) {
        double l[16], max = -INFINITY, sum = 0;
        for (int c = 0; c < k; c++) {
            l[c] = b[c];
            for (int i = 0; i < n_in; i++) l[c] += x[r * n_in + i] * w[c * n_in + i];
            if (l[c] > max) max = l[c];
        }
        for (int c = 0; c < k; c++) sum += exp(l[c] - max);
        total += log(sum) + max - l[y[r]];
    }
    return total / n;
}

static void test_gradients_fd(void)
{
    test_begin();
    enum { N = 5, F = 7, K = 4 };
    rng r;
    rng_init(&r, 7);
    float x[N * F], w[K * F], b[K], logits[N * K], dlogits[N * K], dx[N * F], dw[K * F], db[K];
    int y[N] = {0, 3, 1, 3, 2};
    fill(&r, x, N * F, 2.0);
    fill(&r, w, K * F, 1.0);
    fill(&r, b, K, 0.5);
    train_linear_forward(N, F, K, x, w, b, logits);
    int correct;
    double loss = train_softmax_xent(N, K, logits, y, dlogits, &correct);
    train_linear_backward(N, F, K, x, w, dlogits, dx, dw, db);

    double xd[N * F], wd[K * F], bd[K];
    for (int i = 0; i < N * F; i++) xd[i] = x[i];
    for (int i = 0; i < K * F; i++) wd[i] = w[i];
    for (int i = 0; i < K; i++) bd[i] = b[i];
    const double ref = ref_loss(N, F, K, xd, wd, bd, y);
    T_CHECK(fabs(loss - ref) <= 1e-6 * fabs(ref), "loss %.9g, reference %.9g", loss, ref);
    const double h = 1e-6;
    double max_rel = 0;
    /* Central differences of the double reference w.r.t. every x, w and b. */
    struct { double *p; const float *g; int n; const char *name; } groups[] = {
        {xd, dx, N * F, "dx"}, {wd, dw, K * F, "dw"}, {bd, db, K, "db"}};
    for (int gi = 0; gi < 3; gi++) {
        double scale = 0;
        for (int i = 0; i < groups[gi].n; i++) scale = fmax(scale, fabs(groups[gi].g[i]));
        for (int i = 0; i < groups[gi].n; i++) {
            double keep = groups[gi].p[i];
            groups[gi].p[i] = keep + h;
            double lp = ref_loss(N, F, K, xd, wd, bd, y);
            groups[gi].p[i] = keep - h;
            double lm = ref_loss(N, F, K, xd, wd, bd, y);
            groups[gi].p[i] = keep;
            double fd = (lp - lm) / (2 * h);
            double rel = fabs(fd - groups[gi].g[i]) / scale;
            if (rel > max_rel) max_rel = rel;
            T_CHECK(rel <= 1e-5, "%s[%d]: analytic %.9g, finite difference %.9g", groups[gi].name, i,
                    groups[gi].g[i], fd);
        }
    }
    printf("# loss %.6f, largest gradient error %.2g of the largest gradient\n", loss, max_rel);
    test_end("train kernels: loss and dx/dw/db vs double-precision finite differences");
}

static void test_softmax_edges(void)
{
    test_begin();
    /* Huge logit gaps: no overflow, loss ~ gap for the wrong class, 0 for the right one. */
    float l[2 * 3] = {1e4f, -1e4f, 0.0f, 1e4f, -1e4f, 0.0f};
    int y[2] = {0, 1};
    float d[6];
    int correct;
    double loss = train_softmax_xent(2, 3, l, y, d, &correct);
    T_CHECK(isfinite(loss) && fabs(loss - 1e4) < 1e-3, "loss %.9g, expected 1e4 (mean of 0 and 2e4)", loss);
    T_CHECK(correct == 1, "correct %d", correct);
    T_CHECK(fabsf(d[0]) < 1e-12f && fabsf(d[3] - 0.5f) < 1e-7f && fabsf(d[4] + 0.5f) < 1e-7f, "dlogits %g %g %g", d[0],
            d[3], d[4]);
    /* Ties: the first of equal largest logits is the prediction; uniform logits give log(k). */
    float t[4] = {2, 2, 2, 2};
    int yt[1] = {1};
    loss = train_softmax_xent(1, 4, t, yt, NULL, &correct);
    T_CHECK(correct == 0 && fabs(loss - log(4.0)) < 1e-12, "ties: correct %d loss %.12g", correct, loss);
    yt[0] = 0;
    train_softmax_xent(1, 4, t, yt, NULL, &correct);
    T_CHECK(correct == 1, "first of ties");
    /* Gradient rows sum to zero. */
    float g[3] = {0.3f, -1.2f, 2.5f}, dg[3];
    int yg[1] = {2};
    train_softmax_xent(1, 3, g, yg, dg, NULL);
    T_CHECK(fabsf(dg[0] + dg[1] + dg[2]) < 1e-7f, "gradient sum %g", dg[0] + dg[1] + dg[2]);
    test_end("train kernels: softmax cross-entropy with huge logits, ties, gradient rows sum to 0");
}

static void test_init(void)
{
    test_begin();
    enum { K = 10, F = 1024 };
    static float w[K * F], w2[K * F], b[K], b2[K];
    train_head_init(K, F, 42, w, b);
    train_head_init(K, F, 42, w2, b2);
    T_CHECK(!memcmp(w, w2, sizeof w) && !memcmp(b, b2, sizeof b), "same seed, same init");
    const float bound = 1.0f / 32.0f;
    double mean = 0, sq = 0;
    for (int i = 0; i < K * F; i++) {
        T_CHECK(fabsf(w[i]) <= bound, "w[%d] = %g outside +-%g", i, w[i], bound);
        mean += w[i];
        sq += (double)w[i] * w[i];
    }
    mean /= K * F;
    sq /= K * F;
    /* U(-a, a): mean 0, variance a^2/3 */
    T_CHECK(fabs(mean) < 0.02 * bound && fabs(sq / (bound * bound / 3.0) - 1.0) < 0.05, "mean %g variance ratio %g",
            mean, sq / (bound * bound / 3.0));
    for (int i = 0; i < K; i++) T_CHECK(fabsf(b[i]) <= bound, "b[%d] = %g", i, b[i]);
    train_head_init(K, F, 43, w2, b2);
    T_CHECK(memcmp(w, w2, sizeof w), "another seed, another init");
    test_end("train: seeded U(-1/sqrt(F), 1/sqrt(F)) init of the new layer");
}

/* Three Gaussian blobs in 16 dimensions; rows 0..n-1, labels by blob. */
static void blobs(int n, float *x, int *y)
{
    rng r;
    rng_init(&r, 99);
    for (int i = 0; i < n; i++) {
        y[i] = i % 3;
        for (int j = 0; j < 16; j++) {
            double u1 = rng_uniform(&r) + 1e-12, u2 = rng_uniform(&r);
            double g = sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
            x[i * 16 + j] = (float)(g + (j == y[i] ? 3.0 : 0.0));
        }
    }
}

typedef struct {
    int n;
    train_epoch last, first;
} epoch_log;

static int log_epoch(void *arg, const train_epoch *e)
{
    epoch_log *l = arg;
    if (l->n++ == 0) l->first = *e;
    l->last = *e;
    return 0;
}

static int stop_after_two(void *arg, const train_epoch *e)
{
    log_epoch(arg, e);
    return e->epoch >= 2;
}

static void test_train_head(void)
{
    test_begin();
    enum { N = 300, F = 16, K = 3 };
    static float x[N * F];
    int y[N], tr[N], va[N], n_tr = 0, n_va = 0;
    blobs(N, x, y);
    for (int i = 0; i < N; i++) {
        if (i % 10 < 3) va[n_va++] = i;
        else tr[n_tr++] = i;
    }
    train_recipe rc = {.epochs = 20, .batch = 32, .lr = 0.05f, .momentum = 0.9f, .weight_decay = 1e-4f, .seed = 5};
    float w1[K * F], b1[K], w2[K * F], b2[K];
    char err[256];
    epoch_log l1 = {0}, l2 = {0};
    train_head_init(K, F, rc.seed, w1, b1);
    train_head_init(K, F, rc.seed, w2, b2);
    cnn_status s1 = train_head(x, F, y, K, tr, n_tr, va, n_va, NULL, &rc, w1, b1, log_epoch, &l1, err, sizeof err);
    cnn_status s2 = train_head(x, F, y, K, tr, n_tr, va, n_va, NULL, &rc, w2, b2, log_epoch, &l2, err, sizeof err);
    T_CHECK(s1 == CNN_OK && s2 == CNN_OK, "train: %s", err);
    T_CHECK(!memcmp(w1, w2, sizeof w1) && !memcmp(b1, b2, sizeof b1), "two runs differ");
    T_CHECK(l1.n == 20 && l1.last.epoch == 20 && l1.last.epochs == 20, "epochs reported %d", l1.n);
    T_CHECK(l1.last.train_loss < 0.5 * l1.first.train_loss, "train loss %g -> %g", l1.first.train_loss,
            l1.last.train_loss);
    T_CHECK(l1.last.val_accuracy >= 0.95, "val accuracy %g on separable blobs", l1.last.val_accuracy);
    double loss, acc;
    T_CHECK(train_head_eval(x, F, y, K, va, n_va, NULL, w1, b1, &loss, &acc) == CNN_OK && loss == l1.last.val_loss &&
                acc == l1.last.val_accuracy, "eval equals the last epoch's validation");
    printf("# blobs: train loss %.4f -> %.4f, val loss %.4f, val accuracy %.3f\n", l1.first.train_loss,
           l1.last.train_loss, l1.last.val_loss, l1.last.val_accuracy);
    rc.seed = 6;
    train_head_init(K, F, rc.seed, w2, b2);
    train_head(x, F, y, K, tr, n_tr, va, n_va, NULL, &rc, w2, b2, NULL, NULL, err, sizeof err);
    T_CHECK(memcmp(w1, w2, sizeof w1), "another seed, other weights");
    epoch_log l3 = {0};
    train_head_init(K, F, 5, w2, b2);
    rc.seed = 5;
    train_head(x, F, y, K, tr, n_tr, NULL, 0, NULL, &rc, w2, b2, stop_after_two, &l3, err, sizeof err);
    T_CHECK(l3.n == 2 && isnan(l3.last.val_loss), "early stop after %d epochs; no validation items: NaN loss", l3.n);
    rc.epochs = 0;
    T_CHECK(train_head(x, F, y, K, tr, n_tr, va, n_va, NULL, &rc, w2, b2, NULL, NULL, err, sizeof err) == CNN_ERR_ARG,
            "0 epochs rejected");
    test_end("train: head training is deterministic, learns separable data, early stop, bad recipe");
}

static void test_norm_fold(void)
{
    test_begin();
    /* Feature statistics: column 0 = 1..4 (mean 2.5, population sd sqrt(1.25)), column 1 constant. */
    float f[4 * 2] = {1, 7, 2, 7, 3, 7, 4, 7}, mean[2], inv[2];
    int all[4] = {0, 1, 2, 3}, some[2] = {1, 3};
    T_CHECK(train_feature_norm(f, 2, all, 4, mean, inv) == CNN_OK, "norm");
    T_CHECK(mean[0] == 2.5f && fabsf(inv[0] - (float)(1 / sqrt(1.25))) < 1e-7f, "column 0: %g %g", mean[0], inv[0]);
    T_CHECK(mean[1] == 7.0f && inv[1] == 1.0f, "constant column: mean %g, inv_std %g (1 expected)", mean[1], inv[1]);
    T_CHECK(train_feature_norm(f, 2, some, 2, mean, inv) == CNN_OK && mean[0] == 3.0f && inv[0] == 1.0f,
            "rows subset: mean %g inv %g", mean[0], inv[0]);
    T_CHECK(train_feature_norm(f, 2, all, 0, mean, inv) == CNN_ERR_ARG, "no rows");

    /* Blobs with badly scaled, offset features: train standardized, fold, evaluate on the raw ones. */
    enum { N = 300, F = 16, K = 3 };
    static float x[N * F];
    int y[N], tr[N], va[N], n_tr = 0, n_va = 0;
    blobs(N, x, y);
    for (int i = 0; i < N * F; i++) x[i] = x[i] * (i % F < 8 ? 1e-3f : 50.0f) + (float)(i % F);
    for (int i = 0; i < N; i++) {
        if (i % 10 < 3) va[n_va++] = i;
        else tr[n_tr++] = i;
    }
    float m[F], is[F], w[K * F], b[K];
    T_CHECK(train_feature_norm(x, F, tr, n_tr, m, is) == CNN_OK, "norm of the training rows");
    train_norm norm = {m, is};
    train_recipe rc = {.epochs = 20, .batch = 32, .lr = 0.05f, .momentum = 0.9f, .weight_decay = 1e-4f, .seed = 5};
    char err[256];
    epoch_log l = {0};
    train_head_init(K, F, rc.seed, w, b);
    T_CHECK(train_head(x, F, y, K, tr, n_tr, va, n_va, &norm, &rc, w, b, log_epoch, &l, err, sizeof err) == CNN_OK,
            "train: %s", err);
    double loss_std, acc_std, loss_raw, acc_raw;
    train_head_eval(x, F, y, K, va, n_va, &norm, w, b, &loss_std, &acc_std);
    T_CHECK(loss_std == l.last.val_loss, "eval with norm equals the last epoch's validation");
    train_head_fold(K, F, &norm, w, b);
    train_head_eval(x, F, y, K, va, n_va, NULL, w, b, &loss_raw, &acc_raw);
    T_CHECK(acc_raw == acc_std && fabs(loss_raw - loss_std) <= 1e-4 * loss_std, "folded on raw: loss %.9g acc %g; "
            "standardized: loss %.9g acc %g", loss_raw, acc_raw, loss_std, acc_std);
    T_CHECK(acc_raw >= 0.95, "val accuracy %g with standardized features", acc_raw);
    printf("# scaled blobs: standardized val loss %.6f acc %.3f, folded on raw features loss %.6f acc %.3f\n",
           loss_std, acc_std, loss_raw, acc_raw);
    test_end("train: feature standardization (mean, 1/sd, constant columns) and folding it into the layer");
}

int main(void)
{
    test_gradients_fd();
    test_softmax_edges();
    test_init();
    test_train_head();
    test_norm_fold();
    return test_finish();
}
