/* core/optim: SGD / Nesterov / Adam / AdamW updates against hand-computed values, learning-rate
 * groups and weight-decay exclusion, gradient clipping, the schedules' values, the state round trip
 * (a resumed run is bit-identical to an uninterrupted one) and the errors for bad options and
 * mismatched states. (tests/train/test_optim_torch.py compares the same code with torch.optim.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/optim.h"
#include "../../core/rng.h"
#include "../test.h"

static int close_to(double a, double b, double tol) { return fabs(a - b) <= tol * (fabs(b) > 1 ? fabs(b) : 1); }

static optim *make(const optim_opts *o, optim_param *p, int n)
{
    optim *opt = NULL;
    char err[256];
    if (optim_init(&opt, o, p, n, err, sizeof err) != CNN_OK) {
        printf("#   optim_init: %s\n", err);
        return NULL;
    }
    return opt;
}

static void test_sgd(void)
{
    test_begin();
    float p[2] = {1.0f, -2.0f}, g[2] = {0.5f, 0.25f};
    optim_param prm = {p, g, 2, OPTIM_GROUP_HEAD, 0};
    optim_opts o = {.kind = OPTIM_SGD, .lr = {0.1, 0.1}, .momentum = 0.9, .weight_decay = 0.01};
    optim *opt = make(&o, &prm, 1);
    T_CHECK(opt, "init");
    if (opt) {
        optim_step(opt, 1.0); /* d = 0.51, buf = 0.51, p = 1 - 0.051 */
        T_CHECK(close_to(p[0], 0.949, 1e-6), "step 1: p %g", p[0]);
        optim_step(opt, 1.0); /* d = 0.50949, buf = 0.9*0.51 + 0.50949 = 0.96849, p = 0.949 - 0.096849 */
        T_CHECK(close_to(p[0], 0.852151, 1e-6), "step 2: p %g", p[0]);
        /* second value: d 0.23, buf 0.23, p -2.023; d 0.22977, buf 0.43677, p -2.066677 */
        T_CHECK(close_to(p[1], -2.066677, 1e-6), "second value: p %g", p[1]);
        T_CHECK(optim_steps(opt) == 2, "steps %lld", (long long)optim_steps(opt));
        optim_free(opt);
    }
    /* Nesterov: d = g + m * buf. p = 1, g = 1, lr 0.1, m 0.5: step 1 buf 1, d 1.5, p 0.85;
     * step 2 buf 1.5, d 1.75, p 0.675. */
    float q[1] = {1.0f}, h[1] = {1.0f};
    optim_param pq = {q, h, 1, OPTIM_GROUP_BACKBONE, 0};
    o = (optim_opts){.kind = OPTIM_SGD, .lr = {9.0, 0.1}, .momentum = 0.5, .nesterov = 1};
    opt = make(&o, &pq, 1);
    if (opt) {
        optim_step(opt, 1.0);
        T_CHECK(close_to(q[0], 0.85, 1e-6), "nesterov step 1: %g", q[0]);
        optim_step(opt, 1.0);
        T_CHECK(close_to(q[0], 0.675, 1e-6), "nesterov step 2 (backbone rate): %g", q[0]);
        optim_free(opt);
    }
    test_end("optim: SGD momentum + weight decay, Nesterov, the backbone group's rate");
}

