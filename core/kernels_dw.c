/* Direct depthwise convolution (groups == c_in == c_out), NCHW, batch 1.
 *
 * Square 3x3 / 5x5 kernels with stride 1 or 2 (what MobileNetV3 and ShuffleNetV2 use) run a
 * specialized kernel: each input row is copied once per channel into a small zero-padded staging
 * row on the stack, so every output column, borders included, is computed by the same
 * bounds-check-free vector loop, with bias and activation applied in registers (AVX2) or while the
 * row is in L1 (portable). Every other shape accumulates tap by tap over the output columns each
 * tap reaches (ranges computed up front, no per-element checks).
 * Two variants: portable C (auto-vectorized for the baseline ISA) and AVX2+FMA intrinsics,
 * selected at run time since the binary is built for generic x86-64. */
#include "kernels.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "kernels_internal.h"

#if KERNELS_X86
#include <immintrin.h>

#include "kernels_avx2.h"
#include "kernels_avx512.h"
#endif

/* Largest kernel side with a specialized kernel. */
#define DW_FAST_K_MAX 5
/* Staged rows in use at once: k + stride for a pair of output rows. */
#define DW_STAGE_ROWS (DW_FAST_K_MAX + 2)
/* Floats per staged (zero-padded) input row (KERNELS_DW_ROW_MAX); with the zero row the staging
 * buffer is 24 KiB of stack. */
#define DW_ROW_MAX KERNELS_DW_ROW_MAX

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
static void dw_row_taps(const conv2d_params *p, const float *xc, const float *wc, float b, int oh,
                        float *yrow)
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
            if (hi == lo) continue;
            if (sw == 1) {
                dw_axpy(yrow + lo, xrow + lo + off, wv, hi - lo);
            } else {
                for (int ow = lo; ow < hi; ow++) yrow[ow] += wv * xrow[ow * sw + off];
            }
        }
    }
    act_forward(p->act, yrow, (size_t)p->w_out);
}

/* ---- staging of zero-padded input rows ---- */

/* Input row ih lives in slot ih % n_rows (n_rows consecutive rows never collide) at offset pad_l,
 * where n_rows is the number of rows a kernel uses at once. The
 * padding cells of every slot and the whole zero row are cleared once per call and never written
 * with data, so staging a row is one copy, done once per input row and channel. Rows are long
 * enough for whole 8-output steps, so the kernels below never check a column. */
typedef struct {
    float *slot[DW_STAGE_ROWS];
    int slot_row[DW_STAGE_ROWS]; /* input row held by each slot, -1 when none */
    const float *zero;           /* stands for rows above / below the input */
    int n_copy;                  /* input columns that fall inside the staged width */
    int split;                   /* rows staged as their even and odd columns (DW_SPLIT_*) */
} dw_stage;

/* The AVX2 stride-2 kernel stages padded row R as its even columns E[t] = R[2t] in a slot's first
 * half and its odd ones O[t] = R[2t + 1] in the second, so every tap of 8 outputs is one plain
 * load (E or O from column ow + j / 2) instead of two loads and a shuffle. */
#define DW_SPLIT_HALF (DW_ROW_MAX / 2)

/* Staged width for the specialized kernels, or 0 when the convolution does not qualify
 * (not square 3x3/5x5 with stride 1/2) or its rows would not fit DW_ROW_MAX. */
static int dw_stage_width(const conv2d_params *p, int split)
{
    const int k = p->k_h, s = p->stride_h;
    if (p->k_w != k || p->stride_w != s || !(k == 3 || k == 5) || !(s == 1 || s == 2)) return 0;
    const long w_steps = ((long)p->w_out + 7) / 8 * 8;
    const long width = (w_steps - 1) * s + k;
    /* the AVX2 row copy stores whole 8-float blocks from pad_l on; split, whole blocks of 16
     * columns as 8 even and 8 odd ones from (pad_l + 1) / 2 on, and the taps read E to
     * w_steps + (k - 1) / 2 */
    if (split)
        return (p->pad_l + 1 + ((long)p->w_in + 15) / 16 * 16) / 2 <= DW_SPLIT_HALF &&
                       w_steps + (k - 1) / 2 <= DW_SPLIT_HALF
                   ? (int)width
                   : 0;
    const long copy_end = (long)p->pad_l + ((long)p->w_in + 7) / 8 * 8;
    return width <= DW_ROW_MAX && copy_end <= DW_ROW_MAX ? (int)width : 0;
}

/* Clears n_slots slots and the zero row in buf ((n_slots + 1) * DW_ROW_MAX floats); split: both
 * halves of each as far as staged or read. */
static void dw_stage_init(dw_stage *st, float *buf, int n_slots, int width, int split,
                          const conv2d_params *p)
{
    st->n_copy = split ? p->w_in : kernels_imax(kernels_imin(p->w_in, width - p->pad_l), 0);
    st->split = split;
    const int half = (width + 1) / 2 + 8;
    for (int i = 0; i <= n_slots; i++) {
        float *row = buf + (size_t)i * DW_ROW_MAX;
        if (split) {
            memset(row, 0, (size_t)kernels_imin(half, DW_SPLIT_HALF) * sizeof *row);
            memset(row + DW_SPLIT_HALF, 0, (size_t)kernels_imin(half, DW_SPLIT_HALF) * sizeof *row);
        } else {
            memset(row, 0, (size_t)width * sizeof *row);
        }
        if (i < n_slots)
            st->slot[i] = row;
        else
            st->zero = row;
    }
}

/* A staged row still to be filled: n_copy floats from src to dst. */
typedef struct {
    float *dst;
    const float *src;
} dw_copy;

/* Points rows[0..n_rows) at the staged input rows oh*stride - pad_t + i (xc: the channel's
 * input) and lists in copies the rows not staged yet; returns their number. The caller copies
 * them with its own ISA (for narrow rows a libc call per row would cost as much as the
 * arithmetic). */
static inline __attribute__((always_inline)) int dw_stage_rows(const int n_rows,
                                                               const conv2d_params *p,
                                                               dw_stage *st, const float *xc,
                                                               int oh, const float **rows,
                                                               dw_copy *copies)
{
    const int ih0 = oh * p->stride_h - p->pad_t;
    int n_copies = 0;
    for (int i = 0; i < n_rows; i++) {
        const int ih = ih0 + i;
        if (ih < 0 || ih >= p->h_in) {
            rows[i] = st->zero;
            continue;
        }
        const int sl = ih % n_rows;
        if (st->slot_row[sl] != ih) {
            copies[n_copies++] = (dw_copy){st->slot[sl] + (st->split ? 0 : p->pad_l),
                                           xc + (size_t)ih * (size_t)p->w_in};
            st->slot_row[sl] = ih;
        }
        rows[i] = st->slot[sl];
    }
    return n_copies;
}

/* ---- specialized kernels: one channel, 3x3 / 5x5, stride 1 / 2 ---- */

static inline __attribute__((always_inline)) void dw_channel_c_k(const int k, const int s,
                                                                 const conv2d_params *p,
                                                                 dw_stage *st, const float *xc,
                                                                 const float *wc, float b,
                                                                 float *yc)
{
    const int w_out = p->w_out;
    const float *rows[DW_FAST_K_MAX];
    for (int i = 0; i < k; i++) st->slot_row[i] = -1;
    for (int oh = 0; oh < p->h_out; oh++) {
        float *restrict yrow = yc + (size_t)oh * (size_t)w_out;
        dw_copy copies[DW_FAST_K_MAX];
        const int n_copies = dw_stage_rows(k, p, st, xc, oh, rows, copies);
        for (int i = 0; i < n_copies; i++)
            memcpy(copies[i].dst, copies[i].src, (size_t)st->n_copy * sizeof *xc);
        /* whole blocks only: the staged rows cover the last one, whose surplus is dropped */
        for (int ow = 0; ow < w_out; ow += KERNELS_BLOCK) {
            float t[KERNELS_BLOCK];
            for (int j = 0; j < KERNELS_BLOCK; j++) t[j] = b;
#pragma GCC unroll 5
            for (int i = 0; i < k; i++) {
                const float *r = rows[i] + ow * s;
#pragma GCC unroll 5
                for (int kj = 0; kj < k; kj++) {
                    const float wv = wc[i * k + kj];
                    for (int j = 0; j < KERNELS_BLOCK; j++) t[j] += wv * r[j * s + kj];
                }
            }
            if (ow + KERNELS_BLOCK <= w_out) {
                for (int j = 0; j < KERNELS_BLOCK; j++) yrow[ow + j] = t[j];
            } else {
                for (int j = 0; j < w_out - ow; j++) yrow[ow + j] = t[j];
            }
        }
        act_forward(p->act, yrow, (size_t)w_out);
    }
}

static void dw_channel_c(const conv2d_params *p, dw_stage *st, const float *xc, const float *wc,
                         float b, float *yc)
{
    const int k = p->k_h, s = p->stride_h;
    if (k == 3 && s == 1)
        dw_channel_c_k(3, 1, p, st, xc, wc, b, yc);
    else if (k == 3 && s == 2)
        dw_channel_c_k(3, 2, p, st, xc, wc, b, yc);
    else if (k == 5 && s == 1)
        dw_channel_c_k(5, 1, p, st, xc, wc, b, yc);
    else
        dw_channel_c_k(5, 2, p, st, xc, wc, b, yc);
}

