"""Inverted dropout, with masks drawn from the network's seed by a counter-based hash."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastnn.layers.base import Layer

# The mask keeps an element when the top 31 bits of its hash are >= this
# threshold; an integer comparison draws the same mask on every backend.
THRESHOLD_BITS = 31


def dropout_threshold(rate: float) -> int:
    """The integer threshold of ``rate`` (an element is dropped with probability t / 2**31)."""
    return int(round(rate * 2 ** THRESHOLD_BITS))


def dropout_scale(threshold: int) -> float:
    """1 / (keep probability), computed as the compiled core does (in double)."""
    return float(2 ** THRESHOLD_BITS) / float(2 ** THRESHOLD_BITS - threshold)


class Dropout(Layer):
    """Inverted dropout: in ``fit`` each value is zeroed with probability ``rate``
    and the others are divided by ``1 - rate``; elsewhere it is the identity.

    ``predict``, ``evaluate`` and ``loss_and_grads`` see the identity. The masks
    come from the network's seed (a hash of the seed, the batch counter, the
    layer's position and the element's index), so both backends draw the same
    masks, every batch a fresh one, and a refit with the same seed repeats them.

    Parameters
    ----------
    rate : float
        The probability of dropping a value, in [0, 1).
    """

    kind = "dropout"

    def __init__(self, rate: float) -> None:
        super().__init__()
        if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, (int, float, np.integer,
                                                                       np.floating)):
            raise TypeError(f"rate must be a number in [0, 1), got {rate!r}")
        if not (math.isfinite(rate) and 0 <= rate < 1):
            raise ValueError(f"rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.threshold = dropout_threshold(self.rate)
        if self.threshold >= 2 ** THRESHOLD_BITS - 1:
            raise ValueError(f"rate {rate!r} is too close to 1: the masks resolve rates up to "
                             f"1 - 2**-{THRESHOLD_BITS - 1}")

    def build(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        self.in_shape = self.out_shape = tuple(int(d) for d in in_shape)
        return self.out_shape

    def forward(self, ops: Any, X: np.ndarray, ctx: dict, train: bool) -> np.ndarray:
        seed = ctx.get("dropout")  # (key, counter, layer index): given by fit only
        if not train or seed is None or self.threshold == 0:
            ctx["mask"] = None
            return X
        Y, ctx["mask"] = ops.dropout_forward(X, self.rate, *seed)
        return Y

    def backward(self, ops: Any, dY: np.ndarray, ctx: dict,
                 need_dX: bool) -> tuple[np.ndarray | None, list[np.ndarray]]:
        if not need_dX:
            return None, []
        mask = ctx.get("mask")
        if mask is None:
            return dY, []
        # The mask has the shape of the input as it came (flat rows or images); the
        # next layer may hand back its gradient in the other form.
        return ops.dropout_backward(dY.reshape(mask.shape), mask, self.rate), []

    def workspace(self, batch: int) -> dict[str, tuple[tuple[int, ...], Any]]:
        return {"mask": ((batch, math.prod(self.out_shape)), np.dtype(np.uint8))}

    def core_geometry(self) -> list[int]:
        return [math.prod(self.out_shape), self.threshold]

    def config(self) -> dict[str, Any]:
        return {"rate": self.rate}

    def __repr__(self) -> str:
        return f"Dropout({self.rate})"
