/* Internal to the kernels module (core/kernels*.c) and its unit test: the kernels' variants and
 * building blocks, and shared scalar helpers. Not part of the public interface in kernels.h; the
 * instruction-set variants (cpu_isa) come from cpu.h. */
#ifndef CNN_KERNELS_INTERNAL_H
#define CNN_KERNELS_INTERNAL_H

#include "cpu.h"
#include "kernels.h"

/* Whether the x86 kernels (AVX2 / AVX-512, function-level target attributes) are compiled. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KERNELS_X86 1
#else
#define KERNELS_X86 0
#endif

/* dwconv2d_forward with an explicit variant (AVX-512 runs kernels_dw_avx512 where it applies, else
 * the AVX2 kernel); isa must be supported by the CPU (the unit test uses
 * this to check every variant against the same reference). */
void dwconv2d_forward_isa(const conv2d_params *p, const float *x, const float *w, const float *bias,
                          float *y, cpu_isa isa);

/* linear_forward with an explicit variant: AVX-512 and AVX2 run kernels_gemv_avx2, the portable
 * one OpenBLAS's sgemv. isa must be supported by the CPU. */
void linear_forward_isa(int n_in, int n_out, const float *x, const float *w, const float *bias,
                        act_kind act, float *y, cpu_isa isa);

/* y[n_out] = w[n_out][n_in] . x (16 lanes, each an FMA chain, added in _mm512_reduce_add_ps's
 * order); needs AVX2 + FMA. */
void kernels_gemv_avx2(int n_in, int n_out, const float *x, const float *w, float *y);
/* linear_batch_forward with an explicit variant (as linear_forward_isa). */
void linear_batch_forward_isa(int n_in, int n_out, int n_batch, const float *x, const float *w, const float *bias,
                              act_kind act, float *y, cpu_isa isa);
/* y[b * y_stride + o] = w[o] . x[b] for o < n_out, b < n_batch (x: n_batch rows of n_in), each
 * bit-identical to kernels_gemv_avx2 of x[b]; needs AVX-512F. */
void kernels_gemv_batch_avx512(int n_in, int n_out, int n_batch, const float *x, const float *w, float *y,
                               size_t y_stride);
/* The same on AVX2 + FMA, each output bit-identical to kernels_gemv_avx2 of its input. */
void kernels_gemv_batch_avx2(int n_in, int n_out, int n_batch, const float *x, const float *w, float *y,
                             size_t y_stride);

/* The packed GEMM convolution (kernels_gemm.c, CONV_PATH_GEMM, AVX-512F or AVX2 + FMA) of any
 * non-depthwise p: packed weights' floats and packing (kernels_gemm_a_offset panels per group),
 * scratch floats of a call without / with a fused input scale, the parts (output positions in
 * 64-column panels, or output channels in whole panels), and the part's computation
 * y = act(conv(x * in_scale) + bias + residual) (in_scale, residual: pointwise convs only). */
size_t kernels_gemm_conv_packed_floats(const conv2d_params *p);
void kernels_gemm_conv_pack(const conv2d_params *p, const float *w, float *packed);
size_t kernels_gemm_conv_scratch_floats(const conv2d_params *p);
size_t kernels_gemm_conv_fused_scratch_floats(const conv2d_params *p);
kernels_part kernels_gemm_conv_part(const conv2d_params *p, int ith, int nth);
/* The same split by output positions (whole GEMM column panels). */
kernels_part kernels_gemm_conv_part_positions(const conv2d_params *p, int ith, int nth);
void kernels_gemm_conv_forward_part(const conv2d_params *p, const float *x,
                                    const float *in_scale, const float *packed,
                                    const float *bias, const float *residual, float *y,
                                    float *scratch, const kernels_part *part, const void *prefetch,
                                    size_t prefetch_bytes);

/* c[m][n] = act(a * b + bias) on AVX-512F, a packed in panels as above, b read in place (k rows
 * of n floats at stride ldb), c rows at stride ldc; bias (m values) may be NULL. Only rows
 * [r0, r1) are computed (r0 a multiple of KERNELS_GEMM_MR, r1 too or m), the same bits as in the
 * whole product. */
/* kernels_gemm_avx512 of all m rows adding res (m rows at stride ldc, NULL: none) before the
 * activation, as the fused residual of the pointwise path. */
