/* Linear layers (see kernels.h): the AVX-512 GEMV and OpenBLAS's sgemv for the others. */
#include "kernels.h"

#include <assert.h>
#include <cblas.h>

#include "kernels_internal.h"

#if KERNELS_X86
#include "kernels_avx512.h"
#endif

/* ---- GEMV (batch-1 linear layers) ----
 * Memory-bound: the weights stream once per call. Four rows at a time share each load of x,
 * with four weight streams the hardware prefetcher follows and a software prefetch a few cache
 * lines ahead per row (measured ~20% over OpenBLAS's sgemv on AlexNet's 9216 x 4096). */
#define GEMV_ROWS 4
#define GEMV_PREFETCH 256 /* floats ahead of the current load, per row */

#if KERNELS_X86
/* Sum over i < n_in of w_r[i] * x[i] for rows w_0 .. w_{rows-1} (rows <= GEMV_ROWS). */
static inline __attribute__((always_inline)) KERNELS_AVX512 void gemv_rows(const int rows, int n_in,
                                                                        const float *x,
                                                                        const float *w,
                                                                        float *y)
{
    __m512 acc[GEMV_ROWS];
    for (int r = 0; r < rows; r++) acc[r] = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= n_in; i += 16) {
        const __m512 xv = _mm512_loadu_ps(x + i);
        for (int r = 0; r < rows; r++) {
            const float *wr = w + (size_t)r * (size_t)n_in + i;
            _mm_prefetch((const char *)(wr + GEMV_PREFETCH), _MM_HINT_T0);
            acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(wr), xv, acc[r]);
        }
    }
    if (i < n_in) {
        const __mmask16 m = (__mmask16)((1u << (n_in - i)) - 1u);
        const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
        for (int r = 0; r < rows; r++)
            acc[r] = _mm512_fmadd_ps(
                _mm512_maskz_loadu_ps(m, w + (size_t)r * (size_t)n_in + i), xv, acc[r]);
    }
    for (int r = 0; r < rows; r++) y[r] = _mm512_reduce_add_ps(acc[r]);
}

static KERNELS_AVX512 void gemv_rows4(int n_in, const float *x, const float *w, float *y)
{
    gemv_rows(GEMV_ROWS, n_in, x, w, y);
}

static KERNELS_AVX512 void gemv_rows1(int n_in, const float *x, const float *w, float *y)
{
    gemv_rows(1, n_in, x, w, y);
}
#endif

void kernels_gemv_avx512(int n_in, int n_out, const float *x, const float *w, float *y)
{
    assert(cpu_isa_best() >= CPU_ISA_AVX512 && n_in > 0 && n_out > 0);
#if KERNELS_X86
    int o = 0;
    for (; o + GEMV_ROWS <= n_out; o += GEMV_ROWS)
        gemv_rows4(n_in, x, w + (size_t)o * (size_t)n_in, y + o);
    for (; o < n_out; o++) gemv_rows1(n_in, x, w + (size_t)o * (size_t)n_in, y + o);
#else
    (void)x, (void)w, (void)y;
#endif
}

/* ---- batched GEMV (several inputs through one linear layer) ----
 * Each (row, input) pair accumulates exactly as gemv_rows does for that row and input alone (the
 * same 16-lane FMA chain over i, the same masked tail, the same reduction), so every output is
 * bit-identical to the batch-1 GEMV; the weights are read once per block of rows for up to
 * GEMV_BATCH_TILE inputs held in registers, and again from cache for the next tile of inputs. */
#define GEMV_BATCH_TILE 4

#if KERNELS_X86
/* Rows w_0 .. w_{rows-1} against inputs x_0 .. x_{nb-1} (rows <= GEMV_ROWS, nb <= GEMV_BATCH_TILE;
 * x_b at x + b * n_in, output (r, b) at y + b * y_stride + r). prefetch: the weights are read from
 * memory for the first time (the first tile of inputs). */
static inline __attribute__((always_inline)) KERNELS_AVX512 void gemv_batch_tile(
    const int rows, const int nb, int n_in, const float *x, const float *w, float *y, size_t y_stride,
    const int prefetch)
{
    __m512 acc[GEMV_ROWS][GEMV_BATCH_TILE];
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < nb; b++) acc[r][b] = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= n_in; i += 16) {
        __m512 xv[GEMV_BATCH_TILE];
        for (int b = 0; b < nb; b++) xv[b] = _mm512_loadu_ps(x + (size_t)b * (size_t)n_in + i);
        for (int r = 0; r < rows; r++) {
            const float *wr = w + (size_t)r * (size_t)n_in + i;
            if (prefetch) _mm_prefetch((const char *)(wr + GEMV_PREFETCH), _MM_HINT_T0);
            const __m512 wv = _mm512_loadu_ps(wr);
            for (int b = 0; b < nb; b++) acc[r][b] = _mm512_fmadd_ps(wv, xv[b], acc[r][b]);
        }
    }
    if (i < n_in) {
        const __mmask16 m = (__mmask16)((1u << (n_in - i)) - 1u);
        __m512 xv[GEMV_BATCH_TILE];
        for (int b = 0; b < nb; b++) xv[b] = _mm512_maskz_loadu_ps(m, x + (size_t)b * (size_t)n_in + i);
        for (int r = 0; r < rows; r++) {
            const __m512 wv = _mm512_maskz_loadu_ps(m, w + (size_t)r * (size_t)n_in + i);
            for (int b = 0; b < nb; b++) acc[r][b] = _mm512_fmadd_ps(wv, xv[b], acc[r][b]);
        }
    }
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < nb; b++) y[(size_t)b * y_stride + (size_t)r] = _mm512_reduce_add_ps(acc[r][b]);
}

