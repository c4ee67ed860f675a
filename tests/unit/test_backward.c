/* Unit tests of the training backward kernels (kernels.h: conv2d_backward_*, act_backward,
 * pool2d_backward, adaptive_avg_backward, scale_channels_backward, BatchNorm, dropout) against
 * naive references in double. The references themselves are checked by central finite
 * differences in double on the matching naive forward. Outputs and scratch are NaN-poisoned
 * (overwritten outputs) or random (accumulated parameter gradients: the test checks the
 * increment), buffers have their exact sizes (ASan), and every kernel runs twice to check that
 * it gives the same bits. */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/kernels.h"
#include "../../core/kernels_internal.h"
#include "../test.h"

/* Kernel vs reference: |got - want| <= TOL_REL * (sum of |terms| of the value) + TOL_ABS. */
#define TOL_REL 1e-4
#define TOL_ABS 1e-6
/* Finite differences of the double references: relative to the largest gradient. */
#define FD_TOL 1e-6
#define MAX_REPORTS 5

/* ---- helpers ---- */

typedef struct {
    uint64_t s;
} trng;

static uint64_t trng_next(trng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static float trng_uniform(trng *r) { return (float)((double)(trng_next(r) >> 11) * 0x1p-52 - 1.0); }

static int trng_int(trng *r, int lo, int hi) { return lo + (int)(trng_next(r) % (uint64_t)(hi - lo + 1)); }

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static float *alloc_random(size_t n, trng *r)
{
    float *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = trng_uniform(r);
    return p;
}

static float *alloc_nan(size_t n)
{
    float *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

static float *alloc_copy(const float *src, size_t n)
{
    float *p = xmalloc(n * sizeof *p);
    memcpy(p, src, n * sizeof *p);
    return p;
}

static double *alloc_zero_d(size_t n)
{
    double *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = 0.0;
    return p;
}

/* First index where got differs from want by more than TOL_REL * mag + TOL_ABS (NaN always
 * differs), or -1. mag NULL: |want|. */
static long first_bad(const float *got, const double *want, const double *mag, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const double tol = TOL_REL * (mag ? mag[i] : fabs(want[i])) + TOL_ABS;
        if (!(fabs((double)got[i] - want[i]) <= tol)) return (long)i;
    }
    return -1;
}

/* Like first_bad for the increment got - base of an accumulated gradient. */
static long first_bad_inc(const float *got, const float *base, const double *want,
                          const double *mag, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const double tol = TOL_REL * (mag ? mag[i] : fabs(want[i])) + TOL_ABS + 1e-7 * fabs(base[i]);
        if (!(fabs((double)got[i] - (double)base[i] - want[i]) <= tol)) return (long)i;
    }
    return -1;
}

