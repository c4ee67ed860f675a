/* Intra-op threading: the thread pool's steps (every part run exactly once per job, steps in
 * order), and for every model of the PyTorch reference set ($CNN_CACHE/ref, from make ref) logits
 * bit-identical at 1, 2 and 3 context threads, also with two 2-thread contexts running at once, and
 * model_run_batch's rows bit-identical to model_run. */
#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/threadpool.h"
#include "../../models/model.h"
#include "../test.h"
#include "../test_ref.h"

static char cache_dir[1024];

/* ---- the pool alone ---- */

enum { POOL_STEPS = 5, POOL_MAX_PARTS = 7, POOL_JOBS = 2000 };

typedef struct {
    threadpool *tp;
    threadpool_step steps[POOL_STEPS];
    atomic_int runs[POOL_STEPS][POOL_MAX_PARTS]; /* times each part ran */
    atomic_int order_errors;                     /* a part that ran before the previous step ended */
} pool_job;

static int pool_parts(int step) { return 1 + (step * 3) % POOL_MAX_PARTS; }

static void pool_share(void *arg, int ith, int nth, unsigned job)
{
    (void)ith;
    (void)nth;
    pool_job *pj = arg;
    for (int s = 0; s < POOL_STEPS; s++) {
        int part;
        while ((part = threadpool_step_claim(&pj->steps[s], job, pool_parts(s))) >= 0) {
            /* every part of the previous step has run (job + 1) times by now */
            for (int q = 0; s > 0 && q < pool_parts(s - 1); q++)
                if (atomic_load(&pj->runs[s - 1][q]) != (int)job + 1) atomic_fetch_add(&pj->order_errors, 1);
            atomic_fetch_add(&pj->runs[s][part], 1);
            threadpool_step_finish(pj->tp, &pj->steps[s]);
        }
        threadpool_step_wait(pj->tp, &pj->steps[s], job, pool_parts(s));
    }
}

static void test_pool(int n_threads, threadpool_wait wait, const char *where)
{
    char name[160];
    snprintf(name, sizeof name, "threadpool, %d threads%s, %s: %d jobs of %d steps, each part once, steps in order",
             n_threads, where, wait == THREADPOOL_SLEEP ? "sleeping" : "spinning", POOL_JOBS, POOL_STEPS);
    test_begin();
    pool_job *pj = calloc(1, sizeof *pj);
    T_CHECK(pj && threadpool_init_wait(&pj->tp, n_threads, pool_share, pj, wait) == CNN_OK, "threadpool_init failed");
    if (pj && pj->tp) {
        T_CHECK(threadpool_size(pj->tp) == n_threads, "size %d", threadpool_size(pj->tp));
        for (int j = 0; j < POOL_JOBS; j++) {
            const unsigned job = threadpool_start(pj->tp);
            T_CHECK(job == (unsigned)j, "job number %u, expected %d", job, j);
            pool_share(pj, 0, n_threads, job);
            /* the caller's last wait ends the job: every part of every step has run */
            for (int s = 0; s < POOL_STEPS; s++)
                for (int q = 0; q < pool_parts(s); q++)
                    if (atomic_load(&pj->runs[s][q]) != j + 1) {
                        T_CHECK(0, "job %d step %d part %d ran %d times in all", j, s, q, atomic_load(&pj->runs[s][q]));
                        j = POOL_JOBS;
                    }
        }
        T_CHECK(atomic_load(&pj->order_errors) == 0, "%d parts ran before the previous step had finished",
                atomic_load(&pj->order_errors));
        threadpool_free(pj->tp);
    }
    free(pj);
    test_end(name);
}

/* The pool with every thread on one CPU (the workers inherit the caller's affinity): its threads
 * see each other there and sleep instead of spinning; the same checks. */
static void test_pool_one_cpu(void)
{
    cpu_set_t all, one;
    if (sched_getaffinity(0, sizeof all, &all) || sched_getcpu() < 0) {
        test_skip("threadpool on one CPU", "no CPU affinity");
        return;
    }
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    if (sched_setaffinity(0, sizeof one, &one)) {
        test_skip("threadpool on one CPU", "sched_setaffinity failed");
        return;
    }
    test_pool(3, THREADPOOL_SPIN, " on one CPU");
    sched_setaffinity(0, sizeof all, &all);
}

/* ---- models ---- */

