/* Full fine-tuning engine (model_train.h): the training graph of models/graph.c run over a batch.
 *
 * Layout: every value of the graph keeps its n images contiguous ([n][c][h][w], a view being a
 * channel slice of its root's images) in one forward arena where nothing is reused (the backward
 * pass reads nearly every value); the gradients of the values live in a second arena planned by
 * lifetimes in backward order (graph_place), and the parameter gradients in one allocation.
 *
 * Steps: a job walks the same sequence of steps on every thread: the forward of each node, the
 * loss, then for each node from the last: zeroing the gradients it is the first to add into, and
 * its backward. Each step has a fixed number of parts: images (per-image kernels: the same
 * computation whatever thread takes it), channel or row blocks over the whole batch (BatchNorm;
 * linear layers; convolution weight gradients, each block walking the images in order), so the
 * results are bit-identical at any thread count. A value read by several nodes (or through channel
 * views) has its gradient zeroed and then added to; one read once is written directly. */
#include "model_train.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/kernels.h"
#include "../core/kernels_train.h"
#include "../core/threadpool.h"
#include "../core/weights.h"
#include "archs.h"
#include "graph.h"
#include "model.h"

#define MT_ALIGN 16 /* floats: every value and scratch region starts on a cache line */

static size_t mt_round(size_t n) { return (n + MT_ALIGN - 1) / MT_ALIGN * MT_ALIGN; }

/* Linear layers run as sgemm calls on fixed blocks of this many outputs (forward, weight
 * gradients) or inputs (data gradients): the same calls whatever the thread count. */
#define MT_LIN_BLOCK 128

static int mt_blocks(int n) { return (n + MT_LIN_BLOCK - 1) / MT_LIN_BLOCK; }

typedef struct {
    int root;
    size_t off;     /* floats from the arena (or the input) to image 0 of this value */
    size_t goff;    /* the same in the gradient arena */
    size_t stride;  /* floats between images: the root's c*h*w */
    size_t chw;     /* this value's floats per image */
    int needs_grad; /* not (a view of) the graph input */
    int zero_at;    /* node whose zeroing step clears this root's gradient, -1: written directly */
} mt_value;

typedef enum { MT_FWD = 0, MT_LOSS, MT_ZERO, MT_BWD } mt_step_kind;

typedef struct {
    mt_step_kind kind;
    int node;
    int n_parts;
} mt_step;

struct model_train {
    graph g;
    weights *w;
    model_train_opts o;
    int size, n_classes;
    mt_value *v;
    int (*acc)[GRAPH_MAX_IN]; /* per node and input: its gradient is added (1) or written (0) */
    size_t *bn_save;          /* per node: offset of a BN node's saved mean and invstd in save */
    char *inplace;            /* per node: a ReLU computed in place (its output shares its input's storage) */
    int *fused;               /* per node: a frozen BN's activation node run inside it (-1: none); an
                                 activation run so: the BN node's index (its own steps dropped) */
    int *conv_bn;             /* per node: a convolution's frozen BN (with its fused activation) run
                                 image by image in the convolution's forward parts, while the image
                                 is in cache (-1: none); a BN run so: the convolution's index (its
                                 own forward step dropped) */
    int (*bn_in)[GRAPH_MAX_IN]; /* per node and input: a frozen BN whose output (or fused activation's)
                                 gradient this input is: the BN's backward runs image by image right
                                 after this node's backward of the image, while the gradient is in
                                 cache (-1: none); the BN's own step then only adds up its sums */
    size_t *bn_sums;          /* per such BN node: offset in sums of its [n][c][2] per-image sums */
    double *sums;
    size_t sums_doubles;
    conv2d_plan *bplan;       /* per node: a convolution's data gradient on the forward kernels
                                 (conv2d_backward_data_plan_init; packed_floats 0: OpenBLAS) */
    float *bpacked, *wt;      /* their packed weights (repacked every step) and the transposing buffer */
    size_t bpacked_floats, wt_floats;
    float *save;
    size_t save_floats;
    model_param *params;
    int n_params;
    int *param_of;            /* graph tensor -> param index, -1 for a buffer */
    float *grads;
    size_t grad_floats;
    float *arena, *garena;
    size_t arena_floats, garena_floats;
    float *scratch;           /* per thread: conv scratch | 2 images of the largest value */
    size_t scratch_stride, conv_scratch, tmp_floats;
    int P, Q, T;              /* parts: images (max_batch), blocks (4 per thread), threads */
    int min_bn_hw;            /* smallest map a BatchNorm normalizes (batch statistics need n*hw > 1) */
    int64_t n_bn_steps;       /* steps with batch statistics (num_batches_tracked grows by these) */
    mt_step *seq;
    int n_seq;
    threadpool *pool;
    threadpool_step *steps;
    /* the current job, written before it starts */
    int job_train, job_n;
    const float *job_input;
    const int *job_labels;
    uint64_t job_step;
    double job_loss;
    int job_correct;
};

/* ---- addresses ---- */

static const float *mt_x(const model_train *t, int v, int img)
{
    const mt_value *m = &t->v[v];
    const float *base = m->root == t->g.input ? t->job_input : t->arena;
    return base + m->off + (size_t)img * m->stride;
}

static float *mt_y(const model_train *t, int v, int img) { return t->arena + t->v[v].off + (size_t)img * t->v[v].stride; }

static float *mt_d(const model_train *t, int v, int img) { return t->garena + t->v[v].goff + (size_t)img * t->v[v].stride; }

static float *mt_grad(const model_train *t, int tensor) { return tensor < 0 ? NULL : t->params[t->param_of[tensor]].grad; }

static float *mt_data(const model_train *t, int tensor) { return tensor < 0 ? NULL : t->g.tensors[tensor].data; }

/* dx = src (acc 0) or dx += src (acc 1), n floats. */
static void mt_put(float *dx, const float *src, size_t n, int acc)
{
    if (acc) add_forward(n, dx, src, ACT_NONE, dx);
    else if (dx != src) memcpy(dx, src, n * sizeof(float));
}

/* ---- forward ---- */

/* The frozen forward of BN node nd (and of the activation fused into it) for channels [c0, c1) of
 * images [i0, i0 + n). */
