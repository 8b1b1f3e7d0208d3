"""Ctrl-C during a statement is never lost in a finalizer or a gc callback (tabledb/shell/interrupt.py)."""

from __future__ import annotations

import gc
import os
import signal
import threading
import time

import pytest

from tabledb.shell.interrupt import interruptible

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGINT to the own process")


def test_sigint_landing_in_a_gc_callback_still_interrupts():
    """A SIGINT whose handler runs inside a gc callback: with Python's default handler the
    KeyboardInterrupt is printed as 'Exception ignored' and lost; within interruptible() it
    arrives in ordinary code a moment later."""
    fired = []

    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(1)
            signal.raise_signal(signal.SIGINT)   # the handler runs here, inside the callback
            for _ in range(1000):                # some bytecodes, for the handler to run on
                pass

    gc.callbacks.append(callback)
    try:
        with pytest.raises(KeyboardInterrupt):
            with interruptible():
                gc.collect()
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:     # the statement going on
                    time.sleep(0.001)
        assert fired
    finally:
        gc.callbacks.remove(callback)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigint_landing_in_a_finalizer_still_interrupts():
    class Finalized:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)
            for _ in range(1000):
                pass

    with pytest.raises(KeyboardInterrupt):
        with interruptible():
            Finalized()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.001)


def test_an_ordinary_sigint_interrupts_at_once_and_no_second_one_follows():
    with pytest.raises(KeyboardInterrupt):
        with interruptible():
            signal.raise_signal(signal.SIGINT)
            for _ in range(1000):
                pass
    time.sleep(0.1)   # no retry was armed: nothing arrives after the block


def test_outside_the_main_thread_it_changes_nothing():
    seen = []

    def run():
        with interruptible():
            seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert seen == [signal.default_int_handler]
