/* Inception v3 exactly as torchvision 0.14 builds it, at inference: transform_input=False, the aux
 * classifier is not part of the graph (its tensors, if present, stay unused; training graphs too:
 * aux_logits=False). Modules are builders. */
#include "archs.h"

/* BasicConv2d: conv (no bias) + BatchNorm(eps 0.001) + ReLU at "<prefix>.conv" / "<prefix>.bn". */
static int basic(graph_builder *b, int x, const char *module, const char *branch, int c_out, int k_h, int k_w,
                 int stride, int pad_h, int pad_w)
{
    char conv[160], bn[160];
    const char *sep = *module ? "." : "";
    conv_spec s = {c_out, k_h, k_w, stride, pad_h, pad_w, 1, ACT_RELU};
    return gb_conv(b, x, &s, gb_name(conv, sizeof(conv), "%s%s%s.conv", module, sep, branch),
                   gb_name(bn, sizeof(bn), "%s%s%s.bn", module, sep, branch));
}

static int inception_a(graph_builder *b, int x, const char *m, int pool_features)
{
    int y[4];
    y[0] = basic(b, x, m, "branch1x1", 64, 1, 1, 1, 0, 0);
    y[1] = basic(b, x, m, "branch5x5_1", 48, 1, 1, 1, 0, 0);
    y[1] = basic(b, y[1], m, "branch5x5_2", 64, 5, 5, 1, 2, 2);
    y[2] = basic(b, x, m, "branch3x3dbl_1", 64, 1, 1, 1, 0, 0);
    y[2] = basic(b, y[2], m, "branch3x3dbl_2", 96, 3, 3, 1, 1, 1);
    y[2] = basic(b, y[2], m, "branch3x3dbl_3", 96, 3, 3, 1, 1, 1);
    y[3] = gb_avgpool(b, x, 3, 1, 1, 1);
    y[3] = basic(b, y[3], m, "branch_pool", pool_features, 1, 1, 1, 0, 0);
    return gb_concat(b, 4, y);
}

static int inception_b(graph_builder *b, int x, const char *m)
{
    int y[3];
    y[0] = basic(b, x, m, "branch3x3", 384, 3, 3, 2, 0, 0);
    y[1] = basic(b, x, m, "branch3x3dbl_1", 64, 1, 1, 1, 0, 0);
    y[1] = basic(b, y[1], m, "branch3x3dbl_2", 96, 3, 3, 1, 1, 1);
    y[1] = basic(b, y[1], m, "branch3x3dbl_3", 96, 3, 3, 2, 0, 0);
    y[2] = gb_maxpool(b, x, 3, 2, 0, 0);
    return gb_concat(b, 3, y);
}

static int inception_c(graph_builder *b, int x, const char *m, int c7)
{
    int y[4];
    y[0] = basic(b, x, m, "branch1x1", 192, 1, 1, 1, 0, 0);
    y[1] = basic(b, x, m, "branch7x7_1", c7, 1, 1, 1, 0, 0);
    y[1] = basic(b, y[1], m, "branch7x7_2", c7, 1, 7, 1, 0, 3);
    y[1] = basic(b, y[1], m, "branch7x7_3", 192, 7, 1, 1, 3, 0);
    y[2] = basic(b, x, m, "branch7x7dbl_1", c7, 1, 1, 1, 0, 0);
    y[2] = basic(b, y[2], m, "branch7x7dbl_2", c7, 7, 1, 1, 3, 0);
    y[2] = basic(b, y[2], m, "branch7x7dbl_3", c7, 1, 7, 1, 0, 3);
    y[2] = basic(b, y[2], m, "branch7x7dbl_4", c7, 7, 1, 1, 3, 0);
    y[2] = basic(b, y[2], m, "branch7x7dbl_5", 192, 1, 7, 1, 0, 3);
    y[3] = gb_avgpool(b, x, 3, 1, 1, 1);
    y[3] = basic(b, y[3], m, "branch_pool", 192, 1, 1, 1, 0, 0);
    return gb_concat(b, 4, y);
}

