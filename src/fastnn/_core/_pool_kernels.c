/* Max-pooling kernels over channel vectors; see _pool_kernels.h. */
#include "_pool_kernels.h"
#include "_packed_kernels.h"   /* the FNN_LEVEL_* codes */
#include "_simd.h"

#include <stddef.h>
#include <string.h>

enum { P_H, P_W, P_C, P_OH, P_OW, P_PH, P_PW, P_SH, P_SW };

int fnn_pool_direct(int level)
{
#ifdef FNN_X86
    return level == FNN_LEVEL_AVX512;
#else
    (void)level;
    return 0;
#endif
}

int fnn_pool_tiles(const int *g)
{
    return g[P_SH] == g[P_PH] && g[P_SW] == g[P_PW];
}

#ifdef FNN_X86

/* No FMA contraction: act'(y) is computed with the same roundings as the Cython
 * kernels', so both give the same gradients. */
#define T512_EXACT __attribute__((target("avx512f"), optimize("fp-contract=off")))

static inline T512_EXACT __mmask16 lanes(int n)
{
    return (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1);
}

/* Images [s0, s1). */
static T512_EXACT void pool_forward512(const float *X, float *Y, int32_t *argmax, int s0,
                                       int s1, const int *g)
{
    int W = g[P_W], C = g[P_C], OH = g[P_OH], OW = g[P_OW];
    int PH = g[P_PH], PW = g[P_PW], SH = g[P_SH], SW = g[P_SW];
    ptrdiff_t in_size = (ptrdiff_t)g[P_H] * W * C, out_size = (ptrdiff_t)OH * OW * C;
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int s = s0; s < s1; s++) {
        const float *x = X + s * in_size;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                ptrdiff_t o = s * out_size + ((ptrdiff_t)oh * OW + ow) * C;
                int off0 = (oh * SH * W + ow * SW) * C;
                for (int c = 0; c < C; c += 16) {
                    __mmask16 m = lanes(C - c);
                    __m512 best = _mm512_maskz_loadu_ps(m, x + off0 + c);
                    __m512i at = _mm512_add_epi32(_mm512_set1_epi32(off0 + c), lane);
                    for (int i = 0; i < PH; i++)
                        for (int j = (i == 0); j < PW; j++) {
                            int off = off0 + (i * W + j) * C + c;
                            __m512 v = _mm512_maskz_loadu_ps(m, x + off);
                            /* strict >, ordered: the first maximum stays, NaN never wins */
                            __mmask16 gt = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
                            best = _mm512_mask_mov_ps(best, gt, v);
                            at = _mm512_mask_mov_epi32(
                                at, gt, _mm512_add_epi32(_mm512_set1_epi32(off), lane));
                        }
                    _mm512_mask_storeu_ps(Y + o + c, m, best);
                    _mm512_mask_storeu_epi32(argmax + o + c, m, at);
                }
            }
    }
}

/* Images [s0, s1). */
static T512_EXACT void pool_backward_act512(const float *dY, const int32_t *argmax,
                                            const float *Y, float *dZ, int act, int s0,
                                            int s1, const int *g)
{
    int H = g[P_H], W = g[P_W], C = g[P_C], OH = g[P_OH], OW = g[P_OW];
    int PH = g[P_PH], PW = g[P_PW];
    ptrdiff_t in_size = (ptrdiff_t)H * W * C, out_size = (ptrdiff_t)OH * OW * C;
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    /* Rows and columns no window covers (the pool drops them) get no store below. */
    int uncovered = OH * PH < H || OW * PW < W;
    for (int c = 0; c < C; c += 16) {
        __mmask16 m = lanes(C - c);
        for (int s = s0; s < s1; s++) {
            float *dz = dZ + s * in_size;
            if (uncovered && c == 0)
                memset(dz, 0, (size_t)in_size * sizeof(float));
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    ptrdiff_t o = s * out_size + ((ptrdiff_t)oh * OW + ow) * C + c;
                    __m512 a = _mm512_maskz_loadu_ps(m, Y + o);
                    __m512 d = _mm512_maskz_loadu_ps(m, dY + o);
                    if (act == FNN_ACT_SIGMOID)
                        d = _mm512_mul_ps(d, _mm512_mul_ps(a, _mm512_sub_ps(one, a)));
                    else if (act == FNN_ACT_TANH)
                        d = _mm512_mul_ps(d, _mm512_sub_ps(one, _mm512_mul_ps(a, a)));
                    else if (act == FNN_ACT_RELU)
                        d = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, zero, _CMP_GT_OQ), d);
                    __m512i at = _mm512_maskz_loadu_epi32(m, argmax + o);
                    int off0 = (oh * PH * W + ow * PW) * C + c;
                    for (int i = 0; i < PH; i++)
                        for (int j = 0; j < PW; j++) {
                            int off = off0 + (i * W + j) * C;
                            __mmask16 here = _mm512_cmpeq_epi32_mask(
                                at, _mm512_add_epi32(_mm512_set1_epi32(off), lane));
                            _mm512_mask_storeu_ps(dz + off, m, _mm512_maskz_mov_ps(here, d));
                        }
                }
        }
    }
}

