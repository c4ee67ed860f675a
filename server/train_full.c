/* `cnnserve train --mode full`: every layer fine-tuned (models/model_train.h) with the optimizers and
 * schedules of core/optim.h on augmented images (server/augment.h: RandomResizedCrop + flip, seeded
 * per (seed, epoch, image)). A decode thread prepares the next batch while the current step runs.
 * After every epoch: validation through the server's own preprocessing (pipeline_preprocess), one
 * --log-json record, and a checkpoint (model file + optimizer/progress state, each written
 * atomically) that --resume continues from bit-identically. SIGINT/SIGTERM stop after the current
 * step with a checkpoint. The output is head mode's format with mode "full" in the recipe. */
#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/kernels_train.h"
#include "../core/optim.h"
#include "../core/rng.h"
#include "../core/weights.h"
#include "../models/model_train.h"
#include "augment.h"
#include "fileio.h"
#include "pipeline.h"
#include "timing.h"
#include "train_internal.h"
#include "version.h"

#define CKPT_MAGIC "CNNTCKP1"
#define CKPT_MODEL "model.safetensors"
#define CKPT_STATE "state.bin"
#define STREAM_SHUFFLE UINT64_C(0x66756c6c73687566) /* "fullshuf" */

/* ---- the decode thread: fills one batch buffer while the caller trains on the other ---- */

typedef struct {
    const dataset *d;
    const model *m;          /* the base's inference model: preprocessing of validation images */
    console *con;
    int size, max_batch;
    uint64_t seed;
    int64_t max_pixels;
    float mean[3], std[3];
    pthread_t tid;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int started, quit, busy;   /* busy: a request is being filled */
    /* the request */
    const int *items;
    int n, augment, slot;
    uint64_t epoch;
    /* two slots */
    float *input[2];
    int *labels[2], n_ok[2];
} prefetch;

static void prefetch_fill(prefetch *p, const int *items, int n, int augment, uint64_t epoch, int slot)
{
    const size_t per = (size_t)3 * p->size * p->size;
    char err[512], msg[1400];
    int n_ok = 0;
    for (int i = 0; i < n; i++) {
        const dataset_item *it = &p->d->items[items[i]];
        uint8_t *data = NULL;
        size_t n_bytes = 0;
        float *dst = p->input[slot] + (size_t)n_ok * per;
        cnn_status st = file_read_all(it->path, &data, &n_bytes, err, sizeof err);
        if (st == CNN_OK)
            st = augment ? augment_image(data, n_bytes, p->max_pixels, p->size, p->mean, p->std, p->seed, epoch,
                                         (uint64_t)items[i], dst, err, sizeof err)
                         : pipeline_preprocess(p->m, data, n_bytes, p->max_pixels, dst, err, sizeof err);
        free(data);
        if (st == CNN_OK) p->labels[slot][n_ok++] = it->label;
        else {
            snprintf(msg, sizeof msg, "skipping %s in this batch: %s", it->path, err);
            console_warn(p->con, msg);
        }
    }
    p->n_ok[slot] = n_ok;
}

static void *prefetch_main(void *arg)
{
    prefetch *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->busy && !p->quit) pthread_cond_wait(&p->cond, &p->lock);
        if (p->quit) break;
        pthread_mutex_unlock(&p->lock);
        prefetch_fill(p, p->items, p->n, p->augment, p->epoch, p->slot);
        pthread_mutex_lock(&p->lock);
        p->busy = 0;
        pthread_cond_broadcast(&p->cond);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Waits for the request in progress (if any) to finish. */
