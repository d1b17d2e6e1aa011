"""A Hopfield network: Hebbian storage of ±1 patterns and recall by asynchronous updates.

>>> import numpy as np, fastnn
>>> patterns = np.where(np.random.default_rng(0).random((3, 100)) < 0.5, -1, 1)
>>> net = fastnn.Hopfield(seed=0).fit(patterns)
>>> noisy = patterns.copy(); noisy[:, :10] *= -1          # flip 10% of the units
>>> bool((net.predict(noisy) == patterns).all())
True

Plain NumPy: the network is small and its asynchronous dynamics are a loop over units
that no compiled product would speed up much; the loop is vectorised across the batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastnn._validation import as_numeric_array

__all__ = ["Hopfield"]


def _positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1, or a TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def _as_states(x: Any, name: str, n_units: int | None) -> tuple[np.ndarray, bool]:
    """Check that ``x`` holds ±1 states, one row per state; return it 2-D and whether it was 1-D.

    Raises
    ------
    TypeError
        When ``x`` does not hold numbers.
    ValueError
        For more than two dimensions, no rows or units, NaN or infinity, values other
        than -1 and +1, or a row length other than ``n_units``.
    """
    arr = as_numeric_array(x, name)
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be one state of shape (n_units,) or a batch of shape "
                         f"(n, n_units), got an array of shape {arr.shape}")
    single = arr.ndim == 1
    arr2 = arr.reshape(1, -1) if single else arr
    if arr2.shape[0] == 0 or arr2.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if n_units is not None and arr2.shape[1] != n_units:
        raise ValueError(f"{name} has {arr2.shape[1]} units per state; this network has "
                         f"{n_units}")
    if arr2.dtype.kind == "f" and not np.isfinite(arr2).all():
        raise ValueError(f"{name} contains NaN or infinity; states must be -1 or +1")
    bad = (arr2 != 1) & (arr2 != -1)
    if bad.any():
        values = np.unique(arr2[bad])[:5].tolist()
        hint = ""
        if np.isin(arr2, (0, 1)).all():
            hint = f" ({name} looks like 0/1 data: pass 2 * {name} - 1)"
        raise ValueError(f"{name} must hold only -1 and +1, found {values}{hint}")
    return arr2, single


class Hopfield:
    """A Hopfield network of ``n_units`` ±1 units with Hebbian weights.

    ``fit`` stores patterns with the Hebbian rule ``W = (1/N) sum_p p p^T`` (``N`` units,
    zero diagonal: no unit feeds itself). ``predict`` lets states evolve by
    ``x_i <- sign(sum_j W_ij x_j)`` until they stop changing. A unit whose input is exactly
    0 keeps its state, so a state is a fixed point exactly when every unit agrees with the
    sign of its input or has input 0. Asynchronous updates (one unit at a time) never raise
    the energy ``-1/2 x^T W x``, so they always end at a fixed point, usually the stored
    pattern nearest the start. The inverted pattern ``-p`` is stored along with ``p``.

    Random patterns stay stable while their number ``P`` is small against ``N``: about
    ``0.138 N`` is the limit beyond which recall breaks down (Amit, Gutfreund and
    Sompolinsky, 1985), and for every stored pattern to be an exact fixed point ``P``
    must be smaller still.

    Parameters
    ----------
    n_units : int, optional
        The number of units; by default taken from the patterns given to ``fit``.
    seed : int or numpy.random.Generator, optional
        Where the order of the asynchronous updates comes from. With an int every
        ``predict`` call draws the same orders, so equal inputs give equal results; with a
        Generator each call draws new ones from it; with None each call draws fresh ones.

    Attributes
    ----------
    W : ndarray of shape (n_units, n_units)
        The weights (float64, symmetric, zero diagonal), after ``fit``; read-only (a new
        array each time).
    n_units : int or None
        The number of units: as given, or from the last ``fit``.
    n_patterns : int
        The number of patterns stored by the last ``fit`` (0 before).

    Examples
    --------
    >>> import numpy as np, fastnn
    >>> net = fastnn.Hopfield(seed=0).fit([[1, -1, 1, -1, 1, -1], [1, 1, 1, -1, -1, -1]])
    >>> net.predict([-1, -1, 1, -1, 1, -1])      # one unit off the first pattern
    array([ 1, -1,  1, -1,  1, -1])
    """

    def __init__(self, n_units: int | None = None, seed: int | np.random.Generator | None = None):
        self.n_units = None if n_units is None else _positive_int(n_units, "n_units")
        self._fixed_units = self.n_units  # a size given here binds every fit
        if not (seed is None or isinstance(seed, np.random.Generator)
                or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool))):
            raise TypeError(f"seed must be None, an int or a numpy.random.Generator, "
                            f"got {seed!r}")
        self.seed = seed
        self.n_patterns = 0
        # The Hebbian sums sum_p p p^T: whole numbers, held in float64 so that BLAS computes
        # the units' inputs exactly (integers below 2**53 add up exactly in any order). A
        # tie (input exactly 0) is then a true tie, the incremental updates in predict never
        # drift, and W = counts / N is only the public view.
        self._counts: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"Hopfield(n_units={self.n_units}, n_patterns={self.n_patterns})"

    @property
    def W(self) -> np.ndarray:
        """The weight matrix ``(1/N) sum_p p p^T`` with a zero diagonal (a new array)."""
        return self._fitted_counts() / self.n_units

    def _fitted_counts(self) -> np.ndarray:
        if self._counts is None:
            raise RuntimeError("this Hopfield network stores no patterns yet: call "
                               "fit(patterns) first")
        return self._counts

    def fit(self, patterns: Any) -> Hopfield:
        """Store ``patterns`` with the Hebbian rule, replacing what was stored before.

        Parameters
        ----------
        patterns : array-like of shape (n_patterns, n_units) or (n_units,)
            ±1 patterns, one per row (a 1-D array is one pattern). 0/1 data is refused
            rather than guessed at: convert it with ``2 * patterns - 1``. Without
            ``n_units`` given to the constructor, any length is accepted, and sets it.

        Returns
        -------
        Hopfield
            ``self``.

        Raises
        ------
        ValueError
            For values other than -1 and +1 (NaN included), an empty array, more than two
            dimensions, or a pattern length other than ``n_units`` when that was given.
        TypeError
            When ``patterns`` does not hold numbers.
        """
        P, _ = _as_states(patterns, "patterns", self._fixed_units)
        P = P.astype(np.float64)
        counts = P.T @ P
        np.fill_diagonal(counts, 0.0)
        self.n_units = P.shape[1]
        self.n_patterns = P.shape[0]
        self._counts = counts
        return self

    def _check_input(self, x: Any) -> tuple[np.ndarray, bool]:
        return _as_states(x, "x", self._fitted_counts().shape[0])

    def energy(self, x: Any) -> float | np.ndarray:
        """The energy ``-1/2 x^T W x`` of one state or of each state of a batch.

        Parameters
        ----------
        x : array-like of shape (n_units,) or (n, n_units)
            ±1 states.

        Returns
        -------
        float or ndarray of shape (n,)
            A float for one state, an array for a batch.
        """
        arr, single = self._check_input(x)
        X = arr.astype(np.float64)
        e = -0.5 * np.einsum("ij,ij->i", X @ self._counts, X) / self.n_units
        return float(e[0]) if single else e

    def is_fixed_point(self, x: Any) -> bool | np.ndarray:
        """Whether one update of any unit would leave the state unchanged.

        Parameters
        ----------
        x : array-like of shape (n_units,) or (n, n_units)
            ±1 states.

        Returns
        -------
        bool or ndarray of bool of shape (n,)
            A bool for one state, an array for a batch.
        """
        arr, single = self._check_input(x)
        X = arr.astype(np.float64)
        # A unit is stable when its input has its sign or is 0 (a tie keeps the state).
        stable = ((X @ self._counts) * X >= 0).all(axis=1)
        return bool(stable[0]) if single else stable

    def predict(self, x: Any, steps: int = 100, asynchronous: bool = True,
                return_steps: bool = False
                ) -> np.ndarray | tuple[np.ndarray, np.ndarray | int]:
        """Let states evolve until they reach a fixed point or ``steps`` steps have passed.

        Each unit takes the sign of its input ``sum_j W_ij x_j``, keeping its state on a
        tie (input 0). Every state of a batch evolves on its own; one that stops changing
        is left as it is.

        Parameters
        ----------
        x : array-like of shape (n_units,) or (n, n_units)
            ±1 start states (for example noisy versions of stored patterns).
        steps : int, default 100
            The most steps per state. A step is one sweep over all units.
        asynchronous : bool, default True
            True: in each sweep the units are updated one at a time, in a random order (drawn
            from ``seed``, the same order for every state of the batch), each seeing the
            updates before it; this always ends at a fixed point. False: all units at once
            from the previous state (synchronous), which can end in a 2-cycle instead.
        return_steps : bool, default False
            Also return, per state, the number of steps that changed it (0 for a state
            that was already a fixed point). A state still changing after ``steps`` steps
            has the count ``steps``.

        Returns
        -------
        states : ndarray of the shape of ``x``
            The final states, in ``x``'s dtype (int64 when that is bool or unsigned).
        n_steps : ndarray of int of shape (n,), or an int for one state
            Only with ``return_steps=True``.

        Raises
        ------
        RuntimeError
            Before ``fit``.
        ValueError
            For values other than -1 and +1 (NaN included), a wrong state length, more than
            two dimensions, or an empty batch.
        TypeError
            For a non-integer ``steps`` or a non-bool ``asynchronous``.
        """
        arr, single = self._check_input(x)
        steps = _positive_int(steps, "steps")
        if not isinstance(asynchronous, (bool, np.bool_)):
            raise TypeError(f"asynchronous must be True or False, got {asynchronous!r}")
        C = self._counts
        X = arr.astype(np.float64)  # a copy: the caller's array is never written
        n_steps = np.zeros(X.shape[0], dtype=np.int64)
        active = np.arange(X.shape[0])  # the states that have not stopped changing
        rng = np.random.default_rng(self.seed)
        for _ in range(steps):
            Xa = X[active]
            if asynchronous:
                changed = self._sweep(Xa, C, rng.permutation(C.shape[0]))
            else:
                H = Xa @ C
                new = np.where(H > 0, 1.0, np.where(H < 0, -1.0, Xa))
                changed = (new != Xa).any(axis=1)
                Xa = new
            X[active] = Xa
            n_steps[active[changed]] += 1
            active = active[changed]
            if active.size == 0:
                break
        # Back in x's dtype, unless it cannot hold -1 (an all-ones bool or unsigned array
        # is valid input): then int64.
        out_dtype = arr.dtype if arr.dtype.kind in "if" else np.dtype(np.int64)
        states = X.astype(out_dtype, copy=False)
        if single:
            states, n_steps = states[0], int(n_steps[0])
        return (states, n_steps) if return_steps else states

    @staticmethod
    def _sweep(X: np.ndarray, C: np.ndarray, order: np.ndarray) -> np.ndarray:
        """One asynchronous sweep over the units in ``order``, in place on the rows of ``X``.

        The inputs H = X @ C are kept up to date instead of recomputed: when unit i flips in
        some rows, only those rows' inputs change, by 2 x_i C[i]. Near a fixed point few
        units flip, so a sweep costs little more than reading each unit's input once.
        Returns which rows changed.
        """
        H = X @ C
        changed = np.zeros(X.shape[0], dtype=bool)
        for i in order:
            h, xi = H[:, i], X[:, i]
            flip = np.flatnonzero(h * xi < 0)  # the sign of the input disagrees with the state
            if flip.size:
                xi[flip] = -xi[flip]
                # C is symmetric with a zero diagonal: row i is unit i's effect on the others,
                # and unit i's own input does not change.
                H[flip] += (2.0 * xi[flip])[:, None] * C[i]
                changed[flip] = True
        return changed