static double max_abs_d(const double *x, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

/* ---- convolution ---- */

static size_t conv_x_n(const conv2d_params *p) { return (size_t)p->c_in * p->h_in * p->w_in; }
static size_t conv_y_n(const conv2d_params *p) { return (size_t)p->c_out * p->h_out * p->w_out; }
static size_t conv_w_n(const conv2d_params *p)
{
    return (size_t)p->c_out * (p->c_in / p->groups) * p->k_h * p->k_w;
}

/* Calls f(ctx, co, ci, y_index, x_index, w_index) for every term y[co][oh][ow] += x * w. */
#define CONV_TERMS(p, BODY)                                                                        \
    do {                                                                                           \
        const int cig_ = (p)->c_in / (p)->groups, cog_ = (p)->c_out / (p)->groups;                 \
        for (int co = 0; co < (p)->c_out; co++)                                                    \
            for (int oh = 0; oh < (p)->h_out; oh++)                                                \
                for (int ow = 0; ow < (p)->w_out; ow++)                                            \
                    for (int cl = 0; cl < cig_; cl++)                                              \
                        for (int i = 0; i < (p)->k_h; i++) {                                       \
                            const int ih = oh * (p)->stride_h - (p)->pad_t + i;                    \
                            if (ih < 0 || ih >= (p)->h_in) continue;                               \
                            for (int j = 0; j < (p)->k_w; j++) {                                   \
                                const int iw = ow * (p)->stride_w - (p)->pad_l + j;                \
                                if (iw < 0 || iw >= (p)->w_in) continue;                           \
                                const int ci = co / cog_ * cig_ + cl;                              \
                                const size_t yi = ((size_t)co * (p)->h_out + oh) * (p)->w_out + ow; \
                                const size_t xi = ((size_t)ci * (p)->h_in + ih) * (p)->w_in + iw;  \
                                const size_t wi = (((size_t)co * cig_ + cl) * (p)->k_h + i) * (p)->k_w + j; \
                                BODY;                                                              \
                            }                                                                      \
                        }                                                                          \
    } while (0)

/* sum over y of dy * conv(x, w), in double (the loss whose gradients the backward computes). */
static double conv_loss(const conv2d_params *p, const double *x, const double *w, const double *dy)
{
    double *y = alloc_zero_d(conv_y_n(p));
    CONV_TERMS(p, y[yi] += x[xi] * w[wi]);
    double l = 0.0;
    for (size_t k = 0; k < conv_y_n(p); k++) l += dy[k] * y[k];
    free(y);
    return l;
}

/* Reference gradients (and the sums of |terms| for the tolerance). */
static void ref_conv_backward(const conv2d_params *p, const double *x, const double *w,
                              const double *dy, double *dx, double *dx_mag, double *dw,
                              double *dw_mag, double *db, double *db_mag)
{
    CONV_TERMS(p, {
        dx[xi] += dy[yi] * w[wi];
        dx_mag[xi] += fabs(dy[yi] * w[wi]);
        dw[wi] += dy[yi] * x[xi];
        dw_mag[wi] += fabs(dy[yi] * x[xi]);
    });
    const size_t hw = (size_t)p->h_out * p->w_out;
    for (int co = 0; co < p->c_out; co++)
        for (size_t k = 0; k < hw; k++) {
            db[co] += dy[co * hw + k];
            db_mag[co] += fabs(dy[co * hw + k]);
        }
}

static double *to_double(const float *x, size_t n)
{
    double *d = xmalloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

/* Central differences of conv_loss w.r.t. up to 6 random entries of x and of w, against the
 * reference gradients. Returns the worst relative error (to the largest gradient). */
static double conv_fd_check(const conv2d_params *p, double *x, double *w, const double *dy,
                            const double *dx, const double *dw, trng *r)
{
    const double h = 1e-3; /* the loss is linear in each argument: exact up to rounding */
    double worst = 0.0;
    const double sx = fmax(max_abs_d(dx, conv_x_n(p)), 1e-12);
    const double sw = fmax(max_abs_d(dw, conv_w_n(p)), 1e-12);
    for (int t = 0; t < 6; t++) {
        size_t k = trng_next(r) % conv_x_n(p);
        double v = x[k];
        x[k] = v + h;
        double lp = conv_loss(p, x, w, dy);
        x[k] = v - h;
        double lm = conv_loss(p, x, w, dy);
        x[k] = v;
        worst = fmax(worst, fabs((lp - lm) / (2 * h) - dx[k]) / sx);
        k = trng_next(r) % conv_w_n(p);
        v = w[k];
        w[k] = v + h;
        lp = conv_loss(p, x, w, dy);
        w[k] = v - h;
        lm = conv_loss(p, x, w, dy);
        w[k] = v;
        worst = fmax(worst, fabs((lp - lm) / (2 * h) - dw[k]) / sw);
    }
    return worst;
}

/* One convolution: data and weight gradients (+ bias) vs the reference, twice (same bits), the
 * weight gradient in every split into 1..4 parts (same bits as the whole call), and the
 * reference by finite differences. Returns 0 when all passed. */
static int conv_case(const conv2d_params *p, trng *r, int *n_reports)
{
    const size_t nx = conv_x_n(p), ny = conv_y_n(p), nw = conv_w_n(p);
    float *x = alloc_random(nx, r), *w = alloc_random(nw, r), *dy = alloc_random(ny, r);
    float *dw0 = alloc_random(nw, r), *db0 = alloc_random((size_t)p->c_out, r);
    const size_t ns = conv2d_backward_scratch_floats(p);
    float *scratch = ns ? alloc_nan(ns) : NULL;
    float *dx = alloc_nan(nx), *dx2 = alloc_nan(nx);
    float *dw = alloc_copy(dw0, nw), *db = alloc_copy(db0, (size_t)p->c_out);
    float *dw2 = alloc_copy(dw0, nw), *db2 = alloc_copy(db0, (size_t)p->c_out);
    double *xd = to_double(x, nx), *wd = to_double(w, nw), *dyd = to_double(dy, ny);
    double *rdx = alloc_zero_d(nx), *mdx = alloc_zero_d(nx), *rdw = alloc_zero_d(nw);
    double *mdw = alloc_zero_d(nw), *rdb = alloc_zero_d((size_t)p->c_out);
    double *mdb = alloc_zero_d((size_t)p->c_out);
    int bad = 0;

    ref_conv_backward(p, xd, wd, dyd, rdx, mdx, rdw, mdw, rdb, mdb);
    conv2d_backward_data(p, dy, w, dx, scratch);
    if (scratch) for (size_t i = 0; i < ns; i++) scratch[i] = NAN;
    conv2d_backward_weights(p, x, dy, dw, db, scratch);
    conv2d_backward_data(p, dy, w, dx2, scratch);
    conv2d_backward_weights(p, x, dy, dw2, db2, scratch);

    long e;
    const char *what = NULL;
    if ((e = first_bad(dx, rdx, mdx, nx)) >= 0) what = "dx";
    else if ((e = first_bad_inc(dw, dw0, rdw, mdw, nw)) >= 0) what = "dw";
    else if ((e = first_bad_inc(db, db0, rdb, mdb, (size_t)p->c_out)) >= 0) what = "db";
    else if (memcmp(dx, dx2, nx * sizeof *dx) || memcmp(dw, dw2, nw * sizeof *dw) ||
             memcmp(db, db2, (size_t)p->c_out * sizeof *db))
        what = "second call bits", e = 0;
    for (int nth = 2; nth <= 4 && !what; nth++) {
        float *dwp = alloc_copy(dw0, nw), *dbp = alloc_copy(db0, (size_t)p->c_out);
        int prev_hi = 0;
        for (int ith = 0; ith < nth; ith++) {
            const kernels_part part = conv2d_backward_weights_split(p, ith, nth);
            if (part.lo != prev_hi) what = "parts not consecutive";
            prev_hi = part.hi;
            conv2d_backward_weights_part(p, x, dy, dwp, dbp, scratch, &part);
        }
        const int extent = conv2d_backward_weights_split(p, 0, 1).axis == KERNELS_PART_CHANNELS
                               ? p->c_out : p->c_in * p->k_h * p->k_w; /* one group: dw's columns */
        if (prev_hi != extent) what = "parts do not cover the weights";
        if (memcmp(dwp, dw, nw * sizeof *dw) || memcmp(dbp, db, (size_t)p->c_out * sizeof *db))
            what = "parts' bits differ from the whole call";
        free(dwp);
        free(dbp);
        e = nth;
    }
    if (!what) {
        double fd = conv_fd_check(p, xd, wd, dyd, rdx, rdw, r);
        if (!(fd <= FD_TOL)) what = "finite differences of the reference", e = (long)(fd * 1e9);
    }
    if (what) {
        bad = 1;
        if ((*n_reports)++ < MAX_REPORTS)
            test_failf(__FILE__, __LINE__,
                       "%s at %ld: c %d->%d g %d %dx%d k %dx%d s %d,%d pad t%d l%d b%d r%d out %dx%d",
                       what, e, p->c_in, p->c_out, p->groups, p->h_in, p->w_in, p->k_h, p->k_w,
                       p->stride_h, p->stride_w, p->pad_t, p->pad_l, p->pad_b, p->pad_r, p->h_out,
                       p->w_out);
    }
    free(x), free(w), free(dy), free(dw0), free(db0), free(scratch), free(dx), free(dx2);
    free(dw), free(db), free(dw2), free(db2), free(xd), free(wd), free(dyd), free(rdx), free(mdx);
    free(rdw), free(mdw), free(rdb), free(mdb);
    return bad;
}

/* Padding modes: 0 none, 1 symmetric k/2, 2 TF SAME (asymmetric), 3 large asymmetric. */
static int conv_make(conv2d_params *p, int c_in, int c_out, int groups, int h, int w, int k_h,
                     int k_w, int s_h, int s_w, int pad_mode)
{
    *p = (conv2d_params){.c_in = c_in, .h_in = h, .w_in = w, .c_out = c_out, .k_h = k_h,
                         .k_w = k_w, .stride_h = s_h, .stride_w = s_w, .groups = groups,
                         .act = ACT_NONE};
    switch (pad_mode) {
    case 0: break;
    case 1: p->pad_t = p->pad_b = k_h / 2, p->pad_l = p->pad_r = k_w / 2; break;
    case 2:
        kernels_tf_same(h, k_h, s_h, &p->h_out, &p->pad_t, &p->pad_b);
        kernels_tf_same(w, k_w, s_w, &p->w_out, &p->pad_l, &p->pad_r);
        return p->h_out > 0 && p->w_out > 0;
    case 3: p->pad_t = 2, p->pad_b = 0, p->pad_l = 0, p->pad_r = 3; break;
    }
    p->h_out = kernels_out_size(h, k_h, s_h, p->pad_t, p->pad_b, 0);
    p->w_out = kernels_out_size(w, k_w, s_w, p->pad_l, p->pad_r, 0);
    return p->h_out > 0 && p->w_out > 0;
}

static void test_conv_sweep(void)
{
    test_begin();
    trng r = {11};
    int n_cases = 0, n_reports = 0;
    static const int kernels[][2] = {{1, 1}, {3, 3}, {5, 5}, {2, 2}, {1, 7}, {7, 1}, {3, 1}, {7, 7}};
    /* group kinds: 0 dense, 1 groups 2, 2 groups 3, 3 depthwise, 4 depthwise x2 multiplier */
    for (int kind = 0; kind < 5; kind++) {
        for (size_t ki = 0; ki < sizeof kernels / sizeof kernels[0]; ki++) {
            for (int s = 1; s <= 3; s++) {
                for (int pm = 0; pm < 4; pm++) {
                    const int c = trng_int(&r, 1, 4);
                    int c_in, c_out, groups;
                    switch (kind) {
                    case 0: c_in = c + 1, c_out = trng_int(&r, 1, 5), groups = 1; break;
                    case 1: c_in = 2 * c, c_out = 2 * trng_int(&r, 1, 3), groups = 2; break;
                    case 2: c_in = 3 * c, c_out = 3 * trng_int(&r, 1, 2), groups = 3; break;
                    case 3: c_in = c_out = groups = c + 1; break;
                    default: c_in = groups = c, c_out = 2 * c; break;
                    }
                    conv2d_params p;
                    const int h = trng_int(&r, 1, 13), w = trng_int(&r, 1, 13);
                    const int sw = ki % 2 ? s : (s % 3) + 1; /* unequal strides too */
                    if (!conv_make(&p, c_in, c_out, groups, h, w, kernels[ki][0], kernels[ki][1], s,
                                   sw, pm))
                        continue;
                    conv_case(&p, &r, &n_reports);
                    n_cases++;
                }
            }
        }
    }
    /* wide layers: more than one weight-gradient block (64 channels; one group: 256 columns of
     * c_in * k_h * k_w), pointwise and 3x3 */
    static const int wide[][6] = {{40, 70, 1, 9, 1, 1}, {24, 100, 1, 5, 3, 1}, {64, 64, 2, 4, 3, 2},
                                  {33, 33, 33, 17, 3, 2}, {70, 70, 70, 9, 5, 1}, {16, 96, 1, 7, 1, 2},
                                  {20, 140, 1, 6, 3, 1}, {128, 256, 2, 5, 1, 1}, {300, 20, 1, 5, 1, 1},
                                  {40, 30, 1, 7, 3, 1}, {64, 24, 1, 6, 3, 2}};
    for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++) {
        conv2d_params p;
        const int *v = wide[i];
        if (conv_make(&p, v[0], v[1], v[2], v[3], v[3] + 2, v[4], v[4], v[5], v[5], 2)) {
            conv_case(&p, &r, &n_reports);
            n_cases++;
        }
    }
    T_CHECK(n_reports == 0, "%d of %d convolutions failed", n_reports, n_cases);
    test_end("conv2d backward data/weights/bias vs double reference: dense, groups 2/3, depthwise, "
             "channel multiplier; k 1..7 and rectangular, strides 1..3, no/symmetric/TF SAME/large "
             "asymmetric pads; parts; same bits twice; reference by finite differences");
}

/* Depthwise backward in each instruction-set variant the CPU has (the data gradient runs the
 * forward's variants; the weight gradient a portable and an AVX-512 dot product). */
static void test_dw_isa(void)
{
    test_begin();
    trng r = {13};
    int n_cases = 0, n_reports = 0;
    for (int t = 0; t < 240; t++) {
        const int c = trng_int(&r, 1, 5), k_h = trng_int(&r, 1, 7);
        const int k_w = t % 3 ? k_h : trng_int(&r, 1, 7), s = trng_int(&r, 1, 3);
        conv2d_params p;
        if (!conv_make(&p, c, c, c, trng_int(&r, 1, 40), trng_int(&r, 1, 40), k_h, k_w, s,
                       t % 5 ? s : trng_int(&r, 1, 3), t % 4))
            continue;
        const size_t nx = conv_x_n(&p), ny = conv_y_n(&p), nw = conv_w_n(&p);
        float *x = alloc_random(nx, &r), *w = alloc_random(nw, &r), *dy = alloc_random(ny, &r);
        double *xd = to_double(x, nx), *wd = to_double(w, nw), *dyd = to_double(dy, ny);
        double *rdx = alloc_zero_d(nx), *mdx = alloc_zero_d(nx), *rdw = alloc_zero_d(nw);
        double *mdw = alloc_zero_d(nw), *rdb = alloc_zero_d((size_t)c), *mdb = alloc_zero_d((size_t)c);
        ref_conv_backward(&p, xd, wd, dyd, rdx, mdx, rdw, mdw, rdb, mdb);
        const size_t ns = conv2d_backward_scratch_floats(&p);
        for (int isa = CPU_ISA_GENERIC; isa <= (int)cpu_isa_best(); isa++) {
            float *dx = alloc_nan(nx), *scratch = alloc_nan(ns), *dw0 = alloc_random(nw, &r);
            float *dw = alloc_copy(dw0, nw);
            dwconv2d_backward_data_isa(&p, dy, w, dx, scratch, (cpu_isa)isa);
            for (size_t i = 0; i < ns; i++) scratch[i] = NAN;
            dwconv2d_backward_weights_isa(&p, x, dy, dw, 0, c, scratch, (cpu_isa)isa);
            long e;
            const char *what = NULL;
            if ((e = first_bad(dx, rdx, mdx, nx)) >= 0) what = "dx";
            else if ((e = first_bad_inc(dw, dw0, rdw, mdw, nw)) >= 0) what = "dw";
            if (what && n_reports++ < MAX_REPORTS)
                test_failf(__FILE__, __LINE__, "isa %d %s at %ld: c %d %dx%d k %dx%d s %d,%d pad t%d "
                           "l%d b%d r%d out %dx%d", isa, what, e, c, p.h_in, p.w_in, p.k_h, p.k_w,
                           p.stride_h, p.stride_w, p.pad_t, p.pad_l, p.pad_b, p.pad_r, p.h_out, p.w_out);
            free(dx), free(scratch), free(dw0), free(dw);
            n_cases++;
        }
        free(x), free(w), free(dy), free(xd), free(wd), free(dyd), free(rdx), free(mdx), free(rdw);
        free(mdw), free(rdb), free(mdb);
    }
    T_CHECK(n_reports == 0, "%d of %d depthwise cases failed", n_reports, n_cases);
    test_end("depthwise backward data/weights in every ISA variant (portable, AVX2, AVX-512 as the "
             "CPU has): k 1..7, strides 1..3, maps up to 40x40, all padding modes");
}

/* The data gradient on the forward kernels (conv2d_backward_data_plan_*): stride-1 single-group
 * convolutions of every kernel shape and padding mode, maps large enough for the Winograd paths
 * and channel counts past one GEMM panel, against the double reference; NaN-poisoned dx, packed
 * weights and scratch; the same bits twice and in every split into 1..3 parts. Where the CPU has
 * no AVX2 nothing takes the path (checked), the OpenBLAS data gradient covers it. */
static void test_conv_data_plan(void)
{
    test_begin();
    trng r = {17};
    int n_cases = 0, n_reports = 0, n_paths[CONV_PATH_PW_DWCB + 1] = {0};
    static const int kernels[][2] = {{1, 1}, {3, 3}, {5, 5}, {2, 3}, {1, 7}, {7, 1}, {3, 1}, {7, 7}};
    for (int t = 0; t < 96; t++) {
        const int *k = kernels[t % 8];
        const int big = t % 3 == 0, pm = (t / 8) % 4;
        const int c_in = big ? trng_int(&r, 20, 70) : trng_int(&r, 1, 9);
        const int c_out = big ? trng_int(&r, 20, 70) : trng_int(&r, 1, 9);
        const int h = trng_int(&r, 1, big ? 24 : 40), w = trng_int(&r, 1, big ? 24 : 40);
        conv2d_params p;
        if (!conv_make(&p, c_in, c_out, 1, h, w, k[0], k[1], 1, 1, pm)) continue;
        conv2d_plan pl;
        const int on = conv2d_backward_data_plan_init(&pl, &p);
        if (!on) {
            /* only padding beyond k - 1 or a CPU without AVX2 may refuse */
            const int pad_ok = p.pad_t <= p.k_h - 1 && p.pad_l <= p.k_w - 1 && p.h_in + p.pad_t >= p.h_out &&
                               p.w_in + p.pad_l >= p.w_out; /* the last: bottom / right padding <= k - 1 */
            if (pad_ok && cpu_isa_best() >= CPU_ISA_AVX2 && n_reports++ < MAX_REPORTS)
                test_failf(__FILE__, __LINE__, "refused: c %d->%d %dx%d k %dx%d pad t%d l%d b%d r%d", c_in, c_out,
                           h, w, k[0], k[1], p.pad_t, p.pad_l, p.pad_b, p.pad_r);
            continue;
        }
        n_paths[pl.path]++;
        const size_t nx = conv_x_n(&p), ny = conv_y_n(&p), nw = conv_w_n(&p);
        float *wgt = alloc_random(nw, &r), *dy = alloc_random(ny, &r), *wt = alloc_nan(nw);
        float *packed = alloc_nan(pl.packed_floats), *scratch = alloc_nan(pl.scratch_floats);
        float *dx = alloc_nan(nx), *dx2 = alloc_nan(nx);
        double *wd = to_double(wgt, nw), *dyd = to_double(dy, ny), *xd = alloc_zero_d(nx);
        double *rdx = alloc_zero_d(nx), *mdx = alloc_zero_d(nx), *rdw = alloc_zero_d(nw);
        double *mdw = alloc_zero_d(nw), *rdb = alloc_zero_d((size_t)c_out), *mdb = alloc_zero_d((size_t)c_out);
        ref_conv_backward(&p, xd, wd, dyd, rdx, mdx, rdw, mdw, rdb, mdb);
        conv2d_backward_data_plan_pack(&pl, wgt, wt, packed);
        pl.w = packed;
        const kernels_part whole = conv2d_plan_part(&pl, 0, 1);
        conv2d_plan_forward_part(&pl, dy, NULL, NULL, dx, scratch, &whole);
        long e;
        const char *what = NULL;
        if ((e = first_bad(dx, rdx, mdx, nx)) >= 0) what = "dx";
        for (int nth = 1; nth <= (conv2d_plan_splits(&pl) ? 3 : 1) && !what; nth++) {
            for (size_t i = 0; i < nx; i++) dx2[i] = NAN;
            for (size_t i = 0; i < pl.scratch_floats; i++) scratch[i] = NAN;
            for (int ith = 0; ith < nth; ith++) {
                const kernels_part part = conv2d_plan_part(&pl, ith, nth);
                conv2d_plan_forward_part(&pl, dy, NULL, NULL, dx2, scratch, &part);
            }
            if (memcmp(dx, dx2, nx * sizeof *dx)) what = "bits differ (second call / parts)", e = nth;
        }
        if (what && n_reports++ < MAX_REPORTS)
            test_failf(__FILE__, __LINE__, "path %d %s at %ld: c %d->%d %dx%d k %dx%d pad t%d l%d b%d r%d",
                       (int)pl.path, what, e, c_in, c_out, h, w, k[0], k[1], p.pad_t, p.pad_l, p.pad_b, p.pad_r);
        free(wgt), free(dy), free(wt), free(packed), free(scratch), free(dx), free(dx2), free(wd), free(dyd);
        free(xd), free(rdx), free(mdx), free(rdw), free(mdw), free(rdb), free(mdb);
        n_cases++;
    }
    T_CHECK(n_reports == 0, "%d of %d data-gradient plans failed", n_reports, n_cases);
    conv2d_params q;
    conv2d_plan q_plan;
    conv_make(&q, 19, 35, 1, 35, 35, 3, 3, 1, 1, 1);
    conv2d_plan_init(&q_plan, &q);
    const int wino = q_plan.path == CONV_PATH_WINOGRAD; /* whether this CPU has the Winograd kernels */
    if (cpu_isa_best() >= CPU_ISA_AVX2)
        T_CHECK(n_paths[CONV_PATH_GEMM] > 0 && (!wino || n_paths[CONV_PATH_WINOGRAD] > 0),
                "paths not all covered: Winograd %d (planned here: %d), GEMM %d", n_paths[CONV_PATH_WINOGRAD], wino,
                n_paths[CONV_PATH_GEMM]);
    else
        T_CHECK(n_cases == 0, "%d plans without AVX2", n_cases);
    test_end("conv2d data gradient on the forward kernels vs double reference: stride 1, k 1..7 and "
             "rectangular, no/symmetric/TF SAME/large asymmetric pads, Winograd and packed GEMM paths, "
             "NaN-poisoned outputs, same bits twice and in parts");
}

/* linear_backward_weights in every variant the CPU has: odd sizes (row and column tails of the
 * register blocks), padded leading dimensions (the padding must stay untouched), vs the double
 * reference; every variant and every split of the rows into calls gives the same bits. */
static void test_linear_dw(void)
{
    test_begin();
    trng r = {19};
    int n_cases = 0, n_reports = 0;
    for (int t = 0; t < 60; t++) {
        const int n = trng_int(&r, 1, 40), m = trng_int(&r, 1, 20), n_in = trng_int(&r, 1, t % 4 ? 150 : 1100);
        const size_t ld_dy = (size_t)m + (size_t)trng_int(&r, 0, 3), ld_x = (size_t)n_in + (size_t)trng_int(&r, 0, 5);
        const size_t ld_dw = (size_t)n_in + (size_t)trng_int(&r, 0, 17), nw = (size_t)m * ld_dw;
        float *dy = alloc_random((size_t)n * ld_dy, &r), *x = alloc_random((size_t)n * ld_x, &r);
        float *first = NULL;
        const char *what = NULL;
        long e = 0;
        for (int isa = CPU_ISA_GENERIC; isa <= (int)cpu_isa_best() && !what; isa++) {
            float *dw = alloc_nan(nw);
            linear_backward_weights_isa(n, m, n_in, dy, ld_dy, x, ld_x, dw, ld_dw, (cpu_isa)isa);
            for (int o = 0; o < m && !what; o++)
                for (int i = 0; i < (int)ld_dw && !what; i++) {
                    const float got = dw[(size_t)o * ld_dw + i];
                    if (i >= n_in) {
                        if (!isnan(got)) what = "padding written", e = o * (long)ld_dw + i;
                        continue;
                    }
                    double want = 0.0, mag = 0.0;
                    for (int k = 0; k < n; k++) {
                        want += (double)dy[(size_t)k * ld_dy + o] * x[(size_t)k * ld_x + i];
                        mag += fabs((double)dy[(size_t)k * ld_dy + o] * x[(size_t)k * ld_x + i]);
                    }
                    if (!(fabs(got - want) <= TOL_REL * mag + TOL_ABS)) what = "dw", e = o * (long)ld_dw + i;
                }
            if (!what && first && memcmp(first, dw, nw * sizeof *dw)) what = "variants' bits differ", e = isa;
            if (!what) { /* rows in two calls */
                float *dw2 = alloc_nan(nw);
                const int split = trng_int(&r, 0, m);
                linear_backward_weights_isa(n, split, n_in, dy, ld_dy, x, ld_x, dw2, ld_dw, (cpu_isa)isa);
                linear_backward_weights_isa(n, m - split, n_in, dy + split, ld_dy, x, ld_x, dw2 + (size_t)split * ld_dw,
                                            ld_dw, (cpu_isa)isa);
                if (memcmp(dw2, dw, nw * sizeof *dw)) what = "split rows' bits differ", e = split;
                free(dw2);
            }
            if (!first) first = dw;
            else free(dw);
            n_cases++;
        }
        if (what && n_reports++ < MAX_REPORTS)
            test_failf(__FILE__, __LINE__, "%s at %ld: n %d m %d n_in %d ld %zu/%zu/%zu", what, e, n, m, n_in, ld_dy,
                       ld_x, ld_dw);
        free(first), free(dy), free(x);
    }
    T_CHECK(n_reports == 0, "%d of %d linear weight gradients failed", n_reports, n_cases);
    test_end("linear_backward_weights in every ISA variant vs double reference: odd sizes, padded rows "
             "untouched, same bits across variants and row splits");
}

/* ---- activations ---- */

static double ref_act_grad(act_kind a, double x)
{
    switch (a) {
    case ACT_RELU: return x > 0 ? 1 : 0;
    case ACT_RELU6: return x > 0 && x < 6 ? 1 : 0;
    case ACT_HSWISH: return x < -3 ? 0 : x < 3 ? x / 3 + 0.5 : 1;
    case ACT_HSIGMOID: return x > -3 && x < 3 ? 1.0 / 6 : 0;
    case ACT_NONE: break;
    }
    return 1;
}

static double ref_act(act_kind a, double v)
{
    double t;
    switch (a) {
    case ACT_RELU: return v > 0 ? v : 0;
    case ACT_RELU6: return v < 0 ? 0 : v > 6 ? 6 : v;
    case ACT_HSWISH: t = v + 3, t = t < 0 ? 0 : t > 6 ? 6 : t; return v * t / 6;
    case ACT_HSIGMOID: t = v + 3, t = t < 0 ? 0 : t > 6 ? 6 : t; return t / 6;
    case ACT_NONE: break;
    }
    return v;
}

static void test_act_backward(void)
{
    test_begin();
    trng r = {5};
    enum { N = 203 };
    static const float edges[] = {-3.0f, 3.0f, 0.0f, 6.0f, -6.0f, -0.0f, 2.9999998f, -2.9999998f,
                                  5.9999995f, 6.0000005f, -3.0000002f, 3.0000002f};
    float x[N], dy[N], dx[N], dx2[N];
    for (int i = 0; i < N; i++) {
        x[i] = i < (int)(sizeof edges / sizeof edges[0]) ? edges[i] : 8.0f * trng_uniform(&r);
        dy[i] = trng_uniform(&r);
    }
    for (int a = ACT_NONE; a <= ACT_HSIGMOID; a++) {
        for (int i = 0; i < N; i++) dx[i] = NAN;
        act_backward((act_kind)a, x, dy, dx, N);
        memcpy(dx2, dy, sizeof dx2);
        act_backward((act_kind)a, x, dx2, dx2, N); /* in place */
        for (int i = 0; i < N; i++) {
            const double want = dy[i] * ref_act_grad((act_kind)a, x[i]);
            const double mag = fabs(dy[i]) * (a == ACT_HSWISH ? fabs(x[i]) / 3 + 0.5 : 1.0);
            T_CHECK(fabs(dx[i] - want) <= 1e-6 * mag, "act %d x %.9g: dx %.9g want %.9g", a,
                    x[i], dx[i], want);
            T_CHECK(memcmp(&dx[i], &dx2[i], sizeof dx[i]) == 0, "act %d in place differs at %d", a, i);
        }
        /* the reference derivative agrees with finite differences away from the kinks */
        for (int i = 0; i < 50; i++) {
            const double v = 8.0 * trng_uniform(&r), h = 1e-6;
            if (fabs(v) < 1e-3 || fabs(fabs(v) - 3) < 1e-3 || fabs(v - 6) < 1e-3) continue;
            const double fd = (ref_act((act_kind)a, v + h) - ref_act((act_kind)a, v - h)) / (2 * h);
            T_CHECK(fabs(fd - ref_act_grad((act_kind)a, v)) < 1e-6, "act %d fd at %g", a, v);
        }
    }
    /* PyTorch 1.13's values at the edges, checked against torch: hardswish'(-3) = -0.5,
     * hardswish'(3) = 1 (its vectorized loop), relu6'(0) = relu6'(6) = 0, hardsigmoid'(+-3) = 0,
     * relu'(0) = 0 */
    const float ex[] = {-3.0f, 3.0f, 0.0f, 6.0f}, one[] = {1, 1, 1, 1};
    float g[4];
    act_backward(ACT_HSWISH, ex, one, g, 2);
    T_CHECK(g[0] == -0.5f && g[1] == 1.0f, "hardswish edges %g %g", g[0], g[1]);
    act_backward(ACT_RELU6, ex + 2, one, g, 2);
    T_CHECK(g[0] == 0.0f && g[1] == 0.0f, "relu6 edges %g %g", g[0], g[1]);
    act_backward(ACT_HSIGMOID, ex, one, g, 2);
    T_CHECK(g[0] == 0.0f && g[1] == 0.0f, "hardsigmoid edges %g %g", g[0], g[1]);
    act_backward(ACT_RELU, ex + 2, one, g, 1);
    T_CHECK(g[0] == 0.0f, "relu at 0 %g", g[0]);
    test_end("act_backward relu/relu6/hswish/hsigmoid: edges as PyTorch, random values, in place");
}

/* ---- pooling ---- */

/* Reference in the gather form (each input cell sums the outputs whose window picks it). */
static void ref_pool_backward(const pool2d_params *p, const float *x, const float *dy, double *dx)
{
    const size_t hw_in = (size_t)p->h_in * p->w_in;
    for (size_t i = 0; i < (size_t)p->c * hw_in; i++) dx[i] = 0.0;
    for (int c = 0; c < p->c; c++)
        for (int oh = 0; oh < p->h_out; oh++)
            for (int ow = 0; ow < p->w_out; ow++) {
                const int hs = oh * p->stride_h - p->pad_t, ws = ow * p->stride_w - p->pad_l;
                const double g = dy[((size_t)c * p->h_out + oh) * p->w_out + ow];
                if (p->kind == POOL_MAX) {
                    long best = -1;
                    float m = 0;
                    for (int ih = hs; ih < hs + p->k_h; ih++)
                        for (int iw = ws; iw < ws + p->k_w; iw++) {
                            if (ih < 0 || iw < 0 || ih >= p->h_in || iw >= p->w_in) continue;
                            const long idx = (long)ih * p->w_in + iw;
                            const float v = x[c * hw_in + (size_t)idx];
                            if (best < 0 || isnan(v) || (!isnan(m) && v > m)) best = idx, m = v;
                        }
                    if (best >= 0) dx[c * hw_in + (size_t)best] += g;
                } else {
                    const int he = hs + p->k_h < p->h_in + p->pad_b ? hs + p->k_h : p->h_in + p->pad_b;
                    const int we = ws + p->k_w < p->w_in + p->pad_r ? ws + p->k_w : p->w_in + p->pad_r;
                    int n_real = 0;
                    for (int ih = hs; ih < he; ih++)
                        for (int iw = ws; iw < we; iw++)
                            n_real += ih >= 0 && iw >= 0 && ih < p->h_in && iw < p->w_in;
                    const int div = p->count_include_pad ? (he - hs) * (we - ws) : n_real;
                    for (int ih = hs; ih < he; ih++)
                        for (int iw = ws; iw < we; iw++)
                            if (ih >= 0 && iw >= 0 && ih < p->h_in && iw < p->w_in)
                                dx[c * hw_in + (size_t)ih * p->w_in + iw] += g / div;
                }
            }
}

static void test_pool_backward(void)
{
    test_begin();
    trng r = {21};
    int n_cases = 0, n_reports = 0;
    for (int t = 0; t < 600; t++) {
        pool2d_params p = {.kind = t % 2 ? POOL_AVG : POOL_MAX, .c = trng_int(&r, 1, 3)};
        p.h_in = trng_int(&r, 1, 14), p.w_in = trng_int(&r, 1, 40); /* wide rows: the max backward's 8-output lanes at strides 1-3 */
        p.k_h = trng_int(&r, 1, 4), p.k_w = t % 5 == 0 ? p.k_h : trng_int(&r, 1, 4);
        p.stride_h = trng_int(&r, 1, 3), p.stride_w = trng_int(&r, 1, 3);
        const int ceil_mode = trng_int(&r, 0, 1);
        if (t % 7 == 3) { /* TF SAME: asymmetric, average over the real cells */
            kernels_tf_same(p.h_in, p.k_h, p.stride_h, &p.h_out, &p.pad_t, &p.pad_b);
            kernels_tf_same(p.w_in, p.k_w, p.stride_w, &p.w_out, &p.pad_l, &p.pad_r);
            p.count_include_pad = 0;
        } else { /* PyTorch: symmetric pads <= k/2 */
            p.pad_t = p.pad_b = trng_int(&r, 0, p.k_h / 2);
            p.pad_l = p.pad_r = trng_int(&r, 0, p.k_w / 2);
            p.count_include_pad = trng_int(&r, 0, 1);
            p.h_out = kernels_out_size(p.h_in, p.k_h, p.stride_h, p.pad_t, p.pad_b, ceil_mode);
            p.w_out = kernels_out_size(p.w_in, p.k_w, p.stride_w, p.pad_l, p.pad_r, ceil_mode);
        }
        if (p.h_out <= 0 || p.w_out <= 0) continue;
        const size_t nx = (size_t)p.c * p.h_in * p.w_in, ny = (size_t)p.c * p.h_out * p.w_out;
        float *x = alloc_random(nx, &r), *dy = alloc_random(ny, &r);
        /* ties (few distinct values), -inf and NaN in some maps */
        if (t % 3 == 0) for (size_t i = 0; i < nx; i++) x[i] = (float)trng_int(&r, 0, 2);
        if (t % 11 == 0) x[trng_next(&r) % nx] = NAN;
        if (t % 13 == 0) for (size_t i = 0; i < nx; i++) x[i] = -INFINITY;
        float *dx = alloc_nan(nx), *dx2 = alloc_nan(nx);
        double *ref = alloc_zero_d(nx);
        ref_pool_backward(&p, x, dy, ref);
        pool2d_backward(&p, x, dy, dx);
        pool2d_backward(&p, p.kind == POOL_MAX ? x : NULL, dy, dx2);
        const long e = first_bad(dx, ref, NULL, nx);
        if ((e >= 0 || memcmp(dx, dx2, nx * sizeof *dx)) && n_reports++ < MAX_REPORTS)
            test_failf(__FILE__, __LINE__, "%s at %ld: %dx%d k %dx%d s %d,%d pad t%d l%d b%d r%d "
                       "out %dx%d cip %d", p.kind == POOL_MAX ? "max" : "avg", e, p.h_in, p.w_in,
                       p.k_h, p.k_w, p.stride_h, p.stride_w, p.pad_t, p.pad_l, p.pad_b, p.pad_r,
                       p.h_out, p.w_out, p.count_include_pad);
        /* average pooling is linear: its reference by finite differences */
        if (p.kind == POOL_AVG && e < 0 && t % 4 == 1) {
            for (int k = 0; k < 3; k++) {
                const size_t i = trng_next(&r) % nx;
                /* d/dx_i sum dy * avg(x) = sum over windows holding i of dy / divisor: the
                 * forward run on the unit vector e_i, dotted with dy */
                float *e_i = alloc_nan(nx), *y = alloc_nan(ny);
                for (size_t j = 0; j < nx; j++) e_i[j] = j == i ? 1.0f : 0.0f;
                pool2d_forward(&p, e_i, y);
                double fd = 0.0;
                for (size_t j = 0; j < ny; j++) fd += (double)y[j] * dy[j];
                T_CHECK(fabs(fd - ref[i]) <= 1e-6 * (1 + fabs(ref[i])), "avg fd %g vs %g", fd, ref[i]);
                free(e_i), free(y);
            }
        }
        free(x), free(dy), free(dx), free(dx2), free(ref);
        n_cases++;
    }
    T_CHECK(n_reports == 0, "%d of %d poolings failed", n_reports, n_cases);
    test_end("pool2d_backward max (first maximum, ties, NaN, -inf) and avg (ceil_mode, "
             "count_include_pad, TF SAME) vs gather-form reference; avg reference = forward on unit "
             "vectors");
}

static void test_adaptive_backward(void)
{
    test_begin();
    trng r = {31};
    for (int t = 0; t < 80; t++) {
        const int c = trng_int(&r, 1, 3), h_in = trng_int(&r, 1, 12), w_in = trng_int(&r, 1, 12);
        const int h_out = t % 4 == 0 ? 1 : trng_int(&r, 1, h_in + 2);
        const int w_out = t % 4 == 0 ? 1 : trng_int(&r, 1, w_in + 2);
        const size_t nx = (size_t)c * h_in * w_in, ny = (size_t)c * h_out * w_out;
        float *dy = alloc_random(ny, &r), *dx = alloc_nan(nx), *e_i = alloc_nan(nx), *y = alloc_nan(ny);
        adaptive_avg_backward(c, h_in, w_in, h_out, w_out, dy, dx);
        /* linear: dx_i = forward(e_i) . dy */
        for (size_t i = 0; i < nx; i++) {
            for (size_t j = 0; j < nx; j++) e_i[j] = j == i ? 1.0f : 0.0f;
            adaptive_avgpool2d_forward(c, h_in, w_in, h_out, w_out, e_i, y);
            double want = 0.0, mag = 0.0;
            for (size_t j = 0; j < ny; j++) want += (double)y[j] * dy[j], mag += fabs((double)y[j] * dy[j]);
            T_CHECK(fabs(dx[i] - want) <= 1e-5 * mag + 1e-7, "adaptive %dx%d->%dx%d at %zu: %g vs %g",
                    h_in, w_in, h_out, w_out, i, dx[i], want);
        }
        free(dy), free(dx), free(e_i), free(y);
    }
    test_end("adaptive_avg_backward (global and general bins) = transpose of the forward");
}

/* ---- per-channel scale ---- */

static void test_scale_backward(void)
{
    test_begin();
    trng r = {41};
    const int c = 7, hw = 53;
    float *x = alloc_random((size_t)c * hw, &r), *s = alloc_random((size_t)c, &r);
    float *dy = alloc_random((size_t)c * hw, &r), *dx = alloc_nan((size_t)c * hw);
    float *ds = alloc_nan((size_t)c), *dyc = alloc_copy(dy, (size_t)c * hw), *ds2 = alloc_nan((size_t)c);
    scale_channels_backward(c, hw, x, s, dy, dx, ds);
    scale_channels_backward(c, hw, x, s, dyc, dyc, ds2); /* in place */
    for (int ci = 0; ci < c; ci++) {
        double want = 0.0, mag = 0.0;
        for (int i = 0; i < hw; i++) {
            const size_t k = (size_t)ci * hw + i;
            want += (double)dy[k] * x[k], mag += fabs((double)dy[k] * x[k]);
            T_CHECK(dx[k] == dy[k] * s[ci], "dx at %zu", k);
        }
        T_CHECK(fabs(ds[ci] - want) <= TOL_REL * mag, "dscale %d: %g vs %g", ci, ds[ci], want);
    }
    T_CHECK(!memcmp(dx, dyc, (size_t)c * hw * sizeof *dx) && !memcmp(ds, ds2, (size_t)c * sizeof *ds),
            "in place differs");
    free(x), free(s), free(dy), free(dx), free(ds), free(dyc), free(ds2);
    test_end("scale_channels_backward dx and dscale, in place");
}

/* ---- BatchNorm ---- */

/* y = (x - mean) / sqrt(var + eps) * gamma + beta over the batch, biased var (train mode), or
 * with the given statistics (frozen), in double; returns sum dy * y. */
static double bn_loss(int n, int c, int hw, double eps, const double *x, const double *gamma,
                      const double *beta, const double *rmean, const double *rvar,
                      const double *dy, int train)
{
    double l = 0.0;
    const double count = (double)n * hw;
    for (int ch = 0; ch < c; ch++) {
        double m = 0.0, v = 0.0;
        if (train) {
            for (int i = 0; i < n; i++)
                for (int k = 0; k < hw; k++) m += x[((size_t)i * c + ch) * hw + k];
            m /= count;
            for (int i = 0; i < n; i++)
                for (int k = 0; k < hw; k++) {
                    const double d = x[((size_t)i * c + ch) * hw + k] - m;
                    v += d * d;
                }
            v /= count;
        } else {
            m = rmean[ch], v = rvar[ch];
        }
        for (int i = 0; i < n; i++)
            for (int k = 0; k < hw; k++) {
                const size_t idx = ((size_t)i * c + ch) * hw + k;
                l += dy[idx] * ((x[idx] - m) / sqrt(v + eps) * gamma[ch] + beta[ch]);
            }
    }
    return l;
}

/* Reference forward outputs and gradients, double. */
static void ref_bn(int n, int c, int hw, double eps, const double *x, const double *gamma,
                   const double *beta, const double *rmean, const double *rvar, const double *dy,
                   int train, double *y, double *dx, double *dx_mag, double *dgamma, double *dbeta,
                   double *bmean, double *bvar)
{
    const double count = (double)n * hw;
    for (int ch = 0; ch < c; ch++) {
        double m = 0.0, v = 0.0;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < hw; k++) m += x[((size_t)i * c + ch) * hw + k];
        m /= count;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < hw; k++) {
                const double d = x[((size_t)i * c + ch) * hw + k] - m;
                v += d * d;
            }
        v /= count;
        bmean[ch] = m, bvar[ch] = v;
        const double mu = train ? m : rmean[ch], var = train ? v : rvar[ch];
        const double is = 1.0 / sqrt(var + eps);
        double sdy = 0.0, sdyx = 0.0, sady = 0.0, sadyx = 0.0;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < hw; k++) {
                const size_t idx = ((size_t)i * c + ch) * hw + k;
                const double xh = (x[idx] - mu) * is;
                y[idx] = xh * gamma[ch] + beta[ch];
                sdy += dy[idx], sdyx += dy[idx] * xh;
                sady += fabs(dy[idx]), sadyx += fabs(dy[idx] * xh);
            }
        dgamma[ch] = sdyx, dbeta[ch] = sdy;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < hw; k++) {
                const size_t idx = ((size_t)i * c + ch) * hw + k;
                const double xh = (x[idx] - mu) * is;
                dx[idx] = train ? gamma[ch] * is * (dy[idx] - sdy / count - xh * sdyx / count)
                                : gamma[ch] * is * dy[idx];
                dx_mag[idx] = fabs(gamma[ch] * is) *
                              (fabs(dy[idx]) + sady / count + fabs(xh) * sadyx / count);
            }
    }
}

