"""What every layer is: its shapes, its parameters, its forward and backward.

A layer holds its configuration and parameters and knows its shapes. The
Network walks its layers once forward and once in reverse with the same
methods on either backend (the ``ops`` object); the compiled core walks the
same list through ``core_geometry``. Adding a layer kind adds one subclass.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from fastnn import _fit_guard
from fastnn._validation import check_finite


class Layer:
    """Base class of the layers.

    Subclasses set ``kind`` (a key of ``fastnn._codes.LAYER_KINDS``) and
    ``param_names``, and implement ``build``, ``forward``, ``backward`` and
    ``config``; those with parameters implement ``param_shapes`` and
    ``initialize``.

    Attributes
    ----------
    kind : str
        The layer kind, as written in model files.
    param_names : tuple of str
        The names of the parameters, in the order ``params()`` returns them.
    decayed : tuple of str
        The parameters that weight decay acts on (weights, not biases).
    in_shape, out_shape : tuple of int or None
        Per-sample shapes, known once the layer is built.
    dtype : numpy.dtype
        The dtype of the parameters.
    """

    kind: ClassVar[str] = ""
    param_names: ClassVar[tuple[str, ...]] = ()
    decayed: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.in_shape: tuple[int, ...] | None = None
        self.out_shape: tuple[int, ...] | None = None
        self.dtype = np.dtype(np.float64)

    # ------------------------------------------------------------ shapes

    def build(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Check that the layer accepts samples of ``in_shape``; return its output shape.

        Raises
        ------
        ValueError
            When the shapes do not chain; the message gives the size that would fit.
        """
        raise NotImplementedError

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of each parameter, by name (empty for a layer without any)."""
        return {}

    # ------------------------------------------------------------ parameters

    def params(self) -> list[np.ndarray]:
        """The parameter arrays, in ``param_names`` order (the layer's own arrays)."""
        return [getattr(self, "_" + name) for name in self.param_names]

    def initialize(self, rng: np.random.Generator, dtype: np.dtype) -> None:
        """Draw fresh parameters from ``rng`` in ``dtype``."""
        self.dtype = np.dtype(dtype)

    def set_dtype(self, dtype: np.dtype) -> None:
        """Convert the parameters to ``dtype`` (through the checked setters)."""
        self.dtype = np.dtype(dtype)
        for name in self.param_names:
            value = getattr(self, "_" + name)
            if value is not None:
                setattr(self, name, value)

    def _checked(self, value: Any, name: str) -> np.ndarray:
        """``value`` as a new C-contiguous array of the layer's dtype and the parameter's shape.

        From a callback of the fit that owns the layer (see ``_fit_guard.opened``)
        the checked values are copied into the current array, which is returned:
        the fit keeps training that very array.
        """
        in_place = False
        if _fit_guard.is_claimed(self):
            # The running fit writes into the current arrays: a new one would
            # silently drop that training (or, freed, be written after its end).
            # Its own callbacks, run between chunks, write into those arrays instead.
            in_place = _fit_guard.writable_in_place(self)
            if not in_place:
                raise RuntimeError(f"cannot assign {name} while a fit of this layer is "
                                   "running; assign it before or after fit (or from a "
                                   "callback of that fit)")
        shape = self.param_shapes()[name]
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
        if arr.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
        with np.errstate(over="ignore", invalid="ignore"):  # reported just below
            out = np.array(arr, dtype=self.dtype, order="C", copy=True)
        check_finite(out, name, arr)
        if in_place:
            current = getattr(self, "_" + name)
            current[...] = out
            return current
        return out

    def _make_writeable(self) -> None:
        """Copy read-only parameters (memory-mapped by ``joblib.load(..., mmap_mode="r")``,
        say) so that training can update them in place; predicting needs no copy."""
        for name in self.param_names:
            arr = getattr(self, "_" + name)
            if arr is not None and not arr.flags.writeable:
                setattr(self, "_" + name, np.array(arr, order="C"))

    # ------------------------------------------------------------ computation

    def forward(self, ops: Any, X: np.ndarray, ctx: dict, train: bool) -> np.ndarray:
        """The layer's output for the batch ``X``; saves in ``ctx`` what backward needs.

        ``ctx`` is the layer's own dict for this batch; the network may put
        ``"activation"`` in it (the activation actually computed, when the loss
        fuses the layer's output activation).
        """
        raise NotImplementedError

    def backward(self, ops: Any, dY: np.ndarray, ctx: dict,
                 need_dX: bool) -> tuple[np.ndarray | None, list[np.ndarray]]:
        """The gradients from dL/dY: ``(dX or None, [one gradient per parameter])``."""
        raise NotImplementedError

    def workspace(self, batch: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """Extra buffers the compiled loop needs for ``batch`` rows: name -> (shape, dtype).

        The output and output-gradient buffers and the parameter gradients are
        allocated for every layer; this lists only what a layer needs beyond
        them (im2col columns, pooling argmax, dropout mask).
        """
        return {}

    def core_geometry(self) -> list[int]:
        """The integers the compiled core needs to run this layer (sizes, strides)."""
        raise NotImplementedError

    # ------------------------------------------------------------ model files

    def config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-compatible: ``type(self)(**config())`` rebuilds it."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Layer":
        """A new layer from ``config()`` output, checked like constructor arguments."""
        if not isinstance(config, dict):
            raise TypeError(f"a layer config must be a dict, got {type(config).__name__}")
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class WeightsAndBias(Layer):
    """A layer with a weight array ``W`` and a bias ``b`` (Dense, Conv2D).

    Both are properties: reading gives the layer's own array, assigning is
    checked (shape, numbers, finiteness), converted to the layer's dtype and
    copied, and refused while another thread's fit trains the layer.
    """

    param_names: ClassVar[tuple[str, ...]] = ("W", "b")
    decayed: ClassVar[tuple[str, ...]] = ("W",)

    @property
    def W(self) -> np.ndarray | None:
        """The weights (see the layer's docstring for their layout)."""
        return self._W

    @W.setter
    def W(self, value: Any) -> None:
        self._W = self._checked(value, "W")

    @property
    def b(self) -> np.ndarray | None:
        """The biases, one per output unit or channel."""
        return self._b

    @b.setter
    def b(self, value: Any) -> None:
        self._b = self._checked(value, "b")
