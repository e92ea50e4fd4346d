"""Quality tiers in training: validation restricted to ``optimization.validation_qualities``
on both training paths (a Lightning fit, stacked members), and the four ways to use a tier
(``data.tier_use``: drop, train, train with the curriculum, auxiliary_task).

The table is the shared synthetic one with every fourth molecule moved to a ``low`` tier
whose logP labels are off by +100: a metric that reads them is huge, one that does not is
the size of the others.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import _synthetic_frame, tiny_overrides

from admet.config import load_config
from admet.data import MultitaskDataset, apply_tier_use, fold_assignment, holdout_split, load_training_data
from admet.model.ensemble import ChempropEnsemble
from admet.model.model import ChempropModel
from admet.model.mpnn import MONITOR, validation_metrics
from admet.model.validation_scope import ValidationScope

OFF = 100.0  # the low tier's logP error
HIGH = "[high, medium]"


@pytest.fixture(scope="module")
def tiered_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame = _synthetic_frame()
    low = np.arange(len(frame)) % 4 == 1
    frame.loc[low, "Quality"] = "low"
    frame.loc[low, "logP"] += OFF
    path = tmp_path_factory.mktemp("tiers") / "train.csv"
    frame.to_csv(path, index=False)
    return path


def _overrides(csv: Path, **extra: object) -> list[str]:
    return tiny_overrides(
        csv, **{"joint_sampling.curriculum.qualities": "[high, medium, low]", "model.dropout": 0.0, **extra}
    )


def _restricted(model: ChempropModel, val: MultitaskDataset) -> tuple[float, float, float]:
    """From the model's predictions on ``val``: the macro MAE over the scope's labels, the
    same over every label, and the scope's val_loss (MAE on standardised targets, as the
    criterion computes it)."""
    cfg = model.config
    val = apply_tier_use(val, cfg)
    P = model.predict_array(val.smiles)
    scope = ValidationScope.of(cfg, val)
    scoped = validation_metrics(val.Y, P, model.output_tasks, np.asarray(val.quality), scope)[0]
    everything = validation_metrics(val.Y, P, model.output_tasks, None)[0]
    scale = model.mpnn.predictor.output_transform.scale.numpy().ravel()
    labels = scope.targets(val.Y)
    mask = np.isfinite(labels)
    loss = float((np.abs(P - np.nan_to_num(labels)) / scale)[mask].sum() / mask.sum())
    return scoped["macro"]["mae"], everything["macro"]["mae"], loss


def test_a_low_tier_row_with_a_huge_error_moves_only_the_unrestricted_metric():
    Y = np.array([[1.0, 5.0], [2.0, 6.0], [3.0, 7.0], [4.0, np.nan]])
    P = Y + np.array([[0.5, 0.1], [0.5, 0.1], [OFF, 0.1], [OFF, np.nan]])
    quality = np.array(["high", "high", "low", "low"], dtype=object)
    high = ValidationScope(np.array([True, True, False, False]), 2)
    everything, _ = validation_metrics(Y, P, ["a", "b"], quality)
    metrics, scalars = validation_metrics(Y, P, ["a", "b"], quality, high)
    assert metrics["macro"]["mae"] == pytest.approx((0.5 + 0.1) / 2)
    assert everything["macro"]["mae"] > 10  # what today's metric would early-stop on
    assert scalars["val/mae/a"] == pytest.approx(0.5)
    assert scalars["val/mae/low"] == pytest.approx(OFF)  # still logged, per tier
    # an auxiliary column (after the scored ones) is never scored
    aux = ValidationScope(None, 1)
    metrics, scalars = validation_metrics(Y, P, ["a", "a_low"], quality, aux)
    assert list(metrics) == ["a", "macro"] and "val/mae/a_low" not in scalars


@pytest.mark.slow
def test_a_lightning_fit_early_stops_on_the_restricted_metric(tiered_csv):
    cfg = load_config({}, _overrides(tiered_csv, **{"optimization.validation_qualities": HIGH}))
    data = load_training_data(cfg)
    train, val = holdout_split(data, 4, "random", 0)
    model = ChempropModel(cfg).fit(data.subset(train), data.subset(val), calibrate=False)
    scoped, everything, loss = _restricted(model, data.subset(val))
    # the best epoch (checkpoint, early stopping) is the one with the lowest restricted value
    assert model.best_score == pytest.approx(scoped, rel=1e-3)
    assert abs(everything - scoped) > 1  # the unrestricted value is another number
    best = model.history[model.best_epoch]
    assert best[MONITOR] == pytest.approx(scoped, rel=1e-3)
    assert best["val_loss"] == pytest.approx(loss, rel=1e-3)  # the curriculum's monitor
    assert best["val/mae/low"] > OFF / 10  # per-tier errors are logged as before


@pytest.mark.slow
def test_stacked_members_and_the_cv_score_read_the_restricted_metric(tiered_csv):
    overrides = _overrides(tiered_csv, **{"optimization.validation_qualities": HIGH})
    ens = ChempropEnsemble.from_config({"ensemble": {"n_members": 2, "split": "random"}}, overrides).fit()
    cfg = ens.config
    assert cfg.ensemble.batched
    data = load_training_data(cfg)
    folds = fold_assignment(data.smiles, ens.n_folds, cfg.ensemble.seed, "random")
    for m, member in enumerate(ens.members):
        scoped, everything, loss = _restricted(member, data.subset(np.flatnonzero(folds == m)))
        assert member.best_score == pytest.approx(scoped, rel=1e-3)
        assert ens.member_val_metrics[m]["macro"]["mae"] == pytest.approx(scoped, rel=1e-3)
        assert abs(everything - scoped) > 1  # the unrestricted value is another number
        assert member.history[member.best_epoch]["val_loss"] == pytest.approx(loss, rel=1e-3)
    assert ens.cv_score == pytest.approx(np.mean([mv["macro"]["mae"] for mv in ens.member_val_metrics]))


WAYS = {
    "drop": {"data.tier_use": "{low: drop}"},
    "train": {"joint_sampling.curriculum.enabled": False},
    "train+curriculum": {},
    "auxiliary_task": {"data.tier_use": "{low: auxiliary_task}"},
}


@pytest.mark.slow
@pytest.mark.parametrize("way", list(WAYS))
def test_each_way_to_use_a_tier_trains_stacked_members(tiered_csv, way):
    overrides = _overrides(
        tiered_csv, **{"optimization.max_epochs": 2, "optimization.validation_qualities": HIGH, **WAYS[way]}
    )
    ens = ChempropEnsemble.from_config({"ensemble": {"n_members": 2, "split": "random"}}, overrides).fit()
    stats = ens.members[0].sampler_history[0]
    low_share = stats.get("quality_share/low", 0.0)
    n_rows = len(load_training_data(ens.config))
    if way == "drop":
        assert low_share == 0.0 and len(ens.oof_predictions) == n_rows - (n_rows + 2) // 4
    elif way == "train":
        assert "curriculum/phase" not in ens.members[0].history[0]
        assert ens.members[0].history[0]["val/mae/low"] > OFF / 10  # low labels in logP
    elif way == "train+curriculum":
        assert "curriculum/phase" in ens.members[0].history[0] and "quality_share/low" in stats
    else:
        assert ens.output_tasks == ["logP", "TPSA", "MW", "logP_low", "TPSA_low", "MW_low"]
        assert stats["task_share/logP_low"] > 0  # drawn during training
        assert "val/mae/logP_low" not in ens.members[0].history[0]
        assert list(ens.member_val_metrics[0]) == ["logP", "TPSA", "MW", "macro"]
        columns = list(ens.predict(["CCO"]).columns)
        assert columns == [
            f"{t}_{s}" for t in ("logP", "TPSA", "MW") for s in ("pred", "std", "lo90", "hi90")
        ]
        assert "logP_low_pred" in ens.predict(["CCO"], auxiliary_tasks=True).columns
    assert len(ens.oof_predictions) == len(ens.oof_labels) and np.isfinite(ens.cv_score)


@pytest.mark.slow
@pytest.mark.parametrize("head", ["regression", "branched", "moe"])
def test_auxiliary_columns_train_with_every_head_and_stay_hidden_when_saved(tiered_csv, tmp_path, head):
    from admet.model.__main__ import main
    from admet.model.pyfunc import AdmetPyfuncModel

    overrides = _overrides(
        tiered_csv,
        **{"optimization.max_epochs": 1, "data.tier_use": "{low: auxiliary_task}", "model.ffn_type": head},
    )
    cfg = load_config({}, overrides)
    data = load_training_data(cfg)
    train, val = holdout_split(data, 4, "random", 0)
    model = ChempropModel(cfg).fit(data.subset(train), data.subset(val))  # a Lightning fit
    assert model.predict_array(["CCO"]).shape == (1, 6)
    assert "task_share/TPSA_low" in model.sampler_history[0]
    folder = model.save(tmp_path / "model")
    loaded = ChempropModel.load(folder)
    smiles = ["CCO", "c1ccccc1O"]
    pd.testing.assert_frame_equal(loaded.predict(smiles), model.predict(smiles))
    assert list(loaded.predict(smiles).columns)[-1] == "MW_hi90"
    assert list(loaded.predict(smiles, auxiliary_tasks=True).columns)[-1] == "MW_low_hi90"
    assert list(loaded.evaluate(data.subset(val))) == ["logP", "TPSA", "MW", "macro"]
    # the command line hides them unless asked
    pd.DataFrame({"SMILES": smiles}).to_csv(tmp_path / "in.csv", index=False)
    for flag, last in (([], "MW_hi90"), (["--auxiliary-tasks"], "MW_low_hi90")):
        out = tmp_path / f"out{len(flag)}.csv"
        args = ["predict", "--model", str(folder), "--input", str(tmp_path / "in.csv"), "--output", str(out)]
        assert main([*args, *flag]) == 0
        assert list(pd.read_csv(out).columns)[-1] == last
    # so does the MLflow pyfunc (params={"auxiliary_tasks": True} shows them)
    pyfunc = AdmetPyfuncModel()
    pyfunc._model = loaded
    frame = pd.DataFrame({"SMILES": smiles})
    assert list(pyfunc.predict(None, frame).columns)[-1] == "MW_hi90"
    assert list(pyfunc.predict(None, frame, {"auxiliary_tasks": True}).columns)[-1] == "MW_low_hi90"
    if head == "regression":  # the Chemprop copy predicts the target columns only
        from chemprop.models import MPNN

        copy = MPNN.load_from_file(folder / "chemprop" / "model.pt")
        assert copy.predictor.n_tasks == 3


def test_a_validation_table_without_the_scored_tiers_is_a_one_line_error():
    from admet.errors import DataError

    cfg = load_config({}, ["data.target_cols=[HLM]", "optimization.validation_qualities=[high]"])
    val = MultitaskDataset(["C", "CC"], np.array([[1.0], [2.0]]), ["HLM"], quality=["low", "medium"])
    with pytest.raises(DataError, match=r"^optimization.validation_qualities=\['high'\]: the validation"):
        ValidationScope.of(cfg, val)
