"""A trial of the tiers study (studies/tiers.yaml) runs end to end with each way to use the
low tier that changes the table: its objective reads the scored tasks only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
from conftest import _synthetic_frame

from admet.hpo.runner import run_worker
from admet.hpo.spec import load_study_spec


@pytest.fixture(scope="module")
def tiered_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame = _synthetic_frame()
    frame.loc[np.arange(len(frame)) % 4 == 1, "Quality"] = "low"
    path = tmp_path_factory.mktemp("tiers") / "train.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("use", ["drop", "auxiliary_task"])
def test_a_tiers_trial_scores_the_high_tier_of_the_target_columns(tiered_csv, tmp_path, use):
    spec = load_study_spec(
        "tiers",
        [
            "n_trials=1",
            f"data.train_file={tiered_csv}",
            "data.target_cols=[logP, TPSA, MW]",
            "data.featurization_cache_dir=null",
            f"data.tier_use.low={use}",  # fixes the searched parameter
            "ensemble.split=random",
            "ensemble.n_members=2",
            "optimization.max_epochs=2",
            "model.depth=2",
            "model.message_hidden_dim=16",
            "model.hidden_dim=16",
            "model.ffn_type=regression",
        ],
    )
    storage = f"sqlite:///{tmp_path / 's.db'}"
    run_worker(spec, storage, mlflow_enabled=False, progress=False)
    trial = optuna.load_study(study_name="tiers", storage=storage).trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
    assert trial.user_attrs["config"]["data"]["tier_use"] == {"low": use}
    assert trial.user_attrs["config"]["optimization"]["validation_qualities"] == ["high"]
    assert sorted(trial.user_attrs["cv_metrics"]) == ["MW", "TPSA", "logP", "macro"]
    assert np.isfinite(trial.value)
