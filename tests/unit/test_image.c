/* Unit tests for image intake (server/image*.c): format detection, JPEG DCT scale selection, EXIF
 * orientation, pixel caps, PNG/WebP pixel semantics, resize/crop against a double-precision
 * reference, error statuses. Test images are made in memory (tjCompress2, libpng, libwebp). */
#include <math.h>
#include <png.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <turbojpeg.h>
#include <webp/encode.h>

#include "../../server/image.h"
#include "../../server/image_internal.h"
#include "../../server/image_threads.h"
#include "../test.h"

/* ---- helpers: test images ---- */

typedef struct {
    uint8_t *p;
    size_t n;
} buf;

static void buf_free(buf *b)
{
    free(b->p);
    b->p = NULL;
    b->n = 0;
}

static int buf_append(buf *b, const void *data, size_t n)
{
    uint8_t *p = realloc(b->p, b->n + n);
    if (!p)
        return -1;
    memcpy(p + b->n, data, n);
    b->p = p;
    b->n += n;
    return 0;
}

/* Deterministic smooth-ish RGB pattern with some texture. */
static uint8_t *make_rgb(int w, int h, unsigned seed)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    if (!p)
        return NULL;
    unsigned s = seed * 2654435761u + 1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            s = s * 1103515245u + 12345u;
            int noise = (int)((s >> 16) % 32) - 16;
            int v[3] = {x * 255 / (w > 1 ? w - 1 : 1), y * 255 / (h > 1 ? h - 1 : 1),
                        ((x + y) * 7) % 256};
            for (int c = 0; c < 3; c++) {
                int t = v[c] + noise;
                p[((size_t)y * w + x) * 3 + c] = (uint8_t)(t < 0 ? 0 : t > 255 ? 255 : t);
            }
        }
    return p;
}

/* JPEG via TurboJPEG; pixel_format TJPF_RGB, TJPF_GRAY or TJPF_CMYK. */
static buf make_jpeg(const uint8_t *pixels, int w, int h, int pixel_format, int subsamp,
                     int quality, int flags)
{
    buf b = {0};
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long jpeg_bytes = 0;
    if (tj && tjCompress2(tj, pixels, w, 0, h, pixel_format, &jpeg, &jpeg_bytes, subsamp, quality,
                          flags) == 0)
        buf_append(&b, jpeg, jpeg_bytes);
    tjFree(jpeg);
    if (tj)
        tjDestroy(tj);
    return b;
}

static buf make_jpeg_rgb(int w, int h, unsigned seed, int flags)
{
    uint8_t *rgb = make_rgb(w, h, seed);
    buf b = rgb ? make_jpeg(rgb, w, h, TJPF_RGB, TJSAMP_420, 90, flags) : (buf){0};
    free(rgb);
    return b;
}

static void put16(uint8_t *p, int be, unsigned v)
{
    if (be) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
    else { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
}

static void put32(uint8_t *p, int be, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[be ? i : 3 - i] = (uint8_t)(v >> (24 - 8 * i));
}

/* TIFF block: header + IFD0 with the given (tag, type, count, value) entries. */
typedef struct { unsigned tag, type; uint32_t count, value; } ifd_entry;

static size_t make_tiff(uint8_t *out, int be, const ifd_entry *e, int n_entries,
                        uint32_t next_ifd)
{
    out[0] = out[1] = be ? 'M' : 'I';
    put16(out + 2, be, 42);
    put32(out + 4, be, 8);
    put16(out + 8, be, (unsigned)n_entries);
    for (int i = 0; i < n_entries; i++) {
        uint8_t *p = out + 10 + 12 * i;
        put16(p, be, e[i].tag);
        put16(p + 2, be, e[i].type);
        put32(p + 4, be, e[i].count);
        if (e[i].type == 3 && e[i].count == 1) {
            put16(p + 8, be, e[i].value);
            p[10] = p[11] = 0;
        } else {
            put32(p + 8, be, e[i].value);
        }
    }
    put32(out + 10 + 12 * n_entries, be, next_ifd);
    return 14 + 12 * (size_t)n_entries;
}

/* Copy of jpeg with an APP1 "Exif\0\0" + tiff segment inserted after SOI. */
static buf jpeg_with_exif(const buf *jpeg, const uint8_t *tiff, size_t tiff_bytes)
{
    buf b = {0};
    uint8_t hdr[10] = {0xFF, 0xE1, 0, 0, 'E', 'x', 'i', 'f', 0, 0};
    put16(hdr + 2, 1, (unsigned)(tiff_bytes + 8));
    if (buf_append(&b, jpeg->p, 2) || buf_append(&b, hdr, sizeof hdr) ||
        buf_append(&b, tiff, tiff_bytes) || buf_append(&b, jpeg->p + 2, jpeg->n - 2))
        buf_free(&b);
    return b;
}

static buf jpeg_with_orientation(const buf *jpeg, int orientation, int be)
{
    uint8_t tiff[64];
    ifd_entry e[2] = {{0x010F, 2, 4, 0}, {0x0112, 3, 1, (uint32_t)orientation}};
    size_t n = make_tiff(tiff, be, e, 2, 0);
    return jpeg_with_exif(jpeg, tiff, n);
}

/* CRC-32 as PNG chunks use it (to forge headers). */
static uint32_t png_crc(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

static void png_write_buf(png_structp png, png_bytep data, size_t n)
{
    if (buf_append(png_get_io_ptr(png), data, n) != 0)
        png_error(png, "out of memory");
}

static void png_flush_nop(png_structp png) { (void)png; }

/* PNG from raw samples (rows packed per libpng's layout for color_type/bit_depth; 16-bit samples
 * big-endian). palette/trans optional. */
static buf make_png(const uint8_t *samples, int w, int h, int color_type, int bit_depth,
                    const png_color *palette, int n_palette, const uint8_t *trans, int n_trans)
{
    buf b = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return b;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        buf_free(&b);
        return b;
    }
    png_set_write_fn(png, &b, png_write_buf, png_flush_nop);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, bit_depth, color_type,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (palette)
        png_set_PLTE(png, info, palette, n_palette);
    if (trans)
        png_set_tRNS(png, info, trans, n_trans, NULL);
    png_write_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    for (int y = 0; y < h; y++)
        png_write_row(png, samples + (size_t)y * rowbytes);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return b;
}

static image decode_ok(const buf *b, const image_decode_opts *opts, const char *what)
{
    image img;
    char err[256] = "";
    cnn_status st = image_decode(b->p, b->n, opts, &img, err, sizeof err);
    T_CHECK(st == CNN_OK, "%s: decode failed: %s (%s)", what, cnn_status_str(st), err);
    if (st != CNN_OK)
        memset(&img, 0, sizeof img);
    return img;
}

static cnn_status decode_status(const uint8_t *p, size_t n, const image_decode_opts *opts,
                                char *err, size_t err_bytes)
{
    image img;
    cnn_status st = image_decode(p, n, opts, &img, err, err_bytes);
    if (st == CNN_OK)
        image_free(&img);
    else
        T_CHECK(img.rgb == NULL, "error left a buffer in the image");
    return st;
}

/* ---- format detection ---- */

static void test_magic(void)
{
    test_begin();
    static const uint8_t jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0};
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0};
    static const uint8_t webp[] = {'R', 'I', 'F', 'F', 9, 0, 0, 0, 'W', 'E', 'B', 'P', 0};
    static const uint8_t wave[] = {'R', 'I', 'F', 'F', 9, 0, 0, 0, 'W', 'A', 'V', 'E', 0};
    static const uint8_t gif[] = "GIF89a\x01\x00\x01\x00";
    T_CHECK(image_detect_format(jpeg, sizeof jpeg) == IMAGE_FMT_JPEG, "jpeg");
    T_CHECK(image_detect_format(jpeg, 2) == IMAGE_FMT_UNKNOWN, "2-byte jpeg prefix");
    T_CHECK(image_detect_format(png, sizeof png) == IMAGE_FMT_PNG, "png");
    T_CHECK(image_detect_format(webp, sizeof webp) == IMAGE_FMT_WEBP, "webp");
    T_CHECK(image_detect_format(wave, sizeof wave) == IMAGE_FMT_UNKNOWN, "RIFF WAVE");
    T_CHECK(image_detect_format(gif, sizeof gif) == IMAGE_FMT_UNKNOWN, "gif");
    T_CHECK(image_detect_format(NULL, 0) == IMAGE_FMT_UNKNOWN, "null");
    T_CHECK(strcmp(image_format_name(IMAGE_FMT_JPEG), "jpeg") == 0 &&
                strcmp(image_format_name(IMAGE_FMT_PNG), "png") == 0 &&
                strcmp(image_format_name(IMAGE_FMT_WEBP), "webp") == 0 &&
                strcmp(image_format_name(IMAGE_FMT_UNKNOWN), "unknown") == 0,
            "format names");

    char err[256] = "";
    cnn_status st = decode_status(gif, sizeof gif, NULL, err, sizeof err);
    T_CHECK(st == CNN_ERR_UNSUPPORTED, "gif: %s", cnn_status_str(st));
    T_CHECK(strstr(err, "JPEG") && strstr(err, "PNG") && strstr(err, "WebP"),
            "message lists the supported formats: %s", err);
    st = decode_status(wave, sizeof wave, NULL, err, sizeof err);
    T_CHECK(st == CNN_ERR_UNSUPPORTED, "wave: %s", cnn_status_str(st));
    /* Empty input and a strict prefix of a signature are truncated images, not unknown formats. */
    st = decode_status(jpeg, 0, NULL, err, sizeof err);
    T_CHECK(st == CNN_ERR_DECODE, "empty: %s", cnn_status_str(st));
    st = decode_status(jpeg, 1, NULL, err, sizeof err);
    T_CHECK(st == CNN_ERR_DECODE, "1 byte 0xFF: %s", cnn_status_str(st));
    st = decode_status(png, 5, NULL, err, sizeof err);
    T_CHECK(st == CNN_ERR_DECODE, "png prefix: %s", cnn_status_str(st));
    st = decode_status(webp, 10, NULL, err, sizeof err);
    T_CHECK(st == CNN_ERR_DECODE, "webp prefix: %s", cnn_status_str(st));
    st = decode_status(gif, 1, NULL, err, sizeof err);
    T_CHECK(st == CNN_ERR_UNSUPPORTED, "1 byte 'G': %s", cnn_status_str(st));
    test_end("magic bytes detection and unsupported/empty statuses");
}

