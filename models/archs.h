/* Internal to models/: one builder per architecture. Each appends the whole network to the builder's
 * graph, starting from a 3 x size x size input, and returns the logits value (or -1 on error, with
 * the builder's sticky status set). The classifier width comes from the weights file. */
#ifndef CNN_ARCHS_H
#define CNN_ARCHS_H

#include "graph.h"

int mobilenet_v3_large_build(graph_builder *b, int size);
int mobilenet_v3_small_build(graph_builder *b, int size);
int shufflenet_v2_x1_0_build(graph_builder *b, int size);
int alexnet_build(graph_builder *b, int size);
int inception_v3_build(graph_builder *b, int size);

/* The builder of arch (name or alias, see model.h) with its torchvision BatchNorm eps and
 * momentum; NULL if unknown. */
typedef struct {
    int (*build)(graph_builder *b, int size);
    float bn_eps, bn_momentum;
} arch_builder;
const arch_builder *model_arch_builder(const char *name);

#endif
