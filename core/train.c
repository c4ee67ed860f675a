/* Head training loop (see train.h). */
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels_train.h"
#include "optim.h"
#include "rng.h"

/* Independent SplitMix64 streams of one seed: weight init and epoch shuffles. */
#define TRAIN_STREAM_INIT UINT64_C(0x696e6974) /* "init" */
#define TRAIN_STREAM_SHUFFLE UINT64_C(0x73687566) /* "shuf" */

/* Rows evaluated per forward call when measuring loss/accuracy. */
#define TRAIN_EVAL_ROWS 256

static double train_now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t train_stream_seed(uint64_t seed, uint64_t stream)
{
    rng r;
    rng_init(&r, seed ^ (stream * UINT64_C(0x9E3779B97F4A7C15)));
    return rng_next_u64(&r);
}

void train_head_init(int n_out, int n_in, uint64_t seed, float *w, float *b)
{
    rng r;
    rng_init(&r, train_stream_seed(seed, TRAIN_STREAM_INIT));
    const double bound = 1.0 / sqrt((double)n_in);
    for (size_t i = 0; i < (size_t)n_out * n_in; i++) w[i] = (float)((2.0 * rng_uniform(&r) - 1.0) * bound);
    for (int o = 0; o < n_out; o++) b[o] = (float)((2.0 * rng_uniform(&r) - 1.0) * bound);
}

/* Copies rows idx[0..n-1] of features, standardized by norm (NULL: as they are), into x and their
 * labels into y. */
static void gather(const float *features, int n_in, const int *labels, const int *idx, int n, const train_norm *norm,
                   float *x, int *y)
{
    for (int i = 0; i < n; i++) {
        const float *src = features + (size_t)idx[i] * n_in;
        float *dst = x + (size_t)i * n_in;
        if (norm)
            for (int j = 0; j < n_in; j++) dst[j] = (src[j] - norm->mean[j]) * norm->inv_std[j];
        else
            memcpy(dst, src, (size_t)n_in * sizeof(float));
        y[i] = labels[idx[i]];
    }
}

cnn_status train_feature_norm(const float *features, int n_in, const int *idx, int n, float *mean, float *inv_std)
{
    if (n < 1 || n_in < 1) return CNN_ERR_ARG;
    double *sum = calloc((size_t)n_in, sizeof(double)), *sq = calloc((size_t)n_in, sizeof(double));
    if (!sum || !sq) {
        free(sum);
        free(sq);
        return CNN_ERR_NOMEM;
    }
    for (int r = 0; r < n; r++) {
        const float *x = features + (size_t)idx[r] * n_in;
        for (int j = 0; j < n_in; j++) sum[j] += x[j];
    }
    for (int j = 0; j < n_in; j++) sum[j] /= n;
    for (int r = 0; r < n; r++) { /* two passes: no cancellation */
        const float *x = features + (size_t)idx[r] * n_in;
        for (int j = 0; j < n_in; j++) sq[j] += ((double)x[j] - sum[j]) * ((double)x[j] - sum[j]);
    }
    for (int j = 0; j < n_in; j++) {
        const double sd = sqrt(sq[j] / n);
        mean[j] = (float)sum[j];
        inv_std[j] = sd > 1e-6 ? (float)(1.0 / sd) : 1.0f;
    }
    free(sum);
    free(sq);
    return CNN_OK;
}

void train_head_fold(int n_out, int n_in, const train_norm *norm, float *w, float *b)
{
    for (int o = 0; o < n_out; o++) {
        float *wo = w + (size_t)o * n_in;
        double shift = 0.0;
        for (int i = 0; i < n_in; i++) {
            wo[i] *= norm->inv_std[i];
            shift += (double)wo[i] * norm->mean[i];
        }
        b[o] = (float)(b[o] - shift);
    }
}

cnn_status train_head_eval(const float *features, int n_in, const int *labels, int n_out, const int *idx, int n,
                           const train_norm *norm, const float *w, const float *b, double *loss, double *accuracy)
{
    float *x = malloc((size_t)TRAIN_EVAL_ROWS * n_in * sizeof(float));
    float *logits = malloc((size_t)TRAIN_EVAL_ROWS * n_out * sizeof(float));
    int *y = malloc(TRAIN_EVAL_ROWS * sizeof(int));
    cnn_status s = x && logits && y ? CNN_OK : CNN_ERR_NOMEM;
    double total = 0.0;
    long correct = 0;
    for (int at = 0; s == CNN_OK && at < n; at += TRAIN_EVAL_ROWS) {
        const int m = n - at < TRAIN_EVAL_ROWS ? n - at : TRAIN_EVAL_ROWS;
        int c;
        gather(features, n_in, labels, idx + at, m, norm, x, y);
        train_linear_forward(m, n_in, n_out, x, w, b, logits);
        total += train_softmax_xent(m, n_out, logits, y, NULL, &c) * m;
        correct += c;
    }
    free(x);
    free(logits);
    free(y);
    *loss = n > 0 ? total / n : NAN;
    *accuracy = n > 0 ? (double)correct / n : NAN;
    return s;
}

