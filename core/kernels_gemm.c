/* Prepacked-weight GEMM convolution on AVX-512 (CONV_PATH_GEMM, see kernels.h).
 *
 * Every non-depthwise convolution is a GEMM per group, Y[c_out][hw_out] = W[c_out][K] *
 * B[K][hw_out] with B the im2col matrix (K = c_in/groups * k_h * k_w). Nothing materializes B:
 *  - W is packed once, at model load, into panels of GEMM_MR output channels, k-major
 *    (see kernels_gemm_a_offset), so a micro-kernel broadcasts consecutive floats;
 *  - B is packed block by block (GEMM_KC rows x GEMM_NC columns, in panels of GEMM_NR columns)
 *    straight from the input, borders zero-filled, so a block stays in L2 and a panel in L1
 *    while every panel of W streams past it. 1x1 stride-1 unpadded convolutions read the input
 *    rows in place instead (measured faster for every MobileNet / ShuffleNet / Inception 1x1:
 *    their K is small or the copy costs more than the strided rows); a fused input scale
 *    scales a copy of the weights' columns or the rows while packing them.
 * The micro-kernel keeps a GEMM_MR x GEMM_NR tile of Y in 24 zmm registers, starts it at the bias
 * and applies the activation before the only store, so the epilogue costs no extra pass.
 * Compiled with function-level target attributes (the build is generic x86-64) and used only when
 * the CPU has AVX-512F: conv2d_plan_init (kernels_conv.c) chooses this path, or the Winograd and
 * first-layer kernels, which build on the same packed layout and the same GEMM. */
#include "kernels.h"

#include <assert.h>
#include <string.h>

#include "kernels_internal.h"

#if KERNELS_X86
#include "kernels_avx2.h"
#include "kernels_avx512.h"
#endif

/* Micro-tile: GEMM_MR output channels x GEMM_NR output positions (4 zmm per row). */
#define GEMM_MR KERNELS_GEMM_MR
#define GEMM_NR 64
/* Packed B block: GEMM_KC rows (a 32 KiB panel in L1) x GEMM_NC columns (512 KiB in L2). */
#define GEMM_KC KERNELS_GEMM_KC
#define GEMM_NC 1024
/* Floats of packed weights prefetched ahead of the micro-kernel: layers with few output
 * positions stream their weights from L3 or memory once (measured 10-15% on Inception's 8x8). */
#define GEMM_PREFETCH_A 384

/* Geometry of one group's GEMM. */
typedef struct {
    int m, k, n;       /* c_out/groups, c_in/groups * k_h * k_w, h_out * w_out */
    int n_panels_m;    /* ceil(m / GEMM_MR) */
    int direct;        /* B is the input itself (1x1, stride 1, no padding) */
} gemm_shape;

static gemm_shape gemm_shape_of(const conv2d_params *p)
{
    gemm_shape s;
    s.m = p->c_out / p->groups;
    s.k = p->c_in / p->groups * p->k_h * p->k_w;
    s.n = p->h_out * p->w_out;
    s.n_panels_m = (s.m + GEMM_MR - 1) / GEMM_MR;
    s.direct = kernels_conv_pointwise(p);
    return s;
}

/* A fused input scale multiplies whichever operand is smaller: the weights' columns (a copy of
 * the packed weights) when they have fewer floats than the input, else the input rows while
 * packing them (measured: MobileNetV3's 28x28 projections -20% with scaled weights, its 7x7 ones
 * +30%). */
static int gemm_scale_weights(const gemm_shape *s) { return s->n_panels_m * GEMM_MR <= s->n; }

size_t kernels_gemm_conv_packed_floats(const conv2d_params *p)
{
    const gemm_shape s = gemm_shape_of(p);
    return (size_t)p->groups * (size_t)s.n_panels_m * GEMM_MR * (size_t)s.k;
}

void kernels_gemm_conv_pack(const conv2d_params *p, const float *w, float *packed)
{
    const gemm_shape s = gemm_shape_of(p);
    const size_t group_floats = (size_t)s.n_panels_m * GEMM_MR * (size_t)s.k;
    for (int g = 0; g < p->groups; g++)
        for (int r = 0; r < s.n_panels_m * GEMM_MR; r++) {
            const float *src = w + ((size_t)g * (size_t)s.m + (size_t)r) * (size_t)s.k;
            for (int kk = 0; kk < s.k; kk++)
                packed[(size_t)g * group_floats + kernels_gemm_a_offset(s.m, s.k, r, kk)] =
                    r < s.m ? src[kk] : 0.0f;
        }
}

/* Padded geometry: rows and columns the windows cover. */
static int gemm_padded_h(const conv2d_params *p) { return (p->h_out - 1) * p->stride_h + p->k_h; }
static int gemm_padded_w(const conv2d_params *p) { return (p->w_out - 1) * p->stride_w + p->k_w; }

/* The input is used in place when no window leaves it. */
static int gemm_needs_padding(const conv2d_params *p)
{
    return p->pad_t > 0 || p->pad_l > 0 || gemm_padded_h(p) > p->h_in || gemm_padded_w(p) > p->w_in;
}

/* Floats of the zero-padded input copy in scratch (0 when the input is read in place), rounded
 * up to keep the packed block 64-byte aligned. */
static size_t gemm_padded_floats(const conv2d_params *p)
{
    if (!gemm_needs_padding(p)) return 0;
    const size_t n = (size_t)(p->c_in / p->groups) * (size_t)gemm_padded_h(p) *
                     (size_t)gemm_padded_w(p);
    return (n + 15) / 16 * 16;
}

size_t kernels_gemm_conv_scratch_floats(const conv2d_params *p)
{
    const gemm_shape s = gemm_shape_of(p);
    if (s.direct) return 0;
    const int kc = kernels_imin(s.k, GEMM_KC);
    const int nc = kernels_imin((s.n + GEMM_NR - 1) / GEMM_NR * GEMM_NR, GEMM_NC);
    return gemm_padded_floats(p) + (size_t)kc * (size_t)nc;
}

#if KERNELS_X86
/* ---- B packing ---- */

/* dst[t] = src[t * s] for t < n. Stride 1 and 2 use whole vectors with a masked tail (no read
 * past the last element used), larger strides a masked gather. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void gemm_copy_strided(float *dst,
                                                                                const float *src,
                                                                                int n, int s)
{
    int t = 0;
    if (s == 1) {
        for (; t + 16 <= n; t += 16) _mm512_storeu_ps(dst + t, _mm512_loadu_ps(src + t));
        if (t < n) {
            const __mmask16 m = (__mmask16)((1u << (n - t)) - 1u);
            _mm512_mask_storeu_ps(dst + t, m, _mm512_maskz_loadu_ps(m, src + t));
        }
    } else if (s == 2) {
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24,
                                               26, 28, 30);
        for (; t < n; t += 16) {
            /* outputs t..t+c-1 read src[2t .. 2(t+c-1)]: 2c-1 floats over two vectors */
            const int c = kernels_imin(n - t, 16), used = 2 * c - 1;
            const __mmask16 m0 = kernels_avx512_mask(used);
            const __mmask16 m1 = (__mmask16)(used > 16 ? (1u << (used - 16)) - 1u : 0u);
            const __m512 lo = _mm512_maskz_loadu_ps(m0, src + 2 * t);
            const __m512 hi = _mm512_maskz_loadu_ps(m1, src + 2 * t + 16);
            const __m512 v = _mm512_permutex2var_ps(lo, even, hi);
            if (c == 16)
                _mm512_storeu_ps(dst + t, v);
            else
                _mm512_mask_storeu_ps(dst + t, (__mmask16)((1u << c) - 1u), v);
        }
    } else {
        const __m512i idx = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(s));
        for (; t < n; t += 16) {
            const int c = kernels_imin(n - t, 16);
            const __mmask16 m = kernels_avx512_mask(c);
            const __m512 v =
                _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, src + (size_t)t * s, 4);
            _mm512_mask_storeu_ps(dst + t, m, v);
        }
    }
}

