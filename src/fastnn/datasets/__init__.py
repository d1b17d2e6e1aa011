"""Data for the examples, tests and benchmarks: MNIST and the tutorials' small sets."""

from fastnn.datasets.mnist import load_mnist, read_idx, write_idx
from fastnn.datasets.small import gender, load_csv, one_hot, standardize, xor

__all__ = ["gender", "load_csv", "load_mnist", "one_hot", "read_idx", "standardize",
           "write_idx", "xor"]
