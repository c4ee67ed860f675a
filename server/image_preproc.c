/* image_preprocess: torchvision's Resize(resize) + CenterCrop(crop) + ToTensor + Normalize on a
 * PIL image, reproduced closely enough to be near bit-exact.
 *
 * The resize follows PIL's Image.resize(..., BILINEAR) (libImaging/Resample.c): a triangle filter
 * whose support widens with the downscale factor, coefficients computed in double and rounded to
 * 22-bit fixed point, a horizontal pass then a vertical pass, each rounding and clipping to uint8.
 * Only the part of the resized image that survives the center crop is computed: every output
 * pixel of PIL's resampler depends only on its own coefficients, so restricting the passes to the
 * crop window gives the same values without materialising the full resized image.
 *
 * image_resized_crop (training augmentation) runs the same passes on a box of the image resized to
 * a square, as torchvision's F.resized_crop does on a PIL image. */
#include "image_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#define PREPROC_X86 1
#include <immintrin.h>
#else
#define PREPROC_X86 0
#endif
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RESAMPLE_PRECISION_BITS (32 - 8 - 2)

/* Fixed-point filter taps for a contiguous run of outputs along one axis. */
typedef struct {
    int n_out;
    int ksize;    /* most taps of an output */
    int kstride;  /* taps allocated per output: ksize rounded up to even, zero past n_taps (the
                   * AVX2 pass reads taps in pairs) */
    int *first;   /* [n_out] first source index */
    int *n_taps;  /* [n_out] taps used */
    int32_t *k;   /* [n_out * kstride] */
} resample_axis;

static void resample_axis_free(resample_axis *a)
{
    free(a->first);
    free(a->n_taps);
    free(a->k);
    memset(a, 0, sizeof *a);
}

