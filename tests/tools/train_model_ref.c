/* train_model_ref: training steps of a whole model (models/model_train.h + core/optim.h) on a given
 * batch, for the PyTorch autograd / torch.optim comparisons (tests/train/test_train_models.py) and for
 * timing one step by hand (--repeat).
 *
 *   train_model_ref --arch A --weights FILE --input F32 --labels L0,L1,... [flags]
 *     --arch A               a model name or alias (mobilenet_v3_large, ..., inception_v3)
 *     --weights FILE         base safetensors file (its __metadata__ padding/crop honoured as by serve)
 *     --input F32            raw little-endian float32 n x 3 x S x S normalized images, n = the number
 *                            of labels, S the model's input size (the file's size must match)
 *     --labels L0,L1,...     the n labels
 *     --bn frozen|train      BatchNorm mode (default frozen)
 *     --threads T            engine threads (default 1)
 *     --classes K            replace the head by a new K-class layer (default: keep the file's)
 *     --seed S               dropout masks / new head seed (default 0)
 *     --dropout              dropout layers active (default off)
 *     --step S               step number of the first step's dropout masks (default 0; step k uses S + k)
 *     --optim none|sgd|adam  optimizer after every step (default none)
 *     --steps K              steps (default 1); the first step's gradients are dumped
 *     --lr X --momentum X --weight-decay X   optimizer (defaults 0.01, 0.9, 0)
 *     --repeat R             run the first step R times (parameters unchanged between them, so the
 *                            same gradients; in --bn train the running statistics move each time) and
 *                            print the fastest one's wall time: steady-state speed
 *     --grads FILE           safetensors: every parameter's gradient of the first step under its
 *                            torchvision name, __metadata__ "loss" (%.17g, the mean cross-entropy) and
 *                            "n_correct" (top-1 hits)
 *     --save FILE            model_train_save after the last step (BN running statistics as the steps
 *                            left them; the base file's serving metadata copied, with --classes K
 *                            num_classes K and no labels)
 *     --logits FILE          model_train_eval of the input after the last step: raw float32 n x K
 *
 * Prints "loss L n_correct C bytes B [best_ms T]" (the first step's) on stdout. Exit status 0, 1 with a
 * message on stderr, 2 on a usage error. */
#include <cblas.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../../core/optim.h"
#include "../../core/weights.h"
#include "../../models/model_train.h"

#define MAX_N 256

typedef struct {
    const char *arch, *weights, *input, *labels, *bn, *optim, *grads, *save, *logits;
    int n, steps, n_threads, n_classes, dropout, repeat;
    uint64_t seed, step;
    double lr, momentum, weight_decay;
} tool_opts;

/* n = the number of comma-separated labels (at most MAX_N); -1 when malformed. */
static int parse_labels(const char *s, int *labels)
{
    int n = 0;
    for (;;) {
        char *end;
        errno = 0;
        const long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT_MAX || n == MAX_N) return -1;
        labels[n++] = (int)v;
        if (*end == '\0') return n;
        if (*end != ',') return -1;
        s = end + 1;
    }
}

static int parse_args(int argc, char **argv, tool_opts *o, int *labels)
{
    *o = (tool_opts){.bn = "frozen", .optim = "none", .steps = 1, .n_threads = 1, .repeat = 1, .lr = 0.01,
                     .momentum = 0.9};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "--dropout")) {
            o->dropout = 1;
            continue;
        }
        if (i + 1 == argc) return -1;
        const char *v = argv[++i];
        if (!strcmp(k, "--arch")) o->arch = v;
        else if (!strcmp(k, "--weights")) o->weights = v;
        else if (!strcmp(k, "--input")) o->input = v;
        else if (!strcmp(k, "--labels")) o->labels = v;
        else if (!strcmp(k, "--bn")) o->bn = v;
        else if (!strcmp(k, "--optim")) o->optim = v;
        else if (!strcmp(k, "--grads")) o->grads = v;
        else if (!strcmp(k, "--save")) o->save = v;
        else if (!strcmp(k, "--logits")) o->logits = v;
        else if (!strcmp(k, "--steps")) o->steps = atoi(v);
        else if (!strcmp(k, "--threads")) o->n_threads = atoi(v);
        else if (!strcmp(k, "--classes")) o->n_classes = atoi(v);
        else if (!strcmp(k, "--repeat")) o->repeat = atoi(v);
        else if (!strcmp(k, "--seed")) o->seed = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--step")) o->step = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--lr")) o->lr = atof(v);
        else if (!strcmp(k, "--momentum")) o->momentum = atof(v);
        else if (!strcmp(k, "--weight-decay")) o->weight_decay = atof(v);
        else return -1;
    }
    if (!o->arch || !o->weights || !o->input || !o->labels || (o->n = parse_labels(o->labels, labels)) < 1 ||
        o->steps < 1 || o->n_threads < 1 || o->n_classes < 0 || o->repeat < 1 ||
        (strcmp(o->bn, "frozen") && strcmp(o->bn, "train")) ||
        (strcmp(o->optim, "none") && strcmp(o->optim, "sgd") && strcmp(o->optim, "adam")))
        return -1;
    return 0;
}

