/* PNG decoding with libpng's low-level API (not the simplified png_image API, which applies sRGB
 * gamma when reducing 16-bit samples and would not match PIL).
 *
 * Pixel semantics follow torchvision's usual Image.open(f).convert("RGB"):
 *  - alpha (an alpha channel or a tRNS chunk) is dropped, not composited;
 *  - palette, 1/2/4-bit gray expand to RGB (gray levels scaled to 0..255, as PIL's L;1/L;2/L;4);
 *  - 16-bit samples keep their high byte, as PIL's RGB;16B/LA;16B unpackers do. For 16-bit
 *    grayscale PIL instead opens mode "I" and convert("RGB") clips values above 255, turning
 *    almost every such image white; we deliberately keep the high byte (the true intensity).
 *  - gAMA/iCCP/sRGB are ignored (PIL applies no color management either).
 * Orientation comes from an eXIf chunk before the image data, as PIL's getexif() reads it.
 *
 * Resource bounds: the pixel cap is checked on IHDR before any pixel buffer is allocated; the
 * inflated image data is then bounded by IHDR (libpng inflates only the rows it is asked for and
 * the post-image chunks are never read), text and ICC chunks are discarded without inflating
 * them, and any other ancillary chunk is limited to PNG_MAX_CHUNK_BYTES. */
#include "image_internal.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PNG_MAX_CHUNK_BYTES (1u << 20) /* largest ancillary chunk kept (e.g. eXIf) */
#define PNG_MAX_ANCILLARY_CHUNKS 64u  /* bounds how many stored ancillary chunks accumulate */

typedef struct {
    const uint8_t *data;
    size_t n_bytes, pos;
    char msg[200]; /* libpng's error text */
} png_source;

static uint32_t png_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void png_read_source(png_structp png, png_bytep dst, size_t n)
{
    png_source *src = png_get_io_ptr(png);
    if (n > src->n_bytes - src->pos)
        png_error(png, "truncated PNG data");
    memcpy(dst, src->data + src->pos, n);
    src->pos += n;
}

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_source *src = png_get_error_ptr(png);
    snprintf(src->msg, sizeof src->msg, "%s", msg);
    png_longjmp(png, 1);
}

/* Warnings (bad ancillary CRC, discarded chunks) do not affect the pixels; stay silent. */
static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

cnn_status image_decode_png(const uint8_t *data, size_t n_bytes, int64_t max_pixels, image *out,
                            int *exif_orientation, char *err, size_t err_bytes)
{
    /* Discarded before libpng processes (and inflates) them. */
    static const png_byte ignored_chunks[] = "tEXt" "zTXt" "iTXt" "iCCP" "sPLT" "hIST";
    png_source src = {.data = data, .n_bytes = n_bytes, .pos = 0, .msg = ""};
    /* Modified between setjmp and a possible longjmp, hence volatile. */
    uint8_t *volatile rgb = NULL;
    png_bytep *volatile rows = NULL;
    volatile cnn_status st = CNN_OK;

    /* The pixel cap (and zero dimensions, which libpng would call corrupt) is checked on the
     * IHDR fields before libpng reads anything: PNG requires IHDR first, right after the
     * signature, and libpng rejects any file where it is not. */
    if (n_bytes < 24 || memcmp(data + 12, "IHDR", 4) != 0)
        return cnn_err(err, err_bytes, CNN_ERR_DECODE, "corrupt PNG: no IHDR chunk first");
    const uint32_t width = png_be32(data + 16), height = png_be32(data + 20);
    cnn_status st0 = image_check_dims(width, height, max_pixels, "PNG image", err, err_bytes);
    if (st0 != CNN_OK)
        return st0;

    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error,
                                             png_on_warning);
    if (!png)
        return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "cannot create a PNG decoder");
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "cannot create a PNG decoder");
    }
    if (setjmp(png_jmpbuf(png))) {
        if (st == CNN_OK)
            st = cnn_err(err, err_bytes, CNN_ERR_DECODE, "corrupt PNG: %s", src.msg);
        goto done;
    }
    png_set_read_fn(png, &src, png_read_source);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, 0);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, ignored_chunks,
                                (int)(sizeof ignored_chunks - 1) / 4);
    png_set_chunk_malloc_max(png, PNG_MAX_CHUNK_BYTES);
    png_set_chunk_cache_max(png, PNG_MAX_ANCILLARY_CHUNKS);
    png_set_user_limits(png, 0x7FFFFFFF, 0x7FFFFFFF); /* the pixel cap is the limit that matters */

    png_read_info(png, info);
    const int bit_depth = png_get_bit_depth(png, info), color_type = png_get_color_type(png, info);
    if (png_get_image_width(png, info) != width || png_get_image_height(png, info) != height) {
        st = cnn_err(err, err_bytes, CNN_ERR_DECODE, "corrupt PNG: inconsistent IHDR");
        goto done;
    }

    if (color_type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (bit_depth == 16)
        png_set_strip_16(png);
    png_set_strip_alpha(png); /* also the alpha that palette expansion makes from tRNS */
    if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8 ||
        png_get_rowbytes(png, info) != (size_t)width * 3) {
        st = cnn_err(err, err_bytes, CNN_ERR_DECODE,
                     "unexpected PNG layout after conversion (color type %d, depth %d)",
                     color_type, bit_depth);
        goto done;
    }

    rgb = malloc((size_t)width * height * 3);
    rows = malloc((size_t)height * sizeof *rows);
    if (!rgb || !rows) {
        st = cnn_err(err, err_bytes, CNN_ERR_NOMEM, "out of memory for a %ux%u PNG",
                     (unsigned)width, (unsigned)height);
        goto done;
    }
    for (png_uint_32 y = 0; y < height; y++)
        rows[y] = rgb + (size_t)y * width * 3;
    png_read_image(png, rows);

    png_bytep exif = NULL;
    png_uint_32 exif_bytes = 0;
    *exif_orientation = 1;
    if (png_get_eXIf_1(png, info, &exif_bytes, &exif) != 0)
        *exif_orientation = image_exif_orientation(exif, exif_bytes);

    out->rgb = rgb;
    out->width = (int)width;
    out->height = (int)height;
    out->src_width = (int)width;
    out->src_height = (int)height;
    out->scale_num = out->scale_denom = 1;
    rgb = NULL;
done:
    free(rows);
    free(rgb);
    png_destroy_read_struct(&png, &info, NULL);
    return st;
}
