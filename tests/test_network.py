"""The Network API: fit, predict, evaluate, History, resuming, initialisation,
the tutorials' examples, and what happens when training diverges."""

from __future__ import annotations

import copy
import pickle
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import RTOL, assert_close, gender_data, weights_of

import fastnn
from fastnn import SGD, Adam, Dense, History, Network, Neuron
from fastnn.datasets import microchips


def _blobs(rng, n=60, d=4, c=3):
    """Separable-ish classes: one Gaussian blob per class."""
    centers = rng.normal(0, 3, (c, d))
    labels = rng.integers(0, c, n)
    return centers[labels] + rng.normal(0, 1, (n, d)), labels


@pytest.fixture
def blobs(rng):
    return _blobs(rng)


# ---------------------------------------------------------------- shapes and types


def test_classifier_outputs(blobs, backend, dtype):
    X, y = blobs
    net = Network.mlp([4, 8, 3], activation="relu", loss="softmax_cross_entropy",
                      dtype=dtype, seed=0, backend=backend)
    history = net.fit(X, y, epochs=3, batch_size=16)
    assert isinstance(history, History) and len(history) == 3

    pred = net.predict(X)
    assert pred.shape == (60,) and pred.dtype.kind == "i"
    assert set(np.unique(pred)) <= {0, 1, 2}

    proba = net.predict_proba(X)
    assert proba.shape == (60, 3) and proba.dtype == dtype
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(proba.argmax(axis=1), pred)

    scores = net.evaluate(X, y)
    assert set(scores) == {"loss", "accuracy"}
    assert all(type(v) is float for v in scores.values())
    assert 0 <= scores["accuracy"] <= 1
    assert scores["accuracy"] == pytest.approx(np.mean(pred == y))
    assert scores == net.evaluate(X, np.eye(3)[y])  # one-hot rows give the same

    # A single 1-D sample gives the result for that sample alone.
    assert np.ndim(net.predict(X[0])) == 0 and net.predict(X[0]) == pred[0]
    assert net.predict_proba(X[0]).shape == (3,)
    assert_close(net.predict_proba(X[0]), proba[0], dtype)


