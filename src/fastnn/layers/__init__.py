"""The layer kinds, one class each, and the registry that model files use."""

from fastnn.layers.base import Layer
from fastnn.layers.dense import LAYER_ACTIVATIONS, Dense

# kind (as in model files and fastnn._codes.LAYER_KINDS) -> class
LAYER_CLASSES: dict[str, type[Layer]] = {cls.kind: cls for cls in (Dense,)}

__all__ = ["Dense", "LAYER_ACTIVATIONS", "LAYER_CLASSES", "Layer"]
