#include "pipeline.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image_threads.h"
#include "timing.h"

struct pipeline_ws {
    int n_models;
    const model *models[PIPELINE_MAX_MODELS];
    model_ctx *ctxs[PIPELINE_MAX_MODELS];
    float *input;   /* 3 x S x S for the largest S */
    float *logits;  /* per model slot: largest num_classes */
    size_t logits_stride;
    int *idx;       /* PIPELINE_TOPK_MAX per model */
    float *prob;
    int max_batch[PIPELINE_MAX_MODELS];
    int batch_cap;        /* largest max_batch */
    float *batch_input;   /* batch_cap inputs of 3 x S x S for the largest S (batch_cap > 1) */
    float *batch_logits;  /* batch_cap rows of logits_stride */
    int *batch_idx;       /* batch_cap x PIPELINE_TOPK_MAX */
    float *batch_prob;
    image_threads *decode_threads; /* n_threads > 1: JPEGs with restart markers decoded in bands */
};

cnn_status pipeline_ws_init(pipeline_ws **out, const model *const *models, int n_models, char *err,
                            size_t err_bytes)
{
    return pipeline_ws_init_threads(out, models, n_models, 1, err, err_bytes);
}

cnn_status pipeline_ws_init_threads(pipeline_ws **out, const model *const *models, int n_models, int n_threads,
                                    char *err, size_t err_bytes)
{
    return pipeline_ws_init_batch(out, models, n_models, n_threads, NULL, err, err_bytes);
}

cnn_status pipeline_ws_init_batch(pipeline_ws **out, const model *const *models, int n_models, int n_threads,
                                  const int *max_batch, char *err, size_t err_bytes)
{
    *out = NULL;
    if (n_models < 1 || n_models > PIPELINE_MAX_MODELS)
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "pipeline: %d models (1..%d supported)", n_models,
                       PIPELINE_MAX_MODELS);
    pipeline_ws *ws = calloc(1, sizeof *ws);
    if (!ws) return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "pipeline: out of memory");
    cnn_status st = CNN_OK;
    size_t max_input = 0, max_classes = 0;
    ws->n_models = n_models;
    for (int i = 0; i < n_models; i++) {
        ws->models[i] = models[i];
        if (!models[i]) continue;
        size_t s = (size_t)model_input_size(models[i]);
        if (3 * s * s > max_input) max_input = 3 * s * s;
        if ((size_t)model_num_classes(models[i]) > max_classes) max_classes = (size_t)model_num_classes(models[i]);
        ws->max_batch[i] = max_batch && max_batch[i] > 1 ? max_batch[i] : 1;
        if (ws->max_batch[i] > ws->batch_cap) ws->batch_cap = ws->max_batch[i];
        if ((st = model_ctx_init_batch(&ws->ctxs[i], models[i], n_threads, ws->max_batch[i])) != CNN_OK) {
            cnn_err(err, err_bytes, st, "pipeline: cannot create the context of %s: %s", model_name(models[i]),
                    cnn_status_str(st));
            goto fail;
        }
    }
    if (n_threads > 1 && (st = image_threads_init(&ws->decode_threads,
                                                  n_threads < IMAGE_MAX_BANDS ? n_threads : IMAGE_MAX_BANDS)) != CNN_OK) {
        cnn_err(err, err_bytes, st, "pipeline: cannot start %d decode threads", n_threads);
        goto fail;
    }
    ws->input = malloc(max_input * sizeof(float));
    ws->logits_stride = max_classes;
    ws->logits = malloc((size_t)n_models * max_classes * sizeof(float));
    ws->idx = malloc((size_t)n_models * PIPELINE_TOPK_MAX * sizeof *ws->idx);
    ws->prob = malloc((size_t)n_models * PIPELINE_TOPK_MAX * sizeof *ws->prob);
    if (!ws->input || !ws->logits || !ws->idx || !ws->prob) {
        st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "pipeline: out of memory");
        goto fail;
    }
    if (ws->batch_cap > 1) {
        const size_t cap = (size_t)ws->batch_cap;
        ws->batch_input = malloc(cap * max_input * sizeof(float));
        ws->batch_logits = malloc(cap * max_classes * sizeof(float));
        ws->batch_idx = malloc(cap * PIPELINE_TOPK_MAX * sizeof *ws->batch_idx);
        ws->batch_prob = malloc(cap * PIPELINE_TOPK_MAX * sizeof *ws->batch_prob);
        if (!ws->batch_input || !ws->batch_logits || !ws->batch_idx || !ws->batch_prob) {
            st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "pipeline: out of memory for batches of %d", ws->batch_cap);
            goto fail;
        }
    }
    *out = ws;
    return CNN_OK;
fail:
    pipeline_ws_free(ws);
    return st;
}

