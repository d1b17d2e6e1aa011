"""The CNN half of the MNIST benchmark (``mnist_bench.py --model cnn``).

The tutorial's small CNN, ``Conv2D(1, 10, 5, sigmoid) - MaxPool2D(2) - Flatten -
Dense(1440, 128, sigmoid) - Dense(128, 10)`` with softmax cross-entropy, trained by
mini-batch SGD with momentum on the 60,000 training images, against:

- fastnn's NumPy twin (the same network on the plain-NumPy backend);
- PyTorch eager, the same network in NCHW (``Conv2d``, ``MaxPool2d``, ``Linear``);
- the tutorial's own per-sample float64 loop (``seed_cnn.py``), timed on a few
  hundred samples and scaled to the epoch (it is far too slow for a whole one).

A dense 784-128-10 ReLU network with ``Dropout(0.2)`` after its hidden layer runs
too (compiled, NumPy twin, PyTorch), so that dropout's cost is measured.

fastnn runs with its default threads: each chunk of a fit on 1 or all of the usable
cores, whichever its thread chooser measures faster (the convolution's thin products
lose with two BLAS threads, badly so when another process takes a core). PyTorch gets
``--threads`` (default: the usable cores), as in the dense benchmark.

The floor is the epoch's GEMM-shaped FLOPs (convolution forward and weight
gradient as products, the dense products as in the dense benchmark) at the
float32 GEMM rate measured in the same run. Everything else (sigmoids, pooling,
the bias sums) runs at memory speed and is not in the floor.
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from pathlib import Path

import numpy as np

import fastnn
import mnist_bench as mb
import seed_cnn

LR, MOMENTUM = 0.05, 0.9
SCALE = 1.0 / 255.0
SEED_SAMPLES = 300          # the per-sample loop is timed on this many and scaled

CNN_CONTENDERS = ("compiled", "numpy", "torch", "seed")
DROPOUT_CONTENDERS = ("compiled", "numpy", "torch")
LABELS = {"compiled": "fastnn compiled", "numpy": "fastnn NumPy twin",
          "torch": "PyTorch eager", "seed": "tutorial per-sample loop (scaled)"}

# The CNN issue's targets, checked (never asserted) at the end of a full run.
TARGETS = {"speedup_torch_b16": 3.0, "speedup_torch_b64": 3.0, "speedup_numpy_b64": 3.0,
           "floor_ratio_b64": 2.5}


# ---------------------------------------------------------------- the networks


def fastnn_cnn(backend: str, seed: int) -> fastnn.Network:
    """The tutorial's CNN as a fastnn Network (NHWC, input_shape (28, 28, 1))."""
    layers = [fastnn.Conv2D(1, 10, 5, activation="sigmoid"), fastnn.MaxPool2D(2),
              fastnn.Flatten(), fastnn.Dense(1440, 128, activation="sigmoid"),
              fastnn.Dense(128, 10)]
    return fastnn.Network(layers, loss="softmax_cross_entropy", input_shape=(28, 28, 1),
                          seed=seed, backend=backend)


def fastnn_dropout(backend: str, seed: int) -> fastnn.Network:
    """784-128-10 (ReLU) with Dropout(0.2) after the hidden layer."""
    layers = [fastnn.Dense(784, 128, activation="relu"), fastnn.Dropout(0.2),
              fastnn.Dense(128, 10)]
    return fastnn.Network(layers, loss="softmax_cross_entropy", seed=seed, backend=backend)


def torch_model(model: str):
    from torch import nn

    if model == "cnn":
        return nn.Sequential(nn.Conv2d(1, 10, 5), nn.Sigmoid(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(1440, 128), nn.Sigmoid(), nn.Linear(128, 10))
    return nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))


def epoch_flops(model: str, n: int) -> dict:
    """GEMM-shaped FLOPs of one epoch (a multiply-add counts 2).

    CNN, per sample: the convolution forward and its weight gradient, each
    2 * 24*24 outputs * 10 filters * 5*5 taps (the first layer needs no input
    gradient); the dense layers' forward, weight gradient and (but for the first
    layer) input gradient, each 2*a*b. The dropout network counts as 784-128-10.
    """
    if model == "cnn":
        conv = 2 * 24 * 24 * 10 * 5 * 5
        dense = 3 * 2 * 1440 * 128 + 3 * 2 * 128 * 10
        per = {"conv": 2 * conv, "dense": dense}
    else:
        per = {"dense": 2 * 2 * 784 * 128 + 3 * 2 * 128 * 10}
    return {"gemm": n * sum(per.values()), "per_sample": per}


# ---------------------------------------------------------------- contenders