static double triangle_filter(double x)
{
    if (x < 0.0)
        x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* The geometry of an in_size -> out_size bilinear resize, as PIL's precompute_coeffs sets it up. */
typedef struct {
    double scale, filterscale, support;
    int in_size, ksize;
} resample_geom;

static void resample_geom_init(resample_geom *g, int in_size, int out_size)
{
    /* PIL receives the box as floats; the same rounding applies for sizes above 2^24. */
    const float in0 = 0.0f, in1 = (float)in_size;
    g->in_size = in_size;
    g->scale = (double)(in1 - in0) / out_size;
    g->filterscale = g->scale < 1.0 ? 1.0 : g->scale;
    g->support = g->filterscale * 1.0; /* the triangle filter's support is 1 */
    double ksize_d = ceil(g->support) * 2 + 1;
    if (ksize_d > (double)in_size + 2)  /* never more taps than source samples (plus rounding) */
        ksize_d = (double)in_size + 2;
    g->ksize = (int)ksize_d;
}

/* Output xx's centre and its source samples [*xmin, *xmin + *n) (before the ksize bound). */
static double resample_taps(const resample_geom *g, int xx, int *xmin, int *n)
{
    double center = (xx + 0.5) * g->scale;
    int lo = (int)(center - g->support + 0.5);
    if (lo < 0)
        lo = 0;
    int hi = (int)(center + g->support + 0.5);
    if (hi > g->in_size)
        hi = g->in_size;
    *xmin = lo;
    *n = hi - lo;
    return center;
}

/* Coefficients of outputs out_first .. out_first + n_out - 1 of an in_size -> out_size bilinear
 * resize, computed exactly as PIL's precompute_coeffs + normalize_coeffs_8bpc do. */
static cnn_status resample_axis_init(resample_axis *a, int in_size, int out_size, int out_first,
                                     int n_out)
{
    memset(a, 0, sizeof *a);
    resample_geom g;
    resample_geom_init(&g, in_size, out_size);
    const int ksize = g.ksize;
    double *w = malloc((size_t)ksize * sizeof *w);
    a->first = malloc((size_t)n_out * sizeof *a->first);
    a->n_taps = malloc((size_t)n_out * sizeof *a->n_taps);
    const int kstride = (ksize + 1) & ~1;
    a->k = calloc((size_t)n_out * (size_t)kstride, sizeof *a->k);
    if (!w || !a->first || !a->n_taps || !a->k) {
        free(w);
        resample_axis_free(a);
        return CNN_ERR_NOMEM;
    }
    a->n_out = n_out;
    a->ksize = ksize;
    a->kstride = kstride;
    const double ss = 1.0 / g.filterscale;
    for (int i = 0; i < n_out; i++) {
        int xmin, xmax;
        double center = resample_taps(&g, out_first + i, &xmin, &xmax);
        if (xmax > ksize) /* cannot happen for valid sizes; keeps the loops in bounds */
            xmax = ksize;
        double ww = 0.0;
        for (int x = 0; x < xmax; x++) {
            w[x] = triangle_filter((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        int32_t *k = a->k + (size_t)i * kstride;
        for (int x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? w[x] / ww : w[x];
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << RESAMPLE_PRECISION_BITS))
                         : (int32_t)(0.5 + v * (1 << RESAMPLE_PRECISION_BITS));
        }
        a->first[i] = xmin;
        a->n_taps[i] = xmax;
    }
    free(w);
    return CNN_OK;
}

static inline uint8_t clip8(int32_t v)
{
    v >>= RESAMPLE_PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Python's round() on k / 2 (half to even), as torchvision's CenterCrop uses it. */
static int64_t half_round_even(int64_t k)
{
    int64_t q = k / 2; /* k >= 0 here */
    if (k % 2 != 0 && q % 2 != 0)
        q++;
    return q;
}

/* torchvision's _compute_resized_output_size for an int size: short side -> resize, long side
 * int(resize * long / short) (Python true division, i.e. correctly rounded, then truncated). */
static void resized_size(int w, int h, int resize, int64_t *new_w, int64_t *new_h)
{
    int64_t short_side = w <= h ? w : h, long_side = w <= h ? h : w;
    int64_t new_long = (int64_t)((double)((int64_t)resize * long_side) / (double)short_side);
    *new_w = w <= h ? resize : new_long;
    *new_h = w <= h ? new_long : resize;
}

/* Crop window along one axis of a resized image of size n: crop index c maps to resized index
 * c + offset. torchvision pads with zeros (centred, extra pixel at the end) when n < crop. */
static int64_t crop_offset(int64_t n, int crop)
{
    if (n >= crop)
        return half_round_even(n - crop);
    return -((crop - n) / 2);
}

/* Where the crop lands in the resized image: crop columns [cx0, cx1) and rows [cy0, cy1) come
 * from resized columns/rows c + x_off / c + y_off; the rest of the crop is zero padding. */
typedef struct {
    int64_t out_w, out_h; /* resized size */
    int64_t x_off, y_off;
    int cx0, cx1, cy0, cy1;
} crop_window;

static cnn_status check_args(const image *img, const image_preproc *pp, float *out, char *err, size_t err_bytes)
{
    if (!img || !img->rgb || img->width <= 0 || img->height <= 0 || !pp || !out)
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "image_preprocess: missing image or output");
    if (pp->resize <= 0 || pp->crop <= 0)
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "image_preprocess: resize %d, crop %d",
                       pp->resize, pp->crop);
    for (int c = 0; c < 3; c++)
        if (!(pp->std[c] != 0.0f) || !isfinite(pp->std[c]) || !isfinite(pp->mean[c]))
            return cnn_err(err, err_bytes, CNN_ERR_ARG, "image_preprocess: bad mean/std");
    return CNN_OK;
}

static cnn_status plan_crop(int w, int h, const image_preproc *pp, crop_window *cw, char *err, size_t err_bytes)
{
    const int crop = pp->crop;
    resized_size(w, h, pp->resize, &cw->out_w, &cw->out_h);
    if (cw->out_w > INT_MAX || cw->out_h > INT_MAX || cw->out_w <= 0 || cw->out_h <= 0)
        return cnn_err(err, err_bytes, CNN_ERR_TOO_LARGE,
                       "image_preprocess: a %dx%d image resized to short side %d is too large",
                       w, h, pp->resize);
    cw->x_off = crop_offset(cw->out_w, crop);
    cw->y_off = crop_offset(cw->out_h, crop);
    cw->cx0 = cw->x_off < 0 ? (int)-cw->x_off : 0;
    cw->cy0 = cw->y_off < 0 ? (int)-cw->y_off : 0;
    cw->cx1 = cw->out_w - cw->x_off < crop ? (int)(cw->out_w - cw->x_off) : crop;
    cw->cy1 = cw->out_h - cw->y_off < crop ? (int)(cw->out_h - cw->y_off) : crop;
    return CNN_OK;
}

/* Source samples [*lo, *hi) that outputs out_first .. out_first + n_out - 1 read (their tap
 * windows move monotonically with the output index). */
static void resample_span(int in_size, int out_size, int out_first, int n_out, int *lo, int *hi)
{
    resample_geom g;
    resample_geom_init(&g, in_size, out_size);
    int first, n;
    resample_taps(&g, out_first, &first, &n);
    *lo = first;
    resample_taps(&g, out_first + n_out - 1, &first, &n);
    *hi = first + (n < g.ksize ? n : g.ksize);
    if (*hi < *lo + 1) /* degenerate sizes: keep the region non-empty */
        *hi = *lo + 1;
}

/* Source rectangle one preprocessing reads; 0 when it would be refused. */
static int preproc_region(int width, int height, const image_preproc *pp, int rect[4])
{
    crop_window cw;
    if (pp->resize <= 0 || pp->crop <= 0 || plan_crop(width, height, pp, &cw, NULL, 0) != CNN_OK)
        return 0;
    resample_span(width, (int)cw.out_w, (int)(cw.cx0 + cw.x_off), cw.cx1 - cw.cx0, &rect[0], &rect[2]);
    resample_span(height, (int)cw.out_h, (int)(cw.cy0 + cw.y_off), cw.cy1 - cw.cy0, &rect[1], &rect[3]);
    return 1;
}

void image_preproc_region(int width, int height, const image_preproc *pps, int n_pps, int rect[4])
{
    for (int i = 0; i < n_pps; i++) {
        int r[4];
        if (!preproc_region(width, height, &pps[i], r)) {
            rect[0] = rect[1] = 0;
            rect[2] = width;
            rect[3] = height;
            return;
        }
        if (i == 0 || r[0] < rect[0]) rect[0] = r[0];
        if (i == 0 || r[1] < rect[1]) rect[1] = r[1];
        if (i == 0 || r[2] > rect[2]) rect[2] = r[2];
        if (i == 0 || r[3] > rect[3]) rect[3] = r[3];
    }
    if (n_pps <= 0) {
        rect[0] = rect[1] = 0;
        rect[2] = width;
        rect[3] = height;
    }
}

/* Normalized value of every 8-bit level, computed as torchvision does in float32. */
static void normalize_lut(const image_preproc *pp, float lut[3][256])
{
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++)
            lut[c][v] = ((float)v / 255.0f - pp->mean[c]) / pp->std[c];
}

