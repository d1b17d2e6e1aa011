"""Shared fixtures and helpers for the fastnn test suite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fastnn

REPO_ROOT = Path(__file__).resolve().parents[1]
# The project's data lives beside the repository (read-only, never copied in).
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

BACKENDS = ("compiled", "numpy")
DTYPES = (np.float32, np.float64)

# Relative tolerances of the backend comparisons, per dtype.
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}


def assert_close(actual, expected, dtype, scale_atol: bool = True, rtol: float | None = None):
    """assert_allclose at the dtype's tolerance.

    Sums computed in a different order (BLAS against NumPy) can lose relative
    precision where they cancel to nearly zero, so the absolute tolerance is
    the relative one times the largest magnitude of ``expected``.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    rtol = RTOL[np.dtype(dtype)] if rtol is None else rtol
    atol = 0.0
    if scale_atol and expected.size:
        atol = rtol * max(float(np.max(np.abs(expected))), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Each backend in turn."""
    return request.param


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    """Each supported dtype in turn."""
    return np.dtype(request.param)


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh generator with a fixed seed, so every test is reproducible."""
    return np.random.default_rng(12345)


def weights_of(net: fastnn.Network) -> list[np.ndarray]:
    """Every parameter array of ``net``, W then b per layer."""
    out = []
    for layer in net.layers:
        out += [layer.W, layer.b]
    return out


def gender_data() -> tuple[np.ndarray, np.ndarray]:
    """The tutorials' four people: (weight - 135 lb, height - 66 in), label 1 for F."""
    raw = np.array([[133, 65], [160, 72], [152, 70], [120, 60]], dtype=np.float64)
    X = raw - np.array([135, 66])
    y = np.array([1, 0, 0, 1], dtype=np.float64)
    return X, y
