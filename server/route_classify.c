/* POST /v1/classify (alias /classify): an image as the raw body or as multipart file field "image";
 * parameters model and top_k in the query string or as form fields. Headers are checked before the
 * body is read (classify_start), the body when complete (classify_answer), and the image is decoded
 * and classified on an inference worker (classify_run). */
#include "routes.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http_parse.h"
#include "multipart.h"
#include "timing.h"

/* Resolves model/top_k into r->preq. Sends the 400/404 and returns 0 when they are bad. */
static int resolve_params(http_req *r, enum MHD_Result *ret)
{
    http_server *s = r->srv;
    const zoo *z = r->z;
    int entry = http_default_entry(s, z);
    r->all = 0;
    if (r->has_model_param) {
        if (!r->model_param[0]) {
            *ret = http_send_error_extra(r, MHD_HTTP_BAD_REQUEST, "bad_parameter", json_pack("{s:s}", "parameter", "model"),
                                         NULL, "parameter 'model' is empty; use a model name, an alias or 'all'");
            return 0;
        }
        if (!strcasecmp(r->model_param, "all")) {
            r->all = 1;
        } else {
            entry = zoo_find(z, r->model_param);
            if (entry < 0 || !z->entries[entry].m) {
                r->model_label = METRICS_MODEL_NONE;
                *ret = http_send_unknown_model(r, r->model_param);
                return 0;
            }
        }
    }
    int64_t top_k = 5;
    if (r->has_top_k_param && config_parse_int(r->top_k_param, 1, PIPELINE_TOPK_MAX, &top_k) != CNN_OK) {
        *ret = http_send_error_extra(r, MHD_HTTP_BAD_REQUEST, "bad_parameter", json_pack("{s:s}", "parameter", "top_k"),
                                     NULL, "parameter 'top_k' must be an integer in 1..%d, got '%.20s'",
                                     PIPELINE_TOPK_MAX, r->top_k_param);
        return 0;
    }
    r->preq.top_k = (int)top_k;
    r->preq.max_pixels = s->cfg->max_pixels;
    r->preq.n_slots = 0;
    for (int i = 0; i < z->n_loaded; i++)
        if (r->all || z->loaded[i] == entry) r->preq.slots[r->preq.n_slots++] = i;
    r->model_label = r->all ? METRICS_MODEL_ALL : z->entries[entry].metrics_label;
    return 1;
}

static int is_image_media_type(const char *t)
{
    static const char *const accepted[] = {"image/jpeg", "image/jpg", "image/pjpeg", "image/png",
                                           "image/webp", "application/octet-stream"};
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++)
        if (!strcmp(t, accepted[i])) return 1;
    return 0;
}

enum MHD_Result classify_start(http_req *r)
{
    enum MHD_Result ret;
    const char *ctype = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    char media[96];
    multipart_media_type(ctype, media, sizeof media);
    if (!strcmp(media, "multipart/form-data")) {
        char err[160];
        if (multipart_boundary(ctype, r->boundary, sizeof r->boundary, err, sizeof err) != CNN_OK)
            return http_send_error(r, MHD_HTTP_BAD_REQUEST, "malformed_multipart", "%s", err);
        r->is_multipart = 1;
    } else if (media[0] && !is_image_media_type(media)) {
        return http_send_error(r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
                               "Content-Type '%.80s' is not accepted; send image/jpeg, image/png, image/webp or "
                               "application/octet-stream as the body, or multipart/form-data with a file field 'image'",
                               media);
    }
    http_query_param params[HTTP_QUERY_MAX_PARAMS];
    int n_params = 0;
    char bad[HTTP_QUERY_KEY_BYTES + 8], err[200];
    const char *q = r->raw_query ? r->raw_query : "";
    if (http_query_parse(q, strlen(q), params, HTTP_QUERY_MAX_PARAMS, &n_params, bad, sizeof bad, err, sizeof err) != CNN_OK)
        return http_send_error_extra(r, MHD_HTTP_BAD_REQUEST, "bad_parameter",
                                     bad[0] ? json_pack("{s:s}", "parameter", bad) : NULL, NULL, "%s", err);
    for (int i = 0; i < n_params; i++) {
        const http_query_param *p = &params[i];
        if (!strcmp(p->key, "model")) {
            snprintf(r->model_param, sizeof r->model_param, "%s", p->value);
            r->has_model_param = 1;
        } else if (!strcmp(p->key, "top_k")) {
            snprintf(r->top_k_param, sizeof r->top_k_param, "%s", p->value);
            r->has_top_k_param = 1;
        } else {
            return http_send_error_extra(r, MHD_HTTP_BAD_REQUEST, "bad_parameter", json_pack("{s:s}", "parameter", p->key),
                                         NULL, "unknown query parameter '%s' (accepted: model, top_k)", p->key);
        }
    }
    if (!resolve_params(r, &ret)) return ret;
    /* Admission before the body is read, from the expected wait. A model named only in a form field
     * is not known yet: the default model's time stands in. */
    if (!http_admit(r, http_expected_work_us(r->srv, r->preq.slots, r->preq.n_slots), &ret)) return ret;
    return MHD_YES;
}

