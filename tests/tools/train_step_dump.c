/* train_step_dump: one full fine-tuning step of a model (models/model_train.h) on a given batch, for
 * the PyTorch autograd comparisons (tests/train/).
 *
 * usage: train_step_dump ARCH WEIGHTS INPUT LABELS OUT [options]
 *   ARCH     a model name or alias (mobilenet_v3_large, ..., inception_v3)
 *   WEIGHTS  base safetensors file (its __metadata__ padding/crop honoured as by serve)
 *   INPUT    raw little-endian float32 n x 3 x S x S normalized images
 *   LABELS   raw little-endian int32 n labels (n = file size / 4)
 *   OUT      safetensors written: every gradient under its parameter's torchvision name
 *            ("features.0.0.weight", ...) as F32 of the parameter's shape, and __metadata__
 *            "loss" (%.17g, mean cross-entropy) and "n_correct" (top-1 hits)
 *   --bn frozen|train   BatchNorm mode (default frozen)
 *   --threads N         threads (default 1)
 *   --classes K         replace the head by a new K-class layer (default: keep the file's)
 *   --seed S            dropout / new head seed (default 0)
 *   --dropout           dropout layers active (default off)
 *   --step S            step number of the dropout masks (default 0)
 *   --save PATH         after the step, model_train_save to PATH (parameters as they were, BN
 *                       running statistics as the step left them in --bn train mode)
 *   --logits PATH       after the step, eval-mode logits of the batch, raw float32 n x K
 *   --repeat R          run the step R times (the same step number, so the same gradients) and
 *                       print the fastest step's wall time ("best_ms T"): steady-state speed
 * Prints "loss L n_correct C bytes B" on stdout. Exit status 0 on success, 1 on any error. */
#include <cblas.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../../core/weights.h"
#include "../../models/model.h"
#include "../../models/model_train.h"

static void *read_file(const char *path, size_t *bytes)
{
    struct stat st;
    FILE *f = fopen(path, "rb");
    if (!f || fstat(fileno(f), &st) || st.st_size <= 0) {
        if (f) fclose(f);
        return NULL;
    }
    void *p = malloc((size_t)st.st_size);
    if (p && fread(p, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *bytes = (size_t)st.st_size;
    return p;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: train_step_dump ARCH WEIGHTS INPUT LABELS OUT [--bn frozen|train] [--threads N] "
                        "[--classes K] [--seed S] [--dropout] [--step S] [--save PATH] [--logits PATH]\n");
        return 1;
    }
    openblas_set_num_threads(1); /* the engine's threads are the threads (model_train.h) */
    model_train_opts o = {.max_batch = 1, .n_threads = 1, .bn = MODEL_BN_FROZEN};
    uint64_t step = 0;
    int repeat = 1;
    const char *save = NULL, *logits_path = NULL;
    for (int i = 6; i < argc; i++) {
        const int more = i + 1 < argc;
        if (!strcmp(argv[i], "--bn") && more) {
            const char *m = argv[++i];
            if (strcmp(m, "frozen") && strcmp(m, "train")) {
                fprintf(stderr, "train_step_dump: --bn frozen or train\n");
                return 1;
            }
            o.bn = strcmp(m, "train") ? MODEL_BN_FROZEN : MODEL_BN_TRAIN;
        } else if (!strcmp(argv[i], "--threads") && more) {
            o.n_threads = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--classes") && more) {
            o.n_classes = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--seed") && more) {
            o.seed = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--step") && more) {
            step = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--repeat") && more) {
            repeat = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--dropout")) {
            o.dropout = 1;
        } else if (!strcmp(argv[i], "--save") && more) {
            save = argv[++i];
        } else if (!strcmp(argv[i], "--logits") && more) {
            logits_path = argv[++i];
        } else {
            fprintf(stderr, "train_step_dump: unknown or incomplete option %s\n", argv[i]);
            return 1;
        }
    }
    size_t in_bytes = 0, lab_bytes = 0;
    float *input = read_file(argv[3], &in_bytes);
    int32_t *labels = read_file(argv[4], &lab_bytes);
    if (!input || !labels || lab_bytes % 4) {
        fprintf(stderr, "train_step_dump: cannot read %s or %s\n", argv[3], argv[4]);
        return 1;
    }
    const int n = (int)(lab_bytes / 4);
    o.max_batch = n;
    char err[512];
    model_train *t = NULL;
    cnn_status s = model_train_init(&t, argv[1], argv[2], &o, err, sizeof err);
    if (s != CNN_OK) {
        fprintf(stderr, "train_step_dump: %s\n", err);
        return 1;
    }
    const int S = model_train_input_size(t), K = model_train_num_classes(t);
    if (in_bytes != (size_t)n * 3 * S * S * sizeof(float)) {
        fprintf(stderr, "train_step_dump: %s has %zu bytes, expected %d x 3 x %d x %d floats\n", argv[3], in_bytes, n,
                S, S);
        return 1;
    }
    int *lab = malloc((size_t)n * sizeof(int));
    if (!lab) return 1;
    for (int i = 0; i < n; i++) lab[i] = labels[i];
    double loss = 0;
    int correct = 0;
    double best_ms = 0;
    for (int r = 0; r < (repeat > 1 ? repeat : 1); r++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        if ((s = model_train_step(t, input, lab, n, step, &loss, &correct)) != CNN_OK) {
            fprintf(stderr, "train_step_dump: step failed: %s (labels must be in 0..%d)\n", cnn_status_str(s), K - 1);
            return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        const double ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
        if (r == 0 || ms < best_ms) best_ms = ms;
    }
    const int np = model_train_n_params(t);
    weights_out_tensor *out = calloc((size_t)np, sizeof(*out));
    if (!out) return 1;
    for (int i = 0; i < np; i++) {
        const model_param *p = model_train_param(t, i);
        out[i] = (weights_out_tensor){p->name, p->n_dims, p->shape, p->grad};
    }
    char loss_s[64], correct_s[32];
    snprintf(loss_s, sizeof loss_s, "%.17g", loss);
    snprintf(correct_s, sizeof correct_s, "%d", correct);
    const weights_meta_kv meta[2] = {{"loss", loss_s}, {"n_correct", correct_s}};
    if ((s = weights_write(argv[5], out, (size_t)np, meta, 2, err, sizeof err)) != CNN_OK) {
        fprintf(stderr, "train_step_dump: %s\n", err);
        return 1;
    }
    if (save && (s = model_train_save(t, save, NULL, 0, err, sizeof err)) != CNN_OK) {
        fprintf(stderr, "train_step_dump: %s\n", err);
        return 1;
    }
    if (logits_path) {
        float *logits = malloc((size_t)n * K * sizeof(float));
        FILE *f = fopen(logits_path, "wb");
        if (!logits || !f || model_train_eval(t, input, n, logits) != CNN_OK ||
            fwrite(logits, sizeof(float), (size_t)n * K, f) != (size_t)n * K || fclose(f)) {
            fprintf(stderr, "train_step_dump: cannot write %s\n", logits_path);
            return 1;
        }
        free(logits);
    }
    printf("loss %.17g n_correct %d bytes %zu", loss, correct, model_train_bytes(t));
    if (repeat > 1) printf(" best_ms %.1f", best_ms);
    printf("\n");
    free(out);
    free(lab);
    free(labels);
    free(input);
    model_train_free(t);
    return 0;
}
