"""Argument checks shared by the image layers (pairs of sizes, padding)."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_pair(value: Any, name: str, minimum: int = 1) -> tuple[int, int]:
    """``value`` (an int or a pair of ints) as a pair of ints >= ``minimum``."""
    items = list(value) if isinstance(value, (list, tuple)) else [value, value]
    if len(items) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    out = []
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, np.integer)):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        if item < minimum:
            raise ValueError(f"{name} must be {'positive' if minimum == 1 else 'non-negative'}, "
                             f"got {value!r}")
        out.append(int(item))
    return out[0], out[1]


def image_shape(in_shape: tuple[int, ...], layer: str) -> tuple[int, int, int]:
    """``in_shape`` as (H, W, C), or a ValueError that says what the layer needs."""
    if len(in_shape) != 3:
        size = int(np.prod(in_shape))
        hint = (" (give the network input_shape=(H, W, C))" if len(in_shape) == 1 else "")
        raise ValueError(f"{layer} takes images of shape (H, W, C), but gets samples of shape "
                         f"{tuple(in_shape)} ({size} values){hint}")
    return int(in_shape[0]), int(in_shape[1]), int(in_shape[2])


def shape_text(shape: tuple[int, ...]) -> str:
    """(12, 12, 10) as "12x12x10"."""
    return "x".join(map(str, shape))
