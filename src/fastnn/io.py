"""Model files: the ``.npz`` format and the tutorials' JSON, without pickle.

This module knows file formats only. Its writers take a header (``loss``,
``dtype``, ``input_shape``) and a list of layers (``fastnn.layers``); its
readers return the same, each layer built and holding its parameters. It never
imports the network module: building a ``Network`` from what it reads is
``network.py``'s business.

``.npz``, format 2 (``write_model`` / ``read_model``): a JSON header member
``header``, ``{"format": "fastnn", "version": 2, "loss", "dtype",
"input_shape", "layers": [{"kind", "config"}, ...]}`` (each layer's kind, as
in ``fastnn.layers.LAYER_CLASSES``, and its constructor arguments), and one
member per parameter, ``layers.{i}.{name}`` (``layers.0.W``, ``layers.0.b``,
...). Format 1 files (``sizes`` and ``activations`` in the header, members
``W{i}`` and ``b{i}``: dense layers only) are still read, as Dense layers. The
reader checks the whole header (kinds, configs, shapes that chain) and then each
member's ``.npy`` header and sizes against it before reading its data, so
refusing a hostile file costs no more memory than the model it claims to be;
the round trip is bit-exact.

JSON (``model_to_json`` / ``write_json`` / ``model_from_json``): the tutorials'
format, as written by their ``network.py``: ``sizes``, ``weights`` (one list of
``n_out`` rows of ``n_in`` numbers per layer, i.e. W transposed), ``biases``
(``n_out`` one-element lists per layer) and ``cost``; fastnn adds
``activations``, ``loss`` and ``dtype``. Dense layers only. Numbers are written
with Python's shortest exact repr, so this round trip is bit-exact too.

Both writers replace the file atomically (see ``write_model``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import stat
import zipfile
from typing import IO, Any, Callable, Sequence

import numpy as np

from fastnn._codes import LOSSES
from fastnn.layers import LAYER_ACTIVATIONS, LAYER_CLASSES, Dense, Layer

FORMAT = "fastnn"
FORMAT_VERSION = 2  # the version written; READ_VERSIONS are read
READ_VERSIONS = (1, 2)

# The tutorials' cost names, and the loss (and output activation) they mean.
TUTORIAL_COSTS = {"QuadraticCost": "mse", "CrossEntropyCost": "binary_cross_entropy"}

# The largest JSON header member a load reads (10,000 dense layers take 0.6 to 0.9 MB).
MAX_HEADER_BYTES = 1 << 20
# Bounds on what a header may claim, so that checking it costs little whatever it says.
MAX_LAYERS = 10_000
# The most numbers in one sample, at the input and after each layer (the core's int).
MAX_SAMPLE_SIZE = 2**31 - 1
MAX_SAMPLE_DIMS = 3
# The most parameters (numbers) of a model: 8 GB in float32, 16 GB in float64.
MAX_PARAMS = 2**31

_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"
_UTF8_BOM = b"\xef\xbb\xbf"
# An .npy member's header: magic and version (8 bytes), its length (2 or 4) and the
# header text, which numpy refuses beyond its default max_header_size (10,000).
_NPY_HEADER_TEXT_MAX = 10_000
_NPY_PREFIX_MAX = 12 + _NPY_HEADER_TEXT_MAX
# Deflate cannot expand more than 1032-fold (a 258-byte match coded in 2 bits), so a
# member claiming more data than that is a lie that would cost memory to find out.
_DEFLATE_MAX_RATIO = 1032
_READ_CHUNK = 1 << 20


class ModelFileError(ValueError):
    """A model file is corrupted, truncated or inconsistent."""


def _short(value: Any, limit: int = 120) -> str:
    """``repr(value)``, cut to ``limit`` characters (a hostile header may hold megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 5] + " ...)"


# ---------------------------------------------------------------- headers and layers

_Bad = Callable[[str], Exception]


