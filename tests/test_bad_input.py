"""Bad input gives a clear ValueError or TypeError naming the argument; odd but
valid input (integers, float16, bool, non-contiguous, Fortran order) is converted
and gives the same result as a clean float array; the compiled ops refuse
mismatched shapes instead of crashing the interpreter."""

from __future__ import annotations

import sys
import types
import warnings

import numpy as np
import pytest

from conftest import report_cases, run_cases_in_child, weights_of

from fastnn import SGD, Adam, Dense, Network


@pytest.fixture
def clf(backend):
    return Network.mlp([4, 5, 3], activation="tanh", loss="softmax_cross_entropy", seed=0,
                       backend=backend)


@pytest.fixture
def data(rng):
    return rng.standard_normal((10, 4)), rng.integers(0, 3, 10)


# ---------------------------------------------------------------- X and y


@pytest.mark.parametrize("method", ["fit", "predict", "predict_proba", "evaluate"])
@pytest.mark.parametrize("X,error,match", [
    (np.ones((2, 5, 4)), ValueError, r"X must be 2-D"),
    (np.float64(3.0), ValueError, r"X must be 2-D"),
    (np.ones((10, 3)), ValueError, r"X has 3 features.*first layer takes 4"),
    (np.ones((10, 7)), ValueError, r"X has 7 features"),
    (np.ones((0, 4)), ValueError, r"X is empty"),
    (np.full((10, 4), np.nan), ValueError, r"X contains NaN"),
    (np.full((10, 4), np.inf), ValueError, r"X contains NaN or inf"),
    (np.full((10, 4), -np.inf), ValueError, r"X contains NaN or inf"),
    (np.full((10, 4), 1e300), ValueError, r"X holds values beyond the range of float32"),
    (np.full((10, 4), "a"), TypeError, r"X must hold numbers"),
    (np.full((10, 4), None, dtype=object), TypeError, r"X must hold numbers"),
    (np.ones((10, 4), dtype=complex), TypeError, r"X must hold numbers"),
    (None, TypeError, r"X"),
], ids=["3d", "0d", "3_features", "7_features", "empty", "nan", "inf", "-inf", "overflow",
        "strings", "objects", "complex", "None"])
def test_bad_X(method, X, error, match, clf):
    n = np.shape(X)[0] if np.ndim(X) >= 1 else 1
    y = np.zeros(n, dtype=int)
    call = {"fit": lambda: clf.fit(X, y), "predict": lambda: clf.predict(X),
            "predict_proba": lambda: clf.predict_proba(X),
            "evaluate": lambda: clf.evaluate(X, y)}[method]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no RuntimeWarning on the way
        with pytest.raises(error, match=match):
            call()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["first", "last", "single_sample"])
def test_non_finite_X_in_the_network_dtype_is_refused(bad, where, backend, dtype, rng):
    # X already C-contiguous in the network's dtype takes the no-copy path.
    net = Network.mlp([4, 5, 3], loss="softmax_cross_entropy", dtype=dtype, backend=backend)
    X = rng.standard_normal((2000, 4)).astype(dtype)  # more than one inference chunk
    y = np.zeros(len(X), dtype=int)
    if where == "single_sample":
        X = X[0].copy()
        X[2] = bad
        calls = [lambda: net.predict(X), lambda: net.predict_proba(X)]
    else:
        X[0 if where == "first" else -1, 1] = bad
        calls = [lambda: net.predict(X), lambda: net.predict_proba(X),
                 lambda: net.evaluate(X, y), lambda: net.fit(X, y)]
    for call in calls:
        with pytest.raises(ValueError, match="X contains NaN or inf"):
            call()


def test_ragged_X_is_refused_naming_X(clf):
    with pytest.raises((ValueError, TypeError), match=r"\bX\b"):
        clf.fit([[1, 2, 3, 4], [1, 2]], [0, 1])
    with pytest.raises((ValueError, TypeError), match=r"\bX\b"):
        clf.predict([[1, 2, 3, 4], [1, 2]])


