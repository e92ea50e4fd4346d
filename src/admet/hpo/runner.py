"""Run one HPO worker against a shared study until the study-wide budget is spent.

The budget ``n_trials`` counts finished trials over all workers (:mod:`admet.hpo.budget`).
A worker that finds the budget taken only by RUNNING trials waits (heartbeat interval)
for them to finish or go stale: a stale trial is marked FAIL by Optuna's heartbeat
machinery, re-enqueued with the same parameters by ``RetryHeartbeatStaleTrialCallback``, and then
picked up by a waiting worker.

Each worker registers in the study and gets the next worker index, chosen atomically in
the database, never reused; its TPE sampler is seeded with ``seed + index``, so parallel
(and restarted) workers explore differently while a lone worker on a fresh study with a
fixed seed is reproducible.

Over 350 lines because one worker's loop (the shared budget, waiting for running trials,
Ctrl-C, races lost to other workers, database outages, failure streaks) is one piece of
state, read best in one place; a trial's own work is :mod:`admet.hpo.objective`'s.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState
from tqdm.auto import tqdm

from admet import interrupt
from admet.errors import (
    AdmetError,
    BudgetTakenError,
    ConfigError,
    DataError,
    DiskFullError,
    TrainingDivergedError,
)
from admet.hpo.budget import BUDGET_TAKEN, budget, next_step
from admet.hpo.db_connections import worker_connections
from admet.hpo.identity import worker_id
from admet.hpo.mlflow_mirror import MlflowMirror
from admet.hpo.spec import StudySpec
from admet.hpo.storage import (
    OPTIMIZE_LOGGER,
    OUTAGE_ERRORS,
    ResilientRDBStorage,
    backend_of,
    connection_lost,
    is_outage,
    open_storage,
    register_worker_best_effort,
    resolve_storage_url,
    storage_of,
    study_id_of,
    trial_id_of,
    until_reachable,
)
from admet.redact import mask_url

if TYPE_CHECKING:
    from admet.hpo.objective import Objective

__all__ = ["WorkerResult", "create_or_load_study", "failure_streak", "run_worker"]

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 5
# torch is imported only by an objective that trains: a worker with a custom objective
# (the scale benchmark's) runs without torch and Chemprop, hundreds of MB less per worker
_CATCH_WITHOUT_TORCH = (
    BudgetTakenError,
    TrainingDivergedError,
    DiskFullError,
    ConfigError,
    DataError,
    MemoryError,
)


def _catch() -> tuple[type[BaseException], ...]:
    """The errors a trial fails with while the study goes on: torch's out-of-memory error
    too once torch is loaded (nothing raises it before)."""
    torch = sys.modules.get("torch")
    return _CATCH_WITHOUT_TORCH + ((torch.OutOfMemoryError,) if torch is not None else ())


def __getattr__(name: str) -> object:
    if name == "CATCH":  # the full tuple, for callers that run optuna themselves
        import torch  # noqa: F401

        return _catch()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _LostRaceWithoutTraceback(logging.Filter):
    """Optuna logs every failed trial with its traceback. A trial that :func:`claim
    <admet.hpo.budget.claim>` refused lost a race for the budget between workers, which
    the one-line message says in full; its traceback would read as a crash in a worker's
    log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], BudgetTakenError):
            record.exc_info = None
            record.exc_text = None
        return True


def _quiet_lost_races() -> None:
    """Install :class:`_LostRaceWithoutTraceback` on the logger of Optuna's trial loop
    (once per process)."""
    optimize_logger = logging.getLogger(OPTIMIZE_LOGGER)
    if not any(isinstance(f, _LostRaceWithoutTraceback) for f in optimize_logger.filters):
        optimize_logger.addFilter(_LostRaceWithoutTraceback())


@dataclass
class WorkerResult:
    """What one worker did."""

    trials_run: int
    finished_in_study: int
    already_complete: bool
    worker_index: int