def test_binary_classifier_outputs(rng, backend):
    X = rng.standard_normal((40, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    net = Network.mlp([2, 6, 1], activation="tanh", output_activation="sigmoid",
                      loss="binary_cross_entropy", seed=0, backend=backend)
    net.fit(X, y, epochs=2)
    pred = net.predict(X)
    assert pred.shape == (40,) and pred.dtype == np.int64
    assert set(np.unique(pred)) <= {0, 1}
    proba = net.predict_proba(X)
    assert proba.shape == (40, 1) and ((proba > 0) & (proba < 1)).all()
    np.testing.assert_array_equal(pred, (proba[:, 0] >= 0.5).astype(int))
    np.testing.assert_array_equal(net.predict(X, threshold=0.0), np.ones(40))
    scores = net.evaluate(X, y)
    assert set(scores) == {"loss", "accuracy"}
    assert scores["accuracy"] == pytest.approx(np.mean(pred == y))


def test_regressor_outputs(rng, backend):
    X = rng.standard_normal((30, 3))
    y = X @ rng.standard_normal((3, 2))
    net = Network.mlp([3, 5, 2], activation="tanh", loss="mse", seed=0, backend=backend)
    net.fit(X, y, epochs=2, batch_size=8)
    out = net.predict(X)
    assert out.shape == (30, 2) and out.dtype == np.float32
    scores = net.evaluate(X, y)
    assert set(scores) == {"loss"}
    np.testing.assert_allclose(scores["loss"], np.mean((out - y) ** 2), rtol=RTOL[net.dtype])
    with pytest.raises(ValueError, match="predict_proba"):
        net.predict_proba(X)
    # One output: 1-D targets are accepted, and predict keeps the (n, 1) shape.
    net1 = Network.mlp([3, 1], loss="mse", seed=0, backend=backend)
    net1.fit(X, y[:, 0], epochs=1)
    assert net1.predict(X).shape == (30, 1)


def test_history_contents(blobs, backend):
    X, y = blobs
    net = Network.mlp([4, 8, 3], loss="softmax_cross_entropy", seed=1, backend=backend)
    h = net.fit(X[:40], y[:40], epochs=4, validation_data=(X[40:], y[40:]),
                optimizer=SGD(lr=0.05))
    assert len(h.loss) == len(h.val_loss) == len(h.val_accuracy) == len(h.epoch_time) == 4
    assert all(isinstance(v, float) and np.isfinite(v) for v in h.loss + h.val_loss)
    assert all(0 <= a <= 1 for a in h.val_accuracy)
    assert all(t >= 0 for t in h.epoch_time)
    assert h["loss"] == h.loss and h.history["val_accuracy"] == h.val_accuracy
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_time", "lr"}
    assert h.lr == [0.05] * 4  # the optimizer's rate, every epoch
    # The last validation entry is the network's score after training.
    final = net.evaluate(X[40:], y[40:])
    assert h.val_loss[-1] == pytest.approx(final["loss"], rel=RTOL[net.dtype])
    assert h.val_accuracy[-1] == pytest.approx(final["accuracy"])
    assert h.loss[-1] < h.loss[0]

    # MSE has no accuracy; without validation data there is no validation entry.
    reg = Network.mlp([4, 1], loss="mse", seed=0, backend=backend)
    h2 = reg.fit(X, y.astype(float), epochs=2, validation_data=(X, y.astype(float)))
    assert len(h2.val_loss) == 2 and h2.val_accuracy == []
    h3 = reg.fit(X, y.astype(float), epochs=2)
    assert h3.val_loss == [] and "val_loss" not in h3.history


def test_verbose_prints_one_line_per_epoch(blobs, capsys):
    X, y = blobs
    net = Network.mlp([4, 3], loss="softmax_cross_entropy", seed=0)
    net.fit(X, y, epochs=3, verbose=1, validation_data=(X, y))
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 3 and err == ""
    for i, line in enumerate(lines, 1):
        assert f"{i}/3" in line and "loss" in line and "val_accuracy" in line

    net.fit(X, y, epochs=3, verbose=0)
    net.predict(X)
    net.evaluate(X, y)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("batch_size,steps_per_epoch", [(1, 10), (None, 1), (4, 3), (100, 1)])
def test_batch_sizes(batch_size, steps_per_epoch, rng, backend):
    X = rng.standard_normal((10, 3))
    y = rng.standard_normal((10, 2))
    net = Network.mlp([3, 4, 2], activation="tanh", seed=0, backend=backend)
    opt = Adam(lr=0.01)
    h = net.fit(X, y, epochs=2, batch_size=batch_size, optimizer=opt)
    assert opt.step_count == 2 * steps_per_epoch
    assert all(np.isfinite(v) for v in h.loss)


def test_full_batch_loss_is_the_loss_before_the_step(rng, backend):
    # With batch_size=None the epoch's loss is the loss of the weights it started from.
    X = rng.standard_normal((12, 3))
    y = rng.standard_normal((12, 1))
    net = Network.mlp([3, 4, 1], activation="tanh", loss="mse", dtype="float64", seed=0,
                      backend=backend)
    before = net.evaluate(X, y)["loss"]
    h = net.fit(X, y, epochs=1, batch_size=None)
    assert h.loss[0] == pytest.approx(before, rel=1e-10)


def test_uint8_input_with_input_scale(rng, backend):
    # uint8 images are scaled as they are read: the same as scaling a float32 copy first.
    X8 = rng.integers(0, 256, (30, 6)).astype(np.uint8)
    y = rng.integers(0, 3, 30)
    scale = 1 / 255
    Xf = X8.astype(np.float32) * np.float32(scale)
    nets = [Network.mlp([6, 5, 3], loss="softmax_cross_entropy", seed=0, backend=backend)
            for _ in range(2)]
    h8 = nets[0].fit(X8, y, epochs=2, batch_size=7, input_scale=scale,
                     validation_data=(X8, y))
    hf = nets[1].fit(Xf, y, epochs=2, batch_size=7, validation_data=(Xf, y))
    dtype = nets[0].dtype
    np.testing.assert_allclose(h8.loss, hf.loss, rtol=RTOL[dtype])
    for a, b in zip(weights_of(nets[0]), weights_of(nets[1])):
        assert_close(a, b, dtype)
    assert_close(nets[0].predict_proba(X8, input_scale=scale), nets[0].predict_proba(Xf), dtype)
    assert nets[0].evaluate(X8, y, input_scale=scale)["loss"] == pytest.approx(
        nets[0].evaluate(Xf, y)["loss"], rel=RTOL[dtype])


# ---------------------------------------------------------------- reproducibility


@pytest.mark.parametrize("make_opt", [lambda: SGD(lr=0.05, momentum=0.9),
                                      lambda: SGD(lr=0.05, momentum=0.9, nesterov=True),
                                      lambda: Adam(lr=0.01)],
                         ids=["momentum", "nesterov", "adam"])
def test_resuming_fit_is_bit_identical(make_opt, blobs, backend, dtype):
    X, y = blobs
    a = Network.mlp([4, 8, 3], loss="softmax_cross_entropy", dtype=dtype, seed=5,
                    backend=backend)
    b = Network.mlp([4, 8, 3], loss="softmax_cross_entropy", dtype=dtype, seed=5,
                    backend=backend)
    ha = a.fit(X, y, epochs=2, batch_size=7, optimizer=make_opt())
    ha2 = a.fit(X, y, epochs=3, batch_size=7)  # the previous optimizer and its state
    hb = b.fit(X, y, epochs=5, batch_size=7, optimizer=make_opt())
    for wa, wb in zip(weights_of(a), weights_of(b)):
        np.testing.assert_array_equal(wa, wb)
    assert ha.loss + ha2.loss == hb.loss


def test_pickle_and_deepcopy_keep_everything(blobs, backend):
    # Weights, optimizer state and random generator travel along (joblib, dask, clone):
    # the copies resume training exactly as the original does.
    X, y = blobs
    net = Network.mlp([4, 6, 3], loss="softmax_cross_entropy", seed=8, backend=backend)
    net.fit(X, y, epochs=2, batch_size=8, optimizer=Adam(lr=0.01))
    copies = [pickle.loads(pickle.dumps(net)), copy.deepcopy(net)]
    for other in copies:
        np.testing.assert_array_equal(other.predict_proba(X), net.predict_proba(X))
    for model in [net] + copies:
        model.fit(X, y, epochs=2, batch_size=8)
    for other in copies:
        for wa, wb in zip(weights_of(net), weights_of(other)):
            np.testing.assert_array_equal(wa, wb)


def test_concurrent_predictions_agree(blobs, backend):
    # The compiled core releases the GIL: threads predicting at once must not interfere.
    X, y = blobs
    X = np.repeat(X, 50, axis=0)  # several inference chunks
    net = Network.mlp([4, 16, 3], loss="softmax_cross_entropy", seed=0, backend=backend)
    net.fit(X[:60], y, epochs=1)
    expected = net.predict_proba(X)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: net.predict_proba(X), range(8)))
    for got in results:
        # (not bit-equality: BLAS may split a product differently when threads compete)
        assert_close(got, expected, net.dtype)


