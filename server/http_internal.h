/* Internals shared by http.c (libmicrohttpd lifecycle, routing, body intake, jobs, responses) and the
 * route handlers. Adding a route = one line in routes.c plus its handler in its own route_*.c file. */
#ifndef CNN_HTTP_INTERNAL_H
#define CNN_HTTP_INTERNAL_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "metrics.h"
#include "pipeline.h"
#include "workers.h"

#define HTTP_MAX_ROUTES 32

struct http_server {
    const serve_config *cfg;
    pthread_mutex_t zoo_mu;      /* guards z: taken briefly to acquire or swap it */
    zoo *z;                      /* current model generation (a reference); requests use r->z */
    pthread_mutex_t reload_mu;   /* one reload at a time */
    char default_model[ZOO_NAME_BYTES]; /* the model of requests that name none (while it is loaded) */
    atomic_int ever_ready;       /* /readyz stays 200 across reloads once every model was warm */
    const logger *lg;
    metrics *mt;
    workers *pool;
    struct MHD_Daemon *daemon;
    int listen_fd;   /* the gate accepts on it; closed by http_server_stop */
    int port;
    atomic_int draining;
    atomic_int in_flight;
    atomic_llong buffered_bytes; /* request body bytes received and held in memory, all connections */
    atomic_ullong next_id;
    unsigned id_prefix;
    struct http_gate *gate;      /* owns the listening socket; hands complete headers to the daemon */
    atomic_int n_connections;    /* connections the daemon holds */
    pthread_mutex_t conns_mu;    /* guards the list of the daemon's connections */
    struct http_conn *conns;
    pthread_mutex_t receiving_mu; /* guards the list of requests receiving a body (the gate sweeps it) */
    struct http_req *receiving;
    /* admission: work admitted and not yet done, and each loaded model's measured time per job
     * (moving average, microseconds), indexed by zoo slot */
    atomic_llong queued_work_us;
    atomic_llong service_us[PIPELINE_MAX_MODELS];
    const char *route_names[HTTP_MAX_ROUTES]; /* metrics labels: the table's paths */
    char route_list[512];        /* "POST /v1/classify, GET /v1/models, ..." for the 404 message */
};

typedef struct http_req http_req;

/* One connection held by the daemon (its socket context), to find idle kept-alive ones. */
typedef struct http_conn {
    int fd;
    atomic_int busy;       /* a request is in progress */
    atomic_ullong t_idle_ns; /* when the last request completed (or the connection arrived) */
    int evicted;
    struct http_conn *prev, *next;
} http_conn;

/* The daemon holds --max-connections connections and a request is complete: shuts down the socket
 * of the connection idle longest between kept-alive requests so the new one gets its place.
 * 1 when one was found. */
int http_evict_idle(http_server *s);

/* MHD_NO closes the connection without an answer: only for out-of-memory. */
typedef enum MHD_Result (*http_handler)(http_req *r);
/* Worker side of a job queued with http_submit_job; ends with exactly one http_job_finish/_error. */
typedef void (*http_job_fn)(http_req *r, pipeline_ws *ws);

typedef struct {
    const char *path;    /* exact path; a segment "{name}" matches one non-empty segment, a last "{name*}"
                          * the non-empty rest of the path (the first of them: r->path_arg) */
    const char *alias;   /* another exact path for the same route, or NULL */
    const char *allow;   /* accepted methods, sent as the Allow header: "GET, HEAD" or "POST" */
    http_handler start;  /* optional: headers read, body not yet; may answer at once (e.g. 415, 503) */
    http_handler answer; /* the request is complete; a POST body is in r->body / r->n_body */
    http_job_fn run;     /* optional: the worker side of http_submit_job */
} http_route;

/* The route table (routes.c): the router, the 404 message and the metrics labels all read it. */
extern const http_route http_routes[];
extern const int http_n_routes;

/* REQ_GET: a GET/HEAD route, answered on the handler's second call (once the request is fully
 * read) so the connection stays reusable; answering on the first call makes MHD close it. */
typedef enum { REQ_GET = 0, REQ_RECEIVING, REQ_QUEUED, REQ_RESPONDED } req_phase;

/* One HTTP request, from the first handler call to MHD's completion callback. */
struct http_req {
    http_server *srv;
    struct MHD_Connection *conn;
    req_phase phase;
    const http_route *route;   /* NULL: no route matched */
    int route_index;           /* metrics label: index into http_routes, http_n_routes = unknown */
    const char *path_arg;      /* the first "{...}" segment, up to the next '/' or the end: points into
                                * MHD's copy of the URL */
    zoo *z;                    /* the model generation this request uses from start to end (a reference) */
    int model_label;           /* metrics/log label: metrics_model_label, METRICS_MODEL_ALL or _NONE */
    char method[16];
    char path[160];
    char *raw_query;           /* the undecoded query string (after '?'), "" when none; malloc'd */
    int fd;                    /* the connection's socket, to see whether a queued job's client left */
    long long admitted_us;     /* this request's share of srv->queued_work_us */
    char request_id[72];
    uint64_t t_start_ns, t_body_ns, t_enqueue_ns, t_dequeue_ns;

