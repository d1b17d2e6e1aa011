"""The training engine: the NumPy backend alone, epochs in chunks, threads chosen per chunk.

- ``backend="numpy"`` imports and trains with the compiled extension blocked.
- Ctrl-C during a long compiled fit raises KeyboardInterrupt within 0.5 s and
  leaves finite, usable weights and a network that can be fitted again.
- How an epoch is cut into chunks changes nothing in the result.
- ``ThreadChooser`` follows its rules (synthetic timings, no training).
- A fit gives BLAS back the thread count it found, also when it raises.
- Optimizer state is kept per parameter.
- ``train_batches``' time limit ends a call after a whole batch; a fit advances
  by what was trained, so limited chunks change nothing in the result.
- Ctrl-C is held back to the end of a chunk on every backend (a Python
  optimizer is never stopped between two parameters); fits off the main
  thread leave the SIGINT handler alone.
- One fit at a time chooses BLAS's threads, and a count set by someone else
  during a fit is neither overridden nor "restored" at its end.
- Without the compiled core, backend="compiled" says what to do, and
  ``fastnn.sklearn`` still imports.
"""

from __future__ import annotations

import inspect
import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from conftest import RTOL, assert_close, weights_of

import fastnn
from fastnn import SGD, Adam, Dense, Network
from fastnn import network as network_module
from fastnn import threads
from fastnn._fit_guard import is_claimed
from fastnn.ops import TrainingPlan
from fastnn.optim import Optimizer
from fastnn.threads import ThreadChooser, chunk_thread_chooser, core_blas


def run_child(code: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout)


def classification(rng, n=200, d=5, c=3):
    X = rng.standard_normal((n, d))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y % c


@pytest.fixture
def restore_threads():
    """Lets a test call ``fastnn.set_num_threads``; puts everything back afterwards.

    ``set_num_threads(original)`` alone (as older tests do) resets BLAS and OpenMP
    but leaves the module's ``_num_threads`` set, which turns the per-chunk thread
    chooser off for every later fit of the session: the global is restored too.
    """
    saved_global = threads._num_threads
    original = fastnn.get_num_threads()
    blas = core_blas()
    blas_before = blas.get()
    try:
        yield
    finally:
        fastnn.set_num_threads(original)
        threads._num_threads = saved_global
        blas.set(blas_before)


# ---------------------------------------------------------------- a. NumPy without the core


# The start of a child process in which the compiled extension seems never built.
BLOCK_CORE = r'''
import importlib.abc
import sys


class BlockCore(importlib.abc.MetaPathFinder):
    """As if the compiled extension had never been built."""

    def find_spec(self, name, path=None, target=None):
        if name.startswith("fastnn._core"):
            raise ImportError(f"blocked by the test: {name}")
        return None


sys.meta_path.insert(0, BlockCore())
'''

NO_CORE_CHILD = BLOCK_CORE + r'''

import os
import tempfile

import numpy as np

import fastnn
from fastnn import Adam, Network

rng = np.random.default_rng(0)
X = rng.standard_normal((200, 4))
y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)

net = Network.mlp([4, 8, 3], activation="tanh", loss="softmax_cross_entropy", seed=0,
                  backend="numpy")
before = [p.copy() for p in net._params()]
history = net.fit(X, y, epochs=5, batch_size=16, optimizer=Adam(lr=0.01))
assert len(history.loss) == 5 and np.isfinite(history.loss).all(), history.loss
assert history.loss[-1] < history.loss[0], history.loss
assert all(not np.array_equal(a, b) for a, b in zip(before, net._params())), "it did not train"
assert all(np.isfinite(p).all() for p in net._params())

pred = net.predict(X)
assert pred.shape == (200,) and set(np.unique(pred)) <= {0, 1, 2}
proba = net.predict_proba(X)
assert np.allclose(proba.sum(axis=1), 1)
scores = net.evaluate(X, y)
assert scores["accuracy"] > 0.6, scores
loss, grads = net.loss_and_grads(X[:10], y[:10])
assert np.isfinite(loss) and [tuple(g.shape for g in per) for per in grads] == \
    [((4, 8), (8,)), ((8, 3), (3,))]

with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "model.npz")
    net.save(path)
    back = fastnn.load(path, backend="numpy")
    assert all(np.array_equal(a, b) for a, b in zip(net._params(), back._params()))
    assert np.array_equal(back.predict(X), pred)
    try:
        fastnn.load(path)  # the default backend is the compiled one
    except ImportError:
        pass
    else:
        raise AssertionError("fastnn.load with the compiled backend worked without the core")

text = net.to_json()
again = Network.from_json(text, backend="numpy")
assert again.loss == net.loss
assert all(np.allclose(a, b, rtol=1e-6, atol=0) for a, b in zip(net._params(), again._params()))
assert (again.predict(X) == pred).mean() > 0.99
assert isinstance(fastnn.get_num_threads(), int)

try:
    Network.mlp([4, 3], backend="compiled")
except ImportError as exc:
    print("compiled refused:", type(exc).__name__, exc)
else:
    raise AssertionError("backend='compiled' worked without the core")

loaded = sorted(m for m in sys.modules if m.startswith("fastnn._core"))
assert not loaded, loaded
try:  # the block itself works, so the run above really had no core
    import fastnn._core._kernels  # noqa: F401
except ImportError:
    pass
else:
    raise AssertionError("the block let fastnn._core._kernels through")
print("NUMPY BACKEND WITHOUT THE CORE: OK")
'''


def test_numpy_backend_works_with_the_compiled_core_blocked():
    proc = run_child(NO_CORE_CHILD)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "NUMPY BACKEND WITHOUT THE CORE: OK" in proc.stdout, proc.stdout + proc.stderr
    assert "compiled refused: " in proc.stdout


# ---------------------------------------------------------------- b. Ctrl-C within 0.5 s

