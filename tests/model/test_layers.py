"""The scatter-free message passing and aggregations compute what Chemprop's own modules
compute, with the same parameters; grouped optimiser steps train exactly like one step per
loader item."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from chemprop import nn as cnn
from conftest import DRUGS, tiny_overrides

from admet.data import default_cache, holdout_split, load_training_data
from admet.data.packed import PackedGraphs
from admet.model import ChempropModel
from admet.model import layers as fast
from admet.model import model as model_module


@pytest.fixture(scope="module")
def bmg():
    smiles = [*DRUGS.values(), "C", "[Na+].[Cl-]"]
    packed = PackedGraphs.from_graphs(default_cache().graphs(smiles))
    return packed.batch(torch.arange(len(smiles)))


@pytest.mark.parametrize(
    ("undirected", "bias", "dropout", "depth"),
    [
        (False, False, 0.0, 4),
        (False, True, 0.0, 3),
        (False, False, 0.3, 3),
        (False, True, 0.2, 1),
        (True, False, 0.0, 4),
    ],
)
def test_bond_message_passing_matches_chemprop(bmg, undirected, bias, dropout, depth):
    fdim = default_cache().featurizer
    kw = dict(d_v=fdim.atom_fdim, d_e=fdim.bond_fdim, d_h=24, depth=depth, undirected=undirected)
    kw.update(bias=bias, dropout=dropout)
    torch.manual_seed(0)
    ref = cnn.BondMessagePassing(**kw)
    ours = fast.BondMessagePassing(**kw)
    ours.load_state_dict(ref.state_dict())  # same parameters, same names
    torch.manual_seed(1)  # the same dropout masks, drawn in the same order
    out_ref = ref(bmg)
    torch.manual_seed(1)
    out = ours(bmg)
    # the written-out forward and backward pass where it applies, autograd elsewhere
    assert ("_ReluBondMessagePassing" in out.grad_fn.name()) is not undirected
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-6)
    out_ref.square().sum().backward()
    out.square().sum().backward()
    for (name, p_ref), p in zip(ref.named_parameters(), ours.parameters(), strict=True):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
def test_written_out_backward_pass_is_the_gradient(bmg):
    """Finite differences in float64 agree with the backward pass of every weight."""
    fdim = default_cache().featurizer
    layer = fast.BondMessagePassing(d_v=fdim.atom_fdim, d_e=fdim.bond_fdim, d_h=5, depth=3, bias=True)
    weights = [p.detach().double().requires_grad_() for p in (layer.W_i.weight, layer.W_i.bias)]
    weights += [p.detach().double().requires_grad_() for p in (layer.W_h.weight, layer.W_h.bias)]
    weights += [p.detach().double().requires_grad_() for p in (layer.W_o.weight, layer.W_o.bias)]
    V, E = bmg.V.double(), bmg.E.double()

    def run(*w):
        return fast._ReluBondMessagePassing.apply(V, E, bmg.edge_index, bmg.rev_edge_index, 3, 0.0, *w)

    assert torch.autograd.gradcheck(run, weights, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", ["mean", "sum", "norm"])
def test_aggregations_match_chemprop(bmg, name):
    H = torch.randn(len(bmg.V), 7, generator=torch.Generator().manual_seed(1))
    ref = {"mean": cnn.MeanAggregation, "sum": cnn.SumAggregation, "norm": cnn.NormAggregation}[name]()
    ours = fast.AGGREGATIONS[name]()
    torch.testing.assert_close(ours(H, bmg.batch, len(bmg)), ref(H, bmg.batch))
    torch.testing.assert_close(ours(H, bmg.batch), ref(H, bmg.batch))
    # and the gradient (mean: its own autograd node)
    G = torch.randn(len(bmg), 7, generator=torch.Generator().manual_seed(2))
    H_ours, H_ref = H.clone().requires_grad_(), H.clone().requires_grad_()
    (ours(H_ours, bmg.batch, len(bmg)) * G).sum().backward()
    (ref(H_ref, bmg.batch) * G).sum().backward()
    torch.testing.assert_close(H_ours.grad, H_ref.grad)
    H64 = H.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda X: ours(X, bmg.batch, len(bmg)), (H64,))


@pytest.mark.slow
def test_grouped_steps_train_exactly_like_single_steps(synthetic_csv, monkeypatch):
    def fit(group: int) -> np.ndarray:
        monkeypatch.setattr(model_module, "STEPS_PER_LOADER_ITEM", group)
        model = ChempropModel.from_config({}, tiny_overrides(synthetic_csv, optimization__batch_size=8))
        data = load_training_data(model.config)
        tr, va = holdout_split(data, 5, "random", 0)
        model.fit(data.subset(tr), data.subset(va))
        # a last batch of one molecule is dropped (batch norm), as Chemprop does
        assert model.mpnn.steps_per_epoch == len(tr) // 8 + (len(tr) % 8 > 1)
        return model.predict_array(data.smiles[:20])

    np.testing.assert_array_equal(fit(1), fit(5))


def test_epoch_error_metrics_agree_with_the_full_metrics():
    from admet.model.metrics import error_metrics, regression_metrics

    rng = np.random.default_rng(0)
    Y = rng.normal(size=(60, 4))
    P = Y + rng.normal(size=Y.shape) * 0.3
    Y[rng.random(Y.shape) < 0.4] = np.nan
    Y[:, 3] = np.nan
    Y[0, 3] = 1.0  # one label: reported, not in the macro average
    fast_m, full = error_metrics(Y, P, list("abcd")), regression_metrics(Y, P, list("abcd"))
    for key in ("a", "b", "c", "d", "macro"):
        for metric in ("mae", "rmse", "n"):
            assert fast_m[key][metric] == pytest.approx(full[key][metric], rel=1e-12), (key, metric)
