"""The study database through Optuna's ``RDBStorage``, surviving a database restart.

:class:`ResilientRDBStorage` is Optuna's ``RDBStorage`` whose calls are retried with
exponential backoff when the database connection is lost (:mod:`._retry`), with a
heartbeat that never raises (:mod:`._heartbeat`), a stale-trial check that also sees trials
which never wrote a heartbeat, and an atomic worker index (:meth:`register_worker`).

A lost connection can also lose the acknowledgement of a COMMIT that the database applied,
so a retried call must be safe to repeat. Reads are; so are Optuna's writes of parameters,
attributes, intermediate values and heartbeats (upserts, or inserts whose duplicate is
ignored: a repeat writes the same row again). The writes that are not are made so here:

* creating a trial (``ask``, ``add_trial``, the stale-trial retry callback) tags the new
  trial with a unique token (system attribute ``admet:create_token``) in the same
  transaction; a repeat first looks the token up and returns the trial the lost attempt
  created instead of inserting a second one;
* changing a trial's state (popping a WAITING trial, ``tell``, failing a stale trial)
  records a unique token (``admet:state_token``) in the same transaction; a repeat that
  finds its own token knows the first attempt landed and reports success, instead of
  "another worker took it" (an orphan RUNNING trial) or ``UpdateFinishedTrialError``;
* creating a study without a name picks the random name before the first attempt, so a
  repeat finds the study it created; deleting a study that a repeat finds gone succeeds;
* failing a stale trial and queueing its retry (Optuna's ``fail_stale_trials``) are two
  steps, and an outage longer than the retry window can end the call between or inside
  them; the trial is then not stale any more, and a plain second call would never queue
  its retry. The storage remembers such a trial (and the state token of its FAIL) until
  its retry callback has run: the next call reports it stale again, the repeated FAIL
  finds its token, and the callback runs once (a copy that already landed is not queued
  twice).

Both tokens are looked up after the row lock the write itself takes (the study row for a
new trial, the trial row for a state change), so the repeat waits for a first attempt the
server is still committing.

Over 350 lines because every write made repeatable above is an override of
``RDBStorage`` in the one class, next to the token lookups they share.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import IntegrityError

from admet.hpo.storage._heartbeat import beating
from admet.hpo.storage._optuna_private import (
    DEFAULT_STUDY_NAME_PREFIX,
    models,
    rdb_create_new_trial,
    rdb_prepared_new_trial,
    rdb_stale_trial_ids,
    scoped_session,
    set_trial_system_attr_without_commit,
    set_trial_value_without_commit,
    trial_id_of,
)
from admet.hpo.storage._retry import (
    CLIENT_TOKEN,
    CREATE_TOKEN,
    STATE_TOKEN,
    STORAGE_ERRORS,
    connection_lost,
    retrying,
    tagged_template,
    with_retries,
)

__all__ = ["ResilientRDBStorage"]

logger = logging.getLogger(__name__)


def _retry_exists(study: optuna.Study, failed: FrozenTrial) -> bool:
    """Whether a copy of ``failed`` was already queued by a retry callback (Optuna's
    ``RetryFailedTrialCallback`` appends the failed trial's number to ``retry_history``)."""
    return any(
        (t.system_attrs.get("retry_history") or [None])[-1] == failed.number
        for t in study.get_trials(deepcopy=False)
    )


class ResilientRDBStorage(RDBStorage):
    """``RDBStorage`` that retries calls for up to ``RETRY_SECONDS`` when the database
    connection drops, so a worker survives a database restart, and applies every retried
    write once even when a COMMIT's acknowledgement was lost (module docstring); and that
    also treats a RUNNING trial which never wrote a heartbeat as stale once it has stayed
    so for the grace period."""

    max_connections: int | None = None  # the pool's bound (open_storage), for messages
    # when this process last saw the connection drop (time.monotonic()); see
    # _get_stale_trial_ids. A class default, so with_retries can tell it during set-up too
    connection_lost_at = -math.inf

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._create_attempted: set[str] = set()  # create tokens whose insert was tried
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            # a failed set-up (a full server, a schema race) must not keep its pool's
            # connections open until garbage collection: the caller tries again
            if getattr(self, "engine", None) is not None:
                self.engine.dispose()
            raise
        self._no_heartbeat_since: dict[int, float] = {}  # trial id -> first seen silent
        # the stale checks' last answers: trial id -> study id
        self._stale_candidates: dict[int, int] = {}
        # stale trials this process failed (or tried to) whose retry callback has not run:
        # trial id -> (study id, state token of the FAIL)
        self._stale_unsettled: dict[int, tuple[int, str]] = {}
        self._stale_lock = threading.Lock()  # study.optimize(n_jobs > 1) shares the storage
        self._heartbeat_failing = False
        # when this process last saw the connection drop (time.monotonic()); see
        # _get_stale_trial_ids
        self.connection_lost_at = -math.inf

    # -- writes made safe to repeat after a lost acknowledgement -------------------------

    def create_new_study(
        self, directions: Sequence[optuna.study.StudyDirection], study_name: str | None = None
    ) -> int:
        """Optuna's, retried; without a name, the random name is chosen before the first
        attempt, so a repeat that finds the name taken has found the study it created.
        A repeat with a caller's name that finds it taken raises ``DuplicatedStudyError``
        as for any existing study (``create_study(load_if_exists=True)`` then loads it)."""
        name = study_name or DEFAULT_STUDY_NAME_PREFIX + str(uuid.uuid4())

        def attempt(repeat: bool) -> int:
            try:
                return RDBStorage.create_new_study(self, directions, name)
            except optuna.exceptions.DuplicatedStudyError:
                if repeat and study_name is None:
                    return self.get_study_id_from_name(name)
                raise

        return with_retries(self, attempt)

    def delete_study(self, study_id: int) -> None:
        """Optuna's, retried; a repeat that finds the study gone has deleted it."""

        def attempt(repeat: bool) -> None:
            try:
                RDBStorage.delete_study(self, study_id)
            except KeyError:
                if not repeat:
                    raise

        with_retries(self, attempt)

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        """Optuna's trial creation (``ask`` and ``add_trial`` both come here, also through
        Optuna's cached storage), retried; the trial is tagged with a new token in its
        creating transaction, and every attempt after the first (Optuna's own deadlock
        retries included) first returns the trial that carries the token, if any.

        Without a template, Optuna inserts a RUNNING trial started now with nothing else;
        the template used instead says exactly that, plus the token. The tokens of a
        template (a stale trial copied by the retry callback carries its own) are dropped;
        a proxy client's token (``CLIENT_TOKEN``, :mod:`._grpc_client`) becomes the create
        token, so its retried request returns the trial the first one created.
        """
        # a proxy client's request carries its own token (the same in a retried request);
        # then every attempt looks it up first
        client = template_trial.system_attrs.get(CLIENT_TOKEN) if template_trial is not None else None
        token = client if isinstance(client, str) and client else uuid.uuid4().hex
        if token == client:
            self._create_attempted.add(token)
        template = tagged_template(template_trial, CREATE_TOKEN, token)
        try:
            return with_retries(self, lambda _repeat: rdb_create_new_trial(self, study_id, template))
        finally:
            self._create_attempted.discard(token)

    def _get_prepared_new_trial(self, study_id: int, template_trial: FrozenTrial | None, session: Any) -> Any:
        # Runs inside Optuna's creating transaction, after it locked the study row: a
        # repeat returns the trial its lost attempt created (Optuna builds the returned
        # FrozenTrial from the template, as for a new one).
        token = template_trial.system_attrs.get(CREATE_TOKEN) if template_trial is not None else None
        if token is not None:
            if token in self._create_attempted:
                attr = models.TrialSystemAttributeModel
                existing = (
                    session.query(models.TrialModel)
                    .join(attr, attr.trial_id == models.TrialModel.trial_id)
                    .filter(models.TrialModel.study_id == study_id)
                    .filter(attr.key == CREATE_TOKEN, attr.value_json == json.dumps(token))
                    .one_or_none()
                )
                if existing is not None:
                    logger.info("trial %d was created by an attempt whose answer was lost", existing.number)
                    return existing
            self._create_attempted.add(token)
        return rdb_prepared_new_trial(self, study_id, template_trial, session)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        """Optuna's state change (popping a WAITING trial, ``tell``, failing a stale
        trial), retried, with the same answers: False when another worker popped the trial
        first, ``UpdateFinishedTrialError`` when it is already finished. The change records
        a new token in its transaction; a repeat that finds its token returns True: its
        first attempt landed (the trial is this worker's, or finished as told)."""
        with self._stale_lock:
            study_id = self._stale_candidates.get(trial_id)
            remembered = self._stale_unsettled.get(trial_id)
        # only with a retry callback: nothing else would ever settle the trial
        stale_fail = (
            state == TrialState.FAIL
            and study_id is not None
            and RDBStorage.get_heartbeat_stale_trial_callback(self) is not None
        )
        unsettled = remembered[1] if stale_fail and remembered is not None else None
        token = unsettled or uuid.uuid4().hex
        try:
            done = with_retries(
                self,
                lambda repeat: self._set_state_once(
                    trial_id, state, values, token, repeat or unsettled is not None
                ),
            )
        except STORAGE_ERRORS as exc:
            if stale_fail and connection_lost(exc):
                self._remember_stale(trial_id, study_id, token)  # landed or not: the next check tells
            raise
        except (optuna.exceptions.UpdateFinishedTrialError, KeyError):
            self._forget_stale(trial_id)  # another worker failed it first, or it is gone
            raise
        if stale_fail and done:
            self._remember_stale(trial_id, study_id, token)  # until its retry callback has run
        elif stale_fail:
            self._forget_stale(trial_id)
        return done

    def _remember_stale(self, trial_id: int, study_id: int | None, token: str) -> None:
        assert study_id is not None
        with self._stale_lock:
            self._stale_unsettled[trial_id] = (study_id, token)

    def _forget_stale(self, trial_id: int) -> None:
        with self._stale_lock:
            self._stale_unsettled.pop(trial_id, None)

    def _set_state_once(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None, token: str, repeat: bool
    ) -> bool:
        # Optuna 5's RDBStorage.set_trial_state_values, plus the token; Optuna's schema
        # and session helpers through _optuna_private
        try:
            with scoped_session(self) as session:
                trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
                if repeat:
                    attr = models.TrialSystemAttributeModel
                    mine = (
                        session.query(attr.trial_id)
                        .filter(attr.trial_id == trial_id, attr.key == STATE_TOKEN)
                        .filter(attr.value_json == json.dumps(token))
                        .one_or_none()
                    )
                    if mine is not None:
                        logger.info(
                            "trial %d was set %s by an attempt whose answer was lost",
                            trial.number,
                            state.name,
                        )
                        return True
                self.check_trial_is_updatable(trial_id, trial.state)
                if values is not None:
                    for objective, v in enumerate(values):
                        set_trial_value_without_commit(self, session, trial, objective, v)
                if state == TrialState.RUNNING and trial.state != TrialState.WAITING:
                    return False
                set_trial_system_attr_without_commit(self, session, trial_id, STATE_TOKEN, token)
                trial.state = state
                if state == TrialState.RUNNING:
                    trial.datetime_start = datetime.now()
                if state.is_finished():
                    trial.datetime_complete = datetime.now()
        except IntegrityError:
            return False
        return True

    # -- stale trials, worker registration ------------------------------------------------

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # Optuna's own check skips RUNNING trials without a heartbeat row (a worker killed
        # between creating the trial and its first beat, a notebook's study.ask(), a trial
        # from an older version): they would hold the budget forever and make every worker
        # wait. Such a trial is stale once this process has seen it without a heartbeat
        # for the grace period; measured on this process's clock, so clocks and time zones
        # of other machines do not matter.
        grace = self.grace_period if self.grace_period is not None else 2 * (self.heartbeat_interval or 60)
        now = time.monotonic()
        # The database was away: no worker could beat meanwhile, and their heartbeat
        # retries back off for seconds after it is back, so every live trial looks stale
        # for a while. New ones are judged only after a grace period of reachability (a
        # worker that is really gone is still failed, a grace period later).
        recently_lost = now - self.connection_lost_at < grace
        stale = [] if recently_lost else rdb_stale_trial_ids(self, study_id)
        seen = self._no_heartbeat_since
        silent = set(self._trials_without_heartbeat(study_id))
        for trial_id in list(seen):
            if trial_id not in silent:
                del seen[trial_id]
        for trial_id in silent:
            if now - seen.setdefault(trial_id, now) > grace:
                stale.append(trial_id)
        # failed as stale by this process, retry callback not run yet (module docstring):
        # again if its FAIL is stored (the repeat finds its token, the callback runs);
        # forgotten if it is RUNNING and no longer stale (the FAIL never landed and its
        # worker is beating again) or gone
        with self._stale_lock:
            remembered = [
                t for t, (s, _) in self._stale_unsettled.items() if s == study_id and t not in stale
            ]
        if remembered:
            states = self._trial_states(remembered)
            for trial_id in remembered:
                if states.get(trial_id) == TrialState.FAIL:
                    stale.append(trial_id)
                else:
                    self._forget_stale(trial_id)
        with self._stale_lock:
            self._stale_candidates = {
                **{t: s for t, s in self._stale_candidates.items() if s != study_id},
                **dict.fromkeys(stale, study_id),
            }
        return stale

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        """Optuna's retry callback, run once per stale trial this process failed: a call
        cut short by an outage is completed by the next stale check, and a copy that
        landed before the outage is not queued again."""
        callback = super().get_heartbeat_stale_trial_callback()
        if callback is None:
            return None

        def settle(study: optuna.Study, trial: FrozenTrial) -> None:
            if _retry_exists(study, trial):
                logger.info("trial %d's retry was queued by an attempt whose answer was lost", trial.number)
            else:
                callback(study, trial)
            self._forget_stale(trial_id_of(trial))

        return settle

    def register_worker(self, study_id: int, worker: str) -> int:
        """A new worker index of the study, unique under concurrent starts: read and
        recorded (user attribute ``worker:<index>``) in one transaction that holds a
        database lock (PostgreSQL advisory lock, SQLite's write lock). Indices are never
        reused, so a restarted worker with the same host and PID does not repeat another
        start's sampler seed."""
        # Optuna's schema (through _optuna_private): no atomic public API
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

    def _trial_states(self, trial_ids: list[int]) -> dict[int, TrialState]:
        # Optuna's schema (through _optuna_private): no public batch read
        with self.engine.connect() as conn:
            rows = conn.execute(
                sqlalchemy.select(models.TrialModel.trial_id, models.TrialModel.state).where(
                    models.TrialModel.trial_id.in_(trial_ids)
                )
            )
            return {int(t): s if isinstance(s, TrialState) else TrialState[str(s)] for t, s in rows}

    def _trials_without_heartbeat(self, study_id: int) -> list[int]:
        with self.engine.connect() as conn:
            heartbeat_ids = sqlalchemy.select(models.TrialHeartbeatModel.trial_id)
            rows = conn.execute(
                sqlalchemy.select(models.TrialModel.trial_id)
                .where(models.TrialModel.study_id == study_id)
                .where(models.TrialModel.state == TrialState.RUNNING)
                .where(models.TrialModel.trial_id.not_in(heartbeat_ids))
            )
            return [int(r[0]) for r in rows]


# Retried safely by their own code above; a second layer of retries would draw a second
# token and defeat the check.
_OWN_RETRIES = frozenset({"create_new_study", "delete_study", "_create_new_trial", "set_trial_state_values"})
_NOT_RETRIED = {
    # its whole body is _create_new_trial, which retries with one token for all attempts
    "create_new_trial",
    # converts rows loaded in its caller's transaction, which is retried as a whole
    "_build_frozen_trial_from_trial_model",
}


def _runs_in_callers_transaction(method: Callable[..., Any]) -> bool:
    """Optuna's ``*_without_commit`` helpers and ``_get_prepared_new_trial`` take the
    caller's session: retrying one alone cannot help, its transaction is gone."""
    return "session" in inspect.signature(method).parameters


_RETRIED = [
    name
    for name, value in vars(RDBStorage).items()
    if callable(value)
    and not name.startswith("__")
    and not isinstance(value, (staticmethod, classmethod))
    and name not in _OWN_RETRIES
    and name not in _NOT_RETRIED
    and not _runs_in_callers_transaction(value)
]
for _name in _RETRIED:
    # reads, and writes that are upserts (idempotent): our own overrides are retried too
    _own = vars(ResilientRDBStorage).get(_name, getattr(RDBStorage, _name))
    setattr(ResilientRDBStorage, _name, retrying(_own))


ResilientRDBStorage.record_heartbeat = beating(ResilientRDBStorage.record_heartbeat)  # type: ignore[method-assign]
