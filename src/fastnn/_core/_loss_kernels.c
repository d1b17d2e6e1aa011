/* The fused softmax cross-entropy, vectorised; see _loss_kernels.h. */
#include "_loss_kernels.h"

#include <math.h>

#include "_packed_kernels.h"
#include "_simd.h"

#ifdef FNN_X86

/* exp(x) for x <= 0 (a logit minus its row's maximum): x = n ln2 + r, |r| <= ln2 / 2,
 * exp(r) by Cephes' expf polynomial (within 2 ulp of libm's), times 2^n. Below
 * -87.3 (exp under the smallest normal float) it is 0; a NaN stays NaN, so a row
 * with a NaN or +inf logit (x = inf - inf) sums to NaN, as in the scalar loss. */
#define EXP_LO -87.33654f
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO -2.12194440e-4f
#define EXP_POLY(V, FMA, SET1, r)                                                       \
    FMA(FMA(FMA(FMA(FMA(SET1(1.9875691500e-4f), r, SET1(1.3981999507e-3f)), r,          \
                    SET1(8.3334519073e-3f)), r, SET1(4.1665795894e-2f)), r,             \
            SET1(1.6666665459e-1f)), r, SET1(5.0000001201e-1f))

static T512 __m512 exp512(__m512 x)
{
    __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(EXP_LO), _CMP_LT_OQ);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    __m512 p = EXP_POLY(__m512, _mm512_fmadd_ps, _mm512_set1_ps, r);
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_maskz_mov_ps((__mmask16)~under, _mm512_scalef_ps(p, n));
}

static T256 __m256 exp256(__m256 x)
{
    __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_LO), _CMP_LT_OQ);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    __m256 p = EXP_POLY(__m256, _mm256_fmadd_ps, _mm256_set1_ps, r);
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n in the exponent bits: n >= -126 for x >= EXP_LO; below, the under mask zeroes
     * whatever the conversion gave. A NaN x gives a NaN p. */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

/* One row: its maximum m and sum s of exp(z - m), exp(z - m) written to e (if not NULL). */
static T512 float row512(const float *z, float *e, int c, float *m_out)
{
    __m512 mv = _mm512_set1_ps(-INFINITY);
    for (int j = 0; j < c; j += 16) {
        __mmask16 k = (__mmask16)(c - j >= 16 ? 0xFFFF : (1u << (c - j)) - 1);
        mv = _mm512_mask_max_ps(mv, k, _mm512_maskz_loadu_ps(k, z + j), mv);
    }
    float m = _mm512_reduce_max_ps(mv);
    __m512 sv = _mm512_setzero_ps(), mb = _mm512_set1_ps(m);
    for (int j = 0; j < c; j += 16) {
        __mmask16 k = (__mmask16)(c - j >= 16 ? 0xFFFF : (1u << (c - j)) - 1);
        __m512 t = _mm512_maskz_mov_ps(k, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, z + j), mb)));
        sv = _mm512_add_ps(sv, t);
        if (e != NULL)
            _mm512_mask_storeu_ps(e + j, k, t);
    }
    *m_out = m;
    return _mm512_reduce_add_ps(sv);
}

static T256 float row256(const float *z, float *e, int c, float *m_out)
{
    __m256 mv = _mm256_set1_ps(-INFINITY);
    for (int j = 0; j < c; j += 8) {
        __m256i k = fnn_mask8(c - j);
        __m256 v = _mm256_blendv_ps(mv, _mm256_maskload_ps(z + j, k), _mm256_castsi256_ps(k));
        mv = _mm256_max_ps(v, mv);
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    float m = _mm_cvtss_f32(h);
    __m256 sv = _mm256_setzero_ps(), mb = _mm256_set1_ps(m);
    for (int j = 0; j < c; j += 8) {
        __m256i k = fnn_mask8(c - j);
        __m256 t = _mm256_and_ps(exp256(_mm256_sub_ps(_mm256_maskload_ps(z + j, k), mb)),
                                 _mm256_castsi256_ps(k));
        sv = _mm256_add_ps(sv, t);
        if (e != NULL)
            _mm256_maskstore_ps(e + j, k, t);
    }
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(sv), _mm256_extractf128_ps(sv, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    *m_out = m;
    return _mm_cvtss_f32(s);
}

#endif

double fnn_softmax_xent_labels(int level, const float *Z, const ptrdiff_t *labels,
                               const float *w, float *dZ, int n, int c)
{
    double total = 0;
    float inv_n = 1.0f / (float)n;
    for (int i = 0; i < n; i++) {
        const float *z = Z + (ptrdiff_t)i * c;
        float *d = dZ != NULL ? dZ + (ptrdiff_t)i * c : NULL;
        float wi = w != NULL ? w[i] : 1.0f, m = 0, s = NAN;
#ifdef FNN_X86
        if (level == FNN_LEVEL_AVX512)
            s = row512(z, d, c, &m);
        else if (level == FNN_LEVEL_AVX2)
            s = row256(z, d, c, &m);
#else
        (void)level;
#endif
        total += wi * (m + logf(s) - z[labels[i]]);
        if (d != NULL) {
            float scale = wi * inv_n / s;
            for (int j = 0; j < c; j++)
                d[j] *= scale;
            d[labels[i]] -= wi * inv_n;
        }
    }
    return total / n;
}
