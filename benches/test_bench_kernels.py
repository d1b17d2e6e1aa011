"""Each compiled op against its NumPy twin, at the shapes MNIST training uses.

Run with ``python -m pytest benches -q`` (pytest-benchmark groups the two
backends of each op and shape side by side). The default ``pytest`` run does
not collect this folder. Nothing here asserts a speed: on a shared 2-core
machine even "clearly safe" ratios flip under load.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")

import fastnn  # noqa: E402
from fastnn.ops import TrainingPlan, get_ops  # noqa: E402

BACKENDS = ["numpy", "compiled"]
BATCHES = [16, 64, 256]
LAYERS = [(784, 128, "relu"), (128, 10, "identity")]  # MNIST 784-128-10

# Short runs: some 60 benchmarks share two cores with everything else.
pytestmark = pytest.mark.benchmark(max_time=0.25, min_rounds=5, warmup=True)


@pytest.fixture(params=BACKENDS)
def ops(request):
    return get_ops(request.param)


def _rng():
    return np.random.default_rng(0)


def _layer(n, n_in, n_out):
    rng = _rng()
    X = rng.random((n, n_in), dtype=np.float32)
    W = (rng.standard_normal((n_in, n_out)) * np.sqrt(2 / n_in)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32) * np.float32(0.1)
    return X, W, b


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("n_in,n_out,act", LAYERS)
def test_dense_forward(benchmark, ops, n, n_in, n_out, act):
    X, W, b = _layer(n, n_in, n_out)
    benchmark.group = f"dense_forward {n}x{n_in}x{n_out} {act}"
    Y = benchmark(ops.dense_forward, X, W, b, act)
    assert Y.shape == (n, n_out) and Y.dtype == np.float32


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("n_in,n_out,act", LAYERS)
def test_dense_backward(benchmark, ops, n, n_in, n_out, act):
    X, W, b = _layer(n, n_in, n_out)
    Y = get_ops("numpy").dense_forward(X, W, b, act)
    dY = _rng().standard_normal(Y.shape).astype(np.float32)
    need_dX = n_in != 784  # as in training: the input layer needs no input gradient
    benchmark.group = f"dense_backward {n}x{n_in}x{n_out} {act} dX={need_dX}"
    dX, dW, db = benchmark(ops.dense_backward, X, W, Y, dY, act, need_dX)
    assert dW.shape == W.shape and (dX is not None) == need_dX


@pytest.mark.parametrize("act", ["identity", "sigmoid", "tanh", "relu"])
def test_activation_forward(benchmark, ops, act):
    Z = _rng().standard_normal((256, 128)).astype(np.float32)
    benchmark.group = f"activation {act} 256x128"
    out = benchmark(ops.activation, Z, act)
    assert out.shape == Z.shape


@pytest.mark.parametrize("act", ["identity", "sigmoid", "tanh", "relu"])
def test_activation_backward(benchmark, ops, act):
    rng = _rng()
    Y = get_ops("numpy").activation(rng.standard_normal((256, 128)).astype(np.float32), act)
    dY = rng.standard_normal(Y.shape).astype(np.float32)
    benchmark.group = f"backprop {act} 256x128"
    out = benchmark(ops.backprop_activation, Y, dY, act)
    assert out.shape == Y.shape


@pytest.mark.parametrize("n", BATCHES)
def test_softmax_cross_entropy(benchmark, ops, n):
    rng = _rng()
    logits = rng.standard_normal((n, 10)).astype(np.float32)
    labels = rng.integers(0, 10, n)
    benchmark.group = f"softmax_cross_entropy {n}x10 labels"
    loss, grad = benchmark(ops.softmax_cross_entropy, logits, labels)
    assert np.isfinite(loss) and grad.shape == logits.shape


def _network(backend):
    return fastnn.Network.mlp([784, 128, 10], activation="relu",
                              loss="softmax_cross_entropy", seed=0, backend=backend)


def _mnist_like(n):
    rng = _rng()
    return rng.integers(0, 256, (n, 784), dtype=np.uint8), rng.integers(0, 10, n)


@pytest.mark.parametrize("n", BATCHES)
def test_training_step(benchmark, ops, n):
    """One mini-batch: gather and scale uint8 rows, forward, loss, backward, SGD update."""
    net = _network(ops.name)
    X, y = _mnist_like(n)
    opt = fastnn.SGD(lr=0.1)
    opt.prepare(net._params())
    plan = TrainingPlan(net.layers, net._compute_activations, net.loss, opt, n, X,
                        y.astype(np.intp), 1 / 255)
    order = np.arange(n, dtype=np.intp)
    benchmark.group = f"training step, batch {n}"
    total, done, bad, _ = benchmark(ops.train_batches, plan, order, 0, n)
    assert done == n and bad == -1


@pytest.mark.parametrize("n", [16, 64])
def test_epoch_through_fit(benchmark, ops, n):
    """Network.fit over 4,096 uint8 samples: the public API, one epoch per call."""
    net = _network(ops.name)
    X, y = _mnist_like(4096)
    opt = fastnn.SGD(lr=0.1)
    benchmark.group = f"fit one epoch, 4096 samples, batch {n}"
    hist = benchmark.pedantic(net.fit, args=(X, y),
                              kwargs=dict(epochs=1, batch_size=n, optimizer=opt,
                                          input_scale=1 / 255),
                              rounds=3, warmup_rounds=1)
    assert len(hist.loss) == 1 and np.isfinite(hist.loss[0])


def test_predict_one_sample(benchmark, ops):
    """predict(x) for one 784-vector through the public API: the latency path."""
    net = _network(ops.name)
    x = _rng().random(784, dtype=np.float32)
    benchmark.group = "predict one sample"
    label = benchmark(net.predict, x)
    assert 0 <= int(label) < 10
