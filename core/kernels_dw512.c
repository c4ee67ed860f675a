/* Depthwise convolution on AVX-512 (dwconv2d_forward's variant on CPUs with AVX-512F): a flat
 * kernel for the small stride-1 maps of MobileNet and ShuffleNet (output as wide as the input
 * ("same" columns) and at most DW512_MAX_WIDTH wide, at most DW512_MAX_VECS vectors of outputs
 * per channel, kernel sides up to DW512_MAX_K), a one-row-per-vector kernel that takes the
 * 12..16 wide ones among them (14 x 14), six kernels for stride 2 (rows with masked loads,
 * branch-free 3x3 rows, 3x3 and 5x5 rows from aligned even / odd loads, several output rows per vector
 * for rows of a few outputs, staged deinterleaved rows) and a padded-plane kernel for wider stride-1 maps (further down).
 *
 * Per-row vector loops waste most of a 16-lane vector on narrow rows (a 7- or 14-wide row fills
 * one vector to 44% / 88%, with a masked tail per row). Here a channel is one flat vector loop
 * over n = oh * w + ow: with equal input and output widths, tap (i, j) of output n reads input
 *   n + (i - pad_t) * w + dj,  dj = j - pad_l,
 * one shifted contiguous load for every tap. Reads above or below the channel must give zeros,
 * and so must a read whose column wraps into the neighbouring row (ow + dj outside [0, w)): the
 * input cell it hits is in a column c with c - dj outside [0, w), a cell no in-row read of the
 * same dj ever touches. So each channel is staged into k_w zero-bordered flat copies, copy j
 * with the columns c where c - dj is outside [0, w) zeroed; every tap is then one plain load
 * from its copy, with no per-load masks (their mask-register moves and the load masks cost more
 * than the staging: measured 2-3x on MobileNetV3's 14x14 and 7x7 5x5 layers). Bias and
 * activation are applied in registers before the only store. */
#include "kernels.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "kernels_internal.h"

#if KERNELS_X86
#include "kernels_avx512.h"
#endif

/* Wider rows take the padded-plane kernel, whose plain loads beat the per-load masks once a row
 * fills a vector (measured: 28 wide -35%; 14 and 7 wide the flat kernel is as fast or faster). */
#define DW512_MAX_WIDTH 16
/* Input and output vectors per channel (32x32 maps) and kernel sides the staging buffer holds. */
#define DW512_MAX_VECS 64
#define DW512_MAX_K 7
/* Floats of one staged copy: zero rows before (up to DW512_MAX_K - 1 rows and columns, rounded
 * to a vector), the map, zero rows after. */
#define DW512_COPY_FLOATS (16 * DW512_MAX_VECS + 2 * (16 * DW512_MAX_K + 16))

static int dw512_flat_applies(const conv2d_params *p)
{
    return p->stride_h == 1 && p->stride_w == 1 && p->w_out == p->w_in &&
           p->w_out <= DW512_MAX_WIDTH && p->k_h <= DW512_MAX_K && p->k_w <= DW512_MAX_K &&
           p->pad_t < DW512_MAX_K && p->pad_l < DW512_MAX_K &&
           (p->h_out * p->w_out + 15) / 16 <= DW512_MAX_VECS &&
           (p->h_in * p->w_in + 15) / 16 <= DW512_MAX_VECS;
}

/* Stride 2 (both axes), kernel sides up to 7, rows up to 1024 outputs: the row kernel. */
static int dw512_s2_applies(const conv2d_params *p)
{
    return p->stride_h == 2 && p->stride_w == 2 && p->k_h <= 7 && p->k_w <= 7 &&
           p->w_out <= 16 * 64;
}

/* Stride 1 on wider maps: the padded-plane kernel, when a channel's zero-padded plane fits its
 * stack buffer (see dw512_pad_forward). */
#define DW512_PLANE_FLOATS 16384
static int dw512_pad_applies(const conv2d_params *p)
{
    const int hp = (p->h_out - 1) + p->k_h, wp = (p->w_out - 1) + p->k_w;
    return p->stride_h == 1 && p->stride_w == 1 && p->k_h <= 7 && p->k_w <= 7 &&
           (size_t)hp * (size_t)wp + 16 <= DW512_PLANE_FLOATS;
}

/* The one-row-per-vector kernel (see dw512_rows_forward): stride 1, maps 12..16 wide. */
#define DW512_ROWS_BLOCK 7
#define DW512_ROWS_MAX_H 32
static int dw512_rows_applies(const conv2d_params *p)
{
    return p->stride_h == 1 && p->stride_w == 1 && p->w_out == p->w_in && p->w_out >= 12 &&
           p->w_out <= 16 && p->h_out >= DW512_ROWS_BLOCK && p->h_out <= DW512_ROWS_MAX_H &&
           p->k_h <= DW512_MAX_K && p->k_w <= DW512_MAX_K && p->pad_t < p->k_h && p->pad_l < p->k_w;
}

int kernels_dw_avx512_applies(const conv2d_params *p)
{
    return kernels_dw_cb_applies(p) || dw512_rows_applies(p) || dw512_flat_applies(p) || dw512_s2_applies(p) ||
           dw512_pad_applies(p);
}

#if KERNELS_X86
/* The staged copies of one channel: copy j at stage + j * stride, the map from offset lead. */
typedef struct {
    float *stage;
    int stride, lead;
} dw512_flat_stage;

/* Output vectors [v0, v0 + nv) of one channel from its staged copies. kh_c / kw_c: compile-time
 * kernel sides of the specialized instances (0: read from p). */
static inline __attribute__((always_inline)) KERNELS_AVX512 void
dw512_block(const int nv, const int kh_c, const int kw_c, const act_kind act,
            const conv2d_params *p, const dw512_flat_stage *st, const float *wc, float b, int v0,
            float *yc)
{
    const int k_h = kh_c ? kh_c : p->k_h, k_w = kw_c ? kw_c : p->k_w;
    const int w = p->w_in;
    const float *x0 = st->stage + st->lead + 16 * v0 - p->pad_t * w - p->pad_l;
    __m512 acc[8];
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++) acc[v] = _mm512_set1_ps(b);
#pragma GCC unroll 7
    for (int i = 0; i < k_h; i++) {
#pragma GCC unroll 7
        for (int j = 0; j < k_w; j++) {
            const float *src = x0 + (size_t)j * (size_t)st->stride + i * w + j;
            const __m512 wv = _mm512_set1_ps(wc[i * k_w + j]);
#pragma GCC unroll 8
            for (int v = 0; v < nv; v++)
                acc[v] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(src + 16 * v), acc[v]);
        }
    }
    const int n_out = p->h_out * p->w_out;
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++) {
        const int n = 16 * (v0 + v);
        _mm512_mask_storeu_ps(yc + n, kernels_avx512_mask(n_out - n), avx512_act(acc[v], act));
    }
}

static inline __attribute__((always_inline)) KERNELS_AVX512 void
dw512_channel_k(const int kh_c, const int kw_c, const act_kind act, const conv2d_params *p,
                const dw512_flat_stage *st, int n_vec, const float *wc, float b, float *yc)
{
    int v = 0;
    for (; v + 8 <= n_vec; v += 8) dw512_block(8, kh_c, kw_c, act, p, st, wc, b, v, yc);
    if (n_vec - v >= 4) {
        dw512_block(4, kh_c, kw_c, act, p, st, wc, b, v, yc);
        v += 4;
    }
    if (n_vec - v >= 2) {
        dw512_block(2, kh_c, kw_c, act, p, st, wc, b, v, yc);
        v += 2;
    }
    if (n_vec - v >= 1) dw512_block(1, kh_c, kw_c, act, p, st, wc, b, v, yc);
}

/* The five activation instances of one kernel, INST(name, act, ...) each, and their table
 * prefix[act] of fn_t in act_kind order. */
