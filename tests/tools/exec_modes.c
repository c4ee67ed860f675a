/* exec_modes: where two threads lose. Runs whole inferences of one architecture in four modes,
 * one mode per pass in rotation (so every mode sees the same machine state), with two threads
 * pinned to CPUs 0 and 1, and prints per mode the summed compute time of all node parts per pass:
 *
 *   one-cpu0    thread 0 computes every part of every node (thread 1 waits at the pass barrier)
 *   one-cpu1    the same on thread 1
 *   alternate   each split node's part 0 on thread 0, then its part 1 on thread 1 (never both at
 *               once): the data moves between the cores as in a 2-thread inference
 *   concurrent  both parts at once, a barrier after each split node (a 2-thread inference)
 *
 * Against one-cpu0, alternate shows what moving the data between cores costs, concurrent what
 * running at once adds. Nodes graph_node_parts runs whole run on thread 0 in every mode; branch
 * segments are not used (each of their nodes runs as a node).
 *
 *   exec_modes ARCH WEIGHTS.safetensors [PASSES] */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../models/archs.h"
#include "../../models/model.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define MODES_PAUSE() _mm_pause()
#else
#define MODES_PAUSE() ((void)0)
#endif

enum { MODE_ONE0, MODE_ONE1, MODE_ALTERNATE, MODE_CONCURRENT, N_MODES };
static const char *const mode_names[N_MODES] = {"one-cpu0", "one-cpu1", "alternate", "concurrent"};

typedef struct {
    graph g;
    const float *input;
    float *arena, *scratch[2];
    atomic_uint barrier;
    atomic_int mode;
    int n_passes;
    double work[2]; /* this pass's compute per thread, ns */
} modes_ctx;

static double modes_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int modes_cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Two-thread barrier: each thread counts its crossings in *local. */
static void modes_barrier(modes_ctx *c, unsigned *local)
{
    *local += 2;
    atomic_fetch_add(&c->barrier, 1);
    while (atomic_load(&c->barrier) < *local) MODES_PAUSE();
}

static int modes_pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void modes_part(modes_ctx *c, int ith, int i, int part, int n_parts)
{
    const double t0 = modes_now_ns();
    graph_run_node_part(&c->g, i, c->input, c->arena, c->scratch[ith], part, n_parts);
    c->work[ith] += modes_now_ns() - t0;
}

/* One pass of mode m on thread ith (both threads call it). */
static void modes_pass(modes_ctx *c, int ith, int m, unsigned *local)
{
    c->work[ith] = 0;
    for (int i = 0; i < c->g.n_nodes; i++) {
        const int parts = graph_node_parts(&c->g, i, 2);
        if (m == MODE_ONE0 || m == MODE_ONE1) {
            if (ith != m) continue;
            if (parts == 2) {
                modes_part(c, ith, i, 0, 2);
                modes_part(c, ith, i, 1, 2);
            } else {
                modes_part(c, ith, i, 0, 1);
            }
        } else if (parts != 2) {
            if (ith == 0) modes_part(c, 0, i, 0, 1);
            modes_barrier(c, local);
        } else if (m == MODE_ALTERNATE) {
            if (ith == 0) modes_part(c, 0, i, 0, 2);
            modes_barrier(c, local);
            if (ith == 1) modes_part(c, 1, i, 1, 2);
            modes_barrier(c, local);
        } else {
            modes_part(c, ith, i, ith, 2);
            modes_barrier(c, local);
        }
    }
}

/* Untimed warm-up passes before the timed ones, each mode alike. */
#define MODES_WARMUP 40

