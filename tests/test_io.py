"""Saving and loading: the .npz model file (format 2, and format 1 still read;
bit-exact, atomic, validated), the tutorials' JSON format, and the io module's own
API of headers and layers."""

from __future__ import annotations

import ast
import io
import json
import os
import socket
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import weights_of

import fastnn
from fastnn import Dense, ModelFileError, Network
from fastnn.io import (MAX_LAYERS, check_param_dtypes, model_from_json, model_to_json,
                       read_model, write_json, write_model)
from fastnn.layers import LAYER_CLASSES, Layer

LOSS_NETS = {
    "mse": (["tanh", "identity"], "mse"),
    "mse_sigmoid_out": (["relu", "sigmoid"], "mse"),
    "bce": (["sigmoid", "identity"], "binary_cross_entropy"),
    "bce_fused_sigmoid": (["tanh", "sigmoid"], "binary_cross_entropy"),
    "softmax": (["relu", "identity"], "softmax_cross_entropy"),
    "softmax_fused": (["tanh", "softmax"], "softmax_cross_entropy"),
}


def _trained(case: str, dtype, backend="compiled", seed=0) -> tuple[Network, np.ndarray]:
    """A 3-5-2 network of ``case`` with arbitrary, non-round weights and biases (drawn,
    not trained: saving and loading do not depend on training), and inputs for it."""
    acts, loss = LOSS_NETS[case]
    rng = np.random.default_rng(seed)
    net = Network([Dense(3, 5, acts[0]), Dense(5, 2, acts[1])], loss=loss, dtype=dtype,
                  seed=seed, backend=backend)
    for layer in net.layers:
        layer.W = rng.standard_normal(layer.W.shape) / 3
        layer.b = rng.standard_normal(layer.b.shape) / 7
    return net, rng.standard_normal((20, 3))


def _assert_same_network(a: Network, b: Network) -> None:
    assert [(l.n_in, l.n_out, l.activation) for l in a.layers] == \
        [(l.n_in, l.n_out, l.activation) for l in b.layers]
    assert a.loss == b.loss and a.dtype == b.dtype
    for wa, wb in zip(weights_of(a), weights_of(b)):
        assert wa.dtype == wb.dtype and wa.shape == wb.shape
        np.testing.assert_array_equal(wa, wb)


def _assert_same_predictions(a: Network, b: Network, X) -> None:
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    if a.loss != "mse":
        np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


# ---------------------------------------------------------------- .npz round trip


@pytest.mark.parametrize("case", sorted(LOSS_NETS))
def test_save_load_round_trip_is_bit_exact(case, dtype, tmp_path):
    net, X = _trained(case, dtype)
    path = tmp_path / "model.npz"
    net.save(str(path))
    loaded = fastnn.load(str(path))
    assert loaded.backend == "compiled"
    _assert_same_network(net, loaded)
    _assert_same_predictions(net, loaded, X)
    on_numpy = fastnn.load(str(path), backend="numpy")
    assert on_numpy.backend == "numpy"
    _assert_same_network(net, on_numpy)


def test_saved_file_is_a_plain_npz_of_format_2(tmp_path):
    net, _ = _trained("softmax", np.float32)
    path = tmp_path / "model.npz"
    net.save(path)
    assert zipfile.is_zipfile(path)
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"header", "layers.0.W", "layers.0.b",
                                   "layers.1.W", "layers.1.b"}
        for i, layer in enumerate(net.layers):
            np.testing.assert_array_equal(data[f"layers.{i}.W"], layer.W)
            np.testing.assert_array_equal(data[f"layers.{i}.b"], layer.b)
        header = json.loads(data["header"].tobytes())
    # Each layer's kind and config: what it takes to rebuild it.
    assert header == {
        "format": "fastnn", "version": 2, "loss": "softmax_cross_entropy",
        "dtype": "float32", "input_shape": [3],
        "layers": [{"kind": "dense", "config": {"n_in": 3, "n_out": 5, "activation": "relu"}},
                   {"kind": "dense",
                    "config": {"n_in": 5, "n_out": 2, "activation": "identity"}}]}
    for layer, entry in zip(net.layers, header["layers"]):
        assert entry == {"kind": layer.kind, "config": layer.config()}


def test_paths_as_str_or_pathlib_and_any_suffix(tmp_path):
    net, X = _trained("mse", np.float64)
    for path in (tmp_path / "a.npz", str(tmp_path / "b.npz"), tmp_path / "model.bin"):
        net.save(path)
        _assert_same_network(net, fastnn.load(path))


def test_save_is_atomic_and_overwrites(tmp_path, monkeypatch):
    first, X = _trained("softmax", np.float32, seed=1)
    second, _ = _trained("softmax", np.float32, seed=2)
    path = tmp_path / "model.npz"
    first.save(path)
    second.save(path)  # overwriting an existing model works
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]  # no temporary file left behind
    _assert_same_network(second, fastnn.load(path))

    # A save that fails half-way leaves the previous file intact and no temporary file.
    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a model")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        first.save(path)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    _assert_same_network(second, fastnn.load(path))

    with pytest.raises(FileNotFoundError):
        first.save(tmp_path / "no-such-folder" / "model.npz")
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_saved_files_get_the_usual_permissions(tmp_path):
    # Like np.save or open(): 0666 less the umask, not a private temporary file's 0600.
    umask = os.umask(0o022)
    os.umask(umask)
    net, _ = _trained("mse", np.float32)
    net.save(tmp_path / "model.npz")
    net.to_json(tmp_path / "model.json")
    for name in ("model.npz", "model.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask


# ---------------------------------------------------------------- saving over what is there

# Both writers replace files the same way; each is read back by its reader.
WRITERS = {"save": (lambda net, path: net.save(path), fastnn.load),
           "to_json": (lambda net, path: net.to_json(path), Network.from_json)}


def _no_temporary_files(*folders) -> None:
    for folder in folders:
        leftovers = [name for name in os.listdir(folder) if name.endswith(".tmp")]
        assert not leftovers, f"temporary files left behind in {folder}: {leftovers}"


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_save_writes_through_a_symlink(writer, tmp_path):
    write, read = WRITERS[writer]
    first, _ = _trained("mse", np.float64, seed=1)
    second, _ = _trained("mse", np.float64, seed=2)
    (tmp_path / "models").mkdir()
    target = tmp_path / "models" / "model"
    link = tmp_path / "current"
    write(first, target)
    link.symlink_to(target)
    write(second, link)
    assert link.is_symlink() and os.readlink(link) == str(target)  # still the same link
    _assert_same_network(second, read(target))  # and its target got the model
    # A dangling link: its target is created, as open() would.
    dangling = tmp_path / "next"
    dangling.symlink_to(tmp_path / "models" / "next-model")
    write(first, dangling)
    assert dangling.is_symlink()
    _assert_same_network(first, read(tmp_path / "models" / "next-model"))
    _no_temporary_files(tmp_path, tmp_path / "models")


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664, 0o444], ids=oct)
def test_save_keeps_the_permission_bits_of_the_file_it_replaces(writer, mode, tmp_path):
    write, read = WRITERS[writer]
    net, _ = _trained("mse", np.float32)
    path = tmp_path / "model"
    write(net, path)
    os.chmod(path, mode)
    umask = os.umask(0o022)  # would clear the group write bit of 0664
    try:
        write(net, path)
        # Through a symlink, the target's bits are kept (the link's own do not matter).
        (tmp_path / "link").symlink_to(path)
        write(net, tmp_path / "link")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o7777 == mode
    _assert_same_network(net, read(path))


