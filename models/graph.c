#include "graph.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../core/train.h"

#define ARENA_ALIGN_FLOATS 16 /* 64-byte alignment for every value */

void graph_free(graph *g)
{
    if (!g) return;
    for (int i = 0; i < g->n_slabs; i++) free(g->slabs[i]);
    free(g->slabs);
    free(g->owned);
    for (int i = 0; i < g->n_tensors; i++) {
        free(g->tensors[i].name);
        free(g->tensors[i].data);
    }
    free(g->tensors);
    free(g->nodes);
    free(g->values);
    memset(g, 0, sizeof(*g));
}

const char *gb_name(char *buf, size_t buf_bytes, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, buf_bytes, fmt, ap);
    va_end(ap);
    (void)n;
    return buf;
}

/* ---- builder internals ---- */

static int gb_fail(graph_builder *b, cnn_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int gb_fail(graph_builder *b, cnn_status s, const char *fmt, ...)
{
    if (b->status == CNN_OK) {
        b->status = s;
        if (b->err && b->err_bytes) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(b->err, b->err_bytes, fmt, ap);
            va_end(ap);
        }
    }
    return -1;
}

static int gb_ok(const graph_builder *b, int x) { return b->status == CNN_OK && x >= 0; }

static int gb_new_value(graph_builder *b, int c, int h, int w)
{
    graph *g = b->g;
    if (c <= 0 || h <= 0 || w <= 0)
        return gb_fail(b, CNN_ERR_SHAPE, "graph: value of non-positive size %dx%dx%d", c, h, w);
    if (g->n_values == g->cap_values) {
        int cap = g->cap_values ? 2 * g->cap_values : 64;
        graph_value *v = realloc(g->values, (size_t)cap * sizeof(*v));
        if (!v) return gb_fail(b, CNN_ERR_NOMEM, "graph: out of memory");
        g->values = v;
        g->cap_values = cap;
    }
    graph_value *v = &g->values[g->n_values];
    memset(v, 0, sizeof(*v));
    v->c = c; v->h = h; v->w = w;
    v->parent = -1;
    v->def = g->n_nodes;
    v->last = -1;
    return g->n_values++;
}

static graph_node *gb_new_node(graph_builder *b, node_op op)
{
    graph *g = b->g;
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? 2 * g->cap_nodes : 64;
        graph_node *n = realloc(g->nodes, (size_t)cap * sizeof(*n));
        if (!n) { gb_fail(b, CNN_ERR_NOMEM, "graph: out of memory"); return NULL; }
        g->nodes = n;
        g->cap_nodes = cap;
    }
    graph_node *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof(*n));
    n->op = op;
    n->t_w = n->t_b = n->t_mean = n->t_var = -1;
    return n;
}

/* Append a node reading ins and producing a new c x h x w value; returns the value id. */
static int gb_emit(graph_builder *b, node_op op, int n_in, const int *ins, int c, int h, int w, graph_node **out)
{
    int y = gb_new_value(b, c, h, w);
    if (y < 0) return -1;
    graph_node *n = gb_new_node(b, op);
    if (!n) return -1;
    n->n_in = n_in;
    for (int i = 0; i < n_in; i++) n->in[i] = ins[i];
    n->out = y;
    b->g->n_nodes++;
    *out = n;
    return y;
}

/* Owned tensors live in slabs that start on a 2 MiB boundary in memory advised for transparent huge
 * pages (MADV_HUGEPAGE), small ones back to back (64-byte aligned) in a shared slab, each larger one
 * in a slab of its own. A model's folded weights then take a few huge pages instead of thousands of
 * 4 KiB pages scattered by malloc: a layer that streams weights takes a TLB miss per 2 MiB, the
 * hardware prefetchers, which stop at 4 KiB page boundaries, run on, and where the weights fall in
 * the physically indexed caches no longer depends on the pages a process happens to get. The unused
 * end of a slab is never touched, so it takes no memory. */
#define GB_HUGE_BYTES ((size_t)2 << 20)
#define GB_SLAB_BYTES ((size_t)8 << 20)
#define GB_OWNED_ALIGN ((size_t)64)

/* A new slab of at least `bytes` (a multiple of 2 MiB), or NULL. */
static void *gb_new_slab(graph *g, size_t bytes)
{
    if (g->n_slabs == g->cap_slabs) {
        int cap = g->cap_slabs ? 2 * g->cap_slabs : 16;
        void **s = realloc(g->slabs, (size_t)cap * sizeof(*s));
        if (!s) return NULL;
        g->slabs = s;
        g->cap_slabs = cap;
    }
    void *p = aligned_alloc(GB_HUGE_BYTES, bytes);
    if (!p) return NULL;
    madvise(p, bytes, MADV_HUGEPAGE); /* a hint: without huge pages the slab still works */
    g->slabs[g->n_slabs++] = p;
    return p;
}

static float *gb_alloc_owned(graph_builder *b, size_t n_floats)
{
    graph *g = b->g;
    if (g->n_owned == g->cap_owned) {
        int cap = g->cap_owned ? 2 * g->cap_owned : 64;
        float **o = realloc(g->owned, (size_t)cap * sizeof(*o));
        if (!o) { gb_fail(b, CNN_ERR_NOMEM, "graph: out of memory"); return NULL; }
        g->owned = o;
        g->cap_owned = cap;
    }
    const size_t bytes = (n_floats * sizeof(float) + GB_OWNED_ALIGN - 1) / GB_OWNED_ALIGN * GB_OWNED_ALIGN;
    float *p = NULL;
    if (bytes >= GB_HUGE_BYTES) {
        p = gb_new_slab(g, (bytes + GB_HUGE_BYTES - 1) / GB_HUGE_BYTES * GB_HUGE_BYTES);
    } else {
        char *slab = g->slab_left < bytes ? gb_new_slab(g, GB_SLAB_BYTES) : NULL;
        if (slab) {
            g->slab_next = slab;
            g->slab_left = GB_SLAB_BYTES;
        }
        if (g->slab_left >= bytes) {
            p = (float *)g->slab_next;
            g->slab_next += bytes;
            g->slab_left -= bytes;
        }
    }
    if (!p) { gb_fail(b, CNN_ERR_NOMEM, "graph: out of memory for %zu folded weights", n_floats); return NULL; }
    g->owned[g->n_owned++] = p;
    g->owned_bytes += n_floats * sizeof(float);
    return p;
}

static const float *gb_tensor(graph_builder *b, const char *name, int n_dims, const int64_t *shape, int counts)
{
    if (b->status != CNN_OK) return NULL;
    const float *p = NULL;
    cnn_status s = weights_get_f32(b->w, name, n_dims, shape, &p, b->err, b->err_bytes);
    if (s != CNN_OK) { b->status = s; return NULL; }
    if (counts) {
        int64_t n = 1;
        for (int i = 0; i < n_dims; i++) n *= shape[i];
        b->g->n_params += n;
    }
    return p;
}

/* A training graph's owned tensor: the file's tensor name (shape checked, copied; counted as a
 * parameter when trainable) or, with init_seed_head set, a new head tensor left for the caller to
 * initialize. Returns its index in g->tensors, -1 on error. */
static int gb_train_tensor(graph_builder *b, const char *name, int n_dims, const int64_t *shape, int trainable,
                           int is_bn, int is_head, int from_file)
{
    if (b->status != CNN_OK) return -1;
    graph *g = b->g;
    const float *src = NULL;
    if (from_file && !(src = gb_tensor(b, name, n_dims, shape, trainable))) return -1;
    if (g->n_tensors == g->cap_tensors) {
        int cap = g->cap_tensors ? 2 * g->cap_tensors : 64;
        graph_tensor *t = realloc(g->tensors, (size_t)cap * sizeof(*t));
        if (!t) return gb_fail(b, CNN_ERR_NOMEM, "graph: out of memory");
        g->tensors = t;
        g->cap_tensors = cap;
    }
    graph_tensor *t = &g->tensors[g->n_tensors];
    memset(t, 0, sizeof(*t));
    t->n = 1;
    t->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) t->n *= (size_t)(t->shape[i] = shape[i]);
    t->trainable = trainable;
    t->is_bn = is_bn;
    t->is_head = is_head;
    t->name = strdup(name);
    t->data = malloc(t->n * sizeof(float));
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        return gb_fail(b, CNN_ERR_NOMEM, "graph: out of memory for tensor '%s'", name);
    }
    if (src) memcpy(t->data, src, t->n * sizeof(float));
    else if (trainable) g->n_params += (int64_t)t->n;
    return g->n_tensors++;
}

/* Window geometry along one axis: torch symmetric padding or TF SAME. */
static int gb_axis(const graph_builder *b, int n, int k, int s, int pad, int ceil_mode, int *pb, int *pa)
{
    int out;
    if (b->tf_same) {
        kernels_tf_same(n, k, s, &out, pb, pa);
    } else {
        *pb = *pa = pad;
        out = kernels_out_size(n, k, s, pad, pad, ceil_mode);
    }
    return out;
}

