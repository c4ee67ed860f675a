/* `cnnserve bench`: batch-1 latency of model_run per model and context thread count, with the
 * achieved GFLOP/s set against the machine's sgemm peak measured in the same run. The input is a
 * fixed pattern that bench/peer_torch.py and bench/peer_ort.js reproduce exactly, so the peers time
 * the same computation and their logits can be compared with ours. `--train` times training steps
 * instead (model_train_step + an SGD update at batch --batch, BatchNorm frozen), as
 * bench/peer_torch_train.py does with PyTorch. */
#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../core/optim.h"
#include "../models/model.h"
#include "../models/model_train.h"
#include "cli.h"
#include "config.h"
#include "timing.h"
#include "version.h"

#define BENCH_MAX_MODELS 16
#define BENCH_MAX_THREADS 8
#define BENCH_LOGITS_HEAD 8 /* logits reported per run, for the cross-check against the peers */
#define BENCH_SGEMM_REPS 20
#define BENCH_MIN_CAPPED_ITERS 10 /* timed passes done even when --max-seconds has run out */

static const char usage_text[] =
    "usage: cnnserve bench [flags]\n"
    "\n"
    "Times model_run at batch 1 on a fixed input: per model and thread count a warm-up, then timed\n"
    "passes; prints median/p90/p99 ms, MACs and achieved GFLOP/s (2*MACs/median) against the\n"
    "machine's sgemm peak (N^3 OpenBLAS sgemm at the same thread count, measured before and after the\n"
    "models).\n"
    "\n"
    "  --weights-dir DIR   where <model>.safetensors files live (default ./weights)\n"
    "  --models LIST       comma list of models (default: every model whose file exists)\n"
    "  --threads LIST      comma list of thread counts (default 1,2): threads of the model context,\n"
    "                      which computes every layer of one inference split over them (results are\n"
    "                      bit-identical for every count); OpenBLAS runs on 1 thread meanwhile\n"
    "  --iters N           timed passes per model and thread count (default 100)\n"
    "  --warmup N          untimed passes before them (default 10)\n"
    "  --max-seconds S     time cap per model and thread count (default 0: none): the timed passes\n"
    "                      stop after S seconds once 10 are done, the warm-up after S/6 seconds; the\n"
    "                      JSON records how many passes ran (bounds a run on an overloaded machine)\n"
    "  --sgemm-n N         matrix size of the sgemm peak measurement (default 1024)\n"
    "  --json FILE         also write the results as JSON to FILE\n"
    "  --train             time training steps instead: forward + cross-entropy + backward + SGD update\n"
    "                      (momentum 0.9, weight decay 1e-4) of --batch copies of the fixed input, BatchNorm\n"
    "                      frozen, dropout as in training; --iters/--warmup count steps; GFLOP/s counts\n"
    "                      3 x the forward MACs per image\n"
    "  --batch B           images per training step (default 32)\n"
    "\n"
    "Exit status: 0 when every model ran, 1 when some model failed to load, 2 on bad usage.\n";

typedef struct {
    char weights_dir[1024];
    char json_path[1024]; /* "" = no JSON file */
    const model_arch *archs[BENCH_MAX_MODELS];
    int n_models; /* 0 = every model whose file exists */
    int threads[BENCH_MAX_THREADS];
    int n_threads;
    int n_iters, n_warmup, sgemm_n;
    int max_seconds; /* 0 = no cap */
    int train, batch; /* --train: training steps of batch images */
    int show_help;
} bench_opts;

/* One sgemm peak measurement: best and median GFLOP/s over BENCH_SGEMM_REPS products. */
typedef struct {
    double best_gflops, median_gflops;
} sgemm_result;

/* --threads: a comma list of thread counts into o->threads. */
static cnn_status parse_thread_list(void *opts, const char *csv, char *err, size_t err_bytes)
{
    bench_opts *o = opts;
    char buf[256];
    if (strlen(csv) >= sizeof buf) return cnn_err(err, err_bytes, CNN_ERR_ARG, "list too long");
    memcpy(buf, csv, strlen(csv) + 1);
    o->n_threads = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int64_t n;
        if (o->n_threads >= BENCH_MAX_THREADS || config_parse_int(tok, 1, 1024, &n) != CNN_OK)
            return cnn_err(err, err_bytes, CNN_ERR_ARG, "expected up to %d thread counts in 1..1024, got '%s'",
                           BENCH_MAX_THREADS, csv);
        o->threads[o->n_threads++] = (int)n;
    }
    return o->n_threads ? CNN_OK : cnn_err(err, err_bytes, CNN_ERR_ARG, "empty thread list");
}

