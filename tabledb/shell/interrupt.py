"""Ctrl-C that always reaches a running statement.

Python raises KeyboardInterrupt from its default SIGINT handler at the next
bytecode the main thread runs. When that bytecode belongs to a finalizer
(``__del__``) or a garbage-collector callback, Python prints "Exception ignored
in ..." and goes on: the interrupt is lost and the statement runs on (for hours,
for a cross join). Collections run every few hundred allocations, so a long
statement is often inside one, and tabledb has both finalizers and a collector
callback (tabledb/sql/database.py).

:func:`interruptible` installs, for the duration of a block, a handler that
raises KeyboardInterrupt as the default one does, except where it would be
swallowed: there it asks again a moment later (``signal.raise_signal`` from a
timer thread), when the main thread is back in ordinary code.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import threading
from typing import Iterator

RETRY_SECONDS = 0.02


def _swallowed_at(frame) -> bool:
    """Whether an exception raised at ``frame`` would end in a finalizer or a gc callback."""
    callbacks = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        code = frame.f_code
        if code.co_name == "__del__" or code in callbacks:
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, SIGINT raises KeyboardInterrupt in ordinary code, never into a finalizer.

    Only in the main thread, and only while SIGINT has Python's default handler (a
    program embedding the shell with its own keeps it)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    active = True

    def again() -> None:
        if active:
            signal.raise_signal(signal.SIGINT)

    def handler(signum, frame):
        if _swallowed_at(frame):
            timer = threading.Timer(RETRY_SECONDS, again)
            timer.daemon = True
            timer.start()
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        active = False
        signal.signal(signal.SIGINT, signal.default_int_handler)
