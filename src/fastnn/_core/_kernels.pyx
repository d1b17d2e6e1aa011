# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled kernels: activations, dense layers, fused losses, optimizer updates.

The ``cdef ... nogil`` functions work on raw pointers and are shared with the
whole-epoch loop in ``_train.pyx``. The ``def`` functions below them are thin
Python entry points that check every shape first, then release the GIL. They
write into output arrays the caller allocates (see ``fastnn.ops.CompiledOps``).
"""
from cython cimport floating
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
        for i in range(n):
            z[i] = _sigmoid(z[i])
    elif act == TANH:
        for i in range(n):
            if floating is float:
                z[i] = tanhf(z[i])
            else:
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


def softmax_cross_entropy_targets(const floating[:, ::1] Z, const floating[:, ::1] T,
                                  floating[:, ::1] dZ, const floating[::1] weights=None):
    """Mean softmax cross-entropy for target rows; fills dZ unless it is None."""
    _check_pair(Z, T, dZ)
    cdef const floating* w = _weights_ptr(weights, Z.shape[0])
    cdef floating* d = NULL if dZ is None else &dZ[0, 0]
    cdef double loss
    with nogil:
        loss = softmax_xent_targets(&Z[0, 0], &T[0, 0], w, d, Z.shape[0], Z.shape[1])
    return loss


def sigmoid_binary_cross_entropy(const floating[:, ::1] Z, const floating[:, ::1] T,
                                 floating[:, ::1] dZ, const floating[::1] weights=None):
    """Mean binary cross-entropy from logits; fills dZ unless it is None."""
    _check_pair(Z, T, dZ)
    cdef const floating* w = _weights_ptr(weights, Z.shape[0])
    cdef floating* d = NULL if dZ is None else &dZ[0, 0]
    cdef double loss
    with nogil:
        loss = sigmoid_bce(&Z[0, 0], &T[0, 0], w, d, Z.shape[0], Z.shape[1])
    return loss


def mean_squared_error(const floating[:, ::1] P, const floating[:, ::1] T,
                       floating[:, ::1] dP, const floating[::1] weights=None):
    """Mean squared error over all elements; fills dP unless it is None."""
    _check_pair(P, T, dP)
    cdef const floating* w = _weights_ptr(weights, P.shape[0])
    cdef floating* d = NULL if dP is None else &dP[0, 0]
    cdef double loss
    with nogil:
        loss = mse_loss(&P[0, 0], &T[0, 0], w, d, P.shape[0], P.shape[1])
    return loss



def poisson_deviance(const floating[:, ::1] Z, const floating[:, ::1] T,
                     floating[:, ::1] dZ, const floating[::1] weights=None):
    """Mean half Poisson deviance of exp(Z) against T (log link); fills dZ unless it is None."""
    _check_pair(Z, T, dZ)
    cdef const floating* w = _weights_ptr(weights, Z.shape[0])
    cdef floating* d = NULL if dZ is None else &dZ[0, 0]
    cdef double loss
    with nogil:
        loss = poisson_loss(&Z[0, 0], &T[0, 0], w, d, Z.shape[0], Z.shape[1])
    return loss

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


def compiled_codes():
    """The activation, loss, output, layer and optimizer codes as compiled into the core."""
    return _compiled_codes()
