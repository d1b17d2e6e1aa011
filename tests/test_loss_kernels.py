"""The vectorised softmax cross-entropy of float32 training against the NumPy twin.

Every test runs at every SIMD level this machine supports (``avx512``, ``avx2``): row
widths below, at and past a vector (1, 2, 10, 16, 17, 33), one row and many, weights,
logits far apart (exponentials that underflow to 0) and non-finite logits.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import RTOL, assert_close

import fastnn
from fastnn._core import _kernels
from fastnn.ops import NumpyOps

_packed = pytest.importorskip("fastnn._core._packed")

SIMD_LEVELS = [name for name in fastnn.available_kernel_levels() if name != "blas"]
LEVEL_CODE = {"avx2": 1, "avx512": 2}
F32 = RTOL[np.dtype(np.float32)]
pytestmark = pytest.mark.skipif(not SIMD_LEVELS, reason="no AVX2 or AVX-512 on this machine")


@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("n, c", [(1, 1), (3, 2), (64, 10), (5, 16), (7, 17), (9, 33)])
@pytest.mark.parametrize("scale", [1.0, 30.0, 200.0])
def test_softmax_cross_entropy_against_numpy(level, n, c, scale):
    rng = np.random.default_rng(n * 100 + c)
    Z = (rng.standard_normal((n, c)) * scale).astype(np.float32)
    labels = rng.integers(0, c, n).astype(np.intp)
    dZ = np.full((n, c), np.nan, np.float32)
    loss = _packed.softmax_cross_entropy_labels(Z, labels, dZ, None, LEVEL_CODE[level])
    loss_p, grad_p = NumpyOps().softmax_cross_entropy(Z, labels, True)
    np.testing.assert_allclose(loss, loss_p, rtol=F32, atol=F32)
    assert_close(dZ, grad_p, np.float32)
    if scale == 200.0 and c > 1:               # exponentials that underflow: exact zeros
        assert (dZ == 0).any()
    # Without the gradient: the same loss.
    assert _packed.softmax_cross_entropy_labels(Z, labels, None, None,
                                                LEVEL_CODE[level]) == loss


@pytest.mark.parametrize("level", SIMD_LEVELS)
def test_weighted_loss_against_the_scalar_kernel(level):
    rng = np.random.default_rng(3)
    Z = (rng.standard_normal((37, 10)) * 4).astype(np.float32)
    labels = rng.integers(0, 10, 37).astype(np.intp)
    w = rng.random(37).astype(np.float32)
    d_simd, d_ref = np.zeros_like(Z), np.zeros_like(Z)
    loss = _packed.softmax_cross_entropy_labels(Z, labels, d_simd, w, LEVEL_CODE[level])
    ref = _kernels.softmax_cross_entropy_labels(Z, labels, d_ref, w)
    np.testing.assert_allclose(loss, ref, rtol=F32)
    assert_close(d_simd, d_ref, np.float32)


@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("value, finite", [(np.nan, False), (np.inf, False),
                                           (-np.inf, True)])
def test_non_finite_logits_as_the_scalar_kernel(level, value, finite):
    """A NaN or +inf logit makes its row's loss NaN (training stops on it); -inf is a
    probability of 0."""
    Z = np.zeros((2, 10), np.float32)
    Z[1, 4] = value
    labels = np.array([1, 2], np.intp)
    loss = _packed.softmax_cross_entropy_labels(Z, labels, None, None, LEVEL_CODE[level])
    ref = _kernels.softmax_cross_entropy_labels(Z, labels, None)
    assert np.isfinite(loss) == finite == np.isfinite(ref)
    if finite:
        np.testing.assert_allclose(loss, ref, rtol=F32)


@pytest.mark.parametrize("level", SIMD_LEVELS)
def test_bad_input_is_refused(level):
    Z = np.zeros((2, 3), np.float32)
    code = LEVEL_CODE[level]
    with pytest.raises(ValueError, match="outside"):
        _packed.softmax_cross_entropy_labels(Z, np.array([0, 3], np.intp), None, None, code)
    with pytest.raises(ValueError, match="differ in length"):
        _packed.softmax_cross_entropy_labels(Z, np.array([0], np.intp), None, None, code)
    with pytest.raises(ValueError, match="wrong shape"):
        _packed.softmax_cross_entropy_labels(Z, np.array([0, 1], np.intp),
                                             np.zeros((2, 2), np.float32), None, code)
    with pytest.raises(ValueError, match="not available"):
        _packed.softmax_cross_entropy_labels(Z, np.array([0, 1], np.intp), None, None, 7)
