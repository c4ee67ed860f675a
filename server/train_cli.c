/* `cnnserve train`: a new classifier head for a class-per-folder image set on a frozen ImageNet base
 * (transfer learning, `--mode head`). The images go through the service's own decode and
 * preprocessing (pipeline_preprocess) and the base model's engine once, streamed over worker threads
 * into one feature matrix; the new last layer is trained on it (core/train.h) and written with the
 * base's other tensors as a torchvision-named safetensors file that serve/classify/eval load. */
#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/train.h"
#include "../core/weights.h"
#include "cli.h"
#include "config.h"
#include "dataset.h"
#include "fileio.h"
#include "pipeline.h"
#include "timing.h"
#include "train_internal.h"
#include "version.h"

/* The default head recipe, chosen on the validation split of monkeys/train (README, "Fine-tuning"). */
#define TRAIN_DEFAULT_EPOCHS 30
#define TRAIN_DEFAULT_BATCH 32
#define TRAIN_DEFAULT_LR 0.003
#define TRAIN_DEFAULT_MOMENTUM 0.9
#define TRAIN_DEFAULT_WEIGHT_DECAY 1e-4
/* --mode full: SGD 0.01 for the new layer, cosine, a short run. */
#define TRAIN_FULL_DEFAULT_EPOCHS 10
#define TRAIN_FULL_DEFAULT_LR_SGD 0.01
#define TRAIN_FULL_DEFAULT_LR_ADAM 0.001
/* --lr-backbone defaults to --lr / 10: the pretrained layers move less than the new one. SGD 0.01 on
 * every layer diverges within 5 steps on the shared mobilenet_v3_small, in PyTorch as here; 0.01 / 0.001
 * converges (monkeys subset, batch 8). */
#define TRAIN_FULL_BACKBONE_LR_DIVISOR 10


static const config_flag train_flags[] = {
    CONFIG_STR("base", train_config, base),
    CONFIG_STR("weights-dir", train_config, weights_dir),
    CONFIG_STR("data", train_config, data),
    CONFIG_STR("out", train_config, out),
    CONFIG_STR("name", train_config, name),
    CONFIG_STR("labels", train_config, labels),
    CONFIG_STR("mode", train_config, mode),
    CONFIG_INT("epochs", train_config, epochs, 1, 100000),
    CONFIG_INT("batch", train_config, batch, 1, 1 << 20),
    CONFIG_DOUBLE("lr", train_config, lr, 0, 1000),
    CONFIG_FRACTION("momentum", train_config, momentum),
    CONFIG_DOUBLE("weight-decay", train_config, weight_decay, 0, 10),
    CONFIG_FRACTION("val-split", train_config, val_split),
    CONFIG_INT64("seed", train_config, seed, 0, INT64_MAX),
    CONFIG_INT("threads", train_config, n_threads, 1, MODEL_MAX_THREADS),
    CONFIG_INT64("max-pixels", train_config, max_pixels, 1, INT64_C(1) << 40),
    CONFIG_STR("log-json", train_config, log_json),
    CONFIG_SWITCH("raw-features", train_config, raw_features),
    CONFIG_SWITCH("help", train_config, show_help),
    /* --mode full */
    CONFIG_DOUBLE("lr-backbone", train_config, lr_backbone, 0, 1000),
    CONFIG_STR("optimizer", train_config, optimizer),
    CONFIG_SWITCH("nesterov", train_config, nesterov),
    CONFIG_SWITCH("no-bn-bias-decay", train_config, no_bn_bias_decay),
    CONFIG_STR("schedule", train_config, schedule),
    CONFIG_INT("step-size", train_config, step_size, 1, 100000),
    CONFIG_DOUBLE("gamma", train_config, gamma, 0, 1),
    CONFIG_INT("warmup-epochs", train_config, warmup_epochs, 0, 100000),
    CONFIG_DOUBLE("clip-grad", train_config, clip_grad, 0, 1e9),
    CONFIG_STR("bn", train_config, bn),
    CONFIG_STR("dropout", train_config, dropout),
    CONFIG_SWITCH("resume", train_config, resume),
    CONFIG_STR("checkpoint-dir", train_config, checkpoint_dir),
};