/* ---- JPEG ---- */

static void test_dct_scale(void)
{
    test_begin();
    buf jpeg = make_jpeg_rgb(4032, 3024, 1, 0);
    T_CHECK(jpeg.n > 0, "tjCompress2 failed");
    if (jpeg.n > 0) {
        image_decode_opts o256 = {.min_short_side = 256};
        image img = decode_ok(&jpeg, &o256, "4032x3024 @256");
        T_CHECK(img.scale_num == 1 && img.scale_denom == 8 && img.width == 504 &&
                    img.height == 378 && img.src_width == 4032 && img.src_height == 3024,
                "256: scale %d/%d size %dx%d src %dx%d", img.scale_num, img.scale_denom,
                img.width, img.height, img.src_width, img.src_height);
        image_free(&img);

        image_decode_opts o400 = {.min_short_side = 400}; /* 1/8 gives 378 < 400 -> 1/4 */
        img = decode_ok(&jpeg, &o400, "4032x3024 @400");
        T_CHECK(img.scale_num == 1 && img.scale_denom == 4 && img.width == 1008 &&
                    img.height == 756,
                "400: scale %d/%d size %dx%d", img.scale_num, img.scale_denom, img.width,
                img.height);
        image_free(&img);

        image_decode_opts o1200 = {.min_short_side = 1200}; /* 3/8 -> 1134 < 1200 -> 1/2 */
        img = decode_ok(&jpeg, &o1200, "4032x3024 @1200");
        T_CHECK(img.scale_num == 1 && img.scale_denom == 2 && img.width == 2016 &&
                    img.height == 1512,
                "1200: scale %d/%d size %dx%d", img.scale_num, img.scale_denom, img.width,
                img.height);
        image_free(&img);

        image_decode_opts o_big = {.min_short_side = 5000}; /* larger than the image: full size */
        img = decode_ok(&jpeg, &o_big, "4032x3024 @5000");
        T_CHECK(img.scale_num == 1 && img.scale_denom == 1 && img.width == 4032 &&
                    img.height == 3024,
                "5000: scale %d/%d size %dx%d", img.scale_num, img.scale_denom, img.width,
                img.height);
        image_free(&img);

        img = decode_ok(&jpeg, NULL, "4032x3024 default");
        T_CHECK(img.scale_num == 1 && img.scale_denom == 1 && img.width == 4032,
                "default opts decode at full size: %d/%d %d", img.scale_num, img.scale_denom,
                img.width);
        image_free(&img);
    }
    buf_free(&jpeg);

    /* Odd sizes round up (TJSCALED): 1001x333 at 1/8 is 126x42. */
    jpeg = make_jpeg_rgb(1001, 333, 2, 0);
    image_decode_opts o40 = {.min_short_side = 40};
    image img = decode_ok(&jpeg, &o40, "1001x333 @40");
    T_CHECK(img.scale_denom == 8 && img.width == 126 && img.height == 42,
            "1001x333: scale %d/%d size %dx%d", img.scale_num, img.scale_denom, img.width,
            img.height);
    image_free(&img);
    buf_free(&jpeg);
    test_end("JPEG DCT scale selection (4032x3024 -> 1/8 -> 504x378 for 256)");
}

static void test_jpeg_variants(void)
{
    test_begin();
    const int w = 61, h = 47;
    uint8_t *rgb = make_rgb(w, h, 3);
    buf base = make_jpeg(rgb, w, h, TJPF_RGB, TJSAMP_420, 85, 0);
    buf prog = make_jpeg(rgb, w, h, TJPF_RGB, TJSAMP_420, 85, TJFLAG_PROGRESSIVE);
    image a = decode_ok(&base, NULL, "baseline");
    image b = decode_ok(&prog, NULL, "progressive");
    /* Same quantized coefficients, different entropy coding: identical pixels. */
    if (a.rgb && b.rgb)
        T_CHECK(a.width == b.width && a.height == b.height &&
                    memcmp(a.rgb, b.rgb, (size_t)w * h * 3) == 0,
                "progressive decode differs from baseline");
    if (a.rgb) {
        double sum = 0;
        for (size_t i = 0; i < (size_t)w * h * 3; i++)
            sum += abs((int)a.rgb[i] - (int)rgb[i]);
        T_CHECK(sum / ((double)w * h * 3) < 12, "baseline far from source: mean |d| %.1f",
                sum / ((double)w * h * 3));
    }
    image_free(&b);

    /* Grayscale JPEG -> R = G = B. */
    uint8_t *gray = malloc((size_t)w * h);
    for (int i = 0; i < w * h; i++)
        gray[i] = rgb[3 * i + 1];
    buf gj = make_jpeg(gray, w, h, TJPF_GRAY, TJSAMP_GRAY, 95, 0);
    image g = decode_ok(&gj, NULL, "grayscale");
    if (g.rgb) {
        int equal = 1, close = 1;
        for (int i = 0; i < w * h; i++) {
            equal &= g.rgb[3 * i] == g.rgb[3 * i + 1] && g.rgb[3 * i] == g.rgb[3 * i + 2];
            close &= abs((int)g.rgb[3 * i] - gray[i]) <= 24;
        }
        T_CHECK(equal && close, "grayscale: R=G=B %d, close to source %d", equal, close);
    }
    image_free(&g);

    /* CMYK (TurboJPEG writes YCCK with an Adobe marker): flat patches, PIL's formula
     * (inverted storage, r = s_c * s_k / 255 approximately). */
    uint8_t *cmyk = malloc((size_t)16 * 16 * 4);
    for (int i = 0; i < 256; i++) {
        cmyk[4 * i + 0] = 200;
        cmyk[4 * i + 1] = 100;
        cmyk[4 * i + 2] = 30;
        cmyk[4 * i + 3] = 220;
    }
    buf cj = make_jpeg(cmyk, 16, 16, TJPF_CMYK, TJSAMP_444, 100, 0);
    image c = decode_ok(&cj, NULL, "cmyk");
    if (c.rgb) {
        int exp[3] = {200 * 220 / 255, 100 * 220 / 255, 30 * 220 / 255};
        T_CHECK(abs(c.rgb[0] - exp[0]) <= 3 && abs(c.rgb[1] - exp[1]) <= 3 &&
                    abs(c.rgb[2] - exp[2]) <= 3,
                "cmyk -> rgb %d %d %d, expected about %d %d %d", c.rgb[0], c.rgb[1], c.rgb[2],
                exp[0], exp[1], exp[2]);
    }
    image_free(&c);

    /* Recoverable corruption is tolerated (as PIL does): junk bytes before EOI. */
    buf junk = {0};
    static const uint8_t junk_bytes[] = {0x12, 0x34, 0x56};
    buf_append(&junk, base.p, base.n - 2);
    buf_append(&junk, junk_bytes, sizeof junk_bytes);
    buf_append(&junk, base.p + base.n - 2, 2);
    image j = decode_ok(&junk, NULL, "junk before EOI");
    if (j.rgb && a.rgb)
        T_CHECK(memcmp(j.rgb, a.rgb, (size_t)w * h * 3) == 0, "junk changed the pixels");
    image_free(&j);

    /* Truncation (data ending before EOI) is refused, like PIL without LOAD_TRUNCATED_IMAGES. */
    char err[256];
    size_t cuts[] = {base.n - 1, base.n - 2, base.n / 2, 200, 20, 3};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        cnn_status st = decode_status(base.p, cuts[i], NULL, err, sizeof err);
        T_CHECK(st == CNN_ERR_DECODE, "truncated to %zu bytes: %s (%s)", cuts[i],
                cnn_status_str(st), err);
    }
    /* Trailing bytes after EOI are ignored. */
    buf trail = {0};
    buf_append(&trail, base.p, base.n);
    buf_append(&trail, "trailing garbage", 16);
    image t = decode_ok(&trail, NULL, "trailing garbage");
    image_free(&t);

    /* Corrupted DHT (Huffman table class/id byte) -> a clean decode error. */
    buf bad = {0};
    buf_append(&bad, base.p, base.n);
    for (size_t i = 2; i + 4 < bad.n; i++)
        if (bad.p[i] == 0xFF && bad.p[i + 1] == 0xC4) {
            bad.p[i + 4] = 0x7F; /* invalid table class/index */
            break;
        }
    cnn_status st = decode_status(bad.p, bad.n, NULL, err, sizeof err);
    T_CHECK(st == CNN_ERR_DECODE, "corrupt DHT: %s (%s)", cnn_status_str(st), err);

    image_free(&a);
    buf_free(&bad);
    buf_free(&trail);
    buf_free(&junk);
    buf_free(&cj);
    buf_free(&gj);
    buf_free(&base);
    buf_free(&prog);
    free(cmyk);
    free(gray);
    free(rgb);
    test_end("JPEG progressive/grayscale/CMYK, warnings tolerated, truncation and corruption refused");
}

