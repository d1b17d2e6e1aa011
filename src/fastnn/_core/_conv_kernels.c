/* Direct float32 convolution kernels; see _conv_kernels.h.
 *
 * Layout. Each image is copied into one plane per input channel, zero padded to
 * Hp x Wp = (OH + KH - 1) x (OW + KW - 1). At stride 1 the output pixel (oh, ow) reads
 * plane value (oh + i) Wp + ow + j for its tap (i, j), so the taps of consecutive
 * pixels are consecutive values: each is one broadcast load at a fixed displacement.
 *
 * Vectors run over output channels (16 with AVX-512, 8 with AVX2; masked for the last
 * group), as the channels-last layout stores them: the forward's outputs and dZ's rows
 * are loaded and stored as they lie, with no transposition, and a vector of weight
 * gradients is a row of dW. For the tutorial's 10 channels 10 of 16 lanes work, which
 * measured faster than vectors over output pixels (all lanes busy, but a transposition
 * into and out of them): forward 4.1 against 4.3 us per image, weight gradient 4.6
 * against 5.7 (benches/NOTES.md, section 19).
 *
 * Forward: MR pixels along an output row, each an accumulator over a channel vector
 * (started at the bias), one weight vector per tap broadcast-multiplied by the MR
 * input values. Weight gradient: TB taps, each an accumulator over a channel vector,
 * two pixels at a time (two sets of accumulators, so that enough FMAs are independent),
 * over every pixel of an image; then added into TB rows of dW.
 */
#include "_conv_kernels.h"
#include "_packed_kernels.h"   /* the FNN_LEVEL_* codes */
#include "_pool_kernels.h"
#include "_simd.h"

#include <string.h>

enum { G_H, G_W, G_C, G_OH, G_OW, G_CO, G_KH, G_KW, G_SH, G_SW, G_PT, G_PL };

typedef struct {
    int H, W, C, OH, OW, CO, KH, KW, PT, PL;
    int Hp, Wp;        /* the padded plane */
    ptrdiff_t ps;      /* floats per plane: Hp Wp rounded up to 16 */
} geom;

static geom geom_of(const int *g)
{
    geom q;
    q.H = g[G_H]; q.W = g[G_W]; q.C = g[G_C]; q.OH = g[G_OH]; q.OW = g[G_OW];
    q.CO = g[G_CO]; q.KH = g[G_KH]; q.KW = g[G_KW]; q.PT = g[G_PT]; q.PL = g[G_PL];
    q.Hp = q.OH + q.KH - 1;
    q.Wp = q.OW + q.KW - 1;
    q.ps = ((ptrdiff_t)q.Hp * q.Wp + 15) / 16 * 16;
    return q;
}

int fnn_conv_direct(int level, const int *g)
{
#ifdef FNN_X86
    return (level == FNN_LEVEL_AVX512 || level == FNN_LEVEL_AVX2) && g[G_SH] == 1
           && g[G_SW] == 1;
#else
    (void)level; (void)g;
    return 0;
#endif
}

/* planes (C x ps) = one image (H x W x C), zero padded. */
static void fill_planes(const geom *q, const float *x, float *planes)
{
    memset(planes, 0, (size_t)q->C * q->ps * sizeof(float));
    int r0 = q->PT, r1 = q->PT + q->H < q->Hp ? q->PT + q->H : q->Hp;
    int c0 = q->PL, c1 = q->PL + q->W < q->Wp ? q->PL + q->W : q->Wp;
    if (r0 >= r1 || c0 >= c1)
        return;
    for (int r = r0; r < r1; r++) {
        const float *src = x + ((ptrdiff_t)(r - q->PT) * q->W + (c0 - q->PL)) * q->C;
        float *dst = planes + (ptrdiff_t)r * q->Wp + c0;
        if (q->C == 1) {
            memcpy(dst, src, (size_t)(c1 - c0) * sizeof(float));
            continue;
        }
        for (int k = 0; k < c1 - c0; k++)
            for (int ci = 0; ci < q->C; ci++)
                dst[ci * q->ps + k] = src[(ptrdiff_t)k * q->C + ci];
    }
}

