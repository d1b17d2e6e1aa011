"""Max pooling over windows of channels-last images."""

from __future__ import annotations

from typing import Any

import numpy as np

from fastnn.layers._geometry import check_pair, image_shape
from fastnn.layers.base import Layer


class MaxPool2D(Layer):
    """The maximum of each ``pool_size`` window, channel by channel.

    Parameters
    ----------
    pool_size : int or pair of int, default 2
        (ph, pw).
    stride : int, pair of int or None, default None
        (sh, sw); None means the pool size (windows side by side). Windows that
        do not fit entirely in the image are dropped, as in PyTorch: a 5x5 image
        pooled 2x2 gives 2x2.

    Notes
    -----
    The gradient goes to the first maximum of each window (in row-major order
    within the window), whose position the forward pass keeps.
    """

    kind = "maxpool2d"

    def __init__(self, pool_size: int | tuple[int, int] = 2,
                 stride: int | tuple[int, int] | None = None) -> None:
        super().__init__()
        self.pool_size = check_pair(pool_size, "pool_size")
        self.stride = self.pool_size if stride is None else check_pair(stride, "stride")
        self._stride_given = stride is not None

    def build(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        H, W, C = image_shape(tuple(in_shape), "MaxPool2D")
        (ph, pw), (sh, sw) = self.pool_size, self.stride
        if H < ph or W < pw:
            raise ValueError(f"the {ph}x{pw} pool is larger than the {H}x{W} input")
        self.in_shape = (H, W, C)
        self.out_shape = ((H - ph) // sh + 1, (W - pw) // sw + 1, C)
        return self.out_shape

    def forward(self, ops: Any, X: np.ndarray, ctx: dict, train: bool) -> np.ndarray:
        X = X.reshape((X.shape[0],) + self.in_shape)
        Y, argmax = ops.maxpool2d_forward(X, self.pool_size, self.stride)
        ctx["argmax"] = argmax
        return Y

    def backward(self, ops: Any, dY: np.ndarray, ctx: dict,
                 need_dX: bool) -> tuple[np.ndarray | None, list[np.ndarray]]:
        if not need_dX:
            return None, []
        argmax = ctx["argmax"]
        return ops.maxpool2d_backward(dY.reshape(argmax.shape), argmax, self.in_shape), []

    def workspace(self, batch: int) -> dict[str, tuple[tuple[int, ...], Any]]:
        # Where each output's maximum is, as an offset within its sample.
        return {"argmax": ((batch, int(np.prod(self.out_shape))), np.dtype(np.int32))}

    def core_geometry(self) -> list[int]:
        return [*self.in_shape, *self.out_shape[:2], *self.pool_size, *self.stride]

    def config(self) -> dict[str, Any]:
        return {"pool_size": list(self.pool_size),
                "stride": list(self.stride) if self._stride_given else None}

    def __repr__(self) -> str:
        return f"MaxPool2D({self.pool_size}, stride={self.stride})"