int gb_input(graph_builder *b, int c, int h, int w)
{
    int x = gb_new_value(b, c, h, w);
    if (x < 0) return -1;
    b->g->values[x].def = -1;
    b->g->input = x;
    return x;
}

int gb_channels(const graph_builder *b, int x) { return gb_ok(b, x) ? b->g->values[x].c : 0; }

/* BatchNorm running statistics and affine parameters of c channels. */
typedef struct {
    const float *gamma, *beta, *mean, *var;
} gb_bn;

static void gb_bn_tensors(graph_builder *b, const char *bn_name, int c, gb_bn *bn)
{
    char name[256];
    int64_t shape[1] = {c};
    bn->gamma = gb_tensor(b, gb_name(name, sizeof(name), "%s.weight", bn_name), 1, shape, 1);
    bn->beta = gb_tensor(b, gb_name(name, sizeof(name), "%s.bias", bn_name), 1, shape, 1);
    bn->mean = gb_tensor(b, gb_name(name, sizeof(name), "%s.running_mean", bn_name), 1, shape, 0);
    bn->var = gb_tensor(b, gb_name(name, sizeof(name), "%s.running_var", bn_name), 1, shape, 0);
}

/* Folds BatchNorm into the c_out rows of per_out conv weights w: w' = w * g / sqrt(var + eps)
 * into wf, b' = beta - mean * g / sqrt(var + eps) into bf. */
static void gb_fold_bn(const gb_bn *bn, float eps, int c_out, size_t per_out, const float *w, float *wf,
                       float *bf)
{
    for (int o = 0; o < c_out; o++) {
        double scale = bn->gamma[o] / sqrt((double)bn->var[o] + eps);
        for (size_t i = 0; i < per_out; i++) wf[o * per_out + i] = (float)(w[o * per_out + i] * scale);
        bf[o] = (float)(bn->beta[o] - bn->mean[o] * scale);
    }
}

/* The convolution s applied to value in (padding by the builder's rule). */
static conv2d_params gb_conv_params(const graph_builder *b, const graph_value *in, const conv_spec *s)
{
    conv2d_params p = {0};
    p.c_in = in->c; p.h_in = in->h; p.w_in = in->w;
    p.c_out = s->c_out;
    p.k_h = s->k_h; p.k_w = s->k_w;
    p.stride_h = p.stride_w = s->stride;
    p.groups = s->groups;
    p.act = s->act;
    p.h_out = gb_axis(b, in->h, s->k_h, s->stride, s->pad_h, 0, &p.pad_t, &p.pad_b);
    p.w_out = gb_axis(b, in->w, s->k_w, s->stride, s->pad_w, 0, &p.pad_l, &p.pad_r);
    return p;
}

/* Appends an activation node on x (training graphs); x itself for ACT_NONE. */
static int gb_act(graph_builder *b, int x, act_kind act)
{
    if (!gb_ok(b, x) || act == ACT_NONE) return x;
    const graph_value v = b->g->values[x];
    graph_node *n;
    int y = gb_emit(b, NODE_ACT, 1, &x, v.c, v.h, v.w, &n);
    if (y >= 0) n->act = act;
    return y;
}

/* gb_conv of a training graph: the conv (weights owned, PyTorch layout, plus a packed copy the
 * executor refreshes when the plan packs), BatchNorm and the activation as their own nodes. */
static int gb_conv_train(graph_builder *b, int x, const conv_spec *s, const char *conv_name, const char *bn_name)
{
    const graph_value in = b->g->values[x];
    const int c_per_g = in.c / s->groups;
    char name[256];
    int64_t wshape[4] = {s->c_out, c_per_g, s->k_h, s->k_w}, cshape[1] = {s->c_out};
    const int tw = gb_train_tensor(b, gb_name(name, sizeof(name), "%s.weight", conv_name), 4, wshape, 1, 0, 0, 1);
    const int tb = bn_name ? -1 : gb_train_tensor(b, gb_name(name, sizeof(name), "%s.bias", conv_name), 1, cshape, 1, 0, 0, 1);
    int tg = -1, tbeta = -1, tm = -1, tv = -1;
    if (bn_name) {
        tg = gb_train_tensor(b, gb_name(name, sizeof(name), "%s.weight", bn_name), 1, cshape, 1, 1, 0, 1);
        tbeta = gb_train_tensor(b, gb_name(name, sizeof(name), "%s.bias", bn_name), 1, cshape, 1, 1, 0, 1);
        tm = gb_train_tensor(b, gb_name(name, sizeof(name), "%s.running_mean", bn_name), 1, cshape, 0, 1, 0, 1);
        tv = gb_train_tensor(b, gb_name(name, sizeof(name), "%s.running_var", bn_name), 1, cshape, 0, 1, 0, 1);
    }
    if (b->status != CNN_OK) return -1;
    conv_spec s0 = *s;
    s0.act = ACT_NONE;
    conv2d_params p = gb_conv_params(b, &in, &s0);
    p.train = 1;
    conv2d_plan pl;
    conv2d_plan_init(&pl, &p);
    pl.w = b->g->tensors[tw].data;
    if (pl.packed_floats && !(pl.w = gb_alloc_owned(b, pl.packed_floats))) return -1;
    pl.bias = tb >= 0 ? b->g->tensors[tb].data : NULL;
    graph_node *n;
    int y = gb_emit(b, NODE_CONV, 1, &x, p.c_out, p.h_out, p.w_out, &n);
    if (y < 0) return -1;
    n->p.conv = pl;
    n->t_w = tw;
    n->t_b = tb;
    b->g->n_macs += (int64_t)p.c_out * p.h_out * p.w_out * c_per_g * p.k_h * p.k_w;
    if (bn_name) {
        const int c = y;
        if ((y = gb_emit(b, NODE_BN, 1, &c, p.c_out, p.h_out, p.w_out, &n)) < 0) return -1;
        n->t_w = tg;
        n->t_b = tbeta;
        n->t_mean = tm;
        n->t_var = tv;
        n->eps = b->bn_eps;
        n->momentum = b->bn_momentum;
    }
    return gb_act(b, y, s->act);
}

int gb_conv(graph_builder *b, int x, const conv_spec *s, const char *conv_name, const char *bn_name)
{
    if (!gb_ok(b, x)) return -1;
    const graph_value in = b->g->values[x];
    if (s->groups <= 0 || in.c % s->groups || s->c_out % s->groups)
        return gb_fail(b, CNN_ERR_SHAPE, "%s: %d input channels do not split into %d groups", conv_name, in.c, s->groups);
    if (b->train) return gb_conv_train(b, x, s, conv_name, bn_name);
    int c_per_g = in.c / s->groups;
    char name[256];
    int64_t wshape[4] = {s->c_out, c_per_g, s->k_h, s->k_w};
    const float *w = gb_tensor(b, gb_name(name, sizeof(name), "%s.weight", conv_name), 4, wshape, 1);
    int64_t cshape[1] = {s->c_out};
    const float *bias = NULL;
    gb_bn bn = {0};
    if (bn_name)
        gb_bn_tensors(b, bn_name, s->c_out, &bn);
    else
        bias = gb_tensor(b, gb_name(name, sizeof(name), "%s.bias", conv_name), 1, cshape, 1);
    if (b->status != CNN_OK) return -1;

    const conv2d_params p = gb_conv_params(b, &in, s);
    conv2d_plan pl;
    conv2d_plan_init(&pl, &p);

    /* Weights as the plan's path reads them: BatchNorm folded first, then packed (only the packed
     * copy is kept) when the path packs them. */
    const size_t per_out = (size_t)c_per_g * s->k_h * s->k_w;
    float *unpacked = NULL; /* folded weights freed once packed */
    if (bn_name) {
        float *wf = pl.packed_floats ? (unpacked = malloc(per_out * s->c_out * sizeof(float)))
                                     : gb_alloc_owned(b, per_out * s->c_out);
        float *bf = gb_alloc_owned(b, s->c_out);
        if (!wf || !bf) {
            free(unpacked);
            return gb_fail(b, CNN_ERR_NOMEM, "%s: out of memory folding BatchNorm", conv_name);
        }
        gb_fold_bn(&bn, b->bn_eps, s->c_out, per_out, w, wf, bf);
        w = wf;
        bias = bf;
    }
    if (pl.packed_floats) {
        float *packed = gb_alloc_owned(b, pl.packed_floats);
        if (packed) conv2d_plan_pack(&pl, w, packed);
        free(unpacked);
        if (!packed) return -1;
        w = packed;
    }
    pl.w = w;
    pl.bias = bias;
    graph_node *n;
    int y = gb_emit(b, NODE_CONV, 1, &x, p.c_out, p.h_out, p.w_out, &n);
    if (y < 0) return -1;
    n->p.conv = pl;
    b->g->n_macs += (int64_t)p.c_out * p.h_out * p.w_out * c_per_g * p.k_h * p.k_w;
    return y;
}

