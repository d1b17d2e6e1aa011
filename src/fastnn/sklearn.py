"""scikit-learn estimators over fastnn networks: ``MLPClassifier`` and ``MLPRegressor``.

They follow scikit-learn's estimator conventions (``get_params``/``set_params``,
``clone``, pickling, ``score``, ``partial_fit``) and name their parameters as
``sklearn.neural_network`` does where the meaning is the same, so they drop into
``Pipeline``, ``GridSearchCV`` and joblib's parallel back ends (threads, processes,
Dask or Ray).

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
whose gradient is ``2 / n_outputs`` times larger. The estimator compensates, so the
updates equal scikit-learn's: the SGD learning rate is multiplied by ``n_outputs / 2``,
Adam's ``epsilon`` by ``2 / n_outputs`` (Adam is otherwise scale-free), and
``weight_decay`` by ``2 / n_outputs``. ``loss_curve_`` is reported as scikit-learn
reports it (half the mean squared error, plus the L2 term at the end of the epoch),
so ``tol`` means the same.

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
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.class_weight import compute_class_weight
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
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


# ---------------------------------------------------------------- shared base


class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share: parameters, the training loop."""

    _loss_name = ""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate_init=0.001, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, dtype="float32", n_threads=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
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
        self.dtype = dtype
        self.n_threads = n_threads

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
        if self.solver not in ("sgd", "adam"):
            raise ValueError(f"solver must be 'sgd' or 'adam', got {self.solver!r}")
        _check_real(self.alpha, "alpha", low=0)
        _check_real(self.learning_rate_init, "learning_rate_init", low=0, strict=True)
        _check_int(self.max_iter, "max_iter", low=1)
        _check_real(self.tol, "tol", low=0)
        _check_real(self.momentum, "momentum", low=0, high=1)
        _check_real(self.validation_fraction, "validation_fraction", low=0, high=1, strict=True)
        _check_real(self.beta_1, "beta_1", low=0, high=1)
        _check_real(self.beta_2, "beta_2", low=0, high=1)
        _check_real(self.epsilon, "epsilon", low=0, strict=True)
        _check_int(self.n_iter_no_change, "n_iter_no_change", low=1)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            _check_int(self.batch_size, "batch_size", low=1)
        if self.n_threads is not None:
            check_num_threads(self.n_threads, "n_threads", allow_all=True)
        if str(np.dtype(self.dtype)) not in ("float32", "float64"):
            raise TypeError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        return sizes

    # ------------------------------------------------------------ fitting

    def fit(self, X, y, sample_weight=None):
        """Train the network on (X, y) for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (classifier) or targets (regressor).
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each sample (see the module notes).

        Returns
        -------
        self
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight, incremental: bool, classes=None):
        sizes = self._validate_params()
        first_call = not hasattr(self, "_network")
        keep = (incremental or self.warm_start) and not first_call
        regression = isinstance(self, RegressorMixin)
        # scikit-learn refuses sparse X itself, but would read a masked X or y as
        # if nothing were masked.
        X, y = refuse_sparse_or_masked(X, "X"), refuse_sparse_or_masked(y, "y")
        sample_weight = refuse_sparse_or_masked(sample_weight, "sample_weight")
        X, y = validate_data(self, X, y, reset=not keep, dtype=np.dtype(self.dtype),
                             multi_output=regression, y_numeric=regression)
        y_net = self._encode_y(y, keep, classes, incremental)
        sw, mean_w = self._sample_weights(X, y, sample_weight)
        if not keep:
            self._random_state = check_random_state(self.random_state)
            seed = int(self._random_state.randint(np.iinfo(np.int32).max))
            self._network = Network.mlp(
                [X.shape[1], *sizes, self._n_net_outputs()],
                activation=_ACTIVATIONS[self.activation], loss=self._loss_name,
                output_activation="identity", dtype=self.dtype, seed=seed)
            self._optimizer = None
            self.loss_curve_ = []
            self.n_iter_ = 0
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self._best_params = None
            self._no_improvement_count = 0
            self.t_ = 0
        elif self._network.dtype != np.dtype(self.dtype):
            raise ValueError("dtype changed since the previous fit; refit without warm_start")
        if not incremental:
            # Each fit (a warm start too) gets n_iter_no_change epochs to improve;
            # scikit-learn carries the count over, so a warm start after a stop
            # would stop again after one epoch.
            self._no_improvement_count = 0

        early_stopping = self.early_stopping and not incremental
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if early_stopping:
            stratify = None if regression else y
            arrays = [X, y_net, y] if sw is None else [X, y_net, y, sw]
            parts = train_test_split(*arrays, random_state=self._random_state,
                                     test_size=self.validation_fraction, stratify=stratify)
            X, X_val = parts[0], parts[1]
            y_net, y_val = parts[2], parts[5]
            sw, sw_val = (parts[6], parts[7]) if sw is not None else (None, None)
            if sw is not None:
                mean_w = float(np.mean(sw))
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            if self.validation_scores_ is None:  # a warm start continues the record
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self._best_params = None
            self.best_loss_ = None

        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` larger than the sample size. It is going to "
                              "be clipped", UserWarning, stacklevel=3)
            batch_size = min(self.batch_size, n)
        optimizer = self._make_optimizer(batch_size, mean_w, incremental)
        fit_kw = {} if sw is None else {"sample_weight": _normalised(sw)}

        max_iter = 1 if incremental else self.max_iter
        with self._thread_limits():
            for n_iter in range(1, max_iter + 1):
                history = self._network.fit(X, y_net, epochs=1, batch_size=batch_size,
                                            optimizer=optimizer, shuffle=self.shuffle, **fit_kw)
                # Only once an epoch has run: a fit that fails keeps the previous count.
                self.n_iter_ = n_iter
                self.t_ += n
                self.loss_ = self._sklearn_loss(history.loss[-1], batch_size, mean_w)
                self.loss_curve_.append(self.loss_)
                self._publish_params()  # the validation score below predicts with them
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
                if early_stopping:
                    score = self._score_val(X_val, y_val, sw_val)
                    self.validation_scores_.append(score)
                    if score < self.best_validation_score_ + self.tol:
                        self._no_improvement_count += 1
                    else:
                        self._no_improvement_count = 0
                    if score > self.best_validation_score_:
                        self.best_validation_score_ = score
                        self._best_params = [(layer.W.copy(), layer.b.copy())
                                             for layer in self._network.layers]
                else:
                    if self.loss_ > self.best_loss_ - self.tol:
                        self._no_improvement_count += 1
                    else:
                        self._no_improvement_count = 0
                    self.best_loss_ = min(self.best_loss_, self.loss_)
                if self._no_improvement_count > self.n_iter_no_change:
                    if self.verbose:
                        what = "Validation score" if early_stopping else "Training loss"
                        print(f"{what} did not improve more than tol={self.tol} for "
                              f"{self.n_iter_no_change} consecutive epochs. Stopping.")
                    break
                if incremental:
                    break
            else:
                if not incremental:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                                  "reached and the optimization hasn't converged yet.",
                                  ConvergenceWarning, stacklevel=3)
        if early_stopping and self._best_params is not None:
            # Restore the weights of the epoch with the best validation score.
            for layer, (W, b) in zip(self._network.layers, self._best_params):
                layer.W, layer.b = W, b
        self._publish_params()
        return self

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
                opt.lr = self.learning_rate_init / scale
                if opt.momentum != self.momentum or opt.nesterov != self._nesterov():
                    resume = False
            else:
                opt.lr = self.learning_rate_init
                opt.betas = (float(self.beta_1), float(self.beta_2))
                opt.eps = self.epsilon * scale
        if not resume:
            if self.solver == "sgd":
                opt = SGD(lr=self.learning_rate_init / scale, momentum=self.momentum,
                          nesterov=self._nesterov(), weight_decay=weight_decay)
            else:
                opt = Adam(lr=self.learning_rate_init, betas=(self.beta_1, self.beta_2),
                           eps=self.epsilon * scale, weight_decay=weight_decay)
        self._optimizer = opt
        return opt

    def _nesterov(self) -> bool:
        return bool(self.nesterovs_momentum) and self.momentum > 0

    def _gradient_scale(self) -> float:
        """How much larger fastnn's loss gradient is than scikit-learn's (1 but for MSE)."""
        return 1.0

    # fastnn's loss value times this is scikit-learn's (which halves the squared error).
    _loss_value_scale = 1.0

    def _sklearn_loss(self, epoch_loss: float, batch_size: int, mean_w: float) -> float:
        """The epoch's loss on scikit-learn's scale, with its L2 term (at the epoch's end)."""
        penalty = sum(float(np.dot(layer.W.ravel(), layer.W.ravel()))
                      for layer in self._network.layers)
        return float(epoch_loss) * self._loss_value_scale + \
            0.5 * self.alpha * penalty / (batch_size * mean_w)

    def _publish_params(self) -> None:
        """Expose the network's parameters as scikit-learn's fitted attributes."""
        self.coefs_ = [layer.W for layer in self._network.layers]
        self.intercepts_ = [layer.b for layer in self._network.layers]
        self.n_layers_ = len(self.coefs_) + 1
        self.n_outputs_ = self._network.n_outputs

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

    def partial_fit(self, X, y, sample_weight=None):
        """Train for one epoch on (X, y), continuing from the current state.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=True)

    # ------------------------------------------------------------ inference

    def _forward(self, X) -> np.ndarray:
        """Validate X for prediction (after checking that the model is fitted)."""
        check_is_fitted(self, "coefs_")
        # Read-only parameters (a model loaded by joblib with mmap_mode="r") are
        # fine: the compiled forward pass only reads them.
        X = refuse_sparse_or_masked(X, "X")
        return validate_data(self, X, reset=False, dtype=np.dtype(self.dtype))

    def _thread_limits(self):
        """The thread limits of this estimator's fits and predictions (``n_threads``)."""
        return _thread_limits(_resolve_n_threads(self.n_threads))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


# ---------------------------------------------------------------- classifier


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multi-layer perceptron classifier trained by fastnn's compiled core.

    Binary problems use one sigmoid output and binary cross-entropy (as
    scikit-learn's ``MLPClassifier``, so ``coefs_`` have the same shapes);
    multiclass problems use one output per class and softmax cross-entropy.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default (100,)
        Units of each hidden layer.
    activation : {"identity", "logistic", "tanh", "relu"}, default "relu"
        Activation of the hidden layers.
    solver : {"adam", "sgd"}, default "adam"
        The optimizer.
    alpha : float, default 1e-4
        Strength of the L2 penalty on the weights, as scikit-learn defines it
        (see the module notes for the mapping onto ``weight_decay``).
    batch_size : int or "auto", default "auto"
        Rows per mini-batch; "auto" is ``min(200, n_samples)``.
    learning_rate_init : float, default 1e-3
        Step size (constant).
    max_iter : int, default 200
        Maximum number of epochs.
    shuffle : bool, default True
        Shuffle the rows every epoch.
    random_state : int, RandomState or None, default None
        Seeds the initialisation, the shuffling and the validation split.
    tol : float, default 1e-4
        Minimum improvement of the training loss (or of the validation score
        with ``early_stopping``) that counts as progress.
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
        Hold out ``validation_fraction`` of the data (stratified), stop when its
        accuracy has not improved by ``tol`` for ``n_iter_no_change`` epochs, and
        restore the weights of the best epoch.
    validation_fraction : float, default 0.1
        Share of the data held out with ``early_stopping``.
    beta_1, beta_2, epsilon : float, default 0.9, 0.999, 1e-8
        Adam's parameters.
    n_iter_no_change : int, default 10
        Epochs without progress before stopping.
    dtype : {"float32", "float64"}, default "float32"
        Precision of the parameters and of the computation.
    n_threads : int or None, default None
        Threads of the compiled core (BLAS and OpenMP) while this estimator fits
        or predicts, at most ``fastnn.threads.MAX_THREADS`` (4096);
        -1 means all CPUs. None: 1 when the fit runs on a thread other than the
        main one (joblib's threading backend, Dask workers: several models train at
        once, one per core), else the process's setting (``fastnn.set_num_threads``).
        BLAS limits are process-wide: fits running at once on threads share the
        limit set by the first of them until the last one ends.
    class_weight : dict, "balanced" or None, default None
        Weights of the classes, multiplied into ``sample_weight``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    coefs_, intercepts_ : list of ndarray
        Weights ``(n_in, n_out)`` and biases of every layer.
    loss_curve_ : list of float
        Training loss of every epoch (with the L2 term).
    validation_scores_ : list of float or None
        Validation accuracy of every epoch with ``early_stopping``, else None.
    best_validation_score_ : float or None
        Best of ``validation_scores_``.
    best_loss_ : float or None
        Lowest training loss (None with ``early_stopping``, as in scikit-learn).
    n_iter_ : int
        Epochs run by the last fit.
    t_ : int
        Training samples seen since the model was initialised.
    n_features_in_ : int
        Number of input features.
    feature_names_in_ : ndarray of str
        Input feature names, when X had them.
    n_layers_, n_outputs_ : int
        Number of layers (with the input layer) and of outputs.

    Examples
    --------
    >>> from fastnn.sklearn import MLPClassifier
    >>> clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0)
    >>> clf.fit([[0, 0], [0, 1], [1, 0], [1, 1]], ["no", "yes", "yes", "no"]).classes_
    array(['no', 'yes'], dtype='<U3')
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate_init=0.001, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, dtype="float32", n_threads=None, class_weight=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate_init=learning_rate_init,
            max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, dtype=dtype,
            n_threads=n_threads)
        self.class_weight = class_weight

    def _encode_y(self, y, keep: bool, classes, incremental: bool) -> np.ndarray:
        """Class labels -> the network's targets (0/1 column, or class indices)."""
        check_classification_targets(y)  # scikit-learn's message for continuous targets
        if incremental and not keep:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            self.classes_ = np.unique(np.asarray(classes))
        elif incremental and classes is not None and not np.array_equal(
                np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(f"classes={classes!r} is not the same as on the first call to "
                             f"partial_fit: {self.classes_!r}")
        elif not incremental:
            found = np.unique(y)
            if keep and not np.array_equal(found, self.classes_):
                raise ValueError("warm_start can only be used where `y` has the same classes "
                                 "as in the previous call to fit. Previously got "
                                 f"{self.classes_}, `y` has {found}")
            self.classes_ = found
        if len(self.classes_) < 2:
            raise ValueError("MLPClassifier needs samples of at least 2 classes in the data, "
                             f"but the data contain only one class: {self.classes_[0]!r}")
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        unknown = self.classes_[idx] != y
        if unknown.any():
            raise ValueError(f"y contains labels not in classes_ {self.classes_}: "
                             f"{np.unique(y[unknown])}")
        if len(self.classes_) == 2:
            return idx.astype(np.dtype(self.dtype))[:, None]
        return idx.astype(np.intp)

    @property
    def _loss_name(self) -> str:  # type: ignore[override]
        n = len(getattr(self, "classes_", ())) or 3
        return "binary_cross_entropy" if n == 2 else "softmax_cross_entropy"

    def _n_net_outputs(self) -> int:
        return 1 if len(self.classes_) == 2 else len(self.classes_)

    def _apply_class_weight(self, y, sw):
        if self.class_weight is None:
            return sw
        y = np.ravel(y)
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

    def _score_val(self, X_val, y_val, sw_val) -> float:
        return float(self.score(X_val, y_val, sample_weight=sw_val))

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Train for one epoch on (X, y), continuing from the current state.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
        classes : array-like, optional
            All the classes; required on the first call (as in scikit-learn).

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict_proba(self, X) -> np.ndarray:
        """Probability of each class, columns in the order of ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        X = self._forward(X)
        with self._thread_limits():
            p = self._network.predict_proba(X).astype(np.float64)
        if p.shape[1] == 1:
            p = np.hstack([1 - p, p])
        return p

    def predict_log_proba(self, X) -> np.ndarray:
        """Logarithm of ``predict_proba``."""
        return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """Predicted class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        proba = self.predict_proba(X)  # first: it raises NotFittedError before fit
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags


# ---------------------------------------------------------------- regressor


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multi-layer perceptron regressor (squared error) trained by fastnn's compiled core.

    Parameters are those of :class:`MLPClassifier` without ``class_weight``; the
    output layer is linear and ``early_stopping`` monitors the validation R^2.
    See the module notes for how ``alpha`` and the learning rate map onto
    fastnn's mean-squared-error loss so that updates equal scikit-learn's.

    Attributes
    ----------
    coefs_, intercepts_ : list of ndarray
    loss_curve_ : list of float
        Half the mean squared error of every epoch plus the L2 term (as scikit-learn reports it).
    validation_scores_, best_validation_score_, best_loss_, n_iter_, t_,
    n_features_in_, feature_names_in_, n_layers_, n_outputs_
        As for :class:`MLPClassifier`.

    Examples
    --------
    >>> from fastnn.sklearn import MLPRegressor
    >>> reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    >>> reg.fit([[0.0], [1.0], [2.0]], [0.0, 1.0, 2.0]).predict([[1.0]]).shape
    (1,)
    """

    _loss_name = "mse"
    _loss_value_scale = 0.5

    def _encode_y(self, y, keep: bool, classes, incremental: bool) -> np.ndarray:
        y = np.asarray(y, dtype=np.dtype(self.dtype))
        y2 = y[:, None] if y.ndim == 1 else y
        if keep and y2.shape[1] != self._network.n_outputs:
            raise ValueError(f"y has {y2.shape[1]} outputs, the fitted model "
                             f"{self._network.n_outputs}; refit without warm_start")
        self._n_targets = y2.shape[1]
        return np.ascontiguousarray(y2)

    def _n_net_outputs(self) -> int:
        return self._n_targets

    def _gradient_scale(self) -> float:
        # fastnn's "mse" averages over the outputs and has no 1/2: its gradient is
        # 2/n_outputs times scikit-learn's squared-loss gradient.
        return 2.0 / self._n_targets

    def _score_val(self, X_val, y_val, sw_val) -> float:
        return float(self.score(X_val, y_val, sample_weight=sw_val))

    def predict(self, X) -> np.ndarray:
        """Predicted targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            1-D for a single output (as scikit-learn's ``MLPRegressor``).
        """
        X = self._forward(X)
        with self._thread_limits():
            out = self._network.predict(X).astype(np.float64)
        return out[:, 0] if out.shape[1] == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


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
