"""The packed-weight dense kernels against NumPy, and training on them against BLAS.

Every test runs at every kernel level this machine supports (``avx512``, ``avx2``);
the whole-fit tests also at ``blas``, the reference. Shapes include tails that are
not multiples of the 32-column panel or of the register blocks (8 or 6 rows, 16 or 8
columns), batch 1, odd K and width 1.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_close

import fastnn
from fastnn.callbacks import Callback

_packed = pytest.importorskip("fastnn._core._packed")

LEVELS = fastnn.available_kernel_levels()
SIMD_LEVELS = [name for name in LEVELS if name != "blas"]
LEVEL_CODE = {"blas": 0, "avx2": 1, "avx512": 2}

# (rows, n_in, n_out): batch 1, width 1, odd K, row tails of both register blocks
# (8 and 6 rows), column tails below and above half a panel, several panels.
SHAPES = [(1, 1, 1), (1, 784, 128), (2, 3, 1), (5, 7, 9), (7, 13, 17), (9, 31, 33),
          (13, 2, 16), (16, 784, 128), (17, 129, 10), (33, 40, 64), (64, 5, 95),
          (6, 1, 200), (49, 100, 31)]

needs_simd = pytest.mark.skipif(not SIMD_LEVELS, reason="no AVX2 or AVX-512 on this machine")


@pytest.fixture(autouse=True)
def _restore_level():
    yield
    fastnn.set_kernel_level(None)


def _packed_of(W: np.ndarray) -> np.ndarray:
    P = np.full(_packed.packed_size_of(*W.shape), np.nan, np.float32)
    _packed.pack_weights(W, P)
    return P


def _unpacked(P: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    W = np.empty(shape, np.float32)
    _packed.unpack_weights(P, W)
    return W


def _panel_padding(P: np.ndarray, n_in: int, n_out: int) -> np.ndarray:
    """The padding columns of the last panel (empty when n_out fills it)."""
    last = P.reshape(-1, n_in, 32)[-1]
    return last[:, n_out % 32:] if n_out % 32 else last[:, :0]


@pytest.mark.parametrize("shape", [(1, 1), (3, 31), (5, 32), (7, 33), (784, 128), (2, 100)])
def test_pack_round_trip_and_zero_padding(shape):
    W = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    P = _packed_of(W)
    assert P.size == shape[0] * 32 * -(-shape[1] // 32)
    np.testing.assert_array_equal(_unpacked(P, shape), W)
    assert not _panel_padding(P, *shape).any()
    # Panel p holds columns 32p..32p+31 as an n_in x 32 row-major block.
    np.testing.assert_array_equal(P.reshape(-1, shape[0], 32)[0][:, :min(32, shape[1])],
                                  W[:, :32])


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("relu", [False, True])
def test_forward_against_numpy(level, shape, relu):
    n, n_in, n_out = shape
    rng = np.random.default_rng(n * 1000 + n_in + n_out)
    X = rng.standard_normal((n, n_in)).astype(np.float32)
    W = rng.standard_normal((n_in, n_out)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    Y = np.full((n, n_out), np.nan, np.float32)
    _packed.forward(X, _packed_of(W), b, Y, relu, LEVEL_CODE[level])
    expected = X.astype(np.float64) @ W + b
    if relu:
        expected = np.maximum(expected, 0)
    assert_close(Y, expected, np.float32)


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
def test_forward_strided_rows_and_untouched_neighbours(level):
    """Input and output with row strides (views into wider arrays): only Y's columns change."""
    rng = np.random.default_rng(1)
    n, n_in, n_out = 11, 21, 19
    Xwide = rng.standard_normal((n, n_in + 5)).astype(np.float32)
    X = Xwide[:, 2:2 + n_in]
    W = rng.standard_normal((n_in, n_out)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    Ywide = np.full((n, n_out + 7), 7.0, np.float32)
    Y = Ywide[:, 3:3 + n_out]
    _packed.forward(X, _packed_of(W), b, Y, True, LEVEL_CODE[level])
    assert_close(Y, np.maximum(X.astype(np.float64) @ W + b, 0), np.float32)
    assert (Ywide[:, :3] == 7).all() and (Ywide[:, 3 + n_out:] == 7).all()


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
def test_forward_relu_keeps_nan(level):
    X = np.array([[np.nan, 1.0], [-1.0, 0.0]], np.float32)
    W = np.ones((2, 3), np.float32)
    Y = np.empty((2, 3), np.float32)
    _packed.forward(X, _packed_of(W), np.zeros(3, np.float32), Y, True, LEVEL_CODE[level])
    assert np.isnan(Y[0]).all() and (Y[1] == 0).all()


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", ["store", "sgd", "sgd_no_decay", "momentum"])
def test_weight_gradient_against_numpy(level, shape, mode):
    n, n_in, n_out = shape
    rng = np.random.default_rng(n * 7 + n_in * 3 + n_out)
    Xwide = rng.standard_normal((n, n_in + 3)).astype(np.float32)
    X = Xwide[:, 1:1 + n_in]                         # a row stride != n_in
    dZ = rng.standard_normal((n, n_out)).astype(np.float32)
    W = rng.standard_normal((n_in, n_out)).astype(np.float32)
    V = rng.standard_normal((n_in, n_out)).astype(np.float32)
    lr, mu, wd = 0.05, 0.9, (0.0 if mode == "sgd_no_decay" else 0.01)
    P = _packed_of(W)
    G = _packed_of(V) if mode == "momentum" else np.zeros_like(P)
    code = {"store": 0, "sgd": 1, "sgd_no_decay": 1, "momentum": 2}[mode]
    _packed.weight_gradient(X, dZ, P, G, code, lr, mu, wd, LEVEL_CODE[level])
    acc = X.astype(np.float64).T @ dZ
    if mode == "store":
        assert_close(_unpacked(G, W.shape), acc, np.float32)
        np.testing.assert_array_equal(_unpacked(P, W.shape), W)
    elif mode in ("sgd", "sgd_no_decay"):
        assert_close(_unpacked(P, W.shape), W * (1 - lr * wd) - lr * acc, np.float32)
    else:
        v = mu * V + acc + wd * W
        assert_close(_unpacked(G, W.shape), v, np.float32)
        assert_close(_unpacked(P, W.shape), W - lr * v, np.float32)
    # The padding stays exact zeros, so that it never leaks into a product.
    assert not _panel_padding(P, n_in, n_out).any()
    assert not _panel_padding(G, n_in, n_out).any()


@needs_simd
def test_entry_points_refuse_bad_shapes_and_levels():
    W = np.ones((4, 5), np.float32)
    P = _packed_of(W)
    X = np.ones((3, 4), np.float32)
    Y = np.empty((3, 5), np.float32)
    b = np.zeros(5, np.float32)
    code = LEVEL_CODE[SIMD_LEVELS[-1]]
    with pytest.raises(ValueError):
        _packed.forward(X, P[:-1], b, Y, False, code)
    with pytest.raises(ValueError):
        _packed.forward(X, P, b, np.empty((2, 5), np.float32), False, code)
    with pytest.raises(ValueError):
        _packed.forward(X, P, b, Y, False, 0)        # blas is not a kernel
    with pytest.raises(ValueError):
        _packed.forward(X, P, b, Y, False, 3)
    with pytest.raises(ValueError):
        _packed.forward(np.ones((3, 8), np.float32)[:, ::2], P, b, Y, False, code)
    with pytest.raises(ValueError):
        _packed.weight_gradient(X, np.ones((2, 5), np.float32), P, P.copy(), 1, 0.1, 0, 0,
                                code)
    with pytest.raises(ValueError):
        _packed.weight_gradient(X, np.ones((3, 5), np.float32), P, P.copy(), 5, 0.1, 0, 0,
                                code)
    with pytest.raises(ValueError):
        _packed.pack_weights(W, np.empty(3, np.float32))


# ---------------------------------------------------------------- the level setting

def test_kernel_threads_setting(kernel_threads):
    assert fastnn.kernels.get_kernel_threads() == 2      # the default
    fastnn.kernels.set_kernel_threads(1)
    assert fastnn.kernels.get_kernel_threads() == 1
    fastnn.kernels.set_kernel_threads(2)
    assert fastnn.kernels.get_kernel_threads() == 2
    with pytest.raises(ValueError):
        fastnn.kernels.set_kernel_threads(3)
    with pytest.raises(TypeError):
        fastnn.kernels.set_kernel_threads(2.0)


def test_levels_and_setting():
    assert LEVELS[0] == "blas"
    assert fastnn.get_kernel_level() == LEVELS[-1]
    for name in LEVELS:
        fastnn.set_kernel_level(name)
        assert fastnn.get_kernel_level() == name
    fastnn.set_kernel_level(None)
    assert fastnn.get_kernel_level() == LEVELS[-1]
    with pytest.raises(ValueError, match="unknown kernel level"):
        fastnn.set_kernel_level("sse2")
    with pytest.raises(TypeError):
        fastnn.set_kernel_level(2)
    missing = [name for name in ("avx2", "avx512") if name not in LEVELS]
    for name in missing:
        with pytest.raises(ValueError, match="not available"):
            fastnn.set_kernel_level(name)


@pytest.mark.parametrize("value, expected", [("blas", "blas"), ("avx2", "avx2"),
                                             ("bogus", None)])
def test_environment_variable_lowers_the_level(value, expected):
    if expected is not None and expected not in LEVELS:
        pytest.skip(f"{expected} is not available here")
    env = dict(os.environ, FASTNN_KERNELS=value)
    code = ("import warnings; warnings.simplefilter('error');\n"
            "try:\n    import fastnn; print(fastnn.get_kernel_level())\n"
            "except RuntimeWarning as w:\n    print('warned', w)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    if expected is None:
        assert out.stdout.startswith("warned") and "FASTNN_KERNELS" in out.stdout
    else:
        assert out.stdout.strip() == expected


# ---------------------------------------------------------------- whole fits

def _data(n=300, d=23, classes=4, kind="float32", seed=0):
    rng = np.random.default_rng(seed)
    if kind == "uint8":
        X = rng.integers(0, 256, (n, d), dtype=np.uint8)
    else:
        X = rng.standard_normal((n, d)).astype(np.float32)
    y = rng.integers(0, classes, n)
    return X, y


class _Recorder(Callback):
    """Records every layer's W at each epoch end; sets W1 to a given value after epoch 0."""

    def __init__(self, assign=None):
        super().__init__()
        self.seen = []
        self.assign = assign

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append([layer.W.copy() for layer in self.model.layers])
        if epoch == 0 and self.assign is not None:
            self.model.layers[0].W[...] = self.assign


def _fit(level, optimizer, sizes=(23, 37, 33, 4), activation="relu", X=None, y=None,
         batch_size=13, epochs=4, input_scale=1.0, assign=None, dtype="float32"):
    fastnn.set_kernel_level(level)
    net = fastnn.Network.mlp(list(sizes), activation=activation, loss="softmax_cross_entropy",
                             seed=3, dtype=dtype)
    recorder = _Recorder(assign)
    net.fit(X, y, epochs=epochs, batch_size=batch_size, optimizer=copy.deepcopy(optimizer),
            input_scale=input_scale, callbacks=[recorder])
    return net, recorder


OPTIMIZERS = {
    "sgd": fastnn.SGD(lr=0.05),
    "sgd_wd": fastnn.SGD(lr=0.05, weight_decay=1e-3),
    "momentum": fastnn.SGD(lr=0.02, momentum=0.9, weight_decay=1e-3),
    "nesterov": fastnn.SGD(lr=0.02, momentum=0.9, nesterov=True),
    "adam": fastnn.Adam(lr=0.003),
}


def _assert_same_training(net, rec, ref_net, ref_rec):
    # Several epochs compound float32 rounding (sums in another order): ten times
    # the one-product tolerance, as conftest's RTOL allows for training.
    for epoch, (got, want) in enumerate(zip(rec.seen, ref_rec.seen)):
        for W, W_ref in zip(got, want):
            assert_close(W, W_ref, np.float32, rtol=1e-3)
    for layer, ref_layer in zip(net.layers, ref_net.layers):
        assert_close(layer.W, ref_layer.W, np.float32, rtol=1e-3)
        assert_close(layer.b, ref_layer.b, np.float32, rtol=1e-3)


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_fit_matches_the_blas_path(level, opt):
    X, y = _data()
    ref_net, ref_rec = _fit("blas", OPTIMIZERS[opt], X=X, y=y)
    net, rec = _fit(level, OPTIMIZERS[opt], X=X, y=y)
    assert len(rec.seen) == 4
    _assert_same_training(net, rec, ref_net, ref_rec)
    # The weights moved: the comparison is not between two untrained networks.
    assert np.abs(net.layers[0].W - rec.seen[0][0]).max() > 1e-4


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "identity"])
def test_fit_matches_the_blas_path_other_activations(level, activation):
    X, y = _data(seed=1)
    args = {"activation": activation, "X": X, "y": y, "sizes": (23, 40, 17, 4), "batch_size": 8}
    ref_net, ref_rec = _fit("blas", OPTIMIZERS["momentum"], **args)
    net, rec = _fit(level, OPTIMIZERS["momentum"], **args)
    _assert_same_training(net, rec, ref_net, ref_rec)


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
def test_fit_uint8_input_batch_1_width_1(level):
    """A width-1 layer (on BLAS: narrower than MIN_PACKED_OUTPUTS) feeds a packed one (K = 1)."""
    X, y = _data(n=60, d=9, classes=12, kind="uint8", seed=2)
    args = {"X": X, "y": y, "sizes": (9, 1, 12), "batch_size": 1, "epochs": 3,
            "input_scale": 1 / 255}
    ref_net, ref_rec = _fit("blas", OPTIMIZERS["sgd"], **args)
    net, rec = _fit(level, OPTIMIZERS["sgd"], **args)
    _assert_same_training(net, rec, ref_net, ref_rec)


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
def test_fit_transposed_and_strided_input(level):
    """X as a transposed view and as a strided slice trains as its C-ordered copy does."""
    X, y = _data(seed=4)
    Xt = np.ascontiguousarray(X.T).T
    Xs = np.repeat(X, 2, axis=1)[:, ::2]
    assert not Xt.flags.c_contiguous and not Xs.flags.c_contiguous
    ref_net, ref_rec = _fit("blas", OPTIMIZERS["momentum"], X=X, y=y)
    for Xv in (Xt, Xs):
        net, rec = _fit(level, OPTIMIZERS["momentum"], X=Xv, y=y)
        _assert_same_training(net, rec, ref_net, ref_rec)


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
def test_weights_assigned_by_a_callback_are_trained_on(level):
    """W is unpacked before callbacks run and packed again after: assignments count."""
    X, y = _data(seed=5)
    zeros_plus = np.full((23, 37), 0.01, np.float32)
    ref_net, ref_rec = _fit("blas", OPTIMIZERS["momentum"], X=X, y=y, assign=zeros_plus)
    net, rec = _fit(level, OPTIMIZERS["momentum"], X=X, y=y, assign=zeros_plus)
    _assert_same_training(net, rec, ref_net, ref_rec)
    # Without the assignment the fit ends elsewhere: the assignment was seen.
    other, _ = _fit(level, OPTIMIZERS["momentum"], X=X, y=y)
    assert np.abs(other.layers[0].W - net.layers[0].W).max() > 1e-3


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
def test_optimizer_state_is_current_after_fit(level):
    """The momentum buffers come back from the panels, so a second fit continues them."""
    X, y = _data(seed=6)
    results = {}
    for name in ("blas", level):
        fastnn.set_kernel_level(name)
        net = fastnn.Network.mlp([23, 37, 4], loss="softmax_cross_entropy", seed=3)
        opt = copy.deepcopy(OPTIMIZERS["momentum"])
        net.fit(X, y, epochs=2, batch_size=16, optimizer=opt)
        net.fit(X, y, epochs=2, batch_size=16, optimizer=opt)
        results[name] = (net, opt)
    (ref, ref_opt), (net, opt) = results["blas"], results[level]
    for s, s_ref in zip(opt.state, ref_opt.state):
        for a, a_ref in zip(s, s_ref):
            assert_close(a, a_ref, np.float32, rtol=1e-3)
    assert_close(net.layers[0].W, ref.layers[0].W, np.float32, rtol=1e-3)


