/* Linear layers (see kernels.h): the AVX-512 GEMV and OpenBLAS's sgemv for the others. */
#include "kernels.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <stdint.h>

#include "kernels_internal.h"

#if KERNELS_X86
#include "kernels_avx2.h"
#include "kernels_avx512.h"
#endif

/* ---- GEMV (batch-1 linear layers) ----
 * Memory-bound: the weights stream once per call. Four rows at a time share each load of x, with
 * four weight streams the hardware prefetcher follows. The four rows are one from each quarter of
 * the matrix, so each stream runs on through its quarter instead of ending after one row
 * (consecutive rows: 3-4% slower on AlexNet's classifier). Each row's 16-float steps are a pair of
 * __m256 accumulators (lanes 0-7 and 8-15), each lane one FMA chain over i, the masked tail read as
 * zeros, and avx2_reduce_add16 adds the 16 lanes in the order gcc's _mm512_reduce_add_ps does:
 * the batched kernels (kernels_gemv_batch_avx512/avx2) give the same bits per input. Eight
 * independent FMA chains per block of four rows, no software prefetch. The AVX2 kernel also runs
 * on AVX-512 CPUs: on AMD Zen 5 an AVX-512 form of it (one __m512 chain per row, a prefetch 256
 * floats ahead per row) took 1.4-2.2x its time, and even unrolled without the prefetch 1.05-1.35x
 * from memory where the rows are not 64-byte aligned (equal where they are); on Zen 3 the
 * prefetch made the layer 5-15% slower from memory. */
#define GEMV_ROWS 4

#if KERNELS_X86
/* gemv_rows on AVX2: y[r * ld] = w_r . x, w_r = w + r * ld * n_in, r < rows <= GEMV_ROWS. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void gemv_rows_avx2(const int rows, int n_in,
                                                                         const float *x, const float *w,
                                                                         size_t ld, float *y)
{
    const size_t w_ld = ld * (size_t)n_in;
    __m256 lo[GEMV_ROWS], hi[GEMV_ROWS];
#pragma GCC unroll 4
    for (int r = 0; r < rows; r++) lo[r] = hi[r] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n_in; i += 16) {
        const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
#pragma GCC unroll 4
        for (int r = 0; r < rows; r++) {
            const float *wr = w + (size_t)r * w_ld + i;
            lo[r] = _mm256_fmadd_ps(_mm256_loadu_ps(wr), x0, lo[r]);
            hi[r] = _mm256_fmadd_ps(_mm256_loadu_ps(wr + 8), x1, hi[r]);
        }
    }
    if (i < n_in) {
        const __m256i m0 = kernels_avx2_mask(n_in - i), m1 = kernels_avx2_mask(n_in - i - 8);
        const __m256 x0 = _mm256_maskload_ps(x + i, m0), x1 = _mm256_maskload_ps(x + i + 8, m1);
#pragma GCC unroll 4
        for (int r = 0; r < rows; r++) {
            const float *wr = w + (size_t)r * w_ld + i;
            lo[r] = _mm256_fmadd_ps(_mm256_maskload_ps(wr, m0), x0, lo[r]);
            hi[r] = _mm256_fmadd_ps(_mm256_maskload_ps(wr + 8, m1), x1, hi[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < rows; r++) y[(size_t)r * ld] = avx2_reduce_add16(lo[r], hi[r]);
}

static KERNELS_AVX2 void gemv_rows4_avx2(int n_in, const float *x, const float *w, size_t ld, float *y)
{
    gemv_rows_avx2(GEMV_ROWS, n_in, x, w, ld, y);
}

static KERNELS_AVX2 void gemv_rows1_avx2(int n_in, const float *x, const float *w, float *y)
{
    gemv_rows_avx2(1, n_in, x, w, 1, y);
}
#endif

void kernels_gemv_avx2(int n_in, int n_out, const float *x, const float *w, float *y)
{
    assert(cpu_isa_best() >= CPU_ISA_AVX2 && n_in > 0 && n_out > 0);
#if KERNELS_X86
    /* rows o, o + q, o + 2q, o + 3q together; the n_out % 4 last alone */
    const int q = n_out / GEMV_ROWS;
    for (int o = 0; o < q; o++) gemv_rows4_avx2(n_in, x, w + (size_t)o * (size_t)n_in, (size_t)q, y + o);
    for (int o = GEMV_ROWS * q; o < n_out; o++) gemv_rows1_avx2(n_in, x, w + (size_t)o * (size_t)n_in, y + o);
