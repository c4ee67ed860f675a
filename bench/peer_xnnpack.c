/* XNNPACK peer of `cnnserve bench`: MobileNetV3 Large/Small and ShuffleNetV2 x1.0 built with
 * XNNPACK's operator API (Debian's libxnnpack0, a 2022 snapshot; the engine behind TensorFlow Lite's
 * CPU delegate) from the same safetensors file as ours, run at batch 1 on the same fixed input.
 *
 * Weights: BatchNorm folded into the convolutions as our loader does (in double, eps 1e-3 for
 * MobileNetV3, 1e-5 for ShuffleNetV2), the kernels transposed to XNNPACK's [out][kh][kw][in]. The
 * activations are XNNPACK's NHWC, the input is given in NHWC (each engine gets its native layout,
 * outside the timed region). ReLU is fused into the convolutions (output clamp); hard-swish is
 * XNNPACK's hardswish operator, in place; the squeeze-excitation's hard-sigmoid is folded into its
 * second layer (x/6 + 1/2, clamped to [0, 1]); the residual add and the excitation multiply run in
 * place. ShuffleNetV2's split reads the second half of the input by channel stride and the branch
 * writes its result over it, so the concatenation costs nothing and one channel-shuffle operator
 * produces the unit's output. The last operator yields the pool's workers (XNN_FLAG_YIELD_WORKERS, as
 * TensorFlow Lite's delegate creates its XNNPACK runtime), so they sleep between inferences instead
 * of spinning. TF "SAME" files (__metadata__ padding = tf_same) get the asymmetric
 * padding. Activations share a few buffers (linear-scan reuse over the operators' order).
 *
 * Before timing, the logits are cross-checked against ours (model_load + model_run of the same file
 * on the same input, one thread): "max_abs_diff" per run in the JSON, printed. Timing: per thread
 * count (XNNPACK's pthreadpool; 1 thread runs on the caller with no pool), untimed warm-up passes,
 * then timed passes of all operators in order, as bench/peer_ort.js (same time cap rules).
 *
 * usage: peer_xnnpack --weights-dir DIR --models a,b --threads 1,2 [--iters 100] [--warmup 10]
 *                     [--max-seconds S] --json FILE [--input F32FILE] [--logits-out F32FILE]
 * --models are file stems in DIR (the architecture comes from the file's __metadata__); --input
 * replaces the fixed input by the first 3*S*S floats of a raw NCHW file; --logits-out writes the
 * logits of the last model's first thread count as raw floats. Exit 0, 1 when a model failed, 2 on
 * bad usage. Not part of bin/cnnserve. */
#include <cblas.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <pthreadpool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xnnpack.h>

#include "../core/weights.h"
#include "../models/model.h"
#include "../server/config.h"

#define MIN_CAPPED_ITERS 10 /* as BENCH_MIN_CAPPED_ITERS in server/bench_cli.c */
#define MAX_OPS 512
#define MAX_VALUES 512
#define MAX_BUFFERS 16
#define EXTRA_FLOATS 16 /* XNNPACK kernels may read up to 16 bytes past a tensor */

/* ---- the network as a list of operators on values (NHWC tensors) ---- */

typedef struct {
    int c, h, w;
    int first, last; /* operator indices that touch it */
    int buf;         /* buffer assigned by plan_buffers; -1 = none yet */
} value;

/* A value's channels [off, off + c) of a pixel stride of the value's c. */
typedef struct {
    int v, off, c;
} view;

typedef enum { OP_CONV, OP_MAXPOOL, OP_GAP, OP_FC, OP_HSWISH, OP_ADD, OP_MUL, OP_SHUFFLE } op_kind;

typedef struct {
    op_kind kind;
    view in, in2, out;
    int h_in, w_in; /* spatial size of the input (conv, pool) */
    xnn_operator_t op;
} net_op;

typedef struct {
    value values[MAX_VALUES];
    int n_values;
    net_op ops[MAX_OPS];
    int n_ops;
    float *bufs[MAX_BUFFERS];
    int n_bufs;
    int input, output; /* value ids */
    int tf_same;
    float eps;
    weights *w;
    char err[512];
    int failed;
} net;

/* Tensor and layer names: printf into buf (truncated names simply do not match a tensor). */
static void nm(char *buf, size_t bytes, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void nm(char *buf, size_t bytes, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, bytes, fmt, ap);
    va_end(ap);
}

static int net_fail(net *n, const char *fmt, const char *a, int b)
{
    if (!n->failed) snprintf(n->err, sizeof n->err, fmt, a, b);
    n->failed = 1;
    return -1;
}

static int new_value(net *n, int c, int h, int w)
{
    if (n->n_values == MAX_VALUES) return net_fail(n, "%s: more than %d values", "net", MAX_VALUES);
    value *v = &n->values[n->n_values];
    *v = (value){c, h, w, -1, -1, -1};
    return n->n_values++;
}

static view whole(const net *n, int v) { return (view){v, 0, v >= 0 ? n->values[v].c : 0}; }

static void touch(net *n, int v, int op)
{
    if (v < 0) return;
    value *x = &n->values[v];
    if (x->first < 0) x->first = op;
    x->last = op;
}