INTERRUPT_ROWS = 120_000  # twice MNIST: one epoch takes seconds even on a fast machine
INTERRUPT_CHILD = r'''
import signal
import sys
import time

# A child of a shell without job control starts with SIGINT ignored, and Python
# then leaves it ignored: install the usual handler, as an interactive run has.
signal.signal(signal.SIGINT, signal.default_int_handler)

import numpy as np

from fastnn import Network
from fastnn._fit_guard import is_claimed
from fastnn.threads import core_blas

N = {rows}
rng = np.random.default_rng(0)
X = rng.integers(0, 256, (N, 784), dtype=np.uint8)
y = rng.integers(0, 10, N)
net = Network.mlp([784, 1024, 1024, 10], loss="softmax_cross_entropy", seed=0)
before = [p.copy() for p in net._params()]
blas_before = core_blas().get()

real = net._ops.train_batches
chunks = []  # (samples, seconds) of each completed chunk
last = []    # the latest chunk: monotonic start and end, samples, BLAS threads


def timed(plan, order, start, stop, *limit):
    t0, m0 = time.perf_counter(), time.monotonic()
    try:
        result = real(plan, order, start, stop, *limit)
    finally:
        last[:] = [m0, time.monotonic(), stop - start, core_blas().get()]
    chunks.append((result[1], time.perf_counter() - t0))
    return result


net._ops.train_batches = timed
print("ready", flush=True)
try:
    net.fit(X, y, epochs=100, batch_size=32, input_scale=1 / 255, verbose=1)
except KeyboardInterrupt:
    caught = time.monotonic()
    print("caught", repr(caught), flush=True)
else:
    print("the fit ended without KeyboardInterrupt", flush=True)
    sys.exit(3)

samples = sum(n for n, _ in chunks)
seconds = sum(s for _, s in chunks)
print("last_chunk", " ".join(repr(v) for v in last))
print("chunks", len(chunks))
print("samples_trained", samples)
print("epoch_estimate", N * seconds / max(samples, 1))
print("longest_chunk", max((s for _, s in chunks), default=0.0))
print("finite", all(np.isfinite(p).all() for p in net._params()))
print("trained", any(not np.array_equal(a, b) for a, b in zip(before, net._params())))
print("released", not any(is_claimed(o) for o in [net, net.optimizer] + net.layers))
print("blas_restored", core_blas().get() == blas_before)
pred = net.predict(X[:50], input_scale=1 / 255)
print("predict", pred.shape == (50,) and bool(((0 <= pred) & (pred < 10)).all()))
history = net.fit(X[:100], y[:100], epochs=1, batch_size=32, input_scale=1 / 255)
print("refit", len(history.loss) == 1 and bool(np.isfinite(history.loss[0])))
print("finite_after_refit", all(np.isfinite(p).all() for p in net._params()))
print("done")
'''


def _read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="compares time.monotonic() across processes (CLOCK_MONOTONIC)")
def test_ctrl_c_stops_a_long_compiled_fit_within_half_a_second():
    code = textwrap.dedent(INTERRUPT_CHILD).replace("{rows}", str(INTERRUPT_ROWS))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while "ready" not in output:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "the child ended before the fit:\n" + "\n".join(output)
            output.append(line)
        time.sleep(1.0)  # well inside the first epoch
        assert proc.poll() is None, "\n".join(output)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=180)
        reader.join(timeout=30)
        while True:
            line = lines.get_nowait() if not lines.empty() else None
            if line is None:
                break
            output.append(line)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "\n".join(output)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{text}"
    values = dict(line.split(" ", 1) for line in output if " " in line and
                  not line.startswith("epoch "))
    assert "caught" in values, text
    delay = float(values["caught"]) - sent
    began, ended, rows, blas_threads = values["last_chunk"].split()
    chunk = (f"the chunk it ended ({rows} rows on {blas_threads} BLAS threads) began "
             f"{sent - float(began):.3f} s before SIGINT and lasted "
             f"{float(ended) - float(began):.3f} s")
    print(f"Ctrl-C delay {delay:.3f} s; {chunk}; longest completed chunk "
          f"{float(values['longest_chunk']):.3f} s; epoch estimate "
          f"{float(values['epoch_estimate']):.1f} s")
    assert 0 <= delay < 0.5, f"KeyboardInterrupt came {delay:.3f} s after SIGINT; {chunk}\n{text}"
    # The signal came inside the first epoch, after some training.
    assert not [line for line in output if line.startswith("epoch ")], text
    assert 0 < int(values["samples_trained"]) < INTERRUPT_ROWS, text
    for key in ("finite", "trained", "released", "blas_restored", "predict", "refit",
                "finite_after_refit"):
        assert values.get(key) == "True", f"{key}: {values.get(key)}\n{text}"
    assert output[-1] == "done", text


# ---------------------------------------------------------------- c. chunking changes nothing

CHUNK_OPTIMIZERS = {
    "sgd_momentum": lambda: SGD(lr=0.05, momentum=0.9),
    "adam": lambda: Adam(lr=0.01),
}


def _fit_in_chunks(monkeypatch, chunk_seconds, backend, dtype, make_optimizer, X, y, epochs=4,
                   batch_size=16):
    monkeypatch.setattr(network_module, "CHUNK_SECONDS", chunk_seconds)
    net = Network.mlp([5, 16, 8, 3], activation="tanh", loss="softmax_cross_entropy",
                      dtype=dtype, seed=1, backend=backend)
    calls = []
    real = net._ops.train_batches

    def spy(plan, order, start, stop, *limit):
        result = real(plan, order, start, stop, *limit)
        calls.append((start, start + result[1]))  # what it trained (a time limit may end it early)
        return result

    net._ops.train_batches = spy
    optimizer = make_optimizer()
    history = net.fit(X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                      shuffle=True)
    return net, optimizer, history, calls


