"""The learning-rate schedule, in one place for training, the stacked fit and the export.

What: :func:`noam_schedule` turns a run config's ``optimization`` section into a
:class:`NoamSchedule` (Chemprop's Noam-like schedule: linear warmup from ``init_lr`` to
``max_lr``, exponential decay to ``final_lr``), with the warmup clamped so at least one
cooldown epoch remains; the schedule gives the per-step LR scheduler (Lightning fit), the
per-step learning rate (the stacked fit's own loop) and the values the Chemprop export
writes (``--warmup-epochs``, ``--init-lr``, ...).

Why: the clamp and the step counts used to be written out in the model builder, the
Chemprop TOML writer, the MPNN's ``configure_optimizers`` and the stacked loop; one
definition keeps what we train and what Chemprop is told to train the same. The factor is
Chemprop's own ``build_NoamLike_LRSched`` lambda, so ``chemprop train`` runs this schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from chemprop.schedulers import build_NoamLike_LRSched
from torch.optim.lr_scheduler import LambdaLR

if TYPE_CHECKING:
    from admet.config.schema import OptimizationConfig

__all__ = ["NoamSchedule", "clamped_warmup", "noam_schedule"]


def clamped_warmup(warmup_epochs: int, max_epochs: int) -> int:
    """Warmup epochs that leave at least one cooldown epoch (Chemprop's schedule needs one):
    ``warmup_epochs`` capped at ``max_epochs - 1`` (and at least 0)."""
    return min(warmup_epochs, max(max_epochs - 1, 0))


@dataclass(frozen=True)
class NoamSchedule:
    """Chemprop's Noam-like schedule over ``max_epochs`` epochs, warmup already clamped."""

    warmup_epochs: int
    max_epochs: int
    init_lr: float
    max_lr: float
    final_lr: float

    def steps(self, steps_per_epoch: int) -> tuple[int, int]:
        """(warmup steps, cooldown steps) for ``steps_per_epoch`` optimiser steps per epoch."""
        return (
            self.warmup_epochs * steps_per_epoch,
            (self.max_epochs - self.warmup_epochs) * steps_per_epoch,
        )

    def scheduler(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> LambdaLR:
        """Chemprop's ``LambdaLR`` on ``optimizer``, stepped once per optimiser step."""
        warmup, cooldown = self.steps(steps_per_epoch)
        return build_NoamLike_LRSched(optimizer, warmup, cooldown, self.init_lr, self.max_lr, self.final_lr)

    def lr_at(self, steps_per_epoch: int) -> Callable[[int], float]:
        """The learning rate at each optimiser step (what :meth:`scheduler` sets), for a
        loop that steps its own optimiser (the stacked fit)."""
        dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=self.init_lr)
        factor = self.scheduler(dummy, steps_per_epoch).lr_lambdas[0]
        init_lr = self.init_lr
        return lambda step: init_lr * factor(step)


def noam_schedule(opt: OptimizationConfig) -> NoamSchedule:
    """The schedule a run config's ``optimization`` section asks for (warmup clamped)."""
    return NoamSchedule(
        warmup_epochs=clamped_warmup(opt.warmup_epochs, opt.max_epochs),
        max_epochs=opt.max_epochs,
        init_lr=opt.init_lr,
        max_lr=opt.max_lr,
        final_lr=opt.final_lr,
    )
