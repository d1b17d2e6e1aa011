"""One place owns the compiled core's threads: BLAS's and OpenMP's."""

from __future__ import annotations

import numbers
import os
from typing import Any

from fastnn._core import _threads

# The most threads fastnn accepts: more than any machine it runs on has hardware
# threads, and far inside the C int that OpenMP and OpenBLAS take. A larger count
# is a mistake (it would overflow, or ask for more threads than the system allows).
MAX_THREADS = 4096

_num_threads: int | None = None


def check_num_threads(n: Any, name: str = "n", allow_all: bool = False) -> int:
    """Return ``n`` as an int in ``[1, MAX_THREADS]`` (or -1 with ``allow_all``).

    Parameters
    ----------
    n : int
        The number of threads to check.
    name : str, default "n"
        The argument's name, for the error messages.
    allow_all : bool, default False
        Accept -1, meaning all CPUs (returned as -1).

    Returns
    -------
    int

    Raises
    ------
    TypeError
        When ``n`` is not an integer (a bool is not one here).
    ValueError
        When ``n`` is out of range.
    """
    expected = f"between 1 and {MAX_THREADS}" + (", or -1 for all CPUs" if allow_all else "")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} must be an integer number of threads {expected}, got {n!r}")
    if not (1 <= n <= MAX_THREADS or (allow_all and n == -1)):
        raise ValueError(f"{name} must be {expected}, got {n}")
    return int(n)


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in the compiled core: BLAS (through threadpoolctl) and OpenMP.

    Parameters
    ----------
    n : int
        Between 1 and ``MAX_THREADS`` (4096). Applies to every BLAS library
        loaded in the process (NumPy's and SciPy's each load their own OpenBLAS).

    Raises
    ------
    TypeError
        When ``n`` is not an integer.
    ValueError
        When ``n`` is out of range; nothing is changed then.
    """
    global _num_threads
    from threadpoolctl import threadpool_limits

    # Checked in full before anything changes: a failure must leave BLAS and OpenMP as they were.
    n = check_num_threads(n)
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
