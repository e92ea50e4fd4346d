"""Study storage: which database, Optuna's RDBStorage with heartbeat and retry, and
surviving a database restart.

The URL comes from ``--storage``, then ``ADMET_HPO_STORAGE``, then the embedded default
``sqlite:///<working dir>/admet-studies.db``. For PostgreSQL the password belongs in the
URL from the environment (or ``~/.pgpass``); it is never printed or logged: every message
uses :func:`mask_url`.

:class:`ResilientRDBStorage` is Optuna's ``RDBStorage`` whose calls are retried with
exponential backoff when the database connection is lost (PostgreSQL restarted, network
blip); with ``pool_pre_ping`` the next attempt gets a fresh connection.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
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
from admet.paths import home
from admet.redact import mask_url, scrub

__all__ = [
    "ResilientRDBStorage",
    "default_storage_url",
    "open_storage",
    "resolve_storage_url",
    "until_reachable",
]

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_DB_NAME = "admet-studies.db"
RETRY_SECONDS = 120.0  # ADMET_STORAGE_RETRY_SECONDS overrides it


def retry_seconds() -> float:
    """How long a storage call keeps retrying a lost connection before it fails."""
    return float(os.environ.get("ADMET_STORAGE_RETRY_SECONDS", RETRY_SECONDS))


def default_storage_url() -> str:
    return f"sqlite:///{home() / DEFAULT_DB_NAME}"


def resolve_storage_url(explicit: str | None = None) -> str:
    """``--storage``, then ``ADMET_HPO_STORAGE``, then the embedded SQLite file."""
    return explicit or os.environ.get("ADMET_HPO_STORAGE") or default_storage_url()


def _where(url: str) -> str:
    try:
        u = make_url(url)
    except (ArgumentError, ValueError):
        return mask_url(url)
    if u.get_backend_name() == "sqlite":
        return f"SQLite file {u.database}"
    return f"{u.get_backend_name()} at {u.host or 'localhost'}:{u.port or 'default port'}/{u.database}"


def _is_connection_error(exc: BaseException) -> bool:
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


STORAGE_ERRORS = (OperationalError, DBAPIError, optuna.exceptions.StorageInternalError)


def _connection_lost(exc: BaseException) -> bool:
    """Whether a storage error means the connection was lost (worth waiting for); Optuna
    wraps driver errors of its scoped sessions in StorageInternalError."""
    cause = exc if isinstance(exc, DBAPIError) else exc.__cause__
    return cause is not None and _is_connection_error(cause)


def _retrying(method: F) -> F:
    @functools.wraps(method)
    def wrapper(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        delay, waited, budget = 0.5, 0.0, retry_seconds()
        while True:
            try:
                return method(self, *args, **kwargs)
            except STORAGE_ERRORS as exc:
                if not _connection_lost(exc) or waited >= budget:
                    raise
                logger.warning(
                    "lost the study database connection (%s); retrying in %.1f s",
                    _where(self.url),
                    delay,
                )
                self.engine.dispose()
                time.sleep(delay)
                waited += delay
                delay = min(delay * 2, 10.0)

    return wrapper  # type: ignore[return-value]


def until_reachable(call: Callable[[], Any], what: str = "the study database") -> Any:
    """``call()``, waiting through a lost connection for as long as it takes (beyond the
    storage's retry window): a worker outlives database outages of any length. Errors
    that are not about the connection are raised at once."""
    warned, delay = False, 1.0
    while True:
        try:
            return call()
        except STORAGE_ERRORS as exc:
            if not _connection_lost(exc):
                raise
            if not warned:
                logger.warning("%s is unreachable; waiting for it", what)
                warned = True
            time.sleep(delay)
            delay = min(delay * 2, 15.0)


class ResilientRDBStorage(RDBStorage):
    """``RDBStorage`` that retries calls for up to ``RETRY_SECONDS`` when the database
    connection drops, so a worker survives a database restart; and that also treats a
    RUNNING trial which never wrote a heartbeat as stale once it has stayed so for the
    grace period."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._no_heartbeat_since: dict[int, float] = {}  # trial id -> first seen silent
        self._heartbeat_failing = False

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # Optuna's own check skips RUNNING trials without a heartbeat row (a worker killed
        # between creating the trial and its first beat, a notebook's study.ask(), a trial
        # from an older version): they would hold the budget forever and make every worker
        # wait. Such a trial is stale once this process has seen it without a heartbeat
        # for the grace period; measured on this process's clock, so clocks and time zones
        # of other machines do not matter.
        stale = super()._get_stale_trial_ids(study_id)
        grace = self.grace_period if self.grace_period is not None else 2 * (self.heartbeat_interval or 60)
        now = time.monotonic()
        seen = self._no_heartbeat_since
        silent = set(self._trials_without_heartbeat(study_id))
        for trial_id in list(seen):
            if trial_id not in silent:
                del seen[trial_id]
        for trial_id in silent:
            if now - seen.setdefault(trial_id, now) > grace:
                stale.append(trial_id)
        return stale

    def register_worker(self, study_id: int, worker: str) -> int:
        """A new worker index of the study, unique under concurrent starts: read and
        recorded (user attribute ``worker:<index>``) in one transaction that holds a
        database lock (PostgreSQL advisory lock, SQLite's write lock). Indices are never
        reused, so a restarted worker with the same host and PID does not repeat another
        start's sampler seed."""
        from optuna.storages._rdb import models  # Optuna's schema: no atomic public API

        table = models.StudyUserAttributeModel.__table__
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            conn_cm = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        else:
            conn_cm = self.engine.connect()
        with conn_cm as conn:
            if dialect == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif dialect == "postgresql":
                conn.execute(
                    sqlalchemy.text("SELECT pg_advisory_xact_lock(:k)"), {"k": 0x61646D65 + study_id}
                )
            try:
                keys = conn.execute(
                    sqlalchemy.select(table.c.key)
                    .where(table.c.study_id == study_id)
                    .where(table.c.key.like("worker:%"))
                ).scalars()
                taken = [int(k.split(":", 1)[1]) for k in keys if k.split(":", 1)[1].isdigit()]
                index = max(taken, default=-1) + 1
                conn.execute(
                    sqlalchemy.insert(table).values(
                        study_id=study_id, key=f"worker:{index}", value_json=json.dumps(worker)
                    )
                )
            except BaseException:
                conn.exec_driver_sql("ROLLBACK") if dialect == "sqlite" else conn.rollback()
                raise
            conn.exec_driver_sql("COMMIT") if dialect == "sqlite" else conn.commit()
        return index

    def _trials_without_heartbeat(self, study_id: int) -> list[int]:
        from optuna.storages._rdb import models  # Optuna's schema; no public query for this

        with self.engine.connect() as conn:
            heartbeat_ids = sqlalchemy.select(models.TrialHeartbeatModel.trial_id)
            rows = conn.execute(
                sqlalchemy.select(models.TrialModel.trial_id)
                .where(models.TrialModel.study_id == study_id)
                .where(models.TrialModel.state == TrialState.RUNNING)
                .where(models.TrialModel.trial_id.not_in(heartbeat_ids))
            )
            return [int(r[0]) for r in rows]


_RETRIED = [
    name
    for name, value in vars(RDBStorage).items()
    if callable(value)
    and not name.startswith("__")
    and name not in ("_set_default_engine_kwargs_for_mysql",)
    and not isinstance(value, (staticmethod, classmethod))
]
for _name in _RETRIED:
    # our own overrides are retried too
    _own = vars(ResilientRDBStorage).get(_name, getattr(RDBStorage, _name))
    setattr(ResilientRDBStorage, _name, _retrying(_own))


def _beating(record_heartbeat: F) -> F:
    """Optuna's heartbeat thread has no error handling: one exception (an outage longer
    than the retry window, SQLite's 'database is locked') ends it for good while training
    goes on, and other workers then fail the live trial as stale. The heartbeat therefore
    never raises: a failed beat is logged once per outage and the next beat tries again."""

    @functools.wraps(record_heartbeat)
    def wrapper(self: ResilientRDBStorage, trial_id: int) -> None:
        try:
            record_heartbeat(self, trial_id)
        except Exception as exc:
            if not self._heartbeat_failing:
                logger.warning(
                    "heartbeat of trial %d not recorded (%s); retrying at the next beat",
                    trial_id,
                    scrub(str(exc).splitlines()[0][:200], self.url),
                )
            self._heartbeat_failing = True
        else:
            if self._heartbeat_failing:
                self._heartbeat_failing = False
                logger.warning("heartbeat of trial %d recorded again", trial_id)

    return wrapper  # type: ignore[return-value]


ResilientRDBStorage.record_heartbeat = _beating(ResilientRDBStorage.record_heartbeat)  # type: ignore[method-assign]


def open_storage(
    url: str | None = None,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    max_retry: int = 2,
) -> ResilientRDBStorage:
    """An RDB storage for ``url`` (resolved), with heartbeat and stale-trial retry.

    Raises:
        StorageError: the database cannot be reached or used; the message names the host
            (never the password).
    """
    url = resolve_storage_url(url)
    try:
        backend = make_url(url).get_backend_name()
    except (ArgumentError, ValueError, NoSuchModuleError):
        raise StorageError(f"invalid storage URL {mask_url(url)!r}") from None
    engine_kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs.update(pool_pre_ping=True, connect_args={"connect_timeout": 10})
    kwargs: dict[str, Any] = {}
    if heartbeat_interval:
        kwargs.update(
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
        )
    try:
        if backend != "sqlite":
            probe = sqlalchemy.create_engine(url, **engine_kwargs)
            try:
                with probe.connect() as conn:
                    conn.execute(sqlalchemy.text("select 1"))
            finally:
                probe.dispose()
        for attempt in range(5):
            try:
                return ResilientRDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
            except (IntegrityError, ProgrammingError):
                # Two workers creating the schema of a fresh database at the same moment:
                # the loser finds the tables on the next attempt.
                if attempt == 4:
                    raise
                time.sleep(0.5 + attempt)
        raise AssertionError("unreachable")
    except (OperationalError, DBAPIError, optuna.exceptions.StorageInternalError) as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]
        reason = scrub(reason, url)
        raise StorageError(f"cannot use the study storage ({_where(url)}): {reason}") from None
    except (ModuleNotFoundError, NoSuchModuleError) as exc:
        raise StorageError(f"no database driver for {mask_url(url)!r}: {exc}") from None
