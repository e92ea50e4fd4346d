"""The HPO service end to end, from the CLI, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import yaml
from optuna.trial import TrialState

from admet.config import load_config
from admet.hpo.budget import BUDGET_TAKEN

pytestmark = pytest.mark.slow

TINY = [
    "optimization.max_epochs=2",
    "ensemble.n_members=2",
    "ensemble.split=random",
    "model.depth=2",
    "model.message_hidden_dim=16",
    "model.hidden_dim=16",
    "model.num_layers=1",
    "data.target_cols=[logP, TPSA, MW]",
    "heartbeat_interval=2",
    "grace_period=6",
]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "ADMET_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1", **extra}
    env.pop("ADMET_HPO_STORAGE", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def hpo(home: Path, *args: str, timeout: int = 600, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "admet.hpo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(home, **env),
        cwd=home,
    )


def spawn(home: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """Start ``python -m admet.hpo ARGS`` in the background, its output going to a new file
    ``proc.log`` in ``home``: a pipe that nobody reads while the test waits could fill up
    and block the worker."""
    log = home / f"spawn-{len(list(home.glob('spawn-*.log')))}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "admet.hpo", *args],
            env=_env(home, **env),
            cwd=home,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    proc.log = log  # type: ignore[attr-defined]
    return proc


def _tail(proc: subprocess.Popen, chars: int = 4000) -> str:
    return proc.log.read_text()[-chars:]  # type: ignore[attr-defined]


def run_args(csv: Path, storage: str | None, *extra: str) -> list[str]:
    args = ["run", "--study", "joint_sampling", "--quiet", f"data.train_file={csv}", *TINY, *extra]
    return [*args, "--storage", storage] if storage else args


def _load(storage: str) -> optuna.Study:
    return optuna.load_study(study_name="joint_sampling", storage=storage)


def _states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


@pytest.fixture
def pg_storage(postgres_url: str):
    """A clean PostgreSQL database for one test (tables dropped afterwards)."""
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    yield postgres_url
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


def test_worker_timeout_lets_the_running_trial_finish_then_stops(synthetic_csv, tmp_path):
    args = run_args(synthetic_csv, None, "n_trials=3", "mlflow.enabled=false")
    proc = hpo(tmp_path, *args, "--timeout", "0", "--name", "short")
    assert proc.returncode == 0, proc.stderr
    assert "ran 1 trial(s)" in proc.stdout and "'short' has 1/3 finished" in proc.stdout
    study = optuna.load_study(study_name="short", storage=f"sqlite:///{tmp_path / 'admet-studies.db'}")
    assert [t.state for t in study.trials] in ([TrialState.COMPLETE], [TrialState.PRUNED])
    # the other commands find a study by the name it was run under
    assert "budget: 1/3 finished" in hpo(tmp_path, "status", "--name", "short").stdout
    missing = hpo(tmp_path, "status")
    assert missing.returncode != 0 and "no study 'joint_sampling'" in missing.stderr


def test_tiny_study_end_to_end_on_embedded_sqlite(synthetic_csv, tmp_path):
    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = hpo(tmp_path, *run_args(synthetic_csv, None, "n_trials=3", f"mlflow.tracking_uri={mlflow_uri}"))
    assert proc.returncode == 0, proc.stderr
    storage = f"sqlite:///{tmp_path / 'admet-studies.db'}"  # the embedded default
    study = _load(storage)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3
    done = next(t for t in study.trials if t.state == TrialState.COMPLETE)
    for attr in ("cv_metrics", "sampler_stats", "curriculum_history", "wall_seconds", "config", "worker"):
        assert attr in done.user_attrs, attr
    assert set(done.user_attrs["cv_metrics"]) == {"logP", "TPSA", "MW", "macro"}
    assert done.value == pytest.approx(done.user_attrs["cv_metrics"]["macro"]["mae"])
    assert len(done.intermediate_values) >= 1
    # the base config keeps the graphs on disk, so a later worker does not featurise again
    assert list((tmp_path / ".admet" / "featurization").glob("molgraphs-*.npz"))

    status = hpo(tmp_path, "status")
    assert status.returncode == 0 and "COMPLETE" in status.stdout and "best value" in status.stdout
    best = hpo(tmp_path, "best", "--export", str(tmp_path / "best.yaml"))
    assert best.returncode == 0, best.stderr
    cfg = load_config(tmp_path / "best.yaml")
    assert cfg.joint_sampling.task_oversampling.alpha == pytest.approx(
        study.best_trial.params["joint_sampling.task_oversampling.alpha"]
    )
    report = hpo(tmp_path, "report", "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    for name in ("history.html", "history.png", "parallel_coordinate.png", "summary.md"):
        assert (tmp_path / "report" / name).is_file(), name
    assert "Best trial" in (tmp_path / "report" / "summary.md").read_text()

    # the mirror ran at each trial end: one run per trial, and sync adds no duplicate
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("optuna-joint_sampling")

    def trial_runs():
        return [r for r in client.search_runs([exp.experiment_id]) if "optuna.trial_number" in r.data.tags]

    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in trial_runs()) == [0, 1, 2]
    # sampler statistics of every epoch (first member) reach the trial's run, one per epoch
    run = next(r for r in trial_runs() if r.data.tags["optuna.trial_number"] == str(done.number))
    epochs = [row["epoch"] for row in done.user_attrs["sampler_history"]]
    assert epochs == list(range(len(epochs))) and epochs
    for key in ("sampler/entropy", "sampler/effective_samples", "sampler/task_share/MW", "sampler/phase"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == epochs, key
    sync = hpo(tmp_path, "sync-mlflow", "--tracking-uri", mlflow_uri)
    assert sync.returncode == 0, sync.stderr
    assert len(trial_runs()) == 3

    again = hpo(tmp_path, *run_args(synthetic_csv, None, "n_trials=3"))
    assert again.returncode == 0 and "is complete" in again.stdout
    assert len(_load(storage).trials) == len(study.trials)


def test_tiny_study_on_postgres_and_budget_extension(synthetic_csv, tmp_path, pg_storage):
    proc = hpo(tmp_path, *run_args(synthetic_csv, pg_storage, "n_trials=2", "mlflow.enabled=false"))
    assert proc.returncode == 0, proc.stderr
    assert _states(_load(pg_storage)).get("COMPLETE", 0) + _states(_load(pg_storage)).get("PRUNED", 0) == 2
    status = hpo(tmp_path, "status", "--storage", pg_storage)
    assert status.returncode == 0 and "2/" in status.stdout
    best = hpo(tmp_path, "best", "--storage", pg_storage, "--export", str(tmp_path / "b.yaml"))
    assert best.returncode == 0 and (tmp_path / "b.yaml").is_file()
    report = hpo(tmp_path, "report", "--storage", pg_storage, "--out", str(tmp_path / "r"))
    assert report.returncode == 0, report.stderr
    # running again with a larger budget continues the same study
    more = hpo(tmp_path, *run_args(synthetic_csv, pg_storage, "n_trials=3", "mlflow.enabled=false"))
    assert more.returncode == 0, more.stderr
    counts = _states(_load(pg_storage))
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 3


def test_two_workers_share_the_budget_exactly(synthetic_csv, tmp_path, pg_storage):
    args = run_args(synthetic_csv, pg_storage, "n_trials=4", "mlflow.enabled=false")
    procs = [spawn(tmp_path, *args) for _ in range(2)]
    for p in procs:
        p.wait(timeout=600)
    assert all(p.returncode == 0 for p in procs), [_tail(p) for p in procs]
    study = _load(pg_storage)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 4
    # which worker ran how many depends on start-up order; each trial names a registered one
    registered = {study.user_attrs[k] for k in study.user_attrs if k.startswith("worker:")}
    assert {t.user_attrs["worker"] for t in finished} <= registered, (registered, finished)
    params = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(params)) == len(params)
    assert {k for k in study.user_attrs if k.startswith("worker:")} == {"worker:0", "worker:1"}


def _listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on TCP ``port``, read from the kernel's
    tables (``/proc/net/tcp`` and ``tcp6``), whatever this host's names resolve to."""
    out = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            addr, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(addr)
            if width == 8:
                out.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                out.add(socket.inet_ntop(socket.AF_INET6, words))
    return out


