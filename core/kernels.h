/* Compute kernels on NCHW float32 activations, batch 1 (one image = C x H x W, row-major).
 * All kernels are pure: no allocation, no globals; scratch memory is passed in by the caller.
 * Weights use PyTorch layouts (conv: [c_out][c_in/groups][k_h][k_w], linear: [n_out][n_in]).
 * Backward kernels (training): one image per call like the forward ones, except BatchNorm (the
 * batch statistics need the batch). Data gradients (dx) are OVERWRITTEN; parameter gradients
 * (dw, db, dgamma, dbeta) are ACCUMULATED (+=), so the caller sums images in a fixed order. Each
 * output value is computed in a fixed order: the same inputs give the same bits. */
#ifndef CNN_KERNELS_H
#define CNN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    ACT_NONE = 0,
    ACT_RELU,
    ACT_RELU6,
    ACT_HSWISH,   /* x * relu6(x + 3) / 6 */
    ACT_HSIGMOID, /* relu6(x + 3) / 6 */
} act_kind;

/* In-place activation of n values. */
void act_forward(act_kind act, float *x, size_t n);

/* dx = dy * act'(x), x the activation's INPUT, n values; dx may equal dy. Edges as PyTorch 1.13's
 * autograd: ReLU 0 at x <= 0; ReLU6 (hardtanh 0..6) 1 only for 0 < x < 6; hard-swish 0 for
 * x < -3, x/3 + 1/2 for -3 <= x < 3, 1 from 3 on (PyTorch's vectorized loop; its scalar tail
 * gives 1.5 at exactly 3); hard-sigmoid 1/6 only for -3 < x < 3. */
void act_backward(act_kind act, const float *x, const float *dy, float *dx, size_t n);

/* ---- output parts (intra-op threads) ----
 * One layer computed by nth threads: each computes one disjoint part of the output, never a share
 * of a reduction, so every output value is computed by the same instructions in the same order
 * whatever nth is, and the result is bit-identical to the whole-tensor call. The *_part helpers
 * choose the axis and the alignment per kernel; the *_part kernels compute only that part. */
typedef enum {
    KERNELS_PART_CHANNELS = 0, /* output channels [lo, hi): a contiguous slab of NCHW y */
    KERNELS_PART_POSITIONS,    /* output positions [lo, hi) (oh * w_out + ow) of every channel */
} kernels_part_axis;

typedef struct {
    kernels_part_axis axis;
    int lo, hi; /* hi == lo: an empty part, nothing to compute */
} kernels_part;

/* Part ith (0 <= ith < nth) of n units along axis: consecutive parts, each starting at a multiple
 * of align (align >= 1), sizes balanced in whole chunks of align, the last one ending at n. */
kernels_part kernels_part_split(kernels_part_axis axis, int n, int align, int ith, int nth);

/* ---- output-size / padding helpers ---- */

/* PyTorch conv/pool output size for input n, window k, stride s, explicit pads. With ceil_mode the
 * last window must still start inside the input or the leading padding (PyTorch's rule). */
int kernels_out_size(int n, int k, int s, int pad_before, int pad_after, int ceil_mode);

/* TensorFlow "SAME": out = ceil(n/s); total = max((out-1)*s + k - n, 0); before = total/2, after = rest. */
void kernels_tf_same(int n, int k, int s, int *out, int *pad_before, int *pad_after);

/* ---- convolution ---- */

typedef struct {
    int c_in, h_in, w_in;
    int c_out, h_out, w_out; /* output size is given, not derived, so any padding rule fits */
    int k_h, k_w;
    int stride_h, stride_w;
    int pad_t, pad_l, pad_b, pad_r; /* zero padding; pad_b/pad_r only matter through h_out/w_out */
    int groups;                     /* c_in % groups == 0 && c_out % groups == 0 */
    act_kind act;                   /* fused epilogue: y = act(conv(x) + bias) */
    int train; /* 1: a training graph's conv (its data gradient too): only the paths whose rounding
                  the training checks were validated with (no polyphase / F(4x4, 5x5) Winograd) */
} conv2d_params;

/* Floats of scratch conv2d_forward needs (im2col buffer); 0 when it needs none
 * (1x1 stride-1 unpadded convs and depthwise convs). */
