#include "workers.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    workers *pool;
    zoo *gen;         /* the generation ws was built for (a reference) */
    pipeline_ws *ws;  /* NULL when it could not be built: jobs then get one of their own */
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
    zoo *z;           /* current generation (a reference) */
    workers_run_fn run;
    workers_cancel_fn cancel;
    void *cls;
};

/* Workspace for z's loaded models; only the slots of req when req is given. NULL when out of memory. */
static pipeline_ws *ws_build(const workers *w, const zoo *z, const pipeline_request *req)
{
    const model *models[ZOO_MAX_MODELS] = {0};
    for (int s = 0; s < z->n_loaded; s++)
        if (!req) models[s] = z->entries[z->loaded[s]].m;
    for (int i = 0; req && i < req->n_slots; i++)
        if (req->slots[i] >= 0 && req->slots[i] < z->n_loaded) models[req->slots[i]] = z->entries[z->loaded[req->slots[i]]].m;
    pipeline_ws *ws = NULL;
    char err[256];
    if (z->n_loaded && pipeline_ws_init_threads(&ws, models, z->n_loaded, w->threads_per_worker, err, sizeof err) != CNN_OK)
        return NULL;
    return ws;
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
    warm_up(self);
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
                        workers_run_fn run, workers_cancel_fn cancel, void *cls, char *err, size_t err_bytes)
{
    *out = NULL;
    if (n_workers < 1 || capacity < 1) return cnn_err(err, err_bytes, CNN_ERR_ARG, "workers: need >= 1 worker and queue slot");
    if (threads_per_worker < 1 || threads_per_worker > MODEL_MAX_THREADS)
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "workers: %d threads per worker (1..%d supported)",
                       threads_per_worker, MODEL_MAX_THREADS);
    workers *w = calloc(1, sizeof *w);
    if (!w) return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "workers: out of memory");
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->capacity = capacity;
    w->z = z;
    w->run = run;
    w->cancel = cancel;
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
    for (int i = 0; i < n_workers; i++) {
        w->threads[i].pool = w;
        w->threads[i].gen = zoo_acquire(z);
        if ((st = pipeline_ws_init_threads(&w->threads[i].ws, models, z->n_loaded, threads_per_worker, err,
                                           err_bytes)) != CNN_OK)
            goto fail;
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
