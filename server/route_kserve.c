/* The Open Inference Protocol routes (KServe v2 REST): health, server and model metadata, model
 * readiness and inference. The protocol itself is in kserve.c; here it meets the HTTP server: the
 * inference body is read within the /v1/classify limits, queued on the same workers, and parsed and
 * run there (never on the event loop). Errors on these routes are {"error": message}. */
#include "routes.h"

#include <stdio.h>
#include <string.h>

#include "kserve.h"
#include "timing.h"

/* The route's path, parsed again for the model name and version (the table matched its form). */
static int path_of(http_req *r, kserve_path *p, int *entry, enum MHD_Result *ret)
{
    char err[400];
    *entry = -1;
    if (!kserve_parse_path(r->path, p)) {
        *ret = http_send_error(r, MHD_HTTP_NOT_FOUND, "unknown_model", "model name too long: %.100s", r->path);
        return 0;
    }
    if (p->kind != KSERVE_MODEL && p->kind != KSERVE_MODEL_READY && p->kind != KSERVE_INFER) return 1;
    *entry = kserve_find_model(r->z, p, err, sizeof err);
    if (*entry < 0) {
        *ret = http_send_error(r, MHD_HTTP_NOT_FOUND, "unknown_model", "%s", err);
        return 0;
    }
    r->model_label = r->z->entries[*entry].metrics_label;
    r->model_entry = *entry;
    return 1;
}

enum MHD_Result kserve_get_answer(http_req *r)
{
    http_server *s = r->srv;
    const zoo *z = r->z;
    kserve_path p;
    int entry;
    enum MHD_Result ret;
    if (!path_of(r, &p, &entry, &ret)) return ret;
    int ready = !atomic_load(&s->draining) && (entry < 0 ? zoo_all_ready(z) : zoo_entry_state(z, entry) == ZOO_STATE_READY);
    int status = ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
    switch (p.kind) {
    case KSERVE_LIVE: return http_send_json(r, MHD_HTTP_OK, json_pack("{s:b}", "live", 1));
    case KSERVE_READY: return http_send_json(r, status, json_pack("{s:b}", "ready", ready));
    case KSERVE_SERVER: return http_send_json(r, MHD_HTTP_OK, kserve_server_metadata_json());
    case KSERVE_MODEL: return http_send_json(r, MHD_HTTP_OK, kserve_model_metadata_json(z, entry));
    case KSERVE_MODEL_READY:
        return http_send_json(r, status, json_pack("{s:s,s:b}", "name", z->entries[entry].name, "ready", ready));
    case KSERVE_INFER: break;
    }
    return MHD_NO;
}

/* Headers of POST .../infer: the model must exist; Inference-Header-Content-Length (the binary
 * tensor data extension) must fit the body. */
enum MHD_Result kserve_infer_start(http_req *r)
{
    kserve_path p;
    int entry;
    enum MHD_Result ret;
    if (!path_of(r, &p, &entry, &ret)) return ret;
    r->infer_header_bytes = -1;
    const char *ihcl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Inference-Header-Content-Length");
    if (ihcl) {
        int64_t max = r->content_length >= 0 ? r->content_length : r->srv->cfg->max_body_bytes;
        if (config_parse_int(ihcl, 0, max, &r->infer_header_bytes) != CNN_OK)
            return http_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                                   "Inference-Header-Content-Length '%.24s' is not an integer in 0..%lld (the body "
                                   "length)",
                                   ihcl, (long long)max);
    }
    /* Admission before the body is read; the batch size is not known yet, one item stands in. */
    int slot = zoo_slot(r->z, entry);
    if (!http_admit(r, http_expected_work_us(r->srv, &slot, 1), &ret)) return ret;
    return MHD_YES;
}

enum MHD_Result kserve_infer_answer(http_req *r)
{
    if (!r->n_body)
        return http_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_request", "empty body: send an inference request object");
    return http_submit_job(r);
}

void kserve_infer_run(http_req *r, pipeline_ws *ws)
{
    http_server *s = r->srv;
    if (!ws) {
        http_job_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "busy", "out of memory for the model contexts; retry shortly");
        return;
    }
    kserve_answer a;
    kserve_infer(ws, r->z, r->model_entry, r->body, r->n_body, r->infer_header_bytes, s->cfg->max_pixels, &a);
    double receive_ms = timing_ms(r->t_start_ns, r->t_body_ns), queue_ms = timing_ms(r->t_enqueue_ns, r->t_dequeue_ns);
    double total_ms = timing_ms(r->t_start_ns, timing_now_ns());
    snprintf(r->job_timing, sizeof r->job_timing,
             "receive;dur=%.3f, decode;dur=%.3f, preprocess;dur=%.3f, queue;dur=%.3f, inference;dur=%.3f, "
             "postprocess;dur=%.3f, total;dur=%.3f",
             receive_ms, a.decode_ms, a.preprocess_ms, queue_ms, a.inference_ms, a.postprocess_ms, total_ms);
    if (a.status == MHD_HTTP_OK) {
        /* Admission's time per job of this model: one item's share of the work. */
        http_observe_service(s, zoo_slot(r->z, r->model_entry),
                             (a.decode_ms + a.preprocess_ms + a.inference_ms + a.postprocess_ms) / a.n_items);
        metrics_observe_stage(s->mt, METRICS_STAGE_QUEUE, r->model_label, queue_ms);
        if (a.decode_ms > 0) metrics_observe_stage(s->mt, METRICS_STAGE_DECODE, r->model_label, a.decode_ms);
        if (a.preprocess_ms > 0) metrics_observe_stage(s->mt, METRICS_STAGE_PREPROCESS, r->model_label, a.preprocess_ms);
        metrics_observe_stage(s->mt, METRICS_STAGE_INFERENCE, r->model_label, a.inference_ms);
        metrics_observe_stage(s->mt, METRICS_STAGE_POSTPROCESS, r->model_label, a.postprocess_ms);
    }
    r->job_n_body = a.n_body;
    r->job_infer_header_bytes = a.n_json < a.n_body ? a.n_json : 0;
    http_job_finish(r, a.status, a.error_code, a.body);
}