/* ---- EXIF orientation ---- */

/* Expected pixel of PIL's transpose for each orientation, written per PIL's definitions. */
static void expected_src(int o, int w, int h, int x, int y, int *sx, int *sy)
{
    switch (o) {
    case 2: *sx = w - 1 - x; *sy = y; break;         /* FLIP_LEFT_RIGHT */
    case 3: *sx = w - 1 - x; *sy = h - 1 - y; break; /* ROTATE_180 */
    case 4: *sx = x; *sy = h - 1 - y; break;         /* FLIP_TOP_BOTTOM */
    case 5: *sx = y; *sy = x; break;                 /* TRANSPOSE */
    case 6: *sx = y; *sy = h - 1 - x; break;         /* ROTATE_270 (90 degrees clockwise) */
    case 7: *sx = w - 1 - y; *sy = h - 1 - x; break; /* TRANSVERSE */
    case 8: *sx = w - 1 - y; *sy = x; break;         /* ROTATE_90 (counter-clockwise) */
    default: *sx = x; *sy = y; break;
    }
}

static void test_orientation(void)
{
    test_begin();
    const int w = 24, h = 16;
    uint8_t *rgb = make_rgb(w, h, 4);
    buf jpeg = make_jpeg(rgb, w, h, TJPF_RGB, TJSAMP_444, 95, 0);
    image base = decode_ok(&jpeg, NULL, "no exif");
    T_CHECK(base.orientation == 1, "no EXIF: orientation %d", base.orientation);
    for (int be = 0; be <= 1 && base.rgb; be++)
        for (int o = 1; o <= 8; o++) {
            buf ej = jpeg_with_orientation(&jpeg, o, be);
            image img = decode_ok(&ej, NULL, "oriented");
            buf_free(&ej);
            if (!img.rgb)
                continue;
            int swap = o >= 5;
            T_CHECK(img.orientation == o, "%s o=%d: reported %d", be ? "MM" : "II", o,
                    img.orientation);
            T_CHECK(img.width == (swap ? h : w) && img.height == (swap ? w : h) &&
                        img.src_width == w && img.src_height == h,
                    "o=%d: size %dx%d src %dx%d", o, img.width, img.height, img.src_width,
                    img.src_height);
            int mismatches = 0;
            for (int y = 0; y < img.height && img.width == (swap ? h : w); y++)
                for (int x = 0; x < img.width; x++) {
                    int sx, sy;
                    expected_src(o, w, h, x, y, &sx, &sy);
                    mismatches += memcmp(img.rgb + ((size_t)y * img.width + x) * 3,
                                         base.rgb + ((size_t)sy * w + sx) * 3, 3) != 0;
                }
            T_CHECK(mismatches == 0, "%s o=%d: %d pixels differ", be ? "MM" : "II", o,
                    mismatches);
            image_free(&img);
        }
    /* Orientation composes with DCT scaling: a 6 on a 64x48 image at 1/8 gives 6x8. */
    buf big = make_jpeg_rgb(64, 48, 5, 0);
    buf bo = jpeg_with_orientation(&big, 6, 0);
    image_decode_opts o6 = {.min_short_side = 6};
    image img = decode_ok(&bo, &o6, "scaled + oriented");
    T_CHECK(img.scale_denom == 8 && img.width == 6 && img.height == 8 && img.orientation == 6,
            "scaled+rotated: %d/%d %dx%d o=%d", img.scale_num, img.scale_denom, img.width,
            img.height, img.orientation);
    image_free(&img);
    buf_free(&bo);
    buf_free(&big);
    image_free(&base);
    buf_free(&jpeg);
    free(rgb);
    test_end("EXIF orientation 1-8, both byte orders, applied like PIL exif_transpose");
}

static void test_exif_defensive(void)
{
    test_begin();
    uint8_t t[256];
    ifd_entry e6 = {0x0112, 3, 1, 6};
    size_t n = make_tiff(t, 0, &e6, 1, 0);
    T_CHECK(image_exif_orientation(t, n) == 6, "plain");
    /* Optional "Exif\0\0" prefix. */
    uint8_t pre[262] = {'E', 'x', 'i', 'f', 0, 0};
    memcpy(pre + 6, t, n);
    T_CHECK(image_exif_orientation(pre, n + 6) == 6, "with Exif prefix");
    /* Every truncation of the block is handled without reading past it. */
    for (size_t cut = 0; cut < n; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size, so ASan sees any overread */
        memcpy(copy, t, cut);
        int o = image_exif_orientation(copy, cut);
        T_CHECK(o == (cut >= 22 ? 6 : 1), "cut %zu: %d", cut, o);
        free(copy);
    }
    /* Next-IFD pointer looping to IFD0 itself: only IFD0 is read, no loop. */
    n = make_tiff(t, 1, &e6, 1, 8);
    T_CHECK(image_exif_orientation(t, n) == 6, "self-loop next IFD");
    /* IFD0 offset out of range, or pointing into the header. */
    n = make_tiff(t, 0, &e6, 1, 0);
    put32(t + 4, 0, 0xFFFFFFF0u);
    T_CHECK(image_exif_orientation(t, n) == 1, "ifd0 offset out of range");
    put32(t + 4, 0, 2);
    T_CHECK(image_exif_orientation(t, n) == 1, "ifd0 offset inside the header");
    /* Entry count claiming 65535 entries: only those inside the block are read. */
    n = make_tiff(t, 0, &e6, 1, 0);
    put16(t + 8, 0, 0xFFFF);
    T_CHECK(image_exif_orientation(t, n) == 6, "huge entry count");
    /* Out-of-range values, a wrong type, a multi-valued tag, bad byte order / magic. */
    ifd_entry bad[] = {{0x0112, 3, 1, 9}, {0x0112, 3, 1, 0}, {0x0112, 2, 1, 6}, {0x0112, 3, 2, 6}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = make_tiff(t, 0, &bad[i], 1, 0);
        T_CHECK(image_exif_orientation(t, n) == 1, "bad entry %zu", i);
    }
    ifd_entry lng = {0x0112, 4, 1, 8};
    n = make_tiff(t, 1, &lng, 1, 0);
    T_CHECK(image_exif_orientation(t, n) == 8, "LONG-typed orientation");
    n = make_tiff(t, 0, &e6, 1, 0);
    t[0] = 'X';
    T_CHECK(image_exif_orientation(t, n) == 1, "bad byte order");
    n = make_tiff(t, 0, &e6, 1, 0);
    t[2] = 43;
    T_CHECK(image_exif_orientation(t, n) == 1, "bad magic");
    T_CHECK(image_exif_orientation(NULL, 0) == 1, "null");

    /* In a JPEG, a broken EXIF block never fails the decode. */
    buf jpeg = make_jpeg_rgb(16, 16, 6, 0);
    n = make_tiff(t, 0, &e6, 1, 0);
    put32(t + 4, 0, 0x7FFFFFFFu);
    buf ej = jpeg_with_exif(&jpeg, t, n);
    image img = decode_ok(&ej, NULL, "broken exif");
    T_CHECK(img.orientation == 1 && img.width == 16, "broken exif: o=%d", img.orientation);
    image_free(&img);
    buf_free(&ej);
    buf_free(&jpeg);
    test_end("EXIF parser: bounds, loops, counts, bad values, broken blocks ignored");
}

/* ---- pixel caps ---- */

