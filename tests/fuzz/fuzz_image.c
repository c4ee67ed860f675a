/* libFuzzer target: arbitrary bytes through image_decode and image_preprocess, as the server runs
 * them, with a small pixel cap so each input decodes quickly. Both a full-size and a DCT-scaled
 * decode are exercised. Any crash, sanitizer report or leak is a bug; errors are fine. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "../../server/image.h"

#define FUZZ_MAX_PIXELS (1 << 20)
#define FUZZ_CROP 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const image_preproc pp = {
        .resize = 36, .crop = FUZZ_CROP,
        .mean = {0.485f, 0.456f, 0.406f}, .std = {0.229f, 0.224f, 0.225f},
    };
    float tensor[3 * FUZZ_CROP * FUZZ_CROP];
    char err[256];
    for (int min_short = 0; min_short <= pp.resize; min_short += pp.resize) {
        image_decode_opts opts = {.max_pixels = FUZZ_MAX_PIXELS, .min_short_side = min_short};
        image img;
        if (image_decode(data, size, &opts, &img, err, sizeof err) != CNN_OK)
            return 0;
        if (img.width <= 0 || img.height <= 0 || !img.rgb ||
            (int64_t)img.src_width * img.src_height > FUZZ_MAX_PIXELS ||
            img.orientation < 1 || img.orientation > 8)
            abort(); /* a decode that succeeds must describe a sane image */
        image_preprocess(&img, &pp, tensor, err, sizeof err);
        image_free(&img);
    }
    return 0;
}