static const char usage_text[] =
    "usage: cnnserve train --base ARCH --data DIR (--out FILE | --name NAME) [flags]\n"
    "\n"
    "Transfer learning: trains a new last layer for the classes of DIR on an ImageNet model (--mode head,\n"
    "the backbone frozen) or fine-tunes every layer (--mode full), and writes the whole network\n"
    "(torchvision tensor names) as a safetensors file that `serve`, `classify` and `eval` load as a model\n"
    "named after the file.\n"
    "\n"
    "  --base ARCH           base model: mobilenet_v3_large, mobilenet_v3_small, shufflenet_v2_x1_0,\n"
    "                        alexnet, inception_v3 (or an alias); its file is <weights-dir>/ARCH.safetensors\n"
    "  --weights-dir DIR     where the base file lives (default ./weights)\n"
    "  --data DIR            one folder per class: DIR/<class>/*.jpg|jpeg|png|webp (sub-folders included;\n"
    "                        hidden and other files skipped); at least 2 classes, none empty\n"
    "  --out FILE            output .safetensors (default <weights-dir>/NAME.safetensors); the served\n"
    "                        model name is the file's stem\n"
    "  --name NAME           model name (default: the stem of --out); letters, digits, '_', '-', '.'\n"
    "  --labels FILE         display names: lines 'folder<TAB>name' (default: the folder names)\n"
    "  --mode head|full      head (default): features computed once by the frozen backbone, the new last\n"
    "                        layer trained on them; full: every layer trained on augmented images\n"
    "  --epochs N            passes over the training split (default 30 head, 10 full)\n"
    "  --batch B             mini-batch size (default 32)\n"
    "  --lr X                learning rate, > 0 and <= 1000 (default 0.003 head; full: 0.01 SGD, 0.001 Adam(W));\n"
    "                        in full mode the new last layer's\n"
    "  --momentum X          SGD momentum, in [0, 1) (default 0.9)\n"
    "  --weight-decay X      weight decay, 0..10 (default 0.0001; SGD/Adam: L2 in the gradient, AdamW:\n"
    "                        decoupled)\n"
    "  --raw-features        head: train on the raw features (default: each feature standardized by the\n"
    "                        training split's mean and deviation, folded into the saved layer)\n"
    "  --val-split F         fraction of each class held out for validation, 0..0.9 (default 0.3)\n"
    "  --seed S              seed of the split, the new layer's init, the shuffles, the augmentation and\n"
    "                        dropout (default 1)\n"
    "  --threads N           threads, 1..64 (default: number of cores); the output is bit-identical at any N\n"
    "  --max-pixels N        largest decoded image, width*height (default " IMAGE_DEFAULT_MAX_PIXELS_TEXT ")\n"
    "  --log-json FILE       per-epoch training/validation loss and accuracy, timings (README)\n"
    "\n"
    "--mode full only (PyTorch 1.13's torch.optim semantics):\n"
    "  --optimizer sgd|adam|adamw  (default sgd; Adam betas 0.9, 0.999, eps 1e-8)\n"
    "  --lr-backbone X       learning rate of every layer but the new last one (default: --lr / 10)\n"
    "  --nesterov            SGD with Nesterov momentum\n"
    "  --no-bn-bias-decay    no weight decay on BatchNorm weights/biases and on biases\n"
    "  --schedule const|cosine|step  learning rate per step (default cosine, to 0 at the end)\n"
    "  --step-size E --gamma G  step: multiply the rate by G (default 0.1) every E epochs\n"
    "  --warmup-epochs E     linear warm-up over the first E epochs' steps (default 0)\n"
    "  --clip-grad X         clip the gradients' global L2 norm to X (default: no clipping)\n"
    "  --bn frozen|train     BatchNorm: running statistics fixed, gamma/beta trained (default frozen),\n"
    "                        or batch statistics with running statistics updated (model.train())\n"
    "  --dropout on|off      the architecture's dropout layers in training (default on)\n"
    "  --checkpoint-dir DIR  checkpoint after every epoch (model.safetensors + state.bin, each written\n"
    "                        atomically; default: the --out path without .safetensors, plus .ckpt)\n"
    "  --resume              continue from the checkpoint with the same command: the result is\n"
    "                        bit-identical to an uninterrupted run\n"
    "Training images get torchvision's RandomResizedCrop(S, scale=(0.08, 1), ratio=(3/4, 4/3)) and\n"
    "RandomHorizontalFlip from the full-size decode, seeded per (seed, epoch, image); a decode thread\n"
    "prepares the next batch during each step. Validation images get the server's resize and centre\n"
    "crop. Ctrl-C or SIGTERM stops after the current step and leaves a checkpoint (exit 130 / 143).\n"
    "\n"
    "Unreadable or undecodable images are skipped with a warning naming them. The same command gives\n"
    "a bit-identical file. Exit status: 0 on success, 1 on an error, 2 on bad usage.\n";

static void train_defaults(train_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->weights_dir, sizeof c->weights_dir, "./weights");
    snprintf(c->mode, sizeof c->mode, "head");
    c->epochs = 0;     /* unset: per mode (check_args) */
    c->batch = TRAIN_DEFAULT_BATCH;
    c->lr = NAN;       /* unset: per mode and optimizer */
    c->momentum = NAN; /* unset: 0.9 (SGD only) */
    c->weight_decay = TRAIN_DEFAULT_WEIGHT_DECAY;
    c->lr_backbone = c->gamma = c->clip_grad = NAN;
    c->step_size = c->warmup_epochs = -1;
    c->val_split = 0.3;
    c->seed = 1;
    long n_cores = sysconf(_SC_NPROCESSORS_ONLN);
    c->n_threads = n_cores < 1 ? 1 : n_cores > MODEL_MAX_THREADS ? MODEL_MAX_THREADS : (int)n_cores;
    c->max_pixels = IMAGE_DEFAULT_MAX_PIXELS;
}

/* ---- terminal output: warnings and one progress line that they do not garble ---- */

void console_warn(void *arg, const char *msg)
{
    console *c = arg;
    pthread_mutex_lock(&c->lock);
    fprintf(stderr, "%scnnserve train: warning: %s\n", c->line_shown ? "\r\033[K" : "", msg);
    c->line_shown = 0;
    pthread_mutex_unlock(&c->lock);
}

void console_progress(console *c, const char *line)
{
    if (!c->tty) return;
    pthread_mutex_lock(&c->lock);
    fprintf(stderr, "\r\033[K%s", line);
    fflush(stderr);
    c->line_shown = 1;
    pthread_mutex_unlock(&c->lock);
}

