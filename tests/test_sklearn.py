"""fastnn.sklearn: scikit-learn's estimator checks, and what the estimators promise beyond them."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")  # the `sklearn` extra; CI installs it

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import estimator_checks_generator  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from conftest import RTOL, assert_close  # noqa: E402
from fastnn.sklearn import (  # noqa: E402
    MLPClassifier,
    MLPRegressor,
    _resolve_n_threads,
    _thread_limits,
)
from fastnn._core import _threads  # noqa: E402
from fastnn.threads import MAX_THREADS  # noqa: E402

# ---------------------------------------------------------------- scikit-learn's checks

# Small, fast settings that still reach the accuracy the checks demand: each solver
# on each estimator, all with the default dtype=None (the input's float dtype, as
# scikit-learn). Every check scikit-learn yields runs and passes: there are no
# exceptions (check_array_api_input runs too, in a subprocess, see below).
CHECKED = [
    MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=100,
                  random_state=0),
    MLPClassifier(hidden_layer_sizes=(16,), solver="sgd", learning_rate_init=0.05,
                  max_iter=100, random_state=0),
    MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=100, random_state=0),
    MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=50,
                 random_state=0),
    MLPRegressor(hidden_layer_sizes=(16,), solver="sgd", learning_rate_init=0.0015,
                 max_iter=100, random_state=0),
    MLPRegressor(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=100, random_state=0),
]

# Checks run another way, with the reason.
SKIPPED_CHECKS = {
    # scikit-learn runs this check only when SCIPY_ARRAY_API=1 was set before SciPy
    # was imported (else it raises SkipTest). test_array_api_dispatch runs it in a
    # subprocess with that variable set.
    "check_array_api_input": "needs SCIPY_ARRAY_API=1 at start-up; run in a subprocess",
}


def _check_name(check) -> str:
    return getattr(check, "func", check).__name__


def _skip_reason(estimator, check) -> str | None:
    return SKIPPED_CHECKS.get(_check_name(check))


def _all_checks():
    for est in CHECKED:
        for estimator, check in estimator_checks_generator(est, legacy=True):
            if _skip_reason(est, check) is None:
                label = f"{type(est).__name__}-{est.solver}-{_check_name(check)}"
                yield pytest.param(estimator, check, id=label)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("estimator, check", list(_all_checks()))
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_skipped_checks_exist():
    """Every skip names a check scikit-learn really yields (no stale entries)."""
    yielded = {_check_name(c) for est in CHECKED for _, c in estimator_checks_generator(est)}
    for name in SKIPPED_CHECKS:
        assert name in yielded


def test_array_api_dispatch():
    """check_array_api_input (NumPy inputs with array-API dispatch on), in its own process."""
    code = textwrap.dedent("""
        import warnings
        warnings.simplefilter("ignore")
        from sklearn.utils.estimator_checks import estimator_checks_generator
        from fastnn.sklearn import MLPClassifier, MLPRegressor
        for est in [MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0),
                    MLPRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0)]:
            done = 0
            for e, check in estimator_checks_generator(est):
                if getattr(check, "func", check).__name__ == "check_array_api_input":
                    check(e)
                    done += 1
            assert done, "check_array_api_input was not yielded"
        print("ok")
    """)
    env = dict(os.environ, SCIPY_ARRAY_API="1")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=False, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


# ---------------------------------------------------------------- imports


def test_import_fastnn_does_not_import_sklearn():
    code = "import sys, fastnn; print('sklearn' in sys.modules, 'fastnn.sklearn' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "False"]


def test_missing_sklearn_names_the_extra():
    # sys.modules[name] = None makes `import name` raise ImportError, as if not installed.
    code = textwrap.dedent("""
        import sys
        sys.modules["sklearn"] = None
        import fastnn
        try:
            import fastnn.sklearn
        except ImportError as exc:
            print(exc)
        else:
            print("imported")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode == 0, res.stderr
    assert "fastnn[sklearn]" in res.stdout and "scikit-learn" in res.stdout


# ---------------------------------------------------------------- data


@pytest.fixture(scope="module")
def multiclass():
    X, y = make_classification(n_samples=240, n_features=8, n_informative=6, n_classes=3,
                               random_state=0)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def binary():
    X, y = make_classification(n_samples=200, n_features=6, random_state=1)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(n_samples=200, n_features=6, n_targets=2, noise=0.1, random_state=2)
    return StandardScaler().fit_transform(X), (y - y.mean(0)) / y.std(0)