/* --models: a comma list of model names or aliases into o->archs (duplicates dropped). */
static cnn_status parse_model_list(void *opts, const char *csv, char *err, size_t err_bytes)
{
    bench_opts *o = opts;
    char buf[1024];
    if (strlen(csv) >= sizeof buf) return cnn_err(err, err_bytes, CNN_ERR_ARG, "list too long");
    memcpy(buf, csv, strlen(csv) + 1);
    o->n_models = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        const model_arch *arch = model_arch_find(tok);
        if (!arch) return cnn_err(err, err_bytes, CNN_ERR_ARG, "unknown model '%s'", tok);
        int dup = 0;
        for (int i = 0; i < o->n_models; i++) dup |= o->archs[i] == arch;
        if (dup) continue;
        if (o->n_models >= BENCH_MAX_MODELS)
            return cnn_err(err, err_bytes, CNN_ERR_ARG, "more than %d models", BENCH_MAX_MODELS);
        o->archs[o->n_models++] = arch;
    }
    return o->n_models ? CNN_OK : cnn_err(err, err_bytes, CNN_ERR_ARG, "empty model list");
}

static const config_flag bench_flags[] = {
    CONFIG_STR("weights-dir", bench_opts, weights_dir),
    CONFIG_STR("json", bench_opts, json_path),
    CONFIG_CUSTOM("models", parse_model_list),
    CONFIG_CUSTOM("threads", parse_thread_list),
    CONFIG_INT("iters", bench_opts, n_iters, 1, 1000000),
    CONFIG_INT("warmup", bench_opts, n_warmup, 0, 1000000),
    CONFIG_INT("sgemm-n", bench_opts, sgemm_n, 16, 8192),
    CONFIG_INT("max-seconds", bench_opts, max_seconds, 0, 86400),
    CONFIG_SWITCH("train", bench_opts, train),
    CONFIG_INT("batch", bench_opts, batch, 1, 1024),
    CONFIG_SWITCH("help", bench_opts, show_help),
};

/* Parses flags into o; 0, or 2 after printing a usage error. */
static int parse_args(int argc, char **argv, bench_opts *o)
{
    *o = (bench_opts){.weights_dir = "./weights", .threads = {1, 2}, .n_threads = 2, .n_iters = 100,
                      .n_warmup = 10, .sgemm_n = 1024, .batch = 32};
    char err[512];
    if (config_parse_flags(bench_flags, sizeof bench_flags / sizeof bench_flags[0], o, NULL, argc, argv, NULL, NULL,
                           err, sizeof err) != CNN_OK) {
        fprintf(stderr, "cnnserve bench: %s\n", err);
        return 2;
    }
    return 0;
}

/* The fixed input: x[i] = (i mod 251) / 125 - 1, computed in double and rounded to float. */
static void bench_fill_input(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)((double)(i % 251) / 125.0 - 1.0);
}

/* p-th percentile (0..100) of n sorted values, linear between closest ranks (numpy's default). */
static double bench_percentile(const double *sorted, int n, double p)
{
    double pos = p / 100.0 * (n - 1);
    int lo = (int)floor(pos);
    int hi = lo + 1 < n ? lo + 1 : lo;
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* /proc/loadavg's three averages as a JSON array, or JSON null where it cannot be read. */
static json_t *bench_loadavg_json(void)
{
    double l[3];
    FILE *f = fopen("/proc/loadavg", "r");
    int n = f ? fscanf(f, "%lf %lf %lf", &l[0], &l[1], &l[2]) : 0;
    if (f) fclose(f);
    return n == 3 ? json_pack("[f,f,f]", l[0], l[1], l[2]) : json_null();
}

/* "model name" of /proc/cpuinfo into buf ("" when absent). */
static void bench_cpu_model(char *buf, size_t n_bytes)
{
    buf[0] = '\0';
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        const char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !colon) continue;
        snprintf(buf, n_bytes, "%s", colon + 1 + (colon[1] == ' '));
        buf[strcspn(buf, "\n")] = '\0';
        break;
    }
    fclose(f);
}

