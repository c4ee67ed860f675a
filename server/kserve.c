#include "kserve.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "http.h"
#include "timing.h"
#include "version.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "binary tensor data is little-endian; this file copies it as host floats"
#endif

/* ---------------------------------------------------------------- paths */

static int copy_segment(char *dst, size_t dst_bytes, const char *s, size_t n)
{
    if (!n || n >= dst_bytes) return 0;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 1;
}

int kserve_parse_path(const char *url, kserve_path *p)
{
    memset(p, 0, sizeof *p);
    if (!strcmp(url, "/v2") || !strcmp(url, "/v2/")) return p->kind = KSERVE_SERVER, 1;
    if (!strcmp(url, "/v2/health/live")) return p->kind = KSERVE_LIVE, 1;
    if (!strcmp(url, "/v2/health/ready")) return p->kind = KSERVE_READY, 1;
    static const char prefix[] = "/v2/models/";
    if (strncmp(url, prefix, sizeof prefix - 1)) return 0;
    const char *seg[5];
    size_t len[5];
    int n = 0;
    for (const char *s = url + sizeof prefix - 1;; n++) {
        const char *slash = strchr(s, '/');
        if (n == 4) return 0;
        seg[n] = s;
        len[n] = slash ? (size_t)(slash - s) : strlen(s);
        if (!len[n]) return 0;
        if (!slash) {
            n++;
            break;
        }
        s = slash + 1;
    }
    if (!copy_segment(p->model, sizeof p->model, seg[0], len[0])) return 0;
    int i = 1;
    if (n >= 3 && len[1] == 8 && !memcmp(seg[1], "versions", 8)) {
        if (!copy_segment(p->version, sizeof p->version, seg[2], len[2])) return 0;
        i = 3;
    }
    if (i == n) return p->kind = KSERVE_MODEL, 1;
    if (i + 1 != n) return 0;
    if (len[i] == 5 && !memcmp(seg[i], "ready", 5)) return p->kind = KSERVE_MODEL_READY, 1;
    if (len[i] == 5 && !memcmp(seg[i], "infer", 5)) return p->kind = KSERVE_INFER, 1;
    return 0;
}

int kserve_find_model(const zoo *z, const kserve_path *p, char *err, size_t err_bytes)
{
    int e = zoo_find(z, p->model);
    if (e < 0 || !z->entries[e].m) {
        char loaded[1024];
        zoo_loaded_names(z, loaded, sizeof loaded);
        if (e < 0)
            cnn_err(err, err_bytes, CNN_ERR_ARG, "unknown model '%s'; loaded models: %s", p->model, loaded);
        else
            cnn_err(err, err_bytes, CNN_ERR_ARG, "model '%s' is not loaded (%.300s); loaded models: %s", p->model,
                    z->entries[e].why, loaded);
        return -1;
    }
    if (p->version[0] && strcmp(p->version, KSERVE_MODEL_VERSION)) {
        cnn_err(err, err_bytes, CNN_ERR_ARG, "model '%s' has no version '%s'; versions: " KSERVE_MODEL_VERSION,
                p->model, p->version);
        return -1;
    }
    return e;
}

/* ---------------------------------------------------------------- metadata */

json_t *kserve_error_json(const char *message) { return json_pack("{s:s}", "error", message); }

json_t *kserve_server_metadata_json(void)
{
    return json_pack("{s:s,s:s,s:[s,s]}", "name", "cnnserve", "version", CNNSERVE_VERSION, "extensions",
                     "binary_tensor_data", "classification");
}

json_t *kserve_model_metadata_json(const zoo *z, int entry)
{
    const model *m = z->entries[entry].m;
    int s = model_input_size(m);
    return json_pack("{s:s,s:[s],s:s,s:[{s:s,s:s,s:[i]},{s:s,s:s,s:[i,i,i,i]}],s:[{s:s,s:s,s:[i,i]}]}", "name",
                     z->entries[entry].name, "versions", KSERVE_MODEL_VERSION, "platform", "cnnserve", "inputs", "name",
                     "image", "datatype", "BYTES", "shape", -1, "name", "input", "datatype", "FP32", "shape", -1, 3,
                     s, s, "outputs", "name", "probabilities", "datatype", "FP32", "shape", -1, model_num_labels(m));
}

