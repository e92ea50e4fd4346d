"""HPO study service: Optuna studies of Chemprop ensembles, RDB-backed and mirrored to MLflow.

The parts, in the order data flows through them: :mod:`~admet.hpo.spec` (the study file),
:mod:`~admet.hpo.search_space` (one trial's parameters), :mod:`~admet.hpo.objective` (train
and score an ensemble), :mod:`~admet.hpo.budget` (the shared trial budget),
:mod:`~admet.hpo.storage` (RDB storage with heartbeat, retry of killed trials and of lost
connections), :mod:`~admet.hpo.runner` (one worker), :mod:`~admet.hpo.refit` (the best trial as a
full-budget model), :mod:`~admet.hpo.mlflow_mirror`,
:mod:`~admet.hpo.report`, :mod:`~admet.hpo.summary` and :mod:`~admet.hpo.dashboard`.
Names are imported lazily: the CLI parses its arguments without importing torch.
"""

from __future__ import annotations

from admet._lazy import lazy_exports

_EXPORTS = {
    "MlflowMirror": "admet.hpo.mlflow_mirror",
    "Objective": "admet.hpo.objective",
    "StudySpec": "admet.hpo.spec",
    "WorkerResult": "admet.hpo.runner",
    "available_studies": "admet.hpo.spec",
    "best_trials": "admet.hpo.summary",
    "budget": "admet.hpo.budget",
    "create_or_load_study": "admet.hpo.runner",
    "export_best": "admet.hpo.summary",
    "load_study_spec": "admet.hpo.spec",
    "open_storage": "admet.hpo.storage",
    "refit": "admet.hpo.refit",
    "resolve_storage_url": "admet.hpo.storage",
    "run_worker": "admet.hpo.runner",
    "serve_dashboard": "admet.hpo.dashboard",
    "status_text": "admet.hpo.summary",
    "suggest_params": "admet.hpo.search_space",
    "write_report": "admet.hpo.report",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