def _sample_shape(value: Any) -> tuple[int, ...] | None:
    """``value`` as a per-sample shape (1 to 3 positive ints, at most ``MAX_SAMPLE_SIZE``
    numbers in all), or None when it is not one. Booleans and floats are not sizes."""
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_SAMPLE_DIMS:
        return None
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1
               for d in value):
        return None
    shape = tuple(int(d) for d in value)
    return shape if math.prod(shape) <= MAX_SAMPLE_SIZE else None


_SHAPE_RULE = (f"a list of 1 to {MAX_SAMPLE_DIMS} positive integers holding at most "
               f"{MAX_SAMPLE_SIZE} numbers in all")


def _checked_loss_and_dtype(header: dict, bad: _Bad) -> tuple[str, str]:
    loss = header.get("loss")
    if not (isinstance(loss, str) and loss in LOSSES):  # (a list is unhashable: check str first)
        raise bad(f"'loss' must be one of {sorted(LOSSES)}, got {_short(loss)}")
    dtype = header.get("dtype")
    if not (isinstance(dtype, str) and dtype in ("float32", "float64")):
        raise bad(f"'dtype' must be 'float32' or 'float64', got {_short(dtype)}")
    return loss, dtype


def _built_layers(specs: Sequence[tuple[Any, Any]], input_shape: tuple[int, ...],
                  dtype: np.dtype, bad: _Bad
                  ) -> tuple[list[Layer], list[tuple[int, str, tuple[int, ...]]]]:
    """New layers from ``(kind, config)`` pairs, built in a chain from ``input_shape``,
    and ``(layer index, parameter name, shape)`` for each of their parameters.

    Nothing is allocated for the parameters: their shapes are only computed, and
    refused beyond ``MAX_PARAMS`` numbers in all.
    """
    layers: list[Layer] = []
    params: list[tuple[int, str, tuple[int, ...]]] = []
    shape, total = input_shape, 0
    for i, (kind, config) in enumerate(specs):
        cls = LAYER_CLASSES.get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise bad(f"layers[{i}]: unknown layer kind {_short(kind)}; this fastnn knows "
                      f"{sorted(LAYER_CLASSES)}")
        if not isinstance(config, dict):
            raise bad(f"layers[{i}] ({kind}): the config must be a JSON object, got "
                      f"{_short(config)}")
        try:
            layer = cls.from_config(config)
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise bad(f"layers[{i}] ({kind}): bad config {_short(config)}: {exc}") from None
        try:
            out = layer.build(shape)
            shapes = layer.param_shapes()
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise bad(f"layers[{i}] ({kind}) does not fit the shape {shape} before it: "
                      f"{exc}") from None
        checked = _sample_shape(out)
        if checked is None:
            raise bad(f"layers[{i}] ({kind}) gives samples of shape {_short(out)}; a sample's "
                      f"shape must be {_SHAPE_RULE}")
        for name in cls.param_names:
            pshape = tuple(int(d) for d in shapes[name])
            total += math.prod(pshape)
            if total > MAX_PARAMS:
                raise bad(f"layers[{i}] ({kind}) brings the model beyond {MAX_PARAMS} "
                          "parameters, more than a model file may hold")
            params.append((i, name, pshape))
        layer.dtype = dtype
        layers.append(layer)
        shape = checked
    return layers, params


def _dense_specs(header: dict, bad: _Bad) -> list[tuple[str, dict]]:
    """The dense layers of a header of ``sizes`` and ``activations`` (format 1, JSON)."""
    sizes = header.get("sizes")
    acts = header.get("activations")
    if not (isinstance(sizes, list) and len(sizes) >= 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes)):
        raise bad(f"'sizes' must be a list of at least two positive integers, got {_short(sizes)}")
    if len(sizes) - 1 > MAX_LAYERS:
        raise bad(f"'sizes' gives {len(sizes) - 1} layers; a model holds at most {MAX_LAYERS}")
    if not (isinstance(acts, list) and len(acts) == len(sizes) - 1
            and all(isinstance(a, str) and a in LAYER_ACTIVATIONS for a in acts)):
        raise bad(f"'activations' must name one of {list(LAYER_ACTIVATIONS)} per layer, "
                  f"got {_short(acts)}")
    return [("dense", {"n_in": sizes[i], "n_out": sizes[i + 1], "activation": act})
            for i, act in enumerate(acts)]


