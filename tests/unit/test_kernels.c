/* Unit tests of core/kernels*.c against naive reference implementations (plain loops, double
 * accumulation). Outputs and scratch are NaN-poisoned before each call so unwritten cells fail, and
 * buffers are allocated with their exact sizes so ASan catches out-of-bounds accesses. */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/kernels.h"
#include "../../core/kernels_internal.h"
#include "../test.h"

/* Relative tolerance, applied to the sum of |terms| of each output. */
#define TOL_REL 1e-4
#define TOL_ABS 1e-6
/* Failing cases printed per test case (the rest are only counted). */
#define MAX_REPORTS 5

static const char *const act_names[] = {"none", "relu", "relu6", "hswish", "hsigmoid"};

/* ---- helpers ---- */

typedef struct {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    /* splitmix64 */
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static float rng_uniform(rng *r) { return (float)((double)(rng_next(r) >> 11) * 0x1p-52 - 1.0); }

static float *alloc_floats(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* n values uniform in [-scale, scale] (the same draws for every scale). */
static float *alloc_random_scaled(size_t n, rng *r, float scale)
{
    float *p = alloc_floats(n);
    for (size_t i = 0; i < n; i++) p[i] = scale * rng_uniform(r);
    return p;
}

static float *alloc_random(size_t n, rng *r) { return alloc_random_scaled(n, r, 1.0f); }

static float *alloc_nan(size_t n)
{
    float *p = alloc_floats(n);
    for (size_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

static double *alloc_doubles(size_t n)
{
    double *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static double ref_act(act_kind act, double v)
{
    double r;
    switch (act) {
    case ACT_RELU: return v > 0 ? v : 0;
    case ACT_RELU6: return v < 0 ? 0 : v > 6 ? 6 : v;
    case ACT_HSWISH: r = v + 3; r = r < 0 ? 0 : r > 6 ? 6 : r; return v * r / 6;
    case ACT_HSIGMOID: r = v + 3; r = r < 0 ? 0 : r > 6 ? 6 : r; return r / 6;
    case ACT_NONE: break;
    }
    return v;
}

/* First index where got differs from want by more than TOL_REL * mag + TOL_ABS (NaN always
 * differs), or -1. */
static long first_bad(const float *got, const double *want, const double *mag, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double tol = TOL_REL * (mag ? mag[i] : fabs(want[i])) + TOL_ABS;
        if (!(fabs((double)got[i] - want[i]) <= tol)) return (long)i;
    }
    return -1;
}

/* ---- convolution ---- */

/* y = act(conv(x) + bias), and mag = |bias| + sum |x*w| for the tolerance. */
static void ref_conv(const conv2d_params *p, const float *x, const float *w, const float *bias,
                     double *y, double *mag)
{
    const int cig = p->c_in / p->groups, cog = p->c_out / p->groups;
    for (int co = 0; co < p->c_out; co++) {
        const int g = co / cog;
        for (int oh = 0; oh < p->h_out; oh++) {
            for (int ow = 0; ow < p->w_out; ow++) {
                double s = bias ? bias[co] : 0.0, m = fabs(s);
                for (int ci = 0; ci < cig; ci++) {
                    const int cin = g * cig + ci;
                    for (int i = 0; i < p->k_h; i++) {
                        const int ih = oh * p->stride_h - p->pad_t + i;
                        if (ih < 0 || ih >= p->h_in) continue;
                        for (int j = 0; j < p->k_w; j++) {
                            const int iw = ow * p->stride_w - p->pad_l + j;
                            if (iw < 0 || iw >= p->w_in) continue;
                            double t = (double)x[((size_t)cin * p->h_in + ih) * p->w_in + iw] *
                                       w[(((size_t)co * cig + ci) * p->k_h + i) * p->k_w + j];
                            s += t;
                            m += fabs(t);
                        }
                    }
                }
                size_t o = ((size_t)co * p->h_out + oh) * p->w_out + ow;
                y[o] = ref_act(p->act, s);
                /* hswish amplifies errors of large pre-activations by up to ~|s|/3 */
                mag[o] = m * (p->act == ACT_HSWISH ? 1.0 + fabs(s) / 3.0 : 1.0);
            }
        }
    }
}

typedef enum {
    CONV_VIA_DISPATCH = 0,
    CONV_VIA_DW_GENERIC,
    CONV_VIA_DW_AVX2,
    CONV_VIA_DW_AVX512,
    CONV_VIA_PACKED /* conv2d_pack_weights + conv2d_forward_packed */
} conv_via;
static const char *const via_names[] = {"conv2d_forward", "dw generic", "dw avx2", "dw avx512",
                                        "packed"};

typedef struct {
    int n_cases, n_failed;
} sweep_stats;

static void conv_describe(const conv2d_params *p, int with_bias, conv_via via, char *buf,
                          size_t buf_bytes)
{
    snprintf(buf, buf_bytes,
             "%s: in %dx%dx%d out %dx%dx%d k %dx%d s %d/%d pad t%d l%d b%d r%d groups %d act %s "
             "bias %d",
             via_names[via], p->c_in, p->h_in, p->w_in, p->c_out, p->h_out, p->w_out, p->k_h,
             p->k_w, p->stride_h, p->stride_w, p->pad_t, p->pad_l, p->pad_b, p->pad_r, p->groups,
             act_names[p->act], with_bias);
}

#define CONV_GUARD 64

/* Runs one convolution and compares with the reference; reports the first bad index. */
static void conv_case(const conv2d_params *p, int with_bias, conv_via via, rng *r, sweep_stats *st)
{
    const size_t n_x = (size_t)p->c_in * p->h_in * p->w_in;
    const size_t n_w = (size_t)p->c_out * (p->c_in / p->groups) * p->k_h * p->k_w;
    const size_t n_y = (size_t)p->c_out * p->h_out * p->w_out;
    const size_t n_scratch =
        via == CONV_VIA_PACKED ? conv2d_packed_scratch_floats(p) : conv2d_scratch_floats(p);
    /* x in [-4, 4]: outputs cross ReLU6's 6 and hard-swish's 3 */
    float *x = alloc_random_scaled(n_x, r, 4.0f), *w = alloc_random(n_w, r);
    float *bias = with_bias ? alloc_random((size_t)p->c_out, r) : NULL;
    float *x_copy = alloc_floats(n_x);
    memcpy(x_copy, x, n_x * sizeof *x);
    /* CONV_GUARD cells before and after the output hold a NaN of bits no kernel writes: a kernel
     * writing past the map fails (even a NaN it computed from unset memory) */
    float *y_buf = alloc_nan(n_y + 2 * CONV_GUARD), *y = y_buf + CONV_GUARD;
    const uint32_t guard_bits = 0x7fa5a5a5u;
    for (size_t i = 0; i < CONV_GUARD; i++) {
        memcpy(&y_buf[i], &guard_bits, sizeof guard_bits);
        memcpy(&y[n_y + i], &guard_bits, sizeof guard_bits);
    }
    float *scratch = n_scratch ? alloc_nan(n_scratch) : NULL;
    float *packed = NULL;
    double *want = alloc_doubles(n_y), *mag = alloc_doubles(n_y);

    switch (via) {
    case CONV_VIA_DISPATCH: conv2d_forward(p, x, w, bias, y, scratch); break;
    case CONV_VIA_DW_GENERIC: dwconv2d_forward_isa(p, x, w, bias, y, CPU_ISA_GENERIC); break;
    case CONV_VIA_DW_AVX2: dwconv2d_forward_isa(p, x, w, bias, y, CPU_ISA_AVX2); break;
    case CONV_VIA_DW_AVX512: dwconv2d_forward_isa(p, x, w, bias, y, CPU_ISA_AVX512); break;
    case CONV_VIA_PACKED:
        /* NaN poison: every packed float must be written by the packer */
        packed = alloc_nan(conv2d_packed_floats(p));
        conv2d_pack_weights(p, w, packed);
        conv2d_forward_packed(p, x, packed, bias, y, scratch);
        break;
    }
    ref_conv(p, x, w, bias, want, mag);
    long bad = first_bad(y, want, mag, n_y);
    int x_changed = memcmp(x, x_copy, n_x * sizeof *x) != 0, guard_written = 0;
    for (size_t i = 0; i < CONV_GUARD; i++)
        guard_written |= memcmp(&y_buf[i], &guard_bits, sizeof guard_bits) != 0 ||
                         memcmp(&y[n_y + i], &guard_bits, sizeof guard_bits) != 0;
    st->n_cases++;
    if (bad >= 0 || x_changed || guard_written) {
        if (st->n_failed++ < MAX_REPORTS) {
            char desc[256];
            conv_describe(p, with_bias, via, desc, sizeof desc);
            if (x_changed) T_CHECK(0, "%s: input modified", desc);
            if (guard_written) T_CHECK(0, "%s: wrote outside the output", desc);
            if (bad >= 0) {
                const size_t hw = (size_t)p->h_out * p->w_out;
                T_CHECK(0, "%s: first bad index %ld (c %ld, h %ld, w %ld): got %.9g want %.9g",
                        desc, bad, bad / (long)hw, (bad % (long)hw) / p->w_out,
                        bad % (long)p->w_out, (double)y[bad], want[bad]);
            }
        } else {
            test_g.case_failed = 1;
        }
    }
    free(x);
    free(w);
    free(bias);
    free(x_copy);
    free(y_buf);
    free(scratch);
    free(packed);
    free(want);
    free(mag);
}

static void sweep_report(const sweep_stats *st)
{
    if (st->n_failed) printf("#   %d of %d convolutions failed\n", st->n_failed, st->n_cases);
    T_CHECK(st->n_cases > 0, "no convolution ran");
}

typedef enum { PAD_NONE = 0, PAD_SYM, PAD_TF_SAME, PAD_ASYM, N_PAD_MODES } pad_mode;

/* Fills pads and output size of one dimension; returns 0 when no output fits. PAD_ASYM differs
 * between the dimensions (is_w). */
static int conv_dim(pad_mode mode, int is_w, int n, int k, int s, int *pad_before, int *pad_after,
                    int *out)
{
    switch (mode) {
    case PAD_NONE: *pad_before = *pad_after = 0; break;
    case PAD_SYM: *pad_before = *pad_after = k / 2; break;
    case PAD_TF_SAME: kernels_tf_same(n, k, s, out, pad_before, pad_after); return *out > 0;
    case PAD_ASYM:
        /* rows: lopsided, and the trailing row is entirely padding; columns: leading only */
        *pad_before = is_w ? k / 2 : k - 1;
        *pad_after = is_w ? 0 : 1;
        break;
    case N_PAD_MODES: break;
    }
    *out = kernels_out_size(n, k, s, *pad_before, *pad_after, 0);
    return *out > 0;
}

/* Geometry of a conv; returns 0 when the sizes leave no output. */
static int conv_setup(conv2d_params *p, int c_in, int c_out, int groups, int h, int w, int k_h,
                      int k_w, int s_h, int s_w, pad_mode mode, act_kind act)
{
    memset(p, 0, sizeof *p);
    p->c_in = c_in;
    p->c_out = c_out;
    p->groups = groups;
    p->h_in = h;
    p->w_in = w;
    p->k_h = k_h;
    p->k_w = k_w;
    p->stride_h = s_h;
    p->stride_w = s_w;
    p->act = act;
    return conv_dim(mode, 0, h, k_h, s_h, &p->pad_t, &p->pad_b, &p->h_out) &&
           conv_dim(mode, 1, w, k_w, s_w, &p->pad_l, &p->pad_r, &p->w_out);
}

static const int sweep_k[] = {1, 3, 5, 7, 11};
static const int sweep_s[] = {1, 2, 4};
static const int sweep_hw[][2] = {{13, 11}, {7, 9}, {1, 1}};

static void conv_sweep_groups1(conv_via via, sweep_stats *st)
{
    static const int chans[][2] = {{3, 5}, {17, 24}, {5, 3}};
    rng r = {1};
    int idx = 0;
    for (size_t ki = 0; ki < sizeof sweep_k / sizeof *sweep_k; ki++)
        for (size_t si = 0; si < sizeof sweep_s / sizeof *sweep_s; si++)
            for (int mode = 0; mode < N_PAD_MODES; mode++)
                for (size_t hi = 0; hi < sizeof sweep_hw / sizeof *sweep_hw; hi++, idx++) {
                    conv2d_params p;
                    const int *ch = chans[idx % 3];
                    if (!conv_setup(&p, ch[0], ch[1], 1, sweep_hw[hi][0], sweep_hw[hi][1],
                                    sweep_k[ki], sweep_k[ki], sweep_s[si], sweep_s[si],
                                    (pad_mode)mode, (act_kind)(idx % 5)))
                        continue;
                    conv_case(&p, idx % 4 != 3, via, &r, st);
                }
}

static void conv_rect_and_large(conv_via via, sweep_stats *st)
{
    /* {c_in, c_out, h, w, k_h, k_w, s_h, s_w, pad mode} */
    static const int cases[][9] = {
        {17, 24, 13, 11, 1, 7, 1, 1, PAD_SYM},    {17, 24, 13, 11, 7, 1, 1, 1, PAD_SYM},
        {5, 3, 9, 7, 3, 5, 2, 1, PAD_TF_SAME},    {5, 3, 9, 7, 5, 3, 1, 2, PAD_ASYM},
        {32, 40, 20, 20, 3, 3, 1, 1, PAD_SYM},    {64, 24, 14, 14, 1, 1, 1, 1, PAD_NONE},
        {3, 16, 31, 31, 3, 3, 2, 2, PAD_TF_SAME}, {3, 8, 63, 63, 11, 11, 4, 4, PAD_SYM},
        {24, 17, 15, 15, 1, 1, 2, 2, PAD_NONE},   {24, 17, 6, 6, 1, 1, 1, 1, PAD_SYM},
    };
    rng r = {2};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const int *c = cases[i];
        conv2d_params p;
        const int has_output = conv_setup(&p, c[0], c[1], 1, c[2], c[3], c[4], c[5], c[6], c[7],
                                          (pad_mode)c[8], (act_kind)(i % 5));
        T_CHECK(has_output, "case %zu has no output", i);
        if (has_output) conv_case(&p, i % 3 != 2, via, &r, st);
    }
}

static void conv_sweep_grouped(conv_via via, sweep_stats *st)
{
    /* {c_in, c_out, groups}: plain groups and a channel multiplier (groups == c_in != c_out) */
    static const int cfg[][3] = {{4, 6, 2}, {10, 8, 2}, {9, 6, 3}, {15, 3, 3}, {3, 9, 3}};
    static const int ks[] = {1, 3, 5};
    static const int ss[] = {1, 2};
    rng r = {3};
    int idx = 0;
    for (size_t ci = 0; ci < sizeof cfg / sizeof *cfg; ci++)
        for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++)
            for (size_t si = 0; si < sizeof ss / sizeof *ss; si++)
                for (int mode = 0; mode < N_PAD_MODES; mode++, idx++) {
                    conv2d_params p;
                    const int *hw = sweep_hw[idx % 3];
                    if (!conv_setup(&p, cfg[ci][0], cfg[ci][1], cfg[ci][2], hw[0], hw[1], ks[ki],
                                    ks[ki], ss[si], ss[si], (pad_mode)mode, (act_kind)(idx % 5)))
                        continue;
                    conv_case(&p, idx % 4 != 1, via, &r, st);
                }
}

/* Shapes at the packed GEMM's blocking edges: output tiles of every width 1..GEMM_NR+ and
 * every channel remainder, several K blocks (K > 128), several column blocks (> 1024 outputs),
 * 1x1 convs (read in place), rows contiguous (k x 1, no horizontal padding), strides 2 and 3
 * with padding. */
static void conv_packed_edges(conv_via via, sweep_stats *st)
{
    /* {c_in, c_out, h, w, k_h, k_w, stride, pad mode} */
    static const int cases[][8] = {
        {5, 7, 1, 1, 1, 1, 1, PAD_NONE},     {4, 13, 1, 17, 1, 1, 1, PAD_NONE},
        {3, 6, 4, 8, 1, 1, 1, PAD_NONE},     {2, 11, 5, 13, 1, 1, 1, PAD_NONE},
        {6, 5, 7, 7, 1, 1, 1, PAD_NONE},     {7, 12, 8, 8, 3, 3, 1, PAD_SYM},
        {9, 1, 9, 9, 1, 1, 1, PAD_NONE},     {300, 20, 9, 9, 1, 1, 1, PAD_NONE},
        {300, 50, 9, 9, 1, 1, 1, PAD_NONE},  {70, 49, 6, 7, 3, 3, 1, PAD_SYM},
        {8, 30, 41, 40, 1, 1, 1, PAD_NONE},  {8, 60, 41, 40, 1, 1, 1, PAD_NONE},
        {4, 14, 37, 33, 3, 3, 1, PAD_SYM},   {6, 9, 17, 17, 7, 1, 1, PAD_SYM},
        {6, 9, 17, 17, 1, 7, 1, PAD_SYM},    {3, 16, 45, 45, 3, 3, 2, PAD_TF_SAME},
        {5, 8, 29, 31, 5, 5, 2, PAD_ASYM},   {4, 10, 23, 19, 3, 3, 3, PAD_SYM},
        {3, 7, 47, 47, 11, 11, 4, PAD_SYM},  {130, 19, 5, 6, 3, 3, 1, PAD_SYM},
        {1, 64, 64, 64, 1, 1, 1, PAD_NONE},  {48, 6, 3, 70, 1, 3, 1, PAD_SYM},
        /* 3x3 stride 1 with >= 40 output tiles of 2x2 (Winograd): odd sizes, tile rows wider
         * than a vector, K blocks, several tile-row blocks, every padding mode */
        {3, 5, 29, 40, 3, 3, 1, PAD_NONE},   {150, 13, 17, 17, 3, 3, 1, PAD_SYM},
        {8, 7, 70, 70, 3, 3, 1, PAD_ASYM},   {6, 8, 23, 36, 3, 3, 1, PAD_TF_SAME},
        {40, 30, 50, 50, 3, 3, 1, PAD_SYM},  {2, 1, 16, 15, 3, 3, 1, PAD_SYM},
        /* ... rows of two vectors of tiles (the first full), K blocks, several tile-row blocks */
        {4, 6, 100, 100, 3, 3, 1, PAD_NONE}, {140, 8, 40, 80, 3, 3, 1, PAD_ASYM},
        {5, 7, 61, 101, 3, 3, 1, PAD_SYM},   {3, 5, 200, 73, 3, 3, 1, PAD_TF_SAME},
        /* 5x5 stride 1 with >= 40 tiles of 4x4 (Winograd F(4x4, 5x5)) or else of 2x2
         * (F(2x2, 5x5)): odd sizes, several tile-row blocks, K blocks, every padding mode */
        {48, 64, 35, 35, 5, 5, 1, PAD_SYM},  {3, 7, 27, 27, 5, 5, 1, PAD_SYM},
        {140, 9, 19, 20, 5, 5, 1, PAD_ASYM}, {5, 6, 30, 33, 5, 5, 1, PAD_TF_SAME},
        {4, 5, 25, 26, 5, 5, 1, PAD_NONE},   {6, 10, 70, 61, 5, 5, 1, PAD_SYM},
        {150, 9, 30, 31, 5, 5, 1, PAD_ASYM}, {2, 13, 21, 40, 5, 5, 1, PAD_NONE},
        /* 1x7 / 7x1 with >= 40 tiles of 1x6 / 6x1 (1-D Winograd F(6, 7) along rows, 1x7 on the
         * transposed maps), else of 1x2 / 2x1 (F(2, 7)): odd and non-square sizes, several
         * tile-row blocks, K blocks, every padding mode */
        {20, 30, 17, 17, 1, 7, 1, PAD_SYM},  {20, 30, 17, 17, 7, 1, 1, PAD_SYM},
        {150, 7, 9, 23, 1, 7, 1, PAD_SYM},   {5, 9, 31, 6, 7, 1, 1, PAD_TF_SAME},
        {3, 4, 12, 40, 1, 7, 1, PAD_NONE},   {4, 4, 40, 12, 7, 1, 1, PAD_ASYM},
        {150, 13, 23, 29, 1, 7, 1, PAD_ASYM}, {7, 9, 61, 19, 1, 7, 1, PAD_TF_SAME},
        {5, 6, 20, 200, 1, 7, 1, PAD_SYM},   {6, 7, 100, 30, 7, 1, 1, PAD_SYM},
        {140, 10, 25, 18, 7, 1, 1, PAD_NONE}, {3, 5, 44, 17, 7, 1, 1, PAD_TF_SAME},
        {9, 8, 19, 44, 1, 7, 1, PAD_NONE},
        /* ... tile rows of exactly 16 tiles, and 16 lanes across two tile rows with a zero column
         * past the input (transposed 1x7, PAD_ASYM) and several tile-row blocks (wino_flat) */
        {4, 6, 16, 16, 7, 1, 1, PAD_SYM},    {5, 7, 16, 33, 1, 7, 1, PAD_ASYM},
        {130, 9, 70, 21, 7, 1, 1, PAD_SYM},  {6, 5, 27, 66, 1, 7, 1, PAD_ASYM},
        /* k x 1 below the Winograd threshold: im2col rows contiguous in the padded input */
        {5, 6, 6, 5, 7, 1, 1, PAD_SYM},      {130, 13, 9, 4, 3, 1, 1, PAD_SYM},
        /* first-layer (stem) kernel: 3x3 stride 2 on 1..4 channels, every output-channel count
         * remainder, one and several passes of 16, rows of one vector, several, and a tail */
        {3, 16, 224, 224, 3, 3, 2, PAD_SYM}, {3, 24, 39, 37, 3, 3, 2, PAD_SYM},
        {3, 32, 45, 47, 3, 3, 2, PAD_NONE},  {1, 5, 9, 33, 3, 3, 2, PAD_TF_SAME},
        {4, 64, 19, 21, 3, 3, 2, PAD_ASYM},  {2, 17, 4, 5, 3, 3, 2, PAD_SYM},
        {3, 65, 11, 11, 3, 3, 2, PAD_SYM},
        /* tiles of 16 * nv + 1 columns (last column transposed): 17 / 33 / 49 positions,
         * in place and packed (im2col) B, one and several K blocks, partial row panels */
        {9, 7, 1, 17, 1, 1, 1, PAD_NONE},    {150, 11, 3, 11, 1, 1, 1, PAD_NONE},
        {140, 8, 7, 7, 1, 1, 1, PAD_NONE},   {10, 8, 7, 7, 3, 3, 1, PAD_SYM},
        {5, 7, 13, 13, 3, 3, 2, PAD_SYM},    {70, 13, 13, 13, 5, 5, 2, PAD_SYM},
        /* ... and 50 / 51 positions (the last 2 / 3 columns transposed; 17x17 F(6, 7)'s blocks) */
        {9, 7, 3, 17, 1, 1, 1, PAD_NONE},    {150, 13, 17, 3, 1, 1, 1, PAD_NONE},
        {140, 11, 5, 10, 1, 1, 1, PAD_NONE}, {10, 8, 3, 17, 3, 3, 1, PAD_SYM},
        {6, 5, 10, 5, 3, 3, 1, PAD_SYM},
        /* ... packed B of 49 / 51 positions on AVX2 CPUs too, whose Winograd takes the 3x3 above
         * (1x3 below its Winograd threshold) */
        {10, 8, 7, 7, 1, 3, 1, PAD_SYM},     {10, 8, 3, 17, 1, 3, 1, PAD_SYM},
        /* in-place B tiled in 49 columns (196 = 4 x 49, 392 = 8 x 49) instead of 64 + a short
         * tail; 245 = 3 x 64 + 53 keeps 64 */
        {9, 7, 14, 14, 1, 1, 1, PAD_NONE},   {150, 13, 14, 14, 1, 1, 1, PAD_NONE},
        {20, 11, 7, 28, 1, 1, 1, PAD_NONE},  {140, 8, 14, 28, 1, 1, 1, PAD_NONE},
        {6, 5, 5, 49, 1, 1, 1, PAD_NONE},
        /* strided kernels spanning 2..3 strides with >= 40 Winograd tiles: their polyphase form
         * (s*s*c_in planes, 3x3, F(4x4) or F(2x2)); strides 2, 3, 4, square and rectangular
         * kernels, odd sizes, several tile-row blocks, output-channel remainders, every padding
         * mode; AlexNet's first layer */
        {3, 64, 224, 224, 11, 11, 4, PAD_SYM}, {3, 13, 111, 109, 11, 11, 4, PAD_SYM},
        {2, 7, 61, 67, 5, 5, 2, PAD_TF_SAME},  {5, 9, 50, 47, 6, 6, 2, PAD_ASYM},
        {4, 13, 70, 66, 8, 8, 3, PAD_NONE},    {1, 5, 77, 80, 7, 7, 3, PAD_SYM},
        {3, 6, 150, 140, 12, 12, 4, PAD_TF_SAME}, {6, 8, 40, 45, 9, 9, 3, PAD_ASYM},
        {2, 7, 61, 67, 5, 6, 2, PAD_SYM},      {3, 5, 90, 93, 12, 9, 4, PAD_ASYM},
        {7, 11, 29, 30, 10, 11, 4, PAD_NONE},
    };
    rng r = {14};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const int *c = cases[i];
        conv2d_params p;
        const int has_output = conv_setup(&p, c[0], c[1], 1, c[2], c[3], c[4], c[5], c[6], c[6],
                                          (pad_mode)c[7], (act_kind)(i % 5));
        T_CHECK(has_output, "case %zu has no output", i);
        if (has_output) conv_case(&p, i % 4 != 1, via, &r, st);
    }
}

/* The path conv2d_plan_init gives p on this CPU. */
static conv_path conv_planned_path(const conv2d_params *p)
{
    conv2d_plan pl;
    conv2d_plan_init(&pl, p);
    return pl.path;
}

/* The path of a shape that takes want512 with AVX-512F and generic without AVX2, on this CPU: AVX2
 * has every packed path AVX-512F has (GEMM, stem, Winograd) and depthwise. */
static conv_path conv_path_on_cpu(conv_path want512, conv_path generic)
{
    return cpu_isa_best() >= CPU_ISA_AVX2 ? want512 : generic;
}

/* conv2d_forward_packed_fused: y = act(conv(x * in_scale) + bias + residual) on pointwise convs,
 * with K blocks (the scaled weights' k-blocked layout, 8-k steps with a tail), column blocking,
 * groups; every combination of scale / residual, every activation. */
static void test_conv_packed_fused(void)
{
    /* {c_in, c_out, h, w, groups} */
    /* scaled weights (output channels <= positions) and scaled packed input (more channels) */
    static const int cases[][5] = {{16, 40, 14, 14, 1}, {120, 112, 14, 14, 1}, {200, 80, 9, 7, 1},
                                   {8, 60, 41, 40, 1},  {12, 18, 5, 5, 3},     {7, 1, 3, 3, 1},
                                   {30, 50, 5, 5, 1},   {12, 24, 2, 3, 2},
                                   /* 49 / 17 positions: the transposed last column */
                                   {300, 20, 7, 7, 1},  {40, 13, 1, 17, 1},
                                   /* scaled weights, K blocks not a multiple of 4 k (AVX2 scales 4 at a time) */
                                   {130, 20, 14, 14, 1}, {11, 7, 4, 4, 1}};
    test_begin();
    rng r = {15};
    int idx = 0, n_failed = 0, n_cases = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++)
        for (int with_scale = 0; with_scale < 2; with_scale++)
            for (int with_res = 0; with_res < 2; with_res++, idx++) {
                const int *c = cases[ci];
                conv2d_params p;
                conv_setup(&p, c[0], c[1], c[4], c[2], c[3], 1, 1, 1, 1, PAD_NONE,
                           (act_kind)(idx % 5));
                T_CHECK(conv2d_packed_fusable(&p), "case %zu not fusable", ci);
                const size_t n_x = (size_t)p.c_in * p.h_in * p.w_in;
                const size_t n_y = (size_t)p.c_out * p.h_out * p.w_out;
                const size_t n_w = (size_t)p.c_out * (p.c_in / p.groups);
                float *x = alloc_random(n_x, &r), *w = alloc_random(n_w, &r);
                float *bias = alloc_random((size_t)p.c_out, &r);
                float *scale = with_scale ? alloc_random((size_t)p.c_in, &r) : NULL;
                float *res = with_res ? alloc_random(n_y, &r) : NULL;
                float *xs = alloc_floats(n_x), *y = alloc_nan(n_y);
                float *scratch = alloc_nan(with_scale ? conv2d_packed_fused_scratch_floats(&p)
                                                      : conv2d_packed_scratch_floats(&p));
                float *packed = alloc_nan(conv2d_packed_floats(&p));
                double *want = alloc_doubles(n_y), *mag = alloc_doubles(n_y);
                conv2d_pack_weights(&p, w, packed);
                conv2d_forward_packed_fused(&p, x, scale, packed, bias, res, y, scratch);
                /* reference: the scaled input through ref_conv without activation, then the
                 * residual and the activation */
                const size_t hw = (size_t)p.h_in * p.w_in;
                for (size_t i = 0; i < n_x; i++) xs[i] = scale ? x[i] * scale[i / hw] : x[i];
                conv2d_params q = p;
                q.act = ACT_NONE;
                ref_conv(&q, xs, w, bias, want, mag);
                for (size_t i = 0; i < n_y; i++) {
                    const double pre = want[i] + (res ? res[i] : 0.0);
                    want[i] = ref_act(p.act, pre);
                    mag[i] = (mag[i] + (res ? fabs(res[i]) : 0.0)) *
                             (p.act == ACT_HSWISH ? 1.0 + fabs(pre) / 3.0 : 1.0);
                }
                const long bad = first_bad(y, want, mag, n_y);
                n_cases++;
                if (bad >= 0 && n_failed++ < MAX_REPORTS)
                    T_CHECK(0, "in %dx%dx%d out %d groups %d act %s scale %d residual %d: first "
                            "bad index %ld got %.9g want %.9g", p.c_in, p.h_in, p.w_in, p.c_out,
                            p.groups, act_names[p.act], with_scale, with_res, bad,
                            (double)y[bad], want[bad]);
                free(x);
                free(w);
                free(bias);
                free(scale);
                free(res);
                free(xs);
                free(y);
                free(scratch);
                free(packed);
                free(want);
                free(mag);
            }
    if (n_failed) printf("#   %d of %d fused convolutions failed\n", n_failed, n_cases);
    test_end("conv2d_forward_packed_fused (input scale, residual, both, neither)");
}

