"""One place owns the compiled core's threads: BLAS's and OpenMP's."""

from __future__ import annotations

import contextlib
import numbers
import os
import threading
import time
from typing import Any, Iterator



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
    core_blas()  # loads the core's BLAS first: a limit applies only to libraries loaded
    threadpool_limits(limits=n, user_api="blas")
    # Called outside a `with`, threadpoolctl would keep this thread as the only
    # one allowed to change OpenBLAS's threads, and silently ignore the limits
    # that other threads (parallel fits) set later: give that control back.
    try:
        from threadpoolctl import OpenBLASController
        OpenBLASController.clear_controlling_thread(force=True)
    except (ImportError, AttributeError):  # threadpoolctl before 3.6 has no such control
        pass
    omp = _omp()
    if omp is not None:
        omp.omp_set_num_threads(n)
    _num_threads = n


def get_num_threads() -> int:
    """The number of threads the compiled core uses (as last set, else the default)."""
    if _num_threads is not None:
        return _num_threads
    omp = _omp()
    if omp is not None and omp.has_openmp():
        return omp.omp_get_max_threads()
    return os.cpu_count() or 1


def has_openmp() -> bool:
    """True when the compiled core was built with OpenMP."""
    omp = _omp()
    return omp is not None and omp.has_openmp()


def omp_max_threads() -> int:
    """OpenMP's thread count for this thread (1 without the compiled core)."""
    omp = _omp()
    return omp.omp_get_max_threads() if omp is not None else 1


def omp_set_num_threads(n: int) -> None:
    """Set OpenMP's thread count for this thread (nothing without the compiled core)."""
    omp = _omp()
    if omp is not None:
        omp.omp_set_num_threads(n)


def _omp():
    """The compiled core's OpenMP controls, or None without the compiled extension."""
    try:
        from fastnn._core import _threads
    except ImportError:  # the NumPy backend works without the extension
        return None
    return _threads


# ---------------------------------------------------------------- the default: chosen per chunk
#
# With no set_num_threads call, a fit chooses the BLAS thread count of each
# chunk of batches itself, between 1 and the count BLAS has when the fit
# starts (the machine's, or a threadpoolctl limit around the fit). Why: on a
# quiet machine two threads are faster for large products and slower for
# small ones, and on a loaded machine OpenBLAS's spin-waiting threads can make
# every product many times slower than one thread. Only measuring tells which
# holds now, so the chooser times the chunks of each count and keeps probing,
# with short chunks, as rarely as its probes keep losing.

_BLAS_SYMBOLS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads",
                 "scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_")


class CoreBLAS:
    """The thread count of the BLAS library the compiled core calls, read and set quickly.

    The core calls SciPy's BLAS (``scipy.linalg.cython_blas``); NumPy may load
    another copy, which is left alone. Set through the library's own C
    function: a microsecond, against milliseconds for a threadpoolctl limit.
    """

    def __init__(self) -> None:
        self._set = None
        self._get = None
        try:
            import scipy.linalg.cython_blas  # noqa: F401 - loads the library
            from threadpoolctl import ThreadpoolController
            libs = ThreadpoolController().select(internal_api="openblas").lib_controllers
        except Exception:  # no threadpoolctl or no OpenBLAS: counts are left as they are
            libs = []
        scipy_libs = [lib for lib in libs if "scipy" in os.path.basename(os.path.dirname(
            lib.filepath))] or libs
        for lib in scipy_libs[:1]:
            for name in _BLAS_SYMBOLS:
                setter = getattr(lib.dynlib, name, None)
                getter = getattr(lib.dynlib, name.replace("_set_", "_get_"), None)
                if setter is not None and getter is not None:
                    self._set, self._get = setter, getter
                    break

    @property
    def available(self) -> bool:
        """True when the count can be read and set."""
        return self._set is not None

    def get(self) -> int:
        """The current thread count (1 when it cannot be read)."""
        return int(self._get()) if self._get is not None else 1

    def set(self, n: int) -> None:
        """Use ``n`` threads from now on (nothing when unavailable)."""
        if self._set is not None:
            self._set(int(n))


