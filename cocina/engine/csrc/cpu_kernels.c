/*
 * cocina's CPU kernels (AVX-512), built at first use by cocina/engine/cpu_kernels.py; see docs/engine.md.
 *
 * 1. cocina_bf16_linear: bf16 weights on CPUs that lack AVX512-BF16 (Ice Lake, ...). There PyTorch's bf16
 * matmul runs about one GEMV per row, 4x slower than fp32 at 32 rows, while converting the weight to fp32
 * for every call reads and writes three times its bytes.
 *
 * This kernel reads each bf16 weight once, widens it to fp32 in registers (a bf16 is the top half of an
 * fp32: a shift or a mask) and accumulates in fp32. Weights are packed once at load into panels of 32
 * output features, [N/32][K][32], so one 64-byte line holds one k for 32 outputs. Within a line the lanes
 * are interleaved: the 32-bit lane i holds output i in its low half and output 16 + i in its high half, so
 * `lane << 16` gives outputs 0..15 and `lane & 0xffff0000` outputs 16..31 (two instructions, no shuffles).
 *
 * y[M, N] = x[M, K] @ W[N, K]^T (+ bias), x and y fp32 or bf16 (rounded to nearest even).
 *
 * 2. cocina_paged_decode_attention: one query token per sequence against that sequence's keys and values,
 * read in place from the paged cache through its block table (no gather copies), softmax in fp32.
 *
 * 3. cocina_int8_linear (AVX512-VNNI): int8 weights (symmetric, one scale per output) times activations
 * quantized per row on the fly to uint8 (zero point 128), int32 sums with vpdpbusd (64 multiply-adds per
 * instruction, 4x an fp32 FMA), then y = sx[m] sw[n] (acc - 128 colsum[n]) + bias. Panels of 32 outputs,
 * [N/32][K/4][32][4]: one 128-byte k-group holds 4 k's for 32 outputs.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#define MR 12    /* rows of x per register block: 24 accumulators + 2 weight vectors fit in 32 zmm */
#define MC 96    /* rows of x per cache block (8 register blocks): 96 x K fp32 stays in L2 */

int cocina_kernels_abi(void) { return 3; }

static inline __m512 widen_lo(__m512i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)); }
static inline __m512 widen_hi(__m512i v)
{
    return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xFFFF0000u)));
}

/* Rows r < mr of x (stride ldx) times one panel, into out[mr][32]. mr is a constant in each copy below.
 * While it computes, it prefetches lines [pf_lo, pf_hi) of the next panel pf into L2, one per k (no division
 * in the loop), so that panel's first pass finds it there instead of waiting on memory. */
static inline __attribute__((always_inline)) void panel_block(
    const uint16_t *wp, const float *x, int64_t K, int64_t ldx, int mr, float *out,
    const uint16_t *pf, int64_t pf_lo, int64_t pf_hi)
{
    __m512 a0[MR], a1[MR];
    for (int r = 0; r < MR; r++) { a0[r] = _mm512_setzero_ps(); a1[r] = _mm512_setzero_ps(); }
    const int64_t pf_n = pf ? pf_hi - pf_lo : 0;
    for (int64_t k = 0; k < K; k++) {
        if (k < pf_n) _mm_prefetch((const char *)(pf + (pf_lo + k) * 32), _MM_HINT_T1);
        __m512i v = _mm512_loadu_si512((const void *)(wp + k * 32));
        __m512 w0 = widen_lo(v), w1 = widen_hi(v);
        for (int r = 0; r < MR; r++) {
            if (r < mr) {
                __m512 b = _mm512_set1_ps(x[r * ldx + k]);
                a0[r] = _mm512_fmadd_ps(b, w0, a0[r]);
                a1[r] = _mm512_fmadd_ps(b, w1, a1[r]);
            }
        }
    }
    for (int r = 0; r < MR; r++) {
        if (r < mr) {
            _mm512_storeu_ps(out + r * 32, a0[r]);
            _mm512_storeu_ps(out + r * 32 + 16, a1[r]);
        }
    }
}