def _check_chunking(calls, n, bs, epochs, tiny):
    calls = [(start, stop) for start, stop in calls if stop > start]  # not the empty set-up call
    batches = -(-n // bs)
    if tiny:  # every chunk one batch
        assert len(calls) == epochs * batches
        assert all(stop - start <= bs for start, stop in calls)
    else:    # a few chunks in the first epoch, then one per epoch
        assert len(calls) <= epochs + 6, calls


@pytest.mark.parametrize("opt", sorted(CHUNK_OPTIMIZERS))
def test_chunk_size_does_not_change_float64_results(opt, backend, rng, monkeypatch,
                                                    restore_threads):
    fastnn.set_num_threads(1)  # the same BLAS kernels for every chunk: bit equality holds
    X, y = classification(rng, n=200)
    runs = {}
    for name, seconds in (("tiny", 1e-9), ("huge", 1e9)):
        runs[name] = _fit_in_chunks(monkeypatch, seconds, backend, "float64",
                                    CHUNK_OPTIMIZERS[opt], X, y)
        _check_chunking(runs[name][3], 200, 16, 4, name == "tiny")
    (net_a, opt_a, hist_a, _), (net_b, opt_b, hist_b, _) = runs["tiny"], runs["huge"]
    for a, b in zip(net_a._params(), net_b._params()):
        np.testing.assert_array_equal(a, b)
    assert len(opt_a.state) == len(opt_b.state) == 6
    for per_a, per_b in zip(opt_a.state, opt_b.state):
        assert len(per_a) == len(per_b) == opt_a.n_state
        for a, b in zip(per_a, per_b):
            np.testing.assert_array_equal(a, b)
    assert getattr(opt_a, "step_count", None) == getattr(opt_b, "step_count", None)
    if opt == "adam":
        assert opt_a.step_count == 4 * 13
    # The epoch loss is summed per chunk: only the grouping of the sum differs.
    np.testing.assert_allclose(hist_a.loss, hist_b.loss, rtol=1e-12)
    assert not np.array_equal(net_a.layers[0].W,
                              Network.mlp([5, 16, 8, 3], activation="tanh", dtype="float64",
                                          seed=1).layers[0].W)  # it trained


@pytest.mark.parametrize("opt", sorted(CHUNK_OPTIMIZERS))
def test_chunk_size_changes_float32_results_only_by_rounding(opt, backend, rng, monkeypatch):
    monkeypatch.setattr(threads, "_num_threads", None)  # the default: threads chosen per chunk
    X, y = classification(rng, n=200)
    runs = {}
    for name, seconds in (("tiny", 1e-9), ("huge", 1e9)):
        runs[name] = _fit_in_chunks(monkeypatch, seconds, backend, "float32",
                                    CHUNK_OPTIMIZERS[opt], X, y)
        if name == "tiny":
            _check_chunking(runs[name][3], 200, 16, 4, True)
    (net_a, opt_a, hist_a, _), (net_b, opt_b, hist_b, _) = runs["tiny"], runs["huge"]
    for a, b in zip(net_a._params() + [s for per in opt_a.state for s in per],
                    net_b._params() + [s for per in opt_b.state for s in per]):
        assert a.dtype == np.float32
        assert_close(a, b, np.float32)
    assert getattr(opt_a, "step_count", None) == getattr(opt_b, "step_count", None)
    assert_close(hist_a.loss, hist_b.loss, np.float32)


# ---------------------------------------------------------------- d. ThreadChooser

PACE = 1.0  # seconds per 100 samples of the best count


def _settled(max_threads=2, fast=2, ratio=0.5) -> ThreadChooser:
    """A chooser past its initial tries, with ``fast`` the faster count by ``ratio``."""
    chooser = ThreadChooser(max_threads)
    slow = 1 if fast == max_threads else max_threads
    for _ in chooser.options:
        n, fraction = chooser.next()
        assert fraction == ThreadChooser.PROBE_FRACTION
        chooser.record(n, PACE * (ratio if n == fast else 1.0), 100)
    assert chooser.best == fast and slow in chooser.options
    return chooser


def _run_best(chooser: ThreadChooser, chunks: int, pace: float) -> None:
    """Run ``chunks`` chunks of the best count, each at ``pace``; none may be a probe."""
    for _ in range(chunks):
        n, fraction = chooser.next()
        assert (n, fraction) == (chooser.best, 1.0)
        chooser.record(n, pace, 100)


def test_chooser_tries_one_then_all_threads_and_keeps_the_faster():
    chooser = ThreadChooser(2)
    assert chooser.options == (1, 2)
    assert chooser.next() == (1, ThreadChooser.PROBE_FRACTION)
    chooser.record(1, 1.0, 100)
    assert chooser.next() == (2, ThreadChooser.PROBE_FRACTION)
    chooser.record(2, 0.6, 100)
    assert chooser.best == 2
    assert chooser.next() == (2, 1.0)

    chooser = ThreadChooser(4)
    assert chooser.next() == (1, ThreadChooser.PROBE_FRACTION)
    chooser.record(1, 0.6, 100)
    assert chooser.next() == (4, ThreadChooser.PROBE_FRACTION)
    chooser.record(4, 1.0, 100)
    assert chooser.best == 1
    assert chooser.next() == (1, 1.0)


def test_chooser_ignores_chunks_without_samples_or_too_short_to_time():
    chooser = ThreadChooser(2)
    chooser.record(1, 5.0, 0)
    assert chooser.next() == (1, ThreadChooser.PROBE_FRACTION)
    too_short = getattr(ThreadChooser, "MIN_SECONDS", 0.0) / 2
    if too_short > 0:
        chooser.record(1, too_short, 100)
        assert chooser.next() == (1, ThreadChooser.PROBE_FRACTION)  # tried again
    chooser.record(1, 1.0, 100)
    assert chooser.next() == (2, ThreadChooser.PROBE_FRACTION)


@pytest.mark.parametrize("fast", [1, 2])
def test_losing_probes_come_every_interval_and_double_it_up_to_the_maximum(fast):
    chooser = _settled(fast=fast)
    other = 2 if fast == 1 else 1
    interval = ThreadChooser.MIN_INTERVAL
    for _ in range(8):
        _run_best(chooser, interval, PACE * 0.5)
        assert chooser.next() == (other, ThreadChooser.PROBE_FRACTION)
        chooser.record(other, PACE, 100)  # loses
        assert chooser.best == fast
        interval = min(2 * interval, ThreadChooser.MAX_INTERVAL)
        assert chooser.interval == interval
    assert interval == ThreadChooser.MAX_INTERVAL


def test_a_winning_probe_switches_and_resets_the_interval():
    chooser = _settled(fast=1)
    for _ in range(3):  # let the interval grow first
        _run_best(chooser, chooser.interval, PACE * 0.5)
        n, _ = chooser.next()
        chooser.record(n, PACE, 100)
    assert chooser.interval == min(8 * ThreadChooser.MIN_INTERVAL, ThreadChooser.MAX_INTERVAL)
    _run_best(chooser, chooser.interval, PACE * 0.5)
    # Within 5%: not a win, the interval still doubles.
    assert chooser.next()[0] == 2
    longer = min(2 * chooser.interval, ThreadChooser.MAX_INTERVAL)
    chooser.record(2, PACE * 0.5 * 0.96, 100)
    assert chooser.best == 1 and chooser.interval == longer
    _run_best(chooser, chooser.interval, PACE * 0.5)
    assert chooser.next()[0] == 2
    chooser.record(2, PACE * 0.5 * 0.9, 100)  # more than 5% faster
    assert chooser.best == 2 and chooser.interval == ThreadChooser.MIN_INTERVAL
    _run_best(chooser, ThreadChooser.MIN_INTERVAL, PACE * 0.45)
    assert chooser.next() == (1, ThreadChooser.PROBE_FRACTION)


@pytest.mark.parametrize("slowdown, probes_now", [(1.6, True), (1.4, False)])
def test_a_sudden_slowdown_of_the_best_brings_the_probe_forward(slowdown, probes_now):
    chooser = _settled(fast=2)
    for _ in range(2):  # a long interval, so that the next probe is far away
        _run_best(chooser, chooser.interval, PACE * 0.5)
        chooser.record(chooser.next()[0], PACE, 100)
    assert chooser.interval == min(4 * ThreadChooser.MIN_INTERVAL, ThreadChooser.MAX_INTERVAL)
    _run_best(chooser, 2, PACE * 0.5)
    n, fraction = chooser.next()
    assert (n, fraction) == (2, 1.0)
    chooser.record(2, PACE * 0.5 * slowdown, 100)  # another process started competing
    if probes_now:
        assert chooser.next() == (1, ThreadChooser.PROBE_FRACTION)
        chooser.record(1, PACE * 0.5, 100)  # 1 thread is now faster than 2's slowed pace
        assert chooser.best == 1
    else:
        assert chooser.next() == (2, 1.0)


def test_one_thread_never_asks_for_more():
    chooser = ThreadChooser(1)
    assert chooser.options == (1,)
    seen = set()
    for i in range(300):
        n, fraction = chooser.next()
        seen.add(n)
        chooser.record(n, PACE * (5.0 if i % 7 == 0 else 1.0), 100)  # slowdowns too
    assert seen == {1}
    assert chooser.next() == (1, 1.0)


def test_no_chooser_once_the_thread_count_is_set(restore_threads, monkeypatch):
    blas = core_blas()
    if not blas.available:
        pytest.skip("the core's BLAS thread count cannot be controlled here")
    monkeypatch.setattr(threads, "_num_threads", None)
    blas.set(2)
    chooser = chunk_thread_chooser()
    assert chooser is not None and chooser.options == (1, 2)
    blas.set(1)
    assert chunk_thread_chooser() is None  # one thread: nothing to choose
    blas.set(2)
    fastnn.set_num_threads(2)
    assert chunk_thread_chooser() is None
    fastnn.set_num_threads(1)
    assert chunk_thread_chooser() is None
    # And a fit then leaves BLAS alone.
    calls = []
    monkeypatch.setattr(blas, "set", lambda n: calls.append(n))
    X, y = classification(np.random.default_rng(0))
    Network.mlp([5, 8, 3], loss="softmax_cross_entropy", seed=0).fit(X, y, epochs=2)
    assert calls == []


# ---------------------------------------------------------------- e. BLAS threads given back


@pytest.fixture
def blas_at_two(monkeypatch):
    """BLAS at 2 threads and no set_num_threads: a fit chooses between 1 and 2.

    Yields the list of every count the fit sets.
    """
    blas = core_blas()
    if not blas.available:
        pytest.skip("the core's BLAS thread count cannot be controlled here")
    monkeypatch.setattr(threads, "_num_threads", None)
    before = blas.get()
    blas.set(2)
    if blas.get() != 2:
        blas.set(before)
        pytest.skip("BLAS does not take 2 threads here")
    calls: list[int] = []
    real_set = blas.set

    def spy(n):
        calls.append(int(n))
        real_set(n)

    monkeypatch.setattr(blas, "set", spy)
    try:
        yield calls
    finally:
        monkeypatch.undo()
        blas.set(before)


class InterruptingSGD(Optimizer):
    """Plain SGD whose ``at``-th update raises KeyboardInterrupt, as Ctrl-C there would."""

    def __init__(self, at: int, lr: float = 0.05) -> None:
        super().__init__()
        self.at, self.lr, self.updates = at, lr, 0

    def update(self, ops, params, grads, decay) -> None:
        self.updates += 1
        if self.updates == self.at:
            raise KeyboardInterrupt
        for p, g in zip(params, grads):
            p -= self.lr * g


def _assert_given_back(net, calls):
    assert 1 in calls, f"the chooser did not run: {calls}"
    assert core_blas().get() == 2
    assert calls[-1] == 2, calls
    assert not any(is_claimed(o) for o in [net, net.optimizer] + net.layers)


def test_fit_gives_back_the_blas_threads_it_found(blas_at_two, backend, rng):
    X, y = classification(rng, n=400)
    net = Network.mlp([5, 32, 3], loss="softmax_cross_entropy", seed=0, backend=backend)
    net.fit(X, y, epochs=3, batch_size=8)
    _assert_given_back(net, blas_at_two)
    blas_at_two.clear()
    net.fit(X, y, epochs=1, batch_size=8)  # a second fit, with what the first learnt
    assert core_blas().get() == 2 and (not blas_at_two or blas_at_two[-1] == 2)


def test_fit_gives_back_the_blas_threads_when_the_last_chunk_used_one(blas_at_two, monkeypatch,
                                                                      rng):
    class OneThread(ThreadChooser):
        def next(self):
            return 1, 1.0

    monkeypatch.setattr(network_module, "chunk_thread_chooser", lambda: OneThread(2))
    X, y = classification(rng)
    net = Network.mlp([5, 8, 3], loss="softmax_cross_entropy", seed=0)
    net.fit(X, y, epochs=2)
    _assert_given_back(net, blas_at_two)


@pytest.mark.parametrize("case", ["inf_loss_first_batch", "diverges"])
def test_fit_gives_back_the_blas_threads_when_it_diverges(case, blas_at_two, backend, rng):
    if case == "inf_loss_first_batch":
        X, y = np.full((64, 3), 1e200), np.zeros(64)  # the first batch's loss overflows
        net = Network.mlp([3, 1], loss="mse", dtype="float64", seed=0, backend=backend)
        opt = SGD(lr=0.1)
    else:
        X, y = rng.standard_normal((64, 5)), rng.standard_normal((64, 1))
        net = Network.mlp([5, 8, 1], activation="tanh", loss="mse", seed=0, backend=backend)
        opt = SGD(lr=1e6)
    with np.errstate(all="ignore"):
        with pytest.raises(FloatingPointError, match="NaN or infinite"):
            net.fit(X, y, epochs=5, batch_size=4, optimizer=opt)
    _assert_given_back(net, blas_at_two)
    assert all(np.isfinite(p).all() for p in net._params())


@pytest.mark.parametrize("at", [1, 7])
def test_fit_gives_back_the_blas_threads_when_interrupted(at, blas_at_two, backend, rng):
    X, y = classification(rng)
    net = Network.mlp([5, 8, 3], loss="softmax_cross_entropy", seed=0, backend=backend)
    opt = InterruptingSGD(at)
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, epochs=3, batch_size=8, optimizer=opt)
    assert opt.updates == at
    _assert_given_back(net, blas_at_two)
    net.fit(X, y, epochs=1, batch_size=8, optimizer=SGD(lr=0.01))  # claims were released
    assert core_blas().get() == 2


