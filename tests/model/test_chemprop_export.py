"""Chemprop interoperability: saved regression models are also Chemprop models.

``chemprop predict --model-paths DIR/chemprop/*.pt`` and ``MPNN.load_from_file`` give the
numbers ``python -m admet.model predict`` gives; the ``branched``/``moe`` heads are saved
without a Chemprop copy; ``python -m admet.hpo best --chemprop-config`` writes a TOML that
``chemprop train --config-path`` accepts.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from chemprop import data as cdata
from chemprop import nn as cnn
from chemprop.models import MPNN
from conftest import DRUGS

from admet.config import config_to_dict, load_config
from admet.data.training import holdout_split, load_training_data
from admet.model.chemprop_export import (
    NotExportableError,
    chemprop_train_config,
    save_chemprop,
    to_chemprop,
)
from admet.model.ensemble import ChempropEnsemble
from admet.model.model import ChempropModel

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
TASKS = ["a", "b"]
EXTRA = ["CCO", "CCN", "CCCl", "c1ccccc1O", "c1ccncc1", "CC(=O)O", "CCOC", "OCCO", "NCCN"]
# non-canonical spellings: Chemprop featurises them as given, we canonicalise first
TEST_SMILES = ["OCC", "C(C)(=O)Oc1ccccc1C(O)=O", "c1ccccc1CCN", "Clc1ccc(O)cc1", "CN1CCC[C@H]1c1cccnc1"]


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """21 molecules, task ``a`` dense and ``b`` sparse."""
    smiles = [*DRUGS.values(), *EXTRA]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "SMILES": smiles,
            "a": rng.normal(2.0, 1.5, len(smiles)),
            "b": [v if i % 3 else np.nan for i, v in enumerate(rng.normal(-1.0, 0.5, len(smiles)))],
        }
    )
    path = tmp_path_factory.mktemp("chemprop_export") / "train.csv"
    frame.to_csv(path, index=False)
    return path


def _overrides(csv: Path, **extra: object) -> list[str]:
    base = {
        "data.train_file": str(csv),
        "data.target_cols": "[a, b]",
        "data.split": "random",
        "model.depth": 2,
        "model.message_hidden_dim": 12,
        "model.hidden_dim": 8,
        "model.num_layers": 1,
        "optimization.max_epochs": 2,
        "optimization.batch_size": 8,
        "optimization.warmup_epochs": 1,
        "joint_sampling.enabled": False,
        "mlflow.enabled": False,
    }
    base.update({k.replace("__", "."): v for k, v in extra.items()})
    return [f"{k}={v}" for k, v in base.items()]


def _single(csv: Path, **extra: object) -> ChempropModel:
    model = ChempropModel.from_config({}, _overrides(csv, **extra))
    data = load_training_data(model.config)
    tr, va = holdout_split(data, 4, "random", 0)
    return model.fit(data.subset(tr), data.subset(va))


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ADMET_HOME": str(cwd), "OMP_NUM_THREADS": "1"}
    env.pop("ADMET_HPO_STORAGE", None)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-6000:], sep="\n")
    return proc


def _chemprop_predict(mpnn: MPNN, smiles: list[str]) -> np.ndarray:
    """Chemprop's own inference path: its datapoints, featurizer and collate."""
    points = [cdata.MoleculeDatapoint.from_smi(s) for s in smiles]
    loader = cdata.build_dataloader(cdata.MoleculeDataset(points), shuffle=False, batch_size=64)
    out = []
    with torch.inference_mode():
        for batch in loader:
            out.append(mpnn(batch.bmg, batch.V_d, batch.X_d))
    return torch.cat(out).double().numpy()


# -- ensemble through both CLIs ---------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_ensemble(table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ens = ChempropEnsemble.from_config(
        {"ensemble": {"n_members": 2, "split": "random"}},
        _overrides(table, model__batch_norm=True),
    )
    return ens.fit().save(tmp_path_factory.mktemp("ens") / "model")