size_t conv2d_scratch_floats(const conv2d_params *p);

/* y[c_out][h_out][w_out] = act(conv(x) + bias). bias may be NULL. Dispatches: depthwise
 * (groups == c_in == c_out) -> dwconv2d_forward; 1x1/stride 1/no pad -> direct GEMM;
 * otherwise im2col + cblas_sgemm per group. x and y must not overlap. */
void conv2d_forward(const conv2d_params *p, const float *x, const float *w, const float *bias,
                    float *y, float *scratch);

/* ---- convolution backward (kernels_conv.c; depthwise in kernels_dw.c) ----
 * Any kernel / stride / asymmetric padding (TF SAME) / groups incl. depthwise; p->act must be
 * ACT_NONE (the activation's backward is act_backward, on its own input). One image per call;
 * w in PyTorch layout. scratch holds conv2d_backward_scratch_floats(p) floats (may be NULL when
 * 0), one buffer per concurrent caller. */
size_t conv2d_backward_scratch_floats(const conv2d_params *p);

/* dx[c_in][h_in][w_in] (overwritten) = gradient of the conv w.r.t. its input given
 * dy[c_out][h_out][w_out]. dx must not overlap dy or w. */
void conv2d_backward_data(const conv2d_params *p, const float *dy, const float *w, float *dx,
                          float *scratch);

/* dw[c_out][c_in/groups][k_h][k_w] += gradient w.r.t. the weights given the conv's input x and
 * dy; db[c_out] += sum of dy per output channel (db may be NULL: no bias). */
void conv2d_backward_weights(const conv2d_params *p, const float *x, const float *dy, float *dw,
                             float *db, float *scratch);

/* conv2d_backward_weights for one part only: threads each owning a part and looping over the
 * images in order give the bits of the whole call at any thread count. Parts come from
 * conv2d_backward_weights_split (aligned to the blocks each weight is computed in): with one group
 * (not depthwise) columns [lo, hi) of dw seen as [c_out][c_in*k_h*k_w] (KERNELS_PART_POSITIONS;
 * all of db with the part starting at column 0), else the output channels [lo, hi) (dw rows / db
 * entries, KERNELS_PART_CHANNELS). conv2d_backward_weights_zero clears what a part adds into. */
kernels_part conv2d_backward_weights_split(const conv2d_params *p, int ith, int nth);
void conv2d_backward_weights_part(const conv2d_params *p, const float *x, const float *dy,
                                  float *dw, float *db, float *scratch, const kernels_part *part);
void conv2d_backward_weights_zero(const conv2d_params *p, float *dw, float *db, const kernels_part *part);

/* ---- convolution plan ----
 * How one convolution runs on this CPU, chosen once (at model load) by conv2d_plan_init and then
 * only read: the path (which kernel family), the layout of the weights it reads (packed_floats > 0:
 * packed by conv2d_plan_pack at load; else PyTorch layout), its scratch and how its output splits
 * into thread parts. The forward executor (models/graph.c) dispatches on the plan alone; a
 * backward pass is to dispatch on the same plan (path says which weight layout it reads and which
 * parts are disjoint), so forward and backward share one choice per layer. */
typedef enum {
    CONV_PATH_DIRECT = 0, /* 1x1 stride-1 unpadded: OpenBLAS sgemm on the input itself */
    CONV_PATH_IM2COL,     /* im2col into scratch + OpenBLAS sgemm per group (no AVX2) */
    CONV_PATH_DEPTHWISE,  /* groups == c_in == c_out: dwconv2d_forward's kernels */
    CONV_PATH_STEM,       /* first-layer 3x3 stride-2 direct kernel, packed weights (AVX-512F) */
    CONV_PATH_WINOGRAD,   /* Winograd, weights packed transformed (AVX-512F) */
    CONV_PATH_GEMM,       /* packed-weight GEMM (AVX-512F or AVX2); pointwise convs may fuse an input
                             scale and a residual (conv2d_plan_fusable) */
    CONV_PATH_PW_DW,      /* a packed pointwise GEMM and the stride-2 depthwise conv after it,
                             in bands of rows (conv2d_plan_fuse_pw_dw) */
    CONV_PATH_PW_DWCB,    /* a pointwise conv and the small-map depthwise conv after it,
                             16 channels at a time in channel-blocked planes (inference only;
                             weights repacked k-major: conv2d_plan_fuse_pw_dw) */
    CONV_PATH_DW_PW,      /* a stride-1 depthwise conv on a wider map and the packed pointwise
                             GEMM reading its output (p; residual allowed), in bands of rows
                             (conv2d_plan_fuse_dw_pw) */
} conv_path;

