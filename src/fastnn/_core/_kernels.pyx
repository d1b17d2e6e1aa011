# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled kernels: activations, dense layers, convolution (im2col + GEMM), max pooling,
dropout, fused losses, optimizer updates.

The ``cdef ... nogil`` functions work on raw pointers and are shared with the
whole-epoch loop in ``_train.pyx``. The ``def`` functions below them are thin
Python entry points that check every shape first, then release the GIL. They
write into output arrays the caller allocates (see ``fastnn.ops.CompiledOps``).
"""
from cython cimport floating
from libc.stdint cimport uint8_t, uint64_t, int32_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from libc.math cimport exp, expf, log, logf, log1p, log1pf, tanh, tanhf, sqrt, fabs

from fastnn._core._blas cimport gemm, vecmat


# ---------------------------------------------------------------- scalar math

cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _log(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline floating _sigmoid(floating x) noexcept nogil:
    # Never exponentiate a positive number: exp(-|x|) is in (0, 1].
    cdef floating e
    if x >= 0:
        return 1 / (1 + _exp(-x))
    e = _exp(x)
    return e / (1 + e)


# Float32 sigmoid and tanh without a libm call per value: expf does not
# vectorise, and a convolution's activation runs on every output pixel (5,760
# values per image in the tutorial's network, where libm's sigmoid took twice as
# long as the convolution's product). Cephes' expf polynomial (about 1 ulp on
# its range), four values at a time with SSE2 (every x86-64 has it), else one
# at a time; the vector and scalar paths do the same IEEE operations, so a value
# gets the same result wherever it lies in the array. float64 keeps libm.
cdef extern from *:
    """
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    static inline float fastnn_expf(float x) {
        /* Above 88.38, n = 128 makes 2^n infinite: exp overflows (a little early,
           true expf does at 88.72), so sigmoid(-huge) is exactly 0 and tanh 1. */
        x = x < -87.0f ? -87.0f : (x > 89.0f ? 89.0f : x);
        /* n = round(x / ln 2), by the 1.5 * 2^23 trick */
        float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
        float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
        float p = 1.9875691500e-4f;
        p = p * r + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        p = (p * (r * r) + r) + 1.0f;
        union { int i; float f; } scale;
        scale.i = ((int)n + 127) << 23;       /* 2^n, n in [-126, 128] (128: inf) */
        return p * scale.f;
    }
    #if defined(__SSE2__)
    static inline __m128 fastnn_expf4(__m128 x) {
        const __m128 magic = _mm_set1_ps(12582912.0f);
        /* (max and min return their second operand when one is NaN: NaN stays NaN) */
        x = _mm_min_ps(_mm_set1_ps(89.0f), _mm_max_ps(_mm_set1_ps(-87.0f), x));
        __m128 n = _mm_sub_ps(_mm_add_ps(_mm_mul_ps(x, _mm_set1_ps(1.44269504088896341f)),
                                         magic), magic);
        __m128 r = _mm_add_ps(_mm_sub_ps(x, _mm_mul_ps(n, _mm_set1_ps(0.693359375f))),
                              _mm_mul_ps(n, _mm_set1_ps(2.12194440e-4f)));
        __m128 p = _mm_set1_ps(1.9875691500e-4f);
        p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.3981999507e-3f));
        p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(8.3334519073e-3f));
        p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(4.1665795894e-2f));
        p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.6666665459e-1f));
        p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(5.0000001201e-1f));
        p = _mm_add_ps(_mm_add_ps(_mm_mul_ps(p, _mm_mul_ps(r, r)), r), _mm_set1_ps(1.0f));
        __m128i e = _mm_slli_epi32(_mm_add_epi32(_mm_cvttps_epi32(n), _mm_set1_epi32(127)), 23);
        return _mm_mul_ps(p, _mm_castsi128_ps(e));
    }
    #endif
    static inline float fastnn_sigmoidf(float x) {
        return 1.0f / (1.0f + fastnn_expf(-x));
    }
    static inline float fastnn_tanhf(float x) {
        float a = x < 0 ? -x : x;
        float big = 1.0f - 2.0f / (fastnn_expf(2.0f * a) + 1.0f);
        /* near zero that subtraction cancels: the Taylor series instead */
        float a2 = a * a;
        float small = a * (1.0f + a2 * (-0.333333333f + a2 * (0.133333333f
                                                             - 0.0539682540f * a2)));
        float y = a < 0.0625f ? small : big;
        return x < 0 ? -y : y;
    }
    /* Eight values at a time where the CPU has AVX2 (chosen at run time; the
       build targets baseline x86-64). No FMA: the same IEEE operations as the
       four-wide and scalar paths, so results do not depend on the CPU. */
    #if defined(__GNUC__) && defined(__x86_64__) && defined(__SSE2__)
    #define FASTNN_AVX2 1
    #include <immintrin.h>
    static int fastnn_avx2_state = -1;
    static inline int fastnn_has_avx2(void) {
        if (fastnn_avx2_state < 0) {  /* a benign race: every thread writes the same */
            __builtin_cpu_init();
            fastnn_avx2_state = __builtin_cpu_supports("avx2") ? 1 : 0;
        }
        return fastnn_avx2_state;
    }
    static int fastnn_avx512_state = -1;
    static inline int fastnn_has_avx512(void) {
        if (fastnn_avx512_state < 0) {
            __builtin_cpu_init();
            fastnn_avx512_state = __builtin_cpu_supports("avx512f") ? 1 : 0;
        }
        return fastnn_avx512_state;
    }
    /* The exp and sigmoid of one vector width, written once: P is the intrinsics'
       prefix (_mm256, _mm512), V and VI the vector types, W the lanes, SI the
       integer cast's name. AVX-512F has FMA, so its functions carry fp-contract
       off: gcc would otherwise fuse a multiply and an add, which rounds differently. */
    #define FASTNN_VEC_SIGMOID(TARGET, P, V, VI, W, SI)                                  \
    TARGET static inline V fastnn_expf##W(V x) {                                        \
        const V magic = P##_set1_ps(12582912.0f);                                       \
        x = P##_min_ps(P##_set1_ps(89.0f), P##_max_ps(P##_set1_ps(-87.0f), x));        \
        V n = P##_sub_ps(P##_add_ps(P##_mul_ps(                                         \
            x, P##_set1_ps(1.44269504088896341f)), magic), magic);                      \
        V r = P##_add_ps(P##_sub_ps(x, P##_mul_ps(n, P##_set1_ps(0.693359375f))),       \
                         P##_mul_ps(n, P##_set1_ps(2.12194440e-4f)));                   \
        V p = P##_set1_ps(1.9875691500e-4f);                                            \
        p = P##_add_ps(P##_mul_ps(p, r), P##_set1_ps(1.3981999507e-3f));                \
        p = P##_add_ps(P##_mul_ps(p, r), P##_set1_ps(8.3334519073e-3f));                \
        p = P##_add_ps(P##_mul_ps(p, r), P##_set1_ps(4.1665795894e-2f));                \
        p = P##_add_ps(P##_mul_ps(p, r), P##_set1_ps(1.6666665459e-1f));                \
        p = P##_add_ps(P##_mul_ps(p, r), P##_set1_ps(5.0000001201e-1f));                \
        p = P##_add_ps(P##_add_ps(P##_mul_ps(p, P##_mul_ps(r, r)), r),                  \
                       P##_set1_ps(1.0f));                                              \
        VI e = P##_slli_epi32(P##_add_epi32(P##_cvttps_epi32(n),                        \
                                            P##_set1_epi32(127)), 23);                  \
        return P##_mul_ps(p, P##_cast##SI##_ps(e));                                     \
    }                                                                                   \
    TARGET static Py_ssize_t fastnn_sigmoid##W(float* z, Py_ssize_t n) {                \
        const V one = P##_set1_ps(1.0f), zero = P##_setzero_ps();                       \
        Py_ssize_t i = 0;                                                               \
        for (; i + W <= n; i += W) {                                                    \
            V e = fastnn_expf##W(P##_sub_ps(zero, P##_loadu_ps(z + i)));                \
            P##_storeu_ps(z + i, P##_div_ps(one, P##_add_ps(one, e)));                  \
        }                                                                               \
        return i;                                                                       \
    }
    FASTNN_VEC_SIGMOID(__attribute__((target("avx2"))), _mm256, __m256, __m256i, 8, si256)
    FASTNN_VEC_SIGMOID(__attribute__((target("avx512f"), optimize("fp-contract=off"))),
                       _mm512, __m512, __m512i, 16, si512)
    #endif
    static void fastnn_sigmoid_array(float* z, Py_ssize_t n) {
        Py_ssize_t i = 0;
    #if defined(FASTNN_AVX2)
        if (fastnn_has_avx512()) i = fastnn_sigmoid16(z, n);
        if (fastnn_has_avx2()) i += fastnn_sigmoid8(z + i, n - i);
    #endif
    #if defined(__SSE2__)
        const __m128 one = _mm_set1_ps(1.0f), zero = _mm_setzero_ps();
        for (; i + 4 <= n; i += 4) {
            __m128 x = _mm_loadu_ps(z + i);
            __m128 e = fastnn_expf4(_mm_sub_ps(zero, x));
            _mm_storeu_ps(z + i, _mm_div_ps(one, _mm_add_ps(one, e)));
        }
    #endif
        for (; i < n; i++) z[i] = fastnn_sigmoidf(z[i]);
    }
    static void fastnn_tanh_array(float* z, Py_ssize_t n) {
        Py_ssize_t i = 0;
    #if defined(__SSE2__)
        const __m128 one = _mm_set1_ps(1.0f), two = _mm_set1_ps(2.0f);
        const __m128 sign = _mm_set1_ps(-0.0f);
        for (; i + 4 <= n; i += 4) {
            __m128 x = _mm_loadu_ps(z + i);
            __m128 a = _mm_andnot_ps(sign, x);
            __m128 big = _mm_sub_ps(one, _mm_div_ps(two, _mm_add_ps(
                fastnn_expf4(_mm_mul_ps(two, a)), one)));
            __m128 a2 = _mm_mul_ps(a, a);
            __m128 q = _mm_sub_ps(_mm_set1_ps(0.133333333f),
                                  _mm_mul_ps(_mm_set1_ps(0.0539682540f), a2));
            q = _mm_add_ps(_mm_set1_ps(-0.333333333f), _mm_mul_ps(a2, q));
            __m128 small = _mm_mul_ps(a, _mm_add_ps(one, _mm_mul_ps(a2, q)));
            __m128 use_small = _mm_cmplt_ps(a, _mm_set1_ps(0.0625f));
            __m128 y = _mm_or_ps(_mm_and_ps(use_small, small), _mm_andnot_ps(use_small, big));
            _mm_storeu_ps(z + i, _mm_or_ps(y, _mm_and_ps(sign, x)));
        }
    #endif
        for (; i < n; i++) z[i] = fastnn_tanhf(z[i]);
    }
    """
    float fastnn_sigmoidf(float x) nogil
    void fastnn_sigmoid_array(float* z, Py_ssize_t n) nogil
    void fastnn_tanh_array(float* z, Py_ssize_t n) nogil


# ---------------------------------------------------------------- activations

cdef void activate(int act, floating* z, Py_ssize_t n) noexcept nogil:
    """Apply the activation in place to n contiguous values."""
    cdef Py_ssize_t i
    # The loops store unconditionally so that gcc turns them into vector
    # selects: a data-dependent branch mispredicts on about half the elements.
    if act == RELU:
        for i in range(n):
            z[i] = 0 if z[i] < 0 else z[i]    # NaN stays NaN, as in NumPy
    elif act == SIGMOID:
        if floating is float:
            fastnn_sigmoid_array(z, n)
        else:
            for i in range(n):
                z[i] = _sigmoid(z[i])
    elif act == TANH:
        if floating is float:
            fastnn_tanh_array(z, n)
        else:
            for i in range(n):
                z[i] = tanh(z[i])


cdef void backprop_activation(int act, const floating* y, floating* dz, Py_ssize_t n) noexcept nogil:
    """dz *= act'(z), with the derivative written in terms of the output y."""
    cdef Py_ssize_t i
    if act == RELU:
        for i in range(n):
            dz[i] = dz[i] if y[i] > 0 else 0
    elif act == SIGMOID:
        for i in range(n):
            dz[i] = dz[i] * (y[i] * (1 - y[i]))
    elif act == TANH:
        for i in range(n):
            dz[i] = dz[i] * (1 - y[i] * y[i])


