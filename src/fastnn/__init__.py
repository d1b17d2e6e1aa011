"""fastnn: dense neural networks on the CPU, with a tutorial-simple API over a compiled core.

>>> import fastnn
>>> net = fastnn.Network.mlp([784, 128, 10], activation="relu", loss="softmax_cross_entropy")
"""

from fastnn.io import ModelFileError, load
from fastnn.layers import Dense
from fastnn.network import History, Network, Neuron
from fastnn.optim import SGD, Adam
from fastnn.threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = [
    "Adam",
    "Dense",
    "History",
    "ModelFileError",
    "Network",
    "Neuron",
    "SGD",
    "get_num_threads",
    "load",
    "set_num_threads",
]
