/* RandomResizedCrop + RandomHorizontalFlip (see augment.h). */
#include "augment.h"

#include <math.h>

#include "../core/rng.h"

/* An independent SplitMix64 stream per (seed, epoch, item): each value folded into the state through
 * one generator output, so nearby triples give unrelated streams. */
static void augment_stream(rng *r, uint64_t seed, uint64_t epoch, uint64_t item)
{
    rng_init(r, seed ^ UINT64_C(0x6175676d656e74)); /* "augment" */
    rng_init(r, rng_next_u64(r) ^ epoch);
    rng_init(r, rng_next_u64(r) ^ item);
}

/* Python's round(): to nearest, halves to even (the default rounding mode of rint). */
static int64_t round_half_even(double x) { return (int64_t)rint(x); }

/* Uniform integer in [lo, hi] (torch.randint(lo, hi + 1)). */
static int uniform_int(rng *r, int lo, int hi) { return lo + (int)rng_below(r, (uint64_t)(hi - lo) + 1); }

void augment_sample(int width, int height, uint64_t seed, uint64_t epoch, uint64_t item, augment_params *p)
{
    rng r;
    augment_stream(&r, seed, epoch, item);
    const double area = (double)width * height;
    const double log_lo = log(AUGMENT_RATIO_MIN), log_hi = log(AUGMENT_RATIO_MAX);
    p->fallback = 1;
    for (int a = 0; a < AUGMENT_ATTEMPTS; a++) {
        const double target = area * (AUGMENT_SCALE_MIN + (AUGMENT_SCALE_MAX - AUGMENT_SCALE_MIN) * rng_uniform(&r));
        const double ratio = exp(log_lo + (log_hi - log_lo) * rng_uniform(&r));
        const int64_t w = round_half_even(sqrt(target * ratio)), h = round_half_even(sqrt(target / ratio));
        if (0 < w && w <= width && 0 < h && h <= height) {
            p->box.h = (int)h;
            p->box.w = (int)w;
            p->box.y = uniform_int(&r, 0, height - (int)h);
            p->box.x = uniform_int(&r, 0, width - (int)w);
            p->fallback = 0;
            break;
        }
    }
    if (p->fallback) {
        const double in_ratio = (double)width / height;
        int w = width, h = height;
        if (in_ratio < AUGMENT_RATIO_MIN) h = (int)round_half_even(w / AUGMENT_RATIO_MIN);
        else if (in_ratio > AUGMENT_RATIO_MAX) w = (int)round_half_even(h * AUGMENT_RATIO_MAX);
        p->box = (image_box){.x = (width - w) / 2, .y = (height - h) / 2, .w = w, .h = h};
    }
    p->flip = rng_uniform(&r) < 0.5;
}

cnn_status augment_image(const uint8_t *data, size_t n_bytes, int64_t max_pixels, int size, const float mean[3],
                         const float std[3], uint64_t seed, uint64_t epoch, uint64_t item, float *out, char *err,
                         size_t err_bytes)
{
    const image_decode_opts opts = {.max_pixels = max_pixels, .min_short_side = 0};
    image img;
    cnn_status st = image_decode(data, n_bytes, &opts, &img, err, err_bytes);
    if (st != CNN_OK) return st;
    augment_params p;
    augment_sample(img.width, img.height, seed, epoch, item, &p);
    st = image_resized_crop(&img, &p.box, size, p.flip, mean, std, out, err, err_bytes);
    image_free(&img);
    return st;
}
