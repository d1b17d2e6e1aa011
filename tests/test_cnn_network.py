"""Convolutional networks end to end: gradients, input rules, both backends, dropout,
model files, a crash test of the compiled entry points, and a small learning task."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import RTOL, assert_close, report_cases, run_cases_in_child

import fastnn
from fastnn import SGD, Adam, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Network

ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu"]
BACKENDS = ["compiled", "numpy"]
_CASES_FLAG = "--run-cnn-crash-cases"


def tutorial_layers():
    return [Conv2D(1, 10, 5, activation="sigmoid"), MaxPool2D(2), Flatten(),
            Dense(1440, 128, activation="sigmoid"), Dense(128, 10)]


# ---------------------------------------------------------------- gradients


def _numeric_grads(net: Network, X, y, eps=1e-6):
    out = []
    for layer in net.layers:
        per = []
        for p in layer.params():
            g = np.empty_like(p)
            for idx in np.ndindex(p.shape):
                old = p[idx]
                p[idx] = old + eps
                lp, _ = net.loss_and_grads(X, y)
                p[idx] = old - eps
                lm, _ = net.loss_and_grads(X, y)
                p[idx] = old
                g[idx] = (lp - lm) / (2 * eps)
            per.append(g)
        out.append(tuple(per) if per else None)
    return out


def _check_grads(net, X, y):
    _, grads = net.loss_and_grads(X, y)
    numeric = _numeric_grads(net, X, y)
    assert len(grads) == len(net.layers)
    for layer, got, want in zip(net.layers, grads, numeric):
        if not layer.param_names:
            assert got is None
            continue
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)


def _randomise_biases(net, rng):
    for layer in net.layers:
        if "b" in layer.param_names:
            layer.b = rng.normal(0, 0.3, layer.b.shape)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("geometry", [
    dict(kernel_size=3, stride=1, padding=0),
    dict(kernel_size=(3, 2), stride=2, padding=(1, 0)),
    dict(kernel_size=2, stride=1, padding="same"),
])
def test_conv_layer_gradients(backend, activation, geometry):
    rng = np.random.default_rng(3)
    layers = [Conv2D(2, 3, activation=activation, **geometry), Flatten()]
    probe = Conv2D(2, 3, **geometry)
    n_out = int(np.prod(probe.build((6, 5, 2))))
    layers.append(Dense(n_out, 3))
    net = Network(layers, loss="softmax_cross_entropy", dtype="float64", seed=1,
                  backend=backend, input_shape=(6, 5, 2))
    _randomise_biases(net, rng)
    X = rng.standard_normal((3, 6, 5, 2))
    y = rng.integers(0, 3, 3)
    _check_grads(net, X, y)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_whole_network_gradients(backend, activation):
    """Conv -> Pool (dropping an edge) -> Conv "same" -> overlapping Pool -> Flatten ->
    Dropout (the identity in loss_and_grads) -> Dense -> Dense, on MSE."""
    rng = np.random.default_rng(5)
    layers = [Conv2D(1, 2, 3, activation=activation), MaxPool2D(2),           # 7x8 -> 5x6 -> 2x3
              Conv2D(2, 3, (2, 3), padding="same", activation=activation),   # 2x3x3
              MaxPool2D((2, 2), stride=1),                                   # 1x2x3
              Flatten(), Dropout(0.5), Dense(6, 4, activation=activation), Dense(4, 2)]
    net = Network(layers, loss="mse", dtype="float64", seed=2, backend=backend,
                  input_shape=(7, 8, 1))
    _randomise_biases(net, rng)
    X = rng.standard_normal((4, 7, 8))
    y = rng.standard_normal((4, 2))
    _check_grads(net, X, y)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_pool_and_dense_gradients_after_conv(activation):
    """The tutorial's architecture at a small size, both backends giving the same gradients."""
    rng = np.random.default_rng(8)

    def make(backend):
        net = Network([Conv2D(1, 3, 3, activation=activation), MaxPool2D(2), Flatten(),
                       Dense(27, 5, activation=activation), Dense(5, 3)],
                      loss="softmax_cross_entropy", dtype="float64", seed=4, backend=backend,
                      input_shape=(8, 8, 1))
        _randomise_biases(net, np.random.default_rng(0))
        return net

    X = rng.standard_normal((5, 8, 8, 1))
    y = rng.integers(0, 3, 5)
    _check_grads(make("numpy"), X, y)
    lc, gc = make("compiled").loss_and_grads(X, y)
    lp, gp = make("numpy").loss_and_grads(X, y)
    assert np.isclose(lc, lp, rtol=1e-12)
    for a, b in zip(gc, gp):
        assert (a is None) == (b is None)
        for x, z in zip(a or (), b or ()):
            assert_close(x, z, np.float64)


# ---------------------------------------------------------------- shapes and bad input