static net_op *add_op(net *n, op_kind kind, view in, view in2, view out)
{
    if (n->failed) return NULL;
    if (n->n_ops == MAX_OPS) {
        net_fail(n, "%s: more than %d operators", "net", MAX_OPS);
        return NULL;
    }
    int i = n->n_ops++;
    net_op *o = &n->ops[i];
    *o = (net_op){.kind = kind, .in = in, .in2 = in2, .out = out};
    touch(n, in.v, i);
    touch(n, in2.v, i);
    touch(n, out.v, i);
    return o;
}

static const view NO_VIEW = {-1, 0, 0};

static int check_xnn(net *n, enum xnn_status st, const char *what)
{
    return st == xnn_status_success ? 0 : net_fail(n, "XNNPACK: %s failed (status %d)", what, (int)st);
}

/* Output size and padding along one axis: torch symmetric padding or TF SAME (as kernels_tf_same). */
static int axis(const net *n, int size, int k, int s, int pad, uint32_t *pb, uint32_t *pa)
{
    if (n->tf_same) {
        int out = (size + s - 1) / s;
        int total = (out - 1) * s + k - size;
        if (total < 0) total = 0;
        *pb = (uint32_t)(total / 2);
        *pa = (uint32_t)(total - total / 2);
        return out;
    }
    *pb = *pa = (uint32_t)pad;
    return (size + 2 * pad - k) / s + 1;
}

typedef enum { ACT_NONE_ = 0, ACT_RELU_, ACT_HSWISH_ } act;

/* conv (torchvision weight "<conv>.weight" [c_out][c_in/groups][k][k], no bias) + BatchNorm "<bn>"
 * folded, writing into out (a view of a new value when out.v < 0); activation after it. */
static int conv_bn(net *n, view in, int c_out, int k, int stride, int groups, act a, const char *conv_name,
                   const char *bn_name, view out)
{
    if (n->failed) return -1;
    const value *vin = &n->values[in.v];
    int gi = in.c / groups, go = c_out / groups;
    uint32_t pt, pb, pl, pr;
    int h_out = axis(n, vin->h, k, stride, k / 2, &pt, &pb);
    int w_out = axis(n, vin->w, k, stride, k / 2, &pl, &pr);
    if (out.v < 0) out = whole(n, new_value(n, c_out, h_out, w_out));
    if (n->failed) return -1;
    char name[256];
    const float *wt, *gamma, *beta, *mean, *var;
    int64_t wshape[4] = {c_out, gi, k, k}, cshape[1] = {c_out};
    char err[256];
    nm(name, sizeof name, "%s.weight", conv_name);
    if (weights_get_f32(n->w, name, 4, wshape, &wt, err, sizeof err) != CNN_OK) return net_fail(n, "%s", err, 0);
    const float **bn[4] = {&gamma, &beta, &mean, &var};
    static const char *const bn_keys[4] = {"weight", "bias", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++) {
        nm(name, sizeof name, "%s.%s", bn_name, bn_keys[i]);
        if (weights_get_f32(n->w, name, 1, cshape, bn[i], err, sizeof err) != CNN_OK) return net_fail(n, "%s", err, 0);
    }
    size_t per_out = (size_t)gi * k * k;
    float *kern = malloc((size_t)c_out * per_out * sizeof(float));
    float *bias = malloc((size_t)c_out * sizeof(float));
    if (!kern || !bias) {
        free(kern);
        free(bias);
        return net_fail(n, "%s: out of memory", conv_name, 0);
    }
    /* [o][i][y][x] -> [o][y][x][i], scaled by the folded BatchNorm (in double, as our loader). */
    for (int o = 0; o < c_out; o++) {
        double scale = gamma[o] / sqrt((double)var[o] + n->eps);
        for (int i = 0; i < gi; i++)
            for (int y = 0; y < k; y++)
                for (int x = 0; x < k; x++)
                    kern[(size_t)o * per_out + ((size_t)y * k + x) * gi + i] =
                        (float)(wt[(size_t)o * per_out + ((size_t)i * k + y) * k + x] * scale);
        bias[o] = (float)(beta[o] - mean[o] * scale);
    }
    net_op *op = add_op(n, OP_CONV, in, NO_VIEW, out);
    if (op) {
        op->h_in = vin->h;
        op->w_in = vin->w;
        check_xnn(n,
                  xnn_create_convolution2d_nhwc_f32(pt, pr, pb, pl, (uint32_t)k, (uint32_t)k, (uint32_t)stride,
                                                    (uint32_t)stride, 1, 1, (uint32_t)groups, (size_t)gi, (size_t)go,
                                                    (size_t)n->values[in.v].c, (size_t)n->values[out.v].c, kern, bias,
                                                    a == ACT_RELU_ ? 0.0f : -INFINITY, INFINITY, 0, &op->op),
                  conv_name);
    }
    free(kern);
    free(bias);
    if (a == ACT_HSWISH_ && !n->failed) {
        op = add_op(n, OP_HSWISH, out, NO_VIEW, out);
        if (op)
            check_xnn(n, xnn_create_hardswish_nc_f32((size_t)out.c, (size_t)n->values[out.v].c,
                                                     (size_t)n->values[out.v].c, 0, &op->op),
                      "hardswish");
    }
    return n->failed ? -1 : out.v;
}

