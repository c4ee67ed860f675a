/* exec_timeline: per node and thread, the executor's compute and wait times over whole inferences
 * (graph_run_part_range's loop with timestamps), next to the 1-thread node time.
 *
 *   exec_timeline ARCH WEIGHTS.safetensors [ITERS] [--threads N]
 *
 * For each node: median over ITERS passes of each thread's compute (its claimed parts) and of its
 * wait for the other parts, and the pass median. Branch segments run as graph_run_part_range runs
 * them (timed as one entry on their first node). */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../models/archs.h"
#include "../../models/model.h"

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

#define TL_MAXT 4
typedef struct {
    const graph *g;
    const float *input;
    float *arena, *scratch;
    size_t scratch_stride;
    threadpool *tp;
    threadpool_step *steps;
    int iters;
    double *comp[TL_MAXT], *wait[TL_MAXT]; /* [node * iters + it] */
    int cur_it;
} tl_ctx;

static void tl_run(tl_ctx *c, unsigned job, int ith)
{
    const graph *g = c->g;
    const int nth = threadpool_size(c->tp);
    float *scratch = c->scratch + (size_t)ith * c->scratch_stride;
    const int it = c->cur_it;
    for (int i = 0; i < g->n_nodes; i++) {
        const graph_node *n = &g->nodes[i];
        const double t0 = now_ns();
        if (nth == 2 && n->seg_end > 0) {
            graph_run_part_range(g, c->input, c->arena, scratch, c->tp, c->steps, job, ith, i, n->seg_end);
            if (it >= 0) c->comp[ith][(size_t)i * c->iters + it] = now_ns() - t0, c->wait[ith][(size_t)i * c->iters + it] = 0;
            for (int j = i + 1; j < n->seg_end; j++)
                if (it >= 0) c->comp[ith][(size_t)j * c->iters + it] = c->wait[ith][(size_t)j * c->iters + it] = 0;
            i = n->seg_end - 1;
            continue;
        }
        const int n_parts = graph_node_parts(g, i, nth);
        int claim, first = 1;
        while ((claim = threadpool_step_claim(&c->steps[i], job, n_parts)) >= 0) {
            const int part = n_parts == 2 ? (first ? ith : 1 - ith) : claim;
            first = 0;
            graph_run_node_part(g, i, c->input, c->arena, scratch, part, n_parts);
            threadpool_step_finish(c->tp, &c->steps[i]);
        }
        const double t1 = now_ns();
        threadpool_step_wait(c->tp, &c->steps[i], job, n_parts);
        const double t2 = now_ns();
        if (it >= 0) {
            c->comp[ith][(size_t)i * c->iters + it] = t1 - t0;
            c->wait[ith][(size_t)i * c->iters + it] = t2 - t1;
        }
    }
}

static void tl_worker(void *arg, int ith, int nth, unsigned job)
{
    (void)nth;
    tl_run(arg, job, ith);
}

/* The median, or with EXEC_TIMELINE_Q=q the q-quantile (e.g. 0.1: the fast passes, which another
 * process on the machine did not slow down). */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    const char *q = getenv("EXEC_TIMELINE_Q");
    return v[q ? (int)(atof(q) * (n - 1)) : n / 2];
}