static int bn_case(int n, int c, int hw, int train, trng *r, int *n_reports)
{
    const size_t nx = (size_t)n * c * hw;
    const bn_params p = {.n = n, .c = c, .hw = hw, .eps = train ? 1e-3f : 1e-5f, .momentum = 0.1f};
    float *x = alloc_random(nx, r), *dy = alloc_random(nx, r), *gamma = alloc_random((size_t)c, r);
    float *beta = alloc_random((size_t)c, r), *rm = alloc_random((size_t)c, r);
    float *rv = alloc_random((size_t)c, r);
    for (size_t i = 0; i < nx; i++) x[i] = 3.0f + 2.0f * x[i]; /* an offset mean */
    for (int i = 0; i < c; i++) rv[i] = 1.5f + rv[i];
    float *rm0 = alloc_copy(rm, (size_t)c), *rv0 = alloc_copy(rv, (size_t)c);
    float *dg0 = alloc_random((size_t)c, r), *db0 = alloc_random((size_t)c, r);
    float *y = alloc_nan(nx), *dx = alloc_nan(nx), *dg = alloc_copy(dg0, (size_t)c);
    float *db = alloc_copy(db0, (size_t)c), *sm = alloc_nan((size_t)c), *si = alloc_nan((size_t)c);
    double *xd = to_double(x, nx), *dyd = to_double(dy, nx), *gd = to_double(gamma, (size_t)c);
    double *bd = to_double(beta, (size_t)c), *rmd = to_double(rm, (size_t)c), *rvd = to_double(rv, (size_t)c);
    double *ry = alloc_zero_d(nx), *rdx = alloc_zero_d(nx), *mdx = alloc_zero_d(nx), *rdg = alloc_zero_d((size_t)c);
    double *rdb = alloc_zero_d((size_t)c), *bm = alloc_zero_d((size_t)c), *bv = alloc_zero_d((size_t)c);
    ref_bn(n, c, hw, p.eps, xd, gd, bd, rmd, rvd, dyd, train, ry, rdx, mdx, rdg, rdb, bm, bv);
    const char *what = NULL;
    long e = 0;

    /* channel parts of sizes 1, 2, rest: same bits as one call */
    const int cuts[] = {0, 1 < c ? 1 : c, 3 < c ? 3 : c, c};
    for (int k = 0; k < 3; k++) {
        if (train)
            bn_train_forward(&p, cuts[k], cuts[k + 1], x, gamma, beta, rm, rv, sm, si, y);
        else
            bn_frozen_forward(&p, cuts[k], cuts[k + 1], x, gamma, beta, rm, rv, y);
    }
    float *y2 = alloc_nan(nx), *sm2 = alloc_nan((size_t)c), *si2 = alloc_nan((size_t)c);
    float *rm2 = alloc_copy(rm0, (size_t)c), *rv2 = alloc_copy(rv0, (size_t)c);
    if (train) bn_train_forward(&p, 0, c, x, gamma, beta, rm2, rv2, sm2, si2, y2);
    else bn_frozen_forward(&p, 0, c, x, gamma, beta, rm0, rv0, y2);
    if ((e = first_bad(y, ry, NULL, nx)) >= 0) what = "y";
    else if (memcmp(y, y2, nx * sizeof *y)) what = "y parts bits";
    if (train && !what) {
        const double count = (double)n * hw;
        for (int ch = 0; ch < c && !what; ch++) {
            const double want_m = 0.9 * rm0[ch] + 0.1 * bm[ch];
            const double want_v = 0.9 * rv0[ch] + 0.1 * bv[ch] * count / (count - 1);
            if (fabs(rm[ch] - want_m) > 1e-5 * (1 + fabs(want_m)) ||
                fabs(rv[ch] - want_v) > 1e-5 * (1 + fabs(want_v)))
                what = "running stats", e = ch;
            if (memcmp(rm, rm2, (size_t)c * sizeof *rm) || memcmp(rv, rv2, (size_t)c * sizeof *rv) ||
                memcmp(sm, sm2, (size_t)c * sizeof *sm) || memcmp(si, si2, (size_t)c * sizeof *si))
                what = "saved/running stats parts bits";
        }
    }
    if (!what) {
        for (int k = 0; k < 3; k++) {
            if (train)
                bn_train_backward(&p, cuts[k], cuts[k + 1], x, dy, gamma, sm, si, dx, dg, db);
            else
                bn_frozen_backward(&p, cuts[k], cuts[k + 1], x, dy, gamma, rm0, rv0, dx, dg, db);
        }
        if ((e = first_bad(dx, rdx, mdx, nx)) >= 0) what = "dx";
        double mag = (double)n * hw;
        for (int ch = 0; ch < c && !what; ch++) {
            if (!(fabs((double)dg[ch] - dg0[ch] - rdg[ch]) <= TOL_REL * mag + 1e-6)) what = "dgamma", e = ch;
            if (!(fabs((double)db[ch] - db0[ch] - rdb[ch]) <= TOL_REL * mag + 1e-6)) what = "dbeta", e = ch;
        }
        /* in place (dx = dy) and NULL outputs give the same bits */
        float *d2 = alloc_copy(dy, nx);
        if (train) bn_train_backward(&p, 0, c, x, d2, gamma, sm, si, d2, NULL, NULL);
        else bn_frozen_backward(&p, 0, c, x, d2, gamma, rm0, rv0, d2, NULL, NULL);
        if (!what && memcmp(d2, dx, nx * sizeof *dx)) what = "in-place / parts bits";
        free(d2);
    }
    if (!what) { /* the reference by central differences on the double loss */
        const double h = 1e-5;
        const double sx = fmax(max_abs_d(rdx, nx), 1e-9);
        for (int t = 0; t < 8 && !what; t++) {
            const size_t k = trng_next(r) % nx;
            const double v = xd[k];
            xd[k] = v + h;
            const double lp = bn_loss(n, c, hw, p.eps, xd, gd, bd, rmd, rvd, dyd, train);
            xd[k] = v - h;
            const double lm = bn_loss(n, c, hw, p.eps, xd, gd, bd, rmd, rvd, dyd, train);
            xd[k] = v;
            if (!(fabs((lp - lm) / (2 * h) - rdx[k]) <= 1e-5 * sx)) what = "fd dx", e = (long)k;
            const int ch = (int)(trng_next(r) % (uint64_t)c);
            const double g = gd[ch];
            gd[ch] = g + h;
            const double gp = bn_loss(n, c, hw, p.eps, xd, gd, bd, rmd, rvd, dyd, train);
            gd[ch] = g - h;
            const double gm = bn_loss(n, c, hw, p.eps, xd, gd, bd, rmd, rvd, dyd, train);
            gd[ch] = g;
            if (!(fabs((gp - gm) / (2 * h) - rdg[ch]) <= 1e-5 * (1 + fabs(rdg[ch])))) what = "fd dgamma", e = ch;
        }
    }
    if (what && (*n_reports)++ < MAX_REPORTS)
        test_failf(__FILE__, __LINE__, "%s %s at %ld: n %d c %d hw %d", train ? "train" : "frozen",
                   what, e, n, c, hw);
    free(x), free(dy), free(gamma), free(beta), free(rm), free(rv), free(rm0), free(rv0), free(dg0);
    free(db0), free(y), free(dx), free(dg), free(db), free(sm), free(si), free(xd), free(dyd);
    free(gd), free(bd), free(rmd), free(rvd), free(ry), free(rdx), free(mdx), free(rdg), free(rdb), free(bm);
    free(bv), free(y2), free(sm2), free(si2), free(rm2), free(rv2);
    return what != NULL;
}