static void prefetch_wait(prefetch *p)
{
    pthread_mutex_lock(&p->lock);
    while (p->busy) pthread_cond_wait(&p->cond, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

/* Starts filling slot with items[0..n-1] (augmented training images, or validation images). */
static void prefetch_submit(prefetch *p, const int *items, int n, int augment, uint64_t epoch, int slot)
{
    prefetch_wait(p);
    pthread_mutex_lock(&p->lock);
    p->items = items, p->n = n, p->augment = augment, p->epoch = epoch, p->slot = slot;
    p->busy = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static int prefetch_init(prefetch *p)
{
    const size_t per = (size_t)3 * p->size * p->size;
    for (int s = 0; s < 2; s++) {
        p->input[s] = malloc((size_t)p->max_batch * per * sizeof(float));
        p->labels[s] = malloc((size_t)p->max_batch * sizeof(int));
        if (!p->input[s] || !p->labels[s]) return -1;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    if (pthread_create(&p->tid, NULL, prefetch_main, p)) {
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
        return -1;
    }
    p->started = 1;
    return 0;
}

static void prefetch_free(prefetch *p)
{
    if (p->started) {
        pthread_mutex_lock(&p->lock);
        p->quit = 1;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        pthread_join(p->tid, NULL);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
    }
    for (int s = 0; s < 2; s++) {
        free(p->input[s]);
        free(p->labels[s]);
    }
}

/* ---- the run's state ---- */

typedef struct {
    const train_config *c;
    const model_arch *arch;
    const char *base_path;
    console con;
    model *m;
    weights *base;
    dataset d;
    model_train *t;
    optim *opt;
    optim_schedule sched;
    prefetch pf;
    uint8_t *ok, *is_val;
    int *train_idx, *val_idx, *order;
    int n_train, n_val, n_skipped, steps_per_epoch;
    json_t *log, *recipe, *epochs;
    char *recipe_text;
    /* progress: the next step is step `step_in_epoch` of epoch `epoch` (0-based), `global_step` overall */
    int epoch, step_in_epoch;
    int64_t global_step;
    double epoch_loss_sum;     /* sum of loss * n over this epoch's steps so far */
    int64_t epoch_correct, epoch_seen;
    double train_seconds;      /* training time of earlier runs of this training (resume) */
    double decode_wait_seconds; /* this run's steps waiting for their batch (the decode thread behind) */
    char ckpt_model[1200], ckpt_state[1200];
} full_run;

/* The signal (SIGINT/SIGTERM) that asked to stop, or 0. Set by the handler: the one mutable global,
 * as a signal handler can reach nothing else (any thread, e.g. OpenBLAS's, may receive the signal). */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) { stop_signal = sig; }

static int stop_requested(void) { return stop_signal; }

/* The recipe: every hyper-parameter that determines the result. */
static json_t *build_recipe(const full_run *r)
{
    const train_config *c = r->c;
    const int adam = strcmp(c->optimizer, "sgd") != 0;
    json_t *j = json_pack("{s:s,s:s,s:i,s:i,s:f,s:f,s:f,s:b,s:s,s:i,s:s,s:s,s:I,s:f,s:s,s:s,s:s,s:i,s:i,s:i}", "mode",
                          "full", "optimizer", c->optimizer, "epochs", c->epochs, "batch", c->batch, "lr", c->lr,
                          "lr_backbone", c->lr_backbone, "weight_decay", c->weight_decay, "no_bn_bias_decay",
                          c->no_bn_bias_decay, "schedule", c->schedule, "warmup_epochs", c->warmup_epochs, "bn", c->bn,
                          "dropout", c->dropout, "seed", (json_int_t)c->seed, "val_split", c->val_split, "split",
                          "stratified", "augment",
                          "RandomResizedCrop(scale=(0.08,1),ratio=(3/4,4/3))+RandomHorizontalFlip(0.5)", "loss",
                          "softmax cross-entropy", "input_size", model_input_size(r->m), "n_train", r->n_train,
                          "n_val", r->n_val);
    if (!j) return NULL;
    if (adam) {
        json_object_set_new(j, "beta1", json_real(0.9));
        json_object_set_new(j, "beta2", json_real(0.999));
        json_object_set_new(j, "eps", json_real(1e-8));
    } else {
        json_object_set_new(j, "momentum", json_real(c->momentum));
        json_object_set_new(j, "nesterov", json_boolean(c->nesterov));
    }
    if (!strcmp(c->schedule, "step")) {
        json_object_set_new(j, "step_size", json_integer(c->step_size));
        json_object_set_new(j, "gamma", json_real(c->gamma));
    }
    json_object_set_new(j, "clip_grad", c->clip_grad > 0 ? json_real(c->clip_grad) : json_null());
    return j;
}

/* ---- checkpoints ---- */

/* A checkpoint's model file, with head mode's metadata plus checkpoint_step. */
static cnn_status save_checkpoint_model(full_run *r, const char *path, double val_accuracy, int64_t checkpoint_step,
                                        char *err, size_t err_bytes)
{
    train_meta tm;
    cnn_status s = train_meta_init(&tm, r->m, r->base, r->base_path, &r->d, r->recipe, val_accuracy, err, err_bytes);
    if (s != CNN_OK) return s;
    const char *kv[2 * 18];
    int n = 0;
    for (size_t i = 0; i < tm.n; i++) kv[2 * n] = tm.kv[i].key, kv[2 * n + 1] = tm.kv[i].value, n++;
    char step_text[32];
    snprintf(step_text, sizeof step_text, "%lld", (long long)checkpoint_step);
    kv[2 * n] = "checkpoint_step", kv[2 * n + 1] = step_text, n++;
    s = model_train_save(r->t, path, kv, n, err, err_bytes);
    train_meta_free(&tm);
    return s;
}

/* The progress record of a checkpoint (JSON), the optimizer state after it. */
static json_t *progress_json(const full_run *r)
{
    return json_pack("{s:s,s:i,s:i,s:I,s:f,s:I,s:I,s:f,s:O,s:s}", "version", CNNSERVE_VERSION, "epoch", r->epoch,
                     "step_in_epoch", r->step_in_epoch, "global_step", (json_int_t)r->global_step, "epoch_loss_sum",
                     r->epoch_loss_sum, "epoch_correct", (json_int_t)r->epoch_correct, "epoch_seen",
                     (json_int_t)r->epoch_seen, "train_seconds", r->train_seconds, "epochs", r->epochs, "recipe",
                     r->recipe_text);
}

static cnn_status write_checkpoint(full_run *r, double val_accuracy, char *err, size_t err_bytes)
{
    if (mkdir(r->c->checkpoint_dir, 0777) && errno != EEXIST)
        return cnn_err(err, err_bytes, CNN_ERR_IO, "cannot create the checkpoint folder %s: %s", r->c->checkpoint_dir,
                       strerror(errno));
    cnn_status s = save_checkpoint_model(r, r->ckpt_model, val_accuracy, r->global_step, err, err_bytes);
    if (s != CNN_OK) return s;
    json_t *p = progress_json(r);
    char *text = p ? json_dumps(p, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(p);
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", r->ckpt_state, (long)getpid());
    FILE *f = text ? fopen(tmp, "wb") : NULL;
    if (!f) {
        free(text);
        return cnn_err(err, err_bytes, text ? CNN_ERR_IO : CNN_ERR_NOMEM, "cannot write %s: %s", tmp,
                       text ? strerror(errno) : "out of memory");
    }
    const uint64_t len = strlen(text);
    int bad = fwrite(CKPT_MAGIC, 1, 8, f) != 8 || fwrite(&len, sizeof len, 1, f) != 1 ||
              fwrite(text, 1, len, f) != len;
    free(text);
    if (!bad && optim_state_write(r->opt, f, err, err_bytes) != CNN_OK) bad = 1;
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, r->ckpt_state)) {
        unlink(tmp);
        return cnn_err(err, err_bytes, CNN_ERR_IO, "cannot write the checkpoint %s: %s", r->ckpt_state,
                       strerror(errno));
    }
    return CNN_OK;
}

/* Reads the progress record of state.bin (the optimizer state is read later, from *f). */
static cnn_status read_progress(full_run *r, FILE **f, json_t **progress, char *err, size_t err_bytes)
{
    *f = fopen(r->ckpt_state, "rb");
    if (!*f)
        return cnn_err(err, err_bytes, CNN_ERR_IO, "--resume: no checkpoint %s: %s", r->ckpt_state, strerror(errno));
    char magic[8];
    uint64_t len = 0;
    char *text = NULL;
    if (fread(magic, 1, 8, *f) != 8 || memcmp(magic, CKPT_MAGIC, 8) || fread(&len, sizeof len, 1, *f) != 1 ||
        len > (64u << 20) || !(text = malloc(len + 1)) || fread(text, 1, len, *f) != len) {
        free(text);
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "--resume: %s is not a cnnserve training checkpoint",
                       r->ckpt_state);
    }
    text[len] = '\0';
    json_error_t je;
    *progress = json_loads(text, 0, &je);
    free(text);
    if (!*progress)
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "--resume: %s: %s", r->ckpt_state, je.text);
    return CNN_OK;
}

