"""fastnn.Hopfield: Hebbian storage, recall, capacity, energy, and bad input."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import fastnn
import fastnn.hopfield


def random_patterns(rng: np.random.Generator, n_patterns: int, n_units: int) -> np.ndarray:
    """Independent random ±1 patterns, each unit +1 with probability 1/2."""
    return np.where(rng.random((n_patterns, n_units)) < 0.5, -1, 1)


def flip(rng: np.random.Generator, patterns: np.ndarray, fraction: float) -> np.ndarray:
    """A copy of ``patterns`` with exactly ``fraction`` of each row's units flipped."""
    noisy = patterns.copy()
    n_units = patterns.shape[1]
    for row in noisy:
        row[rng.choice(n_units, round(fraction * n_units), replace=False)] *= -1
    return noisy


def test_docstring_examples():
    result = doctest.testmod(fastnn.hopfield)
    assert result.attempted >= 5 and result.failed == 0


def test_weights_are_the_hebbian_rule(rng):
    P = random_patterns(rng, 4, 30)
    net = fastnn.Hopfield().fit(P)
    expected = sum(np.outer(p, p) for p in P.astype(float)) / 30
    np.fill_diagonal(expected, 0)
    np.testing.assert_allclose(net.W, expected, rtol=1e-15, atol=0)
    assert net.W.dtype == np.float64
    assert (net.n_units, net.n_patterns) == (30, 4)
    assert repr(net) == "Hopfield(n_units=30, n_patterns=4)"
    # A second fit replaces what was stored.
    net.fit(P[:1])
    np.testing.assert_array_equal(net.W, (np.outer(P[0], P[0]) - np.eye(30)) / 30)
    assert net.n_patterns == 1


def test_stored_patterns_are_fixed_points(rng):
    P = random_patterns(rng, 5, 100)
    net = fastnn.Hopfield(seed=0).fit(P)
    assert net.is_fixed_point(P).all()
    for asynchronous in (True, False):
        out, n_steps = net.predict(P, asynchronous=asynchronous, return_steps=True)
        np.testing.assert_array_equal(out, P)
        np.testing.assert_array_equal(n_steps, 0)  # stopped at once: nothing changed
    # A random state is not a fixed point, and predict moves it.
    x = random_patterns(rng, 1, 100)[0]
    assert not net.is_fixed_point(x)
    out, n_steps = net.predict(x, return_steps=True)
    assert n_steps >= 1 and net.is_fixed_point(out)
    # predict stops at the fixed point: ten million allowed sweeps cost nothing (going on
    # would take hours).
    np.testing.assert_array_equal(net.predict(x, steps=10**7), out)


@pytest.mark.parametrize("fraction", [0.1, 0.2])
def test_recall_from_noisy_patterns(rng, fraction):
    # N=100 units, 3 random patterns (P/N = 0.03): every noisy version is recalled exactly.
    for trial in range(10):
        P = random_patterns(rng, 3, 100)
        noisy = flip(rng, P, fraction)
        assert (noisy != P).sum() == 3 * round(fraction * 100)
        net = fastnn.Hopfield(seed=trial).fit(P)
        out, n_steps = net.predict(noisy, return_steps=True)
        np.testing.assert_array_equal(out, P)
        assert (n_steps >= 1).all() and (n_steps <= 5).all()
        # Synchronous updates recall these too.
        np.testing.assert_array_equal(net.predict(noisy, asynchronous=False), P)


