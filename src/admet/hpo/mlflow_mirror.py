"""Mirror an Optuna study to MLflow: one experiment and one parent run per study, one child
run per trial.

Optuna is the source of truth. :meth:`MlflowMirror.mirror_trial` is idempotent: it finds
the trial's run by its tags (``optuna.study_name``, ``optuna.trial_number``) and creates
or completes it, so the end-of-trial callback and ``sync-mlflow`` share one code path and
running the sync twice creates no duplicates. When MLflow is unreachable, a warning is
logged (once per outage) and the trial is still stored in the study; ``sync-mlflow`` fills
the gap later. The mirror's tracker is bounded (:class:`admet.tracking.RunTracker`): it
probes the server's ``/health`` before its writes and caps MLflow's request retries, so a
tracking server that is down holds a worker up for seconds, not MLflow's minutes of retries.

One study run for all workers: workers that find no study run at the same moment each
create one, so :meth:`MlflowMirror.parent_run` then looks again (after a short settle) and
the earliest study run (``start_time``, then ``run_id``) wins; every other active study run
of the study is deleted and its trial runs are moved under the winner (their
``mlflow.parentRunId`` tag). A worker whose parent was deleted after it created a trial run
under it moves that run itself (:meth:`MlflowMirror.mirror_trial` checks the parent after
writing), and ``sync-mlflow`` moves any trial run whose parent is not the winner.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
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


_PARENT_TAG = "mlflow.parentRunId"
_SYNC_HINT = "the study keeps its trials; `python -m admet.hpo sync-mlflow` mirrors them later"


def _earliest_first(run: Any) -> tuple[int, str]:
    return (run.info.start_time or 0, run.info.run_id)


class MlflowMirror:
    """Create/complete MLflow runs for the trials of one study.

    ``settle_s``: how long a worker that created a study run waits before looking for
    study runs other workers created at the same moment."""

    def __init__(
        self,
        study_name: str,
        tracking_uri: str | None = None,
        storage_label: str = "",
        settle_s: float = 1.0,
    ) -> None:
        self.study_name = study_name
        self.tracker = RunTracker(
            True, tracking_uri, f"optuna-{study_name}", bounded=True, down_hint=_SYNC_HINT
        )
        self.storage_label = mask_url(storage_label)
        self.settle_s = settle_s
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

    def _study_runs(self) -> list[Any]:
        runs = self._search(f"tags.`optuna.study_name` = '{self.study_name}' and tags.`admet.kind` = 'study'")
        return sorted(runs, key=_earliest_first)

    def parent_run(self) -> str | None:
        """The study's one active study run (created when there is none); None when MLflow
        is unavailable. Looked up on every call, so a worker follows a merge by another."""
        runs = self._study_runs()
        if not self.tracker.enabled:
            return None
        if not runs:
            mine = self.tracker.start_run(
                self.study_name,
                tags={
                    "optuna.study_name": self.study_name,
                    "admet.kind": "study",
                    "optuna.storage": self.storage_label,
                },
            )
            if mine is None:
                return None
            time.sleep(self.settle_s)  # let study runs other workers are creating now land
            runs = self._study_runs()
            if not runs:
                return None
        winner = runs[0].info.run_id
        for loser in runs[1:]:
            self._merge(loser.info.run_id, winner)
        if not self.tracker.enabled:
            return None
        self._parent = winner
        return winner

    def _merge(self, loser: str, winner: str) -> None:
        """Delete the duplicate study run ``loser``, then move its trial runs under
        ``winner``: deleting first means a trial run created under ``loser`` after the move
        is seen by its creator's check of its parent (:meth:`_follow_merge`)."""
        from mlflow.entities import LifecycleStage

        def delete() -> None:
            try:
                self.tracker.client.delete_run(loser)
            except Exception:
                # another worker deleted it a moment ago: fine; anything else is raised
                if self.tracker.client.get_run(loser).info.lifecycle_stage != LifecycleStage.DELETED:
                    raise

        self.tracker._safe("delete duplicate study run", delete)
        if not self.tracker.enabled:
            return  # not deleted: the next lookup (this worker's or another's) merges it
        for child in self._search(f"tags.`{_PARENT_TAG}` = '{loser}'"):
            self.tracker.set_tags(child.info.run_id, {_PARENT_TAG: winner})
        logger.info("merged duplicate MLflow study run %s into %s", loser, winner)

    def _follow_merge(self, run_id: str, parent: str) -> None:
        """``run_id`` was written under ``parent``: when another worker has deleted that
        study run meanwhile (it lost to an earlier one), move ``run_id`` to the winner."""
        from mlflow.entities import LifecycleStage

        run = self.tracker._safe("get study run", lambda: self.tracker.client.get_run(parent))
        if run is None or run.info.lifecycle_stage != LifecycleStage.DELETED:
            return
        winner = self.parent_run()
        if winner is not None and winner != parent:
            self.tracker.set_tags(run_id, {_PARENT_TAG: winner})

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
        if runs and tags0.get(_PARENT_TAG) != parent:  # made under a merged duplicate
            self.tracker.set_tags(runs[0].info.run_id, {_PARENT_TAG: parent})
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
        self._follow_merge(run_id, parent)
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
