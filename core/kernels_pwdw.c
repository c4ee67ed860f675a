/* A packed pointwise convolution fused with the stride-2 depthwise convolution after it (see
 * conv2d_pw_dw_forward in kernels.h): the GEMM kernel of kernels_gemm.c into a band of rows, then
 * the AVX-512 depthwise kernel of kernels_dw512.c on it (AVX2: the expansion stored straight into
 * the split rows of kernels_dw.c's stride-2 row kernel where that kernel takes the depthwise conv,
 * else the AVX2 GEMM and kernels_dw.c's kernels); and a stride-1 depthwise convolution fused with
 * the pointwise one after it (conv2d_dw_pw_forward_part; AVX2: kernels_dw.c's kernels and the AVX2
 * GEMM), the other way round. */
#include "kernels.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "kernels_internal.h"

#if KERNELS_X86
#include "kernels_avx2.h"
#endif

/* ---- pointwise expansion + stride-2 depthwise, in bands of output rows ----
 * The expansion's output for the input rows one band of PWDW_BAND_ROWS depthwise output rows
 * reads (GEMM into scratch: c_exp planes of those rows) stays in L2 for the depthwise pass,
 * instead of a whole map that does not fit (MobileNetV3-Large: 64 x 112 x 112, 3.2 MB). Bands
 * overlap by k_h - stride input rows, computed once per band. Every value has the unfused bits:
 * GEMM values do not depend on the tiling, and the depthwise band sees the same taps in order.
 * 4 rows, not 8: the band (64 x 9 x 112 floats, 258 KB instead of 487 KB) with the layer's input
 * and output (800 KB each) then stays within the 2 MB L2 despite 1/8 more GEMM rows for the
 * overlaps (layer_prof, MobileNetV3-Large's 16 -> 64 -> 56 x 56: 8 rows 406-408 us, 6: 374-384,
 * 4: 350-361, 3: 387-388, 2: 444-449). */
#define PWDW_BAND_ROWS 4

/* The GEMM (all m rows) and the depthwise kernels of this CPU: AVX-512, else AVX2 (kernels_dw.c's
 * kernels, which take any band of rows with the whole map's bits too). */
static void pwdw_gemm(int m, int n, int k, const float *a, const float *b, size_t ldb, float *c, size_t ldc,
                      const float *bias, act_kind act)
{
    if (cpu_isa_best() >= CPU_ISA_AVX512)
        kernels_gemm_avx512(m, n, k, a, b, ldb, c, ldc, bias, act, 0, m);
    else
        kernels_gemm_avx2(m, n, k, a, b, ldb, c, ldc, bias, act, 0, m);
}

static void pwdw_dw_s2(const conv2d_params *p, const float *x, const float *w, const float *bias, float *y,
                       size_t y_plane)
{
    if (cpu_isa_best() >= CPU_ISA_AVX512)
        kernels_dw_avx512_s2(p, x, w, bias, y, y_plane);
    else
        kernels_dw_avx2_planes(p, x, w, bias, y, y_plane);
}

/* ---- AVX2: the expansion stored as the depthwise kernel's split rows ----
 * kernels_dw.c's AVX2 stride-2 kernel stages every input row of every channel as its even and odd
 * padded columns (a shuffle pass over the whole 64 x 112 x 112 expansion) and then reads the
 * staged rows. Here the expansion's input rows are split instead (c_in channels, not c_out: a
 * quarter of the shuffles on MobileNetV3-Large), so the GEMM's output columns already come as
 * even / odd halves and are stored straight into split rows (kernels_dw_avx2_s2_split's layout,
 * padding cells zero), and the depthwise pass of a panel of GEMM_MR channels runs right after
 * the panel's GEMM on one buffer of split rows (52 KB on MobileNetV3-Large), while they are in L1 /
 * L2. Bands of PWDW2_BAND_ROWS output rows; a band's first k - 2 input rows are the previous
 * band's last, kept per channel (not computed again). Every value has the unfused bits: each
 * expanded value is the GEMM's chain (bias, one FMA per k in order, the activation), each output
 * the AVX2 depthwise kernel's.
 * 8 rows: in the same process (min of 150-200 calls, 3-6 runs, loaded machine) one panel buffer
 * with bands of 4 / 6 / 8 / 12 / 16 rows took 457-556 / 515-529 / 468-524 / 490-513 / 494-506 us,
 * split rows of all 64 channels in bands of 4 (295 KB) 506-587. */
