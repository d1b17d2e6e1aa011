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

from fastnn._core._blas cimport gemm
from fastnn._core._kernels cimport (
    IDENTITY, RELU, MSE, BINARY_CROSS_ENTROPY, SOFTMAX_CROSS_ENTROPY,
    activate, output_grad, dense_forward_ptr, softmax_rows,
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


cdef list _layer_list(object items, int L, str name):
    """``items`` as a new list, refused unless it has one entry per layer."""
    if not isinstance(items, (list, tuple)):
        raise TypeError(f"{name} must be a list of arrays, got {type(items).__name__}")
    cdef list out = list(items)
    if len(out) != L:
        raise ValueError(f"{name} has {len(out)} entries for {L} layers")
    return out


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


cdef void _forward(Net* net, const floating* X, int n) noexcept nogil:
    cdef int l
    cdef const floating* inp = X
    for l in range(net.n_layers):
        dense_forward_ptr(inp, <floating*>net.W[l], <floating*>net.b[l], <floating*>net.A[l],
                          n, net.sizes[l], net.sizes[l + 1], net.acts[l])
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


cdef void _backward_and_update(Net* net, Optim* opt, const floating* X, int n) noexcept nogil:
    """Backpropagate from D[L-1] (the loss gradient) and update every layer.

    A layer's input gradient is computed before its weights change. With plain
    or heavy-ball SGD the weight gradient is never stored: the GEMM that forms
    X^T dZ adds it straight into the weights (alpha = -lr, beta = 1) or into the
    velocity (beta = momentum), which saves a write and a read of dW per layer.
    """
    cdef int l, n_in, n_out
    cdef Py_ssize_t nw, i
    cdef const floating* inp
    cdef floating* W
    cdef floating* dZ
    cdef floating* db
    cdef floating lr = opt.lr, mu = opt.momentum, wd = opt.weight_decay
    cdef bint fold = opt.kind == SGD and not opt.nesterov
    if opt.kind == ADAM:
        opt.step += 1
    for l in range(net.n_layers - 1, -1, -1):
        n_in, n_out = net.sizes[l], net.sizes[l + 1]
        nw = <Py_ssize_t>n_in * n_out
        inp = X if l == 0 else <floating*>net.A[l - 1]
        W, dZ, db = <floating*>net.W[l], <floating*>net.D[l], <floating*>net.db[l]

        output_grad(net.acts[l], <floating*>net.A[l], dZ, db, n, n_out)
        if l > 0:
            gemm(False, True, n, n_in, n_out, <floating>1, dZ, n_out, W, n_out,
                 <floating>0, <floating*>net.D[l - 1], n_in)

        if fold and mu == 0:
            if wd != 0:
                for i in range(nw):
                    W[i] *= 1 - lr * wd      # p -= lr * wd * p, then p -= lr * g
            gemm(True, False, n_in, n_out, n, -lr, inp, n_in, dZ, n_out, <floating>1, W, n_out)
            sgd_step(<floating*>net.b[l], db, db, n_out, opt.lr, 0.0, False, 0.0)
        elif fold:
            # v = mu v + g (+ wd p); p -= lr v
            gemm(True, False, n_in, n_out, n, <floating>1, inp, n_in, dZ, n_out, mu,
                 <floating*>net.sW1[l], n_out)
            _add_decay_and_step(W, <floating*>net.sW1[l], nw, lr, wd)
            sgd_step(<floating*>net.b[l], db, <floating*>net.sb1[l], n_out,
                     opt.lr, opt.momentum, False, 0.0)
        else:
            gemm(True, False, n_in, n_out, n, <floating>1, inp, n_in, dZ, n_out, <floating>0,
                 <floating*>net.dW[l], n_out)
            _step(net, opt, l, nw, n_out, <floating>0)


cdef void _add_decay_and_step(floating* W, floating* v, Py_ssize_t n, floating lr,
                              floating wd) noexcept nogil:
    cdef Py_ssize_t i
    if wd != 0:
        for i in range(n):
            v[i] += wd * W[i]
    for i in range(n):
        W[i] -= lr * v[i]


cdef void _step(Net* net, Optim* opt, int l, Py_ssize_t nw, int nb, floating dummy) noexcept nogil:
    """The general update of layer l from its stored gradients (Adam, Nesterov)."""
    if opt.kind == SGD:
        sgd_step(<floating*>net.W[l], <floating*>net.dW[l], <floating*>net.sW1[l], nw,
                 opt.lr, opt.momentum, opt.nesterov, opt.weight_decay)
        sgd_step(<floating*>net.b[l], <floating*>net.db[l], <floating*>net.sb1[l], nb,
                 opt.lr, opt.momentum, opt.nesterov, 0.0)
    else:
        adam_step(<floating*>net.W[l], <floating*>net.dW[l], <floating*>net.sW1[l],
                  <floating*>net.sW2[l], nw, opt.lr, opt.beta1, opt.beta2, opt.eps,
                  opt.weight_decay, opt.step)
        adam_step(<floating*>net.b[l], <floating*>net.db[l], <floating*>net.sb1[l],
                  <floating*>net.sb2[l], nb, opt.lr, opt.beta1, opt.beta2, opt.eps,
                  0.0, opt.step)


# ---------------------------------------------------------------- entry points

def train_epoch(const input_t[:, ::1] X, floating[:, ::1] Xb,
                const Py_ssize_t[::1] labels, Py_ssize_t[::1] labels_b,
                const floating[:, ::1] targets, floating[:, ::1] targets_b,
                const floating[::1] weights, floating[::1] weights_b,
                const Py_ssize_t[::1] order, object plan, double x_scale):
    """Train one epoch over ``X[order]`` in mini-batches of ``Xb.shape[0]`` rows.

    Returns ``(loss_sum, n_done, bad_start)``: the sum over samples of the
    batch-mean losses, the number of samples trained on, and the first row of
    the batch whose loss was not finite (-1 when every loss was finite; that
    batch is not applied, so the weights are those of the last finite step).
    ``weights`` (None for none) holds one weight per row of X.
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
    # Every list is read into a local of exactly L entries first: indexing runs
    # without bounds checks, and a list the caller sized wrongly must not be read past.
    cdef list A = _layer_list(plan.A, L, "A"), D = _layer_list(plan.D, L, "D")
    cdef list dWs = _layer_list(plan.dW, L, "dW"), dbs = _layer_list(plan.db, L, "db")
    for l in range(L):
        net.A[l] = _ptr2[floating](A[l], bs, net.sizes[l + 1], "A", dummy)
        net.D[l] = _ptr2[floating](D[l], bs, net.sizes[l + 1], "D", dummy)
        net.dW[l] = _ptr2[floating](dWs[l], net.sizes[l], net.sizes[l + 1], "dW", dummy)
        net.db[l] = _ptr1[floating](dbs[l], net.sizes[l + 1], "db", dummy)

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
    cdef list s1W, s1b, s2W, s2b
    if opt.kind == ADAM or opt.momentum != 0:
        s1W = _layer_list(plan.state1_W, L, "optimizer state")
        s1b = _layer_list(plan.state1_b, L, "optimizer state")
    if opt.kind == ADAM:
        s2W = _layer_list(plan.state2_W, L, "optimizer state")
        s2b = _layer_list(plan.state2_b, L, "optimizer state")
    for l in range(L):
        if opt.kind == SGD and opt.momentum == 0:
            # Plain SGD keeps no state; sgd_step never reads it.
            net.sW1[l] = net.dW[l]
            net.sb1[l] = net.db[l]
            continue
        net.sW1[l] = _ptr2[floating](s1W[l], net.sizes[l], net.sizes[l + 1], "state", dummy)
        net.sb1[l] = _ptr1[floating](s1b[l], net.sizes[l + 1], "state", dummy)
        if opt.kind == ADAM:
            net.sW2[l] = _ptr2[floating](s2W[l], net.sizes[l], net.sizes[l + 1], "state", dummy)
            net.sb2[l] = _ptr1[floating](s2b[l], net.sizes[l + 1], "state", dummy)

    with nogil:
        start = 0
        while start < n:
            nb = <int>(bs if n - start > bs else n - start)
            _gather(&X[0, 0], d, &order[start], nb, &Xb[0, 0], scale)
            if use_labels:
                for i in range(nb):
                    labels_b[i] = labels[order[start + i]]
            else:
                _gather(&targets[0, 0], c, &order[start], nb, &targets_b[0, 0], <floating>1)
            if use_weights:
                _gather(&weights[0], 1, &order[start], nb, wb, <floating>1)
            _forward(&net, &Xb[0, 0], nb)
            batch_loss = _loss_and_grad(loss, use_labels, <floating*>net.A[L - 1],
                                        <floating*>net.D[L - 1], &labels_b[0],
                                        &targets_b[0, 0], wb, nb, c)
            if not isfinite(batch_loss):
                bad = start
                break
            total += batch_loss * nb
            _backward_and_update(&net, &opt, &Xb[0, 0], nb)
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