static void test_pixel_cap(void)
{
    test_begin();
    char err[256];
    buf jpeg = make_jpeg_rgb(64, 64, 7, 0);
    image_decode_opts cap_lo = {.max_pixels = 64 * 64 - 1}, cap_eq = {.max_pixels = 64 * 64};
    cnn_status st = decode_status(jpeg.p, jpeg.n, &cap_lo, err, sizeof err);
    T_CHECK(st == CNN_ERR_TOO_LARGE, "64x64 with cap 4095: %s", cnn_status_str(st));
    st = decode_status(jpeg.p, jpeg.n, &cap_eq, err, sizeof err);
    T_CHECK(st == CNN_OK, "64x64 with cap 4096: %s (%s)", cnn_status_str(st), err);

    /* A header claiming 65535x65535 with the data of a 64x64 image: refused from the header
     * alone (a decoder that allocated first would report truncation or run out of memory). */
    buf huge = {0};
    buf_append(&huge, jpeg.p, jpeg.n);
    for (size_t i = 2; i + 8 < huge.n; i++)
        if (huge.p[i] == 0xFF && huge.p[i + 1] == 0xC0) {
            put16(huge.p + i + 5, 1, 65535);
            put16(huge.p + i + 7, 1, 65535);
            break;
        }
    st = decode_status(huge.p, huge.n, NULL, err, sizeof err);
    T_CHECK(st == CNN_ERR_TOO_LARGE, "jpeg 65535x65535: %s (%s)", cnn_status_str(st), err);
    /* ... also when the file is cut right after the header. */
    st = decode_status(huge.p, huge.n / 2, NULL, err, sizeof err);
    T_CHECK(st == CNN_ERR_TOO_LARGE, "truncated jpeg 65535x65535: %s", cnn_status_str(st));
    /* Zero height in SOF. */
    for (size_t i = 2; i + 8 < huge.n; i++)
        if (huge.p[i] == 0xFF && huge.p[i + 1] == 0xC0) {
            put16(huge.p + i + 5, 1, 0);
            break;
        }
    st = decode_status(huge.p, huge.n, NULL, err, sizeof err);
    T_CHECK(st == CNN_ERR_TOO_LARGE, "jpeg zero height: %s (%s)", cnn_status_str(st), err);

    /* PNG: signature + IHDR claiming 65535x65535, then IEND and no image data at all. */
    uint8_t gray[64];
    memset(gray, 0x80, sizeof gray);
    buf png = make_png(gray, 8, 8, PNG_COLOR_TYPE_GRAY, 8, NULL, 0, NULL, 0);
    T_CHECK(png.n > 33, "png writer");
    if (png.n > 33) {
        buf hp = {0};
        static const uint8_t iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};
        buf_append(&hp, png.p, 33); /* signature + IHDR chunk */
        buf_append(&hp, iend, sizeof iend);
        put32(hp.p + 16, 1, 65535);
        put32(hp.p + 20, 1, 65535);
        uint32_t crc = png_crc(hp.p + 12, 17);
        put32(hp.p + 29, 1, crc);
        st = decode_status(hp.p, hp.n, NULL, err, sizeof err);
        T_CHECK(st == CNN_ERR_TOO_LARGE, "png 65535x65535: %s (%s)", cnn_status_str(st), err);
        /* Dimensions whose product overflows int64 (a fuzzer find). */
        put32(hp.p + 16, 1, 0xEFDEF31Fu);
        put32(hp.p + 20, 1, 0xD43E6027u);
        put32(hp.p + 29, 1, png_crc(hp.p + 12, 17));
        st = decode_status(hp.p, hp.n, NULL, err, sizeof err);
        T_CHECK(st == CNN_ERR_TOO_LARGE, "png 4G x 4G: %s (%s)", cnn_status_str(st), err);
        put32(hp.p + 16, 1, 0);
        put32(hp.p + 29, 1, png_crc(hp.p + 12, 17));
        st = decode_status(hp.p, hp.n, NULL, err, sizeof err);
        T_CHECK(st == CNN_ERR_TOO_LARGE, "png zero width: %s (%s)", cnn_status_str(st), err);
        buf_free(&hp);
        image_decode_opts cap = {.max_pixels = 63};
        st = decode_status(png.p, png.n, &cap, err, sizeof err);
        T_CHECK(st == CNN_ERR_TOO_LARGE, "png 8x8 cap 63: %s", cnn_status_str(st));
    }

    /* WebP: lossless 40x30 with a cap below its size. */
    uint8_t *rgb = make_rgb(40, 30, 8);
    uint8_t *webp = NULL;
    size_t webp_bytes = WebPEncodeLosslessRGB(rgb, 40, 30, 40 * 3, &webp);
    image_decode_opts cap_w = {.max_pixels = 40 * 30 - 1};
    st = decode_status(webp, webp_bytes, &cap_w, err, sizeof err);
    T_CHECK(st == CNN_ERR_TOO_LARGE, "webp cap: %s", cnn_status_str(st));
    WebPFree(webp);
    free(rgb);

    /* Negative options and NULL data are caller errors. */
    image_decode_opts neg = {.max_pixels = -1};
    st = decode_status(jpeg.p, jpeg.n, &neg, err, sizeof err);
    T_CHECK(st == CNN_ERR_ARG, "negative max_pixels: %s", cnn_status_str(st));
    st = decode_status(NULL, 10, NULL, err, sizeof err);
    T_CHECK(st == CNN_ERR_ARG, "NULL data: %s", cnn_status_str(st));
    buf_free(&png);
    buf_free(&huge);
    buf_free(&jpeg);
    test_end("pixel cap and zero dimensions refused from the header, before allocation");
}

/* ---- PNG and WebP pixel semantics ---- */

static void test_png_webp(void)
{
    test_begin();
    char err[256];
    /* RGBA 8-bit: alpha dropped (not composited). */
    uint8_t rgba[4 * 4 * 4];
    for (int i = 0; i < 16; i++) {
        rgba[4 * i] = (uint8_t)(i * 16);
        rgba[4 * i + 1] = (uint8_t)(255 - i * 16);
        rgba[4 * i + 2] = 7;
        rgba[4 * i + 3] = (uint8_t)(i * 17 % 256);
    }
    buf p = make_png(rgba, 4, 4, PNG_COLOR_TYPE_RGBA, 8, NULL, 0, NULL, 0);
    image img = decode_ok(&p, NULL, "png rgba");
    if (img.rgb) {
        int bad = 0;
        for (int i = 0; i < 16; i++)
            bad += memcmp(img.rgb + 3 * i, rgba + 4 * i, 3) != 0;
        T_CHECK(bad == 0 && img.format == IMAGE_FMT_PNG, "rgba: %d pixels differ", bad);
    }
    image_free(&img);
    buf_free(&p);

    /* 16-bit RGB: high byte. 16-bit gray: high byte (deliberately not PIL's clip to 255). */
    uint8_t rgb16[2 * 2 * 6], g16[2 * 2 * 2];
    for (int i = 0; i < 12; i++) {
        rgb16[2 * i] = (uint8_t)(i * 20);
        rgb16[2 * i + 1] = 0xFF;
    }
    for (int i = 0; i < 4; i++) {
        g16[2 * i] = (uint8_t)(60 * i);
        g16[2 * i + 1] = 0x80;
    }
    p = make_png(rgb16, 2, 2, PNG_COLOR_TYPE_RGB, 16, NULL, 0, NULL, 0);
    img = decode_ok(&p, NULL, "png rgb16");
    if (img.rgb)
        for (int i = 0; i < 12; i++)
            T_CHECK(img.rgb[i] == i * 20, "rgb16 sample %d: %d", i, img.rgb[i]);
    image_free(&img);
    buf_free(&p);
    p = make_png(g16, 2, 2, PNG_COLOR_TYPE_GRAY, 16, NULL, 0, NULL, 0);
    img = decode_ok(&p, NULL, "png gray16");
    if (img.rgb)
        for (int i = 0; i < 4; i++)
            T_CHECK(img.rgb[3 * i] == 60 * i && img.rgb[3 * i + 1] == 60 * i &&
                        img.rgb[3 * i + 2] == 60 * i,
                    "gray16 pixel %d: %d", i, img.rgb[3 * i]);
    image_free(&img);
    buf_free(&p);

    /* Palette with tRNS: palette colors, transparency ignored. 2-bit gray: levels * 85. */
    png_color pal[3] = {{10, 20, 30}, {40, 50, 60}, {70, 80, 90}};
    uint8_t trans[3] = {0, 128, 255};
    uint8_t idx[4] = {0, 1, 2, 1};
    p = make_png(idx, 4, 1, PNG_COLOR_TYPE_PALETTE, 8, pal, 3, trans, 3);
    img = decode_ok(&p, NULL, "png palette");
    if (img.rgb)
        for (int i = 0; i < 4; i++)
            T_CHECK(img.rgb[3 * i] == pal[idx[i]].red && img.rgb[3 * i + 1] == pal[idx[i]].green &&
                        img.rgb[3 * i + 2] == pal[idx[i]].blue,
                    "palette pixel %d", i);
    image_free(&img);
    buf_free(&p);
    uint8_t g2 = 0x1B; /* 00 01 10 11 */
    p = make_png(&g2, 4, 1, PNG_COLOR_TYPE_GRAY, 2, NULL, 0, NULL, 0);
    img = decode_ok(&p, NULL, "png gray2");
    if (img.rgb)
        for (int i = 0; i < 4; i++)
            T_CHECK(img.rgb[3 * i] == 85 * i, "gray2 pixel %d: %d", i, img.rgb[3 * i]);
    image_free(&img);

    /* Truncated before the end of the image data -> decode error; only IEND missing -> decoded,
     * as PIL does (it stops reading once the image data is complete). */
    size_t idat_end = 0;
    for (size_t i = 8; i + 8 <= p.n; i += 12 + (size_t)(p.p[i] << 24 | p.p[i + 1] << 16 |
                                                        p.p[i + 2] << 8 | p.p[i + 3]))
        if (memcmp(p.p + i + 4, "IDAT", 4) == 0)
            idat_end = i + 8 + (size_t)(p.p[i] << 24 | p.p[i + 1] << 16 | p.p[i + 2] << 8 | p.p[i + 3]);
    T_CHECK(idat_end > 40, "no IDAT found");
    for (size_t cut = 8; cut < idat_end; cut++) {
        cnn_status st = decode_status(p.p, cut, NULL, err, sizeof err);
        T_CHECK(st == CNN_ERR_DECODE, "png cut at %zu: %s", cut, cnn_status_str(st));
    }
    cnn_status st = decode_status(p.p, p.n - 12, NULL, err, sizeof err);
    T_CHECK(st == CNN_OK, "png without IEND: %s (%s)", cnn_status_str(st), err);
    /* A flipped bit in the image data is caught by the CRC / zlib checks. */
    p.p[idat_end - 3] ^= 0x10;
    st = decode_status(p.p, p.n, NULL, err, sizeof err);
    T_CHECK(st == CNN_ERR_DECODE, "png corrupt IDAT: %s", cnn_status_str(st));
    buf_free(&p);

    /* WebP lossless: exact pixels; truncated: decode error. */
    uint8_t *rgb = make_rgb(13, 9, 9);
    uint8_t *webp = NULL;
    size_t webp_bytes = WebPEncodeLosslessRGB(rgb, 13, 9, 13 * 3, &webp);
    buf wb = {0};
    buf_append(&wb, webp, webp_bytes);
    img = decode_ok(&wb, NULL, "webp");
    if (img.rgb)
        T_CHECK(img.format == IMAGE_FMT_WEBP && img.width == 13 && img.height == 9 &&
                    memcmp(img.rgb, rgb, 13 * 9 * 3) == 0,
                "webp lossless pixels differ");
    image_free(&img);
    st = decode_status(wb.p, wb.n - 5, NULL, err, sizeof err);
    T_CHECK(st == CNN_ERR_DECODE, "truncated webp: %s", cnn_status_str(st));
    st = decode_status(wb.p, 20, NULL, err, sizeof err);
    T_CHECK(st == CNN_ERR_DECODE, "webp header only: %s", cnn_status_str(st));
    buf_free(&wb);
    WebPFree(webp);
    free(rgb);
    test_end("PNG alpha/16-bit/palette/low-depth semantics, WebP decode, truncation refused");
}

