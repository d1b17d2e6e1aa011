"""fastnn.plot: what each function draws, its errors, and matplotlib staying optional."""

from __future__ import annotations

import subprocess
import sys

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.contour import ContourSet  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import fastnn  # noqa: E402
import fastnn.datasets  # noqa: E402
import fastnn.plot  # noqa: E402


@pytest.fixture(autouse=True)
def no_show_and_close(monkeypatch):
    """Fail if anything calls plt.show(); close every figure after each test."""
    def show(*args, **kwargs):
        raise AssertionError("fastnn.plot must never call plt.show()")

    monkeypatch.setattr(plt, "show", show)
    yield
    plt.close("all")


def legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


# ------------------------------------------------------------------ import hygiene

def test_importing_fastnn_does_not_import_matplotlib():
    code = ("import sys, fastnn, fastnn.plot, fastnn.datasets; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_drawing_into_a_given_figure_needs_no_pyplot():
    code = """
import sys
import numpy as np
from matplotlib.figure import Figure
import fastnn, fastnn.plot
fig = Figure()
fastnn.plot.loss_curve([1.0, 0.5], ax=fig.add_subplot(2, 2, 1))
fastnn.plot.confusion_matrix([0, 1], [1, 1], ax=fig.add_subplot(2, 2, 2))
net = fastnn.Network([fastnn.Dense(2, 1, "sigmoid")], loss="binary_cross_entropy", seed=0)
fastnn.plot.decision_boundary(net, np.eye(2), [0, 1], ax=fig.add_subplot(2, 2, 3))
fastnn.plot.digits(np.zeros((2, 784)), [1, 2], fig=Figure())
print(sorted(m for m in sys.modules if m.startswith("matplotlib.pyplot")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize("call", [
    lambda: fastnn.plot.loss_curve([1.0, 0.5]),
    lambda: fastnn.plot.decision_boundary(None, np.zeros((2, 2)), [0, 1]),
    lambda: fastnn.plot.digits(np.zeros((1, 784)), [3]),
    lambda: fastnn.plot.confusion_matrix([0, 1], [1, 1]),
], ids=["loss_curve", "decision_boundary", "digits", "confusion_matrix"])
def test_without_matplotlib_the_error_names_the_plot_extra(monkeypatch, call):
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: "not installed"
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install fastnn\[plot\]"):
        call()


# ------------------------------------------------------------------ loss_curve

def test_loss_curve_training_and_validation():
    history = fastnn.History(loss=[1.0, 0.6, 0.4], val_loss=[1.1, 0.8, 0.7])
    ax = fastnn.plot.loss_curve(history)
    assert isinstance(ax, Axes)
    lines = ax.get_lines()
    assert len(lines) == 2
    np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(lines[0].get_ydata(), history.loss)
    np.testing.assert_array_equal(lines[1].get_ydata(), history.val_loss)
    assert legend_texts(ax) == ["training", "validation"]
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "loss"


def test_loss_curve_training_only_has_no_legend_and_draws_into_given_axes():
    _, ax = plt.subplots()
    assert fastnn.plot.loss_curve({"loss": [3.0, 2.0]}, ax=ax) is ax
    assert len(ax.get_lines()) == 1 and ax.get_legend() is None
    ax2 = fastnn.plot.loss_curve(np.array([3.0, 2.0, 1.0]))
    np.testing.assert_array_equal(ax2.get_lines()[0].get_ydata(), [3.0, 2.0, 1.0])


def test_loss_curve_other_metric_and_labels():
    curves = {"loss": [1.0], "accuracy": [0.5, 0.9], "val_accuracy": [0.4, 0.8]}
    ax = fastnn.plot.loss_curve(curves, metric="accuracy", labels=("train", "test"))
    assert [list(line.get_ydata()) for line in ax.get_lines()] == [[0.5, 0.9], [0.4, 0.8]]
    assert legend_texts(ax) == ["train", "test"] and ax.get_ylabel() == "accuracy"


def test_loss_curve_of_a_real_fit():
    X, y = fastnn.datasets.xor()
    net = fastnn.Network([fastnn.Dense(2, 4, "tanh"), fastnn.Dense(4, 1, "sigmoid")],
                         loss="binary_cross_entropy", seed=0)
    history = net.fit(X, y, epochs=5, batch_size=None, validation_data=(X, y))
    ax = fastnn.plot.loss_curve(history)
    assert len(ax.get_lines()) == 2 and len(ax.get_lines()[1].get_ydata()) == 5


def test_loss_curve_empty_history_is_an_error():
    with pytest.raises(ValueError, match="no 'loss'"):
        fastnn.plot.loss_curve(fastnn.History())


# ------------------------------------------------------------------ decision_boundary

class SpyNet:
    """A one-output classifier, P(class 1) = sigmoid(4 * (x0 - 0.3)), recording its calls."""

    loss = "binary_cross_entropy"

    def __init__(self):
        self.calls = []

    def predict_proba(self, X):
        X = np.asarray(X)
        self.calls.append(X.copy())
        return 1 / (1 + np.exp(-4 * (X[:, :1] - 0.3)))


def two_blobs(rng):
    X = np.r_[rng.normal([-1, 0], 0.3, (30, 2)), rng.normal([1.5, 1], 0.3, (30, 2))]
    y = np.r_[np.zeros(30, int), np.ones(30, int)]
    return X, y


def test_decision_boundary_is_one_vectorised_call(rng):
    X, y = two_blobs(rng)
    net = SpyNet()
    ax = fastnn.plot.decision_boundary(net, X, y, resolution=50)
    assert isinstance(ax, Axes)
    assert len(net.calls) == 1, "the grid must go through predict_proba in one call"
    grid = net.calls[0]
    assert grid.shape == (50 * 50, 2)
    # The grid covers the data with a margin.
    assert (grid.min(axis=0) < X.min(axis=0)).all() and (grid.max(axis=0) > X.max(axis=0)).all()
    assert legend_texts(ax) == ["class 0", "class 1", "decision boundary (0.5)"]
    assert ax.get_xlabel() == "feature 1" and ax.get_ylabel() == "feature 2"


def boundary_line(ax) -> np.ndarray:
    """The points of the contour drawn at the threshold."""
    sets = [c for c in ax.collections if isinstance(c, ContourSet) and not c.filled]
    assert len(sets) == 1
    return np.concatenate(sets[0].allsegs[0])


def test_decision_boundary_line_is_where_the_probability_is_one_half(rng):
    X, y = two_blobs(rng)
    ax = fastnn.plot.decision_boundary(SpyNet(), X, y, resolution=101)
    line = boundary_line(ax)
    step = (X[:, 0].max() - X[:, 0].min()) * 1.2 / 100
    np.testing.assert_allclose(line[:, 0], 0.3, atol=step)


def test_decision_boundary_transform_maps_the_grid(rng):
    X, y = two_blobs(rng)
    net = SpyNet()
    ax = fastnn.plot.decision_boundary(net, X, y, resolution=60, transform=lambda g: g * 2)
    # P = 1/2 where 2 * x0 = 0.3, drawn in X's units.
    np.testing.assert_allclose(boundary_line(ax)[:, 0], 0.15, atol=0.1)


def test_decision_boundary_of_a_trained_network_separates_the_data(rng):
    X, y = two_blobs(rng)
    net = fastnn.Network([fastnn.Dense(2, 8, "tanh"), fastnn.Dense(8, 1, "sigmoid")],
                         loss="binary_cross_entropy", seed=0)
    net.fit(X, y, epochs=200, batch_size=None, optimizer=fastnn.SGD(lr=0.5))
    ax = fastnn.plot.decision_boundary(net, X, y, resolution=80,
                                       class_names=["no", "yes"], feature_names=["a", "b"])
    assert legend_texts(ax) == ["no", "yes", "decision boundary (0.5)"]
    assert ax.get_xlabel() == "a" and ax.get_ylabel() == "b"
    # The line lies between the blobs: midway along their centres' axis.
    line = boundary_line(ax)
    centre = X[y == 0].mean(axis=0), X[y == 1].mean(axis=0)
    direction = centre[1] - centre[0]
    t = (line - centre[0]) @ direction / (direction @ direction)
    assert 0.1 < np.median(t) < 0.9


def test_decision_boundary_of_mse_and_softmax_networks(rng, monkeypatch):
    X, y = two_blobs(rng)
    mse = fastnn.Network([fastnn.Dense(2, 1, "sigmoid")], loss="mse", seed=0)
    calls = []
    real_predict = mse.predict
    monkeypatch.setattr(mse, "predict", lambda G: calls.append(len(G)) or real_predict(G))
    fastnn.plot.decision_boundary(mse, X, y, resolution=30)
    assert calls == [900]

    y3 = np.r_[y, np.full(10, 2)]
    X3 = np.r_[X, rng.normal([3, -1], 0.3, (10, 2))]
    soft = fastnn.Network([fastnn.Dense(2, 3, "softmax")], loss="softmax_cross_entropy", seed=0)
    ax = fastnn.plot.decision_boundary(soft, X3, y3, resolution=30)
    assert legend_texts(ax) == ["class 0", "class 1", "class 2"]
    # Each class's region has the colour of its points.
    regions = [c for c in ax.collections if isinstance(c, ContourSet)]
    assert len(regions) == 1 and regions[0].filled
    points = [c for c in ax.collections if not isinstance(c, ContourSet)]
    for k, pts in enumerate(points):
        np.testing.assert_allclose(regions[0].cmap(regions[0].norm(k))[:3],
                                   pts.get_facecolor()[0][:3])


@pytest.mark.parametrize("X, y, kwargs, match", [
    (np.zeros((4, 3)), [0, 1, 0, 1], {}, r"shape \(n_samples, 2\)"),
    (np.zeros((4, 2)), [0, 1, 0], {}, "y has 3 samples"),
    (np.zeros((4, 2)), [0, 1, 0, 1], {"resolution": 1}, "resolution"),
    (np.zeros((4, 2)), [0, 1, 0, 1], {"class_names": ["a"]}, "class_names"),
    (np.array([[0, np.nan], [1, 1]]), [0, 1], {}, "NaN"),
])
def test_decision_boundary_bad_input(X, y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fastnn.plot.decision_boundary(SpyNet(), X, y, **kwargs)


# ------------------------------------------------------------------ digits

def test_digits_grid_titles_and_mistakes(rng):
    images = rng.integers(0, 256, (12, 784), dtype=np.uint8)
    labels = np.arange(12) % 10
    preds = labels.copy()
    preds[[2, 7]] = 9 - labels[[2, 7]]  # two mistakes
    fig = fastnn.plot.digits(images, labels, preds, ncols=5)
    assert isinstance(fig, Figure)
    axes = fig.axes
    assert len(axes) == 15  # 3 rows of 5, the last 3 empty
    drawn = [ax for ax in axes if ax.images]
    assert len(drawn) == 12
    np.testing.assert_array_equal(drawn[0].images[0].get_array(), images[0].reshape(28, 28))
    for i, ax in enumerate(drawn):
        assert ax.get_title() == f"{preds[i]} / {labels[i]}"
        red = matplotlib.colors.same_color(ax.title.get_color(), "red")
        assert red == (i in (2, 7))


def test_digits_without_predictions_and_3d_images(rng):
    fig = fastnn.plot.digits(rng.random((3, 8, 8)), [4, 5, 6])
    assert [ax.get_title() for ax in fig.axes] == ["4", "5", "6"]


@pytest.mark.parametrize("images, labels, kwargs, match", [
    (np.zeros((2, 100)), [1, 2], {}, "784"),
    (np.zeros((2, 784)), [1], {}, "labels has 1"),
    (np.zeros((2, 784)), [1, 2], {"predictions": [1]}, "predictions has 1"),
    (np.zeros((0, 784)), [], {}, "empty"),
    (np.zeros(784), [1], {}, "shape"),
    (np.zeros((2, 784)), [1, 2], {"ncols": 0}, "ncols"),
])
def test_digits_bad_input(images, labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fastnn.plot.digits(images, labels, **kwargs)


# ------------------------------------------------------------------ confusion_matrix

def test_confusion_matrix_counts(rng):
    t = rng.integers(0, 4, 200)
    p = np.where(rng.random(200) < 0.7, t, rng.integers(0, 4, 200))
    ax = fastnn.plot.confusion_matrix(t, p)
    assert isinstance(ax, Axes)
    expected, _, _ = np.histogram2d(t, p, bins=[np.arange(5) - 0.5] * 2)
    np.testing.assert_array_equal(ax.images[0].get_array(), expected)
    assert ax.get_xlabel() == "predicted label" and ax.get_ylabel() == "true label"
    texts = [t.get_text() for t in ax.texts]
    assert texts == [str(int(v)) for v in expected.ravel()]


def test_confusion_matrix_normalized_with_names_and_unused_classes():
    ax = fastnn.plot.confusion_matrix([0, 0, 1], [0, 1, 1], n_classes=3, normalize=True,
                                      class_names=["a", "b", "c"])
    np.testing.assert_allclose(ax.images[0].get_array(),
                               [[0.5, 0.5, 0], [0, 1, 0], [0, 0, 0]])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]


@pytest.mark.parametrize("t, p, kwargs, match", [
    ([0, 1], [0], {}, "y_true has 2"),
    ([0, 5], [0, 1], {"n_classes": 3}, r"y_true contains label 5, outside \[0, 3\)"),
    ([0, -1], [0, 1], {}, r"y_true contains label -1, outside"),
    ([0, 1], [-3, -1], {}, r"y_pred contains label -3, outside"),
    ([0.5, 1], [0, 1], {}, "integer"),
    ([0, np.inf], [0, 1], {}, "y_true contains NaN or infinity"),
    ([0, 1], [np.nan, 1], {}, "y_pred contains NaN or infinity"),
    ([[0, 1], [1, 0]], [[0, 1], [1, 0]], {}, "1-D"),
    ([], [], {}, "empty"),
    ([0, 1], [0, 1], {"class_names": ["x"]}, "class_names"),
    ([0, 1], [0, 1], {"n_classes": 0}, "n_classes must be at least 1"),
])
def test_confusion_matrix_bad_input(t, p, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fastnn.plot.confusion_matrix(t, p, **kwargs)


@pytest.mark.parametrize("t, p, kwargs, match", [
    (["a", "b"], [0, 1], {}, "y_true must hold numbers"),
    ([0, 1], [0, 1], {"n_classes": 2.0}, "n_classes must be a positive integer"),
])
def test_confusion_matrix_wrong_types(t, p, kwargs, match):
    with pytest.raises(TypeError, match=match):
        fastnn.plot.confusion_matrix(t, p, **kwargs)


@pytest.mark.parametrize("n_classes", [None, 3])
def test_confusion_matrix_uint64_label_is_not_wrapped_to_a_class(n_classes):
    """2**64-1 cast to intp is -1, which indexing would count in a real class."""
    t = np.array([0, 2**64 - 1, 1], dtype=np.uint64)
    with pytest.raises(ValueError, match="18446744073709551615"):
        fastnn.plot.confusion_matrix(t, [0, 1, 1], n_classes=n_classes)


def test_confusion_matrix_stray_label_is_not_a_huge_matrix():
    # One stray label must not size the matrix unasked. (5000, not 10**6: were the check
    # to regress, this test must fail by drawing, not by exhausting the machine's memory.)
    t = [0, 1, 2, 1]
    with pytest.raises(ValueError, match=r"y_pred holds label 5000.*5001 classes.*pass n_classes"):
        fastnn.plot.confusion_matrix(t, [0, 1, 5000, 1])
    limit = fastnn.plot.MAX_INFERRED_CLASSES
    with pytest.raises(ValueError, match="pass n_classes"):
        fastnn.plot.confusion_matrix(t, [0, 1, limit, 1])
    ax = fastnn.plot.confusion_matrix(t, [0, 1, limit - 1, 1])  # the largest inferred
    assert ax.images[0].get_array().shape == (limit, limit)


def test_confusion_matrix_bool_and_whole_float_labels():
    ax = fastnn.plot.confusion_matrix(np.array([True, False, True]), np.array([1.0, 0.0, 0.0]))
    np.testing.assert_array_equal(ax.images[0].get_array(), [[1, 0], [1, 1]])