typedef struct {
    conv_path path;
    conv2d_params p;       /* the convolution (CONV_PATH_PW_DW*: the pointwise one) */
    conv2d_params dw;      /* CONV_PATH_PW_DW*: the depthwise convolution after it; CONV_PATH_DW_PW:
                              the one before it */
    int in_scale;          /* CONV_PATH_GEMM: called with an input scale (conv2d_plan_fuse_scale) */
    size_t packed_floats;  /* packed weights' floats; 0: w is in PyTorch layout */
    size_t scratch_floats; /* scratch of one call; one buffer per concurrent caller */
    const float *w, *bias; /* weights as path reads them (packed or PyTorch layout), bias or NULL;
                              set by the caller, who owns them */
    const float *dw_w, *dw_bias; /* CONV_PATH_PW_DW*: the depthwise conv's (PyTorch layout) */
    const void *prefetch;  /* CONV_PATH_GEMM: memory the GEMM brings into L2 while it runs, a cache
                              line every few multiply-adds (set by the caller: the next layers'
                              weights, which would stream from L3 at their own turn), or NULL */
    size_t prefetch_bytes;
} conv2d_plan;

/* The plan of p on this CPU (w, bias NULL: the caller sets them, packing first when
 * packed_floats > 0). */
void conv2d_plan_init(conv2d_plan *pl, const conv2d_params *p);
/* Packs PyTorch-layout weights w of the plan's convolution into packed (pl->packed_floats). */
void conv2d_plan_pack(const conv2d_plan *pl, const float *w, float *packed);
/* Whether the plan can take an input scale and a residual (a pointwise CONV_PATH_GEMM plan). */
int conv2d_plan_fusable(const conv2d_plan *pl);
/* Marks a fusable plan as called with an input scale (its scratch grows to hold it). */
void conv2d_plan_fuse_scale(conv2d_plan *pl);
/* Turns the plan of a pointwise conv (fusable, no input scale) into CONV_PATH_PW_DW with the
 * depthwise plan dw reading its output, when conv2d_pw_dw_fusable allows; returns whether it did. */
int conv2d_plan_fuse_pw_dw(conv2d_plan *pl, const conv2d_plan *dw);
/* The same into CONV_PATH_PW_DWCB when conv2d_pw_dwcb_fusable allows: packed must be pl->w, the
 * caller's own writable copy, which is repacked in place (0 and the plan unchanged when the
 * temporary copy cannot be allocated). */
int conv2d_plan_fuse_pw_dwcb(conv2d_plan *pl, const conv2d_plan *dw, float *packed);
/* Turns the plan pl of a pointwise conv (fusable, no input scale; a residual stays allowed) into
 * CONV_PATH_DW_PW reading the input of the depthwise plan dw whose output it reads, when
 * conv2d_dw_pw_fusable allows; returns whether it did. */
int conv2d_plan_fuse_dw_pw(conv2d_plan *pl, const conv2d_plan *dw);
/* Whether the plan's output splits into thread parts (the OpenBLAS paths run whole). */
int conv2d_plan_splits(const conv2d_plan *pl);
/* Part ith of nth of the plan's output (nth == 1, or conv2d_plan_splits). */
kernels_part conv2d_plan_part(const conv2d_plan *pl, int ith, int nth);
/* Whether conv2d_plan_part_share applies: the GEMM path on one group, or Winograd. */
int conv2d_plan_shares(const conv2d_plan *pl);
/* Output channels of shares [i0, i1) of n (0 <= i0 <= i1 <= n), the channels cut into n nearly
 * equal runs of whole micro-kernel panels: uneven thread parts (parts i0 < i1 of one n never
 * overlap; any such part is a valid conv2d_plan_forward_part part with the whole layer's bits). */
