/* optim_tool IN OUT: runs core/optim.h on given parameters and per-step gradients for
 * tests/train/test_optim_torch.py, which runs torch.optim + torch.optim.lr_scheduler +
 * clip_grad_norm_ on the same numbers. Halfway through, the optimizer state is written to a
 * temporary stream and read into a new optimizer (the checkpoint path), which must not change the
 * results.
 * IN (little-endian): int32 kind (0 sgd, 1 adam, 2 adamw), nesterov, n_params, n_steps, schedule
 *     (0 const, 1 cosine, 2 step); int64 total_steps, warmup_steps, step_size; float64 lr_head,
 *     lr_backbone, weight_decay, momentum, beta1, beta2, eps, gamma, clip (0: none);
 *     per parameter int32 n, group, no_decay; float32 initial data (all parameters in order);
 *     float32 gradients, n_steps x (all parameters in order).
 * OUT: per step float64 lr factor and float64 gradient norm before clipping (0 without clipping);
 *     then float32 final data (all parameters). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/optim.h"

static int rd(FILE *f, void *p, size_t size, size_t n) { return fread(p, size, n, f) == n ? 0 : -1; }

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: optim_tool IN OUT\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "rb");
    int32_t h[5];
    int64_t sched[3];
    double d[9];
    if (!in || rd(in, h, 4, 5) || rd(in, sched, 8, 3) || rd(in, d, 8, 9) || h[2] < 1 || h[2] > 1000 || h[3] < 1 ||
        h[3] > 10000) {
        fprintf(stderr, "optim_tool: bad input\n");
        return 1;
    }
    const int n_params = h[2], n_steps = h[3];
    optim_param *params = calloc((size_t)n_params, sizeof *params);
    size_t total = 0;
    for (int i = 0; params && i < n_params; i++) {
        int32_t q[3];
        if (rd(in, q, 4, 3) || q[0] < 1 || q[0] > (1 << 24)) {
            fprintf(stderr, "optim_tool: bad parameter %d\n", i);
            return 1;
        }
        params[i].n = (size_t)q[0];
        params[i].group = q[1];
        params[i].no_decay = q[2];
        total += params[i].n;
    }
    float *data = malloc(total * 4), *grad = malloc(total * 4);
    if (!params || !data || !grad || rd(in, data, 4, total)) {
        fprintf(stderr, "optim_tool: short input or out of memory\n");
        return 1;
    }
    for (size_t at = 0, i = 0; i < (size_t)n_params; at += params[i].n, i++) {
        params[i].data = data + at;
        params[i].grad = grad + at;
    }
    const optim_opts oo = {.kind = (optim_kind)h[0], .nesterov = h[1], .lr = {d[0], d[1]}, .weight_decay = d[2],
                           .momentum = d[3], .beta1 = d[4], .beta2 = d[5], .eps = d[6]};
    const optim_schedule sc = {.kind = (optim_sched_kind)h[4], .total_steps = sched[0], .warmup_steps = sched[1],
                               .step_size = sched[2], .gamma = d[7]};
    char err[256];
    optim *o = NULL;
    if (optim_init(&o, &oo, params, n_params, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "optim_tool: %s\n", err);
        return 1;
    }
    FILE *out = fopen(argv[2], "wb");
    if (!out) return 1;
    for (int s = 0; s < n_steps; s++) {
        if (s == n_steps / 2) { /* checkpoint round trip */
            FILE *t = tmpfile();
            optim *o2 = NULL;
            if (!t || optim_state_write(o, t, err, sizeof err) != CNN_OK || fseek(t, 0, SEEK_SET) ||
                optim_init(&o2, &oo, params, n_params, err, sizeof err) != CNN_OK ||
                optim_state_read(o2, t, err, sizeof err) != CNN_OK || optim_steps(o2) != optim_steps(o)) {
                fprintf(stderr, "optim_tool: state round trip: %s\n", err);
                return 1;
            }
            fclose(t);
            optim_free(o);
            o = o2;
        }
        if (rd(in, grad, 4, total)) {
            fprintf(stderr, "optim_tool: short gradients\n");
            return 1;
        }
        const double factor = optim_schedule_factor(&sc, s);
        const double norm = d[8] > 0 ? optim_clip_grad_norm(o, d[8]) : 0.0;
        optim_step(o, factor);
        fwrite(&factor, 8, 1, out);
        fwrite(&norm, 8, 1, out);
    }
    fclose(in);
    fwrite(data, 4, total, out);
    int bad = fclose(out) != 0;
    optim_free(o);
    free(params);
    free(data);
    free(grad);
    return bad;
}
