"""MNIST in its original IDX format: reading, writing, verifying and fetching.

IDX layout (LeCun's): two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16,
0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, each dimension's
size as a big-endian uint32, then the values in row-major order, big-endian.
MNIST's images are ``2051`` (0x00000803: uint8, 3-D), its labels ``2049`` (uint8, 1-D).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import IO, Any, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

ENV_VAR = "FASTNN_DATA_DIR"

# The official SHA-256 of each file's *uncompressed* content. Mirrors serve
# differently compressed .gz wrappers of the same bytes, so only the content is
# compared, never the .gz bytes.
FILES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# Public mirrors of the gzip files, tried in order (LeCun's own site now
# often refuses downloads, so it comes last).
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

DOWNLOAD_TIMEOUT = 30.0  # seconds per connection attempt

_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_TYPES.items()}
_IDX_CODES.update({dt.newbyteorder(">"): code for code, dt in _IDX_TYPES.items()})

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 22  # read in 4 MiB pieces: a lying header cannot make us allocate more than the data


def _cache_dir() -> Path:
    return Path.home() / ".cache" / "fastnn" / "mnist"


def _how_to_point() -> str:
    names = ", ".join(f"{name}.gz" for name in FILES)
    return (f"download the four MNIST files ({names}; gzip-compressed or not) from any MNIST "
            f"mirror into a folder, then call load_mnist(data_dir='that/folder') or set the "
            f"environment variable {ENV_VAR} to that folder.")


# ---------------------------------------------------------------- IDX reading


def _open(path: Path) -> IO[bytes]:
    """The file's decompressed byte stream: gzip is recognised by its magic bytes, not its name."""
    with open(path, "rb") as f:
        head = f.read(2)
    if head == _GZIP_MAGIC:
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _read_exact(f: IO[bytes], nbytes: int) -> bytearray:
    """Up to ``nbytes`` from ``f``, growing the buffer only as data actually arrives."""
    buf = bytearray()
    while len(buf) < nbytes:
        chunk = f.read(min(_CHUNK, nbytes - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def _read_idx(path: PathLike, digest: bool = False) -> tuple[np.ndarray, str | None]:
    """Parse an IDX file; also return the SHA-256 of its uncompressed bytes when asked."""
    path = Path(path)
    sha = hashlib.sha256() if digest else None
    name = str(path)
    try:
        with _open(path) as raw:
            f: Any = raw
            head = _read_exact(f, 4)
            if len(head) < 4:
                raise ValueError(f"{name}: not an IDX file: it holds only {len(head)} bytes, "
                                 "fewer than the 4-byte magic number")
            zero, code, ndim = struct.unpack(">HBB", head)
            if zero != 0 or code not in _IDX_TYPES:
                raise ValueError(f"{name}: not an IDX file: bad magic number 0x{head.hex()} "
                                 "(expected two zero bytes, a type code among "
                                 f"{', '.join(f'0x{c:02X}' for c in _IDX_TYPES)} and the "
                                 "number of dimensions, e.g. 0x00000803 for MNIST images)")
            if ndim == 0:
                raise ValueError(f"{name}: bad IDX header: the magic number says 0 dimensions")
            dims_raw = _read_exact(f, 4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise ValueError(f"{name}: truncated IDX header: {ndim} dimension sizes "
                                 f"({4 * ndim} bytes) announced, {len(dims_raw)} bytes present")
            shape = struct.unpack(f">{ndim}I", dims_raw)
            dtype = _IDX_TYPES[code]
            nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
            data = _read_exact(f, nbytes)
            if len(data) < nbytes:
                raise ValueError(f"{name}: truncated IDX file: the header announces shape "
                                 f"{shape} of {dtype.newbyteorder('=')} ({nbytes} bytes of "
                                 f"data), but only {len(data)} bytes follow")
            if f.read(1):
                raise ValueError(f"{name}: wrong IDX sizes: more data follows the {nbytes} "
                                 f"bytes that the header's shape {shape} accounts for")
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{name}: corrupt or truncated gzip file: {exc}") from exc
    if sha is not None:
        sha.update(head)
        sha.update(dims_raw)
        sha.update(data)
    # A copy in memory NumPy allocates: NumPy asks Linux to back large arrays with huge
    # pages, and training reads the images' rows in random order (a row per 4 KiB page
    # otherwise, a TLB miss each): batch-256 epochs 3% faster (benches/NOTES.md 25).
    arr = np.frombuffer(data, dtype=dtype).reshape(shape)
    arr = arr.astype(dtype.newbyteorder("=")) if dtype.itemsize > 1 else arr.copy()
    return arr, (sha.hexdigest() if sha is not None else None)


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not) into a NumPy array.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Gzip compression is recognised from the content, whatever the name.

    Returns
    -------
    ndarray
        Of the file's shape and type (uint8 for MNIST), native byte order, writeable.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not well-formed IDX: bad magic number, truncated header or
        data, data beyond what the header's sizes account for, or a corrupt gzip stream.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.idx.gz")
    >>> write_idx(path, np.arange(6, dtype=np.uint8).reshape(2, 3))
    >>> read_idx(path)
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    """
    return _read_idx(path)[0]


# ---------------------------------------------------------------- IDX writing


def write_idx(path: PathLike, array: Any) -> None:
    """Write an array as an IDX file, gzip-compressed when ``path`` ends with ``.gz``.

    The file is written to a temporary name and then renamed, so a reader never
    sees a half-written file.

    Parameters
    ----------
    path : str or os.PathLike
        Destination.
    array : array-like
        At least 1-D, each dimension below 2**32, of dtype uint8, int8, int16,
        int32, float32 or float64 (the types IDX can hold).

    Raises
    ------
    TypeError
        For a dtype IDX cannot hold (e.g. int64: cast it first).
    ValueError
        For a 0-d array, more than 255 dimensions or a dimension of 2**32 or more.
    """
    arr = np.asarray(array)
    dt = arr.dtype.newbyteorder("=") if arr.dtype.byteorder in "<>" else arr.dtype
    if dt not in _IDX_CODES:
        raise TypeError(f"IDX cannot hold dtype {arr.dtype}; use uint8, int8, int16, int32, "
                        "float32 or float64 (e.g. array.astype(np.int32))")
    if arr.ndim == 0 or arr.ndim > 255:
        raise ValueError(f"IDX holds arrays of 1 to 255 dimensions, got {arr.ndim}")
    if any(s >= 2**32 for s in arr.shape):
        raise ValueError(f"IDX dimension sizes must be below 2**32, got shape {arr.shape}")
    code = _IDX_CODES[dt]
    header = struct.pack(f">HBB{arr.ndim}I", 0, code, arr.ndim, *arr.shape)
    data = np.ascontiguousarray(arr, dtype=_IDX_TYPES[code])
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as out:
            if path.name.endswith(".gz"):
                # mtime=0 and no file name: the same array always gives the same bytes
                with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
                    gz.write(header)
                    gz.write(data.tobytes())
            else:
                out.write(header)
                out.write(data.tobytes())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---------------------------------------------------------------- MNIST


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _download(folder: Path, name: str) -> None:
    """Fetch ``name``.gz from the first mirror that serves bytes with the official content."""
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for mirror in MIRRORS:
        url = mirror + name + ".gz"
        fd, tmp = tempfile.mkstemp(prefix=name + ".", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out, \
                    urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
                shutil.copyfileobj(response, out)
            _, sha = _read_idx(tmp, digest=True)
            if sha != FILES[name]:
                raise ValueError(f"SHA-256 of the content is {sha}, expected {FILES[name]}")
            os.replace(tmp, folder / (name + ".gz"))
            return
        except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors
            errors.append(f"  {url}: {exc}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise ConnectionError(f"could not download MNIST's {name}.gz into {folder}:\n"
                          + "\n".join(errors) + "\nWithout network access, "
                          + _how_to_point())


def _load_verified(path: Path, name: str) -> np.ndarray:
    arr, sha = _read_idx(path, digest=True)
    if sha != FILES[name]:
        raise ValueError(f"{path}: checksum mismatch: the SHA-256 of its uncompressed content "
                         f"is {sha}, but the official {name} has {FILES[name]}. The file is "
                         "damaged or not the original MNIST; delete it and fetch it again.")
    return arr


def load_mnist(data_dir: PathLike | None = None, download: bool = True
               ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load the MNIST digits: 60,000 training and 10,000 test images of 28x28 pixels.

    The four IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each plain or with
    ``.gz``) are read from the first of: ``data_dir``; the folder named by the
    environment variable ``FASTNN_DATA_DIR``; ``~/.cache/fastnn/mnist``. Every
    file's uncompressed content is checked against the official SHA-256.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Folder holding the files.
    download : bool, default True
        When files are missing from the folder, download them from public
        mirrors into it (verified, then kept there for the next call).

    Returns
    -------
    (X_train, y_train), (X_test, y_test) : tuple of tuples of ndarray
        Images as uint8 rows of 784 pixels (0-255), shapes (60000, 784) and
        (10000, 784); labels as uint8 in 0-9, shapes (60000,) and (10000,).
        Scale on the fly with ``fit(..., input_scale=1/255)``.

    Raises
    ------
    FileNotFoundError
        When files are missing and ``download`` is False.
    ConnectionError
        When files are missing and cannot be downloaded (e.g. no network).
    ValueError
        When a file is malformed or its content does not have the official checksum.

    Examples
    --------
    >>> (X_train, y_train), (X_test, y_test) = load_mnist()  # doctest: +SKIP
    >>> X_train.shape, X_train.dtype, y_train.shape  # doctest: +SKIP
    ((60000, 784), dtype('uint8'), (60000,))
    """
    if data_dir is not None:
        folder = Path(os.path.expanduser(os.fspath(data_dir)))
        source = "data_dir"
    elif os.environ.get(ENV_VAR):
        folder = Path(os.path.expanduser(os.environ[ENV_VAR]))
        source = f"${ENV_VAR}"
    else:
        folder = _cache_dir()
        source = "the cache folder"
    missing = [name for name in FILES if _find(folder, name) is None]
    if missing and not download:
        raise FileNotFoundError(
            f"MNIST files missing from {folder} ({source}): "
            + ", ".join(f"{name}[.gz]" for name in missing)
            + ". Pass download=True to fetch them from the public mirrors, or "
            + _how_to_point())
    for name in missing:
        _download(folder, name)
    arrays = {}
    for name in FILES:
        path = _find(folder, name)
        assert path is not None  # found above or just downloaded
        arrays[name] = _load_verified(path, name)
    X_train = arrays["train-images-idx3-ubyte"]
    X_test = arrays["t10k-images-idx3-ubyte"]
    # The checksums fix the shapes; flatten each 28x28 image into one 784-row.
    return ((X_train.reshape(X_train.shape[0], -1), arrays["train-labels-idx1-ubyte"]),
            (X_test.reshape(X_test.shape[0], -1), arrays["t10k-labels-idx1-ubyte"]))
