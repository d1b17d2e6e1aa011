"""scikit-learn estimators over fastnn networks: ``MLPClassifier`` and ``MLPRegressor``.

They follow scikit-learn's estimator conventions (``get_params``/``set_params``,
``clone``, pickling, ``score``, ``partial_fit``) and take every parameter of
``sklearn.neural_network``'s MLPs with its meaning, so they drop into ``Pipeline``,
``GridSearchCV`` and joblib's parallel back ends (threads, processes, Dask or Ray).
scikit-learn's own ``test_mlp.py`` passes against them (``tests/test_sklearn_upstream.py``).
Weights are initialised from ``random_state`` as scikit-learn draws them, so with
the same settings (and no shuffling) a fit follows scikit-learn's weights.

Importing this module needs scikit-learn (the ``sklearn`` extra); ``import fastnn``
never imports it.

How scikit-learn's objective maps onto fastnn
---------------------------------------------
scikit-learn minimises, per mini-batch of ``n_b`` rows, ``loss + alpha/(2 n_b) ||W||^2``
(the weights of every layer, not the biases; ``n_b`` is the sum of the batch's sample
weights when there are weights). fastnn's optimizers add ``weight_decay * W`` to the
gradient of the weights, so the L2 term becomes ``weight_decay = alpha / n_b`` with
``n_b = batch_size * mean(sample weight)``. For the last, smaller batch of an epoch
scikit-learn uses that batch's own size; fastnn keeps the nominal batch size.

For regression scikit-learn's squared loss is ``0.5 * sum over outputs`` per sample
(its gradient), while fastnn's "mse" is the mean over all ``n_outputs`` elements,
whose gradient is ``2 / n_outputs`` times larger; its binary cross-entropy
(multilabel) and Poisson deviance sum over the outputs where fastnn's average
(``1 / n_outputs``). The estimators compensate (``_gradient_scale``), so the
updates equal scikit-learn's: the SGD learning rate is divided by that scale,
Adam's ``epsilon`` and ``weight_decay`` multiplied by it (Adam is otherwise
scale-free). ``loss_curve_`` is reported as scikit-learn reports it (for the
squared error half the mean over all elements, plus the L2 term at the end of the
epoch), so ``tol`` means the same. L-BFGS minimises the loss on scikit-learn's
gradient scale plus ``alpha/(2 sum(w)) ||W||^2`` over the full batch.

fastnn's SGD is PyTorch's (the velocity sums gradients; scikit-learn's sums steps).
The two agree while the learning rate is constant; when "invscaling" or "adaptive"
changes it, the velocity is rescaled by ``old / new`` so the steps stay scikit-learn's.

Sparse input
------------
CSR or CSC ``X`` is converted to CSR once and densified only a chunk of rows at a
time (``SPARSE_CHUNK_BYTES``, whole batches) into an ordinary array for the compiled
loop; each epoch is shuffled first with the network's generator, so the batches
are those the dense ``X`` would give. Prediction and L-BFGS go a chunk at a time too.

Sample and class weights
------------------------
``class_weight`` multiplies into ``sample_weight``. The weights reach fastnn scaled to
mean 1 (a batch's loss stays a weighted average in expectation, so the learning rate
keeps its meaning), and the L2 term uses ``n_b = batch_size * mean(weight)``: integer
weights then act as repeated rows, exactly so with full batches, as in scikit-learn.

Threads
-------
The compiled core releases the GIL for a whole epoch, so joblib's threading backend
trains several models at once on one copy of the data. ``n_threads`` limits each fit's
BLAS and OpenMP threads (by default to 1 on any thread but the main one). OpenMP's
limit is per thread; BLAS's (threadpoolctl) is process-wide, so concurrent fits share
the limit set by the first one until the last one ends, and a fit on the main thread
running at the same time as fits on worker threads runs under their limit too.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from numbers import Integral, Real
from typing import Any

import numpy as np

try:
    import scipy.optimize
    import scipy.sparse
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state
    from sklearn.utils.class_weight import compute_class_weight
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import check_classification_targets, unique_labels
    from sklearn.utils.validation import (
        _check_sample_weight,
        check_is_fitted,
        column_or_1d,
        validate_data,
    )
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "fastnn.sklearn needs scikit-learn >= 1.6; install it with "
        "`pip install 'fastnn[sklearn]'` (the `sklearn` extra)") from exc

import threadpoolctl

from fastnn._validation import refuse_sparse_or_masked
from fastnn.network import Network
from fastnn.optim import SGD, Adam, Optimizer
from fastnn.threads import check_num_threads, limit_held, omp_max_threads, omp_set_num_threads

__all__ = ["MLPClassifier", "MLPRegressor"]

# scikit-learn's activation names -> fastnn's.
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}

_STOCHASTIC_SOLVERS = ("sgd", "adam")
_LEARNING_RATES = ("constant", "invscaling", "adaptive")

# scikit-learn's message, which its tests and users match.
_NONFINITE_MESSAGE = ("Solver produced non-finite parameter weights. The input data may contain "
                      "large values and need to be preprocessed.")

# Sparse X is densified this many bytes of rows at a time (a whole number of
# batches), never as a whole: the dense chunk feeds the compiled loop as usual.
SPARSE_CHUNK_BYTES = 16 << 20


# ---------------------------------------------------------------- thread limits

_limit_lock = threading.Lock()
_limit_users = 0
_limit_controller: Any = None


def _release_blas_control() -> None:
    """Let any thread set OpenBLAS's limit next.

    threadpoolctl (>= 3.7) lets only one "controlling" thread change OpenBLAS's
    process-wide pool; a thread that called ``threadpool_limits`` without ``with``
    (``fastnn.set_num_threads`` does) keeps that role, and other threads' limits
    are then silently ignored. The fits below run on joblib's worker threads, so
    they take and hand back the role explicitly.
    """
    clear = getattr(threadpoolctl.OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


def _resolve_n_threads(n_threads: int | None) -> int | None:
    """The thread limit a fit applies: None (no limit), or a number of threads.

    ``None`` (the default) limits to 1 thread when the fit runs on a thread other
    than the main one: that is how joblib's threading backend and Dask workers run
    fits, usually several at once, and each model's BLAS pool at full width would
    then compete for the same cores. On the main thread it sets no limit. ``-1``
    means all CPUs. Anything else is checked here, before any limit changes.
    """
    if n_threads is None:
        return None if threading.current_thread() is threading.main_thread() else 1
    n = check_num_threads(n_threads, "n_threads", allow_all=True)
    return (os.cpu_count() or 1) if n == -1 else n


@contextlib.contextmanager
def _thread_limits(n_threads: int | None) -> Iterator[None]:
    """Limit BLAS and OpenMP threads to ``n_threads`` while a fit runs (None: no limit).

    BLAS thread limits (threadpoolctl) are process-global, so concurrent fits on
    threads share one limit: the first fit to enter sets it and the last one to
    leave restores the previous setting (reference counted), rather than each fit
    restoring it under the feet of the others. OpenMP's thread count is a
    per-thread setting, so each fit sets its own and restores it on exit.

    Whatever fails once this fit is counted in, the count is given back: a count
    left behind would make every later fit skip setting its own limit.
    """
    global _limit_users, _limit_controller
    if n_threads is None:
        yield
        return
    with limit_held():  # no fit chooses BLAS's threads while this limit stands
        with _limit_lock:
            if _limit_users == 0:
                _release_blas_control()
                _limit_controller = threadpoolctl.threadpool_limits(limits=n_threads,
                                                                    user_api="blas")
            _limit_users += 1
        try:
            omp_before = omp_max_threads()
            try:
                omp_set_num_threads(n_threads)
                yield
            finally:
                omp_set_num_threads(omp_before)
        finally:
            with _limit_lock:
                _limit_users -= 1
                if _limit_users == 0:
                    _release_blas_control()  # this thread may not be the one that set it
                    _limit_controller.restore_original_limits()
                    _limit_controller = None
                    _release_blas_control()




# ---------------------------------------------------------------- optimizers and parameters


class _SklearnSGD(SGD):
    """fastnn's SGD, with scikit-learn's ``learning_rate`` (its step on scikit-learn's loss).

    ``gradient_scale`` is how much larger fastnn's loss gradient is than
    scikit-learn's, so ``lr * gradient_scale`` is the step scikit-learn would
    take. Only the name is added: the compiled loop runs SGD's own rule.
    """

    gradient_scale = 1.0

    @property
    def learning_rate(self) -> float:
        """The current step size on scikit-learn's scale."""
        return self.lr * self.gradient_scale


class _SklearnAdam(Adam):
    """fastnn's Adam, with scikit-learn's name ``learning_rate`` for its step size."""

    @property
    def learning_rate(self) -> float:
        """The current step size (Adam is scale-free: the same on either loss scale)."""
        return self.lr


class _LayerArrays(list):
    """``coefs_`` or ``intercepts_``: the network's own arrays, one per layer.

    Reading gives the arrays the network predicts with, so ``clf.coefs_[0][...] = x``
    changes the model; assigning an item (``clf.coefs_[0] = x``) replaces that
    layer's array in the network (checked for shape, converted to its dtype).
    """

    def __init__(self, network: Network, name: str) -> None:
        super().__init__(getattr(layer, name) for layer in network.layers)
        self._layers = network.layers
        self._name = name

    def __setitem__(self, index, value) -> None:
        if isinstance(index, slice):
            positions = range(len(self))[index]
            values = list(value)
            if len(values) != len(positions):
                raise ValueError(f"{self._name} arrays cannot be added or removed: the network "
                                 f"has {len(self._layers)} layers")
            for i, v in zip(positions, values):
                self[i] = v
            return
        i = range(len(self))[index]  # negative indices; IndexError beyond the layers
        setattr(self._layers[i], self._name, value)  # Dense checks the shape and converts
        super().__setitem__(i, getattr(self._layers[i], self._name))

    def __reduce__(self):
        return list, (list(self),)  # pickles as the plain list scikit-learn has


# ---------------------------------------------------------------- shared base


class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share: parameters, the training loops."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None, n_threads=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.n_threads = n_threads

    # ------------------------------------------------------------ fitted parameters

    def _fitted_network(self, attribute: str) -> Network:
        network = self.__dict__.get("network_")
        if network is None:
            # AttributeError, so that hasattr() and check_is_fitted see "not fitted".
            raise AttributeError(f"{type(self).__name__!r} object has no attribute "
                                 f"{attribute!r} (it exists once the estimator is fitted)")
        return network

    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weights ``(n_in, n_out)`` of every layer: the fitted network's own arrays.

        Writing into them (``clf.coefs_[0][...] = W``), replacing one
        (``clf.coefs_[0] = W``) or all (``clf.coefs_ = [...]``) changes the model,
        as in scikit-learn; new arrays are checked for shape and converted to the
        network's dtype.
        """
        return _LayerArrays(self._fitted_network("coefs_"), "W")

    @coefs_.setter
    def coefs_(self, values) -> None:
        self._set_layer_arrays("coefs_", "W", values)

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Biases ``(n_out,)`` of every layer, the network's own arrays (see ``coefs_``)."""
        return _LayerArrays(self._fitted_network("intercepts_"), "b")

    @intercepts_.setter
    def intercepts_(self, values) -> None:
        self._set_layer_arrays("intercepts_", "b", values)

    def _set_layer_arrays(self, attribute: str, name: str, values) -> None:
        arrays = _LayerArrays(self._fitted_network(attribute), name)
        values = list(values)
        if len(values) != len(arrays):
            raise ValueError(f"{attribute} needs one array per layer ({len(arrays)}), "
                             f"got {len(values)}")
        arrays[:] = values

    # ------------------------------------------------------------ validation

    def _validate_params(self) -> tuple[int, ...]:
        """Check the hyper-parameters (in fit, as scikit-learn does); return the hidden sizes."""
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, (Integral, np.integer)) and not isinstance(sizes, bool):
            sizes = (sizes,)
        try:
            sizes = tuple(sizes)
        except TypeError:
            raise TypeError("hidden_layer_sizes must be an int or a sequence of ints, got "
                            f"{self.hidden_layer_sizes!r}") from None
        if not all(isinstance(s, (Integral, np.integer)) and not isinstance(s, bool) and s > 0
                   for s in sizes):
            raise ValueError(f"hidden_layer_sizes must hold positive ints, got {sizes!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, "
                             f"got {self.activation!r}")
        if self.solver not in ("sgd", "adam", "lbfgs"):
            raise ValueError(f"solver must be 'sgd', 'adam' or 'lbfgs', got {self.solver!r}")
        if self.learning_rate not in _LEARNING_RATES:
            raise ValueError(f"learning_rate must be one of {list(_LEARNING_RATES)}, "
                             f"got {self.learning_rate!r}")
        _check_real(self.alpha, "alpha", low=0)
        _check_real(self.learning_rate_init, "learning_rate_init", low=0, strict=True)
        _check_real(self.power_t, "power_t", low=0)
        _check_int(self.max_iter, "max_iter", low=1)
        _check_int(self.max_fun, "max_fun", low=1)
        _check_real(self.tol, "tol", low=0)
        _check_real(self.momentum, "momentum", low=0, high=1)
        _check_real(self.validation_fraction, "validation_fraction", low=0, high=1, strict=True)
        _check_real(self.beta_1, "beta_1", low=0, high=1)
        _check_real(self.beta_2, "beta_2", low=0, high=1)
        _check_real(self.epsilon, "epsilon", low=0, strict=True)
        if not (isinstance(self.n_iter_no_change, (Real, np.floating))
                and self.n_iter_no_change == np.inf):  # np.inf: never stop early
            _check_int(self.n_iter_no_change, "n_iter_no_change", low=1)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            _check_int(self.batch_size, "batch_size", low=1)
        if self.n_threads is not None:
            check_num_threads(self.n_threads, "n_threads", allow_all=True)
        if self.dtype is not None and str(np.dtype(self.dtype)) not in ("float32", "float64"):
            raise TypeError(f"dtype must be None, 'float32' or 'float64', got {self.dtype!r}")
        self._check_loss()
        return sizes

    def _check_loss(self) -> None:
        pass

    # ------------------------------------------------------------ fitting

    def fit(self, X, y, sample_weight=None):
        """Train the network on (X, y).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training inputs. Sparse CSR/CSC input is densified a chunk of rows at
            a time, never as a whole.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels or a label indicator matrix (classifier), or targets
            (regressor).
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each sample (see the module notes).

        Returns
        -------
        self
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _check_solver(self) -> bool:
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    def _fit_dtype(self, keep: bool):
        """The dtype X is converted to: the model's, the one asked for, or the input's float."""
        if keep:
            return self.network_.dtype
        if self.dtype is None:
            return (np.float64, np.float32)  # float32 stays float32, anything else float64
        return np.dtype(self.dtype)

    def _fit(self, X, y, sample_weight, incremental: bool, classes=None):
        sizes = self._validate_params()
        first_call = "network_" not in self.__dict__
        keep = (incremental or self.warm_start) and not first_call
        if keep and self.dtype is not None and self.network_.dtype != np.dtype(self.dtype):
            raise ValueError("dtype changed since the previous fit; refit without warm_start")
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        regression = isinstance(self, RegressorMixin)
        # scikit-learn would read a masked X or y as if nothing were masked.
        X = _refuse_masked(X, "X")
        y = refuse_sparse_or_masked(y, "y")
        sample_weight = refuse_sparse_or_masked(sample_weight, "sample_weight")
        X, y = validate_data(self, X, y, reset=not keep, accept_sparse=["csr", "csc"],
                             dtype=self._fit_dtype(keep), multi_output=True,
                             y_numeric=regression)
        if scipy.sparse.issparse(X):
            X = X.tocsr()  # rows are gathered a chunk at a time: CSR makes that cheap
        dtype = X.dtype
        y, y_net = self._encode_y(y, keep, classes, incremental, dtype)
        sw, mean_w = self._sample_weights(X, y, sample_weight)
        self._random_state = check_random_state(self.random_state)
        if not keep:
            self._initialize(X.shape[1], sizes, y_net, dtype)
        elif self.solver in _STOCHASTIC_SOLVERS and not hasattr(self, "loss_curve_"):
            self._reset_stochastic_state()  # warm start after an lbfgs fit

        with self._thread_limits():
            if self.solver == "lbfgs":
                self._fit_lbfgs(X, y_net, sw, mean_w)
            else:
                self._fit_stochastic(X, y, y_net, sw, mean_w, incremental, first_fit=not keep)
        if not all(np.isfinite(a).all() for a in self.network_._params()):
            raise ValueError(_NONFINITE_MESSAGE)
        return self

    def _initialize(self, n_features: int, sizes, y_net, dtype) -> None:
        """A new network, initialised as scikit-learn initialises its MLP."""
        n_outputs = self._n_outputs
        network = Network.mlp([n_features, *sizes, n_outputs],
                              activation=_ACTIVATIONS[self.activation], loss=self._net_loss(),
                              output_activation="identity", dtype=dtype, seed=0)
        # Glorot-uniform weights and biases drawn from random_state in scikit-learn's
        # order, so that a random_state gives scikit-learn's starting point.
        factor = 2.0 if self.activation == "logistic" else 6.0
        for layer in network.layers:
            bound = np.sqrt(factor / (layer.n_in + layer.n_out))
            layer.W = self._random_state.uniform(-bound, bound, (layer.n_in, layer.n_out))
            layer.b = self._random_state.uniform(-bound, bound, layer.n_out)
        self.network_ = network
        self._shuffle_seeded = False
        self.__dict__.pop("_learning_rate", None)
        self._optimizer = None
        self.n_iter_ = 0
        self.t_ = 0
        self.n_layers_ = len(network.layers) + 1
        self.n_outputs_ = n_outputs
        self.out_activation_ = self._out_activation()
        for name in ("loss_curve_", "best_loss_", "validation_scores_",
                     "best_validation_score_"):
            self.__dict__.pop(name, None)
        if self.solver in _STOCHASTIC_SOLVERS:
            self._reset_stochastic_state()

    def _reset_stochastic_state(self) -> None:
        self.loss_curve_ = []
        self.best_loss_ = np.inf
        self.validation_scores_ = None
        self.best_validation_score_ = None
        self._no_improvement_count = 0
        self._best_params = None

    def _seed_shuffling(self) -> None:
        """Seed the network's shuffling from random_state, after the draws scikit-learn makes."""
        if not self._shuffle_seeded:
            seed = int(self._random_state.randint(np.iinfo(np.int32).max))
            self.network_._rng = np.random.default_rng(seed)
            self.network_.seed = seed
            self._shuffle_seeded = True

    # ------------------------------------------------------------ stochastic solvers

    def _fit_stochastic(self, X, y, y_net, sw, mean_w, incremental: bool,
                        first_fit: bool) -> None:
        early_stopping = self.early_stopping and not incremental
        if early_stopping:
            X, X_val, y_net, y_val, sw, sw_val = self._validation_split(X, y, y_net, sw)
            if sw is not None:
                mean_w = float(np.mean(sw))
            if self.validation_scores_ is None:  # a warm start continues the record
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self._best_params = None
            self.best_loss_ = None
        elif self.best_loss_ is None:  # early stopping before, not now
            self.best_loss_ = np.inf
        if not incremental:
            # Each fit (a warm start too) gets n_iter_no_change epochs to improve;
            # scikit-learn carries the count over, so a warm start after a stop
            # would stop again after one epoch.
            self._no_improvement_count = 0
        self._seed_shuffling()

        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped", UserWarning, stacklevel=4)
            batch_size = min(self.batch_size, n)
        optimizer = self._make_optimizer(batch_size, mean_w, incremental)
        if not incremental or not hasattr(self, "_learning_rate"):
            self._learning_rate = float(self.learning_rate_init)  # scikit-learn's new optimizer
        sw_net = None if sw is None else _normalised(sw)

        max_iter = 1 if incremental else self.max_iter
        for n_iter in range(1, max_iter + 1):
            self._apply_learning_rate(optimizer)
            try:
                epoch_loss = self._train_epoch(X, y_net, sw_net, batch_size, optimizer)
            except FloatingPointError as exc:
                # The network kept the last weights whose loss was finite.
                self.n_iter_ = n_iter
                self.t_ += n
                self.loss_ = float("nan")
                self.loss_curve_.append(self.loss_)
                if not early_stopping:
                    raise ValueError(_NONFINITE_MESSAGE) from exc
                # As scikit-learn: the diverged epoch scores NaN and the best
                # epoch's weights are restored below.
                self.validation_scores_.append(float("nan"))
                warnings.warn("The training loss became NaN or infinite in epoch "
                              f"{n_iter}; training stopped and the weights of the best "
                              "validation score were restored.", ConvergenceWarning,
                              stacklevel=3)
                break
            # Only once an epoch has run: a fit that fails keeps the previous count.
            self.n_iter_ = n_iter
            self.t_ += n
            self.loss_ = self._sklearn_loss(epoch_loss, batch_size, mean_w)
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            self._update_no_improvement_count(early_stopping, X_val if early_stopping else None,
                                              y_val if early_stopping else None,
                                              sw_val if early_stopping else None)
            if self.solver == "sgd" and self.learning_rate == "invscaling":
                self._learning_rate = (float(self.learning_rate_init)
                                       / (self.t_ + 1) ** self.power_t)
                self._apply_learning_rate(optimizer)
            if self._no_improvement_count > self.n_iter_no_change:
                what = "Validation score" if early_stopping else "Training loss"
                msg = (f"{what} did not improve more than tol={self.tol:f} for "
                       f"{self.n_iter_no_change} consecutive epochs.")
                if self._trigger_stopping(msg):
                    break
                self._no_improvement_count = 0
                self._apply_learning_rate(optimizer)
            if incremental:
                break
            if n_iter == max_iter:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                              "reached and the optimization hasn't converged yet.",
                              ConvergenceWarning, stacklevel=3)
        if early_stopping and self._best_params is not None:
            # Restore the weights of the epoch with the best validation score.
            for layer, (W, b) in zip(self.network_.layers, self._best_params):
                layer.W, layer.b = W, b

    def _validation_split(self, X, y, y_net, sw):
        """Hold out ``validation_fraction`` of the rows (stratified for classes)."""
        stratify = self._stratify(y, y_net)
        arrays = [X, y_net, y] if sw is None else [X, y_net, y, sw]
        parts = train_test_split(*arrays, random_state=self._random_state,
                                 test_size=self.validation_fraction, stratify=stratify)
        X, X_val, y_net, _, _, y_val = parts[:6]
        sw, sw_val = (parts[6], parts[7]) if sw is not None else (None, None)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        return X, X_val, y_net, y_val, sw, sw_val

    def _stratify(self, y, y_net):
        return None

    def _update_no_improvement_count(self, early_stopping: bool, X_val, y_val, sw_val) -> None:
        if early_stopping:
            score = self._score_val(X_val, y_val, sw_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = [(layer.W.copy(), layer.b.copy())
                                     for layer in self.network_.layers]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])

    def _trigger_stopping(self, msg: str) -> bool:
        """scikit-learn's rule: stop, or with learning_rate="adaptive" divide the step by 5."""
        if self.solver != "sgd" or self.learning_rate != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if self._learning_rate <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self._learning_rate /= 5.0
        if self.verbose:
            print(msg + f" Setting learning rate to {self._learning_rate:f}")
        return False

    def _apply_learning_rate(self, optimizer: Optimizer) -> None:
        """Set SGD's step to ``_learning_rate``, keeping scikit-learn's momentum.

        scikit-learn's velocity holds past steps (``v = mu v - lr g``); fastnn's,
        PyTorch's, past gradients (``v = mu v + g``, step ``lr v``), so scikit-learn's
        velocity is ``-lr`` times fastnn's. When the step changes (invscaling,
        adaptive), fastnn's velocity is rescaled by ``old / new`` so that both
        keep moving as scikit-learn's does.
        """
        if self.solver != "sgd":
            return
        new = self._learning_rate / self._gradient_scale()
        old = optimizer.lr
        if new != old and optimizer.momentum > 0 and optimizer.state:
            for per_param in optimizer.state:
                # A new array, not in place: the state may be a read-only memory map.
                per_param[0] = (per_param[0] * (old / new)).astype(per_param[0].dtype)
        optimizer.lr = new

    def _train_epoch(self, X, y_net, sw_net, batch_size: int, optimizer: Optimizer) -> float:
        """One epoch; returns fastnn's mean training loss of it."""
        network = self.network_
        if not scipy.sparse.issparse(X):
            fit_kw = {} if sw_net is None else {"sample_weight": sw_net}
            history = network.fit(X, y_net, epochs=1, batch_size=batch_size,
                                  optimizer=optimizer, shuffle=self.shuffle, **fit_kw)
            return history.loss[-1]
        # Sparse X: shuffle as Network.fit does (the same generator, so the same
        # order as for the dense X), then densify a whole number of batches at a
        # time and train on them in order: the batches are those of the dense fit.
        n = X.shape[0]
        order = network._rng.permutation(n) if self.shuffle else np.arange(n)
        rows = _chunk_rows(X, batch_size)
        total = 0.0
        for start in range(0, n, rows):
            idx = order[start:start + rows]
            fit_kw = {}
            if sw_net is not None:
                if not sw_net[idx].any():
                    continue  # nothing to learn in this chunk (Network.fit refuses it)
                fit_kw = {"sample_weight": sw_net[idx]}
            history = network.fit(X[idx].toarray(), y_net[idx], epochs=1,
                                  batch_size=batch_size, optimizer=optimizer, shuffle=False,
                                  **fit_kw)
            total += history.loss[-1] * len(idx)
        return total / n

    def _make_optimizer(self, batch_size: int, mean_w: float, incremental: bool) -> Optimizer:
        """The optimizer for this fit: the previous one (its state kept) when resuming."""
        scale = self._gradient_scale()
        weight_decay = self.alpha / (batch_size * mean_w) * scale
        opt = self._optimizer
        resume = (incremental or self.warm_start) and opt is not None and opt.kind == self.solver
        if resume:
            # Keep the state (moments, velocity); only the step hyper-parameters may change.
            opt.weight_decay = weight_decay
            if self.solver == "sgd":
                opt.gradient_scale = scale  # opt.lr: set with the velocity, per epoch
                if opt.momentum != self.momentum or opt.nesterov != self._nesterov():
                    resume = False
            else:
                opt.lr = self.learning_rate_init
                opt.betas = (float(self.beta_1), float(self.beta_2))
                opt.eps = self.epsilon * scale
        if not resume:
            if self.solver == "sgd":
                opt = _SklearnSGD(lr=self.learning_rate_init / scale, momentum=self.momentum,
                                  nesterov=self._nesterov(), weight_decay=weight_decay)
                opt.gradient_scale = scale
            else:
                opt = _SklearnAdam(lr=self.learning_rate_init, betas=(self.beta_1, self.beta_2),
                                   eps=self.epsilon * scale, weight_decay=weight_decay)
        self._optimizer = opt
        return opt

    def _nesterov(self) -> bool:
        return bool(self.nesterovs_momentum) and self.momentum > 0

    def _gradient_scale(self) -> float:
        """How much larger fastnn's loss gradient is than scikit-learn's.

        fastnn's "mse", binary cross-entropy and Poisson loss average over the
        outputs too; scikit-learn's sum over them (and its squared error's
        gradient has no factor 2).
        """
        return 1.0

    def _loss_value_scale(self) -> float:
        """fastnn's loss value times this is the one scikit-learn reports."""
        return 1.0 / self._gradient_scale()

    def _sklearn_loss(self, epoch_loss: float, batch_size: int, mean_w: float) -> float:
        """The epoch's loss on scikit-learn's scale, with its L2 term (at the epoch's end)."""
        penalty = sum(float(np.dot(layer.W.ravel(), layer.W.ravel()))
                      for layer in self.network_.layers)
        return float(epoch_loss) * self._loss_value_scale() + \
            0.5 * self.alpha * penalty / (batch_size * mean_w)

    # ------------------------------------------------------------ L-BFGS

    def _fit_lbfgs(self, X, y_net, sw, mean_w: float) -> None:
        """Full-batch L-BFGS-B (SciPy) on scikit-learn's objective, with fastnn's gradients.

        The objective is the loss on scikit-learn's scale plus
        ``alpha / (2 sum(w)) ||W||^2``; fastnn's loss and gradients are scaled to
        it (``_gradient_scale``), so its value and gradient agree.
        """
        network = self.network_
        params = network._params()
        decayed = [name in layer.decayed for layer in network.layers
                   for name in layer.param_names]
        bounds = np.cumsum([0] + [p.size for p in params])
        n = X.shape[0]
        sw_sum = n * mean_w
        # fastnn's weighted loss divides by n; scikit-learn's average by sum(w).
        scale = (1.0 if sw is None else n / sw_sum) / self._gradient_scale()
        alpha = float(self.alpha)

        def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
            for p, lo, hi in zip(params, bounds[:-1], bounds[1:]):
                p[...] = x[lo:hi].reshape(p.shape)
            loss, grads = self._full_loss_and_grads(X, y_net, sw)
            value = loss * scale
            grad = np.empty(bounds[-1])
            for p, g, dec, lo, hi in zip(params, grads, decayed, bounds[:-1], bounds[1:]):
                gw = g.ravel() * scale
                if dec and alpha:
                    w = p.ravel().astype(np.float64)
                    value += 0.5 * alpha * float(np.dot(w, w)) / sw_sum
                    gw = gw + alpha * w / sw_sum
                grad[lo:hi] = gw
            return value, grad

        x0 = np.concatenate([p.ravel() for p in params]).astype(np.float64)
        options = {"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol}
        with warnings.catch_warnings():
            # Overflow in a trial step the line search then rejects.
            warnings.simplefilter("ignore", RuntimeWarning)
            result = scipy.optimize.minimize(objective, x0, method="L-BFGS-B", jac=True,
                                             options=options)
        for p, lo, hi in zip(params, bounds[:-1], bounds[1:]):
            p[...] = result.x[lo:hi].reshape(p.shape)
        self.n_iter_ = min(int(result.nit), self.max_iter)
        self.loss_ = float(result.fun)
        if self._loss_value_scale() != 1 / self._gradient_scale():
            # Several squared-error outputs: the objective sums them per sample (the
            # gradient scikit-learn follows); scikit-learn reports their mean.
            loss, _ = self._full_loss_and_grads(X, y_net, sw)
            weight = 1.0 if sw is None else n / sw_sum
            self.loss_ += loss * weight * (self._loss_value_scale() - 1 / self._gradient_scale())
        if self.verbose:
            print(f"L-BFGS: {self.n_iter_} iterations, {result.nfev} function evaluations, "
                  f"loss = {self.loss_:.8f}")
        if result.status != 0:
            message = result.message
            if isinstance(message, bytes):
                message = message.decode("latin1")
            warnings.warn(f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                          f"(status={result.status}):\n{message}\n\nIncrease the number of "
                          f"iterations (max_iter={self.max_iter}) or of function evaluations "
                          f"(max_fun={self.max_fun}), or scale the data.",
                          ConvergenceWarning, stacklevel=4)

    def _full_loss_and_grads(self, X, y_net, sw) -> tuple[float, list[np.ndarray]]:
        """fastnn's mean loss on all of (X, y) and its gradients, flat in parameter order."""
        network = self.network_
        if not scipy.sparse.issparse(X):
            loss, grads = network.loss_and_grads(X, y_net, sample_weight=sw)
            return loss, [g for per_layer in grads if per_layer for g in per_layer]
        n = X.shape[0]
        total, summed = 0.0, None
        rows = _chunk_rows(X, 1)
        for start in range(0, n, rows):
            part = slice(start, min(start + rows, n))
            loss, grads = network.loss_and_grads(
                X[part].toarray(), y_net[part], sample_weight=None if sw is None else sw[part])
            flat = [g.astype(np.float64) for per_layer in grads if per_layer for g in per_layer]
            weight = (part.stop - part.start) / n  # the means over the chunks, re-weighted
            total += loss * weight
            if summed is None:
                summed = [g * weight for g in flat]
            else:
                for acc, g in zip(summed, flat):
                    acc += g * weight
        return total, summed

    # ------------------------------------------------------------ sample weights

    def _sample_weights(self, X, y, sample_weight) -> tuple[np.ndarray | None, float]:
        """Per-sample weights (sample_weight times class_weight) and their mean.

        The weights are None when absent or uniform: the loss is a weighted
        *average*, so uniform weights train exactly as no weights (only the L2
        term, through the mean, sees their scale).
        """
        sw = None
        if sample_weight is not None:
            sw = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                      ensure_non_negative=True)
        sw = self._apply_class_weight(y, sw)
        if sw is None:
            return None, 1.0
        if not np.isfinite(sw).all():
            raise ValueError("sample_weight contains NaN or infinity")
        if sw.sum() <= 0:
            raise ValueError("sample_weight sums to zero: at least one sample needs a "
                             "positive weight")
        if np.all(sw == sw[0]):
            return None, float(sw[0])
        return sw, float(np.mean(sw))

    def _apply_class_weight(self, y, sw):
        return sw

    # ------------------------------------------------------------ inference

    def _validated_X(self, X):
        """X checked for prediction, in the network's dtype (after checking the fit)."""
        check_is_fitted(self, "network_")
        X = _refuse_masked(X, "X")
        # Read-only parameters (a model loaded by joblib with mmap_mode="r") are
        # fine: the compiled forward pass only reads them.
        X = validate_data(self, X, reset=False, accept_sparse=["csr", "csc"],
                          dtype=self.network_.dtype)
        return X.tocsr() if scipy.sparse.issparse(X) else X

    def _network_output(self, X, method: str) -> np.ndarray:
        """``network_.<method>(X)`` for validated X, a chunk of rows at a time when sparse."""
        call = getattr(self.network_, method)
        with self._thread_limits():
            if not scipy.sparse.issparse(X):
                return call(X)
            rows = _chunk_rows(X, 1)
            return np.concatenate([call(X[start:start + rows].toarray())
                                   for start in range(0, X.shape[0], rows)])

    def _score_val(self, X_val, y_val, sw_val) -> float:
        """The validation score, without re-validating X (which would drop feature names).

        NaN when the predictions are not finite (a diverging model), as in scikit-learn.
        """
        y_pred = self._predict_validated(X_val)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return float("nan")
        return float(self._score_function(y_val, y_pred, sample_weight=sw_val))

    def _thread_limits(self):
        """The thread limits of this estimator's fits and predictions (``n_threads``)."""
        return _thread_limits(_resolve_n_threads(self.n_threads))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


