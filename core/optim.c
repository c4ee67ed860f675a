/* Optimizers, schedules, gradient clipping and optimizer state (see optim.h). The element-wise
 * updates follow torch.optim's single-tensor code paths of PyTorch 1.13 operation by operation in
 * float32 (scalars rounded to float as PyTorch's CPU kernels do); the per-step scalars (bias
 * corrections, step size) are computed in double as Python does. */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "optim.c writes its state as host (little-endian) integers and floats"
#endif

#define OPTIM_STATE_MAGIC "CNNOPTM1"

struct optim {
    optim_opts o;
    int n_params;
    optim_param *params;
    float *state;     /* n_bufs buffers of n_total floats: SGD momentum, or Adam exp_avg then exp_avg_sq */
    size_t n_total;   /* floats over all parameters */
    int n_bufs;
    int64_t steps;
};

static int optim_bad_rate(double x) { return !(x >= 0) || !isfinite(x); }

cnn_status optim_init(optim **out, const optim_opts *o, const optim_param *params, int n_params, char *err,
                      size_t err_bytes)
{
    *out = NULL;
    if (o->kind != OPTIM_SGD && o->kind != OPTIM_ADAM && o->kind != OPTIM_ADAMW)
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "optimizer: unknown kind %d", (int)o->kind);
    for (int g = 0; g < OPTIM_N_GROUPS; g++)
        if (optim_bad_rate(o->lr[g])) return cnn_err(err, err_bytes, CNN_ERR_ARG, "optimizer: bad learning rate");
    if (optim_bad_rate(o->weight_decay))
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "optimizer: weight decay must be >= 0");
    if (o->kind == OPTIM_SGD && !(o->momentum >= 0 && o->momentum < 1))
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "optimizer: momentum must be in [0, 1)");
    if (o->kind == OPTIM_SGD && o->nesterov && !(o->momentum > 0))
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "optimizer: Nesterov momentum requires a momentum > 0");
    if (o->kind != OPTIM_SGD &&
        (!(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1) || !(o->eps > 0) || !isfinite(o->eps)))
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "optimizer: Adam betas must be in [0, 1) and eps > 0");
    if (n_params < 0) return cnn_err(err, err_bytes, CNN_ERR_ARG, "optimizer: negative parameter count");
    size_t n_total = 0;
    for (int i = 0; i < n_params; i++) {
        if (params[i].group < 0 || params[i].group >= OPTIM_N_GROUPS || (params[i].n && (!params[i].data ||
                                                                                          !params[i].grad)))
            return cnn_err(err, err_bytes, CNN_ERR_ARG, "optimizer: parameter %d has no data/gradient or a bad group",
                           i);
        n_total += params[i].n;
    }
    optim *p = calloc(1, sizeof *p);
    const int n_bufs = o->kind == OPTIM_SGD ? 1 : 2;
    if (p) {
        p->params = malloc((n_params ? (size_t)n_params : 1) * sizeof *p->params);
        p->state = calloc(n_total * (size_t)n_bufs + 1, sizeof(float));
    }
    if (!p || !p->params || !p->state) {
        optim_free(p);
        return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "optimizer: out of memory for %zu parameters", n_total);
    }
    p->o = *o;
    p->n_params = n_params;
    if (n_params) memcpy(p->params, params, (size_t)n_params * sizeof *params);
    p->n_total = n_total;
    p->n_bufs = n_bufs;
    *out = p;
    return CNN_OK;
}

void optim_free(optim *o)
{
    if (!o) return;
    free(o->params);
    free(o->state);
    free(o);
}

int64_t optim_steps(const optim *o) { return o->steps; }

/* torch.optim.SGD, one tensor: d = g + wd * p; buf = d on the first step, else momentum * buf + d;
 * d = d + momentum * buf (Nesterov) or buf; p = p - lr * d. */
static void sgd_tensor(const optim_param *p, float *buf, int first, float lr, float wd, float momentum, int nesterov)
{
    for (size_t i = 0; i < p->n; i++) {
        float d = p->grad[i];
        if (wd != 0.0f) d = d + wd * p->data[i];
        if (momentum != 0.0f) {
            buf[i] = first ? d : momentum * buf[i] + d;
            d = nesterov ? d + momentum * buf[i] : buf[i];
        }
        p->data[i] = p->data[i] - lr * d;
    }
}

/* torch.optim.Adam / AdamW, one tensor, at step t (1-based, already counted). */
static void adam_tensor(const optim_opts *o, const optim_param *p, float *m, float *v, int64_t t, double lr,
                        double wd)
{
    const float b1 = (float)o->beta1, b2 = (float)o->beta2, one_b1 = (float)(1 - o->beta1),
                one_b2 = (float)(1 - o->beta2), eps = (float)o->eps;
    const double bias1 = 1 - pow(o->beta1, (double)t), bias2 = 1 - pow(o->beta2, (double)t);
    const float neg_step = (float)-(lr / bias1), bias2_sqrt = (float)sqrt(bias2);
    const int decoupled = o->kind == OPTIM_ADAMW;
    const float wd_f = (float)wd, shrink = (float)(1 - lr * wd);
    for (size_t i = 0; i < p->n; i++) {
        float g = p->grad[i];
        if (decoupled) {
            if (wd != 0) p->data[i] = p->data[i] * shrink;
        } else if (wd != 0) {
            g = g + wd_f * p->data[i];
        }
        m[i] = m[i] * b1 + one_b1 * g;
        v[i] = v[i] * b2 + one_b2 * (g * g);
        const float denom = sqrtf(v[i]) / bias2_sqrt + eps;
        p->data[i] = p->data[i] + neg_step * (m[i] / denom);
    }
}