/* dst[t] = src[t] * f for t < n. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void gemm_copy_scaled(float *dst,
                                                                               const float *src,
                                                                               int n, float f)
{
    const __m512 vf = _mm512_set1_ps(f);
    for (int t = 0; t < n; t += 16) {
        const __mmask16 m = kernels_avx512_mask(n - t);
        _mm512_mask_storeu_ps(dst + t, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, src + t), vf));
    }
}

/* gemm_copy_strided and gemm_copy_scaled on AVX2: strides 1 and 2 and the scaled copy in whole vectors
 * and a scalar tail, larger strides element by element. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void gemm_copy_strided_avx2(float *dst, const float *src,
                                                                                   int n, int s)
{
    int t = 0;
    if (s == 1) {
        for (; t + 8 <= n; t += 8) _mm256_storeu_ps(dst + t, _mm256_loadu_ps(src + t));
        for (; t < n; t++) dst[t] = src[t]; /* no masked store: microcoded on AMD Zen */
        return;
    }
    if (s == 2) {
        /* 8 outputs from src[2t .. 2t+15]: evens of each 8-float half gathered by a lane permute;
         * src[2t+15] is read only when output t+8 (which reads src[2t+16]) exists */
        const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
        for (; t + 9 <= n; t += 8) {
            const __m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(src + 2 * t), even);
            const __m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(src + 2 * t + 8), even);
            _mm256_storeu_ps(dst + t, _mm256_permute2f128_ps(lo, hi, 0x20));
        }
    }
    for (; t < n; t++) dst[t] = src[(size_t)t * (size_t)s];
}

static inline __attribute__((always_inline)) KERNELS_AVX2 void gemm_copy_scaled_avx2(float *dst, const float *src,
                                                                                  int n, float f)
{
    const __m256 vf = _mm256_set1_ps(f);
    int t = 0;
    for (; t + 8 <= n; t += 8) _mm256_storeu_ps(dst + t, _mm256_mul_ps(_mm256_loadu_ps(src + t), vf));
    for (; t < n; t++) dst[t] = src[t] * f;
}

/* The group's input as the packer reads it: c planes of hp x wp floats in which output (oh, ow)
 * of kernel tap (i, j) reads (oh*s_h + i, ow*s_w + j), i.e. already zero-padded. */
typedef struct {
    const float *x;
    size_t plane; /* floats per channel plane */
    int wp;       /* floats per row */
    int k_h, k_w, s_h, s_w, w_out, n;
    int rows_contiguous; /* stride 1 and wp == w_out: an im2col row is one run of the plane */
    const float *scale;  /* NULL, or one factor per input channel (pointwise convs only) */
} gemm_src;

/* Zero-padded copy of c channels of x: hp x wp planes, row r / column q holding input
 * (r - pad_t, q - pad_l). */
static void gemm_pad_input(const conv2d_params *p, const float *x, int c, float *xp)
{
    const int hp = gemm_padded_h(p), wp = gemm_padded_w(p);
    const int lo = kernels_imin(p->pad_l, wp), hi = kernels_imin(p->pad_l + p->w_in, wp);
    for (int ci = 0; ci < c; ci++) {
        const float *xc = x + (size_t)ci * (size_t)p->h_in * (size_t)p->w_in;
        for (int r = 0; r < hp; r++) {
            float *d = xp + ((size_t)ci * (size_t)hp + (size_t)r) * (size_t)wp;
            const int ih = r - p->pad_t;
            if (ih < 0 || ih >= p->h_in) {
                memset(d, 0, (size_t)wp * sizeof *d);
                continue;
            }
            memset(d, 0, (size_t)lo * sizeof *d);
            memcpy(d + lo, xc + (size_t)ih * (size_t)p->w_in, (size_t)(hi - lo) * sizeof *d);
            memset(d + hi, 0, (size_t)(wp - hi) * sizeof *d);
        }
    }
}

/* Packs im2col rows [k0, k0+kc) and columns [n0, n0+nc) into panels of GEMM_NR columns,
 * buf[(panel * kc + row) * GEMM_NR + column]; cells past the last column stay unwritten (the
 * micro-kernel masks them). Each row of a panel is copied as runs of one output row each (one
 * run when rows_contiguous).
 * One instance per ISA, with that ISA's copy helpers. */
