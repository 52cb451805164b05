/*
 * Linear layers y[M, N] (=|+=) x[M, K] @ W[N, K]^T + bias, with x and y fp32 and W in one of three packed forms.
 * All three keep 32 outputs per panel, so one panel is read once for a block of rows, and one thread owns it.
 *
 * bf16   [N/32][K/2][32][2]: a 128-byte line holds two consecutive k's of 32 outputs, as 32-bit pairs
 *        (w[k] in the low half, w[k+1] in the high half). With AVX512-BF16, vdpbf16ps multiplies such a pair by
 *        a pair of x (rounded to bf16) and adds both products to an fp32 lane: one instruction per 16 outputs and
 *        2 k's. Without it the pair is widened to two fp32 vectors (a shift and a mask) for two FMAs.
 * int8   [N/32][K/4][32][4], symmetric, one fp32 scale per output. x is quantized per row at each call. With
 *        VNNI, x becomes uint8 (x / s + 128) and vpdpbusd sums 4 products per lane; the 128 x (column sum) the
 *        zero point adds is removed exactly in int32. Without VNNI, x is int8 and u8 x s8 multiplies (vpmaddubsw)
 *        take |x| and w with the sign of x, so no pair sum can saturate int16 (127 x 127 x 2 < 32767).
 * int4   per panel and group of 32 k's, 576 bytes: 512 bytes of 4-bit weights (w + 8, 0..15) and 32 fp16 scales
 *        (group-wise, as llama.cpp's Q4_0). Nibble layout, for the 16-output half h and quad q (0..3): 64 bytes at
 *        (4h + q) x 64, lane j (output 16h + j) holds k = 4q..4q+3 in its 4 low nibbles and k = 16+4q.. in the high
 *        ones, so `& 15` and `>> 4 & 15` give two k-quads for 16 outputs. x is quantized per group of 32 to int8
 *        with its own scale (as Q8_0); sum(u (x)) over a group minus 8 sum(x) is the signed dot product.
 */
#include "kernels.h"
#include "simd.h"
#include <stdlib.h>

#define NP 32            /* outputs per panel */
#define NCH (NP / VL)    /* vectors per panel row */
#define MC 96            /* rows of x per cache block */
#if defined(COCINA_AVX512)
#define MR 12            /* rows per register block: 24 accumulators fit the 32 zmm registers */
#define MR4 8
#else
#define MR 3             /* 12 accumulators of the 16 ymm registers */
#define MR4 2
#endif
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* Blocks of several rows are compute-bound: while one works on a panel it prefetches its share of the thread's
 * next panel into L2 (lines [lo, lo + n) of `lines` 64-byte lines per k step), so that panel's first block finds
 * it there instead of waiting on memory. Single rows stream and leave it to the hardware prefetcher. */
typedef struct {
    const char *next;
    int64_t lo, n;
    int lines;
} prefetch_t;

static ALWAYS_INLINE void prefetch_step(const prefetch_t *pf, int64_t k)
{
    if (pf->next && k < pf->n)
        for (int l = 0; l < pf->lines; l++)
            _mm_prefetch(pf->next + ((pf->lo + k) * pf->lines + l) * 64, _MM_HINT_T1);
}

/* A register block of mr rows: MR x NCH accumulators. With few rows the accumulators are too few to hide the
 * latency of their FMA/dot chains (a decode would then wait on it, not on memory), so consecutive k's go to U
 * independent sets that are added at the end: 4 for one row, 2 for two. */
#define U_FOR(mr) ((mr) == 1 ? 4 : (mr) == 2 ? 2 : 1)

