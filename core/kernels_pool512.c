/* Global average pooling on AVX-512 (adaptive_avgpool2d_forward's variant for 1x1 outputs on CPUs
 * with AVX-512F). Max / average pooling runs kernels_pool256.c's AVX2 kernels on every x86 CPU:
 * on AMD Zen 5 an AVX-512 form of them (16-lane rows, the same arithmetic and bits) took 1.04-1.19x
 * their time on maps in cache and 2.2-4.7x from memory (by inference its 64-byte loads, which cross
 * cache lines more often). */
#include "kernels.h"

#include <assert.h>

#include "kernels_internal.h"

#if KERNELS_X86
#include "kernels_avx512.h"
#endif

/* Global average pooling: each channel summed in 4 x 16 interleaved partial sums (4 independent
 * add chains), a masked vector for the last hw % 16 values, then one horizontal sum. A channel's
 * result depends only on its own values, so any channel range gives the same bits. */
#if KERNELS_X86
static KERNELS_AVX512 void pool512_global_avg(int c, size_t hw, const float *x, float *y)
{
    const __mmask16 tail = kernels_avx512_mask((int)(hw % 16));
    for (int ci = 0; ci < c; ci++) {
        const float *xc = x + (size_t)ci * hw;
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        size_t i = 0;
        for (; i + 64 <= hw; i += 64) {
            s0 = _mm512_add_ps(s0, _mm512_loadu_ps(xc + i));
            s1 = _mm512_add_ps(s1, _mm512_loadu_ps(xc + i + 16));
            s2 = _mm512_add_ps(s2, _mm512_loadu_ps(xc + i + 32));
            s3 = _mm512_add_ps(s3, _mm512_loadu_ps(xc + i + 48));
        }
        if (i + 16 <= hw) { s0 = _mm512_add_ps(s0, _mm512_loadu_ps(xc + i)); i += 16; }
        if (i + 16 <= hw) { s1 = _mm512_add_ps(s1, _mm512_loadu_ps(xc + i)); i += 16; }
        if (i + 16 <= hw) { s2 = _mm512_add_ps(s2, _mm512_loadu_ps(xc + i)); i += 16; }
        if (i < hw) s3 = _mm512_add_ps(s3, _mm512_maskz_loadu_ps(tail, xc + i));
        const __m512 s = _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3));
        y[ci] = _mm512_reduce_add_ps(s) / (float)hw;
    }
}
#endif

void kernels_global_avg_avx512(int c, size_t hw, const float *x, float *y)
{
    assert(c > 0 && hw > 0 && cpu_isa_best() >= CPU_ISA_AVX512);
#if KERNELS_X86
    pool512_global_avg(c, hw, x, y);
#else
    (void)c, (void)hw, (void)x, (void)y;
#endif
}
