#include "metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "version.h"

#define N_MODEL_LABELS (METRICS_MAX_MODEL_NAMES + 2)

static const int tracked_codes[] = {200, 400, 403, 404, 405, 408, 413, 414, 415, 422, 431, 499, 500, 501, 503, 505};
#define N_CODES ((int)(sizeof tracked_codes / sizeof tracked_codes[0]) + 1) /* + "other" */

static const double stage_bounds_s[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define N_STAGE_BOUNDS ((int)(sizeof stage_bounds_s / sizeof stage_bounds_s[0]))
static const double body_bounds[] = {1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864};
#define N_BODY_BOUNDS ((int)(sizeof body_bounds / sizeof body_bounds[0]))

static const char *const stage_names[METRICS_N_STAGES] = {
    "receive", "decode", "preprocess", "queue", "inference", "postprocess", "total",
};

typedef struct {
    atomic_uint_least64_t buckets[N_STAGE_BOUNDS + 1]; /* per bucket (not cumulative); last = +Inf */
    atomic_uint_least64_t count;
    atomic_uint_least64_t sum_ns;
} stage_hist;

struct metrics {
    pthread_mutex_t names_mu;  /* serializes registrations; readers use n_names (release/acquire) */
    char names[METRICS_MAX_MODEL_NAMES][ZOO_NAME_BYTES];
    atomic_int n_names;
    int n_workers, queue_capacity;
    const char *const *route_names;
    int n_routes;
    atomic_uint_least64_t *requests; /* [n_routes + 1 (unknown)][N_MODEL_LABELS][N_CODES] */
    atomic_uint_least64_t aborted;
    stage_hist stages[METRICS_N_STAGES][N_MODEL_LABELS];
    atomic_uint_least64_t body_buckets[N_BODY_BOUNDS + 1];
    atomic_uint_least64_t body_count, body_sum;
};

cnn_status metrics_init(metrics **out, int n_workers, int queue_capacity, const char *const *route_names,
                        int n_routes)
{
    /* calloc zero-fills, which is a valid initial state for these lock-free atomics. */
    metrics *mt = calloc(1, sizeof *mt);
    if (!mt) return CNN_ERR_NOMEM;
    mt->requests = calloc((size_t)(n_routes + 1) * N_MODEL_LABELS * N_CODES, sizeof *mt->requests);
    if (!mt->requests) {
        free(mt);
        return CNN_ERR_NOMEM;
    }
    mt->route_names = route_names;
    mt->n_routes = n_routes;
    pthread_mutex_init(&mt->names_mu, NULL);
    mt->n_workers = n_workers;
    mt->queue_capacity = queue_capacity;
    *out = mt;
    return CNN_OK;
}

void metrics_free(metrics *mt)
{
    if (!mt) return;
    pthread_mutex_destroy(&mt->names_mu);
    free(mt->requests);
    free(mt);
}

int metrics_model_label(metrics *mt, const char *name)
{
    pthread_mutex_lock(&mt->names_mu);
    int n = atomic_load_explicit(&mt->n_names, memory_order_relaxed), label = METRICS_MODEL_NONE;
    for (int i = 0; i < n && label == METRICS_MODEL_NONE; i++)
        if (!strcmp(mt->names[i], name)) label = i;
    if (label == METRICS_MODEL_NONE && n < METRICS_MAX_MODEL_NAMES) {
        snprintf(mt->names[n], sizeof mt->names[n], "%s", name);
        atomic_store_explicit(&mt->n_names, n + 1, memory_order_release);
        label = n;
    }
    pthread_mutex_unlock(&mt->names_mu);
    return label;
}

static atomic_uint_least64_t *request_counter(metrics *mt, int route, int model_label, int code)
{
    return &mt->requests[((size_t)route * N_MODEL_LABELS + (size_t)model_label) * N_CODES + (size_t)code];
}

static int code_index(int status)
{
    for (int i = 0; i < N_CODES - 1; i++)
        if (tracked_codes[i] == status) return i;
    return N_CODES - 1;
}

static int clamp_label(int model_label)
{
    return model_label < 0 || model_label >= N_MODEL_LABELS ? METRICS_MODEL_NONE : model_label;
}

void metrics_count_request(metrics *mt, int route, int model_label, int status)
{
    if (route < 0 || route > mt->n_routes) route = mt->n_routes;
    atomic_fetch_add_explicit(request_counter(mt, route, clamp_label(model_label), code_index(status)), 1,
                              memory_order_relaxed);
}

void metrics_count_aborted(metrics *mt) { atomic_fetch_add_explicit(&mt->aborted, 1, memory_order_relaxed); }

void metrics_observe_stage(metrics *mt, metrics_stage stage, int model_label, double ms)
{
    stage_hist *h = &mt->stages[stage][clamp_label(model_label)];
    double s = ms / 1000.0;
    int b = 0;
    while (b < N_STAGE_BOUNDS && s > stage_bounds_s[b]) b++;
    atomic_fetch_add_explicit(&h->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)(ms * 1e6), memory_order_relaxed);
}

