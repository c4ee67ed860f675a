/* Winograd convolution on AVX-512 (and AVX2 + FMA: the same passes on 8 tiles per vector, the same
 * bits; see the AVX2 section) for stride-1 convolutions (groups 1) with 3x3, 5x5, 1x7 and 7x1
 * kernels, the path conv2d_plan_init picks for them when the output is large enough to fill
 * the GEMM: F(4x4, 3x3) where there are enough 4x4 tiles, else F(2x2, 3x3); likewise F(4x4, 5x5)
 * or F(2x2, 5x5); for 1x7 / 7x1 (Inception) the 1-D F(6, 7) along rows where there are enough
 * 6-row tiles (1x7 on the transposed maps), else F(2, 7) along the kernel's long axis; on AVX2
 * CPUs, 1x3 / 3x1 by F(2, 3) along the kernel's axis and F(2x2, 3x3) from fewer tiles
 * (Inception's 8x8 maps, see WINO_MIN_TILES_13; about the direct convolution's rounding).
 *
 * Per axis, F(m, r) computes m outputs of an r-tap filter from alpha = m + r - 1 inputs with
 * alpha multiplies; an axis without filtering (1x7's rows) is F(1, 1). Output tiles of
 * m_h x m_w read alpha_h x alpha_w input patches; with the transforms of Lavin & Gray
 *   U = G_h g G_w^T (weights, at pack time), V = B_h^T d B_w (input), Y = A_h^T [U . V] A_w,
 * each tile costs alpha_h alpha_w multiplies per input channel instead of m_h m_w r_h r_w (36 vs
 * 144 for F(4x4, 3x3), 16 vs 36 for F(2x2, 3x3), 64 vs 400 for F(4x4, 5x5), 36 vs 100 for
 * F(2x2, 5x5), 8 vs 14 for F(2, 7), 12 vs 42 for F(6, 7)),
 * and the alpha_h alpha_w element-wise products summed over input channels are as many GEMMs,
 * U[e] (c_out x c_in) times V[e] (c_in x tiles), run by the packed GEMM micro-kernel
 * (kernels_gemm_avx512). The matrices come from Toom-Cook on the points 0, 1, -1 (and 2, -2 when
 * alpha = 6, and 1/2, -1/2 when alpha = 8) and infinity, scaled so B^T is integer (one B^T per
 * alpha: F(4, 3) and F(2, 5) share it, F(4, 5) and F(2, 7) too; F(6, 7) adds +-3/2, +-2/3).
 * The transforms keep 16 tiles of one tile row in the lanes of a vector: a patch column for 16
 * tiles is every m_w-th float of a row, split out of contiguous loads by permutes. Tile rows are
 * processed in blocks whose transformed input and GEMM results stay in L2; the row transform reads
 * the input in place, masking the columns and skipping the rows of the padding. The bias and activation
 * are applied in the output transform, in registers. Rounding error (random data, per layer,
 * relative rms): direct 2e-7, F(2x2, 3x3) 2e-7, F(4x4, 3x3) 2e-6, F(2x2, 5x5) 2e-6,
 * F(4x4, 5x5) 3e-6, F(2, 7) 1.3e-6, AlexNet's 11x11 stride 4 (polyphase, F(4x4, 3x3)) 1.2e-6;
 * F(6, 7) 7x F(2, 7)'s in a float32 simulation (see wino_bt12).
 * Strided convolutions whose kernel spans 2..3 strides (AlexNet's 11x11 stride 4) run as the
 * stride-1 3x3 convolution of their polyphase form (wino_polyphase). */
#include "kernels.h"

#include <assert.h>
#include <string.h>

#include "kernels_internal.h"

#if KERNELS_X86
#include "kernels_avx2.h"
#include "kernels_avx512.h"
#endif

#define WINO_ALPHA_MAX 12 /* patch side of F(6, 7) */
/* With fewer tiles the GEMMs are too narrow to amortize their weights, which are
 * alpha_h alpha_w / (r_h r_w) the direct convolution's: Inception's 8x8 layers (16 tiles, 11 MB
 * of U) ran 2x slower in the network on AVX-512, though faster with the weights in cache. They
 * run im2col (on AVX2 CPUs, see below). */
#define WINO_MIN_TILES 40
/* On AVX2 CPUs (half the AVX-512 GEMM's multiply-adds per cycle, the same memory) the weights
 * matter less, and Winograd takes smaller maps of at least 64 input channels (not in training
 * graphs; the measured cases, Inception's, have 384 and 448): 1x3 / 3x1 by F(2, 3)
 * along the kernel's axis from 32 tiles (Inception's 8x8 maps: 2/3 the multiplies of the GEMM
 * path for 4/3 its weights, -32% per layer), and 3x3 F(2x2, 3x3) from 16 tiles (Inception's 8x8
 * 448 -> 384: 4/9 the multiplies for 16/9 the weights, 11 MB; -45% per layer in the network). Not
 * measured on AVX-512, whose plans stay as they were. These parts split output channels (each
 * thread streams half of U: tiles_h < WINO_PART_MIN_ROWS * 2, or F13 / F31). */
#define WINO_MIN_TILES_13 32
#define WINO_MIN_TILES_AVX2_23 16
#define WINO_AVX2_SMALL_MIN_C_IN 64

/* Whether p may take the AVX2-only plans above. */
static int wino_avx2_small(const conv2d_params *p)
{
    return KERNELS_X86 && cpu_isa_best() < CPU_ISA_AVX512 && !p->train && p->c_in >= WINO_AVX2_SMALL_MIN_C_IN;
}
/* Tiles per block: up to this many, and at most WINO_BLOCK_FLOATS floats of transformed input
 * and GEMM results (2 MiB, about L2; 1 MiB measured 5-30% slower on Inception's 35x35 and 7x1
 * layers); at least one tile row ... */
#define WINO_BLOCK_TILES 256
#define WINO_BLOCK_FLOATS (512 * 1024)
/* ... but at least this many tiles (a GEMM panel), even past WINO_BLOCK_FLOATS: narrower GEMMs
 * cost more than the L2 misses (measured on AlexNet's 13x13 layers: +40%). */
#define WINO_MIN_BLOCK_TILES 64

/* One axis' transform F(m, r). */
typedef enum { WINO_T11 = 0, WINO_T23, WINO_T43, WINO_T25, WINO_T27, WINO_T45, WINO_T67 } wino_axis;

/* F(2, 3): points 0, 1, -1, infinity. */
static const float wino_bt4[4][4] = {
    {1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, -1, 0, 1}};
