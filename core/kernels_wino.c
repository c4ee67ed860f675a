/* Winograd F(2x2, 3x3) convolution on AVX-512 for 3x3 stride-1 convolutions (groups 1), the
 * path conv2d_forward_packed takes for them when the output is large enough to fill the GEMM.
 *
 * Output tiles of 2x2 read 4x4 input patches; with the transforms of Lavin & Gray
 *   U = G g G^T (weights, at pack time), V = B^T d B (input), Y = A^T [U . V] A (output),
 * each output tile costs 16 multiplies per input channel instead of 36, and the 16
 * element-wise products summed over input channels are 16 GEMMs, U[e] (c_out x c_in) times
 * V[e] (c_in x tiles), run by the packed GEMM micro-kernel (kernels_gemm_avx512).
 * The transforms keep 16 tiles of one tile row in the lanes of a vector: a patch column for 16
 * tiles is every other float of a row, split out of two loads by one permute. Tile rows are
 * processed in blocks whose transformed input and GEMM results stay in L2; each block's band of
 * input rows is copied zero-padded first so no transform checks a border. The bias and activation are applied in the
 * output transform, in registers. Transforms only add and subtract (coefficients 0, +-1, +-1/2
 * in G), so the rounding error stays close to the direct convolution's. */
#include "kernels.h"

#include <assert.h>
#include <string.h>

#include "kernels_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WINO_X86 1
#include <immintrin.h>
#else
#define WINO_X86 0
#endif

#define WINO_M 2                  /* output tile side */
#define WINO_ALPHA 4              /* input tile side, WINO_M + 3 - 1 */
#define WINO_E (WINO_ALPHA * WINO_ALPHA) /* GEMMs per block */
/* With fewer tiles the GEMMs are too narrow to amortize their weights, which are 16/9 the
 * direct convolution's: Inception's 8x8 layers (16 tiles, 11 MB of U) ran 2x slower in the
 * network, though faster with the weights in cache. They run im2col. */
#define WINO_MIN_TILES 40
/* Tiles per block: up to this many, and at most WINO_BLOCK_FLOATS floats of transformed input
 * and GEMM results (1 MiB, within L2); at least one tile row ... */
#define WINO_BLOCK_TILES 256
#define WINO_BLOCK_FLOATS (256 * 1024)
/* ... but at least this many tiles (a GEMM panel), even past WINO_BLOCK_FLOATS: narrower GEMMs
 * cost more than the L2 misses (measured on AlexNet's 13x13 layers: +40%). */
#define WINO_MIN_BLOCK_TILES 64

/* Geometry of one convolution's Winograd pass. */
typedef struct {
    int tiles_h, tiles_w; /* tile grid */
    int wp;               /* padded input row: the grid's patches, 2*tiles_w + 2 */
    int block_rows;       /* tile rows per block */
    int band_h;           /* padded input rows a block reads: 2*block_rows + 2 */
    int row_floats;       /* floats of one row-transform line (16-float loads of the last
                             vector of tiles stay inside) */
} wino_geom;

static wino_geom wino_geom_of(const conv2d_params *p)
{
    wino_geom g;
    g.tiles_h = (p->h_out + WINO_M - 1) / WINO_M;
    g.tiles_w = (p->w_out + WINO_M - 1) / WINO_M;
    g.wp = WINO_M * g.tiles_w + 2;
    const int per_row = WINO_E * (p->c_in + p->c_out) * g.tiles_w;
    const int rows = kernels_imax(
        kernels_imin(WINO_BLOCK_TILES / g.tiles_w, WINO_BLOCK_FLOATS / per_row),
        (WINO_MIN_BLOCK_TILES + g.tiles_w - 1) / g.tiles_w);
    g.block_rows = kernels_imax(1, kernels_imin(rows, g.tiles_h));
    g.band_h = WINO_M * g.block_rows + 2;
    g.row_floats = WINO_M * ((g.tiles_w + 15) / 16 * 16) + 16 + 2;
    return g;
}

int kernels_wino_applies(const conv2d_params *p)
{
    if (p->k_h != 3 || p->k_w != 3 || p->stride_h != 1 || p->stride_w != 1 || p->groups != 1)
        return 0;
    const wino_geom g = wino_geom_of(p);
    return g.tiles_h * g.tiles_w >= WINO_MIN_TILES;
}

static int wino_panels(const conv2d_params *p)
{
    return (p->c_out + KERNELS_GEMM_MR - 1) / KERNELS_GEMM_MR;
}

