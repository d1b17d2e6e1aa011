"""Ops backed by the compiled core, with NumpyOps' signatures.

Each method converts its inputs once (float32 or float64, C-contiguous) and
allocates the outputs, then calls a kernel that checks shapes and releases the
GIL. Anything not overridden here falls back to the NumPy reference.
"""

from __future__ import annotations

import numpy as np

from fastnn._codes import ACTIVATIONS, LAYER_KINDS, OUTPUTS
from fastnn._core import _kernels, _train
from fastnn.ops.numpy_ops import PREDICT_CHUNK, NumpyOps
from fastnn.threads import core_blas

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_INPUTS = _FLOATS + (np.dtype(np.uint8),)  # what the compiled loops read directly


def _float_dtype(*arrays) -> np.dtype:
    """float32 when every array is float32, else float64 (NumPy's promotion, capped)."""
    dt = np.result_type(*arrays)
    return dt if dt in _FLOATS else np.dtype(np.float64)


def _c(a, dtype) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=dtype)


def _act(name: str) -> int:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}") from None


class CompiledOps(NumpyOps):
    """The compiled implementation of the hot ops."""

    name = "compiled"

    # ------------------------------------------------------------ activations

    def _activate(self, X, code):
        dt = _float_dtype(X)
        out = np.array(X, dtype=dt, order="C", copy=True)
        _kernels.activation_forward(out.reshape(-1), code)
        return out

    def _backprop(self, Y, dY, code):
        dt = _float_dtype(Y, dY)
        Y = _c(Y, dt)
        if Y.shape != np.shape(dY):
            raise ValueError(f"Y has shape {Y.shape}, dY has shape {np.shape(dY)}")
        dZ = np.array(dY, dtype=dt, order="C", copy=True)
        _kernels.activation_backward(Y.reshape(-1), dZ.reshape(-1), code)
        return dZ

    def identity(self, X):
        return self._activate(X, 0)

    def backprop_identity(self, Y, dY):
        return self._backprop(Y, dY, 0)

    def sigmoid(self, X):
        return self._activate(X, 1)

    def backprop_sigmoid(self, Y, dY):
        return self._backprop(Y, dY, 1)

    def tanh(self, X):
        return self._activate(X, 2)

    def backprop_tanh(self, Y, dY):
        return self._backprop(Y, dY, 2)

    def relu(self, X):
        return self._activate(X, 3)

    def backprop_relu(self, Y, dY):
        return self._backprop(Y, dY, 3)

    def softmax(self, X):
        dt = _float_dtype(X)
        X = _c(X, dt)
        if X.ndim != 2:
            raise ValueError(f"softmax takes a 2-D array, got shape {X.shape}")
        out = np.empty_like(X)
        _kernels.softmax(X, out)
        return out

    # ------------------------------------------------------------ dense layer

    def dense_forward(self, X, W, b, activation):
        code = _act(activation)
        dt = _float_dtype(X, W, b)
        X, W, b = _c(X, dt), _c(W, dt), _c(b, dt)
        if X.ndim != 2 or W.ndim != 2 or b.ndim != 1:
            raise ValueError("dense_forward takes X (n, n_in), W (n_in, n_out), b (n_out,)")
        Y = np.empty((X.shape[0], W.shape[1]), dt)
        _kernels.dense_forward(X, W, b, Y, code)
        return Y

    def dense_backward(self, X, W, Y, dY, activation, need_dX=True):
        code = _act(activation)
        dt = _float_dtype(X, W, Y, dY)
        X, W, Y = _c(X, dt), _c(W, dt), _c(Y, dt)
        if X.ndim != 2 or W.ndim != 2 or Y.ndim != 2 or np.ndim(dY) != 2:
            raise ValueError("dense_backward takes 2-D X, W, Y and dY")
        dZ = np.array(dY, dtype=dt, order="C", copy=True)
        dW = np.empty_like(W)
        db = np.empty(W.shape[1], dt)
        dX = np.empty_like(X) if need_dX else None
        _kernels.dense_backward(X, W, Y, dZ, dW, db, dX, code)
        return dX, dW, db

    # ------------------------------------------------------------ losses

    def _loss(self, kernel, out, y, need_grad, sample_weight):
        dt = _float_dtype(out)
        Z, T = _c(out, dt), _c(y, dt)
        if Z.ndim != 2 or Z.shape != T.shape:
            raise ValueError(f"outputs have shape {Z.shape}, targets {T.shape}; "
                             "both must be 2-D and alike")
        grad = np.empty_like(Z) if need_grad else None
        w = None if sample_weight is None else _c(sample_weight, dt)
        return kernel(Z, T, grad, w), grad

    def softmax_cross_entropy(self, logits, y, need_grad=True, sample_weight=None):
        if np.ndim(y) != 1:
            return self._loss(_kernels.softmax_cross_entropy_targets, logits, y, need_grad,
                              sample_weight)
        dt = _float_dtype(logits)
        Z = _c(logits, dt)
        if Z.ndim != 2:
            raise ValueError(f"logits must be 2-D, got shape {Z.shape}")
        grad = np.empty_like(Z) if need_grad else None
        w = None if sample_weight is None else _c(sample_weight, dt)
        return _kernels.softmax_cross_entropy_labels(Z, _c(y, np.intp), grad, w), grad

    def sigmoid_binary_cross_entropy(self, logits, y, need_grad=True, sample_weight=None):
        return self._loss(_kernels.sigmoid_binary_cross_entropy, logits, y, need_grad,
                          sample_weight)

    def mean_squared_error(self, pred, y, need_grad=True, sample_weight=None):
        return self._loss(_kernels.mean_squared_error, pred, y, need_grad, sample_weight)

    def poisson_deviance(self, log_mean, y, need_grad=True, sample_weight=None):
        return self._loss(_kernels.poisson_deviance, log_mean, y, need_grad, sample_weight)

    # ------------------------------------------------------------ optimizer updates
    # The arrays are updated in place, so they must already be C-contiguous
    # arrays of one float dtype: converting would update a copy.

    def sgd_update(self, param, grad, velocity, lr, momentum=0.0, nesterov=False,
                   weight_decay=0.0):
        _check_inplace(param, "param")
        grad = _c(grad, param.dtype)
        if momentum == 0 or velocity is None:
            if momentum != 0:
                raise ValueError("momentum needs a velocity array")
            velocity = grad  # never read without momentum
        else:
            _check_inplace(velocity, "velocity", param)
        _kernels.sgd_update(param.reshape(-1), grad.reshape(-1), velocity.reshape(-1),
                            lr, momentum, nesterov, weight_decay)

    def adam_update(self, param, grad, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
                    weight_decay=0.0):
        _check_inplace(param, "param")
        _check_inplace(m, "m", param)
        _check_inplace(v, "v", param)
        grad = _c(grad, param.dtype)
        _kernels.adam_update(param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1),
                             step, lr, beta1, beta2, eps, weight_decay)

    # ------------------------------------------------------------ whole network

    def forward_chunks(self, X, layers, activations, x_scale=1.0, output="raw",
                       chunk=PREDICT_CHUNK, check_finite=False):
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; expected one of {sorted(OUTPUTS)}")
        dt = layers[0].dtype
        if X.dtype not in _INPUTS or not X.flags.c_contiguous:
            X = np.ascontiguousarray(X, dtype=X.dtype if X.dtype in _INPUTS else dt)
        out = np.empty((X.shape[0],) + layers[-1].out_shape, dt)
        kinds, geometry, params = [], [], []
        for layer in layers:  # one loop: this is on the path of predicting one sample
            kinds.append(LAYER_KINDS[layer.kind])
            geometry.append(layer.core_geometry())
            params += layer.params()
        _train.forward_chunks(X, out, kinds, [_act(a) for a in activations], geometry, params,
                              x_scale, chunk, OUTPUTS[output], check_finite)
        return out

    def train_batches(self, plan, order, start, stop, max_seconds=0.0):
        if not plan.optimizer.fused:
            # A custom optimizer's update is Python: run the batches op by op (each
            # op compiled) and call it after each, as the NumPy backend does.
            return NumpyOps.train_batches(self, plan, order, start, stop, max_seconds)
        if plan.workspace is None:
            plan.workspace = _train.Workspace(plan)
        # The packed dense kernels take as many threads as BLAS has now (the fit's
        # thread chooser, set_num_threads or a threadpoolctl limit set it).
        return plan.workspace.train(order, start, stop, max_seconds, core_blas().get())


def _check_inplace(a, name, like=None):
    if not isinstance(a, np.ndarray) or a.dtype not in _FLOATS or not a.flags.c_contiguous \
            or not a.flags.writeable:
        raise TypeError(f"{name} must be a writeable C-contiguous float32 or float64 array")
    if like is not None and (a.shape != like.shape or a.dtype != like.dtype):
        raise ValueError(f"{name} has shape {a.shape} and dtype {a.dtype}, "
                         f"param has {like.shape} and {like.dtype}")