/* Every non-depthwise conv sweep through one entry point. */
static void test_conv_sweeps(conv_via via, const char *name)
{
    test_begin();
    sweep_stats st = {0, 0};
    conv_sweep_groups1(via, &st);
    conv_rect_and_large(via, &st);
    conv_sweep_grouped(via, &st);
    conv_packed_edges(via, &st);
    sweep_report(&st);
    test_end(name);
}

/* Depthwise sweep through one entry point. */
static void dw_sweep(conv_via via, uint64_t seed, sweep_stats *st)
{
    static const int dw_hw[][2] = {{13, 11}, {7, 9}, {1, 1}, {29, 37}};
    static const int chans[] = {3, 17, 24};
    rng r = {seed};
    int idx = 0;
    for (size_t ki = 0; ki < sizeof sweep_k / sizeof *sweep_k; ki++)
        for (size_t si = 0; si < sizeof sweep_s / sizeof *sweep_s; si++)
            for (int mode = 0; mode < N_PAD_MODES; mode++)
                for (size_t hi = 0; hi < sizeof dw_hw / sizeof *dw_hw; hi++, idx++) {
                    conv2d_params p;
                    const int c = chans[idx % 3];
                    if (!conv_setup(&p, c, c, c, dw_hw[hi][0], dw_hw[hi][1], sweep_k[ki],
                                    sweep_k[ki], sweep_s[si], sweep_s[si], (pad_mode)mode,
                                    (act_kind)(idx % 5)))
                        continue;
                    conv_case(&p, idx % 4 != 2, via, &r, st);
                }
    /* rows wider than one vector block in every stride, non-square shapes, and rows just
     * inside and beyond the specialized kernels' staging rows (the latter take the generic
     * path) */
    const int wide = KERNELS_DW_ROW_MAX;
    const int extra[][6] = {/* h, w, k_h, k_w, s_h, s_w */
                            {20, 64, 3, 3, 1, 1},        {21, 67, 3, 3, 2, 2},
                            {18, 45, 5, 5, 1, 1},        {19, 53, 5, 5, 2, 2},
                            {10, 30, 3, 5, 1, 1},        {10, 30, 3, 3, 1, 2},
                            {3, wide - 70, 3, 3, 1, 1},  {4, wide - 70, 5, 5, 2, 2},
                            {3, wide + 300, 3, 3, 1, 1}, {5, 2 * wide + 50, 5, 5, 2, 2},
                            /* flat (AVX-512) kernel: MobileNet sizes, rows narrower than the
                             * kernel, the widest rows and largest maps it takes, one past */
                            {14, 14, 3, 3, 1, 1},        {7, 7, 5, 5, 1, 1},
                            {9, 3, 5, 5, 1, 1},          {5, 32, 5, 5, 1, 1},
                            {128, 32, 3, 3, 1, 1},       {130, 32, 3, 3, 1, 1},
                            {6, 33, 3, 3, 1, 1},         {11, 5, 3, 5, 1, 1},
                            /* flat kernel's staged copies: the largest map (64 vectors), one
                             * row past, 7-wide kernels, kernels wider than the map */
                            {64, 16, 3, 3, 1, 1},        {65, 16, 5, 5, 1, 1},
                            {12, 12, 7, 7, 1, 1},        {7, 7, 1, 7, 1, 1},
                            {9, 16, 7, 3, 1, 1},         {4, 2, 7, 7, 1, 1},
                            /* stride-2 AVX-512 kernel with k_w >= 5 (deinterleaved rows):
                             * non-square kernels at 17 / 34 outputs (block layouts 4x2, 2x4),
                             * rows too wide for 2-row blocks of 7x7 (1x4), the widest rows */
                            {17, 33, 3, 5, 2, 2},        {9, 67, 7, 5, 2, 2},
                            {5, 1300, 7, 7, 2, 2},       {6, 2047, 7, 7, 2, 2},
                            /* stride-1 one-row-per-vector kernel (12..16 wide, 7..32 rows):
                             * MobileNet's 14 x 14 5x5, the fewest and most rows (the last row
                             * block moved back), 16 wide, one row past it, 17 wide (padded-plane
                             * kernel), 11 wide (flat kernel) */
                            {14, 14, 5, 5, 1, 1},        {7, 12, 3, 3, 1, 1},
                            {32, 15, 3, 5, 1, 1},        {16, 16, 7, 7, 1, 1},
                            {33, 14, 5, 5, 1, 1},        {10, 17, 3, 3, 1, 1},
                            {10, 11, 5, 3, 1, 1},
                            /* stride-2 3x3 branch-free rows (over 16 outputs wide, up to 512
                             * input columns): 17 and 33 outputs, MobileNet's 112 and 56 wide,
                             * the widest input and one past it (rows kernel), odd row counts */
                            {9, 34, 3, 3, 2, 2},         {6, 66, 3, 3, 2, 2},
                            {12, 112, 3, 3, 2, 2},       {11, 56, 3, 3, 2, 2},
                            {3, 512, 3, 3, 2, 2},        {3, 513, 3, 3, 2, 2},
                            /* stride-2 parity-staged kernel (several output rows per vector):
                             * MobileNet's 14 -> 7 (3x3, 5x5), 1..3 outputs wide (3-5 rows per
                             * vector), rows across block counts (1, 2, 4, 8+ vectors and the
                             * moved-back last block), rectangular kernels, 7x7, the tallest
                             * map the staging holds and one past it */
                            {14, 14, 5, 5, 2, 2},        {14, 14, 3, 3, 2, 2},
                            {5, 2, 3, 3, 2, 2},          {9, 5, 5, 5, 2, 2},
                            {4, 16, 5, 5, 2, 2},         {30, 13, 3, 3, 2, 2},
                            {45, 11, 5, 5, 2, 2},        {11, 10, 3, 5, 2, 2},
                            {13, 12, 7, 7, 2, 2},        {7, 15, 5, 7, 2, 2},
                            {400, 12, 5, 5, 2, 2},       {600, 12, 5, 5, 2, 2},
                            /* padded-plane kernel's 4-row blocks (k_h >= 5, rows of 17..32):
                             * MobileNet's 28 x 28 5x5, a row count leaving one row, 7x7, 5x3 */
                            {28, 28, 5, 5, 1, 1},        {13, 20, 5, 5, 1, 1},
                            {9, 32, 7, 7, 1, 1},         {6, 25, 5, 3, 1, 1}};
    for (size_t i = 0; i < sizeof extra / sizeof *extra; i++)
        for (int mode = 0; mode < N_PAD_MODES; mode++, idx++) {
            conv2d_params p;
            const int *e = extra[i];
            if (!conv_setup(&p, 5, 5, 5, e[0], e[1], e[2], e[3], e[4], e[5], (pad_mode)mode,
                            (act_kind)(idx % 5)))
                continue;
            conv_case(&p, 1, via, &r, st);
        }
}

static void test_dw_sweep(conv_via via, const char *name)
{
    test_begin();
    sweep_stats st = {0, 0};
    dw_sweep(via, 4 + (uint64_t)via, &st);
    sweep_report(&st);
    test_end(name);
}

/* The depthwise conv p (activation none or ReLU) as the channel-blocked kernels compute it: per
 * output, the (i, j)-order chain of fmaf from the bias over every tap, padding taps on zeros. */
static void dw_fmaf_chain(const conv2d_params *p, const float *x, const float *w, const float *bias, float *want)
{
    const int kk = p->k_h * p->k_w;
    for (int ch = 0; ch < p->c_in; ch++)
        for (int oh = 0; oh < p->h_out; oh++)
            for (int ow = 0; ow < p->w_out; ow++) {
                float acc = bias[ch];
                for (int t = 0; t < kk; t++) {
                    const int ih = oh * p->stride_h + t / p->k_w - p->pad_t, iw = ow * p->stride_w + t % p->k_w - p->pad_l;
                    const int in = ih >= 0 && ih < p->h_in && iw >= 0 && iw < p->w_in;
                    acc = fmaf(w[ch * kk + t], in ? x[((size_t)ch * p->h_in + ih) * p->w_in + iw] : 0.0f, acc);
                }
                want[((size_t)ch * p->h_out + oh) * p->w_out + ow] = p->act == ACT_RELU && acc < 0.0f ? 0.0f : acc;
            }
}

/* Whether a channel-blocked depthwise kernel (via: CONV_VIA_DW_AVX512 runs kernels_dw_cb,
 * CONV_VIA_DW_AVX2 the AVX2 variant) gives dw_fmaf_chain's bits on random data; a mismatch is
 * reported when report is set. */
static int dw_cb_bits_match(const conv2d_params *p, conv_via via, rng *r, int report)
{
    const size_t n_x = (size_t)p->c_in * p->h_in * p->w_in, n_y = (size_t)p->c_out * p->h_out * p->w_out;
    const int kk = p->k_h * p->k_w;
    float *x = alloc_random(n_x, r), *w = alloc_random((size_t)p->c_in * kk, r);
    float *bias = alloc_random((size_t)p->c_in, r), *y = alloc_nan(n_y), *want = alloc_nan(n_y);
    if (via == CONV_VIA_DW_AVX512)
        kernels_dw_cb(p, x, w, bias, y);
    else
        dwconv2d_forward_isa(p, x, w, bias, y, CPU_ISA_AVX2);
    dw_fmaf_chain(p, x, w, bias, want);
    const int match = memcmp(y, want, n_y * sizeof *y) == 0;
    if (!match && report)
        T_CHECK(0, "%d ch %dx%d k %d s %d pad %d/%d: not the fmaf chain's bits", p->c_in, p->h_in, p->w_in, p->k_h,
                p->stride_h, p->pad_t, p->pad_l);
    free(x);
    free(w);
    free(bias);
    free(y);
    free(want);
    return match;
}

/* The channel-blocked depthwise kernel (kernels_dwcb.c) on shapes it takes: channel counts of one
 * partial block, one, several and a partial last block of 16; 7-wide maps of 2..14 rows (the last
 * 2-row tile moved back on odd counts), 14 -> 7 stride 2, 14-wide 5x5; the padding modes that give
 * those widths. Against
 * the double reference (conv_case, guard cells), and bit for bit against the (i, j)-order chain of
 * fmaf from the bias over every tap, padding taps on zeros, which it documents. */
static void test_dw_cb(void)
{
    test_begin();
    /* {c, h, w, k, s} */
    static const int cases[][5] = {{5, 7, 7, 5, 1},   {16, 7, 7, 3, 1},  {33, 7, 7, 5, 1},  {17, 3, 7, 5, 1},
                                   {21, 14, 7, 3, 1}, {37, 14, 14, 5, 2}, {16, 13, 13, 3, 2}, {48, 14, 14, 5, 1},
                                   {19, 11, 14, 5, 1}, {3, 11, 11, 5, 1}, {40, 2, 7, 3, 1},   {31, 6, 14, 3, 2},
                                   /* 7 / 14 wide with the asymmetric padding (rows k - 1 / 1, columns k / 2 / 0) */
                                   {13, 8, 9, 5, 1},  {9, 5, 8, 3, 1},    {20, 10, 16, 5, 1}};
    rng r = {16};
    sweep_stats st = {0, 0};
    int n_taken = 0, n_bits_bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int mode = 0; mode < N_PAD_MODES; mode++) {
            const int *c = cases[i];
            conv2d_params p;
            if (!conv_setup(&p, c[0], c[0], c[0], c[1], c[2], c[3], c[3], c[4], c[4], (pad_mode)mode,
                            (act_kind)((i + (size_t)mode) % 5)) ||
                !kernels_dw_cb_applies(&p))
                continue;
            n_taken++;
            conv_case(&p, mode != 1, CONV_VIA_DW_AVX512, &r, &st);
            /* bits, no activation (the fmaf chain is the pre-activation value) */
            p.act = (i & 1) ? ACT_RELU : ACT_NONE;
            n_bits_bad += !dw_cb_bits_match(&p, CONV_VIA_DW_AVX512, &r, n_bits_bad < MAX_REPORTS);
        }
    T_CHECK(n_taken == 27, "%d cases take the kernel, want 27", n_taken);
    sweep_report(&st);
    test_end("channel-blocked depthwise (7-wide, 14 -> 7, 14-wide 5x5): reference and fmaf-chain bits");
}

/* The channel-blocked AVX2 depthwise kernel (kernels_dw.c, dwconv2d_forward_isa's AVX2 variant
 * where kernels_dw_cb_avx2_applies): channel counts of one partial block, one, several and a partial
 * last block of 8; outputs 7 wide (one tile), 8..13 and 20..27 (the last tile moved back), 14 and 28
 * (whole tiles), 1 and several rows, stride 1 and 2, 3x3 and 5x5, every padding mode and activation;
 * MobileNetV3's and ShuffleNetV2's shapes. Against the double reference (conv_case: NaN-poisoned
 * output and guard cells) and bit for bit against the (i, j)-order chain of fmaf from the bias over
 * every tap, padding taps on zeros (kernels_dwcb.c's chain too). */
static void test_dw_cb_avx2(void)
{
    test_begin();
    /* {c, h, w, k, s} */
    static const int cases[][5] = {{5, 7, 7, 5, 1},    {8, 7, 7, 3, 1},    {33, 7, 7, 5, 1},   {17, 3, 7, 5, 1},
                                   {21, 14, 7, 3, 1},  {37, 14, 14, 5, 2}, {16, 13, 13, 3, 2}, {48, 14, 14, 5, 1},
                                   {19, 11, 14, 5, 1}, {3, 11, 11, 5, 1},  {40, 1, 9, 3, 1},   {31, 6, 14, 3, 2},
                                   {13, 8, 9, 5, 1},   {9, 5, 8, 3, 1},    {20, 10, 16, 5, 1}, {11, 28, 28, 5, 1},
                                   {12, 28, 28, 3, 1}, {7, 28, 28, 3, 2},  {10, 28, 28, 5, 2}, {9, 24, 27, 3, 1},
                                   {6, 9, 23, 5, 1},   {25, 56, 56, 3, 2}, {3, 2, 29, 3, 1},   {4, 30, 29, 5, 2}};
    rng r = {19};
    sweep_stats st = {0, 0};
    int n_taken = 0, n_bits_bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int mode = 0; mode < N_PAD_MODES; mode++) {
            const int *c = cases[i];
            conv2d_params p;
            if (!conv_setup(&p, c[0], c[0], c[0], c[1], c[2], c[3], c[3], c[4], c[4], (pad_mode)mode,
                            (act_kind)((i + (size_t)mode) % 5)) ||
                !kernels_dw_cb_avx2_applies(&p))
                continue;
            n_taken++;
            conv_case(&p, mode != 1, CONV_VIA_DW_AVX2, &r, &st);
            /* bits, no activation (the fmaf chain is the pre-activation value) */
            p.act = (i & 1) ? ACT_RELU : ACT_NONE;
            n_bits_bad += !dw_cb_bits_match(&p, CONV_VIA_DW_AVX2, &r, n_bits_bad < MAX_REPORTS);
        }
    T_CHECK(n_taken >= 70, "%d cases take the kernel, want >= 70", n_taken);
    printf("#   %d cases take the kernel\n", n_taken);
    sweep_report(&st);
    test_end("channel-blocked AVX2 depthwise (7..28 wide): reference and fmaf-chain bits");
}

/* avx2_act's float operations in its order (the kernels' activation, bit for bit). */
static float act_f32(act_kind act, float v)
{
    switch (act) {
    case ACT_RELU: return v > 0.0f ? v : 0.0f;
    case ACT_RELU6: return fminf(v > 0.0f ? v : 0.0f, 6.0f);
    case ACT_HSWISH: return v * fminf(fmaxf(v + 3.0f, 0.0f), 6.0f) * (1.0f / 6.0f);
    case ACT_HSIGMOID: return fminf(fmaxf(v + 3.0f, 0.0f), 6.0f) * (1.0f / 6.0f);
    case ACT_NONE: break;
    }
    return v;
}

/* The AVX2 row kernels' chain (kernels_dw.c dw_channel_avx2_k, dw3s1_channel_avx2 for 3x3 stride 1
 * and kernels_dw_avx2_s2_split): per output two fmaf chains over the taps in (i, j) order, the even
 * kernel rows from the bias and the odd ones from 0, padding taps on zeros, then their sum and the
 * activation. */
static void dw_rows2_fmaf_chain(const conv2d_params *p, const float *x, const float *w, const float *bias, float *want)
{
    const int kk = p->k_h * p->k_w;
    for (int ch = 0; ch < p->c_in; ch++)
        for (int oh = 0; oh < p->h_out; oh++)
            for (int ow = 0; ow < p->w_out; ow++) {
                float acc[2] = {bias[ch], 0.0f};
                for (int t = 0; t < kk; t++) {
                    const int i = t / p->k_w, ih = oh * p->stride_h + i - p->pad_t, iw = ow * p->stride_w + t % p->k_w - p->pad_l;
                    const int in = ih >= 0 && ih < p->h_in && iw >= 0 && iw < p->w_in;
                    acc[i & 1] = fmaf(w[ch * kk + t], in ? x[((size_t)ch * p->h_in + ih) * p->w_in + iw] : 0.0f, acc[i & 1]);
                }
                const float v = acc[0] + acc[1];
                want[((size_t)ch * p->h_out + oh) * p->w_out + ow] = act_f32(p->act, v);
            }
}

/* Whether the AVX2 depthwise kernel gives dw_rows2_fmaf_chain's bits on random x, weights and bias
 * (NaN-poisoned outputs) for p. x and bias in [-4, 4]: outputs cross every activation's bends (ReLU6's
 * 6, hard-swish's -3 and 3). */
static int dw_avx2_matches_chain(const conv2d_params *p, rng *r)
{
    const size_t n_x = (size_t)p->c_in * p->h_in * p->w_in, n_y = (size_t)p->c_out * p->h_out * p->w_out;
    float *x = alloc_random_scaled(n_x, r, 4.0f), *w = alloc_random((size_t)p->c_in * p->k_h * p->k_w, r);
    float *bias = alloc_random_scaled((size_t)p->c_in, r, 4.0f), *y = alloc_nan(n_y), *want = alloc_nan(n_y);
    dwconv2d_forward_isa(p, x, w, bias, y, CPU_ISA_AVX2);
    dw_rows2_fmaf_chain(p, x, w, bias, want);
    const int same = memcmp(y, want, n_y * sizeof *y) == 0;
    free(x);
    free(w);
    free(bias);
    free(y);
    free(want);
    return same;
}

/* The AVX2 stride-2 depthwise row kernel (outputs wider than the channel-blocked kernel's, or
 * narrower than 7; 3x3 written out, 5x5 generic), alone and as the split-row pass of
 * conv2d_pw_dw_forward: bit for bit the two-accumulator chain above, every padding mode, odd and
 * even sizes, 1..3 rows. */
static void test_dw_s2_rows_avx2(void)
{
    test_begin();
    /* {c, h, w, k} */
    static const int cases[][4] = {{5, 112, 112, 3}, {3, 61, 67, 3}, {2, 9, 131, 3}, {4, 5, 60, 3}, {3, 2, 63, 3},
                                   {2, 1, 75, 3},    {3, 7, 5, 3},   {2, 59, 66, 5}, {3, 6, 61, 5}, {2, 3, 12, 3}};
    rng r = {23};
    int n_taken = 0, n_bits_bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int mode = 0; mode < N_PAD_MODES; mode++) {
            const int *c = cases[i];
            conv2d_params p;
            if (!conv_setup(&p, c[0], c[0], c[0], c[1], c[2], c[3], c[3], 2, 2, (pad_mode)mode,
                            (act_kind)((i + (size_t)mode) % 5)) ||
                !kernels_dw_avx2_split_applies(&p))
                continue;
            n_taken++;
            if (!dw_avx2_matches_chain(&p, &r)) {
                T_CHECK(n_bits_bad >= MAX_REPORTS, "%d ch %dx%d k %d pad %d/%d: not the two-chain fmaf bits", p.c_in,
                        p.h_in, p.w_in, p.k_h, p.pad_t, p.pad_l);
                n_bits_bad++;
            }
        }
    T_CHECK(n_bits_bad == 0, "%d cases off the chain's bits", n_bits_bad);
    T_CHECK(n_taken >= 30, "%d cases take the kernel, want >= 30", n_taken);
    test_end("AVX2 stride-2 depthwise row kernel (3x3 / 5x5): the two-accumulator fmaf chain's bits");
}

/* The AVX2 3x3 stride-1 row kernel (maps wider than the channel-blocked kernel takes: 3 output rows
 * a step): MobileNetV3-Large's 112 and 56 wide, widths not multiples of 8, 1..7 rows (1 or 2 left
 * after the 3-row steps), every padding mode and activation; against the double reference
 * (conv_case: NaN-poisoned output, guard cells) and bit for bit against dw_rows2_fmaf_chain (the
 * generic row kernel's chain: the same bits as before). */
static void test_dw3s1_avx2(void)
{
    test_begin();
    /* {c, h, w} */
    static const int cases[][3] = {{16, 112, 112}, {9, 56, 56}, {3, 1, 29}, {5, 2, 45}, {4, 3, 57},
                                   {6, 4, 100},    {2, 5, 33},  {7, 7, 64}, {3, 11, 31}, {1, 10, 300}};
    rng r = {43};
    sweep_stats st = {0, 0};
    int n_taken = 0, n_bits_bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int mode = 0; mode < N_PAD_MODES; mode++) {
            const int *c = cases[i];
            conv2d_params p;
            if (!conv_setup(&p, c[0], c[0], c[0], c[1], c[2], 3, 3, 1, 1, (pad_mode)mode,
                            (act_kind)((i + (size_t)mode) % 5)) ||
                kernels_dw_cb_avx2_applies(&p))
                continue;
            n_taken++;
            conv_case(&p, mode != 1, CONV_VIA_DW_AVX2, &r, &st);
            if (!dw_avx2_matches_chain(&p, &r) && n_bits_bad++ < MAX_REPORTS)
                T_CHECK(0, "%d ch %dx%d pad %d/%d act %s: not the row kernel's chain bits", p.c_in, p.h_in, p.w_in,
                        p.pad_t, p.pad_l, act_names[p.act]);
        }
    T_CHECK(n_bits_bad == 0, "%d cases off the chain's bits", n_bits_bad);
    T_CHECK(n_taken >= 30, "%d cases take the row kernel, want >= 30", n_taken);
    printf("#   %d cases take the row kernel\n", n_taken);
    sweep_report(&st);
    test_end("AVX2 3x3 stride-1 depthwise row kernel (3 rows a step): reference and the row chain's bits");
}

