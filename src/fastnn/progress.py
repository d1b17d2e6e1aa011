"""What ``Network.fit(verbose=...)`` shows while it trains.

- ``verbose=1`` on a terminal or in a notebook: a ``tqdm.auto`` bar within each
  epoch that runs longer than ``BAR_DELAY`` (samples done, samples/s, ETA and
  the running loss, redrawn at most every ``REFRESH_SECONDS``), replaced at
  the epoch's end by one line of its time and metrics.
- ``verbose=1`` elsewhere (a log file, CI, a pipe): plain lines only, never
  a carriage return or a bar character; an epoch longer than
  ``LOG_SECONDS`` also gets a progress line every ``LOG_SECONDS``.
- ``verbose=2``: the epoch lines alone.

Epoch lines are rate-limited: a burst of ``LINE_BURST`` lines, then at most
``LINE_RATE`` a second, and the last epoch's line always. So 1000 epochs of
a tenth of a millisecond print a handful of lines, not a thousand; the
``History`` has every epoch.

The fit calls ``update`` between chunks of batches (a few times a second);
it returns after one clock read unless something is due, so the display
costs nothing measurable against the training.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Mapping, TextIO

REFRESH_SECONDS = 0.25  # the bar's redraws: at most four a second
BAR_DELAY = 0.1         # an epoch shorter than this shows no bar, only its line
LOG_SECONDS = 10.0      # a non-terminal's progress lines within a long epoch
LINE_BURST = 10         # epoch lines printed before the rate limit applies
LINE_RATE = 4.0         # then at most this many epoch lines a second

_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or closed
        return False


def _in_notebook() -> bool:
    """True when ``tqdm.auto`` draws notebook widgets (Jupyter, VS Code, Colab)."""
    from tqdm.auto import tqdm as auto_tqdm

    return any(c.__module__ == "tqdm.notebook" for c in auto_tqdm.__mro__)


def format_seconds(seconds: float) -> str:
    """A duration for a log line: ``"85 us"``, ``"12.3 ms"``, ``"2.41 s"``, ``"3 min 05 s"``."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s"


def epoch_line(epoch: int, epochs: int, logs: Mapping[str, float], seconds: float,
               samples: int) -> str:
    """``epoch 3/10  2.41 s  loss 0.2103  accuracy 0.9372  ...  24,896 samples/s``."""
    parts = [f"epoch {epoch + 1}/{epochs}", format_seconds(seconds)]
    parts += [f"{name} {logs[name]:.4f}" for name in _METRICS if name in logs]
    parts.append(f"{samples / max(seconds, 1e-9):,.0f} samples/s")
    return "  ".join(parts)


class Progress:
    """The display of one ``fit``; see the module's description.

    Parameters
    ----------
    verbose : int
        1 (bar, or plain lines on a non-terminal) or 2 (epoch lines).
    epochs : int
        Epochs the fit will train at most.
    samples : int
        Training samples per epoch.
    stream : text stream, optional
        Where to write; ``sys.stdout`` at the start of the fit by default.
    """

    def __init__(self, verbose: int, epochs: int, samples: int,
                 stream: TextIO | None = None) -> None:
        self.stream = sys.stdout if stream is None else stream
        self.epochs, self.samples = epochs, samples
        self.use_bar = verbose == 1 and (_isatty(self.stream) or _in_notebook())
        self.log_within = verbose == 1 and not self.use_bar
        self.bar: Any = None
        self._epoch = 0
        self._t0 = 0.0
        self._next = math.inf
        self._tokens = float(LINE_BURST)
        self._refilled = time.perf_counter()
        self._pending: str | None = None  # the latest epoch line not printed

    # -------------------------------------------------------------- per epoch

    def epoch_begin(self, epoch: int) -> None:
        """Start timing epoch ``epoch`` (counted from 0); its bar opens after ``BAR_DELAY``."""
        self._epoch = epoch
        self._t0 = time.perf_counter()
        self._next = self._t0 + (BAR_DELAY if self.use_bar else
                                 LOG_SECONDS if self.log_within else math.inf)

    def update(self, done: int, loss_sum: float) -> None:
        """Between chunks: redraw the bar (or print a progress line) if one is due.

        Parameters
        ----------
        done : int
            Samples of the epoch trained so far.
        loss_sum : float
            The sum of their losses (the running loss is ``loss_sum / done``).
        """
        now = time.perf_counter()
        if now < self._next or done <= 0:
            return
        loss = loss_sum / done
        if self.use_bar:
            self._next = now + REFRESH_SECONDS
            if self.bar is None:
                if done >= self.samples:
                    return
                self._open_bar(done, loss)
                return
            self.bar.set_postfix_str(f"loss={loss:.4f}", refresh=False)
            self.bar.update(done - self.bar.n)
        else:
            self._next = now + LOG_SECONDS
            elapsed = now - self._t0
            eta = elapsed * (self.samples - done) / done
            self._print(f"epoch {self._epoch + 1}/{self.epochs}  {done:,}/{self.samples:,} "
                        f"samples  {done / elapsed:,.0f} samples/s  ETA "
                        f"{format_seconds(eta)}  loss {loss:.4f}")

    def _open_bar(self, done: int, loss: float) -> None:
        from tqdm.auto import tqdm

        # Opened once the epoch has run for BAR_DELAY, dated back to the epoch's
        # start so that its first rate and ETA count the samples already done.
        # (delay > 0: the constructor draws nothing; the first draw is below.)
        bar = tqdm(total=self.samples, desc=f"epoch {self._epoch + 1}/{self.epochs}",
                   unit=" samples", unit_scale=True, mininterval=REFRESH_SECONDS,
                   file=self.stream, leave=False, dynamic_ncols=True, smoothing=0.1,
                   delay=1e-6)
        bar.start_t = bar.last_print_t = time.time() - (time.perf_counter() - self._t0)
        bar.n = bar.last_print_n = done
        bar.set_postfix_str(f"loss={loss:.4f}", refresh=False)
        bar.refresh()
        self.bar = bar

    def epoch_end(self, epoch: int, logs: Mapping[str, float], seconds: float,
                  samples: int) -> None:
        """Close the bar and print the epoch's line, unless the rate limit holds it back.

        Parameters
        ----------
        epoch : int
            The epoch, counted from 0.
        logs : mapping
            Its metrics (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``).
        seconds : float
            Its training time.
        samples : int
            The samples it trained (fewer than all when a callback stopped it).
        """
        self._close_bar()
        self._next = math.inf
        now = time.perf_counter()
        # A token bucket: LINE_BURST lines at once, refilled at LINE_RATE a second.
        self._tokens = min(float(LINE_BURST), self._tokens + (now - self._refilled) * LINE_RATE)
        self._refilled = now
        line = epoch_line(epoch, self.epochs, logs, seconds, samples)
        if self._tokens >= 1 or epoch == self.epochs - 1:
            self._tokens = max(self._tokens - 1, 0.0)
            self._pending = None
            self._print(line)
        else:
            self._pending = line

    def train_end(self) -> None:
        """Print the last epoch's line if the rate limit held it back."""
        self._close_bar()
        if self._pending is not None:
            self._print(self._pending)
            self._pending = None

    def close(self) -> None:
        """Remove a bar left by a fit that raised."""
        self._close_bar()

    # -------------------------------------------------------------- output

    def _close_bar(self) -> None:
        if self.bar is not None:
            bar, self.bar = self.bar, None
            bar.close()

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