def create_or_load_study(
    spec: StudySpec,
    storage_url: str | None = None,
    worker_index: int = 0,
    with_heartbeat: bool = True,
    allow_space_change: bool = False,
    storage: optuna.storages.BaseStorage | None = None,
) -> optuna.Study:
    """The study on its storage, created on first use (``load_if_exists``); on ``storage``
    when given (an open one, whose connections are reused) instead of one opened here.

    Raises:
        ConfigError: the stored study has other directions, or was created with another
            search space (trials of two spaces would mix and TPE would model them as one),
            unless ``allow_space_change``.
    """
    storage = storage or open_storage(
        storage_url,
        heartbeat_interval=spec.heartbeat_interval if with_heartbeat else None,
        grace_period=spec.grace_period,
        max_retry=spec.max_retry,
        max_connections=worker_connections(),
    )
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        sampler=spec.make_sampler(worker_index),
        pruner=spec.make_pruner(),
        directions=spec.directions,
        load_if_exists=True,
    )
    wanted = [optuna.study.StudyDirection[d.upper()] for d in spec.directions]
    if list(study.directions) != wanted:
        raise ConfigError(
            f"study {spec.name!r} in the storage has directions "
            f"{[d.name.lower() for d in study.directions]} but the definition asks for "
            f"{spec.directions}; use a new study name for a different objective"
        )
    if study.metric_names is None:
        study.set_metric_names(list(spec.objectives))
    _check_search_space(study, spec, allow_space_change)
    return study


def _check_search_space(study: optuna.Study, spec: StudySpec, allow_change: bool) -> None:
    wanted = json.loads(json.dumps(spec.space_record()))
    stored = study.user_attrs.get("search_space")
    if stored == wanted:
        return
    if stored is not None and not allow_change:
        changed = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        key = changed[0]
        what = "is new" if key not in stored else "was removed" if key not in wanted else "changed"
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise ConfigError(
            f"study {spec.name!r} was created with another search space: parameter {key!r} {what}{more}; "
            f"start a new study (name={spec.name}_2) or pass --allow-space-change to mix them"
        )
    study.set_user_attr("search_space", wanted)


def _register_worker(study: optuna.Study) -> int:
    """This worker's index in the study, registered atomically by its storage (every
    study here is opened through :func:`open_storage`); through the gRPC storage proxy,
    best-effort with a warning."""
    storage = backend_of(storage_of(study))  # Optuna keeps it private, wrapped in its cache
    if not isinstance(storage, ResilientRDBStorage):  # the gRPC proxy: no lock to take
        return register_worker_best_effort(storage, study_id_of(study), worker_id())
    return storage.register_worker(study_id_of(study), worker_id())


def failure_streak(trials: list[optuna.trial.FrozenTrial], worker: str) -> list[optuna.trial.FrozenTrial]:
    """``worker``'s last ``MAX_CONSECUTIVE_FAILURES`` trials if all of them FAILed, else [].
    A trial refused because another worker took the budget is a lost race, not a failure,
    and does not count."""
    mine = [
        t
        for t in trials
        if t.user_attrs.get("worker") == worker and t.user_attrs.get("fail_reason") != BUDGET_TAKEN
    ]
    recent = mine[-MAX_CONSECUTIVE_FAILURES:]
    if len(recent) == MAX_CONSECUTIVE_FAILURES and all(t.state == TrialState.FAIL for t in recent):
        return recent
    return []


def _taken_over(study: optuna.Study, number: int | None, exc: BaseException) -> bool:
    """Whether ``exc`` is Optuna refusing to report or tell a trial that another worker
    has already marked FAIL (stale heartbeat)."""
    # Optuna's post-processing may replace the refusal by AssertionError("Should not
    # reach."): look through the chain of exceptions being handled
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 10:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    refused = any(
        isinstance(e, optuna.exceptions.UpdateFinishedTrialError) or str(e).startswith("Cannot tell a")
        for e in chain
    )
    if not refused or number is None:
        return False
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    return trial is not None and trial.state == TrialState.FAIL


def _after_interrupt(study: optuna.Study, number: int | None, max_retry: int) -> str:
    """Ctrl-C: the trial Optuna just marked FAIL is queued again with the same parameters
    (its finished members are reused), as a killed worker's trial would be; returns the
    line to print."""
    if number is None:
        return "no trial was running"
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    if trial is None or trial.state != TrialState.FAIL:
        return f"trial {number} was left {trial.state.name if trial else 'unknown'}"
    RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, trial)
    return f"trial {number} stopped; it will be retried by the next worker with the same parameters"


