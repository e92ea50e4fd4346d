"""ChempropEnsemble, MLflow tracking in a real local store, and the model CLI."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_overrides

from admet.data import FeaturizationCache, fold_assignment
from admet.data.training import load_training_data
from admet.model import ensemble as ensemble_module
from admet.model.ensemble import ChempropEnsemble, member_seed


def _ensemble(csv: Path, n: int = 2, **extra) -> ChempropEnsemble:
    return ChempropEnsemble.from_config(
        {"ensemble": {"n_members": n, "split": "random"}},
        tiny_overrides(csv, optimization__max_epochs=2, **extra),
    )


@pytest.fixture(scope="module")
def fitted(synthetic_csv, tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("members")
    ens = _ensemble(synthetic_csv)
    return ens.fit(checkpoint_dir=ckpt), ckpt


@pytest.mark.slow
def test_members_train_on_their_folds_with_distinct_seeds(fitted, synthetic_csv):
    ens, _ = fitted
    assert len(ens.members) == 2
    seeds = [m.config.optimization.seed for m in ens.members]
    assert seeds == [member_seed(42, 0), member_seed(42, 1)] and seeds[0] != seeds[1]
    data = load_training_data(ens.config)
    folds = fold_assignment(data.smiles, 2, 0, ens.config.ensemble.split)
    for k, mv in enumerate(ens.member_val_metrics):
        assert mv["macro"]["n"] == int(np.isfinite(data.Y[folds == k]).sum())
    assert ens.cv_score == pytest.approx(np.mean([mv["macro"]["mae"] for mv in ens.member_val_metrics]))
    # and by hand: each member's macro MAE on its own fold, from its predictions
    by_hand = []
    for k, member in enumerate(ens.members):
        smiles = [s for s, f in zip(data.smiles, folds, strict=True) if f == k]
        P, Y = member.predict_array(smiles), data.Y[folds == k]
        by_hand.append(
            np.mean(
                [np.abs(P[np.isfinite(Y[:, i]), i] - Y[np.isfinite(Y[:, i]), i]).mean() for i in range(3)]
            )
        )
    assert ens.cv_score == pytest.approx(float(np.mean(by_hand)), rel=1e-4)
    assert ens.oof_predictions[["logP", "TPSA", "MW"]].notna().all().all()
    # scoring the folds is timed apart from training (the HPO overhead benchmark needs it)
    assert 0 < ens.evaluation_seconds < ens.fit_seconds - sum(m.fit_seconds for m in ens.members) + 1e-3


@pytest.mark.slow
def test_prediction_is_member_mean_with_std(fitted):
    ens, _ = fitted
    smiles = ["c1ccccc1O", "Cc1ccccc1"]
    out = ens.predict(smiles, include_spread=True)
    stack = np.stack([m.predict_array(smiles) for m in ens.members])
    np.testing.assert_allclose(out[["logP_pred", "TPSA_pred", "MW_pred"]].to_numpy(), stack.mean(0))
    np.testing.assert_allclose(out["logP_spread"].to_numpy(), stack[:, :, 0].std(0))
    # CV+: the bounds are order statistics of every member's prediction shifted by that
    # member's out-of-fold residuals; the sd is the half-width over z_0.95
    cal = ens.calibration.tasks["logP"]
    assert cal.kind == "cv+" and len(cal.residuals) == 2
    data = load_training_data(ens.config)
    folds = fold_assignment(data.smiles, 2, 0, ens.config.ensemble.split)
    oof = ens.oof_predictions["logP"].to_numpy()
    for k in range(2):
        expected = np.abs(oof[folds == k] - data.Y[folds == k, 0])
        np.testing.assert_allclose(sorted(cal.residuals[k]), sorted(expected[np.isfinite(expected)]))
    n = cal.n
    for i in range(len(smiles)):
        up = sorted(stack[m, i, 0] + r for m in range(2) for r in cal.residuals[m])
        down = sorted(stack[m, i, 0] - r for m in range(2) for r in cal.residuals[m])
        assert out["logP_hi90"][i] == pytest.approx(up[min(math.ceil(0.9 * (n + 1)), n) - 1])
        assert out["logP_lo90"][i] == pytest.approx(down[max(math.floor(0.1 * (n + 1)), 1) - 1])
    np.testing.assert_allclose(
        out["logP_std"], (out["logP_hi90"] - out["logP_lo90"]) / (2 * 1.6448536), rtol=1e-6
    )
    # out-of-fold scoring skips the second parse of dataset (canonical) SMILES, same numbers
    canon = ["Oc1ccccc1", "Cc1ccccc1"]
    np.testing.assert_array_equal(ens.members[0].predict_canonical(canon), stack[0])


@pytest.mark.slow
def test_save_load_round_trip(fitted, tmp_path):
    ens, _ = fitted
    ens.save(tmp_path / "ens")
    loaded = ChempropEnsemble.load(tmp_path / "ens")
    pd.testing.assert_frame_equal(loaded.predict(["CCOc1ccccc1"]), ens.predict(["CCOc1ccccc1"]))
    assert loaded.cv_score == pytest.approx(ens.cv_score)


@pytest.mark.slow
def test_finished_members_are_reused_not_retrained(fitted, synthetic_csv):
    ens, ckpt = fitted
    again = _ensemble(synthetic_csv).fit(checkpoint_dir=ckpt)
    assert again.reused_members == [0, 1]
    assert again.cv_score == pytest.approx(ens.cv_score)
    changed = _ensemble(synthetic_csv, model__depth=3).fit(checkpoint_dir=ckpt)
    assert changed.reused_members == []  # a different config never reuses a member


@pytest.mark.slow
def test_featurisation_is_shared_by_members(synthetic_csv, monkeypatch):
    cache = FeaturizationCache()
    monkeypatch.setattr(ensemble_module, "default_cache", lambda _dir=None: cache)
    monkeypatch.setattr("admet.model.model.default_cache", lambda _dir=None: cache)
    ens = _ensemble(synthetic_csv, n=3, ensemble__batched=False)  # members one by one
    ens.fit()
    n_unique = len(set(load_training_data(ens.config).smiles))
    assert cache.misses == n_unique  # every molecule featurised exactly once for 3 members
    assert cache.hits >= 3 * n_unique  # each member read the cache
    _ensemble(synthetic_csv, n=3).fit()  # stacked: one graph table for all members
    assert cache.misses == n_unique


@pytest.mark.slow
def test_parallel_members_match_sequential(synthetic_csv, fitted):
    seq = _ensemble(synthetic_csv, ensemble__batched=False).fit()
    par = _ensemble(synthetic_csv, ensemble__batched=False, ensemble__n_jobs=2).fit()
    assert par.cv_score == pytest.approx(seq.cv_score, abs=1e-6)
    ens, _ = fitted  # stacked (the default): the same training up to float summation order
    assert ens.cv_score == pytest.approx(seq.cv_score, rel=1e-3)


@pytest.mark.slow
def test_mlflow_parent_and_nested_member_runs_in_local_store(synthetic_csv, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("ADMET_HOME", str(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ens = _ensemble(
        synthetic_csv, mlflow__enabled=True, mlflow__tracking_uri=uri, mlflow__experiment_name="ens-test"
    ).fit()
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("ens-test")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == ens.mlflow_run_id]
    assert len(parent) == 1 and len(children) == 2
    p = parent[0]
    assert p.data.params["model.depth"] == "2" and p.data.params["ensemble.n_members"] == "2"
    assert p.data.metrics["cv/mae_macro"] == pytest.approx(ens.cv_score)
    artifacts = {a.path for a in client.list_artifacts(p.info.run_id)}
    assert {"config.yaml", "parity", "model"} <= artifacts
    plots = {a.path for a in client.list_artifacts(p.info.run_id, "parity")}
    assert "parity/parity_logP.png" in plots
    child = children[0]
    history = client.get_metric_history(child.info.run_id, "val/mae_macro")
    assert len(history) == 2  # one point per epoch from Lightning's MLFlowLogger
    assert "sampler/entropy" in child.data.metrics and "final/macro/mae" in child.data.metrics
    for key in ("sampler/entropy", "sampler/max", "sampler/task_share/MW", "sampler/quality_share/high"):
        assert len(client.get_metric_history(child.info.run_id, key)) == 2, key  # one per epoch
    assert "sampler_stats.csv" in {a.path for a in client.list_artifacts(child.info.run_id)}


@pytest.mark.slow
def test_mlflow_unreachable_never_loses_the_model(synthetic_csv, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        ens = _ensemble(synthetic_csv, mlflow__enabled=True, mlflow__tracking_uri="http://127.0.0.1:9").fit(
            checkpoint_dir=tmp_path
        )
    assert "MLflow unavailable" in caplog.text
    assert len(ens.members) == 2 and np.isfinite(ens.cv_score)
    assert (tmp_path / "member_1" / "weights.pt").is_file()


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "admet.model", *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


@pytest.mark.slow
def test_cli_train_predict_evaluate_ensemble(synthetic_csv, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("ensemble:\n  n_members: 2\n  split: random\n")
    out = tmp_path / "model"
    proc = _cli(
        "train",
        "--config",
        str(cfg),
        *tiny_overrides(synthetic_csv, optimization__max_epochs=1),
        "--out",
        str(out),
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    assert "CV macro MAE" in proc.stdout and (out / "member_1" / "weights.pt").is_file()
    # --quiet keeps one status line per member epoch (stacked members by default)
    assert "train · members done 0/2 · member 2 · epoch 1/1 · val/mae_macro 0." in proc.stderr

    frame = pd.read_csv(synthetic_csv).head(5)
    frame.insert(1, "compound_id", [f"c{i}" for i in range(5)])
    inp = tmp_path / "in.csv"
    frame.to_csv(inp, index=False)
    preds = tmp_path / "preds.csv"
    proc = _cli("predict", "--model", str(out), "--input", str(inp), "--output", str(preds), "--quiet")
    assert proc.returncode == 0, proc.stderr
    result = pd.read_csv(preds)
    assert list(result["compound_id"]) == list(frame["compound_id"])
    assert {"logP_pred", "logP_std", "MW_std"} <= set(result.columns)

    proc = _cli("evaluate", "--model", str(out), "--input", str(synthetic_csv), "--quiet")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "train_metrics.csv", index_col="task")
    assert set(table.index) == {"logP", "TPSA", "MW", "macro"} and table.loc["logP", "n"] == 222


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "--model", "{model}", "--input", "{missing}", "--output", "{out}"], "file not found"),
        (
            ["predict", "--model", "{model}", "--input", "{badsmiles}", "--output", "{out}"],
            "line 3, column 'SMILES': cannot parse SMILES 'not_a_smiles'",
        ),
        (["evaluate", "--model", "{model}", "--input", "{notask}"], "no task column among"),
        (["train", "--config", "{cfg}", "model.dept=3", "--out", "{out}"], "did you mean 'model.depth'"),
        (
            [
                "train",
                "--config",
                "{cfg}",
                "data.target_cols=[logP,Foo]",
                "data.train_file={train}",
                "--out",
                "{out}",
            ],
            "missing column(s) 'Foo'",
        ),
    ],
)
def test_cli_bad_input_one_line_exit_2(args, message, tmp_path, synthetic_csv, fitted):
    ens, _ = fitted
    model_dir = ens.save(tmp_path / "m")
    bad = tmp_path / "bad.csv"
    bad.write_text("SMILES\nCCO\nnot_a_smiles\n")
    notask = tmp_path / "notask.csv"
    notask.write_text("SMILES,Other\nCCO,1\n")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("ensemble:\n  n_members: 2\n  split: random\n")
    values = {
        "model": model_dir,
        "missing": tmp_path / "missing.csv",
        "out": tmp_path / "o.csv",
        "badsmiles": bad,
        "notask": notask,
        "cfg": cfg,
        "train": synthetic_csv,
    }
    proc = _cli(*[a.format(**values) for a in args])
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.csv").exists()