#define DW512_ACT_TABLE(fn_t, prefix, INST, ...)                                                   \
    INST(prefix##_none, ACT_NONE, __VA_ARGS__)                                                    \
    INST(prefix##_relu, ACT_RELU, __VA_ARGS__)                                                    \
    INST(prefix##_relu6, ACT_RELU6, __VA_ARGS__)                                                  \
    INST(prefix##_hswish, ACT_HSWISH, __VA_ARGS__)                                                \
    INST(prefix##_hsigmoid, ACT_HSIGMOID, __VA_ARGS__)                                            \
    static const fn_t prefix[5] = {prefix##_none, prefix##_relu, prefix##_relu6, prefix##_hswish, \
                                   prefix##_hsigmoid};

typedef void (*dw512_channel_fn)(const conv2d_params *p, const dw512_flat_stage *st, int n_vec,
                                 const float *wc, float b, float *yc);

/* Square 3x3 and 5x5 (MobileNet, ShuffleNet) with unrolled taps, per activation; other sizes
 * with tap loops. */
#define DW512_INSTANCE(name, act, kh, kw)                                                         \
    static KERNELS_AVX512 void name(const conv2d_params *p, const dw512_flat_stage *st, int n_vec, \
                                  const float *wc, float b, float *yc)                            \
    {                                                                                             \
        dw512_channel_k(kh, kw, act, p, st, n_vec, wc, b, yc);                                    \
    }
#define DW512_ACTS(prefix, kh, kw) DW512_ACT_TABLE(dw512_channel_fn, prefix, DW512_INSTANCE, kh, kw)
DW512_ACTS(dw512_k3, 3, 3)
DW512_ACTS(dw512_k5, 5, 5)
DW512_ACTS(dw512_any, 0, 0)

static KERNELS_AVX512 void dw512_forward(const conv2d_params *p, const float *x, const float *w,
                                       const float *bias, float *y)
{
    const int w_in = p->w_in, n_out = p->h_out * p->w_out, n_vec = (n_out + 15) / 16;
    const int hw_in = p->h_in * w_in, n_vec_in = (hw_in + 15) / 16;
    /* copy j: lead zeros (every read above the map), the map, zeros to the last read */
    const int lead = (p->pad_t * w_in + p->pad_l + 15) / 16 * 16;
    const int below = kernels_imax(p->k_h - 1 - p->pad_t, 0) * w_in + p->k_w;
    const int stride = lead + (kernels_imax(16 * n_vec, 16 * n_vec_in) + below + 15) / 16 * 16;
    _Alignas(64) float stage[DW512_MAX_K * DW512_COPY_FLOATS];
    memset(stage, 0, (size_t)p->k_w * (size_t)stride * sizeof *stage);
    /* keep[j * DW512_MAX_VECS + u]: lanes of input vector u whose column c has c - dj in [0, w) */
    __mmask16 keep[DW512_MAX_K * DW512_MAX_VECS];
    for (int j = 0; j < p->k_w; j++) {
        const int dj = j - p->pad_l, lo = kernels_imax(dj, 0), hi = kernels_imin(w_in, w_in + dj);
        for (int u = 0; u < n_vec_in; u++) {
            unsigned m = 0;
            for (int l = 0; l < 16; l++) {
                const int q = 16 * u + l, c = q % w_in;
                if (q < hw_in && c >= lo && c < hi) m |= 1u << l;
            }
            keep[j * DW512_MAX_VECS + u] = (__mmask16)m;
        }
    }
    const dw512_flat_stage st = {stage, stride, lead};
    const int k = p->k_h == p->k_w ? p->k_h : 0;
    const dw512_channel_fn channel = (k == 3 ? dw512_k3 : k == 5 ? dw512_k5 : dw512_any)[p->act];
    const size_t hw_out = (size_t)n_out, kk = (size_t)p->k_h * (size_t)p->k_w;
    for (int c = 0; c < p->c_in; c++) {
        const float *xc = x + (size_t)c * (size_t)hw_in;
        for (int u = 0; u < n_vec_in; u++) {
            const __m512 xv = _mm512_maskz_loadu_ps(kernels_avx512_mask(hw_in - 16 * u), xc + 16 * u);
            for (int j = 0; j < p->k_w; j++)
                _mm512_store_ps(stage + (size_t)j * (size_t)stride + lead + 16 * u,
                                _mm512_maskz_mov_ps(keep[j * DW512_MAX_VECS + u], xv));
        }
        channel(p, &st, n_vec, w + (size_t)c * kk, bias ? bias[c] : 0.0f, y + (size_t)c * hw_out);
    }
}
#endif

#if KERNELS_X86
/* ---- stride 1, maps 12..16 wide: one row per vector ----
 * The flat kernel's taps are loads shifted by i * w + j floats: on a 14-wide map nearly every one
 * crosses a cache line (measured 1.35x the cost of an aligned load per FMA). Here the channel is
 * staged as k_w copies with a row pitch of 16 floats, copy j holding input column c + j - pad_l
 * at lane c (zeros outside the input and past w_out), with zero rows above and below: tap (i, j)
 * of output row oh is the aligned vector of copy j at padded row oh + i. Output rows go in
 * blocks of DW512_ROWS_BLOCK (independent FMA chains), the last block moved back to end at the
 * last row (rows computed twice give the same values). Every output takes all k_h * k_w taps in
 * the order (i, j) from the bias, padding taps on zeros, as the flat kernel does: the same bits. */
/* Output rows [oh0, oh0 + DW512_ROWS_BLOCK) of one channel from its copies (copy j at
 * stage + j * cstride, padded row R at R * 16). */
static inline __attribute__((always_inline)) KERNELS_AVX512 void
dw512_rows_block(const int kh_c, const int kw_c, const act_kind act, const conv2d_params *p,
                 const float *stage, size_t cstride, const float *wc, float b, int oh0, float *yc)
{
    const int k_h = kh_c ? kh_c : p->k_h, k_w = kw_c ? kw_c : p->k_w;
    __m512 acc[DW512_ROWS_BLOCK];
#pragma GCC unroll 8
    for (int r = 0; r < DW512_ROWS_BLOCK; r++) acc[r] = _mm512_set1_ps(b);
#pragma GCC unroll 7
    for (int i = 0; i < k_h; i++) {
#pragma GCC unroll 7
        for (int j = 0; j < k_w; j++) {
            const float *src = stage + (size_t)j * cstride + (size_t)(oh0 + i) * 16;
            const __m512 wv = _mm512_set1_ps(wc[i * k_w + j]);
#pragma GCC unroll 8
            for (int r = 0; r < DW512_ROWS_BLOCK; r++)
                acc[r] = _mm512_fmadd_ps(wv, _mm512_load_ps(src + 16 * r), acc[r]);
        }
    }
    const __mmask16 m = kernels_avx512_mask(p->w_out);
#pragma GCC unroll 8
    for (int r = 0; r < DW512_ROWS_BLOCK; r++)
        _mm512_mask_storeu_ps(yc + (size_t)(oh0 + r) * (size_t)p->w_out, m, avx512_act(acc[r], act));
}

static inline __attribute__((always_inline)) KERNELS_AVX512 void
dw512_rows_channel_k(const int kh_c, const int kw_c, const act_kind act, const conv2d_params *p,
                     const float *stage, size_t cstride, const float *wc, float b, float *yc)
{
    for (int oh0 = 0;; oh0 += DW512_ROWS_BLOCK) {
        const int at = kernels_imin(oh0, p->h_out - DW512_ROWS_BLOCK);
        dw512_rows_block(kh_c, kw_c, act, p, stage, cstride, wc, b, at, yc);
        if (at + DW512_ROWS_BLOCK >= p->h_out) break;
    }
}

typedef void (*dw512_rows_fn)(const conv2d_params *p, const float *stage, size_t cstride,
                              const float *wc, float b, float *yc);
#define DW512_ROWS_INSTANCE(name, act, kh, kw)                                                    \
    static KERNELS_AVX512 void name(const conv2d_params *p, const float *stage, size_t cstride,   \
                                  const float *wc, float b, float *yc)                            \
    {                                                                                             \
        dw512_rows_channel_k(kh, kw, act, p, stage, cstride, wc, b, yc);                          \
    }
#define DW512_ROWS_ACTS(prefix, kh, kw) DW512_ACT_TABLE(dw512_rows_fn, prefix, DW512_ROWS_INSTANCE, kh, kw)
DW512_ROWS_ACTS(dw512_rows_k3, 3, 3)
DW512_ROWS_ACTS(dw512_rows_k5, 5, 5)
DW512_ROWS_ACTS(dw512_rows_any, 0, 0)

static KERNELS_AVX512 void dw512_rows_forward(const conv2d_params *p, const float *x, const float *w,
                                            const float *bias, float *y)
{
    const int hp = p->h_out + p->k_h - 1; /* padded rows the taps read */
    const size_t cstride = (size_t)hp * 16;
    _Alignas(64) float stage[DW512_MAX_K * (DW512_ROWS_MAX_H + DW512_MAX_K - 1) * 16];
    memset(stage, 0, (size_t)p->k_w * cstride * sizeof *stage);
    /* copy j, lane c: input column c + j - pad_l, inside the row and c < w_out */
    __mmask16 lanes[DW512_MAX_K];
    for (int j = 0; j < p->k_w; j++)
        lanes[j] = kernels_avx512_range_mask(kernels_imax(p->pad_l - j, 0),
                                             kernels_imin(p->w_out, p->w_in + p->pad_l - j));
    /* padded rows [r0, r1) hold input rows r - pad_t; the others stay zero */
    const int r0 = p->pad_t, r1 = kernels_imin(hp, p->pad_t + p->h_in);
    const int k = p->k_h == p->k_w ? p->k_h : 0;
    const dw512_rows_fn channel = (k == 3 ? dw512_rows_k3 : k == 5 ? dw512_rows_k5 : dw512_rows_any)[p->act];
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in, hw_out = (size_t)p->h_out * (size_t)p->w_out;
    const size_t kk = (size_t)p->k_h * (size_t)p->k_w;
    for (int c = 0; c < p->c_in; c++) {
        const float *xc = x + (size_t)c * hw_in;
        for (int r = r0; r < r1; r++) {
            /* addresses as integers: a load's first lanes may lie before the row (masked) */
            const uintptr_t row = (uintptr_t)(xc + (size_t)(r - p->pad_t) * (size_t)p->w_in);
            for (int j = 0; j < p->k_w; j++)
                _mm512_store_ps(stage + (size_t)j * cstride + (size_t)r * 16,
                                _mm512_maskz_loadu_ps(lanes[j], (const void *)(row + (uintptr_t)(4 * (intptr_t)(j - p->pad_l)))));
        }
        channel(p, stage, cstride, w + (size_t)c * kk, bias ? bias[c] : 0.0f, y + (size_t)c * hw_out);
    }
}
#endif

#if KERNELS_X86
/* ---- stride 2, k_w < 5: rows ----
 * Blocks of output rows, 16 columns q0.. at a time, straight from the input rows (nothing
 * staged): tap (i, j) of output q reads input column 2q - pad_l + j, so the taps j and j + 1 of
 * 16 outputs are the even and odd floats of the 32 loaded from column 2q0 - pad_l + (j & ~1),
 * split by one permute, and each input row serves every output row of the block that reads it
 * (measured 2x over one row at a time, whose single FMA chain waited on its latency). Loads that
 * would leave the row are masked (zeros: the padding); rows outside the input are skipped. Bias
 * and activation in registers. */
/* Masks of the loads at input columns c and c + 16 (lanes inside [0, w_in)). */
static __mmask16 dw512_col_mask(int c, int w_in)
{
    const int lo = kernels_imax(-c, 0), hi = kernels_imin(w_in - c, 16);
    return kernels_avx512_range_mask(lo, hi);
}

/* mask[(v * DW512_S2M_PAIRS + jp) * 2 + h]: load h of tap pair jp for output vector v. */
#define DW512_S2M_PAIRS 4 /* (k_w + 1) / 2 for k_w <= 7 */
#define DW512_S2M_MAX_VECS 64

/* Output rows [oh0, oh0 + nr) of one channel (rows past h_out computed, not stored), 16 columns
 * q0.. (vector v): each input row the block reads is loaded and split into its tap vectors once,
 * then multiplied into every output row of the block that uses it, so the block has nr
 * independent FMA chains (one output's chain of k_h * k_w FMAs is latency bound). Every output
 * accumulates its taps in the order (i, j) from the bias, skipping rows outside the input. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void
dw512_s2m_block(const int nr, const int kh_c, const int kw_c, const act_kind act, const conv2d_params *p,
                const __mmask16 *mv, const float *xc, const float *wc, float b, int oh0, int q0, float *yc)
{
    const int k_h = kh_c ? kh_c : p->k_h, k_w = kw_c ? kw_c : p->k_w;
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                           28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    /* addresses as integers: a load's first lane may lie before the row (masked) */
    const intptr_t c0 = 2 * q0 - p->pad_l;
    const int ih0 = 2 * oh0 - p->pad_t;
    __m512 acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++) acc[r] = _mm512_set1_ps(b);
#pragma GCC unroll 13
    for (int qq = 0; qq < 2 * (nr - 1) + k_h; qq++) {
        const int ih = ih0 + qq;
        if (ih < 0 || ih >= p->h_in) continue;
        const uintptr_t row = (uintptr_t)(xc + (size_t)ih * (size_t)p->w_in);
#pragma GCC unroll 4
        for (int j = 0; j < k_w; j += 2) {
            const uintptr_t at = row + (uintptr_t)(4 * (c0 + j));
            const __m512 lo = _mm512_maskz_loadu_ps(mv[j], (const void *)at);
            const __m512 hi = _mm512_maskz_loadu_ps(mv[j + 1], (const void *)(at + 64));
            const __m512 te = _mm512_permutex2var_ps(lo, even, hi);
            const __m512 to = j + 1 < k_w ? _mm512_permutex2var_ps(lo, odd, hi) : te;
#pragma GCC unroll 4
            for (int r = 0; r < nr; r++) {
                const int i = qq - 2 * r;
                if (i < 0 || i >= k_h) continue;
                acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(wc[i * k_w + j]), te, acc[r]);
                if (j + 1 < k_w) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(wc[i * k_w + j + 1]), to, acc[r]);
            }
        }
    }
    const __mmask16 m = kernels_avx512_mask(p->w_out - q0);
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++) {
        if (oh0 + r >= p->h_out) break;
        _mm512_mask_storeu_ps(yc + (size_t)(oh0 + r) * (size_t)p->w_out + q0, m, avx512_act(acc[r], act));
    }
}

/* Row blocks of DW512_S2M_ROWS, the last one narrowed to the rows left (2 or 1 when fewer). */
#define DW512_S2M_ROWS 4

static inline __attribute__((always_inline)) KERNELS_AVX512 void
dw512_s2m_channel_k(const int kh_c, const int kw_c, const act_kind act, const conv2d_params *p,
                   const __mmask16 *mask, const float *xc, const float *wc, float b, float *yc)
{
    for (int oh0 = 0; oh0 < p->h_out; oh0 += DW512_S2M_ROWS) {
        const int left = p->h_out - oh0;
        for (int q0 = 0, v = 0; q0 < p->w_out; q0 += 16, v++) {
            const __mmask16 *mv = mask + (size_t)v * DW512_S2M_PAIRS * 2;
            if (left > 2)
                dw512_s2m_block(DW512_S2M_ROWS, kh_c, kw_c, act, p, mv, xc, wc, b, oh0, q0, yc);
            else if (left == 2)
                dw512_s2m_block(2, kh_c, kw_c, act, p, mv, xc, wc, b, oh0, q0, yc);
            else
                dw512_s2m_block(1, kh_c, kw_c, act, p, mv, xc, wc, b, oh0, q0, yc);
        }
    }
}

typedef void (*dw512_s2m_fn)(const conv2d_params *p, const __mmask16 *mask, const float *xc,
                            const float *wc, float b, float *yc);
#define DW512_S2M_INSTANCE(name, act, kh, kw)                                                      \
    static KERNELS_AVX512 void name(const conv2d_params *p, const __mmask16 *mask, const float *xc, \
                                  const float *wc, float b, float *yc)                            \
    {                                                                                             \
        dw512_s2m_channel_k(kh, kw, act, p, mask, xc, wc, b, yc);                                  \
    }
#define DW512_S2M_ACTS(prefix, kh, kw) DW512_ACT_TABLE(dw512_s2m_fn, prefix, DW512_S2M_INSTANCE, kh, kw)
DW512_S2M_ACTS(dw512_s2m_k3, 3, 3)
DW512_S2M_ACTS(dw512_s2m_any, 0, 0)

static KERNELS_AVX512 void dw512_s2m_forward(const conv2d_params *p, const float *x, const float *w,
                                          const float *bias, float *y, size_t y_plane)
{
    const int k = p->k_h == p->k_w ? p->k_h : 0;
    const dw512_s2m_fn channel = (k == 3 ? dw512_s2m_k3 : dw512_s2m_any)[p->act];
    __mmask16 mask[DW512_S2M_MAX_VECS * DW512_S2M_PAIRS * 2];
    for (int v = 0; 16 * v < p->w_out; v++)
        for (int jp = 0; jp < DW512_S2M_PAIRS; jp++)
            for (int h = 0; h < 2; h++)
                mask[(v * DW512_S2M_PAIRS + jp) * 2 + h] =
                    dw512_col_mask(32 * v - p->pad_l + 2 * jp + 16 * h, p->w_in);
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    const size_t kk = (size_t)p->k_h * (size_t)p->k_w;
    for (int c = 0; c < p->c_in; c++)
        channel(p, mask, x + (size_t)c * hw_in, w + (size_t)c * kk, bias ? bias[c] : 0.0f,
                y + (size_t)c * y_plane);
}
#endif

#if KERNELS_X86
/* ---- stride 2, 3x3: branch-free rows ----
 * As the rows kernel above (taps 0 and 1 of 16 outputs: the even and odd floats of the 32 loaded
 * from column 2 q0 - pad_l; tap 2: the even floats of the 32 from 2 q0 - pad_l + 2), with nothing
 * decided per load: a block's input rows are pointers set once per block (rows outside the input
 * point at a zero row, whose taps add zeros), the masks of a vector's four loads are set once per
 * vector and stay in mask registers, the nine weights stay in registers. Rows wider than 16
 * outputs only (measured against the rows kernel: 56 outputs wide -15%, 28 wide -5%, 14 wide
 * +10%). Every output accumulates its 9 taps in the order (i, j) from the bias. */
#define DW512_S2D_ROWS 4
#define DW512_S2D_MAX_W 512 /* input columns the zero row covers */

static int dw512_s2d_applies(const conv2d_params *p)
{
    return dw512_s2_applies(p) && p->k_h == 3 && p->k_w == 3 && p->w_out > 16 && p->w_in <= DW512_S2D_MAX_W;
}

static inline __attribute__((always_inline)) KERNELS_AVX512 void
dw512_s2d_channel_k(const act_kind act, const conv2d_params *p, const float *zrow, const float *xc,
                    const float *wc, float b, float *yc)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    __m512 wv[3][3];
#pragma GCC unroll 3
    for (int i = 0; i < 3; i++)
#pragma GCC unroll 3
        for (int j = 0; j < 3; j++) wv[i][j] = _mm512_set1_ps(wc[i * 3 + j]);
    enum { n_rows = 2 * (DW512_S2D_ROWS - 1) + 3 }; /* input rows of a block */
    for (int oh0 = 0; oh0 < p->h_out; oh0 += DW512_S2D_ROWS) {
        /* addresses as integers: a load's first lanes may lie before the row (masked) */
        uintptr_t rows[n_rows];
#pragma GCC unroll 9
        for (int qq = 0; qq < n_rows; qq++) {
            const int ih = 2 * oh0 - p->pad_t + qq;
            rows[qq] = (uintptr_t)(ih >= 0 && ih < p->h_in ? xc + (size_t)ih * (size_t)p->w_in : zrow) -
                       (uintptr_t)(4 * (intptr_t)p->pad_l);
        }
        for (int q0 = 0; q0 < p->w_out; q0 += 16) {
            /* loads at input columns c0, c0 + 16, c0 + 2, c0 + 18 (c0 = 2 q0 - pad_l) */
            const int c0 = 2 * q0 - p->pad_l;
            const __mmask16 m0 = dw512_col_mask(c0, p->w_in), m1 = dw512_col_mask(c0 + 16, p->w_in);
            const __mmask16 m2 = dw512_col_mask(c0 + 2, p->w_in), m3 = dw512_col_mask(c0 + 18, p->w_in);
            __m512 acc[DW512_S2D_ROWS];
#pragma GCC unroll 4
            for (int r = 0; r < DW512_S2D_ROWS; r++) acc[r] = _mm512_set1_ps(b);
#pragma GCC unroll 9
            for (int qq = 0; qq < n_rows; qq++) {
                const uintptr_t at = rows[qq] + (uintptr_t)(8 * q0);
                const __m512 lo = _mm512_maskz_loadu_ps(m0, (const void *)at);
                const __m512 hi = _mm512_maskz_loadu_ps(m1, (const void *)(at + 64));
                const __m512 lo2 = _mm512_maskz_loadu_ps(m2, (const void *)(at + 8));
                const __m512 hi2 = _mm512_maskz_loadu_ps(m3, (const void *)(at + 72));
                const __m512 t0 = _mm512_permutex2var_ps(lo, even, hi);
                const __m512 t1 = _mm512_permutex2var_ps(lo, odd, hi);
                const __m512 t2 = _mm512_permutex2var_ps(lo2, even, hi2);
#pragma GCC unroll 4
                for (int r = 0; r < DW512_S2D_ROWS; r++) {
                    const int i = qq - 2 * r;
                    if (i < 0 || i >= 3) continue;
                    acc[r] = _mm512_fmadd_ps(wv[i][0], t0, acc[r]);
                    acc[r] = _mm512_fmadd_ps(wv[i][1], t1, acc[r]);
                    acc[r] = _mm512_fmadd_ps(wv[i][2], t2, acc[r]);
                }
            }
            const __mmask16 m = kernels_avx512_mask(p->w_out - q0);
#pragma GCC unroll 4
            for (int r = 0; r < DW512_S2D_ROWS; r++) {
                if (oh0 + r >= p->h_out) break;
                _mm512_mask_storeu_ps(yc + (size_t)(oh0 + r) * (size_t)p->w_out + q0, m, avx512_act(acc[r], act));
            }
        }
    }
}

