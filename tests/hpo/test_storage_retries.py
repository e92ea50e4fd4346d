"""Storage writes retried after a lost connection are applied once (issue 12, item 5).

A COMMIT can be applied by the database while its acknowledgement is lost with the
connection; the storage then retries a call that already landed. These tests make that
happen deterministically: :class:`LostAck` lets the commit of a chosen transaction reach
the database and then raises a lost-connection ``OperationalError`` in its place, and
every test counts trials, so without the storage's checks the duplicate, the orphan or
the error shows up. Each runs on SQLite (a file) and on PostgreSQL (``postgres_url``:
skipped without it outside CI, failing in CI); the PostgreSQL database is shared, so each
test uses a study of its own and deletes it, and leaves the tables alone.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator

import optuna
import pytest
import sqlalchemy
import sqlalchemy.orm
from optuna.distributions import FloatDistribution
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from admet.hpo.storage import CREATE_TOKEN, ResilientRDBStorage, open_storage
from admet.hpo.storage import _rdb as rdb_module

X = FloatDistribution(0.0, 1.0)
INSERT_TRIAL = r"^INSERT INTO trials "
STATE_CHANGE = r"^UPDATE trials SET state="


class LostAck:
    """The commit of the next ``times`` transactions of ``engine`` that ran a statement
    matching ``pattern`` is applied (``applied=True``) or not, and then fails as a lost
    connection; ``meanwhile`` runs before the error is raised (another worker's move)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, engine: sqlalchemy.Engine) -> None:
        self.engine = engine
        self.pattern: re.Pattern[str] | None = None
        self.times = 0
        self.applied = True
        self.meanwhile: Callable[[], None] | None = None
        self.fired = 0
        self._statements: list[str] = []
        sqlalchemy.event.listen(engine, "before_cursor_execute", self._record)
        sqlalchemy.event.listen(engine, "rollback", lambda conn: self._statements.clear())
        real_commit = sqlalchemy.orm.Session.commit
        lost = self

        def commit(session: sqlalchemy.orm.Session) -> None:
            if session.bind is not lost.engine:
                return real_commit(session)
            session.flush()  # the statements of this transaction, all run now
            ran, lost._statements = lost._statements, []
            hit = lost.times > 0 and lost.pattern is not None and any(lost.pattern.search(s) for s in ran)
            if not hit:
                return real_commit(session)
            lost.times -= 1
            lost.fired += 1
            if lost.applied:
                real_commit(session)
            else:
                session.rollback()
            if lost.meanwhile is not None:
                lost.meanwhile()
            raise sqlalchemy.exc.OperationalError(
                "COMMIT",
                None,
                ConnectionError("server closed the connection unexpectedly"),
                connection_invalidated=True,
            )

        monkeypatch.setattr(sqlalchemy.orm.Session, "commit", commit)

    def _record(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self._statements.append(statement.strip())

    def arm(
        self,
        pattern: str,
        times: int = 1,
        applied: bool = True,
        meanwhile: Callable[[], None] | None = None,
    ) -> LostAck:
        self.pattern, self.times = re.compile(pattern), times
        self.applied, self.meanwhile = applied, meanwhile
        self._statements.clear()
        return self


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studies.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def study_name(url: str) -> Iterator[str]:
    name = f"lost-ack-{uuid.uuid4().hex[:10]}"
    yield name
    storage = open_storage(url)
    try:
        optuna.delete_study(study_name=name, storage=storage)
    except KeyError:
        pass
    finally:
        storage.engine.dispose()


@pytest.fixture(autouse=True)
def _short_retry_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMET_STORAGE_RETRY_SECONDS", "10")


def _study(url: str, name: str, **storage_kwargs) -> tuple[optuna.Study, ResilientRDBStorage]:
    storage = open_storage(url, **storage_kwargs)
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True)
    return study, storage


def _waiting_copy(study: optuna.Study, x: float = 0.25) -> None:
    study.add_trial(
        optuna.trial.create_trial(state=TrialState.WAITING, params={"x": x}, distributions={"x": X})
    )


def _states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in study.get_trials(deepcopy=False)]


