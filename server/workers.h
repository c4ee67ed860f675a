/* A fixed pool of inference threads fed by a bounded FIFO. Each thread owns one pipeline workspace
 * for the current zoo generation (a model_ctx per loaded model, each with its own intra-op threads
 * when threads_per_worker > 1); models are shared read-only. At start, and after workers_set_zoo,
 * every thread builds the workspace of the generation and runs one warm-up inference per model,
 * counting it in the generation (what makes /readyz turn 200). A job carries the generation it was
 * resolved against: a job of an older generation (queued across a reload) runs on a workspace built
 * for just its models, so a reload never fails a request (and runs alone, never batched). */
#ifndef CNN_WORKERS_H
#define CNN_WORKERS_H

#include <stddef.h>

#include "../core/status.h"
#include "pipeline.h"
#include "zoo.h"

typedef struct workers workers;

/* Runs one job on a worker thread with a workspace of the job's generation (slot = index into its
 * loaded models), or NULL when none could be built (out of memory) or the job needs no model. */
typedef void (*workers_run_fn)(void *job, pipeline_ws *ws, void *cls);
/* Runs n >= 2 jobs as one batch on a worker thread: jobs of the workspace's generation, each
 * naming the one model `slot` (pipeline_request with one slot) that batching is on for. */
typedef void (*workers_run_batch_fn)(void **jobs, int n, pipeline_ws *ws, int slot, void *cls);
/* Called for jobs still queued when the pool shuts down (they will not run). */
typedef void (*workers_cancel_fn)(void *job, void *cls);

/* Dynamic batching: a worker that takes a job for one model with batching on also takes the
 * queued jobs for the same model (same generation, that model alone), up to max_batch in all,
 * waiting up to max_delay_ms for more when fewer are queued, and runs them as one batch
 * (model_run_batch: same answers as alone). */
typedef struct {
    int max_batch;        /* 1..MODEL_MAX_BATCH; 1 = off */
    double max_delay_ms;  /* >= 0 */
    const char *models;   /* comma list: served names or architecture names/aliases (a fine-tuned
                             model follows its architecture), "all", or "" / "none" */
} workers_batch;

/* Largest batch of zoo slot `slot` under b (1 when batching is off for it, or its graph has no
 * linear layers at the end to batch). */
int workers_batch_max(const workers_batch *b, const zoo *z, int slot);

/* Workspaces are built here (errors reported synchronously), then the threads start. The zoo's
 * fields are not written here (the caller sets the worker count with zoo_set_workers); the workers
 * only count their warm-up inferences in its entries.
 * threads_per_worker (1..MODEL_MAX_THREADS) threads run each inference of a worker: the worker
 * itself plus threads_per_worker - 1 threads of each of its model contexts (same answers at any
 * count). All threads inherit the caller's signal mask. */
cnn_status workers_init(workers **out, int n_workers, int threads_per_worker, int capacity, zoo *z,
                        const workers_batch *batch, workers_run_fn run, workers_run_batch_fn run_batch,
                        workers_cancel_fn cancel, void *cls, char *err, size_t err_bytes);

/* Makes z (a reference is taken) the generation the threads build their workspaces for; each thread
 * switches when it next wakes, before its next job, and drops its reference to the old one. */
void workers_set_zoo(workers *w, zoo *z);

/* Reserves a queue slot: 1 on success, 0 when the queue is full, -1 once shut down.
 * A reservation must be followed by exactly one workers_submit. Never blocks on inference. */
int workers_reserve(workers *w);
/* z: the generation job was resolved against (the caller keeps it alive until the job ends); req:
 * the models it runs (NULL or no slots: none). */
void workers_submit(workers *w, void *job, zoo *z, const pipeline_request *req);

/* Jobs waiting (reserved or queued, not yet running). */
int workers_depth(workers *w);
int workers_capacity(const workers *w);

/* Stops accepting jobs, cancels the queued ones, waits for running ones, joins, frees. */
void workers_free(workers *w);

#endif
