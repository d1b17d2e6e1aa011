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
        from fastnn.ops.compiled_ops import CompiledOps
        return CompiledOps()
    raise ValueError(f"unknown backend {backend!r}; expected one of {sorted(BACKENDS)}")


def __getattr__(name: str) -> Any:
    if name == "CompiledOps":  # imports the compiled core
        from fastnn.ops.compiled_ops import CompiledOps
        return CompiledOps
    raise AttributeError(f"module 'fastnn.ops' has no attribute {name!r}")


__all__ = ["ACTIVATIONS", "LOSSES", "BACKENDS", "CompiledOps", "NumpyOps", "TrainingPlan",
           "get_ops"]