/* Fully connected "<name>.weight" [n_out][n_in](,1,1) + "<name>.bias" on a 1x1 value; scale/shift
 * applied to the weights and bias (the hard-sigmoid fold), output clamped to [lo, hi]; flags
 * XNN_FLAG_YIELD_WORKERS on the last operator lets the pool's workers sleep after each inference, as
 * TensorFlow Lite's XNNPACK delegate asks of its runtime. */
static int fc(net *n, int x, int n_out, int n_dims, const char *layer, float scale, float shift, float lo, float hi,
              uint32_t flags)
{
    if (n->failed) return -1;
    int n_in = n->values[x].c;
    char name[256], err[256];
    nm(name, sizeof name, "%s.weight", layer);
    if (n_out <= 0) { /* the classifier: as many outputs as the file has */
        const weights_tensor *t = weights_find(n->w, name);
        if (!t || t->n_dims != n_dims || t->shape[0] <= 0 || t->shape[0] > 1000000)
            return net_fail(n, "tensor '%s' missing or not a classifier", name, 0);
        n_out = (int)t->shape[0];
    }
    int64_t wshape[4] = {n_out, n_in, 1, 1}, bshape[1] = {n_out};
    const float *wt, *b;
    if (weights_get_f32(n->w, name, n_dims, wshape, &wt, err, sizeof err) != CNN_OK) return net_fail(n, "%s", err, 0);
    nm(name, sizeof name, "%s.bias", layer);
    if (weights_get_f32(n->w, name, 1, bshape, &b, err, sizeof err) != CNN_OK) return net_fail(n, "%s", err, 0);
    float *kern = malloc((size_t)n_out * n_in * sizeof(float));
    float *bias = malloc((size_t)n_out * sizeof(float));
    if (!kern || !bias) {
        free(kern);
        free(bias);
        return net_fail(n, "%s: out of memory", layer, 0);
    }
    for (size_t i = 0; i < (size_t)n_out * n_in; i++) kern[i] = wt[i] * scale;
    for (int o = 0; o < n_out; o++) bias[o] = b[o] * scale + shift;
    int y = new_value(n, n_out, 1, 1);
    net_op *op = add_op(n, OP_FC, whole(n, x), NO_VIEW, whole(n, y));
    if (op)
        check_xnn(n, xnn_create_fully_connected_nc_f32((size_t)n_in, (size_t)n_out, (size_t)n_in, (size_t)n_out, kern,
                                                       bias, lo, hi, flags, &op->op),
                  layer);
    free(kern);
    free(bias);
    return n->failed ? -1 : y;
}

static int global_avg(net *n, int x)
{
    if (n->failed) return -1;
    int c = n->values[x].c;
    int y = new_value(n, c, 1, 1);
    net_op *op = add_op(n, OP_GAP, whole(n, x), NO_VIEW, whole(n, y));
    if (op)
        check_xnn(n, xnn_create_global_average_pooling_nwc_f32((size_t)c, (size_t)c, (size_t)c, -INFINITY, INFINITY, 0,
                                                               &op->op),
                  "global average pooling");
    return n->failed ? -1 : y;
}

static void hswish_inplace(net *n, int x)
{
    net_op *op = add_op(n, OP_HSWISH, whole(n, x), NO_VIEW, whole(n, x));
    size_t c = (size_t)(n->failed ? 0 : n->values[x].c);
    if (op) check_xnn(n, xnn_create_hardswish_nc_f32(c, c, c, 0, &op->op), "hardswish");
}

/* ---- MobileNetV3 (torchvision 0.14, width 1.0) ---- */

typedef struct {
    int c_in, kernel, c_exp, c_out, use_se, hswish, stride;
} bneck_row;

static const bneck_row bneck_large[] = {
    {16, 3, 16, 16, 0, 0, 1},   {16, 3, 64, 24, 0, 0, 2},    {24, 3, 72, 24, 0, 0, 1},
    {24, 5, 72, 40, 1, 0, 2},   {40, 5, 120, 40, 1, 0, 1},   {40, 5, 120, 40, 1, 0, 1},
    {40, 3, 240, 80, 0, 1, 2},  {80, 3, 200, 80, 0, 1, 1},   {80, 3, 184, 80, 0, 1, 1},
    {80, 3, 184, 80, 0, 1, 1},  {80, 3, 480, 112, 1, 1, 1},  {112, 3, 672, 112, 1, 1, 1},
    {112, 5, 672, 160, 1, 1, 2}, {160, 5, 960, 160, 1, 1, 1}, {160, 5, 960, 160, 1, 1, 1},
};
static const bneck_row bneck_small[] = {
    {16, 3, 16, 16, 1, 0, 2},  {16, 3, 72, 24, 0, 0, 2},   {24, 3, 88, 24, 0, 0, 1},
    {24, 5, 96, 40, 1, 1, 2},  {40, 5, 240, 40, 1, 1, 1},  {40, 5, 240, 40, 1, 1, 1},
    {40, 5, 120, 48, 1, 1, 1}, {48, 5, 144, 48, 1, 1, 1},  {48, 5, 288, 96, 1, 1, 2},
    {96, 5, 576, 96, 1, 1, 1}, {96, 5, 576, 96, 1, 1, 1},
};