/* Times n x n x n sgemm products at the current OpenBLAS thread count. */
static cnn_status bench_sgemm(int n, sgemm_result *out, char *err, size_t err_bytes)
{
    size_t n_elems = (size_t)n * (size_t)n;
    float *a = malloc(n_elems * sizeof *a), *b = malloc(n_elems * sizeof *b), *c = malloc(n_elems * sizeof *c);
    cnn_status st = CNN_OK;
    if (!a || !b || !c) {
        st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "sgemm %d: out of memory", n);
        goto done;
    }
    for (size_t i = 0; i < n_elems; i++) {
        a[i] = (float)((double)(i % 97) / 97.0 - 0.5);
        b[i] = (float)((double)(i % 89) / 89.0 - 0.5);
    }
    double gflops[BENCH_SGEMM_REPS];
    double flop = 2.0 * n * (double)n * n;
    for (int r = -2; r < BENCH_SGEMM_REPS; r++) { /* two untimed products first */
        uint64_t t0 = timing_now_ns();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double s = (double)(timing_now_ns() - t0) / 1e9;
        if (r >= 0) gflops[r] = s > 0 ? flop / s / 1e9 : 0.0;
    }
    qsort(gflops, BENCH_SGEMM_REPS, sizeof gflops[0], cmp_double);
    out->best_gflops = gflops[BENCH_SGEMM_REPS - 1];
    out->median_gflops = bench_percentile(gflops, BENCH_SGEMM_REPS, 50);
done:
    free(a);
    free(b);
    free(c);
    return st;
}

/* sgemm at every thread count; results[t] for o->threads[t]. Measured in a child process: after a
 * multi-threaded call OpenBLAS's threads spin for ~0.1 s (2^28 cycles) before they sleep, and in
 * this process they would take a core from the model context's threads timed next (a 2-thread
 * context then started on one core with its caller: MobileNetV3-Small at 2 threads timed as slow as
 * at 1). The child's threads end with it. */
static cnn_status bench_sgemm_all(const bench_opts *o, sgemm_result *results, char *err, size_t err_bytes)
{
    int fd[2];
    if (pipe(fd)) return cnn_err(err, err_bytes, CNN_ERR_IO, "sgemm: pipe: %s", strerror(errno));
    fflush(NULL); /* the child must not write the parent's buffered output again */
    const pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return cnn_err(err, err_bytes, CNN_ERR_IO, "sgemm: fork: %s", strerror(errno));
    }
    if (pid == 0) {
        close(fd[0]);
        int ok = 1;
        for (int t = 0; t < o->n_threads && ok; t++) {
            openblas_set_num_threads(o->threads[t]);
            ok = bench_sgemm(o->sgemm_n, &results[t], err, err_bytes) == CNN_OK;
        }
        const size_t n_bytes = ok ? (size_t)o->n_threads * sizeof *results : 0;
        ok = ok && write(fd[1], results, n_bytes) == (ssize_t)n_bytes;
        _exit(ok ? 0 : 1);
    }
    close(fd[1]);
    const size_t want = (size_t)o->n_threads * sizeof *results;
    size_t got = 0;
    while (got < want) {
        const ssize_t r = read(fd[0], (char *)results + got, want - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (got < want || !WIFEXITED(status) || WEXITSTATUS(status))
        return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "sgemm %d: the measuring process failed (out of memory?)",
                       o->sgemm_n);
    for (int t = 0; t < o->n_threads; t++)
        printf("sgemm %dx%dx%d, %d thread(s): best %.1f GFLOP/s, median %.1f\n", o->sgemm_n, o->sgemm_n, o->sgemm_n,
               o->threads[t], results[t].best_gflops, results[t].median_gflops);
    return CNN_OK;
}

/* Runs one loaded model at every thread count; appends one JSON object per thread count to runs.
 * times holds o->n_iters doubles. */
