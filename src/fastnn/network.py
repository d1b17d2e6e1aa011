"""The user-facing network: a stack of layers (dense, convolutional), a loss, fit and predict."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from fastnn import _fit_guard
from fastnn import _validation as v
from fastnn._codes import LOSSES, OUTPUTS
from fastnn.callbacks import Callback
from fastnn.layers import Dense, Dropout, Flatten, Layer
from fastnn.layers._geometry import shape_text
from fastnn import io as model_io
from fastnn.ops import BACKENDS, TrainingPlan, get_ops
from fastnn.optim import SGD, Optimizer
from fastnn.progress import Progress
from fastnn.threads import ThreadChooser, chunk_thread_chooser, core_blas

# The output activation that goes with each loss (fused into the cross-entropies).
_OUTPUT_ACTIVATIONS = {"softmax_cross_entropy": "softmax", "binary_cross_entropy": "sigmoid",
                       "mse": "identity"}

# What the compiled predictor (``ops.predictor``, ``Network._lean``) computes for
# ``predict`` and ``predict_proba``, by loss: an ``OUTPUTS`` code, or -1 for each row's
# argmax (``_train.PREDICT_ARGMAX``). Binary cross-entropy's 0/1 predictions at a
# threshold take the general path.
_LEAN_PREDICT = {"softmax_cross_entropy": -1, "mse": OUTPUTS["raw"], "poisson": OUTPUTS["exp"]}
_LEAN_PROBA = {"softmax_cross_entropy": OUTPUTS["softmax"],
               "binary_cross_entropy": OUTPUTS["sigmoid"]}

# Chunks of a compiled epoch: about this long, so that Ctrl-C, progress and
# callbacks are handled within a fraction of a second, at a negligible cost.
CHUNK_SECONDS = 0.1


@dataclass
class History:
    """What ``fit`` measured, one entry per epoch.

    Attributes
    ----------
    loss : list of float
        Mean training loss of each epoch (over its samples, as trained).
    accuracy : list of float
        Training accuracy of each epoch, for the cross-entropies (empty for
        MSE): the share of right predictions, each counted from the outputs
        its batch's loss was computed on, as trained (so with the weights of
        that moment, like Keras' training accuracy), weighted by
        ``sample_weight`` when given. Counted inside the training loop, at no
        extra pass over the data.
    val_loss, val_accuracy : list of float
        On ``validation_data`` after each epoch (empty without it; accuracy only
        for the cross-entropies).
    epoch_time : list of float
        Wall-clock seconds of each epoch's training.
    lr : list of float
        The optimizer's learning rate during each epoch.
    """

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)

    @property
    def history(self) -> dict[str, list[float]]:
        """The non-empty series by name, as Keras' ``History.history``."""
        return {k: list(val) for k, val in self.__dict__.items() if val}

    def __getitem__(self, key: str) -> list[float]:
        return getattr(self, key)

    def __len__(self) -> int:
        return len(self.loss)

    def __repr__(self) -> str:
        last = ", ".join(f"{name}={values[-1]:.4g}" for name, values in self.history.items()
                         if name not in ("epoch_time", "lr"))
        return f"History(epochs={len(self)}{', ' + last if last else ''})"