def _quiet(est):
    """Fit without the ConvergenceWarning that short max_iter runs raise on purpose."""
    class _Ctx:
        def __enter__(self):
            self._w = warnings.catch_warnings()
            self._w.__enter__()
            warnings.simplefilter("ignore", ConvergenceWarning)
            return est

        def __exit__(self, *a):
            return self._w.__exit__(*a)
    return _Ctx()


# ---------------------------------------------------------------- classifier


@pytest.mark.parametrize("kind", ["int", "str"])
def test_multiclass_labels_and_proba(multiclass, kind):
    X, y = multiclass
    labels = np.array(["cat", "dog", "emu"])[y] if kind == "str" else y + 10
    clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=60,
                        random_state=0)
    with _quiet(clf):
        clf.fit(X, labels)
    np.testing.assert_array_equal(clf.classes_, np.unique(labels))
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 3) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    assert clf.score(X, labels) > 0.8
    assert [w.shape for w in clf.coefs_] == [(8, 16), (16, 3)]
    assert [b.shape for b in clf.intercepts_] == [(16,), (3,)]
    assert clf.n_features_in_ == 8 and clf.n_outputs_ == 3 and clf.n_layers_ == 3


def test_binary_uses_one_output(binary):
    X, y = binary
    labels = np.where(y == 1, "yes", "no")
    clf = MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.01, max_iter=60,
                        random_state=0)
    with _quiet(clf):
        clf.fit(X, labels)
    assert clf.coefs_[-1].shape == (8, 1)  # as scikit-learn's MLPClassifier
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    assert set(clf.predict(X)) <= {"yes", "no"}
    assert clf.score(X, labels) > 0.85


def test_fitted_attributes(multiclass):
    X, y = multiclass
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=7, tol=0, random_state=0)
    with pytest.warns(ConvergenceWarning):
        clf.fit(X, y)
    assert clf.n_iter_ == 7 and len(clf.loss_curve_) == 7 and clf.t_ == 7 * len(X)
    assert clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]


def test_unfitted_raises(multiclass):
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(multiclass[0])


def test_params_clone_and_pickle(multiclass):
    X, y = multiclass
    clf = MLPClassifier(hidden_layer_sizes=(5, 4), alpha=0.1, max_iter=5, random_state=3,
                        n_threads=1)
    assert clf.get_params()["hidden_layer_sizes"] == (5, 4)
    clf.set_params(alpha=0.2)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and not hasattr(twin, "coefs_")
    with _quiet(clf):
        clf.fit(X, y)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    with _quiet(twin):
        twin.fit(X, y)  # same random_state: the same model
    np.testing.assert_array_equal(twin.predict_proba(X), clf.predict_proba(X))


# ---------------------------------------------------------------- warm start, partial_fit


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_warm_start_resumes_exactly(multiclass, solver):
    """Two warm-started fits of k epochs equal one fit of 2k: the optimizer state is kept."""
    X, y = multiclass
    kw = dict(hidden_layer_sizes=(12,), solver=solver, learning_rate_init=0.01, batch_size=32,
              tol=0, n_iter_no_change=1000, random_state=0)
    once = MLPClassifier(max_iter=6, **kw)
    twice = MLPClassifier(max_iter=3, warm_start=True, **kw)
    with _quiet(once), _quiet(twice):
        once.fit(X, y)
        twice.fit(X, y)
        twice.fit(X, y)
    for a, b in zip(once.coefs_ + once.intercepts_, twice.coefs_ + twice.intercepts_):
        np.testing.assert_array_equal(a, b)
    # A fresh optimizer on the second fit (scikit-learn's behaviour) is not the same.
    reset = MLPClassifier(max_iter=3, warm_start=True, **kw)
    with _quiet(reset):
        reset.fit(X, y)
        reset._optimizer = None
        reset.fit(X, y)
    assert not np.array_equal(reset.coefs_[0], once.coefs_[0])