def test_same_seed_same_network(blobs, backend):
    X, y = blobs
    nets = [Network.mlp([4, 6, 3], loss="softmax_cross_entropy", seed=11, backend=backend)
            for _ in range(2)]
    for wa, wb in zip(weights_of(nets[0]), weights_of(nets[1])):
        np.testing.assert_array_equal(wa, wb)
    for net in nets:
        net.fit(X, y, epochs=3, batch_size=5)
    for wa, wb in zip(weights_of(nets[0]), weights_of(nets[1])):
        np.testing.assert_array_equal(wa, wb)
    other = Network.mlp([4, 6, 3], loss="softmax_cross_entropy", seed=12, backend=backend)
    assert not np.array_equal(other.layers[0].W, Network.mlp([4, 6, 3], seed=11).layers[0].W)


def test_float32_and_float64_start_equal_and_train_alike(blobs, backend):
    X, y = blobs
    n32 = Network.mlp([4, 8, 3], loss="softmax_cross_entropy", dtype="float32", seed=2,
                      backend=backend)
    n64 = Network.mlp([4, 8, 3], loss="softmax_cross_entropy", dtype="float64", seed=2,
                      backend=backend)
    for w32, w64 in zip(weights_of(n32), weights_of(n64)):
        assert w32.dtype == np.float32 and w64.dtype == np.float64
        np.testing.assert_array_equal(w32, w64.astype(np.float32))
    h32 = n32.fit(X, y, epochs=3, batch_size=10, optimizer=SGD(lr=0.05))
    h64 = n64.fit(X, y, epochs=3, batch_size=10, optimizer=SGD(lr=0.05))
    np.testing.assert_allclose(h32.loss, h64.loss, rtol=1e-4)
    for w32, w64 in zip(weights_of(n32), weights_of(n64)):
        np.testing.assert_allclose(w32, w64, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("make_opt", [lambda: SGD(lr=0.05, momentum=0.9, weight_decay=1e-3),
                                      lambda: Adam(lr=0.01)], ids=["sgd", "adam"])
def test_compiled_and_numpy_backends_train_alike(dtype, make_opt, blobs):
    X, y = blobs
    rtol = RTOL[dtype] * 10  # four epochs of training compound the rounding
    nets = {}
    for backend in ("compiled", "numpy"):
        net = Network.mlp([4, 8, 3], activation="tanh", loss="softmax_cross_entropy",
                          dtype=dtype, seed=3, backend=backend)
        hist = net.fit(X, y, epochs=4, batch_size=9, optimizer=make_opt())
        nets[backend] = (net, hist)
    (c, hc), (p, hp) = nets["compiled"], nets["numpy"]
    np.testing.assert_allclose(hc.loss, hp.loss, rtol=rtol)
    for wc, wp in zip(weights_of(c), weights_of(p)):
        np.testing.assert_allclose(wc, wp, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(c.predict_proba(X), p.predict_proba(X), rtol=rtol, atol=rtol)


# ---------------------------------------------------------------- layers and initialisation


def test_he_initialisation_for_relu():
    net = Network([Dense(400, 300, "relu"), Dense(300, 10)], seed=0, dtype="float64")
    W = net.layers[0].W
    assert abs(W.mean()) < 0.01 * np.sqrt(2 / 400) * 10
    assert W.std() == pytest.approx(np.sqrt(2 / 400), rel=0.03)
    np.testing.assert_array_equal(net.layers[0].b, 0)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "identity"])
