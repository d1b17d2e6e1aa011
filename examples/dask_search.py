"""Grid search over fastnn models on a Dask cluster, through scikit-learn and joblib.

The search is plain scikit-learn (``GridSearchCV`` over ``fastnn.sklearn.MLPClassifier``);
``joblib.parallel_backend("dask")`` sends each (parameters, fold) fit to a Dask worker.
Nothing in the code depends on where the workers are: give the address of a scheduler
and the same search runs on that cluster, on one machine or many.

Start a cluster (every machine needs fastnn and the `dask` extra installed)::

    dask scheduler                          # on one machine; prints tcp://HOST:8786
    dask worker tcp://HOST:8786 --nthreads 1 --nworkers 2     # on each machine

Run:  python examples/dask_search.py [tcp://HOST:8786] [--samples N] [--synthetic] [--quick]

Without an address a local cluster of two single-threaded worker processes is started.
MNIST is read by fastnn.datasets.load_mnist (set FASTNN_DATA_DIR to the folder holding
the IDX files, or let it download them); --synthetic uses generated data instead.
"""

import argparse
import time
import warnings

import joblib
import numpy as np
from distributed import Client, LocalCluster
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

from fastnn.sklearn import MLPClassifier


def load_data(n_samples: int, synthetic: bool):
    """Training and test sets: an MNIST subset scaled to [0, 1], or generated data."""
    if synthetic:
        X, y = make_classification(n_samples=n_samples + 1000, n_features=784,
                                   n_informative=60, n_classes=10, class_sep=2.0,
                                   random_state=0)
        X = X.astype(np.float32)
        return (X[:n_samples], y[:n_samples]), (X[n_samples:], y[n_samples:])
    from fastnn.datasets import load_mnist

    (X_train, y_train), (X_test, y_test) = load_mnist()
    scale = np.float32(1 / 255)
    return ((X_train[:n_samples] * scale, y_train[:n_samples]),
            (X_test[:2000] * scale, y_test[:2000]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", nargs="?", default=None,
                        help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 "
                             "(default: start a local cluster)")
    parser.add_argument("--samples", type=int, default=6000, help="training images")
    parser.add_argument("--synthetic", action="store_true", help="generated data, not MNIST")
    parser.add_argument("--quick", action="store_true", help="a small, seconds-long run")
    args = parser.parse_args(argv)

    if args.address:
        client = Client(args.address)
        cluster = None
    else:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        workers = client.scheduler_info()["workers"]
        print(f"cluster: {client.scheduler.address}, {len(workers)} workers, "
              f"{sum(w['nthreads'] for w in workers.values())} threads")

        samples, max_iter = (1500, 3) if args.quick else (args.samples, 20)
        (X, y), (X_test, y_test) = load_data(samples, args.synthetic)
        print(f"{len(X)} training samples, {X.shape[1]} features")

        # n_threads=1: each worker runs one fit per thread, so the core stays on one
        # thread instead of competing with the other fits of the same machine.
        estimator = MLPClassifier(max_iter=max_iter, early_stopping=True, random_state=0,
                                  n_threads=1)
        grid = {"hidden_layer_sizes": [(64,), (128,)],
                "alpha": [1e-4, 1e-2],
                "learning_rate_init": [1e-3, 1e-2]}
        search = GridSearchCV(estimator, grid, cv=3, n_jobs=-1)

        start = time.perf_counter()
        with joblib.parallel_backend("dask"), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(X, y)
        elapsed = time.perf_counter() - start

        results = search.cv_results_
        print(f"\n{len(results['params'])} models x 3 folds in {elapsed:.1f} s\n")
        print("mean CV accuracy  parameters")
        for i in np.argsort(results["rank_test_score"]):
            print(f"{results['mean_test_score'][i]:16.4f}  {results['params'][i]}")
        print(f"\nbest: {search.best_params_}")
        print(f"test accuracy of the refitted best model: {search.score(X_test, y_test):.4f}")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    main()