/* ---- preprocessing ---- */

/* Double-precision separable triangle filter (PIL's antialiased bilinear without the fixed-point
 * and intermediate rounding): value of resized pixel (x, y), channel c, in 0..255. */
static double naive_axis_weight(int in_size, int out_size, int o, int i)
{
    double scale = (double)in_size / out_size, fs = scale < 1 ? 1 : scale;
    double center = (o + 0.5) * scale;
    double lo = center - fs, hi = center + fs, sum = 0, wi = 0;
    for (int j = (int)floor(lo) - 1; j <= (int)ceil(hi) + 1; j++) {
        if (j < 0 || j >= in_size)
            continue;
        double d = fabs((j + 0.5 - center) / fs);
        double wj = d < 1 ? 1 - d : 0;
        sum += wj;
        if (j == i)
            wi = wj;
    }
    return sum > 0 ? wi / sum : 0;
}

static double naive_resized(const uint8_t *rgb, int w, int h, int ow, int oh, int x, int y, int c)
{
    double acc = 0;
    for (int sy = 0; sy < h; sy++) {
        double wy = naive_axis_weight(h, oh, y, sy);
        if (wy == 0)
            continue;
        for (int sx = 0; sx < w; sx++) {
            double wx = naive_axis_weight(w, ow, x, sx);
            if (wx != 0)
                acc += wy * wx * rgb[((size_t)sy * w + sx) * 3 + c];
        }
    }
    return acc;
}

static const image_preproc pp_imagenet = {
    .resize = 0, .crop = 0, .mean = {0.485f, 0.456f, 0.406f}, .std = {0.229f, 0.224f, 0.225f}};

/* Compares image_preprocess with the naive reference; returns the max error in 8-bit levels. */
static double preprocess_vs_naive(int w, int h, int resize, int crop, unsigned seed)
{
    image img = {.rgb = make_rgb(w, h, seed), .width = w, .height = h};
    image_preproc pp = pp_imagenet;
    pp.resize = resize;
    pp.crop = crop;
    float *out = malloc(sizeof *out * 3 * crop * crop);
    char err[256];
    double worst = 1e9;
    if (img.rgb && out && image_preprocess(&img, &pp, out, err, sizeof err) == CNN_OK) {
        /* Output size and crop offsets computed independently here. */
        int ow = w <= h ? resize : (int)((double)resize * w / h);
        int oh = w <= h ? (int)((double)resize * h / w) : resize;
        int x0 = (int)nearbyint((ow - crop) / 2.0), y0 = (int)nearbyint((oh - crop) / 2.0);
        worst = 0;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < crop; y++)
                for (int x = 0; x < crop; x++) {
                    double ref = naive_resized(img.rgb, w, h, ow, oh, x0 + x, y0 + y, c);
                    double got = ((double)out[((size_t)c * crop + y) * crop + x] * pp.std[c] +
                                  pp.mean[c]) * 255.0;
                    double d = fabs(got - ref);
                    if (d > worst)
                        worst = d;
                }
    }
    free(out);
    free(img.rgb);
    return worst;
}

static void test_resize_reference(void)
{
    test_begin();
    /* Downscale (landscape, non-integer factor), upscale (portrait), mild downscale. nearbyint
     * rounds half to even like Python's round(). */
    struct { int w, h, resize, crop; } cases[] = {
        {97, 61, 40, 32}, {23, 37, 60, 50}, {120, 90, 81, 77}, {301, 200, 64, 56}, {33, 33, 33, 30},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double worst = preprocess_vs_naive(cases[i].w, cases[i].h, cases[i].resize, cases[i].crop,
                                           (unsigned)i + 20);
        /* Two uint8 roundings (after each pass) bound the error by one level. */
        T_CHECK(worst <= 1.0 + 1e-3, "%dx%d resize %d crop %d: max error %.4f levels",
                cases[i].w, cases[i].h, cases[i].resize, cases[i].crop, worst);
    }
    test_end("resize+crop vs double-precision triangle-filter reference (<= 1 level)");
}

