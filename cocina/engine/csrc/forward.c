/*
 * One whole model step in C: embeddings, every decoder layer, the final norm and the LM head on the rows that
 * are sampled. The model code in cocina/engine/models/ describes the model (cl_model, filled once at load with
 * pointers to the packed weights, the KV cache and preallocated buffers) and the step (token ids, positions,
 * cache slots, block tables); this file runs it with no Python between the layers.
 *
 * Activations stay fp32 from layer to layer (the residual stream, the norms, the attention); the weights are
 * bf16, int8 or int4 (linear.c), the KV cache bf16 or fp32. One layer, for the three families' shapes:
 *
 *   xn = norm1(x)                                  LayerNorm (GPT-2, Falcon) or RMSNorm (Llama, Mistral, Qwen2)
 *   q|k|v = xn @ Wqkv (+ b); rotary on q, k         one fused projection; rotary (Llama, Falcon-7b) or learned
 *   cache[slot] = k, v                              positions (GPT-2) or ALiBi (falcon-rw-1b)
 *   a = attention(q, cache) @ Wo (+ b)
 *   sequential: x += a; x += mlp(norm2(x))         GPT-2, Llama, falcon-rw-1b
 *   parallel:   x += a + mlp(xn or norm2(x))        Falcon-7b/40b (one or two norms, both of the layer's input)
 *   mlp(h) = act(h @ Wup) @ Wdown, or act(h @ Wgate) * (h @ Wup) @ Wdown with gate|up fused (Llama)
 */
#include "kernels.h"
#include "simd.h"
#include <stdlib.h>

enum { NORM_LAYER = 0, NORM_RMS = 1 };
enum { ACT_GELU_TANH = 0, ACT_GELU = 1, ACT_SILU = 2, ACT_RELU = 3 };
enum { POS_NONE = 0, POS_LEARNED = 1, POS_ROPE = 2, POS_ALIBI = 3 };
enum { EMB_F32 = 0, EMB_BF16 = 1, EMB_PANELS = 2 };

typedef struct {
    const float *norm1_w, *norm1_b, *norm2_w, *norm2_b; /* norm2: NULL when the layer has one norm */
    cl_linear qkv, o, up, down;
    void *k_cache, *v_cache;                            /* [Hkv, S, D] */
    float attn_scale;
    int32_t reserved;
} cl_layer;

typedef struct {
    int64_t n_layers, hidden, n_heads, n_kv_heads, head_dim, inter, vocab;
    int32_t norm, act, pos, parallel, gated, kv_bf16, embed_kind, reserved;
    float eps, reserved_f;
    const float *rope_cos, *rope_sin; /* [rope_len, D / 2] */
    int64_t rope_len;
    const float *alibi;               /* [H, alibi_len], already scaled */
    int64_t alibi_len;
    const float *pos_emb;             /* [max positions, hidden] */
    const void *embed;                /* see embed_kind; EMB_PANELS: the head's bf16 panels */
    const float *final_w, *final_b;
    cl_linear head;
    int64_t kv_slots, block_size;
    const cl_layer *layers;
    /* buffers for max_rows rows */
    int64_t max_rows;
    float *x, *xn, *xn2, *qkv, *attn, *mlp;
} cl_model;

/* With -DCOCINA_PROFILE the step adds the time of each part to prof_s (benchmarks/profile_step.py reads it);
 * normal builds compile the marks to nothing. */
#ifdef COCINA_PROFILE
#include <time.h>
enum { P_EMBED, P_NORM, P_QKV, P_KV, P_ATTN, P_O, P_UP, P_ACT, P_DOWN, P_HEAD, P_N };
static double prof_s[P_N];
static double prof_t0;
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#define MARK(part) do { double t_ = now_s(); prof_s[part] += t_ - prof_t0; prof_t0 = t_; } while (0)
#define MARK_START() (prof_t0 = now_s())
int cocina_profile(double *out)
{
    for (int i = 0; i < P_N; i++) { out[i] = prof_s[i]; prof_s[i] = 0; }
    return P_N;
}
#else
#define MARK(part) ((void)0)
#define MARK_START() ((void)0)
#endif