void kernels_gemm_res_avx512(int m, int n, int k, const float *a, const float *b, size_t ldb, float *c, size_t ldc,
                             const float *bias, const float *res, act_kind act);
void kernels_gemm_avx512(int m, int n, int k, const float *a, const float *b, size_t ldb,
                         float *c, size_t ldc, const float *bias, act_kind act, int r0, int r1);
/* kernels_gemm_avx512 and kernels_gemm_res_avx512 on AVX2 + FMA: the same bits. */
void kernels_gemm_avx2(int m, int n, int k, const float *a, const float *b, size_t ldb, float *c, size_t ldc,
                       const float *bias, act_kind act, int r0, int r1);
void kernels_gemm_res_avx2(int m, int n, int k, const float *a, const float *b, size_t ldb, float *c, size_t ldc,
                           const float *bias, const float *res, act_kind act);

/* AVX-512 depthwise kernels (kernels_dw512.c): whether they take p (stride 1 with output as
 * wide as the input on small maps, or stride 2; kernels up to 7: see there), and the convolution
 * itself. */
int kernels_dw_avx512_applies(const conv2d_params *p);
void kernels_dw_avx512(const conv2d_params *p, const float *x, const float *w, const float *bias,
                       float *y);

/* The channel-blocked AVX-512 depthwise kernel (kernels_dwcb.c; kernels_dw_avx512 takes it first):
 * 7- and 14-wide outputs, stride 1 or 2, 3x3 or 5x5 kernels. */
int kernels_dw_cb_applies(const conv2d_params *p);
void kernels_dw_cb(const conv2d_params *p, const float *x, const float *w, const float *bias, float *y);
/* The channel-blocked AVX2 depthwise kernel (kernels_dw.c; dwconv2d_forward_isa takes it first on
 * AVX2): whether it takes p (stride 1 or 2, 3x3 or 5x5, outputs 7..28 wide). */
int kernels_dw_cb_avx2_applies(const conv2d_params *p);
/* Its thread parts (conv2d_plan_part): output channels or output rows (KERNELS_PART_POSITIONS). */
kernels_part kernels_dw_cb_avx2_part(const conv2d_params *p, int ith, int nth);
/* dwconv2d_forward's AVX2 variant with output channel c at y + c * y_plane (y_plane >= h_out * w_out:
 * rows of a larger map); a band of output rows computed from a band of input rows (pad_t / h_in
 * adjusted) has the whole map's bits. */
void kernels_dw_avx2_planes(const conv2d_params *p, const float *x, const float *w, const float *bias, float *y,
                            size_t y_plane);
/* Whether dwconv2d_forward's AVX2 variant runs its row kernel on rows split into even and odd
 * columns for p (stride 2, 3x3 / 5x5, wider than the channel-blocked kernel takes), and that
 * kernel's loop on one channel's rows split beforehand: padded input row t (of the output rows'
 * first window on) at x + t * row_stride, its even columns first, its odd ones half floats on
 * (half >= the output width rounded up to 8, plus (k - 1) / 2), zeros in every padding cell and
 * past the row; output rows [0, n_out) at y + oh * p->w_out, weights wc (k x k), bias b. The
 * same FMAs in the same order as dwconv2d_forward's: its bits. */
int kernels_dw_avx2_split_applies(const conv2d_params *p);
void kernels_dw_avx2_s2_split(const conv2d_params *p, const float *x, size_t row_stride, size_t half, const float *wc,
                              float b, float *y, int n_out);
/* Output rows [r0, r1) of the AVX2 depthwise conv p (x: its whole input), row oh of channel c at
 * y + c * y_plane + (oh - r0) * w_out, with the whole map's bits (dwconv2d_forward_rows' bands). */
void kernels_dw_avx2_rows(const conv2d_params *p, const float *x, const float *w, const float *bias, float *y,
                          size_t y_plane, int r0, int r1);
/* The AVX2 counterpart of conv2d_pw_dwcb_* (kernels_dw.c, 8 channels at a time; the planner takes
 * it on CPUs with AVX2 and without AVX-512F): the same contract, parts in blocks of 8 channels. */
