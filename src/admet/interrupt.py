"""Ctrl-C for a study worker that is neither lost nor raised inside a database call.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be, and two such
places hurt a worker that shares a study with others:

* a finalizer or weakref callback (garbage collection runs them anywhere): Python prints
  "Exception ignored", drops the interrupt and the worker runs on to the end of its
  budget, as if Ctrl-C had never been pressed;
* a storage call or Optuna's heartbeat start: a write cut half-way, or a heartbeat
  thread that was started but is never stopped, which keeps the process from exiting.

Inside :func:`deliver_at_safe_points`, a Ctrl-C is recorded, then raised at once unless
the main thread is inside the database layers (SQLAlchemy, the drivers, Optuna's
storages) or a weakref callback; a recorded one that was not raised, or that was raised
and swallowed (by some other finalizer), is raised by the next :func:`check`, which the
worker calls between trials and the training loop after every batch. A second Ctrl-C is
raised wherever it lands. Outside the context (library use) :func:`check` does nothing.

Example:
    >>> from admet import interrupt
    >>> with interrupt.deliver_at_safe_points():
    ...     interrupt.check()  # nothing was pressed
    >>> interrupt.pending()
    False
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["check", "consume", "deliver_at_safe_points", "pending"]

# path fragments of the code that a KeyboardInterrupt must not cut through (database
# layers), or where Python would swallow it (weakref callbacks run during collection)
_UNSAFE = (
    "/sqlalchemy/",
    "/psycopg2/",
    "/psycopg/",
    "/sqlite3/",
    "/optuna/storages/",
    "/alembic/",
    "/weakref.py",
    "/_weakrefset.py",
)

_presses = 0  # Ctrl-Cs recorded and not yet consumed


def _held_back_in(frame: FrameType | None) -> bool:
    while frame is not None:
        name = frame.f_code.co_filename.replace("\\", "/")
        if any(part in name for part in _UNSAFE):
            return True
        frame = frame.f_back
    return False


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    global _presses
    _presses += 1
    if _presses > 1 or not _held_back_in(frame):
        raise KeyboardInterrupt


def pending() -> bool:
    """Whether a Ctrl-C was pressed and has not been consumed yet."""
    return _presses > 0


def consume() -> None:
    """Mark the recorded Ctrl-C as handled (the caller is stopping because of it)."""
    global _presses
    _presses = 0


def check() -> None:
    """Raise ``KeyboardInterrupt`` for a Ctrl-C that was recorded but not handled yet."""
    if _presses:
        consume()
        raise KeyboardInterrupt


@contextlib.contextmanager
def deliver_at_safe_points() -> Iterator[None]:
    """Install the recording SIGINT handler for the block (main thread only; elsewhere,
    and where SIGINT is ignored on purpose, the block runs with the handler it has)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        yield
        return
    consume()
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
