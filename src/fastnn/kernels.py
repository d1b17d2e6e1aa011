"""Which matrix kernels the compiled core's dense layers train with.

Float32 dense layers train with packed-weight kernels written for the CPU's vector
units when it has them: ``"avx512"`` (AVX-512F) or ``"avx2"`` (AVX2 and FMA), picked
from CPUID when fastnn loads. ``"blas"`` is the BLAS path (SciPy's BLAS), which float64
networks, other CPUs and builds without the kernels always use. A level can be
lowered, never raised above what the machine supports: set the environment variable
``FASTNN_KERNELS`` (``avx2`` or ``blas``) before importing fastnn, or call
:func:`set_kernel_level`. The level is read when a ``fit`` starts, and by every
inference call.

Inference at the ``"avx512"`` and ``"avx2"`` levels reads the weights as they are below
32 rows (one sample, say), with a kernel that skips the inputs that are 0; it runs the
first dense layer the same way at any number of rows when its input is mostly zeros
(images). Otherwise it runs BLAS from 32 to 63 rows and packs the weights for the call
from 64 rows on.

In the chunks of a fit that the thread setting gives several threads, the kernels
share their large products with one helper thread (made for the chunk). A helper that
keeps the fit's thread waiting (another program took its CPU) leaves the rest of the
chunk to it, and the thread chooser weighs such chunks against one-thread ones.
:func:`set_kernel_threads` (or the environment variable ``FASTNN_KERNEL_THREADS=1``)
turns the helper off for dense networks (``benches/NOTES.md``, sections 15 and 21).
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
THREADS_ENV_VAR = "FASTNN_KERNEL_THREADS"


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


def get_kernel_threads() -> int:
    """The threads the packed kernels may use in a multi-threaded chunk (1 or 2).

    Returns
    -------
    int
    """
    return _packed.get_threads() if _packed is not None else 1


def set_kernel_threads(n: int) -> None:
    """Let the packed kernels share large products with one helper thread (2), or not (1).

    Only chunks that run with more than one thread (``set_num_threads``, or the fit's
    own choice) use the helper; it is made for each chunk and ended with it, spins
    50 us between products and then sleeps, and the results are bit for bit those of
    one thread.

    Parameters
    ----------
    n : {1, 2}

    Raises
    ------
    TypeError
        When ``n`` is not an integer.
    ValueError
        When ``n`` is not 1 or 2.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be 1 or 2, got {n!r}")
    if n not in (1, 2):
        raise ValueError(f"the packed kernels use 1 or 2 threads, got {n}")
    if _packed is not None:
        _packed.set_threads(n)


def _apply_environment() -> None:
    """Lower the level as ``FASTNN_KERNELS`` asks (at import; a bad value only warns)."""
    threads = os.environ.get(THREADS_ENV_VAR, "").strip()
    if threads:
        try:
            set_kernel_threads(int(threads))
        except (TypeError, ValueError):
            warnings.warn(f"{THREADS_ENV_VAR}={threads!r} is not 1 or 2; ignored",
                          RuntimeWarning, stacklevel=2)
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
