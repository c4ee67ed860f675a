/* HTTP service.
 *
 * Concurrency model: one libmicrohttpd event-loop thread (epoll) does all socket I/O; a fixed pool
 * of inference workers does decoding, preprocessing, inference and the JSON answer. When a classify
 * request's body is complete, the handler reserves a queue slot (none free -> 503 at once), suspends
 * the connection (MHD_suspend_connection) and hands the job to the pool; the worker resumes the
 * connection when the answer is ready. We chose suspend/resume over thread-per-connection because a
 * slow or stalled client then costs one connection slot (bounded by --max-connections and cut by the
 * --timeout idle timeout and request deadline), never a thread, and the event loop never blocks on
 * CPU work, so /healthz, /readyz and /metrics stay responsive under full inference load. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "metrics.h"
#include "multipart.h"
#include "openapi.h"
#include "pipeline.h"
#include "timing.h"
#include "version.h"
#include "workers.h"

struct http_server {
    const serve_config *cfg;
    zoo *z;
    const logger *lg;
    int default_entry;
    metrics *mt;
    workers *pool;
    struct MHD_Daemon *daemon;
    int listen_fd;   /* ours until MHD_start_daemon takes it, ours again after MHD_quiesce_daemon */
    int quiesced;
    int port;
    atomic_int draining;
    atomic_int in_flight;
    atomic_llong buffered_bytes; /* request bodies held in memory, all connections */
    atomic_ullong next_id;
    unsigned id_prefix;
};

/* REQ_GET: a GET/HEAD route, answered on the handler's second call (once the request is fully
 * read) so the connection stays reusable; answering on the first call makes MHD close it. */
typedef enum { REQ_GET = 0, REQ_RECEIVING, REQ_QUEUED, REQ_RESPONDED } req_phase;

typedef struct {
    metrics_route route;
    const char *allow;
    const char *name; /* /v1/models/{name}: points into MHD's copy of the URL */
} route_match;

/* One HTTP request, from the first handler call to MHD's completion callback. */
typedef struct {
    http_server *srv;
    struct MHD_Connection *conn;
    req_phase phase;
    metrics_route route;
    route_match match;
    int model_label;           /* metrics/log label: zoo entry, METRICS_MODEL_ALL or _NONE */
    char method[16];
    char path[160];
    char request_id[72];
    uint64_t t_start_ns, t_body_ns, t_enqueue_ns, t_dequeue_ns;

    /* body */
    uint8_t *body;
    size_t n_body, body_cap;
    long long n_budget;        /* bytes of srv->buffered_bytes this request holds */
    uint64_t n_seen;           /* body bytes received, kept or not */
    int reject_status;         /* set while streaming: answer this once the body has ended */
    const char *reject_code;
    char reject_msg[160];
    int is_multipart;
    char boundary[80];

    /* parameters: from the query string at the start, form fields at the end */
    char model_param[72];
    char top_k_param[24];
    int has_model_param, has_top_k_param;

    /* job, handed to a worker */
    const uint8_t *image;
    size_t n_image;
    int all;
    pipeline_request preq;
    atomic_int job_done;
    int job_status;            /* written by the worker before job_done */
    char *job_body;
    char job_timing[320];
    const char *job_error_code;

    /* what was sent */
    int status;
    size_t n_sent;
    const char *error_code;
} http_req;

/* ---------------------------------------------------------------- responses */