size_t kernels_wino_packed_floats(const conv2d_params *p)
{
    return (size_t)WINO_E * (size_t)wino_panels(p) * KERNELS_GEMM_MR * (size_t)p->c_in;
}

/* G of F(2x2, 3x3): U = G g G^T. */
static const double wino_g[WINO_ALPHA][3] = {
    {1.0, 0.0, 0.0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0.0, 0.0, 1.0}};

/* U[e] for every element e = 4*xi + nu, packed as GEMM left operands (c_out x c_in each). */
void kernels_wino_pack(const conv2d_params *p, const float *w, float *packed)
{
    const int c_in = p->c_in, rows = wino_panels(p) * KERNELS_GEMM_MR;
    for (int e = 0; e < WINO_E; e++) {
        const int xi = e / WINO_ALPHA, nu = e % WINO_ALPHA;
        float *u_e = packed + (size_t)e * (size_t)rows * (size_t)c_in;
        for (int co = 0; co < rows; co++)
            for (int ci = 0; ci < c_in; ci++) {
                double u = 0.0;
                if (co < p->c_out) {
                    const float *g = w + ((size_t)co * (size_t)c_in + (size_t)ci) * 9;
                    for (int i = 0; i < 3; i++)
                        for (int j = 0; j < 3; j++)
                            u += wino_g[xi][i] * (double)g[i * 3 + j] * wino_g[nu][j];
                }
                u_e[kernels_gemm_a_offset(p->c_out, c_in, co, ci)] = (float)u;
            }
    }
}

/* Scratch: the block's band of padded input, transformed input V (E x c_in x block tiles), GEMM results
 * (E x c_out x block tiles), row-transform lines (4 x row_floats); each 16-float aligned. */
static size_t wino_round16(size_t n) { return (n + 15) / 16 * 16; }

size_t kernels_wino_scratch_floats(const conv2d_params *p)
{
    const wino_geom g = wino_geom_of(p);
    const size_t tiles = (size_t)g.block_rows * (size_t)g.tiles_w;
    return wino_round16((size_t)p->c_in * (size_t)g.band_h * (size_t)g.wp) +
           wino_round16((size_t)WINO_E * (size_t)p->c_in * tiles) +
           wino_round16((size_t)WINO_E * (size_t)p->c_out * tiles) +
           (size_t)WINO_ALPHA * (size_t)g.row_floats;
}

#if WINO_X86
#define WINO_AVX512 __attribute__((target("avx512f")))

/* Band of the padded input from padded row r0: xp[c][r][q] = x[c][r0 + r - pad_t][q - pad_l],
 * zero outside the input, r < band_h. */
static void wino_pad_input(const conv2d_params *p, const wino_geom *g, const float *x, int r0,
                           float *xp)
{
    const int lo = kernels_imin(p->pad_l, g->wp);
    const int hi = kernels_imax(lo, kernels_imin(p->pad_l + p->w_in, g->wp));
    for (int c = 0; c < p->c_in; c++)
        for (int r = 0; r < g->band_h; r++) {
            float *d = xp + ((size_t)c * (size_t)g->band_h + (size_t)r) * (size_t)g->wp;
            const int ih = r0 + r - p->pad_t;
            if (ih < 0 || ih >= p->h_in) {
                memset(d, 0, (size_t)g->wp * sizeof *d);
                continue;
            }
            const float *s = x + ((size_t)c * (size_t)p->h_in + (size_t)ih) * (size_t)p->w_in;
            memset(d, 0, (size_t)lo * sizeof *d);
            memcpy(d + lo, s + (lo - p->pad_l), (size_t)(hi - lo) * sizeof *d);
            memset(d + hi, 0, (size_t)(g->wp - hi) * sizeof *d);
        }
}

static inline __attribute__((always_inline)) WINO_AVX512 __mmask16 wino_mask(int n)
{
    return (__mmask16)(n >= 16 ? 0xFFFFu : (1u << n) - 1u);
}

/* V for tile rows [a0, a0 + rows) of every input channel from their band xp (wino_pad_input
 * from padded row 2*a0): v[(e*c_in + ci)*ldv + t] with t the tile's index in the block
 * (row-major). line: WINO_ALPHA row-transform lines. */