static void test_crop_rules(void)
{
    test_begin();
    /* 10x10 resized to 10 is the identity, so the crop offsets are visible directly. Python's
     * round((10 - 7) / 2) = round(1.5) = 2, round(2.5) = 2, round(3.5) = 4. */
    const int n = 10;
    image img = {.rgb = make_rgb(n, n, 30), .width = n, .height = n};
    char err[256];
    struct { int crop, off; } cases[] = {{7, 2}, {5, 2}, {3, 4}, {10, 0}, {12, -1}, {13, -1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        image_preproc pp = pp_imagenet;
        pp.resize = n;
        pp.crop = cases[i].crop;
        int crop = cases[i].crop;
        float *out = malloc(sizeof *out * 3 * crop * crop);
        T_CHECK(image_preprocess(&img, &pp, out, err, sizeof err) == CNN_OK, "crop %d: %s", crop,
                err);
        int bad = 0;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < crop; y++)
                for (int x = 0; x < crop; x++) {
                    int sx = x + cases[i].off, sy = y + cases[i].off;
                    int v = sx >= 0 && sx < n && sy >= 0 && sy < n
                                ? img.rgb[((size_t)sy * n + sx) * 3 + c]
                                : 0; /* torchvision pads with 0 */
                    float exp = ((float)v / 255.0f - pp.mean[c]) / pp.std[c];
                    bad += out[((size_t)c * crop + y) * crop + x] != exp;
                }
        T_CHECK(bad == 0, "crop %d (offset %d): %d values differ", crop, cases[i].off, bad);
        free(out);
    }
    /* Output size rule: 300x200 -> short side 256 -> int(256 * 300 / 200) = 384 wide; a center
     * crop of 384 then covers the whole width: compare with resize to exactly 384x256. */
    free(img.rgb);
    image wide = {.rgb = malloc(300 * 200 * 3), .width = 300, .height = 200};
    memset(wide.rgb, 100, 300 * 200 * 3); /* flat: resizing keeps exactly 100 */
    image_preproc pp = pp_imagenet;
    pp.resize = 256;
    pp.crop = 384;
    float *out = malloc(sizeof *out * 3 * 384 * 384);
    T_CHECK(image_preprocess(&wide, &pp, out, err, sizeof err) == CNN_OK, "wide: %s", err);
    /* Rows 0..63 are padding (384 - 256 = 128, half above); columns all real. */
    float pad0 = (0.0f - pp.mean[0]) / pp.std[0], v100 = (100 / 255.0f - pp.mean[0]) / pp.std[0];
    int misplaced = 0;
    for (int y = 0; y < 384; y++)
        for (int x = 0; x < 384; x++)
            misplaced += out[y * 384 + x] != (y >= 64 && y < 320 ? v100 : pad0);
    T_CHECK(misplaced == 0, "384-wide resize: %d values misplaced", misplaced);
    free(out);
    free(wide.rgb);

    /* Argument errors. */
    image tiny = {.rgb = (uint8_t[3]){1, 2, 3}, .width = 1, .height = 1};
    float one[3 * 4];
    image_preproc bad = pp_imagenet;
    bad.resize = 0;
    bad.crop = 2;
    T_CHECK(image_preprocess(&tiny, &bad, one, err, sizeof err) == CNN_ERR_ARG, "resize 0");
    bad.resize = 2;
    bad.std[1] = 0;
    T_CHECK(image_preprocess(&tiny, &bad, one, err, sizeof err) == CNN_ERR_ARG, "std 0");
    image empty = {0};
    T_CHECK(image_preprocess(&empty, &pp_imagenet, one, err, sizeof err) == CNN_ERR_ARG,
            "empty image");
    /* 1x1 upscaled to 2x2: every output is the single pixel. */
    image_preproc up = pp_imagenet;
    up.resize = 2;
    up.crop = 2;
    T_CHECK(image_preprocess(&tiny, &up, one, err, sizeof err) == CNN_OK, "1x1: %s", err);
    T_CHECK(one[0] == ((1 / 255.0f) - up.mean[0]) / up.std[0] &&
                one[3] == ((1 / 255.0f) - up.mean[0]) / up.std[0] &&
                one[4] == ((2 / 255.0f) - up.mean[1]) / up.std[1] &&
                one[11] == ((3 / 255.0f) - up.mean[2]) / up.std[2],
            "1x1 upscale values");
    /* A resize whose long side would exceed INT_MAX is refused, not overflowed. */
    image strip = {.rgb = malloc(3 * 100000), .width = 100000, .height = 1};
    memset(strip.rgb, 9, 3 * 100000);
    image_preproc huge = pp_imagenet;
    huge.resize = 30000;
    huge.crop = 1;
    T_CHECK(image_preprocess(&strip, &huge, one, err, sizeof err) == CNN_ERR_TOO_LARGE,
            "long side overflow");
    free(strip.rgb);
    test_end("center crop rounding (half to even), zero padding, size rule, argument errors");
}

/* ---- region decode (image_decode_opts.pps) ---- */

/* Preprocesses img with pp; NULL on failure. */
static float *preprocess_new(const image *img, const image_preproc *pp)
{
    float *t = malloc(sizeof *t * 3 * (size_t)pp->crop * (size_t)pp->crop);
    char err[256];
    if (t && image_preprocess(img, pp, t, err, sizeof err) != CNN_OK) {
        T_CHECK(0, "image_preprocess: %s", err);
        free(t);
        t = NULL;
    }
    return t;
}

/* Decoding only the region that the preprocessings read gives the same tensors as a whole decode,
 * for every subsampling (the chroma upsampler at crop/skip edges), progressive files, CMYK, DCT
 * scales, EXIF orientations and a union of preprocessings; and it does decode less. */
static void test_region_decode(void)
{
    test_begin();
    static const int subsamps[] = {TJSAMP_444, TJSAMP_422, TJSAMP_420, TJSAMP_440, TJSAMP_411,
                                   TJSAMP_GRAY};
    static const int orientations[] = {1, 3, 6, 8, 5};
    static const int min_shorts[] = {0, 100, 40};
    const image_preproc pp_a = {.resize = 96, .crop = 80, .mean = {0.485f, 0.456f, 0.406f},
                                .std = {0.229f, 0.224f, 0.225f}};
    const image_preproc pp_b = {.resize = 130, .crop = 100, .mean = {0.5f, 0.5f, 0.5f},
                                .std = {0.5f, 0.5f, 0.5f}};
    const image_preproc pp_c = {.resize = 200, .crop = 50, .mean = {0.485f, 0.456f, 0.406f},
                                .std = {0.229f, 0.224f, 0.225f}};
    const image_preproc sets[][2] = {{pp_a, pp_a}, {pp_c, pp_c}, {pp_a, pp_b}};
    const int n_in_set[] = {1, 1, 2};
    int n_cases = 0, n_smaller = 0;
    for (size_t si = 0; si < sizeof subsamps / sizeof subsamps[0]; si++)
        for (int prog = 0; prog <= 1; prog++)
            for (int tall = 0; tall <= 1; tall++) {
                const int w = tall ? 251 : 333, h = tall ? 333 : 251;
                const int gray = subsamps[si] == TJSAMP_GRAY;
                uint8_t *rgb = make_rgb(w, h, 11 + (unsigned)si);
                if (gray)
                    for (int i = 0; i < w * h; i++)
                        rgb[i] = rgb[3 * i + 1];
                buf jpeg = make_jpeg(rgb, w, h, gray ? TJPF_GRAY : TJPF_RGB, subsamps[si], 88,
                                     prog ? TJFLAG_PROGRESSIVE : 0);
                T_CHECK(jpeg.n > 0, "tjCompress2 failed (subsamp %d)", subsamps[si]);
                for (size_t oi = 0; oi < sizeof orientations / sizeof orientations[0] && jpeg.n; oi++) {
                    buf ej = jpeg_with_orientation(&jpeg, orientations[oi], 0);
                    for (size_t mi = 0; mi < sizeof min_shorts / sizeof min_shorts[0]; mi++)
                        for (size_t k = 0; k < sizeof n_in_set / sizeof n_in_set[0]; k++) {
                            image_decode_opts whole_o = {.min_short_side = min_shorts[mi]};
                            image_decode_opts part_o = whole_o;
                            part_o.pps = sets[k];
                            part_o.n_pps = n_in_set[k];
                            image whole = decode_ok(&ej, &whole_o, "whole");
                            image part = decode_ok(&ej, &part_o, "region");
                            if (!whole.rgb || !part.rgb) {
                                image_free(&whole);
                                image_free(&part);
                                continue;
                            }
                            n_cases++;
                            n_smaller += part.roi_width < part.width || part.roi_height < part.height;
                            T_CHECK(part.width == whole.width && part.height == whole.height &&
                                        part.orientation == whole.orientation &&
                                        part.scale_denom == whole.scale_denom,
                                    "region decode reports another image");
                            for (int j = 0; j < n_in_set[k]; j++) {
                                float *a = preprocess_new(&whole, &sets[k][j]);
                                float *b = preprocess_new(&part, &sets[k][j]);
                                size_t n = 3 * (size_t)sets[k][j].crop * (size_t)sets[k][j].crop;
                                T_CHECK(a && b && memcmp(a, b, n * sizeof *a) == 0,
                                        "subsamp %d prog %d %dx%d o=%d min_short %d set %zu pp %d: "
                                        "region decode differs (roi %d,%d %dx%d of %dx%d)",
                                        subsamps[si], prog, w, h, orientations[oi], min_shorts[mi],
                                        k, j, part.roi_x, part.roi_y, part.roi_width,
                                        part.roi_height, part.width, part.height);
                                free(a);
                                free(b);
                            }
                            image_free(&whole);
                            image_free(&part);
                        }
                    buf_free(&ej);
                }
                buf_free(&jpeg);
                free(rgb);
            }
    /* CMYK (YCCK) */
    uint8_t *cmyk = make_rgb(120, 90, 7);
    uint8_t *c4 = malloc((size_t)120 * 90 * 4);
    for (int i = 0; c4 && i < 120 * 90; i++) {
        memcpy(c4 + 4 * i, cmyk + 3 * i, 3);
        c4[4 * i + 3] = (uint8_t)(255 - cmyk[3 * i]);
    }
    buf cj = c4 ? make_jpeg(c4, 120, 90, TJPF_CMYK, TJSAMP_420, 90, 0) : (buf){0};
    const image_preproc pp_s = {.resize = 100, .crop = 40, .mean = {0.5f, 0.5f, 0.5f},
                                .std = {0.5f, 0.5f, 0.5f}};
    image_decode_opts cw = {0}, cp = {.pps = &pp_s, .n_pps = 1};
    image whole = decode_ok(&cj, &cw, "cmyk whole"), part = decode_ok(&cj, &cp, "cmyk region");
    if (whole.rgb && part.rgb) {
        float *a = preprocess_new(&whole, &pp_s), *b = preprocess_new(&part, &pp_s);
        T_CHECK(a && b && memcmp(a, b, sizeof *a * 3 * 40 * 40) == 0, "CMYK region decode differs");
        T_CHECK(part.roi_width < part.width && part.roi_height < part.height,
                "CMYK: region %dx%d of %dx%d", part.roi_width, part.roi_height, part.width,
                part.height);
        free(a);
        free(b);
    }
    image_free(&whole);
    image_free(&part);
    buf_free(&cj);
    free(c4);
    free(cmyk);
    /* A hand-made image (roi_* zero) is whole; one whose region misses what is read is refused. */
    image small = {.rgb = calloc(30 * 20 * 3, 1), .width = 30, .height = 20};
    float out[3 * 8 * 8];
    char err[256];
    const image_preproc pp8 = {.resize = 10, .crop = 8, .mean = {0.5f, 0.5f, 0.5f},
                               .std = {0.5f, 0.5f, 0.5f}};
    T_CHECK(small.rgb && image_preprocess(&small, &pp8, out, err, sizeof err) == CNN_OK,
            "roi 0: %s", err);
    small.roi_width = 10;
    small.roi_height = 20;
    T_CHECK(image_preprocess(&small, &pp8, out, err, sizeof err) == CNN_ERR_ARG,
            "a region that misses the crop is refused");
    free(small.rgb);
    T_CHECK(n_cases == 6 * 2 * 2 * 5 * 3 * 3, "%d region cases decoded", n_cases);
    T_CHECK(n_smaller * 2 > n_cases, "only %d of %d region decodes were smaller than the image",
            n_smaller, n_cases);
    test_end("region decode (crop + skip) equals a whole decode: subsamplings, progressive, CMYK, "
             "scales, orientations, several preprocessings");
}

