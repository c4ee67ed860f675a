/* HTTP service.
 *
 * Concurrency model: one libmicrohttpd event-loop thread (epoll) does all socket I/O; a fixed pool
 * of inference workers does decoding, preprocessing, inference and the JSON answer. When a classify
 * request's body is complete, the handler reserves a queue slot (none free -> 503 at once), suspends
 * the connection (MHD_suspend_connection) and hands the job to the pool; the worker resumes the
 * connection when the answer is ready. We chose suspend/resume over thread-per-connection because a
 * slow or stalled client then costs one connection slot (bounded by --max-connections and cut by the
 * --timeout idle timeout and request deadline), never a thread, and the event loop never blocks on
 * CPU work, so /healthz, /readyz and /metrics stay responsive under full inference load.
 *
 * Routes live in one table (routes.c); this file matches a request to its route, reads the body
 * within the limits, runs the route's handlers and jobs, and sends every answer. */
#include "http_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_gate.h"
#include "http_parse.h"
#include "routes.h"
#include "timing.h"
#include "version.h"

/* ---------------------------------------------------------------- responses */

/* The Open Inference Protocol routes (under /v2) answer errors as that protocol's {"error": message}. */
static int route_is_oip(const http_route *rt)
{
    return rt && !strncmp(rt->path, "/v2", 3) && (rt->path[3] == '\0' || rt->path[3] == '/');
}