def _not_regular(kind: str, path) -> None:
    """Make ``path`` a ``kind`` of file that is not a regular file."""
    if kind == "directory":
        path.mkdir()
        (path / "inside").write_text("kept")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to(os.devnull)  # a character device, reached through a link
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()


@pytest.mark.skipif(os.name != "posix", reason="FIFOs, devices and sockets are POSIX")
@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("kind", ["directory", "fifo", "device", "socket"])
def test_save_refuses_what_is_not_a_regular_file(writer, kind, tmp_path):
    write, _ = WRITERS[writer]
    net, _ = _trained("mse", np.float32)
    path = tmp_path / "model"
    _not_regular(kind, path)
    before = os.lstat(path)
    # A reader holds the FIFO open, so that a save that wrongly opened it for
    # writing would not hang the test but leave its bytes in the pipe.
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK) if kind == "fifo" else None
    try:
        with pytest.raises(ValueError, match="not a regular file"):
            write(net, path)
        if reader is not None:
            assert os.read(reader, 1) == b""  # nothing was written into the pipe
    finally:
        if reader is not None:
            os.close(reader)
    after = os.lstat(path)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)  # left alone
    if kind == "directory":
        assert os.listdir(path) == ["inside"]
    _no_temporary_files(tmp_path)


@pytest.mark.skipif(not hasattr(os, "link"), reason="needs hard links")
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_save_refuses_a_file_with_other_hard_links(writer, tmp_path):
    # The atomic rename would give `path` a new file and leave the other link
    # with the old model: refused, so that the two names cannot silently disagree.
    write, read = WRITERS[writer]
    first, _ = _trained("mse", np.float64, seed=1)
    second, _ = _trained("mse", np.float64, seed=2)
    path, other = tmp_path / "model", tmp_path / "backup"
    write(first, path)
    os.link(path, other)
    with pytest.raises(ValueError, match="2 hard links"):
        write(second, path)
    assert os.path.samefile(path, other)
    _assert_same_network(first, read(path))
    _no_temporary_files(tmp_path)


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failed_save_removes_its_temporary_file(writer, failing, tmp_path, monkeypatch):
    # Fails while writing (fsync) or in the final rename, in an existing folder;
    # through a symlink, so the temporary file is beside the target, not the link.
    write, read = WRITERS[writer]
    first, _ = _trained("mse", np.float64, seed=1)
    second, _ = _trained("mse", np.float64, seed=2)
    (tmp_path / "models").mkdir()
    target = tmp_path / "models" / "model"
    write(first, target)
    link = tmp_path / "link"
    link.symlink_to(target)

    def fail(*args):
        raise OSError(f"{failing} failed")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match=f"{failing} failed"):
        write(second, link)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path / "models")) == ["model"]
    _no_temporary_files(tmp_path)
    _assert_same_network(first, read(target))


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_save_refuses_a_layer_shared_with_a_network_of_another_dtype(writer, tmp_path):
    # The float64 network converted the shared layer: written as is, its float64
    # arrays would contradict the float32 header, and load would refuse the file.
    write, _ = WRITERS[writer]
    shared = Dense(3, 2, "tanh")
    net32 = Network([shared], dtype="float32", seed=0)
    Network([shared], dtype="float64", seed=0)
    path = tmp_path / "model"
    with pytest.raises(TypeError, match=r"layers\[0\]\.W is float64 .* shared"):
        write(net32, path)
    assert os.listdir(tmp_path) == []


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastnn.load(tmp_path / "nothing.npz")


# ---------------------------------------------------------------- damaged files


@pytest.fixture
def saved(tmp_path):
    net, _ = _trained("softmax", np.float64)
    path = tmp_path / "model.npz"
    net.save(path)
    return net, path, path.read_bytes()


def test_model_file_error_is_a_value_error():
    assert issubclass(ModelFileError, ValueError)


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.25, 0.5, 0.75, 0.95, 0.999])
def test_truncated_file_is_refused(fraction, saved, tmp_path):
    _, _, data = saved
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(ModelFileError):
        fastnn.load(bad)