static int gb_pool(graph_builder *b, int x, pool_kind kind, int k, int stride, int pad, int ceil_mode,
                   int count_include_pad)
{
    if (!gb_ok(b, x)) return -1;
    const graph_value in = b->g->values[x];
    pool2d_params p = {0};
    p.kind = kind;
    p.c = in.c; p.h_in = in.h; p.w_in = in.w;
    p.k_h = p.k_w = k;
    p.stride_h = p.stride_w = stride;
    /* TF SAME average pooling divides by the real cells only. */
    p.count_include_pad = b->tf_same ? 0 : count_include_pad;
    p.h_out = gb_axis(b, in.h, k, stride, pad, ceil_mode, &p.pad_t, &p.pad_b);
    p.w_out = gb_axis(b, in.w, k, stride, pad, ceil_mode, &p.pad_l, &p.pad_r);
    graph_node *n;
    int y = gb_emit(b, NODE_POOL, 1, &x, in.c, p.h_out, p.w_out, &n);
    if (y < 0) return -1;
    n->p.pool = p;
    return y;
}

int gb_maxpool(graph_builder *b, int x, int k, int stride, int pad, int ceil_mode)
{
    return gb_pool(b, x, POOL_MAX, k, stride, pad, ceil_mode, 0);
}

int gb_avgpool(graph_builder *b, int x, int k, int stride, int pad, int count_include_pad)
{
    return gb_pool(b, x, POOL_AVG, k, stride, pad, 0, count_include_pad);
}

int gb_adaptive_avg(graph_builder *b, int x, int h_out, int w_out)
{
    if (!gb_ok(b, x)) return -1;
    const graph_value in = b->g->values[x];
    if (in.h == h_out && in.w == w_out) return x; /* identity, e.g. AlexNet's 6x6 on a 6x6 input */
    graph_node *n;
    return gb_emit(b, NODE_ADAPTIVE_AVG, 1, &x, in.c, h_out, w_out, &n);
}

/* gb_dense of a training graph: owned weights (a new head of head_classes outputs, its values left
 * to the caller), the activation as its own node. */
static int gb_dense_train(graph_builder *b, int x, int n_out, act_kind act, const char *name, int n_dims)
{
    const graph_value in = b->g->values[x];
    const int n_in = in.c * in.h * in.w;
    const int is_head = b->head_name && !strcmp(name, b->head_name);
    const int new_head = is_head && b->head_classes > 0;
    char buf[256];
    gb_name(buf, sizeof(buf), "%s.weight", name);
    if (new_head) {
        n_out = b->head_classes;
    } else if (n_out <= 0) {
        const weights_tensor *t = weights_find(b->w, buf);
        if (!t) return gb_fail(b, CNN_ERR_MISSING, "missing tensor '%s'", buf);
        if (t->n_dims != n_dims || t->shape[0] <= 0 || t->shape[0] > 1000000)
            return gb_fail(b, CNN_ERR_SHAPE, "tensor '%s': unexpected shape for a classifier", buf);
        n_out = (int)t->shape[0];
    }
    int64_t wshape[4] = {n_out, n_in, 1, 1}, bshape[1] = {n_out};
    const int tw = gb_train_tensor(b, buf, n_dims, wshape, 1, 0, is_head, !new_head);
    const int tb = gb_train_tensor(b, gb_name(buf, sizeof(buf), "%s.bias", name), 1, bshape, 1, 0, is_head, !new_head);
    if (b->status != CNN_OK) return -1;
    if (new_head)
        train_head_init(n_out, n_in, b->head_seed, b->g->tensors[tw].data, b->g->tensors[tb].data);
    graph_node *n;
    int y = gb_emit(b, NODE_LINEAR, 1, &x, n_out, 1, 1, &n);
    if (y < 0) return -1;
    n->p.linear.n_in = n_in;
    n->p.linear.n_out = n_out;
    n->p.linear.act = ACT_NONE;
    n->w = b->g->tensors[tw].data;
    n->b = b->g->tensors[tb].data;
    n->t_w = tw;
    n->t_b = tb;
    b->g->n_macs += (int64_t)n_in * n_out;
    return gb_act(b, y, act);
}

/* Linear layer whose weight is stored with n_dims dims ([out,in] or [out,in,1,1] for 1x1 convs). */
static int gb_dense(graph_builder *b, int x, int n_out, act_kind act, const char *name, int n_dims)
{
    if (!gb_ok(b, x)) return -1;
    const graph_value in = b->g->values[x];
    int n_in = in.c * in.h * in.w;
    char buf[256];
    gb_name(buf, sizeof(buf), "%s.weight", name);
    if (b->train) return gb_dense_train(b, x, n_out, act, name, n_dims);
    if (n_out <= 0) {
        const weights_tensor *t = weights_find(b->w, buf);
        if (!t) return gb_fail(b, CNN_ERR_MISSING, "missing tensor '%s'", buf);
        if (t->n_dims != n_dims || t->shape[0] <= 0 || t->shape[0] > 1000000)
            return gb_fail(b, CNN_ERR_SHAPE, "tensor '%s': unexpected shape for a classifier", buf);
        n_out = (int)t->shape[0];
    }
    int64_t wshape[4] = {n_out, n_in, 1, 1};
    int64_t bshape[1] = {n_out};
    const float *w = gb_tensor(b, buf, n_dims, wshape, 1);
    const float *bias = gb_tensor(b, gb_name(buf, sizeof(buf), "%s.bias", name), 1, bshape, 1);
    if (b->status != CNN_OK) return -1;
    /* a large weight matrix streams from memory at every pass: copied into huge pages (the file's
     * pages then dropped), AlexNet's classifier ran 11 % faster at 1 and 2 threads */
    const size_t w_floats = (size_t)n_out * (size_t)n_in;
    if (w_floats * sizeof(float) >= GB_HUGE_BYTES) {
        float *copy = gb_alloc_owned(b, w_floats);
        if (!copy) return -1;
        memcpy(copy, w, w_floats * sizeof(float));
        weights_release(b->w, w);
        w = copy;
    }
    graph_node *n;
    int y = gb_emit(b, NODE_LINEAR, 1, &x, n_out, 1, 1, &n);
    if (y < 0) return -1;
    n->p.linear.n_in = n_in;
    n->p.linear.n_out = n_out;
    n->p.linear.act = act;
    n->w = w;
    n->b = bias;
    b->g->n_macs += (int64_t)n_in * n_out;
    return y;
}

int gb_linear(graph_builder *b, int x, int n_out, act_kind act, const char *name)
{
    return gb_dense(b, x, n_out, act, name, 2);
}

int gb_se(graph_builder *b, int x, int n_squeeze, const char *fc1_name, const char *fc2_name)
{
    if (!gb_ok(b, x)) return -1;
    int c = b->g->values[x].c;
    int pooled = gb_adaptive_avg(b, x, 1, 1);
    int s1 = gb_dense(b, pooled, n_squeeze, ACT_RELU, fc1_name, 4);
    int s2 = gb_dense(b, s1, c, ACT_HSIGMOID, fc2_name, 4);
    if (!gb_ok(b, s2)) return -1;
    const graph_value in = b->g->values[x];
    int ins[2] = {x, s2};
    graph_node *n;
    return gb_emit(b, NODE_SCALE, 2, ins, in.c, in.h, in.w, &n);
}

int gb_add(graph_builder *b, int x, int y)
{
    if (!gb_ok(b, x) || !gb_ok(b, y)) return -1;
    const graph_value a = b->g->values[x], c = b->g->values[y];
    if (a.c != c.c || a.h != c.h || a.w != c.w)
        return gb_fail(b, CNN_ERR_SHAPE, "graph: add of %dx%dx%d and %dx%dx%d", a.c, a.h, a.w, c.c, c.h, c.w);
    int ins[2] = {x, y};
    graph_node *n;
    return gb_emit(b, NODE_ADD, 2, ins, a.c, a.h, a.w, &n);
}

int gb_concat(graph_builder *b, int n_in, const int *xs)
{
    if (b->status != CNN_OK) return -1;
    if (n_in < 1 || n_in > GRAPH_MAX_IN) return gb_fail(b, CNN_ERR_ARG, "graph: concat of %d inputs", n_in);
    int c = 0;
    const graph_value v0 = b->g->values[xs[0]];
    for (int i = 0; i < n_in; i++) {
        if (xs[i] < 0) return -1;
        const graph_value v = b->g->values[xs[i]];
        if (v.h != v0.h || v.w != v0.w)
            return gb_fail(b, CNN_ERR_SHAPE, "graph: concat of %dx%d and %dx%d maps", v0.h, v0.w, v.h, v.w);
        c += v.c;
    }
    graph_node *n;
    return gb_emit(b, NODE_CONCAT, n_in, xs, c, v0.h, v0.w, &n);
}

