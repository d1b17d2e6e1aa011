#!/usr/bin/env python
"""Thread-parallel model search: GridSearchCV(n_jobs=2) on joblib's threading backend.

Eight fastnn ``MLPClassifier`` models (a 2 x 2 x 2 grid) are trained on an MNIST
subset and scored on one held-out split, so the search is exactly eight fits. The
compiled core releases the GIL for a whole epoch, so two Python threads train two
models at once, sharing X without copying it. Configurations, each timed
``--repeats`` times (interleaved, so a noisy neighbour hits them alike) and
reported by the median:

- ``sequential_1t``: n_jobs=1, each model's core on 1 thread   (the baseline)
- ``threads2_1t``:   n_jobs=2 threads, each model's core on 1 thread (``n_threads=1``)
- ``sequential_2t``: n_jobs=1, each model's core on 2 threads  (parallel inside a model)
- ``threads2_auto``: n_jobs=2 threads, the default ``n_threads=None`` (which limits fits
  on worker threads to 1 thread: the same as ``threads2_1t`` unless the default breaks)
- ``threads2_free``: n_jobs=2 threads, each model's core on all CPUs (``n_threads=-1``):
  both models' BLAS pools run at full width at once, the oversubscription the default
  guards against

It checks that every configuration finds the same validation scores, and reports wall
time (median and minimum), the speed-up over the baseline (ratio of the medians, and the
median of the per-round ratios, which a drifting background load disturbs less), and
CPU time / wall time (how many cores this process kept busy; on an idle 2-core machine
near 2 for the parallel runs, lower when other processes take CPU). Each round also
measures the machine's ceiling at that moment: two threads of GIL-free NumPy GEMMs
against one (2.0 on two idle cores).

Run from the project root, with fastnn installed::

    python benches/parallel_grid.py                # the full measurement (1-2 minutes)
    python benches/parallel_grid.py --quick        # a seconds-long smoke run

MNIST is read by ``fastnn.datasets.load_mnist`` (``$FASTNN_DATA_DIR``, else the cache
folder); ``--synthetic`` (or MNIST being unavailable) uses generated data of the same
shape. Results go to ``--out`` as ``parallel_grid.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
try:
    import fastnn
except ImportError:  # a source checkout whose compiled core was built in place
    sys.path.insert(0, str(HERE.parent / "src"))
    import fastnn

import joblib  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, ShuffleSplit  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from fastnn.sklearn import MLPClassifier  # noqa: E402

CONFIGS = {
    # name: (n_jobs, joblib backend, n_threads of each model)
    "sequential_1t": (1, "sequential", 1),
    "threads2_1t": (2, "threading", 1),
    "sequential_2t": (1, "sequential", 2),
    "threads2_auto": (2, "threading", None),
    "threads2_free": (2, "threading", -1),
}
QUIET_CEILING = 1.8  # a round counts as quiet when 2 threads of GEMM ran >= 1.8x one
GRID = {"hidden_layer_sizes": [(64,), (128,)],
        "alpha": [1e-4, 1e-3],
        "learning_rate_init": [1e-3, 3e-3]}


def load_data(n_samples: int, synthetic: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """An MNIST training subset scaled to [0, 1] in float32, or generated data."""
    if not synthetic:
        try:
            from fastnn.datasets import load_mnist

            (X, y), _ = load_mnist(download=False)
            return (X[:n_samples].astype(np.float32) / np.float32(255), y[:n_samples],
                    f"MNIST, first {n_samples} training images")
        except (ImportError, FileNotFoundError, OSError) as exc:
            print(f"MNIST unavailable ({exc}); using synthetic data", file=sys.stderr)
    rng = np.random.default_rng(0)
    centers = rng.random((10, 784), dtype=np.float32)
    y = rng.integers(0, 10, n_samples)
    X = np.clip(centers[y] + 0.3 * rng.standard_normal((n_samples, 784), dtype=np.float32), 0, 1)
    return X.astype(np.float32), y, f"synthetic, {n_samples} samples of 784 features"


def gemm_ceiling(seconds: float = 0.3) -> float:
    """Two threads' throughput over one thread's for GIL-free NumPy GEMMs (BLAS on 1 thread).

    The parallel speed-up this machine offers right now: 2.0 on two idle cores, less
    when other processes take CPU. The search's speed-up is read against it.
    """
    A = np.random.default_rng(0).random((256, 256), dtype=np.float32)
    with threadpool_limits(limits=1, user_api="blas"):
        t0, k = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds / 3:
            A @ A
            k += 1

        def work():
            for _ in range(3 * k):
                A @ A

        t0 = time.perf_counter()
        work()
        one = time.perf_counter() - t0
        threads = [threading.Thread(target=work) for _ in range(2)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        two = time.perf_counter() - t0
    return 2 * one / two


def run_search(X, y, n_jobs: int, backend: str, n_threads, epochs: int):
    """One GridSearchCV of the 8 models on one train/validation split; returns wall, CPU, scores."""
    est = MLPClassifier(max_iter=epochs, tol=0.0, n_iter_no_change=epochs + 1, random_state=0,
                        n_threads=n_threads)
    split = ShuffleSplit(n_splits=1, test_size=0.2, random_state=0)
    search = GridSearchCV(est, GRID, cv=split, n_jobs=n_jobs, refit=False)
    with warnings.catch_warnings(), joblib.parallel_backend(backend, n_jobs=n_jobs):
        warnings.simplefilter("ignore", ConvergenceWarning)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        search.fit(X, y)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return wall, cpu, search.cv_results_["mean_test_score"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=6000, help="MNIST training images")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per model")
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per configuration")
    parser.add_argument("--synthetic", action="store_true", help="generated data, not MNIST")
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--out", default=".", help="folder for parallel_grid.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.epochs, args.repeats = 1500, 1, 1

    X, y, data_desc = load_data(args.samples, args.synthetic)
    print(f"data: {data_desc}; 8 models x {args.epochs} epochs; {args.repeats} repeats; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
    run_search(X[:500], y[:500], 1, "sequential", 1, 1)  # warm-up: imports, first calls

    walls: dict[str, list[float]] = {name: [] for name in CONFIGS}
    cpus: dict[str, list[float]] = {name: [] for name in CONFIGS}
    scores: dict[str, np.ndarray] = {}
    loads, ceilings = [], []
    for _ in range(args.repeats):
        ceilings.append(gemm_ceiling())
        for name, (n_jobs, backend, n_threads) in CONFIGS.items():
            loads.append(os.getloadavg()[0])
            wall, cpu, score = run_search(X, y, n_jobs, backend, n_threads, args.epochs)
            walls[name].append(wall)
            cpus[name].append(cpu)
            scores[name] = score

    base = statistics.median(walls["sequential_1t"])
    rows = []
    print(f"\n{'configuration':15} {'median s':>9} {'min s':>7} {'speed-up':>9} {'paired':>7}"
          f" {'cpu/wall':>9}  same scores")
    for name in CONFIGS:
        med = statistics.median(walls[name])
        busy = statistics.median(c / w for c, w in zip(cpus[name], walls[name]))
        # The same round's baseline over this configuration: runs of one round are
        # seconds apart, so a neighbour's load hits both alike.
        paired = statistics.median(b / w for b, w in zip(walls["sequential_1t"], walls[name]))
        # Accuracies of the same models; 1-thread and 2-thread BLAS may round differently.
        same = bool(np.allclose(scores[name], scores["sequential_1t"], atol=2e-3))
        rows.append({"config": name, "n_jobs": CONFIGS[name][0], "backend": CONFIGS[name][1],
                     "n_threads": CONFIGS[name][2], "wall_s": walls[name],
                     "median_s": med, "speedup_vs_sequential_1t": base / med,
                     "paired_speedup_median": paired,
                     "cpu_per_wall": busy, "mean_val_accuracy": scores[name].tolist(),
                     "same_scores": same})
        print(f"{name:15} {med:9.2f} {min(walls[name]):7.2f} {base / med:9.2f} {paired:7.2f}"
              f" {busy:9.2f}  {same}")

    print(f"\nthe machine's 2-thread ceiling (NumPy GEMM on 2 threads vs 1), per round: "
          f"{', '.join(f'{c:.2f}' for c in ceilings)}; median {statistics.median(ceilings):.2f}")
    # On a shared machine, also the rounds in which two cores were really free.
    quiet = [i for i, c in enumerate(ceilings) if c >= QUIET_CEILING]
    quiet_rows = {}
    if quiet:
        print(f"rounds with a ceiling >= {QUIET_CEILING}: {len(quiet)} of {len(ceilings)}; "
              "their medians:")
        for name in CONFIGS:
            med = statistics.median(walls[name][i] for i in quiet)
            paired = statistics.median(walls["sequential_1t"][i] / walls[name][i] for i in quiet)
            quiet_rows[name] = {"median_s": med, "paired_speedup_median": paired}
            print(f"  {name:15} {med:7.2f} s  paired speed-up {paired:.2f}")
    result = {
        "benchmark": "parallel_grid",
        "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "data": data_desc, "models": 8, "epochs": args.epochs, "repeats": args.repeats,
        "grid": {k: [list(v) if isinstance(v, tuple) else v for v in vals]
                 for k, vals in GRID.items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "fastnn": fastnn.__version__,
                    "blas": [(m["internal_api"], m.get("version")) for m in threadpool_info()
                             if m["user_api"] == "blas"],
                    "load_average_during_runs": [min(loads), max(loads)]},
        "gemm_2thread_ceiling_per_round": ceilings,
        "results": rows,
        "quiet_rounds": {"ceiling_at_least": QUIET_CEILING,
                         "rounds": [i for i, c in enumerate(ceilings) if c >= QUIET_CEILING],
                         "results": quiet_rows},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "parallel_grid.json").write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out / 'parallel_grid.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