def test_float64_fits_take_the_blas_path():
    """Float64 networks ignore the level (the kernels are float32 only)."""
    X, y = _data(seed=7)
    X = X.astype(np.float64)
    nets = [_fit(name, OPTIMIZERS["sgd"], X=X, y=y, dtype="float64")[0] for name in LEVELS]
    for net in nets[1:]:
        np.testing.assert_array_equal(net.layers[0].W, nets[0].layers[0].W)


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 37, 10), (16, 128, 10), (9, 70, 32),
                                   (3, 1, 12), (64, 200, 33)])
def test_input_gradient_through_the_transposed_panels(level, shape):
    """dZ @ W^T as the forward kernel on W^T packed from the panels (no bias)."""
    n, n_in, n_out = shape
    rng = np.random.default_rng(n + n_in + n_out)
    W = rng.standard_normal((n_in, n_out)).astype(np.float32)
    dZ = rng.standard_normal((n, n_out)).astype(np.float32)
    PT = np.full(_packed.packed_size_of(n_out, n_in), np.nan, np.float32)
    _packed.pack_transposed_weights(_packed_of(W), PT, n_in, n_out)
    np.testing.assert_array_equal(PT, _packed_of(np.ascontiguousarray(W.T)))
    dX = np.full((n, n_in), np.nan, np.float32)
    _packed.forward(dZ, PT, None, dX, False, LEVEL_CODE[level])
    assert_close(dX, dZ.astype(np.float64) @ W.T, np.float32)


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("threads", [2])
def test_threads_split_panels_without_changing_a_bit(level, threads):
    """Each output is computed by the same code whichever thread runs its panel."""
    rng = np.random.default_rng(11)
    n, n_in, n_out = 64, 300, 150
    X = rng.standard_normal((n, n_in)).astype(np.float32)
    W = rng.standard_normal((n_in, n_out)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    dZ = rng.standard_normal((n, n_out)).astype(np.float32)
    code = LEVEL_CODE[level]
    out = {}
    for t in (1, threads):
        P = _packed_of(W)
        Y = np.empty((n, n_out), np.float32)
        _packed.forward(X, P, b, Y, True, code, t)
        G = _packed_of(W * 0.5)
        _packed.weight_gradient(X, dZ, P, G, 2, 0.1, 0.9, 0.01, code, t)
        out[t] = (Y, P, G)
    for a, b_ in zip(out[1], out[threads]):
        np.testing.assert_array_equal(a, b_)
    with pytest.raises(ValueError):
        _packed.forward(X, P, b, Y, True, code, 0)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("nb, d", [(1, 784), (16, 784), (33, 17), (64, 784), (100, 513)])
def test_uint8_gather_against_numpy(level, threads, nb, d):
    """The batch gather, alone and shared with a helper thread (rows in units of 16,
    a partial last one), gives NumPy's values and touches nothing else."""
    rng = np.random.default_rng(nb * d)
    X = rng.integers(0, 256, size=(300, d), dtype=np.uint8)
    rows = rng.integers(0, 300, size=nb).astype(np.intp)
    out = np.full((nb + 1, d), -7.0, np.float32)
    _packed.gather(X, rows, out[:nb], np.float32(1 / 255), LEVEL_CODE[level], threads)
    np.testing.assert_array_equal(out[:nb], X[rows].astype(np.float32) * np.float32(1 / 255))
    assert (out[nb] == -7.0).all()
    with pytest.raises(ValueError, match="rows index outside X"):
        _packed.gather(X, np.array([0, 300], np.intp), out[:2], 1.0, LEVEL_CODE[level], threads)
    with pytest.raises(ValueError, match="threads"):
        _packed.gather(X, rows, out[:nb], 1.0, LEVEL_CODE[level], 3)


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("batch_size", [16, 64, 100])
def test_uint8_fit_on_two_threads_gives_the_same_bits_as_on_one(level, batch_size,
                                                                 kernel_threads):
    """A uint8 network whose first layer's products are shared: the helper thread gathers
    its own copy of each batch (a stale or wrong copy changes the weights), and the
    epoch's last, partial batch is gathered afresh too."""
    rng = np.random.default_rng(21)
    X = rng.integers(0, 256, size=(1000, 420), dtype=np.uint8)
    X[:, ::3] = 0                                   # MNIST-like: many exact zeros
    y = rng.integers(0, 10, size=1000)
    weights = {}
    before = fastnn.get_num_threads()
    fastnn.set_kernel_level(level)
    try:
        for threads in (1, 2):
            fastnn.set_num_threads(threads)
            fastnn.kernels.set_kernel_threads(threads)
            net = fastnn.Network.mlp([420, 160, 10], loss="softmax_cross_entropy", seed=4)
            net.fit(X, y, epochs=2, batch_size=batch_size, input_scale=1 / 255, verbose=0,
                    optimizer=fastnn.SGD(0.05, momentum=0.9))
            weights[threads] = [p.copy() for layer in net.layers for p in layer.params()]
    finally:
        fastnn.set_num_threads(before)
    for a, b in zip(weights[1], weights[2]):
        np.testing.assert_array_equal(a, b)


@pytest.fixture
def kernel_threads():
    yield
    fastnn.kernels.set_kernel_threads(2)     # the default


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("helper", [False, True])
def test_chunks_alternating_one_and_two_threads(level, helper, monkeypatch, kernel_threads):
    """Chunks run as BLAS's thread count says (the chooser sets it per chunk): at batch 256
    a 2-thread chunk takes the BLAS path, or the panels with the helper thread when that is
    enabled. Alternating them mid-fit trains as the BLAS path does."""
    from fastnn.ops import compiled_ops

    fastnn.kernels.set_kernel_threads(2 if helper else 1)

    class Alternating:
        calls = 0

        def get(self):
            Alternating.calls += 1
            return 1 + Alternating.calls % 2

    X, y = _data(n=3000, seed=8)
    ref_net, ref_rec = _fit("blas", OPTIMIZERS["momentum"], X=X, y=y, batch_size=256, epochs=3)
    monkeypatch.setattr(compiled_ops, "core_blas", lambda: Alternating())
    net, rec = _fit(level, OPTIMIZERS["momentum"], X=X, y=y, batch_size=256, epochs=3)
    assert Alternating.calls >= 3
    _assert_same_training(net, rec, ref_net, ref_rec)


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("rows", [1, 63, 64, 300])
def test_inference_on_the_panels_matches_blas(level, rows):
    """predict_proba packs W for the call from 64 rows on; fewer rows keep BLAS."""
    X, y = _data(n=300, seed=9, kind="uint8")
    net = fastnn.Network.mlp([23, 40, 12], loss="softmax_cross_entropy", seed=3)
    fastnn.set_kernel_level("blas")
    W_before = net.layers[0].W.copy()
    ref = net.predict_proba(X[:rows], input_scale=1 / 255)
    fastnn.set_kernel_level(level)
    got = net.predict_proba(X[:rows], input_scale=1 / 255)
    assert_close(got, ref, np.float32)
    np.testing.assert_array_equal(net.layers[0].W, W_before)   # read, never written
    assert_close(net.evaluate(X[:rows], y[:rows] % 12, input_scale=1 / 255)["loss"],
                 _blas_loss(net, X[:rows], y[:rows] % 12), np.float32)


def _blas_loss(net, X, y):
    level = fastnn.get_kernel_level()
    fastnn.set_kernel_level("blas")
    try:
        return net.evaluate(X, y, input_scale=1 / 255)["loss"]
    finally:
        fastnn.set_kernel_level(level)


@pytest.fixture
def restore_threads():
    """Lets a test call ``fastnn.set_num_threads``; puts everything back afterwards."""
    from fastnn import threads
    from fastnn.threads import core_blas

    saved_global = threads._num_threads
    original = fastnn.get_num_threads()
    blas_before = core_blas().get()
    try:
        yield
    finally:
        fastnn.set_num_threads(original)
        threads._num_threads = saved_global
        core_blas().set(blas_before)


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("batch_size", [16, 64, 256])
def test_fit_with_the_helper_thread_is_bit_identical(level, batch_size, restore_threads,
                                                     kernel_threads):
    """Every weight is computed by the same code whichever thread computes it: a fit on
    2 threads (the helper takes units of the large products) equals one on 1 thread."""
    fastnn.kernels.set_kernel_threads(2)
    # Layer 1 is large enough for the helper (n x 784 x 320 >= 4e6 multiply-adds) at
    # every batch size here; layer 2's input gradient takes the transposed panels.
    X, y = _data(n=600, d=784, classes=12, seed=10)
    weights = {}
    for n_threads in (1, 2):
        fastnn.set_num_threads(n_threads)
        net, _ = _fit(level, OPTIMIZERS["momentum"], sizes=(784, 320, 24, 12), X=X, y=y,
                      batch_size=batch_size, epochs=2)
        weights[n_threads] = [layer.W.copy() for layer in net.layers]
    for a, b in zip(weights[1], weights[2]):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- compacted batches
# A first dense layer's batch holds only the inputs that are not 0 in all of its rows
# (an image's background): the products skip the rest, with the same bits.

def _with_zero_columns(rng, n, n_in, share):
    X = rng.standard_normal((n, n_in)).astype(np.float32)
    X[rng.random(X.shape) < 0.6] = 0                # zeros that rows of a block share or not
    X[8:16] = 0                                     # a block of rows all 0
    X[:, rng.random(n_in) < share] = 0
    X[0, -1] = -0.0 if n_in > 1 else X[0, -1]        # a negative zero is a zero
    cols = np.flatnonzero(X.any(axis=0)).astype(np.intc)
    return X, cols, np.ascontiguousarray(X[:, cols])


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape, share", [((64, 784, 128), 0.4), ((1, 37, 10), 0.5),
                                          ((13, 100, 45), 0.3), ((7, 20, 33), 0.9),
                                          ((16, 784, 128), 1.0), ((9, 70, 32), 0.0)])