/* ---- row operations ---------------------------------------------------------------------------------------- */
static void norm_row(const cl_model *m, const float *x, const float *w, const float *b, float *out)
{
    const int64_t n = m->hidden;
    int64_t k;
    if (m->norm == NORM_RMS) {
        vf ss = vf_zero();
        for (k = 0; k + VL <= n; k += VL) {
            vf v = vf_load(x + k);
            ss = vf_fma(v, v, ss);
        }
        float s = vf_hsum(ss);
        for (; k < n; k++) s += x[k] * x[k];
        const float r = 1.0f / sqrtf(s / (float)n + m->eps);
        for (k = 0; k < n; k++) out[k] = w[k] * (x[k] * r);
        return;
    }
    vf sv = vf_zero();
    for (k = 0; k + VL <= n; k += VL) sv = vf_add(sv, vf_load(x + k));
    float s = vf_hsum(sv);
    for (; k < n; k++) s += x[k];
    const float mean = s / (float)n;
    vf vv = vf_zero();
    for (k = 0; k + VL <= n; k += VL) {
        vf d = vf_sub(vf_load(x + k), vf_set1(mean));
        vv = vf_fma(d, d, vv);
    }
    float var = vf_hsum(vv);
    for (; k < n; k++) var += (x[k] - mean) * (x[k] - mean);
    const float r = 1.0f / sqrtf(var / (float)n + m->eps);
    for (k = 0; k < n; k++) out[k] = (x[k] - mean) * r * w[k] + (b ? b[k] : 0.0f);
}

static void norm_rows(const cl_model *m, const float *x, int64_t T, const float *w, const float *b, float *out,
                      int nthreads)
{
    /* a parallel region costs microseconds (more when another process holds a core): only for large steps */
#pragma omp parallel for num_threads(nthreads) schedule(static) if (T * m->hidden > (1 << 17))
    for (int64_t t = 0; t < T; t++) norm_row(m, x + t * m->hidden, w, b, out + t * m->hidden);
}

/* tanh(x) = 1 - 2 / (exp(2x) + 1), exact to a few ulp away from 0; the GELU formulas keep its error small */
static inline vf vf_tanh(vf x)
{
    vf e = vf_exp(vf_add(x, x));
    return vf_sub(vf_set1(1.0f), vf_div(vf_set1(2.0f), vf_add(e, vf_set1(1.0f))));
}

static void act_rows(const cl_model *m, float *h, int64_t T, int64_t ld, int nthreads)
{
    const int64_t n = m->inter;
#pragma omp parallel for num_threads(nthreads) schedule(static) if (T * n > (1 << 15))
    for (int64_t t = 0; t < T; t++) {
        float *g = h + t * ld;
        int64_t k = 0;
        switch (m->act) {
        case ACT_GELU_TANH:
            /* 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) */
            for (; k + VL <= n; k += VL) {
                vf x = vf_load(g + k);
                vf inner = vf_mul(vf_set1(0.7978845608028654f), vf_fma(vf_mul(vf_set1(0.044715f), x), vf_mul(x, x), x));
                vf_store(g + k, vf_mul(vf_mul(vf_set1(0.5f), x), vf_add(vf_set1(1.0f), vf_tanh(inner))));
            }
            for (; k < n; k++) {
                float x = g[k];
                g[k] = 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
            }
            break;
        case ACT_GELU:
            for (; k < n; k++) g[k] = 0.5f * g[k] * (1.0f + erff(g[k] * 0.70710678118654752f));
            break;
        case ACT_SILU: {
            /* gate|up fused: g[k] = silu(gate[k]) * up[k], up at g + inter */
            const float *u = g + n;
            for (; k + VL <= n; k += VL) {
                vf x = vf_load(g + k);
                vf s = vf_div(x, vf_add(vf_set1(1.0f), vf_exp(vf_sub(vf_zero(), x))));
                vf_store(g + k, vf_mul(s, vf_load(u + k)));
            }
            for (; k < n; k++) g[k] = g[k] / (1.0f + expf(-g[k])) * u[k];
            break;
        }
        default:
            for (; k < n; k++) g[k] = g[k] > 0.0f ? g[k] : 0.0f;
        }
    }
}