void console_end_progress(console *c)
{
    pthread_mutex_lock(&c->lock);
    if (c->line_shown) fputc('\n', stderr);
    c->line_shown = 0;
    pthread_mutex_unlock(&c->lock);
}

/* ---- feature extraction: worker threads, each decoding and running its own images ---- */

typedef struct {
    const model *m;
    const dataset *d;
    int64_t max_pixels;
    float *features;        /* n_items x dim */
    uint8_t *ok;            /* 1: features computed */
    console *con;
    atomic_size_t next, done;
    atomic_int finished;    /* workers that have returned */
} extract_job;

static void *extract_worker(void *arg)
{
    extract_job *j = arg;
    const int dim = model_feature_dim(j->m), s = model_input_size(j->m);
    model_ctx *ctx = NULL;
    float *input = malloc((size_t)3 * s * s * sizeof(float));
    if (!input || model_ctx_init(&ctx, j->m) != CNN_OK) { /* the other workers take its share */
        free(input);
        atomic_fetch_add(&j->finished, 1);
        return NULL;
    }
    char err[1024], msg[1400];
    size_t i;
    while ((i = atomic_fetch_add(&j->next, 1)) < j->d->n_items) {
        const char *path = j->d->items[i].path;
        uint8_t *data = NULL;
        size_t n_bytes = 0;
        cnn_status st = file_read_all(path, &data, &n_bytes, err, sizeof err);
        if (st == CNN_OK) st = pipeline_preprocess(j->m, data, n_bytes, j->max_pixels, input, err, sizeof err);
        free(data);
        if (st == CNN_OK) {
            model_run_features(ctx, input, j->features + i * (size_t)dim);
            j->ok[i] = 1;
        } else {
            snprintf(msg, sizeof msg, "skipping %s: %s", path, err);
            console_warn(j->con, msg);
        }
        atomic_fetch_add(&j->done, 1);
    }
    model_ctx_free(ctx);
    free(input);
    atomic_fetch_add(&j->finished, 1);
    return NULL;
}

/* Features of every listed image; returns the seconds taken, or a negative value on failure. */
static double extract_features(extract_job *j, int n_threads)
{
    const size_t n = j->d->n_items;
    if ((size_t)n_threads > n) n_threads = (int)n;
    pthread_t tids[MODEL_MAX_THREADS];
    int started = 0;
    const uint64_t t0 = timing_now_ns();
    for (; started < n_threads; started++)
        if (pthread_create(&tids[started], NULL, extract_worker, j)) break;
    if (!started) return -1;
    char line[256];
    while (atomic_load(&j->finished) < started) {
        usleep(100000);
        const size_t done = atomic_load(&j->done);
        const double s = timing_ms(t0, timing_now_ns()) / 1e3;
        snprintf(line, sizeof line, "features: %zu/%zu images, %.1f images/s", done, n, s > 0 ? done / s : 0.0);
        console_progress(j->con, line);
    }
    for (int t = 0; t < started; t++) pthread_join(tids[t], NULL);
    console_end_progress(j->con);
    if (atomic_load(&j->done) < n) return -1; /* every worker failed to start */
    return timing_ms(t0, timing_now_ns()) / 1e3;
}

/* ---- training progress and the per-epoch log ---- */

typedef struct {
    console *con;
    json_t *epochs;   /* array of per-epoch objects */
    train_epoch last;
    int n_epochs;
} train_log;

json_t *train_json_num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static int on_epoch(void *arg, const train_epoch *e)
{
    train_log *l = arg;
    l->last = *e;
    l->n_epochs++;
    json_array_append_new(l->epochs,
                          json_pack("{s:i,s:o,s:o,s:o,s:o,s:o}", "epoch", e->epoch, "train_loss", train_json_num(e->train_loss),
                                    "train_accuracy", train_json_num(e->train_accuracy), "val_loss", train_json_num(e->val_loss),
                                    "val_accuracy", train_json_num(e->val_accuracy), "seconds", train_json_num(e->seconds)));
    char line[256];
    int n = snprintf(line, sizeof line, "epoch %d/%d: train loss %.4f acc %.2f%%", e->epoch, e->epochs, e->train_loss,
                     100 * e->train_accuracy);
    if (isfinite(e->val_loss) && n > 0 && (size_t)n < sizeof line)
        snprintf(line + n, sizeof line - (size_t)n, ", val loss %.4f acc %.2f%%", e->val_loss, 100 * e->val_accuracy);
    if (l->con->tty) console_progress(l->con, line);
    else fprintf(stderr, "%s\n", line);
    return 0;
}

/* ---- output ---- */

/* Shortest "%.Ng" that reads back as the same float. */
static void format_float(char *buf, size_t n, float v)
{
    for (int p = 6; p <= 9; p++) {
        snprintf(buf, n, "%.*g", p, (double)v);
        if (strtof(buf, NULL) == v) return;
    }
}

static void format_floats3(char *buf, size_t n, const float v[3])
{
    char a[32], b[32], c[32];
    format_float(a, sizeof a, v[0]);
    format_float(b, sizeof b, v[1]);
    format_float(c, sizeof c, v[2]);
    snprintf(buf, n, "%s,%s,%s", a, b, c);
}