static int inception_d(graph_builder *b, int x, const char *m)
{
    int y[3];
    y[0] = basic(b, x, m, "branch3x3_1", 192, 1, 1, 1, 0, 0);
    y[0] = basic(b, y[0], m, "branch3x3_2", 320, 3, 3, 2, 0, 0);
    y[1] = basic(b, x, m, "branch7x7x3_1", 192, 1, 1, 1, 0, 0);
    y[1] = basic(b, y[1], m, "branch7x7x3_2", 192, 1, 7, 1, 0, 3);
    y[1] = basic(b, y[1], m, "branch7x7x3_3", 192, 7, 1, 1, 3, 0);
    y[1] = basic(b, y[1], m, "branch7x7x3_4", 192, 3, 3, 2, 0, 0);
    y[2] = gb_maxpool(b, x, 3, 2, 0, 0);
    return gb_concat(b, 3, y);
}

/* cat(1x1, cat(3x3_2a, 3x3_2b), cat(dbl_3a, dbl_3b), pool) flattened into one six-way concat. */
static int inception_e(graph_builder *b, int x, const char *m)
{
    int y[6];
    y[0] = basic(b, x, m, "branch1x1", 320, 1, 1, 1, 0, 0);
    int t = basic(b, x, m, "branch3x3_1", 384, 1, 1, 1, 0, 0);
    y[1] = basic(b, t, m, "branch3x3_2a", 384, 1, 3, 1, 0, 1);
    y[2] = basic(b, t, m, "branch3x3_2b", 384, 3, 1, 1, 1, 0);
    t = basic(b, x, m, "branch3x3dbl_1", 448, 1, 1, 1, 0, 0);
    t = basic(b, t, m, "branch3x3dbl_2", 384, 3, 3, 1, 1, 1);
    y[3] = basic(b, t, m, "branch3x3dbl_3a", 384, 1, 3, 1, 0, 1);
    y[4] = basic(b, t, m, "branch3x3dbl_3b", 384, 3, 1, 1, 1, 0);
    y[5] = gb_avgpool(b, x, 3, 1, 1, 1);
    y[5] = basic(b, y[5], m, "branch_pool", 192, 1, 1, 1, 0, 0);
    return gb_concat(b, 6, y);
}

int inception_v3_build(graph_builder *b, int size)
{
    int x = gb_input(b, 3, size, size);
    x = basic(b, x, "", "Conv2d_1a_3x3", 32, 3, 3, 2, 0, 0);
    x = basic(b, x, "", "Conv2d_2a_3x3", 32, 3, 3, 1, 0, 0);
    x = basic(b, x, "", "Conv2d_2b_3x3", 64, 3, 3, 1, 1, 1);
    x = gb_maxpool(b, x, 3, 2, 0, 0);
    x = basic(b, x, "", "Conv2d_3b_1x1", 80, 1, 1, 1, 0, 0);
    x = basic(b, x, "", "Conv2d_4a_3x3", 192, 3, 3, 1, 0, 0);
    x = gb_maxpool(b, x, 3, 2, 0, 0);
    x = inception_a(b, x, "Mixed_5b", 32);
    x = inception_a(b, x, "Mixed_5c", 64);
    x = inception_a(b, x, "Mixed_5d", 64);
    x = inception_b(b, x, "Mixed_6a");
    x = inception_c(b, x, "Mixed_6b", 128);
    x = inception_c(b, x, "Mixed_6c", 160);
    x = inception_c(b, x, "Mixed_6d", 160);
    x = inception_c(b, x, "Mixed_6e", 192);
    x = inception_d(b, x, "Mixed_7a");
    x = inception_e(b, x, "Mixed_7b");
    x = inception_e(b, x, "Mixed_7c");
    x = gb_adaptive_avg(b, x, 1, 1);
    x = gb_dropout(b, x, 0.5f);
    return gb_linear(b, x, -1, ACT_NONE, "fc");
}