static char *error_json(const http_req *r, int status, const char *code, const char *message, json_t *extra)
{
    json_t *err = json_pack("{s:i,s:s,s:s,s:s}", "status", status, "code", code, "message", message, "request_id",
                            r->request_id);
    if (err && extra) json_object_update(err, extra);
    json_decref(extra);
    json_t *o = err ? json_pack("{s:o}", "error", err) : NULL;
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* Queues body (malloc'd; ownership passes to MHD, or it is freed here) with the common headers. */
static enum MHD_Result send_response(http_req *r, int status, char *body, size_t n_bytes, const char *content_type,
                                     const char *server_timing, const char *allow)
{
    struct MHD_Response *resp;
    if (body) {
        resp = MHD_create_response_from_buffer(n_bytes, body, MHD_RESPMEM_MUST_FREE);
        if (!resp) free(body);
    } else {
        n_bytes = 0;
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (server_timing && server_timing[0]) MHD_add_response_header(resp, "Server-Timing", server_timing);
    if (allow) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    if (status == MHD_HTTP_SERVICE_UNAVAILABLE) MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    /* While draining, ask keep-alive clients to go so the drain can finish. */
    if (atomic_load(&r->srv->draining)) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->phase = REQ_RESPONDED;
    r->status = status;
    r->n_sent = n_bytes;
    return ret;
}

static enum MHD_Result send_json(http_req *r, int status, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s) return MHD_NO;
    return send_response(r, status, s, strlen(s), "application/json", NULL, NULL);
}

/* Error answer; extra (stolen, may be NULL) adds fields to the error object. */
static enum MHD_Result send_error_extra(http_req *r, int status, const char *code, json_t *extra, const char *allow,
                                        const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static enum MHD_Result send_error_extra(http_req *r, int status, const char *code, json_t *extra, const char *allow,
                                        const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->error_code = code;
    char *s = error_json(r, status, code, msg, extra);
    if (!s) return MHD_NO;
    return send_response(r, status, s, strlen(s), "application/json", NULL, allow);
}

#define send_error(r, status, code, ...) send_error_extra(r, status, code, NULL, NULL, __VA_ARGS__)

/* ---------------------------------------------------------------- request ids, budget */

/* Accepts a client's X-Request-Id when it is short and plain; otherwise makes one. */
static void assign_request_id(http_server *s, http_req *r)
{
    const char *id = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id");
    size_t n = id ? strlen(id) : 0;
    int ok = n >= 1 && n <= 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') || (id[i] >= '0' && id[i] <= '9') ||
             strchr("-_.:", id[i]) != NULL;
    if (ok) snprintf(r->request_id, sizeof r->request_id, "%s", id);
    else snprintf(r->request_id, sizeof r->request_id, "%08x-%08llx", s->id_prefix,
                  (unsigned long long)atomic_fetch_add(&s->next_id, 1));
}

/* Takes n more bytes of the shared body budget; 0 when that would exceed --max-buffered-bytes. */
static int budget_take(http_req *r, long long n)
{
    http_server *s = r->srv;
    long long now = atomic_fetch_add(&s->buffered_bytes, n) + n;
    if (now > s->cfg->max_buffered_bytes) {
        atomic_fetch_sub(&s->buffered_bytes, n);
        return 0;
    }
    r->n_budget += n;
    return 1;
}

static void body_release(http_req *r)
{
    free(r->body);
    r->body = NULL;
    r->n_body = r->body_cap = 0;
    if (r->n_budget) atomic_fetch_sub(&r->srv->buffered_bytes, r->n_budget);
    r->n_budget = 0;
}

/* ---------------------------------------------------------------- GET routes */

static json_t *model_states_json(const zoo *z)
{
    json_t *o = json_object();
    for (int i = 0; o && i < z->n_loaded; i++)
        json_object_set_new(o, z->entries[z->loaded[i]].arch->name,
                            json_string(zoo_state_name(zoo_entry_state(z, z->loaded[i]))));
    return o;
}

static enum MHD_Result handle_readyz(http_req *r)
{
    http_server *s = r->srv;
    int draining = atomic_load(&s->draining), ready = zoo_all_ready(s->z);
    const char *status = draining ? "draining" : ready ? "ready" : "warming_up";
    return send_json(r, !draining && ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                     json_pack("{s:s,s:o}", "status", status, "models", model_states_json(s->z)));
}

static enum MHD_Result send_unknown_model(http_req *r, const char *name)
{
    char loaded[256];
    zoo_loaded_names(r->srv->z, loaded, sizeof loaded);
    return send_error_extra(r, MHD_HTTP_NOT_FOUND, "unknown_model",
                            json_pack("{s:o}", "loaded_models", zoo_loaded_names_json(r->srv->z)), NULL,
                            "unknown model '%.64s'; loaded models: %s", name, loaded);
}

static enum MHD_Result handle_models(http_req *r, const char *name)
{
    http_server *s = r->srv;
    if (name) {
        int e = zoo_find(s->z, name);
        if (e < 0) return send_unknown_model(r, name);
        return send_json(r, MHD_HTTP_OK, zoo_entry_json(s->z, e, s->cfg->n_workers));
    }
    json_t *list = json_array();
    for (int i = 0; list && i < s->z->n_entries; i++) json_array_append_new(list, zoo_entry_json(s->z, i, s->cfg->n_workers));
    return send_json(r, MHD_HTTP_OK,
                     json_pack("{s:o,s:s,s:i,s:i,s:s}", "models", list, "default_model",
                               s->z->entries[s->default_entry].arch->name, "workers", s->cfg->n_workers,
                               "threads_per_worker", s->cfg->threads_per_worker, "version", CNNSERVE_VERSION));
}

static enum MHD_Result handle_metrics(http_req *r)
{
    http_server *s = r->srv;
    size_t n = 0;
    char *text = metrics_render(s->mt, atomic_load(&s->in_flight), workers_depth(s->pool), atomic_load(&s->draining), &n);
    if (!text) return MHD_NO;
    return send_response(r, MHD_HTTP_OK, text, n, "text/plain; version=0.0.4; charset=utf-8", NULL, NULL);
}

static enum MHD_Result handle_openapi(http_req *r)
{
    size_t n;
    const char *text = openapi_yaml(&n);
    struct MHD_Response *resp = MHD_create_response_from_buffer(n, (void *)text, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/yaml");
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    enum MHD_Result ret = MHD_queue_response(r->conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    r->phase = REQ_RESPONDED;
    r->status = MHD_HTTP_OK;
    r->n_sent = n;
    return ret;
}

/* ---------------------------------------------------------------- classify: parameters */

typedef struct {
    http_req *r;
    char bad[72];
} query_scan;

/* Copies model/top_k from the query string; remembers the first unknown parameter. */
static enum MHD_Result scan_query_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    query_scan *q = cls;
    http_req *r = q->r;
    if (!strcmp(key, "model")) {
        snprintf(r->model_param, sizeof r->model_param, "%s", value ? value : "");
        r->has_model_param = 1;
    } else if (!strcmp(key, "top_k")) {
        snprintf(r->top_k_param, sizeof r->top_k_param, "%s", value ? value : "");
        r->has_top_k_param = 1;
    } else if (!q->bad[0]) {
        snprintf(q->bad, sizeof q->bad, "%s", key);
    }
    return MHD_YES;
}

/* Resolves model/top_k into r->preq. Sends the 400/404 and returns 0 when they are bad. */
static int resolve_params(http_req *r, enum MHD_Result *ret)
{
    http_server *s = r->srv;
    const zoo *z = s->z;
    int entry = s->default_entry;
    r->all = 0;
    if (r->has_model_param) {
        if (!r->model_param[0]) {
            *ret = send_error_extra(r, MHD_HTTP_BAD_REQUEST, "bad_parameter", json_pack("{s:s}", "parameter", "model"),
                                    NULL, "parameter 'model' is empty; use a model name, an alias or 'all'");
            return 0;
        }
        if (!strcasecmp(r->model_param, "all")) {
            r->all = 1;
        } else {
            entry = zoo_find(z, r->model_param);
            if (entry < 0 || !z->entries[entry].m) {
                r->model_label = METRICS_MODEL_NONE;
                *ret = send_unknown_model(r, r->model_param);
                return 0;
            }
        }
    }
    int64_t top_k = 5;
    if (r->has_top_k_param && config_parse_int(r->top_k_param, 1, PIPELINE_TOPK_MAX, &top_k) != CNN_OK) {
        *ret = send_error_extra(r, MHD_HTTP_BAD_REQUEST, "bad_parameter", json_pack("{s:s}", "parameter", "top_k"),
                                NULL, "parameter 'top_k' must be an integer in 1..%d, got '%.20s'", PIPELINE_TOPK_MAX,
                                r->top_k_param);
        return 0;
    }
    r->preq.top_k = (int)top_k;
    r->preq.max_pixels = s->cfg->max_pixels;
    r->preq.n_slots = 0;
    for (int i = 0; i < z->n_loaded; i++)
        if (r->all || z->loaded[i] == entry) r->preq.slots[r->preq.n_slots++] = i;
    r->model_label = r->all ? METRICS_MODEL_ALL : entry;
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

/* First call of POST /v1/classify: everything decidable from the headers, before the body is read. */
static enum MHD_Result classify_start(http_req *r)
{
    http_server *s = r->srv;
    enum MHD_Result ret;
    if (atomic_load(&s->draining))
        return send_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "draining", "the server is shutting down; retry on another instance");

    const char *ctype = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    char media[96];
    multipart_media_type(ctype, media, sizeof media);
    if (!strcmp(media, "multipart/form-data")) {
        char err[160];
        if (multipart_boundary(ctype, r->boundary, sizeof r->boundary, err, sizeof err) != CNN_OK)
            return send_error(r, MHD_HTTP_BAD_REQUEST, "malformed_multipart", "%s", err);
        r->is_multipart = 1;
    } else if (media[0] && !is_image_media_type(media)) {
        return send_error(r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
                          "Content-Type '%.80s' is not accepted; send image/jpeg, image/png, image/webp or "
                          "application/octet-stream as the body, or multipart/form-data with a file field 'image'",
                          media);
    }

    const char *clen = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    int64_t content_length = -1;
    if (clen && config_parse_int(clen, 0, INT64_MAX, &content_length) != CNN_OK) content_length = -1;
    if (content_length > s->cfg->max_body_bytes)
        return send_error_extra(r, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large",
                                json_pack("{s:I}", "max_body_bytes", (json_int_t)s->cfg->max_body_bytes), NULL,
                                "request body of %lld bytes exceeds the limit of %lld bytes", (long long)content_length,
                                (long long)s->cfg->max_body_bytes);

    query_scan q = {.r = r};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, scan_query_arg, &q);
    if (q.bad[0])
        return send_error_extra(r, MHD_HTTP_BAD_REQUEST, "bad_parameter", json_pack("{s:s}", "parameter", q.bad), NULL,
                                "unknown query parameter '%s' (accepted: model, top_k)", q.bad);
    if (!resolve_params(r, &ret)) return ret;

    if (content_length > 0) {
        if (!budget_take(r, content_length))
            return send_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "busy", "too many request bytes buffered; retry shortly");
        r->body = malloc((size_t)content_length);
        if (!r->body) return send_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "busy", "out of memory; retry shortly");
        r->body_cap = (size_t)content_length;
    }
    r->phase = REQ_RECEIVING;
    return MHD_YES;
}

/* Stop keeping the body; the rest is read and dropped, and status is answered at its end. */
static void reject_body(http_req *r, int status, const char *code, const char *msg)
{
    r->reject_status = status;
    r->reject_code = code;
    snprintf(r->reject_msg, sizeof r->reject_msg, "%s", msg);
    body_release(r);
}

/* A chunk of the body. MHD_NO closes the connection. */
static enum MHD_Result classify_chunk(http_req *r, const char *data, size_t n)
{
    http_server *s = r->srv;
    const serve_config *cfg = s->cfg;
    r->n_seen += n;
    /* The whole request, not just each read, must finish within --timeout: a client trickling bytes
     * slower than the idle timeout would otherwise hold its connection forever. */
    if (timing_ms(r->t_start_ns, timing_now_ns()) > 1000.0 * cfg->timeout_s) return MHD_NO;
    if (r->reject_status) {
        /* Drain at most another limit's worth so the client can read the answer; then hang up. */
        return r->n_seen > 2 * (uint64_t)cfg->max_body_bytes ? MHD_NO : MHD_YES;
    }
    if (r->n_body + n > (uint64_t)cfg->max_body_bytes) {
        char msg[160];
        snprintf(msg, sizeof msg, "request body exceeds the limit of %lld bytes", (long long)cfg->max_body_bytes);
        reject_body(r, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large", msg);
        return MHD_YES;
    }
    if (r->n_body + n > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 64 * 1024;
        while (cap < r->n_body + n) cap *= 2;
        if (cap > (size_t)cfg->max_body_bytes) cap = (size_t)cfg->max_body_bytes;
        uint8_t *grown = NULL;
        if (budget_take(r, (long long)(cap - r->body_cap))) {
            grown = realloc(r->body, cap);
            if (!grown) {
                atomic_fetch_sub(&s->buffered_bytes, (long long)(cap - r->body_cap));
                r->n_budget -= (long long)(cap - r->body_cap);
            }
        }
        if (!grown) {
            reject_body(r, MHD_HTTP_SERVICE_UNAVAILABLE, "busy", "too many request bytes buffered; retry shortly");
            return MHD_YES;
        }
        r->body = grown;
        r->body_cap = cap;
    }
    memcpy(r->body + r->n_body, data, n);
    r->n_body += n;
    return MHD_YES;
}

/* Picks the image and form fields out of a multipart body. Sends the 400 and returns 0 on error. */
static int classify_multipart(http_req *r, enum MHD_Result *ret)
{
    multipart_part parts[MULTIPART_MAX_PARTS];
    int n_parts = 0;
    char err[200];
    if (multipart_parse(r->body, r->n_body, r->boundary, parts, MULTIPART_MAX_PARTS, &n_parts, err, sizeof err) != CNN_OK) {
        *ret = send_error(r, MHD_HTTP_BAD_REQUEST, "malformed_multipart", "%s", err);
        return 0;
    }
    const multipart_part *image = NULL;
    char names[256] = "";
    for (int i = 0; i < n_parts; i++) {
        const multipart_part *p = &parts[i];
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s'%.60s'", i ? ", " : "", p->name);
        if (!strcmp(p->name, "image")) {
            if (image) {
                *ret = send_error(r, MHD_HTTP_BAD_REQUEST, "bad_parameter", "more than one multipart field 'image'");
                return 0;
            }
            image = p;
        }
    }
    if (!image) {
        *ret = send_error_extra(r, MHD_HTTP_BAD_REQUEST, "missing_image", json_pack("{s:s}", "parameter", "image"), NULL,
                                "no multipart file field named 'image' (fields received: %s)", n_parts ? names : "none");
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
            *ret = send_error_extra(r, MHD_HTTP_BAD_REQUEST, "bad_parameter", json_pack("{s:s}", "parameter", p->name),
                                    NULL, "unknown multipart field '%.60s' (accepted: image, model, top_k)", p->name);
            return 0;
        }
        if (*has) {
            *ret = send_error_extra(r, MHD_HTTP_BAD_REQUEST, "bad_parameter", json_pack("{s:s}", "parameter", p->name),
                                    NULL, "parameter '%s' given twice (query string and form field)", p->name);
            return 0;
        }
        if (p->n_bytes >= dst_bytes || memchr(p->data, '\0', p->n_bytes)) {
            *ret = send_error_extra(r, MHD_HTTP_BAD_REQUEST, "bad_parameter", json_pack("{s:s}", "parameter", p->name),
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

/* The body is complete: validate, then queue the job and suspend the connection. */
static enum MHD_Result classify_finish(http_req *r)
{
    http_server *s = r->srv;
    enum MHD_Result ret;
    r->t_body_ns = timing_now_ns();
    metrics_observe_body(s->mt, (size_t)r->n_seen);
    if (r->reject_status) {
        json_t *extra = r->reject_status == MHD_HTTP_CONTENT_TOO_LARGE
                            ? json_pack("{s:I}", "max_body_bytes", (json_int_t)s->cfg->max_body_bytes)
                            : NULL;
        return send_error_extra(r, r->reject_status, r->reject_code, extra, NULL, "%s", r->reject_msg);
    }
    if (r->is_multipart) {
        if (!classify_multipart(r, &ret)) return ret;
    } else {
        r->image = r->body;
        r->n_image = r->n_body;
    }
    if (!r->n_image)
        return send_error_extra(r, MHD_HTTP_BAD_REQUEST, "missing_image", json_pack("{s:s}", "parameter", "image"), NULL,
                                "no image: send it as the request body or as multipart file field 'image'");
    int rc = workers_reserve(s->pool);
    if (rc < 0) return send_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "draining", "the server is shutting down");
    if (rc == 0)
        return send_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "queue_full",
                          "all %d inference queue slots are taken; retry shortly", workers_capacity(s->pool));
    r->phase = REQ_QUEUED;
    r->t_enqueue_ns = timing_now_ns();
    /* Suspend before submitting so the worker's resume can never precede the suspend. */
    MHD_suspend_connection(r->conn);
    workers_submit(s->pool, r);
    return MHD_YES;
}

/* Called on the event loop after the worker resumed the connection. */
static enum MHD_Result classify_respond(http_req *r)
{
    char *body = r->job_body;
    r->job_body = NULL;
    r->error_code = r->job_error_code;
    if (!body) return MHD_NO;
    return send_response(r, r->job_status, body, strlen(body), "application/json", r->job_timing, NULL);
}

/* ---------------------------------------------------------------- worker side */

static void job_finish(http_req *r, int status, const char *error_code, char *body)
{
    r->job_status = status;
    r->job_error_code = error_code;
    r->job_body = body;
    atomic_store_explicit(&r->job_done, 1, memory_order_release);
    /* After this the event loop may complete and free r: touch nothing of it afterwards. */
    MHD_resume_connection(r->conn);
}

static void job_error(http_req *r, int status, const char *code, const char *msg)
{
    job_finish(r, status, code, error_json(r, status, code, msg, NULL));
}

static void run_job(void *job, pipeline_ws *ws, void *cls)
{
    http_req *r = job;
    http_server *s = cls;
    r->t_dequeue_ns = timing_now_ns();
    pipeline_result res;
    char err[256];
    cnn_status st = pipeline_classify(ws, r->image, r->n_image, &r->preq, &res, err, sizeof err);
    if (st != CNN_OK) {
        int status;
        const char *code;
        pipeline_error_code(st, &status, &code);
        job_error(r, status, code, st == CNN_ERR_NOMEM ? "out of memory decoding the image; retry shortly" : err);
        return;
    }
    double receive_ms = timing_ms(r->t_start_ns, r->t_body_ns), queue_ms = timing_ms(r->t_enqueue_ns, r->t_dequeue_ns);
    double total_ms = timing_ms(r->t_start_ns, timing_now_ns());
    json_t *o = json_pack("{s:s}", "request_id", r->request_id);
    json_t *answer = pipeline_result_json(&res, r->all, receive_ms, queue_ms, total_ms);
    if (!o || !answer || json_object_update(o, answer)) {
        json_decref(o);
        json_decref(answer);
        job_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "busy", "out of memory building the answer; retry shortly");
        return;
    }
    json_decref(answer);
    char *body = json_dumps(o, PIPELINE_JSON_FLAGS);
    json_decref(o);
    snprintf(r->job_timing, sizeof r->job_timing,
             "receive;dur=%.3f, decode;dur=%.3f, preprocess;dur=%.3f, queue;dur=%.3f, inference;dur=%.3f, "
             "postprocess;dur=%.3f, total;dur=%.3f",
             receive_ms, res.decode_ms, res.preprocess_ms, queue_ms, res.inference_ms, res.postprocess_ms, total_ms);
    metrics_observe_stage(s->mt, METRICS_STAGE_DECODE, r->model_label, res.decode_ms);
    metrics_observe_stage(s->mt, METRICS_STAGE_QUEUE, r->model_label, queue_ms);
    for (int i = 0; i < res.n_results; i++) {
        int label = s->z->loaded[r->preq.slots[i]];
        const pipeline_model_result *m = &res.results[i];
        if (m->preprocess_ms > 0) metrics_observe_stage(s->mt, METRICS_STAGE_PREPROCESS, label, m->preprocess_ms);
        metrics_observe_stage(s->mt, METRICS_STAGE_INFERENCE, label, m->inference_ms);
        metrics_observe_stage(s->mt, METRICS_STAGE_POSTPROCESS, label, m->postprocess_ms);
    }
    if (!body) {
        job_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "busy", "out of memory building the answer; retry shortly");
        return;
    }
    job_finish(r, MHD_HTTP_OK, NULL, body);
}

/* Queued jobs at shutdown (drain timeout reached). */
static void cancel_job(void *job, void *cls)
{
    (void)cls;
    job_error(job, MHD_HTTP_SERVICE_UNAVAILABLE, "draining", "the server shut down before this request ran");
}

/* ---------------------------------------------------------------- routing */

static int match_route(const char *url, route_match *m)
{
    static const struct {
        const char *path;
        metrics_route route;
        const char *allow;
    } table[] = {
        {"/v1/classify", METRICS_ROUTE_CLASSIFY, "POST"}, {"/classify", METRICS_ROUTE_CLASSIFY, "POST"},
        {"/v1/models", METRICS_ROUTE_MODELS, "GET, HEAD"}, {"/healthz", METRICS_ROUTE_HEALTHZ, "GET, HEAD"},
        {"/readyz", METRICS_ROUTE_READYZ, "GET, HEAD"},     {"/metrics", METRICS_ROUTE_METRICS, "GET, HEAD"},
        {"/openapi.yaml", METRICS_ROUTE_OPENAPI, "GET, HEAD"},
    };
    m->name = NULL;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(url, table[i].path)) {
            m->route = table[i].route;
            m->allow = table[i].allow;
            return 1;
        }
    static const char prefix[] = "/v1/models/";
    if (!strncmp(url, prefix, sizeof prefix - 1) && url[sizeof prefix - 1] && !strchr(url + sizeof prefix - 1, '/')) {
        m->route = METRICS_ROUTE_MODEL;
        m->allow = "GET, HEAD";
        m->name = url + sizeof prefix - 1;
        return 1;
    }
    m->route = METRICS_ROUTE_UNKNOWN;
    m->allow = NULL;
    return 0;
}

