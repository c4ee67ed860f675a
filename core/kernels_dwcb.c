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
 * zero. Measured per layer in the commit that added it. */
#include "kernels.h"

#include <assert.h>
#include <string.h>

#include "kernels_internal.h"

#if KERNELS_X86
#include "kernels_avx512.h"
#endif

/* Padded input cells the plane of vectors holds (64 KiB of floats) and output cells staged
 * before the transpose back. */
#define DWCB_MAX_CELLS 1024
#define DWCB_MAX_OUT 784

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
        /* outputs, 16 cells at a time, back into the channels' planes */
        float *yb = y + (size_t)c0 * hw_out;
        for (int n0 = 0; n0 < n_out; n0 += 16) {
            const __mmask16 m = kernels_avx512_mask(n_out - n0);
            __m512 v[16];
#pragma GCC unroll 16
            for (int q = 0; q < 16; q++) v[q] = _mm512_load_ps(out + (size_t)(n0 + q) * 16);
            dwcb_transpose16(v);
            dwcb_act16(v, p->act);
            for (int c = 0; c < nc; c++) _mm512_mask_storeu_ps(yb + (size_t)c * hw_out + (size_t)n0, m, v[c]);
        }
    }
}
#endif

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