static void test_bn(void)
{
    test_begin();
    trng r = {51};
    int n_reports = 0, n_cases = 0;
    static const int shapes[][3] = {{1, 1, 2}, {2, 3, 1}, {3, 5, 7}, {4, 2, 49}, {1, 6, 13}, {5, 4, 9}, {2, 7, 300}};
    for (int train = 0; train <= 1; train++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++, n_cases++)
            bn_case(shapes[s][0], shapes[s][1], shapes[s][2], train, &r, &n_reports);
    T_CHECK(n_reports == 0, "%d of %d BatchNorm cases failed", n_reports, n_cases);
    test_end("BatchNorm frozen and train forward/backward vs double reference: y, running stats "
             "(momentum, unbiased var), dx, dgamma, dbeta; channel parts and in place same bits; "
             "reference by finite differences");
}

/* bn_frozen_act_forward / _backward: the same bits as the frozen BN and the activation apart, for
 * every activation, in place (ReLU) or into a channel slice of a larger value, over channel parts. */
static void test_bn_act(void)
{
    test_begin();
    trng r = {57};
    const int n = 3, c = 5, hw = 37, c_big = 8; /* z: channels [2, 7) of an 8-channel value */
    const bn_params p = {.n = n, .c = c, .hw = hw, .eps = 1e-3f, .momentum = 0.1f};
    const size_t nx = (size_t)n * c * hw, zs = (size_t)c_big * hw, nz = (size_t)n * zs, z0 = 2 * (size_t)hw;
    float *x = alloc_random(nx, &r), *gamma = alloc_random((size_t)c, &r), *beta = alloc_random((size_t)c, &r);
    float *rm = alloc_random((size_t)c, &r), *rv = alloc_random((size_t)c, &r), *dz = alloc_random(nz, &r);
    for (size_t i = 0; i < nx; i++) x[i] = 4.0f * x[i]; /* across every activation's edges */
    for (int i = 0; i < c; i++) rv[i] = 1.5f + rv[i], gamma[i] = 2.0f * gamma[i];
    const char *what = NULL;
    int bad_act = 0;
    static const act_kind acts[] = {ACT_NONE, ACT_RELU, ACT_RELU6, ACT_HSWISH, ACT_HSIGMOID};
    for (size_t a = 0; a < sizeof acts / sizeof acts[0] && !what; a++) {
        const act_kind act = acts[a];
        for (int inplace = 0; inplace <= (act == ACT_RELU) && !what; inplace++) {
            /* apart: y = bn(x); z = act(y) per image; g = act'(xa) dz; dx = bn backward of g */
            float *y = alloc_nan(nx), *z = alloc_nan(nz), *g = alloc_nan(nx), *dx = alloc_nan(nx);
            float *dg = alloc_copy(gamma, (size_t)c), *db = alloc_copy(beta, (size_t)c);
            bn_frozen_forward(&p, 0, c, x, gamma, beta, rm, rv, y);
            for (int i = 0; i < n; i++) {
                float *zi = inplace ? y + (size_t)i * c * hw : z + z0 + (size_t)i * zs;
                if (!inplace) memcpy(zi, y + (size_t)i * c * hw, (size_t)c * hw * sizeof *zi);
                act_forward(act, zi, (size_t)c * hw);
                /* act_backward reads the activation's input y, or its output for the in-place ReLU */
                act_backward(act, inplace ? zi : y + (size_t)i * c * hw, dz + z0 + (size_t)i * zs,
                             g + (size_t)i * c * hw, (size_t)c * hw);
            }
            bn_frozen_backward(&p, 0, c, x, g, gamma, rm, rv, dx, dg, db);
            /* fused, in channel parts 0..1, 1..3, 3..c */
            float *y2 = alloc_nan(nx), *z2 = alloc_nan(nz), *dx2 = alloc_nan(nx);
            float *dg2 = alloc_copy(gamma, (size_t)c), *db2 = alloc_copy(beta, (size_t)c);
            const int cuts[] = {0, 1, 3, c};
            for (int k = 0; k < 3; k++)
                bn_frozen_act_forward(&p, cuts[k], cuts[k + 1], act, x, gamma, beta, rm, rv, y2,
                                      inplace ? y2 : z2 + z0, inplace ? (size_t)c * hw : zs);
            float *z3 = alloc_nan(nz); /* y not kept: z alone */
            if (!inplace)
                for (int k = 0; k < 3; k++)
                    bn_frozen_act_forward(&p, cuts[k], cuts[k + 1], act, x, gamma, beta, rm, rv, NULL, z3 + z0, zs);
            for (int k = 0; k < 3; k++)
                bn_frozen_act_backward(&p, cuts[k], cuts[k + 1], act, dz + z0, zs, x, gamma, beta, rm, rv, dx2, dg2,
                                       db2);
            /* image by image (in reverse order) with the sums added up after, in channel parts */
            float *dx3 = alloc_nan(nx), *dg3 = alloc_copy(gamma, (size_t)c), *db3 = alloc_copy(beta, (size_t)c);
            double *sums = xmalloc((size_t)n * 2 * c * sizeof *sums);
            for (size_t i = 0; i < (size_t)n * 2 * c; i++) sums[i] = NAN;
            const bn_params p1 = {.n = 1, .c = c, .hw = hw, .eps = p.eps, .momentum = p.momentum};
            for (int i = n - 1; i >= 0; i--)
                bn_frozen_act_backward_image(&p1, 0, c, act, dz + z0 + (size_t)i * zs, zs, x + (size_t)i * c * hw,
                                             gamma, beta, rm, rv, dx3 + (size_t)i * c * hw, sums + (size_t)i * 2 * c);
            for (int k = 0; k < 3; k++) bn_frozen_backward_reduce(&p, cuts[k], cuts[k + 1], rv, sums, dg3, db3);
            if (memcmp(y, y2, nx * sizeof *y)) what = "y / in-place z";
            else if (memcmp(dx, dx3, nx * sizeof *dx)) what = "dx image by image";
            else if (memcmp(dg, dg3, (size_t)c * sizeof *dg) || memcmp(db, db3, (size_t)c * sizeof *db))
                what = "dgamma / dbeta from the per-image sums";
            else if (!inplace && (memcmp(z, z2, nz * sizeof *z) || memcmp(z, z3, nz * sizeof *z))) what = "z";
            else if (memcmp(dx, dx2, nx * sizeof *dx)) what = "dx";
            else if (memcmp(dg, dg2, (size_t)c * sizeof *dg) || memcmp(db, db2, (size_t)c * sizeof *db))
                what = "dgamma / dbeta";
            bad_act = (int)act;
            free(y), free(z), free(g), free(dx), free(dg), free(db), free(y2), free(z2), free(dx2), free(dg2);
            free(db2), free(z3), free(dx3), free(dg3), free(db3), free(sums);
        }
    }
    T_CHECK(!what, "act %d: %s differs from the two layers apart", bad_act, what);
    free(x), free(gamma), free(beta), free(rm), free(rv), free(dz);
    test_end("BatchNorm frozen + activation fused (forward with and without y kept, backward recomputing "
             "y, also image by image with the sums added up after; every activation, in place and into a channel "
             "slice, channel parts): the same bits as the two layers apart");
}

