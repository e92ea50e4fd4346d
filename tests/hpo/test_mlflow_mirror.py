"""The study's MLflow mirror against real MLflow stores (no mocks of MLflow): a tracking
server that is down holds a worker up for seconds and leaves the trial to sync-mlflow, and
workers mirroring at the same moment end with one study run."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from admet.hpo.mlflow_mirror import MlflowMirror
from admet.tracking_server import HealthProbe, bounded_http_requests

BOUND_S = 10.0  # "a few seconds": MLflow's own retries took about 4 minutes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _study(tmp_path: Path, n: int = 2) -> optuna.Study:
    study = optuna.create_study(study_name="mirror", storage=f"sqlite:///{tmp_path / 'study.db'}")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=n)
    return study


class _Server:
    """A real ``mlflow server`` with a SQLite backend on a free local port."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = root / "mlflow-server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, wait_s: float = 240) -> None:
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
            "--serve-artifacts", "--artifacts-destination", str(self.root / "artifacts"),
        ]  # fmt: skip
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True
            )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"mlflow server exited:\n{self.tail()}"
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        pytest.fail(f"mlflow server not up after {wait_s} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server and its uvicorn worker
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the port refuses connections before we go on
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.2)

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else "(no server log)"


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[_Server]:
    server = _Server(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _study_runs(uri: str, study_name: str = "mirror", view: str = "active") -> list:
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(f"optuna-{study_name}")
    if exp is None:
        return []
    return client.search_runs(
        [exp.experiment_id],
        f"tags.`optuna.study_name` = '{study_name}' and tags.`admet.kind` = 'study'",
        run_view_type=ViewType.ALL if view == "all" else ViewType.ACTIVE_ONLY,
    )


# -- the bounds, no server needed -----------------------------------------------------------


def test_bounded_requests_put_the_users_settings_back(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # stricter than ours: kept
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    inside: list[tuple[str | None, ...]] = []
    gate = threading.Barrier(3)

    def worker() -> None:
        with bounded_http_requests():
            gate.wait(10)  # all three blocks open at once
            keys = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")
            inside.append(tuple(os.environ.get(k) for k in keys))
            gate.wait(10)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert inside == [("0", "5")] * 3
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ
    with pytest.raises(RuntimeError), bounded_http_requests():
        raise RuntimeError("boom")
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ


def test_the_probe_fails_fast_on_a_closed_port_and_remembers_it(tmp_path):
    probe = HealthProbe(f"http://user:secret@127.0.0.1:{_free_port()}/prefix/")
    assert probe.url is not None and "secret" not in probe.url and probe.url.endswith("/prefix/health")
    t0 = time.monotonic()
    reason = probe.check()
    assert reason is not None and time.monotonic() - t0 < 3
    t0 = time.monotonic()
    assert probe.check() == reason and time.monotonic() - t0 < 0.01  # cached, not probed again
    assert HealthProbe(f"sqlite:///{tmp_path / 'm.db'}").check() is None  # no server, no probe
    assert HealthProbe(f"file://{tmp_path}").url is None


@pytest.mark.slow
def test_a_closed_port_costs_seconds_one_warning_and_sync_fills_the_gap(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ADMET_HOME", str(tmp_path))
    study = _study(tmp_path)
    mirror = MlflowMirror("mirror", tracking_uri=f"http://127.0.0.1:{_free_port()}")
    caplog.set_level(logging.WARNING, logger="admet")
    for trial in study.trials:
        t0 = time.monotonic()
        mirror(study, trial)  # the Optuna callback
        assert time.monotonic() - t0 < BOUND_S
    warnings = [r for r in caplog.records if "MLflow unavailable" in r.getMessage()]
    assert len(warnings) == 1 and "sync-mlflow" in warnings[0].getMessage()  # one per outage
    good = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert MlflowMirror("mirror", tracking_uri=good).sync(study)["mirrored"] == 2
    assert len(_study_runs(good)) == 1


# -- a real tracking server going down ------------------------------------------------------


@pytest.mark.slow
def test_a_server_stopped_mid_study_holds_the_worker_seconds_and_sync_fills_the_gap(
    mlflow_server, tmp_path, caplog
):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    retries_before = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    study = _study(tmp_path, n=3)
    first, second, third = study.trials
    mirror = MlflowMirror("mirror", tracking_uri=mlflow_server.uri)
    assert mirror.mirror_trial(study, first) is not None, mlflow_server.tail()
    client = MlflowClient(mlflow_server.uri)
    client.search_experiments()  # a client that has talked to the server
    mlflow_server.stop()
    caplog.set_level(logging.WARNING, logger="admet")
    try:
        for trial in (second, third):
            t0 = time.monotonic()
            mirror(study, trial)
            print(f"trial {trial.number} mirrored with the server down in {time.monotonic() - t0:.2f} s")
            assert time.monotonic() - t0 < BOUND_S
        assert len([r for r in caplog.records if "MLflow unavailable" in r.getMessage()]) == 1
        # a write that starts after the probe said "up" is bounded too
        t0 = time.monotonic()
        with pytest.raises(MlflowException), bounded_http_requests():
            client.search_experiments()
        print(f"a bounded request to the stopped server failed in {time.monotonic() - t0:.2f} s")
        assert time.monotonic() - t0 < BOUND_S
        assert os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES") == retries_before  # put back
        mlflow_server.start()  # the same port and database
        counts = MlflowMirror("mirror", tracking_uri=mlflow_server.uri).sync(study)
        assert counts["available"] == 1 and counts["mirrored"] == 3, mlflow_server.tail()
        runs = MlflowClient(mlflow_server.uri).search_runs(
            [client.get_experiment_by_name("optuna-mirror").experiment_id],
            "tags.`admet.mirrored` = 'complete'",
        )
        assert sorted(r.data.tags["optuna.trial_number"] for r in runs) == ["0", "1", "2"]
        assert len(_study_runs(mlflow_server.uri)) == 1
    except AssertionError:
        print(mlflow_server.tail())
        raise


# -- one study run ----------------------------------------------------------------------------


@pytest.mark.slow
def test_workers_finding_no_study_run_at_once_end_with_one(mlflow_server):
    n = 6
    gate = threading.Barrier(n)
    got: list[str | None] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            mirror = MlflowMirror("mirror", tracking_uri=mlflow_server.uri)
            mirror.tracker.experiment_id()  # created (or found) before the race
            gate.wait(60)
            got.append(mirror.parent_run())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and not any(t.is_alive() for t in threads), (errors, mlflow_server.tail())
    active = _study_runs(mlflow_server.uri)
    assert len(active) == 1, (len(active), mlflow_server.tail())
    assert got == [active[0].info.run_id] * n, (got, mlflow_server.tail())
    print(f"{len(_study_runs(mlflow_server.uri, view='all'))} study run(s) created, 1 kept")


@pytest.mark.slow
def test_duplicate_study_runs_merge_into_the_earliest_with_their_trial_runs(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("ADMET_HOME", str(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = _study(tmp_path)
    mirror = MlflowMirror("mirror", tracking_uri=uri, settle_s=0)
    exp = mirror.tracker.experiment_id()
    client = MlflowClient(uri)
    tags = {"optuna.study_name": "mirror", "admet.kind": "study"}
    later = client.create_run(exp, start_time=2_000, tags=tags).info.run_id  # old duplicates
    earliest = client.create_run(exp, start_time=1_000, tags=tags).info.run_id
    stray = client.create_run(
        exp, tags={"optuna.study_name": "mirror", "optuna.trial_number": "0", "mlflow.parentRunId": later}
    ).info.run_id
    assert mirror.parent_run() == earliest
    assert [r.info.run_id for r in _study_runs(uri)] == [earliest]
    assert client.get_run(later).info.lifecycle_stage == "deleted"
    assert client.get_run(stray).data.tags["mlflow.parentRunId"] == earliest
    # a trial run left under a deleted study run (its worker died before moving it) is
    # moved by the next mirror of that trial, e.g. sync-mlflow
    client.set_tag(stray, "mlflow.parentRunId", later)
    assert mirror.sync(study)["mirrored"] == 2
    assert client.get_run(stray).data.tags["mlflow.parentRunId"] == earliest
    runs = client.search_runs([exp], "tags.`optuna.study_name` = 'mirror'")
    trial_runs = [r for r in runs if "optuna.trial_number" in r.data.tags]
    assert {r.data.tags["mlflow.parentRunId"] for r in trial_runs} == {earliest}
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