/* The AVX-512 stride-2 3x3 and 5x5 depthwise kernels for rows over 16 outputs (kernels_dw512.c:
 * the aligned even / odd rows with one (3x3) or two (5x5, up to 32 outputs) columns of left
 * padding, the branch-free 3x3 rows and the staged 5x5 rows otherwise): MobileNet's 112 -> 56 and
 * 56 -> 28, 17 / 32 / 33 outputs wide, odd and even input widths (a right padding column inside or
 * past the last load), the widest input rows (512) and one past (the rows kernel), 1..17 rows
 * (blocks of 4 and the last one short), every padding mode, several channels; against the double
 * reference (conv_case, guard cells) and bit for bit against the (i, j)-order chain of fmaf from
 * the bias over every tap, padding taps on zeros. */
static void test_dw_s2_rows(void)
{
    test_begin();
    /* {c, h, w, k} */
    static const int cases[][4] = {{5, 112, 112, 3}, {3, 56, 56, 3}, {2, 9, 34, 3},   {4, 5, 33, 3},  {3, 4, 35, 3},
                                   {6, 1, 64, 3},    {2, 3, 65, 3},  {1, 7, 66, 3},   {2, 2, 512, 3}, {1, 3, 511, 3},
                                   {1, 4, 513, 3},   {3, 17, 47, 3}, {4, 56, 56, 5},  {3, 9, 33, 5},  {2, 10, 64, 5},
                                   {3, 7, 63, 5},    {2, 5, 65, 5},  {5, 1, 40, 5},   {2, 12, 47, 5}, {3, 17, 36, 5}};
    rng r = {17};
    sweep_stats st = {0, 0};
    int n_cases = 0, n_bits_bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int mode = 0; mode < N_PAD_MODES; mode++) {
            const int *c = cases[i];
            conv2d_params p;
            if (!conv_setup(&p, c[0], c[0], c[0], c[1], c[2], c[3], c[3], 2, 2, (pad_mode)mode,
                            (act_kind)((i + (size_t)mode) % 5)) ||
                p.w_out <= 16)
                continue;
            n_cases++;
            conv_case(&p, mode != 2, CONV_VIA_DW_AVX512, &r, &st);
            /* bits: the fmaf chain is the pre-activation value */
            p.act = (i & 1) ? ACT_RELU : ACT_NONE;
            const size_t n_x = (size_t)p.c_in * p.h_in * p.w_in, n_y = (size_t)p.c_out * p.h_out * p.w_out;
            const int kk = p.k_h * p.k_w;
            float *x = alloc_random(n_x, &r), *w = alloc_random((size_t)p.c_in * kk, &r);
            float *bias = alloc_random((size_t)p.c_in, &r), *y = alloc_nan(n_y), *want = alloc_nan(n_y);
            dwconv2d_forward_isa(&p, x, w, bias, y, CPU_ISA_AVX512);
            for (int ch = 0; ch < p.c_in; ch++)
                for (int oh = 0; oh < p.h_out; oh++)
                    for (int ow = 0; ow < p.w_out; ow++) {
                        float acc = bias[ch];
                        for (int t = 0; t < kk; t++) {
                            const int ih = 2 * oh + t / p.k_w - p.pad_t, iw = 2 * ow + t % p.k_w - p.pad_l;
                            const int in = ih >= 0 && ih < p.h_in && iw >= 0 && iw < p.w_in;
                            acc = fmaf(w[ch * kk + t], in ? x[((size_t)ch * p.h_in + ih) * p.w_in + iw] : 0.0f, acc);
                        }
                        want[((size_t)ch * p.h_out + oh) * p.w_out + ow] = p.act == ACT_RELU && acc < 0.0f ? 0.0f : acc;
                    }
            if (memcmp(y, want, n_y * sizeof *y) != 0 && n_bits_bad++ < MAX_REPORTS)
                T_CHECK(0, "%d ch %dx%d k %d pad %d/%d: not the fmaf chain's bits", p.c_in, p.h_in, p.w_in, p.k_h, p.pad_t,
                        p.pad_l);
            free(x);
            free(w);
            free(bias);
            free(y);
            free(want);
        }
    T_CHECK(n_cases >= 70, "%d cases over 16 outputs wide, want >= 70", n_cases);
    sweep_report(&st);
    test_end("stride-2 3x3 / 5x5 depthwise rows over 16 outputs (AVX-512): reference and fmaf-chain bits");
}

static void test_conv_scratch_size(void)
{
    test_begin();
    conv2d_params p;
    conv_setup(&p, 8, 8, 8, 13, 11, 3, 3, 1, 1, PAD_SYM, ACT_NONE);
    T_CHECK(conv2d_scratch_floats(&p) == 0, "depthwise needs no scratch, got %zu",
            conv2d_scratch_floats(&p));
    T_CHECK(conv2d_packed_floats(&p) == 0, "depthwise has no packed path, got %zu floats",
            conv2d_packed_floats(&p));
    conv_setup(&p, 8, 16, 1, 13, 11, 1, 1, 1, 1, PAD_NONE, ACT_NONE);
    T_CHECK(conv2d_scratch_floats(&p) == 0, "1x1 s1 needs no scratch, got %zu",
            conv2d_scratch_floats(&p));
    T_CHECK(conv2d_packed_floats(&p) ==
                (cpu_isa_best() >= CPU_ISA_AVX2 ? (size_t)18 * 8 : 0),
            "1x1 8->16 packs into 3 panels of 6 channels, got %zu floats",
            conv2d_packed_floats(&p));
    conv_setup(&p, 5, 7, 1, 20, 20, 3, 3, 1, 1, PAD_SYM, ACT_NONE);
    switch (conv_path_on_cpu(CONV_PATH_WINOGRAD, CONV_PATH_IM2COL)) {
    case CONV_PATH_WINOGRAD:
        T_CHECK(conv2d_packed_floats(&p) == (size_t)16 * 12 * 5,
                "3x3 s1 20x20 5->7 packs 16 Winograd matrices of 2 panels, got %zu floats", conv2d_packed_floats(&p));
        break;
    case CONV_PATH_GEMM:
        T_CHECK(conv2d_packed_floats(&p) == (size_t)12 * 45,
                "3x3 s1 20x20 5->7 packs 2 GEMM panels of 45 taps, got %zu floats", conv2d_packed_floats(&p));
        break;
    default: T_CHECK(conv2d_packed_floats(&p) == 0, "3x3 s1 without AVX2 packs %zu floats", conv2d_packed_floats(&p));
    }
    conv_setup(&p, 3, 16, 1, 20, 20, 3, 3, 2, 2, PAD_SYM, ACT_NONE);
    switch (conv_path_on_cpu(CONV_PATH_STEM, CONV_PATH_IM2COL)) {
    case CONV_PATH_STEM:
        T_CHECK(conv2d_packed_floats(&p) == 16 * 27 && conv2d_packed_scratch_floats(&p) == 0,
                "3x3 s2 3->16 (stem kernel) keeps 16 x 27 weights, no scratch: got %zu, %zu",
                conv2d_packed_floats(&p), conv2d_packed_scratch_floats(&p));
        break;
    case CONV_PATH_GEMM:
        T_CHECK(conv2d_packed_floats(&p) == 18 * 27, "3x3 s2 3->16 (GEMM) packs 3 panels of 27 taps, got %zu",
                conv2d_packed_floats(&p));
        break;
    default: T_CHECK(conv2d_packed_floats(&p) == 0, "3x3 s2 without AVX2 packs %zu floats", conv2d_packed_floats(&p));
    }
    conv_setup(&p, 8, 16, 1, 13, 11, 1, 1, 2, 2, PAD_NONE, ACT_NONE);
    T_CHECK(conv2d_scratch_floats(&p) == 8 * 7 * 6, "1x1 s2: got %zu",
            conv2d_scratch_floats(&p));
    conv_setup(&p, 8, 16, 2, 13, 11, 3, 3, 1, 1, PAD_SYM, ACT_NONE);
    T_CHECK(conv2d_scratch_floats(&p) == 4 * 9 * 13 * 11, "3x3 groups 2: got %zu",
            conv2d_scratch_floats(&p));
    test_end("conv2d_scratch_floats");
}

/* ---- size helpers ---- */

static void test_out_size(void)
{
    /* {n, k, s, pad_before, pad_after, ceil_mode, expected}; checked against torch 1.13 */
    static const int cases[][7] = {
        {224, 3, 2, 1, 1, 0, 112}, {112, 3, 2, 1, 1, 0, 56}, {55, 3, 2, 0, 0, 0, 27},
        {147, 3, 2, 0, 0, 0, 73},  {5, 2, 2, 1, 1, 1, 3},    {5, 2, 2, 0, 0, 1, 3},
        {4, 3, 2, 1, 1, 1, 3},     {4, 3, 2, 1, 1, 0, 2},    {6, 3, 2, 0, 0, 1, 3},
        {6, 3, 2, 0, 0, 0, 2},     {13, 3, 2, 0, 0, 1, 6},   {14, 3, 2, 0, 0, 1, 7},
        {14, 3, 2, 0, 0, 0, 6},    {7, 3, 3, 1, 1, 1, 3},    {1, 3, 2, 0, 0, 0, 0},
        {1, 3, 2, 0, 0, 1, 0},     {299, 3, 2, 0, 0, 0, 149}, {7, 3, 2, 0, 1, 0, 3},
    };
    test_begin();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const int *c = cases[i];
        int got = kernels_out_size(c[0], c[1], c[2], c[3], c[4], c[5]);
        T_CHECK(got == c[6], "out_size(n %d, k %d, s %d, pads %d/%d, ceil %d) = %d, want %d", c[0],
                c[1], c[2], c[3], c[4], c[5], got, c[6]);
    }
    test_end("kernels_out_size");
}

static void test_tf_same(void)
{
    /* {n, k, s, out, before, after} */
    static const int cases[][6] = {
        {224, 3, 2, 112, 0, 1}, {7, 3, 2, 4, 1, 1}, {112, 5, 2, 56, 1, 2}, {56, 3, 1, 56, 1, 1},
        {8, 1, 2, 4, 0, 0},     {13, 5, 3, 5, 2, 2}, {1, 3, 1, 1, 1, 1},   {10, 4, 1, 10, 1, 2},
    };
    test_begin();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const int *c = cases[i];
        int out = -1, pb = -1, pa = -1;
        kernels_tf_same(c[0], c[1], c[2], &out, &pb, &pa);
        T_CHECK(out == c[3] && pb == c[4] && pa == c[5],
                "tf_same(n %d, k %d, s %d) = out %d pads %d/%d, want %d %d/%d", c[0], c[1], c[2],
                out, pb, pa, c[3], c[4], c[5]);
    }
    test_end("kernels_tf_same");
}

/* ---- pooling ---- */

/* Enumerates every window cell: padded cells count toward pool_size when they lie inside
 * [-pad_before, n + pad_after); real cells toward the sum / max and the real count. */
static void ref_pool(const pool2d_params *p, const float *x, double *y)
{
    for (int c = 0; c < p->c; c++)
        for (int oh = 0; oh < p->h_out; oh++)
            for (int ow = 0; ow < p->w_out; ow++) {
                double sum = 0, mx = -INFINITY;
                int n_pad = 0, n_real = 0;
                for (int i = 0; i < p->k_h; i++)
                    for (int j = 0; j < p->k_w; j++) {
                        const int ih = oh * p->stride_h - p->pad_t + i;
                        const int iw = ow * p->stride_w - p->pad_l + j;
                        if (ih >= -p->pad_t && ih < p->h_in + p->pad_b && iw >= -p->pad_l &&
                            iw < p->w_in + p->pad_r)
                            n_pad++;
                        if (ih < 0 || ih >= p->h_in || iw < 0 || iw >= p->w_in) continue;
                        double v = x[((size_t)c * p->h_in + ih) * p->w_in + iw];
                        n_real++;
                        sum += v;
                        mx = v > mx ? v : mx;
                    }
                size_t o = ((size_t)c * p->h_out + oh) * p->w_out + ow;
                if (p->kind == POOL_MAX)
                    y[o] = mx;
                else
                    y[o] = sum / (p->count_include_pad ? n_pad : n_real);
            }
}

static void test_pool_sweep(cpu_isa isa, const char *name)
{
    static const int ks[] = {1, 2, 3, 5};
    static const int ss[] = {1, 2, 3};
    static const int hws[][2] = {{13, 11}, {7, 9}, {8, 8}, {2, 3}};
    test_begin();
    rng r = {5};
    int n_cases = 0, n_failed = 0, idx = 0;
    for (int kind = 0; kind < 2; kind++)
        for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++)
            for (size_t si = 0; si < sizeof ss / sizeof *ss; si++)
                for (int mode = 0; mode < 4; mode++)
                    for (int ceil = 0; ceil < 2; ceil++)
                        for (int cip = 0; cip < 2; cip++)
                            for (size_t hi = 0; hi < sizeof hws / sizeof *hws; hi++, idx++) {
                                if (kind == POOL_MAX && cip) continue;
                                const int k = ks[ki], s = ss[si], h = hws[hi][0], w = hws[hi][1];
                                pool2d_params p = {.kind = (pool_kind)kind, .c = 3 + idx % 3,
                                                   .h_in = h, .w_in = w, .k_h = k, .k_w = k,
                                                   .stride_h = s, .stride_w = s,
                                                   .count_include_pad = cip};
                                /* PyTorch requires pads <= k/2; TF SAME pads satisfy it too */
                                int dummy;
                                switch (mode) {
                                case 0: break;
                                case 1: p.pad_t = p.pad_l = p.pad_b = p.pad_r = k / 2; break;
                                case 2: p.pad_t = p.pad_r = k / 2; break;
                                case 3:
                                    kernels_tf_same(h, k, s, &dummy, &p.pad_t, &p.pad_b);
                                    kernels_tf_same(w, k, s, &dummy, &p.pad_l, &p.pad_r);
                                    break;
                                }
                                p.h_out = kernels_out_size(h, k, s, p.pad_t, p.pad_b, ceil);
                                p.w_out = kernels_out_size(w, k, s, p.pad_l, p.pad_r, ceil);
                                if (p.h_out <= 0 || p.w_out <= 0) continue;
                                const size_t n_x = (size_t)p.c * h * w;
                                const size_t n_y = (size_t)p.c * p.h_out * p.w_out;
                                float *x = alloc_random(n_x, &r), *y = alloc_nan(n_y);
                                double *want = alloc_doubles(n_y);
                                pool2d_forward_isa(&p, x, y, isa);
                                ref_pool(&p, x, want);
                                long bad = first_bad(y, want, NULL, n_y);
                                n_cases++;
                                if (bad >= 0 && n_failed++ < MAX_REPORTS)
                                    T_CHECK(0,
                                            "%s k %d s %d in %dx%dx%d out %dx%d pad t%d l%d b%d "
                                            "r%d ceil %d cip %d: first bad index %ld got %.9g "
                                            "want %.9g",
                                            kind == POOL_MAX ? "max" : "avg", k, s, p.c, h, w,
                                            p.h_out, p.w_out, p.pad_t, p.pad_l, p.pad_b, p.pad_r,
                                            ceil, cip, bad, (double)y[bad], want[bad]);
                                free(x);
                                free(y);
                                free(want);
                            }
    if (n_failed) T_CHECK(0, "%d of %d pooling cases failed", n_failed, n_cases);
    T_CHECK(n_cases > 300, "only %d pooling cases ran", n_cases);
    test_end(name);
}

/* Rows with several column tiles, and windows wider than the row buffer (the fallback). */
static void test_pool_wide(cpu_isa isa, const char *name)
{
    /* {h, w, k_h, k_w, s_h, s_w, pad_l, pad_r} */
    const int wide = KERNELS_POOL_TILE + 3;
    const int cases[][8] = {
        {3, 1100, 3, 3, 1, 1, 1, 1}, {4, 2100, 2, 5, 2, 3, 2, 1},
        {2, 700, 2, wide, 1, 40, 0, 0}, {3, 1200, 3, wide, 2, 1, 7, 3},
        /* rows just inside the AVX-512 kernel's 1024-cell buffer, stride 1 and 2 */
        {3, 1022, 3, 3, 1, 1, 1, 1},    {4, 1021, 4, 4, 2, 2, 1, 2},
    };
    test_begin();
    rng r = {13};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int kind = 0; kind < 2; kind++)
            for (int cip = 0; cip < 2; cip++) {
                const int *c = cases[i];
                pool2d_params p = {.kind = (pool_kind)kind, .c = 2, .h_in = c[0], .w_in = c[1],
                                   .k_h = c[2], .k_w = c[3], .stride_h = c[4], .stride_w = c[5],
                                   .pad_l = c[6], .pad_r = c[7], .count_include_pad = cip};
                p.h_out = kernels_out_size(p.h_in, p.k_h, p.stride_h, 0, 0, 1);
                p.w_out = kernels_out_size(p.w_in, p.k_w, p.stride_w, p.pad_l, p.pad_r, 1);
                const size_t n_y = (size_t)p.c * p.h_out * p.w_out;
                float *x = alloc_random((size_t)p.c * p.h_in * p.w_in, &r), *y = alloc_nan(n_y);
                double *want = alloc_doubles(n_y);
                pool2d_forward_isa(&p, x, y, isa);
                ref_pool(&p, x, want);
                long bad = first_bad(y, want, NULL, n_y);
                T_CHECK(bad < 0, "%s cip %d in %dx%d k %dx%d s %d/%d pads l%d r%d: first bad index "
                        "%ld got %.9g want %.9g", kind == POOL_MAX ? "max" : "avg", cip, c[0],
                        c[1], c[2], c[3], c[4], c[5], c[6], c[7], bad,
                        bad < 0 ? 0.0 : (double)y[bad], bad < 0 ? 0.0 : want[bad]);
                free(x);
                free(y);
                free(want);
            }
    test_end(name);
}

static void test_pool_hand(cpu_isa isa, const char *name)
{
    test_begin();
    /* 4x4 input 1..16, avg 3x3 s2 p1; expected values from torch.nn.functional.avg_pool2d */
    float x16[16], x25[25];
    for (int i = 0; i < 16; i++) x16[i] = (float)(i + 1);
    for (int i = 0; i < 25; i++) x25[i] = (float)(i + 1);
    static const float want_avg[2][2][9] = {
        /* ceil 0: cip 0, cip 1 */
        {{3.5f, 5.0f, 9.5f, 11.0f}, {14.0f / 9, 30.0f / 9, 57.0f / 9, 11.0f}},
        /* ceil 1 */
        {{3.5f, 5.0f, 6.0f, 9.5f, 11.0f, 12.0f, 13.5f, 15.0f, 16.0f},
         {14.0f / 9, 30.0f / 9, 2.0f, 57.0f / 9, 11.0f, 6.0f, 4.5f, 7.5f, 4.0f}},
    };
    for (int ceil = 0; ceil < 2; ceil++)
        for (int cip = 0; cip < 2; cip++) {
            pool2d_params p = {.kind = POOL_AVG, .c = 1, .h_in = 4, .w_in = 4, .k_h = 3,
                               .k_w = 3, .stride_h = 2, .stride_w = 2, .pad_t = 1, .pad_l = 1,
                               .pad_b = 1, .pad_r = 1, .count_include_pad = cip};
            p.h_out = p.w_out = kernels_out_size(4, 3, 2, 1, 1, ceil);
            float y[9];
            for (int i = 0; i < 9; i++) y[i] = NAN;
            pool2d_forward_isa(&p, x16, y, isa);
            for (int i = 0; i < p.h_out * p.w_out; i++)
                T_CHECK(fabsf(y[i] - want_avg[ceil][cip][i]) < 1e-5f,
                        "avg ceil %d cip %d: y[%d] = %g, want %g", ceil, cip, i, (double)y[i],
                        (double)want_avg[ceil][cip][i]);
        }
    /* 5x5 input 1..25, max 2x2 s2 ceil, pads 0 and 1 (the second drops a window: 4 -> 3) */
    static const float want_max[2][9] = {{7, 9, 10, 17, 19, 20, 22, 24, 25},
                                         {1, 3, 5, 11, 13, 15, 21, 23, 25}};
    for (int pad = 0; pad < 2; pad++) {
        pool2d_params p = {.kind = POOL_MAX, .c = 1, .h_in = 5, .w_in = 5, .k_h = 2, .k_w = 2,
                           .stride_h = 2, .stride_w = 2, .pad_t = pad, .pad_l = pad,
                           .pad_b = pad, .pad_r = pad};
        p.h_out = p.w_out = kernels_out_size(5, 2, 2, pad, pad, 1);
        T_CHECK(p.h_out == 3, "max pad %d: out size %d, want 3", pad, p.h_out);
        float y[9];
        pool2d_forward_isa(&p, x25, y, isa);
        for (int i = 0; i < 9; i++)
            T_CHECK(y[i] == want_max[pad][i], "max pad %d: y[%d] = %g, want %g", pad, i,
                    (double)y[i], (double)want_max[pad][i]);
    }
    /* NaN inside a max window propagates, as in PyTorch */
    float xn[4] = {1, NAN, 3, 2}, yn[1];
    pool2d_params pn = {.kind = POOL_MAX, .c = 1, .h_in = 2, .w_in = 2, .h_out = 1, .w_out = 1,
                        .k_h = 2, .k_w = 2, .stride_h = 2, .stride_w = 2};
    pool2d_forward_isa(&pn, xn, yn, isa);
    T_CHECK(isnan(yn[0]), "max over a NaN: got %g", (double)yn[0]);
    /* a NaN in either operand of every max: first, middle and last cell of the window, in the
     * vertical and the horizontal step */
    for (int at = 0; at < 9; at++) {
        float x9[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, y9[1] = {0};
        x9[at] = NAN;
        pool2d_params p9 = {.kind = POOL_MAX, .c = 1, .h_in = 3, .w_in = 3, .h_out = 1,
                            .w_out = 1, .k_h = 3, .k_w = 3, .stride_h = 1, .stride_w = 1};
        pool2d_forward_isa(&p9, x9, y9, isa);
        T_CHECK(isnan(y9[0]), "max 3x3 with a NaN at cell %d: got %g", at, (double)y9[0]);
    }
    test_end(name);
}

/* pool2d_forward_bias_part (an average pool moved after a 1x1 conv applies its bias and
 * activation): every activation, Inception's 3x3 stride-1 pools and odd sizes, the flat and row
 * paths (strides 1 and 2, max too), vs the double reference; the variant isa on every channel,
 * then channel parts [c0, c1) by the dispatching entry point, the other channels left poisoned. */
static void test_pool_bias(cpu_isa isa, const char *name)
{
    /* {c, h, w, k, stride, pad, kind, count_include_pad} */
    static const int cases[][8] = {{5, 35, 35, 3, 1, 1, POOL_AVG, 1}, {7, 17, 17, 3, 1, 1, POOL_AVG, 1},
                                   {3, 8, 8, 3, 1, 1, POOL_AVG, 1},   {4, 13, 11, 3, 1, 1, POOL_AVG, 1},
                                   {2, 2, 3, 3, 1, 1, POOL_AVG, 1},   {3, 1, 1, 3, 1, 1, POOL_AVG, 1},
                                   {6, 19, 23, 5, 1, 2, POOL_AVG, 0}, {5, 21, 20, 3, 2, 1, POOL_AVG, 1},
                                   {4, 15, 17, 3, 2, 0, POOL_MAX, 0}, {3, 9, 40, 3, 1, 1, POOL_MAX, 0}};
    test_begin();
    rng r = {91};
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++)
        for (int a = 0; a < 5; a++) {
            const int *c = cases[ci];
            pool2d_params p = {.kind = (pool_kind)c[6], .c = c[0], .h_in = c[1], .w_in = c[2], .k_h = c[3],
                               .k_w = c[3], .stride_h = c[4], .stride_w = c[4], .pad_t = c[5], .pad_l = c[5],
                               .pad_b = c[5], .pad_r = c[5], .count_include_pad = c[7]};
            p.h_out = kernels_out_size(p.h_in, p.k_h, p.stride_h, p.pad_t, p.pad_b, 0);
            p.w_out = kernels_out_size(p.w_in, p.k_w, p.stride_w, p.pad_l, p.pad_r, 0);
            const act_kind act = (act_kind)a;
            const size_t hw = (size_t)p.h_out * p.w_out, n_y = (size_t)p.c * hw;
            float *x = alloc_random((size_t)p.c * p.h_in * p.w_in, &r), *bias = alloc_floats((size_t)p.c);
            for (int k = 0; k < p.c; k++) bias[k] = 4.0f * rng_uniform(&r) - 2.0f; /* both signs past 1 */
            float *y = alloc_nan(n_y);
            double *want = alloc_doubles(n_y);
            ref_pool(&p, x, want);
            for (size_t o = 0; o < n_y; o++) want[o] = ref_act(act, want[o] + bias[o / hw]);
            pool2d_forward_bias_isa(&p, bias, act, x, y, isa);
            long bad = first_bad(y, want, NULL, n_y);
            T_CHECK(bad < 0, "%s k %d s %d %dx%dx%d act %d: index %ld got %.9g want %.9g",
                    p.kind == POOL_MAX ? "max" : "avg", p.k_h, p.stride_h, p.c, p.h_in, p.w_in, a, bad,
                    bad < 0 ? 0.0 : (double)y[bad], bad < 0 ? 0.0 : want[bad]);
            const int c0 = p.c / 3, c1 = p.c - p.c / 4;
            for (size_t o = 0; o < n_y; o++) y[o] = NAN;
            pool2d_forward_bias_part(&p, bias, act, x, y, c0, c1);
            bad = first_bad(y + (size_t)c0 * hw, want + (size_t)c0 * hw, NULL, (size_t)(c1 - c0) * hw);
            int outside = 0;
            for (size_t o = 0; o < n_y; o++)
                if ((o < (size_t)c0 * hw || o >= (size_t)c1 * hw) && !isnan(y[o])) outside++;
            T_CHECK(bad < 0 && outside == 0, "part [%d, %d) of %dx%dx%d act %d: bad index %ld, %d writes outside",
                    c0, c1, p.c, p.h_in, p.w_in, a, bad, outside);
            free(x), free(bias), free(y), free(want);
        }
    test_end(name);
}

/* Scalar models of the pooling kernels' arithmetic (kernels_pool256.c: the same-size path for
 * small same-size stride-1 maps, else the row path; the global average, also the AVX-512
 * kernel's, which this CPU may not run), which the AVX2 kernels must match bit for bit. */
static float pool_model_max(float m, float v)
{
    if (m != m) return m;
    return m > v ? m : v; /* _mm512_max_ps(m, v): v when either is NaN or they are equal */
}

static float pool_model_op(const pool2d_params *p, float a, float b)
{
    return p->kind == POOL_MAX ? pool_model_max(a, b) : a + b;
}

