/* Architecture registry, model loading (weights -> graph -> plan) and per-thread contexts. */
#include "model.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/kernels.h"
#include "../core/threadpool.h"
#include "../core/weights.h"
#include "archs.h"
#include "graph.h"
#include "labels.h"

static const char *const aliases_mnv3l[] = {"mnv3l", "mobilenetv3_large", "mobilenet_v3l", NULL};
static const char *const aliases_mnv3s[] = {"mnv3s", "mobilenetv3_small", "mobilenet_v3s", NULL};
static const char *const aliases_shuffle[] = {"shufflenet", "shufflenet_v2", "shufflenetv2", NULL};
static const char *const aliases_alexnet[] = {"alex", NULL};
static const char *const aliases_inception[] = {"inception", "inceptionv3", "inception3", NULL};

/* The paper's five models, in its order. */
static const model_arch archs_pub[] = {
    {"mobilenet_v3_large", aliases_mnv3l, 224, 256, "classifier.3"},
    {"mobilenet_v3_small", aliases_mnv3s, 224, 256, "classifier.3"},
    {"shufflenet_v2_x1_0", aliases_shuffle, 224, 256, "fc"},
    {"alexnet", aliases_alexnet, 224, 256, "classifier.6"},
    {"inception_v3", aliases_inception, 299, 342, "fc"},
};
#define N_ARCHS ((int)(sizeof(archs_pub) / sizeof(archs_pub[0])))

/* Builders, index-aligned with archs_pub; BatchNorm eps and momentum as torchvision sets them per
 * family. */
static const arch_builder arch_impl[N_ARCHS] = {
    {mobilenet_v3_large_build, 1e-3f, 0.01f}, {mobilenet_v3_small_build, 1e-3f, 0.01f},
    {shufflenet_v2_x1_0_build, 1e-5f, 0.1f}, {alexnet_build, 1e-5f, 0.1f}, {inception_v3_build, 1e-3f, 0.1f},
};

const model_arch *model_archs(int *n_out)
{
    *n_out = N_ARCHS;
    return archs_pub;
}

static int arch_index(const char *name)
{
    if (!name) return -1;
    for (int i = 0; i < N_ARCHS; i++) {
        if (!strcasecmp(name, archs_pub[i].name)) return i;
        for (const char *const *a = archs_pub[i].aliases; *a; a++)
            if (!strcasecmp(name, *a)) return i;
    }
    return -1;
}

const arch_builder *model_arch_builder(const char *name)
{
    int i = arch_index(name);
    return i < 0 ? NULL : &arch_impl[i];
}

const model_arch *model_arch_find(const char *name)
{
    int i = arch_index(name);
    return i < 0 ? NULL : &archs_pub[i];
}

struct model {
    const model_arch *arch;
    weights *w;
    graph g;
    int input_size, resize_size, num_classes, tf_same;
    int feat_value, feat_dim; /* the head layer's input value and its length */
    float mean[3], std[3];
    char *name;              /* model_name: file stem (own labels) or NULL (the arch name) */
    int n_labels;            /* K */
    char **labels;           /* own labels (K strings, one allocation with labels[0]'s text), or NULL */
};

struct model_ctx {
    const model *m;
    float *arena;
    float *scratch;        /* n_threads buffers of scratch_stride floats */
    size_t scratch_stride;
    threadpool *pool;      /* NULL with one thread */
    threadpool_step *steps;/* one per graph node, shared by the pool's threads */
    unsigned next_job;     /* the number the pool's next threadpool_start returns */
    const float *_Atomic input; /* the latest inference's input (read by every thread) */
    _Atomic int kind;      /* what the pool's latest job runs (ctx_job_kind) */
    _Atomic int batch_n;   /* CTX_JOB_TAIL: rows in batch_a */
    int max_batch;         /* model_run_batch's largest n */
    float *batch_a, *batch_b; /* max_batch x graph_tail_floats each (max_batch > 1 and a tail) */
};

/* The pool's jobs: a whole inference, the nodes before the batched tail for one input, or the
 * tail on batch_n inputs. */
typedef enum { CTX_JOB_GRAPH = 0, CTX_JOB_HEAD, CTX_JOB_TAIL } ctx_job_kind;