/* One row (decode of a single sequence): memory-bound, so four independent sums and a prefetch ahead. */
static void panel_row(const uint16_t *wp, const float *x, int64_t K, float *out)
{
    __m512 s[8];
    for (int i = 0; i < 8; i++) s[i] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 4 <= K; k += 4) {
        _mm_prefetch((const char *)(wp + (k + 64) * 32), _MM_HINT_T0);
        _mm_prefetch((const char *)(wp + (k + 66) * 32), _MM_HINT_T0);
        for (int j = 0; j < 4; j++) {
            __m512i v = _mm512_loadu_si512((const void *)(wp + (k + j) * 32));
            __m512 b = _mm512_set1_ps(x[k + j]);
            s[2 * j] = _mm512_fmadd_ps(b, widen_lo(v), s[2 * j]);
            s[2 * j + 1] = _mm512_fmadd_ps(b, widen_hi(v), s[2 * j + 1]);
        }
    }
    for (; k < K; k++) {
        __m512i v = _mm512_loadu_si512((const void *)(wp + k * 32));
        __m512 b = _mm512_set1_ps(x[k]);
        s[0] = _mm512_fmadd_ps(b, widen_lo(v), s[0]);
        s[1] = _mm512_fmadd_ps(b, widen_hi(v), s[1]);
    }
    _mm512_storeu_ps(out, _mm512_add_ps(_mm512_add_ps(s[0], s[2]), _mm512_add_ps(s[4], s[6])));
    _mm512_storeu_ps(out + 16, _mm512_add_ps(_mm512_add_ps(s[1], s[3]), _mm512_add_ps(s[5], s[7])));
}

#define BLOCK(n) \
    static void block_##n(const uint16_t *wp, const float *x, int64_t K, int64_t ldx, float *out, \
                          const uint16_t *pf, int64_t pf_lo, int64_t pf_hi) \
    { panel_block(wp, x, K, ldx, n, out, pf, pf_lo, pf_hi); }
BLOCK(2) BLOCK(3) BLOCK(4) BLOCK(5) BLOCK(6) BLOCK(7) BLOCK(8) BLOCK(9) BLOCK(10) BLOCK(11) BLOCK(12)
typedef void (*block_fn)(const uint16_t *, const float *, int64_t, int64_t, float *, const uint16_t *, int64_t,
                         int64_t);
static const block_fn BLOCKS[MR + 1] = {
    0, 0, block_2, block_3, block_4, block_5, block_6, block_7, block_8, block_9, block_10, block_11, block_12};

static inline __m256i round_to_bf16(__m512 v)
{
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb)), 16);
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_set1_epi32(0x7FC0));
    return _mm512_cvtepi32_epi16(r);
}

/* Adds the bias and writes nn (<= 32) outputs of one row as fp32 or bf16. */
static void store_row(const float *acc, const float *bias, void *dst, int nn, int y_bf16)
{
    float t[32];
    memcpy(t, acc, sizeof t);
    if (bias)
        for (int j = 0; j < nn; j++) t[j] += bias[j];
    if (!y_bf16) {
        memcpy(dst, t, (size_t)nn * sizeof(float));
    } else if (nn == 32) {
        _mm256_storeu_si256((__m256i *)dst, round_to_bf16(_mm512_loadu_ps(t)));
        _mm256_storeu_si256((__m256i *)((uint16_t *)dst + 16), round_to_bf16(_mm512_loadu_ps(t + 16)));
    } else {
        uint16_t h[32];
        _mm256_storeu_si256((__m256i *)h, round_to_bf16(_mm512_loadu_ps(t)));
        _mm256_storeu_si256((__m256i *)(h + 16), round_to_bf16(_mm512_loadu_ps(t + 16)));
        memcpy(dst, h, (size_t)nn * sizeof(uint16_t));
    }
}

/* The caller's thread keeps an fp32 copy of one cache block of x (MC rows) when x is bf16: no allocation per
 * call once warm, and at most MC x K floats however long the prompt. */
static __thread float *xbuf;
static __thread size_t xcap;

/*
 * x: [M, K] contiguous, fp32 (x_bf16 = 0) or bf16; wp: packed panels of W[N, K]; bias: fp32 [N] or NULL;
 * y: [M, N] contiguous, fp32 or bf16. Returns 0, or -1 when out of memory.
 */