typedef struct {
    const model *m;
    const float *inputs;
    size_t in_n;
    int n_inputs, n_iter;
    const float *expect;
    int mismatches, failed;
} ctx_job;

static void *ctx_job_main(void *p)
{
    ctx_job *a = p;
    const int n_classes = model_num_classes(a->m);
    model_ctx *ctx = NULL;
    float *out = malloc((size_t)n_classes * sizeof(float));
    if (!out || model_ctx_init_threads(&ctx, a->m, 2) != CNN_OK) {
        a->failed = 1;
        free(out);
        return NULL;
    }
    for (int it = 0; it < a->n_iter; it++) {
        const int k = it % a->n_inputs;
        model_run(ctx, a->inputs + a->in_n * (size_t)k, out);
        a->mismatches += memcmp(out, a->expect + (size_t)k * n_classes, (size_t)n_classes * sizeof(float)) != 0;
    }
    model_ctx_free(ctx);
    free(out);
    return NULL;
}

/* One reference-manifest entry: its model and its reference inputs. */
typedef struct {
    model *m;
    float *inputs; /* n_inputs images of in_n floats; NULL when the file could not be read */
    size_t in_n;
    int n_inputs, n_classes;
    char inputs_path[2048];
} ref_case;

/* Starts the case named by fmt (with the entry's name) and loads the entry's model and inputs: 0, or
 * -1 after ending the case as failed (an incomplete entry, a model that does not load). */
static int ref_case_begin(json_t *c, const char *fmt, char *case_name, size_t case_bytes, ref_case *r)
{
    const char *name = json_string_value(json_object_get(c, "name"));
    const char *arch = json_string_value(json_object_get(c, "arch"));
    const char *wfile = json_string_value(json_object_get(c, "weights"));
    const char *ifile = json_string_value(json_object_get(c, "inputs"));
    const int size = (int)json_integer_value(json_object_get(c, "input_size"));
    char path[2048], err[1024];
    *r = (ref_case){.n_inputs = (int)json_integer_value(json_object_get(c, "n_inputs"))};
    snprintf(case_name, case_bytes, fmt, name ? name : "?");
    test_begin();
    if (!name || !arch || !wfile || !ifile || r->n_inputs <= 0 || size <= 0) {
        T_CHECK(0, "manifest entry incomplete");
        test_end(case_name);
        return -1;
    }
    snprintf(path, sizeof path, "%s/ref/%s", cache_dir, wfile);
    if (model_load(&r->m, arch, path, err, sizeof err, NULL, 0) != CNN_OK) {
        T_CHECK(0, "model_load(%s): %s", path, err);
        test_end(case_name);
        return -1;
    }
    r->in_n = (size_t)3 * size * size;
    r->n_classes = model_num_classes(r->m);
    snprintf(r->inputs_path, sizeof r->inputs_path, "%s/ref/%s", cache_dir, ifile);
    r->inputs = test_read_f32(r->inputs_path, r->in_n * (size_t)r->n_inputs);
    return 0;
}

/* Logits of every reference input at 1, 2, 3 threads (twice each: the step counters carry over
 * from job to job), then two 2-thread contexts at once. */
#define MODEL_THREADS_CASE "%s: logits bit-identical at 1, 2, 3 threads and with two 2-thread contexts at once"

