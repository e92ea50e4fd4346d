"""The quality curriculum's state: the current phase and the rule that advances it.

Training starts in ``warmup`` (mostly the best data), moves to ``expand`` and ``robust``
(more of the lower tiers) and ends in ``polish`` (back towards the best data). A phase
ends when the monitored validation metric has stopped improving for ``patience`` epochs.
:class:`CurriculumState` holds the phase and its proportions (resumable through
``state_dict``); :class:`admet.model.CurriculumCallback` drives it from Lightning's
validation metrics. Pure Python, like the rest of :mod:`admet.sampling`'s inputs.

Example:
    >>> state = CurriculumState(["high", "medium", "low"], patience=1)
    >>> state.phase, state.sampling_probs()["high"]
    ('warmup', 0.8)
    >>> state.update_from_val_top(0, 1.0), state.update_from_val_top(1, 1.2)
    (True, False)
    >>> state.maybe_advance_phase(1), state.phase
    (True, 'expand')
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from admet.config.phases import (
    ALL_PHASES,
    DEFAULT_PHASE_PROPORTIONS,
    CurriculumPhaseConfig,
    phases_for,
)

__all__ = [
    "ALL_PHASES",
    "DEFAULT_PHASE_PROPORTIONS",
    "CurriculumPhaseConfig",
    "CurriculumState",
    "phases_for",
]

logger = logging.getLogger(__name__)


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
