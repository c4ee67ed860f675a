/* BatchNorm over a batch for training (see kernels.h): frozen (running statistics) and train mode
 * (batch statistics), forward and backward, PyTorch 1.13's formulas. Channel c of image i is the
 * contiguous run x + (i * c_total + c) * hw; every channel's sums visit the images in order, each
 * run in KERNELS_BLOCK float partial sums added in double, so the bits depend on neither the
 * channel range of the call nor anything else but the inputs. */
#include "kernels.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#include "kernels_internal.h"

static void bn_check(const bn_params *p, int c0, int c1)
{
    assert(p->n > 0 && p->c > 0 && p->hw > 0 && p->eps >= 0.0f);
    assert(0 <= c0 && c0 <= c1 && c1 <= p->c);
    (void)p, (void)c0, (void)c1;
}

static inline size_t bn_run(const bn_params *p, int i, int c)
{
    return ((size_t)i * (size_t)p->c + (size_t)c) * (size_t)p->hw;
}

/* sum (x[j] - m)^2 (dy NULL), or sum dy[j] and sum (x[j] - m) * dy[j] (one pass), j < n. */
static void bn_centered_sums(const float *x, const float *dy, float m, size_t n, double *sq,
                             double *sum_dy, double *dot)
{
    float pa[KERNELS_BLOCK] = {0}, pb[KERNELS_BLOCK] = {0};
    size_t j = 0;
    double a = 0.0, b = 0.0;
    if (dy) {
        for (; j + KERNELS_BLOCK <= n; j += KERNELS_BLOCK)
            for (size_t l = 0; l < KERNELS_BLOCK; l++) {
                pa[l] += dy[j + l];
                pb[l] += (x[j + l] - m) * dy[j + l];
            }
        for (; j < n; j++) a += dy[j], b += (double)(x[j] - m) * dy[j];
    } else {
        for (; j + KERNELS_BLOCK <= n; j += KERNELS_BLOCK)
            for (size_t l = 0; l < KERNELS_BLOCK; l++) pa[l] += (x[j + l] - m) * (x[j + l] - m);
        for (; j < n; j++) a += (double)(x[j] - m) * (x[j] - m);
    }
    for (size_t l = 0; l < KERNELS_BLOCK; l++) a += pa[l], b += pb[l];
    if (dy) {
        *sum_dy = a;
        *dot = b;
    } else {
        *sq = a;
    }
}

/* y = x * a + b over n floats (y may be x: each block is loaded before it is stored, which lets
 * gcc vectorize without an alias check). */
static void bn_affine(const float *x, float a, float b, size_t n, float *y)
{
    size_t j = 0;
    for (; j + KERNELS_BLOCK <= n; j += KERNELS_BLOCK) {
        float t[KERNELS_BLOCK];
        for (size_t l = 0; l < KERNELS_BLOCK; l++) t[l] = x[j + l] * a + b;
        for (size_t l = 0; l < KERNELS_BLOCK; l++) y[j + l] = t[l];
    }
    for (; j < n; j++) y[j] = x[j] * a + b;
}

/* z = relu(x * a + b) over n floats in one pass: the same operations as bn_affine and then
 * act_forward (which adds a zero bias before the ReLU), so the same bits. */
static void bn_affine_relu(const float *x, float a, float b, size_t n, float *z)
{
    size_t j = 0;
    for (; j + KERNELS_BLOCK <= n; j += KERNELS_BLOCK) {
        float t[KERNELS_BLOCK];
        for (size_t l = 0; l < KERNELS_BLOCK; l++) t[l] = kernels_act_one(ACT_RELU, (x[j + l] * a + b) + 0.0f);
        for (size_t l = 0; l < KERNELS_BLOCK; l++) z[j + l] = t[l];
    }
    for (; j < n; j++) z[j] = kernels_act_one(ACT_RELU, (x[j] * a + b) + 0.0f);
}