@pytest.mark.parametrize("load, stable_at_least, stable_at_most, overlap", [
    (0.05, 0.99, 1.0, (0.99, 1.0)),   # well below 0.138 N: stored patterns are stable
    (0.3, 0.0, 0.05, (0.0, 0.7)),     # well above it: almost none is, and recall fails
])
def test_capacity(load, stable_at_least, stable_at_most, overlap):
    rng = np.random.default_rng(7)
    n_units = 500
    P = random_patterns(rng, round(load * n_units), n_units)
    net = fastnn.Hopfield(seed=0).fit(P)
    stable = net.is_fixed_point(P).mean()
    assert stable_at_least <= stable <= stable_at_most, stable
    # Started from the stored patterns, where does the dynamics end? The mean overlap
    # (1 = the pattern itself) stays ~1 below capacity and drops far from it above.
    out = net.predict(P)
    mean_overlap = (out * P).mean(axis=1).mean()
    assert overlap[0] <= mean_overlap <= overlap[1], mean_overlap
    assert net.is_fixed_point(out).all()


def test_energy_formula_and_inverted_patterns(rng):
    P = random_patterns(rng, 3, 40)
    net = fastnn.Hopfield(seed=0).fit(P)
    X = random_patterns(rng, 6, 40)
    expected = np.array([-0.5 * x @ net.W @ x for x in X.astype(float)])
    np.testing.assert_allclose(net.energy(X), expected, rtol=1e-12, atol=1e-12)
    assert isinstance(net.energy(X[0]), float)
    assert net.energy(X[0]) == pytest.approx(expected[0], rel=1e-12, abs=1e-12)
    # The spurious inverted pattern -p: the same energy, and a fixed point too.
    np.testing.assert_array_equal(net.energy(-P), net.energy(P))
    assert net.is_fixed_point(-P).all()
    np.testing.assert_array_equal(net.predict(-P), -P)
    # Noisy versions of -p fall into -p, not into p.
    np.testing.assert_array_equal(net.predict(flip(rng, -P, 0.1)), -P)


def test_energy_never_increases_under_asynchronous_updates(rng):
    # An overloaded network (P/N = 0.3) started from random states: many units flip.
    net = fastnn.Hopfield(seed=0).fit(random_patterns(rng, 30, 100))
    X = random_patterns(rng, 100, 100)
    # Unit by unit: update one unit at a time in a random order.
    C, state = net._counts, X.astype(float)
    energy = net.energy(state)
    n_flips = 0
    for i in rng.permutation(np.tile(np.arange(100), 3)):
        before = state.copy()
        fastnn.Hopfield._sweep(state, C, np.array([i]))
        n_flips += (state != before).any(axis=1).sum()
        new = net.energy(state)
        assert (new <= energy + 1e-12).all()
        # A flip lowers the energy strictly (a tie keeps the state).
        assert (new[(state != before).any(axis=1)] < energy[(state != before).any(axis=1)]).all()
        energy = new
    assert n_flips > 100
    # Sweep by sweep through the public API, until every state is a fixed point.
    for asynchronous, can_rise in ((True, False), (False, True)):
        state = X.copy()
        energies = [net.energy(state)]
        for _ in range(20):
            state = net.predict(state, steps=1, asynchronous=asynchronous)
            energies.append(net.energy(state))
        rises = np.diff(energies, axis=0) > 1e-12
        # Synchronous updates do raise the energy of some states: the check has teeth.
        assert rises.any() == can_rise
    assert net.is_fixed_point(net.predict(X)).all()


def test_synchronous_step_and_two_cycle():
    net = fastnn.Hopfield(seed=0).fit([[1, 1]])
    # Synchronously both units flip together, forever: a 2-cycle, never a fixed point.
    out, n_steps = net.predict([1, -1], steps=7, asynchronous=False, return_steps=True)
    np.testing.assert_array_equal(out, [-1, 1])
    assert n_steps == 7
    out = net.predict([1, -1], steps=8, asynchronous=False)
    np.testing.assert_array_equal(out, [1, -1])
    # Asynchronously the first unit updated copies the other: a stored state, in 1 step.
    out, n_steps = net.predict([1, -1], steps=7, return_steps=True)
    assert net.is_fixed_point(out) and abs(out.sum()) == 2 and n_steps == 1


