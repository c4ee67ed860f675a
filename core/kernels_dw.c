/* Direct depthwise convolution (groups == c_in == c_out), NCHW, batch 1.
 *
 * Per channel and output row:
 *  - rows whose whole k_h window lies inside the input, with a square 3x3/5x5 kernel and stride 1
 *    or 2 (what MobileNetV3 / ShuffleNetV2 use), go through a specialized interior kernel over the
 *    columns whose window is inside the input, with no bounds checks; the few border columns are
 *    computed point by point;
 *  - every other row (top/bottom border rows, other kernel sizes and strides) is accumulated tap
 *    by tap over the output positions each tap can reach (ranges computed up front, no per-element
 *    checks).
 * Bias and activation are applied while the row is still in L1.
 * Two variants: portable C (auto-vectorized for the baseline ISA) and AVX2+FMA intrinsics for the
 * interior kernel, selected at run time since the binary is built for generic x86-64. */
#include "kernels.h"

#include <assert.h>

#include "kernels_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KERNELS_DW_X86 1
#include <immintrin.h>
#else
#define KERNELS_DW_X86 0
#endif

/* Largest kernel side with a specialized interior kernel. */
#define DW_FAST_K_MAX 5

/* Columns [lo, hi) of the interior and its row pointers, shared by both variants. */
typedef struct {
    const float *rows[DW_FAST_K_MAX]; /* input rows ih0 .. ih0 + k - 1 */
    const float *w;                   /* k*k weights of the channel */
    float bias;
    act_kind act;
    int pad_l, lo, hi;
} dw_interior;

/* act(bias + window sum) for one output, with bounds checks (border columns). */
static float dw_point(const conv2d_params *p, const float *xc, const float *wc, float b, int oh,
                      int ow)
{
    const int ih0 = oh * p->stride_h - p->pad_t, iw0 = ow * p->stride_w - p->pad_l;
    const int i0 = kernels_imax(0, -ih0), i1 = kernels_imin(p->k_h, p->h_in - ih0);
    const int j0 = kernels_imax(0, -iw0), j1 = kernels_imin(p->k_w, p->w_in - iw0);
    float s = b;
    for (int i = i0; i < i1; i++) {
        const float *xrow = xc + (size_t)(ih0 + i) * (size_t)p->w_in;
        for (int j = j0; j < j1; j++) s += wc[i * p->k_w + j] * xrow[iw0 + j];
    }
    return kernels_act_one(p->act, s);
}

/* y[i] += a * x[i], i < n. */
static inline __attribute__((always_inline)) void dw_axpy(float *restrict y,
                                                          const float *restrict x, float a, int n)
{
    int i = 0;
    for (; i + KERNELS_BLOCK <= n; i += KERNELS_BLOCK)
        for (int j = 0; j < KERNELS_BLOCK; j++) y[i + j] += a * x[i + j];
    for (; i < n; i++) y[i] += a * x[i];
}

/* Any kernel / stride / padding: the row starts at the bias and every tap (i, j) whose input row
 * exists adds w*x over the output columns it reaches. */
static inline __attribute__((always_inline)) void dw_row_taps(const conv2d_params *p,
                                                              const float *xc, const float *wc,
                                                              float b, int oh, float *yrow)
{
    const int ih0 = oh * p->stride_h - p->pad_t, sw = p->stride_w;
    const int i0 = kernels_imax(0, -ih0), i1 = kernels_imin(p->k_h, p->h_in - ih0);
    for (int ow = 0; ow < p->w_out; ow++) yrow[ow] = b;
    for (int i = i0; i < i1; i++) {
        const float *xrow = xc + (size_t)(ih0 + i) * (size_t)p->w_in;
        for (int j = 0; j < p->k_w; j++) {
            const int off = j - p->pad_l;
            const float wv = wc[i * p->k_w + j];
            int lo, hi;
            kernels_tap_range(off, sw, p->w_in, p->w_out, &lo, &hi);
            if (sw == 1) {
                dw_axpy(yrow + lo, xrow + lo + off, wv, hi - lo);
            } else {
                for (int ow = lo; ow < hi; ow++) yrow[ow] += wv * xrow[ow * sw + off];
            }
        }
    }
    act_forward(p->act, yrow, (size_t)p->w_out);
}

/* ---- portable interior kernel ---- */