/* Writes --out from the last checkpoint's tensors in the base file's tensor order (then any others in
 * the checkpoint's order) with the final metadata: the same bytes whether the run was resumed or
 * not (model_train_save writes in the order of the file the model was loaded from). */
static cnn_status write_output(full_run *r, double val_accuracy, char *err, size_t err_bytes)
{
    weights *ck = NULL;
    weights_out_tensor *t = NULL;
    uint8_t *used = NULL;
    train_meta tm = {0};
    cnn_status s = weights_open(&ck, r->ckpt_model, err, err_bytes);
    if (s != CNN_OK) return s;
    const size_t n_ck = weights_count(ck), n_base = weights_count(r->base);
    t = malloc((n_ck ? n_ck : 1) * sizeof *t);
    used = calloc(n_ck ? n_ck : 1, 1);
    if (!t || !used) {
        s = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
        goto done;
    }
    size_t n = 0;
    for (size_t pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < (pass ? n_ck : n_base); i++) {
            const weights_tensor *ct = pass ? weights_at(ck, i) : weights_find(ck, weights_at(r->base, i)->name);
            const size_t at = ct ? (size_t)(ct - weights_at(ck, 0)) : 0;
            if (!ct || used[at]) continue;
            used[at] = 1;
            t[n++] = (weights_out_tensor){ct->name, ct->n_dims, ct->shape, ct->data};
        }
    if ((s = train_meta_init(&tm, r->m, r->base, r->base_path, &r->d, r->recipe, val_accuracy, err, err_bytes)) ==
        CNN_OK)
        s = weights_write(r->c->out, t, n, tm.kv, tm.n, err, err_bytes);
done:
    train_meta_free(&tm);
    free(t);
    free(used);
    weights_free(ck);
    return s;
}

