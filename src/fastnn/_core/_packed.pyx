# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Packed-weight float32 kernels for the dense layer, and the kernel level in use.

The kernels themselves are C (``_packed_kernels.c``): AVX-512F and AVX2+FMA versions
compiled with per-function target attributes, chosen at run time. The level starts
at the best one the CPU supports (``fnn_cpu_level``: CPUID and the OS's saved vector
state) and can only be lowered (``set_level``), so that the lower levels can be
tested on any machine that has the higher ones.

The ``def`` functions are test entry points: each checks its arrays, then runs one
kernel on them at the level asked.
"""
cimport numpy as cnp

cnp.import_array()

from libc.stdint cimport uint8_t

cdef extern from "_packed_kernels.h" nogil:
    ctypedef struct fnn_team:
        pass
    fnn_team* fnn_team_start()
    void fnn_team_stop(fnn_team* team)
    int fnn_cpu_level()
    size_t fnn_packed_size(int n_in, int n_out)
    void fnn_pack(const float* W, float* P, int n_in, int n_out)
    void fnn_unpack(const float* P, float* W, int n_in, int n_out)
    void fnn_pack_transposed(const float* P, float* PT, int n_in, int n_out)
    void fnn_dense_forward(int level, const float* X, Py_ssize_t ldx, const float* P,
                           const float* b, float* Y, Py_ssize_t ldy, int n, int n_in,
                           int n_out, int relu, fnn_team* team)
    void fnn_rows_forward(int level, const float* X, Py_ssize_t ldx, const float* W,
                          Py_ssize_t ldw, const float* b, float* Y, Py_ssize_t ldy, int n,
                          int n_in, int n_out, int relu)
    void fnn_dense_wgrad(int level, const float* X, Py_ssize_t ldx, const float* dZ,
                         Py_ssize_t ldz, float* P, float* G, int n, int n_in, int n_out,
                         int mode, float lr, float mu, float wd, fnn_team* team)
    void fnn_gather_u8(int level, const uint8_t* X, Py_ssize_t d, const Py_ssize_t* rows,
                       int nb, float* out, float scale)

cdef int _supported = fnn_cpu_level()
cdef int _level = _supported
cdef int _threads = 1


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


cdef void pack_transposed(const float* P, float* PT, int n_in, int n_out) noexcept nogil:
    fnn_pack_transposed(P, PT, n_in, n_out)


cdef void packed_forward(int level, const float* X, Py_ssize_t ldx, const float* P,
                         const float* b, float* Y, Py_ssize_t ldy, int n, int n_in, int n_out,
                         bint relu, void* team) noexcept nogil:
    fnn_dense_forward(level, X, ldx, P, b, Y, ldy, n, n_in, n_out, relu, <fnn_team*>team)


cdef void rows_forward(int level, const float* X, Py_ssize_t ldx, const float* W, Py_ssize_t ldw,
                       const float* b, float* Y, Py_ssize_t ldy, int n, int n_in, int n_out,
                       bint relu) noexcept nogil:
    fnn_rows_forward(level, X, ldx, W, ldw, b, Y, ldy, n, n_in, n_out, relu)


cdef void packed_wgrad(int level, const float* X, Py_ssize_t ldx, const float* dZ,
                       Py_ssize_t ldz, float* P, float* G, int n, int n_in, int n_out,
                       int mode, float lr, float mu, float wd, void* team) noexcept nogil:
    fnn_dense_wgrad(level, X, ldx, dZ, ldz, P, G, n, n_in, n_out, mode, lr, mu, wd,
                    <fnn_team*>team)


cdef void* team_start() noexcept nogil:
    return fnn_team_start()


cdef void team_stop(void* team) noexcept nogil:
    fnn_team_stop(<fnn_team*>team)


cdef void gather_u8(int level, const uint8_t* X, Py_ssize_t d, const Py_ssize_t* rows, int nb,
                    float* out, float scale) noexcept nogil:
    fnn_gather_u8(level, X, d, rows, nb, out, scale)


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
        fnn_pack_transposed(&P[0], &PT[0], n_in, n_out)


def packed_size_of(int n_in, int n_out):
    """Floats of the packed form of an n_in x n_out matrix."""
    if n_in < 1 or n_out < 1:
        raise ValueError("sizes must be positive")
    return <Py_ssize_t>fnn_packed_size(n_in, n_out)


cdef int _check_threads(int threads) except -1:
    if not (1 <= threads <= 2):
        raise ValueError(f"threads must be 1 or 2, got {threads}")
    return 0


def forward(const float[:, :] X, const float[::1] P, const float[::1] b, float[:, :] Y,
            bint relu, int level, int threads=1):
    """Y[:] = X @ W + b (ReLU'd when relu), W packed in P; X and Y may have row strides.

    b may be None (no bias); W's width is then Y's. threads=2 shares the product
    with a helper thread made for this call (where the build has threads).
    """
    _check_level(level)
    _check_threads(threads)
    cdef int n = X.shape[0], n_in = X.shape[1], n_out = Y.shape[1]
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
                          relu, team)
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
                    int mode, float lr, float mu, float wd, int level, int threads=1):
    """Apply acc = X^T dZ to the packed W in P (and G) as ``mode`` says (see WG_*)."""
    _check_level(level)
    _check_threads(threads)
    cdef int n = X.shape[0], n_in = X.shape[1], n_out = dZ.shape[1]
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
                        mode, lr, mu, wd, team)
        fnn_team_stop(team)


def gather(const uint8_t[:, ::1] X, const Py_ssize_t[::1] rows, float[:, ::1] out, float scale,
           int level):
    """out[i] = X[rows[i]] * scale, as the training loop gathers a uint8 batch."""
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
    with nogil:
        fnn_gather_u8(level, &X[0, 0], d, &rows[0], nb, &out[0, 0], scale)