/* ---------------------------------------------------------------- inference */

typedef struct {
    const char *name;   /* "image" or "input" */
    int is_image;
    int64_t n_items;
    int64_t n_elems;    /* elements of the whole tensor */
    json_t *data;       /* JSON data, or NULL when binary */
    const uint8_t *bin; /* binary data */
    size_t n_bin;
} infer_input;

typedef struct {
    int classification; /* k, 0 = the probabilities themselves */
    int binary;
} infer_output;

typedef struct {
    char msg[600];
    int status;
    const char *code;
} infer_error;

static int fail(infer_error *e, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(infer_error *e, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->status = status;
    e->code = code;
    return 0;
}

#define bad_request(e, ...) fail(e, 400, "bad_request", __VA_ARGS__)

/* A non-negative integer that fits the protocol's uint64 dimensions and our int64. */
static int json_dim(const json_t *v, int64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) return 0;
    *out = json_integer_value(v);
    return 1;
}

/* Visits the elements of a nested data array, which must have exactly the declared shape. */
static int walk_nested(json_t *a, const int64_t *shape, int ndim, int d, json_t **leaves, size_t *n_leaves)
{
    if (!json_is_array(a) || (int64_t)json_array_size(a) != shape[d]) return 0;
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *v = json_array_get(a, i);
        if (d + 1 < ndim) {
            if (!walk_nested(v, shape, ndim, d + 1, leaves, n_leaves)) return 0;
        } else {
            if (json_is_array(v)) return 0;
            leaves[(*n_leaves)++] = v;
        }
    }
    return 1;
}

/* The elements of JSON tensor data in row-major order: the spec allows one flat array of all of
 * them or arrays nested as the shape. leaves holds n_elems pointers. */
static int data_leaves(json_t *data, const char *name, const int64_t *shape, int ndim, int64_t n_elems,
                       json_t **leaves, infer_error *e)
{
    size_t n = 0;
    if (json_is_array(data) && (int64_t)json_array_size(data) == n_elems &&
        (n_elems == 0 || !json_is_array(json_array_get(data, 0)))) {
        for (size_t i = 0; i < json_array_size(data); i++) {
            if (json_is_array(json_array_get(data, i)))
                return bad_request(e, "input '%s': \"data\" mixes arrays and values", name);
            leaves[i] = json_array_get(data, i);
        }
        return 1;
    }
    if (!walk_nested(data, shape, ndim, 0, leaves, &n) || (int64_t)n != n_elems)
        return bad_request(e,
                           "input '%s': \"data\" must be a flat array of %lld elements or arrays nested as the "
                           "shape",
                           name, (long long)n_elems);
    return 1;
}

