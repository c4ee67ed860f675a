/* Private helpers shared by the image_*.c files (not part of the public image.h interface). */
#ifndef CNN_IMAGE_INTERNAL_H
#define CNN_IMAGE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "image.h"

/* Refuses (CNN_ERR_TOO_LARGE) a zero dimension or width*height above max_pixels. Called by every
 * decoder with the dimensions read from the file header, before any pixel buffer is allocated. */
cnn_status image_check_dims(int64_t width, int64_t height, int64_t max_pixels, const char *what,
                            char *err, size_t err_bytes);

/* Each decoder fills out->rgb (packed RGB, as stored: not yet oriented), width/height,
 * src_width/src_height and scale_num/scale_denom, and sets *exif_orientation to the EXIF
 * Orientation tag found in the file (1 when absent or unusable). On error out holds nothing. */
cnn_status image_decode_jpeg(const uint8_t *data, size_t n_bytes, int64_t max_pixels,
                             int min_short_side, image *out, int *exif_orientation, char *err,
                             size_t err_bytes);
cnn_status image_decode_png(const uint8_t *data, size_t n_bytes, int64_t max_pixels, image *out,
                            int *exif_orientation, char *err, size_t err_bytes);
cnn_status image_decode_webp(const uint8_t *data, size_t n_bytes, int64_t max_pixels, image *out,
                             int *exif_orientation, char *err, size_t err_bytes);

/* EXIF Orientation (tag 0x0112) from IFD0 of a TIFF-structured EXIF block (optionally preceded by
 * "Exif\0\0"). Bounds-checked against n_bytes, both byte orders; returns 1..8, or 1 when the tag is
 * absent, out of range or the block is malformed (broken metadata never fails a decode). */
int image_exif_orientation(const uint8_t *tiff, size_t n_bytes);

#endif