static void bench_model_runs(const bench_opts *o, const model *m, const float *input, float *logits, double *times,
                             json_t *runs)
{
    double macs = (double)model_n_macs(m);
    /* The context's threads do the parallel work; OpenBLAS (only on paths without the AVX-512
     * kernels) runs on thread 0 alone and must not compete with them for the cores. */
    openblas_set_num_threads(1);
    for (int t = 0; t < o->n_threads; t++) {
        model_ctx *ctx = NULL;
        cnn_status st = model_ctx_init_threads(&ctx, m, o->threads[t]);
        if (st != CNN_OK) {
            fprintf(stderr, "cnnserve bench: %s: no context of %d threads: %s\n", model_name(m), o->threads[t],
                    cnn_status_str(st));
            json_array_append_new(runs, json_pack("{s:i,s:s}", "threads", o->threads[t], "error", cnn_status_str(st)));
            continue;
        }
        json_t *load = bench_loadavg_json();
        double cap_ms = o->max_seconds * 1000.0;
        uint64_t t_start = timing_now_ns();
        for (int i = 0; i < o->n_warmup; i++) {
            if (i && cap_ms > 0 && timing_ms(t_start, timing_now_ns()) > cap_ms / 6) break;
            model_run(ctx, input, logits);
        }
        int n = 0;
        double timed_ms = 0.0;
        while (n < o->n_iters && !(cap_ms > 0 && n >= BENCH_MIN_CAPPED_ITERS && timed_ms > cap_ms)) {
            uint64_t t0 = timing_now_ns();
            model_run(ctx, input, logits);
            times[n] = timing_ms(t0, timing_now_ns());
            timed_ms += times[n++];
        }
        model_ctx_free(ctx);
        qsort(times, (size_t)n, sizeof times[0], cmp_double);
        double median = bench_percentile(times, n, 50);
        double gflops = median > 0 ? 2.0 * macs / (median * 1e6) : 0.0;
        int argmax = 0;
        for (int k = 1; k < model_num_classes(m); k++) argmax = logits[k] > logits[argmax] ? k : argmax;
        json_t *head = json_array();
        for (int k = 0; k < BENCH_LOGITS_HEAD && k < model_num_classes(m); k++)
            json_array_append_new(head, json_real(logits[k]));
        /* every pass (sorted), so a harness can pool passes from several rounds */
        json_t *all = json_array();
        for (int k = 0; k < n; k++) json_array_append_new(all, json_real(times[k]));
        json_array_append_new(
            runs, json_pack("{s:i,s:i,s:f,s:f,s:f,s:f,s:f,s:f,s:o,s:i,s:o,s:o}", "threads", o->threads[t], "iters", n,
                            "median_ms", median, "p90_ms", bench_percentile(times, n, 90), "p99_ms",
                            bench_percentile(times, n, 99), "min_ms", times[0], "max_ms", times[n - 1], "gflops",
                            gflops, "loadavg_before", load, "argmax", argmax, "logits_head", head, "times_ms", all));
        printf("%-20s %2dT  median %8.3f ms  p90 %8.3f  p99 %8.3f  %7.2f GFLOP/s  (%d passes)\n", model_name(m),
               o->threads[t], median, bench_percentile(times, n, 90), bench_percentile(times, n, 99), gflops, n);
        fflush(stdout);
    }
}

/* A loss for the JSON: null when not finite (jansson refuses NaN/inf; the fixed input's SGD steps
 * may diverge after a few, which says nothing about the speed). */
static json_t *bench_json_loss(double loss) { return isfinite(loss) ? json_real(loss) : json_null(); }

/* Times o->n_iters training steps (after o->n_warmup) of one model at every thread count: each step is
 * model_train_step on o->batch copies of the fixed input (labels i mod K) and an SGD update of every
 * parameter. Appends one JSON object per thread count to runs. */
