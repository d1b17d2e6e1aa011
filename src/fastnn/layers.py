"""The dense layer: its weights, its activation and its initialisation."""

from __future__ import annotations

from typing import Any

import numpy as np

from fastnn import _fit_guard
from fastnn._validation import check_finite, check_positive_int
from fastnn.ops.numpy_ops import ACTIVATIONS

# "softmax" is accepted only on the last layer of a softmax cross-entropy
# network, where the loss fuses it (see Network).
LAYER_ACTIVATIONS = tuple(ACTIVATIONS) + ("softmax",)


class Dense:
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
        Weights; assign a new array to replace them (it is validated and copied).
    b : ndarray of shape (n_out,)
        Biases.
    """

    def __init__(self, n_in: int, n_out: int, activation: str = "identity") -> None:
        self.n_in = check_positive_int(n_in, "n_in")
        self.n_out = check_positive_int(n_out, "n_out")
        if activation is None:
            activation = "identity"
        if activation not in LAYER_ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; expected one of {list(LAYER_ACTIVATIONS)}")
        self.activation = activation
        self.dtype = np.dtype(np.float64)
        self._W: np.ndarray | None = None
        self._b: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"Dense({self.n_in}, {self.n_out}, activation={self.activation!r})"

    @property
    def W(self) -> np.ndarray | None:
        return self._W

    @W.setter
    def W(self, value: Any) -> None:
        self._W = self._checked(value, (self.n_in, self.n_out), "W")

    @property
    def b(self) -> np.ndarray | None:
        return self._b

    @b.setter
    def b(self, value: Any) -> None:
        self._b = self._checked(value, (self.n_out,), "b")

    def _checked(self, value: Any, shape: tuple, name: str) -> np.ndarray:
        if _fit_guard.is_claimed(self):
            # The running fit writes into the current arrays: a new one would
            # silently drop that training (or, freed, be written after its end).
            raise RuntimeError(f"cannot assign {name} while a fit of this layer is running; "
                               "assign it before or after fit")
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
        if arr.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
        with np.errstate(over="ignore", invalid="ignore"):  # reported just below
            out = np.array(arr, dtype=self.dtype, order="C", copy=True)
        check_finite(out, name, arr)
        return out

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

    def _make_writeable(self) -> None:
        """Copy read-only parameters (memory-mapped by ``joblib.load(..., mmap_mode="r")``,
        say) so that training can update them in place; predicting needs no copy."""
        for name in ("_W", "_b"):
            arr = getattr(self, name)
            if arr is not None and not arr.flags.writeable:
                setattr(self, name, np.array(arr, order="C"))

    def set_dtype(self, dtype: np.dtype) -> None:
        """Convert the parameters to ``dtype`` (kept when they exist already)."""
        self.dtype = np.dtype(dtype)
        # Through the setters, so that a value the new dtype cannot hold is refused.
        if self._W is not None:
            self.W = self._W
        if self._b is not None:
            self.b = self._b
