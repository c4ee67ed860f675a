/* WebP decoding with libwebp: WebPGetFeatures for the size (checked against the pixel cap before
 * allocating), then a decode straight into an RGB buffer. Alpha is dropped, as PIL's
 * convert("RGB") does. Animated WebP is refused (CNN_ERR_UNSUPPORTED): the service classifies
 * still images. Orientation comes from the EXIF chunk of an extended (VP8X) file. */
#include "image_internal.h"

#include <stdlib.h>
#include <string.h>
#include <webp/decode.h>

static uint32_t webp_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Orientation from the first "EXIF" chunk of a VP8X file; 1 when there is none. Each step
 * advances by at least one chunk header and stays within the RIFF payload and the buffer. */
static int webp_exif_orientation(const uint8_t *data, size_t n_bytes)
{
    if (n_bytes < 20 || memcmp(data + 12, "VP8X", 4) != 0)
        return 1;
    size_t end = (size_t)webp_le32(data + 4) + 8;
    if (end > n_bytes)
        end = n_bytes;
    size_t pos = 12;
    while (end - pos >= 8) {
        size_t chunk_bytes = webp_le32(data + pos + 4);
        size_t payload = pos + 8;
        if (chunk_bytes > end - payload)
            return 1;
        if (memcmp(data + pos, "EXIF", 4) == 0)
            return image_exif_orientation(data + payload, chunk_bytes);
        pos = payload + chunk_bytes + (chunk_bytes & 1); /* chunks are padded to even sizes */
        if (pos > end)
            return 1;
    }
    return 1;
}

static const char *webp_status_str(VP8StatusCode s)
{
    switch (s) {
    case VP8_STATUS_OK: return "ok";
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "truncated data";
    }
    return "unknown error";
}

static cnn_status webp_status_err(VP8StatusCode s, const char *what, char *err, size_t err_bytes)
{
    cnn_status st = s == VP8_STATUS_OUT_OF_MEMORY ? CNN_ERR_NOMEM : CNN_ERR_DECODE;
    return cnn_err(err, err_bytes, st, "%s: %s", what, webp_status_str(s));
}

cnn_status image_decode_webp(const uint8_t *data, size_t n_bytes, int64_t max_pixels, image *out,
                             int *exif_orientation, char *err, size_t err_bytes)
{
    WebPDecoderConfig config;
    if (!WebPInitDecoderConfig(&config))
        return cnn_err(err, err_bytes, CNN_ERR_DECODE, "libwebp version mismatch");
    VP8StatusCode vs = WebPGetFeatures(data, n_bytes, &config.input);
    if (vs != VP8_STATUS_OK)
        return webp_status_err(vs, "bad WebP header", err, err_bytes);
    if (config.input.has_animation)
        return cnn_err(err, err_bytes, CNN_ERR_UNSUPPORTED,
                       "animated WebP is not supported (send a still image)");
    const int width = config.input.width, height = config.input.height;
    cnn_status st = image_check_dims(width, height, max_pixels, "WebP image", err, err_bytes);
    if (st != CNN_OK)
        return st;

    size_t rgb_bytes = (size_t)width * (size_t)height * 3;
    uint8_t *rgb = malloc(rgb_bytes);
    if (!rgb)
        return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory for a %dx%d WebP", width,
                       height);
    config.output.colorspace = MODE_RGB;
    config.output.is_external_memory = 1;
    config.output.u.RGBA.rgba = rgb;
    config.output.u.RGBA.stride = width * 3;
    config.output.u.RGBA.size = rgb_bytes;
    vs = WebPDecode(data, n_bytes, &config);
    WebPFreeDecBuffer(&config.output); /* external memory: releases nothing of ours */
    if (vs != VP8_STATUS_OK) {
        free(rgb);
        return webp_status_err(vs, "corrupt WebP", err, err_bytes);
    }
    out->rgb = rgb;
    out->width = width;
    out->height = height;
    out->src_width = width;
    out->src_height = height;
    out->scale_num = out->scale_denom = 1;
    *exif_orientation = webp_exif_orientation(data, n_bytes);
    return CNN_OK;
}