static void bench_train_runs(const bench_opts *o, const model_arch *arch, const char *path, double macs,
                             double *times, json_t *runs)
{
    openblas_set_num_threads(1);
    for (int t = 0; t < o->n_threads; t++) {
        char err[1024] = "";
        model_train *tr = NULL;
        optim *opt = NULL;
        optim_param *ops = NULL;
        float *input = NULL;
        int *labels = NULL;
        model_train_opts mo = {.max_batch = o->batch, .n_threads = o->threads[t], .bn = MODEL_BN_FROZEN,
                               .dropout = 1, .seed = 1, .n_classes = 0};
        cnn_status st = model_train_init(&tr, arch->name, path, &mo, err, sizeof err);
        if (st == CNN_OK) {
            const int s = model_train_input_size(tr), k = model_train_num_classes(tr), n_params = model_train_n_params(tr);
            const size_t per = 3 * (size_t)s * (size_t)s;
            input = malloc((size_t)o->batch * per * sizeof *input);
            labels = malloc((size_t)o->batch * sizeof *labels);
            ops = calloc((size_t)n_params, sizeof *ops);
            if (!input || !labels || !ops) {
                st = cnn_err(err, sizeof err, CNN_ERR_NOMEM, "out of memory");
            } else {
                for (int i = 0; i < o->batch; i++) {
                    bench_fill_input(input + (size_t)i * per, per);
                    labels[i] = i % k;
                }
                for (int i = 0; i < n_params; i++) {
                    model_param *p = model_train_param(tr, i);
                    ops[i] = (optim_param){p->data, p->grad, p->n,
                                           p->is_head ? OPTIM_GROUP_HEAD : OPTIM_GROUP_BACKBONE, 0};
                }
                optim_opts oo = {.kind = OPTIM_SGD, .lr = {1e-3, 1e-3}, .weight_decay = 1e-4, .momentum = 0.9};
                st = optim_init(&opt, &oo, ops, n_params, err, sizeof err);
            }
        }
        if (st != CNN_OK) {
            fprintf(stderr, "cnnserve bench: %s: training at %d threads: %s\n", arch->name, o->threads[t],
                    err[0] ? err : cnn_status_str(st));
            json_array_append_new(runs, json_pack("{s:i,s:s}", "threads", o->threads[t], "error",
                                                  err[0] ? err : cnn_status_str(st)));
            goto next;
        }
        json_t *load = bench_loadavg_json();
        double loss_first = 0.0, loss = 0.0;
        int n = 0;
        for (int i = 0; i < o->n_warmup + o->n_iters && st == CNN_OK; i++) {
            uint64_t t0 = timing_now_ns();
            st = model_train_step(tr, input, labels, o->batch, (uint64_t)i, &loss, NULL);
            if (st == CNN_OK) optim_step(opt, 1.0);
            double ms = timing_ms(t0, timing_now_ns());
            if (i == 0) loss_first = loss;
            if (i >= o->n_warmup) times[n++] = ms;
        }
        if (st != CNN_OK || n == 0) {
            json_decref(load);
            json_array_append_new(runs, json_pack("{s:i,s:s}", "threads", o->threads[t], "error",
                                                  st != CNN_OK ? cnn_status_str(st) : "no timed step"));
            goto next;
        }
        json_t *all = json_array(); /* every step in the order measured, for pooling over rounds */
        for (int i = 0; i < n; i++) json_array_append_new(all, json_real(times[i]));
        qsort(times, (size_t)n, sizeof times[0], cmp_double);
        double median = bench_percentile(times, n, 50);
        double ips = median > 0 ? o->batch * 1000.0 / median : 0.0;
        double gflops = 3.0 * 2.0 * macs * ips / 1e9;
        json_array_append_new(
            runs, json_pack("{s:i,s:i,s:i,s:f,s:f,s:f,s:f,s:f,s:o,s:o,s:I,s:I,s:o,s:o}", "threads", o->threads[t],
                            "batch", o->batch, "iters", n, "median_ms", median, "min_ms", times[0], "max_ms",
                            times[n - 1], "images_per_s", ips, "gflops", gflops, "loss_first", bench_json_loss(loss_first),
                            "loss_last", bench_json_loss(loss), "macs", (json_int_t)macs, "train_bytes",
                            (json_int_t)model_train_bytes(tr), "loadavg_before", load, "times_ms", all));
        printf("%-20s %2dT  batch %d: median %9.1f ms/step  %7.2f images/s  %7.2f GFLOP/s  (%d steps)\n",
               arch->name, o->threads[t], o->batch, median, ips, gflops, n);
        fflush(stdout);
    next:
        optim_free(opt);
        free(ops);
        free(labels);
        free(input);
        model_train_free(tr);
    }
}

