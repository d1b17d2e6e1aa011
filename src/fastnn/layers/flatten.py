"""Flatten: one sample's values as a vector, row-major over (H, W, C)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastnn.layers.base import Layer


class Flatten(Layer):
    """Reshape each sample to a vector, row-major over its shape (H, W, C for images).

    The network remembers the sizes, so the next layer's error message says
    how many features it gets (e.g. "Flatten gives 1440 = 12x12x10 features").
    """

    kind = "flatten"

    def __init__(self) -> None:
        super().__init__()

    def build(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        self.in_shape = tuple(int(d) for d in in_shape)
        self.out_shape = (math.prod(self.in_shape),)
        return self.out_shape

    def forward(self, ops: Any, X: np.ndarray, ctx: dict, train: bool) -> np.ndarray:
        return X.reshape(X.shape[0], -1)

    def backward(self, ops: Any, dY: np.ndarray, ctx: dict,
                 need_dX: bool) -> tuple[np.ndarray | None, list[np.ndarray]]:
        return (dY.reshape((dY.shape[0],) + self.in_shape) if need_dX else None), []

    def core_geometry(self) -> list[int]:
        return [self.out_shape[0]]

    def config(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        return "Flatten()"
