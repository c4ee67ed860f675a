/* JPEG decoding with libjpeg-turbo's libjpeg API: header check against the pixel cap, DCT-domain
 * downscaling, grayscale/CMYK/YCCK to RGB, the EXIF orientation tag from the APP1 segment, and
 * region decoding: when the caller says which part of the image its preprocessing reads, only
 * those columns are IDCT'd and colour-converted (jpeg_crop_scanline), the rows above are skipped
 * (jpeg_skip_scanlines: entropy decoding only) and decoding stops after the last row needed.
 *
 * Truncation policy: a file whose data ends before the EOI marker is refused (CNN_ERR_DECODE), as
 * PIL does by default (it raises "image file is truncated" unless LOAD_TRUNCATED_IMAGES). A
 * production service should not silently classify an image whose lower part libjpeg made up;
 * the client gets a clear error and can re-upload. Other recoverable libjpeg warnings (extraneous
 * bytes before a marker, a bad Huffman code in otherwise complete data, ...) are tolerated, as PIL
 * tolerates them: the image decodes with the damage libjpeg leaves. */
#include "image_internal.h"

#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

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

/* libjpeg's warning texts (JWRN_* in jerror.h) that are tolerated, as PIL tolerates them: a decode
 * whose first warning is one of these succeeds. Unknown text fails safe. */
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

/* Largest progressive scan count accepted: more is a known CPU-exhaustion attack (TurboJPEG's
 * TJFLAG_LIMITSCANS uses the same bound). */
#define JPEG_MAX_SCANS 500

/* Rows decoded above the region asked for, and columns on each side of it: jpeg_crop_scanline
 * starts the chroma upsampler at the crop edge (it replicates the edge sample there) and a skip
 * restarts it without the rows above, so the outermost decoded pixels of a region may differ from
 * a whole decode. Pixels this far inside are exact (checked against whole decodes by test_image
 * for every subsampling, scale and orientation, and on the 1000 sample photos). */
#define JPEG_REGION_MARGIN 8

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];     /* the fatal error's text */
    char warning[JMSG_LENGTH_MAX]; /* the first warning's text */
    int n_warnings;
} jpeg_errors;


static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_errors *e = (jpeg_errors *)cinfo->err;
    cinfo->err->format_message(cinfo, e->msg);
    longjmp(e->jump, 1);
}

/* Warnings (msg_level -1) are recorded, trace messages dropped; libjpeg never prints. */
static void jpeg_on_message(j_common_ptr cinfo, int msg_level)
{
    jpeg_errors *e = (jpeg_errors *)cinfo->err;
    if (msg_level >= 0)
        return;
    if (e->n_warnings++ == 0)
        cinfo->err->format_message(cinfo, e->warning);
}

static void jpeg_on_progress(j_common_ptr cinfo)
{
    if (cinfo->is_decompressor && ((j_decompress_ptr)cinfo)->input_scan_number > JPEG_MAX_SCANS) {
        jpeg_errors *e = (jpeg_errors *)cinfo->err;
        snprintf(e->msg, sizeof e->msg, "progressive JPEG with more than %d scans", JPEG_MAX_SCANS);
        longjmp(e->jump, 1);
    }
}

