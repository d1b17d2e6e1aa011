"""MNIST digits: a 784-128-10 ReLU network with softmax cross-entropy.

Shows a progress bar within each epoch (plain lines when the output is not a terminal)
and a line of each epoch's loss, training accuracy and test accuracy, and saves the loss
and accuracy curves, a grid of test digits with predicted and true labels (mistakes in
red), and the confusion matrix. MNIST is read by fastnn.datasets.load_mnist (set FASTNN_DATA_DIR to
the folder holding the IDX files, or let it download them).

Run:  python examples/mnist.py [--out FOLDER] [--epochs N]
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="fastnn-examples-out", help="folder for the figures")
    parser.add_argument("--epochs", type=int, default=10, help="passes over the training set")
    parser.add_argument("--quick", action="store_true",
                        help="train on 5,000 images for 2 epochs, test on 1,000")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    (X_train, y_train), (X_test, y_test) = load_mnist()  # uint8 pixels, uint8 labels
    epochs = args.epochs
    if args.quick:
        X_train, y_train = X_train[:5000], y_train[:5000]
        X_test, y_test = X_test[:1000], y_test[:1000]
        epochs = 2
    print(f"{len(X_train)} training and {len(X_test)} test images")

    net = fastnn.Network([fastnn.Dense(784, 128, "relu"), fastnn.Dense(128, 10, "softmax")],
                         loss="softmax_cross_entropy", seed=0)
    optimizer = fastnn.SGD(lr=0.05, momentum=0.9)
    scale = 1 / 255  # pixels 0-255 are scaled as they are read, without a float copy
    # verbose=1: a bar within each epoch, then a line of its metrics. The History holds
    # the training accuracy too, counted as the epoch trained (no extra pass over the data).
    history = net.fit(X_train, y_train, epochs=epochs, batch_size=64, optimizer=optimizer,
                      validation_data=(X_test, y_test), input_scale=scale, verbose=1)

    predicted = net.predict(X_test, input_scale=scale)
    print(f"train accuracy: {history.accuracy[-1]:.4f} (during the last epoch)")
    print(f"test accuracy: {(predicted == y_test).mean():.4f}")

    ax = fastnn.plot.loss_curve(history, labels=("training", "test"))
    ax.set_ylabel("softmax cross-entropy")
    save(ax.figure, out / "mnist_loss.png")
    ax = fastnn.plot.loss_curve(history, metric="accuracy", labels=("training", "test"))
    save(ax.figure, out / "mnist_accuracy.png")

    # The first 30 test digits, then 10 of the network's mistakes.
    mistakes = np.flatnonzero(predicted != y_test)
    shown = np.concatenate([np.arange(30), mistakes[~np.isin(mistakes, np.arange(30))][:10]])
    fig = fastnn.plot.digits(X_test[shown], y_test[shown], predicted[shown])
    save(fig, out / "mnist_digits.png")

    ax = fastnn.plot.confusion_matrix(y_test, predicted, n_classes=10)
    save(ax.figure, out / "mnist_confusion.png")


if __name__ == "__main__":
    main()
