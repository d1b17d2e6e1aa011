"""fastnn: dense neural networks on the CPU, with a tutorial-simple API over a compiled core.

>>> import fastnn
>>> net = fastnn.Network.mlp([784, 128, 10], activation="relu", loss="softmax_cross_entropy")
"""

from fastnn.hopfield import Hopfield
from fastnn.io import ModelFileError
from fastnn.kernels import available_kernel_levels, get_kernel_level, set_kernel_level
from fastnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D
from fastnn.network import History, Network, Neuron, load
from fastnn.optim import SGD, Adam
from fastnn.threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

# fastnn.datasets, fastnn.plot and fastnn.sklearn load on first use, so that
# `import fastnn` pulls in neither matplotlib nor scikit-learn.
_LAZY_SUBMODULES = ("datasets", "plot", "sklearn")


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"fastnn.{name}")
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")

__all__ = [
    "Adam",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "History",
    "Hopfield",
    "MaxPool2D",
    "ModelFileError",
    "Network",
    "Neuron",
    "SGD",
    "available_kernel_levels",
    "get_kernel_level",
    "get_num_threads",
    "load",
    "set_kernel_level",
    "set_num_threads",
]
