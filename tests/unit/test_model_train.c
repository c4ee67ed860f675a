/* Full fine-tuning engine (models/model_train.h) on the five architectures with the seeded random
 * weights of the PyTorch reference set ($CNN_CACHE/ref, from make ref), rewritten with a small
 * `crop` so a step takes milliseconds: a step and an eval give bit-identical gradients, BN running
 * statistics and logits at 1, 2 and 3 threads; the gradient of the whole network's loss agrees with
 * finite differences; the eval-mode forward agrees with the inference engine (model_run); the saved
 * file loads in the inference engine and gives the same logits; a second step after an update equals
 * the step of a fresh graph built from the updated file (no stale state); bad arguments are refused. The
 * comparisons with PyTorch autograd are tests/train's. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../core/rng.h"
#include "../../core/weights.h"
#include "../../models/model.h"
#include "../../models/model_train.h"
#include "../test.h"

static char cache_dir[1024], shared_dir[1024], tmp_dir[1024];

typedef struct {
    const char *arch;
    int crop;
} arch_case;

/* The smallest crops the architectures take comfortably (Inception's stride-2 stages need 75). */
static const arch_case cases[] = {
    {"mobilenet_v3_large", 64}, {"mobilenet_v3_small", 64}, {"shufflenet_v2_x1_0", 64},
    {"alexnet", 64},            {"inception_v3", 75},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

/* Writes the weights src of c->arch with __metadata__ crop (and src's padding) into tmp_dir as
 * <arch><tag>.safetensors; 0 on success. */
static int write_small(const arch_case *c, const char *src, const char *tag, char *out, size_t out_bytes)
{
    char err[256], crop[16];
    snprintf(out, out_bytes, "%s/%s%s.safetensors", tmp_dir, c->arch, tag);
    weights *w = NULL;
    if (weights_open(&w, src, err, sizeof err) != CNN_OK) return -1;
    const size_t n = weights_count(w);
    weights_out_tensor *t = calloc(n, sizeof *t);
    int rc = -1;
    if (t) {
        for (size_t i = 0; i < n; i++) {
            const weights_tensor *x = weights_at(w, i);
            t[i] = (weights_out_tensor){x->name, x->n_dims, x->shape, x->data};
        }
        snprintf(crop, sizeof crop, "%d", c->crop);
        const char *padding = weights_meta(w, "padding");
        const weights_meta_kv meta[2] = {{"crop", crop}, {"padding", padding ? padding : "torch"}};
        rc = weights_write(out, t, n, meta, 2, err, sizeof err) == CNN_OK ? 0 : -1;
    }
    free(t);
    weights_free(w);
    return rc;
}

static float *random_input(int n, int s, uint64_t seed)
{
    const size_t m = (size_t)n * 3 * s * s;
    float *x = malloc(m * sizeof(float));
    rng r;
    rng_init(&r, seed);
    for (size_t i = 0; x && i < m; i++) x[i] = (float)(2.0 * rng_uniform(&r) - 1.0);
    return x;
}

static int file_equal(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

/* One step (and an eval) on n_threads threads; grads / logits / loss out, saved to save_path. */
typedef struct {
    double loss;
    int correct;
    float *grads;  /* concatenated */
    size_t n_grads;
    float *logits;
} step_out;

/* o's gradients (every parameter's, concatenated) and eval logits of x after a step of t: 0, or -1. */
static int step_outputs(model_train *t, const float *x, int n, step_out *o)
{
    o->n_grads = 0;
    for (int i = 0; i < model_train_n_params(t); i++) o->n_grads += model_train_param(t, i)->n;
    o->grads = malloc(o->n_grads * sizeof(float));
    o->logits = malloc((size_t)n * (size_t)model_train_num_classes(t) * sizeof(float));
    if (!o->grads || !o->logits) return -1;
    size_t at = 0;
    for (int i = 0; i < model_train_n_params(t); i++) {
        const model_param *p = model_train_param(t, i);
        memcpy(o->grads + at, p->grad, p->n * sizeof(float));
        at += p->n;
    }
    return model_train_eval(t, x, n, o->logits) == CNN_OK ? 0 : -1;
}

/* An update along the gradients that moves each parameter by at most max_move. */
static void step_scaled(model_train *t, float max_move)
{
    float gmax = 1e-30f;
    for (int i = 0; i < model_train_n_params(t); i++) {
        const model_param *p = model_train_param(t, i);
        for (size_t j = 0; j < p->n; j++) gmax = fmaxf(gmax, fabsf(p->grad[j]));
    }
    for (int i = 0; i < model_train_n_params(t); i++) {
        model_param *p = model_train_param(t, i);
        for (size_t j = 0; j < p->n; j++) p->data[j] -= max_move / gmax * p->grad[j];
    }
}

static int run_step(const char *path, const arch_case *c, int n_threads, model_bn_mode bn, const float *x,
                    const int *labels, int n, const char *save_path, step_out *o)
{
    model_train_opts opts = {.max_batch = n, .n_threads = n_threads, .bn = bn, .dropout = 1, .seed = 7, .n_classes = 5};
    model_train *t = NULL;
    char err[512];
    if (model_train_init(&t, c->arch, path, &opts, err, sizeof err) != CNN_OK) {
        printf("#   %s: %s\n", c->arch, err);
        return -1;
    }
    int rc = model_train_step(t, x, labels, n, 3, &o->loss, &o->correct) == CNN_OK ? 0 : -1;
    if (step_outputs(t, x, n, o)) rc = -1;
    if (!rc) rc = model_train_save(t, save_path, NULL, 0, err, sizeof err) == CNN_OK ? 0 : -1;
    model_train_free(t);
    return rc;
}

static void test_threads(const arch_case *c, const char *path)
{
    char name[256];
    snprintf(name, sizeof name, "%s: step + eval bit-identical at 1, 2, 3 threads (BN train, dropout, new 5-class head)",
             c->arch);
    test_begin();
    const int n = 3, labels[3] = {0, 4, 2};
    float *x = random_input(n, c->crop, 11);
    step_out o[3] = {{0}};
    char save[3][1200];
    for (int th = 1; th <= 3 && x; th++) {
        snprintf(save[th - 1], sizeof save[0], "%s/%s_t%d.safetensors", tmp_dir, c->arch, th);
        T_CHECK(!run_step(path, c, th, MODEL_BN_TRAIN, x, labels, n, save[th - 1], &o[th - 1]), "step at %d threads failed",
                th);
    }
    T_CHECK(isfinite(o[0].loss) && o[0].loss > 0, "loss %g", o[0].loss);
    for (int th = 2; th <= 3; th++) {
        const step_out *a = &o[0], *b = &o[th - 1];
        if (!a->grads || !b->grads) continue;
        T_CHECK(a->loss == b->loss && a->correct == b->correct, "loss %.17g vs %.17g at %d threads", a->loss, b->loss, th);
        T_CHECK(a->n_grads == b->n_grads && !memcmp(a->grads, b->grads, a->n_grads * sizeof(float)),
                "gradients differ at %d threads", th);
        T_CHECK(!memcmp(a->logits, b->logits, (size_t)n * 5 * sizeof(float)), "eval logits differ at %d threads", th);
        T_CHECK(file_equal(save[0], save[th - 1]), "saved files (running statistics) differ at %d threads", th);
    }
    size_t nonzero = 0;
    for (size_t i = 0; o[0].grads && i < o[0].n_grads; i++) nonzero += o[0].grads[i] != 0.0f;
    T_CHECK(nonzero > o[0].n_grads / 10, "only %zu of %zu gradient values are nonzero", nonzero, o[0].n_grads);
    for (int i = 0; i < 3; i++) {
        free(o[i].grads);
        free(o[i].logits);
        unlink(save[i]);
    }
    free(x);
    test_end(name);
}

/* d/de loss(p + e d) by central differences vs the gradient . d along d = g / |g| of each of a few
 * tensors spread over the network (first conv, middle layers, the head): no cancellation in g . d,
 * and e sized to move the loss by about 0.01 % (above the float forward's rounding, small enough
 * for the first order: within 0.7 % on both networks). BatchNorm frozen, dropout off: a smooth function of the real weights. */
static void test_finite_diff(const arch_case *c, const char *path)
{
    char name[256];
    snprintf(name, sizeof name, "%s: whole-network gradient along g/|g| vs central differences of the loss (real weights)",
             c->arch);
    test_begin();
    const int n = 2, labels[2] = {1, 3};
    float *x = random_input(n, c->crop, 5);
    model_train_opts opts = {.max_batch = n, .n_threads = 2, .bn = MODEL_BN_FROZEN, .seed = 1, .n_classes = 4};
    model_train *t = NULL;
    char err[512];
    T_CHECK(x && model_train_init(&t, c->arch, path, &opts, err, sizeof err) == CNN_OK, "init: %s", err);
    if (t) {
        const int np = model_train_n_params(t);
        const int picks[4] = {0, np / 2, np / 2 + 2, np - 2};
        for (int k = 0; k < 4; k++) {
            double loss0 = 0;
            /* the gradient at the unperturbed parameters (the steps below overwrite it) */
            T_CHECK(model_train_step(t, x, labels, n, 0, &loss0, NULL) == CNN_OK, "step failed");
            model_param *p = model_train_param(t, picks[k]);
            float *g = malloc(p->n * sizeof(float)), *p0 = malloc(p->n * sizeof(float));
            if (!g || !p0) {
                free(g), free(p0);
                continue;
            }
            double gn = 0.0;
            for (size_t i = 0; i < p->n; i++) gn += (double)p->grad[i] * p->grad[i];
            gn = sqrt(gn);
            memcpy(g, p->grad, p->n * sizeof(float));
            memcpy(p0, p->data, p->n * sizeof(float));
            T_CHECK(gn > 0, "%s: zero gradient", p->name);
            if (gn > 0) {
                const double e = 5e-5 * loss0 / gn;
                double lp = 0, lm = 0;
                for (size_t i = 0; i < p->n; i++) p->data[i] = (float)(p0[i] + e * g[i] / gn);
                model_train_step(t, x, labels, n, 0, &lp, NULL);
                for (size_t i = 0; i < p->n; i++) p->data[i] = (float)(p0[i] - e * g[i] / gn);
                model_train_step(t, x, labels, n, 0, &lm, NULL);
                const double fd = (lp - lm) / (2 * e);
                T_CHECK(fabs(fd - gn) <= 2e-2 * gn, "%s: |g| %.6g, finite differences %.6g", p->name, gn, fd);
            }
            memcpy(p->data, p0, p->n * sizeof(float));
            free(g), free(p0);
        }
    }
    model_train_free(t);
    free(x);
    test_end(name);
}

/* model_train_eval against the inference engine on the same file, then the saved file after one
 * hand-made SGD update against model_train_eval. */
static void test_eval_and_save(const arch_case *c, const char *path)
{
    char name[256];
    snprintf(name, sizeof name, "%s: eval logits = inference engine's; saved file loads and gives the same logits", c->arch);
    test_begin();
    const int n = 2, labels[2] = {7, 1};
    float *x = random_input(n, c->crop, 3);
    model_train_opts opts = {.max_batch = n, .n_threads = 1, .bn = MODEL_BN_TRAIN};
    model_train *t = NULL;
    model *m = NULL;
    model_ctx *ctx = NULL;
    char err[512], warn[256], saved[1200];
    snprintf(saved, sizeof saved, "%s/%s_saved.safetensors", tmp_dir, c->arch);
    T_CHECK(x && model_train_init(&t, c->arch, path, &opts, err, sizeof err) == CNN_OK, "init: %s", err);
    T_CHECK(model_load(&m, c->arch, path, err, sizeof err, warn, sizeof warn) == CNN_OK, "load: %s", err);
    if (t && m && model_ctx_init(&ctx, m) == CNN_OK) {
        const int K = model_train_num_classes(t);
        float *a = malloc((size_t)n * K * sizeof(float)), *b = malloc((size_t)K * sizeof(float));
        T_CHECK(K == model_num_classes(m), "classes %d vs %d", K, model_num_classes(m));
        if (a && b && K == model_num_classes(m)) {
            T_CHECK(model_train_eval(t, x, n, a) == CNN_OK, "eval failed");
            double worst = 0, big = 0;
            for (int i = 0; i < n; i++) {
                model_run(ctx, x + (size_t)i * 3 * c->crop * c->crop, b);
                for (int k = 0; k < K; k++) {
                    worst = fmax(worst, fabs(a[(size_t)i * K + k] - b[k]));
                    big = fmax(big, fabs(b[k]));
                }
            }
            T_CHECK(worst <= 1e-4 * big, "eval vs model_run: max difference %g (largest logit %g)", worst, big);
            /* one step in BN train mode (running stats move), an update moving each parameter by at
             * most 1e-3 (a sane network: the random weights' gradients are large), save, reload */
            T_CHECK(model_train_step(t, x, labels, n, 0, NULL, NULL) == CNN_OK, "step failed");
            step_scaled(t, 1e-3f);
            char crop[16];
            snprintf(crop, sizeof crop, "%d", c->crop);
            const char *meta[4] = {"architecture", c->arch, "crop", crop};
            T_CHECK(model_train_save(t, saved, meta, 2, err, sizeof err) == CNN_OK, "save: %s", err);
            model_ctx_free(ctx);
            model_free(m);
            ctx = NULL;
            m = NULL;
            T_CHECK(model_load(&m, c->arch, saved, err, sizeof err, warn, sizeof warn) == CNN_OK, "reload: %s", err);
            if (m && model_ctx_init(&ctx, m) == CNN_OK) {
                T_CHECK(model_train_eval(t, x, n, a) == CNN_OK, "eval failed");
                worst = big = 0;
                for (int i = 0; i < n; i++) {
                    model_run(ctx, x + (size_t)i * 3 * c->crop * c->crop, b);
                    for (int k = 0; k < K; k++) {
                        worst = fmax(worst, fabs(a[(size_t)i * K + k] - b[k]));
                        big = fmax(big, fabs(b[k]));
                    }
                }
                T_CHECK(worst <= 1e-4 * big, "saved file vs eval: max difference %g (largest logit %g)", worst, big);
            }
        }
        free(a);
        free(b);
    }
    model_ctx_free(ctx);
    model_free(m);
    model_train_free(t);
    unlink(saved);
    free(x);
    test_end(name);
}

/* The second step of a graph (after its parameters were updated and, in BN train, its running
 * statistics moved) against the first step of a fresh graph built from the file saved in between:
 * bit-identical loss, gradients and eval logits (running statistics included). Anything the training graph derived from
 * the parameters once (packed or transformed weights, folded BatchNorm, copies) and did not follow
 * would differ here, in every architecture. */
static void test_fresh_graph(const arch_case *c, const char *path, model_bn_mode bn)
{
    char name[256];
    snprintf(name, sizeof name, "%s: step 2 after an update = step of a fresh graph from the saved file (BN %s, dropout)",
             c->arch, bn == MODEL_BN_TRAIN ? "train" : "frozen");
    test_begin();
    const int n = 2, labels[2] = {5, 2};
    float *x = random_input(n, c->crop, 13);
    model_train_opts opts = {.max_batch = n, .n_threads = 2, .bn = bn, .dropout = 1, .seed = 9};
    model_train *a = NULL, *b = NULL;
    weights *w = NULL;
    step_out o[2] = {{0}};
    char err[512], mid[1200], crop[16];
    snprintf(mid, sizeof mid, "%s/%s_mid.safetensors", tmp_dir, c->arch);
    snprintf(crop, sizeof crop, "%d", c->crop);
    T_CHECK(weights_open(&w, path, err, sizeof err) == CNN_OK, "open: %s", err);
    const char *padding = w ? weights_meta(w, "padding") : NULL;
    const char *meta[4] = {"crop", crop, "padding", padding ? padding : "torch"};
    T_CHECK(x && model_train_init(&a, c->arch, path, &opts, err, sizeof err) == CNN_OK, "init: %s", err);
    if (a) {
        T_CHECK(model_train_step(a, x, labels, n, 0, NULL, NULL) == CNN_OK, "step 1 failed");
        step_scaled(a, 1e-2f);
        T_CHECK(model_train_save(a, mid, meta, 2, err, sizeof err) == CNN_OK, "save: %s", err);
        T_CHECK(model_train_init(&b, c->arch, mid, &opts, err, sizeof err) == CNN_OK, "init from the saved file: %s", err);
    }
    model_train *tt[2] = {a, b};
    for (int k = 0; k < 2 && b; k++) {
        model_train *t = tt[k];
        T_CHECK(model_train_step(t, x, labels, n, 1, &o[k].loss, &o[k].correct) == CNN_OK, "step failed");
        T_CHECK(step_outputs(t, x, n, &o[k]) == 0, "gradients or eval failed"); /* eval: running statistics */
    }
    if (o[0].grads && o[1].grads && o[0].logits && o[1].logits) {
        T_CHECK(isfinite(o[0].loss) && o[0].loss == o[1].loss, "loss %.17g, fresh graph %.17g", o[0].loss, o[1].loss);
        size_t first = o[0].n_grads;
        for (size_t i = 0; i < o[0].n_grads && first == o[0].n_grads; i++)
            if (memcmp(&o[0].grads[i], &o[1].grads[i], sizeof(float))) first = i;
        T_CHECK(o[0].n_grads == o[1].n_grads && first == o[0].n_grads,
                "gradients differ from the fresh graph's (first at value %zu: %.9g vs %.9g)", first,
                first < o[0].n_grads ? o[0].grads[first] : 0.0, first < o[0].n_grads ? o[1].grads[first] : 0.0);
        T_CHECK(!memcmp(o[0].logits, o[1].logits, (size_t)n * model_train_num_classes(a) * sizeof(float)),
                "eval logits differ from the fresh graph's");
    }
    for (int k = 0; k < 2; k++) {
        free(o[k].grads);
        free(o[k].logits);
    }
    unlink(mid);
    model_train_free(a);
    model_train_free(b);
    weights_free(w);
    free(x);
    test_end(name);
}

static void test_errors(const char *path)
{
    test_begin();
    char err[256];
    model_train *t = NULL;
    model_train_opts o = {.max_batch = 2, .n_threads = 1};
    T_CHECK(model_train_init(&t, "resnet50", path, &o, err, sizeof err) == CNN_ERR_ARG && !t, "unknown arch accepted");
    o.n_threads = 0;
    T_CHECK(model_train_init(&t, "mobilenet_v3_small", path, &o, err, sizeof err) == CNN_ERR_ARG, "0 threads accepted");
    o.n_threads = 1;
    o.max_batch = 0;
    T_CHECK(model_train_init(&t, "mobilenet_v3_small", path, &o, err, sizeof err) == CNN_ERR_ARG, "batch 0 accepted");
    o.max_batch = 2;
    T_CHECK(model_train_init(&t, "mobilenet_v3_small", "/nonexistent.safetensors", &o, err, sizeof err) != CNN_OK,
            "missing file accepted");
    o.n_classes = 3;
    T_CHECK(model_train_init(&t, "mobilenet_v3_small", path, &o, err, sizeof err) == CNN_OK, "init: %s", err);
    if (t) {
        float *x = random_input(3, 64, 1);
        int good[3] = {0, 1, 2}, bad[2] = {0, 3};
        T_CHECK(x && model_train_step(t, x, good, 3, 0, NULL, NULL) == CNN_ERR_ARG, "3 images with max_batch 2 accepted");
        T_CHECK(x && model_train_step(t, x, bad, 2, 0, NULL, NULL) == CNN_ERR_ARG, "label 3 of 3 classes accepted");
        T_CHECK(x && model_train_step(t, x, good, 2, 0, NULL, NULL) == CNN_OK, "a good step refused");
        T_CHECK(model_train_param(t, -1) == NULL && model_train_param(t, model_train_n_params(t)) == NULL,
                "parameter index out of range answered");
        const model_param *head = model_train_param(t, model_train_n_params(t) - 2);
        T_CHECK(head->is_head && head->shape[0] == 3 && !strcmp(head->name, "classifier.3.weight"), "head %s [%lld]",
                head->name, (long long)head->shape[0]);
        free(x);
    }
    model_train_free(t);
    test_end("model_train: unknown arch, bad options, missing file, batch and label out of range refused");
}

int main(void)
{
    const char *c = getenv("CNN_CACHE");
    snprintf(cache_dir, sizeof cache_dir, "%s", c ? c : "cache");
    const char *sh = getenv("CNN_SHARED");
    snprintf(shared_dir, sizeof shared_dir, "%s", sh ? sh : "../shared");
    snprintf(tmp_dir, sizeof tmp_dir, "%s", "/tmp/test_model_train_XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        printf("not ok - model_train: cannot create a temporary folder\n");
        return 1;
    }
    for (int i = 0; i < N_CASES; i++) {
        char src[2048], path[1200], real[1200];
        snprintf(src, sizeof src, "%s/ref/%s.safetensors", cache_dir, cases[i].arch);
        if (write_small(&cases[i], src, "_small", path, sizeof path)) {
            char name[128];
            snprintf(name, sizeof name, "%s: model_train", cases[i].arch);
            test_skip(name, "no reference weights in $CNN_CACHE/ref (make ref needs PyTorch)");
            continue;
        }
        test_threads(&cases[i], path);
        test_eval_and_save(&cases[i], path);
        test_fresh_graph(&cases[i], path, MODEL_BN_FROZEN);
        test_fresh_graph(&cases[i], path, MODEL_BN_TRAIN);
        if (!strcmp(cases[i].arch, "mobilenet_v3_small")) test_errors(path);
        unlink(path);
        /* finite differences on the real weights of ../shared (the random ones make a network too
         * rough for them: activations in the hundreds, kinks everywhere) */
        snprintf(src, sizeof src, "%s/weights/%s.safetensors", shared_dir, cases[i].arch);
        if (access(src, R_OK)) {
            if (strcmp(cases[i].arch, "mobilenet_v3_large") && strcmp(cases[i].arch, "alexnet") &&
                strcmp(cases[i].arch, "inception_v3"))
                test_skip(cases[i].arch, "finite differences: no real weights in $CNN_SHARED/weights (../shared)");
            continue;
        }
        if (write_small(&cases[i], src, "_real", real, sizeof real)) {
            test_skip(cases[i].arch, "cannot rewrite the real weights");
            continue;
        }
        test_finite_diff(&cases[i], real);
        unlink(real);
    }
    rmdir(tmp_dir);
    return test_finish();
}