typedef struct {
    const float *X, *dY, *Y;
    float *out, *dZ;
    const int32_t *argmax_in;
    int32_t *argmax;
    int act, n, units;
    const int *g;
    fnn_act_fn act_fn;
} pool_job;

#define POOL_UNITS 8

static void forward_unit(void *ctx, int u)
{
    const pool_job *j = (const pool_job *)ctx;
    int s0 = (int)((long long)u * j->n / j->units), s1 = (int)((long long)(u + 1) * j->n / j->units);
    pool_forward512(j->X, j->out, j->argmax, s0, s1, j->g);
    if (j->act_fn != NULL) {
        ptrdiff_t out_size = (ptrdiff_t)j->g[P_OH] * j->g[P_OW] * j->g[P_C];
        j->act_fn(j->act, j->out + s0 * out_size, (s1 - s0) * out_size);
    }
}

static void backward_unit(void *ctx, int u)
{
    const pool_job *j = (const pool_job *)ctx;
    pool_backward_act512(j->dY, j->argmax_in, j->Y, j->dZ, j->act,
                         (int)((long long)u * j->n / j->units),
                         (int)((long long)(u + 1) * j->n / j->units), j->g);
}

#endif /* FNN_X86 */

void fnn_pool_forward(const float *X, float *Y, int32_t *argmax, int n, const int *g,
                      fnn_act_fn act_fn, int act, fnn_team *team)
{
#ifdef FNN_X86
    pool_job j = {0};
    j.X = X, j.out = Y, j.argmax = argmax, j.n = n, j.g = g, j.act_fn = act_fn, j.act = act;
    j.units = n < POOL_UNITS ? n : POOL_UNITS;
    fnn_team_for(team, j.units, forward_unit, &j);
#else
    (void)X; (void)Y; (void)argmax; (void)n; (void)g; (void)act_fn; (void)act; (void)team;
#endif
}

void fnn_pool_backward_act_image(const float *dY, const int32_t *argmax, const float *Y,
                                 float *dZ, int act, const int *g)
{
#ifdef FNN_X86
    pool_backward_act512(dY, argmax, Y, dZ, act, 0, 1, g);
#else
    (void)dY; (void)argmax; (void)Y; (void)dZ; (void)act; (void)g;
#endif
}

void fnn_pool_backward_act(const float *dY, const int32_t *argmax, const float *Y, float *dZ,
                           int act, int n, const int *g, fnn_team *team)
{
#ifdef FNN_X86
    pool_job j = {0};
    j.dY = dY, j.argmax_in = argmax, j.Y = Y, j.dZ = dZ, j.act = act, j.n = n, j.g = g;
    j.units = n < POOL_UNITS ? n : POOL_UNITS;
    fnn_team_for(team, j.units, backward_unit, &j);
#else
    (void)dY; (void)argmax; (void)Y; (void)dZ; (void)act; (void)n; (void)g; (void)team;
#endif
}