static void mt_bn_frozen(const model_train *t, const graph_node *nd, int c0, int c1, int i0, int n)
{
    const graph_value *out = &t->g.values[nd->out];
    const bn_params bp = {n, out->c, out->h * out->w, nd->eps, nd->momentum};
    const int a = t->fused[nd - t->g.nodes];
    const graph_node *an = a >= 0 ? &t->g.nodes[a] : NULL;
    /* fused: y (read by the activation only, recomputed by the backward) is not kept */
    bn_frozen_act_forward(&bp, c0, c1, an ? an->act : ACT_NONE, mt_x(t, nd->in[0], i0), mt_data(t, nd->t_w),
                          mt_data(t, nd->t_b), mt_data(t, nd->t_mean), mt_data(t, nd->t_var),
                          an ? NULL : mt_y(t, nd->out, i0), an ? mt_y(t, an->out, i0) : NULL,
                          an ? t->v[an->out].stride : 0);
}

static void mt_forward(const model_train *t, const graph_node *nd, int part, float *scratch)
{
    const graph_value *out = &t->g.values[nd->out], *in = &t->g.values[nd->in[0]];
    const size_t chw = t->v[nd->out].chw, hw = (size_t)out->h * out->w;
    const int n = t->job_n, img = part;
    switch (nd->op) {
    case NODE_BN: {
        const kernels_part cp = kernels_part_split(KERNELS_PART_CHANNELS, out->c, 1, part, t->Q);
        if (cp.lo == cp.hi) return;
        const bn_params bp = {n, out->c, (int)hw, nd->eps, nd->momentum};
        const float *x = mt_x(t, nd->in[0], 0);
        float *y = mt_y(t, nd->out, 0);
        if (t->job_train && t->o.bn == MODEL_BN_TRAIN) {
            float *s = t->save + t->bn_save[nd - t->g.nodes];
            bn_train_forward(&bp, cp.lo, cp.hi, x, mt_data(t, nd->t_w), mt_data(t, nd->t_b), mt_data(t, nd->t_mean),
                             mt_data(t, nd->t_var), s, s + out->c, y);
        } else {
            mt_bn_frozen(t, nd, cp.lo, cp.hi, 0, n);
        }
        return;
    }
    case NODE_LINEAR: { /* Y[:, block] = X . W[block]^T + b[block]: one sgemm per fixed block */
        const int n_in = nd->p.linear.n_in, n_out = nd->p.linear.n_out, o0 = part * MT_LIN_BLOCK;
        const int nb = n_out - o0 < MT_LIN_BLOCK ? n_out - o0 : MT_LIN_BLOCK;
        float *y = mt_y(t, nd->out, 0) + o0;
        for (int i = 0; i < n; i++) memcpy(y + (size_t)i * n_out, nd->b + o0, (size_t)nb * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, nb, n_in, 1.0f, mt_x(t, nd->in[0], 0), n_in,
                    nd->w + (size_t)o0 * n_in, n_in, 1.0f, y, n_out);
        return;
    }
    default: break;
    }
    if (img >= n) return;
    const float *x = mt_x(t, nd->in[0], img);
    float *y = mt_y(t, nd->out, img);
    switch (nd->op) {
    case NODE_CONV: {
        const kernels_part whole = conv2d_plan_part(&nd->p.conv, 0, 1);
        conv2d_plan_forward_part(&nd->p.conv, x, NULL, NULL, y, scratch, &whole);
        const int bn = t->conv_bn[nd - t->g.nodes];
        if (bn >= 0) mt_bn_frozen(t, &t->g.nodes[bn], 0, t->g.values[t->g.nodes[bn].out].c, img, 1);
        break;
    }
    case NODE_ACT:
        if (x != y) memcpy(y, x, chw * sizeof(float));
        act_forward(nd->act, y, chw);
        break;
    case NODE_POOL: pool2d_forward(&nd->p.pool, x, y); break;
    case NODE_ADAPTIVE_AVG: adaptive_avgpool2d_forward(in->c, in->h, in->w, out->h, out->w, x, y); break;
    case NODE_SCALE: scale_channels_forward(out->c, (int)hw, x, mt_x(t, nd->in[1], img), y); break;
    case NODE_ADD: add_forward(chw, x, mt_x(t, nd->in[1], img), ACT_NONE, y); break;
    case NODE_CONCAT: {
        size_t at = 0;
        for (int k = 0; k < nd->n_in; k++) {
            memcpy(y + at, mt_x(t, nd->in[k], img), t->v[nd->in[k]].chw * sizeof(float));
            at += t->v[nd->in[k]].chw;
        }
        break;
    }
    case NODE_CONCAT_SHUFFLE: { /* output channel 2i is a[i], 2i+1 is b[i] */
        const float *b = mt_x(t, nd->in[1], img);
        for (int ch = 0; ch < out->c / 2; ch++) {
            memcpy(y + 2 * ch * hw, x + ch * hw, hw * sizeof(float));
            memcpy(y + (2 * ch + 1) * hw, b + ch * hw, hw * sizeof(float));
        }
        break;
    }
    case NODE_DROPOUT:
        if (t->job_train)
            dropout_forward(t->o.seed, t->job_step, (uint32_t)nd->drop_layer, (size_t)img * chw, chw, nd->drop_p, x, y);
        else
            memcpy(y, x, chw * sizeof(float));
        break;
    case NODE_BN:
    case NODE_LINEAR:
    case GRAPH_NODE_FOLDED: break;
    }
}

/* ---- backward ---- */

/* Clears, for image img, the gradients node i is the first to add into (see mt_value.zero_at). */
static void mt_zero(const model_train *t, int i, int img)
{
    if (img >= t->job_n) return;
    const graph_node *nd = &t->g.nodes[i];
    for (int k = -1; k < nd->n_in; k++) {
        const int r = t->v[k < 0 ? nd->out : nd->in[k]].root;
        int dup = 0;
        for (int j = 0; j < k && !dup; j++) dup = t->v[nd->in[j]].root == r;
        if (!dup && t->v[r].needs_grad && t->v[r].zero_at == i)
            memset(mt_d(t, r, img), 0, t->v[r].chw * sizeof(float));
    }
}

/* The frozen BNs whose gradient node i's backward of image img has just written (bn_in). */
static void mt_bn_image(const model_train *t, int i, int img)
{
    const graph_node *nd = &t->g.nodes[i];
    for (int k = 0; k < nd->n_in; k++) {
        const int j = t->bn_in[i][k];
        if (j < 0) continue;
        const graph_node *bn = &t->g.nodes[j];
        const graph_value *out = &t->g.values[bn->out];
        const bn_params bp = {1, out->c, out->h * out->w, bn->eps, bn->momentum};
        const int a = t->fused[j], z = a >= 0 ? t->g.nodes[a].out : bn->out;
        bn_frozen_act_backward_image(&bp, 0, out->c, a >= 0 ? t->g.nodes[a].act : ACT_NONE, mt_d(t, z, img),
                                     t->v[z].stride, mt_x(t, bn->in[0], img), mt_data(t, bn->t_w),
                                     mt_data(t, bn->t_b), mt_data(t, bn->t_mean), mt_data(t, bn->t_var),
                                     mt_d(t, bn->in[0], img), t->sums + t->bn_sums[j] + (size_t)img * 2 * out->c);
    }
}