static float pool_model(const pool2d_params *p, const float *xc, int oh, int ow)
{
    const float ident = p->kind == POOL_MAX ? -INFINITY : 0.0f;
    const int flat = p->stride_h == 1 && p->stride_w == 1 && p->h_out == p->h_in && p->w_out == p->w_in &&
                     p->k_h * p->k_w <= 25 && p->h_out * p->w_out <= 4096;
    const int hs = oh * p->stride_h - p->pad_t, ws = ow * p->stride_w - p->pad_l;
    const int he = kernels_imin(hs + p->k_h, p->h_in + p->pad_b), we = kernels_imin(ws + p->k_w, p->w_in + p->pad_r);
    const int h0 = kernels_imax(hs, 0), h1 = kernels_imin(he, p->h_in);
    const int w0 = kernels_imax(ws, 0), w1 = kernels_imin(we, p->w_in);
    float r = ident;
    if (flat) {
        for (int i = 0; i < p->k_h; i++)
            for (int j = 0; j < p->k_w; j++) {
                const int ih = hs + i, iw = ws + j;
                const int in = ih >= 0 && ih < p->h_in && iw >= 0 && iw < p->w_in;
                r = pool_model_op(p, r, in ? xc[ih * p->w_in + iw] : ident);
            }
        if (p->kind == POOL_MAX) return r;
        const int div = p->count_include_pad ? (he - hs) * (we - ws) : (h1 - h0) * (w1 - w0);
        return r * (1.0f / (float)div);
    }
    for (int j = 0; j < p->k_w; j++) {
        const int iw = ws + j;
        float cell = ident;
        if (iw >= 0 && iw < p->w_in)
            for (int ih = h0; ih < h1; ih++) cell = pool_model_op(p, cell, xc[ih * p->w_in + iw]);
        r = j == 0 ? cell : pool_model_op(p, r, cell);
    }
    if (p->kind == POOL_MAX) return r;
    const float row_inv = 1.0f / (float)(p->count_include_pad ? he - hs : h1 - h0);
    const float col_inv = 1.0f / (float)(p->count_include_pad ? we - ws : w1 - w0);
    return r * (row_inv * col_inv);
}

static void test_pool_avx2_bits(void)
{
    /* {c, h, w, k, stride, pad, kind, count_include_pad} */
    static const int cases[][8] = {{3, 35, 35, 3, 1, 1, POOL_AVG, 1}, {4, 17, 17, 3, 1, 1, POOL_AVG, 1},
                                   {5, 8, 8, 3, 1, 1, POOL_AVG, 1},   {3, 19, 23, 5, 1, 2, POOL_AVG, 0},
                                   {3, 9, 40, 3, 1, 1, POOL_MAX, 0},  {2, 3, 5, 3, 1, 1, POOL_AVG, 0},
                                   {3, 13, 11, 3, 2, 0, POOL_MAX, 0}, {2, 147, 147, 3, 2, 0, POOL_MAX, 0},
                                   {3, 21, 20, 3, 2, 1, POOL_AVG, 1}, {3, 21, 20, 3, 2, 1, POOL_AVG, 0},
                                   {3, 10, 12, 2, 1, 0, POOL_AVG, 1}, {2, 11, 30, 3, 1, 0, POOL_MAX, 0}};
    test_begin();
    rng r = {93};
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const int *c = cases[ci];
        pool2d_params p = {.kind = (pool_kind)c[6], .c = c[0], .h_in = c[1], .w_in = c[2], .k_h = c[3], .k_w = c[3],
                           .stride_h = c[4], .stride_w = c[4], .pad_t = c[5], .pad_l = c[5], .pad_b = c[5],
                           .pad_r = c[5], .count_include_pad = c[7]};
        p.h_out = kernels_out_size(p.h_in, p.k_h, p.stride_h, p.pad_t, p.pad_b, 0);
        p.w_out = kernels_out_size(p.w_in, p.k_w, p.stride_w, p.pad_l, p.pad_r, 0);
        const size_t hw_in = (size_t)p.h_in * p.w_in, hw = (size_t)p.h_out * p.w_out, n_y = (size_t)p.c * hw;
        float *x = alloc_random((size_t)p.c * hw_in, &r), *y = alloc_nan(n_y);
        if (p.kind == POOL_MAX) x[hw_in / 2] = NAN, x[hw_in + 1] = NAN; /* NaNs propagate the same way */
        pool2d_forward_isa(&p, x, y, CPU_ISA_AVX2);
        long bad = -1;
        float want = 0;
        for (size_t o = 0; o < n_y && bad < 0; o++) {
            want = pool_model(&p, x + o / hw * hw_in, (int)(o % hw / p.w_out), (int)(o % p.w_out));
            if (memcmp(&want, &y[o], sizeof want) != 0 && !(isnan(want) && isnan(y[o]))) bad = (long)o;
        }
        T_CHECK(bad < 0, "%s %dx%dx%d k %d s %d pad %d cip %d: index %ld got %.9g, scalar model %.9g",
                p.kind == POOL_MAX ? "max" : "avg", p.c, p.h_in, p.w_in, p.k_h, p.stride_h, p.pad_t,
                p.count_include_pad, bad, bad < 0 ? 0.0 : (double)y[bad], (double)want);
        free(x), free(y);
    }
    /* global average: 4 x 16 lane partial sums over 64-float blocks, 3 more 16-float steps, a
     * masked tail into the fourth, then (s0 + s1) + (s2 + s3) and gcc's 16-lane reduction */
    static const int hws[] = {1, 7, 15, 16, 17, 49, 63, 64, 65, 100, 196, 784};
    for (size_t i = 0; i < sizeof hws / sizeof *hws; i++) {
        const int n = hws[i], ch = 3;
        float *x = alloc_random((size_t)ch * n, &r), y[3];
        adaptive_avgpool2d_forward_isa(ch, 1, n, 1, 1, x, y, CPU_ISA_AVX2);
        for (int c = 0; c < ch; c++) {
            const float *xc = x + (size_t)c * n;
            float s[4][16] = {{0}};
            int k = 0;
            for (; k + 64 <= n; k += 64)
                for (int a = 0; a < 4; a++)
                    for (int l = 0; l < 16; l++) s[a][l] += xc[k + 16 * a + l];
            for (int a = 0; a < 3 && k + 16 <= n; a++, k += 16)
                for (int l = 0; l < 16; l++) s[a][l] += xc[k + l];
            if (k < n)
                for (int l = 0; l < 16; l++) s[3][l] += k + l < n ? xc[k + l] : 0.0f;
            float lane[16], t[8], u[4];
            for (int l = 0; l < 16; l++) lane[l] = (s[0][l] + s[1][l]) + (s[2][l] + s[3][l]);
            for (int l = 0; l < 8; l++) t[l] = lane[8 + l] + lane[l];
            for (int l = 0; l < 4; l++) u[l] = t[4 + l] + t[l];
            const float want = ((u[0] + u[2]) + (u[1] + u[3])) / (float)n;
            T_CHECK(memcmp(&want, &y[c], sizeof want) == 0, "global average of %d, channel %d: %.9g, scalar model %.9g",
                    n, c, (double)y[c], (double)want);
        }
        free(x);
    }
    test_end("pool2d / global average on AVX2 = the documented arithmetic bit for bit (scalar models; the global average's is the AVX-512 kernel's)");
}

static void ref_adaptive(int c, int h_in, int w_in, int h_out, int w_out, const float *x,
                         double *y)
{
    for (int ci = 0; ci < c; ci++)
        for (int oh = 0; oh < h_out; oh++)
            for (int ow = 0; ow < w_out; ow++) {
                const int hs = (int)floor((double)oh * h_in / h_out);
                const int he = (int)ceil((double)(oh + 1) * h_in / h_out);
                const int ws = (int)floor((double)ow * w_in / w_out);
                const int we = (int)ceil((double)(ow + 1) * w_in / w_out);
                double s = 0;
                for (int i = hs; i < he; i++)
                    for (int j = ws; j < we; j++) s += x[((size_t)ci * h_in + i) * w_in + j];
                y[((size_t)ci * h_out + oh) * w_out + ow] = s / ((he - hs) * (we - ws));
            }
}

static void test_adaptive_avgpool(cpu_isa isa, const char *name)
{
    /* {h_in, w_in, h_out, w_out} */
    static const int cases[][4] = {{13, 13, 5, 5}, {7, 7, 1, 1}, {6, 6, 6, 6}, {8, 8, 1, 1},
                                   {13, 7, 5, 3},  {5, 9, 2, 4}, {1, 1, 1, 1}, {3, 3, 6, 6}};
    test_begin();
    rng r = {6};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const int *c = cases[i], ch = 5;
        const size_t n_y = (size_t)ch * c[2] * c[3];
        float *x = alloc_random((size_t)ch * c[0] * c[1], &r), *y = alloc_nan(n_y);
        double *want = alloc_doubles(n_y);
        adaptive_avgpool2d_forward_isa(ch, c[0], c[1], c[2], c[3], x, y, isa);
        ref_adaptive(ch, c[0], c[1], c[2], c[3], x, want);
        long bad = first_bad(y, want, NULL, n_y);
        T_CHECK(bad < 0, "%dx%d -> %dx%d: first bad index %ld got %.9g want %.9g", c[0], c[1], c[2],
                c[3], bad, bad < 0 ? 0.0 : (double)y[bad], bad < 0 ? 0.0 : want[bad]);
        free(x);
        free(y);
        free(want);
    }
    /* global pooling: map sizes around the 16- and 64-float vector blocks (MobileNetV3's 7x7,
     * 14x14, 28x28 among them), odd channel counts; tolerance relative to sum |x| / hw */
    static const int maps[][2] = {{1, 1},  {1, 15}, {4, 4},  {1, 17}, {7, 7},   {8, 8},  {5, 13},
                                  {9, 9},  {1, 95}, {14, 14}, {11, 13}, {28, 28}, {1, 1000}};
    for (size_t i = 0; i < sizeof maps / sizeof *maps; i++) {
        const int h = maps[i][0], w = maps[i][1], ch = 19;
        const size_t hw = (size_t)h * (size_t)w;
        float *x = alloc_random((size_t)ch * hw, &r), *y = alloc_nan((size_t)ch + 2);
        double *want = alloc_doubles((size_t)ch), *mag = alloc_doubles((size_t)ch);
        for (int c = 0; c < ch; c++) { /* an offset so the mean is not near zero */
            double s = 0, a = 0;
            for (size_t j = 0; j < hw; j++) {
                x[(size_t)c * hw + j] += (float)(c % 3);
                s += x[(size_t)c * hw + j];
                a += fabs(x[(size_t)c * hw + j]);
            }
            want[c] = s / (double)hw;
            mag[c] = a / (double)hw;
        }
        adaptive_avgpool2d_forward_isa(ch, h, w, 1, 1, x, y + 1, isa);
        long bad = first_bad(y + 1, want, mag, (size_t)ch);
        T_CHECK(bad < 0, "global %dx%d, %d channels: channel %ld got %.9g want %.9g", h, w, ch, bad,
                bad < 0 ? 0.0 : (double)y[1 + bad], bad < 0 ? 0.0 : want[bad]);
        T_CHECK(isnan(y[0]) && isnan(y[ch + 1]), "global %dx%d: wrote outside y", h, w);
        /* channel ranges (intra-op parts) give the same bits as the whole call */
        for (int c0 = 0; c0 < ch; c0 += 7) {
            const int c1 = c0 + 5 < ch ? c0 + 5 : ch;
            float part[8];
            for (int j = 0; j < 8; j++) part[j] = NAN;
            adaptive_avgpool2d_forward_isa(c1 - c0, h, w, 1, 1, x + (size_t)c0 * hw, part + 1, isa);
            T_CHECK(isnan(part[0]) && isnan(part[c1 - c0 + 1]),
                    "global %dx%d channels [%d,%d): wrote outside its range", h, w, c0, c1);
            for (int c = c0; c < c1; c++)
                T_CHECK(memcmp(&part[1 + c - c0], &y[1 + c], sizeof(float)) == 0,
                        "global %dx%d channel %d in range [%d,%d): %.9g, whole call %.9g", h, w, c, c0,
                        c1, (double)part[1 + c - c0], (double)y[1 + c]);
        }
        free(x);
        free(y);
        free(want);
        free(mag);
    }
    /* 13 -> 5 on a ramp 0..12: bins [0,3) [2,6) [5,8) [7,11) [10,13) (torch) */
    float ramp[13], yr[5];
    static const float want_ramp[5] = {1.0f, 3.5f, 6.0f, 8.5f, 11.0f};
    for (int i = 0; i < 13; i++) ramp[i] = (float)i;
    adaptive_avgpool2d_forward_isa(1, 1, 13, 1, 5, ramp, yr, isa);
    for (int i = 0; i < 5; i++)
        T_CHECK(fabsf(yr[i] - want_ramp[i]) < 1e-6f, "ramp bin %d = %g, want %g", i, (double)yr[i],
                (double)want_ramp[i]);
    test_end(name);
}

/* ---- dense / elementwise ---- */

static void test_act(void)
{
    test_begin();
    enum { N = 37 };
    float x[N], y[N];
    for (int i = 0; i < N; i++) x[i] = -9.0f + 0.5f * (float)i; /* covers -3, 0, 3, 6 exactly */
    for (int a = 0; a <= ACT_HSIGMOID; a++) {
        memcpy(y, x, sizeof x);
        act_forward((act_kind)a, y, N);
        for (int i = 0; i < N; i++) {
            double want = ref_act((act_kind)a, x[i]);
            T_CHECK(fabs(y[i] - want) <= 1e-6 * (1 + fabs(want)), "%s(%g) = %.9g, want %.9g",
                    act_names[a], (double)x[i], (double)y[i], want);
        }
    }
    test_end("act_forward every activation");
}

static void test_linear(cpu_isa isa, const char *name)
{
    /* n_in: below, at and past one vector, with and without a tail; n_out: every remainder of
     * the 4-row blocks */
    static const int sizes[][2] = {{17, 5}, {100, 33}, {1, 1}, {1280, 1000}, {16, 6}, {32, 7},
                                   {4099, 3}};
    test_begin();
    rng r = {7};
    int idx = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
        for (int a = 0; a <= ACT_HSIGMOID; a++)
            for (int with_bias = 0; with_bias < 2; with_bias++, idx++) {
                const int n_in = sizes[si][0], n_out = sizes[si][1];
                float *x = alloc_random((size_t)n_in, &r);
                float *w = alloc_random((size_t)n_in * n_out, &r);
                float *b = with_bias ? alloc_random((size_t)n_out, &r) : NULL;
                float *y = alloc_nan((size_t)n_out);
                double *want = alloc_doubles((size_t)n_out), *mag = alloc_doubles((size_t)n_out);
                linear_forward_isa(n_in, n_out, x, w, b, (act_kind)a, y, isa);
                for (int o = 0; o < n_out; o++) {
                    double s = b ? b[o] : 0, m = fabs(s);
                    for (int i = 0; i < n_in; i++) {
                        double t = (double)w[(size_t)o * n_in + i] * x[i];
                        s += t;
                        m += fabs(t);
                    }
                    want[o] = ref_act((act_kind)a, s);
                    mag[o] = m * (a == ACT_HSWISH ? 1 + fabs(s) / 3 : 1);
                }
                long bad = first_bad(y, want, mag, (size_t)n_out);
                T_CHECK(bad < 0, "linear %d->%d act %s bias %d: first bad index %ld got %.9g want %.9g",
                        n_in, n_out, act_names[a], with_bias, bad,
                        bad < 0 ? 0.0 : (double)y[bad], bad < 0 ? 0.0 : want[bad]);
                free(x);
                free(w);
                free(b);
                free(y);
                free(want);
                free(mag);
            }
    test_end(name);
}

/* kernels_gemv_avx2 (the batch-1 GEMV on AVX2 and AVX-512 CPUs) gives the bits the batched AVX-512
 * kernel's outputs are defined by: each output against a scalar model, 16 lanes each an fmaf chain
 * over i = lane mod 16 (the masked tail adding fmaf(0, 0, .)) and gcc's _mm512_reduce_add_ps order. */
static float gemv_lanes_model(int n_in, const float *x, const float *w)
{
    float lane[16] = {0};
    for (int i0 = 0; i0 < n_in; i0 += 16)
        for (int l = 0; l < 16; l++)
            lane[l] = i0 + l < n_in ? fmaf(w[i0 + l], x[i0 + l], lane[l]) : fmaf(0.0f, 0.0f, lane[l]);
    float t[8], u[4];
    for (int l = 0; l < 8; l++) t[l] = lane[8 + l] + lane[l];
    for (int l = 0; l < 4; l++) u[l] = t[4 + l] + t[l];
    return (u[0] + u[2]) + (u[1] + u[3]);
}

static void test_gemv_lanes_bits(void)
{
    static const int sizes[][2] = {{1, 1}, {15, 5}, {16, 4}, {17, 9}, {31, 3}, {33, 6}, {100, 33}, {9216, 7}};
    test_begin();
    rng r = {71};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        const int n_in = sizes[si][0], n_out = sizes[si][1];
        float *x = alloc_random((size_t)n_in, &r), *w = alloc_random((size_t)n_in * n_out, &r);
        float *y = alloc_nan((size_t)n_out);
        kernels_gemv_avx2(n_in, n_out, x, w, y);
        for (int o = 0; o < n_out; o++) {
            const float want = gemv_lanes_model(n_in, x, w + (size_t)o * n_in);
            T_CHECK(memcmp(&y[o], &want, sizeof want) == 0, "gemv %d->%d row %d: %.9g, scalar model %.9g", n_in,
                    n_out, o, (double)y[o], (double)want);
        }
        free(x), free(w), free(y);
    }
    test_end("kernels_gemv_avx2 = 16 FMA chains added in _mm512_reduce_add_ps order, bit for bit (scalar model)");
}

static void test_add(void)
{
    enum { N = 45 };
    test_begin();
    rng r = {8};
    float a[N], b[N], y[N];
    for (int act = 0; act <= ACT_HSIGMOID; act++)
        for (int alias = 0; alias < 4; alias++) { /* y separate, y == a, y == b, y == a == b */
            for (int i = 0; i < N; i++) {
                a[i] = 4 * rng_uniform(&r);
                b[i] = 4 * rng_uniform(&r);
                y[i] = NAN;
            }
            const float *pb = alias == 3 ? a : b;
            double want[N];
            for (int i = 0; i < N; i++) want[i] = ref_act((act_kind)act, (double)a[i] + pb[i]);
            float *out = alias == 0 ? y : alias == 2 ? b : a;
            add_forward(N, a, pb, (act_kind)act, out);
            long bad = first_bad(out, want, NULL, N);
            T_CHECK(bad < 0, "add act %s alias %d: first bad index %ld", act_names[act], alias,
                    bad);
        }
    test_end("add_forward (every activation, in place on either input)");
}

static void test_scale(void)
{
    enum { C = 5, HW = 19 };
    test_begin();
    rng r = {9};
    float x[C * HW], s[C], y[C * HW];
    double want[C * HW];
    for (int i = 0; i < C * HW; i++) x[i] = rng_uniform(&r);
    for (int c = 0; c < C; c++) s[c] = 3 * rng_uniform(&r);
    for (int c = 0; c < C; c++)
        for (int i = 0; i < HW; i++) want[c * HW + i] = (double)x[c * HW + i] * s[c];
    for (int i = 0; i < C * HW; i++) y[i] = NAN;
    scale_channels_forward(C, HW, x, s, y);
    long bad = first_bad(y, want, NULL, C * HW);
    T_CHECK(bad < 0, "out of place: first bad index %ld", bad);
    scale_channels_forward(C, HW, x, s, x);
    bad = first_bad(x, want, NULL, C * HW);
    T_CHECK(bad < 0, "in place: first bad index %ld", bad);
    test_end("scale_channels_forward (out of place and in place)");
}

static void test_shuffle(void)
{
    test_begin();
    /* c 4, groups 2: channel order 0 2 1 3 */
    float x4[4 * 3], y4[4 * 3];
    for (int i = 0; i < 12; i++) x4[i] = (float)i;
    channel_shuffle_forward(4, 3, 2, x4, y4);
    static const int order[4] = {0, 2, 1, 3};
    for (int c = 0; c < 4; c++)
        for (int i = 0; i < 3; i++)
            T_CHECK(y4[c * 3 + i] == x4[order[c] * 3 + i], "c4 g2: y[%d][%d] = %g, want x[%d][%d]",
                    c, i, (double)y4[c * 3 + i], order[c], i);
    /* general: output channel j*groups + g comes from input channel g*(c/groups) + j */
    static const int cfg[][3] = {{24, 5, 2}, {12, 7, 3}, {6, 1, 6}, {5, 2, 1}};
    for (size_t k = 0; k < sizeof cfg / sizeof *cfg; k++) {
        const int c = cfg[k][0], hw = cfg[k][1], g = cfg[k][2], per = c / g;
        float *x = alloc_floats((size_t)c * hw), *y = alloc_nan((size_t)c * hw);
        for (int i = 0; i < c * hw; i++) x[i] = (float)i;
        channel_shuffle_forward(c, hw, g, x, y);
        int n_bad = 0;
        for (int gi = 0; gi < g; gi++)
            for (int j = 0; j < per; j++)
                for (int i = 0; i < hw; i++)
                    n_bad += y[(j * g + gi) * hw + i] != x[(gi * per + j) * hw + i];
        T_CHECK(n_bad == 0, "c %d hw %d groups %d: %d wrong values", c, hw, g, n_bad);
        free(x);
        free(y);
    }
    test_end("channel_shuffle_forward");
}

static void test_concat(void)
{
    test_begin();
    enum { HW = 7 };
    const int cs[3] = {2, 5, 1};
    float a[2 * HW], b[5 * HW], c[1 * HW], y[8 * HW];
    for (int i = 0; i < 2 * HW; i++) a[i] = (float)i;
    for (int i = 0; i < 5 * HW; i++) b[i] = 100.0f + (float)i;
    for (int i = 0; i < HW; i++) c[i] = 1000.0f + (float)i;
    for (int i = 0; i < 8 * HW; i++) y[i] = NAN;
    const float *const xs[3] = {a, b, c};
    concat_forward(3, xs, cs, HW, y);
    for (int i = 0; i < 8 * HW; i++) {
        float want = i < 2 * HW ? a[i] : i < 7 * HW ? b[i - 2 * HW] : c[i - 7 * HW];
        T_CHECK(y[i] == want, "y[%d] = %g, want %g", i, (double)y[i], (double)want);
    }
    test_end("concat_forward");
}

static void test_softmax(void)
{
    test_begin();
    rng r = {10};
    enum { N = 1000 };
    static float x[N], y[N];
    double want[N];
    for (int i = 0; i < N; i++) x[i] = 10 * rng_uniform(&r);
    double m = x[0], s = 0;
    for (int i = 1; i < N; i++) m = x[i] > m ? x[i] : m;
    for (int i = 0; i < N; i++) s += exp(x[i] - m);
    for (int i = 0; i < N; i++) want[i] = exp(x[i] - m) / s;
    softmax_forward(N, x, y);
    long bad = first_bad(y, want, NULL, N);
    T_CHECK(bad < 0, "random: first bad index %ld", bad);
    softmax_forward(N, x, x);
    bad = first_bad(x, want, NULL, N);
    T_CHECK(bad < 0, "in place: first bad index %ld", bad);
    /* large logits must not overflow */
    float big[3] = {1000.0f, 1001.0f, 999.0f}, yb[3];
    softmax_forward(3, big, yb);
    const double e1 = exp(-1.0), e2 = exp(-2.0), d = 1 + e1 + e2;
    const double want_big[3] = {e1 / d, 1 / d, e2 / d};
    for (int i = 0; i < 3; i++)
        T_CHECK(fabs(yb[i] - want_big[i]) < 1e-6, "large logits: y[%d] = %g, want %g", i,
                (double)yb[i], want_big[i]);
    float one = -5.0f;
    softmax_forward(1, &one, &one);
    T_CHECK(one == 1.0f, "single value: %g", (double)one);
    test_end("softmax_forward (stable, in place)");
}

/* Reference: k passes of "largest not yet taken, lowest index on ties". */
static void ref_topk(int n, const float *x, int k, int *idx)
{
    for (int t = 0; t < k; t++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            int taken = 0;
            for (int u = 0; u < t; u++) taken |= idx[u] == i;
            if (!taken && (best < 0 || x[i] > x[best])) best = i;
        }
        idx[t] = best;
    }
}

static void test_topk(void)
{
    test_begin();
    float x[6] = {0.5f, 2.0f, 2.0f, -1.0f, 3.0f, 2.0f};
    int idx[6];
    topk_indices(6, x, 4, idx);
    static const int want[4] = {4, 1, 2, 5};
    for (int i = 0; i < 4; i++)
        T_CHECK(idx[i] == want[i], "ties: idx[%d] = %d, want %d", i, idx[i], want[i]);
    topk_indices(6, x, 1, idx);
    T_CHECK(idx[0] == 4, "k 1: %d, want 4", idx[0]);
    topk_indices(6, x, 6, idx);
    static const int want_all[6] = {4, 1, 2, 5, 0, 3};
    for (int i = 0; i < 6; i++)
        T_CHECK(idx[i] == want_all[i], "k n: idx[%d] = %d, want %d", i, idx[i], want_all[i]);
    /* random with many duplicates */
    rng r = {11};
    enum { N = 1000 };
    static float xr[N];
    for (int trial = 0; trial < 20; trial++) {
        for (int i = 0; i < N; i++) xr[i] = (float)(int)(20 * rng_uniform(&r));
        const int k = 1 + trial % 10;
        int got[10], ref[10];
        topk_indices(N, xr, k, got);
        ref_topk(N, xr, k, ref);
        for (int i = 0; i < k; i++)
            T_CHECK(got[i] == ref[i], "trial %d k %d: idx[%d] = %d, want %d", trial, k, i, got[i],
                    ref[i]);
    }
    test_end("topk_indices (descending, ties -> lower index)");
}

/* ---- concurrency ---- */

/* A small network slice: im2col conv, 1x1 conv, depthwise conv, max pool. */
typedef struct {
    const float *x, *w1, *w2, *wdw;
    float *scratch, *t1, *t2, *t3, *y;
    int iterations;
} slice_job;

enum { SL_C = 16, SL_H = 28, SL_W = 28 };