/* The k-th of `parts` nearly equal blocks of `total`: its start and size. */
static void split(int total, int parts, int k, int *start, int *size)
{
    int base = total / parts, extra = total % parts;
    *start = k * base + (k < extra ? k : extra);
    *size = base + (k < extra ? 1 : 0);
}

/* Offsets into an image's planes of taps t0 .. t0 + tb - 1, in W's (i, j, ci) order. */
static void tap_offsets(const geom *q, int t0, int tb, ptrdiff_t *off)
{
    for (int t = 0; t < tb; t++) {
        int ci = (t0 + t) % q->C, ij = (t0 + t) / q->C;
        off[t] = ci * q->ps + (ptrdiff_t)(ij / q->KW) * q->Wp + ij % q->KW;
    }
}

/* The kernels of one level, written once for both: VEC is the vector type, VL its
 * lanes, MR_MAX and TB_MAX the register blocks, and the macros below the few
 * intrinsics that differ. */
#ifdef FNN_X86

#define LEVEL_SUFFIX 512
#define TGT T512
#define VEC __m512
#define VL 16
#define MR_MAX 24
#define TB_MAX 8
#define MASK_T __mmask16
#define MASK_OF(n) ((__mmask16)((n) >= 16 ? 0xFFFF : (1u << (n)) - 1))
#define LOADM(m, p) _mm512_maskz_loadu_ps(m, p)
#define STOREM(m, p, v) _mm512_mask_storeu_ps(p, m, v)
#define ZERO() _mm512_setzero_ps()
#define BCAST(p) _mm512_set1_ps(*(p))
#define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define ADD(a, b) _mm512_add_ps(a, b)
#include "_conv_kernels_level.h"

/* The convolution with a 2 x 2, stride 2 max-pool after it, fused (AVX-512): rows oh and
 * oh + 1 of MR (even) output pixels from ow0 (even), for one channel group (mask m), are
 * computed as by fwd_pixels512 (the same FMAs in the same order, so the same values) and
 * pooled in registers as pool_forward512 pools them (the same comparisons in the same
 * order: the window's first maximum, NaN never replacing one), so the results are those
 * of the two kernels bit for bit; the convolution's outputs are never stored. yp and ap
 * point at the first pooled output; at0 is the first pixel's offset in the convolution's
 * output image, from which the argmax offsets count. */
INL T512 void fwd_pool_pixels512(const int MR, const float *x, const geom *q, const float *w,
                                 __mmask16 m, __m512 bias, float *yp, int32_t *ap, int at0)
{
    __m512 a0[12], a1[12];
    _Pragma("GCC unroll 12")
    for (int k = 0; k < MR; k++)
        a0[k] = a1[k] = bias;
    for (int i = 0; i < q->KH; i++)
        for (int j = 0; j < q->KW; j++)
            for (int ci = 0; ci < q->C; ci++, w += q->CO) {
                __m512 wv = _mm512_maskz_loadu_ps(m, w);
                const float *xr = x + ci * q->ps + (ptrdiff_t)i * q->Wp + j;
                _Pragma("GCC unroll 12")
                for (int k = 0; k < MR; k++) {
                    a0[k] = _mm512_fmadd_ps(_mm512_set1_ps(xr[k]), wv, a0[k]);
                    a1[k] = _mm512_fmadd_ps(_mm512_set1_ps(xr[q->Wp + k]), wv, a1[k]);
                }
            }
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    int below = q->OW * q->CO;      /* from a pixel to the one under it */
    _Pragma("GCC unroll 6")
    for (int p = 0; p < MR / 2; p++) {
        int off = at0 + 2 * p * q->CO;
        __m512 best = a0[2 * p];
        __m512i at = _mm512_add_epi32(_mm512_set1_epi32(off), lane);
        const __m512 v[3] = {a0[2 * p + 1], a1[2 * p], a1[2 * p + 1]};
        const int o[3] = {off + q->CO, off + below, off + below + q->CO};
        for (int t = 0; t < 3; t++) {
            __mmask16 gt = _mm512_cmp_ps_mask(v[t], best, _CMP_GT_OQ);
            best = _mm512_mask_mov_ps(best, gt, v[t]);
            at = _mm512_mask_mov_epi32(at, gt, _mm512_add_epi32(_mm512_set1_epi32(o[t]), lane));
        }
        _mm512_mask_storeu_ps(yp + p * q->CO, m, best);
        _mm512_mask_storeu_epi32(ap + p * q->CO, m, at);
    }
}