def test_flipped_bytes_in_the_weights_are_refused(saved, tmp_path):
    net, _, data = saved
    raw = net.layers[0].W.tobytes()
    start = data.find(raw)
    assert start > 0, "the weights are stored uncompressed in the archive"
    for offset in (0, len(raw) // 2, len(raw) - 1):
        bad = bytearray(data)
        bad[start + offset] ^= 0x5A
        path = tmp_path / "corrupted.npz"
        path.write_bytes(bytes(bad))
        with pytest.raises(ModelFileError):
            fastnn.load(path)


def test_any_flipped_byte_is_refused_or_harmless(saved, tmp_path):
    # Wherever a byte is flipped, load either refuses the file with ModelFileError or
    # (when the byte is zip bookkeeping that nothing reads) returns the same network.
    net, _, data = saved
    path = tmp_path / "corrupted.npz"
    for pos in range(0, len(data), 5):
        bad = bytearray(data)
        bad[pos] ^= 0xFF
        path.write_bytes(bytes(bad))
        try:
            loaded = fastnn.load(path)
        except ModelFileError:
            continue
        _assert_same_network(net, loaded)


def _write_model(path, header, arrays):
    """An .npz with a hand-made header (a dict, or raw bytes) and arrays."""
    if isinstance(header, dict):
        header = json.dumps(header).encode()
    payload = {} if header is None else {"header": np.frombuffer(header, dtype=np.uint8)}
    payload.update(arrays)
    with open(path, "wb") as f:
        np.savez(f, **payload)


def _good_parts(dtype="float64"):
    """A 3-4-2 model in format 1: its header and its arrays."""
    header = {"format": "fastnn", "version": 1, "sizes": [3, 4, 2],
              "activations": ["tanh", "identity"], "loss": "mse", "dtype": dtype}
    rng = np.random.default_rng(0)
    arrays = {"W0": rng.standard_normal((3, 4)), "b0": np.zeros(4),
              "W1": rng.standard_normal((4, 2)), "b1": np.zeros(2)}
    return header, {k: v.astype(dtype) for k, v in arrays.items()}


def test_hand_made_good_file_loads(tmp_path):
    header, arrays = _good_parts()
    _write_model(tmp_path / "m.npz", header, arrays)
    net = fastnn.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(net.layers[1].W, arrays["W1"])


def _write_format1(path, net) -> None:
    """``net`` written as fastnn wrote model files before format 2: a header of
    sizes and activations, and members W0, b0, W1, b1, ..."""
    header = {"format": "fastnn", "version": 1,
              "sizes": [net.layers[0].n_in] + [layer.n_out for layer in net.layers],
              "activations": [layer.activation for layer in net.layers],
              "loss": net.loss, "dtype": str(net.dtype)}
    arrays = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    for i, layer in enumerate(net.layers):
        arrays[f"W{i}"] = layer.W
        arrays[f"b{i}"] = layer.b
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("case", sorted(LOSS_NETS))
def test_format_1_file_still_loads_bit_exactly(case, dtype, backend, tmp_path):
    net, X = _trained(case, dtype, backend)
    path = tmp_path / "old.npz"
    _write_format1(path, net)
    loaded = fastnn.load(path, backend=backend)
    assert loaded.backend == backend
    _assert_same_network(net, loaded)
    _assert_same_predictions(net, loaded, X)
    # Read as format 2 would give it: the header and built Dense layers.
    header, layers = fastnn.io.read_model(path)
    assert header == {"loss": net.loss, "dtype": str(np.dtype(dtype)), "input_shape": [3]}
    assert [(l.kind, l.config(), l.in_shape, l.out_shape) for l in layers] == \
        [(l.kind, l.config(), (l.n_in,), (l.n_out,)) for l in net.layers]
    # Saved again, it is written in format 2 with the same arrays.
    loaded.save(path)
    with np.load(path) as data:
        assert json.loads(data["header"].tobytes())["version"] == 2
        np.testing.assert_array_equal(data["layers.1.W"], net.layers[1].W)


TAMPERED = {
    "sizes_wrong": lambda h, a: h.update(sizes=[3, 5, 2]),
    "sizes_short": lambda h, a: h.update(sizes=[3]),
    "sizes_negative": lambda h, a: h.update(sizes=[3, -4, 2]),
    "sizes_float": lambda h, a: h.update(sizes=[3, 4.0, 2]),
    "sizes_bool": lambda h, a: h.update(sizes=[3, True, 2]),
    "sizes_string": lambda h, a: h.update(sizes="3,4,2"),
    "sizes_huge": lambda h, a: h.update(sizes=[3, 10**12, 2]),
    "activation_unknown": lambda h, a: h.update(activations=["gelu", "identity"]),
    "activation_count": lambda h, a: h.update(activations=["tanh"]),
    "activation_not_str": lambda h, a: h.update(activations=[["tanh"], "identity"]),
    "softmax_hidden": lambda h, a: h.update(activations=["softmax", "identity"],
                                            loss="softmax_cross_entropy"),
    "softmax_with_mse": lambda h, a: h.update(activations=["tanh", "softmax"]),
    "loss_unknown": lambda h, a: h.update(loss="hinge"),
    "loss_list": lambda h, a: h.update(loss=["mse"]),
    "loss_missing": lambda h, a: h.pop("loss"),
    "dtype_int": lambda h, a: h.update(dtype="int32"),
    "dtype_float16": lambda h, a: h.update(dtype="float16"),
    "dtype_missing": lambda h, a: h.pop("dtype"),
    "dtype_dict": lambda h, a: h.update(dtype={"names": ["a"], "formats": ["f8"]}),
    "dtype_disagrees": lambda h, a: h.update(dtype="float32"),
    "format_other": lambda h, a: h.update(format="other"),
    "format_missing": lambda h, a: h.pop("format"),
    "version_2": lambda h, a: h.update(version=2),  # a format 1 header is not format 2
    "version_3": lambda h, a: h.update(version=3),
    "version_true": lambda h, a: h.update(version=True),
    "version_float": lambda h, a: h.update(version=1.0),
    "version_missing": lambda h, a: h.pop("version"),
    "too_many_layers": lambda h, a: h.update(sizes=[1] * 10_002,
                                             activations=["tanh"] * 10_001),
    "arrays_named_as_format_2": lambda h, a: a.update(
        {f"layers.{k[1]}.{k[0]}": a.pop(k) for k in list(a)}),
    "extra_array": lambda h, a: a.update(W2=np.zeros((2, 2))),
    "missing_array": lambda h, a: a.pop("b1"),
    "renamed_array": lambda h, a: a.update(bias1=a.pop("b1")),
    "array_dtype": lambda h, a: a.update(W0=a["W0"].astype(np.float32)),
    "array_int": lambda h, a: a.update(b0=np.zeros(4, dtype=np.int64)),
    "array_shape": lambda h, a: a.update(W0=a["W0"].T.copy()),
    "array_1d": lambda h, a: a.update(W0=a["W0"].ravel()),
    "array_nan": lambda h, a: a["W1"].__setitem__((0, 0), np.nan),
    "array_inf": lambda h, a: a["b0"].__setitem__(0, np.inf),
    "array_object": lambda h, a: a.update(W0=np.array([[object()] * 4] * 3)),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_file_is_refused(case, tmp_path):
    header, arrays = _good_parts()
    TAMPERED[case](header, arrays)
    path = tmp_path / "tampered.npz"
    _write_model(path, header, arrays)
    with pytest.raises(ModelFileError):
        fastnn.load(path)


@pytest.mark.parametrize("header", [
    None, b"", b"not json", b"\xff\xfe", b"[1, 2, 3]", b'"fastnn"', b"null",
], ids=["missing", "empty", "not_json", "not_utf8", "list", "string", "null"])
def test_bad_header_bytes_are_refused(header, tmp_path):
    _, arrays = _good_parts()
    path = tmp_path / "bad.npz"
    _write_model(path, header, arrays)
    with pytest.raises(ModelFileError):
        fastnn.load(path)


def test_header_of_the_wrong_dtype_is_refused(tmp_path):
    _, arrays = _good_parts()
    path = tmp_path / "bad.npz"
    with open(path, "wb") as f:
        np.savez(f, header=np.arange(5), **arrays)
    with pytest.raises(ModelFileError):
        fastnn.load(path)


@pytest.mark.parametrize("content", ["npz", "npy", "text", "random", "empty", "zip"])
def test_other_files_are_refused(content, tmp_path):
    path = tmp_path / "other"
    if content == "npz":
        np.savez(path.with_suffix(".npz"), a=np.arange(3), b=np.ones((2, 2)))
        path = path.with_suffix(".npz")
    elif content == "npy":
        np.save(path.with_suffix(".npy"), np.arange(3))
        path = path.with_suffix(".npy")
    elif content == "text":
        path.write_text("W0,b0\n1,2\n")
    elif content == "random":
        path.write_bytes(np.random.default_rng(0).bytes(2000))
    elif content == "empty":
        path.write_bytes(b"")
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "hello")
    with pytest.raises(ModelFileError):
        fastnn.load(path)


def test_compressed_and_fortran_ordered_files_load(tmp_path):
    # What np.savez_compressed writes (deflated members), and arrays in Fortran order.
    header, arrays = _good_parts()
    path = tmp_path / "m.npz"
    with open(path, "wb") as f:
        np.savez_compressed(f, header=np.frombuffer(json.dumps(header).encode(), np.uint8),
                            **{k: np.asfortranarray(v) for k, v in arrays.items()})
    net = fastnn.load(path)
    for i, layer in enumerate(net.layers):
        np.testing.assert_array_equal(layer.W, arrays[f"W{i}"])
        np.testing.assert_array_equal(layer.b, arrays[f"b{i}"])


def _npy(shape, dtype=np.float64) -> bytes:
    """An .npy header announcing ``shape`` and ``dtype``, without the data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(
        np.dtype(dtype)), "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _hostile_model(path, version, sizes, W0_chunks, W0_zip_size=None) -> None:
    """A deflated model archive of format ``version``, of dense layers of ``sizes``,
    whose first weights member is ``W0_chunks``, and whose zip directory says that
    member holds ``W0_zip_size`` bytes (default: the truth)."""
    n_layers = len(sizes) - 1
    if version == 1:
        header = {"sizes": sizes, "activations": ["tanh"] * n_layers}
        names = [(f"W{i}", f"b{i}") for i in range(n_layers)]
    else:
        header = {"input_shape": sizes[:1],
                  "layers": [{"kind": "dense", "config": {"n_in": sizes[i], "n_out": sizes[i + 1],
                                                          "activation": "tanh"}}
                             for i in range(n_layers)]}
        names = [(f"layers.{i}.W", f"layers.{i}.b") for i in range(n_layers)]
    header.update(format="fastnn", version=version, loss="mse", dtype="float64")
    members = {"header": np.frombuffer(json.dumps(header).encode(), np.uint8)}
    for i, (W, b) in enumerate(names):
        members[b] = np.zeros(sizes[i + 1])
        if i > 0:
            members[W] = np.zeros((sizes[i], sizes[i + 1]))
    W0 = f"{names[0][0]}.npy".encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, arr in members.items():
            buf = io.BytesIO()
            np.save(buf, arr)
            z.writestr(f"{name}.npy", buf.getvalue())
        with z.open(W0.decode(), "w") as member:  # streamed: the test never holds it whole
            for chunk in W0_chunks:
                member.write(chunk)
    if W0_zip_size is not None:  # patch W0's uncompressed size in the central directory
        data = bytearray(path.read_bytes())
        # A central directory entry: signature, ..., uncompressed size at 24, name at 46.
        entry = data.find(b"PK\x01\x02")
        while data[entry + 46:entry + 46 + len(W0)] != W0:
            entry = data.find(b"PK\x01\x02", entry + 1)
        data[entry + 24:entry + 28] = W0_zip_size.to_bytes(4, "little")
        path.write_bytes(bytes(data))


BIG = 64 * 2**20  # decompressed bytes of the hostile members (about 64 KB compressed)


def _zeros(n_bytes: int):
    chunk = bytes(2**20)
    for _ in range(n_bytes // len(chunk)):
        yield chunk


HOSTILE = {
    # W0 announces its 3 x 4 shape, then holds 64 MB.
    "member_too_long": lambda path, v: _hostile_model(path, v, [3, 4, 2],
                                                      [_npy((3, 4)), *_zeros(BIG)]),
    # The zip directory hides the 64 MB behind W0's true size.
    "zip_size_too_small": lambda path, v: _hostile_model(path, v, [3, 4, 2],
                                                         [_npy((3, 4)), *_zeros(BIG)],
                                                         W0_zip_size=len(_npy((3, 4))) + 96),
    # The header and the zip directory claim a 160 MB layer that a few bytes hold.
    "claimed_layer_missing": lambda path, v: _hostile_model(
        path, v, [10**7, 2], [_npy((10**7, 2))],
        W0_zip_size=len(_npy((10**7, 2))) + 16 * 10**7),
    # W0's .npy header claims a 10**6 x 10**6 array.
    "npy_shape_huge": lambda path, v: _hostile_model(path, v, [3, 4, 2],
                                                     [_npy((10**6, 10**6))]),
    # The header claims 10**6 x 10**6 weights: refused from the header alone.
    "header_shape_huge": lambda path, v: _hostile_model(path, v, [10**6, 10**6, 2],
                                                        [_npy((10**6, 10**6))]),
}


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_before_its_data_is_read(case, version, tmp_path):
    path = tmp_path / "hostile.npz"
    HOSTILE[case](path, version)
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError):
            fastnn.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"refusing a {path.stat().st_size}-byte file cost {peak} bytes"


# ---------------------------------------------------------------- format 2 headers


def _good_parts_v2(dtype="float64"):
    """A 3-4-2 model in format 2: its header and its arrays."""
    header = {"format": "fastnn", "version": 2, "loss": "mse", "dtype": dtype,
              "input_shape": [3],
              "layers": [{"kind": "dense",
                          "config": {"n_in": 3, "n_out": 4, "activation": "tanh"}},
                         {"kind": "dense",
                          "config": {"n_in": 4, "n_out": 2, "activation": "identity"}}]}
    rng = np.random.default_rng(0)
    arrays = {"layers.0.W": rng.standard_normal((3, 4)), "layers.0.b": np.zeros(4),
              "layers.1.W": rng.standard_normal((4, 2)), "layers.1.b": np.zeros(2)}
    return header, {k: v.astype(dtype) for k, v in arrays.items()}


def test_hand_made_format_2_file_loads(tmp_path):
    header, arrays = _good_parts_v2()
    _write_model(tmp_path / "m.npz", header, arrays)
    info, layers = read_model(tmp_path / "m.npz")
    assert info == {"loss": "mse", "dtype": "float64", "input_shape": [3]}
    for i, layer in enumerate(layers):
        assert layer.config() == header["layers"][i]["config"]
        np.testing.assert_array_equal(layer.W, arrays[f"layers.{i}.W"])
        np.testing.assert_array_equal(layer.b, arrays[f"layers.{i}.b"])
    net = fastnn.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(net.layers[1].W, arrays["layers.1.W"])


def _layer(i, **changes):
    """A mutation of the header's layers[i] entry; a dict ``config`` is merged into it."""
    def mutate(h, a):
        entry = h["layers"][i]
        for key, value in changes.items():
            entry[key] = ({**entry[key], **value} if key == "config" and isinstance(value, dict)
                          else value)
    return mutate


def _drop_config_key(i, key):
    return lambda h, a: h["layers"][i]["config"].pop(key)


# case: (mutation of header and arrays, what the message says)
TAMPERED_V2 = {
    "kind_unknown": (_layer(0, kind="conv3d"), r"layers\[0\]: unknown layer kind 'conv3d'"),
    "kind_missing": (lambda h, a: h["layers"][1].pop("kind"), r"layers\[1\] must be an object"),
    "kind_not_str": (_layer(0, kind=["dense"]), "unknown layer kind"),
    "config_missing": (lambda h, a: h["layers"][0].pop("config"), r"layers\[0\] must be"),
    "config_list": (_layer(0, config=[3, 4]), r"layers\[0\] \(dense\): the config must be"),
    "config_null": (_layer(0, config=None), "the config must be a JSON object"),
    "config_missing_arg": (_drop_config_key(0, "n_out"), r"layers\[0\] \(dense\): bad config"),
    "config_extra_arg": (_layer(1, config={"bias": False}), r"layers\[1\] \(dense\): bad config"),
    "config_negative": (_layer(0, config={"n_out": -4}), "bad config"),
    "config_bool": (_layer(0, config={"n_out": True}), "bad config"),
    "config_float": (_layer(0, config={"n_out": 4.0}), "bad config"),
    "config_activation": (_layer(0, config={"activation": "gelu"}), "bad config"),
    "not_chaining": (lambda h, a: (_layer(1, config={"n_in": 5})(h, a),
                                   a.update({"layers.1.W": np.zeros((5, 2))})),
                     r"layers\[1\] \(dense\) does not fit the shape \(4,\)"),
    "input_shape_wrong": (lambda h, a: h.update(input_shape=[4]),
                          r"layers\[0\] \(dense\) does not fit"),
    "input_shape_missing": (lambda h, a: h.pop("input_shape"), "'input_shape' must be"),
    "input_shape_empty": (lambda h, a: h.update(input_shape=[]), "'input_shape' must be"),
    "input_shape_4d": (lambda h, a: h.update(input_shape=[1, 1, 1, 3]), "'input_shape' must be"),
    "input_shape_zero": (lambda h, a: h.update(input_shape=[0]), "'input_shape' must be"),
    "input_shape_bool": (lambda h, a: h.update(input_shape=[True]), "'input_shape' must be"),
    "input_shape_float": (lambda h, a: h.update(input_shape=[3.0]), "'input_shape' must be"),
    "input_shape_int": (lambda h, a: h.update(input_shape=3), "'input_shape' must be"),
    "input_shape_huge": (lambda h, a: h.update(input_shape=[2**16, 2**16]),
                         "'input_shape' must be"),
    "layers_missing": (lambda h, a: h.pop("layers"), "'layers' must be a non-empty list"),
    "layers_empty": (lambda h, a: h.update(layers=[]), "'layers' must be a non-empty list"),
    "layers_object": (lambda h, a: h.update(layers={"0": h["layers"][0]}), "'layers' must be"),
    "layer_string": (lambda h, a: h["layers"].__setitem__(0, "dense"), r"layers\[0\] must be"),
    "too_many_layers": (lambda h, a: h.update(layers=[h["layers"][1]] * (MAX_LAYERS + 1)),
                        f"{MAX_LAYERS + 1} layers; a model holds at most {MAX_LAYERS}"),
    "loss_unknown": (lambda h, a: h.update(loss="hinge"), "'loss' must be"),
    "dtype_float16": (lambda h, a: h.update(dtype="float16"), "'dtype' must be"),
    "dtype_disagrees": (lambda h, a: h.update(dtype="float32"), "expected float32"),
    "version_true": (lambda h, a: h.update(version=True), "format version True"),
    "version_float": (lambda h, a: h.update(version=2.0), "format version 2.0"),
    "arrays_named_as_format_1": (lambda h, a: a.update(
        {f"{k[-1]}{k[7]}": a.pop(k) for k in list(a)}), "do not match the header"),
    "extra_array": (lambda h, a: a.update({"layers.2.W": np.zeros((2, 2))}), "holds 6 arrays"),
    "missing_array": (lambda h, a: a.pop("layers.1.b"), "holds 4 arrays"),
    "renamed_array": (lambda h, a: a.update({"layers.1.bias": a.pop("layers.1.b")}),
                      r"\['layers.1.bias.npy'\] found instead of \['layers.1.b.npy'\]"),
    "array_shape": (lambda h, a: a.update({"layers.0.W": np.zeros((4, 3))}),
                    r"layers.0.W holds float64 of shape \(4, 3\), expected"),
    "array_nan": (lambda h, a: a["layers.1.W"].__setitem__((0, 0), np.nan),
                  "layers.1.W: W contains NaN"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED_V2))
def test_tampered_format_2_file_is_refused(case, tmp_path):
    header, arrays = _good_parts_v2()
    mutate, message = TAMPERED_V2[case]
    mutate(header, arrays)
    path = tmp_path / "tampered.npz"
    _write_model(path, header, arrays)
    with pytest.raises(ModelFileError, match=message):
        read_model(path)
    with pytest.raises(ModelFileError, match=message):
        fastnn.load(path)


# Headers that claim more than a machine holds, with arrays of a few bytes: each is
# refused from its header, before any member is read.
HUGE_HEADERS = {
    "params": (lambda h: h.update(input_shape=[10**6], layers=[
        {"kind": "dense", "config": {"n_in": 10**6, "n_out": 10**6, "activation": "tanh"}}]),
               "parameters, more than a model file may hold"),
    "output": (lambda h: h["layers"][0]["config"].update(n_out=10**12),
               r"gives samples of shape \(1000000000000,\)"),
    "int_of_400_digits": (lambda h: h["layers"][0]["config"].update(n_out=10**400),
                          "gives samples of shape"),
    "input": (lambda h: h.update(input_shape=[10**12]), "'input_shape' must be"),
    "many_layers": (lambda h: h.update(layers=[{"kind": "dense", "config": {
        "n_in": 2**15, "n_out": 2**15}}] * 3, input_shape=[2**15]),
        "parameters, more than"),
}


@pytest.mark.parametrize("case", sorted(HUGE_HEADERS))
def test_huge_format_2_header_is_refused_without_allocating(case, tmp_path):
    header, arrays = _good_parts_v2()
    mutate, message = HUGE_HEADERS[case]
    mutate(header)
    path = tmp_path / "huge.npz"
    _write_model(path, header, arrays)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=message):
            read_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"refusing a {path.stat().st_size}-byte file cost {peak} bytes"