@pytest.mark.parametrize("method", ["fit", "evaluate"])
@pytest.mark.parametrize("y,error,match", [
    (np.full(10, -1), ValueError, r"y contains label -1, outside \[0, 3\)"),
    (np.full(10, 3), ValueError, r"y contains label 3, outside \[0, 3\)"),
    (np.r_[np.zeros(9), 1e9], ValueError, r"y contains label"),
    (np.full(10, 0.5), ValueError, r"y holds non-integer"),
    (np.r_[np.zeros(9), np.nan], ValueError, r"y contains NaN"),
    (np.r_[np.zeros(9), np.inf], ValueError, r"y contains NaN or inf"),
    (np.zeros(9, dtype=int), ValueError, r"y has 9 samples, X has 10"),
    (np.zeros(11, dtype=int), ValueError, r"y has 11 samples, X has 10"),
    (np.zeros((10, 2)), ValueError, r"y has 2 columns.*3 outputs"),
    (np.zeros((10, 3, 1)), ValueError, r"y must be 2-D"),
    (-np.eye(3)[np.zeros(10, dtype=int)], ValueError, r"non-negative"),
    (np.full(10, "a"), TypeError, r"y must hold numbers"),
    (np.full(10, None, dtype=object), TypeError, r"y must hold numbers"),
], ids=["label_-1", "label_3", "label_huge", "non_integer", "nan", "inf", "short", "long",
        "columns", "3d", "negative_rows", "strings", "objects"])
def test_bad_labels(method, y, error, match, clf, data):
    X, _ = data
    with pytest.raises(error, match=match):
        getattr(clf, method)(X, y)


@pytest.mark.parametrize("y,match", [
    (np.full(10, 2.0), r"\[0, 1\]"),
    (np.full(10, -0.5), r"\[0, 1\]"),
    (np.r_[np.zeros(9), np.nan], r"y contains NaN"),
    (np.zeros((10, 2)), r"y has 2 columns"),
    (np.zeros(9), r"y has 9 samples"),
])
def test_bad_binary_targets(y, match, backend, data):
    X, _ = data
    net = Network.mlp([4, 1], loss="binary_cross_entropy", backend=backend)
    with pytest.raises(ValueError, match=match):
        net.fit(X, y)


@pytest.mark.parametrize("y,match", [
    (np.zeros(10), r"y must be 2-D \(n_samples, 2\)"),
    (np.zeros((10, 3)), r"y has 3 columns"),
    (np.full((10, 2), np.inf), r"y contains NaN or inf"),
    (np.full((10, 2), 1e300), r"y holds values beyond the range of float32"),
])
def test_bad_regression_targets(y, match, backend, data):
    X, _ = data
    net = Network.mlp([4, 2], loss="mse", backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=match):
            net.fit(X, y)


def test_bad_validation_data(clf, data):
    X, y = data
    with pytest.raises(TypeError, match="validation_data"):
        clf.fit(X, y, validation_data=X)
    with pytest.raises(TypeError, match="validation_data"):
        clf.fit(X, y, validation_data=(X, y, y))
    with pytest.raises(ValueError, match=r"\bX\b.*features"):
        clf.fit(X, y, validation_data=(X[:, :3], y))
    with pytest.raises(ValueError, match=r"\by\b.*label"):
        clf.fit(X, y, validation_data=(X, y + 3))


# ---------------------------------------------------------------- constructor arguments


