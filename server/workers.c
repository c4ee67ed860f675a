#include "workers.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

typedef struct {
    workers *pool;
    zoo *gen;         /* the generation ws was built for (a reference) */
    pipeline_ws *ws;  /* NULL when it could not be built: jobs then get one of their own */
    int batch_max[ZOO_MAX_MODELS]; /* per slot of gen: workers_batch_max (1 without ws) */
    pthread_t thread;
    int started;
} worker;

typedef struct {
    void *job;
    zoo *z;
    const pipeline_request *req;
} queued_job;

struct workers {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int capacity;
    queued_job *ring; /* capacity slots */
    int head, n_queued, n_reserved;
    int closed;
    int n_workers;
    worker *threads;
    int threads_per_worker;
    int max_batch;
    double max_delay_ms;
    char batch_models[1024];
    zoo *z;           /* current generation (a reference) */
    workers_run_fn run;
    workers_run_batch_fn run_batch;
    workers_cancel_fn cancel;
    void *cls;
};

/* Whether name (a served name or an architecture name/alias) is in the comma list csv. */
static int batch_listed(const char *csv, const zoo_entry *e)
{
    const char *p = csv;
    while (*p) {
        size_t n = strcspn(p, ",");
        char tok[ZOO_NAME_BYTES];
        if (n < sizeof tok) {
            memcpy(tok, p, n);
            tok[n] = '\0';
            if (!strcasecmp(tok, "all") || !strcasecmp(tok, e->name) ||
                (e->arch && model_arch_find(tok) == e->arch))
                return 1;
        }
        p += n;
        if (*p == ',') p++;
    }
    return 0;
}

/* Every name of csv is "all", "none", an architecture name/alias or a name z serves: else
 * CNN_ERR_ARG naming it. */
static cnn_status batch_list_check(const char *csv, const zoo *z, char *err, size_t err_bytes)
{
    const char *p = csv;
    while (*p) {
        size_t n = strcspn(p, ",");
        char tok[ZOO_NAME_BYTES];
        snprintf(tok, sizeof tok, "%.*s", (int)(n < sizeof tok ? n : sizeof tok - 1), p);
        if (n >= sizeof tok || (strcasecmp(tok, "all") && strcasecmp(tok, "none") && !model_arch_find(tok) &&
                                zoo_find(z, tok) < 0))
            return cnn_err(err, err_bytes, CNN_ERR_ARG,
                           "--batch-models: '%s' is not a model name (architecture names/aliases, served "
                           "names, 'all' or 'none')", tok);
        p += n;
        if (*p == ',') p++;
    }
    return CNN_OK;
}

int workers_batch_max(const workers_batch *b, const zoo *z, int slot)
{
    if (!b || b->max_batch <= 1 || !b->models || slot < 0 || slot >= z->n_loaded) return 1;
    const zoo_entry *e = &z->entries[z->loaded[slot]];
    if (!e->m || model_batch_layers(e->m) < 1 || !batch_listed(b->models, e)) return 1;
    return b->max_batch;
}

/* The batch sizes of z's slots under w's settings. */
static void batch_sizes(const workers *w, const zoo *z, int *max_batch)
{
    const workers_batch b = {w->max_batch, w->max_delay_ms, w->batch_models};
    for (int s = 0; s < z->n_loaded; s++) max_batch[s] = workers_batch_max(&b, z, s);
}

/* Workspace for z's loaded models; only the slots of req when req is given (then nothing is
 * batched). NULL when out of memory. */
static pipeline_ws *ws_build(const workers *w, const zoo *z, const pipeline_request *req)
{
    const model *models[ZOO_MAX_MODELS] = {0};
    for (int s = 0; s < z->n_loaded; s++)
        if (!req) models[s] = z->entries[z->loaded[s]].m;
    for (int i = 0; req && i < req->n_slots; i++)
        if (req->slots[i] >= 0 && req->slots[i] < z->n_loaded) models[req->slots[i]] = z->entries[z->loaded[req->slots[i]]].m;
    int max_batch[ZOO_MAX_MODELS];
    for (int s = 0; s < z->n_loaded; s++) max_batch[s] = 1;
    if (!req) batch_sizes(w, z, max_batch);
    pipeline_ws *ws = NULL;
    char err[256];
    if (z->n_loaded &&
        pipeline_ws_init_batch(&ws, models, z->n_loaded, w->threads_per_worker, max_batch, err, sizeof err) != CNN_OK)
        return NULL;
    return ws;
}

