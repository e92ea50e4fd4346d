"""DynamicCurriculumSampler: the quality curriculum only, as a JointSampler.

Each molecule is drawn with probability proportional to its curriculum weight, following
the current phase: exactly :class:`JointSampler` in ``multiplicative`` mode with
``task_alpha = 0`` (every labelled molecule has task weight 1). Without targets, every
molecule counts as labelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from admet.model.chemprop.curriculum import CurriculumState
from admet.model.chemprop.joint_sampler import JointSampler

__all__ = ["DynamicCurriculumSampler"]


class DynamicCurriculumSampler(JointSampler):
    """Curriculum-only sampler; see :class:`JointSampler` for the arguments."""

    def __init__(
        self,
        quality_labels: Sequence[str],
        curriculum_state: CurriculumState,
        num_samples: int | None = None,
        seed: int = 42,
        increment_seed_per_epoch: bool = True,
        log_weight_stats: bool = True,
        targets: Any = None,
        **kwargs: Any,
    ) -> None:
        if targets is None:
            targets = np.zeros((len(quality_labels), 1))
        super().__init__(
            targets,
            quality_labels=quality_labels,
            curriculum_state=curriculum_state,
            task_alpha=0.0,
            composition_mode="multiplicative",
            num_samples=num_samples,
            seed=seed,
            increment_seed_per_epoch=increment_seed_per_epoch,
            log_weight_stats=log_weight_stats,
            **kwargs,
        )