CONSTRUCTOR_CASES = {
    "activation_unknown": (lambda: Dense(2, 3, "gelu"), ValueError, r"unknown activation 'gelu'"),
    "activation_int": (lambda: Dense(2, 3, 7), ValueError, r"activation"),
    "n_in_0": (lambda: Dense(0, 3), ValueError, r"n_in"),
    "n_out_negative": (lambda: Dense(2, -1), ValueError, r"n_out"),
    "n_in_float": (lambda: Dense(2.0, 3), TypeError, r"n_in"),
    "loss_unknown": (lambda: Network.mlp([2, 3], loss="hinge"), ValueError,
                     r"unknown loss 'hinge'"),
    "backend_unknown": (lambda: Network.mlp([2, 3], backend="cuda"), ValueError,
                        r"unknown backend 'cuda'"),
    "backend_none": (lambda: Network.mlp([2, 3], backend=None), ValueError, r"backend"),
    "dtype_int32": (lambda: Network.mlp([2, 3], dtype="int32"), TypeError, r"dtype"),
    "dtype_float16": (lambda: Network.mlp([2, 3], dtype="float16"), TypeError, r"dtype"),
    "dtype_unknown": (lambda: Network.mlp([2, 3], dtype="foo"), TypeError, r"dtype"),
    "sgd_lr_0": (lambda: SGD(lr=0), ValueError, r"\blr\b"),
    "sgd_lr_negative": (lambda: SGD(lr=-0.1), ValueError, r"\blr\b"),
    "sgd_lr_nan": (lambda: SGD(lr=float("nan")), ValueError, r"\blr\b"),
    "sgd_lr_inf": (lambda: SGD(lr=float("inf")), ValueError, r"\blr\b"),
    "sgd_lr_str": (lambda: SGD(lr="0.1"), TypeError, r"\blr\b"),
    "sgd_lr_none": (lambda: SGD(lr=None), TypeError, r"\blr\b"),
    "momentum_1": (lambda: SGD(momentum=1.0), ValueError, r"momentum"),
    "momentum_negative": (lambda: SGD(momentum=-0.1), ValueError, r"momentum"),
    "nesterov_no_momentum": (lambda: SGD(nesterov=True), ValueError, r"nesterov"),
    "weight_decay_negative": (lambda: SGD(weight_decay=-1), ValueError, r"weight_decay"),
    "adam_lr_0": (lambda: Adam(lr=0), ValueError, r"\blr\b"),
    "adam_lr_nan": (lambda: Adam(lr=float("nan")), ValueError, r"\blr\b"),
    "betas_one": (lambda: Adam(betas=(0.9,)), TypeError, r"betas"),
    "betas_range": (lambda: Adam(betas=(1.0, 0.9)), ValueError, r"betas"),
    "eps_0": (lambda: Adam(eps=0), ValueError, r"eps"),
}


@pytest.mark.parametrize("case", list(CONSTRUCTOR_CASES))
def test_bad_constructor_arguments(case):
    make, error, match = CONSTRUCTOR_CASES[case]
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(epochs=0), ValueError, r"epochs"),
    (dict(epochs=-3), ValueError, r"epochs"),
    (dict(epochs=1.5), TypeError, r"epochs"),
    (dict(epochs="3"), TypeError, r"epochs"),
    (dict(epochs=True), TypeError, r"epochs"),
    (dict(epochs=None), TypeError, r"epochs"),
    (dict(batch_size=0), ValueError, r"batch_size"),
    (dict(batch_size=-1), ValueError, r"batch_size"),
    (dict(batch_size=2.5), TypeError, r"batch_size"),
    (dict(batch_size="8"), TypeError, r"batch_size"),
    (dict(optimizer="rmsprop"), (TypeError, ValueError), r"optimizer"),
    (dict(optimizer=object()), TypeError, r"optimizer"),
    (dict(input_scale=0), ValueError, r"input_scale"),
    (dict(input_scale=float("nan")), ValueError, r"input_scale"),
    (dict(verbose="yes"), TypeError, r"verbose"),
], ids=lambda v: "-".join(f"{k}={v[k]!r}" for k in v) if isinstance(v, dict) else "")
def test_bad_fit_arguments(kwargs, error, match, clf, data):
    X, y = data
    before = [w.copy() for w in weights_of(clf)]
    with pytest.raises(error, match=match):
        clf.fit(X, y, **kwargs)
    for w, w0 in zip(weights_of(clf), before):  # nothing was trained
        np.testing.assert_array_equal(w, w0)


# ---------------------------------------------------------------- conversions


def _read_only(a):
    a = np.array(a)  # e.g. np.load(..., mmap_mode="r")
    a.setflags(write=False)
    return a


