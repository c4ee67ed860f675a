/* `cnnserve classify`: the server's classification path (pipeline_classify + pipeline_result_json)
 * run on files, so its answers equal the HTTP answers bit for bit. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "config.h"
#include "fileio.h"
#include "http.h"
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
    "                      or 'all' for every model found (default: the server's default, mobilenet_v3_large\n"
    "                      when its file is there, else the first model file in registry order)\n"
    "  --top-k K           predictions per model, 1..1000 (default 5)\n"
    "  --threads N         threads computing each inference, 1..64 (default: the CPUs this process may\n"
    "                      use (cgroup quota, affinity), at most 64); every layer is split over them, so\n"
    "                      the answers equal the HTTP ones (1 thread per worker) bit for bit at any N\n"
    "  --max-pixels N      largest decoded image, width*height (default " IMAGE_DEFAULT_MAX_PIXELS_TEXT ")\n"
    "  --json              one JSON object per file and line, same schema as POST /v1/classify\n"
    "\n"
    "Exit status: 0 when every file was classified, 1 when some file failed, 2 on bad usage.\n";

typedef struct {
    char weights_dir[1024];
    char model[64]; /* "" = the default model */
    int top_k, n_threads, json, show_help;
    int64_t max_pixels;
} classify_opts;

static const config_flag classify_flags[] = {
    CONFIG_STR("weights-dir", classify_opts, weights_dir),
    CONFIG_STR("model", classify_opts, model),
    CONFIG_INT("top-k", classify_opts, top_k, 1, PIPELINE_TOPK_MAX),
    CONFIG_INT("threads", classify_opts, n_threads, 1, MODEL_MAX_THREADS),
    CONFIG_INT64("max-pixels", classify_opts, max_pixels, 1, INT64_C(1) << 40),
    CONFIG_SWITCH("json", classify_opts, json),
    CONFIG_SWITCH("help", classify_opts, show_help),
};

/* Parses flags into o and lists the file arguments (flags and files may be mixed; all after "--" are
 * files) in files[0..*n_files). 0, or 2 after printing a usage error. */
static int parse_args(int argc, char **argv, classify_opts *o, int *files, int *n_files)
{
    *o = (classify_opts){.weights_dir = "./weights", .top_k = 5, .max_pixels = IMAGE_DEFAULT_MAX_PIXELS,
                         .n_threads = cpus_default_threads(MODEL_MAX_THREADS)};
    char err[512];
    if (config_parse_flags(classify_flags, sizeof classify_flags / sizeof classify_flags[0], o, NULL, argc, argv, files,
                           n_files, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "cnnserve classify: %s\n", err);
        return 2;
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
        if (st != CNN_ERR_IO) http_error_of_status(st, &status, &code);
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

/* Loads the model(s) of o and classifies argv[files[0..n_files)]; the exit status. */
static int classify_files(classify_opts *o, char **argv, const int *files, int n_files)
{
    char err[1024];
    if (!o->model[0] && zoo_default_name(o->weights_dir, o->model, sizeof o->model, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "cnnserve classify: %s\n", err);
        return 1;
    }
    int all = !strcasecmp(o->model, "all");

    /* One image at a time on the model contexts' threads; OpenBLAS (only on CPUs without the AVX-512
     * kernels) runs on their thread 0 and gets no threads of its own to compete with them. */
    openblas_set_num_threads(1);

    logger lg;
    log_init(&lg, LOG_FORMAT_TEXT);
    zoo *z;
    if (zoo_load(&z, o->weights_dir, all ? "" : o->model, &lg, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "cnnserve classify: %s\n", err);
        return 1;
    }
    const model *models[ZOO_MAX_MODELS];
    pipeline_request req = {.top_k = o->top_k, .max_pixels = o->max_pixels, .n_slots = z->n_loaded};
    for (int i = 0; i < z->n_loaded; i++) {
        models[i] = z->entries[z->loaded[i]].m;
        req.slots[i] = i;
    }
    pipeline_ws *ws;
    if (pipeline_ws_init_threads(&ws, models, z->n_loaded, o->n_threads, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "cnnserve classify: %s\n", err);
        zoo_release(z);
        return 1;
    }
    int n_failed = 0;
    for (int i = 0; i < n_files; i++) n_failed += classify_file(ws, &req, all, argv[files[i]], o->json);
    pipeline_ws_free(ws);
    zoo_release(z);
    return n_failed ? 1 : 0;
}

int classify_main(int argc, char **argv)
{
    classify_opts o;
    int *files = malloc((size_t)(argc > 0 ? argc : 1) * sizeof *files), n_files = 0;
    if (!files) {
        fprintf(stderr, "cnnserve classify: out of memory\n");
        return 1;
    }
    int rc = parse_args(argc, argv, &o, files, &n_files);
    if (!rc && o.show_help) fputs(usage_text, stdout);
    if (!rc && !o.show_help && !n_files) {
        fprintf(stderr, "cnnserve classify: no input files (see --help)\n");
        rc = 2;
    }
    if (!rc && !o.show_help) rc = classify_files(&o, argv, files, n_files);
    free(files);
    return rc;
}
