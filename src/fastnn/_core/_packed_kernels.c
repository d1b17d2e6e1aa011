/* Packed-weight float32 kernels for the dense layer; see _packed_kernels.h for the layout.
 *
 * The SIMD code is compiled per function for its level (_simd.h); fnn_cpu_level picks
 * the level at run time.
 *
 * Register blocking. AVX-512 (32 zmm): 8 rows x 2 vectors of 16 floats = 16 accumulators,
 * a panel's 32 columns at once. AVX2 (16 ymm): 6 rows x 2 vectors of 8 floats = 12
 * accumulators, half a panel (16 columns) at a time. Each block is an always-inline
 * function of compile-time MR and NV, instantiated for every row tail by a switch, so
 * that the accumulators live in registers.
 */
#if !defined(_POSIX_C_SOURCE) && !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L   /* clock_gettime, pthreads under a strict -std */
#endif
#include "_packed_kernels.h"

#include <stdlib.h>
#include <string.h>

#include "_simd.h"

size_t fnn_packed_size(int n_in, int n_out)
{
    size_t panels = ((size_t)n_out + FNN_NR - 1) / FNN_NR;
    return panels * (size_t)n_in * FNN_NR;
}

void fnn_pack(const float *W, float *P, int n_in, int n_out)
{
    int panels = (n_out + FNN_NR - 1) / FNN_NR;
    for (int p = 0; p < panels; p++) {
        int c0 = p * FNN_NR, nc = n_out - c0 < FNN_NR ? n_out - c0 : FNN_NR;
        float *dst = P + (size_t)p * n_in * FNN_NR;
        for (int k = 0; k < n_in; k++) {
            const float *src = W + (size_t)k * n_out + c0;
            float *d = dst + (size_t)k * FNN_NR;
            memcpy(d, src, (size_t)nc * sizeof(float));
            if (nc < FNN_NR)
                memset(d + nc, 0, (size_t)(FNN_NR - nc) * sizeof(float));
        }
    }
}

void fnn_unpack(const float *P, float *W, int n_in, int n_out)
{
    int panels = (n_out + FNN_NR - 1) / FNN_NR;
    for (int p = 0; p < panels; p++) {
        int c0 = p * FNN_NR, nc = n_out - c0 < FNN_NR ? n_out - c0 : FNN_NR;
        const float *src = P + (size_t)p * n_in * FNN_NR;
        for (int k = 0; k < n_in; k++)
            memcpy(W + (size_t)k * n_out + c0, src + (size_t)k * FNN_NR,
                   (size_t)nc * sizeof(float));
    }
}

#ifdef FNN_X86
/* dst (16 x 16, rows ld apart) = the transpose of src (rows ls apart): pairs of rows
 * interleaved, then pairs of pairs, then 128-bit lanes across the halves. */
static T512 void transpose16(const float *src, ptrdiff_t ls, float *dst, ptrdiff_t ld)
{
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++)
        r[i] = _mm512_loadu_ps(src + i * ls);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + 4 + i], 0x88);
            t[h + 4 + i] = _mm512_shuffle_f32x4(r[h + i], r[h + 4 + i], 0xDD);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xDD);
    }
    for (int i = 0; i < 16; i++)
        _mm512_storeu_ps(dst + i * ld, r[i]);
}
#endif

typedef struct {
    const float *P;
    float *PT;
    int n_in, n_out, simd;
} transpose_job;

/* PT holds W^T (n_out x n_in) in panels over n_in: PT[q][j][c] = W[32 q + c, j]
 * = P[p][32 q + c][jj] for j = 32 p + jj, so the work is one 32 x 32 transpose per pair
 * of panels (q, p), both blocks contiguous rows of 32 (the padding columns of P are
 * zeros, and rows of PT past n_in are written as zeros). Whole blocks go through
 * AVX-512 16 x 16 transposes where the machine has them (measured for 1440 x 128: 87 us
 * one value at a time, 27 us so). A unit is one panel q of PT. */
static void transpose_unit(void *ctx, int q)
{
    const transpose_job *t = (const transpose_job *)ctx;
    int n_in = t->n_in, n_out = t->n_out, ppanels = (n_out + FNN_NR - 1) / FNN_NR;
    int nk = n_in - q * FNN_NR < FNN_NR ? n_in - q * FNN_NR : FNN_NR;
    for (int p = 0; p < ppanels; p++) {
        int nj = n_out - p * FNN_NR < FNN_NR ? n_out - p * FNN_NR : FNN_NR;
        const float *src = t->P + (size_t)p * n_in * FNN_NR + (size_t)q * FNN_NR * FNN_NR;
        float *dst = t->PT + (size_t)q * n_out * FNN_NR + (size_t)p * FNN_NR * FNN_NR;
#ifdef FNN_X86
        if (t->simd && nk == FNN_NR && nj == FNN_NR) {
            for (int j0 = 0; j0 < FNN_NR; j0 += 16)
                for (int c0 = 0; c0 < FNN_NR; c0 += 16)
                    transpose16(src + c0 * FNN_NR + j0, FNN_NR, dst + j0 * FNN_NR + c0, FNN_NR);
            continue;
        }
#endif
        for (int jj = 0; jj < nj; jj++) {
            float *row = dst + (size_t)jj * FNN_NR;
            for (int c = 0; c < nk; c++)
                row[c] = src[(size_t)c * FNN_NR + jj];
            for (int c = nk; c < FNN_NR; c++)
                row[c] = 0.0f;
        }
    }
}

void fnn_pack_transposed(const float *P, float *PT, int n_in, int n_out, fnn_team *team)
{
    transpose_job t = {P, PT, n_in, n_out, 0};
#ifdef FNN_X86
    t.simd = __builtin_cpu_supports("avx512f");
#endif
    /* A small W^T (an output layer's) is not worth waking the helper for. */
    fnn_team_for((size_t)n_in * n_out >= 65536 ? team : NULL, (n_in + FNN_NR - 1) / FNN_NR,
                 transpose_unit, &t);
}

/* ------------------------------------------------------------ portable reference */

/* In the kernels below K terms (columns of X) meet W's rows rows[0 .. K), or rows 0 .. K
 * when rows is NULL; the panels of W have n_in rows. */
static void forward_scalar(const float *X, ptrdiff_t ldx, const float *P, const float *b,
                           float *Y, ptrdiff_t ldy, int n, int K, int n_in, int n_out,
                           const int *rows, int relu)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n_out; j++) {
            const float *panel = P + (size_t)(j / FNN_NR) * n_in * FNN_NR + j % FNN_NR;
            float s = 0;
            for (int k = 0; k < K; k++)
                s += X[i * ldx + k] * panel[(size_t)(rows ? rows[k] : k) * FNN_NR];
            s += b ? b[j] : 0;
            Y[i * ldy + j] = relu ? (s < 0 ? 0 : s) : s;
        }
}

static void update_one(float *w, float *g, float a, int mode, float lr, float mu, float wd)
{
    if (mode == FNN_WG_STORE) {
        *g = a;
    } else if (mode == FNN_WG_SGD) {
        *w = *w * (1 - lr * wd) - lr * a;
    } else if (mode == FNN_WG_SGD_NO_DECAY) {
        *w -= lr * a;
    } else {
        *g = mu * *g + a + wd * *w;
        *w -= lr * *g;
    }
}

/* The update of a zero gradient on one row of W in each of its panels (P and G at the
 * row in the first panel, the panels `step` floats apart): the weight-gradient kernels'
 * update for an input that is 0 in every row of the batch (see wgrad_rest). */
static void zero_row_scalar(float *P, float *G, size_t step, int panels, int mode, float lr,
                            float mu, float wd)
{
    for (int p = 0; p < panels; p++)
        for (int c = 0; c < FNN_NR; c++)
            update_one(P + p * step + c, G + p * step + c, 0, mode, lr, mu, wd);
}

static void wgrad_scalar(const float *X, ptrdiff_t ldx, const float *dZ, ptrdiff_t ldz,
                         float *P, float *G, int n, int K, int n_in, int n_out,
                         const int *rows, int mode, float lr, float mu, float wd)
{
    for (int k = 0; k < K; k++)
        for (int j = 0; j < n_out; j++) {
            size_t at = (size_t)(j / FNN_NR) * n_in * FNN_NR
                        + (size_t)(rows ? rows[k] : k) * FNN_NR + j % FNN_NR;
            float a = 0;
            for (int i = 0; i < n; i++)
                a += X[i * ldx + k] * dZ[i * ldz + j];
            update_one(P + at, G + at, a, mode, lr, mu, wd);
        }
}

#ifdef FNN_X86

static void init_compress8(void);

int fnn_cpu_level(void)
{
    __builtin_cpu_init();
    /* __builtin_cpu_supports also checks that the OS saves the vector state (XCR0). */
    init_compress8();
    if (__builtin_cpu_supports("avx512f"))
        return FNN_LEVEL_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return FNN_LEVEL_AVX2;
    return FNN_LEVEL_BLAS;
}

/* ------------------------------------------------------------ AVX-512F */