static int method_allowed(const char *method, const char *allow)
{
    if (!strcmp(allow, "POST")) return !strcmp(method, "POST");
    return !strcmp(method, "GET") || !strcmp(method, "HEAD");
}

static enum MHD_Result start_request(http_req *r, const char *url, const char *method)
{
    route_match *m = &r->match;
    if (!match_route(url, m))
        return send_error(r, MHD_HTTP_NOT_FOUND, "not_found",
                          "no route %.16s %.100s; routes: POST /v1/classify, GET /v1/models, GET /v1/models/{name}, "
                          "GET /healthz, GET /readyz, GET /metrics, GET /openapi.yaml",
                          method, url);
    r->route = m->route;
    if (!method_allowed(method, m->allow))
        return send_error_extra(r, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                                json_pack("{s:s}", "allow", m->allow), m->allow, "%.16s is not allowed on %.100s; use %s",
                                method, url, m->allow);
    if (m->route == METRICS_ROUTE_CLASSIFY) return classify_start(r);
    r->phase = REQ_GET;
    return MHD_YES;
}

static enum MHD_Result answer_get(http_req *r)
{
    switch (r->match.route) {
    case METRICS_ROUTE_MODELS: return handle_models(r, NULL);
    case METRICS_ROUTE_MODEL: return handle_models(r, r->match.name);
    case METRICS_ROUTE_HEALTHZ: return send_json(r, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
    case METRICS_ROUTE_READYZ: return handle_readyz(r);
    case METRICS_ROUTE_METRICS: return handle_metrics(r);
    case METRICS_ROUTE_OPENAPI: return handle_openapi(r);
    default: return MHD_NO;
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    (void)version;
    http_server *s = cls;
    http_req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        *con_cls = r;
        atomic_fetch_add(&s->in_flight, 1);
        r->srv = s;
        r->conn = conn;
        r->t_start_ns = timing_now_ns();
        r->model_label = METRICS_MODEL_NONE;
        r->route = METRICS_ROUTE_UNKNOWN;
        atomic_init(&r->job_done, 0);
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        assign_request_id(s, r);
        return start_request(r, url, method);
    }
    switch (r->phase) {
    case REQ_GET:
        if (*upload_data_size) {
            *upload_data_size = 0; /* a body on GET is ignored */
            return MHD_YES;
        }
        return answer_get(r);
    case REQ_RECEIVING:
        if (*upload_data_size) {
            size_t n = *upload_data_size;
            *upload_data_size = 0;
            return classify_chunk(r, upload_data, n);
        }
        return classify_finish(r);
    case REQ_QUEUED:
        if (!atomic_load_explicit(&r->job_done, memory_order_acquire)) return MHD_YES;
        return classify_respond(r);
    case REQ_RESPONDED:
        *upload_data_size = 0; /* an answer is queued already: drop any body */
        return MHD_YES;
    }
    return MHD_NO;
}

static const char *termination_name(enum MHD_RequestTerminationCode toe)
{
    switch (toe) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK: return "ok";
    case MHD_REQUEST_TERMINATED_WITH_ERROR: return "error";
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED: return "timeout";
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN: return "shutdown";
    case MHD_REQUEST_TERMINATED_READ_ERROR: return "read_error";
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT: return "client_abort";
    }
    return "error";
}