/* Reads "inputs": exactly one, "image" (BYTES [N]) or "input" (FP32 [N,3,S,S]). */
static int parse_input(json_t *req, const model *m, int64_t shape[4], int *ndim, infer_input *in, int64_t *bin_size,
                       infer_error *e)
{
    int s = model_input_size(m);
    json_t *inputs = json_object_get(req, "inputs");
    if (!json_is_array(inputs) || json_array_size(inputs) != 1)
        return bad_request(e, "\"inputs\" must be an array of exactly one input: 'image' (BYTES [N], encoded "
                              "images) or 'input' (FP32 [N,3,%d,%d], preprocessed)",
                           s, s);
    json_t *t = json_array_get(inputs, 0);
    const char *name = json_string_value(json_object_get(t, "name"));
    const char *dtype = json_string_value(json_object_get(t, "datatype"));
    json_t *jshape = json_object_get(t, "shape");
    if (!json_is_object(t) || !name || !dtype || !json_is_array(jshape))
        return bad_request(e, "the input needs \"name\", \"datatype\" and \"shape\"");
    if (!strcmp(name, "image")) {
        in->name = "image", in->is_image = 1;
    } else if (!strcmp(name, "input")) {
        in->name = "input", in->is_image = 0;
    } else {
        return bad_request(e, "unknown input '%.64s': this model takes 'image' (BYTES) or 'input' (FP32)", name);
    }
    const char *want = in->is_image ? "BYTES" : "FP32";
    if (strcmp(dtype, want))
        return bad_request(e, "input '%s' has datatype %s, got '%.16s'", in->name, want, dtype);
    *ndim = (int)json_array_size(jshape);
    int want_ndim = in->is_image ? 1 : 4;
    int ok = *ndim == want_ndim;
    for (int d = 0; ok && d < *ndim; d++) ok = json_dim(json_array_get(jshape, (size_t)d), &shape[d]);
    if (ok && !in->is_image) ok = shape[1] == 3 && shape[2] == s && shape[3] == s;
    if (!ok) {
        char *got = json_dumps(jshape, JSON_COMPACT);
        char want[48] = "[N]";
        if (!in->is_image) snprintf(want, sizeof want, "[N,3,%d,%d]", s, s);
        bad_request(e, "input '%s' must have shape %s, got %.80s", in->name, want, got ? got : "?");
        free(got);
        return 0;
    }
    in->n_items = shape[0];
    if (in->n_items < 1 || in->n_items > KSERVE_MAX_BATCH)
        return bad_request(e, "input '%s': batch size %lld is out of range 1..%d", in->name, (long long)in->n_items,
                           KSERVE_MAX_BATCH);
    in->n_elems = in->is_image ? in->n_items : in->n_items * 3 * s * s;
    json_t *params = json_object_get(t, "parameters");
    json_t *jsize = json_object_get(params, "binary_data_size");
    in->data = json_object_get(t, "data");
    *bin_size = -1;
    if (params && !json_is_object(params)) return bad_request(e, "input '%s': \"parameters\" must be an object", in->name);
    if (jsize && !json_dim(jsize, bin_size))
        return bad_request(e, "input '%s': \"binary_data_size\" must be a non-negative integer", in->name);
    if (jsize && in->data) return bad_request(e, "input '%s' has both \"data\" and \"binary_data_size\"", in->name);
    if (!jsize && !in->data)
        return bad_request(e, "input '%s' has no \"data\" (nor \"binary_data_size\" for binary data)", in->name);
    return 1;
}

/* Reads "outputs" (absent: the probabilities) and the request's "binary_data_output". */
static int parse_outputs(json_t *req, const model *m, infer_output *out, infer_error *e)
{
    json_t *params = json_object_get(req, "parameters");
    if (params && !json_is_object(params)) return bad_request(e, "\"parameters\" must be an object");
    json_t *all_binary = json_object_get(params, "binary_data_output");
    if (all_binary && !json_is_boolean(all_binary)) return bad_request(e, "\"binary_data_output\" must be a boolean");
    out->binary = json_is_true(all_binary);
    out->classification = 0;
    json_t *outputs = json_object_get(req, "outputs");
    if (!outputs) return 1;
    if (!json_is_array(outputs) || json_array_size(outputs) > 1)
        return bad_request(e, "\"outputs\" must be an array naming at most the one output 'probabilities'");
    if (!json_array_size(outputs)) return 1;
    json_t *o = json_array_get(outputs, 0);
    const char *name = json_string_value(json_object_get(o, "name"));
    if (!name) return bad_request(e, "a requested output needs a \"name\"");
    if (strcmp(name, "probabilities"))
        return bad_request(e, "unknown output '%.64s': this model's output is 'probabilities'", name);
    json_t *op = json_object_get(o, "parameters");
    if (op && !json_is_object(op)) return bad_request(e, "output 'probabilities': \"parameters\" must be an object");
    json_t *binary = json_object_get(op, "binary_data");
    if (binary && !json_is_boolean(binary)) return bad_request(e, "\"binary_data\" must be a boolean");
    if (binary) out->binary = json_is_true(binary);
    json_t *cls = json_object_get(op, "classification");
    if (cls) {
        int k_max = model_num_labels(m) < PIPELINE_TOPK_MAX ? model_num_labels(m) : PIPELINE_TOPK_MAX;
        if (!json_is_integer(cls) || json_integer_value(cls) < 1 || json_integer_value(cls) > k_max)
            return bad_request(e, "\"classification\" must be an integer in 1..%d", k_max);
        out->classification = (int)json_integer_value(cls);
    }
    return 1;
}