/* dx = (dy - gm - (x - m) * k) * a over n floats (dx may be dy), blocks as in bn_affine. */
static void bn_train_dx(const float *x, const float *dy, float m, float gm, float k, float a,
                        size_t n, float *dx)
{
    size_t j = 0;
    for (; j + KERNELS_BLOCK <= n; j += KERNELS_BLOCK) {
        float t[KERNELS_BLOCK];
        for (size_t l = 0; l < KERNELS_BLOCK; l++) t[l] = (dy[j + l] - gm - (x[j + l] - m) * k) * a;
        for (size_t l = 0; l < KERNELS_BLOCK; l++) dx[j + l] = t[l];
    }
    for (; j < n; j++) dx[j] = (dy[j] - gm - (x[j] - m) * k) * a;
}

void bn_frozen_act_forward(const bn_params *p, int c0, int c1, act_kind act, const float *x,
                           const float *gamma, const float *beta, const float *mean, const float *var,
                           float *y, float *z, size_t z_stride)
{
    bn_check(p, c0, c1);
    assert(y || z);
    const size_t hw = (size_t)p->hw;
    for (int c = c0; c < c1; c++) {
        const float invstd = 1.0f / sqrtf(var[c] + p->eps);
        const float a = invstd * gamma[c], b = beta[c] - mean[c] * a;
        for (int i = 0; i < p->n; i++) {
            float *yr = y ? y + bn_run(p, i, c) : NULL;
            float *zr = z ? z + (size_t)i * z_stride + (size_t)c * hw : NULL;
            if (yr) bn_affine(x + bn_run(p, i, c), a, b, hw, yr);
            if (!zr) continue;
            if (!yr && act == ACT_RELU) {
                bn_affine_relu(x + bn_run(p, i, c), a, b, hw, zr);
                continue;
            }
            if (!yr) bn_affine(x + bn_run(p, i, c), a, b, hw, zr);
            else if (zr != yr) memcpy(zr, yr, hw * sizeof *zr); /* the run is still in cache */
            act_forward(act, zr, hw);
        }
    }
}

void bn_frozen_forward(const bn_params *p, int c0, int c1, const float *x, const float *gamma,
                       const float *beta, const float *mean, const float *var, float *y)
{
    bn_frozen_act_forward(p, c0, c1, ACT_NONE, x, gamma, beta, mean, var, y, NULL, 0);
}

/* y > 0 ? d : 0 by a bit mask, d loaded whatever y is, so that gcc vectorizes the loop. */
static inline float bn_relu_grad(float y, float d)
{
    uint32_t di;
    memcpy(&di, &d, sizeof di);
    di &= -(uint32_t)(y > 0.0f);
    float g;
    memcpy(&g, &di, sizeof g);
    return g;
}

/* One run of the frozen backward in one pass: with g = src[j] (relu: the ReLU's backward on the
 * recomputed BN output, g = (x[j] * a + b > 0 ? src[j] : 0), the same operations in the same order
 * as bn_affine + act_backward, so the same bits), sum_dy += g, dot += (x[j] - m) * g (KERNELS_BLOCK
 * partial sums as bn_centered_sums) and dx[j] = g * a + 0 (dx NULL: not written; dx may be src). */
static inline __attribute__((always_inline)) void bn_frozen_run_impl(const float *x, const float *src, float m,
                                                                     float a, float b, int relu, size_t n,
                                                                     float *dx, double *sum_dy, double *dot)
{
    float pa[KERNELS_BLOCK] = {0}, pb[KERNELS_BLOCK] = {0};
    double sa = 0.0, sb = 0.0;
    size_t j = 0;
    for (; j + KERNELS_BLOCK <= n; j += KERNELS_BLOCK) {
        float t[KERNELS_BLOCK];
        for (size_t l = 0; l < KERNELS_BLOCK; l++) {
            const float g = relu ? bn_relu_grad(x[j + l] * a + b, src[j + l]) : src[j + l];
            pa[l] += g;
            pb[l] += (x[j + l] - m) * g;
            t[l] = g * a + 0.0f; /* as bn_affine(g, a, 0): the same bits on either path */
        }
        if (dx)
            for (size_t l = 0; l < KERNELS_BLOCK; l++) dx[j + l] = t[l];
    }
    for (; j < n; j++) {
        const float g = relu ? bn_relu_grad(x[j] * a + b, src[j]) : src[j];
        sa += g, sb += (double)(x[j] - m) * g;
        if (dx) dx[j] = g * a + 0.0f;
    }
    for (size_t l = 0; l < KERNELS_BLOCK; l++) sa += pa[l], sb += pb[l];
    *sum_dy = sa;
    *dot = sb;
}