#define FWD_POOL_CASE(N)                                                                  \
    case N:                                                                               \
        fwd_pool_pixels512(2 * N, x, q, W + c0, m, bias, yp + o, ap + o, at0);            \
        break;

/* One image: the POH x POW x CO pooled outputs and their argmax offsets. */
static T512 void forward_pool_image512(const geom *q, int POH, int POW, const float *planes,
                                       const float *W, const float *b, float *yp,
                                       int32_t *ap)
{
    int pblocks = (POW + 5) / 6;
    for (int c0 = 0; c0 < q->CO; c0 += 16) {
        __mmask16 m = (__mmask16)(q->CO - c0 >= 16 ? 0xFFFF : (1u << (q->CO - c0)) - 1);
        __m512 bias = _mm512_maskz_loadu_ps(m, b + c0);
        for (int ph = 0; ph < POH; ph++)
            for (int kb = 0; kb < pblocks; kb++) {
                int pw0, np;
                split(POW, pblocks, kb, &pw0, &np);
                const float *x = planes + (ptrdiff_t)2 * ph * q->Wp + 2 * pw0;
                ptrdiff_t o = ((ptrdiff_t)ph * POW + pw0) * q->CO + c0;
                int at0 = (2 * ph * q->OW + 2 * pw0) * q->CO + c0;
                switch (np) {
                    FWD_POOL_CASE(1) FWD_POOL_CASE(2) FWD_POOL_CASE(3)
                    FWD_POOL_CASE(4) FWD_POOL_CASE(5) FWD_POOL_CASE(6)
                }
            }
    }
}

#undef FWD_POOL_CASE

#define LEVEL_SUFFIX 256
#define TGT T256
#define VEC __m256
#define VL 8
#define MR_MAX 12
#define TB_MAX 6
#define MASK_T __m256i
#define MASK_OF(n) fnn_mask8(n)
#define LOADM(m, p) _mm256_maskload_ps(p, m)
#define STOREM(m, p, v) _mm256_maskstore_ps(p, m, v)
#define ZERO() _mm256_setzero_ps()
#define BCAST(p) _mm256_broadcast_ss(p)
#define FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define ADD(a, b) _mm256_add_ps(a, b)
#include "_conv_kernels_level.h"

#endif /* FNN_X86 */

/* ------------------------------------------------------------ entry points */

typedef struct {
    geom q;
    int level, n, units, act;
    const float *X, *W, *b, *dZ;
    float *Y, *scratch;
    int32_t *argmax;    /* the fused pool's */
    int POH, POW;       /* its output rows and columns */
    const float *dY, *Yp;         /* weight gradient through the pool: its gradient and */
    const int32_t *argmax_in;     /* output (activated), its argmax, */
    const int *pg;                /* and geometry */
    fnn_act_fn act_fn;
    ptrdiff_t per;      /* floats of scratch per unit */
} conv_job;

static int units_for(int n) { return n < FNN_CONV_UNITS ? n : FNN_CONV_UNITS; }

/* Images [first, last) of unit u of n. */
static void unit_images(int n, int units, int u, int *first, int *last)
{
    *first = (int)((long long)u * n / units);
    *last = (int)((long long)(u + 1) * n / units);
}

/* A unit's scratch: the image's planes, then its partial dW and db, then (for the
 * weight gradient through a pool only) one image's dZ. */
