/* bwd_ops IN OUT: runs one training backward kernel of core/kernels.h on the inputs in IN and
 * writes its results to OUT, for tests/train/test_backward_torch.py (which compares them with
 * PyTorch autograd). Little-endian; IN starts with int32 op, then op-specific int32 parameters,
 * float32 parameters and float32 arrays:
 *   1 conv:     n c_in h_in w_in c_out h_out w_out k_h k_w s_h s_w pad_t pad_l pad_b pad_r groups
 *               has_bias; x[n][c_in][h_in][w_in] w[c_out][c_in/groups][k_h][k_w] dy[n][c_out][..]
 *               -> dx[n][..] (conv2d_backward_data per image), dw, db (conv2d_backward_weights
 *               accumulated over the images from zero; db only with has_bias)
 *   2 act:      kind n; x[n] dy[n] -> dx[n]
 *   3 pool:     kind c h_in w_in h_out w_out k_h k_w s_h s_w pad_t pad_l pad_b pad_r
 *               count_include_pad; x dy -> dx
 *   4 adaptive: c h_in w_in h_out w_out; dy -> dx
 *   5 bn frozen: n c hw; eps; x gamma beta mean var dy -> y dx dgamma dbeta
 *   6 bn train: n c hw; eps momentum; x gamma beta running_mean running_var dy
 *               -> y running_mean running_var dx dgamma dbeta
 *   7 scale:    c hw; x scale dy -> dx dscale
 * Parameter gradients are accumulated from zero. */
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/kernels.h"

#define MAX_FLOATS ((size_t)1 << 28)

typedef struct {
    FILE *in;
    int bad;
    float *bufs[16];
    int n_bufs;
} reader;

static int read_int(reader *r)
{
    int32_t v = 0;
    if (fread(&v, sizeof v, 1, r->in) != 1) r->bad = 1;
    return (int)v;
}

static float read_float(reader *r)
{
    float v = 0.0f;
    if (fread(&v, sizeof v, 1, r->in) != 1) r->bad = 1;
    return v;
}

/* n floats read from IN (read = 1) or zeroed; NULL (and r->bad) on failure. */
static float *get_floats(reader *r, size_t n, int read)
{
    if (r->bad || n == 0 || n > MAX_FLOATS || r->n_bufs == 16) {
        r->bad = 1;
        return NULL;
    }
    float *p = calloc(n, sizeof *p);
    if (!p || (read && fread(p, sizeof *p, n, r->in) != n)) {
        free(p);
        r->bad = 1;
        return NULL;
    }
    r->bufs[r->n_bufs++] = p;
    return p;
}

static int put(FILE *out, const float *p, size_t n) { return fwrite(p, sizeof *p, n, out) == n ? 0 : -1; }

static int positive(const int *v, int n)
{
    for (int i = 0; i < n; i++)
        if (v[i] <= 0 || v[i] > 100000) return 0;
    return 1;
}

