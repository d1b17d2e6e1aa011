"""The codes shared by Python and the compiled core: one source for both.

The build (setup.py) writes these dictionaries into ``_core/_codes.pxi`` as C
enums, so the core and Python cannot disagree; ``tests/test_codes.py`` checks
the compiled values against these. This module imports nothing, so that the
build can read it without importing fastnn.
"""

ACTIVATIONS = {"identity": 0, "sigmoid": 1, "tanh": 2, "relu": 3}
LOSSES = {"mse": 0, "binary_cross_entropy": 1, "softmax_cross_entropy": 2, "poisson": 3}
OUTPUTS = {"raw": 0, "softmax": 1, "sigmoid": 2, "exp": 3}   # what inference returns
LAYER_KINDS = {"dense": 0, "conv2d": 1, "maxpool2d": 2, "flatten": 3, "dropout": 4}
OPTIMIZERS = {"sgd": 0, "adam": 1}

# The C enum name of each code: its group's prefix and the name in capitals
# (activations and losses keep their bare names, as the kernels have always used).
GROUPS = (("", ACTIVATIONS), ("", LOSSES), ("OUT_", OUTPUTS), ("LAYER_", LAYER_KINDS),
          ("OPT_", OPTIMIZERS))


def c_names() -> dict[str, int]:
    """Every code by its C enum name, e.g. ``{"RELU": 3, "LAYER_DENSE": 0, ...}``."""
    names = {}
    for prefix, codes in GROUPS:
        for name, value in codes.items():
            names[prefix + name.upper()] = value
    return names