/* ---- dropout ---- */

static void test_dropout(void)
{
    test_begin();
    trng r = {61};
    enum { N = 100003 };
    float *x = alloc_random(N, &r), *y = alloc_nan(N), *y2 = alloc_nan(N), *dx = alloc_nan(N);
    const float prob = 0.3f, scale = (float)(1.0 / (1.0 - 0.3f));
    dropout_forward(7, 3, 2, 0, N, prob, x, y);
    /* in pieces at arbitrary offsets: the same mask */
    for (size_t a = 0; a < N;) {
        const size_t len = (size_t)trng_int(&r, 1, 5000) < N - a ? (size_t)trng_int(&r, 1, 5000) : N - a;
        dropout_forward(7, 3, 2, a, len, prob, x + a, y2 + a);
        a += len;
    }
    T_CHECK(!memcmp(y, y2, N * sizeof *y), "split calls differ");
    size_t dropped = 0;
    for (size_t i = 0; i < N; i++) {
        if (y[i] == 0.0f && x[i] != 0.0f) dropped++;
        else T_CHECK(y[i] == x[i] * scale, "kept value %zu not scaled", i);
    }
    const double frac = (double)dropped / N, sd = sqrt(prob * (1 - prob) / N);
    T_CHECK(fabs(frac - prob) < 6 * sd, "dropped fraction %.4f for p %.2f", frac, prob);
    /* backward: the same mask on dy */
    dropout_backward(7, 3, 2, 0, N, prob, x, dx);
    T_CHECK(!memcmp(dx, y, N * sizeof *y), "backward mask differs");
    /* another step, layer or seed: another mask (agreement ~ 0.58 for p 0.3) */
    const uint64_t keys[][3] = {{7, 4, 2}, {7, 3, 3}, {8, 3, 2}};
    for (int k = 0; k < 3; k++) {
        dropout_forward(keys[k][0], keys[k][1], (uint32_t)keys[k][2], 0, N, prob, x, y2);
        size_t same = 0;
        for (size_t i = 0; i < N; i++) same += (y2[i] == 0.0f) == (y[i] == 0.0f);
        T_CHECK(same < (size_t)(0.65 * N), "key %d: masks agree on %zu of %d", k, same, N);
    }
    dropout_forward(7, 3, 2, 0, N, 0.0f, x, y2);
    T_CHECK(!memcmp(x, y2, N * sizeof *y), "p = 0 is not the identity");
    memcpy(y2, x, N * sizeof *y);
    dropout_forward(7, 3, 2, 0, N, prob, y2, y2);
    T_CHECK(!memcmp(y, y2, N * sizeof *y), "in place differs");
    free(x), free(y), free(y2), free(dx);
    test_end("dropout: mask independent of the split into calls, dropped fraction, scale 1/(1-p), "
             "backward = same mask, keys change the mask, p 0, in place");
}

int main(void)
{
    openblas_set_num_threads(1);
    test_conv_sweep();
    test_dw_isa();
    test_conv_data_plan();
    test_linear_dw();
    test_act_backward();
    test_pool_backward();
    test_adaptive_backward();
    test_scale_backward();
    test_bn();
    test_bn_act();
    test_dropout();
    return test_finish();
}