/* Source rows [*y_first, *y_last) read by the vertical pass. */
static void source_row_span(const resample_axis *ay, int *y_first, int *y_last)
{
    *y_first = ay->first[0];
    *y_last = ay->first[0] + ay->n_taps[0];
    for (int j = 1; j < ay->n_out; j++) {
        if (ay->first[j] < *y_first)
            *y_first = ay->first[j];
        if (ay->first[j] + ay->n_taps[j] > *y_last)
            *y_last = ay->first[j] + ay->n_taps[j];
    }
}

/* Horizontal pass of one output pixel (3 channels), as PIL computes it, into dst[0], dst[plane],
 * dst[2 * plane]. */
static inline void resample_pixel(const uint8_t *s, const int32_t *k, int n_taps, uint8_t *dst,
                                  size_t plane)
{
    int32_t s0 = 1 << (RESAMPLE_PRECISION_BITS - 1), s1 = s0, s2 = s0;
    for (int t = 0; t < n_taps; t++) {
        s0 += s[3 * t + 0] * k[t];
        s1 += s[3 * t + 1] * k[t];
        s2 += s[3 * t + 2] * k[t];
    }
    dst[0] = clip8(s0);
    dst[plane] = clip8(s1);
    dst[2 * plane] = clip8(s2);
}