size_t fnn_conv_scratch_floats(const int *g)
{
    geom q = geom_of(g);
    size_t grads = ((size_t)q.KH * q.KW * q.C + 1) * q.CO;   /* dW, then db */
    return FNN_CONV_UNITS * ((size_t)q.C * q.ps + (grads + 15) / 16 * 16);
}

size_t fnn_conv_pool_wgrad_scratch_floats(const int *g)
{
    size_t dz = (size_t)g[G_OH] * g[G_OW] * g[G_CO];
    return fnn_conv_scratch_floats(g) + FNN_CONV_UNITS * ((dz + 15) / 16 * 16);
}

#ifdef FNN_X86

/* Unit u's images: the convolution's outputs, or with the fused pool (argmax not NULL)
 * the pooled outputs; each activated while in cache. */
static void forward_unit(void *ctx, int u)
{
    const conv_job *j = (const conv_job *)ctx;
    const geom *q = &j->q;
    ptrdiff_t in_size = (ptrdiff_t)q->H * q->W * q->C;
    ptrdiff_t out_size = j->argmax != NULL ? (ptrdiff_t)j->POH * j->POW * q->CO
                                           : (ptrdiff_t)q->OH * q->OW * q->CO;
    float *planes = j->scratch + u * j->per;
    int first, last;
    unit_images(j->n, j->units, u, &first, &last);
    for (int s = first; s < last; s++) {
        float *y = j->Y + s * out_size;
        fill_planes(q, j->X + s * in_size, planes);
        if (j->argmax != NULL)
            forward_pool_image512(q, j->POH, j->POW, planes, j->W, j->b, y,
                                  j->argmax + s * out_size);
        else if (j->level == FNN_LEVEL_AVX512)
            forward_image512(q, planes, j->W, j->b, y);
        else
            forward_image256(q, planes, j->W, j->b, y);
        if (j->act_fn != NULL)
            j->act_fn(j->act, y, out_size);
    }
}

static void wgrad_unit(void *ctx, int u)
{
    const conv_job *j = (const conv_job *)ctx;
    const geom *q = &j->q;
    ptrdiff_t in_size = (ptrdiff_t)q->H * q->W * q->C, out_size = (ptrdiff_t)q->OH * q->OW * q->CO;
    ptrdiff_t nw = (ptrdiff_t)q->KH * q->KW * q->C * q->CO;
    float *planes = j->scratch + u * j->per, *part = planes + q->C * q->ps;
    float *dz_image = part + (nw + q->CO + 15) / 16 * 16;
    ptrdiff_t pooled = j->pg != NULL ? (ptrdiff_t)j->pg[3] * j->pg[4] * j->pg[2] : 0;
    int first, last;
    unit_images(j->n, j->units, u, &first, &last);
    memset(part, 0, (size_t)(nw + q->CO) * sizeof(float));
    for (int s = first; s < last; s++) {
        const float *dz = j->dZ + s * out_size;
        if (j->dY != NULL) {   /* this image's dZ from the pool's gradient, into L1 */
            fnn_pool_backward_act_image(j->dY + s * pooled, j->argmax_in + s * pooled,
                                        j->Yp + s * pooled, dz_image, j->act, j->pg);
            dz = dz_image;
        }
        fill_planes(q, j->X + s * in_size, planes);
        if (j->level == FNN_LEVEL_AVX512) {
            wgrad_image512(q, planes, dz, part);
            bias_grad_image512(q, dz, part + nw);
        } else {
            wgrad_image256(q, planes, dz, part);
            bias_grad_image256(q, dz, part + nw);
        }
    }
}

#endif /* FNN_X86 */

void fnn_conv_forward(int level, const float *X, const float *W, const float *b, float *Y,
                      int n, const int *g, fnn_act_fn act_fn, int act, float *scratch,
                      fnn_team *team)
{
#ifdef FNN_X86
    conv_job j = {0};
    j.q = geom_of(g);
    j.level = level, j.n = n, j.units = units_for(n), j.act = act, j.act_fn = act_fn;
    j.X = X, j.W = W, j.b = b, j.Y = Y, j.scratch = scratch;
    j.per = (ptrdiff_t)(fnn_conv_scratch_floats(g) / FNN_CONV_UNITS);
    fnn_team_for(team, j.units, forward_unit, &j);
#else
    (void)level; (void)X; (void)W; (void)b; (void)Y; (void)n; (void)g; (void)act_fn;
    (void)act; (void)scratch; (void)team;
#endif
}

