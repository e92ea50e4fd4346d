"""A two-objective (Pareto) study runs end to end without pruning (issue 12, item 2), and
trials lost to a budget race do not count as a worker's failures (item 12)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import require
from optuna.trial import TrialState
from test_hpo_service import hpo, run_args

from admet.hpo.budget import BUDGET_TAKEN
from admet.hpo.runner import MAX_CONSECUTIVE_FAILURES, failure_streak
from admet.hpo.spec import load_study_spec

ROOT = Path(__file__).parents[2]


def _pareto_study_file(tmp_path: Path) -> Path:
    spec = yaml.safe_load((ROOT / "studies" / "joint_sampling.yaml").read_text())
    spec["objectives"] = ["cv_mae_macro", "sparse_tasks_mae"]
    spec["directions"] = ["minimize", "minimize"]
    spec["base_config"] = str(ROOT / spec["base_config"])
    path = tmp_path / "pareto.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_pareto_study_never_prunes(tmp_path):
    spec = load_study_spec(str(_pareto_study_file(tmp_path)))
    assert not spec.prunes and isinstance(spec.make_pruner(), optuna.pruners.NopPruner)
    assert load_study_spec("joint_sampling").prunes


@pytest.mark.slow
def test_pareto_study_runs_end_to_end(synthetic_csv, tmp_path):
    study_file = _pareto_study_file(tmp_path)
    args = run_args(synthetic_csv, None, "n_trials=2", "mlflow.enabled=false")
    args[args.index("joint_sampling")] = str(study_file)
    proc = hpo(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    storage = f"sqlite:///{tmp_path / 'admet-studies.db'}"
    study = optuna.load_study(study_name="joint_sampling", storage=storage)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2 and all(len(t.values) == 2 for t in complete)
    assert all(not t.intermediate_values for t in complete)  # nothing was reported
    best = hpo(tmp_path, "best", "--study", str(study_file))
    assert best.returncode == 0 and "values [" in best.stdout


def _trial(worker: str, state: TrialState, reason: str | None = None) -> optuna.trial.FrozenTrial:
    attrs = {"worker": worker, **({"fail_reason": reason} if reason else {})}
    return optuna.trial.create_trial(
        state=state, value=1.0 if state == TrialState.COMPLETE else None, user_attrs=attrs
    )


def test_budget_races_do_not_count_as_failures():
    n = MAX_CONSECUTIVE_FAILURES
    races = [_trial("w", TrialState.FAIL, BUDGET_TAKEN) for _ in range(n)]
    assert failure_streak([_trial("w", TrialState.COMPLETE), *races], "w") == []
    real = [_trial("w", TrialState.FAIL, "training diverged") for _ in range(n)]
    assert len(failure_streak([*real[:2], *races, *real[2:]], "w")) == n
    assert failure_streak(real, "other worker") == []
    assert failure_streak([*real[:-1], _trial("w", TrialState.COMPLETE)], "w") == []


@pytest.mark.slow
def test_pruned_trial_is_mirrored_without_an_objective_value(tmp_path):
    from mlflow import MlflowClient

    from admet.hpo.mlflow_mirror import MlflowMirror

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        if trial.number == 1:
            trial.report(0.1, step=0)  # better than any complete trial
            raise optuna.TrialPruned()
        return 1.0 + x

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mirror = MlflowMirror("mirror-test", tracking_uri=uri)
    study = optuna.create_study(study_name="mirror-test", storage=f"sqlite:///{tmp_path / 's.db'}")
    study.set_metric_names(["cv_mae_macro"])
    study.optimize(objective, n_trials=2, callbacks=[mirror])
    assert study.trials[1].state == TrialState.PRUNED and study.trials[1].value == 0.1  # Optuna's doing
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    by_trial = {r.data.tags.get("optuna.trial_number"): r for r in runs}
    assert "objective/cv_mae_macro" in by_trial["0"].data.metrics
    pruned = by_trial["1"]
    assert "objective/cv_mae_macro" not in pruned.data.metrics
    assert pruned.data.metrics["pruned/last_val_mae_macro"] == 0.1
    assert pruned.data.tags["optuna.state"] == "PRUNED" and pruned.data.tags["optuna.pruned_at_step"] == "0"
    best = client.search_runs(
        [by_trial["0"].info.experiment_id],
        "tags.`optuna.study_name` = 'mirror-test'",
        order_by=["metrics.`objective/cv_mae_macro` ASC"],
        max_results=1,
    )
    assert best[0].data.tags["optuna.trial_number"] == "0"  # a pruned run never sorts first


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            lambda: __import__("torch").OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
            "CUDA out of memory",
        ),
        (lambda: MemoryError("cannot allocate"), "out of memory: cannot allocate"),
    ],
    ids=["cuda-oom", "host-oom"],
)
def test_out_of_memory_fails_the_trial_with_a_reason_and_cleans_its_members(
    synthetic_csv, tmp_path, monkeypatch, error, reason
):
    from admet.hpo.objective import Objective
    from admet.hpo.runner import CATCH
    from admet.model import ensemble as ensemble_module

    spec = load_study_spec(
        "joint_sampling", [f"data.train_file={synthetic_csv}", "data.target_cols=[logP, TPSA, MW]"]
    )
    objective = Objective(spec, spec.base_run_config(), work_dir=tmp_path / "work")

    def fit(self, *args, checkpoint_dir=None, **kwargs):
        (checkpoint_dir / "member_0").mkdir(parents=True)  # a member finished before the OOM
        raise error()  # fault injection: this machine has no GPU to run out of

    monkeypatch.setattr(ensemble_module.ChempropEnsemble, "fit", fit)
    study = optuna.create_study()
    study.optimize(objective, n_trials=2, catch=CATCH)  # the study goes on after a failure
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]
    assert all(t.user_attrs["fail_reason"].startswith(reason) for t in study.trials)
    assert not any((tmp_path / "work" / "members").glob("*/member_0"))  # final: nothing to retry


@pytest.mark.slow
def test_running_trial_without_heartbeat_is_failed_and_retried(synthetic_csv, tmp_path):
    """A notebook's study.ask() (RUNNING, never a heartbeat) held the last budget slot and
    made every worker wait forever (issue 12, item 4)."""
    from admet.hpo.runner import create_or_load_study

    storage = f"sqlite:///{tmp_path / 'admet-studies.db'}"
    args = run_args(synthetic_csv, storage, "n_trials=1", "mlflow.enabled=false")
    spec = load_study_spec("joint_sampling", [a for a in args if "=" in a and not a.startswith("--")])
    orphan = create_or_load_study(spec, storage, with_heartbeat=False).ask()
    proc = hpo(tmp_path, *args, timeout=240)  # grace_period=6 in the tiny settings
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="joint_sampling", storage=storage)
    states = {t.number: t.state for t in study.trials}
    assert states[orphan.number] == TrialState.FAIL
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert sum(s == TrialState.RUNNING for s in states.values()) == 0


@pytest.mark.slow
def test_ctrl_c_stops_the_worker_once_and_queues_the_trial_again(synthetic_csv, tmp_path):
    """One Ctrl-C during a member's fit: one line, exit 130, the trial FAIL with a queued
    retry of the same parameters, nothing left RUNNING (issue 12, item 9)."""
    import signal

    from test_hpo_service import _tail, _wait_for, spawn

    storage = f"sqlite:///{tmp_path / 'admet-studies.db'}"
    # a trial far longer than the test's 2 s wait (a tiny trial trains 300 epochs in a few
    # seconds, and the first trial could end before the Ctrl-C): it must land inside a fit
    slow = ["n_trials=2", "mlflow.enabled=false", "optimization.max_epochs=5000"]
    slow.append("optimization.patience=5000")
    worker = spawn(tmp_path, *run_args(synthetic_csv, storage, *slow))

    def training() -> bool:
        try:
            trials = optuna.load_study(study_name="joint_sampling", storage=storage).trials
        except KeyError:
            return False
        return any(t.state == TrialState.RUNNING and "config" in t.user_attrs for t in trials)

    _wait_for(training, 240, "a trial in training", worker)
    time.sleep(2)  # inside a member's Lightning fit
    worker.send_signal(signal.SIGINT)
    try:
        worker.wait(timeout=120)
    except subprocess.TimeoutExpired:
        worker.kill()
        raise AssertionError(f"the worker did not stop on Ctrl-C:\n{_tail(worker)}") from None
    log = _tail(worker)
    assert worker.returncode == 130, log
    assert "interrupted: trial" in log and "retried" in log and "Traceback" not in log, log
    study = optuna.load_study(study_name="joint_sampling", storage=storage)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs["fail_reason"] == "interrupted (Ctrl-C)"
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING
    assert retry[0].params == failed[0].params
    assert not any(t.state == TrialState.RUNNING for t in study.trials)


def _register_concurrently(url: str, n: int, name: str = "reg") -> list[int]:
    """``n`` workers, each with its own connection pool, register at the same moment."""
    import threading

    from admet.hpo.runner import _register_worker
    from admet.hpo.storage import open_storage

    optuna.create_study(study_name=name, storage=open_storage(url), load_if_exists=True)
    studies = [optuna.load_study(study_name=name, storage=open_storage(url)) for _ in range(n)]
    barrier = threading.Barrier(n)
    indices: list[int] = []

    def register(study: optuna.Study) -> None:
        barrier.wait()
        indices.append(_register_worker(study))

    threads = [threading.Thread(target=register, args=(s,)) for s in studies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return indices


def test_concurrent_workers_get_distinct_indices_on_sqlite(tmp_path):
    """Eight workers starting together get eight indices (issue 12, item 7); a restarted
    worker with the same identity gets a new one, so it does not replay its seed."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert sorted(_register_concurrently(url, 8)) == list(range(8))
    assert _register_concurrently(url, 1) == [8]