#define GEMM_PACK_BLOCK_FN(name, attr, copy_strided, copy_scaled)                                   \
static attr void name(const gemm_src *src, int k0, int kc, int n0, int nc, float *buf)              \
{                                                                                                   \
    const int n_panels = (nc + GEMM_NR - 1) / GEMM_NR, kk = src->k_h * src->k_w;                    \
    const size_t row_step = (size_t)src->s_h * (size_t)src->wp;                                     \
    int oh0[GEMM_NC / GEMM_NR], ow0[GEMM_NC / GEMM_NR], len[GEMM_NC / GEMM_NR];                     \
    for (int q = 0; q < n_panels; q++) {                                                            \
        const int col = n0 + q * GEMM_NR;                                                           \
        oh0[q] = col / src->w_out;                                                                  \
        ow0[q] = col % src->w_out;                                                                  \
        len[q] = kernels_imin(GEMM_NR, src->n - col);                                               \
    }                                                                                               \
    int ci = k0 / kk, i = k0 % kk / src->k_w, j = k0 % src->k_w;                                    \
    for (int r = 0; r < kc; r++) {                                                                  \
        const float *base = src->x + (size_t)ci * src->plane + (size_t)i * (size_t)src->wp + j;     \
        for (int q = 0; q < n_panels; q++) {                                                        \
            float *dst = buf + ((size_t)q * (size_t)kc + (size_t)r) * GEMM_NR;                      \
            const int n = len[q];                                                                   \
            if (src->scale) {                                                                       \
                copy_scaled(dst, base + (size_t)(n0 + q * GEMM_NR), n, src->scale[ci]);             \
            } else if (src->rows_contiguous) {                                                      \
                copy_strided(dst, base + (size_t)(n0 + q * GEMM_NR), n, 1);                         \
            } else {                                                                                \
                const float *row = base + (size_t)oh0[q] * row_step;                                \
                int t = 0, ow = ow0[q];                                                             \
                while (t < n) {                                                                     \
                    const int seg = kernels_imin(src->w_out - ow, n - t);                           \
                    copy_strided(dst + t, row + (size_t)ow * (size_t)src->s_w, seg, src->s_w);      \
                    t += seg;                                                                       \
                    ow = 0;                                                                         \
                    row += row_step;                                                                \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
        if (++j == src->k_w) {                                                                      \
            j = 0;                                                                                  \
            if (++i == src->k_h) {                                                                  \
                i = 0;                                                                              \
                ci++;                                                                               \
            }                                                                                       \
        }                                                                                           \
    }                                                                                               \
}
GEMM_PACK_BLOCK_FN(gemm_pack_block, KERNELS_AVX512, gemm_copy_strided, gemm_copy_scaled)
GEMM_PACK_BLOCK_FN(gemm_pack_block_avx2, KERNELS_AVX2, gemm_copy_strided_avx2, gemm_copy_scaled_avx2)
#undef GEMM_PACK_BLOCK_FN

/* ---- micro-kernel ---- */

typedef struct {
    const float *a;    /* kc x GEMM_MR, k-major */
    const float *b;    /* kc rows of n floats (row stride ldb) */
    float *c;          /* m rows of n floats (row stride ldc) */
    const float *bias; /* m values or NULL; the tile starts there when first */
    const float *res;  /* NULL, or added before the activation when last (row stride ldc) */
    size_t ldb, ldc;
    int kc, m, n;      /* m <= GEMM_MR, 0 < n <= GEMM_NR */
    int first, last;   /* first: start from the bias, else from c; last: activate */
    act_kind act;
    const char *pf;    /* NULL, or cache lines from here brought into L2 (gemm_range): AVX-512 kc, one per k;
                          AVX2 pf_lines, spread over the tile's k steps (gemm_tile_run_avx2) */
    int pf_lines;
} gemm_tile;

/* nv = ceil(n / 16) vectors per row; the last one is masked on loads and stores. pf: the instance
 * that prefetches t->pf (the others have no extra instruction). */
static inline __attribute__((always_inline)) KERNELS_AVX512 void gemm_tile_nv(const int nv, const int pf,
                                                                           const gemm_tile *t)
{
    const __mmask16 tail = (__mmask16)(0xFFFFu >> (16 * nv - t->n));
    __m512 acc[GEMM_MR][4];
#pragma GCC unroll 6
    for (int r = 0; r < GEMM_MR; r++) {
        const float *cr = t->c + (size_t)r * t->ldc;
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            if (r >= t->m)
                acc[r][v] = _mm512_setzero_ps();
            else if (t->first)
                acc[r][v] = _mm512_set1_ps(t->bias ? t->bias[r] : 0.0f);
            else
                acc[r][v] = _mm512_maskz_loadu_ps(v == nv - 1 ? tail : 0xFFFF, cr + 16 * v);
        }
    }
    const float *a = t->a, *b = t->b;
    for (int k = 0; k < t->kc; k++, a += GEMM_MR, b += t->ldb) {
        _mm_prefetch((const char *)(a + GEMM_PREFETCH_A), _MM_HINT_T0);
        if (pf) _mm_prefetch(t->pf + 64 * (size_t)k, _MM_HINT_T1);
        __m512 bv[4];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            bv[v] = v == nv - 1 ? _mm512_maskz_loadu_ps(tail, b + 16 * v) : _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 6
        for (int r = 0; r < GEMM_MR; r++) {
            const __m512 ar = _mm512_set1_ps(a[r]);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_fmadd_ps(ar, bv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < GEMM_MR; r++) {
        if (r >= t->m) break;
        float *cr = t->c + (size_t)r * t->ldc;
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            if (t->last && t->res)
                acc[r][v] = _mm512_add_ps(
                    acc[r][v], _mm512_maskz_loadu_ps(v == nv - 1 ? tail : 0xFFFF,
                                                     t->res + (size_t)r * t->ldc + 16 * v));
            const __m512 y = t->last ? avx512_act(acc[r][v], t->act) : acc[r][v];
            if (v == nv - 1)
                _mm512_mask_storeu_ps(cr + 16 * v, tail, y);
            else
                _mm512_storeu_ps(cr + 16 * v, y);
        }
    }
}

/* A tile of n = 16 * nv + nx columns, nx = 1..3 (7x7 maps: 49; 17x17 F(6, 7) blocks: 51), or nv = 0
 * and nx = 1..4 (a last tile of 1..4 columns: 14x14 maps, 196 = 3 x 64 + 4): nv full vectors per row
 * as above, and the last nx columns transposed, each as one vector over the tile's GEMM_MR rows
 * (lanes) that multiplies the panel's k-th column of a (GEMM_MR consecutive floats) by b's column.
 * That costs nx FMAs per k instead of GEMM_MR on a vector with nx used lanes (49 columns: 19 FMAs
 * per k instead of 24; 51: 21; 4: 4 instead of 6). Every value is the same chain of FMAs over k as
 * in gemm_tile_nv, so the bits are the same. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void gemm_tile_nvx(const int nv, const int nx,
                                                                            const int pf, const gemm_tile *t)
{
    const __mmask16 rows = (__mmask16)((1u << t->m) - 1u), panel = (1u << GEMM_MR) - 1u;
    const int col = 16 * nv; /* the first transposed column */
    __m512 acc[GEMM_MR][3], acc_col[4];
    float col_buf[4][16] = {{0}};
#pragma GCC unroll 6
    for (int r = 0; r < GEMM_MR; r++) {
        const float *cr = t->c + (size_t)r * t->ldc;
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) {
            if (r >= t->m)
                acc[r][v] = _mm512_setzero_ps();
            else if (t->first)
                acc[r][v] = _mm512_set1_ps(t->bias ? t->bias[r] : 0.0f);
            else
                acc[r][v] = _mm512_loadu_ps(cr + 16 * v);
        }
        if (r < t->m && !t->first)
            for (int x = 0; x < nx; x++) col_buf[x][r] = cr[col + x];
    }
#pragma GCC unroll 4
    for (int x = 0; x < nx; x++) {
        if (t->first)
            acc_col[x] = t->bias ? _mm512_maskz_loadu_ps(rows, t->bias) : _mm512_setzero_ps();
        else
            acc_col[x] = _mm512_loadu_ps(col_buf[x]);
    }
    const float *a = t->a, *b = t->b;
    for (int k = 0; k < t->kc; k++, a += GEMM_MR, b += t->ldb) {
        _mm_prefetch((const char *)(a + GEMM_PREFETCH_A), _MM_HINT_T0);
        if (pf) _mm_prefetch(t->pf + 64 * (size_t)k, _MM_HINT_T1);
        __m512 bv[3];
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) bv[v] = _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 6
        for (int r = 0; r < GEMM_MR; r++) {
            const __m512 ar = _mm512_set1_ps(a[r]);
#pragma GCC unroll 3
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_fmadd_ps(ar, bv[v], acc[r][v]);
        }
        const __m512 ap = _mm512_maskz_loadu_ps(panel, a);
#pragma GCC unroll 4
        for (int x = 0; x < nx; x++) acc_col[x] = _mm512_fmadd_ps(ap, _mm512_set1_ps(b[col + x]), acc_col[x]);
    }
#pragma GCC unroll 4
    for (int x = 0; x < nx; x++) {
        if (t->last && t->res) {
            for (int r = 0; r < t->m; r++) col_buf[x][r] = t->res[(size_t)r * t->ldc + (size_t)(col + x)];
            acc_col[x] = _mm512_add_ps(acc_col[x], _mm512_loadu_ps(col_buf[x]));
        }
        _mm512_storeu_ps(col_buf[x], t->last ? avx512_act(acc_col[x], t->act) : acc_col[x]);
    }
#pragma GCC unroll 6
    for (int r = 0; r < GEMM_MR; r++) {
        if (r >= t->m) break;
        float *cr = t->c + (size_t)r * t->ldc;
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) {
            if (t->last && t->res)
                acc[r][v] = _mm512_add_ps(acc[r][v], _mm512_loadu_ps(t->res + (size_t)r * t->ldc + 16 * v));
            _mm512_storeu_ps(cr + 16 * v, t->last ? avx512_act(acc[r][v], t->act) : acc[r][v]);
        }
        for (int x = 0; x < nx; x++) cr[col + x] = col_buf[x][r];
    }
}

