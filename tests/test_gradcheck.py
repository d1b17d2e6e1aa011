"""Central-difference gradient checks of ``Network.loss_and_grads`` in float64.

Every activation, every loss (softmax cross-entropy with labels and with
one-hot rows, the Poisson deviance with its exp link), depths 1 to 3, on both backends; plus the fused output
activations of the cross-entropies.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastnn import Dense, Network

ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu"]
# softmax_soft: non-negative target rows that are not one-hot and do not sum to 1.
LOSSES = ["mse", "binary_cross_entropy", "softmax_labels", "softmax_onehot", "softmax_soft",
          "poisson"]
EPS = 1e-6
N_SAMPLES = 5


def _loss_name(case: str) -> str:
    return "softmax_cross_entropy" if case.startswith("softmax") else case


def _make_problem(seed: int, activation: str, case: str, depth: int, backend: str):
    rng = np.random.default_rng(seed)
    sizes = [3, 4, 5, 3][:depth] + [3]
    acts = [activation] * depth
    if case.startswith("softmax") and activation == "sigmoid":
        acts[-1] = "identity"  # a sigmoid output is refused with softmax cross-entropy
    layers = [Dense(a, b, act) for a, b, act in zip(sizes[:-1], sizes[1:], acts)]
    net = Network(layers, loss=_loss_name(case), dtype="float64", seed=seed, backend=backend)
    for layer in net.layers:
        # Non-zero biases, so that db and the bias path are exercised.
        layer.b = rng.normal(0, 0.5, layer.n_out)
    X = rng.standard_normal((N_SAMPLES, sizes[0]))
    if case == "mse":
        y = rng.standard_normal((N_SAMPLES, sizes[-1]))
    elif case == "binary_cross_entropy":
        y = rng.uniform(0, 1, (N_SAMPLES, sizes[-1]))
    elif case == "poisson":
        y = rng.poisson(1.5, (N_SAMPLES, sizes[-1])).astype(np.float64)  # counts, zeros too
    elif case == "softmax_soft":
        y = rng.uniform(0, 1, (N_SAMPLES, sizes[-1]))
    else:
        labels = rng.integers(0, sizes[-1], N_SAMPLES)
        y = labels if case == "softmax_labels" else np.eye(sizes[-1])[labels]
    return net, X, y


def _pre_activations(net: Network, X: np.ndarray) -> list[np.ndarray]:
    out, h = [], X
    for layer in net.layers:
        z = h @ layer.W + layer.b
        out.append(z)
        h = {"identity": z, "relu": np.maximum(z, 0), "tanh": np.tanh(z),
             "sigmoid": 1 / (1 + np.exp(-z)), "softmax": z}[layer.activation]
    return out


def _away_from_kinks(net: Network, X: np.ndarray) -> bool:
    """True when no ReLU pre-activation is within reach of a perturbation of EPS."""
    if not any(layer.activation == "relu" for layer in net.layers):
        return True
    # A parameter step of EPS moves a pre-activation by at most about EPS * (1 + |input|)
    # times the sizes of the later weights; 1e3 * EPS leaves a wide margin.
    return all(np.abs(z).min() > 1e3 * EPS for z in _pre_activations(net, X))


def _numerical_grads(net: Network, X, y):
    grads = []
    for layer in net.layers:
        pair = []
        for name in ("W", "b"):
            param = getattr(layer, name)
            g = np.zeros_like(param)
            for idx in np.ndindex(param.shape):
                orig = param[idx]
                param[idx] = orig + EPS
                up, _ = net.loss_and_grads(X, y)
                param[idx] = orig - EPS
                down, _ = net.loss_and_grads(X, y)
                param[idx] = orig
                g[idx] = (up - down) / (2 * EPS)
            pair.append(g)
        grads.append(tuple(pair))
    return grads


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("case", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_match_central_differences(activation, case, depth, backend):
    for seed in range(50):
        net, X, y = _make_problem(seed, activation, case, depth, backend)
        if _away_from_kinks(net, X):
            break
    else:
        pytest.fail("no seed kept every ReLU pre-activation away from 0")
    loss, grads = net.loss_and_grads(X, y)
    assert isinstance(loss, float) and np.isfinite(loss)
    assert len(grads) == depth
    numerical = _numerical_grads(net, X, y)
    for layer, (dW, db), (nW, nb) in zip(net.layers, grads, numerical):
        assert dW.shape == layer.W.shape and db.shape == layer.b.shape
        assert dW.dtype == np.float64 and db.dtype == np.float64
        np.testing.assert_allclose(dW, nW, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(db, nb, rtol=1e-5, atol=1e-8)
    # The gradient is not trivially zero (the check could not pass vacuously).
    assert max(np.abs(g).max() for pair in grads for g in pair) > 1e-4


def test_loss_and_grads_does_not_change_the_weights(backend):
    net, X, y = _make_problem(0, "tanh", "mse", 2, backend)
    before = [layer.W.copy() for layer in net.layers]
    net.loss_and_grads(X, y)
    for layer, W in zip(net.layers, before):
        np.testing.assert_array_equal(layer.W, W)


def test_backends_give_the_same_gradients():
    results = []
    for backend in ("compiled", "numpy"):
        net, X, y = _make_problem(3, "sigmoid", "softmax_labels", 3, backend)
        results.append(net.loss_and_grads(X, y))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12)
    for (a, b), (c, d) in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(b, d, rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------- fused output activations


def _twin_nets(last: str, loss: str, backend: str, n_out: int):
    """Two networks with equal weights, one ending in ``last`` and one in "identity"."""
    rng = np.random.default_rng(7)
    W1, b1 = rng.standard_normal((4, 6)), rng.standard_normal(6)
    W2, b2 = rng.standard_normal((6, n_out)) * 2, rng.standard_normal(n_out)
    nets = []
    for act in (last, "identity"):
        net = Network([Dense(4, 6, "tanh"), Dense(6, n_out, act)], loss=loss,
                      dtype="float64", seed=0, backend=backend)
        net.layers[0].W, net.layers[0].b = W1, b1
        net.layers[1].W, net.layers[1].b = W2, b2
        nets.append(net)
    X = rng.standard_normal((9, 4))
    logits = np.tanh(X @ W1 + b1) @ W2 + b2
    return nets, X, logits, rng


def test_sigmoid_output_is_fused_into_binary_cross_entropy(backend):
    (fused, plain), X, logits, rng = _twin_nets("sigmoid", "binary_cross_entropy", backend, 2)
    y = rng.uniform(0, 1, (9, 2))
    p = 1 / (1 + np.exp(-logits))
    expected = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()
    for net in (fused, plain):
        loss, grads = net.loss_and_grads(X, y)
        np.testing.assert_allclose(loss, expected, rtol=1e-10)
        np.testing.assert_allclose(net.evaluate(X, y)["loss"], expected, rtol=1e-10)
        np.testing.assert_allclose(net.predict_proba(X), p, rtol=1e-10)  # sigmoid once
    for a, b in zip(fused.loss_and_grads(X, y)[1], plain.loss_and_grads(X, y)[1]):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_softmax_output_is_fused_into_softmax_cross_entropy(backend):
    (fused, plain), X, logits, rng = _twin_nets("softmax", "softmax_cross_entropy", backend, 3)
    labels = rng.integers(0, 3, 9)
    shifted = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    expected = -np.log(p[np.arange(9), labels]).mean()
    for net in (fused, plain):
        for y in (labels, np.eye(3)[labels]):
            loss, _ = net.loss_and_grads(X, y)
            np.testing.assert_allclose(loss, expected, rtol=1e-10)
            np.testing.assert_allclose(net.evaluate(X, y)["loss"], expected, rtol=1e-10)
        np.testing.assert_allclose(net.predict_proba(X), p, rtol=1e-10)  # softmax once
        np.testing.assert_array_equal(net.predict(X), p.argmax(axis=1))


@pytest.mark.parametrize("last,loss", [
    ("softmax", "mse"),
    ("softmax", "binary_cross_entropy"),
    ("sigmoid", "softmax_cross_entropy"),
])
def test_invalid_output_activation_and_loss_combinations(last, loss, backend):
    with pytest.raises(ValueError, match="softmax|sigmoid"):
        Network([Dense(3, 4, "tanh"), Dense(4, 2, last)], loss=loss, backend=backend)


def test_softmax_on_a_hidden_layer_is_refused():
    with pytest.raises(ValueError, match="softmax"):
        Network([Dense(3, 4, "softmax"), Dense(4, 2)], loss="softmax_cross_entropy")
    with pytest.raises(ValueError, match="softmax"):
        Network.mlp([3, 4, 2], activation="softmax", loss="softmax_cross_entropy")


def test_sigmoid_output_with_mse_is_applied():
    # Without a cross-entropy nothing is fused: the sigmoid is the network's output.
    net = Network([Dense(2, 1, "sigmoid")], loss="mse", dtype="float64")
    net.layers[0].W = [[1.0], [-2.0]]
    net.layers[0].b = [0.5]
    X = np.array([[1.0, 1.0], [0.0, 3.0]])
    z = X @ np.array([1.0, -2.0]) + 0.5
    np.testing.assert_allclose(net.predict(X)[:, 0], 1 / (1 + np.exp(-z)), rtol=1e-14)


def test_poisson_loss_is_the_half_deviance_of_the_exp_output(backend):
    """The fused exp link: predict returns exp(z); loss_and_grads is scikit-learn's value."""
    rng = np.random.default_rng(5)
    net = Network([Dense(4, 6, "tanh"), Dense(6, 2)], loss="poisson", dtype="float64",
                  seed=0, backend=backend)
    X = rng.standard_normal((9, 4))
    z = np.tanh(X @ net.layers[0].W + net.layers[0].b) @ net.layers[1].W + net.layers[1].b
    y = rng.poisson(np.exp(z)).astype(np.float64)
    mu = np.exp(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        ylogy = np.where(y > 0, y * np.log(y / mu), 0.0)
    expected = (ylogy - y + mu).mean()
    np.testing.assert_allclose(net.predict(X), mu, rtol=1e-12)
    np.testing.assert_allclose(net.loss_and_grads(X, y)[0], expected, rtol=1e-10)
    np.testing.assert_allclose(net.evaluate(X, y)["loss"], expected, rtol=1e-10)
    with pytest.raises(ValueError, match="non-negative"):
        net.loss_and_grads(X, -y - 1)