int gb_concat_shuffle(graph_builder *b, int x, int y)
{
    if (!gb_ok(b, x) || !gb_ok(b, y)) return -1;
    const graph_value a = b->g->values[x], c = b->g->values[y];
    if (a.c != c.c || a.h != c.h || a.w != c.w)
        return gb_fail(b, CNN_ERR_SHAPE, "graph: shuffle of %dx%dx%d and %dx%dx%d", a.c, a.h, a.w, c.c, c.h, c.w);
    int ins[2] = {x, y};
    graph_node *n;
    return gb_emit(b, NODE_CONCAT_SHUFFLE, 2, ins, 2 * a.c, a.h, a.w, &n);
}

int gb_slice(graph_builder *b, int x, int c_off, int c)
{
    if (!gb_ok(b, x)) return -1;
    const graph_value in = b->g->values[x];
    if (c_off < 0 || c <= 0 || c_off + c > in.c)
        return gb_fail(b, CNN_ERR_SHAPE, "graph: slice [%d,%d) of %d channels", c_off, c_off + c, in.c);
    int y = gb_new_value(b, c, in.h, in.w);
    if (y < 0) return -1;
    graph_value *v = &b->g->values[y];
    v->parent = x;
    v->c_off = c_off;
    v->def = in.def;
    return y;
}

int gb_dropout(graph_builder *b, int x, float p)
{
    if (!gb_ok(b, x) || !b->train || !b->dropout || p <= 0.0f) return x;
    const graph_value v = b->g->values[x];
    graph_node *n;
    int y = gb_emit(b, NODE_DROPOUT, 1, &x, v.c, v.h, v.w, &n);
    if (y < 0) return -1;
    n->drop_p = p;
    n->drop_layer = b->n_dropout++;
    return y;
}

/* ---- planner ---- */

static int graph_root(const graph *g, int v)
{
    while (g->values[v].parent >= 0) v = g->values[v].parent;
    return v;
}

static size_t graph_value_floats(const graph_value *v)
{
    size_t n = (size_t)v->c * v->h * v->w;
    return (n + ARENA_ALIGN_FLOATS - 1) / ARENA_ALIGN_FLOATS * ARENA_ALIGN_FLOATS;
}

/* The only node reading value v (directly or through a view), or -1 (none or several, or v is the
 * graph output). */
static int graph_sole_reader(const graph *g, int v)
{
    if (v == g->output) return -1;
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i].parent == v) return -1;
    int reader = -1;
    for (int n = 0; n < g->n_nodes; n++) {
        if (g->nodes[n].op == GRAPH_NODE_FOLDED) continue;
        for (int i = 0; i < g->nodes[n].n_in; i++)
            if (g->nodes[n].in[i] == v) {
                if (reader >= 0) return -1;
                reader = n;
            }
    }
    return reader;
}

/* A packed 1x1 convolution that can take a fused scale / residual. */
static int graph_fusable_conv(const graph_node *n)
{
    return n->op == NODE_CONV && conv2d_plan_fusable(&n->p.conv) && n->n_in + 1 <= GRAPH_MAX_IN;
}

/* Marks nodes folded into a convolution GRAPH_NODE_FOLDED (see graph_plan); returns how many. */
static int graph_fuse_nodes(graph *g)
{
    int n_fused = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        graph_node *n = &g->nodes[i];
        if (n->op == NODE_SCALE) {
            /* scale(x, s) read only by a conv: the conv reads x and scales while packing */
            const int r = graph_sole_reader(g, n->out);
            if (r < 0) continue;
            graph_node *c = &g->nodes[r];
            if (!graph_fusable_conv(c) || c->in[0] != n->out || c->scale_slot) continue;
            c->in[0] = n->in[0];
            c->scale_slot = c->n_in;
            c->in[c->n_in++] = n->in[1];
            conv2d_plan_fuse_scale(&c->p.conv);
            g->values[n->out].def = GRAPH_DEAD;
            n->op = GRAPH_NODE_FOLDED;
            n_fused++;
        } else if (n->op == NODE_ADD) {
            /* add(conv(..), r) with the conv's output read only here: the conv adds r itself,
             * if r exists by the time the conv runs */
            for (int k = 0; k < 2; k++) {
                const int a = n->in[k], other = n->in[1 - k], d = g->values[a].def;
                if (g->values[a].parent >= 0 || d < 0 || graph_sole_reader(g, a) != i) continue;
                graph_node *c = &g->nodes[d];
                if (!graph_fusable_conv(c) || c->p.conv.p.act != ACT_NONE || c->residual_slot ||
                    other == a || g->values[graph_root(g, other)].def >= d)
                    continue;
                c->residual_slot = c->n_in;
                c->in[c->n_in++] = other;
                g->values[a].def = GRAPH_DEAD;
                c->out = n->out;
                for (int v = 0; v < g->n_values; v++) /* the add's output and its views */
                    if (graph_root(g, v) == n->out) g->values[v].def = d;
                n->op = GRAPH_NODE_FOLDED;
                n_fused++;
                break;
            }
        }
    }
    return n_fused;
}

/* Average pools (count_include_pad, stride 1, same-size output) read only by a 1x1 convolution
 * with fewer output channels (Inception's branch_pool: 768 -> 192 at 17x17): pool and conv
 * commute, the pool's divisor being the same k_h k_w at every output and a padded cell 0 in both
 * orders, so the conv runs first without its bias and activation and the pool averages its
 * c_out channels instead of c_in, adding the bias (a constant, unchanged by averaging) and
 * applying the activation (pool2d_forward_bias_part). Equal up to rounding; inference graphs only
 * (a training conv keeps p.train). The two nodes swap places (the conv at the pool's index); the
 * pool's output value becomes the conv's c_out channel intermediate. Returns how many. */
static int graph_swap_pool_conv(graph *g)
{
    int n_swapped = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        graph_node *n = &g->nodes[i];
        const pool2d_params *pp = &n->p.pool;
        if (n->op != NODE_POOL || pp->kind != POOL_AVG || !pp->count_include_pad || pp->stride_h != 1 ||
            pp->stride_w != 1 || pp->h_out != pp->h_in || pp->w_out != pp->w_in || n->b ||
            g->values[n->out].parent >= 0)
            continue;
        const int r = graph_sole_reader(g, n->out);
        if (r < 0) continue;
        graph_node *c = &g->nodes[r];
        const conv2d_params *cp = &c->p.conv.p;
        if (c->op != NODE_CONV || c->n_in != 1 || !conv2d_plan_fusable(&c->p.conv) || c->p.conv.in_scale ||
            cp->train || cp->groups != 1 || cp->c_out >= cp->c_in || !c->p.conv.bias)
            continue;
        graph_node pool = *n, conv = *c;
        conv.in[0] = pool.in[0];
        conv.out = pool.out;
        conv.p.conv.p.act = ACT_NONE;
        conv.p.conv.bias = NULL;
        pool.in[0] = pool.out;
        pool.out = c->out;
        pool.p.pool.c = cp->c_out;
        pool.b = c->p.conv.bias;
        pool.act = cp->act;
        g->values[pool.in[0]].c = cp->c_out;
        *n = conv;
        *c = pool;
        n_swapped++;
    }
    return n_swapped;
}

/* Pointwise expansions whose output has at least this many floats (1 MiB, about half of a core's
 * L2 on the machines measured) run fused with the stride-2 depthwise conv reading them: smaller
 * maps stay in L2 between the two nodes anyway. */
#define GRAPH_PW_DW_MIN_FLOATS (256 * 1024)

/* Pointwise convs with more inputs than this stay out of the channel-blocked pair: its 7 x 48 GEMM
 * tiles fall behind the GEMM path's 6 x 64 ones as K grows. ShuffleNetV2's pairs (K 116 and 232;
 * MobileNetV3's have K <= 112), layer_prof 1 thread, fused vs unfused: 116 -> 116 28x28 -> 3x3 s2
 * 180 vs 135 + 15 us, 232 -> 232 14 -> 7 ~175 vs 149 + 10, 116 -> 116 14x14 3x3 s1 48.7 vs 38.5 +
 * 11.6; the model's node sum 2613 / 2637 -> 2569 / 2570 us. At 2 threads the unfused GEMMs also
 * split better (exec_timeline, 10 % quantile of 200 passes, 3 alternating runs: 2103 / 2104 / 2216
 * -> 1984 / 1887 / 2012 us). */
#define GRAPH_PW_DWCB_MAX_K 112

/* The graph's own (writable) copy of the weights w, or NULL. */
static float *graph_owned(const graph *g, const float *w)
{
    for (int i = 0; i < g->n_owned; i++)
        if (g->owned[i] == w) return g->owned[i];
    return NULL;
}

/* Marks depthwise convs folded into the pointwise conv before them GRAPH_NODE_FOLDED (see
 * graph_plan): on small maps the channel-blocked pair (CONV_PATH_PW_DWCB, any size), else the
 * stride-2 pair in row bands for large maps; returns how many. */