#define PWDW2_BAND_ROWS 8
/* Vectors of a split input row (even + odd columns, 8 floats each): rows up to 768 wide. */
#define PWDW2_MAX_VECS 96

/* The split layout of one conv pair: the expansion's channel c, band row t (input row
 * band_top + t) at buffer + c * ch_stride + t * row_stride + lead, even padded columns first, odd
 * ones half floats on; the GEMM's input rows as nv_e vectors of even columns then nv_o of odd ones
 * (each half nv_e vectors wide), the K rows of a band row x_stride floats apart. */
typedef struct {
    int lead, half, row_stride, band_rows, nv_e, nv_o;
    size_t ch_stride, x_stride;
    int e_lo, e_hi, o_lo, o_hi; /* data cells of each half; the rest is zero padding */
} pwdw2_geom;

/* pad_l <= 2: the paddings of 3x3 / 5x5 kernels (and the ones tested). */
static int pwdw2_applies(const conv2d_params *dw)
{
    return cpu_isa_best() == CPU_ISA_AVX2 && kernels_dw_avx2_split_applies(dw) && dw->pad_l <= 2 &&
           (dw->w_in + 15) / 16 * 2 <= PWDW2_MAX_VECS;
}

static pwdw2_geom pwdw2_geom_of(const conv2d_params *dw)
{
    pwdw2_geom g;
    const int w = dw->w_in, pl = dw->pad_l, n_even = (w + 1) / 2, n_odd = w / 2;
    g.nv_e = (n_even + 7) / 8;
    g.nv_o = (n_odd + 7) / 8;
    /* input column 2 t + q lands at padded column 2 t + q + pad_l: its half and cell */
    if (pl % 2 == 0) {
        g.e_lo = pl / 2, g.e_hi = pl / 2 + n_even;
        g.o_lo = pl / 2, g.o_hi = pl / 2 + n_odd;
    } else {
        g.o_lo = pl / 2, g.o_hi = pl / 2 + n_even;
        g.e_lo = (pl + 1) / 2, g.e_hi = (pl + 1) / 2 + n_odd;
    }
    /* the kernel reads each half to (w_out rounded up to 8) + (k - 1) / 2 */
    const int reads = (dw->w_out + 7) / 8 * 8 + (dw->k_w - 1) / 2;
    /* the first input cell of each half 32-byte aligned (the GEMM's stores; the kernel's loads are
     * unaligned anyway): the even half lead floats into the row, half = e_lo - o_lo mod 8 */
    g.lead = (8 - g.e_lo % 8) % 8;
    g.half = kernels_imax(reads, kernels_imax(g.e_hi, g.o_hi));
    g.half += ((g.e_lo - g.o_lo - g.half) % 8 + 8) % 8;
    g.row_stride = (g.lead + 2 * g.half + 7) / 8 * 8;
    g.band_rows = (PWDW2_BAND_ROWS - 1) * dw->stride_h + dw->k_h;
    g.ch_stride = (size_t)g.band_rows * (size_t)g.row_stride;
    g.x_stride = (size_t)g.band_rows * (size_t)g.nv_e * 16;
    return g;
}

/* A panel's split rows, 8 floats of slack (vector stores of padding past the last row), the
 * carried rows of every channel, the split input rows of a band, 8 floats of alignment. */
static size_t pwdw2_scratch_floats(const conv2d_params *pw, const conv2d_params *dw)
{
    const pwdw2_geom g = pwdw2_geom_of(dw);
    const size_t carried = (size_t)pw->c_out * (size_t)(dw->k_h - dw->stride_h) * (size_t)g.row_stride;
    return KERNELS_GEMM_MR * g.ch_stride + 8 + carried + (size_t)pw->c_in * g.x_stride + 8;
}

#if KERNELS_X86
/* Input rows [r_lo, r_hi) of the K channels of x split into xs (channel k's band row r at
 * xs + k * x_stride + r * nv_e * 16): even columns, then odd ones nv_e * 8 floats on, zeros
 * past the row (a 16-column step stores 8 + 8). */
