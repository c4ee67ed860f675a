/* Pooling (see kernels.h): the portable max / average kernels and the dispatch to their AVX2
 * variant in kernels_pool256.c (on AVX-512 CPUs too, see kernels_pool512.c); adaptive average
 * pooling, whose global average has AVX-512 and AVX2 variants. */
#include "kernels.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#include "kernels_internal.h"

#if KERNELS_X86
#include <emmintrin.h>
#endif

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
    pool2d_forward_isa(p, x, y, cpu_isa_best());
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

void pool2d_forward_bias_part(const pool2d_params *p, const float *bias, act_kind act, const float *x, float *y,
                              int c0, int c1)
{
    assert(0 <= c0 && c0 <= c1 && c1 <= p->c && bias);
    if (c0 == c1) return;
    pool2d_params q = *p;
    q.c = c1 - c0;
    pool2d_forward_bias_isa(&q, bias + c0, act, x + (size_t)c0 * (size_t)p->h_in * (size_t)p->w_in,
                            y + (size_t)c0 * (size_t)p->h_out * (size_t)p->w_out, cpu_isa_best());
}

void pool2d_forward_bias_isa(const pool2d_params *p, const float *bias, act_kind act, const float *x, float *y,
                             cpu_isa isa)
{
    if (isa >= CPU_ISA_AVX2 && kernels_pool_avx2_applies(p)) { /* fused in registers */
        kernels_pool_avx2(p, x, y, bias, act);
        return;
    }
    pool2d_forward_isa(p, x, y, isa);
    const size_t hw_out = (size_t)p->h_out * (size_t)p->w_out;
    for (int c = 0; c < p->c; c++) kernels_bias_act(y + (size_t)c * hw_out, hw_out, bias[c], act);
}

