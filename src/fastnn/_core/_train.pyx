# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Whole-epoch training and chunked inference, each in one call without the GIL.

``train_epoch`` runs every mini-batch of an epoch: gather the shuffled rows
(from uint8 or float input, scaled), forward, fused loss gradient, backward and
optimizer update. It allocates nothing: every buffer comes from the caller's
plan (``fastnn.ops.compiled_ops.TrainingPlan``) and is checked here, with the
GIL held, before the loop starts.

``forward_chunks`` runs the forward pass over any number of rows in chunks, so
predicting the whole test set is one call.
"""
from cython cimport floating
cimport numpy as cnp
from libc.stdint cimport uint8_t
from libc.stdlib cimport malloc, free
from libc.math cimport isfinite
from cython.parallel cimport prange

from fastnn._core._blas cimport gemm
from fastnn._core._kernels cimport (
    IDENTITY, RELU, MSE, BINARY_CROSS_ENTROPY, SOFTMAX_CROSS_ENTROPY,
    activate, backprop_activation, bias_activate, dense_forward_ptr, softmax_rows,
    softmax_xent_labels, softmax_xent_targets, sigmoid_bce, mse_loss,
    sgd_step, adam_step,
)

cnp.import_array()

ctypedef fused input_t:
    uint8_t
    float
    double

cdef enum:
    SGD = 0
    ADAM = 1

cdef enum:
    MAX_LAYERS = 64
    # Below these sizes a layer's product (or a batch's gather) is not worth
    # sharing between threads: the fork and join cost more than they save.
    PARALLEL_MIN_MACS = 1 << 18
    PARALLEL_MIN_GATHER = 1 << 14

PARALLEL_MIN_MACS_ = PARALLEL_MIN_MACS  # for the Python side's decision


cdef struct Net:
    # The network's arrays as raw pointers, one entry per layer. void* because a
    # struct cannot be fused; the fused functions cast to their own float type.
    int n_layers
    int sizes[MAX_LAYERS + 1]
    int acts[MAX_LAYERS]
    void* W[MAX_LAYERS]
    void* b[MAX_LAYERS]
    void* dW[MAX_LAYERS]
    void* db[MAX_LAYERS]
    void* A[MAX_LAYERS]      # layer outputs for one batch
    void* D[MAX_LAYERS]      # gradients w.r.t. layer outputs for one batch
    void* sW1[MAX_LAYERS]    # SGD velocity or Adam first moment
    void* sb1[MAX_LAYERS]
    void* sW2[MAX_LAYERS]    # Adam second moment
    void* sb2[MAX_LAYERS]


cdef struct Optim:
    int kind
    double lr, momentum, weight_decay, beta1, beta2, eps
    bint nesterov
    long step


cdef inline void _require(bint ok, str message) except *:
    if not ok:
        raise ValueError(message)


cdef void* _data(object a, int ndim, Py_ssize_t rows, Py_ssize_t cols, str name,
                 floating dummy, bint writeable=True) except NULL:
    """The data pointer of a C-contiguous array of this float type and shape.

    Read through NumPy's C API rather than a typed memoryview: acquiring a
    memoryview parses the buffer format, which made up a good part of the
    latency of predicting one sample.
    """
    cdef int typenum = cnp.NPY_FLOAT32 if floating is float else cnp.NPY_FLOAT64
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != typenum:
        raise TypeError(f"{name} has dtype {arr.dtype}, expected "
                        f"{'float32' if floating is float else 'float64'}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError(f"{name} must be a C-contiguous array")
    if writeable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} must be writeable")
    if ndim == 2:
        if not (arr.ndim == 2 and arr.shape[0] == rows and arr.shape[1] == cols):
            raise ValueError(f"{name} has shape {a.shape}, expected ({rows}, {cols})")
    else:
        if not (arr.ndim == 1 and arr.shape[0] == rows):
            raise ValueError(f"{name} has shape {a.shape}, expected ({rows},)")
    if not (rows > 0 and (ndim == 1 or cols > 0)):
        raise ValueError(f"{name} is empty")
    return cnp.PyArray_DATA(arr)


cdef inline void* _ptr2(object a, int rows, int cols, str name, floating dummy,
                        bint writeable=True) except NULL:
    return _data[floating](a, 2, rows, cols, name, dummy, writeable)


cdef inline void* _ptr1(object a, int size, str name, floating dummy,
                        bint writeable=True) except NULL:
    return _data[floating](a, 1, size, 0, name, dummy, writeable)


cdef int _fill_params(Net* net, list Ws, list bs, list acts, floating dummy,
                      bint writeable=True) except -1:
    """Point net at the layers' parameters (read-only ones are fine for inference)."""
    cdef int l, L = len(Ws)
    if not (1 <= L <= MAX_LAYERS):
        raise ValueError(f"between 1 and {MAX_LAYERS} layers are supported")
    _require(len(bs) == L and len(acts) == L, "one W, b and activation per layer")
    net.n_layers = L
    cdef cnp.ndarray W
    for l in range(L):
        _require(cnp.PyArray_Check(Ws[l]), "W must be numpy arrays")
        W = <cnp.ndarray>Ws[l]
        _require(W.ndim == 2 and W.shape[0] > 0 and W.shape[1] > 0, "W must be non-empty 2-D arrays")
        if l == 0:
            net.sizes[0] = W.shape[0]
        else:
            _require(W.shape[0] == net.sizes[l], "layer sizes do not chain")
        net.sizes[l + 1] = W.shape[1]
        net.acts[l] = acts[l]
        _require(0 <= net.acts[l] <= 3, "unknown activation code")
    for l in range(L):
        net.W[l] = _ptr2[floating](Ws[l], net.sizes[l], net.sizes[l + 1], "W", dummy, writeable)
        net.b[l] = _ptr1[floating](bs[l], net.sizes[l + 1], "b", dummy, writeable)
    return 0


