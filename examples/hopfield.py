"""A Hopfield network recalls digits from noisy copies.

Stores hand-drawn 10x10 digit bitmaps (±1 pixels, defined below) in a 100-unit
fastnn.Hopfield network, flips a fraction of each digit's pixels at random, lets the
network settle by asynchronous updates, and prints how often each digit comes back
exactly. Saves a picture of the stored, noisy and recalled digits.

Digit bitmaps overlap far more than random patterns (most pixels are background), so
100 units hold only about five of them: the default digits are five that a 100-unit
network keeps apart. Try --digits 0,1,2,3,4,5,6,7,8,9 to watch recall fail.

Run:  python examples/hopfield.py [--out FOLDER] [--digits 0,1,4,6,7] [--noise 0.15]
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write image files, never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import fastnn  # noqa: E402

# '#' is an ink pixel (+1), '.' background (-1).
DIGITS = {
    0: """
..######..
.##....##.
##......##
##......##
##......##
##......##
##......##
##......##
.##....##.
..######..
""",
    1: """
....##....
...###....
..####....
....##....
....##....
....##....
....##....
....##....
....##....
..######..
""",
    2: """
..######..
.##....##.
.......##.
......##..
.....##...
....##....
...##.....
..##......
.##.......
.########.
""",
    3: """
.#######..
.......##.
.......##.
.......##.
...#####..
.......##.
.......##.
.......##.
.......##.
.#######..
""",
    4: """
.....###..
....####..
...##.##..
..##..##..
.##...##..
##########
......##..
......##..
......##..
......##..
""",
    5: """
.########.
.##.......
.##.......
.##.......
.#######..
.......##.
.......##.
.......##.
.##....##.
..######..
""",
    6: """
...#####..
..##......
.##.......
.##.......
.#######..
.##....##.
.##....##.
.##....##.
.##....##.
..######..
""",
    7: """
.#########
........##
.......##.
......##..
.....##...
....##....
....##....
...##.....
...##.....
...##.....
""",
    8: """
..######..
.##....##.
.##....##.
.##....##.
..######..
.##....##.
.##....##.
.##....##.
.##....##.
..######..
""",
    9: """
..######..
.##....##.
.##....##.
.##....##.
..#######.
.......##.
.......##.
.......##.
......##..
..#####...
""",
}
SIDE = 10


def bitmap(drawing: str) -> np.ndarray:
    """A drawing of SIDE lines of SIDE characters as a flat ±1 vector."""
    rows = drawing.strip().splitlines()
    assert len(rows) == SIDE and all(len(r) == SIDE for r in rows), drawing
    return np.array([[1 if c == "#" else -1 for c in row] for row in rows], np.int8).ravel()


def corrupt(rng: np.random.Generator, pattern: np.ndarray, noise: float, n: int) -> np.ndarray:
    """``n`` copies of ``pattern``, each with ``noise`` of its pixels flipped at random."""
    copies = np.repeat(pattern[None], n, axis=0)
    k = round(noise * pattern.size)
    for row in copies:
        row[rng.choice(pattern.size, k, replace=False)] *= -1
    return copies


def draw(stored, noisy, recalled, labels, path: Path) -> None:
    """Stored, noisy and recalled digits in three rows; wrong recalls titled in red."""
    n = len(labels)
    fig, axes = plt.subplots(3, n, figsize=(1.5 * n + 0.8, 5.0), squeeze=False,
                             layout="constrained")
    for j, label in enumerate(labels):
        right = np.array_equal(recalled[j], stored[j])
        flipped = (noisy[j] != stored[j]).sum()
        for i, (img, title) in enumerate(((stored[j], f"digit {label}"),
                                          (noisy[j], f"{flipped} pixels flipped"),
                                          (recalled[j], "recalled" if right else "wrong"))):
            ax = axes[i, j]
            ax.imshow(img.reshape(SIDE, SIDE), cmap="gray_r", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=9, color="black" if i < 2 or right else "red")
    for i, name in enumerate(("stored", "noisy", "recalled")):
        axes[i, 0].set_ylabel(name, fontsize=11)
    fig.suptitle("Hopfield network: asynchronous recall of noisy digits")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"saved {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="fastnn-examples-out", help="folder for the figure")
    parser.add_argument("--digits", default="0,1,4,6,7",
                        help="comma-separated digits to store (default: 0,1,4,6,7)")
    parser.add_argument("--noise", type=float, default=0.15,
                        help="fraction of pixels flipped in each noisy copy (default: 0.15)")
    parser.add_argument("--trials", type=int, default=200,
                        help="noisy copies recalled per digit (default: 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise and update order")
    parser.add_argument("--quick", action="store_true", help="20 noisy copies per digit")
    args = parser.parse_args(argv)
    try:
        labels = [int(d) for d in args.digits.split(",")]
    except ValueError:
        parser.error(f"--digits must be digits separated by commas, got {args.digits!r}")
    if not labels or any(d not in DIGITS for d in labels) or len(set(labels)) < len(labels):
        parser.error(f"--digits must be distinct digits 0-9, got {args.digits!r}")
    if not 0 <= args.noise <= 1:
        parser.error(f"--noise must be between 0 and 1, got {args.noise}")
    trials = 20 if args.quick else args.trials
    if trials < 1:
        parser.error(f"--trials must be at least 1, got {trials}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    stored = np.array([bitmap(DIGITS[d]) for d in labels])
    net = fastnn.Hopfield(seed=args.seed).fit(stored)
    print(f"stored digits {', '.join(map(str, labels))} in a {net.n_units}-unit Hopfield "
          f"network; {round(100 * args.noise)}% of the pixels of each copy flipped, "
          f"{trials} copies per digit")
    stable = net.is_fixed_point(stored)
    if not stable.all():
        print("not fixed points (recall cannot be exact): digits "
              + ", ".join(str(d) for d, s in zip(labels, stable) if not s))

    rng = np.random.default_rng(args.seed)
    examples, exact_total = [], 0
    for label, pattern in zip(labels, stored):
        noisy = corrupt(rng, pattern, args.noise, trials)
        recalled, n_steps = net.predict(noisy, return_steps=True)
        exact = (recalled == pattern).all(axis=1)
        inverted = (recalled == -pattern).all(axis=1)
        exact_total += exact.sum()
        print(f"digit {label}: {exact.sum()}/{trials} recalled exactly ({exact.mean():.1%}); "
              f"pixels right {(recalled == pattern).mean():.1%} after recall, "
              f"{(noisy == pattern).mean():.1%} before; {inverted.sum()} ended inverted; "
              f"sweeps: at most {n_steps.max()}")
        examples.append((noisy[0], recalled[0]))
    print(f"recall accuracy: {exact_total / (trials * len(labels)):.4f}")

    noisy, recalled = (np.array(a) for a in zip(*examples))
    draw(stored, noisy, recalled, labels, out / "hopfield_digits.png")


if __name__ == "__main__":
    main()
