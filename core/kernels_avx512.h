/* Helpers shared by the AVX-512 kernels (selected at run time on CPUs with AVX-512F). Include only
 * where KERNELS_X86 (kernels_internal.h) is set. */
#ifndef CNN_KERNELS_AVX512_H
#define CNN_KERNELS_AVX512_H

#include <immintrin.h>

#include "kernels.h"

/* Function-level target of every AVX-512 kernel (the build itself is generic x86-64). */
#define KERNELS_AVX512 __attribute__((target("avx512f")))

/* Lanes [0, n) of a 16-lane vector (all 16 for n >= 16), for n >= 0, as an unsigned. */
#define KERNELS_AVX512_LANES(n) ((n) >= 16 ? 0xFFFFu : (1u << (n)) - 1u)

/* The mask of lanes [0, n). */
static inline __attribute__((always_inline)) __mmask16 kernels_avx512_mask(int n)
{
    return (__mmask16)KERNELS_AVX512_LANES(n);
}

/* Lanes [lo, hi) of a 16-lane vector (none when hi <= lo), for 0 <= lo. */
static inline __attribute__((always_inline)) __mmask16 kernels_avx512_range_mask(int lo, int hi)
{
    return hi <= lo ? 0 : (__mmask16)((KERNELS_AVX512_LANES(hi) >> lo) << lo);
}

/* act(v) on 16 lanes: the vector form of act_forward, for fused epilogues. */
static inline __attribute__((always_inline)) KERNELS_AVX512 __m512 avx512_act(__m512 v, act_kind act)
{
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
    const __m512 three = _mm512_set1_ps(3.0f), sixth = _mm512_set1_ps(1.0f / 6.0f);
    switch (act) {
    case ACT_RELU: return _mm512_max_ps(v, zero);
    case ACT_RELU6: return _mm512_min_ps(_mm512_max_ps(v, zero), six);
    case ACT_HSWISH:
        return _mm512_mul_ps(
            _mm512_mul_ps(v, _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, three), zero), six)),
            sixth);
    case ACT_HSIGMOID:
        return _mm512_mul_ps(_mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, three), zero), six),
                             sixth);
    case ACT_NONE: break;
    }
    return v;
}

/* Masks for kernels that walk a stride-1 output map flat, 16 outputs per vector:
 * mask[v * k_h * k_w + t] has lane l set when output 16v+l exists and its tap t = i * k_w + j reads
 * inside the h_in x w_in input (padding pad_t / pad_l before). */
static inline void avx512_flat_masks(int h_in, int w_in, int h_out, int w_out, int k_h, int k_w, int pad_t,
                                     int pad_l, int n_vec, __mmask16 *mask)
{
    const int n_out = h_out * w_out, taps = k_h * k_w;
    for (int v = 0; v < n_vec; v++)
        for (int t = 0; t < taps; t++) {
            const int di = t / k_w - pad_t, dj = t % k_w - pad_l;
            unsigned m = 0;
            for (int l = 0; l < 16; l++) {
                const int n = 16 * v + l, ih = n / w_out + di, iw = n % w_out + dj;
                if (n < n_out && ih >= 0 && ih < h_in && iw >= 0 && iw < w_in) m |= 1u << l;
            }
            mask[v * taps + t] = (__mmask16)m;
        }
}

#endif
