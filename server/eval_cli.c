/* `cnnserve eval`: accuracy, cross-entropy, per-class precision/recall/F1, confusion matrix, ROC/AUC
 * and test time per image of models on a labelled image set, through the server's own classification
 * path (pipeline_classify: same decode, preprocessing and inference), so the numbers are what `serve`
 * gives. One JSON report (schema in the README), a table on stdout, a progress line on a terminal. */
#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "dataset.h"
#include "eval_json.h"
#include "eval_metrics.h"
#include "fileio.h"
#include "log.h"
#include "pipeline.h"
#include "timing.h"
#include "version.h"
#include "zoo.h"

#define EVAL_PATH_BYTES 4096
#define EVAL_REPORT_VERSION 1

static const char usage_text[] =
    "usage: cnnserve eval --data DIR|FILE.tsv --out FILE.json [flags]\n"
    "\n"
    "Evaluates models on labelled images with the service's decode/preprocess/inference path:\n"
    "top-1/top-5 accuracy, mean cross-entropy, per-class precision/recall/F1, confusion matrix,\n"
    "one-vs-rest ROC curves with AUC (per class, micro, macro), test time per image (decode,\n"
    "preprocess, inference; median and mean) and images/s, params and MACs. Writes one JSON report\n"
    "and prints a table. Unreadable or undecodable images are counted and skipped.\n"
    "\n"
    "  --data PATH         a class-per-folder tree (<class>/*.jpg|jpeg|png|webp; folder names, or their\n"
    "                      --labels names, are the model's class labels), or a TSV file of\n"
    "                      'file<TAB>class index' lines (paths relative to the file; a header line\n"
    "                      and extra columns are ignored), e.g. imagenet-sample/labels.tsv\n"
    "  --out FILE          the JSON report (written atomically)\n"
    "  --models LIST       comma list of models (default: every model in --weights-dir)\n"
    "  --weights-dir DIR   where the .safetensors files live (default ./weights)\n"
    "  --labels FILE       'folder<TAB>display name' lines for a folder tree\n"
    "  --subset S          all (default), or val / train: the part of a folder tree that\n"
    "                      `cnnserve train --val-split F --seed S` held out / trained on\n"
    "  --val-split F       validation fraction of that split (default 0.3)\n"
    "  --seed S            seed of that split (default 1)\n"
    "  --threads N         threads computing each inference, 1..64 (default: the CPUs this process\n"
    "                      may use: cgroup quota, affinity)\n"
    "  --max-pixels N      largest decoded image, width*height (default " IMAGE_DEFAULT_MAX_PIXELS_TEXT ")\n"
    "  --full-decode       decode JPEGs at full size, as PIL does for torchvision's published figures,\n"
    "                      instead of the service's DCT-scaled decode (to 2x the resize size; on the\n"
    "                      1000-photo ImageNet sample it moves top-1 by 0.0-0.3 points)\n"
    "  --quiet             no progress line\n"
    "\n"
    "Exit status: 0 when every model was evaluated, 1 when a model failed or no image could be\n"
    "read, 2 on bad usage.\n";

typedef struct {
    char data[EVAL_PATH_BYTES];
    char out[EVAL_PATH_BYTES];
    char models[1024];
    char weights_dir[EVAL_PATH_BYTES];
    char labels[EVAL_PATH_BYTES];
    char subset[16];
    double val_split;
    int64_t seed;
    int n_threads;
    int64_t max_pixels;
    int quiet, full_decode, show_help;
} eval_opts;

static const config_flag eval_flags[] = {
    CONFIG_STR("data", eval_opts, data),
    CONFIG_STR("out", eval_opts, out),
    CONFIG_STR("models", eval_opts, models),
    CONFIG_STR("weights-dir", eval_opts, weights_dir),
    CONFIG_STR("labels", eval_opts, labels),
    CONFIG_STR("subset", eval_opts, subset),
    CONFIG_FRACTION("val-split", eval_opts, val_split),
    CONFIG_INT64("seed", eval_opts, seed, 0, INT64_MAX),
    CONFIG_INT("threads", eval_opts, n_threads, 1, MODEL_MAX_THREADS),
    CONFIG_INT64("max-pixels", eval_opts, max_pixels, 1, INT64_C(1) << 40),
    CONFIG_SWITCH("full-decode", eval_opts, full_decode),
    CONFIG_SWITCH("quiet", eval_opts, quiet),
    CONFIG_SWITCH("help", eval_opts, show_help),
};

