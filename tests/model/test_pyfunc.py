"""The trained ensemble logged and registered as an MLflow pyfunc model, loaded back in a
fresh process and through the ``mlflow models predict`` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_overrides

from admet.model.ensemble import ChempropEnsemble
from admet.model.pyfunc import OUTPUT_SUFFIXES, output_columns, prediction_frame

TASKS = ["logP", "TPSA", "MW"]
SMILES = ["c1ccccc1O", "Cc1ccccc1", "CCOc1ccccc1", "Nc1ccc(Cl)cc1"]
MODEL_URI = "models:/admet-test/1"


@pytest.fixture(scope="module")
def registered(synthetic_csv, tmp_path_factory):
    """A 2-member ensemble trained with MLflow on, registered as ``admet-test``."""
    home = tmp_path_factory.mktemp("pyfunc_home")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADMET_HOME", str(home))
        ens = ChempropEnsemble.from_config(
            {"ensemble": {"n_members": 2, "split": "random"}},
            tiny_overrides(
                synthetic_csv,
                optimization__max_epochs=2,
                mlflow__enabled=True,
                mlflow__tracking_uri=uri,
                mlflow__experiment_name="pyfunc-test",
                mlflow__registered_model_name="admet-test",
            ),
        ).fit()
    env = {**os.environ, "ADMET_HOME": str(home), "MLFLOW_TRACKING_URI": uri}
    return ens, uri, env, home


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{args[:3]} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_prediction_frame_forwards_the_models_columns_in_order():
    pred = pd.DataFrame(
        {"b_pred": [0.0, 1.0], "a_pred": [1.0, 2.0], "extra": [5, 5]}
        | {f"{t}{x}": [1, 2] for t in ("a", "b") for x in ("_hi90", "_lo90", "_std")}
    )
    out = prediction_frame(pred, ["a", "b"])
    assert (
        list(out.columns)
        == output_columns(["a", "b"])
        == [f"{t}{s}" for t in ("a", "b") for s in OUTPUT_SUFFIXES]
    )
    assert (out.dtypes == np.float64).all()
    np.testing.assert_array_equal(out["b_pred"], [0.0, 1.0])


@pytest.mark.slow
def test_registered_model_loads_in_a_fresh_process(registered, tmp_path):
    ens, _, env, _ = registered
    script = f"""
import json, mlflow, pandas as pd
m = mlflow.pyfunc.load_model({MODEL_URI!r})
out = m.predict(pd.DataFrame({{"SMILES": {SMILES!r}, "id": range({len(SMILES)})}}))
sig = m.metadata.signature
try:
    m.predict(pd.DataFrame({{"smiles": ["CCO"]}}))
    err = None
except Exception as exc:
    err = str(exc)
print(json.dumps({{"columns": list(out.columns), "values": out.to_numpy().tolist(),
    "dtypes": sorted(set(map(str, out.dtypes))), "inputs": sig.inputs.input_names(),
    "outputs": sig.outputs.input_names(), "error": err,
    "code": m.metadata.flavors["python_function"].get("model_code_path")}}))