def test_partial_fit_equals_fit(multiclass, regression):
    X, y = multiclass
    kw = dict(hidden_layer_sizes=(10,), learning_rate_init=0.01, batch_size=50, tol=0,
              n_iter_no_change=1000, random_state=0)
    full = MLPClassifier(max_iter=4, **kw)
    with _quiet(full):
        full.fit(X, y)
    inc = MLPClassifier(**kw)
    for _ in range(4):
        inc.partial_fit(X, y, classes=np.unique(y))
    np.testing.assert_array_equal(full.predict_proba(X), inc.predict_proba(X))
    assert len(inc.loss_curve_) == 4 and inc.n_iter_ == 1

    Xr, yr = regression
    full_r = MLPRegressor(max_iter=3, **kw)
    with _quiet(full_r):
        full_r.fit(Xr, yr)
    inc_r = MLPRegressor(**kw)
    for _ in range(3):
        inc_r.partial_fit(Xr, yr)
    np.testing.assert_array_equal(full_r.predict(Xr), inc_r.predict(Xr))


def test_partial_fit_errors(multiclass):
    X, y = multiclass
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier().partial_fit(X, y)
    clf = MLPClassifier(hidden_layer_sizes=(4,)).partial_fit(X, y, classes=[0, 1, 2, 3])
    assert clf.coefs_[-1].shape == (4, 4)  # room for a class not seen yet
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        clf.partial_fit(X, y + 5)
    with pytest.raises(ValueError, match="early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


def test_warm_start_with_other_classes_raises(multiclass):
    X, y = multiclass
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, warm_start=True)
    with _quiet(clf):
        clf.fit(X, y)
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(X[y < 2], y[y < 2])


# ---------------------------------------------------------------- early stopping


def test_early_stopping_restores_best_weights(binary):
    X, y = binary
    rng = np.random.default_rng(0)
    noisy = np.where(rng.random(len(y)) < 0.25, 1 - y, y)  # label noise: overfitting
    clf = MLPClassifier(hidden_layer_sizes=(64,), learning_rate_init=0.03, early_stopping=True,
                        validation_fraction=0.3, n_iter_no_change=3, max_iter=200,
                        random_state=0)
    seen = []
    original = clf._score_val

    def spy(X_val, y_val, sw_val):
        score = original(X_val, y_val, sw_val)
        seen.append((score, [w.copy() for w in clf.coefs_], X_val, y_val))
        return score

    clf._score_val = spy  # records the weights at each validation
    clf.fit(X, noisy)
    assert clf.n_iter_ < 200  # it stopped early
    best = int(np.argmax([s for s, *_ in seen]))
    assert best < len(seen) - 1  # so restoring matters
    assert clf.best_validation_score_ == seen[best][0] == max(clf.validation_scores_)
    assert clf.best_loss_ is None
    for w, w_best in zip(clf.coefs_, seen[best][1]):
        np.testing.assert_array_equal(w, w_best)
    assert clf.score(seen[best][2], seen[best][3]) == pytest.approx(seen[best][0])


def test_warm_start_with_early_stopping_continues(binary):
    X, y = binary
    clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, early_stopping=True,
                        n_iter_no_change=2, max_iter=100, warm_start=True, random_state=0)
    clf.fit(X, y)
    first = list(clf.validation_scores_)
    clf.fit(X, y)
    # The record goes on, and the second fit gets its own n_iter_no_change epochs.
    assert clf.validation_scores_[:len(first)] == first
    assert clf.n_iter_ >= 3 and len(clf.validation_scores_) == len(first) + clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)


# ---------------------------------------------------------------- weights


def test_class_weight_equals_sample_weight(binary):
    X, y = binary
    kw = dict(hidden_layer_sizes=(8,), learning_rate_init=0.01, max_iter=10, random_state=0)
    a = MLPClassifier(class_weight={0: 1.0, 1: 3.0}, **kw)
    b = MLPClassifier(**kw)
    with _quiet(a), _quiet(b):
        a.fit(X, y)
        b.fit(X, y, sample_weight=np.where(y == 1, 3.0, 1.0))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c = MLPClassifier(**kw)
    with _quiet(c):
        c.fit(X, y)
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))


def test_balanced_class_weight_helps_minority():
    X, y = make_classification(n_samples=400, n_features=5, weights=[0.9], flip_y=0.05,
                               class_sep=0.5, random_state=4)
    kw = dict(hidden_layer_sizes=(8,), learning_rate_init=0.01, max_iter=40, random_state=0)
    plain, balanced = MLPClassifier(**kw), MLPClassifier(class_weight="balanced", **kw)
    with _quiet(plain), _quiet(balanced):
        plain.fit(X, y)
        balanced.fit(X, y)
    recall = lambda m: np.mean(m.predict(X)[y == 1] == 1)  # noqa: E731
    assert recall(balanced) > recall(plain) + 0.1