INL T512 __mmask16 mask16(int m)
{
    return m >= 16 ? (__mmask16)0xFFFF : m <= 0 ? (__mmask16)0 : (__mmask16)((1u << m) - 1);
}

/* Y[0:MR, 0:nc] = X[0:MR, :] @ panel + b (nc <= 32 columns, NV = 1 when nc <= 16); with
 * SPARSE, K terms: X's column xc[k] meets the panel's row rows[xc[k]]. */
INL T512 void fwd512(const int MR, const int NV, const int SPARSE, const float *X,
                     ptrdiff_t ldx, const float *Pp, int K, const int *xc, const int *rows,
                     const float *b, float *Y, ptrdiff_t ldy, int nc, int relu)
{
    __m512 a0[8], a1[8];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MR; r++) {
        a0[r] = _mm512_setzero_ps();
        a1[r] = _mm512_setzero_ps();
    }
    for (int t = 0; t < K; t++) {
        const int k = SPARSE ? xc[t] : t;
        const float *w = Pp + (size_t)(SPARSE ? rows[k] : k) * FNN_NR;
        __m512 w0 = _mm512_loadu_ps(w);
        __m512 w1 = NV > 1 ? _mm512_loadu_ps(w + 16) : w0;
        _Pragma("GCC unroll 8")
        for (int r = 0; r < MR; r++) {
            __m512 x = _mm512_set1_ps(X[r * ldx + k]);
            a0[r] = _mm512_fmadd_ps(x, w0, a0[r]);
            if (NV > 1)
                a1[r] = _mm512_fmadd_ps(x, w1, a1[r]);
        }
    }
    __mmask16 m0 = mask16(nc), m1 = mask16(nc - 16);
    __m512 b0 = b ? _mm512_maskz_loadu_ps(m0, b) : _mm512_setzero_ps();
    __m512 b1 = b ? _mm512_maskz_loadu_ps(m1, b + 16) : _mm512_setzero_ps();
    __m512 zero = _mm512_setzero_ps();
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MR; r++) {
        /* max(0, y) returns y when y is NaN, as the core's ReLU does. */
        __m512 y0 = _mm512_add_ps(a0[r], b0);
        if (relu)
            y0 = _mm512_max_ps(zero, y0);
        _mm512_mask_storeu_ps(Y + r * ldy, m0, y0);
        if (NV > 1) {
            __m512 y1 = _mm512_add_ps(a1[r], b1);
            if (relu)
                y1 = _mm512_max_ps(zero, y1);
            _mm512_mask_storeu_ps(Y + r * ldy + 16, m1, y1);
        }
    }
}

#define FWD512_CASE(M)                                                                  \
    case M:                                                                             \
        if (nv == 2 && rows)                                                            \
            fwd512(M, 2, 1, Xi, ldx, Pp, terms, xc, rows, bp, Yi, ldy, nc, relu);       \
        else if (nv == 2)                                                               \
            fwd512(M, 2, 0, Xi, ldx, Pp, K, NULL, NULL, bp, Yi, ldy, nc, relu);         \
        else if (rows)                                                                  \
            fwd512(M, 1, 1, Xi, ldx, Pp, terms, xc, rows, bp, Yi, ldy, nc, relu);       \
        else                                                                            \
            fwd512(M, 1, 0, Xi, ldx, Pp, K, NULL, NULL, bp, Yi, ldy, nc, relu);         \
        break;

static T512 int nonzero512(const float *X, ptrdiff_t ldx, int MR, int K, int *idx);

static T512 void forward512(const float *X, ptrdiff_t ldx, const float *P, const float *b,
                            float *Y, ptrdiff_t ldy, int n, int K, int n_in, int n_out,
                            const int *rows, int relu)
{
    int xc[FNN_COMPACT_MAX_INPUTS + 16];
    int panels = (n_out + FNN_NR - 1) / FNN_NR;
    for (int p = 0; p < panels; p++) {
        int c0 = p * FNN_NR, nc = n_out - c0 < FNN_NR ? n_out - c0 : FNN_NR;
        int nv = nc > 16 ? 2 : 1;
        const float *Pp = P + (size_t)p * n_in * FNN_NR;
        const float *bp = b ? b + c0 : NULL;
        for (int i = 0; i < n; i += 8) {
            const float *Xi = X + i * ldx;
            float *Yi = Y + i * ldy + c0;
            /* A compacted batch: of its inputs, the ones not 0 in one of these rows. */
            int terms = rows ? nonzero512(Xi, ldx, n - i < 8 ? n - i : 8, K, xc) : K;
            switch (n - i < 8 ? n - i : 8) {
                FWD512_CASE(8) FWD512_CASE(7) FWD512_CASE(6) FWD512_CASE(5)
                FWD512_CASE(4) FWD512_CASE(3) FWD512_CASE(2) FWD512_CASE(1)
            }
        }
    }
}

/* The inputs k in [0, K) that are not 0 in one of the MR rows of X (NaN counts as not 0),
 * in increasing order, into idx (room for K + 16); returns how many. */
static T512 int nonzero512(const float *X, ptrdiff_t ldx, int MR, int K, int *idx)
{
    int cnt = 0;
    __m512i kv = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512i step = _mm512_set1_epi32(16);
    __m512 zero = _mm512_setzero_ps();
    for (int k = 0; k < K; k += 16) {
        __mmask16 lm = mask16(K - k), m = 0;
        for (int r = 0; r < MR; r++)
            m |= _mm512_mask_cmp_ps_mask(lm, _mm512_maskz_loadu_ps(lm, X + r * ldx + k), zero,
                                         _CMP_NEQ_UQ);
        /* Compress in a register, then store: a compressing store to memory is slow
         * microcode on some CPUs (AMD Zen 4). */
        _mm512_storeu_si512((void *)(idx + cnt), _mm512_maskz_compress_epi32(m, kv));
        cnt += __builtin_popcount((unsigned)m);
        kv = _mm512_add_epi32(kv, step);
    }
    return cnt;
}

#define LEVEL_SUFFIX 512
#define TGT T512
#define VEC __m512
#define VL 16
#define NV_MAX 9          /* 2 rows x 9 vectors: 18 accumulators */
#define MASK_T __mmask16
#define MASK_ALL ((__mmask16)0xFFFF)
#define MASK_AND(a, b) ((__mmask16)((a) & (b)))
#define MASK_FROM(s) ((__mmask16)(0xFFFFu << (s)))
#define MASK_OF(n) mask16(n)
#define LOADM(m, p) _mm512_maskz_loadu_ps(m, p)
#define LOADU(p) _mm512_loadu_ps(p)
#define STOREM(m, p, v) _mm512_mask_storeu_ps(p, m, v)
#define ZERO() _mm512_setzero_ps()
#define BCAST(p) _mm512_set1_ps(*(p))
#define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define ADD(a, b) _mm512_add_ps(a, b)
#define MAX(a, b) _mm512_max_ps(a, b)
#define VREG(v) "+v"(v)
#include "_rows_kernel_level.h"

INL T512 void upd512(float *w, float *g, __m512 a, int mode, __m512 nlr, __m512 keep,
                     __m512 mu, __m512 wd)
{
    if (mode == FNN_WG_STORE) {
        _mm512_storeu_ps(g, a);
    } else if (mode == FNN_WG_SGD) {
        /* w (1 - lr wd) - lr a */
        _mm512_storeu_ps(w, _mm512_fmadd_ps(a, nlr, _mm512_mul_ps(_mm512_loadu_ps(w), keep)));
    } else if (mode == FNN_WG_SGD_NO_DECAY) {
        _mm512_storeu_ps(w, _mm512_fmadd_ps(a, nlr, _mm512_loadu_ps(w)));
    } else {
        __m512 wv = _mm512_loadu_ps(w);
        __m512 v = _mm512_fmadd_ps(mu, _mm512_loadu_ps(g), _mm512_fmadd_ps(wd, wv, a));
        _mm512_storeu_ps(g, v);
        _mm512_storeu_ps(w, _mm512_fmadd_ps(v, nlr, wv));
    }
}

/* The weight-gradient kernels read a register block's values (14 with AVX-512, 6 with
 * AVX2) of each row of X in turn: where the rows lie
 * more than 2 KB apart the CPU's stride prefetcher does not follow them (it handles
 * strides up to 2 KB, says Intel's optimisation manual), so the kernels request the row
 * FNN_WG_PREFETCH_ROWS ahead themselves. A compacted batch of 256 MNIST images (557
 * inputs, 2228 bytes a row): epochs 4-5% faster; at 64 (502 inputs) it made no
 * difference (NOTES 27). Returns the row up to which to request. */
#define FNN_WG_PREFETCH_ROWS 16
static inline int wg_prefetch_until(ptrdiff_t ldx, int n)
{
    return ldx * (ptrdiff_t)sizeof(float) > 2048 ? n - FNN_WG_PREFETCH_ROWS : 0;
}

/* Rows of W per register block of the AVX-512 weight gradient: 14 x 2 vectors of
 * accumulators, 31 of the 32 registers with dZ's two vectors and a broadcast (8 measured
 * 25-30% slower, 12 2-3% slower: NOTES 27). */
#define WG512_ROWS 14

