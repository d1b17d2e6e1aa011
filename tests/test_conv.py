"""The image kernels (convolution, max pooling, dropout) against their NumPy twins.

Each compiled op runs beside its ``NumpyOps`` twin on the same inputs, in
float32 and float64, on shapes that reach the edge cases: batch 1, one and
several channels, non-square images and kernels, stride 2, padding (including
"same" with an even kernel), pools that drop the last row and column, and
non-contiguous input. The NumPy twins themselves are checked against plain
loops written from the definitions.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_close

from fastnn import Conv2D
from fastnn.layers.dropout import dropout_scale, dropout_threshold
from fastnn.ops import ACTIVATIONS, CompiledOps, NumpyOps

C = CompiledOps()
P = NumpyOps()

# (n, H, W, C, C_out, kh, kw, stride, padding as a Conv2D argument)
CONV_CASES = [
    (1, 5, 5, 1, 1, 3, 3, 1, 0),
    (3, 7, 6, 2, 4, 3, 2, 2, (1, 0)),
    (2, 8, 8, 3, 5, 4, 4, 1, "same"),
    (4, 9, 7, 1, 3, 5, 3, (2, 1), (2, 1)),
    (1, 6, 6, 4, 2, 1, 1, 1, "valid"),
    (2, 11, 5, 3, 2, 3, 5, (1, 2), (1, 2)),
    (5, 28, 28, 1, 10, 5, 5, 1, 0),          # the tutorial's layer
    (2, 4, 3, 2, 3, 3, 3, 1, "same"),
    (2, 3, 4, 1, 2, 1, 2, 1, (2, 3)),        # padding beyond the kernel: windows of zeros
    (1, 5, 5, 2, 2, 2, 2, 2, (3, 2)),
]
# (n, H, W, C, pool, stride)
POOL_CASES = [
    (1, 4, 4, 1, 2, None),
    (2, 5, 5, 3, 2, None),           # the last row and column are dropped
    (3, 7, 6, 2, (3, 2), (2, 1)),    # overlapping windows
    (1, 3, 3, 2, 3, 1),
    (2, 6, 9, 4, (2, 3), None),
    (4, 24, 24, 10, 2, None),        # the tutorial's pool
]


def _conv(case):
    n, H, W, c, co, kh, kw, stride, padding = case
    layer = Conv2D(c, co, (kh, kw), stride=stride, padding=padding)
    layer.build((H, W, c))
    return layer


def _strided(a: np.ndarray) -> np.ndarray:
    big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
    view = big[tuple(slice(None, None, 2) for _ in a.shape)]
    view[...] = a
    assert not view.flags.c_contiguous
    return view


def _naive_conv(X, W, b, stride, pads):
    """The definition, one output value at a time (float64)."""
    n, H, Wd, c = X.shape
    kh, kw, _, co = W.shape
    (sh, sw), (pt, pb, pl, pr) = stride, pads
    Xp = np.zeros((n, H + pt + pb, Wd + pl + pr, c))
    Xp[:, pt:pt + H, pl:pl + Wd] = X
    oh, ow = (H + pt + pb - kh) // sh + 1, (Wd + pl + pr - kw) // sw + 1
    Y = np.zeros((n, oh, ow, co))
    for i in range(oh):
        for j in range(ow):
            patch = Xp[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :]
            Y[:, i, j, :] = np.tensordot(patch, W, axes=([1, 2, 3], [0, 1, 2])) + b
    return Y


def _naive_pool(X, pool, stride):
    n, H, Wd, c = X.shape
    (ph, pw), (sh, sw) = pool, stride
    oh, ow = (H - ph) // sh + 1, (Wd - pw) // sw + 1
    Y = np.empty((n, oh, ow, c), X.dtype)
    for i in range(oh):
        for j in range(ow):
            Y[:, i, j] = X[:, i * sh:i * sh + ph, j * sw:j * sw + pw].max(axis=(1, 2))
    return Y


@pytest.mark.parametrize("case", CONV_CASES)
def test_numpy_conv_twin_is_the_definition(case, rng):
    layer = _conv(case)
    n, H, W, c = case[:4]
    X = rng.standard_normal((n, H, W, c))
    Wt = rng.standard_normal(layer.param_shapes()["W"])
    b = rng.standard_normal(layer.out_channels)
    want = _naive_conv(X, Wt, b, layer.stride, layer.pads)
    got = P.conv2d_forward(X, Wt, b, layer.stride, layer.pads, "identity")
    assert got.shape == (n,) + layer.out_shape
    assert_close(got, want, np.float64)


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("contiguous", [True, False])
def test_conv_forward_matches(case, activation, contiguous, dtype, rng):
    layer = _conv(case)
    n, H, W, c = case[:4]
    X = rng.standard_normal((n, H, W, c)).astype(dtype)
    Wt = (rng.standard_normal(layer.param_shapes()["W"]) * 0.5).astype(dtype)
    b = rng.standard_normal(layer.out_channels).astype(dtype)
    if not contiguous:
        X, Wt = _strided(X), _strided(Wt)
    got = C.conv2d_forward(X, Wt, b, layer.stride, layer.pads, activation)
    want = P.conv2d_forward(X, Wt, b, layer.stride, layer.pads, activation)
    assert got.dtype == dtype and got.shape == (n,) + layer.out_shape
    assert_close(got, want, dtype)


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_conv_gradients_match(case, contiguous, dtype, rng):
    layer = _conv(case)
    n, H, W, c = case[:4]
    X = rng.standard_normal((n, H, W, c)).astype(dtype)
    Wt = rng.standard_normal(layer.param_shapes()["W"]).astype(dtype)
    dZ = rng.standard_normal((n,) + layer.out_shape).astype(dtype)
    if not contiguous:
        X, Wt, dZ = _strided(X), _strided(Wt), _strided(dZ)
    for ops in (C, P):
        dW, db = ops.conv2d_backward_weight(X, dZ, layer.kernel_size, layer.stride, layer.pads)
        dX = ops.conv2d_backward_input(dZ, Wt, layer.in_shape, layer.stride, layer.pads)
        assert dW.shape == Wt.shape and db.shape == (layer.out_channels,)
        assert dX.shape == X.shape and dX.dtype == dtype
        if ops is C:
            got = dW, db, dX
    assert_close(got[0], dW, dtype)
    assert_close(got[1], db, dtype)
    assert_close(got[2], dX, dtype)


@pytest.mark.parametrize("case", CONV_CASES[:6])
def test_conv_gradients_are_the_adjoints(case, rng):
    """<conv(X, W), dZ> = <X, dX> = <W, dW>: the backward ops are the forward's adjoints."""
    layer = _conv(case)
    n, H, W, c = case[:4]
    X = rng.standard_normal((n, H, W, c))
    Wt = rng.standard_normal(layer.param_shapes()["W"])
    dZ = rng.standard_normal((n,) + layer.out_shape)
    zero_b = np.zeros(layer.out_channels)
    for ops in (C, P):
        inner = float((ops.conv2d_forward(X, Wt, zero_b, layer.stride, layer.pads,
                                          "identity") * dZ).sum())
        dW, db = ops.conv2d_backward_weight(X, dZ, layer.kernel_size, layer.stride, layer.pads)
        dX = ops.conv2d_backward_input(dZ, Wt, layer.in_shape, layer.stride, layer.pads)
        assert np.isclose(float((X * dX).sum()), inner, rtol=1e-10)
        assert np.isclose(float((Wt * dW).sum()), inner, rtol=1e-10)
        np.testing.assert_allclose(db, dZ.sum(axis=(0, 1, 2)), rtol=1e-12)


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_maxpool_matches(case, contiguous, dtype, rng):
    n, H, W, c, pool, stride = case
    pool = pool if isinstance(pool, tuple) else (pool, pool)
    stride = pool if stride is None else (stride if isinstance(stride, tuple) else (stride,) * 2)
    X = rng.standard_normal((n, H, W, c)).astype(dtype)
    X[0, 0, 0, 0] = X[0, 0, 1, 0] = X[0, 1, 0, 0] = 5  # a tie: the first maximum wins
    if not contiguous:
        X = _strided(X)
    Yc, Ac = C.maxpool2d_forward(X, pool, stride)
    Yp, Ap = P.maxpool2d_forward(X, pool, stride)
    np.testing.assert_array_equal(Yc, Yp)        # a maximum is exact
    np.testing.assert_array_equal(Ac, Ap)
    np.testing.assert_array_equal(Yp, _naive_pool(np.asarray(X), pool, stride))
    assert Ac.dtype == np.int32
    # Each argmax points at its maximum.
    flat = np.ascontiguousarray(X).reshape(n, -1)
    np.testing.assert_array_equal(np.take_along_axis(flat, Ap.reshape(n, -1), 1),
                                  Yp.reshape(n, -1))
    assert Ap.reshape(-1)[0] == 0  # the tie went to the first of the window
    dY = rng.standard_normal(Yp.shape).astype(dtype)
    dXc = C.maxpool2d_backward(dY, Ac, (H, W, c))
    dXp = P.maxpool2d_backward(dY, Ap, (H, W, c))
    assert dXc.shape == (n, H, W, c) and dXc.dtype == dtype
    assert_close(dXc, dXp, dtype)
    assert np.isclose(float(dXp.sum()), float(dY.sum(dtype=np.float64)), rtol=1e-4)


