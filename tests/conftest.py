"""Shared fixtures and helpers for the fastnn test suite."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn.datasets import mnist

REPO_ROOT = Path(__file__).resolve().parents[1]

BACKENDS = ("compiled", "numpy")
DTYPES = (np.float32, np.float64)

# Relative tolerance, per dtype, for one result computed two ways: a row alone
# against the same row in a batch, 1 thread against 2, the compiled backend
# against NumPy. BLAS and NumPy choose their SIMD kernels by CPU (AVX2, AVX-512)
# and split sums differently by call shape, so such float32 results differ in
# the last few bits (1.5e-6 relative is common): comparing them at 1e-6 passes
# on one machine and fails on the next. Bit equality holds only where the same
# code computes both sides on the same shapes (a save/load round trip, the same
# call twice). Steps of training compound the rounding: allow ten times more.
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


def _why_no_mnist() -> str | None:
    """Why the tests that need the real MNIST files cannot run, or None if they can."""
    folder = os.environ.get(mnist.ENV_VAR)
    if not folder:
        return f"{mnist.ENV_VAR} is not set (CI sets it to the folder of the MNIST files)"
    missing = [name for name in mnist.FILES
               if mnist._find(Path(folder).expanduser(), name) is None]
    if missing:
        return f"{mnist.ENV_VAR}={folder} lacks " + ", ".join(f"{n}[.gz]" for n in missing)
    return None


_NO_MNIST = _why_no_mnist()
#: Marks a test that reads the real MNIST files: skipped, with the reason, without them.
needs_mnist = pytest.mark.skipif(_NO_MNIST is not None, reason=_NO_MNIST or "")


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