static const char *label_name(const http_server *s, int label)
{
    if (label == METRICS_MODEL_ALL) return "all";
    if (label >= 0 && label < s->z->n_entries) return s->z->entries[label].arch->name;
    return "-";
}

/* MHD's completion callback: metrics, the access-log line, cleanup. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    http_server *s = cls;
    http_req *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    double total_ms = timing_ms(r->t_start_ns, timing_now_ns());
    if (r->status) {
        metrics_count_request(s->mt, r->route, r->model_label, r->status);
        if (r->route == METRICS_ROUTE_CLASSIFY && r->status == MHD_HTTP_OK) {
            if (r->t_body_ns) metrics_observe_stage(s->mt, METRICS_STAGE_RECEIVE, r->model_label, timing_ms(r->t_start_ns, r->t_body_ns));
            metrics_observe_stage(s->mt, METRICS_STAGE_TOTAL, r->model_label, total_ms);
        }
    }
    if (!r->status || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) metrics_count_aborted(s->mt);
    json_t *fields = json_pack("{s:s,s:s,s:s,s:i,s:I,s:f,s:s}", "method", r->method, "path", r->path, "model",
                               label_name(s, r->model_label), "status", r->status, "bytes", (json_int_t)r->n_sent,
                               "total_ms", round(total_ms * 1000.0) / 1000.0, "request_id", r->request_id);
    if (fields && r->error_code) json_object_set_new(fields, "error", json_string(r->error_code));
    if (fields && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        json_object_set_new(fields, "outcome", json_string(termination_name(toe)));
    log_event(s->lg, LOG_LEVEL_INFO, "access", fields);
    body_release(r);
    free(r->job_body);
    free(r);
    atomic_fetch_sub(&s->in_flight, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    const logger *lg = cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) msg[--n] = '\0';
    log_event(lg, LOG_LEVEL_WARN, "microhttpd", json_pack("{s:s}", "msg", msg));
}

/* ---------------------------------------------------------------- lifecycle */

