"""Stacked members: one step of M members at once is M separate steps of the single-member
model (its fused message-passing node, its loss and its fused Adam step)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import DRUGS, tiny_overrides

from admet.data import default_cache
from admet.data.packed import LabelledBatch, PackedGraphs, PackedMoleculeDataset
from admet.model import ChempropModel
from admet.model.fused_adam import FusedAdamStep
from admet.model.stacked import StackedAdam, StackedGraphs, StackedMembers

SMILES = [*DRUGS.values(), "C", "CCO", "c1ccccc1", "CC(=O)N", "OCCN", "C1CCCCC1O", "[Na+].[Cl-]"]


def _members(synthetic_csv, M: int, **extra) -> list:
    """M tiny members of one architecture, each with its own initial weights and scaler."""
    rng = np.random.default_rng(0)
    out = []
    for m in range(M):
        overrides = tiny_overrides(synthetic_csv, model__dropout=0.0, **extra)
        model = ChempropModel.from_config({}, overrides)
        torch.manual_seed(100 + m)
        mean, scale = rng.normal(size=3), rng.uniform(0.5, 2.0, size=3)
        out.append(model._build_mpnn(mean, scale))
    return out


def _targets() -> np.ndarray:
    rng = np.random.default_rng(1)
    Y = rng.normal(size=(len(SMILES), 3)).astype(np.float32)
    Y[rng.random(Y.shape) < 0.3] = np.nan  # missing labels
    return Y


@pytest.mark.parametrize(
    ("extra", "sizes"),
    [
        ({}, [5, 5, 5]),
        ({"model__batch_norm": True, "model__aggregation": "mean"}, [6, 4, 5, 6]),
        ({"model__ffn_type": "branched", "model__depth": 3, "model__aggregation": "norm"}, [5, 3]),
        ({"model__ffn_type": "moe", "model__n_experts": 2, "optimization__criterion": "mse"}, [4, 6]),
    ],
)
def test_one_stacked_step_equals_separate_steps(synthetic_csv, extra, sizes):
    M = len(sizes)
    mpnns = _members(synthetic_csv, M, **extra)
    separate = [copy.deepcopy(m) for m in mpnns]
    graphs = PackedGraphs.from_graphs(default_cache().graphs(SMILES))
    Y = _targets()
    rng = np.random.default_rng(2)
    sets = [rng.choice(len(SMILES), size=s, replace=False) for s in sizes]
    lrs = [1e-3 * (m + 1) for m in range(M)]

    # separate: each member's own training step (fused message passing, fused Adam)
    for m, mpnn in enumerate(separate):
        mpnn.train()
        mean = mpnn.predictor.output_transform.mean.numpy()
        scale = mpnn.predictor.output_transform.scale.numpy()
        batch = PackedMoleculeDataset(graphs, (Y - mean) / scale)[torch.as_tensor(sets[m])]
        assert isinstance(batch, LabelledBatch)
        mpnn.on_train_epoch_start()
        loss = mpnn._loss(batch)
        assert "_ReluBondMessagePassing" in repr(_graph_nodes(loss))
        loss.backward()
        opt = torch.optim.Adam(mpnn.parameters(), lrs[m], fused=True)
        step = FusedAdamStep(opt)
        step()

    # stacked: the same batches, one forward, one backward, one optimiser call per lr
    stack = StackedMembers(mpnns)
    data = StackedGraphs(graphs, Y)
    batch = data.batch(sets)
    scale = torch.stack([m.predictor.output_transform.scale for m in mpnns])  # (M, 1, T)
    mean = torch.stack([m.predictor.output_transform.mean for m in mpnns])
    targets = (batch.Y - mean) / scale
    mask = targets.isfinite()
    preds = stack.predict_scaled(batch)
    assert preds.shape == (M, max(sizes) + 1, 3)
    total, count = stack.losses(preds, targets.nan_to_num(0.0), mask)
    assert count.tolist() == [int(np.isfinite(Y[s]).sum()) for s in sets]
    adam = StackedAdam(stack.params)
    adam.zero_grad()
    (total / count).sum().backward()
    adam.step(lrs)

    for m, mpnn in enumerate(separate):
        state = stack.state_dict(m)
        grads = {k: v.grad[m] for k, v in stack.params.items()}
        for name, p in mpnn.named_parameters():
            g = p.grad
            noise = 1e-5 * float(g.abs().max())
            torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=noise, msg=f"member {m}: {name}")
            # Adam's first step moves every weight by about lr * sign(gradient): where a
            # gradient is at float rounding level (a bias before batch norm has gradient 0
            # in exact arithmetic) its sign is noise, so those weights are not compared
            signal = g.abs() > 100 * noise
            torch.testing.assert_close(state[name][signal], p.detach()[signal], rtol=1e-5, atol=1e-6)
        for name, buffer in mpnn.named_buffers():  # batch norm's running statistics
            torch.testing.assert_close(state[name].to(buffer.dtype), buffer, rtol=1e-5, atol=1e-6)
        # the step moved the weights (the comparison is not of untouched copies)
        initial = mpnns[m].state_dict()["message_passing.W_i.weight"]
        assert not torch.equal(state["message_passing.W_i.weight"], initial)


def _graph_nodes(t: torch.Tensor) -> list[str]:
    names, todo, seen = [], [t.grad_fn], set()
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.append(fn.name())
        todo.extend(f for f, _ in fn.next_functions)
    return names


def test_padding_adds_nothing(synthetic_csv):
    """A member's predictions do not depend on which other members share its stack."""
    mpnns = _members(synthetic_csv, 2)
    graphs = PackedGraphs.from_graphs(default_cache().graphs(SMILES))
    data = StackedGraphs(graphs)
    stack = StackedMembers(mpnns)
    stack.training = False
    with torch.no_grad():
        alone = StackedMembers(mpnns[:1])
        alone.training = False
        a = alone.predict_scaled(data.batch([np.arange(3)]))[0, :3]
        b = stack.predict_scaled(data.batch([np.arange(3), np.arange(len(SMILES))]))[0, :3]
        mpnns[0].eval()
        direct = mpnns[0].predictor.ffn(mpnns[0].fingerprint(graphs.batch(np.arange(3))))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a, direct, rtol=1e-5, atol=1e-6)


def test_dropping_a_member_keeps_the_others(synthetic_csv):
    mpnns = _members(synthetic_csv, 3)
    stack = StackedMembers(mpnns)
    before = stack.state_dict(2)
    adam = StackedAdam(stack.params)
    stack.keep([0, 2])
    adam.bind(stack.params, keep=[0, 2])
    assert stack.members == [0, 2]
    for name, value in stack.state_dict(1).items():
        torch.testing.assert_close(value, before[name])
    assert len(adam.steps) == 2 and adam.params[0].shape[0] == 2