#define GEMM_TILE_FNS(sfx, pf)                                                                                   \
    static KERNELS_AVX512 void gemm_tile_1##sfx(const gemm_tile *t) { gemm_tile_nv(1, pf, t); }                   \
    static KERNELS_AVX512 void gemm_tile_2##sfx(const gemm_tile *t) { gemm_tile_nv(2, pf, t); }                   \
    static KERNELS_AVX512 void gemm_tile_3##sfx(const gemm_tile *t) { gemm_tile_nv(3, pf, t); }                   \
    static KERNELS_AVX512 void gemm_tile_4##sfx(const gemm_tile *t) { gemm_tile_nv(4, pf, t); }                   \
    static KERNELS_AVX512 void gemm_tile_1_1##sfx(const gemm_tile *t) { gemm_tile_nvx(1, 1, pf, t); }             \
    static KERNELS_AVX512 void gemm_tile_2_1##sfx(const gemm_tile *t) { gemm_tile_nvx(2, 1, pf, t); }             \
    static KERNELS_AVX512 void gemm_tile_3_1##sfx(const gemm_tile *t) { gemm_tile_nvx(3, 1, pf, t); }             \
    static KERNELS_AVX512 void gemm_tile_3_2##sfx(const gemm_tile *t) { gemm_tile_nvx(3, 2, pf, t); }             \
    static KERNELS_AVX512 void gemm_tile_3_3##sfx(const gemm_tile *t) { gemm_tile_nvx(3, 3, pf, t); }             \
    static KERNELS_AVX512 void gemm_tile_0_1##sfx(const gemm_tile *t) { gemm_tile_nvx(0, 1, pf, t); }             \
    static KERNELS_AVX512 void gemm_tile_0_2##sfx(const gemm_tile *t) { gemm_tile_nvx(0, 2, pf, t); }             \
    static KERNELS_AVX512 void gemm_tile_0_3##sfx(const gemm_tile *t) { gemm_tile_nvx(0, 3, pf, t); }             \
    static KERNELS_AVX512 void gemm_tile_0_4##sfx(const gemm_tile *t) { gemm_tile_nvx(0, 4, pf, t); }             \
                                                                                                                 \
    static KERNELS_AVX512 void gemm_tile_run##sfx(const gemm_tile *t)                                             \
    {                                                                                                            \
        switch (t->n) {                                                                                          \
        case 17: gemm_tile_1_1##sfx(t); return;                                                                  \
        case 33: gemm_tile_2_1##sfx(t); return;                                                                  \
        case 49: gemm_tile_3_1##sfx(t); return;                                                                  \
        case 50: gemm_tile_3_2##sfx(t); return;                                                                  \
        case 51: gemm_tile_3_3##sfx(t); return;                                                                  \
        case 1: gemm_tile_0_1##sfx(t); return;                                                                   \
        case 2: gemm_tile_0_2##sfx(t); return;                                                                   \
        case 3: gemm_tile_0_3##sfx(t); return;                                                                   \
        case 4: gemm_tile_0_4##sfx(t); return;                                                                   \
        default: break;                                                                                          \
        }                                                                                                        \
        switch ((t->n + 15) / 16) {                                                                              \
        case 1: gemm_tile_1##sfx(t); break;                                                                      \
        case 2: gemm_tile_2##sfx(t); break;                                                                      \
        case 3: gemm_tile_3##sfx(t); break;                                                                      \
        default: gemm_tile_4##sfx(t); break;                                                                     \
        }                                                                                                        \
    }
GEMM_TILE_FNS(, 0)
GEMM_TILE_FNS(_pf, 1)
#undef GEMM_TILE_FNS

/* The AVX2 tile's prefetch lines: the next one at p, none from end on, one every `every` k steps of
 * each strip from its first k on. */
typedef struct {
    const char *p, *end;
    int every;
} gemm_pf;

/* The AVX2 tile: t->n <= GEMM_NR columns as strips of 16 (2 ymm per row: 12 accumulators, as many
 * as the 16 registers leave room for), each strip over the whole of k, each bringing the next of the
 * tile's prefetch lines (pc) into L2 every pc->every k. Every value is the same chain
 * of FMAs over k from the bias (or c) as in gemm_tile_nv, so the bits are those of the AVX-512 tile.
 * full: the strip's nv vectors are all whole, else the last is loaded masked and stored by
 * avx2_store_n (a masked store is microcoded on AMD Zen: ~10x a plain one); pf: the strip that
 * prefetches A's look-ahead, the first. nx = 1 (with full): one more column,
 * c0 + 8 * nv, transposed as in gemm_tile_nvx (one vector over the GEMM_MR rows, the panel's k-th
 * column of a times b's column, the same FMA chain per value), inside the same loop over k: a tile's
 * last strip of 17 or 9 columns (7x7 maps: 49 = 16 + 16 + 17; 17x17: 289 = 4 x 64 + 16 + 17; 35x35:
 * 1225 = 19 x 64 + 9) costs one FMA per k for its last column instead of a strip of 6 latency-bound
 * chains (microbenchmark 160->960 at 7x7: -12%). mr: the rows computed, GEMM_MR or 4 (a last panel of
 * 1..4 rows: 8 FMAs per k instead of 12; 16 output channels are panels of 6, 6 and 4). ac >= 0: t->m ==
 * mr and t->act == ac, known at compile time, so the bias loads and the epilogue have no per-row test and
 * no switch on the activation (a K = 24 strip spent ~40 % of its time outside its k loop); -1: t's. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void gemm_strip_rows_avx2(const int mr, const int nv,
                                                                                 const int full, const int nx,
                                                                                 const int pf, const int ac,
                                                                                 const gemm_tile *t, int c0,
                                                                                 gemm_pf *pc)
{
    static const float no_bias[GEMM_MR] = {0};
    const int m = ac >= 0 ? mr : t->m, last = t->last;
    const act_kind act = ac >= 0 ? (act_kind)ac : t->act;
    const float *bias = t->bias ? t->bias : no_bias;
    const size_t ldc = t->ldc;
    const int xc = c0 + 8 * nv; /* the transposed column (nx = 1) */
    const __m256i tail = kernels_avx2_mask(t->n - c0 - 8 * (nv - 1));
    const __m256i panel = kernels_avx2_mask(GEMM_MR);
    __m256 acc[GEMM_MR][2], acc_x = _mm256_setzero_ps();
    float col_buf[8] = {0};
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        const float *cr = t->c + (size_t)r * ldc + c0;
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) {
            if (r >= m)
                acc[r][v] = _mm256_setzero_ps();
            else if (t->first)
                acc[r][v] = _mm256_broadcast_ss(bias + r);
            else
                acc[r][v] = full || v < nv - 1 ? _mm256_loadu_ps(cr + 8 * v) : _mm256_maskload_ps(cr + 8 * v, tail);
        }
    }
    if (nx) {
        if (!t->first)
            for (int r = 0; r < m; r++) col_buf[r] = t->c[(size_t)r * ldc + (size_t)xc];
        else if (t->bias)
            for (int r = 0; r < m; r++) col_buf[r] = t->bias[r];
        acc_x = _mm256_loadu_ps(col_buf);
    }
    const float *a = t->a, *b = t->b + c0;
    const size_t ldb = t->ldb;
    const char *pp = pc->p, *const pend = pc->end;
    const int every = pc->every, kc = t->kc;
    int next = pp < pend ? 0 : kc; /* the k of the next prefetch line */
    /* k in runs up to the next prefetch line: no test of it and no k count in the inner loop, whose
     * instructions per FMA are what the core runs short of when the host is busy (see README) */
    for (int k = 0; k < kc;) {
        if (k == next) {
            _mm_prefetch(pp, _MM_HINT_T1);
            pp += 64;
            next = pp < pend ? next + every : kc;
        }
        const int k_end = next < kc ? next : kc;
        for (; k < k_end; k++, a += GEMM_MR, b += ldb) {
            if (pf) _mm_prefetch((const char *)(a + GEMM_PREFETCH_A), _MM_HINT_T0);
            __m256 bv[2];
#pragma GCC unroll 2
            for (int v = 0; v < nv; v++)
                bv[v] = full || v < nv - 1 ? _mm256_loadu_ps(b + 8 * v) : _mm256_maskload_ps(b + 8 * v, tail);
#pragma GCC unroll 6
            for (int r = 0; r < mr; r++) {
                const __m256 ar = _mm256_broadcast_ss(a + r);
#pragma GCC unroll 2
                for (int v = 0; v < nv; v++) acc[r][v] = _mm256_fmadd_ps(ar, bv[v], acc[r][v]);
            }
            if (nx) acc_x = _mm256_fmadd_ps(_mm256_maskload_ps(a, panel), _mm256_broadcast_ss(b + 8 * nv), acc_x);
        }
    }
    pc->p = pp;
    const float *res = last ? t->res : NULL;
    /* the residual, then the activation and the stores in one pass: one test each */
    if (res)
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            if (r >= m) break;
#pragma GCC unroll 2
            for (int v = 0; v < nv; v++) {
                const float *rr = res + (size_t)r * ldc + (size_t)c0 + 8 * v;
                acc[r][v] = _mm256_add_ps(acc[r][v],
                                          full || v < nv - 1 ? _mm256_loadu_ps(rr) : _mm256_maskload_ps(rr, tail));
            }
        }
    const int n_last = t->n - c0 - 8 * (nv - 1); /* columns of the last vector */
    if (last)
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            if (r >= m) break;
#pragma GCC unroll 2
            for (int v = 0; v < nv; v++)
                avx2_store_n(t->c + (size_t)r * ldc + c0 + 8 * v, avx2_act(acc[r][v], act),
                             full || v < nv - 1 ? 8 : n_last);
        }
    else
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            if (r >= m) break;
#pragma GCC unroll 2
            for (int v = 0; v < nv; v++)
                avx2_store_n(t->c + (size_t)r * ldc + c0 + 8 * v, acc[r][v], full || v < nv - 1 ? 8 : n_last);
        }
    if (nx) {
        if (res) {
            for (int r = 0; r < m; r++) col_buf[r] = res[(size_t)r * ldc + (size_t)xc];
            acc_x = _mm256_add_ps(acc_x, _mm256_loadu_ps(col_buf));
        }
        _mm256_storeu_ps(col_buf, last ? avx2_act(acc_x, act) : acc_x);
        for (int r = 0; r < m; r++) t->c[(size_t)r * ldc + (size_t)xc] = col_buf[r];
    }
}

