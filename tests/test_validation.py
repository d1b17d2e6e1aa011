"""Input checks outside the network's own arithmetic: sparse and masked arrays,
class labels beyond intp, and the thread count, each refused before anything changes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse
from threadpoolctl import threadpool_info

import fastnn
from fastnn import Network
from fastnn._validation import check_labels, class_labels, labels_in_range
from fastnn.threads import MAX_THREADS, check_num_threads


@pytest.fixture
def data(rng):
    X = rng.standard_normal((12, 4))
    return X, rng.integers(0, 3, 12)


@pytest.fixture
def net(backend):
    return Network.mlp([4, 5, 3], activation="tanh", loss="softmax_cross_entropy", seed=0,
                       backend=backend)


def _masked(a, where):
    """``a`` as a masked array with the elements ``where`` masked (and garbage under them)."""
    m = np.ma.masked_array(np.array(a, dtype=float), mask=np.zeros(np.shape(a), bool))
    m[where] = np.ma.masked
    m.data[where] = 1e30  # what the mask hides must never reach the network
    return m


# ---------------------------------------------------------------- sparse X


@pytest.mark.parametrize("kind", [scipy.sparse.csr_matrix, scipy.sparse.csr_array,
                                  scipy.sparse.coo_matrix])
@pytest.mark.parametrize("method", ["fit", "predict", "predict_proba", "evaluate"])
def test_sparse_X_is_refused_with_its_remedy(net, data, kind, method):
    X, y = data
    args = (kind(X), y) if method in ("fit", "evaluate") else (kind(X),)
    with pytest.raises(TypeError, match=r"X is a scipy.sparse matrix.*dense.*X.toarray\(\)"):
        getattr(net, method)(*args)


def test_sparse_y_and_sample_weight_are_refused(net, data):
    X, y = data
    with pytest.raises(TypeError, match=r"y is a scipy.sparse matrix"):
        net.fit(X, scipy.sparse.csr_matrix(np.eye(3)[y]))
    with pytest.raises(TypeError, match=r"sample_weight is a scipy.sparse matrix"):
        net.fit(X, y, sample_weight=scipy.sparse.csr_matrix(np.ones((1, 12))))


def test_dense_copy_of_sparse_X_trains(net, data):
    X, y = data
    net.fit(scipy.sparse.csr_matrix(X).toarray(), y)


# ---------------------------------------------------------------- masked arrays


@pytest.mark.parametrize("method", ["fit", "predict", "predict_proba", "evaluate"])
def test_masked_X_with_masked_values_is_refused(net, data, method):
    X, y = data
    Xm = _masked(X, (slice(0, 2), 1))
    args = (Xm, y) if method in ("fit", "evaluate") else (Xm,)
    with pytest.raises(TypeError, match=r"X is a masked array with 2 masked values.*filled"):
        getattr(net, method)(*args)


def test_masked_y_and_sample_weight_are_refused(net, data):
    X, y = data
    with pytest.raises(TypeError, match=r"y is a masked array with 1 masked values"):
        net.fit(X, _masked(y, 3))
    with pytest.raises(TypeError, match=r"sample_weight is a masked array with 1 masked"):
        net.fit(X, y, sample_weight=_masked(np.ones(12), 0))


def test_masked_arrays_with_nothing_masked_are_their_data(data, backend):
    X, y = data

    def trained(X, y, w):
        net = Network.mlp([4, 5, 3], activation="tanh", loss="softmax_cross_entropy", seed=0,
                          backend=backend)
        net.fit(X, y, epochs=2, batch_size=4, sample_weight=w)
        return net.predict_proba(X)

    w = np.linspace(0.5, 2, 12)
    plain = trained(X, y, w)
    masked = trained(np.ma.masked_array(X), np.ma.masked_array(y), np.ma.masked_array(w))
    np.testing.assert_array_equal(masked, plain)  # the same arrays, the same arithmetic


def test_checking_does_not_import_scipy_sparse():
    """Sparse input is recognised without paying for scipy.sparse's import."""
    code = ("import sys, fastnn\n"
            "net = fastnn.Network.mlp([2, 3, 1], loss='mse', seed=0)\n"
            "net.fit([[0.0, 1.0], [1.0, 0.0]], [0.0, 1.0]); net.predict([[0.5, 0.5]])\n"
            "print('scipy.sparse' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    assert out == "False"


# ---------------------------------------------------------------- class labels


def test_labels_beyond_intp_are_not_wrapped_around():
    labels = np.array([0, 2**64 - 1], dtype=np.uint64)  # 2**64-1 would become -1 as intp
    with pytest.raises(ValueError, match=r"y contains label 18446744073709551615, outside"):
        check_labels(labels, 2, 3)
    assert class_labels(labels).dtype == np.uint64  # kept as given until range-checked


@pytest.mark.parametrize("labels, match", [
    ([0.0, 1.5], "non-integer"),
    ([0.0, np.inf], "NaN or infinity"),
    ([0.0, np.nan], "NaN or infinity"),
    (np.zeros((2, 2)), "1-D"),
    (["a", "b"], "numbers"),
])
def test_class_labels_bad_values(labels, match):
    with pytest.raises((ValueError, TypeError), match=match):
        class_labels(labels)


def test_labels_in_range_accepts_columns_and_whole_floats():
    got = labels_in_range(class_labels(np.array([[2.0], [0.0]])), 3)
    assert got.dtype == np.intp and got.tolist() == [2, 0]
    with pytest.raises(ValueError, match=r"contains label -1, outside \[0, 3\)"):
        labels_in_range(class_labels([0, -1]), 3)


# ---------------------------------------------------------------- set_num_threads


def _blas_threads() -> list[int]:
    return [m["num_threads"] for m in threadpool_info() if m["user_api"] == "blas"]


def test_set_num_threads_changes_nothing_when_it_refuses():
    original = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(1)
        for bad in (2**31, 2**40, MAX_THREADS + 1):
            with pytest.raises(ValueError, match=rf"n must be between 1 and {MAX_THREADS}"):
                fastnn.set_num_threads(bad)
            assert set(_blas_threads()) == {1}
            assert fastnn.get_num_threads() == 1
        for bad in (1.0, "2", True, None):
            with pytest.raises(TypeError, match=r"n must be an integer number of threads"):
                fastnn.set_num_threads(bad)
        assert check_num_threads(MAX_THREADS) == MAX_THREADS  # the cap itself is accepted
    finally:
        fastnn.set_num_threads(original)
