/* Convolution (see kernels.h): the plan of a convolution, which chooses its path once, the
 * dispatch on it, and the paths' one-call entry points. The OpenBLAS paths (direct, im2col) live
 * here; the others in the kernel files below this one: depthwise in kernels_dw.c, first layer in
 * kernels_stem.c, Winograd in kernels_wino.c, packed GEMM in kernels_gemm.c, the fused pointwise +
 * depthwise pair in kernels_pwdw.c. */
#include "kernels.h"

#include <assert.h>
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "kernels_internal.h"

/* ---- convolution ---- */

static void conv_check_params(const conv2d_params *p)
{
    assert(p->c_in > 0 && p->c_out > 0 && p->h_in > 0 && p->w_in > 0);
    assert(p->h_out > 0 && p->w_out > 0 && p->k_h > 0 && p->k_w > 0);
    assert(p->stride_h > 0 && p->stride_w > 0 && p->pad_t >= 0 && p->pad_l >= 0);
    assert(p->groups > 0 && p->c_in % p->groups == 0 && p->c_out % p->groups == 0);
    (void)p;
}

size_t conv2d_scratch_floats(const conv2d_params *p)
{
    if (kernels_conv_depthwise(p) || kernels_conv_pointwise(p)) return 0;
    return (size_t)(p->c_in / p->groups) * (size_t)p->k_h * (size_t)p->k_w * (size_t)p->h_out *
           (size_t)p->w_out;
}

/* col[(ci*k_h + i)*k_w + j][oh*w_out + ow] = x[ci][oh*s_h - pad_t + i][ow*s_w - pad_l + j], zero
 * outside the input, for the c channels starting at x. Every cell of col is written. */
static void conv_im2col_rows(const conv2d_params *p, const float *x, int r0, int r1, float *col)
{
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    const size_t hw_out = (size_t)p->h_out * (size_t)p->w_out;
    const int w_out = p->w_out, sw = p->stride_w, taps = p->k_h * p->k_w;
    for (int r = r0; r < r1; r++) {
        const int ci = r / taps, i = r % taps / p->k_w, j = r % p->k_w;
        const float *xc = x + (size_t)ci * hw_in;
        float *row = col + (size_t)(r - r0) * hw_out;
        const int off = j - p->pad_l;
        int lo, hi;
        kernels_tap_range(off, sw, p->w_in, w_out, &lo, &hi);
        for (int oh = 0; oh < p->h_out; oh++) {
            float *dst = row + (size_t)oh * (size_t)w_out;
            const int ih = oh * p->stride_h - p->pad_t + i;
            if (ih < 0 || ih >= p->h_in) {
                memset(dst, 0, (size_t)w_out * sizeof *dst);
                continue;
            }
            const float *xrow = xc + (size_t)ih * (size_t)p->w_in;
            /* size-0 calls skipped: most rows need no padding and the calls are short */
            if (lo > 0) memset(dst, 0, (size_t)lo * sizeof *dst);
            if (hi > lo && sw == 1) {
                memcpy(dst + lo, xrow + lo + off, (size_t)(hi - lo) * sizeof *dst);
            } else {
                for (int ow = lo; ow < hi; ow++) dst[ow] = xrow[ow * sw + off];
            }
            if (hi < w_out) memset(dst + hi, 0, (size_t)(w_out - hi) * sizeof *dst);
        }
    }
}

static void conv_im2col(const conv2d_params *p, const float *x, int c, float *col)
{
    conv_im2col_rows(p, x, 0, c * p->k_h * p->k_w, col);
}