_core_blas: CoreBLAS | None = None
_choosing = threading.Lock()  # held by the one fit that chooses BLAS's threads
_held_limits = 0              # thread limits set by fastnn's own code, now in force
_held_lock = threading.Lock()


@contextlib.contextmanager
def limit_held() -> Iterator[None]:
    """Declare a BLAS thread limit in force (``fastnn.sklearn``'s ``n_threads``, say).

    While one is, no fit chooses BLAS's threads, and a fit that was choosing
    stops and leaves the count as the limit set it. A limit cannot be told
    from the chooser's own setting by its value alone (both are often 1).
    """
    global _held_limits
    with _held_lock:
        _held_limits += 1
    try:
        yield
    finally:
        with _held_lock:
            _held_limits -= 1


def core_blas() -> CoreBLAS:
    """The process's ``CoreBLAS`` (made on first use)."""
    global _core_blas
    if _core_blas is None:
        _core_blas = CoreBLAS()
    return _core_blas


class IdleCores:
    """How many CPUs were idle, on average, since the previous call (Linux's /proc/stat).

    None where /proc/stat cannot be read, and for the first call.
    """

    def __init__(self) -> None:
        try:
            self._jiffy = 1.0 / os.sysconf("SC_CLK_TCK")
        except (AttributeError, ValueError, OSError):
            self._jiffy = 0.0
        self._mark: tuple[int, float] | None = None

    @staticmethod
    def _idle_jiffies() -> int | None:
        try:
            with open("/proc/stat", "rb") as f:
                fields = f.readline().split()   # "cpu user nice system idle iowait ..."
            return int(fields[4]) + int(fields[5])
        except (OSError, ValueError, IndexError):
            return None

    def since_last_call(self) -> float | None:
        """Idle CPUs (0 to the CPU count) averaged since the previous call."""
        now, idle = time.perf_counter(), self._idle_jiffies() if self._jiffy else None
        mark, self._mark = self._mark, (None if idle is None else (idle, now))
        if mark is None or idle is None or now - mark[1] < 0.02:
            return None
        return (idle - mark[0]) * self._jiffy / (now - mark[1])


