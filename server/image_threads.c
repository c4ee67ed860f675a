/* image_threads: a job's parts are claimed one at a time under the mutex, by the caller and by
 * the helpers it woke; the caller returns when every part has finished. */
#include "image_threads.h"

#include <pthread.h>
#include <stdlib.h>

struct image_threads {
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    unsigned gen;          /* jobs started */
    int quit;
    void (*fn)(void *arg, int part);
    void *arg;
    int next, remaining;   /* parts of the current job not yet claimed / not yet finished */
    int n_helpers, n_started;
    pthread_t helpers[IMAGE_MAX_BANDS];
    image_parallel par;
};

/* Runs parts of the current job until none is left to claim. */
static void threads_work(image_threads *t)
{
    pthread_mutex_lock(&t->mu);
    while (t->next < t->par.n_parts) {
        const int part = t->next++;
        void (*fn)(void *, int) = t->fn;
        void *arg = t->arg;
        pthread_mutex_unlock(&t->mu);
        fn(arg, part);
        pthread_mutex_lock(&t->mu);
        if (--t->remaining == 0)
            pthread_cond_signal(&t->done);
    }
    pthread_mutex_unlock(&t->mu);
}

static void *threads_helper(void *p)
{
    image_threads *t = p;
    pthread_mutex_lock(&t->mu);
    unsigned seen = t->gen;
    for (;;) {
        while (t->gen == seen && !t->quit)
            pthread_cond_wait(&t->start, &t->mu);
        if (t->quit)
            break;
        seen = t->gen;
        pthread_mutex_unlock(&t->mu);
        threads_work(t);
        pthread_mutex_lock(&t->mu);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static void threads_run(void *ctx, void (*fn)(void *arg, int part), void *arg)
{
    image_threads *t = ctx;
    pthread_mutex_lock(&t->mu);
    t->fn = fn;
    t->arg = arg;
    t->next = 0;
    t->remaining = t->par.n_parts;
    t->gen++;
    pthread_cond_broadcast(&t->start);
    pthread_mutex_unlock(&t->mu);
    threads_work(t);
    pthread_mutex_lock(&t->mu);
    while (t->remaining > 0)
        pthread_cond_wait(&t->done, &t->mu);
    pthread_mutex_unlock(&t->mu);
}

cnn_status image_threads_init(image_threads **out, int n_threads)
{
    *out = NULL;
    if (n_threads < 1 || n_threads > IMAGE_MAX_BANDS)
        return CNN_ERR_ARG;
    image_threads *t = calloc(1, sizeof *t);
    if (!t)
        return CNN_ERR_NOMEM;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->start, NULL);
    pthread_cond_init(&t->done, NULL);
    t->par = (image_parallel){.run = threads_run, .ctx = t, .n_parts = n_threads, .min_band_bytes = IMAGE_MIN_BAND_BYTES};
    t->n_helpers = n_threads - 1;
    for (; t->n_started < t->n_helpers; t->n_started++)
        if (pthread_create(&t->helpers[t->n_started], NULL, threads_helper, t) != 0) {
            image_threads_free(t);
            return CNN_ERR_NOMEM;
        }
    *out = t;
    return CNN_OK;
}

void image_threads_free(image_threads *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->quit = 1;
    pthread_cond_broadcast(&t->start);
    pthread_mutex_unlock(&t->mu);
    for (int i = 0; i < t->n_started; i++)
        pthread_join(t->helpers[i], NULL);
    pthread_cond_destroy(&t->start);
    pthread_cond_destroy(&t->done);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

const image_parallel *image_threads_parallel(const image_threads *t)
{
    return t && t->n_helpers > 0 ? &t->par : NULL;
}