/* The whole file, which must hold exactly n floats; NULL with err set otherwise. */
static float *read_floats(const char *path, size_t n, char *err, size_t err_bytes)
{
    struct stat st;
    FILE *f = fopen(path, "rb");
    float *p = NULL;
    if (!f || fstat(fileno(f), &st)) {
        snprintf(err, err_bytes, "cannot read %s: %s", path, strerror(errno));
    } else if ((size_t)st.st_size != n * sizeof *p) {
        snprintf(err, err_bytes, "%s has %lld bytes, expected %zu floats (n x 3 x S x S)", path,
                 (long long)st.st_size, n);
    } else if (!(p = malloc(n * sizeof *p)) || fread(p, sizeof *p, n, f) != n) {
        snprintf(err, err_bytes, "cannot read %zu floats from %s", n, path);
        free(p);
        p = NULL;
    }
    if (f) fclose(f);
    return p;
}

static int write_grads(model_train *t, const char *path, double loss, int n_correct, char *err, size_t err_bytes)
{
    const int n_params = model_train_n_params(t);
    weights_out_tensor *ts = calloc((size_t)n_params, sizeof *ts);
    if (!ts) return -1;
    for (int i = 0; i < n_params; i++) {
        const model_param *p = model_train_param(t, i);
        ts[i] = (weights_out_tensor){p->name, p->n_dims, p->shape, p->grad};
    }
    char loss_s[64], correct_s[32];
    snprintf(loss_s, sizeof loss_s, "%.17g", loss);
    snprintf(correct_s, sizeof correct_s, "%d", n_correct);
    const weights_meta_kv meta[2] = {{"loss", loss_s}, {"n_correct", correct_s}};
    cnn_status s = weights_write(path, ts, (size_t)n_params, meta, 2, err, err_bytes);
    free(ts);
    return s == CNN_OK ? 0 : -1;
}

/* The base file's __metadata__ entries serve/classify need, copied into the saved file (with a new
 * head (--classes): its class count instead of the base's count and labels). */
static const char *const meta_keys[] = {"architecture", "num_classes", "labels", "padding", "mean", "std",
                                        "resize", "crop"};
enum { N_META_KEYS = sizeof meta_keys / sizeof meta_keys[0] };

static int save_model(const model_train *t, const char *base, int new_head, const char *path, char *err,
                      size_t err_bytes)
{
    weights *w;
    if (weights_open(&w, base, err, err_bytes) != CNN_OK) return -1;
    const char *kv[2 * N_META_KEYS + 2];
    char classes[16];
    snprintf(classes, sizeof classes, "%d", model_train_num_classes(t));
    int n_meta = 0;
    for (int i = 0; i < N_META_KEYS; i++) {
        const char *v = weights_meta(w, meta_keys[i]);
        if (new_head && !strcmp(meta_keys[i], "num_classes")) v = classes;
        else if (new_head && !strcmp(meta_keys[i], "labels")) v = NULL;
        if (!v) continue;
        kv[2 * n_meta] = meta_keys[i];
        kv[2 * n_meta + 1] = v;
        n_meta++;
    }
    kv[2 * n_meta] = "source";
    kv[2 * n_meta + 1] = "tests/tools/train_model_ref";
    n_meta++;
    cnn_status s = model_train_save(t, path, kv, n_meta, err, err_bytes);
    weights_free(w);
    return s == CNN_OK ? 0 : -1;
}

