"""The tutorials' small data sets and the helpers to prepare them.

``gender`` and ``xor`` return the four-row toy sets the tutorials build by
hand; ``microchips`` returns the 118-row microchip set that ships with the
package; ``load_csv`` reads files like it (``ex2data2.txt``); ``standardize``
and ``one_hot`` are the two transformations those tutorials apply.
"""

from __future__ import annotations

import os
import warnings
from importlib import resources
from typing import Any

import numpy as np

__all__ = ["GENDER_OFFSET", "gender", "load_csv", "microchips", "one_hot", "standardize",
           "xor"]

#: What the tutorial subtracts from (weight in lb, height in in) before training.
GENDER_OFFSET = np.array([135.0, 66.0])

# name, weight (lb), height (in), gender
_PEOPLE = (("Alice", 133, 65, "F"), ("Bob", 160, 72, "M"),
           ("Charlie", 152, 70, "M"), ("Diana", 120, 60, "F"))


def gender(centered: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's four people: (weight, height) and 1 for female.

    Parameters
    ----------
    centered : bool, default True
        Subtract ``GENDER_OFFSET`` = (135 lb, 66 in) as the tutorial does, so
        Alice is (-2, -1). With False the raw weights and heights.

    Returns
    -------
    X : ndarray of shape (4, 2), float64
        Alice, Bob, Charlie, Diana.
    y : ndarray of shape (4,), float64
        1.0 for female (Alice, Diana), 0.0 for male.

    Examples
    --------
    >>> X, y = gender()
    >>> X[0], y
    (array([-2., -1.]), array([1., 0., 0., 1.]))
    """
    X = np.array([[w, h] for _, w, h, _ in _PEOPLE], dtype=np.float64)
    if centered:
        X -= GENDER_OFFSET
    y = np.array([1.0 if g == "F" else 0.0 for *_, g in _PEOPLE])
    return X, y


def xor() -> tuple[np.ndarray, np.ndarray]:
    """The XOR truth table.

    Returns
    -------
    X : ndarray of shape (4, 2), float64
        (0, 0), (0, 1), (1, 0), (1, 1).
    y : ndarray of shape (4,), float64
        0, 1, 1, 0.
    """
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([0, 1, 1, 0], dtype=np.float64)
    return X, y


def microchips() -> tuple[np.ndarray, np.ndarray]:
    """The microchip quality-assurance set: two test scores per chip, 1 for accepted.

    This is ``ex2data2.txt``, the data of the regularised logistic regression
    exercise in Andrew Ng's Machine Learning course (programming exercise 2):
    the results of two quality-assurance tests for 118 microchips from a
    fabrication plant, and whether each chip was accepted. The two classes are
    not linearly separable; the tutorial that trains a 2-10-1 sigmoid network
    on them draws the curved decision boundary they need (see
    ``examples/chips.py``). The file ships inside the package, so no download
    or data folder is needed.

    Returns
    -------
    X : ndarray of shape (118, 2), float64
        The scores of microchip test 1 and test 2, in file order (about -0.8
        to 1.1; z-score them with ``standardize`` before training).
    y : ndarray of shape (118,), float64
        1.0 for accepted (58 chips), 0.0 for rejected (60 chips).

    Examples
    --------
    >>> X, y = microchips()
    >>> X.shape, X[0], y[:3]
    ((118, 2), array([0.051267, 0.69956 ]), array([1., 1., 1.]))
    """
    # Read through importlib.resources, so it works from a wheel or a zip too.
    source = resources.files("fastnn.datasets").joinpath("ex2data2.txt")
    with source.open("r", encoding="ascii") as f:
        data = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    return np.ascontiguousarray(data[:, :2]), np.ascontiguousarray(data[:, 2])


def load_csv(path: str | os.PathLike, target: int | None = -1, delimiter: str = ",",
             skip_header: int = 0, dtype: Any = np.float64) -> Any:
    """Read a numeric CSV file such as ``ex2data2.txt`` into features and target.

    Parameters
    ----------
    path : str or path-like
        The file. Blank lines and text after ``#`` are ignored.
    target : int or None, default -1
        Column holding the target (negative counts from the end). None returns
        every column as features.
    delimiter : str, default ","
        Column separator.
    skip_header : int, default 0
        Lines to skip at the top (e.g. 1 for a header row).
    dtype : float dtype, default float64
        Type of X.

    Returns
    -------
    X : ndarray of shape (n_samples, n_columns - 1)
        The other columns, in file order.
    y : ndarray of shape (n_samples,)
        The target column: int64 when every value is a whole number of
        magnitude at most 2**53 (class labels), else ``dtype``. Only returned
        when ``target`` is not None.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is empty, a value is not a number, rows have different
        lengths, a value is beyond the range of ``dtype``, or ``target`` is not
        a column.

    Examples
    --------
    >>> X, y = load_csv("ex2data2.txt")          # doctest: +SKIP
    >>> X.shape, y[:3]                           # doctest: +SKIP
    ((118, 2), array([1, 1, 1]))
    """
    where = os.fspath(path)
    try:
        with warnings.catch_warnings():
            # An empty file is reported below as a ValueError, not as loadtxt's warning.
            warnings.filterwarnings("ignore", "loadtxt: input contained no data",
                                    UserWarning)
            data = np.loadtxt(where, delimiter=delimiter, skiprows=skip_header,
                              dtype=np.float64, ndmin=2, comments="#")
    except ValueError as exc:  # non-numbers, ragged rows
        raise ValueError(f"{where}: could not read a numeric table: {exc}") from None
    if data.size == 0:
        raise ValueError(f"{where}: the file holds no data rows")
    if not np.isfinite(data).all():
        raise ValueError(f"{where}: the file contains NaN or infinity")
    with np.errstate(over="ignore"):  # e.g. 1e300 as float32: infinity, refused below
        X = data.astype(dtype, copy=False)
    if not np.isfinite(X).all():
        raise ValueError(f"{where}: the file holds values beyond the range of "
                         f"{np.dtype(dtype).name}")
    if target is None:
        return X
    n_cols = data.shape[1]
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) \
            or not -n_cols <= target < n_cols:
        raise ValueError(f"target must be a column index in [-{n_cols}, {n_cols}), got {target!r}")
    if n_cols < 2:
        raise ValueError(f"{where}: one column cannot hold both features and a target")
    col = int(target) % n_cols
    y = data[:, col]
    # Whole numbers are class labels. Beyond 2**53 float64 (what the file was read
    # as) no longer holds every integer, and beyond 2**63 the cast to int64 would
    # wrap around to a negative number: such a column stays a float target.
    if np.array_equal(y, np.round(y)) and np.abs(y).max() <= 2.0 ** 53:
        y = y.astype(np.int64)
    else:
        y = y.astype(dtype)
    return np.ascontiguousarray(np.delete(X, col, axis=1)), y


def standardize(X: Any, mean: Any = None, std: Any = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-score each column, returning the mean and std so new data can follow.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The data.
    mean, std : array-like of shape (n_features,), optional
        Statistics to reuse, e.g. the training set's for test data. Computed
        from X when omitted (population std, as ``X.std(axis=0)``).

    Returns
    -------
    Z : ndarray
        ``(X - mean) / std``, float64 (float32 stays float32).
    mean, std : ndarray of shape (n_features,)
        The statistics used. Constant columns get std 1, so they become 0
        instead of NaN.

    Examples
    --------
    >>> Z, mean, std = standardize([[1.0, 10.0], [3.0, 30.0]])
    >>> Z
    array([[-1., -1.],
           [ 1.,  1.]])
    >>> standardize([[2.0, 20.0]], mean, std)[0]
    array([[0., 0.]])
    """
    arr = np.asarray(X)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"X must hold numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {arr.shape}")
    out_dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    arr = arr.astype(out_dtype, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError("X contains NaN or infinity")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    if mean is None:
        if arr.shape[0] == 0:
            raise ValueError("X is empty: cannot compute a mean")
        mean = arr.mean(axis=0)
        std = arr.std(axis=0)
        std = np.where(std > 0, std, 1.0).astype(out_dtype)
    else:
        mean = np.asarray(mean, dtype=out_dtype).reshape(-1)
        std = np.asarray(std, dtype=out_dtype).reshape(-1)
        for name, stat in (("mean", mean), ("std", std)):
            if stat.shape != (arr.shape[1],):
                raise ValueError(f"{name} has {stat.size} values, X has {arr.shape[1]} features")
        if not (np.isfinite(mean).all() and np.isfinite(std).all()) or (std <= 0).any():
            raise ValueError("mean must be finite and std finite and > 0")
    return (arr - mean) / std, mean, std


def one_hot(y: Any, n_classes: int | None = None, dtype: Any = np.float32) -> np.ndarray:
    """Integer labels as one-hot rows, like Keras' ``to_categorical``.

    Parameters
    ----------
    y : array-like of int, shape (n_samples,)
        Labels in ``[0, n_classes)``.
    n_classes : int, optional
        Number of columns; by default one more than the largest label.
    dtype : dtype, default float32
        Type of the result (float32 matches a network's default dtype).

    Returns
    -------
    ndarray of shape (n_samples, n_classes)

    Examples
    --------
    >>> one_hot([0, 2], 3)
    array([[1., 0., 0.],
           [0., 0., 1.]], dtype=float32)
    """
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"y must be 1-D labels, got shape {labels.shape}")
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all() or not np.array_equal(labels, np.round(labels)):
            raise ValueError("y holds non-integer class labels")
    elif labels.dtype.kind not in "iub":
        raise TypeError(f"y must hold integer class labels, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if n_classes is None:
        if labels.size == 0:
            raise ValueError("y is empty: give n_classes")
        n_classes = int(labels.max()) + 1
    elif isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) \
            or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        bad = labels[(labels < 0) | (labels >= n_classes)][0]
        raise ValueError(f"y contains label {bad}, outside [0, {n_classes})")
    out = np.zeros((labels.shape[0], int(n_classes)), dtype=dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out
