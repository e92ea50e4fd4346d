"""Lightning's private API used by ``admet``: the progress callbacks a manual-optimisation
loop puts on the ``LightningOptimizer`` wrapper, and the trainer's logger connector.

Used by :mod:`admet.model.mpnn`. Pinned by ``tests/test_compat_lightning.py``. Imports
nothing from Lightning: these are attributes of objects Lightning hands us.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["after_optimizer_step", "before_optimizer_step", "has_step_callbacks", "log_metrics"]


def has_step_callbacks(optimizer: Any) -> bool:
    """Whether the ``LightningOptimizer`` ``optimizer`` has the ``_on_before_step`` and
    ``_on_after_step`` callables its ``step()`` calls around the optimiser's step."""
    return callable(getattr(optimizer, "_on_before_step", None)) and callable(
        getattr(optimizer, "_on_after_step", None)
    )


def before_optimizer_step(optimizer: Any) -> None:
    """What ``LightningOptimizer.step`` does before the step, minus its hooks: in manual
    optimisation, the loop's ``_on_before_step`` (marks an optimiser step ready and starts
    the profiler's ``optimizer_step`` scope)."""
    optimizer._on_before_step()


def after_optimizer_step(optimizer: Any) -> None:
    """What ``LightningOptimizer.step`` does after the step: the loop's ``_on_after_step``
    (counts the step completed, so ``trainer.global_step`` advances)."""
    optimizer._on_after_step()


def log_metrics(trainer: Any, metrics: Mapping[str, float]) -> None:
    """``trainer._logger_connector.log_metrics``: ``metrics`` sent to every logger of the
    trainer, with ``epoch`` added and at the step ``self.log``'s values get, without the
    result collection (nothing when the trainer has no logger)."""
    trainer._logger_connector.log_metrics(dict(metrics))
