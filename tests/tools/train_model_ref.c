/* train_model_ref: training steps of a whole model (models/model_train.h + core/optim.h) for
 * tests/train/test_train_models.py, which repeats them with PyTorch autograd and torch.optim.
 *
 *   train_model_ref --arch A --weights FILE --input F32 --n N --labels L0,L1,... [flags]
 *     --bn frozen|train      BatchNorm mode (default frozen); dropout is always off
 *     --optim none|sgd|adam  optimizer (default none: one step, gradients only)
 *     --steps K              optimizer steps (default 1); the first step's gradients are dumped
 *     --lr X --momentum X --weight-decay X   (defaults 0.01, 0.9, 0)
 *     --threads T            (default 1)
 *     --grads FILE           safetensors: every parameter's gradient of the first step under its
 *                            torchvision name, plus "loss" [1] (the first step's mean loss)
 *     --save FILE            model_train_save after the last step (the base file's metadata copied)
 *     --logits FILE          model_train_eval of the input after the last step: N x K float32
 *
 * The input file holds at least N x 3 x S x S float32 (normalized images, S the model's input size).
 * Exit status 0, or 1 with a message on stderr. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/optim.h"
#include "../../core/weights.h"
#include "../../models/model_train.h"

#define MAX_N 64

typedef struct {
    const char *arch, *weights, *input, *labels, *bn, *optim, *grads, *save, *logits;
    int n, steps, n_threads;
    double lr, momentum, weight_decay;
} tool_opts;

static int parse_args(int argc, char **argv, tool_opts *o)
{
    *o = (tool_opts){.bn = "frozen", .optim = "none", .steps = 1, .n_threads = 1, .lr = 0.01, .momentum = 0.9};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--arch")) o->arch = v;
        else if (!strcmp(k, "--weights")) o->weights = v;
        else if (!strcmp(k, "--input")) o->input = v;
        else if (!strcmp(k, "--labels")) o->labels = v;
        else if (!strcmp(k, "--bn")) o->bn = v;
        else if (!strcmp(k, "--optim")) o->optim = v;
        else if (!strcmp(k, "--grads")) o->grads = v;
        else if (!strcmp(k, "--save")) o->save = v;
        else if (!strcmp(k, "--logits")) o->logits = v;
        else if (!strcmp(k, "--n")) o->n = atoi(v);
        else if (!strcmp(k, "--steps")) o->steps = atoi(v);
        else if (!strcmp(k, "--threads")) o->n_threads = atoi(v);
        else if (!strcmp(k, "--lr")) o->lr = atof(v);
        else if (!strcmp(k, "--momentum")) o->momentum = atof(v);
        else if (!strcmp(k, "--weight-decay")) o->weight_decay = atof(v);
        else return -1;
    }
    if (argc % 2 != 1 || !o->arch || !o->weights || !o->input || !o->labels || o->n < 1 || o->n > MAX_N ||
        o->steps < 1 || o->n_threads < 1 || (strcmp(o->bn, "frozen") && strcmp(o->bn, "train")) ||
        (strcmp(o->optim, "none") && strcmp(o->optim, "sgd") && strcmp(o->optim, "adam")))
        return -1;
    return 0;
}

static int parse_labels(const char *s, int n, int *labels)
{
    for (int i = 0; i < n; i++) {
        char *end;
        labels[i] = (int)strtol(s, &end, 10);
        if (end == s || (i + 1 < n ? *end != ',' : *end != '\0')) return -1;
        s = end + 1;
    }
    return 0;
}

static float *read_floats(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    float *p = malloc(n * sizeof *p);
    int ok = f && p && fread(p, sizeof *p, n, f) == n;
    if (f) fclose(f);
    if (!ok) {
        free(p);
        return NULL;
    }
    return p;
}

static int write_grads(model_train *t, const char *path, double loss, char *err, size_t err_bytes)
{
    const int n_params = model_train_n_params(t);
    weights_out_tensor *ts = calloc((size_t)n_params + 1, sizeof *ts);
    if (!ts) return -1;
    for (int i = 0; i < n_params; i++) {
        const model_param *p = model_train_param(t, i);
        ts[i] = (weights_out_tensor){p->name, p->n_dims, p->shape, p->grad};
    }
    const float loss_f = (float)loss;
    const int64_t one = 1;
    ts[n_params] = (weights_out_tensor){"loss", 1, &one, &loss_f};
    cnn_status s = weights_write(path, ts, (size_t)n_params + 1, NULL, 0, err, err_bytes);
    free(ts);
    return s == CNN_OK ? 0 : -1;
}

/* The base file's __metadata__ entries serve/classify need, copied into the saved file. */
static const char *const meta_keys[] = {"architecture", "num_classes", "labels", "padding", "mean", "std",
                                        "resize", "crop"};