# ---------------------------------------------------------------- dense layer

cdef void dense_forward_ptr(const floating* X, const floating* W, const floating* b,
                            floating* Y, int n, int n_in, int n_out, int act) noexcept nogil:
    """Y (n x n_out) = act(X @ W + b)."""
    cdef int i, j
    cdef floating* row
    if n == 1:
        vecmat(n_in, n_out, X, W, n_out, Y)
    else:
        gemm(False, False, n, n_out, n_in, <floating>1, X, n_in, W, n_out, <floating>0, Y, n_out)
    # Bias and activation in one pass, a row at a time while it is in cache.
    for i in range(n):
        row = Y + <Py_ssize_t>i * n_out
        if act == RELU:
            for j in range(n_out):
                row[j] = 0 if row[j] + b[j] < 0 else row[j] + b[j]
        else:
            for j in range(n_out):
                row[j] += b[j]
            activate(act, row, n_out)


cdef void output_grad(int act, const floating* Y, floating* dZ, floating* db,
                      int n, int n_out) noexcept nogil:
    """dZ = dL/dY (overwritten with dL/dZ = dZ * act'(Y)) and db = its column sums."""
    cdef int i, j
    cdef floating* row
    backprop_activation(act, Y, dZ, <Py_ssize_t>n * n_out)
    for j in range(n_out):
        db[j] = 0
    for i in range(n):
        row = dZ + <Py_ssize_t>i * n_out
        for j in range(n_out):
            db[j] += row[j]


cdef void dense_backward_ptr(const floating* X, const floating* W, const floating* Y,
                             floating* dZ, floating* dW, floating* db, floating* dX,
                             int n, int n_in, int n_out, int act) noexcept nogil:
    """From dZ = dL/dY (overwritten with dL/dZ): dW = X^T dZ, db = sum(dZ), dX = dZ W^T.

    dX may be NULL (the first layer needs no input gradient).
    """
    output_grad(act, Y, dZ, db, n, n_out)
    gemm(True, False, n_in, n_out, n, <floating>1, X, n_in, dZ, n_out, <floating>0, dW, n_out)
    if dX != NULL:
        gemm(False, True, n, n_in, n_out, <floating>1, dZ, n_out, W, n_out, <floating>0, dX, n_in)



# ---------------------------------------------------------------- images (channels-last)
#
# A convolution is im2col + one GEMM. ``cols`` is stored transposed,
# K x M (K = KH*KW*C in (p, q, c) order, matching W's (KH, KW, C, CO) layout;
# M = n*OH*OW output pixels): for one kernel offset and channel, a row holds
# that input value for every output pixel, and along an output row these are
# OW values of one input row at stride SW*C: contiguous for one channel at
# stride 1, so im2col is a few long vector copies instead of many short ones
# (the tutorial's 5x5 on one channel: 600 copies of 24 values per image,
# against 2,880 of 5). ``cols^T @ W`` gives the pre-activations (M x CO),
# already channels-last. benches/NOTES.md has the measurements.

cdef enum:
    G_H = 0
    G_W = 1
    G_C = 2
    G_OH = 3
    G_OW = 4
    G_CO = 5       # conv2d
    G_KH = 6
    G_KW = 7
    G_SH = 8
    G_SW = 9
    G_PT = 10
    G_PL = 11
    P_PH = 5       # maxpool2d
    P_PW = 6
    P_SH = 7
    P_SW = 8

DEF INT_MAX_ = 2147483647