/* Rows k0 .. k0 + MR of one panel: acc = X[:, k0:k0+MR]^T dZ[:, panel], then the update.
 * X and dZ point at column k0 and at the panel's first column; Pk and Gk at row k0, or
 * at the panel's row 0 when X's column k0 + r is the panel's row rows[r] (rows not NULL). */
INL T512 void wg512(const int MR, const int NV, const float *X, ptrdiff_t ldx,
                    const float *dZ, ptrdiff_t ldz, int n, int nc, float *Pk, float *Gk,
                    const int *rows, int mode, float lr, float mu, float wd)
{
    __m512 a0[WG512_ROWS], a1[WG512_ROWS];
    __mmask16 m0 = mask16(nc), m1 = mask16(nc - 16);
    _Pragma("GCC unroll 14")
    for (int r = 0; r < MR; r++) {
        a0[r] = _mm512_setzero_ps();
        a1[r] = _mm512_setzero_ps();
    }
    int ahead = wg_prefetch_until(ldx, n);
    for (int i = 0; i < n; i++) {
        if (i < ahead)
            _mm_prefetch((const char *)(X + (i + FNN_WG_PREFETCH_ROWS) * ldx), _MM_HINT_T0);
        /* Masked loads: the padding columns get exact zeros, so padded weights stay 0. */
        __m512 d0 = _mm512_maskz_loadu_ps(m0, dZ + i * ldz);
        __m512 d1 = NV > 1 ? _mm512_maskz_loadu_ps(m1, dZ + i * ldz + 16) : d0;
        _Pragma("GCC unroll 14")
        for (int r = 0; r < MR; r++) {
            __m512 x = _mm512_set1_ps(X[i * ldx + r]);
            a0[r] = _mm512_fmadd_ps(x, d0, a0[r]);
            if (NV > 1)
                a1[r] = _mm512_fmadd_ps(x, d1, a1[r]);
        }
    }
    __m512 nlr = _mm512_set1_ps(-lr), keep = _mm512_set1_ps(1 - lr * wd);
    __m512 vmu = _mm512_set1_ps(mu), vwd = _mm512_set1_ps(wd);
    _Pragma("GCC unroll 14")
    for (int r = 0; r < MR; r++) {
        size_t at = (size_t)(rows ? rows[r] : r) * FNN_NR;
        upd512(Pk + at, Gk + at, a0[r], mode, nlr, keep, vmu, vwd);
        if (NV > 1)
            upd512(Pk + at + 16, Gk + at + 16, a1[r], mode, nlr, keep, vmu, vwd);
    }
}

static T512 void zero_row512(float *P, float *G, size_t step, int panels, int mode,
                             float lr, float mu, float wd)
{
    __m512 z = _mm512_setzero_ps(), nlr = _mm512_set1_ps(-lr);
    __m512 keep = _mm512_set1_ps(1 - lr * wd), vmu = _mm512_set1_ps(mu);
    __m512 vwd = _mm512_set1_ps(wd);
    for (int p = 0; p < panels; p++)
        for (int c = 0; c < FNN_NR; c += 16)
            upd512(P + p * step + c, G + p * step + c, z, mode, nlr, keep, vmu, vwd);
}

#define WG512_CASE(M)                                                                   \
    case M:                                                                             \
        if (nv == 2)                                                                    \
            wg512(M, 2, Xk, ldx, dZ + c0, ldz, n, nc, Pk, Gk, rk, mode, lr, mu, wd);    \
        else                                                                            \
            wg512(M, 1, Xk, ldx, dZ + c0, ldz, n, nc, Pk, Gk, rk, mode, lr, mu, wd);    \
        break;

static T512 void wgrad512(const float *X, ptrdiff_t ldx, const float *dZ, ptrdiff_t ldz,
                          float *P, float *G, int n, int K, int n_in, int n_out,
                          const int *rows, int mode, float lr, float mu, float wd)
{
    int panels = (n_out + FNN_NR - 1) / FNN_NR;
    /* k outer, so that X's columns k0 .. k0 + WG512_ROWS - 1 serve every panel (measured
     * faster than panel outer, with blocks of 8: 172 against 148 GFLOP/s at batch 256). */
    for (int k0 = 0; k0 < K; k0 += WG512_ROWS) {
        const float *Xk = X + k0;
        const int *rk = rows ? rows + k0 : NULL;
        for (int p = 0; p < panels; p++) {
            int c0 = p * FNN_NR, nc = n_out - c0 < FNN_NR ? n_out - c0 : FNN_NR;
            int nv = nc > 16 ? 2 : 1;
            size_t at = (size_t)p * n_in * FNN_NR + (rows ? 0 : (size_t)k0 * FNN_NR);
            float *Pk = P + at, *Gk = G + at;
            switch (K - k0 < WG512_ROWS ? K - k0 : WG512_ROWS) {
                WG512_CASE(14) WG512_CASE(13) WG512_CASE(12) WG512_CASE(11) WG512_CASE(10)
                WG512_CASE(9) WG512_CASE(8) WG512_CASE(7) WG512_CASE(6) WG512_CASE(5)
                WG512_CASE(4) WG512_CASE(3) WG512_CASE(2) WG512_CASE(1)
            }
        }
    }
}

/* ------------------------------------------------------------ AVX2 + FMA */

/* Half a panel (16 columns at Ph, nc <= 16 of them real; NV = 1 when nc <= 8); SPARSE
 * as in fwd512. */
INL T256 void fwd256(const int MR, const int NV, const int SPARSE, const float *X,
                     ptrdiff_t ldx, const float *Ph, int K, const int *xc, const int *rows,
                     const float *b, float *Y, ptrdiff_t ldy, int nc, int relu)
{
    __m256 a0[6], a1[6];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MR; r++) {
        a0[r] = _mm256_setzero_ps();
        a1[r] = _mm256_setzero_ps();
    }
    for (int t = 0; t < K; t++) {
        const int k = SPARSE ? xc[t] : t;
        const float *w = Ph + (size_t)(SPARSE ? rows[k] : k) * FNN_NR;
        __m256 w0 = _mm256_loadu_ps(w);
        __m256 w1 = NV > 1 ? _mm256_loadu_ps(w + 8) : w0;
        _Pragma("GCC unroll 8")
        for (int r = 0; r < MR; r++) {
            __m256 x = _mm256_broadcast_ss(X + r * ldx + k);
            a0[r] = _mm256_fmadd_ps(x, w0, a0[r]);
            if (NV > 1)
                a1[r] = _mm256_fmadd_ps(x, w1, a1[r]);
        }
    }
    __m256i m0 = fnn_mask8(nc), m1 = fnn_mask8(nc - 8);
    __m256 b0 = b ? _mm256_maskload_ps(b, m0) : _mm256_setzero_ps();
    __m256 b1 = NV > 1 && b ? _mm256_maskload_ps(b + 8, m1) : _mm256_setzero_ps();
    __m256 zero = _mm256_setzero_ps();
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MR; r++) {
        __m256 y0 = _mm256_add_ps(a0[r], b0);
        if (relu)
            y0 = _mm256_max_ps(zero, y0);
        _mm256_maskstore_ps(Y + r * ldy, m0, y0);
        if (NV > 1) {
            __m256 y1 = _mm256_add_ps(a1[r], b1);
            if (relu)
                y1 = _mm256_max_ps(zero, y1);
            _mm256_maskstore_ps(Y + r * ldy + 8, m1, y1);
        }
    }
}

#define FWD256_CASE(M)                                                                  \
    case M:                                                                             \
        if (nv == 2 && rows)                                                            \
            fwd256(M, 2, 1, Xi, ldx, Ph, terms, xc, rows, bp, Yi, ldy, nc, relu);       \
        else if (nv == 2)                                                               \
            fwd256(M, 2, 0, Xi, ldx, Ph, K, NULL, NULL, bp, Yi, ldy, nc, relu);         \
        else if (rows)                                                                  \
            fwd256(M, 1, 1, Xi, ldx, Ph, terms, xc, rows, bp, Yi, ldy, nc, relu);       \
        else                                                                            \
            fwd256(M, 1, 0, Xi, ldx, Ph, K, NULL, NULL, bp, Yi, ldy, nc, relu);         \
        break;

static T256 int nonzero256(const float *X, ptrdiff_t ldx, int MR, int K, int *idx);

static T256 void forward256(const float *X, ptrdiff_t ldx, const float *P, const float *b,
                            float *Y, ptrdiff_t ldy, int n, int K, int n_in, int n_out,
                            const int *rows, int relu)
{
    int xc[FNN_COMPACT_MAX_INPUTS + 16];
    int panels = (n_out + FNN_NR - 1) / FNN_NR;
    for (int p = 0; p < panels; p++) {
        for (int h = 0; h < 2; h++) {
            int c0 = p * FNN_NR + 16 * h;
            if (c0 >= n_out)
                break;
            int nc = n_out - c0 < 16 ? n_out - c0 : 16;
            int nv = nc > 8 ? 2 : 1;
            const float *Ph = P + (size_t)p * n_in * FNN_NR + 16 * h;
            const float *bp = b ? b + c0 : NULL;
            for (int i = 0; i < n; i += 6) {
                const float *Xi = X + i * ldx;
                float *Yi = Y + i * ldy + c0;
                int terms = rows ? nonzero256(Xi, ldx, n - i < 6 ? n - i : 6, K, xc) : K;
                switch (n - i < 6 ? n - i : 6) {
                    FWD256_CASE(6) FWD256_CASE(5) FWD256_CASE(4)
                    FWD256_CASE(3) FWD256_CASE(2) FWD256_CASE(1)
                }
            }
        }
    }
}

