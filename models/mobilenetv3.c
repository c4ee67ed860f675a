/* MobileNetV3 Large and Small exactly as torchvision 0.14 builds them (width 1.0, no dilation). */
#include "archs.h"

typedef struct {
    int c_in, kernel, c_exp, c_out, use_se, hswish, stride;
} bneck_row;

/* torchvision's _mobilenet_v3_conf; the paper's Table I (Large) and Table II (Small). */
static const bneck_row bneck_large[] = {
    {16, 3, 16, 16, 0, 0, 1},   {16, 3, 64, 24, 0, 0, 2},    {24, 3, 72, 24, 0, 0, 1},
    {24, 5, 72, 40, 1, 0, 2},   {40, 5, 120, 40, 1, 0, 1},   {40, 5, 120, 40, 1, 0, 1},
    {40, 3, 240, 80, 0, 1, 2},  {80, 3, 200, 80, 0, 1, 1},   {80, 3, 184, 80, 0, 1, 1},
    {80, 3, 184, 80, 0, 1, 1},  {80, 3, 480, 112, 1, 1, 1},  {112, 3, 672, 112, 1, 1, 1},
    {112, 5, 672, 160, 1, 1, 2}, {160, 5, 960, 160, 1, 1, 1}, {160, 5, 960, 160, 1, 1, 1},
};

static const bneck_row bneck_small[] = {
    {16, 3, 16, 16, 1, 0, 2},  {16, 3, 72, 24, 0, 0, 2},   {24, 3, 88, 24, 0, 0, 1},
    {24, 5, 96, 40, 1, 1, 2},  {40, 5, 240, 40, 1, 1, 1},  {40, 5, 240, 40, 1, 1, 1},
    {40, 5, 120, 48, 1, 1, 1}, {48, 5, 144, 48, 1, 1, 1},  {48, 5, 288, 96, 1, 1, 2},
    {96, 5, 576, 96, 1, 1, 1}, {96, 5, 576, 96, 1, 1, 1},
};

/* torchvision's _make_divisible(v, 8). */
static int make_divisible8(int v)
{
    int n = (v + 4) / 8 * 8;
    if (n < 8) n = 8;
    if (n * 10 < 9 * v) n += 8;
    return n;
}

/* Conv2dNormActivation: conv (no bias) + BatchNorm at "<prefix>.0" / "<prefix>.1". */
static int conv_bn_act(graph_builder *b, int x, int c_out, int k, int stride, int groups, act_kind act,
                       const char *prefix)
{
    char conv[160], bn[160];
    conv_spec s = {c_out, k, k, stride, (k - 1) / 2, (k - 1) / 2, groups, act};
    return gb_conv(b, x, &s, gb_name(conv, sizeof(conv), "%s.0", prefix), gb_name(bn, sizeof(bn), "%s.1", prefix));
}

static int bneck_build(graph_builder *b, int x, const bneck_row *r, int index)
{
    act_kind act = r->hswish ? ACT_HSWISH : ACT_RELU;
    char name[160], fc1[160], fc2[160];
    int j = 0, y = x;
    if (r->c_exp != r->c_in)
        y = conv_bn_act(b, y, r->c_exp, 1, 1, 1, act, gb_name(name, sizeof(name), "features.%d.block.%d", index, j++));
    y = conv_bn_act(b, y, r->c_exp, r->kernel, r->stride, r->c_exp, act,
                    gb_name(name, sizeof(name), "features.%d.block.%d", index, j++));
    if (r->use_se) {
        y = gb_se(b, y, make_divisible8(r->c_exp / 4), gb_name(fc1, sizeof(fc1), "features.%d.block.%d.fc1", index, j),
                  gb_name(fc2, sizeof(fc2), "features.%d.block.%d.fc2", index, j));
        j++;
    }
    y = conv_bn_act(b, y, r->c_out, 1, 1, 1, ACT_NONE, gb_name(name, sizeof(name), "features.%d.block.%d", index, j));
    if (r->stride == 1 && r->c_in == r->c_out) y = gb_add(b, y, x);
    return y;
}

static int mobilenet_v3_build(graph_builder *b, int size, const bneck_row *rows, int n_rows, int last_channel)
{
    char name[160];
    int x = gb_input(b, 3, size, size);
    x = conv_bn_act(b, x, rows[0].c_in, 3, 2, 1, ACT_HSWISH, "features.0");
    for (int i = 0; i < n_rows; i++) x = bneck_build(b, x, &rows[i], i + 1);
    int c_last = 6 * rows[n_rows - 1].c_out;
    x = conv_bn_act(b, x, c_last, 1, 1, 1, ACT_HSWISH, gb_name(name, sizeof(name), "features.%d", n_rows + 1));
    x = gb_adaptive_avg(b, x, 1, 1);
    x = gb_linear(b, x, last_channel, ACT_HSWISH, "classifier.0");
    x = gb_dropout(b, x, 0.2f); /* classifier.2 */
    return gb_linear(b, x, -1, ACT_NONE, "classifier.3");
}

int mobilenet_v3_large_build(graph_builder *b, int size)
{
    return mobilenet_v3_build(b, size, bneck_large, (int)(sizeof(bneck_large) / sizeof(bneck_large[0])), 1280);
}

int mobilenet_v3_small_build(graph_builder *b, int size)
{
    return mobilenet_v3_build(b, size, bneck_small, (int)(sizeof(bneck_small) / sizeof(bneck_small[0])), 1024);
}