/* Picks the image and form fields out of a multipart body. Sends the 400 and returns 0 on error. */
static int classify_multipart(http_req *r, enum MHD_Result *ret)
{
    multipart_part parts[MULTIPART_MAX_PARTS];
    int n_parts = 0;
    char err[200];
    if (multipart_parse(r->body, r->n_body, r->boundary, parts, MULTIPART_MAX_PARTS, &n_parts, err, sizeof err) != CNN_OK) {
        *ret = http_send_error(r, MHD_HTTP_BAD_REQUEST, "malformed_multipart", "%s", err);
        return 0;
    }
    const multipart_part *image = NULL;
    char names[256] = "";
    for (int i = 0; i < n_parts; i++) http_utf8_repair(parts[i].name); /* echoed in messages */
    for (int i = 0; i < n_parts; i++) {
        const multipart_part *p = &parts[i];
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s'%.60s'", i ? ", " : "", p->name);
        if (!strcmp(p->name, "image")) {
            if (image) {
                *ret = http_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_parameter", "more than one multipart field 'image'");
                return 0;
            }
            image = p;
        }
    }
    if (!image) {
        *ret = http_send_error_extra(r, MHD_HTTP_BAD_REQUEST, "missing_image", json_pack("{s:s}", "parameter", "image"),
                                     NULL, "no multipart file field named 'image' (fields received: %s)",
                                     n_parts ? names : "none");
        return 0;
    }
    for (int i = 0; i < n_parts; i++) {
        const multipart_part *p = &parts[i];
        char *dst;
        size_t dst_bytes;
        int *has;
        if (p == image) continue;
        if (!strcmp(p->name, "model")) {
            dst = r->model_param, dst_bytes = sizeof r->model_param, has = &r->has_model_param;
        } else if (!strcmp(p->name, "top_k")) {
            dst = r->top_k_param, dst_bytes = sizeof r->top_k_param, has = &r->has_top_k_param;
        } else {
            *ret = http_send_error_extra(r, MHD_HTTP_BAD_REQUEST, "bad_parameter", json_pack("{s:s}", "parameter", p->name),
                                         NULL, "unknown multipart field '%.60s' (accepted: image, model, top_k)", p->name);
            return 0;
        }
        if (*has) {
            *ret = http_send_error_extra(r, MHD_HTTP_BAD_REQUEST, "bad_parameter", json_pack("{s:s}", "parameter", p->name),
                                         NULL, "parameter '%s' given twice (query string and form field)", p->name);
            return 0;
        }
        if (p->n_bytes >= dst_bytes || memchr(p->data, '\0', p->n_bytes)) {
            *ret = http_send_error_extra(r, MHD_HTTP_BAD_REQUEST, "bad_parameter", json_pack("{s:s}", "parameter", p->name),
                                         NULL, "form field '%s' is not a short text value", p->name);
            return 0;
        }
        memcpy(dst, p->data, p->n_bytes);
        dst[p->n_bytes] = '\0';
        *has = 1;
    }
    r->image = image->data;
    r->n_image = image->n_bytes;
    return resolve_params(r, ret);
}

enum MHD_Result classify_answer(http_req *r)
{
    enum MHD_Result ret;
    if (r->is_multipart) {
        if (!classify_multipart(r, &ret)) return ret;
    } else {
        r->image = r->body;
        r->n_image = r->n_body;
    }
    if (!r->n_image)
        return http_send_error_extra(r, MHD_HTTP_BAD_REQUEST, "missing_image", json_pack("{s:s}", "parameter", "image"),
                                     NULL, "no image: send it as the request body or as multipart file field 'image'");
    return http_submit_job(r);
}