def test_ask_after_a_lost_ack_creates_one_trial(url, study_name, monkeypatch):
    study, storage = _study(url, study_name)
    lost = LostAck(monkeypatch, storage.engine).arm(INSERT_TRIAL)
    trial = study.ask()
    assert lost.fired == 1
    assert _states(study) == ["RUNNING"]
    assert trial.number == 0
    assert CREATE_TOKEN in study.trials[0].system_attrs
    trial.suggest_float("x", 0.0, 1.0)  # the returned trial is the stored one
    study.tell(trial, 0.5)
    assert _states(study) == ["COMPLETE"]


def test_lost_connection_before_the_commit_still_creates_the_trial(url, study_name, monkeypatch):
    study, storage = _study(url, study_name)
    lost = LostAck(monkeypatch, storage.engine).arm(INSERT_TRIAL, applied=False)
    study.ask()
    assert lost.fired == 1
    assert _states(study) == ["RUNNING"]


def test_retry_callback_after_a_lost_ack_queues_one_copy(url, study_name, monkeypatch):
    study, storage = _study(url, study_name)
    trial = study.ask({"x": X})
    study.tell(trial, state=TrialState.FAIL)
    failed = study.trials[0]
    lost = LostAck(monkeypatch, storage.engine).arm(INSERT_TRIAL)
    RetryHeartbeatStaleTrialCallback(max_retry=2)(study, failed)
    assert lost.fired == 1
    assert _states(study) == ["FAIL", "WAITING"]
    copy = study.trials[1]
    assert copy.params == failed.params
    assert copy.system_attrs["failed_trial"] == 0
    # the copy carries a token of its own, not the failed trial's
    assert copy.system_attrs[CREATE_TOKEN] != failed.system_attrs[CREATE_TOKEN]


def test_popping_a_waiting_trial_after_a_lost_ack_leaves_no_orphan(url, study_name, monkeypatch):
    study, storage = _study(url, study_name)
    _waiting_copy(study)
    lost = LostAck(monkeypatch, storage.engine).arm(STATE_CHANGE)
    trial = study.ask()
    assert lost.fired == 1
    assert trial.number == 0, "the popped trial is this worker's"
    assert trial.params == {"x": 0.25}
    assert _states(study) == ["RUNNING"], "no second trial, no orphan RUNNING trial"
    other, other_storage = _study(url, study_name)
    try:
        theirs = other.ask()
        assert theirs.number == 1, "another worker does not get the popped trial"
    finally:
        other_storage.engine.dispose()
    study.tell(trial, 0.1)
    assert _states(study) == ["COMPLETE", "RUNNING"]


def test_a_trial_another_worker_popped_meanwhile_is_still_theirs(url, study_name, monkeypatch):
    study, storage = _study(url, study_name)
    _waiting_copy(study)
    other, other_storage = _study(url, study_name)
    popped: list[int] = []
    lost = LostAck(monkeypatch, storage.engine).arm(
        STATE_CHANGE, applied=False, meanwhile=lambda: popped.append(other.ask().number)
    )
    try:
        mine = study.ask()
    finally:
        other_storage.engine.dispose()
    assert lost.fired == 1
    assert popped == [0]
    assert mine.number == 1, "this worker's attempt did not land: it gets a new trial"
    assert _states(study) == ["RUNNING", "RUNNING"]


def test_tell_after_a_lost_ack_completes_the_trial_once(url, study_name, monkeypatch):
    study, storage = _study(url, study_name)
    trial = study.ask({"x": X})
    lost = LostAck(monkeypatch, storage.engine).arm(STATE_CHANGE)
    study.tell(trial, 0.75)  # raises nothing
    assert lost.fired == 1
    (stored,) = study.trials
    assert stored.state == TrialState.COMPLETE
    assert stored.value == 0.75


def test_tell_of_a_trial_finished_elsewhere_is_still_refused(url, study_name, monkeypatch):
    study, storage = _study(url, study_name)
    trial = study.ask()
    _, other_storage = _study(url, study_name)
    lost = LostAck(monkeypatch, storage.engine).arm(
        STATE_CHANGE,
        applied=False,
        meanwhile=lambda: other_storage.set_trial_state_values(trial._trial_id, TrialState.FAIL),
    )
    try:
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
            storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [1.0])
    finally:
        other_storage.engine.dispose()
    assert lost.fired == 1
    assert _states(study) == ["FAIL"]