/* ---- bf16 ------------------------------------------------------------------------------------------------ */
static ALWAYS_INLINE void bf16_step(const uint16_t *line, const void *xp, int64_t k2, int64_t ldx, int mr,
                                    vf acc[][NCH])
{
#if defined(COCINA_BF16DP)
    /* x pairs (bf16 k, k+1) as 32-bit words: one broadcast feeds 16 outputs x 2 k's */
    const uint32_t *xw = (const uint32_t *)xp;
    __m512i w0 = _mm512_loadu_si512((const void *)line), w1 = _mm512_loadu_si512((const void *)(line + 32));
    for (int r = 0; r < MR; r++) {
        if (r < mr) {
            __m512i b = _mm512_set1_epi32((int)xw[r * ldx + k2]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], (__m512bh)w0, (__m512bh)b);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], (__m512bh)w1, (__m512bh)b);
        }
    }
#else
    const float *xf = (const float *)xp;
    for (int c = 0; c < NCH; c++) {
        vi v = vi_load(line + c * VL * 2);
        vf lo = vi_bf16_lo(v), hi = vi_bf16_hi(v);
        for (int r = 0; r < MR; r++) {
            if (r < mr) {
                acc[r][c] = vf_fma(vf_set1(xf[r * ldx + 2 * k2]), lo, acc[r][c]);
                acc[r][c] = vf_fma(vf_set1(xf[r * ldx + 2 * k2 + 1]), hi, acc[r][c]);
            }
        }
    }
#endif
}

static ALWAYS_INLINE void bf16_block(const uint16_t *wp, const void *xp, int64_t K2, int64_t ldx, int mr,
                                     float *out, const prefetch_t *pf)
{
    enum { UMAX = 4 };
    const int U = U_FOR(mr);
    vf acc[UMAX][MR][NCH];
    for (int u = 0; u < U; u++)
        for (int r = 0; r < MR; r++)
            for (int c = 0; c < NCH; c++) acc[u][r][c] = vf_zero();
    int64_t k2 = 0;
    for (; k2 + U <= K2; k2 += U) {
        if (U == 1) prefetch_step(pf, k2);
        for (int u = 0; u < U; u++) bf16_step(wp + (k2 + u) * 64, xp, k2 + u, ldx, mr, acc[u]);
    }
    for (; k2 < K2; k2++) bf16_step(wp + k2 * 64, xp, k2, ldx, mr, acc[0]);
    for (int u = 1; u < U; u++)
        for (int r = 0; r < mr; r++)
            for (int c = 0; c < NCH; c++) acc[0][r][c] = vf_add(acc[0][r][c], acc[u][r][c]);
    for (int r = 0; r < mr; r++)
        for (int c = 0; c < NCH; c++) vf_store(out + r * NP + c * VL, acc[0][r][c]);
}

#if defined(COCINA_AVX512)
/* One row on the AVX-512 builds: the 256-bit form of the loop, as for int8 below (which says why): per k pair 4 ymm
 * loads of the panel's 128 bytes, with native bf16 4 vdpbf16ps ymm, otherwise each pair widened for 2 FMAs as in
 * the AVX2 build; consecutive pairs to 4 sets of accumulators (16 ymm). */
static ALWAYS_INLINE void bf16_step_ymm(const uint16_t *line, const void *xp, int64_t k2, __m256 acc[4])
{
#if defined(COCINA_BF16DP)
    const __m256i b = _mm256_set1_epi32((int)((const uint32_t *)xp)[k2]);
    for (int c = 0; c < 4; c++) {
        const __m256i w = _mm256_loadu_si256((const __m256i *)(line + c * 16));
        acc[c] = _mm256_dpbf16_ps(acc[c], (__m256bh)w, (__m256bh)b);
    }
#else
    const float *xf = (const float *)xp;
    const __m256 x0 = _mm256_set1_ps(xf[2 * k2]), x1 = _mm256_set1_ps(xf[2 * k2 + 1]);
    const __m256i hi = _mm256_set1_epi32((int)0xFFFF0000u);
    for (int c = 0; c < 4; c++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(line + c * 16));
        acc[c] = _mm256_fmadd_ps(x0, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), acc[c]);
        acc[c] = _mm256_fmadd_ps(x1, _mm256_castsi256_ps(_mm256_and_si256(v, hi)), acc[c]);
    }
#endif
}