static void mt_backward(const model_train *t, int i, int part, float *scratch)
{
    const graph_node *nd = &t->g.nodes[i];
    const graph_value *out = &t->g.values[nd->out], *in = &t->g.values[nd->in[0]];
    const size_t chw = t->v[nd->out].chw, hw = (size_t)out->h * out->w;
    const int n = t->job_n;
    const int *acc = t->acc[i];
    const int need0 = t->v[nd->in[0]].needs_grad;
    float *tmp = scratch + t->conv_scratch, *tmp2 = tmp + t->tmp_floats / 2;
    switch (nd->op) {
    case NODE_BN: {
        const kernels_part cp = kernels_part_split(KERNELS_PART_CHANNELS, out->c, 1, part, t->Q);
        if (cp.lo == cp.hi) return;
        const bn_params bp = {n, out->c, (int)hw, nd->eps, nd->momentum};
        float *dg = mt_grad(t, nd->t_w), *db = mt_grad(t, nd->t_b);
        memset(dg + cp.lo, 0, (size_t)(cp.hi - cp.lo) * sizeof(float));
        memset(db + cp.lo, 0, (size_t)(cp.hi - cp.lo) * sizeof(float));
        float *dx = need0 ? mt_d(t, nd->in[0], 0) : NULL; /* written directly (checked at init) */
        if (t->bn_sums[i] != (size_t)-1) { /* dx done image by image (mt_bn_image): the sums */
            bn_frozen_backward_reduce(&bp, cp.lo, cp.hi, mt_data(t, nd->t_var), t->sums + t->bn_sums[i], dg, db);
        } else if (t->o.bn == MODEL_BN_TRAIN) {
            const float *s = t->save + t->bn_save[i];
            bn_train_backward(&bp, cp.lo, cp.hi, mt_x(t, nd->in[0], 0), mt_d(t, nd->out, 0), mt_data(t, nd->t_w), s,
                              s + out->c, dx, dg, db);
        } else if (t->fused[i] >= 0) { /* the activation's backward in the same pass */
            const int a = t->fused[i];
            const graph_node *an = &t->g.nodes[a];
            bn_frozen_act_backward(&bp, cp.lo, cp.hi, an->act, mt_d(t, an->out, 0), t->v[an->out].stride,
                                   mt_x(t, nd->in[0], 0), mt_data(t, nd->t_w), mt_data(t, nd->t_b),
                                   mt_data(t, nd->t_mean), mt_data(t, nd->t_var), dx, dg, db);
        } else {
            bn_frozen_backward(&bp, cp.lo, cp.hi, mt_x(t, nd->in[0], 0), mt_d(t, nd->out, 0), mt_data(t, nd->t_w),
                               mt_data(t, nd->t_mean), mt_data(t, nd->t_var), dx, dg, db);
        }
        return;
    }
    case NODE_CONV: {
        const conv2d_params *p = &nd->p.conv.p;
        if (part < t->T) { /* weight gradients of a block of output channels over all images */
            const kernels_part wp = conv2d_backward_weights_split(p, part, t->T);
            if (wp.lo == wp.hi) return;
            float *dw = mt_grad(t, nd->t_w), *db = mt_grad(t, nd->t_b);
            conv2d_backward_weights_zero(p, dw, db, &wp);
            for (int img = 0; img < n; img++)
                conv2d_backward_weights_part(p, mt_x(t, nd->in[0], img), mt_d(t, nd->out, img), dw, db, scratch, &wp);
            return;
        }
        const int img = part - t->T;
        if (img >= n || !need0) return;
        float *dx = mt_d(t, nd->in[0], img);
        if (t->bplan[i].packed_floats) {
            const kernels_part whole = conv2d_plan_part(&t->bplan[i], 0, 1);
            conv2d_plan_forward_part(&t->bplan[i], mt_d(t, nd->out, img), NULL, NULL, acc[0] ? tmp : dx, scratch,
                                     &whole);
        } else {
            conv2d_backward_data(p, mt_d(t, nd->out, img), mt_data(t, nd->t_w), acc[0] ? tmp : dx, scratch);
        }
        if (acc[0]) mt_put(dx, tmp, t->v[nd->in[0]].chw, 1);
        mt_bn_image(t, i, img);
        return;
    }
    case NODE_LINEAR: { /* fixed blocks (the bits do not depend on the threads), one sgemm each */
        const int n_in = nd->p.linear.n_in, n_out = nd->p.linear.n_out, n_wb = mt_blocks(n_out);
        const float *dy = mt_d(t, nd->out, 0), *x = mt_x(t, nd->in[0], 0); /* rows contiguous (init) */
        if (part < n_wb) { /* dW[block] = dY[:, block]^T . X, db[block] = column sums of dY */
            const int o0 = part * MT_LIN_BLOCK, nb = n_out - o0 < MT_LIN_BLOCK ? n_out - o0 : MT_LIN_BLOCK;
            linear_backward_weights(n, nb, n_in, dy + o0, (size_t)n_out, x, (size_t)n_in,
                                    mt_grad(t, nd->t_w) + (size_t)o0 * n_in, (size_t)n_in);
            float *db = mt_grad(t, nd->t_b) + o0;
            for (int o = 0; o < nb; o++) {
                double sum = 0.0;
                for (int i = 0; i < n; i++) sum += dy[(size_t)i * n_out + o0 + o];
                db[o] = (float)sum;
            }
            return;
        }
        if (!need0) return;
        /* dX[:, block] (+)= dY . W[:, block] */
        const int i0 = (part - n_wb) * MT_LIN_BLOCK, nb = n_in - i0 < MT_LIN_BLOCK ? n_in - i0 : MT_LIN_BLOCK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, nb, n_out, 1.0f, dy, n_out, nd->w + i0, n_in,
                    acc[0] ? 1.0f : 0.0f, mt_d(t, nd->in[0], 0) + i0, n_in);
        return;
    }
    default: break;
    }
    const int img = part;
    if (img >= n) return;
    const float *dy = mt_d(t, nd->out, img);
    switch (nd->op) {
    case NODE_ACT:
        if (!need0) return;
        act_backward(nd->act, t->inplace[i] ? mt_y(t, nd->out, img) : mt_x(t, nd->in[0], img), dy,
                     acc[0] ? tmp : mt_d(t, nd->in[0], img), chw);
        if (acc[0]) mt_put(mt_d(t, nd->in[0], img), tmp, chw, 1);
        break;
    case NODE_POOL:
        if (!need0) return;
        pool2d_backward(&nd->p.pool, mt_x(t, nd->in[0], img), dy, acc[0] ? tmp : mt_d(t, nd->in[0], img));
        if (acc[0]) mt_put(mt_d(t, nd->in[0], img), tmp, t->v[nd->in[0]].chw, 1);
        break;
    case NODE_ADAPTIVE_AVG:
        if (!need0) return;
        adaptive_avg_backward(in->c, in->h, in->w, out->h, out->w, dy, acc[0] ? tmp : mt_d(t, nd->in[0], img));
        if (acc[0]) mt_put(mt_d(t, nd->in[0], img), tmp, t->v[nd->in[0]].chw, 1);
        break;
    case NODE_SCALE: {
        const int need1 = t->v[nd->in[1]].needs_grad;
        float *dx = acc[0] || !need0 ? tmp : mt_d(t, nd->in[0], img);
        float *ds = acc[1] || !need1 ? tmp2 : mt_d(t, nd->in[1], img);
        scale_channels_backward(out->c, (int)hw, mt_x(t, nd->in[0], img), mt_x(t, nd->in[1], img), dy, dx, ds);
        if (need0 && acc[0]) mt_put(mt_d(t, nd->in[0], img), tmp, chw, 1);
        if (need1 && acc[1]) mt_put(mt_d(t, nd->in[1], img), tmp2, (size_t)out->c, 1);
        break;
    }
    case NODE_ADD:
        for (int k = 0; k < 2; k++)
            if (t->v[nd->in[k]].needs_grad) mt_put(mt_d(t, nd->in[k], img), dy, chw, acc[k]);
        break;
    case NODE_CONCAT: {
        size_t at = 0;
        for (int k = 0; k < nd->n_in; k++) {
            if (t->v[nd->in[k]].needs_grad) mt_put(mt_d(t, nd->in[k], img), dy + at, t->v[nd->in[k]].chw, acc[k]);
            at += t->v[nd->in[k]].chw;
        }
        break;
    }
    case NODE_CONCAT_SHUFFLE:
        for (int k = 0; k < 2; k++) {
            if (!t->v[nd->in[k]].needs_grad) continue;
            float *dx = mt_d(t, nd->in[k], img);
            for (int ch = 0; ch < out->c / 2; ch++) mt_put(dx + ch * hw, dy + (2 * ch + k) * hw, hw, acc[k]);
        }
        break;
    case NODE_DROPOUT:
        if (!need0) return;
        dropout_backward(t->o.seed, t->job_step, (uint32_t)nd->drop_layer, (size_t)img * chw, chw, nd->drop_p, dy,
                         acc[0] ? tmp : mt_d(t, nd->in[0], img));
        if (acc[0]) mt_put(mt_d(t, nd->in[0], img), tmp, chw, 1);
        break;
    case NODE_CONV:
    case NODE_BN:
    case NODE_LINEAR:
    case GRAPH_NODE_FOLDED: break;
    }
    mt_bn_image(t, i, img);
}