#if KERNELS_X86
/* dst[0..n) = src[0..n); the last partial block is read with a masked load (no access past
 * src + n) and stored whole: its extra lanes are zeros landing in the staged row's right padding,
 * which dw_stage_width keeps inside the slot. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void dw_copy_avx2(float *dst, const float *src, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_loadu_ps(src + i));
    if (i < n) _mm256_storeu_ps(dst + i, _mm256_maskload_ps(src + i, kernels_avx2_mask(n - i)));
}

/* The even and odd columns of a padded row from the input row src (n floats) at column pad_l: 16
 * columns -> 8 even + 8 odd per step (the last step's masked-off lanes store zeros into the right
 * padding, which dw_stage_width keeps inside the half); x[c] lands at R[pad_l + c]. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void dw_copy_split_avx2(float *slot, const float *src, int n,
                                                                                  int pad_l)
{
    /* even input columns go to E when pad_l is even, else to O; odd ones the other way */
    float *xe = pad_l % 2 == 0 ? slot + pad_l / 2 : slot + DW_SPLIT_HALF + pad_l / 2;
    float *xo = pad_l % 2 == 0 ? slot + DW_SPLIT_HALF + pad_l / 2 : slot + (pad_l + 1) / 2;
    avx2_split_even_odd(src, n, xe, xo);
}

/* Taps r[0], r[s], ..., r[7s] of padded row r at column kj: stride 1 one load; stride 2 one load of
 * the row's even or odd columns (dw_copy_split_avx2). */
static inline __attribute__((always_inline)) KERNELS_AVX2 __m256 dw_taps_avx2(const int s, const float *r, int ow,
                                                                              const int kj)
{
    if (s == 1) return _mm256_loadu_ps(r + ow + kj);
    return _mm256_loadu_ps(r + (kj % 2) * DW_SPLIT_HALF + ow + kj / 2);
}

/* Applies the activation and stores the first n (1..8) lanes. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void dw_finish_avx2(__m256 acc, act_kind act, float *y, int n)
{
    avx2_store_n(y, avx2_act(acc, act), n);
}

/* The 3x3 loop written out: the 9 weights stay in registers (dw_split_avx2_k's array of them lives
 * on the stack, every FMA loading its weight: 1.8-2x the time per pair of rows, microbenchmark),
 * and the first row's 8 outputs are stored before the second row's last taps. Each accumulator
 * gets the same FMAs in the same order (a0: kernel rows 0 and 2, a1: row 1; c0 / c1 the same one
 * pair of input rows lower). */
static inline __attribute__((always_inline)) KERNELS_AVX2 void
dw_split3_pair_avx2(const float *r0, const float *r1, const float *r2, const float *r3, const float *r4, size_t half,
                    const __m256 *w, __m256 vb, int pair, act_kind act, float *y0, float *y1, int n)
{
    const __m256 z = _mm256_setzero_ps();
    __m256 a0, a1, c0 = z, c1, v;
    a0 = _mm256_fmadd_ps(w[0], _mm256_loadu_ps(r0), vb);
    a0 = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(r0 + half), a0);
    a0 = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(r0 + 1), a0);
    a1 = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(r1), z);
    a1 = _mm256_fmadd_ps(w[4], _mm256_loadu_ps(r1 + half), a1);
    a1 = _mm256_fmadd_ps(w[5], _mm256_loadu_ps(r1 + 1), a1);
    v = _mm256_loadu_ps(r2);
    a0 = _mm256_fmadd_ps(w[6], v, a0);
    if (pair) c0 = _mm256_fmadd_ps(w[0], v, vb);
    v = _mm256_loadu_ps(r2 + half);
    a0 = _mm256_fmadd_ps(w[7], v, a0);
    if (pair) c0 = _mm256_fmadd_ps(w[1], v, c0);
    v = _mm256_loadu_ps(r2 + 1);
    a0 = _mm256_fmadd_ps(w[8], v, a0);
    dw_finish_avx2(_mm256_add_ps(a0, a1), act, y0, n);
    if (!pair) return;
    c0 = _mm256_fmadd_ps(w[2], v, c0);
    c1 = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(r3), z);
    c1 = _mm256_fmadd_ps(w[4], _mm256_loadu_ps(r3 + half), c1);
    c1 = _mm256_fmadd_ps(w[5], _mm256_loadu_ps(r3 + 1), c1);
    c0 = _mm256_fmadd_ps(w[6], _mm256_loadu_ps(r4), c0);
    c0 = _mm256_fmadd_ps(w[7], _mm256_loadu_ps(r4 + half), c0);
    c0 = _mm256_fmadd_ps(w[8], _mm256_loadu_ps(r4 + 1), c0);
    dw_finish_avx2(_mm256_add_ps(c0, c1), act, y1, n);
}

/* Output rows are computed in pairs: the k + s staged input rows of a pair are loaded once and
 * each loaded vector feeds both rows where their windows overlap, which cuts loads by 30-40%;
 * each output keeps two accumulators (even / odd kernel rows) for shorter dependency chains. 8
 * outputs per step; a last partial step is computed whole (the staged rows cover it) and only its
 * valid lanes stored. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void
dw_channel_avx2_k(const int k, const int s, const act_kind act, const conv2d_params *p, dw_stage *st,
                  const float *xc, const float *wc, float b, float *yc)
{
    const int w_out = p->w_out, n_rows = k + s;
    const float *rows[DW_STAGE_ROWS];
    __m256 wv[DW_FAST_K_MAX * DW_FAST_K_MAX];
    for (int t = 0; t < k * k; t++) wv[t] = _mm256_broadcast_ss(wc + t);
    const __m256 vb = _mm256_set1_ps(b);
    for (int i = 0; i < n_rows; i++) st->slot_row[i] = -1;
    for (int oh = 0; oh < p->h_out; oh += 2) {
        float *y0 = yc + (size_t)oh * (size_t)w_out, *y1 = y0 + w_out;
        dw_copy copies[DW_STAGE_ROWS];
        const int n_copies = dw_stage_rows(n_rows, p, st, xc, oh, rows, copies);
        for (int i = 0; i < n_copies; i++) {
            if (s == 2)
                dw_copy_split_avx2(copies[i].dst, copies[i].src, st->n_copy, p->pad_l);
            else
                dw_copy_avx2(copies[i].dst, copies[i].src, st->n_copy);
        }
        if (k == 3 && s == 2) { /* whole 8-column steps stored plainly, a last partial one by avx2_store_n */
            const int pair = oh + 1 < p->h_out;
            int ow = 0;
            for (; ow + 8 <= w_out; ow += 8)
                dw_split3_pair_avx2(rows[0] + ow, rows[1] + ow, rows[2] + ow, rows[3] + ow, rows[4] + ow,
                                    DW_SPLIT_HALF, wv, vb, pair, act, y0 + ow, y1 + ow, 8);
            if (ow < w_out)
                dw_split3_pair_avx2(rows[0] + ow, rows[1] + ow, rows[2] + ow, rows[3] + ow, rows[4] + ow,
                                    DW_SPLIT_HALF, wv, vb, pair, act, y0 + ow, y1 + ow, w_out - ow);
        } else if (oh + 1 < p->h_out) {
            for (int ow = 0; ow < w_out; ow += 8) {
                __m256 a[2] = {vb, _mm256_setzero_ps()}, c[2] = {vb, _mm256_setzero_ps()};
#pragma GCC unroll 7
                for (int r = 0; r < n_rows; r++) {
#pragma GCC unroll 5
                    for (int kj = 0; kj < k; kj++) {
                        const __m256 v = dw_taps_avx2(s, rows[r], ow, kj);
                        if (r < k) a[r & 1] = _mm256_fmadd_ps(wv[r * k + kj], v, a[r & 1]);
                        if (r >= s)
                            c[(r - s) & 1] =
                                _mm256_fmadd_ps(wv[(r - s) * k + kj], v, c[(r - s) & 1]);
                    }
                }
                const int n = w_out - ow;
                dw_finish_avx2(_mm256_add_ps(a[0], a[1]), act, y0 + ow, n);
                dw_finish_avx2(_mm256_add_ps(c[0], c[1]), act, y1 + ow, n);
            }
        } else {
            for (int ow = 0; ow < w_out; ow += 8) {
                __m256 a[2] = {vb, _mm256_setzero_ps()};
#pragma GCC unroll 5
                for (int r = 0; r < k; r++) {
#pragma GCC unroll 5
                    for (int kj = 0; kj < k; kj++)
                        a[r & 1] = _mm256_fmadd_ps(wv[r * k + kj], dw_taps_avx2(s, rows[r], ow, kj), a[r & 1]);
                }
                dw_finish_avx2(_mm256_add_ps(a[0], a[1]), act, y0 + ow, w_out - ow);
            }
        }
    }
}