static inline __attribute__((always_inline)) KERNELS_AVX2 void gemm_strip_avx2(const int nv, const int full,
                                                                            const int nx, const int pf,
                                                                            const gemm_tile *t, int c0, gemm_pf *pc)
{
    gemm_strip_rows_avx2(GEMM_MR, nv, full, nx, pf, -1, t, c0, pc);
}

/* A whole panel's (t->m == GEMM_MR) whole 16-column strips with the activation ac (gemm_strip_rows_avx2),
 * not a last 17; the first prefetches A's look-ahead. Returns the first column left. One function per
 * activation, not inlined: inside gemm_tile_run_avx2 GCC kept two of the k loop's pointers on the stack. */
#define GEMM_STRIPS16_AVX2(name, ac)                                                                             \
    static __attribute__((noinline)) KERNELS_AVX2 int name(const gemm_tile *t, gemm_pf *pc)                     \
    {                                                                                                            \
        if (t->n < 16 || t->n == 17) return 0;                                                                   \
        gemm_strip_rows_avx2(GEMM_MR, 2, 1, 0, 1, ac, t, 0, pc);                                                 \
        int c0 = 16;                                                                                             \
        for (; t->n - c0 >= 16 && t->n - c0 != 17; c0 += 16)                                                    \
            gemm_strip_rows_avx2(GEMM_MR, 2, 1, 0, 0, ac, t, c0, pc);                                            \
        return c0;                                                                                               \
    }
GEMM_STRIPS16_AVX2(gemm_strips16_none_avx2, ACT_NONE)
GEMM_STRIPS16_AVX2(gemm_strips16_relu_avx2, ACT_RELU)
GEMM_STRIPS16_AVX2(gemm_strips16_relu6_avx2, ACT_RELU6)
GEMM_STRIPS16_AVX2(gemm_strips16_hswish_avx2, ACT_HSWISH)
GEMM_STRIPS16_AVX2(gemm_strips16_hsigmoid_avx2, ACT_HSIGMOID)
#undef GEMM_STRIPS16_AVX2

/* Strip by strip: whole 16- and 8-column strips unmasked, a last one of 17 or 9 columns with its last
 * column transposed, the first strip prefetching A's look-ahead; w: the strip's width. */
#define GEMM_STRIP_AVX2(pf, t, c0, w, pc)                                                                            \
    do {                                                                                                             \
        const int w_ = (t)->n - (c0);                                                                                \
        (w) = kernels_imin(w_, 16);                                                                                  \
        if (w_ == 17) {                                                                                              \
            gemm_strip_avx2(2, 1, 1, pf, t, c0, pc);                                                                 \
            (w) = 17;                                                                                                \
        } else if (w_ == 9) {                                                                                        \
            gemm_strip_avx2(1, 1, 1, pf, t, c0, pc);                                                                 \
        } else if (w_ >= 16)                                                                                         \
            gemm_strip_avx2(2, 1, 0, pf, t, c0, pc);                                                                 \
        else if (w_ > 8)                                                                                             \
            gemm_strip_avx2(2, 0, 0, pf, t, c0, pc);                                                                 \
        else if (w_ == 8)                                                                                            \
            gemm_strip_avx2(1, 1, 0, pf, t, c0, pc);                                                                 \
        else                                                                                                         \
            gemm_strip_avx2(1, 0, 0, pf, t, c0, pc);                                                                 \
    } while (0)

/* The tile's t->pf_lines prefetch lines (if any) go evenly over the k steps of all its strips (16 columns
 * each, a last 17 one), not one per k of the first strip: that asked memory for a line every ~2 ns, more
 * than it gives, and stalled the strip (gemm_run). */
static KERNELS_AVX2 void gemm_tile_run_avx2(const gemm_tile *t)
{
    int c0 = 0, w = 0, n_strips = 0;
    for (int c = 0; c < t->n; n_strips++) c += t->n - c == 17 ? 17 : 16;
    gemm_pf pcv = {t->pf, t->pf, 1}, *pc = &pcv;
    if (t->pf && t->pf_lines > 0) {
        pcv.end = t->pf + 64 * (size_t)t->pf_lines;
        pcv.every = kernels_imax(1, n_strips * t->kc / t->pf_lines);
    }
    if (t->m <= 4 && t->n >= 16 && t->n != 17) { /* its whole 16-column strips on 4 rows (not a last 17) */
        gemm_strip_rows_avx2(4, 2, 1, 0, 1, -1, t, 0, pc);
        for (c0 = 16; c0 + 16 <= t->n && t->n - c0 != 17; c0 += 16) gemm_strip_rows_avx2(4, 2, 1, 0, 0, -1, t, c0, pc);
    } else {
        if (t->m == GEMM_MR) switch (t->act) {
            case ACT_NONE: c0 = gemm_strips16_none_avx2(t, pc); break;
            case ACT_RELU: c0 = gemm_strips16_relu_avx2(t, pc); break;
            case ACT_RELU6: c0 = gemm_strips16_relu6_avx2(t, pc); break;
            case ACT_HSWISH: c0 = gemm_strips16_hswish_avx2(t, pc); break;
            case ACT_HSIGMOID: c0 = gemm_strips16_hsigmoid_avx2(t, pc); break;
            }
        if (c0 == 0) { /* no whole strip done: the first one prefetches */
            GEMM_STRIP_AVX2(1, t, 0, w, pc);
            c0 = w;
        }
    }
    for (; c0 < t->n; c0 += w) GEMM_STRIP_AVX2(0, t, c0, w, pc);
}
#undef GEMM_STRIP_AVX2

