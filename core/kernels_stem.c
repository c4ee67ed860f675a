/* Direct AVX-512 (and AVX2) kernel for the networks' first convolution ("stem"): 3x3, stride 2, few input
 * channels (the RGB image), up to STEM_MAX_COUT output channels, groups 1. As a GEMM its K is only
 * c_in * 9 = 27, so packing the stride-2 im2col matrix costs more than the multiplies; here each
 * output row is computed in vectors of 16 columns: for every input channel and kernel row the
 * three taps' inputs (columns 2q - pad_l + j) are split out of contiguous loads by permutes once,
 * then broadcast weights of every output channel multiply them into one accumulator per channel
 * (weights packed tap-major, [c_in * 9][c_out], so those broadcasts are consecutive floats).
 * Bias and activation are applied in registers before the store. Taps on padding read zeros via
 * masked loads (masked-off lanes never fault). */
#include "kernels.h"

#include <assert.h>
#include <stdint.h>

#include "kernels_internal.h"

#if KERNELS_X86
#include "kernels_avx2.h"
#include "kernels_avx512.h"
#endif

#define STEM_MAX_CIN 4
/* Output channels per pass: one zmm accumulator each, next to the 3 tap vectors. */
#define STEM_PASS 16
#define STEM_MAX_COUT 64

void kernels_stem_pack(const conv2d_params *p, const float *w, float *packed)
{
    const int taps = p->c_in * 9;
    for (int co = 0; co < p->c_out; co++)
        for (int t = 0; t < taps; t++)
            packed[(size_t)t * (size_t)p->c_out + (size_t)co] = w[(size_t)co * (size_t)taps + (size_t)t];
}

int kernels_stem_applies(const conv2d_params *p)
{
    return p->groups == 1 && p->c_in <= STEM_MAX_CIN && p->c_out <= STEM_MAX_COUT &&
           p->k_h == 3 && p->k_w == 3 && p->stride_h == 2 && p->stride_w == 2;
}

#if KERNELS_X86
/* Input columns [c, c + 16) of row (c may be negative or run past w_in: those lanes read 0). */
static inline __attribute__((always_inline)) KERNELS_AVX512 __m512 stem_load(const float *row,
                                                                          int c, int w_in)
{
    const int lo = kernels_imax(-c, 0), hi = kernels_imin(w_in - c, 16);
    const __mmask16 m =
        kernels_avx512_range_mask(lo, hi);
    return _mm512_maskz_loadu_ps(m, (const void *)((uintptr_t)row + (uintptr_t)(4 * (intptr_t)c)));
}

