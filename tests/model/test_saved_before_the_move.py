"""A model folder written by admet 0.1.0 (before the one-way layout moved the model code)
loads and predicts what it predicted when it was saved: saved models hold YAML, state
dicts and JSON, no class paths. The fixture was written by the 0.1.0 tree's own code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from admet.model import ChempropEnsemble, ChempropModel

FIXTURE = Path(__file__).parent / "fixtures" / "ensemble_v0.1.0"


def test_ensemble_saved_by_0_1_0_loads_and_predicts_the_same():
    expected = pd.read_csv(FIXTURE / "expected_predictions.csv")
    ensemble = ChempropEnsemble.load(FIXTURE)
    got = ensemble.predict(list(expected["SMILES"]))
    # saved before calibration existed: the sd is the member spread, the interval Gaussian
    assert ensemble.calibration is None
    then = list(expected.columns[1:])  # logP, TPSA, MW, logP_std, TPSA_std, MW_std
    now = [f"{c}_pred" if c in ensemble.task_names else c for c in then]  # the mean is <task>_pred now
    np.testing.assert_allclose(got[now].to_numpy(), expected[then].to_numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["logP_hi90"] - got["logP_pred"], 1.6448536 * got["logP_std"], rtol=1e-6)


def test_member_saved_by_0_1_0_loads_as_a_single_model():
    member = ChempropModel.load(FIXTURE / "member_0")
    assert member.task_names == ["logP", "TPSA", "MW"] and member.epochs_trained == 2
    assert np.isfinite(member.predict_array(["c1ccccc1O"])).all()