static inline __attribute__((always_inline)) void dw_interior_c_k(const int k, const int s,
                                                                  const dw_interior *d,
                                                                  float *restrict yrow)
{
    int ow = d->lo;
    for (; ow + KERNELS_BLOCK <= d->hi; ow += KERNELS_BLOCK) {
        float t[KERNELS_BLOCK];
        for (int j = 0; j < KERNELS_BLOCK; j++) t[j] = d->bias;
        for (int i = 0; i < k; i++) {
            const float *r = d->rows[i] + (ow * s - d->pad_l);
            for (int kj = 0; kj < k; kj++) {
                const float wv = d->w[i * k + kj];
                for (int j = 0; j < KERNELS_BLOCK; j++) t[j] += wv * r[j * s + kj];
            }
        }
        for (int j = 0; j < KERNELS_BLOCK; j++) yrow[ow + j] = t[j];
    }
    for (; ow < d->hi; ow++) {
        float t = d->bias;
        for (int i = 0; i < k; i++) {
            const float *r = d->rows[i] + (ow * s - d->pad_l);
            for (int kj = 0; kj < k; kj++) t += d->w[i * k + kj] * r[kj];
        }
        yrow[ow] = t;
    }
    act_forward(d->act, yrow + d->lo, (size_t)(d->hi - d->lo));
}

static void dw_interior_c(int k, int s, const dw_interior *d, float *yrow)
{
    if (k == 3 && s == 1)
        dw_interior_c_k(3, 1, d, yrow);
    else if (k == 3 && s == 2)
        dw_interior_c_k(3, 2, d, yrow);
    else if (k == 5 && s == 1)
        dw_interior_c_k(5, 1, d, yrow);
    else
        dw_interior_c_k(5, 2, d, yrow);
}

/* ---- AVX2 + FMA interior kernel ---- */

#if KERNELS_DW_X86
#define DW_AVX2 __attribute__((target("avx2,fma")))

static inline __attribute__((always_inline)) DW_AVX2 __m256 dw_act_avx2(__m256 v, act_kind act)
{
    const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
    const __m256 three = _mm256_set1_ps(3.0f), sixth = _mm256_set1_ps(1.0f / 6.0f);
    switch (act) {
    case ACT_RELU: return _mm256_max_ps(v, zero);
    case ACT_RELU6: return _mm256_min_ps(_mm256_max_ps(v, zero), six);
    case ACT_HSWISH:
        return _mm256_mul_ps(
            _mm256_mul_ps(v, _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v, three), zero), six)),
            sixth);
    case ACT_HSIGMOID:
        return _mm256_mul_ps(_mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v, three), zero), six),
                             sixth);
    case ACT_NONE: break;
    }
    return v;
}

/* 8 outputs per step. Stride 2 loads x[0..8) and x[7..15) and keeps the even elements of the
 * first and the odd of the second; the result is in the lane order (0 1 4 5 | 2 3 6 7), which all
 * taps share, so one permute per step restores it. The last step is shifted back to end at hi
 * (recomputing a few outputs) instead of running a scalar tail. */
static inline __attribute__((always_inline)) DW_AVX2 void dw_interior_avx2_k(const int k,
                                                                             const int s,
                                                                             const dw_interior *d,
                                                                             float *yrow)
{
    __m256 wv[DW_FAST_K_MAX * DW_FAST_K_MAX];
    for (int t = 0; t < k * k; t++) wv[t] = _mm256_broadcast_ss(d->w + t);
    const __m256 vb = _mm256_set1_ps(d->bias);
    for (int ow = d->lo;; ow += 8) {
        if (ow > d->hi - 8) ow = d->hi - 8;
        __m256 acc = vb;
        for (int i = 0; i < k; i++) {
            const float *r = d->rows[i] + (ow * s - d->pad_l);
            for (int kj = 0; kj < k; kj++) {
                __m256 v;
                if (s == 1) {
                    v = _mm256_loadu_ps(r + kj);
                } else {
                    v = _mm256_shuffle_ps(_mm256_loadu_ps(r + kj), _mm256_loadu_ps(r + kj + 7),
                                          _MM_SHUFFLE(3, 1, 2, 0));
                }
                acc = _mm256_fmadd_ps(wv[i * k + kj], v, acc);
            }
        }
        if (s == 2)
            acc = _mm256_castpd_ps(
                _mm256_permute4x64_pd(_mm256_castps_pd(acc), _MM_SHUFFLE(3, 1, 2, 0)));
        _mm256_storeu_ps(yrow + ow, dw_act_avx2(acc, d->act));
        if (ow + 8 >= d->hi) break;
    }
}

/* Requires d->hi - d->lo >= 8 (narrower interiors use the portable kernel). */
static DW_AVX2 void dw_interior_avx2(int k, int s, const dw_interior *d, float *yrow)
{
    if (k == 3 && s == 1)
        dw_interior_avx2_k(3, 1, d, yrow);
    else if (k == 3 && s == 2)
        dw_interior_avx2_k(3, 2, d, yrow);
    else if (k == 5 && s == 1)
        dw_interior_avx2_k(5, 1, d, yrow);
    else
        dw_interior_avx2_k(5, 2, d, yrow);
}
#endif