typedef void (*dw512_s2d_fn)(const conv2d_params *p, const float *zrow, const float *xc, const float *wc,
                             float b, float *yc);
#define DW512_S2D_INSTANCE(name, act, unused)                                                     \
    static KERNELS_AVX512 void name(const conv2d_params *p, const float *zrow, const float *xc,     \
                                  const float *wc, float b, float *yc)                            \
    {                                                                                             \
        dw512_s2d_channel_k(act, p, zrow, xc, wc, b, yc);                                         \
    }
DW512_ACT_TABLE(dw512_s2d_fn, dw512_s2d, DW512_S2D_INSTANCE, 0)

static KERNELS_AVX512 void dw512_s2d_forward(const conv2d_params *p, const float *x, const float *w,
                                           const float *bias, float *y, size_t y_plane)
{
    /* the zero row: the loads read only its lanes inside [0, w_in) */
    _Alignas(64) float zrow[DW512_S2D_MAX_W];
    memset(zrow, 0, (size_t)p->w_in * sizeof *zrow);
    const dw512_s2d_fn channel = dw512_s2d[p->act];
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    for (int c = 0; c < p->c_in; c++)
        channel(p, zrow, x + (size_t)c * hw_in, w + (size_t)c * 9, bias ? bias[c] : 0.0f, y + (size_t)c * y_plane);
}

