"""Which matrix kernels the compiled core's dense layers train with.

Float32 dense layers train with packed-weight kernels written for the CPU's vector
units when it has them: ``"avx512"`` (AVX-512F) or ``"avx2"`` (AVX2 and FMA), picked
from CPUID when fastnn loads. ``"blas"`` is the BLAS path (SciPy's BLAS), which float64
networks, other CPUs and builds without the kernels always use. A level can be
lowered, never raised above what the machine supports: set the environment variable
``FASTNN_KERNELS`` (``avx2`` or ``blas``) before importing fastnn, or call
:func:`set_kernel_level`. The level is read when a ``fit`` starts.

Inference (``predict``, ``evaluate``) reads the weights where they are and uses BLAS.
"""

from __future__ import annotations

import os
import warnings

try:
    from fastnn._core import _packed
except ImportError:  # the compiled core is not built: NumPy only, which uses no kernels
    _packed = None

#: The kernel levels, lowest first; each is a number in the compiled core.
LEVELS: tuple[str, ...] = ("blas", "avx2", "avx512")

ENV_VAR = "FASTNN_KERNELS"


def available_kernel_levels() -> list[str]:
    """The kernel levels this build can use on this machine, lowest first.

    Returns
    -------
    list of str
        Always starts with ``"blas"``; ends with the best level, e.g.
        ``["blas", "avx2", "avx512"]`` on an AVX-512 machine.
    """
    best = _packed.supported_level() if _packed is not None else 0
    return list(LEVELS[: best + 1])


def get_kernel_level() -> str:
    """The kernel level the next ``fit`` uses for its float32 dense layers.

    Returns
    -------
    str
        One of :data:`LEVELS`.
    """
    return LEVELS[_packed.get_level() if _packed is not None else 0]


def set_kernel_level(level: str | None) -> None:
    """Use ``level``'s kernels in the fits that start from now on.

    Parameters
    ----------
    level : {"avx512", "avx2", "blas"} or None
        None restores the best level the machine supports.

    Raises
    ------
    TypeError
        When ``level`` is not a string or None.
    ValueError
        When ``level`` is not a known level, or the machine (or build) lacks it.
    """
    if level is None:
        if _packed is not None:
            _packed.set_level(_packed.supported_level())
        return
    if not isinstance(level, str):
        raise TypeError(f"level must be one of {list(LEVELS)} or None, got {level!r}")
    name = level.strip().lower()
    if name not in LEVELS:
        raise ValueError(f"unknown kernel level {level!r}; expected one of {list(LEVELS)}")
    if name not in available_kernel_levels():
        raise ValueError(f"kernel level {name!r} is not available on this machine; "
                         f"available: {available_kernel_levels()}")
    if _packed is not None:
        _packed.set_level(LEVELS.index(name))


def _apply_environment() -> None:
    """Lower the level as ``FASTNN_KERNELS`` asks (at import; a bad value only warns)."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value:
        return
    if value not in LEVELS:
        warnings.warn(f"{ENV_VAR}={value!r} is not one of {list(LEVELS)}; ignored",
                      RuntimeWarning, stacklevel=2)
        return
    available = available_kernel_levels()
    if value not in available:
        # It can only lower the level: asking for more than the machine has keeps the best.
        warnings.warn(f"{ENV_VAR}={value!r} is not available on this machine; using "
                      f"{available[-1]!r}", RuntimeWarning, stacklevel=2)
        return
    set_kernel_level(value)


_apply_environment()