/* Binds and listens ourselves so "port taken" gets a precise message and port 0 its real number. */
static cnn_status open_listener(const serve_config *cfg, int *fd_out, int *port_out, char *err, size_t err_bytes)
{
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(cfg->host, port, &hints, &ai);
    if (rc) return cnn_err(err, err_bytes, CNN_ERR_ARG, "cannot resolve --host '%s': %s", cfg->host, gai_strerror(rc));
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(ai);
        return cnn_err(err, err_bytes, CNN_ERR_IO, "socket: %s", strerror(errno));
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
        int e = errno;
        close(fd);
        freeaddrinfo(ai);
        return cnn_err(err, err_bytes, CNN_ERR_IO, "cannot listen on %s:%d: %s%s", cfg->host, cfg->port, strerror(e),
                       e == EADDRINUSE ? " (is another server running on this port?)" : "");
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t ss_len = sizeof ss;
    *port_out = cfg->port;
    if (getsockname(fd, (struct sockaddr *)&ss, &ss_len) == 0)
        *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    return CNN_OK;
}

cnn_status http_server_start(http_server **out, const serve_config *cfg, zoo *z, const logger *lg, int default_entry,
                             char *err, size_t err_bytes)
{
    *out = NULL;
    http_server *s = calloc(1, sizeof *s);
    if (!s) return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
    s->cfg = cfg;
    s->z = z;
    s->lg = lg;
    s->default_entry = default_entry;
    s->listen_fd = -1;
    atomic_init(&s->draining, 0);
    atomic_init(&s->in_flight, 0);
    atomic_init(&s->buffered_bytes, 0);
    atomic_init(&s->next_id, 1);
    if (getrandom(&s->id_prefix, sizeof s->id_prefix, GRND_NONBLOCK) != (ssize_t)sizeof s->id_prefix)
        s->id_prefix = (unsigned)getpid() ^ (unsigned)timing_now_ns();
    cnn_status st;
    if ((st = open_listener(cfg, &s->listen_fd, &s->port, err, err_bytes)) != CNN_OK) goto fail;
    if ((st = metrics_init(&s->mt, z, cfg->n_workers, cfg->queue_depth)) != CNN_OK) {
        cnn_err(err, err_bytes, st, "out of memory");
        goto fail;
    }
    if ((st = workers_init(&s->pool, cfg->n_workers, cfg->threads_per_worker, cfg->queue_depth, z, run_job, cancel_job, s, err, err_bytes)) != CNN_OK)
        goto fail;
    s->daemon = MHD_start_daemon(
        MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        on_request, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, (void *)lg, MHD_OPTION_LISTEN_SOCKET, s->listen_fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)cfg->timeout_s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (!s->daemon) {
        st = cnn_err(err, err_bytes, CNN_ERR_IO, "cannot start the HTTP daemon on %s:%d", cfg->host, s->port);
        goto fail;
    }
    log_event(lg, LOG_LEVEL_INFO, "listening",
              json_pack("{s:s,s:i,s:i,s:i,s:i,s:I,s:i}", "host", cfg->host, "port", s->port, "workers", cfg->n_workers,
                        "threads_per_worker", cfg->threads_per_worker, "queue", cfg->queue_depth, "max_body_bytes", (json_int_t)cfg->max_body_bytes, "timeout_s",
                        cfg->timeout_s));
    *out = s;
    return CNN_OK;
fail:
    workers_free(s->pool);
    metrics_free(s->mt);
    if (s->listen_fd >= 0) close(s->listen_fd);
    free(s);
    return st;
}