int kernels_pw_dwcb8_fusable(const conv2d_params *pw, const conv2d_params *dw);
size_t kernels_pw_dwcb8_scratch_floats(const conv2d_params *dw);
kernels_part kernels_pw_dwcb8_part(const conv2d_params *dw, int ith, int nth);
void kernels_pw_dwcb8_forward_part(const conv2d_params *pw, const float *wt, const float *pw_bias,
                                   const conv2d_params *dw, const float *dw_w, const float *dw_bias, const float *x,
                                   float *y, float *scratch, const kernels_part *part);
/* wt[k * c_out + c] = the pointwise conv pw's weight (c, k), from its GEMM packing (gemm_packed). */
void kernels_pw_dwcb_pack(const conv2d_params *pw, const float *gemm_packed, float *wt);

/* The stride-2 AVX-512 depthwise kernel alone: whether it takes p, and the convolution with
 * output channel c at y + c * y_plane (y_plane >= h_out * w_out: rows of a larger map). Each
 * output accumulates its taps inside the input in the same order whatever h_in / pad_t, so a
 * band of output rows computed from a band of input rows has the whole map's bits. */
int kernels_dw_avx512_s2_applies(const conv2d_params *p);
void kernels_dw_avx512_s2(const conv2d_params *p, const float *x, const float *w,
                          const float *bias, float *y, size_t y_plane);

/* The stride-1 padded-plane AVX-512 depthwise kernel alone (what kernels_dw_avx512 runs on maps
 * wider than the other kernels take): whether kernels_dw_avx512 runs it for p, and output rows
 * [oh_lo, oh_hi) of every channel, row oh of channel c at y + c * y_plane + (oh - oh_lo) * w_out,
 * with the whole map's bits. */
int kernels_dw_avx512_rows_applies(const conv2d_params *p);
void kernels_dw_avx512_rows(const conv2d_params *p, const float *x, const float *w, const float *bias, float *y,
                            size_t y_plane, int oh_lo, int oh_hi);

/* pool2d_forward with an explicit variant: AVX-512 and AVX2 run kernels_pool_avx2 where it applies
 * (column stride 1 or 2, rows up to 1024 cells), else the portable kernel. */
void pool2d_forward_isa(const pool2d_params *p, const float *x, float *y, cpu_isa isa);
/* pool2d_forward_bias_part of every channel with an explicit variant (AVX2: in registers). */
void pool2d_forward_bias_isa(const pool2d_params *p, const float *bias, act_kind act, const float *x, float *y,
                             cpu_isa isa);
int kernels_pool_avx2_applies(const pool2d_params *p);
/* bias NULL: no bias and no activation; else y = act(pool + bias[c]) */
void kernels_pool_avx2(const pool2d_params *p, const float *x, float *y, const float *bias, act_kind act);

/* adaptive_avgpool2d_forward with an explicit variant: AVX-512 runs kernels_global_avg_avx512
 * for 1x1 outputs (global average pooling), AVX2 kernels_global_avg_avx2 (the same bits), else
 * the portable kernel. */
void adaptive_avgpool2d_forward_isa(int c, int h_in, int w_in, int h_out, int w_out,
                                    const float *x, float *y, cpu_isa isa);
/* y[ci] = mean of the hw floats of channel ci, for c channels (kernels_pool512.c, AVX-512F). */
void kernels_global_avg_avx512(int c, size_t hw, const float *x, float *y);
void kernels_global_avg_avx2(int c, size_t hw, const float *x, float *y);

/* Direct kernel for first-layer convolutions (kernels_stem.c): 3x3 stride 2, c_in <= 4,
 * c_out <= 64, groups 1; weights repacked tap-major ([c_in * 9][c_out], as many floats).
 * Another packed path (AVX2 + FMA or AVX-512F). */
int kernels_stem_applies(const conv2d_params *p);
void kernels_stem_pack(const conv2d_params *p, const float *w, float *packed);
/* Parts of the stem convolution: output positions in whole output rows. */
kernels_part kernels_stem_part(const conv2d_params *p, int ith, int nth);
void kernels_stem_forward_part(const conv2d_params *p, const float *x, const float *w,
                               const float *bias, float *y, const kernels_part *part);
/* kernels_stem_forward_part in the given variant (AVX2 or AVX-512, supported by the CPU; both give
 * the same bits). */