/* Horizontal pass: n_src_rows source rows from y_first -> ax->n_out columns each, rounded to uint8;
 * each tmp row holds the R, G and B planes of the row (n_cols bytes each). The source is the region
 * roi of the image, rows stride bytes apart. */
static void resample_rows(const uint8_t *rgb, size_t stride, const int roi[4], const resample_axis *ax,
                          int y_first, int n_src_rows, uint8_t *tmp)
{
    const int n_cols = ax->n_out;
    for (int y = 0; y < n_src_rows; y++) {
        const uint8_t *src = rgb + (size_t)(y_first + y - roi[1]) * stride;
        uint8_t *dst = tmp + (size_t)y * n_cols * 3;
        for (int i = 0; i < n_cols; i++)
            resample_pixel(src + (size_t)(ax->first[i] - roi[0]) * 3, ax->k + (size_t)i * ax->kstride,
                           ax->n_taps[i], dst + i, (size_t)n_cols);
    }
}

/* Vertical pass of output row j over tmp (rows from y_first, row_bytes wide), rounded to uint8. */
static void resample_row_v(const uint8_t *tmp, int y_first, size_t row_bytes, const resample_axis *ay,
                           int j, uint8_t *dst)
{
    const int32_t *k = ay->k + (size_t)j * ay->kstride;
    const uint8_t *col0 = tmp + (size_t)(ay->first[j] - y_first) * row_bytes;
    for (size_t x = 0; x < row_bytes; x++) {
        const uint8_t *s = col0 + x;
        int32_t v = 1 << (RESAMPLE_PRECISION_BITS - 1);
        for (int t = 0; t < ay->n_taps[j]; t++, s += row_bytes)
            v += *s * k[t];
        dst[x] = clip8(v);
    }
}

#if PREPROC_X86
#define PREPROC_AVX2 __attribute__((target("avx2")))

/* Scratch of the AVX2 horizontal pass: byte offsets of each output's first tap in the region
 * row, and the coefficients transposed to [block of 8 outputs][tap][8] (0 past an output's taps). */
static size_t avx2_scratch_bytes(const resample_axis *ax)
{
    const size_t n_blocks = ((size_t)ax->n_out + 7) / 8;
    return n_blocks * 8 * sizeof(int32_t) * (1 + (size_t)ax->ksize);
}

static void avx2_scratch_init(const resample_axis *ax, int roi_x, int32_t *scratch)
{
    const int n_blocks = (ax->n_out + 7) / 8;
    int32_t *off = scratch, *kt = scratch + (size_t)n_blocks * 8;
    for (int i = 0; i < n_blocks * 8; i++)
        off[i] = i < ax->n_out ? 3 * (ax->first[i] - roi_x) : 0;
    for (int bl = 0; bl < n_blocks; bl++)
        for (int t = 0; t < ax->ksize; t++)
            for (int l = 0; l < 8; l++) {
                const int i = bl * 8 + l;
                kt[((size_t)bl * ax->ksize + t) * 8 + l] =
                    i < ax->n_out ? ax->k[(size_t)i * ax->kstride + t] : 0;
            }
}

/* AVX2 horizontal pass, the same integer sums in another order (exact): 8 outputs at a time, one
 * gathered RGB(+1 byte) pixel per output and tap, R/G/B in separate 32-bit accumulators. Every
 * output of a block runs ksize taps (coefficient 0 past its own); a block whose gathers would pass
 * src_end, and the columns after the last whole block, are computed by the scalar code. */
