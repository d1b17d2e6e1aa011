"""MNIST with the tutorial's small CNN: 10 filters of 5x5, a 2x2 max-pool, 1440-128-10.

The network the from-scratch CNN tutorial builds by hand, one sample at a time:

    Conv2D(1, 10, 5, activation="sigmoid")   28x28x1  -> 24x24x10
    MaxPool2D(2)                             24x24x10 -> 12x12x10
    Flatten()                                12x12x10 -> 1440
    Dense(1440, 128, activation="sigmoid")
    Dense(128, 10)                           softmax cross-entropy

Images are channels-last (NHWC); the flat 784-pixel rows of ``load_mnist`` are read as
28x28x1 because of ``input_shape``. Prints the accuracy after every epoch and saves
the ten learned filters, one test digit's ten feature maps before and after pooling, and
the loss and accuracy curves. MNIST is read by fastnn.datasets.load_mnist (set
FASTNN_DATA_DIR to the folder holding the IDX files, or let it download them).

Run:  python examples/cnn.py [--out FOLDER] [--epochs N] [--quick]
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write image files, never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import fastnn  # noqa: E402
import fastnn.plot  # noqa: E402
from fastnn.datasets import load_mnist  # noqa: E402


def save(fig, path):
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"saved {path}")


def tutorial_cnn(seed=0):
    layers = [fastnn.Conv2D(1, 10, 5, activation="sigmoid"), fastnn.MaxPool2D(2),
              fastnn.Flatten(), fastnn.Dense(1440, 128, activation="sigmoid"),
              fastnn.Dense(128, 10)]
    return fastnn.Network(layers, loss="softmax_cross_entropy", input_shape=(28, 28, 1),
                          seed=seed)


def draw_filters(conv, path):
    W = conv.W  # (5, 5, 1, 10): kernel rows, kernel columns, input channel, filter
    fig, axes = plt.subplots(1, W.shape[3], figsize=(W.shape[3] * 1.2, 2.0))
    lim = np.abs(W).max()
    for k, ax in enumerate(axes):
        ax.imshow(W[:, :, 0, k], cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"filter {k}", fontsize=8)
        ax.axis("off")
    fig.suptitle("the ten learned 5x5 filters (red positive, blue negative)", fontsize=9)
    save(fig, path)


def draw_feature_maps(net, image, label, scale, path):
    conv_out, pool_out = net.layer_outputs(image[None], input_scale=scale)[:2]
    fig, axes = plt.subplots(3, 10, figsize=(12, 4.2))
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 0].imshow(image.reshape(28, 28), cmap="gray_r")
    axes[0, 0].set_title(f"test digit ({label})", fontsize=8)
    for k in range(10):
        axes[1, k].imshow(conv_out[0, :, :, k], cmap="viridis", vmin=0, vmax=1)
        axes[1, k].set_title(f"map {k}: 24x24", fontsize=7)
        axes[2, k].imshow(pool_out[0, :, :, k], cmap="viridis", vmin=0, vmax=1)
        axes[2, k].set_title("pooled: 12x12", fontsize=7)
    fig.suptitle("one test digit's ten feature maps after the convolution and its sigmoid "
                 "(middle) and after the 2x2 max-pool (bottom)", fontsize=9)
    save(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="fastnn-examples-out", help="folder for the figures")
    parser.add_argument("--epochs", type=int, default=8, help="passes over the training set")
    parser.add_argument("--quick", action="store_true",
                        help="train on 10,000 images for 2 epochs, test on 1,000")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    (X_train, y_train), (X_test, y_test) = load_mnist()  # uint8 (n, 784), uint8 labels
    epochs = args.epochs
    if args.quick:
        X_train, y_train = X_train[:10000], y_train[:10000]
        X_test, y_test = X_test[:1000], y_test[:1000]
        epochs = 2
    print(f"{len(X_train)} training and {len(X_test)} test images")

    net = tutorial_cnn(seed=0)
    net.summary()
    scale = 1 / 255  # pixels 0-255 are scaled as they are read, without a float copy
    optimizer = fastnn.SGD(lr=0.1, momentum=0.9)
    # verbose=1: a bar within each epoch, then a line of its metrics; the History keeps
    # the training accuracy too, counted as the epoch trained.
    history = net.fit(X_train, y_train, epochs=epochs, batch_size=64, optimizer=optimizer,
                      validation_data=(X_test, y_test), input_scale=scale, verbose=1)
    print(f"train accuracy: {history.accuracy[-1]:.4f} (during the last epoch)")
    print(f"test accuracy: {history.val_accuracy[-1]:.4f}")

    ax = fastnn.plot.loss_curve(history, labels=("training", "test"))
    ax.set_ylabel("softmax cross-entropy")
    save(ax.figure, out / "cnn_loss.png")
    ax = fastnn.plot.loss_curve(history, metric="accuracy", labels=("training", "test"))
    save(ax.figure, out / "cnn_accuracy.png")
    draw_filters(net.layers[0], out / "cnn_filters.png")
    draw_feature_maps(net, X_test[0], int(y_test[0]), scale, out / "cnn_feature_maps.png")


if __name__ == "__main__":
    main()