/* As nonzero512, for AVX2 (no compress instruction: the set bits of each 8 inputs' mask). */
static T256 int nonzero256(const float *X, ptrdiff_t ldx, int MR, int K, int *idx)
{
    int cnt = 0;
    __m256 zero = _mm256_setzero_ps();
    for (int k = 0; k < K; k += 8) {
        __m256i lm = fnn_mask8(K - k);
        unsigned m = 0;
        for (int r = 0; r < MR; r++)
            m |= (unsigned)_mm256_movemask_ps(
                _mm256_cmp_ps(_mm256_maskload_ps(X + r * ldx + k, lm), zero, _CMP_NEQ_UQ));
        for (; m != 0; m &= m - 1)
            idx[cnt++] = k + __builtin_ctz(m);
    }
    return cnt;
}

static const int fnn_mask_from_tab[16] = {0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1, -1, -1, -1, -1};

/* Lanes s..7 on (the columns from 0 on, in a vector that starts s columns before 0). */
INL T256 __m256i mask8_from(int s)
{
    s = s < 0 ? 0 : s > 8 ? 8 : s;
    return _mm256_loadu_si256((const __m256i *)(fnn_mask_from_tab + 8 - s));
}

#define LEVEL_SUFFIX 256
#define TGT T256
#define VEC __m256
#define VL 8
#define NV_MAX 6          /* 2 rows x 6 vectors: 12 accumulators */
#define MASK_T __m256i
#define MASK_ALL _mm256_set1_epi32(-1)
#define MASK_AND(a, b) _mm256_and_si256(a, b)
#define MASK_FROM(s) mask8_from(s)
#define MASK_OF(n) fnn_mask8(n)
#define LOADM(m, p) _mm256_maskload_ps(p, m)
#define LOADU(p) _mm256_loadu_ps(p)
#define STOREM(m, p, v) _mm256_maskstore_ps(p, m, v)
#define ZERO() _mm256_setzero_ps()
#define BCAST(p) _mm256_broadcast_ss(p)
#define FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define ADD(a, b) _mm256_add_ps(a, b)
#define MAX(a, b) _mm256_max_ps(a, b)
#define VREG(v) "+x"(v)
#include "_rows_kernel_level.h"

INL T256 void upd256(float *w, float *g, __m256 a, int mode, __m256 nlr, __m256 keep,
                     __m256 mu, __m256 wd)
{
    if (mode == FNN_WG_STORE) {
        _mm256_storeu_ps(g, a);
    } else if (mode == FNN_WG_SGD) {
        _mm256_storeu_ps(w, _mm256_fmadd_ps(a, nlr, _mm256_mul_ps(_mm256_loadu_ps(w), keep)));
    } else if (mode == FNN_WG_SGD_NO_DECAY) {
        _mm256_storeu_ps(w, _mm256_fmadd_ps(a, nlr, _mm256_loadu_ps(w)));
    } else {
        __m256 wv = _mm256_loadu_ps(w);
        __m256 v = _mm256_fmadd_ps(mu, _mm256_loadu_ps(g), _mm256_fmadd_ps(wd, wv, a));
        _mm256_storeu_ps(g, v);
        _mm256_storeu_ps(w, _mm256_fmadd_ps(v, nlr, wv));
    }
}

INL T256 void wg256(const int MR, const int NV, const float *X, ptrdiff_t ldx,
                    const float *dZ, ptrdiff_t ldz, int n, int nc, float *Pk, float *Gk,
                    const int *rows, int mode, float lr, float mu, float wd)
{
    __m256 a0[6], a1[6];
    __m256i m0 = fnn_mask8(nc), m1 = fnn_mask8(nc - 8);
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MR; r++) {
        a0[r] = _mm256_setzero_ps();
        a1[r] = _mm256_setzero_ps();
    }
    int ahead = wg_prefetch_until(ldx, n);
    for (int i = 0; i < n; i++) {
        if (i < ahead)
            _mm_prefetch((const char *)(X + (i + FNN_WG_PREFETCH_ROWS) * ldx), _MM_HINT_T0);
        __m256 d0 = _mm256_maskload_ps(dZ + i * ldz, m0);
        __m256 d1 = NV > 1 ? _mm256_maskload_ps(dZ + i * ldz + 8, m1) : d0;
        _Pragma("GCC unroll 8")
        for (int r = 0; r < MR; r++) {
            __m256 x = _mm256_broadcast_ss(X + i * ldx + r);
            a0[r] = _mm256_fmadd_ps(x, d0, a0[r]);
            if (NV > 1)
                a1[r] = _mm256_fmadd_ps(x, d1, a1[r]);
        }
    }
    __m256 nlr = _mm256_set1_ps(-lr), keep = _mm256_set1_ps(1 - lr * wd);
    __m256 vmu = _mm256_set1_ps(mu), vwd = _mm256_set1_ps(wd);
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MR; r++) {
        size_t at = (size_t)(rows ? rows[r] : r) * FNN_NR;
        upd256(Pk + at, Gk + at, a0[r], mode, nlr, keep, vmu, vwd);
        if (NV > 1)
            upd256(Pk + at + 8, Gk + at + 8, a1[r], mode, nlr, keep, vmu, vwd);
    }
}

static T256 void zero_row256(float *P, float *G, size_t step, int panels, int mode,
                             float lr, float mu, float wd)
{
    __m256 z = _mm256_setzero_ps(), nlr = _mm256_set1_ps(-lr);
    __m256 keep = _mm256_set1_ps(1 - lr * wd), vmu = _mm256_set1_ps(mu);
    __m256 vwd = _mm256_set1_ps(wd);
    for (int p = 0; p < panels; p++)
        for (int c = 0; c < FNN_NR; c += 8)
            upd256(P + p * step + c, G + p * step + c, z, mode, nlr, keep, vmu, vwd);
}

#define WG256_CASE(M)                                                                   \
    case M:                                                                             \
        if (nv == 2)                                                                    \
            wg256(M, 2, Xk, ldx, dZ + c0, ldz, n, nc, Pk, Gk, rk, mode, lr, mu, wd);    \
        else                                                                            \
            wg256(M, 1, Xk, ldx, dZ + c0, ldz, n, nc, Pk, Gk, rk, mode, lr, mu, wd);    \
        break;

static T256 void wgrad256(const float *X, ptrdiff_t ldx, const float *dZ, ptrdiff_t ldz,
                          float *P, float *G, int n, int K, int n_in, int n_out,
                          const int *rows, int mode, float lr, float mu, float wd)
{
    int panels = (n_out + FNN_NR - 1) / FNN_NR;
    for (int k0 = 0; k0 < K; k0 += 6) {
        const float *Xk = X + k0;
        const int *rk = rows ? rows + k0 : NULL;
        for (int p = 0; p < panels; p++) {
            for (int h = 0; h < 2; h++) {
                int c0 = p * FNN_NR + 16 * h;
                if (c0 >= n_out)
                    break;
                int nc = n_out - c0 < 16 ? n_out - c0 : 16;
                int nv = nc > 8 ? 2 : 1;
                size_t at = (size_t)p * n_in * FNN_NR + (rows ? 0 : (size_t)k0 * FNN_NR)
                            + 16 * h;
                float *Pk = P + at, *Gk = G + at;
                switch (K - k0 < 6 ? K - k0 : 6) {
                    WG256_CASE(6) WG256_CASE(5) WG256_CASE(4)
                    WG256_CASE(3) WG256_CASE(2) WG256_CASE(1)
                }
            }
        }
    }
}

/* ------------------------------------------------------------ the uint8 gather */

/* The rest of the core is built for baseline x86-64 (SSE2), where the uint8 -> float
 * conversion of the batch gather runs 4 values at a time; these run 16 or 8.
 * The rows are scattered over the data set, each a few cache lines that the hardware
 * prefetcher only finds after the first misses: the row FNN_GATHER_AHEAD ahead is
 * requested while this one is converted. */
#ifndef FNN_GATHER_AHEAD
#define FNN_GATHER_AHEAD 2
#endif

static void prefetch_row(const uint8_t *row, ptrdiff_t d)
{
    for (ptrdiff_t j = 0; j < d; j += 64)
        _mm_prefetch((const char *)(row + j), _MM_HINT_T0);
    _mm_prefetch((const char *)(row + d - 1), _MM_HINT_T0);
}

