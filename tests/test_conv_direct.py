"""The direct float32 convolution kernels (stride 1) and the AVX-512 pooling kernels
against the NumPy twin and the core's Cython kernels.

They run at the AVX2 and AVX-512 kernel levels in place of im2col + GEMM: the
forward with its bias, and the weight gradient. Shapes reach their edges: batch 1,
one and several input channels, output channels in one partial vector, exactly one,
and several vector groups (the last one partial), rows split into register blocks,
tap counts that are not multiples of the tap block, padding on any side, and 1x1
kernels. Whole fits at each level agree with the BLAS level.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close

import fastnn
from fastnn._core import _kernels
from fastnn.ops import NumpyOps

_packed = pytest.importorskip("fastnn._core._packed")

P = NumpyOps()
LEVEL_CODE = {"avx2": 1, "avx512": 2}
SIMD_LEVELS = [name for name in fastnn.available_kernel_levels() if name != "blas"]
needs_simd = pytest.mark.skipif(not SIMD_LEVELS, reason="no AVX2 or AVX-512 on this machine")

# (n, H, W, C, CO, KH, KW, (pad top, bottom, left, right))
CASES = [
    (1, 5, 5, 1, 1, 3, 3, (0, 0, 0, 0)),
    (3, 28, 28, 1, 10, 5, 5, (0, 0, 0, 0)),      # the tutorial's layer
    (2, 7, 9, 3, 13, 3, 2, (1, 1, 0, 1)),
    (1, 5, 5, 2, 1, 1, 1, (0, 0, 0, 0)),
    (2, 6, 4, 4, 25, 3, 3, (1, 1, 1, 1)),         # two channel groups at AVX-512, four at AVX2
    (2, 9, 40, 2, 17, 2, 7, (0, 1, 3, 3)),        # rows of 40 outputs: several row blocks
    (1, 3, 3, 1, 40, 3, 3, (2, 2, 2, 2)),         # padding beyond the kernel
    (4, 12, 11, 5, 8, 3, 3, (1, 1, 1, 1)),        # 45 taps: tap blocks with a tail
    (1, 30, 1, 1, 3, 4, 1, (0, 0, 0, 0)),         # width 1
    (2, 4, 33, 1, 16, 1, 8, (0, 0, 0, 0)),        # exactly one AVX-512 vector of channels
]


def _geometry(case):
    _, H, W, C, CO, KH, KW, (pt, pb, pl, pr) = case
    OH, OW = H + pt + pb - KH + 1, W + pl + pr - KW + 1
    return np.array([H, W, C, OH, OW, CO, KH, KW, 1, 1, pt, pl], np.int32), OH, OW


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("case", CASES, ids=[str(c[:7]) for c in CASES])
def test_direct_convolution_matches_twin(case, level, rng):
    n, H, W, C, CO, KH, KW, pad = case
    g, OH, OW = _geometry(case)
    X = rng.standard_normal((n, H, W, C)).astype(np.float32)
    Wt = rng.standard_normal((KH, KW, C, CO)).astype(np.float32)
    b = rng.standard_normal(CO).astype(np.float32)
    dZ = rng.standard_normal((n, OH, OW, CO)).astype(np.float32)

    Y = np.full((n, OH * OW * CO), np.nan, np.float32)
    _packed.conv_forward(X.reshape(n, -1), Wt.ravel(), b, Y, g, LEVEL_CODE[level])
    assert_close(Y.reshape(n, OH, OW, CO), P.conv2d_forward(X, Wt, b, (1, 1), pad, "identity"),
                 np.float32)

    dW, db = np.full(Wt.size, np.nan, np.float32), np.full(CO, np.nan, np.float32)
    _packed.conv_weight_gradient(X.reshape(n, -1), dZ.reshape(n, -1), dW, db, g,
                                 LEVEL_CODE[level])
    dW_twin, db_twin = P.conv2d_backward_weight(X, dZ, (KH, KW), (1, 1), pad)
    assert_close(dW.reshape(Wt.shape), dW_twin, np.float32)
    assert_close(db, db_twin, np.float32)

    # A helper thread shares the images: the same bits (each image, and each unit's
    # partial sum, is computed by the same code whoever runs it).
    Y2, dW2, db2 = np.empty_like(Y), np.empty_like(dW), np.empty_like(db)
    _packed.conv_forward(X.reshape(n, -1), Wt.ravel(), b, Y2, g, LEVEL_CODE[level], threads=2)
    _packed.conv_weight_gradient(X.reshape(n, -1), dZ.reshape(n, -1), dW2, db2, g,
                                 LEVEL_CODE[level], threads=2)
    np.testing.assert_array_equal(Y2, Y)
    np.testing.assert_array_equal(dW2, dW)
    np.testing.assert_array_equal(db2, db)


@needs_simd
def test_direct_convolution_refuses_what_it_cannot_do():
    level = LEVEL_CODE[SIMD_LEVELS[-1]]
    g, OH, OW = _geometry(CASES[1])
    X = np.zeros((2, 784), np.float32)
    Wt = np.zeros(250, np.float32)
    b = np.zeros(10, np.float32)
    Y = np.zeros((2, OH * OW * 10), np.float32)
    strided = g.copy()
    strided[8] = 2
    strided[3] = 12
    with pytest.raises(ValueError, match="stride 1"):
        _packed.conv_forward(X, Wt, b, np.zeros((2, 12 * 24 * 10), np.float32), strided, level)
    with pytest.raises(ValueError, match="H\\*W\\*C"):
        _packed.conv_forward(np.zeros((2, 700), np.float32), Wt, b, Y, g, level)
    with pytest.raises(ValueError, match="KH\\*KW\\*C\\*CO"):
        _packed.conv_weight_gradient(X, Y, Wt[:249], b, g, level)
    with pytest.raises(ValueError, match="rows"):
        _packed.conv_weight_gradient(X, Y[:1], Wt, b, g, level)
    with pytest.raises(ValueError, match="output channel"):
        _packed.conv_weight_gradient(X, Y, Wt, b[:9], g, level)
    with pytest.raises(ValueError, match="threads"):
        _packed.conv_forward(X, Wt, b, Y, g, level, threads=3)
    with pytest.raises(ValueError, match="level"):
        _packed.conv_forward(X, Wt, b, Y, g, 0)
    with pytest.raises(ValueError):
        _packed.conv_forward(X, Wt, b, Y, g[:11], level)


def _cnn(seed: int) -> fastnn.Network:
    # A convolution after another (so one takes the input gradient through columns),
    # "same" padding, every activation the direct path applies after its kernel.
    layers = [fastnn.Conv2D(1, 6, 3, padding="same", activation="relu"),
              fastnn.Conv2D(6, 18, (3, 2), activation="tanh"), fastnn.MaxPool2D(2),
              fastnn.Conv2D(18, 4, 1, activation="sigmoid"), fastnn.Flatten(),
              fastnn.Dense(4 * 5 * 5, 10)]
    return fastnn.Network(layers, loss="softmax_cross_entropy", input_shape=(12, 11, 1),
                          seed=seed)


def _cnn_padded(seed: int) -> fastnn.Network:
    # Input gradients of convolutions with "same" and explicit padding, an even kernel
    # and several input channels (the direct kernels' flipped-kernel convolution of dZ),
    # and one with padding beyond its kernel (which keeps col2im).
    layers = [fastnn.Conv2D(2, 4, (2, 3), padding="same", activation="relu"),
              fastnn.Conv2D(4, 5, 3, padding=1, activation="tanh"),
              fastnn.Conv2D(5, 3, 1, padding=1, activation="sigmoid"), fastnn.MaxPool2D(2),
              fastnn.Flatten(), fastnn.Dense(5 * 5 * 3, 10)]
    return fastnn.Network(layers, loss="softmax_cross_entropy", input_shape=(8, 9, 2),
                          seed=seed)


def _cnn_tutorial(seed: int) -> fastnn.Network:
    # The tutorial's shape: a first convolution with its 2 x 2 pool (fused in training at
    # AVX-512, forward and weight gradient), here over an odd width (a column dropped).
    layers = [fastnn.Conv2D(1, 4, 3, activation="sigmoid"), fastnn.MaxPool2D(2),
              fastnn.Flatten(), fastnn.Dense(5 * 4 * 4, 10, activation="tanh"),
              fastnn.Dense(10, 10)]
    return fastnn.Network(layers, loss="softmax_cross_entropy", input_shape=(12, 11, 1),
                          seed=seed)


@needs_simd
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("build, shape", [(_cnn, (12, 11)), (_cnn_padded, (8, 9, 2)),
                                          (_cnn_tutorial, (12, 11))],
                         ids=["cnn", "padded", "tutorial"])
def test_fit_with_direct_kernels_matches_blas_level(level, build, shape, rng):
    X = rng.random((300, *shape), dtype=np.float32)
    y = rng.integers(0, 10, 300)
    nets = {}
    for name in ("blas", level):
        fastnn.set_kernel_level(name)
        try:
            net = build(seed=3)
            net.fit(X, y, epochs=3, batch_size=7, optimizer=fastnn.SGD(0.05, momentum=0.9),
                    verbose=0)
            nets[name] = (net, net.predict_proba(X[:50]))
        finally:
            fastnn.set_kernel_level(None)
    (ref, p_ref), (got, p_got) = nets["blas"], nets[level]
    for a, b in zip(ref.layers, got.layers):
        for pa, pb in zip(a.params(), b.params()):
            assert_close(pb, pa, np.float32, rtol=1e-3)
    assert_close(p_got, p_ref, np.float32, rtol=1e-3)


needs_avx512 = pytest.mark.skipif("avx512" not in SIMD_LEVELS, reason="no AVX-512 on this machine")

# (n, H, W, C, pool): one partial channel vector, exactly one, two groups (the second
# partial), windows that leave a row and a column uncovered, 3x3 windows.
POOL_CASES = [(3, 24, 24, 10, 2), (2, 5, 7, 19, 2), (2, 6, 6, 3, 3), (1, 4, 4, 16, 2),
              (1, 2, 2, 1, 2), (4, 9, 8, 33, 3)]
ACT_CODE = {"identity": 0, "sigmoid": 1, "tanh": 2, "relu": 3}


@needs_avx512
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pool_kernels_match_the_cython_ones_exactly(case, rng):
    n, H, W, C, k = case
    OH, OW = H // k, W // k
    g = np.array([H, W, C, OH, OW, k, k, k, k], np.int32)
    X = rng.standard_normal((n, H * W * C)).astype(np.float32)
    X[0, : 3 * C] = 0.5                       # ties: the first maximum wins
    X[-1, C] = np.nan                         # NaN never replaces a value
    Y, A = np.empty((n, OH * OW * C), np.float32), np.empty((n, OH * OW * C), np.int32)
    Yc, Ac, Y2, A2 = Y.copy(), A.copy(), Y.copy(), A.copy()
    _packed.pool_forward(X, Y, A, g)
    _kernels.maxpool2d_forward(X, Yc, Ac, list(g))
    _packed.pool_forward(X, Y2, A2, g, threads=2)
    np.testing.assert_array_equal(Y, Yc)
    np.testing.assert_array_equal(A, Ac)
    np.testing.assert_array_equal(Y2, Yc)
    np.testing.assert_array_equal(A2, Ac)

    dY = rng.standard_normal(Y.shape).astype(np.float32)
    for act, code in ACT_CODE.items():
        out = np.nan_to_num(P.activation(Y, act))   # the pool's output of an activated layer
        dZ = np.full(X.shape, np.nan, np.float32)
        _packed.pool_backward_act(dY, A, out, dZ, code, g)
        d = P.backprop_activation(out, dY, act)
        expected = np.zeros_like(X)
        for s in range(n):
            np.add.at(expected[s], A[s], d[s])   # each window's maximum, zeros elsewhere
        np.testing.assert_array_equal(dZ, expected)
        dZ2 = np.full(X.shape, np.nan, np.float32)
        _packed.pool_backward_act(dY, A, out, dZ2, code, g, threads=2)
        np.testing.assert_array_equal(dZ2, dZ)


@needs_avx512
def test_pool_kernels_refuse_bad_input():
    g = np.array([4, 4, 2, 2, 2, 2, 2, 2, 2], np.int32)
    X, Y = np.zeros((1, 32), np.float32), np.zeros((1, 8), np.float32)
    A = np.zeros((1, 8), np.int32)
    with pytest.raises(ValueError, match="H\\*W\\*C"):
        _packed.pool_forward(np.zeros((1, 31), np.float32), Y, A, g)
    with pytest.raises(ValueError, match="outside the image"):
        _packed.pool_backward_act(Y, A - 1, Y, X.copy(), 0, g)
    overlapping = np.array([4, 4, 2, 3, 3, 2, 2, 1, 1], np.int32)
    with pytest.raises(ValueError, match="tile"):
        _packed.pool_backward_act(np.zeros((1, 18), np.float32), np.zeros((1, 18), np.int32),
                                  np.zeros((1, 18), np.float32), X.copy(), 0, overlapping)
    with pytest.raises(ValueError, match="activation"):
        _packed.pool_backward_act(Y, A, Y, X.copy(), 7, g)
    with pytest.raises(ValueError, match="windows"):
        _packed.pool_forward(X, Y, A, np.array([4, 4, 2, 3, 3, 2, 2, 2, 2], np.int32))


# (n, H, W, C, CO, KH, KW, (pad top, left)) for a convolution and the 2 x 2 pool after
# it: the tutorial's; odd output sizes (a row and a column the pool drops); two channel
# groups (the second partial); pooled rows of 13 (register blocks of 5, 4, 4) and of 1;
# several input channels with padding; batch 1.
FUSED_CASES = [(3, 28, 28, 1, 10, 5, 5, (0, 0)), (2, 10, 9, 2, 25, 2, 2, (0, 0)),
               (2, 9, 28, 3, 7, 3, 3, (1, 1)), (1, 4, 3, 1, 16, 3, 2, (0, 0)),
               (2, 7, 30, 1, 3, 3, 5, (2, 0))]


@needs_avx512
@pytest.mark.parametrize("case", FUSED_CASES, ids=str)
def test_fused_conv_pool_gives_the_bits_of_the_two_kernels(case, rng):
    """The convolution with its 2 x 2 pool in one pass (training's forward at AVX-512)
    against the convolution kernel and then the pool kernel, ties and NaN included."""
    n, H, W, C, CO, KH, KW, (pt, pl) = case
    OH, OW = H + 2 * pt - KH + 1, W + 2 * pl - KW + 1
    g = np.array([H, W, C, OH, OW, CO, KH, KW, 1, 1, pt, pl], np.int32)
    pg = np.array([OH, OW, CO, OH // 2, OW // 2, 2, 2, 2, 2], np.int32)
    X = rng.standard_normal((n, H * W * C)).astype(np.float32)
    X[0, : 3 * W * C] = 0.25              # equal outputs: ties, the first maximum wins
    X[-1, (H // 2) * W * C] = np.nan      # NaN outputs, which never replace a maximum
    Wt = rng.standard_normal(KH * KW * C * CO).astype(np.float32)
    b = rng.standard_normal(CO).astype(np.float32)
    Z = np.empty((n, OH * OW * CO), np.float32)
    _packed.conv_forward(X, Wt, b, Z, g, LEVEL_CODE["avx512"])
    cols = (OH // 2) * (OW // 2) * CO
    Y, A = np.empty((n, cols), np.float32), np.empty((n, cols), np.int32)
    _packed.pool_forward(Z, Y, A, pg)
    assert np.isnan(Y).any()
    for threads in (1, 2):
        Yf, Af = np.full((n, cols), -1.0, np.float32), np.full((n, cols), -1, np.int32)
        _packed.conv_pool_forward(X, Wt, b, Yf, Af, g, pg, threads)
        np.testing.assert_array_equal(Yf, Y)
        np.testing.assert_array_equal(Af, A)

    # The weight gradient through the pool, each image's dZ made in cache, against the
    # pool's backward and then the weight-gradient kernel.
    dY = rng.standard_normal((n, cols)).astype(np.float32)
    for act, code in ACT_CODE.items():
        out = np.nan_to_num(P.activation(Y, act))
        dZ = np.empty_like(Z)
        _packed.pool_backward_act(dY, A, out, dZ, code, pg)
        dW, db = np.empty_like(Wt), np.empty_like(b)
        _packed.conv_weight_gradient(X, dZ, dW, db, g, LEVEL_CODE["avx512"])
        for threads in (1, 2):
            dWf, dbf = np.full_like(Wt, np.nan), np.full_like(b, np.nan)
            _packed.conv_pool_weight_gradient(X, dY, A, out, code, dWf, dbf, g, pg, threads)
            np.testing.assert_array_equal(dWf, dW)
            np.testing.assert_array_equal(dbf, db)


@needs_avx512
def test_fused_conv_pool_refuses_what_it_cannot_do():
    g = np.array([6, 6, 1, 4, 4, 3, 3, 3, 1, 1, 0, 0], np.int32)
    X, Wt, b = np.zeros((1, 36), np.float32), np.zeros(27, np.float32), np.zeros(3, np.float32)
    Y, A = np.zeros((1, 12), np.float32), np.zeros((1, 12), np.int32)
    _packed.conv_pool_forward(X, Wt, b, Y, A, g, np.array([4, 4, 3, 2, 2, 2, 2, 2, 2], np.int32))
    with pytest.raises(ValueError, match="do not fuse"):     # 3 x 3 windows
        _packed.conv_pool_forward(X, Wt, b, Y[:, :3], A[:, :3], g,
                                  np.array([4, 4, 3, 1, 1, 3, 3, 3, 3], np.int32))
    with pytest.raises(ValueError, match="do not fuse"):     # not over this convolution
        _packed.conv_pool_forward(X, Wt, b, Y, A, g,
                                  np.array([4, 4, 2, 2, 2, 2, 2, 2, 2], np.int32))
    with pytest.raises(ValueError, match="wrong shape"):
        _packed.conv_pool_forward(X, Wt, b, Y[:, :6], A, g,
                                  np.array([4, 4, 3, 2, 2, 2, 2, 2, 2], np.int32))
    with pytest.raises(ValueError, match="stride 1"):
        _packed.conv_pool_forward(X, Wt, b, Y, A, np.array([6, 6, 1, 2, 2, 3, 3, 3, 2, 2, 0, 0],
                                                           np.int32),
                                  np.array([2, 2, 3, 1, 1, 2, 2, 2, 2], np.int32))
    pg = np.array([4, 4, 3, 2, 2, 2, 2, 2, 2], np.int32)
    dW, db = np.zeros(27, np.float32), np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="outside the image"):
        _packed.conv_pool_weight_gradient(X, Y, A + 48, Y, 1, dW, db, g, pg)
    with pytest.raises(ValueError, match="activation"):
        _packed.conv_pool_weight_gradient(X, Y, A, Y, 9, dW, db, g, pg)
    with pytest.raises(ValueError, match="wrong shape"):
        _packed.conv_pool_weight_gradient(X, Y[:, :6], A, Y, 1, dW, db, g, pg)


@needs_simd
def test_fit_on_two_threads_gives_the_same_bits_as_on_one(rng):
    """With several threads a chunk shares its image kernels (and the packed dense ones)
    with a helper thread; every unit of work is computed by the same code whoever runs
    it, and partial sums are added in a fixed order, so the fit does not change."""
    X = rng.random((400, 12, 11), dtype=np.float32)
    y = rng.integers(0, 10, 400)
    weights = {}
    before = fastnn.get_num_threads()
    try:
        for threads in (1, 2):
            fastnn.set_num_threads(threads)
            net = _cnn(seed=5)
            net.fit(X, y, epochs=2, batch_size=64, optimizer=fastnn.SGD(0.05, momentum=0.9),
                    verbose=0)
            weights[threads] = [p.copy() for layer in net.layers for p in layer.params()]
    finally:
        fastnn.set_num_threads(before)
    for a, b in zip(weights[1], weights[2]):
        np.testing.assert_array_equal(a, b)
