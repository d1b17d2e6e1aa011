"""What one ``fit`` call trains with: its layers, data, optimizer and buffers."""

from __future__ import annotations

from typing import Any

import numpy as np

from fastnn._codes import ACTIVATIONS, LAYER_KINDS, LOSSES


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a 64-byte cache line.

    The batch buffers are read and written a vector at a time by the compiled
    kernels; NumPy only promises 16-byte alignment, and a 64-byte vector that
    straddles two cache lines costs two loads (measured: the weight-gradient
    product at batch 256 took 7% longer on misaligned buffers, in BLAS too).
    """
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    buf = np.empty(count * dtype.itemsize + 64, np.uint8)
    skip = -buf.ctypes.data % 64
    return buf[skip:skip + count * dtype.itemsize].view(dtype).reshape(shape)


class TrainingPlan:
    """Everything an epoch reads and writes, gathered once per ``fit`` call.

    The parameters are the layers' own arrays (updated in place). The
    per-batch buffers (the gathered input rows, each layer's output and
    output gradient, the parameter gradients) are allocated here, once, so
    that training allocates nothing per batch. The fit holds the plan, and
    the plan holds a reference to every array the compiled loop touches.

    Parameters
    ----------
    layers : list of Layer
        The network's layers, built.
    activations : list of str
        The activation each layer computes (a fused output activation is
        already replaced by "identity").
    loss : str
        One of ``LOSSES``.
    optimizer : Optimizer
        Its state must exist (``optimizer.prepare``).
    batch_size : int
        Rows per mini-batch.
    X : ndarray (n, n_features)
        The training inputs: uint8 (scaled by ``x_scale`` as they are read),
        float32 or float64, C-contiguous.
    y : ndarray
        Integer labels (n,) as intp, or target rows (n, n_outputs) in the
        network's dtype.
    x_scale : float
        Multiplies every input as it is read.
    sample_weight : ndarray (n,) or None
        Each sample's weight, in the network's dtype.
    dropout_state : ndarray (2,) of uint64 or None
        The network's dropout key and batch counter: each trained batch draws
        its masks from (key, counter) and then advances the counter in place.
    """

    def __init__(self, layers: list, activations: list[str], loss: str, optimizer: Any,
                 batch_size: int, X: np.ndarray, y: np.ndarray, x_scale: float = 1.0,
                 sample_weight: np.ndarray | None = None,
                 dropout_state: np.ndarray | None = None) -> None:
        self.layers = list(layers)
        self.activations = list(activations)
        self.kinds = [LAYER_KINDS[layer.kind] for layer in self.layers]
        self.acts = [ACTIVATIONS[a] for a in self.activations]
        self.geometry = [layer.core_geometry() for layer in self.layers]
        self.params = [p for layer in self.layers for p in layer.params()]
        self.decay = [name in layer.decayed for layer in self.layers
                      for name in layer.param_names]
        self.loss = loss
        self.loss_code = LOSSES[loss]
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.dtype = self.params[0].dtype if self.params else np.dtype(np.float32)
        self.X, self.y, self.x_scale, self.sample_weight = X, y, x_scale, sample_weight
        self.use_labels = y.ndim == 1
        bs, dt = batch_size, self.dtype
        self.Xb = _aligned_empty((bs, X.shape[1]), dt)
        self.A = [_aligned_empty((bs,) + layer.out_shape, dt) for layer in self.layers]
        self.D = [_aligned_empty(a.shape, dt) for a in self.A]
        self.grads = [np.empty_like(p) for p in self.params]
        self.labels_b = np.empty(bs, np.intp)
        self.targets_b = np.empty((bs, self.A[-1].shape[1]), dt)
        self.weights_b = np.empty(bs, dt)
        self.dropout_state = dropout_state
        self.work: list | None = None  # the layers' extra buffers (see work_buffers)
        self.workspace: Any = None  # the compiled backend's, made on first use

    def work_buffers(self) -> list[list[np.ndarray]]:
        """Each layer's extra buffers for the compiled loop (``Layer.workspace``), made once."""
        if self.work is None:
            self.work = [[np.empty(shape, dtype) for shape, dtype in
                          layer.workspace(self.batch_size).values()] for layer in self.layers]
        return self.work