/* Parse "a,b,c" into three positive-or-any floats. */
static int parse_floats3(const char *s, float out[3])
{
    const char *p = s;
    for (int i = 0; i < 3; i++) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno) return -1;
        out[i] = (float)v;
        p = end;
        while (isspace((unsigned char)*p)) p++;
        if (i < 2) {
            if (*p != ',') return -1;
            p++;
        }
    }
    return *p == '\0' ? 0 : -1;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

/* Read the preprocessing / padding / class-count metadata; absent keys keep the arch defaults. */
static cnn_status model_read_meta(model *m, int *num_classes_meta, char *err, size_t err_bytes)
{
    const char *path = weights_path(m->w);
    const char *v;
    static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f}, imagenet_std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(m->mean, imagenet_mean, sizeof(m->mean));
    memcpy(m->std, imagenet_std, sizeof(m->std));
    m->input_size = m->arch->input_size;
    m->resize_size = m->arch->resize_size;
    *num_classes_meta = 0;

    if ((v = weights_meta(m->w, "architecture")) && arch_index(v) != arch_index(m->arch->name))
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: __metadata__ architecture '%s' does not match model '%s'",
                       path, v, m->arch->name);
    if ((v = weights_meta(m->w, "padding"))) {
        if (!strcmp(v, "tf_same")) m->tf_same = 1;
        else if (strcmp(v, "torch"))
            return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: __metadata__ padding '%s' (expected torch or tf_same)", path, v);
    }
    if ((v = weights_meta(m->w, "mean")) && parse_floats3(v, m->mean))
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: __metadata__ mean '%s' is not three numbers", path, v);
    if ((v = weights_meta(m->w, "std"))) {
        if (parse_floats3(v, m->std) || m->std[0] <= 0 || m->std[1] <= 0 || m->std[2] <= 0)
            return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: __metadata__ std '%s' is not three positive numbers", path, v);
    }
    if ((v = weights_meta(m->w, "crop")) && parse_int(v, 32, 1024, &m->input_size))
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: __metadata__ crop '%s' is not an integer in 32..1024", path, v);
    if ((v = weights_meta(m->w, "resize")) && parse_int(v, 32, 4096, &m->resize_size))
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: __metadata__ resize '%s' is not an integer in 32..4096", path, v);
    if (m->resize_size < m->input_size)
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: resize %d is smaller than crop %d", path, m->resize_size, m->input_size);
    if ((v = weights_meta(m->w, "num_classes")) && parse_int(v, 1, 1000000, num_classes_meta))
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: __metadata__ num_classes '%s' is not a positive integer", path, v);
    return CNN_OK;
}

/* The `labels` metadata: a JSON list of MODEL_MIN_CLASSES..MODEL_MAX_CLASSES non-empty strings,
 * copied into one allocation (the pointer array followed by the texts). */
static cnn_status model_read_labels(model *m, const char *text, char *err, size_t err_bytes)
{
    const char *path = weights_path(m->w);
    json_error_t jerr;
    json_t *a = json_loads(text, JSON_DECODE_ANY, &jerr);
    cnn_status s = CNN_OK;
    if (!json_is_array(a)) {
        s = cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: __metadata__ labels is not a JSON list of strings%s%s", path,
                    a ? "" : ": ", a ? "" : jerr.text);
        goto out;
    }
    size_t n = json_array_size(a), text_bytes = 0;
    if (n < MODEL_MIN_CLASSES || n > MODEL_MAX_CLASSES) {
        s = cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: __metadata__ labels has %zu entries (%d..%d supported)", path,
                    n, MODEL_MIN_CLASSES, MODEL_MAX_CLASSES);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *l = json_array_get(a, i);
        if (!json_is_string(l) || !json_string_length(l) || strlen(json_string_value(l)) != json_string_length(l)) {
            s = cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s: __metadata__ labels[%zu] is not a non-empty string", path, i);
            goto out;
        }
        text_bytes += json_string_length(l) + 1;
    }
    char **labels = malloc(n * sizeof(char *) + text_bytes);
    if (!labels) {
        s = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "%s: out of memory reading the labels", path);
        goto out;
    }
    char *p = (char *)(labels + n);
    for (size_t i = 0; i < n; i++) {
        json_t *l = json_array_get(a, i);
        labels[i] = p;
        memcpy(p, json_string_value(l), json_string_length(l) + 1);
        p += json_string_length(l) + 1;
    }
    m->labels = labels;
    m->n_labels = (int)n;
