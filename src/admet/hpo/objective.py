"""The HPO objective: trial -> run config -> Chemprop ensemble -> cross-validated score.

One :class:`Objective` lives per worker process; it loads (and featurises) the training
data once, so trials and ensemble members reuse the graphs. Every trial builds its run
config from the sampled parameters, trains the ensemble with the model code, reports the
first member's per-epoch ``val/mae_macro`` so the pruner can stop poor trials early, and
returns the objective value(s). Per-task CV metrics, sampler statistics, the curriculum
phase history, wall time and the resolved config are stored as user attributes.

Finished members are saved under a directory keyed by a hash of the resolved config, so
the retry of a trial killed mid-way (same parameters) reloads them instead of training
them again. The HPO reads only the training table, never a test split.
"""

from __future__ import annotations

import copy
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import optuna
import torch
from lightning.pytorch.callbacks import Callback
from sqlalchemy.exc import SQLAlchemyError

from admet.config import EnsembleConfig, config_hash, config_to_dict, load_config
from admet.data import MultitaskDataset, default_cache, load_training_data
from admet.errors import ConfigError, TrainingDivergedError, disk_full
from admet.hpo.artifacts import upload_trial_artifacts
from admet.hpo.budget import claim
from admet.hpo.identity import worker_id
from admet.hpo.search_space import suggest_params
from admet.hpo.spec import StudySpec
from admet.hpo.storage import OUTAGE_ERRORS, is_outage, storage_of, trial_id_of, until_reachable
from admet.model import MONITOR, ChempropEnsemble, FitProgress
from admet.model.callbacks import epoch_metrics
from admet.paths import home
from admet.redact import mask_url

__all__ = ["Objective", "TrialPruningCallback", "config_hash", "worker_id"]

logger = logging.getLogger(__name__)


class TrialPruningCallback(Callback):
    """Report a member's per-epoch validation metric to the trial and prune when told to.

    Runs in ``on_validation_end``: the model logs ``val/mae_macro`` in its own
    ``on_validation_epoch_end``, which Lightning calls after the callbacks' hook of the
    same name, so reading it there would see the previous epoch's value."""

    def __init__(self, trial: optuna.Trial, monitor: str = MONITOR) -> None:
        self.trial = trial
        self.monitor = monitor
        self.epochs = 0

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.report(trainer.current_epoch, epoch_metrics(trainer))

    def report(self, epoch: int, scalars: dict[str, float]) -> None:
        """Report this epoch's monitored value; raise ``TrialPruned`` when the pruner says
        so (also called directly by stacked members, which have no trainer)."""
        value = scalars.get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        self.epochs = epoch + 1
        try:
            self.trial.report(float(value), step=epoch)
            prune = self.trial.should_prune()
        except (SQLAlchemyError, *OUTAGE_ERRORS) as exc:
            if not (isinstance(exc, SQLAlchemyError) or is_outage(exc)):
                raise
            # the database or the storage proxy is away for longer than the retry window:
            # training goes on, this epoch's value is not reported (the heartbeat keeps trying)
            logger.warning(
                "epoch %d of trial %d not reported (%s)", epoch, self.trial.number, type(exc).__name__
            )
            return
        if prune:
            raise optuna.TrialPruned(f"pruned at epoch {epoch}: {self.monitor}={float(value):.4f}")