# ---------------------------------------------------------------- f. state per parameter


@pytest.mark.parametrize("opt, n_state", [("adam", 2), ("sgd_momentum", 1), ("sgd", 0)])
def test_optimizer_state_is_kept_per_parameter(opt, n_state, rng):
    make = {"adam": lambda: Adam(lr=0.01), "sgd_momentum": lambda: SGD(lr=0.05, momentum=0.9),
            "sgd": lambda: SGD(lr=0.05)}[opt]
    X, y = classification(rng)
    states = {}
    for backend in ("compiled", "numpy"):
        net = Network.mlp([5, 8, 6, 3], activation="tanh", loss="softmax_cross_entropy",
                          dtype="float64", seed=0, backend=backend)
        optimizer = make()
        net.fit(X, y, epochs=2, batch_size=16, optimizer=optimizer)
        params = weights_of(net)
        assert len(params) == 6
        assert len(optimizer.state) == 6
        for p, per_param in zip(params, optimizer.state):
            assert isinstance(per_param, list) and len(per_param) == n_state
            for s in per_param:
                assert isinstance(s, np.ndarray)
                assert s.shape == p.shape and s.dtype == p.dtype
                assert np.isfinite(s).all() and np.abs(s).max() > 0  # the fit wrote it
        arrays = [s for per in optimizer.state for s in per] + params
        assert len({id(a) for a in arrays}) == len(arrays), "state arrays are shared"
        assert not any(np.shares_memory(a, b) for i, a in enumerate(arrays)
                       for b in arrays[i + 1:])
        states[backend] = (params, optimizer)
    (p_c, o_c), (p_n, o_n) = states["compiled"], states["numpy"]
    # The compiled loop writes each parameter's own state: the same as NumPy's.
    for a, b in zip(p_c + [s for per in o_c.state for s in per],
                    p_n + [s for per in o_n.state for s in per]):
        assert_close(a, b, np.float64, rtol=RTOL[np.dtype(np.float64)] * 10)
    assert getattr(o_c, "step_count", None) == getattr(o_n, "step_count", None)