static void slice_params(conv2d_params *c1, conv2d_params *c2, conv2d_params *dw,
                         pool2d_params *pl)
{
    conv_setup(c1, 3, SL_C, 1, SL_H, SL_W, 3, 3, 1, 1, PAD_SYM, ACT_RELU);
    conv_setup(c2, SL_C, SL_C, 1, SL_H, SL_W, 1, 1, 1, 1, PAD_NONE, ACT_HSWISH);
    conv_setup(dw, SL_C, SL_C, SL_C, SL_H, SL_W, 5, 5, 2, 2, PAD_SYM, ACT_RELU6);
    *pl = (pool2d_params){.kind = POOL_MAX, .c = SL_C, .h_in = dw->h_out, .w_in = dw->w_out,
                          .k_h = 3, .k_w = 3, .stride_h = 2, .stride_w = 2, .pad_t = 1,
                          .pad_l = 1, .pad_b = 1, .pad_r = 1};
    pl->h_out = kernels_out_size(pl->h_in, 3, 2, 1, 1, 0);
    pl->w_out = kernels_out_size(pl->w_in, 3, 2, 1, 1, 0);
}

static void *slice_run(void *arg)
{
    slice_job *j = arg;
    conv2d_params c1, c2, dw;
    pool2d_params pl;
    slice_params(&c1, &c2, &dw, &pl);
    for (int it = 0; it < j->iterations; it++) {
        conv2d_forward(&c1, j->x, j->w1, NULL, j->t1, j->scratch);
        conv2d_forward(&c2, j->t1, j->w2, NULL, j->t2, NULL);
        conv2d_forward(&dw, j->t2, j->wdw, NULL, j->t3, NULL);
        pool2d_forward(&pl, j->t3, j->y);
    }
    return NULL;
}

static void test_concurrent(void)
{
    enum { N_THREADS = 3 };
    test_begin();
    rng r = {12};
    conv2d_params c1, c2, dw;
    pool2d_params pl;
    slice_params(&c1, &c2, &dw, &pl);
    float *x = alloc_random((size_t)3 * SL_H * SL_W, &r);
    float *w1 = alloc_random((size_t)SL_C * 3 * 9, &r), *w2 = alloc_random(SL_C * SL_C, &r);
    float *wdw = alloc_random(SL_C * 25, &r);
    const size_t n_y = (size_t)SL_C * pl.h_out * pl.w_out;
    slice_job jobs[N_THREADS + 1];
    for (int t = 0; t <= N_THREADS; t++) {
        jobs[t] = (slice_job){.x = x, .w1 = w1, .w2 = w2, .wdw = wdw,
                              .scratch = alloc_floats(conv2d_scratch_floats(&c1)),
                              .t1 = alloc_floats((size_t)SL_C * SL_H * SL_W),
                              .t2 = alloc_floats((size_t)SL_C * SL_H * SL_W),
                              .t3 = alloc_floats((size_t)SL_C * dw.h_out * dw.w_out),
                              .y = alloc_nan(n_y), .iterations = t == N_THREADS ? 1 : 20};
    }
    slice_run(&jobs[N_THREADS]); /* serial reference */
    pthread_t th[N_THREADS];
    int n_started = 0;
    for (int t = 0; t < N_THREADS; t++)
        if (pthread_create(&th[t], NULL, slice_run, &jobs[t]) == 0) n_started++;
    T_CHECK(n_started == N_THREADS, "started %d of %d threads", n_started, N_THREADS);
    for (int t = 0; t < n_started; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < n_started; t++)
        T_CHECK(memcmp(jobs[t].y, jobs[N_THREADS].y, n_y * sizeof(float)) == 0,
                "thread %d differs from the serial result", t);
    for (int t = 0; t <= N_THREADS; t++) {
        free(jobs[t].scratch);
        free(jobs[t].t1);
        free(jobs[t].t2);
        free(jobs[t].t3);
        free(jobs[t].y);
    }
    free(x);
    free(w1);
    free(w2);
    free(wdw);
    test_end("concurrent calls from several threads match the serial result");
}

/* ---- output parts (intra-op threads) ----
 * Computing the output as 2, 3 and 5 parts (from the kernels' split helpers) must equal the
 * whole-tensor call bit for bit, and a part must leave every value outside it untouched. */

/* A NaN whose bits no kernel produces: cells outside a part must keep exactly these. */
#define PART_POISON 0x7fa5a5a5u

typedef struct part_case part_case;
struct part_case {
    kernels_part (*split)(const part_case *pc, int ith, int nth);
    void (*run)(const part_case *pc, const kernels_part *part, float *y);
    int c;        /* output channels (CHANNELS parts), or 1 */
    size_t hw;    /* values per channel (POSITIONS parts) */
    const conv2d_params *conv;
    const pool2d_params *pool;
    const float *x, *w, *bias, *scale, *res;
    float *scratch;
    int n_in, n_out;
    const conv2d_params *pw; /* conv2d_pw_dw: the pointwise conv (conv is the depthwise one) */
    const float *pw_packed, *pw_bias;
    const conv2d_plan *plan; /* plan cases: conv2d_plan_part / conv2d_plan_forward_part */
};

static void fill_poison(float *y, size_t n)
{
    const uint32_t bits = PART_POISON;
    for (size_t i = 0; i < n; i++) memcpy(&y[i], &bits, sizeof bits);
}

static int is_poison(const float *v)
{
    uint32_t bits;
    memcpy(&bits, v, sizeof bits);
    return bits == PART_POISON;
}

/* A fused path's output y[1 .. n_y] (n_y = channels x hw, rows w_out wide; guard cells y[0] and
 * y[n_y + 1] poisoned before the call) bit for bit the unfused layers' want, nothing written
 * outside; the first difference reported by channel, row and column. */
static int fused_matches_unfused(const float *y, const float *want, size_t n_y, size_t hw, int w_out,
                                 const char *what)
{
    int ok = is_poison(&y[0]) && is_poison(&y[n_y + 1]);
    T_CHECK(ok, "%s: wrote outside y", what);
    for (size_t i = 0; i < n_y && ok; i++)
        if (memcmp(&y[1 + i], &want[i], sizeof *y) != 0) {
            T_CHECK(0, "%s: index %zu (channel %zu, row %zu, column %zu) got %.9g, unfused %.9g", what, i, i / hw,
                    i % hw / (size_t)w_out, i % (size_t)w_out, (double)y[1 + i], (double)want[i]);
            ok = 0;
        }
    return ok;
}

static int part_contains(const kernels_part *part, size_t hw, size_t i)
{
    const size_t at = part->axis == KERNELS_PART_CHANNELS ? i / hw : i % hw;
    return at >= (size_t)part->lo && at < (size_t)part->hi;
}

/* Checks the parts of pc for nth = 2, 3, 5 against want; describes a failure with what. */
static int check_parts(const part_case *pc, const float *want, const char *what)
{
    static const int nths[] = {2, 3, 5};
    const size_t n = (size_t)pc->c * pc->hw;
    float *y = alloc_floats(n), *all = alloc_floats(n);
    int ok = 1;
    for (size_t t = 0; t < sizeof nths / sizeof *nths && ok; t++) {
        const int nth = nths[t];
        fill_poison(all, n);
        int expect_lo = 0;
        for (int ith = 0; ith < nth && ok; ith++) {
            const kernels_part part = pc->split(pc, ith, nth);
            const int extent = part.axis == KERNELS_PART_CHANNELS ? pc->c : (int)pc->hw;
            if (part.lo != expect_lo || part.hi < part.lo || part.hi > extent ||
                (ith == nth - 1 && part.hi != extent)) {
                T_CHECK(0, "%s: part %d of %d is [%d, %d) (axis %d), expected to start at %d and "
                        "end by %d", what, ith, nth, part.lo, part.hi, (int)part.axis, expect_lo, extent);
                ok = 0;
                break;
            }
            expect_lo = part.hi;
            fill_poison(y, n);
            pc->run(pc, &part, y);
            for (size_t i = 0; i < n; i++) {
                const int inside = part_contains(&part, pc->hw, i);
                if (inside ? memcmp(&y[i], &want[i], sizeof *y) != 0 : !is_poison(&y[i])) {
                    T_CHECK(0, "%s: part %d of %d [%d, %d) (axis %d): index %zu (channel %zu) %s: "
                            "got %.9g want %.9g", what, ith, nth, part.lo, part.hi, (int)part.axis, i,
                            i / pc->hw, inside ? "differs from the whole call" : "was written outside the part",
                            (double)y[i], inside ? (double)want[i] : NAN);
                    ok = 0;
                    break;
                }
                if (inside) all[i] = y[i];
            }
        }
        if (ok && memcmp(all, want, n * sizeof *all) != 0) {
            T_CHECK(0, "%s: the %d parts together differ from the whole call", what, nth);
            ok = 0;
        }
    }
    free(y);
    free(all);
    return ok;
}

static kernels_part split_packed(const part_case *pc, int ith, int nth)
{
    return conv2d_packed_part(pc->conv, ith, nth);
}

/* Forced alternatives the helper may not pick for a given shape: output channels in 6-row
 * panels, output positions in 64-column panels (GEMM path). */
static kernels_part split_packed_channels(const part_case *pc, int ith, int nth)
{
    return kernels_part_split(KERNELS_PART_CHANNELS, pc->conv->c_out, KERNELS_GEMM_MR, ith, nth);
}

static kernels_part split_packed_positions(const part_case *pc, int ith, int nth)
{
    return kernels_part_split(KERNELS_PART_POSITIONS, (int)pc->hw, 64, ith, nth);
}

static void run_packed(const part_case *pc, const kernels_part *part, float *y)
{
    conv2d_forward_packed_fused_part(pc->conv, pc->x, pc->scale, pc->w, pc->bias, pc->res, y,
                                     pc->scratch, part);
}

/* conv2d_forward_packed_fused_part: GEMM (pointwise, im2col, grouped, fused scale / residual),
 * Winograd (every variant, one block and several) and stem shapes. */
static void test_conv_packed_parts(void)
{
    /* {c_in, c_out, groups, h, w, k_h, k_w, stride, pad_h, pad_w, scale, residual} */
    static const int cases[][12] = {
        {16, 40, 1, 14, 14, 1, 1, 1, 0, 0, 0, 0},   {8, 16, 1, 112, 112, 1, 1, 1, 0, 0, 0, 0},
        {24, 17, 1, 61, 59, 1, 1, 1, 0, 0, 1, 1},   {120, 112, 1, 14, 14, 1, 1, 1, 0, 0, 1, 0},
        {200, 80, 1, 9, 7, 1, 1, 1, 0, 0, 1, 1},    {13, 37, 1, 7, 7, 1, 1, 1, 0, 0, 0, 1},
        {3, 64, 1, 67, 67, 11, 11, 4, 2, 2, 0, 0},  {17, 29, 1, 35, 33, 3, 3, 2, 0, 0, 0, 0},
        {3, 64, 1, 224, 224, 11, 11, 4, 2, 2, 0, 0}, {2, 13, 1, 61, 67, 5, 6, 2, 2, 3, 0, 0},
        {12, 50, 1, 15, 17, 5, 5, 2, 2, 2, 0, 0},   {10, 22, 2, 19, 21, 3, 3, 1, 1, 1, 0, 0},
        {12, 18, 3, 41, 40, 1, 1, 1, 0, 0, 0, 0},   {7, 5, 1, 3, 3, 3, 3, 1, 1, 1, 0, 0},
        {32, 48, 1, 13, 13, 3, 3, 1, 1, 1, 0, 0},   {19, 35, 1, 35, 35, 3, 3, 1, 1, 1, 0, 0},
        {8, 13, 1, 75, 71, 3, 3, 1, 1, 1, 0, 0},    {11, 20, 1, 27, 25, 5, 5, 1, 2, 2, 0, 0},
        {16, 23, 1, 17, 17, 1, 7, 1, 0, 3, 0, 0},   {16, 23, 1, 17, 17, 7, 1, 1, 3, 0, 0, 0},
        {6, 9, 1, 80, 70, 7, 1, 1, 3, 0, 0, 0},     {3, 16, 1, 224, 224, 3, 3, 2, 1, 1, 0, 0},
        {6, 9, 1, 70, 80, 1, 7, 1, 0, 3, 0, 0},     {130, 20, 1, 17, 17, 7, 1, 1, 3, 0, 0, 0},
        {19, 10, 1, 80, 99, 3, 3, 1, 1, 1, 0, 0},
        {3, 24, 1, 37, 41, 3, 3, 2, 1, 1, 0, 0},    {3, 32, 1, 299, 299, 3, 3, 2, 0, 0, 0, 0},
        {300, 26, 1, 7, 7, 1, 1, 1, 0, 0, 1, 1},    {160, 50, 1, 7, 7, 1, 1, 1, 0, 0, 0, 0},
        {150, 13, 1, 14, 28, 1, 1, 1, 0, 0, 0, 1},  {140, 112, 1, 14, 14, 1, 1, 1, 0, 0, 0, 1},
    };
    test_begin();
    rng r = {77};
    int n_failed = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const int *c = cases[ci];
        conv2d_params p = {0};
        p.c_in = c[0];
        p.c_out = c[1];
        p.groups = c[2];
        p.h_in = c[3];
        p.w_in = c[4];
        p.k_h = c[5];
        p.k_w = c[6];
        p.stride_h = p.stride_w = c[7];
        p.pad_t = p.pad_b = c[8];
        p.pad_l = p.pad_r = c[9];
        p.h_out = kernels_out_size(p.h_in, p.k_h, p.stride_h, p.pad_t, p.pad_b, 0);
        p.w_out = kernels_out_size(p.w_in, p.k_w, p.stride_w, p.pad_l, p.pad_r, 0);
        p.act = (act_kind)(ci % 5);
        if (c[10] || c[11]) p.act = ACT_NONE == p.act || !c[11] ? p.act : ACT_NONE;
        const size_t n_x = (size_t)p.c_in * p.h_in * p.w_in, hw = (size_t)p.h_out * p.w_out;
        const size_t n_y = (size_t)p.c_out * hw;
        float *x = alloc_random(n_x, &r), *bias = alloc_random((size_t)p.c_out, &r);
        float *w = alloc_random((size_t)p.c_out * (p.c_in / p.groups) * p.k_h * p.k_w, &r);
        float *scale = c[10] ? alloc_random((size_t)p.c_in, &r) : NULL;
        float *res = c[11] ? alloc_random(n_y, &r) : NULL;
        size_t n_scratch = conv2d_packed_scratch_floats(&p);
        if (scale && conv2d_packed_fused_scratch_floats(&p) > n_scratch)
            n_scratch = conv2d_packed_fused_scratch_floats(&p);
        float *packed = alloc_floats(conv2d_packed_floats(&p)), *scratch = alloc_nan(n_scratch);
        float *want = alloc_floats(n_y);
        conv2d_pack_weights(&p, w, packed);
        fill_poison(want, n_y);
        conv2d_forward_packed_fused(&p, x, scale, packed, bias, res, want, scratch);
        part_case pc = {.split = split_packed, .run = run_packed, .c = p.c_out, .hw = hw, .conv = &p,
                        .x = x, .w = packed, .bias = bias, .scale = scale, .res = res, .scratch = scratch};
        char what[256];
        const conv_path planned = conv_planned_path(&p);
        const char *path = planned == CONV_PATH_STEM ? "stem" : planned == CONV_PATH_WINOGRAD ? "winograd" : "gemm";
        snprintf(what, sizeof what, "%s conv in %dx%dx%d out %dx%dx%d k %dx%d s %d groups %d scale %d residual %d",
                 path, p.c_in, p.h_in, p.w_in, p.c_out, p.h_out, p.w_out, p.k_h, p.k_w, p.stride_h, p.groups,
                 c[10], c[11]);
        int ok = check_parts(&pc, want, what);
        if (planned != CONV_PATH_STEM && p.groups == 1) {
            pc.split = split_packed_channels;
            ok &= check_parts(&pc, want, what);
        }
        if (planned == CONV_PATH_GEMM) {
            pc.split = split_packed_positions;
            ok &= check_parts(&pc, want, what);
        }
        n_failed += !ok;
        free(x);
        free(bias);
        free(w);
        free(scale);
        free(res);
        free(packed);
        free(scratch);
        free(want);
    }
    if (n_failed) printf("#   %d of %zu shapes failed\n", n_failed, sizeof cases / sizeof *cases);
    test_end("conv2d_forward_packed_fused_part: 2/3/5 parts bit-identical to the whole, nothing written outside");
}

/* ---- Winograd and stem kernels on one instruction-set variant (the *_forward_part_isa) ---- */

static cpu_isa isa_test_isa; /* the variant run_isa runs */

static kernels_part split_isa(const part_case *pc, int ith, int nth)
{
    return kernels_stem_applies(pc->conv) ? kernels_stem_part(pc->conv, ith, nth) : kernels_wino_part(pc->conv, ith, nth);
}

static void run_isa(const part_case *pc, const kernels_part *part, float *y)
{
    if (kernels_stem_applies(pc->conv))
        kernels_stem_forward_part_isa(pc->conv, pc->x, pc->w, pc->bias, y, part, isa_test_isa);
    else
        kernels_wino_forward_part_isa(pc->conv, pc->x, pc->w, pc->bias, y, pc->scratch, part, isa_test_isa);
}

/* One stem or Winograd convolution on variant isa: poisoned output with guard cells vs the naive
 * reference, then 2/3/5 parts (the kernel's split, and for Winograd output-channel panels too)
 * bit-identical to the whole; with AVX-512F on the CPU, the AVX2 variant bit-identical to the
 * AVX-512 one. Returns 1 if good. */
static int isa_case(const conv2d_params *p, int with_bias, cpu_isa isa, rng *r)
{
    const int stem = kernels_stem_applies(p);
    const size_t n_x = (size_t)p->c_in * p->h_in * p->w_in, n_y = (size_t)p->c_out * p->h_out * p->w_out;
    const size_t hw = (size_t)p->h_out * p->w_out, n_w = (size_t)p->c_out * p->c_in * p->k_h * p->k_w;
    float *x = alloc_random(n_x, r), *w = alloc_random(n_w, r);
    float *bias = with_bias ? alloc_random((size_t)p->c_out, r) : NULL;
    float *packed = alloc_nan(stem ? n_w : kernels_wino_packed_floats(p));
    float *scratch = stem ? NULL : alloc_nan(kernels_wino_scratch_floats(p));
    float *buf = alloc_floats(n_y + 2), *y = buf + 1, *want_bits = alloc_floats(n_y);
    double *want = alloc_doubles(n_y), *mag = alloc_doubles(n_y);
    char what[200];
    snprintf(what, sizeof what, "%s (%s) in %dx%dx%d out %dx%dx%d k %dx%d s %d pad t%d l%d b%d r%d act %s bias %d "
             "train %d", stem ? "stem" : "winograd", isa == CPU_ISA_AVX512 ? "AVX-512" : "AVX2", p->c_in, p->h_in,
             p->w_in, p->c_out, p->h_out, p->w_out, p->k_h, p->k_w, p->stride_h, p->pad_t, p->pad_l, p->pad_b,
             p->pad_r, act_names[p->act], with_bias, p->train);
    if (stem)
        kernels_stem_pack(p, w, packed);
    else
        kernels_wino_pack(p, w, packed);
    fill_poison(buf, n_y + 2);
    const kernels_part all = stem ? kernels_stem_part(p, 0, 1) : (kernels_part){KERNELS_PART_CHANNELS, 0, p->c_out};
    part_case pc = {.split = split_isa, .run = run_isa, .c = p->c_out, .hw = hw, .conv = p, .x = x, .w = packed,
                    .bias = bias, .scratch = scratch};
    isa_test_isa = isa;
    run_isa(&pc, &all, y);
    ref_conv(p, x, w, bias, want, mag);
    const long bad = first_bad(y, want, mag, n_y);
    int ok = bad < 0 && is_poison(&buf[0]) && is_poison(&buf[n_y + 1]);
    if (bad >= 0)
        T_CHECK(0, "%s: first bad index %ld (c %ld, h %ld, w %ld): got %.9g want %.9g", what, bad, bad / (long)hw,
                bad % (long)hw / p->w_out, bad % (long)p->w_out, (double)y[bad], want[bad]);
    else if (!ok)
        T_CHECK(0, "%s: wrote outside the output", what);
    if (ok) {
        memcpy(want_bits, y, n_y * sizeof *y);
        ok = check_parts(&pc, want_bits, what);
        if (!stem) {
            pc.split = split_packed_channels;
            ok = ok && check_parts(&pc, want_bits, what);
        }
    }
    if (ok && isa == CPU_ISA_AVX2 && cpu_isa_best() >= CPU_ISA_AVX512) {
        isa_test_isa = CPU_ISA_AVX512;
        run_isa(&pc, &all, y);
        ok = memcmp(y, want_bits, n_y * sizeof *y) == 0;
        T_CHECK(ok, "%s: AVX2 and AVX-512 differ", what);
    }
    free(x);
    free(w);
    free(bias);
    free(packed);
    free(scratch);
    free(buf);
    free(want_bits);
    free(want);
    free(mag);
    return ok;
}

/* Whether the stem kernel on isa (no activation) gives, bit for bit, the chain both variants document:
 * per output, fmaf from the bias (0 without) over input channels, kernel rows inside the input
 * (rows above / below it skipped) and taps, padding columns on zeros. A mismatch is reported. */
static int stem_bits_match(const conv2d_params *p, int with_bias, cpu_isa isa, rng *r)
{
    conv2d_params q = *p;
    q.act = ACT_NONE;
    const size_t n_x = (size_t)q.c_in * q.h_in * q.w_in, n_y = (size_t)q.c_out * q.h_out * q.w_out;
    const size_t n_w = (size_t)q.c_out * q.c_in * 9;
    float *x = alloc_random(n_x, r), *w = alloc_random(n_w, r), *packed = alloc_nan(n_w);
    float *bias = with_bias ? alloc_random((size_t)q.c_out, r) : NULL, *y = alloc_nan(n_y), *want = alloc_nan(n_y);
    kernels_stem_pack(&q, w, packed);
    const kernels_part all = kernels_stem_part(&q, 0, 1);
    kernels_stem_forward_part_isa(&q, x, packed, bias, y, &all, isa);
    for (int co = 0; co < q.c_out; co++)
        for (int oh = 0; oh < q.h_out; oh++)
            for (int ow = 0; ow < q.w_out; ow++) {
                float acc = bias ? bias[co] : 0.0f;
                for (int ci = 0; ci < q.c_in; ci++)
                    for (int i = 0; i < 3; i++) {
                        const int ih = 2 * oh - q.pad_t + i;
                        if (ih < 0 || ih >= q.h_in) continue;
                        for (int j = 0; j < 3; j++) {
                            const int iw = 2 * ow - q.pad_l + j;
                            const float v = iw >= 0 && iw < q.w_in ? x[((size_t)ci * q.h_in + ih) * q.w_in + iw] : 0.0f;
                            acc = fmaf(w[((size_t)co * q.c_in + ci) * 9 + i * 3 + j], v, acc);
                        }
                    }
                want[((size_t)co * q.h_out + oh) * q.w_out + ow] = acc;
            }
    const int match = memcmp(y, want, n_y * sizeof *y) == 0;
    T_CHECK(match, "stem (%s) %d -> %d, %dx%d pad %d/%d bias %d: not the fmaf chain's bits",
            isa == CPU_ISA_AVX512 ? "AVX-512" : "AVX2", q.c_in, q.c_out, q.h_in, q.w_in, q.pad_t, q.pad_l, with_bias);
    free(x);
    free(w);
    free(packed);
    free(bias);
    free(y);
    free(want);
    return match;
}

/* First-layer (stem) kernel on isa: 3x3 stride 2 on 1..4 channels, output channels 1..64 (passes
 * and their remainders; AVX2 passes of 6: one whole pass, 6 + 5), rows of one vector, several and a
 * tail, every padding mode, Inception's 299x299 unpadded, a row wider than a column block (AVX2: 128
 * outputs); each also bit for bit against the documented fmaf chain (stem_bits_match). */
static void test_stem_isa(cpu_isa isa, const char *name)
{
    /* {c_in, c_out, h, w, pad mode} */
    static const int cases[][5] = {
        {3, 16, 224, 224, PAD_SYM}, {3, 24, 39, 37, PAD_SYM},     {3, 32, 45, 47, PAD_NONE}, {1, 5, 9, 33, PAD_TF_SAME},
        {4, 64, 19, 21, PAD_ASYM},  {2, 17, 4, 5, PAD_SYM},       {3, 32, 299, 299, PAD_NONE}, {3, 13, 20, 17, PAD_SYM},
        {3, 1, 16, 18, PAD_ASYM},   {4, 12, 33, 34, PAD_TF_SAME}, {2, 40, 7, 3, PAD_SYM},    {3, 25, 35, 36, PAD_NONE},
        {3, 24, 9, 291, PAD_SYM},   {1, 7, 6, 275, PAD_TF_SAME}, {3, 6, 11, 13, PAD_SYM},  {2, 11, 14, 30, PAD_ASYM},
    };
    test_begin();
    rng r = {37};
    int n_failed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const int *c = cases[i];
        conv2d_params p;
        conv_setup(&p, c[0], c[1], 1, c[2], c[3], 3, 3, 2, 2, (pad_mode)c[4], (act_kind)(i % 5));
        T_CHECK(kernels_stem_applies(&p), "case %zu does not take the stem kernel", i);
        n_failed += !isa_case(&p, i % 4 != 3, isa, &r) || !stem_bits_match(&p, i % 4 != 3, isa, &r);
    }
    if (n_failed) printf("#   %d of %zu convolutions failed\n", n_failed, sizeof cases / sizeof *cases);
    test_end(name);
}

/* Every Winograd variant on isa: 3x3 (F(4x4) / F(2x2)), 5x5 (F(4x4), training F(2x2)), 1x7 / 7x1
 * (F(6, 7) along rows, 1x7 transposed; training F(2, 7)), 1x3 / 3x1 (F(2, 3) along the kernel, AVX2
 * CPUs only, not training; Inception's 8x8) on odd and non-square maps in every padding mode, tile rows of fewer than 8, 8..15 and more tiles (the flat lanes of 7x1 / transposed 1x7
 * across tile rows), several tile-row blocks, K blocks (c_in 130), output-channel remainders; and the
 * strided kernels spanning 2..3 strides (polyphase). */