#else
    (void)x, (void)w, (void)y;
#endif
}

/* ---- batched GEMV (several inputs through one linear layer) ----
 * Each (row, input) pair accumulates exactly as gemv_rows_avx2 does for that row and input alone (the
 * same 16-lane FMA chain over i, the same masked tail, the same reduction), so every output is
 * bit-identical to the batch-1 GEMV. A block of GEMV_ROWS rows meets up to GEMV_BATCH_GROUP inputs
 * in chunks of GEMV_BATCH_KC columns: the chunk of the rows and of the inputs stays in L1 while
 * tiles of GEMV_BATCH_TILE inputs run through it with their accumulators in registers (kept in
 * acc between chunks: stores and loads of the exact vectors, no rounding). The weights stream
 * from memory once per group of inputs. */
#define GEMV_BATCH_TILE 4
#define GEMV_BATCH_GROUP 16
#define GEMV_BATCH_KC 256 /* floats: 4 rows + 16 inputs = 20 KiB of L1 */
#define GEMV_PREFETCH 256 /* floats ahead of a chunk's first tile's load, per row */

#if KERNELS_X86
/* Rows w_0 .. w_{rows-1} against inputs x_0 .. x_{nb-1} (x_b at x + b * n_in) over columns
 * [i0, i1) (multiples of 16), accumulators in acc[r * GEMV_BATCH_GROUP + b]. prefetch: the first
 * tile of a chunk, which reads the weights from memory. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void gemv_batch_chunk(
    const int rows, const int nb, int n_in, int i0, int i1, const float *x, const float *w, __m512 *acc,
    const int prefetch)
{
    __m512 a[GEMV_ROWS][GEMV_BATCH_TILE];
#pragma GCC unroll 4
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++) a[r][b] = acc[r * GEMV_BATCH_GROUP + b];
    for (int i = i0; i < i1; i += 16) {
        __m512 xv[GEMV_BATCH_TILE];
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++) xv[b] = _mm512_loadu_ps(x + (size_t)b * (size_t)n_in + i);
#pragma GCC unroll 4
        for (int r = 0; r < rows; r++) {
            const float *wr = w + (size_t)r * (size_t)n_in + i;
            if (prefetch) _mm_prefetch((const char *)(wr + GEMV_PREFETCH), _MM_HINT_T0);
            const __m512 wv = _mm512_loadu_ps(wr);
#pragma GCC unroll 4
            for (int b = 0; b < nb; b++) a[r][b] = _mm512_fmadd_ps(wv, xv[b], a[r][b]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++) acc[r * GEMV_BATCH_GROUP + b] = a[r][b];
}

/* The masked tail columns [i, n_in) (i < n_in) and the reduction into y (output (r, b) at
 * y + b * y_stride + r); without a tail (i == n_in) only the reduction. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void gemv_batch_finish(
    const int rows, const int nb, int n_in, int i, const float *x, const float *w, __m512 *acc, float *y,
    size_t y_stride)
{
    if (i < n_in) {
        const __mmask16 m = (__mmask16)((1u << (n_in - i)) - 1u);
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++) {
            const __m512 xv = _mm512_maskz_loadu_ps(m, x + (size_t)b * (size_t)n_in + i);
#pragma GCC unroll 4
            for (int r = 0; r < rows; r++)
                acc[r * GEMV_BATCH_GROUP + b] = _mm512_fmadd_ps(
                    _mm512_maskz_loadu_ps(m, w + (size_t)r * (size_t)n_in + i), xv, acc[r * GEMV_BATCH_GROUP + b]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++) y[(size_t)b * y_stride + (size_t)r] = _mm512_reduce_add_ps(acc[r * GEMV_BATCH_GROUP + b]);
}

/* One chunk for a tile of nb (1..GEMV_BATCH_TILE, not constant) inputs: dispatch to a constant count. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void gemv_batch_chunk_n(
    const int rows, int nb, int n_in, int i0, int i1, const float *x, const float *w, __m512 *acc, int prefetch)
{
    switch (nb) {
    case 4: gemv_batch_chunk(rows, 4, n_in, i0, i1, x, w, acc, prefetch); break;
    case 3: gemv_batch_chunk(rows, 3, n_in, i0, i1, x, w, acc, prefetch); break;
    case 2: gemv_batch_chunk(rows, 2, n_in, i0, i1, x, w, acc, prefetch); break;
    default: gemv_batch_chunk(rows, 1, n_in, i0, i1, x, w, acc, prefetch); break;
    }
}

/* A block of rows (GEMV_ROWS or 1) for a group of nb <= GEMV_BATCH_GROUP inputs. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void gemv_batch_rows(
    const int rows, int n_in, int nb, const float *x, const float *w, float *y, size_t y_stride)
{
    __m512 acc[GEMV_ROWS * GEMV_BATCH_GROUP];
#pragma GCC unroll 4
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++) acc[r * GEMV_BATCH_GROUP + b] = _mm512_setzero_ps();
    const int n_main = n_in & ~15;
    for (int i0 = 0; i0 < n_main; i0 += GEMV_BATCH_KC) {
        const int i1 = i0 + GEMV_BATCH_KC < n_main ? i0 + GEMV_BATCH_KC : n_main;
#pragma GCC unroll 4
        for (int b = 0; b < nb; b += GEMV_BATCH_TILE)
            gemv_batch_chunk_n(rows, nb - b < GEMV_BATCH_TILE ? nb - b : GEMV_BATCH_TILE, n_in, i0, i1,
                               x + (size_t)b * (size_t)n_in, w, acc + b, b == 0);
    }
    gemv_batch_finish(rows, nb, n_in, n_main, x, w, acc, y, y_stride);
}

static KERNELS_AVX512 void gemv_batch_rows4(int n_in, int nb, const float *x, const float *w, float *y,
                                            size_t y_stride)
{
    gemv_batch_rows(GEMV_ROWS, n_in, nb, x, w, y, y_stride);
}

static KERNELS_AVX512 void gemv_batch_rows1(int n_in, int nb, const float *x, const float *w, float *y,
                                            size_t y_stride)
{
    gemv_batch_rows(1, n_in, nb, x, w, y, y_stride);
}
#endif

void kernels_gemv_batch_avx512(int n_in, int n_out, int n_batch, const float *x, const float *w, float *y,
                               size_t y_stride)
{
    assert(cpu_isa_best() >= CPU_ISA_AVX512 && n_in > 0 && n_out > 0 && n_batch > 0);
#if KERNELS_X86
    for (int b = 0; b < n_batch; b += GEMV_BATCH_GROUP) {
        const int nb = n_batch - b < GEMV_BATCH_GROUP ? n_batch - b : GEMV_BATCH_GROUP;
        const float *xb = x + (size_t)b * (size_t)n_in;
        float *yb = y + (size_t)b * y_stride;
        int o = 0;
        for (; o + GEMV_ROWS <= n_out; o += GEMV_ROWS)
            gemv_batch_rows4(n_in, nb, xb, w + (size_t)o * (size_t)n_in, yb + o, y_stride);
        for (; o < n_out; o++) gemv_batch_rows1(n_in, nb, xb, w + (size_t)o * (size_t)n_in, yb + o, y_stride);
    }
#else
    (void)x, (void)w, (void)y, (void)y_stride;
#endif
}

/* ---- AVX2 batched GEMV ----
 * kernels_gemv_batch_avx512's blocking with the AVX2 GEMV's arithmetic (each output the same
 * chains and reduction as kernels_gemv_avx2 of its input: the same bits). The lanes 0-7 and 8-15
 * of each 16-float step are separate passes over a chunk, so that a tile of 4 rows x
 * GEMV_BATCH_TILE_AVX2 inputs keeps its 12 accumulators and 3 inputs in the 16 registers. */
