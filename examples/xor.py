"""XOR: a 2-5-1 sigmoid network trained by full-batch gradient descent with momentum.

Prints the four outputs (they round to 0 1 1 0) and saves the loss curve and the
decision regions.

Run:  python examples/xor.py [--out FOLDER]
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write image files, never open a window
import matplotlib.pyplot as plt  # noqa: E402

import fastnn  # noqa: E402
import fastnn.plot  # noqa: E402
from fastnn.datasets import xor  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="fastnn-examples-out", help="folder for the figures")
    parser.add_argument("--quick", action="store_true",
                        help="accepted for uniformity (the full run takes well under a second)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    X, y = xor()
    net = fastnn.Network([fastnn.Dense(2, 5, "sigmoid"), fastnn.Dense(5, 1, "sigmoid")],
                         loss="mse", dtype="float64", seed=0)
    history = net.fit(X, y, epochs=2000, batch_size=None,
                      optimizer=fastnn.SGD(lr=0.5, momentum=0.9))
    print(f"final loss: {history.loss[-1]:.5f}")
    for x, p in zip(X, net.predict(X)[:, 0]):
        print(f"{int(x[0])} xor {int(x[1])} -> {p:.4f} (rounds to {round(p)})")

    ax = fastnn.plot.loss_curve(history)
    ax.set_yscale("log")
    ax.set_title("XOR: MSE per epoch")
    ax.figure.savefig(out / "xor_loss.png", dpi=100)
    plt.close(ax.figure)

    ax = fastnn.plot.decision_boundary(net, X, y, class_names=["a xor b = 0", "a xor b = 1"],
                                       feature_names=["input a", "input b"], padding=0.25)
    ax.set_title("XOR: decision regions of the 2-5-1 network")
    ax.figure.savefig(out / "xor_boundary.png", dpi=100)
    plt.close(ax.figure)
    print(f"saved {out / 'xor_loss.png'} and {out / 'xor_boundary.png'}")


if __name__ == "__main__":
    main()