static void test_adam(void)
{
    test_begin();
    /* First Adam step: m = (1-b1) g, v = (1-b2) g^2, bias-corrected ratio = g / (|g| + eps'): the step
     * is lr * sign(g) up to eps. */
    float p[3] = {1.0f, 1.0f, 1.0f}, g[3] = {0.3f, -4.0f, 0.0f};
    optim_param prm[2] = {{p, g, 2, OPTIM_GROUP_HEAD, 0}, {p + 2, g + 2, 1, OPTIM_GROUP_HEAD, 0}};
    optim_opts o = {.kind = OPTIM_ADAM, .lr = {0.01, 0.01}, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    optim *opt = make(&o, prm, 2);
    if (opt) {
        optim_step(opt, 1.0);
        T_CHECK(close_to(p[0], 0.99, 1e-6) && close_to(p[1], 1.01, 1e-6) && p[2] == 1.0f, "adam step 1: %g %g %g",
                p[0], p[1], p[2]);
        /* Second step with the same gradient: m_hat = g, v_hat = g^2: again lr * sign(g). */
        optim_step(opt, 0.5);
        T_CHECK(close_to(p[0], 0.985, 1e-6) && close_to(p[1], 1.015, 1e-6), "adam step 2 (factor 0.5): %g %g", p[0],
                p[1]);
        optim_free(opt);
    }
    /* AdamW: p *= 1 - lr*wd before the Adam step; with no_decay the factor is skipped. */
    float a[2] = {2.0f, 2.0f}, ga[2] = {1.0f, 1.0f};
    optim_param pa[2] = {{a, ga, 1, OPTIM_GROUP_HEAD, 0}, {a + 1, ga + 1, 1, OPTIM_GROUP_HEAD, 1}};
    o = (optim_opts){.kind = OPTIM_ADAMW, .lr = {0.1, 0.1}, .weight_decay = 0.5, .beta1 = 0.9, .beta2 = 0.999,
                     .eps = 1e-8};
    opt = make(&o, pa, 2);
    if (opt) {
        optim_step(opt, 1.0); /* 2 * 0.95 - 0.1 = 1.8; 2 - 0.1 = 1.9 */
        T_CHECK(close_to(a[0], 1.8, 1e-6) && close_to(a[1], 1.9, 1e-6), "adamw: %g %g", a[0], a[1]);
        optim_free(opt);
    }
    /* Adam's L2 decay enters the gradient: with g = 0 and wd the step is -lr * sign(p). */
    float b[1] = {-3.0f}, gb[1] = {0.0f};
    optim_param pb = {b, gb, 1, OPTIM_GROUP_HEAD, 0};
    o.kind = OPTIM_ADAM;
    opt = make(&o, &pb, 1);
    if (opt) {
        optim_step(opt, 1.0);
        T_CHECK(close_to(b[0], -2.9, 1e-6), "adam L2: %g", b[0]);
        optim_free(opt);
    }
    test_end("optim: Adam bias correction, AdamW decoupled decay, no_decay, Adam L2 decay");
}

static void test_clip(void)
{
    test_begin();
    float p[3] = {0, 0, 0}, g[3] = {3.0f, 0.0f, 4.0f};
    optim_param prm[2] = {{p, g, 2, OPTIM_GROUP_HEAD, 0}, {p + 2, g + 2, 1, OPTIM_GROUP_BACKBONE, 0}};
    optim_opts o = {.kind = OPTIM_SGD, .lr = {1, 1}};
    optim *opt = make(&o, prm, 2);
    if (opt) {
        double n = optim_clip_grad_norm(opt, 10.0);
        T_CHECK(n == 5.0 && g[0] == 3.0f && g[2] == 4.0f, "no clip: norm %g, g %g %g", n, g[0], g[2]);
        n = optim_clip_grad_norm(opt, 1.0);
        T_CHECK(n == 5.0 && close_to(g[0], 0.6, 1e-6) && close_to(g[2], 0.8, 1e-6), "clip: norm %g g %g %g", n, g[0],
                g[2]);
        optim_free(opt);
    }
    test_end("optim: clip_grad_norm_ (global L2 norm over tensors, scaled only when above)");
}

static void test_schedule(void)
{
    test_begin();
    optim_schedule s = {.kind = OPTIM_SCHED_CONST, .total_steps = 10};
    T_CHECK(optim_schedule_factor(&s, 0) == 1.0 && optim_schedule_factor(&s, 9) == 1.0, "const");
    s = (optim_schedule){.kind = OPTIM_SCHED_COSINE, .total_steps = 14, .warmup_steps = 4};
    T_CHECK(optim_schedule_factor(&s, 0) == 0.25 && optim_schedule_factor(&s, 3) == 1.0, "warm-up %g %g",
            optim_schedule_factor(&s, 0), optim_schedule_factor(&s, 3));
    T_CHECK(optim_schedule_factor(&s, 4) == 1.0 && close_to(optim_schedule_factor(&s, 9), 0.5, 1e-12) &&
                close_to(optim_schedule_factor(&s, 13), 0.5 * (1 + cos(M_PI * 0.9)), 1e-12) &&
                optim_schedule_factor(&s, 14) == 0.0,
            "cosine %g %g %g", optim_schedule_factor(&s, 4), optim_schedule_factor(&s, 9),
            optim_schedule_factor(&s, 13));
    s = (optim_schedule){.kind = OPTIM_SCHED_STEP, .total_steps = 100, .warmup_steps = 2, .step_size = 3, .gamma = 0.1};
    T_CHECK(optim_schedule_factor(&s, 1) == 1.0 && optim_schedule_factor(&s, 4) == 1.0 &&
                close_to(optim_schedule_factor(&s, 5), 0.1, 1e-15) &&
                close_to(optim_schedule_factor(&s, 11), 0.001, 1e-15),
            "step %g %g %g", optim_schedule_factor(&s, 4), optim_schedule_factor(&s, 5),
            optim_schedule_factor(&s, 11));
    test_end("optim: schedules (linear warm-up, cosine, step) as functions of the step");
}

/* n_steps of `kind` on random gradients from seed, optionally through a state file after `split`
 * steps; final parameters into out. */
static int run(optim_kind kind, int n_steps, int split, float *out)
{
    enum { N = 50 };
    float p[N], g[N];
    rng r;
    rng_init(&r, 42);
    for (int i = 0; i < N; i++) p[i] = (float)rng_uniform(&r);
    optim_param prm[2] = {{p, g, 20, OPTIM_GROUP_HEAD, 0}, {p + 20, g + 20, N - 20, OPTIM_GROUP_BACKBONE, 1}};
    optim_opts o = {.kind = kind, .lr = {0.1, 0.02}, .momentum = 0.9, .weight_decay = 0.01, .beta1 = 0.9,
                    .beta2 = 0.999, .eps = 1e-8};
    optim *opt = make(&o, prm, 2);
    if (!opt) return -1;
    char err[256];
    for (int s = 0; s < n_steps; s++) {
        if (s == split) {
            FILE *f = tmpfile();
            optim *o2 = make(&o, prm, 2);
            int bad = !f || !o2 || optim_state_write(opt, f, err, sizeof err) != CNN_OK || fseek(f, 0, SEEK_SET) ||
                      optim_state_read(o2, f, err, sizeof err) != CNN_OK;
            if (f) fclose(f);
            optim_free(opt);
            opt = o2;
            if (bad) {
                printf("#   state round trip: %s\n", err);
                optim_free(opt);
                return -1;
            }
        }
        for (int i = 0; i < N; i++) g[i] = (float)(2 * rng_uniform(&r) - 1);
        optim_clip_grad_norm(opt, 2.0);
        optim_step(opt, 1.0 / (1 + s));
    }
    memcpy(out, p, sizeof p);
    optim_free(opt);
    return 0;
}

static void test_state_io(void)
{
    test_begin();
    float a[50], b[50];
    for (int k = OPTIM_SGD; k <= OPTIM_ADAMW; k++) {
        T_CHECK(run((optim_kind)k, 9, -1, a) == 0 && run((optim_kind)k, 9, 4, b) == 0, "kind %d: run", k);
        T_CHECK(!memcmp(a, b, sizeof a), "kind %d: resumed run differs", k);
    }
    /* A state of another optimizer or shape is refused and leaves the state alone. */
    float p[4] = {0}, g[4] = {0};
    optim_param prm = {p, g, 4, OPTIM_GROUP_HEAD, 0}, prm3 = {p, g, 3, OPTIM_GROUP_HEAD, 0};
    optim_opts sgd = {.kind = OPTIM_SGD, .lr = {1, 1}}, adam = {.kind = OPTIM_ADAM, .lr = {1, 1}, .beta1 = 0.9,
                                                                .beta2 = 0.99, .eps = 1e-8};
    optim *o1 = make(&sgd, &prm, 1), *o2 = make(&adam, &prm, 1), *o3 = make(&sgd, &prm3, 1);
    FILE *f = tmpfile();
    char err[256] = "";
    if (o1 && o2 && o3 && f) {
        optim_step(o1, 1.0);
        T_CHECK(optim_state_write(o1, f, err, sizeof err) == CNN_OK, "write: %s", err);
        rewind(f);
        T_CHECK(optim_state_read(o2, f, err, sizeof err) == CNN_ERR_FORMAT && strstr(err, "saved for sgd"),
                "kind mismatch: %s", err);
        rewind(f);
        T_CHECK(optim_state_read(o3, f, err, sizeof err) == CNN_ERR_FORMAT && strstr(err, "has 4 values"),
                "size mismatch: %s", err);
        T_CHECK(optim_steps(o3) == 0, "refused state changed the step count");
        FILE *t = tmpfile();
        if (t) {
            fwrite("CNNOPTM1", 1, 8, t);
            rewind(t);
            T_CHECK(optim_state_read(o1, t, err, sizeof err) == CNN_ERR_IO, "truncated: %s", err);
            fclose(t);
        }
    }
    if (f) fclose(f);
    optim_free(o1);
    optim_free(o2);
    optim_free(o3);
    test_end("optim: state write/read resumes bit-identically (SGD, Adam, AdamW); mismatches refused");
}

static void test_bad_opts(void)
{
    test_begin();
    float p[1], g[1];
    optim_param prm = {p, g, 1, OPTIM_GROUP_HEAD, 0};
    const optim_opts bad[] = {
        {.kind = OPTIM_SGD, .lr = {-1, 1}},
        {.kind = OPTIM_SGD, .lr = {1, NAN}},
        {.kind = OPTIM_SGD, .lr = {1, 1}, .momentum = 1.0},
        {.kind = OPTIM_SGD, .lr = {1, 1}, .nesterov = 1},
        {.kind = OPTIM_SGD, .lr = {1, 1}, .weight_decay = -1},
        {.kind = OPTIM_ADAM, .lr = {1, 1}, .beta1 = 1.0, .beta2 = 0.9, .eps = 1e-8},
        {.kind = OPTIM_ADAMW, .lr = {1, 1}, .beta1 = 0.9, .beta2 = 0.9, .eps = 0},
        {.kind = (optim_kind)7, .lr = {1, 1}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        optim *o = NULL;
        char err[256] = "";
        cnn_status s = optim_init(&o, &bad[i], &prm, 1, err, sizeof err);
        T_CHECK(s == CNN_ERR_ARG && !o && err[0], "case %zu accepted (%d, '%s')", i, (int)s, err);
        optim_free(o);
    }
    optim_param badgroup = {p, g, 1, 5, 0};
    optim *o = NULL;
    optim_opts ok = {.kind = OPTIM_SGD, .lr = {1, 1}};
    T_CHECK(optim_init(&o, &ok, &badgroup, 1, NULL, 0) == CNN_ERR_ARG && !o, "bad group accepted");
    test_end("optim: bad options and parameter groups are refused with a message");
}

int main(void)
{
    test_sgd();
    test_adam();
    test_clip();
    test_schedule();
    test_state_io();
    test_bad_opts();
    return test_finish();
}