static const double wino_g23[4][3] = {
    {1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const float wino_at23[2][4] = {{1, 1, 1, 0}, {0, 1, -1, 1}};

/* alpha = 6: points 0, 1, -1, 2, -2, infinity (B^T shared by F(4, 3) and F(2, 5)). */
static const float wino_bt6[6][6] = {
    {4, 0, -5, 0, 1, 0},   {0, 4, 4, -1, -1, 0}, {0, -4, 4, 1, -1, 0},
    {0, -2, -1, 2, 1, 0},  {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
static const double wino_g43[6][3] = {
    {1.0 / 4, 0, 0},           {1.0 / 6, 1.0 / 6, 1.0 / 6}, {1.0 / 6, -1.0 / 6, 1.0 / 6},
    {1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
static const float wino_at43[4][6] = {
    {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
static const double wino_g25[6][5] = {
    {1.0 / 4, 0, 0, 0, 0},
    {1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6},
    {1.0 / 6, -1.0 / 6, 1.0 / 6, -1.0 / 6, 1.0 / 6},
    {1.0 / 24, 1.0 / 12, 1.0 / 6, 1.0 / 3, 2.0 / 3},
    {1.0 / 24, -1.0 / 12, 1.0 / 6, -1.0 / 3, 2.0 / 3},
    {0, 0, 0, 0, 1}};
static const float wino_at25[2][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 1}};

/* F(2, 7): points 0, 1, -1, 2, -2, 1/2, -1/2, infinity. */
static const float wino_bt8[8][8] = {
    {4, 0, -21, 0, 21, 0, -4, 0},          {0, -4, -4, 17, 17, -4, -4, 0},
    {0, 4, -4, -17, 17, 4, -4, 0},         {0, 2, 1, -10, -5, 8, 4, 0},
    {0, -2, 1, 10, -5, -8, 4, 0},          {0, 64, 128, -80, -160, 16, 32, 0},
    {0, -64, 128, 80, -160, -16, 32, 0},   {0, -4, 0, 21, 0, -21, 0, 4}};
static const double wino_g27[8][7] = {
    {1.0 / 4, 0, 0, 0, 0, 0, 0},
    {1.0 / 18, 1.0 / 18, 1.0 / 18, 1.0 / 18, 1.0 / 18, 1.0 / 18, 1.0 / 18},
    {1.0 / 18, -1.0 / 18, 1.0 / 18, -1.0 / 18, 1.0 / 18, -1.0 / 18, 1.0 / 18},
    {1.0 / 360, 1.0 / 180, 1.0 / 90, 1.0 / 45, 2.0 / 45, 4.0 / 45, 8.0 / 45},
    {1.0 / 360, -1.0 / 180, 1.0 / 90, -1.0 / 45, 2.0 / 45, -4.0 / 45, 8.0 / 45},
    {1.0 / 45, 1.0 / 90, 1.0 / 180, 1.0 / 360, 1.0 / 720, 1.0 / 1440, 1.0 / 2880},
    {1.0 / 45, -1.0 / 90, 1.0 / 180, -1.0 / 360, 1.0 / 720, -1.0 / 1440, 1.0 / 2880},
    {0, 0, 0, 0, 0, 0, 1.0 / 4}};
static const float wino_at27[2][8] = {{1, 1, 1, 1, 1, 1, 1, 0},
                                      {0, 1, -1, 2, -2, 0.5f, -0.5f, 1}};

/* F(4, 5): the same points and B^T as F(2, 7); G's rows the same scales times p^j, j < 5. */
static const double wino_g45[8][5] = {
    {1.0 / 4, 0, 0, 0, 0},
    {1.0 / 18, 1.0 / 18, 1.0 / 18, 1.0 / 18, 1.0 / 18},
    {1.0 / 18, -1.0 / 18, 1.0 / 18, -1.0 / 18, 1.0 / 18},
    {1.0 / 360, 1.0 / 180, 1.0 / 90, 1.0 / 45, 2.0 / 45},
    {1.0 / 360, -1.0 / 180, 1.0 / 90, -1.0 / 45, 2.0 / 45},
    {1.0 / 45, 1.0 / 90, 1.0 / 180, 1.0 / 360, 1.0 / 720},
    {1.0 / 45, -1.0 / 90, 1.0 / 180, -1.0 / 360, 1.0 / 720},
    {0, 0, 0, 0, 1.0 / 4}};
static const float wino_at45[4][8] = {{1, 1, 1, 1, 1, 1, 1, 0},
                                      {0, 1, -1, 2, -2, 0.5f, -0.5f, 0},
                                      {0, 1, 1, 4, 4, 0.25f, 0.25f, 0},
                                      {0, 1, -1, 8, -8, 0.125f, -0.125f, 1}};

/* F(6, 7) (inference only, 7x1 and, transposed, 1x7 on maps with enough 6-row tiles): points 0,
 * +-1, +-2, +-1/2, +-3/2, +-2/3, infinity; B^T rows and A^T columns scaled to integers (exact in
 * float), G's rows divided by both scales. 12 multiplies per 6 outputs instead of 8 per 2 (17x17:
 * 3 tiles of 12 instead of 9 of 8 per line); rounding 7x F(2, 7)'s (relative rms 6.4e-6 vs 0.9e-6
 * for 192 input channels, numpy float32 simulation of these matrices), hence not for training;
 * Inception's logits vs PyTorch 2.8e-5 / 2.1e-5 / 2.9e-5 relative with it (bound 1e-4). Of the
 * point pairs tried for the last four (+-3, +-1/3, +-3/4, +-4/3, +-1/4, +-4), these round least. */
static const float wino_bt12[12][12] = {
    {144, 0, -1144, 0, 2937, 0, -2937, 0, 1144, 0, -144, 0},
    {0, 144, 144, -1000, -1000, 1937, 1937, -1000, -1000, 144, 144, 0},
    {0, -144, 144, 1000, -1000, -1937, 1937, 1000, -1000, -144, 144, 0},
    {0, 72, 36, -554, -277, 1330, 665, -1136, -568, 288, 144, 0},
    {0, -72, 36, 554, -277, -1330, 665, 1136, -568, -288, 144, 0},
    {0, 144, 288, -568, -1136, 665, 1330, -277, -554, 36, 72, 0},
    {0, -144, 288, 568, -1136, -665, 1330, 277, -554, -36, 72, 0},
    {0, -48, -32, 360, 240, -819, -546, 615, 410, -108, -72, 0},
    {0, 48, -32, -360, 240, 819, -546, -615, 410, 108, -72, 0},
    {0, -72, -108, 410, 615, -546, -819, 240, 360, -32, -48, 0},
    {0, 72, -108, -410, 615, 546, -819, -240, 360, 32, -48, 0},
    {0, -144, 0, 1144, 0, -2937, 0, 2937, 0, -1144, 0, 144}};
static const double wino_g67[12][7] = {
    {1.0 / 144, 0, 0, 0, 0, 0, 0},
    {1.0 / 450, 1.0 / 450, 1.0 / 450, 1.0 / 450, 1.0 / 450, 1.0 / 450, 1.0 / 450},
    {1.0 / 450, -1.0 / 450, 1.0 / 450, -1.0 / 450, 1.0 / 450, -1.0 / 450, 1.0 / 450},
    {1.0 / 80640, 1.0 / 40320, 1.0 / 20160, 1.0 / 10080, 1.0 / 5040, 1.0 / 2520, 1.0 / 1260},
    {1.0 / 80640, -1.0 / 40320, 1.0 / 20160, -1.0 / 10080, 1.0 / 5040, -1.0 / 2520, 1.0 / 1260},
    {1.0 / 1260, 1.0 / 2520, 1.0 / 5040, 1.0 / 10080, 1.0 / 20160, 1.0 / 40320, 1.0 / 80640},
    {1.0 / 1260, -1.0 / 2520, 1.0 / 5040, -1.0 / 10080, 1.0 / 20160, -1.0 / 40320, 1.0 / 80640},
    {1.0 / 81900, 1.0 / 54600, 1.0 / 36400, 3.0 / 72800, 9.0 / 145600, 27.0 / 291200, 81.0 / 582400},
    {1.0 / 81900, -1.0 / 54600, 1.0 / 36400, -3.0 / 72800, 9.0 / 145600, -27.0 / 291200, 81.0 / 582400},
    {81.0 / 582400, 27.0 / 291200, 9.0 / 145600, 3.0 / 72800, 1.0 / 36400, 1.0 / 54600, 1.0 / 81900},
    {81.0 / 582400, -27.0 / 291200, 9.0 / 145600, -3.0 / 72800, 1.0 / 36400, -1.0 / 54600, 1.0 / 81900},
    {0, 0, 0, 0, 0, 0, 1.0 / 144}};
static const float wino_at67[6][12] = {
    {1, 1, 1, 1, 1, 32, 32, 32, 32, 243, 243, 0},
    {0, 1, -1, 2, -2, 16, -16, 48, -48, 162, -162, 0},
    {0, 1, 1, 4, 4, 8, 8, 72, 72, 108, 108, 0},
    {0, 1, -1, 8, -8, 4, -4, 108, -108, 72, -72, 0},
    {0, 1, 1, 16, 16, 2, 2, 162, 162, 48, 48, 0},
    {0, 1, -1, 32, -32, 1, -1, 243, -243, 32, -32, 1}};

/* Per-axis properties; constant-folded where the axis is. */
static inline int wino_am(wino_axis t)
{
    return t == WINO_T11 ? 1 : t == WINO_T43 || t == WINO_T45 ? 4 : t == WINO_T67 ? 6 : 2;
}
static inline int wino_ar(wino_axis t)
{
    return t == WINO_T11 ? 1 : t == WINO_T25 || t == WINO_T45 ? 5 : t == WINO_T27 || t == WINO_T67 ? 7 : 3;
}
static inline int wino_aa(wino_axis t) { return wino_am(t) + wino_ar(t) - 1; }
static inline float wino_bt(wino_axis t, int i, int j)
{
    switch (t) {
    case WINO_T11: return 1.0f;
    case WINO_T23: return wino_bt4[i][j];
    case WINO_T27:
    case WINO_T45: return wino_bt8[i][j];
    case WINO_T67: return wino_bt12[i][j];
    default: return wino_bt6[i][j];
    }
}
static inline double wino_gm(wino_axis t, int i, int j)
{
    switch (t) {
    case WINO_T11: return 1.0;
    case WINO_T23: return wino_g23[i][j];
    case WINO_T43: return wino_g43[i][j];
    case WINO_T25: return wino_g25[i][j];
    case WINO_T45: return wino_g45[i][j];
    case WINO_T67: return wino_g67[i][j];
    default: return wino_g27[i][j];
    }
}
static inline float wino_at(wino_axis t, int i, int j)
{
    switch (t) {
    case WINO_T11: return 1.0f;
    case WINO_T23: return wino_at23[i][j];
    case WINO_T43: return wino_at43[i][j];
    case WINO_T25: return wino_at25[i][j];
    case WINO_T45: return wino_at45[i][j];
    case WINO_T67: return wino_at67[i][j];
    default: return wino_at27[i][j];
    }
}

/* The convolutions' variants: transform along rows (h) and columns (w). */
typedef enum {
    WINO_F23 = 0, WINO_F43, WINO_F25, WINO_F45, WINO_F17, WINO_F71, WINO_F71_6,
    WINO_F13, WINO_F31 /* AVX2 only (wino_pick) */
} wino_variant;
static inline wino_axis wino_axis_h(wino_variant v)
{
    return v == WINO_F23 ? WINO_T23 : v == WINO_F43 ? WINO_T43 : v == WINO_F25 ? WINO_T25
                                    : v == WINO_F45 ? WINO_T45 : v == WINO_F17 ? WINO_T11
                                    : v == WINO_F71_6 ? WINO_T67 : v == WINO_F13 ? WINO_T11
                                    : v == WINO_F31 ? WINO_T23 : WINO_T27;
}
static inline wino_axis wino_axis_w(wino_variant v)
{
    return v == WINO_F23 ? WINO_T23 : v == WINO_F43 ? WINO_T43 : v == WINO_F25 ? WINO_T25
                                    : v == WINO_F45 ? WINO_T45 : v == WINO_F17 ? WINO_T27
                                    : v == WINO_F13 ? WINO_T23 : WINO_T11; /* F71, F71_6, F31 */
}

/* Geometry of one convolution's Winograd pass. */
typedef struct {
    wino_variant var;
    int m_h, m_w, r_h, r_w; /* tile and kernel sides per axis */
    int alpha_h, alpha_w, n_e; /* patch sides m + r - 1, alpha_h alpha_w GEMMs */
    int tiles_h, tiles_w;   /* tile grid */
    int wp;                 /* padded input row: the grid's patches, m_w*tiles_w + r_w - 1 */
    int block_rows;         /* most tile rows of a block (blocks of a range of tile rows are as
                               even as can be: wino_blocks) */
    int band_h;             /* padded input rows a block reads: m_h*block_rows + r_h - 1 */
    int row_floats;         /* floats of one row-transform line (the column step's loads of the
                               last vector of tiles stay inside) */
} wino_geom;

/* Cost of a GEMM over n columns in lanes: whole 64-column tiles, and a tail tile of
 * ceil(tail / 16) vectors (16k + 1 columns: k vectors and one transposed column) plus about a
 * vector of overhead: a tile of one vector broadcasts as many weights as one of four. */
static int wino_gemm_lanes(int n)
{
    const int tail = n % 64;
    if (tail == 0) return n;
    const int tail_lanes = tail % 16 == 1 && tail > 1 ? tail - 1 + 3 : (tail + 15) / 16 * 16;
    return n - tail + tail_lanes + 16;
}

/* Share of the GEMM lanes that compute tiles when tiles_h tile rows of tiles_w tiles run in n_b
 * even blocks. */
static double wino_lane_use(int tiles_h, int n_b, int tiles_w)
{
    const int q = tiles_h / n_b, n_big = tiles_h % n_b;
    const int lanes = (n_b - n_big) * wino_gemm_lanes(q * tiles_w) + n_big * wino_gemm_lanes((q + 1) * tiles_w);
    return (double)(tiles_h * tiles_w) / (double)lanes;
}

static wino_geom wino_geom_var(const conv2d_params *p, wino_variant var)
{
    wino_geom g;
    const wino_axis th = wino_axis_h(var), tw = wino_axis_w(var);
    g.var = var;
    g.m_h = wino_am(th);
    g.m_w = wino_am(tw);
    g.r_h = wino_ar(th);
    g.r_w = wino_ar(tw);
    g.alpha_h = wino_aa(th);
    g.alpha_w = wino_aa(tw);
    g.n_e = g.alpha_h * g.alpha_w;
    g.tiles_h = (p->h_out + g.m_h - 1) / g.m_h;
    g.tiles_w = (p->w_out + g.m_w - 1) / g.m_w;
    g.wp = g.m_w * g.tiles_w + g.r_w - 1;
    const int per_row = g.n_e * (p->c_in + p->c_out) * g.tiles_w;
    const int rows = kernels_imax(
        kernels_imin(WINO_BLOCK_TILES / g.tiles_w, WINO_BLOCK_FLOATS / per_row),
        (WINO_MIN_BLOCK_TILES + g.tiles_w - 1) / g.tiles_w);
    /* the nearest whole number of blocks of about that many rows, evened out: no short last
     * block (Inception's 35x35: 9 tile rows were 8 + 1, a 9-column GEMM per 72); or one or two
     * blocks fewer, or one more, where their GEMMs waste clearly fewer lanes (wino_lane_use) */
    const int target = kernels_imax(1, kernels_imin(rows, g.tiles_h));
    const int nb0 = kernels_imax(1, (g.tiles_h + target / 2) / target);
    static const int tries[] = {0, -1, 1, -2};
    int n_blocks = nb0;
    double best = wino_lane_use(g.tiles_h, nb0, g.tiles_w);
    for (int i = 1; i < 4; i++) {
        const int nb = nb0 + tries[i];
        if (nb < 1 || nb > g.tiles_h) continue;
        const double use = wino_lane_use(g.tiles_h, nb, g.tiles_w);
        if (use > best + 0.03) best = use, n_blocks = nb;
    }
    g.block_rows = (g.tiles_h + n_blocks - 1) / n_blocks;
    g.band_h = g.m_h * g.block_rows + g.r_h - 1;
    g.row_floats = g.m_w * ((g.tiles_w + 15) / 16 * 16) + 64 + g.r_w;
    return g;
}

/* Tiles of m_h x m_w outputs. */
static int wino_tiles(const conv2d_params *p, int m_h, int m_w)
{
    return ((p->h_out + m_h - 1) / m_h) * ((p->w_out + m_w - 1) / m_w);
}

/* The variant p takes, or -1: F(4x4, 3x3) when it has enough tiles, else F(2x2, 3x3); F(4x4, 5x5)
 * (not in training) or F(2x2, 5x5); F(6, 7) along the rows of 7x1 (not in training), else F(2, 7)
 * along the long axis of 1x7 / 7x1 (1x7 convolutions that could take F(6, 7) come here as the 7x1
 * convolution of their transposed maps, see wino_transposed). */
static int wino_pick(const conv2d_params *p)
{
    if (p->stride_h != 1 || p->stride_w != 1 || p->groups != 1) return -1;
    const int kh = p->k_h, kw = p->k_w;
    if (kh == 3 && kw == 3) {
        if (wino_tiles(p, 4, 4) >= WINO_MIN_TILES) return WINO_F43;
        const int min_tiles = wino_avx2_small(p) ? WINO_MIN_TILES_AVX2_23 : WINO_MIN_TILES;
        return wino_tiles(p, 2, 2) >= min_tiles ? WINO_F23 : -1;
    }
    if (kh == 5 && kw == 5) {
        if (!p->train && wino_tiles(p, 4, 4) >= WINO_MIN_TILES) return WINO_F45;
        return wino_tiles(p, 2, 2) >= WINO_MIN_TILES ? WINO_F25 : -1;
    }
    if (kh == 1 && kw == 7) return wino_tiles(p, 1, 2) >= WINO_MIN_TILES ? WINO_F17 : -1;
    if ((kh == 1 && kw == 3) || (kh == 3 && kw == 1)) {
        if (!wino_avx2_small(p) || wino_tiles(p, kh == 1 ? 1 : 2, kh == 1 ? 2 : 1) < WINO_MIN_TILES_13) return -1;
        return kh == 1 ? WINO_F13 : WINO_F31;
    }
    if (kh == 7 && kw == 1) {
        if (!p->train && wino_tiles(p, 6, 1) >= WINO_MIN_TILES) return WINO_F71_6;
        return wino_tiles(p, 2, 1) >= WINO_MIN_TILES ? WINO_F71 : -1;
    }
    return -1;
}

static wino_geom wino_geom_of(const conv2d_params *p)
{
    const int var = wino_pick(p);
    assert(var >= 0);
    return wino_geom_var(p, (wino_variant)var);
}

/* Strided convolutions as stride-1 ones (polyphase form): with stride s, output (oh, ow) reads
 * input (s*oh + i - pad_t, s*ow + j - pad_l); writing i = s*a + ph, j = s*b + pw, that is a
 * stride-1 unpadded convolution with ceil(k / s) taps per axis over the s*s*c_in phase planes
 *   x'[(c*s + ph)*s + pw][u][v] = x[c][s*u + ph - pad_t][s*v + pw - pad_l] (zero outside),
 * kernel w'[co][(c*s + ph)*s + pw][a][b] = w[co][c][s*a + ph][s*b + pw] (zero past k).
 * Taken when that is 3x3 (2s < k <= 3s on both axes): AlexNet's 11x11 stride 4 becomes 48 planes
 * of 57x57 and a 3x3 kernel (1.19x the taps of 11x11), which F(4x4, 3x3) computes with a
 * quarter of the multiplies per tap. Not in training graphs (p->train), nor F(4x4, 5x5): the
 * changed rounding (1.2e-6 / 3e-6 relative) fails the whole-model training checks (AlexNet: one
 * ReLU input within 3e-6 of 0 flips, and 3 SGD / Adam steps compound it past their bounds). */
static int wino_polyphase(const conv2d_params *p)
{
    const int s = p->stride_h;
    return !p->train && s >= 2 && p->stride_w == s && p->groups == 1 && p->k_h > 2 * s && p->k_h <= 3 * s &&
           p->k_w > 2 * s && p->k_w <= 3 * s;
}

/* 1x7 convolutions that F(6, 7) suits (not in training) run as the 7x1 convolution of the
 * transposed maps, which F(6, 7) computes along rows: its tiles then keep 16 output columns in the
 * lanes (6-column tiles along rows would leave 13 of 16 lanes idle on 17-wide maps). The input
 * band is gathered transposed and the output scattered back (wino_pad_input_t, wino_output_v). */
static int wino_transposed(const conv2d_params *p)
{
    return !p->train && p->stride_h == 1 && p->stride_w == 1 && p->groups == 1 && p->k_h == 1 &&
           p->k_w == 7 && wino_tiles(p, 1, 6) >= WINO_MIN_TILES;
}

/* The stride-1 convolution the Winograd pass computes for p: p itself, its transpose (the output's
 * transpose) or its polyphase form (the same output). */
static conv2d_params wino_conv_of(const conv2d_params *p)
{
    if (wino_transposed(p)) {
        conv2d_params q = *p;
        q.h_in = p->w_in, q.w_in = p->h_in, q.h_out = p->w_out, q.w_out = p->h_out;
        q.k_h = p->k_w, q.k_w = p->k_h;
        q.pad_t = p->pad_l, q.pad_l = p->pad_t, q.pad_b = p->pad_r, q.pad_r = p->pad_b;
        return q;
    }
    if (!wino_polyphase(p)) return *p;
    conv2d_params q = *p;
    const int s = p->stride_h;
    q.c_in = p->c_in * s * s;
    q.k_h = q.k_w = 3;
    q.stride_h = q.stride_w = 1;
    q.pad_t = q.pad_l = q.pad_b = q.pad_r = 0;
    q.h_in = p->h_out + 2;
    q.w_in = p->w_out + 2;
    return q;
}

/* Floats of the polyphase planes x' (0 for stride-1 convolutions), 16-float aligned. */
static size_t wino_polyphase_floats(const conv2d_params *p)
{
    if (!wino_polyphase(p)) return 0;
    const conv2d_params q = wino_conv_of(p);
    return ((size_t)q.c_in * (size_t)q.h_in * (size_t)q.w_in + 15) / 16 * 16;
}

int kernels_wino_applies(const conv2d_params *p)
{
    const conv2d_params q = wino_conv_of(p);
    return wino_pick(&q) >= 0;
}

static int wino_panels(const conv2d_params *p)
{
    return (p->c_out + KERNELS_GEMM_MR - 1) / KERNELS_GEMM_MR;
}

size_t kernels_wino_packed_floats(const conv2d_params *p)
{
    const conv2d_params q = wino_conv_of(p);
    const wino_geom g = wino_geom_of(&q);
    return (size_t)g.n_e * (size_t)wino_panels(&q) * KERNELS_GEMM_MR * (size_t)q.c_in;
}

/* U[e] for every element e = alpha_w*xi + nu, packed as GEMM left operands (c_out x c_in each):
 * u = sum over taps (i, j) of (G_h[xi][i] * g[i][j]) * G_w[nu][j] in double, the products
 * G_h * g shared by the alpha_w elements of a row xi (the training engine repacks every step, its
 * data gradients' transposed kernels too). WINO_PACK_LANES input channels at once, one per lane:
 * each lane does the same double multiplies and adds in the same order (the build contracts no
 * FMA), so the bits are those of one channel at a time; the lanes vectorize on AVX-512. */
#define WINO_PACK_LANES 8
enum { WINO_PACK_MAX_A = 12, WINO_PACK_MAX_R = 7 };

typedef double wino_v8d __attribute__((vector_size(WINO_PACK_LANES * sizeof(double))));

/* Tap t of input channel ci of output channel co of wino_conv_of(p), from p's weights. */
static double wino_tap(const conv2d_params *p, const float *w, int co, int ci, int t)
{
    if (!wino_polyphase(p))
        return (double)w[((size_t)co * (size_t)p->c_in + (size_t)ci) * (size_t)(p->k_h * p->k_w) + (size_t)t];
    const int s = p->stride_h, i = s * (t / 3) + ci / s % s, j = s * (t % 3) + ci % s;
    if (i >= p->k_h || j >= p->k_w) return 0.0;
    return (double)w[(((size_t)co * (size_t)p->c_in + (size_t)(ci / (s * s))) * (size_t)p->k_h + (size_t)i) *
                         (size_t)p->k_w + (size_t)j];
}

static inline __attribute__((always_inline)) void
wino_pack_lanes_v(const conv2d_params *p, const wino_geom *g, const double (*gh)[WINO_PACK_MAX_R],
                  const double (*gw)[WINO_PACK_MAX_R], const float *w, int co, int ci0, int n, float *packed,
                  size_t plane)
{
    const int taps = g->r_h * g->r_w, c_in = wino_conv_of(p).c_in;
    wino_v8d f[WINO_PACK_MAX_R * WINO_PACK_MAX_R], a[WINO_PACK_MAX_R * WINO_PACK_MAX_R];
    for (int t = 0; t < taps; t++)
        for (int l = 0; l < WINO_PACK_LANES; l++)
            f[t][l] = l < n ? wino_tap(p, w, co, ci0 + l, t) : 0.0;
    for (int xi = 0; xi < g->alpha_h; xi++) {
        for (int t = 0; t < taps; t++) a[t] = gh[xi][t / g->r_w] * f[t];
        wino_v8d u[WINO_PACK_MAX_A] = {{0}}; /* the alpha_w sums side by side (independent chains) */
        for (int t = 0; t < taps; t++)
            for (int nu = 0; nu < g->alpha_w; nu++) u[nu] += a[t] * gw[nu][t % g->r_w];
        for (int nu = 0; nu < g->alpha_w; nu++) {
            float *e_at = packed + (size_t)(xi * g->alpha_w + nu) * plane;
            for (int l = 0; l < n; l++) e_at[kernels_gemm_a_offset(p->c_out, c_in, co, ci0 + l)] = (float)u[nu][l];
        }
    }
}

/* wino_pack_lanes_v on the CPU's widest vectors (the same double operations: the same bits). */
#if KERNELS_X86
static KERNELS_AVX512 void wino_pack_lanes_avx512(const conv2d_params *p, const wino_geom *g,
                                                  const double (*gh)[WINO_PACK_MAX_R],
                                                  const double (*gw)[WINO_PACK_MAX_R], const float *w, int co,
                                                  int ci0, int n, float *packed, size_t plane)
{
    wino_pack_lanes_v(p, g, gh, gw, w, co, ci0, n, packed, plane);
}
static KERNELS_AVX2 void wino_pack_lanes_avx2(const conv2d_params *p, const wino_geom *g,
                                              const double (*gh)[WINO_PACK_MAX_R], const double (*gw)[WINO_PACK_MAX_R],
                                              const float *w, int co, int ci0, int n, float *packed, size_t plane)
{
    wino_pack_lanes_v(p, g, gh, gw, w, co, ci0, n, packed, plane);
}
#endif

static void wino_pack_lanes(const conv2d_params *p, const wino_geom *g, const double (*gh)[WINO_PACK_MAX_R],
                            const double (*gw)[WINO_PACK_MAX_R], const float *w, int co, int ci0, int n,
                            float *packed, size_t plane)
{
#if KERNELS_X86
    if (cpu_isa_best() >= CPU_ISA_AVX512)
        wino_pack_lanes_avx512(p, g, gh, gw, w, co, ci0, n, packed, plane);
    else
        wino_pack_lanes_avx2(p, g, gh, gw, w, co, ci0, n, packed, plane);
#else
    wino_pack_lanes_v(p, g, gh, gw, w, co, ci0, n, packed, plane);
#endif
}

void kernels_wino_pack(const conv2d_params *p, const float *w, float *packed)
{
    const conv2d_params q = wino_conv_of(p);
    const wino_geom g = wino_geom_of(&q);
    const wino_axis th = wino_axis_h(g.var), tw = wino_axis_w(g.var);
    const int c_in = q.c_in, rows = wino_panels(p) * KERNELS_GEMM_MR;
    const size_t plane = (size_t)rows * (size_t)c_in;
    assert(g.alpha_h <= WINO_PACK_MAX_A && g.alpha_w <= WINO_PACK_MAX_A && g.r_h <= WINO_PACK_MAX_R &&
           g.r_w <= WINO_PACK_MAX_R);
    double gh[WINO_PACK_MAX_A][WINO_PACK_MAX_R], gw[WINO_PACK_MAX_A][WINO_PACK_MAX_R];
    for (int x = 0; x < g.alpha_h; x++)
        for (int i = 0; i < g.r_h; i++) gh[x][i] = wino_gm(th, x, i);
    for (int x = 0; x < g.alpha_w; x++)
        for (int j = 0; j < g.r_w; j++) gw[x][j] = wino_gm(tw, x, j);
    for (int co = 0; co < rows; co++) {
        if (co >= p->c_out) { /* padding rows of the last panel */
            for (int ci = 0; ci < c_in; ci++)
                for (int e = 0; e < g.n_e; e++)
                    packed[kernels_gemm_a_offset(p->c_out, c_in, co, ci) + (size_t)e * plane] = 0.0f;
            continue;
        }
        for (int ci = 0; ci < c_in; ci += WINO_PACK_LANES)
            wino_pack_lanes(p, &g, gh, gw, w, co, ci, kernels_imin(WINO_PACK_LANES, c_in - ci), packed, plane);
    }
}

/* Scratch: the block's band of padded input (transposed 1x7 only), transformed input V (E x c_in x block tiles), GEMM
 * results (E x c_out x block tiles), row-transform lines (alpha_h x row_floats); each 16-float
 * aligned. */
static size_t wino_round16(size_t n) { return (n + 15) / 16 * 16; }

/* Floats of the transposed input band (wino_pad_input_t; 0 for the convolutions read in place):
 * q = wino_conv_of(p), g its geometry. */
static size_t wino_band_floats(const conv2d_params *p, const conv2d_params *q, const wino_geom *g)
{
    return wino_transposed(p) ? wino_round16((size_t)q->c_in * (size_t)g->band_h * (size_t)g->wp) : 0;
}

size_t kernels_wino_scratch_floats(const conv2d_params *p)
{
    const conv2d_params q = wino_conv_of(p);
    const wino_geom g = wino_geom_of(&q);
    const size_t tiles = (size_t)g.block_rows * (size_t)g.tiles_w;
    return wino_polyphase_floats(p) + wino_band_floats(p, &q, &g) +
           wino_round16((size_t)g.n_e * (size_t)q.c_in * tiles) +
           wino_round16((size_t)g.n_e * (size_t)p->c_out * tiles) +
           (size_t)g.alpha_h * (size_t)g.row_floats;
}

#if KERNELS_X86
/* Rows [u0, u1) of every polyphase plane x' of p (see wino_polyphase); the columns inside the
 * input by 16-lane gathers of every s-th float. */
static KERNELS_AVX512 void wino_polyphase_input(const conv2d_params *p, const float *x, int u0, int u1,
                                             float *xs)
{
    const int s = p->stride_h, hq = p->h_out + 2, wq = p->w_out + 2;
    const __m512i idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(s));
    for (int c = 0; c < p->c_in; c++)
        for (int ph = 0; ph < s; ph++)
            for (int pw = 0; pw < s; pw++) {
                float *plane = xs + (size_t)((c * s + ph) * s + pw) * (size_t)hq * (size_t)wq;
                /* columns v with 0 <= s*v + off < w_in */
                const int off = pw - p->pad_l, last = p->w_in - 1 - off;
                const int v_lo = kernels_imin(off >= 0 ? 0 : (-off + s - 1) / s, wq);
                const int v_hi = kernels_imax(v_lo, last < 0 ? 0 : kernels_imin(wq, last / s + 1));
                for (int u = u0; u < u1; u++) {
                    float *d = plane + (size_t)u * (size_t)wq;
                    const int ih = s * u + ph - p->pad_t;
                    if (ih < 0 || ih >= p->h_in) {
                        memset(d, 0, (size_t)wq * sizeof *d);
                        continue;
                    }
                    const float *row = x + ((size_t)c * (size_t)p->h_in + (size_t)ih) * (size_t)p->w_in;
                    /* the first plane of a phase row reads its input rows first: the next one into
                     * L1 now (its gathers otherwise wait on memory for every line; the input is
                     * an image, not in cache in the bench); the other planes find them there */
                    if (pw == 0 && ih + s < p->h_in)
                        kernels_prefetch_floats(row + (size_t)s * (size_t)p->w_in, p->w_in);
                    for (int v = 0; v < v_lo; v++) d[v] = 0.0f;
                    for (int v = v_lo; v < v_hi; v += 16) {
                        const __mmask16 m = kernels_avx512_mask(v_hi - v);
                        _mm512_mask_storeu_ps(d + v, m,
                                              _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx,
                                                                       row + (s * v + off), 4));
                    }
                    for (int v = v_hi; v < wq; v++) d[v] = 0.0f;
                }
            }
}

/* Band of the padded input from padded row r0 for the transposed maps: p is the transposed
 * convolution (wino_conv_of) and x is stored as its transpose, x[c][iw][ih]:
 * xp[c][r][q] = x[c][q - pad_l][r0 + r - pad_t], zero outside, r < band_h; each padded row's
 * columns gathered at stride h_in. (Other convolutions read their input in place, wino_src.) */
static KERNELS_AVX512 void wino_pad_input_t(const conv2d_params *p, const wino_geom *g, const float *x,
                                         int r0, float *xp)
{
    const int lo = kernels_imin(p->pad_l, g->wp);
    const int hi = kernels_imax(lo, kernels_imin(p->pad_l + p->w_in, g->wp));
    const __m512i idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(p->h_in));
    for (int c = 0; c < p->c_in; c++)
        for (int r = 0; r < g->band_h; r++) {
            float *d = xp + ((size_t)c * (size_t)g->band_h + (size_t)r) * (size_t)g->wp;
            const int ih = r0 + r - p->pad_t;
            if (ih < 0 || ih >= p->h_in) {
                memset(d, 0, (size_t)g->wp * sizeof *d);
                continue;
            }
            const float *s = x + ((size_t)c * (size_t)p->w_in + (size_t)(lo - p->pad_l)) * (size_t)p->h_in + (size_t)ih;
            memset(d, 0, (size_t)lo * sizeof *d);
            for (int q = lo; q < hi; q += 16) {
                const __mmask16 m = kernels_avx512_mask(hi - q);
                _mm512_mask_storeu_ps(d + q, m,
                                      _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx,
                                                               s + (size_t)(q - lo) * (size_t)p->h_in, 4));
            }
            memset(d + hi, 0, (size_t)(g->wp - hi) * sizeof *d);
        }
}

/* sum over j < n of c(i, j) * v[j] for a constant coefficient row of axis t's B^T (is_bt) or
 * A^T: zero terms skipped, +-1 as add / subtract, others multiplied (folded at compile time per
 * axis). */
static inline __attribute__((always_inline)) KERNELS_AVX512 __m512
wino_comb(const wino_axis t, const int n, const int is_bt, int i, const __m512 *v)
{
    __m512 acc = _mm512_setzero_ps();
    int first = 1;
#pragma GCC unroll 12
    for (int j = 0; j < n; j++) {
        const float c = is_bt ? wino_bt(t, i, j) : wino_at(t, i, j);
        if (c == 0.0f) continue;
        if (first) {
            acc = c == 1.0f ? v[j] : _mm512_mul_ps(_mm512_set1_ps(c), v[j]);
            first = 0;
        } else if (c == 1.0f) {
            acc = _mm512_add_ps(acc, v[j]);
        } else if (c == -1.0f) {
            acc = _mm512_sub_ps(acc, v[j]);
        } else {
            acc = _mm512_fmadd_ps(_mm512_set1_ps(c), v[j], acc);
        }
    }
    return acc;
}

/* c[j] = l[m*t + j] for the 16 tiles t of a vector, j < alpha: every m-th float, split out of
 * contiguous loads by permutes (m = 4: two 8-lane halves joined by a 128-bit shuffle). */
static inline __attribute__((always_inline)) KERNELS_AVX512 void
wino_columns(const int m, const int alpha, const float *l, __m512 *c)
{
    if (m == 1) {
#pragma GCC unroll 12
        for (int j = 0; j < alpha; j++) c[j] = _mm512_loadu_ps(l + j);
        return;
    }
    if (m == 2) {
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24,
                                               26, 28, 30);
        const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
#pragma GCC unroll 4
        for (int k = 0; k < alpha; k += 2) {
            const __m512 lo = _mm512_loadu_ps(l + k), hi = _mm512_loadu_ps(l + k + 16);
            c[k] = _mm512_permutex2var_ps(lo, even, hi);
            c[k + 1] = _mm512_permutex2var_ps(lo, odd, hi);
        }
        return;
    }
    const __m512i idx0 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
#pragma GCC unroll 2
    for (int k = 0; k < alpha; k += 4) { /* columns k .. k+3 from the loads at l + k */
        const __m512 v0 = _mm512_loadu_ps(l + k), v1 = _mm512_loadu_ps(l + k + 16);
        const __m512 v2 = _mm512_loadu_ps(l + k + 32), v3 = _mm512_loadu_ps(l + k + 48);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            if (k + j >= alpha) break;
            const __m512i idx = _mm512_add_epi32(idx0, _mm512_set1_epi32(j));
            const __m512 lo = _mm512_permutex2var_ps(v0, idx, v1); /* tiles 0..7 in lanes 0..7 */
            const __m512 hi = _mm512_permutex2var_ps(v2, idx, v3); /* tiles 8..15 in lanes 0..7 */
            c[k + j] = _mm512_shuffle_f32x4(lo, hi, _MM_SHUFFLE(1, 0, 1, 0));
        }
    }
}

/* Where the row transform reads the padded input: padded row r of the block (from padded row
 * m_h*a0) and column c of channel ci are x[ci*plane + (row0 + r)*ld + c - col0] when
 * 0 <= row0 + r < rows and 0 <= c - col0 < cols, else zero. Either the input itself (row0 =
 * m_h*a0 - pad_t, col0 = pad_l: no copy) or a band copied first (wino_pad_input_t). */
typedef struct {
    const float *x;
    size_t plane;
    int ld, row0, rows, col0, cols;
} wino_src;

/* V for tile rows [a0, a0 + rows) of every input channel from src: v[(e*c_in + ci)*ldv + t]
 * with t the tile's index in the block (row-major). line: alpha_h row-transform lines. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void
wino_input_v(const wino_variant var, const conv2d_params *p, const wino_geom *g, const wino_src *src,
             int a0, int rows, float *v, size_t ldv, float *line)
{
    const wino_axis th = wino_axis_h(var), tw = wino_axis_w(var);
    const int m_h = wino_am(th), m_w = wino_am(tw), alpha_h = wino_aa(th), alpha_w = wino_aa(tw);
    const int lf = g->row_floats, n_cols = g->wp;
    const size_t e_stride = (size_t)p->c_in * ldv;
    for (int ci = 0; ci < p->c_in; ci++) {
        const float *xc = src->x + (size_t)ci * src->plane;
        for (int a = a0; a < a0 + rows; a++) {
            /* rows: line[xi] = sum over the patch rows of B_h^T[xi][row] * d_row */
            const int r0 = src->row0 + m_h * (a - a0);
            for (int q = 0; q < n_cols; q += 16) {
                /* the lanes inside the input; the address of lane 0 may lie before the row (a
                 * masked-off lane is not read) */
                const __mmask16 mk = kernels_avx512_mask(n_cols - q) &
                                     kernels_avx512_range_mask(kernels_imax(0, src->col0 - q),
                                                               kernels_imin(16, src->col0 + src->cols - q));
                __m512 dr[WINO_ALPHA_MAX];
#pragma GCC unroll 12
                for (int k = 0; k < alpha_h; k++) {
                    const int r = r0 + k;
                    dr[k] = r < 0 || r >= src->rows
                                ? _mm512_setzero_ps()
                                : _mm512_maskz_loadu_ps(
                                      mk, (const float *)((uintptr_t)(xc + (size_t)r * (size_t)src->ld) +
                                                          (uintptr_t)((intptr_t)(q - src->col0) *
                                                                      (intptr_t)sizeof(float))));
                }
#pragma GCC unroll 12
                for (int xi = 0; xi < alpha_h; xi++)
                    _mm512_storeu_ps(line + (size_t)xi * (size_t)lf + q,
                                     wino_comb(th, alpha_h, 1, xi, dr));
            }
            /* columns of 16 tiles: c_j = line[m_w*tile + j]; combined by B_w */
            float *vrow = v + (size_t)ci * ldv + (size_t)(a - a0) * (size_t)g->tiles_w;
            for (int b = 0; b < g->tiles_w; b += 16) {
                const __mmask16 mk = kernels_avx512_mask(g->tiles_w - b);
#pragma GCC unroll 12
                for (int xi = 0; xi < alpha_h; xi++) {
                    __m512 c[WINO_ALPHA_MAX];
                    wino_columns(m_w, alpha_w, line + (size_t)xi * (size_t)lf + (size_t)(m_w * b), c);
                    float *o = vrow + (size_t)(xi * alpha_w) * e_stride + b;
#pragma GCC unroll 12
                    for (int nu = 0; nu < alpha_w; nu++)
                        _mm512_mask_storeu_ps(o + (size_t)nu * e_stride, mk,
                                              wino_comb(tw, alpha_w, 1, nu, c));
                }
            }
        }
    }
}

