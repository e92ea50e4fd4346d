"""``status`` and ``best``: what a study has done and its best configuration."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from admet.config import load_config, save_config
from admet.errors import AdmetError
from admet.hpo.storage import backend_of, storage_of, study_id_of, trial_id_of

__all__ = ["best_trials", "export_best", "status_text", "trial_config"]


def _now() -> dt.datetime:
    return dt.datetime.now()


def status_text(study: optuna.Study, n_trials: int | None = None) -> str:
    """Counts by state, best value, running trials (worker, age, whether they ever wrote a
    heartbeat) and an ETA."""
    trials = study.get_trials(deepcopy=False)
    backend = backend_of(storage_of(study))  # Optuna's cache wraps it
    silent_ids = (
        set(backend._trials_without_heartbeat(study_id_of(study)))
        if hasattr(backend, "_trials_without_heartbeat")
        else set()
    )
    counts = {s.name: 0 for s in TrialState}
    for t in trials:
        counts[t.state.name] += 1
    finished = counts["COMPLETE"] + counts["PRUNED"]
    lines = [f"study {study.study_name!r}: {len(trials)} trial(s)"]
    lines.append("  " + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    if n_trials:
        lines.append(f"  budget: {finished}/{n_trials} finished (COMPLETE + PRUNED)")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        if len(study.directions) == 1:
            best = study.best_trial
            lines.append(f"  best value {best.value:.4f} (trial {best.number})")
        else:
            lines.append(f"  Pareto front: {len(study.best_trials)} trial(s)")
    running = [t for t in trials if t.state == TrialState.RUNNING]
    for t in running:
        age = (_now() - t.datetime_start).total_seconds() if t.datetime_start else math.nan
        note = (
            " (no heartbeat yet: failed and retried after the grace period)"
            if trial_id_of(t) in silent_ids
            else ""
        )
        lines.append(f"  running: trial {t.number} on {t.user_attrs.get('worker', '?')}, {age:.0f} s{note}")
    durations = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_complete and t.datetime_start
    ]
    if n_trials and durations and finished < n_trials:
        workers = max(len(running), 1)
        eta = (n_trials - finished) * (sum(durations) / len(durations)) / workers
        lines.append(f"  ETA: {eta / 60:.1f} min at {workers} worker(s)")
    elif n_trials and finished >= n_trials:
        lines.append("  complete")
    return "\n".join(lines)


def best_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        raise AdmetError(f"study {study.study_name!r} has no completed trial yet")
    return [study.best_trial] if len(study.directions) == 1 else list(study.best_trials)


def trial_config(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The full run config a trial trained (as stored in its user attributes); a tracking
    URI stored masked is dropped, so that MLFLOW_TRACKING_URI supplies it."""
    config: dict[str, Any] | None = trial.user_attrs.get("config")
    if not config:
        raise AdmetError(f"trial {trial.number} has no stored config")
    config = {**config, "mlflow": dict(config.get("mlflow", {}))}
    if "***" in str(config["mlflow"].get("tracking_uri") or ""):
        config["mlflow"]["tracking_uri"] = None
    return config


def export_best(trial: optuna.trial.FrozenTrial, path: str | Path) -> Path:
    """Write the trial's full run config, ready for ``python -m admet.model train``."""
    cfg = load_config(trial_config(trial))
    out = save_config(cfg, path)
    header = f"# best trial {trial.number} of the study; values {trial.values}\n# params:\n"
    header += "".join(f"#   {k}: {v}\n" for k, v in trial.params.items())
    out.write_text(header + out.read_text())
    return out
