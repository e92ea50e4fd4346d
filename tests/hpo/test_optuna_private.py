"""Each behaviour of Optuna's private API that ``admet.hpo.storage._optuna_private`` relies
on, pinned against the installed Optuna: an upgrade that renames, moves or changes one of
them fails here, not in a study. All on a SQLite file; no gRPC server is started."""

from __future__ import annotations

import inspect
import json
import logging
import time

import optuna
import pytest
import sqlalchemy
from optuna.storages import GrpcStorageProxy, RDBStorage, RetryFailedTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from admet.hpo.storage import _optuna_private as private


@pytest.fixture
def storage(tmp_path) -> RDBStorage:
    s = RDBStorage(f"sqlite:///{tmp_path / 'o.db'}", heartbeat_interval=1, grace_period=1)
    yield s
    s.engine.dispose()


def _study(storage: RDBStorage) -> optuna.Study:
    return optuna.create_study(storage=storage, study_name="s")


def test_optuna_is_the_version_the_adapter_was_checked_against():
    major, minor = (int(p) for p in optuna.__version__.split(".")[:2])
    assert (major, minor) == (5, 1), "re-check every pin in this file, then widen pyproject's bound"


def test_the_private_hooks_we_override_exist_with_their_signatures():
    params = {n: list(inspect.signature(getattr(RDBStorage, n)).parameters) for n in private.RDB_HOOKS}
    assert params == {
        "_create_new_trial": ["self", "study_id", "template_trial"],
        "_get_prepared_new_trial": ["self", "study_id", "template_trial", "session"],
        "_get_stale_trial_ids": ["self", "study_id"],
    }
    for name in private.GRPC_HOOKS:
        assert list(inspect.signature(getattr(GrpcStorageProxy, name)).parameters) == ["self"]
    # the methods the retry loop of _rdb leaves alone are still there
    assert callable(RDBStorage._build_frozen_trial_from_trial_model)
    assert "session" in inspect.signature(RDBStorage._set_trial_attr_without_commit).parameters


def test_default_study_names_start_with_the_prefix(storage):
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE])
    assert storage.get_study_name_from_id(study_id).startswith(private.DEFAULT_STUDY_NAME_PREFIX)


def test_trials_are_created_through_the_hooks_in_one_session(storage):
    """``create_new_trial`` (``ask``) goes through ``_create_new_trial``, which builds the row
    by ``_get_prepared_new_trial`` in a session whose row we can query by the schema."""
    calls: list[str] = []

    class Spy(RDBStorage):
        def _create_new_trial(self, study_id, template_trial=None):  # type: ignore[no-untyped-def]
            calls.append("create")
            return private.rdb_create_new_trial(self, study_id, template_trial)

        def _get_prepared_new_trial(self, study_id, template_trial, session):  # type: ignore[no-untyped-def]
            calls.append("prepare")
            row = private.rdb_prepared_new_trial(self, study_id, template_trial, session)
            assert isinstance(row, private.models.TrialModel) and row in session
            return row

    spy = Spy(storage.url)
    try:
        study = _study(spy)
        trial = study.ask()
        assert calls == ["create", "prepare"]
        template = FrozenTrial(
            number=-1,
            state=TrialState.WAITING,
            value=None,
            values=None,
            datetime_start=None,
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs={},
            system_attrs={"k": "v"},
            intermediate_values={},
            trial_id=-1,
        )
        created = spy._create_new_trial(private.study_id_of(study), template)
        assert calls[-2:] == ["create", "prepare"]
        assert created.state == TrialState.WAITING and created.system_attrs == {"k": "v"}
        assert private.trial_id_of(trial) == private.trial_id_of(study.trials[0])
    finally:
        spy.engine.dispose()