# ---------------------------------------------------------------- the io module's own API


class _Flatten(Layer):
    """A parameterless layer of another kind, registered by the tests that use it."""

    kind = "test_flatten"

    def build(self, in_shape):
        self.in_shape = tuple(in_shape)
        self.out_shape = (int(np.prod(in_shape)),)
        return self.out_shape

    def config(self):
        return {}


@pytest.fixture
def flatten_kind(monkeypatch):
    monkeypatch.setitem(LAYER_CLASSES, _Flatten.kind, _Flatten)


def _flatten_model(dtype, seed=0):
    """A header and layers: (2, 3, 4) samples, flattened, then Dense 24-5-2."""
    rng = np.random.default_rng(seed)
    layers = [_Flatten(), Dense(24, 5, "tanh"), Dense(5, 2)]
    for layer in layers:
        layer.dtype = np.dtype(dtype)
        for name, shape in layer.param_shapes().items():
            setattr(layer, name, rng.standard_normal(shape))
    return {"loss": "mse", "dtype": str(np.dtype(dtype)), "input_shape": [2, 3, 4]}, layers


def test_write_model_read_model_round_trip_with_any_layer_kind(flatten_kind, dtype, tmp_path):
    header, layers = _flatten_model(dtype)
    path = tmp_path / "model.npz"
    write_model(path, header, layers)
    with np.load(path) as data:  # a parameterless layer has no member
        assert set(data.files) == {"header", "layers.1.W", "layers.1.b",
                                   "layers.2.W", "layers.2.b"}
        stored = json.loads(data["header"].tobytes())
    assert stored["layers"][0] == {"kind": "test_flatten", "config": {}}
    assert stored["input_shape"] == [2, 3, 4]
    info, loaded = read_model(path)
    assert info == header
    assert [type(layer) for layer in loaded] == [_Flatten, Dense, Dense]
    assert [(layer.in_shape, layer.out_shape) for layer in loaded] == \
        [((2, 3, 4), (24,)), ((24,), (5,)), ((5,), (2,))]
    for a, b in zip(layers, loaded):
        assert b.config() == a.config() and b.dtype == np.dtype(dtype)
        for pa, pb in zip(a.params(), b.params()):
            assert pb.dtype == pa.dtype and pb.flags.c_contiguous
            np.testing.assert_array_equal(pa, pb)