static int graph_fuse_pw_dw(graph *g)
{
    int n_fused = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        graph_node *n = &g->nodes[i];
        const graph_value *mid = &g->values[n->out];
        if (n->op != NODE_CONV || n->scale_slot || n->residual_slot) continue;
        const int r = graph_sole_reader(g, n->out);
        if (r < 0) continue;
        graph_node *d = &g->nodes[r];
        if (d->op != NODE_CONV || d->n_in != 1 || d->in[0] != n->out) continue;
        float *packed = graph_owned(g, n->p.conv.w);
        if (!(packed && n->p.conv.p.c_in <= GRAPH_PW_DWCB_MAX_K && conv2d_plan_fuse_pw_dwcb(&n->p.conv, &d->p.conv, packed)) &&
            !((size_t)mid->c * mid->h * mid->w >= GRAPH_PW_DW_MIN_FLOATS &&
              conv2d_plan_fuse_pw_dw(&n->p.conv, &d->p.conv)))
            continue;
        g->values[n->out].def = GRAPH_DEAD;
        n->out = d->out;
        for (int v = 0; v < g->n_values; v++) /* the depthwise output and its views */
            if (graph_root(g, v) == d->out) g->values[v].def = i;
        d->op = GRAPH_NODE_FOLDED;
        n_fused++;
    }
    return n_fused;
}

/* Stride-1 depthwise convs whose output has at least this many floats (MobileNetV3-Large's
 * 16 x 112 x 112 and 72 x 56 x 56, 200-225 K) read only by a pointwise conv: the pointwise conv
 * reads the depthwise conv's input and runs both in row bands (CONV_PATH_DW_PW, its residual
 * kept), the depthwise node is marked GRAPH_NODE_FOLDED; returns how many. Smaller maps stay
 * unfused: measured slower fused (layer_prof 1 thread, 28 x 28: MobileNetV3-Small's 88 -> 24
 * 49.5 -> 60.4 us, ShuffleNetV2's 58 -> 58 55 -> 62-64 us: the GEMM's weights stream once per
 * band and the bands leave short GEMM tiles). */
#define GRAPH_DW_PW_MIN_FLOATS (128 * 1024)

static int graph_fuse_dw_pw(graph *g)
{
    int n_fused = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        graph_node *d = &g->nodes[i];
        const graph_value *mid = &g->values[d->out];
        if (d->op != NODE_CONV || d->n_in != 1 || mid->parent >= 0 ||
            (size_t)mid->c * mid->h * mid->w < GRAPH_DW_PW_MIN_FLOATS)
            continue;
        const int r = graph_sole_reader(g, d->out);
        if (r < 0) continue;
        graph_node *n = &g->nodes[r];
        if (n->op != NODE_CONV || n->in[0] != d->out || n->scale_slot || !conv2d_plan_fuse_dw_pw(&n->p.conv, &d->p.conv))
            continue;
        g->values[d->out].def = GRAPH_DEAD;
        n->in[0] = d->in[0];
        d->op = GRAPH_NODE_FOLDED;
        n_fused++;
    }
    return n_fused;
}

/* Concats whose every input is a node's output read by the concat alone: the inputs become views
 * (channel slices) of the concat's output, so their producers write in place, and the concat node
 * is marked GRAPH_NODE_FOLDED. The output then lives from its first producer on. Returns how many. */
static int graph_alias_concats(graph *g)
{
    int n_folded = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        graph_node *n = &g->nodes[i];
        if (n->op != NODE_CONCAT) continue;
        int ok = 1, first = i;
        for (int k = 0; k < n->n_in && ok; k++) {
            const graph_value *v = &g->values[n->in[k]];
            ok = v->parent < 0 && v->def >= 0 && graph_sole_reader(g, n->in[k]) == i;
            for (int j = 0; j < k && ok; j++) ok = n->in[j] != n->in[k];
            if (ok && v->def < first) first = v->def;
        }
        if (!ok) continue;
        int c_off = 0;
        for (int k = 0; k < n->n_in; k++) {
            graph_value *v = &g->values[n->in[k]];
            v->parent = n->out;
            v->c_off = c_off;
            c_off += v->c;
        }
        g->values[n->out].def = first;
        n->op = GRAPH_NODE_FOLDED;
        n_folded++;
    }
    return n_folded;
}

/* Floats from the arena start to value v (a view: its root's offset plus its channel offsets). */
static size_t graph_abs_offset(const graph *g, int v)
{
    const graph_value *x = &g->values[v];
    if (x->parent < 0) return x->offset;
    return graph_abs_offset(g, x->parent) + (size_t)x->c_off * x->h * x->w;
}

/* Drops the nodes marked GRAPH_NODE_FOLDED and renumbers the values' producers. */
static void graph_compact(graph *g)
{
    int kept = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].op == GRAPH_NODE_FOLDED) continue;
        if (kept != i) {
            g->nodes[kept] = g->nodes[i];
            for (int v = 0; v < g->n_values; v++)
                if (g->values[v].def == i) g->values[v].def = kept;
        }
        kept++;
    }
    g->n_nodes = kept;
}

size_t graph_place(int n, const int *order, const size_t *size, const int *start, const int *end, size_t *offset)
{
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const int v = order[i];
        size_t off = 0;
        int moved = 1;
        while (moved) {
            moved = 0;
            for (int j = 0; j < i; j++) {
                const int u = order[j];
                if (end[u] < start[v] || end[v] < start[u]) continue; /* lifetimes disjoint */
                size_t u_end = offset[u] + size[u];
                if (off < u_end && offset[u] < off + size[v]) { off = u_end; moved = 1; }
            }
        }
        offset[v] = off;
        if (off + size[v] > total) total = off + size[v];
    }
    return total;
}

/* Work of node n: multiply-adds, or values touched (graph_node_split, branch costs). */
static int64_t graph_node_work(const graph *g, const graph_node *n)
{
    const graph_value *out = &g->values[n->out], *in = &g->values[n->in[0]];
    const int64_t out_n = (int64_t)out->c * out->h * out->w;
    switch (n->op) {
    case NODE_CONV: {
        const conv2d_params *p = &n->p.conv.p; /* CONV_PATH_PW_DW*: the pointwise conv's work */
        return (int64_t)p->c_out * p->h_out * p->w_out * (p->c_in / p->groups) * p->k_h * p->k_w;
    }
    case NODE_POOL: return out_n * n->p.pool.k_h * n->p.pool.k_w;
    case NODE_ADAPTIVE_AVG: return (int64_t)in->c * in->h * in->w;
    case NODE_LINEAR: return (int64_t)n->p.linear.n_in * n->p.linear.n_out;
    default: return out_n;
    }
}

/* Estimated time of node n in GEMM multiply-adds (branch balancing): Winograd convolutions do
 * 2-2.8x the multiply-adds per second of the GEMM paths, pooling windows a fifth (average) to a tenth
 * (max) of a GEMM's (layer_prof inception_v3, 1 thread). */
static int64_t graph_node_cost(const graph *g, const graph_node *n)
{
    const int64_t w = graph_node_work(g, n);
    if (n->op == NODE_POOL) return w * (n->p.pool.kind == POOL_MAX ? 10 : 5);
    if (n->op != NODE_CONV || n->p.conv.path != CONV_PATH_WINOGRAD) return w;
    const conv2d_params *p = &n->p.conv.p;
    return p->k_h == 1 || p->k_w == 1 ? w / 2 : p->k_h * p->k_w >= 25 ? w * 10 / 28 : w * 10 / 25;
}

/* Branch segments (two threads run whole branches instead of halves of every node): a run of
 * consecutive nodes [s, e) that ends in the writers of one concat's slices (an Inception block
 * after graph_alias_concats) and whose every output is read inside the run only, split into
 * independent components (branches: nodes connected by the values they pass). The run grows
 * backwards from the concat's last writer and stops at the fork, the node whose output every
 * branch reads (the block's input). Branches go to two threads longest first, and one conv that
 * reads only values from before the segment and writes the concat (Inception's branch1x1, Mixed_6a's
 * 3x3 stride-2 branch) may be shared: both threads compute a part of its output channels, sized
 * to even out the threads' estimated times (graph_balance_segment). A segment is kept when its
 * estimated time is at most this share of its nodes' summed costs (else the nodes split as usual). */
#define GRAPH_BRANCH_MAX_SHARE 0.6

static int graph_uf_find(int *uf, int a)
{
    while (uf[a] != a) a = uf[a] = uf[uf[a]];
    return a;
}

/* Every reader of value root r (or of its views) lies in [lo, hi). */
static int graph_read_within(const graph *g, int r, int lo, int hi)
{
    for (int n = 0; n < g->n_nodes; n++)
        for (int k = 0; k < g->nodes[n].n_in; k++)
            if (graph_root(g, g->nodes[n].in[k]) == r && (n < lo || n >= hi)) return 0;
    return 1;
}