static KERNELS_AVX2 void pwdw2_split_rows(const conv2d_params *pw, const pwdw2_geom *g, const float *x, int r_lo,
                                          int r_hi, float *xs)
{
    const int w = pw->w_in, row = g->nv_e * 16;
    const size_t hw = (size_t)pw->h_in * (size_t)w;
    for (int k = 0; k < pw->c_in; k++)
        for (int r = r_lo; r < r_hi; r++) {
            const float *src = x + (size_t)k * hw + (size_t)r * (size_t)w;
            float *xe = xs + (size_t)k * g->x_stride + (size_t)(r - r_lo) * (size_t)row, *xo = xe + g->nv_e * 8;
            avx2_split_even_odd(src, w, xe, xo);
        }
}

/* Where the GEMM's vector j of a split input row goes in a split row (offset) and how many of its
 * lanes are input cells (n). */
typedef struct {
    int offset, n;
} pwdw2_dst;

static void pwdw2_dsts(const conv2d_params *dw, const pwdw2_geom *g, pwdw2_dst *d)
{
    const int pl = dw->pad_l, n_even = (dw->w_in + 1) / 2, n_odd = dw->w_in / 2;
    for (int j = 0; j < g->nv_e + g->nv_o; j++) {
        const int odd = j >= g->nv_e, t = 8 * (odd ? j - g->nv_e : j);
        d[j].n = kernels_imin(8, (odd ? n_odd : n_even) - t);
        /* even input columns: the even half when pad_l is even; odd ones the other half */
        const int to_odd_half = (pl + odd) % 2 == 1;
        d[j].offset = (to_odd_half ? g->half + (pl + odd) / 2 : (pl + odd) / 2) + t;
    }
}

/* mr channels (panel ib of the packed weights a, m of its rows real) x nv vectors of one split
 * input row (xr): the GEMM tile's chain per value (from the bias, FMAs over k in order, the
 * activation), stored at the vectors' cells of each channel's split row (dst: channel 0's row;
 * ch_stride apart). */
static inline __attribute__((always_inline)) KERNELS_AVX2 void
pwdw2_tile(const int mr, const int nv, int k_in, const float *a, int n_panels, int ib, const float *xr, size_t ldk,
           const float *bias, int m, act_kind act, float *dst, size_t ch_stride, const pwdw2_dst *d)
{
    __m256 acc[KERNELS_GEMM_MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        const __m256 b = _mm256_set1_ps(r < m && bias ? bias[r] : 0.0f);
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) acc[r][v] = b;
    }
    for (int k0 = 0; k0 < k_in; k0 += KERNELS_GEMM_KC) {
        const int kc = kernels_imin(KERNELS_GEMM_KC, k_in - k0);
        const float *ap = a + ((size_t)k0 * (size_t)n_panels + (size_t)ib * (size_t)kc) * KERNELS_GEMM_MR;
        const float *bp = xr + (size_t)k0 * ldk;
#pragma GCC unroll 4
        for (int k = 0; k < kc; k++, ap += KERNELS_GEMM_MR, bp += ldk) {
            __m256 bv[2];
#pragma GCC unroll 2
            for (int v = 0; v < nv; v++) bv[v] = _mm256_loadu_ps(bp + 8 * v);
#pragma GCC unroll 6
            for (int r = 0; r < mr; r++) {
                const __m256 ar = _mm256_broadcast_ss(ap + r);
#pragma GCC unroll 2
                for (int v = 0; v < nv; v++) acc[r][v] = _mm256_fmadd_ps(ar, bv[v], acc[r][v]);
            }
        }
    }
    float *o[2];
    int n[2], whole = 1;
#pragma GCC unroll 2
    for (int v = 0; v < nv; v++) {
        o[v] = dst + d[v].offset;
        n[v] = d[v].n;
        whole &= n[v] == 8;
    }
    if (whole && m == mr) { /* the common case: plain stores, no branch per vector */
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++)
#pragma GCC unroll 2
            for (int v = 0; v < nv; v++) _mm256_storeu_ps(o[v] + (size_t)r * ch_stride, avx2_act(acc[r][v], act));
        return;
    }
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        if (r >= m) break;
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) avx2_store_n(o[v] + (size_t)r * ch_stride, avx2_act(acc[r][v], act), n[v]);
    }
}