class _Other(_Flatten):
    kind = "not_registered"


# case: (mutation of a good header and layers, the error, what its message says)
UNWRITABLE = {
    "kind_unknown": (lambda h, ls: ls.__setitem__(0, _Other()), ValueError,
                     r"cannot write this model: layers\[0\]: unknown layer kind "
                     r"'not_registered'"),
    "not_a_layer": (lambda h, ls: ls.__setitem__(0, "flatten"), TypeError,
                    r"layers\[0\] must be a fastnn layer"),
    "not_chaining": (lambda h, ls: h.update(input_shape=[25]), ValueError,
                     r"layers\[1\] \(dense\) does not fit the shape \(25,\)"),
    "dtype_of_layers": (lambda h, ls: h.update(dtype="float64"), TypeError,
                        r"layers\[1\]\.W is float32 but this network is float64: the layer "
                        "is shared"),
    "param_not_set": (lambda h, ls: setattr(ls[2], "_b", None), ValueError,
                      r"layers\[2\]\.b is not set"),
    "loss": (lambda h, ls: h.update(loss="hinge"), ValueError, "'loss' must be"),
    "dtype": (lambda h, ls: h.update(dtype="int8"), ValueError, "'dtype' must be"),
    "input_shape": (lambda h, ls: h.update(input_shape=None), ValueError,
                    "'input_shape' must be"),
    "header": (lambda h, ls: h.clear(), ValueError, "'loss' must be"),
    "config_not_json": (lambda h, ls: setattr(ls[1], "n_out", np.int64(5)), TypeError,
                        "the header is not JSON"),
}


