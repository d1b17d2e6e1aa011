"""Checks and conversions at the Python boundary.

Everything the compiled core receives has passed through here first: the right
number of dimensions, a numeric dtype, finite values, C-contiguous memory, and
shapes that agree. Errors name the argument, what was expected and what came.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype: Any) -> np.dtype:
    """Return ``dtype`` as a NumPy dtype, refusing anything but float32 and float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dt}")
    return dt


def refuse_sparse_or_masked(value: Any, name: str) -> Any:
    """Return ``value``, or its data when it is a masked array with nothing masked.

    Raises
    ------
    TypeError
        For a scipy.sparse matrix or array (NumPy would see one object, not
        numbers), and for a masked array with masked elements (NumPy would use
        the values under the mask as if they were data).
    """
    # A sparse matrix or a masked array can only exist once its module has been
    # imported: looking in sys.modules costs neither module's import time.
    sparse = sys.modules.get("scipy.sparse")
    if sparse is not None and sparse.issparse(value):
        raise TypeError(f"{name} is a scipy.sparse matrix; fastnn needs a dense array: "
                        f"use {name}.toarray()")
    ma = sys.modules.get("numpy.ma")
    if ma is not None and isinstance(value, ma.MaskedArray):
        n_masked = int(ma.count_masked(value))
        if n_masked:
            raise TypeError(f"{name} is a masked array with {n_masked} masked values; fill "
                            f"them ({name}.filled(...)) or drop those rows first")
        return value.data
    return value


def as_numeric_array(value: Any, name: str) -> np.ndarray:
    """Return ``value`` as a NumPy array of numbers (bool, integer or float).

    Raises
    ------
    TypeError
        When ``value`` is sparse, masked (with masked elements), ragged, or
        holds anything but numbers.
    """
    if type(value) is not np.ndarray:  # a plain array is neither sparse nor masked
        value = refuse_sparse_or_masked(value, name)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged lists and the like
        raise TypeError(f"{name} could not be read as a numeric array: {exc}") from exc
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    return arr


def check_finite(arr: np.ndarray, name: str, source: np.ndarray | None = None) -> None:
    """Raise ValueError when a float array holds NaN or infinity.

    ``source`` is the array ``arr`` was cast from, if any: when it was finite,
    the cast overflowed, and the message says so instead of blaming the data.
    """
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        if (source is not None and source is not arr and source.dtype.kind in "biuf"
                and np.isfinite(source).all()):
            raise ValueError(f"{name} holds values beyond the range of {arr.dtype} "
                             f"(largest magnitude {float(np.abs(source).max()):.4g})")
        raise ValueError(f"{name} contains NaN or infinity")


def _cast(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``arr`` as a C-contiguous array of ``dtype``, quietly: values the cast
    overflows become infinite and are reported by ``check_finite``."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ascontiguousarray(arr, dtype=dtype)


def check_input(X: Any, n_features: int, dtype: np.dtype, name: str = "X",
                keep_uint8: bool = False, finite: bool = True) -> np.ndarray:
    """Return X as a finite, C-contiguous 2-D array of ``dtype``.

    With ``keep_uint8`` a uint8 array (images) is passed through unconverted:
    the compiled core converts and scales its rows on the fly. ``finite=False``
    leaves the NaN/infinity check to the caller (inference checks in the
    compiled call, where it costs far less than a NumPy reduction).
    """
    if type(X) is np.ndarray and X.dtype == dtype and X.ndim == 2 and X.flags.c_contiguous:
        source = arr = X  # the fast path of predict(x): no copy, no conversion
    else:
        source = arr = as_numeric_array(X, name)
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
        if keep_uint8 and arr.dtype == np.uint8:
            arr = np.ascontiguousarray(arr)
        else:
            arr = _cast(arr, dtype)
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 samples")
    if arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features per sample, but the first layer takes {n_features}")
    # A converted copy is checked here even with finite=False: the copy costs more
    # than the check, and only here can an overflowing cast be told from bad data.
    if finite or arr is not source:
        check_finite(arr, name, source)
    return arr


def class_labels(y: Any, name: str = "y") -> np.ndarray:
    """Return class labels as a 1-D array of whole numbers, in their own dtype.

    A column ``(n, 1)`` is taken as ``(n,)``. The values are not range-checked
    (see ``labels_in_range``), so that a label too large for ``intp`` is still
    seen as it is rather than wrapped around.
    """
    arr = as_numeric_array(y, name)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D labels, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        check_finite(arr, name)
        if not np.array_equal(arr, np.round(arr)):
            raise ValueError(f"{name} holds non-integer class labels")
    return arr


def labels_in_range(labels: np.ndarray, n_classes: int, name: str = "y") -> np.ndarray:
    """Return ``class_labels`` output as a contiguous intp array, each in [0, n_classes)."""
    # Compared in their own dtype: cast first, a uint64 label of 2**64-1 would become -1.
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        bad = labels[(labels < 0) | (labels >= n_classes)][0]
        raise ValueError(f"{name} contains label {bad}, outside [0, {n_classes})")
    return np.ascontiguousarray(labels, dtype=np.intp)


def check_labels(y: Any, n_samples: int, n_classes: int, name: str = "y") -> np.ndarray:
    """Return integer class labels as a contiguous intp array, each in [0, n_classes)."""
    arr = class_labels(y, name)
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} samples, X has {n_samples}")
    return labels_in_range(arr, n_classes, name)


def check_targets(y: Any, n_samples: int, n_outputs: int, dtype: np.dtype,
                  name: str = "y") -> np.ndarray:
    """Return regression or one-hot targets as a finite (n_samples, n_outputs) array."""
    arr = as_numeric_array(y, name)
    if arr.ndim == 1 and n_outputs == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, {n_outputs}), got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} samples, X has {n_samples}")
    if arr.shape[1] != n_outputs:
        raise ValueError(f"{name} has {arr.shape[1]} columns, the network has {n_outputs} outputs")
    source, arr = arr, _cast(arr, dtype)
    check_finite(arr, name, source)
    return arr


def check_positive_int(value: Any, name: str, allow_none: bool = False) -> int | None:
    """Return value as an int >= 1 (or None when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return int(value)


def check_nonnegative_float(value: Any, name: str, positive: bool = False) -> float:
    """Return value as a finite float >= 0 (> 0 with ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or v < 0 or (positive and v == 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return v


def check_sample_weight(w: Any, n_samples: int, dtype: np.dtype,
                        name: str = "sample_weight") -> np.ndarray | None:
    """Return per-sample weights as a finite, non-negative (n_samples,) array, or None."""
    if w is None:
        return None
    arr = as_numeric_array(w, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_samples,), got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} entries, X has {n_samples} samples")
    source, arr = arr, _cast(arr, dtype)
    check_finite(arr, name, source)
    if (arr < 0).any():
        raise ValueError(f"{name} must be non-negative")
    return arr