static void bn_frozen_run(const float *x, const float *src, float m, float a, size_t n, float *dx,
                          double *sum_dy, double *dot)
{
    bn_frozen_run_impl(x, src, m, a, 0.0f, 0, n, dx, sum_dy, dot);
}

static void bn_frozen_relu_run(const float *x, const float *dz, float m, float a, float b, size_t n,
                               float *dx, double *sum_dy, double *dot)
{
    bn_frozen_run_impl(x, dz, m, a, b, 1, n, dx, sum_dy, dot);
}

/* Channel c of image i of the frozen backward: dx's run written, its two sums returned. */
static void bn_frozen_act_run(const bn_params *p, int i, int c, act_kind act, const float *dz, size_t z_stride,
                              const float *x, const float *gamma, const float *beta, const float *mean,
                              const float *var, float *dx, int sums, double *sum_dy, double *dot)
{
    const size_t hw = (size_t)p->hw;
    const float invstd = 1.0f / sqrtf(var[c] + p->eps), a = invstd * gamma[c];
    const float *xr = x + bn_run(p, i, c);
    float *dxr = dx ? dx + bn_run(p, i, c) : NULL;
    const float *g = dz + (size_t)i * z_stride + (size_t)c * hw;
    if (act == ACT_RELU && sums && dxr) {
        bn_frozen_relu_run(xr, g, mean[c], a, beta[c] - mean[c] * a, hw, dxr, sum_dy, dot);
        return;
    }
    if (act != ACT_NONE) {
        /* the activation's input y recomputed as the forward did (same bits: one stream
         * less to read, and y need not be kept), then its gradient, both in dx (in cache) */
        bn_affine(xr, a, beta[c] - mean[c] * a, hw, dxr);
        act_backward(act, dxr, g, dxr, hw);
        g = dxr;
    }
    if (!sums) {
        if (dxr) bn_affine(g, a, 0.0f, hw, dxr);
        return;
    }
    bn_frozen_run(xr, g, mean[c], a, hw, dxr, sum_dy, dot);
}

void bn_frozen_act_backward(const bn_params *p, int c0, int c1, act_kind act, const float *dz,
                            size_t z_stride, const float *x, const float *gamma, const float *beta,
                            const float *mean, const float *var, float *dx, float *dgamma, float *dbeta)
{
    bn_check(p, c0, c1);
    assert(dx || act == ACT_NONE);
    for (int c = c0; c < c1; c++) {
        double sum = 0.0, dotp = 0.0;
        for (int i = 0; i < p->n; i++) {
            double sd = 0.0, d = 0.0;
            bn_frozen_act_run(p, i, c, act, dz, z_stride, x, gamma, beta, mean, var, dx, dgamma || dbeta, &sd, &d);
            sum += sd, dotp += d;
        }
        const float invstd = 1.0f / sqrtf(var[c] + p->eps);
        if (dgamma) dgamma[c] += (float)(dotp * invstd);
        if (dbeta) dbeta[c] += (float)sum;
    }
}

void bn_frozen_act_backward_image(const bn_params *p, int c0, int c1, act_kind act, const float *dz,
                                  size_t z_stride, const float *x, const float *gamma, const float *beta,
                                  const float *mean, const float *var, float *dx, double *sums)
{
    bn_check(p, c0, c1);
    assert(p->n == 1 && dx);
    for (int c = c0; c < c1; c++)
        bn_frozen_act_run(p, 0, c, act, dz, z_stride, x, gamma, beta, mean, var, dx, 1, &sums[2 * c],
                          &sums[2 * c + 1]);
}

