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

/* OpenBLAS reads its environment only when it is loaded. Sets OPENBLAS_CORETYPE (when unset and
 * cpu_openblas_coretype() has a choice) and OPENBLAS_NUM_THREADS=1 (when not already 1) and
 * re-executes this program from /proc/self/exe. One thread: every subcommand runs OpenBLAS on one
 * thread (its own threads do the parallel work), and the worker threads a multi-threaded OpenBLAS
 * starts at load spin ~0.1 s before they sleep, taking a core from a model context's threads
 * meanwhile (MobileNetV3-Small at 2 threads measured 1.36 ms a pass, as slow as at 1 thread, for
 * its first ~80 passes); openblas_set_num_threads() can still raise it (bench's sgemm peak does).
 * Returns (doing nothing) when both are already set as wanted, or when the re-exec fails. */
void cpu_reexec_for_openblas(char **argv);

#endif