/* One block of rows (rows = GEMV_ROWS or 1) for every input, in tiles of GEMV_BATCH_TILE inputs. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void gemv_batch_rows(
    const int rows, int n_in, int n_batch, const float *x, const float *w, float *y, size_t y_stride)
{
    int b = 0;
    for (; b + GEMV_BATCH_TILE <= n_batch; b += GEMV_BATCH_TILE)
        gemv_batch_tile(rows, GEMV_BATCH_TILE, n_in, x + (size_t)b * (size_t)n_in, w, y + (size_t)b * y_stride,
                        y_stride, b == 0);
    const float *xb = x + (size_t)b * (size_t)n_in;
    float *yb = y + (size_t)b * y_stride;
    switch (n_batch - b) {
    case 3: gemv_batch_tile(rows, 3, n_in, xb, w, yb, y_stride, b == 0); break;
    case 2: gemv_batch_tile(rows, 2, n_in, xb, w, yb, y_stride, b == 0); break;
    case 1: gemv_batch_tile(rows, 1, n_in, xb, w, yb, y_stride, b == 0); break;
    default: break;
    }
}

static KERNELS_AVX512 void gemv_batch_rows4(int n_in, int n_batch, const float *x, const float *w, float *y,
                                            size_t y_stride)
{
    gemv_batch_rows(GEMV_ROWS, n_in, n_batch, x, w, y, y_stride);
}

static KERNELS_AVX512 void gemv_batch_rows1(int n_in, int n_batch, const float *x, const float *w, float *y,
                                            size_t y_stride)
{
    gemv_batch_rows(1, n_in, n_batch, x, w, y, y_stride);
}
#endif

void kernels_gemv_batch_avx512(int n_in, int n_out, int n_batch, const float *x, const float *w, float *y,
                               size_t y_stride)
{
    assert(cpu_isa_best() >= CPU_ISA_AVX512 && n_in > 0 && n_out > 0 && n_batch > 0);
#if KERNELS_X86
    int o = 0;
    for (; o + GEMV_ROWS <= n_out; o += GEMV_ROWS)
        gemv_batch_rows4(n_in, n_batch, x, w + (size_t)o * (size_t)n_in, y + o, y_stride);
    for (; o < n_out; o++) gemv_batch_rows1(n_in, n_batch, x, w + (size_t)o * (size_t)n_in, y + o, y_stride);
#else
    (void)x, (void)w, (void)y, (void)y_stride;
#endif
}

void linear_forward_isa(int n_in, int n_out, const float *x, const float *w, const float *bias,
                        act_kind act, float *y, cpu_isa isa)
{
    assert(n_in > 0 && n_out > 0);
    if (isa >= CPU_ISA_AVX512)
        kernels_gemv_avx512(n_in, n_out, x, w, y);
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

/* The AVX-512 GEMV computes rows in groups of 4 (kernels_gemv_avx512): parts keep the groups. */
#define LINEAR_PART_ALIGN 4

kernels_part linear_part(int n_out, int ith, int nth)
{
    if (cpu_isa_best() < CPU_ISA_AVX512) return kernels_part_split(KERNELS_PART_CHANNELS, n_out, n_out, ith, nth);
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
    assert(cpu_isa_best() >= CPU_ISA_AVX512);
    linear_forward(n_in, n, x, w + (size_t)o0 * (size_t)n_in, bias ? bias + o0 : NULL, act, y + o0);
}


/* Rows [o0, o0 + n) of every input's output (y: n_batch rows of n_out floats). */
static void linear_batch_rows(int n_in, int n_out, int n_batch, const float *x, const float *w, const float *bias,
                              act_kind act, float *y, int o0, int n, cpu_isa isa)
{
    if (isa >= CPU_ISA_AVX512) {
        kernels_gemv_batch_avx512(n_in, n, n_batch, x, w + (size_t)o0 * (size_t)n_in, y + o0, (size_t)n_out);
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
    assert(cpu_isa_best() >= CPU_ISA_AVX512);
    linear_batch_rows(n_in, n_out, n_batch, x, w, bias, act, y, part->lo, n, CPU_ISA_AVX512);
}