/* A JSON list of n strings, compact; NULL when a string is not UTF-8 or memory runs out. */
static char *json_string_list(char *const *s, int n)
{
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_string(s[i]))) {
            json_decref(a);
            return NULL;
        }
    char *text = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    return text;
}

cnn_status train_meta_init(train_meta *tm, const model *m, const weights *base, const char *base_path,
                           const dataset *d, json_t *recipe, double val_accuracy, char *err, size_t err_bytes)
{
    memset(tm, 0, sizeof *tm);
    const int k = d->n_classes;
    tm->labels = json_string_list(d->labels, k);
    tm->folders = json_string_list(d->folders, k);
    tm->recipe = json_dumps(recipe, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    if (!tm->labels || !tm->folders || !tm->recipe) {
        train_meta_free(tm);
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "cannot build the metadata (out of memory, or a class folder or "
                                                    "label name is not UTF-8)");
    }
    snprintf(tm->k_text, sizeof tm->k_text, "%d", k);
    format_floats3(tm->mean, sizeof tm->mean, model_mean(m));
    format_floats3(tm->std, sizeof tm->std, model_std(m));
    snprintf(tm->val_text, sizeof tm->val_text, "%.6f", val_accuracy);
    snprintf(tm->base_name, sizeof tm->base_name, "%s", base_path);
    const weights_meta_kv kv[] = {
        {"architecture", model_get_arch(m)->name}, {"num_classes", tm->k_text}, {"labels", tm->labels},
        {"folders", tm->folders}, {"mean", tm->mean}, {"std", tm->std},
        {"padding", model_tf_same(m) ? "tf_same" : "torch"}, {"base", basename(tm->base_name)},
        {"recipe", tm->recipe}, {"source", "cnnserve train"},
    };
    memcpy(tm->kv, kv, sizeof kv);
    tm->n = sizeof kv / sizeof kv[0];
    if (isfinite(val_accuracy)) tm->kv[tm->n++] = (weights_meta_kv){"val_accuracy", tm->val_text}; /* none: --val-split 0 */
    static const char *const copied[] = {"resize", "crop", "license"}; /* kept from the base when present */
    for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++) {
        const char *v = weights_meta(base, copied[i]);
        if (v) tm->kv[tm->n++] = (weights_meta_kv){copied[i], v};
    }
    return CNN_OK;
}

void train_meta_free(train_meta *tm)
{
    free(tm->labels);
    free(tm->folders);
    free(tm->recipe);
    memset(tm, 0, sizeof *tm);
}