char *http_error_json(const http_req *r, int status, const char *code, const char *message, json_t *extra)
{
    if (route_is_oip(r->route)) {
        json_decref(extra);
        json_t *o = json_pack("{s:s}", "error", message);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        return s;
    }
    json_t *err = json_pack("{s:i,s:s,s:s,s:s}", "status", status, "code", code, "message", message, "request_id",
                            r->request_id);
    if (err && extra) json_object_update(err, extra);
    json_decref(extra);
    json_t *o = err ? json_pack("{s:o}", "error", err) : NULL;
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static enum MHD_Result queue_response(http_req *r, int status, struct MHD_Response *resp, size_t n_bytes,
                                      const char *content_type, const char *server_timing, const char *allow)
{
    if (content_type) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    if (!MHD_get_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (server_timing && server_timing[0]) MHD_add_response_header(resp, "Server-Timing", server_timing);
    if (r->job_infer_header_bytes) {
        char n[24];
        snprintf(n, sizeof n, "%zu", r->job_infer_header_bytes);
        MHD_add_response_header(resp, "Inference-Header-Content-Length", n);
    }
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

enum MHD_Result http_send(http_req *r, int status, char *body, size_t n_bytes, const char *content_type,
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
    return queue_response(r, status, resp, n_bytes, content_type, server_timing, allow);
}

enum MHD_Result http_send_static(http_req *r, int status, const char *body, size_t n_bytes, const char *content_type)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(n_bytes, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    return queue_response(r, status, resp, n_bytes, content_type, NULL, NULL);
}

enum MHD_Result http_queue_response(http_req *r, int status, struct MHD_Response *resp, size_t n_bytes,
                                    const char *content_type)
{
    return queue_response(r, status, resp, n_bytes, content_type, NULL, NULL);
}

enum MHD_Result http_send_json(http_req *r, int status, json_t *o)
{
    /* Reals in answers are float32 values (mean/std): 9 significant digits print them exactly. */
    char *s = o ? json_dumps(o, PIPELINE_JSON_FLAGS) : NULL;
    json_decref(o);
    if (!s) return MHD_NO;
    return http_send(r, status, s, strlen(s), "application/json", NULL, NULL);
}

enum MHD_Result http_send_error_extra(http_req *r, int status, const char *code, json_t *extra, const char *allow,
                                      const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Messages echo client bytes (names, media types, cut at a fixed width): keep them valid UTF-8 so
     * the JSON answer can always be built. */
    http_utf8_repair(msg);
    r->error_code = code;
    char *s = http_error_json(r, status, code, msg, extra);
    if (!s) return MHD_NO;
    return http_send(r, status, s, strlen(s), "application/json", NULL, allow);
}

enum MHD_Result http_send_unknown_model(http_req *r, const char *name)
{
    char loaded[1024];
    zoo_loaded_names(r->z, loaded, sizeof loaded);
    return http_send_error_extra(r, MHD_HTTP_NOT_FOUND, "unknown_model",
                                 json_pack("{s:o}", "loaded_models", zoo_loaded_names_json(r->z)), NULL,
                                 "unknown model '%.64s'; loaded models: %s", name, loaded);
}

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

/* ---------------------------------------------------------------- body intake */

static void receiving_add(http_req *r)
{
    http_server *s = r->srv;
    pthread_mutex_lock(&s->receiving_mu);
    r->recv_prev = NULL;
    r->recv_next = s->receiving;
    if (s->receiving) s->receiving->recv_prev = r;
    s->receiving = r;
    r->in_receiving = 1;
    pthread_mutex_unlock(&s->receiving_mu);
}

static void receiving_remove(http_req *r)
{
    if (!r->in_receiving) return;
    http_server *s = r->srv;
    pthread_mutex_lock(&s->receiving_mu);
    if (r->recv_prev) r->recv_prev->recv_next = r->recv_next;
    else s->receiving = r->recv_next;
    if (r->recv_next) r->recv_next->recv_prev = r->recv_prev;
    r->in_receiving = 0;
    pthread_mutex_unlock(&s->receiving_mu);
}

void http_sweep_receiving(http_server *s)
{
    uint64_t now = timing_now_ns();
    pthread_mutex_lock(&s->receiving_mu);
    for (http_req *r = s->receiving; r; r = r->recv_next) {
        double elapsed_s = (double)(now - r->t_start_ns) / 1e9;
        if (elapsed_s < HTTP_BODY_GRACE_S || r->fd < 0 || atomic_load(&r->cut)) continue;
        char c;
        ssize_t n = recv(r->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        int closed = n == 0; /* EOF before the whole body: it will never come */
        int slow = (double)atomic_load(&r->n_received) < HTTP_MIN_BODY_RATE * elapsed_s;
        if (closed || slow) {
            /* The socket stays open (libmicrohttpd owns it); shutting it down makes the daemon's next
             * read fail, and it ends the request. */
            atomic_store(&r->cut, 1);
            shutdown(r->fd, SHUT_RDWR);
        }
    }
    pthread_mutex_unlock(&s->receiving_mu);
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
static enum MHD_Result body_chunk(http_req *r, const char *data, size_t n)
{
    const serve_config *cfg = r->srv->cfg;
    r->n_seen += n;
    atomic_store(&r->n_received, r->n_seen);
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
    /* The budget counts bytes received, not bytes declared: a client declaring a large body and
     * trickling it holds only what it has sent. */
    if (!budget_take(r, (long long)n)) {
        reject_body(r, MHD_HTTP_SERVICE_UNAVAILABLE, "busy", "too many request bytes buffered; retry shortly");
        return MHD_YES;
    }
    if (r->n_body + n > r->body_cap) {
        /* The declared length is allocated at once (pages are touched only as bytes arrive);
         * without one (chunked), the buffer doubles. */
        size_t cap = r->content_length > 0 && (size_t)r->content_length >= r->n_body + n ? (size_t)r->content_length
                     : r->body_cap                                                        ? r->body_cap
                                                                                          : 64 * 1024;
        while (cap < r->n_body + n) cap *= 2;
        if (cap > (size_t)cfg->max_body_bytes) cap = (size_t)cfg->max_body_bytes;
        uint8_t *grown = realloc(r->body, cap);
        if (!grown) {
            reject_body(r, MHD_HTTP_SERVICE_UNAVAILABLE, "busy", "out of memory; retry shortly");
            return MHD_YES;
        }
        r->body = grown;
        r->body_cap = cap;
    }
    memcpy(r->body + r->n_body, data, n);
    r->n_body += n;
    return MHD_YES;
}

/* The body is complete: answer a rejection found while streaming, else the route's answer. */
static enum MHD_Result body_end(http_req *r)
{
    http_server *s = r->srv;
    receiving_remove(r);
    r->t_body_ns = timing_now_ns();
    metrics_observe_body(s->mt, (size_t)r->n_seen);
    if (r->reject_status) {
        json_t *extra = r->reject_status == MHD_HTTP_CONTENT_TOO_LARGE
                            ? json_pack("{s:I}", "max_body_bytes", (json_int_t)s->cfg->max_body_bytes)
                            : NULL;
        return http_send_error_extra(r, r->reject_status, r->reject_code, extra, NULL, "%s", r->reject_msg);
    }
    return r->route->answer(r);
}

/* ---------------------------------------------------------------- admission, jobs */

#define SERVICE_US_UNMEASURED 50000 /* assumed per model until a job has been measured */

long long http_expected_work_us(const http_server *s, const int *slots, int n_slots)
{
    long long us = 0;
    for (int i = 0; i < n_slots; i++) {
        long long v = atomic_load(&s->service_us[slots[i]]);
        us += v > 0 ? v : SERVICE_US_UNMEASURED;
    }
    return us;
}

void http_observe_service(http_server *s, int slot, double ms)
{
    long long us = (long long)(ms * 1000.0), old = atomic_load(&s->service_us[slot]);
    /* Moving average over ~8 jobs; a lost update between workers only delays it by one job. */
    atomic_store(&s->service_us[slot], old > 0 ? old + (us - old) / 8 : us);
}

int http_admit(http_req *r, long long work_us, enum MHD_Result *ret)
{
    http_server *s = r->srv;
    /* The work already admitted is what this request waits for (its own run time is not waiting). */
    long long ahead = atomic_fetch_add(&s->queued_work_us, work_us);
    long long wait_ms = ahead / s->cfg->n_workers / 1000;
    if (wait_ms > s->cfg->max_queue_wait_ms) {
        atomic_fetch_sub(&s->queued_work_us, work_us);
        *ret = http_send_error_extra(r, MHD_HTTP_SERVICE_UNAVAILABLE, "queue_full",
                                     json_pack("{s:I}", "expected_wait_ms", (json_int_t)wait_ms), NULL,
                                     "expected wait for an inference worker (%lld ms) exceeds %d ms; retry shortly",
                                     wait_ms, s->cfg->max_queue_wait_ms);
        return 0;
    }
    r->admitted_us = work_us;
    return 1;
}

static void admission_release(http_req *r)
{
    if (r->admitted_us) atomic_fetch_sub(&r->srv->queued_work_us, r->admitted_us);
    r->admitted_us = 0;
}

/* Whether the client of a queued job is still there: EOF or a reset means it left (a client that
 * half-closes after its request counts as gone). Pipelined bytes or nothing to read mean it waits. */
static int client_gone(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

enum MHD_Result http_submit_job(http_req *r)
{
    http_server *s = r->srv;
    int rc = workers_reserve(s->pool);
    if (rc < 0) return http_send_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "draining", "the server is shutting down");
    if (rc == 0)
        return http_send_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "queue_full",
                               "all %d inference queue slots are taken; retry shortly", workers_capacity(s->pool));
    r->phase = REQ_QUEUED;
    r->t_enqueue_ns = timing_now_ns();
    /* Suspend before submitting so the worker's resume can never precede the suspend. */
    MHD_suspend_connection(r->conn);
    workers_submit(s->pool, r, r->z, &r->preq);
    return MHD_YES;
}

/* Called on the event loop after the worker resumed the connection. */
static enum MHD_Result job_respond(http_req *r)
{
    char *body = r->job_body;
    r->job_body = NULL;
    r->error_code = r->job_error_code;
    if (!body) return MHD_NO;
    return http_send(r, r->job_status, body, r->job_n_body ? r->job_n_body : strlen(body),
                     r->job_infer_header_bytes ? "application/octet-stream" : "application/json", r->job_timing, NULL);
}

void http_job_finish(http_req *r, int status, const char *error_code, char *body)
{
    admission_release(r);
    r->job_status = status;
    r->job_error_code = error_code;
    r->job_body = body;
    atomic_store_explicit(&r->job_done, 1, memory_order_release);
    /* After this the event loop may complete and free r: touch nothing of it afterwards. */
    MHD_resume_connection(r->conn);
}

void http_job_error(http_req *r, int status, const char *code, const char *msg)
{
    http_job_finish(r, status, code, http_error_json(r, status, code, msg, NULL));
}

static void run_job(void *job, pipeline_ws *ws, void *cls)
{
    (void)cls;
    http_req *r = job;
    r->t_dequeue_ns = timing_now_ns();
    if (r->fd >= 0 && client_gone(r->fd)) {
        /* Nobody would read the answer: skip the work (the connection then closes). */
        http_job_error(r, 499, "client_closed_request", "the client closed the connection before its job ran");
        return;
    }
    r->route->run(r, ws);
}

/* A batch of jobs (workers.c batches only jobs naming one model, i.e. classify jobs): the ones
 * whose client left are answered 499 and dropped, the others run as one batch. */
static void run_job_batch(void **jobs, int n, pipeline_ws *ws, int slot, void *cls)
{
    (void)cls;
    http_req *rs[MODEL_MAX_BATCH];
    int k = 0;
    const uint64_t t = timing_now_ns();
    for (int i = 0; i < n; i++) {
        http_req *r = jobs[i];
        r->t_dequeue_ns = t;
        if (r->fd >= 0 && client_gone(r->fd))
            http_job_error(r, 499, "client_closed_request", "the client closed the connection before its job ran");
        else
            rs[k++] = r;
    }
    if (k == 1)
        rs[0]->route->run(rs[0], ws);
    else if (k > 1)
        classify_run_batch(rs, k, ws, slot);
}

/* Queued jobs at shutdown (drain timeout reached). */
static void cancel_job(void *job, void *cls)
{
    (void)cls;
    http_job_error(job, MHD_HTTP_SERVICE_UNAVAILABLE, "draining", "the server shut down before this request ran");
}

/* ---------------------------------------------------------------- routing */

/* Matches url against a route path: a segment "{name}" takes one non-empty segment, a last "{name*}"
 * the non-empty rest of the path; *arg is where the first of them starts. */
static int path_matches(const char *pattern, const char *url, const char **arg)
{
    *arg = NULL;
    while (*pattern) {
        if (*pattern == '{') {
            size_t n_pattern = strcspn(pattern, "/");
            int rest = n_pattern >= 2 && pattern[n_pattern - 2] == '*';
            size_t n = rest ? strlen(url) : strcspn(url, "/");
            if (!n) return 0;
            if (!*arg) *arg = url;
            url += n;
            pattern += n_pattern;
        } else if (*pattern++ != *url++) {
            return 0;
        }
    }
    return !*url;
}

static int match_route(const char *url, http_req *r)
{
    for (int i = 0; i < http_n_routes; i++) {
        const http_route *rt = &http_routes[i];
        const char *arg = NULL;
        if (path_matches(rt->path, url, &arg) || (rt->alias && !strcmp(rt->alias, url))) {
            r->route = rt;
            r->route_index = i;
            r->path_arg = arg;
            return 1;
        }
    }
    r->route = NULL;
    r->route_index = http_n_routes;
    return 0;
}

/* Whether method is one of the comma-separated methods in allow. */
static int method_allowed(const char *method, const char *allow)
{
    size_t n = strlen(method);
    for (const char *p = allow; *p;) {
        while (*p == ' ' || *p == ',') p++;
        size_t len = strcspn(p, ", ");
        if (len == n && !strncmp(p, method, n)) return 1;
        p += len;
    }
    return 0;
}

static int is_get(const char *method) { return !strcmp(method, "GET") || !strcmp(method, "HEAD"); }

/* "POST /v1/classify, GET /v1/models, ..." from the table. */
static void build_route_list(char *out, size_t out_bytes)
{
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < http_n_routes && n < out_bytes; i++) {
        const http_route *rt = &http_routes[i];
        char method[16];
        snprintf(method, sizeof method, "%.*s", (int)strcspn(rt->allow, ", "), rt->allow);
        n += (size_t)snprintf(out + n, out_bytes - n, "%s%s %s", i ? ", " : "", method, rt->path);
    }
}

typedef struct {
    int n_content_length, differing, n_host, n_te, te_chunked;
    const char *content_length;
} framing_scan;

static enum MHD_Result scan_framing(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                   const char *value, size_t value_size)
{
    (void)kind;
    (void)key_size;
    (void)value_size;
    framing_scan *f = cls;
    if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH)) {
        if (f->n_content_length++ && strcmp(f->content_length, value)) f->differing = 1;
        f->content_length = value;
    } else if (!strcasecmp(key, MHD_HTTP_HEADER_HOST)) {
        f->n_host++;
    } else if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
        f->n_te++;
        f->te_chunked = !strcasecmp(value, "chunked");
    }
    return MHD_YES;
}