kernels_part conv2d_plan_part_share(const conv2d_plan *pl, int i0, int i1, int n);
/* The same in output positions (whole rows) where the path splits that way: depthwise convs (not
 * the channel-blocked kernel) by rows, the GEMM path by positions; conv2d_plan_part otherwise.
 * Consecutive layers split by rows read the rows their own thread wrote. */
kernels_part conv2d_plan_part_rows(const conv2d_plan *pl, int ith, int nth);
/* y = act(conv(x * in_scale) + bias + residual) for the output part (from conv2d_plan_part, or
 * the whole output on a plan that does not split); in_scale only on a plan fused with
 * conv2d_plan_fuse_scale, residual only on a fusable plan, each NULL otherwise; scratch of
 * pl->scratch_floats (may be NULL when 0). x, in_scale and residual must not overlap y. */
void conv2d_plan_forward_part(const conv2d_plan *pl, const float *x, const float *in_scale,
                              const float *residual, float *y, float *scratch,
                              const kernels_part *part);

/* The data gradient of a single-group stride-1 convolution p (not depthwise) is the forward
 * convolution of dy by p's kernels transposed (c_in and c_out swapped) and rotated 180 degrees,
 * padding k - 1 - pad, the same map sizes. conv2d_backward_data_plan_init plans that convolution
 * on this CPU's packed forward paths (Winograd, packed GEMM) and returns 1, or returns 0 when p
 * does not take it (other strides / groups, padding beyond k - 1, no AVX2: then
 * conv2d_backward_data). conv2d_backward_data_plan_pack packs p's PyTorch-layout weights w into
 * packed (pl->packed_floats floats) through wt (c_out * c_in * k_h * k_w floats); with pl->w =
 * packed, conv2d_plan_forward_part(pl, dy, NULL, NULL, dx, scratch, part) then overwrites that
 * part of dx (the same bits whatever the parts). */
int conv2d_backward_data_plan_init(conv2d_plan *pl, const conv2d_params *p);
void conv2d_backward_data_plan_pack(const conv2d_plan *pl, const float *w, float *wt, float *packed);

/* Prepacked convolution, one call at a time (each builds the plan of p; the unit tests use
 * these): on CPUs with AVX2 every non-depthwise convolution runs a GEMM kernel (or, with AVX-512F, the
 * Winograd / first-layer kernels) on weights packed once and on input blocks packed on the fly
 * into scratch.
 * conv2d_packed_floats is the packed weights' size in floats, 0 when p does not take this path on
 * this CPU (depthwise, or no AVX2): then use conv2d_forward. conv2d_pack_weights packs
 * PyTorch-layout weights w into packed (conv2d_packed_floats(p) floats); conv2d_forward_packed
 * computes the same as conv2d_forward with scratch of conv2d_packed_scratch_floats(p) floats
 * (may be 0, then scratch may be NULL). x and y must not overlap. */
size_t conv2d_packed_floats(const conv2d_params *p);
void conv2d_pack_weights(const conv2d_params *p, const float *w, float *packed);
size_t conv2d_packed_scratch_floats(const conv2d_params *p);
void conv2d_forward_packed(const conv2d_params *p, const float *x, const float *packed,
                           const float *bias, float *y, float *scratch);

/* conv2d_forward_packed fused with its neighbours in MobileNetV3 blocks, for convs where
 * conv2d_packed_fusable(p) (1x1, stride 1, unpadded, on the packed GEMM path):
 * y = act(conv(x * in_scale) + bias + residual), in_scale (c_in floats: a squeeze-and-excitation
 * scale per input channel) and residual (shaped like y) each optional (NULL). Neither may overlap
 * y. With in_scale, scratch must hold conv2d_packed_fused_scratch_floats(p) floats. */
int conv2d_packed_fusable(const conv2d_params *p);
size_t conv2d_packed_fused_scratch_floats(const conv2d_params *p);
void conv2d_forward_packed_fused(const conv2d_params *p, const float *x, const float *in_scale,
                                 const float *packed, const float *bias, const float *residual,
                                 float *y, float *scratch);