static int make_divisible8(int v)
{
    int m = (v + 4) / 8 * 8;
    if (m < 8) m = 8;
    if (m * 10 < 9 * v) m += 8;
    return m;
}

/* Conv2dNormActivation at "<prefix>.0" / "<prefix>.1". */
static int cna(net *n, int x, int c_out, int k, int stride, int groups, act a, const char *prefix)
{
    char conv[200], bn[200];
    nm(conv, sizeof conv, "%s.0", prefix);
    nm(bn, sizeof bn, "%s.1", prefix);
    return conv_bn(n, whole(n, x), c_out, k, stride, groups, a, conv, bn, NO_VIEW);
}

static int bneck(net *n, int x, const bneck_row *r, int index)
{
    act a = r->hswish ? ACT_HSWISH_ : ACT_RELU_;
    char name[200], fc1[200], fc2[200];
    int j = 0, y = x;
    if (r->c_exp != r->c_in) {
        nm(name, sizeof name, "features.%d.block.%d", index, j++);
        y = cna(n, y, r->c_exp, 1, 1, 1, a, name);
    }
    nm(name, sizeof name, "features.%d.block.%d", index, j++);
    y = cna(n, y, r->c_exp, r->kernel, r->stride, r->c_exp, a, name);
    if (r->use_se && !n->failed) {
        nm(fc1, sizeof fc1, "features.%d.block.%d.fc1", index, j);
        nm(fc2, sizeof fc2, "features.%d.block.%d.fc2", index, j);
        j++;
        int s = global_avg(n, y);
        s = fc(n, s, make_divisible8(r->c_exp / 4), 4, fc1, 1.0f, 0.0f, 0.0f, INFINITY, 0);
        /* hard-sigmoid: relu6(x + 3) / 6 = clamp(x / 6 + 1/2, 0, 1) folded into the layer */
        s = fc(n, s, r->c_exp, 4, fc2, 1.0f / 6.0f, 0.5f, 0.0f, 1.0f, 0);
        if (!n->failed) {
            const value *v = &n->values[y];
            net_op *op = add_op(n, OP_MUL, whole(n, y), whole(n, s), whole(n, y));
            if (op) {
                op->h_in = v->h;
                op->w_in = v->w;
                check_xnn(n, xnn_create_multiply_nd_f32(-INFINITY, INFINITY, 0, &op->op), "multiply");
            }
        }
    }
    nm(name, sizeof name, "features.%d.block.%d", index, j);
    y = cna(n, y, r->c_out, 1, 1, 1, ACT_NONE_, name);
    if (r->stride == 1 && r->c_in == r->c_out && !n->failed) {
        net_op *op = add_op(n, OP_ADD, whole(n, y), whole(n, x), whole(n, y));
        if (op) check_xnn(n, xnn_create_add_nd_f32(-INFINITY, INFINITY, 0, &op->op), "add");
    }
    return n->failed ? -1 : y;
}

static int mobilenet_v3(net *n, int x, const bneck_row *rows, int n_rows, int last_channel)
{
    char name[64];
    x = cna(n, x, rows[0].c_in, 3, 2, 1, ACT_HSWISH_, "features.0");
    for (int i = 0; i < n_rows && !n->failed; i++) x = bneck(n, x, &rows[i], i + 1);
    nm(name, sizeof name, "features.%d", n_rows + 1);
    x = cna(n, x, 6 * rows[n_rows - 1].c_out, 1, 1, 1, ACT_HSWISH_, name);
    x = global_avg(n, x);
    x = fc(n, x, last_channel, 2, "classifier.0", 1.0f, 0.0f, -INFINITY, INFINITY, 0);
    if (!n->failed) hswish_inplace(n, x);
    return fc(n, x, -1, 2, "classifier.3", 1.0f, 0.0f, -INFINITY, INFINITY, XNN_FLAG_YIELD_WORKERS);
}

/* ---- ShuffleNetV2 x1.0 ---- */

static int shuffle(net *n, int x)
{
    if (n->failed) return -1;
    const value v = n->values[x];
    int y = new_value(n, v.c, v.h, v.w);
    net_op *op = add_op(n, OP_SHUFFLE, whole(n, x), NO_VIEW, whole(n, y));
    if (op)
        check_xnn(n, xnn_create_channel_shuffle_nc_x32(2, (size_t)v.c / 2, (size_t)v.c, (size_t)v.c, 0, &op->op),
                  "channel shuffle");
    return n->failed ? -1 : y;
}

/* conv + BN at "<prefix>.<ci>" / "<prefix>.<ci+1>". */
static int cb(net *n, view in, int c_out, int k, int stride, int groups, act a, const char *prefix, int ci, view out)
{
    char conv[200], bn[200];
    nm(conv, sizeof conv, "%s.%d", prefix, ci);
    nm(bn, sizeof bn, "%s.%d", prefix, ci + 1);
    return conv_bn(n, in, c_out, k, stride, groups, a, conv, bn, out);
}