/* ---- steps and threads ---- */

static void mt_run_part(model_train *t, const mt_step *s, int part, float *scratch)
{
    switch (s->kind) {
    case MT_FWD: mt_forward(t, &t->g.nodes[s->node], part, scratch); break;
    case MT_LOSS: {
        if (!t->job_train) break;
        const int out = t->g.output;
        t->job_loss = train_softmax_xent(t->job_n, t->n_classes, mt_y(t, out, 0), t->job_labels, mt_d(t, out, 0),
                                         &t->job_correct);
        break;
    }
    case MT_ZERO:
        if (t->job_train) mt_zero(t, s->node, part);
        break;
    case MT_BWD:
        if (t->job_train) mt_backward(t, s->node, part, scratch);
        break;
    }
}

/* One thread's walk through a job's steps (every thread walks all of them, eval jobs included, so
 * the step counters of the pool stay in step). */
static void mt_walk(model_train *t, int ith, unsigned job)
{
    float *scratch = t->scratch + (size_t)ith * t->scratch_stride;
    for (int i = 0; i < t->n_seq; i++) {
        const mt_step *s = &t->seq[i];
        if (!t->pool) {
            if (s->kind != MT_FWD && s->kind != MT_LOSS && !t->job_train) continue;
            for (int part = 0; part < s->n_parts; part++) mt_run_part(t, s, part, scratch);
            continue;
        }
        int part;
        while ((part = threadpool_step_claim(&t->steps[i], job, s->n_parts)) >= 0) {
            mt_run_part(t, s, part, scratch);
            threadpool_step_finish(t->pool, &t->steps[i]);
        }
        threadpool_step_wait(t->pool, &t->steps[i], job, s->n_parts);
    }
}

static void mt_thread(void *arg, int ith, int nth, unsigned job)
{
    (void)nth;
    mt_walk(arg, ith, job);
}

static void mt_run_job(model_train *t)
{
    /* the packed copies of the convolution weights follow the parameters */
    for (int i = 0; i < t->g.n_nodes; i++) {
        const graph_node *nd = &t->g.nodes[i];
        if (nd->op == NODE_CONV && nd->p.conv.packed_floats)
            conv2d_plan_pack(&nd->p.conv, t->g.tensors[nd->t_w].data, (float *)nd->p.conv.w);
        if (t->job_train && t->bplan[i].packed_floats)
            conv2d_backward_data_plan_pack(&t->bplan[i], t->g.tensors[nd->t_w].data, t->wt, (float *)t->bplan[i].w);
    }
    if (t->pool) mt_walk(t, 0, threadpool_start(t->pool));
    else mt_walk(t, 0, 0);
}

/* ---- init ---- */

/* Whether node i is an activation run inside its BN's steps (it has none of its own). */
static int mt_fused_act(const model_train *t, int i) { return t->g.nodes[i].op == NODE_ACT && t->fused[i] >= 0; }

/* Per-node part counts of the forward and backward steps. */
static int mt_fwd_parts(const model_train *t, const graph_node *nd)
{
    if (nd->op == NODE_LINEAR) return mt_blocks(nd->p.linear.n_out);
    return nd->op == NODE_BN ? t->Q : t->P;
}

static int mt_bwd_parts(const model_train *t, const graph_node *nd)
{
    switch (nd->op) {
    case NODE_BN: return t->Q;
    case NODE_CONV: return t->T + t->P;
    case NODE_LINEAR: return mt_blocks(nd->p.linear.n_out) + mt_blocks(nd->p.linear.n_in);
    default: return t->P;
    }
}