/* Part ith of nth of a packed convolution (conv2d_packed_floats(p) > 0): output positions in
 * whole rows for the first-layer kernel, in 64-column GEMM panels for GEMM convolutions with a
 * large output map, whole Winograd tile rows where there are enough; otherwise output
 * channels in whole 6-row GEMM panels (the weights then stream once in total, not once per thread). */
kernels_part conv2d_packed_part(const conv2d_params *p, int ith, int nth);

/* conv2d_forward_packed_fused / conv2d_forward_packed computing only part (from
 * conv2d_packed_part, or any part of the same axis and alignment); scratch as for the whole call,
 * one buffer per concurrent caller. */
void conv2d_forward_packed_fused_part(const conv2d_params *p, const float *x,
                                      const float *in_scale, const float *packed,
                                      const float *bias, const float *residual, float *y,
                                      float *scratch, const kernels_part *part);
void conv2d_forward_packed_part(const conv2d_params *p, const float *x, const float *packed,
                                const float *bias, float *y, float *scratch,
                                const kernels_part *part);

/* A packed pointwise convolution pw (conv2d_packed_fusable, no scale or residual) followed by the
 * stride-2 depthwise convolution dw of its output, computed together in bands of dw's output rows
 * so the intermediate map never leaves the cache: y = dw(pw(x)), bit-identical to
 * conv2d_forward_packed then dwconv2d_forward. conv2d_pw_dw_fusable says whether the pair takes
 * it (AVX-512, or AVX2 with stride 2); scratch holds conv2d_pw_dw_scratch_floats floats (one
 * buffer per concurrent caller). Parts: output positions in whole rows (conv2d_pw_dw_part). x and
 * y must not overlap. */
int conv2d_pw_dw_fusable(const conv2d_params *pw, const conv2d_params *dw);
size_t conv2d_pw_dw_scratch_floats(const conv2d_params *pw, const conv2d_params *dw);
kernels_part conv2d_pw_dw_part(const conv2d_params *dw, int ith, int nth);
void conv2d_pw_dw_forward(const conv2d_params *pw, const float *pw_packed, const float *pw_bias,
                          const conv2d_params *dw, const float *dw_w, const float *dw_bias,
                          const float *x, float *y, float *scratch);
void conv2d_pw_dw_forward_part(const conv2d_params *pw, const float *pw_packed,
                               const float *pw_bias, const conv2d_params *dw, const float *dw_w,
                               const float *dw_bias, const float *x, float *y, float *scratch,
                               const kernels_part *part);

/* A pointwise conv pw and the depthwise conv dw of its output on a small map (7- or 14-wide
 * output, stride 1 or 2, 3x3 or 5x5; inference only), 16 channels at a time: y = dw(pw(x)),
 * bit-identical to conv2d_forward_packed then dwconv2d_forward. wt: pw's weights k-major
 * (wt[k * c_out + c], see conv2d_plan_fuse_pw_dwcb); scratch of conv2d_pw_dwcb_scratch_floats
 * (one buffer per concurrent caller); parts: output channels in blocks of 16. */
int conv2d_pw_dwcb_fusable(const conv2d_params *pw, const conv2d_params *dw);
size_t conv2d_pw_dwcb_scratch_floats(const conv2d_params *dw);
kernels_part conv2d_pw_dwcb_part(const conv2d_params *dw, int ith, int nth);
void conv2d_pw_dwcb_forward_part(const conv2d_params *pw, const float *wt, const float *pw_bias,
                                 const conv2d_params *dw, const float *dw_w, const float *dw_bias, const float *x,
                                 float *y, float *scratch, const kernels_part *part);

/* A stride-1 depthwise conv dw on a map wider than the small-map kernels take, and the packed
 * pointwise conv pw (conv2d_packed_fusable) of its output with an optional residual (shaped like
 * y, may be NULL), computed together in bands of rows so the depthwise output never leaves the
 * cache: y = act(pw(dw(x)) + residual), bit-identical to dwconv2d_forward then
 * conv2d_forward_packed_fused. conv2d_dw_pw_fusable says whether the pair takes it (AVX-512; AVX2:
 * stride 1 off the channel-blocked kernel's maps); scratch holds conv2d_dw_pw_scratch_floats
 * floats (one buffer per concurrent caller).
 * Parts: output positions in whole rows (conv2d_dw_pw_part). x and residual must not overlap y. */
