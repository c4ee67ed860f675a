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

#include <limits.h>
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
    size_t sof_at;       /* offset of the frame header's payload (its length field) */
    int n_scans;         /* SOS segments */
    size_t sos_end;      /* offset just after the first SOS segment: its entropy-coded data */
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
            layout->sof_at = pos;
            layout->frame_height = data[pos + 3] << 8 | data[pos + 4];
            layout->frame_width = data[pos + 5] << 8 | data[pos + 6];
        }
        pos += seg_bytes;
        if (marker != JPEG_MARKER_SOS)
            continue;
        if (!seen_sos)
            layout->sos_end = pos;
        seen_sos = 1;
        layout->n_scans++;
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
    int n_bands;    /* > 0: the region was decoded in this many bands, not by cinfo */
} jpeg_job;

/* Row bands decoded at once (image_decode_opts.par). In a baseline JPEG with restart markers the
 * entropy-coded data restarts (byte-aligned, DC predictions reset) every restart_interval MCUs, so
 * a band of MCU rows that starts at a restart boundary can be decoded by a decoder of its own: it
 * gets a stream made of the file's headers, the band's restart intervals (RSTn renumbered from 0)
 * and an EOI, and sees them as the top of the image. Each band's decoder starts enough MCU rows
 * above the band for JPEG_REGION_MARGIN rows of context and the first row of the band below for
 * the chroma upsampler, so the band's rows are the pixels of a sequential decode (tested). Any
 * error or warning in a band sends the whole decode back to the sequential path. */
typedef struct {
    const uint8_t *data;
    const jpeg_layout *layout;
    const size_t *rst;      /* [n_segments - 1] offsets of the RSTn markers ending each interval */
    size_t eoi;             /* offset of the EOI marker after the entropy-coded data */
    int n_segments, interval, mcus_per_row, n_mcu_rows, rows_per_mcu, align;
    int mcu_src_rows;       /* rows of the file per MCU row */
    unsigned scale_num, scale_denom;
    JDIMENSION ask_x, ask_w, crop_x, crop_w; /* jpeg_crop_scanline's request and its answer */
    int crop;               /* 1: the rows are cropped */
    int y0, y1;             /* output rows written to rgb */
    uint8_t *rgb;
    size_t stride;
    int n_bands;
    int first[IMAGE_MAX_BANDS + 1]; /* band b writes MCU rows [first[b], first[b + 1]) */
    int failed[IMAGE_MAX_BANDS];
} jpeg_bands;

typedef struct {
    struct jpeg_decompress_struct cinfo;
    jpeg_errors errors;
    uint8_t *stream, *row;
    size_t stream_bytes;
    int created;   /* cinfo exists (jpeg_destroy_decompress needed) */
} jpeg_band_job;

static int jpeg_band_read(jpeg_bands *b, jpeg_band_job *job, int base, int oy0, int oy1);

/* Offsets of the RSTn markers of the entropy-coded data starting at pos: 1 when there are exactly
 * n_rst, numbered in sequence, followed by EOI (no fill bytes, no other marker), 0 otherwise. */
static int jpeg_find_restarts(const uint8_t *data, size_t n_bytes, size_t pos, size_t *rst, int n_rst,
                              size_t *eoi)
{
    int k = 0;
    for (;;) {
        const uint8_t *ff = pos < n_bytes ? memchr(data + pos, 0xFF, n_bytes - pos) : NULL;
        if (!ff || (size_t)(ff - data) + 1 >= n_bytes)
            return 0;
        pos = (size_t)(ff - data);
        const uint8_t m = data[pos + 1];
        if (m == 0x00) {
            pos += 2;
        } else if (m >= 0xD0 && m <= 0xD7) {
            if (k >= n_rst || m != 0xD0 + (k & 7))
                return 0;
            rst[k++] = pos;
            pos += 2;
        } else {
            *eoi = pos;
            return m == JPEG_MARKER_EOI && k == n_rst;
        }
    }
}

/* Start and end offsets of restart interval i's entropy-coded bytes. */
static size_t band_seg_start(const jpeg_bands *b, int i)
{
    return i == 0 ? b->layout->sos_end : b->rst[i - 1] + 2;
}

