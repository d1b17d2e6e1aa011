"""Saving and loading networks without pickle.

``.npz`` (``Network.save`` / ``load``): one array per parameter and a JSON
header. ``load`` reads the archive member by member, and checks each member's
``.npy`` header and sizes against the JSON header before reading its data, so
refusing a hostile file costs no more memory than the model it claims to be;
the round trip is bit-exact.

JSON (``Network.to_json`` / ``Network.from_json``): the tutorials' format, as
written by their ``network.py``: ``sizes``, ``weights`` (one list of ``n_out``
rows of ``n_in`` numbers per layer, i.e. W transposed), ``biases`` (``n_out``
one-element lists per layer) and ``cost``; fastnn adds ``activations``,
``loss`` and ``dtype``. Numbers are written with Python's shortest exact repr,
so this round trip is bit-exact too.

Both writers replace the file atomically (see ``save``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import stat
import zipfile
from typing import IO, TYPE_CHECKING, Any, Callable

import numpy as np

from fastnn.layers import LAYER_ACTIVATIONS, Dense
from fastnn.ops import BACKENDS, LOSSES

if TYPE_CHECKING:
    from fastnn.network import Network

FORMAT = "fastnn"
FORMAT_VERSION = 1

# The tutorials' cost names, and the loss (and output activation) they mean.
TUTORIAL_COSTS = {"QuadraticCost": "mse", "CrossEntropyCost": "binary_cross_entropy"}

# The largest JSON header member load reads (a header of 10,000 layers is ~200 KB).
MAX_HEADER_BYTES = 1 << 20

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


def _header(net: Network) -> dict:
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "sizes": [net.layers[0].n_in] + [layer.n_out for layer in net.layers],
        "activations": [layer.activation for layer in net.layers],
        "loss": net.loss,
        "dtype": str(net.dtype),
    }


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


def save(net: Network, path: str | os.PathLike) -> None:
    """Write ``net`` to ``path`` as an ``.npz`` file with a JSON header.

    The file is written to a temporary name beside it and renamed, so an
    interrupted save never leaves a half-written model under ``path``. A
    symlink is followed: its target gets the model and the link stays a link.
    A replaced file keeps its permission bits; a new file gets ``0666`` less
    the umask, like any file the user writes.

    Parameters
    ----------
    net : Network
        The network to write.
    path : str or path-like
        The file to write; any suffix.

    Raises
    ------
    ValueError
        Before anything is written: when ``path`` exists and is not a regular
        file (a directory, FIFO, device or socket), or is a file with several
        hard links (the rename would detach it from the other links, which
        would keep the old model), or when a layer's arrays are not of the
        network's dtype (a layer shared with a network of the other dtype).
    OSError
        When writing fails; the temporary file is removed and a file already
        at ``path`` is left as it was.
    """
    # A layer converted by a network of the other dtype would disagree with the
    # header, and load would refuse the file: refused before anything is written.
    net._check_param_dtypes()
    arrays = {"header": np.frombuffer(json.dumps(_header(net)).encode(), dtype=np.uint8)}
    for i, layer in enumerate(net.layers):
        arrays[f"W{i}"] = layer.W
        arrays[f"b{i}"] = layer.b
    _atomic_write(path, lambda f: np.savez(f, **arrays))


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
                  where: str) -> tuple[dict, list, list]:
    """The header, weights and biases of a model archive, each member checked before it is read."""
    infos = archive.infolist()
    members = {info.filename: info for info in infos}
    if len(members) != len(infos):
        raise ModelFileError(f"{where}: the archive holds two members of the same name")
    if "header.npy" not in members:
        raise ModelFileError(f"{where}: not a fastnn model (no header)")
    raw = _read_member(archive, members["header.npy"], archive_size, where, "the header",
                       np.dtype(np.uint8), None)
    header = _parse_json(raw.tobytes(), where, "the header")
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{where}: not a fastnn model file")
    if header.get("version") != FORMAT_VERSION:
        raise ModelFileError(f"{where}: format version {header.get('version')!r} is "
                             f"not supported (this fastnn reads {FORMAT_VERSION})")
    header = _validated_header(header, where)
    sizes = header["sizes"]
    n_layers = len(sizes) - 1
    # The count first: the list of expected names is then no longer than the archive's.
    if len(members) != 2 * n_layers + 1:
        raise ModelFileError(f"{where}: the archive holds {len(members)} arrays; the header's "
                             f"{n_layers} layers need {2 * n_layers + 1} (header, W0, b0, ...)")
    expected = {"header.npy"} | {f"{k}{i}.npy" for k in "Wb" for i in range(n_layers)}
    if set(members) != expected:
        raise ModelFileError(f"{where}: arrays {sorted(members)} do not match the header "
                             f"(expected {sorted(expected)})")
    dtype = np.dtype(header["dtype"])
    weights = [_read_member(archive, members[f"W{i}.npy"], archive_size, where, f"W{i}",
                            dtype, (sizes[i], sizes[i + 1])) for i in range(n_layers)]
    biases = [_read_member(archive, members[f"b{i}.npy"], archive_size, where, f"b{i}",
                           dtype, (sizes[i + 1],)) for i in range(n_layers)]
    return header, weights, biases


def load(path: str | os.PathLike, backend: str = "compiled") -> Network:
    """Read a network written by ``Network.save``.

    Every member of the archive is checked against the JSON header (shape,
    dtype, and the zip's own sizes) before its data is read, so refusing a
    hostile file costs no more memory than the model it claims to be.

    Parameters
    ----------
    path : str or path-like
        An ``.npz`` file written by ``save``.
    backend : {"compiled", "numpy"}
        Backend of the returned network.

    Returns
    -------
    Network

    Raises
    ------
    ModelFileError (a ValueError)
        When the file is not a fastnn model (a JSON model is pointed to
        ``Network.from_json``), is truncated or corrupted, or its arrays
        disagree with its header.
    FileNotFoundError, PermissionError, IsADirectoryError
        About the path rather than the file's content.
    """
    _check_backend(backend)
    where = os.fspath(path)
    try:
        with open(where, "rb") as f:
            _refuse_other_formats(f.read(4096), where)
            archive_size = os.fstat(f.fileno()).st_size
            with zipfile.ZipFile(f) as archive:
                header, weights, biases = _read_archive(archive, archive_size, where)
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
    try:
        return _network(header, weights, biases, backend)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{where}: {exc}") from None


def to_json(net: Network, path: str | os.PathLike | None = None) -> str:
    """The network as JSON text in the tutorials' format.

    Parameters
    ----------
    net : Network
        The network to write.
    path : str or path-like, optional
        When given, the text is also written there, as ``save`` writes: through
        a temporary file and a rename, following a symlink, keeping a replaced
        file's permission bits.

    Returns
    -------
    str
        The JSON text.

    Raises
    ------
    ValueError
        As ``save``, before anything is written.
    """
    net._check_param_dtypes()
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


def _json_source(source: Any) -> tuple[str, str | bytes]:
    """Where the JSON comes from (for messages), and its text or bytes."""
    if isinstance(source, (bytes, bytearray)):
        where, data = "JSON model", bytes(source)
    elif isinstance(source, str) and (source.startswith("\ufeff")
                                      or source.lstrip()[:1] in ("{", "[")):
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


def from_json(source: str | bytes | os.PathLike, backend: str = "compiled") -> Network:
    """Read a network from JSON in the tutorials' format (see ``to_json``).

    Files written by the tutorials' ``network.py`` (all-sigmoid layers, a
    ``cost`` name, no ``activations``) are read too.

    Parameters
    ----------
    source : str, bytes or path-like
        JSON text: bytes, or a str that starts with a byte-order mark or whose
        first non-space character is ``{`` or ``[``. Any other str, and any
        path-like, is the path of a JSON file (pass a ``pathlib.Path`` for a
        file name that starts with ``{`` or ``[``).
    backend : {"compiled", "numpy"}
        Backend of the returned network.

    Returns
    -------
    Network

    Raises
    ------
    ModelFileError (a ValueError)
        When the JSON is invalid (including too deeply nested), is not a model
        (an ``.npz`` model file is pointed to ``fastnn.load``), or holds
        anything but finite numbers of the right shapes as weights and biases.
    TypeError
        When ``source`` is neither text, bytes nor a path.
    """
    _check_backend(backend)
    where, data = _json_source(source)
    doc = _parse_json(data, where, "the text")
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
            n_in, n_out = sizes[i], sizes[i + 1]
            Ws.append(_real_array(weights[i], ((n_out, n_in),), where,
                                  f"weights[{i}] (n_out rows of n_in)").T)
            bs.append(_real_array(biases[i], ((n_out, 1), (n_out,)), where,
                                  f"biases[{i}]").reshape(-1))
        return _network(header, Ws, bs, backend)
    except ModelFileError:
        raise
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{where}: {exc}") from None
