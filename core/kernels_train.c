/* Linear layer + softmax cross-entropy training kernels (see kernels_train.h). */
#include "kernels_train.h"

#include <math.h>

void train_linear_forward(int n, int n_in, int n_out, const float *x, const float *w, const float *b, float *y)
{
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * n_in;
        for (int o = 0; o < n_out; o++) {
            const float *wo = w + (size_t)o * n_in;
            double acc = b ? b[o] : 0.0;
            for (int i = 0; i < n_in; i++) acc += (double)xr[i] * wo[i];
            y[(size_t)r * n_out + o] = (float)acc;
        }
    }
}

double train_softmax_xent(int n, int k, const float *logits, const int *labels, float *dlogits, int *n_correct)
{
    double total = 0.0;
    int correct = 0;
    for (int r = 0; r < n; r++) {
        const float *l = logits + (size_t)r * k;
        int best = 0;
        for (int c = 1; c < k; c++)
            if (l[c] > l[best]) best = c;
        correct += best == labels[r];
        const double max = l[best];
        double sum = 0.0;
        for (int c = 0; c < k; c++) sum += exp((double)l[c] - max);
        const double log_sum = log(sum);
        total += log_sum - ((double)l[labels[r]] - max);
        if (dlogits) {
            float *d = dlogits + (size_t)r * k;
            for (int c = 0; c < k; c++) {
                const double p = exp((double)l[c] - max - log_sum);
                d[c] = (float)((p - (c == labels[r])) / n);
            }
        }
    }
    if (n_correct) *n_correct = correct;
    return n > 0 ? total / n : 0.0;
}

void train_linear_backward(int n, int n_in, int n_out, const float *x, const float *w, const float *dy, float *dx,
                           float *dw, float *db)
{
    if (dx)
        for (int r = 0; r < n; r++)
            for (int i = 0; i < n_in; i++) {
                double acc = 0.0;
                for (int o = 0; o < n_out; o++) acc += (double)dy[(size_t)r * n_out + o] * w[(size_t)o * n_in + i];
                dx[(size_t)r * n_in + i] = (float)acc;
            }
    if (dw)
        for (int o = 0; o < n_out; o++)
            for (int i = 0; i < n_in; i++) {
                double acc = 0.0;
                for (int r = 0; r < n; r++) acc += (double)dy[(size_t)r * n_out + o] * x[(size_t)r * n_in + i];
                dw[(size_t)o * n_in + i] = (float)acc;
            }
    if (db)
        for (int o = 0; o < n_out; o++) {
            double acc = 0.0;
            for (int r = 0; r < n; r++) acc += dy[(size_t)r * n_out + o];
            db[o] = (float)acc;
        }
}

void train_sgd_step(size_t n, float *p, const float *g, float *v, float lr, float momentum, float weight_decay)
{
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i] + weight_decay * p[i];
        v[i] = momentum * v[i] + gi;
        p[i] -= lr * v[i];
    }
}
