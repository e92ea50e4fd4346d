"""Opening a study storage by URL: a small registry of backends keyed by URL scheme.

:func:`open_storage` resolves the URL (:func:`._urls.resolve_storage_url`) and hands it to
the opener registered for its scheme: ``grpc``/``grpcs`` open a client of the storage
proxy (:mod:`._grpc_client`); every other scheme is an SQLAlchemy database URL for
:class:`._rdb.ResilientRDBStorage` (:func:`open_rdb_storage`). A new backend is one
:func:`register_backend` call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import BaseStorage
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
    ProgrammingError,
)

from admet.errors import StorageError
from admet.hpo.db_connections import pool_kwargs, server_full
from admet.hpo.storage._grpc_client import open_grpc_storage
from admet.hpo.storage._heartbeat import heartbeat_kwargs
from admet.hpo.storage._rdb import ResilientRDBStorage
from admet.hpo.storage._retry import STORAGE_ERRORS, wait_for_slot
from admet.hpo.storage._urls import resolve_storage_url, scheme, where
from admet.redact import mask_url, scrub

__all__ = ["BACKENDS", "Opener", "open_rdb_storage", "open_storage", "register_backend"]

logger = logging.getLogger(__name__)

# (url, heartbeat_interval, grace_period, max_retry, max_connections) -> storage
Opener = Callable[[str, int | None, int | None, int, int | None], Any]
BACKENDS: dict[str, Opener] = {}  # URL scheme (lower case, no "+driver") -> opener


def register_backend(schemes: Iterable[str], opener: Opener) -> None:
    """``opener`` opens the storage URLs of ``schemes`` (lower case, without "+driver")."""
    for name in schemes:
        BACKENDS[name.lower()] = opener


def open_storage(
    url: str | None = None,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    max_retry: int = 2,
    max_connections: int | None = None,
) -> Any:
    """The storage for ``url`` (resolved), with heartbeat and stale-trial retry: a
    :class:`~admet.hpo.storage.ResilientRDBStorage` for a database URL, a
    :class:`~admet.hpo.storage.HeartbeatGrpcStorage` for ``grpc://``/``grpcs://``.

    ``max_connections``: the most database connections its pool holds (a study worker
    passes :func:`~admet.hpo.db_connections.worker_connections`); None keeps SQLAlchemy's
    pool defaults. A full server is waited for a bounded time, then refused in one line.

    Raises:
        StorageError: the database cannot be reached or used; the message names the host
            (never the password).
    """
    url = resolve_storage_url(url)
    opener = BACKENDS.get(scheme(url), open_rdb_storage)
    return opener(url, heartbeat_interval, grace_period, max_retry, max_connections)


def _open_grpc(
    url: str,
    heartbeat_interval: int | None,
    grace_period: int | None,
    max_retry: int,
    _max_connections: int | None,
) -> BaseStorage:
    # a client of `serve-storage`: the proxy's pool bounds the database connections
    return open_grpc_storage(url, heartbeat_interval, grace_period, max_retry)


register_backend(("grpc", "grpcs"), _open_grpc)


def _probe(engine_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The engine settings of a one-connection probe (no pool of its own)."""
    return {k: v for k, v in engine_kwargs.items() if not k.startswith(("pool_", "max_overflow"))} | {
        "pool_pre_ping": False
    }


def open_rdb_storage(
    url: str,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    max_retry: int = 2,
    max_connections: int | None = None,
) -> ResilientRDBStorage:
    """:class:`ResilientRDBStorage` for the SQLAlchemy database URL ``url`` (arguments and
    errors as :func:`open_storage`)."""
    try:
        backend = make_url(url).get_backend_name()
    except (ArgumentError, ValueError, NoSuchModuleError):
        raise StorageError(f"invalid storage URL {mask_url(url)!r}") from None
    engine_kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs.update(
            pool_pre_ping=True,
            connect_args={"connect_timeout": 10, "application_name": "admet"},
            **pool_kwargs(max_connections),
        )
    kwargs = heartbeat_kwargs(heartbeat_interval, grace_period, max_retry)
    try:
        full_since: float | None = None
        attempt = 0
        while True:
            try:
                if backend != "sqlite":  # one plain connection first: a clear error if unusable
                    probe = sqlalchemy.create_engine(
                        url, poolclass=sqlalchemy.pool.NullPool, **_probe(engine_kwargs)
                    )
                    try:
                        with probe.connect() as conn:
                            conn.execute(sqlalchemy.text("select 1"))
                    finally:
                        probe.dispose()
                storage = ResilientRDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
                storage.max_connections = max_connections
                return storage
            except STORAGE_ERRORS as exc:
                if server_full(exc):  # bounded wait for a slot, then one clear line
                    full_since = wait_for_slot(url, full_since, max_connections)
                    continue
                if not isinstance(
                    exc, (IntegrityError, ProgrammingError, optuna.exceptions.StorageInternalError)
                ):
                    raise
                # Two workers creating the schema of a fresh database at the same moment:
                # the loser finds the tables on the next attempt. (The soak run also saw a
                # one-off commit error while a worker opened the storage just after a
                # database restart; the next attempt is the cheap cure.)
                attempt += 1
                if attempt == 5:
                    raise
                logger.info("opening the study storage failed (%s); trying again", type(exc).__name__)
                time.sleep(0.5 + attempt)
    except (OperationalError, DBAPIError, optuna.exceptions.StorageInternalError) as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]
        reason = scrub(reason, url)
        raise StorageError(f"cannot use the study storage ({where(url)}): {reason}") from None
    except (ModuleNotFoundError, NoSuchModuleError) as exc:
        raise StorageError(f"no database driver for {mask_url(url)!r}: {exc}") from None