void optim_step(optim *o, double lr_factor)
{
    const int first = o->steps == 0;
    o->steps++;
    size_t at = 0;
    for (int i = 0; i < o->n_params; i++) {
        const optim_param *p = &o->params[i];
        const double lr = o->o.lr[p->group] * lr_factor, wd = p->no_decay ? 0.0 : o->o.weight_decay;
        if (o->o.kind == OPTIM_SGD)
            sgd_tensor(p, o->state + at, first, (float)lr, (float)wd, (float)o->o.momentum, o->o.nesterov);
        else
            adam_tensor(&o->o, p, o->state + at, o->state + o->n_total + at, o->steps, lr, wd);
        at += p->n;
    }
}

double optim_clip_grad_norm(optim *o, double max_norm)
{
    double total = 0.0;
    for (int i = 0; i < o->n_params; i++) {
        const optim_param *p = &o->params[i];
        double sq = 0.0;
        for (size_t j = 0; j < p->n; j++) sq += (double)p->grad[j] * p->grad[j];
        total += sq;
    }
    const double norm = sqrt(total), coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        const float c = (float)coef;
        for (int i = 0; i < o->n_params; i++)
            for (size_t j = 0; j < o->params[i].n; j++) o->params[i].grad[j] *= c;
    }
    return norm;
}

/* ---- state stream: magic, u32 kind, u32 buffers, u32 parameters, i64 steps, u64 size of each
 * parameter, then the buffers (floats) ---- */

typedef struct {
    char magic[8];
    uint32_t kind, n_bufs, n_params, pad;
    int64_t steps;
} optim_state_header;

cnn_status optim_state_write(const optim *o, FILE *f, char *err, size_t err_bytes)
{
    optim_state_header h = {.kind = (uint32_t)o->o.kind, .n_bufs = (uint32_t)o->n_bufs,
                            .n_params = (uint32_t)o->n_params, .steps = o->steps};
    memcpy(h.magic, OPTIM_STATE_MAGIC, 8);
    int bad = fwrite(&h, sizeof h, 1, f) != 1;
    for (int i = 0; !bad && i < o->n_params; i++) {
        const uint64_t n = o->params[i].n;
        bad = fwrite(&n, sizeof n, 1, f) != 1;
    }
    const size_t n_floats = o->n_total * (size_t)o->n_bufs;
    if (!bad && n_floats) bad = fwrite(o->state, sizeof(float), n_floats, f) != n_floats;
    return bad ? cnn_err(err, err_bytes, CNN_ERR_IO, "cannot write the optimizer state") : CNN_OK;
}

cnn_status optim_state_read(optim *o, FILE *f, char *err, size_t err_bytes)
{
    static const char *const kinds[] = {"sgd", "adam", "adamw"};
    optim_state_header h;
    if (fread(&h, sizeof h, 1, f) != 1)
        return cnn_err(err, err_bytes, CNN_ERR_IO, "optimizer state: truncated header");
    if (memcmp(h.magic, OPTIM_STATE_MAGIC, 8))
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "optimizer state: not a cnnserve optimizer state");
    if (h.kind != (uint32_t)o->o.kind || h.n_bufs != (uint32_t)o->n_bufs)
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "optimizer state: saved for %s, this run uses %s",
                       h.kind < 3 ? kinds[h.kind] : "an unknown optimizer", kinds[o->o.kind]);
    if (h.n_params != (uint32_t)o->n_params || h.steps < 0)
        return cnn_err(err, err_bytes, CNN_ERR_FORMAT, "optimizer state: %u parameter tensors, the model has %d",
                       h.n_params, o->n_params);
    for (int i = 0; i < o->n_params; i++) {
        uint64_t n;
        if (fread(&n, sizeof n, 1, f) != 1)
            return cnn_err(err, err_bytes, CNN_ERR_IO, "optimizer state: truncated");
        if (n != o->params[i].n)
            return cnn_err(err, err_bytes, CNN_ERR_FORMAT,
                           "optimizer state: tensor %d has %llu values, the model's has %zu", i,
                           (unsigned long long)n, o->params[i].n);
    }
    const size_t n_floats = o->n_total * (size_t)o->n_bufs;
    float *tmp = malloc((n_floats ? n_floats : 1) * sizeof(float));
    if (!tmp) return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "optimizer state: out of memory");
    if (n_floats && fread(tmp, sizeof(float), n_floats, f) != n_floats) {
        free(tmp);
        return cnn_err(err, err_bytes, CNN_ERR_IO, "optimizer state: truncated buffers");
    }
    if (n_floats) memcpy(o->state, tmp, n_floats * sizeof(float));
    free(tmp);
    o->steps = h.steps;
    return CNN_OK;
}

double optim_schedule_factor(const optim_schedule *s, int64_t step)
{
    if (step < 0) step = 0;
    if (step < s->warmup_steps) return (double)(step + 1) / (double)s->warmup_steps;
    const int64_t t = step - (s->warmup_steps > 0 ? s->warmup_steps : 0);
    const int64_t span = s->total_steps - (s->warmup_steps > 0 ? s->warmup_steps : 0);
    switch (s->kind) {
    case OPTIM_SCHED_COSINE:
        if (span <= 0 || t >= span) return 0.0;
        return 0.5 * (1.0 + cos(M_PI * (double)t / (double)span));
    case OPTIM_SCHED_STEP:
        return pow(s->gamma, (double)(t / (s->step_size > 0 ? s->step_size : 1)));
    case OPTIM_SCHED_CONST:
    default:
        return 1.0;
    }
}