/* The labelled images: (path, class) items, the class names of a folder tree. */
typedef struct {
    int is_tsv;
    dataset ds;         /* folder tree: every walked item; items below are the chosen subset */
    size_t n_items;
    char **paths;       /* point into ds or tsv_paths */
    int *classes;       /* folder tree: dataset class; TSV: the model class index */
    char **tsv_paths;   /* TSV: owned */
    size_t n_tsv;
} eval_data;

static void eval_data_free(eval_data *d)
{
    if (d->is_tsv) {
        for (size_t i = 0; i < d->n_tsv; i++) free(d->tsv_paths[i]);
        free(d->tsv_paths);
    } else {
        dataset_free(&d->ds);
    }
    free(d->paths);
    free(d->classes);
    memset(d, 0, sizeof *d);
}

static void warn_stderr(void *arg, const char *msg)
{
    (void)arg;
    fprintf(stderr, "cnnserve eval: warning: %s\n", msg);
}

/* TSV: "file<TAB>index[<TAB>...]" lines; a first line whose index is not a number is a header.
 * Relative file names are relative to the TSV's folder. */
static cnn_status load_tsv(eval_data *d, const char *path, char *err, size_t err_bytes)
{
    FILE *f = fopen(path, "r");
    if (!f) return cnn_err(err, err_bytes, CNN_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    char dir[EVAL_PATH_BYTES];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = '\0';
    else dir[0] = '\0';
    cnn_status st = CNN_OK;
    size_t cap = 0, line_no = 0;
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    d->is_tsv = 1;
    while ((len = getline(&line, &line_cap, f)) >= 0) {
        line_no++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (!len || line[0] == '#') continue;
        char *tab = strchr(line, '\t');
        char *end2 = tab ? strchr(tab + 1, '\t') : NULL;
        if (end2) *end2 = '\0';
        int64_t idx;
        if (!tab || config_parse_int(tab + 1, 0, MODEL_MAX_CLASSES - 1, &idx) != CNN_OK) {
            if (line_no == 1 && tab) continue; /* header */
            st = cnn_err(err, err_bytes, CNN_ERR_FORMAT, "%s:%zu: expected 'file<TAB>class index'", path, line_no);
            goto out;
        }
        *tab = '\0';
        if (d->n_tsv == cap) {
            size_t nc = cap ? 2 * cap : 256;
            char **np = realloc(d->tsv_paths, nc * sizeof *np);
            int *ni = np ? realloc(d->classes, nc * sizeof *ni) : NULL;
            if (np) d->tsv_paths = np;
            if (ni) d->classes = ni;
            if (!np || !ni) {
                st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
                goto out;
            }
            cap = nc;
        }
        size_t n = strlen(dir) + strlen(line) + 1;
        char *p = malloc(n);
        if (!p) {
            st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
            goto out;
        }
        snprintf(p, n, "%s%s", line[0] == '/' ? "" : dir, line);
        d->tsv_paths[d->n_tsv] = p;
        d->classes[d->n_tsv++] = (int)idx;
    }
    if (ferror(f)) st = cnn_err(err, err_bytes, CNN_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    else if (!d->n_tsv) st = cnn_err(err, err_bytes, CNN_ERR_MISSING, "%s lists no image", path);
    d->n_items = d->n_tsv;
    d->paths = st == CNN_OK ? malloc((d->n_tsv ? d->n_tsv : 1) * sizeof *d->paths) : NULL;
    if (st == CNN_OK && !d->paths) st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
    for (size_t i = 0; st == CNN_OK && i < d->n_tsv; i++) d->paths[i] = d->tsv_paths[i];
out:
    free(line);
    fclose(f);
    if (st != CNN_OK) eval_data_free(d);
    return st;
}

/* A folder tree, whole or the train/val part of dataset_split. */
static cnn_status load_folders(eval_data *d, const eval_opts *o, char *err, size_t err_bytes)
{
    dataset_opts dopts = {.min_classes = 1, .allow_empty_classes = 1, .warn = warn_stderr};
    cnn_status st = dataset_load(&d->ds, o->data, o->labels[0] ? o->labels : NULL, &dopts, err, err_bytes);
    if (st != CNN_OK) return st;
    size_t n = d->ds.n_items ? d->ds.n_items : 1;
    uint8_t *is_val = calloc(n, 1);
    d->paths = malloc(n * sizeof *d->paths);
    d->classes = malloc(n * sizeof *d->classes);
    if (!is_val || !d->paths || !d->classes) {
        st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
        goto out;
    }
    int want = !strcmp(o->subset, "val") ? 1 : !strcmp(o->subset, "train") ? 0 : -1;
    if (want >= 0 && (st = dataset_split(&d->ds, o->val_split, (uint64_t)o->seed, is_val)) != CNN_OK) {
        cnn_err(err, err_bytes, st, "cannot split %s (--val-split %g)", o->data, o->val_split);
        goto out;
    }
    for (size_t i = 0; i < d->ds.n_items; i++) {
        if (want >= 0 && is_val[i] != want) continue;
        d->paths[d->n_items] = d->ds.items[i].path;
        d->classes[d->n_items++] = d->ds.items[i].label;
    }
    if (!d->n_items) st = cnn_err(err, err_bytes, CNN_ERR_MISSING, "%s: no image in the %s subset", o->data, o->subset);
out:
    free(is_val);
    if (st != CNN_OK) eval_data_free(d);
    return st;
}

/* Model class of each dataset class of a folder tree: the file's `folders` metadata names the class
 * folders of a fine-tuned model; otherwise a folder's display label (or its name) must equal a class
 * label of the model. -1 entries never happen on success. */
static cnn_status map_classes(const model *m, const dataset *ds, int *map, char *err, size_t err_bytes)
{
    int k = model_num_labels(m);
    json_t *folders = NULL;
    const char *meta = model_meta(m, "folders");
    if (meta) folders = json_loads(meta, 0, NULL);
    cnn_status st = CNN_OK;
    for (int c = 0; c < ds->n_classes && st == CNN_OK; c++) {
        map[c] = -1;
        for (int j = 0; j < k && map[c] < 0; j++) {
            json_t *f = json_is_array(folders) ? json_array_get(folders, (size_t)j) : NULL;
            if (f && json_is_string(f) && !strcmp(json_string_value(f), ds->folders[c])) map[c] = j;
        }
        for (int j = 0; j < k && map[c] < 0; j++) {
            const char *label = model_class_label(m, j);
            if (label && (!strcmp(label, ds->labels[c]) || !strcmp(label, ds->folders[c]))) map[c] = j;
        }
        if (map[c] < 0)
            st = cnn_err(err, err_bytes, CNN_ERR_ARG, "class folder '%s' (label '%s') is not a class of model %s",
                         ds->folders[c], ds->labels[c], model_name(m));
    }
    json_decref(folders);
    return st;
}

typedef struct {
    double median, mean;
} stat2;

static int double_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* Median and mean of v (sorted in place). */
static stat2 stats_of(double *v, size_t n)
{
    stat2 s = {NAN, NAN};
    if (!n) return s;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += v[i];
    qsort(v, n, sizeof *v, double_cmp);
    s.mean = sum / (double)n;
    s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    return s;
}

static json_t *stat_json(stat2 s)
{
    return json_pack("{s:o,s:o}", "median", pipeline_ms_json(s.median), "mean", pipeline_ms_json(s.mean));
}

enum { T_READ, T_DECODE, T_PREPROCESS, T_INFERENCE, T_TOTAL, T_COUNT };
static const char *const timing_names[T_COUNT] = {"read", "decode", "preprocess", "inference", "total"};

/* Everything eval learns about one model; printed as a table row and turned into JSON. */
typedef struct {
    const model *m;
    int k;
    size_t n_ok;
    eval_metrics metrics;
    int have_metrics;
    size_t *item;    /* n_ok: the data item of each classified image */
    int *label;      /* n_ok: its true class */
    int *pred;       /* n_ok: its predicted class */
    float *pred_score;
    stat2 timing[T_COUNT];
    double wall_s;
    json_t *skipped; /* [{file, error}] */
    char error[EVAL_PATH_BYTES + 512]; /* "" unless the model could not be evaluated */
} model_eval;

static void progress(const eval_opts *o, const char *name, int mi, int n_models, size_t done, size_t total,
                     uint64_t t0, uint64_t *last_ns, int final)
{
    if (o->quiet || !isatty(STDERR_FILENO)) return;
    uint64_t now = timing_now_ns();
    if (!final && now - *last_ns < 200000000u) return;
    *last_ns = now;
    double s = timing_ms(t0, now) / 1e3;
    fprintf(stderr, "\r\033[K[%d/%d] %s: %zu/%zu images, %.1f images/s", mi + 1, n_models, name, done, total,
            s > 0 ? (double)done / s : 0.0);
    if (final) fputc('\n', stderr);
    fflush(stderr);
}

/* Runs model m over every image of d and computes its metrics into *me. */
static void eval_model(const eval_opts *o, const eval_data *d, const model *m, int mi, int n_models, model_eval *me)
{
    char err[1024];
    me->m = m;
    me->k = model_num_labels(m);
    me->skipped = json_array();
    int k = me->k;
    int *map = NULL, *label = NULL;
    float *scores = NULL;
    double *nll = NULL, *times[T_COUNT] = {0};
    pipeline_ws *ws = NULL;
    if (!d->is_tsv) {
        map = malloc((size_t)d->ds.n_classes * sizeof *map);
        if (!map) goto nomem;
        if (map_classes(m, &d->ds, map, me->error, sizeof me->error) != CNN_OK) goto out;
    }
    label = me->label = malloc(d->n_items * sizeof *label);
    me->item = malloc(d->n_items * sizeof *me->item);
    me->pred = malloc(d->n_items * sizeof *me->pred);
    me->pred_score = malloc(d->n_items * sizeof *me->pred_score);
    scores = malloc(d->n_items * (size_t)k * sizeof *scores);
    nll = malloc(d->n_items * sizeof *nll);
    for (int t = 0; t < T_COUNT; t++) times[t] = malloc(d->n_items * sizeof(double));
    if (!label || !scores || !nll || !me->skipped || !me->item || !me->pred || !me->pred_score) goto nomem;
    for (int t = 0; t < T_COUNT; t++)
        if (!times[t]) goto nomem;
    if (pipeline_ws_init_threads(&ws, &m, 1, o->n_threads, err, sizeof err) != CNN_OK) {
        cnn_err(me->error, sizeof me->error, CNN_OK, "%s", err);
        goto out;
    }
    pipeline_ws_warmup(ws, 0);
    pipeline_request req = {.top_k = 1, .max_pixels = o->max_pixels, .full_decode = o->full_decode, .n_slots = 1,
                            .slots = {0}};
    uint64_t t0 = timing_now_ns(), last = 0;
    for (size_t i = 0; i < d->n_items; i++) {
        const char *path = d->paths[i];
        int y = d->is_tsv ? d->classes[i] : map[d->classes[i]];
        progress(o, model_name(m), mi, n_models, i, d->n_items, t0, &last, 0);
        if (y < 0 || y >= k) {
            snprintf(err, sizeof err, "class index %d is not in 0..%d", y, k - 1);
            goto skip;
        }
        uint64_t ta = timing_now_ns();
        uint8_t *bytes = NULL;
        size_t n_bytes = 0;
        cnn_status st = file_read_all(path, &bytes, &n_bytes, err, sizeof err);
        uint64_t tb = timing_now_ns();
        pipeline_result res;
        if (st == CNN_OK) st = pipeline_classify(ws, bytes, n_bytes, &req, &res, err, sizeof err);
        uint64_t tc = timing_now_ns();
        free(bytes);
        if (st == CNN_OK) {
            size_t j = me->n_ok;
            nll[j] = eval_softmax_row(res.results[0].logits, k, y, scores + j * (size_t)k);
            if (isnan(nll[j])) {
                snprintf(err, sizeof err, "the model's output is not finite");
                goto skip;
            }
            label[j] = y;
            me->item[j] = i;
            me->pred[j] = res.results[0].idx[0];
            me->pred_score[j] = res.results[0].prob[0];
            times[T_READ][j] = timing_ms(ta, tb);
            times[T_DECODE][j] = res.decode_ms;
            times[T_PREPROCESS][j] = res.preprocess_ms;
            times[T_INFERENCE][j] = res.inference_ms;
            times[T_TOTAL][j] = timing_ms(ta, tc);
            me->n_ok++;
            continue;
        }
    skip:
        if (mi == 0) fprintf(stderr, "%s%s: skipped: %s\n", o->quiet || !isatty(STDERR_FILENO) ? "" : "\r\033[K", path, err);
        json_array_append_new(me->skipped, json_pack("{s:s,s:s}", "file", path, "error", err));
    }
    me->wall_s = timing_ms(t0, timing_now_ns()) / 1e3;
    progress(o, model_name(m), mi, n_models, d->n_items, d->n_items, t0, &last, 1);
    if (!me->n_ok) {
        cnn_err(me->error, sizeof me->error, CNN_OK, "no image of %s could be classified", o->data);
        goto out;
    }
    for (int t = 0; t < T_COUNT; t++) me->timing[t] = stats_of(times[t], me->n_ok);
    if (eval_metrics_compute(scores, label, nll, (int64_t)me->n_ok, k, 1, &me->metrics, me->error,
                             sizeof me->error) == CNN_OK)
        me->have_metrics = 1;
    goto out;
nomem:
    snprintf(me->error, sizeof me->error, "out of memory");
out:
    pipeline_ws_free(ws);
    free(map);
    free(scores);
    free(nll);
    for (int t = 0; t < T_COUNT; t++) free(times[t]);
}

/* Per image: file, true class, predicted class and its probability (as `serve` answers it). */
static json_t *predictions_json(const model_eval *me, const eval_data *d)
{
    json_t *a = json_array();
    for (size_t j = 0; a && j < me->n_ok; j++)
        if (json_array_append_new(a, json_pack("{s:s,s:i,s:i,s:f}", "file", d->paths[me->item[j]], "class",
                                               me->label[j], "predicted", me->pred[j], "score",
                                               (double)me->pred_score[j]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *model_json(const model_eval *me, const eval_data *d)
{
    const model *m = me->m;
    json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:i,s:i,s:i}", "model", model_name(m), "architecture",
                          model_get_arch(m)->name, "weights_file", model_path(m), "params",
                          (json_int_t)model_n_params(m), "macs", (json_int_t)model_n_macs(m), "num_classes", me->k,
                          "input_size", model_input_size(m), "resize_size", model_resize_size(m));
    if (!o) return NULL;
    const char *base = model_meta(m, "base");
    if (base) json_object_set_new(o, "base", json_string(base));
    json_t *labels = json_array();
    for (int c = 0; labels && c < me->k; c++) json_array_append_new(labels, json_string(model_class_label(m, c)));
    json_object_set_new(o, "labels", labels);
    json_object_set_new(o, "images", json_integer((json_int_t)me->n_ok));
    json_object_set_new(o, "skipped", json_integer((json_int_t)json_array_size(me->skipped)));
    json_object_set(o, "skipped_files", me->skipped);
    if (me->error[0]) {
        json_object_set_new(o, "error", json_string(me->error));
        return o;
    }
    json_t *timing = json_object();
    for (int t = 0; timing && t < T_COUNT; t++) {
        char key[32];
        snprintf(key, sizeof key, "%s_ms", timing_names[t]);
        json_object_set_new(timing, key, stat_json(me->timing[t]));
    }
    if (timing) {
        json_object_set_new(timing, "wall_s", pipeline_ms_json(me->wall_s));
        json_object_set_new(timing, "images_per_s", pipeline_ms_json(me->wall_s > 0 ? (double)me->n_ok / me->wall_s : 0));
    }
    json_object_set_new(o, "timing", timing);
    const char **names = malloc((size_t)me->k * sizeof *names);
    if (names)
        for (int c = 0; c < me->k; c++) names[c] = model_class_label(m, c);
    json_object_set_new(o, "metrics", names ? eval_metrics_json(&me->metrics, names) : NULL);
    free(names);
    json_object_set_new(o, "predictions", predictions_json(me, d));
    return o;
}

static json_t *data_json(const eval_opts *o, const eval_data *d)
{
    json_t *j = json_pack("{s:s,s:s,s:s,s:I,s:s}", "path", o->data, "format", d->is_tsv ? "tsv" : "folders", "subset",
                          o->subset, "images", (json_int_t)d->n_items, "decode", o->full_decode ? "full" : "server");
    if (!j || d->is_tsv) return j;
    if (strcmp(o->subset, "all")) {
        json_object_set_new(j, "val_split", json_real(o->val_split));
        json_object_set_new(j, "seed", json_integer((json_int_t)o->seed));
    }
    json_t *classes = json_array();
    for (int c = 0; classes && c < d->ds.n_classes; c++)
        json_array_append_new(classes, json_pack("{s:s,s:s}", "folder", d->ds.folders[c], "label", d->ds.labels[c]));
    json_object_set_new(j, "classes", classes);
    json_object_set_new(j, "ignored_files", json_integer((json_int_t)d->ds.n_skipped));
    return j;
}

/* Writes doc to path through a temporary file and rename, so a reader never sees half a report. */
static int write_report(const char *path, json_t *doc)
{
    char tmp[EVAL_PATH_BYTES + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "cnnserve eval: cannot write %s: %s\n", tmp, strerror(errno));
        return 1;
    }
    int bad = json_dumpf(doc, f, JSON_COMPACT | JSON_REAL_PRECISION(12)) != 0;
    bad |= fputc('\n', f) == EOF;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        fprintf(stderr, "cnnserve eval: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return 1;
    }
    return 0;
}

static void print_table(const model_eval *me, int n)
{
    printf("%-28s %7s %7s %7s %7s %8s %9s %9s %26s %9s\n", "model", "images", "skipped", "top-1", "top-5", "x-entropy",
           "macro-AUC", "micro-AUC", "ms/image dec/pre/inf (med)", "images/s");
    for (int i = 0; i < n; i++) {
        const model_eval *e = &me[i];
        if (e->error[0]) {
            printf("%-28s failed: %s\n", model_name(e->m), e->error);
            continue;
        }
        char ms[64];
        snprintf(ms, sizeof ms, "%.2f/%.2f/%.2f", e->timing[T_DECODE].median, e->timing[T_PREPROCESS].median,
                 e->timing[T_INFERENCE].median);
        printf("%-28s %7zu %7zu %6.2f%% %6.2f%% %9.4f %9.4f %9.4f %26s %9.1f\n", model_name(e->m), e->n_ok,
               json_array_size(e->skipped), 100.0 * e->metrics.top1, 100.0 * e->metrics.topk, e->metrics.mean_nll,
               e->metrics.macro.auc, e->metrics.micro.auc, ms, e->wall_s > 0 ? (double)e->n_ok / e->wall_s : 0.0);
    }
}

int eval_main(int argc, char **argv)
{
    eval_opts o = {.val_split = 0.3, .seed = 1, .max_pixels = IMAGE_DEFAULT_MAX_PIXELS};
    snprintf(o.weights_dir, sizeof o.weights_dir, "./weights");
    snprintf(o.subset, sizeof o.subset, "all");
    o.n_threads = cpus_default_threads(MODEL_MAX_THREADS);
    char err[1024];
    if (config_parse_flags(eval_flags, sizeof eval_flags / sizeof eval_flags[0], &o, NULL, argc, argv, NULL, NULL, err,
                           sizeof err) != CNN_OK) {
        fprintf(stderr, "cnnserve eval: %s\n", err);
        return 2;
    }
    if (o.show_help) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (!o.data[0] || !o.out[0]) {
        fprintf(stderr, "cnnserve eval: --data and --out are required (see --help)\n");
        return 2;
    }
    if (strcmp(o.subset, "all") && strcmp(o.subset, "val") && strcmp(o.subset, "train")) {
        fprintf(stderr, "cnnserve eval: --subset: expected all, val or train, got '%s'\n", o.subset);
        return 2;
    }
    struct stat sb;
    if (stat(o.data, &sb) != 0) {
        fprintf(stderr, "cnnserve eval: --data %s: %s\n", o.data, strerror(errno));
        return 2;
    }
    int is_dir = S_ISDIR(sb.st_mode);
    if (!is_dir && (strcmp(o.subset, "all") || o.labels[0])) {
        fprintf(stderr, "cnnserve eval: --subset and --labels apply to a folder tree, not to a TSV file\n");
        return 2;
    }
    openblas_set_num_threads(1);

    eval_data d = {0};
    cnn_status st = is_dir ? load_folders(&d, &o, err, sizeof err) : load_tsv(&d, o.data, err, sizeof err);
    if (st != CNN_OK) {
        fprintf(stderr, "cnnserve eval: %s\n", err);
        return 1;
    }
    logger lg;
    log_init(&lg, LOG_FORMAT_TEXT);
    zoo *z = NULL;
    if (zoo_load(&z, o.weights_dir, o.models, &lg, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "cnnserve eval: %s\n", err);
        eval_data_free(&d);
        return 1;
    }
    /* Models in the order of --models (registry order by default). */
    int order[ZOO_MAX_MODELS], n_models = 0;
    if (o.models[0]) {
        char list[sizeof o.models];
        memcpy(list, o.models, sizeof list);
        char *save = NULL;
        for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            int e = zoo_find(z, tok);
            int dup = 0;
            for (int i = 0; i < n_models; i++) dup |= order[i] == e;
            if (e >= 0 && z->entries[e].m && !dup && n_models < ZOO_MAX_MODELS) order[n_models++] = e;
        }
    } else {
        for (int i = 0; i < z->n_loaded; i++) order[n_models++] = z->loaded[i];
    }
    model_eval *me = calloc((size_t)n_models, sizeof *me);
    json_t *models = json_array();
    int rc = 0;
    if (!me || !models) {
        fprintf(stderr, "cnnserve eval: out of memory\n");
        rc = 1;
        goto out;
    }
    for (int i = 0; i < n_models; i++) {
        eval_model(&o, &d, z->entries[order[i]].m, i, n_models, &me[i]);
        if (me[i].error[0]) {
            fprintf(stderr, "cnnserve eval: %s: %s\n", model_name(me[i].m), me[i].error);
            rc = 1;
        }
        json_array_append_new(models, model_json(&me[i], &d));
    }
    json_t *doc = json_pack("{s:i,s:s,s:s,s:o,s:i,s:o}", "report", EVAL_REPORT_VERSION, "tool", "cnnserve eval",
                            "version", CNNSERVE_VERSION, "data", data_json(&o, &d), "threads", o.n_threads, "models",
                            models);
    models = NULL;
    double load[3];
    if (doc && getloadavg(load, 3) == 3) /* how busy the machine was: read the timings with it */
        json_object_set_new(doc, "load_average", json_pack("[f,f,f]", load[0], load[1], load[2]));
    if (!doc || write_report(o.out, doc)) rc = 1;
    json_decref(doc);
    print_table(me, n_models);
    printf("report: %s\n", o.out);
out:
    json_decref(models);
    for (int i = 0; me && i < n_models; i++) {
        eval_metrics_free(&me[i].metrics);
        json_decref(me[i].skipped);
        free(me[i].item);
        free(me[i].label);
        free(me[i].pred);
        free(me[i].pred_score);
    }
    free(me);
    zoo_release(z);
    eval_data_free(&d);
    return rc;
}