void bn_frozen_backward_reduce(const bn_params *p, int c0, int c1, const float *var, const double *sums,
                               float *dgamma, float *dbeta)
{
    bn_check(p, c0, c1);
    const size_t stride = 2 * (size_t)p->c;
    for (int c = c0; c < c1; c++) {
        double sum = 0.0, dotp = 0.0;
        for (int i = 0; i < p->n; i++) {
            const double *s = sums + (size_t)i * stride + 2 * (size_t)c;
            sum += s[0], dotp += s[1];
        }
        const float invstd = 1.0f / sqrtf(var[c] + p->eps);
        dgamma[c] += (float)(dotp * invstd);
        dbeta[c] += (float)sum;
    }
}

void bn_frozen_backward(const bn_params *p, int c0, int c1, const float *x, const float *dy,
                        const float *gamma, const float *mean, const float *var, float *dx,
                        float *dgamma, float *dbeta)
{
    bn_frozen_act_backward(p, c0, c1, ACT_NONE, dy, (size_t)p->c * (size_t)p->hw, x, gamma, NULL, mean,
                           var, dx, dgamma, dbeta);
}

void bn_train_forward(const bn_params *p, int c0, int c1, const float *x, const float *gamma,
                      const float *beta, float *running_mean, float *running_var,
                      float *save_mean, float *save_invstd, float *y)
{
    bn_check(p, c0, c1);
    const size_t hw = (size_t)p->hw, count = (size_t)p->n * hw;
    assert(count > 1);
    for (int c = c0; c < c1; c++) {
        double sum = 0.0, sq = 0.0;
        for (int i = 0; i < p->n; i++) sum += kernels_sum_floats(x + bn_run(p, i, c), hw);
        const double mean = sum / (double)count;
        for (int i = 0; i < p->n; i++) {
            double s;
            bn_centered_sums(x + bn_run(p, i, c), NULL, (float)mean, hw, &s, NULL, NULL);
            sq += s;
        }
        const double var = sq / (double)count;
        const float invstd = (float)(1.0 / sqrt(var + (double)p->eps));
        save_mean[c] = (float)mean;
        save_invstd[c] = invstd;
        if (running_mean) {
            const double m = p->momentum;
            running_mean[c] = (float)((1.0 - m) * running_mean[c] + m * mean);
            running_var[c] = (float)((1.0 - m) * running_var[c] +
                                     m * var * (double)count / (double)(count - 1));
        }
        const float a = invstd * gamma[c], b = beta[c] - (float)mean * a;
        for (int i = 0; i < p->n; i++)
            bn_affine(x + bn_run(p, i, c), a, b, hw, y + bn_run(p, i, c));
    }
}

void bn_train_backward(const bn_params *p, int c0, int c1, const float *x, const float *dy,
                       const float *gamma, const float *save_mean, const float *save_invstd,
                       float *dx, float *dgamma, float *dbeta)
{
    bn_check(p, c0, c1);
    const size_t hw = (size_t)p->hw, count = (size_t)p->n * hw;
    for (int c = c0; c < c1; c++) {
        const float m = save_mean[c], invstd = save_invstd[c];
        double sum = 0.0, dotp = 0.0;
        for (int i = 0; i < p->n; i++) {
            double sd, d;
            bn_centered_sums(x + bn_run(p, i, c), dy + bn_run(p, i, c), m, hw, NULL, &sd, &d);
            sum += sd, dotp += d;
        }
        if (dgamma) dgamma[c] += (float)(dotp * invstd);
        if (dbeta) dbeta[c] += (float)sum;
        if (!dx) continue;
        /* dx = (dy - sum / N - (x - mean) * k) * invstd * gamma, k = dotp * invstd^2 / N */
        const float k = (float)(dotp * invstd * invstd / (double)count);
        const float gm = (float)(sum / (double)count), a = invstd * gamma[c];
        for (int i = 0; i < p->n; i++)
            bn_train_dx(x + bn_run(p, i, c), dy + bn_run(p, i, c), m, gm, k, a, hw, dx + bn_run(p, i, c));
    }
}
