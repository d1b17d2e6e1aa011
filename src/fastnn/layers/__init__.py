"""The layer kinds, one class each, and the registry that model files use."""

from fastnn.layers.base import Layer
from fastnn.layers.conv import Conv2D
from fastnn.layers.dense import LAYER_ACTIVATIONS, Dense
from fastnn.layers.dropout import Dropout
from fastnn.layers.flatten import Flatten
from fastnn.layers.pool import MaxPool2D

# kind (as in model files and fastnn._codes.LAYER_KINDS) -> class
LAYER_CLASSES: dict[str, type[Layer]] = {
    cls.kind: cls for cls in (Dense, Conv2D, MaxPool2D, Flatten, Dropout)}

__all__ = ["Conv2D", "Dense", "Dropout", "Flatten", "LAYER_ACTIVATIONS", "LAYER_CLASSES",
           "Layer", "MaxPool2D"]