def test_synchronous_step_matches_formula(rng):
    P = random_patterns(rng, 8, 50)
    net = fastnn.Hopfield().fit(P)
    X = random_patterns(rng, 20, 50)
    # The inputs times N, in integers: exact, so ties (input 0) are exactly 0 (in
    # float64, X @ net.W leaves some at 1e-17, on either side).
    counts = P.T @ P
    np.fill_diagonal(counts, 0)
    H = X @ counts
    assert (H == 0).sum() > 20  # there are ties to get right
    expected = np.where(H > 0, 1, np.where(H < 0, -1, X))
    np.testing.assert_array_equal(net.predict(X, steps=1, asynchronous=False), expected)


def test_ties_keep_the_state():
    # One stored pattern [1, 1, 1]: from [-1, 1, -1], unit 1's input is -2 and units 0
    # and 2 have input 0. They keep -1 (np.sign would give 0, "sign(0) = +1" gives +1).
    net = fastnn.Hopfield(seed=0).fit([1, 1, 1])
    np.testing.assert_array_equal(net.predict([-1, 1, -1], steps=1, asynchronous=False),
                                  [-1, -1, -1])
    # Two orthogonal patterns on 2 units cancel: W = 0, every input is a tie, and every
    # state is a fixed point.
    net = fastnn.Hopfield(seed=0).fit([[1, 1], [1, -1]])
    np.testing.assert_array_equal(net.W, 0)
    X = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]])
    assert net.is_fixed_point(X).all()
    for asynchronous in (True, False):
        np.testing.assert_array_equal(net.predict(X, asynchronous=asynchronous), X)


def test_single_state_and_batch_agree(rng):
    P = random_patterns(rng, 12, 60)  # overloaded: the update order matters
    net = fastnn.Hopfield(seed=3).fit(P)
    X = flip(rng, P, 0.25)
    batch = net.predict(X)
    for x, row in zip(X, batch):
        single = net.predict(x)
        assert single.shape == (60,)
        np.testing.assert_array_equal(single, row)
    assert net.predict(X[:1]).shape == (1, 60)


def test_dtype_and_input_kept():
    net = fastnn.Hopfield(seed=0).fit(np.array([[1, -1, 1, -1, 1, -1]], dtype=np.int8))
    for dtype in (np.int8, np.int64, np.float32, np.float64):
        x = np.array([-1, -1, 1, -1, 1, -1], dtype=dtype)
        out = net.predict(x)
        assert out.dtype == dtype
        np.testing.assert_array_equal(out, [1, -1, 1, -1, 1, -1])
        np.testing.assert_array_equal(x, [-1, -1, 1, -1, 1, -1])  # not written
    # An all-ones bool or unsigned array is valid input, but cannot hold -1: int64 out.
    for dtype in (np.bool_, np.uint8):
        out = net.predict(np.ones(6, dtype=dtype), asynchronous=False, steps=1)
        assert out.dtype == np.int64
        np.testing.assert_array_equal(out, -np.ones(6))  # each unit's input is -1/6


def test_seed_reproducibility(rng):
    P = random_patterns(rng, 20, 60)  # overloaded, so different orders end differently
    X = flip(rng, P, 0.3)
    first = fastnn.Hopfield(seed=1).fit(P).predict(X)
    np.testing.assert_array_equal(fastnn.Hopfield(seed=1).fit(P).predict(X), first)
    net = fastnn.Hopfield(seed=1).fit(P)
    np.testing.assert_array_equal(net.predict(X), net.predict(X))  # an int seed: every call
    other = fastnn.Hopfield(seed=2).fit(P).predict(X)
    assert (other != first).any(axis=1).sum() >= 3
    # A Generator is drawn from, so two calls differ; two equal Generators agree.
    g = fastnn.Hopfield(seed=np.random.default_rng(5)).fit(P)
    a, b = g.predict(X), g.predict(X)
    assert (a != b).any()
    np.testing.assert_array_equal(
        fastnn.Hopfield(seed=np.random.default_rng(5)).fit(P).predict(X), a)


