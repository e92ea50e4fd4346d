"""Lightning callbacks: the curriculum driver, and records of what the sampler and the
trainer did, epoch by epoch."""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, EarlyStopping

from admet.config.phases import ALL_PHASES
from admet.sampling import CurriculumState, JointSampler

__all__ = ["CurriculumCallback", "EpochHistory", "SamplerStatsCallback"]

logger = logging.getLogger(__name__)


class SamplerStatsCallback(Callback):
    """Sets the sampler's epoch from the trainer's (so a resumed run draws the same order)
    and logs its weight statistics at the start of every training epoch as
    ``sampler/<stat>`` (min, max, entropy, normalized_entropy, effective_samples),
    ``sampler/task_share/<task>``, ``sampler/quality_share/<quality>`` and ``sampler/phase``
    (index in warmup, expand, robust, polish); keeps them in ``rows``. Every logger the
    trainer has (MLflow for tracked runs) receives one value per epoch."""

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
            pl_module.log(f"sampler/quality_share/{quality}", float(share), on_epoch=True, on_step=False)
        if stats["phase"] in ALL_PHASES:
            pl_module.log(
                "sampler/phase", float(ALL_PHASES.index(stats["phase"])), on_epoch=True, on_step=False
            )
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


class CurriculumCallback(Callback):
    """Advance a :class:`CurriculumState` from a validation metric at each epoch end.

    Logs ``curriculum/phase`` (index) and ``curriculum/p_<quality>`` every epoch. With
    ``reset_early_stopping``, a phase change restarts the patience of Lightning's
    ``EarlyStopping`` callbacks, since the data distribution just changed; place this
    callback before ``EarlyStopping`` so the reset precedes its check.
    """

    def __init__(
        self, state: CurriculumState, monitor: str = "val_loss", reset_early_stopping: bool = False
    ) -> None:
        self.state = state
        self.monitor = monitor
        self.reset_early_stopping = reset_early_stopping

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # on_validation_end, not on_validation_epoch_end: metrics the model logs in its own
        # epoch-end hook (val/mae_macro) are only current after all epoch-end hooks ran.
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            logger.warning("curriculum: metric %r not logged; phase unchanged", self.monitor)
            return
        epoch = trainer.current_epoch
        self.state.update_from_val_top(epoch, float(value))
        if self.state.maybe_advance_phase(epoch) and self.reset_early_stopping:
            for cb in trainer.callbacks:  # type: ignore[attr-defined]
                if isinstance(cb, EarlyStopping):
                    cb.wait_count = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log the phase (index) and proportions this epoch trains with."""
        pl_module.log("curriculum/phase", float(self.state.phase_index), on_epoch=True, on_step=False)
        for quality, share in self.state.sampling_probs().items():
            pl_module.log(f"curriculum/p_{quality}", share, on_epoch=True, on_step=False)

    def state_dict(self) -> dict[str, Any]:
        return self.state.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.state.load_state_dict(state_dict)
