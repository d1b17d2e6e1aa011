"""Consistent defaults: one learning rate, mlp's output activation, Dense's weight layout."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest

import fastnn
from fastnn import SGD, Dense, Network, Neuron


def test_one_default_learning_rate(rng):
    default = inspect.signature(SGD).parameters["lr"].default
    assert SGD().lr == default == 0.01
    X, y = rng.standard_normal((20, 3)), rng.integers(0, 2, 20)
    net = Network.mlp([3, 2], loss="softmax_cross_entropy", seed=0)
    history = net.fit(X, y)
    assert history.lr == [default] and isinstance(net.optimizer, SGD)
    # ... and it trains as SGD() passed explicitly.
    other = Network.mlp([3, 2], loss="softmax_cross_entropy", seed=0)
    other.fit(X, y, optimizer=SGD())
    np.testing.assert_array_equal(net.layers[0].W, other.layers[0].W)


@pytest.mark.parametrize("loss, output", [("mse", "identity"), ("binary_cross_entropy", "sigmoid"),
                                          ("softmax_cross_entropy", "softmax")])
def test_mlp_output_activation_follows_the_loss(loss, output, rng):
    net = Network.mlp([3, 4, 2], activation="tanh", loss=loss, seed=0)
    assert [l.activation for l in net.layers] == ["tanh", output]
    X = rng.standard_normal((5, 3))
    # The cross-entropies fuse it: the same logits and predictions as an identity output.
    same = Network.mlp([3, 4, 2], activation="tanh", loss=loss, seed=0,
                       output_activation="identity")
    np.testing.assert_array_equal(net.predict(X), same.predict(X))
    if loss != "mse":
        p = net.predict_proba(X)
        assert ((p > 0) & (p < 1)).all()


def test_mlp_output_activation_can_be_stated():
    net = Network.mlp([2, 4, 1], activation="sigmoid", output_activation="sigmoid")
    assert [l.activation for l in net.layers] == ["sigmoid", "sigmoid"]
    assert Network.mlp([2, 4, 1], activation="sigmoid").layers[-1].activation == "identity"


def test_from_neurons_takes_the_tutorials_rows(rng):
    rows = rng.standard_normal((3, 2))   # 3 neurons of 2 inputs
    biases = rng.standard_normal(3)
    layer = Dense.from_neurons(rows, biases, "sigmoid")
    assert (layer.n_in, layer.n_out) == (2, 3)
    np.testing.assert_array_equal(layer.W, rows.T)
    net = Network([layer], dtype="float64")
    x = rng.standard_normal(2)
    expected = [Neuron(rows[j], biases[j]).feedforward(x) for j in range(3)]
    np.testing.assert_allclose(net.predict(x), expected, rtol=1e-12)
    back_rows, back_b = net.layers[0].neurons()
    np.testing.assert_array_equal(back_rows, rows)
    np.testing.assert_array_equal(back_b, biases)


def test_from_neurons_reads_the_json_format(rng, tmp_path):
    net = Network.mlp([3, 4, 2], activation="sigmoid", output_activation="sigmoid",
                      dtype="float64", seed=1)
    doc = json.loads(net.to_json())
    layers = [Dense.from_neurons(w, b, "sigmoid") for w, b in zip(doc["weights"], doc["biases"])]
    copy = Network(layers, dtype="float64")
    X = rng.standard_normal((6, 3))
    np.testing.assert_array_equal(copy.predict(X), net.predict(X))


def test_a_square_matrix_is_taken_as_given(rng):
    """The layout cannot be checked on a square matrix: rows given as W make another network."""
    rows = rng.standard_normal((2, 2))
    x = rng.standard_normal(2)
    right = Network([Dense.from_neurons(rows, None)], dtype="float64")
    wrong = Network([Dense(2, 2)], dtype="float64")
    wrong.layers[0].W = rows
    np.testing.assert_allclose(right.predict(x), rows @ x, rtol=1e-12)
    assert not np.allclose(wrong.predict(x), rows @ x)


@pytest.mark.parametrize("weights, biases, error, match", [
    ([1.0, 2.0], None, ValueError, "2-D"),
    ([[1.0, 2.0]], [1.0, 2.0], ValueError, r"biases must have shape \(1,\)"),
    ([["a", "b"]], None, TypeError, "numbers"),
    ([[np.nan, 1.0]], None, ValueError, "NaN"),
])
def test_from_neurons_refuses_bad_input(weights, biases, error, match):
    with pytest.raises(error, match=match):
        Dense.from_neurons(weights, biases)


def test_from_neurons_accepts_one_element_bias_rows():
    layer = Dense.from_neurons([[1.0, 2.0], [3.0, 4.0]], [[0.5], [0.25]])
    np.testing.assert_array_equal(layer.b, [0.5, 0.25])
    assert fastnn.Dense.from_neurons([[1.0]]).b.tolist() == [0.0]
