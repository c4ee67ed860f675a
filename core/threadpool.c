#include "threadpool.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TP_PAUSE() _mm_pause()
#else
#define TP_PAUSE() ((void)0)
#endif

/* How long a thread spins before it sleeps. Waiting for the parts of one layer usually ends
 * within microseconds; a part held by a thread the OS has descheduled does not, and then the
 * waiter sleeps rather than take the core that thread needs. */
#define TP_STEP_SPIN_NS 100000
/* After a job: back-to-back inferences find the workers still spinning. */
#define TP_IDLE_SPIN_NS 500000

struct threadpool {
    int n_threads;
    uint64_t step_spin_ns, idle_spin_ns; /* TP_*_SPIN_NS, or 0 (THREADPOOL_SLEEP) */
    threadpool_fn fn;
    void *arg;
    pthread_t *workers; /* n_threads - 1 */
    int n_started;

    pthread_mutex_t mu; /* parks idle workers */
    pthread_cond_t cv;
    _Alignas(64) atomic_uint job_gen; /* jobs started */
    atomic_int quit;
    _Alignas(64) atomic_int sleepers; /* threads asleep (or going to sleep) in threadpool_step_wait */
    atomic_int *cpu; /* n_threads: the CPU each thread ran on when it last entered a job (-1 unknown) */
};

typedef struct {
    threadpool *tp;
    int ith;
} tp_worker_arg;

static uint64_t tp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int threadpool_step_claim(threadpool_step *s, unsigned job, int n_parts)
{
    const unsigned base = job * (unsigned)n_parts;
    unsigned v = atomic_load_explicit(&s->next, memory_order_relaxed);
    while (v - base < (unsigned)n_parts)
        if (atomic_compare_exchange_weak_explicit(&s->next, &v, v + 1, memory_order_acq_rel,
                                                  memory_order_relaxed))
            return (int)(v - base);
    return -1;
}

