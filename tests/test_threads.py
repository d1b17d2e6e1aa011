"""The threaded training path: layers large enough to be split between threads.

The compiled epoch splits a large layer's products by columns between its own
threads (BLAS limited to one thread meanwhile). These networks are big enough
for that path; each must train exactly like the NumPy twin and like the
single-threaded compiled loop.
"""

import numpy as np
import pytest

import fastnn
from fastnn import threads

from conftest import assert_close

SIZES = [300, 200, 100, 10]
OPTIMIZERS = {
    "sgd": lambda: fastnn.SGD(0.05),
    "sgd_decay": lambda: fastnn.SGD(0.05, weight_decay=0.01),
    "momentum": lambda: fastnn.SGD(0.05, momentum=0.9, weight_decay=0.01),
    "nesterov": lambda: fastnn.SGD(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: fastnn.Adam(0.01, weight_decay=0.01),
}


@pytest.fixture
def two_threads():
    before = threads.get_num_threads()
    threads.set_num_threads(2)
    yield
    threads.set_num_threads(before)


def _train(backend, dtype, make_opt, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    X = rng.standard_normal((333, SIZES[0]))  # 333 = 5 batches of 64 and a partial one
    y = rng.integers(0, SIZES[-1], 333)
    net = fastnn.Network.mlp(SIZES, activation="relu", loss="softmax_cross_entropy",
                             dtype=dtype, seed=0, backend=backend)
    hist = net.fit(X, y, epochs=2, batch_size=64, optimizer=make_opt())
    params = np.concatenate([np.r_[layer.W.ravel(), layer.b] for layer in net.layers])
    return params, hist.loss


def test_the_threaded_path_is_taken(two_threads):
    # Built without OpenMP, the core has no threads of its own.
    assert threads.training_threads(64, SIZES) == (2 if threads.has_openmp() else 1)
    assert threads.training_threads(4, [2, 5, 1]) == 1  # tiny: not worth a thread


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_threaded_epoch_matches_the_numpy_twin(two_threads, dtype, opt):
    got, got_loss = _train("compiled", dtype, OPTIMIZERS[opt])
    want, want_loss = _train("numpy", dtype, OPTIMIZERS[opt])
    assert_close(got, want, dtype)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-4 if dtype == "float32" else 1e-10)


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_threaded_and_serial_loops_agree(opt):
    before = threads.get_num_threads()
    try:
        threads.set_num_threads(1)
        serial, _ = _train("compiled", "float64", OPTIMIZERS[opt])
        threads.set_num_threads(2)
        threaded, _ = _train("compiled", "float64", OPTIMIZERS[opt])
    finally:
        threads.set_num_threads(before)
    np.testing.assert_allclose(threaded, serial, rtol=1e-10, atol=1e-12)


def test_blas_is_single_threaded_only_during_the_threaded_epoch(two_threads):
    from threadpoolctl import threadpool_info

    def blas_threads():
        return {i["filepath"]: i["num_threads"] for i in threadpool_info()
                if i["user_api"] == "blas"}

    before = blas_threads()
    with threads.single_threaded_blas():
        assert set(blas_threads().values()) == {1}
    assert blas_threads() == before
    _train("compiled", "float32", OPTIMIZERS["sgd"])
    assert blas_threads() == before
