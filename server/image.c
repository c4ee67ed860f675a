/* Image intake entry points: format detection by magic bytes, dispatch to the JPEG/PNG/WebP
 * decoders (image_jpeg.c, image_png.c, image_webp.c) and EXIF orientation. Preprocessing lives in
 * image_preproc.c. */
#include "image_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t magic_jpeg[3] = {0xFF, 0xD8, 0xFF};
static const uint8_t magic_png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
static const uint8_t magic_riff[4] = {'R', 'I', 'F', 'F'};
static const uint8_t magic_webp[4] = {'W', 'E', 'B', 'P'}; /* at offset 8, after the RIFF size */

const char *image_format_name(image_format f)
{
    switch (f) {
    case IMAGE_FMT_JPEG: return "jpeg";
    case IMAGE_FMT_PNG: return "png";
    case IMAGE_FMT_WEBP: return "webp";
    case IMAGE_FMT_UNKNOWN: break;
    }
    return "unknown";
}

image_format image_detect_format(const uint8_t *data, size_t n_bytes)
{
    if (!data)
        return IMAGE_FMT_UNKNOWN;
    if (n_bytes >= sizeof magic_jpeg && memcmp(data, magic_jpeg, sizeof magic_jpeg) == 0)
        return IMAGE_FMT_JPEG;
    if (n_bytes >= sizeof magic_png && memcmp(data, magic_png, sizeof magic_png) == 0)
        return IMAGE_FMT_PNG;
    if (n_bytes >= 12 && memcmp(data, magic_riff, 4) == 0 && memcmp(data + 8, magic_webp, 4) == 0)
        return IMAGE_FMT_WEBP;
    return IMAGE_FMT_UNKNOWN;
}

/* True when data (shorter than every magic) is the start of a supported format's magic: such
 * input is a truncated image (CNN_ERR_DECODE), not an unsupported one. */
static int is_magic_prefix(const uint8_t *data, size_t n_bytes)
{
    if (n_bytes < sizeof magic_jpeg && memcmp(data, magic_jpeg, n_bytes) == 0)
        return 1;
    if (n_bytes < sizeof magic_png && memcmp(data, magic_png, n_bytes) == 0)
        return 1;
    if (n_bytes < 12) {
        size_t n_riff = n_bytes < 4 ? n_bytes : 4;
        if (memcmp(data, magic_riff, n_riff) != 0)
            return 0;
        if (n_bytes <= 8)
            return 1;
        return memcmp(data + 8, magic_webp, n_bytes - 8) == 0;
    }
    return 0;
}

cnn_status image_check_dims(int64_t width, int64_t height, int64_t max_pixels, const char *what,
                            char *err, size_t err_bytes)
{
    if (width <= 0 || height <= 0)
        return cnn_err(err, err_bytes, CNN_ERR_TOO_LARGE, "%s has a zero dimension (%lldx%lld)",
                       what, (long long)width, (long long)height);
    /* Division, not width * height: header fields up to 2^32 - 1 would overflow the product. */
    if (width > max_pixels / height)
        return cnn_err(err, err_bytes, CNN_ERR_TOO_LARGE,
                       "%s is %lldx%lld pixels, above the limit of %lld pixels", what,
                       (long long)width, (long long)height, (long long)max_pixels);
    return CNN_OK;
}

/* EXIF orientation as PIL's ImageOps.exif_transpose applies it. Output pixel (x, y) reads source
 * pixel origin + x * step_x + y * step_y (in pixels of the w x h source). */
