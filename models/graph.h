/* Internal to models/: a static inference graph (nodes over NCHW values), its builder with a sticky
 * error (architecture code chains calls and checks once), the arena planner and the executor. */
#ifndef CNN_GRAPH_H
#define CNN_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "../core/kernels.h"
#include "../core/status.h"
#include "../core/threadpool.h"
#include "../core/weights.h"

#define GRAPH_MAX_IN 8

typedef enum {
    NODE_CONV = 0,
    NODE_POOL,
    NODE_ADAPTIVE_AVG,
    NODE_LINEAR,
    NODE_SCALE,        /* in[0] * in[1] (per-channel scale vector) */
    NODE_ADD,
    NODE_CONCAT,
    NODE_CONCAT_SHUFFLE, /* channel_shuffle(concat(in[0], in[1]), 2) fused: interleave channels */
    GRAPH_NODE_FOLDED,   /* fused into another node by graph_plan; dropped before planning */
    /* training graphs only (graph_builder.train): */
    NODE_BN,             /* BatchNorm (not folded) */
    NODE_ACT,            /* activation on its own (its backward needs its input) */
    NODE_DROPOUT,
} node_op;

typedef struct {
    int c, h, w;
    int parent;      /* >= 0: a channel slice (view) of another value, starting at channel c_off */
    int c_off;
    size_t offset;   /* in floats from the arena start (views: absolute, parent's + c_off*h*w) */
    int def, last;   /* producing node (-1 for the graph input, GRAPH_DEAD when fusion removed
                        it) and last consuming node */
} graph_value;

#define GRAPH_DEAD (-2)
#define GRAPH_BRANCH_SHARED 3
#define GRAPH_SHARES 32

typedef struct {
    node_op op;
    int n_in;
    int in[GRAPH_MAX_IN];
    int out;
    const float *w, *b;  /* NODE_LINEAR: weights (PyTorch layout) and bias; NODE_POOL: a bias and
                            activation (act) after the pool, or NULL (graph_plan's pool / 1x1 swap) */
    int scale_slot, residual_slot; /* NODE_CONV fused by graph_plan: index in in[] of the input
                                      scale / residual (conv2d_plan_forward_part), 0 if none */
    union {
        conv2d_plan conv;  /* path, weights, scratch and parts, chosen at load; fused by
                              graph_plan with the depthwise conv after it (CONV_PATH_PW_DW*),
                              out is then the depthwise conv's output, or before it
                              (CONV_PATH_DW_PW), in[0] then the depthwise conv's input */
        pool2d_params pool;
        struct { int n_in, n_out; act_kind act; } linear;
    } p;
    /* training graphs: tensor indices (graph.tensors, -1 none) of the weight / BN gamma and the
     * bias / BN beta, the BN running statistics; the activation, BN eps and momentum, dropout
     * probability and layer number */
    int t_w, t_b, t_mean, t_var;
    act_kind act;
    float eps, momentum, drop_p;
    int drop_layer;
    /* graph_plan's branch segments (graph_run_part on two threads): seg_end > 0 on a segment's
     * first node, one past its last; branch 1 or 2 on its nodes: the thread (ith + 1) that runs the
     * node whole, GRAPH_BRANCH_SHARED on at most one conv of the segment that both threads run,
     * thread 0 its output channels' shares [0, share) of GRAPH_SHARES (conv2d_plan_part_share),
     * thread 1 the rest; 0 outside segments */
    int seg_end, branch, share;
    int part_rows; /* graph_plan: split by rows / positions (conv2d_plan_part_rows) */
} graph_node;

/* A named tensor of a training graph, owned (a copy of the file's, or a new head's): a trainable
 * parameter, or a BatchNorm running statistic (trainable 0). */
typedef struct {
    char *name;
    int n_dims;
    int64_t shape[4];
    size_t n;
    float *data;
    int trainable, is_bn, is_head;
} graph_tensor;

typedef struct {
    graph_node *nodes;
    int n_nodes, cap_nodes;
    graph_value *values;
    int n_values, cap_values;
    int input, output;
    float **owned;        /* folded weights owned by the graph, each in one of the slabs */
    int n_owned, cap_owned;
    size_t owned_bytes;
    void **slabs;         /* the memory of the owned tensors (gb_alloc_owned) */
    int n_slabs, cap_slabs;
    char *slab_next;      /* where the next small tensor goes in the slab they fill now */
    size_t slab_left;     /* bytes left there (0 before the first slab) */
    size_t arena_floats;  /* activations */
    size_t scratch_floats;/* largest conv plan's scratch (graph_plan): one per thread */
    int64_t n_params, n_macs;
    graph_tensor *tensors; /* training graphs */
    int n_tensors, cap_tensors;
} graph;

void graph_free(graph *g);

/* Plan the activation arena: one offset per value, buffers reused once their last reader has run.
 * First fuses, where the conv plans allow (conv2d_plan_fusable), a per-channel scale node
 * into the convolution that alone reads it, and an add into the activation-free convolution whose
 * output only it reads (MobileNetV3's squeeze-and-excitation scale and residual); a large pointwise
 * expansion into the stride-2 depthwise convolution that alone reads it (conv2d_pw_dw_fusable:
 * computed in bands of rows that stay in cache); swaps an average pool and the 1x1 convolution
 * that alone reads it when that pools fewer channels (inference graphs); and turns the
 * inputs of a concat that alone reads them into channel slices of its output (no copy). */
cnn_status graph_plan(graph *g);

/* Greedy interval placement (graph_plan's arena, the training gradients): n items taken in order,
 * item i of size[i] floats alive over nodes [start[i], end[i]], each placed at the lowest offset
 * not colliding with an already placed item alive at the same time. Returns the total floats. */
