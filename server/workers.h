/* A fixed pool of inference threads fed by a bounded FIFO. Each thread owns one pipeline workspace
 * (a model_ctx per loaded model, each with its own intra-op threads when threads_per_worker > 1);
 * models are shared read-only. At start every thread runs one
 * warm-up inference per model and counts it in the zoo, which is what makes /readyz turn 200. */
#ifndef CNN_WORKERS_H
#define CNN_WORKERS_H

#include <stddef.h>

#include "../core/status.h"
#include "pipeline.h"
#include "zoo.h"

typedef struct workers workers;

/* Runs one job on a worker thread with that thread's workspace. */
typedef void (*workers_run_fn)(void *job, pipeline_ws *ws, void *cls);
/* Called for jobs still queued when the pool shuts down (they will not run). */
typedef void (*workers_cancel_fn)(void *job, void *cls);

/* Workspaces are built here (errors reported synchronously), then the threads start.
 * threads_per_worker (1..MODEL_MAX_THREADS) threads run each inference of a worker: the worker
 * itself plus threads_per_worker - 1 threads of each of its model contexts (same answers at any
 * count). All threads inherit the caller's signal mask. */
cnn_status workers_init(workers **out, int n_workers, int threads_per_worker, int capacity, zoo *z,
                        workers_run_fn run, workers_cancel_fn cancel, void *cls, char *err, size_t err_bytes);

/* Reserves a queue slot: 1 on success, 0 when the queue is full, -1 once shut down.
 * A reservation must be followed by exactly one workers_submit. Never blocks on inference. */
int workers_reserve(workers *w);
void workers_submit(workers *w, void *job);

/* Jobs waiting (reserved or queued, not yet running). */
int workers_depth(workers *w);
int workers_capacity(const workers *w);

/* Stops accepting jobs, cancels the queued ones, waits for running ones, joins, frees. */
void workers_free(workers *w);

#endif
