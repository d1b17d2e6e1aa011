"""Training features on the chunked engine: summary(), History's repr, validation_split."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_close, weights_of

import fastnn
from fastnn import Dense, Network


def test_summary_counts_the_parameters_of_784_128_10(capsys):
    net = Network.mlp([784, 128, 10], loss="softmax_cross_entropy", seed=0)
    text = net.summary()
    assert capsys.readouterr().out.strip() == text.strip()
    assert "Total parameters: 101,770" in text
    lines = text.splitlines()
    assert any("Dense (relu)" in l and "(None, 128)" in l and "100,480" in l for l in lines)
    assert any("Dense (softmax)" in l and "(None, 10)" in l and "1,290" in l for l in lines)


def test_summary_prints_through_print_fn_or_not_at_all(capsys):
    net = Network([Dense(3, 2, "tanh")], seed=0)
    seen = []
    text = net.summary(print_fn=seen.append)
    assert seen == [text] and "Total parameters: 8" in text
    assert net.summary(print_fn=None) == text
    assert capsys.readouterr().out == ""


def test_history_repr_shows_the_epochs_and_the_last_values(rng):
    X, y = rng.standard_normal((40, 3)), rng.integers(0, 2, 40)
    net = Network.mlp([3, 4, 2], loss="softmax_cross_entropy", seed=0)
    history = net.fit(X, y, epochs=3, validation_data=(X, y))
    text = repr(history)
    assert text.startswith("History(epochs=3, loss=")
    assert f"loss={history.loss[-1]:.4g}" in text and "val_accuracy=" in text
    assert "epoch_time" not in text
    assert repr(Network.mlp([3, 2]).fit(X, rng.standard_normal((40, 2)), epochs=1)).count("val") == 0


@pytest.mark.parametrize("split", [0.2, 0.25, 0.5])
def test_validation_split_holds_out_the_last_rows_before_shuffling(split, backend, rng):
    X, y = rng.standard_normal((60, 4)), rng.integers(0, 3, 60)
    n_val = int(60 * split)
    a = Network.mlp([4, 6, 3], loss="softmax_cross_entropy", seed=1, backend=backend)
    b = Network.mlp([4, 6, 3], loss="softmax_cross_entropy", seed=1, backend=backend)
    ha = a.fit(X, y, epochs=3, batch_size=8, validation_split=split)
    hb = b.fit(X[:60 - n_val], y[:60 - n_val], epochs=3, batch_size=8,
               validation_data=(X[60 - n_val:], y[60 - n_val:]))
    for wa, wb in zip(weights_of(a), weights_of(b)):
        np.testing.assert_array_equal(wa, wb)
    assert ha.loss == hb.loss and ha.val_loss == hb.val_loss
    assert ha.val_accuracy == hb.val_accuracy and len(ha.val_loss) == 3


def test_validation_split_splits_sample_weights_too(rng):
    X, y = rng.standard_normal((50, 4)), rng.integers(0, 3, 50)
    w = rng.uniform(0.5, 2.0, 50)
    a = Network.mlp([4, 5, 3], loss="softmax_cross_entropy", seed=2)
    b = Network.mlp([4, 5, 3], loss="softmax_cross_entropy", seed=2)
    a.fit(X, y, epochs=2, validation_split=0.2, sample_weight=w)
    b.fit(X[:40], y[:40], epochs=2, validation_data=(X[40:], y[40:]), sample_weight=w[:40])
    for wa, wb in zip(weights_of(a), weights_of(b)):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(validation_split=1.0), ValueError, r"validation_split must be in \[0, 1\)"),
    (dict(validation_split=-0.1), ValueError, r"validation_split"),
    (dict(validation_split=float("nan")), ValueError, r"validation_split"),
    (dict(validation_split="0.2"), TypeError, r"validation_split"),
    (dict(validation_split=0.01), ValueError, r"both need at least one"),
    (dict(validation_split=0.2, validation_data="given"), ValueError, r"not both"),
])
def test_bad_validation_split_is_refused(kwargs, error, match, rng):
    X, y = rng.standard_normal((20, 4)), rng.integers(0, 3, 20)
    if kwargs.get("validation_data") == "given":
        kwargs["validation_data"] = (X, y)
    net = Network.mlp([4, 5, 3], loss="softmax_cross_entropy", seed=0)
    before = [w.copy() for w in weights_of(net)]
    with pytest.raises(error, match=match):
        net.fit(X, y, **kwargs)
    for w, w0 in zip(weights_of(net), before):
        np.testing.assert_array_equal(w, w0)


def test_uint8_input_without_input_scale_warns_and_with_it_does_not(rng):
    import warnings

    X = rng.integers(0, 256, (30, 4)).astype(np.uint8)
    y = rng.integers(0, 3, 30)
    net = Network.mlp([4, 5, 3], loss="softmax_cross_entropy", seed=0)
    with pytest.warns(UserWarning, match=r"X is uint8 .* input_scale=1/255"):
        net.fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.fit(X, y, input_scale=1 / 255)
        net.fit(X.astype(np.float32), y)


def test_history_records_the_learning_rate_of_each_epoch(rng):
    from fastnn import SGD

    X, y = rng.standard_normal((20, 3)), rng.integers(0, 2, 20)
    net = Network.mlp([3, 2], loss="softmax_cross_entropy", seed=0)
    opt = SGD(lr=0.05)
    assert net.fit(X, y, epochs=3, optimizer=opt).lr == [0.05] * 3
    opt.lr = 0.01
    assert net.fit(X, y, epochs=2, optimizer=opt).lr == [0.01] * 2


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_layer_outputs_give_each_layer_as_predict_computes_it(backend):
    rng = np.random.default_rng(3)
    net = fastnn.Network([fastnn.Conv2D(1, 4, 3, activation="relu"), fastnn.MaxPool2D(2),
                          fastnn.Flatten(), fastnn.Dropout(0.5),
                          fastnn.Dense(24, 5, activation="tanh"), fastnn.Dense(5, 3, "softmax")],
                         loss="softmax_cross_entropy", input_shape=(8, 7, 1), seed=0,
                         backend=backend)
    X = rng.random((6, 8, 7)).astype(np.float32)
    outs = net.layer_outputs(X)
    assert [o.shape for o in outs] == [(6, 6, 5, 4), (6, 3, 2, 4), (6, 24), (6, 24),
                                       (6, 5), (6, 3)]
    conv = net.layers[0]
    windows = np.lib.stride_tricks.sliding_window_view(X, (3, 3), axis=(1, 2))  # (6,6,5,3,3)
    expected = np.maximum(np.einsum("nijab,abk->nijk", windows, conv.W[:, :, 0, :]) + conv.b, 0)
    assert_close(outs[0], expected, np.float32)
    pooled = outs[0][:, :6, :4].reshape(6, 3, 2, 2, 2, 4).max(axis=(2, 4))  # drops row 5
    assert_close(outs[1], pooled, np.float32)
    np.testing.assert_array_equal(outs[3], outs[2])          # dropout is off outside fit
    dense = net.layers[4]
    assert_close(outs[4], np.tanh(outs[3] @ dense.W + dense.b), np.float32)
    assert_close(outs[5], net.predict_proba(X), np.float32)  # the fused softmax applied
    one = net.layer_outputs(X[0])
    assert [o.shape[0] for o in one] == [1] * 6
    assert_close(one[-1][0], outs[-1][0], np.float32)


def test_layer_outputs_check_their_input():
    net = fastnn.Network.mlp([3, 4, 1], activation="tanh", loss="binary_cross_entropy", seed=1)
    with pytest.raises(ValueError):
        net.layer_outputs(np.ones((2, 4)))
    with pytest.raises(ValueError):
        net.layer_outputs(np.ones((2, 3)), input_scale=0.0)
    X = np.ones((2, 3))
    assert_close(net.layer_outputs(X)[-1], net.predict_proba(X), np.float32)
