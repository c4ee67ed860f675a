/* JPEG decoding with the TurboJPEG API: header check against the pixel cap, DCT-domain downscaling,
 * grayscale/CMYK/YCCK to RGB, and the EXIF orientation tag from the APP1 segment.
 *
 * Truncation policy: a file whose data ends before the EOI marker is refused (CNN_ERR_DECODE), as
 * PIL does by default (it raises "image file is truncated" unless LOAD_TRUNCATED_IMAGES). A
 * production service should not silently classify an image whose lower part libjpeg made up;
 * the client gets a clear error and can re-upload. Other recoverable libjpeg warnings (extraneous
 * bytes before a marker, a bad Huffman code in otherwise complete data, ...) are tolerated, as PIL
 * tolerates them: the image decodes with the damage libjpeg leaves. */
#include "image_internal.h"

#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

enum {
    JPEG_MARKER_SOS = 0xDA,
    JPEG_MARKER_EOI = 0xD9,
    JPEG_MARKER_APP1 = 0xE1,
};

typedef enum { JPEG_END_EOI, JPEG_END_TRUNCATED, JPEG_END_MALFORMED } jpeg_end;

typedef struct {
    const uint8_t *exif; /* payload of the first APP1 "Exif\0\0" segment before the first scan */
    size_t exif_bytes;
    int has_frame;       /* a SOFn segment was found; frame_width/height are its dimensions */
    int frame_width, frame_height;
    jpeg_end end;
} jpeg_layout;

static int is_standalone_marker(uint8_t m)
{
    return m == 0x01 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7); /* TEM, SOI, RSTn */
}

static int is_sof_marker(uint8_t m) /* SOF0..SOF15 minus DHT (C4), JPG (C8), DAC (CC) */
{
    return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
}

/* Walks the marker structure (segments by their lengths, entropy-coded data byte by byte) to find
 * the EXIF segment, the frame size and whether the data reaches EOI. Never reads outside data[0, n_bytes).
 * A structure libjpeg will reject anyway is reported as JPEG_END_MALFORMED and left to it. */
static void jpeg_walk(const uint8_t *data, size_t n_bytes, jpeg_layout *layout)
{
    static const uint8_t exif_id[6] = {'E', 'x', 'i', 'f', 0, 0};
    size_t pos = 2; /* after SOI */
    int seen_sos = 0;
    memset(layout, 0, sizeof *layout);
    layout->end = JPEG_END_TRUNCATED;
    for (;;) {
        while (pos < n_bytes && data[pos] != 0xFF) /* junk between segments; libjpeg warns */
            pos++;
        while (pos < n_bytes && data[pos] == 0xFF) /* fill bytes */
            pos++;
        if (pos >= n_bytes)
            return;
        uint8_t marker = data[pos++];
        if (marker == JPEG_MARKER_EOI) {
            layout->end = JPEG_END_EOI;
            return;
        }
        if (marker == 0x00 || is_standalone_marker(marker))
            continue;
        if (n_bytes - pos < 2)
            return;
        size_t seg_bytes = (size_t)data[pos] << 8 | data[pos + 1];
        if (seg_bytes < 2) {
            layout->end = JPEG_END_MALFORMED;
            return;
        }
        if (seg_bytes > n_bytes - pos)
            return;
        if (marker == JPEG_MARKER_APP1 && !seen_sos && !layout->exif &&
            seg_bytes >= 2 + sizeof exif_id && memcmp(data + pos + 2, exif_id, sizeof exif_id) == 0) {
            layout->exif = data + pos + 2;
            layout->exif_bytes = seg_bytes - 2;
        }
        if (is_sof_marker(marker) && !layout->has_frame && seg_bytes >= 7) {
            layout->has_frame = 1;
            layout->frame_height = data[pos + 3] << 8 | data[pos + 4];
            layout->frame_width = data[pos + 5] << 8 | data[pos + 6];
        }
        pos += seg_bytes;
        if (marker != JPEG_MARKER_SOS)
            continue;
        seen_sos = 1;
        /* Entropy-coded data runs to the next marker other than a stuffed 0xFF00 or an RSTn. */
        for (;;) {
            const uint8_t *ff = memchr(data + pos, 0xFF, n_bytes - pos);
            if (!ff)
                return;
            pos = (size_t)(ff - data);
            if (pos + 1 >= n_bytes)
                return;
            uint8_t next = data[pos + 1];
            if (next == 0x00 || (next >= 0xD0 && next <= 0xD7))
                pos += 2;
            else if (next == 0xFF)
                pos += 1;
            else
                break;
        }
    }
}

/* libjpeg's warning texts (JWRN_* in jerror.h). TurboJPEG reports a fatal error that follows a
 * warning with the warning code too, so a failure is tolerated only when its message (the first
 * warning; a fatal error overwrites it) is one of these. Unknown text fails safe. */
