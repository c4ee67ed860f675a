/* ShuffleNetV2 x1.0 exactly as torchvision 0.14 builds it. */
#include "archs.h"

/* Stage table (the paper's ShuffleNetV2 column): repeats per stage, output channels per stage. */
static const int stage_repeats[3] = {4, 8, 4};
static const int stage_channels[5] = {24, 116, 232, 464, 1024};

/* conv (no bias) + BN at "<prefix>.<ci>" / "<prefix>.<ci+1>". */
static int conv_bn(graph_builder *b, int x, int c_out, int k, int stride, int groups, act_kind act,
                   const char *prefix, int ci)
{
    char conv[160], bn[160];
    conv_spec s = {c_out, k, k, stride, k / 2, k / 2, groups, act};
    return gb_conv(b, x, &s, gb_name(conv, sizeof(conv), "%s.%d", prefix, ci),
                   gb_name(bn, sizeof(bn), "%s.%d", prefix, ci + 1));
}

/* branch2: 1x1 + ReLU, 3x3 depthwise (stride), 1x1 + ReLU. */
static int branch2_build(graph_builder *b, int x, int c, int stride, const char *prefix)
{
    char name[160];
    gb_name(name, sizeof(name), "%s.branch2", prefix);
    x = conv_bn(b, x, c, 1, 1, 1, ACT_RELU, name, 0);
    x = conv_bn(b, x, c, 3, stride, c, ACT_NONE, name, 3);
    return conv_bn(b, x, c, 1, 1, 1, ACT_RELU, name, 5);
}

static int unit_build(graph_builder *b, int x, int c_out, int stride, const char *prefix)
{
    int half = c_out / 2;
    if (stride == 1) {
        int c_in = gb_channels(b, x);
        int x1 = gb_slice(b, x, 0, c_in / 2);
        int x2 = gb_slice(b, x, c_in / 2, c_in / 2);
        return gb_concat_shuffle(b, x1, branch2_build(b, x2, half, 1, prefix));
    }
    char name[160];
    gb_name(name, sizeof(name), "%s.branch1", prefix);
    int c_in = gb_channels(b, x);
    int y1 = conv_bn(b, x, c_in, 3, stride, c_in, ACT_NONE, name, 0);
    y1 = conv_bn(b, y1, half, 1, 1, 1, ACT_RELU, name, 2);
    return gb_concat_shuffle(b, y1, branch2_build(b, x, half, stride, prefix));
}

int shufflenet_v2_x1_0_build(graph_builder *b, int size)
{
    char name[160];
    int x = gb_input(b, 3, size, size);
    x = conv_bn(b, x, stage_channels[0], 3, 2, 1, ACT_RELU, "conv1", 0);
    x = gb_maxpool(b, x, 3, 2, 1, 0);
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < stage_repeats[s]; i++)
            x = unit_build(b, x, stage_channels[s + 1], i == 0 ? 2 : 1,
                           gb_name(name, sizeof(name), "stage%d.%d", s + 2, i));
    x = conv_bn(b, x, stage_channels[4], 1, 1, 1, ACT_RELU, "conv5", 0);
    x = gb_adaptive_avg(b, x, 1, 1);
    return gb_linear(b, x, -1, ACT_NONE, "fc");
}