static void bf16_1(const uint16_t *wp, const void *xp, int64_t K2, int64_t ldx, float *out, const prefetch_t *pf)
{
    enum { U1 = 4 };
    (void)ldx;
    (void)pf;
    __m256 acc[U1][4];
    for (int u = 0; u < U1; u++)
        for (int c = 0; c < 4; c++) acc[u][c] = _mm256_setzero_ps();
    int64_t k2 = 0;
    for (; k2 + U1 <= K2; k2 += U1)
        for (int u = 0; u < U1; u++) bf16_step_ymm(wp + (k2 + u) * 64, xp, k2 + u, acc[u]);
    for (; k2 < K2; k2++) bf16_step_ymm(wp + k2 * 64, xp, k2, acc[0]);
    for (int c = 0; c < 4; c++) {
        const __m256 s01 = _mm256_add_ps(acc[0][c], acc[1][c]), s23 = _mm256_add_ps(acc[2][c], acc[3][c]);
        _mm256_storeu_ps(out + c * 8, _mm256_add_ps(s01, s23));
    }
}
#endif

/* ---- int8 ------------------------------------------------------------------------------------------------ */
static ALWAYS_INLINE void i8_step(const int8_t *line, const uint8_t *xq, int64_t g, int64_t ldx, int mr,
                                  vi acc[][NCH])
{
    vi w[NCH];
    for (int c = 0; c < NCH; c++) w[c] = vi_load(line + c * VL * 4);
    for (int r = 0; r < MR; r++) {
        if (r < mr) {
            int32_t four;
            memcpy(&four, xq + r * ldx + g * 4, sizeof four);
            vi b = vi_set1(four);
#if defined(COCINA_VNNI)
            for (int c = 0; c < NCH; c++) acc[r][c] = vi_dot_u8s8(acc[r][c], b, w[c]);
#else
            vi a = vi_abs8(b);
            for (int c = 0; c < NCH; c++) acc[r][c] = vi_dot_u8s8(acc[r][c], a, vi_sign8(w[c], b));
#endif
        }
    }
}

static ALWAYS_INLINE void i8_block(const int8_t *wp, const uint8_t *xq, int64_t K4, int64_t ldx, int mr,
                                   int32_t *out, const prefetch_t *pf)
{
    enum { UMAX = 4 };
    const int U = U_FOR(mr);
    vi acc[UMAX][MR][NCH];
    for (int u = 0; u < U; u++)
        for (int r = 0; r < MR; r++)
            for (int c = 0; c < NCH; c++) acc[u][r][c] = vi_zero();
    int64_t g = 0;
    for (; g + U <= K4; g += U) {
        if (U == 1) prefetch_step(pf, g);
        for (int u = 0; u < U; u++) i8_step(wp + (g + u) * 128, xq, g + u, ldx, mr, acc[u]);
    }
    for (; g < K4; g++) i8_step(wp + g * 128, xq, g, ldx, mr, acc[0]);
    for (int u = 1; u < U; u++)
        for (int r = 0; r < mr; r++)
            for (int c = 0; c < NCH; c++) acc[0][r][c] = vi_add(acc[0][r][c], acc[u][r][c]);
    for (int r = 0; r < mr; r++)
        for (int c = 0; c < NCH; c++) {
#if defined(COCINA_AVX512)
            _mm512_storeu_si512((void *)(out + r * NP + c * VL), acc[0][r][c]);
#else
            _mm256_storeu_si256((__m256i *)(out + r * NP + c * VL), acc[0][r][c]);
#endif
        }
}

#if defined(COCINA_AVX512)
/* One row on the AVX-512 builds runs the 256-bit form of the loop: per k-quad 4 ymm loads of the panel's 128
 * bytes and 4 dot products (vpdpbusd ymm with VNNI, vpmaddubsw otherwise), consecutive k-quads to 4 sets of
 * accumulators (16 ymm). A one-row decode only streams the weights, and on the AMD EPYC (Zen 4) it was measured
 * on, the 512-bit loop (2 zmm loads and dot products per k-quad, 8 accumulators; 16 did not help) streamed them
 * 15-20% slower, per decode step, than this one, which is as fast as the AVX2 build (issue #14, docs/engine.md).
 * From 3 rows on, the 512-bit blocks are faster (each weight load serves several rows); at 2 rows they were
 * level with the 256-bit ones. */