@pytest.mark.filterwarnings("ignore:Got `batch_size` larger:UserWarning")  # full batch on purpose
@pytest.mark.parametrize("weights", ["random", "uniform"])
def test_sample_weight_equals_repeated_rows(regression, weights):
    """Integer weights act as repeated rows (full batch, float64: equal to rounding).

    Uniform weights train as no weights but, as repeated rows would, weaken the L2 term.
    """
    X, y = regression
    X, y = X[:40], y[:40]
    w = np.random.default_rng(0).integers(0, 4, size=40) if weights == "random" else \
        np.full(40, 2)
    kw = dict(hidden_layer_sizes=(6,), alpha=0.5, batch_size=1000, learning_rate_init=0.01,
              max_iter=20, tol=0, random_state=0, dtype="float64")
    weighted, repeated = MLPRegressor(**kw), MLPRegressor(**kw)
    with _quiet(weighted), _quiet(repeated):
        weighted.fit(X, y, sample_weight=w)
        repeated.fit(np.repeat(X, w, axis=0), np.repeat(y, w, axis=0))
    np.testing.assert_allclose(weighted.predict(X), repeated.predict(X), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-9)


def test_bad_weights(binary):
    X, y = binary
    with pytest.raises(ValueError, match="[Nn]egative"):
        MLPClassifier(max_iter=1).fit(X, y, sample_weight=-np.ones(len(y)))  # scikit-learn's
    with pytest.raises(ValueError, match="non-zero"):  # scikit-learn's message
        MLPClassifier(max_iter=1).fit(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError, match="not in classes_"):
        MLPClassifier(max_iter=1, class_weight={7: 2.0}).fit(X, y)


# ---------------------------------------------------------------- scikit-learn's objective


def _one_full_batch_step(est, X, y):
    """Weights before and after one more full-batch epoch of plain SGD."""
    est.set_params(warm_start=True, max_iter=1)
    with _quiet(est):
        est.fit(X, y)
        before = [(w.copy(), b.copy()) for w, b in zip(est.coefs_, est.intercepts_)]
        est.fit(X, y)
    return before, list(zip(est.coefs_, est.intercepts_))


@pytest.mark.parametrize("alpha", [0.0, 3.0])
def test_regression_update_is_sklearns(regression, alpha):
    """One SGD step equals scikit-learn's: grad = (X^T (XW + b - y) + alpha W) / n."""
    X, y = regression
    n, lr = len(X), 0.05
    reg = MLPRegressor(hidden_layer_sizes=(), solver="sgd", momentum=0.0, alpha=alpha,
                       learning_rate_init=lr, batch_size=n, shuffle=False, random_state=0,
                       dtype="float64")
    [(W0, b0)], [(W1, b1)] = _one_full_batch_step(reg, X, y)
    err = X @ W0 + b0 - y
    np.testing.assert_allclose(W1, W0 - lr * (X.T @ err + alpha * W0) / n, rtol=1e-10)
    np.testing.assert_allclose(b1, b0 - lr * err.sum(0) / n, rtol=1e-10, atol=1e-14)
    # loss_curve_: 0.5 * mean squared error (at the step's start) + alpha/(2n) ||W||^2 (end).
    expected = 0.5 * np.mean(err ** 2) + 0.5 * alpha * np.sum(W1 ** 2) / n
    assert reg.loss_curve_[-1] == pytest.approx(expected, rel=1e-10)


def test_classification_update_is_sklearns(binary, multiclass):
    lr, alpha = 0.1, 2.0
    for X, y in (binary, multiclass):
        n = len(X)
        clf = MLPClassifier(hidden_layer_sizes=(), solver="sgd", momentum=0.0, alpha=alpha,
                            learning_rate_init=lr, batch_size=n, shuffle=False,
                            random_state=0, dtype="float64")
        [(W0, b0)], [(W1, b1)] = _one_full_batch_step(clf, X, y)
        z = X @ W0 + b0
        if z.shape[1] == 1:
            delta = 1 / (1 + np.exp(-z)) - y[:, None]
        else:
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            delta = p - np.eye(z.shape[1])[y]
        np.testing.assert_allclose(W1, W0 - lr * (X.T @ delta + alpha * W0) / n, rtol=1e-10)
        np.testing.assert_allclose(b1, b0 - lr * delta.sum(0) / n, rtol=1e-10)