/* One split input row (xr) of a panel of mr channels, its vectors in pairs, a last one alone. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void
pwdw2_row_k(const int mr, const pwdw2_geom *g, int k_in, const float *a, int n_panels, int ib, const float *xr,
            const float *bias, int m, act_kind act, float *dst, const pwdw2_dst *d)
{
    const int nv = g->nv_e + g->nv_o;
    int j = 0;
    for (; j + 2 <= nv; j += 2)
        pwdw2_tile(mr, 2, k_in, a, n_panels, ib, xr + 8 * j, g->x_stride, bias, m, act, dst, g->ch_stride, d + j);
    if (j < nv) pwdw2_tile(mr, 1, k_in, a, n_panels, ib, xr + 8 * j, g->x_stride, bias, m, act, dst, g->ch_stride, d + j);
}

/* Instances per panel height and activation (a switch per stored vector cost 10 % of the GEMM). */
#define PWDW2_ROW(name, act)                                                                                          \
    static KERNELS_AVX2 void name(const pwdw2_geom *g, int k_in, const float *a, int n_panels, int ib,               \
                                  const float *xr, const float *bias, int m, float *dst, const pwdw2_dst *d)         \
    {                                                                                                                \
        if (m > 4)                                                                                                   \
            pwdw2_row_k(KERNELS_GEMM_MR, g, k_in, a, n_panels, ib, xr, bias, m, act, dst, d);                        \
        else                                                                                                         \
            pwdw2_row_k(4, g, k_in, a, n_panels, ib, xr, bias, m, act, dst, d);                                      \
    }
PWDW2_ROW(pwdw2_row_none, ACT_NONE)
PWDW2_ROW(pwdw2_row_relu, ACT_RELU)
PWDW2_ROW(pwdw2_row_relu6, ACT_RELU6)
PWDW2_ROW(pwdw2_row_hswish, ACT_HSWISH)
PWDW2_ROW(pwdw2_row_hsigmoid, ACT_HSIGMOID)
#undef PWDW2_ROW

typedef void (*pwdw2_row_fn)(const pwdw2_geom *g, int k_in, const float *a, int n_panels, int ib, const float *xr,
                             const float *bias, int m, float *dst, const pwdw2_dst *d);

static pwdw2_row_fn pwdw2_row_of(act_kind act)
{
    switch (act) {
    case ACT_RELU: return pwdw2_row_relu;
    case ACT_RELU6: return pwdw2_row_relu6;
    case ACT_HSWISH: return pwdw2_row_hswish;
    case ACT_HSIGMOID: return pwdw2_row_hsigmoid;
    case ACT_NONE: break;
    }
    return pwdw2_row_none;
}

/* Zeros in the padding cells of a split row: each half's cells before and after its input cells
 * (the tail in whole vectors, spilling up to 7 floats into what follows: the next half's or row's
 * first cells, zeroed or written afterwards, or the buffer's slack). */
static KERNELS_AVX2 void pwdw2_zero_pads(const pwdw2_geom *g, float *row)
{
    const int lo[2] = {g->e_lo, g->o_lo}, hi[2] = {g->e_hi, g->o_hi};
    for (int h = 0; h < 2; h++) {
        float *half = row + h * g->half;
        for (int i = 0; i < lo[h]; i++) half[i] = 0.0f;
        for (int i = hi[h]; i < g->half; i += 8) _mm256_storeu_ps(half + i, _mm256_setzero_ps());
    }
}

/* Output rows [oh0, oh0 + rows) of the pair, in bands; per band the input rows are split once,
 * then each panel of channels gets its split rows in the panel buffer (carried, zero or
 * computed), its depthwise outputs, and its last k - 2 rows kept for the next band. */