def _wait_for(predicate, timeout: float, what: str, worker: subprocess.Popen | None = None) -> None:
    """Poll ``predicate`` until it holds; fail at once if ``worker`` exits first, and on a
    timeout dump the worker's thread stacks (faulthandler) into the failure message."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except KeyError:  # the study does not exist yet
            pass
        if worker is not None and worker.poll() is not None:
            raise AssertionError(f"worker exited ({worker.returncode}) before {what}:\n{_tail(worker)}")
        time.sleep(0.1)
    if worker is None:
        raise AssertionError(f"timed out waiting for {what}")
    worker.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER=1: every thread's stack
    worker.wait(timeout=30)
    raise AssertionError(f"timed out waiting for {what}:\n{_tail(worker, 8000)}")


def test_killed_worker_trial_is_retried_with_same_params_reusing_members(synthetic_csv, tmp_path, pg_storage):
    # long enough that member 1 trains for seconds after member 0 is saved: with the packed
    # training path 8 epochs of the tiny table took less than one poll interval
    slow = [
        "optimization.max_epochs=80",
        "optimization.patience=200",
        "joint_sampling.curriculum.enabled=false",
        "mlflow.enabled=false",
        "n_trials=2",
        # members one by one, so that member 0 is saved while member 1 trains (stacked
        # members are saved as each stops: tests/model/test_stacked_fit.py)
        "ensemble.batched=false",
    ]
    args = run_args(synthetic_csv, pg_storage, *slow)
    worker = spawn(tmp_path, *args)
    members = tmp_path / ".admet" / "hpo" / "joint_sampling" / "members"
    try:
        _wait_for(
            lambda: any(members.glob("*/member_0/training.json")), 300, "a finished first member", worker
        )
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    killed = [t for t in _load(pg_storage).trials if t.state == TrialState.RUNNING]
    assert len(killed) == 1
    proc = hpo(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    study = _load(pg_storage)
    by_number = {t.number: t for t in study.trials}
    assert by_number[killed[0].number].state == TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed[0].number]
    assert len(retries) == 1
    retry = retries[0]
    # the median pruner waits for 4 complete trials, so in a 2-trial study the retry completes
    assert retry.state == TrialState.COMPLETE
    assert retry.params == killed[0].params
    assert 0 in retry.user_attrs["reused_members"]
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 2


def test_killed_worker_with_stacked_members_resumes_from_the_members_that_had_stopped(
    synthetic_csv, tmp_path, pg_storage
):
    """ensemble.batched: a stacked member is saved the moment it early-stops, so a worker
    killed while the others still train leaves those members behind and the retry of the
    trial reuses exactly them and trains only the rest."""
    stacked = [
        "ensemble.batched=true",
        "ensemble.n_members=3",
        # members stop at different epochs (tiny model, patience 3: about 10, 75 and 105
        # epochs on this table), leaving tens of seconds between the first save and the last
        "optimization.max_epochs=300",
        "optimization.patience=3",
        "joint_sampling.curriculum.enabled=false",
        "mlflow.enabled=false",
        "n_trials=1",
    ]
    args = run_args(synthetic_csv, pg_storage, *stacked)
    worker = spawn(tmp_path, *args)
    members = tmp_path / ".admet" / "hpo" / "joint_sampling" / "members"
    try:
        _wait_for(lambda: any(members.glob("*/member_*/training.json")), 300, "a stopped member", worker)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    saved = sorted(int(p.parent.name.split("_")[1]) for p in members.glob("*/member_*/training.json"))
    assert 1 <= len(saved) < 3, _tail(worker)  # killed between the first member's stop and the last's
    killed = [t for t in _load(pg_storage).trials if t.state == TrialState.RUNNING]
    assert len(killed) == 1
    proc = hpo(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    study = _load(pg_storage)
    assert {t.number: t for t in study.trials}[killed[0].number].state == TrialState.FAIL
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed[0].number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed[0].params
    assert sorted(retry.user_attrs["reused_members"]) == saved


def test_worker_survives_postgres_restart(synthetic_csv, tmp_path, pg_storage):
    args = run_args(
        synthetic_csv, pg_storage, "n_trials=3", "mlflow.enabled=false", "optimization.max_epochs=4"
    )
    worker = spawn(tmp_path, *args)
    _wait_for(lambda: len(_load(pg_storage).trials) >= 1, 120, "the first trial", worker)
    version = sorted(os.listdir("/etc/postgresql"))[0]
    restart = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert restart.returncode == 0, restart.stderr
    worker.wait(timeout=600)
    assert worker.returncode == 0, _tail(worker)
    counts = _states(_load(pg_storage))
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 3


def test_mlflow_down_then_sync_creates_each_run_once(synthetic_csv, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proc = hpo(
        tmp_path, *run_args(synthetic_csv, storage, "n_trials=2", "mlflow.tracking_uri=http://127.0.0.1:9")
    )
    assert proc.returncode == 0, proc.stderr
    assert "MLflow unavailable" in proc.stderr
    assert len([t for t in _load(storage).trials if t.state.is_finished()]) == 2
    good = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for _ in range(2):
        sync = hpo(tmp_path, "sync-mlflow", "--storage", storage, "--tracking-uri", good)
        assert sync.returncode == 0, sync.stderr
    from mlflow import MlflowClient

    client = MlflowClient(good)
    exp = client.get_experiment_by_name("optuna-joint_sampling")
    runs = client.search_runs([exp.experiment_id])
    trial_runs = [r for r in runs if "optuna.trial_number" in r.data.tags]
    assert sorted(r.data.tags["optuna.trial_number"] for r in trial_runs) == ["0", "1"]
    assert all(r.data.tags["optuna.state"] in ("COMPLETE", "PRUNED") for r in trial_runs)
    assert len([r for r in runs if r.data.tags.get("admet.kind") == "study"]) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_serves_the_study_on_loopback(tmp_path):
    storage = f"sqlite:///{tmp_path / 'dash.db'}"
    study = optuna.create_study(study_name="joint_sampling", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=3)
    port = _free_port()
    proc = spawn(tmp_path, "dashboard", "--storage", storage, "--port", str(port))
    try:

        def answers() -> bool:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2)
                return True
            except OSError:
                return False

        _wait_for(answers, 60, "optuna-dashboard", proc)
        studies = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies"))["study_summaries"]
        assert [s["study_name"] for s in studies] == ["joint_sampling"]
        detail = json.load(
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}?after=0")
        )
        assert len(detail["trials"]) == 3
        # bound to loopback only: every socket listening on the port is on 127.0.0.1
        assert _listening_addresses(port) == {"127.0.0.1"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--study", "nope"], "unknown study 'nope'; available: "),
        (["run", "model.widht=3"], "unknown config key 'model.widht'"),
        (["run", "--storage", "postgresql+psycopg2://postgres:s3cr3t-pw@127.0.0.1:1/db"], "127.0.0.1:1"),
        (
            ["status", "--storage", "postgresql+psycopg2://u:s3cr3t-pw@127.0.0.1:1/db"],
            "cannot use the study storage",
        ),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, synthetic_csv, args, message):
    proc = hpo(tmp_path, *args, "--quiet", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "s3cr3t-pw" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "admet-studies.db").exists()


def test_invalid_search_space_cli(tmp_path):
    bad = tmp_path / "bad.yaml"
    spec = yaml.safe_load((Path(__file__).parents[2] / "studies" / "joint_sampling.yaml").read_text())
    spec["search_space"]["model.dropout"] = {"type": "float", "low": 0.5, "high": 0.1}
    spec["base_config"] = str(Path(__file__).parents[2] / spec["base_config"])
    bad.write_text(yaml.safe_dump(spec))
    proc = hpo(tmp_path, "run", "--study", str(bad), timeout=120)
    assert proc.returncode == 2 and "search_space.model.dropout" in proc.stderr
    assert not (tmp_path / "admet-studies.db").exists()


def test_password_is_masked_everywhere():
    from admet.redact import mask_url

    url = "postgresql+psycopg2://admet:hunter2@db.example:5432/studies"
    assert mask_url(url) == "postgresql+psycopg2://admet:***@db.example:5432/studies"
    assert "hunter2" not in mask_url("http://user:hunter2@mlflow:5000")


@pytest.mark.postgres
def test_workers_survive_an_outage_longer_than_the_retry_window(synthetic_csv, tmp_path, pg_storage):
    """PostgreSQL stopped for longer than the storage retry window while two workers train:
    the heartbeat outlives it, a trial taken over as stale is dropped (not a crash) and
    retried once, and the study ends with its budget finished (issue 12, item 3)."""
    args = run_args(
        synthetic_csv,
        pg_storage,
        "n_trials=3",
        "mlflow.enabled=false",
        "optimization.max_epochs=12",
        "optimization.patience=20",
    )
    env = {"ADMET_STORAGE_RETRY_SECONDS": "4"}
    workers = [spawn(tmp_path, *args, **env) for _ in range(2)]
    version = sorted(os.listdir("/etc/postgresql"))[0]

    def pg(action: str) -> None:
        done = subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr

    try:
        _wait_for(
            lambda: sum(t.state == TrialState.RUNNING for t in _load(pg_storage).trials) >= 2,
            240,
            "two trials in training",
            workers[0],
        )
        pg("stop")
        time.sleep(12)  # > retry window (4 s) and > grace period (6 s)
    finally:
        pg("start")
    for w in workers:
        try:
            w.wait(timeout=600)
        except subprocess.TimeoutExpired:
            w.send_signal(signal.SIGABRT)
            w.wait(timeout=30)
    for w in workers:
        assert w.returncode == 0, _tail(w)
        assert "Traceback" not in _tail(w, 20000), _tail(w)
    study = _load(pg_storage)
    counts = _states(study)
    # the budget exactly (the claim refuses a fourth), nothing left running
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 3 and counts.get("RUNNING", 0) == 0
    for failed in (t for t in study.trials if t.state == TrialState.FAIL):
        retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == failed.number]
        if failed.user_attrs.get("fail_reason") == BUDGET_TAKEN:
            assert retries == [], failed.user_attrs  # a lost race is not work to redo
        else:  # taken over as stale: retried exactly once
            assert len(retries) == 1, (failed.number, failed.user_attrs)