static WINO_AVX512 void wino_input(const conv2d_params *p, const wino_geom *g, const float *xp,
                                   int a0, int rows, float *v, size_t ldv, float *line)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                           28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const int lf = g->row_floats, n_cols = g->wp;
    const size_t plane = (size_t)g->band_h * (size_t)g->wp, e_stride = (size_t)p->c_in * ldv;
    for (int ci = 0; ci < p->c_in; ci++) {
        for (int a = a0; a < a0 + rows; a++) {
            /* rows: t0 = d0 - d2, t1 = d1 + d2, t2 = d2 - d1, t3 = d1 - d3 (B^T d) */
            const float *d = xp + (size_t)ci * plane + (size_t)(WINO_M * (a - a0)) * (size_t)g->wp;
            for (int q = 0; q < n_cols; q += 16) {
                const __mmask16 m = wino_mask(n_cols - q);
                const __m512 d0 = _mm512_maskz_loadu_ps(m, d + q);
                const __m512 d1 = _mm512_maskz_loadu_ps(m, d + g->wp + q);
                const __m512 d2 = _mm512_maskz_loadu_ps(m, d + 2 * g->wp + q);
                const __m512 d3 = _mm512_maskz_loadu_ps(m, d + 3 * g->wp + q);
                _mm512_storeu_ps(line + q, _mm512_sub_ps(d0, d2));
                _mm512_storeu_ps(line + lf + q, _mm512_add_ps(d1, d2));
                _mm512_storeu_ps(line + 2 * lf + q, _mm512_sub_ps(d2, d1));
                _mm512_storeu_ps(line + 3 * lf + q, _mm512_sub_ps(d1, d3));
            }
            /* columns of 16 tiles: c_j = line[2*tile + j]; same combination (. B) */
            float *vrow = v + (size_t)ci * ldv + (size_t)(a - a0) * (size_t)g->tiles_w;
            for (int b = 0; b < g->tiles_w; b += 16) {
                const __mmask16 m = wino_mask(g->tiles_w - b);
                for (int xi = 0; xi < WINO_ALPHA; xi++) {
                    const float *l = line + (size_t)xi * (size_t)lf + 2 * b;
                    const __m512 lo = _mm512_loadu_ps(l), hi = _mm512_loadu_ps(l + 16);
                    const __m512 lo2 = _mm512_loadu_ps(l + 2), hi2 = _mm512_loadu_ps(l + 18);
                    const __m512 c0 = _mm512_permutex2var_ps(lo, even, hi);
                    const __m512 c1 = _mm512_permutex2var_ps(lo, odd, hi);
                    const __m512 c2 = _mm512_permutex2var_ps(lo2, even, hi2);
                    const __m512 c3 = _mm512_permutex2var_ps(lo2, odd, hi2);
                    float *o = vrow + (size_t)(xi * WINO_ALPHA) * e_stride + b;
                    _mm512_mask_storeu_ps(o, m, _mm512_sub_ps(c0, c2));
                    _mm512_mask_storeu_ps(o + e_stride, m, _mm512_add_ps(c1, c2));
                    _mm512_mask_storeu_ps(o + 2 * e_stride, m, _mm512_sub_ps(c2, c1));
                    _mm512_mask_storeu_ps(o + 3 * e_stride, m, _mm512_sub_ps(c1, c3));
                }
            }
        }
    }
}

static inline __attribute__((always_inline)) WINO_AVX512 __m512 wino_act(__m512 v, act_kind act)
{
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
    const __m512 three = _mm512_set1_ps(3.0f), sixth = _mm512_set1_ps(1.0f / 6.0f);
    switch (act) {
    case ACT_RELU: return _mm512_max_ps(v, zero);
    case ACT_RELU6: return _mm512_min_ps(_mm512_max_ps(v, zero), six);
    case ACT_HSWISH:
        return _mm512_mul_ps(
            _mm512_mul_ps(v, _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, three), zero), six)),
            sixth);
    case ACT_HSIGMOID:
        return _mm512_mul_ps(_mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, three), zero), six),
                             sixth);
    case ACT_NONE: break;
    }
    return v;
}

/* Y = A^T M A for tile rows [a0, a0 + rows): s0 = m0 + m1 + m2, s1 = m1 - m2 - m3 along both
 * axes; then bias and activation, and the two output columns of each tile interleaved back. */
