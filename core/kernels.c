/* Compute kernels (see kernels.h): the base every other kernel file builds on (activations, parts,
 * output sizes) and the elementwise layers. Convolutions, pooling and linear layers live in the
 * kernels_*.c files above this one (see the README's map of core/).
 *
 * Elementwise loops are written as fixed blocks of KERNELS_BLOCK that first load into a local
 * array and then store: gcc -O2 vectorizes such blocks, and because every load of a block precedes
 * its stores the vectorized code stays correct when the output aliases an input (y == a). */
#include "kernels.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels_internal.h"

/* ---- activations ---- */

static inline __attribute__((always_inline)) void bias_act_impl(float *y, size_t n, float b,
                                                                act_kind act)
{
    size_t i = 0;
    for (; i + KERNELS_BLOCK <= n; i += KERNELS_BLOCK) {
        float t[KERNELS_BLOCK];
        for (size_t j = 0; j < KERNELS_BLOCK; j++) t[j] = y[i + j] + b;
        for (size_t j = 0; j < KERNELS_BLOCK; j++) y[i + j] = kernels_act_one(act, t[j]);
    }
    for (; i < n; i++) y[i] = kernels_act_one(act, y[i] + b);
}

/* One specialized loop per activation (the switch is outside the loop). */
void kernels_bias_act(float *y, size_t n, float b, act_kind act)
{
    switch (act) {
    case ACT_NONE:
        if (b != 0.0f) bias_act_impl(y, n, b, ACT_NONE);
        break;
    case ACT_RELU: bias_act_impl(y, n, b, ACT_RELU); break;
    case ACT_RELU6: bias_act_impl(y, n, b, ACT_RELU6); break;
    case ACT_HSWISH: bias_act_impl(y, n, b, ACT_HSWISH); break;
    case ACT_HSIGMOID: bias_act_impl(y, n, b, ACT_HSIGMOID); break;
    }
}

void act_forward(act_kind act, float *x, size_t n)
{
    if (act != ACT_NONE) kernels_bias_act(x, n, 0.0f, act);
}

/* dy * act'(x) with PyTorch 1.13's edges (threshold_backward, hardtanh_backward,
 * hardswish_backward, hardsigmoid_backward). hardswish_backward's vectorized loop, which takes
 * every element but a tensor's short scalar tail, gives dy at x = 3 (its scalar tail 1.5 dy):
 * the vectorized rule is the one followed. */
/* c ? a : b by bit masks: both sides are computed whatever c is, so gcc vectorizes the loop (it
 * keeps a product or division under a plain ?: conditional, as they could trap, and then the loop
 * stays scalar with a branch per element). */
static inline __attribute__((always_inline)) float act_select(int c, float a, float b)
{
    uint32_t ai, bi, r;
    const uint32_t m = -(uint32_t)(c != 0);
    memcpy(&ai, &a, sizeof ai);
    memcpy(&bi, &b, sizeof bi);
    r = (ai & m) | (bi & ~m);
    float f;
    memcpy(&f, &r, sizeof f);
    return f;
}

static inline __attribute__((always_inline)) float act_grad_one(act_kind act, float x, float dy)
{
    switch (act) {
    case ACT_RELU: return x > 0.0f ? dy : 0.0f;
    case ACT_RELU6: return act_select((x > 0.0f) & (x < 6.0f), dy, 0.0f);
    case ACT_HSWISH: return act_select(x < -3.0f, 0.0f, act_select(x < 3.0f, dy * (x / 3.0f + 0.5f), dy));
    case ACT_HSIGMOID: return act_select((x > -3.0f) & (x < 3.0f), dy * (1.0f / 6.0f), 0.0f);
    case ACT_NONE: break;
    }
    return dy;
}

static inline __attribute__((always_inline)) void act_backward_impl(act_kind act, const float *x,
                                                                    const float *dy, float *dx,
                                                                    size_t n)
{
    size_t i = 0;
    for (; i + KERNELS_BLOCK <= n; i += KERNELS_BLOCK) {
        float t[KERNELS_BLOCK];
        for (size_t j = 0; j < KERNELS_BLOCK; j++) t[j] = act_grad_one(act, x[i + j], dy[i + j]);
        for (size_t j = 0; j < KERNELS_BLOCK; j++) dx[i + j] = t[j];
    }
    for (; i < n; i++) dx[i] = act_grad_one(act, x[i], dy[i]);
}