/* ---- steps, validation ---- */

static void shuffle_epoch(full_run *r, int epoch)
{
    memcpy(r->order, r->train_idx, (size_t)r->n_train * sizeof(int));
    rng g;
    rng_init(&g, (uint64_t)r->c->seed ^ STREAM_SHUFFLE);
    rng_init(&g, rng_next_u64(&g) ^ (uint64_t)epoch);
    rng_shuffle(&g, r->order, r->n_train);
}

static int batch_count(int n, int batch) { return (n + batch - 1) / batch; }

/* Mean cross-entropy and top-1 of the validation split (eval mode), NaN without one. */
static cnn_status validate(full_run *r, double *loss, double *accuracy, char *err, size_t err_bytes)
{
    *loss = *accuracy = NAN;
    if (!r->n_val) return CNN_OK;
    const int b = r->c->batch, k = model_train_num_classes(r->t), nb = batch_count(r->n_val, b);
    float *logits = malloc((size_t)b * k * sizeof(float));
    if (!logits) return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
    double total = 0;
    int64_t correct = 0, seen = 0;
    cnn_status s = CNN_OK;
    prefetch_submit(&r->pf, r->val_idx, r->n_val < b ? r->n_val : b, 0, 0, 0);
    for (int i = 0; s == CNN_OK && i < nb; i++) {
        prefetch_wait(&r->pf);
        const int slot = i % 2, n = r->pf.n_ok[slot];
        if (i + 1 < nb) {
            const int at = (i + 1) * b, m = r->n_val - at < b ? r->n_val - at : b;
            prefetch_submit(&r->pf, r->val_idx + at, m, 0, 0, 1 - slot);
        }
        if (!n) continue;
        s = model_train_eval(r->t, r->pf.input[slot], n, logits);
        if (s != CNN_OK) {
            cnn_err(err, err_bytes, s, "validation forward failed (%s)", cnn_status_str(s));
            break;
        }
        int c;
        total += train_softmax_xent(n, k, logits, r->pf.labels[slot], NULL, &c) * n;
        correct += c;
        seen += n;
    }
    prefetch_wait(&r->pf);
    free(logits);
    if (s == CNN_OK && seen) *loss = total / seen, *accuracy = (double)correct / seen;
    return s;
}

/* One epoch from r->step_in_epoch on. Returns 0 when it completed, the signal number when a stop
 * was asked (after the step in progress), -1 on an error (printed). */
static int run_epoch(full_run *r, double *seconds)
{
    const train_config *c = r->c;
    char err[1024], line[256];
    const int b = c->batch, nb = r->steps_per_epoch;
    const uint64_t t0 = timing_now_ns();
    int64_t images = 0;
    shuffle_epoch(r, r->epoch);
    int k = r->step_in_epoch;
    prefetch_submit(&r->pf, r->order + (size_t)k * b, r->n_train - k * b < b ? r->n_train - k * b : b, 1,
                    (uint64_t)r->epoch, k % 2);
    for (; k < nb; k++) {
        const uint64_t tw = timing_now_ns();
        prefetch_wait(&r->pf);
        r->decode_wait_seconds += timing_ms(tw, timing_now_ns()) / 1e3;
        const int slot = k % 2, n = r->pf.n_ok[slot];
        if (k + 1 < nb) {
            const int at = (k + 1) * b;
            prefetch_submit(&r->pf, r->order + at, r->n_train - at < b ? r->n_train - at : b, 1, (uint64_t)r->epoch,
                            1 - slot);
        }
        if (n) {
            double loss = 0;
            int correct = 0;
            cnn_status s = model_train_step(r->t, r->pf.input[slot], r->pf.labels[slot], n, (uint64_t)r->global_step,
                                            &loss, &correct);
            if (s != CNN_OK) {
                prefetch_wait(&r->pf);
                fprintf(stderr, "cnnserve train: training step failed (%s)\n", cnn_status_str(s));
                return -1;
            }
            if (c->clip_grad > 0) optim_clip_grad_norm(r->opt, c->clip_grad);
            optim_step(r->opt, optim_schedule_factor(&r->sched, r->global_step));
            r->epoch_loss_sum += loss * n;
            r->epoch_correct += correct;
            r->epoch_seen += n;
            images += n;
        }
        r->global_step++;
        r->step_in_epoch = k + 1;
        const double s = timing_ms(t0, timing_now_ns()) / 1e3;
        snprintf(line, sizeof line, "epoch %d/%d step %d/%d: loss %.4f, %.1f images/s", r->epoch + 1, c->epochs, k + 1,
                 nb, r->epoch_seen ? r->epoch_loss_sum / r->epoch_seen : 0.0, s > 0 ? images / s : 0.0);
        console_progress(&r->con, line);
        const int sig = stop_requested();
        if (sig) {
            prefetch_wait(&r->pf);
            *seconds = timing_ms(t0, timing_now_ns()) / 1e3;
            return sig;
        }
    }
    (void)err;
    *seconds = timing_ms(t0, timing_now_ns()) / 1e3;
    return 0;
}