/* Binary BYTES elements: each a 4-byte little-endian length and the bytes; exactly n of them. */
static int binary_elements(const uint8_t *p, size_t n_bytes, int64_t n, const uint8_t **data, size_t *len,
                           infer_error *e)
{
    size_t off = 0;
    for (int64_t i = 0; i < n; i++) {
        if (n_bytes - off < 4)
            return bad_request(e, "input 'image': binary data ends inside the length of element %lld", (long long)i);
        uint32_t l;
        memcpy(&l, p + off, 4);
        off += 4;
        if (l > n_bytes - off)
            return bad_request(e, "input 'image': element %lld declares %u bytes, %zu remain", (long long)i, l,
                               n_bytes - off);
        data[i] = p + off;
        len[i] = l;
        off += l;
    }
    if (off != n_bytes)
        return bad_request(e, "input 'image': %zu bytes of binary data follow the %lld elements of the shape",
                           n_bytes - off, (long long)n);
    return 1;
}

/* The JSON of one output (data or binary_data_size) in the response. */
static json_t *output_json(const infer_output *o, int64_t n, int k, const float *probs, char *const *strings,
                           size_t n_bin)
{
    json_t *out = json_pack("{s:s,s:[I,I],s:s}", "name", "probabilities", "shape", (json_int_t)n, (json_int_t)k,
                            "datatype", o->classification ? "BYTES" : "FP32");
    if (!out) return NULL;
    if (o->binary) {
        json_object_set_new(out, "parameters", json_pack("{s:I}", "binary_data_size", (json_int_t)n_bin));
        return out;
    }
    json_t *data = json_array();
    for (int64_t i = 0; data && i < n * k; i++)
        if (json_array_append_new(data, o->classification ? json_string(strings[i]) : json_real(probs[i]))) {
            json_decref(data);
            data = NULL;
        }
    if (!data || json_object_set_new(out, "data", data)) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* Top-k of item i's logits into probs / best / sorted (see run_items). */
static void item_answer(const model *m, const float *logits, int64_t i, float *probs, int *best, float *sorted)
{
    int k = model_num_labels(m);
    int *idx = best + (size_t)i * (size_t)k;
    float *p = sorted + (size_t)i * (size_t)k;
    model_topk(m, logits, k, idx, p);
    for (int j = 0; j < k; j++) probs[(size_t)i * (size_t)k + (size_t)idx[j]] = p[j];
}

/* run_items for a model the workspace batches: the items in batches of up to its largest batch
 * (pipeline_classify_batch / pipeline_run_input_batch: the same answers as one by one); the first
 * image that fails is the error, as one by one. */
static int run_items_batched(pipeline_ws *ws, int slot, const model *m, const infer_input *in,
                             const uint8_t *const *images, const size_t *n_image, const float *tensor,
                             int64_t max_pixels, float *probs, int *best, float *sorted, kserve_answer *a,
                             infer_error *e)
{
    const int max = pipeline_ws_max_batch(ws, slot);
    const size_t n_in = (size_t)3 * (size_t)model_input_size(m) * (size_t)model_input_size(m);
    const size_t n_classes = (size_t)model_num_classes(m);
    const pipeline_request preq = {.top_k = 1, .max_pixels = max_pixels, .n_slots = 1, .slots = {slot}};
    pipeline_batch_item items[MODEL_MAX_BATCH];
    for (int64_t i0 = 0; i0 < in->n_items; i0 += max) {
        const int n = in->n_items - i0 < max ? (int)(in->n_items - i0) : max;
        if (in->is_image) {
            for (int j = 0; j < n; j++)
                items[j] = (pipeline_batch_item){.data = images[i0 + j], .n_bytes = n_image[i0 + j], .req = &preq};
            pipeline_classify_batch(ws, slot, items, n);
            for (int j = 0; j < n; j++) {
                if (items[j].st != CNN_OK) {
                    int status;
                    const char *code;
                    http_error_of_status(items[j].st, &status, &code);
                    return fail(e, status, code, "input 'image' element %lld: %s", (long long)(i0 + j),
                                items[j].st == CNN_ERR_NOMEM ? "out of memory decoding the image; retry shortly"
                                                             : items[j].err);
                }
                a->decode_ms += items[j].res.decode_ms;
                a->preprocess_ms += items[j].res.preprocess_ms;
            }
            a->inference_ms += items[0].res.inference_ms; /* the batch's, once */
            uint64_t t1 = timing_now_ns();
            for (int j = 0; j < n; j++) item_answer(m, items[j].logits_all, i0 + j, probs, best, sorted);
            a->postprocess_ms += timing_ms(t1, timing_now_ns());
        } else {
            const float *inputs[MODEL_MAX_BATCH];
            for (int j = 0; j < n; j++) inputs[j] = tensor + (size_t)(i0 + j) * n_in;
            uint64_t t0 = timing_now_ns();
            const float *logits = pipeline_run_input_batch(ws, slot, inputs, n);
            uint64_t t1 = timing_now_ns();
            a->inference_ms += timing_ms(t0, t1);
            for (int j = 0; j < n; j++) item_answer(m, logits + (size_t)j * n_classes, i0 + j, probs, best, sorted);
            a->postprocess_ms += timing_ms(t1, timing_now_ns());
        }
    }
    return 1;
}

/* Decodes/runs every item, fills probs (N x K, class order) and best (N x K indices, best first). */
static int run_items(pipeline_ws *ws, int slot, const model *m, const infer_input *in, const uint8_t *const *images,
                     const size_t *n_image, const float *tensor, int64_t max_pixels, float *probs, int *best,
                     float *sorted, kserve_answer *a, infer_error *e)
{
    if (in->n_items > 1 && pipeline_ws_max_batch(ws, slot) > 1)
        return run_items_batched(ws, slot, m, in, images, n_image, tensor, max_pixels, probs, best, sorted, a, e);
    size_t n_in = (size_t)3 * (size_t)model_input_size(m) * (size_t)model_input_size(m);
    for (int64_t i = 0; i < in->n_items; i++) {
        const float *logits;
        if (in->is_image) {
            pipeline_request preq = {.top_k = 1, .max_pixels = max_pixels, .n_slots = 1, .slots = {slot}};
            pipeline_result res;
            char err[256];
            cnn_status st = pipeline_classify(ws, images[i], n_image[i], &preq, &res, err, sizeof err);
            if (st != CNN_OK) {
                int status;
                const char *code;
                http_error_of_status(st, &status, &code);
                return fail(e, status, code, "input 'image' element %lld: %s", (long long)i,
                            st == CNN_ERR_NOMEM ? "out of memory decoding the image; retry shortly" : err);
            }
            a->decode_ms += res.decode_ms;
            a->preprocess_ms += res.preprocess_ms;
            a->inference_ms += res.inference_ms;
            logits = pipeline_logits(ws, slot);
        } else {
            uint64_t t0 = timing_now_ns();
            logits = pipeline_run_input(ws, slot, tensor + (size_t)i * n_in);
            a->inference_ms += timing_ms(t0, timing_now_ns());
        }
        uint64_t t1 = timing_now_ns();
        item_answer(m, logits, i, probs, best, sorted);
        a->postprocess_ms += timing_ms(t1, timing_now_ns());
    }
    return 1;
}

/* JSON values (commas outside strings, + 1) in text: bounds the parsed tree before it is built. */
static size_t json_value_count(const char *text, size_t n)
{
    size_t count = 1;
    int in_string = 0;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\') i++;
            else if (c == '"') in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == ',') {
            count++;
        }
    }
    return count;
}

