"""The tutorials' pictures: loss curves, decision boundaries, digit grids, confusion matrices.

matplotlib is an optional dependency (``pip install fastnn[plot]``). It is
imported inside each function, so ``import fastnn`` and ``import fastnn.plot``
never import it. Each function draws into the Axes (or Figure) it is given, or
into a new pyplot figure, and returns it; none calls ``plt.show()``.

>>> import fastnn.plot
>>> ax = fastnn.plot.loss_curve(history)          # doctest: +SKIP
>>> ax.figure.savefig("loss.png")                 # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from fastnn import _validation as v

__all__ = ["confusion_matrix", "decision_boundary", "digits", "loss_curve"]


def _require_matplotlib() -> None:
    """Import matplotlib, or explain how to install the optional ``plot`` extra."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "fastnn.plot needs matplotlib, which is not installed; install the 'plot' extra "
            "with: pip install fastnn[plot]") from exc


def _pyplot():
    """pyplot, for new figures only: drawing into a given Axes or Figure never needs it."""
    _require_matplotlib()
    import matplotlib.pyplot as plt
    return plt


def _new_axes(ax: Any, figsize: tuple[float, float]) -> Any:
    if ax is not None:
        _require_matplotlib()
        return ax
    _, ax = _pyplot().subplots(figsize=figsize, layout="constrained")
    return ax


def _series(history: Any, name: str) -> list[float]:
    """``history[name]`` for a History, a dict of lists or an object with that attribute."""
    if isinstance(history, Mapping):
        values = history.get(name, [])
    else:
        values = getattr(history, name, [])
    return [float(x) for x in (values if values is not None else [])]


def loss_curve(history: Any, ax: Any = None, metric: str = "loss",
               labels: tuple[str, str] = ("training", "validation")) -> Any:
    """Plot a metric per epoch: training and, where present, validation.

    Parameters
    ----------
    history : History, dict of lists, or sequence of float
        What ``Network.fit`` returned, a dict such as ``{"loss": [...],
        "val_loss": [...]}``, or the training values alone.
    ax : matplotlib Axes, optional
        Where to draw; a new figure's Axes by default.
    metric : str, default "loss"
        The series to draw: ``history[metric]`` and ``history["val_" + metric]``
        (e.g. "accuracy" draws "accuracy" and "val_accuracy").
    labels : tuple of str, default ("training", "validation")
        Legend entries of the two series.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError
        When neither series has a value.
    """
    if isinstance(history, (list, tuple, np.ndarray)):
        train, val = [float(x) for x in np.asarray(history, dtype=float).ravel()], []
    else:
        train, val = _series(history, metric), _series(history, "val_" + metric)
    if not train and not val:
        raise ValueError(f"history has no {metric!r} or 'val_{metric}' values to plot")
    ax = _new_axes(ax, (6, 4))
    if train:
        ax.plot(np.arange(1, len(train) + 1), train, label=labels[0])
    if val:
        ax.plot(np.arange(1, len(val) + 1), val, label=labels[1])
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(metric.replace("_", " ").capitalize() + " per epoch")
    ax.grid(True, alpha=0.3)
    if train and val:
        ax.legend()
    return ax


def _scores(net: Any, grid: np.ndarray) -> tuple[np.ndarray, int, str]:
    """The network's output on every grid row, from one vectorised call.

    Returns (scores, n_outputs, what): for a single output the probability
    (or raw output of an MSE network) of class 1; otherwise the predicted class.
    ``what`` names the score for the colour bar.
    """
    if hasattr(net, "predict_proba") and getattr(net, "loss", None) != "mse":
        out, what = np.asarray(net.predict_proba(grid)), "predicted probability of class 1"
    else:
        # MSE networks have no probabilities; their (sigmoid) output is the score.
        out, what = np.asarray(net.predict(grid), dtype=float), "network output"
    if out.ndim == 1 or out.shape[1] == 1:
        return out.reshape(-1), 1, what
    return out.argmax(axis=1), out.shape[1], what