/* Output channels [co0, co0 + n_co) of output row oh. */
static inline __attribute__((always_inline)) KERNELS_AVX512 void
stem_row(const int n_co, const conv2d_params *p, const float *x, const float *w,
         const float *bias, int co0, int oh, float *y)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                           28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in;
    const size_t hw_out = (size_t)p->h_out * (size_t)p->w_out;
    /* the two input rows that output row oh + 1 adds, into L1 now: an input not in cache (the
     * bench's fixed input, a batch's) otherwise stalls the loads of every block */
    for (int ci = 0; ci < p->c_in; ci++)
        for (int ih = kernels_imax(2 * oh - p->pad_t + 3, 0); ih < 2 * oh - p->pad_t + 5 && ih < p->h_in; ih++)
            kernels_prefetch_floats(x + (size_t)ci * hw_in + (size_t)ih * (size_t)p->w_in, p->w_in);
    for (int q0 = 0; q0 < p->w_out; q0 += 16) {
        __m512 acc[STEM_PASS];
#pragma GCC unroll 16
        for (int o = 0; o < n_co; o++) acc[o] = _mm512_set1_ps(bias ? bias[co0 + o] : 0.0f);
        const int c0 = 2 * q0 - p->pad_l; /* input column of tap j = 0 for output q0 */
        for (int ci = 0; ci < p->c_in; ci++)
            for (int i = 0; i < 3; i++) {
                const int ih = 2 * oh - p->pad_t + i;
                if (ih < 0 || ih >= p->h_in) continue;
                const float *row = x + (size_t)ci * hw_in + (size_t)ih * (size_t)p->w_in;
                __m512 a, b, c, d;
                if (c0 >= 0 && c0 + 34 <= p->w_in) { /* inside the row: plain loads */
                    a = _mm512_loadu_ps(row + c0);
                    b = _mm512_loadu_ps(row + c0 + 16);
                    c = _mm512_loadu_ps(row + c0 + 2);
                    d = _mm512_loadu_ps(row + c0 + 18);
                } else {
                    a = stem_load(row, c0, p->w_in);
                    b = stem_load(row, c0 + 16, p->w_in);
                    c = stem_load(row, c0 + 2, p->w_in);
                    d = stem_load(row, c0 + 18, p->w_in);
                }
                const __m512 tap[3] = {_mm512_permutex2var_ps(a, even, b),
                                       _mm512_permutex2var_ps(a, odd, b),
                                       _mm512_permutex2var_ps(c, even, d)};
                const float *wr = w + (size_t)(ci * 9 + i * 3) * (size_t)p->c_out + co0;
#pragma GCC unroll 3
                for (int j = 0; j < 3; j++) {
                    const float *wj = wr + (size_t)j * (size_t)p->c_out;
#pragma GCC unroll 16
                    for (int o = 0; o < n_co; o++)
                        acc[o] = _mm512_fmadd_ps(_mm512_set1_ps(wj[o]), tap[j], acc[o]);
                }
            }
        const int n = p->w_out - q0;
        const __mmask16 m = kernels_avx512_mask(n);
        float *yr = y + (size_t)co0 * hw_out + (size_t)oh * (size_t)p->w_out + q0;
#pragma GCC unroll 16
        for (int o = 0; o < n_co; o++)
            _mm512_mask_storeu_ps(yr + (size_t)o * hw_out, m, avx512_act(acc[o], p->act));
    }
}

static KERNELS_AVX512 void stem_rows_full(const conv2d_params *p, const float *x, const float *w,
                                     const float *bias, int co0, int oh0, int oh1, float *y)
{
    for (int oh = oh0; oh < oh1; oh++) stem_row(STEM_PASS, p, x, w, bias, co0, oh, y);
}

static KERNELS_AVX512 void stem_rows_any(const conv2d_params *p, const float *x, const float *w,
                                      const float *bias, int co0, int n_co, int oh0, int oh1,
                                      float *y)
{
    /* n_co < STEM_PASS: one instance per count keeps the accumulators in registers */
    for (int oh = oh0; oh < oh1; oh++) {
        switch (n_co) {
#define STEM_CASE(n)                                                                              \
    case n: stem_row(n, p, x, w, bias, co0, oh, y); break;
            STEM_CASE(1) STEM_CASE(2) STEM_CASE(3) STEM_CASE(4) STEM_CASE(5) STEM_CASE(6)
            STEM_CASE(7) STEM_CASE(8) STEM_CASE(9) STEM_CASE(10) STEM_CASE(11) STEM_CASE(12)
            STEM_CASE(13) STEM_CASE(14) STEM_CASE(15)
#undef STEM_CASE
        default: break;
        }
    }
}
#endif

#if KERNELS_X86
/* ---- AVX2 + FMA: the same per-output FMA chain (bias, then per input channel, kernel row and tap)
 * on 8 columns per vector; the bits are the AVX-512 kernel's. The input rows are first split into
 * their even and odd columns (staged rows E, O: E[t] = row[2t - pad_l], O[t] = row[2t + 1 - pad_l],
 * zero outside the row), so taps 0, 1, 2 of outputs [q, q + 8) are plain loads of E[q..], O[q..],
 * E[q + 1..]: the permutes are done once per input row and column block, not once per pass of
 * output channels and kernel row. Staged rows live in a ring of 3 per input channel (input row ih
 * in slot ih % 3; consecutive output rows share one input row). A pass of STEM_PASS_AVX2 output
 * channels runs STEM_VECS_AVX2 vectors (16 columns) at once: 12 accumulators (independent FMA
 * chains), 2 tap vectors and a weight broadcast feeding 2 FMAs, over one flat list of the row's
 * taps (stem_taps) as the GEMM strip runs over k. Taps nested as input channel / kernel row / tap
 * (3 taps unrolled: 6 FMA chains of 3 per loop trip) made gcc spill 3 of the 12 accumulators, so
 * passes were of 5 channels (16 = 4 x 4; 10 accumulators): the flat loop measured -26 % on
 * MobileNetV3's 3 -> 16 at 224 (1 thread, min of 100 alternating calls, 233 -> 173 us; 4 x 3
 * vectors 181 us). 1 vector of 8 channels was slower (8 chains of 27 dependent FMAs). Column blocks
 * of STEM_COLS_AVX2 outputs bound the ring (any image width). ---- */
