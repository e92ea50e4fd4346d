"""Regression metrics per task with missing labels, and their macro average.

Every metric is computed per task over the molecules that have a label for it; the macro
average is the unweighted mean over tasks with at least two labels, so a sparse task
counts as much as a dense one (the point of multi-task ADMET evaluation).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from admet.data import MultitaskDataset
from admet.errors import DataError

__all__ = ["METRICS", "error_metrics", "labelled_arrays", "regression_metrics", "task_metrics"]

METRICS: tuple[str, ...] = ("mae", "rmse", "r2", "pearson_r", "spearman_rho", "n")


def task_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R^2, Pearson r, Spearman rho and label count of one task (NaN = unlabelled)."""
    mask = np.isfinite(y_true) & np.isfinite(y_pred)
    t, p = y_true[mask], y_pred[mask]
    n = int(mask.sum())
    if n == 0:
        return {
            "mae": np.nan,
            "rmse": np.nan,
            "r2": np.nan,
            "pearson_r": np.nan,
            "spearman_rho": np.nan,
            "n": 0,
        }
    err = p - t
    out = {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt(np.square(err).mean())), "n": n}
    ss_tot = float(np.square(t - t.mean()).sum())
    out["r2"] = 1.0 - float(np.square(err).sum()) / ss_tot if ss_tot > 0 else np.nan
    if n >= 2 and np.ptp(t) > 0 and np.ptp(p) > 0:
        out["pearson_r"] = float(stats.pearsonr(t, p)[0])
        out["spearman_rho"] = float(stats.spearmanr(t, p)[0])
    else:
        out["pearson_r"] = out["spearman_rho"] = np.nan
    return out


def regression_metrics(
    Y_true: np.ndarray, Y_pred: np.ndarray, task_names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}, "macro": {metric: mean over tasks}}``."""
    Y_true = np.asarray(Y_true, dtype=float)
    Y_pred = np.asarray(Y_pred, dtype=float)
    result = {name: task_metrics(Y_true[:, j], Y_pred[:, j]) for j, name in enumerate(task_names)}
    scored = [m for m in result.values() if m["n"] >= 2]
    macro: dict[str, float] = {}
    for key in METRICS:
        if key == "n":
            macro["n"] = int(sum(m["n"] for m in result.values()))
            continue
        values = [m[key] for m in scored if np.isfinite(m[key])]
        macro[key] = float(np.mean(values)) if values else np.nan
    result["macro"] = macro
    return result


def error_metrics(
    Y_true: np.ndarray, Y_pred: np.ndarray, task_names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """MAE, RMSE and label count per task and their macro average, as in
    :func:`regression_metrics` but vectorised over tasks and without the correlation
    metrics: cheap enough for every validation epoch."""
    Y_true = np.asarray(Y_true, dtype=float)
    Y_pred = np.asarray(Y_pred, dtype=float)
    mask = np.isfinite(Y_true) & np.isfinite(Y_pred)
    n = mask.sum(0)
    err = np.where(mask, Y_pred - Y_true, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mae = np.abs(err).sum(0) / n
        rmse = np.sqrt(np.square(err).sum(0) / n)
    result = {
        name: {"mae": float(mae[j]), "rmse": float(rmse[j]), "n": int(n[j])}
        for j, name in enumerate(task_names)
    }
    scored = n >= 2
    result["macro"] = {
        "mae": float(mae[scored].mean()) if scored.any() else np.nan,
        "rmse": float(rmse[scored].mean()) if scored.any() else np.nan,
        "n": int(n.sum()),
    }
    return result


def labelled_arrays(
    data: MultitaskDataset | pd.DataFrame, smiles_col: str, task_names: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """The SMILES and the (n, len(task_names)) label matrix of labelled data to evaluate on:
    a dataset, or a frame with ``smiles_col`` and any of the task columns (a missing task is
    all NaN, an unparsable value NaN).

    Raises:
        DataError: the frame has no SMILES column or none of the task columns.
    """
    if isinstance(data, MultitaskDataset):
        index = [data.task_names.index(t) if t in data.task_names else -1 for t in task_names]
        Y = np.column_stack([data.Y[:, j] if j >= 0 else np.full(len(data), np.nan) for j in index])
        return list(data.smiles), Y
    if smiles_col not in data.columns:
        raise DataError(f"missing SMILES column {smiles_col!r}; columns: {list(data.columns)}")
    present = [t for t in task_names if t in data.columns]
    if not present:
        raise DataError(f"no task column among {list(task_names)}; columns: {list(data.columns)}")
    Y = np.column_stack(
        [
            pd.to_numeric(data[t], errors="coerce").to_numpy(dtype=float)
            if t in data.columns
            else np.full(len(data), np.nan)
            for t in task_names
        ]
    )
    return list(data[smiles_col]), Y