def _best(storage: str, toml_path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``hpo best`` writing the Chemprop config and the run config of the best trial."""
    args = ["--storage", storage, "--quiet", "--chemprop-config", str(toml_path)]
    args += ["--export", str(tmp_path / "best.yaml")]
    return _run([sys.executable, "-m", "admet.hpo", "best", *args], tmp_path)


def test_chemprop_predict_cli_matches_admet_predict(saved_ensemble: Path, tmp_path: Path):
    assert sorted(p.name for p in (saved_ensemble / "chemprop").iterdir()) == ["member_0.pt", "member_1.pt"]
    test_csv = tmp_path / "test.csv"
    pd.DataFrame({"SMILES": TEST_SMILES}).to_csv(test_csv, index=False)

    ours = _run(
        [
            sys.executable,
            "-m",
            "admet.model",
            "predict",
            "--model",
            str(saved_ensemble),
            "--quiet",
            "--input",
            str(test_csv),
            "--output",
            str(tmp_path / "ours.csv"),
        ],
        tmp_path,
    )
    assert ours.returncode == 0
    theirs = _run(
        [
            str(BIN / "chemprop"),
            "predict",
            "-i",
            str(test_csv),
            "-s",
            "SMILES",
            "--accelerator",
            "cpu",
            "--model-paths",
            *(str(saved_ensemble / "chemprop" / f"member_{k}.pt") for k in (0, 1)),
            "--preds-path",
            str(tmp_path / "out.csv"),
        ],
        tmp_path,
    )
    assert theirs.returncode == 0
    a = pd.read_csv(tmp_path / "ours.csv")[[f"{t}_pred" for t in TASKS]].to_numpy()
    b = pd.read_csv(tmp_path / "out.csv")
    assert list(b["SMILES"]) == TEST_SMILES
    np.testing.assert_allclose(b[TASKS].to_numpy(), a, rtol=0, atol=1e-5)
    # the members really differ (the mean is not one member twice)
    members = [MPNN.load_from_file(saved_ensemble / "chemprop" / f"member_{k}.pt").eval() for k in (0, 1)]
    p0, p1 = (_chemprop_predict(m, TEST_SMILES) for m in members)
    assert np.abs(p0 - p1).max() > 1e-4
    np.testing.assert_allclose((p0 + p1) / 2, a, rtol=0, atol=1e-5)


def test_saved_file_is_plain_chemprop(saved_ensemble: Path):
    path = saved_ensemble / "chemprop" / "member_0.pt"
    with zipfile.ZipFile(path) as z:
        pickled = b"".join(z.read(n) for n in z.namelist() if n.endswith(".pkl"))
    assert b"admet" not in pickled  # loads where this package is not installed
    mpnn = MPNN.load_from_file(path)
    assert type(mpnn) is MPNN
    assert type(mpnn.message_passing) is cnn.BondMessagePassing
    assert type(mpnn.agg) is cnn.MeanAggregation
    assert type(mpnn.predictor) is cnn.RegressionFFN
    assert isinstance(mpnn.bn, torch.nn.BatchNorm1d)
    assert isinstance(mpnn.predictor.output_transform, cnn.UnscaleTransform)
    assert type(mpnn.criterion) is cnn.metrics.MAE
    from chemprop.models.utils import load_output_columns

    assert load_output_columns(path) == TASKS
    # the ensemble's own member folders still load as before
    loaded = ChempropEnsemble.load(saved_ensemble)
    np.testing.assert_allclose(
        _chemprop_predict(mpnn.eval(), TEST_SMILES), loaded.members[0].predict_array(TEST_SMILES), atol=1e-5
    )


# -- single models: every aggregation, batch norm, task weights -------------------------------


@pytest.mark.parametrize(
    "aggregation, batch_norm, extra",
    [
        ("mean", False, {}),
        ("sum", True, {"optimization__criterion": "mse"}),
        ("norm", False, {"optimization__task_weights": "[1.0, 3.0]", "model__depth": 1}),
    ],
)
def test_single_model_round_trip(table: Path, tmp_path: Path, aggregation, batch_norm, extra):
    model = _single(table, model__aggregation=aggregation, model__batch_norm=batch_norm, **extra)
    folder = model.save(tmp_path / "model")
    path = folder / "chemprop" / "model.pt"
    assert path.is_file()
    mpnn = MPNN.load_from_file(path).eval()
    expected = {"mean": cnn.MeanAggregation, "sum": cnn.SumAggregation, "norm": cnn.NormAggregation}
    assert type(mpnn.agg) is expected[aggregation]
    assert isinstance(mpnn.bn, torch.nn.BatchNorm1d) == batch_norm
    assert mpnn.message_passing.depth == model.config.model.depth
    weights = model.config.optimization.task_weights or [1.0, 1.0]
    np.testing.assert_allclose(mpnn.criterion.task_weights.flatten().numpy(), weights)
    ours = model.predict_array(TEST_SMILES)
    np.testing.assert_allclose(_chemprop_predict(mpnn, TEST_SMILES), ours, rtol=0, atol=1e-5)
    np.testing.assert_allclose(_chemprop_predict(to_chemprop(model), TEST_SMILES), ours, rtol=0, atol=1e-5)
    # and again after our own load of the folder
    again = ChempropModel.load(folder)
    assert save_chemprop(again, tmp_path / "again.pt").is_file()
    np.testing.assert_allclose(
        _chemprop_predict(MPNN.load_from_file(tmp_path / "again.pt").eval(), TEST_SMILES), ours, atol=1e-5
    )


# -- heads Chemprop cannot express ------------------------------------------------------------


@pytest.mark.parametrize("head", ["branched", "moe"])
def test_non_regression_head_saves_without_chemprop_copy(table: Path, tmp_path: Path, head, caplog):
    extra = {"model__trunk_hidden_dim": 8} if head == "branched" else {"model__n_experts": 2}
    model = _single(table, model__ffn_type=head, optimization__max_epochs=1, **extra)
    with caplog.at_level(logging.INFO, logger="admet.model.persistence"):
        folder = model.save(tmp_path / "model")
    assert (folder / "weights.pt").is_file() and not (folder / "chemprop").exists()
    lines = [r.getMessage() for r in caplog.records if "Chemprop" in r.getMessage()]
    assert len(lines) == 1 and "model.ffn_type" in lines[0]
    ChempropModel.load(folder)  # the folder is complete
    with pytest.raises(NotExportableError, match=f"model.ffn_type='{head}'") as err:
        to_chemprop(model)
    assert "\n" not in str(err.value)
    with pytest.raises(NotExportableError, match=r"model\.ffn_type"):
        chemprop_train_config(model.config)


# -- python -m admet.hpo best --chemprop-config -----------------------------------------------


def _study(tmp_path: Path, table: Path, **extra: object) -> str:
    """A SQLite study named like ``studies/joint_sampling.yaml`` with one finished trial that
    stores its run config as the HPO objective does."""
    import optuna

    cfg = load_config({"ensemble": {"n_members": 2, "split": "random"}}, _overrides(table, **extra))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="joint_sampling", storage=storage, direction="minimize")
    params = {"model.depth": cfg.model.depth, "model.dropout": cfg.model.dropout}
    dists = {
        "model.depth": optuna.distributions.IntDistribution(1, 3),
        "model.dropout": optuna.distributions.FloatDistribution(0.0, 0.5),
    }
    trial = optuna.trial.create_trial(
        params=params, distributions=dists, value=0.5, user_attrs={"config": config_to_dict(cfg)}
    )
    study.add_trial(trial)
    return storage


def test_best_chemprop_config_is_accepted_by_chemprop_train(table: Path, tmp_path: Path):
    storage = _study(
        tmp_path,
        table,
        model__aggregation="norm",
        model__batch_norm=True,
        model__dropout=0.1,
        optimization__task_weights="[1.0, 2.0]",
        optimization__batch_size=4,  # with batch norm Chemprop drops incomplete validation batches
        joint_sampling__enabled=True,
        joint_sampling__task_oversampling__alpha=0.3,
    )
    toml_path = tmp_path / "best.toml"
    best = _best(storage, toml_path, tmp_path)
    assert best.returncode == 0
    text = toml_path.read_text()
    values = tomllib.loads(text)
    assert values["depth"] == [2] and values["message-hidden-dim"] == [12]
    assert values["ffn-hidden-dim"] == [8] and values["ffn-num-layers"] == 1
    assert values["aggregation"] == "norm" and values["batch-norm"] is True
    assert values["dropout"] == pytest.approx(0.1) and values["task-weights"] == [1.0, 2.0]
    assert values["loss-function"] == "mae" and values["target-columns"] == TASKS
    assert "alpha=0.3" in text and "curriculum" in text and "val/mae_macro" in text

    out = tmp_path / "chemprop_out"
    train = _run(
        [
            str(BIN / "chemprop"),
            "train",
            "--config-path",
            str(toml_path),
            "-i",
            str(table),
            "-o",
            str(out),
            "--epochs",
            "1",
            "--warmup-epochs",
            "0",
            "--split-sizes",
            "0.6",
            "0.2",
            "0.2",
            "--accelerator",
            "cpu",
        ],
        tmp_path,
    )
    assert train.returncode == 0
    models = list(out.rglob("best*.pt"))
    assert models, sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    mpnn = MPNN.load_from_file(models[0])
    assert type(mpnn.agg) is cnn.NormAggregation and isinstance(mpnn.bn, torch.nn.BatchNorm1d)
    assert mpnn.message_passing.depth == 2 and mpnn.message_passing.W_h.out_features == 12
    np.testing.assert_allclose(mpnn.criterion.task_weights.flatten().numpy(), [1.0, 2.0])


def test_best_chemprop_config_refuses_moe_in_one_line(table: Path, tmp_path: Path):
    storage = _study(tmp_path, table, model__ffn_type="moe")
    toml_path = tmp_path / "best.toml"
    proc = _best(storage, toml_path, tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")
    assert "model.ffn_type='moe'" in proc.stderr
    assert not toml_path.exists() and not (tmp_path / "best.yaml").exists()
