/* Helpers shared by the AVX2 + FMA kernels (selected at run time on CPUs with AVX2 and FMA but
 * without AVX-512F, and on those with it where no AVX-512 variant exists). Include only where
 * KERNELS_X86 (kernels_internal.h) is set. */
#ifndef CNN_KERNELS_AVX2_H
#define CNN_KERNELS_AVX2_H

#include <immintrin.h>

#include "kernels.h"

/* Function-level target of every AVX2 kernel (the build itself is generic x86-64). */
#define KERNELS_AVX2 __attribute__((target("avx2,fma")))

/* Lanes [0, n) of an 8-lane vector set (all 8 for n >= 8, none for n <= 0), as a maskload mask. */
static inline __attribute__((always_inline)) KERNELS_AVX2 __m256i kernels_avx2_mask(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Lanes [0, n) of v to d (all 8 for n >= 8) by plain 4- / 2- / 1-float stores: a masked store
 * (vmaskmovps) measured ~5x slower than a plain one on Zen 3. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void avx2_store_n(float *d, __m256 v, int n)
{
    if (n >= 8) {
        _mm256_storeu_ps(d, v);
        return;
    }
    __m128 x = _mm256_castps256_ps128(v);
    if (n & 4) {
        _mm_storeu_ps(d, x);
        x = _mm256_extractf128_ps(v, 1);
        d += 4;
    }
    if (n & 2) {
        _mm_storel_pi((__m64 *)d, x);
        x = _mm_movehl_ps(x, x);
        d += 2;
    }
    if (n & 1) _mm_store_ss(d, x);
}

/* act(v) on 8 lanes: the vector form of act_forward, the same operations as avx512_act. */
static inline __attribute__((always_inline)) KERNELS_AVX2 __m256 avx2_act(__m256 v, act_kind act)
{
    const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
    const __m256 three = _mm256_set1_ps(3.0f), sixth = _mm256_set1_ps(1.0f / 6.0f);
    switch (act) {
    case ACT_RELU: return _mm256_max_ps(v, zero);
    case ACT_RELU6: return _mm256_min_ps(_mm256_max_ps(v, zero), six);
    case ACT_HSWISH:
        return _mm256_mul_ps(_mm256_mul_ps(v, _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v, three), zero), six)),
                             sixth);
    case ACT_HSIGMOID:
        return _mm256_mul_ps(_mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v, three), zero), six), sixth);
    case ACT_NONE: break;
    }
    return v;
}

/* _mm512_reduce_add_ps (gcc's order) of the 16 lanes lo | hi: (hi + lo), its upper + lower 128
 * bits t, then (t0 + t2) + (t1 + t3). A 16-lane accumulator kept as two 8-lane halves thus
 * reduces to the AVX-512 kernel's bits. */
static inline __attribute__((always_inline)) KERNELS_AVX2 float avx2_reduce_add16(__m256 lo, __m256 hi)
{
    const __m256 s = _mm256_add_ps(hi, lo);
    const __m128 t = _mm_add_ps(_mm256_extractf128_ps(s, 1), _mm256_castps256_ps128(s));
    const __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));
    return _mm_cvtss_f32(_mm_add_ss(u, _mm_movehdup_ps(u)));
}

/* In-place 8 x 8 transpose: v[i] lane j <- v[j] lane i (pure data movement). */
static inline __attribute__((always_inline)) KERNELS_AVX2 void avx2_transpose8(__m256 v[8])
{
    __m256 t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) {
        u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    /* u[4a + b] holds, in 128-bit half q, element b of rows 4a..4a+3 at column 4q + b */
#pragma GCC unroll 4
    for (int b = 0; b < 4; b++) {
        v[b] = _mm256_permute2f128_ps(u[b], u[4 + b], 0x20);
        v[4 + b] = _mm256_permute2f128_ps(u[b], u[4 + b], 0x31);
    }
}

/* src[0..n) split into its even columns at xe and odd ones at xo (column 2 t to xe[t], 2 t + 1 to
 * xo[t]), 16 columns per step: loads past n are masked (zeros), stores are whole vectors (xe and xo
 * get (n + 15) / 16 * 8 floats each). Pure data movement. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void avx2_split_even_odd(const float *src, int n, float *xe,
                                                                                   float *xo)
{
    for (int i = 0; i < n; i += 16) {
        __m256 a, b;
        if (i + 16 <= n) {
            a = _mm256_loadu_ps(src + i);
            b = _mm256_loadu_ps(src + i + 8);
        } else {
            a = _mm256_maskload_ps(src + i, kernels_avx2_mask(n - i));
            b = _mm256_maskload_ps(src + i + 8, kernels_avx2_mask(n - i - 8));
        }
        const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)), o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
        _mm256_storeu_ps(xe + i / 2, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0))));
        _mm256_storeu_ps(xo + i / 2, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0))));
    }
}

#endif
