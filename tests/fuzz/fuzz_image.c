/* libFuzzer target: arbitrary bytes through image_decode and image_preprocess, as the server runs
 * them, with a small pixel cap so each input decodes quickly. Both a full-size and a DCT-scaled
 * decode are exercised, and the server's region decode again in restart-interval bands (parts run
 * one after another), which must give the sequential decode's outcome and pixels. Any crash,
 * sanitizer report or leak is a bug; errors are fine. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/image.h"

#define FUZZ_MAX_PIXELS (1 << 20)
#define FUZZ_CROP 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run_in_turn(void *ctx, void (*fn)(void *, int), void *arg)
{
    for (int i = 0; i < *(const int *)ctx; i++)
        fn(arg, i);
}

/* The banded decode of the server's region: abort unless it matches seq (status and pixels). */
static void check_bands(const uint8_t *data, size_t size, const image_decode_opts *seq_opts, const image *seq)
{
    int n_parts = 3;
    const image_parallel par = {.run = run_in_turn, .ctx = &n_parts, .n_parts = n_parts};
    image_decode_opts opts = *seq_opts;
    opts.par = &par;
    image img;
    char err[256];
    if (image_decode(data, size, &opts, &img, err, sizeof err) != CNN_OK)
        abort(); /* the sequential decode of the same bytes succeeded */
    if (img.width != seq->width || img.height != seq->height || img.roi_x != seq->roi_x ||
        img.roi_y != seq->roi_y || img.roi_width != seq->roi_width || img.roi_height != seq->roi_height)
        abort();
    const size_t sa = img.stride ? img.stride : (size_t)img.roi_width * 3;
    const size_t sb = seq->stride ? seq->stride : (size_t)seq->roi_width * 3;
    for (int y = 0; y < img.roi_height; y++)
        if (memcmp(img.rgb + y * sa, seq->rgb + y * sb, (size_t)img.roi_width * 3) != 0)
            abort();
    image_free(&img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const image_preproc pp = {
        .resize = 36, .crop = FUZZ_CROP,
        .mean = {0.485f, 0.456f, 0.406f}, .std = {0.229f, 0.224f, 0.225f},
    };
    float tensor[3 * FUZZ_CROP * FUZZ_CROP];
    char err[256];
    /* Whole decodes at full size and DCT-scaled, then the server's: DCT-scaled, only the region the
     * preprocessing reads. */
    for (int pass = 0; pass < 3; pass++) {
        image_decode_opts opts = {.max_pixels = FUZZ_MAX_PIXELS, .min_short_side = pass * pp.resize};
        if (pass == 2) {
            opts.pps = &pp;
            opts.n_pps = 1;
        }
        image img;
        if (image_decode(data, size, &opts, &img, err, sizeof err) != CNN_OK)
            return 0;
        if (img.width <= 0 || img.height <= 0 || !img.rgb ||
            (int64_t)img.src_width * img.src_height > FUZZ_MAX_PIXELS ||
            img.orientation < 1 || img.orientation > 8 || img.roi_x < 0 || img.roi_y < 0 ||
            img.roi_width < 1 || img.roi_height < 1 || img.roi_x + img.roi_width > img.width ||
            img.roi_y + img.roi_height > img.height)
            abort(); /* a decode that succeeds must describe a sane image */
        cnn_status st = image_preprocess(&img, &pp, tensor, err, sizeof err);
        if (pass == 2 && st != CNN_OK)
            abort(); /* the region decoded for a preprocessing must serve it */
        if (pass == 2)
            check_bands(data, size, &opts, &img);
        image_free(&img);
    }
    return 0;
}