class Objective:
    """Callable objective for ``study.optimize``; see the module docstring."""

    def __init__(
        self,
        spec: StudySpec,
        base: EnsembleConfig,
        data: MultitaskDataset | None = None,
        work_dir: Path | None = None,
        progress: bool = False,
        status: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = spec
        # where the trial's member and epoch status goes (admet.model.progress); None: nowhere
        self.status = status
        self.base = base
        self.data = data if data is not None else load_training_data(base)
        default_cache(base.data.featurization_cache_dir).graphs(self.data.smiles)  # once per worker
        self.work_dir = work_dir or home() / ".admet" / "hpo" / spec.name
        self.progress = progress
        self.worker = worker_id()
        # Summed over this worker's trials, for benchmarks: epochs, time inside member
        # training (Lightning fit), scoring the members on their folds, and inside the
        # ensemble call as a whole.
        self.epochs_trained = 0
        self.member_fit_seconds = 0.0
        self.evaluation_seconds = 0.0
        self.train_seconds = 0.0
        counts = np.isfinite(self.data.Y).sum(0)
        self.sparse_tasks = [base.data.target_cols[i] for i in np.argsort(counts)[:2]]
        self.current_trial: int | None = None

    def build_config(self, params: dict[str, Any]) -> EnsembleConfig:
        """The run config of a trial: the base config with the sampled values, built and
        validated once (:func:`~admet.config.load_config` names an unknown key)."""
        cfg = load_config(self.base, params)
        assert isinstance(cfg, EnsembleConfig)
        return cfg

    def __call__(self, trial: optuna.Trial) -> float | Sequence[float]:
        self.current_trial = trial.number  # which trial an interrupt leaves behind
        start = time.perf_counter()
        trial.set_user_attr("worker", self.worker)
        claim(trial, self.spec.n_trials)
        # an outage longer than the storage's retry window waits here instead of failing the
        # trial: suggesting again returns the values already stored
        params = until_reachable(lambda: suggest_params(trial, self.spec, self.base))
        if "joint_sampling.curriculum.phase_proportions" in params:
            trial.set_user_attr("phase_proportions", params["joint_sampling.curriculum.phase_proportions"])
        try:
            cfg = self.build_config(params)
        except ConfigError as exc:
            trial.set_user_attr("fail_reason", f"invalid sampled config: {exc}")
            raise
        # one dict of the config, for the members' cache key and the stored attribute
        tree = config_to_dict(cfg)
        ckpt = self.work_dir / "members" / config_hash(tree)
        stored = {**tree, "mlflow": dict(tree["mlflow"])}
        if stored["mlflow"].get("tracking_uri"):
            stored["mlflow"]["tracking_uri"] = mask_url(stored["mlflow"]["tracking_uri"])
        until_reachable(lambda: trial.set_user_attr("config", stored))  # an upsert: safe to repeat
        train_cfg = copy.deepcopy(cfg)
        train_cfg.mlflow.enabled = False  # the study's mirror tracks trials, not members
        pruning = TrialPruningCallback(trial)
        # Pruning reports intermediate values, which Optuna allows for single-objective
        # studies only; it needs the first member in this process (n_jobs == 1).
        # Stacked members (ensemble.batched) report the same value, member 0's epoch, from
        # the stacked loop; a prune there ends every member's training at once.
        batched = train_cfg.ensemble.batched
        prunable = self.spec.prunes and (batched or train_cfg.ensemble.n_jobs == 1)
        n_members = train_cfg.ensemble.n_members
        status = None
        if self.status is not None:
            status = FitProgress(
                self.status, f"trial {trial.number}", n_members, train_cfg.optimization.max_epochs, batched
            )

        def on_member_epoch(m: int, epoch: int, scalars: dict[str, float]) -> None:
            if prunable and m == 0:
                pruning.report(epoch, scalars)

        one_by_one = not batched and train_cfg.ensemble.n_jobs == 1
        train_start = time.perf_counter()
        try:
            ensemble = ChempropEnsemble(train_cfg).fit(
                self.data,
                member_callbacks=(lambda m: [pruning] if m == 0 else []) if one_by_one and prunable else None,
                on_member_epoch=on_member_epoch if batched else None,
                checkpoint_dir=ckpt,
                progress=status if status is not None else self.progress,
                calibrate=False,  # the objective scores folds; calibration is for refit models
            )
        except optuna.TrialPruned:
            _await_database(trial)
            self.epochs_trained += pruning.epochs
            self.train_seconds += time.perf_counter() - train_start
            trial.set_user_attr("wall_seconds", time.perf_counter() - start)
            trial.set_user_attr("epochs_trained", pruning.epochs)
            shutil.rmtree(ckpt, ignore_errors=True)  # final: a pruned trial is never retried
            raise
        except (TrainingDivergedError, MemoryError, torch.OutOfMemoryError) as exc:
            if isinstance(exc, torch.OutOfMemoryError):  # a RuntimeError, not a MemoryError
                reason = f"CUDA out of memory: {str(exc).splitlines()[0] if str(exc) else ''}"
            elif isinstance(exc, MemoryError):
                reason = f"out of memory: {exc}"
            else:
                reason = str(exc)
            trial.set_user_attr("fail_reason", reason[:500])
            shutil.rmtree(ckpt, ignore_errors=True)  # final: only killed (stale) trials are retried
            raise
        except KeyboardInterrupt:
            # the worker queues a retry; the finished members stay for it to reuse
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
            raise
        except OSError as exc:
            full = disk_full(exc)
            if full is None:
                raise
            trial.set_user_attr("fail_reason", str(full)[:500])
            shutil.rmtree(ckpt, ignore_errors=True)  # frees what this trial wrote; not retried
            raise full from exc
        self.train_seconds += time.perf_counter() - train_start
        trained = [m for i, m in enumerate(ensemble.members) if i not in ensemble.reused_members]
        epochs = sum(m.epochs_trained for m in trained)
        self.member_fit_seconds += sum(m.fit_seconds for m in trained)
        self.evaluation_seconds += ensemble.evaluation_seconds
        self.epochs_trained += epochs
        _await_database(trial)
        values = self._record(trial, ensemble, start, epochs)
        upload_trial_artifacts(trial, ensemble, self.data, stored)  # shown in optuna-dashboard
        shutil.rmtree(ckpt, ignore_errors=True)  # the trial is stored; members were only for retries
        return values[0] if len(values) == 1 else values

    def _record(self, trial: optuna.Trial, ens: ChempropEnsemble, start: float, epochs: int) -> list[float]:
        per_task: dict[str, dict[str, float]] = {}
        for task in [*ens.task_names, "macro"]:
            per_task[task] = {
                k: float(np.nanmean([mv[task][k] for mv in ens.member_val_metrics]))
                for k in ("mae", "rmse", "r2", "pearson_r", "spearman_rho")
            }
        sparse = float(np.mean([per_task[t]["mae"] for t in self.sparse_tasks]))
        trial.set_user_attr("cv_metrics", _finite(per_task))
        trial.set_user_attr("sparse_tasks", self.sparse_tasks)
        trial.set_user_attr("member_scores", [mv["macro"]["mae"] for mv in ens.member_val_metrics])
        trial.set_user_attr("reused_members", ens.reused_members)
        trial.set_user_attr("epochs_trained", epochs)
        history = ens.members[0].sampler_history
        trial.set_user_attr("sampler_stats", _finite(history[-1] if history else {}))
        # every epoch of the first member, mirrored to the trial's MLflow run step by step
        trial.set_user_attr("sampler_history", [_finite(row) for row in history])
        trial.set_user_attr(
            "curriculum_history", [[list(h) for h in m.curriculum_history] for m in ens.members]
        )
        trial.set_user_attr("wall_seconds", time.perf_counter() - start)
        objectives = {"cv_mae_macro": float(ens.cv_score), "sparse_tasks_mae": sparse}
        return [objectives[name] for name in self.spec.objectives]


def _await_database(trial: optuna.Trial) -> None:
    """Optuna's tell after the objective returns cannot survive a database that is away:
    wait for it first."""
    until_reachable(lambda: storage_of(trial.study).get_trial(trial_id_of(trial)))


def _finite(tree: Any) -> Any:
    """JSON-safe copy: NaN/inf become None (Optuna stores user attributes as JSON)."""
    if isinstance(tree, dict):
        return {k: _finite(v) for k, v in tree.items()}
    if isinstance(tree, float):
        return tree if math.isfinite(tree) else None
    if isinstance(tree, np.generic):
        return _finite(tree.item())
    return tree
