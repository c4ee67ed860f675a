/* Loaded models and per-thread inference contexts.
 * A model (graph + folded weights + arena plan) is immutable after model_load and shared read-only by
 * all threads; each thread owns a model_ctx (its activation arena, and the threads of an
 * intra-op context). model_run never allocates. */
#ifndef CNN_MODEL_H
#define CNN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

/* Static description of an architecture known to the registry. */
typedef struct {
    const char *name;            /* canonical: "mobilenet_v3_large" ... */
    const char *const *aliases;  /* NULL-terminated */
    int input_size;              /* crop: 224 or 299 */
    int resize_size;             /* short side before crop: 256 or 342 */
    const char *head;            /* torchvision name of the last linear layer, which fine-tuning
                                    replaces: "classifier.3", "fc", "classifier.6" */
} model_arch;

/* All architectures, in the paper's order; *n_out receives the count. */
const model_arch *model_archs(int *n_out);
/* Lookup by canonical name or alias (case-insensitive); NULL if unknown. */
const model_arch *model_arch_find(const char *name);

typedef struct model model;

/* Class counts of a model with its own labels. */
#define MODEL_MIN_CLASSES 2
#define MODEL_MAX_CLASSES 100000

/* Build the graph for arch (by name or alias) from a safetensors file: checks every tensor, folds
 * BatchNorm, reads __metadata__ (num_classes, labels, padding, mean, std, resize/crop, source,
 * license), plans the arena. Unused tensors are reported through warn (may be NULL) and are not an
 * error.
 * Classes: a file whose `labels` __metadata__ is a JSON list (MODEL_MIN_CLASSES..MODEL_MAX_CLASSES
 * non-empty strings) has its own classes, exactly one per classifier output (a fine-tuned model);
 * otherwise (no `labels`, or "imagenet1k" / "imagenet1k+background") the classifier must have the
 * ImageNet-1k 1000 outputs (or 1001 with the background class at 0, dropped). */
cnn_status model_load(model **out, const char *arch_name, const char *path, char *err,
                      size_t err_bytes, char *warn, size_t warn_bytes);
void model_free(model *m);

const model_arch *model_get_arch(const model *m);
/* The architecture's canonical name; for a file with its own labels, the file name without
 * directory and .safetensors (the name it is served under: monkeys.safetensors -> "monkeys"). */
const char *model_name(const model *m);
int model_input_size(const model *m);       /* crop */
int model_resize_size(const model *m);
const float *model_mean(const model *m);    /* 3 values */
const float *model_std(const model *m);
int model_num_classes(const model *m);      /* outputs of the graph (1001 for a background model) */
/* Classes K the model predicts: 1000 for ImageNet models (background dropped), the number of
 * labels for a model with its own labels. */
int model_num_labels(const model *m);
/* 1 when the classes and labels come from the file's `labels` metadata. */
int model_has_own_labels(const model *m);
/* Label of class idx (0..K-1), NULL out of range. */
const char *model_class_label(const model *m, int idx);
int model_tf_same(const model *m);          /* 1 when built with TF "SAME" padding */
int64_t model_n_params(const model *m);     /* parameters of the graph as torchvision counts them */
int64_t model_n_macs(const model *m);       /* multiply-accumulates of conv + linear layers */
size_t model_weight_bytes(const model *m);  /* folded weights + mapping */
size_t model_arena_bytes(const model *m);   /* one context's activation arena */
/* Bytes one context of n_threads threads allocates: its arena plus one conv scratch buffer per thread. */
size_t model_ctx_bytes(const model *m, int n_threads);
const char *model_meta(const model *m, const char *key); /* __metadata__ string or NULL */
const char *model_path(const model *m);

typedef struct model_ctx model_ctx;

/* Most threads one context may have. */
#define MODEL_MAX_THREADS 64

/* One thread: model_run computes on the calling thread (the server's workers). */
cnn_status model_ctx_init(model_ctx **out, const model *m);
/* n_threads (1..MODEL_MAX_THREADS) threads: model_run computes each layer on the caller plus
 * n_threads - 1 threads the context owns (started here, stopped by model_ctx_free), each layer
 * split into disjoint parts of its output, so the logits are bit-identical for every n_threads.
 * CNN_ERR_ARG for a count out of range. */
cnn_status model_ctx_init_threads(model_ctx **out, const model *m, int n_threads);
/* Most inputs of one model_run_batch. */
#define MODEL_MAX_BATCH 64
/* A context of n_threads threads that can also run batches of up to max_batch
 * (1..MODEL_MAX_BATCH) inputs with model_run_batch: it owns two buffers of max_batch rows of the
 * batched layers' widest value (model_ctx_bytes_batch). CNN_ERR_ARG for counts out of range. */
cnn_status model_ctx_init_batch(model_ctx **out, const model *m, int n_threads, int max_batch);
int model_ctx_max_batch(const model_ctx *ctx);
size_t model_ctx_bytes_batch(const model *m, int n_threads, int max_batch);
/* Linear layers at the end of the graph that model_run_batch runs batched (0: none, it then runs
 * each input alone). */
int model_batch_layers(const model *m);
void model_ctx_free(model_ctx *ctx);
int model_ctx_threads(const model_ctx *ctx);

/* input: 3 x S x S normalized floats (S = model_input_size); logits: model_num_classes floats. */
void model_run(model_ctx *ctx, const float *input, float *logits);

/* n inputs (1..model_ctx_max_batch) at once: each runs alone up to the linear layers that end the
 * graph, which then run on all n together (linear_batch_forward: the weights stream once per batch
 * instead of once per input); logits receives n rows of model_num_classes floats, each bit-identical
 * to model_run of that input alone (any n, any thread count). Never allocates. */
void model_run_batch(model_ctx *ctx, const float *const *inputs, int n, float *logits);

/* Length of the feature vector: the input of the last linear layer (model_arch.head). */
int model_feature_dim(const model *m);
/* The features (model_feature_dim floats) of one input, as the last linear layer sees them in eval
 * mode (after the global pooling / the hidden layers and their activations; dropout is identity),
 * computed by the same engine and threads as model_run: features . W^T + b of the head layer gives
 * model_run's logits. */
void model_run_features(model_ctx *ctx, const float *input, float *features);

/* Softmax over the K = model_num_labels classes (a 1001-class ImageNet model's background output 0
 * is dropped before the softmax), then the top min(k, K): idx are class indices 0..K-1, best first
 * (ties: lower index first). Returns the number of predictions written. Does not allocate. */
int model_topk(const model *m, const float *logits, int k, int *idx, float *prob);

/* Class name of torchvision ImageNet-1k index 0..999. */
const char *model_label(int idx);

#endif
