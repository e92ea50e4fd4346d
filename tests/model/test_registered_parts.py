"""Adding a part is one class and its registration: a head and a batch sampler registered
in this test (and nowhere else) are accepted by the config loader, built by the model
(single and stacked fits), offered by a study's ``choices: registered`` and mapped to
Chemprop by the export, or refused there with a one-line message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from chemprop import data as cdata
from chemprop import nn as cnn
from conftest import DRUGS

from admet.config import load_config
from admet.config.registry import HEADS, SAMPLERS
from admet.data import MultitaskDataset
from admet.data.training import holdout_split, load_training_data
from admet.errors import ConfigError
from admet.hpo.spec import load_study_spec
from admet.model.chemprop_export import NotExportableError, chemprop_train_config, to_chemprop
from admet.model.ensemble import ChempropEnsemble
from admet.model.heads import build_predictor
from admet.model.model import ChempropModel
from admet.sampling import JointSampler

pytestmark = pytest.mark.slow

EXTRA = ["CCO", "CCN", "CCCl", "c1ccccc1O", "c1ccncc1", "CC(=O)O", "CCOC", "OCCO", "NCCN"]


class LinearHead(cnn.RegressionFFN):
    """A head with no hidden layer: one linear map from the embedding to the tasks."""

    def __init__(
        self,
        n_tasks: int = 1,
        input_dim: int = 300,
        criterion=None,  # type: ignore[no-untyped-def]
        output_transform: cnn.UnscaleTransform | None = None,
    ) -> None:
        super().__init__(
            n_tasks, input_dim, n_layers=0, criterion=criterion, output_transform=output_transform
        )


class PlainHead(cnn.RegressionFFN):
    """Chemprop's FFN under a class of our own: its weights are a Chemprop ``regression`` head's."""


class UniformTaskSampler(JointSampler):
    """Joint sampling without task oversampling (alpha 0), built from the model and its
    training set as a sampler builder is called."""

    def __init__(self, model: ChempropModel, train: MultitaskDataset) -> None:
        super().__init__(
            train.Y,
            task_alpha=0.0,
            seed=model.config.optimization.seed,
            log_weight_stats=False,
            task_names=model.task_names,
        )


@pytest.fixture
def parts() -> Iterator[None]:
    HEADS.register("linear", aliases=("linear_v0",))(LinearHead)
    HEADS.register("plain", chemprop="regression")(PlainHead)
    SAMPLERS.register("uniform_tasks")(UniformTaskSampler)
    yield
    HEADS.unregister("linear")
    HEADS.unregister("plain")
    SAMPLERS.unregister("uniform_tasks")


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    smiles = [*DRUGS.values(), *EXTRA]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "SMILES": smiles,
            "a": rng.normal(2.0, 1.5, len(smiles)),
            "b": [v if i % 3 else np.nan for i, v in enumerate(rng.normal(-1.0, 0.5, len(smiles)))],
        }
    )
    path = tmp_path_factory.mktemp("registered") / "train.csv"
    frame.to_csv(path, index=False)
    return path


def _overrides(csv: Path, *extra: str) -> list[str]:
    return [
        f"data.train_file={csv}",
        "data.target_cols=[a, b]",
        "data.split=random",
        "model.depth=2",
        "model.message_hidden_dim=12",
        "model.hidden_dim=8",
        "model.num_layers=1",
        "optimization.max_epochs=1",
        "optimization.batch_size=8",
        "optimization.warmup_epochs=0",
        "mlflow.enabled=false",
        *extra,
    ]


def _single(csv: Path, *extra: str) -> ChempropModel:
    model = ChempropModel.from_config({}, _overrides(csv, *extra))
    data = load_training_data(model.config)
    tr, va = holdout_split(data, 4, "random", 0)
    return model.fit(data.subset(tr), data.subset(va))


def _study(tmp_path: Path, space: str, base: str = "{ensemble: {n_members: 2}}") -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\nbase_config: {base}\nsearch_space:\n{space}")
    return path


def test_a_registered_head_is_loaded_built_trained_and_refused_by_the_export(parts, table: Path):
    cfg = load_config({}, ["model.ffn_type=LINEAR_V0"])  # the alias declared with the registration
    assert cfg.model.ffn_type == "linear"
    head = build_predictor(cfg.model, n_tasks=2, input_dim=16)
    assert type(head) is LinearHead and head(torch.zeros(3, 16)).shape == (3, 2)

    model = _single(table, "model.ffn_type=linear")
    assert type(model.mpnn.predictor) is LinearHead
    assert model.predict_array(["CCO", "CCN"]).shape == (2, 2)
    with pytest.raises(NotExportableError) as err:
        to_chemprop(model)
    assert str(err.value) == (
        "model.ffn_type='linear' cannot be expressed in Chemprop "
        "(only 'regression', 'plain' heads can be exported)"
    )
    with pytest.raises(NotExportableError, match=r"model\.ffn_type='linear'"):
        chemprop_train_config(model.config)
    toml = chemprop_train_config(model.config, substitute_head=True)
    assert "#   substituted: model.ffn_type='linear' (a head of 1 x 8)" in toml


def test_a_head_registered_with_a_chemprop_counterpart_exports(parts, table: Path):
    model = _single(table, "model.ffn_type=plain")
    assert type(model.mpnn.predictor) is PlainHead
    mpnn = to_chemprop(model)
    assert type(mpnn.predictor) is cnn.RegressionFFN
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]
    points = [cdata.MoleculeDatapoint.from_smi(s) for s in smiles]
    batch = next(iter(cdata.build_dataloader(cdata.MoleculeDataset(points), shuffle=False, batch_size=8)))
    with torch.inference_mode():
        theirs = mpnn(batch.bmg).double().numpy()
    np.testing.assert_allclose(theirs, model.predict_array(smiles), rtol=0, atol=1e-5)
    assert 'aggregation = "mean"' in chemprop_train_config(model.config)


def test_the_study_offers_registered_parts_and_checks_listed_ones(parts, tmp_path: Path):
    spec = load_study_spec(
        str(
            _study(
                tmp_path,
                "  model.ffn_type: {type: categorical, choices: registered}\n"
                "  joint_sampling.sampler: {type: categorical, choices: registered}\n"
                "  model.aggregation: {type: categorical, choices: [mean, norm]}\n",
            )
        )
    )
    assert spec.search_space["model.ffn_type"].choices == ("regression", "branched", "moe", "linear", "plain")
    assert spec.search_space["joint_sampling.sampler"].choices == ("shuffle", "joint", "uniform_tasks")
    listed = load_study_spec(
        str(_study(tmp_path, "  model.ffn_type: {type: categorical, choices: [linear_v0, mlp]}\n"))
    )
    assert listed.search_space["model.ffn_type"].choices == ("linear", "regression")
    with pytest.raises(ConfigError, match=r"search_space\.model\.ffn_type: model\.ffn_type must be one of"):
        load_study_spec(
            str(_study(tmp_path, "  model.ffn_type: {type: categorical, choices: [linear, nope]}\n"))
        )
    with pytest.raises(ConfigError, match=r"search_space\.model\.depth: 'choices: registered' needs a key"):
        load_study_spec(str(_study(tmp_path, "  model.depth: {type: categorical, choices: registered}\n")))


def test_a_registered_sampler_drives_single_and_stacked_fits(parts, table: Path, monkeypatch):
    model = _single(table, "joint_sampling.sampler=uniform_tasks")
    data = load_training_data(model.config)
    assert isinstance(model.build_sampler(data), UniformTaskSampler)
    assert len(model.sampler_history) == 1  # its statistics were recorded each epoch
    toml = chemprop_train_config(model.config)
    assert "#   batch sampler joint_sampling.sampler='uniform_tasks': Chemprop shuffles uniformly" in toml

    import admet.model.ensemble as ensemble_module

    stacked_calls = []
    fit_stacked = ensemble_module.fit_stacked
    monkeypatch.setattr(
        ensemble_module, "fit_stacked", lambda *a, **k: stacked_calls.append(1) or fit_stacked(*a, **k)
    )
    ens = ChempropEnsemble.from_config(
        {"ensemble": {"n_members": 2, "split": "random"}},
        _overrides(table, "joint_sampling.sampler=uniform_tasks"),
    ).fit()
    assert stacked_calls == [1]  # the members trained together, each on its own sampler
    assert [len(m.sampler_history) for m in ens.members] == [1, 1]