cdef inline bint _product_fits(long long a, long long b, long long c, long long d=1) noexcept:
    """a*b*c*d <= INT_MAX for positive int factors, checked after each product: a
    product of two ints fits a long long, four need not (the sum could wrap round)."""
    cdef long long p = a * b
    if p > INT_MAX_:
        return False
    p = p * c
    if p > INT_MAX_:
        return False
    return p * d <= INT_MAX_


cdef int check_conv_geometry(const int* g, int length) except -1:
    """Refuse a conv2d geometry whose sizes are not positive or whose products overflow."""
    cdef int j
    if length != 12:
        raise ValueError("a conv2d layer's geometry is [H, W, C, OH, OW, CO, KH, KW, SH, SW, PT, PL]")
    for j in range(10):
        if g[j] <= 0:
            raise ValueError("conv2d sizes and strides must be positive")
    # Padding may exceed the kernel (windows wholly in the zeros are valid, as in
    # PyTorch); the bound only keeps the index arithmetic far from overflow.
    if not (0 <= g[G_PT] <= 65536 and 0 <= g[G_PL] <= 65536 and g[G_SH] <= 65536
            and g[G_SW] <= 65536):
        raise ValueError("conv2d padding must be in [0, 65536] and strides at most 65536")
    if not (_product_fits(g[G_H], g[G_W], g[G_C]) and _product_fits(g[G_OH], g[G_OW], g[G_CO])
            and _product_fits(g[G_KH], g[G_KW], g[G_C], g[G_CO])):
        raise ValueError("conv2d sizes too large")
    # The output fits the padded input: the last window starts at most as far past
    # the image as the padding before it reaches (PyTorch's "same" pads one more
    # zero after than before, and a window is at least one wide). im2col checks
    # each pixel anyway; this refuses a geometry that cannot be a layer's.
    if (<long long>(g[G_OH] - 1) * g[G_SH] - g[G_PT] > <long long>g[G_H] + g[G_PT]
            or <long long>(g[G_OW] - 1) * g[G_SW] - g[G_PL] > <long long>g[G_W] + g[G_PL]):
        raise ValueError("conv2d output larger than its input allows")
    return 0


cdef int check_pool_geometry(const int* g, int length) except -1:
    """Refuse a maxpool2d geometry with a window outside the input: argmax must stay inside."""
    cdef int j
    if length != 9:
        raise ValueError("a maxpool2d layer's geometry is [H, W, C, OH, OW, PH, PW, SH, SW]")
    for j in range(9):
        if g[j] <= 0:
            raise ValueError("maxpool2d sizes and strides must be positive")
    if not _product_fits(g[G_H], g[G_W], g[G_C]):
        raise ValueError("maxpool2d sizes too large")
    if (<long long>(g[G_OH] - 1) * g[P_SH] + g[P_PH] > g[G_H]
            or <long long>(g[G_OW] - 1) * g[P_SW] + g[P_PW] > g[G_W]):
        raise ValueError("maxpool2d windows reach outside the input")
    return 0


cdef inline void _valid_range(int j, int OW, int W, int SW, int PL, int* lo,
                              int* hi) noexcept nogil:
    """[lo, hi): the output columns ow whose input column ow*SW - PL + j lies in [0, W)."""
    cdef int first = PL - j       # ow*SW >= PL - j
    lo[0] = 0 if first <= 0 else (first + SW - 1) // SW
    hi[0] = (W - 1 + PL - j) // SW + 1 if W - 1 + PL - j >= 0 else 0
    if hi[0] > OW:
        hi[0] = OW
    if lo[0] > hi[0]:
        lo[0] = hi[0]


cdef void im2col_ptr(const floating* X, floating* cols, int n, Py_ssize_t ld,
                     const int* g) noexcept nogil:
    """cols (K x n*OH*OW, rows ``ld`` apart; see above) = the zero-padded receptive
    fields of n samples."""
    cdef int H = g[G_H], W = g[G_W], C = g[G_C], OH = g[G_OH], OW = g[G_OW]
    cdef int KH = g[G_KH], KW = g[G_KW], SH = g[G_SH], SW = g[G_SW], PT = g[G_PT], PL = g[G_PL]
    cdef int s, oh, ow, i, j, c, ih, lo, hi
    cdef Py_ssize_t step = <Py_ssize_t>SW * C
    cdef floating* row
    cdef floating* dst
    cdef const floating* src
    for i in range(KH):
        for j in range(KW):
            _valid_range(j, OW, W, SW, PL, &lo, &hi)
            for c in range(C):
                row = cols + ((<Py_ssize_t>i * KW + j) * C + c) * ld
                for s in range(n):
                    for oh in range(OH):
                        dst = row + (<Py_ssize_t>s * OH + oh) * OW
                        ih = oh * SH - PT + i
                        if ih < 0 or ih >= H:
                            for ow in range(OW):
                                dst[ow] = 0
                            continue
                        for ow in range(lo):
                            dst[ow] = 0
                        for ow in range(hi, OW):
                            dst[ow] = 0
                        # src[ow * step] is the input under output column ow.
                        src = X + ((<Py_ssize_t>s * H + ih) * W + (j - PL)) * C + c
                        if step == 1:
                            for ow in range(lo, hi):
                                dst[ow] = src[ow]
                        else:
                            for ow in range(lo, hi):
                                dst[ow] = src[ow * step]


cdef void col2im_ptr(const floating* cols, floating* dX, int n, Py_ssize_t ld,
                     const int* g) noexcept nogil:
    """dX (n x H*W*C) = every value of cols (rows ``ld`` apart) added back under its
    output pixel (im2col's adjoint)."""
    cdef int H = g[G_H], W = g[G_W], C = g[G_C], OH = g[G_OH], OW = g[G_OW]
    cdef int KH = g[G_KH], KW = g[G_KW], SH = g[G_SH], SW = g[G_SW], PT = g[G_PT], PL = g[G_PL]
    cdef int s, oh, ow, i, j, c, ih, lo, hi
    cdef Py_ssize_t step = <Py_ssize_t>SW * C
    cdef const floating* row
    cdef const floating* src
    cdef floating* dst
    memset(dX, 0, <Py_ssize_t>n * H * W * C * sizeof(floating))
    for i in range(KH):
        for j in range(KW):
            _valid_range(j, OW, W, SW, PL, &lo, &hi)
            for c in range(C):
                row = cols + ((<Py_ssize_t>i * KW + j) * C + c) * ld
                for s in range(n):
                    for oh in range(OH):
                        ih = oh * SH - PT + i
                        if ih < 0 or ih >= H:
                            continue
                        src = row + (<Py_ssize_t>s * OH + oh) * OW
                        dst = dX + ((<Py_ssize_t>s * H + ih) * W + (j - PL)) * C + c
                        if step == 1:
                            for ow in range(lo, hi):
                                dst[ow] += src[ow]
                        else:
                            for ow in range(lo, hi):
                                dst[ow * step] += src[ow]


cdef void _bias_act(floating* Y, const floating* b, Py_ssize_t rows, int m, int act) noexcept nogil:
    """Y (rows x m) = act(Y + b), the activation over blocks of rows still in cache."""
    cdef Py_ssize_t i, r0, nr
    cdef int j
    cdef floating* row
    r0 = 0
    while r0 < rows:
        # A block of 8 KB or so: added to, then activated in one vector loop
        # (rows of a few channels are too short for one).
        nr = 2048 // m + 1
        if nr > rows - r0:
            nr = rows - r0
        for i in range(r0, r0 + nr):
            row = Y + i * m
            if act == RELU:
                for j in range(m):
                    row[j] = 0 if row[j] + b[j] < 0 else row[j] + b[j]
            else:
                for j in range(m):
                    row[j] += b[j]
        if act != RELU:
            activate(act, Y + r0 * m, nr * m)
        r0 += nr


