"""How many database connections a worker holds, and what happens when the server is full.

Why: SQLAlchemy's default pool lets one engine open up to 15 connections, and a study worker
measured about 4 (its loop, the heartbeat thread, sessions opened inside others); PostgreSQL
allows 100 by default, so about 25 direct workers exhausted it, and a herd of workers
starting together each grabbed several before any had what it needed. A worker's pool is
therefore sized on purpose (``ADMET_MAX_DB_CONNECTIONS`` or ``hpo run --max-db-connections``,
default :data:`DEFAULT_WORKER_CONNECTIONS`: the worker loop and the heartbeat), with no
overflow, so the number of workers a server holds is ``max_connections`` divided by it.
A server that refuses a connection for being full is not a lost connection: the worker
waits a bounded time (``ADMET_DB_FULL_WAIT_SECONDS``) for a slot, then stops with one line
naming ``max_connections`` and the gRPC proxy, never a silent retry loop.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "DEFAULT_WORKER_CONNECTIONS",
    "full_message",
    "full_wait_seconds",
    "pool_kwargs",
    "server_full",
    "worker_connections",
]

# the worker loop and the heartbeat thread; also what Optuna's storage set-up opens at once
# (a session still holding its connection while the schema check takes another)
DEFAULT_WORKER_CONNECTIONS = 2
MIN_WORKER_CONNECTIONS = 2
FULL_WAIT_SECONDS = 60.0
_FULL = (
    "too many clients",  # PostgreSQL: max_connections reached
    "too many connections",  # PostgreSQL: a role's or database's CONNECTION LIMIT; MySQL
    "remaining connection slots are reserved",  # PostgreSQL: only superuser slots left
)


def worker_connections() -> int:
    """Connections a study worker's pool may hold (``ADMET_MAX_DB_CONNECTIONS``)."""
    raw = os.environ.get("ADMET_MAX_DB_CONNECTIONS", "")
    try:
        value = int(raw) if raw else DEFAULT_WORKER_CONNECTIONS
    except ValueError:
        value = 0
    if value < MIN_WORKER_CONNECTIONS:
        from admet.errors import ConfigError

        raise ConfigError(
            f"ADMET_MAX_DB_CONNECTIONS must be a whole number >= {MIN_WORKER_CONNECTIONS} "
            f"(Optuna's storage set-up holds two at once), got {raw!r}"
        )
    return value


def full_wait_seconds() -> float:
    """How long to wait for a free slot on a full server before giving up."""
    return float(os.environ.get("ADMET_DB_FULL_WAIT_SECONDS", FULL_WAIT_SECONDS))


def pool_kwargs(max_connections: int | None) -> dict[str, Any]:
    """SQLAlchemy engine settings for a pool of at most ``max_connections`` (None: the
    library's defaults, for short-lived commands and the proxy)."""
    if max_connections is None:
        return {}
    # a thread waits this long for a pooled connection before the call fails
    return {"pool_size": max_connections, "max_overflow": 0, "pool_timeout": 120}


def server_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or the driver error inside it) is the server refusing a connection
    because its connection slots are taken."""
    seen = 0
    while exc is not None and seen < 4:
        text = str(getattr(exc, "orig", None) or exc).lower()
        if any(s in text for s in _FULL):
            return True
        exc, seen = exc.__cause__, seen + 1
    return False


def full_message(where: str, max_connections: int | None) -> str:
    """The one line a worker stops with when the server stays full."""
    held = f"each direct worker holds up to {max_connections}" if max_connections else "this process"
    return (
        f"the study database ({where}) refused a connection: all its connection slots are taken "
        f"(PostgreSQL max_connections or a role's CONNECTION LIMIT; {held}); waited "
        f"{full_wait_seconds():g} s. Run fewer workers, raise max_connections, or put workers "
        "behind the gRPC proxy (admet hpo serve-storage, then --storage grpc://HOST:PORT)"
    )
