/* A packed pointwise convolution fused with the stride-2 depthwise convolution after it (see
 * conv2d_pw_dw_forward in kernels.h): the GEMM kernel of kernels_gemm.c into a band of rows, then
 * the AVX-512 depthwise kernel of kernels_dw512.c on it (AVX2: the AVX2 GEMM and kernels_dw.c's
 * kernels); and a stride-1 depthwise convolution fused with the pointwise one after it
 * (conv2d_dw_pw_forward_part, AVX-512 only), the other way round. */
#include "kernels.h"

#include <assert.h>
#include <string.h>

#include "kernels_internal.h"

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

/* AVX-512 only: on AVX2 (kernels_dw.c's row kernel + the AVX2 GEMM) MobileNetV3-Large's two pairs
 * measured no faster fused (thread CPU time, 8 alternations on a loaded machine: 16 x 112 x 112
 * ratio 0.99, 72 x 56 x 56 1.04). */
int conv2d_dw_pw_fusable(const conv2d_params *dw, const conv2d_params *pw)
{
    return cpu_isa_best() >= CPU_ISA_AVX512 && kernels_conv_depthwise(dw) && kernels_dw_avx512_rows_applies(dw) &&
           kernels_conv_pointwise(pw) && pw->groups == 1 && !kernels_conv_depthwise(pw) && pw->c_in == dw->c_out &&
           pw->h_in == dw->h_out && pw->w_in == dw->w_out;
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
        kernels_dw_avx512_rows(dw, x, dw_w, dw_bias, scratch, n_band, r0, r1);
        kernels_gemm_res_avx512(pw->c_out, (int)n_band, pw->c_in, pw_packed, scratch, n_band, y + at, hw, pw_bias,
                                residual ? residual + at : NULL, pw->act);
    }
}
