"""fastnn.callbacks: Keras' callbacks on the chunked fit.

Metrics are scripted by a callback placed before the one under test (it writes
``logs["val_loss"]``), so that patience, min_delta, modes and plateaus are
checked against known sequences; the weights each epoch ended with are
recorded to check restore_best_weights and the checkpoints.
"""

from __future__ import annotations

import csv
import os
import threading

import numpy as np
import pytest

import fastnn
from fastnn import SGD, Network
from fastnn import network as network_module
from fastnn.callbacks import (Callback, CSVLogger, EarlyStopping, LearningRateScheduler,
                              ModelCheckpoint, ReduceLROnPlateau)


class Script(Callback):
    """Writes ``values[epoch]`` as ``logs[key]`` and records the weights of each epoch's end."""

    def __init__(self, values, key="val_loss"):
        super().__init__()
        self.values, self.key, self.weights = list(values), key, []

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]
        self.weights.append(self.model.get_weights())


class Recorder(Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin", dict(logs)))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, dict(logs)))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, dict(logs)))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end", dict(logs)))


@pytest.fixture
def data(rng):
    X = rng.standard_normal((64, 4))
    return X, (X[:, 0] + X[:, 1] > 0).astype(int)


def _net(backend="compiled", seed=0):
    return Network.mlp([4, 6, 2], activation="tanh", loss="softmax_cross_entropy",
                       dtype="float64", seed=seed, backend=backend)


def _fit(net, data, epochs, callbacks, **kw):
    X, y = data
    kw.setdefault("optimizer", SGD(lr=0.1))
    return net.fit(X, y, epochs=epochs, batch_size=16, callbacks=callbacks, **kw)


# ---------------------------------------------------------------- the hooks


def test_hooks_are_called_in_keras_order_with_the_epoch_logs(backend, data):
    net = _net(backend)
    rec = Recorder()
    history = _fit(net, data, 2, [rec], validation_data=data)
    assert rec.model is net
    assert rec.params == {"epochs": 2, "samples": 64, "batch_size": 16, "steps": 4,
                          "verbose": 0}
    kinds = [c[0] for c in rec.calls]
    assert kinds[0] == "train_begin" and kinds[-1] == "train_end"
    ends = [c for c in rec.calls if c[0] == "epoch_end"]
    assert [c[1] for c in ends] == [0, 1]
    logs = ends[1][2]
    assert set(logs) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert logs["loss"] == history.loss[1] and logs["accuracy"] == history.accuracy[1]
    assert logs["val_accuracy"] == history.val_accuracy[1] and logs["lr"] == 0.1
    # Between chunks: batches done so far, the running loss; the last one is the epoch's.
    for epoch in (0, 1):
        start = kinds.index("epoch_begin", 0 if epoch == 0 else kinds.index("epoch_end") + 1)
        batches = [c for c in rec.calls[start:] if c[0] == "batch_end"]
        batches = batches[:next(i for i, c in enumerate(batches) if c[1] == 4) + 1]
        assert batches[-1][1] == 4 and all(0 < c[1] <= 4 for c in batches)
        assert batches[-1][2]["loss"] == pytest.approx(history.loss[epoch], rel=1e-12)
        assert batches[-1][2]["accuracy"] == pytest.approx(history.accuracy[epoch], rel=1e-12)
    assert rec.calls[-1][1] == logs


