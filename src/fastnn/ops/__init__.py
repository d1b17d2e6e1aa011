"""One ops interface, two implementations.

``NumpyOps`` holds the plain-NumPy reference of every op; ``CompiledOps``
subclasses it and overrides the ops with compiled kernels. Both have the same
signatures, so tests compare them op by op and the benchmark runs the same
network on each. Only ``CompiledOps`` needs the compiled core, and it is
imported on first use: the NumPy backend works without the extension.
"""

from __future__ import annotations

from typing import Any

from fastnn._codes import ACTIVATIONS, LOSSES
from fastnn.ops.numpy_ops import NumpyOps
from fastnn.ops.plan import TrainingPlan

BACKENDS = ("compiled", "numpy")


def get_ops(backend: str) -> NumpyOps:
    """Return a new ops object for ``backend`` ("compiled" or "numpy")."""
    if backend == "numpy":
        return NumpyOps()
    if backend == "compiled":
        return _compiled_ops()()
    raise ValueError(f"unknown backend {backend!r}; expected one of {sorted(BACKENDS)}")


def _compiled_ops() -> type:
    """The CompiledOps class, or an ImportError that says what to do without the core."""
    try:
        from fastnn.ops.compiled_ops import CompiledOps
    except ImportError as exc:
        raise ImportError(
            f"fastnn's compiled core is not available ({exc}). Build it by installing fastnn "
            "with `pip install .` (a C compiler and the Python headers are needed), or use "
            "backend='numpy', which needs no compiled code") from exc
    return CompiledOps


def __getattr__(name: str) -> Any:
    if name == "CompiledOps":  # imports the compiled core
        return _compiled_ops()
    raise AttributeError(f"module 'fastnn.ops' has no attribute {name!r}")


__all__ = ["ACTIVATIONS", "LOSSES", "BACKENDS", "CompiledOps", "NumpyOps", "TrainingPlan",
           "get_ops"]