def test_tutorial_network_builds_and_summarises():
    net = Network(tutorial_layers(), loss="softmax_cross_entropy", input_shape=(28, 28, 1))
    assert [layer.out_shape for layer in net.layers] == [(24, 24, 10), (12, 12, 10), (1440,),
                                                         (128,), (10,)]
    assert net.layers[0].W.shape == (5, 5, 1, 10) and net.layers[0].b.shape == (10,)
    text = net.summary(print_fn=None)
    assert "Conv2D" in text and "(None, 24, 24, 10)" in text
    assert "Total parameters: 185,998" in text  # 260 + 184,448 + 1,290


def test_geometry_that_does_not_chain_gives_the_fitting_size():
    layers = tutorial_layers()
    layers[3] = Dense(1000, 128, activation="sigmoid")
    with pytest.raises(ValueError, match=r"Flatten gives 1440 = 12x12x10 features but "
                                         r"layers\[3\] takes 1000"):
        Network(layers, loss="softmax_cross_entropy", input_shape=(28, 28, 1))


@pytest.mark.parametrize("layers, input_shape, match", [
    ([Conv2D(3, 4, 3), Flatten(), Dense(2704, 2)], (28, 28, 1), "3 input channels"),
    ([Conv2D(1, 4, 3), Flatten(), Dense(10, 2)], (28, 28, 1), "Flatten gives 2704 = 26x26x4"),
    ([Conv2D(1, 4, 3), Flatten(), Dense(10, 2)], (784,), r"images of shape \(H, W, C\)"),
    ([Conv2D(1, 4, 9), Flatten(), Dense(10, 2)], (5, 5, 1), "larger than the padded"),
    ([MaxPool2D(4), Flatten(), Dense(1, 2)], (3, 3, 1), "larger than"),
    ([Conv2D(1, 4, 3)], (8, 8, 1), "vector per sample"),
    ([Dense(784, 2)], (28, 28, 1), "add a Flatten"),
])
def test_impossible_geometry_is_refused(layers, input_shape, match):
    with pytest.raises(ValueError, match=match):
        Network(layers, input_shape=input_shape)


def test_conv_needs_an_input_shape():
    with pytest.raises(ValueError, match="input_shape is needed"):
        Network([Conv2D(1, 2, 3), Flatten(), Dense(8, 2)])


@pytest.mark.parametrize("make, error, match", [
    (lambda: Conv2D(1, 2, 3, stride=2, padding="same"), ValueError, "needs stride 1"),
    (lambda: Conv2D(1, 2, 3, padding="full"), ValueError, "padding"),
    (lambda: Conv2D(1, 2, (3, 3, 3)), ValueError, "pair"),
    (lambda: Conv2D(1, 2, 0), ValueError, "positive"),
    (lambda: Conv2D(1, 2, 2.5), TypeError, "int"),
    (lambda: Conv2D(1, 2, 3, padding=-1), ValueError, "non-negative"),
    (lambda: Conv2D(0, 2, 3), ValueError, "in_channels"),
    (lambda: Conv2D(1, 2, 3, activation="softmax"), ValueError, "softmax"),
    (lambda: Conv2D(1, 2, 3, activation="swish"), ValueError, "activation"),
    (lambda: MaxPool2D(0), ValueError, "positive"),
    (lambda: MaxPool2D(2, stride=True), TypeError, "int"),
    (lambda: Dropout(1.0), ValueError, r"\[0, 1\)"),
    (lambda: Dropout(-0.1), ValueError, r"\[0, 1\)"),
    (lambda: Dropout(1 - 1e-12), ValueError, "too close to 1"),
    (lambda: Dropout("0.5"), TypeError, "number"),
])
def test_bad_layer_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_conv_parameters_are_checked_like_dense():
    net = Network([Conv2D(2, 3, (3, 2)), Flatten(), Dense(3 * 4 * 3, 2)], input_shape=(5, 5, 2))
    conv = net.layers[0]
    with pytest.raises(ValueError, match=r"W must have shape \(3, 2, 2, 3\)"):
        conv.W = np.zeros((2, 3, 2, 3))
    with pytest.raises(ValueError, match="NaN or infinity"):
        conv.b = [0, np.nan, 0]
    conv.W = np.ones((3, 2, 2, 3), int)
    assert conv.W.dtype == np.float32 and conv.W.sum() == 36


