/* ImageNet-1k class names in torchvision index order. */
#ifndef CNN_LABELS_H
#define CNN_LABELS_H

#define IMAGENET_N_CLASSES 1000

extern const char *const imagenet_labels[IMAGENET_N_CLASSES];

#endif