static void test_model_threads(json_t *c)
{
    char case_name[256];
    ref_case r;
    if (ref_case_begin(c, MODEL_THREADS_CASE, case_name, sizeof case_name, &r)) return;
    float *expect = malloc((size_t)r.n_inputs * r.n_classes * sizeof(float));
    float *out = malloc((size_t)r.n_classes * sizeof(float));
    model_ctx *ctxs[4] = {NULL};
    T_CHECK(r.inputs && expect && out, "reading %s failed", r.inputs_path);
    for (int t = 1; t <= 3 && r.inputs && expect && out; t++) {
        T_CHECK(model_ctx_init_threads(&ctxs[t], r.m, t) == CNN_OK, "context of %d threads", t);
        if (!ctxs[t]) break;
        T_CHECK(model_ctx_threads(ctxs[t]) == t, "model_ctx_threads %d, want %d", model_ctx_threads(ctxs[t]), t);
        for (int rep = 0; rep < 2; rep++)
            for (int k = 0; k < r.n_inputs; k++) {
                float *want = expect + (size_t)k * r.n_classes;
                model_run(ctxs[t], r.inputs + r.in_n * (size_t)k, t == 1 && rep == 0 ? want : out);
                if (t == 1 && rep == 0) continue;
                int first = -1;
                for (int j = 0; j < r.n_classes && first < 0; j++)
                    if (memcmp(&out[j], &want[j], sizeof *out)) first = j;
                T_CHECK(first < 0, "%d threads, input %d, pass %d: logit %d is %.9g, 1 thread gives %.9g", t, k,
                        rep, first, first < 0 ? 0.0 : (double)out[first], first < 0 ? 0.0 : (double)want[first]);
            }
    }
    if (ctxs[1] && ctxs[2] && ctxs[3]) {
        enum { N_CTX = 2 };
        ctx_job jobs[N_CTX];
        pthread_t th[N_CTX];
        int started = 0;
        for (int t = 0; t < N_CTX; t++) {
            jobs[t] = (ctx_job){r.m, r.inputs, r.in_n, r.n_inputs, 2 * r.n_inputs, expect, 0, 0};
            if (pthread_create(&th[t], NULL, ctx_job_main, &jobs[t]) == 0) started++;
        }
        T_CHECK(started == N_CTX, "started %d of %d threads", started, N_CTX);
        for (int t = 0; t < started; t++) {
            pthread_join(th[t], NULL);
            T_CHECK(!jobs[t].failed, "concurrent context %d: init failed", t);
            T_CHECK(jobs[t].mismatches == 0, "concurrent context %d: %d of %d runs differ from 1 thread", t,
                    jobs[t].mismatches, jobs[t].n_iter);
        }
    }
    for (int t = 1; t <= 3; t++) model_ctx_free(ctxs[t]);
    free(r.inputs);
    free(expect);
    free(out);
    model_free(r.m);
    test_end(case_name);
}

/* model_run_batch: batches of mixed inputs (the reference inputs and three derived from them,
 * repeated in a shuffled order) give each input's model_run logits bit for bit, at 1, 2 and 3
 * threads, with batch runs and single runs interleaved on one context (step counters carried
 * over between the two kinds of jobs); the logits are NaN-poisoned before every run. */
#define MODEL_BATCH_CASE "%s: model_run_batch rows bit-identical to model_run (batch 1..9, 1/2/3 threads, mixed inputs)"
#define BATCH_MAX 9
#define BATCH_INPUTS 6

static void test_model_batch(json_t *c)
{
    char case_name[256];
    ref_case r;
    if (ref_case_begin(c, MODEL_BATCH_CASE, case_name, sizeof case_name, &r)) return;
    float *inputs = malloc(r.in_n * BATCH_INPUTS * sizeof(float));
    float *expect = malloc((size_t)BATCH_INPUTS * r.n_classes * sizeof(float));
    float *out = malloc((size_t)BATCH_MAX * r.n_classes * sizeof(float));
    model_ctx *one = NULL;
    T_CHECK(r.inputs && inputs && expect && out && model_ctx_init(&one, r.m) == CNN_OK,
            "reading %s / allocation failed", r.inputs_path);
    T_CHECK(model_batch_layers(r.m) >= 1, "no linear layers to batch at the end of the graph");
    for (int k = 0; r.inputs && inputs && expect && one && k < BATCH_INPUTS; k++) {
        const float *src = r.inputs + r.in_n * (size_t)(k % r.n_inputs);
        float *dst = inputs + r.in_n * (size_t)k;
        for (size_t i = 0; i < r.in_n; i++) /* derived inputs: scaled, shifted, reversed */
            dst[i] = k < r.n_inputs ? src[i] : 0.75f * src[r.in_n - 1 - i] - 0.1f * (float)(k - r.n_inputs);
        model_run(one, dst, expect + (size_t)k * r.n_classes);
    }
    /* batch sizes per thread count: every size at 1 thread would take long for Inception v3 */
    static const int sizes[3][4] = {{1, 2, 5, 9}, {3, 9, 0, 0}, {2, 4, 0, 0}};
    for (int t = 1; t <= 3 && one; t++) {
        model_ctx *ctx = NULL;
        T_CHECK(model_ctx_init_batch(&ctx, r.m, t, BATCH_MAX) == CNN_OK && model_ctx_max_batch(ctx) == BATCH_MAX,
                "batch context of %d threads", t);
        for (int si = 0; ctx && si < 4 && sizes[t - 1][si]; si++) {
            const int n = sizes[t - 1][si];
            const float *in[BATCH_MAX];
            int which[BATCH_MAX];
            for (int b = 0; b < n; b++) {
                which[b] = (b * 5 + n + t) % BATCH_INPUTS;
                in[b] = inputs + r.in_n * (size_t)which[b];
            }
            for (size_t i = 0; i < (size_t)BATCH_MAX * r.n_classes; i++) out[i] = NAN;
            model_run_batch(ctx, in, n, out);
            for (int b = 0; b < n; b++) {
                const float *want = expect + (size_t)which[b] * r.n_classes, *got = out + (size_t)b * r.n_classes;
                int first = -1;
                for (int j = 0; j < r.n_classes && first < 0; j++)
                    if (memcmp(&got[j], &want[j], sizeof *got)) first = j;
                T_CHECK(first < 0, "%d threads, batch of %d, row %d (input %d): logit %d is %.9g, model_run gives %.9g",
                        t, n, b, which[b], first, first < 0 ? 0.0 : (double)got[first],
                        first < 0 ? 0.0 : (double)want[first]);
            }
            for (int j = n * r.n_classes; j < BATCH_MAX * r.n_classes; j++)
                if (!isnan(out[j])) {
                    T_CHECK(0, "%d threads, batch of %d: logits row %d written", t, n, j / r.n_classes);
                    break;
                }
            /* a single run on the same context right after a batch */
            model_run(ctx, inputs, out);
            T_CHECK(!memcmp(out, expect, (size_t)r.n_classes * sizeof(float)),
                    "%d threads: model_run after a batch of %d differs", t, n);
        }
        model_ctx_free(ctx);
    }
    model_ctx_free(one);
    free(r.inputs);
    free(inputs);
    free(expect);
    free(out);
    model_free(r.m);
    test_end(case_name);
}

