"""The original project's samplers, kept as exact special cases of :class:`JointSampler`.

* :class:`TaskAwareSampler` (task oversampling only): pick task t with probability
  proportional to n_t^(-alpha), then a molecule labelled for t uniformly; exactly
  ``JointSampler`` in ``two_stage`` mode without a curriculum.
* :class:`DynamicCurriculumSampler` (quality curriculum only): each molecule is drawn with
  probability proportional to its curriculum weight in the current phase; exactly
  ``JointSampler`` in ``multiplicative`` mode with ``task_alpha = 0`` (every labelled
  molecule has task weight 1). Without targets, every molecule counts as labelled.

The rest of the compatibility with the original project (its config keys, its Ray Tune
files, ``migrate``) is in :mod:`admet.config.legacy`; these stay here because they are
samplers, and the config layer imports nothing from the sampling layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from admet.sampling.curriculum import CurriculumState
from admet.sampling.joint import JointSampler

__all__ = ["DynamicCurriculumSampler", "TaskAwareSampler"]


class TaskAwareSampler(JointSampler):
    """Task-oversampling sampler; see :class:`JointSampler` for the arguments."""

    def __init__(
        self,
        targets: Any,
        alpha: float = 0.5,
        num_samples: int | None = None,
        seed: int = 42,
        increment_seed_per_epoch: bool = True,
        log_weight_stats: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            targets,
            task_alpha=alpha,
            composition_mode="two_stage",
            num_samples=num_samples,
            seed=seed,
            increment_seed_per_epoch=increment_seed_per_epoch,
            log_weight_stats=log_weight_stats,
            **kwargs,
        )


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
