/* AlexNet exactly as torchvision 0.14 builds it (the "one weird trick" variant). */
#include "archs.h"

typedef struct {
    int index;        /* position in torchvision's `features` Sequential */
    int c_out, k, stride, pad;
    int pool_after;   /* MaxPool2d(3, 2) follows the ReLU */
} alexnet_conv_row;

static const alexnet_conv_row alexnet_convs[] = {
    {0, 64, 11, 4, 2, 1}, {3, 192, 5, 1, 2, 1}, {6, 384, 3, 1, 1, 0}, {8, 256, 3, 1, 1, 0}, {10, 256, 3, 1, 1, 1},
};

/* classifier.{1,4,6}: Linear layers, classifier.{0,3}: Dropout(0.5) before the first two (identity
 * at inference). */
static const struct { int index, n_out; act_kind act; } alexnet_fcs[] = {
    {1, 4096, ACT_RELU}, {4, 4096, ACT_RELU}, {6, -1, ACT_NONE},
};

int alexnet_build(graph_builder *b, int size)
{
    char name[64];
    int x = gb_input(b, 3, size, size);
    for (size_t i = 0; i < sizeof(alexnet_convs) / sizeof(alexnet_convs[0]); i++) {
        const alexnet_conv_row *r = &alexnet_convs[i];
        conv_spec s = {r->c_out, r->k, r->k, r->stride, r->pad, r->pad, 1, ACT_RELU};
        x = gb_conv(b, x, &s, gb_name(name, sizeof(name), "features.%d", r->index), NULL);
        if (r->pool_after) x = gb_maxpool(b, x, 3, 2, 0, 0);
    }
    x = gb_adaptive_avg(b, x, 6, 6);
    for (size_t i = 0; i < sizeof(alexnet_fcs) / sizeof(alexnet_fcs[0]); i++) {
        if (i < 2) x = gb_dropout(b, x, 0.5f);
        x = gb_linear(b, x, alexnet_fcs[i].n_out, alexnet_fcs[i].act,
                      gb_name(name, sizeof(name), "classifier.%d", alexnet_fcs[i].index));
    }
    return x;
}
