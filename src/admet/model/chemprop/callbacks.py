"""Lightning callbacks that record what the sampler and the trainer did, epoch by epoch."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from admet.model.chemprop.joint_sampler import JointSampler

__all__ = ["EpochHistory", "SamplerStatsCallback"]


class SamplerStatsCallback(Callback):
    """Sets the sampler's epoch from the trainer's (so a resumed run draws the same order)
    and logs its weight statistics at the start of every training epoch as
    ``sampler/<stat>`` and ``sampler/task_share/<task>``; keeps them in ``rows``."""

    def __init__(self, sampler: JointSampler) -> None:
        self.sampler = sampler
        self.rows: list[dict[str, Any]] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.sampler.set_epoch(trainer.current_epoch)
        stats = self.sampler.get_weight_statistics()
        row: dict[str, Any] = {"epoch": trainer.current_epoch, "phase": stats["phase"]}
        for key in ("entropy", "normalized_entropy", "effective_samples", "min", "max"):
            row[key] = stats[key]
            pl_module.log(f"sampler/{key}", float(stats[key]), on_epoch=True, on_step=False)
        for task, share in stats["task_share"].items():
            row[f"task_share/{task}"] = share
            pl_module.log(f"sampler/task_share/{task}", share, on_epoch=True, on_step=False)
        for quality, share in stats.get("quality_share", {}).items():
            row[f"quality_share/{quality}"] = share
        self.rows.append(row)


class EpochHistory(Callback):
    """Every logged epoch-level scalar, per epoch (for user attributes, CSVs and tests)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        row = {"epoch": float(trainer.current_epoch)}
        for key, value in trainer.callback_metrics.items():
            v = float(value)
            row[key] = v if math.isfinite(v) else math.nan
        self.rows.append(row)