int main(void)
{
    const char *c = getenv("CNN_CACHE");
    snprintf(cache_dir, sizeof cache_dir, "%s", c ? c : "cache");
    openblas_set_num_threads(1);

    test_pool(1, THREADPOOL_SPIN, "");
    test_pool(2, THREADPOOL_SPIN, "");
    test_pool(5, THREADPOOL_SPIN, "");
    test_pool(2, THREADPOOL_SLEEP, "");
    test_pool(5, THREADPOOL_SLEEP, "");
    test_pool_one_cpu();

    test_begin();
    model_ctx *ctx = (model_ctx *)&ctx;
    T_CHECK(model_ctx_init_threads(&ctx, NULL, 0) == CNN_ERR_ARG && ctx == NULL, "0 threads must be CNN_ERR_ARG");
    T_CHECK(model_ctx_init_threads(&ctx, NULL, MODEL_MAX_THREADS + 1) == CNN_ERR_ARG && ctx == NULL,
            "%d threads must be CNN_ERR_ARG", MODEL_MAX_THREADS + 1);
    T_CHECK(model_ctx_init_batch(&ctx, NULL, 1, 0) == CNN_ERR_ARG && ctx == NULL, "batch 0 must be CNN_ERR_ARG");
    T_CHECK(model_ctx_init_batch(&ctx, NULL, 1, MODEL_MAX_BATCH + 1) == CNN_ERR_ARG && ctx == NULL,
            "batch %d must be CNN_ERR_ARG", MODEL_MAX_BATCH + 1);
    test_end("model_ctx_init_threads / _batch reject 0 and too many threads or batch inputs");

    json_t *man, *found[TEST_N_REF_CASES];
    int have_manifest = test_ref_manifest(cache_dir, &man, found);
    for (int i = 0; i < TEST_N_REF_CASES; i++) {
        if (found[i]) {
            test_model_threads(found[i]);
            test_model_batch(found[i]);
            continue;
        }
        char case_name[256];
        const char *why = have_manifest ? "not in the reference manifest (rerun make ref)"
                                        : "no reference manifest (run make ref; needs python3-torch)";
        snprintf(case_name, sizeof case_name, MODEL_THREADS_CASE, test_ref_cases[i]);
        test_skip(case_name, why);
        snprintf(case_name, sizeof case_name, MODEL_BATCH_CASE, test_ref_cases[i]);
        test_skip(case_name, why);
    }
    json_decref(man);
    return test_finish();
}