@pytest.mark.parametrize("backend", BACKENDS)
def test_image_input_forms_agree(backend):
    rng = np.random.default_rng(0)
    net = Network([Conv2D(1, 2, 3, activation="relu"), MaxPool2D(2), Flatten(), Dense(8, 3)],
                  loss="softmax_cross_entropy", seed=0, backend=backend, input_shape=(6, 6, 1))
    X = rng.integers(0, 256, (7, 6, 6, 1)).astype(np.uint8)
    want = net.predict_proba(X, input_scale=1 / 255)
    for form in (X[..., 0], X.reshape(7, 36), np.asfortranarray(X[..., 0]),
                 X.astype(np.float32) / 255):
        scale = 1.0 if form.dtype == np.float32 else 1 / 255
        assert_close(net.predict_proba(form, input_scale=scale), want, np.float32)
    assert_close(net.predict_proba(X[3], input_scale=1 / 255), want[3], np.float32)
    assert_close(net.predict_proba(X[3, :, :, 0], input_scale=1 / 255), want[3], np.float32)
    assert net.predict(X[3], input_scale=1 / 255) == want[3].argmax()
    y = rng.integers(0, 3, 7)
    net.fit(X, y, epochs=1, batch_size=3, input_scale=1 / 255)
    assert set(net.evaluate(X[..., 0], y, input_scale=1 / 255)) == {"loss", "accuracy"}


@pytest.mark.parametrize("X_shape, match", [
    ((4, 6, 6, 3), "3 channels, the network takes 1"),
    ((4, 1, 6, 6), "channels-last"),
    ((4, 5, 6, 1), r"images of shape \(5, 6, 1\)"),
    ((4, 35), "35 features per sample"),
    ((4, 6, 6, 1, 1), "images of shape"),
])
@pytest.mark.parametrize("method", ["fit", "predict", "evaluate", "loss_and_grads"])
def test_wrong_images_are_refused(X_shape, match, method):
    net = Network([Conv2D(1, 2, 3), Flatten(), Dense(32, 2)], loss="softmax_cross_entropy",
                  input_shape=(6, 6, 1))
    X = np.zeros(X_shape, np.float32)
    y = np.zeros(X_shape[0], int)
    call = {"fit": lambda: net.fit(X, y), "predict": lambda: net.predict(X),
            "evaluate": lambda: net.evaluate(X, y),
            "loss_and_grads": lambda: net.loss_and_grads(X, y)}[method]
    with pytest.raises(ValueError, match=match):
        call()


def test_three_channel_images_need_all_channels():
    net = Network([Conv2D(3, 2, 3), Flatten(), Dense(32, 2)], input_shape=(6, 6, 3))
    with pytest.raises(ValueError, match=r"images of shape \(n, 6, 6, 3\)"):
        net.predict(np.zeros((4, 6, 6)))
    assert net.predict(np.zeros((4, 6, 6, 3))).shape == (4, 2)
    with pytest.raises(ValueError, match="2-D"):
        Network([Dense(4, 2)]).predict(np.zeros((3, 2, 2)))


# ---------------------------------------------------------------- both backends


def _small_cnn(backend, dtype="float32", dropout=0.25, seed=0):
    return Network([Conv2D(1, 4, 3, activation="relu"), MaxPool2D(2), Flatten(),
                    Dropout(dropout), Dense(36, 16, activation="tanh"), Dense(16, 3)],
                   loss="softmax_cross_entropy", dtype=dtype, seed=seed, backend=backend,
                   input_shape=(8, 8, 1))