@pytest.mark.parametrize("case", sorted(UNWRITABLE))
def test_write_model_refuses_before_writing(case, flatten_kind, tmp_path):
    mutate, error, message = UNWRITABLE[case]
    header, layers = _flatten_model("float32")
    mutate(header, layers)
    with pytest.raises(error, match=message):
        write_model(tmp_path / "model.npz", header, layers)
    assert os.listdir(tmp_path) == []


def test_check_param_dtypes():
    header, layers = _flatten_model("float64")
    check_param_dtypes(layers, "float64")
    check_param_dtypes(layers, np.float64)
    with pytest.raises(TypeError, match=r"layers\[1\]\.W is float64 but this network is "
                                        r"float32: .* \(copy\.deepcopy\)"):
        check_param_dtypes(layers, "float32")


def test_json_refuses_a_layer_that_is_not_dense(flatten_kind, tmp_path):
    header, layers = _flatten_model("float64")
    message = (r"to_json writes the tutorials' dense-only format; layers\[0\] is a _Flatten: "
               r"use save\(\) for this network")
    with pytest.raises(ValueError, match=message):
        model_to_json(header, layers)
    with pytest.raises(ValueError, match=message):
        write_json(tmp_path / "model.json", header, layers)
    assert os.listdir(tmp_path) == []


