"""What a fit reports while it trains: History.accuracy, and the display of verbose=1/2.

- ``History.accuracy`` is counted inside the training loop from the outputs each
  batch's loss saw: with one full batch it is the accuracy of the weights before
  the step (``evaluate`` before the fit); with several batches, the sum of the
  per-batch accuracies of a replay, batch by batch.
- ``verbose=1`` draws a tqdm bar on a terminal (a fake TTY stream here) and
  nothing but plain lines elsewhere (pytest's capture); many short epochs are
  rate-limited; ``verbose=2`` prints epoch lines only.
"""

from __future__ import annotations

import copy
import io
import re
import sys
import time

import numpy as np
import pytest

import fastnn
from fastnn import SGD, Dense, Network
from fastnn import network as network_module
from fastnn import progress as progress_module
from fastnn.ops import get_ops

from conftest import gender_data

CROSS_ENTROPIES = ["labels", "onehot", "binary1", "binary3"]


def _data(kind, rng, n=60, d=4):
    X = rng.standard_normal((n, d))
    if kind == "labels":
        return X, rng.integers(0, 3, n), "softmax_cross_entropy", 3
    if kind == "onehot":
        return X, np.eye(3)[rng.integers(0, 3, n)], "softmax_cross_entropy", 3
    out = 1 if kind == "binary1" else 3
    return X, (rng.random((n, out)) < 0.5).astype(float), "binary_cross_entropy", out


@pytest.mark.parametrize("kind", CROSS_ENTROPIES)
def test_full_batch_accuracy_is_that_of_the_weights_before_the_step(kind, backend, dtype, rng):
    X, y, loss, out = _data(kind, rng)
    net = Network.mlp([4, 7, out], activation="tanh", loss=loss, dtype=dtype, seed=3,
                      backend=backend)
    before = net.evaluate(X, y)["accuracy"]
    history = net.fit(X, y, epochs=2, batch_size=None, shuffle=False, optimizer=SGD(lr=0.5))
    # Whole counts are exact; binary3's thirds are summed in another order.
    assert history.accuracy[0] == (pytest.approx(before, abs=1e-12) if kind == "binary3"
                                   else before)
    assert 0.2 < before < 0.9  # a random network: neither the count of nothing nor of all
    # The second epoch counts with the weights after the first step.
    assert len(history.accuracy) == 2 and history.accuracy[1] != before


@pytest.mark.parametrize("kind", CROSS_ENTROPIES)
def test_accuracy_over_batches_is_the_sum_of_each_batch_before_its_step(kind, backend, rng):
    X, y, loss, out = _data(kind, rng, n=50)
    net = Network.mlp([4, 6, out], activation="tanh", loss=loss, dtype="float64", seed=2,
                      backend=backend)
    replay = copy.deepcopy(net)
    history = net.fit(X, y, epochs=1, batch_size=8, shuffle=False, optimizer=SGD(lr=0.3))
    right = 0.0
    for start in range(0, 50, 8):
        xb, yb = X[start:start + 8], y[start:start + 8]
        right += replay.evaluate(xb, yb)["accuracy"] * len(xb)
        replay.fit(xb, yb, epochs=1, batch_size=8, shuffle=False, optimizer=SGD(lr=0.3))
    assert history.accuracy[0] == pytest.approx(right / 50, abs=1e-12)
    for a, b in zip(net.get_weights(), replay.get_weights()):
        np.testing.assert_array_equal(a, b)  # the replay trained the very same steps


def test_weighted_accuracy_is_the_weighted_share(backend, rng):
    X, y, loss, _ = _data("labels", rng)
    net = Network.mlp([4, 5, 3], loss=loss, seed=0, backend=backend)
    right = net.predict(X) == y
    w = np.where(right, 2.0, 0.5)  # the right ones count four times as much
    before = net.evaluate(X, y, sample_weight=w)["accuracy"]
    history = net.fit(X, y, batch_size=None, shuffle=False, sample_weight=w)
    assert history.accuracy[0] == pytest.approx(before, rel=1e-6)
    c, n = right.sum(), len(y)
    assert before == pytest.approx(2 * c / (2 * c + 0.5 * (n - c))) and 0 < c < n


