#!/usr/bin/env python
"""Threads under contention: fastnn's default thread setting against 1 thread and all
threads, on a quiet machine and next to CPU-bound competitor processes.

What it measures: the epoch time of the MNIST benchmark's network, 784-128-10 (ReLU,
softmax cross-entropy), plain SGD with learning rate 0.1, uint8 inputs scaled on the fly
by ``input_scale=1/255``, float32, compiled backend, at each batch size (default 16 and
64), for three thread settings (``--model cnn``: the tutorial's CNN of
``benches/cnn_bench.py`` instead, whose chunks share their image kernels with the core's
own helper thread when they run on several threads):

- ``default``: the library's own choice (``fastnn.set_num_threads`` is never called);
- ``1``: ``fastnn.set_num_threads(1)``;
- ``all``: ``fastnn.set_num_threads(os.cpu_count())``;

each under 0, 1 and 2 competitors: processes that this script starts, which each keep
one CPU busy with a pure-Python loop, and which it stops again when the load level is
done.

How: every measurement is a fresh child process (this script with a hidden flag), so
that no thread setting leaks into the next one. The child loads the data, builds the
network with a fixed seed, trains a warm-up part (``--warmup-samples``), then times one
``net.fit(..., epochs=1)`` over ``--epoch-samples`` samples and prints the time as JSON.
At each load level the settings take turns (round-robin, starting one setting later each
round, so that a slow phase of the machine hits all of them), for ``--rounds`` rounds;
the tables give the medians. They are checked against the targets of issue 9, item 5:

- under 1 or 2 competitors, the default epoch is at most 1.25x the 1-thread epoch;
- with no competitor, the default epoch is within 5% of the best of 1 thread and all.

The competitors are always stopped: on return, on error and on Ctrl-C (terminate, then
kill if they linger). Should this script die without cleaning up, each competitor still
stops by itself within a fraction of a second once its parent is gone, and in any case
after a fixed deadline.

Run from the project root, with fastnn installed::

    python benches/contention.py                   # the full measurement (several minutes)
    python benches/contention.py --quick           # a seconds-long smoke run

MNIST is read by ``fastnn.datasets.load_mnist`` (``--data-dir``, else ``$FASTNN_DATA_DIR``,
else the cache folder; never downloaded here). Without it, a deterministic synthetic
data set of MNIST's shape and dtype is used: the timings do not depend on the digits.
Results go to ``--out`` (default ``bench-out/contention.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

SIZES = [784, 128, 10]
SEED = 0
N_TRAIN = 60_000
SETTINGS = ("default", "1", "all")  # the three thread settings, in their first-round order
# The targets of issue 9, item 5.
LOADED_MAX_RATIO = 1.25  # default / 1 thread, under 1 or 2 competitors
QUIET_MAX_RATIO = 1.05  # default / best of (1 thread, all threads), no competitor
COMPETITOR_CHECK_ITERATIONS = 100_000  # pure-Python additions between two watchdog checks
SETTLE_S = 1.0  # lets freshly started competitors reach full speed


def setting_label(setting: str) -> str:
    """The column heading of a thread setting."""
    return {"default": "default", "1": "1 thread"}.get(setting, f"all ({os.cpu_count()})")


# ---------------------------------------------------------------- data


def find_mnist(data_dir: str | None) -> str | None:
    """None when MNIST can be loaded from ``data_dir`` (or its defaults), else why not."""
    from mnist_bench import load_mnist

    try:
        load_mnist(data_dir, download=False)
    except (FileNotFoundError, OSError, ValueError) as exc:
        return str(exc)
    return None


# ---------------------------------------------------------------- child processes


def compete(parent_pid: int, max_seconds: float) -> None:
    """Keep one CPU busy with pure-Python work: a competitor process's whole life.

    It stops by itself as soon as its parent is gone (it is then re-parented, and
    ``os.getppid()`` changes) or after ``max_seconds``, whichever comes first, so that
    it can never outlive the benchmark by more than a few milliseconds, nor run forever.

    Parameters
    ----------
    parent_pid : int
        The process id of the benchmark that started it.
    max_seconds : float
        The deadline, counted from the start.
    """
    deadline = time.monotonic() + max_seconds
    x = 0
    try:
        while os.getppid() == parent_pid and time.monotonic() < deadline:
            for _ in range(COMPETITOR_CHECK_ITERATIONS):
                x += 1
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: leave quietly
        pass


def measure(spec: dict) -> dict:
    """Time one epoch in this process, for one thread setting and batch size.

    Parameters
    ----------
    spec : dict
        ``setting`` ("default", "1" or "all"), ``batch_size``, ``epoch_samples``,
        ``warmup_samples``, ``data`` ("mnist" or "synthetic") and ``data_dir``.

    Returns
    -------
    dict
        ``seconds`` (wall time of the timed ``fit``, seen from outside), ``inner_seconds``
        (the epoch time that ``fit`` itself reports), ``cpu_seconds`` (CPU time of this
        process's threads during the timed ``fit``; far above ``seconds`` means threads
        spin) and ``threads_reported`` (``fastnn.get_num_threads()`` afterwards).
    """
    import gc

    from mnist_bench import LR, SCALE, load_mnist, synthetic_mnist  # (also finds an in-place build)

    import fastnn

    if spec["data"] == "mnist":
        (X, y), _ = load_mnist(spec["data_dir"], download=False)
    else:
        X, y = synthetic_mnist(N_TRAIN)
    if spec["setting"] == "1":
        fastnn.set_num_threads(1)
    elif spec["setting"] == "all":
        fastnn.set_num_threads(os.cpu_count())
    if spec.get("model") == "cnn":
        from cnn_bench import fastnn_cnn

        net = fastnn_cnn("compiled", SEED)
    else:
        net = fastnn.Network.mlp(SIZES, activation="relu", loss="softmax_cross_entropy",
                                 dtype="float32", seed=SEED, backend="compiled")
    opt = fastnn.SGD(lr=LR)
    bs, warm, n = spec["batch_size"], spec["warmup_samples"], spec["epoch_samples"]
    if warm:
        net.fit(X[:warm], y[:warm], epochs=1, batch_size=bs, optimizer=opt, input_scale=SCALE)
    gc.collect()
    cpu0, t0 = time.process_time(), time.perf_counter()
    hist = net.fit(X[:n], y[:n], epochs=1, batch_size=bs, optimizer=opt, input_scale=SCALE)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    inner = getattr(hist, "epoch_time", None)
    return {"seconds": seconds, "inner_seconds": inner[0] if inner else None,
            "cpu_seconds": cpu, "threads_reported": fastnn.get_num_threads()}


def run_measurement(spec: dict, timeout: float) -> dict:
    """Run :func:`measure` in a fresh child process and return its result.

    A child that takes longer than ``timeout`` seconds is killed, and the measurement
    counts as ``seconds = inf`` with ``timed_out`` set: under contention that is itself
    a result. A child that fails raises ``RuntimeError`` with its error output.
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_measure", json.dumps(spec)]
    try:
        # On a timeout or Ctrl-C, subprocess.run kills the child before re-raising.
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"seconds": math.inf, "timed_out": True}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"measurement {spec} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr.strip()}")
    return {**json.loads(lines[-1]), "timed_out": False}


