"""Which objects a running ``fit`` owns, so that nothing can pull them from under it.

The compiled training loop writes through raw pointers into the layers' weights
and the optimizer's state, without the GIL, while other Python threads run.
For the length of a ``fit``, the network, its layers and its optimizer are
claimed here: a second ``fit`` that needs any of them, or an assignment to a
claimed layer's weights, is refused with a clear ``RuntimeError`` instead of
racing (a silently wrong result) or freeing memory the loop still writes
(a crash).

The claims live in this module, keyed by ``id``, rather than as locks on the
objects: the objects stay picklable and deep-copyable, and a copy made during
a fit is not born claimed. A claimed object is alive (the fit references it),
so its ``id`` cannot be reused while the claim stands.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, Sequence

_lock = threading.Lock()
_claimed: set[int] = set()  # id() of every object a running fit owns
# id() of claimed objects -> the thread that may write into them now: the fit's
# own thread while it runs its callbacks between two chunks (the compiled loop
# is not running then), so that a callback can set weights.
_open: dict[int, int] = {}


@contextmanager
def claim(objects: Sequence[tuple[object, str]]) -> Iterator[None]:
    """Claim every ``(object, description)`` pair for the body, all or none.

    Raises
    ------
    RuntimeError
        When one of them is claimed already (by a ``fit`` running in another
        thread, or by the caller's own ``fit`` further up the stack).
    """
    wanted = {id(obj) for obj, _ in objects}
    with _lock:
        for obj, what in objects:
            if id(obj) in _claimed:
                raise RuntimeError(
                    f"{what} is in use by another fit call that is still running; wait for it "
                    "to finish, or train a copy (copy.deepcopy) with an optimizer of its own")
        _claimed.update(wanted)
    try:
        yield
    finally:
        with _lock:
            _claimed.difference_update(wanted)


def is_claimed(obj: object) -> bool:
    """True while a running ``fit`` owns ``obj``."""
    return id(obj) in _claimed


@contextmanager
def opened(objects: Sequence[object]) -> Iterator[None]:
    """Let the calling thread write into these claimed objects for the body.

    The fit that claimed them calls its callbacks inside this, between two
    chunks: nothing else writes to the weights then, so a callback (restoring
    the best weights, say) may. Its assignments are copied into the arrays the
    fit trains (see ``writable_in_place``); any other thread is still refused.
    """
    ident = threading.get_ident()
    with _lock:
        _open.update((id(obj), ident) for obj in objects)
    try:
        yield
    finally:
        with _lock:
            for obj in objects:
                _open.pop(id(obj), None)


def writable_in_place(obj: object) -> bool:
    """True when the calling thread may write into claimed ``obj`` now (see ``opened``)."""
    return _open.get(id(obj)) == threading.get_ident()