def test_a_scoped_session_writes_values_and_attrs_in_one_commit(storage):
    study = _study(storage)
    trial_id = private.trial_id_of(study.ask())
    with private.scoped_session(storage) as session:
        row = private.models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
        private.set_trial_value_without_commit(storage, session, row, 0, 1.5)
        private.set_trial_system_attr_without_commit(storage, session, trial_id, "admet:t", "tok")
        private.set_trial_system_attr_without_commit(storage, session, trial_id, "admet:t", "tok2")  # upsert
        row.state = TrialState.COMPLETE
    frozen = storage.get_trial(trial_id)
    assert frozen.values == [1.5] and frozen.state == TrialState.COMPLETE
    assert frozen.system_attrs["admet:t"] == "tok2"
    attr = private.models.TrialSystemAttributeModel
    with storage.engine.connect() as conn:
        (value,) = conn.execute(
            sqlalchemy.select(attr.value_json).where(attr.trial_id == trial_id, attr.key == "admet:t")
        ).one()
    assert value == json.dumps("tok2")  # our token lookups compare JSON text


def test_a_failed_scoped_session_is_rolled_back_as_a_storage_error(storage):
    study = _study(storage)
    trial_id = private.trial_id_of(study.ask())
    with pytest.raises(optuna.exceptions.StorageInternalError), private.scoped_session(storage) as session:
        private.set_trial_system_attr_without_commit(storage, session, trial_id, "k", "v")
        session.execute(sqlalchemy.text("select * from no_such_table"))
    assert "k" not in storage.get_trial(trial_id).system_attrs


def test_find_or_raise_by_id_raises_key_error_for_an_unknown_trial(storage):
    _study(storage)
    with pytest.raises(KeyError), private.scoped_session(storage) as session:
        private.models.TrialModel.find_or_raise_by_id(10**6, session, for_update=True)


def test_the_schema_has_the_tables_and_columns_we_query(storage):
    m = private.models
    assert {c.name for c in m.TrialModel.__table__.c} >= {"trial_id", "study_id", "number", "state"}
    assert {c.name for c in m.TrialSystemAttributeModel.__table__.c} >= {"trial_id", "key", "value_json"}
    assert {c.name for c in m.StudyUserAttributeModel.__table__.c} >= {"study_id", "key", "value_json"}
    assert {c.name for c in m.TrialHeartbeatModel.__table__.c} >= {"trial_id"}
    study = _study(storage)
    study.set_user_attr("worker:0", "w")
    table = m.StudyUserAttributeModel.__table__
    with storage.engine.connect() as conn:
        rows = conn.execute(sqlalchemy.select(table.c.key, table.c.value_json)).all()
    assert ("worker:0", json.dumps("w")) in [tuple(r) for r in rows]
    # the state column reads back as a TrialState (or its name, on some drivers)
    trial_id = private.trial_id_of(study.ask())
    with storage.engine.connect() as conn:
        (state,) = conn.execute(
            sqlalchemy.select(m.TrialModel.state).where(m.TrialModel.trial_id == trial_id)
        ).one()
    assert state in (TrialState.RUNNING, "RUNNING")


def test_optunas_stale_check_sees_only_trials_with_a_heartbeat_row(storage):
    study = _study(storage)
    silent = study.ask()  # no heartbeat row: Optuna never calls it stale
    beating = study.ask()
    storage.record_heartbeat(private.trial_id_of(beating))
    time.sleep(2.2)  # past the grace period of 1 s
    assert private.rdb_stale_trial_ids(storage, private.study_id_of(study)) == [private.trial_id_of(beating)]
    assert isinstance(storage, private.BaseHeartbeat)  # fail_stale_trials acts on such storages
    fail_stale_trials(study)
    assert storage.get_trial(private.trial_id_of(beating)).state == TrialState.FAIL
    assert storage.get_trial(private.trial_id_of(silent)).state == TrialState.RUNNING


