/* Depthwise convolution on AVX-512, channel-blocked: the small maps of MobileNetV3 (7x7 and 14x14
 * outputs, stride 1 or 2, 3x3 or 5x5 kernels).
 *
 * On a 7- or 14-wide map a vector along a row is mostly padding or masked lanes, and stride 2
 * needs permutes or staging to pick every other column. Here 16 channels at a time are
 * transposed (16 x 16 in registers) into a zero-bordered plane of vectors T[row][column][16]
 * (one vector = the 16 channels of one padded input cell), so tap (i, j) of output (oh, ow) is
 * one full-vector load of T[oh * s + i][ow * s + j] whatever the stride, every lane used; a block
 * of up to 14 outputs keeps as many independent FMA chains. The outputs (16 channels per vector)
 * are transposed back into the channels' planes, the activation applied there. Every output
 * accumulates all k_h * k_w taps in the order (i, j) from the bias, padding taps on zeros: the
 * values of the row and flat kernels (kernels_dw512.c), which differ at most in the sign of a
 * zero. Measured per layer in the commit that added it.
 *
 * Fused with the pointwise expansion before it (CONV_PATH_PW_DWCB): the GEMM computes 16-channel
 * vectors of output positions (positions broadcast from the input rows, weights repacked k-major,
 * kernels_pw_dwcb_pack) and stores them straight into the planes of vectors, so neither the
 * expanded map in channel planes nor the transpose into the planes exists; only the depthwise
 * output is transposed back. */
#include "kernels.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "kernels_internal.h"

#if KERNELS_X86
#include "kernels_avx512.h"
#endif

/* Padded input cells the plane of vectors holds (64 KiB of floats) and output cells staged
 * before the transpose back. */
#define DWCB_MAX_CELLS 1024
#define DWCB_MAX_OUT 784

/* GEMM tiles: PWCB_POS positions (broadcasts) x up to PWCB_VECS vectors of 16 channels (weights).
 * Measured against 6 x 4 and 12 x 2 on MobileNetV3-Large's 14x14 pairs: the same or better, and
 * 196 and 784 positions are whole tiles. */
#define PWCB_POS 7
#define PWCB_VECS 3

/* Rows and columns of T: the padded window every output reads, and every input cell. */
static int dwcb_rows(const conv2d_params *p)
{
    return kernels_imax((p->h_out - 1) * p->stride_h + p->k_h, p->pad_t + p->h_in);
}

static int dwcb_cols(const conv2d_params *p)
{
    return kernels_imax((p->w_out - 1) * p->stride_w + p->k_w, p->pad_l + p->w_in);
}

/* 7-wide outputs from inputs up to 14 wide (stride 1 or 2), and 14-wide 5x5 stride 1: measured
 * against kernels_dw512.c's kernels (1 thread, each layer alone, warm caches, MobileNetV3's
 * shapes): 7x7 5x5 -30..-45%, 14 -> 7 5x5 stride 2 -35%, 14x14 5x5 -10..-30%; 14x14 3x3 was as
 * fast (less work per transposed cell) and 28 -> 14 stride 2 slower (5x5 +10%, 3x3 +50%: four
 * times the input cells to transpose per output). */
int kernels_dw_cb_applies(const conv2d_params *p)
{
    const int s = p->stride_h, k = p->k_h;
    if (s != p->stride_w || (s != 1 && s != 2) || k != p->k_w || (k != 3 && k != 5) || p->pad_t >= k ||
        p->pad_l >= k || p->h_out < 2 || p->h_out > 14)
        return 0;
    const int shape = (p->w_out == 7 && p->w_in <= 14) || (p->w_out == 14 && s == 1 && k == 5);
    return shape && (size_t)dwcb_rows(p) * (size_t)dwcb_cols(p) <= DWCB_MAX_CELLS &&
           p->h_out * p->w_out <= DWCB_MAX_OUT;
}

#if KERNELS_X86
/* In-place transpose of 16 vectors: v[i] lane j <- v[j] lane i. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void dwcb_transpose16(__m512 v[16])
{
    __m512 t[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
        const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        v[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        v[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        v[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        v[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    /* v[4a + b] now holds, in 128-bit lane q, elements 4q..4q+3 of rows 4a..4a+3 at column 4q + b */
#pragma GCC unroll 4
    for (int b = 0; b < 4; b++) {
        t[b] = _mm512_shuffle_f32x4(v[b], v[4 + b], 0x88);
        t[4 + b] = _mm512_shuffle_f32x4(v[b], v[4 + b], 0xdd);
        t[8 + b] = _mm512_shuffle_f32x4(v[8 + b], v[12 + b], 0x88);
        t[12 + b] = _mm512_shuffle_f32x4(v[8 + b], v[12 + b], 0xdd);
    }