static int gcd(int a, int b)
{
    while (b) {
        int t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int jpeg_scaled(int size, int m) /* size * m/8, rounded up, as libjpeg computes it */
{
    return (int)(((int64_t)size * m + 7) / 8);
}

/* libjpeg's M/8 DCT scale (M = 1..8) for min_short_side: the smallest M whose short side still
 * covers it, then the largest M giving the same dimensions (small images: several M coincide). */
static int jpeg_pick_scale(int width, int height, int min_short_side)
{
    if (min_short_side <= 0)
        return 8;
    int m = 8;
    for (int k = 1; k <= 8; k++) {
        int sw = jpeg_scaled(width, k), sh = jpeg_scaled(height, k);
        if ((sw < sh ? sw : sh) >= min_short_side) {
            m = k;
            break;
        }
    }
    while (m < 8 && jpeg_scaled(width, m + 1) == jpeg_scaled(width, m) &&
           jpeg_scaled(height, m + 1) == jpeg_scaled(height, m))
        m++;
    return m;
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

/* Decoder state that must survive a longjmp out of libjpeg. */
typedef struct {
    struct jpeg_decompress_struct cinfo;
    jpeg_errors errors;
    struct jpeg_progress_mgr progress;
    uint8_t *row;   /* one decoded row: above the region, and CMYK rows before conversion */
    uint8_t *rgb;   /* the decoded rows of the region, RGB, as wide as libjpeg's crop */
    size_t stride;  /* bytes per row of rgb */
    int lead;       /* pixels of a row of rgb before the region's first column */
} jpeg_job;

/* Decodes columns [x0, x1) of rows [y0, y1) of the (scaled) output into job->rgb, straight from
 * libjpeg (RGB) or through the CMYK conversion: rows as wide as libjpeg's crop, the region job->lead
 * pixels in. The cinfo is started; on a libjpeg error this longjmps to the caller's setjmp. */
static cnn_status jpeg_decode_region(jpeg_job *job, int is_cmyk, int x0, int x1, int y0, int y1,
                                     char *err, size_t err_bytes)
{
    j_decompress_ptr c = &job->cinfo;
    const int full_w = (int)c->output_width;
    /* Decode from JPEG_REGION_MARGIN outside the region (where the image does not end there). */
    int dx0 = x0 - JPEG_REGION_MARGIN < 0 ? 0 : x0 - JPEG_REGION_MARGIN;
    int dx1 = x1 + JPEG_REGION_MARGIN > full_w ? full_w : x1 + JPEG_REGION_MARGIN;
    int dy0 = y0 - JPEG_REGION_MARGIN < 0 ? 0 : y0 - JPEG_REGION_MARGIN;
    JDIMENSION crop_x = (JDIMENSION)dx0, crop_w = (JDIMENSION)(dx1 - dx0);
    if (crop_w < (JDIMENSION)full_w)
        jpeg_crop_scanline(c, &crop_x, &crop_w); /* widens to iMCU boundaries */
    const int px = c->out_color_components;
    job->lead = x0 - (int)crop_x;
    job->stride = (size_t)crop_w * 3;
    job->row = malloc((size_t)crop_w * (size_t)px);
    job->rgb = malloc(job->stride * (size_t)(y1 - y0));
    if (!job->row || !job->rgb)
        return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory for a %dx%d JPEG region",
                       x1 - x0, y1 - y0);
    if (dy0 > 0)
        jpeg_skip_scanlines(c, (JDIMENSION)dy0);
    while ((int)c->output_scanline < y1) {
        const int y = (int)c->output_scanline;
        uint8_t *dst = y >= y0 ? job->rgb + (size_t)(y - y0) * job->stride : NULL;
        JSAMPROW rows[1] = {dst && !is_cmyk ? dst : job->row};
        if (jpeg_read_scanlines(c, rows, 1) != 1)
            return cnn_err(err, err_bytes, CNN_ERR_DECODE, "corrupt JPEG: no data for row %d", y);
        if (dst && is_cmyk)
            jpeg_cmyk_to_rgb(job->row, dst, (size_t)crop_w);
    }
    return CNN_OK;
}

cnn_status image_decode_jpeg(const uint8_t *data, size_t n_bytes, int64_t max_pixels,
                             int min_short_side, const image_preproc *pps, int n_pps, image *out,
                             int *exif_orientation, char *err, size_t err_bytes)
{
    jpeg_layout layout;
    jpeg_walk(data, n_bytes, &layout);
    if (!layout.has_frame)
        return cnn_err(err, err_bytes, CNN_ERR_DECODE, "corrupt JPEG: no frame header (SOF)");
    /* The cap is checked on the frame header before libjpeg allocates anything (libjpeg itself
     * only refuses dimensions above 65500, and calls a zero height "DNL not supported"). */
    cnn_status st = image_check_dims(layout.frame_width, layout.frame_height, max_pixels,
                                     "JPEG image", err, err_bytes);
    if (st != CNN_OK)
        return st;
    const int orientation = image_exif_orientation(layout.exif, layout.exif_bytes);

    /* Heap, not stack: the state is touched after a longjmp, and volatile locals would be needed. */
    jpeg_job *job = calloc(1, sizeof *job);
    if (!job)
        return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "cannot create a JPEG decompressor");
    j_decompress_ptr c = &job->cinfo;
    c->err = jpeg_std_error(&job->errors.pub);
    job->errors.pub.error_exit = jpeg_on_error;
    job->errors.pub.emit_message = jpeg_on_message;
    if (setjmp(job->errors.jump)) {
        st = cnn_err(err, err_bytes, CNN_ERR_DECODE, "corrupt JPEG: %s", job->errors.msg);
        goto done;
    }
    jpeg_create_decompress(c);
    job->progress.progress_monitor = jpeg_on_progress;
    c->progress = &job->progress;
    jpeg_mem_src(c, data, (unsigned long)n_bytes);
    jpeg_read_header(c, TRUE);
    const int width = (int)c->image_width, height = (int)c->image_height;
    if (width != layout.frame_width || height != layout.frame_height) {
        st = cnn_err(err, err_bytes, CNN_ERR_DECODE, "corrupt JPEG: inconsistent frame headers");
        goto done;
    }
    if (layout.end == JPEG_END_TRUNCATED) {
        st = cnn_err(err, err_bytes, CNN_ERR_DECODE,
                     "truncated JPEG: data ends before the end-of-image marker");
        goto done;
    }

    const int m = jpeg_pick_scale(width, height, min_short_side), g = gcd(m, 8);
    const int is_cmyk = c->jpeg_color_space == JCS_CMYK || c->jpeg_color_space == JCS_YCCK;
    c->scale_num = (unsigned)(m / g);
    c->scale_denom = (unsigned)(8 / g);
    c->out_color_space = is_cmyk ? JCS_CMYK : JCS_RGB;
    /* The accurate integer IDCT and fancy upsampling (libjpeg's defaults) match PIL. */
    c->dct_method = JDCT_ISLOW;
    c->do_fancy_upsampling = TRUE;
    jpeg_start_decompress(c);
    const int sw = (int)c->output_width, sh = (int)c->output_height;

    /* The region the preprocessings read, from the oriented image back to stored coordinates. */
    int rect[4] = {0, 0, sw, sh};
    if (n_pps > 0)
        image_stored_region(sw, sh, orientation, pps, n_pps, rect);
    st = jpeg_decode_region(job, is_cmyk, rect[0], rect[2], rect[1], rect[3], err, err_bytes);
    if (st != CNN_OK)
        goto done;
    /* A region ending above the last row leaves the rest undecoded (skipping to the end reads
     * nothing); a whole decode reads to EOI so that libjpeg reports what it finds there. */
    if ((int)c->output_scanline < sh)
        jpeg_skip_scanlines(c, (JDIMENSION)(sh - (int)c->output_scanline));
    jpeg_finish_decompress(c);
    if (job->errors.n_warnings > 0 && !is_libjpeg_warning(job->errors.warning)) {
        st = cnn_err(err, err_bytes, CNN_ERR_DECODE, "corrupt JPEG: %s", job->errors.warning);
        goto done;
    }

    out->alloc = job->rgb;
    out->rgb = job->rgb + (size_t)job->lead * 3;
    out->stride = job->stride;
    job->rgb = NULL;
    out->width = sw;
    out->height = sh;
    out->roi_x = rect[0];
    out->roi_y = rect[1];
    out->roi_width = rect[2] - rect[0];
    out->roi_height = rect[3] - rect[1];
    out->src_width = width;
    out->src_height = height;
    out->scale_num = (int)c->scale_num;
    out->scale_denom = (int)c->scale_denom;
    *exif_orientation = orientation;
done:
    jpeg_destroy_decompress(c);
    free(job->row);
    free(job->rgb);
    free(job);
    return st;
}