def test_glorot_initialisation_otherwise(activation):
    net = Network([Dense(400, 300, activation), Dense(300, 10)], seed=0, dtype="float64")
    W = net.layers[0].W
    limit = np.sqrt(6 / 700)
    assert np.abs(W).max() <= limit
    assert np.abs(W).max() > 0.99 * limit  # uniform up to the limit
    assert W.std() == pytest.approx(limit / np.sqrt(3), rel=0.03)
    assert abs(W.mean()) < 0.01
    np.testing.assert_array_equal(net.layers[0].b, 0)


def test_assigning_weights(dtype):
    net = Network([Dense(2, 3, "tanh"), Dense(3, 1)], dtype=dtype, seed=0)
    layer = net.layers[0]
    src = np.arange(6, dtype=np.int64).reshape(2, 3)
    layer.W = src
    assert layer.W.dtype == dtype and layer.W.flags.c_contiguous
    np.testing.assert_array_equal(layer.W, src)
    src[0, 0] = 100  # the layer holds a copy
    assert layer.W[0, 0] == 0
    layer.b = [1, 2, 3]
    assert layer.b.dtype == dtype
    with pytest.raises(ValueError, match=r"W.*\(2, 3\)"):
        layer.W = np.zeros((3, 2))
    with pytest.raises(ValueError, match="b"):
        layer.b = np.zeros(2)
    with pytest.raises(ValueError, match="b"):
        layer.b = np.zeros((3, 1))
    with pytest.raises(TypeError, match="W"):
        layer.W = [["a", "b", "c"], ["d", "e", "f"]]
    with pytest.raises(ValueError, match="W"):
        layer.W = np.full((2, 3), np.nan)
    # The network uses assigned weights.
    layer.W = np.zeros((2, 3))
    layer.b = np.zeros(3)
    net.layers[1].W = np.ones((3, 1))
    net.layers[1].b = [0.25]
    np.testing.assert_allclose(net.predict(np.ones((4, 2))), 0.25)