static T512 void gather512(const uint8_t *X, ptrdiff_t d, const ptrdiff_t *rows, int nb,
                           float *out, float scale, const fnn_active *in)
{
    __m512 s = _mm512_set1_ps(scale);
    for (int i = 0; in != NULL && i < nb; i++) {
        /* Each group of 16 inputs converted, its batch's inputs compressed together. */
        const uint8_t *src = X + rows[i] * d;
        float *dst = out + (ptrdiff_t)i * in->n;
        if (i + FNN_GATHER_AHEAD < nb)
            prefetch_row(X + rows[i + FNN_GATHER_AHEAD] * d, d);
        int q = 0;
        ptrdiff_t j = 0;
        for (; j + 16 <= d; j += 16) {
            __mmask16 m = in->mask[j / 16];
            if (m == 0)
                continue;
            __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(src + j)));
            __m512 x = _mm512_mul_ps(_mm512_cvtepi32_ps(v), s);
            int c = __builtin_popcount((unsigned)m);
            _mm512_mask_storeu_ps(dst + q, mask16(c), _mm512_maskz_compress_ps(m, x));
            q += c;
        }
        for (; j < d; j++)
            if (in->mask[j / 16] >> (j % 16) & 1)
                dst[q++] = (float)src[j] * scale;
    }
    for (int i = 0; in == NULL && i < nb; i++) {
        const uint8_t *src = X + rows[i] * d;
        float *dst = out + (ptrdiff_t)i * d;
        if (i + FNN_GATHER_AHEAD < nb)
            prefetch_row(X + rows[i + FNN_GATHER_AHEAD] * d, d);
        ptrdiff_t j = 0;
        for (; j + 16 <= d; j += 16) {
            __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(src + j)));
            _mm512_storeu_ps(dst + j, _mm512_mul_ps(_mm512_cvtepi32_ps(v), s));
        }
        for (; j < d; j++)
            dst[j] = (float)src[j] * scale;
    }
}

/* compress8[m]: the lanes of m's set bits, in order (an AVX2 compress by a permute). */
static int32_t compress8[256][8];

static void init_compress8(void)
{
    for (int m = 0; m < 256; m++) {
        int q = 0;
        for (int c = 0; c < 8; c++)
            if (m >> c & 1)
                compress8[m][q++] = c;
        while (q < 8)
            compress8[m][q++] = 0;
    }
}

static T256 void gather256(const uint8_t *X, ptrdiff_t d, const ptrdiff_t *rows, int nb,
                           float *out, float scale, const fnn_active *in)
{
    __m256 s = _mm256_set1_ps(scale);
    for (int i = 0; in != NULL && i < nb; i++) {
        const uint8_t *src = X + rows[i] * d;
        float *dst = out + (ptrdiff_t)i * in->n;
        if (i + FNN_GATHER_AHEAD < nb)
            prefetch_row(X + rows[i + FNN_GATHER_AHEAD] * d, d);
        int q = 0;
        ptrdiff_t j = 0;
        for (; j + 8 <= d; j += 8) {
            unsigned m = (unsigned)in->mask[j / 16] >> (j % 16) & 0xFF;
            if (m == 0)
                continue;
            __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(src + j)));
            __m256 x = _mm256_mul_ps(_mm256_cvtepi32_ps(v), s);
            __m256i perm = _mm256_loadu_si256((const __m256i *)compress8[m]);
            int c = __builtin_popcount(m);
            _mm256_maskstore_ps(dst + q, fnn_mask8(c), _mm256_permutevar8x32_ps(x, perm));
            q += c;
        }
        for (; j < d; j++)
            if (in->mask[j / 16] >> (j % 16) & 1)
                dst[q++] = (float)src[j] * scale;
    }
    for (int i = 0; in == NULL && i < nb; i++) {
        const uint8_t *src = X + rows[i] * d;
        float *dst = out + (ptrdiff_t)i * d;
        if (i + FNN_GATHER_AHEAD < nb)
            prefetch_row(X + rows[i + FNN_GATHER_AHEAD] * d, d);
        ptrdiff_t j = 0;
        for (; j + 8 <= d; j += 8) {
            __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(src + j)));
            _mm256_storeu_ps(dst + j, _mm256_mul_ps(_mm256_cvtepi32_ps(v), s));
        }
        for (; j < d; j++)
            dst[j] = (float)src[j] * scale;
    }
}

#else /* not x86-64 with GCC or Clang: the portable loops only */

int fnn_cpu_level(void) { return FNN_LEVEL_BLAS; }

#endif

/* K terms, X's column k meeting W's row rows[k] (rows NULL: row k); W has n_in rows. */
static void forward_one(int level, const float *X, ptrdiff_t ldx, const float *P,
                        const float *b, float *Y, ptrdiff_t ldy, int n, int K, int n_in,
                        int n_out, const int *rows, int relu)
{
#ifdef FNN_X86
    if (level == FNN_LEVEL_AVX512) {
        forward512(X, ldx, P, b, Y, ldy, n, K, n_in, n_out, rows, relu);
        return;
    }
    if (level == FNN_LEVEL_AVX2) {
        forward256(X, ldx, P, b, Y, ldy, n, K, n_in, n_out, rows, relu);
        return;
    }
#endif
    (void)level;
    forward_scalar(X, ldx, P, b, Y, ldy, n, K, n_in, n_out, rows, relu);
}

static void rows_forward_scalar(const float *X, ptrdiff_t ldx, const float *W, ptrdiff_t ldw,
                                const float *b, float *Y, ptrdiff_t ldy, int n, int n_in,
                                int n_out, int relu)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n_out; j++) {
            float s = 0;
            for (int k = 0; k < n_in; k++)
                if (X[i * ldx + k] != 0)
                    s += X[i * ldx + k] * W[(size_t)k * ldw + j];
            s += b ? b[j] : 0;
            Y[i * ldy + j] = relu ? (s < 0 ? 0 : s) : s;
        }
}

void fnn_rows_forward(int level, const float *X, ptrdiff_t ldx, const float *W, ptrdiff_t ldw,
                      const float *b, float *Y, ptrdiff_t ldy, int n, int n_in, int n_out,
                      int relu)
{
#ifdef FNN_X86
    if (level == FNN_LEVEL_AVX512 || level == FNN_LEVEL_AVX2) {
        /* The list of inputs that are not 0: on the stack for the usual sizes. */
        int stack_idx[4096 + 16];
        int *idx = n_in <= 4096 ? stack_idx : (int *)malloc(((size_t)n_in + 16) * sizeof(int));
        if (idx != NULL) {
            if (level == FNN_LEVEL_AVX512)
                rows_forward512(X, ldx, W, ldw, b, Y, ldy, n, n_in, n_out, relu, idx);
            else
                rows_forward256(X, ldx, W, ldw, b, Y, ldy, n, n_in, n_out, relu, idx);
            if (idx != stack_idx)
                free(idx);
            return;
        }
    }
#endif
    (void)level;
    rows_forward_scalar(X, ldx, W, ldw, b, Y, ldy, n, n_in, n_out, relu);
}

/* The rows k in [lo, hi) of W other than skip[0 .. m) (increasing, inside [lo, hi)) get
 * the update of a zero gradient, in every panel. */
static void wgrad_rest(int level, float *P, float *G, int n_in, int n_out, int lo, int hi,
                       const int *skip, int m, int mode, float lr, float mu, float wd)
{
    int panels = (n_out + FNN_NR - 1) / FNN_NR, q = 0;
    size_t step = (size_t)n_in * FNN_NR;
    for (int k = lo; k < hi; k++) {
        if (q < m && skip[q] == k) {
            q++;
            continue;
        }
        float *Pk = P + (size_t)k * FNN_NR, *Gk = G + (size_t)k * FNN_NR;
#ifdef FNN_X86
        if (level == FNN_LEVEL_AVX512) {
            zero_row512(Pk, Gk, step, panels, mode, lr, mu, wd);
            continue;
        }
        if (level == FNN_LEVEL_AVX2) {
            zero_row256(Pk, Gk, step, panels, mode, lr, mu, wd);
            continue;
        }
#endif
        (void)level;
        zero_row_scalar(Pk, Gk, step, panels, mode, lr, mu, wd);
    }
}

/* As forward_one; then, with rows, the rows of W in [lo, hi) not among rows[0 .. K) get
 * the update of a zero gradient (rows[0 .. K) are the ones in [lo, hi)). */
static void wgrad_one(int level, const float *X, ptrdiff_t ldx, const float *dZ, ptrdiff_t ldz,
                      float *P, float *G, int n, int K, int n_in, int n_out, const int *rows,
                      int lo, int hi, int mode, float lr, float mu, float wd)
{
#ifdef FNN_X86
    if (level == FNN_LEVEL_AVX512)
        wgrad512(X, ldx, dZ, ldz, P, G, n, K, n_in, n_out, rows, mode, lr, mu, wd);
    else if (level == FNN_LEVEL_AVX2)
        wgrad256(X, ldx, dZ, ldz, P, G, n, K, n_in, n_out, rows, mode, lr, mu, wd);
    else
#endif
        wgrad_scalar(X, ldx, dZ, ldz, P, G, n, K, n_in, n_out, rows, mode, lr, mu, wd);
    if (rows != NULL && mode != FNN_WG_SGD_NO_DECAY && hi - lo > K)
        wgrad_rest(level, P, G, n_in, n_out, lo, hi, rows, K, mode, lr, mu, wd);
}