"""
    # logged as models from code: it loads with pickle deserialization switched off
    proc = _run(
        [sys.executable, "-c", script], {**env, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}, tmp_path
    )
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = prediction_frame(ens.predict(SMILES), TASKS)
    assert got["columns"] == list(expected.columns) == output_columns(TASKS)
    assert got["dtypes"] == ["float64"]
    np.testing.assert_allclose(np.array(got["values"]), expected.to_numpy(), rtol=0, atol=1e-6)
    assert got["inputs"] == ["SMILES"]
    assert got["outputs"] == output_columns(TASKS)
    assert got["error"] == "input has no SMILES column 'SMILES'"  # one line, no frame dump
    assert got["code"] is not None and got["code"].endswith("pyfunc_code.py")


@pytest.mark.slow
def test_mlflow_models_predict_cli(registered, tmp_path):
    ens, _, env, _ = registered
    pd.DataFrame({"SMILES": SMILES}).to_csv(tmp_path / "in.csv", index=False)
    mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
    args = [mlflow_cli, "models", "predict", "-m", MODEL_URI, "-i", "in.csv", "-t", "csv"]
    _run([*args, "--env-manager", "local", "-o", "out.json"], env, tmp_path)
    raw = json.loads((tmp_path / "out.json").read_text())
    got = pd.DataFrame(raw["predictions"] if isinstance(raw, dict) else raw)
    expected = prediction_frame(ens.predict(SMILES), TASKS)
    assert list(got.columns) == list(expected.columns)
    np.testing.assert_allclose(got.to_numpy(dtype=float), expected.to_numpy(), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_cli_pyfunc_and_python_api_predict_the_same_columns(registered, tmp_path, monkeypatch):
    """One vocabulary: ``python -m admet.model predict`` appends to its input exactly the
    columns the MLflow pyfunc model and ``ChempropEnsemble.predict`` return, with the same
    values (``<task>_pred``, ``_std``, ``_lo90``, ``_hi90`` per task)."""
    import mlflow

    ens, uri, env, _ = registered
    folder = ens.save(tmp_path / "model")
    pd.DataFrame({"SMILES": SMILES, "logP": [1.0, 2.0, 3.0, 4.0]}).to_csv(tmp_path / "in.csv", index=False)
    cli = [sys.executable, "-m", "admet.model", "predict", "--model", str(folder)]
    _run([*cli, "--input", "in.csv", "--output", "out.csv"], env, tmp_path)
    from_cli = pd.read_csv(tmp_path / "out.csv")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    from_pyfunc = mlflow.pyfunc.load_model(MODEL_URI).predict(pd.DataFrame({"SMILES": SMILES}))
    from_api = ens.predict(SMILES)
    columns = output_columns(TASKS)
    assert columns[:4] == ["logP_pred", "logP_std", "logP_lo90", "logP_hi90"]
    assert list(from_cli.columns) == ["SMILES", "logP", *columns]  # the label column kept apart
    assert list(from_pyfunc.columns) == list(from_api.columns) == columns
    for frame in (from_cli[columns], from_pyfunc):
        np.testing.assert_allclose(frame.to_numpy(dtype=float), from_api.to_numpy(), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_missing_smiles_column_is_a_one_line_error(registered):
    import mlflow

    from admet.errors import DataError
    from admet.model.pyfunc import AdmetPyfuncModel

    ens, uri, _, _ = registered
    model = AdmetPyfuncModel()
    model._model = ens
    with pytest.raises(
        DataError, match=r"^input has no SMILES column 'SMILES'; its columns are \['smiles'\]$"
    ):
        model.predict(None, pd.DataFrame({"smiles": ["CCO"]}))
    client = mlflow.MlflowClient(uri)
    version = client.get_model_version("admet-test", "1")
    assert version.run_id == ens.mlflow_run_id  # the pyfunc belongs to the ensemble's run
    artifacts = {a.path for a in client.list_artifacts(ens.mlflow_run_id)}
    assert "model" in artifacts  # the raw model folder is still logged


@pytest.mark.slow
def test_a_failed_pyfunc_logging_only_warns(registered, monkeypatch, caplog):
    from admet.model import pyfunc_logging as pyfunc
    from admet.tracking import RunTracker

    ens, uri, _, _ = registered

    def broken(*args, **kwargs):
        raise RuntimeError("artifact store down\nsecond line")

    monkeypatch.setattr(pyfunc, "log_pyfunc", broken)
    tracker = RunTracker(True, uri, "pyfunc-test")
    with caplog.at_level("WARNING", logger="admet.model.pyfunc_logging"):
        assert pyfunc.try_log_pyfunc(ens, tracker, ens.mlflow_run_id, "admet-test") is None
    assert "pyfunc model not logged" in caplog.text and "second line" not in caplog.text
    assert tracker.enabled  # the rest of the run is still tracked


@pytest.mark.slow
def test_a_single_model_fit_logs_its_pyfunc_too(synthetic_csv, tmp_path, monkeypatch):
    import mlflow

    from admet.data.training import holdout_split, load_training_data
    from admet.model.model import ChempropModel

    monkeypatch.setenv("ADMET_HOME", str(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    model = ChempropModel.from_config(
        {},
        tiny_overrides(
            synthetic_csv,
            optimization__max_epochs=1,
            mlflow__enabled=True,
            mlflow__tracking_uri=uri,
            mlflow__experiment_name="single",
            mlflow__registered_model_name="admet-single",
        ),
    )
    data = load_training_data(model.config)
    tr, va = holdout_split(data, 5, "random", 0)
    model.fit(data.subset(tr), data.subset(va))
    assert mlflow.MlflowClient(uri).get_run(model.mlflow_run_id).info.status == "FINISHED"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    loaded = mlflow.pyfunc.load_model("models:/admet-single/1")
    got = loaded.predict(pd.DataFrame({"SMILES": SMILES}))
    expected = prediction_frame(model.predict(SMILES), TASKS)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, atol=1e-6, rtol=0)