#pragma GCC unroll 4
    for (int b = 0; b < 4; b++) {
        v[b] = _mm512_shuffle_f32x4(t[b], t[8 + b], 0x88);
        v[8 + b] = _mm512_shuffle_f32x4(t[b], t[8 + b], 0xdd);
        v[4 + b] = _mm512_shuffle_f32x4(t[4 + b], t[12 + b], 0x88);
        v[12 + b] = _mm512_shuffle_f32x4(t[4 + b], t[12 + b], 0xdd);
    }
}

/* act on 16 vectors, one switch. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void dwcb_act16(__m512 v[16], act_kind act)
{
    switch (act) {
#define DWCB_ACT_CASE(a) \
    case a:              \
        for (int i = 0; i < 16; i++) v[i] = avx512_act(v[i], a); \
        break;
        DWCB_ACT_CASE(ACT_RELU)
        DWCB_ACT_CASE(ACT_RELU6)
        DWCB_ACT_CASE(ACT_HSWISH)
        DWCB_ACT_CASE(ACT_HSIGMOID)
#undef DWCB_ACT_CASE
    case ACT_NONE: break;
    }
}

/* Output rows [oh0, oh0 + nr) x columns [ow0, ow0 + nb) of the block's 16 channels into
 * out[oh * w_out + ow]. k, s: compile-time kernel side and stride. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void
dwcb_tile(const int k, const int s, const int nr, const int nb, const float *t, int cols, const __m512 *wt,
          __m512 bias, int oh0, int ow0, int w_out, float *out)
{
    __m512 acc[2][14];
#pragma GCC unroll 2
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 14
        for (int q = 0; q < nb; q++) acc[r][q] = bias;
#pragma GCC unroll 5
    for (int i = 0; i < k; i++) {
#pragma GCC unroll 5
        for (int j = 0; j < k; j++) {
            const __m512 wv = wt[i * k + j];
#pragma GCC unroll 2
            for (int r = 0; r < nr; r++) {
                const float *row = t + ((size_t)((oh0 + r) * s + i) * (size_t)cols + (size_t)(ow0 * s + j)) * 16;
#pragma GCC unroll 14
                for (int q = 0; q < nb; q++)
                    acc[r][q] = _mm512_fmadd_ps(wv, _mm512_load_ps(row + (size_t)(q * s) * 16), acc[r][q]);
            }
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 14
        for (int q = 0; q < nb; q++)
            _mm512_store_ps(out + ((size_t)(oh0 + r) * (size_t)w_out + (size_t)(ow0 + q)) * 16, acc[r][q]);
}

/* Every output of the block: 7-wide maps in tiles of 2 rows x 7 (the last tile moved back onto
 * the last two rows, whose values are recomputed the same), 14-wide in rows of 14. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void
dwcb_map_k(const int k, const int s, const conv2d_params *p, const float *t, int cols, const __m512 *wt,
           __m512 bias, float *out)
{
    if (p->w_out == 7) {
        for (int oh = 0;; oh += 2) {
            const int at = kernels_imin(oh, p->h_out - 2);
            dwcb_tile(k, s, 2, 7, t, cols, wt, bias, at, 0, 7, out);
            if (at + 2 >= p->h_out) break;
        }
    } else {
        for (int oh = 0; oh < p->h_out; oh++) dwcb_tile(k, s, 1, 14, t, cols, wt, bias, oh, 0, 14, out);
    }
}

typedef void (*dwcb_map_fn)(const conv2d_params *p, const float *t, int cols, const __m512 *wt, __m512 bias,
                            float *out);
#define DWCB_MAP(name, k, s)                                                                               \
    static KERNELS_AVX512 void name(const conv2d_params *p, const float *t, int cols, const __m512 *wt,    \
                                  __m512 bias, float *out)                                               \
    {                                                                                                    \
        dwcb_map_k(k, s, p, t, cols, wt, bias, out);                                                     \
    }
DWCB_MAP(dwcb_map_k3s1, 3, 1)
DWCB_MAP(dwcb_map_k3s2, 3, 2)
DWCB_MAP(dwcb_map_k5s1, 5, 1)
DWCB_MAP(dwcb_map_k5s2, 5, 2)

/* The block's staged outputs (out[cell][16]), 16 cells at a time, back into the planes of its nc
 * channels at y, with the activation. */