def test_on_batch_end_runs_between_chunks_and_can_stop_mid_epoch(monkeypatch, backend, data):
    monkeypatch.setattr(network_module, "CHUNK_SECONDS", 1e-9)  # one batch per chunk

    class StopAfter3(Callback):
        def on_train_batch_end(self, batch, logs=None):  # Keras' name works too
            if batch == 3:
                self.model.stop_training = True

    net = _net(backend)
    rec = Recorder()
    history = _fit(net, data, 5, [StopAfter3(), rec], shuffle=False)
    assert len(history) == 1
    assert [c[1] for c in rec.calls if c[0] == "batch_end"] == [1, 2, 3]
    # Exactly three batches were trained: as a fit on those 48 rows.
    X, y = data
    alone = _net(backend)
    expected = alone.fit(X[:48], y[:48], epochs=1, batch_size=16, shuffle=False,
                         optimizer=SGD(lr=0.1))
    assert history.loss == pytest.approx(expected.loss, rel=1e-12)
    assert history.accuracy == pytest.approx(expected.accuracy, rel=1e-12)
    for a, b in zip(net.get_weights(), alone.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert rec.calls[-1][0] == "train_end"


def test_callbacks_may_read_and_assign_weights_between_chunks(backend, data):
    class Zero(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                layer = self.model.layers[0]
                self.seen = layer.W.copy()
                self.array = layer.W
                layer.W = np.zeros_like(layer.W)  # copied into the array the fit trains
                assert layer.W is self.array

    net, zero = _net(backend), Zero()
    _fit(net, data, 2, [zero], shuffle=False)
    # The same as training one epoch, assigning, and training another.
    ref = _net(backend)
    opt = SGD(lr=0.1)
    _fit(ref, data, 1, None, shuffle=False, optimizer=opt)
    np.testing.assert_array_equal(zero.seen, ref.layers[0].W)
    ref.layers[0].W = np.zeros_like(ref.layers[0].W)
    _fit(ref, data, 1, None, shuffle=False, optimizer=opt)
    for a, b in zip(net.get_weights(), ref.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_another_thread_still_cannot_assign_during_the_callbacks(data):
    errors = []

    class Meddle(Callback):
        def on_epoch_end(self, epoch, logs=None):
            layer = self.model.layers[0]

            def other():
                try:
                    layer.W = np.zeros_like(layer.W)
                except RuntimeError as exc:
                    errors.append(str(exc))

            t = threading.Thread(target=other)
            t.start()
            t.join()

    net = _net()
    _fit(net, data, 1, [Meddle()])
    assert len(errors) == 1 and "while a fit of this layer is running" in errors[0]
    assert np.abs(net.layers[0].W).sum() > 0


def test_set_weights_is_all_or_nothing(data):
    net = _net()
    before = net.get_weights()
    bad = [w.copy() for w in before]
    bad[0] = bad[0] + 1
    bad[3] = np.full_like(bad[3], np.nan)
    with pytest.raises(ValueError, match="NaN"):
        net.set_weights(bad)
    for a, b in zip(net.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="4 parameters"):
        net.set_weights(before[:3])
    net.set_weights([w * 2 for w in before])
    np.testing.assert_array_equal(net.layers[1].W, before[2] * 2)


def test_callbacks_are_checked(data):
    net = _net()
    with pytest.raises(TypeError, match=r"callbacks\[1\]"):
        _fit(net, data, 1, [Callback(), lambda epoch: None])
    with pytest.raises(TypeError, match="callbacks must be a list"):
        _fit(net, data, 1, 3)
    _fit(net, data, 1, Recorder())  # a single callback is accepted
    assert fastnn.callbacks.EarlyStopping is EarlyStopping


# ---------------------------------------------------------------- EarlyStopping


@pytest.mark.parametrize("patience, stops_after", [(0, 3), (1, 3), (2, 4), (3, 5), (4, 10)])
def test_early_stopping_counts_patience_from_the_best_epoch(patience, stops_after, data):
    # Best at epoch 1; epochs 2-4 do not beat 4.0; epoch 5 does (3.9), then nothing. As in
    # Keras, it stops at the patience-th epoch in a row without improvement (0 acts as 1).
    values = [5, 4.0, 4.5, 4.1, 4.2, 3.9, 4.0, 4.0, 4.0, 4.0]
    stop = EarlyStopping(patience=patience)
    history = _fit(_net(), data, 10, [Script(values), stop])
    assert len(history) == stops_after
    assert stop.stopped_epoch == stops_after - 1


def test_early_stopping_min_delta(data):
    values = [5, 4.95, 4.9, 4.85, 4.8, 4.75]
    assert len(_fit(_net(), data, 6, [Script(values), EarlyStopping(patience=1)])) == 6
    stop = EarlyStopping(patience=1, min_delta=-0.1)  # the sign is ignored, as Keras
    assert len(_fit(_net(), data, 6, [Script(values), stop])) == 2 and stop.best == 5


@pytest.mark.parametrize("monitor, maximise", [("val_loss", False), ("loss", False),
                                               ("val_accuracy", True), ("accuracy", True),
                                               ("val_auc", True), ("val_mae", False)])
def test_modes_are_inferred_from_the_monitor_name(monitor, maximise, data):
    values = [1.0, 2.0, 3.0, 4.0]  # rising: improvements only when larger is better
    stop = EarlyStopping(monitor=monitor, patience=0)
    history = _fit(_net(), data, 4, [Script(values, key=monitor), stop])
    assert len(history) == (4 if maximise else 2)
    forced = EarlyStopping(monitor=monitor, patience=0, mode="min" if maximise else "max")
    assert len(_fit(_net(), data, 4, [Script(values, key=monitor), forced])) == \
        (2 if maximise else 4)


def test_bad_modes_and_settings_are_refused():
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="smallest")
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(factor=1.0)
    with pytest.raises(TypeError, match="monitor"):
        ModelCheckpoint("x.npz", monitor=None)
    with pytest.raises(TypeError, match="schedule"):
        LearningRateScheduler(0.1)


@pytest.mark.parametrize("stopped", [True, False])
def test_restore_best_weights(stopped, backend, data):
    values = [5, 3.0, 4.0, 4.5, 4.6] if stopped else [5, 3.0, 4.0, 2.0, 4.6]
    script = Script(values)
    stop = EarlyStopping(patience=2, restore_best_weights=True)
    net = _net(backend)
    history = _fit(net, data, 5, [script, stop])
    best = 1 if stopped else 3
    assert len(history) == (4 if stopped else 5) and stop.best_epoch == best
    for a, b in zip(net.get_weights(), script.weights[best]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(script.weights[best][0], script.weights[-1][0])
    # Without it, the weights are the last epoch's.
    net = _net(backend)
    script = Script(values)
    _fit(net, data, 5, [script, EarlyStopping(patience=2)])
    np.testing.assert_array_equal(net.get_weights()[0], script.weights[-1][0])


def test_a_missing_metric_warns_and_is_ignored(data):
    stop = EarlyStopping(monitor="val_loss", patience=0)
    with pytest.warns(UserWarning, match=r"'val_loss', which is not available .*accuracy, "
                                         r"loss, lr"):
        history = _fit(_net(), data, 3, [stop])
    assert len(history) == 3 and stop.stopped_epoch == 0
    with pytest.warns(UserWarning, match="not available"):
        _fit(_net(), data, 2, [ReduceLROnPlateau(monitor="val_accuracy", patience=0)])


def test_early_stopping_baseline(data):
    values = [5, 4, 4.5, 4.5, 3.5, 3.0]
    # Improvements that do not beat the baseline leave the count of waiting epochs running.
    stop = EarlyStopping(patience=2, baseline=3.0)
    assert len(_fit(_net(), data, 6, [Script(values), stop])) == 3
    assert len(_fit(_net(), data, 6, [Script(values), EarlyStopping(patience=2)])) == 4


# ---------------------------------------------------------------- ModelCheckpoint


def test_checkpoint_every_epoch_with_format_fields(tmp_path, data):
    path = tmp_path / "ckpt-{epoch:02d}-{loss:.3f}.npz"
    script = Script([1, 2, 3])
    net = _net()
    history = _fit(net, data, 3, [script, ModelCheckpoint(path)])
    names = sorted(os.listdir(tmp_path))
    assert names == [f"ckpt-{e + 1:02d}-{history.loss[e]:.3f}.npz" for e in range(3)]
    for e, name in enumerate(names):
        for a, b in zip(fastnn.load(tmp_path / name).get_weights(), script.weights[e]):
            np.testing.assert_array_equal(a, b)


def test_checkpoint_save_best_only(tmp_path, data):
    script = Script([3.0, 2.0, 2.5, 1.0, 1.5])
    seen = []

    class Look(Callback):  # after the checkpoint: what the file holds now
        def on_epoch_end(self, epoch, logs=None):
            seen.append(fastnn.load(tmp_path / "best.npz").get_weights()[0])

    _fit(_net(), data, 5, [script, ModelCheckpoint(tmp_path / "best.npz", save_best_only=True),
                           Look()])
    for epoch, best in enumerate([0, 1, 1, 3, 3]):
        np.testing.assert_array_equal(seen[epoch], script.weights[best][0])
    assert os.listdir(tmp_path) == ["best.npz"]  # atomic saves leave no temporary files


def test_checkpoint_names_a_missing_format_field(tmp_path, data):
    with pytest.raises(KeyError, match="val_loss"):
        _fit(_net(), data, 1, [ModelCheckpoint(tmp_path / "m-{val_loss:.2f}.npz")])


# ---------------------------------------------------------------- learning rates


def test_scheduler_sets_the_lr_before_each_epoch_and_history_records_it(backend, data):
    sched = LearningRateScheduler(lambda epoch, lr: 0.2 if epoch == 0 else lr * 0.5)
    net = _net(backend)
    history = _fit(net, data, 4, [sched], optimizer=SGD(lr=1.0))
    assert history.lr == [0.2, 0.1, 0.05, 0.025] and net.optimizer.lr == 0.025
    # The same as setting each lr by hand between one-epoch fits (same shuffles).
    ref, opt = _net(backend), SGD(lr=1.0)
    for lr in history.lr:
        opt.lr = lr
        _fit(ref, data, 1, None, optimizer=opt)
    for a, b in zip(net.get_weights(), ref.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_scheduler_of_one_argument_and_bad_outputs(data):
    history = _fit(_net(), data, 3, [LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))])
    assert history.lr == pytest.approx([0.1, 0.05, 0.1 / 3])
    for bad in (0.0, -1.0, float("nan"), None, "0.1"):
        with pytest.raises(ValueError, match="schedule"):
            _fit(_net(), data, 1, [LearningRateScheduler(lambda epoch, lr, bad=bad: bad)])


def test_reduce_lr_on_plateau(data):
    values = [5, 4, 4, 4, 4, 4, 4, 4, 4, 4]
    plateau = ReduceLROnPlateau(factor=0.5, patience=2, min_lr=0.02)
    history = _fit(_net(), data, 10, [Script(values), plateau], optimizer=SGD(lr=0.1))
    # Reduced at the end of epochs 3 and 5 (2 bad epochs each), then held at min_lr.
    assert history.lr == pytest.approx([0.1] * 4 + [0.05] * 2 + [0.025] * 2 + [0.02] * 2)
    cooled = ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2)
    history = _fit(_net(), data, 8, [Script(values[:8]), cooled], optimizer=SGD(lr=0.1))
    # Keras' counting: the cooldown's last epoch already counts as a bad one.
    assert history.lr == pytest.approx([0.1] * 3 + [0.05] * 2 + [0.025] * 2 + [0.0125])
    # min_delta: a gain of 1e-5 is no improvement.
    small = ReduceLROnPlateau(factor=0.5, patience=1)
    history = _fit(_net(), data, 3, [Script([1.0, 1.0 - 1e-5, 1.0 - 2e-5]), small],
                   optimizer=SGD(lr=0.1))
    assert history.lr == pytest.approx([0.1, 0.1, 0.05])


# ---------------------------------------------------------------- CSVLogger


def test_csv_logger_columns_and_rows(tmp_path, data):
    path = tmp_path / "log.csv"
    history = _fit(_net(), data, 3, [CSVLogger(path)], validation_data=data)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "accuracy", "loss", "lr", "val_accuracy", "val_loss"]
    assert [int(r[0]) for r in rows[1:]] == [0, 1, 2]
    for r, e in zip(rows[1:], range(3)):
        assert float(r[2]) == history.loss[e] and float(r[1]) == history.accuracy[e]
        assert float(r[5]) == history.val_loss[e] and float(r[3]) == 0.1
    # append=True adds rows without a second header; the default replaces the file.
    _fit(_net(), data, 2, [CSVLogger(path, append=True)], validation_data=data)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 6 and [r[0] for r in rows].count("epoch") == 1
    _fit(_net(), data, 1, [CSVLogger(path, separator=";")])
    assert open(path).read().splitlines()[0] == "epoch;accuracy;loss;lr"


def test_checkpoint_best_only_without_its_metric_warns_and_saves_nothing(tmp_path, data):
    with pytest.warns(UserWarning, match=r"ModelCheckpoint.*'val_loss'.*not saved"):
        _fit(_net(), data, 2, [ModelCheckpoint(tmp_path / "m.npz", save_best_only=True)])
    assert os.listdir(tmp_path) == []
