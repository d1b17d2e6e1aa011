"""The dense layer: ``Y = act(X @ W + b)``, its weights and its initialisation."""

from __future__ import annotations

from typing import Any

import numpy as np

from fastnn._codes import ACTIVATIONS
from fastnn._validation import check_positive_int
from fastnn.layers.base import WeightsAndBias

# "softmax" is accepted only on the last layer of a softmax cross-entropy
# network, where the loss fuses it (see Network).
LAYER_ACTIVATIONS = tuple(ACTIVATIONS) + ("softmax",)


def check_activation(activation: Any) -> str:
    """Return a valid layer activation name ("identity" for None)."""
    if activation is None:
        return "identity"
    if not isinstance(activation, str) or activation not in LAYER_ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; expected one of {list(LAYER_ACTIVATIONS)}")
    return activation


class Dense(WeightsAndBias):
    """A fully connected layer ``Y = act(X @ W + b)``.

    Parameters
    ----------
    n_in : int
        Number of inputs.
    n_out : int
        Number of outputs (units).
    activation : str, default "identity"
        "identity", "sigmoid", "tanh" or "relu"; "softmax" on the last layer of
        a network trained with softmax cross-entropy.

    Attributes
    ----------
    W : ndarray of shape (n_in, n_out)
        Weights, one column per unit: ``W[i, j]`` connects input ``i`` to
        unit ``j``, and the layer computes ``X @ W + b`` (the layout of Keras'
        ``Dense.kernel``). The tutorials write the transpose, one row of
        ``n_in`` weights per neuron, as do PyTorch's ``Linear.weight`` and the
        tutorials' JSON: build such a layer with ``Dense.from_neurons(rows,
        biases)``, or assign ``rows.T``. A square matrix (n_in == n_out) fits
        either way, so the layout cannot be checked: given the rows untransposed,
        the network is silently another one. Assign a new array to replace
        the weights (it is validated and copied).
    b : ndarray of shape (n_out,)
        Biases, one per unit.

    Examples
    --------
    >>> Dense.from_neurons([[0.5, -1.0, 2.0], [1.0, 0.0, 0.0]], [0.1, 0.2]).W
    array([[ 0.5,  1. ],
           [-1. ,  0. ],
           [ 2. ,  0. ]])
    """

    kind = "dense"

    def __init__(self, n_in: int, n_out: int, activation: str = "identity") -> None:
        super().__init__()
        self.n_in = check_positive_int(n_in, "n_in")
        self.n_out = check_positive_int(n_out, "n_out")
        self.activation = check_activation(activation)
        self._W: np.ndarray | None = None
        self._b: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"Dense({self.n_in}, {self.n_out}, activation={self.activation!r})"

    @classmethod
    def from_neurons(cls, weights: Any, biases: Any = None,
                     activation: str = "identity") -> "Dense":
        """A layer from per-neuron rows, as the tutorials (and PyTorch) write them.

        Parameters
        ----------
        weights : array-like of shape (n_out, n_in)
            One row per neuron (unit): ``weights[j]`` are neuron ``j``'s input
            weights, so neuron ``j`` computes ``act(weights[j] @ x + biases[j])``.
            Stored transposed, as ``W`` of shape (n_in, n_out).
        biases : array-like of shape (n_out,) or (n_out, 1), optional
            One bias per neuron (the tutorials' JSON writes them as
            one-element rows); zeros by default.
        activation : str, default "identity"
            As for ``Dense``.

        Returns
        -------
        Dense
            A layer holding these weights (copied); a ``Network`` converts
            them to its dtype.

        Examples
        --------
        >>> import fastnn
        >>> hidden = fastnn.Dense.from_neurons([[0, 1], [0, 1]], [0, 0], "sigmoid")
        >>> out = fastnn.Dense.from_neurons([[0, 1]], [0], "sigmoid")
        >>> net = fastnn.Network([hidden, out], dtype="float64")
        >>> round(float(net.predict([2, 3])[0]), 4)  # the tutorial's 0.7216
        0.7216
        """
        w = np.asarray(weights)
        if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 1:
            raise ValueError("weights must be a 2-D array of shape (n_out, n_in), one row per "
                             f"neuron; got shape {w.shape}")
        n_out, n_in = w.shape
        layer = cls(n_in, n_out, activation)
        if w.dtype.kind not in "biuf":
            raise TypeError(f"weights must hold numbers, got dtype {w.dtype}")
        layer.W = w.T
        if biases is None:
            layer.b = np.zeros(n_out)
        else:
            b = np.asarray(biases)
            if b.shape == (n_out, 1):
                b = b.reshape(n_out)
            if b.shape != (n_out,):
                raise ValueError(f"biases must have shape ({n_out},) or ({n_out}, 1), one per "
                                 f"neuron (row of weights); got shape {b.shape}")
            layer.b = b
        return layer

    def neurons(self) -> tuple[np.ndarray, np.ndarray]:
        """The weights as per-neuron rows and the biases: ``(W.T, b)``, copies.

        Returns
        -------
        weights : ndarray of shape (n_out, n_in)
        biases : ndarray of shape (n_out,)
        """
        if self._W is None or self._b is None:
            raise ValueError("the layer has no weights yet (put it in a Network first)")
        return self._W.T.copy(), self._b.copy()

    def build(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        in_shape = tuple(in_shape)
        size = int(np.prod(in_shape)) if in_shape else 0
        if len(in_shape) != 1 or size != self.n_in:
            what = f"{size} = {'x'.join(map(str, in_shape))}" if len(in_shape) > 1 else f"{size}"
            raise ValueError(f"Dense takes {self.n_in} inputs per sample, but gets {what}"
                             + (" (add a Flatten layer before it)" if len(in_shape) > 1 else ""))
        self.in_shape, self.out_shape = in_shape, (self.n_out,)
        return self.out_shape

    def params(self) -> list[np.ndarray]:
        return [self._W, self._b]  # (the base class's generic lookup costs a microsecond)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"W": (self.n_in, self.n_out), "b": (self.n_out,)}

    def initialize(self, rng: np.random.Generator, dtype: np.dtype) -> None:
        """Draw W (He-normal for ReLU, Glorot-uniform otherwise) and zero b.

        The draw is made in float64 and then cast, so float32 and float64
        networks with the same seed start from the same weights.
        """
        self.dtype = np.dtype(dtype)
        if self.activation == "relu":
            W = rng.standard_normal((self.n_in, self.n_out)) * np.sqrt(2.0 / self.n_in)
        else:
            limit = np.sqrt(6.0 / (self.n_in + self.n_out))
            W = rng.uniform(-limit, limit, (self.n_in, self.n_out))
        self.W = W
        self.b = np.zeros(self.n_out)

    def forward(self, ops: Any, X: np.ndarray, ctx: dict, train: bool) -> np.ndarray:
        act = ctx.get("activation", self.activation)
        Y = ops.dense_forward(X, self._W, self._b, act)
        ctx["X"], ctx["Y"], ctx["act"] = X, Y, act
        return Y

    def backward(self, ops: Any, dY: np.ndarray, ctx: dict,
                 need_dX: bool) -> tuple[np.ndarray | None, list[np.ndarray]]:
        dX, dW, db = ops.dense_backward(ctx["X"], self._W, ctx["Y"], dY, ctx["act"], need_dX)
        return dX, [dW, db]

    def core_geometry(self) -> list[int]:
        return [self.n_in, self.n_out]

    def config(self) -> dict[str, Any]:
        return {"n_in": self.n_in, "n_out": self.n_out, "activation": self.activation}