int cocina_bf16_linear(const void *x, int x_bf16, int64_t M, int64_t K, const uint16_t *wp, int64_t N,
                       const float *bias, void *y, int y_bf16, int nthreads)
{
    if (x_bf16) {
        const size_t need = (size_t)(M < MC ? M : MC) * (size_t)K;
        if (need > xcap) {
            float *nb = (float *)realloc(xbuf, need * sizeof(float));
            if (!nb) return -1;
            xbuf = nb;
            xcap = need;
        }
    }
    const int64_t P = (N + 31) / 32;
    const size_t ysz = y_bf16 ? sizeof(uint16_t) : sizeof(float);
    for (int64_t m0 = 0; m0 < M; m0 += MC) {
        const int64_t mc = M - m0 < MC ? M - m0 : MC;
        /* This block's rows as fp32; OpenMP's workers get the plain pointer (they have their own thread-locals). */
        const float *xf = (const float *)x + m0 * K;
        if (x_bf16) {
            const uint16_t *xh = (const uint16_t *)x + m0 * K;
            for (size_t i = 0; i < (size_t)(mc * K); i++) {
                uint32_t u = (uint32_t)xh[i] << 16;
                memcpy(&xbuf[i], &u, sizeof u);
            }
            xf = xbuf;
        }
#pragma omp parallel for num_threads(nthreads) schedule(static)
        for (int64_t p = 0; p < P; p++) {
            float acc[MR * 32];
            const uint16_t *w = wp + p * K * 32;
            const int nn = (int)(N - p * 32 < 32 ? N - p * 32 : 32);
            const uint16_t *next = p + 1 < P ? w + K * 32 : NULL;
            const int64_t nblocks = (mc + MR - 1) / MR;
            for (int64_t r0 = 0; r0 < mc; r0 += MR) {
                const int mr = (int)(mc - r0 < MR ? mc - r0 : MR);
                const float *xr = xf + r0 * K;
                const int64_t b = r0 / MR;  /* this block prefetches its share of the next panel */
                if (mr == 1)
                    panel_row(w, xr, K, acc);
                else
                    BLOCKS[mr](w, xr, K, K, acc, next, b * K / nblocks, (b + 1) * K / nblocks);
                for (int r = 0; r < mr; r++)
                    store_row(acc + r * 32, bias ? bias + p * 32 : NULL,
                              (char *)y + ((size_t)(m0 + r0 + r) * (size_t)N + (size_t)p * 32) * ysz, nn, y_bf16);
            }
        }
    }
    return 0;
}

/* -- paged decode attention ---------------------------------------------------------------------------- */

/* exp(x) for x <= 0 (softmax after subtracting the max): 2^(x log2 e) = 2^n 2^f, f in [-0.5, 0.5], a
 * degree-6 polynomial for 2^f (relative error about 2e-7) and vscalefps for 2^n. NaN in, NaN out. */
static inline __m512 exp_ps(__m512 x)
{
    x = _mm512_max_ps(_mm512_set1_ps(-87.0f), x);  /* operands in this order: a NaN x stays NaN */
    __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(1.5403530e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504109e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022651e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* 16 consecutive elements as fp32, from bf16 or fp32 memory. */
static inline __m512 load16(const void *base, int64_t i, int bf16)
{
    if (bf16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)base + i));
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_loadu_ps((const float *)base + i);
}

/*
 * q: query rows, element (t, h, d) at q[t * q_st + h * q_sh + d]; k_cache, v_cache: [Hkv, S, D];
 * block_tables: [n, max_blocks] int32; ctx_lens: [n] int32 (keys per sequence, its new token included);
 * alibi: [H, alibi_len] fp32 bias per key position or NULL; out: [n, H, D] contiguous.
 * Everything (q, cache, out) is bf16 when bf16 != 0, else fp32. D must be a multiple of 16 (<= 512).
 * Returns 0, or -1 when out of memory.
 */
