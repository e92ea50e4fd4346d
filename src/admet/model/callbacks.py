"""Lightning callbacks: the curriculum driver, and records of what the sampler and the
trainer did, epoch by epoch."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, EarlyStopping

from admet import interrupt
from admet.config.phases import ALL_PHASES
from admet.sampling import CurriculumState, JointSampler

__all__ = [
    "CurriculumCallback",
    "DeliverCtrlC",
    "EpochHistory",
    "SamplerStatsCallback",
    "curriculum_scalars",
    "epoch_metrics",
    "record",
    "sampler_statistics",
]

logger = logging.getLogger(__name__)


def record(pl_module: pl.LightningModule, values: dict[str, float]) -> None:
    """Epoch-level scalars from a callback: through ``MultitaskMPNN.record`` (straight to
    the loggers, once per epoch), or ``self.log`` for any other module."""
    if hasattr(pl_module, "record"):
        pl_module.record(values)
        return
    for key, value in values.items():
        pl_module.log(key, float(value), on_epoch=True, on_step=False)


def epoch_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """This epoch's scalars so far: what was logged with ``self.log`` (Lightning's
    ``callback_metrics``) and what was recorded with :func:`record`."""
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics.update(getattr(trainer.lightning_module, "epoch_scalars", None) or {})
    return metrics


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
        row, logged = sampler_statistics(self.sampler, trainer.current_epoch)
        record(pl_module, logged)
        self.rows.append(row)


def sampler_statistics(sampler: JointSampler, epoch: int) -> tuple[dict[str, Any], dict[str, float]]:
    """The sampler's weight statistics this epoch: the history row and the logged scalars."""
    stats = sampler.get_weight_statistics()
    row: dict[str, Any] = {"epoch": epoch, "phase": stats["phase"]}
    for key in ("entropy", "normalized_entropy", "effective_samples", "min", "max"):
        row[key] = stats[key]
    for task, share in stats["task_share"].items():
        row[f"task_share/{task}"] = share
    for quality, share in stats.get("quality_share", {}).items():
        row[f"quality_share/{quality}"] = share
    logged = {f"sampler/{k}": float(v) for k, v in row.items() if k not in ("epoch", "phase")}
    if stats["phase"] in ALL_PHASES:
        logged["sampler/phase"] = float(ALL_PHASES.index(stats["phase"]))
    return row, logged


def curriculum_scalars(state: CurriculumState) -> dict[str, float]:
    """The phase (index) and quality proportions an epoch trains with."""
    values = {"curriculum/phase": float(state.phase_index)}
    values.update({f"curriculum/p_{q}": float(p) for q, p in state.sampling_probs().items()})
    return values


class EpochHistory(Callback):
    """Every logged epoch-level scalar, per epoch (for user attributes, CSVs and tests)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        row = {"epoch": float(trainer.current_epoch)}
        for key, v in epoch_metrics(trainer).items():
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
        value = epoch_metrics(trainer).get(self.monitor)
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
        record(pl_module, curriculum_scalars(self.state))

    def state_dict(self) -> dict[str, Any]:
        return self.state.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.state.load_state_dict(state_dict)


class DeliverCtrlC(Callback):
    """Stops the fit after the next training batch for a Ctrl-C that :mod:`admet.interrupt`
    recorded but did not raise where it landed (inside a database call, such as an MLflow
    write, or swallowed by a finalizer); Lightning then shuts down as for any Ctrl-C."""

    def on_train_batch_end(self, *args: Any) -> None:
        interrupt.check()


class StepTimer(Callback):
    """Seconds spent in training epochs, validation excluded (``seconds``): the in-epoch
    time throughput figures divide by. On CUDA each boundary waits for queued kernels."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._since: float | None = None

    @staticmethod
    def _now(module: pl.LightningModule) -> float:
        if module.device.type == "cuda":
            import torch

            torch.cuda.synchronize(module.device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._since = self._now(pl_module)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._since is not None:  # Lightning validates inside the training epoch
            self.seconds += self._now(pl_module) - self._since
            self._since = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._since is not None:
            self.seconds += self._now(pl_module) - self._since
            self._since = None
