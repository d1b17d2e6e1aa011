"""fastnn.sklearn against scikit-learn's own estimators: the same numbers, step for step.

The estimators draw their initial weights from ``random_state`` as scikit-learn
does, so with the same settings (float64, batches that divide the data, no
shuffling) they follow scikit-learn's trajectory to rounding. That makes
scikit-learn the oracle for the learning-rate schedules, L-BFGS, multilabel
and Poisson outputs; the rest checks what scikit-learn users rely on:
``coefs_`` assignments, sparse input, the dtype rule, messages.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

import scipy.sparse  # noqa: E402
from sklearn import neural_network as sk  # noqa: E402
from sklearn.datasets import (  # noqa: E402
    load_digits,
    make_classification,
    make_multilabel_classification,
    make_regression,
)
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import fastnn  # noqa: E402
import fastnn.sklearn as fs  # noqa: E402
from conftest import RTOL, assert_close  # noqa: E402


@pytest.fixture(autouse=True)
def _no_convergence_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(n_samples=60, n_features=5, noise=1.0, random_state=0)
    return X, y / y.std()


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:400] / 16, y[:400]


def _params(est):
    return list(est.coefs_) + list(est.intercepts_)


def _assert_same_params(a, b, rtol=1e-9):
    for p, q in zip(_params(a), _params(b), strict=True):
        assert p.shape == q.shape
        np.testing.assert_allclose(p, q, rtol=rtol, atol=rtol)


# ---------------------------------------------------------------- learning-rate schedules


@pytest.mark.parametrize("schedule, momentum, nesterov", [
    ("constant", 0.0, False),
    ("constant", 0.9, False),
    ("constant", 0.8, True),
    ("invscaling", 0.0, False),
    ("invscaling", 0.9, False),
    ("invscaling", 0.7, True),
])
def test_sgd_follows_sklearn(regression, schedule, momentum, nesterov):
    """learning_rate / power_t / momentum: the weights of scikit-learn, epoch after epoch."""
    X, y = regression
    kw = dict(hidden_layer_sizes=(7,), solver="sgd", learning_rate=schedule, power_t=0.3,
              momentum=momentum, nesterovs_momentum=nesterov, batch_size=20, shuffle=False,
              max_iter=6, tol=0, learning_rate_init=0.05, alpha=0.01, random_state=0)
    ours, theirs = fs.MLPRegressor(**kw).fit(X, y), sk.MLPRegressor(**kw).fit(X, y)
    _assert_same_params(ours, theirs)
    assert ours.n_iter_ == theirs.n_iter_ == 6 and ours.t_ == theirs.t_
    assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate,
                                                          rel=1e-12)
    if schedule == "invscaling":
        assert ours._optimizer.learning_rate == pytest.approx(0.05 / (ours.t_ + 1) ** 0.3)


def test_adaptive_learning_rate_follows_sklearn(digits):
    """"adaptive": the same epochs, divisions by 5 and stop as scikit-learn (with momentum)."""
    X, y = digits
    kw = dict(hidden_layer_sizes=(10,), solver="sgd", learning_rate="adaptive", alpha=0.0,
              batch_size=100, shuffle=False, tol=0.05, n_iter_no_change=2, max_iter=60,
              learning_rate_init=0.5, random_state=0)
    ours, theirs = fs.MLPClassifier(**kw).fit(X, y), sk.MLPClassifier(**kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ < 60  # it stopped (learning rate below 1e-6)
    assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate)
    assert ours._optimizer.learning_rate < 0.5 / 5 ** 3
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-8)
    _assert_same_params(ours, theirs, rtol=1e-7)


def test_partial_fit_keeps_the_schedule(regression):
    X, y = regression
    kw = dict(hidden_layer_sizes=(5,), solver="sgd", learning_rate="invscaling",
              momentum=0.0, batch_size=60, random_state=0)
    ours, theirs = fs.MLPRegressor(**kw), sk.MLPRegressor(**kw)
    for _ in range(3):
        ours.partial_fit(X, y)
        theirs.partial_fit(X, y)
    assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate)
    _assert_same_params(ours, theirs)


# ---------------------------------------------------------------- L-BFGS


def test_lbfgs_follows_sklearn(digits):
    X, y = digits
    kw = dict(hidden_layer_sizes=(20,), solver="lbfgs", max_iter=15, alpha=1e-3,
              random_state=0)
    ours, theirs = fs.MLPClassifier(**kw).fit(X, y), sk.MLPClassifier(**kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 15
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-8)
    _assert_same_params(ours, theirs, rtol=1e-6)
    assert not hasattr(ours, "loss_curve_") and not hasattr(ours, "partial_fit")


def test_lbfgs_regression_and_max_fun(regression):
    X, y = regression
    kw = dict(hidden_layer_sizes=(6,), activation="tanh", solver="lbfgs", max_iter=30,
              random_state=0)
    ours, theirs = fs.MLPRegressor(**kw).fit(X, y), sk.MLPRegressor(**kw).fit(X, y)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-5, atol=1e-8)
    warnings.simplefilter("always", ConvergenceWarning)
    limited = fs.MLPRegressor(max_fun=5, **kw)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        limited.fit(X, y)
    assert limited.n_iter_ <= 5


def test_lbfgs_sample_weight_equals_repeated_rows(regression):
    X, y = regression
    w = np.random.default_rng(0).integers(0, 3, len(y))
    kw = dict(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=25, alpha=0.1, random_state=0)
    weighted = fs.MLPRegressor(**kw).fit(X, y, sample_weight=w)
    repeated = fs.MLPRegressor(**kw).fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    np.testing.assert_allclose(weighted.predict(X), repeated.predict(X), rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------- network_, coefs_, intercepts_


def test_network_and_coefs_are_the_model(digits):
    X, y = digits
    clf = fs.MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y)
    assert isinstance(clf.network_, fastnn.Network)
    np.testing.assert_array_equal(clf.network_.predict_proba(X), clf.predict_proba(X))
    assert clf.coefs_[0] is clf.network_.layers[0].W  # the network's own arrays

    # The same weights give scikit-learn's predictions: the same model.
    ref = sk.MLPClassifier(hidden_layer_sizes=(8,), max_iter=1, random_state=1).fit(X, y)
    clf.coefs_ = [W.copy() for W in ref.coefs_]
    clf.intercepts_ = [b.copy() for b in ref.intercepts_]
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X), rtol=1e-12)

    clf.coefs_[1][...] = 0          # in place, as scikit-learn users write
    clf.intercepts_[1] = np.arange(10.0)   # one item replaced
    np.testing.assert_array_equal(clf.predict(X), np.full(len(X), 9))
    assert clf.network_.layers[1].b[3] == 3.0
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))

    with pytest.raises(ValueError, match="shape"):
        clf.coefs_[0] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="one array per layer"):
        clf.coefs_ = ref.coefs_[:1]
    assert not hasattr(fs.MLPClassifier(), "coefs_")
    assert not hasattr(fs.MLPClassifier(), "network_")


# ---------------------------------------------------------------- multilabel


def test_multilabel_follows_sklearn():
    X, Y = make_multilabel_classification(n_samples=80, n_classes=4, random_state=0)
    kw = dict(hidden_layer_sizes=(12,), solver="lbfgs", max_iter=20, random_state=0)
    ours, theirs = fs.MLPClassifier(**kw).fit(X, Y), sk.MLPClassifier(**kw).fit(X, Y)
    assert ours.out_activation_ == "logistic" and ours.n_outputs_ == 4
    np.testing.assert_array_equal(ours.classes_, np.arange(4))
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)
    proba = ours.predict_proba(X)
    assert proba.shape == Y.shape and not np.allclose(proba.sum(axis=1), 1)
    np.testing.assert_allclose(proba, theirs.predict_proba(X), rtol=1e-5, atol=1e-8)
    np.testing.assert_array_equal(ours.predict(X), (proba > 0.5).astype(int))
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


def test_multilabel_sgd_partial_fit_and_early_stopping():
    X, Y = make_multilabel_classification(n_samples=100, n_classes=3, random_state=1)
    X = X / X.max()
    kw = dict(hidden_layer_sizes=(16,), solver="sgd", learning_rate_init=0.1, batch_size=20,
              shuffle=False, random_state=0)
    ours, theirs = fs.MLPClassifier(**kw), sk.MLPClassifier(**kw)
    for _ in range(30):
        ours.partial_fit(X, Y, classes=[0, 1, 2])
        theirs.partial_fit(X, Y, classes=[0, 1, 2])
    # Binary cross-entropy over several outputs: scikit-learn's summed loss and steps.
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-8)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-3)
    fs.MLPClassifier(early_stopping=True, max_iter=5).fit(X, Y).predict(X)
    with pytest.raises(ValueError, match="multilabel"):
        fs.MLPClassifier(class_weight="balanced", max_iter=2).fit(X, Y)


# ---------------------------------------------------------------- sparse input


def test_sparse_lbfgs_and_chunks_equal_dense(digits, monkeypatch):
    X, y = digits
    # Chunks of a few rows: many chunks per epoch and per prediction.
    monkeypatch.setattr(fs, "SPARSE_CHUNK_BYTES", 64 * 8 * 3)
    for kw in (dict(solver="lbfgs", max_iter=10),
               dict(solver="adam", batch_size=2, max_iter=2, tol=0)):
        dense = fs.MLPClassifier(hidden_layer_sizes=(6,), random_state=0, **kw).fit(X, y)
        sparse = fs.MLPClassifier(hidden_layer_sizes=(6,), random_state=0, **kw).fit(
            scipy.sparse.csr_array(X), y)
        _assert_same_params(dense, sparse, rtol=1e-9)
        np.testing.assert_allclose(sparse.predict_proba(scipy.sparse.csc_matrix(X)),
                                   dense.predict_proba(X), rtol=1e-9)


# ---------------------------------------------------------------- dtypes


@pytest.mark.parametrize("Estimator", [fs.MLPClassifier, fs.MLPRegressor])
def test_dtype_follows_the_input(Estimator, digits):
    X, y = digits
    for x_dtype, dtype, expected in [(np.float32, None, np.float32),
                                     (np.float64, None, np.float64),
                                     (np.int64, None, np.float64),
                                     (np.float64, "float32", np.float32)]:
        est = Estimator(hidden_layer_sizes=(5,), max_iter=3, random_state=0, dtype=dtype)
        Xd = (X * 16).astype(x_dtype)
        est.fit(Xd, y)
        assert est.network_.dtype == expected
        assert all(p.dtype == expected for p in _params(est))
        out = est.predict_proba(Xd) if Estimator is fs.MLPClassifier else est.predict(Xd)
        assert out.dtype == expected


def test_float32_and_float64_agree(digits):
    X, y = digits
    kw = dict(hidden_layer_sizes=(10,), max_iter=20, random_state=0)
    p64 = fs.MLPClassifier(**kw).fit(X, y).predict_proba(X)
    p32 = fs.MLPClassifier(**kw).fit(X.astype(np.float32), y).predict_proba(X.astype(np.float32))
    assert_close(p32, p64, np.float32, rtol=100 * RTOL[np.dtype(np.float32)])


# ---------------------------------------------------------------- Poisson loss


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_poisson_follows_sklearn(solver):
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (80, 3))
    y = rng.poisson(np.exp(X @ [1.0, -0.5, 0.3]))
    kw = dict(loss="poisson", hidden_layer_sizes=(4,), activation="tanh", solver=solver,
              max_iter=15, random_state=0, momentum=0.0, batch_size=40, shuffle=False,
              learning_rate_init=0.05, tol=0)
    ours, theirs = fs.MLPRegressor(**kw).fit(X, y), sk.MLPRegressor(**kw).fit(X, y)
    assert ours.out_activation_ == "exp"
    rtol = 1e-6 if solver == "lbfgs" else 1e-9
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=rtol)
    assert (ours.predict(X) > 0).all()
    if solver == "sgd":
        # The loss on scikit-learn's scale (its L2 term is 0 here... up to alpha).
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-3)
    with pytest.raises(ValueError, match="negative"):
        fs.MLPRegressor(loss="poisson", max_iter=1).fit(X, y - 5.0)
    with pytest.raises(ValueError, match="loss"):
        fs.MLPRegressor(loss="huber", max_iter=1).fit(X, y)


# ---------------------------------------------------------------- behaviour users see


def test_diverging_fit_raises_sklearns_message(regression):
    X, y = regression
    reg = fs.MLPRegressor(solver="sgd", learning_rate_init=10.0, momentum=0.0, max_iter=50,
                          random_state=0)
    with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
        reg.fit(X * 1e3, y)


def test_n_iter_no_change_inf_runs_every_epoch():
    X, y = make_classification(n_samples=60, random_state=0)
    clf = fs.MLPClassifier(hidden_layer_sizes=(4,), tol=1e9, max_iter=25,
                           n_iter_no_change=np.inf).fit(X, y)
    assert clf.n_iter_ == 25 and clf._no_improvement_count == 24