/* A tile of nx = 1..4 columns (14x14 maps: 196 = 3 x 64 + 4) over two row panels at once (t->m <= 2 *
 * GEMM_MR rows; the second panel's A follows the first, kc * GEMM_MR floats on): every column transposed
 * as in gemm_tile_nvx, one vector per panel over its rows, so a k costs 2 * nx independent FMAs instead
 * of a strip of 6 latency-bound chains per panel (the same FMA chain per value, the same bits). Lanes
 * 6..7 of the first panel's vectors and 0..1 of the second's (read from 2 floats before it, so no read
 * leaves the packed weights) hold other rows' products and are never stored. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void gemm_cols2_avx2(const int nx, const gemm_tile *t)
{
    const int m = t->m;
    const size_t ldc = t->ldc;
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int x = 0; x < nx; x++) {
        float col[2 * GEMM_MR + 4] = {0}; /* rows 0..m-1; the second panel's vector starts at row 4 */
        for (int r = 0; r < m; r++)
            col[r] = t->first ? (t->bias ? t->bias[r] : 0.0f) : t->c[(size_t)r * ldc + (size_t)x];
        acc[x][0] = _mm256_loadu_ps(col);
        acc[x][1] = _mm256_loadu_ps(col + GEMM_MR - 2);
    }
    const float *a = t->a, *b = t->b;
    const float *a2 = t->a + (size_t)t->kc * GEMM_MR - 2;
    for (int k = 0; k < t->kc; k++, a += GEMM_MR, a2 += GEMM_MR, b += t->ldb) {
        const __m256 p0 = _mm256_loadu_ps(a), p1 = _mm256_loadu_ps(a2);
#pragma GCC unroll 4
        for (int x = 0; x < nx; x++) {
            const __m256 bx = _mm256_broadcast_ss(b + x);
            acc[x][0] = _mm256_fmadd_ps(p0, bx, acc[x][0]);
            acc[x][1] = _mm256_fmadd_ps(p1, bx, acc[x][1]);
        }
    }
    const float *res = t->last ? t->res : NULL;
#pragma GCC unroll 4
    for (int x = 0; x < nx; x++) {
        __m256 y0 = acc[x][0], y1 = acc[x][1];
        if (res) {
            float col[2 * GEMM_MR + 4] = {0};
            for (int r = 0; r < m; r++) col[r] = res[(size_t)r * ldc + (size_t)x];
            y0 = _mm256_add_ps(y0, _mm256_loadu_ps(col));
            y1 = _mm256_add_ps(y1, _mm256_loadu_ps(col + GEMM_MR - 2));
        }
        if (t->last) {
            y0 = avx2_act(y0, t->act);
            y1 = avx2_act(y1, t->act);
        }
        float out0[8], out1[8];
        _mm256_storeu_ps(out0, y0);
        _mm256_storeu_ps(out1, y1);
        for (int r = 0; r < m; r++)
            t->c[(size_t)r * ldc + (size_t)x] = r < GEMM_MR ? out0[r] : out1[r - (GEMM_MR - 2)];
    }
}

static KERNELS_AVX2 void gemm_cols2_run_avx2(const gemm_tile *t)
{
    switch (t->n) {
    case 1: gemm_cols2_avx2(1, t); break;
    case 2: gemm_cols2_avx2(2, t); break;
    case 3: gemm_cols2_avx2(3, t); break;
    default: gemm_cols2_avx2(4, t); break;
    }
}

/* Columns per tile when B is read in place (any tiling gives the same bits): GEMM_NR, except
 * when that leaves a last tile of 5..8 columns (too few FMA chains to hide the latency) and
 * 49-column tiles cover the columns exactly. A last tile of 1..4 columns is a transposed one
 * (gemm_tile_nvx with nv = 0; on AVX2 gemm_cols2_avx2, two row panels at a time): 14x14 maps run
 * 196 = 3 x 64 + 4 instead of 4 x 49 (each tile costs about the same per k whatever its FMAs:
 * microbenchmark 112 x 196 x 672, everything in L2, 64-column tiles 183-188 GFLOP/s, 49-column
 * tiles 142-150). */
static int gemm_tile_width(int nc)
{
    const int rem = nc % GEMM_NR;
    return rem > 4 && rem <= 8 && nc % 49 == 0 ? 49 : GEMM_NR;
}

/* The part of a GEMM one call computes: row panels [ib0, ib1) of GEMM_MR rows and columns
 * [n_lo, n_hi) (n_lo a multiple of GEMM_NR). Every value is accumulated over k in the same
 * order (KC blocks, from the bias) whatever the part, so parts are bit-identical to the whole. */
typedef struct {
    int ib0, ib1, n_lo, n_hi;
    const char *pf; /* pf_lines cache lines to bring into L2 during the part, in order from the first tiles */
    size_t pf_lines; /* on (or none): AVX-512 kc per tile (one per k), AVX2 gemm_pf_quota */
} gemm_range;

/* AVX2: the prefetch lines per tile that spread r's lines over all its tiles (the tiles of 1..4 columns
 * that run two panels at once prefetch nothing), at most kc per tile (gemm_run). Spread this thin the
 * prefetch costs the GEMM little: MobileNetV3-Large's GEMMs before a squeeze-and-excitation linear or
 * the classifier ran 6-38 us slower with kc lines per tile, one per k of its first strip (memory does
 * not give a line every ~2 ns), and now 0-4. */
static size_t gemm_pf_quota(const gemm_range *r, int packed, int k)
{
    size_t tiles = 0;
    for (int n0 = r->n_lo; n0 < r->n_hi; n0 += GEMM_NC) {
        const int nc = kernels_imin(GEMM_NC, r->n_hi - n0), nr = packed ? GEMM_NR : gemm_tile_width(nc);
        for (int q = 0; q * nr < nc; q++)
            if (kernels_imin(nr, nc - q * nr) > 4) tiles += (size_t)(r->ib1 - r->ib0);
    }
    tiles *= (size_t)((k + GEMM_KC - 1) / GEMM_KC);
    return tiles ? (r->pf_lines + tiles - 1) / tiles : 0;
}

/* c[m][n] = act(a * B + bias + res) (res may be NULL) for a packed as kernels_gemm_a_offset lays
 * it out and B either read in place (src NULL: k rows of n floats at stride ldb from b) or
 * packed from src block by block into block; only the part r of c. */