int conv2d_dw_pw_fusable(const conv2d_params *dw, const conv2d_params *pw);
size_t conv2d_dw_pw_scratch_floats(const conv2d_params *dw);
kernels_part conv2d_dw_pw_part(const conv2d_params *pw, int ith, int nth);
void conv2d_dw_pw_forward_part(const conv2d_params *pw, const float *pw_packed, const float *pw_bias,
                               const conv2d_params *dw, const float *dw_w, const float *dw_bias, const float *x,
                               const float *residual, float *y, float *scratch, const kernels_part *part);

/* Direct depthwise convolution (groups == c_in == c_out), any k / stride / padding. */
void dwconv2d_forward(const conv2d_params *p, const float *x, const float *w, const float *bias,
                      float *y);
/* dwconv2d_forward of output channels [c0, c1) only (channels are independent). */
void dwconv2d_forward_part(const conv2d_params *p, const float *x, const float *w,
                           const float *bias, float *y, int c0, int c1);
/* dwconv2d_forward of output rows [r0, r1) only: each channel's band as a convolution of the input
 * rows it reads, padded only where the whole map is (every output the same taps in the same order). */
void dwconv2d_forward_rows(const conv2d_params *p, const float *x, const float *w,
                           const float *bias, float *y, int r0, int r1);

/* ---- pooling ---- */

typedef enum { POOL_MAX = 0, POOL_AVG } pool_kind;

typedef struct {
    pool_kind kind;
    int c, h_in, w_in, h_out, w_out;
    int k_h, k_w, stride_h, stride_w;
    int pad_t, pad_l, pad_b, pad_r;
    /* AVG only, PyTorch semantics: divisor counts padded cells inside [-pad, n+pad) when set,
     * only real input cells otherwise. (TF SAME average pooling == count_include_pad 0.) */
    int count_include_pad;
} pool2d_params;

/* Max pooling ignores padding (padded cells are -inf). */
void pool2d_forward(const pool2d_params *p, const float *x, float *y);
/* pool2d_forward of channels [c0, c1) only. */
void pool2d_forward_part(const pool2d_params *p, const float *x, float *y, int c0, int c1);
/* y = act(pool2d_forward(x) + bias[c]) for channels [c0, c1) (bias: p->c values; the graph's
 * average pools moved after a 1x1 conv, whose bias and activation they then apply). */
void pool2d_forward_bias_part(const pool2d_params *p, const float *bias, act_kind act, const float *x, float *y,
                              int c0, int c1);

/* PyTorch AdaptiveAvgPool2d: bins start = floor(i*n/out), end = ceil((i+1)*n/out). */
void adaptive_avgpool2d_forward(int c, int h_in, int w_in, int h_out, int w_out, const float *x,
                                float *y);

/* Backward of pool2d_forward: dx[c][h_in][w_in] (overwritten) from dy[c][h_out][w_out]. Max: each
 * output's gradient goes to the input cell PyTorch picks (the first maximum in row-major window
 * order over the real cells, a NaN winning), needs the forward input x; avg: spread with
 * PyTorch's divisor (ceil_mode windows clipped to [-pad, n + pad), count_include_pad), x unused
 * (may be NULL). dx must not overlap x or dy. */
void pool2d_backward(const pool2d_params *p, const float *x, const float *dy, float *dx);

/* Backward of adaptive_avgpool2d_forward: dx[c][h_in][w_in] (overwritten) from
 * dy[c][h_out][w_out] (global average pooling: h_out = w_out = 1). */
void adaptive_avg_backward(int c, int h_in, int w_in, int h_out, int w_out, const float *dy,
                           float *dx);

/* ---- dense / elementwise ---- */

/* y[n_out] = act(w[n_out][n_in] . x + bias); bias may be NULL. Batch 1 -> GEMV. */
void linear_forward(int n_in, int n_out, const float *x, const float *w, const float *bias,
                    act_kind act, float *y);