/* ---- stride 2, 3x3, one column of padding on the left: aligned even/odd rows ----
 * With pad_l == 1 (PyTorch's padding 1), tap j of output q reads input column 2q - 1 + j: taps 1
 * and 2 of 16 outputs q0.. are the even and odd floats of the 32 at column 2q0 (two loads on a
 * whole number of vectors from the row start: no cache-line splits when the rows are), split by
 * two permutes, and tap 0 is the odd floats moved up one lane with the previous vector's last
 * odd float (column 2q0 - 1; zero before the row: the padding) shifted in, so a row's vectors
 * run left to right carrying their odd floats. Masks only on the loads and the store of the
 * last vector, set once per call. Each input row serves every output row of its block, as in
 * the kernel above, and every output accumulates its 9 taps in the order (i, j) from the bias
 * with zeros for the padding: the same bits as that kernel (measured on a band of
 * MobileNetV3-Large's 64 x 112 x 112 -> 56 x 56, 17 input rows, in L2: 16.7 -> 8.9 us; the
 * permutes stay, the split masked loads and the per-vector mask arithmetic go). */
#define DW512_S2E_MAX_VECS (DW512_S2D_MAX_W / 32 + 1) /* output vectors of a row of w_in <= 512 */

static int dw512_s2e_applies(const conv2d_params *p) { return dw512_s2d_applies(p) && p->pad_l == 1; }

static inline __attribute__((always_inline)) KERNELS_AVX512 void
dw512_s2e_channel_k(const act_kind act, const conv2d_params *p, const float *zrow, const __mmask16 *mask,
                    const float *xc, const float *wc, float b, float *yc)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    __m512 wv[3][3];
#pragma GCC unroll 3
    for (int i = 0; i < 3; i++)
#pragma GCC unroll 3
        for (int j = 0; j < 3; j++) wv[i][j] = _mm512_set1_ps(wc[i * 3 + j]);
    enum { n_rows = 2 * (DW512_S2D_ROWS - 1) + 3 }; /* input rows of a block */
    const int n_vec = (p->w_out + 15) / 16;
    for (int oh0 = 0; oh0 < p->h_out; oh0 += DW512_S2D_ROWS) {
        const float *rows[n_rows];
        __m512 prev[n_rows];
#pragma GCC unroll 9
        for (int qq = 0; qq < n_rows; qq++) {
            const int ih = 2 * oh0 - p->pad_t + qq;
            rows[qq] = ih >= 0 && ih < p->h_in ? xc + (size_t)ih * (size_t)p->w_in : zrow;
            prev[qq] = _mm512_setzero_ps();
        }
        for (int v = 0; v < n_vec; v++) {
            const __mmask16 ma = mask[3 * v], mb = mask[3 * v + 1];
            __m512 acc[DW512_S2D_ROWS];
#pragma GCC unroll 4
            for (int r = 0; r < DW512_S2D_ROWS; r++) acc[r] = _mm512_set1_ps(b);
#pragma GCC unroll 9
            for (int qq = 0; qq < n_rows; qq++) {
                const __m512 lo = _mm512_maskz_loadu_ps(ma, rows[qq] + 32 * v);
                const __m512 hi = _mm512_maskz_loadu_ps(mb, rows[qq] + 32 * v + 16);
                const __m512 t1 = _mm512_permutex2var_ps(lo, even, hi);
                const __m512 t2 = _mm512_permutex2var_ps(lo, odd, hi);
                const __m512 t0 = _mm512_castsi512_ps(
                    _mm512_alignr_epi32(_mm512_castps_si512(t2), _mm512_castps_si512(prev[qq]), 15));
                prev[qq] = t2;
#pragma GCC unroll 4
                for (int r = 0; r < DW512_S2D_ROWS; r++) {
                    const int i = qq - 2 * r;
                    if (i < 0 || i >= 3) continue;
                    acc[r] = _mm512_fmadd_ps(wv[i][0], t0, acc[r]);
                    acc[r] = _mm512_fmadd_ps(wv[i][1], t1, acc[r]);
                    acc[r] = _mm512_fmadd_ps(wv[i][2], t2, acc[r]);
                }
            }
            const __mmask16 m = mask[3 * v + 2];
#pragma GCC unroll 4
            for (int r = 0; r < DW512_S2D_ROWS; r++) {
                if (oh0 + r >= p->h_out) break;
                _mm512_mask_storeu_ps(yc + (size_t)(oh0 + r) * (size_t)p->w_out + 16 * v, m, avx512_act(acc[r], act));
            }
        }
    }
}

typedef void (*dw512_s2e_fn)(const conv2d_params *p, const float *zrow, const __mmask16 *mask, const float *xc,
                             const float *wc, float b, float *yc);
#define DW512_S2E_INSTANCE(name, act, unused)                                                     \
    static KERNELS_AVX512 void name(const conv2d_params *p, const float *zrow, const __mmask16 *mask, \
                                  const float *xc, const float *wc, float b, float *yc)           \
    {                                                                                             \
        dw512_s2e_channel_k(act, p, zrow, mask, xc, wc, b, yc);                                   \
    }
DW512_ACT_TABLE(dw512_s2e_fn, dw512_s2e, DW512_S2E_INSTANCE, 0)

static KERNELS_AVX512 void dw512_s2e_forward(const conv2d_params *p, const float *x, const float *w,
                                           const float *bias, float *y, size_t y_plane)
{
    _Alignas(64) float zrow[DW512_S2D_MAX_W + 32];
    memset(zrow, 0, sizeof zrow);
    /* per output vector: the loads at columns 32 v and 32 v + 16 (inside the row), the store */
    __mmask16 mask[3 * DW512_S2E_MAX_VECS];
    const int n_vec = (p->w_out + 15) / 16;
    for (int v = 0; v < n_vec; v++) {
        mask[3 * v] = kernels_avx512_mask(kernels_imax(p->w_in - 32 * v, 0));
        mask[3 * v + 1] = kernels_avx512_mask(kernels_imax(p->w_in - 32 * v - 16, 0));
        mask[3 * v + 2] = kernels_avx512_mask(p->w_out - 16 * v);
    }
    const dw512_s2e_fn channel = dw512_s2e[p->act];
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    for (int c = 0; c < p->c_in; c++)
        channel(p, zrow, mask, x + (size_t)c * hw_in, w + (size_t)c * 9, bias ? bias[c] : 0.0f, y + (size_t)c * y_plane);
}

/* ---- stride 2, 5x5, two columns of left padding (PyTorch padding 2), rows of 17..32 outputs:
 * aligned even / odd rows ----
 * Tap j of output q reads input column 2q - 2 + j: with E / O the even / odd floats of the row
 * (two permutes per 32 columns, from loads on whole vectors from the row start), taps 2 and 3 of
 * 16 outputs are E[q], O[q], taps 0 and 1 the same moved up a lane (E[q - 1], O[q - 1]) and tap 4
 * E moved down a lane (E[q + 1]), the lanes crossing between the row's two output vectors
 * (valignd; zeros past either end: the padding). Each input row serves every output row of a
 * block of DW512_S2F_ROWS that reads it, nothing is staged. Every output accumulates its taps in
 * the order (i, j) from the bias, skipping rows outside the input and with zeros for the padding
 * columns, as the staged kernel below does: the same bits. (MobileNetV3-Large's 72 x 56 x 56 ->
 * 28 x 28 in layer_prof: 56.5 / 61.2 -> 37.8 / 39.8 us, 2 alternating runs.) */
#define DW512_S2F_ROWS 4

static int dw512_s2f_applies(const conv2d_params *p)
{
    return dw512_s2_applies(p) && p->k_h == 5 && p->k_w == 5 && p->pad_l == 2 && p->w_out > 16 &&
           p->w_out <= 32 && p->w_in <= 64;
}