static void test_wino_isa(cpu_isa isa, const char *name)
{
    static const int kernels[][2] = {{3, 3}, {5, 5}, {1, 7}, {7, 1}, {1, 3}, {3, 1}};
    static const int sizes[][2] = {{17, 17}, {35, 35}, {23, 29}, {20, 12}, {12, 20}, {9, 70}, {70, 9}, {61, 47}, {8, 8}};
    static const int chans[][2] = {{3, 5}, {8, 13}, {130, 7}, {5, 12}};
    /* {c_in, c_out, h, w, k_h, k_w, stride, pad mode} */
    static const int strided[][8] = {
        {3, 64, 224, 224, 11, 11, 4, PAD_SYM}, {3, 13, 111, 109, 11, 11, 4, PAD_SYM},
        {2, 7, 61, 67, 5, 5, 2, PAD_TF_SAME},  {5, 9, 50, 47, 6, 6, 2, PAD_ASYM},
        {4, 13, 70, 66, 8, 8, 3, PAD_NONE},    {6, 8, 40, 45, 9, 9, 3, PAD_ASYM},
        {3, 5, 90, 93, 12, 9, 4, PAD_ASYM},
    };
    /* small maps that take Winograd on AVX2 CPUs only (64+ input channels): 3x3 F(2x2) from 16
     * tiles, 1x3 / 3x1 F(2, 3) from 32; {c_in, c_out, h, w, k_h, k_w, pad mode} */
    static const int small[][7] = {
        {130, 7, 8, 8, 3, 3, PAD_SYM},    {64, 13, 9, 9, 3, 3, PAD_ASYM}, {70, 9, 8, 8, 1, 3, PAD_SYM},
        {130, 11, 8, 8, 3, 1, PAD_SYM},   {64, 5, 9, 7, 1, 3, PAD_TF_SAME}, {65, 6, 7, 11, 3, 1, PAD_ASYM},
        {66, 12, 8, 16, 3, 1, PAD_SYM},
    };
    test_begin();
    rng r = {31};
    int idx = 0, n_cases = 0, n_failed = 0;
    for (size_t ki = 0; ki < sizeof kernels / sizeof *kernels; ki++)
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
            for (int mode = 0; mode < N_PAD_MODES; mode++, idx++) {
                conv2d_params p;
                const int *ch = chans[idx % 4];
                if (!conv_setup(&p, ch[0], ch[1], 1, sizes[si][0], sizes[si][1], kernels[ki][0], kernels[ki][1], 1, 1,
                                (pad_mode)mode, (act_kind)(idx % 5)))
                    continue;
                p.train = idx % 3 == 2;
                if (!kernels_wino_applies(&p)) continue;
                n_cases++;
                n_failed += !isa_case(&p, idx % 4 != 3, isa, &r);
            }
    for (size_t i = 0; i < sizeof strided / sizeof *strided; i++, idx++) {
        const int *c = strided[i];
        conv2d_params p;
        conv_setup(&p, c[0], c[1], 1, c[2], c[3], c[4], c[5], c[6], c[6], (pad_mode)c[7], (act_kind)(idx % 5));
        T_CHECK(kernels_wino_applies(&p), "strided case %zu does not take Winograd", i);
        n_cases++;
        n_failed += !isa_case(&p, idx % 4 != 3, isa, &r);
    }
    for (size_t i = 0; i < sizeof small / sizeof *small; i++, idx++) {
        const int *c = small[i];
        conv2d_params p;
        conv_setup(&p, c[0], c[1], 1, c[2], c[3], c[4], c[5], 1, 1, (pad_mode)c[6], (act_kind)(idx % 5));
        T_CHECK(kernels_wino_applies(&p) == (cpu_isa_best() < CPU_ISA_AVX512), "small case %zu: Winograd %d", i,
                kernels_wino_applies(&p));
        if (!kernels_wino_applies(&p)) continue;
        n_cases++;
        n_failed += !isa_case(&p, idx % 4 != 3, isa, &r);
    }
    if (n_failed) printf("#   %d of %d convolutions failed\n", n_failed, n_cases);
    T_CHECK(n_cases > 100, "only %d Winograd cases", n_cases);
    test_end(name);
}

static kernels_part split_channels(const part_case *pc, int ith, int nth)
{
    return kernels_part_split(KERNELS_PART_CHANNELS, pc->c, 1, ith, nth);
}

static void run_dw(const part_case *pc, const kernels_part *part, float *y)
{
    dwconv2d_forward_part(pc->conv, pc->x, pc->w, pc->bias, y, part->lo, part->hi);
}

static kernels_part split_rows(const part_case *pc, int ith, int nth)
{
    return kernels_part_split(KERNELS_PART_POSITIONS, (int)pc->hw, pc->conv->w_out, ith, nth);
}

static void run_dw_rows(const part_case *pc, const kernels_part *part, float *y)
{
    dwconv2d_forward_rows(pc->conv, pc->x, pc->w, pc->bias, y, part->lo / pc->conv->w_out,
                          part->hi / pc->conv->w_out);
}

static void run_pool(const part_case *pc, const kernels_part *part, float *y)
{
    pool2d_forward_part(pc->pool, pc->x, y, part->lo, part->hi);
}

/* dwconv2d_forward_part and pool2d_forward_part: channel parts of every kernel variant's shapes;
 * dwconv2d_forward_rows: row parts of the same, also with the bottom / right padding one less (TF
 * SAME's asymmetric padding). */
static void test_dw_pool_parts(void)
{
    /* {c, h, w, k, stride, pad} */
    static const int cases[][6] = {{16, 112, 112, 3, 1, 1}, {17, 14, 14, 5, 1, 2}, {7, 7, 7, 3, 1, 1},
                                   {24, 56, 56, 3, 2, 1},   {5, 29, 37, 5, 2, 2},  {11, 13, 11, 7, 1, 3},
                                   {3, 1, 1, 3, 1, 1},      {9, 35, 35, 3, 2, 0}};
    test_begin();
    rng r = {78};
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const int *c = cases[ci];
        conv2d_params p = {0};
        p.c_in = p.c_out = p.groups = c[0];
        p.h_in = c[1];
        p.w_in = c[2];
        p.k_h = p.k_w = c[3];
        p.stride_h = p.stride_w = c[4];
        p.pad_t = p.pad_b = p.pad_l = p.pad_r = c[5];
        p.h_out = kernels_out_size(p.h_in, p.k_h, p.stride_h, p.pad_t, p.pad_b, 0);
        p.w_out = kernels_out_size(p.w_in, p.k_w, p.stride_w, p.pad_l, p.pad_r, 0);
        p.act = (act_kind)(ci % 5);
        const size_t hw = (size_t)p.h_out * p.w_out, n_y = (size_t)p.c_out * hw;
        float *x = alloc_random((size_t)p.c_in * p.h_in * p.w_in, &r);
        float *w = alloc_random((size_t)p.c_out * p.k_h * p.k_w, &r), *bias = alloc_random((size_t)p.c_out, &r);
        float *want = alloc_floats(n_y);
        fill_poison(want, n_y);
        dwconv2d_forward(&p, x, w, bias, want);
        part_case pc = {.split = split_channels, .run = run_dw, .c = p.c_out, .hw = hw, .conv = &p, .x = x,
                        .w = w, .bias = bias};
        char what[200];
        snprintf(what, sizeof what, "depthwise %dx%dx%d k %d s %d pad %d", p.c_in, p.h_in, p.w_in, p.k_h,
                 p.stride_h, p.pad_t);
        check_parts(&pc, want, what);
        pc.split = split_rows;
        pc.run = run_dw_rows;
        snprintf(what, sizeof what, "depthwise rows %dx%dx%d k %d s %d pad %d", p.c_in, p.h_in, p.w_in, p.k_h,
                 p.stride_h, p.pad_t);
        check_parts(&pc, want, what);
        conv2d_params pa = p;
        pa.pad_b = pa.pad_r = p.pad_b - 1;
        pa.h_out = kernels_out_size(pa.h_in, pa.k_h, pa.stride_h, pa.pad_t, pa.pad_b, 0);
        pa.w_out = kernels_out_size(pa.w_in, pa.k_w, pa.stride_w, pa.pad_l, pa.pad_r, 0);
        if (p.pad_b > 0 && pa.h_out > 0 && pa.w_out > 0) {
            const size_t hw_a = (size_t)pa.h_out * pa.w_out;
            float *want_a = alloc_floats((size_t)pa.c_out * hw_a);
            fill_poison(want_a, (size_t)pa.c_out * hw_a);
            dwconv2d_forward(&pa, x, w, bias, want_a);
            part_case pr = {.split = split_rows, .run = run_dw_rows, .c = pa.c_out, .hw = hw_a, .conv = &pa,
                            .x = x, .w = w, .bias = bias};
            snprintf(what, sizeof what, "depthwise rows %dx%dx%d k %d s %d pad %d/%d", pa.c_in, pa.h_in, pa.w_in,
                     pa.k_h, pa.stride_h, pa.pad_t, pa.pad_b);
            check_parts(&pr, want_a, what);
            free(want_a);
        }

        pool2d_params q = {.kind = ci % 2 ? POOL_AVG : POOL_MAX, .c = c[0], .h_in = c[1], .w_in = c[2],
                           .k_h = c[3], .k_w = c[3], .stride_h = c[4] + 1, .stride_w = c[4] + 1,
                           .count_include_pad = (int)(ci % 3 == 0)};
        q.pad_t = q.pad_b = q.pad_l = q.pad_r = c[5] < c[3] / 2 + 1 ? c[5] : 0;
        q.h_out = kernels_out_size(q.h_in, q.k_h, q.stride_h, q.pad_t, q.pad_b, (int)(ci % 2));
        q.w_out = kernels_out_size(q.w_in, q.k_w, q.stride_w, q.pad_l, q.pad_r, (int)(ci % 2));
        const size_t hw_q = (size_t)q.h_out * q.w_out;
        float *want_q = alloc_floats((size_t)q.c * hw_q);
        fill_poison(want_q, (size_t)q.c * hw_q);
        pool2d_forward(&q, x, want_q);
        part_case pq = {.split = split_channels, .run = run_pool, .c = q.c, .hw = hw_q, .pool = &q, .x = x};
        snprintf(what, sizeof what, "%s pool %dx%dx%d k %d s %d pad %d", q.kind == POOL_MAX ? "max" : "avg",
                 q.c, q.h_in, q.w_in, q.k_h, q.stride_h, q.pad_t);
        check_parts(&pq, want_q, what);
        free(x);
        free(w);
        free(bias);
        free(want);
        free(want_q);
    }
    test_end("dwconv2d_forward_part, pool2d_forward_part: 2/3/5 channel parts, dwconv2d_forward_rows: 2/3/5 row "
             "parts, bit-identical, nothing outside");
}

static kernels_part split_linear(const part_case *pc, int ith, int nth) { return linear_part(pc->n_out, ith, nth); }

static void run_linear(const part_case *pc, const kernels_part *part, float *y)
{
    linear_forward_part(pc->n_in, pc->n_out, pc->x, pc->w, pc->bias, (act_kind)(pc->n_out % 5), y, part);
}

static void test_linear_parts(void)
{
    static const int shapes[][2] = {{9216, 4096}, {1000, 1001}, {37, 3}, {576, 1024}, {17, 13}};
    test_begin();
    rng r = {79};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const int n_in = shapes[i][0], n_out = shapes[i][1];
        float *x = alloc_random((size_t)n_in, &r), *w = alloc_random((size_t)n_in * n_out, &r);
        float *bias = i % 2 ? NULL : alloc_random((size_t)n_out, &r), *want = alloc_floats((size_t)n_out);
        fill_poison(want, (size_t)n_out);
        linear_forward(n_in, n_out, x, w, bias, (act_kind)(n_out % 5), want);
        part_case pc = {.split = split_linear, .run = run_linear, .c = n_out, .hw = 1, .x = x, .w = w,
                        .bias = bias, .n_in = n_in, .n_out = n_out};
        char what[100];
        snprintf(what, sizeof what, "linear %d -> %d bias %d", n_in, n_out, bias != NULL);
        check_parts(&pc, want, what);
        free(x);
        free(w);
        free(bias);
        free(want);
    }
    test_end("linear_forward_part: 2/3/5 row parts bit-identical, nothing written outside");
}

/* linear_batch_forward: every row of a batch of 1..9, 17 or 35 inputs equals linear_forward of that input
 * alone bit for bit (and the naive double reference within tolerance); outputs NaN-poisoned first,
 * exact-size buffers (ASan). Sizes: tails of the 16-float vectors and of the 4-row blocks, and the
 * real heads (AlexNet's 9216 -> 4096 sliced to keep it short, 960 -> 1280, 2048 -> 1000). */
static void test_linear_batch(cpu_isa isa, const char *name)
{
    static const int sizes[][2] = {{17, 5}, {1, 1}, {16, 6}, {33, 7}, {100, 33}, {4099, 3}, {960, 13},
                                   {2048, 9}, {9216, 11}};
    test_begin();
    rng r = {81};
    int reports = 0;
    static const int batches[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 17, 35}; /* past the 16-input groups too */
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
        for (size_t bi_ = 0; bi_ < sizeof batches / sizeof *batches; bi_++) {
            const int n_batch = batches[bi_];
            if (n_batch > 9 && sizes[si][0] * sizes[si][1] > 100000) continue; /* keeps the test short */
            const int n_in = sizes[si][0], n_out = sizes[si][1], with_bias = (n_batch + (int)si) % 2;
            const act_kind act = (act_kind)((n_batch + (int)si) % 5);
            const size_t n_x = (size_t)n_batch * n_in, n_y = (size_t)n_batch * n_out;
            float *x = alloc_random(n_x, &r), *w = alloc_random((size_t)n_in * n_out, &r);
            float *b = with_bias ? alloc_random((size_t)n_out, &r) : NULL;
            float *y = alloc_floats(n_y), *one = alloc_floats((size_t)n_out);
            double *want = alloc_doubles((size_t)n_out), *mag = alloc_doubles((size_t)n_out);
            fill_poison(y, n_y);
            linear_batch_forward_isa(n_in, n_out, n_batch, x, w, b, act, y, isa);
            for (int bi = 0; bi < n_batch; bi++) {
                const float *xb = x + (size_t)bi * n_in, *yb = y + (size_t)bi * n_out;
                fill_poison(one, (size_t)n_out);
                linear_forward_isa(n_in, n_out, xb, w, b, act, one, isa);
                for (int o = 0; o < n_out; o++) {
                    double sum = b ? b[o] : 0, m = fabs(sum);
                    for (int i = 0; i < n_in; i++) {
                        double t = (double)w[(size_t)o * n_in + i] * xb[i];
                        sum += t;
                        m += fabs(t);
                    }
                    want[o] = ref_act(act, sum);
                    mag[o] = m * (act == ACT_HSWISH ? 1 + fabs(sum) / 3 : 1);
                }
                long bad = first_bad(yb, want, mag, (size_t)n_out);
                int same = !memcmp(yb, one, (size_t)n_out * sizeof *yb);
                if ((bad >= 0 || !same) && reports++ < MAX_REPORTS)
                    T_CHECK(0, "linear batch %d->%d x%d act %s bias %d, input %d: %s (index %ld got %.9g want %.9g)",
                            n_in, n_out, n_batch, act_names[act], with_bias, bi,
                            same ? "off the reference" : "differs from linear_forward of the input alone", bad,
                            bad < 0 ? 0.0 : (double)yb[bad], bad < 0 ? 0.0 : want[bad]);
                else if (bad >= 0 || !same)
                    T_CHECK(0, "(more failures)");
            }
            free(x);
            free(w);
            free(b);
            free(y);
            free(one);
            free(want);
            free(mag);
        }
    test_end(name);
}

typedef struct {
    part_case pc;
    int n_batch;
} batch_part_case;

static kernels_part split_linear_batch(const part_case *pc, int ith, int nth)
{
    return linear_part(pc->n_out, ith, nth);
}

/* y is [n_out][n_batch] for check_parts' channel layout: the part's rows of every input, written
 * from a [n_batch][n_out] buffer that is NaN-poisoned outside the part. */
static void run_linear_batch(const part_case *pc, const kernels_part *part, float *y)
{
    const batch_part_case *bc = (const batch_part_case *)pc;
    const size_t n = (size_t)bc->n_batch * pc->n_out;
    float *t = alloc_floats(n);
    fill_poison(t, n);
    linear_batch_forward_part(pc->n_in, pc->n_out, bc->n_batch, pc->x, pc->w, pc->bias, (act_kind)(pc->n_out % 5), t,
                              part);
    for (int b = 0; b < bc->n_batch; b++)
        for (int o = 0; o < pc->n_out; o++) y[(size_t)o * bc->n_batch + b] = t[(size_t)b * pc->n_out + o];
    free(t);
}

static void test_linear_batch_parts(void)
{
    static const int shapes[][3] = {{9216, 64, 8}, {1000, 1001, 3}, {37, 3, 5}, {960, 1280, 2}, {17, 13, 9}};
    test_begin();
    rng r = {82};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const int n_in = shapes[i][0], n_out = shapes[i][1], n_batch = shapes[i][2];
        float *x = alloc_random((size_t)n_batch * n_in, &r), *w = alloc_random((size_t)n_in * n_out, &r);
        float *bias = i % 2 ? NULL : alloc_random((size_t)n_out, &r);
        float *want = alloc_floats((size_t)n_batch * n_out);
        /* the whole batch-1 call per input, transposed to [n_out][n_batch] */
        float *one = alloc_floats((size_t)n_out);
        for (int b = 0; b < n_batch; b++) {
            linear_forward(n_in, n_out, x + (size_t)b * n_in, w, bias, (act_kind)(n_out % 5), one);
            for (int o = 0; o < n_out; o++) want[(size_t)o * n_batch + b] = one[o];
        }
        batch_part_case bc = {{.split = split_linear_batch, .run = run_linear_batch, .c = n_out, .hw = (size_t)n_batch,
                               .x = x, .w = w, .bias = bias, .n_in = n_in, .n_out = n_out},
                              n_batch};
        char what[100];
        snprintf(what, sizeof what, "linear batch %d -> %d x%d bias %d", n_in, n_out, n_batch, bias != NULL);
        check_parts(&bc.pc, want, what);
        free(x);
        free(w);
        free(bias);
        free(want);
        free(one);
    }
    test_end("linear_batch_forward_part: 2/3/5 row parts equal linear_forward per input, nothing written outside");
}

static kernels_part split_plan(const part_case *pc, int ith, int nth) { return conv2d_plan_part(pc->plan, ith, nth); }

static void run_plan(const part_case *pc, const kernels_part *part, float *y)
{
    conv2d_plan_forward_part(pc->plan, pc->x, NULL, NULL, y, pc->scratch, part);
}

/* conv2d_plan_fuse_pw_dwcb (pointwise + small-map depthwise, channel-blocked; AVX-512 or AVX2
 * kernels): the fused plan's output bit-identical to conv2d_forward_packed then dwconv2d_forward,
 * and its 2/3/5 parts to the whole. MobileNetV3's pairs (14x14 3x3 / 5x5, 14 -> 7, 28 -> 14),
 * channel counts not multiples of 8, 16 or of a channel group, K past one GEMM K block (the
 * repacking reads every block), maps whose positions are not whole tiles, every padding mode and
 * activation; on AVX2 also 28-wide outputs; pairs it must not take (7x7 maps, training convs, a
 * 28-wide output on AVX-512, a 56-wide map). */
static void test_conv_pw_dwcb(void)
{
    /* {c_in, c_exp, h, w, k, s, pad mode, pw act, dw act} */
    static const int cases[][9] = {
        {80, 200, 14, 14, 3, 1, PAD_SYM, ACT_HSWISH, ACT_HSWISH},  {112, 672, 14, 14, 5, 2, PAD_SYM, ACT_HSWISH, ACT_HSWISH},
        {40, 240, 14, 14, 5, 1, PAD_TF_SAME, ACT_HSWISH, ACT_HSWISH}, {24, 96, 28, 28, 5, 2, PAD_TF_SAME, ACT_HSWISH, ACT_NONE},
        {40, 240, 28, 28, 3, 2, PAD_SYM, ACT_RELU, ACT_RELU6},     {150, 37, 14, 14, 3, 1, PAD_SYM, ACT_NONE, ACT_HSIGMOID},
        {3, 17, 13, 15, 5, 2, PAD_ASYM, ACT_RELU6, ACT_RELU},      {1, 50, 11, 14, 3, 1, PAD_TF_SAME, ACT_HSIGMOID, ACT_HSWISH},
        {9, 64, 27, 15, 3, 2, PAD_NONE, ACT_RELU, ACT_NONE},       {20, 49, 12, 16, 5, 1, PAD_ASYM, ACT_HSWISH, ACT_RELU},
        /* AVX2 only: 28-wide outputs (the whole map one band of the 8-channel planes) */
        {24, 88, 28, 28, 3, 1, PAD_SYM, ACT_RELU, ACT_RELU},       {40, 123, 28, 28, 5, 1, PAD_TF_SAME, ACT_HSWISH, ACT_HSWISH},
        {58, 58, 28, 27, 3, 1, PAD_ASYM, ACT_RELU, ACT_NONE},
    };
    const size_t n_shared = 10; /* cases fused on both ISAs; the rest on AVX2 only */
    test_begin();
    rng r = {92};
    int n_failed = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const int *c = cases[ci];
        if (ci >= n_shared && cpu_isa_best() != CPU_ISA_AVX2) continue;
        conv2d_params pw, dw;
        conv_setup(&pw, c[0], c[1], 1, c[2], c[3], 1, 1, 1, 1, PAD_NONE, (act_kind)c[7]);
        conv_setup(&dw, c[1], c[1], c[1], c[2], c[3], c[4], c[4], c[5], c[5], (pad_mode)c[6], (act_kind)c[8]);
        char what[200];
        snprintf(what, sizeof what, "pw %d->%d %dx%d act %s, dw k %d s %d pad t%d l%d b%d r%d -> %dx%d act %s", c[0],
                 c[1], c[2], c[3], act_names[c[7]], c[4], c[5], dw.pad_t, dw.pad_l, dw.pad_b, dw.pad_r, dw.h_out,
                 dw.w_out, act_names[c[8]]);
        const size_t n_x = (size_t)pw.c_in * pw.h_in * pw.w_in, n_mid = (size_t)pw.c_out * pw.h_out * pw.w_out;
        const size_t hw = (size_t)dw.h_out * dw.w_out, n_y = (size_t)dw.c_out * hw;
        float *x = alloc_random(n_x, &r), *pw_w = alloc_random((size_t)pw.c_out * pw.c_in, &r);
        float *pw_b = alloc_random((size_t)pw.c_out, &r), *dw_w = alloc_random((size_t)dw.c_out * c[4] * c[4], &r);
        float *dw_b = alloc_random((size_t)dw.c_out, &r), *mid = alloc_nan(n_mid);
        float *want = alloc_floats(n_y), *y = alloc_floats(n_y + 2);
        conv2d_plan pl, pl_dw;
        conv2d_plan_init(&pl, &pw);
        conv2d_plan_init(&pl_dw, &dw);
        float *packed = alloc_nan(pl.packed_floats), *gemm_scratch = alloc_nan(conv2d_packed_scratch_floats(&pw) + 1);
        conv2d_plan_pack(&pl, pw_w, packed);
        pl.w = packed;
        pl.bias = pw_b;
        pl_dw.w = dw_w;
        pl_dw.bias = dw_b;
        conv2d_forward_packed(&pw, x, packed, pw_b, mid, gemm_scratch);
        dwconv2d_forward(&dw, mid, dw_w, dw_b, want);
        const int fused = conv2d_plan_fuse_pw_dwcb(&pl, &pl_dw, packed);
        int ok = fused && pl.path == CONV_PATH_PW_DWCB && conv2d_plan_splits(&pl);
        T_CHECK(ok, "%s: not fused (%d, path %d)", what, fused, (int)pl.path);
        float *scratch = ok ? alloc_nan(pl.scratch_floats) : NULL;
        if (ok) {
            fill_poison(y, n_y + 2);
            const kernels_part all = conv2d_plan_part(&pl, 0, 1);
            conv2d_plan_forward_part(&pl, x, NULL, NULL, y + 1, scratch, &all);
            ok = fused_matches_unfused(y, want, n_y, hw, dw.w_out, what);
            part_case pc = {.split = split_plan, .run = run_plan, .c = dw.c_out, .hw = hw, .x = x, .scratch = scratch,
                            .plan = &pl};
            ok &= check_parts(&pc, want, what);
        }
        n_failed += !ok;
        free(x);
        free(pw_w);
        free(pw_b);
        free(dw_w);
        free(dw_b);
        free(mid);
        free(want);
        free(y);
        free(packed);
        free(gemm_scratch);
        free(scratch);
    }
    /* pairs left unfused: a 7x7 map, a training conv, a 28-wide output (AVX-512), a 56-wide map
     * (AVX2: more than one band) */
    static const int no[][4] = {{7, 5, 1, 0}, {14, 3, 1, 1}, {28, 3, 1, 0}, {56, 5, 2, 0}};
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) {
        conv2d_params pw, dw;
        conv_setup(&pw, 16, 32, 1, no[i][0], no[i][0], 1, 1, 1, 1, PAD_NONE, ACT_RELU);
        conv_setup(&dw, 32, 32, 32, no[i][0], no[i][0], no[i][1], no[i][1], no[i][2], no[i][2], PAD_SYM, ACT_RELU);
        pw.train = no[i][3];
        T_CHECK(!conv2d_pw_dwcb_fusable(&pw, &dw) && (no[i][0] == 28 || !kernels_pw_dwcb8_fusable(&pw, &dw)),
                "%dx%d k %d train %d: fusable", no[i][0], no[i][0], no[i][1], no[i][3]);
    }
    if (n_failed) printf("#   %d of %zu shapes failed\n", n_failed, sizeof cases / sizeof *cases);
    test_end("conv2d_plan_fuse_pw_dwcb (pointwise + small-map depthwise, channel-blocked): bit-identical to the two "
             "convs, 2/3/5 parts, pairs not taken");
}

static kernels_part split_pw_dw(const part_case *pc, int ith, int nth) { return conv2d_pw_dw_part(pc->conv, ith, nth); }

static void run_pw_dw(const part_case *pc, const kernels_part *part, float *y)
{
    conv2d_pw_dw_forward_part(pc->pw, pc->pw_packed, pc->pw_bias, pc->conv, pc->w, pc->bias, pc->x, y, pc->scratch,
                              part);
}

static kernels_part split_dw_pw(const part_case *pc, int ith, int nth) { return conv2d_dw_pw_part(pc->pw, ith, nth); }

static void run_dw_pw(const part_case *pc, const kernels_part *part, float *y)
{
    conv2d_dw_pw_forward_part(pc->pw, pc->pw_packed, pc->pw_bias, pc->conv, pc->w, pc->bias, pc->x, pc->res, y,
                              pc->scratch, part);
}

