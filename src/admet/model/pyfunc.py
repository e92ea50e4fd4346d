"""A trained model or ensemble as an MLflow ``pyfunc`` model.

Why: a model folder written by :meth:`ChempropEnsemble.save` / :meth:`ChempropModel.save`
is only usable through ``admet``'s own loaders. Logged as a ``pyfunc`` model it can be
loaded with ``mlflow.pyfunc.load_model``, served with ``mlflow models serve`` or run with
``mlflow models predict``, and registered in the MLflow model registry.

What: :class:`AdmetPyfuncModel` carries the saved folder as its one artifact (the
``config.yaml`` with the data and featurizer settings, the members' weights with the
target scaler inside their state dicts) and loads it in ``load_context``. Its input is a
DataFrame with the config's SMILES column; its output is, per task ``T`` and in this
order, ``T_pred`` (mean), ``T_std`` (standard deviation), ``T_lo90`` and ``T_hi90`` (90%
interval), all float64, one row per input row in input order: the same names as the
model's ``predict`` and ``python -m admet.model predict`` (calibrated; the vocabulary and
why the mean is ``T_pred`` are in :func:`admet.model.calibration.prediction_columns`).

:func:`log_pyfunc` logs it into an existing MLflow run as MLflow 3's "models from code"
(the file :mod:`admet.model.pyfunc_code` that builds the model, not a pickled object),
with signature, input example, pinned requirements and the ``admet`` source as code, and
optionally registers it; :func:`try_log_pyfunc` is the best-effort variant training uses,
which only warns. Both live in :mod:`admet.model.pyfunc_logging` (which the model and
ensemble modules import; this serving side loads folders through the ensemble module, so
it sits above both) and are re-exported here.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from admet.errors import DataError
from admet.model.pyfunc_logging import (
    ARTIFACT_KEY,
    EXAMPLE_SMILES,
    MODEL_CODE,
    OUTPUT_SUFFIXES,
    log_pyfunc,
    output_columns,
    pip_requirements,
    prediction_frame,
    try_log_pyfunc,
)

if TYPE_CHECKING:
    from admet.model.ensemble import ChempropEnsemble
    from admet.model.model import ChempropModel

__all__ = [
    "ARTIFACT_KEY",
    "EXAMPLE_SMILES",
    "MODEL_CODE",
    "OUTPUT_SUFFIXES",
    "AdmetPyfuncModel",
    "load_saved_model",
    "log_pyfunc",
    "output_columns",
    "pip_requirements",
    "prediction_frame",
    "try_log_pyfunc",
]


def load_saved_model(directory: str | os.PathLike[str]) -> ChempropEnsemble | ChempropModel:
    """The ensemble or single model saved in ``directory`` (as ``python -m admet.model``
    loads it)."""
    from admet.model.ensemble import load_saved

    return load_saved(directory)


class AdmetPyfuncModel(PythonModel):
    """MLflow ``pyfunc`` wrapper of a saved :class:`ChempropEnsemble` or
    :class:`ChempropModel` folder (the artifact named :data:`ARTIFACT_KEY`)."""

    def __init__(self) -> None:
        self._model: Any = None

    def load_context(self, context: PythonModelContext) -> None:
        self._model = load_saved_model(context.artifacts[ARTIFACT_KEY])

    @property
    def smiles_col(self) -> str:
        return self._loaded().config.data.smiles_col

    def _loaded(self) -> Any:
        if self._model is None:
            raise RuntimeError("the pyfunc model is not loaded (load_context was not called)")
        return self._model

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Per task mean, std and 90% interval for the SMILES column of ``model_input``.

        Raises:
            DataError: the SMILES column is missing, or a SMILES does not parse.
        """
        model = self._loaded()
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        col = self.smiles_col
        if col not in frame.columns:
            # (through MLflow, whose schema check drops columns the signature does not name,
            # the frame has none left to list)
            found = f"; its columns are {list(frame.columns)}" if len(frame.columns) else ""
            raise DataError(f"input has no SMILES column {col!r}{found}")
        # the auxiliary tasks of data.tier_use only when asked (params={"auxiliary_tasks": True})
        auxiliary = bool((params or {}).get("auxiliary_tasks", False))
        tasks = model.output_tasks if auxiliary else model.task_names
        smiles = [str(s) for s in frame[col]]
        preds = model.predict(smiles, table=frame.reset_index(drop=True), auxiliary_tasks=auxiliary)
        out = prediction_frame(preds, tasks)
        out.index = frame.index
        return out