PREPROC_AVX2 static void resample_rows_avx2(const uint8_t *rgb, size_t stride, const uint8_t *src_end,
                                            const int roi[4], const resample_axis *ax,
                                            const int32_t *scratch, int y_first, int n_src_rows,
                                            uint8_t *tmp)
{
    const int n_cols = ax->n_out, ksize = ax->ksize, n_full = n_cols / 8;
    const int32_t *off = scratch, *kt = scratch + (size_t)((n_cols + 7) / 8) * 8;
    const __m256i byte = _mm256_set1_epi32(0xFF), three = _mm256_set1_epi32(3);
    const __m256i round = _mm256_set1_epi32(1 << (RESAMPLE_PRECISION_BITS - 1));
    for (int y = 0; y < n_src_rows; y++) {
        const uint8_t *src = rgb + (size_t)(y_first + y - roi[1]) * stride;
        uint8_t *dst = tmp + (size_t)y * n_cols * 3;
        const size_t avail = (size_t)(src_end - src);
        int bl = 0;
        for (; bl < n_full && (size_t)off[bl * 8 + 7] + 3 * (size_t)ksize + 1 <= avail; bl++) {
            __m256i idx = _mm256_loadu_si256((const __m256i *)(off + bl * 8));
            __m256i r = round, g = round, b = round;
            const int32_t *k = kt + (size_t)bl * ksize * 8;
            for (int t = 0; t < ksize; t++, k += 8) {
                const __m256i px = _mm256_i32gather_epi32((const int *)src, idx, 1);
                const __m256i kk = _mm256_loadu_si256((const __m256i *)k);
                r = _mm256_add_epi32(r, _mm256_mullo_epi32(_mm256_and_si256(px, byte), kk));
                g = _mm256_add_epi32(g, _mm256_mullo_epi32(_mm256_and_si256(_mm256_srli_epi32(px, 8), byte), kk));
                b = _mm256_add_epi32(b, _mm256_mullo_epi32(_mm256_and_si256(_mm256_srli_epi32(px, 16), byte), kk));
                idx = _mm256_add_epi32(idx, three);
            }
            __m256i ch[3] = {r, g, b};
            for (int c = 0; c < 3; c++) { /* >> 22, clamp to 0..255 as clip8 */
                __m256i v = _mm256_srai_epi32(ch[c], RESAMPLE_PRECISION_BITS);
                __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
                _mm_storel_epi64((__m128i *)(dst + (size_t)c * n_cols + bl * 8), _mm_packus_epi16(w, w));
            }
        }
        for (int i = bl * 8; i < n_cols; i++)
            resample_pixel(src + off[i], ax->k + (size_t)i * ax->kstride, ax->n_taps[i], dst + i,
                           (size_t)n_cols);
    }
}

/* AVX2 vertical pass of output row j: 8 bytes of the row per step. */
PREPROC_AVX2 static void resample_row_v_avx2(const uint8_t *tmp, int y_first, size_t row_bytes,
                                             const resample_axis *ay, int j, uint8_t *dst)
{
    const int32_t *k = ay->k + (size_t)j * ay->kstride;
    const uint8_t *col0 = tmp + (size_t)(ay->first[j] - y_first) * row_bytes;
    const int n_taps = ay->n_taps[j];
    const __m256i round = _mm256_set1_epi32(1 << (RESAMPLE_PRECISION_BITS - 1));
    size_t x = 0;
    for (; x + 8 <= row_bytes; x += 8) {
        const uint8_t *s = col0 + x;
        __m256i acc = round;
        for (int t = 0; t < n_taps; t++, s += row_bytes)
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(
                                            _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)s)),
                                            _mm256_set1_epi32(k[t])));
        acc = _mm256_srai_epi32(acc, RESAMPLE_PRECISION_BITS);
        __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        _mm_storel_epi64((__m128i *)(dst + x), _mm_packus_epi16(w, w));
    }
    for (; x < row_bytes; x++) {
        const uint8_t *s = col0 + x;
        int32_t v = 1 << (RESAMPLE_PRECISION_BITS - 1);
        for (int t = 0; t < n_taps; t++, s += row_bytes)
            v += *s * k[t];
        dst[x] = clip8(v);
    }
}
#endif

/* Vertical pass over tmp (rows from y_first, n_cols wide), rounded to uint8 (row by row into vrow,
 * n_cols * 3 bytes), then normalized into the crop's window of the NCHW output. */