def _fit_predict(X, y, backend, dtype="float32", loss="softmax_cross_entropy", n_out=3):
    net = Network.mlp([4, 5, n_out], activation="tanh", loss=loss, dtype=dtype, seed=0,
                      backend=backend)
    net.fit(X, y, epochs=2, batch_size=3, optimizer=SGD(lr=0.1, momentum=0.5))
    return weights_of(net), net.predict(X), (net.predict_proba(X) if loss != "mse" else None)


def _assert_same(a, b):
    for wa, wb in zip(a[0], b[0]):
        np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(a[1], b[1])
    if a[2] is not None:
        np.testing.assert_array_equal(a[2], b[2])


@pytest.mark.parametrize("convert", [
    lambda X: X.astype(np.int64),
    lambda X: X.astype(np.int8),
    lambda X: X.astype(np.uint8),
    lambda X: X.astype(np.uint16),
    lambda X: X.astype(np.float16),
    lambda X: X.astype(np.float64),
    lambda X: X.astype(bool),
    lambda X: X.tolist(),
    lambda X: np.asfortranarray(X),
    lambda X: np.repeat(X, 2, axis=0)[::2],
    lambda X: np.ascontiguousarray(X.T).T,
    lambda X: np.repeat(X, 3, axis=1)[:, ::3],
    lambda X: _read_only(X),
    lambda X: _read_only(X.astype(np.uint8)),
], ids=["int64", "int8", "uint8", "uint16", "float16", "float64", "bool", "list", "fortran",
        "row_strided", "transposed", "column_strided", "read_only", "read_only_uint8"])
@pytest.mark.filterwarnings("ignore:X is uint8")  # small integers, converted on purpose
def test_X_conversions_give_the_clean_result(convert, backend, rng):
    # Small integers, exactly representable in every dtype above (bool: 0 and 1).
    X = rng.integers(0, 6, (13, 4)).astype(np.float32)
    y = rng.integers(0, 3, 13)
    converted = convert(X)
    clean = np.asarray(converted, dtype=np.float32).copy()  # what the network should see
    _assert_same(_fit_predict(converted, y, backend), _fit_predict(clean, y, backend))
    if not isinstance(converted, list):
        assert not np.shares_memory(clean, converted)


@pytest.mark.parametrize("convert", [
    lambda y: y.astype(np.int32), lambda y: y.astype(np.uint8), lambda y: y.astype(float),
    lambda y: y.tolist(), lambda y: y[:, None], lambda y: np.repeat(y, 2)[::2],
    lambda y: _read_only(y),
], ids=["int32", "uint8", "float", "list", "column", "strided", "read_only"])
def test_label_conversions_give_the_clean_result(convert, backend, rng):
    X = rng.standard_normal((13, 4))
    y = rng.integers(0, 3, 13)
    _assert_same(_fit_predict(X, convert(y), backend), _fit_predict(X, y, backend))


def test_regression_target_conversions(backend, rng):
    X = rng.standard_normal((13, 4))
    y = rng.integers(-3, 3, (13, 2))
    for conv in (y, y.tolist(), np.asfortranarray(y), y.astype(np.float16), y[:, ::-1][:, ::-1],
                 y.astype(bool)):
        clean = np.array(conv, dtype=np.float32)
        _assert_same(_fit_predict(X, conv, backend, loss="mse", n_out=2),
                     _fit_predict(X, clean, backend, loss="mse", n_out=2))


def test_float64_input_to_a_float32_network_is_rounded_once(backend, rng):
    X = rng.standard_normal((13, 4))
    y = rng.integers(0, 3, 13)
    _assert_same(_fit_predict(X, y, backend), _fit_predict(X.astype(np.float32), y, backend))


def test_input_is_never_modified(backend, rng):
    X = rng.standard_normal((13, 4)).astype(np.float32)
    y = rng.integers(0, 3, 13)
    X0, y0 = X.copy(), y.copy()
    _fit_predict(X, y, backend)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


# ---------------------------------------------------------------- compiled ops, shape mismatches

_CASES_FLAG = "--run-compiled-op-cases"