#define STEM_PASS_AVX2 6
#define STEM_VECS_AVX2 2
#define STEM_COLS_AVX2 128
/* Floats per staged E or O row: a block's vectors and one more (tap 2 reads E one column on). */
#define STEM_STAGE_W (STEM_COLS_AVX2 + 8)

/* Input columns [c, c + 8) of row (lanes outside [0, w_in) read 0; masked-off lanes never fault). */
static inline __attribute__((always_inline)) KERNELS_AVX2 __m256 stem_load_avx2(const float *row, int c, int w_in)
{
    const int lo = kernels_imax(-c, 0), hi = kernels_imin(w_in - c, 8);
    const __m256i m = _mm256_andnot_si256(kernels_avx2_mask(lo), kernels_avx2_mask(hi));
    return _mm256_maskload_ps((const float *)((uintptr_t)row + (uintptr_t)(4 * (intptr_t)c)), m);
}

/* The floats of a then b at even positions (a0 a2 a4 a6 b0 b2 b4 b6), or at odd ones. */
static inline __attribute__((always_inline)) KERNELS_AVX2 __m256 stem_pick_avx2(__m256 a, __m256 b, const int odd)
{
    const __m256 s = odd ? _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)) : _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(s), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* Stages input row `row` for outputs [q0, q0 + 8 * nv): E and O, nv + 1 vectors each. */
static KERNELS_AVX2 void stem_stage_avx2(const conv2d_params *p, const float *row, int q0, int nv, float *e, float *o)
{
    for (int v = 0; v <= nv; v++) {
        const int c = 2 * (q0 + 8 * v) - p->pad_l; /* input column of E[q0 + 8v] */
        __m256 a, b;
        if (c >= 0 && c + 16 <= p->w_in) {
            a = _mm256_loadu_ps(row + c);
            b = _mm256_loadu_ps(row + c + 8);
        } else {
            a = stem_load_avx2(row, c, p->w_in);
            b = stem_load_avx2(row, c + 8, p->w_in);
        }
        _mm256_store_ps(e + 8 * v, stem_pick_avx2(a, b, 0));
        _mm256_store_ps(o + 8 * v, stem_pick_avx2(a, b, 1));
    }
}

/* The input columns stem_stage_avx2 reads for outputs [q0, q0 + 8 * nv) of the row two on (the next
 * output row's), into L1 now: the rows are staged in bursts between the output passes, and their
 * loads otherwise waited on memory (an image fresh from the decoder is in cache; the bench's fixed
 * input, like a batch's, is not). */
static inline __attribute__((always_inline)) void stem_prefetch_row(const conv2d_params *p, const float *row, int q0, int nv)
{
    const int c0 = kernels_imax(2 * q0 - p->pad_l, 0), c1 = kernels_imin(2 * (q0 + 8 * nv) + 16 - p->pad_l, p->w_in);
    kernels_prefetch_floats(row + c0, c1 - c0);
}

/* The taps of one output row inside the input, in the order (input channel, kernel row, tap): tap t
 * reads the staged floats from tp[t] + q (E, O, or E one column on) and the pass's weights from
 * tw[t] on (a pass's weights are [tap][STEM_PASS_AVX2]). */
typedef struct {
    const float *tp[STEM_MAX_CIN * 9];
    int tw[STEM_MAX_CIN * 9];
    int nt;
} stem_taps;

/* avx2_act (the same operations) with its constants zero, 3, 6, 1 / 6 in k. */
static inline __attribute__((always_inline)) KERNELS_AVX2 __m256 stem_act_avx2(__m256 v, const act_kind act,
                                                                             const __m256 k[4])
{
    switch (act) {
    case ACT_RELU: return _mm256_max_ps(v, k[0]);
    case ACT_RELU6: return _mm256_min_ps(_mm256_max_ps(v, k[0]), k[2]);
    case ACT_HSWISH:
        return _mm256_mul_ps(_mm256_mul_ps(v, _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v, k[1]), k[0]), k[2])), k[3]);
    case ACT_HSIGMOID: return _mm256_mul_ps(_mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v, k[1]), k[0]), k[2]), k[3]);
    case ACT_NONE: break;
    }
    return v;
}