static KERNELS_AVX2 void pwdw2_forward(const conv2d_params *pw, const float *pw_packed, const float *pw_bias,
                                       const conv2d_params *dw, const float *dw_w, const float *dw_bias, const float *x,
                                       float *y, float *scratch, int oh0, int rows)
{
    const pwdw2_geom g = pwdw2_geom_of(dw);
    pwdw2_dst d[PWDW2_MAX_VECS];
    pwdw2_dsts(dw, &g, d);
    const int s = dw->stride_h, k = dw->k_h, kk = k * dw->k_w, carry_rows = k - s, c_out = pw->c_out;
    const size_t hw_out = (size_t)dw->h_out * (size_t)dw->w_out, rs = (size_t)g.row_stride;
    float *panel = (float *)(((uintptr_t)scratch + 31) & ~(uintptr_t)31);
    float *carried = panel + KERNELS_GEMM_MR * g.ch_stride + 8, *xs = carried + (size_t)c_out * (size_t)carry_rows * rs;
    const int n_panels = (c_out + KERNELS_GEMM_MR - 1) / KERNELS_GEMM_MR;
    const pwdw2_row_fn row = pwdw2_row_of(pw->act);
    for (int c = 0; c < KERNELS_GEMM_MR; c++)
        for (int t = 0; t < g.band_rows; t++)
            pwdw2_zero_pads(&g, panel + (size_t)c * g.ch_stride + (size_t)t * rs + (size_t)g.lead);
    for (int r0 = oh0; r0 < oh0 + rows; r0 += PWDW2_BAND_ROWS) {
        const int nr = kernels_imin(PWDW2_BAND_ROWS, oh0 + rows - r0), top = r0 * s - dw->pad_t;
        const int n_in = (nr - 1) * s + k, carry = r0 > oh0 ? carry_rows : 0, more = r0 + nr < oh0 + rows;
        /* input rows the GEMM computes */
        const int g_lo = kernels_imax(top + carry, 0), g_hi = kernels_imin(top + n_in, dw->h_in);
        if (g_hi > g_lo) pwdw2_split_rows(pw, &g, x, g_lo, g_hi, xs);
        for (int ib = 0; ib < n_panels; ib++) {
            const int m0 = ib * KERNELS_GEMM_MR, m = kernels_imin(KERNELS_GEMM_MR, c_out - m0);
            for (int c = 0; c < m; c++) {
                float *rc = panel + (size_t)c * g.ch_stride;
                if (carry) memcpy(rc, carried + (size_t)(m0 + c) * (size_t)carry_rows * rs, (size_t)carry * rs * sizeof *rc);
                for (int t = carry; t < n_in; t++)
                    if (top + t < 0 || top + t >= dw->h_in) memset(rc + (size_t)t * rs, 0, rs * sizeof *rc);
            }
            for (int r = g_lo; r < g_hi; r++)
                row(&g, pw->c_in, pw_packed, n_panels, ib, xs + (size_t)(r - g_lo) * (size_t)g.nv_e * 16,
                    pw_bias ? pw_bias + m0 : NULL, m, panel + (size_t)(r - top) * rs + (size_t)g.lead, d);
            for (int c = m0; c < m0 + m; c++) {
                float *rc = panel + (size_t)(c - m0) * g.ch_stride;
                kernels_dw_avx2_s2_split(dw, rc + (size_t)g.lead, rs, (size_t)g.half, dw_w + (size_t)c * (size_t)kk,
                                         dw_bias ? dw_bias[c] : 0.0f,
                                         y + (size_t)c * hw_out + (size_t)r0 * (size_t)dw->w_out, nr);
                if (more)
                    memcpy(carried + (size_t)c * (size_t)carry_rows * rs, rc + (size_t)(n_in - carry_rows) * rs,
                           (size_t)carry_rows * rs * sizeof *rc);
            }
        }
    }
}
#endif

/* Whether the 1x1 conv pw feeds the depthwise conv dw (the pair's shapes, whatever the ISA). */
static int pwdw_pair(const conv2d_params *pw, const conv2d_params *dw)
{
    return kernels_conv_pointwise(pw) && pw->groups == 1 && !kernels_conv_depthwise(pw) && kernels_conv_depthwise(dw) &&
           pw->c_out == dw->c_in && pw->h_out == dw->h_in && pw->w_out == dw->w_in;
}

static int pwdw_band_in_rows(const conv2d_params *dw)
{
    return kernels_imin((PWDW_BAND_ROWS - 1) * dw->stride_h + dw->k_h, dw->h_in);
}