def test_train_batches_counts_alike_on_both_backends(rng):
    X, y, loss, _ = _data("labels", rng, n=40)
    counts = []
    for backend in ("compiled", "numpy"):
        net = Network.mlp([4, 6, 3], loss=loss, dtype="float64", seed=0, backend=backend)
        net.optimizer = SGD(lr=0.1)
        net.optimizer.prepare(net._params())
        from fastnn.ops import TrainingPlan
        plan = TrainingPlan(net.layers, net._compute_activations, loss, net.optimizer, 40,
                            X, y.astype(np.intp))
        result = get_ops(backend).train_batches(plan, np.arange(40, dtype=np.intp), 0, 40)
        assert len(result) == 4 and result[1:3] == (40, -1)
        counts.append(result[3])
    assert counts[0] == counts[1] and counts[0] == int(counts[0]) and 0 < counts[0] < 40


def test_mse_has_no_training_accuracy(backend, rng):
    X = rng.standard_normal((30, 3))
    history = Network.mlp([3, 2], seed=0, backend=backend).fit(X, X[:, :2], epochs=2)
    assert history.accuracy == [] and "accuracy" not in history.history


# ---------------------------------------------------------------- the display


class FakeTTY(io.StringIO):
    """A terminal, as far as the progress display can tell."""

    def isatty(self) -> bool:
        return True


BAR_CHARS = re.compile("[\r\u2580-\u259f|]")  # carriage return, block elements, the bar's frame


def _slow_epochs(monkeypatch, chunk_seconds=1e-9):
    """Every chunk one batch, so that an epoch has many chunks to update between."""
    monkeypatch.setattr(network_module, "CHUNK_SECONDS", chunk_seconds)


def test_a_terminal_gets_a_bar_then_an_epoch_line(monkeypatch, rng):
    X, y = rng.standard_normal((400, 5)), rng.integers(0, 3, 400)
    _slow_epochs(monkeypatch)
    monkeypatch.setattr(progress_module, "BAR_DELAY", 0.0)
    monkeypatch.setattr(progress_module, "REFRESH_SECONDS", 0.0)
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stdout", tty)
    net = Network.mlp([5, 8, 3], loss="softmax_cross_entropy", seed=0)
    history = net.fit(X, y, epochs=2, batch_size=8, verbose=1, validation_data=(X, y))
    out = tty.getvalue()
    assert "\r" in out and "epoch 1/2:" in out
    assert re.search(r"\d+/400 \[.*samples/s, loss=\d\.\d{4}\]", out), out[:500]
    lines = [l for l in out.replace("\r", "\n").splitlines() if l.startswith("epoch ") and
             ":" not in l.split()[1]]
    assert [l.split()[1] for l in lines] == ["1/2", "2/2"]
    assert f"loss {history.loss[-1]:.4f}" in lines[-1]
    assert f"accuracy {history.accuracy[-1]:.4f}" in lines[-1]
    assert f"val_accuracy {history.val_accuracy[-1]:.4f}" in lines[-1]
    assert "samples/s" in lines[-1]


def test_the_bar_redraws_a_few_times_a_second_at_most(monkeypatch, rng):
    X, y = rng.standard_normal((1000, 5)), rng.integers(0, 3, 1000)
    _slow_epochs(monkeypatch)
    monkeypatch.setattr(progress_module, "BAR_DELAY", 0.0)
    monkeypatch.setattr(progress_module, "REFRESH_SECONDS", 0.05)
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stdout", tty)
    net = Network.mlp([5, 8, 3], loss="softmax_cross_entropy", seed=0)
    real = net._ops.train_batches

    def slow(*args):  # 250 chunks of 2 ms: half a second of epoch
        time.sleep(0.002)
        return real(*args)

    net._ops.train_batches = slow
    history = net.fit(X, y, epochs=1, batch_size=4, verbose=1)
    draws = tty.getvalue().count("samples/s, loss=")
    assert 2 <= draws <= history.epoch_time[0] / 0.05 + 3, draws