static size_t band_seg_end(const jpeg_bands *b, int i)
{
    return i == b->n_segments - 1 ? b->eoi : b->rst[i];
}

static void jpeg_band_decode(jpeg_bands *b, int band, jpeg_band_job *job)
{
    const int rpm = b->rows_per_mcu;
    const int oy0 = b->y0 > b->first[band] * rpm ? b->y0 : b->first[band] * rpm;
    const int oy1 = b->y1 < b->first[band + 1] * rpm ? b->y1 : b->first[band + 1] * rpm;
    if (oy0 >= oy1)
        return;
    /* MCU rows decoded: from JPEG_REGION_MARGIN rows (and one MCU row) above the band's first
     * row to one MCU row below its last, widened to restart boundaries. */
    int ds = (oy0 - JPEG_REGION_MARGIN) / rpm - 1;
    ds = ds < 0 ? 0 : ds / b->align * b->align;
    int de = (oy1 + rpm - 1) / rpm + 1;
    de = (de + b->align - 1) / b->align * b->align;
    if (de > b->n_mcu_rows)
        de = b->n_mcu_rows;
    const int s0 = (int)((int64_t)ds * b->mcus_per_row / b->interval);
    const int s1 = de == b->n_mcu_rows ? b->n_segments
                                       : (int)((int64_t)de * b->mcus_per_row / b->interval);
    const size_t head = b->layout->sos_end, from = band_seg_start(b, s0), to = band_seg_end(b, s1 - 1);
    job->stream = malloc(head + (to - from) + 2);
    job->row = malloc((size_t)b->crop_w * 3);
    if (!job->stream || !job->row) {
        b->failed[band] = 1;
        return;
    }
    memcpy(job->stream, b->data, head);
    memcpy(job->stream + head, b->data + from, to - from);
    for (int i = s0 + 1; i < s1; i++) /* the marker before interval i becomes RST((i - s0 - 1) % 8) */
        job->stream[head + (b->rst[i - 1] - from) + 1] = (uint8_t)(0xD0 + ((i - s0 - 1) & 7));
    /* The band's image starts at MCU row ds: its frame is that much shorter, so that the decoder
     * sees the image's real bottom edge where the last band ends (the upsampler replicates there). */
    const int height = b->layout->frame_height - ds * b->mcu_src_rows;
    job->stream[b->layout->sof_at + 3] = (uint8_t)(height >> 8);
    job->stream[b->layout->sof_at + 4] = (uint8_t)height;
    job->stream[head + (to - from)] = 0xFF;
    job->stream[head + (to - from) + 1] = JPEG_MARKER_EOI;
    job->stream_bytes = head + (to - from) + 2;
    if (!jpeg_band_read(b, job, ds * rpm, oy0, oy1))
        b->failed[band] = 1;
}

/* The band's decoder on job->stream (whose first row is output row base), rows [oy0, oy1) into
 * b->rgb: 1 when done without error or warning. */
static int jpeg_band_read(jpeg_bands *b, jpeg_band_job *job, int base, int oy0, int oy1)
{
    j_decompress_ptr c = &job->cinfo;
    c->err = jpeg_std_error(&job->errors.pub);
    job->errors.pub.error_exit = jpeg_on_error;
    job->errors.pub.emit_message = jpeg_on_message;
    if (setjmp(job->errors.jump))
        return 0;
    jpeg_create_decompress(c);
    job->created = 1;
    jpeg_mem_src(c, job->stream, (unsigned long)job->stream_bytes);
    jpeg_read_header(c, TRUE);
    c->scale_num = b->scale_num;
    c->scale_denom = b->scale_denom;
    c->out_color_space = JCS_RGB;
    c->dct_method = JDCT_ISLOW;
    c->do_fancy_upsampling = TRUE;
    jpeg_start_decompress(c);
    JDIMENSION crop_x = b->ask_x, crop_w = b->ask_w;
    if (b->crop)
        jpeg_crop_scanline(c, &crop_x, &crop_w);
    if (crop_x != b->crop_x || crop_w != b->crop_w || c->out_color_components != 3)
        return 0;
    if (oy0 - JPEG_REGION_MARGIN - base > 0)
        jpeg_skip_scanlines(c, (JDIMENSION)(oy0 - JPEG_REGION_MARGIN - base));
    while ((int)c->output_scanline + base < oy1) {
        const int y = (int)c->output_scanline + base;
        JSAMPROW rows[1] = {y >= oy0 ? b->rgb + (size_t)(y - b->y0) * b->stride : job->row};
        if (jpeg_read_scanlines(c, rows, 1) != 1)
            return 0;
    }
    return job->errors.n_warnings == 0;
}

