"""Surviving a lost database connection: which errors mean it, backoff, idempotency tokens.

A storage call whose connection was lost (PostgreSQL restarted, a network blip) is tried
again with exponential backoff for up to :func:`retry_seconds`; with ``pool_pre_ping`` the
next attempt gets a fresh connection. A full server (no free connection slot) is not an
outage: it is waited for a bounded time, then refused in one line
(:mod:`admet.hpo.db_connections`).

A lost connection can also lose the acknowledgement of a COMMIT the database applied, so
a retried write must be safe to repeat. The writes that are not by themselves record a
unique token in their own transaction (:data:`CREATE_TOKEN` when creating a trial,
:data:`STATE_TOKEN` when changing its state); a repeat looks its token up first and
reports what its lost attempt did (see :mod:`admet.hpo.storage._rdb`).
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import grpc
import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import DBAPIError, OperationalError

from admet.errors import StorageError
from admet.hpo.db_connections import full_message, full_wait_seconds, server_full
from admet.hpo.storage._urls import where

__all__ = [
    "CREATE_TOKEN",
    "OUTAGE_ERRORS",
    "RETRY_SECONDS",
    "STATE_TOKEN",
    "STORAGE_ERRORS",
    "TOKENS",
    "connection_lost",
    "is_outage",
    "retry_seconds",
    "retrying",
    "tagged_template",
    "until_reachable",
    "wait_for_slot",
    "with_retries",
]

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

RETRY_SECONDS = 120.0  # ADMET_STORAGE_RETRY_SECONDS overrides it
CREATE_TOKEN = "admet:create_token"  # trial system attribute: which call created the trial
STATE_TOKEN = "admet:state_token"  # trial system attribute: which call last set its state
# a create token chosen by a proxy client, so that its retried request finds the trial
# the first one created (storage._grpc_client); stored as CREATE_TOKEN, never itself
CLIENT_TOKEN = "admet:client_token"
TOKENS = (CREATE_TOKEN, STATE_TOKEN, CLIENT_TOKEN)

STORAGE_ERRORS = (OperationalError, DBAPIError, optuna.exceptions.StorageInternalError)
# what a worker may see while the database or the storage proxy is away (is_outage decides)
OUTAGE_ERRORS = (*STORAGE_ERRORS, grpc.RpcError)
# a proxy call that failed these after the client's retry window (_grpc_client): the proxy
# is away (DEADLINE_EXCEEDED: the window's deadline on a repeated call ran out)
_PROXY_AWAY = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED)


def retry_seconds() -> float:
    """How long a storage call keeps retrying a lost connection before it fails."""
    return float(os.environ.get("ADMET_STORAGE_RETRY_SECONDS", RETRY_SECONDS))


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, grpc.RpcError):
        code = getattr(exc, "code", None)
        return callable(code) and code() in _PROXY_AWAY
    if server_full(exc):  # the server answered: it is full, not gone (db_connections)
        return False
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError):
        text = str(exc).lower()
        return any(
            s in text
            for s in (
                "connection",
                "server closed",
                "terminating",
                "could not connect",
                "database system is",
                "shutting down",
                "eof",
            )
        )
    return False


def connection_lost(exc: BaseException) -> bool:
    """Whether a storage error means the connection to the database or to the storage
    proxy was lost (worth waiting for). Optuna wraps driver errors of its scoped sessions
    in StorageInternalError, and some of its writes catch a first error and try a fallback
    in the same session, which then fails with SQLAlchemy's PendingRollbackError (seen
    through the proxy when PostgreSQL shut down mid-call): the lost connection is then
    further down the exception chain."""
    link: BaseException | None = exc
    for _ in range(8):  # a chain is short; bounded against a cycle
        if link is None:
            return False
        if _is_connection_error(link):
            return True
        link = link.__cause__ or link.__context__
    return False


def is_outage(exc: BaseException) -> bool:
    """Whether a worker should wait ``exc`` out rather than fail: any database error (as
    before the proxy existed), or a storage proxy call that failed for the proxy being away."""
    return isinstance(exc, STORAGE_ERRORS) or connection_lost(exc)


def with_retries(storage: RDBStorage, attempt: Callable[[bool], T]) -> T:
    """``attempt(repeat)``, called again with exponential backoff while the connection is
    lost, for up to :func:`retry_seconds`; ``repeat`` is True from the second call on: the
    call before may have been applied with its acknowledgement lost. A storage with a
    ``connection_lost_at`` attribute (``ResilientRDBStorage``) is told when it happened."""
    delay, waited, budget = 0.5, 0.0, retry_seconds()
    full_since: float | None = None
    repeat = False
    while True:
        try:
            return attempt(repeat)
        except STORAGE_ERRORS as exc:
            if server_full(exc):
                full_since = wait_for_slot(storage.url, full_since, getattr(storage, "max_connections", None))
                continue
            if not connection_lost(exc) or waited >= budget:
                raise
            logger.warning(
                "lost the study database connection (%s); retrying in %.1f s",
                where(storage.url),
                delay,
            )
            if hasattr(storage, "connection_lost_at"):
                storage.connection_lost_at = time.monotonic()
            storage.engine.dispose()
            time.sleep(delay)
            waited += delay
            delay = min(delay * 2, 10.0)
            repeat = True


def wait_for_slot(url: str, since: float | None, max_connections: int | None) -> float:
    """One bounded wait for a connection slot on a full server; past the wait, the
    one-line :class:`StorageError` of :func:`~admet.hpo.db_connections.full_message`."""
    now = time.monotonic()
    since = now if since is None else since
    if now - since >= full_wait_seconds():
        raise StorageError(full_message(where(url), max_connections))
    if since == now:
        logger.warning("%s is full (no free connection slot); waiting for one", where(url))
    time.sleep(min(2.0, max(0.2, (now - since) / 4)))
    return since


def retrying(method: F) -> F:
    """``method`` retried through a lost connection; only for methods that are safe to
    repeat after their COMMIT was applied (module docstring)."""

    @functools.wraps(method)
    def wrapper(self: RDBStorage, *args: Any, **kwargs: Any) -> Any:
        return with_retries(self, lambda _repeat: method(self, *args, **kwargs))

    return wrapper  # type: ignore[return-value]


def until_reachable(call: Callable[[], Any], what: str = "the study storage") -> Any:
    """``call()``, waiting through a lost connection for as long as it takes (beyond the
    storage's retry window): a worker outlives outages of the database or of the storage
    proxy of any length. Errors that are not about the connection are raised at once."""
    warned, delay = False, 1.0
    full_since: float | None = None
    while True:
        try:
            return call()
        except OUTAGE_ERRORS as exc:
            if server_full(exc):  # not an outage: bounded, then one clear line
                full_since = wait_for_slot(what, full_since, None)
                continue
            if not connection_lost(exc):
                raise
            if not warned:
                away = "storage proxy" if isinstance(exc, grpc.RpcError) else "database"
                logger.warning("%s (the %s) is unreachable; waiting for it", what, away)
                warned = True
            time.sleep(delay)
            delay = min(delay * 2, 15.0)


def tagged_template(template_trial: FrozenTrial | None, key: str, token: str) -> FrozenTrial:
    """The trial a create call inserts, tagged ``key: token``: a copy of ``template_trial``
    without the tokens it was created with, or, without one, what Optuna's storage inserts
    for ``ask`` (RUNNING, started now, nothing else)."""
    if template_trial is None:
        template = FrozenTrial(
            number=-1,
            state=TrialState.RUNNING,
            value=None,
            values=None,
            datetime_start=datetime.now(),
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs={},
            system_attrs={},
            intermediate_values={},
            trial_id=-1,
        )
    else:
        template = copy.deepcopy(template_trial)
    attrs = {k: v for k, v in template.system_attrs.items() if k not in TOKENS}
    template.system_attrs = {**attrs, key: token}
    return template