def test_a_non_terminal_gets_plain_lines_only(monkeypatch, rng, capsys):
    X, y = rng.standard_normal((400, 5)), rng.integers(0, 3, 400)
    _slow_epochs(monkeypatch)
    monkeypatch.setattr(progress_module, "BAR_DELAY", 0.0)
    monkeypatch.setattr(progress_module, "REFRESH_SECONDS", 0.0)
    monkeypatch.setattr(progress_module, "LOG_SECONDS", 0.0)  # a progress line every chunk
    Network.mlp([5, 8, 3], loss="softmax_cross_entropy", seed=0).fit(
        X, y, epochs=2, batch_size=8, verbose=1)
    out, err = capsys.readouterr()
    assert err == "" and not BAR_CHARS.search(out)
    within = [l for l in out.splitlines() if "ETA" in l]
    assert within and all(re.fullmatch(r"epoch [12]/2  [\d,]+/400 samples  [\d,]+ samples/s  "
                                       r"ETA [\d.]+ (us|ms|s)  loss \d\.\d{4}", l)
                          for l in within), within[:3]
    assert sum(l.startswith("epoch") and "ETA" not in l for l in out.splitlines()) == 2


def test_verbose_2_prints_epoch_lines_only(monkeypatch, rng, capsys):
    X, y = rng.standard_normal((400, 5)), rng.integers(0, 3, 400)
    _slow_epochs(monkeypatch)
    monkeypatch.setattr(progress_module, "LOG_SECONDS", 0.0)
    monkeypatch.setattr(progress_module, "BAR_DELAY", 0.0)
    tty = FakeTTY()  # not even on a terminal: no bar
    monkeypatch.setattr(sys, "stdout", tty)
    Network.mlp([5, 8, 3], loss="softmax_cross_entropy", seed=0).fit(
        X, y, epochs=3, batch_size=8, verbose=2)
    lines = tty.getvalue().splitlines()
    assert not BAR_CHARS.search(tty.getvalue())
    assert [l.split()[1] for l in lines] == ["1/3", "2/3", "3/3"]
    assert all("ETA" not in l for l in lines)


@pytest.mark.parametrize("verbose", [1, 2])
def test_many_short_epochs_are_summarised(verbose, capsys):
    X, y = gender_data()
    net = Network([Dense(2, 2, "sigmoid"), Dense(2, 1, "sigmoid")], dtype="float64", seed=0)
    t0 = time.perf_counter()
    history = net.fit(X, y, epochs=1000, batch_size=1, optimizer=SGD(lr=0.1), verbose=verbose)
    seconds = time.perf_counter() - t0
    lines = capsys.readouterr().out.splitlines()
    # A burst, then the rate, then the last epoch's line: far fewer than 1000.
    assert len(lines) <= progress_module.LINE_BURST + progress_module.LINE_RATE * seconds + 1
    assert len(lines) <= 100 or seconds > 20
    assert lines[0].startswith("epoch 1/1000 ") and lines[-1].startswith("epoch 1000/1000 ")
    assert f"loss {history.loss[-1]:.4f}" in lines[-1]


def test_the_last_epoch_line_comes_when_a_callback_stops_early(capsys):
    X, y = gender_data()

    class StopAt(fastnn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 600:
                self.model.stop_training = True

    net = Network([Dense(2, 2, "sigmoid"), Dense(2, 1, "sigmoid")], dtype="float64", seed=0)
    history = net.fit(X, y, epochs=1000, batch_size=1, verbose=1, callbacks=[StopAt()])
    assert len(history) == 601
    assert capsys.readouterr().out.splitlines()[-1].startswith("epoch 601/1000 ")


def test_verbose_is_checked(rng):
    X, y = rng.standard_normal((10, 2)), rng.integers(0, 2, 10)
    net = Network.mlp([2, 2], loss="softmax_cross_entropy")
    with pytest.raises(ValueError, match="verbose"):
        net.fit(X, y, verbose=-1)
    with pytest.raises(TypeError, match="verbose"):
        net.fit(X, y, verbose=1.5)


def test_format_seconds():
    f = progress_module.format_seconds
    assert [f(8.5e-5), f(0.0123), f(2.414), f(185)] == ["85 us", "12.3 ms", "2.41 s",
                                                        "3 min 05 s"]