static KERNELS_AVX512 void dwcb_store(const conv2d_params *p, const float *out, int nc, float *y)
{
    const int n_out = p->h_out * p->w_out;
    const size_t hw_out = (size_t)n_out;
    for (int n0 = 0; n0 < n_out; n0 += 16) {
        const __mmask16 m = kernels_avx512_mask(n_out - n0);
        __m512 v[16];
#pragma GCC unroll 16
        for (int q = 0; q < 16; q++) v[q] = _mm512_load_ps(out + (size_t)(n0 + q) * 16);
        dwcb_transpose16(v);
        dwcb_act16(v, p->act);
        for (int c = 0; c < nc; c++) _mm512_mask_storeu_ps(y + (size_t)c * hw_out + (size_t)n0, m, v[c]);
    }
}

static KERNELS_AVX512 void dwcb_forward(const conv2d_params *p, const float *x, const float *w,
                                      const float *bias, float *y)
{
    const int k = p->k_h, rows = dwcb_rows(p), cols = dwcb_cols(p);
    const int n_in = p->h_in * p->w_in, n_out = p->h_out * p->w_out, kk = k * k;
    const size_t hw_in = (size_t)n_in, hw_out = (size_t)n_out;
    _Alignas(64) float t[DWCB_MAX_CELLS * 16];
    _Alignas(64) float out[(DWCB_MAX_OUT + 15) * 16];
    int off[DWCB_MAX_CELLS]; /* input cell n's vector in t */
    __m512 wt[25];
    const dwcb_map_fn map = k == 3 ? (p->stride_h == 1 ? dwcb_map_k3s1 : dwcb_map_k3s2)
                                   : (p->stride_h == 1 ? dwcb_map_k5s1 : dwcb_map_k5s2);
    /* the borders stay zero: only input cells are written below */
    memset(t, 0, (size_t)rows * (size_t)cols * 16 * sizeof *t);
    for (int n = 0; n < n_in; n++) off[n] = ((n / p->w_in + p->pad_t) * cols + n % p->w_in + p->pad_l) * 16;
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i widx = _mm512_mullo_epi32(lane, _mm512_set1_epi32(kk));
    for (int c0 = 0; c0 < p->c_in; c0 += 16) {
        const int nc = kernels_imin(16, p->c_in - c0);
        const __mmask16 cm = kernels_avx512_mask(nc);
        const float *xb = x + (size_t)c0 * hw_in;
        /* input cells, 16 at a time: 16 channels' runs -> 16 cells' channel vectors */
        for (int n0 = 0; n0 < n_in; n0 += 16) {
            const int nn = kernels_imin(16, n_in - n0);
            const __mmask16 m = kernels_avx512_mask(nn);
            __m512 v[16];
#pragma GCC unroll 16
            for (int c = 0; c < 16; c++)
                v[c] = c < nc ? _mm512_maskz_loadu_ps(m, xb + (size_t)c * hw_in + (size_t)n0) : _mm512_setzero_ps();
            dwcb_transpose16(v);
            for (int q = 0; q < nn; q++) _mm512_store_ps(t + off[n0 + q], v[q]);
        }
        for (int tap = 0; tap < kk; tap++)
            wt[tap] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), cm, widx, w + (size_t)c0 * (size_t)kk + (size_t)tap, 4);
        const __m512 b = bias ? _mm512_maskz_loadu_ps(cm, bias + c0) : _mm512_setzero_ps();
        map(p, t, cols, wt, b, out);
        dwcb_store(p, out, nc, y + (size_t)c0 * hw_out);
    }
}

/* ---- pointwise expansion fused in ---- */

/* Vectors [0, nv) of channels cg.. (the last masked to the channels left: cm) at positions
 * [p0, p0 + np) of the expansion: every value from the bias, FMAs over k in order (the GEMM
 * kernel's chain: the same bits), the activation, then one store per vector into the block's
 * plane at the position's cell. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void
pwcb_tile(const int np, const int nv, int k_in, const float *x, size_t n, const float *wt, size_t ldw,
          const float *bias, __mmask16 cm, act_kind act, int p0, const int *off, float *t, size_t plane)
{
    __m512 acc[PWCB_POS][PWCB_VECS];
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) {
        const __mmask16 m = v == nv - 1 ? cm : 0xFFFF;
        const __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 7
        for (int r = 0; r < np; r++) acc[r][v] = b;
    }
    const float *xr = x + p0, *wr = wt;
    for (int k = 0; k < k_in; k++, xr += n, wr += ldw) {
        __m512 wv[PWCB_VECS];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) wv[v] = _mm512_maskz_loadu_ps(v == nv - 1 ? cm : 0xFFFF, wr + 16 * v);
#pragma GCC unroll 7
        for (int r = 0; r < np; r++) {
            const __m512 xv = _mm512_set1_ps(xr[r]);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_fmadd_ps(xv, wv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 7
    for (int r = 0; r < np; r++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            _mm512_store_ps(t + (size_t)v * plane + (size_t)off[p0 + r], avx512_act(acc[r][v], act));
}

/* Every position of the expansion for nv vectors of channels (tiles of np positions, the last
 * moved back onto the last positions, whose values are recomputed the same). */