class Competitors:
    """``n`` CPU-bound competitor processes, running for the length of a ``with`` block.

    Each one runs :func:`compete` (this script with a hidden flag). On leaving the
    block, however it is left, they are terminated and waited for (killed if they do
    not end within a few seconds).

    Parameters
    ----------
    n : int
        Number of competitors; 0 starts none.
    max_seconds : float
        Each competitor's own deadline (see :func:`compete`).
    """

    def __init__(self, n: int, max_seconds: float):
        self.n, self.max_seconds = n, max_seconds
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "Competitors":
        try:
            for _ in range(self.n):
                self.procs.append(subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve()), "--_compete",
                     str(os.getpid()), str(self.max_seconds)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
            if self.n:
                time.sleep(SETTLE_S)
                self.check()
        except BaseException:
            self.stop()
            raise
        return self

    def check(self) -> None:
        """Raise ``RuntimeError`` if a competitor has ended early."""
        dead = [p.returncode for p in self.procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{len(dead)} competitor(s) ended early (exit codes {dead})")

    def stop(self) -> None:
        """Terminate every competitor and wait for it (kill it if it lingers)."""
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []

    def __exit__(self, *exc) -> None:
        self.stop()


# ---------------------------------------------------------------- report


def summarize(measurements: list[dict], batch_sizes, loads) -> list[dict]:
    """Medians per (batch size, load level, setting) and the two ratios of the targets."""
    rows = []
    for bs in batch_sizes:
        for load in loads:
            med = {}
            for s in SETTINGS:
                times = [m["seconds"] for m in measurements
                         if m["batch_size"] == bs and m["competitors"] == load
                         and m["setting"] == s]
                med[s] = statistics.median(times) if times else math.nan
            best = min(med["1"], med["all"])
            rows.append({"batch_size": bs, "competitors": load, "median_s": med,
                         "default_over_1": med["default"] / med["1"],
                         "default_over_best": med["default"] / best})
    return rows


def _fmt_s(v: float) -> str:
    return "timed out" if math.isinf(v) else f"{v:.3f}"


def _fmt_ratio(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.2f}x"


def markdown_table(rows: list[dict], batch_size: int) -> str:
    """The markdown table of one batch size: a row per load level."""
    lines = ["| competitors | " + " | ".join(f"{setting_label(s)} s" for s in SETTINGS)
             + " | default / 1 thread | default / best of (1, all) |",
             "|" + "---|" * (len(SETTINGS) + 3)]
    for r in rows:
        if r["batch_size"] == batch_size:
            lines.append(f"| {r['competitors']} | "
                         + " | ".join(_fmt_s(r["median_s"][s]) for s in SETTINGS)
                         + f" | {_fmt_ratio(r['default_over_1'])}"
                         f" | {_fmt_ratio(r['default_over_best'])} |")
    return "\n".join(lines)


def check_targets(rows: list[dict]) -> list[dict]:
    """The targets of issue 9, item 5, against this run (information, never an assertion)."""
    checks = []
    for r in rows:
        if r["competitors"] == 0:
            name = f"batch {r['batch_size']}, no competitor: default / best of (1, all)"
            value, goal = r["default_over_best"], QUIET_MAX_RATIO
        else:
            name = (f"batch {r['batch_size']}, {r['competitors']} competitor(s): "
                    "default / 1 thread")
            value, goal = r["default_over_1"], LOADED_MAX_RATIO
        met = None if math.isnan(value) else bool(value <= goal)
        checks.append({"target": name, "measured": None if math.isnan(value) else value,
                       "goal": f"<= {goal}", "met": met})
    return checks


def _json_safe(obj):
    """Replace inf and nan (not valid JSON) by None, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj


# ---------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("mlp", "cnn"), default="mlp",
                   help="the dense 784-128-10 network (default) or the tutorial's CNN")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64],
                   help="batch sizes (default 16 64)")
    p.add_argument("--competitors", type=int, nargs="+", default=[0, 1, 2],
                   help="load levels: numbers of CPU-bound competitor processes "
                        "(default 0 1 2)")
    p.add_argument("--rounds", type=int, default=None,
                   help="rounds per load level; the medians are over them "
                        "(default 5; 1 with --quick)")
    p.add_argument("--epoch-samples", type=int, default=None,
                   help=f"samples of the timed epoch (default {N_TRAIN:,}; 2,000 with --quick)")
    p.add_argument("--warmup-samples", type=int, default=None,
                   help="samples trained before the timed epoch (default 4,000; 500 with "
                        "--quick)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds after which a measurement is killed and counts as timed "
                        "out (default 300; 60 with --quick)")
    p.add_argument("--data-dir", default=None,
                   help="folder of the MNIST files (default $FASTNN_DATA_DIR, else the cache)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2,000 samples, 1 round (other defaults unchanged)")
    p.add_argument("--out", default=os.path.join("bench-out", "contention.json"),
                   help="JSON results file (default bench-out/contention.json)")
    # Hidden: the two kinds of child process this script starts.
    p.add_argument("--_measure", metavar="SPEC", help=argparse.SUPPRESS)
    p.add_argument("--_compete", nargs=2, metavar=("PARENT_PID", "MAX_SECONDS"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    quick = args.quick
    for name, full, small in (("rounds", 5, 1), ("epoch_samples", N_TRAIN, 2000),
                              ("warmup_samples", 4000, 500), ("timeout", 300.0, 60.0)):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    if not 1 <= args.epoch_samples <= N_TRAIN or not 0 <= args.warmup_samples <= N_TRAIN:
        p.error(f"--epoch-samples must lie in [1, {N_TRAIN}] and --warmup-samples in "
                f"[0, {N_TRAIN}]")
    if min(args.batch_sizes) < 1 or min(args.competitors) < 0 or args.timeout <= 0:
        p.error("--batch-sizes and --timeout must be positive, --competitors non-negative")
    args.competitors = sorted(set(args.competitors))
    args.batch_sizes = list(dict.fromkeys(args.batch_sizes))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args._compete:
        compete(int(args._compete[0]), float(args._compete[1]))
        return 0
    sys.path.insert(0, str(HERE))  # mnist_bench, also when run from elsewhere
    if args._measure:
        print(json.dumps(measure(json.loads(args._measure))))
        return 0

    from mnist_bench import environment  # also finds an in-place build of fastnn

    import fastnn

    # A SIGTERM unwinds like Ctrl-C, so that leaving the `with` block stops the competitors.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    why = find_mnist(args.data_dir)
    data = "mnist" if why is None else "synthetic"
    per_level = args.rounds * len(args.batch_sizes) * len(SETTINGS)
    model = "the tutorial's CNN" if args.model == "cnn" else "-".join(map(str, SIZES))
    print(f"fastnn {fastnn.__version__}; MNIST {model}, float32, compiled; "
          f"{os.cpu_count()} CPUs; batch sizes {args.batch_sizes}; competitors "
          f"{args.competitors}; {args.rounds} round(s); {args.epoch_samples:,} timed samples "
          f"after {args.warmup_samples:,} warm-up")
    if why is not None:
        print("note: MNIST not found, using synthetic MNIST-shaped uint8 data "
              f"({why.split('. ')[0]})")
    if args.quick:
        print("note: quick run: too short for the targets to mean anything")

    env = {**environment(None), "threads": "per measurement: see the settings"}
    measurements, levels = [], []
    try:
        for load in args.competitors:
            # Each competitor's own deadline: every measurement of the level timing out.
            with Competitors(load, max_seconds=per_level * args.timeout + 60) as comp:
                la = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
                levels.append({"competitors": load, "load_average_at_start": la})
                print(f"\n{load} competitor(s)" + ("" if la is None else
                                                   f" (load average {la:.2f})"))
                for rnd in range(args.rounds):
                    for bs in args.batch_sizes:
                        k = rnd % len(SETTINGS)
                        for setting in SETTINGS[k:] + SETTINGS[:k]:
                            spec = {"setting": setting, "batch_size": bs, "model": args.model,
                                    "epoch_samples": args.epoch_samples,
                                    "warmup_samples": args.warmup_samples,
                                    "data": data, "data_dir": args.data_dir}
                            res = run_measurement(spec, args.timeout)
                            comp.check()  # the load really was there for the whole run
                            measurements.append({"competitors": load, "round": rnd,
                                                 "batch_size": bs, "setting": setting, **res})
                            extra = ("" if res["timed_out"] else
                                     f"  (cpu {res['cpu_seconds']:.3f} s, "
                                     f"{res['threads_reported']} thread(s) reported)")
                            print(f"  round {rnd + 1}/{args.rounds}  batch {bs:>3}  "
                                  f"{setting_label(setting):<9} {_fmt_s(res['seconds']):>9} s"
                                  + extra, flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: competitors stopped, nothing written", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # a measurement failed, or a competitor died
        print(f"\nerror: {exc}\ncompetitors stopped, nothing written", file=sys.stderr)
        return 1

    rows = summarize(measurements, args.batch_sizes, args.competitors)
    tables = {bs: markdown_table(rows, bs) for bs in args.batch_sizes}
    for bs, table in tables.items():
        print(f"\nbatch {bs}: median epoch s over {args.rounds} round(s), "
              f"{args.epoch_samples:,} samples\n\n{table}")
    checks = check_targets(rows)
    print("\ntargets (issue 9, item 5):")
    for c in checks:
        state = {True: "met", False: "NOT met", None: "n/a"}[c["met"]]
        measured = "n/a" if c["measured"] is None else f"{c['measured']:.2f}x"
        print(f"  {c['target']}: {measured} (goal {c['goal']}x) {state}")
    missed = sum(c["met"] is False for c in checks)
    unknown = sum(c["met"] is None for c in checks)
    print(f"{len(checks) - missed - unknown} of {len(checks)} targets met"
          + (f", {missed} NOT met" if missed else "") + (f", {unknown} n/a" if unknown else ""))

    report = {
        "config": {"model": args.model, "sizes": SIZES, "seed": SEED, "dtype": "float32",
                   "backend": "compiled",
                   "batch_sizes": args.batch_sizes, "competitors": args.competitors,
                   "rounds": args.rounds, "epoch_samples": args.epoch_samples,
                   "warmup_samples": args.warmup_samples, "timeout_s": args.timeout,
                   "quick": args.quick, "data": data, "all_threads": os.cpu_count()},
        "environment": env, "levels": levels, "measurements": measurements,
        "summary": rows, "targets": checks,
        "tables_markdown": {str(bs): t for bs, t in tables.items()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_json_safe(report), indent=2, default=str))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
