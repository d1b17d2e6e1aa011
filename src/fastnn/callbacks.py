"""Callbacks for ``Network.fit``, with Keras' names and meanings.

A callback is an object whose methods ``fit`` calls at fixed points of
training: when it begins and ends, when each epoch begins and ends, and
between the chunks of batches that make up an epoch (``on_batch_end``; the
compiled loop runs a fraction of a second of batches per chunk, so this is
called a few times a second, not after every batch). ``fit`` passes the
network as ``callback.model``; setting ``model.stop_training = True`` stops
training after the current chunk, with that epoch's end (validation, History,
``on_epoch_end``) still done.

Callbacks run on the thread of the fit, between chunks: they may read the
weights, assign them (``layer.W = ...`` or ``model.set_weights(...)``, copied
into the arrays the fit trains), change the optimizer's ``lr`` (read at the
next chunk), save, predict and evaluate.

>>> import numpy as np, fastnn
>>> from fastnn.callbacks import EarlyStopping
>>> X, y = np.random.default_rng(0).standard_normal((100, 3)), np.arange(100) % 2
>>> net = fastnn.Network.mlp([3, 8, 2], loss="softmax_cross_entropy", seed=0)
>>> history = net.fit(X, y, epochs=50, validation_split=0.2,
...                   callbacks=[EarlyStopping(patience=3, restore_best_weights=True)])
"""

from __future__ import annotations

import csv
import inspect
import math
import os
import warnings
from typing import Any, Callable, Mapping

import numpy as np

__all__ = [
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
]


class Callback:
    """Base class of the callbacks: override the methods you need.

    Attributes
    ----------
    model : Network or None
        The network being trained, set by ``fit`` (through ``set_model``)
        before ``on_train_begin``.
    params : dict
        Set by ``fit``: ``epochs``, ``samples`` (training rows), ``batch_size``,
        ``steps`` (batches per epoch) and ``verbose``.

    Notes
    -----
    The ``logs`` dicts hold, at the end of an epoch, ``loss``, ``accuracy``
    (for the cross-entropies), ``val_loss`` and ``val_accuracy`` (with
    validation data) and ``lr``; between chunks, the running ``loss`` and
    ``accuracy`` of the epoch so far. As in Keras, ``on_train_batch_end``
    calls ``on_batch_end``: override either.
    """

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        """Called by ``fit`` with the network it trains."""
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        """Called by ``fit`` with the training parameters (see ``params``)."""
        self.params = params

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Called once, before the first epoch."""

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Called once, after the last epoch (also when a callback stopped training),
        with the logs of the last epoch. Not called when ``fit`` raises."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Called before epoch ``epoch`` (counted from 0) trains."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Called after epoch ``epoch`` trained and was validated, with its metrics."""

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Called between chunks: ``batch`` batches of the epoch are done.

        ``logs`` holds the running ``loss`` (and ``accuracy``) of the epoch so far.
        """

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Keras' name of ``on_batch_end`` (which it calls)."""
        self.on_batch_end(batch, logs)


def _wants_more(monitor: str, mode: str, who: str) -> bool:
    """Whether larger values of ``monitor`` are better, as Keras infers it.

    "auto" reads the name: accuracies (a name containing "acc") and AUCs are
    maximised, anything else (losses, errors) minimised.
    """
    if not isinstance(monitor, str) or not monitor:
        raise TypeError(f"{who}: monitor must be a metric name such as 'val_loss', "
                        f"got {monitor!r}")
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{who}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        name = monitor[4:] if monitor.startswith("val_") else monitor
        return "acc" in name or name.endswith("auc")
    return mode == "max"


def _number(value: Any, name: str, who: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{who}: {name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{who}: {name} must be a finite {kind} number, got {value!r}")
    return value


def _count(value: Any, name: str, who: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{who}: {name} must be a non-negative integer, got {value!r}")
    return int(value)


def _monitored(logs: Mapping[str, Any] | None, monitor: str, who: str,
               consequence: str) -> float | None:
    """``logs[monitor]``, or None with a warning naming the metrics there are (as Keras)."""
    logs = logs or {}
    value = logs.get(monitor)
    if value is None:
        warnings.warn(f"{who} is conditioned on metric {monitor!r}, which is not available "
                      f"(available metrics: {', '.join(sorted(logs)) or 'none'}); "
                      f"{consequence}", UserWarning, stacklevel=4)
        return None
    return float(value)


def _optimizer_lr(model: Any, who: str) -> float:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not hasattr(optimizer, "lr"):
        raise ValueError(f"{who} needs an optimizer with an 'lr' attribute")
    return float(optimizer.lr)


def _set_lr(model: Any, lr: Any, who: str) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)) \
            or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"{who}: the learning rate must be a finite positive float, got {lr!r}")
    model.optimizer.lr = float(lr)
    return float(lr)