out:
    json_decref(a);
    return s;
}

/* "dir/monkeys.safetensors" -> "monkeys". */
static char *file_stem(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    static const char ext[] = ".safetensors";
    if (n > sizeof ext - 1 && !strcmp(base + n - (sizeof ext - 1), ext)) n -= sizeof ext - 1;
    char *stem = malloc(n + 1);
    if (stem) {
        memcpy(stem, base, n);
        stem[n] = '\0';
    }
    return stem;
}

cnn_status model_load(model **out, const char *arch_name, const char *path, char *err, size_t err_bytes,
                      char *warn, size_t warn_bytes)
{
    *out = NULL;
    if (warn && warn_bytes) warn[0] = '\0';
    int ai = arch_index(arch_name);
    if (ai < 0) return cnn_err(err, err_bytes, CNN_ERR_ARG, "unknown model '%s'", arch_name ? arch_name : "(null)");
    model *m = calloc(1, sizeof(*m));
    if (!m) return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
    m->arch = &archs_pub[ai];
    cnn_status s = weights_open(&m->w, path, err, err_bytes);
    if (s != CNN_OK) goto fail;
    int num_classes_meta;
    if ((s = model_read_meta(m, &num_classes_meta, err, err_bytes)) != CNN_OK) goto fail;
    /* "imagenet1k" / "imagenet1k+background" (the shared base files) name the built-in labels. */
    const char *labels_meta = weights_meta(m->w, "labels");
    if (labels_meta && strcmp(labels_meta, "imagenet1k") && strcmp(labels_meta, "imagenet1k+background")) {
        if ((s = model_read_labels(m, labels_meta, err, err_bytes)) != CNN_OK) goto fail;
        if (!(m->name = file_stem(path))) {
            s = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
            goto fail;
        }
    }

    graph_builder b = {.g = &m->g, .w = m->w, .tf_same = m->tf_same, .bn_eps = arch_impl[ai].bn_eps,
                       .status = CNN_OK, .err = err, .err_bytes = err_bytes};
    int y = arch_impl[ai].build(&b, m->input_size);
    if (b.status != CNN_OK) {
        s = b.status;
        /* Prefix the file so a message is useful in a log that loads several models. */
        if (err && err_bytes) {
            char detail[512];
            snprintf(detail, sizeof(detail), "%s", err);
            snprintf(err, err_bytes, "%s: %s", path, detail);
        }
        goto fail;
    }
    m->g.output = y;
    m->num_classes = m->g.values[y].c;
    if (num_classes_meta && num_classes_meta != m->num_classes) {
        s = cnn_err(err, err_bytes, CNN_ERR_SHAPE, "%s: __metadata__ num_classes %d but the classifier has %d outputs",
                    path, num_classes_meta, m->num_classes);
        goto fail;
    }
    if (m->labels && m->n_labels != m->num_classes) {
        s = cnn_err(err, err_bytes, CNN_ERR_SHAPE, "%s: __metadata__ labels has %d entries but the classifier has %d outputs",
                    path, m->n_labels, m->num_classes);
        goto fail;
    }
    if (!m->labels && m->num_classes != IMAGENET_N_CLASSES && m->num_classes != IMAGENET_N_CLASSES + 1) {
        s = cnn_err(err, err_bytes, CNN_ERR_SHAPE,
                    "%s: %d classes and no __metadata__ labels; without labels supported are the ImageNet-1k 1000 "
                    "(or 1001 with background at index 0)",
                    path, m->num_classes);
        goto fail;
    }
    if (!m->labels) m->n_labels = IMAGENET_N_CLASSES;
    if ((s = graph_plan(&m->g)) != CNN_OK) {
        cnn_err(err, err_bytes, s, "%s: out of memory planning the arena", path);
        goto fail;
    }
    /* Every architecture ends in its head linear layer; its input stays in the arena after a run
     * (live until that layer has read it, so the planner never overlaps it with the logits). */
    const graph_node *head = &m->g.nodes[m->g.values[m->g.output].def];
    if (head->op != NODE_LINEAR) {
        s = cnn_err(err, err_bytes, CNN_ERR_SHAPE, "%s: the graph does not end in a linear layer", path);
        goto fail;
    }
    m->feat_value = head->in[0];
    m->feat_dim = head->p.linear.n_in;
    if (warn && warn_bytes) {
        char names[768];
        size_t n_unused = weights_unused(m->w, names, sizeof(names));
        if (n_unused) snprintf(warn, warn_bytes, "%s: %zu unused tensors ignored: %s", path, n_unused, names);
    }
    *out = m;
    return CNN_OK;
fail:
    model_free(m);
    return s;
}

