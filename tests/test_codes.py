"""The codes shared by Python and the compiled core come from one source and agree.

``fastnn/_codes.py`` is the only place the activation, loss, output, layer-kind
and optimizer codes are written; setup.py generates the core's C enums from it.
These tests check that the extension actually compiled those values (a stale
build, or a hand-edited ``_codes.pxi``, would disagree), that no two names of
one group share a code, and that the Python registries keyed by those names
(the layer classes, the activations a Dense layer accepts) cover exactly them.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import RTOL, assert_close

from fastnn import _codes
from fastnn._codes import ACTIVATIONS, LAYER_KINDS, LOSSES, OPTIMIZERS, OUTPUTS
from fastnn.layers import LAYER_ACTIVATIONS, LAYER_CLASSES, Dense
from fastnn.network import Network

CODE_DICTS = {"ACTIVATIONS": ACTIVATIONS, "LOSSES": LOSSES, "OUTPUTS": OUTPUTS,
              "LAYER_KINDS": LAYER_KINDS, "OPTIMIZERS": OPTIMIZERS}


def test_compiled_codes_equal_the_python_source():
    from fastnn._core._kernels import compiled_codes

    compiled = compiled_codes()
    expected = _codes.c_names()
    # Names and values, both ways: a code missing from the build, one the build
    # has that Python lost, or one whose value differs all fail here.
    assert compiled == expected
    assert all(type(v) is int for v in compiled.values())


def test_c_names_cover_every_code_once():
    """Every code of every group has its own C name: none collide, none are left out."""
    assert [codes for _, codes in _codes.GROUPS] == list(CODE_DICTS.values()), \
        "a code group is missing from GROUPS, so the core would never see it"
    names = _codes.c_names()
    # Activations and losses share the empty prefix: a loss named like an
    # activation would silently overwrite its enum and lose a code here.
    assert len(names) == sum(len(codes) for codes in CODE_DICTS.values())
    for prefix, codes in _codes.GROUPS:
        for name, value in codes.items():
            assert names[prefix + name.upper()] == value


@pytest.mark.parametrize("group", sorted(CODE_DICTS))
def test_codes_of_a_group_are_unique(group):
    codes = CODE_DICTS[group]
    assert codes, f"{group} is empty"
    values = list(codes.values())
    assert len(set(values)) == len(values), f"{group} gives one code to two names: {codes}"
    assert all(type(v) is int and v >= 0 for v in values)
    assert all(isinstance(k, str) and k == k.lower() for k in codes)


def test_layer_classes_are_the_layer_kinds():
    assert set(LAYER_CLASSES) == set(LAYER_KINDS)
    for kind, cls in LAYER_CLASSES.items():
        assert cls.kind == kind


def test_dense_accepts_exactly_the_activation_codes_and_softmax():
    assert set(LAYER_ACTIVATIONS) == set(ACTIVATIONS) | {"softmax"}
    assert len(LAYER_ACTIVATIONS) == len(set(LAYER_ACTIVATIONS))
    for name in LAYER_ACTIVATIONS:
        assert Dense(3, 2, name).activation == name
    assert Dense(3, 2, None).activation == "identity"
    for bad in ("Relu", "RELU", "", " relu", "soft_max", "not_an_activation"):
        with pytest.raises(ValueError, match="unknown activation"):
            Dense(3, 2, bad)


# ---------------------------------------------------------------- every code reaches the core


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_activation_trains_on_the_compiled_core(activation, rng):
    """A code added to ACTIVATIONS must be accepted by the compiled loop (its range checks)
    and compute what the NumPy backend computes."""
    X = rng.standard_normal((40, 3))
    y = rng.standard_normal((40, 2))
    weights = {}
    for backend in ("compiled", "numpy"):
        net = Network([Dense(3, 5, activation), Dense(5, 2, activation)], loss="mse",
                      dtype="float64", seed=0, backend=backend)
        net.fit(X, y, epochs=2, batch_size=8)
        weights[backend] = [p.copy() for p in net._params()] + [net.predict(X)]
    for got, want in zip(weights["compiled"], weights["numpy"]):
        assert_close(got, want, np.float64, rtol=RTOL[np.dtype(np.float64)] * 10)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss_and_output_runs_on_the_compiled_core(loss, rng):
    X = rng.standard_normal((40, 3))
    if loss == "softmax_cross_entropy":
        y = rng.integers(0, 3, 40)
    elif loss == "binary_cross_entropy":
        y = (rng.uniform(size=(40, 3)) < 0.5).astype(float)
    elif loss == "poisson":
        y = rng.poisson(2.0, (40, 3)).astype(float)  # predict() takes the OUT_EXP path
    else:
        y = rng.standard_normal((40, 3))
    results = {}
    for backend in ("compiled", "numpy"):
        net = Network.mlp([3, 4, 3], activation="tanh", loss=loss, dtype="float64", seed=0,
                          backend=backend)
        history = net.fit(X, y, epochs=2, batch_size=8)
        out = [np.asarray(history.loss), net.predict(X), net.evaluate(X, y)["loss"]]
        if loss not in ("mse", "poisson"):
            out.append(net.predict_proba(X))  # OUT_SOFTMAX / OUT_SIGMOID
        results[backend] = out + [p.copy() for p in net._params()]
    for got, want in zip(results["compiled"], results["numpy"]):
        assert_close(got, want, np.float64, rtol=RTOL[np.dtype(np.float64)] * 10)