class EarlyStopping(Callback):
    """Stop training when a monitored metric has stopped improving.

    After each epoch, the value of ``monitor`` is an improvement when it beats
    the best so far by more than ``min_delta``. Training stops when
    ``patience`` epochs in a row brought none (after at least two epochs).

    Parameters
    ----------
    monitor : str, default "val_loss"
        The metric: "loss", "accuracy", "val_loss", "val_accuracy" or another
        key of the epoch logs. A missing one warns and is ignored that epoch.
    min_delta : float, default 0
        The smallest change that counts as an improvement (its sign is ignored).
    patience : int, default 0
        Epochs without improvement after which training stops.
    verbose : int, default 0
        1 prints a line when it stops and when it restores weights.
    mode : {"auto", "min", "max"}, default "auto"
        Whether smaller or larger values are better; "auto" maximises
        accuracies (names containing "acc") and minimises anything else.
    baseline : float, optional
        Training stops unless the metric beats it within ``patience`` epochs.
    restore_best_weights : bool, default False
        When training ends, set the weights of the best epoch (as Keras 3 does,
        whether or not this callback stopped it).
    start_from_epoch : int, default 0
        Epochs to wait before monitoring starts (warm-up).

    Attributes
    ----------
    stopped_epoch : int
        The epoch (from 0) at which it stopped training, 0 if it did not.
    best, best_epoch : float, int
        The best value seen and its epoch.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0) -> None:
        super().__init__()
        who = "EarlyStopping"
        self.monitor = monitor
        self.mode = mode
        self._maximise = _wants_more(monitor, mode, who)
        if isinstance(min_delta, bool) or not isinstance(
                min_delta, (int, float, np.integer, np.floating)) or not math.isfinite(min_delta):
            raise TypeError(f"{who}: min_delta must be a finite number, got {min_delta!r}")
        self.min_delta = abs(float(min_delta))
        self.patience = _count(patience, "patience", who)
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = _count(start_from_epoch, "start_from_epoch", who)
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best = -math.inf if self._maximise else math.inf
        self.best_weights: list[np.ndarray] | None = None
        self.best_epoch = 0

    def _improves(self, value: float, reference: float) -> bool:
        if self._maximise:
            return value - self.min_delta > reference
        return value + self.min_delta < reference

    def on_train_begin(self, logs=None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        current = _monitored(logs, self.monitor, "EarlyStopping", "this epoch is not counted")
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # The first monitored epoch is the best so far, even when it does not improve.
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._improves(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improves(current, float(self.baseline)):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None) -> None:
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print("Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the network after each epoch, or only when it is the best so far.

    Parameters
    ----------
    filepath : str or path-like
        Where to save (``Network.save``: an ``.npz`` model file, written
        atomically, so an interrupted save never leaves half a model). It may
        hold format fields filled from the epoch (counted from 1) and its logs,
        as Keras: ``"ckpt-{epoch:02d}-{val_loss:.2f}.npz"``.
    monitor : str, default "val_loss"
        The metric deciding what is best (with ``save_best_only``).
    verbose : int, default 0
        1 prints a line per save.
    save_best_only : bool, default False
        Save only when the monitored metric improved on the best so far (a
        missing metric warns and saves nothing).
    mode : {"auto", "min", "max"}, default "auto"
        As in ``EarlyStopping``.
    """

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, mode: str = "auto") -> None:
        super().__init__()
        if not isinstance(filepath, (str, os.PathLike)):
            raise TypeError(f"ModelCheckpoint: filepath must be a str or path, got {filepath!r}")
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.mode = mode
        self._maximise = _wants_more(monitor, mode, "ModelCheckpoint")
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.best = -math.inf if self._maximise else math.inf

    def on_train_begin(self, logs=None) -> None:
        # Keras keeps the best across fits of the same callback; so does this.
        pass

    def _path(self, epoch: int, logs: Mapping[str, Any]) -> str:
        try:
            return self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as exc:
            raise KeyError(f"ModelCheckpoint: filepath {self.filepath!r} names {exc} which is "
                           f"not in the epoch's logs ({', '.join(sorted(logs))})") from None

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = dict(logs or {})
        path = self._path(epoch, logs)
        if self.save_best_only:
            current = _monitored(logs, self.monitor, "ModelCheckpoint(save_best_only=True)",
                                 "the model is not saved")
            if current is None:
                return
            better = current > self.best if self._maximise else current < self.best
            if not better:
                if self.verbose:
                    print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to "
                      f"{current:.5f}, saving model to {path}")
            self.best = current
        elif self.verbose:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        self.model.save(path)