static inline __attribute__((always_inline)) KERNELS_AVX512 void
dw512_s2f_channel_k(const act_kind act, const conv2d_params *p, const __mmask16 *mask, const float *xc,
                    const float *wc, float b, float *yc)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const __m512i zero = _mm512_setzero_si512();
    const __mmask16 m_store = kernels_avx512_mask(p->w_out - 16);
    enum { n_rows = 2 * (DW512_S2F_ROWS - 1) + 5 }; /* input rows of a block */
    for (int oh0 = 0; oh0 < p->h_out; oh0 += DW512_S2F_ROWS) {
        __m512 acc[DW512_S2F_ROWS][2];
#pragma GCC unroll 4
        for (int r = 0; r < DW512_S2F_ROWS; r++) acc[r][0] = acc[r][1] = _mm512_set1_ps(b);
#pragma GCC unroll 11
        for (int qq = 0; qq < n_rows; qq++) {
            const int ih = 2 * oh0 - p->pad_t + qq;
            if (ih < 0 || ih >= p->h_in) continue;
            const float *row = xc + (size_t)ih * (size_t)p->w_in;
            const __m512 a0 = _mm512_maskz_loadu_ps(mask[0], row), a1 = _mm512_maskz_loadu_ps(mask[1], row + 16);
            const __m512 a2 = _mm512_maskz_loadu_ps(mask[2], row + 32), a3 = _mm512_maskz_loadu_ps(mask[3], row + 48);
            const __m512i e0 = _mm512_castps_si512(_mm512_permutex2var_ps(a0, even, a1));
            const __m512i o0 = _mm512_castps_si512(_mm512_permutex2var_ps(a0, odd, a1));
            const __m512i e1 = _mm512_castps_si512(_mm512_permutex2var_ps(a2, even, a3));
            const __m512i o1 = _mm512_castps_si512(_mm512_permutex2var_ps(a2, odd, a3));
            const __m512 t[2][5] = {
                {_mm512_castsi512_ps(_mm512_alignr_epi32(e0, zero, 15)),
                 _mm512_castsi512_ps(_mm512_alignr_epi32(o0, zero, 15)), _mm512_castsi512_ps(e0),
                 _mm512_castsi512_ps(o0), _mm512_castsi512_ps(_mm512_alignr_epi32(e1, e0, 1))},
                {_mm512_castsi512_ps(_mm512_alignr_epi32(e1, e0, 15)),
                 _mm512_castsi512_ps(_mm512_alignr_epi32(o1, o0, 15)), _mm512_castsi512_ps(e1),
                 _mm512_castsi512_ps(o1), _mm512_castsi512_ps(_mm512_alignr_epi32(zero, e1, 1))}};
#pragma GCC unroll 4
            for (int r = 0; r < DW512_S2F_ROWS; r++) {
                const int i = qq - 2 * r;
                if (i < 0 || i >= 5) continue;
#pragma GCC unroll 5
                for (int j = 0; j < 5; j++) {
                    const __m512 wv = _mm512_set1_ps(wc[i * 5 + j]);
                    acc[r][0] = _mm512_fmadd_ps(wv, t[0][j], acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(wv, t[1][j], acc[r][1]);
                }
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < DW512_S2F_ROWS; r++) {
            if (oh0 + r >= p->h_out) break;
            float *yr = yc + (size_t)(oh0 + r) * (size_t)p->w_out;
            _mm512_storeu_ps(yr, avx512_act(acc[r][0], act));
            _mm512_mask_storeu_ps(yr + 16, m_store, avx512_act(acc[r][1], act));
        }
    }
}

typedef void (*dw512_s2f_fn)(const conv2d_params *p, const __mmask16 *mask, const float *xc, const float *wc,
                             float b, float *yc);
#define DW512_S2F_INSTANCE(name, act, unused)                                                     \
    static KERNELS_AVX512 void name(const conv2d_params *p, const __mmask16 *mask, const float *xc, \
                                  const float *wc, float b, float *yc)                            \
    {                                                                                             \
        dw512_s2f_channel_k(act, p, mask, xc, wc, b, yc);                                         \
    }
DW512_ACT_TABLE(dw512_s2f_fn, dw512_s2f, DW512_S2F_INSTANCE, 0)

static KERNELS_AVX512 void dw512_s2f_forward(const conv2d_params *p, const float *x, const float *w,
                                           const float *bias, float *y, size_t y_plane)
{
    __mmask16 mask[4]; /* the loads at columns 16 u: lanes inside the row */
    for (int u = 0; u < 4; u++) mask[u] = kernels_avx512_mask(kernels_imax(p->w_in - 16 * u, 0));
    const dw512_s2f_fn channel = dw512_s2f[p->act];
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    for (int c = 0; c < p->c_in; c++)
        channel(p, mask, x + (size_t)c * hw_in, w + (size_t)c * 25, bias ? bias[c] : 0.0f, y + (size_t)c * y_plane);
}
#endif

#if KERNELS_X86
/* ---- stride 2, rows of a few outputs: several output rows per vector ----
 * A 7-wide output row fills 7 of 16 lanes. Tap (i, j) of output (oh, q) reads padded row
 * 2 oh + i, padded column 2 q + j; the channel is staged into four arrays by the parities of the
 * padded row and column, A[i & 1][j & 1], row s = R >> 1 of padded row R, cell t = padded column
 * 2 t + (j & 1), rows of P = w_out + (k_w - 1) / 2 floats (zeros outside the input: padding rows
 * are never written, padding columns come from masked loads). Tap (i, j) of output row oh is then
 * the P floats at row oh + (i >> 1), cell j >> 1 of its array, and output row oh + 1 is the next P:
 * one plain load serves g = 1 + (16 - w_out) / P output rows (lanes [gi P, gi P + w_out) for row
 * vr g + gi; 7 wide: 14 of 16 lanes), with no masks, permutes or row checks in the tap loop.
 * Blocks of up to 8 vectors (independent FMA chains; the last block moved back onto the last
 * vectors, whose values are recomputed the same). Every output accumulates all k_h * k_w taps in
 * the order (i, j) from the bias, padding taps on zeros: the row kernels' values (which skip
 * padding rows; the two differ at most in the sign of a zero). Bias and activation in registers
 * before the masked stores, one per output row. Measured against the row kernels: MobileNetV3's
 * 14 -> 7 5x5 -17%; rows of one vector (g = 1) were slower, so they keep the row kernels. */
#define DW512_S2P_FLOATS 4096 /* per staging buffer (two) */
#define DW512_S2P_SKEW 512    /* floats between the buffers beyond the first's end (see below) */

typedef struct {
    int pitch;      /* P: floats per staged row */
    int g;          /* output rows per vector */
    int n_vr;       /* vectors: ceil(h_out / g) */
    int rows;       /* staged rows per array */
    size_t astride; /* floats from one array to the next */
} dw512_s2p_geom;

static dw512_s2p_geom dw512_s2p_geom_of(const conv2d_params *p)
{
    dw512_s2p_geom gm;
    gm.pitch = p->w_out + (p->k_w - 1) / 2; /* cells q + (j >> 1) for q < w_out */
    gm.g = 1 + kernels_imax(16 - p->w_out, 0) / gm.pitch;
    gm.n_vr = (p->h_out + gm.g - 1) / gm.g;
    /* padded rows read: 2 (n_vr g - 1) + k_h, split by parity */
    gm.rows = (2 * (gm.n_vr * gm.g - 1) + p->k_h + 1) / 2;
    gm.astride = (size_t)gm.rows * (size_t)gm.pitch + 32; /* slack: a load's lanes past the last row */
    return gm;
}

static int dw512_s2p_applies(const conv2d_params *p)
{
    if (!dw512_s2_applies(p) || p->w_out > 16) return 0;
    const dw512_s2p_geom gm = dw512_s2p_geom_of(p);
    return gm.g >= 2 && 4 * gm.astride <= DW512_S2P_FLOATS;
}

/* Vectors [vr0, vr0 + nb) of one channel from the staged arrays a[0..3]. pc / gc: compile-time
 * pitch and rows per vector of the specialized instances (0: from gm), so that every tap's
 * address is a base register plus a constant. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void
dw512_s2p_block(const int nb, const int kh_c, const int kw_c, const int pc, const int gc, const act_kind act,
                const conv2d_params *p, const dw512_s2p_geom *gm, const float *const *a, const float *wc,
                float b, int vr0, float *yc)
{
    const int k_h = kh_c ? kh_c : p->k_h, k_w = kw_c ? kw_c : p->k_w;
    const int pitch = pc ? pc : gm->pitch, g = gc ? gc : gm->g;
    const size_t step = (size_t)g * (size_t)pitch; /* next vector */
    __m512 acc[8];
#pragma GCC unroll 8
    for (int v = 0; v < nb; v++) acc[v] = _mm512_set1_ps(b);
#pragma GCC unroll 7
    for (int i = 0; i < k_h; i++) {
#pragma GCC unroll 7
        for (int j = 0; j < k_w; j++) {
            const float *src = a[(i & 1) * 2 + (j & 1)] + (size_t)vr0 * step + (size_t)(i >> 1) * (size_t)pitch +
                               (j >> 1);
            const __m512 wv = _mm512_set1_ps(wc[i * k_w + j]);
#pragma GCC unroll 8
            for (int v = 0; v < nb; v++)
                acc[v] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(src + (size_t)v * step), acc[v]);
        }
    }
#pragma GCC unroll 8
    for (int v = 0; v < nb; v++) {
        const __m512 out = avx512_act(acc[v], act);
        const int oh0 = (vr0 + v) * g;
        for (int gi = 0; gi < g && oh0 + gi < p->h_out; gi++) {
            /* lanes [gi P, gi P + w_out) to row oh0 + gi; addresses as integers: the masked-off
             * lanes' addresses may lie before the map */
            const uintptr_t to = (uintptr_t)(yc + (size_t)(oh0 + gi) * (size_t)p->w_out) -
                                 (uintptr_t)(4 * gi * pitch);
            _mm512_mask_storeu_ps((void *)to, kernels_avx512_range_mask(gi * pitch, gi * pitch + p->w_out), out);
        }
    }
}

static inline __attribute__((always_inline)) KERNELS_AVX512 void
dw512_s2p_channel_k(const int kh_c, const int kw_c, const int pc, const int gc, const act_kind act,
                    const conv2d_params *p, const dw512_s2p_geom *gm, const float *stage, const float *wc,
                    float b, float *yc)
{
    const float *const a[4] = {stage, stage + gm->astride, stage + 2 * gm->astride, stage + 3 * gm->astride};
    const int n = gm->n_vr;
    if (n >= 8) {
        for (int v = 0;; v += 8) {
            const int at = kernels_imin(v, n - 8);
            dw512_s2p_block(8, kh_c, kw_c, pc, gc, act, p, gm, a, wc, b, at, yc);
            if (at + 8 >= n) break;
        }
    } else if (n >= 4) {
        dw512_s2p_block(4, kh_c, kw_c, pc, gc, act, p, gm, a, wc, b, 0, yc);
        if (n > 4) dw512_s2p_block(4, kh_c, kw_c, pc, gc, act, p, gm, a, wc, b, n - 4, yc);
    } else if (n >= 2) {
        dw512_s2p_block(2, kh_c, kw_c, pc, gc, act, p, gm, a, wc, b, 0, yc);
        if (n > 2) dw512_s2p_block(2, kh_c, kw_c, pc, gc, act, p, gm, a, wc, b, n - 2, yc);
    } else {
        dw512_s2p_block(1, kh_c, kw_c, pc, gc, act, p, gm, a, wc, b, 0, yc);
    }
}