static ALWAYS_INLINE void i8_step_ymm(const int8_t *line, const uint8_t *xq, __m256i acc[4])
{
    int32_t four;
    memcpy(&four, xq, sizeof four);
    const __m256i b = _mm256_set1_epi32(four);
#if defined(COCINA_VNNI)
    for (int c = 0; c < 4; c++) {
        const __m256i w = _mm256_loadu_si256((const __m256i *)(line + c * 32));
        __asm__("vpdpbusd %2, %1, %0" : "+v"(acc[c]) : "v"(b), "v"(w)); /* see vi_dot_u8s8 for the asm */
    }
#else
    const __m256i a = _mm256_abs_epi8(b), ones = _mm256_set1_epi16(1);
    for (int c = 0; c < 4; c++) {
        const __m256i w = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(line + c * 32)), b);
        acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(_mm256_maddubs_epi16(a, w), ones));
    }
#endif
}

static void i8_1(const int8_t *wp, const uint8_t *xq, int64_t K4, int64_t ldx, int32_t *out, const prefetch_t *pf)
{
    enum { U1 = 4 };
    (void)ldx;
    (void)pf;
    __m256i acc[U1][4];
    for (int u = 0; u < U1; u++)
        for (int c = 0; c < 4; c++) acc[u][c] = _mm256_setzero_si256();
    int64_t g = 0;
    for (; g + U1 <= K4; g += U1)
        for (int u = 0; u < U1; u++) i8_step_ymm(wp + (g + u) * 128, xq + (g + u) * 4, acc[u]);
    for (; g < K4; g++) i8_step_ymm(wp + g * 128, xq + g * 4, acc[0]);
    for (int c = 0; c < 4; c++) {
        const __m256i s01 = _mm256_add_epi32(acc[0][c], acc[1][c]), s23 = _mm256_add_epi32(acc[2][c], acc[3][c]);
        _mm256_storeu_si256((__m256i *)(out + c * 8), _mm256_add_epi32(s01, s23));
    }
}
#endif

/* Largest |x| of n values (NaN when one is NaN, so the row's outputs become NaN, not finite garbage). */
static float absmax(const float *x, int64_t n)
{
    vf m = vf_zero();
    int nan = 0;
    int64_t k = 0;
    for (; k + VL <= n; k += VL) {
        vf v = vf_load(x + k);
        nan |= vf_any_nan(v);
        m = vf_max(m, vf_abs(v));
    }
    float a = vf_hmax(m);
    for (; k < n; k++) {
        float f = fabsf(x[k]);
        if (f != f) nan = 1;
        a = f > a ? f : a;
    }
    return nan ? NAN : a;
}

/* q[k] = round(x[k] / s) clamped to +-127, plus zp, for k < n (round half to even, as nearbyintf);
 * returns the sum of the rounded values (zp excluded). */
static int32_t quantize_values(const float *x, int64_t n, float inv, int zp, uint8_t *q)
{
    vi sum = vi_zero();
    int64_t k = 0;
    for (; k + VL <= n; k += VL) {
        vi r = vf_to_vi(vf_mul(vf_load(x + k), vf_set1(inv)));
        r = vi_max(vi_min(r, vi_set1(127)), vi_set1(-127));
        sum = vi_add(sum, r);
        vi_store_bytes(q + k, vi_add(r, vi_set1(zp)));
    }
    int32_t s = vi_hsum(sum);
    for (; k < n; k++) {
        float f = nearbyintf(x[k] * inv);
        int v = f > 127.0f ? 127 : f < -127.0f ? -127 : (int)f;
        s += v;
        q[k] = (uint8_t)(v + zp);
    }
    return s;
}

