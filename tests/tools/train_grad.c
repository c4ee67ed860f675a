/* train_grad IN OUT: runs the linear-head training kernels (core/kernels_train.h) and
 * the SGD of core/optim.h on one batch for
 * tests/train/test_train_torch.py, which compares the results with PyTorch autograd and
 * torch.optim.SGD.
 * IN: int32 n, n_in, n_out, steps; float32 lr, momentum, weight_decay; float32 x[n][n_in],
 *     w[n_out][n_in], b[n_out]; int32 labels[n].
 * OUT: float64 loss; float32 dx[n][n_in], dw[n_out][n_in], db[n_out] (at the given w, b); then
 *      float32 w, b after `steps` full-batch SGD steps. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../core/kernels_train.h"
#include "../../core/optim.h"

static int read_all(FILE *f, void *p, size_t size, size_t n) { return fread(p, size, n, f) == n ? 0 : -1; }

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: train_grad IN OUT\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "rb");
    int32_t h[4];
    float hp[3];
    if (!in || read_all(in, h, sizeof h[0], 4) || read_all(in, hp, sizeof hp[0], 3) || h[0] < 1 || h[1] < 1 ||
        h[2] < 2 || h[3] < 0 || h[0] > 100000 || h[1] > 100000 || h[2] > 10000) {
        fprintf(stderr, "train_grad: bad input %s\n", argv[1]);
        return 1;
    }
    const int n = h[0], f = h[1], k = h[2], steps = h[3];
    const size_t nx = (size_t)n * f, nw = (size_t)k * f;
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc((size_t)k * 4), *logits = malloc((size_t)n * k * 4);
    float *dl = malloc((size_t)n * k * 4), *dx = malloc(nx * 4), *dw = malloc(nw * 4), *db = malloc((size_t)k * 4);
    int32_t *y = malloc((size_t)n * 4);
    if (!x || !w || !b || !logits || !dl || !dx || !dw || !db || !y || read_all(in, x, 4, nx) ||
        read_all(in, w, 4, nw) || read_all(in, b, 4, (size_t)k) || read_all(in, y, 4, (size_t)n)) {
        fprintf(stderr, "train_grad: short input or out of memory\n");
        return 1;
    }
    fclose(in);
    train_linear_forward(n, f, k, x, w, b, logits);
    double loss = train_softmax_xent(n, k, logits, y, dl, NULL);
    train_linear_backward(n, f, k, x, w, dl, dx, dw, db);
    FILE *out = fopen(argv[2], "wb");
    if (!out) return 1;
    fwrite(&loss, 8, 1, out);
    fwrite(dx, 4, nx, out);
    fwrite(dw, 4, nw, out);
    fwrite(db, 4, (size_t)k, out);
    const optim_opts oo = {.kind = OPTIM_SGD, .lr = {hp[0], hp[0]}, .weight_decay = hp[2], .momentum = hp[1]};
    const optim_param params[2] = {{w, dw, nw, OPTIM_GROUP_HEAD, 0}, {b, db, (size_t)k, OPTIM_GROUP_HEAD, 0}};
    optim *opt = NULL;
    char err[256];
    if (optim_init(&opt, &oo, params, 2, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "train_grad: %s\n", err);
        return 1;
    }
    for (int s = 0; s < steps; s++) {
        train_linear_forward(n, f, k, x, w, b, logits);
        train_softmax_xent(n, k, logits, y, dl, NULL);
        train_linear_backward(n, f, k, x, w, dl, NULL, dw, db);
        optim_step(opt, 1.0);
    }
    fwrite(w, 4, nw, out);
    fwrite(b, 4, (size_t)k, out);
    int bad = fclose(out) != 0;
    free(x), free(w), free(b), free(logits), free(dl), free(dx), free(dw), free(db), free(y);
    optim_free(opt);
    return bad;
}