/* conv2d_plan_fuse_dw_pw / conv2d_dw_pw_forward_part (stride-1 depthwise on a wider map + pointwise
 * conv, in bands of 8 rows): through the fused plan (conv2d_plan_forward_part, with and without a
 * residual), bit-identical to dwconv2d_forward then conv2d_forward_packed_fused, within tolerance
 * of the naive reference of the two convs (plus the residual), nothing written outside y, and
 * 2/3/5 parts bit-identical to the whole. MobileNetV3-Large's two pairs, one band and several, a
 * short last band, rows over 64 outputs (the depthwise kernel's column chunks), k 3/5/7, every
 * padding mode, channel counts not multiples of 6 or 16, K past one GEMM block, outputs 29..57 wide
 * (AVX2: the row kernel's narrowest; its 7..28-wide maps, the channel-blocked kernel's, must stay
 * unfused there); pairs it must not take (a 14-wide map: the small-map kernels; stride 2). Both
 * ISAs (AVX2: kernels_dw.c's kernels by row bands + the AVX2 GEMM). */
static void test_conv_dw_pw(void)
{
    /* {c, c_out, h, w, k, pad mode, dw act, pw act, residual} */
    static const int cases[][9] = {
        {16, 16, 112, 112, 3, PAD_SYM, ACT_RELU, ACT_NONE, 1}, {72, 24, 56, 56, 3, PAD_SYM, ACT_RELU, ACT_NONE, 1},
        {5, 7, 17, 23, 3, PAD_SYM, ACT_HSWISH, ACT_RELU6, 0},  {13, 20, 9, 40, 5, PAD_SYM, ACT_NONE, ACT_HSWISH, 0},
        {3, 11, 33, 18, 7, PAD_SYM, ACT_RELU6, ACT_NONE, 1},   {8, 9, 30, 31, 3, PAD_NONE, ACT_RELU, ACT_RELU, 0},
        {6, 5, 16, 17, 5, PAD_TF_SAME, ACT_HSWISH, ACT_NONE, 1}, {140, 17, 19, 21, 3, PAD_ASYM, ACT_RELU, ACT_NONE, 1},
        {4, 33, 11, 100, 3, PAD_SYM, ACT_HSIGMOID, ACT_RELU, 0}, {9, 6, 1, 70, 5, PAD_SYM, ACT_NONE, ACT_NONE, 1},
        {7, 13, 21, 45, 3, PAD_ASYM, ACT_RELU, ACT_NONE, 1},     {17, 5, 10, 29, 5, PAD_SYM, ACT_HSWISH, ACT_HSWISH, 0},
        {140, 40, 9, 57, 3, PAD_TF_SAME, ACT_RELU6, ACT_NONE, 1},
    };
    test_begin();
    rng r = {92};
    int n_failed = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const int *c = cases[ci];
        conv2d_params pw, dw;
        const int has_output = conv_setup(&dw, c[0], c[0], c[0], c[2], c[3], c[4], c[4], 1, 1, (pad_mode)c[5],
                                          (act_kind)c[6]);
        conv_setup(&pw, c[0], c[1], 1, dw.h_out, dw.w_out, 1, 1, 1, 1, PAD_NONE, (act_kind)c[7]);
        char what[200];
        snprintf(what, sizeof what, "dw %d %dx%d k %d pad t%d l%d b%d r%d act %s, pw -> %d act %s%s", c[0], c[2], c[3],
                 c[4], dw.pad_t, dw.pad_l, dw.pad_b, dw.pad_r, act_names[c[6]], c[1], act_names[c[7]],
                 c[8] ? " + residual" : "");
        conv2d_plan pl_dw, pl_pw;
        conv2d_plan_init(&pl_dw, &dw);
        conv2d_plan_init(&pl_pw, &pw);
        if (has_output && cpu_isa_best() == CPU_ISA_AVX2 && kernels_dw_cb_avx2_applies(&dw)) {
            /* AVX2 leaves the channel-blocked kernel's maps unfused */
            T_CHECK(!conv2d_dw_pw_fusable(&dw, &pw), "%s: fused on AVX2 (channel-blocked map)", what);
            continue;
        }
        if (!has_output || !conv2d_dw_pw_fusable(&dw, &pw)) {
            T_CHECK(0, "%s: not fusable", what);
            n_failed++;
            continue;
        }
        const size_t n_x = (size_t)dw.c_in * dw.h_in * dw.w_in, n_mid = (size_t)dw.c_out * dw.h_out * dw.w_out;
        const size_t hw = (size_t)pw.h_out * pw.w_out, n_y = (size_t)pw.c_out * hw;
        float *x = alloc_random(n_x, &r), *dw_w = alloc_random((size_t)dw.c_out * c[4] * c[4], &r);
        float *dw_b = alloc_random((size_t)dw.c_out, &r), *pw_w = alloc_random((size_t)pw.c_out * pw.c_in, &r);
        float *pw_b = alloc_random((size_t)pw.c_out, &r), *res = c[8] ? alloc_random(n_y, &r) : NULL;
        float *packed = alloc_floats(conv2d_packed_floats(&pw)), *mid = alloc_nan(n_mid);
        float *scratch = alloc_nan(conv2d_dw_pw_scratch_floats(&dw) + conv2d_packed_fused_scratch_floats(&pw));
        float *want = alloc_floats(n_y), *y = alloc_floats(n_y + 2), *mid_f = alloc_floats(n_mid);
        double *ref_mid = alloc_doubles(n_mid), *mag_mid = alloc_doubles(n_mid);
        double *ref_y = alloc_doubles(n_y), *mag_y = alloc_doubles(n_y);
        conv2d_pack_weights(&pw, pw_w, packed);
        dwconv2d_forward(&dw, x, dw_w, dw_b, mid);
        conv2d_forward_packed_fused(&pw, mid, NULL, packed, pw_b, res, want, scratch);
        pl_dw.w = dw_w;
        pl_dw.bias = dw_b;
        pl_pw.w = packed;
        pl_pw.bias = pw_b;
        int ok = conv2d_plan_fuse_dw_pw(&pl_pw, &pl_dw) && pl_pw.path == CONV_PATH_DW_PW && conv2d_plan_splits(&pl_pw);
        T_CHECK(ok, "%s: the plan did not fuse", what);
        fill_poison(y, n_y + 2);
        const kernels_part all = conv2d_plan_part(&pl_pw, 0, 1);
        if (ok) conv2d_plan_forward_part(&pl_pw, x, NULL, res, y + 1, scratch, &all);
        if (ok) ok = fused_matches_unfused(y, want, n_y, hw, pw.w_out, what);
        /* naive reference: the depthwise conv in double, rounded to float, then the pointwise one
         * (its activation after the residual) */
        ref_conv(&dw, x, dw_w, dw_b, ref_mid, mag_mid);
        for (size_t i = 0; i < n_mid; i++) mid_f[i] = (float)ref_mid[i];
        conv2d_params pw_lin = pw;
        pw_lin.act = ACT_NONE;
        ref_conv(&pw_lin, mid_f, pw_w, pw_b, ref_y, mag_y);
        for (size_t i = 0; i < n_y; i++) {
            const double pre = ref_y[i] + (res ? (double)res[i] : 0.0);
            ref_y[i] = ref_act(pw.act, pre);
            mag_y[i] = 2.0 * (mag_y[i] + (res ? fabs((double)res[i]) : 0.0)) *
                       (pw.act == ACT_HSWISH ? 1.0 + fabs(pre) / 3.0 : 1.0); /* two rounded convs */
        }
        const long bad = first_bad(y + 1, ref_y, mag_y, n_y);
        T_CHECK(bad < 0, "%s: index %ld got %.9g, reference %.9g", what, bad, bad < 0 ? 0.0 : (double)y[1 + bad],
                bad < 0 ? 0.0 : ref_y[bad]);
        ok &= bad < 0;
        part_case pc = {.split = split_dw_pw, .run = run_dw_pw, .c = pw.c_out, .hw = hw, .conv = &dw, .x = x,
                        .w = dw_w, .bias = dw_b, .res = res, .scratch = scratch, .pw = &pw, .pw_packed = packed,
                        .pw_bias = pw_b};
        ok &= check_parts(&pc, want, what);
        n_failed += !ok;
        free(x);
        free(dw_w);
        free(dw_b);
        free(pw_w);
        free(pw_b);
        free(res);
        free(packed);
        free(mid);
        free(scratch);
        free(want);
        free(y);
        free(mid_f);
        free(ref_mid);
        free(mag_mid);
        free(ref_y);
        free(mag_y);
    }
    /* not taken: a 14-wide map (the small-map depthwise kernels), stride 2 */
    conv2d_params pw, dw;
    conv_setup(&dw, 24, 24, 24, 14, 14, 3, 3, 1, 1, PAD_SYM, ACT_RELU);
    conv_setup(&pw, 24, 8, 1, 14, 14, 1, 1, 1, 1, PAD_NONE, ACT_NONE);
    T_CHECK(!conv2d_dw_pw_fusable(&dw, &pw), "a 14-wide pair fused");
    conv_setup(&dw, 24, 24, 24, 56, 56, 3, 3, 2, 2, PAD_SYM, ACT_RELU);
    conv_setup(&pw, 24, 8, 1, 28, 28, 1, 1, 1, 1, PAD_NONE, ACT_NONE);
    T_CHECK(!conv2d_dw_pw_fusable(&dw, &pw), "a stride-2 pair fused");
    T_CHECK(n_failed == 0, "%d of %zu pairs failed", n_failed, sizeof cases / sizeof *cases);
    test_end("conv2d_plan_fuse_dw_pw (stride-1 depthwise + pointwise in row bands): bit-identical to the two convs, "
             "vs reference, 2/3/5 parts, pairs not taken");
}

/* conv2d_pw_dw_forward (pointwise + stride-2 depthwise in bands of output rows): bit-identical
 * to conv2d_forward_packed then dwconv2d_forward, within tolerance of the naive reference of the
 * two convs, and its 2/3/5 parts bit-identical to the whole (scratch poisoned with NaN). One band
 * and several, a short last band, k 3/5/7, padding none / symmetric / TF SAME / asymmetric, odd
 * sizes, channel counts not multiples of 6 or 16, K blocks, the bands that reuse the previous
 * band's last rows; on AVX2 both the split-row path (wide or very narrow outputs) and the
 * channel-blocked one. */
static void test_conv_pw_dw(void)
{
    /* {c_in, c_exp, h, w, k, pad mode, pw act, dw act} */
    static const int cases[][8] = {
        {16, 64, 112, 112, 3, PAD_SYM, ACT_RELU, ACT_RELU}, {5, 7, 17, 23, 3, PAD_SYM, ACT_HSWISH, ACT_RELU6},
        {13, 20, 9, 40, 5, PAD_SYM, ACT_NONE, ACT_HSWISH},  {3, 11, 33, 8, 7, PAD_SYM, ACT_RELU6, ACT_NONE},
        {8, 9, 30, 31, 3, PAD_NONE, ACT_RELU, ACT_RELU},    {24, 72, 56, 56, 5, PAD_SYM, ACT_RELU, ACT_RELU},
        {6, 5, 16, 17, 5, PAD_TF_SAME, ACT_HSWISH, ACT_HSWISH}, {140, 17, 19, 13, 3, PAD_ASYM, ACT_RELU, ACT_RELU},
        {1, 2, 3, 3, 3, PAD_SYM, ACT_NONE, ACT_NONE},       {4, 33, 36, 5, 3, PAD_SYM, ACT_HSIGMOID, ACT_RELU},
        /* 3x3 padding 1 on even heights: bands whose first row is the previous band's last
         * (whole map, 2 parts), one band of 8 input rows */
        {7, 21, 24, 37, 3, PAD_SYM, ACT_HSWISH, ACT_RELU},  {3, 10, 8, 20, 3, PAD_SYM, ACT_RELU, ACT_NONE},
        /* AVX2: outputs wider than the channel-blocked kernel's (or narrower than 7), the GEMM
         * stored as split rows: pad_l 0 / 1 / 2, odd and even sizes, halves not whole vectors,
         * panels of 1..6 channels, K blocks, short last bands, rows of padding at the bottom */
        {16, 64, 112, 112, 3, PAD_TF_SAME, ACT_RELU, ACT_RELU}, {5, 13, 61, 59, 3, PAD_SYM, ACT_HSWISH, ACT_RELU6},
        {9, 10, 66, 63, 5, PAD_SYM, ACT_RELU, ACT_HSWISH},  {7, 8, 59, 65, 5, PAD_TF_SAME, ACT_NONE, ACT_RELU},
        {130, 11, 20, 70, 3, PAD_SYM, ACT_RELU6, ACT_NONE}, {4, 7, 27, 77, 3, PAD_ASYM, ACT_RELU, ACT_HSIGMOID},
        {2, 6, 2, 60, 3, PAD_SYM, ACT_RELU, ACT_RELU},      {3, 5, 7, 130, 3, PAD_NONE, ACT_HSWISH, ACT_RELU},
        {6, 19, 31, 6, 3, PAD_TF_SAME, ACT_RELU, ACT_RELU}, {11, 24, 43, 96, 3, PAD_SYM, ACT_RELU, ACT_RELU},
    };
    test_begin();
    rng r = {91};
    int n_failed = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const int *c = cases[ci];
        conv2d_params pw, dw;
        conv_setup(&pw, c[0], c[1], 1, c[2], c[3], 1, 1, 1, 1, PAD_NONE, (act_kind)c[6]);
        const int has_output = conv_setup(&dw, c[1], c[1], c[1], c[2], c[3], c[4], c[4], 2, 2, (pad_mode)c[5],
                                          (act_kind)c[7]);
        char what[200];
        snprintf(what, sizeof what, "pw %d->%d %dx%d act %s, dw k %d s 2 pad t%d l%d b%d r%d -> %dx%d act %s", c[0],
                 c[1], c[2], c[3], act_names[c[6]], c[4], dw.pad_t, dw.pad_l, dw.pad_b, dw.pad_r, dw.h_out, dw.w_out,
                 act_names[c[7]]);
        if (!has_output || !conv2d_pw_dw_fusable(&pw, &dw)) {
            T_CHECK(0, "%s: not fusable", what);
            n_failed++;
            continue;
        }
        const size_t n_x = (size_t)pw.c_in * pw.h_in * pw.w_in, n_mid = (size_t)pw.c_out * pw.h_out * pw.w_out;
        const size_t hw = (size_t)dw.h_out * dw.w_out, n_y = (size_t)dw.c_out * hw;
        /* x in [-4, 4]: both convs' outputs cross ReLU6's 6 */
        float *x = alloc_random_scaled(n_x, &r, 4.0f), *pw_w = alloc_random((size_t)pw.c_out * pw.c_in, &r);
        float *pw_b = alloc_random((size_t)pw.c_out, &r), *dw_w = alloc_random((size_t)dw.c_out * c[4] * c[4], &r);
        float *dw_b = alloc_random((size_t)dw.c_out, &r);
        float *packed = alloc_floats(conv2d_packed_floats(&pw)), *mid = alloc_nan(n_mid);
        float *scratch = alloc_nan(conv2d_pw_dw_scratch_floats(&pw, &dw) + conv2d_packed_scratch_floats(&pw));
        float *want = alloc_floats(n_y), *y = alloc_floats(n_y + 2), *mid_f = alloc_floats(n_mid);
        double *ref_mid = alloc_doubles(n_mid), *mag_mid = alloc_doubles(n_mid);
        double *ref_y = alloc_doubles(n_y), *mag_y = alloc_doubles(n_y);
        conv2d_pack_weights(&pw, pw_w, packed);
        conv2d_forward_packed(&pw, x, packed, pw_b, mid, scratch);
        dwconv2d_forward(&dw, mid, dw_w, dw_b, want);
        fill_poison(y, n_y + 2);
        conv2d_pw_dw_forward(&pw, packed, pw_b, &dw, dw_w, dw_b, x, y + 1, scratch);
        int ok = fused_matches_unfused(y, want, n_y, hw, dw.w_out, what);
        /* naive reference: the pointwise conv in double, rounded to float, then the depthwise */
        ref_conv(&pw, x, pw_w, pw_b, ref_mid, mag_mid);
        for (size_t i = 0; i < n_mid; i++) mid_f[i] = (float)ref_mid[i];
        ref_conv(&dw, mid_f, dw_w, dw_b, ref_y, mag_y);
        for (size_t i = 0; i < n_y; i++) mag_y[i] *= 2.0; /* two rounded convs */
        const long bad = first_bad(y + 1, ref_y, mag_y, n_y);
        T_CHECK(bad < 0, "%s: index %ld got %.9g, reference %.9g", what, bad, bad < 0 ? 0.0 : (double)y[1 + bad],
                bad < 0 ? 0.0 : ref_y[bad]);
        ok &= bad < 0;
        part_case pc = {.split = split_pw_dw, .run = run_pw_dw, .c = dw.c_out, .hw = hw, .conv = &dw, .x = x,
                        .w = dw_w, .bias = dw_b, .scratch = scratch, .pw = &pw, .pw_packed = packed, .pw_bias = pw_b};
        ok &= check_parts(&pc, want, what);
        n_failed += !ok;
        free(x);
        free(pw_w);
        free(pw_b);
        free(dw_w);
        free(dw_b);
        free(packed);
        free(mid);
        free(scratch);
        free(want);
        free(y);
        free(mid_f);
        free(ref_mid);
        free(mag_mid);
        free(ref_y);
        free(mag_y);
    }
    if (n_failed) printf("#   %d of %zu shapes failed\n", n_failed, sizeof cases / sizeof *cases);
    test_end("conv2d_pw_dw_forward (pointwise + stride-2 depthwise in row bands): bit-identical to the two "
             "convs, vs reference, 2/3/5 parts");
}

/* The channel-blocked AVX2 depthwise kernel's plan parts (kernels_dw_cb_avx2_part: blocks of 8
 * channels, or output rows where those come more even): 2/3/5 parts through conv2d_plan_part and
 * conv2d_plan_forward_part, bit-identical to the whole, nothing written outside. MobileNetV3's and
 * ShuffleNetV2's uneven block counts (88, 116, 184 channels), even ones, a partial block, 7 rows. */
static void test_dw_cb_avx2_parts(void)
{
    /* {c, h, k, s} */
    static const int cases[][4] = {{88, 28, 3, 1}, {116, 14, 3, 1}, {184, 14, 3, 1}, {58, 28, 3, 1},
                                   {61, 7, 5, 1},  {40, 14, 5, 2},  {13, 56, 3, 2},  {21, 11, 5, 1}};
    test_begin();
    rng r = {93};
    int n_failed = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const int *c = cases[ci];
        conv2d_params p;
        conv_setup(&p, c[0], c[0], c[0], c[1], c[1], c[2], c[2], c[3], c[3], PAD_SYM, (act_kind)(ci % 5));
        conv2d_plan pl;
        conv2d_plan_init(&pl, &p);
        char what[120];
        snprintf(what, sizeof what, "depthwise plan %dx%dx%d k %d s %d", p.c_in, p.h_in, p.w_in, p.k_h, p.stride_h);
        if (pl.path != CONV_PATH_DEPTHWISE || !kernels_dw_cb_avx2_applies(&p)) {
            T_CHECK(0, "%s: not the channel-blocked AVX2 kernel", what);
            n_failed++;
            continue;
        }
        const size_t hw = (size_t)p.h_out * p.w_out, n_y = (size_t)p.c_out * hw;
        float *x = alloc_random((size_t)p.c_in * p.h_in * p.w_in, &r);
        float *w = alloc_random((size_t)p.c_out * p.k_h * p.k_w, &r), *bias = alloc_random((size_t)p.c_out, &r);
        float *want = alloc_floats(n_y);
        fill_poison(want, n_y);
        dwconv2d_forward(&p, x, w, bias, want);
        pl.w = w;
        pl.bias = bias;
        part_case pc = {.split = split_plan, .run = run_plan, .c = p.c_out, .hw = hw, .conv = &p, .x = x,
                        .plan = &pl};
        n_failed += !check_parts(&pc, want, what);
        free(x);
        free(w);
        free(bias);
        free(want);
    }
    T_CHECK(n_failed == 0, "%d of %zu shapes failed", n_failed, sizeof cases / sizeof *cases);
    test_end("channel-blocked AVX2 depthwise: 2/3/5 plan parts (channel blocks or rows) bit-identical, nothing outside");
}

static void test_part_split(void)
{
    test_begin();
    for (int n = 0; n < 40; n++)
        for (int align = 1; align < 9; align++)
            for (int nth = 1; nth < 7; nth++) {
                int at = 0;
                for (int ith = 0; ith < nth; ith++) {
                    const kernels_part p = kernels_part_split(KERNELS_PART_POSITIONS, n, align, ith, nth);
                    T_CHECK(p.lo == at && p.hi >= p.lo && (p.lo % align == 0 || p.lo == n) &&
                                (p.hi % align == 0 || p.hi == n) && (ith < nth - 1 || p.hi == n),
                            "n %d align %d part %d of %d: [%d, %d)", n, align, ith, nth, p.lo, p.hi);
                    at = p.hi;
                }
            }
    test_end("kernels_part_split: consecutive aligned parts covering [0, n)");
}

/* Runs plan pl over nth parts (NaN-poisoned y) and checks y bit-identical to want. */
static int plan_parts_match(const conv2d_plan *pl, const float *x, float *y, size_t n_y, float *scratch,
                            const float *want, int nth, const char *what)
{
    fill_poison(y, n_y);
    for (int ith = 0; ith < nth; ith++) {
        const kernels_part part = conv2d_plan_part(pl, ith, nth);
        conv2d_plan_forward_part(pl, x, NULL, NULL, y, scratch, &part);
    }
    const int ok = memcmp(y, want, n_y * sizeof *y) == 0;
    T_CHECK(ok, "%s: %d parts differ from the one-call path", what, nth);
    return ok;
}

/* conv2d_plan_part_share (uneven two-thread parts of a plan): for n shares and every cut q, the
 * parts [0, q) and [q, n) each give the one-call path's bits inside and leave every other cell of
 * the NaN-poisoned y (and a guard cell on either side) untouched; together they cover it all. */
static int plan_shares_match(const conv2d_plan *pl, const float *x, size_t n_y, float *scratch, const float *want,
                             int n, const char *what)
{
    const size_t hw = (size_t)pl->p.h_out * pl->p.w_out;
    float *buf = alloc_floats(n_y + 2), *y = buf + 1;
    int ok = buf != NULL;
    for (int q = 0; q <= n && ok; q++) {
        fill_poison(buf, n_y + 2);
        int covered = 0;
        for (int t = 0; t < 2 && ok; t++) {
            const kernels_part part = conv2d_plan_part_share(pl, t ? q : 0, t ? n : q, n);
            ok = part.axis == KERNELS_PART_CHANNELS && part.lo == covered && part.hi >= part.lo &&
                 part.hi <= pl->p.c_out && (t == 0 || part.hi == pl->p.c_out);
            T_CHECK(ok, "%s: share [%d, %d) of %d is channels [%d, %d) (axis %d), expected from %d", what,
                    t ? q : 0, t ? n : q, n, part.lo, part.hi, (int)part.axis, covered);
            if (!ok) break;
            covered = part.hi;
            conv2d_plan_forward_part(pl, x, NULL, NULL, y, scratch, &part);
            for (size_t i = 0; i < n_y && ok; i++) {
                const size_t ch = i / hw;
                const int done = (int)ch < part.hi; /* this part and the one before it */
                if (done ? memcmp(&y[i], &want[i], sizeof *y) != 0 : !is_poison(&y[i])) {
                    T_CHECK(0, "%s: cut %d of %d, part %d [%d, %d): channel %zu index %zu %s: got %.9g", what, q, n,
                            t, part.lo, part.hi, ch, i, done ? "differs from the one-call path" : "written outside",
                            (double)y[i]);
                    ok = 0;
                }
            }
        }
        if (ok && !(is_poison(&buf[0]) && is_poison(&buf[n_y + 1]))) {
            T_CHECK(0, "%s: cut %d of %d wrote a guard cell", what, q, n);
            ok = 0;
        }
    }
    free(buf);
    return ok;
}

/* conv2d_plan: the path each shape takes on this CPU (AVX-512F or not), its packed / scratch
 * floats equal to the one-call functions', conv2d_plan_forward_part over 1, 2 and 3 parts
 * bit-identical to the one-call path; the pw+dw and input-scale fusions of a pointwise plan. */