def decision_boundary(net: Any, X: Any, y: Any, ax: Any = None, resolution: int = 200, *,
                      transform: Callable[[np.ndarray], np.ndarray] | None = None,
                      threshold: float = 0.5, class_names: Sequence[str] | None = None,
                      feature_names: Sequence[str] = ("feature 1", "feature 2"),
                      padding: float = 0.1) -> Any:
    """Shade the network's decision regions over a scatter of the data.

    The whole grid goes through one vectorised ``predict_proba`` (``predict``
    for MSE networks), never a Python loop per point.

    Parameters
    ----------
    net : Network
        A trained network with two inputs (after ``transform``).
    X : array-like of shape (n_samples, 2)
        The points to scatter; the grid spans them plus ``padding``.
    y : array-like of shape (n_samples,)
        Their class labels (one colour and legend entry per class).
    ax : matplotlib Axes, optional
        Where to draw; a new figure's Axes by default.
    resolution : int, default 200
        Grid points along each axis.
    transform : callable, optional
        Maps grid rows (in X's units) to the network's inputs, e.g. the same
        standardisation as for training, so the picture keeps X's units.
    threshold : float, default 0.5
        Where the boundary of a one-output network is drawn.
    class_names : sequence of str, optional
        Legend names of the classes, in sorted label order.
    feature_names : sequence of two str
        Axis labels.
    padding : float, default 0.1
        Margin around the data, as a fraction of its range.

    Returns
    -------
    matplotlib.axes.Axes
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y).reshape(-1)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"X must have shape (n_samples, 2) to be drawn in a plane, got {X.shape}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y has {y.shape[0]} samples, X has {X.shape[0]}")
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) \
            or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinity")
    classes = np.unique(y)
    if class_names is not None and len(class_names) != len(classes):
        raise ValueError(f"class_names has {len(class_names)} names for {len(classes)} classes")
    ax = _new_axes(ax, (6, 5.4))
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D

    lo, hi = X.min(axis=0), X.max(axis=0)
    margin = padding * np.where(hi > lo, hi - lo, 1.0)
    gx = np.linspace(lo[0] - margin[0], hi[0] + margin[0], resolution)
    gy = np.linspace(lo[1] - margin[1], hi[1] + margin[1], resolution)
    xx, yy = np.meshgrid(gx, gy)
    grid = np.column_stack([xx.ravel(), yy.ravel()])
    scores, n_outputs, what = _scores(net, grid if transform is None else transform(grid))
    if class_names is not None and what.endswith("class 1"):
        what = f"predicted probability of {class_names[-1]!r}"
    zz = scores.reshape(xx.shape)

    # Class k is drawn in colours[k] (blue, red, ...) both as points and as the region
    # the network gives it, matching the blue-to-red shading of one-output networks.
    colors = ["tab:blue", "tab:red", "tab:green", "tab:orange", "tab:purple", "tab:brown",
              "tab:pink", "tab:gray", "tab:olive", "tab:cyan"]
    markers = ["o", "x", "s", "^", "v", "D"]
    handles = []
    if n_outputs == 1:
        shade = ax.contourf(xx, yy, zz, levels=np.linspace(0, 1, 11), cmap="RdBu_r",
                            alpha=0.35, extend="both")
        ax.contour(xx, yy, zz, levels=[threshold], colors="k", linewidths=1.5)
        ax.figure.colorbar(shade, ax=ax, label=what)
        handles.append(Line2D([], [], color="k", linewidth=1.5,
                              label=f"decision boundary ({threshold:g})"))
    else:
        cmap = ListedColormap([colors[k % len(colors)] for k in range(n_outputs)])
        ax.contourf(xx, yy, zz, levels=np.arange(n_outputs + 1) - 0.5, cmap=cmap, alpha=0.3)
    integer_labels = np.issubdtype(classes.dtype, np.integer) or (
        np.issubdtype(classes.dtype, np.floating) and np.array_equal(classes, np.round(classes)))
    size = 60 if len(X) < 50 else 25  # a handful of points must still be seen
    for i, c in enumerate(classes):
        if class_names is not None:
            name = class_names[i]
        else:
            name = f"class {c:g}" if np.issubdtype(classes.dtype, np.number) else f"class {c}"
        k = int(c) if integer_labels and c >= 0 else i
        marker = markers[k % len(markers)]
        sel = y == c
        handles.insert(i, ax.scatter(
            X[sel, 0], X[sel, 1], color=colors[k % len(colors)], marker=marker, s=size, label=name,
            edgecolors=None if marker == "x" else "k", linewidths=1.5 if marker == "x" else 0.5))
    ax.set_xlim(gx[0], gx[-1])
    ax.set_ylim(gy[0], gy[-1])
    ax.set_xlabel(feature_names[0])
    ax.set_ylabel(feature_names[1])
    ax.set_title("Decision boundary")
    # Below the axes: inside, it would hide points wherever it went.
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12),
              ncols=min(len(handles), 3), frameon=False)
    return ax


def digits(images: Any, labels: Any, predictions: Any = None, *, ncols: int = 10,
           image_shape: tuple[int, int] = (28, 28), fig: Any = None) -> Any:
    """Draw images in a grid, titled with their labels (and predictions).

    With ``predictions``, each title reads ``predicted / true`` and mistakes
    are drawn in red with a red frame.

    Parameters
    ----------
    images : array-like of shape (n, h*w) or (n, h, w)
        The images, e.g. ``X_test[:40]`` (pass a slice: every image is drawn).
    labels : array-like of shape (n,)
        True labels.
    predictions : array-like of shape (n,), optional
        Predicted labels.
    ncols : int, default 10
        Images per row.
    image_shape : tuple of int, default (28, 28)
        (h, w) of flat images.
    fig : matplotlib Figure, optional
        Where to draw; a new figure by default.

    Returns
    -------
    matplotlib.figure.Figure
    """
    imgs = np.asarray(images)
    if imgs.ndim == 2:
        h, w = image_shape
        if imgs.shape[1] != h * w:
            raise ValueError(f"flat images have {imgs.shape[1]} pixels, image_shape {image_shape} "
                             f"needs {h * w}")
        imgs = imgs.reshape(-1, h, w)
    elif imgs.ndim != 3:
        raise ValueError(f"images must have shape (n, h*w) or (n, h, w), got {imgs.shape}")
    n = imgs.shape[0]
    if n == 0:
        raise ValueError("images is empty")
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != n:
        raise ValueError(f"labels has {labels.shape[0]} entries for {n} images")
    if predictions is not None:
        predictions = np.asarray(predictions).reshape(-1)
        if predictions.shape[0] != n:
            raise ValueError(f"predictions has {predictions.shape[0]} entries for {n} images")
    if isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")

    _require_matplotlib()
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    if fig is None:
        fig = _pyplot().figure(figsize=(1.0 * ncols, 1.2 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.set_axis_off()
            continue
        ax.imshow(imgs[i], cmap="gray_r")
        if predictions is None:
            ax.set_title(f"{labels[i]}", fontsize=9)
            continue
        wrong = predictions[i] != labels[i]
        color = "red" if wrong else "black"
        ax.set_title(f"{predictions[i]} / {labels[i]}", fontsize=9, color=color)
        if wrong:
            for spine in ax.spines.values():
                spine.set_color("red")
                spine.set_linewidth(2)
    title = "predicted / true (mistakes in red)" if predictions is not None else "true labels"
    fig.suptitle(title, fontsize=10)
    return fig


# The most classes confusion_matrix infers from the labels alone. Beyond it a stray
# label (a 10**6 among digits) would silently allocate a huge matrix: the caller
# must then say how many classes there are.
MAX_INFERRED_CLASSES = 1000


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int | None = None, ax: Any = None, *,
                     normalize: bool = False, class_names: Sequence[str] | None = None) -> Any:
    """Draw the confusion matrix: rows are true classes, columns predicted classes.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
        Class labels in ``[0, n_classes)``: integers, or floats with whole values.
    n_classes : int, optional
        Number of classes. By default one more than the largest label, which
        must then be below ``MAX_INFERRED_CLASSES`` (1000).
    ax : matplotlib Axes, optional
        Where to draw; a new figure's Axes by default.
    normalize : bool, default False
        Show each row as fractions of its true class instead of counts.
    class_names : sequence of str, optional
        Tick labels (default: the class numbers).

    Returns
    -------
    matplotlib.axes.Axes
        The counts are in ``ax.images[0].get_array()``.

    Raises
    ------
    TypeError
        When the labels are not numbers, or ``n_classes`` is not an integer.
    ValueError
        When a label is negative, not a whole number, or not below
        ``n_classes``; when ``n_classes`` is not given and the largest label is
        ``MAX_INFERRED_CLASSES`` or more; when the two label arrays differ in
        length or are empty, or ``class_names`` has the wrong length.
    """
    t = v.class_labels(y_true, "y_true")
    p = v.class_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels, y_pred has {p.size}")
    if t.size == 0:
        raise ValueError("y_true is empty")
    if n_classes is None:
        # Python ints: exact for any dtype, where NumPy would compare uint64 with
        # int64 as floats.
        largest, name = max((int(t.max()), "y_true"), (int(p.max()), "y_pred"))
        if largest >= MAX_INFERRED_CLASSES:
            raise ValueError(
                f"{name} holds label {largest}: inferred from it, the matrix would have "
                f"{largest + 1} classes; pass n_classes to draw more than "
                f"{MAX_INFERRED_CLASSES} classes")
        n_classes = max(largest + 1, 1)  # negative labels are reported just below
    else:
        n_classes = v.check_positive_int(n_classes, "n_classes")
    t = v.labels_in_range(t, n_classes, "y_true")
    p = v.labels_in_range(p, n_classes, "y_pred")
    names = list(class_names) if class_names is not None else [str(i) for i in range(n_classes)]
    if len(names) != n_classes:
        raise ValueError(f"class_names has {len(names)} names for {n_classes} classes")
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (t, p), 1)
    shown = counts.astype(float)
    if normalize:
        shown = shown / np.maximum(counts.sum(axis=1, keepdims=True), 1)

    ax = _new_axes(ax, (6, 5))
    im = ax.imshow(shown, cmap="Blues")
    ax.figure.colorbar(im, ax=ax, label="fraction of true class" if normalize else "count")
    ax.set_xticks(range(n_classes), names)
    ax.set_yticks(range(n_classes), names)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title("Confusion matrix")
    if n_classes <= 20:  # numbers in the cells stay legible up to about this size
        cut = shown.max() / 2
        for i in range(n_classes):
            for j in range(n_classes):
                text = f"{shown[i, j]:.2f}" if normalize else f"{counts[i, j]}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > cut else "black")
    return ax