/* Loads one model and benchmarks it; returns its JSON entry (with "error" when it failed). */
static json_t *bench_model(const bench_opts *o, const model_arch *arch, double *times)
{
    char path[1200], err[1024], warn[512];
    snprintf(path, sizeof path, "%s/%s.safetensors", o->weights_dir, arch->name);
    model *m = NULL;
    float *input = NULL, *logits = NULL;
    json_t *entry = json_pack("{s:s,s:s}", "model", arch->name, "file", path);
    if (!entry) return NULL;
    cnn_status st = model_load(&m, arch->name, path, err, sizeof err, warn, sizeof warn);
    if (st != CNN_OK) {
        fprintf(stderr, "cnnserve bench: %s\n", err);
        json_object_set_new(entry, "error", json_string(err));
        goto done;
    }
    if (warn[0]) fprintf(stderr, "cnnserve bench: %s: %s\n", arch->name, warn);
    size_t n_input = 3 * (size_t)model_input_size(m) * (size_t)model_input_size(m);
    input = malloc(n_input * sizeof *input);
    logits = malloc((size_t)model_num_classes(m) * sizeof *logits);
    if (!input || !logits) {
        json_object_set_new(entry, "error", json_string("out of memory"));
        goto done;
    }
    bench_fill_input(input, n_input);
    json_t *runs = json_array();
    json_object_update_new(entry, json_pack("{s:I,s:I,s:i,s:i,s:o}", "macs", (json_int_t)model_n_macs(m), "params",
                                            (json_int_t)model_n_params(m), "input_size", model_input_size(m),
                                            "num_classes", model_num_classes(m), "runs", runs));
    if (o->train) {
        const double macs = (double)model_n_macs(m);
        model_free(m); /* the training graph holds its own copy of the weights */
        m = NULL;
        bench_train_runs(o, arch, path, macs, times, runs);
    } else {
        bench_model_runs(o, m, input, logits, times, runs);
    }
done:
    free(input);
    free(logits);
    model_free(m);
    return entry;
}

/* Fills o->archs with every architecture whose weights file exists. */
static void bench_find_models(bench_opts *o)
{
    int n_archs;
    const model_arch *archs = model_archs(&n_archs);
    for (int i = 0; i < n_archs && o->n_models < BENCH_MAX_MODELS; i++) {
        char path[1200];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s.safetensors", o->weights_dir, archs[i].name);
        if (!stat(path, &sb)) o->archs[o->n_models++] = &archs[i];
    }
}

/* Machine, library and run settings. */
static json_t *bench_env_json(const bench_opts *o)
{
    char cpu[256], date[32];
    struct utsname un;
    time_t now = time(NULL);
    struct tm tm;
    bench_cpu_model(cpu, sizeof cpu);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    long n_cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return json_pack("{s:s,s:s,s:s,s:s,s:i,s:{s:o,s:s,s:s},s:i,s:i,s:i,s:f,s:s}", "version", CNNSERVE_VERSION,
                     "date_utc", date, "host", uname(&un) ? "" : un.nodename, "cpu_model", cpu, "n_cpus",
                     (int)n_cpus, "openblas", "coretype_env", coretype ? json_string(coretype) : json_null(),
                     "corename", openblas_get_corename(), "config", openblas_get_config(), "iters", o->n_iters,
                     "warmup", o->n_warmup, "sgemm_n", o->sgemm_n, "max_seconds", (double)o->max_seconds, "threads_meaning",
                     "model runs: threads of the model context (one inference split over them, OpenBLAS at 1 "
                     "thread); sgemm peak: OpenBLAS threads");
}

/* The sgemm peak at each thread count: the best product before or after the models. */
static void bench_sgemm_peaks(const bench_opts *o, const sgemm_result *before, const sgemm_result *after,
                              double *peaks)
{
    for (int t = 0; t < o->n_threads; t++)
        peaks[t] = before[t].best_gflops > after[t].best_gflops ? before[t].best_gflops : after[t].best_gflops;
}