static int run(reader *r, FILE *out)
{
    const int op = read_int(r);
    int v[17];
    switch (op) {
    case 1: {
        for (int i = 0; i < 17; i++) v[i] = read_int(r);
        const conv2d_params p = {.c_in = v[1], .h_in = v[2], .w_in = v[3], .c_out = v[4],
                                 .h_out = v[5], .w_out = v[6], .k_h = v[7], .k_w = v[8],
                                 .stride_h = v[9], .stride_w = v[10], .pad_t = v[11],
                                 .pad_l = v[12], .pad_b = v[13], .pad_r = v[14], .groups = v[15],
                                 .act = ACT_NONE};
        if (r->bad || !positive(v, 11) || !positive(v + 15, 1) || p.c_in % p.groups ||
            p.c_out % p.groups || v[11] < 0 || v[12] < 0 || v[13] < 0 || v[14] < 0)
            return -1;
        const size_t n = (size_t)v[0], nx = (size_t)p.c_in * p.h_in * p.w_in;
        const size_t ny = (size_t)p.c_out * p.h_out * p.w_out;
        const size_t nw = (size_t)p.c_out * (p.c_in / p.groups) * p.k_h * p.k_w;
        float *x = get_floats(r, n * nx, 1), *w = get_floats(r, nw, 1), *dy = get_floats(r, n * ny, 1);
        float *dx = get_floats(r, n * nx, 0), *dw = get_floats(r, nw, 0);
        float *db = get_floats(r, (size_t)p.c_out, 0);
        const size_t ns = conv2d_backward_scratch_floats(&p);
        float *scratch = ns ? get_floats(r, ns, 0) : NULL;
        if (r->bad) return -1;
        for (size_t i = 0; i < n; i++) {
            conv2d_backward_data(&p, dy + i * ny, w, dx + i * nx, scratch);
            conv2d_backward_weights(&p, x + i * nx, dy + i * ny, dw, v[16] ? db : NULL, scratch);
        }
        return put(out, dx, n * nx) || put(out, dw, nw) || (v[16] && put(out, db, (size_t)p.c_out));
    }
    case 2: {
        const int kind = read_int(r), n = read_int(r);
        if (r->bad || kind < ACT_NONE || kind > ACT_HSIGMOID || n <= 0) return -1;
        float *x = get_floats(r, (size_t)n, 1), *dy = get_floats(r, (size_t)n, 1);
        float *dx = get_floats(r, (size_t)n, 0);
        if (r->bad) return -1;
        act_backward((act_kind)kind, x, dy, dx, (size_t)n);
        return put(out, dx, (size_t)n);
    }
    case 3: {
        for (int i = 0; i < 15; i++) v[i] = read_int(r);
        const pool2d_params p = {.kind = v[0] ? POOL_AVG : POOL_MAX, .c = v[1], .h_in = v[2],
                                 .w_in = v[3], .h_out = v[4], .w_out = v[5], .k_h = v[6],
                                 .k_w = v[7], .stride_h = v[8], .stride_w = v[9], .pad_t = v[10],
                                 .pad_l = v[11], .pad_b = v[12], .pad_r = v[13],
                                 .count_include_pad = v[14]};
        if (r->bad || !positive(v + 1, 9) || v[10] < 0 || v[11] < 0 || v[12] < 0 || v[13] < 0) return -1;
        const size_t nx = (size_t)p.c * p.h_in * p.w_in, ny = (size_t)p.c * p.h_out * p.w_out;
        float *x = get_floats(r, nx, 1), *dy = get_floats(r, ny, 1), *dx = get_floats(r, nx, 0);
        if (r->bad) return -1;
        pool2d_backward(&p, x, dy, dx);
        return put(out, dx, nx);
    }
    case 4: {
        for (int i = 0; i < 5; i++) v[i] = read_int(r);
        if (r->bad || !positive(v, 5)) return -1;
        const size_t nx = (size_t)v[0] * v[1] * v[2], ny = (size_t)v[0] * v[3] * v[4];
        float *dy = get_floats(r, ny, 1), *dx = get_floats(r, nx, 0);
        if (r->bad) return -1;
        adaptive_avg_backward(v[0], v[1], v[2], v[3], v[4], dy, dx);
        return put(out, dx, nx);
    }
    case 5:
    case 6: {
        for (int i = 0; i < 3; i++) v[i] = read_int(r);
        bn_params p = {.n = v[0], .c = v[1], .hw = v[2]};
        p.eps = read_float(r);
        if (op == 6) p.momentum = read_float(r);
        if (r->bad || !positive(v, 3)) return -1;
        const size_t nx = (size_t)p.n * p.c * p.hw, c = (size_t)p.c;
        float *x = get_floats(r, nx, 1), *g = get_floats(r, c, 1), *b = get_floats(r, c, 1);
        float *mean = get_floats(r, c, 1), *var = get_floats(r, c, 1), *dy = get_floats(r, nx, 1);
        float *y = get_floats(r, nx, 0), *dx = get_floats(r, nx, 0), *dg = get_floats(r, c, 0);
        float *dbeta = get_floats(r, c, 0), *sm = get_floats(r, c, 0), *si = get_floats(r, c, 0);
        if (r->bad) return -1;
        if (op == 5) {
            bn_frozen_forward(&p, 0, p.c, x, g, b, mean, var, y);
            bn_frozen_backward(&p, 0, p.c, x, dy, g, mean, var, dx, dg, dbeta);
            return put(out, y, nx) || put(out, dx, nx) || put(out, dg, c) || put(out, dbeta, c);
        }
        if (p.n * p.hw < 2) return -1;
        bn_train_forward(&p, 0, p.c, x, g, b, mean, var, sm, si, y);
        bn_train_backward(&p, 0, p.c, x, dy, g, sm, si, dx, dg, dbeta);
        return put(out, y, nx) || put(out, mean, c) || put(out, var, c) || put(out, dx, nx) ||
               put(out, dg, c) || put(out, dbeta, c);
    }
    case 7: {
        const int c = read_int(r), hw = read_int(r);
        if (r->bad || c <= 0 || hw <= 0) return -1;
        const size_t n = (size_t)c * hw;
        float *x = get_floats(r, n, 1), *s = get_floats(r, (size_t)c, 1), *dy = get_floats(r, n, 1);
        float *dx = get_floats(r, n, 0), *ds = get_floats(r, (size_t)c, 0);
        if (r->bad) return -1;
        scale_channels_backward(c, hw, x, s, dy, dx, ds);
        return put(out, dx, n) || put(out, ds, (size_t)c);
    }
    default: return -1;
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: bwd_ops IN OUT\n");
        return 2;
    }
    openblas_set_num_threads(1);
    reader r = {.in = fopen(argv[1], "rb")};
    if (!r.in) {
        fprintf(stderr, "bwd_ops: cannot open %s\n", argv[1]);
        return 1;
    }
    FILE *out = fopen(argv[2], "wb");
    int rc = out ? run(&r, out) : -1;
    if (rc == 0 && fgetc(r.in) != EOF) rc = -1; /* trailing input: a protocol mismatch */
    if (out && fclose(out) != 0) rc = -1;
    fclose(r.in);
    for (int i = 0; i < r.n_bufs; i++) free(r.bufs[i]);
    if (rc != 0) fprintf(stderr, "bwd_ops: bad or short input %s, or write error\n", argv[1]);
    return rc != 0;
}
