"""GridSearchCV over fastnn estimators on a real Dask cluster (two worker processes, loopback)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from conftest import assert_close

pytest.importorskip("sklearn")  # the `sklearn` and `dask` extras; CI installs both
distributed = pytest.importorskip("distributed")

import joblib  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from fastnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


@pytest.fixture(scope="module")
def client(request):
    """A LocalCluster of 2 single-threaded worker processes on 127.0.0.1, and its client."""
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       host="127.0.0.1", dashboard_address=None)
    dask_client = distributed.Client(cluster)

    def close():
        dask_client.close()
        cluster.close()

    request.addfinalizer(close)
    return dask_client


def _search(estimator, grid, X, y, backend: str):
    search = GridSearchCV(estimator, grid, cv=3, n_jobs=-1 if backend == "dask" else 1)
    with warnings.catch_warnings(), joblib.parallel_backend(backend):
        warnings.simplefilter("ignore", ConvergenceWarning)
        return search.fit(X, y)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_grid_search_on_dask_equals_sequential(client, kind):
    X, y = make_classification(n_samples=300, n_features=10, n_informative=6, n_classes=3,
                               random_state=0)
    if kind == "classifier":
        est = MLPClassifier(hidden_layer_sizes=(16,), max_iter=15, random_state=0, n_threads=1)
    else:
        y = X @ np.linspace(-1, 1, X.shape[1])
        est = MLPRegressor(hidden_layer_sizes=(16,), max_iter=15, random_state=0, n_threads=1)
    grid = {"alpha": [1e-4, 1e-1], "learning_rate_init": [1e-3, 1e-2]}

    with distributed.get_task_stream(client) as stream:
        on_dask = _search(est, grid, X, y, "dask")
    sequential = _search(est, grid, X, y, "sequential")

    # The fits really ran on the cluster's workers (joblib batches several fits into
    # one Dask task, so the number of tasks and of workers used may vary).
    workers = {task["worker"] for task in stream.data}
    assert stream.data and workers <= set(client.scheduler_info()["workers"])

    assert list(on_dask.cv_results_["params"]) == list(sequential.cv_results_["params"])
    for split in range(3):
        key = f"split{split}_test_score"
        # Same seeds, same data: the same models, up to the rounding of a BLAS that
        # may run with another thread count inside the workers.
        assert_close(on_dask.cv_results_[key], sequential.cv_results_[key], np.float32)
    assert on_dask.best_params_ == sequential.best_params_
    np.testing.assert_array_equal(on_dask.predict(X), sequential.predict(X))