#define GEMV_BATCH_TILE_AVX2 3

#if KERNELS_X86
/* Lanes 8h..8h+7 of the 16-float steps over columns [i0, i1) (multiples of 16) for rows w_0 ..
 * w_{rows-1} and inputs x_0 .. x_{nb-1}: accumulators acc[(r * GEMV_BATCH_GROUP + b) * 2 + h]. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void gemv_batch_chunk_avx2(
    const int rows, const int nb, const int h, int n_in, int i0, int i1, const float *x, const float *w,
    __m256 *acc, const int prefetch)
{
    __m256 a[GEMV_ROWS][GEMV_BATCH_TILE_AVX2];
#pragma GCC unroll 4
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++) a[r][b] = acc[(r * GEMV_BATCH_GROUP + b) * 2 + h];
    for (int i = i0 + 8 * h; i < i1; i += 16) {
        __m256 xv[GEMV_BATCH_TILE_AVX2];
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++) xv[b] = _mm256_loadu_ps(x + (size_t)b * (size_t)n_in + i);
#pragma GCC unroll 4
        for (int r = 0; r < rows; r++) {
            const float *wr = w + (size_t)r * (size_t)n_in + i;
            if (prefetch) _mm_prefetch((const char *)(wr + GEMV_PREFETCH), _MM_HINT_T0);
            const __m256 wv = _mm256_loadu_ps(wr);
#pragma GCC unroll 4
            for (int b = 0; b < nb; b++) a[r][b] = _mm256_fmadd_ps(wv, xv[b], a[r][b]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++) acc[(r * GEMV_BATCH_GROUP + b) * 2 + h] = a[r][b];
}

/* Both passes of a chunk for a tile of nb (1..GEMV_BATCH_TILE_AVX2, not constant) inputs. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void gemv_batch_chunk_n_avx2(
    const int rows, int nb, int n_in, int i0, int i1, const float *x, const float *w, __m256 *acc, int prefetch)
{
#pragma GCC unroll 4
    for (int h = 0; h < 2; h++) switch (nb) {
        case 3: gemv_batch_chunk_avx2(rows, 3, h, n_in, i0, i1, x, w, acc, prefetch && !h); break;
        case 2: gemv_batch_chunk_avx2(rows, 2, h, n_in, i0, i1, x, w, acc, prefetch && !h); break;
        default: gemv_batch_chunk_avx2(rows, 1, h, n_in, i0, i1, x, w, acc, prefetch && !h); break;
        }
}

/* A block of rows (GEMV_ROWS or 1) for a group of nb <= GEMV_BATCH_GROUP inputs: the chunks, the
 * masked tail as gemv_rows_avx2 reads it, the reduction (output (r, b) at y + b * y_stride + r). */