void fnn_prefetch_rows(const uint8_t *X, ptrdiff_t d, const ptrdiff_t *rows, int nb)
{
#ifdef FNN_X86
    for (int i = 0; i < nb; i++) {
        const uint8_t *row = X + rows[i] * d;
        for (ptrdiff_t j = 0; j < d; j += 64)
            _mm_prefetch((const char *)(row + j), _MM_HINT_T1);
        _mm_prefetch((const char *)(row + d - 1), _MM_HINT_T1);
    }
#else
    (void)X, (void)d, (void)rows, (void)nb;
#endif
}

int fnn_batch_inputs(int level, const uint8_t *X, ptrdiff_t d, const ptrdiff_t *rows, int nb,
                     fnn_active *act)
{
    /* OR of the rows, in the room of cols (4 (d + 16) bytes); cols are made from the
     * masks once these are all made. */
    uint8_t *any = (uint8_t *)act->cols;
    (void)level;
    memset(any, 0, (size_t)d);
    for (int i = 0; i < nb; i++) {
        const uint8_t *src = X + rows[i] * d;
        ptrdiff_t j = 0;
#ifdef FNN_X86
        if (i + FNN_GATHER_AHEAD < nb)
            prefetch_row(X + rows[i + FNN_GATHER_AHEAD] * d, d);
        for (; j + 16 <= d; j += 16) {
            __m128i a = _mm_loadu_si128((const __m128i *)(any + j));
            a = _mm_or_si128(a, _mm_loadu_si128((const __m128i *)(src + j)));
            _mm_storeu_si128((__m128i *)(any + j), a);
        }
#endif
        for (; j < d; j++)
            any[j] |= src[j];
    }
    for (ptrdiff_t g = 0; g < (d + 15) / 16; g++) {
        unsigned m = 0;
        for (int c = 0; c < 16 && 16 * g + c < d; c++)
            m |= (unsigned)(any[16 * g + c] != 0) << c;
        act->mask[g] = (uint16_t)m;
    }
    int n = 0;
    for (ptrdiff_t g = 0; g < (d + 15) / 16; g++)
        for (unsigned m = act->mask[g]; m != 0; m &= m - 1)
            act->cols[n++] = (int)(16 * g) + __builtin_ctz(m);
    act->n = n;
    return n;
}

static void gather_rows(int level, const uint8_t *X, ptrdiff_t d, const ptrdiff_t *rows,
                        int nb, float *out, float scale, const fnn_active *in)
{
#ifdef FNN_X86
    if (level == FNN_LEVEL_AVX512) {
        gather512(X, d, rows, nb, out, scale, in);
        return;
    }
    if (level == FNN_LEVEL_AVX2) {
        gather256(X, d, rows, nb, out, scale, in);
        return;
    }
#endif
    (void)level;
    for (int i = 0; in == NULL && i < nb; i++)
        for (ptrdiff_t j = 0; j < d; j++)
            out[(ptrdiff_t)i * d + j] = (float)X[rows[i] * d + j] * scale;
    for (int i = 0; in != NULL && i < nb; i++)
        for (int q = 0; q < in->n; q++)
            out[(ptrdiff_t)i * in->n + q] = (float)X[rows[i] * d + in->cols[q]] * scale;
}

typedef struct {
    int level, nb, per;
    const uint8_t *X;
    ptrdiff_t d;
    const ptrdiff_t *rows;
    float *out;
    float scale;
    const fnn_active *in;
} gather_job;

static void gather_unit(void *ctx, int u)
{
    const gather_job *g = (const gather_job *)ctx;
    int i0 = u * g->per, i1 = i0 + g->per < g->nb ? i0 + g->per : g->nb;
    ptrdiff_t ld = g->in != NULL ? g->in->n : g->d;
    gather_rows(g->level, g->X, g->d, g->rows + i0, i1 - i0, g->out + (ptrdiff_t)i0 * ld,
                g->scale, g->in);
}

/* Rows per unit of a shared gather, and the values below which one thread gathers all:
 * a batch of 16 MNIST images (12,544 values, a few microseconds) costs about what
 * waking the helper does. */
#define FNN_GATHER_ROWS 16
#define FNN_GATHER_MIN_VALUES 16384

void fnn_gather_u8(int level, const uint8_t *X, ptrdiff_t d, const ptrdiff_t *rows, int nb,
                   float *out, float scale, const fnn_active *in, fnn_team *team)
{
    if (team == NULL || (double)nb * d < FNN_GATHER_MIN_VALUES || nb < 2 * FNN_GATHER_ROWS) {
        gather_rows(level, X, d, rows, nb, out, scale, in);
        return;
    }
    gather_job g = {level, nb, FNN_GATHER_ROWS, X, d, rows, out, scale, in};
    fnn_team_for(team, (nb + FNN_GATHER_ROWS - 1) / FNN_GATHER_ROWS, gather_unit, &g);
}

/* ------------------------------------------------------------ the core's own threads
 *
 * A team is the calling thread plus one helper thread, made for one chunk of batches
 * (fnn_team_start) and ended with it (fnn_team_stop). A product is cut into units: a
 * panel times a range of rows (forward) or of k (weight gradient); each unit is the
 * same product on a sub-matrix (a panel is itself a packed matrix), so the results do
 * not depend on who computes what. Units are claimed one at a time, by the caller too
 * (from the front of the list; the helper from the back, see run_units): a helper that
 * is slow to wake (or not scheduled, on a busy machine) only leaves more units to the
 * caller, instead of stalling it at a barrier. Between products the helper spins for
 * FNN_SPIN_SECONDS, then sleeps on a condition variable.
 */
#if defined(FNN_X86) && !defined(_WIN32)
#define FNN_TEAM 1
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#define FNN_SPIN_SECONDS 50e-6
/* A wait this long for the helper's last units means it lost its CPU (another process
 * took it): the caller then works alone, for FNN_RETRY_SECONDS at first, twice as long
 * after each such give-up of the chunk. One such stall now and then, instead of one per
 * product, and the thread chooser sees the chunk's pace; and a competitor that only
 * passes (another library's threads spinning down after their work: PyTorch's, for
 * some milliseconds) no longer costs the whole chunk its helper (NOTES 25). */
#define FNN_GIVE_UP_SECONDS 500e-6
#define FNN_RETRY_SECONDS 2e-3
/* Shorter stalls, over and over, mean the same on small products (a batch of 16: some
 * 10 us each): a helper that takes no unit of a product (it was not running when the
 * product began: waking it cost the caller a system call), or keeps the caller waiting
 * longer than the caller worked (and FNN_LATE_SLACK_SECONDS more), on FNN_LATE_PRODUCTS
 * products in a row has lost its CPU part of the time, and sharing costs the caller more
 * than it gains (NOTES 23): the rest of the chunk runs on the caller (retries measured
 * 1.3-1.7x slower next to two CPU-bound competitors, NOTES 25). */
#define FNN_LATE_SLACK_SECONDS 10e-6
#define FNN_LATE_PRODUCTS 8
/* Multiply-adds below which one thread does a product alone (NOTES 14, 23): lower for a
 * product on the batch input that each thread has its own copy of (fnn_team_input),
 * where a unit reads nothing the other core wrote but its share of dZ. */
#define FNN_TEAM_MIN_WORK 4e6
#define FNN_TEAM_MIN_WORK_OWN_INPUT 1e6
/* Batches below this many rows are cut into one unit per panel only, not also into two
 * parts of rows (forward) or of terms (weight gradient): at batch 16 a part's unit is
 * 1.4-2 us, and its own start (the forward's term lists, the weight gradient's update
 * pass) made the epoch 10% slower on 2 threads (NOTES 27). */
#define FNN_TEAM_PARTS_MIN_ROWS 32

typedef struct {
    int kind;                 /* 0 forward, 1 weight gradient, 2 fn(ctx, unit) */
    int gather;               /* forward: its last unit first gathers the helper's copy of X */
    int level, n, n_in, n_out, relu, mode, parts, units;
    const float *X, *dZ, *b;
    float *P, *G, *Y;
    fnn_act_fn act_fn;        /* forward: the activation of each unit's outputs, or NULL */
    int act;
    const fnn_active *in;     /* X is a compacted batch of these inputs, or NULL */
    fnn_unit_fn fn;
    void *ctx;
    ptrdiff_t ldx, ldz, ldy;
    float lr, mu, wd;
} fnn_job;

/* A batch gather of fnn_team_input: out[0] is the caller's, out[1] the helper's copy. */
typedef struct {
    int level, nb;
    const uint8_t *X;
    ptrdiff_t d;
    const ptrdiff_t *rows;
    float *out[2];
    float scale;
    const fnn_active *in;
    const ptrdiff_t *next;
    int n_next;
} input_job;

static void input_unit(void *ctx, int u)
{
    const input_job *g = (const input_job *)ctx;
    gather_rows(g->level, g->X, g->d, g->rows, g->nb, g->out[u], g->scale, g->in);
    fnn_prefetch_rows(g->X, g->d, g->next, g->n_next);
}

