# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled engine: one walk over the layers, for training in chunks and for inference.

``Workspace`` is made once per ``fit`` from its ``TrainingPlan``. It checks
every array the loop will touch (dtype, shape, contiguity, writeability),
keeps a reference to each for its own lifetime, so none can be freed under
the loop, and stores their pointers. ``Workspace.train(order, start, stop)``
then runs the mini-batches of ``order[start:stop]`` without the GIL: gather
the rows, walk the layers forward, the fused loss gradient, walk them back
with the optimizer update. Python calls it a chunk at a time and handles
signals, progress and callbacks in between.

``forward_chunks`` walks the layers forward over any number of rows, a chunk
of rows at a time, so predicting a whole test set is one call.

Each direction of the walk is one switch on the layer kind (``_layer_forward``,
``_layer_backward``); adding a kind adds a case to each.
"""
from cython cimport floating
cimport numpy as cnp
from libc.stdint cimport uint8_t, uint16_t, uint64_t, int32_t, uintptr_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy
from libc.math cimport isfinite, INFINITY
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from fastnn._core._blas cimport gemm
from fastnn._core._kernels cimport (
    IDENTITY, SIGMOID, TANH, RELU, MSE, BINARY_CROSS_ENTROPY, SOFTMAX_CROSS_ENTROPY, POISSON,
    OUT_RAW, OUT_SOFTMAX, OUT_SIGMOID, OUT_EXP, LAYER_DENSE, LAYER_CONV2D, LAYER_MAXPOOL2D,
    LAYER_FLATTEN, LAYER_DROPOUT, OPT_SGD, OPT_ADAM,
    activate, output_grad, dense_forward_ptr, softmax_rows,
    check_conv_geometry, check_pool_geometry, conv_forward_ptr, conv_backward_ptr,
    maxpool_forward_ptr, maxpool_backward_ptr, maxpool_backward_act_ptr,
    dropout_forward_ptr, dropout_backward_ptr,
    softmax_xent_labels, softmax_xent_targets, sigmoid_bce, mse_loss, poisson_loss, exp_inplace,
    sgd_step, adam_step,
)
from fastnn._core._packed cimport (
    LEVEL_BLAS, PANEL, MIN_PACKED_OUTPUTS, WG_STORE, WG_SGD, WG_MOMENTUM, kernel_level, packed_size, pack, unpack,
    packed_forward, packed_wgrad, gather_u8, pack_transposed, team_start, team_stop,
    fnn_active, team_batch_inputs, team_wait, FNN_COMPACT_MAX_INPUTS, softmax_xent_labels_simd,
    kernel_threads, rows_forward, conv_direct, conv_scratch_floats, conv_forward_direct,
    conv_wgrad_direct, pool_direct, pool_tiles, pool_forward_direct, pool_backward_act_direct,
    conv_pool_fuses, conv_pool_forward_direct, conv_pool_wgrad_scratch_floats,
    conv_pool_wgrad_direct, act_fn_t,
)

import numpy as np

cnp.import_array()

ctypedef fused input_t:
    uint8_t
    float
    double

cdef enum:
    # Inference of fewer rows than this reads a float32 dense layer's W as it is (the
    # few-rows kernel, fnn_rows_forward); from PREDICT_PACKED_ROWS on, W is packed for
    # the call; in between BLAS runs it (see benches/NOTES.md, "One-sample predict").
    PREDICT_ROWS_MAX = 32
    PREDICT_PACKED_ROWS = 64    # inference rows from which the dense layers run packed
    PREDICT_CHUNK_ROWS = 1024   # rows per chunk of Predictor.run (ops' PREDICT_CHUNK)
    PREDICT_PACKED_MAX_FLOATS = 16 * 1024 * 1024   # (64 MB) larger W stay on BLAS there
    MAX_PARAMS = 2      # parameters per layer (W and b)
    MAX_STATE = 2       # optimizer state arrays per parameter
    MAX_GEOMETRY = 16   # integers describing one layer's shapes


cdef extern from *:
    """
    #if (defined(__x86_64__) || defined(__i386__)) && defined(__SSE__)
    #include <xmmintrin.h>
    /* FTZ (bit 15) and DAZ (bit 6) of MXCSR: subnormal results and inputs as zero. */
    static unsigned int fastnn_flush_subnormals(void) {
        unsigned int old = _mm_getcsr();
        _mm_setcsr(old | 0x8040);
        return old;
    }
    static void fastnn_restore_fp_mode(unsigned int old) { _mm_setcsr(old); }
    #else
    static unsigned int fastnn_flush_subnormals(void) { return 0; }
    static void fastnn_restore_fp_mode(unsigned int old) { (void)old; }
    #endif
    """
    unsigned int fastnn_flush_subnormals() nogil
    void fastnn_restore_fp_mode(unsigned int old) nogil


cdef struct LayerC:
    int kind
    int act
    int n_in                        # features per sample, in and out
    int n_out
    int geometry[MAX_GEOMETRY]      # the layer's own sizes (see Layer.core_geometry)
    int n_params
    void* param[MAX_PARAMS]         # W, b
    void* grad[MAX_PARAMS]          # their gradients (when the update is not fused)
    void* state[MAX_PARAMS][MAX_STATE]
    Py_ssize_t size[MAX_PARAMS]     # elements of each parameter
    bint decay[MAX_PARAMS]          # weight decay acts on it (weights, not biases)
    void* A                         # the layer's output for one batch
    void* D                         # the loss gradient w.r.t. that output
    void* work                      # conv2d: im2col columns; maxpool2d: argmax; dropout: mask
    int blk                         # conv2d: samples whose columns ``work`` holds
    int dgeom[12]                   # conv2d: its input gradient as a convolution of dZ
    Py_ssize_t dscratch             # ... by the direct kernels: where in ``work`` the flipped
                                    # kernel goes (after their scratch), else 0 (col2im)
    int direct                      # float32 conv2d or maxpool2d by the kernels of
                                    # _conv_kernels.c / _pool_kernels.c: their level (for
                                    # conv2d ``work`` is their scratch); else 0 (im2col +
                                    # GEMM, the Cython pooling)
    int index                       # the layer's position (dropout hashes it)
    bint grad_ready                 # conv2d before a pool: D already holds dL/dZ, grad[1] db
    bint act_after_pool             # conv2d in training: its monotonic activation is applied
                                    # by the pool after it, to the window maxima (see
                                    # _use_act_after_pool)
    bint pool_fused                 # conv2d with act_after_pool, in training: its forward
                                    # also pools (a 2 x 2 pool), into the pool's output and
                                    # argmax, and never stores its own output
    bint pool_wgrad                 # ... and, as the first layer, its weight gradient makes
                                    # each image's dL/dZ from the pool's gradient (the pool's
                                    # backward does nothing)
    int packed                      # a float32 dense layer whose W (with its gradient and
                                    # optimizer state) is in 32-column panels during a
                                    # chunk: the kernel level (see _packed.pxd), else 0
    void* team                      # the chunk's helper thread for its packed kernels and
                                    # image kernels, or NULL
    void* transposed                # W^T packed, for the input gradient (one panel wide)
    int rows                        # inference on a few rows: a float32 dense layer whose
                                    # row-major W the few-rows kernel reads (its level), else 0
    const fnn_active* inputs        # a packed first layer in training: the inputs of the
                                    # batch its input (compacted) holds, or NULL (all)


cdef struct PackedCopy:
    float* flat             # the row-major array Python sees (W or its optimizer state)
    float* packed           # its panels, which the kernels read and update during a chunk
    int n_in, n_out


cdef struct Layout:
    # Where a dense layer's W, its gradient and W's optimizer state live: the arrays
    # Python sees (row-major) or their panels. Switched per chunk (Workspace.train).
    void* param0
    void* grad0
    void* state0[MAX_STATE]
    Py_ssize_t size0
    int packed


cdef inline void _save_layout(const LayerC* lay, Layout* out) noexcept nogil:
    cdef int k
    out.param0, out.grad0, out.size0, out.packed = lay.param[0], lay.grad[0], lay.size[0], lay.packed
    for k in range(MAX_STATE):
        out.state0[k] = lay.state[0][k]


cdef inline void _apply_layout(LayerC* lay, const Layout* lt) noexcept nogil:
    cdef int k
    lay.param[0], lay.grad[0], lay.size[0], lay.packed = lt.param0, lt.grad0, lt.size0, lt.packed
    for k in range(MAX_STATE):
        lay.state[0][k] = lt.state0[k]


cdef struct Optim:
    int kind
    double lr, momentum, weight_decay, beta1, beta2, eps
    bint nesterov
    long step


# ---------------------------------------------------------------- checks (with the GIL)

cdef inline void _require(bint ok, str message) except *:
    if not ok:
        raise ValueError(message)


cdef void* _data(object a, Py_ssize_t size, str name, int typenum, bint writeable) except NULL:
    """The data pointer of a C-contiguous array of this dtype and number of elements.

    Read through NumPy's C API rather than a typed memoryview: acquiring a
    memoryview parses the buffer format, which made up a good part of the
    latency of predicting one sample.
    """
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != typenum:
        raise TypeError(f"{name} has dtype {arr.dtype}, expected "
                        f"{np.dtype(cnp.PyArray_TypeObjectFromType(typenum)).name}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError(f"{name} must be a C-contiguous array")
    if cnp.PyArray_ISBYTESWAPPED(arr):
        raise ValueError(f"{name} must be in the machine's byte order, got {arr.dtype.str}")
    if writeable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} must be writeable")
    if cnp.PyArray_SIZE(arr) != size or size <= 0:
        raise ValueError(f"{name} has shape {a.shape}, expected {size} elements")
    return cnp.PyArray_DATA(arr)


cdef void* _param_data(object a, Py_ssize_t size, int l, int j, int typenum,
                       bint writeable) except NULL:
    """_data for parameter j of layers[l], its name formatted only when a check fails
    (formatting it on every call cost about a microsecond of each inference call)."""
    cdef cnp.ndarray arr
    if cnp.PyArray_Check(a):
        arr = <cnp.ndarray>a
        if (cnp.PyArray_TYPE(arr) == typenum and cnp.PyArray_IS_C_CONTIGUOUS(arr)
                and not cnp.PyArray_ISBYTESWAPPED(arr)
                and (not writeable or cnp.PyArray_ISWRITEABLE(arr))
                and cnp.PyArray_SIZE(arr) == size and size > 0):
            return cnp.PyArray_DATA(arr)
    return _data(a, size, f"layers[{l}] parameter {j}", typenum, writeable)


cdef list _checked_list(object items, Py_ssize_t n, str name):
    """``items`` as a new list, refused unless it has ``n`` entries.

    Every list is copied before use: its entries are indexed without bounds
    checks, and the copy keeps each entry alive whatever the caller does.
    """
    if not isinstance(items, (list, tuple)):
        raise TypeError(f"{name} must be a list, got {type(items).__name__}")
    cdef list out = list(items)
    if len(out) != n:
        raise ValueError(f"{name} has {len(out)} entries, expected {n}")
    return out


cdef LayerC* _layers_from(list kinds, list acts, list geometry, list params, int typenum,
                          bint writeable) except NULL:
    """A new array of layer descriptions (free it), each checked against the next.

    ``params`` is flat: each layer's parameters in order (W, b for Dense).
    """
    cdef int L = len(kinds), l, j, p = 0
    _require(L >= 1, "a network needs at least one layer")
    _require(len(acts) == L and len(geometry) == L, "one activation and geometry per layer")
    cdef LayerC* layers = <LayerC*>calloc(L, sizeof(LayerC))
    if layers == NULL:
        raise MemoryError()
    cdef LayerC* lay
    cdef list geo
    cdef int* g
    try:
        for l in range(L):
            lay = &layers[l]
            lay.kind = kinds[l]
            lay.act = acts[l]
            _require(0 <= lay.act <= RELU, f"layers[{l}]: unknown activation code {lay.act}")
            geo = _checked_list(geometry[l], len(geometry[l]), "geometry")
            _require(len(geo) <= MAX_GEOMETRY, "layer geometry too long")
            for j in range(len(geo)):
                lay.geometry[j] = geo[j]
                _require(lay.geometry[j] >= 0, f"layers[{l}]: sizes must not be negative")
            lay.index = l
            if lay.kind == LAYER_DENSE:
                _require(len(geo) == 2, "a dense layer's geometry is (n_in, n_out)")
                _require(geo[0] > 0 and geo[1] > 0, f"layers[{l}]: sizes must be positive")
                lay.n_in, lay.n_out = geo[0], geo[1]
                lay.n_params = 2
                lay.size[0] = <Py_ssize_t>lay.n_in * lay.n_out
                lay.size[1] = lay.n_out
                lay.decay[0], lay.decay[1] = True, False
            elif lay.kind == LAYER_CONV2D:
                check_conv_geometry(lay.geometry, len(geo))
                g = lay.geometry
                lay.n_in = g[0] * g[1] * g[2]
                lay.n_out = g[3] * g[4] * g[5]
                lay.n_params = 2
                lay.size[0] = <Py_ssize_t>g[6] * g[7] * g[2] * g[5]
                lay.size[1] = g[5]
                lay.decay[0], lay.decay[1] = True, False
            elif lay.kind == LAYER_MAXPOOL2D:
                check_pool_geometry(lay.geometry, len(geo))
                g = lay.geometry
                lay.n_in = g[0] * g[1] * g[2]
                lay.n_out = g[3] * g[4] * g[2]
                lay.n_params = 0
            elif lay.kind == LAYER_FLATTEN or lay.kind == LAYER_DROPOUT:
                _require(len(geo) == (1 if lay.kind == LAYER_FLATTEN else 2),
                         "a flatten layer's geometry is (size,), a dropout layer's (size, threshold)")
                _require(geo[0] > 0, f"layers[{l}]: sizes must be positive")
                if lay.kind == LAYER_DROPOUT:
                    _require(geo[1] < 2147483647, f"layers[{l}]: dropout threshold too large")
                lay.n_in = lay.n_out = geo[0]
                lay.n_params = 0
            else:
                raise ValueError(f"layers[{l}]: unknown layer kind {lay.kind}")
            _require(lay.kind == LAYER_DENSE or lay.kind == LAYER_CONV2D or lay.act == IDENTITY,
                     f"layers[{l}]: only dense and conv2d layers have an activation")
            if l > 0:
                _require(lay.n_in == layers[l - 1].n_out,
                         f"layers[{l}] takes {lay.n_in} features, layers[{l - 1}] gives "
                         f"{layers[l - 1].n_out}")
            _require(p + lay.n_params <= len(params), "fewer parameters than the layers have")
            for j in range(lay.n_params):
                lay.param[j] = _param_data(params[p], lay.size[j], l, j, typenum, writeable)
                p += 1
        _require(p == len(params), "more parameters than the layers have")
    except BaseException:
        free(layers)
        raise
    return layers


# ---------------------------------------------------------------- the walk (without the GIL)

cdef void _gather(const input_t* X, Py_ssize_t d, const Py_ssize_t* rows, int nb,
                  floating* out, floating scale, void* team, int copies=0,
                  const fnn_active* inputs=NULL, const Py_ssize_t* next=NULL,
                  int n_next=0) noexcept nogil:
    """out[i] = X[rows[i]] * scale, converting to the network's float type. uint8 images
    are shared with the chunk's helper thread ``team``, if any, or with ``copies`` > 0
    (the width of a packed dense first layer) gathered by both threads, the helper into
    its own copy (see fnn_team_input); with ``inputs`` (uint8 into float32) only those
    inputs, rows inputs.n apart. uint8 rows ``next[0 .. n_next)`` (the next batch's) are
    then requested into cache."""
    cdef int i
    cdef Py_ssize_t j
    cdef const input_t* src
    cdef floating* dst
    if input_t is uint8_t:
        if floating is float:
            if kernel_level() != LEVEL_BLAS or inputs != NULL:   # vectorised for the CPU
                gather_u8(kernel_level(), X, d, rows, nb, out, scale, team, copies, inputs,
                          next, n_next)
                return
    for i in range(nb):
        src = X + rows[i] * d
        dst = out + i * d
        if scale == 1:
            for j in range(d):
                dst[j] = <floating>src[j]
        else:
            for j in range(d):
                dst[j] = <floating>src[j] * scale


cdef void _layer_forward(const LayerC* lay, const floating* inp, floating* out,
                         int n, bint train, const uint64_t* rng) noexcept nogil:
    """One layer's output for n rows. Outside training pooling keeps no argmax and
    dropout is the identity; in training ``rng`` holds dropout's key and batch counter
    (NULL in a network without dropout)."""
    cdef act_fn_t act_fn
    if lay.kind == LAYER_DENSE:
        if floating is float:
            if lay.packed:
                # Other activations than ReLU on the outputs of each unit of the product,
                # by the thread that computed them.
                packed_forward(lay.packed, inp, lay.inputs.n if lay.inputs else lay.n_in,
                               <float*>lay.param[0], <float*>lay.param[1], out, lay.n_out, n,
                               lay.n_in, lay.n_out, lay.act == RELU,
                               <void*>_activate_f32 if lay.act != RELU and lay.act != IDENTITY
                               else NULL, lay.act, lay.inputs, lay.team)
                return
            if lay.rows:
                rows_forward(lay.rows, inp, lay.n_in, <float*>lay.param[0], lay.n_out,
                             <float*>lay.param[1], out, lay.n_out, n, lay.n_in, lay.n_out,
                             lay.act == RELU)
                if lay.act != RELU and lay.act != IDENTITY:
                    activate(lay.act, out, <Py_ssize_t>n * lay.n_out)
                return
        dense_forward_ptr(inp, <floating*>lay.param[0], <floating*>lay.param[1], out,
                          n, lay.n_in, lay.n_out, lay.act)
    elif lay.kind == LAYER_CONV2D:
        if floating is float:
            if lay.direct and train and lay.pool_fused:
                act_fn = _activate_f32 if lay.act != IDENTITY else <act_fn_t>NULL
                conv_pool_forward_direct(lay.direct, inp, <float*>lay.param[0],
                                         <float*>lay.param[1], <float*>(lay + 1).A,
                                         <int32_t*>(lay + 1).work, n, lay.geometry,
                                         (lay + 1).geometry, act_fn, lay.act,
                                         <float*>lay.work, lay.team)
                return
            if lay.direct:
                _conv_forward_direct(lay, inp, out, n)
                return
        conv_forward_ptr(inp, <floating*>lay.param[0], <floating*>lay.param[1], out,
                         <floating*>lay.work, n, lay.blk, train, lay.geometry, lay.act)
    elif lay.kind == LAYER_MAXPOOL2D:
        if floating is float:
            if lay.direct and train and lay.index > 0 and (lay - 1).pool_fused:
                return      # the convolution's forward pooled already
            if lay.direct and train:
                act_fn = NULL
                if lay.index > 0 and (lay - 1).act_after_pool:
                    act_fn = _activate_f32
                pool_forward_direct(inp, out, <int32_t*>lay.work, n, lay.geometry, act_fn,
                                    (lay - 1).act if act_fn != NULL else IDENTITY, lay.team)
                return
        maxpool_forward_ptr(inp, out, <int32_t*>lay.work if train else NULL, n,
                            lay.geometry)
    elif lay.kind == LAYER_DROPOUT and train and rng != NULL and lay.geometry[1] > 0:
        dropout_forward_ptr(inp, out, <uint8_t*>lay.work, <Py_ssize_t>n * lay.n_out,
                            rng[0], rng[1], lay.index, lay.geometry[1])
    elif out != inp:   # flatten, and dropout outside training
        memcpy(out, inp, <Py_ssize_t>n * lay.n_out * sizeof(floating))


cdef void _activate_f32(int act, float* z, Py_ssize_t n) noexcept nogil:
    activate(act, z, n)


cdef void _conv_forward_direct(const LayerC* lay, const float* inp, float* out,
                              int n) noexcept nogil:
    """A convolution by the direct kernels, each image activated after its product (in
    cache), the images shared with the chunk's helper thread if it has one."""
    cdef act_fn_t act_fn = NULL
    if lay.act != IDENTITY and not lay.act_after_pool:
        act_fn = _activate_f32
    conv_forward_direct(lay.direct, inp, <float*>lay.param[0], <float*>lay.param[1], out, n,
                        lay.geometry, act_fn, lay.act, <float*>lay.work, lay.team)


cdef void _conv_input_grad_direct(const LayerC* lay, const float* dZ, float* dX,
                                  int n) noexcept nogil:
    """dX = dL/d(input) of a stride-1 convolution, as the forward convolution of dZ with
    the kernel flipped and its channels swapped (lay.dgeom), on the direct kernels."""
    cdef const int* g = lay.geometry
    cdef int KH = g[6], KW = g[7], C = g[2], CO = g[5], i, j, c, co
    cdef const float* W = <const float*>lay.param[0]
    cdef float* scratch = <float*>lay.work
    cdef float* Wf = scratch + lay.dscratch
    cdef float* zeros = Wf + <Py_ssize_t>KH * KW * C * CO
    for i in range(KH):
        for j in range(KW):
            for co in range(CO):
                for c in range(C):
                    Wf[((<Py_ssize_t>i * KW + j) * CO + co) * C + c] = W[
                        ((<Py_ssize_t>(KH - 1 - i) * KW + (KW - 1 - j)) * C + c) * CO + co]
    for c in range(C):
        zeros[c] = 0
    conv_forward_direct(lay.direct, dZ, Wf, zeros, dX, n, lay.dgeom, NULL, IDENTITY, scratch,
                        lay.team)


cdef void _forward(LayerC* layers, int L, const floating* X, int n,
                   const uint64_t* rng) noexcept nogil:
    cdef int l
    cdef const floating* inp = X
    for l in range(L):
        _layer_forward(&layers[l], inp, <floating*>layers[l].A, n, True, rng)
        inp = <floating*>layers[l].A


cdef void _layer_backward(LayerC* lay, Optim* opt, const floating* inp, floating* dinp,
                          int n) noexcept nogil:
    """From lay.D = dL/d(output): dinp = dL/d(input) (unless NULL), and update the parameters.

    The input gradient is computed before the weights change. With plain or
    heavy-ball SGD a dense layer's weight gradient is never stored: the GEMM
    that forms X^T dZ adds it straight into the weights (alpha = -lr, beta = 1)
    or into the velocity (beta = momentum), which saves a write and a read of
    dW per layer.
    """
    cdef int n_in = lay.n_in, n_out = lay.n_out
    cdef Py_ssize_t i, nw = lay.size[0]
    cdef floating* W = <floating*>lay.param[0]
    cdef floating* dZ = <floating*>lay.D
    cdef floating* db = <floating*>lay.grad[1]
    cdef floating* v
    cdef floating lr = opt.lr, mu = opt.momentum, wd = opt.weight_decay
    cdef bint fold = opt.kind == OPT_SGD and not opt.nesterov
    cdef LayerC* prev
    if lay.kind == LAYER_CONV2D:
        # The weight gradient is stored, not folded into the update: W is small,
        # and the columns of the input gradient overwrite those of the forward.
        if not lay.grad_ready:
            output_grad(lay.act, <floating*>lay.A, dZ, db,
                        n * lay.geometry[3] * lay.geometry[4], lay.geometry[5])
        if floating is float:
            if lay.direct and lay.pool_wgrad:
                conv_pool_wgrad_direct(lay.direct, inp, <float*>(lay + 1).D,
                                       <int32_t*>(lay + 1).work, <float*>(lay + 1).A, lay.act,
                                       <float*>lay.grad[0], db, n, lay.geometry,
                                       (lay + 1).geometry, <float*>lay.work, lay.team)
                _update(lay, opt, 0, <floating>0)
                _update(lay, opt, 1, <floating>0)
                return
            if lay.direct:
                # The direct kernels read the input itself, not im2col columns; an
                # input gradient still goes through columns (then col2im).
                conv_wgrad_direct(lay.direct, inp, dZ, <float*>lay.grad[0], db, n,
                                  lay.geometry, <float*>lay.work, lay.team)
                if dinp != NULL and lay.dscratch:
                    _conv_input_grad_direct(lay, dZ, dinp, n)
                elif dinp != NULL:
                    conv_backward_ptr(W, dZ, <floating*>lay.work, <floating*>NULL,
                                      <floating*>NULL, dinp, n, lay.blk, lay.geometry)
                _update(lay, opt, 0, <floating>0)
                _update(lay, opt, 1, <floating>0)
                return
        conv_backward_ptr(W, dZ, <floating*>lay.work, <floating*>lay.grad[0], <floating*>NULL,
                          dinp, n, lay.blk, lay.geometry)
        _update(lay, opt, 0, <floating>0)
        _update(lay, opt, 1, <floating>0)
    elif lay.kind == LAYER_MAXPOOL2D:
        if lay.index > 0 and (lay - 1).pool_wgrad:
            return      # the convolution's weight gradient takes this layer's gradient
        if dinp != NULL and lay.index > 0 and (lay - 1).grad_ready:
            # The convolution before: its activation's derivative and bias gradient too.
            prev = lay - 1
            if floating is float:
                if lay.direct and pool_tiles(lay.geometry) and prev.direct:
                    # The bias gradient comes from the convolution's direct kernels.
                    pool_backward_act_direct(dZ, <int32_t*>lay.work, <float*>lay.A, dinp,
                                             prev.act, n, lay.geometry, lay.team)
                    return
            maxpool_backward_act_ptr(dZ, <int32_t*>lay.work, dinp, <floating*>prev.A,
                                     <floating*>prev.grad[1], prev.act, n, lay.geometry)
        elif dinp != NULL:
            maxpool_backward_ptr(dZ, <int32_t*>lay.work, dinp, n, lay.geometry)
    elif lay.kind == LAYER_DROPOUT:
        if dinp != NULL and lay.geometry[1] > 0:
            dropout_backward_ptr(dZ, <uint8_t*>lay.work, dinp, <Py_ssize_t>n * lay.n_out,
                                 lay.geometry[1])
        elif dinp != NULL:
            memcpy(dinp, dZ, <Py_ssize_t>n * lay.n_out * sizeof(floating))
    elif lay.kind == LAYER_FLATTEN:
        if dinp != NULL and dinp != dZ:
            memcpy(dinp, dZ, <Py_ssize_t>n * lay.n_out * sizeof(floating))
    elif lay.kind == LAYER_DENSE:
        output_grad(lay.act, <floating*>lay.A, dZ, db, n, n_out)
        if floating is float:
            if lay.packed:
                _dense_backward_packed(lay, opt, inp, dinp, n, fold)
                return
        if dinp != NULL:
            gemm(False, True, n, n_in, n_out, <floating>1, dZ, n_out, W, n_out,
                 <floating>0, dinp, n_in)
        if fold and mu == 0:
            if wd != 0:
                for i in range(nw):
                    W[i] *= 1 - lr * wd      # p -= lr * wd * p, then p -= lr * g
            gemm(True, False, n_in, n_out, n, -lr, inp, n_in, dZ, n_out, <floating>1, W, n_out)
            _update(lay, opt, 1, <floating>0)
        elif fold:
            v = <floating*>lay.state[0][0]   # v = mu v + g (+ wd p); p -= lr v
            gemm(True, False, n_in, n_out, n, <floating>1, inp, n_in, dZ, n_out, mu, v, n_out)
            if wd != 0:
                for i in range(nw):
                    v[i] += wd * W[i]
            for i in range(nw):
                W[i] -= lr * v[i]
            _update(lay, opt, 1, <floating>0)
        else:
            gemm(True, False, n_in, n_out, n, <floating>1, inp, n_in, dZ, n_out, <floating>0,
                 <floating*>lay.grad[0], n_out)
            _update(lay, opt, 0, <floating>0)
            _update(lay, opt, 1, <floating>0)


DEF _TRANSPOSED_MIN_ROWS = 32


cdef void _dense_backward_packed(LayerC* lay, Optim* opt, const float* inp, float* dinp,
                                 int n, bint fold) noexcept nogil:
    """The dense layer's backward step with W packed, after output_grad.

    The input gradient dZ @ W^T: W^T is packed afresh (32 x 32 block transposes)
    and the forward kernel computes it, with no BLAS call (and shared with the
    chunk's helper thread, if any), for a layer one panel wide (the output layers,
    10 classes say) and for wider ones from _TRANSPOSED_MIN_ROWS rows on; below,
    where the repacking would cost about as much as the product, wider layers make
    one BLAS product per panel (a panel is an n_in x 32 row-major block, so BLAS
    reads it in place). The weight-gradient
    kernel writes plain and heavy-ball SGD straight into the panels; any other
    update runs on the packed gradient, elementwise, as on the row-major one.
    """
    cdef int n_in = lay.n_in, n_out = lay.n_out, p, c0, nc
    cdef float* P = <float*>lay.param[0]
    cdef float* dZ = <float*>lay.D
    cdef float mu = opt.momentum
    cdef Py_ssize_t ldx = lay.inputs.n if lay.inputs else n_in
    if dinp != NULL and lay.transposed != NULL and (n_out <= PANEL or n >= _TRANSPOSED_MIN_ROWS):
        pack_transposed(P, <float*>lay.transposed, n_in, n_out, lay.team)
        packed_forward(lay.packed, dZ, n_out, <float*>lay.transposed, NULL, dinp, n_in, n,
                       n_out, n_in, False, NULL, 0, NULL, lay.team)
    elif dinp != NULL:
        for p in range((n_out + PANEL - 1) // PANEL):
            c0 = p * PANEL
            nc = n_out - c0 if n_out - c0 < PANEL else PANEL
            gemm(False, True, n, n_in, nc, <float>1, dZ + c0, n_out,
                 P + <Py_ssize_t>p * n_in * PANEL, PANEL, <float>(0 if p == 0 else 1),
                 dinp, n_in)
    if fold:
        packed_wgrad(lay.packed, inp, ldx, dZ, n_out, P, <float*>lay.state[0][0], n, n_in,
                     n_out, WG_SGD if mu == 0 else WG_MOMENTUM, opt.lr, mu, opt.weight_decay,
                     lay.inputs, lay.team)
        _update(lay, opt, 1, <float>0)
    else:
        packed_wgrad(lay.packed, inp, ldx, dZ, n_out, P, <float*>lay.grad[0], n, n_in, n_out,
                     WG_STORE, 0, 0, 0, lay.inputs, lay.team)
        _update(lay, opt, 0, <float>0)
        _update(lay, opt, 1, <float>0)


cdef void _update(LayerC* lay, Optim* opt, int j, floating dummy) noexcept nogil:
    """The optimizer step of parameter j from its stored gradient."""
    cdef double wd = opt.weight_decay if lay.decay[j] else 0.0
    if opt.kind == OPT_SGD:
        sgd_step(<floating*>lay.param[j], <floating*>lay.grad[j], <floating*>lay.state[j][0],
                 lay.size[j], opt.lr, opt.momentum, opt.nesterov, wd)
    else:
        adam_step(<floating*>lay.param[j], <floating*>lay.grad[j], <floating*>lay.state[j][0],
                  <floating*>lay.state[j][1], lay.size[j], opt.lr, opt.beta1, opt.beta2,
                  opt.eps, wd, opt.step)


cdef void _backward_and_update(LayerC* layers, int L, Optim* opt, const floating* X,
                               int n) noexcept nogil:
    """Backpropagate from the last layer's D (the loss gradient) and update every layer."""
    cdef int l
    if opt.kind == OPT_ADAM:
        opt.step += 1
    for l in range(L - 1, -1, -1):
        _layer_backward(&layers[l], opt,
                        X if l == 0 else <floating*>layers[l - 1].A,
                        NULL if l == 0 else <floating*>layers[l - 1].D, n)


cdef double _loss_and_grad(int loss, bint use_labels, const floating* out, floating* grad,
                           const Py_ssize_t* labels, const floating* targets,
                           const floating* weights, int n, int c) noexcept nogil:
    if loss == SOFTMAX_CROSS_ENTROPY:
        if use_labels:
            if floating is float:
                if kernel_level() != LEVEL_BLAS:    # the exponentials in vectors
                    return softmax_xent_labels_simd(kernel_level(), out, labels, weights,
                                                    grad, n, c)
            return softmax_xent_labels(out, labels, weights, grad, n, c)
        return softmax_xent_targets(out, targets, weights, grad, n, c)
    if loss == BINARY_CROSS_ENTROPY:
        return sigmoid_bce(out, targets, weights, grad, n, c)
    if loss == POISSON:
        return poisson_loss(out, targets, weights, grad, n, c)
    return mse_loss(out, targets, weights, grad, n, c)


cdef double _correct(int loss, bint use_labels, const floating* out, const Py_ssize_t* labels,
                     const floating* targets, const floating* weights, int n,
                     int c) noexcept nogil:
    """The (weighted) count of right predictions in a batch, from the logits the loss saw.

    Counted as ``Network.evaluate`` counts: the first maximum of each logit row
    against the label (or the first maximum of the target row) for softmax
    cross-entropy; for binary cross-entropy the fraction of a row's outputs
    with ``(z >= 0) == (t >= 0.5)``. Zero for MSE, which has no accuracy.
    """
    cdef int i, j, best, truth, hits
    cdef double count = 0, right
    cdef const floating* row
    cdef const floating* t
    if loss == SOFTMAX_CROSS_ENTROPY:
        for i in range(n):
            row = out + <Py_ssize_t>i * c
            best = 0
            for j in range(1, c):
                if row[j] > row[best]:
                    best = j
            if use_labels:
                truth = <int>labels[i]
            else:
                t = targets + <Py_ssize_t>i * c
                truth = 0
                for j in range(1, c):
                    if t[j] > t[truth]:
                        truth = j
            right = 1.0 if best == truth else 0.0
            count += right * weights[i] if weights != NULL else right
    elif loss == BINARY_CROSS_ENTROPY:
        for i in range(n):
            row = out + <Py_ssize_t>i * c
            t = targets + <Py_ssize_t>i * c
            hits = 0
            for j in range(c):
                hits += (row[j] >= 0) == (t[j] >= 0.5)
            right = <double>hits / c
            count += right * weights[i] if weights != NULL else right
    return count


# ---------------------------------------------------------------- training

cdef class Workspace:
    """Everything one ``fit`` trains with, checked once and kept alive for its length.

    Parameters
    ----------
    plan : fastnn.ops.plan.TrainingPlan
        The layers (kinds, activations, geometry), parameters, gradients,
        optimizer state, batch buffers, the loss, and the data (X, labels or
        targets, sample weights).
    """
    cdef LayerC* layers
    cdef int L, bs, c, loss, xtype, ftype, n_state
    cdef bint use_labels, use_weights
    cdef Py_ssize_t n_rows, d
    cdef double x_scale
    cdef Optim opt
    cdef object optimizer
    cdef list keep              # every array a pointer was taken from
    cdef void* X
    cdef void* Xb
    cdef const Py_ssize_t* labels
    cdef Py_ssize_t* labels_b
    cdef void* targets
    cdef void* targets_b
    cdef void* weights
    cdef void* weights_b
    cdef uint64_t* rng          # dropout's key and batch counter (NULL without dropout)
    cdef int level              # kernel level of the packed dense layers (0: BLAS)
    cdef readonly bint image_team   # convolutions on the direct kernels: chunks with
                                    # several threads share them with a helper thread
    cdef PackedCopy* packs      # what is copied into panels before a chunk and back after
    cdef int n_packs
    cdef Layout* layouts        # per layer: [2 l] row-major, [2 l + 1] in panels
    cdef fnn_active inputs[2]   # uint8 X and a packed first layer: each batch's inputs that
    cdef bint compact           # are not 0 in all its rows (compact: room made for them),
                                # this batch's and the next one's

    def __cinit__(self):
        self.layers = NULL
        self.packs = NULL
        self.layouts = NULL

    def __dealloc__(self):
        free(self.layers)
        free(self.packs)
        free(self.layouts)

    def __init__(self, plan):
        cdef int l, j, k, L, n_state, p = 0
        cdef Py_ssize_t i
        cdef const Py_ssize_t* lab
        cdef int ft = cnp.NPY_FLOAT32 if plan.dtype == "float32" else cnp.NPY_FLOAT64
        cdef LayerC* lay
        self.ftype = ft
        params = _checked_list(plan.params, len(plan.params), "params")
        self.layers = _layers_from(_checked_list(plan.kinds, len(plan.kinds), "kinds"),
                                   _checked_list(plan.acts, len(plan.kinds), "acts"),
                                   _checked_list(plan.geometry, len(plan.kinds), "geometry"),
                                   params, ft, True)
        self.L = L = len(plan.kinds)
        self.keep = params
        self.bs = plan.batch_size
        _require(self.bs > 0, "the batch size must be positive")
        self.c = self.layers[L - 1].n_out
        self.loss = plan.loss_code
        _require(0 <= self.loss <= POISSON, "unknown loss code")

        grads = _checked_list(plan.grads, len(params), "grads")
        A = _checked_list(plan.A, L, "A")
        D = _checked_list(plan.D, L, "D")
        optimizer = plan.optimizer
        self.optimizer = optimizer
        self.opt.kind = OPT_ADAM if optimizer.kind == "adam" else OPT_SGD
        self.n_state = n_state = 2 if self.opt.kind == OPT_ADAM else (1 if optimizer.momentum else 0)
        state = _checked_list(optimizer.state, len(params), "optimizer state")
        for l in range(L):
            lay = &self.layers[l]
            lay.A = _data(A[l], <Py_ssize_t>self.bs * lay.n_out, "A", ft, True)
            lay.D = _data(D[l], <Py_ssize_t>self.bs * lay.n_out, "D", ft, True)
            for j in range(lay.n_params):
                lay.grad[j] = _data(grads[p], lay.size[j], "grad", ft, True)
                per_param = _checked_list(state[p], len(state[p]), "optimizer state")
                _require(len(per_param) >= n_state, "the optimizer state does not fit the optimizer")
                for k in range(n_state):
                    lay.state[j][k] = _data(per_param[k], lay.size[j], "optimizer state", ft, True)
                    self.keep.append(per_param[k])
                for k in range(n_state, MAX_STATE):
                    lay.state[j][k] = lay.grad[j]   # never read: no such state
                p += 1
        # A Flatten changes no value: in training it reads and writes its neighbour's
        # buffers instead of copying 1,440 values per image each way (the tutorial's).
        for l in range(1, L):
            if (self.layers[l].kind == LAYER_FLATTEN
                    and self.layers[l].n_out == self.layers[l - 1].n_out):
                self.layers[l].A = self.layers[l - 1].A
                self.layers[l].D = self.layers[l - 1].D
        self.keep += grads + A + D
        # A convolution followed by a pool gets its dL/dZ and bias gradient from the
        # pool's backward (the layers array is contiguous: the pool reads lay - 1).
        for l in range(1, L):
            self.layers[l - 1].grad_ready = (self.layers[l].kind == LAYER_MAXPOOL2D
                                             and self.layers[l - 1].kind == LAYER_CONV2D)
        work = getattr(plan, "work", None)
        if work is None and hasattr(plan, "work_buffers"):
            work = plan.work_buffers()      # a TrainingPlan makes them on first use
        self._take_work([[] for _ in range(L)] if work is None else work, ft)
        self._use_act_after_pool()
        self.image_team = any(self.layers[l].kind == LAYER_CONV2D and self.layers[l].direct
                              for l in range(L))
        self.rng = NULL
        rng = getattr(plan, "dropout_state", None)
        if rng is not None:
            _require(cnp.PyArray_Check(rng) and rng.dtype == np.uint64 and rng.shape == (2,)
                     and rng.flags.c_contiguous and rng.flags.writeable,
                     "dropout_state must be a writeable uint64 array of 2")
            self.rng = <uint64_t*>cnp.PyArray_DATA(<cnp.ndarray>rng)
            self.keep.append(rng)
        for l in range(L):
            _require(self.layers[l].kind != LAYER_DROPOUT or self.rng != NULL,
                     "a network with dropout needs its dropout_state")
        self._use_packed(n_state, ft)

        X = plan.X
        _require(cnp.PyArray_Check(X) and X.ndim == 2 and cnp.PyArray_IS_C_CONTIGUOUS(X),
                 "X must be a C-contiguous 2-D array")
        self.n_rows, self.d = X.shape[0], X.shape[1]
        _require(self.n_rows > 0, "nothing to train on")
        if self.d != self.layers[0].n_in:
            raise ValueError(f"X has {self.d} features, the first layer takes "
                             f"{self.layers[0].n_in}")
        if X.dtype == np.uint8:
            self.xtype = cnp.NPY_UINT8
        else:
            self.xtype = cnp.PyArray_TYPE(<cnp.ndarray>X)
            _require(self.xtype == cnp.NPY_FLOAT32 or self.xtype == cnp.NPY_FLOAT64,
                     "X must be uint8, float32 or float64")
        self.X = cnp.PyArray_DATA(<cnp.ndarray>X)
        self.Xb = _data(plan.Xb, <Py_ssize_t>self.bs * self.d, "Xb", ft, True)
        self.x_scale = plan.x_scale
        self.keep += [X, plan.Xb]
        self.compact = (self.xtype == cnp.NPY_UINT8 and self.layers[0].packed != 0
                        and self.d <= FNN_COMPACT_MAX_INPUTS)
        for k in range(2 if self.compact else 0):
            cols = np.zeros(self.d + 16, np.intc)
            mask = np.zeros((self.d + 15) // 16, np.uint16)
            self.inputs[k].cols = <int*>cnp.PyArray_DATA(cols)
            self.inputs[k].mask = <uint16_t*>cnp.PyArray_DATA(mask)
            self.keep += [cols, mask]

        self.use_labels = plan.use_labels
        if self.use_labels:
            _require(self.loss == SOFTMAX_CROSS_ENTROPY, "integer labels need softmax cross-entropy")
            labels = plan.y
            _require(cnp.PyArray_Check(labels) and labels.dtype == np.intp and labels.ndim == 1
                     and labels.shape[0] == self.n_rows and labels.flags.c_contiguous,
                     "labels must be a C-contiguous intp array with one label per row of X")
            lab = <const Py_ssize_t*>cnp.PyArray_DATA(<cnp.ndarray>labels)
            for i in range(self.n_rows):
                if not (0 <= lab[i] < self.c):
                    raise ValueError(f"label {lab[i]} is outside [0, {self.c})")
            self.labels = lab
            lb = plan.labels_b
            _require(cnp.PyArray_Check(lb) and lb.dtype == np.intp and lb.ndim == 1
                     and lb.shape[0] == self.bs and lb.flags.c_contiguous and lb.flags.writeable,
                     "the label buffer has the wrong shape")
            self.labels_b = <Py_ssize_t*>cnp.PyArray_DATA(<cnp.ndarray>lb)
            self.keep += [labels, lb]
        else:
            self.targets = _data(plan.y, self.n_rows * self.c, "targets", ft, False)
            self.targets_b = _data(plan.targets_b, <Py_ssize_t>self.bs * self.c, "targets_b",
                                   ft, True)
            self.keep += [plan.y, plan.targets_b]
        self.use_weights = plan.sample_weight is not None
        if self.use_weights:
            self.weights = _data(plan.sample_weight, self.n_rows, "sample_weight", ft, False)
            self.weights_b = _data(plan.weights_b, self.bs, "weights_b", ft, True)
            self.keep += [plan.sample_weight, plan.weights_b]

    cdef void _use_act_after_pool(self) noexcept:
        """Move a convolution's sigmoid, tanh or ReLU behind the max-pool after it.

        They are monotonic, so the maximum of the activated window is the activation of
        the window's maximum: activating the 1,440 maxima instead of the 5,760
        convolution outputs (the tutorial) gives the same forward values, and the
        pool's backward already takes the derivative at the maxima. Only ties can
        differ: where two pre-activations round to the same activated value, the
        gradient goes to the larger one instead of the first; both are gradients of
        the maximum. For the direct kernels of both layers, in training (inference
        keeps the order of the layers).
        """
        cdef int l
        cdef LayerC* conv
        cdef LayerC* pool
        self.layers[self.L - 1].pool_wgrad = False      # no pool after it
        for l in range(1, self.L):
            conv, pool = &self.layers[l - 1], &self.layers[l]
            conv.act_after_pool = (conv.kind == LAYER_CONV2D and conv.direct != 0
                                   and pool.kind == LAYER_MAXPOOL2D and pool.direct != 0
                                   and pool_tiles(pool.geometry)
                                   and (conv.act == SIGMOID or conv.act == TANH
                                        or conv.act == RELU))
            # A 2 x 2 pool is computed in the convolution's forward (the same bits,
            # without storing and reading back the convolution's output: NOTES 23).
            conv.pool_fused = conv.act_after_pool and conv_pool_fuses(conv.direct,
                                                                      conv.geometry,
                                                                      pool.geometry)
            # The first layer (no input gradient) then also takes the pool's backward
            # into its weight gradient, image by image (NOTES 23).
            conv.pool_wgrad = conv.pool_wgrad and conv.pool_fused and l == 1

    cdef int _take_work(self, object work, int ft) except -1:
        """Check and keep each layer's extra buffers (see Layer.workspace)."""
        cdef int l, bs = self.bs
        cdef LayerC* lay
        cdef Py_ssize_t rows
        work = _checked_list(work, self.L, "work")
        for l in range(self.L):
            lay = &self.layers[l]
            bufs = _checked_list(work[l], len(work[l]), "work")
            if lay.kind == LAYER_CONV2D:
                rows = <Py_ssize_t>bs * lay.geometry[3] * lay.geometry[4]
                _require(len(bufs) == 1, "a conv2d layer has one work buffer")
                _require(rows * lay.geometry[6] * lay.geometry[7] * lay.geometry[2] < 2147483647,
                         "the batch is too large for one convolution product")
                lay.work = _data(bufs[0], rows * lay.geometry[6] * lay.geometry[7]
                                 * lay.geometry[2], "cols", ft, True)
                # Blocks of samples whose columns take about 256 KB, so that each
                # block's im2col, product and activation work in cache; the
                # columns of the whole batch stay for the weight gradient.
                lay.blk = <int>max(1, min(bs, (256 << 10) // max(1, rows // bs * lay.geometry[6]
                                              * lay.geometry[7] * lay.geometry[2]
                                              * (4 if ft == cnp.NPY_FLOAT32 else 8))))
                lay.direct = _conv_direct_level(lay, ft, rows * lay.geometry[6] * lay.geometry[7]
                                             * lay.geometry[2])
                # Room for the weight gradient through a pool (_use_act_after_pool decides).
                lay.pool_wgrad = (lay.direct != 0 and rows * lay.geometry[6] * lay.geometry[7]
                                  * lay.geometry[2] >= conv_pool_wgrad_scratch_floats(lay.geometry))
                lay.dscratch = _conv_input_grad_scratch(lay, rows * lay.geometry[6]
                                                        * lay.geometry[7] * lay.geometry[2])
            elif lay.kind == LAYER_MAXPOOL2D:
                _require(len(bufs) == 1, "a maxpool2d layer has one work buffer")
                lay.work = _data(bufs[0], <Py_ssize_t>bs * lay.n_out, "argmax", cnp.NPY_INT32,
                                 True)
                lay.direct = (kernel_level() if ft == cnp.NPY_FLOAT32
                              and pool_direct(kernel_level()) else 0)
            elif lay.kind == LAYER_DROPOUT:
                _require(len(bufs) == 1, "a dropout layer has one work buffer")
                lay.work = _data(bufs[0], <Py_ssize_t>bs * lay.n_out, "mask", cnp.NPY_UINT8,
                                 True)
            else:
                _require(len(bufs) == 0, "dense and flatten layers have no work buffers")
            self.keep += bufs
        return 0
    cdef void _use_packed(self, int n_state, int ft) except *:
        """Give each float32 dense layer panel buffers for W, its gradient and its state.

        The layer's pointers are switched to the panels for the whole fit; the arrays
        Python holds get the panels' values at the end of every chunk (``train``),
        so ``layer.W`` and the optimizer state are current between chunks, and a
        callback's assignment to them is packed again before the next chunk. The
        gradient is scratch and is never copied. Packing 784 x 128 floats and back
        costs about as much as one batch-16 product, once per chunk of ~0.1 s.
        """
        cdef int l, k
        cdef LayerC* lay
        cdef Py_ssize_t size
        self.level = kernel_level() if ft == cnp.NPY_FLOAT32 else LEVEL_BLAS
        self.packs = <PackedCopy*>calloc(self.L * (1 + MAX_STATE) + 1, sizeof(PackedCopy))
        self.layouts = <Layout*>calloc(2 * self.L, sizeof(Layout))
        if self.packs == NULL or self.layouts == NULL:
            raise MemoryError()
        for l in range(self.L):
            lay = &self.layers[l]
            _save_layout(lay, &self.layouts[2 * l])
            _save_layout(lay, &self.layouts[2 * l + 1])
            if (self.level == LEVEL_BLAS or lay.kind != LAYER_DENSE
                    or lay.n_out < MIN_PACKED_OUTPUTS):
                continue
            size = packed_size(lay.n_in, lay.n_out)
            lay.packed = self.level
            lay.param[0] = self._panels(<float*>lay.param[0], lay, size)
            lay.grad[0] = self._panels(NULL, lay, size)
            for k in range(n_state):
                lay.state[0][k] = self._panels(<float*>lay.state[0][k], lay, size)
            for k in range(n_state, MAX_STATE):
                lay.state[0][k] = lay.grad[0]   # never read: no such state
            lay.size[0] = size                  # the elementwise updates run on the panels
            if l > 0:     # its input gradient is needed
                lay.transposed = self._panels(NULL, lay, packed_size(lay.n_out, lay.n_in))
            _save_layout(lay, &self.layouts[2 * l + 1])

    cdef float* _panels(self, float* flat, LayerC* lay, Py_ssize_t size) except NULL:
        """A zeroed, 64-byte aligned panel buffer (kept alive by the workspace).

        Unless ``flat`` is NULL it is recorded as the row-major twin of the buffer.
        """
        buf = np.zeros(size + 16, np.float32)
        self.keep.append(buf)
        cdef float* p = <float*>cnp.PyArray_DATA(<cnp.ndarray>buf)
        p += (16 - (<uintptr_t>p // sizeof(float)) % 16) % 16
        if flat != NULL:
            self.packs[self.n_packs].flat = flat
            self.packs[self.n_packs].packed = p
            self.packs[self.n_packs].n_in = lay.n_in
            self.packs[self.n_packs].n_out = lay.n_out
            self.n_packs += 1
        return p

    cdef void _read_optimizer(self) except *:
        """The optimizer's hyper-parameters as they are now (a schedule may change lr)."""
        optimizer = self.optimizer
        self.opt.lr = optimizer.lr
        self.opt.weight_decay = optimizer.weight_decay
        self.opt.momentum = self.opt.beta1 = self.opt.beta2 = self.opt.eps = 0
        self.opt.nesterov = False
        self.opt.step = 0
        if self.opt.kind == OPT_SGD:
            self.opt.momentum = optimizer.momentum
            if (self.opt.momentum != 0) != (self.n_state == 1):
                # The state was sized for the momentum the fit started with.
                raise RuntimeError("the optimizer's momentum was switched on or off during "
                                   "fit; change it between fit calls")
            self.opt.nesterov = optimizer.nesterov
        else:
            self.opt.beta1, self.opt.beta2 = optimizer.betas
            self.opt.eps = optimizer.eps
            self.opt.step = optimizer.step_count

    def train(self, const Py_ssize_t[::1] order, Py_ssize_t start, Py_ssize_t stop,
              double max_seconds=0, int threads=1):
        """Train the mini-batches of ``order[start:stop]``; ``start`` begins a batch.

        With ``max_seconds`` > 0 it returns early, after the first batch that
        ends that long after the call began: a chunk sized from a quiet pace
        cannot hold Ctrl-C back for long when the machine gets busy.

        Returns ``(loss_sum, n_done, bad_start, n_correct)``: the sum over
        samples of the batch-mean losses, the samples trained on (from
        ``start``), the position in ``order`` of the batch whose loss was not
        finite (-1 when all were; that batch is not applied, so the weights are
        those of the last finite step), and the right predictions among the
        samples trained on, weighted by their sample weights (see ``_correct``;
        0 for MSE), counted from the outputs each batch's loss was computed on.

        ``threads`` bounds the threads of the packed dense kernels in this chunk
        (the caller passes the count it gives BLAS, so one choice governs both).
        """
        cdef Py_ssize_t i
        _require(0 <= start <= stop <= order.shape[0], "start and stop must lie in order")
        for i in range(start, stop):
            if not (0 <= order[i] < self.n_rows):
                raise ValueError("order indexes outside X")
        self._read_optimizer()
        if start == stop:
            return 0.0, 0, -1, 0.0
        cdef const Py_ssize_t* rows = &order[0]
        cdef int k
        # With several threads, BLAS on them outruns the kernels on one at batch >= 256
        # (measured: 25.1-26.7 ms per 10,000 samples against 28-31), so such chunks
        # take the BLAS path, and the thread chooser compares the two. The kernels'
        # own helper thread (made for this chunk, ended with it) runs when enabled
        # (set_kernel_threads(2)): for dense networks on the shared machine it
        # measured faster and slower than one thread by turns (benches/NOTES.md 15).
        # A network with direct image kernels (whose work has no BLAS to share) gets
        # it in every chunk with several threads; the thread chooser weighs those
        # chunks against one-thread ones as for BLAS.
        cdef bint images = self.image_team
        cdef bint team_on = threads > 1 and (kernel_threads() > 1 or images)
        cdef bint panels = self.n_packs > 0 and (team_on or threads <= 1 or self.bs < 256)
        cdef void* team = team_start() if team_on and (panels or images) else NULL
        for k in range(self.L):
            self.layers[k].team = team
            _apply_layout(&self.layers[k], &self.layouts[2 * k + (1 if panels else 0)])
        if panels:
            for k in range(self.n_packs):
                pack(self.packs[k].flat, self.packs[k].packed, self.packs[k].n_in,
                     self.packs[k].n_out)
        # Subnormal numbers are flushed to zero during the chunk, as TensorFlow does on
        # the CPU: momentum decaying towards zero for inputs that are almost always 0
        # (MNIST's border pixels) made whole epochs of a Dropout network 6x slower on
        # them (benches/NOTES.md 16). The caller's floating-point mode is restored.
        cdef unsigned int fp_mode = fastnn_flush_subnormals()
        try:
            if self.ftype == cnp.NPY_FLOAT32:
                if self.xtype == cnp.NPY_UINT8:
                    return _train_range(self, rows, start, stop, max_seconds, <uint8_t>0, <float>0)
                if self.xtype == cnp.NPY_FLOAT32:
                    return _train_range(self, rows, start, stop, max_seconds, <float>0, <float>0)
                return _train_range(self, rows, start, stop, max_seconds, <double>0, <float>0)
            if self.xtype == cnp.NPY_UINT8:
                return _train_range(self, rows, start, stop, max_seconds, <uint8_t>0, <double>0)
            if self.xtype == cnp.NPY_FLOAT32:
                return _train_range(self, rows, start, stop, max_seconds, <float>0, <double>0)
            return _train_range(self, rows, start, stop, max_seconds, <double>0, <double>0)
        finally:
            fastnn_restore_fp_mode(fp_mode)
            team_stop(team)
            for k in range(self.L):
                self.layers[k].team = NULL
            for k in range(self.n_packs if panels else 0):
                unpack(self.packs[k].packed, self.packs[k].flat, self.packs[k].n_in,
                       self.packs[k].n_out)


cdef double _now() noexcept nogil:
    cdef timespec t
    clock_gettime(CLOCK_MONOTONIC, &t)
    return t.tv_sec + 1e-9 * t.tv_nsec


cdef object _train_range(Workspace ws, const Py_ssize_t* order, Py_ssize_t start,
                         Py_ssize_t stop, double max_seconds, input_t xdummy, floating dummy):
    cdef const input_t* X = <const input_t*>ws.X
    cdef floating* Xb = <floating*>ws.Xb
    cdef floating* targets_b = <floating*>ws.targets_b
    cdef floating* wb = <floating*>ws.weights_b if ws.use_weights else NULL
    cdef floating scale = ws.x_scale
    cdef LayerC* last = &ws.layers[ws.L - 1]
    cdef int nb, bs = ws.bs, c = ws.c, L = ws.L
    cdef Py_ssize_t i, pos = start, bad = -1, done = 0
    cdef double batch_loss, total = 0, correct = 0
    cdef double deadline = 0
    cdef int cur = 0, n_next
    # A packed first layer skips the inputs that are 0 in the whole batch (the background
    # of images; see fnn_batch_inputs): worth it while they are more than 1/8 of all.
    # With a helper thread, it finds the next batch's while this one's loss and output
    # layer run on this thread alone (found: the next batch's are on their way).
    cdef bint compact = ws.compact and ws.layers[0].packed, found = False
    cdef void* team = ws.layers[0].team
    with nogil:
        if max_seconds > 0:
            deadline = _now() + max_seconds
        while pos < stop:
            nb = <int>(bs if stop - pos > bs else stop - pos)
            n_next = <int>min(bs, stop - pos - nb)
            if input_t is uint8_t:
                if compact:
                    if found:
                        team_wait(team)
                    else:
                        team_batch_inputs(NULL, ws.layers[0].packed, X, ws.d, order + pos,
                                          nb, &ws.inputs[cur])
                    found = False
                    ws.layers[0].inputs = &ws.inputs[cur]
                    if ws.inputs[cur].n * 8 > ws.d * 7:
                        ws.layers[0].inputs = NULL
            _gather(X, ws.d, order + pos, nb, Xb, scale, team,
                    ws.layers[0].n_out if ws.layers[0].packed else 0, ws.layers[0].inputs,
                    order + pos + nb, n_next)
            if ws.use_labels:
                for i in range(nb):
                    ws.labels_b[i] = ws.labels[order[pos + i]]
            else:
                _gather(<const floating*>ws.targets, c, order + pos, nb, targets_b, <floating>1,
                        NULL)
            if ws.use_weights:
                _gather(<const floating*>ws.weights, 1, order + pos, nb, wb, <floating>1, NULL)
            _forward(ws.layers, L, Xb, nb, ws.rng)
            if input_t is uint8_t:
                if compact and team != NULL and n_next > 0:
                    cur, found = 1 - cur, True
                    team_batch_inputs(team, ws.layers[0].packed, X, ws.d, order + pos + nb,
                                      n_next, &ws.inputs[cur])
            batch_loss = _loss_and_grad(ws.loss, ws.use_labels, <floating*>last.A,
                                        <floating*>last.D, ws.labels_b, targets_b, wb, nb, c)
            if not isfinite(batch_loss):
                bad = pos
                break
            total += batch_loss * nb
            correct += _correct(ws.loss, ws.use_labels, <floating*>last.A, ws.labels_b,
                                targets_b, wb, nb, c)
            _backward_and_update(ws.layers, L, &ws.opt, Xb, nb)
            if ws.rng != NULL:
                ws.rng[1] += 1   # the next batch draws fresh dropout masks
            done += nb
            pos += nb
            if deadline > 0 and _now() > deadline:
                break
        team_wait(team)   # a next batch's inputs the loop broke off before
        ws.layers[0].inputs = NULL
    if ws.opt.kind == OPT_ADAM:
        ws.optimizer.step_count = ws.opt.step
    return total, done, bad, correct


# ---------------------------------------------------------------- inference

cdef int _typenum(object a, str name) except -1:
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    return cnp.PyArray_TYPE(<cnp.ndarray>a)


def forward_chunks(object X, object out, list kinds, list acts, list geometry, list params,
                   double x_scale, int chunk, int output, bint check_finite=False):
    """out[:] = the network's output for every row of X, computed ``chunk`` rows at a time.

    X is uint8, float32 or float64; out (and the parameters) float32 or float64.
    The layers are described as for ``Workspace`` (``params`` flat, read-only
    arrays accepted). output: OUT_RAW the last layer's values, OUT_SOFTMAX
    their row-wise softmax, OUT_SIGMOID their sigmoid, OUT_EXP their exp. With ``check_finite``
    a float X holding NaN or infinity raises ValueError.

    The dtypes are dispatched here by hand: Cython's automatic dispatch of a
    fused ``def`` function looks signatures up in a dict and costs several
    microseconds, a third of the time to predict one sample.
    """
    cdef int xt = _typenum(X, "X"), ot = _typenum(out, "out")
    if ot != cnp.NPY_FLOAT32 and ot != cnp.NPY_FLOAT64:
        raise TypeError(f"out must be float32 or float64, got {out.dtype}")
    if xt != cnp.NPY_UINT8 and xt != cnp.NPY_FLOAT32 and xt != cnp.NPY_FLOAT64:
        raise TypeError(f"X must be uint8, float32 or float64, got {X.dtype}")
    cdef LayerC* layers = _layers_from(kinds, acts, geometry, params, ot, False)
    try:
        if ot == cnp.NPY_FLOAT32:
            if xt == cnp.NPY_UINT8:
                _forward_chunks(X, out, layers, len(kinds), x_scale, chunk, output, check_finite, <uint8_t>0, <float>0)
            elif xt == cnp.NPY_FLOAT32:
                _forward_chunks(X, out, layers, len(kinds), x_scale, chunk, output, check_finite, <float>0, <float>0)
            else:
                _forward_chunks(X, out, layers, len(kinds), x_scale, chunk, output, check_finite, <double>0, <float>0)
        else:
            if xt == cnp.NPY_UINT8:
                _forward_chunks(X, out, layers, len(kinds), x_scale, chunk, output, check_finite, <uint8_t>0, <double>0)
            elif xt == cnp.NPY_FLOAT32:
                _forward_chunks(X, out, layers, len(kinds), x_scale, chunk, output, check_finite, <float>0, <double>0)
            else:
                _forward_chunks(X, out, layers, len(kinds), x_scale, chunk, output, check_finite, <double>0, <double>0)
    finally:
        free(layers)


cdef int _conv_direct_level(const LayerC* lay, int ft, Py_ssize_t work_floats) noexcept:
    """The direct kernels' level for a convolution whose ``work`` holds work_floats
    values, or 0 (im2col + GEMM): float32, stride 1, a level with kernels, and room
    for one image's padded planes."""
    cdef int level = kernel_level()
    if (ft == cnp.NPY_FLOAT32 and conv_direct(level, lay.geometry)
            and work_floats >= conv_scratch_floats(lay.geometry)):
        return level
    return 0


cdef bint _mostly_zeros(const input_t* X, Py_ssize_t n, Py_ssize_t d) noexcept nogil:
    """Whether the first rows of X (up to 8, in the pairs the few-rows kernel takes) have
    inputs that are 0 in both rows of a pair more than half of the time (images do:
    MNIST's pairs of test images, 71%). Branch-free, so that it vectorises: a few
    microseconds were measurable against the 80 us of 48 rows."""
    cdef Py_ssize_t i, k, both = 0, rows = min(n, <Py_ssize_t>8) // 2 * 2
    cdef const input_t* a
    cdef const input_t* b
    for i in range(0, rows, 2):
        a = X + i * d
        b = a + d
        for k in range(d):
            both += (a[k] == 0) & (b[k] == 0)
    return rows > 0 and 2 * both > rows // 2 * d


cdef Py_ssize_t _conv_input_grad_scratch(LayerC* lay, Py_ssize_t work_floats) except -1:
    """Set lay.dgeom and return where the flipped kernel goes in ``work`` when the direct
    kernels can compute the convolution's input gradient, else 0.

    At stride 1, dX is the convolution of dZ (OH x OW x CO, padded by KH-1-PT above
    and KW-1-PL to the left) with the kernel flipped and its channels swapped; a
    padding beyond the kernel would need a negative one and keeps col2im.
    """
    cdef const int* g = lay.geometry
    cdef int k
    cdef Py_ssize_t at
    if not lay.direct or g[10] > g[6] - 1 or g[11] > g[7] - 1:
        return 0
    d = [g[3], g[4], g[5], g[0], g[1], g[2], g[6], g[7], 1, 1, g[6] - 1 - g[10],
         g[7] - 1 - g[11]]
    for k in range(12):
        lay.dgeom[k] = d[k]
    try:
        check_conv_geometry(lay.dgeom, 12)
    except ValueError:
        return 0
    if not conv_direct(lay.direct, lay.dgeom):
        return 0
    at = (conv_scratch_floats(lay.dgeom) + 15) // 16 * 16
    if at + <Py_ssize_t>g[6] * g[7] * g[2] * g[5] + g[2] > work_floats:
        return 0
    return at


cdef void** _pack_for_inference(LayerC* layers, int L, Py_ssize_t n,
                                bint sparse_input) except? NULL:
    """Choose how the float32 dense layers run n rows; return the panels made, or NULL.

    Fewer than PREDICT_ROWS_MAX rows (one sample, say): the few-rows kernel reads W
    as it is (``layers[l].rows``); it skips the inputs that are 0, so it also takes
    a first dense layer whose input is mostly zeros (``sparse_input``: images) at
    any number of rows, reading half of W or less per pair of rows. From
    PREDICT_PACKED_ROWS rows on, the other layers run on panels of W made for the
    call (the layers' W pointers switched to them; free each entry, then the
    array): packing 784 x 128 costs about what 20 rows of the product save. In
    between, and at the BLAS level, BLAS runs them.
    """
    cdef int level = kernel_level(), l
    cdef Py_ssize_t size
    cdef void** out
    cdef float* p
    if level == LEVEL_BLAS:
        return NULL
    if n < PREDICT_ROWS_MAX:
        for l in range(L):
            if layers[l].kind == LAYER_DENSE:
                layers[l].rows = level
        return NULL
    if sparse_input and layers[0].kind == LAYER_DENSE:
        layers[0].rows = level
    if n < PREDICT_PACKED_ROWS:
        return NULL
    out = <void**>calloc(L, sizeof(void*))
    if out == NULL:
        raise MemoryError()
    for l in range(L):
        if (layers[l].kind != LAYER_DENSE or layers[l].n_out < MIN_PACKED_OUTPUTS
                or layers[l].rows):
            continue
        size = packed_size(layers[l].n_in, layers[l].n_out)
        if size > PREDICT_PACKED_MAX_FLOATS:
            continue    # a temporary copy of a very large W: BLAS needs none
        out[l] = malloc((size + 16) * sizeof(float))
        if out[l] == NULL:
            for l in range(L):
                free(out[l])
            free(out)
            raise MemoryError()
        p = <float*>out[l]
        p += (16 - (<uintptr_t>p // sizeof(float)) % 16) % 16     # 64-byte aligned
        pack(<const float*>layers[l].param[0], p, layers[l].n_in, layers[l].n_out)
        layers[l].param[0] = p
        layers[l].packed = level
        layers[l].team = NULL
    return out


cdef bint _all_finite(const input_t* x, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i
    cdef bint ok = True
    if input_t is uint8_t:
        return True
    else:
        for i in range(size):
            ok &= isfinite(x[i])   # no early exit: the loop stays vectorisable
        return ok


cdef int _forward_chunks(object X_obj, object out_obj, LayerC* layers, int L, double x_scale,
                         int chunk, int output, bint check_finite, input_t xdummy,
                         floating dummy) except -1:
    cdef cnp.ndarray Xa = <cnp.ndarray>X_obj, outa = <cnp.ndarray>out_obj
    cdef Py_ssize_t n, d
    cdef int c = layers[L - 1].n_out
    _require(Xa.ndim == 2 and cnp.PyArray_IS_C_CONTIGUOUS(Xa), "X must be a C-contiguous 2-D array")
    _require(not cnp.PyArray_ISBYTESWAPPED(Xa), "X must be in the machine's byte order")
    n, d = Xa.shape[0], Xa.shape[1]
    if d != layers[0].n_in:
        raise ValueError(f"X has {d} features, the first layer takes {layers[0].n_in}")
    _require(outa.ndim == 2 and outa.shape[0] == n and outa.shape[1] == c
             and cnp.PyArray_IS_C_CONTIGUOUS(outa) and cnp.PyArray_ISWRITEABLE(outa),
             "out has the wrong shape")
    _require(chunk > 0, "chunk must be positive")
    _require(OUT_RAW <= output <= OUT_EXP, "unknown output mode")
    return _forward_rows(<const input_t*>cnp.PyArray_DATA(Xa), n, d,
                         <floating*>cnp.PyArray_DATA(outa), layers, L, x_scale, chunk, output,
                         check_finite)


cdef int _forward_rows(const input_t* X, Py_ssize_t n, Py_ssize_t d, floating* out,
                       LayerC* layers, int L, double x_scale, int chunk, int output,
                       bint check_finite) except -1:
    """out (n x the last layer's width) = the network's output for X (n x d), checked
    by the caller; ``layers`` is the caller's own copy (its kernel choices are set here)."""
    cdef Py_ssize_t start, i, width = 0
    cdef int l, nb, c = layers[L - 1].n_out
    cdef floating scale = x_scale
    cdef floating* bufs = NULL
    cdef floating* xb
    cdef floating* ping
    cdef floating* pong
    cdef floating* dst
    cdef const floating* inp
    cdef Py_ssize_t* rows = NULL
    cdef bint finite = True
    cdef bint direct
    cdef Py_ssize_t cols_size = 0, per
    cdef floating* cols = NULL

    if n == 0:
        return 0
    if chunk > n:
        chunk = <int>n
    for l in range(L - 1):
        if layers[l].n_out > width:
            width = layers[l].n_out
    # Wide layers (a convolution's 5,760 values per image) take fewer rows per
    # chunk: each of the two hidden buffers stays near 4 MB instead of growing to
    # tens of MB, and a chunk's passes stay closer to the cache.
    if <Py_ssize_t>chunk * width > (1 << 20):
        chunk = <int>max(1, (1 << 20) // width)
    # Convolutions im2col a block of samples at a time into one shared buffer
    # of about 4 MB (at least one sample), whatever the chunk.
    for l in range(L):
        if layers[l].kind == LAYER_CONV2D:
            per = (<Py_ssize_t>layers[l].geometry[3] * layers[l].geometry[4] * layers[l].geometry[6]
                   * layers[l].geometry[7] * layers[l].geometry[2])
            layers[l].blk = <int>max(1, min(<Py_ssize_t>chunk, (4 << 20) // (per * sizeof(floating))))
            if per * layers[l].blk > cols_size:
                cols_size = per * layers[l].blk
            if floating is float:
                # The direct kernels' scratch: one image's planes.
                cols_size = max(cols_size, conv_scratch_floats(layers[l].geometry))
                layers[l].direct = _conv_direct_level(&layers[l], cnp.NPY_FLOAT32, cols_size)
    # Input already in the network's float type, unscaled, is read in place;
    # anything else is converted a chunk at a time into xb.
    direct = (input_t is floating) and scale == 1
    # One buffer for the converted input chunk, two for the hidden layers' outputs.
    bufs = <floating*>malloc((chunk * d + 2 * chunk * width + 1) * sizeof(floating))
    rows = <Py_ssize_t*>malloc(chunk * sizeof(Py_ssize_t))
    if cols_size:
        cols = <floating*>malloc(cols_size * sizeof(floating))
    if bufs == NULL or rows == NULL or (cols_size and cols == NULL):
        free(bufs)
        free(rows)
        free(cols)
        raise MemoryError()
    for l in range(L):
        layers[l].work = cols
    xb = bufs
    ping = bufs + chunk * d
    pong = ping + chunk * width
    cdef void** panels = NULL
    try:
        if floating is float:
            panels = _pack_for_inference(
                layers, L, n, n >= PREDICT_ROWS_MAX and kernel_level() != LEVEL_BLAS
                and layers[0].kind == LAYER_DENSE and _mostly_zeros(X, n, d))
        with nogil:
            start = 0
            while start < n:
                nb = <int>(chunk if n - start > chunk else n - start)
                if check_finite and not _all_finite(X + start * d, nb * d):
                    finite = False
                    break
                if direct:
                    inp = <const floating*>(X + start * d)
                else:
                    for i in range(nb):
                        rows[i] = start + i
                    _gather(X, d, rows, nb, xb, scale, NULL)
                    inp = xb
                for l in range(L):
                    dst = out + start * c if l == L - 1 else (ping if l % 2 == 0 else pong)
                    _layer_forward(&layers[l], inp, dst, nb, False, <uint64_t*>NULL)
                    inp = dst
                if output == OUT_SOFTMAX:
                    softmax_rows(out + start * c, out + start * c, nb, c)
                elif output == OUT_SIGMOID:
                    activate(SIGMOID, out + start * c, <Py_ssize_t>nb * c)
                elif output == OUT_EXP:
                    exp_inplace(out + start * c, <Py_ssize_t>nb * c)
                start += nb
    finally:
        free(bufs)
        free(rows)
        free(cols)
        if panels != NULL:
            for l in range(L):
                free(panels[l])
            free(panels)
    if not finite:
        raise ValueError("X contains NaN or infinity")
    return 0


# ---------------------------------------------------------------- repeated inference

cdef extern from "numpy/arrayobject.h":
    object PyArray_Scalar(void* data, cnp.dtype descr, object base)

cdef extern from "Python.h":
    bint PyFloat_CheckExact(object o)
    double PyFloat_AS_DOUBLE(object o)

# Predictor.run's output modes beyond the OUT_* codes: the index of each row's largest output.
PREDICT_ARGMAX = -1
cdef enum:
    SMALL_OUT = 64      # outputs of one sample kept on the stack (argmax)


cdef Py_ssize_t _argmax_row(const floating* row, int c) noexcept nogil:
    """NumPy's argmax of one row: the first largest value, or the first NaN."""
    cdef Py_ssize_t best = 0
    cdef int j
    if row[0] != row[0]:
        return 0
    for j in range(1, c):
        if row[j] > row[best]:
            best = j
        elif row[j] != row[j]:
            return j
    return best


cdef class Predictor:
    """A network's layers as the compiled core runs them, kept between inference calls.

    Made from the lists ``forward_chunks`` takes, and checked as it checks them,
    it keeps what stays fixed for the layer objects it was made from: each layer's
    kind, activation and sizes. Everything else is read afresh on every call: each
    parameter array is looked up on its layer (``layer._W``, ...), so a new array
    (``layer.W = ...``, ``set_weights``) is seen, and its memory is read where it
    is, so in-place writes are seen too; the kernel level is the current one.

    ``run`` handles the plain case of repeated prediction and returns None for
    anything else: layers or activations other than its own, a parameter that is
    no longer a C-contiguous array of the network's dtype and size, X other than
    a C-contiguous ndarray of the network's dtype (or uint8) in the machine's byte
    order holding one sample
    (1-D) or rows of the right width, or an input scale other than a positive
    finite float. The caller then takes the general path, which converts or
    raises as usual. Both paths run the same compiled walk (``_forward_rows``),
    so their results are the same bits.
    """
    cdef LayerC* layers
    cdef int L, ftype, n_params
    cdef Py_ssize_t n_in
    cdef tuple objs             # the layer objects
    cdef object acts            # the list of activation names it was made for
    cdef tuple where            # per parameter: (layer index, slot, attribute name)

    def __cinit__(self):
        self.layers = NULL

    def __dealloc__(self):
        free(self.layers)

    def __init__(self, list layers, list kinds, list acts, list geometry, list params,
                 list attrs, object activations, object dtype):
        cdef int l, j, p = 0
        self.ftype = cnp.NPY_FLOAT32 if np.dtype(dtype) == np.float32 else cnp.NPY_FLOAT64
        self.layers = _layers_from(kinds, acts, geometry, params, self.ftype, False)
        self.L = len(kinds)
        _require(len(layers) == self.L and len(attrs) == len(params),
                 "one layer object per layer and one attribute name per parameter")
        where = []
        for l in range(self.L):
            for j in range(self.layers[l].n_params):
                _require(getattr(layers[l], attrs[p]) is params[p],
                         f"layers[{l}].{attrs[p]} is not the parameter given")
                where.append((l, j, attrs[p]))
                self.layers[l].param[j] = NULL     # looked up again on every call
                p += 1
        self.n_params = p
        self.where = tuple(where)
        self.objs = tuple(layers)
        self.acts = activations
        self.n_in = self.layers[0].n_in

    def matches(self, object layers, object activations):
        """Whether it was made for these layer objects and this activation list."""
        return (activations is self.acts and isinstance(layers, list)
                and len(layers) == self.L
                and all(a is b for a, b in zip(layers, self.objs)))

    def run(self, object X, object layers, object activations, object x_scale, int output):
        """The network's output for X (``output``: an OUT_* code or PREDICT_ARGMAX), or
        None when this call is not the case it handles (see the class docstring).

        One sample (1-D X) gives its output row (1-D), or its argmax as a NumPy
        integer; rows give (n, outputs), or the (n,) argmaxes.
        """
        cdef int l, j, p, xt, c
        cdef Py_ssize_t n, i
        cdef bint single
        cdef double scale
        cdef cnp.ndarray Xa, arr, outa
        cdef list lst
        cdef tuple w
        cdef cnp.npy_intp dims[2]
        cdef Py_ssize_t idx
        cdef Py_ssize_t* res
        cdef double stack_out[SMALL_OUT]
        cdef void* out
        # The layers and activations it was made for (identity: cheap and exact).
        if activations is not self.acts or type(layers) is not list:
            return None
        lst = <list>layers
        if len(lst) != self.L:
            return None
        for l in range(self.L):
            if lst[l] is not self.objs[l]:
                return None
        # X: a C-contiguous ndarray of the network's dtype or uint8, 1 sample or n rows.
        if not cnp.PyArray_CheckExact(X):
            return None
        Xa = <cnp.ndarray>X
        xt = cnp.PyArray_TYPE(Xa)
        if ((xt != self.ftype and xt != cnp.NPY_UINT8) or not cnp.PyArray_IS_C_CONTIGUOUS(Xa)
                or cnp.PyArray_ISBYTESWAPPED(Xa)):   # ('>f4' has float32's type number)
            return None
        if Xa.ndim == 1 and Xa.shape[0] == self.n_in:
            n, single = 1, True
        elif Xa.ndim == 2 and Xa.shape[1] == self.n_in and Xa.shape[0] > 0:
            n, single = Xa.shape[0], False
        else:
            return None
        if not PyFloat_CheckExact(x_scale):
            return None
        scale = PyFloat_AS_DOUBLE(x_scale)
        if not (0 < scale < INFINITY):
            return None
        if not (OUT_RAW <= output <= OUT_EXP or output == PREDICT_ARGMAX):
            raise ValueError("unknown output mode")
        # The parameters as they are now. ``keep`` holds them until the call ends, so
        # that none is freed under the walk if another thread replaces it meanwhile.
        keep = [None] * self.n_params
        for p in range(self.n_params):
            w = <tuple>self.where[p]
            obj = getattr(self.objs[<int>w[0]], <str>w[2], None)
            if obj is None or not cnp.PyArray_Check(obj):
                return None
            arr = <cnp.ndarray>obj
            j = <int>w[1]
            if (cnp.PyArray_TYPE(arr) != self.ftype or not cnp.PyArray_IS_C_CONTIGUOUS(arr)
                    or cnp.PyArray_ISBYTESWAPPED(arr)
                    or cnp.PyArray_SIZE(arr) != self.layers[<int>w[0]].size[j]):
                return None
            keep[p] = arr
        c = self.layers[self.L - 1].n_out
        dims[0], dims[1] = n, c
        outa = None
        if single and output == PREDICT_ARGMAX and c <= SMALL_OUT:
            out = stack_out
        elif single:
            outa = cnp.PyArray_SimpleNew(1, &dims[1], self.ftype)
            out = cnp.PyArray_DATA(outa)
        else:
            outa = cnp.PyArray_SimpleNew(2, dims, self.ftype)
            out = cnp.PyArray_DATA(outa)
        cdef LayerC* copy = <LayerC*>malloc(self.L * sizeof(LayerC))
        if copy == NULL:
            raise MemoryError()
        try:
            memcpy(copy, self.layers, self.L * sizeof(LayerC))
            for p in range(self.n_params):
                w = <tuple>self.where[p]
                copy[<int>w[0]].param[<int>w[1]] = cnp.PyArray_DATA(<cnp.ndarray>keep[p])
            _run_typed(cnp.PyArray_DATA(Xa), xt, n, out, self.ftype, copy, self.L, scale,
                       OUT_RAW if output == PREDICT_ARGMAX else output)
        finally:
            free(copy)
        if output != PREDICT_ARGMAX:
            return outa
        if single:
            if self.ftype == cnp.NPY_FLOAT32:
                idx = _argmax_row(<float*>out, c)
            else:
                idx = _argmax_row(<double*>out, c)
            return PyArray_Scalar(&idx, cnp.PyArray_DescrFromType(cnp.NPY_INTP), None)
        labels = cnp.PyArray_SimpleNew(1, &dims[0], cnp.NPY_INTP)
        res = <Py_ssize_t*>cnp.PyArray_DATA(<cnp.ndarray>labels)
        for i in range(n):
            if self.ftype == cnp.NPY_FLOAT32:
                res[i] = _argmax_row(<float*>out + i * c, c)
            else:
                res[i] = _argmax_row(<double*>out + i * c, c)
        return labels


cdef int _run_typed(void* X, int xt, Py_ssize_t n, void* out, int ot, LayerC* layers, int L,
                    double scale, int output) except -1:
    """_forward_rows for X of type xt and outputs of type ot (NumPy type numbers)."""
    cdef Py_ssize_t d = layers[0].n_in
    if ot == cnp.NPY_FLOAT32:
        if xt == cnp.NPY_UINT8:
            return _forward_rows(<const uint8_t*>X, n, d, <float*>out, layers, L, scale, PREDICT_CHUNK_ROWS, output, False)
        return _forward_rows(<const float*>X, n, d, <float*>out, layers, L, scale, PREDICT_CHUNK_ROWS, output, True)
    if xt == cnp.NPY_UINT8:
        return _forward_rows(<const uint8_t*>X, n, d, <double*>out, layers, L, scale, PREDICT_CHUNK_ROWS, output, False)
    return _forward_rows(<const double*>X, n, d, <double*>out, layers, L, scale, PREDICT_CHUNK_ROWS, output, True)
