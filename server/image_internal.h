/* Private helpers shared by the image_*.c files (not part of the public image.h interface). */
#ifndef CNN_IMAGE_INTERNAL_H
#define CNN_IMAGE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "../core/cpu.h"
#include "image.h"

/* Refuses (CNN_ERR_TOO_LARGE) a zero dimension or width*height above max_pixels. Called by every
 * decoder with the dimensions read from the file header, before any pixel buffer is allocated. */
cnn_status image_check_dims(int64_t width, int64_t height, int64_t max_pixels, const char *what,
                            char *err, size_t err_bytes);

/* Each decoder fills out->rgb (packed RGB, as stored: not yet oriented), width/height,
 * src_width/src_height and scale_num/scale_denom, and sets *exif_orientation to the EXIF
 * Orientation tag found in the file (1 when absent or unusable). On error out holds nothing. */
/* The JPEG decoder fills roi_* too: with n_pps > 0 it decodes only what pps read (after
 * the orientation it reports is applied), in stored coordinates; the others decode whole. */
/* par (may be NULL): restart-interval bands decoded at once, see image_decode_opts.par. */
cnn_status image_decode_jpeg(const uint8_t *data, size_t n_bytes, int64_t max_pixels,
                             int min_short_side, const image_preproc *pps, int n_pps,
                             const image_parallel *par, image *out, int *exif_orientation, char *err,
                             size_t err_bytes);
cnn_status image_decode_png(const uint8_t *data, size_t n_bytes, int64_t max_pixels, image *out,
                            int *exif_orientation, char *err, size_t err_bytes);
cnn_status image_decode_webp(const uint8_t *data, size_t n_bytes, int64_t max_pixels, image *out,
                             int *exif_orientation, char *err, size_t err_bytes);

/* EXIF Orientation (tag 0x0112) from IFD0 of a TIFF-structured EXIF block (optionally preceded by
 * "Exif\0\0"). Bounds-checked against n_bytes, both byte orders; returns 1..8, or 1 when the tag is
 * absent, out of range or the block is malformed (broken metadata never fails a decode). */
int image_exif_orientation(const uint8_t *tiff, size_t n_bytes);

/* The rectangle [rect[0], rect[2]) x [rect[1], rect[3]) of a width x height image that
 * image_preprocess with pps[0..n_pps) reads (the union); the whole image for a preprocessing it
 * would refuse. */
void image_preproc_region(int width, int height, const image_preproc *pps, int n_pps, int rect[4]);

/* The same for a width x height image as stored, before EXIF orientation 1..8: the stored pixels
 * that become the region the preprocessings read once the image is oriented. */
void image_stored_region(int width, int height, int orientation, const image_preproc *pps,
                         int n_pps, int rect[4]);

/* image_preprocess with the resampling passes of the given instruction set (CPU_ISA_GENERIC: the
 * portable code; AVX2 and up: the AVX2 passes, which the CPU must support); the same results.
 * image_preprocess passes cpu_isa_best(). For the tests. */
cnn_status image_preprocess_isa(const image *img, const image_preproc *pp, float *out, cpu_isa isa,
                                char *err, size_t err_bytes);

#endif