class LearningRateScheduler(Callback):
    """Set the learning rate before each epoch from ``schedule(epoch, lr)``.

    Parameters
    ----------
    schedule : callable
        ``schedule(epoch, lr) -> new lr``, with the epoch counted from 0 and
        the optimizer's current lr; a ``schedule(epoch)`` of one argument is
        accepted too. It must return a finite positive float.
    verbose : int, default 0
        1 prints the learning rate set at each epoch.

    Notes
    -----
    The rate is set on the optimizer (``model.optimizer.lr``), so it stays
    after ``fit`` and shows in ``History.lr``.
    """

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be callable, got {schedule!r}")
        self.schedule = schedule
        self.verbose = verbose
        # Keras' older schedules take the epoch alone. Decided from the signature, not
        # by retrying after a TypeError, which would hide one raised inside the schedule.
        try:
            inspect.signature(schedule).bind(0, 0.1)
            self._two_args = True
        except TypeError:
            self._two_args = False
        except ValueError:  # no signature (some builtins): assume Keras' current form
            self._two_args = True

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        who = "LearningRateScheduler"
        lr = _optimizer_lr(self.model, who)
        new = self.schedule(epoch, lr) if self._two_args else self.schedule(epoch)
        lr = _set_lr(self.model, new, f"{who}: the output of the schedule")
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when a metric has stopped improving.

    Parameters
    ----------
    monitor : str, default "val_loss"
        The metric watched after each epoch.
    factor : float, default 0.1
        ``new_lr = lr * factor``, in (0, 1).
    patience : int, default 10
        Epochs without improvement after which the rate is reduced.
    verbose : int, default 0
        1 prints a line at each reduction.
    mode : {"auto", "min", "max"}, default "auto"
        As in ``EarlyStopping``.
    min_delta : float, default 1e-4
        An improvement must beat the best by more than this.
    cooldown : int, default 0
        Epochs after a reduction during which no epoch counts as a bad one.
    min_lr : float, default 0
        The rate is never reduced below this.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0) -> None:
        super().__init__()
        who = "ReduceLROnPlateau"
        self.monitor = monitor
        self.mode = mode
        self._maximise = _wants_more(monitor, mode, who)
        self.factor = _number(factor, "factor", who, positive=True)
        if self.factor >= 1:
            raise ValueError(f"{who} does not support a factor >= 1.0, got {factor!r}")
        self.patience = _count(patience, "patience", who)
        self.verbose = verbose
        self.min_delta = _number(min_delta, "min_delta", who)
        self.cooldown = _count(cooldown, "cooldown", who)
        self.min_lr = _number(min_lr, "min_lr", who)
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.cooldown_counter = 0
        self.best = -math.inf if self._maximise else math.inf

    def _improves(self, value: float) -> bool:
        if self._maximise:
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def on_train_begin(self, logs=None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        current = _monitored(logs, self.monitor, "ReduceLROnPlateau",
                             "this epoch is not counted")
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improves(current):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = _optimizer_lr(self.model, "ReduceLROnPlateau")
                if old > np.float32(self.min_lr):
                    new = _set_lr(self.model, max(old * self.factor, self.min_lr),
                                  "ReduceLROnPlateau")
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate "
                              f"to {new}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class CSVLogger(Callback):
    """Write each epoch's metrics as a row of a CSV file.

    The columns are ``epoch`` (from 0, as Keras) and the sorted keys of the
    first epoch's logs (``accuracy``, ``loss``, ``lr``, ``val_accuracy``,
    ``val_loss``, ...); a value missing later is written as ``NA``. Each row
    is written and the file closed at once, so the file is complete up to the
    last epoch even when training is interrupted.

    Parameters
    ----------
    filename : str or path-like
        The CSV file.
    separator : str, default ","
        The field separator.
    append : bool, default False
        Add to an existing file (without repeating its header) rather than
        replace it.
    """

    def __init__(self, filename: str | os.PathLike, separator: str = ",",
                 append: bool = False) -> None:
        super().__init__()
        if not isinstance(filename, (str, os.PathLike)):
            raise TypeError(f"CSVLogger: filename must be a str or path, got {filename!r}")
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = bool(append)
        self.keys: list[str] | None = None
        self._header_written = False

    def on_train_begin(self, logs=None) -> None:
        self.keys = None
        if self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0:
            self._header_written = True
        else:
            with open(self.filename, "w", newline=""):
                pass  # truncate now: a run that trains no epoch leaves an empty file
            self._header_written = False

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
        with open(self.filename, "a", newline="") as f:
            writer = csv.writer(f, delimiter=self.sep)
            if not self._header_written:
                writer.writerow(["epoch"] + self.keys)
                self._header_written = True
            writer.writerow([epoch] + [_csv_value(logs.get(k, "NA")) for k in self.keys])


def _csv_value(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return repr(float(value))  # all the digits, so that a reader gets the same float
    return value
