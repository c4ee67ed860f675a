/* Training a new linear classifier head on fixed features (`cnnserve train --mode head`): seeded
 * initialisation and mini-batch SGD with momentum and weight decay on softmax cross-entropy
 * (kernels_train.h). Deterministic: the same features, labels, index lists and recipe give
 * bit-identical weights (one thread, fixed order; the seed drives the init and the epoch shuffles). */
#ifndef CNN_TRAIN_H
#define CNN_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct {
    int epochs;             /* >= 1 */
    int batch;              /* mini-batch size >= 1 (the last batch of an epoch may be smaller) */
    float lr, momentum, weight_decay;
    uint64_t seed;
} train_recipe;

/* What one epoch did. */
typedef struct {
    int epoch, epochs;      /* 1-based */
    double train_loss;      /* mean over the epoch's training items, each counted in its mini-batch
                               as the weights were then (what PyTorch/Keras loops report) */
    double train_accuracy;  /* fraction, counted the same way */
    double val_loss;        /* over the validation items after the epoch; NaN without any */
    double val_accuracy;
    double seconds;         /* wall time of the epoch (training + validation pass) */
} train_epoch;

/* Per-feature standardization of every row before the layer: x' = (x - mean) * inv_std (n_in values
 * each). Training on standardized features makes one learning rate fit every base model (their
 * features differ in scale by orders of magnitude); train_head_fold turns the trained layer into one
 * on the raw features. */
typedef struct {
    const float *mean, *inv_std;
} train_norm;

/* Mean and 1/standard deviation (population; 1 where it is below 1e-6) of each feature over the rows
 * idx[0..n-1], computed in double. CNN_ERR_NOMEM, CNN_ERR_ARG for n < 1. */
cnn_status train_feature_norm(const float *features, int n_in, const int *idx, int n, float *mean, float *inv_std);

/* Rewrites (w, b), trained on standardized features, into the same function of raw features:
 * w'[o][i] = w[o][i] * inv_std[i], b'[o] = b[o] - sum_i w'[o][i] * mean[i] (summed in double). */
void train_head_fold(int n_out, int n_in, const train_norm *norm, float *w, float *b);

/* Called after each epoch; a nonzero return stops training (the weights stay as they are). */
typedef int (*train_epoch_fn)(void *arg, const train_epoch *e);

/* PyTorch's default nn.Linear init: w [n_out][n_in] and b uniform in +-1/sqrt(n_in), from seed. */
void train_head_init(int n_out, int n_in, uint64_t seed, float *w, float *b);

/* Trains w, b (initialised by the caller) on rows features[i * n_in ..] with labels[i] (0..n_out-1),
 * standardized by norm (NULL: raw): each epoch shuffles train_idx (n_train >= 1 row numbers) and steps
 * through it in mini-batches, then evaluates val_idx (n_val >= 0). Errors: CNN_ERR_ARG (bad recipe or
 * sizes), CNN_ERR_NOMEM. Returns CNN_OK also when cb stopped it early. */
cnn_status train_head(const float *features, int n_in, const int *labels, int n_out, const int *train_idx,
                      int n_train, const int *val_idx, int n_val, const train_norm *norm, const train_recipe *r,
                      float *w, float *b, train_epoch_fn cb, void *cb_arg, char *err, size_t err_bytes);

/* Mean cross-entropy and accuracy of (w, b) over the rows idx[0..n-1] (n >= 1), standardized by norm
 * (NULL: raw); CNN_ERR_NOMEM. */
cnn_status train_head_eval(const float *features, int n_in, const int *labels, int n_out, const int *idx, int n,
                           const train_norm *norm, const float *w, const float *b, double *loss, double *accuracy);

#endif
