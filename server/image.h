/* Image intake: uploaded bytes -> decoded RGB (oriented upright) -> a model's normalized NCHW input.
 * One entry point for decoding (image_decode) and one for preprocessing (image_preprocess).
 * Never exits or crashes on hostile input: every failure is a status + message. */
#ifndef CNN_IMAGE_H
#define CNN_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

typedef enum { IMAGE_FMT_UNKNOWN = 0, IMAGE_FMT_JPEG, IMAGE_FMT_PNG, IMAGE_FMT_WEBP } image_format;

/* The decode pixel cap (width*height) unless configured: 50 megapixels. The one place it is written;
 * IMAGE_DEFAULT_MAX_PIXELS_TEXT is the same number for usage texts. */
#define IMAGE_DEFAULT_MAX_PIXELS 50000000
#define IMAGE_STRINGIFY_(x) #x
#define IMAGE_STRINGIFY(x) IMAGE_STRINGIFY_(x)
#define IMAGE_DEFAULT_MAX_PIXELS_TEXT IMAGE_STRINGIFY(IMAGE_DEFAULT_MAX_PIXELS)

typedef struct {
    int resize;       /* short side resized to this (PIL BILINEAR with antialias) */
    int crop;         /* then center crop crop x crop */
    float mean[3], std[3];
} image_preproc;

/* Runs fn(arg, 0) .. fn(arg, n_parts - 1), each once, possibly at the same time on several threads,
 * and returns when all have returned (the caller's thread may run some of them). */
typedef struct {
    void (*run)(void *ctx, void (*fn)(void *arg, int part), void *arg);
    void *ctx;
    int n_parts;
    size_t min_band_bytes; /* fewer bands when a band would get less entropy-coded data than this
                            * (0: no minimum); image_threads sets IMAGE_MIN_BAND_BYTES */
} image_parallel;

/* A band decoded on another thread must repay that thread's wake-up and its decoder's setup. With
 * --threads-per-worker 2 on the 2-core VM (restart marker every MCU row, region decode, each size
 * 3 rounds x 30 decodes, chrt -f 20) two bands took 1.14x the sequential time at 640x480 (~34 KB a
 * band), 0.97-1.03x from 800x600 to 1400x1050 (up to ~118 KB) and 0.68x at 1600x1200 (~136 KB). */
#define IMAGE_MIN_BAND_BYTES (128 * 1024)

/* Most row bands a JPEG is decoded in at once (more parts than this run as this many). */
#define IMAGE_MAX_BANDS 16

typedef struct {
    int64_t max_pixels;  /* refuse (CNN_ERR_TOO_LARGE) when width*height exceeds this; 0 = IMAGE_DEFAULT_MAX_PIXELS */
    int min_short_side;  /* JPEG DCT scaling: pick the smallest M/8 scale whose short side is still
                          * >= this; 0 = always decode at full size */
    const image_preproc *pps; /* n_pps > 0: decode only the part of the image that image_preprocess
                               * with these reads (JPEG; other formats decode whole); see image.roi_* */
    int n_pps;
    const image_parallel *par; /* n_parts >= 2: a baseline JPEG with restart markers at MCU-row
                                * boundaries is decoded in up to n_parts bands of rows at once, each
                                * band by its own decoder from its restart interval on (the pixels
                                * are the same as one sequential decode's); NULL: sequential */
} image_decode_opts;

/* DCT-scaled decode keeps the short side >= IMAGE_DCT_MARGIN x the resize target: measured on the
 * 1000-photo sample, a 1x margin (e.g. 4032x3024 -> 504x378 for 256) costs 0.7-0.8 top-1 points
 * against a full decode, a 2x margin (-> 1008x756) costs 0.0-0.3, still decoding 1/16 of the pixels. */
#define IMAGE_DCT_MARGIN 2

typedef struct {
    uint8_t *rgb;        /* roi_height rows of roi_width RGB pixels, stride bytes apart; free with
                          * image_free */
    int width, height;   /* of the image: after DCT scaling and orientation */
    int roi_x, roi_y, roi_width, roi_height; /* the part of it decoded into rgb: the whole image
                          * unless image_decode_opts.pps asked for less (an image built by hand
                          * may leave all four 0: the whole image) */
    size_t stride;       /* bytes from one row of rgb to the next; 0: packed (roi_width * 3) */
    void *alloc;         /* the allocation rgb points into (image_free frees it; NULL: rgb) */
    int src_width, src_height; /* as stored in the file, before scaling/orientation */
    image_format format;
    int scale_num, scale_denom; /* DCT scale used (1/1 when none) */
    int orientation;     /* EXIF orientation applied, 1..8 (1 = none / absent) */
    int n_bands;         /* JPEG row bands decoded at once (image_decode_opts.par); 1: sequential */
} image;

const char *image_format_name(image_format f); /* "jpeg", "png", "webp", "unknown" */

/* Format from the magic bytes alone (the only thing image_decode trusts; never the file name or a
 * Content-Type). IMAGE_FMT_UNKNOWN when the bytes match none of JPEG/PNG/WebP. */
image_format image_detect_format(const uint8_t *data, size_t n_bytes);

/* Errors: CNN_ERR_UNSUPPORTED (magic bytes not JPEG/PNG/WebP; message lists supported formats),
 * CNN_ERR_DECODE (corrupt/truncated/empty), CNN_ERR_TOO_LARGE (pixel cap / zero dimension),
 * CNN_ERR_NOMEM. On error *out holds nothing to free. */
cnn_status image_decode(const uint8_t *data, size_t n_bytes, const image_decode_opts *opts,
                        image *out, char *err, size_t err_bytes);
void image_free(image *img);

/* out: 3*crop*crop floats, NCHW, ((pixel/255) - mean) / std. */
cnn_status image_preprocess(const image *img, const image_preproc *pp, float *out, char *err,
                            size_t err_bytes);

/* A w x h box at (x, y) inside the image. */
typedef struct {
    int x, y, w, h;
} image_box;

/* torchvision's F.resized_crop on a PIL image (crop the box, PIL BILINEAR resize to size x size),
 * then, when flip, F.hflip, ToTensor and Normalize(mean, std): out receives 3*size*size floats, NCHW.
 * The training augmentation's resampling (server/augment.h); the same resampler as image_preprocess.
 * CNN_ERR_ARG for a box outside the image or bad mean/std, CNN_ERR_NOMEM. */
cnn_status image_resized_crop(const image *img, const image_box *box, int size, int flip, const float mean[3],
                              const float std[3], float *out, char *err, size_t err_bytes);

#endif