static void gemm_run(cpu_isa isa, int m, int k, const float *a, const gemm_src *src, const float *b, size_t ldb,
                     float *block, float *c, size_t ldc, const float *bias, const float *res, act_kind act,
                     const gemm_range *r)
{
    const int avx512 = isa >= CPU_ISA_AVX512;
    const int n_panels_m = (m + GEMM_MR - 1) / GEMM_MR;
    const char *pf = r->pf;
    size_t pf_lines = r->pf_lines;
    const size_t quota = !avx512 && pf_lines ? gemm_pf_quota(r, src != NULL, k) : 0;
    for (int n0 = r->n_lo; n0 < r->n_hi; n0 += GEMM_NC) {
        const int nc = kernels_imin(GEMM_NC, r->n_hi - n0);
        for (int k0 = 0; k0 < k; k0 += GEMM_KC) {
            const int kc = kernels_imin(GEMM_KC, k - k0);
            if (src) (avx512 ? gemm_pack_block : gemm_pack_block_avx2)(src, k0, kc, n0, nc, block);
            gemm_tile t = {.ldc = ldc, .kc = kc, .first = k0 == 0, .last = k0 + kc == k,
                           .act = act};
            const int nr = src ? GEMM_NR : gemm_tile_width(nc);
            for (int q = 0; q * nr < nc; q++) {
                const int col = n0 + q * nr;
                t.n = kernels_imin(nr, nc - q * nr);
                if (src) {
                    t.b = block + (size_t)q * (size_t)kc * GEMM_NR;
                    t.ldb = GEMM_NR;
                } else {
                    t.b = b + (size_t)k0 * ldb + (size_t)col;
                    t.ldb = ldb;
                }
                for (int ib = r->ib0; ib < r->ib1; ib++) {
                    const int m0 = ib * GEMM_MR;
                    t.a = a + ((size_t)k0 * (size_t)n_panels_m + (size_t)ib * (size_t)kc) * GEMM_MR;
                    t.c = c + (size_t)m0 * ldc + (size_t)col;
                    t.m = kernels_imin(GEMM_MR, m - m0);
                    t.bias = bias ? bias + m0 : NULL;
                    t.res = res ? res + (size_t)m0 * ldc + (size_t)col : NULL;
                    if (!avx512 && t.n <= 4 && ib + 1 < r->ib1) { /* AVX2: two panels at once, no prefetch */
                        t.m = kernels_imin(2 * GEMM_MR, m - m0);
                        gemm_cols2_run_avx2(&t);
                        ib++;
                    } else if (!avx512) {
                        size_t lines = quota < pf_lines ? quota : pf_lines;
                        if (lines > (size_t)kc) lines = (size_t)kc;
                        t.pf = lines ? pf : NULL;
                        t.pf_lines = (int)lines;
                        pf += 64 * lines;
                        pf_lines -= lines;
                        gemm_tile_run_avx2(&t);
                    } else if (pf_lines >= (size_t)kc) { /* whole tiles only: a last < kc lines are left out */
                        t.pf = pf;
                        pf += 64 * (size_t)kc;
                        pf_lines -= (size_t)kc;
                        gemm_tile_run_pf(&t);
                    } else {
                        t.pf = NULL;
                        gemm_tile_run(&t);
                    }
                }
            }
        }
    }
}

/* One group: x its input, a its packed weights, y its output; scratch holds the padded input
 * (when needed) and then the packed B block. */
/* out = a with column k (input channel k) scaled by f[k], in a's packed layout, for panels
 * [ib0, ib1): per k-block and panel, kc rows of GEMM_MR floats; 8 k at a time, their factors
 * spread over the 48 floats by permutes. */
static KERNELS_AVX512 void gemm_scale_a(int m, int k, const float *a, const float *f, int ib0,
                                     int ib1, float *out)
{
    const int n_panels = (m + GEMM_MR - 1) / GEMM_MR;
    __m512i spread[3];
    for (int v = 0; v < 3; v++) {
        int idx[16];
        for (int l = 0; l < 16; l++) idx[l] = (16 * v + l) / GEMM_MR;
        spread[v] = _mm512_loadu_si512(idx);
    }
    for (int k0 = 0; k0 < k; k0 += GEMM_KC) {
        const int kc = kernels_imin(GEMM_KC, k - k0);
        const size_t block = (size_t)k0 * (size_t)n_panels * GEMM_MR;
        for (int ib = ib0; ib < ib1; ib++) {
            const float *src = a + block + (size_t)ib * (size_t)kc * GEMM_MR;
            float *dst = out + block + (size_t)ib * (size_t)kc * GEMM_MR;
            for (int kk = 0; kk < kc; kk += 8) {
                const int n_k = kernels_imin(8, kc - kk);
                const __m512 fv = _mm512_maskz_loadu_ps((__mmask16)((1u << n_k) - 1u), f + k0 + kk);
                for (int v = 0; v < 3; v++) {
                    const int at = 16 * v, n = kernels_imin(16, GEMM_MR * n_k - at);
                    if (n <= 0) break;
                    const __mmask16 mk = kernels_avx512_mask(n);
                    const size_t o = (size_t)kk * GEMM_MR + (size_t)at;
                    _mm512_mask_storeu_ps(dst + o, mk,
                                          _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, src + o),
                                                        _mm512_permutexvar_ps(spread[v], fv)));
                }
            }
        }
    }
}

/* gemm_scale_a on AVX2: the same products; 4 k (3 vectors of a panel's 24 floats) at a time, their
 * factors spread over the lanes by permutes, a last 1..3 k one panel row at a time (the scalar loop
 * cost 3-5% of MobileNetV3-Large's 14x14 projections). */
static KERNELS_AVX2 void gemm_scale_a_avx2(int m, int k, const float *a, const float *f, int ib0, int ib1,
                                           float *out)
{
    const int n_panels = (m + GEMM_MR - 1) / GEMM_MR;
    const __m256i spread0 = _mm256_setr_epi32(0, 0, 0, 0, 0, 0, 1, 1);
    const __m256i spread1 = _mm256_setr_epi32(1, 1, 1, 1, 2, 2, 2, 2);
    const __m256i spread2 = _mm256_setr_epi32(2, 2, 3, 3, 3, 3, 3, 3);
    for (int k0 = 0; k0 < k; k0 += GEMM_KC) {
        const int kc = kernels_imin(GEMM_KC, k - k0);
        const size_t block = (size_t)k0 * (size_t)n_panels * GEMM_MR;
        for (int ib = ib0; ib < ib1; ib++) {
            const float *src = a + block + (size_t)ib * (size_t)kc * GEMM_MR;
            float *dst = out + block + (size_t)ib * (size_t)kc * GEMM_MR;
            int kk = 0;
            for (; kk + 4 <= kc; kk += 4) {
                const __m256 fv = _mm256_broadcast_ps((const __m128 *)(f + k0 + kk));
                const float *s4 = src + kk * GEMM_MR;
                float *d4 = dst + kk * GEMM_MR;
                _mm256_storeu_ps(d4, _mm256_mul_ps(_mm256_loadu_ps(s4), _mm256_permutevar8x32_ps(fv, spread0)));
                _mm256_storeu_ps(d4 + 8,
                                 _mm256_mul_ps(_mm256_loadu_ps(s4 + 8), _mm256_permutevar8x32_ps(fv, spread1)));
                _mm256_storeu_ps(d4 + 16,
                                 _mm256_mul_ps(_mm256_loadu_ps(s4 + 16), _mm256_permutevar8x32_ps(fv, spread2)));
            }
            for (; kk < kc; kk++)
                for (int r = 0; r < GEMM_MR; r++) dst[kk * GEMM_MR + r] = src[kk * GEMM_MR + r] * f[k0 + kk];
        }
    }
}

static void gemm_conv_group(cpu_isa isa, const conv2d_params *p, const gemm_shape *s, const float *x,
                            const float *in_scale, const float *a, const float *bias, const float *res, float *y,
                            float *scratch, const gemm_range *r)
{
    if (s->direct && (!in_scale || gemm_scale_weights(s))) {
        if (in_scale) {
            (isa >= CPU_ISA_AVX512 ? gemm_scale_a : gemm_scale_a_avx2)(s->m, s->k, a, in_scale, r->ib0, r->ib1,
                                                                     scratch);
            a = scratch;
        }
        gemm_run(isa, s->m, s->k, a, NULL, x, (size_t)s->n, NULL, y, (size_t)s->n, bias, res, p->act, r);
        return;
    }
    gemm_src src = {.x = x, .plane = (size_t)p->h_in * (size_t)p->w_in, .wp = p->w_in,
                    .k_h = p->k_h, .k_w = p->k_w, .s_h = p->stride_h, .s_w = p->stride_w,
                    .w_out = p->w_out, .n = s->n, .scale = in_scale};
    float *block = scratch;
    if (gemm_needs_padding(p)) {
        gemm_pad_input(p, x, p->c_in / p->groups, scratch);
        src.x = scratch;
        src.wp = gemm_padded_w(p);
        src.plane = (size_t)gemm_padded_h(p) * (size_t)src.wp;
        block = scratch + gemm_padded_floats(p);
    }
    src.rows_contiguous = p->stride_h == 1 && p->stride_w == 1 && src.wp == p->w_out;
    gemm_run(isa, s->m, s->k, a, &src, NULL, 0, block, y, (size_t)s->n, bias, res, p->act, r);
}
#endif

