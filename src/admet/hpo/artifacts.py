"""Per-trial files in Optuna's artifact store, so optuna-dashboard shows them on the trial.

Every finished trial uploads its out-of-fold parity plot (all tasks in one PNG) and its
resolved run config with :func:`optuna.artifacts.upload_artifact`; ``python -m admet.hpo
dashboard`` serves the same store. The store is a folder
(:class:`optuna.artifacts.FileSystemArtifactStore`): ``ADMET_HPO_ARTIFACTS``, else
``optuna-artifacts/`` in the working directory (``ADMET_HOME``). Workers on several
machines share it like the study storage: a shared filesystem path. Uploading is best
effort: a failure is a warning and never fails the trial.

Example:
    >>> import os, tempfile
    >>> os.environ["ADMET_HPO_ARTIFACTS"] = tempfile.mkdtemp()
    >>> type(artifact_store()).__name__
    'FileSystemArtifactStore'
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from admet.data import MultitaskDataset
from admet.model import ChempropEnsemble
from admet.model.plots import parity_grid
from admet.paths import home

__all__ = ["ARTIFACTS_ENV", "artifact_dir", "artifact_store", "upload_trial_artifacts"]

logger = logging.getLogger(__name__)

ARTIFACTS_ENV = "ADMET_HPO_ARTIFACTS"


def artifact_dir() -> Path:
    """``ADMET_HPO_ARTIFACTS``, else ``<ADMET_HOME or cwd>/optuna-artifacts``."""
    return Path(os.environ.get(ARTIFACTS_ENV) or home() / "optuna-artifacts").expanduser().resolve()


def artifact_store() -> FileSystemArtifactStore:
    """The study's artifact store (the folder is created on first use)."""
    path = artifact_dir()
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))


def upload_trial_artifacts(
    trial: optuna.Trial,
    ensemble: ChempropEnsemble,
    data: MultitaskDataset,
    config: dict[str, Any],
    store: FileSystemArtifactStore | None = None,
) -> list[str]:
    """Upload ``parity.png`` (out-of-fold predictions against labels, every task) and
    ``config.yaml`` (the trial's resolved run config); returns the artifact ids."""
    ids: list[str] = []
    try:
        store = store or artifact_store()
        assert ensemble.oof_predictions is not None
        oof = ensemble.oof_predictions[ensemble.task_names].to_numpy()
        with tempfile.TemporaryDirectory(prefix="admet-trial-") as tmp:
            # the ensemble's own labels: data.tier_use may have dropped rows of ``data``
            labels = ensemble.oof_labels if ensemble.oof_labels is not None else data.Y
            parity = parity_grid(
                labels, oof, ensemble.task_names, Path(tmp) / "parity.png", f"trial {trial.number} CV "
            )
            cfg = Path(tmp) / "config.yaml"
            cfg.write_text(yaml.safe_dump(config, sort_keys=False))
            for path in (parity, cfg):
                ids.append(upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial))
    except Exception as exc:  # an artifact is a convenience; the trial's result stands
        logger.warning("trial %d: artifacts not uploaded (%s)", trial.number, exc)
    return ids