/* Estimated time of segment [s, e) as graph_run_segment runs it (graph_node_cost units, node
 * costs w): each thread its own nodes (branch) in order, then its part of the shared node d (-1:
 * none), thread 0's costing share0 of w[d]. */
static int64_t graph_segment_time(const graph *g, int s, int e, const int64_t *w, int d, int64_t share0)
{
    int64_t t[2] = {0, 0};
    for (int j = s; j < e; j++)
        if (j != d) t[g->nodes[j].branch - 1] += w[j];
    if (d >= 0) t[0] += share0, t[1] += w[d] - share0;
    return t[0] > t[1] ? t[0] : t[1];
}

/* Whether node d of segment [s, e) writing concat c can be shared by the two threads: a conv whose
 * path splits its channels unevenly and that reads only values from before the segment. */
static int graph_shareable(const graph *g, int d, int s, int c)
{
    const graph_node *n = &g->nodes[d];
    if (n->op != NODE_CONV || !conv2d_plan_shares(&n->p.conv) || graph_root(g, n->out) != c) return 0;
    for (int k = 0; k < n->n_in; k++)
        for (int v = n->in[k]; v >= 0; v = g->values[v].parent)
            if (g->values[v].def >= s) return 0;
    return 1;
}

/* Assigns the branches of segment [s, e) (components uf, node costs w) to the threads, with one
 * shareable node shared where that gives the lowest estimated time (each candidate's branches
 * longest first to the less loaded thread, then its channel shares tried one by one); sets branch
 * and share of the segment's nodes and returns the estimated time. cost and best: scratch of
 * g->n_nodes. */
static int64_t graph_balance_segment(graph *g, int s, int e, int c, int *uf, const int64_t *w, int64_t *cost,
                                     int *best)
{
    int64_t best_time = -1;
    int best_d = -1, best_share = 0;
    for (int d = s - 1; d < e; d++) {
        if (d >= s && !graph_shareable(g, d, s, c)) continue;
        int64_t load[2] = {0, 0};
        for (int j = s; j < e; j++) cost[j] = 0, g->nodes[j].branch = 0;
        for (int j = s; j < e; j++) cost[graph_uf_find(uf, j)] += j == d ? 0 : w[j];
        for (;;) { /* longest branch first, each to the less loaded thread */
            int r = -1;
            for (int j = s; j < e; j++)
                if (graph_uf_find(uf, j) == j && !g->nodes[j].branch && (r < 0 || cost[j] > cost[r])) r = j;
            if (r < 0) break;
            const int t = load[1] < load[0];
            load[t] += cost[r];
            g->nodes[r].branch = t + 1;
        }
        for (int j = s; j < e; j++) g->nodes[j].branch = g->nodes[graph_uf_find(uf, j)].branch;
        const conv2d_plan *pl = d >= s ? &g->nodes[d].p.conv : NULL;
        for (int q = d >= s; q < (d >= s ? GRAPH_SHARES : 1); q++) {
            int64_t share0 = 0;
            if (pl) {
                const kernels_part p0 = conv2d_plan_part_share(pl, 0, q, GRAPH_SHARES);
                if (p0.hi == p0.lo || p0.hi == pl->p.c_out) continue;
                share0 = w[d] * (p0.hi - p0.lo) / pl->p.c_out;
            }
            const int64_t time = graph_segment_time(g, s, e, w, d >= s ? d : -1, share0);
            if (best_time >= 0 && time >= best_time) continue;
            best_time = time, best_d = d, best_share = q;
            for (int j = s; j < e; j++) best[j] = g->nodes[j].branch;
        }
    }
    for (int j = s; j < e; j++) g->nodes[j].branch = best[j], g->nodes[j].share = 0;
    if (best_d >= s) g->nodes[best_d].branch = GRAPH_BRANCH_SHARED, g->nodes[best_d].share = best_share;
    return best_time;
}

/* Marks the branch segments (seg_end, branch, share); returns CNN_ERR_NOMEM or CNN_OK. */
static cnn_status graph_plan_branches(graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) g->nodes[i].seg_end = g->nodes[i].branch = g->nodes[i].share = 0;
    const size_t n = (size_t)(g->n_nodes ? g->n_nodes : 1);
    int *uf = malloc(n * sizeof(int)), *best = malloc(n * sizeof(int));
    int64_t *cost = malloc(n * sizeof(int64_t)), *w = malloc(n * sizeof(int64_t));
    if (!uf || !best || !cost || !w) {
        free(uf), free(best), free(cost), free(w);
        return CNN_ERR_NOMEM;
    }
    for (int j = 0; j < g->n_nodes; j++) w[j] = graph_node_cost(g, &g->nodes[j]);
    for (int e = g->n_nodes; e > 0; e--) {
        const int c = graph_root(g, g->nodes[e - 1].out); /* a concat with e - 1 its last writer? */
        if (g->values[c].def < 0 || !graph_read_within(g, c, e, g->n_nodes + 1)) continue;
        int writers = 0, last = -1;
        for (int n = 0; n < g->n_nodes; n++)
            if (graph_root(g, g->nodes[n].out) == c) writers++, last = n;
        if (writers < 2 || last != e - 1 || g->nodes[e - 1].branch) continue;
        int s = e, n_comp = 0;
        for (int j = e - 1; j >= 0; j--) {
            const int r = graph_root(g, g->nodes[j].out);
            int r_writers = 0;
            for (int n = 0; n < g->n_nodes; n++) r_writers += graph_root(g, g->nodes[n].out) == r;
            if (r != c && (r == graph_root(g, g->output) || r_writers != 1 || !graph_read_within(g, r, j + 1, e)))
                break;
            /* the components of j's readers in the run (the concat's readers are after it) */
            int roots[GRAPH_MAX_IN * 8], n_roots = 0, joined = 0;
            for (int n = j + 1; n < e && r != c; n++)
                for (int k = 0; k < g->nodes[n].n_in; k++)
                    if (graph_root(g, g->nodes[n].in[k]) == r) {
                        const int a = graph_uf_find(uf, n);
                        int seen = 0;
                        for (int q = 0; q < n_roots; q++) seen |= roots[q] == a;
                        if (!seen && n_roots < (int)(sizeof roots / sizeof roots[0])) roots[n_roots++] = a;
                        joined += !seen;
                    }
            if (n_comp >= 2 && n_comp + 1 - joined < 2) break; /* the fork: every branch reads j */
            uf[j] = j;
            for (int q = 0; q < n_roots; q++) uf[roots[q]] = j;
            n_comp += 1 - joined;
            s = j;
        }
        if (n_comp < 2) continue;
        int64_t total = 0;
        for (int j = s; j < e; j++) total += w[j];
        if ((double)graph_balance_segment(g, s, e, c, uf, w, cost, best) > GRAPH_BRANCH_MAX_SHARE * (double)total) {
            for (int j = s; j < e; j++) g->nodes[j].branch = g->nodes[j].share = 0;
            continue;
        }
        g->nodes[s].seg_end = e;
        e = s + 1; /* continue before the segment */
    }
    free(uf), free(best), free(cost), free(w);
    return CNN_OK;
}

/* Convolutions with at least this many output positions split by rows or positions where their
 * path can (conv2d_plan_part_rows): depthwise ones, and GEMM ones read only by such a convolution.
 * On large maps a chain of layers split by rows keeps each thread on the rows it wrote, where a
 * split by channels reads half of every input (and writes over lines) from the other core.
 * Smaller maps keep channel parts: the depthwise kernels run each channel's band alone there and
 * lost more than the cache lines gave (MobileNetV3-Large's 28x28 5x5 layers). */
#define GRAPH_ROWS_MIN_POSITIONS 3136

static int graph_conv_big(const graph_node *n)
{
    return n->op == NODE_CONV && n->p.conv.p.h_out * n->p.conv.p.w_out >= GRAPH_ROWS_MIN_POSITIONS;
}

static void graph_plan_rows(graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        graph_node *n = &g->nodes[i];
        const int r = graph_sole_reader(g, n->out);
        n->part_rows = graph_conv_big(n) && (n->p.conv.path == CONV_PATH_DEPTHWISE ||
                                             (r >= 0 && graph_conv_big(&g->nodes[r])));
    }
}

/* Squeeze-and-excitation's linear layers and the classifier read their weights once per image, from
 * L3 at ~29 GB/s on one core (MobileNetV3-Large's 960 x 240: 33 us, 12 us from L2): a GEMM conv
 * before them prefetches the first one's weights into L2 while it computes (at most
 * GRAPH_PREFETCH_MAX bytes, so they stay in L2 beside the layers' own data). The first linear
 * node after the conv and before the next GEMM conv is the one. */
#define GRAPH_PREFETCH_MAX (1u << 20)