void pipeline_ws_free(pipeline_ws *ws)
{
    if (!ws) return;
    for (int i = 0; i < ws->n_models; i++) model_ctx_free(ws->ctxs[i]);
    free(ws->input);
    free(ws->logits);
    free(ws->idx);
    free(ws->prob);
    free(ws->batch_input);
    free(ws->batch_logits);
    free(ws->batch_idx);
    free(ws->batch_prob);
    image_threads_free(ws->decode_threads);
    free(ws);
}

int pipeline_ws_max_batch(const pipeline_ws *ws, int slot)
{
    return slot >= 0 && slot < ws->n_models && ws->models[slot] ? ws->max_batch[slot] : 1;
}

void pipeline_ws_warmup(pipeline_ws *ws, int slot)
{
    if (!ws->models[slot]) return;
    int s = model_input_size(ws->models[slot]);
    memset(ws->input, 0, (size_t)3 * (size_t)s * (size_t)s * sizeof(float));
    model_run(ws->ctxs[slot], ws->input, ws->logits);
}

static void preproc_of(const model *m, image_preproc *pp)
{
    memset(pp, 0, sizeof *pp);
    pp->resize = model_resize_size(m);
    pp->crop = model_input_size(m);
    memcpy(pp->mean, model_mean(m), sizeof pp->mean);
    memcpy(pp->std, model_std(m), sizeof pp->std);
}

static int preproc_equal(const image_preproc *a, const image_preproc *b)
{
    return a->resize == b->resize && a->crop == b->crop && !memcmp(a->mean, b->mean, sizeof a->mean) &&
           !memcmp(a->std, b->std, sizeof a->std);
}

/* The decoded image's facts a result reports. */
static void result_set_image(pipeline_result *res, const image *img)
{
    res->format = img->format;
    res->src_width = img->src_width;
    res->src_height = img->src_height;
    res->width = img->width;
    res->height = img->height;
    res->scale_num = img->scale_num;
    res->scale_denom = img->scale_denom;
    res->orientation = img->orientation;
}

cnn_status pipeline_preprocess(const model *m, const uint8_t *data, size_t n_bytes, int64_t max_pixels, float *input,
                               char *err, size_t err_bytes)
{
    image_preproc pp;
    preproc_of(m, &pp);
    image_decode_opts opts = {.max_pixels = max_pixels, .min_short_side = IMAGE_DCT_MARGIN * pp.resize,
                              .pps = &pp, .n_pps = 1};
    image img;
    cnn_status st = image_decode(data, n_bytes, &opts, &img, err, err_bytes);
    if (st != CNN_OK) return st;
    st = image_preprocess(&img, &pp, input, err, err_bytes);
    image_free(&img);
    return st;
}

cnn_status pipeline_classify(pipeline_ws *ws, const uint8_t *data, size_t n_bytes, const pipeline_request *req,
                             pipeline_result *res, char *err, size_t err_bytes)
{
    memset(res, 0, sizeof *res);
    if (req->n_slots < 1 || req->n_slots > PIPELINE_MAX_MODELS)
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "no model requested");
    if (req->top_k < 1 || req->top_k > PIPELINE_TOPK_MAX)
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "top_k must be in 1..%d", PIPELINE_TOPK_MAX);
    image_preproc pps[PIPELINE_MAX_MODELS];
    int min_short_side = 0;
    for (int i = 0; i < req->n_slots; i++) {
        int slot = req->slots[i];
        if (slot < 0 || slot >= ws->n_models || !ws->models[slot])
            return cnn_err(err, err_bytes, CNN_ERR_ARG, "model slot %d out of range", slot);
        preproc_of(ws->models[slot], &pps[i]);
        if (pps[i].resize > min_short_side) min_short_side = pps[i].resize;
    }

    /* Decode once, DCT-scaled to a margin above the largest resize target (see IMAGE_DCT_MARGIN),
     * only the part of the image the requested preprocessings read. */
    uint64_t t0 = timing_now_ns();
    image_decode_opts opts = {.max_pixels = req->max_pixels,
                              .min_short_side = req->full_decode ? 0 : IMAGE_DCT_MARGIN * min_short_side,
                              .pps = pps, .n_pps = req->n_slots, .par = image_threads_parallel(ws->decode_threads)};
    image img;
    cnn_status st = image_decode(data, n_bytes, &opts, &img, err, err_bytes);
    if (st != CNN_OK) return st;
    uint64_t t1 = timing_now_ns();
    res->decode_ms = timing_ms(t0, t1);
    result_set_image(res, &img);
    res->n_results = req->n_slots;

    /* Models sharing a preprocessing run back to back on one preprocessed input. */
    int done[PIPELINE_MAX_MODELS] = {0};
    for (int i = 0; i < req->n_slots; i++) {
        if (done[i]) continue;
        uint64_t tp = timing_now_ns();
        if ((st = image_preprocess(&img, &pps[i], ws->input, err, err_bytes)) != CNN_OK) goto out;
        res->results[i].preprocess_ms = timing_ms(tp, timing_now_ns());
        res->preprocess_ms += res->results[i].preprocess_ms;
        for (int j = i; j < req->n_slots; j++) {
            if (done[j] || !preproc_equal(&pps[i], &pps[j])) continue;
            int slot = req->slots[j];
            const model *m = ws->models[slot];
            pipeline_model_result *r = &res->results[j];
            uint64_t ti = timing_now_ns();
            float *logits = ws->logits + (size_t)slot * ws->logits_stride;
            model_run(ws->ctxs[slot], ws->input, logits);
            uint64_t tq = timing_now_ns();
            int *idx = ws->idx + (size_t)j * PIPELINE_TOPK_MAX;
            float *prob = ws->prob + (size_t)j * PIPELINE_TOPK_MAX;
            r->n_preds = model_topk(m, logits, req->top_k, idx, prob);
            uint64_t tr = timing_now_ns();
            r->m = m;
            r->logits = logits + (model_num_classes(m) - model_num_labels(m));
            r->idx = idx;
            r->prob = prob;
            r->inference_ms = timing_ms(ti, tq);
            r->postprocess_ms = timing_ms(tq, tr);
            res->inference_ms += r->inference_ms;
            res->postprocess_ms += r->postprocess_ms;
            done[j] = 1;
        }
    }