/* Writes the fine-tuned file: every tensor of the base copied, the head replaced, and the metadata. */
static cnn_status write_model(const model *m, const char *out, const char *base_path, const dataset *d,
                              const float *w, const float *b, json_t *recipe, double val_accuracy, char *err,
                              size_t err_bytes)
{
    weights *base = NULL;
    weights_out_tensor *t = NULL;
    train_meta tm = {0};
    cnn_status s = weights_open(&base, base_path, err, err_bytes);
    if (s != CNN_OK) return s;
    const model_arch *arch = model_get_arch(m);
    const int k = d->n_classes, dim = model_feature_dim(m);
    const int64_t shape_w[2] = {k, dim}, shape_b[1] = {k};
    char head_w[96], head_b[96];
    snprintf(head_w, sizeof head_w, "%s.weight", arch->head);
    snprintf(head_b, sizeof head_b, "%s.bias", arch->head);
    const size_t n = weights_count(base);
    t = malloc((n ? n : 1) * sizeof *t);
    if (!t) {
        s = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((s = train_meta_init(&tm, m, base, base_path, d, recipe, val_accuracy, err, err_bytes)) != CNN_OK) goto done;
    int replaced = 0;
    for (size_t i = 0; i < n; i++) {
        const weights_tensor *bt = weights_at(base, i);
        t[i] = (weights_out_tensor){bt->name, bt->n_dims, bt->shape, bt->data};
        if (!strcmp(bt->name, head_w)) t[i] = (weights_out_tensor){bt->name, 2, shape_w, w}, replaced++;
        if (!strcmp(bt->name, head_b)) t[i] = (weights_out_tensor){bt->name, 1, shape_b, b}, replaced++;
    }
    if (replaced != 2) {
        s = cnn_err(err, err_bytes, CNN_ERR_MISSING, "%s: no %s / %s tensors to replace", base_path, head_w, head_b);
        goto done;
    }
    /* A signal during the write would leave the temporary file behind: hold them until it is done. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    s = weights_write(out, t, n, tm.kv, tm.n, err, err_bytes);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
done:
    free(t);
    train_meta_free(&tm);
    weights_free(base);
    return s;
}

/* Writes text to path through a temporary file and a rename. */
cnn_status train_write_text_atomic(const char *path, const char *text, char *err, size_t err_bytes)
{
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    if (!tmp) return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
    snprintf(tmp, n, "%s.tmp-%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    cnn_status s = CNN_OK;
    if (!f) s = cnn_err(err, err_bytes, CNN_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    else {
        int bad = fputs(text, f) < 0 || fputc('\n', f) == EOF || fflush(f) || fsync(fileno(f));
        bad |= fclose(f) != 0;
        if (bad || rename(tmp, path)) {
            s = cnn_err(err, err_bytes, CNN_ERR_IO, "cannot write %s: %s", path, strerror(errno));
            unlink(tmp);
        }
    }
    free(tmp);
    return s;
}

/* ---- shared by both modes ---- */

int train_load_dataset(const train_config *c, console *con, dataset *d)
{
    char err[1024];
    dataset_opts dopts = {.min_classes = 2, .warn = console_warn, .warn_arg = con};
    if (dataset_load(d, c->data, c->labels[0] ? c->labels : NULL, &dopts, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "cnnserve train: %s\n", err);
        return 1;
    }
    for (int i = 0; i < d->n_classes; i++) { /* the file stores them as JSON strings */
        json_t *f = json_string(d->folders[i]), *l = json_string(d->labels[i]);
        json_decref(f);
        json_decref(l);
        if (!f || !l) {
            fprintf(stderr, "cnnserve train: class folder '%s' or its label is not valid UTF-8; rename the folder\n",
                    d->folders[i]);
            return 1;
        }
    }
    if (d->n_items > INT32_MAX) {
        fprintf(stderr, "cnnserve train: %zu images: too many\n", d->n_items);
        return 1;
    }
    return 0;
}

json_t *train_log_begin(const train_config *c, const model_arch *arch, const char *base_path, const dataset *d,
                        const uint8_t *ok, const uint8_t *is_val, int *train_idx, int *n_train, int *val_idx,
                        int *n_val, int *n_skipped)
{
    const int k = d->n_classes, n_items = (int)d->n_items;
    *n_train = *n_val = *n_skipped = 0;
    json_t *classes = json_array(), *skipped = json_array();
    int *class_train = calloc((size_t)k, sizeof(int)), *class_val = calloc((size_t)k, sizeof(int));
    if (!classes || !skipped || !class_train || !class_val) {
        json_decref(classes);
        json_decref(skipped);
        free(class_train);
        free(class_val);
        fprintf(stderr, "cnnserve train: out of memory\n");
        return NULL;
    }
    for (int i = 0; i < n_items; i++) {
        const int label = d->items[i].label;
        if (!ok[i]) {
            (*n_skipped)++;
            json_array_append_new(skipped, json_string(d->items[i].path));
        } else if (is_val[i]) {
            val_idx[(*n_val)++] = i;
            class_val[label]++;
        } else {
            train_idx[(*n_train)++] = i;
            class_train[label]++;
        }
    }
    int bad_class = -1;
    for (int i = 0; i < k; i++) {
        if (!class_train[i]) bad_class = i;
        json_array_append_new(classes, json_pack("{s:s,s:s,s:I,s:i,s:i}", "folder", d->folders[i], "label",
                                                 d->labels[i], "images", (json_int_t)d->n_class_items[i], "train",
                                                 class_train[i], "val", class_val[i]));
    }
    free(class_train);
    free(class_val);
    json_t *log = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:i,s:i,s:i,s:i,s:o}", "command", "cnnserve train",
                            "version", CNNSERVE_VERSION, "name", c->name, "base", arch->name, "base_file", base_path,
                            "data", c->data, "out", c->out, "classes", classes, "n_images", n_items, "n_train",
                            *n_train, "n_val", *n_val, "n_skipped", *n_skipped, "skipped", skipped);
    if (!log) {
        fprintf(stderr, "cnnserve train: cannot build the log (out of memory, or a path or class folder name is "
                        "not UTF-8)\n");
        return NULL;
    }
    if (bad_class >= 0) {
        fprintf(stderr, "cnnserve train: class '%s' has no readable training image (%zu listed, %d skipped)\n",
                d->folders[bad_class], d->n_class_items[bad_class], *n_skipped);
        json_decref(log);
        return NULL;
    }
    return log;
}

/* ---- arguments ---- */

static int valid_name(const char *s)
{
    if (!*s || *s == '.' || strlen(s) > 100) return 0;
    for (const char *p = s; *p; p++)
        if (!(('a' <= *p && *p <= 'z') || ('A' <= *p && *p <= 'Z') || ('0' <= *p && *p <= '9') || *p == '_' ||
              *p == '-' || *p == '.'))
            return 0;
    return 1;
}

/* The stem of a path ("dir/monkeys.safetensors" -> "monkeys"), into buf. */
static void path_stem(const char *path, char *buf, size_t n)
{
    const char *slash = strrchr(path, '/');
    snprintf(buf, n, "%s", slash ? slash + 1 : path);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf && !strcmp(dot, ".safetensors")) *dot = '\0';
}

/* Checks and completes the configuration; prints the usage error and returns 2, or 0. */
/* 1 when s is "" (unset) or one of the NULL-terminated names. */
static int one_of(const char *s, const char *const *names)
{
    if (!*s) return 1;
    for (; *names; names++)
        if (!strcmp(s, *names)) return 1;
    return 0;
}

/* Checks the --mode full flags and fills their defaults; NULL or the usage error (msg may hold it). */
static const char *check_full_args(train_config *c, char *msg, size_t msg_bytes)
{
    static const char *const optimizers[] = {"sgd", "adam", "adamw", NULL}, *const schedules[] = {"const", "cosine",
                                                                                              "step", NULL},
                             *const bns[] = {"frozen", "train", NULL}, *const onoff[] = {"on", "off", NULL};
    if (c->raw_features) return "--raw-features applies to --mode head only (full mode trains on images, not features)";
    if (!one_of(c->optimizer, optimizers)) return "--optimizer must be sgd, adam or adamw";
    if (!one_of(c->schedule, schedules)) return "--schedule must be const, cosine or step";
    if (!one_of(c->bn, bns)) return "--bn must be frozen or train";
    if (!one_of(c->dropout, onoff)) return "--dropout must be on or off";
    if (!c->optimizer[0]) snprintf(c->optimizer, sizeof c->optimizer, "sgd");
    if (!c->schedule[0]) snprintf(c->schedule, sizeof c->schedule, "cosine");
    if (!c->bn[0]) snprintf(c->bn, sizeof c->bn, "frozen");
    if (!c->dropout[0]) snprintf(c->dropout, sizeof c->dropout, "on");
    const int sgd = !strcmp(c->optimizer, "sgd"), step = !strcmp(c->schedule, "step");
    if (!sgd && !isnan(c->momentum)) return "--momentum applies to --optimizer sgd (Adam's betas are 0.9, 0.999)";
    if (isnan(c->momentum)) c->momentum = TRAIN_DEFAULT_MOMENTUM;
    if (c->nesterov && !sgd) return "--nesterov applies to --optimizer sgd";
    if (c->nesterov && !(c->momentum > 0)) return "--nesterov needs a --momentum above 0";
    if (!step && (c->step_size >= 0 || !isnan(c->gamma)))
        return "--step-size and --gamma apply to --schedule step";
    if (step && c->step_size < 0) return "--schedule step needs --step-size EPOCHS";
    if (isnan(c->gamma)) c->gamma = 0.1;
    if (c->warmup_epochs < 0) c->warmup_epochs = 0;
    if (!c->epochs) c->epochs = TRAIN_FULL_DEFAULT_EPOCHS;
    if (c->warmup_epochs >= c->epochs && c->warmup_epochs > 0) {
        snprintf(msg, msg_bytes, "--warmup-epochs %d must be fewer than --epochs %d", c->warmup_epochs, c->epochs);
        return msg;
    }
    if (isnan(c->lr)) c->lr = sgd ? TRAIN_FULL_DEFAULT_LR_SGD : TRAIN_FULL_DEFAULT_LR_ADAM;
    if (isnan(c->lr_backbone)) c->lr_backbone = c->lr / TRAIN_FULL_BACKBONE_LR_DIVISOR;
    if (isnan(c->clip_grad)) c->clip_grad = 0;
    else if (!(c->clip_grad > 0)) return "--clip-grad must be greater than 0 (leave it out for no clipping)";
    return NULL;
}

/* The --mode full flags given in head mode: the first one's name, or NULL. */
static const char *full_flag_given(const train_config *c)
{
    if (!isnan(c->lr_backbone)) return "--lr-backbone";
    if (c->optimizer[0]) return "--optimizer";
    if (c->nesterov) return "--nesterov";
    if (c->no_bn_bias_decay) return "--no-bn-bias-decay";
    if (c->schedule[0]) return "--schedule";
    if (c->step_size >= 0) return "--step-size";
    if (!isnan(c->gamma)) return "--gamma";
    if (c->warmup_epochs >= 0) return "--warmup-epochs";
    if (!isnan(c->clip_grad)) return "--clip-grad";
    if (c->bn[0]) return "--bn";
    if (c->dropout[0]) return "--dropout";
    if (c->resume) return "--resume";
    if (c->checkpoint_dir[0]) return "--checkpoint-dir";
    return NULL;
}

/* Checks and completes the configuration; prints the usage error and returns 2, or 0. */
static int check_args(train_config *c, const model_arch **arch)
{
    const char *why = NULL, *flag;
    char stem[sizeof c->out], msg[256];
    const int full = !strcmp(c->mode, "full");
    if (!c->base[0]) why = "--base is required";
    else if (!(*arch = model_arch_find(c->base))) why = "unknown --base";
    else if (!c->data[0]) why = "--data is required";
    else if (!isnan(c->lr) && !(c->lr > 0)) why = "--lr must be greater than 0";
    else if (c->val_split > 0.9) why = "--val-split must be at most 0.9";
    else if (!full && strcmp(c->mode, "head"))
        why = "--mode must be 'head' (a new last layer on the frozen backbone) or 'full' (every layer trained)";
    else if (!full && (flag = full_flag_given(c))) {
        snprintf(msg, sizeof msg, "%s applies to --mode full only", flag);
        why = msg;
    } else if (full) why = check_full_args(c, msg, sizeof msg);
    else {
        if (isnan(c->lr)) c->lr = TRAIN_DEFAULT_LR;
        if (!c->epochs) c->epochs = TRAIN_DEFAULT_EPOCHS;
        if (isnan(c->momentum)) c->momentum = TRAIN_DEFAULT_MOMENTUM;
    }
    if (!why && !c->out[0] && !c->name[0]) why = "--out FILE or --name NAME is required";
    if (!why && c->out[0]) {
        const size_t n = strlen(c->out);
        if (n < 12 || strcmp(c->out + n - 12, ".safetensors")) why = "--out must end in .safetensors";
        path_stem(c->out, stem, sizeof stem);
        if (!why && c->name[0] && strcmp(stem, c->name))
            why = "--name differs from the --out file's stem (the served model name is the file stem)";
        if (!why && !c->name[0]) {
            if (strlen(stem) >= sizeof c->name) why = "the --out file's stem is too long for a model name";
            else memcpy(c->name, stem, strlen(stem) + 1);
        }
    }
    if (!why && !valid_name(c->name)) why = "the model name must be 1-100 letters, digits, '_', '-', '.' (not first)";
    if (!why && model_arch_find(c->name)) why = "the model name is an ImageNet model's name; choose another";
    if (!why && !c->out[0] &&
        (size_t)snprintf(c->out, sizeof c->out, "%s/%s.safetensors", c->weights_dir, c->name) >= sizeof c->out)
        why = "--weights-dir too long";
    if (!why && full && !c->checkpoint_dir[0] && /* beside the output: <out without .safetensors>.ckpt/ */
        (size_t)snprintf(c->checkpoint_dir, sizeof c->checkpoint_dir, "%.*s.ckpt", (int)(strlen(c->out) - 12),
                         c->out) >= sizeof c->checkpoint_dir)
        why = "--out too long for the default --checkpoint-dir";
    if (why) {
        fprintf(stderr, "cnnserve train: %s (see --help)\n", why);
        if (!strcmp(why, "unknown --base")) {
            int n;
            const model_arch *a = model_archs(&n);
            fprintf(stderr, "  known: ");
            for (int i = 0; i < n; i++) fprintf(stderr, "%s%s", a[i].name, i + 1 < n ? ", " : "\n");
        }
        return 2;
    }
    return 0;
}

/* 1 when both paths name the same existing file. */
static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int train_main(int argc, char **argv)
{
    train_config c;
    train_defaults(&c);
    char err[1024];
    if (config_parse_flags(train_flags, sizeof train_flags / sizeof train_flags[0], &c, NULL, argc, argv, NULL, NULL, err,
                           sizeof err) != CNN_OK) {
        fprintf(stderr, "cnnserve train: %s\n", err);
        return 2;
    }
    if (c.show_help) {
        fputs(usage_text, stdout);
        return 0;
    }
    const model_arch *arch = NULL;
    int rc = check_args(&c, &arch);
    if (rc) return rc;
    char base_path[1200];
    snprintf(base_path, sizeof base_path, "%s/%s.safetensors", c.weights_dir, arch->name);
    if (same_file(base_path, c.out)) {
        fprintf(stderr, "cnnserve train: --out %s is the base model's file; choose another\n", c.out);
        return 2;
    }
    /* our threads (feature workers, the training engine's) do the parallel work; OpenBLAS's own
     * threads would only spin beside them */
    openblas_set_num_threads(1);
    if (!strcmp(c.mode, "full")) return train_full_main(&c, arch, base_path);

    console con = {.tty = isatty(STDERR_FILENO)};
    pthread_mutex_init(&con.lock, NULL);
    model *m = NULL;
    dataset d = {0};
    float *features = NULL, *w = NULL, *b = NULL, *feat_mean = NULL, *feat_inv_std = NULL;
    uint8_t *ok = NULL, *is_val = NULL;
    int *labels = NULL, *train_idx = NULL, *val_idx = NULL;
    json_t *log = NULL, *recipe = NULL;
    train_log tl = {.con = &con};
    rc = 1;
    const uint64_t t_start = timing_now_ns();

    char warn[1024];
    if (model_load(&m, arch->name, base_path, err, sizeof err, warn, sizeof warn) != CNN_OK) {
        fprintf(stderr, "cnnserve train: cannot load the base model: %s\n", err);
        goto done;
    }
    if (warn[0]) console_warn(&con, warn);
    if (train_load_dataset(&c, &con, &d)) goto done;
    const int dim = model_feature_dim(m), k = d.n_classes, n_items = (int)d.n_items;
    features = malloc((size_t)n_items * dim * sizeof(float));
    ok = calloc((size_t)n_items, 1);
    is_val = malloc((size_t)n_items);
    labels = malloc((size_t)n_items * sizeof(int));
    train_idx = malloc((size_t)n_items * sizeof(int));
    val_idx = malloc((size_t)n_items * sizeof(int));
    w = malloc((size_t)k * dim * sizeof(float));
    b = malloc((size_t)k * sizeof(float));
    tl.epochs = json_array();
    if (!features || !ok || !is_val || !labels || !train_idx || !val_idx || !w || !b || !tl.epochs ||
        dataset_split(&d, c.val_split, (uint64_t)c.seed, is_val) != CNN_OK) {
        fprintf(stderr, "cnnserve train: out of memory for %d images of %d features\n", n_items, dim);
        goto done;
    }
    fprintf(stderr, "cnnserve train: %s, %d classes, %d images in %s; features on %d threads\n", arch->name, k,
            n_items, c.data, c.n_threads);

    extract_job job = {.m = m, .d = &d, .max_pixels = c.max_pixels, .features = features, .ok = ok, .con = &con};
    const double feat_s = extract_features(&job, c.n_threads);
    if (feat_s < 0) {
        fprintf(stderr, "cnnserve train: cannot start the feature workers (out of memory)\n");
        goto done;
    }
    for (int i = 0; i < n_items; i++) labels[i] = d.items[i].label;
    int n_train = 0, n_val = 0, n_skipped = 0;
    if (!(log = train_log_begin(&c, arch, base_path, &d, ok, is_val, train_idx, &n_train, val_idx, &n_val,
                                &n_skipped)))
        goto done;
    json_object_set_new(log, "features", json_pack("{s:i,s:i,s:f,s:f,s:i}", "dim", dim, "images", n_items - n_skipped,
                                                   "seconds", feat_s, "images_per_s",
                                                   feat_s > 0 ? n_items / feat_s : 0.0, "threads", c.n_threads));
    fprintf(stderr, "cnnserve train: features of %d images in %.1f s (%.1f images/s), %d skipped; training on %d, "
                    "validating on %d\n",
            n_items - n_skipped, feat_s, feat_s > 0 ? n_items / feat_s : 0.0, n_skipped, n_train, n_val);

    train_recipe r = {.epochs = c.epochs, .batch = c.batch, .lr = (float)c.lr, .momentum = (float)c.momentum,
                      .weight_decay = (float)c.weight_decay, .seed = (uint64_t)c.seed};
    recipe = json_pack("{s:s,s:s,s:i,s:i,s:f,s:f,s:f,s:I,s:f,s:s,s:s,s:s,s:b,s:i,s:i}", "mode", "head", "optimizer",
                       "sgd", "epochs", c.epochs, "batch", c.batch, "lr", c.lr, "momentum", c.momentum,
                       "weight_decay", c.weight_decay, "seed", (json_int_t)c.seed, "val_split", c.val_split, "split",
                       "stratified", "init", "uniform(+-1/sqrt(features))", "loss", "softmax cross-entropy",
                       "standardize", !c.raw_features, "n_train", n_train, "n_val", n_val);
    feat_mean = malloc((size_t)dim * sizeof(float));
    feat_inv_std = malloc((size_t)dim * sizeof(float));
    if (!recipe || !feat_mean || !feat_inv_std ||
        (!c.raw_features && train_feature_norm(features, dim, train_idx, n_train, feat_mean, feat_inv_std) != CNN_OK)) {
        fprintf(stderr, "cnnserve train: out of memory\n");
        goto done;
    }
    const train_norm norm = {feat_mean, feat_inv_std};
    train_head_init(k, dim, r.seed, w, b);
    const uint64_t t_train = timing_now_ns();
    if (train_head(features, dim, labels, k, train_idx, n_train, val_idx, n_val, c.raw_features ? NULL : &norm, &r,
                   w, b, on_epoch, &tl, err, sizeof err) != CNN_OK) {
        console_end_progress(&con);
        fprintf(stderr, "cnnserve train: %s\n", err);
        goto done;
    }
    if (!c.raw_features) train_head_fold(k, dim, &norm, w, b);
    /* The written layer's own figures, on the raw features as the served model sees them. */
    double fin[4] = {NAN, NAN, NAN, NAN};
    if (train_head_eval(features, dim, labels, k, train_idx, n_train, NULL, w, b, &fin[0], &fin[1]) != CNN_OK ||
        (n_val && train_head_eval(features, dim, labels, k, val_idx, n_val, NULL, w, b, &fin[2], &fin[3]) != CNN_OK)) {
        fprintf(stderr, "cnnserve train: out of memory\n");
        goto done;
    }
    const double train_s = timing_ms(t_train, timing_now_ns()) / 1e3;
    console_end_progress(&con);
    if ((rc = write_model(m, c.out, base_path, &d, w, b, recipe, fin[3], err, sizeof err)) != CNN_OK) {
        fprintf(stderr, "cnnserve train: %s\n", err);
        rc = 1;
        goto done;
    }
    const double total_s = timing_ms(t_start, timing_now_ns()) / 1e3;
    json_object_set(log, "recipe", recipe);
    json_object_set_new(log, "epochs", tl.epochs);
    tl.epochs = NULL;
    json_object_set_new(log, "final", json_pack("{s:o,s:o,s:o,s:o}", "train_loss", train_json_num(fin[0]), "train_accuracy",
                                                train_json_num(fin[1]), "val_loss", train_json_num(fin[2]), "val_accuracy",
                                                train_json_num(fin[3])));
    json_object_set_new(log, "train_seconds", json_real(train_s));
    json_object_set_new(log, "total_seconds", json_real(total_s));
    if (c.log_json[0]) {
        char *text = json_dumps(log, JSON_INDENT(1) | JSON_REAL_PRECISION(9));
        if (!text || train_write_text_atomic(c.log_json, text, err, sizeof err) != CNN_OK) {
            fprintf(stderr, "cnnserve train: %s\n", text ? err : "out of memory");
            free(text);
            rc = 1;
            goto done;
        }
        free(text);
    }
    char val_text[64] = "no validation split";
    if (n_val) snprintf(val_text, sizeof val_text, "validation accuracy %.2f%% on %d images", 100 * fin[3], n_val);
    printf("wrote %s: model '%s' (%s head, %d classes), %s, %d training images, %d skipped; features %.1f s "
           "(%.1f images/s, %d threads), training %d epochs %.2f s, total %.1f s\n",
           c.out, c.name, arch->name, k, val_text, n_train, n_skipped, feat_s, feat_s > 0 ? n_items / feat_s : 0.0,
           c.n_threads, tl.n_epochs, train_s, total_s);
    rc = 0;
done:
    json_decref(tl.epochs);
    json_decref(recipe);
    json_decref(log);
    free(features);
    free(feat_mean);
    free(feat_inv_std);
    free(ok);
    free(is_val);
    free(labels);
    free(train_idx);
    free(val_idx);
    free(w);
    free(b);
    dataset_free(&d);
    model_free(m);
    pthread_mutex_destroy(&con.lock);
    return rc;
}
