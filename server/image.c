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

/* Where stored pixel (sx, sy) of a w x h image lands once EXIF orientation o is applied as PIL's
 * ImageOps.exif_transpose does. */
static void orient_point(int o, int w, int h, int sx, int sy, int *x, int *y)
{
    switch (o) {
    case 2: *x = w - 1 - sx; *y = sy; break;         /* FLIP_LEFT_RIGHT */
    case 3: *x = w - 1 - sx; *y = h - 1 - sy; break; /* ROTATE_180 */
    case 4: *x = sx; *y = h - 1 - sy; break;         /* FLIP_TOP_BOTTOM */
    case 5: *x = sy; *y = sx; break;                 /* TRANSPOSE */
    case 6: *x = h - 1 - sy; *y = sx; break;         /* ROTATE_270 */
    case 7: *x = h - 1 - sy; *y = w - 1 - sx; break; /* TRANSVERSE */
    case 8: *x = sy; *y = w - 1 - sx; break;         /* ROTATE_90 */
    default: *x = sx; *y = sy; break;
    }
}

/* The rectangle [r[0], r[2]) x [r[1], r[3]) of a w x h image, oriented by o. */
static void orient_rect(int o, int w, int h, const int r[4], int out[4])
{
    int xa, ya, xb, yb;
    orient_point(o, w, h, r[0], r[1], &xa, &ya);
    orient_point(o, w, h, r[2] - 1, r[3] - 1, &xb, &yb);
    out[0] = xa < xb ? xa : xb;
    out[1] = ya < yb ? ya : yb;
    out[2] = (xa > xb ? xa : xb) + 1;
    out[3] = (ya > yb ? ya : yb) + 1;
}

void image_stored_region(int width, int height, int orientation, const image_preproc *pps,
                         int n_pps, int rect[4])
{
    const int swap = orientation >= 5 && orientation <= 8;
    const int ow = swap ? height : width, oh = swap ? width : height;
    int r[4];
    image_preproc_region(ow, oh, pps, n_pps, r);
    /* Back through the inverse orientation (6 and 8 are each other's; the rest self-inverse). */
    const int inverse = orientation == 6 ? 8 : orientation == 8 ? 6 : orientation;
    orient_rect(inverse, ow, oh, r, rect);
}

/* EXIF orientation as PIL's ImageOps.exif_transpose applies it, to the decoded region. Output
 * pixel (x, y) of the region reads region pixel origin + x * step_x + y * step_y. */
static cnn_status image_apply_orientation(image *img, int orientation, char *err, size_t err_bytes)
{
    if (orientation == 1)
        return CNN_OK;
    const ptrdiff_t w = img->roi_width, h = img->roi_height;
    /* Source pixel (x, y) of the region is at index y * pitch + x (rows are stride bytes apart). */
    const ptrdiff_t pitch = img->stride ? (ptrdiff_t)(img->stride / 3) : w;
    ptrdiff_t origin, step_x, step_y;
    int swap = 0;
    const ptrdiff_t last_row = (h - 1) * pitch;
    switch (orientation) {
    case 2: origin = w - 1; step_x = -1; step_y = pitch; break;                /* FLIP_LEFT_RIGHT */
    case 3: origin = last_row + w - 1; step_x = -1; step_y = -pitch; break;   /* ROTATE_180 */
    case 4: origin = last_row; step_x = 1; step_y = -pitch; break;            /* FLIP_TOP_BOTTOM */
    case 5: origin = 0; step_x = pitch; step_y = 1; swap = 1; break;          /* TRANSPOSE */
    case 6: origin = last_row; step_x = -pitch; step_y = 1; swap = 1; break;  /* ROTATE_270 */
    case 7: origin = last_row + w - 1; step_x = -pitch; step_y = -1; swap = 1; break; /* TRANSVERSE */
    case 8: origin = w - 1; step_x = pitch; step_y = -1; swap = 1; break;     /* ROTATE_90 */
    default: assert(!"orientation out of 1..8"); return CNN_ERR_ARG;
    }
    const int out_w = swap ? (int)h : (int)w, out_h = swap ? (int)w : (int)h;
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
    const int stored[4] = {img->roi_x, img->roi_y, img->roi_x + img->roi_width,
                           img->roi_y + img->roi_height};
    int r[4];
    orient_rect(orientation, img->width, img->height, stored, r);
    free(img->alloc ? img->alloc : img->rgb);
    img->rgb = dst;
    img->alloc = NULL;
    img->stride = 0;
    img->roi_x = r[0];
    img->roi_y = r[1];
    img->roi_width = out_w;
    img->roi_height = out_h;
    if (swap) {
        int t = img->width;
        img->width = img->height;
        img->height = t;
    }
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
    int min_short_side = 0, n_pps = 0;
    const image_preproc *pps = NULL;
    const image_parallel *par = NULL;
    if (opts) {
        if (opts->max_pixels < 0 || opts->min_short_side < 0 || opts->n_pps < 0 ||
            (opts->n_pps > 0 && !opts->pps))
            return cnn_err(err, err_bytes, CNN_ERR_ARG,
                           "bad decode option (max_pixels %lld, min_short_side %d, n_pps %d)",
                           (long long)opts->max_pixels, opts->min_short_side, opts->n_pps);
        if (opts->max_pixels > 0)
            max_pixels = opts->max_pixels;
        min_short_side = opts->min_short_side;
        pps = opts->pps;
        n_pps = opts->n_pps;
        par = opts->par && opts->par->run && opts->par->n_parts >= 2 ? opts->par : NULL;
    }
    if (n_bytes == 0)
        return cnn_err(err, err_bytes, CNN_ERR_DECODE, "empty image data");

    image_format fmt = image_detect_format(data, n_bytes);
    int exif_orientation = 1;
    cnn_status st;
    switch (fmt) {
    case IMAGE_FMT_JPEG:
        st = image_decode_jpeg(data, n_bytes, max_pixels, min_short_side, pps, n_pps, par, out,
                               &exif_orientation, err, err_bytes);
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
    if (out->n_bands < 1)
        out->n_bands = 1;
    if (fmt != IMAGE_FMT_JPEG) { /* decoded whole */
        out->roi_x = out->roi_y = 0;
        out->roi_width = out->width;
        out->roi_height = out->height;
    }
    st = image_apply_orientation(out, exif_orientation, err, err_bytes);
    if (st != CNN_OK)
        image_free(out);
    return st;
}

void image_free(image *img)
{
    if (!img)
        return;
    free(img->alloc ? img->alloc : img->rgb);
    memset(img, 0, sizeof *img);
}
