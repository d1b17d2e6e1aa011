"""Data for the examples, tests and benchmarks: MNIST and the tutorials' small sets
(the microchip set ships inside the package)."""

from fastnn.datasets.mnist import load_mnist, read_idx, write_idx
from fastnn.datasets.small import gender, load_csv, microchips, one_hot, standardize, xor

__all__ = ["gender", "load_csv", "load_mnist", "microchips", "one_hot", "read_idx",
           "standardize", "write_idx", "xor"]