def test_regressor_shapes(regression):
    X, y = regression
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
    with _quiet(reg):
        reg.fit(X, y)
    assert reg.predict(X).shape == (len(X), 2) and reg.predict(X).dtype == np.float64
    with _quiet(reg):
        reg.fit(X, y[:, 0])
    assert reg.predict(X).shape == (len(X),)
    with _quiet(reg):
        reg.fit(X, y[:, :1])
    assert reg.predict(X).shape == (len(X),)  # one output: 1-D, as scikit-learn


@pytest.mark.parametrize("params, error, match", [
    (dict(hidden_layer_sizes=(0,)), ValueError, "hidden_layer_sizes"),
    (dict(hidden_layer_sizes="big"), ValueError, "hidden_layer_sizes"),
    (dict(activation="softmax"), ValueError, "activation"),
    (dict(solver="newton"), ValueError, "solver"),
    (dict(learning_rate="cosine"), ValueError, "learning_rate"),
    (dict(power_t=-1.0), ValueError, "power_t"),
    (dict(max_fun=0), ValueError, "max_fun"),
    (dict(n_iter_no_change=0), ValueError, "n_iter_no_change"),
    (dict(n_iter_no_change=2.5), TypeError, "n_iter_no_change"),
    (dict(alpha=-1.0), ValueError, "alpha"),
    (dict(learning_rate_init=0), ValueError, "learning_rate_init"),
    (dict(max_iter=0), ValueError, "max_iter"),
    (dict(momentum=1.0), ValueError, "momentum"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size="big"), TypeError, "batch_size"),
    (dict(validation_fraction=1.0), ValueError, "validation_fraction"),
    (dict(n_threads=0), ValueError, "n_threads"),
    (dict(n_threads=-2), ValueError, "n_threads"),
    (dict(dtype="int32"), TypeError, "dtype"),
    (dict(class_weight="heavy"), ValueError, "class_weight"),
])
def test_bad_params_raise_in_fit(binary, params, error, match):
    clf = MLPClassifier(**{"max_iter": 1, **params})  # __init__ only stores
    with pytest.raises(error, match=match):
        clf.fit(*binary)


def test_pipeline_and_verbose(binary, capsys):
    X, y = binary
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(4,), max_iter=2,
                                                         verbose=True, random_state=0))
    with _quiet(pipe):
        pipe.fit(X, y)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Iteration 2, loss = " in out


# ---------------------------------------------------------------- threads


def _blas_threads() -> list[int]:
    return [m["num_threads"] for m in threadpool_info() if m["user_api"] == "blas"]


def test_thread_limits_are_shared_by_concurrent_fits():
    """The first fit to enter limits BLAS; the limit holds until the last one leaves."""
    before = _blas_threads()
    # The main thread takes threadpoolctl's OpenBLAS control, as fastnn.set_num_threads
    # does; the fits on worker threads must still be able to limit BLAS.
    threadpool_limits(limits=before[0], user_api="blas")
    omp_before = _threads.omp_get_max_threads()
    entered, release_first, first_left = threading.Barrier(3), threading.Event(), threading.Event()
    seen: dict[str, list] = {}

    def first():
        with _thread_limits(1):
            entered.wait()
            release_first.wait()
        first_left.set()

    def second():
        with _thread_limits(1):
            seen["omp_inside"] = [_threads.omp_get_max_threads()]
            entered.wait()
            first_left.wait()
            seen["after_first_left"] = _blas_threads()
        seen["omp_after"] = [_threads.omp_get_max_threads()]

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    entered.wait()
    seen["both_inside"] = _blas_threads()
    release_first.set()
    for t in threads:
        t.join(10)
    assert all(n == 1 for n in seen["both_inside"])
    assert all(n == 1 for n in seen["after_first_left"])
    assert _blas_threads() == before
    assert _threads.omp_get_max_threads() == omp_before
    if _threads.has_openmp():
        assert seen["omp_inside"] == [1]