/* branch2 (1x1 + ReLU, 3x3 depthwise, 1x1 + ReLU) from in, its result written into out. */
static void branch2(net *n, view in, int half, int stride, const char *prefix, view out)
{
    char name[200];
    nm(name, sizeof name, "%s.branch2", prefix);
    int t = cb(n, in, half, 1, 1, 1, ACT_RELU_, name, 0, NO_VIEW);
    if (t < 0) return;
    t = cb(n, whole(n, t), half, 3, stride, half, ACT_NONE_, name, 3, NO_VIEW);
    if (t < 0) return;
    cb(n, whole(n, t), half, 1, 1, 1, ACT_RELU_, name, 5, out);
}

static int shufflenet_unit(net *n, int x, int c_out, int stride, const char *prefix)
{
    if (n->failed) return -1;
    int half = c_out / 2;
    const value v = n->values[x];
    if (stride == 1) { /* x = [x1 | x2]: the branch reads x2 and overwrites it with its result */
        view x2 = {x, v.c / 2, v.c / 2};
        branch2(n, x2, half, 1, prefix, x2);
        return shuffle(n, x);
    }
    uint32_t p0, p1;
    int h = axis(n, v.h, 3, stride, 1, &p0, &p1), w = axis(n, v.w, 3, stride, 1, &p0, &p1);
    int cat = new_value(n, c_out, h, w);
    if (cat < 0) return -1;
    char name[200];
    nm(name, sizeof name, "%s.branch1", prefix);
    int t = cb(n, whole(n, x), v.c, 3, stride, v.c, ACT_NONE_, name, 0, NO_VIEW);
    if (t < 0) return -1;
    cb(n, whole(n, t), half, 1, 1, 1, ACT_RELU_, name, 2, (view){cat, 0, half});
    branch2(n, whole(n, x), half, stride, prefix, (view){cat, half, half});
    return shuffle(n, cat);
}

static int shufflenet_v2(net *n, int x)
{
    static const int repeats[3] = {4, 8, 4}, channels[5] = {24, 116, 232, 464, 1024};
    x = cb(n, whole(n, x), channels[0], 3, 2, 1, ACT_RELU_, "conv1", 0, NO_VIEW);
    if (x < 0) return -1;
    const value v = n->values[x];
    int h = (v.h + 2 - 3) / 2 + 1, w = (v.w + 2 - 3) / 2 + 1;
    int y = new_value(n, v.c, h, w);
    net_op *op = add_op(n, OP_MAXPOOL, whole(n, x), NO_VIEW, whole(n, y));
    if (op) {
        op->h_in = v.h;
        op->w_in = v.w;
        check_xnn(n, xnn_create_max_pooling2d_nhwc_f32(1, 1, 1, 1, 3, 3, 2, 2, 1, 1, (size_t)v.c, (size_t)v.c,
                                                       (size_t)v.c, -INFINITY, INFINITY, 0, &op->op),
                  "max pooling");
    }
    x = y;
    char name[64];
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < repeats[s]; i++) {
            nm(name, sizeof name, "stage%d.%d", s + 2, i);
            x = shufflenet_unit(n, x, channels[s + 1], i == 0 ? 2 : 1, name);
        }
    if (x < 0) return -1;
    x = cb(n, whole(n, x), channels[4], 1, 1, 1, ACT_RELU_, "conv5", 0, NO_VIEW);
    x = global_avg(n, x);
    return fc(n, x, -1, 2, "fc", 1.0f, 0.0f, -INFINITY, INFINITY, XNN_FLAG_YIELD_WORKERS);
}

/* ---- buffers, set-up, run ---- */

/* Linear scan over the operators: a value takes a free buffer at its first operator and returns it
 * after its last; every buffer holds the largest value. The input has its own buffer (0). */
static int plan_buffers(net *n)
{
    size_t max_floats = 0;
    for (int i = 0; i < n->n_values; i++) {
        size_t f = (size_t)n->values[i].c * n->values[i].h * n->values[i].w;
        if (f > max_floats) max_floats = f;
    }
    int free_list[MAX_BUFFERS], n_free = 0;
    n->n_bufs = 1;
    n->values[n->input].buf = 0;
    for (int op = 0; op < n->n_ops; op++) {
        for (int i = 0; i < n->n_values; i++) {
            value *v = &n->values[i];
            if (v->first != op || v->buf >= 0) continue;
            if (n_free) v->buf = free_list[--n_free];
            else if (n->n_bufs == MAX_BUFFERS) return net_fail(n, "%s: more than %d buffers live", "net", MAX_BUFFERS);
            else v->buf = n->n_bufs++;
        }
        for (int i = 0; i < n->n_values; i++)
            if (n->values[i].last == op && i != n->input && i != n->output) free_list[n_free++] = n->values[i].buf;
    }
    for (int b = 0; b < n->n_bufs; b++) {
        n->bufs[b] = aligned_alloc(64, (max_floats + EXTRA_FLOATS) * sizeof(float));
        if (!n->bufs[b]) return net_fail(n, "%s: out of memory for %d buffers", "net", n->n_bufs);
        memset(n->bufs[b], 0, (max_floats + EXTRA_FLOATS) * sizeof(float));
    }
    return 0;
}

static float *view_ptr(const net *n, view v) { return n->bufs[n->values[v.v].buf] + v.off; }

