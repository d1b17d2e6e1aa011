# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Packed-weight float32 kernels for the dense layer, direct convolution kernels, and
the kernel level in use.

The kernels themselves are C (``_packed_kernels.c``, ``_conv_kernels.c``): AVX-512F and AVX2+FMA versions
compiled with per-function target attributes, chosen at run time. The level starts
at the best one the CPU supports (``fnn_cpu_level``: CPUID and the OS's saved vector
state) and can only be lowered (``set_level``), so that the lower levels can be
tested on any machine that has the higher ones.

The ``def`` functions are test entry points: each checks its arrays, then runs one
kernel on them at the level asked.
"""
cimport numpy as cnp
import numpy as np

cnp.import_array()

from fastnn._core._kernels cimport (
    check_conv_geometry, check_pool_geometry, IDENTITY, SIGMOID, TANH, RELU,
)

from libc.stdint cimport uint8_t, uint16_t, int32_t

cdef extern from "_packed_kernels.h" nogil:
    ctypedef struct fnn_team:
        pass
    ctypedef void (*fnn_act_fn)(int act, float* z, Py_ssize_t n)
    fnn_team* fnn_team_start()
    void fnn_team_stop(fnn_team* team)
    int fnn_cpu_level()
    size_t fnn_packed_size(int n_in, int n_out)
    void fnn_pack(const float* W, float* P, int n_in, int n_out)
    void fnn_unpack(const float* P, float* W, int n_in, int n_out)
    void fnn_pack_transposed(const float* P, float* PT, int n_in, int n_out, fnn_team* team)
    void fnn_dense_forward(int level, const float* X, Py_ssize_t ldx, const float* P,
                           const float* b, float* Y, Py_ssize_t ldy, int n, int n_in,
                           int n_out, int relu, fnn_act_fn act_fn, int act,
                           const fnn_active* inputs, fnn_team* team)
    void fnn_rows_forward(int level, const float* X, Py_ssize_t ldx, const float* W,
                          Py_ssize_t ldw, const float* b, float* Y, Py_ssize_t ldy, int n,
                          int n_in, int n_out, int relu)
    void fnn_dense_wgrad(int level, const float* X, Py_ssize_t ldx, const float* dZ,
                         Py_ssize_t ldz, float* P, float* G, int n, int n_in, int n_out,
                         int mode, float lr, float mu, float wd, const fnn_active* inputs,
                         fnn_team* team)
    void fnn_gather_u8(int level, const uint8_t* X, Py_ssize_t d, const Py_ssize_t* rows,
                       int nb, float* out, float scale, const fnn_active* inputs,
                       fnn_team* team)
    void fnn_team_input(fnn_team* team, int level, const uint8_t* X, Py_ssize_t d,
                        const Py_ssize_t* rows, int nb, float* out, float scale,
                        const fnn_active* inputs, int n_out, const Py_ssize_t* next,
                        int n_next)
    int fnn_batch_inputs(int level, const uint8_t* X, Py_ssize_t d, const Py_ssize_t* rows,
                         int nb, fnn_active* act)
    void fnn_team_batch_inputs(fnn_team* team, int level, const uint8_t* X, Py_ssize_t d,
                               const Py_ssize_t* rows, int nb, fnn_active* act)
    void fnn_team_wait(fnn_team* team)
    void fnn_prefetch_rows(const uint8_t* X, Py_ssize_t d, const Py_ssize_t* rows, int nb)

cdef extern from "_loss_kernels.h" nogil:
    double fnn_softmax_xent_labels(int level, const float* Z, const Py_ssize_t* labels,
                                   const float* w, float* dZ, int n, int c)

cdef extern from "_conv_kernels.h" nogil:
    int fnn_conv_direct(int level, const int* g)
    size_t fnn_conv_scratch_floats(const int* g)
    void fnn_conv_forward(int level, const float* X, const float* W, const float* b, float* Y,
                          int n, const int* g, fnn_act_fn act_fn, int act, float* scratch,
                          fnn_team* team)
    void fnn_conv_wgrad(int level, const float* X, const float* dZ, float* dW, float* db,
                        int n, const int* g, float* scratch, fnn_team* team)
    int fnn_conv_pool_fuses(int level, const int* g, const int* pool)
    size_t fnn_conv_pool_wgrad_scratch_floats(const int* g)
    void fnn_conv_pool_wgrad(int level, const float* X, const float* dY, const int32_t* argmax,
                             const float* Y, int act, float* dW, float* db, int n, const int* g,
                             const int* pool, float* scratch, fnn_team* team)
    void fnn_conv_pool_forward(int level, const float* X, const float* W, const float* b,
                               float* Y, int32_t* argmax, int n, const int* g, const int* pool,
                               fnn_act_fn act_fn, int act, float* scratch, fnn_team* team)

cdef extern from "_pool_kernels.h" nogil:
    int FNN_ACT_IDENTITY, FNN_ACT_SIGMOID, FNN_ACT_TANH, FNN_ACT_RELU
    int fnn_pool_direct(int level)
    int fnn_pool_tiles(const int* g)
    void fnn_pool_forward(const float* X, float* Y, int32_t* argmax, int n, const int* g,
                          fnn_act_fn act_fn, int act, fnn_team* team)
    void fnn_pool_backward_act(const float* dY, const int32_t* argmax, const float* Y,
                               float* dZ, int act, int n, const int* g, fnn_team* team)

# The pooling kernels take the core's activation codes.
if (FNN_ACT_IDENTITY, FNN_ACT_SIGMOID, FNN_ACT_TANH, FNN_ACT_RELU) != (
        IDENTITY, SIGMOID, TANH, RELU):
    raise ImportError("fastnn: the pooling kernels' activation codes differ from the core's")

cdef int _supported = fnn_cpu_level()
cdef int _level = _supported
cdef int _threads = DEFAULT_THREADS


cdef int kernel_level() noexcept nogil:
    return _level


cdef int kernel_threads() noexcept nogil:
    return _threads


def get_threads():
    """1, or 2 when the packed kernels of a multi-threaded chunk use a helper thread."""
    return _threads


def set_threads(int n):
    """Let the packed kernels use a helper thread (2) in multi-threaded chunks, or not (1)."""
    global _threads
    if not (1 <= n <= 2):
        raise ValueError(f"the packed kernels use 1 or 2 threads, got {n}")
    _threads = n


cdef Py_ssize_t packed_size(int n_in, int n_out) noexcept nogil:
    return <Py_ssize_t>fnn_packed_size(n_in, n_out)


cdef void pack(const float* W, float* P, int n_in, int n_out) noexcept nogil:
    fnn_pack(W, P, n_in, n_out)


cdef void unpack(const float* P, float* W, int n_in, int n_out) noexcept nogil:
    fnn_unpack(P, W, n_in, n_out)


cdef void pack_transposed(const float* P, float* PT, int n_in, int n_out,
                          void* team) noexcept nogil:
    fnn_pack_transposed(P, PT, n_in, n_out, <fnn_team*>team)


cdef void packed_forward(int level, const float* X, Py_ssize_t ldx, const float* P,
                         const float* b, float* Y, Py_ssize_t ldy, int n, int n_in, int n_out,
                         bint relu, void* act_fn, int act, const fnn_active* inputs,
                         void* team) noexcept nogil:
    fnn_dense_forward(level, X, ldx, P, b, Y, ldy, n, n_in, n_out, relu, <fnn_act_fn>act_fn,
                      act, inputs, <fnn_team*>team)


cdef void rows_forward(int level, const float* X, Py_ssize_t ldx, const float* W, Py_ssize_t ldw,
                       const float* b, float* Y, Py_ssize_t ldy, int n, int n_in, int n_out,
                       bint relu) noexcept nogil:
    fnn_rows_forward(level, X, ldx, W, ldw, b, Y, ldy, n, n_in, n_out, relu)


cdef void packed_wgrad(int level, const float* X, Py_ssize_t ldx, const float* dZ,
                       Py_ssize_t ldz, float* P, float* G, int n, int n_in, int n_out,
                       int mode, float lr, float mu, float wd, const fnn_active* inputs,
                       void* team) noexcept nogil:
    fnn_dense_wgrad(level, X, ldx, dZ, ldz, P, G, n, n_in, n_out, mode, lr, mu, wd, inputs,
                    <fnn_team*>team)


cdef void* team_start() noexcept nogil:
    return fnn_team_start()


cdef void team_stop(void* team) noexcept nogil:
    fnn_team_stop(<fnn_team*>team)


cdef void gather_u8(int level, const uint8_t* X, Py_ssize_t d, const Py_ssize_t* rows, int nb,
                    float* out, float scale, void* team, int copies,
                    const fnn_active* inputs, const Py_ssize_t* next,
                    int n_next) noexcept nogil:
    if copies > 0:
        fnn_team_input(<fnn_team*>team, level, X, d, rows, nb, out, scale, inputs, copies,
                       next, n_next)
    else:
        fnn_gather_u8(level, X, d, rows, nb, out, scale, inputs, <fnn_team*>team)
        fnn_prefetch_rows(X, d, next, n_next)


cdef void team_batch_inputs(void* team, int level, const uint8_t* X, Py_ssize_t d,
                            const Py_ssize_t* rows, int nb, fnn_active* act) noexcept nogil:
    fnn_team_batch_inputs(<fnn_team*>team, level, X, d, rows, nb, act)


cdef void team_wait(void* team) noexcept nogil:
    fnn_team_wait(<fnn_team*>team)


cdef double softmax_xent_labels_simd(int level, const float* Z, const Py_ssize_t* labels,
                                     const float* w, float* dZ, int n, int c) noexcept nogil:
    return fnn_softmax_xent_labels(level, Z, labels, w, dZ, n, c)


cdef bint conv_direct(int level, const int* g) noexcept nogil:
    return fnn_conv_direct(level, g)


cdef Py_ssize_t conv_scratch_floats(const int* g) noexcept nogil:
    return <Py_ssize_t>fnn_conv_scratch_floats(g)


cdef void conv_forward_direct(int level, const float* X, const float* W, const float* b,
                              float* Y, int n, const int* g, act_fn_t act_fn, int act,
                              float* scratch, void* team) noexcept nogil:
    fnn_conv_forward(level, X, W, b, Y, n, g, <fnn_act_fn>act_fn, act, scratch, <fnn_team*>team)


cdef bint conv_pool_fuses(int level, const int* g, const int* pool) noexcept nogil:
    return fnn_conv_pool_fuses(level, g, pool)


cdef void conv_pool_forward_direct(int level, const float* X, const float* W, const float* b,
                                   float* Y, int32_t* argmax, int n, const int* g,
                                   const int* pool, act_fn_t act_fn, int act, float* scratch,
                                   void* team) noexcept nogil:
    fnn_conv_pool_forward(level, X, W, b, Y, argmax, n, g, pool, <fnn_act_fn>act_fn, act,
                          scratch, <fnn_team*>team)


cdef Py_ssize_t conv_pool_wgrad_scratch_floats(const int* g) noexcept nogil:
    return <Py_ssize_t>fnn_conv_pool_wgrad_scratch_floats(g)


cdef void conv_pool_wgrad_direct(int level, const float* X, const float* dY,
                                 const int32_t* argmax, const float* Y, int act, float* dW,
                                 float* db, int n, const int* g, const int* pool,
                                 float* scratch, void* team) noexcept nogil:
    fnn_conv_pool_wgrad(level, X, dY, argmax, Y, act, dW, db, n, g, pool, scratch,
                        <fnn_team*>team)


cdef void conv_wgrad_direct(int level, const float* X, const float* dZ, float* dW, float* db,
                            int n, const int* g, float* scratch, void* team) noexcept nogil:
    fnn_conv_wgrad(level, X, dZ, dW, db, n, g, scratch, <fnn_team*>team)


cdef bint pool_direct(int level) noexcept nogil:
    return fnn_pool_direct(level)


cdef bint pool_tiles(const int* g) noexcept nogil:
    return fnn_pool_tiles(g)


cdef void pool_forward_direct(const float* X, float* Y, int32_t* argmax, int n,
                              const int* g, act_fn_t act_fn, int act, void* team) noexcept nogil:
    fnn_pool_forward(X, Y, argmax, n, g, <fnn_act_fn>act_fn, act, <fnn_team*>team)


cdef void pool_backward_act_direct(const float* dY, const int32_t* argmax, const float* Y,
                                   float* dZ, int act, int n, const int* g, void* team) noexcept nogil:
    fnn_pool_backward_act(dY, argmax, Y, dZ, act, n, g, <fnn_team*>team)


def supported_level():
    """The best kernel level of this build on this machine (0 BLAS, 1 AVX2, 2 AVX-512)."""
    return _supported


def get_level():
    """The kernel level new training workspaces use."""
    return _level


def set_level(int level):
    """Use ``level`` (at most ``supported_level()``) for the workspaces made from now on."""
    global _level
    if not (LEVEL_BLAS <= level <= _supported):
        raise ValueError(f"kernel level {level} is not supported here (at most {_supported})")
    _level = level


# ---------------------------------------------------------------- test entry points

cdef int _check_level(int level) except -1:
    if not (LEVEL_AVX2 <= level <= _supported):
        raise ValueError(f"kernel level {level} is not available here")
    return 0


cdef Py_ssize_t _row_stride(const float[:, :] a, str name) except -1:
    """The row stride of a 2-D float32 view in elements; its rows must be contiguous."""
    if a.shape[1] > 1 and a.strides[1] != sizeof(float):
        raise ValueError(f"{name} must have contiguous rows")
    if a.strides[0] % sizeof(float) or a.strides[0] < 0:
        raise ValueError(f"{name} has an unusable row stride")
    return a.strides[0] // sizeof(float)


def pack_weights(const float[:, ::1] W, float[::1] P):
    """P[:] = W (n_in x n_out) in packed panels of 32 columns, zero padded."""
    cdef int n_in = W.shape[0], n_out = W.shape[1]
    if n_in < 1 or n_out < 1:
        raise ValueError("W is empty")
    if P.shape[0] != <Py_ssize_t>fnn_packed_size(n_in, n_out):
        raise ValueError(f"P has {P.shape[0]} floats, expected {fnn_packed_size(n_in, n_out)}")
    with nogil:
        fnn_pack(&W[0, 0], &P[0], n_in, n_out)


def unpack_weights(const float[::1] P, float[:, ::1] W):
    """W[:] = the matrix packed in P."""
    cdef int n_in = W.shape[0], n_out = W.shape[1]
    if n_in < 1 or n_out < 1:
        raise ValueError("W is empty")
    if P.shape[0] != <Py_ssize_t>fnn_packed_size(n_in, n_out):
        raise ValueError(f"P has {P.shape[0]} floats, expected {fnn_packed_size(n_in, n_out)}")
    with nogil:
        fnn_unpack(&P[0], &W[0, 0], n_in, n_out)


def pack_transposed_weights(const float[::1] P, float[::1] PT, int n_in, int n_out):
    """PT[:] = the packed form of W^T, W (n_in x n_out) being packed in P."""
    if n_in < 1 or n_out < 1:
        raise ValueError("sizes must be positive")
    if P.shape[0] != <Py_ssize_t>fnn_packed_size(n_in, n_out):
        raise ValueError("P does not hold an n_in x n_out matrix")
    if PT.shape[0] != <Py_ssize_t>fnn_packed_size(n_out, n_in):
        raise ValueError("PT does not hold an n_out x n_in matrix")
    with nogil:
        fnn_pack_transposed(&P[0], &PT[0], n_in, n_out, NULL)


def packed_size_of(int n_in, int n_out):
    """Floats of the packed form of an n_in x n_out matrix."""
    if n_in < 1 or n_out < 1:
        raise ValueError("sizes must be positive")
    return <Py_ssize_t>fnn_packed_size(n_in, n_out)


cdef int _check_threads(int threads) except -1:
    if not (1 <= threads <= 2):
        raise ValueError(f"threads must be 1 or 2, got {threads}")
    return 0


cdef int[::1] _compacted(object cols, int K, const float[::1] P, int n_out, fnn_active* act,
                         int* n_in):
    """act = the inputs ``cols`` (increasing, in [0, n_in)), one per column of X (K);
    n_in = the rows of the matrix packed in P, n_out wide. The array returned holds the
    list act points into."""
    cdef Py_ssize_t panel = (n_out + PANEL - 1) // PANEL * PANEL
    if n_out < 1 or P.shape[0] < panel or P.shape[0] % panel:
        raise ValueError("P does not hold a matrix that wide")
    n_in[0] = <int>(P.shape[0] // panel)
    cdef int[::1] c = np.ascontiguousarray(cols, dtype=np.intc)
    if c.shape[0] != K:
        raise ValueError(f"cols has {c.shape[0]} inputs, X has {K} columns")
    if K > FNN_COMPACT_MAX_INPUTS:
        raise ValueError(f"a compacted batch has at most {FNN_COMPACT_MAX_INPUTS} inputs")
    a = np.asarray(c)
    if K and (a[0] < 0 or a[K - 1] >= n_in[0] or (K > 1 and np.any(np.diff(a) <= 0))):
        raise ValueError("cols must increase and lie in [0, n_in)")
    act.n = K
    act.cols = &c[0]
    act.mask = NULL
    return c


def forward(const float[:, :] X, const float[::1] P, const float[::1] b, float[:, :] Y,
            bint relu, int level, int threads=1, cols=None):
    """Y[:] = X @ W + b (ReLU'd when relu), W packed in P; X and Y may have row strides.

    b may be None (no bias); W's width is then Y's. threads=2 shares the product
    with a helper thread made for this call (where the build has threads). With
    ``cols`` X is a compacted batch: its column q is W's input ``cols[q]``.
    """
    _check_level(level)
    _check_threads(threads)
    cdef int n = X.shape[0], n_in = X.shape[1], n_out = Y.shape[1]
    cdef fnn_active act
    cdef const fnn_active* inputs = NULL
    cdef int[::1] keep_cols
    if cols is not None:
        keep_cols = _compacted(cols, X.shape[1], P, n_out, &act, &n_in)
        inputs = &act
    if b is not None and b.shape[0] != n_out:
        raise ValueError("b and Y differ in width")
    cdef const float* bp = NULL
    if b is not None:
        bp = &b[0]
    if n < 1 or n_in < 1 or n_out < 1:
        raise ValueError("empty dimension")
    if P.shape[0] != <Py_ssize_t>fnn_packed_size(n_in, n_out):
        raise ValueError("P does not hold an n_in x n_out matrix")
    if Y.shape[0] != n or Y.shape[1] != n_out:
        raise ValueError("Y has the wrong shape")
    cdef Py_ssize_t ldx = _row_stride(X, "X"), ldy = _row_stride(Y, "Y")
    cdef fnn_team* team = fnn_team_start() if threads > 1 else NULL
    with nogil:
        fnn_dense_forward(level, &X[0, 0], ldx, &P[0], bp, &Y[0, 0], ldy, n, n_in, n_out,
                          relu, NULL, 0, inputs, team)
        fnn_team_stop(team)


def row_major_forward(const float[:, :] X, const float[:, :] W, const float[::1] b,
                      float[:, :] Y, bint relu, int level):
    """Y[:] = X @ W + b (ReLU'd when relu) by the few-rows kernel, W row-major.

    X, W and Y may have row strides (their rows must be contiguous); b may be None.
    """
    _check_level(level)
    cdef int n = X.shape[0], n_in = X.shape[1], n_out = W.shape[1]
    if n < 1 or n_in < 1 or n_out < 1:
        raise ValueError("empty dimension")
    if W.shape[0] != n_in:
        raise ValueError(f"W has {W.shape[0]} rows, X has {n_in} columns")
    if b is not None and b.shape[0] != n_out:
        raise ValueError("b and W differ in width")
    if Y.shape[0] != n or Y.shape[1] != n_out:
        raise ValueError("Y has the wrong shape")
    cdef const float* bp = NULL
    if b is not None:
        bp = &b[0]
    cdef Py_ssize_t ldx = _row_stride(X, "X"), ldw = _row_stride(W, "W"), ldy = _row_stride(Y, "Y")
    with nogil:
        fnn_rows_forward(level, &X[0, 0], ldx, &W[0, 0], ldw, bp, &Y[0, 0], ldy, n, n_in, n_out,
                         relu)


def weight_gradient(const float[:, :] X, const float[:, :] dZ, float[::1] P, float[::1] G,
                    int mode, float lr, float mu, float wd, int level, int threads=1,
                    cols=None):
    """Apply acc = X^T dZ to the packed W in P (and G) as ``mode`` says (see WG_*);
    ``cols`` as in ``forward``."""
    _check_level(level)
    _check_threads(threads)
    cdef int n = X.shape[0], n_in = X.shape[1], n_out = dZ.shape[1]
    cdef fnn_active act
    cdef const fnn_active* inputs = NULL
    cdef int[::1] keep_cols
    if cols is not None:
        keep_cols = _compacted(cols, X.shape[1], P, n_out, &act, &n_in)
        inputs = &act
    if n < 1 or n_in < 1 or n_out < 1:
        raise ValueError("empty dimension")
    if dZ.shape[0] != n:
        raise ValueError("X and dZ differ in rows")
    if not (WG_STORE <= mode <= WG_MOMENTUM):
        raise ValueError("unknown mode")
    cdef Py_ssize_t size = <Py_ssize_t>fnn_packed_size(n_in, n_out)
    if P.shape[0] != size or G.shape[0] != size:
        raise ValueError("P and G must hold an n_in x n_out matrix")
    cdef Py_ssize_t ldx = _row_stride(X, "X"), ldz = _row_stride(dZ, "dZ")
    cdef fnn_team* team = fnn_team_start() if threads > 1 else NULL
    with nogil:
        fnn_dense_wgrad(level, &X[0, 0], ldx, &dZ[0, 0], ldz, &P[0], &G[0], n, n_in, n_out,
                        mode, lr, mu, wd, inputs, team)
        fnn_team_stop(team)


def gather(const uint8_t[:, ::1] X, const Py_ssize_t[::1] rows, float[:, ::1] out, float scale,
           int level, int threads=1, bint compact=False):
    """out[i] = X[rows[i]] * scale, as the training loop gathers a uint8 batch.

    threads=2 shares a large batch's rows with a helper thread made for this call.
    With ``compact`` only the inputs not 0 in every row of the batch are gathered, as
    for a first dense layer: out[:, :len(cols)] = X[rows][:, cols] * scale (rows
    len(cols) apart in out's memory); returns cols (else None).
    """
    _check_threads(threads)
    if not (LEVEL_BLAS <= level <= _supported):
        raise ValueError(f"kernel level {level} is not available here")
    cdef Py_ssize_t i, n = X.shape[0], d = X.shape[1]
    cdef int nb = rows.shape[0]
    if nb < 1 or d < 1:
        raise ValueError("empty dimension")
    if out.shape[0] != nb or out.shape[1] != d:
        raise ValueError("out has the wrong shape")
    for i in range(nb):
        if not (0 <= rows[i] < n):
            raise ValueError("rows index outside X")
    cdef fnn_active act
    cdef const fnn_active* inputs = NULL
    cdef int[::1] cols
    cdef uint16_t[::1] mask
    if compact:
        cols = np.zeros(d + 16, np.intc)
        mask = np.zeros((d + 15) // 16, np.uint16)
        act.cols = &cols[0]
        act.mask = &mask[0]
        fnn_batch_inputs(level, &X[0, 0], d, &rows[0], nb, &act)
        inputs = &act
    cdef fnn_team* team = fnn_team_start() if threads > 1 else NULL
    with nogil:
        fnn_gather_u8(level, &X[0, 0], d, &rows[0], nb, &out[0, 0], scale, inputs, team)
        fnn_team_stop(team)
    return np.asarray(cols[:act.n]).copy() if compact else None


def softmax_cross_entropy_labels(const float[:, ::1] Z, const Py_ssize_t[::1] labels,
                                 float[:, ::1] dZ, const float[::1] weights, int level):
    """The vectorised softmax cross-entropy of training (see _loss_kernels.h): the mean
    loss, and dZ filled unless it is None; weights may be None."""
    _check_level(level)
    cdef int n = Z.shape[0], c = Z.shape[1], i
    if n < 1 or c < 1:
        raise ValueError("empty logits")
    if labels.shape[0] != n:
        raise ValueError("labels and logits differ in length")
    for i in range(n):
        if not (0 <= labels[i] < c):
            raise ValueError(f"label {labels[i]} is outside [0, {c})")
    cdef float* d = NULL
    if dZ is not None:
        if dZ.shape[0] != n or dZ.shape[1] != c:
            raise ValueError("dZ has the wrong shape")
        d = &dZ[0, 0]
    cdef const float* w = NULL
    if weights is not None:
        if weights.shape[0] != n:
            raise ValueError("weights and logits differ in length")
        w = &weights[0]
    cdef double loss
    with nogil:
        loss = fnn_softmax_xent_labels(level, &Z[0, 0], &labels[0], w, d, n, c)
    return loss


cdef int _conv_args(const int[::1] g, int level, Py_ssize_t n, Py_ssize_t x_cols,
                    Py_ssize_t w_size, Py_ssize_t y_cols) except -1:
    """Check a direct convolution's geometry, level and array sizes (test entry points)."""
    check_conv_geometry(&g[0], g.shape[0])
    _check_level(level)
    if not fnn_conv_direct(level, &g[0]):
        raise ValueError("the direct convolution kernels take stride 1 only")
    if n < 1:
        raise ValueError("no images")
    if x_cols != <Py_ssize_t>g[0] * g[1] * g[2]:
        raise ValueError("X's rows are not H*W*C long")
    if w_size != <Py_ssize_t>g[6] * g[7] * g[2] * g[5]:
        raise ValueError("W does not hold KH*KW*C*CO weights")
    if y_cols != <Py_ssize_t>g[3] * g[4] * g[5]:
        raise ValueError("the output's rows are not OH*OW*CO long")
    return 0


def conv_forward(const float[:, ::1] X, const float[::1] W, const float[::1] b,
                 float[:, ::1] Y, const int[::1] geometry, int level, int threads=1):
    """Y[:] = conv(X) + b by the direct kernels (no activation); geometry as the core's.
    threads=2 shares the images with a helper thread made for this call."""
    _conv_args(geometry, level, X.shape[0], X.shape[1], W.shape[0], Y.shape[1])
    _check_threads(threads)
    if Y.shape[0] != X.shape[0] or b.shape[0] != geometry[5]:
        raise ValueError("Y or b has the wrong shape")
    scratch = np.empty(fnn_conv_scratch_floats(&geometry[0]), np.float32)
    cdef float[::1] s = scratch
    cdef fnn_team* team = fnn_team_start() if threads > 1 else NULL
    with nogil:
        fnn_conv_forward(level, &X[0, 0], &W[0], &b[0], &Y[0, 0], <int>X.shape[0],
                         &geometry[0], NULL, 0, &s[0], team)
        fnn_team_stop(team)


cdef Py_ssize_t _conv_pool_args(const int[::1] g, const int[::1] pool, const float[:, ::1] X,
                                Py_ssize_t w_size, int threads) except -1:
    """Check a fused convolution and pool (test entry points); the pool's output width."""
    check_conv_geometry(&g[0], g.shape[0])
    check_pool_geometry(&pool[0], pool.shape[0])
    _conv_args(g, _supported, X.shape[0], X.shape[1], w_size, (<Py_ssize_t>g[3]) * g[4] * g[5])
    _check_threads(threads)
    if not fnn_conv_pool_fuses(_supported, &g[0], &pool[0]):
        raise ValueError("this convolution and pool do not fuse (or no AVX-512)")
    return (<Py_ssize_t>pool[3]) * pool[4] * pool[2]


def conv_pool_forward(const float[:, ::1] X, const float[::1] W, const float[::1] b,
                      float[:, ::1] Y, int32_t[:, ::1] argmax, const int[::1] geometry,
                      const int[::1] pool_geometry, int threads=1):
    """Y[:], argmax[:] = the 2 x 2 max-pool of conv(X) + b, fused (AVX-512; no activation);
    as conv_forward then pool_forward give them. threads as for conv_forward."""
    cdef Py_ssize_t cols = _conv_pool_args(geometry, pool_geometry, X, W.shape[0], threads)
    if (Y.shape[0] != X.shape[0] or Y.shape[1] != cols or argmax.shape[0] != X.shape[0]
            or argmax.shape[1] != cols or b.shape[0] != geometry[5]):
        raise ValueError("Y, argmax or b has the wrong shape")
    scratch = np.empty(fnn_conv_scratch_floats(&geometry[0]), np.float32)
    cdef float[::1] s = scratch
    cdef fnn_team* team = fnn_team_start() if threads > 1 else NULL
    with nogil:
        fnn_conv_pool_forward(_supported, &X[0, 0], &W[0], &b[0], &Y[0, 0], &argmax[0, 0],
                              <int>X.shape[0], &geometry[0], &pool_geometry[0], NULL, 0, &s[0],
                              team)
        fnn_team_stop(team)


def conv_pool_weight_gradient(const float[:, ::1] X, const float[:, ::1] dY,
                              const int32_t[:, ::1] argmax, const float[:, ::1] Y, int act,
                              float[::1] dW, float[::1] db, const int[::1] geometry,
                              const int[::1] pool_geometry, int threads=1):
    """dW[:], db[:] = the weight and bias gradients of a convolution through the 2 x 2
    max-pool after it (AVX-512), from the pool's gradient dY, argmax and activated output
    Y: as pool_backward_act then conv_weight_gradient give them. threads as for
    conv_forward."""
    cdef Py_ssize_t cols = _conv_pool_args(geometry, pool_geometry, X, dW.shape[0], threads)
    if act not in (IDENTITY, SIGMOID, TANH, RELU):
        raise ValueError(f"unknown activation code {act}")
    cdef Py_ssize_t i, k, n = X.shape[0]
    cdef Py_ssize_t size = (<Py_ssize_t>geometry[3]) * geometry[4] * geometry[5]
    if (dY.shape[0] != n or dY.shape[1] != cols or argmax.shape[0] != n
            or argmax.shape[1] != cols or Y.shape[0] != n or Y.shape[1] != cols):
        raise ValueError("dY, argmax or Y has the wrong shape")
    if db.shape[0] != geometry[5]:
        raise ValueError("db has the wrong shape")
    for i in range(n):
        for k in range(cols):
            if not (0 <= argmax[i, k] < size):
                raise ValueError("argmax points outside the image")
    scratch = np.empty(fnn_conv_pool_wgrad_scratch_floats(&geometry[0]), np.float32)
    cdef float[::1] s = scratch
    cdef fnn_team* team = fnn_team_start() if threads > 1 else NULL
    with nogil:
        fnn_conv_pool_wgrad(_supported, &X[0, 0], &dY[0, 0], &argmax[0, 0], &Y[0, 0], act,
                            &dW[0], &db[0], <int>n, &geometry[0], &pool_geometry[0], &s[0],
                            team)
        fnn_team_stop(team)


def conv_weight_gradient(const float[:, ::1] X, const float[:, ::1] dZ, float[::1] dW,
                         float[::1] db, const int[::1] geometry, int level, int threads=1):
    """dW[:], db[:] = the weight and bias gradients of X and dZ = dL/d(pre-activation),
    by the direct kernels (threads as for conv_forward)."""
    _conv_args(geometry, level, X.shape[0], X.shape[1], dW.shape[0], dZ.shape[1])
    _check_threads(threads)
    if dZ.shape[0] != X.shape[0]:
        raise ValueError("X and dZ differ in rows")
    if db.shape[0] != geometry[5]:
        raise ValueError("db must have one value per output channel")
    scratch = np.empty(fnn_conv_scratch_floats(&geometry[0]), np.float32)
    cdef float[::1] s = scratch
    cdef fnn_team* team = fnn_team_start() if threads > 1 else NULL
    with nogil:
        fnn_conv_wgrad(level, &X[0, 0], &dZ[0, 0], &dW[0], &db[0], <int>X.shape[0],
                       &geometry[0], &s[0], team)
        fnn_team_stop(team)


cdef int _pool_args(const int[::1] g, Py_ssize_t n, Py_ssize_t x_cols, Py_ssize_t y_cols) except -1:
    """Check a pooling kernel's geometry, the level and the array sizes (test entry points)."""
    check_pool_geometry(&g[0], g.shape[0])
    if not fnn_pool_direct(_supported):
        raise ValueError("the pooling kernels need AVX-512")
    if n < 1:
        raise ValueError("no images")
    if x_cols != <Py_ssize_t>g[0] * g[1] * g[2]:
        raise ValueError("the input's rows are not H*W*C long")
    if y_cols != <Py_ssize_t>g[3] * g[4] * g[2]:
        raise ValueError("the output's rows are not OH*OW*C long")
    return 0


def pool_forward(const float[:, ::1] X, float[:, ::1] Y, int32_t[:, ::1] argmax,
                 const int[::1] geometry, int threads=1):
    """Y[:], argmax[:] = each window's maximum and its offset in the image (AVX-512;
    threads as for conv_forward)."""
    _pool_args(geometry, X.shape[0], X.shape[1], Y.shape[1])
    _check_threads(threads)
    if Y.shape[0] != X.shape[0] or argmax.shape[0] != X.shape[0] or argmax.shape[1] != Y.shape[1]:
        raise ValueError("Y or argmax has the wrong shape")
    cdef fnn_team* team = fnn_team_start() if threads > 1 else NULL
    with nogil:
        fnn_pool_forward(&X[0, 0], &Y[0, 0], &argmax[0, 0], <int>X.shape[0], &geometry[0],
                         NULL, 0, team)
        fnn_team_stop(team)


def pool_backward_act(const float[:, ::1] dY, const int32_t[:, ::1] argmax, const float[:, ::1] Y,
                      float[:, ::1] dZ, int act, const int[::1] geometry, int threads=1):
    """dZ[:] = the pool's backward with the activation derivative of the layer before
    it (at y, the window maxima), for windows that tile the input (AVX-512; threads as
    for conv_forward)."""
    _pool_args(geometry, dZ.shape[0], dZ.shape[1], dY.shape[1])
    _check_threads(threads)
    if not fnn_pool_tiles(&geometry[0]):
        raise ValueError("the windows must tile the input (stride = window)")
    cdef Py_ssize_t n = dZ.shape[0]
    if (dY.shape[0] != n or Y.shape[0] != n or argmax.shape[0] != n
            or Y.shape[1] != dY.shape[1] or argmax.shape[1] != dY.shape[1]):
        raise ValueError("dY, Y and argmax must have the same shape")
    if act not in (IDENTITY, SIGMOID, TANH, RELU):
        raise ValueError(f"unknown activation code {act}")
    cdef Py_ssize_t i, size = argmax.shape[1], in_size = dZ.shape[1]
    for i in range(n * size):
        if not (0 <= argmax[i // size, i % size] < in_size):
            raise ValueError("argmax points outside the image")
    cdef fnn_team* team = fnn_team_start() if threads > 1 else NULL
    with nogil:
        fnn_pool_backward_act(&dY[0, 0], &argmax[0, 0], &Y[0, 0], &dZ[0, 0], act, <int>n,
                              &geometry[0], team)
        fnn_team_stop(team)