def test_the_retry_callback_records_the_failed_trial_in_retry_history(storage):
    """_rdb's ``_retry_exists`` reads ``retry_history`` to not queue a retry twice."""
    study = _study(storage)
    failed = study.ask()
    study.tell(failed, state=TrialState.FAIL)
    RetryFailedTrialCallback(max_retry=2)(study, study.trials[0])
    retry = study.trials[1]
    assert retry.state == TrialState.WAITING
    assert retry.system_attrs["retry_history"][-1] == failed.number


def test_a_study_keeps_its_storage_behind_optunas_cache(storage):
    study = _study(storage)
    cached = private.storage_of(study)
    assert cached is not storage and private.backend_of(cached) is storage
    assert private.backend_of(storage) is storage
    assert private.study_id_of(study) == storage.get_study_id_from_name("s")


def test_the_optimize_loop_logs_through_the_named_logger(storage):
    assert private.OPTIMIZE_LOGGER in logging.Logger.manager.loggerDict
    study = _study(storage)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger(private.OPTIMIZE_LOGGER)
    handler = Keep(logging.WARNING)
    logger.addHandler(handler)
    try:
        study.optimize(lambda t: float("nan"), n_trials=1)  # a NaN value: Optuna warns
    finally:
        logger.removeHandler(handler)
    assert any(r.name == private.OPTIMIZE_LOGGER for r in records)


def test_the_grpc_client_is_built_by_setup_from_host_and_port():
    """``HeartbeatGrpcStorage._setup`` replaces the channel; Optuna's client must keep
    building channel, stub and cache there from ``_host``/``_port``."""
    seen: dict[str, object] = {}

    class Probe(GrpcStorageProxy):
        def _setup(self) -> None:
            seen.update(host=self._host, port=self._port)
            super()._setup()
            seen.update(channel=self._channel, stub=self._stub, cache=self._cache)

    probe = Probe(host="127.0.0.1", port=1)  # nothing listens; building needs no server
    try:
        assert seen["host"] == "127.0.0.1" and seen["port"] == 1
        stub, cache = private.grpc_stub_and_cache(seen["channel"])
        assert type(stub) is type(seen["stub"]) and type(cache) is type(seen["cache"])
    finally:
        probe.close()


def test_the_proxy_service_registers_on_a_grpc_server(storage):
    from concurrent.futures import ThreadPoolExecutor

    import grpc  # a dependency of admet (pyproject), never optional

    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    private.add_proxy_service(optuna.storages.get_storage(storage), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        client = GrpcStorageProxy(host="127.0.0.1", port=port)
        client.wait_server_ready(timeout=10)
        _study(storage)
        assert [s.study_name for s in client.get_all_studies()] == ["s"]
        client.close()
    finally:
        server.stop(grace=None)


def test_the_proxy_cache_takes_parameters_of_trials_another_process_created(storage):
    """A proxy restarted under running workers gets ``suggest_*`` for trials created through
    the one before. Optuna's own cache raises KeyError there (pinned: when it stops, the
    subclass can go); ours reads the trial in and writes the parameter."""
    from optuna.distributions import FloatDistribution
    from optuna.storages._cached_storage import _CachedStorage

    first = _CachedStorage(storage)  # the proxy before the restart
    study_id = first.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    trial_id = first.create_new_trial(study_id)
    dist = FloatDistribution(0, 1)
    with pytest.raises(KeyError):
        _CachedStorage(storage).set_trial_param(trial_id, "x", 0.5, dist)
    restarted = private.cached_storage(storage)
    restarted.set_trial_param(trial_id, "x", 0.25, dist)
    restarted.set_trial_param(trial_id, "y", 0.75, dist)  # now known: the cached path
    assert storage.get_trial(trial_id).params == {"x": 0.25, "y": 0.75}
    assert restarted.get_all_trials(study_id)[0].params == {"x": 0.25, "y": 0.75}
    # a trial that does not exist is still an error, not a silent write
    with pytest.raises(KeyError):
        restarted.set_trial_param(trial_id + 100, "x", 0.5, dist)