/* ---- restart-interval bands (image_decode_opts.par) ---- */

/* A baseline JPEG with restart markers, through libjpeg's compressor: h x v luma sampling (1x1,
 * 2x1, 2x2, 1x2; 0: grayscale), a restart every rows MCU rows (> 0) or every -rows MCUs. */
static buf make_jpeg_restart(const uint8_t *rgb, int w, int h, int hs, int vs, int rows)
{
    buf b = {0};
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    unsigned char *mem = NULL;
    unsigned long mem_bytes = 0;
    uint8_t *line = malloc((size_t)w * 3);
    if (!line)
        return b;
    c.err = jpeg_std_error(&e); /* our own inputs: libjpeg's exit on error is fine in a test */
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &mem, &mem_bytes);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = hs ? 3 : 1;
    c.in_color_space = hs ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 85, TRUE);
    if (hs) {
        c.comp_info[0].h_samp_factor = hs;
        c.comp_info[0].v_samp_factor = vs;
    }
    if (rows > 0)
        c.restart_in_rows = rows;
    else
        c.restart_interval = (unsigned)-rows;
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        const uint8_t *src = rgb + (size_t)c.next_scanline * w * 3;
        for (int x = 0; x < w; x++) /* grayscale: the green channel */
            if (hs)
                memcpy(line + 3 * x, src + 3 * x, 3);
            else
                line[x] = src[3 * x + 1];
        JSAMPROW r[1] = {line};
        jpeg_write_scanlines(&c, r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    buf_append(&b, mem, mem_bytes);
    free(mem);
    free(line);
    return b;
}

/* An image_parallel runner: the parts one after another, last first (any order must do). The
 * threaded runner is the server's, image_threads. */
static void run_reversed(void *ctx, void (*fn)(void *, int), void *arg)
{
    for (int i = *(const int *)ctx - 1; i >= 0; i--)
        fn(arg, i);
}

/* Same decoded pixels (the region, after orientation) and geometry. */
static int same_pixels(const image *a, const image *b)
{
    if (a->width != b->width || a->height != b->height || a->roi_x != b->roi_x || a->roi_y != b->roi_y ||
        a->roi_width != b->roi_width || a->roi_height != b->roi_height)
        return 0;
    const size_t sa = a->stride ? a->stride : (size_t)a->roi_width * 3;
    const size_t sb = b->stride ? b->stride : (size_t)b->roi_width * 3;
    for (int y = 0; y < a->roi_height; y++)
        if (memcmp(a->rgb + y * sa, b->rgb + y * sb, (size_t)a->roi_width * 3) != 0)
            return 0;
    return 1;
}

/* image_parallel.min_band_bytes: fewer bands when a band would get less entropy-coded data (the
 * pixels unchanged), none below two; 0 means no minimum. */
static void test_restart_band_minimum(void)
{
    test_begin();
    uint8_t *rgb = make_rgb(200, 1200, 7);
    buf jpeg = rgb ? make_jpeg_restart(rgb, 200, 1200, 2, 2, 1) : (buf){0};
    T_CHECK(jpeg.n > 0, "libjpeg compress failed");
    image_decode_opts so = {0};
    image seq = decode_ok(&jpeg, &so, "sequential");
    /* whole-image decode: the region is the whole scan, just under n bytes */
    const struct { size_t min_bytes; int want; } cases[] = {
        {0, 4}, {1, 4}, {jpeg.n / 4, 3}, {jpeg.n / 3, 2}, {jpeg.n / 2, 1}, {jpeg.n, 1}, {SIZE_MAX, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0] && jpeg.n; i++) {
        int n = 4;
        image_parallel par = {.run = run_reversed, .ctx = &n, .n_parts = n, .min_band_bytes = cases[i].min_bytes};
        image_decode_opts po = {.par = &par};
        image bnd = decode_ok(&jpeg, &po, "bands");
        T_CHECK(bnd.n_bands == cases[i].want && seq.rgb && bnd.rgb && same_pixels(&seq, &bnd),
                "minimum %zu of a %zu-byte file: %d bands (want %d), pixels %s", cases[i].min_bytes, jpeg.n,
                bnd.n_bands, cases[i].want, seq.rgb && bnd.rgb && same_pixels(&seq, &bnd) ? "same" : "differ");
        image_free(&bnd);
    }
    image_free(&seq);
    buf_free(&jpeg);
    free(rgb);
    test_end("JPEG restart bands: a minimum of entropy-coded bytes per band lowers the number of bands "
             "(one below two), same pixels");
}

/* Decoding in restart-interval bands gives the sequential decode's pixels: every sampling, restarts
 * every MCU row, every few rows and every few MCUs (not at row boundaries), DCT scales, orientations,
 * regions and whole images, 2-5 parts run in any order or on threads; files without restart
 * markers, progressive ones and damaged ones decode as before. */