/* Variants without a column transform (alpha_w = 1: 7x1 along rows, transposed 1x7) on maps at
 * least 16 tiles wide take their 16 lanes from the block's tiles in order across tile rows (a
 * vector holds the end of one tile row and the start of the next: 17x17 F(6, 7)'s 3 x 17 tiles
 * in 4 vectors instead of 3 x 2) and transform straight into V, with no row-transform line. Each
 * tile's values are those of wino_input_v / wino_output_v. */
static int wino_flat(const wino_geom *g) { return g->alpha_w == 1 && g->tiles_w >= 16; }

/* Lanes of the 16 block tiles from t: [0, split) in tile row a, the rest in row a + 1 (tiles_w >= 16). */
typedef struct {
    int a, col, split;
    __mmask16 all, lo, hi;
} wino_flat_lanes;

static inline __attribute__((always_inline)) KERNELS_AVX512 wino_flat_lanes wino_flat_at(const wino_geom *g, int a0,
                                                                                         int t, int n)
{
    wino_flat_lanes l;
    l.a = a0 + t / g->tiles_w;
    l.col = t % g->tiles_w;
    l.split = kernels_imin(16, g->tiles_w - l.col);
    l.all = kernels_avx512_mask(n - t);
    l.lo = l.all & kernels_avx512_mask(l.split);
    l.hi = l.all & (__mmask16)~kernels_avx512_mask(l.split);
    return l;
}