static void graph_plan_prefetch(graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        conv2d_plan *pl = &g->nodes[i].p.conv;
        if (g->nodes[i].op != NODE_CONV || pl->path != CONV_PATH_GEMM || pl->p.train || pl->p.groups != 1) continue;
        for (int j = i + 1; j < g->n_nodes; j++) {
            const graph_node *n = &g->nodes[j];
            if (n->op == NODE_CONV && n->p.conv.path == CONV_PATH_GEMM) break;
            if (n->op != NODE_LINEAR) continue;
            const size_t bytes = (size_t)n->p.linear.n_in * (size_t)n->p.linear.n_out * sizeof(float);
            pl->prefetch = n->w;
            pl->prefetch_bytes = bytes < GRAPH_PREFETCH_MAX ? bytes : GRAPH_PREFETCH_MAX;
            break;
        }
    }
}

cnn_status graph_plan(graph *g)
{
    graph_swap_pool_conv(g);
    int n_fused = graph_fuse_nodes(g) + graph_fuse_pw_dw(g);
    n_fused += graph_fuse_dw_pw(g);
    if (n_fused + graph_alias_concats(g)) graph_compact(g);
    if (graph_plan_branches(g) != CNN_OK) return CNN_ERR_NOMEM;
    graph_plan_rows(g);
    graph_plan_prefetch(g);
    g->scratch_floats = 0;
    for (int n = 0; n < g->n_nodes; n++)
        if (g->nodes[n].op == NODE_CONV && g->nodes[n].p.conv.scratch_floats > g->scratch_floats)
            g->scratch_floats = g->nodes[n].p.conv.scratch_floats;

    /* Lifetimes: a value lives from its producing node to its last reader; a view keeps its root alive. */
    for (int i = 0; i < g->n_values; i++) g->values[i].last = g->values[i].def;
    for (int n = 0; n < g->n_nodes; n++)
        for (int i = 0; i < g->nodes[n].n_in; i++) {
            int r = graph_root(g, g->nodes[n].in[i]);
            if (g->values[r].last < n) g->values[r].last = n;
        }
    g->values[graph_root(g, g->output)].last = g->n_nodes;

    /* Greedy by size: place each root value at the lowest offset that does not collide with an
     * already placed value whose lifetime overlaps. */
    int n_roots = 0;
    int *order = malloc((size_t)g->n_values * sizeof(int));
    if (!order) return CNN_ERR_NOMEM;
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i].parent < 0 && i != g->input && g->values[i].def != GRAPH_DEAD)
            order[n_roots++] = i;
    for (int i = 1; i < n_roots; i++) { /* insertion sort, descending size */
        int v = order[i], j = i;
        while (j > 0 && graph_value_floats(&g->values[order[j - 1]]) < graph_value_floats(&g->values[v])) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
    size_t *size = malloc((size_t)g->n_values * sizeof(size_t)), *offset = malloc((size_t)g->n_values * sizeof(size_t));
    int *start = malloc((size_t)g->n_values * sizeof(int)), *end = malloc((size_t)g->n_values * sizeof(int));
    if (!size || !offset || !start || !end) {
        free(order), free(size), free(offset), free(start), free(end);
        return CNN_ERR_NOMEM;
    }
    for (int i = 0; i < g->n_values; i++) {
        size[i] = graph_value_floats(&g->values[i]);
        start[i] = g->values[i].def;
        end[i] = g->values[i].last;
    }
    /* a branch segment's nodes run in any order: what they read or write lives through all of it */
    for (int i = 0; i < g->n_nodes; i++) {
        const int e = g->nodes[i].seg_end;
        for (int j = i; j < e; j++)
            for (int k = -1; k < g->nodes[j].n_in; k++) {
                const int r = graph_root(g, k < 0 ? g->nodes[j].out : g->nodes[j].in[k]);
                if (start[r] > i) start[r] = i;
                if (end[r] < e - 1) end[r] = e - 1;
            }
    }
    g->arena_floats = graph_place(n_roots, order, size, start, end, offset);
    for (int i = 0; i < n_roots; i++) g->values[order[i]].offset = offset[order[i]];
    free(order), free(size), free(offset), free(start), free(end);
    /* Views get absolute offsets (a concat's inputs are views of a later value). */
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i].parent >= 0) g->values[i].offset = graph_abs_offset(g, i);
    return CNN_OK;
}

/* ---- executor ---- */

static const float *graph_ptr(const graph *g, int v, const float *input, const float *arena)
{
    return graph_root(g, v) == g->input ? input + (size_t)g->values[v].c_off * g->values[v].h * g->values[v].w
                                        : arena + g->values[v].offset;
}

/* Nodes with less work than this (multiply-adds, or values touched) run on thread 0 alone:
 * splitting them saves less than a barrier costs, and consecutive such nodes (squeeze-and-
 * excitation's pooling and two small layers) need no barrier between them. */
#define GRAPH_SPLIT_MIN_WORK 16384

/* Whether node n is split over the threads (else thread 0 computes it whole). */
static int graph_node_split(const graph *g, const graph_node *n)
{
    if (n->op == NODE_CONV && !conv2d_plan_splits(&n->p.conv)) return 0; /* OpenBLAS paths: whole, on thread 0 */
    return graph_node_work(g, n) >= GRAPH_SPLIT_MIN_WORK;
}

/* Output channels [c0, c1) of a concat: the overlapping channels of each input. */
static void graph_concat_part(const graph *g, const graph_node *n, const float *input, const float *arena, float *y,
                              int c0, int c1)
{
    const graph_value *out = &g->values[n->out];
    const size_t hw = (size_t)out->h * out->w;
    int at = 0;
    for (int j = 0; j < n->n_in && at < c1; j++) {
        const int cj = g->values[n->in[j]].c, lo = at > c0 ? at : c0, hi = at + cj < c1 ? at + cj : c1;
        if (lo < hi)
            memcpy(y + (size_t)lo * hw, graph_ptr(g, n->in[j], input, arena) + (size_t)(lo - at) * hw,
                   (size_t)(hi - lo) * hw * sizeof(float));
        at += cj;
    }
}

/* Output part of conv node n. */
static void graph_run_conv(const graph *g, const graph_node *n, const float *input, float *arena, float *scratch,
                           const kernels_part *part)
{
    conv2d_plan_forward_part(&n->p.conv, graph_ptr(g, n->in[0], input, arena),
                             n->scale_slot ? graph_ptr(g, n->in[n->scale_slot], input, arena) : NULL,
                             n->residual_slot ? graph_ptr(g, n->in[n->residual_slot], input, arena) : NULL,
                             arena + g->values[n->out].offset, scratch, part);
}

/* Part ith of nth of node n (the whole node when nth == 1). */
static void graph_run_node(const graph *g, const graph_node *n, const float *input, float *arena, float *scratch,
                           int ith, int nth)
{
    const graph_value *out = &g->values[n->out];
    const graph_value *in = &g->values[n->in[0]];
    float *y = arena + out->offset;
    const float *x = graph_ptr(g, n->in[0], input, arena);
    const size_t hw_in = (size_t)in->h * in->w, hw_out = (size_t)out->h * out->w;
    kernels_part part;
    switch (n->op) {
    case NODE_CONV:
        part = n->part_rows && nth > 1 ? conv2d_plan_part_rows(&n->p.conv, ith, nth)
                                       : conv2d_plan_part(&n->p.conv, ith, nth);
        graph_run_conv(g, n, input, arena, scratch, &part);
        break;
    case NODE_POOL:
        part = kernels_part_split(KERNELS_PART_CHANNELS, out->c, 1, ith, nth);
        if (n->b) /* moved after a 1x1 conv: graph_swap_pool_conv */
            pool2d_forward_bias_part(&n->p.pool, n->b, n->act, x, y, part.lo, part.hi);
        else
            pool2d_forward_part(&n->p.pool, x, y, part.lo, part.hi);
        break;
    case NODE_ADAPTIVE_AVG:
        part = kernels_part_split(KERNELS_PART_CHANNELS, out->c, 1, ith, nth);
        if (part.lo < part.hi)
            adaptive_avgpool2d_forward(part.hi - part.lo, in->h, in->w, out->h, out->w, x + (size_t)part.lo * hw_in,
                                       y + (size_t)part.lo * hw_out);
        break;
    case NODE_LINEAR:
        part = linear_part(n->p.linear.n_out, ith, nth);
        linear_forward_part(n->p.linear.n_in, n->p.linear.n_out, x, n->w, n->b, n->p.linear.act, y, &part);
        break;
    case NODE_SCALE:
        part = kernels_part_split(KERNELS_PART_CHANNELS, out->c, 1, ith, nth);
        if (part.lo < part.hi)
            scale_channels_forward(part.hi - part.lo, (int)hw_out, x + (size_t)part.lo * hw_out,
                                   graph_ptr(g, n->in[1], input, arena) + part.lo, y + (size_t)part.lo * hw_out);
        break;
    case NODE_ADD:
        /* 16 values: whole cache lines per thread */
        part = kernels_part_split(KERNELS_PART_POSITIONS, out->c * (int)hw_out, 16, ith, nth);
        if (part.lo < part.hi)
            add_forward((size_t)(part.hi - part.lo), x + part.lo, graph_ptr(g, n->in[1], input, arena) + part.lo,
                        ACT_NONE, y + part.lo);
        break;
    case NODE_CONCAT:
        part = kernels_part_split(KERNELS_PART_CHANNELS, out->c, 1, ith, nth);
        graph_concat_part(g, n, input, arena, y, part.lo, part.hi);
        break;
    case NODE_CONCAT_SHUFFLE: {
        /* shuffle(cat(a, b), 2): output channel 2i is a[i], 2i+1 is b[i]; parts are pairs i. */
        const float *a = x, *c = graph_ptr(g, n->in[1], input, arena);
        part = kernels_part_split(KERNELS_PART_CHANNELS, out->c / 2, 1, ith, nth);
        for (int ch = part.lo; ch < part.hi; ch++) {
            memcpy(y + (2 * ch) * hw_out, a + ch * hw_out, hw_out * sizeof(float));
            memcpy(y + (2 * ch + 1) * hw_out, c + ch * hw_out, hw_out * sizeof(float));
        }
        break;
    }
    case GRAPH_NODE_FOLDED: /* graph_plan drops these */
    case NODE_BN:           /* training graphs only (graph_train.c) */
    case NODE_ACT:
    case NODE_DROPOUT:
        break;
    }
}