/* Everything of one request that must be freed. */
typedef struct {
    json_t *req, *id, *resp;
    json_t **leaves;
    const uint8_t **images;
    size_t *n_image;
    uint8_t *decoded;   /* base64-decoded images, back to back */
    float *tensor, *probs, *sorted;
    int *best;
    char **strings;     /* classification strings */
    int64_t n_strings;
    char *json;
} infer_mem;

static void infer_mem_free(infer_mem *mm)
{
    json_decref(mm->req);
    json_decref(mm->id);
    json_decref(mm->resp);
    free(mm->leaves);
    free(mm->images);
    free(mm->n_image);
    free(mm->decoded);
    free(mm->tensor);
    free(mm->probs);
    free(mm->sorted);
    free(mm->best);
    for (int64_t i = 0; mm->strings && i < mm->n_strings; i++) free(mm->strings[i]);
    free(mm->strings);
    free(mm->json);
}

/* The input's items: image byte ranges, or the FP32 tensor. */
static int gather_input(const infer_input *in, const model *m, const int64_t *shape, int ndim, infer_mem *mm,
                        infer_error *e)
{
    size_t n = (size_t)in->n_elems;
    if (in->is_image) {
        mm->images = calloc(n, sizeof *mm->images);
        mm->n_image = calloc(n, sizeof *mm->n_image);
        if (!mm->images || !mm->n_image) return fail(e, 503, "busy", "out of memory; retry shortly");
        if (!in->data) return binary_elements(in->bin, in->n_bin, in->n_items, mm->images, mm->n_image, e);
    } else {
        mm->tensor = malloc(n * sizeof(float));
        if (!mm->tensor) return fail(e, 503, "busy", "out of memory; retry shortly");
        if (!in->data) {
            if (in->n_bin != n * sizeof(float))
                return bad_request(e, "input 'input': binary_data_size is %zu bytes; FP32 [%lld,3,%d,%d] needs %zu",
                                   in->n_bin, (long long)in->n_items, model_input_size(m), model_input_size(m),
                                   n * sizeof(float));
            memcpy(mm->tensor, in->bin, in->n_bin);
            for (size_t i = 0; i < n; i++)
                if (!isfinite(mm->tensor[i]))
                    return bad_request(e, "input 'input': element %zu of the binary data is not a finite number", i);
            return 1;
        }
    }
    mm->leaves = malloc(n * sizeof *mm->leaves);
    if (!mm->leaves) return fail(e, 503, "busy", "out of memory; retry shortly");
    if (!data_leaves(in->data, in->name, shape, ndim, in->n_elems, mm->leaves, e)) return 0;
    if (!in->is_image) {
        for (size_t i = 0; i < n; i++) {
            if (!json_is_number(mm->leaves[i]))
                return bad_request(e, "input 'input': element %zu of \"data\" is not a number", i);
            mm->tensor[i] = (float)json_number_value(mm->leaves[i]);
        }
        return 1;
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!json_is_string(mm->leaves[i]))
            return bad_request(e, "input 'image': element %zu of \"data\" is not a base64 string", i);
        total += base64_decoded_max(json_string_length(mm->leaves[i]));
    }
    mm->decoded = malloc(total ? total : 1);
    if (!mm->decoded) return fail(e, 503, "busy", "out of memory; retry shortly");
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        char err[160];
        size_t got;
        size_t n_chars = json_string_length(mm->leaves[i]);
        if (base64_decode(json_string_value(mm->leaves[i]), n_chars, mm->decoded + off, base64_decoded_max(n_chars),
                          &got, err, sizeof err) != CNN_OK)
            return bad_request(e, "input 'image' element %zu: %s", i, err);
        mm->images[i] = mm->decoded + off;
        mm->n_image[i] = got;
        off += got;
    }
    return 1;
}