/* Binds every operator to its buffers and to the thread pool (NULL: the calling thread). */
static int setup_ops(net *n, pthreadpool_t pool)
{
    for (int i = 0; i < n->n_ops && !n->failed; i++) {
        net_op *o = &n->ops[i];
        const value *vi = &n->values[o->in.v];
        const float *in = view_ptr(n, o->in);
        float *out = view_ptr(n, o->out);
        size_t pixels = (size_t)vi->h * vi->w;
        enum xnn_status st = xnn_status_invalid_parameter;
        switch (o->kind) {
        case OP_CONV:
            st = xnn_setup_convolution2d_nhwc_f32(o->op, 1, (size_t)o->h_in, (size_t)o->w_in, in, out, pool);
            break;
        case OP_MAXPOOL:
            st = xnn_setup_max_pooling2d_nhwc_f32(o->op, 1, (size_t)o->h_in, (size_t)o->w_in, in, out, pool);
            break;
        case OP_GAP: st = xnn_setup_global_average_pooling_nwc_f32(o->op, 1, pixels, in, out, pool); break;
        case OP_FC: st = xnn_setup_fully_connected_nc_f32(o->op, 1, in, out, pool); break;
        case OP_HSWISH: st = xnn_setup_hardswish_nc_f32(o->op, pixels, in, out, pool); break;
        case OP_ADD: {
            size_t shape[1] = {pixels * (size_t)vi->c};
            st = xnn_setup_add_nd_f32(o->op, 1, shape, 1, shape, in, view_ptr(n, o->in2), out, pool);
            break;
        }
        case OP_MUL: {
            size_t s1[2] = {pixels, (size_t)vi->c}, s2[2] = {1, (size_t)vi->c};
            st = xnn_setup_multiply_nd_f32(o->op, 2, s1, 2, s2, in, view_ptr(n, o->in2), out, pool);
            break;
        }
        case OP_SHUFFLE: st = xnn_setup_channel_shuffle_nc_x32(o->op, pixels, in, out, pool); break;
        }
        check_xnn(n, st, "operator set-up");
    }
    return n->failed ? -1 : 0;
}

static int run_ops(net *n, pthreadpool_t pool)
{
    for (int i = 0; i < n->n_ops; i++)
        if (xnn_run_operator(n->ops[i].op, pool) != xnn_status_success) return -1;
    return 0;
}

static void net_free(net *n)
{
    for (int i = 0; i < n->n_ops; i++)
        if (n->ops[i].op) xnn_delete_operator(n->ops[i].op);
    for (int b = 0; b < n->n_bufs; b++) free(n->bufs[b]);
    n->n_ops = n->n_bufs = 0;
}

/* Builds the network of arch from the open weights; 0 or -1 with n->err. */
static int net_build(net *n, const char *arch, int size)
{
    n->input = new_value(n, 3, size, size);
    if (!strcmp(arch, "mobilenet_v3_large"))
        n->output = mobilenet_v3(n, n->input, bneck_large, (int)(sizeof bneck_large / sizeof bneck_large[0]), 1280);
    else if (!strcmp(arch, "mobilenet_v3_small"))
        n->output = mobilenet_v3(n, n->input, bneck_small, (int)(sizeof bneck_small / sizeof bneck_small[0]), 1024);
    else if (!strcmp(arch, "shufflenet_v2_x1_0"))
        n->output = shufflenet_v2(n, n->input);
    else
        return net_fail(n, "architecture '%s' has no XNNPACK build here (mobile models only)", arch, 0);
    if (n->failed) return -1;
    return plan_buffers(n);
}