    /* body: the budget holds exactly the bytes received and kept */
    uint8_t *body;
    size_t n_body, body_cap;
    long long n_budget;        /* bytes of srv->buffered_bytes this request holds */
    uint64_t n_seen;           /* body bytes received, kept or not */
    int64_t content_length;    /* declared, -1 when absent (chunked) */
    struct http_req *recv_prev, *recv_next; /* in srv->receiving while the body is being read */
    int in_receiving;
    atomic_ullong n_received;  /* n_seen, readable by the gate's sweep */
    atomic_int cut;            /* the sweep shut the socket down (too slow, or the client half-closed) */
    int reject_status;         /* set while streaming: answer this once the body has ended */
    const char *reject_code;
    char reject_msg[160];

    /* classify: parameters from the query string at the start, form fields at the end */
    int is_multipart;
    char boundary[80];
    char model_param[72];
    char top_k_param[24];
    int has_model_param, has_top_k_param;
    const uint8_t *image;
    size_t n_image;
    int all;
    pipeline_request preq;

    /* Open Inference Protocol: the model's entry in z; Inference-Header-Content-Length of the request,
     * -1 when absent */
    int model_entry;
    int64_t infer_header_bytes;

    /* job, handed to a worker */
    atomic_int job_done;
    int job_status;            /* written by the worker before job_done */
    char *job_body;
    size_t job_n_body;             /* bytes of job_body; 0: a JSON string (its strlen) */
    size_t job_infer_header_bytes; /* >0: job_body is that much JSON, then binary tensor data */
    char job_timing[320];
    const char *job_error_code;

    /* what was sent */
    int status;
    size_t n_sent;
    const char *error_code;
};

/* Queues body (malloc'd; ownership passes to MHD, or it is freed here) with the common headers:
 * Content-Type, X-Request-Id, Cache-Control: no-store, Retry-After on 503, Connection: close while
 * draining. */
enum MHD_Result http_send(http_req *r, int status, char *body, size_t n_bytes, const char *content_type,
                          const char *server_timing, const char *allow);
/* The same for a body that lives as long as the program (not copied, not freed). */
enum MHD_Result http_send_static(http_req *r, int status, const char *body, size_t n_bytes,
                                 const char *content_type);
/* Queues a response the caller built (ownership passes here) with the common headers; its own
 * Cache-Control, if any, replaces no-store. content_type may be NULL (e.g. 304). */
enum MHD_Result http_queue_response(http_req *r, int status, struct MHD_Response *resp, size_t n_bytes,
                                    const char *content_type);
/* Sends o (stolen) as compact JSON. */
enum MHD_Result http_send_json(http_req *r, int status, json_t *o);
/* Error answer {"error": {status, code, message, request_id, ...extra}} ({"error": message} on the
 * Open Inference Protocol routes under /v2); extra (stolen, may be NULL) adds fields; allow (may be
 * NULL) sets the Allow header. */
enum MHD_Result http_send_error_extra(http_req *r, int status, const char *code, json_t *extra, const char *allow,
                                      const char *fmt, ...) __attribute__((format(printf, 6, 7)));
#define http_send_error(r, status, code, ...) http_send_error_extra(r, status, code, NULL, NULL, __VA_ARGS__)
/* The error body alone (malloc'd JSON), for answers built on a worker. */
char *http_error_json(const http_req *r, int status, const char *code, const char *message, json_t *extra);

/* Entry of generation z for requests that name no model: --default-model while loaded, else
 * mobilenet_v3_large when loaded, else the first loaded model. */
int http_default_entry(const http_server *s, const zoo *z);

/* 404 unknown_model with the loaded model names. */
enum MHD_Result http_send_unknown_model(http_req *r, const char *name);

/* Admission, before the body is read: takes work_us of expected worker time when the expected wait
 * (queued work / workers) stays within --max-queue-wait; otherwise answers 503 queue_full and
 * returns 0 (*ret set). */
int http_admit(http_req *r, long long work_us, enum MHD_Result *ret);
/* Expected worker time of one job on zoo slots[0..n_slots), from the measured averages. */
long long http_expected_work_us(const http_server *s, const int *slots, int n_slots);
/* Folds one measured job time of zoo slot into its average. */
void http_observe_service(http_server *s, int slot, double ms);

/* Called by the gate's sweep about once a second: shuts down the sockets of requests whose body
 * arrives slower than HTTP_MIN_BODY_RATE after HTTP_BODY_GRACE_S, or whose client closed its side
 * before sending the whole body; libmicrohttpd then ends them at once instead of at --timeout. */
#define HTTP_MIN_BODY_RATE 1024 /* bytes per second */
#define HTTP_BODY_GRACE_S 5
void http_sweep_receiving(http_server *s);

/* Queues r for its route's run function on a worker and suspends the connection; answers 503 itself
 * when the queue cannot take it. */
enum MHD_Result http_submit_job(http_req *r);
/* Worker side: the answer is ready (body malloc'd JSON; NULL makes MHD close the connection). */
void http_job_finish(http_req *r, int status, const char *error_code, char *body);
void http_job_error(http_req *r, int status, const char *code, const char *msg);

#endif