static int build_response(json_t *id, const char *name, const model *m, const infer_input *in, const infer_output *o,
                          infer_mem *mm, kserve_answer *a, infer_error *e)
{
    int64_t n = in->n_items;
    int k = model_num_labels(m);
    int cols = o->classification ? o->classification : k;
    size_t n_bin = 0;
    if (o->classification) {
        mm->strings = calloc((size_t)(n * cols), sizeof *mm->strings);
        if (!mm->strings) return fail(e, 503, "busy", "out of memory; retry shortly");
        for (int64_t i = 0; i < n; i++)
            for (int j = 0; j < cols; j++) {
                size_t at = (size_t)i * (size_t)k + (size_t)j;
                const char *label = model_class_label(m, mm->best[at]);
                int len = snprintf(NULL, 0, "%.9g:%d:%s", (double)mm->sorted[at], mm->best[at], label);
                char *str = len >= 0 ? malloc((size_t)len + 1) : NULL;
                if (!str) return fail(e, 503, "busy", "out of memory; retry shortly");
                snprintf(str, (size_t)len + 1, "%.9g:%d:%s", (double)mm->sorted[at], mm->best[at], label);
                mm->strings[mm->n_strings++] = str;
                n_bin += 4 + (size_t)len;
            }
    } else {
        n_bin = (size_t)(n * k) * sizeof(float);
    }
    json_t *output = output_json(o, n, cols, mm->probs, mm->strings, n_bin);
    mm->resp = json_pack("{s:s,s:s,s:[o]}", "model_name", name, "model_version", KSERVE_MODEL_VERSION,
                         "outputs", output);
    if (!mm->resp) return fail(e, 503, "busy", "out of memory building the answer; retry shortly");
    if (id) json_object_set(mm->resp, "id", id);
    mm->json = json_dumps(mm->resp, PIPELINE_JSON_FLAGS);
    if (!mm->json) return fail(e, 503, "busy", "out of memory building the answer; retry shortly");
    a->n_json = strlen(mm->json);
    a->n_body = a->n_json + (o->binary ? n_bin : 0);
    if (!o->binary) {
        a->body = mm->json;
        mm->json = NULL;
        return 1;
    }
    a->body = malloc(a->n_body);
    if (!a->body) return fail(e, 503, "busy", "out of memory building the answer; retry shortly");
    memcpy(a->body, mm->json, a->n_json);
    uint8_t *p = (uint8_t *)a->body + a->n_json;
    if (!o->classification) {
        memcpy(p, mm->probs, n_bin);
        return 1;
    }
    for (int64_t i = 0; i < mm->n_strings; i++) {
        uint32_t len = (uint32_t)strlen(mm->strings[i]);
        memcpy(p, &len, 4);
        memcpy(p + 4, mm->strings[i], len);
        p += 4 + len;
    }
    return 1;
}