/* ---- set-up ---- */

static int setup_optimizer(full_run *r, char *err, size_t err_bytes)
{
    const train_config *c = r->c;
    const int n = model_train_n_params(r->t);
    optim_param *ps = malloc((n ? (size_t)n : 1) * sizeof *ps);
    if (!ps) return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        model_param *p = model_train_param(r->t, i);
        ps[i] = (optim_param){p->data, p->grad, p->n, p->is_head ? OPTIM_GROUP_HEAD : OPTIM_GROUP_BACKBONE,
                              c->no_bn_bias_decay && (p->is_bn || p->n_dims == 1)};
    }
    const optim_opts oo = {.kind = !strcmp(c->optimizer, "adam")    ? OPTIM_ADAM
                                   : !strcmp(c->optimizer, "adamw") ? OPTIM_ADAMW
                                                                    : OPTIM_SGD,
                           .lr = {c->lr, c->lr_backbone},
                           .weight_decay = c->weight_decay,
                           .momentum = c->momentum,
                           .nesterov = c->nesterov,
                           .beta1 = 0.9,
                           .beta2 = 0.999,
                           .eps = 1e-8};
    cnn_status s = optim_init(&r->opt, &oo, ps, n, err, err_bytes);
    free(ps);
    const int64_t spe = r->steps_per_epoch;
    r->sched = (optim_schedule){.kind = !strcmp(c->schedule, "cosine") ? OPTIM_SCHED_COSINE
                                        : !strcmp(c->schedule, "step") ? OPTIM_SCHED_STEP
                                                                       : OPTIM_SCHED_CONST,
                                .total_steps = spe * c->epochs,
                                .warmup_steps = spe * c->warmup_epochs,
                                .step_size = spe * (c->step_size > 0 ? c->step_size : 1),
                                .gamma = c->gamma};
    return s;
}

/* Decodes every listed image once (DCT-scaled: fast) to leave out unreadable files before training,
 * with their warnings, as head mode does. */
static void scan_images(full_run *r)
{
    char err[512], msg[1400], line[128];
    const image_decode_opts opts = {.max_pixels = r->c->max_pixels, .min_short_side = 1};
    for (size_t i = 0; i < r->d.n_items; i++) {
        uint8_t *data = NULL;
        size_t n_bytes = 0;
        image img;
        cnn_status st = file_read_all(r->d.items[i].path, &data, &n_bytes, err, sizeof err);
        if (st == CNN_OK) st = image_decode(data, n_bytes, &opts, &img, err, sizeof err);
        free(data);
        if (st == CNN_OK) {
            image_free(&img);
            r->ok[i] = 1;
        } else {
            snprintf(msg, sizeof msg, "skipping %s: %s", r->d.items[i].path, err);
            console_warn(&r->con, msg);
        }
        if (i % 64 == 0) {
            snprintf(line, sizeof line, "checking images: %zu/%zu", i + 1, r->d.n_items);
            console_progress(&r->con, line);
        }
    }
    console_end_progress(&r->con);
}

