"""Ctrl-C and SIGTERM end a command cleanly: at a safe point, its files whole, exit 130 or 143.

The CLI installs the handlers (`handling()`); a library caller keeps its own. Outside a
training loop a signal stops the command at once (an atomic write in progress removes its
temporary file as the exception passes). Inside one (`deferred()`), it waits for the loop's
next safe point (`check()`: a step ended, the epoch's checkpoint written), so no step or
checkpoint is cut in half. A second signal while one waits stops at once: the user insists.
`Interrupted` is a KeyboardInterrupt, so whatever already cleans up after Ctrl-C (tune writes
its study's record) does the same after SIGTERM.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

_waiting: list[int] = []   # a signal that arrived inside deferred(), until the next check()
_depth = [0]               # nested deferred() sections


class Interrupted(KeyboardInterrupt):
    """A command stopped by a signal; `exit_code` is the shell's 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


@contextmanager
def handling() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted (at the next safe point inside deferred()) while
    inside; the previous handlers come back after (a test calling main() keeps pytest's)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _waiting.clear()


@contextmanager
def deferred() -> Iterator[None]:
    """A section (a training loop) where a signal waits for its next check()."""
    _depth[0] += 1
    try:
        yield
    finally:
        _depth[0] -= 1


def check() -> None:
    """A safe point: raise Interrupted if a signal arrived since the last one."""
    if _waiting:
        raise Interrupted(_waiting.pop())


def _on_signal(signum: int, frame) -> None:
    if _depth[0] and not _waiting:
        _waiting.append(signum)
        return
    raise Interrupted(signum)