static inline __attribute__((always_inline)) KERNELS_AVX512 void
wino_input_flat_v(const wino_variant var, const conv2d_params *p, const wino_geom *g, const wino_src *src,
                  int a0, int rows, float *v, size_t ldv)
{
    const wino_axis th = wino_axis_h(var);
    const int m_h = wino_am(th), alpha_h = wino_aa(th), n = rows * g->tiles_w;
    const size_t e_stride = (size_t)p->c_in * ldv;
    for (int ci = 0; ci < p->c_in; ci++) {
        const float *xc = src->x + (size_t)ci * src->plane;
        for (int t = 0; t < n; t += 16) {
            const wino_flat_lanes l = wino_flat_at(g, a0, t, n);
            /* lane j reads column col + j (row a) or j - split (row a + 1), inside the input */
            const __mmask16 m_lo = l.lo & kernels_avx512_range_mask(kernels_imax(0, src->col0 - l.col),
                                                                    src->col0 + src->cols - l.col);
            const __mmask16 m_hi = l.hi & kernels_avx512_range_mask(kernels_imax(0, src->col0 + l.split),
                                                                    src->col0 + src->cols + l.split);
            const int r_lo = src->row0 + m_h * (l.a - a0), r_hi = r_lo + m_h;
            const uintptr_t b_lo = (uintptr_t)xc + (uintptr_t)((intptr_t)(l.col - src->col0) * (intptr_t)sizeof(float));
            const uintptr_t b_hi = (uintptr_t)xc - (uintptr_t)((intptr_t)(l.split + src->col0) * (intptr_t)sizeof(float));
            __m512 dr[WINO_ALPHA_MAX];
#pragma GCC unroll 12
            for (int k = 0; k < alpha_h; k++) {
                const int rl = r_lo + k, rh = r_hi + k;
                __m512 d = _mm512_setzero_ps();
                if (rl >= 0 && rl < src->rows)
                    d = _mm512_maskz_loadu_ps(m_lo, (const float *)(b_lo + (uintptr_t)rl * (uintptr_t)src->ld *
                                                                           sizeof(float)));
                if (m_hi && rh >= 0 && rh < src->rows)
                    d = _mm512_mask_loadu_ps(d, m_hi, (const float *)(b_hi + (uintptr_t)rh * (uintptr_t)src->ld *
                                                                              sizeof(float)));
                dr[k] = d;
            }
            float *o = v + (size_t)ci * ldv + (size_t)t;
#pragma GCC unroll 12
            for (int xi = 0; xi < alpha_h; xi++)
                _mm512_mask_storeu_ps(o + (size_t)xi * e_stride, l.all, wino_comb(th, alpha_h, 1, xi, dr));
        }
    }
}

static KERNELS_AVX512 void wino_input(const conv2d_params *p, const wino_geom *g, const wino_src *xp,
                                   int a0, int rows, float *v, size_t ldv, float *line)
{
    if (wino_flat(g)) {
        if (g->var == WINO_F71_6)
            wino_input_flat_v(WINO_F71_6, p, g, xp, a0, rows, v, ldv);
        else
            wino_input_flat_v(WINO_F71, p, g, xp, a0, rows, v, ldv);
        return;
    }
    switch (g->var) {
    case WINO_F23: wino_input_v(WINO_F23, p, g, xp, a0, rows, v, ldv, line); break;
    case WINO_F43: wino_input_v(WINO_F43, p, g, xp, a0, rows, v, ldv, line); break;
    case WINO_F25: wino_input_v(WINO_F25, p, g, xp, a0, rows, v, ldv, line); break;
    case WINO_F45: wino_input_v(WINO_F45, p, g, xp, a0, rows, v, ldv, line); break;
    case WINO_F17: wino_input_v(WINO_F17, p, g, xp, a0, rows, v, ldv, line); break;
    case WINO_F71: wino_input_v(WINO_F71, p, g, xp, a0, rows, v, ldv, line); break;
    case WINO_F71_6: wino_input_v(WINO_F71_6, p, g, xp, a0, rows, v, ldv, line); break;
    case WINO_F13:
    case WINO_F31: break; /* AVX2 only */
    }
}