/* Restores the run from the checkpoint (--resume); prints the error and returns 1, or 0. */
static int resume(full_run *r, model_train_opts *mo)
{
    char err[4096];
    FILE *f = NULL;
    json_t *p = NULL;
    int rc = 1;
    if (read_progress(r, &f, &p, err, sizeof err) != CNN_OK) goto fail;
    const char *saved_recipe = json_string_value(json_object_get(p, "recipe"));
    if (!saved_recipe || strcmp(saved_recipe, r->recipe_text)) {
        snprintf(err, sizeof err, "--resume: the checkpoint in %s was made with another recipe or data; saved: %s; "
                                  "now: %s",
                 r->c->checkpoint_dir, saved_recipe ? saved_recipe : "(none)", r->recipe_text);
        goto fail;
    }
    weights *w = NULL;
    if (weights_open(&w, r->ckpt_model, err, sizeof err) != CNN_OK) goto fail;
    const char *step_text = weights_meta(w, "checkpoint_step");
    const json_int_t step = json_integer_value(json_object_get(p, "global_step"));
    const int consistent = step_text && strtoll(step_text, NULL, 10) == step;
    weights_free(w);
    if (!consistent) {
        snprintf(err, sizeof err, "--resume: %s and %s are from different steps (an interrupted checkpoint write?)",
                 r->ckpt_model, r->ckpt_state);
        goto fail;
    }
    mo->n_classes = 0; /* the checkpoint's own head */
    if (model_train_init(&r->t, r->arch->name, r->ckpt_model, mo, err, sizeof err) != CNN_OK) goto fail;
    if (model_train_num_classes(r->t) != r->d.n_classes) {
        snprintf(err, sizeof err, "--resume: the checkpoint has %d classes, the data %d", model_train_num_classes(r->t),
                 r->d.n_classes);
        goto fail;
    }
    if (setup_optimizer(r, err, sizeof err) != CNN_OK || optim_state_read(r->opt, f, err, sizeof err) != CNN_OK)
        goto fail;
    r->epoch = (int)json_integer_value(json_object_get(p, "epoch"));
    r->step_in_epoch = (int)json_integer_value(json_object_get(p, "step_in_epoch"));
    r->global_step = step;
    r->epoch_loss_sum = json_number_value(json_object_get(p, "epoch_loss_sum"));
    r->epoch_correct = json_integer_value(json_object_get(p, "epoch_correct"));
    r->epoch_seen = json_integer_value(json_object_get(p, "epoch_seen"));
    r->train_seconds = json_number_value(json_object_get(p, "train_seconds"));
    json_t *e = json_object_get(p, "epochs");
    if (!json_is_array(e) || r->epoch < 0 || r->epoch > r->c->epochs || r->step_in_epoch < 0 ||
        r->step_in_epoch > r->steps_per_epoch || optim_steps(r->opt) != step) {
        snprintf(err, sizeof err, "--resume: %s: inconsistent progress record", r->ckpt_state);
        goto fail;
    }
    json_array_extend(r->epochs, e);
    if (r->epoch >= r->c->epochs)
        fprintf(stderr, "cnnserve train: the checkpoint in %s has all %d epochs; writing the output\n",
                r->c->checkpoint_dir, r->c->epochs);
    else
        fprintf(stderr, "cnnserve train: resuming from %s at epoch %d, step %d of %d\n", r->c->checkpoint_dir,
                r->epoch + 1, r->step_in_epoch, r->steps_per_epoch);
    rc = 0;
fail:
    if (rc) fprintf(stderr, "cnnserve train: %s\n", err);
    if (f) fclose(f);
    json_decref(p);
    return rc;
}

