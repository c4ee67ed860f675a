/* The CPU module: what this processor can run, probed in one place, and the process set-up that
 * depends on it. The kernels pick their instruction-set variant from cpu_isa_best; the OpenBLAS
 * re-exec reads the same probe. */
#ifndef CNN_CPU_H
#define CNN_CPU_H

/* Instruction-set variant of the hand-tuned kernels. The binary targets generic x86-64, so wider
 * variants are compiled with function-level target attributes and chosen at run time. */
typedef enum {
    CPU_ISA_GENERIC = 0, /* portable C, auto-vectorized for the build's baseline */
    CPU_ISA_AVX2,        /* AVX2 + FMA */
    CPU_ISA_AVX512,      /* AVX-512F on top of AVX2 + FMA */
} cpu_isa;

/* Best variant this CPU supports. Thread-safe (reads CPU feature bits only). */
cpu_isa cpu_isa_best(void);

/* OpenBLAS kernel family suited to this CPU ("SkylakeX" with AVX-512 F/BW/DQ/VL, "Haswell" with
 * AVX2+FMA), or NULL to keep OpenBLAS's own detection. Needed because Debian 12's OpenBLAS 0.3.21
 * does not recognise newer Xeons (e.g. family 6 model 207) and falls back to its slowest "Prescott"
 * kernels: sgemm measured 2.5-3.6x slower here. */
const char *cpu_openblas_coretype(void);

/* OpenBLAS reads OPENBLAS_CORETYPE only when it is loaded, so when the variable is unset and
 * cpu_openblas_coretype() has a choice, set it and re-execute this program from /proc/self/exe.
 * Returns (doing nothing) when the variable is already set (the user's choice wins), when there is
 * no better choice, or when the re-exec fails. */
void cpu_reexec_for_openblas(char **argv);

#endif