def _retry_after_outage(study: optuna.Study, number: int | None, max_retry: int) -> None:
    """This worker's trial that a storage outage interrupted: failed (Optuna's tell may
    have done it already, or the trial is still RUNNING) and queued again with its
    parameters, once, as a killed worker's trial would be. A trial that another worker
    failed as stale meanwhile was queued by that worker and is left alone."""
    if number is None:
        return
    trials = study.get_trials(deepcopy=False)
    trial = next((t for t in trials if t.number == number), None)
    if trial is None or trial.state not in (TrialState.RUNNING, TrialState.FAIL):
        return
    if any(t.system_attrs.get("failed_trial") == number for t in trials):
        return  # failed as stale by another worker meanwhile, which queued the retry
    if trial.state == TrialState.RUNNING:
        storage = storage_of(study)
        try:
            storage.set_trial_user_attr(trial_id_of(trial), "fail_reason", "study storage unreachable")
            storage.set_trial_state_values(trial_id_of(trial), TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # failed as stale by another worker, which queued the retry
        trial = storage.get_trial(trial_id_of(trial))
    logger.warning("trial %d was interrupted by a storage outage; queued for a retry", number)
    RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, trial)


def _log_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    value = "" if trial.values is None else " value=" + ", ".join(f"{v:.4f}" for v in trial.values)
    extra = f" reason={trial.user_attrs['fail_reason']}" if "fail_reason" in trial.user_attrs else ""
    logger.info(
        "trial %d %s%s%s (%.0f s)",
        trial.number,
        trial.state.name,
        value,
        extra,
        trial.user_attrs.get("wall_seconds", 0.0),
    )


