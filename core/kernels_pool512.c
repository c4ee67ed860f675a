/* Max / average pooling on AVX-512 (pool2d_forward's variant on CPUs with AVX-512F) for column
 * strides 1 and 2 and rows that fit POOL512_SPAN: the same two steps as the portable kernel in
 * kernels.c, in 16-lane vectors. Per output row the window's valid input rows are reduced
 * vertically into a row buffer whose border cells hold the identity (-inf / 0), then each output
 * reduces k_w consecutive buffer cells (stride 2: the even and odd cells split out of two loads by
 * one permute). A NaN in a max window propagates, as in PyTorch. Average divisors as in kernels.c
 * (row part times column part), applied as reciprocals (a divide per vector cost as much as the
 * rest of a small row). A per-channel bias and activation (pool2d_forward_bias_part) are applied
 * to the result in registers before the store.
 * Small stride-1 maps of unchanged size (Inception's 3x3 average pools) take a flat path instead,
 * as the AVX-512 depthwise kernel does: one vector loop over the whole channel, every tap a
 * shifted load whose lanes outside the input are masked to the identity. */
#include "kernels.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>

#include "kernels_internal.h"

#if KERNELS_X86
#include "kernels_avx512.h"
#endif

/* Row buffer cells ((w_out - 1) * s + k_w at most) and output columns. */
#define POOL512_SPAN 1024
/* The horizontal step reads up to 32 + k_w cells past a vector's first: buffer slack. */
#define POOL512_SLACK 64

static int pool512_span(const pool2d_params *p) { return (p->w_out - 1) * p->stride_w + p->k_w; }

int kernels_pool_avx512_applies(const pool2d_params *p)
{
    return (p->stride_w == 1 || p->stride_w == 2) && p->k_w <= POOL512_SLACK - 32 &&
           pool512_span(p) <= POOL512_SPAN;
}

#if KERNELS_X86
/* max that keeps a NaN of either operand (PyTorch's max pooling) */
static inline __attribute__((always_inline)) KERNELS_AVX512 __m512 pool512_max(__m512 m, __m512 v)
{
    const __m512 r = _mm512_max_ps(m, v); /* v when either is NaN */
    return _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(m, m, _CMP_UNORD_Q), m);
}

static inline __attribute__((always_inline)) KERNELS_AVX512 __m512 pool512_op(const int is_max,
                                                                             __m512 a, __m512 b)
{
    return is_max ? pool512_max(a, b) : _mm512_add_ps(a, b);
}

/* Cells buf[i*s + j] for 16 outputs starting at buf (s 1 or 2). */
static inline __attribute__((always_inline)) KERNELS_AVX512 __m512 pool512_taps(const int s,
                                                                              const float *buf,
                                                                              int j)
{
    if (s == 1) return _mm512_loadu_ps(buf + j);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                           28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const float *b = buf + (j & ~1);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(b), (j & 1) ? odd : even,
                                  _mm512_loadu_ps(b + 16));
}

static inline __attribute__((always_inline)) KERNELS_AVX512 void
pool512_run(const int is_max, const int s, const pool2d_params *p, const float *x, float *y,
            const float *bias, act_kind act)
{
    const float ident = is_max ? -INFINITY : 0.0f;
    const int span = pool512_span(p), w_out = p->w_out;
    float buf[POOL512_SPAN + POOL512_SLACK], col_inv[POOL512_SPAN];
    for (int t = 0; t < span + POOL512_SLACK; t++) buf[t] = ident;
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
        const __m512 vb = _mm512_set1_ps(bias ? bias[c] : 0.0f);
        for (int oh = 0; oh < p->h_out; oh++) {
            const int hstart = oh * p->stride_h - p->pad_t;
            const int hend = kernels_imin(hstart + p->k_h, p->h_in + p->pad_b);
            const int h0 = kernels_imax(hstart, 0), h1 = kernels_imin(hend, p->h_in);
            for (int t = 0; t < n_cols; t += 16) {
                const __mmask16 m = kernels_avx512_mask(n_cols - t);
                __m512 v = _mm512_set1_ps(ident);
                for (int ih = h0; ih < h1; ih++)
                    v = pool512_op(is_max, v,
                                   _mm512_maskz_loadu_ps(m, xc + (size_t)ih * (size_t)p->w_in + t));
                _mm512_mask_storeu_ps(cells + t, m, v);
            }
            float *yrow = y + (size_t)c * hw_out + (size_t)oh * (size_t)w_out;
            const __m512 row_inv = _mm512_set1_ps(
                1.0f / (float)(p->count_include_pad ? hend - hstart : h1 - h0));
            for (int o = 0; o < w_out; o += 16) {
                const __mmask16 m = kernels_avx512_mask(w_out - o);
                const float *b = buf + o * s;
                __m512 r = pool512_taps(s, b, 0);
                for (int j = 1; j < p->k_w; j++) r = pool512_op(is_max, r, pool512_taps(s, b, j));
                if (!is_max)
                    r = _mm512_mul_ps(r, _mm512_mul_ps(row_inv, _mm512_maskz_loadu_ps(m, col_inv + o)));
                if (bias) r = avx512_act(_mm512_add_ps(r, vb), act);
                _mm512_mask_storeu_ps(yrow + o, m, r);
            }
        }
    }
}