/* The framing rules of the gate (http_parse.h), for requests after the first on a kept-alive
 * connection (the gate sees only the first). 0 when acceptable, else the answer was queued. */
static int check_framing(http_req *r, const char *version, enum MHD_Result *ret)
{
    framing_scan f = {0};
    MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, scan_framing, &f);
    if (f.n_te && (f.n_te > 1 || !f.te_chunked))
        *ret = http_send_error(r, MHD_HTTP_NOT_IMPLEMENTED, "unsupported_transfer_encoding",
                               "Transfer-Encoding is not supported (only 'chunked')");
    else if (f.differing)
        *ret = http_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_content_length", "two different Content-Length headers");
    else if (f.n_te && f.n_content_length)
        *ret = http_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_request", "both Transfer-Encoding and Content-Length");
    else if (!strcmp(version, MHD_HTTP_VERSION_1_1) && f.n_host != 1)
        *ret = http_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_request", "%s",
                               f.n_host ? "more than one Host header" : "HTTP/1.1 request without a Host header");
    else
        return 1;
    return 0;
}

static enum MHD_Result start_request(http_req *r, const char *url, const char *method, const char *version)
{
    http_server *s = r->srv;
    enum MHD_Result ret;
    if (!check_framing(r, version, &ret)) return ret;
    if (!match_route(url, r))
        return http_send_error(r, MHD_HTTP_NOT_FOUND, "not_found", "no route %.16s %.100s; routes: %s", method, url,
                               s->route_list);
    const http_route *rt = r->route;
    if (!method_allowed(method, rt->allow))
        return http_send_error_extra(r, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                                     json_pack("{s:s}", "allow", rt->allow), rt->allow,
                                     "%.16s is not allowed on %.100s; use %s", method, url, rt->allow);
    if (is_get(method)) {
        r->phase = REQ_GET;
        return rt->start ? rt->start(r) : MHD_YES;
    }
    if (atomic_load(&s->draining))
        return http_send_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "draining",
                               "the server is shutting down; retry on another instance");
    const char *clen = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    r->content_length = -1;
    if (clen && config_parse_int(clen, 0, INT64_MAX, &r->content_length) != CNN_OK) r->content_length = -1;
    if (r->content_length > s->cfg->max_body_bytes)
        return http_send_error_extra(r, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large",
                                     json_pack("{s:I}", "max_body_bytes", (json_int_t)s->cfg->max_body_bytes), NULL,
                                     "request body of %lld bytes exceeds the limit of %lld bytes",
                                     (long long)r->content_length, (long long)s->cfg->max_body_bytes);
    r->phase = REQ_RECEIVING;
    receiving_add(r);
    return rt->start ? rt->start(r) : MHD_YES;
}