def test_fit_and_predict_run_under_n_threads(multiclass, monkeypatch):
    from fastnn.network import Network

    X, y = multiclass
    seen = []
    for method in ("fit", "predict_proba"):
        real = getattr(Network, method)

        def spy(self, *args, _real=real, **kwargs):
            seen.append((_blas_threads(), _threads.omp_get_max_threads()))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(Network, method, spy)
    before = _blas_threads()
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, n_threads=1)
    with _quiet(clf):
        clf.fit(X, y)
    clf.predict(X)
    assert len(seen) == 3  # two epochs, one prediction
    for blas, omp in seen:
        assert set(blas) == {1}
        if _threads.has_openmp():
            assert omp == 1
    assert _blas_threads() == before


def test_default_n_threads_is_one_off_the_main_thread():
    """None: no limit on the main thread; 1 on the threads parallel back ends run fits on."""
    assert _resolve_n_threads(None) is None
    assert _resolve_n_threads(3) == 3 and _resolve_n_threads(-1) == os.cpu_count()
    seen = []
    worker = threading.Thread(target=lambda: seen.append(_resolve_n_threads(None)))
    worker.start()
    worker.join(10)
    assert seen == [1]


def test_n_threads_does_not_change_results(multiclass):
    X, y = multiclass
    kw = dict(hidden_layer_sizes=(16,), max_iter=3, random_state=0)
    a, b = MLPClassifier(n_threads=1, **kw), MLPClassifier(**kw)
    with _quiet(a), _quiet(b):
        a.fit(X, y)
        b.fit(X, y)
    # float32 sums split differently by thread count, compounded over three epochs.
    assert_close(a.predict_proba(X), b.predict_proba(X), np.float32,
                 rtol=10 * RTOL[np.dtype(np.float32)])


def test_grid_search_threads_equal_sequential(multiclass):
    import joblib

    X, y = multiclass
    grid = {"alpha": [1e-4, 1e-1], "learning_rate_init": [1e-3, 1e-2]}
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0, n_threads=1,
                        dtype="float64")
    results = []
    for n_jobs, backend in [(1, "sequential"), (2, "threading")]:
        with _quiet(est), joblib.parallel_backend(backend):
            search = GridSearchCV(est, grid, cv=3, n_jobs=n_jobs).fit(X, y)
        results.append(search.cv_results_)
    np.testing.assert_allclose(results[0]["mean_test_score"], results[1]["mean_test_score"],
                               rtol=1e-12)
    assert list(results[0]["params"]) == list(results[1]["params"])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_read_only_parameters_predict_like_writeable_ones():
    # A model loaded by joblib with mmap_mode="r" has read-only coefs_.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = (X[:, 0] > 0).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(X, y)
    want = clf.predict_proba(X)
    for a in clf.coefs_ + clf.intercepts_:
        a.setflags(write=False)
    np.testing.assert_array_equal(clf.predict_proba(X), want)


def test_huge_n_threads_fails_before_any_limit_changes(multiclass, monkeypatch):
    """A refused n_threads leaves no fit counted in, so later fits still set their limits."""
    import fastnn.sklearn
    from fastnn.network import Network

    X, y = multiclass
    for n_threads in (2**40, 2**31, MAX_THREADS + 1):
        with pytest.raises(ValueError, match=r"n_threads must be between 1 and"):
            MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, n_threads=n_threads).fit(X, y)
        assert fastnn.sklearn._limit_users == 0
    fitted = MLPClassifier(hidden_layer_sizes=(4,), max_iter=1)
    with _quiet(fitted):
        fitted.fit(X, y)
    fitted.set_params(n_threads=2**40)  # set after fit: refused by predict too
    with pytest.raises(ValueError, match="n_threads"):
        fitted.predict(X)
    assert fastnn.sklearn._limit_users == 0

    seen = []
    real = Network.fit

    def spy(self, *args, **kwargs):
        seen.append(set(_blas_threads()))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Network, "fit", spy)
    with threadpool_limits(limits=2, user_api="blas"):  # so that a limit of 1 shows
        with _quiet(fitted):
            fitted.set_params(n_threads=1).fit(X, y)
    assert seen and all(s == {1} for s in seen)


def test_thread_limits_are_given_back_when_setting_openmp_fails(monkeypatch):
    import fastnn.sklearn

    def failing_omp_set_num_threads(n):
        raise OverflowError("value too large to convert to int")

    before = _blas_threads()
    monkeypatch.setattr(fastnn.sklearn, "omp_set_num_threads", failing_omp_set_num_threads)
    with pytest.raises(OverflowError):
        with _thread_limits(1):
            pass
    assert fastnn.sklearn._limit_users == 0
    assert _blas_threads() == before