/* The batch sizes of the worker's generation: 1 everywhere without a workspace. */
static void worker_batch_sizes(worker *self)
{
    for (int s = 0; s < ZOO_MAX_MODELS; s++) self->batch_max[s] = 1;
    if (self->ws) batch_sizes(self->pool, self->gen, self->batch_max);
}

static void warm_up(worker *self)
{
    for (int s = 0; self->ws && s < self->gen->n_loaded; s++) {
        pipeline_ws_warmup(self->ws, s);
        atomic_fetch_add(&self->gen->entries[self->gen->loaded[s]].n_warm, 1);
    }
}

/* Moves the thread to generation g (a reference it now owns). */
static void switch_to(worker *self, zoo *g)
{
    pipeline_ws_free(self->ws);
    zoo_release(self->gen);
    self->gen = g;
    self->ws = ws_build(self->pool, g, NULL);
    worker_batch_sizes(self);
    warm_up(self);
}

/* The batch slot of a queued job for self: its one model's slot when batching is on for it and the
 * job is of self's generation, else -1. */
static int job_batch_slot(const worker *self, const queued_job *q)
{
    if (q->z != self->gen || !q->req || q->req->n_slots != 1) return -1;
    const int slot = q->req->slots[0];
    return slot >= 0 && slot < self->gen->n_loaded && self->batch_max[slot] > 1 ? slot : -1;
}

/* Moves the queued jobs for slot (in queue order) into batch[*n ..] while *n < max; mutex held. */
static void take_batch(workers *w, const worker *self, int slot, void **batch, int *n, int max)
{
    int kept = 0;
    for (int i = 0; i < w->n_queued; i++) {
        queued_job *q = &w->ring[(w->head + i) % w->capacity];
        if (*n < max && job_batch_slot(self, q) == slot) {
            batch[(*n)++] = q->job;
        } else {
            if (kept != i) w->ring[(w->head + kept) % w->capacity] = *q;
            kept++;
        }
    }
    w->n_queued = kept;
}

static void deadline_after(struct timespec *ts, double ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    long long ns = ts->tv_nsec + (long long)(ms * 1e6);
    ts->tv_sec += (time_t)(ns / 1000000000);
    ts->tv_nsec = (long)(ns % 1000000000);
}

static void *worker_main(void *arg)
{
    worker *self = arg;
    workers *w = self->pool;
    warm_up(self);
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->n_queued && !w->closed && self->gen == w->z) pthread_cond_wait(&w->cv, &w->mu);
        if (!w->n_queued && w->closed) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        if (self->gen != w->z) {
            zoo *g = zoo_acquire(w->z);
            pthread_mutex_unlock(&w->mu);
            switch_to(self, g);
            continue;
        }
        queued_job q = w->ring[w->head];
        w->head = (w->head + 1) % w->capacity;
        w->n_queued--;
        const int slot = job_batch_slot(self, &q);
        if (slot >= 0) {
            void *batch[MODEL_MAX_BATCH];
            int n = 1;
            const int max = self->batch_max[slot];
            batch[0] = q.job;
            take_batch(w, self, slot, batch, &n, max);
            if (n < max && w->max_delay_ms > 0 && !w->closed) {
                /* wait for more of the same model, up to the added delay (shutdown ends the wait:
                 * the jobs taken run) */
                struct timespec until;
                deadline_after(&until, w->max_delay_ms);
                while (n < max && !w->closed && pthread_cond_timedwait(&w->cv, &w->mu, &until) == 0)
                    take_batch(w, self, slot, batch, &n, max);
                take_batch(w, self, slot, batch, &n, max);
            }
            pthread_mutex_unlock(&w->mu);
            if (n == 1)
                w->run(q.job, self->ws, w->cls);
            else
                w->run_batch(batch, n, self->ws, slot, w->cls);
            continue;
        }
        pthread_mutex_unlock(&w->mu);
        if (q.z == self->gen || !q.req || !q.req->n_slots) {
            w->run(q.job, q.z == self->gen ? self->ws : NULL, w->cls);
        } else {
            /* Resolved against an older generation before a reload: its models are still alive. */
            pipeline_ws *ws = ws_build(w, q.z, q.req);
            w->run(q.job, ws, w->cls);
            pipeline_ws_free(ws);
        }
    }
    return NULL;
}