static int train_full_run(full_run *r)
{
    const train_config *c = r->c;
    char err[1024], warn[1024];
    const uint64_t t_start = timing_now_ns();
    if (model_load(&r->m, r->arch->name, r->base_path, err, sizeof err, warn, sizeof warn) != CNN_OK ||
        weights_open(&r->base, r->base_path, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "cnnserve train: cannot load the base model: %s\n", err);
        return 1;
    }
    if (warn[0]) console_warn(&r->con, warn);
    if (train_load_dataset(c, &r->con, &r->d)) return 1;
    const int n_items = (int)r->d.n_items;
    r->ok = calloc((size_t)n_items, 1);
    r->is_val = malloc((size_t)n_items);
    r->train_idx = malloc((size_t)n_items * sizeof(int));
    r->val_idx = malloc((size_t)n_items * sizeof(int));
    r->order = malloc((size_t)n_items * sizeof(int));
    r->epochs = json_array();
    if (!r->ok || !r->is_val || !r->train_idx || !r->val_idx || !r->order || !r->epochs ||
        dataset_split(&r->d, c->val_split, (uint64_t)c->seed, r->is_val) != CNN_OK) {
        fprintf(stderr, "cnnserve train: out of memory for %d images\n", n_items);
        return 1;
    }
    fprintf(stderr, "cnnserve train: %s full fine-tuning, %d classes, %d images in %s; %d threads\n", r->arch->name,
            r->d.n_classes, n_items, c->data, c->n_threads);
    scan_images(r);
    if (stop_requested()) {
        fprintf(stderr, "cnnserve train: interrupted before training; nothing written\n");
        return 1;
    }
    if (!(r->log = train_log_begin(c, r->arch, r->base_path, &r->d, r->ok, r->is_val, r->train_idx, &r->n_train,
                                   r->val_idx, &r->n_val, &r->n_skipped)))
        return 1;
    r->steps_per_epoch = batch_count(r->n_train, c->batch);
    if (!(r->recipe = build_recipe(r)) ||
        !(r->recipe_text = json_dumps(r->recipe, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17)))) {
        fprintf(stderr, "cnnserve train: out of memory\n");
        return 1;
    }
    /* Where the results go must be writable before hours of training, not after. */
    char out_dir[1024];
    snprintf(out_dir, sizeof out_dir, "%s", c->out);
    if (access(dirname(out_dir), W_OK)) {
        fprintf(stderr, "cnnserve train: cannot write into the folder of --out %s: %s\n", c->out, strerror(errno));
        return 1;
    }
    if (!c->resume && mkdir(c->checkpoint_dir, 0777) && errno != EEXIST) {
        fprintf(stderr, "cnnserve train: cannot create the checkpoint folder %s: %s\n", c->checkpoint_dir,
                strerror(errno));
        return 1;
    }
    snprintf(r->ckpt_model, sizeof r->ckpt_model, "%s/" CKPT_MODEL, c->checkpoint_dir);
    snprintf(r->ckpt_state, sizeof r->ckpt_state, "%s/" CKPT_STATE, c->checkpoint_dir);
    model_train_opts mo = {.max_batch = c->batch, .n_threads = c->n_threads,
                           .bn = !strcmp(c->bn, "train") ? MODEL_BN_TRAIN : MODEL_BN_FROZEN,
                           .dropout = !strcmp(c->dropout, "on"), .seed = (uint64_t)c->seed,
                           .n_classes = r->d.n_classes};
    if (c->resume) {
        if (resume(r, &mo)) return 1;
    } else {
        if (model_train_init(&r->t, r->arch->name, r->base_path, &mo, err, sizeof err) != CNN_OK ||
            setup_optimizer(r, err, sizeof err) != CNN_OK) {
            fprintf(stderr, "cnnserve train: %s\n", err);
            return 1;
        }
    }
    if (model_train_input_size(r->t) != model_input_size(r->m)) {
        fprintf(stderr, "cnnserve train: training input %d differs from the served input %d\n",
                model_train_input_size(r->t), model_input_size(r->m));
        return 1;
    }
    r->pf = (prefetch){.d = &r->d, .m = r->m, .con = &r->con, .size = model_input_size(r->m), .max_batch = c->batch,
                       .seed = (uint64_t)c->seed, .max_pixels = c->max_pixels};
    memcpy(r->pf.mean, model_mean(r->m), sizeof r->pf.mean);
    memcpy(r->pf.std, model_std(r->m), sizeof r->pf.std);
    if (prefetch_init(&r->pf)) {
        fprintf(stderr, "cnnserve train: cannot start the decode thread (out of memory)\n");
        return 1;
    }
    fprintf(stderr, "cnnserve train: training on %d images (%d steps per epoch), validating on %d, %d skipped; "
                    "%.0f MiB for the model; checkpoints in %s\n",
            r->n_train, r->steps_per_epoch, r->n_val, r->n_skipped, model_train_bytes(r->t) / 1048576.0,
            c->checkpoint_dir);
    double val_loss = NAN, val_acc = NAN;
    while (r->epoch < c->epochs) {
        double seconds = 0;
        const int sig = run_epoch(r, &seconds);
        r->train_seconds += seconds;
        if (sig < 0) return 1;
        if (sig) {
            console_end_progress(&r->con);
            if (write_checkpoint(r, NAN, err, sizeof err) != CNN_OK) {
                fprintf(stderr, "cnnserve train: stopped by %s; the checkpoint could not be written: %s\n",
                        strsignal(sig), err);
                return 1;
            }
            fprintf(stderr, "cnnserve train: stopped by %s in epoch %d after step %d/%d; checkpoint in %s; "
                            "continue with the same command and --resume\n",
                    strsignal(sig), r->epoch + 1, r->step_in_epoch, r->steps_per_epoch, c->checkpoint_dir);
            return 128 + sig;
        }
        const uint64_t tv = timing_now_ns();
        if (validate(r, &val_loss, &val_acc, err, sizeof err) != CNN_OK) {
            fprintf(stderr, "cnnserve train: %s\n", err);
            return 1;
        }
        seconds += timing_ms(tv, timing_now_ns()) / 1e3;
        const double tl = r->epoch_seen ? r->epoch_loss_sum / r->epoch_seen : NAN,
                     ta = r->epoch_seen ? (double)r->epoch_correct / r->epoch_seen : NAN;
        json_array_append_new(r->epochs, json_pack("{s:i,s:o,s:o,s:o,s:o,s:o}", "epoch", r->epoch + 1, "train_loss",
                                                   train_json_num(tl), "train_accuracy", train_json_num(ta),
                                                   "val_loss", train_json_num(val_loss), "val_accuracy",
                                                   train_json_num(val_acc), "seconds", train_json_num(seconds)));
        char line[256];
        int n = snprintf(line, sizeof line, "epoch %d/%d: train loss %.4f acc %.2f%%", r->epoch + 1, c->epochs, tl,
                         100 * ta);
        if (isfinite(val_loss) && n > 0 && (size_t)n < sizeof line)
            snprintf(line + n, sizeof line - (size_t)n, ", val loss %.4f acc %.2f%%", val_loss, 100 * val_acc);
        console_end_progress(&r->con);
        fprintf(stderr, "%s\n", line);
        r->epoch++;
        r->step_in_epoch = 0;
        r->epoch_loss_sum = 0;
        r->epoch_correct = r->epoch_seen = 0;
        if (write_checkpoint(r, val_acc, err, sizeof err) != CNN_OK) {
            fprintf(stderr, "cnnserve train: %s\n", err);
            return 1;
        }
        const int sig2 = stop_requested();
        if (sig2 && r->epoch < c->epochs) {
            fprintf(stderr, "cnnserve train: stopped by %s after epoch %d; checkpoint in %s; continue with the same "
                            "command and --resume\n",
                    strsignal(sig2), r->epoch, c->checkpoint_dir);
            return 128 + sig2;
        }
    }
    /* The last epoch's validation figures (a run resumed after its last epoch re-validates). */
    json_t *last = json_array_get(r->epochs, json_array_size(r->epochs) - 1);
    if (last) {
        val_loss = json_is_number(json_object_get(last, "val_loss")) ? json_number_value(json_object_get(last, "val_loss"))
                                                                      : NAN;
        val_acc = json_is_number(json_object_get(last, "val_accuracy"))
                      ? json_number_value(json_object_get(last, "val_accuracy"))
                      : NAN;
    }
    if (write_output(r, val_acc, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "cnnserve train: %s\n", err);
        return 1;
    }
    const double total_s = timing_ms(t_start, timing_now_ns()) / 1e3;
    json_object_set(r->log, "recipe", r->recipe);
    json_object_set(r->log, "epochs", r->epochs);
    json_t *final = json_array_get(r->epochs, json_array_size(r->epochs) - 1);
    json_object_set_new(r->log, "final",
                        json_pack("{s:O,s:O,s:o,s:o}", "train_loss", json_object_get(final, "train_loss"),
                                  "train_accuracy", json_object_get(final, "train_accuracy"), "val_loss",
                                  train_json_num(val_loss), "val_accuracy", train_json_num(val_acc)));
    json_object_set_new(r->log, "train_seconds", json_real(r->train_seconds));
    json_object_set_new(r->log, "train_images_per_s",
                        train_json_num(r->train_seconds > 0 ? (double)r->n_train * c->epochs / r->train_seconds : NAN));
    json_object_set_new(r->log, "decode_wait_seconds", json_real(r->decode_wait_seconds));
    json_object_set_new(r->log, "total_seconds", json_real(total_s));
    json_object_set_new(r->log, "model_bytes", json_integer((json_int_t)model_train_bytes(r->t)));
    if (c->log_json[0]) {
        char *text = json_dumps(r->log, JSON_INDENT(1) | JSON_REAL_PRECISION(9));
        if (!text || train_write_text_atomic(c->log_json, text, err, sizeof err) != CNN_OK) {
            fprintf(stderr, "cnnserve train: %s\n", text ? err : "out of memory");
            free(text);
            return 1;
        }
        free(text);
    }
    char val_text[64] = "no validation split";
    if (r->n_val) snprintf(val_text, sizeof val_text, "validation accuracy %.2f%% on %d images", 100 * val_acc, r->n_val);
    printf("wrote %s: model '%s' (%s, all layers fine-tuned, %d classes), %s, %d training images, %d skipped; "
           "training %d epochs %.1f s (%.1f images/s, %d threads), total %.1f s; checkpoint in %s\n",
           c->out, c->name, r->arch->name, r->d.n_classes, val_text, r->n_train, r->n_skipped, c->epochs,
           r->train_seconds, r->train_seconds > 0 ? (double)r->n_train * c->epochs / r->train_seconds : 0.0,
           c->n_threads, total_s, c->checkpoint_dir);
    return 0;
}