class FastnnTrainer(mb.FastnnTrainer):
    """The dense benchmark's fastnn trainer, on the CNN or the Dropout network."""

    def __init__(self, model, backend, data, bs, seed, threads):
        (self.X, self.y), (self.Xt, self.yt) = data
        self.bs = bs
        self.model = (fastnn_cnn if model == "cnn" else fastnn_dropout)(backend, seed)
        self.opt = fastnn.SGD(lr=LR, momentum=MOMENTUM)
        self.extra = {"inner_epoch_times": []}


class TorchTrainer(mb.TorchTrainer):
    """PyTorch eager on preloaded float32 tensors (NCHW for the CNN), SGD with momentum."""

    def __init__(self, model, data, bs, seed, threads):
        import torch

        self.torch, self.threads, self.bs = torch, threads, bs
        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        (X, y), (Xt, self.yt) = data
        shape = (-1, 1, 28, 28) if model == "cnn" else (-1, 784)
        self.model = torch_model(model)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.X = torch.from_numpy((X * np.float32(SCALE)).astype(np.float32).reshape(shape))
        self.y = torch.from_numpy(y.astype(np.int64))
        self.Xt = torch.from_numpy((Xt * np.float32(SCALE)).astype(np.float32).reshape(shape))
        self.gen = torch.Generator().manual_seed(seed)
        self.extra = {"torch_version": torch.__version__}

    def epoch(self):
        self.model.train()
        return super().epoch()

    def accuracy(self):
        self.model.eval()
        return super().accuracy()


class SeedTrainer:
    """The tutorial's per-sample loop on ``SEED_SAMPLES`` images, scaled to the epoch."""

    def __init__(self, data, bs, seed, threads):
        (X, y), (Xt, yt) = data
        self.n = X.shape[0]
        self.images = X[:SEED_SAMPLES].reshape(-1, 28, 28) / 255.0
        self.labels = y[:SEED_SAMPLES]
        self.Xt, self.yt = Xt[:500].reshape(-1, 28, 28) / 255.0, yt[:500]
        self.model = seed_cnn.SeedCNN(seed=seed)
        self.extra = {"samples_timed": len(self.images), "batch_size_used": 1}

    def epoch(self):
        t0 = time.perf_counter()
        self.model.train(self.images, self.labels, LR)
        return (time.perf_counter() - t0) * self.n / len(self.images)

    def accuracy(self):
        return None  # it trained on a few hundred images only


# ---------------------------------------------------------------- running


def run_model(model, args, data, flops, synthetic) -> list[dict]:
    """Interleaved epochs of every contender at each batch size, as rows of the table."""
    contenders = CNN_CONTENDERS if model == "cnn" else DROPOUT_CONTENDERS
    wanted = [c for c in contenders if c in args.contenders]
    skipped = {c: mb.available(c) for c in wanted}
    running = [c for c in wanted if not skipped[c]]
    n = data[0][0].shape[0]
    rows = []
    for bs in args.batch_sizes:
        trainers = {}
        for c in running:
            if c == "seed":
                if bs != args.batch_sizes[0]:
                    continue  # per-sample: its time does not depend on the batch size
                trainers[c] = SeedTrainer(data, bs, args.seed, args.threads)
            elif c == "torch":
                trainers[c] = TorchTrainer(model, data, bs, args.seed, args.threads)
            else:
                trainers[c] = FastnnTrainer(model, c, data, bs, args.seed, args.threads)
        times = mb.interleaved_epochs(trainers, args.epochs)
        base = statistics.median(times["compiled"]) if "compiled" in times else None
        for c, ts in times.items():
            med = statistics.median(ts)
            acc = None if synthetic else trainers[c].accuracy()
            rows.append({"model": model, "contender": c, "batch_size": bs, "epoch_times": ts,
                         "epoch_s": med, "samples_per_s": n / med,
                         "gflops": flops["gemm"] / med / 1e9,
                         "speedup_compiled": med / base if base else None,
                         "accuracy": acc, **trainers[c].extra})
            print(f"  {model:<7} {LABELS[c]:<34} batch {bs:>4}: {med:8.3f} s/epoch  "
                  f"accuracy {mb._percent(acc)}")
        del trainers
        gc.collect()
    for c, why in skipped.items():
        if why:
            print(f"  {model:<7} {LABELS[c]:<34} skipped: {why}")
            rows.extend({"model": model, "contender": c, "batch_size": bs, "skipped": why}
                        for bs in args.batch_sizes)
    return rows