static inline __attribute__((always_inline)) KERNELS_AVX2 void gemv_batch_rows_avx2(
    const int rows, int n_in, int nb, const float *x, const float *w, float *y, size_t y_stride)
{
    __m256 acc[GEMV_ROWS * GEMV_BATCH_GROUP * 2];
#pragma GCC unroll 4
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++)
            acc[(r * GEMV_BATCH_GROUP + b) * 2] = acc[(r * GEMV_BATCH_GROUP + b) * 2 + 1] = _mm256_setzero_ps();
    const int n_main = n_in & ~15;
    for (int i0 = 0; i0 < n_main; i0 += GEMV_BATCH_KC) {
        const int i1 = i0 + GEMV_BATCH_KC < n_main ? i0 + GEMV_BATCH_KC : n_main;
#pragma GCC unroll 4
        for (int b = 0; b < nb; b += GEMV_BATCH_TILE_AVX2)
            gemv_batch_chunk_n_avx2(rows, nb - b < GEMV_BATCH_TILE_AVX2 ? nb - b : GEMV_BATCH_TILE_AVX2, n_in, i0,
                                    i1, x + (size_t)b * (size_t)n_in, w, acc + 2 * b, b == 0);
    }
    if (n_main < n_in) {
        const __m256i m0 = kernels_avx2_mask(n_in - n_main), m1 = kernels_avx2_mask(n_in - n_main - 8);
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++) {
            const float *xb = x + (size_t)b * (size_t)n_in + n_main;
            const __m256 x0 = _mm256_maskload_ps(xb, m0), x1 = _mm256_maskload_ps(xb + 8, m1);
#pragma GCC unroll 4
            for (int r = 0; r < rows; r++) {
                const float *wr = w + (size_t)r * (size_t)n_in + n_main;
                __m256 *a = acc + (r * GEMV_BATCH_GROUP + b) * 2;
                a[0] = _mm256_fmadd_ps(_mm256_maskload_ps(wr, m0), x0, a[0]);
                a[1] = _mm256_fmadd_ps(_mm256_maskload_ps(wr + 8, m1), x1, a[1]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++)
            y[(size_t)b * y_stride + (size_t)r] =
                avx2_reduce_add16(acc[(r * GEMV_BATCH_GROUP + b) * 2], acc[(r * GEMV_BATCH_GROUP + b) * 2 + 1]);
}

static KERNELS_AVX2 void gemv_batch_rows4_avx2(int n_in, int nb, const float *x, const float *w, float *y,
                                           size_t y_stride)
{
    gemv_batch_rows_avx2(GEMV_ROWS, n_in, nb, x, w, y, y_stride);
}

static KERNELS_AVX2 void gemv_batch_rows1_avx2(int n_in, int nb, const float *x, const float *w, float *y,
                                           size_t y_stride)
{
    gemv_batch_rows_avx2(1, n_in, nb, x, w, y, y_stride);
}
#endif

void kernels_gemv_batch_avx2(int n_in, int n_out, int n_batch, const float *x, const float *w, float *y,
                             size_t y_stride)
{
    assert(cpu_isa_best() >= CPU_ISA_AVX2 && n_in > 0 && n_out > 0 && n_batch > 0);
#if KERNELS_X86
    for (int b = 0; b < n_batch; b += GEMV_BATCH_GROUP) {
        const int nb = n_batch - b < GEMV_BATCH_GROUP ? n_batch - b : GEMV_BATCH_GROUP;
        const float *xb = x + (size_t)b * (size_t)n_in;
        float *yb = y + (size_t)b * y_stride;
        int o = 0;
        for (; o + GEMV_ROWS <= n_out; o += GEMV_ROWS)
            gemv_batch_rows4_avx2(n_in, nb, xb, w + (size_t)o * (size_t)n_in, yb + o, y_stride);
        for (; o < n_out; o++) gemv_batch_rows1_avx2(n_in, nb, xb, w + (size_t)o * (size_t)n_in, yb + o, y_stride);
    }
#else
    (void)x, (void)w, (void)y, (void)y_stride;
#endif
}

void linear_forward_isa(int n_in, int n_out, const float *x, const float *w, const float *bias,
                        act_kind act, float *y, cpu_isa isa)
{
    assert(n_in > 0 && n_out > 0);
    if (isa >= CPU_ISA_AVX2)
        kernels_gemv_avx2(n_in, n_out, x, w, y);
    else
        cblas_sgemv(CblasRowMajor, CblasNoTrans, n_out, n_in, 1.0f, w, n_in, x, 1, 0.0f, y, 1);
    if (bias)
        add_forward((size_t)n_out, y, bias, act, y);
    else
        act_forward(act, y, (size_t)n_out);
}

void linear_forward(int n_in, int n_out, const float *x, const float *w, const float *bias,
                    act_kind act, float *y)
{
    linear_forward_isa(n_in, n_out, x, w, bias, act, y, cpu_isa_best());
}

/* The AVX-512 and AVX2 GEMVs compute rows in groups of 4: parts of whole groups leave the fewest
 * rows alone (the bits do not depend on the split). OpenBLAS's sgemv (portable variant) runs
 * whole. */
#define LINEAR_PART_ALIGN 4

kernels_part linear_part(int n_out, int ith, int nth)
{
    if (cpu_isa_best() < CPU_ISA_AVX2) return kernels_part_split(KERNELS_PART_CHANNELS, n_out, n_out, ith, nth);
    return kernels_part_split(KERNELS_PART_CHANNELS, n_out, LINEAR_PART_ALIGN, ith, nth);
}

void linear_forward_part(int n_in, int n_out, const float *x, const float *w, const float *bias,
                         act_kind act, float *y, const kernels_part *part)
{
    assert(part->axis == KERNELS_PART_CHANNELS && 0 <= part->lo && part->lo <= part->hi &&
           part->hi <= n_out);
    const int o0 = part->lo, n = part->hi - part->lo;
    if (n == 0) return;
    if (n == n_out) {
        linear_forward(n_in, n_out, x, w, bias, act, y);
        return;
    }
    assert(cpu_isa_best() >= CPU_ISA_AVX2);
    linear_forward(n_in, n, x, w + (size_t)o0 * (size_t)n_in, bias ? bias + o0 : NULL, act, y + o0);
}


/* Rows [o0, o0 + n) of every input's output (y: n_batch rows of n_out floats). */
static void linear_batch_rows(int n_in, int n_out, int n_batch, const float *x, const float *w, const float *bias,
                              act_kind act, float *y, int o0, int n, cpu_isa isa)
{
    if (isa >= CPU_ISA_AVX2) {
        if (isa >= CPU_ISA_AVX512)
            kernels_gemv_batch_avx512(n_in, n, n_batch, x, w + (size_t)o0 * (size_t)n_in, y + o0, (size_t)n_out);
        else
            kernels_gemv_batch_avx2(n_in, n, n_batch, x, w + (size_t)o0 * (size_t)n_in, y + o0, (size_t)n_out);
        for (int b = 0; b < n_batch; b++) {
            float *yb = y + (size_t)b * (size_t)n_out + o0;
            if (bias)
                add_forward((size_t)n, yb, bias + o0, act, yb);
            else
                act_forward(act, yb, (size_t)n);
        }
    } else {
        /* OpenBLAS's sgemv per input: the batch-1 path itself (whole rows only, see linear_part) */
        for (int b = 0; b < n_batch; b++)
            linear_forward_isa(n_in, n_out, x + (size_t)b * (size_t)n_in, w, bias, act, y + (size_t)b * (size_t)n_out,
                               isa);
    }
}

void linear_batch_forward_isa(int n_in, int n_out, int n_batch, const float *x, const float *w, const float *bias,
                              act_kind act, float *y, cpu_isa isa)
{
    assert(n_in > 0 && n_out > 0 && n_batch > 0);
    linear_batch_rows(n_in, n_out, n_batch, x, w, bias, act, y, 0, n_out, isa);
}

void linear_batch_forward(int n_in, int n_out, int n_batch, const float *x, const float *w, const float *bias,
                          act_kind act, float *y)
{
    linear_batch_forward_isa(n_in, n_out, n_batch, x, w, bias, act, y, cpu_isa_best());
}

void linear_batch_forward_part(int n_in, int n_out, int n_batch, const float *x, const float *w, const float *bias,
                               act_kind act, float *y, const kernels_part *part)
{
    assert(part->axis == KERNELS_PART_CHANNELS && 0 <= part->lo && part->lo <= part->hi &&
           part->hi <= n_out && n_batch > 0);
    const int n = part->hi - part->lo;
    if (n == 0) return;
    if (n == n_out) {
        linear_batch_forward(n_in, n_out, n_batch, x, w, bias, act, y);
        return;
    }
    assert(cpu_isa_best() >= CPU_ISA_AVX2);
    linear_batch_rows(n_in, n_out, n_batch, x, w, bias, act, y, part->lo, n, cpu_isa_best());
}

/* ---- backward (training): weight gradient ----
 * dw[o][i] = sum over k < n of dy[k][o] * x[k][i], each output one FMA chain over k in order from
 * zero (the same bits in every variant and whatever the blocking), written once: no separate
 * zeroing pass over dw (as sgemm with beta 0 makes), which is memory-bound on AlexNet's 9216 x 4096
 * layer. AVX-512: panels of LIN_DW_PANEL columns (their n rows of x stay in L2), in each blocks of
 * LIN_DW_ROWS rows x LIN_DW_COLS columns in registers, stored with streaming stores where aligned
 * (dw is read back only by the optimizer, after the whole backward pass: no use caching it). */
#define LIN_DW_ROWS 6
#define LIN_DW_VECS 4
#define LIN_DW_COLS (16 * LIN_DW_VECS)
#define LIN_DW_PANEL 1024

#if KERNELS_X86
/* One block: rows (1..LIN_DW_ROWS, a constant after inlining) x up to LIN_DW_COLS columns. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void
linear_dw_block(const int rows, int n, const float *dy, size_t ld_dy, const float *x, size_t ld_x, float *dw,
                size_t ld_dw, const __mmask16 *mask)
{
    __m512 acc[LIN_DW_ROWS][LIN_DW_VECS];
#pragma GCC unroll 6
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 4
        for (int v = 0; v < LIN_DW_VECS; v++) acc[r][v] = _mm512_setzero_ps();
    for (int k = 0; k < n; k++) {
        const float *xr = x + (size_t)k * ld_x, *ar = dy + (size_t)k * ld_dy;
        __m512 b[LIN_DW_VECS];
#pragma GCC unroll 4
        for (int v = 0; v < LIN_DW_VECS; v++) b[v] = _mm512_maskz_loadu_ps(mask[v], xr + 16 * v);
#pragma GCC unroll 6
        for (int r = 0; r < rows; r++) {
            const __m512 a = _mm512_set1_ps(ar[r]);
#pragma GCC unroll 4
            for (int v = 0; v < LIN_DW_VECS; v++) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 4
        for (int v = 0; v < LIN_DW_VECS; v++) {
            float *d = dw + (size_t)r * ld_dw + 16 * v;
            if (mask[v] == 0xFFFF && ((uintptr_t)d & 63) == 0) _mm512_stream_ps(d, acc[r][v]);
            else _mm512_mask_storeu_ps(d, mask[v], acc[r][v]);
        }
}

static KERNELS_AVX512 void linear_dw_avx512(int n, int m, int n_in, const float *dy, size_t ld_dy, const float *x,
                                            size_t ld_x, float *dw, size_t ld_dw)
{
    for (int p0 = 0; p0 < n_in; p0 += LIN_DW_PANEL) {
        const int p1 = kernels_imin(p0 + LIN_DW_PANEL, n_in);
        for (int o0 = 0; o0 < m; o0 += LIN_DW_ROWS) {
            const int rows = kernels_imin(LIN_DW_ROWS, m - o0);
            for (int i0 = p0; i0 < p1; i0 += LIN_DW_COLS) {
                __mmask16 mask[LIN_DW_VECS];
                for (int v = 0; v < LIN_DW_VECS; v++) mask[v] = kernels_avx512_mask(kernels_imax(p1 - i0 - 16 * v, 0));
                const float *xb = x + i0, *ab = dy + o0;
                float *db = dw + (size_t)o0 * ld_dw + i0;
                switch (rows) {
                case 6: linear_dw_block(6, n, ab, ld_dy, xb, ld_x, db, ld_dw, mask); break;
                case 5: linear_dw_block(5, n, ab, ld_dy, xb, ld_x, db, ld_dw, mask); break;
                case 4: linear_dw_block(4, n, ab, ld_dy, xb, ld_x, db, ld_dw, mask); break;
                case 3: linear_dw_block(3, n, ab, ld_dy, xb, ld_x, db, ld_dw, mask); break;
                case 2: linear_dw_block(2, n, ab, ld_dy, xb, ld_x, db, ld_dw, mask); break;
                default: linear_dw_block(1, n, ab, ld_dy, xb, ld_x, db, ld_dw, mask); break;
                }
            }
        }
    }
    _mm_sfence(); /* the streaming stores visible before anyone reads dw */
}
#endif

