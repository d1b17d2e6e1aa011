"""The packed dense kernels against the BLAS path, per product and per epoch (1 thread).

Short interleaved A/B timings, medians of many repetitions:

- ``products``: the two products of layer 1 of the MNIST network (784 x 128) at
  batch 16 / 64 / 256. Forward: the core's BLAS forward (``sgemm`` + bias + ReLU)
  against the packed kernel (bias and ReLU in its output step). Weight gradient with
  the SGD step folded in: SciPy's ``sgemm`` with ``alpha = -lr, beta = 1`` on W
  against the packed kernel writing the update into the panels. Both sides are
  called from Python, through entry points of similar overhead (printed: the same
  calls at 1 x 1 x 1).
- ``epoch``: ``fit`` of the 784-128-10 ReLU network on 10,000 random uint8 images
  (MNIST-shaped), one epoch per call, the levels round-robin.

Usage: ``python benches/packed_kernels.py [products|epoch] [--reps N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy.linalg import blas

import fastnn
from fastnn._core import _kernels, _packed

LEVEL_CODE = {"avx2": 1, "avx512": 2}


def _aligned(size: int) -> np.ndarray:
    """A zeroed float32 array whose data starts on a 64-byte line, as the core's panels do."""
    buf = np.zeros(size + 16, np.float32)
    skip = (-buf.ctypes.data % 64) // 4
    return buf[skip:skip + size]


def _median_us(fn, inner: int) -> float:
    t = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t) / inner * 1e6


def products(reps: int, threads: int) -> None:
    """Per-product medians (us), BLAS and every kernel level, interleaved."""
    rng = np.random.default_rng(0)
    levels = [name for name in fastnn.available_kernel_levels() if name != "blas"]
    print("product            batch  blas us  " + "  ".join(f"{n:>8} us" for n in levels))
    for n_in, n_out, batches in ((784, 128, (16, 64, 256)), (1, 1, (1,))):
        for n in batches:
            # Every array on 64-byte lines, as TrainingPlan allocates the core's buffers.
            X = _aligned(n * n_in).reshape(n, n_in)
            X[...] = rng.random((n, n_in), dtype=np.float32)
            dZ = _aligned(n * n_out).reshape(n, n_out)
            dZ[...] = rng.standard_normal((n, n_out))
            W = _aligned(n_in * n_out).reshape(n_in, n_out)
            W[...] = rng.standard_normal((n_in, n_out)) * 0.05
            b = np.zeros(n_out, np.float32)
            Y = _aligned(n * n_out).reshape(n, n_out)
            P = _aligned(_packed.packed_size_of(n_in, n_out))
            _packed.pack_weights(W, P)
            G = _aligned(P.size)
            Wt = W.T            # F-contiguous: sgemm updates it in place
            inner = max(5, 20000 // (n * 8 + 10))

            # Arguments bound as defaults: each closure keeps this round's arrays.
            def blas_fwd(X=X, W=W, b=b, Y=Y):
                _kernels.dense_forward(X, W, b, Y, 3)

            def blas_wg(X=X, dZ=dZ, Wt=Wt):
                blas.sgemm(-1e-6, dZ.T, X.T, 1.0, Wt, trans_b=1, overwrite_c=1)

            runs = {"fwd": {"blas": blas_fwd}, "wgrad": {"blas": blas_wg}}
            for name in levels:
                code = LEVEL_CODE[name]
                runs["fwd"][name] = (lambda code=code, X=X, P=P, b=b, Y=Y:
                                     _packed.forward(X, P, b, Y, True, code, threads))
                runs["wgrad"][name] = (lambda code=code, X=X, dZ=dZ, P=P, G=G:
                                       _packed.weight_gradient(X, dZ, P, G, 1, 1e-6, 0.0, 0.0,
                                                               code, threads))
            for product, fns in runs.items():
                times = {name: [] for name in fns}
                for _ in range(reps):
                    for name, fn in fns.items():
                        times[name].append(_median_us(fn, inner))
                med = {name: statistics.median(t) for name, t in times.items()}
                print(f"{product:6} {n_in:4}x{n_out:<4}   {n:5}  {med['blas']:7.1f}  "
                      + "  ".join(f"{med[name]:8.1f} ({med['blas'] / med[name]:.2f}x)"
                                  for name in levels))


def epoch(reps: int, levels: list[str]) -> None:
    """Seconds per 10,000-sample epoch at batch 16 / 64 / 256, levels round-robin."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (10_000, 784), dtype=np.uint8)
    y = rng.integers(0, 10, 10_000)
    print("batch  " + "  ".join(f"{n:>14}" for n in levels))
    for bs in (16, 64, 256):
        nets = {}
        for name in levels:
            fastnn.set_kernel_level(name)
            nets[name] = fastnn.Network.mlp([784, 128, 10], loss="softmax_cross_entropy", seed=0)
            nets[name].fit(X[:2000], y[:2000], epochs=1, batch_size=bs,
                           optimizer=fastnn.SGD(lr=0.01), input_scale=1 / 255)
        times = {name: [] for name in levels}
        for _ in range(reps):
            for name in levels:
                fastnn.set_kernel_level(name)
                t = time.perf_counter()
                nets[name].fit(X, y, epochs=1, batch_size=bs, optimizer=fastnn.SGD(lr=0.01),
                               input_scale=1 / 255)
                times[name].append(time.perf_counter() - t)
        med = {name: statistics.median(t) for name, t in times.items()}
        print(f"{bs:5}  " + "  ".join(
            f"{med[name] * 1e3:6.1f} ms ({med[levels[0]] / med[name]:.2f}x)" for name in levels))
    fastnn.set_kernel_level(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["products", "epoch"], nargs="?", default="products")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1,
                        help="set_num_threads(N); 0 leaves the fit's own chooser")
    parser.add_argument("--levels", default=",".join(fastnn.available_kernel_levels()),
                        help="kernel levels to compare, the first is the reference")
    args = parser.parse_args()
    if args.threads:
        fastnn.set_num_threads(args.threads)
    print(f"kernel levels: {fastnn.available_kernel_levels()}, threads: "
          f"{args.threads or 'chosen per chunk'}")
    if args.what == "products":
        products(args.reps, max(args.threads, 1))
    else:
        epoch(args.reps, args.levels.split(","))


if __name__ == "__main__":
    main()