/* One 8-output step of nr (1..3) 3x3 stride-1 output rows (row i at y + i * w_out) from staged rows
 * r[0..nr + 1] at column ow, n outputs stored. Each output keeps dw_channel_avx2_k's two
 * accumulators and FMA order: acc0 over kernel rows 0 and 2 from the bias, acc1 over row 1 from
 * zero, summed; each loaded vector feeds every output row it reaches. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void dw3s1_step_avx2(const act_kind act, const int nr,
                                                                               const float *const r[5],
                                                                               const __m256 w[9], __m256 vb, int ow,
                                                                               float *y, int w_out, int n)
{
    __m256 acc0[3], acc1[3];
#pragma GCC unroll 3
    for (int i = 0; i < nr; i++) {
        acc0[i] = vb;
        acc1[i] = _mm256_setzero_ps();
    }
#pragma GCC unroll 5
    for (int t = 0; t < nr + 2; t++)
#pragma GCC unroll 3
        for (int j = 0; j < 3; j++) {
            const __m256 v = _mm256_loadu_ps(r[t] + ow + j);
#pragma GCC unroll 3
            for (int i = 0; i < nr; i++) {
                const int kr = t - i;
                if (kr == 0 || kr == 2)
                    acc0[i] = _mm256_fmadd_ps(w[3 * kr + j], v, acc0[i]);
                else if (kr == 1)
                    acc1[i] = _mm256_fmadd_ps(w[3 + j], v, acc1[i]);
            }
        }
#pragma GCC unroll 3
    for (int i = 0; i < nr; i++)
        dw_finish_avx2(_mm256_add_ps(acc0[i], acc1[i]), act, y + (size_t)i * (size_t)w_out + ow, n);
}

static inline __attribute__((always_inline)) KERNELS_AVX2 void dw3s1_rows_avx2(const act_kind act, const int nr,
                                                                               const float *const r[5],
                                                                               const __m256 w[9], __m256 vb, float *y,
                                                                               int w_out)
{
    const int full = w_out / 8 * 8;
    for (int ow = 0; ow < full; ow += 8) dw3s1_step_avx2(act, nr, r, w, vb, ow, y, w_out, 8);
    if (full < w_out) dw3s1_step_avx2(act, nr, r, w, vb, full, y, w_out, w_out - full);
}

/* dw_channel_avx2_k for 3x3 stride 1 (the same staging and bits) 3 output rows at a time, the
 * activation a compile-time constant and the 9 weights, 6 accumulators and the loaded vector in
 * registers: the generic kernel kept its weights on the stack (its array is sized for 5x5) and tested
 * the activation and the step's width on every step (MobileNetV3-Large's 16 x 112 x 112 at 31
 * GFLOP/s). */
static inline __attribute__((always_inline)) KERNELS_AVX2 void dw3s1_channel_avx2(const act_kind act,
                                                                                  const conv2d_params *p, dw_stage *st,
                                                                                  const float *xc, const float *wc,
                                                                                  float b, float *yc)
{
    const int w_out = p->w_out;
    const float *rows[DW_STAGE_ROWS];
    __m256 w[9];
#pragma GCC unroll 9
    for (int t = 0; t < 9; t++) w[t] = _mm256_broadcast_ss(wc + t);
    const __m256 vb = _mm256_set1_ps(b);
    for (int i = 0; i < 5; i++) st->slot_row[i] = -1;
    for (int oh = 0; oh < p->h_out; oh += 3) {
        float *y = yc + (size_t)oh * (size_t)w_out;
        dw_copy copies[DW_STAGE_ROWS];
        const int n_copies = dw_stage_rows(5, p, st, xc, oh, rows, copies);
        for (int i = 0; i < n_copies; i++) dw_copy_avx2(copies[i].dst, copies[i].src, st->n_copy);
        const float *const r[5] = {rows[0], rows[1], rows[2], rows[3], rows[4]};
        switch (kernels_imin(p->h_out - oh, 3)) {
        case 3: dw3s1_rows_avx2(act, 3, r, w, vb, y, w_out); break;
        case 2: dw3s1_rows_avx2(act, 2, r, w, vb, y, w_out); break;
        default: dw3s1_rows_avx2(act, 1, r, w, vb, y, w_out); break;
        }
    }
}

static KERNELS_AVX2 void dw_channel_avx2(const conv2d_params *p, dw_stage *st, const float *xc, const float *wc,
                                         float b, float *yc)
{
    const int k = p->k_h, s = p->stride_h;
    if (k == 3 && s == 1) {
        switch (p->act) {
        case ACT_RELU: dw3s1_channel_avx2(ACT_RELU, p, st, xc, wc, b, yc); break;
        case ACT_RELU6: dw3s1_channel_avx2(ACT_RELU6, p, st, xc, wc, b, yc); break;
        case ACT_HSWISH: dw3s1_channel_avx2(ACT_HSWISH, p, st, xc, wc, b, yc); break;
        case ACT_HSIGMOID: dw3s1_channel_avx2(ACT_HSIGMOID, p, st, xc, wc, b, yc); break;
        case ACT_NONE: dw3s1_channel_avx2(ACT_NONE, p, st, xc, wc, b, yc); break;
        }
    } else if (k == 3 && s == 2) {
        switch (p->act) { /* act compile-time, as in dw_split3_avx2 */
        case ACT_RELU: dw_channel_avx2_k(3, 2, ACT_RELU, p, st, xc, wc, b, yc); break;
        case ACT_RELU6: dw_channel_avx2_k(3, 2, ACT_RELU6, p, st, xc, wc, b, yc); break;
        case ACT_HSWISH: dw_channel_avx2_k(3, 2, ACT_HSWISH, p, st, xc, wc, b, yc); break;
        case ACT_HSIGMOID: dw_channel_avx2_k(3, 2, ACT_HSIGMOID, p, st, xc, wc, b, yc); break;
        case ACT_NONE: dw_channel_avx2_k(3, 2, ACT_NONE, p, st, xc, wc, b, yc); break;
        }
    } else if (k == 5 && s == 1)
        dw_channel_avx2_k(5, 1, p->act, p, st, xc, wc, b, yc);
    else
        dw_channel_avx2_k(5, 2, p->act, p, st, xc, wc, b, yc);
}

/* dw_channel_avx2_k's stride-2 loop on rows split beforehand (kernels_dw_avx2_s2_split): row t at
 * x + t * row_stride, its odd columns half floats on. The same loads and FMAs in the same order. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void dw_split_avx2_k(const int k, const conv2d_params *p,
                                                                               const float *x, size_t row_stride,
                                                                               size_t half, const float *wc, float b,
                                                                               float *yc, int n_out)
{
    const int w_out = p->w_out, n_rows = k + 2;
    const act_kind act = p->act;
    __m256 wv[DW_FAST_K_MAX * DW_FAST_K_MAX];
    for (int t = 0; t < k * k; t++) wv[t] = _mm256_broadcast_ss(wc + t);
    const __m256 vb = _mm256_set1_ps(b);
    for (int oh = 0; oh < n_out; oh += 2) {
        float *y0 = yc + (size_t)oh * (size_t)w_out, *y1 = y0 + w_out;
        const float *rows = x + (size_t)(2 * oh) * row_stride;
        if (oh + 1 < n_out) {
            for (int ow = 0; ow < w_out; ow += 8) {
                __m256 a[2] = {vb, _mm256_setzero_ps()}, c[2] = {vb, _mm256_setzero_ps()};
#pragma GCC unroll 7
                for (int r = 0; r < n_rows; r++) {
#pragma GCC unroll 5
                    for (int kj = 0; kj < k; kj++) {
                        const __m256 v = _mm256_loadu_ps(rows + (size_t)r * row_stride + (size_t)(kj % 2) * half +
                                                         (size_t)(ow + kj / 2));
                        if (r < k) a[r & 1] = _mm256_fmadd_ps(wv[r * k + kj], v, a[r & 1]);
                        if (r >= 2) c[(r - 2) & 1] = _mm256_fmadd_ps(wv[(r - 2) * k + kj], v, c[(r - 2) & 1]);
                    }
                }
                const int n = w_out - ow;
                dw_finish_avx2(_mm256_add_ps(a[0], a[1]), act, y0 + ow, n);
                dw_finish_avx2(_mm256_add_ps(c[0], c[1]), act, y1 + ow, n);
            }
        } else {
            for (int ow = 0; ow < w_out; ow += 8) {
                __m256 a[2] = {vb, _mm256_setzero_ps()};
#pragma GCC unroll 5
                for (int r = 0; r < k; r++) {
#pragma GCC unroll 5
                    for (int kj = 0; kj < k; kj++)
                        a[r & 1] = _mm256_fmadd_ps(wv[r * k + kj],
                                                   _mm256_loadu_ps(rows + (size_t)r * row_stride +
                                                                   (size_t)(kj % 2) * half + (size_t)(ow + kj / 2)),
                                                   a[r & 1]);
                }
                dw_finish_avx2(_mm256_add_ps(a[0], a[1]), act, y0 + ow, w_out - ow);
            }
        }
    }
}

/* Output row oh (and oh + 1 when pair) of dw_split3_avx2 from split rows r0.. (rs floats apart): whole
 * 8-column steps stored plainly, a last partial one by avx2_store_n. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void dw_split3_rows_avx2(const act_kind act, const int pair,
                                                                                   const float *r0, size_t rs,
                                                                                   size_t half, const __m256 *w,
                                                                                   __m256 vb, float *y0, int w_out)
{
    const float *r1 = r0 + rs, *r2 = r1 + rs, *r3 = pair ? r2 + rs : NULL, *r4 = pair ? r3 + rs : NULL;
    float *y1 = pair ? y0 + w_out : NULL;
    int ow = 0;
    for (; ow + 8 <= w_out; ow += 8)
        dw_split3_pair_avx2(r0 + ow, r1 + ow, r2 + ow, pair ? r3 + ow : NULL, pair ? r4 + ow : NULL, half, w, vb, pair,
                            act, y0 + ow, pair ? y1 + ow : NULL, 8);
    if (ow < w_out)
        dw_split3_pair_avx2(r0 + ow, r1 + ow, r2 + ow, pair ? r3 + ow : NULL, pair ? r4 + ow : NULL, half, w, vb, pair,
                            act, y0 + ow, pair ? y1 + ow : NULL, w_out - ow);
}

/* The 3x3 split-row kernel, act compile-time: a switch on it and the tail tests of avx2_store_n
 * for every stored vector were a third of its time (perf, MobileNetV3-Large's 64 x 56 x 56). */
