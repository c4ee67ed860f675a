/* layer_prof: per-node time of one architecture's graph, and the same grouped by kernel (which of
 * our kernels took the time; `make bench` stores it per model).
 *
 *   layer_prof ARCH WEIGHTS.safetensors [ITERS] [--threads N] [--json FILE]
 *
 * Builds the graph with the registry's builder, input size and BatchNorm eps (torch padding; the
 * times do not depend on eps), plans it, runs it ITERS times (default 200) node
 * by node and prints each node's median time, its shape and its share of the summed medians, then
 * the medians summed per kernel kind. With --threads N > 1 each node runs as graph_run_part runs
 * it on N threads: split into N parts claimed by a pool whose workers spin between nodes (so a
 * node's time includes its hand-off and the wait for its slowest part), or whole on the calling
 * thread when graph_run_part runs it on one thread (also the nodes of Inception's branch segments,
 * whose overlap on two threads the per-node times do not show). --json writes the same as JSON. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../models/archs.h"
#include "../../models/model.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define PROF_PAUSE() _mm_pause()
#else
#define PROF_PAUSE() ((void)0)
#endif

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The kernel that runs node n: op, conv path and window (the grouping key of the summary). */
static void kind_name(const graph_node *n, char *buf, size_t buf_bytes)
{
    static const char *const names[] = {"conv", "pool", "adaptive_avg", "linear", "scale", "add", "concat",
                                        "concat_shuffle", "folded"};
    if (n->op == NODE_POOL) {
        snprintf(buf, buf_bytes, "%s %dx%d%s", n->p.pool.kind == POOL_MAX ? "maxpool" : "avgpool", n->p.pool.k_h,
                 n->p.pool.k_w, n->b ? " +bias" : "");
        return;
    }
    if (n->op != NODE_CONV) {
        snprintf(buf, buf_bytes, "%s", names[n->op]);
        return;
    }
    const conv2d_plan *pl = &n->p.conv;
    const conv2d_params *p = &pl->p;
    switch (pl->path) {
    case CONV_PATH_DIRECT: snprintf(buf, buf_bytes, "conv 1x1 sgemm (OpenBLAS)"); break;
    case CONV_PATH_IM2COL:
        snprintf(buf, buf_bytes, "conv %dx%d im2col+sgemm (OpenBLAS)", p->k_h, p->k_w);
        break;
    case CONV_PATH_DEPTHWISE: snprintf(buf, buf_bytes, "depthwise %dx%d s%d", p->k_h, p->k_w, p->stride_h); break;
    case CONV_PATH_STEM: snprintf(buf, buf_bytes, "conv %dx%d stem", p->k_h, p->k_w); break;
    case CONV_PATH_WINOGRAD: snprintf(buf, buf_bytes, "conv %dx%d winograd", p->k_h, p->k_w); break;
    case CONV_PATH_GEMM:
        snprintf(buf, buf_bytes, "conv %dx%d%s gemm%s", p->k_h, p->k_w, p->stride_h > 1 ? " s2+" : "",
                 pl->in_scale ? " +scale" : "");
        break;
    case CONV_PATH_PW_DW:
        snprintf(buf, buf_bytes, "conv 1x1 gemm + depthwise %dx%d s%d", pl->dw.k_h, pl->dw.k_w, pl->dw.stride_h);
        break;
    case CONV_PATH_DW_PW:
        snprintf(buf, buf_bytes, "depthwise %dx%d s%d + conv 1x1 gemm", pl->dw.k_h, pl->dw.k_w, pl->dw.stride_h);
        break;
    case CONV_PATH_PW_DWCB:
        snprintf(buf, buf_bytes, "conv 1x1 + depthwise %dx%d s%d blocked", pl->dw.k_h, pl->dw.k_w, pl->dw.stride_h);
        break;
    }
}

/* The profile's thread pool: the caller publishes (round << 32 | node) and claims parts of the
 * node with the workers, which spin on the published word between nodes. */
typedef struct {
    const graph *g;
    const float *input;
    float *arena, *scratch;
    size_t scratch_stride;
    threadpool *tp;
    threadpool_step step;
    _Alignas(64) _Atomic uint64_t published;
    atomic_int quit;
} prof_pool;

static void prof_run_parts(prof_pool *pp, int node, unsigned round, int ith)
{
    const int nth = threadpool_size(pp->tp);
    int claim, first = 1;
    while ((claim = threadpool_step_claim(&pp->step, round, nth)) >= 0) {
        const int part = nth == 2 ? (first ? ith : 1 - ith) : claim; /* as graph_run_part_range */
        first = 0;
        graph_run_node_part(pp->g, node, pp->input, pp->arena, pp->scratch + (size_t)ith * pp->scratch_stride, part,
                            nth);
        threadpool_step_finish(pp->tp, &pp->step);
    }
}