static inline __attribute__((always_inline)) KERNELS_AVX512 void
pwcb_group_k(const int np, const int nv, const conv2d_params *pw, const float *x, const float *wt,
             const float *bias, __mmask16 cm, const int *off, float *t, size_t plane)
{
    const int n = pw->h_out * pw->w_out;
    for (int p0 = 0;; p0 += np) {
        const int at = kernels_imin(p0, n - np);
        pwcb_tile(np, nv, pw->c_in, x, (size_t)n, wt, (size_t)pw->c_out, bias, cm, pw->act, at, off, t, plane);
        if (at + np >= n) break;
    }
}

static KERNELS_AVX512 void pwcb_group(int nv, const conv2d_params *pw, const float *x, const float *wt,
                                    const float *bias, __mmask16 cm, const int *off, float *t, size_t plane)
{
    switch (nv) {
    case 1: pwcb_group_k(PWCB_POS, 1, pw, x, wt, bias, cm, off, t, plane); break;
    case 2: pwcb_group_k(PWCB_POS, 2, pw, x, wt, bias, cm, off, t, plane); break;
    default: pwcb_group_k(PWCB_POS, 3, pw, x, wt, bias, cm, off, t, plane); break;
    }
}

static KERNELS_AVX512 void pwcb_forward(const conv2d_params *pw, const float *wt, const float *pw_bias,
                                      const conv2d_params *dw, const float *dw_w, const float *dw_bias,
                                      const float *x, float *y, float *scratch, const kernels_part *part)
{
    const int k = dw->k_h, rows = dwcb_rows(dw), cols = dwcb_cols(dw), kk = k * k;
    const int n_in = dw->h_in * dw->w_in, n_out = dw->h_out * dw->w_out;
    const size_t plane = (size_t)rows * (size_t)cols * 16, hw_out = (size_t)n_out;
    float *t = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    float *out = t + PWCB_VECS * plane;
    int off[DWCB_MAX_CELLS];
    __m512 wt_dw[25];
    const dwcb_map_fn map = k == 3 ? (dw->stride_h == 1 ? dwcb_map_k3s1 : dwcb_map_k3s2)
                                   : (dw->stride_h == 1 ? dwcb_map_k5s1 : dwcb_map_k5s2);
    memset(t, 0, PWCB_VECS * plane * sizeof *t); /* borders: the GEMM writes input cells only */
    for (int n = 0; n < n_in; n++) off[n] = ((n / dw->w_in + dw->pad_t) * cols + n % dw->w_in + dw->pad_l) * 16;
    const __m512i widx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(kk));
    const int group = 16 * PWCB_VECS;
    for (int cg = part->lo; cg < part->hi; cg += group) {
        const int nc = kernels_imin(group, part->hi - cg), nv = (nc + 15) / 16;
        pwcb_group(nv, pw, x, wt + cg, pw_bias ? pw_bias + cg : NULL, kernels_avx512_mask(nc - 16 * (nv - 1)), off,
                   t, plane);
        for (int v = 0; v < nv; v++) {
            const int c0 = cg + 16 * v, nb = kernels_imin(16, part->hi - c0);
            const __mmask16 cm = kernels_avx512_mask(nb);
            for (int tap = 0; tap < kk; tap++)
                wt_dw[tap] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), cm, widx,
                                                      dw_w + (size_t)c0 * (size_t)kk + (size_t)tap, 4);
            const __m512 b = dw_bias ? _mm512_maskz_loadu_ps(cm, dw_bias + c0) : _mm512_setzero_ps();
            map(dw, t + (size_t)v * plane, cols, wt_dw, b, out);
            dwcb_store(dw, out, nb, y + (size_t)c0 * hw_out);
        }
    }
}
#endif