struct fnn_team {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    fnn_job job;
    atomic_llong next;        /* (generation << 32) | (front << 16) | back: units left */
    atomic_int done;          /* units of the current job finished */
    atomic_int gen, quit, sleeping;
    int given_up;             /* the caller works alone, until retry_at */
    double retry_at, backoff;
    int late;                 /* products in a row on which the helper was late */
    /* A job the caller posted and went on from (fnn_team_batch_inputs): finished, by
     * the helper or else the caller, before any other job is posted (team_settle). */
    int pending;
    double posted_at;
    struct {
        int level, nb;
        const uint8_t *X;
        ptrdiff_t d;
        const ptrdiff_t *rows;
        fnn_active *act;
    } inputs;
    /* The batch input as the caller gathered it (fnn_team_input), and the helper's own
     * copy of it: the units the helper runs of a dense product on in_x read the copy. */
    const float *in_x;
    ptrdiff_t in_ld;
    float *copy;
    size_t copy_cap;
    int copy_ok;
    /* The batch gather fnn_team_input left to the forward product on it (gathered when
     * that product starts: see fnn_job.gather), and whether the helper's copy holds
     * this batch (the helper's units read out otherwise). */
    input_job input;
    int input_pending, copy_fresh;
};

static void team_settle(fnn_team *t);

static double fnn_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Unit u of job j, run by the caller (t NULL) or by the helper of team t. */
static void run_unit(const fnn_job *j, int u, fnn_team *t)
{
    if (j->kind == 2) {
        j->fn(j->ctx, u);
        return;
    }
    if (j->gather && u == j->units - 1) {
        /* The helper's copy of the batch input, the first unit it claims; the caller has
         * gathered its own, and leaves the copy stale if it gets here first. */
        if (t != NULL) {
            input_unit(&t->input, 1);
            t->copy_fresh = 1;
        }
        return;
    }
    const float *X = j->X;
    if (t != NULL && t->copy_ok && t->copy_fresh && X == t->in_x && j->ldx == t->in_ld)
        X = t->copy;
    int p = u / j->parts, part = u % j->parts;
    int c0 = p * FNN_NR, nc = j->n_out - c0 < FNN_NR ? j->n_out - c0 : FNN_NR;
    const float *Pp = j->P + (size_t)p * j->n_in * FNN_NR;
    int block = j->level == FNN_LEVEL_AVX512 ? 8 : 6;
    int K = j->in != NULL ? j->in->n : j->n_in;
    const int *cols = j->in != NULL ? j->in->cols : NULL;
    if (j->kind == 0) {
        int blocks = (j->n + block - 1) / block;
        int i0 = part * blocks / j->parts * block, i1 = (part + 1) * blocks / j->parts * block;
        if (i1 > j->n)
            i1 = j->n;
        if (i0 < i1)
            forward_one(j->level, X + i0 * j->ldx, j->ldx, Pp, j->b ? j->b + c0 : NULL,
                        j->Y + i0 * j->ldy + c0, j->ldy, i1 - i0, K, j->n_in, nc, cols,
                        j->relu);
        for (int i = i0; j->act_fn != NULL && i < i1; i++)
            j->act_fn(j->act, j->Y + i * j->ldy + c0, nc);
    } else {
        /* Part of the terms: k0 .. k1 of X's columns; with a compacted X, the rows of W
         * from the first one's (0 for the first part) to the next part's first one's. */
        block = j->level == FNN_LEVEL_AVX512 ? WG512_ROWS : 6;   /* the kernel's rows of W */
        int blocks = (K + block - 1) / block;
        int k0 = part * blocks / j->parts * block, k1 = (part + 1) * blocks / j->parts * block;
        if (k1 > K)
            k1 = K;
        if (k0 > K)
            k0 = K;
        size_t at = (size_t)p * j->n_in * FNN_NR + (cols ? 0 : (size_t)k0 * FNN_NR);
        int lo = part == 0 || cols == NULL ? 0 : k0 < K ? cols[k0] : j->n_in;
        int hi = part == j->parts - 1 || cols == NULL ? j->n_in : k1 < K ? cols[k1] : j->n_in;
        if (k0 < k1 || lo < hi)
            wgrad_one(j->level, X + k0, j->ldx, j->dZ + c0, j->ldz, j->P + at, j->G + at,
                      j->n, k1 - k0, j->n_in, nc, cols ? cols + k0 : NULL, lo, hi, j->mode,
                      j->lr, j->mu, j->wd);
    }
}

/* Claim and run units of generation g until none is left: the caller from the front
 * of the list, the helper from the back. With a fixed cut into units each thread so
 * keeps the same part of every product from batch to batch (the same panels of W in
 * the forward and the weight gradient), and the panels stay in its own cache instead
 * of crossing between the cores' caches twice a batch. */
static int run_units(fnn_team *t, long g, int from_back)
{
    for (int ran = 0;; ran++) {
        long long cur = atomic_load(&t->next);
        int front = (int)((cur >> 16) & 0xFFFF), back = (int)(cur & 0xFFFF);
        if ((cur >> 32) != g || front >= back)
            return ran;
        long long claimed = from_back ? cur - 1 : cur + (1 << 16);
        if (!atomic_compare_exchange_weak(&t->next, &cur, claimed)) {
            ran--;
            continue;
        }
        run_unit(&t->job, from_back ? back - 1 : front, from_back ? t : NULL);
        atomic_fetch_add(&t->done, 1);
    }
}

static void *helper_main(void *arg)
{
    fnn_team *t = (fnn_team *)arg;
    int seen = 0;
#ifdef FNN_X86
    /* As the chunk's own thread (Workspace.train): subnormals flushed to zero,
       so that both threads compute alike and neither slows down on them. */
    _mm_setcsr(_mm_getcsr() | 0x8040);
#endif
    for (;;) {
        double until = fnn_now() + FNN_SPIN_SECONDS;
        int spins = 0;
        while (atomic_load(&t->gen) == seen && !atomic_load(&t->quit)) {
            _mm_pause();
            if (++spins % 64 || fnn_now() < until)
                continue;
            pthread_mutex_lock(&t->lock);
            atomic_store(&t->sleeping, 1);
            while (atomic_load(&t->gen) == seen && !atomic_load(&t->quit))
                pthread_cond_wait(&t->wake, &t->lock);
            atomic_store(&t->sleeping, 0);
            pthread_mutex_unlock(&t->lock);
        }
        if (atomic_load(&t->quit))
            return NULL;
        seen = atomic_load(&t->gen);
        (void)run_units(t, seen, 1);
    }
}

fnn_team *fnn_team_start(void)
{
    fnn_team *t = (fnn_team *)calloc(1, sizeof(fnn_team));
    if (t == NULL)
        return NULL;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->wake, NULL);
    if (pthread_create(&t->thread, NULL, helper_main, t) != 0) {
        pthread_mutex_destroy(&t->lock);
        pthread_cond_destroy(&t->wake);
        free(t);
        return NULL;
    }
    return t;
}

void fnn_team_stop(fnn_team *t)
{
    if (t == NULL)
        return;
    team_settle(t);
    pthread_mutex_lock(&t->lock);
    atomic_store(&t->quit, 1);
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->wake);
    free(t->copy);
    free(t);
}

/* Make job the team's current one (its units claimable) and wake the helper. */
static void team_post(fnn_team *t, const fnn_job *job)
{
    int g = atomic_load_explicit(&t->gen, memory_order_relaxed) + 1;
    t->job = *job;
    /* Plain stores (release: no fence on x86); the store of gen after them is the one
     * full barrier, which the check of sleeping below needs (against a lost wake-up). */
    atomic_store_explicit(&t->done, 0, memory_order_release);
    atomic_store_explicit(&t->next, ((long long)g << 32) | job->units, memory_order_release);
    atomic_store(&t->gen, g);
    if (atomic_load(&t->sleeping)) {
        pthread_mutex_lock(&t->lock);
        pthread_cond_signal(&t->wake);
        pthread_mutex_unlock(&t->lock);
    }
}

/* Run the current job's units the helper has not taken, wait for the helper's, and judge
 * from the wait whether the helper has lost its CPU (see FNN_GIVE_UP_SECONDS and
 * FNN_LATE_PRODUCTS). began: when the caller could first have started on the job. */
static void team_finish(fnn_team *t, double began)
{
    int units = t->job.units;
    int alone = run_units(t, atomic_load(&t->gen), 0) == units;
    /* Wait for the units the helper took; spin briefly, then give the CPU away, so a
     * helper sharing this CPU (a busy machine) can finish. */
    double start = fnn_now(), until = start + FNN_SPIN_SECONDS;
    int spins = 0;
    while (atomic_load(&t->done) < units) {
        _mm_pause();
        if (++spins % 64 == 0 && fnn_now() > until)
            sched_yield();
    }
    double now = fnn_now(), waited = now - start;
    if (spins >= 64 && waited > FNN_GIVE_UP_SECONDS) {
        t->backoff = t->backoff > 0 ? 2 * t->backoff : FNN_RETRY_SECONDS;
        t->given_up = 1, t->retry_at = now + t->backoff, t->late = 0;
    } else if (alone || waited > start - began + FNN_LATE_SLACK_SECONDS) {
        if (++t->late >= FNN_LATE_PRODUCTS)
            t->given_up = 1, t->retry_at = INFINITY;
    } else {
        t->late = 0;
    }
}

