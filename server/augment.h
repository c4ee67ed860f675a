/* Training-time augmentation of `cnnserve train --mode full`: torchvision's
 * RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3/4, 4/3)) followed by RandomHorizontalFlip(0.5),
 * with random numbers from core/rng.h seeded by (seed, epoch, image): the same run gives the same
 * crops whatever the thread count or order of decoding. The box is resampled by the intake's PIL-exact
 * resize (image_resized_crop) from the full-size decode, then normalized with the model's mean/std.
 * Validation images go through the server's own path instead (pipeline_preprocess). */
#ifndef CNN_AUGMENT_H
#define CNN_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "image.h"

#define AUGMENT_SCALE_MIN 0.08
#define AUGMENT_SCALE_MAX 1.0
#define AUGMENT_RATIO_MIN (3.0 / 4.0)
#define AUGMENT_RATIO_MAX (4.0 / 3.0)
#define AUGMENT_ATTEMPTS 10

typedef struct {
    image_box box;
    int flip;        /* 1: mirrored left-right */
    int fallback;    /* 1: no attempt fitted; torchvision's centre-crop fallback was used */
} augment_params;

/* RandomResizedCrop.get_params for a width x height image (10 attempts: area fraction uniform in
 * [0.08, 1], log aspect ratio uniform in [log 3/4, log 4/3], w = round(sqrt(area * ratio)),
 * h = round(sqrt(area / ratio)) with Python's round; a fitting box gets a uniform position; else the
 * centre crop clamped to the ratio range), then the flip coin; from the stream of (seed, epoch, item). */
void augment_sample(int width, int height, uint64_t seed, uint64_t epoch, uint64_t item, augment_params *p);

/* Decodes an image at full size (pixel cap max_pixels, 0: default), samples its crop and flip for
 * (seed, epoch, item) and writes the size x size normalized result (3*size*size floats, NCHW) to
 * out. Errors: image_decode's, CNN_ERR_NOMEM. */
cnn_status augment_image(const uint8_t *data, size_t n_bytes, int64_t max_pixels, int size, const float mean[3],
                         const float std[3], uint64_t seed, uint64_t epoch, uint64_t item, float *out, char *err,
                         size_t err_bytes);

#endif
