"""Predict gender from weight and height: the tutorial's 2-2-1 sigmoid network.

Trains with MSE and per-sample SGD (lr 0.1, 1000 epochs) on four people, prints the
loss every 10 epochs and the predictions for two new people, and saves the loss curve.

Run:  python examples/gender.py [--out FOLDER]
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write image files, never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import fastnn  # noqa: E402
import fastnn.plot  # noqa: E402
from fastnn.datasets import gender  # noqa: E402
from fastnn.datasets.small import GENDER_OFFSET  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="fastnn-examples-out", help="folder for the figures")
    parser.add_argument("--quick", action="store_true",
                        help="accepted for uniformity (the full run takes well under a second)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    X, y = gender()  # (weight - 135 lb, height - 66 in); 1 = female
    net = fastnn.Network([fastnn.Dense(2, 2, "sigmoid"), fastnn.Dense(2, 1, "sigmoid")],
                         loss="mse", dtype="float64", seed=0)
    history = net.fit(X, y, epochs=1000, batch_size=1, optimizer=fastnn.SGD(lr=0.1))
    for epoch in range(0, 1000, 10):
        print(f"Epoch {epoch} loss: {history.loss[epoch]:.3f}")

    for name, weight, height in (("Emily", 128, 63), ("Frank", 155, 68)):
        p = net.predict(np.array([weight, height]) - GENDER_OFFSET)[0]
        print(f"{name}: {p:.3f} -> {'F' if p >= 0.5 else 'M'}")

    ax = fastnn.plot.loss_curve(history)
    ax.set_title("Gender network: MSE per epoch")
    ax.figure.savefig(out / "gender_loss.png", dpi=100)
    plt.close(ax.figure)
    print(f"saved {out / 'gender_loss.png'}")


if __name__ == "__main__":
    main()