static void *modes_worker(void *arg)
{
    modes_ctx *c = arg;
    unsigned local = 0;
    if (modes_pin(1)) fprintf(stderr, "exec_modes: cannot pin thread 1 to CPU 1\n");
    for (int it = -MODES_WARMUP; it < c->n_passes; it++) {
        modes_barrier(c, &local);
        modes_pass(c, 1, atomic_load(&c->mode), &local);
        modes_barrier(c, &local);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: exec_modes ARCH WEIGHTS.safetensors [PASSES]\n");
        return 2;
    }
    modes_ctx *c = calloc(1, sizeof *c);
    const arch_builder *ab = model_arch_builder(argv[1]);
    const model_arch *arch = model_arch_find(argv[1]);
    const int n_passes = argc > 3 ? atoi(argv[3]) : 400;
    if (!c || !ab || !arch || n_passes < 2 * N_MODES) {
        fprintf(stderr, "exec_modes: unknown architecture '%s', PASSES < %d or out of memory\n", argv[1], 2 * N_MODES);
        return 2;
    }
    c->n_passes = n_passes / N_MODES * N_MODES;
    char err[512];
    weights *w = NULL;
    if (weights_open(&w, argv[2], err, sizeof err) != CNN_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    graph_builder b = {.g = &c->g, .w = w, .bn_eps = ab->bn_eps, .status = CNN_OK, .err = err, .err_bytes = sizeof err};
    const int size = arch->input_size;
    c->g.output = ab->build(&b, size);
    if (b.status != CNN_OK || graph_plan(&c->g) != CNN_OK) {
        fprintf(stderr, "exec_modes: %s\n", b.status != CNN_OK ? err : "graph_plan failed");
        return 1;
    }
    const size_t n_in = (size_t)3 * size * size, stride = (c->g.scratch_floats + 16 + 1023) / 1024 * 1024;
    float *input = malloc(n_in * sizeof(float));
    c->arena = aligned_alloc(64, (c->g.arena_floats + 16) * sizeof(float));
    c->scratch[0] = aligned_alloc(4096, stride * sizeof(float));
    c->scratch[1] = aligned_alloc(4096, stride * sizeof(float));
    const int per_mode = c->n_passes / N_MODES;
    double *work = malloc((size_t)N_MODES * per_mode * sizeof(double));
    if (!input || !c->arena || !c->scratch[0] || !c->scratch[1] || !work) {
        fprintf(stderr, "exec_modes: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n_in; i++) input[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    c->input = input;
    atomic_init(&c->barrier, 0);
    atomic_init(&c->mode, 0);
    if (modes_pin(0)) fprintf(stderr, "exec_modes: cannot pin thread 0 to CPU 0\n");
    pthread_t th;
    if (pthread_create(&th, NULL, modes_worker, c)) {
        fprintf(stderr, "exec_modes: cannot start a thread\n");
        return 1;
    }
    unsigned local = 0;
    for (int it = -MODES_WARMUP; it < c->n_passes; it++) {
        const int m = (it + MODES_WARMUP) % N_MODES;
        atomic_store(&c->mode, m);
        modes_barrier(c, &local);
        modes_pass(c, 0, m, &local);
        modes_barrier(c, &local);
        if (it >= 0) work[m * per_mode + it / N_MODES] = c->work[0] + c->work[1];
    }
    pthread_join(th, NULL);
    printf("%s, %d passes per mode, summed compute of all node parts per pass (us)\n", argv[1], per_mode);
    printf("mode            p10   median   median / one-cpu0\n");
    double base = 0;
    for (int m = 0; m < N_MODES; m++) {
        double *v = work + (size_t)m * per_mode;
        qsort(v, (size_t)per_mode, sizeof(double), modes_cmp);
        if (m == MODE_ONE0) base = v[per_mode / 2];
        printf("%-12s %7.0f  %7.0f   %.2f\n", mode_names[m], v[per_mode / 10] / 1e3, v[per_mode / 2] / 1e3,
               v[per_mode / 2] / base);
    }
    free(work), free(input), free(c->arena), free(c->scratch[0]), free(c->scratch[1]);
    graph_free(&c->g);
    weights_free(w);
    free(c);
    return 0;
}