/* libmicrohttpd's URI callback, called with the raw request target before anything is decoded: the
 * request starts here so the query string can be parsed by http_query_parse (strict, fuzzed). */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)conn;
    http_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    const char *q = strchr(uri, '?');
    r->raw_query = strdup(q ? q + 1 : "");
    if (!r->raw_query) {
        free(r);
        return NULL;
    }
    return r;
}

static http_conn *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Keeps the list of the daemon's connections; libmicrohttpd reports a close before it closes the
 * socket, so a connection in the list still owns its descriptor. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    http_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        atomic_fetch_add(&s->n_connections, 1);
        http_conn *c = calloc(1, sizeof *c);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = c;
        if (!c) return;
        c->fd = ci ? ci->connect_fd : -1;
        atomic_init(&c->busy, 0);
        atomic_init(&c->t_idle_ns, timing_now_ns());
        pthread_mutex_lock(&s->conns_mu);
        c->next = s->conns;
        if (s->conns) s->conns->prev = c;
        s->conns = c;
        pthread_mutex_unlock(&s->conns_mu);
        return;
    }
    atomic_fetch_sub(&s->n_connections, 1);
    http_conn *c = *socket_context;
    if (!c) return;
    pthread_mutex_lock(&s->conns_mu);
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    pthread_mutex_unlock(&s->conns_mu);
    free(c);
    *socket_context = NULL;
}