cdef void conv_forward_ptr(const floating* X, const floating* W, const floating* b, floating* Y,
                           floating* cols, int n, int blk, bint keep, const int* g,
                           int act) noexcept nogil:
    """Y (n x OH*OW*CO) = act(conv(X) + b), ``blk`` samples per im2col and GEMM.

    With ``keep`` (training) ``cols`` holds all n samples' columns, which the
    weight gradient reuses; each block is written into its place. Otherwise it
    holds one block's. Blocks keep the columns and outputs of one GEMM in cache
    between im2col, the product and the activation.
    """
    cdef int s0, nb, CO = g[G_CO]
    cdef int K = g[G_KH] * g[G_KW] * g[G_C], P = g[G_OH] * g[G_OW]
    cdef Py_ssize_t in_size = <Py_ssize_t>g[G_H] * g[G_W] * g[G_C], out_size = <Py_ssize_t>P * CO
    cdef Py_ssize_t ld
    cdef floating* y
    cdef floating* c
    s0 = 0
    while s0 < n:
        nb = blk if n - s0 > blk else n - s0
        c = cols + <Py_ssize_t>s0 * P if keep else cols
        ld = <Py_ssize_t>n * P if keep else <Py_ssize_t>nb * P
        im2col_ptr(X + s0 * in_size, c, nb, ld, g)
        y = Y + s0 * out_size
        gemm(True, False, nb * P, CO, K, <floating>1, c, <int>ld, W, CO, <floating>0, y, CO)
        _bias_act(y, b, <Py_ssize_t>nb * P, CO, act)
        s0 += nb


cdef void conv_backward_ptr(const floating* W, floating* dZ, floating* cols, floating* dW,
                            floating* db, floating* dX, int n, int blk,
                            const int* g) noexcept nogil:
    """From dZ = dL/d(pre-activation) and cols = im2col(X) of all n samples: dW = cols^T dZ
    (unless dW is NULL), db = column sums of dZ (unless db is NULL) and, unless dX is
    NULL, dX = col2im(dZ W^T) (which overwrites cols).

    The products run ``blk`` samples at a time, dW accumulating: OpenBLAS's
    kernels for small products take these thin shapes (K = 25, CO = 10 in the
    tutorial) faster than its packed ones do the whole batch (4.5 against 7.1
    us per image, benches/NOTES.md), and the columns of a block stay in cache.
    """
    cdef int CO = g[G_CO], K = g[G_KH] * g[G_KW] * g[G_C], P = g[G_OH] * g[G_OW]
    cdef int rows = n * P
    cdef int i, j, s0, nb
    cdef Py_ssize_t in_size = <Py_ssize_t>g[G_H] * g[G_W] * g[G_C]
    cdef floating* c
    cdef floating* dz
    cdef const floating* row
    if db != NULL:
        for j in range(CO):
            db[j] = 0
        for i in range(rows):
            row = dZ + <Py_ssize_t>i * CO
            for j in range(CO):
                db[j] += row[j]
    s0 = 0
    while s0 < n:
        nb = blk if n - s0 > blk else n - s0
        c = cols + <Py_ssize_t>s0 * P
        dz = dZ + <Py_ssize_t>s0 * P * CO
        if dW != NULL:
            gemm(False, False, K, CO, nb * P, <floating>1, c, rows, dz, CO,
                 <floating>(0 if s0 == 0 else 1), dW, CO)
        if dX != NULL:
            gemm(False, True, K, nb * P, CO, <floating>1, W, CO, dz, CO, <floating>0, c, rows)
            col2im_ptr(c, dX + s0 * in_size, nb, rows, g)
        s0 += nb


# One output pixel of max pooling over C channels, for float32: each group of
# channels keeps its running maximum and argmax in registers over the window
# (compare and select, no branches: a data-dependent branch mispredicts on
# about half of random inputs) and is stored once. The last group overlaps the
# one before when C is not a multiple of the vector width (recomputing a
# channel gives the same result). The same strict > as the scalar loop: the
# first maximum wins, and a NaN never replaces the running value.
cdef extern from *:
    """
    #if defined(FASTNN_AVX2)
    __attribute__((target("avx2")))
    static void fastnn_pool_pixel_avx2(const float* x, int off0, int row, int C, int PH,
                                       int PW, float* y, int32_t* am) {
        const __m256i lane = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
        for (int c = 0; c < C; c += 8) {
            if (c + 8 > C) c = C - 8;
            __m256 acc = _mm256_loadu_ps(x + off0 + c);
            __m256i idx = _mm256_add_epi32(_mm256_set1_epi32(off0 + c), lane);
            for (int i = 0; i < PH; i++) {
                for (int j = (i == 0); j < PW; j++) {
                    int off = off0 + i * row + j * C + c;
                    __m256 v = _mm256_loadu_ps(x + off);
                    __m256 gt = _mm256_cmp_ps(v, acc, _CMP_GT_OQ);
                    acc = _mm256_blendv_ps(acc, v, gt);
                    idx = _mm256_blendv_epi8(idx, _mm256_add_epi32(_mm256_set1_epi32(off), lane),
                                             _mm256_castps_si256(gt));
                }
            }
            _mm256_storeu_ps(y + c, acc);
            if (am) _mm256_storeu_si256((__m256i*)(am + c), idx);
        }
    }
    #endif
    static inline void fastnn_pool_pixel_f(const float* x, int off0, int row, int C, int PH,
                                           int PW, float* y, int32_t* am) {
    #if defined(FASTNN_AVX2)
        if (C >= 8 && fastnn_has_avx2()) {
            fastnn_pool_pixel_avx2(x, off0, row, C, PH, PW, y, am);
            return;
        }
    #endif
    #if defined(__SSE2__)
        if (C >= 4) {
            const __m128i lane = _mm_set_epi32(3, 2, 1, 0);
            for (int c = 0; c < C; c += 4) {
                if (c + 4 > C) c = C - 4;
                __m128 acc = _mm_loadu_ps(x + off0 + c);
                __m128i idx = _mm_add_epi32(_mm_set1_epi32(off0 + c), lane);
                for (int i = 0; i < PH; i++) {
                    for (int j = (i == 0); j < PW; j++) {
                        int off = off0 + i * row + j * C + c;
                        __m128 v = _mm_loadu_ps(x + off);
                        __m128 gt = _mm_cmpgt_ps(v, acc);
                        __m128i m = _mm_castps_si128(gt);
                        acc = _mm_or_ps(_mm_and_ps(gt, v), _mm_andnot_ps(gt, acc));
                        idx = _mm_or_si128(_mm_and_si128(m, _mm_add_epi32(_mm_set1_epi32(off), lane)),
                                           _mm_andnot_si128(m, idx));
                    }
                }
                _mm_storeu_ps(y + c, acc);
                if (am) _mm_storeu_si128((__m128i*)(am + c), idx);
            }
            return;
        }
    #endif
        for (int c = 0; c < C; c++) {
            float best = x[off0 + c];
            int at = off0 + c;
            for (int i = 0; i < PH; i++) {
                for (int j = (i == 0); j < PW; j++) {
                    int off = off0 + i * row + j * C + c;
                    if (x[off] > best) { best = x[off]; at = off; }
                }
            }
            y[c] = best;
            if (am) am[c] = at;
        }
    }
    """
    void fastnn_pool_pixel_f(const float* x, int off0, int row, int C, int PH, int PW,
                             float* y, int32_t* am) nogil


cdef inline void _pool_pixel(const floating* x, int off0, int row, int C, int PH, int PW,
                             floating* y, int32_t* am) noexcept nogil:
    """One output pixel, one channel at a time (float64)."""
    cdef int c, i, j, off, at
    cdef floating best
    for c in range(C):
        best = x[off0 + c]
        at = off0 + c
        for i in range(PH):
            for j in range(1 if i == 0 else 0, PW):
                off = off0 + i * row + j * C + c
                if x[off] > best:
                    best = x[off]
                    at = off
        y[c] = best
        if am != NULL:
            am[c] = at