int conv2d_pw_dw_fusable(const conv2d_params *pw, const conv2d_params *dw)
{
    if (cpu_isa_best() == CPU_ISA_AVX2) return pwdw_pair(pw, dw) && dw->stride_h == 2 && dw->stride_w == 2;
    return cpu_isa_best() >= CPU_ISA_AVX512 && kernels_conv_pointwise(pw) && pw->groups == 1 &&
           !kernels_conv_depthwise(pw) &&
           kernels_conv_depthwise(dw) && pw->c_out == dw->c_in && pw->h_out == dw->h_in &&
           pw->w_out == dw->w_in && kernels_dw_avx512_s2_applies(dw);
}

size_t conv2d_pw_dw_scratch_floats(const conv2d_params *pw, const conv2d_params *dw)
{
    if (pwdw2_applies(dw)) return pwdw2_scratch_floats(pw, dw);
    /* the ring's planes (pwdw_forward_ring) hold every band's rows even when the map has fewer */
    return (size_t)pw->c_out * (size_t)kernels_imax(pwdw_band_in_rows(dw), 2 * PWDW_BAND_ROWS + 1) *
           (size_t)dw->w_in;
}

/* Whole output rows, as even as they come (in whole bands, MobileNetV3-Large's 56 rows = 7 bands
 * went 3 / 4: one thread waited a band's time); each part runs its rows in even bands of at most
 * PWDW_BAND_ROWS. */
kernels_part conv2d_pw_dw_part(const conv2d_params *dw, int ith, int nth)
{
    return kernels_part_split(KERNELS_PART_POSITIONS, dw->h_out * dw->w_out, dw->w_out, ith, nth);
}

/* 3x3 stride 2 with one row of top padding on a map of twice the output rows (PyTorch padding
 * 1, even height), and the part's rows in whole bands: each band's 2 PWDW_BAND_ROWS + 1 input
 * rows are one plane per channel whose first row is the previous band's last (copied, not
 * computed again: 1 of 9 GEMM rows) or, above the map, zeros (the padding row, which the
 * depthwise kernel otherwise reads from its own zero row: the same taps on zeros). */
static int pwdw_ring_applies(const conv2d_params *dw, int rows)
{
    return dw->k_h == 3 && dw->stride_h == 2 && dw->pad_t == 1 && dw->h_in == 2 * dw->h_out &&
           rows % PWDW_BAND_ROWS == 0;
}

static void pwdw_forward_ring(const conv2d_params *pw, const float *pw_packed, const float *pw_bias,
                              const conv2d_params *dw, const float *dw_w, const float *dw_bias, const float *x,
                              float *y, float *scratch, int oh0, int rows)
{
    const int w_in = dw->w_in, n_rows = 2 * PWDW_BAND_ROWS + 1;
    const size_t hw_in = (size_t)dw->h_in * (size_t)w_in, plane = (size_t)n_rows * (size_t)w_in;
    const size_t hw_out = (size_t)dw->h_out * (size_t)dw->w_out;
    conv2d_params q = *dw;
    q.h_in = n_rows;
    q.h_out = PWDW_BAND_ROWS;
    q.pad_t = q.pad_b = 0;
    for (int r0 = oh0; r0 < oh0 + rows; r0 += PWDW_BAND_ROWS) {
        /* plane row t holds input row 2 r0 - 1 + t; rows [t0, n_rows) come from the GEMM */
        int t0 = 0;
        if (r0 > oh0) { /* the previous band's last row */
            for (int c = 0; c < pw->c_out; c++)
                memcpy(scratch + (size_t)c * plane, scratch + (size_t)c * plane + (size_t)(n_rows - 1) * (size_t)w_in,
                       (size_t)w_in * sizeof *scratch);
            t0 = 1;
        } else if (r0 == 0) { /* the padding row above the map */
            for (int c = 0; c < pw->c_out; c++) memset(scratch + (size_t)c * plane, 0, (size_t)w_in * sizeof *scratch);
            t0 = 1;
        }
        const int i0 = 2 * r0 - 1 + t0;
        pwdw_gemm(pw->c_out, (n_rows - t0) * w_in, pw->c_in, pw_packed, x + (size_t)i0 * (size_t)w_in, hw_in,
                  scratch + (size_t)t0 * (size_t)w_in, plane, pw_bias, pw->act);
        pwdw_dw_s2(&q, scratch, dw_w, dw_bias, y + (size_t)r0 * (size_t)dw->w_out, hw_out);
    }
}

