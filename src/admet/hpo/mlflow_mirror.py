"""Mirror an Optuna study to MLflow: one experiment and one parent run per study, one child
run per trial.

Optuna is the source of truth. :meth:`MlflowMirror.mirror_trial` is idempotent: it finds
the trial's run by its tags (``optuna.study_name``, ``optuna.trial_number``) and creates
or completes it, so the end-of-trial callback and ``sync-mlflow`` share one code path and
running the sync twice creates no duplicates. When MLflow is unreachable, a warning is
logged and the trial is still stored in the study; ``sync-mlflow`` fills the gap later.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from admet.config.phases import ALL_PHASES
from admet.redact import mask_url
from admet.tracking import RunTracker

__all__ = ["MlflowMirror"]

logger = logging.getLogger(__name__)

_STATUS = {
    TrialState.COMPLETE: "FINISHED",
    TrialState.PRUNED: "KILLED",
    TrialState.FAIL: "FAILED",
}


class MlflowMirror:
    """Create/complete MLflow runs for the trials of one study."""

    def __init__(self, study_name: str, tracking_uri: str | None = None, storage_label: str = "") -> None:
        self.study_name = study_name
        self.tracker = RunTracker(True, tracking_uri, f"optuna-{study_name}")
        self.storage_label = mask_url(storage_label)
        self._parent: str | None = None

    @property
    def available(self) -> bool:
        return self.tracker.enabled

    def _search(self, filter_string: str) -> list[Any]:
        exp = self.tracker.experiment_id()
        if exp is None:
            return []
        found = self.tracker._safe(
            "search runs", lambda: self.tracker.client.search_runs([exp], filter_string, max_results=1000)
        )
        return found or []

    def parent_run(self) -> str | None:
        if self._parent is None:
            runs = self._search(
                f"tags.`optuna.study_name` = '{self.study_name}' and tags.`admet.kind` = 'study'"
            )
            if runs:
                self._parent = runs[0].info.run_id
            else:
                self._parent = self.tracker.start_run(
                    self.study_name,
                    tags={
                        "optuna.study_name": self.study_name,
                        "admet.kind": "study",
                        "optuna.storage": self.storage_label,
                    },
                )
        return self._parent

    def mirror_trial(self, study: optuna.Study, trial: FrozenTrial) -> str | None:
        """Create or complete the run of a finished trial; returns its run id."""
        if not trial.state.is_finished():
            return None
        parent = self.parent_run()
        if parent is None:
            return None
        runs = self._search(
            f"tags.`optuna.study_name` = '{self.study_name}' and "
            f"tags.`optuna.trial_number` = '{trial.number}'"
        )
        tags0 = runs[0].data.tags if runs else {}
        if tags0.get("optuna.state") == trial.state.name and tags0.get("admet.mirrored") == "complete":
            return runs[0].info.run_id  # already mirrored
        run_id = (
            runs[0].info.run_id
            if runs
            else self.tracker.start_run(
                f"trial_{trial.number}",
                parent,
                {"optuna.study_name": self.study_name, "optuna.trial_number": str(trial.number)},
            )
        )
        if run_id is None:
            return None
        tags = {
            "optuna.state": trial.state.name,
            "admet.worker": str(trial.user_attrs.get("worker", "unknown")),
        }
        if "fail_reason" in trial.user_attrs:
            tags["admet.fail_reason"] = str(trial.user_attrs["fail_reason"])[:500]
        retried = trial.system_attrs.get("failed_trial")
        if retried is not None:
            tags["optuna.retry_of"] = str(retried)
        self.tracker.set_tags(run_id, tags)
        complete_before = tags0.get("admet.mirrored") == "complete"
        if not complete_before:
            self.tracker.log_params(run_id, {k: v for k, v in trial.params.items()})
            for step, value in sorted(trial.intermediate_values.items()):
                self.tracker.log_metrics(run_id, {"intermediate/val_mae_macro": value}, step=step)
            for row in trial.user_attrs.get("sampler_history") or []:
                stats = {f"sampler/{k}": v for k, v in row.items() if isinstance(v, (int, float))}
                stats.pop("sampler/epoch", None)
                if row.get("phase") in ALL_PHASES:
                    stats["sampler/phase"] = ALL_PHASES.index(row["phase"])
                self.tracker.log_metrics(run_id, stats, step=int(row.get("epoch", 0)))
        final: dict[str, float] = {}
        if trial.state == TrialState.PRUNED and trial.intermediate_values:
            # Optuna stores a pruned trial's last intermediate value (one member's fold MAE
            # at the pruning epoch) as its value: not an objective, so not logged as one.
            last = max(trial.intermediate_values)
            final["pruned/last_val_mae_macro"] = trial.intermediate_values[last]
            self.tracker.set_tags(run_id, {"optuna.pruned_at_step": str(last)})
        elif trial.state == TrialState.COMPLETE and trial.values is not None:
            names = study.metric_names or [f"objective_{i}" for i in range(len(trial.values))]
            final.update({f"objective/{n}": v for n, v in zip(names, trial.values, strict=False)})
        for task, metrics in (trial.user_attrs.get("cv_metrics") or {}).items():
            for key, value in metrics.items():
                if value is not None:
                    final[f"cv/{task}/{key}"] = value
        for key in ("wall_seconds", "epochs_trained"):
            if key in trial.user_attrs:
                final[key] = float(trial.user_attrs[key])
        self.tracker.log_metrics(run_id, final)
        config = trial.user_attrs.get("config")
        if config and not complete_before:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "config.yaml"
                path.write_text(yaml.safe_dump(config, sort_keys=False))
                self.tracker.log_artifact(run_id, path)
                attrs = Path(tmp) / "user_attrs.json"
                attrs.write_text(json.dumps(trial.user_attrs, indent=1, default=str))
                self.tracker.log_artifact(run_id, attrs)
        if not self.tracker.enabled:
            return None  # something failed on the way: a later sync completes this run
        self.tracker.set_tags(run_id, {"admet.mirrored": "complete"})
        self.tracker.end_run(run_id, _STATUS.get(trial.state, "FAILED"))
        return run_id

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna callback: mirror the trial that just finished (never raises). Tracking is
        re-armed first, so a server that was down for an earlier trial is tried again."""
        self.tracker.enabled = True
        self.mirror_trial(study, trial)

    def sync(self, study: optuna.Study) -> dict[str, int]:
        """Create or complete the runs of every finished trial; counts what was done."""
        done = skipped = 0
        for trial in study.get_trials(deepcopy=False):
            if not trial.state.is_finished():
                skipped += 1
                continue
            if self.mirror_trial(study, trial) is not None:
                done += 1
        return {"mirrored": done, "unfinished": skipped, "available": int(self.available)}