/* Stores output row yr's columns of 16 tiles from y[j] (column j of every tile, j < m): the m
 * vectors interleaved back (tile-major), n (<= 16m) floats. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void wino_store_row(const int m,
                                                                              const __m512 *y,
                                                                              float *yr, int n)
{
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
    __m512 out[4];
    if (m == 1) {
        out[0] = y[0];
    } else if (m == 2) {
        out[0] = _mm512_permutex2var_ps(y[0], lo, y[1]);
        out[1] = _mm512_permutex2var_ps(y[0], hi, y[1]);
    } else {
        /* pairs (y0 y1) and (y2 y3) interleaved by float, then the pairs by 64-bit element */
        const __m512d a_lo = _mm512_castps_pd(_mm512_permutex2var_ps(y[0], lo, y[1]));
        const __m512d a_hi = _mm512_castps_pd(_mm512_permutex2var_ps(y[0], hi, y[1]));
        const __m512d b_lo = _mm512_castps_pd(_mm512_permutex2var_ps(y[2], lo, y[3]));
        const __m512d b_hi = _mm512_castps_pd(_mm512_permutex2var_ps(y[2], hi, y[3]));
        const __m512i q_lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
        const __m512i q_hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
        out[0] = _mm512_castpd_ps(_mm512_permutex2var_pd(a_lo, q_lo, b_lo));
        out[1] = _mm512_castpd_ps(_mm512_permutex2var_pd(a_lo, q_hi, b_lo));
        out[2] = _mm512_castpd_ps(_mm512_permutex2var_pd(a_hi, q_lo, b_hi));
        out[3] = _mm512_castpd_ps(_mm512_permutex2var_pd(a_hi, q_hi, b_hi));
    }
#pragma GCC unroll 4
    for (int k = 0; k < m; k++)
        if (16 * k < n) _mm512_mask_storeu_ps(yr + 16 * k, kernels_avx512_mask(n - 16 * k), out[k]);
}

/* Y = A_h^T M A_w for output channels [co0, co1) of tile rows [a0, a0 + rows): s_i[nu] = sum over xi of A_h^T[i][xi]
 * M[xi][nu], then y[i][j] = sum over nu of A_w^T[j][nu] s_i[nu]; bias and activation, the m_w
 * output columns of each tile interleaved back, rows past h_out dropped. tr (m_w = 1 only): y
 * holds the transpose of p's output (wino_transposed), each row's 16 columns scattered. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void
wino_output_v(const wino_variant var, const int tr, const conv2d_params *p, const wino_geom *g,
              const float *mr, size_t ldm, int a0, int rows, int co0, int co1, const float *bias,
              float *y)
{
    const wino_axis th = wino_axis_h(var), tw = wino_axis_w(var);
    const int m_h = wino_am(th), m_w = wino_am(tw), alpha_h = wino_aa(th), alpha_w = wino_aa(tw);
    const size_t e_stride = (size_t)p->c_out * ldm;
    const size_t hw = (size_t)p->h_out * (size_t)p->w_out;
    const __m512i tr_idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(p->h_out));
    assert(!tr || m_w == 1);
    for (int co = co0; co < co1; co++) {
        const __m512 vb = _mm512_set1_ps(bias ? bias[co] : 0.0f);
        for (int a = a0; a < a0 + rows; a++) {
            const float *mrow = mr + (size_t)co * ldm + (size_t)(a - a0) * (size_t)g->tiles_w;
            float *y0 = y + (size_t)co * hw + (size_t)(m_h * a) * (size_t)p->w_out;
            const int out_rows = kernels_imin(m_h, p->h_out - m_h * a);
            for (int b = 0; b < g->tiles_w; b += 16) {
                const __mmask16 mk = kernels_avx512_mask(g->tiles_w - b);
                __m512 s[6][WINO_ALPHA_MAX];
#pragma GCC unroll 12
                for (int nu = 0; nu < alpha_w; nu++) {
                    __m512 col[WINO_ALPHA_MAX];
#pragma GCC unroll 12
                    for (int xi = 0; xi < alpha_h; xi++)
                        col[xi] = _mm512_maskz_loadu_ps(
                            mk, mrow + (size_t)(xi * alpha_w + nu) * e_stride + b);
#pragma GCC unroll 6
                    for (int i = 0; i < m_h; i++) s[i][nu] = wino_comb(th, alpha_h, 0, i, col);
                }
                const int n_out = kernels_imin(p->w_out - m_w * b, 16 * m_w);
                for (int i = 0; i < out_rows; i++) {
                    __m512 yv[4];
#pragma GCC unroll 4
                    for (int j = 0; j < m_w; j++)
                        yv[j] = avx512_act(_mm512_add_ps(wino_comb(tw, alpha_w, 0, j, s[i]), vb),
                                         p->act);
                    if (tr) /* y[co][b + lane][m_h*a + i] */
                        _mm512_mask_i32scatter_ps(y + (size_t)co * hw + (size_t)b * (size_t)p->h_out +
                                                      (size_t)(m_h * a + i),
                                                  kernels_avx512_mask(n_out), tr_idx, yv[0], 4);
                    else
                        wino_store_row(m_w, yv, y0 + (size_t)i * (size_t)p->w_out + (size_t)(m_w * b),
                                       n_out);
                }
            }
        }
    }
}

/* wino_output_v on the flat lanes of wino_flat: rows of the two tile rows stored by two masked
 * stores (tr: one scatter at per-lane indices). */
static inline __attribute__((always_inline)) KERNELS_AVX512 void
wino_output_flat_v(const wino_variant var, const int tr, const conv2d_params *p, const wino_geom *g,
                   const float *mr, size_t ldm, int a0, int rows, int co0, int co1, const float *bias, float *y)
{
    const wino_axis th = wino_axis_h(var);
    const int m_h = wino_am(th), alpha_h = wino_aa(th), n = rows * g->tiles_w;
    const size_t e_stride = (size_t)p->c_out * ldm;
    const size_t hw = (size_t)p->h_out * (size_t)p->w_out;
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int t = 0; t < n; t += 16) {
        const wino_flat_lanes l = wino_flat_at(g, a0, t, n);
        /* per lane: output column and first output row of its tile */
        const __mmask16 hi = l.hi;
        const __m512i col = _mm512_mask_sub_epi32(_mm512_add_epi32(lane, _mm512_set1_epi32(l.col)), hi, lane,
                                                  _mm512_set1_epi32(l.split));
        const __m512i row0 = _mm512_mask_blend_epi32(hi, _mm512_set1_epi32(m_h * l.a),
                                                     _mm512_set1_epi32(m_h * (l.a + 1)));
        const __m512i tr_idx = _mm512_add_epi32(_mm512_mullo_epi32(col, _mm512_set1_epi32(p->h_out)), row0);
        for (int co = co0; co < co1; co++) {
            const __m512 vb = _mm512_set1_ps(bias ? bias[co] : 0.0f);
            const float *mt = mr + (size_t)co * ldm + (size_t)t;
            __m512 c[WINO_ALPHA_MAX];
#pragma GCC unroll 12
            for (int xi = 0; xi < alpha_h; xi++) c[xi] = _mm512_maskz_loadu_ps(l.all, mt + (size_t)xi * e_stride);
            float *yc = y + (size_t)co * hw;
#pragma GCC unroll 6
            for (int i = 0; i < m_h; i++) {
                const __m512 yv = avx512_act(_mm512_add_ps(wino_comb(th, alpha_h, 0, i, c), vb), p->act);
                const int r_lo = m_h * l.a + i, r_hi = r_lo + m_h;
                if (tr) {
                    const __mmask16 ok = (r_lo < p->h_out ? l.lo : 0) | (r_hi < p->h_out ? hi : 0);
                    _mm512_mask_i32scatter_ps(yc + i, ok, tr_idx, yv, 4);
                } else {
                    if (r_lo < p->h_out)
                        _mm512_mask_storeu_ps(yc + (size_t)r_lo * (size_t)p->w_out + (size_t)l.col, l.lo, yv);
                    if (hi && r_hi < p->h_out)
                        _mm512_mask_storeu_ps((float *)((uintptr_t)(yc + (size_t)r_hi * (size_t)p->w_out) -
                                                        (uintptr_t)l.split * sizeof(float)),
                                              hi, yv);
                }
            }
        }
    }
}

static KERNELS_AVX512 void wino_output(int tr, const conv2d_params *p, const wino_geom *g,
                                    const float *mr, size_t ldm, int a0, int rows, int co0, int co1,
                                    const float *bias, float *y)
{
    if (wino_flat(g)) {
        if (g->var == WINO_F71_6 && tr)
            wino_output_flat_v(WINO_F71_6, 1, p, g, mr, ldm, a0, rows, co0, co1, bias, y);
        else if (g->var == WINO_F71_6)
            wino_output_flat_v(WINO_F71_6, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y);
        else
            wino_output_flat_v(WINO_F71, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y);
        return;
    }
    switch (g->var) {
    case WINO_F23: wino_output_v(WINO_F23, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y); break;
    case WINO_F43: wino_output_v(WINO_F43, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y); break;
    case WINO_F25: wino_output_v(WINO_F25, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y); break;
    case WINO_F45: wino_output_v(WINO_F45, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y); break;
    case WINO_F17: wino_output_v(WINO_F17, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y); break;
    case WINO_F71: wino_output_v(WINO_F71, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y); break;
    case WINO_F71_6:
        if (tr)
            wino_output_v(WINO_F71_6, 1, p, g, mr, ldm, a0, rows, co0, co1, bias, y);
        else
            wino_output_v(WINO_F71_6, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y);
        break;
    case WINO_F13:
    case WINO_F31: break; /* AVX2 only */
    }
}

/* Output channels [co0, co1) (multiples of KERNELS_GEMM_MR, or c_out) of tile rows [a_lo, a_hi),
 * in ceil(rows / block_rows) blocks as even as can be: a tile's values do not depend on its block
 * (the GEMMs' columns are independent), so any such part equals the whole call's bits. */
static KERNELS_AVX512 void wino_forward_avx512(int tr, const conv2d_params *p, const float *x,
                                            const float *packed, const float *bias, float *y,
                                            float *scratch, int a_lo, int a_hi, int co0, int co1)
{
    const wino_geom g = wino_geom_of(p);
    const size_t max_tiles = (size_t)g.block_rows * (size_t)g.tiles_w;
    float *xp = scratch;
    float *v = xp + (tr ? wino_round16((size_t)p->c_in * (size_t)g.band_h * (size_t)g.wp) : 0);
    float *mr = v + wino_round16((size_t)g.n_e * (size_t)p->c_in * max_tiles);
    float *line = mr + wino_round16((size_t)g.n_e * (size_t)p->c_out * max_tiles);
    const size_t u_stride = (size_t)wino_panels(p) * KERNELS_GEMM_MR * (size_t)p->c_in;
    const int n_blocks = (a_hi - a_lo + g.block_rows - 1) / g.block_rows;
    for (int b = 0, a0 = a_lo; b < n_blocks; b++) {
        const int rows = (a_hi - a_lo) / n_blocks + (b < (a_hi - a_lo) % n_blocks);
        const int n = rows * g.tiles_w;
        wino_src src = {x, (size_t)p->h_in * (size_t)p->w_in, p->w_in, g.m_h * a0 - p->pad_t, p->h_in, p->pad_l,
                        p->w_in};
        if (tr) {
            wino_pad_input_t(p, &g, x, g.m_h * a0, xp);
            src = (wino_src){xp, (size_t)g.band_h * (size_t)g.wp, g.wp, 0, g.band_h, 0, g.wp};
        }
        wino_input(p, &g, &src, a0, rows, v, (size_t)n, line);
        for (int e = 0; e < g.n_e; e++)
            kernels_gemm_avx512(p->c_out, n, p->c_in, packed + (size_t)e * u_stride,
                                v + (size_t)e * (size_t)p->c_in * (size_t)n, (size_t)n,
                                mr + (size_t)e * (size_t)p->c_out * (size_t)n, (size_t)n, NULL,
                                ACT_NONE, co0, co1);
        wino_output(tr, p, &g, mr, (size_t)n, a0, rows, co0, co1, bias, y);
        a0 += rows;
    }
}
#endif

#if KERNELS_X86
/* ---- AVX2 + FMA: the same passes on 8 tiles per vector. Every transformed value is the same
 * operations in the same order as on AVX-512 (wino_comb_avx2 is wino_comb on 8 lanes, the GEMM
 * kernels_gemm_avx2 the same FMA chain), so both give the same bits. Masked stores are ~5x slower
 * than plain ones on Zen 3: partial vectors are stored by avx2_store_n instead. ---- */

/* Lanes [lo, hi) of 8 (none when hi <= lo). */
static inline __attribute__((always_inline)) KERNELS_AVX2 __m256i wino_mask8(int lo, int hi)
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(lo), lane),
                               _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), lane));
}

/* Lanes [0, n) of v to d[l * stride], l < n (the transposed maps' scattered output). */
static inline __attribute__((always_inline)) KERNELS_AVX2 void wino_scatter8(float *d, size_t stride, __m256 v,
                                                                             int n)
{
    float t[8];
    _mm256_storeu_ps(t, v);
    for (int l = 0; l < n && l < 8; l++) d[(size_t)l * stride] = t[l];
}