int http_server_port(const http_server *s) { return s->port; }

int http_server_in_flight(const http_server *s) { return atomic_load(&s->in_flight); }

void http_server_begin_drain(http_server *s)
{
    atomic_store(&s->draining, 1);
    /* MHD stops accepting; shutting the socket down makes the kernel refuse new connections now
     * (the descriptor itself must stay open until MHD_stop_daemon). */
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET) {
        /* Clients whose handshake already completed sit in the kernel's backlog; shutting the socket
         * down would reset them. Hand each to MHD instead, which answers it (503 draining). */
        for (;;) {
            struct sockaddr_storage addr;
            socklen_t addr_len = sizeof(addr);
            int c = accept4(fd, (struct sockaddr *)&addr, &addr_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (c < 0) {
                if (errno == EINTR) continue;
                break; /* EAGAIN: backlog empty (the listening socket is non-blocking) */
            }
            if (MHD_add_connection(s->daemon, c, (struct sockaddr *)&addr, addr_len) != MHD_YES) close(c);
        }
        shutdown(fd, SHUT_RDWR);
        s->quiesced = 1;
    }
}

void http_server_stop(http_server *s)
{
    if (!s) return;
    /* Every suspended connection belongs to a queued or running job; freeing the pool resumes them
     * all (cancelled ones with a 503), which MHD_stop_daemon requires. */
    workers_free(s->pool);
    MHD_stop_daemon(s->daemon);
    if (s->quiesced) close(s->listen_fd); /* otherwise MHD_stop_daemon closed it */
    metrics_free(s->mt);
    free(s);
}