static cnn_status image_apply_orientation(image *img, int orientation, char *err, size_t err_bytes)
{
    if (orientation == 1)
        return CNN_OK;
    const ptrdiff_t w = img->width, h = img->height;
    ptrdiff_t origin, step_x, step_y;
    int swap = 0;
    switch (orientation) {
    case 2: origin = w - 1; step_x = -1; step_y = w; break;               /* FLIP_LEFT_RIGHT */
    case 3: origin = h * w - 1; step_x = -1; step_y = -w; break;          /* ROTATE_180 */
    case 4: origin = (h - 1) * w; step_x = 1; step_y = -w; break;         /* FLIP_TOP_BOTTOM */
    case 5: origin = 0; step_x = w; step_y = 1; swap = 1; break;          /* TRANSPOSE */
    case 6: origin = (h - 1) * w; step_x = -w; step_y = 1; swap = 1; break; /* ROTATE_270 */
    case 7: origin = h * w - 1; step_x = -w; step_y = -1; swap = 1; break; /* TRANSVERSE */
    case 8: origin = w - 1; step_x = w; step_y = -1; swap = 1; break;     /* ROTATE_90 */
    default: assert(!"orientation out of 1..8"); return CNN_ERR_ARG;
    }
    const int out_w = swap ? img->height : img->width, out_h = swap ? img->width : img->height;
    uint8_t *dst = malloc((size_t)w * (size_t)h * 3);
    if (!dst)
        return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory orienting a %dx%d image",
                       img->width, img->height);
    const uint8_t *src = img->rgb;
    for (ptrdiff_t y = 0; y < out_h; y++) {
        ptrdiff_t s = origin + y * step_y;
        uint8_t *d = dst + (size_t)y * (size_t)out_w * 3;
        for (ptrdiff_t x = 0; x < out_w; x++, s += step_x) {
            d[3 * x + 0] = src[3 * s + 0];
            d[3 * x + 1] = src[3 * s + 1];
            d[3 * x + 2] = src[3 * s + 2];
        }
    }
    free(img->rgb);
    img->rgb = dst;
    img->width = out_w;
    img->height = out_h;
    img->orientation = orientation;
    return CNN_OK;
}

cnn_status image_decode(const uint8_t *data, size_t n_bytes, const image_decode_opts *opts,
                        image *out, char *err, size_t err_bytes)
{
    assert(out);
    memset(out, 0, sizeof *out);
    if (!data && n_bytes > 0)
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "image data is NULL");
    int64_t max_pixels = IMAGE_DEFAULT_MAX_PIXELS;
    int min_short_side = 0;
    if (opts) {
        if (opts->max_pixels < 0 || opts->min_short_side < 0)
            return cnn_err(err, err_bytes, CNN_ERR_ARG,
                           "negative decode option (max_pixels %lld, min_short_side %d)",
                           (long long)opts->max_pixels, opts->min_short_side);
        if (opts->max_pixels > 0)
            max_pixels = opts->max_pixels;
        min_short_side = opts->min_short_side;
    }
    if (n_bytes == 0)
        return cnn_err(err, err_bytes, CNN_ERR_DECODE, "empty image data");

    image_format fmt = image_detect_format(data, n_bytes);
    int exif_orientation = 1;
    cnn_status st;
    switch (fmt) {
    case IMAGE_FMT_JPEG:
        st = image_decode_jpeg(data, n_bytes, max_pixels, min_short_side, out, &exif_orientation,
                               err, err_bytes);
        break;
    case IMAGE_FMT_PNG:
        st = image_decode_png(data, n_bytes, max_pixels, out, &exif_orientation, err, err_bytes);
        break;
    case IMAGE_FMT_WEBP:
        st = image_decode_webp(data, n_bytes, max_pixels, out, &exif_orientation, err, err_bytes);
        break;
    case IMAGE_FMT_UNKNOWN:
    default:
        if (is_magic_prefix(data, n_bytes))
            return cnn_err(err, err_bytes, CNN_ERR_DECODE,
                           "image data truncated to %zu bytes, inside the format signature",
                           n_bytes);
        return cnn_err(err, err_bytes, CNN_ERR_UNSUPPORTED,
                       "unsupported image format (supported: JPEG, PNG, WebP)");
    }
    if (st != CNN_OK) {
        memset(out, 0, sizeof *out);
        return st;
    }
    out->format = fmt;
    out->orientation = 1;
    st = image_apply_orientation(out, exif_orientation, err, err_bytes);
    if (st != CNN_OK)
        image_free(out);
    return st;
}

void image_free(image *img)
{
    if (!img)
        return;
    free(img->rgb);
    memset(img, 0, sizeof *img);
}