typedef void (*dw512_s2p_fn)(const conv2d_params *p, const dw512_s2p_geom *gm, const float *stage,
                             const float *wc, float b, float *yc);
#define DW512_S2P_INSTANCE(name, act, kh, kw, pc, gc)                                             \
    static KERNELS_AVX512 void name(const conv2d_params *p, const dw512_s2p_geom *gm,              \
                                  const float *stage, const float *wc, float b, float *yc)        \
    {                                                                                             \
        dw512_s2p_channel_k(kh, kw, pc, gc, act, p, gm, stage, wc, b, yc);                        \
    }
#define DW512_S2P_ACTS(prefix, kh, kw, pc, gc) \
    DW512_ACT_TABLE(dw512_s2p_fn, prefix, DW512_S2P_INSTANCE, kh, kw, pc, gc)
/* MobileNet's 7-wide maps (3x3: pitch 8, 5x5: pitch 9; 2 rows per vector); the rest from gm. */
DW512_S2P_ACTS(dw512_s2p_k3_w7, 3, 3, 8, 2)
DW512_S2P_ACTS(dw512_s2p_k3, 3, 3, 0, 0)
DW512_S2P_ACTS(dw512_s2p_k5_w7, 5, 5, 9, 2)
DW512_S2P_ACTS(dw512_s2p_k5, 5, 5, 0, 0)
DW512_S2P_ACTS(dw512_s2p_any, 0, 0, 0, 0)

/* Stages channel xc's rows into the four arrays at stage: one load pair per row (P <= 16 cells
 * from 32 columns), split into even and odd columns. masks: the pair's lanes inside the row, the
 * cells inside the pitch. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void
dw512_s2p_stage(const conv2d_params *p, const dw512_s2p_geom *gm, const __mmask16 *masks, const float *xc,
                float *stage)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    /* padded rows [r0, r1) hold input rows r - pad_t; the others stay zero */
    const int r0 = kernels_imax(p->pad_t, 0), r1 = kernels_imin(2 * gm->rows, p->pad_t + p->h_in);
    for (int r = r0; r < r1; r++) {
        /* addresses as integers: masked-off lanes may lie outside the row */
        const uintptr_t at = (uintptr_t)(xc + (size_t)(r - p->pad_t) * (size_t)p->w_in) -
                             (uintptr_t)(4 * (intptr_t)p->pad_l);
        float *ev = stage + (size_t)((r & 1) * 2) * gm->astride + (size_t)(r >> 1) * (size_t)gm->pitch;
        const __m512 lo = _mm512_maskz_loadu_ps(masks[0], (const void *)at);
        const __m512 hi = _mm512_maskz_loadu_ps(masks[1], (const void *)(at + 64));
        _mm512_mask_storeu_ps(ev, masks[2], _mm512_permutex2var_ps(lo, even, hi));
        _mm512_mask_storeu_ps(ev + gm->astride, masks[2], _mm512_permutex2var_ps(lo, odd, hi));
    }
}

/* Two staging buffers: channel c + 1 is staged before channel c is computed, so the taps' loads
 * do not wait on the stores just made; the second buffer starts 2 KB further modulo 4 KB (a
 * load matching a pending store's address in its low 12 bits waits for it). */
static KERNELS_AVX512 void dw512_s2p_forward(const conv2d_params *p, const float *x, const float *w,
                                           const float *bias, float *y, size_t y_plane)
{
    const dw512_s2p_geom gm = dw512_s2p_geom_of(p);
    _Alignas(64) float buf[2 * DW512_S2P_FLOATS + DW512_S2P_SKEW];
    float *const stage[2] = {buf, buf + DW512_S2P_FLOATS + DW512_S2P_SKEW};
    assert(4 * gm.astride <= DW512_S2P_FLOATS && gm.pitch <= 16);
    memset(stage[0], 0, 4 * gm.astride * sizeof *buf);
    memset(stage[1], 0, 4 * gm.astride * sizeof *buf);
    /* x columns [-pad_l, 32 - pad_l) of a row: lanes inside [0, w_in) */
    const __mmask16 masks[3] = {
        kernels_avx512_range_mask(p->pad_l, kernels_imin(p->w_in + p->pad_l, 16)),
        kernels_avx512_range_mask(kernels_imax(p->pad_l - 16, 0), kernels_imax(kernels_imin(p->w_in + p->pad_l - 16, 16), 0)),
        kernels_avx512_mask(gm.pitch)};
    const int k = p->k_h == p->k_w ? p->k_h : 0;
    const dw512_s2p_fn *set = k == 3   ? (gm.pitch == 8 && gm.g == 2 ? dw512_s2p_k3_w7 : dw512_s2p_k3)
                              : k == 5 ? (gm.pitch == 9 && gm.g == 2 ? dw512_s2p_k5_w7 : dw512_s2p_k5)
                                       : dw512_s2p_any;
    const dw512_s2p_fn channel = set[p->act];
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in, kk = (size_t)p->k_h * (size_t)p->k_w;
    if (p->c_in > 0) dw512_s2p_stage(p, &gm, masks, x, stage[0]);
    for (int c = 0; c < p->c_in; c++) {
        if (c + 1 < p->c_in) dw512_s2p_stage(p, &gm, masks, x + (size_t)(c + 1) * hw_in, stage[(c + 1) & 1]);
        channel(p, &gm, stage[c & 1], w + (size_t)c * kk, bias ? bias[c] : 0.0f, y + (size_t)c * y_plane);
    }
}
#endif

#if KERNELS_X86
/* ---- stride 2, k_w >= 5: deinterleaved rows ----
 * Tap (i, j) of output column q reads input column 2q - pad_l + j. Each input row is staged once
 * as two arrays, E[t] = x[2t - pad_l] and O[t] = x[2t - pad_l + 1] (zero outside the row), so
 * tap j of 16 outputs q0.. is one plain load from E (j even) or O (j odd) at q0 + j / 2: no masks
 * and no permutes in the tap loop. Staged rows live in a ring of as many slots as a block of
 * output rows reads (a power of two, more while small: rows are staged ahead of their loads).
 * A block is nr rows x nv vectors of 16 outputs, 8 x 1 / 4 x 2 / 2 x 4 by row width (8
 * independent FMA chains: one output's chain of k_h * k_w FMAs is latency bound), 1 x 4 for rows
 * too wide for the ring of 2-row blocks; each staged row load feeds every output row of the block
 * that uses it. Every output still accumulates its taps in the order (i, j) from
 * the bias, skipping rows outside the input (as the reference does), so the bits match. Bias and
 * activation in registers before the only (masked) store. */
/* Ring floats up to which slots are added for staging rows further ahead (a 4x larger ring
 * measured 40% slower on a 112-wide input, likely L1 pressure). */
#define DW512_S2_AHEAD_FLOATS 4096
/* Floats of the staging ring: 8 slots of the widest rows (1024 outputs: E and O of pitch
 * 1024 + 16 + 16). */
#define DW512_S2_STAGE_FLOATS (8 * 2 * (16 * 64 + 32))

static inline __attribute__((always_inline)) KERNELS_AVX512 __mmask16 dw512_mask16_clamped(int n)
{
    return n <= 0 ? 0 : kernels_avx512_mask(n);
}

/* Most chunks of 16 E (and O) floats a row stages: 1024 outputs + 16. */
#define DW512_S2_MAX_CHUNKS 65

/* The staging ring of one call: slot s holds E at stage + 2 * s * pitch, O pitch floats later;
 * the taps read [0, len) of each, staging writes [off, off + 16 * chunks) (within the pitch). */
typedef struct {
    float *stage;
    int len, pitch, slot_mask; /* slots: a power of two (row ih in slot ih & slot_mask) */
    int off_ev, off_od; /* where x's even / odd columns start in their array */
    int even_to_o;      /* pad_l odd: x's even columns are O's, odd columns E's */
    int chunks;
    const __mmask16 *load_mask; /* [2 * u + h]: lanes of x columns 32 u + 16 h inside the row */
} dw512_s2_ring;

/* Stages input row xr into ev (x's even columns from offset off_ev) and od (odd columns from
 * off_od); cells past the row get zeros, cells before the offsets stay zero. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void
dw512_s2_stage_row(const dw512_s2_ring *rg, const float *xr, float *ev, float *od)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                           28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    /* addresses as integers: loads past the row are fully masked (no access) */
    const uintptr_t row = (uintptr_t)xr;
    for (int u = 0; u < rg->chunks; u++) {
        const uintptr_t at = row + (uintptr_t)128 * (uintptr_t)u;
        const __m512 lo = _mm512_maskz_loadu_ps(rg->load_mask[2 * u], (const void *)at);
        const __m512 hi = _mm512_maskz_loadu_ps(rg->load_mask[2 * u + 1], (const void *)(at + 64));
        _mm512_storeu_ps(ev + rg->off_ev + 16 * u, _mm512_permutex2var_ps(lo, even, hi));
        _mm512_storeu_ps(od + rg->off_od + 16 * u, _mm512_permutex2var_ps(lo, odd, hi));
    }
}