/* nv vectors of outputs from block column q (see stem_pass_avx2; w: the pass's weights): one flat
 * loop over the taps, nv loads, n_co broadcasts and nv * n_co FMAs each. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void
stem_vecs_avx2(const act_kind act, const int whole, const int n_co, const int nv, const conv2d_params *p,
               const stem_taps *tl, const float *w, const float *bias, int co0, int q, int nq, float *y)
{
    const size_t hw_out = (size_t)p->h_out * (size_t)p->w_out;
    __m256 acc[STEM_VECS_AVX2][STEM_PASS_AVX2];
#pragma GCC unroll 6
    for (int o = 0; o < n_co; o++) {
        const __m256 b = _mm256_set1_ps(bias ? bias[co0 + o] : 0.0f);
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) acc[v][o] = b;
    }
    for (int t = 0, nt = tl->nt; t < nt; t++) {
        const float *e = tl->tp[t] + q, *wt = w + tl->tw[t];
        __m256 tap[STEM_VECS_AVX2];
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) tap[v] = _mm256_loadu_ps(e + 8 * v);
#pragma GCC unroll 6
        for (int o = 0; o < n_co; o++) {
            const __m256 wv = _mm256_broadcast_ss(wt + o);
#pragma GCC unroll 3
            for (int v = 0; v < nv; v++) acc[v][o] = _mm256_fmadd_ps(wv, tap[v], acc[v][o]);
        }
    }
    if (whole && (act == ACT_NONE || act == ACT_RELU)) { /* at most a zero beside the accumulators */
#pragma GCC unroll 6
        for (int o = 0; o < n_co; o++)
#pragma GCC unroll 3
            for (int v = 0; v < nv; v++)
                _mm256_storeu_ps(y + (size_t)o * hw_out + q + 8 * v, avx2_act(acc[v][o], act));
    } else if (whole) {
        /* the other activations' 3 constants beside the 12 accumulators spill one of them in the tap
         * loop (the compiler hoists them out of the loop over steps, or gives up a register for the
         * whole loop, 1.7x the time): the sums of all vectors but the first stored, then the
         * constants loaded by an asm the compiler cannot move, which also has those sums read back */
        static const float consts[3] = {3.0f, 6.0f, 1.0f / 6.0f};
#pragma GCC unroll 6
        for (int o = 0; o < n_co; o++)
#pragma GCC unroll 3
            for (int v = 1; v < nv; v++) _mm256_storeu_ps(y + (size_t)o * hw_out + q + 8 * v, acc[v][o]);
        __m256 k[4];
        __asm__ volatile("vxorps %0, %0, %0\n\tvbroadcastss %4, %1\n\tvbroadcastss %5, %2\n\tvbroadcastss %6, %3"
                         : "=&x"(k[0]), "=x"(k[1]), "=x"(k[2]), "=x"(k[3])
                         : "m"(consts[0]), "m"(consts[1]), "m"(consts[2])
                         : "memory");
#pragma GCC unroll 6
        for (int o = 0; o < n_co; o++)
#pragma GCC unroll 3
            for (int v = 0; v < nv; v++) {
                float *d = y + (size_t)o * hw_out + q + 8 * v;
                _mm256_storeu_ps(d, stem_act_avx2(v == 0 ? acc[0][o] : _mm256_loadu_ps(d), act, k));
            }
    } else {
#pragma GCC unroll 6
        for (int o = 0; o < n_co; o++)
#pragma GCC unroll 3
            for (int v = 0; v < nv; v++)
                avx2_store_n(y + (size_t)o * hw_out + q + 8 * v, avx2_act(acc[v][o], act), nq - q - 8 * v);
    }
}

/* Output channels [co0, co0 + n_co) of one output row at columns [0, nq) of the block, from its taps
 * tl. y: channel co0's output at the block's first column. Steps of STEM_VECS_AVX2 whole vectors
 * with act a compile-time constant and plain stores (the activation's switch and avx2_store_n's
 * tests on every stored vector were a third of the instructions of a step), then a last step of
 * fewer or partial vectors. */