class ThreadChooser:
    """Chooses the BLAS thread count of each chunk of a fit from measured chunk times.

    The first chunks (once they last ``MIN_SECONDS``) try 1 thread, then
    ``max_threads``; after that the faster
    count runs, and the other is probed with a short chunk (``PROBE_FRACTION``
    of a normal one) every ``interval`` chunks. A probe that loses doubles the
    interval (up to ``MAX_INTERVAL``); one that wins by more than 5% switches.
    A chunk that runs 1.5x slower than its count's recent pace (another
    process started competing) brings the next probe forward.

    Parameters
    ----------
    max_threads : int
        The largest count to try; 1 means there is nothing to choose.
    """

    # A probe of 1/16 of a chunk (about 6 ms) still lasts MIN_SECONDS; 1/8 cost the
    # default 5-7% against 2 threads at batch 64 on a quiet machine (benches/NOTES.md 27).
    PROBE_FRACTION = 0.0625
    MIN_SECONDS = 0.004
    MIN_INTERVAL = 8
    MAX_INTERVAL = 128

    def __init__(self, max_threads: int, watch_load: bool = False) -> None:
        self.options = (1, max_threads) if max_threads > 1 else (1,)
        # With watch_load, more threads are tried only while the machine had a
        # core to spare over the last chunk: under load, a try of two spinning
        # threads costs more than any probe can win back.
        self.idle = IdleCores() if watch_load else None
        self.pace: dict[int, float] = {}   # seconds per sample, recent
        self.best = 1
        self.interval = self.MIN_INTERVAL
        self.since_probe = 0
        self.last_set = 0          # the count this fit set last (0: none yet)
        self.abandoned = False     # another thread changed the count: leave it alone

    def begin(self) -> bool:
        """Start choosing for a fit; False when another fit is choosing already.

        BLAS's thread count is one per process: two fits choosing it at once
        (on two threads) would undo each other's settings.
        """
        if not _choosing.acquire(blocking=False):
            return False
        self.last_set = 0
        self.abandoned = False
        return True

    def end(self, blas: CoreBLAS, original: int) -> None:
        """Give BLAS back the count the fit found, unless someone else has set it since."""
        try:
            if (not self.abandoned and not _held_limits and self.last_set
                    and blas.get() == self.last_set):
                blas.set(original)
        finally:
            _choosing.release()

    def apply(self, blas: CoreBLAS, n: int) -> None:
        """Use ``n`` threads, unless another thread changed the count since we set it.

        Then the chooser stops for this fit: a threadpoolctl limit set around
        other work (a parallel fit of fastnn.sklearn, say) is not overridden.
        """
        if self.abandoned or not n:
            return
        if _held_limits or (self.last_set and blas.get() != self.last_set):
            self.abandoned = True
            return
        blas.set(n)
        self.last_set = n

    def next(self) -> tuple[int, float]:
        """The thread count of the next chunk (0: leave it), and the fraction of a chunk to run."""
        if self.abandoned:
            return 0, 1.0
        spare = self.idle.since_last_call() if self.idle is not None else None
        busy = spare is not None and spare < 0.5
        for n in self.options:
            if n not in self.pace:
                if n > 1 and busy:
                    return 1, 1.0            # try more threads once a core is free
                return n, self.PROBE_FRACTION
        if len(self.options) > 1 and self.since_probe >= self.interval:
            other = self.options[1] if self.best == self.options[0] else self.options[0]
            if other > 1 and busy:
                self.since_probe = 0         # probe later, when a core is free
                return self.best, 1.0
            return other, self.PROBE_FRACTION
        return self.best, 1.0

    def record(self, n: int, seconds: float, samples: int) -> None:
        """Note that ``samples`` samples took ``seconds`` with ``n`` threads.

        Chunks shorter than ``MIN_SECONDS`` are not counted: the first chunks of
        a fit are a batch or a few, too short to time (waking a thread pool
        alone takes a good part of one), so the tries repeat until they are long
        enough to tell.
        """
        if samples <= 0 or seconds < self.MIN_SECONDS or n not in self.options:
            return
        pace = seconds / samples
        tried_all = len(self.pace) == len(self.options)
        if not tried_all or n != self.best:      # an initial try or a probe: take it as it is
            self.pace[n] = pace
            if len(self.pace) < len(self.options):
                return
            if not tried_all:                    # the initial tries are done
                self.best = min(self.options, key=self.pace.__getitem__)
            elif self.pace[n] < 0.95 * self.pace[self.best]:
                self.best, self.interval = n, self.MIN_INTERVAL
            else:
                self.interval = min(2 * self.interval, self.MAX_INTERVAL)
            self.since_probe = 0
            return
        previous = self.pace[n]
        self.pace[n] = 0.5 * previous + 0.5 * pace
        self.since_probe += 1
        if pace > 1.5 * previous:                # the machine got busier: probe soon
            self.since_probe = max(self.since_probe, self.interval)


def chunk_thread_chooser() -> ThreadChooser | None:
    """A chooser for a new fit, or None when the thread count is fixed.

    Fixed means: ``set_num_threads`` was called, or BLAS cannot be controlled,
    or it has one thread (a threadpoolctl limit of 1 around the fit, say).
    """
    blas = core_blas()
    if _num_threads is not None or _held_limits or not blas.available:
        return None
    max_threads = blas.get()
    return ThreadChooser(max_threads, watch_load=True) if max_threads > 1 else None