/* Flat path geometry limits: output vectors per channel and taps (the per-call tables). */
#define POOL512_FLAT_VECS 256
#define POOL512_FLAT_TAPS 25

static int pool512_flat_applies(const pool2d_params *p)
{
    return p->stride_h == 1 && p->stride_w == 1 && p->h_out == p->h_in && p->w_out == p->w_in &&
           p->k_h * p->k_w <= POOL512_FLAT_TAPS &&
           (p->h_out * p->w_out + 15) / 16 <= POOL512_FLAT_VECS;
}

/* mask[v * taps + t]: lanes of output vector v whose tap t lies in the input; inv[n]: reciprocal
 * of output n's average divisor (PyTorch's, see kernels.c). */
static void pool512_flat_tables(const pool2d_params *p, int n_vec, __mmask16 *mask, float *inv)
{
    const int w = p->w_out, n_out = p->h_out * p->w_out;
    avx512_flat_masks(p->h_in, p->w_in, p->h_out, p->w_out, p->k_h, p->k_w, p->pad_t, p->pad_l, n_vec, mask);
    if (p->kind == POOL_MAX) return;
    for (int n = 0; n < n_out; n++) {
        const int hs = n / w - p->pad_t, ws = n % w - p->pad_l;
        const int he = kernels_imin(hs + p->k_h, p->h_in + p->pad_b);
        const int we = kernels_imin(ws + p->k_w, p->w_in + p->pad_r);
        const int div = p->count_include_pad ? (he - hs) * (we - ws)
                                             : (kernels_imin(he, p->h_in) - kernels_imax(hs, 0)) *
                                                   (kernels_imin(we, p->w_in) - kernels_imax(ws, 0));
        inv[n] = 1.0f / (float)div;
    }
}

static inline __attribute__((always_inline)) KERNELS_AVX512 void
pool512_flat_run(const int is_max, const pool2d_params *p, const float *x, float *y, const float *bias,
                 act_kind act)
{
    const int n_out = p->h_out * p->w_out, n_vec = (n_out + 15) / 16, taps = p->k_h * p->k_w;
    __mmask16 mask[POOL512_FLAT_VECS * POOL512_FLAT_TAPS];
    float inv[POOL512_FLAT_VECS * 16];
    pool512_flat_tables(p, n_vec, mask, inv);
    const __m512 ident = _mm512_set1_ps(is_max ? -INFINITY : 0.0f);
    ptrdiff_t shift[POOL512_FLAT_TAPS]; /* bytes from an output's address to its tap's */
    for (int t = 0; t < taps; t++)
        shift[t] = 4 * ((ptrdiff_t)(t / p->k_w - p->pad_t) * p->w_in + (t % p->k_w - p->pad_l));
    for (int c = 0; c < p->c; c++) {
        /* addresses as integers: a tap's base may lie before the channel (masked lanes) */
        const uintptr_t xc = (uintptr_t)(x + (size_t)c * (size_t)n_out);
        float *yc = y + (size_t)c * (size_t)n_out;
        const __m512 vb = _mm512_set1_ps(bias ? bias[c] : 0.0f);
        for (int v = 0; v < n_vec; v++) {
            const __mmask16 *mv = mask + (size_t)v * (size_t)taps;
            __m512 r = ident;
            const uintptr_t xv0 = xc + (uintptr_t)(64 * v);
            for (int t = 0; t < taps; t++) {
                const __m512 xv = _mm512_mask_loadu_ps(ident, _load_mask16((__mmask16 *)mv + t),
                                                       (const void *)(xv0 + (uintptr_t)shift[t]));
                r = pool512_op(is_max, r, xv);
            }
            if (!is_max) r = _mm512_mul_ps(r, _mm512_loadu_ps(inv + 16 * v));
            if (bias) r = avx512_act(_mm512_add_ps(r, vb), act);
            _mm512_mask_storeu_ps(yc + 16 * v, kernels_avx512_mask(n_out - 16 * v), r);
        }
    }
}