void kernels_stem_forward_part_isa(const conv2d_params *p, const float *x, const float *w, const float *bias, float *y,
                                   const kernels_part *part, cpu_isa isa);

/* Winograd (kernels_wino.c, CONV_PATH_WINOGRAD, AVX2 + FMA or AVX-512F), the packed path of stride-1 groups-1
 * 3x3 / 5x5 / 1x7 / 7x1 convolutions large enough to gain, and of strided ones whose kernel spans
 * 2..3 strides (as 3x3 over their polyphase planes): kernels_wino_applies says whether p
 * takes it; the others give its packed weights, packing and scratch for conv2d_plan. */
int kernels_wino_applies(const conv2d_params *p);
size_t kernels_wino_packed_floats(const conv2d_params *p);
void kernels_wino_pack(const conv2d_params *p, const float *w, float *packed);
size_t kernels_wino_scratch_floats(const conv2d_params *p);
/* Parts of a Winograd convolution: output positions in whole blocks of tile rows (each block
 * as the whole call blocks it), or output channels in GEMM panels (every part then transforms
 * the whole input); kernels_wino_part picks one (see there). */
kernels_part kernels_wino_part(const conv2d_params *p, int ith, int nth);
void kernels_wino_forward_part(const conv2d_params *p, const float *x, const float *packed,
                               const float *bias, float *y, float *scratch,
                               const kernels_part *part);
/* kernels_wino_forward_part in the given variant (AVX2 or AVX-512, supported by the CPU; both give
 * the same bits): the unit test checks each. */
void kernels_wino_forward_part_isa(const conv2d_params *p, const float *x, const float *packed, const float *bias,
                                   float *y, float *scratch, const kernels_part *part, cpu_isa isa);

/* Fixed inner block length: loops are written as "blocks of KERNELS_BLOCK + scalar tail" so gcc's
 * -O2 (very-cheap) vectorizer, which refuses loops of unknown trip count, still vectorizes them. */
#define KERNELS_BLOCK 8

/* Floats of pool2d_forward's row buffer (stack); windows wider than this take a slower path. */
#define KERNELS_POOL_TILE 512

/* Floats of a zero-padded input row staged by the specialized depthwise kernels (stack); convs
 * whose padded rows are longer take the generic depthwise path. */
#define KERNELS_DW_ROW_MAX 768

static inline __attribute__((always_inline)) float kernels_act_one(act_kind act, float v)
{
    float r;
    switch (act) {
    case ACT_RELU: return v > 0.0f ? v : 0.0f;
    case ACT_RELU6: r = v > 0.0f ? v : 0.0f; return r < 6.0f ? r : 6.0f;
    case ACT_HSWISH:
        r = v + 3.0f;
        r = r > 0.0f ? r : 0.0f;
        r = r < 6.0f ? r : 6.0f;
        return v * r * (1.0f / 6.0f);
    case ACT_HSIGMOID:
        r = v + 3.0f;
        r = r > 0.0f ? r : 0.0f;
        r = r < 6.0f ? r : 6.0f;
        return r * (1.0f / 6.0f);
    case ACT_NONE: break;
    }
    return v;
}

static inline int kernels_imin(int a, int b) { return a < b ? a : b; }
static inline int kernels_imax(int a, int b) { return a > b ? a : b; }
/* Brings the cache lines of floats [p, p + n) into L1 (prefetcht0 on x86), one per 16 floats from p. */
static inline void kernels_prefetch_floats(const float *p, int n)
{
    for (int k = 0; k < n; k += 16) __builtin_prefetch(p + k, 0, 3);
}

/* PyTorch's average-pool divisor along one axis for the window starting at `start` (may be negative)
 * of size k over n cells with pad_after trailing padding: the padded window inside [-pad, n + pad)
 * when count_include_pad, else only the real cells. */
static inline int kernels_pool_axis_count(int start, int k, int n, int pad_after, int count_include_pad)
{
    const int end = kernels_imin(start + k, n + pad_after);
    return count_include_pad ? end - start : kernels_imin(end, n) - kernels_imax(start, 0);
}