# A validated header: the header returned to callers, the built layers (without
# parameters yet), and (archive member, layer index, parameter name, shape) per parameter.
_Plan = tuple[dict, list[Layer], list[tuple[str, int, str, tuple[int, ...]]]]


def _plan_v1(header: dict, bad: _Bad) -> _Plan:
    """A format 1 header (and the JSON format's): dense layers, members ``W{i}``, ``b{i}``."""
    specs = _dense_specs(header, bad)
    loss, dtype = _checked_loss_and_dtype(header, bad)
    input_shape = (header["sizes"][0],)
    if _sample_shape(input_shape) is None:
        raise bad(f"'sizes' starts with {header['sizes'][0]} inputs; a sample holds at most "
                  f"{MAX_SAMPLE_SIZE} numbers")
    layers, params = _built_layers(specs, input_shape, np.dtype(dtype), bad)
    members = [(f"{name}{i}", i, name, shape) for i, name, shape in params]
    return {"loss": loss, "dtype": dtype, "input_shape": list(input_shape)}, layers, members


def _plan_v2(header: dict, bad: _Bad) -> _Plan:
    """A format 2 header: layers of any kind, members ``layers.{i}.{name}``."""
    loss, dtype = _checked_loss_and_dtype(header, bad)
    input_shape = _sample_shape(header.get("input_shape"))
    if input_shape is None:
        raise bad(f"'input_shape' must be {_SHAPE_RULE}, got {_short(header.get('input_shape'))}")
    entries = header.get("layers")
    if not (isinstance(entries, list) and entries):
        raise bad(f"'layers' must be a non-empty list of layers, got {_short(entries)}")
    if len(entries) > MAX_LAYERS:
        raise bad(f"the header lists {len(entries)} layers; a model holds at most {MAX_LAYERS}")
    specs = []
    for i, entry in enumerate(entries):
        if not (isinstance(entry, dict) and "kind" in entry and "config" in entry):
            raise bad(f"layers[{i}] must be an object with a 'kind' and a 'config', "
                      f"got {_short(entry)}")
        specs.append((entry["kind"], entry["config"]))
    layers, params = _built_layers(specs, input_shape, np.dtype(dtype), bad)
    members = [(f"layers.{i}.{name}", i, name, shape) for i, name, shape in params]
    return {"loss": loss, "dtype": dtype, "input_shape": list(input_shape)}, layers, members


# ---------------------------------------------------------------- writing

_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def _save_target(path: str | os.PathLike) -> tuple[str, int | None]:
    """The file a save to ``path`` replaces, and its permission bits (None: a new file).

    A symlink is followed, so the link stays a link and its target gets the model.
    Only ``stat`` is used here, never ``open``: opening a FIFO would block.
    """
    name = os.fsdecode(path)
    target = os.path.realpath(name)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return target, None
    where = repr(name) if target == os.path.abspath(name) else f"{name!r} (-> {target!r})"
    if not stat.S_ISREG(st.st_mode):
        kind = next((kind for is_kind, kind in _FILE_KINDS if is_kind(st.st_mode)),
                    "a special file")
        raise ValueError(f"cannot save to {where}: it is {kind}, not a regular file; a model "
                         "is saved only to a regular file (which it replaces) or to a new path")
    if st.st_nlink > 1:
        raise ValueError(
            f"cannot save to {where}: the file has {st.st_nlink} hard links. A save writes a "
            "new file and renames it over the old one, so that an interrupted save never "
            "leaves half a model; the other links would silently keep the old model. Save to "
            "another path, or remove the other links first")
    return target, stat.S_IMODE(st.st_mode)