int cocina_paged_decode_attention(const void *q, int64_t q_st, int64_t q_sh, const void *k_cache,
                                  const void *v_cache, int64_t S, const int32_t *block_tables,
                                  int64_t max_blocks, const int32_t *ctx_lens, int64_t n, int64_t H, int64_t Hkv,
                                  int64_t D, int64_t block_size, float scale, const float *alibi,
                                  int64_t alibi_len, void *out, int bf16, int nthreads)
{
    if (D % 16 != 0 || D > 512 || Hkv <= 0 || H % Hkv != 0) return -2;
    int64_t lmax = 0;
    for (int64_t i = 0; i < n; i++) lmax = ctx_lens[i] > lmax ? ctx_lens[i] : lmax;
    const int64_t group = H / Hkv, nv = D / 16;
    const size_t es = bf16 ? 2 : 4;
    int failed = 0;
#pragma omp parallel num_threads(nthreads)
    {
        float *sc = (float *)malloc((size_t)(lmax + 16) * sizeof(float));
        if (!sc) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 4)
        for (int64_t w = 0; w < n * H; w++) {
            if (!sc) continue;
            const int64_t i = w / H, h = w % H, kvh = h / group, L = ctx_lens[i];
            const int32_t *table = block_tables + i * max_blocks;
            const char *kbase = (const char *)k_cache + (size_t)kvh * (size_t)S * (size_t)D * es;
            const char *vbase = (const char *)v_cache + (size_t)kvh * (size_t)S * (size_t)D * es;
            __m512 qv[32];
            const char *qrow = (const char *)q + (size_t)(i * q_st + h * q_sh) * es;
            for (int64_t c = 0; c < nv; c++) qv[c] = _mm512_mul_ps(load16(qrow, c * 16, bf16), _mm512_set1_ps(scale));
            float mx = -INFINITY;
            for (int64_t j = 0; j < L; j++) {
                const int64_t slot = (int64_t)table[j / block_size] * block_size + j % block_size;
                const char *krow = kbase + (size_t)slot * (size_t)D * es;
                __m512 acc = _mm512_mul_ps(qv[0], load16(krow, 0, bf16));
                for (int64_t c = 1; c < nv; c++) acc = _mm512_fmadd_ps(qv[c], load16(krow, c * 16, bf16), acc);
                float s = _mm512_reduce_add_ps(acc);
                if (alibi) s += alibi[h * alibi_len + j];
                sc[j] = s;
                mx = s > mx ? s : mx;
            }
            __m512 sum = _mm512_setzero_ps();
            int64_t j = 0;
            for (; j + 16 <= L; j += 16) {
                __m512 e = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(sc + j), _mm512_set1_ps(mx)));
                _mm512_storeu_ps(sc + j, e);
                sum = _mm512_add_ps(sum, e);
            }
            if (j < L) {
                __mmask16 m = (__mmask16)((1u << (L - j)) - 1);
                __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, sc + j), _mm512_set1_ps(mx)));
                _mm512_mask_storeu_ps(sc + j, m, e);
                sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(m, e));
            }
            const float inv = 1.0f / _mm512_reduce_add_ps(sum);
            __m512 o[32];
            for (int64_t c = 0; c < nv; c++) o[c] = _mm512_setzero_ps();
            for (int64_t jj = 0; jj < L; jj++) {
                const int64_t slot = (int64_t)table[jj / block_size] * block_size + jj % block_size;
                const char *vrow = vbase + (size_t)slot * (size_t)D * es;
                __m512 p = _mm512_set1_ps(sc[jj]);
                for (int64_t c = 0; c < nv; c++) o[c] = _mm512_fmadd_ps(p, load16(vrow, c * 16, bf16), o[c]);
            }
            char *orow = (char *)out + (size_t)((i * H + h) * D) * es;
            for (int64_t c = 0; c < nv; c++) {
                __m512 r = _mm512_mul_ps(o[c], _mm512_set1_ps(inv));
                if (bf16)
                    _mm256_storeu_si256((__m256i *)((uint16_t *)orow + c * 16), round_to_bf16(r));
                else
                    _mm512_storeu_ps((float *)orow + c * 16, r);
            }
        }
        free(sc);
    }
    return failed ? -1 : 0;
}

/* -- int8 linear (AVX512-VNNI) ------------------------------------------------------------------------- */
/* Functions that use VNNI carry a target attribute (gcc and clang both honour it; clang ignores the
 * "#pragma GCC target" form), so the rest of the library builds and runs without VNNI. */
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