static inline __attribute__((always_inline)) KERNELS_AVX2 void dw_split3_act_avx2(const act_kind act,
                                                                                  const conv2d_params *p,
                                                                                  const float *x, size_t rs,
                                                                                  size_t half, const float *wc,
                                                                                  float b, float *yc, int n_out)
{
    const int w_out = p->w_out;
    __m256 w[9];
#pragma GCC unroll 9
    for (int t = 0; t < 9; t++) w[t] = _mm256_broadcast_ss(wc + t);
    const __m256 vb = _mm256_set1_ps(b);
    for (int oh = 0; oh < n_out; oh += 2) {
        const float *r0 = x + (size_t)(2 * oh) * rs;
        float *y0 = yc + (size_t)oh * (size_t)w_out;
        if (oh + 1 < n_out)
            dw_split3_rows_avx2(act, 1, r0, rs, half, w, vb, y0, w_out);
        else
            dw_split3_rows_avx2(act, 0, r0, rs, half, w, vb, y0, w_out);
    }
}

static KERNELS_AVX2 void dw_split3_avx2(const conv2d_params *p, const float *x, size_t rs, size_t half,
                                        const float *wc, float b, float *yc, int n_out)
{
    switch (p->act) {
    case ACT_RELU: dw_split3_act_avx2(ACT_RELU, p, x, rs, half, wc, b, yc, n_out); break;
    case ACT_RELU6: dw_split3_act_avx2(ACT_RELU6, p, x, rs, half, wc, b, yc, n_out); break;
    case ACT_HSWISH: dw_split3_act_avx2(ACT_HSWISH, p, x, rs, half, wc, b, yc, n_out); break;
    case ACT_HSIGMOID: dw_split3_act_avx2(ACT_HSIGMOID, p, x, rs, half, wc, b, yc, n_out); break;
    case ACT_NONE: dw_split3_act_avx2(ACT_NONE, p, x, rs, half, wc, b, yc, n_out); break;
    }
}

static KERNELS_AVX2 void dw_split_avx2(const conv2d_params *p, const float *x, size_t row_stride, size_t half,
                                       const float *wc, float b, float *yc, int n_out)
{
    if (p->k_h == 3)
        dw_split3_avx2(p, x, row_stride, half, wc, b, yc, n_out);
    else
        dw_split_avx2_k(5, p, x, row_stride, half, wc, b, yc, n_out);
}
#endif

/* ---- channel-blocked AVX2 kernel: 8 channels per vector ----
 * As kernels_dwcb.c does with 16 channels on AVX-512: 8 channels at a time are transposed (8 x 8
 * in registers) into a zero-bordered plane of vectors T[row][column][8] (one vector = the 8
 * channels of one padded input cell), so tap (i, j) of output (oh, ow) is one full-vector load of
 * T[oh * s + i][ow * s + j] whatever the stride or width, every lane used (the row kernel above
 * fills 7 of 8 lanes on 7-wide rows, stages rows per channel and shuffles for stride 2). Tiles of
 * 7 outputs of a row keep 7 independent FMA chains; the outputs are staged [cell][8] and
 * transposed back into the channels' planes with the activation. Taller maps run in bands of output
 * rows (the plane holds a band's input rows). Every output accumulates all k * k taps in the order
 * (i, j) from the bias, padding taps on zeros: the chain of kernels_dwcb.c (the same bits on both
 * ISAs), whatever the band. Outputs 7..28 wide: on 56-wide ones (56 -> 56, 112 -> 56) the row
 * kernel was as fast or faster (microbenchmark, 1 thread, warm caches). */

/* Padded input cells of the plane (32 KiB of floats: a 28x28 map with 5x5 "same" padding in one
 * band) and output cells staged before the transpose back. */
#define DWCB8_MAX_CELLS 1024
#define DWCB8_MAX_OUT 784
#define DWCB8_TILE_W 7
/* Widest outputs taken (see kernels_dw_cb_avx2_applies). */
#define DWCB8_MAX_W_OUT 28

static int dwcb8_cols(const conv2d_params *p)
{
    return kernels_imax((p->w_out - 1) * p->stride_w + p->k_w, p->pad_l + p->w_in);
}

/* Output rows per band: the band's input rows, padding included, fit the plane and its outputs
 * the staging. */
static int dwcb8_band_rows(const conv2d_params *p)
{
    const int by_in = (DWCB8_MAX_CELLS / dwcb8_cols(p) - p->k_h) / p->stride_h + 1;
    return kernels_imin(kernels_imin(by_in, DWCB8_MAX_OUT / p->w_out), p->h_out);
}

/* The fused pointwise + channel-blocked pair (below): GEMM tiles of PWCB8_POS positions x
 * PWCB8_VECS vectors of 8 channels; its planes' rows: the padded window every output reads and
 * every input cell (the whole map in one band). */
#define PWCB8_POS 6
#define PWCB8_VECS 2

static int pwcb8_rows(const conv2d_params *dw)
{
    return kernels_imax((dw->h_out - 1) * dw->stride_h + dw->k_h, dw->pad_t + dw->h_in);
}

/* Only widths, kernel and stride decide (never the rows or the top padding), so a band of rows
 * (dwconv2d_forward_rows) takes the kernel exactly when the whole map does: its bits. */
int kernels_dw_cb_avx2_applies(const conv2d_params *p)
{
    const int s = p->stride_h, k = p->k_h;
    return s == p->stride_w && (s == 1 || s == 2) && k == p->k_w && (k == 3 || k == 5) && p->w_out >= DWCB8_TILE_W &&
           p->w_out <= DWCB8_MAX_W_OUT && dwcb8_cols(p) * (k + s) <= DWCB8_MAX_CELLS;
}

/* Whole blocks of 8 channels, or whole output rows when those come more even (a block costs the
 * same with 1..8 channels: 116 channels are 15 blocks, 8 / 7 on 2 threads, their 14 rows 7 / 7).
 * Either part has the whole map's bits. */
kernels_part kernels_dw_cb_avx2_part(const conv2d_params *p, int ith, int nth)
{
    const int blocks = (p->c_out + 7) / 8;
    const int by_blocks = (blocks + nth - 1) / nth * p->h_out, by_rows = (p->h_out + nth - 1) / nth * blocks;
    if (by_rows < by_blocks)
        return kernels_part_split(KERNELS_PART_POSITIONS, p->h_out * p->w_out, p->w_out, ith, nth);
    return kernels_part_split(KERNELS_PART_CHANNELS, p->c_out, 8, ith, nth);
}

#if KERNELS_X86
/* Output row oh, columns [ow0, ow0 + 7) of the block's 8 channels into out[(oh * w_out + ow) * 8].
 * Each kernel row's k weight vectors stay in registers and each input vector of the row is loaded
 * once and fed to every output it reaches (7 accumulators + k weights + 1 input: within the 16
 * registers; a 2-row tile with the taps as memory operands spilled). An output's taps still come
 * in the order (i, j): its input columns are visited in increasing order. k, s: compile-time
 * kernel side and stride. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void dwcb8_tile(const int k, const int s, const float *t,
                                                                          int cols, const float *wt, __m256 bias,
                                                                          int oh, int ow0, int w_out, float *out)
{
    __m256 acc[DWCB8_TILE_W];
#pragma GCC unroll 7
    for (int q = 0; q < DWCB8_TILE_W; q++) acc[q] = bias;
#pragma GCC unroll 5
    for (int i = 0; i < k; i++) {
        const float *row = t + ((size_t)(oh * s + i) * (size_t)cols + (size_t)(ow0 * s)) * 8;
        __m256 wv[5];
#pragma GCC unroll 5
        for (int j = 0; j < k; j++) wv[j] = _mm256_load_ps(wt + (i * k + j) * 8);
#pragma GCC unroll 17
        for (int c = 0; c < (DWCB8_TILE_W - 1) * s + k; c++) {
            const __m256 xv = _mm256_load_ps(row + (size_t)c * 8);
#pragma GCC unroll 5
            for (int j = 0; j < k; j++) {
                const int d = c - j;
                if (d >= 0 && d % s == 0 && d / s < DWCB8_TILE_W) acc[d / s] = _mm256_fmadd_ps(wv[j], xv, acc[d / s]);
            }
        }
    }
#pragma GCC unroll 7
    for (int q = 0; q < DWCB8_TILE_W; q++)
        _mm256_store_ps(out + ((size_t)oh * (size_t)w_out + (size_t)(ow0 + q)) * 8, acc[q]);
}

/* Every output of the block in rows of 7-column tiles, the last tile of a row moved back onto its
 * last 7 columns (their values recomputed the same). */