/* Rows [u0, u1) of every polyphase plane x' of p, as wino_polyphase_input (a copy: any order
 * gives the same floats). */
static void wino_polyphase_input_c(const conv2d_params *p, const float *x, int u0, int u1, float *xs)
{
    const int s = p->stride_h, hq = p->h_out + 2, wq = p->w_out + 2;
    for (int c = 0; c < p->c_in; c++)
        for (int ph = 0; ph < s; ph++)
            for (int pw = 0; pw < s; pw++) {
                float *plane = xs + (size_t)((c * s + ph) * s + pw) * (size_t)hq * (size_t)wq;
                const int off = pw - p->pad_l, last = p->w_in - 1 - off;
                const int v_lo = kernels_imin(off >= 0 ? 0 : (-off + s - 1) / s, wq);
                const int v_hi = kernels_imax(v_lo, last < 0 ? 0 : kernels_imin(wq, last / s + 1));
                for (int u = u0; u < u1; u++) {
                    float *d = plane + (size_t)u * (size_t)wq;
                    const int ih = s * u + ph - p->pad_t;
                    if (ih < 0 || ih >= p->h_in) {
                        memset(d, 0, (size_t)wq * sizeof *d);
                        continue;
                    }
                    const float *row = x + ((size_t)c * (size_t)p->h_in + (size_t)ih) * (size_t)p->w_in;
                    for (int v = 0; v < v_lo; v++) d[v] = 0.0f;
                    for (int v = v_lo; v < v_hi; v++) d[v] = row[s * v + off];
                    for (int v = v_hi; v < wq; v++) d[v] = 0.0f;
                }
            }
}

/* wino_pad_input_t on AVX2: the band's rows inside the input are the transpose of x's columns
 * [ih0, ih1), copied by 8x8 register transposes (the last < 8 columns and rows one float at a time). */
static KERNELS_AVX2 void wino_pad_input_t_avx2(const conv2d_params *p, const wino_geom *g, const float *x, int r0,
                                               float *xp)
{
    const int lo = kernels_imin(p->pad_l, g->wp);
    const int hi = kernels_imax(lo, kernels_imin(p->pad_l + p->w_in, g->wp));
    const int nj = hi - lo; /* x's rows j < nj land in columns lo + j */
    /* band rows [r_a, r_b) read x's columns ih = r0 + r - pad_t inside [0, h_in) */
    const int r_a = kernels_imin(g->band_h, kernels_imax(0, p->pad_t - r0));
    const int r_b = kernels_imax(r_a, kernels_imin(g->band_h, p->h_in + p->pad_t - r0));
    const size_t wp = (size_t)g->wp, ld = (size_t)p->h_in;
    for (int c = 0; c < p->c_in; c++) {
        float *xc = xp + (size_t)c * (size_t)g->band_h * wp;
        const float *sc = x + (size_t)c * (size_t)p->w_in * ld; /* x[c][j][ih] at sc[j * ld + ih] */
        memset(xc, 0, (size_t)r_a * wp * sizeof *xc);
        memset(xc + (size_t)r_b * wp, 0, (size_t)(g->band_h - r_b) * wp * sizeof *xc);
        for (int r = r_a; r < r_b; r++) {
            memset(xc + (size_t)r * wp, 0, (size_t)lo * sizeof *xc);
            memset(xc + (size_t)r * wp + hi, 0, (size_t)(g->wp - hi) * sizeof *xc);
        }
        int r = r_a;
        for (; r + 8 <= r_b; r += 8) {
            const float *s = sc + (size_t)(r0 + r - p->pad_t);
            int j = 0;
            for (; j + 8 <= nj; j += 8) {
                __m256 t[8];
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) t[k] = _mm256_loadu_ps(s + (size_t)(j + k) * ld);
                avx2_transpose8(t);
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) _mm256_storeu_ps(xc + (size_t)(r + k) * wp + (size_t)(lo + j), t[k]);
            }
            for (; j < nj; j++)
                for (int k = 0; k < 8; k++) xc[(size_t)(r + k) * wp + (size_t)(lo + j)] = s[(size_t)j * ld + (size_t)k];
        }
        for (; r < r_b; r++) {
            const float *s = sc + (size_t)(r0 + r - p->pad_t);
            for (int j = 0; j < nj; j++) xc[(size_t)r * wp + (size_t)(lo + j)] = s[(size_t)j * ld];
        }
    }
}

/* wino_comb on 8 lanes: the same operations in the same order. */
static inline __attribute__((always_inline)) KERNELS_AVX2 __m256
wino_comb_avx2(const wino_axis t, const int n, const int is_bt, int i, const __m256 *v)
{
    __m256 acc = _mm256_setzero_ps();
    int first = 1;
#pragma GCC unroll 12
    for (int j = 0; j < n; j++) {
        const float c = is_bt ? wino_bt(t, i, j) : wino_at(t, i, j);
        if (c == 0.0f) continue;
        if (first) {
            acc = c == 1.0f ? v[j] : _mm256_mul_ps(_mm256_set1_ps(c), v[j]);
            first = 0;
        } else if (c == 1.0f) {
            acc = _mm256_add_ps(acc, v[j]);
        } else if (c == -1.0f) {
            acc = _mm256_sub_ps(acc, v[j]);
        } else {
            acc = _mm256_fmadd_ps(_mm256_set1_ps(c), v[j], acc);
        }
    }
    return acc;
}

/* c[j] = l[m*t + j] for the 8 tiles t of a vector, j < alpha: m = 2 by shuffles of two loads;
 * m = 4 by a 4x4 transpose per 128-bit lane of tiles t and t + 4's 4 columns. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void wino_columns_avx2(const int m, const int alpha,
                                                                                  const float *l, __m256 *c)
{
    if (m == 1) {
#pragma GCC unroll 12
        for (int j = 0; j < alpha; j++) c[j] = _mm256_loadu_ps(l + j);
        return;
    }
    if (m == 2) {
#pragma GCC unroll 4
        for (int k = 0; k < alpha; k += 2) { /* tiles 0, 1, 4, 5 | 2, 3, 6, 7 in 64-bit pairs, then in order */
            const __m256 lo = _mm256_loadu_ps(l + k), hi = _mm256_loadu_ps(l + k + 8);
            c[k] = _mm256_castpd_ps(_mm256_permute4x64_pd(
                _mm256_castps_pd(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0))), _MM_SHUFFLE(3, 1, 2, 0)));
            c[k + 1] = _mm256_castpd_ps(_mm256_permute4x64_pd(
                _mm256_castps_pd(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1))), _MM_SHUFFLE(3, 1, 2, 0)));
        }
        return;
    }
#pragma GCC unroll 2
    for (int k = 0; k < alpha; k += 4) { /* columns k .. k+3; r[t] = tile t | tile t + 4 */
        __m256 r[4];
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++)
            r[t] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(l + k + 4 * t)),
                                        _mm_loadu_ps(l + k + 4 * t + 16), 1);
        const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpacklo_ps(r[2], r[3]);
        const __m256 t2 = _mm256_unpackhi_ps(r[0], r[1]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
        c[k] = _mm256_shuffle_ps(t0, t1, _MM_SHUFFLE(1, 0, 1, 0));
        if (k + 1 < alpha) c[k + 1] = _mm256_shuffle_ps(t0, t1, _MM_SHUFFLE(3, 2, 3, 2));
        if (k + 2 < alpha) c[k + 2] = _mm256_shuffle_ps(t2, t3, _MM_SHUFFLE(1, 0, 1, 0));
        if (k + 3 < alpha) c[k + 3] = _mm256_shuffle_ps(t2, t3, _MM_SHUFFLE(3, 2, 3, 2));
    }
}

/* p advanced by bytes, opaque to the compiler: addresses off such pointers stay base + index * scale
 * instead of one induction variable (spilled) per address. */
static inline __attribute__((always_inline)) const float *wino_step(const float *p, size_t bytes)
{
    p = (const float *)((const char *)p + bytes);
    __asm__("" : "+r"(p));
    return p;
}

/* One 8-column step of wino_input_v_avx2's row pass: line[xi][q..q+7] from the alpha_h patch rows from
 * padded row r0 of channel plane xc, lanes outside the input zero. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void
wino_input_rows_avx2(const wino_axis th, const wino_src *src, const float *xc, int r0, int q, int n_cols,
                     float *line, int lf)
{
    const int alpha_h = wino_aa(th);
    /* the lanes inside the input (the address of lane 0 may lie before the row; a masked-off lane
     * is not read) */
    const int lo = kernels_imax(0, src->col0 - q);
    const int hi = kernels_imin(kernels_imin(8, n_cols - q), src->col0 + src->cols - q);
    const int full = lo == 0 && hi == 8;
    const __m256i mk = wino_mask8(lo, hi);
    const uintptr_t base = (uintptr_t)xc + (uintptr_t)((intptr_t)(q - src->col0) * (intptr_t)sizeof(float));
    __m256 dr[WINO_ALPHA_MAX];
#pragma GCC unroll 12
    for (int k = 0; k < alpha_h; k++) {
        const int r = r0 + k;
        const float *at = (const float *)(base + (uintptr_t)r * (uintptr_t)src->ld * sizeof(float));
        dr[k] = r < 0 || r >= src->rows || hi <= lo ? _mm256_setzero_ps()
                : full                              ? _mm256_loadu_ps(at)
                                                    : _mm256_maskload_ps(at, mk);
    }
#pragma GCC unroll 12
    for (int xi = 0; xi < alpha_h; xi++)
        _mm256_storeu_ps(line + (size_t)xi * (size_t)lf + q, wino_comb_avx2(th, alpha_h, 1, xi, dr));
}

/* wino_input_v on 8 tiles per vector. The row pass's steps whose 8 columns of all alpha_h rows lie inside
 * the input, and the column pass's vectors of 8 whole tiles, run without tests (plain loads and
 * stores off opaque pointers, see wino_step); the same operations per value. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void
wino_input_v_avx2(const wino_variant var, const conv2d_params *p, const wino_geom *g, const wino_src *src, int a0,
                  int rows, float *v, size_t ldv, float *line)
{
    const wino_axis th = wino_axis_h(var), tw = wino_axis_w(var);
    const int m_h = wino_am(th), m_w = wino_am(tw), alpha_h = wino_aa(th), alpha_w = wino_aa(tw);
    const int lf = g->row_floats, n_cols = g->wp, tiles_w = g->tiles_w;
    const size_t e_stride = (size_t)p->c_in * ldv;
    const size_t es = e_stride * sizeof(float), lfb = (size_t)lf * sizeof(float);
    const size_t ldb = (size_t)src->ld * sizeof(float);
    /* row-pass steps [q_a, q_b) read whole vectors inside the input's columns */
    const int col_end = kernels_imin(n_cols, src->col0 + src->cols);
    const int q_a = kernels_imin((src->col0 + 7) / 8 * 8, n_cols);
    const int q_b = kernels_imax(q_a, q_a + (col_end - q_a) / 8 * 8);
    const int c_in = p->c_in, src_rows = src->rows;
    for (int ci = 0; ci < c_in; ci++) {
        const float *xc = src->x + (size_t)ci * src->plane;
        for (int a = a0; a < a0 + rows; a++) {
            /* rows: line[xi] = sum over the patch rows of B_h^T[xi][row] * d_row */
            const int r0 = src->row0 + m_h * (a - a0);
            if (r0 >= 0 && r0 + alpha_h <= src_rows && q_b > q_a) {
                int q = 0;
                for (; q < q_a; q += 8) wino_input_rows_avx2(th, src, xc, r0, q, n_cols, line, lf);
                const float *xr = (const float *)((uintptr_t)xc + (uintptr_t)((intptr_t)(q_a - src->col0) *
                                                                               (intptr_t)sizeof(float)) +
                                                  (uintptr_t)r0 * ldb);
                const float *lq = line + q_a, *l_end = line + q_b;
                do {
                    __m256 dr[WINO_ALPHA_MAX];
#pragma GCC unroll 12
                    for (int k = 0; k < alpha_h; k++)
                        dr[k] = _mm256_loadu_ps((const float *)((const char *)xr + (size_t)k * ldb));
#pragma GCC unroll 12
                    for (int xi = 0; xi < alpha_h; xi++)
                        _mm256_storeu_ps((float *)((char *)(uintptr_t)lq + (size_t)xi * lfb),
                                         wino_comb_avx2(th, alpha_h, 1, xi, dr));
                    xr = wino_step(xr, 8 * sizeof(float));
                    lq = wino_step(lq, 8 * sizeof(float));
                } while (lq != l_end);
                for (q = q_b; q < n_cols; q += 8) wino_input_rows_avx2(th, src, xc, r0, q, n_cols, line, lf);
            } else {
                for (int q = 0; q < n_cols; q += 8) wino_input_rows_avx2(th, src, xc, r0, q, n_cols, line, lf);
            }
            /* columns of 8 tiles: c_j = line[m_w*tile + j]; combined by B_w */
            float *vrow = v + (size_t)ci * ldv + (size_t)(a - a0) * (size_t)tiles_w;
            int b = 0;
            if (tiles_w >= 8) {
                const float *lb = line, *ob = vrow;
                const float *ob_end = vrow + (size_t)(tiles_w / 8 * 8);
                do {
                    const float *lx = lb, *ox = ob;
#pragma GCC unroll 12
                    for (int xi = 0; xi < alpha_h; xi++) {
                        __m256 c[WINO_ALPHA_MAX];
                        wino_columns_avx2(m_w, alpha_w, lx, c);
#pragma GCC unroll 12
                        for (int nu = 0; nu < alpha_w; nu++)
                            _mm256_storeu_ps((float *)((char *)(uintptr_t)ox + (size_t)nu * es),
                                             wino_comb_avx2(tw, alpha_w, 1, nu, c));
                        lx = wino_step(lx, lfb);
                        ox = wino_step(ox, (size_t)alpha_w * es);
                    }
                    lb = wino_step(lb, (size_t)(8 * m_w) * sizeof(float));
                    ob = wino_step(ob, 8 * sizeof(float));
                } while (ob != ob_end);
                b = tiles_w / 8 * 8;
            }
            for (; b < tiles_w; b += 8) {
                const int nt = tiles_w - b;
#pragma GCC unroll 12
                for (int xi = 0; xi < alpha_h; xi++) {
                    __m256 c[WINO_ALPHA_MAX];
                    wino_columns_avx2(m_w, alpha_w, line + (size_t)xi * (size_t)lf + (size_t)(m_w * b), c);
                    float *o = vrow + (size_t)(xi * alpha_w) * e_stride + b;
#pragma GCC unroll 12
                    for (int nu = 0; nu < alpha_w; nu++)
                        avx2_store_n(o + (size_t)nu * e_stride, wino_comb_avx2(tw, alpha_w, 1, nu, c), nt);
                }
            }
        }
    }
}