class Network:
    """A feed-forward network of layers trained by mini-batch gradient descent.

    Parameters
    ----------
    layers : sequence of Layer
        The layers, in order (Dense, Conv2D, MaxPool2D, Flatten, Dropout); each
        must accept the previous one's output (a Dense layer's ``n_in`` equals
        the previous ``n_out``), and the last must give a vector per sample.
    loss : str, default "mse"
        "mse" (mean over all elements), "binary_cross_entropy" (sigmoid fused,
        mean over elements), "softmax_cross_entropy" (softmax fused, mean over
        samples) or "poisson" (half Poisson deviance with an exponential link
        fused: the last layer produces log-means, ``predict`` returns their exp;
        mean over elements; targets are non-negative counts or rates). For the cross-entropies the last layer produces logits: a last
        "sigmoid" (binary) or "softmax" (softmax) activation is fused into the
        loss, never applied twice.
    dtype : {"float32", "float64"}, default "float32"
        Precision of the parameters and of all computation.
    seed : int or None, default None
        Seeds the network's own random generator (initialisation and shuffling)
        and the dropout masks.
    backend : {"compiled", "numpy"}, default "compiled"
        "numpy" runs everything on the plain-NumPy reference ops.
    input_shape : tuple of int, optional
        The shape of one sample: ``(n_features,)``, or ``(H, W, C)`` for images
        (channels-last); by default ``(layers[0].n_in,)``. With images, X may be
        ``(n, H, W, C)``, ``(n, H, W)`` when C is 1, or rows ``(n, H*W*C)``.

    Examples
    --------
    >>> import fastnn
    >>> net = fastnn.Network([fastnn.Dense(2, 10, "sigmoid"), fastnn.Dense(10, 1, "sigmoid")],
    ...                      loss="binary_cross_entropy", seed=0)
    >>> net.layers[0].W.shape
    (2, 10)
    """

    # Networks pickled before the predictor existed have no ``_lean`` of their own.
    _lean: Any = None

    def __init__(self, layers: Sequence[Layer], loss: str = "mse", dtype: Any = "float32",
                 seed: int | None = None, backend: str = "compiled",
                 input_shape: Sequence[int] | None = None) -> None:
        layers = list(layers)
        if not layers:
            raise ValueError("a Network needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}] must be a fastnn layer (Dense, ...), "
                                f"got {type(layer).__name__}")
        if not isinstance(loss, str) or loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(LOSSES)}")
        self.layers = layers
        self.loss = loss
        self.dtype = v.check_dtype(dtype)
        self.seed = seed
        self.backend = backend
        self._ops = get_ops(backend)
        self.input_shape = self._build(input_shape)
        self._n_in = math.prod(self.input_shape)
        self._rng = np.random.default_rng(seed)
        self.optimizer: Optimizer | None = None
        # Set to True by a callback to end a running fit (Keras' attribute).
        self.stop_training = False
        # Per batch size, as measured by earlier fits: batches per chunk, and thread choice.
        self._chunk_batches: dict[int, int] = {}
        self._choosers: dict[int, ThreadChooser] = {}
        self._compute_activations = self._fused_activations()
        # The compiled backend's predictor, made by the first inference call (see predict).
        self._lean: Any = None
        for layer in layers:
            if layer.param_names and getattr(layer, layer.param_names[0]) is None:
                layer.initialize(self._rng, self.dtype)
            else:
                layer.set_dtype(self.dtype)
                for name, shape in layer.param_shapes().items():
                    if getattr(layer, name) is None:  # weights given without biases
                        setattr(layer, name, np.zeros(shape))
        # Dropout's key and batch counter: the masks are a hash of (key, counter,
        # layer, element), so both backends draw the same ones and a network built
        # with the same seed repeats them. The counter is part of the training
        # state (restored with the weights when a diverging epoch is undone).
        self._dropout_state = None
        if any(isinstance(layer, Dropout) for layer in layers):
            self._dropout_state = np.array([_dropout_key(seed, self._rng), 0], np.uint64)

    def __getstate__(self) -> dict:
        # The predictor is a compiled object made again on demand: not pickled or copied.
        state = self.__dict__.copy()
        state["_lean"] = None
        return state

    def _build(self, input_shape: Sequence[int] | None) -> tuple[int, ...]:
        """Build each layer from the previous one's output shape; return the input shape."""
        if input_shape is None:
            first = self.layers[0]
            if not hasattr(first, "n_in"):
                raise ValueError(f"input_shape is needed: layers[0] ({type(first).__name__}) "
                                 "does not say how many inputs it takes")
            input_shape = (first.n_in,)
        try:
            shape = tuple(int(d) for d in input_shape)
            if any(isinstance(d, bool) or int(d) != d for d in input_shape):
                raise TypeError
        except (TypeError, ValueError):
            raise TypeError(f"input_shape must be a tuple of positive integers, "
                            f"got {input_shape!r}") from None
        if not shape or any(d < 1 for d in shape):
            raise ValueError(f"input_shape must be a tuple of positive integers, got {shape}")
        out = shape
        for i, layer in enumerate(self.layers):
            try:
                out = layer.build(out)
            except ValueError as exc:
                prev = self.layers[i - 1] if i else None
                if isinstance(prev, Flatten) and hasattr(layer, "n_in") and len(prev.in_shape) > 1:
                    raise ValueError(
                        f"Flatten gives {out[0]} = {shape_text(prev.in_shape)} features but "
                        f"layers[{i}] takes {layer.n_in}") from None
                where = "the input" if i == 0 else f"layers[{i - 1}]"
                raise ValueError(f"layers[{i}] does not fit {where}: {exc}") from None
        if len(out) != 1:
            raise ValueError(f"the last layer gives samples of shape {out}; a network's output "
                             "must be a vector per sample (end with Flatten and Dense)")
        return shape

    @classmethod
    def mlp(cls, sizes: Sequence[int], activation: str = "relu", loss: str = "mse",
            output_activation: str | None = None, **kwargs: Any) -> "Network":
        """Build a network from layer sizes, e.g. ``Network.mlp([784, 128, 10])``.

        Parameters
        ----------
        sizes : sequence of int
            The input size, each hidden layer's size, and the output size.
        activation : str, default "relu"
            The activation of every hidden layer.
        loss : str, default "mse"
            As for ``Network``.
        output_activation : str, optional
            The last layer's activation. By default the one that goes with the
            loss: "softmax" for softmax cross-entropy and "sigmoid" for binary
            cross-entropy (both fused into the loss: the layer computes logits,
            and ``predict_proba`` gives the probabilities), and "identity" for
            MSE (regression outputs of any range; pass "sigmoid" for the
            tutorials' 0-1 outputs trained with MSE).
        **kwargs
            Passed to ``Network`` (dtype, seed, backend, input_shape).

        Examples
        --------
        >>> import fastnn
        >>> [l.activation for l in fastnn.Network.mlp([2, 4, 1], activation="sigmoid").layers]
        ['sigmoid', 'identity']
        >>> fastnn.Network.mlp([2, 4, 1], loss="binary_cross_entropy").layers[-1].activation
        'sigmoid'
        """
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least an input and an output size, got {sizes}")
        if output_activation is None:
            output_activation = _OUTPUT_ACTIVATIONS.get(loss, "identity")
        layers = [Dense(a, b, activation) for a, b in zip(sizes[:-2], sizes[1:-1])]
        layers.append(Dense(sizes[-2], sizes[-1], output_activation))
        return cls(layers, loss=loss, **kwargs)

    def _fused_activations(self) -> list[str]:
        """The activations actually computed, with an output sigmoid/softmax fused into the loss."""
        acts = [getattr(layer, "activation", "identity") for layer in self.layers]
        last = acts[-1]
        for i, a in enumerate(acts[:-1]):
            if a == "softmax":
                raise ValueError(f"layers[{i}]: softmax is only allowed on the last layer, "
                                 "with loss='softmax_cross_entropy'")
        if self.loss == "softmax_cross_entropy":
            if last == "sigmoid":
                raise ValueError("a sigmoid output with softmax cross-entropy would squash the "
                                 "logits before the softmax; use 'identity' (or 'softmax')")
            if last == "softmax":
                acts[-1] = "identity"  # the loss applies the softmax
        elif self.loss == "binary_cross_entropy":
            if last == "softmax":
                raise ValueError("softmax output with binary cross-entropy is not supported; "
                                 "use 'sigmoid' or 'identity'")
            if last == "sigmoid":
                acts[-1] = "identity"  # the loss applies the sigmoid
        elif last == "softmax":
            raise ValueError("a softmax output needs loss='softmax_cross_entropy'")
        return acts

    def __repr__(self) -> str:
        return (f"Network({self.layers!r}, loss={self.loss!r}, dtype={str(self.dtype)!r}, "
                f"backend={self.backend!r})")

    @property
    def n_inputs(self) -> int:
        """Number of input features (of one sample, flattened)."""
        return math.prod(self.input_shape)

    @property
    def n_outputs(self) -> int:
        """Number of outputs of the last layer."""
        return math.prod(self.layers[-1].out_shape)

    def _params(self) -> list[np.ndarray]:
        """Every parameter array, layer by layer in ``param_names`` order (W, b, ...)."""
        return [p for layer in self.layers for p in layer.params()]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of every parameter, layer by layer (``[W0, b0, W1, b1, ...]``, as Keras).

        Returns
        -------
        list of ndarray
            New arrays: training does not change them.
        """
        return [p.copy() for p in self._params()]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set every parameter from a list shaped as ``get_weights()`` returns it.

        Each array is checked (shape, numbers, finite) and converted to the
        network's dtype, as ``layer.W = ...`` does; when one is refused, the
        ones before it are put back, so nothing changes. From a callback of a
        running ``fit`` the values are copied into the arrays it trains;
        from anywhere else during a fit it raises ``RuntimeError``.

        Parameters
        ----------
        weights : sequence of array-like
            One array per parameter, in ``get_weights()`` order.
        """
        slots = [(layer, name) for layer in self.layers for name in layer.param_names]
        try:
            weights = list(weights)
        except TypeError:
            raise TypeError(f"weights must be a list of arrays, got {type(weights).__name__}") \
                from None
        if len(weights) != len(slots):
            names = ", ".join(f"layers[{i}].{name}" for i, layer in enumerate(self.layers)
                              for name in layer.param_names)
            raise ValueError(f"weights has {len(weights)} arrays, the network has "
                             f"{len(slots)} parameters ({names})")
        done = []
        try:
            for (layer, name), value in zip(slots, weights):
                old = getattr(layer, name).copy()
                setattr(layer, name, value)
                done.append((layer, name, old))
        except BaseException:
            for layer, name, old in reversed(done):
                setattr(layer, name, old)
            raise

    def summary(self, print_fn: Callable[[str], Any] | None = print) -> str:
        """A table of the layers: kind, output shape and parameter count, with totals.

        Parameters
        ----------
        print_fn : callable or None, default print
            Called with the table; None prints nothing.

        Returns
        -------
        str
            The table.

        Examples
        --------
        >>> import fastnn
        >>> net = fastnn.Network.mlp([784, 128, 10], loss="softmax_cross_entropy")
        >>> print(net.summary(print_fn=None).splitlines()[-2])
        Total parameters: 101,770
        """
        rows = [("input", str((None,) + tuple(self.input_shape)), "")]
        total = 0
        for i, layer in enumerate(self.layers):
            count = sum(p.size for p in layer.params())
            total += count
            activation = getattr(layer, "activation", None)
            kind = type(layer).__name__ + (f" ({activation})" if activation else "")
            rows.append((f"{i}: {kind}", str((None,) + tuple(layer.out_shape)), f"{count:,}"))
        header = ("layer", "output shape", "parameters")
        widths = [max(len(r[c]) for r in rows + [header]) for c in range(3)]
        line = "  ".join("-" * w for w in widths)

        def fmt(row: tuple[str, str, str]) -> str:
            return f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}"

        text = "\n".join([fmt(header), line] + [fmt(r) for r in rows] + [line,
                          f"Total parameters: {total:,}", f"dtype {self.dtype}, loss {self.loss}"])
        if print_fn is not None:
            print_fn(text)
        return text

    # ------------------------------------------------------------ input handling

    def _check_X(self, X: Any, keep_uint8: bool = False,
                 finite: bool = True) -> tuple[np.ndarray, bool]:
        """X as a 2-D array; returns (X, True) when a single 1-D sample was given."""
        if type(X) is np.ndarray and X.dtype is self.dtype and X.flags.c_contiguous \
                and not finite:
            # The fast path of predicting one sample: nothing to convert or copy.
            n_in = self._n_in
            if X.ndim == 1 and X.shape[0] == n_in:
                return X.reshape(1, n_in), True
            if X.ndim == 2 and X.shape[1] == n_in and X.shape[0] > 0:
                return X, False
        X = v.as_numeric_array(X, "X")
        single = X.ndim == 1
        if single:
            X = X.reshape(1, -1)
        elif X.ndim > 2 or (X.ndim == 2 and X.shape[1] != self._n_in and (
                X.shape == tuple(self.input_shape) or (len(self.input_shape) == 3
                                                       and self.input_shape[2] == 1
                                                       and X.shape == self.input_shape[:2]))):
            X, single = self._flat_images(X)  # images, or one sample of a 2-D input_shape
        return v.check_input(X, self.n_inputs, self.dtype, keep_uint8=keep_uint8,
                             finite=finite), single

    def _flat_images(self, X: np.ndarray) -> tuple[np.ndarray, bool]:
        """Images (n, H, W, C), (n, H, W) when C is 1, or one image, as rows (n, H*W*C).

        Any other multi-dimensional input shape (say (H, W) before a Flatten) is
        taken as samples of exactly that shape.
        """
        shape = tuple(self.input_shape)
        if len(shape) != 3:
            if len(shape) > 1 and X.shape[1:] == shape:
                return X.reshape(X.shape[0], -1), False
            if len(shape) > 1 and X.shape == shape:
                return X.reshape(1, -1), True
            raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}; "
                             f"the network takes samples of shape {shape}")
        H, W, C = shape
        single = X.shape == shape or (C == 1 and X.shape == (H, W))
        images = X[None] if single else X
        if images.ndim == 3 and C == 1:
            images = images[..., None]
        if images.ndim != 4:
            raise ValueError(f"X must be images of shape (n, {H}, {W}, {C})"
                             + (f" or (n, {H}, {W})" if C == 1 else "")
                             + f" or rows (n, {H * W * C}), got shape {X.shape}")
        n, h, w, c = images.shape
        if c != C and (h, w) == (H, W):
            raise ValueError(f"X has images of {c} channels, the network takes {C} "
                             f"(input_shape={shape}); images are channels-last (n, H, W, C)")
        if (h, w, c) != shape:
            hint = (" (channels-first? fastnn takes channels-last (n, H, W, C))"
                    if (h, w, c) == (C, H, W) else "")
            raise ValueError(f"X has images of shape {(h, w, c)}, the network's input_shape is "
                             f"{shape}{hint}")
        return images.reshape(n, H * W * C), single

    def _check_y(self, y: Any, n: int) -> np.ndarray:
        if self.loss == "softmax_cross_entropy" and (
                np.ndim(y) == 1 or (np.ndim(y) == 2 and np.shape(y)[1] == 1 and self.n_outputs > 1)):
            return v.check_labels(y, n, self.n_outputs)  # labels, possibly as a column
        y = v.check_targets(y, n, self.n_outputs, self.dtype)
        if self.loss == "binary_cross_entropy" and ((y < 0) | (y > 1)).any():
            raise ValueError("y for binary cross-entropy must lie in [0, 1]")
        if self.loss == "softmax_cross_entropy" and (y < 0).any():
            raise ValueError("target rows for softmax cross-entropy must be non-negative")
        if self.loss == "poisson" and (y < 0).any():
            raise ValueError("y for the Poisson loss must be non-negative")
        return y

    # ------------------------------------------------------------ training

    def fit(self, X: Any, y: Any, epochs: int = 1, batch_size: int | None = 32,
            optimizer: Optimizer | None = None, shuffle: bool = True,
            validation_data: tuple[Any, Any] | None = None, verbose: int = 0,
            input_scale: float = 1.0, sample_weight: Any = None,
            validation_split: float = 0.0,
            callbacks: Sequence[Callback] | None = None) -> History:
        """Train on (X, y) by mini-batch gradient descent.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs), or images
            Inputs; images as ``(n, H, W, C)`` (or ``(n, H, W)`` for one channel)
            when ``input_shape`` is ``(H, W, C)``. uint8 input (images) is
            converted batch by batch.
        y : array-like
            Integer labels (n_samples,) or one-hot rows for softmax cross-entropy;
            targets (n_samples, n_outputs), or (n_samples,) for one output, otherwise.
        epochs : int, default 1
            Passes over the data.
        batch_size : int or None, default 32
            Rows per step; 1 is per-sample SGD, None the full batch. The last
            batch of an epoch may be smaller.
        optimizer : SGD or Adam, optional
            Defaults to the optimizer of the previous ``fit`` (its state kept, so
            training resumes exactly), else ``SGD()`` (its default learning rate).
        shuffle : bool, default True
            Shuffle the rows every epoch with the network's own generator.
        validation_data : tuple (X_val, y_val), optional
            Evaluated after each epoch into the History.
        verbose : int, default 0
            0 is silent. 1 shows a progress bar within each epoch on a terminal
            or in a notebook (samples done, samples/s, ETA, running loss,
            redrawn a few times a second), then a line of the epoch's time and
            metrics; on a non-terminal (a log file, CI) plain lines only, with
            a progress line every 10 s of a long epoch. 2 prints the epoch
            lines alone. Epoch lines are rate-limited: many very short epochs
            print a few lines a second and the last epoch's line, not one line
            each (the History has every epoch). See ``fastnn.progress``.
        input_scale : float, default 1.0
            Every input is multiplied by it as it is read (e.g. 1/255 for uint8
            images), without copying X.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each sample's loss. A batch's loss is
            ``sum(w_i * loss_i) / batch_n``, so all-ones weights change nothing.
        validation_split : float, default 0
            A fraction in [0, 1): the last rows of X and y, taken before any
            shuffling (as Keras does), are held out of training and evaluated
            after each epoch like ``validation_data`` (which cannot be given too).
        callbacks : list of fastnn.callbacks.Callback, optional
            Called at the start and end of training and of each epoch, and
            between the chunks of batches of an epoch (Keras' names and
            meanings: ``EarlyStopping``, ``ModelCheckpoint``,
            ``LearningRateScheduler``, ``ReduceLROnPlateau``, ``CSVLogger``;
            see ``fastnn.callbacks``). One that sets
            ``model.stop_training = True`` ends training after the current
            chunk, once that epoch is recorded.

        Returns
        -------
        History
            Per-epoch loss, training accuracy (cross-entropies), validation
            loss and accuracy when validating, epoch times and learning rates.

        Raises
        ------
        FloatingPointError
            When a batch's loss is NaN or infinite. The weights are those of the
            last step whose loss was finite.
        """
        epochs = v.check_positive_int(epochs, "epochs")
        batch_size = v.check_positive_int(batch_size, "batch_size", allow_none=True)
        input_scale = v.check_nonnegative_float(input_scale, "input_scale", positive=True)
        if not isinstance(verbose, (int, np.integer)):
            raise TypeError(f"verbose must be an int (0, 1 or 2), got {verbose!r}")
        if verbose < 0:
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        callbacks = _checked_callbacks(callbacks)
        X, _ = self._check_X(X, keep_uint8=True)
        if X.dtype == np.uint8 and input_scale == 1.0:
            warnings.warn("X is uint8 (images?) and input_scale is 1: the inputs reach the "
                          "network as 0..255, which trains badly; pass input_scale=1/255 "
                          "(they are scaled as they are read, without a copy)", UserWarning,
                          stacklevel=2)
        n = X.shape[0]
        y = self._check_y(y, n)
        sample_weight = v.check_sample_weight(sample_weight, n, self.dtype)
        split = v.check_nonnegative_float(validation_split, "validation_split")
        if split:
            if split >= 1:
                raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
            if validation_data is not None:
                raise ValueError("give validation_data or validation_split, not both")
            n_val = int(n * split)
            if n_val < 1 or n_val >= n:
                raise ValueError(f"validation_split={split} of {n} samples leaves "
                                 f"{n - n_val} to train on and {n_val} to validate; "
                                 "both need at least one")
            validation_data = (X[n - n_val:], y[n - n_val:])
            X, y, n = X[:n - n_val], y[:n - n_val], n - n_val
            if sample_weight is not None:
                sample_weight = sample_weight[:n]
        if sample_weight is not None and not sample_weight.sum(dtype=np.float64) > 0:
            raise ValueError("sample_weight sums to zero: every sample would be ignored, "
                             "so there is nothing to train on")
        if validation_data is not None and not split:
            try:
                X_val, y_val = validation_data
            except (TypeError, ValueError):
                raise TypeError("validation_data must be a tuple (X_val, y_val)") from None
            X_val, _ = self._check_X(X_val, keep_uint8=True)
            validation_data = (X_val, self._check_y(y_val, X_val.shape[0]))
        if optimizer is None:
            optimizer = self.optimizer if self.optimizer is not None else SGD()
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastnn SGD or Adam, got {optimizer!r}")
        # Everything the epoch writes is claimed first, then checked: the checks
        # cannot be invalidated by another thread while this fit runs.
        with _fit_guard.claim([(self, "this network"), (optimizer, "the optimizer")]
                              + [(layer, f"layers[{i}]") for i, layer in enumerate(self.layers)]):
            optimizer.check()
            model_io.check_param_dtypes(self.layers, self.dtype)
            for layer in self.layers:
                layer._make_writeable()
            self.optimizer = optimizer
            optimizer.prepare(self._params())
            bs = n if batch_size is None else min(batch_size, n)
            plan = TrainingPlan(self.layers, self._compute_activations, self.loss, optimizer, bs,
                                X, y, input_scale, sample_weight, self._dropout_state)
            history = History()
            # A call with no batches makes the backend's workspace: its cost is
            # the fit's, not the first chunk's, which the thread chooser times.
            self._ops.train_batches(plan, np.zeros(0, np.intp), 0, 0)
            chooser = self._thread_chooser(bs)
            blas_threads = core_blas().get()
            self.stop_training = False
            params = {"epochs": epochs, "samples": n, "batch_size": bs,
                      "steps": -(-n // bs), "verbose": int(verbose)}
            for callback in callbacks:
                callback.set_model(self)
                callback.set_params(dict(params))
            progress = Progress(int(verbose), epochs, n) if verbose else None
            began = False
            try:
                began = chooser is not None and chooser.begin()
                if not began:
                    chooser = None  # another fit is choosing: this one leaves the count alone
                with _interrupts_at_chunk_ends() as deliver_interrupt:
                    self._fit_epochs(plan, history, epochs, shuffle, chooser, validation_data,
                                     progress, callbacks, deliver_interrupt)
            finally:
                if progress is not None:
                    progress.close()
                if began:
                    chooser.end(core_blas(), blas_threads)  # as the fit found it
        return history

    def _thread_chooser(self, batch_size: int) -> ThreadChooser | None:
        """This fit's chooser of BLAS threads: what earlier fits learnt, when it still applies."""
        fresh = chunk_thread_chooser()
        if fresh is None:
            return None
        known = self._choosers.get(batch_size)
        if known is None or known.options != fresh.options:
            self._choosers[batch_size] = known = fresh
        return known

    def _fit_epochs(self, plan: TrainingPlan, history: History, epochs: int, shuffle: bool,
                    chooser: ThreadChooser | None, validation_data: tuple | None,
                    progress: Progress | None, callbacks: list[Callback],
                    deliver_interrupt: Callable[[], None]) -> None:
        """The epochs of ``fit``, recorded into ``history``, with its display and callbacks."""
        n = plan.X.shape[0]
        counts = self.loss in ("softmax_cross_entropy", "binary_cross_entropy")
        weights = plan.sample_weight
        weight_sum = n if weights is None else float(weights.sum(dtype=np.float64))
        dispatch = self._dispatcher(callbacks)
        logs: dict[str, float] = {}
        dispatch("on_train_begin", logs)
        previous = None  # (weights before it, order) of the last epoch, for recovery
        for epoch in range(epochs):
            dispatch("on_epoch_begin", epoch, {})
            if progress is not None:
                progress.epoch_begin(epoch)
            order = self._rng.permutation(n) if shuffle else np.arange(n)
            order = order.astype(np.intp, copy=False)
            between = self._between_chunks(plan, order, progress, callbacks, dispatch, counts)
            saved = self._snapshot()
            t0 = time.perf_counter()
            total, done, bad, correct = self._train_epoch(plan, order, chooser,
                                                          deliver_interrupt, between)
            elapsed = time.perf_counter() - t0
            if bad >= 0 or not self._finite():
                self._restore(saved)
                bad = self._recover(plan, order, previous)
                raise FloatingPointError(
                    f"the loss or the weights became NaN or infinite in epoch {epoch + 1} "
                    f"at the batch starting at sample {bad} of the epoch; training stopped "
                    "and the weights are the last ones whose training loss was finite "
                    "(try a smaller learning rate)")
            previous = (saved, order)
            logs = {"loss": total / done}
            history.loss.append(logs["loss"])
            if counts:
                trained = weight_sum if done == n else (
                    done if weights is None else float(weights[order[:done]].sum(dtype=np.float64)))
                logs["accuracy"] = correct / trained
                history.accuracy.append(logs["accuracy"])
            history.epoch_time.append(elapsed)
            history.lr.append(float(getattr(plan.optimizer, "lr", math.nan)))
            if validation_data is not None:
                scores = self._evaluate_checked(*validation_data, plan.x_scale)
                logs["val_loss"] = scores["loss"]
                history.val_loss.append(scores["loss"])
                if "accuracy" in scores:
                    logs["val_accuracy"] = scores["accuracy"]
                    history.val_accuracy.append(scores["accuracy"])
            logs["lr"] = history.lr[-1]
            if progress is not None:
                progress.epoch_end(epoch, logs, elapsed, done)
            dispatch("on_epoch_end", epoch, logs)
            if self.stop_training:
                break
        if progress is not None:
            progress.train_end()
        dispatch("on_train_end", logs)

    def _dispatcher(self, callbacks: list[Callback]) -> Callable[..., None]:
        """A function calling a method of every callback, each allowed to set weights."""
        if not callbacks:
            return lambda method, *args: None
        layers = self.layers

        def dispatch(method: str, *args: Any) -> None:
            # Between chunks the compiled loop is not running: the callbacks may write
            # into the layers this fit claimed (their assignments are copied in place).
            with _fit_guard.opened(layers):
                for callback in callbacks:
                    getattr(callback, method)(*args)

        return dispatch

    def _between_chunks(self, plan: TrainingPlan, order: np.ndarray, progress: Progress | None,
                        callbacks: list[Callback], dispatch: Callable[..., None],
                        counts: bool) -> Callable[[int, float, float], bool] | None:
        """What runs after each chunk of an epoch: the display and ``on_train_batch_end``.

        Returns None when there is nothing to run, else a function of the
        epoch's (samples done, loss sum, right predictions) that returns True
        when a callback asked to stop. It is kept to a clock read and a few
        calls, so that it costs nothing next to a chunk of training.
        """
        if progress is None and not callbacks:
            return None
        update = progress.update if progress is not None else None
        bs, weights = plan.batch_size, plan.sample_weight
        seen = [0, 0.0]  # samples and their weight sum, for a weighted running accuracy

        def between(done: int, total: float, correct: float) -> bool:
            if update is not None:
                update(done, total)
            if not callbacks:
                return False
            logs = {"loss": total / done}
            if counts:
                if weights is None:
                    logs["accuracy"] = correct / done
                else:
                    seen[1] += float(weights[order[seen[0]:done]].sum(dtype=np.float64))
                    seen[0] = done
                    logs["accuracy"] = correct / seen[1] if seen[1] > 0 else 0.0
            dispatch("on_train_batch_end", -(-done // bs), logs)
            return self.stop_training

        return between

    def _train_epoch(self, plan: TrainingPlan, order: np.ndarray, chooser: ThreadChooser | None,
                     deliver_interrupt: Callable[[], None],
                     between: Callable[[int, float, float], bool] | None = None,
                     ) -> tuple[float, int, int, float]:
        """Train the epoch ``order`` in chunks of batches, each about ``CHUNK_SECONDS`` long.

        Between chunks the interpreter runs: Ctrl-C raises KeyboardInterrupt
        there (``deliver_interrupt`` raises one held back during the chunk),
        with the weights of the last completed batch. ``chooser`` (None for a
        fixed count) picks each chunk's BLAS threads. ``between`` (see
        ``_between_chunks``) runs after each chunk and may end the epoch early.
        Returns ``(loss_sum, n_done, bad_start, n_correct)`` as ``train_batches``
        does, for the epoch.
        """
        bs, n = plan.batch_size, len(order)
        total, done, pos, correct = 0.0, 0, 0, 0.0
        batches = self._chunk_batches.get(bs, 1)
        blas = core_blas()
        while pos < n:
            threads, fraction = chooser.next() if chooser is not None else (0, 1.0)
            if threads:
                chooser.apply(blas, threads)
            stop = min(n, pos + max(1, int(batches * fraction)) * bs)
            t0 = time.perf_counter()
            # The time limit ends a chunk early when the machine got much busier
            # than the pace it was sized from, or when a probe of the other thread
            # count is far slower (under load, two spinning threads can be 50x so).
            chunk_total, chunk_done, bad, chunk_correct = self._ops.train_batches(
                plan, order, pos, stop, 3 * CHUNK_SECONDS * fraction)
            seconds = time.perf_counter() - t0
            total += chunk_total
            done += chunk_done
            correct += chunk_correct
            if bad >= 0:
                return total, done, bad, correct
            if chooser is not None:
                chooser.record(threads, seconds, chunk_done)
            # Size the next chunk from this one's pace, growing at most 4x at a time.
            per_batch = seconds / max(1, -(-chunk_done // bs))
            batches = max(1, min(4 * batches, int(CHUNK_SECONDS / max(per_batch, 1e-7))))
            if chunk_done == 0:  # pragma: no cover - a backend that trained nothing
                raise RuntimeError("the training backend returned without training a batch")
            pos += chunk_done
            deliver_interrupt()
            if between is not None and between(done, total, correct):
                break
        self._chunk_batches[bs] = batches
        return total, done, -1, correct

    # The state one step changes, so that a diverging epoch can be undone.
    # (A custom optimizer's state beyond ``optimizer.state`` is not covered.)
    def _state_arrays(self) -> list[np.ndarray]:
        extra = [] if self._dropout_state is None else [self._dropout_state]
        return (self._params() + [a for per_param in self.optimizer.state for a in per_param]
                + extra)

    def _snapshot(self) -> list[np.ndarray | int]:
        return [a.copy() for a in self._state_arrays()] + [getattr(self.optimizer, "step_count", 0)]

    def _restore(self, saved: list) -> None:
        opt = self.optimizer
        for a, copy in zip(self._state_arrays(), saved):
            a[...] = copy  # in place: the training plan holds these very arrays
        if hasattr(opt, "step_count"):
            opt.step_count = saved[-1]

    def _finite(self) -> bool:
        return all(np.isfinite(a).all() for a in self._params())

    def _recover(self, plan: TrainingPlan, order: np.ndarray, previous) -> int:
        """After a failed epoch, restored to its start: go back to the last finite loss.

        Replays the epoch one batch at a time. When a batch's loss is not finite,
        the step before it made the weights that gave it, so that step is undone
        too and the weights are the last ones whose batch loss was finite. When
        that step belonged to the previous epoch (``previous``: the state before
        it and its order), that epoch is replayed up to its last batch. When an
        update itself made the weights non-finite, only that update is undone.

        Returns the epoch position of the batch that failed.
        """
        bs = plan.batch_size
        before_last = None  # the state before the last step that was applied
        for start in range(0, len(order), bs):
            saved = self._snapshot()
            bad = self._ops.train_batches(plan, order, start, min(start + bs, len(order)))[2]
            if bad < 0 and self._finite():
                before_last = saved
                continue
            if bad < 0 or (before_last is None and previous is None):
                self._restore(saved)   # the update failed, or there is no earlier step here
            elif before_last is not None:
                self._restore(before_last)
            else:
                prev_saved, prev_order = previous
                self._restore(prev_saved)
                self._ops.train_batches(plan, prev_order, 0, (len(prev_order) - 1) // bs * bs)
            return start
        return len(order)  # pragma: no cover - the full epoch failed, so some batch does

    # ------------------------------------------------------------ inference

    def _output(self, X: np.ndarray, kind: str, input_scale: float) -> np.ndarray:
        # X was checked for everything but finiteness, which the ops check.
        if not (type(input_scale) is float and 0.0 < input_scale < math.inf):  # the usual case, fast
            input_scale = v.check_nonnegative_float(input_scale, "input_scale", positive=True)
        out = self._ops.forward_chunks(X, self.layers, self._compute_activations,
                                       input_scale, kind, check_finite=True)
        lean = self._lean
        if lean is None or not lean.matches(self.layers, self._compute_activations):
            # (Re)made for the current layers, so that the next predict can use it.
            self._lean = self._ops.predictor(self.layers, self._compute_activations)
        return out

    def predict_proba(self, X: Any, input_scale: float = 1.0) -> np.ndarray:
        """Class probabilities: softmax rows, or sigmoid outputs for binary cross-entropy.

        A single 1-D sample gives a 1-D result.
        """
        lean = self._lean
        if lean is not None and self.loss in _LEAN_PROBA:
            # The plain case (one sample or rows of the network's dtype, the same layers
            # as last time) without Python-side checks and lists; None otherwise.
            out = lean.run(X, self.layers, self._compute_activations, input_scale,
                           _LEAN_PROBA[self.loss])
            if out is not None:
                return out
        kinds = {"softmax_cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}
        if self.loss not in kinds:
            raise ValueError("predict_proba needs a cross-entropy loss; use predict for 'mse'")
        X, single = self._check_X(X, keep_uint8=True, finite=False)
        out = self._output(X, kinds[self.loss], input_scale)
        return out[0] if single else out

    def predict(self, X: Any, threshold: float = 0.5, input_scale: float = 1.0) -> np.ndarray:
        """Predictions for X.

        Class labels (argmax) for softmax cross-entropy; 0/1 at ``threshold`` for
        binary cross-entropy (shape (n,) for one output); the network's outputs
        for MSE, and their exp (the predicted mean) for the Poisson loss. A single 1-D sample gives the result for that sample alone.
        """
        lean = self._lean
        if lean is not None and self.loss in _LEAN_PREDICT:
            # The plain case, see predict_proba.
            out = lean.run(X, self.layers, self._compute_activations, input_scale,
                           _LEAN_PREDICT[self.loss])
            if out is not None:
                return out
        X, single = self._check_X(X, keep_uint8=True, finite=False)
        if self.loss == "binary_cross_entropy" and not (
                type(threshold) is float and math.isfinite(threshold)):
            threshold = _checked_threshold(threshold)
        if self.loss == "softmax_cross_entropy":
            out = self._output(X, "raw", input_scale).argmax(axis=1)
        elif self.loss == "binary_cross_entropy":
            out = (self._output(X, "sigmoid", input_scale) >= threshold).astype(np.int64)
            if out.shape[1] == 1:
                out = out[:, 0]
        else:
            out = self._output(X, "exp" if self.loss == "poisson" else "raw", input_scale)
        return out[0] if single else out

    def evaluate(self, X: Any, y: Any, input_scale: float = 1.0,
                 sample_weight: Any = None) -> dict[str, float]:
        """Mean loss on (X, y) and, for the cross-entropies, accuracy.

        With ``sample_weight`` both are weighted averages (divided by the sum
        of the weights).

        Returns
        -------
        dict
            ``{"loss": ..., "accuracy": ...}`` (no accuracy for MSE).
        """
        X, _ = self._check_X(X, keep_uint8=True, finite=False)
        y = self._check_y(y, X.shape[0])
        sample_weight = v.check_sample_weight(sample_weight, X.shape[0], self.dtype)
        if sample_weight is not None and not sample_weight.sum(dtype=np.float64) > 0:
            raise ValueError("sample_weight sums to zero")
        return self._evaluate_checked(X, y, input_scale, sample_weight)

    def _evaluate_checked(self, X: np.ndarray, y: np.ndarray, input_scale: float,
                          sample_weight: np.ndarray | None = None) -> dict:
        logits = self._output(X, "raw", input_scale)
        loss, _ = self._ops.loss(self.loss, logits, y, need_grad=False,
                                 sample_weight=sample_weight)
        if sample_weight is not None:
            # The ops divide the weighted sum by n; a weighted average divides by sum(w).
            loss = loss * len(sample_weight) / float(sample_weight.sum(dtype=np.float64))
        scores = {"loss": float(loss)}
        if self.loss == "softmax_cross_entropy":
            truth = y if y.ndim == 1 else y.argmax(axis=1)
            correct = logits.argmax(axis=1) == truth
        elif self.loss == "binary_cross_entropy":
            correct = ((logits >= 0) == (y >= 0.5)).mean(axis=1)
        else:
            return scores
        scores["accuracy"] = float(np.average(correct, weights=sample_weight))
        return scores

    def loss_and_grads(self, X: Any, y: Any, sample_weight: Any = None,
                       ) -> tuple[float, list[tuple[np.ndarray, ...] | None]]:
        """Mean loss on (X, y) and its gradient for every layer, without updating.

        Parameters
        ----------
        X, y : array-like
            As for ``fit``.
        sample_weight : array-like of shape (n_samples,), optional
            Multiplies each sample's loss; the mean still divides by the number
            of samples, as in training.

        Returns
        -------
        loss : float
        grads : list
            One entry per layer: ``(dW, db)`` shaped as its parameters, or None
            for a layer without parameters.
        """
        X, _ = self._check_X(X)
        y = self._check_y(y, X.shape[0])
        sample_weight = v.check_sample_weight(sample_weight, X.shape[0], self.dtype)
        ctxs = [{} for _ in self.layers]
        out = self._ops.forward_walk(self.layers, self._compute_activations, X, ctxs, train=False)
        loss, grad = self._ops.loss(self.loss, out, y, sample_weight=sample_weight)
        grads = self._ops.backward_walk(self.layers, ctxs, grad)
        return float(loss), [tuple(g) if g else None for g in grads]

    # ------------------------------------------------------------ persistence

    def layer_outputs(self, X: Any, input_scale: float = 1.0) -> list[np.ndarray]:
        """What each layer gives for X, as in ``predict``: for pictures of what a network sees.

        Parameters
        ----------
        X : array-like
            Samples, in any form ``predict`` takes (a single sample too).
        input_scale : float, default 1.0
            Every input is multiplied by it as it is read (1/255 for uint8 images).

        Returns
        -------
        list of ndarray
            One array per layer, of shape ``(n, *layer.out_shape)`` (images stay
            (n, H, W, C)), each after its layer's own activation. Dropout is the
            identity, as in ``predict``; an output softmax or sigmoid that the loss
            fuses is applied, so the last array is what ``predict_proba`` gives.

        Examples
        --------
        >>> net = Network([Dense(2, 3, "relu"), Dense(3, 1)], seed=0)
        >>> [a.shape for a in net.layer_outputs([[1.0, 2.0]])]
        [(1, 3), (1, 1)]
        """
        input_scale = v.check_nonnegative_float(input_scale, "input_scale", positive=True)
        X, _ = self._check_X(X)
        ops = get_ops("numpy")  # the reference walk: every layer's output, not just the last
        h = X if input_scale == 1.0 else X * np.asarray(input_scale, self.dtype)
        outputs = []
        for layer, act in zip(self.layers, self._compute_activations):
            h = layer.forward(ops, h, {"activation": act}, False)
            outputs.append(h)
        declared = getattr(self.layers[-1], "activation", "identity")
        if declared != self._compute_activations[-1]:  # the loss fuses it: apply it here
            outputs[-1] = ops.softmax(h) if declared == "softmax" else ops.sigmoid(h)
        return [out.reshape((out.shape[0], *layer.out_shape))
                for out, layer in zip(outputs, self.layers)]

    def _model_header(self) -> dict:
        return {"loss": self.loss, "dtype": str(self.dtype), "input_shape": list(self.input_shape)}

    def save(self, path: str | os.PathLike) -> None:
        """Write the network to ``path`` as an ``.npz`` model file (see ``fastnn.load``).

        Written atomically (a temporary file beside the target, then a rename),
        through a symlink to its target, keeping the permissions of the file it
        replaces; see ``fastnn.io.write_model``.
        """
        model_io.write_model(path, self._model_header(), self.layers)

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The network in the tutorials' JSON weight format; written to ``path`` if given.

        Only dense networks: that format has no other layer kinds (use ``save``).
        """
        header = self._model_header()
        text = model_io.model_to_json(header, self.layers)
        if path is not None:
            model_io.write_json(path, header, self.layers)
        return text

    @classmethod
    def from_json(cls, source: str | bytes | os.PathLike, backend: str = "compiled") -> "Network":
        """Read a network from JSON text (str or bytes) or a JSON file path (see ``to_json``).

        A str whose first non-blank character is ``{`` or ``[`` is JSON text;
        pass a ``pathlib.Path`` for a file whose name starts so.
        """
        _check_backend(backend)
        header, layers = model_io.model_from_json(source)
        where = "JSON model" if model_io.is_json_text(source) else os.fsdecode(source)
        return cls._from_model(header, layers, backend, where)

    @classmethod
    def _from_model(cls, header: dict, layers: list, backend: str, where: str) -> "Network":
        try:
            return cls(layers, loss=header["loss"], dtype=header["dtype"], backend=backend,
                       input_shape=header["input_shape"])
        except (ValueError, TypeError) as exc:  # e.g. a softmax on a hidden layer
            raise model_io.ModelFileError(f"{where}: {exc}") from None


def load(path: str | os.PathLike, backend: str = "compiled") -> Network:
    """Read a network written by ``Network.save``.

    Parameters
    ----------
    path : str or path-like
        An ``.npz`` model file (format 2, or format 1 from earlier versions).
    backend : {"compiled", "numpy"}
        Backend of the returned network.

    Raises
    ------
    ModelFileError (a ValueError)
        When the file is not a fastnn model, is truncated or corrupted, or its
        arrays disagree with its header.
    """
    _check_backend(backend)  # before reading: a bad argument is not a damaged file
    header, layers = model_io.read_model(path)
    return Network._from_model(header, layers, backend, os.fspath(path))


def _checked_callbacks(callbacks: Any) -> list[Callback]:
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    try:
        callbacks = list(callbacks)
    except TypeError:
        raise TypeError("callbacks must be a list of fastnn.callbacks.Callback objects, "
                        f"got {type(callbacks).__name__}") from None
    for i, callback in enumerate(callbacks):
        if not isinstance(callback, Callback):
            raise TypeError(f"callbacks[{i}] must be a fastnn.callbacks.Callback (a subclass "
                            f"of it), got {type(callback).__name__}")
    return callbacks


def _dropout_key(seed: Any, rng: np.random.Generator) -> int:
    """The key of the dropout masks: from the seed (not from ``rng``, so that adding a
    Dropout layer changes neither the initial weights nor the shuffling)."""
    try:
        return int(np.random.SeedSequence(seed, spawn_key=(0xD0,)).generate_state(1, np.uint64)[0])
    except (TypeError, ValueError):  # a seed SeedSequence does not take: draw one
        return int(rng.integers(0, 2 ** 63))


def _check_backend(backend: Any) -> None:
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {sorted(BACKENDS)}")


@contextlib.contextmanager
def _interrupts_at_chunk_ends() -> Iterator[Callable[[], None]]:
    """Hold Ctrl-C back until the running chunk of batches ends; yields the deliverer.

    The compiled loop cannot be interrupted anyway (the interpreter runs the
    handler when the call returns), but a chunk run in Python (the NumPy
    backend, a custom optimizer) could be stopped between two parameters'
    updates. With this, every backend stops at a batch boundary. Only the
    main thread receives signals, and a handler that is not Python's (ignored,
    default) is left alone.
    """
    previous = signal.getsignal(signal.SIGINT) if _on_main_thread() else None
    if not callable(previous):
        yield lambda: None
        return
    held: list = []

    def hold(signum: int, frame: Any) -> None:
        if held:  # a second Ctrl-C does not wait (a batch may be very long)
            previous(signum, frame)
        held.append((signum, frame))

    signal.signal(signal.SIGINT, hold)

    def deliver() -> None:
        if held:
            signum, frame = held.pop()
            held.clear()
            previous(signum, frame)  # Python's default raises KeyboardInterrupt here

    try:
        yield deliver
    finally:
        signal.signal(signal.SIGINT, previous)
        deliver()  # one that came after the last chunk


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _checked_threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"threshold must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"threshold must be a finite number, got {value!r}")
    return float(value)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


class Neuron:
    """The tutorials' single neuron: ``sigmoid(weights . x + bias)``.

    Parameters
    ----------
    weights : array-like of shape (n_inputs,)
    bias : float

    Examples
    --------
    >>> Neuron([0, 1], 4).feedforward([2, 3])
    0.9990889488055994
    """

    def __init__(self, weights: Any, bias: float) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        if self.weights.ndim != 1:
            raise ValueError(f"weights must be 1-D, got shape {self.weights.shape}")
        self.bias = float(bias)

    def feedforward(self, x: Any) -> float:
        """The neuron's output for one input vector ``x``."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape != self.weights.shape:
            raise ValueError(f"x must have shape {self.weights.shape}, got {x.shape}")
        return float(_sigmoid(np.dot(self.weights, x) + self.bias))