void model_free(model *m)
{
    if (!m) return;
    graph_free(&m->g);
    weights_free(m->w);
    free(m->labels);
    free(m->name);
    free(m);
}

const model_arch *model_get_arch(const model *m) { return m->arch; }
const char *model_name(const model *m) { return m->name ? m->name : m->arch->name; }
int model_input_size(const model *m) { return m->input_size; }
int model_resize_size(const model *m) { return m->resize_size; }
const float *model_mean(const model *m) { return m->mean; }
const float *model_std(const model *m) { return m->std; }
int model_num_classes(const model *m) { return m->num_classes; }
int model_num_labels(const model *m) { return m->n_labels; }
int model_has_own_labels(const model *m) { return m->labels != NULL; }
const char *model_class_label(const model *m, int idx)
{
    if (idx < 0 || idx >= m->n_labels) return NULL;
    return m->labels ? m->labels[idx] : imagenet_labels[idx];
}
int model_tf_same(const model *m) { return m->tf_same; }
int64_t model_n_params(const model *m) { return m->g.n_params; }
int64_t model_n_macs(const model *m) { return m->g.n_macs; }
size_t model_weight_bytes(const model *m) { return weights_resident_bytes(m->w) + m->g.owned_bytes; }
size_t model_arena_bytes(const model *m) { return (m->g.arena_floats + m->g.scratch_floats) * sizeof(float); }
/* A context's buffers: the arena (whole 64-byte lines) and one conv scratch per thread, each at
 * a 64-byte aligned stride of the graph's largest conv plan scratch. */
static size_t model_ctx_arena_bytes(const model *m) { return (m->g.arena_floats * sizeof(float) + 63) / 64 * 64; }
static size_t model_ctx_scratch_stride(const model *m) { return (m->g.scratch_floats + 15) / 16 * 16; }

/* Bytes of each of a context's two batch buffers. */
static size_t model_ctx_batch_bytes(const model *m, int max_batch)
{
    if (max_batch <= 1 || graph_tail_start(&m->g) == m->g.n_nodes) return 0;
    return ((size_t)max_batch * graph_tail_floats(&m->g) * sizeof(float) + 63) / 64 * 64;
}

size_t model_ctx_bytes(const model *m, int n_threads) { return model_ctx_bytes_batch(m, n_threads, 1); }

size_t model_ctx_bytes_batch(const model *m, int n_threads, int max_batch)
{
    return model_ctx_arena_bytes(m) +
           model_ctx_scratch_stride(m) * sizeof(float) * (size_t)(n_threads > 1 ? n_threads : 1) +
           2 * model_ctx_batch_bytes(m, max_batch);
}

int model_batch_layers(const model *m) { return m->g.n_nodes - graph_tail_start(&m->g); }
const char *model_meta(const model *m, const char *key) { return weights_meta(m->w, key); }
const char *model_path(const model *m) { return weights_path(m->w); }