static inline __attribute__((always_inline)) KERNELS_AVX2 void dwcb8_map_k(const int k, const int s, int rows,
                                                                           int w_out, const float *t, int cols,
                                                                           const float *wt, __m256 bias, float *out)
{
    for (int oh = 0; oh < rows; oh++)
        for (int ow = 0;; ow += DWCB8_TILE_W) {
            const int aw = kernels_imin(ow, w_out - DWCB8_TILE_W);
            dwcb8_tile(k, s, t, cols, wt, bias, oh, aw, w_out, out);
            if (aw + DWCB8_TILE_W >= w_out) break;
        }
}

typedef void (*dwcb8_map_fn)(int rows, int w_out, const float *t, int cols, const float *wt, __m256 bias, float *out);
#define DWCB8_MAP(name, k, s)                                                                                          \
    static KERNELS_AVX2 void name(int rows, int w_out, const float *t, int cols, const float *wt, __m256 bias,         \
                                  float *out)                                                                          \
    {                                                                                                                  \
        dwcb8_map_k(k, s, rows, w_out, t, cols, wt, bias, out);                                                        \
    }
DWCB8_MAP(dwcb8_map_k3s1, 3, 1)
DWCB8_MAP(dwcb8_map_k3s2, 3, 2)
DWCB8_MAP(dwcb8_map_k5s1, 5, 1)
DWCB8_MAP(dwcb8_map_k5s2, 5, 2)

/* wt[tap][c] = w[c0 + c][tap] for the kk taps of the block's nc channels (the others 0), 8 taps at a
 * time by the 8 x 8 transpose. */
static KERNELS_AVX2 void dwcb8_weights(const float *w, int c0, int nc, int kk, float *wt)
{
    for (int t0 = 0; t0 < kk; t0 += 8) {
        const int nt = kernels_imin(8, kk - t0);
        const __m256i m = kernels_avx2_mask(nt);
        __m256 v[8];
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++)
            v[c] = c >= nc   ? _mm256_setzero_ps()
                   : nt == 8 ? _mm256_loadu_ps(w + (size_t)(c0 + c) * (size_t)kk + (size_t)t0)
                             : _mm256_maskload_ps(w + (size_t)(c0 + c) * (size_t)kk + (size_t)t0, m);
        avx2_transpose8(v);
#pragma GCC unroll 8
        for (int q = 0; q < 8; q++)
            if (q < nt) _mm256_store_ps(wt + (t0 + q) * 8, v[q]);
    }
}

/* The block's n staged outputs (out[cell][8]), 8 cells at a time, back into the planes of its nc
 * channels (channel c at y + c * plane), with the activation; the last group of cells stored
 * partially. act: compile-time (one instance per activation, none switched per store). */
static inline __attribute__((always_inline)) KERNELS_AVX2 void dwcb8_store_act(const act_kind act, const float *out,
                                                                               int n, int nc, float *y, size_t plane)
{
    for (int n0 = 0; n0 < n; n0 += 8) {
        __m256 v[8];
#pragma GCC unroll 8
        for (int q = 0; q < 8; q++) v[q] = _mm256_load_ps(out + (size_t)(n0 + q) * 8);
        avx2_transpose8(v);
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) /* constant indices keep v in registers */
            if (c < nc) avx2_store_n(y + (size_t)c * plane + (size_t)n0, avx2_act(v[c], act), n - n0);
    }
}

static KERNELS_AVX2 void dwcb8_store(act_kind act, const float *out, int n, int nc, float *y, size_t plane)
{
    switch (act) {
    case ACT_NONE: dwcb8_store_act(ACT_NONE, out, n, nc, y, plane); break;
    case ACT_RELU: dwcb8_store_act(ACT_RELU, out, n, nc, y, plane); break;
    case ACT_RELU6: dwcb8_store_act(ACT_RELU6, out, n, nc, y, plane); break;
    case ACT_HSWISH: dwcb8_store_act(ACT_HSWISH, out, n, nc, y, plane); break;
    case ACT_HSIGMOID: dwcb8_store_act(ACT_HSIGMOID, out, n, nc, y, plane); break;
    }
}

/* Blocks of 8 channels, each in bands of output rows: plane row 0 of a band is input row
 * r0 * s - pad_t; its rows inside the input are transposed in (rows shared by two bands twice),
 * the others cleared (the padding columns are never written: zero from the start). */
static KERNELS_AVX2 void dwcb8_forward(const conv2d_params *p, const float *x, size_t x_plane, const float *w,
                                       const float *bias, float *y, size_t y_plane)
{
    const int k = p->k_h, s = p->stride_h, cols = dwcb8_cols(p), kk = k * k, w_in = p->w_in, w_out = p->w_out;
    const int band = dwcb8_band_rows(p), band_in = (band - 1) * s + k;
    _Alignas(32) float t[DWCB8_MAX_CELLS * 8];
    /* staged outputs, rounded up to whole groups of 8 cells for the transpose back */
    _Alignas(32) float out[(DWCB8_MAX_OUT + 7) * 8];
    _Alignas(32) float wt[25 * 8];
    int off[DWCB8_MAX_CELLS]; /* cell m from a band's first input row: its vector in t, from that row */
    const dwcb8_map_fn map =
        k == 3 ? (s == 1 ? dwcb8_map_k3s1 : dwcb8_map_k3s2) : (s == 1 ? dwcb8_map_k5s1 : dwcb8_map_k5s2);
    /* staged outputs past a band's are transposed into lanes never stored: cleared once, defined */
    memset(t, 0, (size_t)band_in * (size_t)cols * 8 * sizeof *t);
    memset(out, 0, (size_t)(band * w_out + 7) / 8 * 8 * 8 * sizeof *out);
    for (int m = 0; m < band_in * w_in; m++) off[m] = ((m / w_in) * cols + m % w_in + p->pad_l) * 8;
    for (int c0 = 0; c0 < p->c_in; c0 += 8) {
        const int nc = kernels_imin(8, p->c_in - c0);
        const float *xb = x + (size_t)c0 * x_plane;
        dwcb8_weights(w, c0, nc, kk, wt);
        const __m256 b = bias ? _mm256_maskload_ps(bias + c0, kernels_avx2_mask(nc)) : _mm256_setzero_ps();
        for (int r0 = 0; r0 < p->h_out; r0 += band) {
            const int nr = kernels_imin(band, p->h_out - r0), top = r0 * s - p->pad_t, n_rows = (nr - 1) * s + k;
            const int lo = kernels_imax(top, 0) - top, hi = kernels_imax(kernels_imin(top + n_rows, p->h_in) - top, lo);
            for (int r = 0; r < n_rows; r++)
                if (r < lo || r >= hi)
                    memset(t + ((size_t)r * (size_t)cols + (size_t)p->pad_l) * 8, 0, (size_t)w_in * 8 * sizeof *t);
            /* the band's input cells, 8 at a time: 8 channels' runs -> 8 cells' channel vectors */
            const float *xr = xb + (size_t)(top + lo) * (size_t)w_in;
            float *tr = t + (size_t)lo * (size_t)cols * 8;
            const int n_in = (hi - lo) * w_in;
            for (int m0 = 0; m0 < n_in; m0 += 8) {
                const int nn = kernels_imin(8, n_in - m0);
                const __m256i m = kernels_avx2_mask(nn); /* all lanes when nn == 8 */
                __m256 v[8];
#pragma GCC unroll 8
                for (int c = 0; c < 8; c++)
                    v[c] = c >= nc   ? _mm256_setzero_ps()
                           : nn == 8 ? _mm256_loadu_ps(xr + (size_t)c * x_plane + (size_t)m0)
                                     : _mm256_maskload_ps(xr + (size_t)c * x_plane + (size_t)m0, m);
                avx2_transpose8(v);
#pragma GCC unroll 8
                for (int q = 0; q < 8; q++) /* constant indices keep v in registers */
                    if (q < nn) _mm256_store_ps(tr + off[m0 + q], v[q]);
            }
            map(nr, w_out, t, cols, wt, b, out);
            dwcb8_store(p->act, out, nr * w_out, nc, y + (size_t)c0 * y_plane + (size_t)r0 * (size_t)w_out, y_plane);
        }
    }
}

/* ---- pointwise expansion fused in (CONV_PATH_PW_DWCB on AVX2) ----
 * As kernels_dwcb.c does on AVX-512: the GEMM computes 8-channel vectors of output positions
 * (positions broadcast from the input rows, weights k-major: kernels_pw_dwcb_pack) and stores them
 * straight into the blocks' planes of vectors, so neither the expanded map in channel planes nor
 * the transpose into the planes exists; only the depthwise output is transposed back. Every value
 * has the unfused bits: the GEMM kernel's chain (bias, FMAs over k in order, the activation) and
 * dwcb8_map's. Tiles of PWCB8_POS positions x PWCB8_VECS vectors (12 accumulators, 2 weight
 * vectors and a broadcast in the 16 registers). */