_PARAMETERS_DOC = """\
    hidden_layer_sizes : int or tuple of int, default (100,)
        Units of each hidden layer.
    activation : {"identity", "logistic", "tanh", "relu"}, default "relu"
        Activation of the hidden layers.
    solver : {"adam", "sgd", "lbfgs"}, default "adam"
        The optimizer. "lbfgs" is SciPy's L-BFGS-B on the full batch (for small
        data), with fastnn's loss and gradients.
    alpha : float, default 1e-4
        Strength of the L2 penalty on the weights, as scikit-learn defines it
        (see the module notes for the mapping onto ``weight_decay``).
    batch_size : int or "auto", default "auto"
        Rows per mini-batch; "auto" is ``min(200, n_samples)``. Not used by lbfgs.
    learning_rate : {"constant", "invscaling", "adaptive"}, default "constant"
        Step-size schedule of ``solver="sgd"``, as in scikit-learn: "invscaling"
        uses ``learning_rate_init / (t + 1) ** power_t`` after each epoch (``t``
        the samples seen, ``t_``); "adaptive" keeps the step while the loss (or
        validation score) improves and divides it by 5 each time it has not
        improved by ``tol`` for ``n_iter_no_change`` epochs, stopping below 1e-6.
    learning_rate_init : float, default 1e-3
        Initial step size (sgd and adam).
    power_t : float, default 0.5
        Exponent of "invscaling".
    max_iter : int, default 200
        Maximum number of epochs (sgd, adam) or of L-BFGS iterations.
    shuffle : bool, default True
        Shuffle the rows every epoch.
    random_state : int, RandomState or None, default None
        Seeds the initialisation (drawn as scikit-learn draws it), the shuffling
        and the validation split.
    tol : float, default 1e-4
        Minimum improvement of the training loss (or of the validation score
        with ``early_stopping``) that counts as progress; for lbfgs, the
        gradient tolerance (``gtol``).
    verbose : bool, default False
        Print the loss after every epoch.
    warm_start : bool, default False
        Continue from the previous fit: weights *and* optimizer state (Adam's
        moments, SGD's velocity) are kept.
    momentum : float, default 0.9
        SGD momentum.
    nesterovs_momentum : bool, default True
        Use Nesterov momentum with SGD (when ``momentum > 0``).
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the data, stop when its score has not
        improved by ``tol`` for ``n_iter_no_change`` epochs, and restore the
        weights of the best epoch (sgd and adam).
    validation_fraction : float, default 0.1
        Share of the data held out with ``early_stopping``.
    beta_1, beta_2, epsilon : float, default 0.9, 0.999, 1e-8
        Adam's parameters.
    n_iter_no_change : int or np.inf, default 10
        Epochs without progress before stopping (np.inf: never stop early).
    max_fun : int, default 15000
        Maximum number of loss evaluations of lbfgs.
    dtype : {None, "float32", "float64"}, default None
        Precision of the parameters and of the computation. None follows the
        input, as scikit-learn does: float32 X trains and predicts in float32,
        anything else in float64. "float32" asks for float32 speed on float64 data.
    n_threads : int or None, default None
        Threads of the compiled core (BLAS and OpenMP) while this estimator fits
        or predicts, at most ``fastnn.threads.MAX_THREADS`` (4096);
        -1 means all CPUs. None: 1 when the fit runs on a thread other than the
        main one (joblib's threading backend, Dask workers: several models train at
        once, one per core), else the process's setting (``fastnn.set_num_threads``).
        BLAS limits are process-wide: fits running at once on threads share the
        limit set by the first of them until the last one ends."""