VNNI static inline __attribute__((always_inline)) void i8_block(
    const int8_t *wp, const uint8_t *xq, int64_t K4, int64_t ldx, int mr, int32_t *out,
    const int8_t *pf, int64_t pf_lo, int64_t pf_hi)
{
    __m512i a0[MR], a1[MR];
    for (int r = 0; r < MR; r++) { a0[r] = _mm512_setzero_si512(); a1[r] = _mm512_setzero_si512(); }
    const int64_t pf_n = pf ? pf_hi - pf_lo : 0;
    for (int64_t g = 0; g < K4; g++) {
        if (g < pf_n) {  /* a k-group is 2 lines */
            _mm_prefetch((const char *)(pf + (pf_lo + g) * 128), _MM_HINT_T1);
            _mm_prefetch((const char *)(pf + (pf_lo + g) * 128 + 64), _MM_HINT_T1);
        }
        __m512i w0 = _mm512_loadu_si512((const void *)(wp + g * 128));
        __m512i w1 = _mm512_loadu_si512((const void *)(wp + g * 128 + 64));
        for (int r = 0; r < MR; r++) {
            if (r < mr) {
                int32_t four;
                memcpy(&four, xq + r * ldx + g * 4, sizeof four);
                __m512i b = _mm512_set1_epi32(four);
                a0[r] = _mm512_dpbusd_epi32(a0[r], b, w0);
                a1[r] = _mm512_dpbusd_epi32(a1[r], b, w1);
            }
        }
    }
    for (int r = 0; r < MR; r++) {
        if (r < mr) {
            _mm512_storeu_si512((void *)(out + r * 32), a0[r]);
            _mm512_storeu_si512((void *)(out + r * 32 + 16), a1[r]);
        }
    }
}

#define I8BLOCK(n) \
    VNNI static void i8_block_##n(const int8_t *wp, const uint8_t *xq, int64_t K4, int64_t ldx, int32_t *out, \
                             const int8_t *pf, int64_t pf_lo, int64_t pf_hi) \
    { i8_block(wp, xq, K4, ldx, n, out, pf, pf_lo, pf_hi); }
I8BLOCK(1) I8BLOCK(2) I8BLOCK(3) I8BLOCK(4) I8BLOCK(5) I8BLOCK(6) I8BLOCK(7) I8BLOCK(8) I8BLOCK(9)
I8BLOCK(10) I8BLOCK(11) I8BLOCK(12)
typedef void (*i8_block_fn)(const int8_t *, const uint8_t *, int64_t, int64_t, int32_t *, const int8_t *,
                            int64_t, int64_t);
static const i8_block_fn I8_BLOCKS[MR + 1] = {0, i8_block_1, i8_block_2, i8_block_3, i8_block_4, i8_block_5,
                                              i8_block_6, i8_block_7, i8_block_8, i8_block_9, i8_block_10,
                                              i8_block_11, i8_block_12};

/* Row m of x (fp32 or bf16, K values) -> K4 * 4 uint8 (x / scale rounded, + 128; padding 128) and its scale. */
VNNI static void quantize_row(const void *x, int x_bf16, int64_t K, int64_t K4, uint8_t *q, float *scale)
{
    __m512 mx = _mm512_setzero_ps();
    const __m512i absmask = _mm512_set1_epi32(0x7FFFFFFF);
    __mmask16 nan = 0;
    int64_t k = 0;
    for (; k < K; k += 16) {
        const int n = K - k < 16 ? (int)(K - k) : 16;
        const __mmask16 m = (__mmask16)((1u << n) - 1);
        __m512 v = x_bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(
                                _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)x + k)), 16))
                          : _mm512_maskz_loadu_ps(m, (const float *)x + k);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        mx = _mm512_max_ps(mx, _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), absmask)));
    }
    float amax = _mm512_reduce_max_ps(mx);
    /* A row with a NaN gets a NaN scale, so its outputs are NaN (as in float arithmetic), not finite garbage. */
    const float s = nan ? NAN : amax > 0 ? amax / 127.0f : 1.0f;
    *scale = s;
    const __m512 inv = _mm512_set1_ps(1.0f / s);
    for (k = 0; k < K; k += 16) {
        const int n = K - k < 16 ? (int)(K - k) : 16;
        const __mmask16 m = (__mmask16)((1u << n) - 1);
        __m512 v = x_bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(
                                _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)x + k)), 16))
                          : _mm512_maskz_loadu_ps(m, (const float *)x + k);
        __m512i qi = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, inv)), _mm512_set1_epi32(128));
        qi = _mm512_max_epi32(_mm512_min_epi32(qi, _mm512_set1_epi32(255)), _mm512_setzero_si512());
        _mm_mask_storeu_epi8(q + k, m, _mm512_cvtepi32_epi8(qi));
    }
    for (k = K; k < K4 * 4; k++) q[k] = 128;
}

static __thread uint8_t *qbuf;
static __thread size_t qcap;