/* Value layout, gradient plan and the accumulation flags. */
static cnn_status mt_plan(model_train *t, char *err, size_t err_bytes)
{
    graph *g = &t->g;
    const int nv = g->n_values, nn = g->n_nodes;
    t->v = calloc((size_t)nv, sizeof(*t->v));
    t->acc = calloc((size_t)(nn ? nn : 1), sizeof(*t->acc));
    t->bn_save = calloc((size_t)(nn ? nn : 1), sizeof(*t->bn_save));
    t->inplace = calloc((size_t)(nn ? nn : 1), 1);
    t->fused = malloc((size_t)(nn ? nn : 1) * sizeof(int));
    t->bplan = calloc((size_t)(nn ? nn : 1), sizeof(*t->bplan));
    t->conv_bn = malloc((size_t)(nn ? nn : 1) * sizeof(int));
    t->bn_in = malloc((size_t)(nn ? nn : 1) * sizeof(*t->bn_in));
    t->bn_sums = malloc((size_t)(nn ? nn : 1) * sizeof(size_t));
    int *order = malloc((size_t)nv * sizeof(int)), *start = malloc((size_t)nv * sizeof(int)),
        *end = malloc((size_t)nv * sizeof(int)), *edges = calloc((size_t)nv, sizeof(int));
    size_t *size = calloc((size_t)nv, sizeof(size_t)), *goff = calloc((size_t)nv, sizeof(size_t));
    int *reads = NULL;
    char *split = NULL;
    cnn_status s = CNN_OK;
    if (!t->v || !t->acc || !t->bn_save || !t->inplace || !t->fused || !t->bplan || !t->conv_bn || !t->bn_in ||
        !t->bn_sums || !order || !start || !end || !edges || !size || !goff) {
        s = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory planning the training graph");
        goto out;
    }
    const size_t N = (size_t)t->o.max_batch;
    t->arena_floats = 0;
    size_t max_chw = 0;
    for (int i = 0; i < nv; i++) { /* roots: one region each, no reuse */
        const graph_value *gv = &g->values[i];
        mt_value *m = &t->v[i];
        int r = i;
        while (g->values[r].parent >= 0) r = g->values[r].parent;
        m->root = r;
        m->chw = (size_t)gv->c * gv->h * gv->w;
        m->stride = (size_t)g->values[r].c * g->values[r].h * g->values[r].w;
        m->needs_grad = r != g->input;
        m->zero_at = -1;
        if (m->chw > max_chw) max_chw = m->chw;
        start[i] = gv->def;
        end[i] = i == g->output ? nn : gv->def;
    }
    /* readers: lifetimes of the gradients (from the last reader back to the producer) and edges */
    for (int j = 0; j < nn; j++)
        for (int k = 0; k < g->nodes[j].n_in; k++) {
            const int r = t->v[g->nodes[j].in[k]].root;
            edges[r]++;
            if (end[r] < j) end[r] = j;
        }
    /* A ReLU alone reading a whole value runs in place (its backward needs only its output's sign:
     * relu(x) > 0 iff x > 0), as PyTorch's inplace ReLU: one value less kept per conv-BN-ReLU. */
    for (int j = 0; j < nn; j++) {
        const graph_node *nd = &g->nodes[j];
        const int x = nd->n_in ? nd->in[0] : -1;
        t->inplace[j] = nd->op == NODE_ACT && nd->act == ACT_RELU && g->values[x].parent < 0 && x != g->input &&
                        edges[x] == 1 && x != g->output;
    }
    for (int i = 0; i < nv; i++) { /* roots: one region each (but in-place outputs), no reuse */
        const graph_value *gv = &g->values[i];
        if (gv->parent >= 0 || i == g->input) continue;
        if (gv->def >= 0 && t->inplace[gv->def]) {
            t->v[i].off = t->v[g->nodes[gv->def].in[0]].off;
            continue;
        }
        t->v[i].off = t->arena_floats;
        t->arena_floats += mt_round(N * t->v[i].chw);
    }
    for (int i = 0; i < nv; i++) /* views: their root's region plus the channel offset */
        if (g->values[i].parent >= 0) {
            const graph_value *gv = &g->values[i];
            t->v[i].off = t->v[g->values[i].parent].off + (size_t)gv->c_off * gv->h * gv->w;
        }
    /* A root read only through channel views of it, each read once, disjoint and covering all its
     * channels (ShuffleNetV2's channel split), gets every gradient channel written exactly once:
     * written directly, not zeroed and added to. */
    reads = calloc((size_t)nv, sizeof(int));
    split = calloc((size_t)nv, 1);
    if (!reads || !split) {
        s = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory planning the training graph");
        goto out;
    }
    for (int j = 0; j < nn; j++)
        for (int k = 0; k < g->nodes[j].n_in; k++) {
            reads[g->nodes[j].in[k]]++;
            if (g->nodes[j].op == NODE_BN) reads[g->nodes[j].in[k]] += 2; /* BN needs a whole root */
        }
    for (int r = 0; r < nv; r++) {
        if (g->values[r].parent >= 0 || reads[r] || !edges[r]) continue;
        int c_sum = 0, ok = 1;
        for (int a = 0; a < nv && ok; a++) {
            if (g->values[a].parent != r || !reads[a]) continue;
            ok = reads[a] == 1 && t->v[a].root == r;
            c_sum += g->values[a].c;
            for (int b = 0; b < a && ok; b++) /* disjoint channel ranges */
                if (g->values[b].parent == r && reads[b])
                    ok = g->values[a].c_off + g->values[a].c <= g->values[b].c_off ||
                         g->values[b].c_off + g->values[b].c <= g->values[a].c_off;
        }
        split[r] = ok && c_sum == g->values[r].c && edges[r] >= 2;
    }
    for (int j = 0; j < nn; j++) {
        const graph_node *nd = &g->nodes[j];
        for (int k = 0; k < nd->n_in; k++) {
            const int v = nd->in[k], r = t->v[v].root;
            t->acc[j][k] = !((edges[r] == 1 && v == r) || (split[r] && g->values[v].parent == r));
            if (t->acc[j][k]) t->v[r].zero_at = end[r];
            if (nd->op == NODE_BN && t->acc[j][k] && t->v[r].needs_grad) {
                s = cnn_err(err, err_bytes, CNN_ERR_SHAPE, "training graph: the input of node %d is shared", j);
                goto out;
            }
            if (nd->op == NODE_LINEAR && t->v[v].stride != t->v[v].chw) {
                s = cnn_err(err, err_bytes, CNN_ERR_SHAPE, "training graph: a linear layer reads a channel slice");
                goto out;
            }
        }
    }
    /* A frozen BN whose output only an activation reads runs that activation in its own passes
     * (forward and backward: one trip through memory instead of two or three). The activation's
     * output gradient is then read at the BN's backward step: its lifetime starts there. */
    for (int j = 0; j < nn; j++) t->fused[j] = -1;
    for (int j = 0; j < nn && t->o.bn == MODEL_BN_FROZEN; j++) {
        const graph_node *nd = &g->nodes[j];
        const int y = nd->out;
        if (nd->op != NODE_BN || g->values[y].parent >= 0 || y == g->output || edges[y] != 1 ||
            !t->v[nd->in[0]].needs_grad)
            continue;
        for (int a = j + 1; a < nn; a++) {
            const graph_node *an = &g->nodes[a];
            if (an->op != NODE_ACT || an->in[0] != y || t->acc[a][0]) continue;
            t->fused[j] = a;
            t->fused[a] = j;
            const int r = t->v[an->out].root;
            if (start[r] > j) start[r] = j;
            break;
        }
    }
    /* A frozen BN whose output gradient (its fused activation's) one node writes directly, image by
     * image, runs its backward for each image inside that node's backward part of the image (the
     * gradient still in cache); its own step adds up the per-image sums in image order (the same
     * bits). Its input's gradient is then written at that node's step: its lifetime ends there. */
    for (int j = 0; j < nn; j++) {
        t->bn_sums[j] = (size_t)-1;
        for (int k = 0; k < GRAPH_MAX_IN; k++) t->bn_in[j][k] = -1;
    }
    t->sums_doubles = 0;
    for (int j = 0; j < nn && t->o.bn == MODEL_BN_FROZEN; j++) {
        const graph_node *nd = &g->nodes[j];
        if (nd->op != NODE_BN || !t->v[nd->in[0]].needs_grad) continue;
        const int z = t->fused[j] >= 0 ? g->nodes[t->fused[j]].out : nd->out;
        if (g->values[z].parent >= 0 || z == g->output || edges[z] != 1) continue;
        for (int i = j + 1; i < nn; i++) {
            const graph_node *rd = &g->nodes[i];
            const int per_image = rd->op == NODE_CONV || rd->op == NODE_CONCAT_SHUFFLE || rd->op == NODE_CONCAT ||
                                  rd->op == NODE_ADD || rd->op == NODE_POOL;
            for (int k = 0; k < rd->n_in; k++) {
                if (rd->in[k] != z) continue;
                if (per_image && !t->acc[i][k]) {
                    t->bn_in[i][k] = j;
                    t->bn_sums[j] = t->sums_doubles;
                    t->sums_doubles += 2 * N * (size_t)g->values[nd->out].c;
                    const int r = t->v[nd->in[0]].root;
                    if (end[r] < i) end[r] = i;
                }
                i = nn; /* the only reader */
                break;
            }
        }
    }
    /* A frozen BN reading a convolution's output (its only reader) runs image by image right after
     * the convolution of that image (the same computation: the frozen BN treats the images apart). */
    for (int j = 0; j < nn; j++) t->conv_bn[j] = -1;
    for (int j = 0; j < nn && t->o.bn == MODEL_BN_FROZEN; j++) {
        const graph_node *nd = &g->nodes[j];
        const int x = nd->op == NODE_BN ? nd->in[0] : -1, c = x >= 0 ? g->values[x].def : -1;
        if (c < 0 || g->nodes[c].op != NODE_CONV || g->values[x].parent >= 0 || edges[x] != 1) continue;
        t->conv_bn[c] = j;
        t->conv_bn[j] = c;
    }
    for (int r = 0; r < nv; r++) /* a value nobody reads (but the loss) is cleared before its producer's backward */
        if (r == t->v[r].root && r != g->output && !edges[r] && g->values[r].def >= 0) t->v[r].zero_at = g->values[r].def;
    int n_roots = 0;
    for (int i = 0; i < nv; i++)
        if (g->values[i].parent < 0 && t->v[i].needs_grad) {
            size[i] = mt_round(N * t->v[i].chw);
            int j = n_roots++;
            while (j > 0 && size[order[j - 1]] < size[i]) { /* descending size */
                order[j] = order[j - 1];
                j--;
            }
            order[j] = i;
        }
    t->garena_floats = graph_place(n_roots, order, size, start, end, goff);
    for (int i = 0; i < nv; i++) {
        const graph_value *gv = &g->values[i];
        t->v[i].goff = goff[t->v[i].root] + (gv->parent >= 0 ? t->v[i].off - t->v[t->v[i].root].off : 0);
    }
    /* BN saved statistics; scratch per thread */
    size_t conv_scratch = 0;
    t->save_floats = 0;
    for (int j = 0; j < nn; j++) {
        const graph_node *nd = &g->nodes[j];
        if (nd->op == NODE_BN) {
            const int hw = g->values[nd->out].h * g->values[nd->out].w;
            if (!t->min_bn_hw || hw < t->min_bn_hw) t->min_bn_hw = hw;
            t->bn_save[j] = t->save_floats;
            t->save_floats += mt_round(2 * (size_t)g->values[nd->out].c);
        } else if (nd->op == NODE_CONV) {
            const conv2d_params *p = &nd->p.conv.p;
            size_t a = nd->p.conv.scratch_floats, b = conv2d_backward_scratch_floats(p);
            if (t->v[nd->in[0]].needs_grad && conv2d_backward_data_plan_init(&t->bplan[j], p)) {
                t->bpacked_floats += mt_round(t->bplan[j].packed_floats);
                const size_t nw = (size_t)p->c_out * p->c_in * p->k_h * p->k_w;
                if (nw > t->wt_floats) t->wt_floats = nw;
                if (t->bplan[j].scratch_floats > b) b = t->bplan[j].scratch_floats;
            } else {
                t->bplan[j] = (conv2d_plan){0};
            }
            if (a > conv_scratch) conv_scratch = a;
            if (b > conv_scratch) conv_scratch = b;
        }
    }
    t->conv_scratch = mt_round(conv_scratch);
    t->tmp_floats = 2 * mt_round(max_chw);
    t->scratch_stride = t->conv_scratch + t->tmp_floats;
out:
    free(order), free(start), free(end), free(edges), free(size), free(goff), free(reads), free(split);
    return s;
}

