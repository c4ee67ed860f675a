/* Max / average pooling on AVX2 + FMA (pool2d_forward's kernels on every CPU with AVX2, AVX-512
 * ones too: see kernels_pool512.c) and global average pooling (adaptive_avgpool2d_forward's
 * variant on CPUs without AVX-512F: kernels_pool512.c's arithmetic on 8-lane vectors, its bits).
 * - Rows (column strides 1 and 2, rows up to POOL256_SPAN cells): the window's valid input rows
 *   reduced vertically into a row buffer whose border cells hold the identity (-inf / 0), then
 *   each output reduces k_w buffer cells (stride 2: even or odd cells of two loads picked by one
 *   in-lane shuffle, the lanes put back in order once per result), average divisors applied as
 *   row reciprocal times column reciprocal.
 * - Small stride-1 maps of unchanged size (Inception's 3x3 average pools):
 *   per 8 outputs of a row every tap in row-major order, taps outside the input skipped (rows) or
 *   masked to the identity (columns); one reciprocal of the whole divisor per output.
 * - Global average: 4 x 16 interleaved partial sums per channel as two 8-lane halves each, the
 *   same tail and the AVX-512 reduction order.
 * A NaN in a max window propagates, as in PyTorch. A per-channel bias and activation
 * (pool2d_forward_bias_part) are applied in registers before the store. */
#include "kernels.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>

#include "kernels_internal.h"

#if KERNELS_X86
#include "kernels_avx2.h"
#endif

/* Row buffer cells ((w_out - 1) * s + k_w at most) and output columns. */
#define POOL256_SPAN 1024
/* The horizontal step reads up to 16 + k_w cells past a result's first: buffer slack. */
#define POOL256_SLACK 64
/* The same-size path's limits: outputs per channel and taps (its per-call divisors), and rows up
 * to POOL256_SAME_W wide (its per-call column masks); wider rows take the row path (the same
 * values up to rounding). */
#define POOL256_SAME_OUT 4096
#define POOL256_SAME_TAPS 25
#define POOL256_SAME_W 128

static int pool256_span(const pool2d_params *p) { return (p->w_out - 1) * p->stride_w + p->k_w; }

int kernels_pool_avx2_applies(const pool2d_params *p)
{
    return (p->stride_w == 1 || p->stride_w == 2) && p->k_w <= POOL256_SLACK - 32 &&
           pool256_span(p) <= POOL256_SPAN;
}

/* Small stride-1 maps of unchanged size: the same-size path. */
static int pool256_same_applies(const pool2d_params *p)
{
    return p->stride_h == 1 && p->stride_w == 1 && p->h_out == p->h_in && p->w_out == p->w_in &&
           p->k_h * p->k_w <= POOL256_SAME_TAPS && p->h_out * p->w_out <= POOL256_SAME_OUT &&
           p->w_out <= POOL256_SAME_W;
}

#if KERNELS_X86
/* max that keeps a NaN of either operand (PyTorch's max pooling) */
static inline __attribute__((always_inline)) KERNELS_AVX2 __m256 pool256_max(__m256 m, __m256 v)
{
    const __m256 r = _mm256_max_ps(m, v); /* v when either is NaN */
    return _mm256_blendv_ps(r, m, _mm256_cmp_ps(m, m, _CMP_UNORD_Q));
}

static inline __attribute__((always_inline)) KERNELS_AVX2 __m256 pool256_op(const int is_max, __m256 a, __m256 b)
{
    return is_max ? pool256_max(a, b) : _mm256_add_ps(a, b);
}

/* Cells buf[i*s + j] of 8 outputs starting at buf (s 1 or 2); stride 2 in the lane order
 * 0 1 4 5 2 3 6 7, which pool256_order undoes. */
static inline __attribute__((always_inline)) KERNELS_AVX2 __m256 pool256_taps(const int s, const float *buf, int j)
{
    if (s == 1) return _mm256_loadu_ps(buf + j);
    const float *b = buf + (j & ~1);
    const __m256 lo = _mm256_loadu_ps(b), hi = _mm256_loadu_ps(b + 8);
    return (j & 1) ? _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1)) : _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
}

static inline __attribute__((always_inline)) KERNELS_AVX2 __m256 pool256_order(const int s, __m256 v)
{
    if (s == 1) return v;
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), _MM_SHUFFLE(3, 1, 2, 0)));
}

