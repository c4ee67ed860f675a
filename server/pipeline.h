/* The one classification path shared by `cnnserve serve` and `cnnserve classify`: decode (JPEG DCT
 * scaling targeted at the largest resize size among the requested models), preprocess once per
 * distinct preprocessing, run each model, softmax + top-k. Same code, same bits, in both. */
#ifndef CNN_PIPELINE_H
#define CNN_PIPELINE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "../models/model.h"
#include "image.h"

#define PIPELINE_MAX_MODELS 64
/* Largest top_k asked for; each model answers min(top_k, its classes K) predictions. */
#define PIPELINE_TOPK_MAX 1000

/* Flags for json_dumps of pipeline answers: 9 significant digits print every float score exactly. */
#define PIPELINE_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(9))

/* Per-thread workspace: one model_ctx per model plus input/logit/top-k buffers, all allocated
 * at init so classification does not allocate for inference. */
typedef struct pipeline_ws pipeline_ws;

/* models[slot]: the (shared, read-only) models this workspace can run; a NULL slot gets no context
 * (a workspace for some of a model set's slots) and is refused by pipeline_classify. */
cnn_status pipeline_ws_init(pipeline_ws **out, const model *const *models, int n_models, char *err,
                            size_t err_bytes);
/* The same with n_threads threads per model context (model_ctx_init_threads; same answers). */
cnn_status pipeline_ws_init_threads(pipeline_ws **out, const model *const *models, int n_models, int n_threads,
                                    char *err, size_t err_bytes);
/* The same with contexts that run batches: max_batch[slot] (1..MODEL_MAX_BATCH; 1: none) inputs
 * of model slot at once in pipeline_classify_batch (model_ctx_init_batch), plus the batch's input
 * and output buffers. max_batch NULL: 1 everywhere. */
cnn_status pipeline_ws_init_batch(pipeline_ws **out, const model *const *models, int n_models, int n_threads,
                                  const int *max_batch, char *err, size_t err_bytes);
void pipeline_ws_free(pipeline_ws *ws);

/* One inference of model `slot` on an all-zero input (touches the arena, warms caches). */
void pipeline_ws_warmup(pipeline_ws *ws, int slot);

typedef struct {
    int top_k;            /* 1..PIPELINE_TOPK_MAX */
    int64_t max_pixels;   /* decode pixel cap; 0 = image.h default */
    int full_decode;      /* 1: JPEGs decoded at full size, no DCT scaling (what PIL feeds torchvision;
                           * `eval --full-decode`); 0: the server's DCT-scaled decode */
    int n_slots;
    int slots[PIPELINE_MAX_MODELS]; /* models to run, in answer order */
} pipeline_request;

typedef struct {
    const model *m;
    int n_preds;          /* min(top_k, model_num_labels) */
    const int *idx;       /* class index 0..K-1 (ImageNet: torchvision order), best first (points into the workspace) */
    const float *prob;
    const float *logits;  /* model_num_labels(m) class scores before the softmax (an ImageNet background
                           * output dropped), points into the workspace */
    double preprocess_ms; /* 0 when it reused the input of an earlier model with the same preprocessing */
    double inference_ms, postprocess_ms;
} pipeline_model_result;

typedef struct {
    image_format format;
    int src_width, src_height;  /* as stored */
    int width, height;          /* decoded: after DCT scaling and EXIF orientation */
    int scale_num, scale_denom, orientation;
    double decode_ms, preprocess_ms, inference_ms, postprocess_ms; /* sums over models */
    int batch_size;             /* > 1: inferred in a batch of that many requests (inference_ms is the
                                 * batch's time, which this request waited through) */
    double batch_wait_ms;       /* batched: from this image's preprocessing to the batch's inference
                                 * (the other images' decoding and preprocessing) */
    int n_results;
    pipeline_model_result results[PIPELINE_MAX_MODELS];
} pipeline_result;

/* Errors are image_decode's (CNN_ERR_UNSUPPORTED / DECODE / TOO_LARGE / NOMEM) or CNN_ERR_ARG.
 * The result points into ws and stays valid until the next call on ws. */
cnn_status pipeline_classify(pipeline_ws *ws, const uint8_t *data, size_t n_bytes, const pipeline_request *req,
                             pipeline_result *res, char *err, size_t err_bytes);

/* One request of a batch: its image and request (one model, the batch's slot) in, its answer out. */
typedef struct {
    const uint8_t *data;
    size_t n_bytes;
    const pipeline_request *req;
    cnn_status st;          /* CNN_OK, or pipeline_classify's errors (err says why) */
    char err[256];
    pipeline_result res;    /* points into ws (each item its own rows) until the next call on ws */
    const float *logits_all; /* model_num_classes floats (background output included, as pipeline_logits) */
} pipeline_batch_item;

/* pipeline_classify of n (1..max_batch of slot) requests for model slot alone, with one
 * model_run_batch for all whose image decoded: each answer is bit-identical to pipeline_classify's
 * for that request alone. */
void pipeline_classify_batch(pipeline_ws *ws, int slot, pipeline_batch_item *items, int n);
/* The largest batch of slot (1: not batched). */
int pipeline_ws_max_batch(const pipeline_ws *ws, int slot);

/* Decodes an image and preprocesses it for model m, exactly as pipeline_classify does when m is the
 * only model requested (same DCT-scaling target, resize, crop and normalization): input receives
 * 3 x S x S floats (S = model_input_size(m)). For `train` and `eval`, whose features and scores must
 * be what the service computes. Errors as pipeline_classify's. */
cnn_status pipeline_preprocess(const model *m, const uint8_t *data, size_t n_bytes, int64_t max_pixels, float *input,
                               char *err, size_t err_bytes);
/* Runs model `slot` on a preprocessed 3 x S x S input (S = its input size); returns its logits
 * (model_num_classes floats, as pipeline_logits), valid until the next call on ws. */
const float *pipeline_run_input(pipeline_ws *ws, int slot, const float *input);
/* n (1..pipeline_ws_max_batch) preprocessed inputs of model slot at once (model_run_batch); returns
 * n rows of model_num_classes logits, each as pipeline_run_input's, valid until the next call on ws. */
const float *pipeline_run_input_batch(pipeline_ws *ws, int slot, const float *const *inputs, int n);
/* The logits (model_num_classes floats, background output included) of model `slot`'s last run. */
const float *pipeline_logits(const pipeline_ws *ws, int slot);

/* The answer body shared by HTTP and the CLI: "model" + "predictions" (one model) or "model": "all"
 * + "results" (one entry per model), "image", and "timings_ms" with every stage: receive, decode,
 * preprocess, queue, inference, postprocess, total (the caller measures receive, queue and total). */
json_t *pipeline_result_json(const pipeline_result *res, int all, double receive_ms, double queue_ms,
                             double total_ms);

/* Milliseconds rounded to microseconds, for JSON. */
json_t *pipeline_ms_json(double ms);

#endif