static void prof_worker(void *arg, int ith, int nth, unsigned job)
{
    (void)nth;
    (void)job;
    prof_pool *pp = arg;
    uint64_t seen = atomic_load_explicit(&pp->published, memory_order_acquire);
    while (!atomic_load_explicit(&pp->quit, memory_order_acquire)) {
        const uint64_t v = atomic_load_explicit(&pp->published, memory_order_acquire);
        if (v == seen) {
            PROF_PAUSE();
            continue;
        }
        seen = v;
        prof_run_parts(pp, (int)(v & 0xffffffffu), (unsigned)(v >> 32) - 1u, ith);
    }
}

typedef struct {
    char name[64];
    int n_nodes;
    double us;
} prof_kind;

static int cmp_kind(const void *a, const void *b)
{
    const double x = ((const prof_kind *)a)->us, y = ((const prof_kind *)b)->us;
    return (x < y) - (x > y);
}

int main(int argc, char **argv)
{
    const char *json_path = NULL;
    int n_threads = 1, iters = 200, n_pos = 0;
    const char *pos[3] = {NULL, NULL, NULL};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) n_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
        else if (n_pos < 3) pos[n_pos++] = argv[i];
        else n_pos = 4;
    }
    if (n_pos < 2 || n_pos > 3) {
        fprintf(stderr, "usage: layer_prof ARCH WEIGHTS.safetensors [ITERS] [--threads N] [--json FILE]\n");
        return 2;
    }
    if (n_pos == 3) iters = atoi(pos[2]);
    /* the registry's builder, input size and BatchNorm eps, as model_load uses them */
    const arch_builder *ab = model_arch_builder(pos[0]);
    const model_arch *arch = model_arch_find(pos[0]);
    const int size = arch ? arch->input_size : 0;
    if (!ab || !arch || iters < 1 || n_threads < 1 || n_threads > 64) {
        fprintf(stderr, "layer_prof: unknown architecture '%s', bad ITERS or bad --threads\n", pos[0]);
        return 2;
    }
    char err[512];
    weights *w = NULL;
    if (weights_open(&w, pos[1], err, sizeof(err)) != CNN_OK) {
        fprintf(stderr, "layer_prof: %s\n", err);
        return 1;
    }
    graph g = {0};
    graph_builder b = {.g = &g, .w = w, .bn_eps = ab->bn_eps, .status = CNN_OK, .err = err, .err_bytes = sizeof(err)};
    g.output = ab->build(&b, size);
    if (b.status != CNN_OK || graph_plan(&g) != CNN_OK) {
        fprintf(stderr, "layer_prof: %s\n", b.status != CNN_OK ? err : "graph_plan failed");
        return 1;
    }
    const size_t stride = (g.scratch_floats + 16 + 15) / 16 * 16;
    float *input = calloc((size_t)3 * size * size, sizeof(float));
    float *arena = aligned_alloc(64, (g.arena_floats + 16) * sizeof(float));
    float *scratch = aligned_alloc(64, stride * (size_t)n_threads * sizeof(float));
    double *t = malloc((size_t)g.n_nodes * (size_t)iters * sizeof(double));
    double *med = malloc((size_t)g.n_nodes * sizeof(double));
    prof_kind *kinds = calloc((size_t)g.n_nodes, sizeof(prof_kind));
    prof_pool *pp = aligned_alloc(64, (sizeof(prof_pool) + 63) / 64 * 64);
    if (!input || !arena || !scratch || !t || !med || !kinds || !pp) {
        fprintf(stderr, "layer_prof: out of memory\n");
        return 1;
    }
    for (int i = 0; i < 3 * size * size; i++) input[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    memset(pp, 0, sizeof(*pp));
    pp->g = &g;
    pp->input = input;
    pp->arena = arena;
    pp->scratch = scratch;
    pp->scratch_stride = stride;
    atomic_init(&pp->step.next, 0);
    atomic_init(&pp->step.done, 0);
    atomic_init(&pp->published, 0);
    atomic_init(&pp->quit, 0);
    if (n_threads > 1) {
        if (threadpool_init(&pp->tp, n_threads, prof_worker, pp) != CNN_OK) {
            fprintf(stderr, "layer_prof: cannot start %d threads\n", n_threads);
            return 1;
        }
        threadpool_start(pp->tp);
    }
    unsigned round = 0;
    for (int it = -10; it < iters; it++)
        for (int i = 0; i < g.n_nodes; i++) {
            const double t0 = now_ns();
            if (n_threads > 1 && graph_node_parts(&g, i, n_threads) > 1) {
                atomic_store_explicit(&pp->published, (uint64_t)(round + 1) << 32 | (uint64_t)i, memory_order_release);
                prof_run_parts(pp, i, round, 0);
                threadpool_step_wait(pp->tp, &pp->step, round, n_threads);
                round++;
            } else {
                graph_run_node_part(&g, i, input, arena, scratch, 0, 1);
            }
            if (it >= 0) t[(size_t)i * (size_t)iters + (size_t)it] = now_ns() - t0;
        }
    if (pp->tp) {
        atomic_store_explicit(&pp->quit, 1, memory_order_release);
        threadpool_free(pp->tp);
    }
    double total = 0.0;
    int n_kinds = 0;
    for (int i = 0; i < g.n_nodes; i++) {
        qsort(t + (size_t)i * (size_t)iters, (size_t)iters, sizeof(double), cmp_double);
        med[i] = t[(size_t)i * (size_t)iters + (size_t)iters / 2] / 1e3;
        total += med[i];
        char name[64];
        kind_name(&g.nodes[i], name, sizeof(name));
        int k = 0;
        while (k < n_kinds && strcmp(kinds[k].name, name)) k++;
        if (k == n_kinds) snprintf(kinds[n_kinds++].name, sizeof(kinds[0].name), "%s", name);
        kinds[k].n_nodes++;
        kinds[k].us += med[i];
    }
    qsort(kinds, (size_t)n_kinds, sizeof(*kinds), cmp_kind);

    FILE *js = NULL;
    if (json_path && !(js = fopen(json_path, "w"))) {
        fprintf(stderr, "layer_prof: cannot write %s\n", json_path);
        return 1;
    }
    printf("%s, %d thread%s, %d passes, median per node\n", pos[0], n_threads, n_threads > 1 ? "s" : "", iters);
    printf("node kernel                              c_in  h_in  w_in  c_out h_out w_out act fused parts "
           "median_us  share\n");
    if (js) fprintf(js, "{\"arch\": \"%s\", \"threads\": %d, \"iters\": %d, \"nodes\": [", pos[0], n_threads, iters);
    for (int i = 0; i < g.n_nodes; i++) {
        const graph_node *n = &g.nodes[i];
        const graph_value *x = &g.values[n->in[0]], *y = &g.values[n->out];
        int act = 0;
        if (n->op == NODE_CONV) act = n->p.conv.p.act;
        if (n->op == NODE_LINEAR) act = n->p.linear.act;
        char name[64];
        kind_name(n, name, sizeof(name));
        const int parts = graph_node_parts(&g, i, n_threads);
        printf("%4d %-34s %5d %5d %5d %6d %5d %5d %3d  %s%s  %4d %10.1f %5.1f%%\n", i, name, x->c, x->h, x->w, y->c,
               y->h, y->w, act, n->scale_slot ? "S" : "-", n->residual_slot ? "R" : "-", parts, med[i],
               100.0 * med[i] / total);
        if (js)
            fprintf(js,
                    "%s\n {\"node\": %d, \"kernel\": \"%s\", \"in\": [%d, %d, %d], \"out\": [%d, %d, %d], "
                    "\"act\": %d, \"parts\": %d, \"median_us\": %.2f}",
                    i ? "," : "", i, name, x->c, x->h, x->w, y->c, y->h, y->w, act, parts, med[i]);
    }
    printf("sum of medians: %.1f us\n\nby kernel (sum of the node medians):\n", total);
    printf("kernel                              nodes        us  share\n");
    if (js) fprintf(js, "],\n \"sum_us\": %.2f, \"kernels\": [", total);
    for (int k = 0; k < n_kinds; k++) {
        printf("%-34s %6d %9.1f %5.1f%%\n", kinds[k].name, kinds[k].n_nodes, kinds[k].us, 100.0 * kinds[k].us / total);
        if (js)
            fprintf(js, "%s\n {\"kernel\": \"%s\", \"nodes\": %d, \"us\": %.2f, \"share\": %.4f}", k ? "," : "",
                    kinds[k].name, kinds[k].n_nodes, kinds[k].us, kinds[k].us / total);
    }
    if (js) {
        fprintf(js, "]}\n");
        if (fclose(js)) {
            fprintf(stderr, "layer_prof: cannot write %s\n", json_path);
            return 1;
        }
    }
    free(pp);
    free(kinds);
    free(med);
    free(t);
    free(scratch);
    free(arena);
    free(input);
    graph_free(&g);
    weights_free(w);
    return 0;
}