/* The depthwise convs the fused path takes: as kernels_dw_cb_applies without the exclusions of
 * its shape rule (they came from the transpose into the planes, which the fused path does not
 * do), on inputs at least 14 wide. Measured, pairs of MobileNetV3 layers fused vs the two nodes
 * (GEMM and kernels_dw_cb or kernels_dw512.c), 1 thread in the model, 2-3 alternating runs:
 * 80 -> 184..480 14x14 3x3 -2..-16%, 112 -> 672 14x14 3x3 and 14 -> 7 5x5 -0..-12%, 40 -> 120..240
 * 14x14 5x5 -12..-23%, 48 -> 288 14 -> 7 -16..-23%, 24 -> 96 28 -> 14 -6..-8%, 40 -> 240 28 -> 14
 * -3..+8%. Left out where they lost or gained nothing measurable: 7x7 maps (160 -> 960
 * +10..+18%, 96 -> 576 -2%: the GEMM kernel's 49-column tiles), 28-wide outputs (40 -> 120 28x28
 * 5x5 -5..-11%, whole model within the noise; 24 -> 88 28x28 3x3 +7%) and 56-wide inputs (56x56
 * 3x3 +36%, 56 -> 28 +9..+29%: too few taps per output transposed back, planes past L1). */
static int dwcb_fused_applies(const conv2d_params *p)
{
    const int s = p->stride_h, k = p->k_h;
    return s == p->stride_w && (s == 1 || s == 2) && k == p->k_w && (k == 3 || k == 5) && p->pad_t < k &&
           p->pad_l < k && p->w_in >= 14 && p->h_out >= 2 && p->h_out <= 14 && (p->w_out == 7 || p->w_out == 14) &&
           (size_t)dwcb_rows(p) * (size_t)dwcb_cols(p) <= DWCB_MAX_CELLS && p->h_out * p->w_out <= DWCB_MAX_OUT;
}

int conv2d_pw_dwcb_fusable(const conv2d_params *pw, const conv2d_params *dw)
{
    return cpu_isa_best() >= CPU_ISA_AVX512 && kernels_conv_pointwise(pw) && pw->groups == 1 && !pw->train &&
           !dw->train && kernels_conv_depthwise(dw) && pw->c_out == dw->c_in && pw->h_out == dw->h_in &&
           pw->w_out == dw->w_in && pw->h_out * pw->w_out >= PWCB_POS && dwcb_fused_applies(dw);
}

/* Planes of PWCB_VECS blocks, the staged outputs, 16 floats of alignment slack. */
size_t conv2d_pw_dwcb_scratch_floats(const conv2d_params *dw)
{
    return (size_t)PWCB_VECS * (size_t)dwcb_rows(dw) * (size_t)dwcb_cols(dw) * 16 +
           (size_t)(dw->h_out * dw->w_out + 15) * 16 + 16;
}

void kernels_pw_dwcb_pack(const conv2d_params *pw, const float *gemm_packed, float *wt)
{
    for (int k = 0; k < pw->c_in; k++)
        for (int c = 0; c < pw->c_out; c++)
            wt[(size_t)k * (size_t)pw->c_out + (size_t)c] = gemm_packed[kernels_gemm_a_offset(pw->c_out, pw->c_in, c, k)];
}

/* Whole blocks of 16 channels. */
kernels_part conv2d_pw_dwcb_part(const conv2d_params *dw, int ith, int nth)
{
    return kernels_part_split(KERNELS_PART_CHANNELS, dw->c_out, 16, ith, nth);
}

void conv2d_pw_dwcb_forward_part(const conv2d_params *pw, const float *wt, const float *pw_bias,
                                 const conv2d_params *dw, const float *dw_w, const float *dw_bias, const float *x,
                                 float *y, float *scratch, const kernels_part *part)
{
    assert(conv2d_pw_dwcb_fusable(pw, dw) && part->axis == KERNELS_PART_CHANNELS);
    assert(0 <= part->lo && part->lo <= part->hi && part->hi <= dw->c_out && part->lo % 16 == 0);
#if KERNELS_X86
    pwcb_forward(pw, wt, pw_bias, dw, dw_w, dw_bias, x, y, scratch, part);
#else
    (void)pw, (void)wt, (void)pw_bias, (void)dw_w, (void)dw_bias, (void)x, (void)y, (void)scratch;
#endif
}

void kernels_dw_cb(const conv2d_params *p, const float *x, const float *w, const float *bias, float *y)
{
    assert(kernels_dw_cb_applies(p) && cpu_isa_best() >= CPU_ISA_AVX512);
    assert(p->groups == p->c_in && p->c_in == p->c_out);
#if KERNELS_X86
    dwcb_forward(p, x, w, bias, y);
#else
    (void)x, (void)w, (void)bias, (void)y;
#endif
}