/* AVX2: the same panels, blocks of LIN_DW_ROWS rows x LIN_DW_COLS_AVX2 columns (12 accumulators
 * in the 16 registers), the same chains (so the same bits). */
#define LIN_DW_VECS_AVX2 2
#define LIN_DW_COLS_AVX2 (8 * LIN_DW_VECS_AVX2)

#if KERNELS_X86
static inline __attribute__((always_inline)) KERNELS_AVX2 void
linear_dw_block_avx2(const int rows, int n, const float *dy, size_t ld_dy, const float *x, size_t ld_x, float *dw,
                     size_t ld_dw, const __m256i *mask, int n_cols, int full)
{
    __m256 acc[LIN_DW_ROWS][LIN_DW_VECS_AVX2];
#pragma GCC unroll 6
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 2
        for (int v = 0; v < LIN_DW_VECS_AVX2; v++) acc[r][v] = _mm256_setzero_ps();
    for (int k = 0; k < n; k++) {
        const float *xr = x + (size_t)k * ld_x, *ar = dy + (size_t)k * ld_dy;
        __m256 b[LIN_DW_VECS_AVX2];
#pragma GCC unroll 2
        for (int v = 0; v < LIN_DW_VECS_AVX2; v++)
            b[v] = full ? _mm256_loadu_ps(xr + 8 * v) : _mm256_maskload_ps(xr + 8 * v, mask[v]);
#pragma GCC unroll 6
        for (int r = 0; r < rows; r++) {
            const __m256 a = _mm256_broadcast_ss(ar + r);
#pragma GCC unroll 2
            for (int v = 0; v < LIN_DW_VECS_AVX2; v++) acc[r][v] = _mm256_fmadd_ps(a, b[v], acc[r][v]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 2
        for (int v = 0; v < LIN_DW_VECS_AVX2; v++) {
            float *d = dw + (size_t)r * ld_dw + 8 * v;
            if (full && ((uintptr_t)d & 31) == 0) _mm256_stream_ps(d, acc[r][v]);
            else if (n_cols > 8 * v) avx2_store_n(d, acc[r][v], n_cols - 8 * v);
        }
}

/* One block of rows (1..LIN_DW_ROWS, not constant): dispatch to a constant count. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void
linear_dw_rows_avx2(int rows, int n, const float *dy, size_t ld_dy, const float *x, size_t ld_x, float *dw,
                    size_t ld_dw, const __m256i *mask, int n_cols, const int full)
{
    switch (rows) {
    case 6: linear_dw_block_avx2(6, n, dy, ld_dy, x, ld_x, dw, ld_dw, mask, n_cols, full); break;
    case 5: linear_dw_block_avx2(5, n, dy, ld_dy, x, ld_x, dw, ld_dw, mask, n_cols, full); break;
    case 4: linear_dw_block_avx2(4, n, dy, ld_dy, x, ld_x, dw, ld_dw, mask, n_cols, full); break;
    case 3: linear_dw_block_avx2(3, n, dy, ld_dy, x, ld_x, dw, ld_dw, mask, n_cols, full); break;
    case 2: linear_dw_block_avx2(2, n, dy, ld_dy, x, ld_x, dw, ld_dw, mask, n_cols, full); break;
    default: linear_dw_block_avx2(1, n, dy, ld_dy, x, ld_x, dw, ld_dw, mask, n_cols, full); break;
    }
}

static KERNELS_AVX2 void linear_dw_avx2(int n, int m, int n_in, const float *dy, size_t ld_dy, const float *x,
                                        size_t ld_x, float *dw, size_t ld_dw)
{
    for (int p0 = 0; p0 < n_in; p0 += LIN_DW_PANEL) {
        const int p1 = kernels_imin(p0 + LIN_DW_PANEL, n_in);
        for (int o0 = 0; o0 < m; o0 += LIN_DW_ROWS) {
            const int rows = kernels_imin(LIN_DW_ROWS, m - o0);
            for (int i0 = p0; i0 < p1; i0 += LIN_DW_COLS_AVX2) {
                __m256i mask[LIN_DW_VECS_AVX2];
                for (int v = 0; v < LIN_DW_VECS_AVX2; v++) mask[v] = kernels_avx2_mask(p1 - i0 - 8 * v);
                const float *xb = x + i0, *ab = dy + o0;
                float *db = dw + (size_t)o0 * ld_dw + i0;
                const int n_cols = kernels_imin(LIN_DW_COLS_AVX2, p1 - i0);
                if (n_cols == LIN_DW_COLS_AVX2) linear_dw_rows_avx2(rows, n, ab, ld_dy, xb, ld_x, db, ld_dw, mask, n_cols, 1);
                else linear_dw_rows_avx2(rows, n, ab, ld_dy, xb, ld_x, db, ld_dw, mask, n_cols, 0);
            }
        }
    }
    _mm_sfence(); /* the streaming stores visible before anyone reads dw */
}
#endif

void linear_backward_weights_isa(int n, int m, int n_in, const float *dy, size_t ld_dy, const float *x, size_t ld_x,
                                 float *dw, size_t ld_dw, cpu_isa isa)
{
    assert(n > 0 && m >= 0 && n_in > 0);
#if KERNELS_X86
    if (isa >= CPU_ISA_AVX512) {
        linear_dw_avx512(n, m, n_in, dy, ld_dy, x, ld_x, dw, ld_dw);
        return;
    }
    if (isa == CPU_ISA_AVX2) {
        linear_dw_avx2(n, m, n_in, dy, ld_dy, x, ld_x, dw, ld_dw);
        return;
    }
#endif
    (void)isa;
    for (int o = 0; o < m; o++)
        for (int i = 0; i < n_in; i++) {
            float acc = 0.0f;
            for (int k = 0; k < n; k++) acc = fmaf(dy[(size_t)k * ld_dy + o], x[(size_t)k * ld_x + i], acc);
            dw[(size_t)o * ld_dw + i] = acc;
        }
}

void linear_backward_weights(int n, int m, int n_in, const float *dy, size_t ld_dy, const float *x, size_t ld_x,
                             float *dw, size_t ld_dw)
{
    linear_backward_weights_isa(n, m, n_in, dy, ld_dy, x, ld_x, dw, ld_dw, cpu_isa_best());
}