static int write_logits(model_train *t, const float *input, int n, const char *path, char *err, size_t err_bytes)
{
    const size_t n_out = (size_t)n * model_train_num_classes(t);
    float *logits = malloc(n_out * sizeof *logits);
    if (!logits) return -1;
    int rc = -1;
    if (model_train_eval(t, input, n, logits) != CNN_OK) {
        snprintf(err, err_bytes, "model_train_eval failed");
    } else {
        FILE *f = fopen(path, "wb");
        int ok = f && fwrite(logits, sizeof *logits, n_out, f) == n_out;
        if (f && fclose(f)) ok = 0;
        if (ok) rc = 0;
        else snprintf(err, err_bytes, "cannot write %s: %s", path, strerror(errno));
    }
    free(logits);
    return rc;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    tool_opts o;
    int labels[MAX_N];
    if (parse_args(argc, argv, &o, labels)) {
        fprintf(stderr, "usage: train_model_ref --arch A --weights FILE --input F32 --labels L0,L1,... "
                        "[--bn frozen|train] [--threads T] [--classes K] [--seed S] [--dropout] [--step S] "
                        "[--optim none|sgd|adam] [--steps K] [--lr X] [--momentum X] [--weight-decay X] "
                        "[--repeat R] [--grads FILE] [--save FILE] [--logits FILE]\n");
        return 2;
    }
    openblas_set_num_threads(1); /* the engine's threads are the threads (model_train.h) */
    char err[512] = "";
    int rc = 1;
    model_train *t = NULL;
    optim *opt = NULL;
    optim_param *ops = NULL;
    float *input = NULL;
    model_train_opts mo = {.max_batch = o.n, .n_threads = o.n_threads,
                           .bn = strcmp(o.bn, "train") ? MODEL_BN_FROZEN : MODEL_BN_TRAIN, .dropout = o.dropout,
                           .seed = o.seed, .n_classes = o.n_classes};
    if (model_train_init(&t, o.arch, o.weights, &mo, err, sizeof err) != CNN_OK) goto done;
    const int s = model_train_input_size(t);
    if (!(input = read_floats(o.input, (size_t)o.n * 3 * s * s, err, sizeof err))) goto done;
    const int n_params = model_train_n_params(t);
    if (strcmp(o.optim, "none")) {
        if (!(ops = calloc((size_t)n_params, sizeof *ops))) goto done;
        for (int i = 0; i < n_params; i++) {
            model_param *p = model_train_param(t, i);
            ops[i] = (optim_param){p->data, p->grad, p->n, p->is_head ? OPTIM_GROUP_HEAD : OPTIM_GROUP_BACKBONE, 0};
        }
        optim_opts oo = {.kind = strcmp(o.optim, "adam") ? OPTIM_SGD : OPTIM_ADAM, .lr = {o.lr, o.lr},
                         .weight_decay = o.weight_decay, .momentum = o.momentum, .beta1 = 0.9, .beta2 = 0.999,
                         .eps = 1e-8};
        if (optim_init(&opt, &oo, ops, n_params, err, sizeof err) != CNN_OK) goto done;
    }
    double loss0 = 0, best_ms = 0;
    int correct0 = 0;
    for (int step = 0; step < o.steps; step++) {
        double loss;
        int correct;
        for (int r = 0; r < (step == 0 ? o.repeat : 1); r++) {
            const double t0 = now_ms();
            cnn_status st = model_train_step(t, input, labels, o.n, o.step + (uint64_t)step, &loss, &correct);
            if (st != CNN_OK) {
                snprintf(err, sizeof err, "model_train_step failed at step %d: %s (labels must be in 0..%d)", step,
                         cnn_status_str(st), model_train_num_classes(t) - 1);
                goto done;
            }
            const double ms = now_ms() - t0;
            if (r == 0 || ms < best_ms) best_ms = ms;
        }
        if (step == 0) {
            loss0 = loss;
            correct0 = correct;
            if (o.grads && write_grads(t, o.grads, loss, correct, err, sizeof err)) goto done;
        }
        if (opt) optim_step(opt, 1.0);
    }
    if (o.save && save_model(t, o.weights, o.n_classes > 0, o.save, err, sizeof err)) goto done;
    if (o.logits && write_logits(t, input, o.n, o.logits, err, sizeof err)) goto done;
    printf("loss %.17g n_correct %d bytes %zu", loss0, correct0, model_train_bytes(t));
    if (o.repeat > 1) printf(" best_ms %.1f", best_ms);
    printf("\n");
    rc = 0;
done:
    if (rc) fprintf(stderr, "train_model_ref: %s\n", err[0] ? err : "out of memory");
    free(input);
    optim_free(opt);
    free(ops);
    model_train_free(t);
    return rc;
}