/* Packed GEMM left operand (m x k): blocks of KERNELS_GEMM_KC columns (the last may be
 * narrower), each block holding ceil(m / KERNELS_GEMM_MR) panels of KERNELS_GEMM_MR rows (zero past
 * the last row), k-major inside a panel. The micro-kernel broadcasts consecutive floats, and the
 * panels it visits for one block are consecutive in memory (one prefetchable stream).
 * kernels_gemm_a_offset is the position of element (r, kk); the total size is
 * ceil(m / MR) * MR * k floats. */
#define KERNELS_GEMM_MR 6
#define KERNELS_GEMM_KC 128

static inline size_t kernels_gemm_a_offset(int m, int k, int r, int kk)
{
    const size_t n_panels = (size_t)((m + KERNELS_GEMM_MR - 1) / KERNELS_GEMM_MR);
    const int k0 = kk / KERNELS_GEMM_KC * KERNELS_GEMM_KC;
    const int kc = kernels_imin(KERNELS_GEMM_KC, k - k0);
    return (size_t)k0 * n_panels * KERNELS_GEMM_MR +
           ((size_t)(r / KERNELS_GEMM_MR) * (size_t)kc + (size_t)(kk - k0)) * KERNELS_GEMM_MR +
           (size_t)(r % KERNELS_GEMM_MR);
}

/* Depthwise: one input channel per output channel. */
static inline int kernels_conv_depthwise(const conv2d_params *p)
{
    return p->groups == p->c_in && p->groups == p->c_out;
}

/* 1x1, stride 1, no padding: the input already is the GEMM's right-hand matrix. */
static inline int kernels_conv_pointwise(const conv2d_params *p)
{
    return p->k_h == 1 && p->k_w == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_t == 0 &&
           p->pad_l == 0 && p->h_out == p->h_in && p->w_out == p->w_in;
}

/* floor(a / b) for b > 0 and any sign of a. */
static inline int kernels_floor_div(int a, int b)
{
    int q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* Output positions o in [0, n_out) whose input index o*s + off lies in [0, n_in): [*lo, *hi),
 * with *lo <= *hi (an empty range when no position is valid). */
static inline void kernels_tap_range(int off, int s, int n_in, int n_out, int *lo, int *hi)
{
    int l = kernels_imin(kernels_imax(-kernels_floor_div(off, s), 0), n_out);
    int h = kernels_imin(kernels_floor_div(n_in - 1 - off, s) + 1, n_out);
    *lo = l;
    *hi = kernels_imax(h, l);
}

/* y[i] = act(y[i] + b) for i < n; the fused epilogue of conv and linear layers. */
void kernels_bias_act(float *y, size_t n, float b, act_kind act);

/* Sum of x[i] (kernels_sum_floats) and of x[i] * y[i] (kernels_dot_floats), i < n: KERNELS_BLOCK
 * float partial sums (vectorized), the tail and the partial sums added in double, in a fixed
 * order; the backward kernels' reductions. */
double kernels_sum_floats(const float *x, size_t n);
double kernels_dot_floats(const float *x, const float *y, size_t n);

/* linear_backward_weights in the given variant (the unit test checks each gives the same bits). */
void linear_backward_weights_isa(int n, int m, int n_in, const float *dy, size_t ld_dy, const float *x, size_t ld_x,
                                 float *dw, size_t ld_dw, cpu_isa isa);

/* Backward of the depthwise convolution (kernels_dw.c): dx overwritten; dw of channels
 * [c0, c1) accumulated (+=); scratch of dwconv2d_backward_scratch_floats(p) floats. The _isa
 * forms take the variant (isa supported by the CPU; the unit test checks each). */
size_t dwconv2d_backward_scratch_floats(const conv2d_params *p);
void dwconv2d_backward_data(const conv2d_params *p, const float *dy, const float *w, float *dx,
                            float *scratch);
void dwconv2d_backward_data_isa(const conv2d_params *p, const float *dy, const float *w, float *dx,
                                float *scratch, cpu_isa isa);
void dwconv2d_backward_weights(const conv2d_params *p, const float *x, const float *dy, float *dw,
                               int c0, int c1, float *scratch);
void dwconv2d_backward_weights_isa(const conv2d_params *p, const float *x, const float *dy,
                                   float *dw, int c0, int c1, float *scratch, cpu_isa isa);

#endif
