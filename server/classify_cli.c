/* `cnnserve classify`: the server's classification path (pipeline_classify + pipeline_result_json)
 * run on files, so its answers equal the HTTP answers bit for bit. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "fileio.h"
#include "log.h"
#include "pipeline.h"
#include "timing.h"
#include "zoo.h"

static const char usage_text[] =
    "usage: cnnserve classify [flags] FILE...\n"
    "\n"
    "Classifies image files with the same decode/preprocess/inference path as the HTTP service.\n"
    "\n"
    "  --weights-dir DIR   where <model>.safetensors files live (default ./weights)\n"
    "  --model NAME        model name or alias, a fine-tuned file's stem (monkeys for monkeys.safetensors),\n"
    "                      or 'all' for every model found (default mobilenet_v3_large)\n"
    "  --top-k K           predictions per model, 1..1000 (default 5)\n"
    "  --threads N         threads computing each inference, 1..64 (default: number of cores, at most\n"
    "                      64); every layer is split over them, so the answers equal the HTTP ones\n"
    "                      (1 thread per worker) bit for bit at any N\n"
    "  --max-pixels N      largest decoded image, width*height (default 50000000)\n"
    "  --json              one JSON object per file and line, same schema as POST /v1/classify\n"
    "\n"
    "Exit status: 0 when every file was classified, 1 when some file failed, 2 on bad usage.\n";

typedef struct {
    const char *weights_dir;
    const char *model;
    int top_k, n_threads, json;
    int64_t max_pixels;
    int first_file;
} classify_opts;

/* Parses flags into o; returns 0, or 2 after printing a usage error, or -1 for --help. */
static int parse_args(int argc, char **argv, classify_opts *o)
{
    long n_cores = sysconf(_SC_NPROCESSORS_ONLN);
    const int n_threads = n_cores < 1 ? 1 : n_cores > MODEL_MAX_THREADS ? MODEL_MAX_THREADS : (int)n_cores;
    *o = (classify_opts){"./weights", "mobilenet_v3_large", 5, n_threads, 0, 50000000, argc};
    for (int a = 0; a < argc; a++) {
        const char *arg = argv[a];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) return -1;
        if (!strcmp(arg, "--json")) {
            o->json = 1;
            continue;
        }
        if (!strcmp(arg, "--")) {
            o->first_file = a + 1;
            return 0;
        }
        if (strncmp(arg, "--", 2)) {
            o->first_file = a;
            return 0;
        }
        if (a + 1 >= argc) {
            fprintf(stderr, "cnnserve classify: %s needs a value (see --help)\n", arg);
            return 2;
        }
        const char *v = argv[++a];
        int64_t n;
        if (!strcmp(arg, "--weights-dir")) {
            o->weights_dir = v;
        } else if (!strcmp(arg, "--model")) {
            o->model = v;
        } else if (!strcmp(arg, "--top-k") && config_parse_int(v, 1, PIPELINE_TOPK_MAX, &n) == CNN_OK) {
            o->top_k = (int)n;
        } else if (!strcmp(arg, "--threads") && config_parse_int(v, 1, MODEL_MAX_THREADS, &n) == CNN_OK) {
            o->n_threads = (int)n;
        } else if (!strcmp(arg, "--max-pixels") && config_parse_int(v, 1, INT64_C(1) << 40, &n) == CNN_OK) {
            o->max_pixels = n;
        } else {
            fprintf(stderr, "cnnserve classify: bad flag or value: %s %s (see --help)\n", arg, v);
            return 2;
        }
    }
    return 0;
}