# ---------------------------------------------------------------- g. a time limit per call


def _plan(backend, opt, X, y, bs=8):
    """A float64 network, its optimizer and the TrainingPlan over (X, y), as fit builds them."""
    net = Network.mlp([X.shape[1], 16, 3], activation="tanh", loss="softmax_cross_entropy",
                      dtype="float64", seed=0, backend=backend)
    optimizer = CHUNK_OPTIMIZERS[opt]()
    optimizer.prepare(net._params())
    plan = TrainingPlan(net.layers, net._compute_activations, net.loss, optimizer, bs, X, y)
    return net, optimizer, plan


def _labelled(rng, n):
    X, y = classification(rng, n=n)
    return np.ascontiguousarray(X), y.astype(np.intp), rng.permutation(n).astype(np.intp)


def test_train_batches_time_limit_ends_the_call_after_one_batch(backend, rng, restore_threads):
    fastnn.set_num_threads(1)
    X, y, order = _labelled(rng, 2000)
    # (start, stop, samples of the one batch): a full batch, one mid-order, a short last one.
    for start, stop, first in ((0, 2000, 8), (800, 2000, 8), (1992, 1997, 5)):
        net, _, plan = _plan(backend, "sgd_momentum", X, y)
        total, done, bad, _ = net._ops.train_batches(plan, order, start, stop, 1e-9)
        assert (done, bad) == (first, -1), (start, stop)
        assert np.isfinite(total) and total > 0
        # Exactly that batch was trained: the same as a call that asks for it alone.
        alone, _, plan_alone = _plan(backend, "sgd_momentum", X, y)
        assert alone._ops.train_batches(plan_alone, order, start, start + first)[1:3] == (first, -1)
        for a, b in zip(net._params(), alone._params()):
            np.testing.assert_array_equal(a, b)
    for limit in ((), (0.0,), (-1.0,), (1e9,)):  # no limit, 0, negative, generous: all of it
        net, _, plan = _plan(backend, "sgd_momentum", X, y)
        assert net._ops.train_batches(plan, order, 0, 2000, *limit)[1:3] == (2000, -1), limit


@pytest.mark.parametrize("limit", [1e-9, 2e-4])
@pytest.mark.parametrize("opt", sorted(CHUNK_OPTIMIZERS))
def test_time_limited_calls_advancing_by_n_done_equal_one_call(opt, limit, backend, rng,
                                                                restore_threads):
    fastnn.set_num_threads(1)  # the same BLAS kernels in every call: bit equality holds
    X, y, order = _labelled(rng, 2000)
    net_a, opt_a, plan_a = _plan(backend, opt, X, y)
    total_a, done_a, bad_a, _ = net_a._ops.train_batches(plan_a, order, 0, 2000)
    assert (done_a, bad_a) == (2000, -1)
    net_b, opt_b, plan_b = _plan(backend, opt, X, y)
    total_b, pos, dones = 0.0, 0, []
    while pos < 2000:
        total, done, bad, _ = net_b._ops.train_batches(plan_b, order, pos, 2000, limit)
        assert bad == -1 and done > 0 and done % 8 == 0, (pos, done)
        total_b += total
        pos += done
        dones.append(done)
    assert pos == 2000
    if limit == 1e-9:
        assert dones == [8] * 250
    for a, b in zip(net_a._params() + [s for per in opt_a.state for s in per],
                    net_b._params() + [s for per in opt_b.state for s in per]):
        np.testing.assert_array_equal(a, b)
    assert getattr(opt_a, "step_count", None) == getattr(opt_b, "step_count", None)
    if opt == "adam":
        assert opt_b.step_count == 250
    np.testing.assert_allclose(total_b, total_a, rtol=1e-12)


def test_fit_passes_the_time_limit_and_advances_by_what_was_trained(backend, rng,
                                                                     restore_threads):
    """Every chunk cut to its first batch by the limit: the fit still trains each batch once."""
    fastnn.set_num_threads(1)
    X, y = classification(rng, n=200)

    def fit(cut: bool):
        net = Network.mlp([5, 16, 8, 3], activation="tanh", loss="softmax_cross_entropy",
                          dtype="float64", seed=1, backend=backend)
        real = net._ops.train_batches
        calls = []  # (start, stop, the limit passed, samples trained)

        def spy(plan, order, start, stop, *limit):
            if cut and stop > start:  # as if each batch took longer than the limit
                result = real(plan, order, start, stop, 1e-9)
            else:
                result = real(plan, order, start, stop, *limit)
            calls.append((start, stop, limit, result[1]))
            return result

        net._ops.train_batches = spy
        optimizer = Adam(lr=0.01)
        history = net.fit(X, y, epochs=3, batch_size=16, optimizer=optimizer)
        return net, optimizer, history, [c for c in calls if c[1] > c[0]]

    net_a, opt_a, hist_a, calls_a = fit(cut=False)
    net_b, opt_b, hist_b, calls_b = fit(cut=True)
    assert {c[2] for c in calls_a + calls_b} == {(3 * network_module.CHUNK_SECONDS,)}
    assert all(done == min(16, stop - start) for start, stop, _, done in calls_b)
    assert any(stop - start > done for start, stop, _, done in calls_b), "no chunk was cut"
    # Each chunk starts where the last one's trained samples ended: 13 batches an epoch.
    starts = [start for start, *_ in calls_b]
    assert starts == list(range(0, 200, 16)) * 3
    assert sum(done for *_, done in calls_b) == 3 * 200
    for a, b in zip(net_a._params() + [s for per in opt_a.state for s in per],
                    net_b._params() + [s for per in opt_b.state for s in per]):
        np.testing.assert_array_equal(a, b)
    assert opt_a.step_count == opt_b.step_count == 3 * 13
    np.testing.assert_allclose(hist_b.loss, hist_a.loss, rtol=1e-12)


# ---------------------------------------------------------------- h. Ctrl-C at batch boundaries


class SignallingSGD(Optimizer):
    """Plain SGD, one parameter at a time, that sends itself SIGINT within its 3rd batch.

    The signal comes between the 2nd and 3rd parameters' updates; it counts
    each parameter's updates, and notes the SIGINT handler it saw.
    """

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.lr, self.batches, self.counts, self.handler_during = lr, 0, [], None

    def update(self, ops, params, grads, decay) -> None:
        if not self.counts:
            self.counts = [0] * len(params)
        self.batches += 1
        for i, (p, g) in enumerate(zip(params, grads)):
            p -= self.lr * g
            self.counts[i] += 1
            if self.batches == 3 and i == 1:
                self.handler_during = signal.getsignal(signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.02)  # a handler that raises would raise here


