/* stretch_probe: what slows down in the machine's slow stretches. Runs six fixed loops in
 * alternation, everything in registers or L1, and prints each block's median time per loop, then the
 * medians over the blocks the GEMM step found fast and slow (README, Performance, session 15).
 * Each loop does the same number of steps:
 *   fma    12 independent FMAs per step, operands in registers
 *   ld2    the FMAs plus 2 vector loads (a GEMM strip's B row)
 *   bc6    the FMAs plus 6 broadcast loads (a GEMM panel's A column)
 *   gemm   both: the 6 x 16 GEMM step (2 loads + 6 broadcasts per 12 FMAs)
 *   loads  3 vector loads per step, nothing else
 *   int    a scalar integer dependency chain
 * Usage: stretch_probe [BLOCKS] (default 100, ~12 ms each). x86-64 with AVX2 + FMA only. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>

enum { STEPS = 12800, ROWS = 128, PER_BLOCK = 20, N_LOOPS = 6 };

#define PROBE_AVX2 __attribute__((target("avx2,fma"), noinline))
#define KEEP12                                                                                                       \
    __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7), "+x"(a8), \
                     "+x"(a9), "+x"(a10), "+x"(a11))
#define DECL12                                                                                                       \
    __m256 a0 = _mm256_set1_ps(1.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0, \
           a10 = a0, a11 = a0
#define FMA12(r0, r1, r2, r3, r4, r5, b0, b1)                                                                        \
    do {                                                                                                             \
        a0 = _mm256_fmadd_ps(r0, b0, a0), a1 = _mm256_fmadd_ps(r0, b1, a1);                                         \
        a2 = _mm256_fmadd_ps(r1, b0, a2), a3 = _mm256_fmadd_ps(r1, b1, a3);                                         \
        a4 = _mm256_fmadd_ps(r2, b0, a4), a5 = _mm256_fmadd_ps(r2, b1, a5);                                         \
        a6 = _mm256_fmadd_ps(r3, b0, a6), a7 = _mm256_fmadd_ps(r3, b1, a7);                                         \
        a8 = _mm256_fmadd_ps(r4, b0, a8), a9 = _mm256_fmadd_ps(r4, b1, a9);                                         \
        a10 = _mm256_fmadd_ps(r5, b0, a10), a11 = _mm256_fmadd_ps(r5, b1, a11);                                     \
    } while (0)
#define FMA12_X(...) FMA12(__VA_ARGS__) /* expands BCAST6 before FMA12 counts its arguments */
#define BCAST6(a)                                                                                                    \
    _mm256_broadcast_ss(a), _mm256_broadcast_ss(a + 1), _mm256_broadcast_ss(a + 2), _mm256_broadcast_ss(a + 3),       \
        _mm256_broadcast_ss(a + 4), _mm256_broadcast_ss(a + 5)

/* the sum of the accumulators, so that the compiler keeps every FMA */
static PROBE_AVX2 float probe_sum(__m256 x0, __m256 x1, __m256 x2, __m256 x3)
{
    float o[8];
    _mm256_storeu_ps(o, _mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)));
    return o[0];
}
#define SUM12                                                                                                        \
    probe_sum(_mm256_add_ps(a0, a1), _mm256_add_ps(_mm256_add_ps(a2, a3), _mm256_add_ps(a4, a5)),                   \
              _mm256_add_ps(_mm256_add_ps(a6, a7), _mm256_add_ps(a8, a9)), _mm256_add_ps(a10, a11))

static PROBE_AVX2 float probe_fma(const float *a, const float *b)
{
    (void)a, (void)b;
    DECL12;
    const __m256 m = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(1e-4f);
    for (int k = 0; k < STEPS; k++) {
        FMA12(m, m, m, m, m, m, c, c);
        KEEP12;
    }
    return SUM12;
}

static PROBE_AVX2 float probe_ld2(const float *a, const float *b)
{
    (void)a;
    DECL12;
    const __m256 m = _mm256_set1_ps(0.9999f);
    for (int r = 0; r < STEPS / ROWS; r++)
        for (const float *p = b; p < b + ROWS * 16; p += 16) {
            const __m256 b0 = _mm256_loadu_ps(p), b1 = _mm256_loadu_ps(p + 8);
            FMA12(m, m, m, m, m, m, b0, b1);
            KEEP12;
        }
    return SUM12;
}

static PROBE_AVX2 float probe_bc6(const float *a, const float *b)
{
    (void)b;
    DECL12;
    const __m256 b0 = _mm256_set1_ps(0.9999f), b1 = _mm256_set1_ps(1e-4f);
    for (int r = 0; r < STEPS / ROWS; r++)
        for (const float *p = a; p < a + ROWS * 6; p += 6) {
            FMA12_X(BCAST6(p), b0, b1);
            KEEP12;
        }
    return SUM12;
}