/* One step k of the tile: the weights of its nv vectors (the last masked to its channels unless
 * full) times each of the np positions' inputs at xr, into acc. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void pwcb8_step(const int np, const int nv, const int full,
                                                                          const float *xr, const float *wr,
                                                                          __m256i cm,
                                                                          __m256 acc[PWCB8_POS][PWCB8_VECS])
{
    __m256 wv[PWCB8_VECS];
#pragma GCC unroll 2
    for (int v = 0; v < nv; v++)
        wv[v] = v < nv - 1 || full ? _mm256_loadu_ps(wr + 8 * v) : _mm256_maskload_ps(wr + 8 * v, cm);
#pragma GCC unroll 6
    for (int r = 0; r < np; r++) {
        const __m256 xv = _mm256_broadcast_ss(xr + r);
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) acc[r][v] = _mm256_fmadd_ps(xv, wv[v], acc[r][v]);
    }
}

/* Positions [p0, p0 + np) of the expansion for vectors [0, nv) of channels (the last masked to
 * its channels: cm, unless full), each stored at its cell's vector in the vector's plane. The k
 * loop ends on a pointer compare: no counter, and no test of full (a compile-time constant). */
static inline __attribute__((always_inline)) KERNELS_AVX2 void
pwcb8_tile(const int np, const int nv, const int full, int k_in, const float *x, size_t n, const float *wt,
           size_t ldw, const float *bias, __m256i cm, act_kind act, int p0, const int *off, float *t, size_t plane)
{
    __m256 acc[PWCB8_POS][PWCB8_VECS];
#pragma GCC unroll 2
    for (int v = 0; v < nv; v++) {
        const __m256 b = !bias                    ? _mm256_setzero_ps()
                         : v < nv - 1 || full ? _mm256_loadu_ps(bias + 8 * v)
                                              : _mm256_maskload_ps(bias + 8 * v, cm);
#pragma GCC unroll 6
        for (int r = 0; r < np; r++) acc[r][v] = b;
    }
    const float *xr = x + p0, *wr = wt;
    for (const float *const w_end = wt + (size_t)k_in * ldw; wr != w_end; xr += n, wr += ldw)
        pwcb8_step(np, nv, full, xr, wr, cm, acc);
#pragma GCC unroll 6
    for (int r = 0; r < np; r++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++)
            _mm256_store_ps(t + (size_t)v * plane + (size_t)off[p0 + r], avx2_act(acc[r][v], act));
}

/* Every position of the expansion for nv vectors of channels (tiles of PWCB8_POS positions, the
 * last moved back onto the last positions, whose values are recomputed the same). */
static inline __attribute__((always_inline)) KERNELS_AVX2 void
pwcb8_group_k(const int nv, const int full, const conv2d_params *pw, const float *x, const float *wt,
              const float *bias, __m256i cm, const int *off, float *t, size_t plane)
{
    const int n = pw->h_out * pw->w_out;
    for (int p0 = 0;; p0 += PWCB8_POS) {
        const int at = kernels_imin(p0, n - PWCB8_POS);
        pwcb8_tile(PWCB8_POS, nv, full, pw->c_in, x, (size_t)n, wt, (size_t)pw->c_out, bias, cm, pw->act, at, off, t,
                   plane);
        if (at + PWCB8_POS >= n) break;
    }
}

/* One instance per vector count and whether the last vector is whole. */
static KERNELS_AVX2 void pwcb8_group(int nv, const conv2d_params *pw, const float *x, const float *wt,
                                     const float *bias, __m256i cm, int full, const int *off, float *t, size_t plane)
{
    if (nv == 1 && full)
        pwcb8_group_k(1, 1, pw, x, wt, bias, cm, off, t, plane);
    else if (nv == 1)
        pwcb8_group_k(1, 0, pw, x, wt, bias, cm, off, t, plane);
    else if (full)
        pwcb8_group_k(2, 1, pw, x, wt, bias, cm, off, t, plane);
    else
        pwcb8_group_k(2, 0, pw, x, wt, bias, cm, off, t, plane);
}

static KERNELS_AVX2 void pwcb8_forward(const conv2d_params *pw, const float *wt, const float *pw_bias,
                                       const conv2d_params *dw, const float *dw_w, const float *dw_bias, const float *x,
                                       float *y, float *scratch, const kernels_part *part)
{
    const int k = dw->k_h, s = dw->stride_h, cols = dwcb8_cols(dw), kk = k * k;
    const int n_in = dw->h_in * dw->w_in, n_out = dw->h_out * dw->w_out;
    const size_t plane = (size_t)pwcb8_rows(dw) * (size_t)cols * 8, hw_out = (size_t)n_out;
    float *t = (float *)(((uintptr_t)scratch + 31) & ~(uintptr_t)31);
    float *out = t + PWCB8_VECS * plane;
    _Alignas(32) float wtd[25 * 8];
    int off[DWCB8_MAX_CELLS];
    const dwcb8_map_fn map =
        k == 3 ? (s == 1 ? dwcb8_map_k3s1 : dwcb8_map_k3s2) : (s == 1 ? dwcb8_map_k5s1 : dwcb8_map_k5s2);
    /* borders: the GEMM writes input cells only; staged outputs past n_out: transposed, never stored */
    memset(t, 0, PWCB8_VECS * plane * sizeof *t);
    memset(out, 0, (size_t)(n_out + 7) / 8 * 8 * 8 * sizeof *out);
    for (int m = 0; m < n_in; m++) off[m] = ((m / dw->w_in + dw->pad_t) * cols + m % dw->w_in + dw->pad_l) * 8;
    for (int cg = part->lo; cg < part->hi; cg += 8 * PWCB8_VECS) {
        const int nc = kernels_imin(8 * PWCB8_VECS, part->hi - cg), nv = (nc + 7) / 8, last = nc - 8 * (nv - 1);
        pwcb8_group(nv, pw, x, wt + cg, pw_bias ? pw_bias + cg : NULL, kernels_avx2_mask(last), last == 8, off, t,
                    plane);
        for (int v = 0; v < nv; v++) {
            const int c0 = cg + 8 * v, nb = kernels_imin(8, part->hi - c0);
            dwcb8_weights(dw_w, c0, nb, kk, wtd);
            const __m256 b = dw_bias ? _mm256_maskload_ps(dw_bias + c0, kernels_avx2_mask(nb)) : _mm256_setzero_ps();
            map(dw->h_out, dw->w_out, t + (size_t)v * plane, cols, wtd, b, out);
            dwcb8_store(dw->act, out, n_out, nb, y + (size_t)c0 * hw_out, hw_out);
        }
    }
}
#endif

/* The generic and AVX2 variants, channel c's input at x + c * x_plane and its output at
 * y + c * y_plane (planes of larger maps: bands of rows). */
static void dw_forward_planes(const conv2d_params *p, const float *x, size_t x_plane, const float *w,
                              const float *bias, float *y, size_t y_plane, cpu_isa isa)
{
#if KERNELS_X86
    if (isa == CPU_ISA_AVX2 && kernels_dw_cb_avx2_applies(p)) {
        dwcb8_forward(p, x, x_plane, w, bias, y, y_plane);
        return;
    }
#endif
    const size_t kk = (size_t)p->k_h * (size_t)p->k_w;
    const int split = isa >= CPU_ISA_AVX2 && p->stride_h == 2, width = dw_stage_width(p, split);
    if (width == 0) {
        for (int c = 0; c < p->c_in; c++)
            for (int oh = 0; oh < p->h_out; oh++)
                dw_row_taps(p, x + (size_t)c * x_plane, w + (size_t)c * kk, bias ? bias[c] : 0.0f,
                            oh, y + (size_t)c * y_plane + (size_t)oh * (size_t)p->w_out);
        return;
    }
    float buf[(DW_STAGE_ROWS + 1) * DW_ROW_MAX];
    dw_stage st;
    /* AVX2: the rows one step reads (k + s; 3x3 stride 1: 3 output rows, 5) */
    const int n_slots = isa < CPU_ISA_AVX2 ? p->k_h : p->k_h == 3 && p->stride_h == 1 ? 5 : p->k_h + p->stride_h;
    dw_stage_init(&st, buf, n_slots, width, split, p);
    for (int c = 0; c < p->c_in; c++) {
        const float *xc = x + (size_t)c * x_plane, *wc = w + (size_t)c * kk;
        const float b = bias ? bias[c] : 0.0f;
        float *yc = y + (size_t)c * y_plane;
#if KERNELS_X86
        if (isa >= CPU_ISA_AVX2) {
            dw_channel_avx2(p, &st, xc, wc, b, yc);
            continue;
        }
#endif
        dw_channel_c(p, &st, xc, wc, b, yc);
    }
}

void dwconv2d_forward_isa(const conv2d_params *p, const float *x, const float *w, const float *bias,
                          float *y, cpu_isa isa)
{
    assert(p->groups == p->c_in && p->groups == p->c_out && p->c_in > 0);
    assert(p->h_out > 0 && p->w_out > 0 && p->k_h > 0 && p->k_w > 0);
    assert(p->stride_h > 0 && p->stride_w > 0 && p->pad_t >= 0 && p->pad_l >= 0);
    assert(isa == CPU_ISA_GENERIC || isa == CPU_ISA_AVX2 || isa == CPU_ISA_AVX512);
    if (isa >= CPU_ISA_AVX512 && kernels_dw_avx512_applies(p)) {
        kernels_dw_avx512(p, x, w, bias, y);
        return;
    }
    dw_forward_planes(p, x, (size_t)p->h_in * (size_t)p->w_in, w, bias, y, (size_t)p->h_out * (size_t)p->w_out, isa);
}

