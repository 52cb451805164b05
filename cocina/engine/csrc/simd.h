/*
 * The vector vocabulary cocina's kernels are written in, for each instruction set they are built for.
 *
 * The same kernel sources are compiled once per variant (cpu_kernels.py picks the flags):
 *   COCINA_AVX512 (+ COCINA_BF16DP for vdpbf16ps, + COCINA_VNNI for vpdpbusd), or COCINA_AVX2 (+ FMA, F16C).
 * A kernel sees vectors of VL floats (16 or 8) and the few operations below; the instructions that exist on
 * one variant only (vdpbf16ps, vpdpbusd) appear in the kernels under their #ifdef, with the fallback next to them.
 */
#ifndef COCINA_SIMD_H
#define COCINA_SIMD_H

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(COCINA_AVX512)
#define VL 16
typedef __m512 vf;
typedef __m512i vi;
static inline vf vf_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void vf_store(float *p, vf v) { _mm512_storeu_ps(p, v); }
static inline vf vf_set1(float x) { return _mm512_set1_ps(x); }
static inline vf vf_zero(void) { return _mm512_setzero_ps(); }
static inline vf vf_add(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf vf_div(vf a, vf b) { return _mm512_div_ps(a, b); }
static inline vf vf_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
static inline vf vf_max(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf vf_min(vf a, vf b) { return _mm512_min_ps(a, b); }
static inline float vf_hsum(vf v) { return _mm512_reduce_add_ps(v); }
static inline float vf_hmax(vf v) { return _mm512_reduce_max_ps(v); }
static inline vf vf_round(vf v) { return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline vf vf_scale2(vf p, vf n) { return _mm512_scalef_ps(p, n); } /* p * 2^n */
static inline vf vf_abs(vf v) { return _mm512_abs_ps(v); }
static inline int vf_any_nan(vf v) { return _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) != 0; }
/* a bf16 is the top half of an fp32: widening is a shift */
static inline vf vf_load_bf16(const uint16_t *p)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
static inline vf vf_load_half(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
/* the 32-bit lanes of v as two fp32 vectors: low halves (<< 16) and high halves (masked) */
static inline vf vi_bf16_lo(vi v) { return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)); }
static inline vf vi_bf16_hi(vi v) { return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xFFFF0000u))); }
static inline vi vi_load(const void *p) { return _mm512_loadu_si512(p); }
static inline vi vi_set1(int32_t x) { return _mm512_set1_epi32(x); }
static inline vi vi_zero(void) { return _mm512_setzero_si512(); }
static inline vi vi_add(vi a, vi b) { return _mm512_add_epi32(a, b); }
static inline vi vi_sub(vi a, vi b) { return _mm512_sub_epi32(a, b); }
static inline vf vi_to_vf(vi a) { return _mm512_cvtepi32_ps(a); }
static inline vi vi_and(vi a, vi b) { return _mm512_and_si512(a, b); }
static inline vi vi_srl16(vi a, int n) { return _mm512_srli_epi16(a, n); }
static inline vi vf_to_vi(vf a) { return _mm512_cvtps_epi32(a); } /* rounds to nearest even */
static inline vi vi_min(vi a, vi b) { return _mm512_min_epi32(a, b); }
static inline vi vi_max(vi a, vi b) { return _mm512_max_epi32(a, b); }
static inline int32_t vi_hsum(vi v) { return _mm512_reduce_add_epi32(v); }
#if defined(COCINA_VNNI)
/* acc += sum over 4 bytes of u8(a) * s8(b), per 32-bit lane. Written as inline assembly: with the intrinsic,
 * gcc 12 copies each accumulator to another register and back around every vpdpbusd (two extra moves per
 * multiply-add, half the int8 kernel's speed); "+v" keeps the accumulator in place. */
static inline vi vi_dot_u8s8(vi acc, vi a_u8, vi b_s8)
{
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a_u8), "v"(b_s8));
    return acc;
}
#else
static inline vi vi_dot_u8s8(vi acc, vi a_u8, vi b_s8)
{
    /* u8 x s8 pairs to s16 (no saturation for the operands the kernels pass: see int8/int4), then to s32 */
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(a_u8, b_s8), _mm512_set1_epi16(1)));
}
#endif
/* b negated where s is negative (AVX2's sign trick; where s is 0 the kernels multiply by |s| = 0 anyway) */
static inline vi vi_sign8(vi b, vi s)
{
    return _mm512_mask_sub_epi8(b, _mm512_movepi8_mask(s), _mm512_setzero_si512(), b);
}
static inline vi vi_abs8(vi a) { return _mm512_abs_epi8(a); }
/* The 16 horizontal sums of a[0..15] as one vector (lane i = sum of a[i]): a shuffle network of 45 operations
 * instead of 16 separate reductions of 8 or more each. */
static inline vf vf_hsum_each(const vf *a)
{
    vf t[8], u[4];
    for (int k = 0; k < 8; k++)  /* per 128-bit lane: [a02, b02, a13, b13] of the pair */
        t[k] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * k], a[2 * k + 1]), _mm512_unpackhi_ps(a[2 * k], a[2 * k + 1]));
    for (int k = 0; k < 4; k++) {  /* per 128-bit lane: the lane's sums of four vectors, in order */
        __m512d x = _mm512_castps_pd(t[2 * k]), y = _mm512_castps_pd(t[2 * k + 1]);
        u[k] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
    vf x0 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], _MM_SHUFFLE(2, 0, 2, 0)),
                          _mm512_shuffle_f32x4(u[0], u[1], _MM_SHUFFLE(3, 1, 3, 1)));
    vf x1 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], _MM_SHUFFLE(2, 0, 2, 0)),
                          _mm512_shuffle_f32x4(u[2], u[3], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(x0, x1, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(x0, x1, _MM_SHUFFLE(3, 1, 3, 1)));
}
/* VL int32 lanes (already in the int8 or uint8 range) stored as VL bytes */
static inline void vi_store_bytes(void *dst, vi v) { _mm_storeu_si128((__m128i *)dst, _mm512_cvtepi32_epi8(v)); }