void metrics_observe_body(metrics *mt, size_t n_bytes)
{
    int b = 0;
    while (b < N_BODY_BOUNDS && (double)n_bytes > body_bounds[b]) b++;
    atomic_fetch_add_explicit(&mt->body_buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&mt->body_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&mt->body_sum, n_bytes, memory_order_relaxed);
}

static uint64_t load(atomic_uint_least64_t *v) { return atomic_load_explicit(v, memory_order_relaxed); }

const char *metrics_model_name(metrics *mt, int model_label)
{
    if (model_label == METRICS_MODEL_ALL) return "all";
    if (model_label < atomic_load_explicit(&mt->n_names, memory_order_acquire)) return mt->names[model_label];
    return "";
}

static void render_requests(metrics *mt, FILE *f)
{
    fputs("# HELP cnnserve_requests_total HTTP requests by route, model and status code.\n"
          "# TYPE cnnserve_requests_total counter\n", f);
    for (int r = 0; r <= mt->n_routes; r++)
        for (int m = 0; m < N_MODEL_LABELS; m++)
            for (int c = 0; c < N_CODES; c++) {
                uint64_t v = load(request_counter(mt, r, m, c));
                if (!v) continue;
                char code[16];
                if (c < N_CODES - 1) snprintf(code, sizeof code, "%d", tracked_codes[c]);
                else snprintf(code, sizeof code, "other");
                fprintf(f, "cnnserve_requests_total{route=\"%s\",model=\"%s\",code=\"%s\"} %llu\n",
                        r < mt->n_routes ? mt->route_names[r] : "unknown", metrics_model_name(mt, m), code, (unsigned long long)v);
            }
    fprintf(f, "# HELP cnnserve_requests_aborted_total Requests whose connection ended before the answer was sent.\n"
               "# TYPE cnnserve_requests_aborted_total counter\ncnnserve_requests_aborted_total %llu\n",
            (unsigned long long)load(&mt->aborted));
}

static void render_stages(metrics *mt, FILE *f)
{
    fputs("# HELP cnnserve_stage_seconds Latency of each request stage by model.\n"
          "# TYPE cnnserve_stage_seconds histogram\n", f);
    for (int s = 0; s < METRICS_N_STAGES; s++)
        for (int m = 0; m < N_MODEL_LABELS; m++) {
            stage_hist *h = &mt->stages[s][m];
            uint64_t count = load(&h->count);
            if (!count) continue;
            const char *model = metrics_model_name(mt, m);
            uint64_t cum = 0;
            for (int b = 0; b < N_STAGE_BOUNDS; b++) {
                cum += load(&h->buckets[b]);
                fprintf(f, "cnnserve_stage_seconds_bucket{stage=\"%s\",model=\"%s\",le=\"%g\"} %llu\n", stage_names[s],
                        model, stage_bounds_s[b], (unsigned long long)cum);
            }
            cum += load(&h->buckets[N_STAGE_BOUNDS]);
            fprintf(f, "cnnserve_stage_seconds_bucket{stage=\"%s\",model=\"%s\",le=\"+Inf\"} %llu\n", stage_names[s],
                    model, (unsigned long long)cum);
            fprintf(f, "cnnserve_stage_seconds_sum{stage=\"%s\",model=\"%s\"} %.9f\n", stage_names[s], model,
                    (double)load(&h->sum_ns) / 1e9);
            fprintf(f, "cnnserve_stage_seconds_count{stage=\"%s\",model=\"%s\"} %llu\n", stage_names[s], model,
                    (unsigned long long)cum);
        }
}