/* A worker's share of an inference (threadpool_fn): a worker late for a job finds its nodes done. */
static void model_run_thread(void *arg, int ith, int nth, unsigned job)
{
    (void)nth;
    model_ctx *c = arg;
    const graph *g = &c->m->g;
    /* kind was stored before the job started: it is this job's or, when this thread is late, a
     * later job's (then every part of this job is done and the steps give nothing to do) */
    const int kind = atomic_load_explicit(&c->kind, memory_order_acquire);
    const float *input = atomic_load_explicit(&c->input, memory_order_relaxed);
    float *scratch = c->scratch + (size_t)ith * c->scratch_stride;
    if (kind == CTX_JOB_TAIL)
        graph_run_tail_batch(g, atomic_load_explicit(&c->batch_n, memory_order_relaxed), c->batch_a, c->batch_b,
                             c->pool, c->steps, job);
    else
        graph_run_part_range(g, input, c->arena, scratch, c->pool, c->steps, job, ith, 0,
                             kind == CTX_JOB_HEAD ? graph_tail_start(g) : g->n_nodes);
}

/* Starts a job of kind on ctx's pool over nodes [i0, i1) (steps synced first); returns its number. */
static unsigned model_ctx_start(model_ctx *ctx, ctx_job_kind kind, int i0, int i1)
{
    graph_steps_sync(&ctx->m->g, ctx->steps, threadpool_size(ctx->pool), ctx->next_job, i0, i1);
    atomic_store_explicit(&ctx->kind, (int)kind, memory_order_release);
    const unsigned job = threadpool_start(ctx->pool);
    ctx->next_job = job + 1;
    return job;
}

cnn_status model_ctx_init_threads(model_ctx **out, const model *m, int n_threads)
{
    return model_ctx_init_batch(out, m, n_threads, 1);
}

cnn_status model_ctx_init_batch(model_ctx **out, const model *m, int n_threads, int max_batch)
{
    *out = NULL;
    if (n_threads < 1 || n_threads > MODEL_MAX_THREADS || max_batch < 1 || max_batch > MODEL_MAX_BATCH)
        return CNN_ERR_ARG;
    model_ctx *c = calloc(1, sizeof(*c));
    if (!c) return CNN_ERR_NOMEM;
    c->m = m;
    c->max_batch = max_batch;
    size_t arena_bytes = model_ctx_arena_bytes(m);
    c->scratch_stride = model_ctx_scratch_stride(m);
    size_t scratch_bytes = c->scratch_stride * sizeof(float) * (size_t)n_threads;
    c->arena = aligned_alloc(64, arena_bytes ? arena_bytes : 64);
    c->scratch = aligned_alloc(64, scratch_bytes ? scratch_bytes : 64);
    cnn_status s = c->arena && c->scratch ? CNN_OK : CNN_ERR_NOMEM;
    const size_t batch_bytes = model_ctx_batch_bytes(m, max_batch);
    if (s == CNN_OK && batch_bytes) {
        c->batch_a = aligned_alloc(64, batch_bytes);
        c->batch_b = aligned_alloc(64, batch_bytes);
        if (!c->batch_a || !c->batch_b) s = CNN_ERR_NOMEM;
    }
    if (s == CNN_OK) { /* touched now: the first inference does not take the page faults */
        memset(c->arena, 0, arena_bytes ? arena_bytes : 64);
        memset(c->scratch, 0, scratch_bytes ? scratch_bytes : 64);
        if (batch_bytes) {
            memset(c->batch_a, 0, batch_bytes);
            memset(c->batch_b, 0, batch_bytes);
        }
    }
    if (s == CNN_OK && n_threads > 1) {
        c->steps = aligned_alloc(64, (size_t)(m->g.n_nodes ? m->g.n_nodes : 1) * sizeof *c->steps);
        if (c->steps) {
            for (int i = 0; i < m->g.n_nodes; i++) {
                atomic_init(&c->steps[i].next, 0);
                atomic_init(&c->steps[i].done, 0);
            }
            s = threadpool_init(&c->pool, n_threads, model_run_thread, c);
        } else {
            s = CNN_ERR_NOMEM;
        }
    }
    if (s != CNN_OK) {
        model_ctx_free(c);
        return s;
    }
    *out = c;
    return CNN_OK;
}

cnn_status model_ctx_init(model_ctx **out, const model *m) { return model_ctx_init_threads(out, m, 1); }

void model_ctx_free(model_ctx *ctx)
{
    if (!ctx) return;
    threadpool_free(ctx->pool);
    free(ctx->steps);
    free(ctx->arena);
    free(ctx->scratch);
    free(ctx->batch_a);
    free(ctx->batch_b);
    free(ctx);
}