enum { N_META_KEYS = sizeof meta_keys / sizeof meta_keys[0] };

static int save_model(const model_train *t, const char *base, const char *path, char *err, size_t err_bytes)
{
    weights *w;
    if (weights_open(&w, base, err, err_bytes) != CNN_OK) return -1;
    const char *kv[2 * N_META_KEYS + 2];
    int n_meta = 0;
    for (int i = 0; i < N_META_KEYS; i++) {
        const char *v = weights_meta(w, meta_keys[i]);
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

int main(int argc, char **argv)
{
    tool_opts o;
    int labels[MAX_N];
    if (parse_args(argc, argv, &o) || parse_labels(o.labels, o.n, labels)) {
        fprintf(stderr, "usage: train_model_ref --arch A --weights FILE --input F32 --n N --labels L0,L1,... "
                        "[--bn frozen|train] [--optim none|sgd|adam] [--steps K] [--lr X] [--momentum X] "
                        "[--weight-decay X] [--threads T] [--grads FILE] [--save FILE] [--logits FILE]\n");
        return 2;
    }
    char err[512] = "";
    int rc = 1;
    model_train *t = NULL;
    optim *opt = NULL;
    optim_param *ops = NULL;
    float *input = NULL, *logits = NULL;
    model_train_opts mo = {.max_batch = o.n, .n_threads = o.n_threads,
                           .bn = strcmp(o.bn, "train") ? MODEL_BN_FROZEN : MODEL_BN_TRAIN, .dropout = 0, .seed = 1,
                           .n_classes = 0};
    if (model_train_init(&t, o.arch, o.weights, &mo, err, sizeof err) != CNN_OK) goto done;
    const int s = model_train_input_size(t), k = model_train_num_classes(t);
    const size_t n_in = (size_t)o.n * 3 * s * s;
    if (!(input = read_floats(o.input, n_in))) {
        snprintf(err, sizeof err, "cannot read %zu floats from %s", n_in, o.input);
        goto done;
    }
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
    for (int step = 0; step < o.steps; step++) {
        double loss;
        if (model_train_step(t, input, labels, o.n, (uint64_t)step, &loss, NULL) != CNN_OK) {
            snprintf(err, sizeof err, "model_train_step failed at step %d", step);
            goto done;
        }
        if (step == 0 && o.grads && write_grads(t, o.grads, loss, err, sizeof err)) goto done;
        if (opt) optim_step(opt, 1.0);
    }
    if (o.save && save_model(t, o.weights, o.save, err, sizeof err)) goto done;
    if (o.logits) {
        if (!(logits = malloc((size_t)o.n * k * sizeof *logits))) goto done;
        if (model_train_eval(t, input, o.n, logits) != CNN_OK) {
            snprintf(err, sizeof err, "model_train_eval failed");
            goto done;
        }
        FILE *f = fopen(o.logits, "wb");
        int ok = f && fwrite(logits, sizeof *logits, (size_t)o.n * k, f) == (size_t)o.n * k;
        if (f && fclose(f)) ok = 0;
        if (!ok) {
            snprintf(err, sizeof err, "cannot write %s: %s", o.logits, strerror(errno));
            goto done;
        }
    }
    rc = 0;
done:
    if (rc) fprintf(stderr, "train_model_ref: %s\n", err[0] ? err : "out of memory");
    free(logits);
    free(input);
    optim_free(opt);
    free(ops);
    model_train_free(t);
    return rc;
}
