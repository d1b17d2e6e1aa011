"""The seed tutorials' MNIST network, written straight in NumPy float64.

This is the baseline fastnn set out to replace: a two-layer ReLU network with a
softmax output, trained by plain mini-batch SGD, coded the way the tutorials
teach it (float64 everywhere, one-hot targets, new arrays for every
intermediate, the loss computed every batch). It is deliberately not tuned.
"""

from __future__ import annotations

import numpy as np


def one_hot(labels: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """Float64 one-hot rows for integer ``labels``."""
    out = np.zeros((labels.shape[0], n_classes))
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


class SeedNetwork:
    """784-hidden-10 ReLU network with a softmax cross-entropy loss, float64.

    Parameters
    ----------
    n_in, n_hidden, n_out : int
        Layer sizes.
    seed : int
        Seeds the initialisation (He-normal weights, zero biases) and the shuffling.
    """

    def __init__(self, n_in: int = 784, n_hidden: int = 128, n_out: int = 10,
                 seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.W1 = self.rng.standard_normal((n_in, n_hidden)) * np.sqrt(2.0 / n_in)
        self.b1 = np.zeros(n_hidden)
        self.W2 = self.rng.standard_normal((n_hidden, n_out)) * np.sqrt(2.0 / n_hidden)
        self.b2 = np.zeros(n_out)

    def forward(self, X: np.ndarray):
        """Return the hidden pre-activation, the hidden activation and the class probabilities."""
        z1 = X @ self.W1 + self.b1
        a1 = np.maximum(0, z1)
        z2 = a1 @ self.W2 + self.b2
        exp = np.exp(z2 - np.max(z2, axis=1, keepdims=True))
        probs = exp / np.sum(exp, axis=1, keepdims=True)
        return z1, a1, probs

    def backward(self, X: np.ndarray, Y: np.ndarray, z1: np.ndarray, a1: np.ndarray,
                 probs: np.ndarray, lr: float) -> None:
        """Backpropagate the mean cross-entropy of a batch and take one SGD step."""
        m = X.shape[0]
        dz2 = (probs - Y) / m
        dW2 = a1.T @ dz2
        db2 = np.sum(dz2, axis=0)
        da1 = dz2 @ self.W2.T
        dz1 = da1 * (z1 > 0)
        dW1 = X.T @ dz1
        db1 = np.sum(dz1, axis=0)
        self.W1 -= lr * dW1
        self.b1 -= lr * db1
        self.W2 -= lr * dW2
        self.b2 -= lr * db2

    def train_epoch(self, X: np.ndarray, Y: np.ndarray, batch_size: int, lr: float) -> float:
        """One shuffled pass over (X, one-hot Y); returns the mean training loss."""
        n = X.shape[0]
        perm = self.rng.permutation(n)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            xb, yb = X[idx], Y[idx]
            z1, a1, probs = self.forward(xb)
            total += -np.sum(yb * np.log(probs + 1e-12))
            self.backward(xb, yb, z1, a1, probs, lr)
        return total / n

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class labels for the rows of X."""
        return np.argmax(self.forward(X)[2], axis=1)