int main(int argc, char **argv)
{
    int n_threads = 2, iters = 200, n_pos = 0;
    const char *pos[3] = {NULL, NULL, NULL};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) n_threads = atoi(argv[++i]);
        else if (n_pos < 3) pos[n_pos++] = argv[i];
    }
    if (n_pos < 2) {
        fprintf(stderr, "usage: exec_timeline ARCH WEIGHTS.safetensors [ITERS] [--threads N]\n");
        return 2;
    }
    if (n_pos == 3) iters = atoi(pos[2]);
    /* the registry's builder, input size and BatchNorm eps, as model_load uses them */
    const arch_builder *ab = model_arch_builder(pos[0]);
    const model_arch *arch = model_arch_find(pos[0]);
    const int size = arch ? arch->input_size : 0;
    if (!ab || !arch || iters < 1 || n_threads < 1 || n_threads > TL_MAXT) {
        fprintf(stderr, "exec_timeline: unknown architecture '%s', bad ITERS or bad --threads (1..%d)\n", pos[0], TL_MAXT);
        return 2;
    }
    char err[512];
    weights *w = NULL;
    if (weights_open(&w, pos[1], err, sizeof(err)) != CNN_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    graph g = {0};
    graph_builder b = {.g = &g, .w = w, .bn_eps = ab->bn_eps, .status = CNN_OK, .err = err, .err_bytes = sizeof(err)};
    g.output = ab->build(&b, size);
    if (b.status != CNN_OK || graph_plan(&g) != CNN_OK) {
        fprintf(stderr, "exec_timeline: %s\n", b.status != CNN_OK ? err : "graph_plan failed");
        return 1;
    }
    const size_t stride = (g.scratch_floats + 16 + 15) / 16 * 16;
    tl_ctx c = {0};
    float *input = calloc((size_t)3 * size * size, sizeof(float));
    for (int i = 0; input && i < 3 * size * size; i++) input[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    c.g = &g;
    c.input = input;
    c.arena = aligned_alloc(64, (g.arena_floats + 16) * sizeof(float));
    c.scratch = aligned_alloc(64, stride * (size_t)n_threads * sizeof(float));
    c.scratch_stride = stride;
    c.iters = iters;
    c.steps = aligned_alloc(64, (size_t)g.n_nodes * sizeof *c.steps);
    for (int i = 0; c.steps && i < g.n_nodes; i++) atomic_init(&c.steps[i].next, 0), atomic_init(&c.steps[i].done, 0);
    for (int t = 0; t < n_threads; t++) {
        c.comp[t] = calloc((size_t)g.n_nodes * iters, sizeof(double));
        c.wait[t] = calloc((size_t)g.n_nodes * iters, sizeof(double));
    }
    double *pass = calloc((size_t)iters, sizeof(double));
    int ok = input && c.arena && c.scratch && c.steps && pass;
    for (int t = 0; t < n_threads; t++) ok = ok && c.comp[t] && c.wait[t];
    if (!ok) {
        fprintf(stderr, "exec_timeline: out of memory\n");
        return 1;
    }
    if (n_threads > 1 && threadpool_init(&c.tp, n_threads, tl_worker, &c) != CNN_OK) {
        fprintf(stderr, "exec_timeline: cannot start %d threads\n", n_threads);
        return 1;
    }
    for (int it = -20; it < iters; it++) {
        c.cur_it = it;
        const double t0 = now_ns();
        if (c.tp) {
            const unsigned job = threadpool_start(c.tp);
            tl_run(&c, job, 0);
        } else {
            for (int i = 0; i < g.n_nodes; i++) {
                const double a = now_ns();
                graph_run_node_part(&g, i, input, c.arena, c.scratch, 0, 1);
                if (it >= 0) c.comp[0][(size_t)i * iters + it] = now_ns() - a;
            }
        }
        if (it >= 0) pass[it] = now_ns() - t0;
    }
    threadpool_free(c.tp);
    printf("%s %d threads %d passes: pass median %.1f us\n", pos[0], n_threads, iters, median(pass, iters) / 1e3);
    printf("node  c_in h_in c_out h_out parts   comp0   wait0   comp1   wait1\n");
    double sc[TL_MAXT] = {0}, sw[TL_MAXT] = {0};
    for (int i = 0; i < g.n_nodes; i++) {
        const graph_node *n = &g.nodes[i];
        const graph_value *x = &g.values[n->in[0]], *y = &g.values[n->out];
        printf("%4d %5d %4d %5d %5d %5d", i, x->c, x->h, y->c, y->h, graph_node_parts(&g, i, n_threads));
        for (int t = 0; t < n_threads && t < 2; t++) {
            const double mc = median(c.comp[t] + (size_t)i * iters, iters) / 1e3;
            const double mw = median(c.wait[t] + (size_t)i * iters, iters) / 1e3;
            sc[t] += mc, sw[t] += mw;
            printf(" %7.1f %7.1f", mc, mw);
        }
        printf("\n");
    }
    printf("sum");
    for (int t = 0; t < n_threads && t < 2; t++) printf("  comp%d %.1f wait%d %.1f", t, sc[t], t, sw[t]);
    printf("\n");
    for (int t = 0; t < n_threads; t++) free(c.comp[t]), free(c.wait[t]);
    free(pass), free(c.steps), free(c.scratch), free(c.arena), free(input);
    graph_free(&g);
    weights_free(w);
    return 0;
}
