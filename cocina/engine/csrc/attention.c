/*
 * Paged attention: each query row against its sequence's keys and values, read in place from the paged cache
 * through the sequence's block table (no gathered copies), softmax in fp32.
 *
 * A decode is one row whose context is its whole sequence; a prefill chunk is one row per token, each with the
 * context up to and including itself (the chunk's own keys were written to the cache before this call), which
 * makes the attention causal without a mask.
 */
#include "kernels.h"
#include "simd.h"
#include <stdlib.h>

static inline vf load_kv(const void *base, int64_t i, int bf16)
{
    return bf16 ? vf_load_bf16((const uint16_t *)base + i) : vf_load((const float *)base + i);
}

/*
 * q: element (t, h, d) at q[t * q_st + h * q_sh + d] (fp32); k_cache, v_cache: [Hkv, S, D], bf16 when kv_bf16;
 * tables: [*, max_blocks] int32 block tables; row t reads table row_table[t] (row t when row_table is NULL) and
 * its first ctx_lens[t] keys; alibi: [H, alibi_len] fp32 bias per key position, or NULL; out: row t, head h at
 * out[t * o_st + h * D] (fp32). D must be a multiple of VL, at most 512.
 * Returns 0, -1 when out of memory, -2 for a shape it cannot run.
 */
int cocina_paged_attention(const float *q, int64_t q_st, int64_t q_sh, const void *k_cache, const void *v_cache,
                           int64_t S, int kv_bf16, const int32_t *tables, int64_t max_blocks,
                           const int32_t *row_table, const int32_t *ctx_lens, int64_t n, int64_t H, int64_t Hkv,
                           int64_t D, int64_t block_size, float scale, const float *alibi, int64_t alibi_len,
                           float *out, int64_t o_st, int nthreads)
{
    if (D % VL != 0 || D > 512 || Hkv <= 0 || H % Hkv != 0) return -2;
    int64_t lmax = 0;
    for (int64_t i = 0; i < n; i++) lmax = ctx_lens[i] > lmax ? ctx_lens[i] : lmax;
    const int64_t group = H / Hkv, nv = D / VL;
    const size_t es = kv_bf16 ? 2 : 4;
    int failed = 0;
#pragma omp parallel num_threads(nthreads) if (n * H > 1)
    {
        float *sc = (float *)malloc((size_t)(lmax + VL) * sizeof(float));
        if (!sc) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 4)
        for (int64_t w = 0; w < n * H; w++) {
            if (!sc) continue;
            const int64_t i = w / H, h = w % H, kvh = h / group, L = ctx_lens[i];
            const int32_t *table = tables + (row_table ? row_table[i] : i) * max_blocks;
            const char *kbase = (const char *)k_cache + (size_t)kvh * (size_t)S * (size_t)D * es;
            const char *vbase = (const char *)v_cache + (size_t)kvh * (size_t)S * (size_t)D * es;
            vf qv[512 / VL];
            const float *qrow = q + i * q_st + h * q_sh;
            for (int64_t c = 0; c < nv; c++) qv[c] = vf_mul(vf_load(qrow + c * VL), vf_set1(scale));
            /* scores, VL keys at a time: one dot product per key accumulated lane-wise, then the VL horizontal
             * sums in one shuffle network (a separate reduction per key would cost more than its dot product) */
            vf vmx = vf_set1(-INFINITY);
            for (int64_t j0 = 0; j0 < L; j0 += VL) {
                const int nj = (int)(L - j0 < VL ? L - j0 : VL);
                vf acc[VL];
                for (int jj = 0; jj < VL; jj++) {
                    acc[jj] = vf_zero();
                    if (jj < nj) {
                        const int64_t j = j0 + jj;
                        const int64_t slot = (int64_t)table[j / block_size] * block_size + j % block_size;
                        const char *krow = kbase + (size_t)slot * (size_t)D * es;
                        for (int64_t c = 0; c < nv; c++) acc[jj] = vf_fma(qv[c], load_kv(krow, c * VL, kv_bf16), acc[jj]);
                    }
                }
                vf s = vf_hsum_each(acc);
                if (alibi) s = vf_add(s, vf_load_n(alibi + h * alibi_len + j0, nj));
                if (nj == VL) {
                    vf_store(sc + j0, s);
                    vmx = vf_max(vmx, s);
                } else {
                    vf_store_n(sc + j0, s, nj);
                    for (int jj = 0; jj < nj; jj++) vmx = vf_max(vmx, vf_set1(sc[j0 + jj]));
                }
            }
            float mx = vf_hmax(vmx);
            if (mx != mx || mx == -INFINITY) mx = 0.0f; /* all NaN or all -inf: let the NaNs through */
            vf sum = vf_zero();
            int64_t j = 0;
            for (; j + VL <= L; j += VL) {
                vf e = vf_exp(vf_sub(vf_load(sc + j), vf_set1(mx)));
                vf_store(sc + j, e);
                sum = vf_add(sum, e);
            }
            if (j < L) {
                vf e = vf_exp(vf_sub(vf_load_n(sc + j, (int)(L - j)), vf_set1(mx)));
                vf_store_n(sc + j, e, (int)(L - j));
                sum = vf_add(sum, vf_load_n(sc + j, (int)(L - j)));
            }
            const float inv = 1.0f / vf_hsum(sum);
            vf o[512 / VL];
            for (int64_t c = 0; c < nv; c++) o[c] = vf_zero();
            for (int64_t jj = 0; jj < L; jj++) {
                const int64_t slot = (int64_t)table[jj / block_size] * block_size + jj % block_size;
                const char *vrow = vbase + (size_t)slot * (size_t)D * es;
                vf p = vf_set1(sc[jj]);
                for (int64_t c = 0; c < nv; c++) o[c] = vf_fma(p, load_kv(vrow, c * VL, kv_bf16), o[c]);
            }
            float *orow = out + i * o_st + h * D;
            for (int64_t c = 0; c < nv; c++) vf_store(orow + c * VL, vf_mul(o[c], vf_set1(inv)));
        }
        free(sc);
    }
    return failed ? -1 : 0;
}