/* Answers r from its classification (st, res, err). */
static void classify_respond(http_req *r, cnn_status st, const pipeline_result *rp, const char *err)
{
    http_server *s = r->srv;
    const pipeline_result res = *rp;
    if (st != CNN_OK) {
        int status;
        const char *code;
        http_error_of_status(st, &status, &code);
        http_job_error(r, status, code, st == CNN_ERR_NOMEM ? "out of memory decoding the image; retry shortly" : err);
        return;
    }
    double receive_ms = timing_ms(r->t_start_ns, r->t_body_ns), queue_ms = timing_ms(r->t_enqueue_ns, r->t_dequeue_ns);
    double total_ms = timing_ms(r->t_start_ns, timing_now_ns());
    json_t *o = json_pack("{s:s}", "request_id", r->request_id);
    json_t *answer = pipeline_result_json(&res, r->all, receive_ms, queue_ms, total_ms);
    if (!o || !answer || json_object_update(o, answer)) {
        json_decref(o);
        json_decref(answer);
        http_job_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "busy", "out of memory building the answer; retry shortly");
        return;
    }
    json_decref(answer);
    char *body = json_dumps(o, PIPELINE_JSON_FLAGS);
    json_decref(o);
    int n_timing = snprintf(r->job_timing, sizeof r->job_timing,
                            "receive;dur=%.3f, decode;dur=%.3f, preprocess;dur=%.3f, queue;dur=%.3f, "
                            "inference;dur=%.3f, postprocess;dur=%.3f, total;dur=%.3f",
                            receive_ms, res.decode_ms, res.preprocess_ms, queue_ms, res.inference_ms,
                            res.postprocess_ms, total_ms);
    if (res.batch_size > 1 && n_timing > 0 && (size_t)n_timing < sizeof r->job_timing)
        snprintf(r->job_timing + n_timing, sizeof r->job_timing - (size_t)n_timing, ", batch_wait;dur=%.3f",
                 res.batch_wait_ms);
    metrics_observe_stage(s->mt, METRICS_STAGE_DECODE, r->model_label, res.decode_ms);
    metrics_observe_stage(s->mt, METRICS_STAGE_QUEUE, r->model_label, queue_ms);
    for (int i = 0; i < res.n_results; i++) {
        int label = r->z->entries[r->z->loaded[r->preq.slots[i]]].metrics_label;
        const pipeline_model_result *m = &res.results[i];
        /* Admission's time per job of this model: its own stages plus its share of the decode (and
         * of a batch's inference). */
        http_observe_service(s, r->preq.slots[i],
                             res.decode_ms / res.n_results + m->preprocess_ms +
                                 m->inference_ms / (res.batch_size > 1 ? res.batch_size : 1) + m->postprocess_ms);
        if (m->preprocess_ms > 0) metrics_observe_stage(s->mt, METRICS_STAGE_PREPROCESS, label, m->preprocess_ms);
        metrics_observe_stage(s->mt, METRICS_STAGE_INFERENCE, label, m->inference_ms);
        metrics_observe_stage(s->mt, METRICS_STAGE_POSTPROCESS, label, m->postprocess_ms);
    }
    if (!body) {
        http_job_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "busy", "out of memory building the answer; retry shortly");
        return;
    }
    http_job_finish(r, MHD_HTTP_OK, NULL, body);
}

void classify_run(http_req *r, pipeline_ws *ws)
{
    pipeline_result res;
    char err[256];
    if (!ws) {
        http_job_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "busy", "out of memory for the model contexts; retry shortly");
        return;
    }
    cnn_status st = pipeline_classify(ws, r->image, r->n_image, &r->preq, &res, err, sizeof err);
    classify_respond(r, st, &res, err);
}

void classify_run_batch(http_req **rs, int n, pipeline_ws *ws, int slot)
{
    pipeline_batch_item items[MODEL_MAX_BATCH];
    for (int i = 0; i < n; i++) items[i] = (pipeline_batch_item){.data = rs[i]->image, .n_bytes = rs[i]->n_image,
                                                                 .req = &rs[i]->preq};
    pipeline_classify_batch(ws, slot, items, n);
    for (int i = 0; i < n; i++) classify_respond(rs[i], items[i].st, &items[i].res, items[i].err);
}
