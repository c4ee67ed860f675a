#include "cpu.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The CPU's features, from the one probe (gcc's cpu model, filled once by libgcc at start-up). */
typedef struct {
    int avx2_fma;   /* AVX2 and FMA */
    int avx512f;    /* AVX-512 Foundation */
    int avx512_skx; /* AVX-512 F, BW, DQ and VL (Skylake-X and later) */
} cpu_features;

static cpu_features cpu_probe(void)
{
    cpu_features f = {0, 0, 0};
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    f.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    f.avx512f = __builtin_cpu_supports("avx512f");
    f.avx512_skx = f.avx512f && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#endif
    return f;
}

cpu_isa cpu_isa_best(void)
{
    const cpu_features f = cpu_probe();
    if (!f.avx2_fma) return CPU_ISA_GENERIC;
    return f.avx512f ? CPU_ISA_AVX512 : CPU_ISA_AVX2;
}

const char *cpu_openblas_coretype(void)
{
    const cpu_features f = cpu_probe();
    if (f.avx512_skx) return "SkylakeX";
    if (f.avx2_fma) return "Haswell";
    return NULL;
}

void cpu_reexec_for_openblas(char **argv)
{
    const char *threads = getenv("OPENBLAS_NUM_THREADS");
    const char *core = getenv("OPENBLAS_CORETYPE") ? NULL : cpu_openblas_coretype();
    const int set_threads = !threads || strcmp(threads, "1");
    if (!core && !set_threads) return;
    if (core && setenv("OPENBLAS_CORETYPE", core, 1)) return;
    if (set_threads && setenv("OPENBLAS_NUM_THREADS", "1", 1)) goto failed;
    execv("/proc/self/exe", argv);
failed: /* run on with OpenBLAS's own choices */
    if (core) unsetenv("OPENBLAS_CORETYPE");
    if (threads) setenv("OPENBLAS_NUM_THREADS", threads, 1);
    else unsetenv("OPENBLAS_NUM_THREADS");
}