def _atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Write through ``write(file)`` to a temporary file beside the target, then rename."""
    target, mode = _save_target(path)
    folder = os.path.dirname(target)
    # Not tempfile.mkstemp: its files are private (0600), and the rename would
    # carry that mode to a new model. Created with 0666, the umask applies, as for
    # any file the user writes (np.save, open). A replaced file's own bits are used
    # from the start, so a private model is never readable by others, not even
    # while it is written.
    while True:
        tmp = os.path.join(folder, f".fastnn-{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666 if mode is None else mode & 0o777)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)  # exactly the old bits: the umask may have cleared some
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_param_dtypes(layers: Sequence[Layer], dtype: Any) -> None:
    """Refuse layers whose parameters are not (all) of ``dtype``.

    A layer shared with a network of the other dtype was converted by it: its
    arrays would contradict the header of this network's file.

    Raises
    ------
    TypeError
        Naming the first such parameter (``layers[i].W``).
    ValueError
        When a parameter was never set.
    """
    dtype = np.dtype(dtype)
    for i, layer in enumerate(layers):
        for name, arr in zip(layer.param_names, layer.params()):
            if arr is None:
                raise ValueError(f"layers[{i}].{name} is not set: the layer was never "
                                 "initialized")
            if arr.dtype != dtype:
                raise TypeError(
                    f"layers[{i}].{name} is {arr.dtype} but this network is {dtype}: "
                    "the layer is shared with a network of another dtype, which converted "
                    "it; give each network its own layers (copy.deepcopy)")


def _writable(header: Any, layers: Sequence[Layer]) -> str:
    """The format 2 header (JSON text) of ``header`` and ``layers``, after every check
    that a load makes of it, and of the parameters' dtypes and shapes: a file that is
    written can be read."""

    def bad(msg: str) -> ValueError:
        return ValueError(f"cannot write this model: {msg}")

    if not isinstance(header, dict):
        raise TypeError(f"header must be a dict, got {type(header).__name__}")
    layers = list(layers)
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"layers[{i}] must be a fastnn layer, got {type(layer).__name__}")
    dtype = header.get("dtype")
    with contextlib.suppress(TypeError):
        dtype = str(np.dtype(dtype)) if dtype is not None else dtype  # np.float32 -> 'float32'
    input_shape = header.get("input_shape")
    doc = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "loss": header.get("loss"),
        "dtype": dtype,
        "input_shape": list(input_shape) if isinstance(input_shape, (list, tuple)) else input_shape,
        "layers": [{"kind": layer.kind, "config": layer.config()} for layer in layers],
    }
    try:
        text = json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot write this model: the header is not JSON ({exc})") from None
    if len(text.encode()) > MAX_HEADER_BYTES - _NPY_PREFIX_MAX:
        raise bad(f"its header would take {len(text.encode())} bytes, more than a load reads "
                  f"({MAX_HEADER_BYTES - _NPY_PREFIX_MAX})")
    # Checked as a load will see it: parsed back from the text written.
    _, _, members = _plan_v2(json.loads(text), bad)
    check_param_dtypes(layers, doc["dtype"])
    for name, i, pname, shape in members:
        arr = layers[i].params()[layers[i].param_names.index(pname)]
        if arr.shape != shape:
            raise bad(f"{name} has shape {arr.shape}, but the layer's config gives {shape}")
    return text


def write_model(path: str | os.PathLike, header: dict, layers: Sequence[Layer]) -> None:
    """Write a model to ``path`` as an ``.npz`` file of format 2.

    The file is written to a temporary name beside it and renamed, so an
    interrupted write never leaves a half-written model under ``path``. A
    symlink is followed: its target gets the model and the link stays a link.
    A replaced file keeps its permission bits; a new file gets ``0666`` less
    the umask, like any file the user writes.

    Parameters
    ----------
    path : str or path-like
        The file to write; any suffix.
    header : dict
        ``{"loss": str, "dtype": "float32" or "float64", "input_shape": list of int}``.
    layers : list of Layer
        The layers, in order, each holding its parameters in ``header["dtype"]``.

    Raises
    ------
    TypeError
        Before anything is written, when a layer's parameters are not of the
        header's dtype (a layer shared with a network of the other dtype).
    ValueError
        Before anything is written: when ``path`` exists and is not a regular
        file (a directory, FIFO, device or socket), or is a file with several
        hard links (the rename would detach it from the other links, which
        would keep the old model); when the header or the layers would make a
        file that ``read_model`` refuses.
    OSError
        When writing fails; the temporary file is removed and a file already
        at ``path`` is left as it was.
    """
    layers = list(layers)
    text = _writable(header, layers)
    arrays = {"header": np.frombuffer(text.encode(), dtype=np.uint8)}
    for i, layer in enumerate(layers):
        for name, arr in zip(layer.param_names, layer.params()):
            arrays[f"layers.{i}.{name}"] = arr
    _atomic_write(path, lambda f: np.savez(f, **arrays))


def model_to_json(header: dict, layers: Sequence[Layer]) -> str:
    """The model as JSON text in the tutorials' format (Dense layers only).

    Parameters
    ----------
    header : dict
        As for ``write_model``.
    layers : list of Dense

    Returns
    -------
    str
        ``sizes``, ``weights``, ``biases``, ``cost``, ``activations``, ``loss``
        and ``dtype``.

    Raises
    ------
    ValueError
        When a layer is not a Dense (the format has no place for it), or as
        ``write_model``.
    TypeError
        As ``write_model``.
    """
    layers = list(layers)
    for i, layer in enumerate(layers):
        if not isinstance(layer, Dense):
            raise ValueError(f"to_json writes the tutorials' dense-only format; layers[{i}] "
                             f"is a {type(layer).__name__}: use save() for this network")
    _writable(header, layers)  # the same checks as an .npz file's
    doc = {
        "sizes": [layers[0].n_in] + [layer.n_out for layer in layers],
        "weights": [layer.W.T.tolist() for layer in layers],
        "biases": [layer.b[:, None].tolist() for layer in layers],
        "cost": {"mse": "QuadraticCost", "binary_cross_entropy": "CrossEntropyCost"}.get(
            header["loss"], "SoftmaxCrossEntropyCost"),
        "activations": [layer.activation for layer in layers],
        "loss": header["loss"],
        "dtype": str(np.dtype(header["dtype"])),
    }
    return json.dumps(doc)


def write_json(path: str | os.PathLike, header: dict, layers: Sequence[Layer]) -> None:
    """Write ``model_to_json(header, layers)`` to ``path``, as ``write_model`` writes:
    through a temporary file and a rename, following a symlink, keeping a replaced
    file's permission bits, refusing what is not a regular file or has other hard
    links; all before anything is written."""
    _write_text(path, model_to_json(header, layers))


def _write_text(path: str | os.PathLike, text: str) -> None:
    data = text.encode()
    _atomic_write(path, lambda f: f.write(data))


# ---------------------------------------------------------------- reading .npz


def _parse_json(data: str | bytes, where: str, what: str) -> Any:
    """``data`` parsed as JSON (UTF-8, with or without a BOM), or ModelFileError."""
    try:
        if isinstance(data, bytes):
            data = data.decode("utf-8-sig")
        return json.loads(data.removeprefix("\ufeff"))
    except RecursionError:
        raise ModelFileError(f"{where}: {what} is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an int of 4300+ digits
        raise ModelFileError(f"{where}: {what} is not valid UTF-8 JSON ({exc})") from None


def _refuse_other_formats(head: bytes, where: str) -> None:
    """Refuse, by its first bytes, a file that is not a zip archive, saying what it looks like."""
    if head.startswith(_ZIP_MAGIC):
        return
    if head.startswith(_UTF8_BOM) or head.lstrip(b" \t\r\n")[:1] in (b"{", b"["):
        raise ModelFileError(f"{where}: this looks like JSON text (a JSON model?), not an .npz "
                             "model file; read JSON models with fastnn.Network.from_json")
    if head.startswith(_NPY_MAGIC):
        raise ModelFileError(f"{where}: a single .npy array, not a fastnn model file")
    if not head:
        raise ModelFileError(f"{where}: the file is empty")
    raise ModelFileError(f"{where}: not a fastnn model file (not an .npz archive)")


def _check_member_sizes(info: zipfile.ZipInfo, limit: int, archive_size: int, where: str,
                        name: str) -> None:
    """Check the zip directory's sizes of member ``name`` before a byte of it is decompressed.

    ``limit`` is the most data the member may hold. Reading stops at the
    directory's uncompressed size (``zipfile`` checks the CRC there), so once it
    is bounded, so is the memory that reading the member costs. The compressed
    size must be able to hold that much: a member claiming gigabytes in a few
    bytes would otherwise be allocated before being found short.
    """
    if info.file_size > limit:
        raise ModelFileError(f"{where}: {name} holds {info.file_size} bytes, more than the "
                             f"{limit} it may hold")
    if info.compress_type == zipfile.ZIP_STORED:
        plausible = info.compress_size == info.file_size
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        plausible = info.file_size <= _DEFLATE_MAX_RATIO * info.compress_size
    else:
        raise ModelFileError(f"{where}: {name} uses zip compression method "
                             f"{info.compress_type}; model files are stored or deflated "
                             "(np.savez, np.savez_compressed)")
    if not plausible or info.compress_size > archive_size:
        raise ModelFileError(f"{where}: the zip sizes of {name} are inconsistent "
                             f"({info.compress_size} bytes compressed, {info.file_size} "
                             f"uncompressed, in a {archive_size}-byte file)")


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, archive_size: int,
                 where: str, name: str, dtype: np.dtype,
                 shape: tuple[int, ...] | None) -> np.ndarray:
    """Read the ``.npy`` member ``info``, after checking that it holds ``dtype`` data of
    ``shape`` (None: one dimension, of any length within ``MAX_HEADER_BYTES``).

    The member's ``.npy`` header and zip sizes are checked before its data is read,
    and exactly the announced number of bytes is read: a hostile member costs no
    more memory than the array it is expected to hold.
    """
    limit = (MAX_HEADER_BYTES if shape is None
             else math.prod(shape) * dtype.itemsize + _NPY_PREFIX_MAX)
    _check_member_sizes(info, limit, archive_size, where, name)
    expected = f"a one-dimensional {dtype} array" if shape is None else f"{dtype} of shape {shape}"
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            found, fortran, found_dtype = np.lib.format.read_array_header_1_0(
                f, max_header_size=_NPY_HEADER_TEXT_MAX)
        elif version == (2, 0):
            found, fortran, found_dtype = np.lib.format.read_array_header_2_0(
                f, max_header_size=_NPY_HEADER_TEXT_MAX)
        else:
            raise ModelFileError(f"{where}: {name} is in .npy format version {version}, "
                                 "expected 1.0 or 2.0")
        if found_dtype != dtype or (len(found) != 1 if shape is None else found != shape):
            raise ModelFileError(f"{where}: {name} holds {found_dtype} of shape {found}, "
                                 f"expected {expected}")
        nbytes = math.prod(found) * dtype.itemsize
        if info.file_size != f.tell() + nbytes:
            raise ModelFileError(f"{where}: the zip size of {name} ({info.file_size} bytes) "
                                 f"disagrees with its shape {found} and {dtype}")
        # Fortran order (a hand-made file) stores the transpose's rows.
        arr = np.empty(found[::-1] if fortran else found, dtype)
        view = memoryview(arr).cast("B")
        done = 0
        while done < nbytes:  # a zip member stream reads in bounded chunks anyway
            n = f.readinto(view[done:done + _READ_CHUNK])
            if not n:
                raise ModelFileError(f"{where}: {name} is truncated")
            done += n
        if f.read(1):  # cannot happen past the size check; cheap to be sure
            raise ModelFileError(f"{where}: {name} holds more data than its shape")
    return arr.T if fortran else arr


def _read_archive(archive: zipfile.ZipFile, archive_size: int,
                  where: str) -> tuple[dict, list[Layer]]:
    """The header and the layers of a model archive, each member checked before it is read."""

    def bad(msg: str) -> ModelFileError:
        return ModelFileError(f"{where}: {msg}")

    infos = archive.infolist()
    members = {info.filename: info for info in infos}
    if len(members) != len(infos):
        raise bad("the archive holds two members of the same name")
    if "header.npy" not in members:
        raise bad("not a fastnn model (no header)")
    raw = _read_member(archive, members["header.npy"], archive_size, where, "the header",
                       np.dtype(np.uint8), None)
    header = _parse_json(raw.tobytes(), where, "the header")
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise bad("not a fastnn model file")
    version = header.get("version")
    if type(version) is not int or version not in READ_VERSIONS:  # not True, not 2.0
        raise bad(f"format version {_short(version)} is not supported (this fastnn reads "
                  f"{' and '.join(map(str, READ_VERSIONS))})")
    info, layers, params = (_plan_v1 if version == 1 else _plan_v2)(header, bad)
    # The count first: the set of expected names is then no larger than the archive's.
    if len(members) != len(params) + 1:
        names = ["header"] + [name for name, *_ in params[:3]] + (["..."] if params[3:] else [])
        raise bad(f"the archive holds {len(members)} arrays; the header's layers need "
                  f"{len(params) + 1} ({', '.join(names)})")
    expected = {"header.npy"} | {f"{name}.npy" for name, *_ in params}
    if set(members) != expected:
        missing = sorted(expected - set(members))
        unexpected = sorted(set(members) - expected)
        raise bad(f"the arrays do not match the header: {_short(unexpected, 200)} found "
                  f"instead of {_short(missing, 200)}")
    dtype = np.dtype(info["dtype"])
    for name, i, pname, shape in params:
        arr = _read_member(archive, members[f"{name}.npy"], archive_size, where, name,
                           dtype, shape)
        try:
            setattr(layers[i], pname, arr)  # the setter checks finiteness (and shape)
        except (ValueError, TypeError) as exc:
            raise bad(f"{name}: {exc}") from None
    return info, layers


def read_model(path: str | os.PathLike) -> tuple[dict, list[Layer]]:
    """Read a model written by ``write_model`` (format 2) or by an older fastnn (format 1).

    The whole header is checked first (the layer kinds, their configs, shapes
    that chain from the input shape), then every member of the archive against
    it (shape, dtype, and the zip's own sizes) before its data is read, so
    refusing a hostile file costs no more memory than the model it claims to be.

    Parameters
    ----------
    path : str or path-like
        An ``.npz`` file.

    Returns
    -------
    header : dict
        ``{"loss": str, "dtype": "float32" or "float64", "input_shape": list of int}``;
        a format 1 file's input shape is ``[sizes[0]]``.
    layers : list of Layer
        New layers, built in a chain from the input shape, their ``dtype`` the
        header's, holding the file's parameters (set through their checked setters).

    Raises
    ------
    ModelFileError (a ValueError)
        When the file is not a fastnn model (a JSON model is pointed to
        ``Network.from_json``), is truncated or corrupted, or its header is
        invalid or disagrees with its arrays.
    FileNotFoundError, PermissionError, IsADirectoryError
        About the path rather than the file's content.
    """
    where = os.fspath(path)
    try:
        with open(where, "rb") as f:
            _refuse_other_formats(f.read(4096), where)
            archive_size = os.fstat(f.fileno()).st_size
            with zipfile.ZipFile(f) as archive:
                return _read_archive(archive, archive_size, where)
    except ModelFileError:
        raise
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise  # about the path, not the file's content
    except Exception as exc:
        # A damaged archive fails in many ways: BadZipFile (a CRC), EOFError, ValueError
        # (an .npy header), but also zipfile's NotImplementedError ("zip file version")
        # and RuntimeError ("encrypted") when a flipped bit lands in a zip header.
        raise ModelFileError(f"{where}: not a readable fastnn model file "
                             f"(corrupted or truncated?): {type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------- reading JSON


def is_json_text(source: Any) -> bool:
    """Whether ``source`` is JSON text (bytes, or a str that looks like JSON), not a path."""
    return isinstance(source, (bytes, bytearray)) or (
        isinstance(source, str) and (source.startswith("\ufeff")
                                     or source.lstrip()[:1] in ("{", "[")))


def _json_source(source: Any) -> tuple[str, str | bytes]:
    """Where the JSON comes from (for messages), and its text or bytes."""
    if isinstance(source, (bytes, bytearray)):
        where, data = "JSON model", bytes(source)
    elif is_json_text(source):
        return "JSON model", source
    elif isinstance(source, (str, os.PathLike)):
        where = os.fsdecode(source)
        with open(source, "rb") as f:
            data = f.read()
    else:
        raise TypeError("source must be JSON text (str or bytes) or the path of a JSON file, "
                        f"got {type(source).__name__}")
    if data.startswith(_ZIP_MAGIC):
        raise ModelFileError(f"{where}: this looks like an .npz model file (a zip archive), "
                             "not JSON; read .npz models with fastnn.load")
    return where, data


def _real_array(value: Any, shapes: tuple[tuple[int, ...], ...], where: str,
                what: str) -> np.ndarray:
    """``value`` (nested JSON lists) as float64, after checking its shape and that it
    holds only numbers: not strings or booleans, which NumPy would convert."""
    arr = np.array(value, dtype=object)
    if arr.shape not in shapes:
        raise ModelFileError(f"{where}: {what} has shape {arr.shape}, expected {shapes[0]}")
    for x in arr.flat:
        if type(x) not in (int, float):  # JSON gives exact types; bool is not a number here
            raise ModelFileError(f"{where}: {what} holds {x!r} ({type(x).__name__}); "
                                 "weights and biases must be numbers")
    try:
        return arr.astype(np.float64)
    except OverflowError:
        raise ModelFileError(f"{where}: {what} holds an integer too large "
                             "for a float") from None


def model_from_json(source: str | bytes | os.PathLike) -> tuple[dict, list[Layer]]:
    """Read a model from JSON in the tutorials' format (see ``model_to_json``).

    Files written by the tutorials' ``network.py`` (all-sigmoid layers, a
    ``cost`` name, no ``activations``) are read too.

    Parameters
    ----------
    source : str, bytes or path-like
        JSON text: bytes, or a str that starts with a byte-order mark or whose
        first non-space character is ``{`` or ``[``. Any other str, and any
        path-like, is the path of a JSON file (pass a ``pathlib.Path`` for a
        file name that starts with ``{`` or ``[``).

    Returns
    -------
    header, layers
        As ``read_model`` returns them; the layers are Dense.

    Raises
    ------
    ModelFileError (a ValueError)
        When the JSON is invalid (including too deeply nested), is not a model
        (an ``.npz`` model file is pointed to ``fastnn.load``), or holds
        anything but finite numbers of the right shapes as weights and biases.
    TypeError
        When ``source`` is neither text, bytes nor a path.
    """
    where, data = _json_source(source)

    def bad(msg: str) -> ModelFileError:
        return ModelFileError(f"{where}: {msg}")

    doc = _parse_json(data, where, "the text")
    if not isinstance(doc, dict):
        raise bad("the top level is not a JSON object")
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
    info, layers, _ = _plan_v1(header, bad)
    weights, biases = doc.get("weights"), doc.get("biases")
    if not (isinstance(weights, list) and isinstance(biases, list)
            and len(weights) == len(layers) and len(biases) == len(layers)):
        raise bad("need one 'weights' and one 'biases' entry per layer")
    for i, layer in enumerate(layers):
        n_in, n_out = sizes[i], sizes[i + 1]
        W = _real_array(weights[i], ((n_out, n_in),), where,
                        f"weights[{i}] (n_out rows of n_in)").T
        b = _real_array(biases[i], ((n_out, 1), (n_out,)), where,
                        f"biases[{i}]").reshape(-1)
        try:
            layer.W = W  # the setters check finiteness, and the cast to the dtype
            layer.b = b
        except (ValueError, TypeError) as exc:
            raise bad(f"layers[{i}]: {exc}") from None
    return info, layers