static void resample_columns(const uint8_t *tmp, int y_first, int n_cols, const resample_axis *ay,
                             const crop_window *cw, int crop, float lut[3][256], int use_avx2,
                             uint8_t *vrow, float *out)
{
    const size_t plane = (size_t)crop * crop, row_bytes = (size_t)n_cols * 3;
    (void)use_avx2;
    for (int j = 0; j < ay->n_out; j++) {
#if PREPROC_X86
        if (use_avx2)
            resample_row_v_avx2(tmp, y_first, row_bytes, ay, j, vrow);
        else
#endif
            resample_row_v(tmp, y_first, row_bytes, ay, j, vrow);
        float *o = out + (size_t)(cw->cy0 + j) * crop + cw->cx0;
        for (int i = 0; i < n_cols; i++) {
            o[i] = lut[0][vrow[i]];
            o[plane + i] = lut[1][vrow[n_cols + i]];
            o[2 * plane + i] = lut[2][vrow[2 * n_cols + i]];
        }
    }
}

/* The decoded part of img as [r[0], r[2]) x [r[1], r[3]) (roi_* all 0: the whole image). */
static void image_roi(const image *img, int r[4])
{
    r[0] = r[1] = 0;
    r[2] = img->width;
    r[3] = img->height;
    if (img->roi_x || img->roi_y || img->roi_width || img->roi_height) {
        r[0] = img->roi_x;
        r[1] = img->roi_y;
        r[2] = img->roi_x + img->roi_width;
        r[3] = img->roi_y + img->roi_height;
    }
}

/* Both passes with the axes ax (n_cols outputs) and ay, into the crop's window cw of out. Frees
 * nothing of the caller's; "what" names the caller in the out-of-memory message. */
static cnn_status resample_image(const image *img, const int roi[4], const resample_axis *ax,
                                 const resample_axis *ay, const crop_window *cw, int crop,
                                 float lut[3][256], cpu_isa isa, float *out, const char *what,
                                 char *err, size_t err_bytes)
{
    const int n_cols = ax->n_out, use_avx2 = PREPROC_X86 && isa >= CPU_ISA_AVX2;
    const size_t stride = img->stride ? img->stride : (size_t)(roi[2] - roi[0]) * 3;
    int y_first = 0, y_last = 0;
    source_row_span(ay, &y_first, &y_last);
    /* The horizontal pass's rows, then one row for the vertical pass. */
    uint8_t *tmp = malloc((size_t)(y_last - y_first + 1) * (size_t)n_cols * 3);
    int32_t *scratch = NULL; /* the AVX2 horizontal pass's */
#if PREPROC_X86
    if (use_avx2)
        scratch = malloc(avx2_scratch_bytes(ax));
#endif
    if (!tmp || (use_avx2 && !scratch)) {
        free(tmp);
        free(scratch);
        return cnn_err(err, err_bytes, CNN_ERR_NOMEM, "%s: out of memory", what);
    }
#if PREPROC_X86
    if (use_avx2) {
        avx2_scratch_init(ax, roi[0], scratch);
        const uint8_t *end = img->rgb + (size_t)(roi[3] - roi[1] - 1) * stride + (size_t)(roi[2] - roi[0]) * 3;
        resample_rows_avx2(img->rgb, stride, end, roi, ax, scratch, y_first, y_last - y_first, tmp);
    } else
#endif
        resample_rows(img->rgb, stride, roi, ax, y_first, y_last - y_first, tmp);
    resample_columns(tmp, y_first, n_cols, ay, cw, crop, lut, use_avx2,
                     tmp + (size_t)(y_last - y_first) * (size_t)n_cols * 3, out);
    free(scratch);
    free(tmp);
    return CNN_OK;
}

cnn_status image_preprocess(const image *img, const image_preproc *pp, float *out, char *err,
                            size_t err_bytes)
{
    return image_preprocess_isa(img, pp, out, cpu_isa_best(), err, err_bytes);
}