static cnn_status mt_alloc(model_train *t, char *err, size_t err_bytes)
{
    graph *g = &t->g;
    t->param_of = malloc((size_t)(g->n_tensors ? g->n_tensors : 1) * sizeof(int));
    t->params = calloc((size_t)(g->n_tensors ? g->n_tensors : 1), sizeof(*t->params));
    if (!t->param_of || !t->params) return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
    t->grad_floats = 0;
    for (int i = 0; i < g->n_tensors; i++) {
        const graph_tensor *gt = &g->tensors[i];
        t->param_of[i] = -1;
        if (!gt->trainable) continue;
        model_param *p = &t->params[t->n_params];
        t->param_of[i] = t->n_params++;
        p->name = gt->name;
        p->n_dims = gt->n_dims;
        memcpy(p->shape, gt->shape, sizeof(p->shape));
        p->n = gt->n;
        p->data = gt->data;
        p->is_head = gt->is_head;
        p->is_bn = gt->is_bn;
        t->grad_floats += mt_round(gt->n);
    }
    const size_t T = (size_t)t->T;
    t->grads = aligned_alloc(64, (t->grad_floats ? t->grad_floats : MT_ALIGN) * sizeof(float));
    t->arena = aligned_alloc(64, (t->arena_floats ? t->arena_floats : MT_ALIGN) * sizeof(float));
    t->garena = aligned_alloc(64, (t->garena_floats ? t->garena_floats : MT_ALIGN) * sizeof(float));
    t->save = aligned_alloc(64, (t->save_floats ? t->save_floats : MT_ALIGN) * sizeof(float));
    t->scratch = aligned_alloc(64, (t->scratch_stride ? t->scratch_stride * T : MT_ALIGN) * sizeof(float));
    t->bpacked = aligned_alloc(64, (t->bpacked_floats ? t->bpacked_floats : MT_ALIGN) * sizeof(float));
    t->wt = malloc((t->wt_floats ? t->wt_floats : 1) * sizeof(float));
    t->sums = malloc((t->sums_doubles ? t->sums_doubles : 1) * sizeof(double));
    if (!t->grads || !t->arena || !t->garena || !t->save || !t->scratch || !t->bpacked || !t->wt || !t->sums)
        return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory for the training buffers (%zu MiB)",
                       model_train_bytes(t) >> 20);
    memset(t->grads, 0, t->grad_floats * sizeof(float));
    size_t at = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (t->bplan[i].packed_floats) {
            t->bplan[i].w = t->bpacked + at;
            at += mt_round(t->bplan[i].packed_floats);
        }
    at = 0;
    for (int i = 0; i < t->n_params; i++) {
        t->params[i].grad = t->grads + at;
        at += mt_round(t->params[i].n);
    }
    /* the job's step sequence */
    t->n_seq = 3 * g->n_nodes + 1;
    t->seq = malloc((size_t)t->n_seq * sizeof(*t->seq));
    if (!t->seq) return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
    int k = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (!mt_fused_act(t, i) && !(g->nodes[i].op == NODE_BN && t->conv_bn[i] >= 0))
            t->seq[k++] = (mt_step){MT_FWD, i, mt_fwd_parts(t, &g->nodes[i])};
    t->seq[k++] = (mt_step){MT_LOSS, -1, 1};
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        int zero = 0; /* whether node i clears any gradient (else its zeroing step is one empty part) */
        for (int r = 0; r < g->n_values && !zero; r++) zero = t->v[r].root == r && t->v[r].needs_grad && t->v[r].zero_at == i;
        t->seq[k++] = (mt_step){MT_ZERO, i, zero ? t->P : 1};
        if (!mt_fused_act(t, i)) t->seq[k++] = (mt_step){MT_BWD, i, mt_bwd_parts(t, &g->nodes[i])};
    }
    t->n_seq = k;
    if (t->T > 1) {
        t->steps = aligned_alloc(64, (size_t)t->n_seq * sizeof(*t->steps));
        if (!t->steps) return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
        for (int i = 0; i < t->n_seq; i++) {
            atomic_init(&t->steps[i].next, 0);
            atomic_init(&t->steps[i].done, 0);
        }
        cnn_status s = threadpool_init(&t->pool, t->T, mt_thread, t);
        if (s != CNN_OK) return cnn_err(err, err_bytes, s, "cannot start %d threads", t->T);
    }
    return CNN_OK;
}

