"""fastnn.datasets' small sets: gender, xor, microchips, load_csv, standardize, one_hot."""

from __future__ import annotations

import hashlib
from importlib import resources

import numpy as np
import pytest

from conftest import REPO_ROOT

import fastnn
from fastnn.datasets import gender, load_csv, microchips, one_hot, standardize, xor
from fastnn.datasets.small import GENDER_OFFSET


# ------------------------------------------------------------------ gender, xor

def test_gender_is_the_tutorials_four_people():
    X, y = gender()
    # Alice 133 lb 65 in F, Bob 160 72 M, Charlie 152 70 M, Diana 120 60 F, minus (135, 66).
    np.testing.assert_array_equal(X, [[-2, -1], [25, 6], [17, 4], [-15, -6]])
    np.testing.assert_array_equal(y, [1, 0, 0, 1])
    assert X.dtype == y.dtype == np.float64
    raw, y_raw = gender(centered=False)
    np.testing.assert_array_equal(raw, [[133, 65], [160, 72], [152, 70], [120, 60]])
    np.testing.assert_array_equal(raw - GENDER_OFFSET, X)
    np.testing.assert_array_equal(y_raw, y)


def test_gender_returns_fresh_arrays():
    X, _ = gender()
    X[0, 0] = 99
    assert gender()[0][0, 0] == -2


def test_xor_truth_table():
    X, y = xor()
    np.testing.assert_array_equal(X, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(y, np.logical_xor(X[:, 0], X[:, 1]))


# ------------------------------------------------------------------ microchips

# SHA-256 of ex2data2.txt as the tutorial distributes it (118 rows, no header).
EX2DATA2_SHA256 = "5d1fb3eca1b6328375375f5da8980f3458f1c727da4c1ca6e9163fc23b6ddcbc"


def test_microchips_is_the_tutorials_118_chips():
    X, y = microchips()
    assert X.shape == (118, 2) and y.shape == (118,)
    assert X.dtype == y.dtype == np.float64
    assert X.flags.c_contiguous and y.flags.c_contiguous
    # The file's first, 59th and last rows.
    np.testing.assert_array_equal(X[[0, 58, 117]],
                                  [[0.051267, 0.69956], [0.18376, 0.93348], [0.63265, -0.030612]])
    np.testing.assert_array_equal(y[[0, 57, 58, 117]], [1, 1, 0, 0])
    assert set(np.unique(y)) == {0.0, 1.0} and y.sum() == 58  # 58 accepted, 60 rejected
    data = resources.files("fastnn.datasets").joinpath("ex2data2.txt").read_bytes()
    assert hashlib.sha256(data).hexdigest() == EX2DATA2_SHA256


def test_microchips_returns_fresh_arrays():
    X, y = microchips()
    X[0, 0], y[0] = 99, 5
    X2, y2 = microchips()
    assert X2[0, 0] == 0.051267 and y2[0] == 1


def test_microchips_file_is_in_the_package_data():
    # An installed wheel holds only the data files pyproject.toml lists; an editable
    # install reads src/ and would not notice a missing entry.
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    src = REPO_ROOT / "src"
    shipped = set()
    for package, patterns in config["tool"]["setuptools"]["package-data"].items():
        folder = src.joinpath(*package.split("."))
        for pattern in patterns:
            shipped.update(folder.glob(pattern))
    assert src / "fastnn" / "datasets" / "ex2data2.txt" in shipped


def test_small_sets_train_a_network():
    X, y = gender()
    net = fastnn.Network([fastnn.Dense(2, 2, "sigmoid"), fastnn.Dense(2, 1, "sigmoid")],
                         loss="mse", dtype="float64", seed=1)
    net.fit(X, y, epochs=1000, batch_size=1, optimizer=fastnn.SGD(lr=0.1))
    np.testing.assert_array_equal(np.round(net.predict(X)[:, 0]), y)


# ------------------------------------------------------------------ load_csv

def write(tmp_path, text, name="data.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_csv_features_and_integer_labels(tmp_path):
    path = write(tmp_path, "0.5,1.25,1\n-0.75,2,0\n# a comment\n\n3,4e-1,1\n")
    X, y = load_csv(path)
    np.testing.assert_array_equal(X, [[0.5, 1.25], [-0.75, 2], [3, 0.4]])
    np.testing.assert_array_equal(y, [1, 0, 1])
    assert X.dtype == np.float64 and y.dtype == np.int64
    X32, _ = load_csv(str(path), dtype=np.float32)
    assert X32.dtype == np.float32 and X32.flags.c_contiguous


def test_load_csv_real_valued_target_header_and_delimiter(tmp_path):
    path = write(tmp_path, "a;b;target\n1;2;0.5\n3;4;1.5\n")
    _, y = load_csv(path, delimiter=";", skip_header=1)
    np.testing.assert_array_equal(y, [0.5, 1.5])
    assert y.dtype == np.float64
    X0, y0 = load_csv(path, target=0, delimiter=";", skip_header=1)
    np.testing.assert_array_equal(X0, [[2, 0.5], [4, 1.5]])
    np.testing.assert_array_equal(y0, [1.0, 3.0])
    assert y0.dtype == np.int64  # whole numbers are labels
    everything = load_csv(path, target=None, delimiter=";", skip_header=1)
    assert everything.shape == (2, 3)


def test_load_csv_huge_whole_numbers_stay_a_float_target(tmp_path):
    # int64 would wrap 1e19 around to a negative number; float64 keeps it.
    _, y = load_csv(write(tmp_path, "1,2,1e19\n3,4,-1e19\n5,6,1\n"))
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, [1e19, -1e19, 1])
    _, y32 = load_csv(write(tmp_path, "1,2,1e19\n"), dtype=np.float32)
    assert y32.dtype == np.float32 and y32[0] == np.float32(1e19)
    # Up to 2**53 float64 holds every integer: those are still labels.
    _, labels = load_csv(write(tmp_path, f"1,2,{2**53}\n3,4,-{2**53}\n"))
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [2**53, -2**53])
    _, beyond = load_csv(write(tmp_path, f"1,2,{2**54}\n"))
    assert beyond.dtype == np.float64 and beyond[0] == 2.0**54


