"""What one ``fit`` call trains: the network's arrays, the optimizer and the buffers."""

from __future__ import annotations

from typing import Any

import numpy as np

from fastnn.ops.numpy_ops import ACTIVATIONS, LOSSES


class TrainingPlan:
    """The arrays an epoch reads and writes, gathered once per ``fit`` call.

    The weights are the layers' own arrays (updated in place). The per-batch
    buffers (the gathered input rows, each layer's output and output gradient,
    the parameter gradients) are allocated here, once, so that training
    allocates nothing per batch.

    Parameters
    ----------
    W, b : list of ndarray
        The layers' weights (n_in, n_out) and biases (n_out,), C-contiguous.
    activations : list of str
        The activation each layer computes (a fused output activation is
        already replaced by "identity").
    loss : str
        One of ``LOSSES``.
    optimizer : SGD or Adam
        Its state arrays must exist (``optimizer.prepare``).
    batch_size : int
        Rows per mini-batch.
    use_labels : bool
        True when y holds integer class labels, False for target rows.
    """

    def __init__(self, W: list[np.ndarray], b: list[np.ndarray], activations: list[str],
                 loss: str, optimizer: Any, batch_size: int, use_labels: bool) -> None:
        self.W = W
        self.b = b
        self.activations = list(activations)
        self.acts = [ACTIVATIONS[a] for a in activations]
        self.loss = loss
        self.loss_code = LOSSES[loss]
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.use_labels = use_labels
        self.dtype = W[0].dtype
        self._buffers_for = None

    def allocate(self, n_features: int) -> None:
        """Allocate the per-batch buffers (once; later calls are free)."""
        if self._buffers_for == n_features:
            return
        bs, dt = self.batch_size, self.dtype
        n_out = self.W[-1].shape[1]
        self.Xb = np.empty((bs, n_features), dt)
        self.A = [np.empty((bs, w.shape[1]), dt) for w in self.W]
        self.D = [np.empty((bs, w.shape[1]), dt) for w in self.W]
        self.dW = [np.empty_like(w) for w in self.W]
        self.db = [np.empty_like(b) for b in self.b]
        self.labels_b = np.empty(bs, np.intp)
        self.targets_b = np.empty((bs, n_out), dt)
        self.weights_b = np.empty(bs, dt)
        self._buffers_for = n_features

    # Optimizer state, by the names the compiled loop reads.
    @property
    def state1_W(self) -> list[np.ndarray]:
        return self.optimizer.state1_W

    @property
    def state1_b(self) -> list[np.ndarray]:
        return self.optimizer.state1_b

    @property
    def state2_W(self) -> list[np.ndarray]:
        return self.optimizer.state2_W

    @property
    def state2_b(self) -> list[np.ndarray]:
        return self.optimizer.state2_b
