"""Model layer: multi-task Chemprop v2 models and ensembles trained on the joint sampler.

Names are imported lazily so that light users (the CLIs' argument parsing, the config
loader) do not pay for importing torch and Lightning.
"""

from __future__ import annotations

from admet._lazy import lazy_exports

_EXPORTS = {
    "BranchedFFN": "admet.model.heads",
    "ChempropEnsemble": "admet.model.ensemble",
    "ChempropModel": "admet.model.model",
    "CurriculumCallback": "admet.model.callbacks",
    "EpochHistory": "admet.model.callbacks",
    "MONITOR": "admet.model.mpnn",
    "MixtureOfExpertsFFN": "admet.model.heads",
    "MultitaskMPNN": "admet.model.mpnn",
    "SamplerStatsCallback": "admet.model.callbacks",
    "TrainingDivergedError": "admet.errors",
    "member_seed": "admet.model.ensemble",
    "regression_metrics": "admet.model.metrics",
    "task_metrics": "admet.model.metrics",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