static int is_libjpeg_warning(const char *msg)
{
    static const char *const prefixes[] = {
        "Corrupt JPEG data",
        "Warning: unknown JFIF revision",
        "Inconsistent progression sequence",
        "Invalid SOS parameters for sequential JPEG",
        "Unknown Adobe color transform code",
        "Warning: thumbnail image size does not match data length",
    };
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(msg, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    return 0;
}

/* Smallest supported M/8 scale (M = 1..8) whose short side still covers min_short_side, resolved
 * to the factor tjDecompress2 itself picks for those dimensions (the largest one that fits). */
static tjscalingfactor jpeg_pick_scale(int width, int height, int min_short_side)
{
    tjscalingfactor full = {1, 1}, best = full;
    int n_factors = 0;
    const tjscalingfactor *factors = tjGetScalingFactors(&n_factors);
    if (!factors || min_short_side <= 0)
        return full;
    for (int i = 0; i < n_factors; i++) {
        tjscalingfactor f = factors[i];
        if (f.num > f.denom)
            continue;
        int sw = TJSCALED(width, f), sh = TJSCALED(height, f);
        if ((sw < sh ? sw : sh) < min_short_side)
            continue;
        if ((int64_t)f.num * best.denom < (int64_t)best.num * f.denom)
            best = f;
    }
    int bw = TJSCALED(width, best), bh = TJSCALED(height, best);
    for (int i = 0; i < n_factors; i++) /* the list is in decreasing order */
        if (TJSCALED(width, factors[i]) <= bw && TJSCALED(height, factors[i]) <= bh)
            return factors[i];
    return best;
}

/* PIL's CMYK -> RGB: PIL stores JPEG CMYK inverted ("assume adobe conventions"), then
 * convert("RGB") computes nk - c*nk/255 with nk = 255 - k and a rounded fixed-point division.
 * In terms of the stored (inverted) values s: nk = s_k and c = 255 - s_c. */
static void jpeg_cmyk_to_rgb(const uint8_t *cmyk, uint8_t *rgb, size_t n_pixels)
{
    for (size_t i = 0; i < n_pixels; i++, cmyk += 4, rgb += 3) {
        int nk = cmyk[3];
        for (int c = 0; c < 3; c++) {
            int t = (255 - cmyk[c]) * nk + 128;
            int v = nk - (((t >> 8) + t) >> 8);
            rgb[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
}

cnn_status image_decode_jpeg(const uint8_t *data, size_t n_bytes, int64_t max_pixels,
                             int min_short_side, image *out, int *exif_orientation, char *err,
                             size_t err_bytes)
{
    cnn_status st = CNN_OK;
    uint8_t *pixels = NULL, *rgb = NULL;
    jpeg_layout layout;

    jpeg_walk(data, n_bytes, &layout);
    if (!layout.has_frame)
        return cnn_err(err, err_bytes, CNN_ERR_DECODE, "corrupt JPEG: no frame header (SOF)");
    /* The cap is checked on the frame header before libjpeg allocates anything (libjpeg itself
     * only refuses dimensions above 65500, and calls a zero height "DNL not supported"). */
    st = image_check_dims(layout.frame_width, layout.frame_height, max_pixels, "JPEG image", err,
                          err_bytes);
    if (st != CNN_OK)
        return st;

    tjhandle tj = tjInitDecompress();
    if (!tj)
        return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "cannot create a JPEG decompressor");
    int width = 0, height = 0, subsamp = 0, colorspace = 0;
    if (tjDecompressHeader3(tj, data, (unsigned long)n_bytes, &width, &height, &subsamp,
                            &colorspace) != 0) {
        st = cnn_err(err, err_bytes, CNN_ERR_DECODE, "bad JPEG header: %s", tjGetErrorStr2(tj));
        goto done;
    }
    if (width != layout.frame_width || height != layout.frame_height) {
        st = cnn_err(err, err_bytes, CNN_ERR_DECODE, "corrupt JPEG: inconsistent frame headers");
        goto done;
    }
    if (layout.end == JPEG_END_TRUNCATED) {
        st = cnn_err(err, err_bytes, CNN_ERR_DECODE,
                     "truncated JPEG: data ends before the end-of-image marker");
        goto done;
    }

    tjscalingfactor sf = jpeg_pick_scale(width, height, min_short_side);
    int sw = TJSCALED(width, sf), sh = TJSCALED(height, sf);
    int is_cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
    int pixel_format = is_cmyk ? TJPF_CMYK : TJPF_RGB;
    size_t n_pixels = (size_t)sw * (size_t)sh;
    /* Zeroed, so no stale heap bytes can reach the output even if libjpeg stops early. */
    pixels = calloc(n_pixels, (size_t)tjPixelSize[pixel_format]);
    if (!pixels) {
        st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory for a %dx%d JPEG", sw, sh);
        goto done;
    }
    /* Accurate integer IDCT and fancy upsampling (TurboJPEG's decompression default) match PIL;
     * LIMITSCANS refuses progressive files with more than 500 scans (a known CPU-exhaustion
     * attack). */
    if (tjDecompress2(tj, data, (unsigned long)n_bytes, pixels, sw, 0, sh, pixel_format,
                      TJFLAG_ACCURATEDCT | TJFLAG_LIMITSCANS) != 0) {
        const char *msg = tjGetErrorStr2(tj);
        if (tjGetErrorCode(tj) != TJERR_WARNING || !is_libjpeg_warning(msg)) {
            st = cnn_err(err, err_bytes, CNN_ERR_DECODE, "corrupt JPEG: %s", msg);
            goto done;
        }
    }
    if (is_cmyk) {
        rgb = malloc(n_pixels * 3);
        if (!rgb) {
            st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory for a %dx%d JPEG", sw, sh);
            goto done;
        }
        jpeg_cmyk_to_rgb(pixels, rgb, n_pixels);
        free(pixels);
    } else {
        rgb = pixels;
    }
    pixels = NULL;

    out->rgb = rgb;
    out->width = sw;
    out->height = sh;
    out->src_width = width;
    out->src_height = height;
    out->scale_num = sf.num;
    out->scale_denom = sf.denom;
    *exif_orientation = image_exif_orientation(layout.exif, layout.exif_bytes);
done:
    free(pixels);
    tjDestroy(tj);
    return st;
}
