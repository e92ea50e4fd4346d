"""Chemprop's MPNN with validation metrics in the targets' own units, per task and per
quality tier.

Chemprop validates on standardised targets and averages over all labels, which lets the
densest task dominate. :class:`MultitaskMPNN` keeps Chemprop's ``val_loss`` (the training
criterion, used by the curriculum) and adds, from the same forward pass:
``val/mae_macro`` and ``val/rmse_macro`` (unweighted means over tasks, in original units;
the early-stopping and checkpoint monitor), ``val/mae/<task>`` per task, and
``val/mae/<quality>`` per quality tier when the validation set has quality labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from chemprop.models import MPNN

from admet.model.metrics import regression_metrics

__all__ = ["MONITOR", "MultitaskMPNN"]

MONITOR = "val/mae_macro"


class MultitaskMPNN(MPNN):
    """An ``MPNN`` whose validation reports per-task and per-quality metrics.

    Call :meth:`set_validation_info` before fitting; the validation DataLoader must not
    shuffle, so that batch order matches ``val_quality``.
    """

    task_names: list[str]
    val_quality: np.ndarray | None

    def set_validation_info(self, task_names: Sequence[str], val_quality: Sequence[str] | None) -> None:
        self.task_names = list(task_names)
        self.val_quality = None if val_quality is None else np.asarray(val_quality, dtype=object)
        self.last_val_metrics: dict[str, dict[str, float]] = {}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep checkpoints to tensors and plain values so they load with
        ``torch.load(weights_only=True)``; the architecture comes from the run config."""
        checkpoint.pop("hyper_parameters", None)
        checkpoint.pop("hparams_name", None)

    def _unscale(self, X: torch.Tensor) -> np.ndarray:
        transform = self.predictor.output_transform
        if hasattr(transform, "scale"):
            X = X * transform.scale + transform.mean
        return X.detach().cpu().double().numpy()

    def on_validation_epoch_start(self) -> None:
        self._val_preds: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []

    def validation_step(self, batch, batch_idx: int = 0) -> None:  # type: ignore[override]
        bmg, V_d, X_d, targets, weights, lt_mask, gt_mask = batch
        mask = targets.isfinite()
        preds = self.predictor.train_step(self.fingerprint(bmg, V_d, X_d))
        self.metrics[-1](preds, targets.nan_to_num(nan=0.0), mask, weights, lt_mask, gt_mask)
        self.log("val_loss", self.metrics[-1], batch_size=len(bmg), prog_bar=True)
        self._val_preds.append(preds.detach())
        self._val_targets.append(targets.detach())

    def on_validation_epoch_end(self) -> None:
        if not self._val_preds:
            return
        P = self._unscale(torch.cat(self._val_preds))
        Y = self._unscale(torch.cat(self._val_targets))
        metrics = regression_metrics(Y, P, self.task_names)
        self.last_val_metrics = metrics
        self.log(MONITOR, metrics["macro"]["mae"], prog_bar=True)
        self.log("val/rmse_macro", metrics["macro"]["rmse"])
        for task in self.task_names:
            if metrics[task]["n"]:
                self.log(f"val/mae/{task}", metrics[task]["mae"])
        if self.val_quality is not None and len(self.val_quality) == len(Y):
            for quality in dict.fromkeys(self.val_quality):
                rows = self.val_quality == quality
                per_quality = regression_metrics(Y[rows], P[rows], self.task_names)["macro"]
                if np.isfinite(per_quality["mae"]):
                    self.log(f"val/mae/{quality}", per_quality["mae"])