def _compiled_op_cases():
    """Calls of the compiled ops (and kernels) with shapes that do not fit."""
    from fastnn._core import _kernels, _train
    from fastnn.ops import CompiledOps

    C = CompiledOps()
    f = np.float32
    z = np.zeros

    P2 = [z((4, 3)), z(3), z((3, 2)), z(2)]  # a 4-3-2 network's parameters, flat

    def fwd(X, out=None, kinds=(0, 0), acts=(3, 0), geometry=((4, 3), (3, 2)), params=None,
            chunk=1024, output=0):
        out = z((X.shape[0], 2)) if out is None else out
        return _train.forward_chunks(X, out, list(kinds), list(acts),
                                     [list(g) for g in geometry],
                                     list(P2 if params is None else params), 1.0, chunk, output)

    def layers2():
        layers = [Dense(4, 3, "relu"), Dense(3, 2)]
        for layer, shape in zip(layers, [(4,), (3,)]):
            layer.initialize(np.random.default_rng(0), np.float64)
            layer.build(shape)
        return layers

    def workspace(state=None, **fields):
        # A plan as the network would make it, with one field replaced.
        optimizer = fields.pop("optimizer", SGD(lr=0.1, momentum=0.9))
        optimizer.prepare(P2)
        if state is not None:
            optimizer.state = state
        plan = dict(dtype="float64", kinds=[0, 0], acts=[3, 0], geometry=[[4, 3], [3, 2]],
                    params=list(P2), grads=[z((4, 3)), z(3), z((3, 2)), z(2)],
                    A=[z((2, 3)), z((2, 2))], D=[z((2, 3)), z((2, 2))], optimizer=optimizer,
                    batch_size=2, loss_code=2, X=z((5, 4)), Xb=z((2, 4)), x_scale=1.0,
                    use_labels=True, y=np.zeros(5, np.intp), labels_b=np.zeros(2, np.intp),
                    targets_b=z((2, 2)), sample_weight=None, weights_b=z(2))
        plan.update(fields)
        plan["use_labels"] = plan["y"].ndim == 1
        return _train.Workspace(types.SimpleNamespace(**plan))

    order5 = np.arange(5, dtype=np.intp)
    return {
        "dense_forward_W_rows": lambda: C.dense_forward(z((3, 4)), z((5, 2)), z(2), "relu"),
        "dense_forward_b_size": lambda: C.dense_forward(z((3, 4)), z((4, 2)), z(3), "relu"),
        "dense_forward_X_1d": lambda: C.dense_forward(z(4), z((4, 2)), z(2), "relu"),
        "dense_forward_empty_X": lambda: C.dense_forward(z((0, 4)), z((4, 2)), z(2), "relu"),
        "dense_backward_Y_shape": lambda: C.dense_backward(z((3, 4)), z((4, 2)), z((3, 3)),
                                                           z((3, 2)), "tanh"),
        "dense_backward_dY_shape": lambda: C.dense_backward(z((3, 4)), z((4, 2)), z((3, 2)),
                                                            z((2, 2)), "tanh"),
        "dense_backward_W_rows": lambda: C.dense_backward(z((3, 4)), z((5, 2)), z((3, 2)),
                                                          z((3, 2)), "tanh", need_dX=False),
        "backprop_shape": lambda: C.backprop_sigmoid(z((3, 2)), z((2, 3))),
        "softmax_1d": lambda: C.softmax(z(4)),
        "softmax_empty": lambda: C.softmax(z((0, 3))),
        "xent_labels_length": lambda: C.softmax_cross_entropy(z((4, 3)), np.zeros(5, int)),
        "xent_label_high": lambda: C.softmax_cross_entropy(z((4, 3)), np.array([0, 1, 2, 3])),
        "xent_label_negative": lambda: C.softmax_cross_entropy(z((4, 3)), np.array([0, -1, 2, 0])),
        "xent_targets_shape": lambda: C.softmax_cross_entropy(z((4, 3)), z((4, 2))),
        "xent_logits_1d": lambda: C.softmax_cross_entropy(z(4), np.zeros(4, int)),
        "xent_empty": lambda: C.softmax_cross_entropy(z((0, 3)), np.zeros(0, int)),
        "bce_shape": lambda: C.sigmoid_binary_cross_entropy(z((4, 3)), z((3, 4))),
        "bce_empty": lambda: C.sigmoid_binary_cross_entropy(z((0, 3)), z((0, 3))),
        "mse_shape": lambda: C.mean_squared_error(z((4, 1)), z((5, 1))),
        "sgd_grad_size": lambda: C.sgd_update(z(5), z(4), None, 0.1),
        "sgd_velocity_size": lambda: C.sgd_update(z(5), z(5), z(4), 0.1, momentum=0.9),
        "sgd_velocity_missing": lambda: C.sgd_update(z(5), z(5), None, 0.1, momentum=0.9),
        "sgd_param_strided": lambda: C.sgd_update(z(10)[::2], z(5), None, 0.1),
        "sgd_param_int": lambda: C.sgd_update(np.zeros(5, int), z(5), None, 0.1),
        "sgd_param_readonly": lambda: C.sgd_update(np.broadcast_to(z(1), (5,)), z(5), None, 0.1),
        "adam_m_shape": lambda: C.adam_update(z(5), z(5), z(4), z(5), 1, 0.1),
        "adam_v_dtype": lambda: C.adam_update(z(5), z(5), z(5), z(5, f), 1, 0.1),
        "adam_step_0": lambda: C.adam_update(z(5), z(5), z(5), z(5), 0, 0.1),
        # The engine's own entry points, given lists that contradict each other.
        "forward_features": lambda: fwd(z((6, 5))),
        "forward_chain": lambda: fwd(z((6, 4)), geometry=[[4, 3], [2, 2]],
                                     params=[z((4, 3)), z(3), z((2, 2)), z(2)]),
        "forward_b_size": lambda: fwd(z((6, 4)), params=[z((4, 3)), z(5), z((3, 2)), z(2)]),
        "forward_W_size": lambda: fwd(z((6, 4)), params=[z((4, 2)), z(3), z((3, 2)), z(2)]),
        "forward_mixed_dtypes": lambda: fwd(z((6, 4)), params=[z((4, 3), f), z(3), z((3, 2)),
                                                               z(2)]),
        "forward_acts_length": lambda: fwd(z((6, 4)), acts=[3]),
        "forward_too_few_params": lambda: fwd(z((6, 4)), params=P2[:3]),
        "forward_too_many_params": lambda: fwd(z((6, 4)), params=P2 + [z(2)]),
        "forward_geometry_short": lambda: fwd(z((6, 4)), geometry=[[4], [3, 2]]),
        "forward_geometry_zero": lambda: fwd(z((6, 4)), geometry=[[4, 0], [0, 2]]),
        "forward_geometry_long": lambda: fwd(z((6, 4)), geometry=[[4, 3] + [1] * 20, [3, 2]]),
        "forward_kind_unknown": lambda: fwd(z((6, 4)), kinds=[0, 99]),
        "forward_act_unknown": lambda: fwd(z((6, 4)), acts=[3, 17]),
        "forward_param_not_array": lambda: fwd(z((6, 4)), params=[[0.0] * 12, z(3), z((3, 2)),
                                                                  z(2)]),
        "forward_out_shape": lambda: fwd(z((6, 4)), out=z((6, 3))),
        "forward_chunk_0": lambda: fwd(z((6, 4)), chunk=0),
        "forward_output": lambda: fwd(z((6, 4)), output=7),
        "forward_no_layers": lambda: fwd(z((6, 4)), kinds=[], acts=[], geometry=[], params=[]),
        "ops_forward_output": lambda: C.forward_chunks(z((6, 4)), layers2(), ["relu", "identity"],
                                                       1.0, "logsoftmax"),
        "train_features": lambda: workspace(X=z((5, 3))),
        "train_order_high": lambda: workspace().train(np.array([0, 1, 5], np.intp), 0, 3),
        "train_order_negative": lambda: workspace().train(np.array([0, -1], np.intp), 0, 2),
        "train_stop_past_order": lambda: workspace().train(order5, 0, 9),
        "train_start_negative": lambda: workspace().train(order5, -2, 3),
        "train_label_high": lambda: workspace(y=np.array([0, 1, 2, 0, 1], np.intp)),
        "train_labels_length": lambda: workspace(y=np.zeros(3, np.intp)),
        "train_labels_dtype": lambda: workspace(y=np.zeros(5, np.int32)),
        "train_label_buffer": lambda: workspace(labels_b=np.zeros(1, np.intp)),
        "train_targets_shape": lambda: workspace(loss_code=0, y=z((5, 3))),
        "train_targets_rows": lambda: workspace(loss_code=0, y=z((4, 2))),
        "train_X_buffer": lambda: workspace(Xb=z((1, 4))),
        "train_A_missing": lambda: workspace(A=[z((2, 3))]),
        "train_D_shape": lambda: workspace(D=[z((2, 3)), z((1, 2))]),
        "train_grads_length": lambda: workspace(grads=[z((4, 3)), z(3)]),
        "train_state_missing": lambda: workspace(optimizer=SGD(lr=0.1, momentum=0.9),
                                                 state=[[] for _ in range(4)]),
        "train_state_shape": lambda: workspace(optimizer=Adam(),
                                               state=[[z((4, 3)), z((4, 3))], [z(3), z(3)],
                                                      [z((3, 2)), z((2, 2))], [z(2), z(2)]]),
        "train_state_length": lambda: workspace(optimizer=SGD(lr=0.1, momentum=0.9),
                                                state=[[z((4, 3))]]),
        "train_weights_length": lambda: workspace(sample_weight=z(3), weights_b=z(2)),
        "train_batch_0": lambda: workspace(batch_size=0),
        "kernel_dense_forward_Y": lambda: _kernels.dense_forward(z((3, 4)), z((4, 2)), z(2),
                                                                 z((2, 2)), 0),
        "kernel_dense_backward_dW": lambda: _kernels.dense_backward(
            z((3, 4)), z((4, 2)), z((3, 2)), z((3, 2)), z((4, 3)), z(2), None, 0),
        "kernel_dense_backward_dX": lambda: _kernels.dense_backward(
            z((3, 4)), z((4, 2)), z((3, 2)), z((3, 2)), z((4, 2)), z(2), z((3, 3)), 0),
        "kernel_activation_code": lambda: _kernels.activation_forward(z(3), 9),
        "kernel_softmax_out": lambda: _kernels.softmax(z((3, 4)), z((3, 3))),
        "kernel_mixed_dtypes": lambda: _kernels.dense_forward(z((3, 4), f), z((4, 2)), z(2),
                                                              z((3, 2)), 0),
    }


