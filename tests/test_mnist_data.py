"""IDX reading and writing, and load_mnist's folders, checksums and downloads."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from conftest import needs_mnist

from fastnn.datasets import load_mnist, mnist, read_idx, write_idx

NAMES = list(mnist.FILES)


# ---------------------------------------------------------------- IDX format


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32,
                                   np.float64])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (4, 3, 2), (0, 3)])
def test_round_trip(tmp_path, suffix, dtype, shape):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is not None:
        a = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    else:
        a = rng.standard_normal(shape).astype(dtype)
    path = tmp_path / ("a.idx" + suffix)
    write_idx(path, a)
    b = read_idx(path)
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(b, a)
    assert b.flags.writeable
    with open(path, "rb") as f:
        assert (f.read(2) == b"\x1f\x8b") == (suffix == ".gz")


def test_layout_is_lecuns(tmp_path):
    # MNIST's image magic is 2051 (uint8, 3-D), then big-endian sizes, then the bytes.
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x", a)
    raw = (tmp_path / "x").read_bytes()
    assert struct.unpack(">i", raw[:4])[0] == 2051
    assert struct.unpack(">3I", raw[4:16]) == (2, 3, 4)
    assert raw[16:] == a.tobytes()
    write_idx(tmp_path / "y", np.array([1, 2], dtype=np.uint8))
    assert struct.unpack(">i", (tmp_path / "y").read_bytes()[:4])[0] == 2049
    # multi-byte values are stored big-endian
    write_idx(tmp_path / "z", np.array([1, 256], dtype=np.int32))
    assert (tmp_path / "z").read_bytes()[8:] == b"\x00\x00\x00\x01\x00\x00\x01\x00"


def test_gzip_recognised_by_content_not_name(tmp_path):
    a = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", a)
    os.rename(tmp_path / "a.gz", tmp_path / "plain-name")
    np.testing.assert_array_equal(read_idx(tmp_path / "plain-name"), a)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "plain-name")), a)


def test_big_endian_input_and_non_contiguous(tmp_path):
    a = np.arange(12, dtype=">f4").reshape(3, 4)[:, ::2]
    write_idx(tmp_path / "a", a)
    b = read_idx(tmp_path / "a")
    assert b.dtype == np.float32 and b.dtype.isnative
    np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("bad", [np.zeros(3, np.int64), np.zeros(3, bool),
                                 np.zeros(3, np.complex64), np.array(["a"])])
def test_write_refuses_types_idx_cannot_hold(tmp_path, bad):
    with pytest.raises(TypeError, match="IDX cannot hold"):
        write_idx(tmp_path / "a", bad)
    assert not list(tmp_path.iterdir())


def test_write_refuses_zero_dimensions(tmp_path):
    with pytest.raises(ValueError, match="1 to 255 dimensions"):
        write_idx(tmp_path / "a", np.uint8(3))


def _write_raw(path: Path, raw: bytes, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("head", [b"\x01\x00\x08\x01", b"\x00\x01\x08\x01",
                                  b"\x00\x00\x07\x01", b"PK\x03\x04"])
def test_bad_magic(tmp_path, compress, head):
    path = _write_raw(tmp_path / "f", head + struct.pack(">I", 2) + b"\x01\x02", compress)
    with pytest.raises(ValueError, match="bad magic number"):
        read_idx(path)


def test_zero_dimensions_in_header(tmp_path):
    path = _write_raw(tmp_path / "f", b"\x00\x00\x08\x00")
    with pytest.raises(ValueError, match="0 dimensions"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True])
def test_too_short_for_magic(tmp_path, compress):
    path = _write_raw(tmp_path / "f", b"\x00\x00", compress)
    with pytest.raises(ValueError, match="fewer than the 4-byte magic"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_header(tmp_path, compress):
    raw = b"\x00\x00\x08\x03" + struct.pack(">2I", 2, 3)  # three sizes announced, two given
    with pytest.raises(ValueError, match="truncated IDX header"):
        read_idx(_write_raw(tmp_path / "f", raw, compress))


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_data(tmp_path, compress):
    raw = b"\x00\x00\x08\x02" + struct.pack(">2I", 3, 4) + bytes(11)  # 12 needed
    with pytest.raises(ValueError, match="truncated IDX file.*only 11 bytes"):
        read_idx(_write_raw(tmp_path / "f", raw, compress))


@pytest.mark.parametrize("compress", [False, True])
def test_data_beyond_the_sizes(tmp_path, compress):
    raw = b"\x00\x00\x08\x02" + struct.pack(">2I", 3, 4) + bytes(13)
    with pytest.raises(ValueError, match="wrong IDX sizes"):
        read_idx(_write_raw(tmp_path / "f", raw, compress))


def test_wrong_sizes_for_multibyte_type(tmp_path):
    raw = b"\x00\x00\x0c\x01" + struct.pack(">I", 3) + bytes(8)  # 3 int32 need 12 bytes
    with pytest.raises(ValueError, match="truncated IDX file"):
        read_idx(_write_raw(tmp_path / "f", raw))


def test_huge_announced_size_does_not_allocate_it(tmp_path):
    # A damaged header claiming ~2**64 bytes must fail on the missing data, not in malloc.
    raw = b"\x00\x00\x0e\x03" + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**20) + bytes(64)
    with pytest.raises(ValueError, match="truncated IDX file"):
        read_idx(_write_raw(tmp_path / "f", raw))


def test_announced_size_that_wraps_around_64_bits(tmp_path):
    # 2**31 * 2**31 * 4 bytes is 2**64: computed in uint64 it would be 0 bytes.
    raw = b"\x00\x00\x08\x03" + struct.pack(">3I", 2**31, 2**31, 4)
    with pytest.raises(ValueError, match="truncated IDX file"):
        read_idx(_write_raw(tmp_path / "f", raw))


def test_truncated_gzip_stream(tmp_path):
    write_idx(tmp_path / "a.gz", np.arange(5000, dtype=np.int32))
    blob = (tmp_path / "a.gz").read_bytes()
    (tmp_path / "b.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated gzip"):
        read_idx(tmp_path / "b.gz")


def test_corrupt_gzip_stream(tmp_path):
    write_idx(tmp_path / "a.gz", np.arange(5000, dtype=np.int32))
    blob = bytearray((tmp_path / "a.gz").read_bytes())
    blob[-6] ^= 0xFF  # inside the CRC-32 / size trailer
    (tmp_path / "b.gz").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="corrupt or truncated gzip"):
        read_idx(tmp_path / "b.gz")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


# ---------------------------------------------------------------- load_mnist on small fakes


def _fake_mnist(folder: Path, compress: dict | bool = True, n_train: int = 6, n_test: int = 4):
    """Write four small MNIST-shaped files; return {name: sha256 of the content}."""
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for name, a in arrays.items():
        gz = compress if isinstance(compress, bool) else compress[name]
        path = folder / (name + (".gz" if gz else ""))
        write_idx(path, a)
        sums[name] = hashlib.sha256(read_idx_bytes(path)).hexdigest()
    return arrays, sums


def read_idx_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    """No FASTNN_DATA_DIR, a fresh home, and mirrors that cannot be reached."""
    monkeypatch.delenv("FASTNN_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(mnist, "MIRRORS", ((tmp_path / "no-mirror").as_uri() + "/",))
    return tmp_path


def _check_loaded(result, arrays):
    (X_train, y_train), (X_test, y_test) = result
    np.testing.assert_array_equal(X_train, arrays["train-images-idx3-ubyte"].reshape(-1, 784))
    np.testing.assert_array_equal(y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(X_test, arrays["t10k-images-idx3-ubyte"].reshape(-1, 784))
    np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte"])
    assert X_train.dtype == y_train.dtype == np.uint8


@pytest.mark.parametrize("compress", [True, False, {"train-images-idx3-ubyte": True,
                                                     "train-labels-idx1-ubyte": False,
                                                     "t10k-images-idx3-ubyte": False,
                                                     "t10k-labels-idx1-ubyte": True}])
def test_load_from_data_dir(fake_env, monkeypatch, compress):
    arrays, sums = _fake_mnist(fake_env / "d", compress)
    monkeypatch.setattr(mnist, "FILES", sums)
    _check_loaded(load_mnist(fake_env / "d", download=False), arrays)
    _check_loaded(load_mnist(str(fake_env / "d")), arrays)


def test_env_var_then_cache_folder(fake_env, monkeypatch):
    arrays, sums = _fake_mnist(fake_env / "env")
    monkeypatch.setattr(mnist, "FILES", sums)
    monkeypatch.setenv("FASTNN_DATA_DIR", str(fake_env / "env"))
    _check_loaded(load_mnist(download=False), arrays)
    # data_dir wins over the variable
    other, other_sums = _fake_mnist(fake_env / "other", n_train=3)
    monkeypatch.setattr(mnist, "FILES", other_sums)
    _check_loaded(load_mnist(fake_env / "other", download=False), other)
    # without the variable: the cache folder under the home directory
    monkeypatch.delenv("FASTNN_DATA_DIR")
    cached, cached_sums = _fake_mnist(fake_env / "home" / ".cache" / "fastnn" / "mnist", n_test=2)
    monkeypatch.setattr(mnist, "FILES", cached_sums)
    _check_loaded(load_mnist(download=False), cached)


def test_checksum_mismatch_is_an_error(fake_env, monkeypatch):
    _, sums = _fake_mnist(fake_env / "d")
    sums["t10k-labels-idx1-ubyte"] = "0" * 64
    monkeypatch.setattr(mnist, "FILES", sums)
    with pytest.raises(ValueError, match="checksum mismatch.*t10k-labels"):
        load_mnist(fake_env / "d")


def test_real_checksums_refuse_fake_data(fake_env):
    _fake_mnist(fake_env / "d")
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_mnist(fake_env / "d", download=False)


def test_missing_files_without_download(fake_env, monkeypatch):
    _, sums = _fake_mnist(fake_env / "d")
    monkeypatch.setattr(mnist, "FILES", sums)
    os.remove(fake_env / "d" / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(fake_env / "d", download=False)
    message = str(info.value)
    listed = message.split("Pass download")[0]
    assert "t10k-images-idx3-ubyte" in listed and "train-images" not in listed
    assert "data_dir" in message and "FASTNN_DATA_DIR" in message
    with pytest.raises(FileNotFoundError, match="FASTNN_DATA_DIR"):
        load_mnist(download=False)  # empty cache folder


def test_download_failure_says_how_to_point_at_a_folder(fake_env):
    with pytest.raises(ConnectionError) as info:
        load_mnist(fake_env / "empty", download=True)
    message = str(info.value)
    assert "could not download" in message
    assert "data_dir" in message and "FASTNN_DATA_DIR" in message
    assert not [p for p in (fake_env / "empty").iterdir() if p.name.endswith(".part")]


def test_download_verifies_and_caches(fake_env, monkeypatch):
    arrays, sums = _fake_mnist(fake_env / "mirror")
    monkeypatch.setattr(mnist, "FILES", sums)
    # the first mirror is unreachable, the second serves the files
    monkeypatch.setattr(mnist, "MIRRORS", ((fake_env / "down").as_uri() + "/",
                                           (fake_env / "mirror").as_uri() + "/"))
    _check_loaded(load_mnist(), arrays)
    cache = fake_env / "home" / ".cache" / "fastnn" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(n + ".gz" for n in NAMES)
    # cached: no mirror needed any more
    monkeypatch.setattr(mnist, "MIRRORS", ())
    _check_loaded(load_mnist(download=False), arrays)


def test_download_refuses_wrong_content(fake_env, monkeypatch):
    _, sums = _fake_mnist(fake_env / "mirror")
    sums["train-labels-idx1-ubyte"] = "f" * 64
    monkeypatch.setattr(mnist, "FILES", sums)
    monkeypatch.setattr(mnist, "MIRRORS", ((fake_env / "mirror").as_uri() + "/",))
    with pytest.raises(ConnectionError, match="SHA-256"):
        load_mnist(fake_env / "dest")
    assert not (fake_env / "dest" / "train-labels-idx1-ubyte.gz").exists()
    assert not [p for p in (fake_env / "dest").iterdir() if p.name.endswith(".part")]


# ---------------------------------------------------------------- the real data


@needs_mnist
def test_real_mnist():
    (X_train, y_train), (X_test, y_test) = load_mnist(download=False)
    assert X_train.shape == (60000, 784) and X_test.shape == (10000, 784)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert X_train.dtype == X_test.dtype == y_train.dtype == y_test.dtype == np.uint8
    assert X_train.flags.c_contiguous and X_test.flags.c_contiguous
    for y in (y_train, y_test):
        assert y.min() == 0 and y.max() == 9
        assert len(np.unique(y)) == 10
    assert X_train.min() == 0 and X_train.max() == 255
    # digits are drawn in the middle: the top row is nearly blank, the middle row is not
    images = X_train.reshape(-1, 28, 28)
    assert images[:, 0, :].mean() < 1 < 10 < images[:, 14, :].mean()