static KERNELS_AVX512 void pool512_max_flat(const pool2d_params *p, const float *x, float *y,
                                            const float *bias, act_kind act)
{
    pool512_flat_run(1, p, x, y, bias, act);
}
static KERNELS_AVX512 void pool512_avg_flat(const pool2d_params *p, const float *x, float *y,
                                            const float *bias, act_kind act)
{
    pool512_flat_run(0, p, x, y, bias, act);
}

static KERNELS_AVX512 void pool512_max_s1(const pool2d_params *p, const float *x, float *y,
                                          const float *bias, act_kind act)
{
    pool512_run(1, 1, p, x, y, bias, act);
}
static KERNELS_AVX512 void pool512_max_s2(const pool2d_params *p, const float *x, float *y,
                                          const float *bias, act_kind act)
{
    pool512_run(1, 2, p, x, y, bias, act);
}
static KERNELS_AVX512 void pool512_avg_s1(const pool2d_params *p, const float *x, float *y,
                                          const float *bias, act_kind act)
{
    pool512_run(0, 1, p, x, y, bias, act);
}
static KERNELS_AVX512 void pool512_avg_s2(const pool2d_params *p, const float *x, float *y,
                                          const float *bias, act_kind act)
{
    pool512_run(0, 2, p, x, y, bias, act);
}
#endif

void kernels_pool_avx512(const pool2d_params *p, const float *x, float *y, const float *bias, act_kind act)
{
    assert(kernels_pool_avx512_applies(p) && cpu_isa_best() >= CPU_ISA_AVX512);
#if KERNELS_X86
    if (pool512_flat_applies(p))
        (p->kind == POOL_MAX ? pool512_max_flat : pool512_avg_flat)(p, x, y, bias, act);
    else if (p->kind == POOL_MAX)
        (p->stride_w == 1 ? pool512_max_s1 : pool512_max_s2)(p, x, y, bias, act);
    else
        (p->stride_w == 1 ? pool512_avg_s1 : pool512_avg_s2)(p, x, y, bias, act);
#else
    (void)x, (void)y, (void)bias, (void)act;
#endif
}

/* Global average pooling: each channel summed in 4 x 16 interleaved partial sums (4 independent
 * add chains), a masked vector for the last hw % 16 values, then one horizontal sum. A channel's
 * result depends only on its own values, so any channel range gives the same bits. */
#if KERNELS_X86
static KERNELS_AVX512 void pool512_global_avg(int c, size_t hw, const float *x, float *y)
{
    const __mmask16 tail = kernels_avx512_mask((int)(hw % 16));
    for (int ci = 0; ci < c; ci++) {
        const float *xc = x + (size_t)ci * hw;
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        size_t i = 0;
        for (; i + 64 <= hw; i += 64) {
            s0 = _mm512_add_ps(s0, _mm512_loadu_ps(xc + i));
            s1 = _mm512_add_ps(s1, _mm512_loadu_ps(xc + i + 16));
            s2 = _mm512_add_ps(s2, _mm512_loadu_ps(xc + i + 32));
            s3 = _mm512_add_ps(s3, _mm512_loadu_ps(xc + i + 48));
        }
        if (i + 16 <= hw) { s0 = _mm512_add_ps(s0, _mm512_loadu_ps(xc + i)); i += 16; }
        if (i + 16 <= hw) { s1 = _mm512_add_ps(s1, _mm512_loadu_ps(xc + i)); i += 16; }
        if (i + 16 <= hw) { s2 = _mm512_add_ps(s2, _mm512_loadu_ps(xc + i)); i += 16; }
        if (i < hw) s3 = _mm512_add_ps(s3, _mm512_maskz_loadu_ps(tail, xc + i));
        const __m512 s = _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3));
        y[ci] = _mm512_reduce_add_ps(s) / (float)hw;
    }
}
#endif

void kernels_global_avg_avx512(int c, size_t hw, const float *x, float *y)
{
    assert(c > 0 && hw > 0 && cpu_isa_best() >= CPU_ISA_AVX512);
#if KERNELS_X86
    pool512_global_avg(c, hw, x, y);
#else
    (void)c, (void)hw, (void)x, (void)y;
#endif
}