static inline __attribute__((always_inline)) KERNELS_AVX2 void
pool256_run(const int is_max, const int s, const pool2d_params *p, const float *x, float *y, const float *bias,
            act_kind act)
{
    const float ident = is_max ? -INFINITY : 0.0f;
    const int span = pool256_span(p), w_out = p->w_out;
    float buf[POOL256_SPAN + POOL256_SLACK], col_inv[POOL256_SPAN];
    for (int t = 0; t < span + POOL256_SLACK; t++) buf[t] = ident;
    /* input columns [0, n_cols) land at buf[pad_l ...]; the other cells keep the identity */
    const int n_cols = kernels_imax(kernels_imin(p->w_in, span - p->pad_l), 0);
    float *cells = buf + p->pad_l;
    if (!is_max)
        for (int o = 0; o < w_out; o++) {
            col_inv[o] = 1.0f / (float)kernels_pool_axis_count(o * s - p->pad_l, p->k_w, p->w_in, p->pad_r,
                                                               p->count_include_pad);
        }
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    const size_t hw_out = (size_t)p->h_out * (size_t)w_out;
    for (int c = 0; c < p->c; c++) {
        const float *xc = x + (size_t)c * hw_in;
        const __m256 vb = _mm256_set1_ps(bias ? bias[c] : 0.0f);
        for (int oh = 0; oh < p->h_out; oh++) {
            const int hstart = oh * p->stride_h - p->pad_t;
            const int hend = kernels_imin(hstart + p->k_h, p->h_in + p->pad_b);
            const int h0 = kernels_imax(hstart, 0), h1 = kernels_imin(hend, p->h_in);
            int t = 0;
            for (; t + 8 <= n_cols; t += 8) {
                __m256 v = _mm256_set1_ps(ident);
                for (int ih = h0; ih < h1; ih++)
                    v = pool256_op(is_max, v, _mm256_loadu_ps(xc + (size_t)ih * (size_t)p->w_in + t));
                _mm256_storeu_ps(cells + t, v);
            }
            if (t < n_cols) { /* masked loads (the row's end), the identity past it (the buffer's border) */
                const __m256i m = kernels_avx2_mask(n_cols - t);
                __m256 v = _mm256_set1_ps(ident);
                for (int ih = h0; ih < h1; ih++)
                    v = pool256_op(is_max, v, _mm256_maskload_ps(xc + (size_t)ih * (size_t)p->w_in + t, m));
                _mm256_storeu_ps(cells + t, _mm256_blendv_ps(_mm256_set1_ps(ident), v, _mm256_castsi256_ps(m)));
            }
            float *yrow = y + (size_t)c * hw_out + (size_t)oh * (size_t)w_out;
            const __m256 row_inv = _mm256_set1_ps(1.0f / (float)(p->count_include_pad ? hend - hstart : h1 - h0));
            for (int o = 0; o < w_out; o += 8) {
                const __m256i m = kernels_avx2_mask(w_out - o);
                const float *b = buf + o * s;
                __m256 r = pool256_taps(s, b, 0);
                for (int j = 1; j < p->k_w; j++) r = pool256_op(is_max, r, pool256_taps(s, b, j));
                r = pool256_order(s, r);
                if (!is_max) r = _mm256_mul_ps(r, _mm256_mul_ps(row_inv, _mm256_maskload_ps(col_inv + o, m)));
                if (bias) r = avx2_act(_mm256_add_ps(r, vb), act);
                avx2_store_n(yrow + o, r, w_out - o);
            }
        }
    }
}

/* The same-size stride-1 path: rows oh .. oh + nr - 1 (nr independent chains, each reading the
 * window rows [i0, i1)) of row vector v (outputs 8v ..) into r[0 .. nr); every tap in row-major
 * order. inside: every tap of the vector reads inside the row (plain loads), else through the
 * column masks mv[j], masked lanes the identity. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void
pool256_same_vecs(const int is_max, const int nr, const int inside, const pool2d_params *p, uintptr_t xc, int oh,
                  int i0, int i1, int v, const __m256i *mv, __m256 *r)
{
    const __m256 ident = _mm256_set1_ps(is_max ? -INFINITY : 0.0f);
    const int w = p->w_out;
#pragma GCC unroll 4
    for (int k = 0; k < nr; k++) r[k] = ident;
    for (int i = i0; i < i1; i++) {
        /* addresses as integers: a tap's first lanes may lie before the channel (masked) */
        const uintptr_t row = xc + 4 * (uintptr_t)((oh + i - p->pad_t) * w + 8 * v - p->pad_l);
        for (int j = 0; j < p->k_w; j++)
#pragma GCC unroll 4
            for (int k = 0; k < nr; k++) {
                const float *at = (const float *)(row + 4 * (uintptr_t)(k * w + j));
                __m256 t;
                if (inside)
                    t = _mm256_loadu_ps(at);
                else if (is_max) /* as the flat path's masked load of the identity */
                    t = _mm256_blendv_ps(ident, _mm256_maskload_ps(at, mv[j]), _mm256_castsi256_ps(mv[j]));
                else
                    t = _mm256_maskload_ps(at, mv[j]);
                r[k] = pool256_op(is_max, r[k], t);
            }
    }
}