static void jpeg_band_run(void *arg, int part)
{
    jpeg_bands *b = arg;
    for (int band = part; band < b->n_bands; band += IMAGE_MAX_BANDS) {
        jpeg_band_job *job = calloc(1, sizeof *job);
        if (!job) {
            b->failed[band] = 1;
            continue;
        }
        jpeg_band_decode(b, band, job);
        if (job->created)
            jpeg_destroy_decompress(&job->cinfo);
        free(job->stream);
        free(job->row);
        free(job);
    }
}

/* Rows [y0, y1) of the started decoder c's output, columns as cropped, decoded in bands at once
 * into rgb: 1 when done, 0 when the file does not qualify or a band failed (rgb then holds
 * nothing of use; the caller decodes sequentially). */
static int jpeg_decode_bands(j_decompress_ptr c, const uint8_t *data, size_t n_bytes,
                             const jpeg_layout *layout, const image_parallel *par, JDIMENSION ask_x,
                             JDIMENSION ask_w, JDIMENSION crop_x, JDIMENSION crop_w, int crop, int y0,
                             int y1, uint8_t *rgb, size_t stride)
{
    if (!par || c->progressive_mode || layout->n_scans != 1 || layout->end != JPEG_END_EOI ||
        c->restart_interval == 0 || c->comps_in_scan != c->num_components ||
        c->out_color_space != JCS_RGB || c->MCUs_per_row == 0 ||
        (c->comps_in_scan == 1 && c->max_v_samp_factor != 1) || layout->sof_at + 5 > layout->sos_end)
        return 0; /* (one component: its MCU is one block, so iMCU rows are MCU rows only at 1x1) */
    jpeg_bands b = {.data = data, .layout = layout, .interval = (int)c->restart_interval,
                    .mcus_per_row = (int)c->MCUs_per_row, .n_mcu_rows = (int)c->total_iMCU_rows,
                    .rows_per_mcu = c->max_v_samp_factor * c->min_DCT_scaled_size,
                    .mcu_src_rows = c->max_v_samp_factor * DCTSIZE,
                    .scale_num = c->scale_num, .scale_denom = c->scale_denom, .ask_x = ask_x,
                    .ask_w = ask_w, .crop_x = crop_x, .crop_w = crop_w, .crop = crop, .y0 = y0,
                    .y1 = y1, .rgb = rgb, .stride = stride};
    /* MCU rows starting at a restart boundary: every align-th (interval / gcd(interval, row)). */
    b.align = b.interval / gcd(b.interval, b.mcus_per_row);
    const int64_t n_mcus = (int64_t)b.mcus_per_row * b.n_mcu_rows;
    const int64_t n_segments = (n_mcus + b.interval - 1) / b.interval;
    const int m0 = y0 / b.rows_per_mcu, m1 = (y1 + b.rows_per_mcu - 1) / b.rows_per_mcu;
    int n_bands = par->n_parts < IMAGE_MAX_BANDS ? par->n_parts : IMAGE_MAX_BANDS;
    /* A band should hold a few restart boundaries' worth of rows, or the overlap costs more. */
    const int min_rows = 4 * b.align > 8 ? 4 * b.align : 8;
    if ((m1 - m0) / min_rows < n_bands)
        n_bands = (m1 - m0) / min_rows;
    /* ... and enough entropy-coded data (the region's share of the scan's bytes) to repay a band. */
    if (par->min_band_bytes && b.n_mcu_rows > 0 && n_bytes > layout->sos_end) {
        const uint64_t region_bytes = (uint64_t)(n_bytes - layout->sos_end) * (uint64_t)(m1 - m0) / (uint64_t)b.n_mcu_rows;
        if (region_bytes / par->min_band_bytes < (uint64_t)n_bands)
            n_bands = (int)(region_bytes / par->min_band_bytes);
    }
    if (n_bands < 2 || n_segments > INT_MAX || b.rows_per_mcu <= 0)
        return 0;
    b.n_segments = (int)n_segments;
    b.n_bands = n_bands;
    for (int i = 0; i <= n_bands; i++)
        b.first[i] = m0 + (int)((int64_t)(m1 - m0) * i / n_bands);
    size_t *rst = malloc(((size_t)b.n_segments) * sizeof *rst);
    if (!rst)
        return 0;
    int ok = jpeg_find_restarts(data, n_bytes, layout->sos_end, rst, b.n_segments - 1, &b.eoi);
    b.rst = rst;
    if (ok) {
        par->run(par->ctx, jpeg_band_run, &b);
        for (int i = 0; i < n_bands; i++)
            ok &= !b.failed[i];
    }
    free(rst);
    return ok ? n_bands : 0;
}