static json_t *bench_sgemm_json(const bench_opts *o, const sgemm_result *before, const sgemm_result *after,
                                const double *peaks)
{
    json_t *arr = json_array();
    for (int t = 0; t < o->n_threads; t++) {
        double peak = peaks[t];
        json_array_append_new(arr, json_pack("{s:i,s:f,s:f,s:f,s:f,s:f}", "threads", o->threads[t], "peak_gflops",
                                             peak, "best_before_gflops", before[t].best_gflops, "best_after_gflops",
                                             after[t].best_gflops, "median_before_gflops", before[t].median_gflops,
                                             "median_after_gflops", after[t].median_gflops));
    }
    return arr;
}

/* Adds each run's ratio of achieved GFLOP/s to the sgemm peak at its thread count, and prints them. */
static void bench_add_ratios(const bench_opts *o, json_t *models, const double *peaks)
{
    size_t i, j;
    json_t *entry, *run;
    printf("\n%-20s %7s %10s %9s %12s\n", "model", "threads", "median_ms", "GFLOP/s", "of sgemm peak");
    json_array_foreach(models, i, entry) {
        json_array_foreach(json_object_get(entry, "runs"), j, run) {
            int threads = (int)json_integer_value(json_object_get(run, "threads"));
            double gflops = json_real_value(json_object_get(run, "gflops"));
            double peak = 0.0;
            for (int t = 0; t < o->n_threads; t++) peak = o->threads[t] == threads ? peaks[t] : peak;
            double ratio = peak > 0 ? gflops / peak : 0.0;
            json_object_set_new(run, "sgemm_peak_gflops", json_real(peak));
            json_object_set_new(run, "peak_ratio", json_real(ratio));
            printf("%-20s %7d %10.3f %9.2f %11.1f%%\n", json_string_value(json_object_get(entry, "model")), threads,
                   json_real_value(json_object_get(run, "median_ms")), gflops, 100.0 * ratio);
        }
    }
}

static int bench_write_json(const char *path, json_t *root)
{
    if (json_dump_file(root, path, JSON_INDENT(1) | JSON_REAL_PRECISION(7))) {
        fprintf(stderr, "cnnserve bench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

int bench_main(int argc, char **argv)
{
    bench_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    if (o.show_help) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (!o.n_models) bench_find_models(&o);
    if (!o.n_models) {
        fprintf(stderr, "cnnserve bench: no <model>.safetensors in %s\n", o.weights_dir);
        return 1;
    }
    char err[512];
    sgemm_result before[BENCH_MAX_THREADS], after[BENCH_MAX_THREADS];
    double peaks[BENCH_MAX_THREADS];
    double *times = malloc((size_t)o.n_iters * sizeof *times);
    json_t *root = bench_env_json(&o), *models = json_array();
    int n_failed = 0;
    rc = 1;
    if (!times || !root || !models) {
        fprintf(stderr, "cnnserve bench: out of memory\n");
        goto done;
    }
    json_object_set_new(root, "loadavg_before", bench_loadavg_json());
    if (bench_sgemm_all(&o, before, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "cnnserve bench: %s\n", err);
        goto done;
    }
    for (int i = 0; i < o.n_models; i++) {
        json_t *entry = bench_model(&o, o.archs[i], times);
        n_failed += !entry || json_object_get(entry, "error");
        json_array_append_new(models, entry);
    }
    if (bench_sgemm_all(&o, after, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "cnnserve bench: %s\n", err);
        goto done;
    }
    json_object_set_new(root, "loadavg_after", bench_loadavg_json());
    bench_sgemm_peaks(&o, before, after, peaks);
    bench_add_ratios(&o, models, peaks);
    json_object_set_new(root, "sgemm", bench_sgemm_json(&o, before, after, peaks));
    json_object_set(root, "models", models);
    rc = n_failed ? 1 : 0;
    if (o.json_path[0] && bench_write_json(o.json_path, root)) rc = 1;
done:
    free(times);
    json_decref(models);
    json_decref(root);
    return rc;
}
