"""Calibrated uncertainty: the spread's scale, conformal intervals, the prediction columns
of ensembles and single models, and the uncertainty metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_overrides

from admet.data.training import holdout_split, load_training_data
from admet.model import ChempropEnsemble, ChempropModel
from admet.model.calibration import (
    Calibration,
    cv_plus_interval,
    fit_cv_plus,
    fit_residual_calibration,
    fit_spread_calibration,
    uncertainty_metrics,
)


def _synthetic(n: int, true_scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    spread = rng.uniform(0.2, 2.0, n)
    return rng.normal(0.0, true_scale * spread), spread


@pytest.mark.parametrize("true_scale", [0.5, 2.5])
def test_spread_scale_recovered_within_ten_percent(true_scale):
    errors, spread = _synthetic(2000, true_scale, seed=1)
    cal = fit_spread_calibration(errors, spread)
    assert abs(cal.scale - true_scale) / true_scale < 0.10
    assert cal.n == 2000


def test_conformal_coverage_on_held_out_data_is_nominal():
    errors, spread = _synthetic(1000, 1.7, seed=2)
    cal = fit_spread_calibration(errors, spread)
    test_errors, test_spread = _synthetic(20000, 1.7, seed=3)
    inside = np.abs(test_errors) <= cal.quantile * cal.std(test_spread)
    assert abs(inside.mean() - 0.9) < 0.03
    # heavy tails: the conformal interval still covers 90%, a Gaussian one would not
    rng = np.random.default_rng(4)
    heavy = rng.standard_t(2, 1000) * spread
    cal_t = fit_spread_calibration(heavy, spread)
    test_heavy = rng.standard_t(2, 20000) * test_spread
    assert abs((np.abs(test_heavy) <= cal_t.quantile * cal_t.std(test_spread)).mean() - 0.9) < 0.03


def _kfold_members(n: int, n_members: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A K-fold ensemble without training, for labels ``y = f + noise``: on molecules it did
    not train on, a member predicts ``f`` plus an error shared by all members and a small
    one of its own (both growing with x, as a real ensemble's do); on those it trained on,
    the label plus a third of those errors. Returns labels, unseen and seen predictions."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, n)
    tau = 0.2 + 0.8 * x
    y = np.sin(6 * x) + rng.normal(0, 0.3, n)
    error = rng.normal(0, 0.5, n) * tau + rng.normal(0, 0.1, (n_members, n)) * tau
    return y, np.sin(6 * x) + error, y + error / 3


def test_cv_plus_covers_held_out_data_where_the_out_of_fold_spread_misleads():
    n_members = 5
    y, unseen, seen = _kfold_members(3000, n_members, seed=8)
    fold = np.arange(3000) % n_members
    # on its own training data member m saw every fold but fold m
    preds = np.where(np.arange(n_members)[:, None] == fold[None, :], unseen, seen)
    errors = [preds[m, fold == m] - y[fold == m] for m in range(n_members)]
    cal = fit_cv_plus(errors)
    assert cal.n == 3000
    y_new, p_new, _ = _kfold_members(20000, n_members, seed=9)
    lo, hi = cv_plus_interval(p_new, cal.residuals)
    assert abs(((y_new >= lo) & (y_new <= hi)).mean() - 0.9) < 0.03
    assert np.all(lo < p_new.mean(0)) and np.all(p_new.mean(0) < hi)
    # the spread the same members show on their own out-of-fold molecules is shrunk by
    # those that trained on them: scaled on it, the interval misses new molecules
    oof = preds[fold, np.arange(3000)]
    leaky = fit_spread_calibration(oof - y, preds.std(0))
    spread_new = p_new.std(0)
    inside = np.abs(y_new - p_new.mean(0)) <= leaky.quantile * leaky.std(spread_new)
    assert inside.mean() < 0.8


def test_cv_plus_interval_widens_where_members_disagree():
    residuals = [(0.1, 0.2, 0.3)] * 3
    agree = np.array([[1.0], [1.0], [1.0]])
    disagree = np.array([[0.0], [1.0], [2.0]])
    lo_a, hi_a = cv_plus_interval(agree, residuals)
    lo_d, hi_d = cv_plus_interval(disagree, residuals)
    assert hi_d - lo_d > hi_a - lo_a
    # 9 shifted values; ceil(0.9 * 10) = 9th smallest of 1 + R, floor(0.1 * 10) = 1st of 1 - R
    assert (lo_a[0], hi_a[0]) == pytest.approx((0.7, 1.3))
    assert np.isnan(cv_plus_interval(agree, [(), (), ()])[0]).all()


def test_single_model_residual_calibration_and_nan_labels():
    rng = np.random.default_rng(5)
    residuals = rng.normal(0, 0.3, 3000)
    residuals[::10] = np.nan  # unlabelled molecules are ignored
    cal = fit_residual_calibration(residuals)
    assert cal.kind == "residual" and cal.n == 2700
    assert cal.scale == pytest.approx(0.3, rel=0.05) and cal.quantile == pytest.approx(1.645, rel=0.06)
    held_out = rng.normal(0, 0.3, 20000)
    assert abs((np.abs(held_out) <= cal.quantile * cal.scale).mean() - 0.9) < 0.03


def test_uncertainty_metrics_against_hand_computation():
    y = np.array([0.0, 1.0, 2.0, np.nan])
    mean = np.array([0.5, 1.0, 1.0, 3.0])
    std = np.array([1.0, 2.0, 0.5, 1.0])
    m = uncertainty_metrics(y, mean, std, mean - std, mean + std)
    expected_nll = np.mean(0.5 * np.log(2 * np.pi * std[:3] ** 2) + 0.5 * ((y - mean)[:3] / std[:3]) ** 2)
    assert m["nll"] == pytest.approx(expected_nll)
    assert m["coverage90"] == pytest.approx(2 / 3)  # 0 and 1 inside, 2 outside [0.5, 1.5]
    # |err| 0.5, 0, 1 ranks 2, 1, 3; sd 1, 2, 0.5 ranks 2, 3, 1: rho = 1 - 6 * 8 / 24 = -1
    assert m["spearman_err_std"] == pytest.approx(-1.0)
    rng = np.random.default_rng(6)
    s = rng.uniform(0.5, 2, 20000)
    good = uncertainty_metrics(rng.normal(0, s), np.zeros_like(s), s, -1.645 * s, 1.645 * s)
    bad = uncertainty_metrics(rng.normal(0, 3 * s), np.zeros_like(s), s, -1.645 * s, 1.645 * s)
    assert good["miscalibration_area"] < 0.01 < 0.1 < bad["miscalibration_area"]
    assert good["coverage90"] == pytest.approx(0.9, abs=0.01)


def test_calibration_round_trips_through_json():
    cal = Calibration(
        {
            "a": fit_spread_calibration(*_synthetic(50, 1.0, 7)),
            "b": fit_cv_plus([np.array([0.5, -0.25, np.nan]), np.array([1 / 3])]),
        }
    )
    again = Calibration.from_dict(cal.to_dict())
    assert again == cal


@pytest.fixture(scope="module")
def ensemble(synthetic_csv):
    cfg = ChempropEnsemble.from_config(
        {"ensemble": {"n_members": 3, "split": "random"}}, tiny_overrides(synthetic_csv)
    ).config
    return ChempropEnsemble(cfg).fit()


@pytest.mark.slow
def test_ensemble_is_calibrated_on_its_out_of_fold_predictions(ensemble, synthetic_csv, tmp_path):
    assert set(ensemble.calibration.tasks) == {"logP", "TPSA", "MW"}
    labels = load_training_data(ensemble.config).label_counts()
    for task, cal in ensemble.calibration.tasks.items():
        assert cal.kind == "cv+" and len(cal.residuals) == 3
        assert cal.n == labels[task] == sum(map(len, cal.residuals))  # one out-of-fold error per label
        assert all(v >= 0 for r in cal.residuals for v in r)
    smiles = list(pd.read_csv(synthetic_csv)["SMILES"][:20])
    out = ensemble.predict(smiles)
    for task in ("logP", "TPSA", "MW"):
        for suffix in ("_pred", "_std", "_lo90", "_hi90"):
            assert np.isfinite(out[f"{task}{suffix}"]).all(), task + suffix
        mean = out[f"{task}_pred"]
        assert (out[f"{task}_lo90"] < mean).all() and (mean < out[f"{task}_hi90"]).all()
    ensemble.save(tmp_path / "ens")
    again = ChempropEnsemble.load(tmp_path / "ens")
    pd.testing.assert_frame_equal(again.predict(smiles), out)


@pytest.mark.slow
def test_evaluate_reports_uncertainty_metrics_calibrated_and_raw(ensemble, synthetic_csv):
    metrics = ensemble.evaluate(pd.read_csv(synthetic_csv))
    for key in ("nll", "miscalibration_area", "coverage90", "spearman_err_std"):
        assert np.isfinite(metrics["logP"][key]) and np.isfinite(metrics["logP"][f"{key}_uncalibrated"])
        assert key in metrics["macro"]


@pytest.mark.slow
def test_single_model_predicts_intervals_from_its_validation_residuals(synthetic_csv):
    model = ChempropModel.from_config({}, tiny_overrides(synthetic_csv))
    data = load_training_data(model.config)
    train, val = holdout_split(data, 5, "random", 0)
    model.fit(data.subset(train), data.subset(val))
    residual = model.predict_canonical(data.subset(val).smiles) - data.subset(val).Y
    out = model.predict(["CCO", "c1ccccc1O"])
    for j, task in enumerate(model.task_names):
        rmse = float(np.sqrt(np.nanmean(residual[:, j] ** 2)))
        np.testing.assert_allclose(out[f"{task}_std"], rmse, rtol=1e-9)  # constant sd: the val RMSE
        assert np.isfinite(out[[f"{task}_lo90", f"{task}_hi90"]].to_numpy()).all()