/* The same-size path, a window's taps in row-major order: per row vector v and tap column j the
 * lanes whose input column lies inside the row and whose output exists; taps on rows outside the
 * input skipped (adding the identity leaves every chain unchanged). Interior rows go 4 at a time
 * (4 add / max chains in flight instead of one). */
static inline __attribute__((always_inline)) KERNELS_AVX2 void
pool256_same_run(const int is_max, const pool2d_params *p, const float *x, float *y, const float *bias, act_kind act)
{
    const int h = p->h_out, w = p->w_out, n_rv = (w + 7) / 8, k_h = p->k_h, k_w = p->k_w;
    __m256i mask[POOL256_SAME_TAPS * (POOL256_SAME_W / 8)];
    float inv[POOL256_SAME_OUT + 8]; /* whole vectors loaded at the last outputs */
    for (int v = 0; v < n_rv; v++)
        for (int j = 0; j < k_w; j++) { /* lanes l with 0 <= 8v + l + j - pad_l < w, 8v + l < w */
            const int lo = p->pad_l - j - 8 * v, hi = kernels_imin(w - 8 * v, w + p->pad_l - j - 8 * v);
            mask[v * k_w + j] = _mm256_andnot_si256(kernels_avx2_mask(lo), kernels_avx2_mask(hi));
        }
    if (!is_max) /* one reciprocal of each output's whole divisor */
        for (int n = 0; n < h * w; n++) {
            const int hs = n / w - p->pad_t, ws = n % w - p->pad_l;
            const int he = kernels_imin(hs + k_h, p->h_in + p->pad_b);
            const int we = kernels_imin(ws + k_w, p->w_in + p->pad_r);
            const int div = p->count_include_pad ? (he - hs) * (we - ws)
                                                 : (kernels_imin(he, p->h_in) - kernels_imax(hs, 0)) *
                                                       (kernels_imin(we, p->w_in) - kernels_imax(ws, 0));
            inv[n] = 1.0f / (float)div;
        }
    /* row vectors [v_lo, v_hi) read inside the row at every tap */
    int v_lo = 0, v_hi = n_rv;
    while (v_lo < n_rv && 8 * v_lo - p->pad_l < 0) v_lo++;
    while (v_hi > v_lo && (8 * v_hi > w || 8 * v_hi - p->pad_l + k_w - 1 > w)) v_hi--;
    const size_t hw = (size_t)h * (size_t)w;
    for (int c = 0; c < p->c; c++) {
        const uintptr_t xc = (uintptr_t)(x + (size_t)c * hw);
        float *yc = y + (size_t)c * hw;
        const __m256 vb = _mm256_set1_ps(bias ? bias[c] : 0.0f);
        for (int oh = 0; oh < h;) {
            /* 4 rows whose windows lie inside the input, or one row */
            const int nr = oh >= p->pad_t && oh + 3 <= h + p->pad_t - k_h ? 4 : 1;
            const int i0 = kernels_imax(p->pad_t - oh, 0), i1 = kernels_imin(k_h, h + p->pad_t - oh);
            /* last vector first: a row's last vector spills into the next rows' first outputs,
             * which are stored after it; only the channel's last 8 outputs are stored masked */
            for (int v = n_rv - 1; v >= 0; v--) {
                const __m256i *mv = mask + v * k_w;
                const int inside = v >= v_lo && v < v_hi;
                __m256 r[4];
                if (nr == 4 && inside) pool256_same_vecs(is_max, 4, 1, p, xc, oh, 0, k_h, v, mv, r);
                else if (nr == 4) pool256_same_vecs(is_max, 4, 0, p, xc, oh, 0, k_h, v, mv, r);
                else if (inside) pool256_same_vecs(is_max, 1, 1, p, xc, oh, i0, i1, v, mv, r);
                else pool256_same_vecs(is_max, 1, 0, p, xc, oh, i0, i1, v, mv, r);
                for (int k = 0; k < nr; k++) {
                    const size_t n = (size_t)(oh + k) * (size_t)w + (size_t)(8 * v);
                    __m256 o = r[k];
                    if (!is_max) o = _mm256_mul_ps(o, _mm256_loadu_ps(inv + n));
                    if (bias) o = avx2_act(_mm256_add_ps(o, vb), act);
                    const int n_store = n + 8 <= hw ? 8 : w - 8 * v;
                    if (n_store > 0) avx2_store_n(yc + n, o, n_store);
                }
            }
            oh += nr;
        }
    }
}