static void print_text(const char *path, const pipeline_result *res, double read_ms)
{
    printf("%s: %s %dx%d (decoded %dx%d, scale %d/%d, orientation %d); read %.2f ms, decode %.2f ms\n", path,
           image_format_name(res->format), res->src_width, res->src_height, res->width, res->height, res->scale_num,
           res->scale_denom, res->orientation, read_ms, res->decode_ms);
    for (int i = 0; i < res->n_results; i++) {
        const pipeline_model_result *r = &res->results[i];
        printf("  %s: preprocess %.2f ms, inference %.2f ms, postprocess %.3f ms\n", model_name(r->m), r->preprocess_ms,
               r->inference_ms, r->postprocess_ms);
        for (int k = 0; k < r->n_preds; k++)
            printf("    %2d. %.6f  %s (%d)\n", k + 1, (double)r->prob[k], model_class_label(r->m, r->idx[k]), r->idx[k]);
    }
}

static void print_json_error(const char *path, int status, const char *code, const char *msg)
{
    json_t *o = json_pack("{s:s,s:{s:i,s:s,s:s}}", "file", path, "error", "status", status, "code", code, "message", msg);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (s) puts(s);
    free(s);
    json_decref(o);
}

/* Classifies one file; returns 0 on success. */
static int classify_file(pipeline_ws *ws, const pipeline_request *req, int all, const char *path, int json)
{
    char err[512];
    uint64_t t0 = timing_now_ns();
    uint8_t *data = NULL;
    size_t n_bytes = 0;
    cnn_status st = file_read_all(path, &data, &n_bytes, err, sizeof err);
    double read_ms = timing_ms(t0, timing_now_ns());
    pipeline_result res;
    if (st == CNN_OK) st = pipeline_classify(ws, data, n_bytes, req, &res, err, sizeof err);
    free(data);
    if (st != CNN_OK) {
        int status = 400;
        const char *code = "unreadable_file";
        if (st != CNN_ERR_IO) pipeline_error_code(st, &status, &code);
        if (json) print_json_error(path, status, code, err);
        else fprintf(stderr, "%s: %s\n", path, err);
        return 1;
    }
    if (!json) {
        print_text(path, &res, read_ms);
        return 0;
    }
    json_t *o = json_pack("{s:s}", "file", path);
    json_t *answer = pipeline_result_json(&res, all, read_ms, 0.0, timing_ms(t0, timing_now_ns()));
    char *s = NULL;
    if (o && answer && !json_object_update(o, answer)) s = json_dumps(o, PIPELINE_JSON_FLAGS);
    json_decref(o);
    json_decref(answer);
    if (!s) {
        print_json_error(path, 503, "busy", "out of memory");
        return 1;
    }
    puts(s);
    free(s);
    return 0;
}

int classify_main(int argc, char **argv)
{
    classify_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc < 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (rc) return rc;
    if (o.first_file >= argc) {
        fprintf(stderr, "cnnserve classify: no input files (see --help)\n");
        return 2;
    }
    int all = !strcasecmp(o.model, "all");

    /* One image at a time on the model contexts' threads; OpenBLAS (only on CPUs without the AVX-512
     * kernels) runs on their thread 0 and gets no threads of its own to compete with them. */
    openblas_set_num_threads(1);

    logger lg;
    log_init(&lg, LOG_FORMAT_TEXT);
    zoo *z;
    char err[1024];
    if (zoo_load(&z, o.weights_dir, all ? "" : o.model, &lg, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "cnnserve classify: %s\n", err);
        return 1;
    }
    const model *models[ZOO_MAX_MODELS];
    pipeline_request req = {.top_k = o.top_k, .max_pixels = o.max_pixels, .n_slots = z->n_loaded};
    for (int i = 0; i < z->n_loaded; i++) {
        models[i] = z->entries[z->loaded[i]].m;
        req.slots[i] = i;
    }
    pipeline_ws *ws;
    if (pipeline_ws_init_threads(&ws, models, z->n_loaded, o.n_threads, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "cnnserve classify: %s\n", err);
        zoo_release(z);
        return 1;
    }
    int n_failed = 0;
    for (int a = o.first_file; a < argc; a++) n_failed += classify_file(ws, &req, all, argv[a], o.json);
    pipeline_ws_free(ws);
    zoo_release(z);
    return n_failed ? 1 : 0;
}
