"""Model layer: multi-task Chemprop v2 models and ensembles trained on the joint sampler.

Names are imported lazily so that light users (the CLIs' argument parsing, the config
loader) do not pay for importing torch and Lightning.
"""

from __future__ import annotations

from admet._lazy import lazy_exports

_EXPORTS = {
    "BranchedFFN": "admet.model.heads",
    "Calibration": "admet.model.calibration",
    "ChempropEnsemble": "admet.model.ensemble",
    "ChempropModel": "admet.model.model",
    "ConsoleStatus": "admet.model.progress",
    "CurriculumCallback": "admet.model.callbacks",
    "EpochHistory": "admet.model.callbacks",
    "FitProgress": "admet.model.progress",
    "MONITOR": "admet.model.mpnn",
    "MixtureOfExpertsFFN": "admet.model.heads",
    "MultitaskMPNN": "admet.model.mpnn",
    "NotExportableError": "admet.model.chemprop_export",
    "SamplerStatsCallback": "admet.model.callbacks",
    "TrainingDivergedError": "admet.errors",
    "add_uncertainty_metrics": "admet.model.calibration",
    "chemprop_train_config": "admet.model.chemprop_export",
    "head_substitution": "admet.model.chemprop_export",
    "load_saved": "admet.model.ensemble",
    "log_pyfunc": "admet.model.pyfunc_logging",
    "member_seed": "admet.model.ensemble",
    "prediction_columns": "admet.model.calibration",
    "regression_metrics": "admet.model.metrics",
    "save_chemprop": "admet.model.chemprop_export",
    "task_metrics": "admet.model.metrics",
    "to_chemprop": "admet.model.chemprop_export",
    "uncertainty_metrics": "admet.model.calibration",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