def test_compacted_products_give_the_bits_of_the_full_ones(level, threads, shape, share):
    """Forward and every weight-gradient update on the compacted batch against the same
    kernels on the full one: equal bits, padding untouched, and the rows of skipped
    inputs given the update of a zero gradient (decay, momentum, a zero in store mode).
    share = 1.0: no input left (K = 0); 0.0: all of them."""
    n, n_in, n_out = shape
    rng = np.random.default_rng(n + n_in + n_out)
    X, cols, Xc = _with_zero_columns(rng, n, n_in, share)
    W = rng.standard_normal((n_in, n_out)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    P = _packed_of(W)
    code = LEVEL_CODE[level]
    Y, Yc = (np.zeros((n, n_out), np.float32) for _ in range(2))
    _packed.forward(X, P, b, Y, True, code, threads)
    _packed.forward(Xc, P, b, Yc, True, code, threads, cols=cols)
    np.testing.assert_array_equal(Yc, Y)
    dZ = rng.standard_normal((n, n_out)).astype(np.float32)
    for mode, wd in [(0, 0.0), (1, 0.0), (1, 0.01), (2, 0.01)]:
        G = _packed_of(rng.standard_normal((n_in, n_out)).astype(np.float32))
        P1, G1, P2, G2 = P.copy(), G.copy(), P.copy(), G.copy()
        _packed.weight_gradient(X, dZ, P1, G1, mode, 0.1, 0.9, wd, code, threads)
        _packed.weight_gradient(Xc, dZ, P2, G2, mode, 0.1, 0.9, wd, code, threads, cols=cols)
        np.testing.assert_array_equal(P2, P1)
        np.testing.assert_array_equal(G2, G1)
        assert not _panel_padding(P2, n_in, n_out).any()


@needs_simd
def test_compacted_products_refuse_bad_inputs():
    P = _packed_of(np.ones((10, 16), np.float32))
    X = np.ones((2, 3), np.float32)
    Y = np.zeros((2, 16), np.float32)
    code = LEVEL_CODE[SIMD_LEVELS[0]]
    for cols, match in [([0, 1], "cols has 2 inputs"), ([0, 2, 2], "increase"),
                        ([3, 2, 4], "increase"), ([-1, 2, 4], "increase"),
                        ([0, 1, 10], "increase")]:
        with pytest.raises(ValueError, match=match):
            _packed.forward(X, P, None, Y, False, code, 1, cols=cols)
        with pytest.raises(ValueError, match=match):
            _packed.weight_gradient(X, Y, P, P.copy(), 0, 0.1, 0.0, 0.0, code, 1, cols=cols)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("nb, d", [(1, 784), (16, 784), (33, 17), (64, 784), (100, 513)])
def test_compacted_gather_against_numpy(level, threads, nb, d):
    """The batch's inputs that are not 0 in all its rows, and those inputs gathered
    (rows len(cols) apart), whatever the tails of 16 and 8 inputs."""
    rng = np.random.default_rng(nb + d)
    X = rng.integers(0, 256, size=(300, d), dtype=np.uint8)
    X[:, rng.random(d) < 0.5] = 0
    X[:, -1] = 0
    X[rng.integers(0, 300), -1] = 9                 # an input only one image has
    rows = rng.integers(0, 300, size=nb).astype(np.intp)
    out = np.full(nb * d + 5, -7.0, np.float32)
    cols = _packed.gather(X, rows, out[:nb * d].reshape(nb, d), np.float32(1 / 255),
                          LEVEL_CODE[level], threads, compact=True)
    np.testing.assert_array_equal(cols, np.flatnonzero(X[rows].any(axis=0)))
    k = len(cols)
    np.testing.assert_array_equal(out[:nb * k].reshape(nb, k),
                                  X[rows][:, cols].astype(np.float32) * np.float32(1 / 255))
    assert (out[nb * k:] == -7.0).all()


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("threads", [1, 2])
def test_uint8_fit_on_compacted_batches_gives_the_bits_of_float_input(level, opt, threads,
                                                                      kernel_threads):
    """uint8 images (compacted batches: most of the background skipped) train to the
    same bits as the same values given as float32 (full batches), with every optimizer:
    the skipped inputs' weights still decay and their momentum still runs down."""
    rng = np.random.default_rng(5)
    X = rng.integers(0, 256, size=(400, 200), dtype=np.uint8)
    X[:, rng.random(200) < 0.5] = 0                 # background: 0 in every image
    X[rng.random(X.shape) < 0.6] = 0                # and in many images
    y = rng.integers(0, 10, size=400)
    _assert_uint8_trains_as_float(X, y, level, threads, [200, 96, 10], 32,
                                  lambda: copy.deepcopy(OPTIMIZERS[opt]), seed=4)


def _assert_uint8_trains_as_float(X, y, level, threads, sizes, batch_size, optimizer, seed):
    """Two epochs on uint8 X (scaled 1/255) and on the same values as float32 give the
    same bits, at this kernel level and thread count."""
    Xf = X.astype(np.float32) * np.float32(1 / 255)
    before = fastnn.get_num_threads()
    fastnn.set_kernel_level(level)
    weights = []
    try:
        fastnn.set_num_threads(threads)
        fastnn.kernels.set_kernel_threads(threads)
        for data, scale in ((X, 1 / 255), (Xf, 1.0)):
            net = fastnn.Network.mlp(sizes, loss="softmax_cross_entropy", seed=seed)
            net.fit(data, y, epochs=2, batch_size=batch_size, input_scale=scale, verbose=0,
                    optimizer=optimizer())
            weights.append([p.copy() for layer in net.layers for p in layer.params()])
    finally:
        fastnn.set_num_threads(before)
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("threads", [1, 2])
def test_each_compacted_batch_keeps_its_own_inputs(level, threads, kernel_threads):
    """Sparse rows: every batch of 8 has other inputs that are not 0, so a batch compacted
    by another batch's inputs (the next one's are found while this one trains, on the
    helper thread) loses some and trains to other bits than the float32 input does."""
    rng = np.random.default_rng(8)
    X = np.zeros((240, 120), np.uint8)
    for row in X:
        row[rng.choice(120, size=3, replace=False)] = rng.integers(1, 256, size=3)
    y = rng.integers(0, 10, size=240)
    _assert_uint8_trains_as_float(X, y, level, threads, [120, 48, 10], 8,
                                  lambda: fastnn.SGD(0.5), seed=2)