@pytest.mark.postgres
def test_concurrent_workers_get_distinct_indices_on_postgres(postgres_url):
    import uuid

    from admet.hpo.storage import open_storage

    name = f"reg-{uuid.uuid4().hex[:8]}"
    try:
        assert sorted(_register_concurrently(postgres_url, 8, name)) == list(range(8))
    finally:
        optuna.delete_study(study_name=name, storage=open_storage(postgres_url))


def test_status_shows_a_running_trial_without_heartbeat(tmp_path):
    from admet.hpo.runner import create_or_load_study
    from admet.hpo.summary import status_text

    spec = load_study_spec("joint_sampling")
    study = create_or_load_study(spec, f"sqlite:///{tmp_path / 's.db'}", with_heartbeat=False)
    orphan = study.ask()
    text = status_text(study, 4)
    assert f"running: trial {orphan.number}" in text and "no heartbeat yet" in text


def test_a_trial_taken_over_is_recognised_through_optunas_exception_chain(tmp_path):
    """Optuna refuses to tell a trial another worker failed as stale, and its
    post-processing may raise AssertionError('Should not reach.') in place of the refusal:
    the worker must recognise both and carry on (issue 12, item 3)."""
    from admet.hpo.runner import _taken_over

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}")
    taken, live = study.ask(), study.ask()
    study.tell(taken, state=TrialState.FAIL)  # what another worker's stale check does
    try:
        try:
            raise ValueError("Cannot tell a FAIL trial.")
        except ValueError:
            raise AssertionError("Should not reach.")  # noqa: B904  (Optuna's own pattern)
    except AssertionError as exc:
        chained = exc
    assert _taken_over(study, taken.number, chained)
    assert _taken_over(study, taken.number, optuna.exceptions.UpdateFinishedTrialError("finished"))
    assert not _taken_over(study, live.number, chained)  # still RUNNING: a real bug, re-raised
    assert not _taken_over(study, taken.number, RuntimeError("something else"))
    assert not _taken_over(study, None, chained)


