#include "cpu.h"

#include <stdlib.h>
#include <unistd.h>

const char *cpu_openblas_coretype(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
    return NULL;
}

void cpu_reexec_for_openblas(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE")) return;
    const char *core = cpu_openblas_coretype();
    if (!core || setenv("OPENBLAS_CORETYPE", core, 1)) return;
    execv("/proc/self/exe", argv);
    /* Still here: the exec failed; run on with OpenBLAS's own choice. */
    unsetenv("OPENBLAS_CORETYPE");
}