cnn_status workers_init(workers **out, int n_workers, int threads_per_worker, int capacity, zoo *z,
                        const workers_batch *batch, workers_run_fn run, workers_run_batch_fn run_batch,
                        workers_cancel_fn cancel, void *cls, char *err, size_t err_bytes)
{
    *out = NULL;
    if (n_workers < 1 || capacity < 1) return cnn_err(err, err_bytes, CNN_ERR_ARG, "workers: need >= 1 worker and queue slot");
    if (threads_per_worker < 1 || threads_per_worker > MODEL_MAX_THREADS)
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "workers: %d threads per worker (1..%d supported)",
                       threads_per_worker, MODEL_MAX_THREADS);
    const int batching = batch && run_batch && batch->max_batch > 1 && batch->models;
    if (batching && (batch->max_batch > MODEL_MAX_BATCH || !(batch->max_delay_ms >= 0) ||
                     strlen(batch->models) >= sizeof(((workers *)0)->batch_models)))
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "workers: batch of %d (1..%d), delay %g ms (>= 0) or model list",
                       batch->max_batch, MODEL_MAX_BATCH, batch->max_delay_ms);
    if (batching) {
        cnn_status st = batch_list_check(batch->models, z, err, err_bytes);
        if (st != CNN_OK) return st;
    }
    workers *w = calloc(1, sizeof *w);
    if (!w) return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "workers: out of memory");
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->capacity = capacity;
    w->z = z;
    w->run = run;
    w->run_batch = run_batch;
    w->cancel = cancel;
    w->max_batch = 1;
    if (batching) {
        w->max_batch = batch->max_batch;
        w->max_delay_ms = batch->max_delay_ms;
        snprintf(w->batch_models, sizeof w->batch_models, "%s", batch->models);
    }
    w->cls = cls;
    w->ring = calloc((size_t)capacity, sizeof *w->ring);
    w->threads = calloc((size_t)n_workers, sizeof *w->threads);
    cnn_status st = CNN_OK;
    if (!w->ring || !w->threads) {
        st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "workers: out of memory");
        goto fail;
    }
    const model *models[ZOO_MAX_MODELS];
    for (int s = 0; s < z->n_loaded; s++) models[s] = z->entries[z->loaded[s]].m;
    w->n_workers = n_workers;
    w->threads_per_worker = threads_per_worker;
    w->z = zoo_acquire(z);
    int max_batch[ZOO_MAX_MODELS];
    batch_sizes(w, z, max_batch);
    for (int i = 0; i < n_workers; i++) {
        w->threads[i].pool = w;
        w->threads[i].gen = zoo_acquire(z);
        if ((st = pipeline_ws_init_batch(&w->threads[i].ws, models, z->n_loaded, threads_per_worker, max_batch, err,
                                         err_bytes)) != CNN_OK)
            goto fail;
        worker_batch_sizes(&w->threads[i]);
    }
    for (int i = 0; i < n_workers; i++) {
        if (pthread_create(&w->threads[i].thread, NULL, worker_main, &w->threads[i])) {
            st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "workers: cannot start thread %d", i);
            goto fail;
        }
        w->threads[i].started = 1;
    }
    *out = w;
    return CNN_OK;
fail:
    workers_free(w);
    return st;
}

int workers_reserve(workers *w)
{
    pthread_mutex_lock(&w->mu);
    int rc = w->closed ? -1 : w->n_queued + w->n_reserved < w->capacity ? 1 : 0;
    if (rc == 1) w->n_reserved++;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void workers_set_zoo(workers *w, zoo *z)
{
    zoo_acquire(z);
    pthread_mutex_lock(&w->mu);
    zoo *old = w->z;
    w->z = z;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    zoo_release(old);
}

void workers_submit(workers *w, void *job, zoo *z, const pipeline_request *req)
{
    pthread_mutex_lock(&w->mu);
    w->n_reserved--;
    if (w->closed) {
        /* Shut down between reserve and submit: the job never runs. */
        pthread_mutex_unlock(&w->mu);
        w->cancel(job, w->cls);
        return;
    }
    w->ring[(w->head + w->n_queued) % w->capacity] = (queued_job){job, z, req};
    w->n_queued++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int workers_depth(workers *w)
{
    pthread_mutex_lock(&w->mu);
    int n = w->n_queued + w->n_reserved;
    pthread_mutex_unlock(&w->mu);
    return n;
}

int workers_capacity(const workers *w) { return w->capacity; }

void workers_free(workers *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->closed = 1;
    int n_cancel = w->n_queued, head = w->head;
    w->n_queued = 0;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < n_cancel; i++) w->cancel(w->ring[(head + i) % w->capacity].job, w->cls);
    for (int i = 0; w->threads && i < w->n_workers; i++)
        if (w->threads[i].started) pthread_join(w->threads[i].thread, NULL);
    for (int i = 0; w->threads && i < w->n_workers; i++) {
        pipeline_ws_free(w->threads[i].ws);
        zoo_release(w->threads[i].gen);
    }
    zoo_release(w->z);
    free(w->threads);
    free(w->ring);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
