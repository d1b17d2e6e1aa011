"""Shared fixtures and helpers for the fastnn test suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def report_cases(cases: dict) -> None:
    """Run each call of ``cases`` (name -> call), printing a JSON line before and after it.

    Meant for a child process (see ``run_cases_in_child``): a "start" line with no
    result after it names the case that crashed the interpreter.
    """
    for name, call in cases.items():
        print(json.dumps({"start": name}), flush=True)
        try:
            call()
            result = {"name": name, "raised": None}
        except Exception as exc:  # noqa: BLE001 - we report whatever it was
            result = {"name": name, "raised": type(exc).__name__, "message": str(exc)}
        print(json.dumps(result), flush=True)


def run_cases_in_child(script: str, flag: str) -> tuple[int, str | None, dict, str]:
    """Run ``python script flag`` (which calls ``report_cases``) and read its report.

    Returns (return code, the case it crashed in or None, {name: result}, the end of
    stderr). In a child process, a crash fails the tests instead of ending the run.
    """
    proc = subprocess.run([sys.executable, script, flag], capture_output=True, text=True,
                          timeout=120)
    results, last = {}, None
    for line in proc.stdout.splitlines():
        rec = json.loads(line)
        if "start" in rec:
            last = rec["start"]
        else:
            results[rec["name"]] = rec
            last = None
    return proc.returncode, last, results, proc.stderr[-2000:]