/* ---- driver ---- */

/* One channel; inlined into each variant so the tap loops are compiled for that variant's ISA. */
static inline __attribute__((always_inline)) void dw_channel(const conv2d_params *p,
                                                             const float *xc, const float *wc,
                                                             float b, float *yc, kernels_isa isa)
{
    const int k = p->k_h, s = p->stride_h;
    const int fast = p->k_w == k && p->stride_w == s && (k == 3 || k == 5) && (s == 1 || s == 2);
    dw_interior d = {.w = wc, .bias = b, .act = p->act, .pad_l = p->pad_l};
    if (fast) {
        /* interior columns: taps 0 and k-1 both inside the row */
        int lo0, hi0, lo1, hi1;
        kernels_tap_range(-p->pad_l, s, p->w_in, p->w_out, &lo0, &hi0);
        kernels_tap_range(k - 1 - p->pad_l, s, p->w_in, p->w_out, &lo1, &hi1);
        d.lo = kernels_imax(lo0, lo1);
        d.hi = kernels_imax(kernels_imin(hi0, hi1), d.lo);
    }
    for (int oh = 0; oh < p->h_out; oh++) {
        float *yrow = yc + (size_t)oh * (size_t)p->w_out;
        const int ih0 = oh * s - p->pad_t;
        if (!fast || ih0 < 0 || ih0 + k > p->h_in) {
            dw_row_taps(p, xc, wc, b, oh, yrow);
            continue;
        }
        for (int i = 0; i < k; i++) d.rows[i] = xc + (size_t)(ih0 + i) * (size_t)p->w_in;
#if KERNELS_DW_X86
        if (isa == KERNELS_ISA_AVX2 && d.hi - d.lo >= 8)
            dw_interior_avx2(k, s, &d, yrow);
        else
            dw_interior_c(k, s, &d, yrow);
#else
        (void)isa;
        dw_interior_c(k, s, &d, yrow);
#endif
        for (int ow = 0; ow < d.lo; ow++) yrow[ow] = dw_point(p, xc, wc, b, oh, ow);
        for (int ow = d.hi; ow < p->w_out; ow++) yrow[ow] = dw_point(p, xc, wc, b, oh, ow);
    }
}

static void dw_forward_generic(const conv2d_params *p, const float *x, const float *w,
                               const float *bias, float *y)
{
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    const size_t hw_out = (size_t)p->h_out * (size_t)p->w_out;
    const size_t kk = (size_t)p->k_h * (size_t)p->k_w;
    for (int c = 0; c < p->c_in; c++)
        dw_channel(p, x + (size_t)c * hw_in, w + (size_t)c * kk, bias ? bias[c] : 0.0f,
                   y + (size_t)c * hw_out, KERNELS_ISA_GENERIC);
}

#if KERNELS_DW_X86
static DW_AVX2 void dw_forward_avx2(const conv2d_params *p, const float *x, const float *w,
                                    const float *bias, float *y)
{
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    const size_t hw_out = (size_t)p->h_out * (size_t)p->w_out;
    const size_t kk = (size_t)p->k_h * (size_t)p->k_w;
    for (int c = 0; c < p->c_in; c++)
        dw_channel(p, x + (size_t)c * hw_in, w + (size_t)c * kk, bias ? bias[c] : 0.0f,
                   y + (size_t)c * hw_out, KERNELS_ISA_AVX2);
}
#endif

kernels_isa kernels_isa_best(void)
{
#if KERNELS_DW_X86
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return KERNELS_ISA_AVX2;
#endif
    return KERNELS_ISA_GENERIC;
}

void dwconv2d_forward_isa(const conv2d_params *p, const float *x, const float *w, const float *bias,
                          float *y, kernels_isa isa)
{
    assert(p->groups == p->c_in && p->groups == p->c_out && p->c_in > 0);
    assert(p->h_out > 0 && p->w_out > 0 && p->k_h > 0 && p->k_w > 0);
    assert(p->stride_h > 0 && p->stride_w > 0 && p->pad_t >= 0 && p->pad_l >= 0);
#if KERNELS_DW_X86
    if (isa == KERNELS_ISA_AVX2) {
        dw_forward_avx2(p, x, w, bias, y);
        return;
    }
#endif
    assert(isa == KERNELS_ISA_GENERIC);
    dw_forward_generic(p, x, w, bias, y);
}