def check_targets(rows: list[dict]) -> list[dict]:
    """The CNN issue's targets against this run (information, never an assertion)."""
    by = {(r["contender"], r["batch_size"]): r for r in rows
          if r["model"] == "cnn" and not r.get("skipped")}
    checks = []

    def add(name, value, goal, ok):
        checks.append({"target": name, "measured": value, "goal": goal,
                       "met": None if value is None else bool(ok(value))})

    for other, bs, key in (("torch", 16, "speedup_torch_b16"), ("torch", 64, "speedup_torch_b64"),
                           ("numpy", 64, "speedup_numpy_b64")):
        r = by.get((other, bs))
        if r and r["speedup_compiled"] is not None:
            add(f"CNN speed-up over {LABELS[other]} at batch {bs}", r["speedup_compiled"],
                f">= {TARGETS[key]}", lambda v, k=key: v >= TARGETS[k])
    c64 = by.get(("compiled", 64))
    if c64:
        add("CNN epoch b64 / floor", c64["floor_ratio"], f"<= {TARGETS['floor_ratio_b64']}",
            lambda v: v <= TARGETS["floor_ratio_b64"])
    return checks


def plot(report: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    models = [m for m in ("cnn", "dropout") if m in report["floors_s"]]
    fig, axes = plt.subplots(1, len(models), figsize=(7 * len(models), 5), squeeze=False)
    for ax, model in zip(axes[0], models):
        rows = [r for r in report["results"] if r["model"] == model and not r.get("skipped")]
        mb.draw_epoch_bars(ax, rows, LABELS, report["floors_s"][model], report["gemm"]["rate"])
        title = ("conv 10@5x5 - pool 2 - 1440-128-10" if model == "cnn"
                 else "784-128-10 with Dropout(0.2)")
        ax.set_title(f"MNIST {title}, {report['config']['threads']} threads", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(args, data, synthetic: bool) -> int:
    """The CNN benchmark, on ``data`` as ``mnist_bench.main`` loaded it."""
    (X, _), (Xt, _) = data
    n = X.shape[0]
    print(f"fastnn {fastnn.__version__}: the tutorial CNN and a Dropout network on {n} "
          f"training images, {args.epochs} epoch(s) per run, batch sizes {args.batch_sizes}, "
          f"{args.threads} thread(s)")
    gemm_size, gemm_repeats = (1024, 3) if args.quick else (2048, 7)
    gemm = mb.measure_gemm_rate(gemm_size, gemm_repeats)
    print(f"float32 GEMM {gemm_size}^3 through NumPy: {gemm['rate'] / 1e9:.1f} GFLOP/s")
    flops = {m: epoch_flops(m, n) for m in ("cnn", "dropout")}
    print(f"CNN epoch GEMM FLOPs {flops['cnn']['gemm']:.4g} "
          f"(per sample {flops['cnn']['per_sample']})")

    results = run_model("cnn", args, data, flops["cnn"], synthetic)
    results += run_model("dropout", args, data, flops["dropout"], synthetic)

    gemm_after = mb.measure_gemm_rate(gemm_size, gemm_repeats)
    rate = max(gemm["rate"], gemm_after["rate"])
    floors = {m: f["gemm"] / rate for m, f in flops.items()}
    print(f"GEMM rate after the runs {gemm_after['rate'] / 1e9:.1f} GFLOP/s; floors: CNN "
          f"{floors['cnn']:.3f} s, dropout network {floors['dropout']:.3f} s")
    for r in results:
        if not r.get("skipped"):
            r["floor_ratio"] = r["epoch_s"] / floors[r["model"]]
    table = mb.markdown_table(results, LABELS, network=True)
    print()
    print(table)
    checks = [] if args.quick else check_targets(results)
    if checks:
        print("\ntargets (the CNN issue), measured in this run:")
        for c in checks:
            state = {True: "met", False: "NOT met", None: "n/a"}[c["met"]]
            print(f"  {c['target']}: {mb._fmt(c['measured'], '{:.2f}')} (goal {c['goal']}) "
                  f"{state}")
    report = {
        "config": {"model": "cnn", "epochs": args.epochs, "batch_sizes": args.batch_sizes,
                   "threads": args.threads, "contenders": args.contenders, "quick": args.quick,
                   "train_samples": n, "test_samples": Xt.shape[0], "lr": LR,
                   "momentum": MOMENTUM, "seed": args.seed, "seed_samples": SEED_SAMPLES},
        "environment": mb.environment(args.threads),
        "gemm": {**gemm, "rate_after": gemm_after["rate"], "rate": rate},
        "flops": flops, "floors_s": floors, "results": results, "targets": checks,
        "table_markdown": table,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cnn_bench.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {out / 'cnn_bench.json'}", end="")
    if plot(report, out / "cnn_bench.png"):
        print(f" and {out / 'cnn_bench.png'}")
    else:
        print(" (matplotlib not installed: no chart)")
    return 0
