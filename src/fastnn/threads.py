"""One place owns the compiled core's threads: BLAS's and OpenMP's."""

from __future__ import annotations

import numbers
import os

from fastnn._core import _threads

_num_threads: int | None = None


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in the compiled core: BLAS (through threadpoolctl) and OpenMP.

    Parameters
    ----------
    n : int
        At least 1. Applies to every BLAS library loaded in the process
        (NumPy's and SciPy's each load their own OpenBLAS).
    """
    global _num_threads
    from threadpoolctl import threadpool_limits

    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    n = int(n)
    threadpool_limits(limits=n, user_api="blas")
    # Called outside a `with`, threadpoolctl would keep this thread as the only
    # one allowed to change OpenBLAS's threads, and silently ignore the limits
    # that other threads (parallel fits) set later: give that control back.
    try:
        from threadpoolctl import OpenBLASController
        OpenBLASController.clear_controlling_thread(force=True)
    except (ImportError, AttributeError):  # threadpoolctl before 3.6 has no such control
        pass
    _threads.omp_set_num_threads(n)
    _num_threads = n


def get_num_threads() -> int:
    """The number of threads the compiled core uses (as last set, else the default)."""
    if _num_threads is not None:
        return _num_threads
    return _threads.omp_get_max_threads() if _threads.has_openmp() else (os.cpu_count() or 1)


def has_openmp() -> bool:
    """True when the compiled core was built with OpenMP."""
    return _threads.has_openmp()
