"""Microchip quality tests (ex2data2.txt): a 2-10-1 sigmoid network and its decision boundary.

Uses the microchip set that ships with fastnn (fastnn.datasets.microchips), or a CSV file
of the same form (test1,test2,accepted) given as an argument. Z-scores the two test
scores, trains with binary cross-entropy and full-batch gradient descent, saves the model
to JSON and to .npz, loads both back and checks they predict the same, prints the
accuracy, and saves the loss curve and the decision boundary.

Run:  python examples/chips.py [PATH/TO/FILE.csv] [--out FOLDER]
"""

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write image files, never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import fastnn  # noqa: E402
import fastnn.plot  # noqa: E402
from fastnn.datasets import load_csv, microchips, standardize  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=None,
                        help="CSV file of test1,test2,accepted rows (default: the microchip "
                             "set that ships with fastnn)")
    parser.add_argument("--out", default="fastnn-examples-out",
                        help="folder for the figures and the saved model")
    parser.add_argument("--quick", action="store_true", help="train for fewer epochs")
    args = parser.parse_args(argv)
    if args.data is not None and not Path(args.data).is_file():
        sys.exit(f"error: {args.data} not found; pass the path of a CSV file of "
                 "test1,test2,accepted rows, or nothing for the packaged microchip set")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # Two test scores per chip, 1 = accepted.
    X, y = microchips() if args.data is None else load_csv(args.data)
    Z, mean, std = standardize(X)       # keep mean/std to transform new chips alike
    net = fastnn.Network([fastnn.Dense(2, 10, "sigmoid"), fastnn.Dense(10, 1, "sigmoid")],
                         loss="binary_cross_entropy", seed=0)
    epochs = 1000 if args.quick else 5000
    history = net.fit(Z, y, epochs=epochs, batch_size=None, optimizer=fastnn.SGD(lr=2.0))
    print(f"{len(y)} chips, {epochs} epochs, final loss {history.loss[-1]:.4f}")

    # Save in both formats, load both back, and check they predict exactly the same.
    net.to_json(out / "chips_model.json")
    net.save(out / "chips_model.npz")
    from_json = fastnn.Network.from_json(out / "chips_model.json")
    from_npz = fastnn.load(out / "chips_model.npz")
    same = (np.array_equal(from_json.predict_proba(Z), net.predict_proba(Z))
            and np.array_equal(from_npz.predict_proba(Z), net.predict_proba(Z)))
    print(f"JSON and .npz models predict the same as the trained one: {same}")
    if not same:
        sys.exit("error: a reloaded model predicts differently")

    accuracy = (from_npz.predict(Z) == y).mean()
    print(f"training accuracy: {accuracy:.3f}")

    ax = fastnn.plot.loss_curve(history)
    ax.set_ylabel("binary cross-entropy")
    ax.set_title("Microchips: loss per epoch")
    ax.figure.savefig(out / "chips_loss.png", dpi=100)
    plt.close(ax.figure)

    # Drawn in the original units; the grid is z-scored like the training data.
    ax = fastnn.plot.decision_boundary(
        net, X, y, transform=lambda grid: standardize(grid, mean, std)[0],
        class_names=["rejected", "accepted"],
        feature_names=["microchip test 1", "microchip test 2"])
    ax.set_title("Microchips: decision boundary of the 2-10-1 network")
    ax.figure.savefig(out / "chips_boundary.png", dpi=100)
    plt.close(ax.figure)
    print(f"saved {out / 'chips_loss.png'} and {out / 'chips_boundary.png'}")


if __name__ == "__main__":
    main()
