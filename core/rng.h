/* Seeded pseudo-random numbers for training (data split, shuffling, weight init): SplitMix64, the same
 * sequence on every platform and run, so a seed fully determines a training run. The state is the
 * caller's (no globals). */
#ifndef CNN_RNG_H
#define CNN_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t state;
} rng;

static inline void rng_init(rng *r, uint64_t seed) { r->state = seed; }

static inline uint64_t rng_next_u64(rng *r)
{
    uint64_t z = (r->state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double rng_uniform(rng *r) { return (double)(rng_next_u64(r) >> 11) * 0x1.0p-53; }

/* Uniform integer in [0, n) for n >= 1 (rejection sampling: no modulo bias). */
static inline uint64_t rng_below(rng *r, uint64_t n)
{
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t v;
    do v = rng_next_u64(r);
    while (v >= limit);
    return v % n;
}

/* Fisher-Yates shuffle of n indices. */
static inline void rng_shuffle(rng *r, int *idx, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(r, (uint64_t)i + 1);
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

#endif