cdef void maxpool_forward_ptr(const floating* X, floating* Y, int32_t* argmax, int n,
                              const int* g) noexcept nogil:
    """Y = the maximum of each window; argmax (unless NULL) = its offset within the sample.

    A strict > keeps the first maximum in row-major window order.
    """
    cdef int H = g[G_H], W = g[G_W], C = g[G_C], OH = g[G_OH], OW = g[G_OW]
    cdef int PH = g[P_PH], PW = g[P_PW], SH = g[P_SH], SW = g[P_SW]
    cdef int s, oh, ow, off
    cdef Py_ssize_t in_size = <Py_ssize_t>H * W * C, out_size = <Py_ssize_t>OH * OW * C
    cdef const floating* xs
    cdef floating* y
    for s in range(n):
        xs = X + s * in_size
        for oh in range(OH):
            for ow in range(OW):
                y = Y + s * out_size + (oh * OW + ow) * C
                off = ((oh * SH) * W + ow * SW) * C
                if floating is float:
                    fastnn_pool_pixel_f(xs, off, W * C, C, PH, PW, y,
                                        argmax + s * out_size + (oh * OW + ow) * C
                                        if argmax != NULL else NULL)
                else:
                    _pool_pixel(xs, off, W * C, C, PH, PW, y,
                                argmax + s * out_size + (oh * OW + ow) * C
                                if argmax != NULL else NULL)


cdef void maxpool_backward_ptr(const floating* dY, const int32_t* argmax, floating* dX, int n,
                               const int* g) noexcept nogil:
    """dX = 0, then each output's gradient added at its maximum (windows may overlap)."""
    cdef Py_ssize_t in_size = <Py_ssize_t>g[G_H] * g[G_W] * g[G_C]
    cdef Py_ssize_t out_size = <Py_ssize_t>g[G_OH] * g[G_OW] * g[G_C]
    cdef Py_ssize_t s, k
    cdef floating* dxs
    memset(dX, 0, n * in_size * sizeof(floating))
    for s in range(n):
        dxs = dX + s * in_size
        for k in range(out_size):
            dxs[argmax[s * out_size + k]] += dY[s * out_size + k]


cdef void maxpool_backward_act_ptr(const floating* dY, const int32_t* argmax, floating* dZ,
                                   const floating* A, floating* db, int act, int n,
                                   const int* g) noexcept nogil:
    """The pool's backward fused with the activation derivative of the layer before it.

    dZ = 0, then at each output's maximum dY * act'(A) added (A is the previous
    layer's output), and db (C) = the column sums of dZ: what pooling and then
    ``output_grad`` give, without two passes over the whole of dZ, three
    quarters of which a 2x2 pool leaves zero.
    """
    cdef Py_ssize_t in_size = <Py_ssize_t>g[G_H] * g[G_W] * g[G_C]
    cdef Py_ssize_t out_size = <Py_ssize_t>g[G_OH] * g[G_OW] * g[G_C]
    cdef Py_ssize_t s, k, idx
    cdef int c, C = g[G_C]
    cdef floating d, a
    memset(dZ, 0, n * in_size * sizeof(floating))
    for c in range(C):
        db[c] = 0
    for s in range(n):
        c = 0
        for k in range(out_size):
            idx = s * in_size + argmax[s * out_size + k]
            a = A[idx]
            d = dY[s * out_size + k]
            if act == SIGMOID:
                d = d * (a * (1 - a))
            elif act == TANH:
                d = d * (1 - a * a)
            elif act == RELU:
                d = d if a > 0 else 0
            dZ[idx] += d
            db[c] += d
            c = c + 1 if c + 1 < C else 0     # the channel of output k (channels-last)


# ---------------------------------------------------------------- dropout
# A counter-based generator: splitmix64's finaliser over (key, batch counter,
# layer index, element index), in the same uint64 arithmetic as the NumPy twin
# (fastnn.ops.numpy_ops), so both draw identical masks.