_ATTRIBUTES_DOC = """\
    network_ : fastnn.Network
        The fitted network (save it, plot it, or use it directly).
    coefs_, intercepts_ : list of ndarray
        Weights ``(n_in, n_out)`` and biases of every layer: the network's own
        arrays, so writing or assigning them changes the model.
    loss_ : float
        The last training loss (with the L2 term).
    loss_curve_ : list of float
        Training loss of every epoch (sgd and adam).
    validation_scores_ : list of float or None
        Validation score of every epoch with ``early_stopping``, else None.
    best_validation_score_ : float or None
        Best of ``validation_scores_``.
    best_loss_ : float or None
        Lowest training loss (None with ``early_stopping``, as in scikit-learn).
    n_iter_ : int
        Epochs (or L-BFGS iterations) run by the last fit.
    t_ : int
        Training samples seen since the model was initialised (sgd and adam).
    n_features_in_ : int
        Number of input features.
    feature_names_in_ : ndarray of str
        Input feature names, when X had them.
    n_layers_, n_outputs_ : int
        Number of layers (with the input layer) and of outputs.
    out_activation_ : str
        The output's activation, in scikit-learn's names."""


# ---------------------------------------------------------------- classifier


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multi-layer perceptron classifier trained by fastnn's compiled core.

    Binary problems use one sigmoid output and binary cross-entropy (as
    scikit-learn's ``MLPClassifier``, so ``coefs_`` have the same shapes);
    multiclass problems use one output per class and softmax cross-entropy;
    multilabel problems (``y`` a label indicator matrix) one independent
    sigmoid output per label.

    Parameters
    ----------
{parameters}
    class_weight : dict, "balanced" or None, default None
        Weights of the classes, multiplied into ``sample_weight`` (not for
        multilabel ``y``).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels (0 .. n_labels-1 for multilabel ``y``).
{attributes}

    Examples
    --------
    >>> from fastnn.sklearn import MLPClassifier
    >>> clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0)
    >>> clf.fit([[0, 0], [0, 1], [1, 0], [1, 1]], ["no", "yes", "yes", "no"]).classes_
    array(['no', 'yes'], dtype='<U3')
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None, n_threads=None, class_weight=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, dtype=dtype, n_threads=n_threads)
        self.class_weight = class_weight

    def _encode_y(self, y, keep: bool, classes, incremental: bool, dtype):
        """(y as labels, the network's targets): class indices, or 0/1 columns."""
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if incremental and not keep:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            binarizer = LabelBinarizer()
            multilabel = y.ndim == 2
            binarizer.fit(y if multilabel else np.asarray(classes))
            self._label_binarizer = binarizer
            self.classes_ = binarizer.classes_
        elif not keep:
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            if incremental and classes is not None and not np.array_equal(
                    unique_labels(classes), self.classes_):
                raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                                 f"partial_fit, was: {self.classes_!r}")
            found = unique_labels(y)
            if self.warm_start and not incremental:
                if set(found) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same "
                                     "classes as in the previous call to fit. Previously got "
                                     f"{self.classes_}, `y` has {found}")
            elif len(np.setdiff1d(found, self.classes_, assume_unique=True)):
                raise ValueError("`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {found}.")
        if keep and (self._label_binarizer.y_type_ == "multilabel-indicator") != (y.ndim == 2):
            raise ValueError("y is multilabel now and was not before, or the reverse; "
                             "refit without warm_start")
        if incremental and not keep and y.ndim == 1:
            unknown = np.setdiff1d(unique_labels(y), self.classes_)
            if len(unknown):
                raise ValueError("`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {unique_labels(y)}.")
        Y = self._label_binarizer.transform(y)
        self._n_outputs = Y.shape[1]
        if self._multiclass:
            return y, Y.argmax(axis=1).astype(np.intp)
        return y, np.ascontiguousarray(Y, dtype=dtype)

    @property
    def _multiclass(self) -> bool:
        return self._label_binarizer.y_type_ == "multiclass"

    def _net_loss(self) -> str:
        return "softmax_cross_entropy" if self._multiclass else "binary_cross_entropy"

    def _out_activation(self) -> str:
        return "softmax" if self._multiclass else "logistic"

    def _gradient_scale(self) -> float:
        # fastnn's binary cross-entropy averages over the outputs (labels);
        # scikit-learn's sums over them.
        return 1.0 if self._multiclass else 1.0 / self.n_outputs_

    def _stratify(self, y, y_net):
        if self._label_binarizer.y_type_ == "multilabel-indicator":
            return None  # as scikit-learn: no stratification of label sets
        if self._multiclass:
            return y
        # As scikit-learn, on the binarised column: the same split, the same message.
        return y_net.astype(bool)

    def _apply_class_weight(self, y, sw):
        if self.class_weight is None:
            return sw
        if y.ndim == 2:
            raise ValueError("class_weight is not supported for multilabel y")
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            present = np.unique(y)
            weights = compute_class_weight("balanced", classes=present, y=y)
            per_class = dict(zip(present.tolist(), weights))
        elif isinstance(self.class_weight, dict):
            unknown = set(self.class_weight) - set(self.classes_.tolist())
            if unknown:
                raise ValueError(f"class_weight has labels {sorted(map(str, unknown))} that are "
                                 f"not in classes_ {self.classes_}")
            per_class = self.class_weight
        else:
            raise ValueError("class_weight must be a dict, 'balanced' or None, got "
                             f"{self.class_weight!r}")
        cw = np.array([float(per_class.get(label, 1.0)) for label in y.tolist()])
        if (cw < 0).any() or not np.isfinite(cw).all():
            raise ValueError("class_weight values must be finite and non-negative")
        return cw if sw is None else sw * cw

    def _score_function(self, y, y_pred, sample_weight=None) -> float:
        return accuracy_score(y, y_pred, sample_weight=sample_weight)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Train for one epoch on (X, y), continuing from the current state.

        Only for the stochastic solvers (sgd, adam), as in scikit-learn.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
        sample_weight : array-like of shape (n_samples,), optional
        classes : array-like, optional
            All the classes; required on the first call (as in scikit-learn).

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def _proba_validated(self, X) -> np.ndarray:
        p = self._network_output(X, "predict_proba")
        if p.ndim == 2 and p.shape[1] == 1 and self._label_binarizer.y_type_ != \
                "multilabel-indicator":
            p = np.hstack([1 - p, p])
        return p

    def _predict_validated(self, X) -> np.ndarray:
        p = self._network_output(X, "predict_proba")
        if self.n_outputs_ == 1:
            p = p.ravel()
        return self._label_binarizer.inverse_transform(p)

    def predict_proba(self, X) -> np.ndarray:
        """Probability of each class (columns in the order of ``classes_``), or of each label.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            In the model's dtype. For multilabel ``y`` each column is the
            probability of its label, independently of the others.
        """
        return self._proba_validated(self._validated_X(X))

    def predict_log_proba(self, X) -> np.ndarray:
        """Logarithm of ``predict_proba``."""
        return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """Predicted class labels (or, for multilabel ``y``, the indicator matrix at 0.5).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_labels)
        """
        return self._predict_validated(self._validated_X(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


# ---------------------------------------------------------------- regressor


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multi-layer perceptron regressor trained by fastnn's compiled core.

    See the module notes for how ``alpha`` and the learning rate map onto
    fastnn's losses so that updates equal scikit-learn's.

    Parameters
    ----------
    loss : {{"squared_error", "poisson"}}, default "squared_error"
        "squared_error": a linear output and half the squared error.
        "poisson": an exponential output (``predict`` is ``exp`` of the last
        layer) and the half Poisson deviance, for non-negative targets such as
        counts; fused into one stable loss in the compiled core.
{parameters}

    Attributes
    ----------
{attributes}

    Examples
    --------
    >>> from fastnn.sklearn import MLPRegressor
    >>> reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    >>> reg.fit([[0.0], [1.0], [2.0]], [0.0, 1.0, 2.0]).predict([[1.0]]).shape
    (1,)
    """

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None, n_threads=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, dtype=dtype, n_threads=n_threads)
        self.loss = loss

    def _check_loss(self) -> None:
        if self.loss not in ("squared_error", "poisson"):
            raise ValueError(f"loss must be 'squared_error' or 'poisson', got {self.loss!r}")

    def _encode_y(self, y, keep: bool, classes, incremental: bool, dtype):
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        y2 = np.asarray(y, dtype=dtype)
        y2 = y2[:, None] if y2.ndim == 1 else y2
        if keep and y2.shape[1] != self.network_.n_outputs:
            raise ValueError(f"y has {y2.shape[1]} outputs, the fitted model "
                             f"{self.network_.n_outputs}; refit without warm_start")
        if self.loss == "poisson" and (y2 < 0).any():
            raise ValueError("Some value(s) of y are negative which is not allowed for "
                             "Poisson regression.")
        self._n_outputs = y2.shape[1]
        return y, np.ascontiguousarray(y2)

    def _net_loss(self) -> str:
        return "poisson" if self.loss == "poisson" else "mse"

    def _out_activation(self) -> str:
        return "exp" if self.loss == "poisson" else "identity"

    def _gradient_scale(self) -> float:
        if self.network_.loss == "poisson":
            # Mean over the outputs here, a sum over them in scikit-learn.
            return 1.0 / self.n_outputs_
        # fastnn's "mse" averages over the outputs and has no 1/2: its gradient is
        # 2/n_outputs times scikit-learn's squared-loss gradient.
        return 2.0 / self.n_outputs_

    def _loss_value_scale(self) -> float:
        if self.network_.loss == "poisson":
            return float(self.n_outputs_)
        return 0.5  # scikit-learn reports half the mean over all elements

    def _score_function(self, y, y_pred, sample_weight=None) -> float:
        return r2_score(y, y_pred, sample_weight=sample_weight)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """Train for one epoch on (X, y), continuing from the current state.

        Only for the stochastic solvers (sgd, adam), as in scikit-learn.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def _predict_validated(self, X) -> np.ndarray:
        out = self._network_output(X, "predict")
        return out[:, 0] if out.shape[1] == 1 else out

    def predict(self, X) -> np.ndarray:
        """Predicted targets (the mean, ``exp`` of the output, for ``loss="poisson"``).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            In the model's dtype; 1-D for a single output (as scikit-learn's
            ``MLPRegressor``).
        """
        return self._predict_validated(self._validated_X(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


# The two share these parts of their docstrings (absent under python -OO).
for _estimator in (MLPClassifier, MLPRegressor):
    if _estimator.__doc__:
        _estimator.__doc__ = _estimator.__doc__.format(parameters=_PARAMETERS_DOC,
                                                       attributes=_ATTRIBUTES_DOC)


# ---------------------------------------------------------------- helpers


def _refuse_masked(X, name: str):
    """Sparse X is welcome; a masked one is refused unless nothing is masked."""
    return X if scipy.sparse.issparse(X) else refuse_sparse_or_masked(X, name)


def _chunk_rows(X, batch_size: int) -> int:
    """Rows of sparse X densified at a time: about SPARSE_CHUNK_BYTES, whole batches."""
    per_row = max(1, X.shape[1] * X.dtype.itemsize)
    batches = max(1, SPARSE_CHUNK_BYTES // (per_row * batch_size))
    return batches * batch_size


# ---------------------------------------------------------------- helpers


def _normalised(sw: np.ndarray) -> np.ndarray:
    """Weights scaled to mean 1, so a batch's weighted loss is an average in expectation."""
    return sw / sw.mean()


def _check_int(value: Any, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (Integral, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


def _check_real(value: Any, name: str, low: float, high: float | None = None,
                strict: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    bad = (not np.isfinite(value) or value < low or (strict and value == low)
           or (high is not None and value >= high))
    if bad:
        rng = f"{'(' if strict else '['}{low}, {high if high is not None else 'inf'})"
        raise ValueError(f"{name} must be in {rng}, got {value!r}")