def run_worker(
    spec: StudySpec,
    storage_url: str | None = None,
    mlflow_enabled: bool = True,
    mlflow_tracking_uri: str | None = None,
    worker_index: int | None = None,
    progress: bool = True,
    objective: Objective | None = None,
    allow_space_change: bool = False,
    timeout: float | None = None,
) -> WorkerResult:
    """Run trials until ``spec.n_trials`` trials of the study are finished.

    Any number of workers may run this at once, on one machine or many, against the same
    storage (``python -m admet.hpo run`` is one worker); a worker started after the budget
    is spent returns at once with ``already_complete``. With ``timeout`` (seconds), the
    worker starts no trial once that much time has passed since it started, as Optuna's
    ``optimize(timeout=...)`` does: the trial in progress finishes, so at least one runs.

    Example:
        A two-trial study of one-epoch, two-member ensembles on a small table, stored in
        SQLite (the real study reads the fang2023 table and runs for hours):

        >>> import tempfile, pandas as pd
        >>> from pathlib import Path
        >>> from admet.hpo import load_study_spec
        >>> smiles = ["CCO", "CCN", "CCC", "CCCl", "c1ccccc1", "c1ccccc1O", "c1ccncc1",
        ...           "CC(=O)O", "CCOC", "CCCC", "OCCO", "NCCN"]
        >>> folder = Path(tempfile.mkdtemp())
        >>> pd.DataFrame({"SMILES": smiles, "logS": [0.1 * i for i in range(12)],
        ...               "Quality": ["high", "medium"] * 6}).to_csv(folder / "t.csv", index=False)
        >>> spec = load_study_spec("joint_sampling", [
        ...     "n_trials=2", f"data.train_file={folder / 't.csv'}", "data.target_cols=[logS]",
        ...     "data.featurization_cache_dir=null", "data.split=random", "ensemble.split=random",
        ...     "ensemble.n_members=2", "optimization.max_epochs=1", "optimization.batch_size=4",
        ...     "model.depth=2", "model.message_hidden_dim=64", "model.hidden_dim=64"])
        >>> result = run_worker(spec, f"sqlite:///{folder / 'studies.db'}",
        ...                     mlflow_enabled=False, progress=False)
        >>> result.trials_run, result.finished_in_study
        (2, 2)
    """
    url = resolve_storage_url(storage_url)
    _quiet_lost_races()
    probe = create_or_load_study(spec, url, 0, allow_space_change=allow_space_change)
    if budget(probe)["FINISHED"] >= spec.n_trials:
        return WorkerResult(0, budget(probe)["FINISHED"], True, -1)
    index = _register_worker(probe) if worker_index is None else worker_index
    probe.set_user_attr("n_trials", spec.n_trials)  # the budget `status` reports
    # on the probe's storage: a second one would keep its own pool beside it for the worker's
    # life, twice the connections per direct worker that db_connections budgets for (and
    # closing the probe's instead hands its slots to waiting workers before this one is set)
    study = create_or_load_study(spec, url, index, storage=backend_of(storage_of(probe)))
    logger.info(
        "worker %s (index %d, sampler seed %d) on study %r at %s",
        worker_id(),
        index,
        spec.seed + index,
        spec.name,
        mask_url(url),
    )
    base = spec.base_run_config()
    if objective is None:
        from admet.hpo.objective import Objective  # torch, Lightning, Chemprop: only to train

        objective = Objective(spec, base, progress=False)
    callbacks: list = [_log_trial]
    if mlflow_enabled and base.mlflow.enabled:
        callbacks.append(MlflowMirror(spec.name, mlflow_tracking_uri or base.mlflow.tracking_uri, url))
    ran = 0
    bar = tqdm(
        total=spec.n_trials,
        desc=f"{spec.name} [worker {index}]",
        unit="trial",
        disable=not progress,
        initial=budget(study)["FINISHED"],
    )
    on_terminal = progress and sys.stderr.isatty()

    def show(text: str) -> None:
        """A trial's member/epoch status: on the bar on a terminal, else one log line."""
        if on_terminal:
            bar.set_postfix_str(text, refresh=True)
        else:
            logger.info(text)

    if getattr(objective, "status", "absent") is None:
        objective.status = show

    def ride_out_outage() -> None:
        """The database or the storage proxy went away during a trial for longer than the
        retry window: wait for it, then fail the trial and queue its retry."""
        until_reachable(lambda: budget(study))
        until_reachable(lambda: _retry_after_outage(study, objective.current_trial, spec.max_retry))

    started = time.monotonic()
    # Ctrl-C lands between database calls and is never lost (admet.interrupt)
    with interrupt.deliver_at_safe_points():
        while True:
            if timeout is not None and ran and time.monotonic() - started >= timeout:
                logger.info(
                    "worker %d: its timeout of %g s is spent; starting no more trials", index, timeout
                )
                break
            until_reachable(lambda: fail_stale_trials(study))
            counts = until_reachable(lambda: budget(study))
            bar.n = min(counts["FINISHED"], spec.n_trials)
            bar.refresh()
            step = next_step(counts, spec.n_trials)
            if step == "done":
                break
            if step == "wait":
                time.sleep(max(1, min(spec.heartbeat_interval, 10)))  # let running trials end
                continue
            objective.current_trial = None
            try:
                interrupt.check()
                study.optimize(
                    objective, n_trials=1, catch=_catch(), callbacks=callbacks, gc_after_trial=True
                )
                objective.current_trial = None
                interrupt.check()  # one pressed during the trial and swallowed (in a finalizer)
            except KeyboardInterrupt:
                interrupt.consume()
                bar.close()
                raise KeyboardInterrupt(
                    _after_interrupt(study, objective.current_trial, spec.max_retry)
                ) from None
            except OUTAGE_ERRORS as exc:
                if not is_outage(exc):
                    raise
                ride_out_outage()
                continue
            except (
                optuna.exceptions.UpdateFinishedTrialError,
                RuntimeError,
                ValueError,
                AssertionError,
            ) as exc:
                if connection_lost(exc):
                    # Optuna's tell of the failed trial was cut too, and its post-processing
                    # replaced the storage error by AssertionError("Should not reach.")
                    ride_out_outage()
                    continue
                if not _taken_over(study, objective.current_trial, exc):
                    raise
                # another worker failed this trial as stale while the database was away and
                # queued its retry: this worker drops the trial and carries on
                logger.warning(
                    "trial %s was taken over by another worker (its heartbeat was lost); carrying on",
                    objective.current_trial,
                )
                continue
            ran += 1
            streak = failure_streak(
                until_reachable(lambda: study.get_trials(deepcopy=False)), objective.worker
            )
            if streak:
                reason = streak[-1].user_attrs.get("fail_reason", "see the log")
                raise AdmetError(
                    f"{MAX_CONSECUTIVE_FAILURES} trials in a row failed on this worker (last: {reason}); "
                    "stopping instead of failing forever"
                )
    bar.close()
    return WorkerResult(ran, budget(study)["FINISHED"], False, index)
