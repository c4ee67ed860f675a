/* Helper threads for the intake's parallel JPEG decode (image_decode_opts.par): a core/threadpool
 * of n_threads - 1 workers that sleep between decodes and while they wait (THREADPOOL_SLEEP, no
 * spinning: they share the cores with the inference threads), and run the parts of a decode
 * together with the caller. */
#ifndef CNN_IMAGE_THREADS_H
#define CNN_IMAGE_THREADS_H

#include "../core/status.h"
#include "image.h"

typedef struct image_threads image_threads;

/* n_threads (1..IMAGE_MAX_BANDS) counts the caller; 1 starts no thread (image_threads_parallel
 * then says sequential). CNN_ERR_ARG, or CNN_ERR_NOMEM (memory or a thread) on failure. */
cnn_status image_threads_init(image_threads **out, int n_threads);
/* Joins the threads. NULL is fine. One decode at a time: the caller must not run two at once. */
void image_threads_free(image_threads *t);
/* The image_parallel to pass in image_decode_opts.par, or NULL for a single thread (or t NULL). */
const image_parallel *image_threads_parallel(const image_threads *t);

#endif
