"""Chemprop's private API used by ``admet``: a criterion's unreduced loss.

Used by :mod:`admet.model.mpnn` and :mod:`admet.model.stacked`, which sum the loss
themselves instead of through the criterion's ``torchmetrics`` bookkeeping. Pinned by
``tests/test_compat_chemprop.py``. Imports nothing from Chemprop.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

__all__ = ["unreduced_loss"]


def unreduced_loss(
    criterion: Any,
    preds: Tensor,
    targets: Tensor,
    mask: Tensor,
    weights: Tensor,
    lt_mask: Tensor,
    gt_mask: Tensor,
) -> Tensor:
    """``ChempropMetric._calc_unreduced_loss``: the elementwise loss of ``preds`` against
    ``targets``, neither masked nor weighted (shape of ``preds``; broadcasting over a
    leading member axis), whose ``(L * weights * task_weights * mask).sum() / mask.sum()``
    is the criterion's value."""
    return criterion._calc_unreduced_loss(preds, targets, mask, weights, lt_mask, gt_mask)
