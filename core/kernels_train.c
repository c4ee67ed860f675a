/* Linear layer + softmax cross-entropy training kernels (see kernels_train.h) and seeded dropout
 * (declared in kernels.h). */
#include "kernels_train.h"

#include <math.h>

#include "kernels.h"
#include "rng.h"

/* Four outputs at a time: independent accumulation chains, each summing in the same order as one
 * output alone would, so unrolling changes the speed, not the bits. */
void train_linear_forward(int n, int n_in, int n_out, const float *x, const float *w, const float *b, float *y)
{
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * n_in;
        float *yr = y + (size_t)r * n_out;
        int o = 0;
        for (; o + 4 <= n_out; o += 4) {
            const float *w0 = w + (size_t)o * n_in, *w1 = w0 + n_in, *w2 = w1 + n_in, *w3 = w2 + n_in;
            double a0 = b ? b[o] : 0.0, a1 = b ? b[o + 1] : 0.0, a2 = b ? b[o + 2] : 0.0, a3 = b ? b[o + 3] : 0.0;
            for (int i = 0; i < n_in; i++) {
                const double xi = xr[i];
                a0 += xi * w0[i];
                a1 += xi * w1[i];
                a2 += xi * w2[i];
                a3 += xi * w3[i];
            }
            yr[o] = (float)a0, yr[o + 1] = (float)a1, yr[o + 2] = (float)a2, yr[o + 3] = (float)a3;
        }
        for (; o < n_out; o++) {
            const float *wo = w + (size_t)o * n_in;
            double acc = b ? b[o] : 0.0;
            for (int i = 0; i < n_in; i++) acc += (double)xr[i] * wo[i];
            yr[o] = (float)acc;
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
    if (dw) /* four inputs at a time, each summed over the rows in order (as in the forward) */
        for (int o = 0; o < n_out; o++) {
            int i = 0;
            for (; i + 4 <= n_in; i += 4) {
                double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
                for (int r = 0; r < n; r++) {
                    const double d = dy[(size_t)r * n_out + o];
                    const float *xr = x + (size_t)r * n_in + i;
                    a0 += d * xr[0];
                    a1 += d * xr[1];
                    a2 += d * xr[2];
                    a3 += d * xr[3];
                }
                float *dwo = dw + (size_t)o * n_in + i;
                dwo[0] = (float)a0, dwo[1] = (float)a1, dwo[2] = (float)a2, dwo[3] = (float)a3;
            }
            for (; i < n_in; i++) {
                double acc = 0.0;
                for (int r = 0; r < n; r++) acc += (double)dy[(size_t)r * n_out + o] * x[(size_t)r * n_in + i];
                dw[(size_t)o * n_in + i] = (float)acc;
            }
        }
    if (db)
        for (int o = 0; o < n_out; o++) {
            double acc = 0.0;
            for (int r = 0; r < n; r++) acc += dy[(size_t)r * n_out + o];
            db[o] = (float)acc;
        }
}

/* ---- dropout ----
 * The key of (seed, step, layer) chains three SplitMix64 draws; element e's draw is the SplitMix64
 * output of state key ^ e (a bijective mix of distinct states), dropped when its 53-bit uniform
 * is below prob: a pure function of the five numbers. */
static uint64_t dropout_key(uint64_t seed, uint64_t step, uint32_t layer)
{
    rng r;
    rng_init(&r, seed);
    rng_init(&r, rng_next_u64(&r) ^ step);
    rng_init(&r, rng_next_u64(&r) ^ layer);
    return rng_next_u64(&r);
}

void dropout_forward(uint64_t seed, uint64_t step, uint32_t layer, size_t first, size_t n,
                     float prob, const float *x, float *y)
{
    if (prob <= 0.0f) {
        for (size_t i = 0; i < n; i++) y[i] = x[i];
        return;
    }
    const uint64_t key = dropout_key(seed, step, layer);
    const float scale = (float)(1.0 / (1.0 - (double)prob));
    for (size_t i = 0; i < n; i++) {
        rng r;
        rng_init(&r, key ^ (uint64_t)(first + i));
        y[i] = rng_uniform(&r) < (double)prob ? 0.0f : x[i] * scale;
    }
}

void dropout_backward(uint64_t seed, uint64_t step, uint32_t layer, size_t first, size_t n,
                      float prob, const float *dy, float *dx)
{
    dropout_forward(seed, step, layer, first, n, prob, dy, dx);
}