/* The packed GEMM entry points on one ISA (AVX-512 or AVX2: the same bits). */
static void gemm_entry(cpu_isa isa, int m, int n, int k, const float *a, const float *b, size_t ldb, float *c,
                       size_t ldc, const float *bias, const float *res, act_kind act, int r0, int r1)
{
    assert(cpu_isa_best() >= isa && m > 0 && n > 0 && k > 0);
    assert(0 <= r0 && r0 <= r1 && r1 <= m && r0 % GEMM_MR == 0 && (r1 == m || r1 % GEMM_MR == 0));
#if KERNELS_X86
    const gemm_range r = {r0 / GEMM_MR, (r1 + GEMM_MR - 1) / GEMM_MR, 0, n, NULL, 0};
    gemm_run(isa, m, k, a, NULL, b, ldb, NULL, c, ldc, bias, res, act, &r);
#else
    (void)isa, (void)a, (void)b, (void)ldb, (void)c, (void)ldc, (void)bias, (void)res, (void)act;
#endif
}

void kernels_gemm_avx512(int m, int n, int k, const float *a, const float *b, size_t ldb,
                         float *c, size_t ldc, const float *bias, act_kind act, int r0, int r1)
{
    gemm_entry(CPU_ISA_AVX512, m, n, k, a, b, ldb, c, ldc, bias, NULL, act, r0, r1);
}

void kernels_gemm_res_avx512(int m, int n, int k, const float *a, const float *b, size_t ldb, float *c, size_t ldc,
                             const float *bias, const float *res, act_kind act)
{
    gemm_entry(CPU_ISA_AVX512, m, n, k, a, b, ldb, c, ldc, bias, res, act, 0, m);
}

void kernels_gemm_avx2(int m, int n, int k, const float *a, const float *b, size_t ldb, float *c, size_t ldc,
                       const float *bias, act_kind act, int r0, int r1)
{
    gemm_entry(CPU_ISA_AVX2, m, n, k, a, b, ldb, c, ldc, bias, NULL, act, r0, r1);
}

void kernels_gemm_res_avx2(int m, int n, int k, const float *a, const float *b, size_t ldb, float *c, size_t ldc,
                           const float *bias, const float *res, act_kind act)
{
    gemm_entry(CPU_ISA_AVX2, m, n, k, a, b, ldb, c, ldc, bias, res, act, 0, m);
}

size_t kernels_gemm_conv_fused_scratch_floats(const conv2d_params *p)
{
    const gemm_shape s = gemm_shape_of(p);
    if (gemm_scale_weights(&s)) return (size_t)s.n_panels_m * GEMM_MR * (size_t)s.k;
    /* one packed input block */
    return (size_t)kernels_imin(s.k, GEMM_KC) *
           (size_t)kernels_imin((s.n + GEMM_NR - 1) / GEMM_NR * GEMM_NR, GEMM_NC);
}

/* Output-position parts of the GEMM path are at least this many 64-column panels per thread
 * (else the output channels are split; positions keep each thread's B packing to its own
 * columns, channels each thread's weights to its own rows). */
#define GEMM_PART_MIN_PANELS 4

kernels_part kernels_gemm_conv_part(const conv2d_params *p, int ith, int nth)
{
    const int n = p->h_out * p->w_out;
    const gemm_shape s = gemm_shape_of(p);
    const int panels_n = (n + GEMM_NR - 1) / GEMM_NR;
    /* the pointwise path packs nothing: there only a narrow output (few channels) splits positions */
    const int by_positions = p->groups > 1 || (s.direct ? s.n_panels_m < GEMM_PART_MIN_PANELS * nth
                                                        : panels_n >= GEMM_PART_MIN_PANELS * nth);
    if (by_positions) return kernels_part_split(KERNELS_PART_POSITIONS, n, GEMM_NR, ith, nth);
    return kernels_part_split(KERNELS_PART_CHANNELS, p->c_out, GEMM_MR, ith, nth);
}

kernels_part kernels_gemm_conv_part_positions(const conv2d_params *p, int ith, int nth)
{
    return kernels_part_split(KERNELS_PART_POSITIONS, p->h_out * p->w_out, GEMM_NR, ith, nth);
}

void kernels_gemm_conv_forward_part(const conv2d_params *p, const float *x,
                                    const float *in_scale, const float *packed,
                                    const float *bias, const float *residual, float *y,
                                    float *scratch, const kernels_part *part, const void *prefetch,
                                    size_t prefetch_bytes)
{
    const cpu_isa isa = cpu_isa_best() >= CPU_ISA_AVX512 ? CPU_ISA_AVX512 : CPU_ISA_AVX2;
    assert(cpu_isa_best() >= CPU_ISA_AVX2 && !kernels_conv_depthwise(p));
    assert(p->c_in > 0 && p->c_out > 0 && p->h_out > 0 && p->w_out > 0);
    assert(p->groups > 0 && p->c_in % p->groups == 0 && p->c_out % p->groups == 0);
    assert((!in_scale && !residual) || kernels_conv_pointwise(p));
    assert(part->lo >= 0 && part->lo <= part->hi);
    if (part->lo == part->hi) return;
#if KERNELS_X86
    const gemm_shape s = gemm_shape_of(p);
    assert((s.direct && !in_scale) || scratch != NULL);
    gemm_range r = {0, s.n_panels_m, 0, s.n, NULL, 0};
    /* the part's share of the prefetch: the same fraction of it as of the output */
    const int total = part->axis == KERNELS_PART_POSITIONS ? s.n : p->c_out;
    const size_t lines = prefetch ? (prefetch_bytes + 63) / 64 : 0;
    const size_t l0 = lines * (size_t)part->lo / (size_t)total, l1 = lines * (size_t)part->hi / (size_t)total;
    r.pf = lines ? (const char *)prefetch + 64 * l0 : NULL;
    r.pf_lines = l1 - l0;
    if (part->axis == KERNELS_PART_POSITIONS) {
        assert(part->hi <= s.n && part->lo % GEMM_NR == 0 && (part->hi == s.n || part->hi % GEMM_NR == 0));
        r.n_lo = part->lo;
        r.n_hi = part->hi;
    } else if (part->lo > 0 || part->hi < p->c_out) { /* output channels: groups 1 only */
        assert(p->groups == 1 && part->hi <= s.m && part->lo % GEMM_MR == 0 &&
               (part->hi == s.m || part->hi % GEMM_MR == 0));
        r.ib0 = part->lo / GEMM_MR;
        r.ib1 = (part->hi + GEMM_MR - 1) / GEMM_MR;
    }
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    const size_t cig = (size_t)(p->c_in / p->groups), hw_out = (size_t)s.n;
    for (int g = 0; g < p->groups; g++)
        gemm_conv_group(isa, p, &s, x + (size_t)g * cig * hw_in, in_scale ? in_scale + (size_t)g * cig : NULL,
                        packed + (size_t)g * (size_t)s.n_panels_m * GEMM_MR * (size_t)s.k,
                        bias ? bias + (size_t)g * (size_t)s.m : NULL,
                        residual ? residual + (size_t)g * (size_t)s.m * hw_out : NULL,
                        y + (size_t)g * (size_t)s.m * hw_out, scratch, &r);
#else
    (void)isa, (void)x, (void)in_scale, (void)packed, (void)bias, (void)residual, (void)y, (void)scratch;
#endif
}