void kserve_infer(pipeline_ws *ws, const zoo *z, int entry, const uint8_t *body, size_t n_body, int64_t n_header,
                  int64_t max_pixels, kserve_answer *a)
{
    memset(a, 0, sizeof *a);
    infer_mem mm = {0};
    infer_error e = {.status = 500, .code = "internal"};
    const model *m = z->entries[entry].m;
    int slot = zoo_slot(z, entry);
    size_t n_json = n_header >= 0 ? (size_t)n_header : n_body;
    json_error_t jerr;
    infer_input in = {0};
    infer_output out = {0};
    int64_t shape[4] = {0}, bin_size = -1;
    int ndim = 0, ok = 0;
    if (slot < 0) {
        fail(&e, 404, "unknown_model", "model '%s' is not loaded", z->entries[entry].name);
        goto done;
    }
    if (n_json > n_body) {
        bad_request(&e, "Inference-Header-Content-Length %zu exceeds the body's %zu bytes", n_json, n_body);
        goto done;
    }
    if (json_value_count((const char *)body, n_json) > KSERVE_MAX_JSON_VALUES) {
        fail(&e, 413, "payload_too_large",
             "the JSON request has more than %d values; send large FP32 tensors as binary data "
             "(binary_data_size and Inference-Header-Content-Length)",
             KSERVE_MAX_JSON_VALUES);
        goto done;
    }
    mm.req = json_loadb((const char *)body, n_json, JSON_REJECT_DUPLICATES, &jerr);
    if (!mm.req) {
        bad_request(&e, "the request is not valid JSON: %s at byte %d", jerr.text, jerr.position);
        goto done;
    }
    if (!json_is_object(mm.req)) {
        bad_request(&e, "the request must be a JSON object");
        goto done;
    }
    json_t *id = json_object_get(mm.req, "id");
    if (id && !json_is_string(id)) {
        bad_request(&e, "\"id\" must be a string");
        goto done;
    }
    if (!parse_input(mm.req, m, shape, &ndim, &in, &bin_size, &e) || !parse_outputs(mm.req, m, &out, &e)) goto done;
    size_t n_rest = n_body - n_json;
    if (bin_size >= 0) {
        if ((uint64_t)bin_size != n_rest) {
            bad_request(&e, "input '%s': binary_data_size is %lld but %zu bytes follow the JSON header%s", in.name,
                        (long long)bin_size, n_rest, n_header < 0 ? " (no Inference-Header-Content-Length)" : "");
            goto done;
        }
        in.bin = body + n_json;
        in.n_bin = n_rest;
    } else if (n_rest) {
        bad_request(&e, "%zu bytes follow the JSON header but no input has binary_data_size", n_rest);
        goto done;
    }
    if (!out.binary && !out.classification &&
        in.n_items * model_num_labels(m) > KSERVE_MAX_JSON_VALUES) {
        bad_request(&e,
                    "%lld x %d probabilities exceed %d JSON values; ask for them as binary data "
                    "(\"binary_data\": true) or for the top k (\"classification\": k)",
                    (long long)in.n_items, model_num_labels(m), KSERVE_MAX_JSON_VALUES);
        goto done;
    }
    if (!gather_input(&in, m, shape, ndim, &mm, &e)) goto done;
    /* The items are copied out: free the parsed tree (several times the body for numbers) now. */
    mm.id = json_incref(id);
    json_decref(mm.req);
    mm.req = NULL;
    in.data = NULL;
    int k = model_num_labels(m);
    size_t nk = (size_t)in.n_items * (size_t)k;
    mm.probs = malloc(nk * sizeof(float));
    mm.sorted = malloc(nk * sizeof(float));
    mm.best = malloc(nk * sizeof(int));
    if (!mm.probs || !mm.sorted || !mm.best) {
        fail(&e, 503, "busy", "out of memory; retry shortly");
        goto done;
    }
    a->n_items = (int)in.n_items;
    if (!run_items(ws, slot, m, &in, mm.images, mm.n_image, mm.tensor, max_pixels, mm.probs, mm.best, mm.sorted, a,
                   &e))
        goto done;
    uint64_t t0 = timing_now_ns();
    ok = build_response(mm.id, z->entries[entry].name, m, &in, &out, &mm, a, &e);
    a->postprocess_ms += timing_ms(t0, timing_now_ns());
done:
    infer_mem_free(&mm);
    if (ok) {
        a->status = 200;
        return;
    }
    free(a->body);
    a->status = e.status;
    a->error_code = e.code;
    json_t *err = kserve_error_json(e.msg);
    a->body = err ? json_dumps(err, JSON_COMPACT) : NULL;
    json_decref(err);
    a->n_body = a->n_json = a->body ? strlen(a->body) : 0;
}