/* Row x[K] -> K4 * 4 bytes of quantized x (zero padded) and its scale. VNNI: uint8 with zero point 128. */
static void quantize_row_i8(const float *x, int64_t K, int64_t K4, uint8_t *q, float *scale)
{
    const float amax = absmax(x, K);
    const float s = amax != amax ? NAN : amax > 0 ? amax / 127.0f : 1.0f;
    *scale = s;
#if defined(COCINA_VNNI)
    const int zp = 128;
#else
    const int zp = 0;
#endif
    quantize_values(x, K, 1.0f / s, zp, q);
    for (int64_t k = K; k < K4 * 4; k++) q[k] = (uint8_t)zp;
}

/* ---- int4 ------------------------------------------------------------------------------------------------ */
#define G4 32             /* k's per group */
#define G4BYTES 576       /* 512 bytes of nibbles + 32 fp16 scales per panel and group */

static ALWAYS_INLINE void i4_block(const uint8_t *wp, const int8_t *xq, const float *xd, const int32_t *xs8,
                                   int64_t G, int64_t ldx, int64_t ldg, int mr, float *out, const prefetch_t *pf)
{
    vf facc[MR4][NCH];
    for (int r = 0; r < MR4; r++)
        for (int c = 0; c < NCH; c++) facc[r][c] = vf_zero();
    const vi low4 = vi_set1(0x0F0F0F0F);
    for (int64_t g = 0; g < G; g++) {
        if (mr > 2) prefetch_step(pf, g);
        const uint8_t *blk = wp + g * G4BYTES;
        for (int c = 0; c < NCH; c++) {
            /* this vector's outputs: half h of the panel, lanes sub.. of it */
            const int h = (c * VL) / 16, sub = ((c * VL) % 16) * 4;
            vi iacc[MR4];
            for (int r = 0; r < MR4; r++) iacc[r] = vi_zero();
            for (int q = 0; q < 4; q++) {
                vi v = vi_load(blk + (4 * h + q) * 64 + sub);
                vi lo = vi_and(v, low4), hi = vi_and(vi_srl16(v, 4), low4);
                for (int r = 0; r < MR4; r++) {
                    if (r < mr) {
                        int32_t a, b;
                        memcpy(&a, xq + r * ldx + g * G4 + 4 * q, 4);
                        memcpy(&b, xq + r * ldx + g * G4 + 16 + 4 * q, 4);
                        iacc[r] = vi_dot_u8s8(iacc[r], lo, vi_set1(a));
                        iacc[r] = vi_dot_u8s8(iacc[r], hi, vi_set1(b));
                    }
                }
            }
            const vf ws = vf_load_half((const uint16_t *)(blk + 512) + c * VL);
            for (int r = 0; r < MR4; r++) {
                if (r < mr) {
                    /* sum u x = sum (w + 8) x: take 8 sum(x) off, in int32, exactly */
                    vf d = vi_to_vf(vi_sub(iacc[r], vi_set1(xs8[r * ldg + g])));
                    facc[r][c] = vf_fma(d, vf_mul(ws, vf_set1(xd[r * ldg + g])), facc[r][c]);
                }
            }
        }
    }
    for (int r = 0; r < mr; r++)
        for (int c = 0; c < NCH; c++) vf_store(out + r * NP + c * VL, facc[r][c]);
}

/* Row x[K] -> G groups of 32 int8 (zero padded), a scale and 8 x the sum of each group */
static void quantize_row_i4(const float *x, int64_t K, int64_t G, int8_t *q, float *d, int32_t *s8)
{
    for (int64_t g = 0; g < G; g++) {
        const int64_t k0 = g * G4, n = K - k0 < G4 ? K - k0 : G4;
        const float amax = absmax(x + k0, n);
        const float s = amax != amax ? NAN : amax > 0 ? amax / 127.0f : 1.0f;
        const int32_t sum = quantize_values(x + k0, n, 1.0f / s, 0, (uint8_t *)q + k0);
        for (int64_t k = n; k < G4; k++) q[k0 + k] = 0;
        d[g] = s;
        s8[g] = 8 * sum;
    }
}