/* Finish the posted job the caller went on from, if any. */
static void team_settle(fnn_team *t)
{
    if (t->pending) {
        t->pending = 0;
        team_finish(t, t->posted_at);
    }
}

/* The batch gather fnn_team_input left pending, done now by the caller alone (into out;
 * the helper's copy stays stale), for a product that is not shared after all. */
static void team_gather_here(fnn_team *t)
{
    if (t != NULL && t->input_pending) {
        t->input_pending = 0;
        input_unit(&t->input, 0);
    }
}

static void team_run(fnn_team *t, const fnn_job *job)
{
    team_settle(t);
    if (!job->gather)
        team_gather_here(t);
    if (job->units > 0xFFFF) {   /* more than the claim word counts: all on the caller */
        for (int u = 0; u < job->units; u++)
            run_unit(job, u, NULL);
        return;
    }
    team_post(t, job);
    if (job->gather) {           /* the caller's own copy, while the helper gathers its */
        t->input_pending = 0;
        input_unit(&t->input, 0);
    }
    team_finish(t, fnn_now());
}

/* Whether the caller works alone now (the helper given up, and not yet to be retried). */
static int team_alone(fnn_team *t)
{
    if (t->given_up && fnn_now() >= t->retry_at)
        t->given_up = 0;
    return t->given_up;
}

/* Whether to share a product of n x n_in by n_in x n_out on X with the helper (X NULL:
 * on the batch input that fnn_team_input is about to gather). */
static int team_worth(fnn_team *t, int level, int n, int n_in, int n_out, const float *X)
{
    if (t == NULL || level == FNN_LEVEL_BLAS || n_out <= 16 || team_alone(t))
        return 0;
    int own = X == NULL || (t->copy_ok && X == t->in_x);
    return (double)n * n_in * n_out >= (own ? FNN_TEAM_MIN_WORK_OWN_INPUT : FNN_TEAM_MIN_WORK);
}

void fnn_team_input(fnn_team *t, int level, const uint8_t *X, ptrdiff_t d,
                    const ptrdiff_t *rows, int nb, float *out, float scale,
                    const fnn_active *in, int n_out, const ptrdiff_t *next, int n_next)
{
    size_t need = (size_t)nb * (size_t)d;
    int worth = team_worth(t, level, nb, (int)d, n_out, NULL);
    if (worth && need > t->copy_cap) {
        free(t->copy);
        t->copy = (float *)malloc(need * sizeof(float));
        t->copy_cap = t->copy != NULL ? need : 0;
    }
    if (!worth || t->copy == NULL) {   /* the products on out will not be shared */
        if (t != NULL)
            t->copy_ok = 0;
        fnn_gather_u8(level, X, d, rows, nb, out, scale, in, t);
        fnn_prefetch_rows(X, d, next, n_next);
        return;
    }
    /* Gathered when the forward product on out starts (fnn_dense_forward): the caller
     * into out, the helper into its copy as its first unit of that product; one hand-off
     * fewer a batch than a job of its own (NOTES 27). */
    team_settle(t);
    input_job g = {level, nb, X, d, rows, {out, t->copy}, scale, in, next, n_next};
    t->input = g, t->input_pending = 1;
    t->in_x = out, t->in_ld = in != NULL ? in->n : d, t->copy_ok = 1, t->copy_fresh = 0;
}

static void inputs_unit(void *ctx, int u)
{
    fnn_team *t = (fnn_team *)ctx;
    (void)u;
    fnn_batch_inputs(t->inputs.level, t->inputs.X, t->inputs.d, t->inputs.rows, t->inputs.nb,
                     t->inputs.act);
}

void fnn_team_batch_inputs(fnn_team *t, int level, const uint8_t *X, ptrdiff_t d,
                           const ptrdiff_t *rows, int nb, fnn_active *act)
{
    if (t == NULL || team_alone(t)) {
        fnn_batch_inputs(level, X, d, rows, nb, act);
        return;
    }
    team_settle(t);
    t->inputs.level = level, t->inputs.X = X, t->inputs.d = d, t->inputs.rows = rows;
    t->inputs.nb = nb, t->inputs.act = act;
    fnn_job j = {0};
    j.kind = 2, j.fn = inputs_unit, j.ctx = t, j.units = 1;
    team_post(t, &j);
    t->pending = 1, t->posted_at = fnn_now();
}

void fnn_team_wait(fnn_team *t)
{
    if (t != NULL)
        team_settle(t);
}

#else

fnn_team *fnn_team_start(void) { return NULL; }
void fnn_team_stop(fnn_team *t) { (void)t; }

void fnn_team_batch_inputs(fnn_team *t, int level, const uint8_t *X, ptrdiff_t d,
                           const ptrdiff_t *rows, int nb, fnn_active *act)
{
    (void)t;
    fnn_batch_inputs(level, X, d, rows, nb, act);
}

void fnn_team_wait(fnn_team *t) { (void)t; }

void fnn_team_input(fnn_team *t, int level, const uint8_t *X, ptrdiff_t d,
                    const ptrdiff_t *rows, int nb, float *out, float scale,
                    const fnn_active *in, int n_out, const ptrdiff_t *next, int n_next)
{
    (void)t, (void)n_out;
    gather_rows(level, X, d, rows, nb, out, scale, in);
    fnn_prefetch_rows(X, d, next, n_next);
}

#endif

void fnn_team_for(fnn_team *team, int units, fnn_unit_fn fn, void *ctx)
{
#ifdef FNN_TEAM
    if (team != NULL && units > 1 && !team_alone(team)) {
        fnn_job j = {0};
        j.kind = 2, j.fn = fn, j.ctx = ctx, j.units = units;
        team_run(team, &j);
        return;
    }
#else
    (void)team;
#endif
    for (int u = 0; u < units; u++)
        fn(ctx, u);
}

void fnn_dense_forward(int level, const float *X, ptrdiff_t ldx, const float *P,
                       const float *b, float *Y, ptrdiff_t ldy, int n, int n_in, int n_out,
                       int relu, fnn_act_fn act_fn, int act, const fnn_active *in,
                       fnn_team *team)
{
#ifdef FNN_TEAM
    if (team_worth(team, level, n, n_in, n_out, X)) {
        int block = level == FNN_LEVEL_AVX512 ? 8 : 6;
        int parts = (n + block - 1) / block < 2 || n < FNN_TEAM_PARTS_MIN_ROWS ? 1 : 2;
        fnn_job j = {0};
        j.kind = 0, j.level = level, j.n = n, j.n_in = n_in, j.n_out = n_out, j.relu = relu;
        j.act_fn = act_fn, j.act = act, j.in = in;
        j.X = X, j.ldx = ldx, j.P = (float *)P, j.b = b, j.Y = Y, j.ldy = ldy;
        j.parts = parts, j.units = (n_out + FNN_NR - 1) / FNN_NR * parts;
        j.gather = team->input_pending && X == team->in_x;
        j.units += j.gather;
        team_run(team, &j);
        return;
    }
    team_gather_here(team);
#else
    (void)team;
#endif
    forward_one(level, X, ldx, P, b, Y, ldy, n, in != NULL ? in->n : n_in, n_in, n_out,
                in != NULL ? in->cols : NULL, relu);
    if (act_fn != NULL && ldy == n_out)
        act_fn(act, Y, (ptrdiff_t)n * n_out);
    for (int i = 0; act_fn != NULL && ldy != n_out && i < n; i++)
        act_fn(act, Y + i * ldy, n_out);
}

void fnn_dense_wgrad(int level, const float *X, ptrdiff_t ldx, const float *dZ, ptrdiff_t ldz,
                     float *P, float *G, int n, int n_in, int n_out, int mode,
                     float lr, float mu, float wd, const fnn_active *in, fnn_team *team)
{
    if (mode == FNN_WG_SGD && wd == 0)
        mode = FNN_WG_SGD_NO_DECAY;   /* one multiply fewer per weight */
    int K = in != NULL ? in->n : n_in;
#ifdef FNN_TEAM
    if (team_worth(team, level, n, n_in, n_out, X)) {
        fnn_job j = {0};
        j.kind = 1, j.level = level, j.n = n, j.n_in = n_in, j.n_out = n_out, j.mode = mode;
        j.X = X, j.ldx = ldx, j.dZ = dZ, j.ldz = ldz, j.P = P, j.G = G, j.in = in;
        j.lr = lr, j.mu = mu, j.wd = wd;
        j.parts = K >= 32 && n >= FNN_TEAM_PARTS_MIN_ROWS ? 2 : 1;
        j.units = (n_out + FNN_NR - 1) / FNN_NR * j.parts;
        team_run(team, &j);
        return;
    }
#else
    (void)team;
#endif
    wgrad_one(level, X, ldx, dZ, ldz, P, G, n, K, n_in, n_out, in != NULL ? in->cols : NULL,
              0, n_in, mode, lr, mu, wd);
}