def test_n_units_given_up_front():
    net = fastnn.Hopfield(n_units=4)
    assert net.n_units == 4 and net.n_patterns == 0
    with pytest.raises(ValueError, match="has 3 units per state; this network has 4"):
        net.fit([[1, -1, 1]])
    net.fit([[1, -1, 1, -1]])
    assert net.W.shape == (4, 4)
    # Without n_units, each fit takes the patterns' length.
    net = fastnn.Hopfield().fit([[1, -1, 1, -1]]).fit([[1, -1, 1]])
    assert net.n_units == 3 and net.W.shape == (3, 3)
    with pytest.raises(ValueError, match="has 4 units per state; this network has 3"):
        net.predict([1, -1, 1, -1])


@pytest.mark.parametrize("x, error, match", [
    ([[1, -1, 0, 1]], ValueError, r"only -1 and \+1, found \[0\]"),
    ([[1, 0, 0, 1]], ValueError, r"looks like 0/1 data: pass 2 \* x - 1"),
    ([[1, -1, 2, 1]], ValueError, r"found \[2\]"),
    ([[1, -1, np.nan, 1]], ValueError, "NaN or infinity"),
    ([[1, -1, np.inf, 1]], ValueError, "NaN or infinity"),
    ([1, -1, 1], ValueError, "has 3 units per state; this network has 4"),
    (np.ones((2, 5)), ValueError, "has 5 units per state"),
    (np.ones((2, 2, 4)), ValueError, r"shape \(n_units,\) or a batch"),
    (np.ones((0, 4)), ValueError, "empty"),
    (np.float64(1.0), ValueError, r"shape \(n_units,\) or a batch"),
    ([["a", "b", "c", "d"]], TypeError, "must hold numbers"),
    ([[1, -1], [1]], TypeError, "could not be read"),
])
def test_bad_states(x, error, match):
    net = fastnn.Hopfield(seed=0).fit([[1, -1, 1, -1]])
    for method in (net.predict, net.energy, net.is_fixed_point):
        with pytest.raises(error, match=match):
            method(x)


@pytest.mark.parametrize("patterns, error, match", [
    ([[0, 1, 1, 0]], ValueError, r"patterns looks like 0/1 data: pass 2 \* patterns - 1"),
    ([[True, False]], ValueError, "0/1 data"),
    ([[0.5, -1]], ValueError, r"found \[0.5\]"),
    ([[np.nan, 1]], ValueError, "NaN"),
    (np.zeros((0, 3)), ValueError, "empty"),
    (np.zeros((3, 0)), ValueError, "empty"),
    ("abc", TypeError, "must hold numbers"),
])
def test_bad_patterns(patterns, error, match):
    with pytest.raises(error, match=match):
        fastnn.Hopfield().fit(patterns)


def test_bad_arguments():
    with pytest.raises(RuntimeError, match=r"call fit\(patterns\) first"):
        fastnn.Hopfield().predict([1, -1])
    with pytest.raises(RuntimeError, match="fit"):
        _ = fastnn.Hopfield(n_units=2).W
    for n_units, error in ((0, ValueError), (-3, ValueError), (2.5, TypeError),
                           (True, TypeError), ("4", TypeError)):
        with pytest.raises(error, match="n_units must be a positive integer"):
            fastnn.Hopfield(n_units=n_units)
    for seed in (1.5, "0", True):
        with pytest.raises(TypeError, match="seed must be"):
            fastnn.Hopfield(seed=seed)
    net = fastnn.Hopfield(seed=0).fit([[1, -1, 1, -1]])
    for steps, error in ((0, ValueError), (-1, ValueError), (1.5, TypeError),
                         (None, TypeError), (False, TypeError)):
        with pytest.raises(error, match="steps must be a positive integer"):
            net.predict([1, -1, 1, -1], steps=steps)
    with pytest.raises(TypeError, match="asynchronous must be True or False"):
        net.predict([1, -1, 1, -1], asynchronous="yes")
