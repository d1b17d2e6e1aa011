#!/usr/bin/env python
"""What the progress bar of ``fit(verbose=1)`` costs: MNIST, batch 64, verbose 0 against 1.

Trains the MNIST network (784-128-10, ReLU, softmax cross-entropy, SGD lr 0.1,
uint8 input scaled on the fly) one epoch per ``fit`` call, alternating
``verbose=0`` and ``verbose=1`` (which goes first alternates too, so that drift
and warm-up fall on both alike), and reports the median time of each, the
overhead of the median, and the median of the paired overheads. The target is
at most 1%.

The bar is drawn into a pseudo-terminal (120 columns), read and discarded by a
thread, so that tqdm does all the work it does in a terminal, wherever this
runs; ``--stream devnull`` writes to os.devnull instead (a non-terminal: plain
lines). MNIST is read as ``benches/mnist_bench.py`` reads it; without it the
same synthetic stand-in is used (timing only).

Run from the project root::

    python benches/progress_overhead.py              # 60,000 samples, 9 pairs
    python benches/progress_overhead.py --quick      # a seconds-long smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

try:
    import fastnn
except ImportError:  # a source checkout whose compiled core was built in place
    sys.path.insert(0, str(HERE.parent / "src"))
    import fastnn

from fastnn.datasets import load_mnist  # noqa: E402

from mnist_bench import synthetic_mnist  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2,000 samples, 3 pairs")
    p.add_argument("--data-dir", default=None, help="folder of the MNIST IDX files")
    p.add_argument("--pairs", type=int, default=9, help="verbose 0/1 pairs of one-epoch fits")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--samples", type=int, default=None, help="training rows (default: all)")
    p.add_argument("--threads", type=int, default=None,
                   help="fastnn.set_num_threads (default: each fit chooses)")
    p.add_argument("--stream", choices=["pty", "devnull"], default="pty",
                   help="where verbose=1 writes: a pseudo-terminal (the bar) or os.devnull")
    return p.parse_args(argv)


@contextlib.contextmanager
def terminal_stdout(kind: str):
    """sys.stdout replaced by a pseudo-terminal drained by a thread, or by os.devnull."""
    if kind == "pty":
        try:
            import fcntl
            import struct
            import termios

            master, slave = os.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        except (ImportError, OSError) as exc:
            print(f"note: no pseudo-terminal ({exc}); writing to os.devnull instead")
            kind = "devnull"
    if kind == "devnull":
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            yield "os.devnull (a non-terminal: plain lines)"
        return
    written = [0]

    def drain():
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            written[0] += len(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    stream = io.TextIOWrapper(os.fdopen(slave, "wb", buffering=0), encoding="utf-8",
                              write_through=True)
    try:
        with contextlib.redirect_stdout(stream):
            yield "a pseudo-terminal of 120 columns (the bar)"
    finally:
        stream.close()
        os.close(master)
        reader.join(timeout=5)
        print(f"({written[0]:,} bytes were written to the terminal)")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        fastnn.set_num_threads(args.threads)
    try:
        (X, y), _ = load_mnist(args.data_dir, download=False)
        source = "MNIST"
    except (FileNotFoundError, ConnectionError, OSError):
        (X, y), source = synthetic_mnist(60_000, seed=1), "the synthetic MNIST-shaped stand-in"
    n = 2000 if args.quick else (args.samples or len(X))
    pairs = 3 if args.quick else args.pairs
    X, y = X[:n], y[:n]
    net = fastnn.Network.mlp([784, 128, 10], activation="relu", loss="softmax_cross_entropy",
                             seed=0)
    optimizer = fastnn.SGD(lr=0.1)
    print(f"{source}: {n:,} samples, batch {args.batch_size}, {pairs} pairs of one-epoch fits")

    def fit(verbose: int) -> float:
        t0 = time.perf_counter()
        net.fit(X, y, epochs=1, batch_size=args.batch_size, optimizer=optimizer,
                input_scale=1 / 255, verbose=verbose)
        return time.perf_counter() - t0

    fit(0)  # warm-up: the workspace, the chunk size, the thread choice
    times = {0: [], 1: []}
    with terminal_stdout(args.stream) as where:
        for i in range(pairs):
            for verbose in ((0, 1) if i % 2 == 0 else (1, 0)):
                times[verbose].append(fit(verbose))
    print(f"verbose=1 wrote to {where}")
    m0, m1 = statistics.median(times[0]), statistics.median(times[1])
    paired = statistics.median((b - a) / a for a, b in zip(times[0], times[1]))
    print(f"verbose=0: median {m0:.4f} s   (all: {', '.join(f'{t:.3f}' for t in times[0])})")
    print(f"verbose=1: median {m1:.4f} s   (all: {', '.join(f'{t:.3f}' for t in times[1])})")
    print(f"overhead: {100 * (m1 - m0) / m0:+.2f}% of the median, {100 * paired:+.2f}% as the "
          "median of the pairs (target: at most 1%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