void dwconv2d_forward(const conv2d_params *p, const float *x, const float *w, const float *bias,
                      float *y)
{
    dwconv2d_forward_isa(p, x, w, bias, y, cpu_isa_best());
}

/* Channels are independent: channels [c0, c1) are the depthwise convolution of c1 - c0 channels. */
void dwconv2d_forward_part(const conv2d_params *p, const float *x, const float *w,
                           const float *bias, float *y, int c0, int c1)
{
    assert(0 <= c0 && c0 <= c1 && c1 <= p->c_out);
    if (c0 == c1) return;
    conv2d_params q = *p;
    q.c_in = q.c_out = q.groups = c1 - c0;
    const size_t kk = (size_t)p->k_h * (size_t)p->k_w;
    dwconv2d_forward(&q, x + (size_t)c0 * (size_t)p->h_in * (size_t)p->w_in, w + (size_t)c0 * kk,
                     bias ? bias + c0 : NULL, y + (size_t)c0 * (size_t)p->h_out * (size_t)p->w_out);
}

/* Output rows [r0, r1) of p as a convolution of their own: the input rows they read from row *a on,
 * the padding rows of p they reach kept as padding. */
static conv2d_params dw_band(const conv2d_params *p, int r0, int r1, int *a)
{
    const int i0 = r0 * p->stride_h - p->pad_t, i1 = (r1 - 1) * p->stride_h - p->pad_t + p->k_h;
    const int lo = kernels_imax(i0, 0), hi = kernels_imin(i1, p->h_in);
    assert(lo < hi);
    conv2d_params q = *p;
    q.h_in = hi - lo;
    q.pad_t = lo - i0;
    q.pad_b = i1 - hi;
    q.h_out = r1 - r0;
    *a = lo;
    return q;
}

void dwconv2d_forward_rows(const conv2d_params *p, const float *x, const float *w,
                           const float *bias, float *y, int r0, int r1)
{
    assert(0 <= r0 && r0 <= r1 && r1 <= p->h_out);
    if (r0 == r1) return;
    int a;
    conv2d_params q = dw_band(p, r0, r1, &a);
    const size_t kk = (size_t)p->k_h * (size_t)p->k_w, hw_in = (size_t)p->h_in * (size_t)p->w_in,
                 hw_out = (size_t)p->h_out * (size_t)p->w_out;
    if (cpu_isa_best() == CPU_ISA_AVX2) { /* every channel in one call: the channel-blocked kernel takes 8 at once */
        dw_forward_planes(&q, x + (size_t)a * (size_t)p->w_in, hw_in, w, bias, y + (size_t)r0 * (size_t)p->w_out,
                          hw_out, CPU_ISA_AVX2);
        return;
    }
    q.c_in = q.c_out = q.groups = 1;
    for (int c = 0; c < p->c_out; c++)
        dwconv2d_forward(&q, x + (size_t)c * hw_in + (size_t)a * (size_t)p->w_in, w + (size_t)c * kk,
                         bias ? bias + c : NULL, y + (size_t)c * hw_out + (size_t)r0 * (size_t)p->w_out);
}

void kernels_dw_avx2_planes(const conv2d_params *p, const float *x, const float *w, const float *bias, float *y,
                            size_t y_plane)
{
    dw_forward_planes(p, x, (size_t)p->h_in * (size_t)p->w_in, w, bias, y, y_plane, CPU_ISA_AVX2);
}

/* What dw_forward_planes runs dw_channel_avx2 on with split rows for: stride 2, k 3 / 5, not the
 * channel-blocked widths, rows that fit the staging. */
int kernels_dw_avx2_split_applies(const conv2d_params *p)
{
    return p->stride_h == 2 && p->k_h <= DW_FAST_K_MAX && !kernels_dw_cb_avx2_applies(p) && dw_stage_width(p, 1) > 0;
}

void kernels_dw_avx2_s2_split(const conv2d_params *p, const float *x, size_t row_stride, size_t half, const float *wc,
                              float b, float *y, int n_out)
{
    assert(kernels_dw_avx2_split_applies(p));
#if KERNELS_X86
    dw_split_avx2(p, x, row_stride, half, wc, b, y, n_out);
#else
    (void)x, (void)row_stride, (void)half, (void)wc, (void)b, (void)y, (void)n_out;
#endif
}

void kernels_dw_avx2_rows(const conv2d_params *p, const float *x, const float *w, const float *bias, float *y,
                          size_t y_plane, int r0, int r1)
{
    assert(0 <= r0 && r0 < r1 && r1 <= p->h_out);
    int a;
    const conv2d_params q = dw_band(p, r0, r1, &a);
    dw_forward_planes(&q, x + (size_t)a * (size_t)p->w_in, (size_t)p->h_in * (size_t)p->w_in, w, bias, y, y_plane,
                      CPU_ISA_AVX2);
}

/* The AVX2 fused pointwise + channel-blocked depthwise pair: the depthwise convs dwcb8_forward
 * takes in one band (the fused planes hold the whole map) on inputs at least 14 wide. Measured,
 * pair fused vs GEMM + dwcb8_forward (1 thread, min of 400 alternating calls, warm caches): 14x14
 * and 14 -> 7 (MobileNetV3's) -4..-20 %, 28 -> 14 -16..-20 %, 28-wide outputs (taken here, not on
 * AVX-512) 40 -> 120 5x5 -9 %, 24 -> 88 3x3 -15 %, 58 -> 58 3x3 -5..-9 %; 7x7 inputs left out
 * (160 -> 960 5x5 +6 %, 96 -> 576 -3 %). */
int kernels_pw_dwcb8_fusable(const conv2d_params *pw, const conv2d_params *dw)
{
    return cpu_isa_best() == CPU_ISA_AVX2 && kernels_conv_pointwise(pw) && pw->groups == 1 && !pw->train &&
           !dw->train && kernels_conv_depthwise(dw) && pw->c_out == dw->c_in && pw->h_out == dw->h_in &&
           pw->w_out == dw->w_in && pw->h_out * pw->w_out >= PWCB8_POS && kernels_dw_cb_avx2_applies(dw) &&
           dwcb8_band_rows(dw) == dw->h_out && dw->w_in >= 14 && pwcb8_rows(dw) * dwcb8_cols(dw) <= DWCB8_MAX_CELLS;
}

/* Planes of PWCB8_VECS blocks, the staged outputs (whole groups of 8 cells), 8 floats of alignment slack. */
size_t kernels_pw_dwcb8_scratch_floats(const conv2d_params *dw)
{
    return (size_t)PWCB8_VECS * (size_t)pwcb8_rows(dw) * (size_t)dwcb8_cols(dw) * 8 +
           (size_t)(dw->h_out * dw->w_out + 7) / 8 * 8 * 8 + 8;
}

/* Whole blocks of 8 channels. */
kernels_part kernels_pw_dwcb8_part(const conv2d_params *dw, int ith, int nth)
{
    return kernels_part_split(KERNELS_PART_CHANNELS, dw->c_out, 8, ith, nth);
}

void kernels_pw_dwcb8_forward_part(const conv2d_params *pw, const float *wt, const float *pw_bias,
                                   const conv2d_params *dw, const float *dw_w, const float *dw_bias, const float *x,
                                   float *y, float *scratch, const kernels_part *part)
{
    assert(kernels_pw_dwcb8_fusable(pw, dw) && part->axis == KERNELS_PART_CHANNELS);
    assert(0 <= part->lo && part->lo <= part->hi && part->hi <= dw->c_out && part->lo % 8 == 0);
#if KERNELS_X86
    pwcb8_forward(pw, wt, pw_bias, dw, dw_w, dw_bias, x, y, scratch, part);
#else
    (void)pw, (void)wt, (void)pw_bias, (void)dw_w, (void)dw_bias, (void)x, (void)y, (void)scratch;
#endif
}

/* ---- backward (training) ----
 * Data: the gradient w.r.t. the input is the stride-1 depthwise convolution of dy, zero-stuffed
 * between its cells for stride > 1, with each kernel rotated by 180 degrees and padding
 * k - 1 - pad: dwconv2d_forward_isa computes it (its vector kernels included).
 * Weights: the input channel is copied, zero-padded, into stride_h * stride_w phase images
 * (phase (a, b) holds the padded cells (r * s_h + a, q * s_w + b)), each as wide as dy's rows plus
 * the kernel's reach; dy is copied to that row width with zeros after its w_out columns. Tap
 * (i, j) then reads phase (i % s_h, j % s_w) at the flat offset (i / s_h) * width + j / s_w, so its
 * gradient is one contiguous dot product of the staged dy with the phase image from there. */

/* The staging geometry of one channel for the weight gradient. */
typedef struct {
    int rows, width; /* phase image rows (plus one zero row for the flat overrun) and row width */
    size_t phase;    /* floats per phase image */
} dw_bwd_stage;