/* ---- instantiations per row count (mr a constant in each copy) ------------------------------------------- */
#define BF(n) static void bf16_##n(const uint16_t *w, const void *x, int64_t K2, int64_t ldx, float *o, \
                                   const prefetch_t *pf) { bf16_block(w, x, K2, ldx, n, o, pf); }
#define I8(n) static void i8_##n(const int8_t *w, const uint8_t *x, int64_t K4, int64_t ldx, int32_t *o, \
                                 const prefetch_t *pf) { i8_block(w, x, K4, ldx, n, o, pf); }
#define I4(n) static void i4_##n(const uint8_t *w, const int8_t *x, const float *d, const int32_t *s, int64_t G, \
                                 int64_t ldx, int64_t ldg, float *o, const prefetch_t *pf) \
    { i4_block(w, x, d, s, G, ldx, ldg, n, o, pf); }
typedef void (*bf16_fn)(const uint16_t *, const void *, int64_t, int64_t, float *, const prefetch_t *);
typedef void (*i8_fn)(const int8_t *, const uint8_t *, int64_t, int64_t, int32_t *, const prefetch_t *);
typedef void (*i4_fn)(const uint8_t *, const int8_t *, const float *, const int32_t *, int64_t, int64_t, int64_t,
                      float *, const prefetch_t *);
#if defined(COCINA_AVX512)
BF(2) BF(3) BF(4) BF(5) BF(6) BF(7) BF(8) BF(9) BF(10) BF(11) BF(12) /* bf16_1: above */
I8(2) I8(3) I8(4) I8(5) I8(6) I8(7) I8(8) I8(9) I8(10) I8(11) I8(12) /* i8_1: above */
I4(1) I4(2) I4(3) I4(4) I4(5) I4(6) I4(7) I4(8)
static const bf16_fn BF16_BLOCKS[MR + 1] = {0, bf16_1, bf16_2, bf16_3, bf16_4, bf16_5, bf16_6, bf16_7, bf16_8,
                                            bf16_9, bf16_10, bf16_11, bf16_12};
static const i8_fn I8_BLOCKS[MR + 1] = {0, i8_1, i8_2, i8_3, i8_4, i8_5, i8_6, i8_7, i8_8, i8_9, i8_10, i8_11, i8_12};
static const i4_fn I4_BLOCKS[MR4 + 1] = {0, i4_1, i4_2, i4_3, i4_4, i4_5, i4_6, i4_7, i4_8};
#else
BF(1) BF(2) BF(3) I8(1) I8(2) I8(3) I4(1) I4(2)
static const bf16_fn BF16_BLOCKS[MR + 1] = {0, bf16_1, bf16_2, bf16_3};
static const i8_fn I8_BLOCKS[MR + 1] = {0, i8_1, i8_2, i8_3};
static const i4_fn I4_BLOCKS[MR4 + 1] = {0, i4_1, i4_2};
#endif

/* Adds the bias and writes (or adds, with acc) nn <= 32 outputs of one row */
static inline void store_row(const float *v, const float *bias, float *dst, int nn, int acc)
{
    if (nn == NP) {
        for (int c = 0; c < NCH; c++) {
            vf r = vf_load(v + c * VL);
            if (bias) r = vf_add(r, vf_load(bias + c * VL));
            if (acc) r = vf_add(r, vf_load(dst + c * VL));
            vf_store(dst + c * VL, r);
        }
        return;
    }
    for (int j = 0; j < nn; j++) {
        float r = v[j] + (bias ? bias[j] : 0.0f);
        dst[j] = acc ? dst[j] + r : r;
    }
}

/* The calling thread's buffer for one cache block of prepared rows (OpenMP's workers get the plain pointer). */
static __thread unsigned char *prep_buf;
static __thread size_t prep_cap;

static void *prep_alloc(size_t need)
{
    if (need > prep_cap) {
        unsigned char *nb = (unsigned char *)realloc(prep_buf, need);
        if (!nb) return NULL;
        prep_buf = nb;
        prep_cap = need;
    }
    return prep_buf;
}

