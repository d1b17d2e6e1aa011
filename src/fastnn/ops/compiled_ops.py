"""Ops backed by the compiled core, with NumpyOps' signatures.

Each method converts its inputs once (float32 or float64, C-contiguous) and
allocates the outputs, then calls a kernel that checks shapes and releases the
GIL. Anything not overridden here falls back to the NumPy reference.
"""

from __future__ import annotations

import numpy as np

from fastnn._codes import ACTIVATIONS, LAYER_KINDS, OUTPUTS
from fastnn._core import _kernels, _train
from fastnn.layers.dropout import dropout_threshold
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

    # ------------------------------------------------------------ convolution and pooling
    # The same signatures as NumpyOps'; the kernels take samples as rows and
    # the layer's geometry (Layer.core_geometry's order), checked in the core.

    @staticmethod
    def _conv_geometry(in_shape, W_shape, out_hw, stride, padding):
        H, Wd, c = in_shape
        kh, kw, _, co = W_shape
        return [H, Wd, c, out_hw[0], out_hw[1], co, kh, kw, stride[0], stride[1],
                padding[0], padding[2]]

    def conv2d_forward(self, X, W, b, stride, padding, activation):
        code = _act(activation)
        dt = _float_dtype(X, W, b)
        X, W, b = _c(X, dt), _c(W, dt), _c(b, dt)
        if X.ndim != 4 or W.ndim != 4 or b.ndim != 1:
            raise ValueError("conv2d_forward takes X (n, H, W, C), W (kh, kw, C, C_out), "
                             "b (C_out,)")
        if W.shape[2] != X.shape[3]:
            raise ValueError(f"W takes {W.shape[2]} channels, X has {X.shape[3]}")
        n, H, Wd, _ = X.shape
        kh, kw, _, co = W.shape
        (sh, sw), (pt, pb, pl, pr) = stride, padding
        if H + pt + pb < kh or Wd + pl + pr < kw:
            raise ValueError("the kernel is larger than the padded input")
        oh, ow = (H + pt + pb - kh) // sh + 1, (Wd + pl + pr - kw) // sw + 1
        Y = np.empty((n, oh, ow, co), dt)
        _kernels.conv2d_forward(X.reshape(n, -1), W.reshape(-1), b, Y.reshape(n, -1),
                                self._conv_geometry(X.shape[1:], W.shape, (oh, ow), stride,
                                                    padding), code)
        return Y

    def conv2d_backward_weight(self, X, dZ, kernel_size, stride, padding):
        dt = _float_dtype(X, dZ)
        X, dZ = _c(X, dt), _c(dZ, dt)
        if X.ndim != 4 or dZ.ndim != 4:
            raise ValueError("conv2d_backward_weight takes X (n, H, W, C), dZ (n, OH, OW, C_out)")
        kh, kw = kernel_size
        c, co = X.shape[3], dZ.shape[3]
        dW = np.empty((kh, kw, c, co), dt)
        db = np.empty(co, dt)
        _kernels.conv2d_backward_weight(
            X.reshape(X.shape[0], -1), dZ.reshape(-1, co), dW.reshape(-1), db,
            self._conv_geometry(X.shape[1:], dW.shape, dZ.shape[1:3], stride, padding))
        return dW, db

    def conv2d_backward_input(self, dZ, W, in_shape, stride, padding):
        dt = _float_dtype(dZ, W)
        dZ, W = _c(dZ, dt), _c(W, dt)
        if dZ.ndim != 4 or W.ndim != 4:
            raise ValueError("conv2d_backward_input takes dZ (n, OH, OW, C_out), "
                             "W (kh, kw, C, C_out)")
        n = dZ.shape[0]
        dX = np.empty((n,) + tuple(in_shape), dt)
        _kernels.conv2d_backward_input(
            dZ.reshape(-1, dZ.shape[3]), W.reshape(-1), dX.reshape(n, -1),
            self._conv_geometry(tuple(in_shape), W.shape, dZ.shape[1:3], stride, padding))
        return dX

    def maxpool2d_forward(self, X, pool_size, stride):
        dt = _float_dtype(X)
        X = _c(X, dt)
        if X.ndim != 4:
            raise ValueError(f"maxpool2d_forward takes X (n, H, W, C), got shape {X.shape}")
        n, H, Wd, c = X.shape
        (ph, pw), (sh, sw) = pool_size, stride
        if H < ph or Wd < pw:
            raise ValueError("the pool is larger than the input")
        oh, ow = (H - ph) // sh + 1, (Wd - pw) // sw + 1
        Y = np.empty((n, oh, ow, c), dt)
        argmax = np.empty((n, oh, ow, c), np.int32)
        _kernels.maxpool2d_forward(X.reshape(n, -1), Y.reshape(n, -1), argmax.reshape(n, -1),
                                   [H, Wd, c, oh, ow, ph, pw, sh, sw])
        return Y, argmax

    def maxpool2d_backward(self, dY, argmax, in_shape):
        dt = _float_dtype(dY)
        dY, argmax = _c(dY, dt), _c(argmax, np.int32)
        if dY.ndim != 4 or argmax.shape != dY.shape:
            raise ValueError(f"dY (n, OH, OW, C) and argmax must agree, got {dY.shape} and "
                             f"{argmax.shape}")
        n, oh, ow, c = dY.shape
        H, Wd, _ = in_shape
        dX = np.empty((n,) + tuple(in_shape), dt)
        # The geometry of a 1x1 pool at stride 1 lets every offset of the sample be
        # an argmax: the windows that made them need not be known.
        _kernels.maxpool2d_backward(dY.reshape(n, -1), argmax.reshape(n, -1),
                                    dX.reshape(n, -1), [H, Wd, c, oh, ow, 1, 1, 1, 1])
        return dX

    def dropout_forward(self, X, rate, key, counter, index):
        dt = _float_dtype(X)
        X = _c(X, dt)
        Y = np.empty_like(X)
        mask = np.empty(X.shape, np.uint8)
        _kernels.dropout_forward(X.reshape(-1), Y.reshape(-1), mask.reshape(-1),
                                 key, counter, index, dropout_threshold(rate))
        return Y, mask

    def dropout_backward(self, dY, mask, rate):
        dt = _float_dtype(dY)
        dY = _c(dY, dt)
        mask = _c(mask, np.uint8)
        if mask.shape != dY.shape:
            raise ValueError(f"mask has shape {mask.shape}, dY has shape {dY.shape}")
        dX = np.empty_like(dY)
        _kernels.dropout_backward(dY.reshape(-1), mask.reshape(-1), dX.reshape(-1),
                                  dropout_threshold(rate))
        return dX

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

    def predictor(self, layers, activations):
        kinds, geometry, params, attrs = [], [], [], []
        for layer in layers:
            kinds.append(LAYER_KINDS[layer.kind])
            geometry.append(layer.core_geometry())
            own = layer.params()
            names = ["_" + name for name in layer.param_names]
            # The predictor looks each parameter up by its attribute on every call:
            # a layer whose params() are not those attributes keeps the general path.
            if len(own) != len(names) or any(getattr(layer, a, None) is not p
                                              for a, p in zip(names, own)):
                return None
            params += own
            attrs += names
        return _train.Predictor(list(layers), kinds, [_act(a) for a in activations], geometry,
                                params, attrs, activations, layers[0].dtype)

    def train_batches(self, plan, order, start, stop, max_seconds=0.0):
        if not plan.optimizer.fused:
            # A custom optimizer's update is Python: run the batches op by op (each
            # op compiled) and call it after each, as the NumPy backend does.
            return NumpyOps.train_batches(self, plan, order, start, stop, max_seconds)
        if plan.workspace is None:
            plan.workspace = _train.Workspace(plan)
        # The packed dense kernels take as many threads as BLAS has now (the fit's
        # thread chooser, set_num_threads or a threadpoolctl limit set it).
        blas = core_blas()
        threads = blas.get()
        if threads > 1 and plan.workspace.image_team:
            # The chunk's own helper thread shares its image kernels and takes the
            # second core; BLAS's workers, spinning after each of the few products
            # left to BLAS, would compete with it for that core.
            blas.set(1)
            try:
                return plan.workspace.train(order, start, stop, max_seconds, threads)
            finally:
                blas.set(threads)
        return plan.workspace.train(order, start, stop, max_seconds, threads)


def _check_inplace(a, name, like=None):
    if not isinstance(a, np.ndarray) or a.dtype not in _FLOATS or not a.flags.c_contiguous \
            or not a.flags.writeable:
        raise TypeError(f"{name} must be a writeable C-contiguous float32 or float64 array")
    if like is not None and (a.shape != like.shape or a.dtype != like.dtype):
        raise ValueError(f"{name} has shape {a.shape} and dtype {a.dtype}, "
                         f"param has {like.shape} and {like.dtype}")
