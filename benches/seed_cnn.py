"""The tutorial's small CNN, written the way the tutorial writes it: one sample at a time.

A convolution of 10 filters of 5x5 with a sigmoid, a 2x2 max-pool, a 1440-128
sigmoid layer and a 10-way softmax, trained by per-sample SGD in float64 with
Python loops over the image regions, as the from-scratch CNN tutorials teach
it. It is the slow baseline the benchmark scales from a few hundred samples;
it is deliberately not tuned.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class SeedCNN:
    """28x28 image -> conv 10@5x5 (sigmoid) -> max-pool 2 -> 1440-128 (sigmoid) -> 10 (softmax).

    Parameters
    ----------
    seed : int
        Seeds the initialisation and the shuffling.
    """

    def __init__(self, n_filters: int = 10, size: int = 5, n_hidden: int = 128,
                 n_out: int = 10, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.size = size
        self.filters = self.rng.standard_normal((n_filters, size, size)) / size
        self.fb = np.zeros(n_filters)
        side = (28 - size + 1) // 2
        n_flat = side * side * n_filters
        self.W1 = self.rng.standard_normal((n_flat, n_hidden)) * np.sqrt(1.0 / n_flat)
        self.b1 = np.zeros(n_hidden)
        self.W2 = self.rng.standard_normal((n_hidden, n_out)) * np.sqrt(1.0 / n_hidden)
        self.b2 = np.zeros(n_out)

    def _regions(self, image: np.ndarray, size: int, step: int):
        h, w = image.shape[:2]
        for i in range(0, h - size + 1, step):
            for j in range(0, w - size + 1, step):
                yield image[i:i + size, j:j + size], i // step, j // step

    def forward(self, image: np.ndarray):
        """One image (28, 28) -> the intermediate values and the class probabilities."""
        s = self.size
        conv = np.zeros((28 - s + 1, 28 - s + 1, len(self.fb)))
        for region, i, j in self._regions(image, s, 1):
            conv[i, j] = np.sum(region * self.filters, axis=(1, 2)) + self.fb
        act = _sigmoid(conv)
        side = act.shape[0] // 2
        pooled = np.zeros((side, side, act.shape[2]))
        for region, i, j in self._regions(act[:2 * side, :2 * side], 2, 2):
            pooled[i, j] = np.amax(region, axis=(0, 1))
        flat = pooled.flatten()
        hidden = _sigmoid(flat @ self.W1 + self.b1)
        z = hidden @ self.W2 + self.b2
        e = np.exp(z - z.max())
        return act, flat, hidden, e / e.sum()

    def train_sample(self, image: np.ndarray, label: int, lr: float) -> float:
        """Forward, backward and one SGD step on one image; returns its loss."""
        act, flat, hidden, probs = self.forward(image)
        loss = -np.log(probs[label] + 1e-12)
        dz = probs.copy()
        dz[label] -= 1.0
        dW2 = np.outer(hidden, dz)
        dh = (self.W2 @ dz) * hidden * (1 - hidden)
        dW1 = np.outer(flat, dh)
        dflat = self.W1 @ dh
        dpooled = dflat.reshape(act.shape[0] // 2, act.shape[1] // 2, act.shape[2])
        dact = np.zeros_like(act)
        side = dpooled.shape[0]
        for region, i, j in self._regions(act[:2 * side, :2 * side], 2, 2):
            top = np.amax(region, axis=(0, 1))
            for a in range(2):
                for b in range(2):
                    hit = region[a, b] == top
                    dact[2 * i + a, 2 * j + b, hit] = dpooled[i, j, hit]
        dconv = dact * act * (1 - act)
        dfilters = np.zeros_like(self.filters)
        for region, i, j in self._regions(image, self.size, 1):
            dfilters += dconv[i, j][:, None, None] * region[None]
        self.W2 -= lr * dW2
        self.b2 -= lr * dz
        self.W1 -= lr * dW1
        self.b1 -= lr * dh
        self.filters -= lr * dfilters
        self.fb -= lr * dconv.sum(axis=(0, 1))
        return float(loss)

    def train(self, images: np.ndarray, labels: np.ndarray, lr: float) -> float:
        """One shuffled per-sample pass over float64 images (n, 28, 28); the mean loss."""
        total = 0.0
        for k in self.rng.permutation(len(images)):
            total += self.train_sample(images[k], int(labels[k]), lr)
        return total / len(images)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class labels of float64 images (n, 28, 28)."""
        return np.array([np.argmax(self.forward(im)[3]) for im in images])