/* Rotary embedding on q and k of every row, in place (the rotate_half form: pairs (i, i + D/2)) */
static void rope_rows(const cl_model *m, float *qkv, int64_t T, int64_t ld, const int32_t *positions)
{
    const int64_t D = m->head_dim, half = D / 2, heads = m->n_heads + m->n_kv_heads;
    for (int64_t t = 0; t < T; t++) {
        const float *c = m->rope_cos + (int64_t)positions[t] * half, *s = m->rope_sin + (int64_t)positions[t] * half;
        for (int64_t h = 0; h < heads; h++) {
            float *v = qkv + t * ld + h * D;
            for (int64_t i = 0; i < half; i++) {
                const float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

static void embed_rows(const cl_model *m, const int32_t *tokens, const int32_t *positions, int64_t T)
{
    const int64_t n = m->hidden;
    for (int64_t t = 0; t < T; t++) {
        float *x = m->x + t * n;
        const int64_t id = tokens[t];
        if (m->embed_kind == EMB_F32) {
            memcpy(x, (const float *)m->embed + id * n, (size_t)n * 4);
        } else if (m->embed_kind == EMB_BF16) {
            const uint16_t *e = (const uint16_t *)m->embed + id * n;
            for (int64_t k = 0; k < n; k++) x[k] = bf16_to_f32(e[k]);
        } else {
            /* element (id, k) of [N/32][K/2][32][2] panels */
            const int64_t K2 = (n + 1) / 2;
            const uint16_t *p = (const uint16_t *)m->embed + (id / 32) * K2 * 64 + (id % 32) * 2;
            for (int64_t k = 0; k < n; k++) x[k] = bf16_to_f32(p[(k / 2) * 64 + (k % 2)]);
        }
        if (m->pos == POS_LEARNED) {
            const float *pe = m->pos_emb + (int64_t)positions[t] * n;
            for (int64_t k = 0; k < n; k++) x[k] += pe[k];
        }
    }
}

static void write_kv(const cl_model *m, const cl_layer *l, const float *qkv, int64_t T, int64_t ld, const int32_t *slots)
{
    const int64_t D = m->head_dim, H = m->n_heads, Hkv = m->n_kv_heads, S = m->kv_slots;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t h = 0; h < Hkv; h++) {
            const float *k = qkv + t * ld + (H + h) * D, *v = qkv + t * ld + (H + Hkv + h) * D;
            const int64_t off = (h * S + (int64_t)slots[t]) * D;
            if (m->kv_bf16) {
                uint16_t *kc = (uint16_t *)l->k_cache + off, *vc = (uint16_t *)l->v_cache + off;
                for (int64_t d = 0; d < D; d++) {
                    kc[d] = f32_to_bf16(k[d]);
                    vc[d] = f32_to_bf16(v[d]);
                }
            } else {
                memcpy((float *)l->k_cache + off, k, (size_t)D * 4);
                memcpy((float *)l->v_cache + off, v, (size_t)D * 4);
            }
        }
    }
}

/*
 * One step over T rows (T <= max_rows): row t is token tokens[t] at position positions[t], its K/V go to cache
 * slot slots[t], it attends to the first ctx_lens[t] keys of block table row_table[t] of tables [*, max_blocks].
 * Logits of rows sample_rows[0..n_sample) go to logits [n_sample, vocab] (fp32).
 * Returns 0, or the first failing kernel's code (negative).
 */
int cocina_forward(const cl_model *m, int64_t T, const int32_t *tokens, const int32_t *positions,
                   const int32_t *slots, const int32_t *tables, int64_t max_blocks, const int32_t *row_table,
                   const int32_t *ctx_lens, int64_t n_sample, const int32_t *sample_rows, float *logits, int nthreads)
{
    if (T > m->max_rows || n_sample > m->max_rows) return -3;
    const int64_t hid = m->hidden, D = m->head_dim, H = m->n_heads, Hkv = m->n_kv_heads;
    const int64_t qkv_ld = (H + 2 * Hkv) * D, mlp_ld = m->gated ? 2 * m->inter : m->inter;
    int rc;
    MARK_START();
    embed_rows(m, tokens, positions, T);
    MARK(P_EMBED);
    for (int64_t li = 0; li < m->n_layers; li++) {
        const cl_layer *l = &m->layers[li];
        norm_rows(m, m->x, T, l->norm1_w, l->norm1_b, m->xn, nthreads);
        /* the MLP's own norm of a parallel layer reads the layer's input, before the attention adds to it */
        const float *mlp_in = m->xn;
        if (m->parallel && l->norm2_w) {
            norm_rows(m, m->x, T, l->norm2_w, l->norm2_b, m->xn2, nthreads);
            mlp_in = m->xn2;
        }
        MARK(P_NORM);
        if ((rc = cocina_linear(&l->qkv, m->xn, T, hid, m->qkv, qkv_ld, 0, nthreads))) return rc;
        MARK(P_QKV);
        if (m->pos == POS_ROPE) rope_rows(m, m->qkv, T, qkv_ld, positions);
        write_kv(m, l, m->qkv, T, qkv_ld, slots);
        MARK(P_KV);
        rc = cocina_paged_attention(m->qkv, qkv_ld, D, l->k_cache, l->v_cache, m->kv_slots, m->kv_bf16, tables,
                                    max_blocks, row_table, ctx_lens, T, H, Hkv, D, m->block_size, l->attn_scale,
                                    m->pos == POS_ALIBI ? m->alibi : NULL, m->alibi_len, m->attn, H * D, nthreads);
        if (rc) return rc;
        MARK(P_ATTN);
        if ((rc = cocina_linear(&l->o, m->attn, T, H * D, m->x, hid, 1, nthreads))) return rc;
        MARK(P_O);
        if (!m->parallel) {
            norm_rows(m, m->x, T, l->norm2_w, l->norm2_b, m->xn, nthreads);
            mlp_in = m->xn;
            MARK(P_NORM);
        }
        if ((rc = cocina_linear(&l->up, mlp_in, T, hid, m->mlp, mlp_ld, 0, nthreads))) return rc;
        MARK(P_UP);
        act_rows(m, m->mlp, T, mlp_ld, nthreads);
        MARK(P_ACT);
        if ((rc = cocina_linear(&l->down, m->mlp, T, mlp_ld, m->x, hid, 1, nthreads))) return rc;
        MARK(P_DOWN);
    }
    for (int64_t i = 0; i < n_sample; i++)
        norm_row(m, m->x + (int64_t)sample_rows[i] * hid, m->final_w, m->final_b, m->xn + i * hid);
    rc = cocina_linear(&m->head, m->xn, n_sample, hid, logits, m->vocab, 0, nthreads);
    MARK(P_HEAD);
    return rc;
}

/* The ABI of this library: cpu_kernels.py refuses a build that answers another number. */
int cocina_kernels_abi(void) { return 5; }

/* Which instruction set this build was compiled for (the variant's name). */
const char *cocina_kernels_isa(void)
{
#if defined(COCINA_AVX512) && defined(COCINA_BF16DP)
    return "avx512bf16";
#elif defined(COCINA_AVX512) && defined(COCINA_VNNI)
    return "avx512vnni";
#elif defined(COCINA_AVX512)
    return "avx512";
#else
    return "avx2";
#endif
}