static WINO_AVX512 void wino_output(const conv2d_params *p, const wino_geom *g, const float *mr,
                                    size_t ldm, int a0, int rows, const float *bias, float *y)
{
    const __m512i lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7,
                                             23);
    const __m512i hi_idx = _mm512_add_epi32(lo_idx, _mm512_set1_epi32(8));
    const size_t e_stride = (size_t)p->c_out * ldm;
    const size_t hw = (size_t)p->h_out * (size_t)p->w_out;
    for (int co = 0; co < p->c_out; co++) {
        const __m512 vb = _mm512_set1_ps(bias ? bias[co] : 0.0f);
        for (int a = a0; a < a0 + rows; a++) {
            const float *mrow = mr + (size_t)co * ldm + (size_t)(a - a0) * (size_t)g->tiles_w;
            float *y0 = y + (size_t)co * hw + (size_t)(WINO_M * a) * (size_t)p->w_out;
            const int two_rows = WINO_M * a + 1 < p->h_out;
            for (int b = 0; b < g->tiles_w; b += 16) {
                const __mmask16 m = wino_mask(g->tiles_w - b);
                __m512 s[2][WINO_ALPHA];
                for (int nu = 0; nu < WINO_ALPHA; nu++) {
                    const float *c = mrow + (size_t)nu * e_stride + b;
                    const __m512 m0 = _mm512_maskz_loadu_ps(m, c);
                    const __m512 m1 = _mm512_maskz_loadu_ps(m, c + 4 * e_stride);
                    const __m512 m2 = _mm512_maskz_loadu_ps(m, c + 8 * e_stride);
                    const __m512 m3 = _mm512_maskz_loadu_ps(m, c + 12 * e_stride);
                    s[0][nu] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
                    s[1][nu] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
                }
                const int n_out = kernels_imin(p->w_out - WINO_M * b, 2 * 16);
                for (int i = 0; i < (two_rows ? 2 : 1); i++) {
                    const __m512 y_even = wino_act(
                        _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s[i][0], s[i][1]), s[i][2]), vb),
                        p->act);
                    const __m512 y_odd = wino_act(
                        _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s[i][1], s[i][2]), s[i][3]), vb),
                        p->act);
                    float *yr = y0 + (size_t)i * (size_t)p->w_out + WINO_M * b;
                    _mm512_mask_storeu_ps(yr, wino_mask(n_out),
                                          _mm512_permutex2var_ps(y_even, lo_idx, y_odd));
                    if (n_out > 16)
                        _mm512_mask_storeu_ps(yr + 16, wino_mask(n_out - 16),
                                              _mm512_permutex2var_ps(y_even, hi_idx, y_odd));
                }
            }
        }
    }
}

static WINO_AVX512 void wino_forward_avx512(const conv2d_params *p, const float *x,
                                            const float *packed, const float *bias, float *y,
                                            float *scratch)
{
    const wino_geom g = wino_geom_of(p);
    const size_t max_tiles = (size_t)g.block_rows * (size_t)g.tiles_w;
    float *xp = scratch;
    float *v = xp + wino_round16((size_t)p->c_in * (size_t)g.band_h * (size_t)g.wp);
    float *mr = v + wino_round16((size_t)WINO_E * (size_t)p->c_in * max_tiles);
    float *line = mr + wino_round16((size_t)WINO_E * (size_t)p->c_out * max_tiles);
    const size_t u_stride = (size_t)wino_panels(p) * KERNELS_GEMM_MR * (size_t)p->c_in;
    for (int a0 = 0; a0 < g.tiles_h; a0 += g.block_rows) {
        const int rows = kernels_imin(g.block_rows, g.tiles_h - a0);
        const int n = rows * g.tiles_w;
        wino_pad_input(p, &g, x, WINO_M * a0, xp);
        wino_input(p, &g, xp, a0, rows, v, (size_t)n, line);
        for (int e = 0; e < WINO_E; e++)
            kernels_gemm_avx512(p->c_out, n, p->c_in, packed + (size_t)e * u_stride,
                                v + (size_t)e * (size_t)p->c_in * (size_t)n, (size_t)n,
                                mr + (size_t)e * (size_t)p->c_out * (size_t)n, (size_t)n, NULL,
                                ACT_NONE);
        wino_output(p, &g, mr, (size_t)n, a0, rows, bias, y);
    }
}
#endif

void kernels_wino_forward(const conv2d_params *p, const float *x, const float *packed,
                          const float *bias, float *y, float *scratch)
{
    assert(kernels_wino_applies(p) && kernels_isa_best() >= KERNELS_ISA_AVX512);
#if WINO_X86
    wino_forward_avx512(p, x, packed, bias, y, scratch);
#else
    (void)x, (void)packed, (void)bias, (void)y, (void)scratch;
#endif
}