SIGINT_CHILD = r'''
import json
import os
import signal
import time
import traceback

# As in an interactive run (a child of a shell without job control ignores SIGINT).
signal.signal(signal.SIGINT, signal.default_int_handler)

import numpy as np

from fastnn import Network
from fastnn._fit_guard import is_claimed
from fastnn.optim import Optimizer

{optimizer_source}

rng = np.random.default_rng(0)
X = rng.standard_normal((400, 5))
y = (X[:, 0] + X[:, 1] > 0).astype(int)
net = Network.mlp([5, 8, 2], loss="softmax_cross_entropy", seed=0, backend={backend!r})
opt = SignallingSGD()
out = {{}}
try:
    net.fit(X, y, epochs=4, batch_size=8, optimizer=opt)
except KeyboardInterrupt as exc:
    out["counts"] = list(opt.counts)
    out["batches"] = opt.batches
    out["raised_in"] = [f.name for f in traceback.extract_tb(exc.__traceback__)]
out["finite"] = all(bool(np.isfinite(p).all()) for p in net._params())
out["handler_during_callable"] = callable(opt.handler_during)
out["handler_during_is_default"] = opt.handler_during is signal.default_int_handler
out["handler_after_is_default"] = signal.getsignal(signal.SIGINT) is signal.default_int_handler
out["released"] = not any(is_claimed(o) for o in [net, net.optimizer] + net.layers)
print("RESULT " + json.dumps(out))
'''


def _class_source(cls) -> str:
    return textwrap.dedent(inspect.getsource(cls))


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform.startswith("win"),
                    reason="sends SIGINT with os.kill")
def test_ctrl_c_in_a_python_optimizer_stops_at_a_batch_boundary(backend):
    """NumPy backend, or a custom optimizer on the compiled one: every parameter is updated."""
    code = textwrap.dedent(SIGINT_CHILD).format(optimizer_source=_class_source(SignallingSGD),
                                                backend=backend)
    proc = run_child(code, timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout + proc.stderr
    out = json.loads(lines[-1][len("RESULT "):])
    assert "counts" in out, f"the fit ended without KeyboardInterrupt: {out}"
    batches = out["batches"]
    assert 3 <= batches < 4 * 50, out
    assert out["counts"] == [batches] * 4, f"stopped between two parameters' updates: {out}"
    assert "update" not in out["raised_in"], out  # raised after the chunk, not inside it
    assert out["handler_during_callable"] and not out["handler_during_is_default"], out
    for key in ("finite", "handler_after_is_default", "released"):
        assert out[key] is True, f"{key}: {out}"


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform.startswith("win"),
                    reason="sends SIGINT with os.kill")
def test_a_custom_sigint_handler_runs_once_after_the_chunk_and_the_fit_goes_on(backend, rng):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are set on the main thread only")
    X, y = classification(rng, n=400)
    net = Network.mlp([5, 8, 3], loss="softmax_cross_entropy", seed=0, backend=backend)
    opt = SignallingSGD()
    seen = []

    def mine(signum, frame):  # does not raise: the fit continues
        seen.append((signum, list(opt.counts), opt.batches))

    previous = signal.signal(signal.SIGINT, mine)
    try:
        history = net.fit(X, y, epochs=2, batch_size=8, optimizer=opt)
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert after is mine
    assert len(seen) == 1, seen
    signum, counts, batches = seen[0]
    assert signum == signal.SIGINT
    assert batches >= 3 and counts == [batches] * 4, seen  # called between batches
    assert callable(opt.handler_during) and opt.handler_during is not mine
    assert opt.batches == 2 * 50 and opt.counts == [100] * 4
    assert len(history.loss) == 2 and np.isfinite(history.loss).all()


class HandlerWatchingSGD(Optimizer):
    """Plain SGD that notes the SIGINT handler at each update."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.lr, self.handlers = lr, set()

    def update(self, ops, params, grads, decay) -> None:
        self.handlers.add(signal.getsignal(signal.SIGINT))
        for p, g in zip(params, grads):
            p -= self.lr * g


def test_a_fit_off_the_main_thread_leaves_the_sigint_handler_alone(backend, rng, monkeypatch):
    X, y = classification(rng, n=200)
    before = signal.getsignal(signal.SIGINT)
    installs = []
    real_signal = signal.signal

    def spy(*args):
        installs.append(threading.current_thread().name)
        return real_signal(*args)

    monkeypatch.setattr(signal, "signal", spy)
    results: dict = {}

    def work():
        try:
            for optimizer in (HandlerWatchingSGD(), SGD(lr=0.05)):  # Python, then fused
                net = Network.mlp([5, 8, 3], loss="softmax_cross_entropy", seed=0,
                                  backend=backend)
                results.setdefault("histories", []).append(
                    net.fit(X, y, epochs=2, batch_size=8, optimizer=optimizer))
                results.setdefault("optimizers", []).append(optimizer)
        except BaseException as exc:  # noqa: BLE001 - reported below
            results["error"] = exc

    worker = threading.Thread(target=work, name="fit-worker")
    worker.start()
    worker.join(60)
    assert not worker.is_alive()
    assert "error" not in results, repr(results.get("error"))
    assert all(len(h.loss) == 2 and np.isfinite(h.loss).all() for h in results["histories"])
    assert installs == []
    assert results["optimizers"][0].handlers == {before}
    assert signal.getsignal(signal.SIGINT) is before


# ---------------------------------------------------------------- i. one chooser at a time


@pytest.fixture
def chooser_on(blas_at_two):
    """``blas_at_two``, on a machine with at least 2 CPUs."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: nothing to choose")
    return blas_at_two


class AlwaysTwo(ThreadChooser):
    """A chooser that runs every chunk on 2 threads (until it stops choosing)."""

    def next(self):
        return (0, 1.0) if getattr(self, "abandoned", False) else (2, 1.0)


def _always_two():
    """``chunk_thread_chooser``, with ``AlwaysTwo`` where it would choose."""
    return AlwaysTwo(2) if threads.chunk_thread_chooser() is not None else None


class WaitingSGD(Optimizer):
    """Plain SGD whose updates wait until ``release`` is set; ``started`` tells the first."""

    def __init__(self, started: threading.Event, release: threading.Event) -> None:
        super().__init__()
        self.started, self.release, self.lr = started, release, 0.05

    def update(self, ops, params, grads, decay) -> None:
        self.started.set()
        if not self.release.wait(30):
            raise RuntimeError("never released")
        for p, g in zip(params, grads):
            p -= self.lr * g


