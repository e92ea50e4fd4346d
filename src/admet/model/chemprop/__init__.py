"""Chemprop v2 models with joint task/quality sampling.

Names are imported lazily so that light users (the config loader, the CLIs' argument
parsing) do not pay for importing torch and Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CurriculumCallback": "curriculum",
    "CurriculumPhaseConfig": "curriculum",
    "CurriculumState": "curriculum",
    "DynamicCurriculumSampler": "curriculum_sampler",
    "JointSampler": "joint_sampler",
    "TaskAwareSampler": "task_sampler",
    "ChempropModel": "model",
    "ChempropEnsemble": "ensemble",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