void act_backward(act_kind act, const float *x, const float *dy, float *dx, size_t n)
{
    switch (act) {
    case ACT_NONE:
        if (dx != dy) memmove(dx, dy, n * sizeof *dx);
        break;
    case ACT_RELU: act_backward_impl(ACT_RELU, x, dy, dx, n); break;
    case ACT_RELU6: act_backward_impl(ACT_RELU6, x, dy, dx, n); break;
    case ACT_HSWISH: act_backward_impl(ACT_HSWISH, x, dy, dx, n); break;
    case ACT_HSIGMOID: act_backward_impl(ACT_HSIGMOID, x, dy, dx, n); break;
    }
}

double kernels_sum_floats(const float *x, size_t n)
{
    float part[KERNELS_BLOCK] = {0};
    size_t i = 0;
    for (; i + KERNELS_BLOCK <= n; i += KERNELS_BLOCK)
        for (size_t j = 0; j < KERNELS_BLOCK; j++) part[j] += x[i + j];
    double sum = 0.0;
    for (; i < n; i++) sum += x[i];
    for (size_t j = 0; j < KERNELS_BLOCK; j++) sum += part[j];
    return sum;
}

double kernels_dot_floats(const float *x, const float *y, size_t n)
{
    float part[KERNELS_BLOCK] = {0};
    size_t i = 0;
    for (; i + KERNELS_BLOCK <= n; i += KERNELS_BLOCK)
        for (size_t j = 0; j < KERNELS_BLOCK; j++) part[j] += x[i + j] * y[i + j];
    double sum = 0.0;
    for (; i < n; i++) sum += (double)x[i] * y[i];
    for (size_t j = 0; j < KERNELS_BLOCK; j++) sum += part[j];
    return sum;
}

/* ---- output parts ---- */

kernels_part kernels_part_split(kernels_part_axis axis, int n, int align, int ith, int nth)
{
    assert(n >= 0 && align >= 1 && nth >= 1 && ith >= 0 && ith < nth);
    const int64_t chunks = (n + align - 1) / align;
    const int64_t c0 = chunks * ith / nth, c1 = chunks * (ith + 1) / nth;
    kernels_part part = {axis, (int)(c0 * align < n ? c0 * align : n),
                         (int)(c1 * align < n ? c1 * align : n)};
    return part;
}

/* ---- output-size / padding helpers ---- */

/* Returns 0 (never a negative size) when not even one window fits. */
int kernels_out_size(int n, int k, int s, int pad_before, int pad_after, int ceil_mode)
{
    assert(k > 0 && s > 0);
    int span = n + pad_before + pad_after - k;
    int out = kernels_floor_div(span + (ceil_mode ? s - 1 : 0), s) + 1;
    if (ceil_mode && (out - 1) * s >= n + pad_before) out--;
    return out > 0 ? out : 0;
}

void kernels_tf_same(int n, int k, int s, int *out, int *pad_before, int *pad_after)
{
    assert(k > 0 && s > 0 && n >= 0);
    int o = (n + s - 1) / s;
    int total = kernels_imax((o - 1) * s + k - n, 0);
    *out = o;
    *pad_before = total / 2;
    *pad_after = total - total / 2;
}

/* ---- dense / elementwise ---- */

/* y[i] = act(a[i] + b[i]); y may equal a or b (see the block note at the top). */
static inline __attribute__((always_inline)) void add_act_impl(size_t n, const float *a,
                                                               const float *b, act_kind act,
                                                               float *y)
{
    size_t i = 0;
    for (; i + KERNELS_BLOCK <= n; i += KERNELS_BLOCK) {
        float t[KERNELS_BLOCK];
        for (size_t j = 0; j < KERNELS_BLOCK; j++) t[j] = a[i + j] + b[i + j];
        for (size_t j = 0; j < KERNELS_BLOCK; j++) y[i + j] = kernels_act_one(act, t[j]);
    }
    for (; i < n; i++) y[i] = kernels_act_one(act, a[i] + b[i]);
}

