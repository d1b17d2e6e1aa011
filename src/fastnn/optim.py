"""Optimizers with PyTorch's update rules; their state survives between ``fit`` calls.

An optimizer holds hyper-parameters and, once it has been used, one state array
per parameter (SGD's velocity, Adam's two moments). Weight decay is L2 added to
the gradient of the weights, never of the biases.
"""

from __future__ import annotations

import abc

import numpy as np

from fastnn._validation import check_nonnegative_float


class Optimizer(abc.ABC):
    """Base class: state handling shared by SGD and Adam.

    A subclass of your own implements ``update``; the NumPy backend, and the
    compiled backend through its per-op kernels, call it after every batch.
    """

    kind = ""
    n_state = 0  # state arrays per parameter

    def __init__(self) -> None:
        # One list per parameter, in the network's order (W, b of each layer in
        # turn), of n_state arrays shaped like that parameter.
        self.state: list[list[np.ndarray]] = []

    def prepare(self, params: list[np.ndarray]) -> None:
        """Create zero state for these parameters, unless state of their shapes exists.

        Read-only state (memory-mapped by ``joblib.load``, say) is copied, since
        training updates it in place.
        """
        state = [[a if a.flags.writeable else np.array(a, order="C") for a in per_param]
                 for per_param in getattr(self, "state", [])]
        fits = len(state) == len(params) and all(
            len(s) >= self.n_state and all(a.shape == p.shape and a.dtype == p.dtype
                                           for a in s[:self.n_state])
            for s, p in zip(state, params))
        if not fits:
            state = [[np.zeros_like(p) for _ in range(self.n_state)] for p in params]
            self._reset()
        self.state = state

    def _reset(self) -> None:
        pass

    def check(self) -> None:
        """Validate the hyper-parameters as they are now (they may have been reassigned).

        ``fit`` calls it before training, so that a value assigned after
        construction is checked like one given to the constructor.
        """

    @property
    def fused(self) -> bool:
        """True when the compiled training loop may run this optimizer's rule itself.

        That is SGD's or Adam's rule, not overridden by a subclass; any other
        ``update`` runs in Python after each batch.
        """
        return type(self).update in (SGD.update, Adam.update)

    @abc.abstractmethod
    def update(self, ops, params: list[np.ndarray], grads: list[np.ndarray],
               decay: list[bool]) -> None:
        """Apply one step to every parameter, in place, through ``ops``.

        Parameters
        ----------
        ops : NumpyOps or CompiledOps
            The backend's ops (``sgd_update``, ``adam_update``, ...).
        params, grads : list of ndarray
            Each parameter and its gradient, in the network's order;
            ``self.state[i]`` holds parameter i's state.
        decay : list of bool
            Whether weight decay acts on each parameter (weights, not biases).
        """


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    ``v = momentum * v + g`` then ``p -= lr * v`` (or ``lr * (g + momentum * v)``
    with Nesterov), where ``g`` includes ``weight_decay * p`` for weights.

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate.
    momentum : float, default 0
        Momentum factor in [0, 1).
    nesterov : bool, default False
        Use Nesterov momentum (needs momentum > 0).
    weight_decay : float, default 0
        L2 penalty on the weights.
    """

    kind = "sgd"

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        super().__init__()
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.check()

    @property
    def n_state(self) -> int:  # type: ignore[override]
        """One velocity per parameter with momentum, none without."""
        return 1 if self.momentum else 0

    def check(self) -> None:
        self.lr = check_nonnegative_float(self.lr, "lr", positive=True)
        self.momentum = check_nonnegative_float(self.momentum, "momentum")
        if self.momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not isinstance(self.nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False, got {self.nesterov!r}")
        self.nesterov = bool(self.nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.weight_decay = check_nonnegative_float(self.weight_decay, "weight_decay")

    def __repr__(self) -> str:
        return (f"SGD(lr={self.lr}, momentum={self.momentum}, nesterov={self.nesterov}, "
                f"weight_decay={self.weight_decay})")

    def update(self, ops, params, grads, decay) -> None:
        for p, g, s, d in zip(params, grads, self.state, decay):
            ops.sgd_update(p, g, s[0] if self.n_state else None, self.lr, self.momentum,
                           self.nesterov, self.weight_decay if d else 0.0)


class Adam(Optimizer):
    """Adam with bias-corrected moments (PyTorch's rule; L2 weight decay on weights).

    Parameters
    ----------
    lr : float, default 1e-3
        Learning rate.
    betas : tuple of float, default (0.9, 0.999)
        Decay rates of the first and second moment estimates.
    eps : float, default 1e-8
        Added to the denominator.
    weight_decay : float, default 0
        L2 penalty on the weights.
    """

    kind = "adam"
    n_state = 2

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.step_count = 0
        self.check()

    def check(self) -> None:
        self.lr = check_nonnegative_float(self.lr, "lr", positive=True)
        betas = self.betas
        try:
            b1, b2 = (float(x) for x in betas)
            if any(isinstance(x, (bool, str, bytes)) for x in betas):
                raise TypeError
        except (TypeError, ValueError):
            raise TypeError(f"betas must be two numbers, got {betas!r}") from None
        if not (0 <= b1 < 1 and 0 <= b2 < 1):  # also refuses NaN
            raise ValueError(f"betas must be in [0, 1), got {betas!r}")
        self.betas = (b1, b2)
        self.eps = check_nonnegative_float(self.eps, "eps", positive=True)
        self.weight_decay = check_nonnegative_float(self.weight_decay, "weight_decay")
        step = self.step_count
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"step_count must be a non-negative integer, got {step!r}")
        self.step_count = int(step)

    def __repr__(self) -> str:
        return (f"Adam(lr={self.lr}, betas={self.betas}, eps={self.eps}, "
                f"weight_decay={self.weight_decay})")

    def _reset(self) -> None:
        self.step_count = 0

    def update(self, ops, params, grads, decay) -> None:
        self.step_count += 1
        b1, b2 = self.betas
        for p, g, (m, v), d in zip(params, grads, self.state, decay):
            ops.adam_update(p, g, m, v, self.step_count, self.lr, b1, b2, self.eps,
                            self.weight_decay if d else 0.0)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}
