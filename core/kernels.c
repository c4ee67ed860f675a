/* Compute kernels (see kernels.h): size helpers, GEMM-based convolution, pooling, dense and
 * elementwise layers. The depthwise convolution lives in kernels_dw.c.
 *
 * Elementwise loops are written as fixed blocks of KERNELS_BLOCK that first load into a local
 * array and then store: gcc -O2 vectorizes such blocks, and because every load of a block precedes
 * its stores the vectorized code stays correct when the output aliases an input (y == a). */
#include "kernels.h"

#include <assert.h>
#include <cblas.h>
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

/* ---- convolution ---- */

static int conv_is_depthwise(const conv2d_params *p)
{
    return p->groups == p->c_in && p->groups == p->c_out;
}

/* 1x1, stride 1, no padding: the input already is the GEMM's right-hand matrix. */
static int conv_is_direct_gemm(const conv2d_params *p)
{
    return p->k_h == 1 && p->k_w == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_t == 0 &&
           p->pad_l == 0 && p->h_out == p->h_in && p->w_out == p->w_in;
}

static void conv_check_params(const conv2d_params *p)
{
    assert(p->c_in > 0 && p->c_out > 0 && p->h_in > 0 && p->w_in > 0);
    assert(p->h_out > 0 && p->w_out > 0 && p->k_h > 0 && p->k_w > 0);
    assert(p->stride_h > 0 && p->stride_w > 0 && p->pad_t >= 0 && p->pad_l >= 0);
    assert(p->groups > 0 && p->c_in % p->groups == 0 && p->c_out % p->groups == 0);
    (void)p;
}

size_t conv2d_scratch_floats(const conv2d_params *p)
{
    if (conv_is_depthwise(p) || conv_is_direct_gemm(p)) return 0;
    return (size_t)(p->c_in / p->groups) * (size_t)p->k_h * (size_t)p->k_w * (size_t)p->h_out *
           (size_t)p->w_out;
}

/* col[(ci*k_h + i)*k_w + j][oh*w_out + ow] = x[ci][oh*s_h - pad_t + i][ow*s_w - pad_l + j], zero
 * outside the input, for the c channels starting at x. Every cell of col is written. */
static void conv_im2col(const conv2d_params *p, const float *x, int c, float *col)
{
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    const size_t hw_out = (size_t)p->h_out * (size_t)p->w_out;
    const int w_out = p->w_out, sw = p->stride_w;
    for (int ci = 0; ci < c; ci++) {
        const float *xc = x + (size_t)ci * hw_in;
        for (int i = 0; i < p->k_h; i++) {
            for (int j = 0; j < p->k_w; j++) {
                float *row = col + ((size_t)(ci * p->k_h + i) * (size_t)p->k_w + (size_t)j) * hw_out;
                const int off = j - p->pad_l;
                int lo, hi;
                kernels_tap_range(off, sw, p->w_in, w_out, &lo, &hi);
                for (int oh = 0; oh < p->h_out; oh++) {
                    float *dst = row + (size_t)oh * (size_t)w_out;
                    const int ih = oh * p->stride_h - p->pad_t + i;
                    if (ih < 0 || ih >= p->h_in) {
                        memset(dst, 0, (size_t)w_out * sizeof *dst);
                        continue;
                    }
                    const float *xrow = xc + (size_t)ih * (size_t)p->w_in;
                    /* size-0 calls skipped: most rows need no padding and the calls are short */
                    if (lo > 0) memset(dst, 0, (size_t)lo * sizeof *dst);
                    if (hi > lo && sw == 1) {
                        memcpy(dst + lo, xrow + lo + off, (size_t)(hi - lo) * sizeof *dst);
                    } else {
                        for (int ow = lo; ow < hi; ow++) dst[ow] = xrow[ow * sw + off];
                    }
                    if (hi < w_out) memset(dst + hi, 0, (size_t)(w_out - hi) * sizeof *dst);
                }
            }
        }
    }
}