/* Decodes columns [x0, x1) of rows [y0, y1) of the (scaled) output into job->rgb, straight from
 * libjpeg (RGB) or through the CMYK conversion: rows as wide as libjpeg's crop, the region job->lead
 * pixels in. The cinfo is started; on a libjpeg error this longjmps to the caller's setjmp. */
static cnn_status jpeg_decode_region(jpeg_job *job, int is_cmyk, int x0, int x1, int y0, int y1,
                                     const uint8_t *data, size_t n_bytes, const jpeg_layout *layout,
                                     const image_parallel *par, char *err, size_t err_bytes)
{
    j_decompress_ptr c = &job->cinfo;
    const int full_w = (int)c->output_width;
    /* Decode from JPEG_REGION_MARGIN outside the region (where the image does not end there). */
    int dx0 = x0 - JPEG_REGION_MARGIN < 0 ? 0 : x0 - JPEG_REGION_MARGIN;
    int dx1 = x1 + JPEG_REGION_MARGIN > full_w ? full_w : x1 + JPEG_REGION_MARGIN;
    int dy0 = y0 - JPEG_REGION_MARGIN < 0 ? 0 : y0 - JPEG_REGION_MARGIN;
    const JDIMENSION ask_x = (JDIMENSION)dx0, ask_w = (JDIMENSION)(dx1 - dx0);
    JDIMENSION crop_x = ask_x, crop_w = ask_w;
    const int crop = crop_w < (JDIMENSION)full_w;
    if (crop)
        jpeg_crop_scanline(c, &crop_x, &crop_w); /* widens to iMCU boundaries */
    const int px = c->out_color_components;
    job->lead = x0 - (int)crop_x;
    job->stride = (size_t)crop_w * 3;
    job->row = malloc((size_t)crop_w * (size_t)px);
    job->rgb = malloc(job->stride * (size_t)(y1 - y0));
    if (!job->row || !job->rgb)
        return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory for a %dx%d JPEG region",
                       x1 - x0, y1 - y0);
    if (!is_cmyk && (job->n_bands = jpeg_decode_bands(c, data, n_bytes, layout, par, ask_x, ask_w,
                                                      crop_x, crop_w, crop, y0, y1, job->rgb,
                                                      job->stride)) > 0)
        return CNN_OK;
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
                             int min_short_side, const image_preproc *pps, int n_pps,
                             const image_parallel *par, image *out, int *exif_orientation, char *err,
                             size_t err_bytes)
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
    st = jpeg_decode_region(job, is_cmyk, rect[0], rect[2], rect[1], rect[3], data, n_bytes, &layout,
                            par, err, err_bytes);
    if (st != CNN_OK)
        goto done;
    if (job->n_bands > 0)
        goto decoded; /* cinfo read nothing past the headers */
    /* A region ending above the last row leaves the rest undecoded (skipping to the end reads
     * nothing); a whole decode reads to EOI so that libjpeg reports what it finds there. */
    if ((int)c->output_scanline < sh)
        jpeg_skip_scanlines(c, (JDIMENSION)(sh - (int)c->output_scanline));
    jpeg_finish_decompress(c);
    if (job->errors.n_warnings > 0 && !is_libjpeg_warning(job->errors.warning)) {
        st = cnn_err(err, err_bytes, CNN_ERR_DECODE, "corrupt JPEG: %s", job->errors.warning);
        goto done;
    }

decoded:
    out->n_bands = job->n_bands > 0 ? job->n_bands : 1;
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