size_t graph_place(int n, const int *order, const size_t *size, const int *start, const int *end, size_t *offset);

/* Run the graph: input is the external input value, arena/scratch sized by graph_plan. Returns a pointer
 * to the output value inside the arena. */
const float *graph_run(const graph *g, const float *input, float *arena, float *scratch);

/* Part ith of nth of node i on the calling thread (per-layer profiling: tests/tools/layer_prof);
 * nth == 1 is the whole node, as graph_run runs it. */
void graph_run_node_part(const graph *g, int i, const float *input, float *arena, float *scratch, int ith, int nth);

/* Parts of node i in graph_run_part on n_threads threads: n_threads, or 1 for a node run whole on
 * one thread (too small to split, or an OpenBLAS path). */
int graph_node_parts(const graph *g, int i, int n_threads);

/* One thread's share of graph_run by the threads of tp: called by each thread of job (see
 * threadpool.h) with the same input and arena, its own scratch (scratch_floats) and steps, one
 * zero-initialized threadpool_step per node, shared by the threads and kept from job to job. Each
 * node is split into parts of its output (kernels_part), one per thread, or is one part when small;
 * a thread computes the parts it claims and waits for the node's other parts before the next node.
 * On return the output (at the arena offset of g->output) is complete and bit-identical to
 * graph_run's. */
void graph_run_part(const graph *g, const float *input, float *arena, float *scratch, threadpool *tp,
                    threadpool_step *steps, unsigned job, int ith);

/* The same over nodes [i0, i1) only (graph_run_range on one thread). Step counters assume every job
 * of a pool runs every step: before starting a job that runs a range of the nodes, the caller brings
 * the steps of that range to the job (graph_steps_sync, with the number threadpool_start will return
 * and the pool's size); the steps of earlier jobs are all finished by then, so this is safe. */
void graph_run_part_range(const graph *g, const float *input, float *arena, float *scratch, threadpool *tp,
                          threadpool_step *steps, unsigned job, int ith, int i0, int i1);
void graph_run_range(const graph *g, const float *input, float *arena, float *scratch, int i0, int i1);
void graph_steps_sync(const graph *g, threadpool_step *steps, int nth, unsigned job, int i0, int i1);

/* Batched tail: the chain of linear layers that ends the graph, nodes [graph_tail_start, n_nodes)
 * (n_nodes when the graph does not end in one), run on n_batch inputs at once with
 * linear_batch_forward (each row bit-identical to graph_run's). graph_tail_input points at the
 * first tail node's input in the arena after graph_run_range(0, graph_tail_start) (NULL without a
 * tail). graph_run_tail_batch reads n_batch rows of that input from a, uses a and b (n_batch x
 * graph_tail_floats each) as ping-pong buffers and returns the one holding the n_batch rows of
 * logits. tp NULL: on the calling thread; else called by every thread of a job, parts by output
 * rows on steps[i] of each tail node (synced as above). */
int graph_tail_start(const graph *g);
size_t graph_tail_floats(const graph *g);
const float *graph_tail_input(const graph *g, const float *input, const float *arena);
float *graph_run_tail_batch(const graph *g, int n_batch, float *a, float *b, threadpool *tp, threadpool_step *steps,
                            unsigned job);

/* ---- builder ---- */

typedef struct {
    graph *g;
    weights *w;
    int tf_same;       /* TF "SAME" padding for every conv and pool window */
    float bn_eps;
    cnn_status status; /* sticky: first error wins, later calls return -1 */
    char *err;
    size_t err_bytes;
    /* Training graph (train 1): BN not folded (NODE_BN, momentum bn_momentum), activations as
     * NODE_ACT, dropout nodes when dropout is set, every tensor an owned graph_tensor; the layer
     * named head_name gets head_classes outputs, initialized from head_seed, when head_classes > 0. */
    int train, dropout;
    float bn_momentum;
    const char *head_name;
    int head_classes;
    uint64_t head_seed;
    int n_dropout;
} graph_builder;

typedef struct {
    int c_out, k_h, k_w, stride, pad_h, pad_w, groups;
    act_kind act;
} conv_spec;

int gb_input(graph_builder *b, int c, int h, int w);
/* Conv without bias followed by BatchNorm (folded) when bn_name != NULL; conv with bias otherwise.
 * Tensor names: conv_name.weight, [conv_name.bias], bn_name.{weight,bias,running_mean,running_var}. */
int gb_conv(graph_builder *b, int x, const conv_spec *s, const char *conv_name, const char *bn_name);
int gb_maxpool(graph_builder *b, int x, int k, int stride, int pad, int ceil_mode);
int gb_avgpool(graph_builder *b, int x, int k, int stride, int pad, int count_include_pad);
int gb_adaptive_avg(graph_builder *b, int x, int h_out, int w_out);
/* Linear on the flattened value; n_out <= 0 takes it from the weight's shape. */
int gb_linear(graph_builder *b, int x, int n_out, act_kind act, const char *name);
/* Squeeze-and-excitation as in torchvision: x * hsigmoid(fc2(relu(fc1(avgpool(x))))), fc = 1x1 conv. */
int gb_se(graph_builder *b, int x, int n_squeeze, const char *fc1_name, const char *fc2_name);
int gb_add(graph_builder *b, int x, int y);
int gb_concat(graph_builder *b, int n, const int *xs);
int gb_concat_shuffle(graph_builder *b, int x, int y);
int gb_slice(graph_builder *b, int x, int c_off, int c);
/* torch.nn.Dropout(p): a node in a training graph with dropout on, x itself otherwise. */
int gb_dropout(graph_builder *b, int x, float p);
int gb_channels(const graph_builder *b, int x);

/* snprintf into a name buffer; names longer than the buffer are a programmer error. */
const char *gb_name(char *buf, size_t buf_bytes, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