def test_maxpool_drops_windows_that_do_not_fit():
    X = np.arange(25, dtype=np.float64).reshape(1, 5, 5, 1)
    for ops in (C, P):
        Y, _ = ops.maxpool2d_forward(X, (2, 2), (2, 2))
        np.testing.assert_array_equal(Y[0, :, :, 0], [[6, 8], [16, 18]])


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.9])
def test_dropout_masks_are_identical_and_fresh(rate, dtype, rng):
    X = rng.standard_normal((64, 37)).astype(dtype)
    key = 0xFEDCBA9876543210
    Yc, Mc = C.dropout_forward(X, rate, key, 7, 3)
    Yp, Mp = P.dropout_forward(X, rate, key, 7, 3)
    np.testing.assert_array_equal(Mc, Mp)
    np.testing.assert_array_equal(Yc, Yp)
    assert Mc.dtype == np.uint8 and Yc.dtype == dtype
    kept = Mp.astype(bool)
    # 1 / (1 - rate) for the rate as the 31-bit threshold holds it
    scale = dtype.type(dropout_scale(dropout_threshold(rate)))
    assert abs(float(scale) * (1 - rate) - 1) < 1e-6
    np.testing.assert_allclose(Yp[kept], X[kept] * scale, rtol=1e-6)
    assert (Yp[~kept] == 0).all()
    assert abs((1 - kept.mean()) - rate) < 0.05
    if 0 < rate:
        # Another batch (counter), another layer or another key: another mask.
        for args in ((key, 8, 3), (key, 7, 4), (key + 1, 7, 3)):
            assert not np.array_equal(P.dropout_forward(X, rate, *args)[1], Mp)
            np.testing.assert_array_equal(C.dropout_forward(X, rate, *args)[1],
                                          P.dropout_forward(X, rate, *args)[1])
    dY = rng.standard_normal(X.shape).astype(dtype)
    dXc = C.dropout_backward(dY, Mc, rate)
    dXp = P.dropout_backward(dY, Mp, rate)
    np.testing.assert_array_equal(dXc, dXp)
    np.testing.assert_array_equal(dXp, np.where(kept, dY * scale, 0))