void conv2d_pw_dw_forward_part(const conv2d_params *pw, const float *pw_packed,
                               const float *pw_bias, const conv2d_params *dw, const float *dw_w,
                               const float *dw_bias, const float *x, float *y, float *scratch,
                               const kernels_part *part)
{
    const int n = dw->h_out * dw->w_out;
    assert(conv2d_pw_dw_fusable(pw, dw) && part->axis == KERNELS_PART_POSITIONS);
    assert(0 <= part->lo && part->lo <= part->hi && part->hi <= n && part->lo % dw->w_out == 0 &&
           (part->hi == n || part->hi % dw->w_out == 0));
    const size_t hw_in = (size_t)dw->h_in * (size_t)dw->w_in;
    const size_t hw_out = (size_t)dw->h_out * (size_t)dw->w_out;
    const int oh0 = part->lo / dw->w_out, rows = (part->hi + dw->w_out - 1) / dw->w_out - oh0;
#if KERNELS_X86
    if (pwdw2_applies(dw)) {
        if (rows > 0) pwdw2_forward(pw, pw_packed, pw_bias, dw, dw_w, dw_bias, x, y, scratch, oh0, rows);
        return;
    }
#endif
    if (pwdw_ring_applies(dw, rows)) {
        pwdw_forward_ring(pw, pw_packed, pw_bias, dw, dw_w, dw_bias, x, y, scratch, oh0, rows);
        return;
    }
    const int n_bands = (rows + PWDW_BAND_ROWS - 1) / PWDW_BAND_ROWS;
    for (int b = 0; b < n_bands; b++) {
        const int r0 = oh0 + rows * b / n_bands, r1 = oh0 + rows * (b + 1) / n_bands;
        /* input rows [i0, i1) of the band's windows */
        const int i0 = kernels_imax(r0 * dw->stride_h - dw->pad_t, 0);
        const int i1 = kernels_imin((r1 - 1) * dw->stride_h - dw->pad_t + dw->k_h, dw->h_in);
        assert(i1 > i0);
        const size_t n_band = (size_t)(i1 - i0) * (size_t)dw->w_in;
        pwdw_gemm(pw->c_out, (int)n_band, pw->c_in, pw_packed, x + (size_t)i0 * (size_t)dw->w_in, hw_in, scratch,
                  n_band, pw_bias, pw->act);
        conv2d_params q = *dw;
        q.h_in = i1 - i0;
        q.h_out = r1 - r0;
        q.pad_t = dw->pad_t + i0 - r0 * dw->stride_h;
        q.pad_b = 0;
        pwdw_dw_s2(&q, scratch, dw_w, dw_bias, y + (size_t)r0 * (size_t)dw->w_out, hw_out);
    }
}

void conv2d_pw_dw_forward(const conv2d_params *pw, const float *pw_packed, const float *pw_bias,
                          const conv2d_params *dw, const float *dw_w, const float *dw_bias,
                          const float *x, float *y, float *scratch)
{
    const kernels_part all = {KERNELS_PART_POSITIONS, 0, dw->h_out * dw->w_out};
    conv2d_pw_dw_forward_part(pw, pw_packed, pw_bias, dw, dw_w, dw_bias, x, y, scratch, &all);
}

/* ---- stride-1 depthwise + pointwise projection, in bands of rows ----
 * The depthwise output of a band of DWPW_BAND_ROWS rows (c x rows x w floats in scratch: 129 KB
 * for MobileNetV3-Large's 72 x 56-wide map) is the GEMM's input right away, instead of a whole
 * map written out and read back (its 112 x 112 and 56 x 56 blocks without squeeze-excitation:
 * 16 x 112 x 112 and 72 x 56 x 56, 0.8 and 0.9 MB, beside the block's input, output and
 * residual). Bands need no overlap: the depthwise kernel reads the input rows it needs. Every
 * value has the unfused bits: the depthwise kernel computes a range of rows with the whole map's
 * bits, and GEMM values do not depend on the tiling. */
#define DWPW_BAND_ROWS 8