/*
 * x: [M, K] contiguous, fp32 or bf16; wp: int8 panels of W[N, K] (K padded to K4 * 4 with zeros);
 * wscale: [N] fp32; colsum: [N] int32 (sum over k of the int8 weight); bias: fp32 [N] or NULL;
 * y: [M, N], fp32 or bf16. Returns 0, or -1 when out of memory.
 */
VNNI int cocina_int8_linear(const void *x, int x_bf16, int64_t M, int64_t K, const int8_t *wp, int64_t N,
                       const float *wscale, const int32_t *colsum, const float *bias, void *y, int y_bf16,
                       int nthreads)
{
    const int64_t K4 = (K + 3) / 4, ldq = K4 * 4, rows = M < MC ? M : MC;
    /* One cache block of quantized rows (MC at most, however long the prompt), then their scales. */
    const size_t need = (size_t)rows * (size_t)ldq + (size_t)rows * sizeof(float);
    if (need > qcap) {
        uint8_t *nb = (uint8_t *)realloc(qbuf, need);
        if (!nb) return -1;
        qbuf = nb;
        qcap = need;
    }
    /* The buffer is the calling thread's; OpenMP's workers see their own (empty) thread-locals, so they get
     * plain pointers. */
    uint8_t *const xq = qbuf;
    float *const xs = (float *)(xq + (size_t)rows * (size_t)ldq);
    const size_t xes = x_bf16 ? 2 : 4;
    const int64_t P = (N + 31) / 32;
    const size_t ysz = y_bf16 ? sizeof(uint16_t) : sizeof(float);
    for (int64_t m0 = 0; m0 < M; m0 += MC) {
        const int64_t mc = M - m0 < MC ? M - m0 : MC;
#pragma omp parallel for num_threads(nthreads) schedule(static)
        for (int64_t m = 0; m < mc; m++) {
            float sc;
            quantize_row((const char *)x + (size_t)(m0 + m) * (size_t)K * xes, x_bf16, K, K4, xq + m * ldq, &sc);
            memcpy(&xs[m], &sc, sizeof sc);
        }
#pragma omp parallel for num_threads(nthreads) schedule(static)
        for (int64_t p = 0; p < P; p++) {
            int32_t acc[MR * 32];
            float row[32];
            const int8_t *w = wp + p * K4 * 128;
            const int nn = (int)(N - p * 32 < 32 ? N - p * 32 : 32);
            const int8_t *next = p + 1 < P ? w + K4 * 128 : NULL;
            const int64_t nblocks = (mc + MR - 1) / MR;
            __m512 ws0, ws1;
            __m512i cs0, cs1;  /* 128 colsum: the zero point's share of the sums, removed in int32 (exact) */
            {
                float wsv[32] = {0};
                int32_t csv[32] = {0};
                for (int j = 0; j < nn; j++) {
                    wsv[j] = wscale[p * 32 + j];
                    csv[j] = 128 * colsum[p * 32 + j];
                }
                ws0 = _mm512_loadu_ps(wsv);
                ws1 = _mm512_loadu_ps(wsv + 16);
                cs0 = _mm512_loadu_si512((const void *)csv);
                cs1 = _mm512_loadu_si512((const void *)(csv + 16));
            }
            for (int64_t r0 = 0; r0 < mc; r0 += MR) {
                const int mr = (int)(mc - r0 < MR ? mc - r0 : MR);
                const int64_t b = r0 / MR;
                I8_BLOCKS[mr](w, xq + r0 * ldq, K4, ldq, acc, next, b * K4 / nblocks, (b + 1) * K4 / nblocks);
                for (int r = 0; r < mr; r++) {
                    const __m512 sx = _mm512_set1_ps(xs[r0 + r]);
                    __m512 v0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_loadu_si512((const void *)(acc + r * 32)), cs0));
                    __m512 v1 =
                        _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_loadu_si512((const void *)(acc + r * 32 + 16)), cs1));
                    _mm512_storeu_ps(row, _mm512_mul_ps(_mm512_mul_ps(v0, ws0), sx));
                    _mm512_storeu_ps(row + 16, _mm512_mul_ps(_mm512_mul_ps(v1, ws1), sx));
                    store_row(row, bias ? bias + p * 32 : NULL,
                              (char *)y + ((size_t)(m0 + r0 + r) * (size_t)N + (size_t)p * 32) * ysz, nn, y_bf16);
                }
            }
        }
    }
    return 0;
}