out:
    image_free(&img);
    return st;
}

/* Decode and preprocess of one request for model slot alone, as pipeline_classify does it, into
 * input; fills res's image fields and decode/preprocess times. */
static cnn_status batch_prepare(pipeline_ws *ws, int slot, pipeline_batch_item *it, float *input)
{
    pipeline_result *res = &it->res;
    const pipeline_request *req = it->req;
    memset(res, 0, sizeof *res);
    if (!req || req->n_slots != 1 || req->slots[0] != slot)
        return cnn_err(it->err, sizeof it->err, CNN_ERR_ARG, "batched request for another model");
    if (req->top_k < 1 || req->top_k > PIPELINE_TOPK_MAX)
        return cnn_err(it->err, sizeof it->err, CNN_ERR_ARG, "top_k must be in 1..%d", PIPELINE_TOPK_MAX);
    image_preproc pp;
    preproc_of(ws->models[slot], &pp);
    uint64_t t0 = timing_now_ns();
    image_decode_opts opts = {.max_pixels = req->max_pixels,
                              .min_short_side = req->full_decode ? 0 : IMAGE_DCT_MARGIN * pp.resize,
                              .pps = &pp, .n_pps = 1, .par = image_threads_parallel(ws->decode_threads)};
    image img;
    cnn_status st = image_decode(it->data, it->n_bytes, &opts, &img, it->err, sizeof it->err);
    if (st != CNN_OK) return st;
    uint64_t t1 = timing_now_ns();
    res->decode_ms = timing_ms(t0, t1);
    result_set_image(res, &img);
    res->n_results = 1;
    st = image_preprocess(&img, &pp, input, it->err, sizeof it->err);
    image_free(&img);
    res->results[0].preprocess_ms = res->preprocess_ms = timing_ms(t1, timing_now_ns());
    return st;
}

void pipeline_classify_batch(pipeline_ws *ws, int slot, pipeline_batch_item *items, int n)
{
    if (slot < 0 || slot >= ws->n_models || !ws->models[slot] || n > ws->max_batch[slot] || ws->max_batch[slot] < 2) {
        for (int i = 0; i < n; i++)
            items[i].st = cnn_err(items[i].err, sizeof items[i].err, CNN_ERR_ARG, "model slot %d cannot batch %d", slot, n);
        return;
    }
    const model *m = ws->models[slot];
    const size_t s = (size_t)model_input_size(m), in_n = 3 * s * s, n_classes = (size_t)model_num_classes(m);
    const float *inputs[MODEL_MAX_BATCH];
    int rows[MODEL_MAX_BATCH]; /* item -> row of the batch, -1 when it failed */
    uint64_t t_ready[MODEL_MAX_BATCH];
    int k = 0;
    for (int i = 0; i < n; i++) {
        float *in = ws->batch_input + (size_t)k * in_n;
        items[i].err[0] = '\0';
        items[i].st = batch_prepare(ws, slot, &items[i], in);
        t_ready[i] = timing_now_ns();
        rows[i] = items[i].st == CNN_OK ? k : -1;
        if (items[i].st == CNN_OK) inputs[k++] = in;
    }
    if (!k) return;
    const uint64_t tb = timing_now_ns();
    model_run_batch(ws->ctxs[slot], inputs, k, ws->batch_logits);
    const uint64_t te = timing_now_ns();
    for (int i = 0; i < n; i++) {
        if (rows[i] < 0) continue;
        pipeline_result *res = &items[i].res;
        pipeline_model_result *r = &res->results[0];
        const float *logits = ws->batch_logits + (size_t)rows[i] * n_classes;
        int *idx = ws->batch_idx + (size_t)rows[i] * PIPELINE_TOPK_MAX;
        float *prob = ws->batch_prob + (size_t)rows[i] * PIPELINE_TOPK_MAX;
        const uint64_t tp = timing_now_ns();
        r->n_preds = model_topk(m, logits, items[i].req->top_k, idx, prob);
        r->m = m;
        r->logits = logits + (model_num_classes(m) - model_num_labels(m));
        items[i].logits_all = logits;
        r->idx = idx;
        r->prob = prob;
        r->inference_ms = res->inference_ms = timing_ms(tb, te);
        r->postprocess_ms = res->postprocess_ms = timing_ms(tp, timing_now_ns());
        res->batch_size = k;
        res->batch_wait_ms = timing_ms(t_ready[i], tb);
    }
}