/* Part ith of nth of linear_forward's outputs (KERNELS_PART_CHANNELS: output rows, in the GEMV
 * kernel's groups of 4), and the call computing only y[part->lo .. part->hi). Without the AVX-512
 * GEMV (OpenBLAS sgemv, whose per-row result may depend on the range) part 0 is everything. */
kernels_part linear_part(int n_out, int ith, int nth);
void linear_forward_part(int n_in, int n_out, const float *x, const float *w, const float *bias,
                         act_kind act, float *y, const kernels_part *part);

/* n_batch inputs through one linear layer: x holds n_batch rows of n_in floats, y receives n_batch
 * rows of n_out; each row bit-identical to linear_forward of that input alone (AVX-512: the GEMV's
 * per-output FMA order, the weights read once per block of rows for the whole batch; otherwise
 * linear_forward per input). Parts as linear_part gives them (output rows of every input). */
void linear_batch_forward(int n_in, int n_out, int n_batch, const float *x, const float *w, const float *bias,
                          act_kind act, float *y);
void linear_batch_forward_part(int n_in, int n_out, int n_batch, const float *x, const float *w, const float *bias,
                               act_kind act, float *y, const kernels_part *part);

/* The weight gradient of m output rows of a linear layer over a batch of n (overwritten, not
 * accumulated): dw[o][i] = sum over k < n of dy[k][o] * x[k][i] for o < m, i < n_in, rows ld_*
 * floats apart. Each value is one FMA chain over k in order: the same bits whatever rows or
 * columns a call covers. */
void linear_backward_weights(int n, int m, int n_in, const float *dy, size_t ld_dy, const float *x, size_t ld_x,
                             float *dw, size_t ld_dw);

/* y[c][i] = x[c][i] * scale[c] for i < hw. y may equal x (in place). */
void scale_channels_forward(int c, int hw, const float *x, const float *scale, float *y);

/* Backward of scale_channels_forward: dx[c][i] = dy[c][i] * scale[c] (overwritten; dx may equal
 * dy) and dscale[c] = sum_i dy[c][i] * x[c][i] (overwritten: a data gradient, of one image). */
void scale_channels_backward(int c, int hw, const float *x, const float *scale, const float *dy,
                             float *dx, float *dscale);

/* y = act(a + b), n values; y may equal a or b. */
void add_forward(size_t n, const float *a, const float *b, act_kind act, float *y);

/* ShuffleNet channel shuffle: view as [groups][c/groups][hw], transpose to [c/groups][groups][hw].
 * x and y must not overlap. */
void channel_shuffle_forward(int c, int hw, int groups, const float *x, float *y);

/* Channel concat of n_inputs tensors (each cs[i] x hw) into y ((sum cs) x hw). */
void concat_forward(int n_inputs, const float *const *xs, const int *cs, int hw, float *y);

/* Numerically stable softmax over n values; y may equal x. */
void softmax_forward(int n, const float *x, float *y);

/* ---- BatchNorm over a batch (core/kernels_bn.c) ----
 * x[n][c][hw] (n images of c x hw, contiguous); every call computes only channels [c0, c1)
 * (channels are independent: threads take channel parts, the bits do not depend on them).
 * Sums in double in a fixed order. */
typedef struct {
    int n, c, hw;
    float eps;      /* PyTorch's eps (torchvision: 1e-5; MobileNetV3: 1e-3) */
    float momentum; /* train: running = (1 - momentum) * running + momentum * batch statistic */
} bn_params;

/* Frozen (eval-mode statistics, gamma / beta trainable): y = x * s + (beta - mean * s),
 * s = gamma / sqrt(var + eps), mean / var the running statistics. y may equal x. */
void bn_frozen_forward(const bn_params *p, int c0, int c1, const float *x, const float *gamma,
                       const float *beta, const float *mean, const float *var, float *y);
/* Its backward given the forward input x: dx = dy * s (overwritten; NULL: not computed; may
 * equal dy), dgamma[c] += sum dy * (x - mean) / sqrt(var + eps), dbeta[c] += sum dy (each NULL:
 * not computed). */
void bn_frozen_backward(const bn_params *p, int c0, int c1, const float *x, const float *dy,
                        const float *gamma, const float *mean, const float *var, float *dx,
                        float *dgamma, float *dbeta);