def test_one_fit_at_a_time_chooses_the_blas_threads(chooser_on, backend, rng, monkeypatch):
    blas = core_blas()
    monkeypatch.setattr(network_module, "chunk_thread_chooser", _always_two)
    begun = []  # (thread, what ThreadChooser.begin returned)
    real_begin = ThreadChooser.begin

    def begin(self):
        ok = real_begin(self)
        begun.append((threading.current_thread().name, ok))
        return ok

    monkeypatch.setattr(ThreadChooser, "begin", begin)
    sets = []  # (thread, count) of every BLAS count set
    inner_set = blas.set

    def set_spy(n):
        sets.append((threading.current_thread().name, int(n)))
        inner_set(n)

    monkeypatch.setattr(blas, "set", set_spy)
    X, y = classification(rng, n=200)
    started, release = threading.Event(), threading.Event()
    errors: dict = {}

    def run(name, net, **kwargs):
        try:
            net.fit(X, y, epochs=2, batch_size=8, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors[name] = exc

    net_a = Network.mlp([5, 8, 3], loss="softmax_cross_entropy", seed=0, backend=backend)
    net_b = Network.mlp([5, 8, 3], loss="softmax_cross_entropy", seed=1, backend=backend)
    # A holds its fit open inside its first batch, with the chooser taken and BLAS at 2.
    a = threading.Thread(target=run, args=("A", net_a),
                         kwargs={"optimizer": WaitingSGD(started, release)}, name="A")
    a.start()
    try:
        while not started.wait(0.05) and a.is_alive():
            pass
        assert started.is_set(), f"fit A did not start: {errors}"
        assert blas.get() == 2
        b = threading.Thread(target=run, args=("B", net_b), name="B")  # a default, fused fit
        b.start()
        b.join(60)
        assert not b.is_alive()
    finally:
        release.set()
        a.join(60)
    assert not a.is_alive()
    assert not errors, errors
    assert begun == [("A", True), ("B", False)], begun
    assert [n for t, n in sets if t == "B"] == [], sets
    assert [n for t, n in sets if t == "A"][-1] == 2  # A gave back what it found
    assert blas.get() == 2
    assert not threads._choosing.locked()
    # With A done, the next fit chooses again.
    begun.clear()
    net_b.fit(X, y, epochs=1, batch_size=8)
    assert [ok for _, ok in begun] == [True]
    assert not threads._choosing.locked()


class ForeignLimitSGD(Optimizer):
    """Plain SGD that, at its 2nd batch, sets BLAS to ``n`` threads as another thread would.

    It sets the library directly (``CoreBLAS.set``, not the instance's spy): a
    threadpoolctl limit entered on another thread while the fit runs.
    """

    def __init__(self, n: int = 1) -> None:
        super().__init__()
        self.n, self.lr, self.batches, self.sets_before = n, 0.05, 0, None
        self.spy_calls: list = []

    def update(self, ops, params, grads, decay) -> None:
        self.batches += 1
        if self.batches == 2:
            self.sets_before = len(self.spy_calls)
            _set_as_another_thread(core_blas(), self.n)
        for p, g in zip(params, grads):
            p -= self.lr * g


def _set_as_another_thread(blas, n):
    """Set BLAS's count through the class's own method, past any spy on the instance."""
    type(blas).set(blas, n)


@pytest.mark.parametrize("via", ["optimizer", "between_chunks"])
def test_a_count_set_by_another_thread_during_a_fit_is_kept(via, chooser_on, backend, rng,
                                                            monkeypatch):
    calls = chooser_on  # every count the fit sets
    blas = core_blas()
    monkeypatch.setattr(network_module, "chunk_thread_chooser", _always_two)
    monkeypatch.setattr(network_module, "CHUNK_SECONDS", 1e-9)  # a chunk a batch: many after
    X, y = classification(rng, n=200)
    net = Network.mlp([5, 8, 3], loss="softmax_cross_entropy", seed=0, backend=backend)
    mark = []
    if via == "optimizer":
        optimizer = ForeignLimitSGD(1)
        optimizer.spy_calls = calls
    else:  # a fused optimizer; the limit comes between two chunks
        optimizer = SGD(lr=0.05)
        real = net._ops.train_batches
        chunks = []

        def train_then_limit(plan, order, start, stop, *limit):
            result = real(plan, order, start, stop, *limit)
            if stop > start:
                chunks.append(result[1])
                if len(chunks) == 2:
                    mark.append(len(calls))
                    _set_as_another_thread(blas, 1)
            return result

        net._ops.train_batches = train_then_limit
    history = net.fit(X, y, epochs=3, batch_size=8, optimizer=optimizer)
    before = optimizer.sets_before if via == "optimizer" else mark[0]
    assert before is not None and calls[:before] == [2] * before and before >= 1, calls
    assert calls[before:] == [], f"the fit set BLAS after another thread's limit: {calls}"
    assert blas.get() == 1, "the fit overrode (or 'restored' over) another thread's limit"
    assert getattr(net._choosers[8], "abandoned", None) is True
    assert len(history.loss) == 3 and np.isfinite(history.loss).all()
    assert not threads._choosing.locked()
    # With BLAS at 1 the next fit has nothing to choose; back at 2 it chooses again.
    calls.clear()
    net.fit(X, y, epochs=1, batch_size=8, optimizer=SGD(lr=0.05))
    assert calls == [] and blas.get() == 1
    _set_as_another_thread(blas, 2)
    net.fit(X, y, epochs=1, batch_size=8, optimizer=SGD(lr=0.05))
    assert calls and set(calls) == {2} and blas.get() == 2
    assert not net._choosers[8].abandoned


class AlwaysOne(ThreadChooser):
    """A chooser that runs every chunk on 1 thread, as the real one does on its first tries."""

    def next(self):
        return (0, 1.0) if getattr(self, "abandoned", False) else (1, 1.0)


def test_a_limit_held_on_another_thread_is_kept_even_at_the_choosers_own_count(
        chooser_on, rng, monkeypatch):
    """fastnn.sklearn's n_threads limit (1) entered on another thread while the chooser runs
    on 1 thread: the value alone cannot tell the limit from the chooser's own setting, so
    the limit is declared (threads.limit_held) and the fit leaves the count to it.
    """
    from fastnn.threads import limit_held

    blas = core_blas()
    monkeypatch.setattr(network_module, "chunk_thread_chooser",
                        lambda: AlwaysOne(2) if threads.chunk_thread_chooser() else None)
    monkeypatch.setattr(network_module, "CHUNK_SECONDS", 1e-9)
    X, y = classification(rng, n=200)
    net = Network.mlp([5, 8, 3], loss="softmax_cross_entropy", seed=0)
    real = net._ops.train_batches
    chunks, entered, release = [], threading.Event(), threading.Event()

    def other_thread():
        with limit_held():
            _set_as_another_thread(blas, 1)
            entered.set()
            release.wait(30)

    other = threading.Thread(target=other_thread)

    def train_then_limit(plan, order, start, stop, *limit):
        result = real(plan, order, start, stop, *limit)
        if stop > start:
            chunks.append(result[1])
            if len(chunks) == 2:
                other.start()
                assert entered.wait(30)
        return result

    net._ops.train_batches = train_then_limit
    try:
        net.fit(X, y, epochs=2, batch_size=8, optimizer=SGD(lr=0.05))
        assert blas.get() == 1, "the fit set BLAS back to 2 under another thread's limit of 1"
        assert net._choosers[8].abandoned
    finally:
        release.set()
        other.join(30)


# ---------------------------------------------------------------- j. without the core: clear errors

NO_CORE_ERRORS_CHILD = BLOCK_CORE + r'''
import json
import traceback

import fastnn
from fastnn import Dense, Network
from fastnn import threads

out = {}


def refusal(make):
    """The ImportError's message, or what happened instead."""
    try:
        make()
    except ImportError as exc:
        return str(exc)
    except Exception as exc:
        return f"not an ImportError: {exc!r}"
    return "no error"


def check(name, fn):
    try:
        out[name] = fn()
    except Exception:
        out[name] = "FAILED: " + traceback.format_exc(limit=3)


def compiled_ops():
    import fastnn.ops
    return fastnn.ops.CompiledOps


out["Network(backend='compiled')"] = refusal(lambda: Network([Dense(4, 3)], backend="compiled"))
out["Network() (compiled by default)"] = refusal(lambda: Network([Dense(4, 3)]))
out["Network.mlp(backend='compiled')"] = refusal(lambda: Network.mlp([4, 3], backend="compiled"))
out["fastnn.ops.CompiledOps"] = refusal(compiled_ops)
check("omp", lambda: [threads.omp_max_threads(), threads.omp_set_num_threads(2)])


def use_sklearn():
    try:
        import sklearn.base
    except ImportError:
        return "no scikit-learn"
    import fastnn.sklearn
    from fastnn.sklearn import MLPClassifier, MLPRegressor, _thread_limits

    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3)
    assert clf.get_params()["hidden_layer_sizes"] == (8,)
    sklearn.base.clone(clf)
    MLPRegressor(hidden_layer_sizes=(4,))
    with _thread_limits(1):  # BLAS's limit through threadpoolctl; OpenMP's is a no-op
        pass
    return "ok"


check("sklearn", use_sklearn)
out["core modules loaded"] = sorted(m for m in sys.modules if m.startswith("fastnn._core"))
print("RESULT " + json.dumps(out))
'''


def test_without_the_core_compiled_says_what_to_do_and_fastnn_sklearn_imports():
    proc = run_child(NO_CORE_ERRORS_CHILD)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout + proc.stderr
    out = json.loads(lines[-1][len("RESULT "):])
    for what in ("Network(backend='compiled')", "Network() (compiled by default)",
                 "Network.mlp(backend='compiled')", "fastnn.ops.CompiledOps"):
        message = out[what]
        assert "backend='numpy'" in message and "pip install" in message, f"{what}: {message}"
    assert out["omp"] == [1, None], out["omp"]
    try:
        import sklearn  # noqa: F401
    except ImportError:
        assert out["sklearn"] == "no scikit-learn"
    else:
        assert out["sklearn"] == "ok", out["sklearn"]
    assert out["core modules loaded"] == []


# ---------------------------------------------------------------- k. no tries of more threads without a free core


class FakeIdle:
    """Idle CPUs as a test dictates, one value per call of the chooser's next()."""

    def __init__(self, values):
        self.values = list(values)

    def since_last_call(self):
        return self.values.pop(0) if self.values else 1.0


def test_more_threads_are_tried_only_while_a_core_is_free():
    chooser = ThreadChooser(2, watch_load=True)
    chooser.idle = FakeIdle([None, 0.1, 0.2, 0.9])
    assert chooser.next() == (1, chooser.PROBE_FRACTION)   # first try: 1 thread
    chooser.record(1, 0.01, 100)
    assert chooser.next() == (1, 1.0)                      # no core free: no 2-thread try
    chooser.record(1, 0.1, 1000)
    assert chooser.next() == (1, 1.0)
    chooser.record(1, 0.1, 1000)
    assert chooser.next() == (2, chooser.PROBE_FRACTION)   # a core is free: now try 2


def test_probes_of_more_threads_wait_for_a_free_core():
    chooser = ThreadChooser(2, watch_load=True)
    chooser.idle = FakeIdle([None, 1.0])
    for n, seconds in ((1, 0.01), (2, 0.02)):                # 2 threads lose the tries
        assert chooser.next()[0] == n
        chooser.record(n, seconds, 100)
    assert chooser.best == 1
    chooser.idle = FakeIdle([0.0] * (chooser.interval + 3))
    for _ in range(chooser.interval + 2):                    # busy: no probe of 2 threads
        assert chooser.next() == (1, 1.0)
        chooser.record(1, 0.1, 1000)
    chooser.idle = FakeIdle([])                              # free again (1.0)
    for _ in range(chooser.interval + 1):
        n, _fraction = chooser.next()
        if n == 2:
            break
        chooser.record(1, 0.1, 1000)
    assert n == 2


def test_idle_cores_reads_the_machine_or_says_none():
    from fastnn.threads import IdleCores

    idle = IdleCores()
    assert idle.since_last_call() is None                   # no earlier call to compare with
    time.sleep(0.05)
    spare = idle.since_last_call()
    if os.path.exists("/proc/stat"):
        assert spare is not None and 0.0 <= spare <= (os.cpu_count() or 1) + 0.5
    else:
        assert spare is None


def test_training_flushes_subnormals_and_restores_the_callers_mode():
    # Momentum decaying towards zero for an input that is almost always 0 passes
    # through the subnormal range, where arithmetic is many times slower; the
    # compiled chunk flushes such values to zero (as TensorFlow does), the NumPy
    # twin keeps IEEE arithmetic, and the caller's mode is restored after the fit.
    tiny = np.finfo(np.float32).tiny

    def velocity(backend):
        n = 140
        X = np.zeros((n, 2), np.float32)
        X[0, 0] = 1.0                       # feature 0 is seen by the first step only
        X[:, 1] = np.linspace(-1, 1, n)
        y = np.linspace(0, 1, n).astype(np.float32)
        net = Network([Dense(2, 1)], seed=0, backend=backend)
        opt = SGD(lr=0.1, momentum=0.5)     # 0.5**139 of a gradient: subnormal in float32
        net.fit(X, y, epochs=1, batch_size=1, shuffle=False, optimizer=opt)
        return opt.state[0][0].ravel()

    twin, compiled = velocity("numpy"), velocity("compiled")
    assert 0 < abs(twin[0]) < tiny           # the case does reach the subnormal range
    assert compiled[0] == 0.0
    np.testing.assert_allclose(compiled[1], twin[1], rtol=1e-5)
    assert np.float32(1e-38) * np.float32(0.01) != 0  # IEEE subnormals again after the fit