@pytest.fixture(scope="module")
def compiled_op_results():
    return run_cases_in_child(__file__, _CASES_FLAG)


def _case_names():
    # Names only; building the cases needs no compiled call.
    return list(_compiled_op_cases())


@pytest.mark.parametrize("name", _case_names())
def test_compiled_ops_refuse_mismatched_shapes(name, compiled_op_results):
    returncode, crashed_in, results, stderr = compiled_op_results
    if name not in results:
        pytest.fail(f"the interpreter died (exit code {returncode}) in case {crashed_in!r}; "
                    f"case {name!r} never ran\n{stderr}")
    rec = results[name]
    assert rec["raised"] is not None, f"{name} was accepted"
    assert rec["message"], rec


@pytest.mark.parametrize("backend_ops", ["compiled", "numpy"])
def test_forward_chunks_refuses_an_unknown_output(backend_ops):
    from fastnn.ops import get_ops

    ops = get_ops(backend_ops)
    layer = Dense(4, 2)
    layer.initialize(np.random.default_rng(0), np.float64)
    layer.build((4,))
    with pytest.raises(ValueError, match="output"):
        ops.forward_chunks(np.zeros((3, 4)), [layer], ["identity"], 1.0, "logsoftmax")


if __name__ == "__main__" and _CASES_FLAG in sys.argv:
    report_cases(_compiled_op_cases())