cdef inline uint64_t _mix64(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline uint64_t _batch_seed(uint64_t key, uint64_t counter, int index) noexcept nogil:
    cdef uint64_t golden = <uint64_t>0x9E3779B97F4A7C15ULL
    return _mix64(_mix64(key + counter * golden) + <uint64_t>(index + 1) * golden)


cdef void dropout_forward_ptr(const floating* X, floating* Y, uint8_t* mask, Py_ssize_t size,
                              uint64_t key, uint64_t counter, int index, int t) noexcept nogil:
    """Y = X * mask / keep-probability; an element is kept when its hash's top 31 bits >= t."""
    cdef uint64_t golden = <uint64_t>0x9E3779B97F4A7C15ULL
    cdef uint64_t seed = _batch_seed(key, counter, index), thr = <uint64_t>t
    cdef floating scale = <floating>(2147483648.0 / (2147483648.0 - t))
    cdef Py_ssize_t i
    cdef uint8_t keep
    for i in range(size):
        keep = (_mix64(seed + <uint64_t>(i + 1) * golden) >> 33) >= thr
        mask[i] = keep
        Y[i] = X[i] * scale if keep else 0


cdef void dropout_backward_ptr(const floating* dY, const uint8_t* mask, floating* dX,
                               Py_ssize_t size, int t) noexcept nogil:
    cdef floating scale = <floating>(2147483648.0 / (2147483648.0 - t))
    cdef Py_ssize_t i
    for i in range(size):
        dX[i] = dY[i] * scale if mask[i] else 0

# ---------------------------------------------------------------- losses

cdef void softmax_rows(const floating* Z, floating* P, int n, int c) noexcept nogil:
    """Row-wise softmax, shifted by the row maximum so exp never overflows."""
    cdef int i, j
    cdef floating m, s
    cdef const floating* z
    cdef floating* p
    for i in range(n):
        z = Z + <Py_ssize_t>i * c
        p = P + <Py_ssize_t>i * c
        m = z[0]
        for j in range(1, c):
            if z[j] > m:
                m = z[j]
        s = 0
        for j in range(c):
            p[j] = _exp(z[j] - m)
            s += p[j]
        s = 1 / s
        for j in range(c):
            p[j] *= s


cdef inline floating _row_exp_sum(const floating* z, floating* e, int c,
                                  floating* row_max) noexcept nogil:
    """sum(exp(z - max(z))) of one row; writes exp(z - max) into e unless e is NULL."""
    cdef int j
    cdef floating m = z[0], s = 0, t
    for j in range(1, c):
        if z[j] > m:
            m = z[j]
    for j in range(c):
        t = _exp(z[j] - m)
        s += t
        if e != NULL:
            e[j] = t
    row_max[0] = m
    return s


cdef double softmax_xent_labels(const floating* Z, const Py_ssize_t* labels,
                                const floating* w, floating* dZ, int n, int c) noexcept nogil:
    """Mean softmax cross-entropy of logits Z against integer labels.

    When dZ is not NULL it receives the gradient w_i (softmax(Z) - onehot) / n.
    """
    cdef int i, j
    cdef double total = 0
    cdef floating s, m, scale, wi = 1, inv_n = (<floating>1) / n
    cdef const floating* z
    cdef floating* d = NULL
    for i in range(n):
        z = Z + <Py_ssize_t>i * c
        if dZ != NULL:
            d = dZ + <Py_ssize_t>i * c
        if w != NULL:
            wi = w[i]
        s = _row_exp_sum(z, d, c, &m)
        total += wi * (m + _log(s) - z[labels[i]])
        if d != NULL:
            # d holds exp(z - max); dividing by their sum gives softmax(z).
            scale = wi * inv_n / s
            for j in range(c):
                d[j] *= scale
            d[labels[i]] -= wi * inv_n
    return total / n


cdef double softmax_xent_targets(const floating* Z, const floating* T,
                                 const floating* w, floating* dZ, int n, int c) noexcept nogil:
    """Mean softmax cross-entropy against target rows T (one-hot or soft labels)."""
    cdef int i, j
    cdef double total = 0, row
    cdef floating s, m, lse, scale, tsum, wi = 1, inv_n = (<floating>1) / n
    cdef const floating* z
    cdef const floating* t
    cdef floating* d = NULL
    for i in range(n):
        z = Z + <Py_ssize_t>i * c
        t = T + <Py_ssize_t>i * c
        if dZ != NULL:
            d = dZ + <Py_ssize_t>i * c
        if w != NULL:
            wi = w[i]
        s = _row_exp_sum(z, d, c, &m)
        lse = m + _log(s)
        row = 0
        tsum = 0
        for j in range(c):
            row += t[j] * (lse - z[j])
            tsum += t[j]
        total += wi * row
        if d != NULL:
            # d/dz of sum_j t_j (lse - z_j) is softmax(z) * sum(t) - t.
            scale = wi * inv_n * tsum / s
            for j in range(c):
                d[j] = d[j] * scale - wi * inv_n * t[j]
    return total / n


cdef double sigmoid_bce(const floating* Z, const floating* T,
                        const floating* w, floating* dZ, int n, int c) noexcept nogil:
    """Mean binary cross-entropy of sigmoid(Z) against T, from the logits Z.

    max(z, 0) - z t + log(1 + exp(-|z|)) never overflows; the gradient is
    w_i (sigmoid(z) - t) / (n c).
    """
    cdef int i, j
    cdef Py_ssize_t k
    cdef double total = 0, row
    cdef floating z, wi = 1, inv = (<floating>1) / (<Py_ssize_t>n * c)
    for i in range(n):
        if w != NULL:
            wi = w[i]
        row = 0
        for j in range(c):
            k = <Py_ssize_t>i * c + j
            z = Z[k]
            if floating is float:
                row += (z if z > 0 else 0) - z * T[k] + log1pf(expf(-fabs(z)))
            else:
                row += (z if z > 0 else 0) - z * T[k] + log1p(exp(-fabs(z)))
            if dZ != NULL:
                dZ[k] = (_sigmoid(z) - T[k]) * (wi * inv)
        total += wi * row
    return total / (<Py_ssize_t>n * c)


cdef double mse_loss(const floating* P, const floating* T,
                     const floating* w, floating* dP, int n, int c) noexcept nogil:
    """Mean over all elements of w_i (P - T)^2; gradient 2 w_i (P - T) / (n c)."""
    cdef int i, j
    cdef Py_ssize_t k
    cdef double total = 0, row
    cdef floating d, wi = 1, scale = (<floating>2) / (<Py_ssize_t>n * c)
    for i in range(n):
        if w != NULL:
            wi = w[i]
        row = 0
        for j in range(c):
            k = <Py_ssize_t>i * c + j
            d = P[k] - T[k]
            row += d * d
            if dP != NULL:
                dP[k] = d * (wi * scale)
        total += wi * row
    return total / (<Py_ssize_t>n * c)



cdef double poisson_loss(const floating* Z, const floating* T,
                         const floating* w, floating* dZ, int n, int c) noexcept nogil:
    """Mean half Poisson deviance of exp(Z) against counts T, from the log-means Z.

    Per element exp(z) - t z + t log(t) - t (scikit-learn's "poisson" loss: zero
    where exp(z) == t). Computed from z itself, never from log(exp(z)) or t / exp(z),
    so it is exact wherever exp(z) is finite; the gradient is w_i (exp(z) - t) / (n c).
    """
    cdef int i, j
    cdef Py_ssize_t k
    cdef double total = 0, row
    cdef floating z, t, mu, wi = 1, inv = (<floating>1) / (<Py_ssize_t>n * c)
    for i in range(n):
        if w != NULL:
            wi = w[i]
        row = 0
        for j in range(c):
            k = <Py_ssize_t>i * c + j
            z = Z[k]
            t = T[k]
            mu = _exp(z)
            row += mu - t * z
            if t > 0:
                row += t * (_log(t) - 1)
            if dZ != NULL:
                dZ[k] = (mu - t) * (wi * inv)
        total += wi * row
    return total / (<Py_ssize_t>n * c)


cdef void exp_inplace(floating* z, Py_ssize_t n) noexcept nogil:
    """z[:] = exp(z): the inverse of the Poisson loss's log link, for inference."""
    cdef Py_ssize_t i
    for i in range(n):
        z[i] = _exp(z[i])

# ---------------------------------------------------------------- optimizers

cdef void sgd_step(floating* p, const floating* g, floating* v, Py_ssize_t n,
                   double lr, double momentum, bint nesterov, double weight_decay) noexcept nogil:
    """PyTorch's SGD: g += wd p; v = mu v + g; p -= lr (g + mu v if nesterov else v)."""
    cdef Py_ssize_t i
    cdef floating gi
    cdef floating lr_ = lr, mu = momentum, wd = weight_decay
    if mu == 0:
        if wd == 0:
            for i in range(n):
                p[i] -= lr_ * g[i]
        else:
            for i in range(n):
                p[i] -= lr_ * (g[i] + wd * p[i])
        return
    for i in range(n):
        gi = g[i] + wd * p[i]
        v[i] = mu * v[i] + gi
        if nesterov:
            p[i] -= lr_ * (gi + mu * v[i])
        else:
            p[i] -= lr_ * v[i]


cdef void adam_step(floating* p, const floating* g, floating* m, floating* v, Py_ssize_t n,
                    double lr, double beta1, double beta2, double eps,
                    double weight_decay, long step) noexcept nogil:
    """PyTorch's Adam (L2 weight decay added to the gradient, bias-corrected moments)."""
    cdef Py_ssize_t i
    cdef floating gi
    cdef floating b1 = beta1, b2 = beta2, wd = weight_decay, eps_ = eps
    cdef floating step_size = lr / (1 - beta1 ** step)
    cdef floating inv_sqrt_bc2 = 1 / sqrt(1 - beta2 ** step)
    for i in range(n):
        gi = g[i] + wd * p[i]
        m[i] = b1 * m[i] + (1 - b1) * gi
        v[i] = b2 * v[i] + (1 - b2) * gi * gi
        p[i] -= step_size * m[i] / (sqrt(v[i]) * inv_sqrt_bc2 + eps_)


# ================================================================ Python entry points
#
# Each checks the shapes it is given, raising ValueError while it holds the GIL,
# and only then runs the pointer kernel without it.

cdef inline void _require(bint ok, str message) except *:
    if not ok:
        raise ValueError(message)


def _check_act(int act):
    if not (0 <= act <= 3):
        raise ValueError(f"unknown activation code {act}")


def dense_forward(const floating[:, ::1] X, const floating[:, ::1] W, const floating[::1] b,
                  floating[:, ::1] Y, int act):
    """Y[:] = act(X @ W + b)."""
    _check_act(act)
    cdef int n = X.shape[0], n_in = X.shape[1], n_out = W.shape[1]
    _require(n > 0 and n_in > 0 and n_out > 0, "empty dimension")
    if not (W.shape[0] == n_in):
        raise ValueError(f"W has {W.shape[0]} rows, X has {n_in} columns")
    if not (b.shape[0] == n_out):
        raise ValueError(f"b has {b.shape[0]} entries, W has {n_out} columns")
    _require(Y.shape[0] == n and Y.shape[1] == n_out, "Y has the wrong shape")
    with nogil:
        dense_forward_ptr(&X[0, 0], &W[0, 0], &b[0], &Y[0, 0], n, n_in, n_out, act)


def dense_backward(const floating[:, ::1] X, const floating[:, ::1] W, const floating[:, ::1] Y,
                   floating[:, ::1] dZ, floating[:, ::1] dW, floating[::1] db,
                   floating[:, ::1] dX, int act):
    """From dZ = dL/dY (overwritten with dL/dZ) fill dW, db and, unless None, dX."""
    _check_act(act)
    cdef int n = X.shape[0], n_in = X.shape[1], n_out = W.shape[1]
    _require(n > 0 and n_in > 0 and n_out > 0, "empty dimension")
    if not (W.shape[0] == n_in):
        raise ValueError(f"W has {W.shape[0]} rows, X has {n_in} columns")
    _require(Y.shape[0] == n and Y.shape[1] == n_out, "Y has the wrong shape")
    _require(dZ.shape[0] == n and dZ.shape[1] == n_out, "dY has the wrong shape")
    _require(dW.shape[0] == n_in and dW.shape[1] == n_out, "dW has the wrong shape")
    _require(db.shape[0] == n_out, "db has the wrong shape")
    cdef floating* dX_ptr = NULL
    if dX is not None:
        _require(dX.shape[0] == n and dX.shape[1] == n_in, "dX has the wrong shape")
        dX_ptr = &dX[0, 0]
    with nogil:
        dense_backward_ptr(&X[0, 0], &W[0, 0], &Y[0, 0], &dZ[0, 0], &dW[0, 0], &db[0],
                           dX_ptr, n, n_in, n_out, act)


def activation_forward(floating[::1] z, int act):
    """Apply the activation in place to a flat array."""
    _check_act(act)
    if z.shape[0] == 0:
        return
    with nogil:
        activate(act, &z[0], z.shape[0])


def activation_backward(const floating[::1] y, floating[::1] dz, int act):
    """dz *= act'(y) in place, for flat arrays of one size."""
    _check_act(act)
    _require(y.shape[0] == dz.shape[0], "y and dz differ in size")
    if y.shape[0] == 0:
        return
    with nogil:
        backprop_activation(act, &y[0], &dz[0], y.shape[0])


def softmax(const floating[:, ::1] Z, floating[:, ::1] P):
    """P[:] = row-wise softmax of Z."""
    _require(Z.shape[0] > 0 and Z.shape[1] > 0, "empty logits")
    _require(P.shape[0] == Z.shape[0] and P.shape[1] == Z.shape[1], "P has the wrong shape")
    with nogil:
        softmax_rows(&Z[0, 0], &P[0, 0], Z.shape[0], Z.shape[1])


cdef const floating* _weights_ptr(const floating[::1] w, int n) except? NULL:
    if w is None:
        return NULL
    if not (w.shape[0] == n):
        raise ValueError(f"sample_weight has {w.shape[0]} entries, expected {n}")
    return &w[0]


def softmax_cross_entropy_labels(const floating[:, ::1] Z, const Py_ssize_t[::1] labels,
                                 floating[:, ::1] dZ, const floating[::1] weights=None):
    """Mean softmax cross-entropy for integer labels; fills dZ unless it is None."""
    cdef int n = Z.shape[0], c = Z.shape[1], i
    _require(n > 0 and c > 0, "empty logits")
    _require(labels.shape[0] == n, "labels and logits differ in length")
    for i in range(n):
        if not (0 <= labels[i] < c):
            raise ValueError(f"label {labels[i]} is outside [0, {c})")
    cdef floating* d = NULL
    if dZ is not None:
        _require(dZ.shape[0] == n and dZ.shape[1] == c, "dZ has the wrong shape")
        d = &dZ[0, 0]
    cdef const floating* w = _weights_ptr(weights, n)
    cdef double loss
    with nogil:
        loss = softmax_xent_labels(&Z[0, 0], &labels[0], w, d, n, c)
    return loss


cdef void _check_pair(const floating[:, ::1] Z, const floating[:, ::1] T,
                      floating[:, ::1] dZ) except *:
    _require(Z.shape[0] > 0 and Z.shape[1] > 0, "empty input")
    _require(T.shape[0] == Z.shape[0] and T.shape[1] == Z.shape[1],
             "targets and outputs differ in shape")
    if dZ is not None:
        _require(dZ.shape[0] == Z.shape[0] and dZ.shape[1] == Z.shape[1],
                 "the gradient has the wrong shape")


cdef double _target_loss(int loss, const floating[:, ::1] Z, const floating[:, ::1] T,
                         floating[:, ::1] dZ, const floating[::1] weights) except *:
    """The entry points below: check (Z, T, dZ, weights), then the fused loss without the GIL."""
    _check_pair(Z, T, dZ)
    cdef const floating* w = _weights_ptr(weights, Z.shape[0])
    cdef floating* d = NULL if dZ is None else &dZ[0, 0]
    cdef int n = Z.shape[0], c = Z.shape[1]   # the loss kernels take int sizes
    with nogil:
        if loss == SOFTMAX_CROSS_ENTROPY:
            return softmax_xent_targets(&Z[0, 0], &T[0, 0], w, d, n, c)
        if loss == BINARY_CROSS_ENTROPY:
            return sigmoid_bce(&Z[0, 0], &T[0, 0], w, d, n, c)
        if loss == POISSON:
            return poisson_loss(&Z[0, 0], &T[0, 0], w, d, n, c)
        return mse_loss(&Z[0, 0], &T[0, 0], w, d, n, c)


def softmax_cross_entropy_targets(const floating[:, ::1] Z, const floating[:, ::1] T,
                                  floating[:, ::1] dZ, const floating[::1] weights=None):
    """Mean softmax cross-entropy for target rows; fills dZ unless it is None."""
    return _target_loss(SOFTMAX_CROSS_ENTROPY, Z, T, dZ, weights)


def sigmoid_binary_cross_entropy(const floating[:, ::1] Z, const floating[:, ::1] T,
                                 floating[:, ::1] dZ, const floating[::1] weights=None):
    """Mean binary cross-entropy from logits; fills dZ unless it is None."""
    return _target_loss(BINARY_CROSS_ENTROPY, Z, T, dZ, weights)


def mean_squared_error(const floating[:, ::1] P, const floating[:, ::1] T,
                       floating[:, ::1] dP, const floating[::1] weights=None):
    """Mean squared error over all elements; fills dP unless it is None."""
    return _target_loss(MSE, P, T, dP, weights)


def poisson_deviance(const floating[:, ::1] Z, const floating[:, ::1] T,
                     floating[:, ::1] dZ, const floating[::1] weights=None):
    """Mean half Poisson deviance of exp(Z) against T (log link); fills dZ unless it is None."""
    return _target_loss(POISSON, Z, T, dZ, weights)


def sgd_update(floating[::1] param, const floating[::1] grad, floating[::1] velocity,
               double lr, double momentum, bint nesterov, double weight_decay):
    """In-place SGD step on flat arrays (velocity unused when momentum is 0)."""
    cdef Py_ssize_t n = param.shape[0]
    _require(grad.shape[0] == n, "grad and param differ in size")
    _require(velocity.shape[0] == n, "velocity and param differ in size")
    if n == 0:
        return
    with nogil:
        sgd_step(&param[0], &grad[0], &velocity[0], n, lr, momentum, nesterov, weight_decay)


def adam_update(floating[::1] param, const floating[::1] grad, floating[::1] m,
                floating[::1] v, long step, double lr, double beta1, double beta2,
                double eps, double weight_decay):
    """In-place Adam step on flat arrays; step counts from 1."""
    cdef Py_ssize_t n = param.shape[0]
    _require(grad.shape[0] == n and m.shape[0] == n and v.shape[0] == n,
             "grad, m, v and param differ in size")
    _require(step >= 1, "step counts from 1")
    if n == 0:
        return
    with nogil:
        adam_step(&param[0], &grad[0], &m[0], &v[0], n, lr, beta1, beta2, eps,
                  weight_decay, step)


# ---------------------------------------------------------------- image entry points

cdef int _geometry(object geometry, int* g, int kind) except -1:
    """Copy a geometry list into g[16] and check it for its layer kind."""
    cdef int j, length
    if not isinstance(geometry, (list, tuple)) or len(geometry) > 16:
        raise ValueError("geometry must be a list of at most 16 ints")
    length = len(geometry)
    for j in range(length):
        g[j] = geometry[j]
    if kind == LAYER_CONV2D:
        check_conv_geometry(g, length)
    else:
        check_pool_geometry(g, length)
    return 0


cdef inline void _rows(object name, Py_ssize_t got_n, Py_ssize_t got_d, Py_ssize_t n,
                       Py_ssize_t d) except *:
    if got_n != n or got_d != d:
        raise ValueError(f"{name} has shape ({got_n}, {got_d}), expected ({n}, {d})")


def conv2d_forward(const floating[:, ::1] X, const floating[::1] W, const floating[::1] b,
                   floating[:, ::1] Y, list geometry, int act):
    """Y[:] = act(conv(X) + b); X (n, H*W*C) rows, W flat (KH*KW*C*CO), Y (n, OH*OW*CO)."""
    _check_act(act)
    cdef int g[16]
    _geometry(geometry, g, LAYER_CONV2D)
    cdef int n = X.shape[0], K = g[G_KH] * g[G_KW] * g[G_C], P = g[G_OH] * g[G_OW]
    _require(n > 0, "empty X")
    _rows("X", X.shape[0], X.shape[1], n, <Py_ssize_t>g[G_H] * g[G_W] * g[G_C])
    _rows("Y", Y.shape[0], Y.shape[1], n, <Py_ssize_t>P * g[G_CO])
    _require(W.shape[0] == <Py_ssize_t>K * g[G_CO], "W has the wrong size")
    _require(b.shape[0] == g[G_CO], "b has the wrong size")
    # Columns for a block of samples at a time: about 4 MB, at least one sample.
    cdef int blk = <int>max(1, min(<Py_ssize_t>n, (4 << 20) // (<Py_ssize_t>P * K * sizeof(floating))))
    cdef floating* cols = <floating*>malloc(<Py_ssize_t>blk * P * K * sizeof(floating))
    if cols == NULL:
        raise MemoryError()
    with nogil:
        conv_forward_ptr(&X[0, 0], &W[0], &b[0], &Y[0, 0], cols, n, blk, False, g, act)
    free(cols)


def conv2d_backward_weight(const floating[:, ::1] X, const floating[:, ::1] dZ,
                           floating[::1] dW, floating[::1] db, list geometry):
    """dW (flat) = im2col(X)^T dZ and db = column sums of dZ (n*OH*OW, CO)."""
    cdef int g[16]
    _geometry(geometry, g, LAYER_CONV2D)
    cdef int n = X.shape[0], K = g[G_KH] * g[G_KW] * g[G_C], P = g[G_OH] * g[G_OW]
    _require(n > 0, "empty X")
    _require(<long long>n * P * K <= INT_MAX_, "batch too large for one product")
    _rows("X", X.shape[0], X.shape[1], n, <Py_ssize_t>g[G_H] * g[G_W] * g[G_C])
    _rows("dZ", dZ.shape[0], dZ.shape[1], n * P, g[G_CO])
    _require(dW.shape[0] == <Py_ssize_t>K * g[G_CO], "dW has the wrong size")
    _require(db.shape[0] == g[G_CO], "db has the wrong size")
    cdef floating* cols = <floating*>malloc(<Py_ssize_t>n * P * K * sizeof(floating))
    if cols == NULL:
        raise MemoryError()
    with nogil:
        im2col_ptr(&X[0, 0], cols, n, <Py_ssize_t>n * P, g)
        conv_backward_ptr(<floating*>NULL, <floating*>&dZ[0, 0], cols, &dW[0], &db[0],
                          <floating*>NULL, n, n, g)
    free(cols)


def conv2d_backward_input(const floating[:, ::1] dZ, const floating[::1] W,
                          floating[:, ::1] dX, list geometry):
    """dX (n, H*W*C) = col2im(dZ W^T), dZ (n*OH*OW, CO)."""
    cdef int g[16]
    _geometry(geometry, g, LAYER_CONV2D)
    cdef int n = dX.shape[0], K = g[G_KH] * g[G_KW] * g[G_C], P = g[G_OH] * g[G_OW]
    cdef int CO = g[G_CO]
    _require(n > 0, "empty dX")
    _require(<long long>n * P * K <= INT_MAX_, "batch too large for one product")
    _rows("dX", dX.shape[0], dX.shape[1], n, <Py_ssize_t>g[G_H] * g[G_W] * g[G_C])
    _rows("dZ", dZ.shape[0], dZ.shape[1], n * P, CO)
    _require(W.shape[0] == <Py_ssize_t>K * CO, "W has the wrong size")
    cdef floating* cols = <floating*>malloc(<Py_ssize_t>n * P * K * sizeof(floating))
    if cols == NULL:
        raise MemoryError()
    with nogil:
        gemm(False, True, K, n * P, CO, <floating>1, &W[0], CO, &dZ[0, 0], CO, <floating>0,
             cols, n * P)
        col2im_ptr(cols, &dX[0, 0], n, <Py_ssize_t>n * P, g)
    free(cols)


def maxpool2d_forward(const floating[:, ::1] X, floating[:, ::1] Y, int32_t[:, ::1] argmax,
                      list geometry):
    """Y (n, OH*OW*C) = window maxima of X (n, H*W*C); argmax = their offsets in the sample."""
    cdef int g[16]
    _geometry(geometry, g, LAYER_MAXPOOL2D)
    cdef int n = X.shape[0]
    cdef Py_ssize_t out_size = <Py_ssize_t>g[G_OH] * g[G_OW] * g[G_C]
    _require(n > 0, "empty X")
    _rows("X", X.shape[0], X.shape[1], n, <Py_ssize_t>g[G_H] * g[G_W] * g[G_C])
    _rows("Y", Y.shape[0], Y.shape[1], n, out_size)
    _rows("argmax", argmax.shape[0], argmax.shape[1], n, out_size)
    with nogil:
        maxpool_forward_ptr(&X[0, 0], &Y[0, 0], &argmax[0, 0], n, g)


def maxpool2d_backward(const floating[:, ::1] dY, const int32_t[:, ::1] argmax,
                       floating[:, ::1] dX, list geometry):
    """dX (n, H*W*C) = zeros, plus each of dY (n, OH*OW*C) at its argmax offset."""
    cdef int g[16]
    _geometry(geometry, g, LAYER_MAXPOOL2D)
    cdef int n = dY.shape[0]
    cdef Py_ssize_t i, j, in_size = <Py_ssize_t>g[G_H] * g[G_W] * g[G_C]
    cdef Py_ssize_t out_size = <Py_ssize_t>g[G_OH] * g[G_OW] * g[G_C]
    _require(n > 0, "empty dY")
    _rows("dY", dY.shape[0], dY.shape[1], n, out_size)
    _rows("argmax", argmax.shape[0], argmax.shape[1], n, out_size)
    _rows("dX", dX.shape[0], dX.shape[1], n, in_size)
    cdef bint ok = True
    with nogil:
        for i in range(n):
            for j in range(out_size):
                ok &= 0 <= argmax[i, j] < in_size
    _require(ok, f"argmax holds offsets outside [0, {in_size})")
    with nogil:
        maxpool_backward_ptr(&dY[0, 0], &argmax[0, 0], &dX[0, 0], n, g)


def dropout_forward(const floating[::1] X, floating[::1] Y, uint8_t[::1] mask, uint64_t key,
                    uint64_t counter, int index, int threshold):
    """Y = X * mask / keep-probability, the mask drawn from (key, counter, index); flat arrays."""
    cdef Py_ssize_t size = X.shape[0]
    _require(Y.shape[0] == size and mask.shape[0] == size, "X, Y and mask differ in size")
    _require(0 <= threshold < 2147483647, "threshold outside [0, 2**31)")
    _require(index >= 0, "negative layer index")
    if size == 0:
        return
    with nogil:
        dropout_forward_ptr(&X[0], &Y[0], &mask[0], size, key, counter, index, threshold)


def dropout_backward(const floating[::1] dY, const uint8_t[::1] mask, floating[::1] dX,
                     int threshold):
    """dX = dY * mask / keep-probability; flat arrays."""
    cdef Py_ssize_t size = dY.shape[0]
    _require(dX.shape[0] == size and mask.shape[0] == size, "dY, dX and mask differ in size")
    _require(0 <= threshold < 2147483647, "threshold outside [0, 2**31)")
    if size == 0:
        return
    with nogil:
        dropout_backward_ptr(&dY[0], &mask[0], &dX[0], size, threshold)


def compiled_codes():
    """The activation, loss, output, layer and optimizer codes as compiled into the core."""
    return _compiled_codes()