void conv2d_forward(const conv2d_params *p, const float *x, const float *w, const float *bias,
                    float *y, float *scratch)
{
    conv_check_params(p);
    if (kernels_conv_depthwise(p)) {
        dwconv2d_forward(p, x, w, bias, y);
        return;
    }
    const int direct = kernels_conv_pointwise(p);
    assert(direct || scratch != NULL);
    const int cig = p->c_in / p->groups, cog = p->c_out / p->groups;
    const int k = cig * p->k_h * p->k_w;
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    const size_t hw_out = (size_t)p->h_out * (size_t)p->w_out;
    for (int g = 0; g < p->groups; g++) {
        const float *xg = x + (size_t)g * (size_t)cig * hw_in;
        const float *rhs = xg;
        if (!direct) {
            conv_im2col(p, xg, cig, scratch);
            rhs = scratch;
        }
        float *yg = y + (size_t)g * (size_t)cog * hw_out;
        /* yg[cog][hw_out] = w_g[cog][k] * rhs[k][hw_out] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cog, (int)hw_out, k, 1.0f,
                    w + (size_t)g * (size_t)cog * (size_t)k, k, rhs, (int)hw_out, 0.0f, yg,
                    (int)hw_out);
        for (int co = 0; co < cog; co++) {
            float b = bias ? bias[g * cog + co] : 0.0f;
            kernels_bias_act(yg + (size_t)co * hw_out, hw_out, b, p->act);
        }
    }
}

/* ---- the plan ---- */

void conv2d_plan_init(conv2d_plan *pl, const conv2d_params *p)
{
    conv_check_params(p);
    *pl = (conv2d_plan){.p = *p};
    if (kernels_conv_depthwise(p))
        pl->path = CONV_PATH_DEPTHWISE;
    else if (cpu_isa_best() < CPU_ISA_AVX2)
        pl->path = kernels_conv_pointwise(p) ? CONV_PATH_DIRECT : CONV_PATH_IM2COL;
    else if (kernels_stem_applies(p))
        pl->path = CONV_PATH_STEM;
    else if (kernels_wino_applies(p))
        pl->path = CONV_PATH_WINOGRAD;
    else
        pl->path = CONV_PATH_GEMM;
    switch (pl->path) {
    case CONV_PATH_DIRECT:
    case CONV_PATH_DEPTHWISE: break;
    case CONV_PATH_IM2COL: pl->scratch_floats = conv2d_scratch_floats(p); break;
    case CONV_PATH_STEM:
        pl->packed_floats = (size_t)p->c_out * (size_t)p->c_in * (size_t)p->k_h * (size_t)p->k_w;
        break;
    case CONV_PATH_WINOGRAD:
        pl->packed_floats = kernels_wino_packed_floats(p);
        pl->scratch_floats = kernels_wino_scratch_floats(p);
        break;
    case CONV_PATH_GEMM:
    case CONV_PATH_PW_DW:
    case CONV_PATH_PW_DWCB:
    case CONV_PATH_DW_PW:
        pl->packed_floats = kernels_gemm_conv_packed_floats(p);
        pl->scratch_floats = kernels_gemm_conv_scratch_floats(p);
        break;
    }
}

void conv2d_plan_pack(const conv2d_plan *pl, const float *w, float *packed)
{
    switch (pl->path) {
    case CONV_PATH_STEM: kernels_stem_pack(&pl->p, w, packed); break;
    case CONV_PATH_WINOGRAD: kernels_wino_pack(&pl->p, w, packed); break;
    case CONV_PATH_GEMM:
    case CONV_PATH_PW_DW:
    case CONV_PATH_DW_PW: kernels_gemm_conv_pack(&pl->p, w, packed); break;
    case CONV_PATH_PW_DWCB: assert(!"conv2d_plan_pack: a fused plan's weights are repacked when fused"); break;
    case CONV_PATH_DIRECT:
    case CONV_PATH_IM2COL:
    case CONV_PATH_DEPTHWISE: assert(!"conv2d_plan_pack: the path reads PyTorch-layout weights"); break;
    }
}

int conv2d_plan_fusable(const conv2d_plan *pl)
{
    return pl->path == CONV_PATH_GEMM && kernels_conv_pointwise(&pl->p);
}

void conv2d_plan_fuse_scale(conv2d_plan *pl)
{
    assert(conv2d_plan_fusable(pl));
    pl->in_scale = 1;
    pl->scratch_floats = kernels_gemm_conv_fused_scratch_floats(&pl->p);
}

int conv2d_plan_fuse_pw_dw(conv2d_plan *pl, const conv2d_plan *dw)
{
    if (!conv2d_plan_fusable(pl) || pl->in_scale || dw->path != CONV_PATH_DEPTHWISE ||
        !conv2d_pw_dw_fusable(&pl->p, &dw->p))
        return 0;
    pl->path = CONV_PATH_PW_DW;
    pl->dw = dw->p;
    pl->dw_w = dw->w;
    pl->dw_bias = dw->bias;
    pl->scratch_floats = conv2d_pw_dw_scratch_floats(&pl->p, &pl->dw);
    return 1;
}

/* CONV_PATH_PW_DWCB's kernels: AVX-512 (kernels_dwcb.c, 16 channels at a time), else AVX2
 * (kernels_dw.c, 8); the same contract. */
static int conv_pw_dwcb_avx2(void) { return cpu_isa_best() == CPU_ISA_AVX2; }

int conv2d_plan_fuse_pw_dwcb(conv2d_plan *pl, const conv2d_plan *dw, float *packed)
{
    if (!conv2d_plan_fusable(pl) || pl->in_scale || dw->path != CONV_PATH_DEPTHWISE || packed != pl->w ||
        !(conv_pw_dwcb_avx2() ? kernels_pw_dwcb8_fusable(&pl->p, &dw->p) : conv2d_pw_dwcb_fusable(&pl->p, &dw->p)))
        return 0;
    float *gemm = malloc(pl->packed_floats * sizeof *gemm);
    if (!gemm) return 0;
    memcpy(gemm, packed, pl->packed_floats * sizeof *gemm);
    kernels_pw_dwcb_pack(&pl->p, gemm, packed);
    free(gemm);
    pl->path = CONV_PATH_PW_DWCB;
    pl->dw = dw->p;
    pl->dw_w = dw->w;
    pl->dw_bias = dw->bias;
    pl->scratch_floats =
        conv_pw_dwcb_avx2() ? kernels_pw_dwcb8_scratch_floats(&pl->dw) : conv2d_pw_dwcb_scratch_floats(&pl->dw);
    return 1;
}

int conv2d_plan_fuse_dw_pw(conv2d_plan *pl, const conv2d_plan *dw)
{
    if (!conv2d_plan_fusable(pl) || pl->in_scale || dw->path != CONV_PATH_DEPTHWISE ||
        !conv2d_dw_pw_fusable(&dw->p, &pl->p))
        return 0;
    pl->path = CONV_PATH_DW_PW;
    pl->dw = dw->p;
    pl->dw_w = dw->w;
    pl->dw_bias = dw->bias;
    pl->scratch_floats = conv2d_dw_pw_scratch_floats(&pl->dw);
    return 1;
}

int conv2d_plan_splits(const conv2d_plan *pl)
{
    return pl->path != CONV_PATH_DIRECT && pl->path != CONV_PATH_IM2COL;
}

kernels_part conv2d_plan_part(const conv2d_plan *pl, int ith, int nth)
{
    const conv2d_params *p = &pl->p;
    switch (pl->path) {
    case CONV_PATH_DEPTHWISE: /* the channel-blocked kernel: whole blocks of 16 channels per part */
        if (cpu_isa_best() == CPU_ISA_AVX2 && kernels_dw_cb_avx2_applies(p)) return kernels_dw_cb_avx2_part(p, ith, nth);
        return kernels_part_split(KERNELS_PART_CHANNELS, p->c_out,
                                  cpu_isa_best() >= CPU_ISA_AVX512 && kernels_dw_cb_applies(p) ? 16 : 1, ith, nth);
    case CONV_PATH_STEM: return kernels_stem_part(p, ith, nth);
    case CONV_PATH_WINOGRAD: return kernels_wino_part(p, ith, nth);
    case CONV_PATH_GEMM: return kernels_gemm_conv_part(p, ith, nth);
    case CONV_PATH_PW_DW: return conv2d_pw_dw_part(&pl->dw, ith, nth);
    case CONV_PATH_PW_DWCB:
        return conv_pw_dwcb_avx2() ? kernels_pw_dwcb8_part(&pl->dw, ith, nth) : conv2d_pw_dwcb_part(&pl->dw, ith, nth);
    case CONV_PATH_DW_PW: return conv2d_dw_pw_part(p, ith, nth);
    case CONV_PATH_DIRECT:
    case CONV_PATH_IM2COL: break;
    }
    assert(nth == 1);
    return kernels_part_split(KERNELS_PART_CHANNELS, p->c_out, p->c_out, ith, nth);
}

int conv2d_plan_shares(const conv2d_plan *pl)
{
    return (pl->path == CONV_PATH_GEMM && pl->p.groups == 1) || pl->path == CONV_PATH_WINOGRAD;
}

kernels_part conv2d_plan_part_share(const conv2d_plan *pl, int i0, int i1, int n)
{
    assert(conv2d_plan_shares(pl) && n >= 1 && i0 >= 0 && i0 <= i1 && i1 <= n);
    const int c = pl->p.c_out;
    const int64_t chunks = (c + KERNELS_GEMM_MR - 1) / KERNELS_GEMM_MR;
    const int64_t lo = chunks * i0 / n * KERNELS_GEMM_MR, hi = chunks * i1 / n * KERNELS_GEMM_MR;
    kernels_part part = {KERNELS_PART_CHANNELS, (int)(lo < c ? lo : c), (int)(hi < c ? hi : c)};
    return part;
}

kernels_part conv2d_plan_part_rows(const conv2d_plan *pl, int ith, int nth)
{
    const conv2d_params *p = &pl->p;
    if (pl->path == CONV_PATH_DEPTHWISE && !(cpu_isa_best() >= CPU_ISA_AVX512 && kernels_dw_cb_applies(p)) &&
        !(cpu_isa_best() == CPU_ISA_AVX2 && kernels_dw_cb_avx2_applies(p)))
        return kernels_part_split(KERNELS_PART_POSITIONS, p->h_out * p->w_out, p->w_out, ith, nth);
    if (pl->path == CONV_PATH_GEMM) return kernels_gemm_conv_part_positions(p, ith, nth);
    return conv2d_plan_part(pl, ith, nth);
}

void conv2d_plan_forward_part(const conv2d_plan *pl, const float *x, const float *in_scale,
                              const float *residual, float *y, float *scratch,
                              const kernels_part *part)
{
    const conv2d_params *p = &pl->p;
    assert(!in_scale || pl->in_scale);
    assert(!residual || conv2d_plan_fusable(pl) || pl->path == CONV_PATH_DW_PW);
    assert(pl->scratch_floats == 0 || scratch != NULL);
    assert(part->lo >= 0 && part->lo <= part->hi);
    if (part->lo == part->hi) return;
    switch (pl->path) {
    case CONV_PATH_DIRECT:
    case CONV_PATH_IM2COL:
        assert(part->axis == KERNELS_PART_CHANNELS && part->lo == 0 && part->hi == p->c_out);
        conv2d_forward(p, x, pl->w, pl->bias, y, scratch);
        break;
    case CONV_PATH_DEPTHWISE:
        if (part->axis == KERNELS_PART_POSITIONS) {
            assert(part->lo % p->w_out == 0 && part->hi % p->w_out == 0);
            dwconv2d_forward_rows(p, x, pl->w, pl->bias, y, part->lo / p->w_out, part->hi / p->w_out);
        } else {
            dwconv2d_forward_part(p, x, pl->w, pl->bias, y, part->lo, part->hi);
        }
        break;
    case CONV_PATH_STEM: kernels_stem_forward_part(p, x, pl->w, pl->bias, y, part); break;
    case CONV_PATH_WINOGRAD:
        kernels_wino_forward_part(p, x, pl->w, pl->bias, y, scratch, part);
        break;
    case CONV_PATH_GEMM:
        kernels_gemm_conv_forward_part(p, x, in_scale, pl->w, pl->bias, residual, y, scratch, part, pl->prefetch,
                                       pl->prefetch_bytes);
        break;
    case CONV_PATH_PW_DW:
        conv2d_pw_dw_forward_part(p, pl->w, pl->bias, &pl->dw, pl->dw_w, pl->dw_bias, x, y,
                                  scratch, part);
        break;
    case CONV_PATH_PW_DWCB:
        if (conv_pw_dwcb_avx2())
            kernels_pw_dwcb8_forward_part(p, pl->w, pl->bias, &pl->dw, pl->dw_w, pl->dw_bias, x, y, scratch, part);
        else
            conv2d_pw_dwcb_forward_part(p, pl->w, pl->bias, &pl->dw, pl->dw_w, pl->dw_bias, x, y, scratch, part);
        break;
    case CONV_PATH_DW_PW:
        conv2d_dw_pw_forward_part(p, pl->w, pl->bias, &pl->dw, pl->dw_w, pl->dw_bias, x, residual, y, scratch,
                                  part);
        break;
    }
}

/* ---- one-call entry points of the packed paths (each plans p anew) ---- */

size_t conv2d_packed_floats(const conv2d_params *p)
{
    conv2d_plan pl;
    conv2d_plan_init(&pl, p);
    return pl.packed_floats;
}

void conv2d_pack_weights(const conv2d_params *p, const float *w, float *packed)
{
    conv2d_plan pl;
    conv2d_plan_init(&pl, p);
    conv2d_plan_pack(&pl, w, packed);
}

size_t conv2d_packed_scratch_floats(const conv2d_params *p)
{
    conv2d_plan pl;
    conv2d_plan_init(&pl, p);
    return pl.scratch_floats;
}

int conv2d_packed_fusable(const conv2d_params *p)
{
    conv2d_plan pl;
    conv2d_plan_init(&pl, p);
    return conv2d_plan_fusable(&pl);
}

size_t conv2d_packed_fused_scratch_floats(const conv2d_params *p)
{
    return kernels_gemm_conv_fused_scratch_floats(p);
}

kernels_part conv2d_packed_part(const conv2d_params *p, int ith, int nth)
{
    conv2d_plan pl;
    conv2d_plan_init(&pl, p);
    assert(pl.packed_floats > 0);
    return conv2d_plan_part(&pl, ith, nth);
}

void conv2d_forward_packed_fused_part(const conv2d_params *p, const float *x,
                                      const float *in_scale, const float *packed,
                                      const float *bias, const float *residual, float *y,
                                      float *scratch, const kernels_part *part)
{
    conv2d_plan pl;
    conv2d_plan_init(&pl, p);
    assert(pl.packed_floats > 0);
    if (in_scale) conv2d_plan_fuse_scale(&pl);
    pl.w = packed;
    pl.bias = bias;
    conv2d_plan_forward_part(&pl, x, in_scale, residual, y, scratch, part);
}

void conv2d_forward_packed_fused(const conv2d_params *p, const float *x, const float *in_scale,
                                 const float *packed, const float *bias, const float *residual,
                                 float *y, float *scratch)
{
    const kernels_part all = {KERNELS_PART_CHANNELS, 0, p->c_out};
    conv2d_forward_packed_fused_part(p, x, in_scale, packed, bias, residual, y, scratch, &all);
}

void conv2d_forward_packed_part(const conv2d_params *p, const float *x, const float *packed,
                                const float *bias, float *y, float *scratch,
                                const kernels_part *part)
{
    conv2d_forward_packed_fused_part(p, x, NULL, packed, bias, NULL, y, scratch, part);
}

void conv2d_forward_packed(const conv2d_params *p, const float *x, const float *packed,
                           const float *bias, float *y, float *scratch)
{
    conv2d_forward_packed_fused(p, x, NULL, packed, bias, NULL, y, scratch);
}

/* ---- backward (training) ----
 * Non-depthwise convolutions run OpenBLAS per group: the data gradient is col = w_g^T . dy_g
 * (pointwise: straight into dx) scattered back by col2im; the weight gradient is
 * dw_g += dy_g . col^T with col the im2col of x (pointwise: x itself), one sgemm per block of
 * CONV_BWD_ROWS output channels so every dw row comes from the same call whatever the part.
 * Depthwise convolutions run kernels_dw.c's (the data gradient on its forward kernels). */

/* Output channels per weight-gradient sgemm (the thread parts' alignment): 64 measured 15-25 %
 * faster than 32 on ShuffleNetV2's pointwise layers (fewer repacks of x), 6 % on MobileNetV3. */
#define CONV_BWD_ROWS 64

size_t conv2d_backward_scratch_floats(const conv2d_params *p)
{
    if (kernels_conv_depthwise(p)) return dwconv2d_backward_scratch_floats(p);
    return conv2d_scratch_floats(p);
}

/* dst[i] += src[i], i < n (blocks of KERNELS_BLOCK: vectorizes). */
static void conv_add_row(float *restrict dst, const float *restrict src, int n)
{
    int i = 0;
    for (; i + KERNELS_BLOCK <= n; i += KERNELS_BLOCK)
        for (int j = 0; j < KERNELS_BLOCK; j++) dst[i + j] += src[i + j];
    for (; i < n; i++) dst[i] += src[i];
}

/* dx[ci][ih][iw] += col[(ci*k_h + i)*k_w + j][oh*w_out + ow] over the taps reaching (ih, iw),
 * the inverse scatter of conv_im2col, for the c channels starting at dx (zeroed by the caller).
 * Rows are added in col's order, so each dx cell sums its taps in a fixed order. */
static void conv_col2im(const conv2d_params *p, const float *col, int c, float *dx)
{
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    const size_t hw_out = (size_t)p->h_out * (size_t)p->w_out;
    const int w_out = p->w_out, sw = p->stride_w;
    for (int ci = 0; ci < c; ci++) {
        float *dxc = dx + (size_t)ci * hw_in;
        for (int i = 0; i < p->k_h; i++) {
            for (int j = 0; j < p->k_w; j++) {
                const float *row =
                    col + ((size_t)(ci * p->k_h + i) * (size_t)p->k_w + (size_t)j) * hw_out;
                const int off = j - p->pad_l;
                int lo, hi;
                kernels_tap_range(off, sw, p->w_in, w_out, &lo, &hi);
                if (hi == lo) continue;
                for (int oh = 0; oh < p->h_out; oh++) {
                    const int ih = oh * p->stride_h - p->pad_t + i;
                    if (ih < 0 || ih >= p->h_in) continue;
                    const float *src = row + (size_t)oh * (size_t)w_out;
                    float *dxrow = dxc + (size_t)ih * (size_t)p->w_in + off;
                    if (sw == 1) {
                        conv_add_row(dxrow + lo, src + lo, hi - lo);
                    } else {
                        for (int ow = lo; ow < hi; ow++) dxrow[ow * sw] += src[ow];
                    }
                }
            }
        }
    }
}

void conv2d_backward_data(const conv2d_params *p, const float *dy, const float *w, float *dx,
                          float *scratch)
{
    conv_check_params(p);
    assert(p->act == ACT_NONE);
    if (kernels_conv_depthwise(p)) {
        dwconv2d_backward_data(p, dy, w, dx, scratch);
        return;
    }
    const int direct = kernels_conv_pointwise(p);
    assert(direct || scratch != NULL);
    const int cig = p->c_in / p->groups, cog = p->c_out / p->groups;
    const int k = cig * p->k_h * p->k_w;
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    const size_t hw_out = (size_t)p->h_out * (size_t)p->w_out;
    for (int g = 0; g < p->groups; g++) {
        const float *wg = w + (size_t)g * (size_t)cog * (size_t)k;
        const float *dyg = dy + (size_t)g * (size_t)cog * hw_out;
        float *dxg = dx + (size_t)g * (size_t)cig * hw_in;
        float *col = direct ? dxg : scratch;
        /* col[k][hw_out] = w_g^T[k][cog] . dy_g[cog][hw_out] */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, (int)hw_out, cog, 1.0f, wg, k, dyg,
                    (int)hw_out, 0.0f, col, (int)hw_out);
        if (direct) continue;
        memset(dxg, 0, (size_t)cig * hw_in * sizeof *dxg);
        conv_col2im(p, col, cig, dxg);
    }
}

int conv2d_backward_data_plan_init(conv2d_plan *pl, const conv2d_params *p)
{
    conv_check_params(p);
    if (p->groups != 1 || kernels_conv_depthwise(p) || p->stride_h != 1 || p->stride_w != 1 ||
        p->act != ACT_NONE)
        return 0;
    conv2d_params q = *p;
    q.c_in = p->c_out, q.c_out = p->c_in;
    q.h_in = p->h_out, q.w_in = p->w_out, q.h_out = p->h_in, q.w_out = p->w_in;
    q.pad_t = p->k_h - 1 - p->pad_t, q.pad_l = p->k_w - 1 - p->pad_l;
    q.pad_b = p->h_in + p->pad_t - p->h_out, q.pad_r = p->w_in + p->pad_l - p->w_out;
    if (q.pad_t < 0 || q.pad_l < 0 || q.pad_b < 0 || q.pad_r < 0) return 0;
    conv2d_plan_init(pl, &q);
    return pl->packed_floats > 0; /* no AVX2: the OpenBLAS paths, no faster than col2im */
}

void conv2d_backward_data_plan_pack(const conv2d_plan *pl, const float *w, float *wt, float *packed)
{
    const conv2d_params *q = &pl->p; /* q->c_in = p's c_out, q->c_out = p's c_in */
    const size_t kk = (size_t)q->k_h * (size_t)q->k_w;
    for (int co = 0; co < q->c_in; co++)
        for (int ci = 0; ci < q->c_out; ci++) {
            const float *src = w + ((size_t)co * (size_t)q->c_out + (size_t)ci) * kk;
            float *dst = wt + ((size_t)ci * (size_t)q->c_in + (size_t)co) * kk;
            for (size_t t = 0; t < kk; t++) dst[t] = src[kk - 1 - t];
        }
    conv2d_plan_pack(pl, wt, packed);
}

/* One group (not depthwise): the weight gradient in blocks of CONV_BWD_COLS columns of dw (taps
 * (ci, i, j)), each one sgemm over all output channels: x's im2col rows are packed once per image
 * instead of once per block of output channels (AlexNet's conv3: 6 times), and dy once per block. */
#define CONV_BWD_COLS 256

static int conv_bwd_by_cols(const conv2d_params *p) { return p->groups == 1 && !kernels_conv_depthwise(p); }

/* Weight-gradient parts: one group: blocks of CONV_BWD_COLS columns (KERNELS_PART_POSITIONS
 * over c_in*k_h*k_w). Else blocks of CONV_BWD_ROWS channels inside each group; with several
 * groups whose size is not a multiple of the block, whole groups. Depthwise: any channel range. */
static int conv_bwd_weights_align(const conv2d_params *p)
{
    if (kernels_conv_depthwise(p)) return 1;
    const int cog = p->c_out / p->groups;
    return p->groups == 1 || cog % CONV_BWD_ROWS == 0 ? CONV_BWD_ROWS : cog;
}

kernels_part conv2d_backward_weights_split(const conv2d_params *p, int ith, int nth)
{
    if (conv_bwd_by_cols(p))
        return kernels_part_split(KERNELS_PART_POSITIONS, p->c_in * p->k_h * p->k_w, CONV_BWD_COLS, ith, nth);
    return kernels_part_split(KERNELS_PART_CHANNELS, p->c_out, conv_bwd_weights_align(p), ith, nth);
}

void conv2d_backward_weights_part(const conv2d_params *p, const float *x, const float *dy,
                                  float *dw, float *db, float *scratch, const kernels_part *part)
{
    conv_check_params(p);
    const size_t hw_out = (size_t)p->h_out * (size_t)p->w_out;
    if (conv_bwd_by_cols(p)) { /* columns [lo, hi) of dw; db with the part that starts at 0 */
        const int k = p->c_in * p->k_h * p->k_w;
        assert(p->act == ACT_NONE && part->axis == KERNELS_PART_POSITIONS);
        assert(0 <= part->lo && part->lo <= part->hi && part->hi <= k && part->lo % CONV_BWD_COLS == 0);
        if (part->lo == part->hi) return;
        if (db && part->lo == 0)
            for (int co = 0; co < p->c_out; co++)
                db[co] += (float)kernels_sum_floats(dy + (size_t)co * hw_out, hw_out);
        const int direct = kernels_conv_pointwise(p);
        assert(direct || scratch != NULL);
        for (int b0 = part->lo; b0 < part->hi; b0 += CONV_BWD_COLS) {
            const int cols = kernels_imin(CONV_BWD_COLS, k - b0);
            const float *col = x + (size_t)b0 * hw_out; /* pointwise: x's rows are col's */
            if (!direct) {
                conv_im2col_rows(p, x, b0, b0 + cols, scratch);
                col = scratch;
            }
            /* dw[:, b0 .. b0 + cols) += dy[c_out][hw_out] . col^T[hw_out][cols] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p->c_out, cols, (int)hw_out, 1.0f, dy,
                        (int)hw_out, col, (int)hw_out, 1.0f, dw + b0, k);
        }
        return;
    }
    assert(p->act == ACT_NONE && part->axis == KERNELS_PART_CHANNELS);
    assert(0 <= part->lo && part->lo <= part->hi && part->hi <= p->c_out);
    if (part->lo == part->hi) return;
    if (db) {
        for (int co = part->lo; co < part->hi; co++)
            db[co] += (float)kernels_sum_floats(dy + (size_t)co * hw_out, hw_out);
    }
    if (kernels_conv_depthwise(p)) {
        dwconv2d_backward_weights(p, x, dy, dw, part->lo, part->hi, scratch);
        return;
    }
    const int direct = kernels_conv_pointwise(p);
    assert(direct || scratch != NULL);
    const int cig = p->c_in / p->groups, cog = p->c_out / p->groups;
    const int k = cig * p->k_h * p->k_w;
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    for (int g = part->lo / cog; g < p->groups && g * cog < part->hi; g++) {
        const int r0 = kernels_imax(part->lo - g * cog, 0);
        const int r1 = kernels_imin(part->hi - g * cog, cog);
        const float *xg = x + (size_t)g * (size_t)cig * hw_in;
        const float *col = xg;
        if (!direct) {
            conv_im2col(p, xg, cig, scratch);
            col = scratch;
        }
        /* dw_g[r][k] += dy_g[r][hw_out] . col^T[hw_out][k], per block of rows */
        for (int b0 = r0 / CONV_BWD_ROWS * CONV_BWD_ROWS; b0 < r1; b0 += CONV_BWD_ROWS) {
            assert(b0 >= r0);
            const int rows = kernels_imin(CONV_BWD_ROWS, cog - b0);
            const size_t co = (size_t)g * (size_t)cog + (size_t)b0;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, k, (int)hw_out, 1.0f,
                        dy + co * hw_out, (int)hw_out, col, (int)hw_out, 1.0f,
                        dw + co * (size_t)k, k);
        }
    }
}

void conv2d_backward_weights(const conv2d_params *p, const float *x, const float *dy, float *dw,
                             float *db, float *scratch)
{
    const kernels_part all = conv2d_backward_weights_split(p, 0, 1);
    conv2d_backward_weights_part(p, x, dy, dw, db, scratch, &all);
}

void conv2d_backward_weights_zero(const conv2d_params *p, float *dw, float *db, const kernels_part *part)
{
    const size_t per_out = (size_t)(p->c_in / p->groups) * (size_t)p->k_h * (size_t)p->k_w;
    if (part->axis == KERNELS_PART_POSITIONS) {
        for (int co = 0; co < p->c_out; co++)
            memset(dw + (size_t)co * per_out + part->lo, 0, (size_t)(part->hi - part->lo) * sizeof *dw);
        if (db && part->lo == 0 && part->hi > 0) memset(db, 0, (size_t)p->c_out * sizeof *db);
        return;
    }
    memset(dw + (size_t)part->lo * per_out, 0, (size_t)(part->hi - part->lo) * per_out * sizeof *dw);
    if (db) memset(db + part->lo, 0, (size_t)(part->hi - part->lo) * sizeof *db);
}