/* wino_flat on 8 lanes: alpha_w = 1 and tile rows of at least 8 tiles (a vector then holds the
 * end of one tile row and the start of the next at most). */
static int wino_flat8(const wino_geom *g) { return g->alpha_w == 1 && g->tiles_w >= 8; }

/* Lanes of the 8 block tiles from t: [0, n_lo) in tile row a from column col, [split, n) in row
 * a + 1 from column 0 (n_lo = min(split, n); n: lanes that are tiles). */
typedef struct {
    int a, col, split, n, n_lo;
} wino_flat8_lanes;

static inline wino_flat8_lanes wino_flat8_at(const wino_geom *g, int a0, int t, int n)
{
    wino_flat8_lanes l;
    l.a = a0 + t / g->tiles_w;
    l.col = t % g->tiles_w;
    l.split = kernels_imin(8, g->tiles_w - l.col);
    l.n = kernels_imin(8, n - t);
    l.n_lo = kernels_imin(l.split, l.n);
    return l;
}

/* Rows from a masked load of lanes [lo, hi) at the same offsets (all 8: a plain load). */
static inline __attribute__((always_inline)) KERNELS_AVX2 __m256 wino_load8(const float *at, int lo, int hi)
{
    if (lo == 0 && hi >= 8) return _mm256_loadu_ps(at);
    return _mm256_maskload_ps(at, wino_mask8(lo, hi));
}

static inline __attribute__((always_inline)) KERNELS_AVX2 void
wino_input_flat_v_avx2(const wino_variant var, const conv2d_params *p, const wino_geom *g, const wino_src *src,
                       int a0, int rows, float *v, size_t ldv)
{
    const wino_axis th = wino_axis_h(var);
    const int m_h = wino_am(th), alpha_h = wino_aa(th), n = rows * g->tiles_w;
    const size_t e_stride = (size_t)p->c_in * ldv;
    for (int ci = 0; ci < p->c_in; ci++) {
        const float *xc = src->x + (size_t)ci * src->plane;
        for (int t = 0; t < n; t += 8) {
            const wino_flat8_lanes l = wino_flat8_at(g, a0, t, n);
            /* lane j reads column col + j (row a) or j - split (row a + 1), inside the input */
            const int lo_lo = kernels_imax(0, src->col0 - l.col);
            const int lo_hi = kernels_imin(l.n_lo, src->col0 + src->cols - l.col);
            const int hi_lo = src->col0 + l.split, hi_hi = kernels_imin(l.n, src->col0 + src->cols + l.split);
            const int r_lo = src->row0 + m_h * (l.a - a0), r_hi = r_lo + m_h;
            const uintptr_t b_lo = (uintptr_t)xc + (uintptr_t)((intptr_t)(l.col - src->col0) * (intptr_t)sizeof(float));
            const uintptr_t b_hi = (uintptr_t)xc - (uintptr_t)((intptr_t)(l.split + src->col0) * (intptr_t)sizeof(float));
            __m256 dr[WINO_ALPHA_MAX];
#pragma GCC unroll 12
            for (int k = 0; k < alpha_h; k++) {
                const int rl = r_lo + k, rh = r_hi + k;
                __m256 d = _mm256_setzero_ps();
                if (rl >= 0 && rl < src->rows && lo_hi > lo_lo)
                    d = wino_load8((const float *)(b_lo + (uintptr_t)rl * (uintptr_t)src->ld * sizeof(float)), lo_lo,
                                   lo_hi);
                if (hi_hi > hi_lo && rh >= 0 && rh < src->rows) /* disjoint lanes: or merges */
                    d = _mm256_or_ps(d, _mm256_maskload_ps((const float *)(b_hi + (uintptr_t)rh * (uintptr_t)src->ld *
                                                                                      sizeof(float)),
                                                           wino_mask8(hi_lo, hi_hi)));
                dr[k] = d;
            }
            float *o = v + (size_t)ci * ldv + (size_t)t;
#pragma GCC unroll 12
            for (int xi = 0; xi < alpha_h; xi++)
                avx2_store_n(o + (size_t)xi * e_stride, wino_comb_avx2(th, alpha_h, 1, xi, dr), l.n);
        }
    }
}

static KERNELS_AVX2 void wino_input_avx2(const conv2d_params *p, const wino_geom *g, const wino_src *xp, int a0,
                                         int rows, float *v, size_t ldv, float *line)
{
    if (wino_flat8(g)) {
        if (g->var == WINO_F71_6)
            wino_input_flat_v_avx2(WINO_F71_6, p, g, xp, a0, rows, v, ldv);
        else if (g->var == WINO_F31)
            wino_input_flat_v_avx2(WINO_F31, p, g, xp, a0, rows, v, ldv);
        else
            wino_input_flat_v_avx2(WINO_F71, p, g, xp, a0, rows, v, ldv);
        return;
    }
    switch (g->var) {
    case WINO_F23: wino_input_v_avx2(WINO_F23, p, g, xp, a0, rows, v, ldv, line); break;
    case WINO_F43: wino_input_v_avx2(WINO_F43, p, g, xp, a0, rows, v, ldv, line); break;
    case WINO_F25: wino_input_v_avx2(WINO_F25, p, g, xp, a0, rows, v, ldv, line); break;
    case WINO_F45: wino_input_v_avx2(WINO_F45, p, g, xp, a0, rows, v, ldv, line); break;
    case WINO_F17: wino_input_v_avx2(WINO_F17, p, g, xp, a0, rows, v, ldv, line); break;
    case WINO_F71: wino_input_v_avx2(WINO_F71, p, g, xp, a0, rows, v, ldv, line); break;
    case WINO_F71_6: wino_input_v_avx2(WINO_F71_6, p, g, xp, a0, rows, v, ldv, line); break;
    case WINO_F13: wino_input_v_avx2(WINO_F13, p, g, xp, a0, rows, v, ldv, line); break;
    case WINO_F31: wino_input_v_avx2(WINO_F31, p, g, xp, a0, rows, v, ldv, line); break;
    }
}

/* Stores output row yr's columns of 8 tiles from y[j] (column j of every tile, j < m),
 * interleaved back (tile-major), n (<= 8m) floats. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void wino_store_row_avx2(const int m, const __m256 *y,
                                                                                    float *yr, int n)
{
    __m256 out[4];
    if (m == 1) {
        out[0] = y[0];
    } else if (m == 2) { /* tiles 0, 1 | 4, 5 and 2, 3 | 6, 7 */
        const __m256 lo = _mm256_unpacklo_ps(y[0], y[1]), hi = _mm256_unpackhi_ps(y[0], y[1]);
        out[0] = _mm256_permute2f128_ps(lo, hi, 0x20);
        out[1] = _mm256_permute2f128_ps(lo, hi, 0x31);
    } else { /* 4x4 transpose per 128-bit lane: r[t] = tile t | tile t + 4 */
        const __m256 t0 = _mm256_unpacklo_ps(y[0], y[1]), t1 = _mm256_unpacklo_ps(y[2], y[3]);
        const __m256 t2 = _mm256_unpackhi_ps(y[0], y[1]), t3 = _mm256_unpackhi_ps(y[2], y[3]);
        const __m256 r0 = _mm256_shuffle_ps(t0, t1, _MM_SHUFFLE(1, 0, 1, 0));
        const __m256 r1 = _mm256_shuffle_ps(t0, t1, _MM_SHUFFLE(3, 2, 3, 2));
        const __m256 r2 = _mm256_shuffle_ps(t2, t3, _MM_SHUFFLE(1, 0, 1, 0));
        const __m256 r3 = _mm256_shuffle_ps(t2, t3, _MM_SHUFFLE(3, 2, 3, 2));
        out[0] = _mm256_permute2f128_ps(r0, r1, 0x20);
        out[1] = _mm256_permute2f128_ps(r2, r3, 0x20);
        out[2] = _mm256_permute2f128_ps(r0, r1, 0x31);
        out[3] = _mm256_permute2f128_ps(r2, r3, 0x31);
    }
#pragma GCC unroll 4
    for (int k = 0; k < m; k++)
        if (8 * k < n) avx2_store_n(yr + 8 * k, out[k], n - 8 * k);
}

/* One vector of 8 whole tiles of wino_output_v_avx2 whose m_h rows of 8 m_w outputs all lie inside y:
 * plain loads and stores, no tests; act ACT_NONE or ACT_RELU (relu), fixed. The same operations
 * per output as wino_output_v_avx2. mt: M's first element for these tiles, es: bytes between elements. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void
wino_output_full_avx2(const wino_variant var, const int relu, const float *mt, size_t es, __m256 vb, float *yr,
                      size_t w_out)
{
    const wino_axis th = wino_axis_h(var), tw = wino_axis_w(var);
    const int m_h = wino_am(th), m_w = wino_am(tw), alpha_h = wino_aa(th), alpha_w = wino_aa(tw);
    const size_t row_es = (size_t)alpha_w * es; /* bytes between M rows xi */
    __m256 s[6][WINO_ALPHA_MAX];
#pragma GCC unroll 12
    for (int nu = 0; nu < alpha_w; nu++) {
        __m256 col[WINO_ALPHA_MAX];
#pragma GCC unroll 12
        for (int xi = 0; xi < alpha_h; xi++) col[xi] = _mm256_loadu_ps((const float *)((const char *)mt + (size_t)xi * row_es));
#pragma GCC unroll 6
        for (int i = 0; i < m_h; i++) s[i][nu] = wino_comb_avx2(th, alpha_h, 0, i, col);
        mt = wino_step(mt, es);
    }
#pragma GCC unroll 6
    for (int i = 0; i < m_h; i++) {
        __m256 yv[4];
#pragma GCC unroll 4
        for (int j = 0; j < m_w; j++) {
            yv[j] = _mm256_add_ps(wino_comb_avx2(tw, alpha_w, 0, j, s[i]), vb);
            if (relu) yv[j] = _mm256_max_ps(yv[j], _mm256_setzero_ps());
        }
        wino_store_row_avx2(m_w, yv, yr + (size_t)i * w_out, 8 * m_w);
    }
}