def test_json_text_is_the_tutorials_format_unchanged(dtype, tmp_path):
    # Key for key and number for number what to_json wrote before format 2.
    net, _ = _trained("softmax_fused", dtype)
    expected = json.dumps({
        "sizes": [3, 5, 2],
        "weights": [layer.W.T.tolist() for layer in net.layers],
        "biases": [layer.b[:, None].tolist() for layer in net.layers],
        "cost": "SoftmaxCrossEntropyCost",
        "activations": ["tanh", "softmax"],
        "loss": "softmax_cross_entropy",
        "dtype": str(np.dtype(dtype)),
    })
    header = {"loss": net.loss, "dtype": str(net.dtype), "input_shape": [3]}
    assert model_to_json(header, net.layers) == expected
    assert net.to_json() == expected
    write_json(tmp_path / "model.json", header, net.layers)
    assert (tmp_path / "model.json").read_text() == expected
    info, layers = model_from_json(expected)
    assert info == header
    for a, b in zip(net.layers, layers):
        assert (b.config(), b.in_shape, b.out_shape) == (a.config(), (a.n_in,), (a.n_out,))
        np.testing.assert_array_equal(a.W, b.W)
        np.testing.assert_array_equal(a.b, b.b)
        assert b.W.dtype == np.dtype(dtype)


def _module_level_imports(tree):
    """The modules imported by the statements of ``tree`` that run when it is imported:
    at the top level and in the blocks under it (``if TYPE_CHECKING:``, ``try:``), not
    inside functions or classes."""
    names = []
    for node in tree.body:
        for sub in ast.walk(node) if not isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else ():
            if isinstance(sub, ast.Import):
                names += [alias.name for alias in sub.names]
            elif isinstance(sub, ast.ImportFrom):
                names += [f"{sub.module}.{alias.name}" for alias in sub.names]
                names.append(sub.module or "")
    return names


def test_io_does_not_import_the_network_module():
    source = (Path(fastnn.io.__file__)).read_text(encoding="utf-8")
    imported = _module_level_imports(ast.parse(source))
    assert "numpy" in imported and "fastnn.layers" in imported  # the walk sees imports
    assert not [name for name in imported if "network" in name.split(".")], imported