cnn_status image_preprocess_isa(const image *img, const image_preproc *pp, float *out, cpu_isa isa,
                                char *err, size_t err_bytes)
{
    crop_window cw = {0};
    cnn_status st = check_args(img, pp, out, err, err_bytes);
    if (st == CNN_OK)
        st = plan_crop(img->width, img->height, pp, &cw, err, err_bytes);
    if (st != CNN_OK)
        return st;
    const int crop = pp->crop, n_cols = cw.cx1 - cw.cx0, n_rows = cw.cy1 - cw.cy0;
    float lut[3][256];
    normalize_lut(pp, lut);
    if (n_cols < crop || n_rows < crop) /* zero padding, normalized */
        for (int c = 0; c < 3; c++)
            for (size_t i = 0; i < (size_t)crop * crop; i++)
                out[c * (size_t)crop * crop + i] = lut[c][0];

    int need[4], roi[4];
    image_roi(img, roi);
    image_preproc_region(img->width, img->height, pp, 1, need);
    if (need[0] < roi[0] || need[1] < roi[1] || need[2] > roi[2] || need[3] > roi[3])
        return cnn_err(err, err_bytes, CNN_ERR_ARG,
                       "image_preprocess: needs [%d,%d)x[%d,%d) of the image, decoded only "
                       "[%d,%d)x[%d,%d)", need[0], need[2], need[1], need[3], roi[0], roi[2],
                       roi[1], roi[3]);

    resample_axis ax = {0}, ay = {0};
    st = resample_axis_init(&ax, img->width, (int)cw.out_w, (int)(cw.cx0 + cw.x_off), n_cols);
    if (st == CNN_OK)
        st = resample_axis_init(&ay, img->height, (int)cw.out_h, (int)(cw.cy0 + cw.y_off), n_rows);
    if (st == CNN_OK)
        st = resample_image(img, roi, &ax, &ay, &cw, crop, lut, isa, out, "image_preprocess", err,
                            err_bytes);
    else
        st = cnn_err(err, err_bytes, st, "image_preprocess: out of memory");
    resample_axis_free(&ax);
    resample_axis_free(&ay);
    return st;
}

cnn_status image_resized_crop(const image *img, const image_box *box, int size, int flip, const float mean[3],
                              const float std[3], float *out, char *err, size_t err_bytes)
{
    image_preproc pp = {.resize = size, .crop = size};
    memcpy(pp.mean, mean, sizeof pp.mean);
    memcpy(pp.std, std, sizeof pp.std);
    cnn_status st = check_args(img, &pp, out, err, err_bytes);
    if (st != CNN_OK)
        return st;
    int roi[4];
    image_roi(img, roi);
    if (box->w < 1 || box->h < 1 || box->x < roi[0] || box->y < roi[1] || box->x > roi[2] - box->w ||
        box->y > roi[3] - box->h)
        return cnn_err(err, err_bytes, CNN_ERR_ARG,
                       "image_resized_crop: box %dx%d at (%d,%d) outside the decoded [%d,%d)x[%d,%d) of a "
                       "%dx%d image", box->w, box->h, box->x, box->y, roi[0], roi[2], roi[1], roi[3],
                       img->width, img->height);
    float lut[3][256];
    normalize_lut(&pp, lut);
    /* PIL resizes the cropped image: the coefficients of a w -> size (h -> size) resize, whose source
     * indices are then moved by the box's origin. */
    resample_axis ax = {0}, ay = {0};
    st = resample_axis_init(&ax, box->w, size, 0, size);
    if (st == CNN_OK)
        st = resample_axis_init(&ay, box->h, size, 0, size);
    if (st != CNN_OK) {
        st = cnn_err(err, err_bytes, st, "image_resized_crop: out of memory");
        goto done;
    }
    for (int i = 0; i < size; i++) {
        ax.first[i] += box->x;
        ay.first[i] += box->y;
    }
    const crop_window cw = {.out_w = size, .out_h = size};
    st = resample_image(img, roi, &ax, &ay, &cw, size, lut, cpu_isa_best(), out, "image_resized_crop",
                        err, err_bytes);
    if (st == CNN_OK && flip) /* RandomHorizontalFlip after the resize: mirror every row */
        for (size_t r = 0; r < (size_t)3 * size; r++) {
            float *row = out + r * size;
            for (int a = 0, b = size - 1; a < b; a++, b--) {
                const float t = row[a];
                row[a] = row[b];
                row[b] = t;
            }
        }
done:
    resample_axis_free(&ax);
    resample_axis_free(&ay);
    return st;
}
