/* image_threads: image_parallel over a core/threadpool whose threads sleep between jobs
 * (THREADPOOL_SLEEP). A decode is one job of the pool: its parts are claimed from one
 * threadpool_step by the caller and the workers; the caller returns when every part has finished. */
#include "image_threads.h"

#include <stdlib.h>
#include <string.h>

#include "../core/threadpool.h"

struct image_threads {
    threadpool_step step; /* first: the allocation is 64-byte aligned */
    threadpool *tp;
    /* the current job's function, written by the caller before threadpool_start (which publishes
     * it); a worker reads it only after claiming a part, so before the caller can return */
    void (*fn)(void *arg, int part);
    void *arg;
    image_parallel par;
};

/* Runs parts of job until none is left to claim. */
static void threads_work(image_threads *t, unsigned job)
{
    int part;
    while ((part = threadpool_step_claim(&t->step, job, t->par.n_parts)) >= 0) {
        t->fn(t->arg, part);
        threadpool_step_finish(t->tp, &t->step);
    }
}

/* A worker's share (threadpool_fn). */
static void threads_worker(void *arg, int ith, int nth, unsigned job)
{
    (void)ith, (void)nth;
    threads_work(arg, job);
}

static void threads_run(void *ctx, void (*fn)(void *arg, int part), void *arg)
{
    image_threads *t = ctx;
    t->fn = fn;
    t->arg = arg;
    const unsigned job = threadpool_start(t->tp);
    threads_work(t, job);
    threadpool_step_wait(t->tp, &t->step, job, t->par.n_parts);
}

cnn_status image_threads_init(image_threads **out, int n_threads)
{
    *out = NULL;
    if (n_threads < 1 || n_threads > IMAGE_MAX_BANDS)
        return CNN_ERR_ARG;
    image_threads *t = aligned_alloc(64, (sizeof *t + 63) / 64 * 64);
    if (!t)
        return CNN_ERR_NOMEM;
    memset(t, 0, sizeof *t);
    t->par = (image_parallel){.run = threads_run, .ctx = t, .n_parts = n_threads,
                              .min_band_bytes = IMAGE_MIN_BAND_BYTES};
    atomic_init(&t->step.next, 0);
    atomic_init(&t->step.done, 0);
    const cnn_status st = n_threads > 1 ? threadpool_init_wait(&t->tp, n_threads, threads_worker, t, THREADPOOL_SLEEP)
                                        : CNN_OK;
    if (st != CNN_OK) {
        free(t);
        return st;
    }
    *out = t;
    return CNN_OK;
}

void image_threads_free(image_threads *t)
{
    if (!t)
        return;
    threadpool_free(t->tp);
    free(t);
}

const image_parallel *image_threads_parallel(const image_threads *t)
{
    return t && t->tp ? &t->par : NULL;
}