int fnn_conv_pool_fuses(int level, const int *g, const int *pool)
{
    return fnn_conv_direct(level, g) && level == FNN_LEVEL_AVX512 && pool[0] == g[G_OH]
           && pool[1] == g[G_OW] && pool[2] == g[G_CO] && pool[5] == 2 && pool[6] == 2
           && pool[7] == 2 && pool[8] == 2 && pool[3] == g[G_OH] / 2 && pool[4] == g[G_OW] / 2
           && pool[3] > 0 && pool[4] > 0;
}

void fnn_conv_pool_forward(int level, const float *X, const float *W, const float *b,
                           float *Y, int32_t *argmax, int n, const int *g, const int *pool,
                           fnn_act_fn act_fn, int act, float *scratch, fnn_team *team)
{
#ifdef FNN_X86
    if (!fnn_conv_pool_fuses(level, g, pool))
        return;
    conv_job j = {0};
    j.q = geom_of(g);
    j.level = level, j.n = n, j.units = units_for(n), j.act = act, j.act_fn = act_fn;
    j.X = X, j.W = W, j.b = b, j.Y = Y, j.argmax = argmax, j.scratch = scratch;
    j.POH = pool[3], j.POW = pool[4];
    j.per = (ptrdiff_t)(fnn_conv_scratch_floats(g) / FNN_CONV_UNITS);
    fnn_team_for(team, j.units, forward_unit, &j);
#else
    (void)level; (void)X; (void)W; (void)b; (void)Y; (void)argmax; (void)n; (void)g;
    (void)pool; (void)act_fn; (void)act; (void)scratch; (void)team;
#endif
}

static void conv_wgrad(conv_job *j, float *dW, float *db, const int *g, fnn_team *team)
{
#ifdef FNN_X86
    j->q = geom_of(g);
    j->units = units_for(j->n);
    j->per = (ptrdiff_t)((j->dY != NULL ? fnn_conv_pool_wgrad_scratch_floats(g)
                                        : fnn_conv_scratch_floats(g)) / FNN_CONV_UNITS);
    fnn_team_for(team, j->units, wgrad_unit, j);
    /* The units' partial sums, added in their order. */
    ptrdiff_t nw = (ptrdiff_t)j->q.KH * j->q.KW * j->q.C * j->q.CO, at = (ptrdiff_t)j->q.C * j->q.ps;
    for (ptrdiff_t k = 0; k < nw + j->q.CO; k++) {
        float sum = 0;
        for (int u = 0; u < j->units; u++)
            sum += j->scratch[u * j->per + at + k];
        if (k < nw)
            dW[k] = sum;
        else
            db[k - nw] = sum;
    }
#else
    (void)j; (void)dW; (void)db; (void)g; (void)team;
#endif
}

void fnn_conv_wgrad(int level, const float *X, const float *dZ, float *dW, float *db, int n,
                    const int *g, float *scratch, fnn_team *team)
{
    conv_job j = {0};
    j.level = level, j.n = n, j.X = X, j.dZ = dZ, j.scratch = scratch;
    conv_wgrad(&j, dW, db, g, team);
}

void fnn_conv_pool_wgrad(int level, const float *X, const float *dY, const int32_t *argmax,
                         const float *Y, int act, float *dW, float *db, int n, const int *g,
                         const int *pool, float *scratch, fnn_team *team)
{
    conv_job j = {0};
    j.level = level, j.n = n, j.X = X, j.scratch = scratch;
    j.dY = dY, j.argmax_in = argmax, j.Yp = Y, j.act = act, j.pg = pool;
    conv_wgrad(&j, dW, db, g, team);
}
