"""One ops interface, two implementations.

``NumpyOps`` holds the plain-NumPy reference of every op; ``CompiledOps``
subclasses it and overrides the ops with compiled kernels. Both have the same
signatures, so tests compare them op by op and the benchmark runs the same
network on each.
"""

from __future__ import annotations

from fastnn.ops.compiled_ops import CompiledOps
from fastnn.ops.numpy_ops import ACTIVATIONS, LOSSES, NumpyOps
from fastnn.ops.plan import TrainingPlan

BACKENDS = {"numpy": NumpyOps, "compiled": CompiledOps}


def get_ops(backend: str) -> NumpyOps:
    """Return a new ops object for ``backend`` ("compiled" or "numpy")."""
    try:
        return BACKENDS[backend]()
    except (KeyError, TypeError):
        raise ValueError(f"unknown backend {backend!r}; expected one of {sorted(BACKENDS)}") from None


__all__ = ["ACTIVATIONS", "LOSSES", "BACKENDS", "CompiledOps", "NumpyOps", "TrainingPlan", "get_ops"]
