"""Each behaviour of Chemprop's private API that ``admet._compat.chemprop_private`` relies
on, pinned against the installed Chemprop: an upgrade that renames or changes one fails
here, not in a fit."""

from __future__ import annotations

import chemprop
import pytest
import torch
from chemprop import nn as cnn

from admet._compat import chemprop_private


def test_chemprop_is_the_version_the_adapter_was_checked_against():
    major, minor = (int(p) for p in chemprop.__version__.split(".")[:2])
    assert (major, minor) == (2, 3), "re-check every pin in this file, then widen pyproject's bound"


@pytest.mark.parametrize("cls", [cnn.metrics.MSE, cnn.metrics.MAE])  # admet's CRITERIA
def test_the_unreduced_loss_summed_as_admet_does_is_the_criterion(cls):
    """``(L * weights * task_weights * mask).sum() / mask.sum()`` is the criterion's value
    (what ``admet.model.mpnn`` computes per batch without ``update``)."""
    torch.manual_seed(0)
    crit = cls(task_weights=torch.tensor([0.5, 2.0, 1.0]))
    preds, targets = torch.randn(6, 3), torch.randn(6, 3)
    mask = torch.rand(6, 3) > 0.3
    weights = torch.rand(6)
    zeros = torch.zeros_like(mask)
    L = chemprop_private.unreduced_loss(crit, preds, targets, mask, weights.view(-1, 1), zeros, zeros)
    assert L.shape == preds.shape
    ours = (L * (weights.view(-1, 1) * crit.task_weights * mask)).sum() / mask.sum()
    expected = crit(preds, targets, mask, weights.view(-1, 1), zeros, zeros)
    torch.testing.assert_close(ours, expected)


@pytest.mark.parametrize("cls", [cnn.metrics.MSE, cnn.metrics.MAE])
def test_the_unreduced_loss_is_elementwise_over_a_member_axis(cls):
    """``admet.model.stacked`` passes ``(M, N, T)`` predictions: each member's slice is
    that member's own unreduced loss."""
    torch.manual_seed(1)
    crit = cls(task_weights=torch.ones(1, 2))
    preds, targets = torch.randn(3, 5, 2), torch.randn(3, 5, 2)
    mask = torch.ones(3, 5, 2, dtype=torch.bool)
    weights = torch.ones(3, 5, 1)
    L = chemprop_private.unreduced_loss(crit, preds, targets, mask, weights, ~mask, ~mask)
    assert L.shape == (3, 5, 2)
    for m in range(3):
        one = chemprop_private.unreduced_loss(
            crit, preds[m], targets[m], mask[m], weights[m], ~mask[m], ~mask[m]
        )
        torch.testing.assert_close(L[m], one)