def test_stale_trial_failed_after_a_lost_ack_is_retried_once(url, study_name, monkeypatch):
    study, storage = _study(url, study_name, heartbeat_interval=1, grace_period=1, max_retry=2)
    trial = study.ask({"x": X})
    storage.record_heartbeat(trial._trial_id)
    time.sleep(2.5)  # the heartbeat goes stale (database clock)
    lost = LostAck(monkeypatch, storage.engine).arm(STATE_CHANGE)
    fail_stale_trials(study)
    assert lost.fired == 1
    assert _states(study) == ["FAIL", "WAITING"], "failed once and queued once"


class Outage:
    """Every call of ``storage.<method>`` fails as a lost connection while ``down``; the
    first ``through`` calls reach the database first (and may be hit by a LostAck)."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, storage: ResilientRDBStorage, method: str, through: int
    ):
        self.down, self.calls = True, 0
        real = getattr(storage, method)

        def call(*args, **kwargs):
            self.calls += 1
            if self.calls <= through or not self.down:
                return real(*args, **kwargs)
            raise sqlalchemy.exc.OperationalError(
                "SELECT", None, ConnectionError("could not connect to server"), connection_invalidated=True
            )

        monkeypatch.setattr(storage, method, call)


def _stale_trial(url: str, study_name: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ADMET_STORAGE_RETRY_SECONDS", "1")  # the outage outlasts the window
    study, storage = _study(url, study_name, heartbeat_interval=1, grace_period=1, max_retry=2)
    trial = study.ask({"x": X})
    storage.record_heartbeat(trial._trial_id)
    time.sleep(2.5)  # the heartbeat goes stale (database clock)
    return study, storage


def test_stale_fail_cut_short_by_a_long_outage_is_retried_by_the_next_check(url, study_name, monkeypatch):
    study, storage = _stale_trial(url, study_name, monkeypatch)
    lost = LostAck(monkeypatch, storage.engine).arm(STATE_CHANGE)  # the FAIL lands, its answer is lost
    outage = Outage(monkeypatch, storage, "_set_state_once", through=1)  # ... and so do the repeats
    with pytest.raises(sqlalchemy.exc.OperationalError):
        fail_stale_trials(study)
    assert lost.fired == 1 and outage.calls > 1
    assert _states(study) == ["FAIL"], "failed, retry not queued yet"
    outage.down = False
    fail_stale_trials(study)  # the next check, as the worker makes once the database is back
    assert _states(study) == ["FAIL", "WAITING"], "the retry is queued by the next check"
    fail_stale_trials(study)
    assert _states(study) == ["FAIL", "WAITING"], "and only once"


def test_stale_fail_that_never_landed_spares_a_trial_whose_worker_is_back(url, study_name, monkeypatch):
    study, storage = _stale_trial(url, study_name, monkeypatch)
    trial_id = study.trials[0]._trial_id
    LostAck(monkeypatch, storage.engine).arm(STATE_CHANGE, applied=False)  # the FAIL is rolled back
    outage = Outage(monkeypatch, storage, "_set_state_once", through=1)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        fail_stale_trials(study)
    outage.down = False
    storage.record_heartbeat(trial_id)  # its worker got through first: the trial is live again
    fail_stale_trials(study)
    assert _states(study) == ["RUNNING"], "a live trial is not failed on the strength of a lost attempt"


@pytest.mark.slow
def test_staleness_is_judged_a_grace_period_after_the_database_is_back(url, study_name, monkeypatch):
    # a grace period (5 s) long enough that the checks right after the outage cannot run
    # past it on a loaded machine
    study, storage = _study(url, study_name, heartbeat_interval=1, grace_period=5, max_retry=2)
    trial = study.ask({"x": X})
    storage.record_heartbeat(trial._trial_id)
    time.sleep(6)  # silent for longer than the grace period, as every trial is after an outage
    # this worker's own call meets the outage (and gets through on its retry)
    lost = LostAck(monkeypatch, storage.engine).arm(r"study_user_attributes", applied=False)
    study.set_user_attr("note", 1)
    assert lost.fired == 1
    fail_stale_trials(study)
    assert _states(study) == ["RUNNING"], "its worker gets a grace period to beat again"
    time.sleep(5.5)  # it does not: its worker is gone
    fail_stale_trials(study)
    assert _states(study) == ["FAIL", "WAITING"]


@pytest.mark.slow
@pytest.mark.parametrize("copy_landed", [False, True])
def test_retry_callback_cut_short_by_a_long_outage_queues_one_copy(url, study_name, monkeypatch, copy_landed):
    study, storage = _stale_trial(url, study_name, monkeypatch)
    # the FAIL goes through; queueing the copy fails for longer than the retry window,
    # after its insert landed or before it
    lost = LostAck(monkeypatch, storage.engine).arm(INSERT_TRIAL, applied=copy_landed)
    outage = Outage(monkeypatch, storage, "_get_prepared_new_trial", through=1)
    with pytest.raises(optuna.exceptions.StorageInternalError):
        fail_stale_trials(study)
    assert lost.fired == 1 and outage.calls > 1
    outage.down = False
    assert _states(study) == (["FAIL", "WAITING"] if copy_landed else ["FAIL"])
    fail_stale_trials(study)
    assert _states(study) == ["FAIL", "WAITING"], "exactly one copy"
    assert study.trials[1].system_attrs["retry_history"] == [0]


def test_idempotent_writes_are_retried_and_written_once(url, study_name, monkeypatch):
    """Parameters, attributes, intermediate values and heartbeats are upserts, or inserts
    whose duplicate Optuna ignores: a repeat after a lost ack writes the same row."""
    study, storage = _study(url, study_name)
    trial = study.ask()
    lost = LostAck(monkeypatch, storage.engine)
    writes = [
        (r"^INSERT INTO trial_params", lambda: trial.suggest_float("x", 0.0, 1.0)),
        (r"trial_user_attributes", lambda: trial.set_user_attr("k", "v")),
        (r"trial_system_attributes", lambda: storage.set_trial_system_attr(trial._trial_id, "s", 1)),
        (r"trial_intermediate_values", lambda: trial.report(0.5, step=1)),
        (r"trial_heartbeats", lambda: storage.record_heartbeat(trial._trial_id)),
        (r"study_user_attributes", lambda: study.set_user_attr("u", 2)),
    ]
    for pattern, write in writes:
        lost.arm(pattern)
        write()
        assert lost.fired, pattern
        lost.fired = 0
    stored = study.trials[0]
    assert set(stored.params) == {"x"}
    assert stored.user_attrs == {"k": "v"}
    assert stored.system_attrs["s"] == 1
    assert stored.intermediate_values == {1: 0.5}
    assert study.user_attrs == {"u": 2}


def test_unnamed_study_created_after_a_lost_ack_is_created_once(url, monkeypatch):
    storage = open_storage(url)
    before = {s.study_name for s in storage.get_all_studies()}
    lost = LostAck(monkeypatch, storage.engine).arm(r"^INSERT INTO studies ")
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE])
    assert lost.fired == 1
    new = [s for s in storage.get_all_studies() if s.study_name not in before]
    try:
        assert [s._study_id for s in new] == [study_id]
    finally:
        for s in new:
            storage.delete_study(s._study_id)


def test_only_writes_that_are_safe_to_repeat_are_retried_as_they_are():
    own = rdb_module._OWN_RETRIES
    idempotent = {
        "set_study_user_attr",
        "set_study_system_attr",
        "set_trial_param",
        "_set_trial_param",
        "set_trial_intermediate_value",
        "set_trial_user_attr",
        "set_trial_system_attr",
        "record_heartbeat",
        "upgrade",
    }
    writes = {
        n for n in rdb_module._RETRIED if not n.startswith(("get_", "_get_")) and n not in ("remove_session",)
    }
    assert writes == idempotent, "a new write of Optuna's: is it safe to repeat?"
    assert RDBStorage.create_new_trial is ResilientRDBStorage.create_new_trial
    assert own <= set(vars(ResilientRDBStorage))