void conv2d_forward(const conv2d_params *p, const float *x, const float *w, const float *bias,
                    float *y, float *scratch)
{
    conv_check_params(p);
    if (conv_is_depthwise(p)) {
        dwconv2d_forward(p, x, w, bias, y);
        return;
    }
    const int direct = conv_is_direct_gemm(p);
    assert(direct || scratch != NULL);
    const int cig = p->c_in / p->groups, cog = p->c_out / p->groups;
    const int k = cig * p->k_h * p->k_w;
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    const size_t hw_out = (size_t)p->h_out * (size_t)p->w_out;
    for (int g = 0; g < p->groups; g++) {
        const float *xg = x + (size_t)g * (size_t)cig * hw_in;
        const float *rhs = xg;
        if (!direct) {
            conv_im2col(p, xg, cig, scratch);
            rhs = scratch;
        }
        float *yg = y + (size_t)g * (size_t)cog * hw_out;
        /* yg[cog][hw_out] = w_g[cog][k] * rhs[k][hw_out] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cog, (int)hw_out, k, 1.0f,
                    w + (size_t)g * (size_t)cog * (size_t)k, k, rhs, (int)hw_out, 0.0f, yg,
                    (int)hw_out);
        for (int co = 0; co < cog; co++) {
            float b = bias ? bias[g * cog + co] : 0.0f;
            kernels_bias_act(yg + (size_t)co * hw_out, hw_out, b, p->act);
        }
    }
}

void dwconv2d_forward(const conv2d_params *p, const float *x, const float *w, const float *bias,
                      float *y)
{
    dwconv2d_forward_isa(p, x, w, bias, y, kernels_isa_best());
}

/* Channels are independent: channels [c0, c1) are the depthwise convolution of c1 - c0 channels. */
void dwconv2d_forward_part(const conv2d_params *p, const float *x, const float *w,
                           const float *bias, float *y, int c0, int c1)
{
    assert(0 <= c0 && c0 <= c1 && c1 <= p->c_out);
    if (c0 == c1) return;
    conv2d_params q = *p;
    q.c_in = q.c_out = q.groups = c1 - c0;
    const size_t kk = (size_t)p->k_h * (size_t)p->k_w;
    dwconv2d_forward(&q, x + (size_t)c0 * (size_t)p->h_in * (size_t)p->w_in, w + (size_t)c0 * kk,
                     bias ? bias + c0 : NULL, y + (size_t)c0 * (size_t)p->h_out * (size_t)p->w_out);
}

/* ---- pooling ----
 * Per output row and tile of output columns: the valid input rows are first reduced vertically
 * into a row buffer on the stack (contiguous, vectorizable), padded with the identity (-inf / 0)
 * where the windows leave the input; the buffer is then reduced horizontally with the stride and
 * no bounds checks. Windows wider than the buffer fall back to tap-by-tap accumulation. */

/* PyTorch's max: a NaN in the window wins. Written so that it compiles without branches. */
static inline float pool_max1(float m, float v)
{
    const float mx = v > m ? v : m;
    return v != v ? v : mx;
}

static void pool_vmax(float *restrict dst, const float *restrict src, int n)
{
    int i = 0;
    for (; i + KERNELS_BLOCK <= n; i += KERNELS_BLOCK)
        for (int j = 0; j < KERNELS_BLOCK; j++) dst[i + j] = pool_max1(dst[i + j], src[i + j]);
    for (; i < n; i++) dst[i] = pool_max1(dst[i], src[i]);
}

static void pool_vadd(float *restrict dst, const float *restrict src, int n)
{
    int i = 0;
    for (; i + KERNELS_BLOCK <= n; i += KERNELS_BLOCK)
        for (int j = 0; j < KERNELS_BLOCK; j++) dst[i + j] += src[i + j];
    for (; i < n; i++) dst[i] += src[i];
}

/* buf[t] = reduction over input rows [h0, h1) of input column base + t, for t < span. */
static void pool_stage(const pool2d_params *p, const float *xc, int h0, int h1, int base,
                       int span, float *buf)
{
    const float ident = p->kind == POOL_MAX ? -INFINITY : 0.0f;
    const int t_lo = kernels_imin(kernels_imax(-base, 0), span);
    const int t_hi = kernels_imax(kernels_imin(p->w_in - base, span), t_lo);
    for (int t = 0; t < t_lo; t++) buf[t] = ident;
    for (int t = t_hi; t < span; t++) buf[t] = ident;
    float *dst = buf + t_lo;
    const int n = t_hi - t_lo;
    if (n == 0) return;
    if (h1 <= h0) {
        for (int t = 0; t < n; t++) dst[t] = ident;
        return;
    }
    const float *col = xc + (base + t_lo);
    memcpy(dst, col + (size_t)h0 * (size_t)p->w_in, (size_t)n * sizeof *dst);
    for (int ih = h0 + 1; ih < h1; ih++) {
        if (p->kind == POOL_MAX)
            pool_vmax(dst, col + (size_t)ih * (size_t)p->w_in, n);
        else
            pool_vadd(dst, col + (size_t)ih * (size_t)p->w_in, n);
    }
}

/* y[o] = max_j buf[o*s + j], o < n. */
static inline __attribute__((always_inline)) void pool_hmax_impl(const float *restrict buf, int n, int k, int s, float *restrict y)
{
    int o = 0;
    for (; o + KERNELS_BLOCK <= n; o += KERNELS_BLOCK) {
        float t[KERNELS_BLOCK];
        for (int j = 0; j < KERNELS_BLOCK; j++) t[j] = buf[(o + j) * s];
        for (int kj = 1; kj < k; kj++)
            for (int j = 0; j < KERNELS_BLOCK; j++) t[j] = pool_max1(t[j], buf[(o + j) * s + kj]);
        for (int j = 0; j < KERNELS_BLOCK; j++) y[o + j] = t[j];
    }
    for (; o < n; o++) {
        float m = buf[o * s];
        for (int kj = 1; kj < k; kj++) m = pool_max1(m, buf[o * s + kj]);
        y[o] = m;
    }
}

/* y[o] = sum_j buf[o*s + j] / (row_div * col_div[o]), o < n. */
static inline __attribute__((always_inline)) void pool_havg_impl(const float *restrict buf, const float *restrict col_div, float row_div, int n,
                      int k, int s, float *restrict y)
{
    int o = 0;
    for (; o + KERNELS_BLOCK <= n; o += KERNELS_BLOCK) {
        float t[KERNELS_BLOCK];
        for (int j = 0; j < KERNELS_BLOCK; j++) t[j] = buf[(o + j) * s];
        for (int kj = 1; kj < k; kj++)
            for (int j = 0; j < KERNELS_BLOCK; j++) t[j] += buf[(o + j) * s + kj];
        for (int j = 0; j < KERNELS_BLOCK; j++) y[o + j] = t[j] / (row_div * col_div[o + j]);
    }
    for (; o < n; o++) {
        float sum = buf[o * s];
        for (int kj = 1; kj < k; kj++) sum += buf[o * s + kj];
        y[o] = sum / (row_div * col_div[o]);
    }
}

/* Stride 1 gets its own instance, where the blocks are contiguous and vectorize. */
static void pool_hmax(const float *buf, int n, int k, int s, float *y)
{
    if (s == 1)
        pool_hmax_impl(buf, n, k, 1, y);
    else
        pool_hmax_impl(buf, n, k, s, y);
}

static void pool_havg(const float *buf, const float *col_div, float row_div, int n, int k, int s,
                      float *y)
{
    if (s == 1)
        pool_havg_impl(buf, col_div, row_div, n, k, 1, y);
    else
        pool_havg_impl(buf, col_div, row_div, n, k, s, y);
}

/* Fallback for windows wider than the stage buffer: every tap (row ih, column j) updates the
 * output columns it reaches. */
static void pool_row_taps(const pool2d_params *p, const float *xc, int h0, int h1, int pool_h,
                          float *yrow)
{
    const int is_max = p->kind == POOL_MAX;
    for (int ow = 0; ow < p->w_out; ow++) yrow[ow] = is_max ? -INFINITY : 0.0f;
    for (int ih = h0; ih < h1; ih++) {
        const float *xrow = xc + (size_t)ih * (size_t)p->w_in;
        for (int j = 0; j < p->k_w; j++) {
            const int off = j - p->pad_l, sw = p->stride_w;
            int lo, hi;
            kernels_tap_range(off, sw, p->w_in, p->w_out, &lo, &hi);
            for (int ow = lo; ow < hi; ow++) {
                const float v = xrow[ow * sw + off];
                yrow[ow] = is_max ? pool_max1(yrow[ow], v) : yrow[ow] + v;
            }
        }
    }
    if (is_max) return;
    for (int ow = 0; ow < p->w_out; ow++) {
        const int wstart = ow * p->stride_w - p->pad_l;
        const int wend = kernels_imin(wstart + p->k_w, p->w_in + p->pad_r);
        const int n_real = (h1 - h0) * (kernels_imin(wend, p->w_in) - kernels_imax(wstart, 0));
        const int divisor = p->count_include_pad ? pool_h * (wend - wstart) : n_real;
        yrow[ow] /= (float)divisor;
    }
}

void pool2d_forward(const pool2d_params *p, const float *x, float *y)
{
    pool2d_forward_isa(p, x, y, kernels_isa_best());
}

void pool2d_forward_part(const pool2d_params *p, const float *x, float *y, int c0, int c1)
{
    assert(0 <= c0 && c0 <= c1 && c1 <= p->c);
    if (c0 == c1) return;
    pool2d_params q = *p;
    q.c = c1 - c0;
    pool2d_forward(&q, x + (size_t)c0 * (size_t)p->h_in * (size_t)p->w_in,
                   y + (size_t)c0 * (size_t)p->h_out * (size_t)p->w_out);
}

void pool2d_forward_isa(const pool2d_params *p, const float *x, float *y, kernels_isa isa)
{
    assert(p->c > 0 && p->h_in > 0 && p->w_in > 0 && p->h_out > 0 && p->w_out > 0);
    assert(p->k_h > 0 && p->k_w > 0 && p->stride_h > 0 && p->stride_w > 0);
    if (isa >= KERNELS_ISA_AVX512 && kernels_pool_avx512_applies(p)) {
        kernels_pool_avx512(p, x, y);
        return;
    }
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    const size_t hw_out = (size_t)p->h_out * (size_t)p->w_out;
    const int sw = p->stride_w, w_out = p->w_out;
    const int tiled = p->k_w <= KERNELS_POOL_TILE;
    const int tile_out = tiled ? (KERNELS_POOL_TILE - p->k_w) / sw + 1 : w_out;
    float buf[KERNELS_POOL_TILE], col_div[KERNELS_POOL_TILE];
    for (int ow0 = 0; ow0 < w_out; ow0 += tile_out) {
        const int n_out = kernels_imin(tile_out, w_out - ow0);
        const int base = ow0 * sw - p->pad_l, span = (n_out - 1) * sw + p->k_w;
        /* divisor = row part * column part (PyTorch: padded window inside [-pad, n + pad) when
         * count_include_pad, else the real cells) */
        if (tiled && p->kind == POOL_AVG) {
            for (int o = 0; o < n_out; o++) {
                col_div[o] = (float)kernels_pool_axis_count(base + o * sw, p->k_w, p->w_in, p->pad_r,
                                                            p->count_include_pad);
            }
        }
        for (int c = 0; c < p->c; c++) {
            const float *xc = x + (size_t)c * hw_in;
            for (int oh = 0; oh < p->h_out; oh++) {
                const int hstart = oh * p->stride_h - p->pad_t;
                const int hend = kernels_imin(hstart + p->k_h, p->h_in + p->pad_b);
                const int h0 = kernels_imax(hstart, 0), h1 = kernels_imin(hend, p->h_in);
                float *yrow = y + (size_t)c * hw_out + (size_t)oh * (size_t)w_out + (size_t)ow0;
                if (!tiled) {
                    pool_row_taps(p, xc, h0, h1, hend - hstart, yrow);
                    continue;
                }
                pool_stage(p, xc, h0, h1, base, span, buf);
                if (p->kind == POOL_MAX) {
                    pool_hmax(buf, n_out, p->k_w, sw, yrow);
                } else {
                    const int row_div = p->count_include_pad ? hend - hstart : h1 - h0;
                    pool_havg(buf, col_div, (float)row_div, n_out, p->k_w, sw, yrow);
                }
            }
        }
    }
}

/* Sum of n contiguous floats in KERNELS_BLOCK interleaved partial sums (vectorizes). */
static float sum_floats(const float *x, size_t n)
{
    float part[KERNELS_BLOCK] = {0};
    size_t i = 0;
    for (; i + KERNELS_BLOCK <= n; i += KERNELS_BLOCK)
        for (size_t j = 0; j < KERNELS_BLOCK; j++) part[j] += x[i + j];
    float sum = 0.0f;
    for (; i < n; i++) sum += x[i];
    for (size_t j = 0; j < KERNELS_BLOCK; j++) sum += part[j];
    return sum;
}

void adaptive_avgpool2d_forward_isa(int c, int h_in, int w_in, int h_out, int w_out,
                                    const float *x, float *y, kernels_isa isa)
{
    assert(c > 0 && h_in > 0 && w_in > 0 && h_out > 0 && w_out > 0);
    if (h_out == 1 && w_out == 1) { /* global average pooling, the common case */
        const size_t hw = (size_t)h_in * (size_t)w_in;
        if (isa >= KERNELS_ISA_AVX512) {
            kernels_global_avg_avx512(c, hw, x, y);
            return;
        }
        for (int ci = 0; ci < c; ci++) y[ci] = sum_floats(x + (size_t)ci * hw, hw) / (float)hw;
        return;
    }
    for (int ci = 0; ci < c; ci++) {
        const float *xc = x + (size_t)ci * (size_t)h_in * (size_t)w_in;
        for (int oh = 0; oh < h_out; oh++) {
            const int hs = oh * h_in / h_out, he = ((oh + 1) * h_in + h_out - 1) / h_out;
            for (int ow = 0; ow < w_out; ow++) {
                const int ws = ow * w_in / w_out, we = ((ow + 1) * w_in + w_out - 1) / w_out;
                float sum = 0.0f;
                for (int ih = hs; ih < he; ih++) {
                    const float *xrow = xc + (size_t)ih * (size_t)w_in;
                    for (int iw = ws; iw < we; iw++) sum += xrow[iw];
                }
                y[((size_t)ci * (size_t)h_out + (size_t)oh) * (size_t)w_out + (size_t)ow] =
                    sum / (float)((he - hs) * (we - ws));
            }
        }
    }
}

void adaptive_avgpool2d_forward(int c, int h_in, int w_in, int h_out, int w_out, const float *x,
                                float *y)
{
    adaptive_avgpool2d_forward_isa(c, h_in, w_in, h_out, w_out, x, y, kernels_isa_best());
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

void linear_forward_isa(int n_in, int n_out, const float *x, const float *w, const float *bias,
                        act_kind act, float *y, kernels_isa isa)
{
    assert(n_in > 0 && n_out > 0);
    if (isa >= KERNELS_ISA_AVX512)
        kernels_gemv_avx512(n_in, n_out, x, w, y);
    else
        cblas_sgemv(CblasRowMajor, CblasNoTrans, n_out, n_in, 1.0f, w, n_in, x, 1, 0.0f, y, 1);
    if (bias)
        add_forward((size_t)n_out, y, bias, act, y);
    else
        act_forward(act, y, (size_t)n_out);
}

void linear_forward(int n_in, int n_out, const float *x, const float *w, const float *bias,
                    act_kind act, float *y)
{
    linear_forward_isa(n_in, n_out, x, w, bias, act, y, kernels_isa_best());
}

/* The AVX-512 GEMV computes rows in groups of 4 (kernels_gemv_avx512): parts keep the groups. */
#define LINEAR_PART_ALIGN 4

kernels_part linear_part(int n_out, int ith, int nth)
{
    if (kernels_isa_best() < KERNELS_ISA_AVX512) return kernels_part_split(KERNELS_PART_CHANNELS, n_out, n_out, ith, nth);
    return kernels_part_split(KERNELS_PART_CHANNELS, n_out, LINEAR_PART_ALIGN, ith, nth);
}

void linear_forward_part(int n_in, int n_out, const float *x, const float *w, const float *bias,
                         act_kind act, float *y, const kernels_part *part)
{
    assert(part->axis == KERNELS_PART_CHANNELS && 0 <= part->lo && part->lo <= part->hi &&
           part->hi <= n_out);
    const int o0 = part->lo, n = part->hi - part->lo;
    if (n == 0) return;
    if (n == n_out) {
        linear_forward(n_in, n_out, x, w, bias, act, y);
        return;
    }
    assert(kernels_isa_best() >= KERNELS_ISA_AVX512);
    linear_forward(n_in, n, x, w + (size_t)o0 * (size_t)n_in, bias ? bias + o0 : NULL, act, y + o0);
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