def test_io_works_with_the_network_module_blocked(tmp_path):
    # fastnn/__init__.py imports the network module, so the package is stood in for
    # by an empty one of the same path; importing fastnn.network then fails.
    script = textwrap.dedent("""
        import importlib.util, sys, types
        spec = importlib.util.find_spec("fastnn")
        package = types.ModuleType("fastnn")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["fastnn"] = package

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "fastnn.network":
                    raise ImportError("fastnn.network is blocked")

        sys.meta_path.insert(0, Block())
        import numpy as np
        import fastnn.io as fio
        from fastnn.layers import Dense

        layer = Dense(3, 2, "tanh")
        layer.W = np.arange(6.0).reshape(3, 2)
        layer.b = np.ones(2)
        header = {"loss": "mse", "dtype": "float64", "input_shape": [3]}
        fio.write_model(sys.argv[1], header, [layer])
        info, (loaded,) = fio.read_model(sys.argv[1])
        assert info == header and (loaded.W == layer.W).all() and (loaded.b == 1).all()
        assert fio.model_from_json(fio.model_to_json(header, [layer]))[0] == header
        assert "fastnn.network" not in sys.modules
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m.npz")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize("form", ["json", "bom", "spaces", "list"])
def test_load_points_a_json_file_to_from_json(form, tmp_path):
    net, _ = _trained("mse", np.float64)
    text = {"json": net.to_json(), "bom": "\ufeff" + net.to_json(),
            "spaces": "\n  " + net.to_json(), "list": "[1, 2]"}[form]
    path = tmp_path / "model.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ModelFileError, match=r"JSON.*fastnn\.Network\.from_json"):
        fastnn.load(path)


# ---------------------------------------------------------------- JSON


@pytest.mark.parametrize("case", sorted(LOSS_NETS))
def test_json_round_trip_is_bit_exact(case, dtype, tmp_path):
    net, X = _trained(case, dtype)
    path = tmp_path / "model.json"
    text = net.to_json(str(path))
    assert path.read_text() == text
    for loaded in (Network.from_json(str(path)), Network.from_json(path),
                   Network.from_json(text)):
        _assert_same_network(net, loaded)
        _assert_same_predictions(net, loaded, X)
    on_numpy = Network.from_json(text, backend="numpy")
    assert on_numpy.backend == "numpy"
    _assert_same_network(net, on_numpy)
    assert sorted(os.listdir(tmp_path)) == ["model.json"]


def test_json_uses_the_tutorials_layout():
    net, _ = _trained("bce_fused_sigmoid", np.float64)
    doc = json.loads(net.to_json())
    assert doc["sizes"] == [3, 5, 2]
    assert doc["cost"] == "CrossEntropyCost"
    for layer, w, b in zip(net.layers, doc["weights"], doc["biases"]):
        assert np.array(w).shape == (layer.n_out, layer.n_in)  # n_out rows of n_in
        np.testing.assert_array_equal(np.array(w), layer.W.T)
        assert np.array(b).shape == (layer.n_out, 1)
        np.testing.assert_array_equal(np.array(b)[:, 0], layer.b)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("cost,loss", [("CrossEntropyCost", "binary_cross_entropy"),
                                       ("QuadraticCost", "mse")])
def test_tutorial_json_loads_with_sigmoid_layers(cost, loss, tmp_path, backend):
    # What the tutorials' network.py writes: sizes, weights (n_out x n_in), biases
    # (n_out x 1), the cost's class name; no activations, loss or dtype.
    rng = np.random.default_rng(4)
    sizes = [4, 6, 3]
    weights = [rng.standard_normal((y, x)) for x, y in zip(sizes[:-1], sizes[1:])]
    biases = [rng.standard_normal((y, 1)) for y in sizes[1:]]
    doc = {"sizes": sizes, "weights": [w.tolist() for w in weights],
           "biases": [b.tolist() for b in biases], "cost": cost}
    path = tmp_path / "tutorial.json"
    path.write_text(json.dumps(doc))
    net = Network.from_json(str(path), backend=backend)
    assert [l.activation for l in net.layers] == ["sigmoid", "sigmoid"]
    assert net.loss == loss and net.dtype == np.float64
    # The tutorial's feedforward: a = sigmoid(w a + b) with column vectors.
    X = rng.standard_normal((5, 4))
    a = X.T
    for w, b in zip(weights, biases):
        a = _sigmoid(w @ a + b)
    out = net.predict_proba(X) if loss != "mse" else net.predict(X)
    np.testing.assert_allclose(out, a.T, rtol=1e-12)


def _doc(**fields) -> str:
    """A one-layer 2-1 model in the tutorials' JSON, with ``fields`` replaced."""
    doc = {"sizes": [2, 1], "weights": [[[1, 2]]], "biases": [[[0]]], "cost": "QuadraticCost"}
    doc.update(fields)
    return json.dumps({k: v for k, v in doc.items() if v is not None})


@pytest.mark.parametrize("text", [
    "{not json",
    _doc(weights=None, biases=None),
    _doc(cost="HingeCost"),
    _doc(cost=["x"]),
    _doc(weights=[[[1, 2, 3]]]),
    _doc(weights=[[[1], [2]]]),
    _doc(biases=[[[0, 1]]]),
    _doc(weights=[[[1, float("nan")]]]),
    _doc(weights=[[[1, "a"]]]),
    _doc(weights=[], biases=[]),
    _doc(sizes=[2, 0], weights=[[]], biases=[[]]),
    _doc(cost=None, loss="mse", dtype="int8"),
    _doc(cost=None, loss="mse", activations=["gelu"]),
    _doc(weights=[[[1, "2"]]]),
    _doc(biases=[[["0"]]]),
    _doc(weights=[[[1, True]]]),
    _doc(weights=[[[True, False]]]),
    _doc(biases=[[[False]]]),
    _doc(weights=[[[1, None]]]),
    _doc(weights=[[[1, [2]]]]),
    _doc(weights=[[[1, {"a": 2}]]]),
    _doc(weights=[[[1, 10**400]]]),
    '{"sizes": [2, 1], "weights": [[[1, 1%s]]]}' % ("0" * 5000),
    '{"sizes": [2, 1], "weights": %s}' % ("[" * 100_000 + "]" * 100_000),
], ids=["not_json", "no_weights", "unknown_cost", "cost_list", "weights_wide", "weights_tall",
        "biases_long", "nan", "string_weight", "no_layers", "zero_size", "dtype", "activation",
        "numeric_string_weight", "numeric_string_bias", "bool_among_numbers", "bool_weights",
        "bool_bias", "null_weight", "list_weight", "object_weight", "int_over_1e308",
        "int_of_5000_digits", "nested_100000_deep"])
def test_bad_json_is_refused(text):
    with pytest.raises(ModelFileError):
        Network.from_json(text)


def test_json_top_level_must_be_an_object(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    for source in (path, "[1, 2]", " [1, 2]", b"[1, 2]"):  # a file, and JSON text
        with pytest.raises(ModelFileError, match="top level is not a JSON object"):
            Network.from_json(source)


@pytest.mark.parametrize("form", ["bytes", "bytearray", "bom_bytes", "bom_str", "spaces"])
def test_json_text_in_any_form_is_read_as_text(form, tmp_path, monkeypatch):
    net, X = _trained("softmax", np.float32)
    text = net.to_json()
    source = {"bytes": text.encode(), "bytearray": bytearray(text.encode()),
              "bom_bytes": text.encode("utf-8-sig"), "bom_str": "\ufeff" + text,
              "spaces": "\n\t " + text}[form]
    monkeypatch.chdir(tmp_path)  # where a file name would be looked up
    _assert_same_network(net, Network.from_json(source))


def test_json_file_with_a_bom_is_read(tmp_path):
    net, _ = _trained("mse", np.float64)
    path = tmp_path / "model.json"
    path.write_text(net.to_json(), encoding="utf-8-sig")
    _assert_same_network(net, Network.from_json(path))


def test_from_json_points_an_npz_file_to_load(tmp_path):
    net, _ = _trained("mse", np.float64)
    path = tmp_path / "model.npz"
    net.save(path)
    for source in (path, str(path), path.read_bytes()):
        with pytest.raises(ModelFileError, match=r"\.npz model file.*fastnn\.load"):
            Network.from_json(source)


def test_json_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "model.json"
    path.write_bytes(b'{"sizes": "\xff"}')
    for source in (path, path.read_bytes()):
        with pytest.raises(ModelFileError, match="UTF-8"):
            Network.from_json(source)


@pytest.mark.parametrize("source", [None, 3, ["{}"]], ids=["none", "int", "list"])
def test_from_json_source_of_another_type_is_a_type_error(source):
    with pytest.raises(TypeError, match="source must be JSON text"):
        Network.from_json(source)


def test_unknown_backend_is_an_argument_error_not_a_file_error(tmp_path):
    net, _ = _trained("mse", np.float32)
    net.save(tmp_path / "model.npz")
    for call in (lambda: fastnn.load(tmp_path / "model.npz", backend="cuda"),
                 lambda: Network.from_json(net.to_json(), backend="cuda")):
        with pytest.raises(ValueError, match="backend") as info:
            call()
        assert not isinstance(info.value, ModelFileError)