static PROBE_AVX2 float probe_gemm(const float *a, const float *b)
{
    DECL12;
    for (int r = 0; r < STEPS / ROWS; r++) {
        const float *q = b;
        for (const float *p = a; p < a + ROWS * 6; p += 6, q += 16) {
            const __m256 b0 = _mm256_loadu_ps(q), b1 = _mm256_loadu_ps(q + 8);
            FMA12_X(BCAST6(p), b0, b1);
            KEEP12;
        }
    }
    return SUM12;
}

static PROBE_AVX2 float probe_loads(const float *a, const float *b)
{
    (void)a;
    __m256 x = _mm256_setzero_ps(), y = x, z = x;
    for (int r = 0; r < STEPS / ROWS; r++)
        for (const float *p = b; p < b + ROWS * 24; p += 24) {
            x = _mm256_loadu_ps(p), y = _mm256_loadu_ps(p + 8), z = _mm256_loadu_ps(p + 16);
            __asm__ volatile("" : "+x"(x), "+x"(y), "+x"(z));
        }
    return probe_sum(x, y, z, x);
}

static __attribute__((noinline)) float probe_int(const float *a, const float *b)
{
    (void)a, (void)b;
    long p = 1, q = 2, r = 3, s = 4;
    for (long k = 0; k < 3 * STEPS / 2; k++) {
        p += k, q ^= p, r += q >> 1, s += r;
        __asm__ volatile("" : "+r"(p), "+r"(q), "+r"(r), "+r"(s));
    }
    return (float)(p + q + r + s);
}

static double probe_now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

static int probe_cmp(const void *x, const void *y)
{
    const double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double probe_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, probe_cmp);
    return v[n / 2];
}

int main(int argc, char **argv)
{
    const int n_blocks = argc > 1 ? atoi(argv[1]) : 100;
    if (n_blocks < 2 || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        fprintf(stderr, "usage: stretch_probe [BLOCKS >= 2] (needs AVX2 + FMA)\n");
        return 2;
    }
    static const char *const names[N_LOOPS] = {"fma", "ld2", "bc6", "gemm", "loads", "int"};
    float (*const loops[N_LOOPS])(const float *, const float *) = {probe_fma, probe_ld2,   probe_bc6,
                                                                  probe_gemm, probe_loads, probe_int};
    float *a = aligned_alloc(64, 1024 * sizeof(float)), *b = aligned_alloc(64, 4096 * sizeof(float));
    double *med = malloc((size_t)n_blocks * N_LOOPS * sizeof(double)), t[PER_BLOCK], col[2][4096];
    if (!a || !b || !med || n_blocks > 4096) {
        fprintf(stderr, "stretch_probe: out of memory or too many blocks\n");
        return 1;
    }
    for (int i = 0; i < 1024; i++) a[i] = 1e-4f;
    for (int i = 0; i < 4096; i++) b[i] = 1e-4f;
    volatile float sink = 0.0f;
    printf("block");
    for (int j = 0; j < N_LOOPS; j++) printf(" %7s", names[j]);
    printf("   (median us per loop call over %d calls)\n", PER_BLOCK);
    for (int blk = 0; blk < n_blocks; blk++) {
        for (int j = 0; j < N_LOOPS; j++) {
            for (int i = 0; i < PER_BLOCK; i++) {
                const double t0 = probe_now_us();
                sink += loops[j](a, b);
                t[i] = probe_now_us() - t0;
            }
            med[blk * N_LOOPS + j] = probe_median(t, PER_BLOCK);
        }
        printf("%5d", blk);
        for (int j = 0; j < N_LOOPS; j++) printf(" %7.1f", med[blk * N_LOOPS + j]);
        printf("\n");
    }
    /* fast blocks: the GEMM step within 10 % of its best block; slow: over 25 % above it */
    double best = med[3];
    for (int blk = 1; blk < n_blocks; blk++)
        if (med[blk * N_LOOPS + 3] < best) best = med[blk * N_LOOPS + 3];
    printf("\nloop     fast   slow  slow/fast\n");
    for (int j = 0; j < N_LOOPS; j++) {
        int n[2] = {0, 0};
        for (int blk = 0; blk < n_blocks; blk++) {
            const double g = med[blk * N_LOOPS + 3];
            if (g <= 1.10 * best) col[0][n[0]++] = med[blk * N_LOOPS + j];
            if (g > 1.25 * best) col[1][n[1]++] = med[blk * N_LOOPS + j];
        }
        if (!n[0] || !n[1]) {
            printf("%-6s  (%d fast and %d slow blocks: no comparison)\n", names[j], n[0], n[1]);
            continue;
        }
        const double f = probe_median(col[0], n[0]), s = probe_median(col[1], n[1]);
        printf("%-6s %6.1f %6.1f  %5.2f   (%d fast, %d slow blocks)\n", names[j], f, s, s / f, n[0], n[1]);
    }
    free(a);
    free(b);
    free(med);
    (void)sink;
    return 0;
}
#else
int main(void)
{
    fprintf(stderr, "stretch_probe: x86-64 only\n");
    return 2;
}
#endif