def test_weights_assigned_before_the_network_exists(dtype):
    layer = Dense(2, 1, "sigmoid")
    layer.W = [[0.5], [-0.25]]  # b left unset
    net = Network([layer], dtype=dtype, seed=0)
    assert layer.W.dtype == dtype and layer.b.dtype == dtype
    np.testing.assert_array_equal(layer.W, np.array([[0.5], [-0.25]], dtype=dtype))
    np.testing.assert_array_equal(layer.b, [0])
    assert_close(net.predict(np.array([2.0, 2.0])), [1 / (1 + np.exp(-0.5))], dtype)
    big = Dense(2, 1)
    big.W = [[1e300], [0.0]]  # fine in float64, not in float32
    if dtype == np.float32:
        with pytest.raises(ValueError, match=r"W holds values beyond the range of float32"):
            Network([big], dtype=dtype)
    else:
        assert Network([big], dtype=dtype).layers[0].W[0, 0] == 1e300


def test_network_mlp():
    net = Network.mlp([5, 7, 6, 2], activation="tanh", loss="softmax_cross_entropy",
                      output_activation="softmax", dtype="float64", seed=4)
    assert [(l.n_in, l.n_out) for l in net.layers] == [(5, 7), (7, 6), (6, 2)]
    assert [l.activation for l in net.layers] == ["tanh", "tanh", "softmax"]
    assert net.loss == "softmax_cross_entropy" and net.dtype == np.float64
    assert net.n_inputs == 5 and net.n_outputs == 2
    assert Network.mlp([3, 1]).layers[0].activation == "identity"
    assert "Network(" in repr(net) and "Dense(5, 7" in repr(net)
    with pytest.raises(ValueError, match="sizes"):
        Network.mlp([3])
    with pytest.raises(ValueError):
        Network.mlp([3, 0, 1])


def test_a_deep_network_is_usable_or_refused_up_front(rng):
    # 70 layers: either the constructor refuses the depth, or the network works
    # on the default backend as on the NumPy one; never a network that builds
    # but cannot predict or train.
    sizes = [3] + [4] * 69 + [2]
    X, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    try:
        net = Network.mlp(sizes, activation="tanh", dtype="float64", seed=0)
    except ValueError as exc:
        assert "layers" in str(exc)
        return
    twin = Network.mlp(sizes, activation="tanh", dtype="float64", seed=0, backend="numpy")
    np.testing.assert_allclose(net.predict(X), twin.predict(X), rtol=1e-9, atol=1e-12)
    net.fit(X, y, epochs=2, batch_size=4)
    twin.fit(X, y, epochs=2, batch_size=4)
    np.testing.assert_allclose(net.layers[0].W, twin.layers[0].W, rtol=1e-8, atol=1e-12)


def test_layers_must_chain():
    with pytest.raises(ValueError, match=r"layers\[1\]"):
        Network([Dense(2, 3), Dense(4, 1)])
    with pytest.raises(ValueError, match="layer"):
        Network([])
    with pytest.raises(TypeError, match=r"layers\[0\]"):
        Network([object()])


# ---------------------------------------------------------------- the tutorials


def test_neuron_example():
    assert Neuron([0, 1], 4).feedforward([2, 3]) == pytest.approx(0.9990889488055994, abs=1e-12)
    with pytest.raises(ValueError, match="x"):
        Neuron([0, 1], 4).feedforward([1, 2, 3])


def test_two_two_one_network_example(backend):
    # Every neuron has weights w1 = 0, w2 = 1 and bias 0; sigmoid everywhere.
    net = Network([Dense(2, 2, "sigmoid"), Dense(2, 1, "sigmoid")], loss="mse",
                  dtype="float64", backend=backend)
    net.layers[0].W = [[0, 0], [1, 1]]
    net.layers[0].b = [0, 0]
    net.layers[1].W = [[0], [1]]
    net.layers[1].b = [0]
    out = net.predict(np.array([2.0, 3.0]))
    assert out.shape == (1,)
    assert out[0] == pytest.approx(0.7216325609518421, abs=1e-12)