int http_evict_idle(http_server *s)
{
    /* Idle for at least a second: a connection just handed over has not been parsed yet. */
    uint64_t cutoff = timing_now_ns() - 1000000000ull;
    pthread_mutex_lock(&s->conns_mu);
    http_conn *oldest = NULL;
    for (http_conn *c = s->conns; c; c = c->next)
        if (!atomic_load(&c->busy) && !c->evicted && c->fd >= 0 && atomic_load(&c->t_idle_ns) < cutoff &&
            (!oldest || atomic_load(&c->t_idle_ns) < atomic_load(&oldest->t_idle_ns)))
            oldest = c;
    if (oldest) {
        oldest->evicted = 1;
        shutdown(oldest->fd, SHUT_RDWR); /* the daemon sees the close and ends the connection */
    }
    pthread_mutex_unlock(&s->conns_mu);
    return oldest != NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    http_server *s = cls;
    http_req *r = *con_cls;
    if (!r || !r->srv) {
        if (!r && !(r = calloc(1, sizeof *r))) return MHD_NO;
        *con_cls = r;
        atomic_fetch_add(&s->in_flight, 1);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        r->fd = ci ? ci->connect_fd : -1;
        http_conn *c = conn_of(conn);
        if (c) atomic_store(&c->busy, 1);
        r->srv = s;
        r->conn = conn;
        pthread_mutex_lock(&s->zoo_mu);
        r->z = zoo_acquire(s->z);
        pthread_mutex_unlock(&s->zoo_mu);
        r->t_start_ns = timing_now_ns();
        r->model_label = METRICS_MODEL_NONE;
        r->route_index = http_n_routes;
        atomic_init(&r->job_done, 0);
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        http_utf8_repair(r->method);
        http_utf8_repair(r->path);
        assign_request_id(s, r);
        return start_request(r, url, method, version);
    }
    switch (r->phase) {
    case REQ_GET:
        if (*upload_data_size) {
            *upload_data_size = 0; /* a body on GET is ignored */
            return MHD_YES;
        }
        return r->route->answer(r);
    case REQ_RECEIVING:
        if (*upload_data_size) {
            size_t n = *upload_data_size;
            *upload_data_size = 0;
            return body_chunk(r, upload_data, n);
        }
        return body_end(r);
    case REQ_QUEUED:
        if (!atomic_load_explicit(&r->job_done, memory_order_acquire)) return MHD_YES;
        return job_respond(r);
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


/* MHD's completion callback: metrics, the access-log line, cleanup. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    http_server *s = cls;
    http_req *r = *con_cls;
    http_conn *c = conn_of(conn);
    if (c) {
        atomic_store(&c->t_idle_ns, timing_now_ns());
        atomic_store(&c->busy, 0);
    }
    if (!r) return;
    *con_cls = NULL;
    if (!r->srv) { /* the URI callback ran, the request never started */
        free(r->raw_query);
        free(r);
        return;
    }
    receiving_remove(r);
    admission_release(r);
    /* A job ended (run, or dropped for a gone client) but MHD found the connection dead on resume,
     * before the answer could be queued: the client left first, so it counts as 499 like nginx's. */
    if (!r->status && r->phase == REQ_QUEUED && atomic_load_explicit(&r->job_done, memory_order_acquire)) {
        r->status = 499;
        r->error_code = "client_closed_request";
    }
    double total_ms = timing_ms(r->t_start_ns, timing_now_ns());
    if (r->status) {
        metrics_count_request(s->mt, r->route_index, r->model_label, r->status);
        if (r->route && r->route->run && r->status == MHD_HTTP_OK) {
            if (r->t_body_ns) metrics_observe_stage(s->mt, METRICS_STAGE_RECEIVE, r->model_label, timing_ms(r->t_start_ns, r->t_body_ns));
            metrics_observe_stage(s->mt, METRICS_STAGE_TOTAL, r->model_label, total_ms);
        }
    }
    if (!r->status || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) metrics_count_aborted(s->mt);
    json_t *fields = json_pack("{s:s,s:s,s:s,s:i,s:I,s:f,s:s}", "method", r->method, "path", r->path, "model",
                               r->model_label == METRICS_MODEL_NONE ? "-" : metrics_model_name(s->mt, r->model_label), "status", r->status, "bytes", (json_int_t)r->n_sent,
                               "total_ms", round(total_ms * 1000.0) / 1000.0, "request_id", r->request_id);
    if (fields && r->error_code) json_object_set_new(fields, "error", json_string(r->error_code));
    if (fields && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        json_object_set_new(fields, "outcome",
                            json_string(atomic_load(&r->cut) ? "body_too_slow_or_cut" : termination_name(toe)));
    log_event(s->lg, LOG_LEVEL_INFO, "access", fields);
    body_release(r);
    free(r->job_body);
    zoo_release(r->z);
    free(r->raw_query);
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
    http_utf8_repair(msg);
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
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, cfg->max_connections < 4096 ? cfg->max_connections : 4096) != 0) {
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
    pthread_mutex_init(&s->zoo_mu, NULL);
    pthread_mutex_init(&s->reload_mu, NULL);
    s->z = zoo_acquire(z);
    snprintf(s->default_model, sizeof s->default_model, "%s", z->entries[default_entry].name);
    atomic_init(&s->ever_ready, 0);
    s->lg = lg;
    s->listen_fd = -1;
    atomic_init(&s->draining, 0);
    pthread_mutex_init(&s->receiving_mu, NULL);
    pthread_mutex_init(&s->conns_mu, NULL);
    atomic_init(&s->in_flight, 0);
    atomic_init(&s->buffered_bytes, 0);
    atomic_init(&s->next_id, 1);
    if (getrandom(&s->id_prefix, sizeof s->id_prefix, GRND_NONBLOCK) != (ssize_t)sizeof s->id_prefix)
        s->id_prefix = (unsigned)getpid() ^ (unsigned)timing_now_ns();
    cnn_status st;
    if ((st = open_listener(cfg, &s->listen_fd, &s->port, err, err_bytes)) != CNN_OK) goto fail;
    for (int i = 0; i < http_n_routes && i < HTTP_MAX_ROUTES; i++) s->route_names[i] = http_routes[i].path;
    build_route_list(s->route_list, sizeof s->route_list);
    if (http_n_routes > HTTP_MAX_ROUTES) {
        st = cnn_err(err, err_bytes, CNN_ERR_ARG, "%d routes; raise HTTP_MAX_ROUTES", http_n_routes);
        goto fail;
    }
    if ((st = metrics_init(&s->mt, cfg->n_workers, cfg->queue_depth, s->route_names, http_n_routes)) != CNN_OK) {
        cnn_err(err, err_bytes, st, "out of memory");
        goto fail;
    }
    for (int i = 0; i < z->n_entries; i++) z->entries[i].metrics_label = metrics_model_label(s->mt, z->entries[i].name);
    const workers_batch batch = {cfg->batch_max, cfg->batch_delay_ms, cfg->batch_models};
    if ((st = workers_init(&s->pool, cfg->n_workers, cfg->threads_per_worker, cfg->queue_depth, z, &batch, run_job,
                           run_job_batch, cancel_job, s, err, err_bytes)) != CNN_OK)
        goto fail;
    s->daemon = MHD_start_daemon(
        MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
            MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC,
        0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, (void *)lg,
        /* The gate keeps the count at --max-connections; the headroom lets a new request in while an
         * evicted idle connection is still closing. */
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections + 64u, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->timeout_s,
        /* Above the gate's header limit, so a header block the gate passed always fits. */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(2 * HTTP_MAX_HEAD_BYTES), MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (!s->daemon) {
        st = cnn_err(err, err_bytes, CNN_ERR_IO, "cannot start the HTTP daemon on %s:%d", cfg->host, s->port);
        goto fail;
    }
    if ((st = http_gate_start(&s->gate, s, err, err_bytes)) != CNN_OK) goto fail;
    log_event(lg, LOG_LEVEL_INFO, "listening",
              json_pack("{s:s,s:i,s:i,s:i,s:i,s:I,s:i}", "host", cfg->host, "port", s->port, "workers", cfg->n_workers,
                        "threads_per_worker", cfg->threads_per_worker, "queue", cfg->queue_depth, "max_body_bytes", (json_int_t)cfg->max_body_bytes, "timeout_s",
                        cfg->timeout_s));
    *out = s;
    return CNN_OK;
fail:
    workers_free(s->pool);
    if (s->daemon) MHD_stop_daemon(s->daemon);
    metrics_free(s->mt);
    if (s->listen_fd >= 0) close(s->listen_fd);
    zoo_release(s->z);
    pthread_mutex_destroy(&s->zoo_mu);
    pthread_mutex_destroy(&s->reload_mu);
    pthread_mutex_destroy(&s->receiving_mu);
    pthread_mutex_destroy(&s->conns_mu);
    free(s);
    return st;
}

int http_default_entry(const http_server *s, const zoo *z)
{
    int e = zoo_find(z, s->default_model);
    if (e >= 0 && z->entries[e].m) return e;
    e = zoo_find(z, "mobilenet_v3_large");
    return e >= 0 && z->entries[e].m ? e : z->loaded[0];
}

cnn_status http_server_reload(http_server *s, json_t **summary, char *err, size_t err_bytes)
{
    if (summary) *summary = NULL;
    pthread_mutex_lock(&s->reload_mu);
    pthread_mutex_lock(&s->zoo_mu);
    zoo *old = zoo_acquire(s->z);
    pthread_mutex_unlock(&s->zoo_mu);
    zoo *z = NULL;
    cnn_status st = zoo_reload(&z, old, s->lg, err, err_bytes);
    zoo_release(old);
    if (st != CNN_OK) {
        pthread_mutex_unlock(&s->reload_mu);
        log_event(s->lg, LOG_LEVEL_ERROR, "reload_failed", json_pack("{s:s,s:s}", "msg", err, "kept", "previous models"));
        return st;
    }
    for (int i = 0; i < z->n_entries; i++) z->entries[i].metrics_label = metrics_model_label(s->mt, z->entries[i].name);
    json_t *failed = json_array();
    for (int i = 0; failed && i < z->n_entries; i++)
        if (z->entries[i].failed)
            json_array_append_new(failed, json_pack("{s:s,s:s}", "model", z->entries[i].name, "why", z->entries[i].why));
    json_t *o = json_pack("{s:I,s:o,s:o,s:i,s:i}", "generation", (json_int_t)z->generation, "loaded",
                          zoo_loaded_names_json(z), "failed", failed, "reloaded", z->n_loaded_now, "kept", z->n_kept);
    /* Workers first, so that most have built their new workspaces by the time requests arrive. */
    workers_set_zoo(s->pool, z);
    pthread_mutex_lock(&s->zoo_mu);
    old = s->z;
    s->z = z; /* our reference from zoo_reload passes to the server */
    pthread_mutex_unlock(&s->zoo_mu);
    zoo_release(old);
    pthread_mutex_unlock(&s->reload_mu);
    log_event(s->lg, LOG_LEVEL_INFO, "reloaded", o ? json_deep_copy(o) : NULL);
    if (summary) *summary = o;
    else json_decref(o);
    return CNN_OK;
}

int http_server_port(const http_server *s) { return s->port; }

int http_server_in_flight(const http_server *s) { return atomic_load(&s->in_flight); }

void http_server_begin_drain(http_server *s)
{
    atomic_store(&s->draining, 1);
    /* The gate answers (via the daemon: 503 draining) the clients already in the kernel's backlog,
     * then shuts the listening socket down so new ones are refused at once. */
    http_gate_drain(s->gate);
}

void http_server_stop(http_server *s)
{
    if (!s) return;
    /* Every suspended connection belongs to a queued or running job; freeing the pool resumes them
     * all (cancelled ones with a 503), which MHD_stop_daemon requires. */
    workers_free(s->pool);
    http_gate_stop(s->gate);
    MHD_stop_daemon(s->daemon);
    close(s->listen_fd);
    metrics_free(s->mt);
    zoo_release(s->z);
    pthread_mutex_destroy(&s->zoo_mu);
    pthread_mutex_destroy(&s->reload_mu);
    pthread_mutex_destroy(&s->receiving_mu);
    pthread_mutex_destroy(&s->conns_mu);
    free(s);
}