void add_forward(size_t n, const float *a, const float *b, act_kind act, float *y)
{
    switch (act) {
    case ACT_NONE: add_act_impl(n, a, b, ACT_NONE, y); break;
    case ACT_RELU: add_act_impl(n, a, b, ACT_RELU, y); break;
    case ACT_RELU6: add_act_impl(n, a, b, ACT_RELU6, y); break;
    case ACT_HSWISH: add_act_impl(n, a, b, ACT_HSWISH, y); break;
    case ACT_HSIGMOID: add_act_impl(n, a, b, ACT_HSIGMOID, y); break;
    }
}

void scale_channels_forward(int c, int hw, const float *x, const float *scale, float *y)
{
    for (int ci = 0; ci < c; ci++) {
        const float s = scale[ci];
        const float *xc = x + (size_t)ci * (size_t)hw;
        float *yc = y + (size_t)ci * (size_t)hw;
        size_t i = 0, n = (size_t)hw;
        for (; i + KERNELS_BLOCK <= n; i += KERNELS_BLOCK) {
            float t[KERNELS_BLOCK];
            for (size_t j = 0; j < KERNELS_BLOCK; j++) t[j] = xc[i + j] * s;
            for (size_t j = 0; j < KERNELS_BLOCK; j++) yc[i + j] = t[j];
        }
        for (; i < n; i++) yc[i] = xc[i] * s;
    }
}

void scale_channels_backward(int c, int hw, const float *x, const float *scale, const float *dy,
                             float *dx, float *dscale)
{
    for (int ci = 0; ci < c; ci++) {
        const float s = scale[ci];
        const float *xc = x + (size_t)ci * (size_t)hw, *dyc = dy + (size_t)ci * (size_t)hw;
        float *dxc = dx + (size_t)ci * (size_t)hw;
        const size_t n = (size_t)hw;
        dscale[ci] = (float)kernels_dot_floats(dyc, xc, n); /* first: dx may be dy */
        size_t i = 0;
        for (; i + KERNELS_BLOCK <= n; i += KERNELS_BLOCK) {
            float t[KERNELS_BLOCK];
            for (size_t j = 0; j < KERNELS_BLOCK; j++) t[j] = dyc[i + j] * s;
            for (size_t j = 0; j < KERNELS_BLOCK; j++) dxc[i + j] = t[j];
        }
        for (; i < n; i++) dxc[i] = dyc[i] * s;
    }
}

void channel_shuffle_forward(int c, int hw, int groups, const float *x, float *y)
{
    assert(groups > 0 && c % groups == 0);
    const int per = c / groups;
    const size_t plane_bytes = (size_t)hw * sizeof *x;
    for (int g = 0; g < groups; g++)
        for (int j = 0; j < per; j++)
            memcpy(y + (size_t)(j * groups + g) * (size_t)hw, x + (size_t)(g * per + j) * (size_t)hw,
                   plane_bytes);
}

void concat_forward(int n_inputs, const float *const *xs, const int *cs, int hw, float *y)
{
    size_t at = 0;
    for (int i = 0; i < n_inputs; i++) {
        const size_t n = (size_t)cs[i] * (size_t)hw;
        memcpy(y + at, xs[i], n * sizeof *y);
        at += n;
    }
}

void softmax_forward(int n, const float *x, float *y)
{
    assert(n > 0);
    float m = x[0];
    for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        y[i] = expf(x[i] - m);
        sum += y[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) y[i] *= inv;
}

/* Total order for top-k: larger value first, NaN after every number, then lower index first. */
static int topk_before(float a, int ia, float b, int ib)
{
    const int na = isnan(a), nb = isnan(b);
    if (na != nb) return nb;
    if (!na && a != b) return a > b;
    return ia < ib;
}

/* Partial selection: idx[0..filled) stays sorted; each element is inserted only if it beats the
 * current k-th, so the cost is O(n*k) with k small. */
void topk_indices(int n, const float *x, int k, int *idx)
{
    assert(k >= 0 && k <= n);
    int filled = 0;
    for (int i = 0; i < n; i++) {
        if (filled == k && (k == 0 || !topk_before(x[i], i, x[idx[k - 1]], idx[k - 1]))) continue;
        int pos = filled < k ? filled++ : k - 1;
        while (pos > 0 && topk_before(x[i], i, x[idx[pos - 1]], idx[pos - 1])) {
            idx[pos] = idx[pos - 1];
            pos--;
        }
        idx[pos] = i;
    }
}
