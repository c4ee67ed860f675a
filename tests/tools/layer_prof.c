/* layer_prof: per-node time of one architecture's graph at 1 thread (kernel tuning aid).
 *
 *   layer_prof ARCH WEIGHTS.safetensors [ITERS]
 *
 * Builds the graph as the registry does (torch padding, BatchNorm eps 1e-3 for MobileNetV3 and
 * 1e-5 otherwise; the times do not depend on it), plans it, runs it ITERS times (default 200) node
 * by node and prints each node's median time, its shape and its share of the summed medians. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../models/archs.h"

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

static const char *op_name(const graph_node *n)
{
    static const char *const names[] = {"conv", "pool", "adaptive_avg", "linear", "scale", "add", "concat",
                                        "concat_shuffle", "folded"};
    if (n->op == NODE_CONV && n->p.conv.path == CONV_PATH_PW_DW) return "conv+dwconv";
    if (n->op == NODE_CONV && n->p.conv.path == CONV_PATH_DEPTHWISE) return "dwconv";
    return names[n->op];
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: layer_prof ARCH WEIGHTS.safetensors [ITERS]\n");
        return 2;
    }
    const int iters = argc > 3 ? atoi(argv[3]) : 200;
    int (*build)(graph_builder *, int) = NULL;
    int size = 224;
    float eps = 1e-5f;
    if (!strcmp(argv[1], "mobilenet_v3_large")) build = mobilenet_v3_large_build, eps = 1e-3f;
    else if (!strcmp(argv[1], "mobilenet_v3_small")) build = mobilenet_v3_small_build, eps = 1e-3f;
    else if (!strcmp(argv[1], "shufflenet_v2_x1_0")) build = shufflenet_v2_x1_0_build;
    else if (!strcmp(argv[1], "alexnet")) build = alexnet_build;
    else if (!strcmp(argv[1], "inception_v3")) build = inception_v3_build, size = 299;
    if (!build || iters < 1) {
        fprintf(stderr, "layer_prof: unknown architecture '%s' or bad ITERS\n", argv[1]);
        return 2;
    }
    char err[512];
    weights *w = NULL;
    if (weights_open(&w, argv[2], err, sizeof(err)) != CNN_OK) {
        fprintf(stderr, "layer_prof: %s\n", err);
        return 1;
    }
    graph g = {0};
    graph_builder b = {&g, w, 0, eps, CNN_OK, err, sizeof(err)};
    g.output = build(&b, size);
    if (b.status != CNN_OK || graph_plan(&g) != CNN_OK) {
        fprintf(stderr, "layer_prof: %s\n", b.status != CNN_OK ? err : "graph_plan failed");
        return 1;
    }
    float *input = calloc((size_t)3 * size * size, sizeof(float));
    float *arena = aligned_alloc(64, (g.arena_floats + 16) * sizeof(float));
    float *scratch = aligned_alloc(64, (g.scratch_floats + 16) * sizeof(float));
    double *t = malloc((size_t)g.n_nodes * (size_t)iters * sizeof(double));
    if (!input || !arena || !scratch || !t) return 1;
    for (int i = 0; i < 3 * size * size; i++) input[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    for (int it = -10; it < iters; it++)
        for (int i = 0; i < g.n_nodes; i++) {
            const double t0 = now_ns();
            graph_run_node_at(&g, i, input, arena, scratch);
            if (it >= 0) t[(size_t)i * (size_t)iters + (size_t)it] = now_ns() - t0;
        }
    double total = 0.0, *med = malloc((size_t)g.n_nodes * sizeof(double));
    for (int i = 0; i < g.n_nodes; i++) {
        qsort(t + (size_t)i * (size_t)iters, (size_t)iters, sizeof(double), cmp_double);
        med[i] = t[(size_t)i * (size_t)iters + (size_t)iters / 2] / 1e3;
        total += med[i];
    }
    printf("node op            c_in   h_in  w_in  c_out  h_out w_out  k s act  fused  median_us  share\n");
    for (int i = 0; i < g.n_nodes; i++) {
        const graph_node *n = &g.nodes[i];
        const graph_value *x = &g.values[n->in[0]], *y = &g.values[n->out];
        int k = 0, s = 0, act = 0;
        if (n->op == NODE_CONV) k = n->p.conv.p.k_h, s = n->p.conv.p.stride_h, act = n->p.conv.p.act;
        if (n->op == NODE_LINEAR) act = n->p.linear.act;
        printf("%4d %-13s %5d %5d %5d %6d %5d %5d %2d %1d %3d  %s%s %10.1f %5.1f%%\n", i, op_name(n), x->c, x->h, x->w,
               y->c, y->h, y->w, k, s, act, n->scale_slot ? "S" : "-", n->residual_slot ? "R" : "-", med[i],
               100.0 * med[i] / total);
    }
    printf("sum of medians: %.1f us\n", total);
    free(med);
    free(t);
    free(scratch);
    free(arena);
    free(input);
    graph_free(&g);
    weights_free(w);
    return 0;
}