static void render_body(metrics *mt, FILE *f)
{
    fputs("# HELP cnnserve_request_body_bytes Size of classify request bodies.\n"
          "# TYPE cnnserve_request_body_bytes histogram\n", f);
    uint64_t cum = 0;
    for (int b = 0; b < N_BODY_BOUNDS; b++) {
        cum += load(&mt->body_buckets[b]);
        fprintf(f, "cnnserve_request_body_bytes_bucket{le=\"%.0f\"} %llu\n", body_bounds[b], (unsigned long long)cum);
    }
    cum += load(&mt->body_buckets[N_BODY_BOUNDS]);
    fprintf(f, "cnnserve_request_body_bytes_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    fprintf(f, "cnnserve_request_body_bytes_sum %llu\n", (unsigned long long)load(&mt->body_sum));
    fprintf(f, "cnnserve_request_body_bytes_count %llu\n", (unsigned long long)cum);
}

static void render_models(metrics *mt, const zoo *z, FILE *f)
{
    fputs("# HELP cnnserve_model_state 1 for the state each model is in (missing, failed, loaded, ready).\n"
          "# TYPE cnnserve_model_state gauge\n", f);
    for (int i = 0; i < z->n_entries; i++) {
        zoo_state cur = zoo_entry_state(z, i);
        for (int s = ZOO_STATE_MISSING; s <= ZOO_STATE_READY; s++)
            fprintf(f, "cnnserve_model_state{model=\"%s\",state=\"%s\"} %d\n", z->entries[i].name,
                    zoo_state_name((zoo_state)s), cur == (zoo_state)s);
    }
    fputs("# HELP cnnserve_model_resident_bytes Weights plus one context (arena, scratch per thread) per worker.\n"
          "# TYPE cnnserve_model_resident_bytes gauge\n", f);
    for (int i = 0; i < z->n_loaded; i++) {
        const model *m = z->entries[z->loaded[i]].m;
        fprintf(f, "cnnserve_model_resident_bytes{model=\"%s\"} %zu\n", z->entries[z->loaded[i]].name,
                model_weight_bytes(m) + (size_t)mt->n_workers * zoo_ctx_bytes(z, m));
    }
}

char *metrics_render(metrics *mt, const zoo *z, int in_flight, int queue_depth, int draining, size_t *n_bytes)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, n_bytes);
    if (!f) return NULL;
    render_requests(mt, f);
    render_stages(mt, f);
    render_body(mt, f);
    fprintf(f,
            "# HELP cnnserve_in_flight_requests Requests received and not yet answered.\n"
            "# TYPE cnnserve_in_flight_requests gauge\ncnnserve_in_flight_requests %d\n"
            "# HELP cnnserve_queue_depth Requests waiting for an inference worker.\n"
            "# TYPE cnnserve_queue_depth gauge\ncnnserve_queue_depth %d\n"
            "# HELP cnnserve_queue_capacity Queue slots before requests get 503.\n"
            "# TYPE cnnserve_queue_capacity gauge\ncnnserve_queue_capacity %d\n"
            "# HELP cnnserve_workers Inference worker threads.\n"
            "# TYPE cnnserve_workers gauge\ncnnserve_workers %d\n"
            "# HELP cnnserve_draining 1 after SIGTERM/SIGINT while in-flight requests finish.\n"
            "# TYPE cnnserve_draining gauge\ncnnserve_draining %d\n",
            in_flight, queue_depth, mt->queue_capacity, mt->n_workers, draining);
    render_models(mt, z, f);
    fprintf(f,
            "# HELP cnnserve_models_generation Model set generation: 1 at start, +1 per reload (SIGHUP, POST /v1/models/reload).\n"
            "# TYPE cnnserve_models_generation gauge\ncnnserve_models_generation %u\n",
            z->generation);
    fprintf(f,
            "# HELP cnnserve_build_info Build of the running binary.\n"
            "# TYPE cnnserve_build_info gauge\ncnnserve_build_info{version=\"%s\",compiler=\"%s\"} 1\n",
            CNNSERVE_VERSION, __VERSION__);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