/*
 * y[m, :] (=|+=) x[m, :] @ W^T + bias for m < M; x rows ldx floats apart, y rows ldy apart.
 * Returns 0, -1 when out of memory, -2 for an unknown kind.
 */
int cocina_linear(const cl_linear *L, const float *x, int64_t M, int64_t ldx, float *y, int64_t ldy, int accumulate,
                  int nthreads)
{
    const int64_t N = L->N, K = L->K, P = (N + NP - 1) / NP;
    const int64_t K2 = (K + 1) / 2, K4 = (K + 3) / 4, G = (K + G4 - 1) / G4;
    const int kind = L->kind;
    if (kind < LIN_BF16 || kind > LIN_INT4) return -2;
    for (int64_t m0 = 0; m0 < M; m0 += MC) {
        const int64_t mc = M - m0 < MC ? M - m0 : MC;
        const float *xb = x + m0 * ldx;
        /* prepare this block's rows once: every panel reads them */
        int64_t ldp = 0, ldg = 0;
        void *prep;
        if (kind == LIN_BF16) {
#if defined(COCINA_BF16DP)
            ldp = K2;
            uint32_t *xw = (uint32_t *)(prep = prep_alloc((size_t)mc * (size_t)K2 * 4));
            if (!prep) return -1;
            /* bf16 pairs (k, k+1) in a 32-bit word are just the row rounded to bf16, contiguous */
#pragma omp parallel for num_threads(nthreads) schedule(static) if (mc > 8)
            for (int64_t m = 0; m < mc; m++) {
                const float *xr = xb + m * ldx;
                uint16_t *row = (uint16_t *)(xw + m * K2);
                int64_t k = 0;
                for (; k + 16 <= K; k += 16)
                    _mm256_storeu_si256((__m256i *)(row + k), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(xr + k)));
                for (; k < 2 * K2; k++) row[k] = k < K ? f32_to_bf16(xr[k]) : 0;
            }
#else
            ldp = 2 * K2;
            float *xf = (float *)(prep = prep_alloc((size_t)mc * (size_t)ldp * 4));
            if (!prep) return -1;
            for (int64_t m = 0; m < mc; m++) {
                memcpy(xf + m * ldp, xb + m * ldx, (size_t)K * 4);
                if (ldp > K) xf[m * ldp + K] = 0.0f;
            }
#endif
        } else if (kind == LIN_INT8) {
            ldp = K4 * 4;
            prep = prep_alloc((size_t)mc * (size_t)(ldp + 4));
            if (!prep) return -1;
            uint8_t *q = (uint8_t *)prep;
            float *sc = (float *)(q + mc * ldp);
#pragma omp parallel for num_threads(nthreads) schedule(static) if (mc > 8)
            for (int64_t m = 0; m < mc; m++) {
                float s;
                quantize_row_i8(xb + m * ldx, K, K4, q + m * ldp, &s);
                memcpy(&sc[m], &s, sizeof s);
            }
        } else {
            ldp = G * G4;
            ldg = G;
            prep = prep_alloc((size_t)mc * (size_t)(ldp + 8 * G));
            if (!prep) return -1;
            int8_t *q = (int8_t *)prep;
            float *d = (float *)(q + mc * ldp);
            int32_t *s8 = (int32_t *)(d + mc * G);
#pragma omp parallel for num_threads(nthreads) schedule(static) if (mc > 8)
            for (int64_t m = 0; m < mc; m++) quantize_row_i4(xb + m * ldx, K, G, q + m * ldp, d + m * G, s8 + m * G);
        }
#pragma omp parallel for num_threads(nthreads) schedule(static)
        for (int64_t p = 0; p < P; p++) {
            float acc[MR * NP];
            const int nn = (int)(N - p * NP < NP ? N - p * NP : NP);
            const float *bias = L->bias ? L->bias + p * NP : NULL;
            if (kind == LIN_BF16) {
                const uint16_t *w = (const uint16_t *)L->w + p * K2 * 64;
                const int64_t nb = (mc + MR - 1) / MR;
                for (int64_t r0 = 0; r0 < mc; r0 += MR) {
                    const int mr = (int)(mc - r0 < MR ? mc - r0 : MR);
                    const int64_t b = r0 / MR;  /* this block's share of the next panel */
                    const prefetch_t pf = {p + 1 < P && mr > 2 ? (const char *)(w + K2 * 64) : NULL, b * K2 / nb,
                                           (b + 1) * K2 / nb - b * K2 / nb, 2};
#if defined(COCINA_BF16DP)
                    BF16_BLOCKS[mr](w, (const uint32_t *)prep + r0 * ldp, K2, ldp, acc, &pf);
#else
                    BF16_BLOCKS[mr](w, (const float *)prep + r0 * ldp, K2, ldp, acc, &pf);
#endif
                    for (int r = 0; r < mr; r++)
                        store_row(acc + r * NP, bias, y + (m0 + r0 + r) * ldy + p * NP, nn, accumulate);
                }
            } else if (kind == LIN_INT8) {
                const int8_t *w = (const int8_t *)L->w + p * K4 * 128;
                const uint8_t *q = (const uint8_t *)prep;
                const float *sc = (const float *)(q + mc * ldp);
                float ws[NP] = {0};
                int32_t zc[NP] = {0};
                for (int j = 0; j < nn; j++) {
                    ws[j] = L->scales[p * NP + j];
#if defined(COCINA_VNNI)
                    zc[j] = 128 * L->colsum[p * NP + j];
#endif
                }
                int32_t iacc[MR * NP];
                const int64_t nb = (mc + MR - 1) / MR;
                for (int64_t r0 = 0; r0 < mc; r0 += MR) {
                    const int mr = (int)(mc - r0 < MR ? mc - r0 : MR);
                    const int64_t b = r0 / MR;
                    const prefetch_t pf = {p + 1 < P && mr > 2 ? (const char *)(w + K4 * 128) : NULL, b * K4 / nb,
                                           (b + 1) * K4 / nb - b * K4 / nb, 2};
                    I8_BLOCKS[mr](w, q + r0 * ldp, K4, ldp, iacc, &pf);
                    for (int r = 0; r < mr; r++) {
                        const float sx = sc[r0 + r];
                        for (int c = 0; c < NCH; c++) {
                            vi a = vi_load(iacc + r * NP + c * VL);
                            vf v = vi_to_vf(vi_sub(a, vi_load(zc + c * VL)));
                            vf_store(acc + c * VL, vf_mul(vf_mul(v, vf_load(ws + c * VL)), vf_set1(sx)));
                        }
                        store_row(acc, bias, y + (m0 + r0 + r) * ldy + p * NP, nn, accumulate);
                    }
                }
            } else {
                const uint8_t *w = (const uint8_t *)L->w + p * G * G4BYTES;
                const int8_t *q = (const int8_t *)prep;
                const float *d = (const float *)(q + mc * ldp);
                const int32_t *s8 = (const int32_t *)(d + mc * G);
                const int64_t nb = (mc + MR4 - 1) / MR4;
                for (int64_t r0 = 0; r0 < mc; r0 += MR4) {
                    const int mr = (int)(mc - r0 < MR4 ? mc - r0 : MR4);
                    const int64_t b = r0 / MR4;
                    const prefetch_t pf = {p + 1 < P ? (const char *)(w + G * G4BYTES) : NULL, b * G / nb,
                                           (b + 1) * G / nb - b * G / nb, G4BYTES / 64};
                    I4_BLOCKS[mr](w, q + r0 * ldp, d + r0 * ldg, s8 + r0 * ldg, G, ldp, ldg, acc, &pf);
                    for (int r = 0; r < mr; r++)
                        store_row(acc + r * NP, bias, y + (m0 + r0 + r) * ldy + p * NP, nn, accumulate);
                }
            }
        }
    }
    return 0;
}