void threadpool_step_finish(threadpool *tp, threadpool_step *s)
{
    /* seq_cst on both sides: the finisher bumps done before reading sleepers, a sleeper raises
     * sleepers before the futex re-reads done, so one of them sees the other (no lost wake-up) */
    atomic_fetch_add_explicit(&s->done, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&tp->sleepers, memory_order_seq_cst) > 0)
        syscall(SYS_futex, (unsigned *)&s->done, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Whether the calling thread may spin: not while another thread of the pool was last seen on its
 * CPU. Threads sharing a CPU (more threads than free cores, a CPU quota, a busy machine that put a
 * new worker on its creator's core) take turns on it, and a spinning waiter burns the turn of the
 * thread it waits for: measured, MobileNetV3-Small at 2 threads on one CPU (taskset) 2.0 ms a pass
 * with spinning against 1.4 ms at 1 thread. Sleeping at once also lets the scheduler wake the
 * thread on a free CPU. */
static int tp_may_spin(threadpool *tp)
{
    const int me = sched_getcpu();
    int n_here = 0;
    for (int i = 0; i < tp->n_threads; i++) n_here += atomic_load_explicit(&tp->cpu[i], memory_order_relaxed) == me;
    return me < 0 || n_here <= 1;
}

/* Whether done has reached target (wrap-around safe: counters grow without bound). */
static int tp_reached(unsigned done, unsigned target) { return (int)(done - target) >= 0; }

void threadpool_step_wait(threadpool *tp, threadpool_step *s, unsigned job, int n_parts)
{
    const unsigned target = (job + 1) * (unsigned)n_parts;
    if (tp_reached(atomic_load_explicit(&s->done, memory_order_acquire), target)) return;
    const uint64_t spin_ns = tp->step_spin_ns && tp_may_spin(tp) ? tp->step_spin_ns : 0;
    const uint64_t t0 = spin_ns ? tp_now_ns() : 0;
    for (unsigned i = 1; spin_ns; i++) {
        TP_PAUSE();
        if (tp_reached(atomic_load_explicit(&s->done, memory_order_acquire), target)) return;
        if (i % 64 == 0 && tp_now_ns() - t0 > spin_ns) break;
    }
    atomic_fetch_add_explicit(&tp->sleepers, 1, memory_order_seq_cst);
    unsigned d;
    while (!tp_reached(d = atomic_load_explicit(&s->done, memory_order_seq_cst), target))
        syscall(SYS_futex, (unsigned *)&s->done, FUTEX_WAIT_PRIVATE, d, NULL, NULL, 0);
    atomic_fetch_sub_explicit(&tp->sleepers, 1, memory_order_relaxed);
}

/* The next job after seen: spins, then parks; returns 0 when the pool is closing. */
static int tp_next_job(threadpool *tp, unsigned seen, unsigned *job)
{
    const uint64_t spin_ns = tp->idle_spin_ns && tp_may_spin(tp) ? tp->idle_spin_ns : 0;
    const uint64_t t0 = spin_ns ? tp_now_ns() : 0;
    for (unsigned i = 1; spin_ns; i++) {
        if (atomic_load_explicit(&tp->quit, memory_order_acquire)) return 0;
        const unsigned gen = atomic_load_explicit(&tp->job_gen, memory_order_acquire);
        if (gen != seen) {
            *job = gen - 1;
            return 1;
        }
        TP_PAUSE();
        if (i % 64 == 0 && tp_now_ns() - t0 > spin_ns) break;
    }
    pthread_mutex_lock(&tp->mu);
    unsigned gen;
    while ((gen = atomic_load_explicit(&tp->job_gen, memory_order_acquire)) == seen &&
           !atomic_load_explicit(&tp->quit, memory_order_acquire))
        pthread_cond_wait(&tp->cv, &tp->mu);
    pthread_mutex_unlock(&tp->mu);
    if (atomic_load_explicit(&tp->quit, memory_order_acquire)) return 0;
    *job = gen - 1;
    return 1;
}

static void *tp_worker_main(void *p)
{
    const tp_worker_arg wa = *(const tp_worker_arg *)p;
    free(p);
    threadpool *tp = wa.tp;
    unsigned seen = 0, job;
    /* a worker that fell behind by several jobs joins the latest one */
    while (tp_next_job(tp, seen, &job)) {
        seen = job + 1;
        atomic_store_explicit(&tp->cpu[wa.ith], sched_getcpu(), memory_order_relaxed);
        tp->fn(tp->arg, wa.ith, tp->n_threads, job);
    }
    return NULL;
}

cnn_status threadpool_init(threadpool **out, int n_threads, threadpool_fn fn, void *arg)
{
    return threadpool_init_wait(out, n_threads, fn, arg, THREADPOOL_SPIN);
}

cnn_status threadpool_init_wait(threadpool **out, int n_threads, threadpool_fn fn, void *arg, threadpool_wait wait)
{
    *out = NULL;
    if (n_threads < 1 || !fn || (wait != THREADPOOL_SPIN && wait != THREADPOOL_SLEEP)) return CNN_ERR_ARG;
    threadpool *tp = calloc(1, sizeof *tp);
    if (!tp) return CNN_ERR_NOMEM;
    tp->n_threads = n_threads;
    tp->step_spin_ns = wait == THREADPOOL_SPIN ? TP_STEP_SPIN_NS : 0;
    tp->idle_spin_ns = wait == THREADPOOL_SPIN ? TP_IDLE_SPIN_NS : 0;
    tp->fn = fn;
    tp->arg = arg;
    atomic_init(&tp->job_gen, 0);
    atomic_init(&tp->quit, 0);
    atomic_init(&tp->sleepers, 0);
    if (!(tp->cpu = malloc((size_t)n_threads * sizeof *tp->cpu))) {
        free(tp);
        return CNN_ERR_NOMEM;
    }
    for (int i = 0; i < n_threads; i++) atomic_init(&tp->cpu[i], -1);
    if (pthread_mutex_init(&tp->mu, NULL)) {
        free(tp->cpu);
        free(tp);
        return CNN_ERR_NOMEM;
    }
    if (pthread_cond_init(&tp->cv, NULL)) {
        pthread_mutex_destroy(&tp->mu);
        free(tp->cpu);
        free(tp);
        return CNN_ERR_NOMEM;
    }
    if (n_threads > 1 && !(tp->workers = calloc((size_t)(n_threads - 1), sizeof *tp->workers))) {
        threadpool_free(tp);
        return CNN_ERR_NOMEM;
    }
    for (int i = 1; i < n_threads; i++) {
        tp_worker_arg *wa = malloc(sizeof *wa);
        if (!wa) {
            threadpool_free(tp);
            return CNN_ERR_NOMEM;
        }
        *wa = (tp_worker_arg){tp, i};
        if (pthread_create(&tp->workers[tp->n_started], NULL, tp_worker_main, wa)) {
            free(wa);
            threadpool_free(tp);
            return CNN_ERR_NOMEM;
        }
        tp->n_started++;
    }
    *out = tp;
    return CNN_OK;
}

void threadpool_free(threadpool *tp)
{
    if (!tp) return;
    pthread_mutex_lock(&tp->mu);
    atomic_store_explicit(&tp->quit, 1, memory_order_release);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 0; i < tp->n_started; i++) pthread_join(tp->workers[i], NULL);
    free(tp->workers);
    pthread_cond_destroy(&tp->cv);
    pthread_mutex_destroy(&tp->mu);
    free(tp->cpu);
    free(tp);
}

int threadpool_size(const threadpool *tp) { return tp->n_threads; }

unsigned threadpool_start(threadpool *tp)
{
    atomic_store_explicit(&tp->cpu[0], sched_getcpu(), memory_order_relaxed);
    pthread_mutex_lock(&tp->mu);
    const unsigned job = atomic_fetch_add_explicit(&tp->job_gen, 1, memory_order_release);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    return job;
}
