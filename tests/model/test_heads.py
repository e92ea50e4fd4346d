"""Prediction heads (model.ffn_type): branched FFN and mixture of experts, alone and in a
real (tiny) ChempropModel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from chemprop import nn as cnn
from chemprop.data import MoleculeDatapoint, MoleculeDataset, collate_batch
from conftest import tiny_overrides

import admet.model
from admet.config import ModelConfig, load_config
from admet.data.training import holdout_split, load_training_data
from admet.model.heads import BranchedFFN, MixtureOfExpertsFFN, build_predictor
from admet.model.model import ChempropModel

N_TASKS, INPUT_DIM = 3, 12
MEAN = np.array([1.0, -2.0, 3.0])
SCALE = np.array([2.0, 0.5, 4.0])


def _cfg(ffn_type: str) -> ModelConfig:
    return ModelConfig(
        ffn_type=ffn_type, hidden_dim=8, num_layers=2, trunk_hidden_dim=16, trunk_n_layers=2, n_experts=3
    )


def _head(ffn_type: str, output_transform=None) -> cnn.RegressionFFN:
    torch.manual_seed(0)
    return build_predictor(_cfg(ffn_type), N_TASKS, INPUT_DIM, output_transform=output_transform)


def _Z(n: int = 5) -> torch.Tensor:
    return torch.randn(n, INPUT_DIM, generator=torch.Generator().manual_seed(1))


def test_build_predictor_picks_the_configured_head():
    assert type(_head("regression")) is cnn.RegressionFFN
    assert type(_head("branched")) is BranchedFFN
    assert type(_head("moe")) is MixtureOfExpertsFFN
    assert admet.model.BranchedFFN is BranchedFFN
    assert admet.model.MixtureOfExpertsFFN is MixtureOfExpertsFFN


@pytest.mark.parametrize("ffn_type", ["branched", "moe"])
def test_output_shape_and_chemprop_dimensions(ffn_type):
    head = _head(ffn_type)
    assert (head.input_dim, head.output_dim, head.n_tasks) == (INPUT_DIM, N_TASKS, N_TASKS)
    assert head(_Z(5)).shape == (5, N_TASKS)
    assert head.train_step(_Z(7)).shape == (7, N_TASKS)


@pytest.mark.parametrize("ffn_type", ["regression", "branched", "moe"])
def test_eval_mode_unscales_and_training_mode_does_not(ffn_type):
    head = _head(ffn_type, output_transform=cnn.UnscaleTransform(MEAN, SCALE))
    Z = _Z()
    head.eval()
    with torch.no_grad():
        raw = head.ffn(Z)
        expected = raw * torch.tensor(SCALE, dtype=torch.float) + torch.tensor(MEAN, dtype=torch.float)
        torch.testing.assert_close(head(Z), expected)
        assert not torch.allclose(head(Z), raw)
        head.train()
        torch.testing.assert_close(head.train_step(Z), raw)


def test_branched_task_output_depends_only_on_its_own_head():
    head = _head("branched").eval()
    Z = _Z()
    with torch.no_grad():
        before = head(Z)
        last = head.ffn.heads[1][-1][-1]
        assert isinstance(last, torch.nn.Linear) and last.out_features == 1
        last.weight.zero_()
        last.bias.zero_()
        after = head(Z)
    assert not torch.allclose(before[:, 1], after[:, 1])
    torch.testing.assert_close(after[:, 1], torch.zeros(len(Z)))
    torch.testing.assert_close(after[:, [0, 2]], before[:, [0, 2]], rtol=0, atol=0)


def test_branched_trunk_has_configured_layers():
    head = _head("branched")
    linears = [m for m in head.ffn.trunk.modules() if isinstance(m, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(INPUT_DIM, 16), (16, 16)]
    assert len(head.ffn.heads) == N_TASKS
    assert head.encode(_Z(), -1).shape == (5, 16)


def test_moe_gate_is_a_distribution_and_mixes_the_experts():
    head = _head("moe").eval()
    Z = _Z()
    with torch.no_grad():
        gate = head.gate_weights(Z)
        assert gate.shape == (5, 3)
        assert (gate > 0).all()
        torch.testing.assert_close(gate.sum(dim=1), torch.ones(5))
        mixed = sum(gate[:, [e]] * expert(Z) for e, expert in enumerate(head.ffn.experts))
        torch.testing.assert_close(head(Z), mixed)
        # the experts differ, so the gate matters
        assert not torch.allclose(head.ffn.experts[0](Z), head.ffn.experts[1](Z))


# -- in a ChempropModel -----------------------------------------------------------------


def _overrides(csv, ffn_type: str, **extra) -> list[str]:
    return tiny_overrides(
        csv,
        model__ffn_type=ffn_type,
        model__n_experts=3,
        model__trunk_n_layers=2,
        model__trunk_hidden_dim=16,
        **extra,
    )


@pytest.mark.parametrize("ffn_type", ["regression", "branched", "moe"])
def test_masked_loss_ignores_nan_labels(synthetic_csv, ffn_type):
    model = ChempropModel(load_config({}, _overrides(synthetic_csv, ffn_type)))
    torch.manual_seed(0)
    mpnn = model._build_mpnn(np.zeros(N_TASKS), np.ones(N_TASKS))
    featurizer = model.cache.featurizer
    rows = [
        ("CCO", [0.5, 1.0, np.nan]),
        ("CCN", [np.nan, 2.0, 0.3]),
        ("c1ccccc1O", [1.5, np.nan, np.nan]),
    ]

    def loss(rows) -> float:
        points = [MoleculeDatapoint.from_smi(s, np.array(y, dtype=float)) for s, y in rows]
        batch = collate_batch(MoleculeDataset(points, featurizer))
        mpnn.on_train_epoch_start()
        with torch.no_grad():
            return float(mpnn._loss(batch))

    base = loss(rows)
    assert np.isfinite(base)
    # a molecule without labels changes nothing
    assert loss([*rows, ("CC(=O)O", [np.nan] * 3)]) == pytest.approx(base, rel=1e-6)
    # ... while one with a label does (the check above can fail)
    assert loss([*rows, ("CC(=O)O", [np.nan, np.nan, 50.0])]) != pytest.approx(base, rel=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("ffn_type", ["branched", "moe"])
def test_model_with_head_trains_saves_and_loads(synthetic_csv, tmp_path, ffn_type):
    config = load_config({}, _overrides(synthetic_csv, ffn_type, optimization__max_epochs=1))
    model = ChempropModel(config)
    data = load_training_data(model.config)
    tr, va = holdout_split(data, 5, "random", 0)
    train, val = data.subset(tr), data.subset(va)
    model.fit(train, val)
    expected_cls = {"branched": BranchedFFN, "moe": MixtureOfExpertsFFN}[ffn_type]
    assert type(model.mpnn.predictor) is expected_cls
    assert model.epochs_trained == 1 and np.isfinite(model.best_score)
    preds = model.predict_array(val.smiles)
    assert preds.shape == (len(val.smiles), N_TASKS) and np.isfinite(preds).all()

    model.save(tmp_path / "m")
    loaded = ChempropModel.load(tmp_path / "m")
    assert type(loaded.mpnn.predictor) is expected_cls
    assert loaded.config.model.ffn_type == ffn_type
    np.testing.assert_allclose(loaded.predict_array(val.smiles), preds, rtol=1e-6, atol=1e-6)
    # the saved output transform (training-split scaling) is restored, not the (0, 1) default
    torch.testing.assert_close(
        loaded.mpnn.predictor.output_transform.mean, model.mpnn.predictor.output_transform.mean
    )
    assert not torch.all(loaded.mpnn.predictor.output_transform.mean == 0)