void pool2d_forward_isa(const pool2d_params *p, const float *x, float *y, cpu_isa isa)
{
    assert(p->c > 0 && p->h_in > 0 && p->w_in > 0 && p->h_out > 0 && p->w_out > 0);
    assert(p->k_h > 0 && p->k_w > 0 && p->stride_h > 0 && p->stride_w > 0);
    if (isa >= CPU_ISA_AVX2 && kernels_pool_avx2_applies(p)) {
        kernels_pool_avx2(p, x, y, NULL, ACT_NONE);
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
                                    const float *x, float *y, cpu_isa isa)
{
    assert(c > 0 && h_in > 0 && w_in > 0 && h_out > 0 && w_out > 0);
    if (h_out == 1 && w_out == 1) { /* global average pooling, the common case */
        const size_t hw = (size_t)h_in * (size_t)w_in;
        if (isa >= CPU_ISA_AVX512) {
            kernels_global_avg_avx512(c, hw, x, y);
            return;
        }
        if (isa >= CPU_ISA_AVX2) {
            kernels_global_avg_avx2(c, hw, x, y);
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
    adaptive_avgpool2d_forward_isa(c, h_in, w_in, h_out, w_out, x, y, cpu_isa_best());
}


/* ---- backward (training), PyTorch 1.13's CPU kernels transposed ---- */

/* Max: each output adds its gradient to the cell max_pool2d_with_indices records: the window over
 * the real cells scanned row-major, replaced on a strictly larger value or on any NaN (so the
 * last NaN, else the first maximum; the first cell when all are -inf). */

/* One step of that scan without a branch (the picks are data-dependent: a branch is mispredicted
 * half the time): cell idx with value v replaces (m, best) when v > m or v is NaN. */
static inline void pool_max_take(float v, int idx, float *m, int *best)
{
    const uint32_t take = -(uint32_t)((v > *m) | (v != v));
    uint32_t vb, mb;
    memcpy(&vb, &v, sizeof vb);
    memcpy(&mb, m, sizeof mb);
    mb = (vb & take) | (mb & ~take);
    memcpy(m, &mb, sizeof mb);
    *best = (int)(((uint32_t)idx & take) | ((uint32_t)*best & ~take));
}

/* Outputs scanned side by side (independent chains the CPU overlaps, where one chain's compare ->
 * select -> compare latency was the whole cost). */
#define POOL_BWD_LANES 8

#if KERNELS_X86
/* pool_max_take for 4 outputs at once (SSE2, x86-64's baseline): the windows starting at columns
 * ws, ws + sw, ws + 2 sw, ws + 3 sw of rows [h0, h1), k_w wide and inside the row; the same picks. */
static void pool_max_lanes4(const float *xc, int w_in, int h0, int h1, int ws, int sw, int k_w, int *best)
{
    __m128 m = _mm_set1_ps(-INFINITY);
    const __m128i lane = _mm_set_epi32(3 * sw, 2 * sw, sw, 0);
    __m128i b = _mm_add_epi32(_mm_set1_epi32(h0 * w_in + ws), lane);
    for (int ih = h0; ih < h1; ih++)
        for (int kw = 0; kw < k_w; kw++) {
            const int at = ih * w_in + ws + kw;
            const float *s = xc + at;
            __m128 v;
            if (sw == 1) v = _mm_loadu_ps(s);
            else if (sw == 2) /* s0 s2 from s[0..3], s4 s6 from s[3..6]: nothing read past s[6] */
                v = _mm_shuffle_ps(_mm_loadu_ps(s), _mm_loadu_ps(s + 3), _MM_SHUFFLE(3, 1, 2, 0));
            else v = _mm_set_ps(s[3 * sw], s[2 * sw], s[sw], s[0]);
            const __m128 take = _mm_or_ps(_mm_cmpgt_ps(v, m), _mm_cmpunord_ps(v, v));
            m = _mm_or_ps(_mm_and_ps(take, v), _mm_andnot_ps(take, m));
            const __m128i ti = _mm_castps_si128(take), idx = _mm_add_epi32(_mm_set1_epi32(at), lane);
            b = _mm_or_si128(_mm_and_si128(ti, idx), _mm_andnot_si128(ti, b));
        }
    _mm_storeu_si128((__m128i *)best, b);
}
#endif

static void pool_max_backward(const pool2d_params *p, const float *x, const float *dy, float *dx)
{
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    const size_t hw_out = (size_t)p->h_out * (size_t)p->w_out;
    const int sw = p->stride_w, w_in = p->w_in;
    for (int c = 0; c < p->c; c++) {
        const float *xc = x + (size_t)c * hw_in, *dyc = dy + (size_t)c * hw_out;
        float *dxc = dx + (size_t)c * hw_in;
        for (int oh = 0; oh < p->h_out; oh++) {
            const int hs = oh * p->stride_h - p->pad_t;
            const int h0 = kernels_imax(hs, 0), h1 = kernels_imin(hs + p->k_h, p->h_in);
            const float *dyr = dyc + (size_t)oh * (size_t)p->w_out;
            for (int ow = 0; ow < p->w_out;) {
                const int ws = ow * sw - p->pad_l;
                if (ws >= 0 && ow + POOL_BWD_LANES <= p->w_out &&
                    ws + (POOL_BWD_LANES - 1) * sw + p->k_w <= w_in) { /* lanes of whole windows */
                    int best[POOL_BWD_LANES];
#if KERNELS_X86
                    pool_max_lanes4(xc, w_in, h0, h1, ws, sw, p->k_w, best);
                    pool_max_lanes4(xc, w_in, h0, h1, ws + 4 * sw, sw, p->k_w, best + 4);
#else
                    float m[POOL_BWD_LANES];
                    for (int l = 0; l < POOL_BWD_LANES; l++) m[l] = -INFINITY, best[l] = h0 * w_in + ws + l * sw;
                    for (int ih = h0; ih < h1; ih++)
                        for (int kw = 0; kw < p->k_w; kw++) {
                            const int at = ih * w_in + ws + kw;
                            for (int l = 0; l < POOL_BWD_LANES; l++)
                                pool_max_take(xc[at + l * sw], at + l * sw, &m[l], &best[l]);
                        }
#endif
                    if (h1 > h0) /* in output order, as one at a time */
                        for (int l = 0; l < POOL_BWD_LANES; l++) dxc[best[l]] += dyr[ow + l];
                    ow += POOL_BWD_LANES;
                    continue;
                }
#if KERNELS_X86
                if (ws >= 0 && ow + 4 <= p->w_out && ws + 3 * sw + p->k_w <= w_in) { /* a row's last 4-7 */
                    int best[4];
                    pool_max_lanes4(xc, w_in, h0, h1, ws, sw, p->k_w, best);
                    if (h1 > h0)
                        for (int l = 0; l < 4; l++) dxc[best[l]] += dyr[ow + l];
                    ow += 4;
                    continue;
                }
#endif
                const int w0 = kernels_imax(ws, 0), w1 = kernels_imin(ws + p->k_w, w_in);
                int best = h0 * w_in + w0;
                float m = -INFINITY;
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) pool_max_take(xc[ih * w_in + iw], ih * w_in + iw, &m, &best);
                if (h1 > h0 && w1 > w0) dxc[best] += dyr[ow];
                ow++;
            }
        }
    }
}

/* Average: each output spreads dy / divisor over its window's real cells (the divisor as in the
 * forward: PyTorch's window clipped to [-pad, n + pad), count_include_pad or the real cells). */
static void pool_avg_backward(const pool2d_params *p, const float *dy, float *dx)
{
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    const size_t hw_out = (size_t)p->h_out * (size_t)p->w_out;
    for (int c = 0; c < p->c; c++) {
        const float *dyc = dy + (size_t)c * hw_out;
        float *dxc = dx + (size_t)c * hw_in;
        for (int oh = 0; oh < p->h_out; oh++) {
            const int hs = oh * p->stride_h - p->pad_t;
            const int h0 = kernels_imax(hs, 0), h1 = kernels_imin(hs + p->k_h, p->h_in);
            const int rows = kernels_pool_axis_count(hs, p->k_h, p->h_in, p->pad_b, p->count_include_pad);
            for (int ow = 0; ow < p->w_out; ow++) {
                const int ws = ow * p->stride_w - p->pad_l;
                const int w0 = kernels_imax(ws, 0), w1 = kernels_imin(ws + p->k_w, p->w_in);
                const int cols = kernels_pool_axis_count(ws, p->k_w, p->w_in, p->pad_r, p->count_include_pad);
                if (h1 <= h0 || w1 <= w0) continue;
                const float g = dyc[(size_t)oh * (size_t)p->w_out + (size_t)ow] / (float)(rows * cols);
                for (int ih = h0; ih < h1; ih++) {
                    float *dxrow = dxc + (size_t)ih * (size_t)p->w_in;
                    for (int iw = w0; iw < w1; iw++) dxrow[iw] += g;
                }
            }
        }
    }
}

void pool2d_backward(const pool2d_params *p, const float *x, const float *dy, float *dx)
{
    assert(p->c > 0 && p->h_in > 0 && p->w_in > 0 && p->h_out > 0 && p->w_out > 0);
    assert(p->k_h > 0 && p->k_w > 0 && p->stride_h > 0 && p->stride_w > 0);
    memset(dx, 0, (size_t)p->c * (size_t)p->h_in * (size_t)p->w_in * sizeof *dx);
    if (p->kind == POOL_MAX)
        pool_max_backward(p, x, dy, dx);
    else
        pool_avg_backward(p, dy, dx);
}

/* PyTorch divides each output's gradient by the bin height, then by its width. */
void adaptive_avg_backward(int c, int h_in, int w_in, int h_out, int w_out, const float *dy,
                           float *dx)
{
    assert(c > 0 && h_in > 0 && w_in > 0 && h_out > 0 && w_out > 0);
    const size_t hw_in = (size_t)h_in * (size_t)w_in;
    if (h_out == 1 && w_out == 1) {
        for (int ci = 0; ci < c; ci++) {
            const float g = dy[ci] / (float)h_in / (float)w_in;
            float *dxc = dx + (size_t)ci * hw_in;
            for (size_t i = 0; i < hw_in; i++) dxc[i] = g;
        }
        return;
    }
    memset(dx, 0, (size_t)c * hw_in * sizeof *dx);
    for (int ci = 0; ci < c; ci++) {
        float *dxc = dx + (size_t)ci * hw_in;
        for (int oh = 0; oh < h_out; oh++) {
            const int hs = oh * h_in / h_out, he = ((oh + 1) * h_in + h_out - 1) / h_out;
            for (int ow = 0; ow < w_out; ow++) {
                const int ws = ow * w_in / w_out, we = ((ow + 1) * w_in + w_out - 1) / w_out;
                const float g =
                    dy[((size_t)ci * (size_t)h_out + (size_t)oh) * (size_t)w_out + (size_t)ow] /
                    (float)(he - hs) / (float)(we - ws);
                for (int ih = hs; ih < he; ih++)
                    for (int iw = ws; iw < we; iw++) dxc[(size_t)ih * (size_t)w_in + (size_t)iw] += g;
            }
        }
    }
}