static inline __attribute__((always_inline)) KERNELS_AVX2 void
stem_pass_avx2(const act_kind act, const int n_co, const conv2d_params *p, const stem_taps *tl, const float *w,
               const float *bias, int co0, int nq, float *y)
{
    int q = 0;
    for (; q + 8 * STEM_VECS_AVX2 <= nq; q += 8 * STEM_VECS_AVX2)
        stem_vecs_avx2(act, 1, n_co, STEM_VECS_AVX2, p, tl, w, bias, co0, q, nq, y);
    for (; q + 8 * (STEM_VECS_AVX2 - 1) < nq; q += 8 * STEM_VECS_AVX2)
        stem_vecs_avx2(p->act, 0, n_co, STEM_VECS_AVX2, p, tl, w, bias, co0, q, nq, y);
    for (; q < nq; q += 8) stem_vecs_avx2(p->act, 0, n_co, 1, p, tl, w, bias, co0, q, nq, y);
}

static inline __attribute__((always_inline)) KERNELS_AVX2 void stem_passes_act_avx2(const act_kind act,
                                                                                    const conv2d_params *p,
                                                                                    const stem_taps *tl,
                                                                                    const float *w, const float *bias,
                                                                                    int co0, int n_co, int nq, float *y)
{
    /* one instance per count keeps the accumulators in registers */
    switch (n_co) {
#define STEM_CASE(n)                                                                                                   \
    case n: stem_pass_avx2(act, n, p, tl, w, bias, co0, nq, y); break;
        STEM_CASE(1) STEM_CASE(2) STEM_CASE(3) STEM_CASE(4) STEM_CASE(5) STEM_CASE(6)
#undef STEM_CASE
    default: break;
    }
}

static KERNELS_AVX2 void stem_passes_avx2(const conv2d_params *p, const stem_taps *tl, const float *w,
                                          const float *bias, int co0, int n_co, int nq, float *y)
{
    switch (p->act) {
    case ACT_RELU: stem_passes_act_avx2(ACT_RELU, p, tl, w, bias, co0, n_co, nq, y); break;
    case ACT_RELU6: stem_passes_act_avx2(ACT_RELU6, p, tl, w, bias, co0, n_co, nq, y); break;
    case ACT_HSWISH: stem_passes_act_avx2(ACT_HSWISH, p, tl, w, bias, co0, n_co, nq, y); break;
    case ACT_HSIGMOID: stem_passes_act_avx2(ACT_HSIGMOID, p, tl, w, bias, co0, n_co, nq, y); break;
    case ACT_NONE: stem_passes_act_avx2(ACT_NONE, p, tl, w, bias, co0, n_co, nq, y); break;
    }
}

/* Output rows [oh0, oh1), block of columns by block; output channels in passes of STEM_PASS_AVX2 as
 * even as can be (16: 6 + 5 + 5, 24: 4 x 6). */