static dw_bwd_stage dw_bwd_geometry(const conv2d_params *p)
{
    dw_bwd_stage g;
    g.width = p->w_out + (p->k_w - 1) / p->stride_w;
    g.rows = p->h_out + (p->k_h - 1) / p->stride_h + 1;
    g.phase = (size_t)g.rows * (size_t)g.width;
    return g;
}

/* The data gradient's convolution q of dy (see above) and the rows / columns of the zero-stuffed
 * dy it starts from (crop_t / crop_l: padding beyond k - 1 skips the stuffed map's first cells,
 * which no input cell reads). Whether dy must be staged (stride > 1 or a crop). */
static int dw_bwd_data_conv(const conv2d_params *p, conv2d_params *q, int *crop_t, int *crop_l)
{
    *crop_t = kernels_imax(p->pad_t - (p->k_h - 1), 0);
    *crop_l = kernels_imax(p->pad_l - (p->k_w - 1), 0);
    *q = *p;
    q->h_in = (p->h_out - 1) * p->stride_h + 1 - *crop_t;
    q->w_in = (p->w_out - 1) * p->stride_w + 1 - *crop_l;
    q->h_out = p->h_in;
    q->w_out = p->w_in;
    q->stride_h = q->stride_w = 1;
    q->pad_t = p->k_h - 1 - p->pad_t + *crop_t;
    q->pad_l = p->k_w - 1 - p->pad_l + *crop_l;
    q->pad_b = kernels_imax(q->h_out + p->k_h - 1 - q->pad_t - q->h_in, 0);
    q->pad_r = kernels_imax(q->w_out + p->k_w - 1 - q->pad_l - q->w_in, 0);
    q->act = ACT_NONE;
    return p->stride_h > 1 || p->stride_w > 1 || *crop_t > 0 || *crop_l > 0;
}

size_t dwconv2d_backward_scratch_floats(const conv2d_params *p)
{
    const dw_bwd_stage g = dw_bwd_geometry(p);
    conv2d_params q;
    int ct, cl;
    size_t data = (size_t)p->c_in * (size_t)p->k_h * (size_t)p->k_w;
    if (dw_bwd_data_conv(p, &q, &ct, &cl) && q.h_in > 0 && q.w_in > 0)
        data += (size_t)p->c_in * (size_t)q.h_in * (size_t)q.w_in;
    const size_t weights =
        (size_t)p->stride_h * (size_t)p->stride_w * g.phase + (size_t)p->h_out * (size_t)g.width;
    return data > weights ? data : weights;
}

void dwconv2d_backward_data_isa(const conv2d_params *p, const float *dy, const float *w, float *dx,
                                float *scratch, cpu_isa isa)
{
    conv2d_params q;
    int ct, cl;
    const int staged = dw_bwd_data_conv(p, &q, &ct, &cl);
    if (q.h_in <= 0 || q.w_in <= 0) { /* every tap reads padding only */
        memset(dx, 0, (size_t)p->c_in * (size_t)p->h_in * (size_t)p->w_in * sizeof *dx);
        return;
    }
    const int kk = p->k_h * p->k_w;
    float *wrot = scratch, *stuffed = scratch + (size_t)p->c_in * (size_t)kk;
    for (int c = 0; c < p->c_in; c++)
        for (int t = 0; t < kk; t++) wrot[(size_t)c * kk + t] = w[(size_t)c * kk + (kk - 1 - t)];
    const float *src = dy;
    if (staged) {
        const size_t plane = (size_t)q.h_in * (size_t)q.w_in;
        const size_t hw_out = (size_t)p->h_out * (size_t)p->w_out;
        memset(stuffed, 0, (size_t)p->c_in * plane * sizeof *stuffed);
        /* stuffed (r, col) = dy[(r + ct) / s_h][(col + cl) / s_w] where both divide */
        const int oh0 = (ct + p->stride_h - 1) / p->stride_h, ow0 = (cl + p->stride_w - 1) / p->stride_w;
        for (int c = 0; c < p->c_in; c++)
            for (int oh = oh0; oh < p->h_out; oh++) {
                const float *row = dy + (size_t)c * hw_out + (size_t)oh * (size_t)p->w_out;
                float *dst = stuffed + (size_t)c * plane + (size_t)(oh * p->stride_h - ct) * (size_t)q.w_in;
                for (int ow = ow0; ow < p->w_out; ow++) dst[ow * p->stride_w - cl] = row[ow];
            }
        src = stuffed;
    }
    dwconv2d_forward_isa(&q, src, wrot, NULL, dx, isa);
}

void dwconv2d_backward_data(const conv2d_params *p, const float *dy, const float *w, float *dx,
                            float *scratch)
{
    dwconv2d_backward_data_isa(p, dy, w, dx, scratch, cpu_isa_best());
}

/* Stages channel xc's phase images and dy's rows (see above) into scratch. */
static void dw_bwd_stage_channel(const conv2d_params *p, const dw_bwd_stage *g, const float *xc,
                                 const float *dyc, float *scratch)
{
    const int sh = p->stride_h, sw = p->stride_w;
    for (int a = 0; a < sh; a++)
        for (int b = 0; b < sw; b++) {
            float *ph = scratch + (size_t)(a * sw + b) * g->phase;
            for (int r = 0; r < g->rows; r++) {
                float *dst = ph + (size_t)r * (size_t)g->width;
                const int ih = r * sh + a - p->pad_t;
                if (ih < 0 || ih >= p->h_in) {
                    memset(dst, 0, (size_t)g->width * sizeof *dst);
                    continue;
                }
                const float *xrow = xc + (size_t)ih * (size_t)p->w_in;
                int lo, hi; /* columns q with 0 <= q * sw + b - pad_l < w_in */
                kernels_tap_range(b - p->pad_l, sw, p->w_in, g->width, &lo, &hi);
                if (lo > 0) memset(dst, 0, (size_t)lo * sizeof *dst);
                const float *src = xrow + b - p->pad_l;
                if (sw == 1) /* a plain copy; stride 2 a constant stride gcc vectorizes */
                    memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof *dst);
                else if (sw == 2)
                    for (int q = lo; q < hi; q++) dst[q] = src[2 * q];
                else
                    for (int q = lo; q < hi; q++) dst[q] = src[q * sw];
                if (hi < g->width) memset(dst + hi, 0, (size_t)(g->width - hi) * sizeof *dst);
            }
        }
    float *dys = scratch + (size_t)sh * (size_t)sw * g->phase;
    for (int oh = 0; oh < p->h_out; oh++) {
        float *dst = dys + (size_t)oh * (size_t)g->width;
        memcpy(dst, dyc + (size_t)oh * (size_t)p->w_out, (size_t)p->w_out * sizeof *dst);
        if (g->width > p->w_out) memset(dst + p->w_out, 0, (size_t)(g->width - p->w_out) * sizeof *dst);
    }
}

#if KERNELS_X86
/* kernels_dot_floats on AVX-512F: 4 x 16 partial sums, tail masked, reduced in a fixed order. */
static KERNELS_AVX512 double dw_dot_avx512(const float *a, const float *b, size_t n)
{
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
        acc2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), acc2);
        acc3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), acc3);
    }
    for (; i < n; i += 16) {
        const __mmask16 m = kernels_avx512_mask((int)(n - i < 16 ? n - i : 16));
        acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc0);
    }
    acc0 = _mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3));
    float lanes[16];
    _mm512_storeu_ps(lanes, acc0);
    double sum = 0.0;
    for (int l = 0; l < 16; l++) sum += lanes[l];
    return sum;
}
#endif

void dwconv2d_backward_weights_isa(const conv2d_params *p, const float *x, const float *dy,
                                   float *dw, int c0, int c1, float *scratch, cpu_isa isa)
{
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    const size_t hw_out = (size_t)p->h_out * (size_t)p->w_out;
    const int kk = p->k_h * p->k_w;
    const dw_bwd_stage g = dw_bwd_geometry(p);
    const float *dys = scratch + (size_t)p->stride_h * (size_t)p->stride_w * g.phase;
    const size_t n = (size_t)p->h_out * (size_t)g.width;
    (void)isa; /* only read on x86 */
    for (int c = c0; c < c1; c++) {
        dw_bwd_stage_channel(p, &g, x + (size_t)c * hw_in, dy + (size_t)c * hw_out, scratch);
        float *dwc = dw + (size_t)c * (size_t)kk;
        for (int i = 0; i < p->k_h; i++)
            for (int j = 0; j < p->k_w; j++) {
                const int phase = (i % p->stride_h) * p->stride_w + j % p->stride_w;
                const float *ph = scratch + (size_t)phase * g.phase +
                                  (size_t)(i / p->stride_h) * (size_t)g.width +
                                  (size_t)(j / p->stride_w);
#if KERNELS_X86
                if (isa >= CPU_ISA_AVX512) {
                    dwc[i * p->k_w + j] += (float)dw_dot_avx512(dys, ph, n);
                    continue;
                }
#endif
                dwc[i * p->k_w + j] += (float)kernels_dot_floats(dys, ph, n);
            }
    }
}

void dwconv2d_backward_weights(const conv2d_params *p, const float *x, const float *dy, float *dw,
                               int c0, int c1, float *scratch)
{
    dwconv2d_backward_weights_isa(p, x, dy, dw, c0, c1, scratch, cpu_isa_best());
}