@pytest.mark.parametrize("optimizer", [lambda: SGD(lr=0.05, momentum=0.9),
                                       lambda: Adam(lr=3e-3)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_backends_train_to_the_same_weights(optimizer, dtype):
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, (90, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 3, 90)
    nets = {b: _small_cnn(b, dtype) for b in BACKENDS}
    hists = {b: net.fit(X, y, epochs=3, batch_size=16, optimizer=optimizer(),
                        input_scale=1 / 255) for b, net in nets.items()}
    rtol = 10 * RTOL[np.dtype(dtype)]
    np.testing.assert_allclose(hists["compiled"].loss, hists["numpy"].loss, rtol=rtol)
    for lc, ln in zip(nets["compiled"].layers, nets["numpy"].layers):
        for pc, pn in zip(lc.params(), ln.params()):
            assert_close(pc, pn, dtype, rtol=rtol)
    # Each of the 3 x 6 batches drew its own masks, from the same counter.
    for net in nets.values():
        assert int(net._dropout_state[1]) == 18
    np.testing.assert_array_equal(nets["compiled"]._dropout_state, nets["numpy"]._dropout_state)


def test_dropout_is_active_only_in_fit():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((20, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, 20)
    with_dropout, without = _small_cnn("compiled", dropout=0.5), _small_cnn("compiled", dropout=0.0)
    # The same initial weights: adding Dropout changes neither the draws nor the shuffles.
    for a, b in zip(with_dropout.layers, without.layers):
        for pa, pb in zip(a.params(), b.params()):
            np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(with_dropout.predict_proba(X), without.predict_proba(X))
    assert with_dropout.loss_and_grads(X, y)[0] == without.loss_and_grads(X, y)[0]
    h1 = with_dropout.fit(X, y, epochs=2, batch_size=5, shuffle=False)
    h2 = without.fit(X, y, epochs=2, batch_size=5, shuffle=False)
    assert h1.loss != h2.loss


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_refits_repeat_and_batches_differ(backend):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    runs = []
    for _ in range(2):
        net = _small_cnn(backend, dropout=0.5, seed=11)
        net.fit(X, y, epochs=2, batch_size=8, optimizer=SGD(lr=0.1))
        runs.append([p.copy() for p in net._params()])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    other = _small_cnn(backend, dropout=0.5, seed=12)
    assert other._dropout_state[0] != net._dropout_state[0]
    # The counter hands every batch a fresh mask.
    key = int(net._dropout_state[0])
    masks = {net._ops.dropout_mask((8, 36), 0.5, key, c, 3).tobytes() for c in range(10)}
    assert len(masks) == 10


def test_compiled_dropout_masks_equal_numpy_masks_in_fit():
    """One batch of plain SGD through a Dropout right after the input: the trained
    weights show which inputs were dropped, identically on both backends."""
    X = np.ones((4, 6), np.float64)
    y = np.zeros((4, 1))
    nets = [Network([Dropout(0.5), Dense(6, 1)], loss="mse", dtype="float64", seed=5,
                    backend=b, input_shape=(6,)) for b in BACKENDS]
    for net in nets:
        net.layers[1].W = np.ones((6, 1))
        net.fit(X, y, epochs=1, batch_size=4, shuffle=False, optimizer=SGD(lr=0.01))
    np.testing.assert_array_equal(nets[0].layers[1].W, nets[1].layers[1].W)
    mask = nets[0]._ops.dropout_mask((4, 6), 0.5, int(nets[0]._dropout_state[0]), 0, 0)
    dropped_everywhere = mask.sum(axis=0) == 0
    W = nets[0].layers[1].W[:, 0]
    assert (W[dropped_everywhere] == 1).all() and (W[~dropped_everywhere] < 1).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_predict_in_chunks_equals_one_chunk(backend):
    rng = np.random.default_rng(4)
    net = Network(tutorial_layers(), loss="softmax_cross_entropy", seed=0, backend=backend,
                  input_shape=(28, 28, 1))
    X = rng.integers(0, 256, (1100, 28, 28), dtype=np.uint8)
    full = net._ops.forward_chunks(X.reshape(1100, -1), net.layers, net._compute_activations,
                                   1 / 255, "raw", chunk=2000)
    chunked = net._ops.forward_chunks(X.reshape(1100, -1), net.layers, net._compute_activations,
                                      1 / 255, "raw", chunk=7)
    assert_close(chunked, full, np.float32)
    other = Network(tutorial_layers(), loss="softmax_cross_entropy", seed=0,
                    backend="numpy" if backend == "compiled" else "compiled",
                    input_shape=(28, 28, 1))
    assert_close(other.predict_proba(X[:50], input_scale=1 / 255),
                 net.predict_proba(X[:50], input_scale=1 / 255), np.float32)


# ---------------------------------------------------------------- model files


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_round_trip_is_exact(tmp_path, dtype):
    rng = np.random.default_rng(6)
    net = Network([Conv2D(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), activation="tanh"),
                   MaxPool2D((2, 2), stride=1), Conv2D(4, 2, 2, padding="same"), Flatten(),
                   Dropout(0.3), Dense(24, 5, activation="relu"), Dense(5, 2)],
                  loss="softmax_cross_entropy", dtype=dtype, seed=3, input_shape=(9, 5, 3))
    X = rng.standard_normal((6, 9, 5, 3))
    net.fit(X, rng.integers(0, 2, 6), epochs=2, batch_size=3)
    path = tmp_path / "cnn.npz"
    net.save(path)
    loaded = fastnn.load(path)
    assert loaded.input_shape == (9, 5, 3)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in net.layers]
    assert [layer.config() for layer in loaded.layers] == [layer.config() for layer in net.layers]
    for a, b in zip(net._params(), loaded._params()):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))
    loaded_np = fastnn.load(path, backend="numpy")
    assert_close(loaded_np.predict_proba(X), net.predict_proba(X), dtype)


def test_to_json_refuses_a_cnn():
    net = Network(tutorial_layers(), loss="softmax_cross_entropy", input_shape=(28, 28, 1))
    with pytest.raises(ValueError, match="dense-only.*save"):
        net.to_json()