/* AVX-512: maps kernels_dw_avx512_rows takes. AVX2 (kernels_dw.c's kernels by bands of rows + the
 * AVX2 GEMM): stride 1 on maps wider than the channel-blocked kernel takes. A first trial (session
 * 11, thread CPU time, caches warm from the previous call) measured no gain. Same-process A/B
 * (session 13, 1 thread, dwconv2d_forward + packed GEMM vs fused, 60 alternating calls, min / median
 * us): 16 x 112 x 112 -> 16 + residual, one set of buffers (warm) 230 / 244 -> 229 / 233, 4 sets in
 * rotation 271 / 323 -> 237 / 261, the same while other processes loaded the machine 500-536 /
 * 673-774 -> 300-301 / 456-482; 72 x 56 x 56 -> 24 + residual warm 280 / 292 -> 289 / 304, 4 sets
 * 284 / 327 -> 291 / 300, loaded 378-385 / 460-516 -> 313-318 / 373-380: the depthwise output
 * (0.8-0.9 MB) no longer goes through the L3 and memory the other cores share. */
int conv2d_dw_pw_fusable(const conv2d_params *dw, const conv2d_params *pw)
{
    if (!kernels_conv_depthwise(dw) || !kernels_conv_pointwise(pw) || pw->groups != 1 || kernels_conv_depthwise(pw) ||
        pw->c_in != dw->c_out || pw->h_in != dw->h_out || pw->w_in != dw->w_out)
        return 0;
    if (cpu_isa_best() == CPU_ISA_AVX2)
        return dw->stride_h == 1 && dw->stride_w == 1 && !kernels_dw_cb_avx2_applies(dw);
    return cpu_isa_best() >= CPU_ISA_AVX512 && kernels_dw_avx512_rows_applies(dw);
}

size_t conv2d_dw_pw_scratch_floats(const conv2d_params *dw)
{
    return (size_t)dw->c_out * (size_t)kernels_imin(DWPW_BAND_ROWS, dw->h_out) * (size_t)dw->w_out;
}

kernels_part conv2d_dw_pw_part(const conv2d_params *pw, int ith, int nth)
{
    return kernels_part_split(KERNELS_PART_POSITIONS, pw->h_out * pw->w_out, pw->w_out, ith, nth);
}

void conv2d_dw_pw_forward_part(const conv2d_params *pw, const float *pw_packed, const float *pw_bias,
                               const conv2d_params *dw, const float *dw_w, const float *dw_bias, const float *x,
                               const float *residual, float *y, float *scratch, const kernels_part *part)
{
    const int n = pw->h_out * pw->w_out, w = pw->w_out;
    assert(conv2d_dw_pw_fusable(dw, pw) && part->axis == KERNELS_PART_POSITIONS);
    assert(0 <= part->lo && part->lo <= part->hi && part->hi <= n && part->lo % w == 0 &&
           (part->hi == n || part->hi % w == 0));
    const size_t hw = (size_t)n;
    const int oh0 = part->lo / w, rows = (part->hi + w - 1) / w - oh0;
    const int n_bands = (rows + DWPW_BAND_ROWS - 1) / DWPW_BAND_ROWS;
    for (int b = 0; b < n_bands; b++) {
        const int r0 = oh0 + rows * b / n_bands, r1 = oh0 + rows * (b + 1) / n_bands;
        const size_t n_band = (size_t)(r1 - r0) * (size_t)w, at = (size_t)r0 * (size_t)w;
        if (cpu_isa_best() >= CPU_ISA_AVX512) {
            kernels_dw_avx512_rows(dw, x, dw_w, dw_bias, scratch, n_band, r0, r1);
            kernels_gemm_res_avx512(pw->c_out, (int)n_band, pw->c_in, pw_packed, scratch, n_band, y + at, hw, pw_bias,
                                    residual ? residual + at : NULL, pw->act);
        } else {
            kernels_dw_avx2_rows(dw, x, dw_w, dw_bias, scratch, n_band, r0, r1);
            kernels_gemm_res_avx2(pw->c_out, (int)n_band, pw->c_in, pw_packed, scratch, n_band, y + at, hw, pw_bias,
                                  residual ? residual + at : NULL, pw->act);
        }
    }
}
