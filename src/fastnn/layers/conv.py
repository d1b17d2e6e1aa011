"""The 2-D convolution: ``Y = act(conv(X, W) + b)`` on channels-last images."""

from __future__ import annotations

from typing import Any

import numpy as np

from fastnn._validation import check_positive_int
from fastnn.layers._geometry import check_pair, image_shape, shape_text
from fastnn.layers.base import WeightsAndBias
from fastnn.layers.dense import check_activation


class Conv2D(WeightsAndBias):
    """A 2-D convolution (cross-correlation, as in PyTorch and Keras) with a fused activation.

    Images are channels-last: a sample is ``(H, W, C)``. The output pixel
    ``Y[i, j, o]`` is ``act(b[o] + sum over (p, q, c) of Xp[i*sh + p, j*sw + q, c] W[p, q, c, o])``
    where ``Xp`` is the input padded with zeros.

    Parameters
    ----------
    in_channels : int
        Channels of the input images (C).
    out_channels : int
        Number of filters (channels of the output).
    kernel_size : int or pair of int
        (kh, kw).
    stride : int or pair of int, default 1
        (sh, sw).
    padding : int, pair of int, "valid" or "same", default 0
        Zeros added on each side: ``p`` on all four sides, ``(ph, pw)`` above and
        below / left and right, "valid" for none, "same" for an output as large
        as the input (stride 1 only; an even kernel gets the extra zero below and
        to the right, as PyTorch does).
    activation : str, default "identity"
        "identity", "sigmoid", "tanh" or "relu" (fused into the layer).

    Attributes
    ----------
    W : ndarray of shape (kh, kw, in_channels, out_channels)
        The filters. Assign a new array to replace them (validated and copied).
    b : ndarray of shape (out_channels,)
        Biases.
    """

    kind = "conv2d"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] | str = 0,
                 activation: str = "identity") -> None:
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        self.kernel_size = check_pair(kernel_size, "kernel_size")
        self.stride = check_pair(stride, "stride")
        self.activation = check_activation(activation)
        if self.activation == "softmax":
            raise ValueError("Conv2D does not take a softmax activation; put Flatten and a "
                             "Dense layer with it last")
        kh, kw = self.kernel_size
        if isinstance(padding, str):
            if padding == "valid":
                self.pads = (0, 0, 0, 0)
            elif padding == "same":
                if self.stride != (1, 1):
                    raise ValueError(f"padding='same' needs stride 1, got stride {self.stride}")
                self.pads = ((kh - 1) // 2, kh - 1 - (kh - 1) // 2,
                             (kw - 1) // 2, kw - 1 - (kw - 1) // 2)
            else:
                raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', "
                                 f"got {padding!r}")
            self.padding: tuple[int, int] | str = padding
        else:
            ph, pw = check_pair(padding, "padding", minimum=0)
            self.padding = (ph, pw)
            self.pads = (ph, ph, pw, pw)   # top, bottom, left, right
        self._W: np.ndarray | None = None
        self._b: np.ndarray | None = None

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        kh, kw = self.kernel_size
        return {"W": (kh, kw, self.in_channels, self.out_channels), "b": (self.out_channels,)}

    def params(self) -> list[np.ndarray]:
        return [self._W, self._b]

    def build(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        H, W, C = image_shape(tuple(in_shape), "Conv2D")
        if C != self.in_channels:
            raise ValueError(f"Conv2D takes {self.in_channels} input channels, but the images "
                             f"of shape {shape_text((H, W, C))} have {C}")
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        pt, pb, pl, pr = self.pads
        if H + pt + pb < kh or W + pl + pr < kw:
            raise ValueError(f"the {kh}x{kw} kernel is larger than the padded "
                             f"{H + pt + pb}x{W + pl + pr} input")
        oh, ow = (H + pt + pb - kh) // sh + 1, (W + pl + pr - kw) // sw + 1
        self.in_shape, self.out_shape = (H, W, C), (oh, ow, self.out_channels)
        return self.out_shape

    def initialize(self, rng: np.random.Generator, dtype: np.dtype) -> None:
        """Draw W (He-normal for ReLU, Glorot-uniform otherwise, over the receptive
        field as Keras does) and zero b; drawn in float64, then cast."""
        self.dtype = np.dtype(dtype)
        kh, kw = self.kernel_size
        shape = self.param_shapes()["W"]
        fan_in, fan_out = kh * kw * self.in_channels, kh * kw * self.out_channels
        if self.activation == "relu":
            W = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        else:
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            W = rng.uniform(-limit, limit, shape)
        self.W = W
        self.b = np.zeros(self.out_channels)

    def forward(self, ops: Any, X: np.ndarray, ctx: dict, train: bool) -> np.ndarray:
        act = ctx.get("activation", self.activation)
        X = X.reshape((X.shape[0],) + self.in_shape)
        Y = ops.conv2d_forward(X, self._W, self._b, self.stride, self.pads, act)
        ctx["X"], ctx["Y"], ctx["act"] = X, Y, act
        return Y

    def backward(self, ops: Any, dY: np.ndarray, ctx: dict,
                 need_dX: bool) -> tuple[np.ndarray | None, list[np.ndarray]]:
        Y = ctx["Y"]
        dZ = ops.backprop_activation(Y, dY.reshape(Y.shape), ctx["act"])
        dW, db = ops.conv2d_backward_weight(ctx["X"], dZ, self.kernel_size, self.stride,
                                            self.pads)
        dX = (ops.conv2d_backward_input(dZ, self._W, self.in_shape, self.stride, self.pads)
              if need_dX else None)
        return dX, [dW, db]

    def workspace(self, batch: int) -> dict[str, tuple[tuple[int, ...], Any]]:
        oh, ow, _ = self.out_shape
        kh, kw = self.kernel_size
        # The im2col matrix of the batch: kept from forward for the weight gradient,
        # then reused for the columns of the input gradient.
        return {"cols": ((batch * oh * ow, kh * kw * self.in_channels), self.dtype)}

    def core_geometry(self) -> list[int]:
        H, W, C = self.in_shape
        oh, ow, co = self.out_shape
        pt, _, pl, _ = self.pads
        return [H, W, C, oh, ow, co, *self.kernel_size, *self.stride, pt, pl]

    def config(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
                "activation": self.activation}

    def __repr__(self) -> str:
        return (f"Conv2D({self.in_channels}, {self.out_channels}, {self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding!r}, "
                f"activation={self.activation!r})")