cnn_status model_train_init(model_train **out, const char *arch, const char *weights_path, const model_train_opts *o,
                            char *err, size_t err_bytes)
{
    *out = NULL;
    const model_arch *ma = model_arch_find(arch);
    const arch_builder *ab = model_arch_builder(arch);
    if (!ma || !ab) return cnn_err(err, err_bytes, CNN_ERR_ARG, "unknown model '%s'", arch ? arch : "(null)");
    if (!o || o->max_batch < 1 || o->max_batch > 65536 || o->n_threads < 1 || o->n_threads > MODEL_MAX_THREADS ||
        (o->bn != MODEL_BN_FROZEN && o->bn != MODEL_BN_TRAIN) || o->n_classes < 0 || o->n_classes > MODEL_MAX_CLASSES)
        return cnn_err(err, err_bytes, CNN_ERR_ARG,
                       "training options out of range (batch 1..65536, threads 1..%d, classes 0..%d)", MODEL_MAX_THREADS,
                       MODEL_MAX_CLASSES);
    model_train *t = calloc(1, sizeof(*t));
    if (!t) return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
    t->o = *o;
    t->P = o->max_batch;
    t->T = o->n_threads;
    t->Q = 4 * o->n_threads;
    t->size = ma->input_size;
    cnn_status s = weights_open(&t->w, weights_path, err, err_bytes);
    if (s != CNN_OK) goto fail;
    const char *v;
    int tf_same = 0;
    if ((v = weights_meta(t->w, "padding")) && !(tf_same = !strcmp(v, "tf_same")) && strcmp(v, "torch")) {
        s = cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: __metadata__ padding '%s' (expected torch or tf_same)",
                    weights_path, v);
        goto fail;
    }
    if ((v = weights_meta(t->w, "crop"))) {
        char *end;
        long c = strtol(v, &end, 10);
        if (end == v || *end || c < 32 || c > 1024) {
            s = cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: __metadata__ crop '%s' is not an integer in 32..1024",
                        weights_path, v);
            goto fail;
        }
        t->size = (int)c;
    }
    graph_builder b = {.g = &t->g, .w = t->w, .tf_same = tf_same, .bn_eps = ab->bn_eps, .status = CNN_OK, .err = err,
                       .err_bytes = err_bytes, .train = 1, .dropout = o->dropout != 0, .bn_momentum = ab->bn_momentum,
                       .head_name = ma->head, .head_classes = o->n_classes, .head_seed = o->seed};
    const int y = ab->build(&b, t->size);
    if (b.status != CNN_OK) {
        s = b.status;
        goto fail;
    }
    t->g.output = y;
    const int def = t->g.values[y].def;
    if (def < 0 || t->g.nodes[def].op != NODE_LINEAR) {
        s = cnn_err(err, err_bytes, CNN_ERR_SHAPE, "%s: the graph does not end in a linear layer", weights_path);
        goto fail;
    }
    t->n_classes = t->g.values[y].c;
    if ((s = mt_plan(t, err, err_bytes)) != CNN_OK || (s = mt_alloc(t, err, err_bytes)) != CNN_OK) goto fail;
    *out = t;
    return CNN_OK;