#elif defined(COCINA_AVX2)
#define VL 8
typedef __m256 vf;
typedef __m256i vi;
static inline vf vf_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void vf_store(float *p, vf v) { _mm256_storeu_ps(p, v); }
static inline vf vf_set1(float x) { return _mm256_set1_ps(x); }
static inline vf vf_zero(void) { return _mm256_setzero_ps(); }
static inline vf vf_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vf_div(vf a, vf b) { return _mm256_div_ps(a, b); }
static inline vf vf_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf vf_max(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf vf_min(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline float vf_hsum(vf v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float vf_hmax(vf v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline vf vf_round(vf v) { return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline vf vf_scale2(vf p, vf n)
{
    /* p * 2^n for integral n in [-126, 127]: build 2^n from its exponent bits */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
static inline vf vf_abs(vf v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }
static inline int vf_any_nan(vf v) { return _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0; }
static inline vf vf_load_bf16(const uint16_t *p)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
static inline vf vf_load_half(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static inline vf vi_bf16_lo(vi v) { return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)); }
static inline vf vi_bf16_hi(vi v) { return _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xFFFF0000u))); }
static inline vi vi_load(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline vi vi_set1(int32_t x) { return _mm256_set1_epi32(x); }
static inline vi vi_zero(void) { return _mm256_setzero_si256(); }
static inline vi vi_add(vi a, vi b) { return _mm256_add_epi32(a, b); }
static inline vi vi_sub(vi a, vi b) { return _mm256_sub_epi32(a, b); }
static inline vf vi_to_vf(vi a) { return _mm256_cvtepi32_ps(a); }
static inline vi vi_and(vi a, vi b) { return _mm256_and_si256(a, b); }
static inline vi vi_srl16(vi a, int n) { return _mm256_srli_epi16(a, n); }
static inline vi vf_to_vi(vf a) { return _mm256_cvtps_epi32(a); }
static inline vi vi_dot_u8s8(vi acc, vi a_u8, vi b_s8)
{
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a_u8, b_s8), _mm256_set1_epi16(1)));
}
static inline vi vi_sign8(vi b, vi s) { return _mm256_sign_epi8(b, s); }
static inline vi vi_abs8(vi a) { return _mm256_abs_epi8(a); }
/* The 8 horizontal sums of a[0..7] as one vector (lane i = sum of a[i]) */
static inline vf vf_hsum_each(const vf *a)
{
    vf t[4], u[2];
    for (int k = 0; k < 4; k++)
        t[k] = _mm256_add_ps(_mm256_unpacklo_ps(a[2 * k], a[2 * k + 1]), _mm256_unpackhi_ps(a[2 * k], a[2 * k + 1]));
    for (int k = 0; k < 2; k++) {
        __m256d x = _mm256_castps_pd(t[2 * k]), y = _mm256_castps_pd(t[2 * k + 1]);
        u[k] = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(x, y)), _mm256_castpd_ps(_mm256_unpackhi_pd(x, y)));
    }
    return _mm256_add_ps(_mm256_permute2f128_ps(u[0], u[1], 0x20), _mm256_permute2f128_ps(u[0], u[1], 0x31));
}
static inline void vi_store_bytes(void *dst, vi v)
{
    /* int8 lanes only (AVX2 builds have no VNNI, so no uint8 activations): saturating packs keep them */
    __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storel_epi64((__m128i *)dst, _mm_packs_epi16(w, w));
}
static inline vi vi_min(vi a, vi b) { return _mm256_min_epi32(a, b); }
static inline vi vi_max(vi a, vi b) { return _mm256_max_epi32(a, b); }
static inline int32_t vi_hsum(vi v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}
#else
#error "build with -DCOCINA_AVX512 or -DCOCINA_AVX2"
#endif

/* fp32 -> bf16, round to nearest even; NaN stays a (quiet) NaN */
static inline uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
static inline float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* n (< VL) floats into a vector, zeros after; and back */
static inline vf vf_load_n(const float *p, int n)
{
    float t[VL] = {0};
    memcpy(t, p, (size_t)n * sizeof(float));
    return vf_load(t);
}
static inline void vf_store_n(float *p, vf v, int n)
{
    float t[VL];
    vf_store(t, v);
    memcpy(p, t, (size_t)n * sizeof(float));
}

/* exp(x) for any x: 2^(x log2 e) = 2^n 2^f, f in [-0.5, 0.5], a degree-6 polynomial for 2^f (relative error
 * about 2e-7). Inputs are clamped to [-87, 88] (exp underflows to ~0 and overflows fp32 outside); NaN stays NaN. */
static inline vf vf_exp(vf x)
{
    x = vf_min(vf_set1(88.0f), vf_max(vf_set1(-87.0f), x));
    vf t = vf_mul(x, vf_set1(1.44269504088896341f));
    vf n = vf_round(t);
    vf f = vf_sub(t, n);
    vf p = vf_set1(1.5403530e-4f);
    p = vf_fma(p, f, vf_set1(1.3333558e-3f));
    p = vf_fma(p, f, vf_set1(9.6181291e-3f));
    p = vf_fma(p, f, vf_set1(5.5504109e-2f));
    p = vf_fma(p, f, vf_set1(2.4022651e-1f));
    p = vf_fma(p, f, vf_set1(6.9314718e-1f));
    p = vf_fma(p, f, vf_set1(1.0f));
    return vf_scale2(p, n);
}

#endif
