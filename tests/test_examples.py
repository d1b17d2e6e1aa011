"""Each example runs through its command line, in quick mode, in a temporary folder.

The tests read what it prints and check every figure it writes is a valid PNG
that is not blank.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import fastnn
import fastnn.datasets
from conftest import REPO_ROOT, needs_mnist

EXAMPLES = REPO_ROOT / "examples"
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
HAVE_SKLEARN = importlib.util.find_spec("sklearn") is not None
needs_matplotlib = pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="needs matplotlib (plot extra)")
needs_sklearn = pytest.mark.skipif(not HAVE_SKLEARN, reason="needs scikit-learn (sklearn extra)")


def run_example(name: str, cwd: Path, *args: str, quick: bool = True,
                check: bool = True) -> subprocess.CompletedProcess:
    """Run ``examples/<name>`` as a user would, from ``cwd``."""
    cmd = [sys.executable, str(EXAMPLES / name), *args] + (["--quick"] if quick else [])
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    if check:
        assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def assert_png(path: Path) -> None:
    """``path`` is a well-formed PNG whose pixels are not all one colour."""
    assert path.is_file(), f"{path.name} was not written"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} lacks the PNG signature"
    pos, kinds = 8, []
    while pos < len(data):  # walk the chunks: lengths must add up and every CRC match
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path.name}: bad CRC in chunk {kind!r}"
        kinds.append(kind)
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 200 and height >= 150, f"{path.name} is only {width}x{height}"

    import matplotlib.image
    pixels = matplotlib.image.imread(path)
    flat = pixels.reshape(-1, pixels.shape[-1])
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    assert len(colours) > 1, f"{path.name} is a single colour"
    # More than a stray line: at least 1% of the pixels differ from the background.
    assert 1 - counts.max() / counts.sum() > 0.01, f"{path.name} is almost blank"


# ------------------------------------------------------------------ neuron.py

def test_neuron_prints_the_tutorial_numbers(tmp_path):
    out = run_example("neuron.py", tmp_path).stdout.split()
    assert len(out) == 2, out
    neuron, network = float(out[0]), float(out[1])
    assert abs(neuron - 0.9990889488055994) <= 1e-12
    assert abs(network - 0.7216325609518421) <= 1e-12
    # The same numbers from the formulas, independently of fastnn.
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    assert abs(neuron - sig(0 * 2 + 1 * 3 + 4)) <= 1e-12
    assert abs(network - sig(sig(3))) <= 1e-12


# ------------------------------------------------------------------ gender.py

def test_gender_prints_loss_and_right_predictions(tmp_path):
    stdout = run_example("gender.py", tmp_path, "--out", "figs").stdout
    losses = [float(x) for x in re.findall(r"^Epoch (?:\d+) loss: ([\d.]+)$", stdout, re.M)]
    epochs = [int(x) for x in re.findall(r"^Epoch (\d+) loss", stdout, re.M)]
    assert epochs == list(range(0, 1000, 10))
    assert losses[-1] < losses[0] / 10
    preds = dict(re.findall(r"^(Emily|Frank): [\d.]+ -> ([FM])$", stdout, re.M))
    assert preds == {"Emily": "F", "Frank": "M"}
    emily = float(re.search(r"^Emily: ([\d.]+)", stdout, re.M).group(1))
    frank = float(re.search(r"^Frank: ([\d.]+)", stdout, re.M).group(1))
    assert emily > 0.5 > frank
    assert_png(tmp_path / "figs" / "gender_loss.png")


# ------------------------------------------------------------------ xor.py

def test_xor_outputs_round_to_0110(tmp_path):
    # No --out: the figures go to ./fastnn-examples-out of the working folder.
    stdout = run_example("xor.py", tmp_path).stdout
    rows = re.findall(r"^(\d) xor (\d) -> ([\d.]+) \(rounds to (\d)\)$", stdout, re.M)
    assert len(rows) == 4, stdout
    for a, b, p, r in rows:
        assert round(float(p)) == int(r) == (int(a) ^ int(b))
    for name in ("xor_loss.png", "xor_boundary.png"):
        assert_png(tmp_path / "fastnn-examples-out" / name)


# ------------------------------------------------------------------ chips.py

def check_chips_output(stdout: str, out: Path, X: np.ndarray, y: np.ndarray) -> float:
    """Check what chips.py printed and wrote; return the accuracy it printed."""
    assert "JSON and .npz models predict the same as the trained one: True" in stdout
    accuracy = float(re.search(r"^training accuracy: ([\d.]+)$", stdout, re.M).group(1))
    # The saved model reproduces the printed accuracy on the data, standardised again.
    net = fastnn.load(out / "chips_model.npz")
    Z = fastnn.datasets.standardize(X)[0]
    assert accuracy == pytest.approx((net.predict(Z) == y).mean(), abs=1e-3)
    from_json = fastnn.Network.from_json(out / "chips_model.json")
    np.testing.assert_array_equal(from_json.predict_proba(Z), net.predict_proba(Z))
    for name in ("chips_loss.png", "chips_boundary.png"):
        assert_png(out / name)
    return accuracy


def test_chips_uses_the_packaged_microchips_without_arguments(tmp_path):
    # Run from an empty folder: nothing but the installed package provides the data.
    stdout = run_example("chips.py", tmp_path, "--out", "o").stdout
    assert stdout.startswith("118 chips")
    X, y = fastnn.datasets.microchips()
    # The tutorial's network fits this non-linear set far better than the 58% majority class.
    assert check_chips_output(stdout, tmp_path / "o", X, y) >= 0.75


def test_chips_path_argument(tmp_path):
    # Two rings: the inner one accepted, the outer one rejected.
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, 80)
    radius = np.r_[rng.uniform(0.0, 0.4, 40), rng.uniform(0.7, 1.0, 40)]
    X = np.c_[radius * np.cos(angle), radius * np.sin(angle)]
    y = np.r_[np.ones(40, int), np.zeros(40, int)]
    path = tmp_path / "rings.txt"
    np.savetxt(path, np.c_[X, y], delimiter=",", fmt=["%.6f", "%.6f", "%d"])
    stdout = run_example("chips.py", tmp_path, str(path), "--out", "o").stdout
    assert stdout.startswith("80 chips")
    X, y = fastnn.datasets.load_csv(path)
    assert check_chips_output(stdout, tmp_path / "o", X, y) >= 0.9


def test_chips_missing_data_is_a_clear_error(tmp_path):
    proc = run_example("chips.py", tmp_path, str(tmp_path / "nope.txt"), check=False)
    assert proc.returncode != 0
    assert "nope.txt not found" in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------ mnist.py

@needs_mnist
def test_mnist_quick(tmp_path):
    stdout = run_example("mnist.py", tmp_path, "--out", "o").stdout
    assert stdout.startswith("5000 training and 1000 test images")
    train = float(re.search(r"^train accuracy: ([\d.]+) \(", stdout, re.M).group(1))
    test = float(re.search(r"^test accuracy: ([\d.]+)$", stdout, re.M).group(1))
    # Two epochs on 5,000 images already classify most test digits.
    assert train > 0.85 and test > 0.8
    # fit(verbose=1) into a pipe: plain epoch lines, no bar.
    assert len(re.findall(r"^epoch [12]/2  .*  loss .*  accuracy .*  val_accuracy ", stdout,
                          re.M)) == 2 and "\r" not in stdout
    for name in ("mnist_loss.png", "mnist_accuracy.png", "mnist_digits.png",
                 "mnist_confusion.png"):
        assert_png(tmp_path / "o" / name)


@needs_mnist
def test_cnn_quick(tmp_path):
    stdout = run_example("cnn.py", tmp_path, "--out", "o").stdout
    assert stdout.startswith("10000 training and 1000 test images")
    assert "Total parameters: 185,998" in stdout  # 260 + 0 + 0 + 184,448 + 1,290
    train = float(re.search(r"^train accuracy: ([\d.]+) \(", stdout, re.M).group(1))
    test = float(re.search(r"^test accuracy: ([\d.]+)$", stdout, re.M).group(1))
    # Two epochs of the sigmoid CNN on 10,000 images already classify most test digits.
    assert train > 0.7 and test > 0.75
    for name in ("cnn_loss.png", "cnn_accuracy.png", "cnn_filters.png", "cnn_feature_maps.png"):
        assert_png(tmp_path / "o" / name)


# ------------------------------------------------------------------ hopfield.py

def hopfield_rows(stdout: str) -> list[tuple[int, int, int]]:
    """(digit, copies recalled exactly, copies) for each line hopfield.py printed."""
    rows = re.findall(r"^digit (\d): (\d+)/(\d+) recalled exactly", stdout, re.M)
    return [(int(d), int(k), int(n)) for d, k, n in rows]


@needs_matplotlib
def test_hopfield_recalls_noisy_digits(tmp_path):
    stdout = run_example("hopfield.py", tmp_path, "--out", "o").stdout
    rows = hopfield_rows(stdout)
    assert [d for d, _, _ in rows] == [0, 1, 4, 6, 7]
    # 20 copies per digit in quick mode, each with 15 of its 100 pixels flipped.
    assert all(n == 20 for _, _, n in rows)
    assert len(re.findall(r"85\.0% before", stdout)) == 5
    assert "not fixed points" not in stdout
    # Five digits in 100 units are recalled nearly always.
    assert all(k >= 18 for _, k, _ in rows), rows
    accuracy = float(re.search(r"^recall accuracy: ([\d.]+)$", stdout, re.M).group(1))
    assert accuracy == pytest.approx(sum(k for _, k, _ in rows) / 100, abs=1e-4)
    assert accuracy >= 0.95
    assert_png(tmp_path / "o" / "hopfield_digits.png")


@needs_matplotlib
def test_hopfield_overloaded_with_all_ten_digits(tmp_path):
    # Ten correlated bitmaps are too many for 100 units: recall fails, as it should.
    stdout = run_example("hopfield.py", tmp_path, "--digits", "0,1,2,3,4,5,6,7,8,9",
                         "--out", "o").stdout
    assert len(hopfield_rows(stdout)) == 10
    assert "not fixed points" in stdout
    accuracy = float(re.search(r"^recall accuracy: ([\d.]+)$", stdout, re.M).group(1))
    assert accuracy < 0.5


@needs_matplotlib
def test_hopfield_bad_digits_is_a_clear_error(tmp_path):
    proc = run_example("hopfield.py", tmp_path, "--digits", "1,x", check=False)
    assert proc.returncode == 2 and "--digits must be" in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------ digits_rbm.py

@needs_sklearn
@needs_matplotlib
def test_digits_rbm_prints_both_accuracies(tmp_path):
    stdout = run_example("digits_rbm.py", tmp_path, "--out", "o").stdout
    assert stdout.startswith("7185 training digits (with shifted copies), 360 test digits")
    found = dict(re.findall(r"^MLPClassifier on (RBM features|raw pixels): "
                            r"test accuracy ([\d.]+)", stdout, re.M))
    assert set(found) == {"RBM features", "raw pixels"}, stdout
    # Quick mode (an RBM of 5 passes, 50 epochs) still classifies most digits; chance is 0.1.
    assert float(found["RBM features"]) > 0.85
    assert float(found["raw pixels"]) > 0.9
    assert_png(tmp_path / "o" / "digits_rbm_components.png")


# ------------------------------------------------------------------ all of them

@pytest.mark.parametrize("name", [
    "neuron.py", "gender.py", "xor.py", "chips.py", "mnist.py", "hopfield.py",
    pytest.param("digits_rbm.py", marks=needs_sklearn),
])
def test_example_help(tmp_path, name):
    stdout = run_example(name, tmp_path, "--help", quick=False).stdout
    assert "--out" in stdout and "--quick" in stdout
