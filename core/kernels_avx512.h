/* Helpers shared by the AVX-512 kernels (selected at run time on CPUs with AVX-512F). */
#ifndef CNN_KERNELS_AVX512_H
#define CNN_KERNELS_AVX512_H

#include <immintrin.h>

#include "kernels.h"

/* act(v) on 16 lanes: the vector form of act_forward, for fused epilogues. */
static inline __attribute__((always_inline)) __attribute__((target("avx512f"))) __m512 avx512_act(__m512 v,
                                                                                                 act_kind act)
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

#endif