cnn_status train_head(const float *features, int n_in, const int *labels, int n_out, const int *train_idx,
                      int n_train, const int *val_idx, int n_val, const train_norm *norm, const train_recipe *r,
                      float *w, float *b, train_epoch_fn cb, void *cb_arg, char *err, size_t err_bytes)
{
    if (n_in < 1 || n_out < 2 || n_train < 1 || n_val < 0 || r->epochs < 1 || r->batch < 1 || !(r->lr > 0) ||
        !(r->momentum >= 0 && r->momentum < 1) || !(r->weight_decay >= 0))
        return cnn_err(err, err_bytes, CNN_ERR_ARG,
                       "train: bad sizes or recipe (features %d, classes %d, train %d, val %d, epochs %d, batch %d)",
                       n_in, n_out, n_train, n_val, r->epochs, r->batch);
    const int batch = r->batch < n_train ? r->batch : n_train;
    const size_t n_w = (size_t)n_out * n_in;
    int *order = malloc((size_t)n_train * sizeof(int));
    int *y = malloc((size_t)batch * sizeof(int));
    float *x = malloc((size_t)batch * n_in * sizeof(float));
    float *logits = malloc((size_t)batch * n_out * sizeof(float));
    float *dlogits = malloc((size_t)batch * n_out * sizeof(float));
    float *dw = malloc(n_w * sizeof(float)), *db = malloc((size_t)n_out * sizeof(float));
    optim *opt = NULL;
    cnn_status s = CNN_OK;
    if (!order || !y || !x || !logits || !dlogits || !dw || !db) {
        s = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "train: out of memory");
        goto done;
    }
    /* torch.optim.SGD over [w, b], both decayed (the head's recipe). */
    const optim_opts oo = {.kind = OPTIM_SGD, .lr = {r->lr, r->lr}, .weight_decay = r->weight_decay,
                           .momentum = r->momentum};
    const optim_param params[2] = {{w, dw, n_w, OPTIM_GROUP_HEAD, 0}, {b, db, (size_t)n_out, OPTIM_GROUP_HEAD, 0}};
    if ((s = optim_init(&opt, &oo, params, 2, err, err_bytes)) != CNN_OK) goto done;
    memcpy(order, train_idx, (size_t)n_train * sizeof(int));
    rng shuffle;
    rng_init(&shuffle, train_stream_seed(r->seed, TRAIN_STREAM_SHUFFLE));
    for (int e = 1; e <= r->epochs; e++) {
        const double t0 = train_now_s();
        rng_shuffle(&shuffle, order, n_train);
        double total = 0.0;
        long correct = 0;
        for (int at = 0; at < n_train; at += batch) {
            const int m = n_train - at < batch ? n_train - at : batch;
            int c;
            gather(features, n_in, labels, order + at, m, norm, x, y);
            train_linear_forward(m, n_in, n_out, x, w, b, logits);
            total += train_softmax_xent(m, n_out, logits, y, dlogits, &c) * m;
            correct += c;
            train_linear_backward(m, n_in, n_out, x, w, dlogits, NULL, dw, db);
            optim_step(opt, 1.0);
        }
        train_epoch ep = {.epoch = e, .epochs = r->epochs, .train_loss = total / n_train,
                          .train_accuracy = (double)correct / n_train, .val_loss = NAN, .val_accuracy = NAN};
        if (n_val > 0 &&
            train_head_eval(features, n_in, labels, n_out, val_idx, n_val, norm, w, b, &ep.val_loss,
                            &ep.val_accuracy) != CNN_OK) {
            s = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "train: out of memory");
            goto done;
        }
        ep.seconds = train_now_s() - t0;
        if (cb && cb(cb_arg, &ep)) break;
    }
done:
    free(order);
    free(y);
    free(x);
    free(logits);
    free(dlogits);
    free(dw);
    free(db);
    optim_free(opt);
    return s;
}