const float *pipeline_run_input_batch(pipeline_ws *ws, int slot, const float *const *inputs, int n)
{
    if (n > ws->max_batch[slot]) n = ws->max_batch[slot]; /* callers keep to the maximum */
    model_run_batch(ws->ctxs[slot], inputs, n, n > 1 ? ws->batch_logits : ws->logits + (size_t)slot * ws->logits_stride);
    return n > 1 ? ws->batch_logits : ws->logits + (size_t)slot * ws->logits_stride;
}

const float *pipeline_run_input(pipeline_ws *ws, int slot, const float *input)
{
    float *logits = ws->logits + (size_t)slot * ws->logits_stride;
    model_run(ws->ctxs[slot], input, logits);
    return logits;
}

const float *pipeline_logits(const pipeline_ws *ws, int slot) { return ws->logits + (size_t)slot * ws->logits_stride; }

json_t *pipeline_ms_json(double ms) { return json_real(round(ms * 1000.0) / 1000.0); }

static json_t *predictions_json(const pipeline_model_result *r)
{
    json_t *a = json_array();
    for (int k = 0; a && k < r->n_preds; k++)
        json_array_append_new(a, json_pack("{s:i,s:s,s:f}", "index", r->idx[k], "label", model_class_label(r->m, r->idx[k]),
                                           "score", (double)r->prob[k]));
    return a;
}

static json_t *image_json(const pipeline_result *res)
{
    char scale[32];
    snprintf(scale, sizeof scale, "%d/%d", res->scale_num, res->scale_denom);
    return json_pack("{s:s,s:i,s:i,s:i,s:i,s:s,s:i}", "format", image_format_name(res->format), "width",
                     res->src_width, "height", res->src_height, "decoded_width", res->width, "decoded_height",
                     res->height, "decode_scale", scale, "exif_orientation", res->orientation);
}

json_t *pipeline_result_json(const pipeline_result *res, int all, double receive_ms, double queue_ms,
                             double total_ms)
{
    json_t *o = json_object();
    if (!o) return NULL;
    if (all) {
        json_object_set_new(o, "model", json_string("all"));
        json_t *results = json_array();
        for (int i = 0; results && i < res->n_results; i++) {
            const pipeline_model_result *r = &res->results[i];
            json_array_append_new(
                results, json_pack("{s:s,s:o,s:{s:o,s:o,s:o}}", "model", model_name(r->m), "predictions",
                                   predictions_json(r), "timings_ms", "preprocess", pipeline_ms_json(r->preprocess_ms),
                                   "inference", pipeline_ms_json(r->inference_ms), "postprocess",
                                   pipeline_ms_json(r->postprocess_ms)));
        }
        json_object_set_new(o, "results", results);
    } else {
        json_object_set_new(o, "model", json_string(model_name(res->results[0].m)));
        json_object_set_new(o, "predictions", predictions_json(&res->results[0]));
    }
    if (res->batch_size > 1)
        json_object_set_new(o, "batch", json_pack("{s:i,s:o}", "size", res->batch_size, "wait_ms",
                                                  pipeline_ms_json(res->batch_wait_ms)));
    json_object_set_new(o, "image", image_json(res));
    json_object_set_new(o, "timings_ms",
                        json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "receive", pipeline_ms_json(receive_ms), "decode",
                                  pipeline_ms_json(res->decode_ms), "preprocess", pipeline_ms_json(res->preprocess_ms),
                                  "queue", pipeline_ms_json(queue_ms), "inference", pipeline_ms_json(res->inference_ms),
                                  "postprocess", pipeline_ms_json(res->postprocess_ms), "total",
                                  pipeline_ms_json(total_ms)));
    return o;
}
