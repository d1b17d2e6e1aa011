"""The plain-NumPy reference of every op: the test oracle and the benchmark baseline.

Each op returns new arrays (the optimizer updates work in place, as their
compiled twins do). ``CompiledOps`` overrides these methods with the same
signatures; keep the two in step.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from fastnn._codes import ACTIVATIONS, LOSSES, OUTPUTS
from fastnn.layers.dropout import THRESHOLD_BITS, dropout_scale, dropout_threshold

PREDICT_CHUNK = 1024  # rows per forward chunk in inference


class NumpyOps:
    """Reference implementation of every op in plain NumPy."""

    name = "numpy"

    # ------------------------------------------------------------ activations
    # Each backward takes the forward's output Y, not its input.

    def identity(self, X: np.ndarray) -> np.ndarray:
        return X.copy()

    def backprop_identity(self, Y: np.ndarray, dY: np.ndarray) -> np.ndarray:
        return dY.copy()

    def sigmoid(self, X: np.ndarray) -> np.ndarray:
        # exp(-|x|) is in (0, 1]: no overflow for any finite x.
        e = np.exp(-np.abs(X))
        return np.where(X >= 0, 1 / (1 + e), e / (1 + e))

    def backprop_sigmoid(self, Y: np.ndarray, dY: np.ndarray) -> np.ndarray:
        return dY * (Y * (1 - Y))

    def tanh(self, X: np.ndarray) -> np.ndarray:
        return np.tanh(X)

    def backprop_tanh(self, Y: np.ndarray, dY: np.ndarray) -> np.ndarray:
        return dY * (1 - Y * Y)

    def relu(self, X: np.ndarray) -> np.ndarray:
        return np.where(X < 0, 0, X).astype(X.dtype, copy=False)

    def backprop_relu(self, Y: np.ndarray, dY: np.ndarray) -> np.ndarray:
        return np.where(Y > 0, dY, 0).astype(dY.dtype, copy=False)

    def activation(self, X: np.ndarray, name: str) -> np.ndarray:
        """Apply the activation called ``name``."""
        return getattr(self, _checked_activation(name))(X)

    def backprop_activation(self, Y: np.ndarray, dY: np.ndarray, name: str) -> np.ndarray:
        """dL/dZ from dL/dY and the activation's output Y."""
        return getattr(self, "backprop_" + _checked_activation(name))(Y, dY)

    def softmax(self, X: np.ndarray) -> np.ndarray:
        """Row-wise softmax, shifted by the row maximum so exp never overflows."""
        e = np.exp(X - X.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    # ------------------------------------------------------------ dense layer

    def dense_forward(self, X: np.ndarray, W: np.ndarray, b: np.ndarray,
                      activation: str) -> np.ndarray:
        """Y = act(X @ W + b) for X (n, n_in), W (n_in, n_out), b (n_out,)."""
        return self.activation(X @ W + b, activation)

    def dense_backward(self, X: np.ndarray, W: np.ndarray, Y: np.ndarray, dY: np.ndarray,
                       activation: str, need_dX: bool = True):
        """Gradients of a dense layer from its input X, output Y and dL/dY.

        Returns ``(dX, dW, db)``; dX is None when ``need_dX`` is False.
        """
        dZ = self.backprop_activation(Y, dY, activation)
        dW = X.T @ dZ
        db = dZ.sum(axis=0)
        dX = dZ @ W.T if need_dX else None
        return dX, dW, db

    # ------------------------------------------------------------ convolution
    # Images are channels-last: X (n, H, W, C), W (kh, kw, C, C_out). ``stride``
    # is (sh, sw) and ``padding`` (top, bottom, left, right) zeros.

    def conv2d_forward(self, X: np.ndarray, W: np.ndarray, b: np.ndarray,
                       stride: tuple[int, int], padding: tuple[int, int, int, int],
                       activation: str) -> np.ndarray:
        """Y (n, OH, OW, C_out) = act(conv(X, W) + b): im2col, then one product."""
        n = X.shape[0]
        kh, kw, c, co = W.shape
        cols, oh, ow = _im2col(X, kh, kw, stride, padding)
        Z = cols @ W.reshape(kh * kw * c, co) + b
        return self.activation(Z, activation).reshape(n, oh, ow, co)

    def conv2d_backward_weight(self, X: np.ndarray, dZ: np.ndarray, kernel_size: tuple[int, int],
                               stride: tuple[int, int], padding: tuple[int, int, int, int]):
        """(dW, db) from the input X and dL/dZ (n, OH, OW, C_out), Z the pre-activation."""
        kh, kw = kernel_size
        c, co = X.shape[3], dZ.shape[3]
        cols, oh, ow = _im2col(X, kh, kw, stride, padding)
        if (oh, ow) != dZ.shape[1:3]:
            raise ValueError(f"dZ has shape {dZ.shape}; this convolution gives {oh}x{ow} images")
        dZ2 = dZ.reshape(-1, co)
        return (cols.T @ dZ2).reshape(kh, kw, c, co), dZ2.sum(axis=0)

    def conv2d_backward_input(self, dZ: np.ndarray, W: np.ndarray, in_shape: tuple[int, int, int],
                              stride: tuple[int, int], padding: tuple[int, int, int, int]
                              ) -> np.ndarray:
        """dL/dX (n, H, W, C) from dL/dZ (n, OH, OW, C_out): columns, then col2im."""
        n, oh, ow, co = dZ.shape
        kh, kw, c, _ = W.shape
        H, Wd, _ = in_shape
        (sh, sw), (pt, pb, pl, pr) = stride, padding
        dcols = (dZ.reshape(-1, co) @ W.reshape(-1, co).T).reshape(n, oh, ow, kh, kw, c)
        dXp = np.zeros((n, H + pt + pb, Wd + pl + pr, c), dcols.dtype)
        for i in range(kh):
            for j in range(kw):
                dXp[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += dcols[:, :, :, i, j]
        return dXp[:, pt:pt + H, pl:pl + Wd]

    # ------------------------------------------------------------ pooling

    def maxpool2d_forward(self, X: np.ndarray, pool_size: tuple[int, int],
                          stride: tuple[int, int]):
        """(Y (n, OH, OW, C), argmax) of max pooling; windows that do not fit are dropped.

        ``argmax`` (int32, shaped as Y) holds the offset of each maximum within
        its sample's H*W*C values: the first maximum of the window in row-major order.
        """
        n, H, Wd, c = X.shape
        (ph, pw), (sh, sw) = pool_size, stride
        oh, ow = (H - ph) // sh + 1, (Wd - pw) // sw + 1
        win = np.lib.stride_tricks.sliding_window_view(X, (ph, pw), axis=(1, 2))
        win = win[:, :sh * (oh - 1) + 1:sh, :sw * (ow - 1) + 1:sw].reshape(n, oh, ow, c, ph * pw)
        k = win.argmax(axis=4)
        Y = np.take_along_axis(win, k[..., None], axis=4)[..., 0]
        rows = np.arange(oh)[:, None, None] * sh + k // pw
        cols = np.arange(ow)[None, :, None] * sw + k % pw
        argmax = (rows * Wd + cols) * c + np.arange(c)
        return np.ascontiguousarray(Y), argmax.astype(np.int32)

    def maxpool2d_backward(self, dY: np.ndarray, argmax: np.ndarray,
                           in_shape: tuple[int, int, int]) -> np.ndarray:
        """dL/dX (n, H, W, C): each output's gradient added where its maximum was."""
        n = dY.shape[0]
        size = int(np.prod(in_shape))
        flat = argmax.reshape(n, -1)
        if flat.size and (flat.min() < 0 or flat.max() >= size):
            raise ValueError(f"argmax holds offsets outside [0, {size})")
        dX = np.zeros((n, size), dY.dtype)
        if not flat.size:
            return dX.reshape((n,) + tuple(in_shape))
        # Windows may overlap (a stride below the pool size): add, do not assign.
        idx = (flat + np.arange(n)[:, None] * size).ravel()
        np.add.at(dX.reshape(-1), idx, dY.reshape(-1))
        return dX.reshape((n,) + tuple(in_shape))

    # ------------------------------------------------------------ dropout

    def dropout_mask(self, shape: tuple[int, ...], rate: float, key: int, counter: int,
                     index: int) -> np.ndarray:
        """The keep mask (uint8, 1 = kept) of one batch: a hash of (key, counter, index,
        element), the same integers as the compiled core's."""
        t = dropout_threshold(rate)
        size = int(np.prod(shape))
        h = _mix64_array(np.uint64(_batch_seed(key, counter, index))
                         + (np.arange(1, size + 1, dtype=np.uint64) * np.uint64(_GOLDEN)))
        return ((h >> np.uint64(64 - THRESHOLD_BITS)) >= np.uint64(t)).astype(np.uint8).reshape(shape)

    def dropout_forward(self, X: np.ndarray, rate: float, key: int, counter: int, index: int):
        """(Y, mask): X with dropped values zeroed and kept ones divided by 1 - rate."""
        mask = self.dropout_mask(X.shape, rate, key, counter, index)
        scale = X.dtype.type(dropout_scale(dropout_threshold(rate)))
        return np.where(mask != 0, X * scale, X.dtype.type(0)), mask

    def dropout_backward(self, dY: np.ndarray, mask: np.ndarray, rate: float) -> np.ndarray:
        """dL/dX: dY through the kept values, times 1 / (1 - rate)."""
        if mask.shape != dY.shape:
            raise ValueError(f"mask has shape {mask.shape}, dY has shape {dY.shape}")
        scale = dY.dtype.type(dropout_scale(dropout_threshold(rate)))
        return np.where(mask != 0, dY * scale, dY.dtype.type(0))

    # ------------------------------------------------------------ losses
    # Each returns (mean loss as a float, gradient w.r.t. its first argument or None).
    # ``sample_weight`` (n,) multiplies each sample's loss; the mean still
    # divides by n, so weights of one give the plain mean.

    def softmax_cross_entropy(self, logits: np.ndarray, y: np.ndarray, need_grad: bool = True,
                              sample_weight: np.ndarray | None = None):
        """Mean over samples of -log softmax(logits)[y].

        ``y`` is either integer labels (n,) or target rows (n, c) such as one-hot.
        The gradient is (softmax(logits) * sum(y_row) - y) / n (onehot for labels).
        """
        n = logits.shape[0]
        shifted = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        log_p = shifted - np.log(s)
        if y.ndim == 1:
            per_sample = -log_p[np.arange(n), y]
        else:
            per_sample = -(y * log_p).sum(axis=1)
        loss = _weighted_sum(per_sample, sample_weight) / n
        if not need_grad:
            return float(loss), None
        grad = e / s
        if y.ndim == 1:
            grad[np.arange(n), y] -= 1
        else:
            grad = grad * y.sum(axis=1, keepdims=True) - y
        return float(loss), _scaled_grad(grad, sample_weight, n, logits.dtype)

    def sigmoid_binary_cross_entropy(self, logits: np.ndarray, y: np.ndarray,
                                     need_grad: bool = True,
                                     sample_weight: np.ndarray | None = None):
        """Mean over elements of the binary cross-entropy of sigmoid(logits) against y.

        Computed from the logits as max(z, 0) - z*y + log1p(exp(-|z|)), which
        never overflows; the gradient is (sigmoid(z) - y) / size.
        """
        z = logits
        terms = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        loss = _weighted_sum(terms.sum(axis=1, dtype=np.float64), sample_weight) / z.size
        if not need_grad:
            return float(loss), None
        return float(loss), _scaled_grad(self.sigmoid(z) - y, sample_weight, z.size, z.dtype)

    def mean_squared_error(self, pred: np.ndarray, y: np.ndarray, need_grad: bool = True,
                           sample_weight: np.ndarray | None = None):
        """Mean over all elements of (pred - y)^2; gradient 2 (pred - y) / size."""
        d = pred - y
        loss = _weighted_sum((d * d).sum(axis=1, dtype=np.float64), sample_weight) / d.size
        if not need_grad:
            return float(loss), None
        return float(loss), _scaled_grad(2 * d, sample_weight, d.size, pred.dtype)

    def poisson_deviance(self, log_mean: np.ndarray, y: np.ndarray, need_grad: bool = True,
                         sample_weight: np.ndarray | None = None):
        """Mean over elements of the half Poisson deviance of exp(log_mean) against y.

        Per element ``exp(z) - y z + y log(y) - y`` (0 where exp(z) == y, the
        ``y log y`` term 0 for y == 0): scikit-learn's "poisson" loss with its
        exponential link, computed from z so that nothing divides by exp(z).
        The gradient is (exp(z) - y) / size.
        """
        z = log_mean
        mu = np.exp(z)
        safe = np.where(y > 0, y, 1)
        terms = mu - y * z + np.where(y > 0, y * (np.log(safe) - 1), 0)
        loss = _weighted_sum(terms.sum(axis=1, dtype=np.float64), sample_weight) / z.size
        if not need_grad:
            return float(loss), None
        return float(loss), _scaled_grad(mu - y, sample_weight, z.size, z.dtype)

    def loss(self, name: str, out: np.ndarray, y: np.ndarray, need_grad: bool = True,
             sample_weight: np.ndarray | None = None):
        """Dispatch to the loss called ``name`` (see ``LOSSES``)."""
        if name == "softmax_cross_entropy":
            return self.softmax_cross_entropy(out, y, need_grad, sample_weight)
        if name == "binary_cross_entropy":
            return self.sigmoid_binary_cross_entropy(out, y, need_grad, sample_weight)
        if name == "mse":
            return self.mean_squared_error(out, y, need_grad, sample_weight)
        if name == "poisson":
            return self.poisson_deviance(out, y, need_grad, sample_weight)
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}")

    # ------------------------------------------------------------ optimizer updates
    # In place, PyTorch's rules. Weight decay is L2 added to the gradient; the
    # caller passes 0 for biases.

    def sgd_update(self, param: np.ndarray, grad: np.ndarray, velocity: np.ndarray | None,
                   lr: float, momentum: float = 0.0, nesterov: bool = False,
                   weight_decay: float = 0.0) -> None:
        """p -= lr * g (with momentum: v = mu v + g; p -= lr v, or lr (g + mu v) if Nesterov)."""
        dt = param.dtype.type
        g = grad + dt(weight_decay) * param if weight_decay else grad
        if momentum == 0:
            param -= dt(lr) * g
            return
        velocity *= dt(momentum)
        velocity += g
        step = g + dt(momentum) * velocity if nesterov else velocity
        param -= dt(lr) * step

    def adam_update(self, param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray,
                    step: int, lr: float, beta1: float = 0.9, beta2: float = 0.999,
                    eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        """One Adam step (``step`` counts from 1) with bias-corrected moments."""
        dt = param.dtype.type
        g = grad + dt(weight_decay) * param if weight_decay else grad
        b1, b2 = dt(beta1), dt(beta2)
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        step_size = dt(lr / (1 - beta1 ** step))
        inv_sqrt_bc2 = dt(1 / np.sqrt(1 - beta2 ** step))
        param -= step_size * m / (np.sqrt(v) * inv_sqrt_bc2 + dt(eps))

    # ------------------------------------------------------------ whole network

    def forward_chunks(self, X: np.ndarray, layers: list, activations: list[str],
                       x_scale: float = 1.0, output: str = "raw",
                       chunk: int = PREDICT_CHUNK, check_finite: bool = False) -> np.ndarray:
        """The network's output for every row of X, ``chunk`` rows at a time.

        ``layers`` are built layers; ``activations`` the one each computes.
        ``output`` is "raw" (the last layer's values), "softmax", "sigmoid" or
        "exp" (the mean of the Poisson loss's log link).
        X may be uint8 (then converted and multiplied by ``x_scale``). With
        ``check_finite``, NaN or infinity in X raises ValueError.
        """
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; expected one of {sorted(OUTPUTS)}")
        if check_finite and X.dtype.kind == "f" and not np.isfinite(X).all():
            raise ValueError("X contains NaN or infinity")
        dt = layers[0].dtype
        n = X.shape[0]
        out = np.empty((n,) + layers[-1].out_shape, dt)
        for start in range(0, n, chunk):
            h = self.forward_walk(layers, activations, _scaled(X[start:start + chunk], dt, x_scale),
                                  None, train=False)
            if output == "softmax":
                h = self.softmax(h)
            elif output == "sigmoid":
                h = self.sigmoid(h)
            elif output == "exp":
                h = np.exp(h)
            out[start:start + chunk] = h
        return out

    def predictor(self, layers: list, activations: list[str]) -> Any:
        """A form of the layers kept between inference calls, or None (here: always).

        The compiled backend returns a ``_train.Predictor``, whose ``run`` serves
        repeated ``predict`` calls without rebuilding the layer lists each time
        (see ``Network.predict``); the NumPy backend walks the layers on every call.

        Parameters
        ----------
        layers : list of Layer
            Built layers.
        activations : list of str
            The activation each computes.

        Returns
        -------
        None
        """
        return None

    def forward_walk(self, layers: list, activations: list[str], X: np.ndarray,
                     ctxs: list[dict] | None, train: bool) -> np.ndarray:
        """Walk ``layers`` forward from X; ``ctxs`` (one dict per layer) keeps what backward needs."""
        h = X
        for i, (layer, act) in enumerate(zip(layers, activations)):
            ctx = {"activation": act} if ctxs is None else ctxs[i]
            ctx["activation"] = act
            h = layer.forward(self, h, ctx, train)
        return h

    def backward_walk(self, layers: list, ctxs: list[dict], grad: np.ndarray) -> list[list]:
        """Walk ``layers`` back from dL/d(output); returns each layer's parameter gradients."""
        grads: list = [None] * len(layers)
        for l in range(len(layers) - 1, -1, -1):
            grad, grads[l] = layers[l].backward(self, grad, ctxs[l], need_dX=l > 0)
        return grads

    def train_batches(self, plan, order: np.ndarray, start: int, stop: int,
                      max_seconds: float = 0.0):
        """Train the mini-batches of ``order[start:stop]`` (``start`` begins a batch).

        With ``max_seconds`` > 0 it returns early, after the first batch that
        ends that long after the call began.

        Returns ``(loss_sum, n_done, bad_start, n_correct)``: the sum over
        samples of the batch-mean losses, the samples trained on (from
        ``start``), the position in ``order`` of the batch whose loss was not
        finite (-1 if none; that batch is not applied), and the right
        predictions among the samples trained on (weighted by their sample
        weights; 0 for MSE), counted from the outputs each batch's loss saw.
        """
        bs, dt = plan.batch_size, plan.dtype
        total, done, correct = 0.0, 0, 0.0
        deadline = time.perf_counter() + max_seconds if max_seconds > 0 else math.inf
        for pos in range(start, stop, bs):
            rows = order[pos:min(pos + bs, stop)]
            xb = _scaled(plan.X[rows], dt, plan.x_scale)
            state = plan.dropout_state
            ctxs = [{} if state is None else {"dropout": (int(state[0]), int(state[1]), i)}
                    for i in range(len(plan.layers))]
            out = self.forward_walk(plan.layers, plan.activations, xb, ctxs, train=True)
            wb = None if plan.sample_weight is None else plan.sample_weight[rows]
            loss, grad = self.loss(plan.loss, out, plan.y[rows], sample_weight=wb)
            if not np.isfinite(loss):
                return total, done, pos, correct
            total += loss * len(rows)
            correct += correct_count(plan.loss, out, plan.y[rows], wb)
            grads = self.backward_walk(plan.layers, ctxs, grad)
            plan.optimizer.update(self, plan.params, [g for per in grads for g in per],
                                  plan.decay)
            if state is not None:
                state[1] += np.uint64(1)  # the next batch draws fresh masks
            done += len(rows)
            if time.perf_counter() > deadline:  # after a batch: every call makes progress
                break
        return total, done, -1, correct


def correct_count(loss: str, out: np.ndarray, y: np.ndarray,
                  sample_weight: np.ndarray | None = None) -> float:
    """The (weighted) number of right predictions of the outputs ``out`` for ``y``.

    Softmax cross-entropy: the first maximum of each row of ``out`` against
    the label, or against the first maximum of the target row. Binary
    cross-entropy: the fraction of a row's outputs with ``(z >= 0) == (y >= 0.5)``.
    MSE: 0 (no accuracy). ``Network.evaluate`` divides the same count by the
    number (or total weight) of the samples.
    """
    if loss == "softmax_cross_entropy":
        truth = y if y.ndim == 1 else y.argmax(axis=1)
        right = (out.argmax(axis=1) == truth).astype(np.float64)
    elif loss == "binary_cross_entropy":
        right = ((out >= 0) == (y >= 0.5)).mean(axis=1)
    else:
        return 0.0
    if sample_weight is not None:
        return float(np.dot(right, sample_weight.astype(np.float64)))
    return float(right.sum())


def _weighted_sum(per_sample: np.ndarray, sample_weight: np.ndarray | None) -> float:
    if sample_weight is None:
        return per_sample.sum(dtype=np.float64)
    return (sample_weight * per_sample).sum(dtype=np.float64)


def _scaled_grad(grad: np.ndarray, sample_weight: np.ndarray | None, size: int,
                 dtype: np.dtype) -> np.ndarray:
    """grad / size, each row times its sample weight, in ``dtype``."""
    if sample_weight is not None:
        grad = grad * (sample_weight[:, None] / size).astype(dtype)
    else:
        grad = grad / size
    return grad.astype(dtype, copy=False)


def _scaled(X: np.ndarray, dtype: np.dtype, x_scale: float) -> np.ndarray:
    """X converted to ``dtype`` and multiplied by ``x_scale`` (when it is not 1)."""
    h = X.astype(dtype, copy=False)
    if x_scale != 1:
        h = h * dtype.type(x_scale)
    return h


def _checked_activation(name: str) -> str:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return name


# ---------------------------------------------------------------- convolution helpers

def _im2col(X: np.ndarray, kh: int, kw: int, stride: tuple[int, int],
            padding: tuple[int, int, int, int]) -> tuple[np.ndarray, int, int]:
    """The (n*OH*OW, kh*kw*C) matrix of X's receptive fields, (p, q, c) row-major."""
    n, H, Wd, c = X.shape
    (sh, sw), (pt, pb, pl, pr) = stride, padding
    if pt or pb or pl or pr:
        X = np.pad(X, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    oh, ow = (H + pt + pb - kh) // sh + 1, (Wd + pl + pr - kw) // sw + 1
    win = np.lib.stride_tricks.sliding_window_view(X, (kh, kw), axis=(1, 2))
    win = win[:, :sh * (oh - 1) + 1:sh, :sw * (ow - 1) + 1:sw]     # (n, oh, ow, c, kh, kw)
    cols = np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(n * oh * ow, kh * kw * c)
    return cols, oh, ow


# ---------------------------------------------------------------- dropout's hash
# splitmix64's finaliser over a counter: the same uint64 arithmetic as the
# compiled core's, so both draw identical masks.

_GOLDEN = 0x9E3779B97F4A7C15
_M64 = (1 << 64) - 1


def _mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _batch_seed(key: int, counter: int, index: int) -> int:
    """The seed of one layer's mask in one batch."""
    s = _mix64((key + counter * _GOLDEN) & _M64)
    return _mix64((s + (index + 1) * _GOLDEN) & _M64)


def _mix64_array(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))