/* Output rows [oh0, oh0 + nr) (rows past h_out computed, not stored), columns [q0, q0 + 16 nv). */
static inline __attribute__((always_inline)) KERNELS_AVX512 void
dw512_s2_block(const int nr, const int nv, const int kh_c, const int kw_c, const act_kind act,
               const conv2d_params *p, const dw512_s2_ring *rg, const float *wc, float b, int oh0,
               int q0, float *yc, size_t y_row)
{
    const int k_h = kh_c ? kh_c : p->k_h, k_w = kw_c ? kw_c : p->k_w;
    const int ih0 = 2 * oh0 - p->pad_t;
    __m512 acc[8][4];
#pragma GCC unroll 8
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) acc[r][v] = _mm512_set1_ps(b);
#pragma GCC unroll 21
    for (int qq = 0; qq < 2 * (nr - 1) + k_h; qq++) {
        const int ih = ih0 + qq;
        if (ih < 0 || ih >= p->h_in) continue;
        const float *e = rg->stage + (size_t)(2 * (ih & rg->slot_mask)) * (size_t)rg->pitch + q0;
#pragma GCC unroll 7
        for (int j = 0; j < k_w; j++) {
            const float *src = e + ((j & 1) ? rg->pitch : 0) + (j >> 1);
            __m512 xv[4];
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) xv[v] = _mm512_loadu_ps(src + 16 * v);
#pragma GCC unroll 8
            for (int r = 0; r < nr; r++) {
                const int i = qq - 2 * r;
                if (i < 0 || i >= k_h) continue;
                const __m512 wv = _mm512_set1_ps(wc[i * k_w + j]);
#pragma GCC unroll 4
                for (int v = 0; v < nv; v++) acc[r][v] = _mm512_fmadd_ps(wv, xv[v], acc[r][v]);
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < nr; r++) {
        if (oh0 + r >= p->h_out) break;
        float *yr = yc + (size_t)(oh0 + r) * y_row + q0;
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            _mm512_mask_storeu_ps(yr + 16 * v, dw512_mask16_clamped(p->w_out - q0 - 16 * v),
                                  avx512_act(acc[r][v], act));
    }
}

static inline __attribute__((always_inline)) KERNELS_AVX512 void
dw512_s2_channel_k(const int nr, const int nv, const int kh_c, const int kw_c, const act_kind act,
                   const conv2d_params *p, const dw512_s2_ring *rg, const float *xc,
                   const float *wc, float b, float *yc)
{
    int next = 0; /* first input row not staged yet */
    for (int oh0 = 0; oh0 < p->h_out; oh0 += nr) {
        const int ih0 = 2 * oh0 - p->pad_t;
        /* every row the ring holds past the block's first: stores long before their loads */
        const int ih1 = kernels_imin(ih0 + rg->slot_mask + 1, p->h_in);
        for (int ih = kernels_imax(next, ih0); ih < ih1; ih++) {
            float *e = rg->stage + (size_t)(2 * (ih & rg->slot_mask)) * (size_t)rg->pitch;
            float *o = e + rg->pitch;
            dw512_s2_stage_row(rg, xc + (size_t)ih * (size_t)p->w_in, rg->even_to_o ? o : e,
                               rg->even_to_o ? e : o);
        }
        next = kernels_imax(next, ih1);
        for (int q0 = 0; q0 < p->w_out; q0 += 16 * nv)
            dw512_s2_block(nr, nv, kh_c, kw_c, act, p, rg, wc, b, oh0, q0, yc, (size_t)p->w_out);
    }
}

typedef void (*dw512_s2_fn)(const conv2d_params *p, const dw512_s2_ring *rg, const float *xc,
                            const float *wc, float b, float *yc);
#define DW512_S2_INSTANCE(name, act, nr, nv, kh, kw)                                              \
    static KERNELS_AVX512 void name(const conv2d_params *p, const dw512_s2_ring *rg,               \
                                  const float *xc, const float *wc, float b, float *yc)           \
    {                                                                                             \
        dw512_s2_channel_k(nr, nv, kh, kw, act, p, rg, xc, wc, b, yc);                            \
    }
#define DW512_S2_ACTS(prefix, nr, nv, kh, kw) DW512_ACT_TABLE(dw512_s2_fn, prefix, DW512_S2_INSTANCE, nr, nv, kh, kw)
#define DW512_S2_LAYOUT(prefix, nr, nv)                                                           \
    DW512_S2_ACTS(prefix##_k5, nr, nv, 5, 5)                                                      \
    DW512_S2_ACTS(prefix##_any, nr, nv, 0, 0)
/* Layouts (rows x vectors): rows up to 16, 32, wider; 1 x 4 when 2 x 4 would not fit the ring. */
DW512_S2_LAYOUT(dw512_s2_8x1, 8, 1)
DW512_S2_LAYOUT(dw512_s2_4x2, 4, 2)
DW512_S2_LAYOUT(dw512_s2_2x4, 2, 4)
DW512_S2_LAYOUT(dw512_s2_1x4, 1, 4)

/* Output channel c at y + c * y_plane (h_out * w_out for a whole map, more for a band of rows). */
static KERNELS_AVX512 void dw512_s2_forward(const conv2d_params *p, const float *x, const float *w,
                                          const float *bias, float *y, size_t y_plane)
{
    if (dw512_s2e_applies(p)) {
        dw512_s2e_forward(p, x, w, bias, y, y_plane);
        return;
    }
    if (dw512_s2f_applies(p)) {
        dw512_s2f_forward(p, x, w, bias, y, y_plane);
        return;
    }
    if (dw512_s2d_applies(p)) {
        dw512_s2d_forward(p, x, w, bias, y, y_plane);
        return;
    }
    if (dw512_s2p_applies(p)) {
        dw512_s2p_forward(p, x, w, bias, y, y_plane);
        return;
    }
    if (p->k_w < 5) { /* few taps per staged row: staging measured slower (3x3 28 wide: +40%) */
        dw512_s2m_forward(p, x, w, bias, y, y_plane);
        return;
    }
    int nr = p->w_out <= 16 ? 8 : p->w_out <= 32 ? 4 : 2;
    const int nv = 8 / nr;
    /* E and O: the block's columns rounded up to whole blocks, plus (k_w - 1) / 2 <= 3 */
    const int len = (p->w_out + 16 * nv - 1) / (16 * nv) * (16 * nv) + 16, pitch = len + 16;
    int slots = 1;
    while (slots < 2 * (nr - 1) + p->k_h) slots *= 2;
    if (nr == 2 && 2 * pitch * slots > DW512_S2_STAGE_FLOATS) { /* 1 x 4: same nv and len */
        nr = 1;
        for (slots = 1; slots < p->k_h; slots *= 2) {}
    }
    /* more slots while small and the map has rows for them: rows are staged that far ahead */
    while (slots < p->h_in && 4 * pitch * slots <= DW512_S2_AHEAD_FLOATS) slots *= 2;
    _Alignas(64) float stage[DW512_S2_STAGE_FLOATS];
    memset(stage, 0, (size_t)(2 * pitch * slots) * sizeof *stage);
    /* x column 2t - pad_l: even for pad_l even (E from t = pad_l / 2), odd otherwise (E from
     * (pad_l + 1) / 2, O's evens from (pad_l - 1) / 2). Chunks of 16 cover [0, len) of both
     * arrays, ending within the pitch (the offsets differ by at most 1); none if the offsets
     * reach past len (every tap is then padding: the zeros). Chunks past the row's last column
     * (32 x columns each) would only store zeros over the memset's: not staged. */
    const int odd_pad = p->pad_l & 1;
    const int off_ev = odd_pad ? (p->pad_l - 1) / 2 : p->pad_l / 2;
    const int off_od = odd_pad ? (p->pad_l + 1) / 2 : p->pad_l / 2;
    const int chunks = kernels_imax(0, kernels_imin((len - kernels_imin(off_ev, off_od) + 15) / 16,
                                                    (p->w_in + 31) / 32));
    __mmask16 load_mask[2 * DW512_S2_MAX_CHUNKS];
    for (int u = 0; u < chunks; u++)
        for (int h = 0; h < 2; h++)
            load_mask[2 * u + h] = dw512_mask16_clamped(p->w_in - 32 * u - 16 * h);
    const dw512_s2_ring rg = {stage, len, pitch, slots - 1, off_ev, off_od, odd_pad, chunks,
                              load_mask};
    const int k = p->k_h == p->k_w ? p->k_h : 0;
    const dw512_s2_fn *set;
    if (nr == 8)
        set = k == 5 ? dw512_s2_8x1_k5 : dw512_s2_8x1_any;
    else if (nr == 4)
        set = k == 5 ? dw512_s2_4x2_k5 : dw512_s2_4x2_any;
    else if (nr == 2)
        set = k == 5 ? dw512_s2_2x4_k5 : dw512_s2_2x4_any;
    else
        set = k == 5 ? dw512_s2_1x4_k5 : dw512_s2_1x4_any;
    const dw512_s2_fn channel = set[p->act];
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    const size_t kk = (size_t)p->k_h * (size_t)p->k_w;
    for (int c = 0; c < p->c_in; c++)
        channel(p, &rg, x + (size_t)c * hw_in, w + (size_t)c * kk, bias ? bias[c] : 0.0f,
                y + (size_t)c * y_plane);
}

/* ---- stride 1, wider maps: padded plane ----
 * Each channel is copied, in bands of DW512_PAD_BAND output rows, into a zero-padded plane of the
 * rows the band reads (the padding columns are zeroed once per call and never written; rows
 * outside the input are zeroed per band), then every output row is computed in vectors of 16
 * with one plain shifted load per tap and the row's vectors as independent accumulators; only the
 * store of a row's last vector is masked. (The flat kernel's per-load masks cost more than this
 * copy once rows are wide.) A band's plane stays in L1 and its rows start at input column 0 on a
 * 64-byte boundary, so the copy stores whole aligned vectors (a whole-map plane, 52 KB at 112 x
 * 112, measured 1.4x slower: its copy and reads went to L2). */
/* Output rows [oh, oh + nr) (nr 1, 2 or 4; 4 only with nv <= 2), columns [q0, q0 + 16 * nv),
 * from plane rows pr..: plane row pr + q (padded row oh + q) serves tap row q - r of output row
 * oh + r, so one load feeds every row of the block; each output still accumulates its taps in the
 * order (i, j) from the bias. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void
dw512_pad_rows(const int nr, const int kh_c, const int kw_c, const act_kind act,
               const conv2d_params *p, const float *plane, int wp, const float *wc, float b,
               int pr, int q0, int nv, float *yc)
{
    const int k_h = kh_c ? kh_c : p->k_h, k_w = kw_c ? kw_c : p->k_w;
    const float *base = plane + (size_t)pr * (size_t)wp + q0;
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) acc[r][v] = _mm512_set1_ps(b);
#pragma GCC unroll 10
    for (int q = 0; q < k_h + nr - 1; q++)
#pragma GCC unroll 7
        for (int j = 0; j < k_w; j++) {
            const float *src = base + (size_t)q * (size_t)wp + j;
            __m512 xv[4];
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                xv[v] = v < nv ? _mm512_loadu_ps(src + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 4
            for (int r = 0; r < nr; r++) {
                const int i = q - r;
                if (i < 0 || i >= k_h) continue;
                const __m512 wv = _mm512_set1_ps(wc[i * k_w + j]);
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++)
                    if (v < nv) acc[r][v] = _mm512_fmadd_ps(wv, xv[v], acc[r][v]);
            }
        }
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++) {
        float *yr = yc + (size_t)(pr + r) * (size_t)p->w_out + q0;
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            if (v >= nv) break;
            const int n = p->w_out - q0 - 16 * v;
            _mm512_mask_storeu_ps(yr + 16 * v, kernels_avx512_mask(n), avx512_act(acc[r][v], act));
        }
    }
}

/* Output rows [oh0, oh1) from plane, whose row 0 is padded row oh0 (input row oh0 - pad_t) and
 * whose column 0 is padded column 0 (input column -pad_l); output row oh at yc + (oh - oh0) w_out. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void
dw512_pad_channel_k(const int kh_c, const int kw_c, const act_kind act, const conv2d_params *p,
                    const float *plane, int wp, const float *wc, float b, int oh0, int oh1, float *yc)
{
    for (int q0 = 0; q0 < p->w_out; q0 += 64) {
        const int nv = kernels_imin(4, (p->w_out - q0 + 15) / 16);
        int oh = oh0;
        /* 5x5 and up on rows of one or two vectors: blocks of 4 rows (8 FMA chains instead of 2;
         * measured 28 wide -7%, and +5% for 3x3, which keeps the pairs) */
        if (nv <= 2 && (kh_c ? kh_c : p->k_h) >= 5)
            for (; oh + 4 <= oh1; oh += 4)
                dw512_pad_rows(4, kh_c, kw_c, act, p, plane, wp, wc, b, oh - oh0, q0, nv, yc);
        if (kh_c == 3) /* measured: 5x5 is slower in row pairs (28 wide: +25%) */
            for (; oh + 2 <= oh1; oh += 2)
                dw512_pad_rows(2, kh_c, kw_c, act, p, plane, wp, wc, b, oh - oh0, q0, nv, yc);
        for (; oh < oh1; oh++)
            dw512_pad_rows(1, kh_c, kw_c, act, p, plane, wp, wc, b, oh - oh0, q0, nv, yc);
    }
}