int train_full_main(const train_config *c, const model_arch *arch, const char *base_path)
{
    full_run r;
    memset(&r, 0, sizeof r);
    r.c = c;
    r.arch = arch;
    r.base_path = base_path;
    r.con.tty = isatty(STDERR_FILENO);
    pthread_mutex_init(&r.con.lock, NULL);
    /* SIGINT/SIGTERM only set a flag, polled between steps: the step in progress finishes, then a
     * checkpoint is written (a signal ignored when we started, e.g. by nohup, stays ignored). */
    struct sigaction sa = {.sa_handler = on_stop_signal, .sa_flags = SA_RESTART}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    stop_signal = 0;
    sigaction(SIGINT, NULL, &old_int);
    sigaction(SIGTERM, NULL, &old_term);
    if (old_int.sa_handler != SIG_IGN) sigaction(SIGINT, &sa, NULL);
    if (old_term.sa_handler != SIG_IGN) sigaction(SIGTERM, &sa, NULL);
    const int rc = train_full_run(&r);
    prefetch_free(&r.pf);
    optim_free(r.opt);
    model_train_free(r.t);
    json_decref(r.log);
    json_decref(r.recipe);
    json_decref(r.epochs);
    free(r.recipe_text);
    free(r.ok);
    free(r.is_val);
    free(r.train_idx);
    free(r.val_idx);
    free(r.order);
    dataset_free(&r.d);
    weights_free(r.base);
    model_free(r.m);
    pthread_mutex_destroy(&r.con.lock);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return rc;
}
