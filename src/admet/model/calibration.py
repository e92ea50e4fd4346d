"""Calibrated uncertainty: a per-task scale for the members' spread and conformal intervals.

The spread of an ensemble's members ranks molecules by uncertainty but is not a standard
deviation of the error: members share data and architecture, so it is usually too small.
:func:`fit_spread_calibration` fits it on the ensemble's out-of-fold predictions, where
every error is honest (the member that predicts a molecule never trained on it):

* z-scaling: one factor ``s`` per task so that ``error ~ N(0, (s * spread)^2)``; the
  maximum-likelihood ``s`` has the closed form ``sqrt(mean((error / spread)^2))``.
* split-conformal interval: the ``ceil((n + 1) * 0.9) / n`` empirical quantile ``q`` of
  ``|error| / (s * spread)``; ``mean +/- q * s * spread`` then covers 90% of new molecules
  exchangeable with the calibration set, whatever the error distribution.

Both need a spread measured the way it is measured on new molecules: by members that
never trained on the molecule. A K-fold ensemble cannot give that on its own training data:
each out-of-fold molecule was trained on by every member but one, so its spread is about
``|error| * sqrt(M - 1) / M`` (four members near the label, one off by the error) and
``error / spread`` is squeezed under ``M / sqrt(M - 1)`` (2.5 for five members), a far
lighter tail than on new molecules. A ``fang2023`` rPPB ensemble on 10 random folds, scaled
this way, covered 0.76 of its test split instead of 0.90. An ensemble is therefore
calibrated with :func:`fit_cv_plus` instead, CV+ (Barber et al., 2021, "Predictive
inference with the jackknife+"): the interval of a new molecule is read off the members'
own predictions for it, each shifted by the out-of-fold residuals of that member, so no
number on the calibration side depends on a member that saw the label; the interval widens
where the members disagree, and the standard deviation is its half-width over ``z_0.95``.
CV+ guarantees at least ``1 - 2 * (1 - coverage)`` and reaches the nominal coverage when the
members disagree less than they err, as a Chemprop ensemble's do; it over-covers otherwise.
:func:`fit_spread_calibration` remains for spreads measured on held-out molecules.

A single model has no spread; :func:`fit_residual_calibration` gives it a constant
standard deviation (the RMSE of its validation residuals) and a conformal interval from
the same residuals. :func:`uncertainty_metrics` scores either against labels. Kept here
rather than from a library: the conformal and calibration packages work on one model's
scikit-learn API, not on a multi-task ensemble's spread with missing labels.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> spread = rng.uniform(0.5, 1.5, 5000)
    >>> error = rng.normal(0.0, 2.0 * spread)  # the spread is half the true sd
    >>> cal = fit_spread_calibration(error, spread)
    >>> round(cal.scale, 1), round(cal.quantile, 1)  # q ~ 1.645 for Gaussian errors
    (2.0, 1.6)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "COVERAGE",
    "GAUSSIAN_Z90",
    "PREDICTION_SUFFIXES",
    "UNCERTAINTY_METRICS",
    "Calibration",
    "TaskCalibration",
    "add_uncertainty_metrics",
    "cv_plus_interval",
    "fit_cv_plus",
    "fit_residual_calibration",
    "fit_spread_calibration",
    "prediction_columns",
    "prediction_frame",
    "uncertainty_metrics",
]

COVERAGE = 0.9
# The prediction vocabulary of every interface (Python ``predict``, ``admet predict``'s CSV,
# the MLflow pyfunc model, the benchmarks): per task ``T``, ``T_pred`` (the mean),
# ``T_std`` and the 90% interval ``T_lo90``/``T_hi90``; see :func:`prediction_columns`.
PREDICTION_SUFFIXES = ("_pred", "_std", "_lo90", "_hi90")
UNCERTAINTY_METRICS = ("nll", "miscalibration_area", "coverage90", "spearman_err_std")
GAUSSIAN_Z90 = float(stats.norm.ppf(0.5 + COVERAGE / 2))  # 1.645: the uncalibrated interval
# Spreads below this fraction of the task's median spread are floored (identical members
# would otherwise give zero-width intervals and infinite z-scores).
MIN_RELATIVE_SPREAD = 1e-3


def _conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    n = len(scores)
    if n == 0:
        return float("nan")
    k = math.ceil((n + 1) * coverage)
    return float(np.sort(scores)[min(k, n) - 1])


@dataclass(frozen=True)
class TaskCalibration:
    """One task's calibration, ``n`` calibration points. ``kind`` says how it applies:

    * ``spread``: ``std = scale * spread``, interval ``mean +/- quantile * std``;
    * ``residual`` (a single model): the same with ``spread`` 1, a constant sd;
    * ``cv+`` (an ensemble): ``residuals[m]`` holds member ``m``'s out-of-fold absolute
      errors; the interval comes from :func:`cv_plus_interval` over the members'
      predictions, ``std`` is its half-width over ``z_0.95`` (``scale``, ``quantile``
      unused, NaN).
    """

    scale: float
    quantile: float
    n: int
    kind: str = "spread"  # spread | residual (single model) | cv+ (ensemble)
    residuals: tuple[tuple[float, ...], ...] | None = None

    def std(self, spread: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(spread, dtype=float)

    def interval(self, mean: np.ndarray, spread: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        half = self.quantile * self.std(spread)
        return mean - half, mean + half


def _floor(spread: np.ndarray) -> np.ndarray:
    positive = spread[np.isfinite(spread) & (spread > 0)]
    floor = MIN_RELATIVE_SPREAD * float(np.median(positive)) if len(positive) else 1e-12
    return np.maximum(spread, floor)


def fit_spread_calibration(
    errors: np.ndarray, spread: np.ndarray, coverage: float = COVERAGE
) -> TaskCalibration:
    """Scale and conformal quantile for ``errors`` (prediction - label) given the member
    ``spread`` at the same molecules; NaN pairs are ignored."""
    errors, spread = np.asarray(errors, dtype=float), np.asarray(spread, dtype=float)
    ok = np.isfinite(errors) & np.isfinite(spread)
    if not ok.any():
        return TaskCalibration(float("nan"), float("nan"), 0)
    e, s = errors[ok], _floor(spread[ok])
    z = e / s
    scale = float(np.sqrt(np.mean(z**2))) or 1.0
    return TaskCalibration(scale, _conformal_quantile(np.abs(z) / scale, coverage), int(ok.sum()))


def fit_cv_plus(member_errors: Sequence[np.ndarray]) -> TaskCalibration:
    """CV+ calibration of one task from each member's out-of-fold errors (prediction -
    label on the fold it did not train on; NaN = unlabelled, ignored)."""
    arrays = [np.asarray(e, dtype=float) for e in member_errors]
    residuals = tuple(tuple(float(v) for v in np.abs(e[np.isfinite(e)])) for e in arrays)
    n = sum(len(r) for r in residuals)
    return TaskCalibration(float("nan"), float("nan"), n, "cv+", residuals)


def cv_plus_interval(
    member_predictions: np.ndarray,
    residuals: Sequence[Sequence[float]],
    coverage: float = COVERAGE,
    chunk_elements: int = 4_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """The CV+ interval of each molecule: with ``p_m`` member ``m``'s prediction
    (``member_predictions`` shaped (M, N)) and ``R_i`` the out-of-fold residuals of that
    member, the lower bound is the ``floor((1 - coverage)(n + 1))``-th smallest of all
    ``p_m - R_i`` and the upper bound the ``ceil(coverage (n + 1))``-th smallest of all
    ``p_m + R_i`` (``n`` residuals in all)."""
    preds = np.asarray(member_predictions, dtype=float)
    used = [(m, np.asarray(r, dtype=float)) for m, r in enumerate(residuals) if len(r)]
    n_mol = preds.shape[1]
    n = sum(len(r) for _, r in used)
    if n == 0:
        return np.full(n_mol, np.nan), np.full(n_mol, np.nan)
    k_hi = min(math.ceil(coverage * (n + 1)), n) - 1
    k_lo = max(math.floor((1 - coverage) * (n + 1)), 1) - 1
    lo, hi = np.empty(n_mol), np.empty(n_mol)
    step = max(1, chunk_elements // n)
    for a in range(0, n_mol, step):
        rows = slice(a, min(a + step, n_mol))
        up = np.concatenate([preds[m, rows, None] + r[None, :] for m, r in used], axis=1)
        down = np.concatenate([preds[m, rows, None] - r[None, :] for m, r in used], axis=1)
        hi[rows] = np.partition(up, k_hi, axis=1)[:, k_hi]
        lo[rows] = np.partition(down, k_lo, axis=1)[:, k_lo]
    return lo, hi


def fit_residual_calibration(errors: np.ndarray, coverage: float = COVERAGE) -> TaskCalibration:
    """A single model's constant sd (validation RMSE) and conformal quantile of
    ``|residual| / sd``."""
    errors = np.asarray(errors, dtype=float)
    e = errors[np.isfinite(errors)]
    if len(e) == 0:
        return TaskCalibration(float("nan"), float("nan"), 0, "residual")
    sd = float(np.sqrt(np.mean(e**2))) or 1e-12
    return TaskCalibration(sd, _conformal_quantile(np.abs(e) / sd, coverage), len(e), "residual")


@dataclass
class Calibration:
    """Per-task calibrations of a model, saved beside it as JSON."""

    tasks: dict[str, TaskCalibration]
    coverage: float = COVERAGE

    def apply(
        self,
        mean: np.ndarray,
        spread: np.ndarray | None,
        task_names: Sequence[str],
        member_predictions: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Calibrated std, lower and upper bound, each shaped like ``mean`` (N, T);
        ``spread`` None means a single model (constant sd per task); ``cv+`` tasks need
        ``member_predictions`` (M, N, T), in the members' order."""
        spread = np.ones_like(mean) if spread is None else spread
        std, lo, hi = (np.full_like(mean, np.nan, dtype=float) for _ in range(3))
        for j, task in enumerate(task_names):
            cal = self.tasks.get(task)
            if cal is not None and cal.kind == "cv+":
                if member_predictions is None:
                    raise ValueError(f"task {task!r}: a cv+ calibration needs the members' predictions")
                bounds = cv_plus_interval(member_predictions[:, :, j], cal.residuals or (), self.coverage)
                lo[:, j], hi[:, j] = bounds
                std[:, j] = (hi[:, j] - lo[:, j]) / (2 * stats.norm.ppf(0.5 + self.coverage / 2))
                continue
            if cal is None or not math.isfinite(cal.scale):
                continue
            s = spread[:, j] if cal.kind == "spread" else np.ones(len(mean))
            std[:, j] = cal.std(_floor(s) if cal.kind == "spread" else s)
            lo[:, j], hi[:, j] = mean[:, j] - cal.quantile * std[:, j], mean[:, j] + cal.quantile * std[:, j]
        return std, lo, hi

    def to_dict(self) -> dict[str, Any]:
        return {"coverage": self.coverage, "tasks": {t: asdict(c) for t, c in self.tasks.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        tasks = {}
        for t, c in data["tasks"].items():
            residuals = c.get("residuals")
            if residuals is not None:
                c = {**c, "residuals": tuple(tuple(float(v) for v in r) for r in residuals)}
            tasks[t] = TaskCalibration(**c)
        return cls(tasks, float(data.get("coverage", COVERAGE)))


def prediction_columns(task_names: Sequence[str]) -> list[str]:
    """``[T_pred, T_std, T_lo90, T_hi90]`` for each task ``T``, task by task: the columns
    every interface predicts under.

    Why ``T_pred`` and not the bare task name ``T`` for the mean: predictions are read next to
    labels (``admet predict`` keeps the input's columns, so a labelled test file has both the
    measured ``HLM`` and the predicted one; evaluation and the benchmarks hold both too), and
    a bare ``T`` would collide with the label column of the same name. With a suffix on every
    column, one name means one thing in the CLI's CSV, the Python API and the MLflow model.
    """
    return [f"{task}{suffix}" for task in task_names for suffix in PREDICTION_SUFFIXES]


def prediction_frame(
    task_names: Sequence[str],
    mean: np.ndarray,
    std: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    spread: np.ndarray | None = None,
) -> pd.DataFrame:
    """The prediction table of a model, in :func:`prediction_columns` order: per task
    ``<task>_pred`` (mean), ``<task>_std``, ``<task>_lo90``, ``<task>_hi90`` (and
    ``<task>_spread``, the raw member spread, after them if given)."""
    columns: dict[str, np.ndarray] = {}
    for j, t in enumerate(task_names):
        for suffix, values in zip(PREDICTION_SUFFIXES, (mean, std, lo, hi), strict=True):
            columns[f"{t}{suffix}"] = values[:, j]
        if spread is not None:
            columns[f"{t}_spread"] = spread[:, j]
    return pd.DataFrame(columns)


def _miscalibration_area(z: np.ndarray) -> float:
    """Mean |observed - expected| fraction of errors inside the central Gaussian interval,
    over expected fractions 0.01..0.99 (0 for perfectly calibrated Gaussian errors)."""
    expected = np.linspace(0.01, 0.99, 99)
    bounds = stats.norm.ppf(0.5 + expected / 2)
    observed = (np.abs(z)[:, None] <= bounds[None, :]).mean(0)
    return float(np.mean(np.abs(observed - expected)))


def uncertainty_metrics(
    y_true: np.ndarray, mean: np.ndarray, std: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> dict[str, float]:
    """Gaussian NLL, miscalibration area, coverage of ``[lo, hi]`` and Spearman rho
    between ``|error|`` and ``std`` for one task (NaN labels ignored)."""
    y, m, s = (np.asarray(a, dtype=float) for a in (y_true, mean, std))
    ok = np.isfinite(y) & np.isfinite(m) & np.isfinite(s) & (s > 0)
    if ok.sum() < 2:
        return dict.fromkeys(UNCERTAINTY_METRICS, np.nan)
    e, s = y[ok] - m[ok], s[ok]
    nll = float(np.mean(0.5 * np.log(2 * np.pi * s**2) + 0.5 * (e / s) ** 2))
    inside = (y[ok] >= np.asarray(lo, dtype=float)[ok]) & (y[ok] <= np.asarray(hi, dtype=float)[ok])
    rho = float(stats.spearmanr(np.abs(e), s)[0]) if np.ptp(s) > 0 else np.nan
    return {
        "nll": nll,
        "miscalibration_area": _miscalibration_area(e / s),
        "coverage90": float(inside.mean()),
        "spearman_err_std": rho,
    }


def add_uncertainty_metrics(
    metrics: dict[str, dict[str, float]], Y: np.ndarray, predictions: pd.DataFrame, task_names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Add :func:`uncertainty_metrics` per task (and their macro mean) to ``metrics``, from
    a :func:`prediction_frame`; with ``<task>_spread`` columns, the uncalibrated spread's
    (sd = spread, Gaussian interval) as ``<metric>_uncalibrated`` too."""
    per_task: list[dict[str, float]] = []
    for j, t in enumerate(task_names):
        cols = [predictions[f"{t}{suffix}"].to_numpy() for suffix in PREDICTION_SUFFIXES]
        found = uncertainty_metrics(Y[:, j], *cols)
        if f"{t}_spread" in predictions:
            mean, spread = cols[0], predictions[f"{t}_spread"].to_numpy()
            raw = uncertainty_metrics(
                Y[:, j], mean, spread, mean - GAUSSIAN_Z90 * spread, mean + GAUSSIAN_Z90 * spread
            )
            found.update({f"{k}_uncalibrated": v for k, v in raw.items()})
        metrics[t].update(found)
        per_task.append(found)
    for key in per_task[0] if per_task else ():
        values = [m[key] for m in per_task if np.isfinite(m[key])]
        metrics["macro"][key] = float(np.mean(values)) if values else np.nan
    return metrics
