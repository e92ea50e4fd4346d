"""User-facing error types and the command-line error boundary.

Every error a user can cause with bad input derives from :class:`AdmetError`; the two
runtime outcomes a study records as a failed trial (:class:`TrainingDivergedError`,
:class:`BudgetTakenError`) live here too, so that every layer can name them. The CLI
entry points wrap their work in :func:`cli_errors`, which turns such an error into one
line on stderr and exit code 2, without a traceback.
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from typing import TypeVar

__all__ = [
    "AdmetError",
    "BudgetTakenError",
    "ConfigError",
    "DataError",
    "LegacyConfigWarning",
    "StorageError",
    "TrainingDivergedError",
    "cli_errors",
]

F = TypeVar("F", bound=Callable[..., int])

EXIT_USAGE = 2


class AdmetError(Exception):
    """An error caused by user input; its message is a complete, single-line explanation."""


class DataError(AdmetError, ValueError):
    """Invalid or unreadable data file (the message names file, row and value)."""


class ConfigError(AdmetError, ValueError):
    """Invalid configuration (the message names the key)."""


class StorageError(AdmetError):
    """A study storage that cannot be reached or used (the message never holds a password)."""


class LegacyConfigWarning(DeprecationWarning):
    """A key of the original project's schema that was mapped or has no effect here; the
    command-line tools print each as one ``warning:`` line."""


class TrainingDivergedError(RuntimeError):
    """Training produced no finite validation metric (NaN/inf loss): the trial fails, the
    study goes on."""


class DiskFullError(RuntimeError):
    """A write ran out of disk space (``ENOSPC``); the message names the path. A study
    fails the trial and goes on."""


def disk_full(exc: BaseException) -> DiskFullError | None:
    """``exc`` as a :class:`DiskFullError` if it (or what caused it) is ``ENOSPC``."""
    import errno

    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return DiskFullError(f"disk full: {exc.filename or 'a write of this trial'}")
        exc, seen = exc.__cause__ or exc.__context__, seen + 1  # type: ignore[assignment]
    return None


class BudgetTakenError(RuntimeError):
    """Another worker started the last trial of the study's budget a moment before this one."""


def cli_errors(func: F) -> F:
    """Run a CLI ``main`` so that user errors print one line and exit with code 2."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> int:
        if threading.current_thread() is threading.main_thread():
            # A process started in the background by a shell inherits SIGINT ignored, and
            # Python then keeps ignoring it: restore Ctrl-C / kill -INT for every command.
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", LegacyConfigWarning)
                shown = warnings.showwarning

                def one_line(message, category, *rest, **kw):  # type: ignore[no-untyped-def]
                    if issubclass(category, LegacyConfigWarning):
                        print(f"warning: {message}", file=sys.stderr)
                    else:
                        shown(message, category, *rest, **kw)

                warnings.showwarning = one_line
                return func(*args, **kwargs)
        except AdmetError as exc:
            message = " ".join(str(exc).split("\n"))
            print(f"error: {message}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt as exc:
            detail = " ".join(str(exc).split("\n"))
            print(f"interrupted: {detail}" if detail else "interrupted", file=sys.stderr)
            return 130

    return wrapper  # type: ignore[return-value]