def test_tutorial_gender_network_learns():
    X, y = gender_data()
    net = Network.mlp([2, 2, 1], activation="sigmoid", output_activation="sigmoid",
                      loss="mse", dtype="float64", seed=0)
    h = net.fit(X, y, epochs=1000, batch_size=1, optimizer=SGD(lr=0.1))
    assert h.loss[-1] < 0.01
    assert net.evaluate(X, y)["loss"] < 0.01
    # The tutorial's two new people: Emily (128 lb, 63 in) is F, Frank (155, 68) is M.
    emily, frank = net.predict(np.array([[128 - 135, 63 - 66], [155 - 135, 68 - 66]]))[:, 0]
    assert emily > 0.5 > frank


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_tutorial_xor_is_solved(activation):
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    y = np.array([0, 1, 1, 0])
    net = Network.mlp([2, 4, 1], activation=activation, loss="binary_cross_entropy",
                      dtype="float64", seed=0)
    net.fit(X, y, epochs=1000, batch_size=None, optimizer=SGD(lr=0.5, momentum=0.9))
    np.testing.assert_array_equal(net.predict(X), y)
    np.testing.assert_array_equal(np.round(net.predict_proba(X)[:, 0]), y)


def test_tutorial_ex2data2_reaches_80_percent():
    X, y = microchips()
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    net = Network.mlp([2, 10, 1], activation="sigmoid", loss="binary_cross_entropy",
                      dtype="float64", seed=0)
    net.fit(X, y, epochs=500, batch_size=16, optimizer=Adam(lr=0.02))
    assert net.evaluate(X, y)["accuracy"] >= 0.80


# ---------------------------------------------------------------- threads


def test_set_and_get_num_threads(blobs):
    X, y = blobs
    original = fastnn.get_num_threads()
    assert isinstance(original, int) and original >= 1
    try:
        results = []
        for n in (1, 2):
            fastnn.set_num_threads(n)
            assert fastnn.get_num_threads() == n
            net = Network.mlp([4, 8, 3], loss="softmax_cross_entropy", dtype="float64", seed=0)
            net.fit(X, y, epochs=2, batch_size=8)
            results.append(net.layers[0].W)
        np.testing.assert_allclose(results[0], results[1], rtol=RTOL[net.dtype])
        for bad in (0, -1, 1.5, "2", True):
            with pytest.raises((ValueError, TypeError)):
                fastnn.set_num_threads(bad)
    finally:
        fastnn.set_num_threads(original)


def test_set_num_threads_accepts_numpy_integers():
    original = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(np.int64(1))  # e.g. a value computed with NumPy
        assert fastnn.get_num_threads() == 1
    finally:
        fastnn.set_num_threads(original)


# ---------------------------------------------------------------- divergence


@pytest.mark.parametrize("case", ["tanh_sgd_1e6", "relu_softmax_1e8", "float32_step_overflow"])
def test_divergence_raises_and_leaves_finite_weights(case, backend, rng):
    if case == "tanh_sgd_1e6":
        X, y = rng.standard_normal((64, 5)), rng.standard_normal((64, 1))
        net = Network.mlp([5, 8, 1], activation="tanh", loss="mse", seed=0, backend=backend)
        opt = SGD(lr=1e6)
    elif case == "relu_softmax_1e8":
        X, y = rng.standard_normal((64, 5)), rng.integers(0, 3, 64)
        net = Network.mlp([5, 8, 3], activation="relu", loss="softmax_cross_entropy",
                          dtype="float64", seed=0, backend=backend)
        opt = SGD(lr=1e8)
    else:
        # One step whose loss is finite but whose update overflows float32.
        X, y = rng.standard_normal((64, 5)) * 1e3, rng.standard_normal((64, 1))
        net = Network.mlp([5, 1], loss="mse", dtype="float32", seed=0, backend=backend)
        opt = SGD(lr=1e36)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the NumPy backend warns on overflow
        with pytest.raises(FloatingPointError, match="NaN or infinite"):
            net.fit(X, y, epochs=20, batch_size=8, optimizer=opt)
    for w in weights_of(net):
        assert np.isfinite(w).all()
    # The network remains usable: a smaller learning rate trains on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert len(net.predict(X[:3])) == 3