def test_load_csv_refuses_values_beyond_the_dtype(tmp_path):
    path = write(tmp_path, "1,1e300,0\n")
    with pytest.raises(ValueError, match="data.txt.*beyond the range of float32"):
        load_csv(path, dtype=np.float32)
    assert load_csv(path)[0][0, 1] == 1e300  # fine in float64


def test_load_csv_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_csv(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="data.txt.*numeric"):
        load_csv(write(tmp_path, "1,2,0\n1,abc,1\n"))
    with pytest.raises(ValueError, match="numeric"):
        load_csv(write(tmp_path, "1,2,0\n1,2\n"))
    with pytest.raises(ValueError, match="no data rows"):
        load_csv(write(tmp_path, "# nothing\n"))
    with pytest.raises(ValueError, match="NaN or infinity"):
        load_csv(write(tmp_path, "1,nan,0\n"))
    with pytest.raises(ValueError, match="target must be a column"):
        load_csv(write(tmp_path, "1,2,0\n"), target=3)
    with pytest.raises(ValueError, match="one column"):
        load_csv(write(tmp_path, "1\n2\n"))


# ------------------------------------------------------------------ standardize

def test_standardize_zscores_and_returns_the_statistics(rng):
    X = rng.normal([5, -3], [2, 0.1], (50, 2))
    Z, mean, std = standardize(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1, rtol=1e-12)
    np.testing.assert_allclose(mean, X.mean(axis=0))
    np.testing.assert_allclose(std, X.std(axis=0))
    np.testing.assert_allclose(Z * std + mean, X, rtol=1e-12)


def test_standardize_transforms_new_data_with_the_same_statistics(rng):
    X = rng.normal(size=(20, 3))
    _, mean, std = standardize(X)
    new = rng.normal(size=(4, 3))
    Z_new, mean2, std2 = standardize(new, mean, std)
    np.testing.assert_allclose(Z_new, (new - mean) / std)
    np.testing.assert_array_equal(mean2, mean)
    np.testing.assert_array_equal(std2, std)


def test_standardize_constant_column_and_dtypes():
    Z, _, std = standardize([[1, 7], [3, 7]])
    np.testing.assert_array_equal(Z, [[-1, 0], [1, 0]])
    np.testing.assert_array_equal(std, [1, 1])
    assert Z.dtype == np.float64  # integers become float64
    Z32, m32, s32 = standardize(np.array([[1, 2], [3, 5]], dtype=np.float32))
    assert Z32.dtype == m32.dtype == s32.dtype == np.float32


@pytest.mark.parametrize("X, kwargs, exc, match", [
    ([1.0, 2.0], {}, ValueError, "2-D"),
    ([["a", "b"]], {}, TypeError, "numbers"),
    ([[1.0, np.inf]], {}, ValueError, "NaN or infinity"),
    ([[1.0, 2.0]], {"mean": [0, 0]}, ValueError, "both"),
    ([[1.0, 2.0]], {"mean": [0, 0, 0], "std": [1, 1, 1]}, ValueError, "features"),
    ([[1.0, 2.0]], {"mean": [0, 0], "std": [1, 0]}, ValueError, "> 0"),
    (np.zeros((0, 2)), {}, ValueError, "empty"),
])
def test_standardize_bad_input(X, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        standardize(X, **kwargs)


# ------------------------------------------------------------------ one_hot

def test_one_hot():
    out = one_hot([2, 0, 1, 2], 4)
    np.testing.assert_array_equal(out, [[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.argmax(axis=1), [2, 0, 1, 2])
    assert one_hot([0, 3]).shape == (2, 4)  # n_classes inferred
    assert one_hot(np.array([[1], [0]], dtype=np.uint8), 2, dtype=np.float64).dtype == np.float64
    np.testing.assert_array_equal(one_hot(np.array([1.0, 0.0]), 2), [[0, 1], [1, 0]])
    assert one_hot([], 3).shape == (0, 3)


@pytest.mark.parametrize("y, n, exc, match", [
    ([0, 3], 3, ValueError, "label 3, outside"),
    ([0, -1], 3, ValueError, "label -1"),
    ([0.5], 2, ValueError, "non-integer"),
    (["a"], 2, TypeError, "integer"),
    ([[0, 1]], 2, ValueError, "1-D"),
    ([0], 0, ValueError, "n_classes"),
    ([], None, ValueError, "empty"),
])
def test_one_hot_bad_input(y, n, exc, match):
    with pytest.raises(exc, match=match):
        one_hot(y, n)


def test_one_hot_targets_train_like_labels(rng):
    X = rng.normal(size=(30, 4))
    labels = rng.integers(0, 3, 30)
    nets = [fastnn.Network([fastnn.Dense(4, 3, "softmax")], loss="softmax_cross_entropy",
                           dtype="float64", seed=0) for _ in range(2)]
    nets[0].fit(X, labels, epochs=3, batch_size=None, shuffle=False)
    nets[1].fit(X, one_hot(labels, 3), epochs=3, batch_size=None, shuffle=False)
    np.testing.assert_allclose(nets[0].layers[0].W, nets[1].layers[0].W, rtol=1e-12)