# ---------------------------------------------------------------- sparse and masked input


def test_sparse_input_trains_and_predicts_like_dense(binary):
    """CSR and CSC X give the model of the dense X (the same batches, densified in chunks)."""
    import scipy.sparse

    X, y = binary
    X = np.where(np.abs(X) < 0.7, 0.0, X)  # mostly zeros, as sparse data are
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", batch_size=16, max_iter=4, tol=0,
              random_state=0)
    dense = MLPClassifier(**kw)
    with _quiet(dense):
        dense.fit(X, y)
    for kind in (scipy.sparse.csr_matrix, scipy.sparse.csc_array):
        sparse = MLPClassifier(**kw)
        with _quiet(sparse):
            sparse.fit(kind(X), y)
        for a, b in zip(dense.coefs_ + dense.intercepts_, sparse.coefs_ + sparse.intercepts_):
            assert_close(a, b, np.float64)
        assert_close(sparse.predict_proba(kind(X)), dense.predict_proba(X), np.float64)
        np.testing.assert_array_equal(sparse.predict(kind(X)), dense.predict(X))


def test_masked_input_is_refused_unless_nothing_is_masked(binary):
    X, y = binary
    Xm = np.ma.masked_array(X, mask=np.zeros(X.shape, bool))
    Xm[0, 0] = np.ma.masked
    ym = np.ma.masked_array(y, mask=np.zeros(y.shape, bool))
    ym[5] = np.ma.masked
    wm = np.ma.masked_array(np.ones(len(y)), mask=np.zeros(len(y), bool))
    wm[1] = np.ma.masked
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    with pytest.raises(TypeError, match=r"X is a masked array with 1 masked values"):
        clf.fit(Xm, y)
    with pytest.raises(TypeError, match=r"y is a masked array with 1 masked values"):
        clf.fit(X, ym)
    with pytest.raises(TypeError, match=r"sample_weight is a masked array with 1 masked"):
        clf.fit(X, y, sample_weight=wm)
    with _quiet(clf):
        plain = clf.fit(X, y).predict_proba(X)
        # Nothing masked: the data are used as they are.
        np.testing.assert_array_equal(clf.fit(np.ma.masked_array(X), y).predict_proba(X), plain)
    with pytest.raises(TypeError, match=r"X is a masked array with 1 masked values"):
        clf.predict(Xm)


# ---------------------------------------------------------------- memory-mapped models


@pytest.fixture
def mapped(multiclass, tmp_path):
    """A warm-start classifier fitted for 5 epochs, and its copy loaded by joblib with
    mmap_mode="r"."""
    import joblib

    X, y = multiclass
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, tol=0, warm_start=True,
                        random_state=0)
    with _quiet(clf):
        clf.fit(X, y)
    path = tmp_path / "model.joblib"
    joblib.dump(clf, path)
    loaded = joblib.load(path, mmap_mode="r")
    # The precondition of the tests: parameters and optimizer state are read-only maps.
    assert not loaded.coefs_[0].flags.writeable
    assert not loaded._optimizer.state[0][0].flags.writeable
    return clf, loaded


@pytest.mark.parametrize("how", ["warm_start", "partial_fit"])
def test_memory_mapped_model_keeps_training(multiclass, mapped, how):
    """Training resumes from the mapped weights and optimizer state, as from the original."""
    X, y = multiclass
    original, loaded = mapped
    for est in (original, loaded):
        with _quiet(est):
            if how == "warm_start":
                est.set_params(max_iter=3).fit(X, y)
            else:
                est.partial_fit(X, y)
    epochs = 3 if how == "warm_start" else 1
    assert loaded.n_iter_ == epochs and len(loaded.loss_curve_) == 5 + epochs
    assert loaded.t_ == (5 + epochs) * len(X)
    for a, b in zip(original.coefs_ + original.intercepts_, loaded.coefs_ + loaded.intercepts_):
        np.testing.assert_array_equal(a, b)  # the same arrays, the same arithmetic


def test_failed_warm_start_keeps_n_iter(multiclass, mapped, monkeypatch):
    from fastnn.network import Network

    X, y = multiclass
    _, loaded = mapped

    def broken(self, *args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(Network, "fit", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        loaded.fit(X, y)
    assert loaded.n_iter_ == 5 and len(loaded.loss_curve_) == 5