/* wino_output_v on 8 tiles per vector. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void
wino_output_v_avx2(const wino_variant var, const int tr, const conv2d_params *p, const wino_geom *g, const float *mr,
                   size_t ldm, int a0, int rows, int co0, int co1, const float *bias, float *y)
{
    const wino_axis th = wino_axis_h(var), tw = wino_axis_w(var);
    const int m_h = wino_am(th), m_w = wino_am(tw), alpha_h = wino_aa(th), alpha_w = wino_aa(tw);
    const size_t e_stride = (size_t)p->c_out * ldm;
    const size_t hw = (size_t)p->h_out * (size_t)p->w_out;
    assert(!tr || m_w == 1);
    /* vectors [0, b_end) of whole tile rows run wino_output_full_avx2 (not transposed, ReLU or none) */
    const int b_end = !tr && (p->act == ACT_RELU || p->act == ACT_NONE) ? p->w_out / (8 * m_w) * 8 : 0;
    for (int co = co0; co < co1; co++) {
        const __m256 vb = _mm256_set1_ps(bias ? bias[co] : 0.0f);
        for (int a = a0; a < a0 + rows; a++) {
            const float *mrow = mr + (size_t)co * ldm + (size_t)(a - a0) * (size_t)g->tiles_w;
            float *y0 = y + (size_t)co * hw + (size_t)(m_h * a) * (size_t)p->w_out;
            const int out_rows = kernels_imin(m_h, p->h_out - m_h * a);
            int b = 0;
            if (b_end > 0 && out_rows == m_h) {
                /* the vectors whose outputs all lie inside y: without tests, the rest below */
                const size_t w_out = (size_t)p->w_out, es = e_stride * sizeof(float);
                float *yr = y0;
                if (p->act == ACT_RELU)
                    for (; b < b_end; b += 8, yr += 8 * m_w)
                        wino_output_full_avx2(var, 1, mrow + b, es, vb, yr, w_out);
                else
                    for (; b < b_end; b += 8, yr += 8 * m_w)
                        wino_output_full_avx2(var, 0, mrow + b, es, vb, yr, w_out);
            }
            const size_t es = e_stride * sizeof(float), row_es = (size_t)alpha_w * es;
            for (; b < g->tiles_w; b += 8) {
                const int nt = g->tiles_w - b;
                const __m256i mk = kernels_avx2_mask(nt);
                const float *mt = mrow + b;
                __m256 s[6][WINO_ALPHA_MAX];
#pragma GCC unroll 12
                for (int nu = 0; nu < alpha_w; nu++) {
                    __m256 col[WINO_ALPHA_MAX];
#pragma GCC unroll 12
                    for (int xi = 0; xi < alpha_h; xi++) {
                        const float *at = (const float *)((const char *)mt + (size_t)xi * row_es);
                        col[xi] = nt >= 8 ? _mm256_loadu_ps(at) : _mm256_maskload_ps(at, mk);
                    }
#pragma GCC unroll 6
                    for (int i = 0; i < m_h; i++) s[i][nu] = wino_comb_avx2(th, alpha_h, 0, i, col);
                    mt = wino_step(mt, es);
                }
                const int n_out = kernels_imin(p->w_out - m_w * b, 8 * m_w);
#pragma GCC unroll 6
                for (int i = 0; i < m_h; i++) {
                    if (i >= out_rows) break;
                    __m256 yv[4];
#pragma GCC unroll 4
                    for (int j = 0; j < m_w; j++)
                        yv[j] = avx2_act(_mm256_add_ps(wino_comb_avx2(tw, alpha_w, 0, j, s[i]), vb), p->act);
                    if (tr) /* y[co][b + lane][m_h*a + i] */
                        wino_scatter8(y + (size_t)co * hw + (size_t)b * (size_t)p->h_out + (size_t)(m_h * a + i),
                                      (size_t)p->h_out, yv[0], n_out);
                    else
                        wino_store_row_avx2(m_w, yv, y0 + (size_t)i * (size_t)p->w_out + (size_t)(m_w * b), n_out);
                }
            }
        }
    }
}

/* wino_output_flat_v on 8 lanes: the lanes of the two tile rows stored apart (tr: scattered). */
static inline __attribute__((always_inline)) KERNELS_AVX2 void
wino_output_flat_v_avx2(const wino_variant var, const int tr, const conv2d_params *p, const wino_geom *g,
                        const float *mr, size_t ldm, int a0, int rows, int co0, int co1, const float *bias, float *y)
{
    const wino_axis th = wino_axis_h(var);
    const int m_h = wino_am(th), alpha_h = wino_aa(th), n = rows * g->tiles_w;
    const size_t e_stride = (size_t)p->c_out * ldm;
    const size_t hw = (size_t)p->h_out * (size_t)p->w_out;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int t = 0; t < n; t += 8) {
        const wino_flat8_lanes l = wino_flat8_at(g, a0, t, n);
        const __m256i mk = kernels_avx2_mask(l.n);
        const __m256i to_hi = _mm256_add_epi32(lane, _mm256_set1_epi32(l.split)); /* lane split + j to j */
        for (int co = co0; co < co1; co++) {
            const __m256 vb = _mm256_set1_ps(bias ? bias[co] : 0.0f);
            const float *mt = mr + (size_t)co * ldm + (size_t)t;
            __m256 c[WINO_ALPHA_MAX];
#pragma GCC unroll 12
            for (int xi = 0; xi < alpha_h; xi++)
                c[xi] = l.n >= 8 ? _mm256_loadu_ps(mt + (size_t)xi * e_stride)
                                 : _mm256_maskload_ps(mt + (size_t)xi * e_stride, mk);
            float *yc = y + (size_t)co * hw;
            __m256 yt[8]; /* tr: the tile rows' m_h outputs of each lane, transposed below */
#pragma GCC unroll 6
            for (int i = 0; i < m_h; i++) {
                const __m256 yv = avx2_act(_mm256_add_ps(wino_comb_avx2(th, alpha_h, 0, i, c), vb), p->act);
                const int r_lo = m_h * l.a + i, r_hi = r_lo + m_h;
                if (tr) {
                    yt[i] = yv;
                } else {
                    if (r_lo < p->h_out) avx2_store_n(yc + (size_t)r_lo * (size_t)p->w_out + (size_t)l.col, yv, l.n_lo);
                    if (l.n > l.split && r_hi < p->h_out)
                        avx2_store_n(yc + (size_t)r_hi * (size_t)p->w_out, _mm256_permutevar8x32_ps(yv, to_hi),
                                    l.n - l.split);
                }
            }
            if (tr) { /* lane j's outputs to y[co][col + j][r_lo..] (j < split) or y[co][j - split][r_hi..] */
                for (int i = m_h; i < 8; i++) yt[i] = _mm256_setzero_ps();
                avx2_transpose8(yt);
                const int r_lo = m_h * l.a, r_hi = r_lo + m_h;
                const int n_lo = kernels_imin(m_h, p->h_out - r_lo), n_hi = kernels_imin(m_h, p->h_out - r_hi);
                if (n_lo > 0)
                    for (int j = 0; j < l.n_lo; j++)
                        avx2_store_n(yc + (size_t)(l.col + j) * (size_t)p->h_out + (size_t)r_lo, yt[j], n_lo);
                if (n_hi > 0)
                    for (int j = l.split; j < l.n; j++)
                        avx2_store_n(yc + (size_t)(j - l.split) * (size_t)p->h_out + (size_t)r_hi, yt[j], n_hi);
            }
        }
    }
}

static KERNELS_AVX2 void wino_output_avx2(int tr, const conv2d_params *p, const wino_geom *g, const float *mr,
                                          size_t ldm, int a0, int rows, int co0, int co1, const float *bias, float *y)
{
    if (wino_flat8(g)) {
        if (g->var == WINO_F71_6 && tr)
            wino_output_flat_v_avx2(WINO_F71_6, 1, p, g, mr, ldm, a0, rows, co0, co1, bias, y);
        else if (g->var == WINO_F71_6)
            wino_output_flat_v_avx2(WINO_F71_6, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y);
        else if (g->var == WINO_F31)
            wino_output_flat_v_avx2(WINO_F31, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y);
        else
            wino_output_flat_v_avx2(WINO_F71, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y);
        return;
    }
    switch (g->var) {
    case WINO_F23: wino_output_v_avx2(WINO_F23, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y); break;
    case WINO_F43: wino_output_v_avx2(WINO_F43, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y); break;
    case WINO_F25: wino_output_v_avx2(WINO_F25, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y); break;
    case WINO_F45: wino_output_v_avx2(WINO_F45, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y); break;
    case WINO_F17: wino_output_v_avx2(WINO_F17, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y); break;
    case WINO_F71: wino_output_v_avx2(WINO_F71, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y); break;
    case WINO_F71_6:
        if (tr)
            wino_output_v_avx2(WINO_F71_6, 1, p, g, mr, ldm, a0, rows, co0, co1, bias, y);
        else
            wino_output_v_avx2(WINO_F71_6, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y);
        break;
    case WINO_F13: wino_output_v_avx2(WINO_F13, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y); break;
    case WINO_F31: wino_output_v_avx2(WINO_F31, 0, p, g, mr, ldm, a0, rows, co0, co1, bias, y); break;
    }
}

/* wino_forward_avx512 on AVX2: the same blocks, scratch layout and GEMMs (kernels_gemm_avx2). */
static KERNELS_AVX2 void wino_forward_avx2(int tr, const conv2d_params *p, const float *x, const float *packed,
                                           const float *bias, float *y, float *scratch, int a_lo, int a_hi, int co0,
                                           int co1)
{
    const wino_geom g = wino_geom_of(p);
    const size_t max_tiles = (size_t)g.block_rows * (size_t)g.tiles_w;
    float *xp = scratch;
    float *v = xp + (tr ? wino_round16((size_t)p->c_in * (size_t)g.band_h * (size_t)g.wp) : 0);
    float *mr = v + wino_round16((size_t)g.n_e * (size_t)p->c_in * max_tiles);
    float *line = mr + wino_round16((size_t)g.n_e * (size_t)p->c_out * max_tiles);
    const size_t u_stride = (size_t)wino_panels(p) * KERNELS_GEMM_MR * (size_t)p->c_in;
    const int n_blocks = (a_hi - a_lo + g.block_rows - 1) / g.block_rows;
    for (int b = 0, a0 = a_lo; b < n_blocks; b++) {
        const int rows = (a_hi - a_lo) / n_blocks + (b < (a_hi - a_lo) % n_blocks);
        const int n = rows * g.tiles_w;
        wino_src src = {x, (size_t)p->h_in * (size_t)p->w_in, p->w_in, g.m_h * a0 - p->pad_t, p->h_in, p->pad_l,
                        p->w_in};
        if (tr) {
            wino_pad_input_t_avx2(p, &g, x, g.m_h * a0, xp);
            src = (wino_src){xp, (size_t)g.band_h * (size_t)g.wp, g.wp, 0, g.band_h, 0, g.wp};
        }
        wino_input_avx2(p, &g, &src, a0, rows, v, (size_t)n, line);
        for (int e = 0; e < g.n_e; e++)
            kernels_gemm_avx2(p->c_out, n, p->c_in, packed + (size_t)e * u_stride,
                              v + (size_t)e * (size_t)p->c_in * (size_t)n, (size_t)n,
                              mr + (size_t)e * (size_t)p->c_out * (size_t)n, (size_t)n, NULL, ACT_NONE, co0, co1);
        wino_output_avx2(tr, p, &g, mr, (size_t)n, a0, rows, co0, co1, bias, y);
        a0 += rows;
    }
}
#endif

/* Whole tile rows per thread when each gets at least this many (each part then transforms only
 * its own input rows, in its own even blocks); otherwise output channels, every part transforming
 * the whole input (17x17 F(6, 7): 3 tile rows). Parts in whole blocks left Inception's 147x147
 * (7 blocks) at 4 : 3 and a 35x35 layer at 8 : 1 tile rows on two threads. */
#define WINO_PART_MIN_ROWS 4

kernels_part kernels_wino_part(const conv2d_params *p, int ith, int nth)
{
    const conv2d_params q = wino_conv_of(p);
    const wino_geom g = wino_geom_of(&q);
    if (!wino_transposed(p) && g.var != WINO_F13 && g.var != WINO_F31 && g.tiles_h >= WINO_PART_MIN_ROWS * nth)
        return kernels_part_split(KERNELS_PART_POSITIONS, p->h_out * p->w_out, g.m_h * p->w_out, ith, nth);
    return kernels_part_split(KERNELS_PART_CHANNELS, p->c_out, KERNELS_GEMM_MR, ith, nth);
}

void kernels_wino_forward_part(const conv2d_params *p, const float *x, const float *packed,
                               const float *bias, float *y, float *scratch,
                               const kernels_part *part)
{
    kernels_wino_forward_part_isa(p, x, packed, bias, y, scratch, part, cpu_isa_best());
}

void kernels_wino_forward_part_isa(const conv2d_params *p, const float *x, const float *packed, const float *bias,
                                   float *y, float *scratch, const kernels_part *part, cpu_isa isa)
{
    assert(kernels_wino_applies(p) && isa >= CPU_ISA_AVX2 && isa <= cpu_isa_best());
    const conv2d_params q = wino_conv_of(p);
    const wino_geom g = wino_geom_of(&q);
    int a_lo = 0, a_hi = g.tiles_h, co0 = 0, co1 = p->c_out;
    if (part->axis == KERNELS_PART_POSITIONS) {
        assert(!wino_transposed(p));
        const int n = p->h_out * p->w_out, rows = g.m_h * p->w_out;
        assert(part->lo % rows == 0 && (part->hi == n || part->hi % rows == 0));
        a_lo = part->lo / rows;
        a_hi = part->hi == n ? g.tiles_h : part->hi / rows;
    } else {
        assert(part->lo % KERNELS_GEMM_MR == 0 &&
               (part->hi == p->c_out || part->hi % KERNELS_GEMM_MR == 0));
        co0 = part->lo;
        co1 = part->hi;
    }
#if KERNELS_X86
    const int avx512 = isa >= CPU_ISA_AVX512;
    assert(!avx512 || (g.var != WINO_F13 && g.var != WINO_F31)); /* AVX2-only plans (wino_avx2_small) */
    if (wino_polyphase(p)) { /* the planes' rows this part's tile rows read */
        const int u1 = kernels_imin(q.h_in, g.m_h * a_hi + g.r_h - 1);
        if (avx512)
            wino_polyphase_input(p, x, g.m_h * a_lo, u1, scratch);
        else
            wino_polyphase_input_c(p, x, g.m_h * a_lo, u1, scratch);
        x = scratch;
        scratch += wino_polyphase_floats(p);
    }
    if (avx512)
        wino_forward_avx512(wino_transposed(p), &q, x, packed, bias, y, scratch, a_lo, a_hi, co0, co1);
    else
        wino_forward_avx2(wino_transposed(p), &q, x, packed, bias, y, scratch, a_lo, a_hi, co0, co1);
#else
    (void)x, (void)packed, (void)bias, (void)y, (void)scratch, (void)a_lo, (void)a_hi, (void)co0,
        (void)co1, (void)isa;
#endif
}
