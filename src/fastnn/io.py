"""Saving and loading networks without pickle.

``.npz`` (``Network.save`` / ``load``): one array per parameter and a JSON
header, read back with ``allow_pickle=False`` and validated field by field; the
round trip is bit-exact.

JSON (``Network.to_json`` / ``Network.from_json``): the tutorials' format, as
written by their ``network.py``: ``sizes``, ``weights`` (one list of ``n_out``
rows of ``n_in`` numbers per layer, i.e. W transposed), ``biases`` (``n_out``
one-element lists per layer) and ``cost``; fastnn adds ``activations``,
``loss`` and ``dtype``. Numbers are written with Python's shortest exact repr,
so this round trip is bit-exact too.
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Any

import numpy as np

from fastnn.layers import LAYER_ACTIVATIONS, Dense
from fastnn.ops import BACKENDS, LOSSES

FORMAT = "fastnn"
FORMAT_VERSION = 1

# The tutorials' cost names, and the loss (and output activation) they mean.
TUTORIAL_COSTS = {"QuadraticCost": "mse", "CrossEntropyCost": "binary_cross_entropy"}


def _header(net) -> dict:
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "sizes": [net.layers[0].n_in] + [layer.n_out for layer in net.layers],
        "activations": [layer.activation for layer in net.layers],
        "loss": net.loss,
        "dtype": str(net.dtype),
    }


def _atomic_write(path: str, write) -> None:
    """Write through ``write(file)`` to a temporary file beside ``path``, then rename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    # Not tempfile.mkstemp: its files are private (0600), and the rename would
    # carry that mode to the model. Created with 0666, the umask applies, as for
    # any file the user writes (np.save, open).
    while True:
        tmp = os.path.join(folder, f".fastnn-{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(net, path: str) -> None:
    """Write ``net`` to ``path`` as an ``.npz`` file with a JSON header.

    The file is written to a temporary name and renamed, so an interrupted save
    never leaves a half-written model under ``path``.
    """
    arrays = {"header": np.frombuffer(json.dumps(_header(net)).encode(), dtype=np.uint8)}
    for i, layer in enumerate(net.layers):
        arrays[f"W{i}"] = layer.W
        arrays[f"b{i}"] = layer.b
    _atomic_write(path, lambda f: np.savez(f, **arrays))


class ModelFileError(ValueError):
    """A model file is corrupted, truncated or inconsistent."""


def _validated_header(header: Any, where: str) -> dict:
    def bad(msg: str) -> ModelFileError:
        return ModelFileError(f"{where}: {msg}")

    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    sizes = header.get("sizes")
    acts = header.get("activations")
    if not (isinstance(sizes, list) and len(sizes) >= 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes)):
        raise bad(f"'sizes' must be a list of at least two positive integers, got {sizes!r}")
    if not (isinstance(acts, list) and len(acts) == len(sizes) - 1
            and all(isinstance(a, str) and a in LAYER_ACTIVATIONS for a in acts)):
        raise bad(f"'activations' must name one of {list(LAYER_ACTIVATIONS)} per layer, got {acts!r}")
    loss = header.get("loss")
    if not (isinstance(loss, str) and loss in LOSSES):  # (a list is unhashable: check str first)
        raise bad(f"'loss' must be one of {sorted(LOSSES)}, got {loss!r}")
    dtype = header.get("dtype")
    if not (isinstance(dtype, str) and dtype in ("float32", "float64")):
        raise bad(f"'dtype' must be 'float32' or 'float64', got {dtype!r}")
    return header


def _network(header: dict, weights: list, biases: list, backend: str):
    from fastnn.network import Network

    dtype = np.dtype(header["dtype"])
    sizes = header["sizes"]
    layers = []
    for i, act in enumerate(header["activations"]):
        layer = Dense(sizes[i], sizes[i + 1], act)
        layer.dtype = dtype
        layer.W = weights[i]  # the setters check shape and finiteness
        layer.b = biases[i]
        layers.append(layer)
    return Network(layers, loss=header["loss"], dtype=dtype, backend=backend)


def _check_backend(backend: Any) -> None:
    # Checked before reading: a bad argument is not a damaged file (ModelFileError).
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {sorted(BACKENDS)}")