int model_ctx_max_batch(const model_ctx *ctx) { return ctx->max_batch; }

int model_ctx_threads(const model_ctx *ctx) { return ctx->pool ? threadpool_size(ctx->pool) : 1; }

/* One inference into ctx's arena. */
static void model_run_graph(model_ctx *ctx, const float *input)
{
    const model *m = ctx->m;
    if (ctx->pool) {
        atomic_store_explicit(&ctx->input, input, memory_order_relaxed); /* published by the start */
        const unsigned job = model_ctx_start(ctx, CTX_JOB_GRAPH, 0, m->g.n_nodes);
        graph_run_part(&m->g, input, ctx->arena, ctx->scratch, ctx->pool, ctx->steps, job, 0);
    } else {
        graph_run(&m->g, input, ctx->arena, ctx->scratch);
    }
}

void model_run_batch(model_ctx *ctx, const float *const *inputs, int n, float *logits)
{
    const model *m = ctx->m;
    const graph *g = &m->g;
    const int t = graph_tail_start(g);
    if (n <= 1 || !ctx->batch_a) {
        for (int b = 0; b < n; b++) model_run(ctx, inputs[b], logits + (size_t)b * (size_t)m->num_classes);
        return;
    }
    const size_t n_feat = (size_t)g->nodes[t].p.linear.n_in;
    for (int b = 0; b < n; b++) {
        if (ctx->pool) {
            atomic_store_explicit(&ctx->input, inputs[b], memory_order_relaxed);
            const unsigned job = model_ctx_start(ctx, CTX_JOB_HEAD, 0, t);
            graph_run_part_range(g, inputs[b], ctx->arena, ctx->scratch, ctx->pool, ctx->steps, job, 0, 0, t);
        } else {
            graph_run_range(g, inputs[b], ctx->arena, ctx->scratch, 0, t);
        }
        memcpy(ctx->batch_a + (size_t)b * n_feat, graph_tail_input(g, inputs[b], ctx->arena), n_feat * sizeof(float));
    }
    const float *out;
    if (ctx->pool) {
        atomic_store_explicit(&ctx->batch_n, n, memory_order_relaxed);
        const unsigned job = model_ctx_start(ctx, CTX_JOB_TAIL, t, g->n_nodes);
        out = graph_run_tail_batch(g, n, ctx->batch_a, ctx->batch_b, ctx->pool, ctx->steps, job);
    } else {
        out = graph_run_tail_batch(g, n, ctx->batch_a, ctx->batch_b, NULL, NULL, 0);
    }
    memcpy(logits, out, (size_t)n * (size_t)m->num_classes * sizeof(float));
}

void model_run(model_ctx *ctx, const float *input, float *logits)
{
    const model *m = ctx->m;
    model_run_graph(ctx, input);
    memcpy(logits, ctx->arena + m->g.values[m->g.output].offset, (size_t)m->num_classes * sizeof(float));
}

int model_feature_dim(const model *m) { return m->feat_dim; }

void model_run_features(model_ctx *ctx, const float *input, float *features)
{
    const model *m = ctx->m;
    model_run_graph(ctx, input);
    memcpy(features, ctx->arena + m->g.values[m->feat_value].offset, (size_t)m->feat_dim * sizeof(float));
}

/* Softmax as softmax_forward computes it (same bits), without storing it: top-k on the logits
 * (softmax is monotonic), then the k probabilities. */
int model_topk(const model *m, const float *logits, int k, int *idx, float *prob)
{
    const int n = m->n_labels;
    const float *l = logits + (m->num_classes - n); /* skips an ImageNet background output */
    if (k > n) k = n;
    if (k < 0) k = 0;
    float mx = l[0];
    for (int i = 1; i < n; i++) mx = l[i] > mx ? l[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += expf(l[i] - mx);
    const float inv = (float)(1.0 / sum);
    topk_indices(n, l, k, idx);
    for (int i = 0; i < k; i++) prob[i] = expf(l[idx[i]] - mx) * inv;
    return k;
}

const char *model_label(int idx)
{
    return idx >= 0 && idx < IMAGENET_N_CLASSES ? imagenet_labels[idx] : NULL;
}
