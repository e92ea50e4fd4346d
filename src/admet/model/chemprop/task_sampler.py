"""TaskAwareSampler: task oversampling only (the original sampler), as a JointSampler.

Pick task t with probability proportional to n_t^(-alpha), then a molecule labelled for
t uniformly: exactly :class:`JointSampler` in ``two_stage`` mode without a curriculum.
"""

from __future__ import annotations

from typing import Any

from admet.model.chemprop.joint_sampler import JointSampler

__all__ = ["TaskAwareSampler"]


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
