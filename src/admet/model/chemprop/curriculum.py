"""The quality curriculum: phases that shift the share of high/medium/low quality data.

Training starts in ``warmup`` (mostly the best data), moves to ``expand`` and ``robust``
(more of the lower tiers) and ends in ``polish`` (back towards the best data). A phase
ends when the monitored validation metric has stopped improving for ``patience`` epochs.
:class:`CurriculumState` holds the phase and its proportions (resumable through
``state_dict``); :class:`CurriculumCallback` drives it from Lightning's validation metrics.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, EarlyStopping

__all__ = [
    "DEFAULT_PHASE_PROPORTIONS",
    "CurriculumCallback",
    "CurriculumPhaseConfig",
    "CurriculumState",
    "phases_for",
]

logger = logging.getLogger(__name__)

ALL_PHASES: tuple[str, ...] = ("warmup", "expand", "robust", "polish")
DEFAULT_PHASE_PROPORTIONS: dict[int, dict[str, list[float]]] = {
    1: {"warmup": [1.0], "polish": [1.0]},
    2: {"warmup": [0.85, 0.15], "expand": [0.65, 0.35], "polish": [0.75, 0.25]},
    3: {
        "warmup": [0.80, 0.15, 0.05],
        "expand": [0.60, 0.30, 0.10],
        "robust": [0.50, 0.35, 0.15],
        "polish": [0.70, 0.20, 0.10],
    },
}
SUM_TOLERANCE = 1e-6


def phases_for(n_qualities: int) -> tuple[str, ...]:
    """The phase sequence for a number of quality tiers (1: 2 phases, 2: 3, 3+: 4)."""
    if n_qualities < 1:
        raise ValueError("a curriculum needs at least one quality")
    if n_qualities == 1:
        return ("warmup", "polish")
    if n_qualities == 2:
        return ("warmup", "expand", "polish")
    return ALL_PHASES


@dataclass
class CurriculumPhaseConfig:
    """Target proportions per phase (one value per quality, best first) and the floor on
    the best quality.

    Attributes:
        phase_proportions: phase name -> proportions; None means the defaults for the
            number of qualities (defined for 1, 2 and 3 qualities).
        min_high_quality_proportion: every phase must give the top quality at least this.
    """

    phase_proportions: dict[str, list[float]] | None = None
    min_high_quality_proportion: float = 0.25

    def resolve(self, qualities: Sequence[str]) -> dict[str, list[float]]:
        """Validated proportions for every phase of ``qualities``.

        Raises:
            ValueError: a phase is missing or unknown, or its proportions have the wrong
                length, are negative, do not sum to 1 (within 1e-6), or give the top
                quality less than ``min_high_quality_proportion``.
        """
        n = len(qualities)
        phases = phases_for(n)
        given = self.phase_proportions
        if given is None:
            if n not in DEFAULT_PHASE_PROPORTIONS:
                raise ValueError(
                    f"no default phase proportions for {n} qualities; set phase_proportions "
                    f"for phases {list(phases)}"
                )
            given = DEFAULT_PHASE_PROPORTIONS[n]
        unknown = sorted(set(given) - set(phases))
        if unknown:
            raise ValueError(
                f"phase_proportions: unknown phase(s) {unknown} for {n} qualities; expected {list(phases)}"
            )
        missing = [p for p in phases if p not in given]
        if missing:
            raise ValueError(f"phase_proportions: missing phase(s) {missing}")
        floor = self.min_high_quality_proportion
        if not 0.0 <= floor <= 1.0:
            raise ValueError(f"min_high_quality_proportion must be in [0, 1], got {floor}")
        resolved = {}
        for phase in phases:
            props = [float(x) for x in given[phase]]
            where = f"phase_proportions.{phase}"
            if len(props) != n:
                raise ValueError(f"{where}: {len(props)} value(s) for {n} qualities {list(qualities)}")
            if any(not math.isfinite(x) or x < 0 for x in props):
                raise ValueError(f"{where}: proportions must be non-negative numbers, got {props}")
            total = sum(props)
            if abs(total - 1.0) > SUM_TOLERANCE:
                raise ValueError(f"{where}: proportions must sum to 1, got {props} (sum {total:.6g})")
            if props[0] < floor - SUM_TOLERANCE:
                raise ValueError(
                    f"{where}: top quality {qualities[0]!r} gets {props[0]:.6g}, below "
                    f"min_high_quality_proportion {floor}"
                )
            resolved[phase] = props
        return resolved


@dataclass
class CurriculumState:
    """The current curriculum phase and the rule that advances it.

    Args:
        qualities: quality labels, best first.
        patience: epochs without improvement before the next phase starts.
        min_delta: an improvement must exceed this to count.
        config: phase proportions and the top-quality floor.
        mode: ``"min"`` if a lower monitored value is better, else ``"max"``.
    """

    qualities: list[str]
    patience: int = 3
    min_delta: float = 0.0
    config: CurriculumPhaseConfig = field(default_factory=CurriculumPhaseConfig)
    mode: str = "min"
    phase_index: int = 0
    best: float | None = None
    epochs_without_improvement: int = 0
    history: list[tuple[int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.qualities = [str(q) for q in self.qualities]
        if len(set(self.qualities)) != len(self.qualities):
            raise ValueError(f"qualities must be distinct, got {self.qualities}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {self.mode!r}")
        self.phases = phases_for(len(self.qualities))
        self.proportions = self.config.resolve(self.qualities)
        if not self.history:
            self.history = [(0, self.phase)]

    @property
    def phase(self) -> str:
        return self.phases[self.phase_index]

    @property
    def is_last_phase(self) -> bool:
        return self.phase_index == len(self.phases) - 1

    def sampling_probs(self) -> dict[str, float]:
        """The current phase's target share per quality."""
        return dict(zip(self.qualities, self.proportions[self.phase], strict=True))

    def update_from_val_top(self, epoch: int, value: float) -> bool:
        """Record the monitored metric of ``epoch``; returns whether it improved."""
        value = float(value)
        if not math.isfinite(value):
            self.epochs_without_improvement += 1
            return False
        sign = 1.0 if self.mode == "min" else -1.0
        improved = self.best is None or sign * (self.best - value) > self.min_delta
        if improved:
            self.best = value
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        return improved

    def maybe_advance_phase(self, epoch: int) -> bool:
        """Start the next phase if the metric stalled for ``patience`` epochs."""
        if self.is_last_phase or self.epochs_without_improvement < self.patience:
            return False
        self.phase_index += 1
        self.epochs_without_improvement = 0
        self.history.append((int(epoch), self.phase))
        logger.info("curriculum: epoch %d -> phase %s %s", epoch, self.phase, self.sampling_probs())
        return True

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: phase, best value, stall counter, history."""
        return {
            "qualities": list(self.qualities),
            "phase_index": self.phase_index,
            "best": self.best,
            "epochs_without_improvement": self.epochs_without_improvement,
            "history": [list(h) for h in self.history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if list(state["qualities"]) != self.qualities:
            raise ValueError(
                f"curriculum state is for qualities {list(state['qualities'])}, not {self.qualities}"
            )
        self.phase_index = int(state["phase_index"])
        self.best = None if state["best"] is None else float(state["best"])
        self.epochs_without_improvement = int(state["epochs_without_improvement"])
        self.history = [(int(e), str(p)) for e, p in state["history"]]


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
