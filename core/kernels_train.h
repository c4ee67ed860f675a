/* Training kernels of a linear layer with softmax cross-entropy (the new classifier head of
 * `cnnserve train`): batch forward, loss and its gradient, and backward (the update: optim.h).
 * Float32 storage, double accumulation, single-threaded with a fixed summation order, so the same
 * inputs give bit-identical outputs on every run. Row-major: x [n][n_in], w [n_out][n_in] (PyTorch's
 * Linear layout), y/dy [n][n_out]. No allocation. */
#ifndef CNN_KERNELS_TRAIN_H
#define CNN_KERNELS_TRAIN_H

#include <stddef.h>

/* y = x . w^T + b for n rows. */
void train_linear_forward(int n, int n_in, int n_out, const float *x, const float *w, const float *b, float *y);

/* Mean over n rows of the softmax cross-entropy (natural log) of k logits against labels (each in
 * 0..k-1). dlogits (NULL: not computed) receives its gradient, (softmax - onehot) / n; n_correct (NULL:
 * not counted) the rows whose largest logit (the first of equal ones) is the label. Returns the mean
 * loss. */
double train_softmax_xent(int n, int k, const float *logits, const int *labels, float *dlogits, int *n_correct);

/* Gradients of y = x . w^T + b given dy: dx = dy . w [n][n_in], dw = dy^T . x [n_out][n_in],
 * db = column sums of dy [n_out]. Each is overwritten; NULL skips it. */
void train_linear_backward(int n, int n_in, int n_out, const float *x, const float *w, const float *dy, float *dx,
                           float *dw, float *db);

#endif
