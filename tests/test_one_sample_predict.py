"""Predicting one sample or a few rows: the few-rows kernel and the kept predictor.

Below 32 rows the compiled core runs a float32 dense layer with the few-rows kernel
(``fnn_rows_forward``: row-major W, inputs that are 0 skipped) at the ``avx512`` and
``avx2`` levels, and BLAS at ``blas``. ``predict`` and ``predict_proba`` of plain
inputs go through the network's kept predictor (``Network._lean``), which looks the
weights up on every call. Every test runs at every kernel level this machine has.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from conftest import assert_close

import fastnn
from fastnn import Dense, Network
from fastnn.network import _LEAN_PREDICT

_packed = pytest.importorskip("fastnn._core._packed")
_train = pytest.importorskip("fastnn._core._train")

LEVELS = fastnn.available_kernel_levels()
SIMD_LEVELS = [name for name in LEVELS if name != "blas"]
LEVEL_CODE = {"blas": 0, "avx2": 1, "avx512": 2}
needs_simd = pytest.mark.skipif(not SIMD_LEVELS, reason="no AVX2 or AVX-512 on this machine")

# (rows, n_in, n_out): one row, pairs and an odd row left over, column tails of the
# 16- and 8-float vectors and of the 128- and 48-column blocks, K beyond 16 and odd.
SHAPES = [(1, 1, 1), (1, 784, 128), (1, 784, 10), (2, 3, 1), (3, 17, 9), (5, 33, 130),
          (4, 7, 48), (7, 100, 200), (31, 20, 17), (2, 5000, 3)]


@pytest.fixture(autouse=True)
def _restore_level():
    yield
    fastnn.set_kernel_level(None)


def _sparse(rng, shape, zeros=0.7):
    """Floats of which about ``zeros`` are exactly 0 (as in an image's background)."""
    X = rng.standard_normal(shape).astype(np.float32)
    X[rng.random(shape) < zeros] = 0
    return X


# ---------------------------------------------------------------- the kernel


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("zeros", [0.0, 0.7, 1.0])
def test_rows_kernel_against_numpy(level, shape, relu, zeros):
    n, n_in, n_out = shape
    rng = np.random.default_rng(n * 1000 + n_in + n_out)
    X = _sparse(rng, (n, n_in), zeros)
    W = rng.standard_normal((n_in, n_out)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    Y = np.full((n, n_out), np.nan, np.float32)
    _packed.row_major_forward(X, W, b, Y, relu, LEVEL_CODE[level])
    ref = X.astype(np.float64) @ W + b
    assert_close(Y, np.maximum(ref, 0) if relu else ref, np.float32)


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("shape", SHAPES)
def test_rows_kernel_gives_the_packed_kernels_bits(level, shape):
    """Both sum over k in order from 0 and add the bias last: skipping the terms
    whose input is 0 changes nothing, so the two give the same numbers."""
    n, n_in, n_out = shape
    rng = np.random.default_rng(7 + n_in)
    X = _sparse(rng, (n, n_in))
    W = rng.standard_normal((n_in, n_out)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    P = np.empty(_packed.packed_size_of(n_in, n_out), np.float32)
    _packed.pack_weights(W, P)
    rows, packed = np.empty((n, n_out), np.float32), np.empty((n, n_out), np.float32)
    _packed.row_major_forward(X, W, b, rows, True, LEVEL_CODE[level])
    _packed.forward(X, P, b, packed, True, LEVEL_CODE[level])
    np.testing.assert_array_equal(rows, packed)


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
def test_rows_kernel_strided_operands_and_untouched_neighbours(level):
    rng = np.random.default_rng(3)
    big_X = _sparse(rng, (10, 50))
    big_W = rng.standard_normal((40, 60)).astype(np.float32)
    X, W = big_X[1:8:2, 3:40], big_W[2:39, 5:38]          # strided rows, offset columns
    Y_big = np.full((9, 50), 7.0, np.float32)
    Y = Y_big[1:9:2, 4:37]
    _packed.row_major_forward(X, W, None, Y, False, LEVEL_CODE[level])
    assert_close(Y, X.astype(np.float64) @ W, np.float32)
    untouched = np.ones(Y_big.shape, bool)
    untouched[1:9:2, 4:37] = False
    assert (Y_big[untouched] == 7.0).all()


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("offset", [0, 1, 4, 7, 8, 12, 15])
@pytest.mark.parametrize("n_out", [1, 9, 16, 120, 128, 140, 200])
def test_rows_kernel_at_every_alignment_of_w(level, offset, n_out):
    """W's rows 64 bytes apart, starting ``offset`` floats past a line: the kernel
    starts its column blocks before column 0 so that its loads are aligned; nothing
    outside W's columns is read into the result or written in Y."""
    rng = np.random.default_rng(offset * 100 + n_out)
    n, n_in = 3, 37
    buf = np.empty(n_in * 256 + 32, np.float32)
    start = (-buf.ctypes.data // 4) % 16 + offset
    big_W = buf[start:start + n_in * 256].reshape(n_in, 256)
    big_W[...] = np.nan                    # columns beside W: NaN would show in the result
    W = big_W[:, :n_out]
    W[...] = rng.standard_normal((n_in, n_out))
    assert W.ctypes.data % 64 == offset * 4
    X = _sparse(rng, (n, n_in), 0.5)
    b_big = np.full(n_out + 32, np.nan, np.float32)
    b = b_big[16:16 + n_out]
    b[...] = rng.standard_normal(n_out)
    Y_big = np.full((n, 256 + 32), 7.0, np.float32)
    Y = Y_big[:, 16:16 + n_out]
    _packed.row_major_forward(X, W, b, Y, False, LEVEL_CODE[level])
    assert_close(Y, X.astype(np.float64) @ W + b, np.float32)
    untouched = np.ones(Y_big.shape, bool)
    untouched[:, 16:16 + n_out] = False
    assert (Y_big[untouched] == 7.0).all()


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
def test_rows_kernel_keeps_nan_inputs(level):
    """A NaN input is not 0: its terms are computed and the outputs are NaN."""
    X = np.zeros((3, 20), np.float32)
    X[1, 4] = np.nan
    W = np.ones((20, 5), np.float32)
    Y = np.empty((3, 5), np.float32)
    _packed.row_major_forward(X, W, np.zeros(5, np.float32), Y, True, LEVEL_CODE[level])
    assert np.isnan(Y[1]).all() and (Y[[0, 2]] == 0).all()


def test_rows_kernel_entry_point_refuses_bad_shapes():
    X, W, Y = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32), np.ones((2, 4), np.float32)
    code = LEVEL_CODE[SIMD_LEVELS[0]] if SIMD_LEVELS else 1
    for args in [(X, np.ones((4, 4), np.float32), None, Y), (X, W, np.ones(3, np.float32), Y),
                 (X, W, None, np.ones((3, 4), np.float32))]:
        with pytest.raises(ValueError):
            _packed.row_major_forward(*args, False, code)
    with pytest.raises(ValueError, match="level"):
        _packed.row_major_forward(X, W, None, Y, False, 0)   # BLAS: no kernel of its own


# ---------------------------------------------------------------- the network


def _pair(sizes=(784, 128, 10), loss="softmax_cross_entropy", dtype="float32", seed=0,
          activation="relu"):
    """A compiled network and its NumPy twin with the same weights."""
    net = Network.mlp(list(sizes), activation=activation, loss=loss, dtype=dtype, seed=seed)
    twin = Network.mlp(list(sizes), activation=activation, loss=loss, dtype=dtype, seed=seed,
                       backend="numpy")
    twin.set_weights(net.get_weights())
    return net, twin


def _images(rng, n, n_in=784):
    """Rows in [0, 1] with about 80% exact zeros, as MNIST's scaled images."""
    X = rng.random((n, n_in)).astype(np.float32)
    X[rng.random((n, n_in)) < 0.8] = 0
    return X


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("rows", [1, 2, 3, 5, 17, 31, 32, 33, 63, 64, 65])
def test_predict_few_rows_matches_the_twin(level, rows):
    fastnn.set_kernel_level(level)
    rng = np.random.default_rng(rows)
    net, twin = _pair()
    net.layers[0].b = rng.standard_normal(128) * 0.1   # biases that matter
    twin.layers[0].b = net.layers[0].b
    X = _images(rng, rows)
    for _ in range(2):      # the first call makes the predictor, the second uses it
        assert_close(net.predict_proba(X), twin.predict_proba(X), np.float32)
        np.testing.assert_array_equal(net.predict(X), twin.predict(X))
        assert_close(net.predict_proba(X[0]), twin.predict_proba(X[0]), np.float32)
        assert net.predict(X[0]) == twin.predict(X[0])
    # ... and these inputs are the predictor's own case, not the general path's.
    assert net._lean.run(X, net.layers, net._compute_activations, 1.0, 1) is not None
    assert net._lean.run(X[0], net.layers, net._compute_activations, 1.0, -1) is not None


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("loss,activation", [("softmax_cross_entropy", "tanh"),
                                             ("binary_cross_entropy", "sigmoid"),
                                             ("mse", "relu"), ("poisson", "relu")])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_loss_and_dtype_one_sample(level, loss, activation, dtype):
    fastnn.set_kernel_level(level)
    rng = np.random.default_rng(1)
    net, twin = _pair((30, 17, 3), loss=loss, dtype=dtype, activation=activation)
    X = rng.standard_normal((4, 30)).astype(dtype) * 0.3
    X[:, ::3] = 0
    for x in (X[0], X[:1], X):
        for _ in range(2):
            got, want = net.predict(x), twin.predict(x)
            assert np.shape(got) == np.shape(want) and np.asarray(got).dtype == np.asarray(want).dtype
            assert_close(got, want, dtype)
            if loss in ("softmax_cross_entropy", "binary_cross_entropy"):
                assert_close(net.predict_proba(x), twin.predict_proba(x), dtype)


@pytest.mark.parametrize("level", LEVELS)
def test_predictor_and_general_path_give_the_same_bits(level):
    """The kept predictor and the general path run the same compiled walk."""
    fastnn.set_kernel_level(level)
    rng = np.random.default_rng(2)
    net, _ = _pair()
    X = _images(rng, 5)
    net.predict(X)
    assert net._lean is not None
    lean = net.predict_proba(X[1])                    # 1-D float32: the predictor
    general = net.predict_proba(X[1].tolist())         # a list: the general path
    np.testing.assert_array_equal(lean, general)
    np.testing.assert_array_equal(net.predict_proba(X), net.predict_proba(X.tolist()))
    X8 = (X * 255).astype(np.uint8)
    np.testing.assert_array_equal(net.predict_proba(X8, input_scale=1 / 255),
                                  net.predict_proba(X8.astype(np.int64), input_scale=1 / 255))


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
def test_one_sample_gives_the_bits_of_the_packed_path(level):
    """One row (few-rows kernel) and the same row among 64 (packed panels)."""
    fastnn.set_kernel_level(level)
    rng = np.random.default_rng(4)
    net, _ = _pair()
    X = _images(rng, 64)
    np.testing.assert_array_equal(net.predict_proba(X[5]), net.predict_proba(X)[5])


@pytest.mark.parametrize("level", LEVELS)
def test_non_contiguous_and_other_inputs(level):
    fastnn.set_kernel_level(level)
    rng = np.random.default_rng(5)
    net, twin = _pair((40, 33, 4))
    X = _images(rng, 6, 40)
    net.predict(X)
    want = twin.predict_proba(X)
    swapped = X.astype(X.dtype.newbyteorder())
    assert swapped.dtype.num == X.dtype.num and swapped.flags.c_contiguous
    for variant in (np.asfortranarray(X), np.repeat(X, 2, axis=0)[::2], X.astype(np.float64),
                    X.tolist(), np.ascontiguousarray(X).view(np.matrix), swapped):
        assert_close(net.predict_proba(variant), want, np.float32)
    strided = np.repeat(X[2], 2)[::2]
    assert not strided.flags.c_contiguous
    assert_close(net.predict_proba(strided), want[2], np.float32)
    assert_close(net.predict_proba(swapped[2]), want[2], np.float32)
    assert_close(net.predict_proba(X[2], input_scale=2), twin.predict_proba(X[2] * 2), np.float32)


# ---------------------------------------------------------------- weights changed between calls


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("change", ["in_place_W", "in_place_b", "assign_W", "assign_b",
                                    "set_weights", "replace_layer", "fit", "mutate_list"])
def test_weights_changed_after_a_predict_are_seen(level, change):
    fastnn.set_kernel_level(level)
    rng = np.random.default_rng(6)
    net, twin = _pair((50, 40, 5))
    x = _images(rng, 1, 50)[0]
    x[:10] = 1.0
    before = net.predict_proba(x)
    net.predict_proba(x)
    assert net._lean is not None
    if change == "in_place_W":
        net.layers[0].W[...] = rng.standard_normal((50, 40))
    elif change == "in_place_b":
        net.layers[1].b[1] += 3.0
    elif change == "assign_W":
        net.layers[0].W = rng.standard_normal((50, 40))
    elif change == "assign_b":
        net.layers[1].b = rng.standard_normal(5)
    elif change == "set_weights":
        net.set_weights([w * 0.5 + 0.1 for w in net.get_weights()])
    elif change == "replace_layer":
        net.layers[1] = Dense(40, 5)
        net.layers[1].build((40,))
        net.layers[1].initialize(np.random.default_rng(9), np.dtype(np.float32))
    elif change == "fit":
        net.fit(_images(rng, 64, 50), rng.integers(0, 5, 64), epochs=2, batch_size=8, verbose=0)
    elif change == "mutate_list":
        net.layers[:] = [net.layers[0], copy.deepcopy(net.layers[1])]
        net.layers[1].b[0] += 1.0
    twin.set_weights(net.get_weights())
    after = net.predict_proba(x)
    assert not np.allclose(after, before)
    assert_close(after, twin.predict_proba(x), np.float32)
    assert net.predict(x) == twin.predict(x)


@needs_simd
@pytest.mark.parametrize("first,then", [("blas", SIMD_LEVELS[0] if SIMD_LEVELS else "blas"),
                                        (SIMD_LEVELS[0] if SIMD_LEVELS else "blas", "blas")])
def test_kernel_level_changed_after_a_predict_is_used(first, then):
    """The level is read on every call: a predictor made at one level is not tied to it.

    BLAS and the few-rows kernel sum in different orders, so their bits differ; after
    the switch the predictor gives the bits of the general path at the new level."""
    rng = np.random.default_rng(8)
    net, _ = _pair()
    x = _images(rng, 1)[0]
    fastnn.set_kernel_level(first)
    before = net.predict_proba(x)
    net.predict_proba(x)
    assert net._lean is not None
    fastnn.set_kernel_level(then)
    after = net.predict_proba(x)
    np.testing.assert_array_equal(after, net.predict_proba(x.tolist()))  # the general path
    assert not np.array_equal(after, before)
    assert_close(after, before, np.float32)


def test_save_load_pickle_and_copy_after_a_predict(tmp_path):
    rng = np.random.default_rng(10)
    net, _ = _pair((20, 8, 3))
    X = _images(rng, 4, 20)
    want = net.predict_proba(X)
    net.predict_proba(X[0])
    assert net._lean is not None
    path = tmp_path / "net.npz"
    net.save(path)
    for other in (fastnn.load(path), pickle.loads(pickle.dumps(net)), copy.deepcopy(net),
                  copy.copy(net)):
        assert other._lean is None or other._lean is net._lean
        np.testing.assert_array_equal(other.predict_proba(X), want)
        np.testing.assert_array_equal(other.predict_proba(X[1]), want[1])
    # A copy's weights are its own: changing them does not change the original's predictions.
    clone = copy.deepcopy(net)
    clone.predict(X[0])
    clone.layers[0].W[...] = 0
    np.testing.assert_array_equal(net.predict_proba(X[1]), want[1])
    # A network pickled before it had a predictor attribute still predicts.
    state = net.__getstate__()
    del state["_lean"]
    old = Network.__new__(Network)
    old.__dict__.update(state)
    np.testing.assert_array_equal(old.predict_proba(X[1]), want[1])


def test_argmax_code_agrees_with_the_core():
    assert _LEAN_PREDICT["softmax_cross_entropy"] == _train.PREDICT_ARGMAX


@pytest.mark.parametrize("level", LEVELS)
def test_argmax_ties_and_nan_outputs_as_numpy(level):
    """Ties give the first largest output, a NaN output (a bias made NaN in place) the
    first NaN, as NumPy's argmax in the twin."""
    fastnn.set_kernel_level(level)
    net, twin = _pair((6, 5, 4))
    x = np.ones(6, np.float32)
    net.predict(x)
    for net_or_twin in (net, twin):
        net_or_twin.layers[1].W[...] = 0
        net_or_twin.layers[1].b[...] = [1, 3, 3, 0]
    assert net.predict(x) == twin.predict(x) == 1
    for net_or_twin in (net, twin):
        net_or_twin.layers[1].b[2] = np.nan
        net_or_twin.layers[1].b[3] = np.nan
    assert net.predict(x) == twin.predict(x) == 2
    np.testing.assert_array_equal(net.predict(np.stack([x, x])), [2, 2])


# ---------------------------------------------------------------- bad input


BAD_INPUTS = {
    "nan": lambda x: np.where(np.arange(x.size) == 3, np.nan, x).astype(np.float32),
    "inf_2d": lambda x: np.where(np.arange(x.size) == 0, np.inf, x).astype(np.float32)[None],
    "wrong_width": lambda x: x[:-1].copy(),
    "wrong_width_2d": lambda x: np.ones((2, x.size + 1), np.float32),
    "empty": lambda x: np.ones((0, x.size), np.float32),
    "3d": lambda x: np.ones((1, 1, x.size), np.float32),
    "strings": lambda x: np.array(["a"] * x.size),
    "ragged": lambda x: [[1.0, 2.0], [1.0]],
    "none": lambda x: None,
    "float64_nan": lambda x: np.full(x.size, np.nan),
}
BAD_SCALES = [0.0, -1.0, np.nan, np.inf, "a", None]


def _error_of(call):
    try:
        call()
    except Exception as exc:    # noqa: BLE001 - the test compares whatever is raised
        return type(exc), str(exc)
    return None


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_bad_input_gives_the_same_errors_with_the_predictor(level, method):
    """Every refusal of a fresh network (no predictor yet) is repeated word for word
    by a network whose predictor is made."""
    fastnn.set_kernel_level(level)
    fresh, _ = _pair((12, 6, 3))
    used, _ = _pair((12, 6, 3))
    x = np.linspace(0, 1, 12, dtype=np.float32)
    used.predict(x)
    used.predict_proba(x)
    assert used._lean is not None
    cases = [(make(x), 1.0) for make in BAD_INPUTS.values()] + [(x, s) for s in BAD_SCALES]
    for X, scale in cases:
        want = _error_of(lambda X=X, scale=scale: getattr(fresh, method)(X, input_scale=scale))
        got = _error_of(lambda X=X, scale=scale: getattr(used, method)(X, input_scale=scale))
        assert want is not None and got == want
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        getattr(used, method)(BAD_INPUTS["nan"](x))


def test_a_parameter_replaced_behind_the_setters_takes_the_checked_path():
    """``layer._W`` swapped for a wrong array: no crash, the general path's error."""
    net, _ = _pair((12, 6, 3))
    x = np.ones(12, np.float32)
    net.predict(x)
    net.layers[0]._W = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match="expected 72 elements"):
        net.predict(x)
    net.layers[0]._W = np.zeros((12, 6), np.float64)
    with pytest.raises(TypeError, match="dtype float64"):
        net.predict_proba(x)
    net.layers[0]._W = np.zeros((6, 12), np.float32).T
    with pytest.raises(ValueError, match="C-contiguous"):
        net.predict(x)
    net.layers[0]._W = np.zeros((12, 6), np.dtype(np.float32).newbyteorder())
    with pytest.raises(ValueError, match="byte order"):
        net.predict_proba(x)


def test_predictor_checks_what_it_is_given():
    net, _ = _pair((12, 6, 3))
    ops, layers = net._ops, net.layers
    lean = ops.predictor(layers, net._compute_activations)
    with pytest.raises(ValueError, match="unknown output mode"):
        lean.run(np.ones(12, np.float32), layers, net._compute_activations, 1.0, 7)
    # The same layer objects in another list are its layers; other activations are not.
    assert lean.run(np.ones(12, np.float32), list(layers), net._compute_activations, 1.0, 0) \
        is not None
    assert lean.run(np.ones(12, np.float32), layers, list(net._compute_activations), 1.0, 0) is None
    from fastnn.ops.compiled_ops import LAYER_KINDS
    with pytest.raises(ValueError, match="is not the parameter given"):
        _train.Predictor(layers, [LAYER_KINDS["dense"]] * 2, [3, 0], [[12, 6], [6, 3]],
                         [layers[0].W, layers[0].b, layers[1].W, layers[1].b],
                         ["_W", "_W", "_W", "_b"], net._compute_activations, np.float32)
    assert fastnn.Network.mlp([3, 2], backend="numpy")._ops.predictor([], []) is None


@pytest.mark.parametrize("level", LEVELS)
def test_convolutional_network_one_image(level):
    """Conv2D, MaxPool2D, Dropout and Flatten take the predictor too; images given as
    (H, W) or (H, W, C) take the general path, rows of H*W*C the predictor."""
    fastnn.set_kernel_level(level)
    rng = np.random.default_rng(11)

    def layers():
        return [fastnn.Conv2D(1, 4, 3, activation="relu"), fastnn.MaxPool2D(2),
                fastnn.Flatten(), fastnn.Dropout(0.2), Dense(4 * 4 * 4, 12, "relu"), Dense(12, 3)]

    net = Network(layers(), loss="softmax_cross_entropy", input_shape=(10, 10, 1), seed=3)
    twin = Network(layers(), loss="softmax_cross_entropy", input_shape=(10, 10, 1), seed=3,
                   backend="numpy")
    twin.set_weights(net.get_weights())
    images = _images(rng, 5, 100).reshape(5, 10, 10, 1)
    want = twin.predict_proba(images)
    for _ in range(2):
        assert_close(net.predict_proba(images), want, np.float32)
        assert_close(net.predict_proba(images[2, :, :, 0]), want[2], np.float32)
        assert_close(net.predict_proba(images[2].reshape(-1)), want[2], np.float32)
        assert_close(net.predict_proba(images.reshape(5, -1)[:3]), want[:3], np.float32)
    assert net._lean.run(images[2].reshape(-1), net.layers, net._compute_activations, 1.0,
                         1) is not None


def test_a_parameter_deleted_behind_the_setters_gives_the_general_paths_error():
    net, _ = _pair((12, 6, 3))
    fresh, _ = _pair((12, 6, 3))
    x = np.ones(12, np.float32)
    net.predict(x)
    del net.layers[1]._b
    del fresh.layers[1]._b
    assert _error_of(lambda: net.predict(x)) == _error_of(lambda: fresh.predict(x)) is not None


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("rows", [32, 40, 64, 100, 1500])
@pytest.mark.parametrize("zeros", [0.8, 0.0])
def test_batches_give_each_row_the_bits_of_predicting_it_alone(level, rows, zeros):
    """Batches of images (mostly zeros) run the first layer on the few-rows kernel at
    any size, other batches on the packed kernel from 64 rows: both give the bits of
    one row alone. (From 32 to 63 rows without zeros BLAS runs it: close, not equal.)"""
    fastnn.set_kernel_level(level)
    rng = np.random.default_rng(rows)
    net, twin = _pair()
    X = rng.random((rows, 784)).astype(np.float32)
    X[rng.random(X.shape) < zeros] = 0
    batch = net.predict_proba(X)
    assert_close(batch, twin.predict_proba(X), np.float32)
    alone = np.stack([net.predict_proba(X[i]) for i in range(0, rows, max(1, rows // 40))])
    if zeros or rows >= 64:
        np.testing.assert_array_equal(batch[::max(1, rows // 40)], alone)
    else:
        assert_close(batch[::max(1, rows // 40)], alone, np.float32)


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("rows", [40, 300])
def test_image_batches_take_the_few_rows_kernel(level, rows):
    """Seen through an infinite weight written in place where every input is 0: the
    few-rows kernel skips that input (finite outputs), the packed kernel and BLAS
    compute 0 * inf (NaN)."""
    fastnn.set_kernel_level(level)
    rng = np.random.default_rng(12)
    net, _ = _pair()
    images = _images(rng, rows)
    dense = rng.random((rows, 784)).astype(np.float32) + 0.01
    images[:, 5] = dense[:, 5] = 0
    net.predict_proba(images[0])
    net.layers[0].W[5, :] = np.inf
    assert np.isfinite(net.predict_proba(images)).all()
    assert np.isfinite(net.predict_proba((images * 255).astype(np.uint8), input_scale=1 / 255)).all()
    assert np.isnan(net.predict_proba(dense)).all()
    fastnn.set_kernel_level("blas")
    assert np.isnan(net.predict_proba(images)).all()


@pytest.mark.parametrize("level", LEVELS)
def test_uint8_image_batch_matches_the_twin(level):
    fastnn.set_kernel_level(level)
    rng = np.random.default_rng(13)
    net, twin = _pair()
    images = (_images(rng, 1500) * 255).astype(np.uint8)
    for _ in range(2):
        assert_close(net.predict_proba(images, input_scale=1 / 255),
                     twin.predict_proba(images, input_scale=1 / 255), np.float32)
        np.testing.assert_array_equal(net.predict(images, input_scale=1 / 255),
                                      net.predict_proba(images, input_scale=1 / 255).argmax(1))


def test_core_refuses_byte_swapped_input():
    """'>f4' has float32's type number: the core must not read its bytes as floats."""
    net, _ = _pair((4, 8, 3))
    x = np.array([[0.5, 1, 2, 3]], np.float32)
    params = [p for layer in net.layers for p in layer.params()]
    with pytest.raises(ValueError, match="byte order"):
        _train.forward_chunks(x.astype(x.dtype.newbyteorder()), np.empty((1, 3), np.float32),
                              [0, 0], [3, 0], [[4, 8], [8, 3]], params, 1.0, 16, 0, True)
