/* What cocina's kernel files share: the linear layer's description and the kernels the step calls. */
#ifndef COCINA_KERNELS_H
#define COCINA_KERNELS_H

#include <stdint.h>

enum { LIN_BF16 = 1, LIN_INT8 = 2, LIN_INT4 = 3 };

/* A linear layer y = x @ W^T + b, W packed by cocina/engine/cpu_kernels.py (layouts in linear.c). */
typedef struct {
    int32_t kind, reserved;
    int64_t N, K;          /* out, in features */
    const void *w;         /* the packed panels */
    const float *scales;   /* int8: [N] per-output scales; unused otherwise */
    const int32_t *colsum; /* int8: [N] sum over k of the int8 weight (the VNNI zero point's share) */
    const float *bias;     /* [N] or NULL */
} cl_linear;

int cocina_linear(const cl_linear *L, const float *x, int64_t M, int64_t ldx, float *y, int64_t ldy, int accumulate,
                  int nthreads);
int cocina_paged_attention(const float *q, int64_t q_st, int64_t q_sh, const void *k_cache, const void *v_cache,
                           int64_t S, int kv_bf16, const int32_t *tables, int64_t max_blocks,
                           const int32_t *row_table, const int32_t *ctx_lens, int64_t n, int64_t H, int64_t Hkv,
                           int64_t D, int64_t block_size, float scale, const float *alibi, int64_t alibi_len,
                           float *out, int64_t o_st, int nthreads);

#endif