typedef void (*dw512_pad_fn)(const conv2d_params *p, const float *plane, int wp, const float *wc,
                             float b, int oh0, int oh1, float *yc);
#define DW512_PAD_INSTANCE(name, act, kh, kw)                                                     \
    static KERNELS_AVX512 void name(const conv2d_params *p, const float *plane, int wp,            \
                                  const float *wc, float b, int oh0, int oh1, float *yc)          \
    {                                                                                             \
        dw512_pad_channel_k(kh, kw, act, p, plane, wp, wc, b, oh0, oh1, yc);                      \
    }
#define DW512_PAD_ACTS(prefix, kh, kw) DW512_ACT_TABLE(dw512_pad_fn, prefix, DW512_PAD_INSTANCE, kh, kw)
DW512_PAD_ACTS(dw512_pad_k3, 3, 3)
DW512_PAD_ACTS(dw512_pad_k5, 5, 5)
DW512_PAD_ACTS(dw512_pad_any, 0, 0)

/* Output rows per band (its plane: 18 rows x 144 floats at 112 wide, 10 KB); maps whose whole
 * plane has at most DW512_PAD_WHOLE floats are one band (no rows copied twice). */
#define DW512_PAD_BAND 16
#define DW512_PAD_WHOLE 4096
/* Floats of a band's plane: at most the whole-map plane dw512_pad_applies allows, plus the
 * aligned lead and row rounding (under 48 floats per row, at most DW512_PAD_BAND + 6 rows). */
#define DW512_BAND_FLOATS (DW512_PLANE_FLOATS + 48 * (DW512_PAD_BAND + 6))

/* Output rows [oh_lo, oh_hi) of every channel, row oh of channel c at y + c * y_plane + (oh - oh_lo) w_out. */
static KERNELS_AVX512 void dw512_pad_forward(const conv2d_params *p, const float *x, const float *w,
                                           const float *bias, float *y, size_t y_plane, int oh_lo, int oh_hi)
{
    /* input column 0 at plane column lead (a multiple of 16, >= pad_l); the taps read plane
     * columns [lead - pad_l, lead - pad_l + 16 * ceil(w_out / 16) + k_w - 1) of each row */
    const int lead = (p->pad_l + 15) / 16 * 16;
    const int wp = (lead - p->pad_l + (p->w_out + 15) / 16 * 16 + p->k_w - 1 + 15) / 16 * 16;
    const int band = (size_t)(p->h_out + p->k_h - 1) * (size_t)wp <= DW512_PAD_WHOLE
                         ? p->h_out
                         : kernels_imin(DW512_PAD_BAND, p->h_out);
    const int rows = band + p->k_h - 1;
    /* 16 floats of slack: the last row's last vector reads up to 15 cells past the plane */
    _Alignas(64) float plane[DW512_BAND_FLOATS];
    assert((size_t)rows * (size_t)wp + 16 <= DW512_BAND_FLOATS);
    memset(plane, 0, ((size_t)rows * (size_t)wp + 16) * sizeof *plane);
    const int k = p->k_h == p->k_w ? p->k_h : 0;
    const dw512_pad_fn channel = (k == 3 ? dw512_pad_k3 : k == 5 ? dw512_pad_k5 : dw512_pad_any)[p->act];
    /* input columns [0, n_cols) land inside the plane's rows */
    const int n_cols = kernels_imin(p->w_in, wp - lead);
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    const size_t kk = (size_t)p->k_h * (size_t)p->k_w;
    const float *view = plane + lead - p->pad_l; /* padded column 0 */
    for (int c = 0; c < p->c_in; c++) {
        const float *xc = x + (size_t)c * hw_in;
        for (int oh0 = oh_lo; oh0 < oh_hi; oh0 += band) {
            const int oh1 = kernels_imin(oh0 + band, oh_hi);
            for (int r = 0; r < oh1 - oh0 + p->k_h - 1; r++) {
                const int ih = oh0 - p->pad_t + r;
                float *d = plane + (size_t)r * (size_t)wp + lead;
                if (ih < 0 || ih >= p->h_in) {
                    for (int t = 0; t < n_cols; t += 16)
                        _mm512_mask_store_ps(d + t, kernels_avx512_mask(n_cols - t), _mm512_setzero_ps());
                    continue;
                }
                const float *src = xc + (size_t)ih * (size_t)p->w_in;
                for (int t = 0; t < n_cols; t += 16) {
                    const __mmask16 m = kernels_avx512_mask(n_cols - t);
                    _mm512_mask_store_ps(d + t, m, _mm512_maskz_loadu_ps(m, src + t));
                }
            }
            channel(p, view, wp, w + (size_t)c * kk, bias ? bias[c] : 0.0f, oh0, oh1,
                    y + (size_t)c * y_plane + (size_t)(oh0 - oh_lo) * (size_t)p->w_out);
        }
    }
}
#endif

void kernels_dw_avx512(const conv2d_params *p, const float *x, const float *w, const float *bias,
                       float *y)
{
    assert(kernels_dw_avx512_applies(p) && cpu_isa_best() >= CPU_ISA_AVX512);
#if KERNELS_X86
    if (kernels_dw_cb_applies(p))
        kernels_dw_cb(p, x, w, bias, y);
    else if (dw512_rows_applies(p))
        dw512_rows_forward(p, x, w, bias, y);
    else if (dw512_flat_applies(p))
        dw512_forward(p, x, w, bias, y);
    else if (dw512_s2_applies(p))
        dw512_s2_forward(p, x, w, bias, y, (size_t)p->h_out * (size_t)p->w_out);
    else
        dw512_pad_forward(p, x, w, bias, y, (size_t)p->h_out * (size_t)p->w_out, 0, p->h_out);
#else
    (void)x, (void)w, (void)bias, (void)y;
#endif
}

int kernels_dw_avx512_s2_applies(const conv2d_params *p) { return dw512_s2_applies(p); }

int kernels_dw_avx512_rows_applies(const conv2d_params *p)
{
    return !kernels_dw_cb_applies(p) && !dw512_rows_applies(p) && !dw512_flat_applies(p) && !dw512_s2_applies(p) &&
           dw512_pad_applies(p);
}

void kernels_dw_avx512_rows(const conv2d_params *p, const float *x, const float *w, const float *bias, float *y,
                            size_t y_plane, int oh_lo, int oh_hi)
{
    assert(kernels_dw_avx512_rows_applies(p) && cpu_isa_best() >= CPU_ISA_AVX512);
    assert(0 <= oh_lo && oh_lo < oh_hi && oh_hi <= p->h_out);
#if KERNELS_X86
    dw512_pad_forward(p, x, w, bias, y, y_plane, oh_lo, oh_hi);
#else
    (void)x, (void)w, (void)bias, (void)y, (void)y_plane;
#endif
}

void kernels_dw_avx512_s2(const conv2d_params *p, const float *x, const float *w,
                          const float *bias, float *y, size_t y_plane)
{
    assert(dw512_s2_applies(p) && cpu_isa_best() >= CPU_ISA_AVX512);
#if KERNELS_X86
    dw512_s2_forward(p, x, w, bias, y, y_plane);
#else
    (void)x, (void)w, (void)bias, (void)y, (void)y_plane;
#endif
}