static KERNELS_AVX2 void pool256_max_same(const pool2d_params *p, const float *x, float *y, const float *bias,
                                          act_kind act)
{
    pool256_same_run(1, p, x, y, bias, act);
}
static KERNELS_AVX2 void pool256_avg_same(const pool2d_params *p, const float *x, float *y, const float *bias,
                                          act_kind act)
{
    pool256_same_run(0, p, x, y, bias, act);
}
static KERNELS_AVX2 void pool256_max_s1(const pool2d_params *p, const float *x, float *y, const float *bias,
                                        act_kind act)
{
    pool256_run(1, 1, p, x, y, bias, act);
}
static KERNELS_AVX2 void pool256_max_s2(const pool2d_params *p, const float *x, float *y, const float *bias,
                                        act_kind act)
{
    pool256_run(1, 2, p, x, y, bias, act);
}
static KERNELS_AVX2 void pool256_avg_s1(const pool2d_params *p, const float *x, float *y, const float *bias,
                                        act_kind act)
{
    pool256_run(0, 1, p, x, y, bias, act);
}
static KERNELS_AVX2 void pool256_avg_s2(const pool2d_params *p, const float *x, float *y, const float *bias,
                                        act_kind act)
{
    pool256_run(0, 2, p, x, y, bias, act);
}
#endif

void kernels_pool_avx2(const pool2d_params *p, const float *x, float *y, const float *bias, act_kind act)
{
    assert(kernels_pool_avx2_applies(p) && cpu_isa_best() >= CPU_ISA_AVX2);
#if KERNELS_X86
    if (pool256_same_applies(p))
        (p->kind == POOL_MAX ? pool256_max_same : pool256_avg_same)(p, x, y, bias, act);
    else if (p->kind == POOL_MAX)
        (p->stride_w == 1 ? pool256_max_s1 : pool256_max_s2)(p, x, y, bias, act);
    else
        (p->stride_w == 1 ? pool256_avg_s1 : pool256_avg_s2)(p, x, y, bias, act);
#else
    (void)x, (void)y, (void)bias, (void)act;
#endif
}

#if KERNELS_X86
/* pool512_global_avg with each 16-lane partial sum as two 8-lane halves (lo: lanes 0-7). */
static KERNELS_AVX2 void pool256_global_avg(int c, size_t hw, const float *x, float *y)
{
    const __m256i tail0 = kernels_avx2_mask((int)(hw % 16)), tail1 = kernels_avx2_mask((int)(hw % 16) - 8);
    for (int ci = 0; ci < c; ci++) {
        const float *xc = x + (size_t)ci * hw;
        __m256 s0 = _mm256_setzero_ps(), s0h = s0, s1 = s0, s1h = s0, s2 = s0, s2h = s0, s3 = s0, s3h = s0;
        size_t i = 0;
        for (; i + 64 <= hw; i += 64) {
            s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xc + i));
            s0h = _mm256_add_ps(s0h, _mm256_loadu_ps(xc + i + 8));
            s1 = _mm256_add_ps(s1, _mm256_loadu_ps(xc + i + 16));
            s1h = _mm256_add_ps(s1h, _mm256_loadu_ps(xc + i + 24));
            s2 = _mm256_add_ps(s2, _mm256_loadu_ps(xc + i + 32));
            s2h = _mm256_add_ps(s2h, _mm256_loadu_ps(xc + i + 40));
            s3 = _mm256_add_ps(s3, _mm256_loadu_ps(xc + i + 48));
            s3h = _mm256_add_ps(s3h, _mm256_loadu_ps(xc + i + 56));
        }
        if (i + 16 <= hw) {
            s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xc + i));
            s0h = _mm256_add_ps(s0h, _mm256_loadu_ps(xc + i + 8));
            i += 16;
        }
        if (i + 16 <= hw) {
            s1 = _mm256_add_ps(s1, _mm256_loadu_ps(xc + i));
            s1h = _mm256_add_ps(s1h, _mm256_loadu_ps(xc + i + 8));
            i += 16;
        }
        if (i + 16 <= hw) {
            s2 = _mm256_add_ps(s2, _mm256_loadu_ps(xc + i));
            s2h = _mm256_add_ps(s2h, _mm256_loadu_ps(xc + i + 8));
            i += 16;
        }
        if (i < hw) {
            s3 = _mm256_add_ps(s3, _mm256_maskload_ps(xc + i, tail0));
            s3h = _mm256_add_ps(s3h, _mm256_maskload_ps(xc + i + 8, tail1));
        }
        const __m256 lo = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
        const __m256 hi = _mm256_add_ps(_mm256_add_ps(s0h, s1h), _mm256_add_ps(s2h, s3h));
        y[ci] = avx2_reduce_add16(lo, hi) / (float)hw;
    }
}
#endif

void kernels_global_avg_avx2(int c, size_t hw, const float *x, float *y)
{
    assert(c > 0 && hw > 0 && cpu_isa_best() >= CPU_ISA_AVX2);
#if KERNELS_X86
    pool256_global_avg(c, hw, x, y);
#else
    (void)c, (void)hw, (void)x, (void)y;
#endif
}
