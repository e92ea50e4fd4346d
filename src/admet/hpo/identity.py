"""This process's name in a study (host and pid): the worker registry, the trials a worker
stamps and the failure streak all match on it, so there is exactly one definition."""

from __future__ import annotations

import os
import socket

__all__ = ["worker_id"]


def worker_id() -> str:
    """``<host>-<pid>`` of this process."""
    return f"{socket.gethostname()}-{os.getpid()}"