static void test_restart_bands(void)
{
    test_begin();
    static const int samp[][2] = {{2, 2}, {2, 1}, {1, 1}, {1, 2}, {0, 0}};
    static const int restarts[] = {1, 2, -5, -64};
    static const int sizes[][2] = {{333, 251}, {200, 1200}};
    static const int min_shorts[] = {0, 100, 40};
    static const int parts[] = {2, 3, 5};
    const image_preproc pp = {.resize = 96, .crop = 80, .mean = {0.485f, 0.456f, 0.406f},
                              .std = {0.229f, 0.224f, 0.225f}};
    int n_cases = 0, n_banded = 0, n_row_restart_tall = 0, n_row_restart_tall_banded = 0;
    image_threads *threads = NULL; /* 3 threads: parts[1] */
    T_CHECK(image_threads_init(&threads, 3) == CNN_OK && image_threads_parallel(threads) &&
                image_threads_parallel(threads)->n_parts == 3,
            "image_threads_init(3)");
    /* The server's runner with no minimum band size, so these small images still go in bands
     * (the minimum itself: test_restart_band_minimum). */
    image_parallel tpar = threads && image_threads_parallel(threads) ? *image_threads_parallel(threads)
                                                                       : (image_parallel){0};
    T_CHECK(tpar.min_band_bytes == IMAGE_MIN_BAND_BYTES, "image_threads' minimum band %zu", tpar.min_band_bytes);
    tpar.min_band_bytes = 0;
    image_threads *one = NULL;
    T_CHECK(image_threads_init(&one, 1) == CNN_OK && !image_threads_parallel(one), "one thread: sequential");
    image_threads_free(one);
    for (size_t zi = 0; zi < sizeof sizes / sizeof sizes[0]; zi++) {
        const int w = sizes[zi][0], h = sizes[zi][1];
        uint8_t *rgb = make_rgb(w, h, 40 + (unsigned)zi);
        for (size_t si = 0; rgb && si < sizeof samp / sizeof samp[0]; si++)
            for (size_t ri = 0; ri < sizeof restarts / sizeof restarts[0]; ri++) {
                buf jpeg = make_jpeg_restart(rgb, w, h, samp[si][0], samp[si][1], restarts[ri]);
                T_CHECK(jpeg.n > 0, "libjpeg compress failed");
                for (int o = 1; o <= 6 && jpeg.n; o += 5) {
                    buf ej = o == 1 ? jpeg : jpeg_with_orientation(&jpeg, o, 0);
                    for (size_t mi = 0; mi < sizeof min_shorts / sizeof min_shorts[0]; mi++)
                        for (int region = 0; region <= 1; region++) {
                            image_decode_opts so = {.min_short_side = min_shorts[mi], .pps = region ? &pp : NULL,
                                                    .n_pps = region};
                            image seq = decode_ok(&ej, &so, "sequential");
                            T_CHECK(seq.n_bands == 1, "no par: %d bands", seq.n_bands);
                            float *ts = seq.rgb ? preprocess_new(&seq, &pp) : NULL;
                            for (size_t pi = 0; pi < sizeof parts / sizeof parts[0]; pi++) {
                                int n = parts[pi];
                                image_parallel par = {.run = run_reversed, .ctx = &n, .n_parts = n};
                                image_decode_opts po = so;
                                po.par = pi == 1 && threads ? &tpar : &par;
                                image bnd = decode_ok(&ej, &po, "bands");
                                float *tb = bnd.rgb ? preprocess_new(&bnd, &pp) : NULL;
                                n_cases++;
                                n_banded += bnd.n_bands > 1;
                                T_CHECK(bnd.n_bands >= 1 && bnd.n_bands <= n, "%d bands for %d parts",
                                        bnd.n_bands, n);
                                T_CHECK(seq.rgb && bnd.rgb && same_pixels(&seq, &bnd) && ts && tb &&
                                            memcmp(ts, tb, sizeof *ts * 3 * 80 * 80) == 0,
                                        "%dx%d samp %dx%d restart %d o=%d min_short %d region %d parts %d: "
                                        "%d bands differ from the sequential decode",
                                        w, h, samp[si][0], samp[si][1], restarts[ri], o, min_shorts[mi], region,
                                        n, bnd.n_bands);
                                if (h == 1200 && restarts[ri] == 1 && min_shorts[mi] == 0 && !region) {
                                    n_row_restart_tall++;
                                    n_row_restart_tall_banded += bnd.n_bands == n;
                                }
                                free(tb);
                                image_free(&bnd);
                            }
                            free(ts);
                            image_free(&seq);
                        }
                    if (o != 1)
                        buf_free(&ej);
                }
                /* Damaged entropy-coded data: the same outcome (status, pixels) as sequential. */
                for (int k = 1; k <= 3 && jpeg.n; k++) {
                    buf bad = {0};
                    buf_append(&bad, jpeg.p, jpeg.n);
                    size_t at = bad.n * (size_t)k / 4;
                    if (bad.p && bad.p[at] != 0xFF && bad.p[at - 1] != 0xFF)
                        bad.p[at] = (uint8_t)(bad.p[at] == 0x55 ? 0xAA : 0x55);
                    int n = 3;
                    image_parallel par = {.run = run_reversed, .ctx = &n, .n_parts = n};
                    image_decode_opts so = {.pps = &pp, .n_pps = 1}, po = {.pps = &pp, .n_pps = 1, .par = &par};
                    image a, b;
                    char ea[256], eb[256];
                    cnn_status sa = bad.p ? image_decode(bad.p, bad.n, &so, &a, ea, sizeof ea) : CNN_ERR_NOMEM;
                    cnn_status sb = bad.p ? image_decode(bad.p, bad.n, &po, &b, eb, sizeof eb) : CNN_ERR_NOMEM;
                    T_CHECK(sa == sb && (sa != CNN_OK || same_pixels(&a, &b)),
                            "damaged at %zu: sequential %d, bands %d (or other pixels)", at, sa, sb);
                    if (sa == CNN_OK) image_free(&a);
                    if (sb == CNN_OK) image_free(&b);
                    buf_free(&bad);
                }
                buf_free(&jpeg);
            }
        free(rgb);
    }
    /* No restart markers, or progressive: one sequential pass. */
    uint8_t *rgb = make_rgb(200, 1200, 3);
    for (int prog = 0; prog <= 1 && rgb; prog++) {
        buf plain = make_jpeg(rgb, 200, 1200, TJPF_RGB, TJSAMP_420, 85, prog ? TJFLAG_PROGRESSIVE : 0);
        int n = 4;
        image_parallel par = {.run = run_reversed, .ctx = &n, .n_parts = n};
        image_decode_opts po = {.par = &par};
        image img = decode_ok(&plain, &po, "no restarts");
        T_CHECK(img.rgb && img.n_bands == 1, "prog %d without restart markers: %d bands", prog, img.n_bands);
        image_free(&img);
        buf_free(&plain);
    }
    free(rgb);
    image_threads_free(threads);
    T_CHECK(n_cases == 2 * 5 * 4 * 2 * 3 * 2 * 3, "%d cases decoded", n_cases);
    T_CHECK(n_row_restart_tall > 0 && n_row_restart_tall_banded == n_row_restart_tall,
            "a tall image with a restart every MCU row, decoded whole, was split as asked in %d of %d cases",
            n_row_restart_tall_banded, n_row_restart_tall);
    T_CHECK(n_banded * 3 > n_cases, "only %d of %d decodes ran in bands", n_banded, n_cases);
    test_end("JPEG restart-interval bands decode the sequential decode's pixels (samplings, restart "
             "intervals, scales, orientations, regions, parts in any order and on image_threads, damage)");
}

/* The AVX2 resampling passes give the generic code's bits: random images (whole and regions of
 * odd widths), upscales and downscales, crops larger than the image. */
static void test_preprocess_isa(void)
{
    test_begin();
    if (cpu_isa_best() < CPU_ISA_AVX2) {
        test_skip("AVX2 preprocessing equals the generic code", "this CPU has no AVX2");
        return;
    }
    static const int sizes[][2] = {{640, 480}, {333, 251}, {251, 333}, {97, 61}, {1000, 750}, {17, 300},
                                   {224, 224}, {5, 7}, {1, 1}, {300, 2}};
    static const int pps[][2] = {{256, 224}, {342, 299}, {40, 32}, {300, 300}, {64, 80}};
    int n_cases = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const int w = sizes[si][0], h = sizes[si][1];
        uint8_t *rgb = make_rgb(w, h, 100 + (unsigned)si);
        unsigned r = 7u + (unsigned)si;
        for (int i = 0; rgb && i < w * h * 3; i += 7) { /* full-range values, clipping included */
            r = r * 1103515245u + 12345u;
            rgb[i] = (uint8_t)(r >> 24);
        }
        for (size_t pi = 0; rgb && pi < sizeof pps / sizeof pps[0]; pi++) {
            image_preproc pp = {.resize = pps[pi][0], .crop = pps[pi][1], .mean = {0.485f, 0.456f, 0.406f},
                                .std = {0.229f, 0.224f, 0.225f}};
            image img = {.rgb = rgb, .width = w, .height = h};
            /* The same image as a region: only the rectangle the preprocessing reads, packed. */
            int rect[4];
            image_preproc_region(w, h, &pp, 1, rect);
            const int rw = rect[2] - rect[0], rh = rect[3] - rect[1];
            uint8_t *part = malloc((size_t)rw * rh * 3);
            for (int y = 0; part && y < rh; y++)
                memcpy(part + (size_t)y * rw * 3, rgb + ((size_t)(rect[1] + y) * w + rect[0]) * 3,
                       (size_t)rw * 3);
            image reg = {.rgb = part, .width = w, .height = h, .roi_x = rect[0], .roi_y = rect[1],
                         .roi_width = rw, .roi_height = rh};
            const size_t n = 3 * (size_t)pp.crop * pp.crop;
            float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *c = malloc(n * sizeof *c);
            char err[256];
            int ok = a && b && c && part &&
                     image_preprocess_isa(&img, &pp, a, CPU_ISA_GENERIC, err, sizeof err) == CNN_OK &&
                     image_preprocess_isa(&img, &pp, b, CPU_ISA_AVX2, err, sizeof err) == CNN_OK &&
                     image_preprocess_isa(&reg, &pp, c, CPU_ISA_AVX2, err, sizeof err) == CNN_OK;
            T_CHECK(ok && memcmp(a, b, n * sizeof *a) == 0 && memcmp(a, c, n * sizeof *a) == 0,
                    "%dx%d resize %d crop %d: AVX2 differs from generic (ok %d)", w, h, pp.resize,
                    pp.crop, ok);
            n_cases += ok;
            free(a);
            free(b);
            free(c);
            free(part);
        }
        free(rgb);
    }
    T_CHECK(n_cases == 50, "%d cases ran", n_cases);
    test_end("AVX2 resize passes equal the generic code bit for bit (whole images and regions)");
}

int main(void)
{
    test_magic();
    test_dct_scale();
    test_jpeg_variants();
    test_orientation();
    test_exif_defensive();
    test_pixel_cap();
    test_png_webp();
    test_resize_reference();
    test_crop_rules();
    test_region_decode();
    test_preprocess_isa();
    test_restart_bands();
    test_restart_band_minimum();
    return test_finish();
}
