"""``python -m admet.hpo refit``: a tiny study's best trial becomes a full-budget model that
``python -m admet.model predict`` loads, tracked in MLflow as one run linked to the study."""

from __future__ import annotations

import subprocess
import sys

import optuna
import pandas as pd
import pytest
from test_hpo_service import _env, hpo, run_args

from admet.config import load_config

pytestmark = pytest.mark.slow


def test_refit_best_trial_then_predict(synthetic_csv, tmp_path):
    study_run = hpo(tmp_path, *run_args(synthetic_csv, None, "n_trials=2", "mlflow.enabled=false"))
    assert study_run.returncode == 0, study_run.stderr[-3000:]
    storage = f"sqlite:///{tmp_path / 'admet-studies.db'}"
    study = optuna.load_study(study_name="joint_sampling", storage=storage)
    best = study.best_trial

    out = tmp_path / "model"
    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    budget = ["--members", "3", "--max-epochs", "3"]
    exported = hpo(tmp_path, "refit", *budget, "--export", str(tmp_path / "refit.yaml"))
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert not out.exists()  # --export trains nothing
    proc = hpo(
        tmp_path,
        "refit",
        "--quiet",
        *budget,
        "--out",
        str(out),
        "mlflow.enabled=true",
        f"mlflow.tracking_uri={mlflow_uri}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"refit trial {best.number}" in proc.stdout
    # --quiet: one status line per member epoch, the 3 members stacked
    assert (
        f"refit trial {best.number} · members done 0/3 · member 1 · epoch 1/3 · val/mae_macro" in proc.stderr
    )

    cfg = load_config(out / "config.yaml")
    assert cfg.ensemble.n_members == 3 and cfg.optimization.max_epochs == 3
    # the exported config is the one trained (MLflow aside, which only this refit turned on)
    mlflow_keys = [
        "mlflow.enabled=true",
        f"mlflow.tracking_uri={mlflow_uri}",
        f"mlflow.run_name={cfg.mlflow.run_name}",
    ]
    assert load_config(tmp_path / "refit.yaml", mlflow_keys) == cfg
    assert sorted(p.name for p in out.glob("member_*")) == ["member_0", "member_1", "member_2"]
    trial_cfg = best.user_attrs["config"]
    for key, value in best.params.items():  # every sampled model/sampling value is kept
        if key.startswith("curriculum."):
            continue
        section, *rest = key.split(".")
        node = trial_cfg[section]
        for part in rest:
            node = node[part]
        assert node == value, key
        got = cfg
        for part in key.split("."):
            got = getattr(got, part)
        assert got == value, key

    from mlflow import MlflowClient

    client = MlflowClient(mlflow_uri)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.`admet.kind` = 'refit'"
    )
    assert len(runs) == 1
    assert runs[0].data.tags["admet.study"] == "joint_sampling"
    assert runs[0].data.tags["admet.trial"] == str(best.number)

    preds = tmp_path / "preds.csv"
    args = ["predict", "--model", str(out), "--quiet", "--input", str(synthetic_csv), "--output", str(preds)]
    predict = subprocess.run(
        [sys.executable, "-m", "admet.model", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(tmp_path),
        cwd=tmp_path,
    )
    assert predict.returncode == 0, predict.stderr[-3000:]
    frame = pd.read_csv(preds)
    assert len(frame) == len(pd.read_csv(synthetic_csv))
    # the input's label columns stay; predictions and the member spread are added
    predicted = ["logP_pred", "TPSA_pred", "MW_pred", "logP_std", "TPSA_std", "MW_std"]
    assert frame[predicted].notna().all().all()

    # a trial that does not exist, and an override of a sampled parameter: one-line errors
    missing = hpo(tmp_path, "refit", "--trial", "99", "--out", str(tmp_path / "x"))
    assert missing.returncode == 2 and "no trial 99" in missing.stderr and "Traceback" not in missing.stderr
    sampled = next(k for k in best.params if not k.startswith("curriculum."))
    changed = hpo(tmp_path, "refit", "--out", str(tmp_path / "y"), f"{sampled}={best.params[sampled]}")
    assert changed.returncode == 2 and sampled in changed.stderr