@pytest.mark.slow
def test_a_full_disk_fails_the_trial_with_its_path_and_the_study_goes_on(synthetic_csv, tmp_path):
    """A real full filesystem (a one-page tmpfs) under the trial's member checkpoints."""
    import shutil
    import subprocess as sp

    from admet.hpo.objective import Objective
    from admet.hpo.runner import CATCH

    members = tmp_path / "work" / "members"
    members.mkdir(parents=True)
    mounted = sp.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(members)], capture_output=True)

    require(mounted.returncode == 0, f"cannot mount a tmpfs here: {mounted.stderr!r}")
    try:
        spec = load_study_spec(
            "joint_sampling",
            [
                f"data.train_file={synthetic_csv}",
                "data.target_cols=[logP, TPSA, MW]",
                "optimization.max_epochs=1",
                "ensemble.n_members=2",
                "model.message_hidden_dim=16",
                "model.hidden_dim=16",
                "mlflow.enabled=false",
            ],
        )
        objective = Objective(spec, spec.base_run_config(), work_dir=tmp_path / "work")
        study = optuna.create_study()
        study.optimize(objective, n_trials=1, catch=CATCH)
        (full,) = study.trials
        assert full.state == TrialState.FAIL
        reason = full.user_attrs["fail_reason"]
        assert reason.startswith(f"disk full: {members}"), reason
        assert list(members.iterdir()) == []  # what the trial wrote is gone
    finally:
        # lazy: torch's failed writer may still hold its file until the exception is dropped
        sp.run(["umount", "--lazy", str(members)], check=True)
    shutil.rmtree(members)
    study.optimize(objective, n_trials=1, catch=CATCH)  # space again: the study goes on
    assert study.trials[-1].state == TrialState.COMPLETE