static KERNELS_AVX2 void stem_forward_avx2(const conv2d_params *p, const float *x, const float *w, const float *bias,
                                           int oh0, int oh1, float *y)
{
    _Alignas(32) float stage[STEM_MAX_CIN * 3][2 * STEM_STAGE_W];
    const size_t hw_in = (size_t)p->h_in * (size_t)p->w_in, hw_out = (size_t)p->h_out * (size_t)p->w_out;
    const int n_pass = (p->c_out + STEM_PASS_AVX2 - 1) / STEM_PASS_AVX2, taps = 9 * p->c_in;
    /* the weights pass by pass, each [tap][STEM_PASS_AVX2] (n_co used): a tap's broadcasts at fixed
     * offsets from one pointer */
    float wp[(STEM_MAX_COUT / STEM_PASS_AVX2 + 1) * STEM_PASS_AVX2 * STEM_MAX_CIN * 9];
    for (int k = 0, co0 = 0; k < n_pass; k++) {
        const int n_co = p->c_out / n_pass + (k < p->c_out % n_pass);
        for (int t = 0; t < taps; t++)
            for (int o = 0; o < n_co; o++)
                wp[(k * taps + t) * STEM_PASS_AVX2 + o] = w[(size_t)t * (size_t)p->c_out + (size_t)(co0 + o)];
        co0 += n_co;
    }
    for (int q0 = 0; q0 < p->w_out; q0 += STEM_COLS_AVX2) {
        const int nq = kernels_imin(STEM_COLS_AVX2, p->w_out - q0), nv = (nq + 7) / 8;
        int slot_row[STEM_MAX_CIN * 3];
        for (int s = 0; s < STEM_MAX_CIN * 3; s++) slot_row[s] = -1;
        for (int oh = oh0; oh < oh1; oh++) {
            stem_taps tl;
            tl.nt = 0;
            for (int ci = 0; ci < p->c_in; ci++)
                for (int i = 0; i < 3; i++) {
                    const int ih = 2 * oh - p->pad_t + i, s = ci * 3 + (ih % 3 + 3) % 3;
                    if (ih < 0 || ih >= p->h_in) continue; /* taps skipped, as the AVX-512 kernel does */
                    if (slot_row[s] != ih) {
                        const float *row = x + (size_t)ci * hw_in + (size_t)ih * (size_t)p->w_in;
                        stem_stage_avx2(p, row, q0, nv, stage[s], stage[s] + STEM_STAGE_W);
                        slot_row[s] = ih;
                        if (ih + 2 < p->h_in) stem_prefetch_row(p, row + 2 * (size_t)p->w_in, q0, nv);
                    }
                    for (int j = 0; j < 3; j++) {
                        tl.tp[tl.nt] = stage[s] + (j == 1 ? STEM_STAGE_W : 0) + (j == 2);
                        tl.tw[tl.nt++] = ((ci * 3 + i) * 3 + j) * STEM_PASS_AVX2;
                    }
                }
            for (int k = 0, co0 = 0; k < n_pass; k++) {
                const int n_co = p->c_out / n_pass + (k < p->c_out % n_pass);
                stem_passes_avx2(p, &tl, wp + k * taps * STEM_PASS_AVX2, bias, co0, n_co, nq,
                                 y + (size_t)co0 * hw_out + (size_t)oh * (size_t)p->w_out + q0);
                co0 += n_co;
            }
        }
    }
}
#endif

/* Rows are independent and each reads a few input rows: parts are whole output rows (the few
 * output channels would split into narrow passes). */
kernels_part kernels_stem_part(const conv2d_params *p, int ith, int nth)
{
    return kernels_part_split(KERNELS_PART_POSITIONS, p->h_out * p->w_out, p->w_out, ith, nth);
}

void kernels_stem_forward_part(const conv2d_params *p, const float *x, const float *w,
                               const float *bias, float *y, const kernels_part *part)
{
    kernels_stem_forward_part_isa(p, x, w, bias, y, part, cpu_isa_best());
}

void kernels_stem_forward_part_isa(const conv2d_params *p, const float *x, const float *w, const float *bias, float *y,
                                   const kernels_part *part, cpu_isa isa)
{
    assert(kernels_stem_applies(p) && isa >= CPU_ISA_AVX2 && isa <= cpu_isa_best());
    int oh0 = 0, oh1 = p->h_out;
    if (part->axis == KERNELS_PART_POSITIONS) {
        const int n = p->h_out * p->w_out;
        assert(part->lo % p->w_out == 0 && (part->hi == n || part->hi % p->w_out == 0));
        oh0 = part->lo / p->w_out;
        oh1 = (part->hi + p->w_out - 1) / p->w_out;
    } else {
        assert(part->lo == 0 && part->hi == p->c_out);
    }
#if KERNELS_X86
    if (isa < CPU_ISA_AVX512) {
        stem_forward_avx2(p, x, w, bias, oh0, oh1, y);
        return;
    }
    for (int co0 = 0; co0 < p->c_out; co0 += STEM_PASS) {
        const int n_co = kernels_imin(STEM_PASS, p->c_out - co0);
        if (n_co == STEM_PASS)
            stem_rows_full(p, x, w, bias, co0, oh0, oh1, y);
        else
            stem_rows_any(p, x, w, bias, co0, n_co, oh0, oh1, y);
    }
#else
    (void)x, (void)w, (void)bias, (void)y, (void)oh0, (void)oh1, (void)isa;
#endif
}