void graph_run_node_part(const graph *g, int i, const float *input, float *arena, float *scratch, int ith, int nth)
{
    graph_run_node(g, &g->nodes[i], input, arena, scratch, ith, nth);
}

int graph_node_parts(const graph *g, int i, int n_threads)
{
    if (n_threads == 2 && g->nodes[i].branch) /* a branch segment's node: whole, or shared in two */
        return g->nodes[i].branch == GRAPH_BRANCH_SHARED ? 2 : 1;
    return graph_node_split(g, &g->nodes[i]) ? n_threads : 1;
}

const float *graph_run(const graph *g, const float *input, float *arena, float *scratch)
{
    for (int i = 0; i < g->n_nodes; i++) graph_run_node(g, &g->nodes[i], input, arena, scratch, 0, 1);
    return arena + g->values[g->output].offset;
}

void graph_run_part(const graph *g, const float *input, float *arena, float *scratch, threadpool *tp,
                    threadpool_step *steps, unsigned job, int ith)
{
    graph_run_part_range(g, input, arena, scratch, tp, steps, job, ith, 0, g->n_nodes);
}

void graph_run_range(const graph *g, const float *input, float *arena, float *scratch, int i0, int i1)
{
    for (int i = i0; i < i1; i++) graph_run_node(g, &g->nodes[i], input, arena, scratch, 0, 1);
}

void graph_steps_sync(const graph *g, threadpool_step *steps, int nth, unsigned job, int i0, int i1)
{
    for (int i = i0; i < i1; i++) {
        const unsigned base = job * (unsigned)graph_node_parts(g, i, nth);
        if (atomic_load_explicit(&steps[i].next, memory_order_relaxed) == base) continue;
        atomic_store_explicit(&steps[i].next, base, memory_order_relaxed);
        atomic_store_explicit(&steps[i].done, base, memory_order_relaxed);
    }
}

int graph_tail_start(const graph *g)
{
    int t = g->n_nodes;
    while (t > 0 && g->nodes[t - 1].op == NODE_LINEAR &&
           (t == g->n_nodes ? g->nodes[t - 1].out == g->output : g->nodes[t].in[0] == g->nodes[t - 1].out))
        t--;
    return t;
}

size_t graph_tail_floats(const graph *g)
{
    size_t n = 0;
    for (int i = graph_tail_start(g); i < g->n_nodes; i++) {
        const size_t a = (size_t)g->nodes[i].p.linear.n_in, b = (size_t)g->nodes[i].p.linear.n_out;
        if (a > n) n = a;
        if (b > n) n = b;
    }
    return n;
}

const float *graph_tail_input(const graph *g, const float *input, const float *arena)
{
    const int t = graph_tail_start(g);
    return t < g->n_nodes ? graph_ptr(g, g->nodes[t].in[0], input, arena) : NULL;
}

/* Part ith of nth of tail node n on n_batch rows: x (rows of n_in) -> y (rows of n_out). */
static void graph_tail_node(const graph_node *n, int n_batch, const float *x, float *y, int ith, int nth)
{
    const kernels_part part = linear_part(n->p.linear.n_out, ith, nth);
    linear_batch_forward_part(n->p.linear.n_in, n->p.linear.n_out, n_batch, x, n->w, n->b, n->p.linear.act, y, &part);
}

float *graph_run_tail_batch(const graph *g, int n_batch, float *a, float *b, threadpool *tp, threadpool_step *steps,
                            unsigned job)
{
    const int nth = tp ? threadpool_size(tp) : 1;
    float *x = a, *y = b;
    for (int i = graph_tail_start(g); i < g->n_nodes; i++) {
        const graph_node *n = &g->nodes[i];
        if (!tp) {
            graph_tail_node(n, n_batch, x, y, 0, 1);
        } else {
            const int n_parts = graph_node_split(g, n) ? nth : 1;
            int part;
            while ((part = threadpool_step_claim(&steps[i], job, n_parts)) >= 0) {
                graph_tail_node(n, n_batch, x, y, part, n_parts);
                threadpool_step_finish(tp, &steps[i]);
            }
            threadpool_step_wait(tp, &steps[i], job, n_parts);
        }
        float *t = x;
        x = y;
        y = t;
    }
    return x;
}

/* Branch segment [s, e) on two threads: this thread's own nodes in order, then its part of the
 * shared node (its inputs are from before the segment), then the other thread's nodes that are
 * still unclaimed (it is late or descheduled) and the other part of the shared node, each whole
 * node after the nodes of the segment that produce its inputs (same branch: run earlier by
 * whoever claimed them); then every node's end. A node's producers have lower indices and each
 * thread claims them in index order, so a waited-for producer is always claimed and running: no
 * deadlock. A thread's first claim of the shared node (in pass 1) is its own part, a second one
 * (pass 2; its first failed only if the other thread took both) the other part. */
static void graph_run_segment(const graph *g, const float *input, float *arena, float *scratch, threadpool *tp,
                              threadpool_step *steps, unsigned job, int ith, int s, int e)
{
    for (int pass = 0; pass < 3; pass++)
        for (int j = s; j < e; j++) {
            const graph_node *n = &g->nodes[j];
            if (n->branch == GRAPH_BRANCH_SHARED) {
                if (pass == 0 || threadpool_step_claim(&steps[j], job, 2) < 0) continue;
                const int t = pass == 1 ? ith : 1 - ith;
                const kernels_part part = conv2d_plan_part_share(&n->p.conv, t ? n->share : 0,
                                                                 t ? GRAPH_SHARES : n->share, GRAPH_SHARES);
                graph_run_conv(g, n, input, arena, scratch, &part);
                threadpool_step_finish(tp, &steps[j]);
                continue;
            }
            if (pass == 1 || (n->branch == ith + 1) != (pass == 0) ||
                threadpool_step_claim(&steps[j], job, 1) < 0)
                continue;
            for (int k = 0; k < n->n_in; k++)
                for (int v = n->in[k]; v >= 0; v = g->values[v].parent) {
                    const int d = g->values[v].def;
                    if (d >= s && d < j) threadpool_step_wait(tp, &steps[d], job, graph_node_parts(g, d, 2));
                }
            graph_run_node(g, n, input, arena, scratch, 0, 1);
            threadpool_step_finish(tp, &steps[j]);
        }
    for (int j = s; j < e; j++) threadpool_step_wait(tp, &steps[j], job, graph_node_parts(g, j, 2));
}

void graph_run_part_range(const graph *g, const float *input, float *arena, float *scratch, threadpool *tp,
                          threadpool_step *steps, unsigned job, int ith, int i0, int i1)
{
    const int nth = threadpool_size(tp);
    for (int i = i0; i < i1; i++) {
        const graph_node *n = &g->nodes[i];
        if (nth == 2 && n->seg_end > 0 && n->seg_end <= i1) {
            graph_run_segment(g, input, arena, scratch, tp, steps, job, ith, i, n->seg_end);
            i = n->seg_end - 1;
            continue;
        }
        const int n_parts = graph_node_parts(g, i, nth);
        int claim, first = 1;
        while ((claim = threadpool_step_claim(&steps[i], job, n_parts)) >= 0) {
            /* Two parts: a thread's first claim computes its own part ith, a second claim (the other
             * thread is late) the other one, so with both threads running each computes the same
             * half of every node's output and reads its own half of the input where the previous
             * node split the same way (no cross-core copy). Either claim order gives each part once. */
            const int part = n_parts == 2 ? (first ? ith : 1 - ith) : claim;
            first = 0;
            graph_run_node(g, n, input, arena, scratch, part, n_parts);
            threadpool_step_finish(tp, &steps[i]);
        }
        threadpool_step_wait(tp, &steps[i], job, n_parts);
    }
}