# ---------------------------------------------------------------- one batch

cdef void _gather(const input_t* X, Py_ssize_t d, const Py_ssize_t* rows, int nb,
                  floating* out, floating scale) noexcept nogil:
    """out[i] = X[rows[i]] * scale, converting to the network's float type."""
    cdef int i
    cdef Py_ssize_t j
    cdef const input_t* src
    cdef floating* dst
    for i in range(nb):
        src = X + rows[i] * d
        dst = out + i * d
        if scale == 1:
            for j in range(d):
                dst[j] = <floating>src[j]
        else:
            for j in range(d):
                dst[j] = <floating>src[j] * scale


# Every layer operation below works on a block of columns [c0, c1): the serial
# path passes the whole width, the threaded path gives each thread its block.
# Blocks never share a cache line of output, and each thread calls BLAS
# single-threaded on its own block (BLAS is limited to one thread meanwhile).

cdef inline int _edge(int width, int t, int nt) noexcept nogil:
    """The first column of block t of nt, at a multiple of 16 columns (64 bytes)."""
    if t >= nt:
        return width
    return min(width, ((<long>width * t // nt) + 15) // 16 * 16)


cdef inline bint _split(int n, int n_in, int n_out, int width, int nt) noexcept nogil:
    """Whether a layer's product is worth sharing between nt threads."""
    return nt > 1 and width >= 32 and <long>n * n_in * n_out >= PARALLEL_MIN_MACS


cdef void _forward_block(Net* net, int l, const floating* inp, int n, int c0, int c1) noexcept nogil:
    """A[l][:, c0:c1] = act(inp @ W[:, c0:c1] + b[c0:c1])."""
    cdef int n_in = net.sizes[l], n_out = net.sizes[l + 1], i
    cdef floating* Y = <floating*>net.A[l]
    cdef const floating* b = <floating*>net.b[l]
    if c0 == 0 and c1 == n_out:
        dense_forward_ptr(inp, <floating*>net.W[l], b, Y, n, n_in, n_out, net.acts[l])
        return
    if c1 <= c0:
        return
    gemm(False, False, n, c1 - c0, n_in, <floating>1, inp, n_in, <floating*>net.W[l] + c0,
         n_out, <floating>0, Y + c0, n_out)
    for i in range(n):
        bias_activate(net.acts[l], Y + <Py_ssize_t>i * n_out + c0, b + c0, c1 - c0)


cdef void _forward(Net* net, const floating* X, int n, int nt) noexcept nogil:
    cdef int l, t
    cdef const floating* inp = X
    for l in range(net.n_layers):
        if _split(n, net.sizes[l], net.sizes[l + 1], net.sizes[l + 1], nt):
            for t in prange(nt, schedule="static", num_threads=nt):
                _forward_block(net, l, inp, n, _edge(net.sizes[l + 1], t, nt),
                               _edge(net.sizes[l + 1], t + 1, nt))
        else:
            _forward_block(net, l, inp, n, 0, net.sizes[l + 1])
        inp = <floating*>net.A[l]


cdef double _loss_and_grad(int loss, bint use_labels, const floating* out, floating* grad,
                           const Py_ssize_t* labels, const floating* targets,
                           const floating* weights, int n, int c) noexcept nogil:
    if loss == SOFTMAX_CROSS_ENTROPY:
        if use_labels:
            return softmax_xent_labels(out, labels, weights, grad, n, c)
        return softmax_xent_targets(out, targets, weights, grad, n, c)
    if loss == BINARY_CROSS_ENTROPY:
        return sigmoid_bce(out, targets, weights, grad, n, c)
    return mse_loss(out, targets, weights, grad, n, c)


cdef void _output_grad_block(Net* net, int l, int n, int c0, int c1,
                             floating dummy) noexcept nogil:
    """dZ[:, c0:c1] = dY * act'(Y), and db[c0:c1] its column sums."""
    cdef int n_out = net.sizes[l + 1], i, j
    cdef floating* dZ = <floating*>net.D[l]
    cdef const floating* Y = <floating*>net.A[l]
    cdef floating* db = <floating*>net.db[l]
    cdef floating* row
    if c0 == 0 and c1 == n_out:
        backprop_activation(net.acts[l], Y, dZ, <Py_ssize_t>n * n_out)
    else:
        for i in range(n):
            backprop_activation(net.acts[l], Y + <Py_ssize_t>i * n_out + c0,
                                dZ + <Py_ssize_t>i * n_out + c0, c1 - c0)
    for j in range(c0, c1):
        db[j] = 0
    for i in range(n):
        row = dZ + <Py_ssize_t>i * n_out
        for j in range(c0, c1):
            db[j] += row[j]


cdef void _input_grad_block(Net* net, int l, int n, int r0, int r1,
                            floating dummy) noexcept nogil:
    """D[l-1][:, r0:r1] = dZ @ W[r0:r1, :]^T: the gradient w.r.t. this layer's input."""
    cdef int n_in = net.sizes[l], n_out = net.sizes[l + 1]
    if r1 <= r0:
        return
    gemm(False, True, n, r1 - r0, n_out, <floating>1, <floating*>net.D[l], n_out,
         <floating*>net.W[l] + <Py_ssize_t>r0 * n_out, n_out,
         <floating>0, <floating*>net.D[l - 1] + r0, n_in)


cdef void _update_block(Net* net, Optim* opt, int l, const floating* inp, int n,
                        int c0, int c1) noexcept nogil:
    """Update W[:, c0:c1] and b[c0:c1] from inp^T dZ[:, c0:c1] and db.

    With plain or heavy-ball SGD the weight gradient is never stored: the GEMM
    that forms inp^T dZ adds it straight into the weights (alpha = -lr,
    beta = 1) or into the velocity (beta = momentum), which saves a write and a
    read of dW.
    """
    cdef int n_in = net.sizes[l], n_out = net.sizes[l + 1], w = c1 - c0, r, j
    cdef floating* W = <floating*>net.W[l] + c0
    cdef const floating* dZ = <floating*>net.D[l] + c0
    cdef floating* v
    cdef floating* g
    cdef floating lr = opt.lr, mu = opt.momentum, wd = opt.weight_decay
    if w <= 0:
        return
    if opt.kind == SGD and not opt.nesterov and mu == 0:
        if wd != 0:
            for r in range(n_in):      # p -= lr * wd * p, then p -= lr * g
                for j in range(w):
                    W[<Py_ssize_t>r * n_out + j] *= 1 - lr * wd
        gemm(True, False, n_in, w, n, -lr, inp, n_in, dZ, n_out, <floating>1, W, n_out)
        sgd_step(<floating*>net.b[l] + c0, <floating*>net.db[l] + c0, NULL, w,
                 opt.lr, 0.0, False, 0.0)
        return
    if opt.kind == SGD and not opt.nesterov:
        # v = mu v + g (+ wd p); p -= lr v
        v = <floating*>net.sW1[l] + c0
        gemm(True, False, n_in, w, n, <floating>1, inp, n_in, dZ, n_out, mu, v, n_out)
        for r in range(n_in):
            _decay_and_step(W + <Py_ssize_t>r * n_out, v + <Py_ssize_t>r * n_out, w, lr, wd)
        sgd_step(<floating*>net.b[l] + c0, <floating*>net.db[l] + c0,
                 <floating*>net.sb1[l] + c0, w, opt.lr, opt.momentum, False, 0.0)
        return
    # Adam and Nesterov: store the gradient, then step row by row.
    g = <floating*>net.dW[l] + c0
    gemm(True, False, n_in, w, n, <floating>1, inp, n_in, dZ, n_out, <floating>0, g, n_out)
    for r in range(n_in):
        _step_run(opt, W + <Py_ssize_t>r * n_out, g + <Py_ssize_t>r * n_out,
                  <floating*>net.sW1[l] + c0 + <Py_ssize_t>r * n_out,
                  NULL if opt.kind == SGD else <floating*>net.sW2[l] + c0 + <Py_ssize_t>r * n_out,
                  w, opt.weight_decay)
    _step_run(opt, <floating*>net.b[l] + c0, <floating*>net.db[l] + c0,
              <floating*>net.sb1[l] + c0,
              NULL if opt.kind == SGD else <floating*>net.sb2[l] + c0, w, 0.0)


cdef inline void _decay_and_step(floating* W, floating* v, int n, floating lr,
                                 floating wd) noexcept nogil:
    cdef int i
    if wd != 0:
        for i in range(n):
            v[i] += wd * W[i]
    for i in range(n):
        W[i] -= lr * v[i]


cdef inline void _step_run(Optim* opt, floating* p, const floating* g, floating* s1,
                           floating* s2, int n, double wd) noexcept nogil:
    """The general update of n contiguous parameters (Adam, Nesterov SGD)."""
    if opt.kind == SGD:
        sgd_step(p, g, s1, n, opt.lr, opt.momentum, opt.nesterov, wd)
    else:
        adam_step(p, g, s1, s2, n, opt.lr, opt.beta1, opt.beta2, opt.eps, wd, opt.step)


cdef void _backward_and_update(Net* net, Optim* opt, const floating* X, int n,
                               int nt) noexcept nogil:
    """Backpropagate from D[L-1] (the loss gradient) and update every layer.

    A layer's input gradient is computed from its weights before they change.
    The first layer needs no input gradient, so its output gradient, bias sum
    and update run as one column-blocked step.
    """
    cdef int l, t, n_in, n_out
    cdef const floating* inp
    cdef bint cols
    if opt.kind == ADAM:
        opt.step += 1
    for l in range(net.n_layers - 1, -1, -1):
        n_in, n_out = net.sizes[l], net.sizes[l + 1]
        inp = X if l == 0 else <floating*>net.A[l - 1]
        cols = _split(n, n_in, n_out, n_out, nt)
        if cols and l == 0:
            for t in prange(nt, schedule="static", num_threads=nt):
                _output_grad_block(net, l, n, _edge(n_out, t, nt), _edge(n_out, t + 1, nt), <floating>0)
                _update_block(net, opt, l, inp, n, _edge(n_out, t, nt), _edge(n_out, t + 1, nt))
            continue
        if cols:
            for t in prange(nt, schedule="static", num_threads=nt):
                _output_grad_block(net, l, n, _edge(n_out, t, nt), _edge(n_out, t + 1, nt), <floating>0)
        else:
            _output_grad_block(net, l, n, 0, n_out, <floating>0)
        if l > 0:
            if _split(n, n_in, n_out, n_in, nt):
                for t in prange(nt, schedule="static", num_threads=nt):
                    _input_grad_block(net, l, n, _edge(n_in, t, nt), _edge(n_in, t + 1, nt), <floating>0)
            else:
                _input_grad_block(net, l, n, 0, n_in, <floating>0)
        if cols:
            for t in prange(nt, schedule="static", num_threads=nt):
                _update_block(net, opt, l, inp, n, _edge(n_out, t, nt), _edge(n_out, t + 1, nt))
        else:
            _update_block(net, opt, l, inp, n, 0, n_out)


# ---------------------------------------------------------------- entry points

def train_epoch(const input_t[:, ::1] X, floating[:, ::1] Xb,
                const Py_ssize_t[::1] labels, Py_ssize_t[::1] labels_b,
                const floating[:, ::1] targets, floating[:, ::1] targets_b,
                const floating[::1] weights, floating[::1] weights_b,
                const Py_ssize_t[::1] order, object plan, double x_scale, int n_threads=1):
    """Train one epoch over ``X[order]`` in mini-batches of ``Xb.shape[0]`` rows.

    Returns ``(loss_sum, n_done, bad_start)``: the sum over samples of the
    batch-mean losses, the number of samples trained on, and the first row of
    the batch whose loss was not finite (-1 when every loss was finite; that
    batch is not applied, so the weights are those of the last finite step).
    ``weights`` (None for none) holds one weight per row of X.

    With ``n_threads`` > 1 (and OpenMP) the large layer products are split by
    columns between that many threads, each calling BLAS on its own block: the
    caller must limit BLAS itself to one thread for the call.
    """
    cdef Net net
    cdef Optim opt
    cdef int l, L, bs = Xb.shape[0], nb, c
    cdef Py_ssize_t n = order.shape[0], d = X.shape[1], start, i
    cdef bint use_labels = plan.use_labels
    cdef int loss = plan.loss_code
    cdef floating dummy = 0
    cdef double batch_loss, total = 0
    cdef Py_ssize_t bad = -1, done = 0
    cdef floating scale = x_scale
    cdef bint use_weights = weights is not None
    cdef int t, nt = n_threads if n_threads > 1 else 1
    cdef floating* wb = NULL

    _fill_params[floating](&net, plan.W, plan.b, plan.acts, dummy)
    L = net.n_layers
    c = net.sizes[L]
    _require(n > 0 and bs > 0, "nothing to train on")
    if not (d == net.sizes[0]):
        raise ValueError(f"X has {d} features, the first layer takes {net.sizes[0]}")
    _require(Xb.shape[1] == d, "batch buffer has the wrong width")
    for i in range(n):
        _require(0 <= order[i] < X.shape[0], "order indexes outside X")
    if use_labels:
        _require(loss == SOFTMAX_CROSS_ENTROPY, "integer labels need softmax cross-entropy")
        _require(labels.shape[0] == X.shape[0] and labels_b.shape[0] >= bs, "labels have the wrong size")
        for i in range(labels.shape[0]):
            if not (0 <= labels[i] < c):
                raise ValueError(f"label {labels[i]} is outside [0, {c})")
    else:
        _require(targets.shape[0] == X.shape[0] and targets.shape[1] == c, "targets have the wrong shape")
        _require(targets_b.shape[0] >= bs and targets_b.shape[1] == c, "target buffer has the wrong shape")
    if use_weights:
        _require(weights.shape[0] == X.shape[0], "sample_weight has the wrong size")
        _require(weights_b is not None and weights_b.shape[0] >= bs, "weight buffer too small")
        wb = &weights_b[0]
    for l in range(L):
        net.A[l] = _ptr2[floating](plan.A[l], bs, net.sizes[l + 1], "A", dummy)
        net.D[l] = _ptr2[floating](plan.D[l], bs, net.sizes[l + 1], "D", dummy)
        net.dW[l] = _ptr2[floating](plan.dW[l], net.sizes[l], net.sizes[l + 1], "dW", dummy)
        net.db[l] = _ptr1[floating](plan.db[l], net.sizes[l + 1], "db", dummy)

    optimizer = plan.optimizer
    opt.kind = ADAM if optimizer.kind == "adam" else SGD
    opt.momentum = opt.beta1 = opt.beta2 = opt.eps = 0
    opt.nesterov = False
    opt.step = 0
    opt.lr = optimizer.lr
    opt.weight_decay = optimizer.weight_decay
    if opt.kind == SGD:
        opt.momentum = optimizer.momentum
        opt.nesterov = optimizer.nesterov
    else:
        opt.beta1, opt.beta2 = optimizer.betas
        opt.eps = optimizer.eps
        opt.step = optimizer.step_count
    for l in range(L):
        if opt.kind == SGD and opt.momentum == 0:
            # Plain SGD keeps no state; sgd_step never reads it.
            net.sW1[l] = net.dW[l]
            net.sb1[l] = net.db[l]
            continue
        net.sW1[l] = _ptr2[floating](plan.state1_W[l], net.sizes[l], net.sizes[l + 1], "state", dummy)
        net.sb1[l] = _ptr1[floating](plan.state1_b[l], net.sizes[l + 1], "state", dummy)
        if opt.kind == ADAM:
            net.sW2[l] = _ptr2[floating](plan.state2_W[l], net.sizes[l], net.sizes[l + 1], "state", dummy)
            net.sb2[l] = _ptr1[floating](plan.state2_b[l], net.sizes[l + 1], "state", dummy)

    with nogil:
        start = 0
        while start < n:
            nb = <int>(bs if n - start > bs else n - start)
            if nt > 1 and <long>nb * d >= PARALLEL_MIN_GATHER:
                for t in prange(nt, schedule="static", num_threads=nt):
                    _gather(&X[0, 0], d, &order[start + nb * t // nt],
                            nb * (t + 1) // nt - nb * t // nt,
                            &Xb[nb * t // nt, 0], scale)
            else:
                _gather(&X[0, 0], d, &order[start], nb, &Xb[0, 0], scale)
            if use_labels:
                for i in range(nb):
                    labels_b[i] = labels[order[start + i]]
            else:
                _gather(&targets[0, 0], c, &order[start], nb, &targets_b[0, 0], <floating>1)
            if use_weights:
                _gather(&weights[0], 1, &order[start], nb, wb, <floating>1)
            _forward(&net, &Xb[0, 0], nb, nt)
            batch_loss = _loss_and_grad(loss, use_labels, <floating*>net.A[L - 1],
                                        <floating*>net.D[L - 1], &labels_b[0],
                                        &targets_b[0, 0], wb, nb, c)
            if not isfinite(batch_loss):
                bad = start
                break
            total += batch_loss * nb
            _backward_and_update(&net, &opt, &Xb[0, 0], nb, nt)
            done += nb
            start += nb

    if opt.kind == ADAM:
        optimizer.step_count = opt.step
    return total, done, bad


cdef int _typenum(object a, str name) except -1:
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    return cnp.PyArray_TYPE(<cnp.ndarray>a)


def forward_chunks(object X, object out, list Ws, list bs, list acts, double x_scale,
                   int chunk, int output, bint check_finite=False):
    """out[:] = the network's output for every row of X, computed ``chunk`` rows at a time.

    X is uint8, float32 or float64; out (and the parameters) float32 or float64.
    output: 0 the last layer's values, 1 row-wise softmax of them, 2 their sigmoid.
    With ``check_finite`` a float X holding NaN or infinity raises ValueError.

    The dtypes are dispatched here by hand: Cython's automatic dispatch of a
    fused ``def`` function looks signatures up in a dict and costs several
    microseconds, a third of the time to predict one sample.
    """
    cdef int xt = _typenum(X, "X"), ot = _typenum(out, "out")
    if ot == cnp.NPY_FLOAT32:
        if xt == cnp.NPY_UINT8:
            return _forward_chunks(X, out, Ws, bs, acts, x_scale, chunk, output, check_finite, <uint8_t>0, <float>0)
        if xt == cnp.NPY_FLOAT32:
            return _forward_chunks(X, out, Ws, bs, acts, x_scale, chunk, output, check_finite, <float>0, <float>0)
        if xt == cnp.NPY_FLOAT64:
            return _forward_chunks(X, out, Ws, bs, acts, x_scale, chunk, output, check_finite, <double>0, <float>0)
    elif ot == cnp.NPY_FLOAT64:
        if xt == cnp.NPY_UINT8:
            return _forward_chunks(X, out, Ws, bs, acts, x_scale, chunk, output, check_finite, <uint8_t>0, <double>0)
        if xt == cnp.NPY_FLOAT32:
            return _forward_chunks(X, out, Ws, bs, acts, x_scale, chunk, output, check_finite, <float>0, <double>0)
        if xt == cnp.NPY_FLOAT64:
            return _forward_chunks(X, out, Ws, bs, acts, x_scale, chunk, output, check_finite, <double>0, <double>0)
    else:
        raise TypeError(f"out must be float32 or float64, got {out.dtype}")
    raise TypeError(f"X must be uint8, float32 or float64, got {X.dtype}")


cdef bint _all_finite(const input_t* x, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i
    cdef bint ok = True
    if input_t is uint8_t:
        return True
    else:
        for i in range(size):
            ok &= isfinite(x[i])   # no early exit: the loop stays vectorisable
        return ok


cdef object _forward_chunks(object X_obj, object out_obj, list Ws, list bs, list acts,
                            double x_scale, int chunk, int output, bint check_finite,
                            input_t xdummy, floating dummy):
    cdef Net net
    cdef cnp.ndarray Xa = <cnp.ndarray>X_obj, outa = <cnp.ndarray>out_obj
    cdef Py_ssize_t n, d, start, i, width = 0
    cdef int l, L, nb, c
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

    _fill_params[floating](&net, Ws, bs, acts, dummy, False)
    L = net.n_layers
    c = net.sizes[L]
    _require(Xa.ndim == 2 and cnp.PyArray_IS_C_CONTIGUOUS(Xa), "X must be a C-contiguous 2-D array")
    n, d = Xa.shape[0], Xa.shape[1]
    if d != net.sizes[0]:
        raise ValueError(f"X has {d} features, the first layer takes {net.sizes[0]}")
    _require(outa.ndim == 2 and outa.shape[0] == n and outa.shape[1] == c
             and cnp.PyArray_IS_C_CONTIGUOUS(outa) and cnp.PyArray_ISWRITEABLE(outa),
             "out has the wrong shape")
    _require(chunk > 0, "chunk must be positive")
    _require(0 <= output <= 2, "unknown output mode")
    if n == 0:
        return
    cdef const input_t* X = <const input_t*>cnp.PyArray_DATA(Xa)
    cdef floating* out = <floating*>cnp.PyArray_DATA(outa)
    if chunk > n:
        chunk = <int>n
    for l in range(1, L):
        if net.sizes[l] > width:
            width = net.sizes[l]
    # Input already in the network's float type, unscaled, is read in place;
    # anything else is converted a chunk at a time into xb.
    direct = (input_t is floating) and scale == 1
    # One buffer for the converted input chunk, two for the hidden layers' outputs.
    bufs = <floating*>malloc((chunk * d + 2 * chunk * width + 1) * sizeof(floating))
    rows = <Py_ssize_t*>malloc(chunk * sizeof(Py_ssize_t))
    if bufs == NULL or rows == NULL:
        free(bufs)
        free(rows)
        raise MemoryError()
    xb = bufs
    ping = bufs + chunk * d
    pong = ping + chunk * width
    try:
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
                    _gather(X, d, rows, nb, xb, scale)
                    inp = xb
                for l in range(L):
                    dst = out + start * c if l == L - 1 else (ping if l % 2 == 0 else pong)
                    dense_forward_ptr(inp, <floating*>net.W[l], <floating*>net.b[l], dst,
                                      nb, net.sizes[l], net.sizes[l + 1], net.acts[l])
                    inp = dst
                if output == 1:
                    softmax_rows(out + start * c, out + start * c, nb, c)
                elif output == 2:
                    activate(1, out + start * c, <Py_ssize_t>nb * c)
                start += nb
    finally:
        free(bufs)
        free(rows)
    if not finite:
        raise ValueError("X contains NaN or infinity")