fail:
    model_train_free(t);
    return s;
}

void model_train_free(model_train *t)
{
    if (!t) return;
    threadpool_free(t->pool);
    free(t->steps);
    free(t->seq);
    free(t->v);
    free(t->acc);
    free(t->bn_save);
    free(t->inplace);
    free(t->fused);
    free(t->bplan);
    free(t->conv_bn);
    free(t->bn_in);
    free(t->bn_sums);
    free(t->sums);
    free(t->bpacked);
    free(t->wt);
    free(t->save);
    free(t->params);
    free(t->param_of);
    free(t->grads);
    free(t->arena);
    free(t->garena);
    free(t->scratch);
    graph_free(&t->g);
    weights_free(t->w);
    free(t);
}

int model_train_n_params(const model_train *t) { return t->n_params; }
model_param *model_train_param(model_train *t, int i) { return i >= 0 && i < t->n_params ? &t->params[i] : NULL; }
int model_train_input_size(const model_train *t) { return t->size; }
int model_train_num_classes(const model_train *t) { return t->n_classes; }

size_t model_train_bytes(const model_train *t)
{
    size_t floats = t->arena_floats + t->garena_floats + t->grad_floats + t->save_floats + t->bpacked_floats +
                    t->wt_floats + 2 * t->sums_doubles +
                    t->scratch_stride * (size_t)t->T;
    for (int i = 0; i < t->g.n_tensors; i++) floats += t->g.tensors[i].n;
    return floats * sizeof(float) + t->g.owned_bytes;
}

cnn_status model_train_step(model_train *t, const float *input, const int *labels, int n, uint64_t step, double *loss,
                            int *n_correct)
{
    if (!input || !labels || n < 1 || n > t->o.max_batch) return CNN_ERR_ARG;
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= t->n_classes) return CNN_ERR_ARG;
    if (t->o.bn == MODEL_BN_TRAIN && t->min_bn_hw && (int64_t)n * t->min_bn_hw < 2)
        return CNN_ERR_ARG; /* PyTorch: "Expected more than 1 value per channel when training" */
    t->job_train = 1;
    t->n_bn_steps += t->o.bn == MODEL_BN_TRAIN;
    t->job_n = n;
    t->job_input = input;
    t->job_labels = labels;
    t->job_step = step;
    mt_run_job(t);
    if (loss) *loss = t->job_loss;
    if (n_correct) *n_correct = t->job_correct;
    return CNN_OK;
}

cnn_status model_train_eval(model_train *t, const float *input, int n, float *logits)
{
    if (!input || !logits || n < 1 || n > t->o.max_batch) return CNN_ERR_ARG;
    t->job_train = 0;
    t->job_n = n;
    t->job_input = input;
    t->job_labels = NULL;
    mt_run_job(t);
    memcpy(logits, mt_y(t, t->g.output, 0), (size_t)n * t->n_classes * sizeof(float));
    return CNN_OK;
}

cnn_status model_train_save(const model_train *t, const char *path, const char *const *meta_kv, int n_meta, char *err,
                            size_t err_bytes)
{
    if (n_meta < 0 || (n_meta && !meta_kv)) return cnn_err(err, err_bytes, CNN_ERR_ARG, "bad metadata");
    const size_t n_base = weights_count(t->w), cap = n_base + (size_t)t->g.n_tensors;
    weights_out_tensor *out = calloc(cap ? cap : 1, sizeof(*out));
    weights_meta_kv *meta = calloc((size_t)(n_meta ? n_meta : 1), sizeof(*meta));
    char *written = calloc((size_t)(t->g.n_tensors ? t->g.n_tensors : 1), 1);
    float *tracked = calloc(n_base ? n_base : 1, sizeof(float)); /* updated num_batches_tracked */
    cnn_status s = CNN_OK;
    if (!out || !meta || !written || !tracked) {
        s = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
        goto done;
    }
    size_t n_out = 0;
    for (size_t i = 0; i < n_base; i++) { /* the base file's order; the graph's values where it has them */
        const weights_tensor *bt = weights_at(t->w, i);
        int gi = -1;
        for (int j = 0; j < t->g.n_tensors && gi < 0; j++)
            if (!strcmp(t->g.tensors[j].name, bt->name)) gi = j;
        static const char nbt[] = ".num_batches_tracked";
        const size_t len = strlen(bt->name), nl = sizeof nbt - 1;
        if (gi >= 0) {
            const graph_tensor *gt = &t->g.tensors[gi];
            out[n_out++] = (weights_out_tensor){gt->name, gt->n_dims, gt->shape, gt->data};
            written[gi] = 1;
        } else if (len > nl && !strcmp(bt->name + len - nl, nbt) && bt->n_elems == 1) {
            /* a base file that keeps the BN step counters (as F32): grown by the BN-train steps */
            tracked[i] = (float)((double)bt->data[0] + (double)t->n_bn_steps);
            out[n_out++] = (weights_out_tensor){bt->name, bt->n_dims, bt->shape, &tracked[i]};
        } else {
            out[n_out++] = (weights_out_tensor){bt->name, bt->n_dims, bt->shape, bt->data};
        }
    }
    for (int j = 0; j < t->g.n_tensors; j++)
        if (!written[j])
            out[n_out++] = (weights_out_tensor){t->g.tensors[j].name, t->g.tensors[j].n_dims, t->g.tensors[j].shape,
                                                t->g.tensors[j].data};
    for (int i = 0; i < n_meta; i++) meta[i] = (weights_meta_kv){meta_kv[2 * i], meta_kv[2 * i + 1]};
    s = weights_write(path, out, n_out, meta, (size_t)n_meta, err, err_bytes);
done:
    free(out);
    free(meta);
    free(written);
    free(tracked);
    return s;
}
