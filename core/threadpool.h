/* A small pool of persistent threads for intra-op parallelism (ggml-style: all threads walk the
 * same sequence of steps, each step split into parts of its output).
 *
 * threadpool_start starts job number j (0, 1, 2, ...): every worker calls fn(arg, ith, nth, j)
 * (ith 1 .. nth-1) and the caller runs its own share as thread 0. Within a job the threads share
 * the parts of each step through a threadpool_step: a thread claims parts until none is left, then
 * waits until every part of the step is finished (threadpool_step_wait), and moves on. A part is
 * claimed by whichever thread asks first, so a thread the OS has descheduled delays nothing but
 * the part it already holds: the others take its share, and it catches up by finding the steps
 * done. No thread ever waits for another thread to arrive, only for claimed work to finish, and
 * the caller decides the job is over when the last step is done (workers may still be walking
 * through it, and then find nothing left).
 *
 * Step counters only grow: job j owns the claims [j*n, (j+1)*n) of a step of n parts, so they need
 * no reset between jobs and a straggler of an earlier job cannot take a part of a later one.
 * Waiting spins on C11 atomics for a bounded time, then sleeps on a futex; idle workers spin
 * briefly after a job, then park on a condition variable (THREADPOOL_SPIN), or both sleep at once
 * (THREADPOOL_SLEEP); a thread that last saw another thread of the pool on its own CPU sleeps at
 * once (spinning there would take that thread's turn). Workers are created by threadpool_init and
 * joined by threadpool_free; nothing allocates in between. */
#ifndef CNN_THREADPOOL_H
#define CNN_THREADPOOL_H

#include <stdatomic.h>

#include "status.h"

typedef struct threadpool threadpool;

/* A worker's share of job: ith in 1 .. nth-1. */
typedef void (*threadpool_fn)(void *arg, int ith, int nth, unsigned job);

/* n_threads >= 1 counts the caller: n_threads - 1 workers are started, each later running fn(arg,
 * ...) once per job. The threads spin briefly before they sleep (THREADPOOL_SPIN). */
cnn_status threadpool_init(threadpool **out, int n_threads, threadpool_fn fn, void *arg);

/* How a pool's threads wait for a part or the next job: THREADPOOL_SPIN spins up to ~0.1 ms for a
 * part and ~0.5 ms for a job before sleeping (back-to-back inferences find the workers awake; a
 * sleeping thread's wake-up can take over 1 ms on a VM); THREADPOOL_SLEEP sleeps at once (occasional
 * jobs on threads that share the cores with other work: the intake's band decode). */
typedef enum { THREADPOOL_SPIN = 0, THREADPOOL_SLEEP } threadpool_wait;
cnn_status threadpool_init_wait(threadpool **out, int n_threads, threadpool_fn fn, void *arg, threadpool_wait wait);
/* Waits for the workers to leave the job they are in and joins them. */
void threadpool_free(threadpool *tp);

int threadpool_size(const threadpool *tp);

/* Starts the next job on the workers and returns its number at once (the caller then runs its
 * share). Data the caller wrote before is visible to the workers' fn. One caller per pool. */
unsigned threadpool_start(threadpool *tp);

/* Shared progress of one step; zero-initialized before the first job. */
typedef struct {
    _Alignas(64) atomic_uint next; /* claims made */
    _Alignas(64) atomic_uint done; /* parts finished (a futex word) */
} threadpool_step;

/* Claims a part of step s of job (n_parts parts per job): its index in 0 .. n_parts-1, or -1
 * when every part is taken (or the job is over). */
int threadpool_step_claim(threadpool_step *s, unsigned job, int n_parts);
/* Marks one claimed part finished (its writes become visible to threadpool_step_wait). */
void threadpool_step_finish(threadpool *tp, threadpool_step *s);
/* Returns once every part of step s of job is finished. */
void threadpool_step_wait(threadpool *tp, threadpool_step *s, unsigned job, int n_parts);

#endif
