"""fastnn.sklearn's solvers and dtypes, timed against each other and against scikit-learn.

Three small comparisons, each interleaved (one fit of each contender per round)
and reported as medians over the rounds:

* ``lbfgs``: ``MLPClassifier(solver="lbfgs")`` on scikit-learn's digits (1,797
  8x8 images, a 75/25 split), fastnn against scikit-learn: test accuracy and
  fit time.
* ``dtype``: fastnn's ``MLPClassifier`` (adam, 100 hidden units, 10 epochs) in
  float64 (the default for float64 input) and float32 (``dtype="float32"``), on
  the first 10,000 MNIST training images and on digits.
* ``sparse``: the same MNIST fit from a CSR matrix against the dense array.

Usage: ``python benches/sklearn_bench.py [--rounds N] [--only lbfgs|dtype|sparse]``
(MNIST from ``$FASTNN_DATA_DIR``, see ``fastnn.datasets.load_mnist``).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkMLP

from fastnn.sklearn import MLPClassifier


def _timed(make, X, y, X_test, y_test) -> tuple[float, float]:
    est = make()
    t0 = time.perf_counter()
    est.fit(X, y)
    seconds = time.perf_counter() - t0
    return seconds, float(est.score(X_test, y_test))


def _rounds(contenders: dict, data, rounds: int) -> dict:
    results: dict = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, make in contenders.items():  # interleaved: a slow moment hits all
            results[name].append(_timed(make, *data))
    return {name: (statistics.median(t for t, _ in r), statistics.median(a for _, a in r))
            for name, r in results.items()}


def _print(title: str, results: dict) -> None:
    print(title)
    for name, (seconds, accuracy) in results.items():
        print(f"  {name:<28} fit {seconds:7.3f} s   test accuracy {100 * accuracy:6.2f} %")


def digits_split():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


def mnist_10k():
    from fastnn.datasets import load_mnist

    (X, y), (X_test, y_test) = load_mnist(download=False)
    X = X[:10_000].reshape(10_000, -1) / 255.0
    return X, y[:10_000], X_test.reshape(len(X_test), -1) / 255.0, y_test


def bench_lbfgs(rounds: int) -> None:
    X, X_test, y, y_test = digits_split()
    contenders = {
        "scikit-learn lbfgs": lambda: SkMLP(solver="lbfgs", random_state=0),
        "fastnn lbfgs (float64)": lambda: MLPClassifier(solver="lbfgs", random_state=0),
        "fastnn lbfgs (float32)": lambda: MLPClassifier(solver="lbfgs", random_state=0,
                                                        dtype="float32"),
    }
    _print(f"digits, MLPClassifier(solver='lbfgs'), 100 hidden, max_iter=200, median of "
           f"{rounds}:", _rounds(contenders, (X, y, X_test, y_test), rounds))


def bench_dtype(rounds: int) -> None:
    kw = dict(max_iter=10, random_state=0)
    contenders = {
        "fastnn float64 (default)": lambda: MLPClassifier(**kw),
        "fastnn float32": lambda: MLPClassifier(dtype="float32", **kw),
    }
    X, X_test, y, y_test = digits_split()
    _print(f"digits, adam, 100 hidden, 10 epochs, median of {rounds}:",
           _rounds(contenders, (X, y, X_test, y_test), rounds))
    _print(f"MNIST 10k, adam, 100 hidden, 10 epochs, median of {rounds}:",
           _rounds(contenders, mnist_10k(), rounds))


def bench_sparse(rounds: int) -> None:
    import scipy.sparse

    X, y, X_test, y_test = mnist_10k()
    kw = dict(max_iter=5, random_state=0)
    data = {"dense": (X, y, X_test, y_test),
            "CSR": (scipy.sparse.csr_matrix(X), y, scipy.sparse.csr_matrix(X_test), y_test)}
    results: dict = {name: [] for name in data}
    for _ in range(rounds):
        for name, d in data.items():
            results[name].append(_timed(lambda: MLPClassifier(**kw), *d))
    _print(f"MNIST 10k, adam, 100 hidden, 5 epochs, dense vs CSR X ({100 * (X == 0).mean():.0f} % "
           f"zeros), median of {rounds}:",
           {k: (statistics.median(t for t, _ in r), statistics.median(a for _, a in r))
            for k, r in results.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=["lbfgs", "dtype", "sparse"])
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    for name, bench in (("lbfgs", bench_lbfgs), ("dtype", bench_dtype),
                        ("sparse", bench_sparse)):
        if args.only in (None, name):
            bench(args.rounds)


if __name__ == "__main__":
    main()