def load(path: str, backend: str = "compiled"):
    """Read a network written by ``Network.save``.

    Parameters
    ----------
    path : str
        An ``.npz`` file written by ``save``.
    backend : {"compiled", "numpy"}
        Backend of the returned network.

    Raises
    ------
    ModelFileError (a ValueError)
        When the file is not a fastnn model, is truncated or corrupted, or its
        arrays disagree with its header.
    """
    _check_backend(backend)
    where = os.fspath(path)
    try:
        data = np.load(where, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            # np.load also reads a bare .npy array; a model is always an .npz archive.
            raise ModelFileError(f"{where}: not a fastnn model file (not an .npz archive)")
        with data:
            names = set(data.files)
            if "header" not in names:
                raise ModelFileError(f"{where}: not a fastnn model (no header)")
            header_bytes = data["header"]
            if header_bytes.dtype != np.uint8 or header_bytes.ndim != 1:
                raise ModelFileError(f"{where}: the header is not JSON bytes")
            try:
                header = json.loads(header_bytes.tobytes().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ModelFileError(f"{where}: the header is not valid JSON ({exc})") from None
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise ModelFileError(f"{where}: not a fastnn model file")
            if header.get("version") != FORMAT_VERSION:
                raise ModelFileError(f"{where}: format version {header.get('version')!r} is "
                                     f"not supported (this fastnn reads {FORMAT_VERSION})")
            header = _validated_header(header, where)
            n_layers = len(header["sizes"]) - 1
            expected = {"header"} | {f"{k}{i}" for k in "Wb" for i in range(n_layers)}
            if names != expected:
                raise ModelFileError(f"{where}: arrays {sorted(names)} do not match the header "
                                     f"(expected {sorted(expected)})")
            dtype = np.dtype(header["dtype"])
            weights, biases = [], []
            for i in range(n_layers):
                W, b = data[f"W{i}"], data[f"b{i}"]
                for name, arr in ((f"W{i}", W), (f"b{i}", b)):
                    if arr.dtype != dtype:
                        raise ModelFileError(f"{where}: {name} is {arr.dtype}, the header says {dtype}")
                weights.append(W)
                biases.append(b)
    except ModelFileError:
        raise
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise  # about the path, not the file's content
    except Exception as exc:
        # A damaged archive fails in many ways: BadZipFile, EOFError, ValueError,
        # but also zipfile's NotImplementedError ("zip file version") and
        # RuntimeError ("encrypted") when a flipped bit lands in a zip header.
        raise ModelFileError(f"{where}: not a readable fastnn model file "
                             f"(corrupted or truncated?): {type(exc).__name__}: {exc}") from None
    try:
        return _network(header, weights, biases, backend)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{where}: {exc}") from None


def to_json(net, path: str | None = None) -> str:
    """The network as JSON text in the tutorials' format; written atomically to ``path`` if given."""
    header = _header(net)
    doc = {
        "sizes": header["sizes"],
        "weights": [layer.W.T.tolist() for layer in net.layers],
        "biases": [layer.b[:, None].tolist() for layer in net.layers],
        "cost": {"mse": "QuadraticCost", "binary_cross_entropy": "CrossEntropyCost"}.get(
            net.loss, "SoftmaxCrossEntropyCost"),
        "activations": header["activations"],
        "loss": header["loss"],
        "dtype": header["dtype"],
    }
    text = json.dumps(doc)
    if path is not None:
        _atomic_write(path, lambda f: f.write(text.encode()))
    return text


def from_json(source: str | os.PathLike, backend: str = "compiled"):
    """Read a network from a JSON file (str or path-like) or JSON text, in the tutorials' format.

    Files written by the tutorials' ``network.py`` (all-sigmoid layers, a
    ``cost`` name, no ``activations``) are read too.
    """
    _check_backend(backend)
    where = "JSON model"
    text = source
    if isinstance(source, os.PathLike) or not str(source).lstrip().startswith("{"):
        where = os.fspath(source)
        with open(source, encoding="utf-8") as f:
            text = f.read()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ModelFileError(f"{where}: the top level is not a JSON object")
    sizes = doc.get("sizes")
    cost = doc.get("cost")
    header = {
        "sizes": sizes,
        "activations": doc.get("activations"),
        "loss": doc.get("loss", TUTORIAL_COSTS.get(cost) if isinstance(cost, str) else None),
        "dtype": doc.get("dtype", "float64"),
    }
    if header["activations"] is None and isinstance(sizes, list):
        header["activations"] = ["sigmoid"] * (len(sizes) - 1)  # the tutorials' networks
    header = _validated_header(header, where)
    n_layers = len(sizes) - 1
    weights, biases = doc.get("weights"), doc.get("biases")
    if not (isinstance(weights, list) and isinstance(biases, list)
            and len(weights) == n_layers and len(biases) == n_layers):
        raise ModelFileError(f"{where}: need one 'weights' and one 'biases' entry per layer")
    try:
        Ws, bs = [], []
        for i in range(n_layers):
            Wt = np.array(weights[i], dtype=np.float64)
            b = np.array(biases[i], dtype=np.float64)
            if Wt.shape != (sizes[i + 1], sizes[i]):
                raise ModelFileError(f"{where}: weights[{i}] has shape {Wt.shape}, expected "
                                     f"({sizes[i + 1]}, {sizes[i]}) (n_out rows of n_in)")
            if b.shape not in ((sizes[i + 1], 1), (sizes[i + 1],)):
                raise ModelFileError(f"{where}: biases[{i}] has shape {b.shape}, expected "
                                     f"({sizes[i + 1]}, 1)")
            Ws.append(Wt.T)
            bs.append(b.reshape(-1))
        return _network(header, Ws, bs, backend)
    except ModelFileError:
        raise
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{where}: {exc}") from None