/* The frozen BatchNorm followed by an activation, in one pass over each channel's runs:
 * bn_frozen_forward into y (NULL: not kept), then z = act(y) (z NULL: none; z may equal y: in
 * place), z's images z_stride floats apart (z_stride >= c * hw: a channel slice of a larger
 * value). The same bits as the two layers apart. */
void bn_frozen_act_forward(const bn_params *p, int c0, int c1, act_kind act, const float *x,
                           const float *gamma, const float *beta, const float *mean, const float *var,
                           float *y, float *z, size_t z_stride);
/* Its backward given dz, the gradient of z = act(y) (images z_stride floats apart): the
 * activation's input y recomputed from x as the forward computes it (so y need not be kept),
 * act_backward of that, then bn_frozen_backward, run by run (one pass over memory; the same bits
 * as the two layers apart). dx is required (it holds the activation's gradient first) unless act
 * is ACT_NONE (then beta is not read and may be NULL). */
void bn_frozen_act_backward(const bn_params *p, int c0, int c1, act_kind act, const float *dz,
                            size_t z_stride, const float *x, const float *gamma, const float *beta,
                            const float *mean, const float *var, float *dx, float *dgamma, float *dbeta);
/* bn_frozen_act_backward of one image (p->n == 1; dx required), each channel's two double sums
 * (sum dy, sum (x - mean) * dy, dy the BN output's gradient) left in sums[2c], sums[2c + 1]
 * instead of added to dgamma / dbeta; bn_frozen_backward_reduce then adds the n images' sums
 * (sums[i * 2c_total + ...], image by image in order) into dgamma / dbeta: together the bits of
 * the whole-batch call, whatever order the images were done in. */
void bn_frozen_act_backward_image(const bn_params *p, int c0, int c1, act_kind act, const float *dz,
                                  size_t z_stride, const float *x, const float *gamma, const float *beta,
                                  const float *mean, const float *var, float *dx, double *sums);
void bn_frozen_backward_reduce(const bn_params *p, int c0, int c1, const float *var, const double *sums,
                               float *dgamma, float *dbeta);

/* Train mode (model.train()): normalizes with the batch mean and biased variance over n * hw
 * values (n * hw > 1), y = (x - mean) * invstd * gamma + beta (y may equal x); saves mean and
 * invstd = 1 / sqrt(var + eps) per channel for the backward (save_mean / save_invstd, c floats);
 * updates running_mean / running_var (NULL: not updated) with momentum, the variance unbiased
 * (* N / (N - 1)) as PyTorch does. */
void bn_train_forward(const bn_params *p, int c0, int c1, const float *x, const float *gamma,
                      const float *beta, float *running_mean, float *running_var,
                      float *save_mean, float *save_invstd, float *y);
/* Its backward as PyTorch's (x the forward input, save_* from bn_train_forward):
 * dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)) (overwritten; NULL: not
 * computed; may equal dy), dgamma[c] += sum dy * xhat, dbeta[c] += sum dy (each NULL: not
 * computed). */
void bn_train_backward(const bn_params *p, int c0, int c1, const float *x, const float *dy,
                       const float *gamma, const float *save_mean, const float *save_invstd,
                       float *dx, float *dgamma, float *dbeta);

/* ---- dropout (core/kernels_train.c) ----
 * y[i] = x[i] * keep(i) / (1 - prob), keep(i) = 0 with probability prob, drawn from core/rng.h
 * keyed by (seed, step, layer, first + i): element first + i of the layer's batch tensor (e.g.
 * image * per_image + offset), so any split into calls gives the same mask. 0 <= prob < 1 (prob
 * 0: y = x). y may equal x. The backward is the same mask on dy: dropout_backward. */
void dropout_forward(uint64_t seed, uint64_t step, uint32_t layer, size_t first, size_t n,
                     float prob, const float *x, float *y);
void dropout_backward(uint64_t seed, uint64_t step, uint32_t layer, size_t first, size_t n,
                      float prob, const float *dy, float *dx);

/* Indices of the k largest values of x[0..n) in descending order (ties: lower index first). */
void topk_indices(int n, const float *x, int k, int *idx);

#endif