/* ---- timing, JSON ---- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* p-th percentile of sorted values, linear between closest ranks (numpy's default). */
static double percentile(const double *s, int n, double p)
{
    double pos = p / 100.0 * (n - 1);
    int lo = (int)floor(pos), hi = lo + 1 < n ? lo + 1 : n - 1;
    return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

static json_t *loadavg_json(void)
{
    double a[3];
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return json_null();
    int ok = fscanf(f, "%lf %lf %lf", &a[0], &a[1], &a[2]) == 3;
    fclose(f);
    return ok ? json_pack("[f,f,f]", a[0], a[1], a[2]) : json_null();
}

typedef struct {
    char weights_dir[1024], models[1024], threads[256], json[1024], input[1024], logits_out[1024];
    int iters, warmup, max_seconds, show_help;
} opts;

static const config_flag flag_defs[] = {
    CONFIG_STR("weights-dir", opts, weights_dir), CONFIG_STR("models", opts, models),
    CONFIG_STR("threads", opts, threads),         CONFIG_STR("json", opts, json),
    CONFIG_STR("input", opts, input),             CONFIG_STR("logits-out", opts, logits_out),
    CONFIG_INT("iters", opts, iters, 1, 1000000), CONFIG_INT("warmup", opts, warmup, 0, 1000000),
    CONFIG_INT("max-seconds", opts, max_seconds, 0, 86400), CONFIG_SWITCH("help", opts, show_help),
};

static const char usage[] =
    "usage: peer_xnnpack --weights-dir DIR --models a,b --threads 1,2 [--iters 100] [--warmup 10]\n"
    "                    [--max-seconds S] --json FILE [--input F32FILE] [--logits-out F32FILE]\n";

/* One model at every thread count: {"model", "arch", "n_operators", "runs": [...], "check"} or
 * {"model", "error"}. */
static json_t *bench_model(const opts *o, const char *name, const int *threads, int n_threads, float **logits_keep,
                           int *n_logits_keep)
{
    char path[2200], err[512] = "", warn[512];
    nm(path, sizeof path, "%s/%s.safetensors", o->weights_dir, name);
    json_t *entry = json_pack("{s:s}", "model", name);
    net *n = calloc(1, sizeof *n);
    model *m = NULL;
    model_ctx *ctx = NULL;
    float *input = NULL, *nhwc = NULL, *ours = NULL, *theirs = NULL;
    double *times = NULL;
    if (!n) goto oom;
    if (weights_open(&n->w, path, err, sizeof err) != CNN_OK) goto fail;
    const char *arch = weights_meta(n->w, "architecture");
    if (!arch) arch = name;
    const char *pad = weights_meta(n->w, "padding");
    n->tf_same = pad && !strcmp(pad, "tf_same");
    n->eps = strncmp(arch, "mobilenet_v3", 12) ? 1e-5f : 1e-3f;
    /* Ours on the same file: the reference logits. */
    if (model_load(&m, arch, path, err, sizeof err, warn, sizeof warn) != CNN_OK) goto fail;
    const int size = model_input_size(m), n_classes = model_num_classes(m);
    const size_t n_in = (size_t)3 * size * size;
    input = malloc(n_in * sizeof(float));
    nhwc = malloc((n_in + EXTRA_FLOATS) * sizeof(float));
    ours = malloc((size_t)n_classes * sizeof(float));
    times = malloc((size_t)o->iters * sizeof(double));
    if (!input || !nhwc || !ours || !times) goto oom;
    if (o->input[0]) {
        FILE *f = fopen(o->input, "rb");
        size_t got = f ? fread(input, sizeof(float), n_in, f) : 0;
        if (f) fclose(f);
        if (got != n_in) {
            snprintf(err, sizeof err, "--input %.400s: fewer than %zu floats", o->input, n_in);
            goto fail;
        }
    } else {
        for (size_t i = 0; i < n_in; i++) input[i] = (float)((double)(i % 251) / 125.0 - 1.0);
    }
    for (int c = 0; c < 3; c++)
        for (size_t p = 0; p < (size_t)size * size; p++) nhwc[p * 3 + (size_t)c] = input[(size_t)c * size * size + p];
    if (model_ctx_init(&ctx, m) != CNN_OK) goto oom;
    model_run(ctx, input, ours);
    model_ctx_free(ctx);
    ctx = NULL;
    if (net_build(n, arch, size)) goto fail_net;
    if (n->values[n->output].c != n_classes) {
        snprintf(err, sizeof err, "%d XNNPACK outputs, ours has %d", n->values[n->output].c, n_classes);
        goto fail;
    }
    json_object_set_new(entry, "arch", json_string(arch));
    json_object_set_new(entry, "n_operators", json_integer(n->n_ops));
    json_object_set_new(entry, "n_buffers", json_integer(n->n_bufs));
    json_t *runs = json_array();
    json_object_set_new(entry, "runs", runs);
    double worst_diff = 0.0, max_logit = 0.0;
    for (int k = 0; k < n_classes; k++) max_logit = fmax(max_logit, fabs(ours[k]));
    int ours_argmax = 0;
    for (int k = 1; k < n_classes; k++)
        if (ours[k] > ours[ours_argmax]) ours_argmax = k;
    for (int t = 0; t < n_threads; t++) {
        pthreadpool_t pool = threads[t] > 1 ? pthreadpool_create((size_t)threads[t]) : NULL;
        if (threads[t] > 1 && !pool) goto oom;
        memcpy(n->bufs[0], nhwc, n_in * sizeof(float));
        if (setup_ops(n, pool) || run_ops(n, pool)) {
            if (pool) pthreadpool_destroy(pool);
            if (!n->failed) snprintf(n->err, sizeof n->err, "XNNPACK: running the operators failed");
            goto fail_net;
        }
        const float *y = view_ptr(n, whole(n, n->output));
        double diff = 0.0;
        for (int k = 0; k < n_classes; k++) diff = fmax(diff, fabs((double)y[k] - ours[k]));
        worst_diff = fmax(worst_diff, diff);
        if (t == 0) {
            theirs = malloc((size_t)n_classes * sizeof(float));
            if (!theirs) {
                if (pool) pthreadpool_destroy(pool);
                goto oom;
            }
            memcpy(theirs, y, (size_t)n_classes * sizeof(float));
        }
        const double cap_ms = o->max_seconds * 1000.0, t_start = now_ms();
        for (int i = 0; i < o->warmup; i++) {
            if (i && cap_ms > 0 && now_ms() - t_start > cap_ms / 6) break;
            run_ops(n, pool);
        }
        json_t *load = loadavg_json();
        int n_done = 0;
        double timed = 0.0;
        while (n_done < o->iters && !(cap_ms > 0 && n_done >= MIN_CAPPED_ITERS && timed > cap_ms)) {
            double t0 = now_ms();
            run_ops(n, pool);
            times[n_done] = now_ms() - t0;
            timed += times[n_done++];
        }
        if (pool) pthreadpool_destroy(pool);
        json_t *all = json_array(), *head = json_array();
        for (int i = 0; i < n_done; i++) json_array_append_new(all, json_real(times[i]));
        int argmax = 0;
        for (int k = 1; k < n_classes; k++)
            if (y[k] > y[argmax]) argmax = k;
        for (int k = 0; k < 8 && k < n_classes; k++) json_array_append_new(head, json_real(y[k]));
        qsort(times, (size_t)n_done, sizeof(double), cmp_double);
        json_array_append_new(
            runs, json_pack("{s:i,s:i,s:f,s:f,s:f,s:f,s:f,s:o,s:i,s:o,s:o,s:f,s:b}", "threads", threads[t], "iters",
                            n_done, "median_ms", percentile(times, n_done, 50), "p90_ms", percentile(times, n_done, 90),
                            "p99_ms", percentile(times, n_done, 99), "min_ms", times[0], "max_ms", times[n_done - 1],
                            "loadavg_before", load, "argmax", argmax, "logits_head", head, "times_ms", all,
                            "max_abs_diff_ours", diff, "argmax_equal_ours", argmax == ours_argmax));
        printf("xnnpack     %-20s %dT  median %8.3f ms  p90 %8.3f  p99 %8.3f  (%d passes)  max|logit - ours| %.3g "
               "(max|logit| %.3g)\n",
               name, threads[t], percentile(times, n_done, 50), percentile(times, n_done, 90),
               percentile(times, n_done, 99), n_done, diff, max_logit);
        fflush(stdout);
    }
    json_object_set_new(entry, "check", json_pack("{s:f,s:f,s:i,s:i}", "max_abs_diff", worst_diff, "max_abs_logit_ours",
                                                   max_logit, "ours_argmax", ours_argmax, "n_logits", n_classes));
    free(*logits_keep);
    *logits_keep = theirs;
    *n_logits_keep = n_classes;
    theirs = NULL;
    goto done;
oom:
    snprintf(err, sizeof err, "out of memory");
    goto fail;
fail_net:
    snprintf(err, sizeof err, "%s", n->err);
fail:
    json_object_del(entry, "runs");
    json_object_set_new(entry, "error", json_string(err));
    fprintf(stderr, "peer_xnnpack: %s: %s\n", name, err);
done:
    if (ctx) model_ctx_free(ctx);
    model_free(m);
    if (n) {
        net_free(n);
        weights_free(n->w);
    }
    free(n);
    free(input);
    free(nhwc);
    free(ours);
    free(theirs);
    free(times);
    return entry;
}

int main(int argc, char **argv)
{
    opts o = {.iters = 100, .warmup = 10};
    char err[512];
    if (config_parse_flags(flag_defs, sizeof flag_defs / sizeof flag_defs[0], &o, NULL, argc - 1, argv + 1, NULL, NULL,
                           err, sizeof err) != CNN_OK) {
        fprintf(stderr, "peer_xnnpack: %s\n%s", err, usage);
        return 2;
    }
    if (o.show_help) {
        fputs(usage, stdout);
        return 0;
    }
    if (!o.weights_dir[0] || !o.models[0] || !o.threads[0] || !o.json[0]) {
        fprintf(stderr, "peer_xnnpack: --weights-dir, --models, --threads and --json are required\n%s", usage);
        return 2;
    }
    int threads[16], n_threads = 0;
    for (char *save = NULL, *tok = strtok_r(o.threads, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int64_t v;
        if (n_threads == 16 || config_parse_int(tok, 1, 64, &v) != CNN_OK) {
            fprintf(stderr, "peer_xnnpack: --threads: expected up to 16 counts in 1..64, got '%s'\n", tok);
            return 2;
        }
        threads[n_threads++] = (int)v;
    }
    /* Our engine runs only for the cross-check, on the calling thread: OpenBLAS must not start
     * threads of its own that would compete with XNNPACK's. */
    openblas_set_num_threads(1);
    enum xnn_status st = xnn_initialize(NULL);
    json_t *out = json_pack("{s:s,s:i}", "peer", "xnnpack", "xnn_initialize", (int)st);
    json_t *models = json_array();
    json_object_set_new(out, "models", models);
    float *logits = NULL;
    int n_logits = 0, failed = 0;
    if (st != xnn_status_success) {
        json_object_set_new(out, "skipped", json_sprintf("xnn_initialize failed (status %d)", (int)st));
        failed = 1;
    } else {
        for (char *save = NULL, *tok = strtok_r(o.models, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            json_t *e = bench_model(&o, tok, threads, n_threads, &logits, &n_logits);
            failed |= json_object_get(e, "error") != NULL;
            json_array_append_new(models, e);
        }
        xnn_deinitialize();
    }
    if (json_dump_file(out, o.json, JSON_INDENT(1)) != 0) {
        fprintf(stderr, "peer_xnnpack: cannot write %s\n", o.json);
        failed = 1;
    }
    json_decref(out);
    if (o.logits_out[0]) {
        FILE *f = fopen(o.logits_out, "wb");
        if (!f || !logits || fwrite(logits, sizeof(float), (size_t)n_logits, f) != (size_t)n_logits) {
            fprintf(stderr, "peer_xnnpack: cannot write %s\n", o.logits_out);
            failed = 1;
        }
        if (f && fclose(f)) failed = 1;
    }
    free(logits);
    return failed ? 1 : 0;
}