def test_a_model_file_with_bad_conv_config_is_refused(tmp_path):
    net = Network([Conv2D(1, 2, 3), Flatten(), Dense(32, 2)], input_shape=(6, 6, 1))
    path = tmp_path / "m.npz"
    net.save(path)
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    header_arr = np.load(__import__("io").BytesIO(members["header.npy"]))
    header = json.loads(header_arr.tobytes())
    header["layers"][0]["config"]["in_channels"] = 3
    buf = __import__("io").BytesIO()
    np.save(buf, np.frombuffer(json.dumps(header).encode(), np.uint8))
    members["header.npy"] = buf.getvalue()
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(bad, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.raises(fastnn.ModelFileError, match="input channels"):
        fastnn.load(bad)


# ---------------------------------------------------------------- learning


def _digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target


def _synthetic(rng, n):
    """Images of a bright horizontal, vertical or diagonal stroke on noise (3 classes)."""
    X = rng.uniform(0, 0.3, (n, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, n)
    for i in range(n):
        k = rng.integers(1, 7)
        if y[i] == 0:
            X[i, k, 1:7] += 0.7
        elif y[i] == 1:
            X[i, 1:7, k] += 0.7
        else:
            X[i, np.arange(1, 7), np.arange(1, 7)] += 0.7
    return X, y


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_small_cnn_learns(backend):
    rng = np.random.default_rng(0)
    data = _digits()
    if data is None:
        X, y = _synthetic(rng, 600)
        n_classes = 3
    else:
        X, y = data
        n_classes = 10
    order = rng.permutation(len(X))
    X, y = X[order], y[order]
    n_train = int(0.8 * len(X))
    net = Network([Conv2D(1, 8, 3, activation="relu"), MaxPool2D(2), Flatten(),
                   Dropout(0.1), Dense(72, n_classes)],
                  loss="softmax_cross_entropy", seed=0, backend=backend, input_shape=(8, 8, 1))
    net.fit(X[:n_train], y[:n_train], epochs=15, batch_size=32, optimizer=Adam(lr=1e-2))
    accuracy = net.evaluate(X[n_train:], y[n_train:])["accuracy"]
    assert accuracy > 0.9, accuracy


# ---------------------------------------------------------------- the compiled entry points


def _crash_cases():
    """Mismatched buffers and geometries given straight to the compiled entry points."""
    import types

    from fastnn._core import _kernels, _train

    def z(shape, dtype=np.float64):
        return np.zeros(shape, dtype)

    conv = [6, 6, 1, 4, 4, 2, 3, 3, 1, 1, 0, 0]     # 6x6x1 -> 4x4x2 by 3x3
    pool = [4, 4, 2, 2, 2, 2, 2, 2, 2]               # 4x4x2 -> 2x2x2
    kinds, acts = [1, 2, 3, 0], [3, 0, 0, 0]
    geometry = [conv, pool, [8], [8, 3]]
    params = [z(18), z(2), z((8, 3)), z(3)]

    def fwd(X=None, geometry=geometry, params=params, kinds=kinds, acts=acts, out=None):
        X = z((5, 36)) if X is None else X
        out = z((X.shape[0], 3)) if out is None else out
        return _train.forward_chunks(X, out, list(kinds), list(acts),
                                     [list(g) for g in geometry], list(params), 1.0, 4, 0)

    def workspace(**fields):
        opt = SGD(lr=0.1)
        opt.prepare(params)
        plan = dict(dtype="float64", kinds=kinds + [4], acts=acts + [0],
                    geometry=geometry + [[3, 100]], params=list(params),
                    grads=[z(18), z(2), z((8, 3)), z(3)],
                    A=[z((2, 32)), z((2, 8)), z((2, 8)), z((2, 3)), z((2, 3))],
                    D=[z((2, 32)), z((2, 8)), z((2, 8)), z((2, 3)), z((2, 3))],
                    optimizer=opt, batch_size=2, loss_code=2, X=z((5, 36)), Xb=z((2, 36)),
                    x_scale=1.0, y=np.zeros(5, np.intp), labels_b=np.zeros(2, np.intp),
                    targets_b=z((2, 3)), sample_weight=None, weights_b=z(2),
                    dropout_state=np.zeros(2, np.uint64))
        work = fields.pop("work", [[z((32, 9))], [np.zeros((2, 8), np.int32)], [], [],
                                   [np.zeros((2, 3), np.uint8)]])
        plan.update(fields)
        plan["use_labels"] = True
        ns = types.SimpleNamespace(**plan)
        ns.work_buffers = lambda: work
        return _train.Workspace(ns)

    return {
        # Controls: the same buffers, consistent, are accepted and run.
        "valid_forward": lambda: fwd(),
        "valid_training": lambda: workspace().train(np.arange(5, dtype=np.intp), 0, 5),
        "conv_fwd_Y_shape": lambda: _kernels.conv2d_forward(z((2, 36)), z(18), z(2), z((2, 31)),
                                                            conv, 0),
        "conv_fwd_W_size": lambda: _kernels.conv2d_forward(z((2, 36)), z(17), z(2), z((2, 32)),
                                                           conv, 0),
        "conv_fwd_X_cols": lambda: _kernels.conv2d_forward(z((2, 35)), z(18), z(2), z((2, 32)),
                                                           conv, 0),
        "conv_fwd_geometry_out": lambda: _kernels.conv2d_forward(
            z((2, 36)), z(18), z(2), z((2, 200)), [6, 6, 1, 10, 10, 2, 3, 3, 1, 1, 0, 0], 0),
        "conv_fwd_geometry_short": lambda: _kernels.conv2d_forward(
            z((2, 36)), z(18), z(2), z((2, 32)), conv[:-1], 0),
        "conv_fwd_geometry_zero": lambda: _kernels.conv2d_forward(
            z((2, 36)), z(18), z(2), z((2, 32)), [6, 6, 1, 4, 4, 2, 3, 0, 1, 1, 0, 0], 0),
        "conv_fwd_huge_pad": lambda: _kernels.conv2d_forward(
            z((2, 36)), z(18), z(2), z((2, 32)), [6, 6, 1, 4, 4, 2, 3, 3, 1, 1, 1 << 30, 0], 0),
        "conv_fwd_dtypes": lambda: _kernels.conv2d_forward(z((2, 36), np.float32), z(18), z(2),
                                                           z((2, 32)), conv, 0),
        "conv_dW_size": lambda: _kernels.conv2d_backward_weight(z((2, 36)), z((32, 2)), z(17),
                                                                z(2), conv),
        "conv_dW_dZ_rows": lambda: _kernels.conv2d_backward_weight(z((2, 36)), z((31, 2)),
                                                                   z(18), z(2), conv),
        "conv_dX_shape": lambda: _kernels.conv2d_backward_input(z((32, 2)), z(18), z((2, 30)),
                                                                conv),
        "conv_dX_dZ": lambda: _kernels.conv2d_backward_input(z((30, 2)), z(18), z((2, 36)), conv),
        "pool_fwd_argmax": lambda: _kernels.maxpool2d_forward(z((2, 32)), z((2, 8)),
                                                              np.zeros((2, 7), np.int32), pool),
        "pool_fwd_window_outside": lambda: _kernels.maxpool2d_forward(
            z((2, 32)), z((2, 18)), np.zeros((2, 18), np.int32), [4, 4, 2, 3, 3, 2, 2, 2, 2]),
        "pool_bwd_argmax_high": lambda: _kernels.maxpool2d_backward(
            z((2, 8)), np.full((2, 8), 32, np.int32), z((2, 32)), pool),
        "pool_bwd_argmax_negative": lambda: _kernels.maxpool2d_backward(
            z((2, 8)), np.full((2, 8), -1, np.int32), z((2, 32)), pool),
        "dropout_mask_size": lambda: _kernels.dropout_forward(z(8), z(8), np.zeros(7, np.uint8),
                                                              1, 0, 0, 5),
        "dropout_threshold": lambda: _kernels.dropout_forward(z(8), z(8), np.zeros(8, np.uint8),
                                                              1, 0, 0, -1),
        "dropout_bwd_size": lambda: _kernels.dropout_backward(z(8), np.zeros(8, np.uint8), z(7),
                                                              5),
        "engine_conv_chain": lambda: fwd(geometry=[conv, [5, 5, 2, 2, 2, 2, 2, 2, 2], [8],
                                                   [8, 3]]),
        "engine_conv_W_size": lambda: fwd(params=[z(17), z(2), z((8, 3)), z(3)]),
        "engine_conv_act_on_pool": lambda: fwd(acts=[3, 3, 0, 0]),
        "engine_pool_outside": lambda: fwd(geometry=[conv, [4, 4, 2, 3, 3, 2, 2, 2, 2], [18],
                                                     [18, 3]]),
        "engine_flatten_size": lambda: fwd(geometry=[conv, pool, [9], [8, 3]]),
        "engine_X_features": lambda: fwd(X=z((5, 35))),
        "ws_cols_size": lambda: workspace(work=[[z((31, 9))], [np.zeros((2, 8), np.int32)], [],
                                                [], [np.zeros((2, 3), np.uint8)]]),
        "ws_argmax_dtype": lambda: workspace(work=[[z((32, 9))], [np.zeros((2, 8), np.int64)],
                                                   [], [], [np.zeros((2, 3), np.uint8)]]),
        "ws_mask_size": lambda: workspace(work=[[z((32, 9))], [np.zeros((2, 8), np.int32)], [],
                                                [], [np.zeros((1, 3), np.uint8)]]),
        "ws_work_missing": lambda: workspace(work=[[z((32, 9))]]),
        "ws_dropout_state": lambda: workspace(dropout_state=np.zeros(2, np.int64)),
        "ws_no_dropout_state": lambda: workspace(dropout_state=None),
        "ws_A_size": lambda: workspace(A=[z((2, 31)), z((2, 8)), z((2, 8)), z((2, 3)),
                                          z((2, 3))]),
    }


@pytest.fixture(scope="module")
def crash_results():
    return run_cases_in_child(__file__, _CASES_FLAG)


@pytest.mark.parametrize("name", list(_crash_cases()))
def test_compiled_entry_points_refuse_mismatched_buffers(name, crash_results):
    returncode, crashed_in, results, stderr = crash_results
    if name not in results:
        pytest.fail(f"the interpreter died (exit code {returncode}) in case {crashed_in!r}; "
                    f"case {name!r} never ran\n{stderr}")
    rec = results[name]
    if name.startswith("valid"):
        assert rec["raised"] is None, rec
    else:
        assert rec["raised"] in ("ValueError", "TypeError"), rec
        assert rec["message"]


if __name__ == "__main__" and _CASES_FLAG in sys.argv:
    report_cases(_crash_cases())


# ---------------------------------------------------------------- the engine's other paths


class _PlainSGD(SGD):
    """SGD's rule in Python: the compiled backend then runs each batch op by op."""

    def update(self, ops, params, grads, decay):
        for p, g in zip(params, grads):
            p -= p.dtype.type(self.lr) * g


def test_a_custom_optimizer_trains_a_cnn_on_both_backends():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((30, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, 30)
    nets = {b: _small_cnn(b, dropout=0.3, seed=9) for b in BACKENDS}
    for net in nets.values():
        net.fit(X, y, epochs=2, batch_size=8, optimizer=_PlainSGD(lr=0.1))
    fused = _small_cnn("compiled", dropout=0.3, seed=9)
    fused.fit(X, y, epochs=2, batch_size=8, optimizer=SGD(lr=0.1))
    for other in (nets["numpy"], fused):
        for a, b in zip(nets["compiled"]._params(), other._params()):
            assert_close(a, b, np.float32, rtol=10 * RTOL[np.dtype(np.float32)])
    assert int(nets["compiled"]._dropout_state[1]) == int(fused._dropout_state[1]) == 8


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_divergence_with_dropout_restores_the_last_finite_weights():
    """Recovery replays batches: the dropout counter is restored with the weights, so the
    replay draws the masks the failed run drew, and both backends end alike."""
    rng = np.random.default_rng(8)
    X = rng.standard_normal((64, 8, 8, 1)).astype(np.float32)
    y = rng.standard_normal((64, 1)).astype(np.float32)
    ends = {}
    for b in BACKENDS:
        net = Network([Conv2D(1, 2, 3), Flatten(), Dropout(0.5), Dense(72, 1)], loss="mse",
                      seed=3, backend=b, input_shape=(8, 8, 1))
        with pytest.raises(FloatingPointError):
            net.fit(X, y, epochs=50, batch_size=8, optimizer=SGD(lr=0.5))
        assert all(np.isfinite(p).all() for p in net._params())
        ends[b] = net
    for a, b in zip(ends["compiled"]._params(), ends["numpy"]._params()):
        assert_close(a, b, np.float32, rtol=10 * RTOL[np.dtype(np.float32)])
    np.testing.assert_array_equal(ends["compiled"]._dropout_state, ends["numpy"]._dropout_state)


def test_float64_cnn_with_validation_data_and_sample_weights():
    rng = np.random.default_rng(9)
    X = rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
    y = rng.integers(0, 3, 40)
    w = rng.uniform(0.5, 2, 40)
    hists = {}
    for b in BACKENDS:
        net = _small_cnn(b, dtype="float64", seed=2)
        hists[b] = net.fit(X[:30], y[:30], epochs=2, batch_size=7, input_scale=1 / 255,
                           sample_weight=w[:30], validation_data=(X[30:, :, :, 0], y[30:]))
        assert net.layers[0].W.dtype == np.float64
    np.testing.assert_allclose(hists["compiled"].val_loss, hists["numpy"].val_loss, rtol=1e-9)
    np.testing.assert_allclose(hists["compiled"].loss, hists["numpy"].loss, rtol=1e-9)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_in_blocks_of_samples_matches_numpy(dtype):
    """A 28x28 convolution with 25 taps is im2col'ed a few samples at a time in training
    (blocks of about 256 KB of columns: 4 float32 images, 2 float64), each block written
    into its place in the batch's columns; batches of 10 leave a partial block."""
    rng = np.random.default_rng(10)
    X = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 30)
    nets = {b: Network([Conv2D(1, 4, 5, padding=1, activation="tanh"), MaxPool2D(2),
                        Flatten(), Dense(676, 10)], loss="softmax_cross_entropy", dtype=dtype,
                       seed=1, backend=b, input_shape=(28, 28, 1)) for b in BACKENDS}
    for net in nets.values():
        net.fit(X, y, epochs=2, batch_size=10, input_scale=1 / 255,
                optimizer=SGD(lr=0.05, momentum=0.9))
    for a, b in zip(nets["compiled"]._params(), nets["numpy"]._params()):
        assert_close(a, b, dtype, rtol=10 * RTOL[np.dtype(dtype)])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_engine_matches_numpy_for_every_activation_before_a_pool(activation):
    """In the compiled loop a pool's backward also applies the activation derivative
    and bias gradient of the convolution before it; overlapping windows and a second
    convolution (whose input gradient goes through col2im) included."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((24, 11, 10, 2)).astype(np.float64)
    y = rng.integers(0, 4, 24)
    nets = {b: Network([Conv2D(2, 3, 3, activation=activation),          # 9x8x3
                        MaxPool2D(3, stride=2),                          # 4x3x3
                        Conv2D(3, 4, 2, padding="same", activation=activation),
                        MaxPool2D(2), Flatten(), Dense(8, 4)],           # 2x1x4
                       loss="softmax_cross_entropy", dtype="float64", seed=6, backend=b,
                       input_shape=(11, 10, 2)) for b in BACKENDS}
    for net in nets.values():
        _randomise_biases(net, np.random.default_rng(1))
        net.fit(X, y, epochs=3, batch_size=5, optimizer=Adam(lr=1e-2))
    for a, b in zip(nets["compiled"]._params(), nets["numpy"]._params()):
        assert_close(a, b, np.float64, rtol=1e-9)


def test_samples_of_any_shape_before_a_flatten():
    net = Network([Flatten(), Dense(12, 2)], input_shape=(3, 4), seed=0)
    X = np.random.default_rng(0).standard_normal((5, 3, 4))
    np.testing.assert_array_equal(net.predict(X), net.predict(X.reshape(5, 12)))
    np.testing.assert_array_equal(net.predict(X[0]), net.predict(X.reshape(5, 12))[0])
    with pytest.raises(ValueError, match=r"samples of shape \(3, 4\)"):
        net.predict(np.zeros((5, 4, 3)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_blocked_backward_of_an_inner_convolution_matches_numpy(dtype):
    """The second convolution's columns take more than the block budget per image, so
    its weight gradient accumulates over one-image blocks and its input gradient is
    col2im'ed block by block."""
    rng = np.random.default_rng(12)
    X = rng.standard_normal((7, 26, 26, 2))
    y = rng.integers(0, 3, 7)
    nets = {b: Network([Conv2D(2, 3, 3, activation="tanh"), Conv2D(3, 4, 5, padding=1,
                                                                     activation="sigmoid"),
                        MaxPool2D(2), Flatten(), Dense(484, 3)],
                       loss="softmax_cross_entropy", dtype=dtype, seed=2, backend=b,
                       input_shape=(26, 26, 2)) for b in BACKENDS}
    for net in nets.values():
        net.fit(X, y, epochs=2, batch_size=3, optimizer=SGD(lr=0.05, momentum=0.5))
    for a, b in zip(nets["compiled"]._params(), nets["numpy"]._params()):
        assert_close(a, b, dtype, rtol=10 * RTOL[np.dtype(dtype)])


def test_dropout_before_a_convolution_trains_alike_on_both_backends():
    # The NumPy Dropout keeps its mask in the shape its input came in (flat rows
    # here) while the convolution after it hands back an image-shaped gradient.
    rng = np.random.default_rng(5)
    X, y = rng.random((6, 32)), np.array([0, 1] * 3)
    weights = {}
    for backend in ("numpy", "compiled"):
        net = fastnn.Network([fastnn.Dropout(0.0), fastnn.Dropout(0.3), fastnn.Conv2D(2, 3, 2),
                              fastnn.Flatten(), fastnn.Dense(27, 2)],
                             loss="softmax_cross_entropy", input_shape=(4, 4, 2), seed=0,
                             backend=backend, dtype="float64")
        net.fit(X, y, epochs=3, batch_size=4, optimizer=fastnn.SGD(lr=0.1))
        weights[backend] = net.get_weights()
    for a, b in zip(weights["numpy"], weights["compiled"]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_geometry_whose_sizes_overflow_when_multiplied_is_refused_in_a_child_process():
    # 1718039348 * 2147418113 * 5 wraps round to 4 in 64 bits: the size checks of the
    # compiled entry points must multiply without wrapping (a crash here was a heap overflow).
    script = textwrap.dedent("""
        import numpy as np
        from fastnn._core import _kernels as K, _train as T
        big = [1, 1, 5, 1, 1, 1, 1718039348, 2147418113, 1, 1, 0, 0]
        calls = {
            "conv2d_forward": lambda: K.conv2d_forward(
                np.ones((2, 5), np.float32), np.ones(4, np.float32), np.zeros(1, np.float32),
                np.zeros((2, 1), np.float32), big, 0),
            "forward_chunks": lambda: T.forward_chunks(
                np.ones((2, 5), np.float32), np.zeros((2, 1), np.float32), [1], [0], [big],
                [np.ones(4, np.float32), np.zeros(1, np.float32)], 1.0, 64, 0),
            "maxpool2d_forward": lambda: K.maxpool2d_forward(
                np.ones((1, 4), np.float32), np.zeros((1, 10), np.float32),
                np.zeros((1, 10), np.int32), [1718039348, 2147418113, 5, 2, 1, 1, 1, 1, 1]),
        }
        for name, call in calls.items():
            try:
                call()
                print(name, "accepted")
            except ValueError as exc:
                print(name, "refused:", exc)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"crashed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3 and all("refused: " in line and "too large" in line
                                   for line in lines), proc.stdout