def test_dropout_hash_values_are_pinned():
    """The generator is part of the model's reproducibility: pin a few draws."""
    mask = P.dropout_mask((16,), 0.5, 12345, 0, 0)
    again = C.dropout_forward(np.ones(16), 0.5, 12345, 0, 0)[1]
    np.testing.assert_array_equal(mask, again)
    # splitmix64's finaliser of 1 (a published constant of the algorithm's test vectors)
    from fastnn.ops.numpy_ops import _mix64, _mix64_array

    assert _mix64(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF
    assert int(_mix64_array(np.array([0x9E3779B97F4A7C15], np.uint64))[0]) == 0xE220A8397B1DCDAF


def test_dropout_gradient_is_the_central_difference(rng):
    X = rng.standard_normal((3, 5))
    G = rng.standard_normal((3, 5))
    eps = 1e-6
    _, mask = P.dropout_forward(X, 0.4, 99, 1, 0)
    analytic = P.dropout_backward(G, mask, 0.4)
    numeric = np.empty_like(X)
    for idx in np.ndindex(X.shape):
        Xp, Xm = X.copy(), X.copy()
        Xp[idx] += eps
        Xm[idx] -= eps
        numeric[idx] = ((P.dropout_forward(Xp, 0.4, 99, 1, 0)[0] * G).sum()
                        - (P.dropout_forward(Xm, 0.4, 99, 1, 0)[0] * G).sum()) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name, reference", [("sigmoid", lambda v: 1 / (1 + np.exp(-v))),
                                             ("tanh", np.tanh)])
def test_float32_sigmoid_and_tanh_are_accurate_and_lane_independent(name, reference):
    """The compiled float32 sigmoid and tanh (a vectorised polynomial exp, not libm's)
    stay within a few float32 ulps, give each value the same result wherever it lies
    in the array (vector lanes or the scalar tail), and keep NaN as NaN."""
    x = np.concatenate([np.linspace(-100, 100, 20001), np.linspace(-0.1, 0.1, 2001),
                        [0.0, -0.0, 1e-30, -1e-30, 88.5, -88.5, np.inf, -np.inf]]).astype(np.float32)
    got = C.activation(x[None, :], name)[0]
    want = reference(x.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)
    alone = np.array([C.activation(x[i:i + 1][None, :], name)[0, 0] for i in range(0, x.size, 97)])
    np.testing.assert_array_equal(alone, got[::97])
    for start in range(4):  # every alignment of the vector loop
        np.testing.assert_array_equal(C.activation(x[None, start:start + 203], name)[0],
                                      got[start:start + 203])
    nan = C.activation(np.array([[np.nan, 1, np.nan, 2, 3, np.nan]], np.float32), name)[0]
    assert np.isnan(nan[[0, 2, 5]]).all() and np.isfinite(nan[[1, 3, 4]]).all()


def test_same_padding_follows_pytorch():
    """"same": output as large as the input; an even kernel's extra zero goes after
    (below, right), as PyTorch's padding="same" puts it."""
    layer = Conv2D(1, 1, (4, 3), padding="same")
    assert layer.pads == (1, 2, 1, 1)
    assert layer.build((7, 5, 1)) == (7, 5, 1)
    # One tap at the kernel's (0, 0): output (i, j) reads input (i - 1, j - 1).
    W = np.zeros((4, 3, 1, 1))
    W[0, 0] = 1
    X = np.arange(35, dtype=np.float64).reshape(1, 7, 5, 1)
    for ops in (C, P):
        Y = ops.conv2d_forward(X, W, np.zeros(1), layer.stride, layer.pads, "identity")
        np.testing.assert_array_equal(Y[0, 1:, 1:, 0], X[0, :-1, :-1, 0])
        assert (Y[0, 0, :, 0] == 0).all() and (Y[0, :, 0, 0] == 0).all()