static void test_conv_plan(void)
{
    /* {c_in, c_out, groups, h, w, k, stride, pad mode, path with AVX-512F, path without, train,
     *  k_w when not k} */
    static const int cases[][12] = {
        {3, 16, 1, 37, 41, 3, 2, PAD_SYM, CONV_PATH_STEM, CONV_PATH_IM2COL},
        {19, 35, 1, 35, 35, 3, 1, PAD_SYM, CONV_PATH_WINOGRAD, CONV_PATH_IM2COL},
        {24, 17, 1, 61, 59, 1, 1, PAD_NONE, CONV_PATH_GEMM, CONV_PATH_DIRECT},
        {17, 29, 1, 35, 33, 3, 2, PAD_NONE, CONV_PATH_GEMM, CONV_PATH_IM2COL},
        {10, 22, 2, 19, 21, 3, 1, PAD_SYM, CONV_PATH_GEMM, CONV_PATH_IM2COL},
        {24, 24, 24, 30, 28, 5, 2, PAD_SYM, CONV_PATH_DEPTHWISE, CONV_PATH_DEPTHWISE},
        {3, 16, 1, 63, 63, 11, 4, PAD_SYM, CONV_PATH_WINOGRAD, CONV_PATH_IM2COL},
        {3, 16, 1, 47, 47, 11, 4, PAD_SYM, CONV_PATH_GEMM, CONV_PATH_IM2COL},
        {3, 16, 1, 63, 63, 11, 4, PAD_SYM, CONV_PATH_GEMM, CONV_PATH_IM2COL, 1},
        {13, 23, 1, 17, 17, 1, 1, PAD_SYM, CONV_PATH_WINOGRAD, CONV_PATH_IM2COL, 0, 7},
        {13, 23, 1, 17, 17, 7, 1, PAD_SYM, CONV_PATH_WINOGRAD, CONV_PATH_IM2COL, 0, 1},
    };
    static const char *const path_names[] = {"direct", "im2col", "depthwise", "stem", "winograd", "gemm", "pw_dw"};
    const int avx2 = cpu_isa_best() >= CPU_ISA_AVX2;
    test_begin();
    rng r = {123};
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const int *c = cases[ci];
        conv2d_params p;
        const int k_w = c[11] ? c[11] : c[5];
        conv_setup(&p, c[0], c[1], c[2], c[3], c[4], c[5], k_w, c[6], c[6], (pad_mode)c[7], (act_kind)(ci % 5));
        p.train = c[10];
        conv2d_plan pl;
        conv2d_plan_init(&pl, &p);
        const conv_path want_path = conv_path_on_cpu((conv_path)c[8], (conv_path)c[9]);
        char what[160];
        snprintf(what, sizeof what, "%s conv %d->%d groups %d %dx%d k %dx%d s %d train %d", path_names[want_path],
                 c[0], c[1], c[2], c[3], c[4], c[5], k_w, c[6], c[10]);
        T_CHECK(pl.path == want_path, "%s: planned path %s", what, path_names[pl.path]);
        const int packed_path = pl.packed_floats > 0;
        const size_t want_scratch = packed_path ? conv2d_packed_scratch_floats(&p) : conv2d_scratch_floats(&p);
        T_CHECK(pl.packed_floats == conv2d_packed_floats(&p) && pl.scratch_floats == want_scratch,
                "%s: plan packs %zu floats with scratch %zu, one-call functions %zu and %zu", what, pl.packed_floats,
                pl.scratch_floats, conv2d_packed_floats(&p), want_scratch);
        const size_t n_x = (size_t)p.c_in * p.h_in * p.w_in, n_y = (size_t)p.c_out * p.h_out * p.w_out;
        float *x = alloc_random(n_x, &r), *bias = alloc_random((size_t)p.c_out, &r);
        float *w = alloc_random((size_t)p.c_out * (p.c_in / p.groups) * p.k_h * p.k_w, &r);
        float *packed = packed_path ? alloc_nan(pl.packed_floats) : NULL;
        float *scratch = pl.scratch_floats ? alloc_nan(pl.scratch_floats) : NULL;
        float *want = alloc_floats(n_y), *y = alloc_floats(n_y);
        if (packed_path) {
            conv2d_plan_pack(&pl, w, packed);
            conv2d_forward_packed(&p, x, packed, bias, want, scratch);
        } else {
            conv2d_forward(&p, x, w, bias, want, scratch);
        }
        pl.w = packed_path ? packed : w;
        pl.bias = bias;
        for (int nth = 1; nth <= (conv2d_plan_splits(&pl) ? 3 : 1); nth++)
            plan_parts_match(&pl, x, y, n_y, scratch, want, nth, what);
        const int shares = (pl.path == CONV_PATH_GEMM && p.groups == 1) || pl.path == CONV_PATH_WINOGRAD;
        T_CHECK(conv2d_plan_shares(&pl) == shares, "%s: shares %d", what, conv2d_plan_shares(&pl));
        if (shares) {
            plan_shares_match(&pl, x, n_y, scratch, want, 7, what);
            plan_shares_match(&pl, x, n_y, scratch, want, 32, what);
        }
        T_CHECK(conv2d_plan_splits(&pl) == (pl.path != CONV_PATH_DIRECT && pl.path != CONV_PATH_IM2COL),
                "%s: splits %d", what, conv2d_plan_splits(&pl));
        free(x);
        free(bias);
        free(w);
        free(packed);
        free(scratch);
        free(want);
        free(y);
    }

    /* A pointwise expansion and the stride-2 depthwise conv after it. */
    conv2d_params pw, dw;
    conv_setup(&pw, 8, 20, 1, 33, 30, 1, 1, 1, 1, PAD_NONE, ACT_RELU);
    conv_setup(&dw, 20, 20, 20, 33, 30, 3, 3, 2, 2, PAD_SYM, ACT_HSWISH);
    conv2d_plan pl_pw, pl_dw, pl_scaled;
    conv2d_plan_init(&pl_pw, &pw);
    conv2d_plan_init(&pl_dw, &dw);
    T_CHECK(conv2d_plan_fusable(&pl_pw) == avx2, "pointwise plan fusable %d", conv2d_plan_fusable(&pl_pw));
    T_CHECK(!conv2d_plan_fusable(&pl_dw), "depthwise plan fusable");
    if (avx2) {
        pl_scaled = pl_pw;
        conv2d_plan_fuse_scale(&pl_scaled);
        T_CHECK(pl_scaled.in_scale && pl_scaled.scratch_floats == conv2d_packed_fused_scratch_floats(&pw),
                "input-scale plan: scratch %zu, want %zu", pl_scaled.scratch_floats,
                conv2d_packed_fused_scratch_floats(&pw));
        T_CHECK(!conv2d_plan_fuse_pw_dw(&pl_scaled, &pl_dw) && pl_scaled.path == CONV_PATH_GEMM,
                "a plan with an input scale took the pw+dw fusion");
    }
    const size_t n_x = (size_t)pw.c_in * pw.h_in * pw.w_in, n_y = (size_t)dw.c_out * dw.h_out * dw.w_out;
    float *x = alloc_random(n_x, &r), *pw_w = alloc_random((size_t)pw.c_out * pw.c_in, &r);
    float *pw_b = alloc_random((size_t)pw.c_out, &r), *dw_w = alloc_random((size_t)dw.c_out * 9, &r);
    float *dw_b = alloc_random((size_t)dw.c_out, &r), *packed = alloc_nan(pl_pw.packed_floats + 1);
    float *want = alloc_floats(n_y), *y = alloc_floats(n_y);
    if (pl_pw.packed_floats) conv2d_plan_pack(&pl_pw, pw_w, packed);
    pl_pw.w = pl_pw.packed_floats ? packed : pw_w;
    pl_pw.bias = pw_b;
    pl_dw.w = dw_w;
    pl_dw.bias = dw_b;
    const int fused = conv2d_plan_fuse_pw_dw(&pl_pw, &pl_dw);
    T_CHECK(fused == conv2d_pw_dw_fusable(&pw, &dw) && fused == avx2 &&
                pl_pw.path == (fused ? CONV_PATH_PW_DW : avx2 ? CONV_PATH_GEMM : CONV_PATH_DIRECT),
            "pw+dw fusion %d, path %s", fused, path_names[pl_pw.path]);
    if (fused) {
        T_CHECK(pl_pw.scratch_floats == conv2d_pw_dw_scratch_floats(&pw, &dw) && pl_pw.dw_w == dw_w &&
                    pl_pw.dw_bias == dw_b,
                "pw+dw plan: scratch %zu, want %zu", pl_pw.scratch_floats, conv2d_pw_dw_scratch_floats(&pw, &dw));
        float *scratch = alloc_nan(pl_pw.scratch_floats);
        conv2d_pw_dw_forward(&pw, packed, pw_b, &dw, dw_w, dw_b, x, want, scratch);
        for (int nth = 1; nth <= 3; nth++)
            plan_parts_match(&pl_pw, x, y, n_y, scratch, want, nth, "pw+dw plan 8->20 33x30, dw k 3 s 2");
        free(scratch);
    }
    free(x);
    free(pw_w);
    free(pw_b);
    free(dw_w);
    free(dw_b);
    free(packed);
    free(want);
    free(y);
    if (avx2) { /* training plans keep F(2x2, 5x5): 36 transformed taps per weight pair, inference
                     64; and F(2, 7) for 1x7 / 7x1: 8 taps, inference F(6, 7)'s 12 */
        static const int kinds[][4] = {{5, 5, 36, 64}, {1, 7, 8, 12}, {7, 1, 8, 12}};
        for (int i = 0; i < 3; i++) {
            conv2d_params pk;
            conv_setup(&pk, 8, 12, 1, 35, 35, kinds[i][0], kinds[i][1], 1, 1, PAD_SYM, ACT_NONE);
            conv2d_plan fast, train;
            conv2d_plan_init(&fast, &pk);
            pk.train = 1;
            conv2d_plan_init(&train, &pk);
            T_CHECK(fast.path == CONV_PATH_WINOGRAD && train.path == CONV_PATH_WINOGRAD &&
                        fast.packed_floats * (size_t)kinds[i][2] == train.packed_floats * (size_t)kinds[i][3],
                    "%dx%d at 35x35: paths %s / %s, packed floats %zu (inference) / %zu (training)", kinds[i][0],
                    kinds[i][1], path_names[fast.path], path_names[train.path], fast.packed_floats,
                    train.packed_floats);
        }
    }
    test_end("conv2d_plan: path per shape, sizes as the one-call functions, 1/2/3 parts and uneven share parts "
             "bit-identical; input-scale and pw+dw fusion; training plans");
}

/* Pointwise GEMM convs (B read in place) whose last column tile is 1..4 columns wide, now a
 * transposed tile (gemm_tile_nvx with nv = 0; 14x14 maps: 3 x 64 + 4 instead of 4 x 49), the
 * 49- / 64-column tilings around them, the AVX2 last strips of 17 / 9 columns (one transposed) and
 * 1..4-column tiles over two row panels at once: every output bit for bit the fmaf chain over k from
 * the bias (then the residual, then ReLU) that every tile kernel computes, over 1, 2, 3 and 5 parts,
 * nothing written to the guard cells; K past one K block, output channels not a multiple of 6. */
static void test_gemm_tail_tiles(void)
{
    /* {c_in, c_out, h, w, residual} */
    static const int cases[][5] = {
        {16, 13, 14, 14, 0}, {130, 7, 14, 14, 1}, {5, 1, 1, 1, 0},   {9, 8, 1, 2, 1},  {200, 11, 1, 3, 0},
        {24, 6, 2, 2, 1},    {17, 19, 1, 65, 0},  {33, 5, 2, 33, 1}, {40, 9, 3, 67, 0}, {12, 14, 7, 7, 1},
        {70, 12, 4, 49, 0},  {3, 2, 28, 28, 1},
        /* AVX2 strips of 17 and 9 columns with the last one transposed (49 = 16 + 16 + 17; 289 = 4 x 64 +
         * 16 + 17; 73 = 64 + 9; 9; 17), K past one K block (then not the first block: from c) */
        {200, 13, 7, 7, 1},  {130, 17, 17, 17, 0}, {33, 8, 1, 73, 1}, {20, 7, 3, 3, 0}, {140, 5, 1, 17, 1},
        {9, 12, 1, 81, 0},
        /* AVX2 tiles of 1..4 columns two row panels at a time: pairs of 12 and 7..11 rows, a last single panel,
         * K past one K block */
        {20, 12, 1, 4, 1},   {40, 24, 14, 14, 1}, {33, 17, 4, 17, 0}, {150, 12, 2, 2, 0}, {21, 23, 1, 67, 1},
        /* AVX2 last panels of 1..4 rows (whole 16-column strips on 4 rows), then a last strip of 17 / 9 / 1..15 */
        {20, 16, 8, 8, 1},   {140, 10, 4, 16, 0}, {7, 3, 1, 81, 1},   {30, 1, 2, 41, 0},  {9, 4, 1, 16, 1},
    };
    test_begin();
    rng r = {99};
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const int *c = cases[ci];
        conv2d_params p;
        conv_setup(&p, c[0], c[1], 1, c[2], c[3], 1, 1, 1, 1, PAD_NONE, (ci & 1) ? ACT_RELU : ACT_NONE);
        conv2d_plan pl;
        conv2d_plan_init(&pl, &p);
        char what[160];
        snprintf(what, sizeof what, "pointwise gemm %d->%d %dx%d%s act %d", c[0], c[1], c[2], c[3],
                 c[4] ? " +residual" : "", (int)p.act);
        T_CHECK(pl.path == CONV_PATH_GEMM, "%s: planned path %d", what, (int)pl.path);
        if (pl.path != CONV_PATH_GEMM) continue;
        const size_t hw = (size_t)c[2] * c[3], n_x = (size_t)c[0] * hw, n_y = (size_t)c[1] * hw;
        float *x = alloc_random(n_x, &r), *bias = alloc_random((size_t)c[1], &r);
        float *w = alloc_random((size_t)c[1] * c[0], &r), *res = c[4] ? alloc_random(n_y, &r) : NULL;
        float *packed = alloc_nan(pl.packed_floats), *scratch = pl.scratch_floats ? alloc_nan(pl.scratch_floats) : NULL;
        float *want = alloc_floats(n_y), *y = alloc_floats(n_y + 2);
        conv2d_plan_pack(&pl, w, packed);
        pl.w = packed;
        pl.bias = bias;
        for (int o = 0; o < c[1]; o++)
            for (size_t q = 0; q < hw; q++) {
                float acc = bias[o];
                for (int k = 0; k < c[0]; k++) acc = fmaf(w[(size_t)o * c[0] + k], x[(size_t)k * hw + q], acc);
                if (res) acc += res[(size_t)o * hw + q];
                want[(size_t)o * hw + q] = p.act == ACT_RELU && acc < 0.0f ? 0.0f : acc;
            }
        static const int part_counts[] = {1, 2, 3, 5};
        for (size_t pi = 0; pi < sizeof part_counts / sizeof *part_counts; pi++) {
            const int nth = part_counts[pi];
            char what_n[200];
            snprintf(what_n, sizeof what_n, "%s, %d parts", what, nth);
            fill_poison(y, n_y + 2);
            for (int ith = 0; ith < nth; ith++) {
                const kernels_part part = conv2d_plan_part(&pl, ith, nth);
                conv2d_plan_forward_part(&pl, x, NULL, res, y + 1, scratch, &part);
            }
            if (!fused_matches_unfused(y, want, n_y, hw, c[3], what_n)) break;
        }
        free(x);
        free(bias);
        free(w);
        free(res);
        free(packed);
        free(scratch);
        free(want);
        free(y);
    }
    test_end("pointwise GEMM tiles of 1..4 transposed columns (14x14: 3 x 64 + 4), 49 and 64 columns, AVX2 "
             "strips of 17 / 9 columns, 1..4 columns over two panels: fmaf-chain bits, guard cells, "
             "1/2/3/5 parts");
}

/* conv2d_plan.prefetch (CONV_PATH_GEMM): the GEMM that brings a memory region into L2 (the tile
 * instances with a prefetch; on AVX2 a few lines per tile, spread over its strips) gives the bits of
 * the plan without one, writes nothing outside y (poisoned guard cells) and leaves the region
 * unchanged, over 1, 2, 3 and 5 parts; regions of no whole tile, a few tiles, more lines than the GEMM
 * has k steps, and a byte count not a multiple of a cache line. Pointwise (odd sizes, 49- and
 * 17-column tiles, K past one K block, an input scale with a residual, 14x14 with a last panel of 4
 * rows and tiles of 4 columns, 7x7 with the scale on the packed input), im2col and grouped shapes. */
static void test_conv_gemm_prefetch(void)
{
    /* {c_in, c_out, groups, h, w, k, stride, pad mode, input scale + residual} */
    static const int cases[][9] = {
        {13, 29, 1, 9, 11, 1, 1, PAD_NONE, 0},  {160, 37, 1, 7, 7, 1, 1, PAD_NONE, 0},
        {200, 23, 1, 14, 14, 1, 1, PAD_NONE, 1}, {24, 17, 1, 61, 59, 1, 1, PAD_NONE, 0},
        {17, 29, 1, 35, 33, 3, 2, PAD_NONE, 0}, {10, 22, 2, 19, 21, 3, 1, PAD_SYM, 0},
        {33, 13, 1, 17, 1, 1, 1, PAD_NONE, 1},  {112, 40, 1, 14, 14, 1, 1, PAD_NONE, 1},
        {160, 22, 1, 7, 7, 1, 1, PAD_NONE, 1},
    };
    static const size_t region_bytes[] = {100, 64 * 130 + 7, 64 * 1000, 64 * 100000 + 1};
    static const int parts[] = {1, 2, 3, 5};
    test_begin();
    rng r = {321};
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const int *c = cases[ci];
        conv2d_params p;
        conv_setup(&p, c[0], c[1], c[2], c[3], c[4], c[5], c[5], c[6], c[6], (pad_mode)c[7], (act_kind)(ci % 5));
        conv2d_plan pl;
        conv2d_plan_init(&pl, &p);
        if (c[8]) conv2d_plan_fuse_scale(&pl);
        char what[160];
        snprintf(what, sizeof what, "gemm conv %d->%d groups %d %dx%d k %d s %d%s", c[0], c[1], c[2], c[3], c[4],
                 c[5], c[6], c[8] ? " scale+residual" : "");
        T_CHECK(pl.path == CONV_PATH_GEMM, "%s: planned path %d", what, (int)pl.path);
        if (pl.path != CONV_PATH_GEMM) continue;
        const size_t n_x = (size_t)p.c_in * p.h_in * p.w_in, n_y = (size_t)p.c_out * p.h_out * p.w_out;
        float *x = alloc_random(n_x, &r), *bias = alloc_random((size_t)p.c_out, &r);
        float *w = alloc_random((size_t)p.c_out * (p.c_in / p.groups) * p.k_h * p.k_w, &r);
        float *scale = c[8] ? alloc_random((size_t)p.c_in, &r) : NULL, *res = c[8] ? alloc_random(n_y, &r) : NULL;
        float *packed = alloc_nan(pl.packed_floats), *scratch = pl.scratch_floats ? alloc_nan(pl.scratch_floats) : NULL;
        float *want = alloc_floats(n_y), *y = alloc_floats(n_y + 2);
        conv2d_plan_pack(&pl, w, packed);
        pl.w = packed;
        pl.bias = bias;
        const kernels_part all = conv2d_plan_part(&pl, 0, 1);
        conv2d_plan_forward_part(&pl, x, scale, res, want, scratch, &all);
        for (size_t ri = 0; ri < sizeof region_bytes / sizeof *region_bytes; ri++) {
            const size_t n_region = (region_bytes[ri] + 3) / 4;
            float *region = alloc_random(n_region, &r), *region_copy = alloc_floats(n_region);
            memcpy(region_copy, region, n_region * sizeof *region);
            pl.prefetch = region;
            pl.prefetch_bytes = region_bytes[ri];
            for (size_t pi = 0; pi < sizeof parts / sizeof *parts; pi++) {
                const int nth = parts[pi];
                char what_n[240];
                snprintf(what_n, sizeof what_n, "%s, prefetch %zu bytes, %d parts", what, region_bytes[ri], nth);
                fill_poison(y, n_y + 2);
                for (int ith = 0; ith < nth; ith++) {
                    const kernels_part part = conv2d_plan_part(&pl, ith, nth);
                    conv2d_plan_forward_part(&pl, x, scale, res, y + 1, scratch, &part);
                }
                if (!fused_matches_unfused(y, want, n_y, (size_t)p.h_out * p.w_out, p.w_out, what_n)) break;
            }
            T_CHECK(memcmp(region, region_copy, n_region * sizeof *region) == 0, "%s: prefetched region changed",
                    what);
            free(region);
            free(region_copy);
        }
        free(x);
        free(bias);
        free(w);
        free(scale);
        free(res);
        free(packed);
        free(scratch);
        free(want);
        free(y);
    }
    test_end("conv2d_plan.prefetch (GEMM path): the prefetching tile kernels bit-identical to the plan without, "
             "guard cells, region unchanged, 1/2/3/5 parts");
}

int main(void)
{
    /* One BLAS thread: results are then deterministic, and the concurrency test exercises the
     * callers' threads rather than OpenBLAS's own pool. */
    openblas_set_num_threads(1);

    test_out_size();
    test_tf_same();
    test_act();
    test_conv_scratch_size();
    test_conv_plan();
    test_conv_sweeps(CONV_VIA_DISPATCH,
                     "conv2d_forward sweeps: groups 1/2/3, channel multiplier, k 1..11, s 1..4, "
                     "4 padding modes, rectangular kernels, blocking edges");
    if (cpu_isa_best() >= CPU_ISA_AVX2) {
        test_conv_sweeps(CONV_VIA_PACKED, cpu_isa_best() >= CPU_ISA_AVX512
                                              ? "conv2d_forward_packed (AVX-512 GEMM): same sweeps"
                                              : "conv2d_forward_packed (AVX2 GEMM): same sweeps");
        test_conv_packed_fused();
        test_conv_gemm_prefetch();
        test_gemm_tail_tiles();
    } else {
        test_skip("conv2d_forward_packed (packed GEMM): same sweeps", "CPU lacks AVX2/FMA");
        test_skip("conv2d_forward_packed_fused", "CPU lacks AVX2/FMA");
    }
    if (cpu_isa_best() >= CPU_ISA_AVX2)
        test_wino_isa(CPU_ISA_AVX2, "Winograd, AVX2 variant: every variant vs the reference, odd sizes, every padding, "
                                    "parts bit-identical (and = AVX-512 where the CPU has it)");
    else
        test_skip("Winograd, AVX2 variant", "CPU lacks AVX2/FMA");
    if (cpu_isa_best() >= CPU_ISA_AVX512)
        test_wino_isa(CPU_ISA_AVX512, "Winograd, AVX-512 variant: the same cases");
    else
        test_skip("Winograd, AVX-512 variant", "CPU lacks AVX-512F");
    if (cpu_isa_best() >= CPU_ISA_AVX2)
        test_stem_isa(CPU_ISA_AVX2, "stem kernel, AVX2 variant: vs the reference and the fmaf chain, every padding, output-channel passes, "
                                    "row parts bit-identical (and = AVX-512 where the CPU has it)");
    else
        test_skip("stem kernel, AVX2 variant", "CPU lacks AVX2/FMA");
    if (cpu_isa_best() >= CPU_ISA_AVX512)
        test_stem_isa(CPU_ISA_AVX512, "stem kernel, AVX-512 variant: the same cases");
    else
        test_skip("stem kernel, AVX-512 variant", "CPU lacks AVX-512F");
    test_dw_sweep(CONV_VIA_DISPATCH, "dwconv sweep via conv2d_forward (best variant)");
    test_dw_sweep(CONV_VIA_DW_GENERIC, "dwconv sweep, portable variant");
    if (cpu_isa_best() >= CPU_ISA_AVX2) {
        test_dw_sweep(CONV_VIA_DW_AVX2, "dwconv sweep, AVX2 variant");
        test_dw_cb_avx2();
        test_dw_s2_rows_avx2();
        test_dw3s1_avx2();
    } else {
        test_skip("dwconv sweep, AVX2 variant", "CPU lacks AVX2/FMA");
        test_skip("AVX2 stride-2 depthwise row kernel", "CPU lacks AVX2/FMA");
    }
    if (cpu_isa_best() >= CPU_ISA_AVX512) {
        test_dw_sweep(CONV_VIA_DW_AVX512, "dwconv sweep, AVX-512 variant");
        test_dw_cb();
        test_dw_s2_rows();
    } else {
        test_skip("dwconv sweep, AVX-512 variant", "CPU lacks AVX-512F");
        test_skip("channel-blocked depthwise", "CPU lacks AVX-512F");
    }
    test_pool_sweep(CPU_ISA_GENERIC,
                    "pool2d sweep max/avg, ceil_mode, count_include_pad, asymmetric pads (portable)");
    test_pool_wide(CPU_ISA_GENERIC,
                   "pool2d wide rows (column tiles) and windows wider than the row buffer (portable)");
    test_pool_hand(CPU_ISA_GENERIC, "pool2d hand-computed values (torch), NaN (portable)");
    test_pool_bias(CPU_ISA_GENERIC, "pool2d_forward_bias_part: pool, bias, activation (portable)");
    if (cpu_isa_best() >= CPU_ISA_AVX2) {
        test_pool_sweep(CPU_ISA_AVX2, "pool2d sweep (AVX2)");
        test_pool_wide(CPU_ISA_AVX2, "pool2d wide rows and wide windows (AVX2)");
        test_pool_hand(CPU_ISA_AVX2, "pool2d hand-computed values, NaN (AVX2)");
        test_pool_bias(CPU_ISA_AVX2, "pool2d_forward_bias_part: pool, bias, activation fused (AVX2), parts");
        test_pool_avx2_bits();
    } else {
        test_skip("pool2d AVX2 variant", "CPU lacks AVX2/FMA");
    }
    test_adaptive_avgpool(CPU_ISA_GENERIC,
                          "adaptive_avgpool2d (incl. 13->5, 7->1, upsampling bins, global sweep) (portable)");
    if (cpu_isa_best() >= CPU_ISA_AVX512)
        test_adaptive_avgpool(CPU_ISA_AVX512, "adaptive_avgpool2d, global pooling on AVX-512 (same cases)");
    else
        test_skip("adaptive_avgpool2d AVX-512 variant", "CPU lacks AVX-512F");
    if (cpu_isa_best() >= CPU_ISA_AVX2)
        test_adaptive_avgpool(CPU_ISA_AVX2, "adaptive_avgpool2d, global pooling on AVX2 (same cases)");
    else
        test_skip("adaptive_avgpool2d AVX2 variant", "CPU lacks AVX2/FMA");
    test_linear(CPU_ISA_GENERIC, "linear_forward, OpenBLAS sgemv (bias or not, every activation)");
    if (cpu_isa_best() >= CPU_ISA_AVX2) {
        test_linear(CPU_ISA_AVX2, "linear_forward, AVX2 GEMV (bias or not, every activation)");
        test_gemv_lanes_bits();
    } else {
        test_skip("linear_forward, AVX2 GEMV", "CPU lacks AVX2/FMA");
    }
    test_linear_batch(CPU_ISA_GENERIC, "linear_batch_forward, batch 1..9, 17, 35 = linear_forward per input (OpenBLAS sgemv)");
    if (cpu_isa_best() >= CPU_ISA_AVX512)
        test_linear_batch(CPU_ISA_AVX512,
                          "linear_batch_forward, batch 1..9, 17, 35 = AVX-512 GEMV per input bit for bit, odd sizes");
    else
        test_skip("linear_batch_forward, AVX-512", "CPU lacks AVX-512F");
    if (cpu_isa_best() >= CPU_ISA_AVX2)
        test_linear_batch(CPU_ISA_AVX2,
                          "linear_batch_forward, batch 1..9, 17, 35 = AVX2 GEMV per input bit for bit, odd sizes");
    else
        test_skip("linear_batch_forward, AVX2", "CPU lacks AVX2/FMA");
    test_add();
    test_scale();
    test_shuffle();
    test_concat();
    test_softmax();
    test_topk();
    test_concurrent();
    test_part_split();
    test_dw_pool_parts();
    if (cpu_isa_best() == CPU_ISA_AVX2)
        test_dw_cb_avx2_parts();
    else
        test_skip("channel-blocked AVX2 depthwise plan parts", "not the AVX2 variant");
    test_linear_parts();
    test_linear_batch_parts();
    if (cpu_isa_best() >= CPU_ISA_AVX2)
        test_conv_packed_parts();
    else
        test_skip("conv2d_forward_packed_fused_part", "CPU lacks AVX2/FMA");
    if (cpu_isa_best() >= CPU_ISA_AVX2)
        test_conv_pw_dw();
    else
        test_skip("conv2d_pw_dw_forward", "CPU lacks AVX2/FMA");
    if (cpu_isa_best() >= CPU_ISA_AVX2)
        test_conv_dw_pw();
    else
        test_skip("conv2d_plan_fuse_dw_pw", "CPU lacks AVX2/FMA");
    if (cpu_isa_best() >= CPU_ISA_AVX2)
        test_conv_pw_dwcb();
    else
        test_skip("conv2d_plan_fuse_pw_dwcb", "CPU lacks AVX2/FMA");
    return test_finish();
}
