"""Chemprop's MPNN with validation metrics in the targets' own units, per task and per
quality tier.

Chemprop validates on standardised targets and averages over all labels, which lets the
densest task dominate. :class:`MultitaskMPNN` keeps Chemprop's ``val_loss`` (the training
criterion, used by the curriculum) and adds, from the same forward pass:
``val/mae_macro`` and ``val/rmse_macro`` (unweighted means over tasks, in original units;
the early-stopping and checkpoint monitor), ``val/mae/<task>`` per task, and
``val/mae/<quality>`` per quality tier when the validation set has quality labels.
A :class:`~admet.model.validation_scope.ValidationScope` restricts ``val_loss``, the macro
and per-task errors to the tiers of ``optimization.validation_qualities`` and to the target
columns (auxiliary task columns are trained on, never scored); ``val/mae/<quality>`` is
logged for every tier.

Training computes Chemprop's loss (the criterion's unreduced loss, masked and weighted,
summed over the batch's labels) without a per-step ``log``: the epoch's loss sum and label
count accumulate on the device and ``train_loss_epoch`` is logged once per epoch, so a step
never waits for the device or for Lightning's logging.

Over 350 lines because the Lightning module's steps, its validation scope and its
per-task, per-tier logging read the same epoch accumulators.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from chemprop.data import TrainingBatch
from chemprop.models import MPNN
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import SingleDeviceStrategy

from admet._compat import chemprop_private, lightning_private
from admet.data.packed import LabelledBatch
from admet.model.fused_adam import FusedAdamStep
from admet.model.layers import SIZED_AGGREGATIONS
from admet.model.metrics import error_metrics
from admet.model.schedule import NoamSchedule
from admet.model.validation_scope import ValidationScope

__all__ = ["MONITOR", "MultitaskMPNN", "validation_metrics"]

MONITOR = "val/mae_macro"
_FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# what Lightning's manual_backward and LightningOptimizer.step run around the backward pass
# and the optimiser step, besides them: these hooks (and LightningModule.backward)
_STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def wrappers_do_nothing(trainer: pl.Trainer, module: pl.LightningModule) -> bool:
    """Whether Lightning's per-step wrappers (``manual_backward``, ``LightningOptimizer.step``)
    would run nothing but the backward pass, the optimiser step and the step counter.

    True for a single-device strategy at full precision, without a profiler, where neither
    a callback nor the module overrides a hook those wrappers call (no built-in callback
    does) and the module keeps Lightning's ``backward``. Manual optimisation clips no
    gradients, so the trainer's clipping settings do not matter.
    """
    opt = module.optimizers()
    return (
        type(trainer.strategy) is SingleDeviceStrategy
        and type(trainer.precision_plugin) is Precision
        and type(trainer.profiler) is PassThroughProfiler
        and all(
            getattr(type(cb), hook) is getattr(pl.Callback, hook)
            for cb in trainer.callbacks
            for hook in _STEP_HOOKS
        )
        and all(
            getattr(type(module), hook) is getattr(pl.LightningModule, hook)
            for hook in (*_STEP_HOOKS, "backward")
        )
        and not isinstance(opt, list)
        and lightning_private.has_step_callbacks(opt)
    )


def _labels(batch: TrainingBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's label mask and its targets with unlabelled entries 0, as Chemprop's
    training step makes them (a packed batch brings both along)."""
    mask, filled = getattr(batch, "mask", None), getattr(batch, "filled", None)
    if mask is not None and filled is not None:  # a LabelledBatch, unless rebuilt from its fields
        return mask, filled
    return batch.Y.isfinite(), batch.Y.nan_to_num(nan=0.0)


def _criterion_sums(
    crit, preds, targets, mask, weights, lt_mask, gt_mask
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weighted loss sum and the label count that a Chemprop criterion accumulates in
    ``update`` (its value is sum / count), without the Metric's per-call bookkeeping."""
    lt_mask = torch.zeros_like(mask) if lt_mask is None else lt_mask
    gt_mask = torch.zeros_like(mask) if gt_mask is None else gt_mask
    L = chemprop_private.unreduced_loss(crit, preds, targets, mask, weights, lt_mask, gt_mask)
    # the weights multiplied first: they need no gradient, so backward takes one product
    return (L * (weights.view(-1, 1) * crit.task_weights * mask)).sum(), mask.sum()


class MultitaskMPNN(MPNN):
    """An ``MPNN`` whose validation reports per-task and per-quality metrics.

    Call :meth:`set_validation_info` before fitting; the validation DataLoader must not
    shuffle, so that batch order matches ``val_quality``.
    """

    task_names: list[str]
    val_quality: np.ndarray | None
    val_scope: ValidationScope
    # Epoch-level scalars that no Lightning callback monitors (per-task and per-quality
    # validation errors, sampler and curriculum statistics): sent to the loggers once per
    # epoch from here instead of through self.log, whose result collection costs about
    # 2 ms per key per epoch (a quarter of a small model's epoch). See record().
    epoch_scalars: dict[str, float]

    def record(self, values: Mapping[str, float]) -> None:
        """This epoch's value of each key: in ``epoch_scalars`` (read by the callbacks
        through :func:`admet.model.callbacks.epoch_metrics`) and in every logger the trainer
        has, sent at the end of validation (what is recorded later, at the epoch's end)."""
        values = {k: float(v) for k, v in values.items()}
        self.epoch_scalars.update(values)
        self._unsent.update(values)

    def _send_recorded(self) -> None:
        unsent = self._unsent
        if unsent and not self.trainer.sanity_checking:
            # Lightning's own path for logged metrics (same step and "epoch" as self.log's);
            # there is no public call that takes a plain dict without the result collection
            lightning_private.log_metrics(self.trainer, unsent)
        self._unsent = {}

    def set_validation_info(
        self,
        task_names: Sequence[str],
        val_quality: Sequence[str] | None,
        scope: ValidationScope | None = None,
    ) -> None:
        """The validation table's output columns, per-row tiers (in loader order) and the
        labels the monitored metrics read (None: all of them)."""
        self.task_names = list(task_names)
        self.val_quality = None if val_quality is None else np.asarray(val_quality, dtype=object)
        self.val_scope = scope if scope is not None else ValidationScope.everything(len(self.task_names))
        self._val_keep: tuple[torch.Tensor | None, torch.Tensor] | None = None
        self.last_val_metrics: dict[str, dict[str, float]] = {}
        self.epoch_scalars: dict[str, float] = {}
        self._unsent: dict[str, float] = {}

    def fingerprint(
        self, bmg, V_d: torch.Tensor | None = None, X_d: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Chemprop's fingerprint; our aggregations are told the batch size (no device sync)."""
        H_v = self.message_passing(bmg, V_d)
        if isinstance(self.agg, SIZED_AGGREGATIONS):
            H = self.agg(H_v, bmg.batch, len(bmg))
        else:
            H = self.agg(H_v, bmg.batch)
        H = self.bn(H)
        return H if X_d is None else torch.cat((H, self.X_d_transform(X_d)), dim=1)

    # Manual optimisation: a training "batch" from the loader may be a group of batches
    # (admet.data.packed), each its own optimiser and LR-scheduler step, exactly as Lightning's
    # automatic loop would take them, but with Lightning's per-call hooks paid once per group.
    automatic_optimization = False
    steps_per_epoch: int | None = None  # optimiser steps per epoch (for the LR schedule)
    # the fit's LR schedule (admet.model.schedule.noam_schedule of the run config), set by
    # the builder; None: Chemprop's hyperparameters of this model over the trainer's epochs
    schedule: NoamSchedule | None = None
    _direct_steps = False  # set per fit in on_train_start (wrappers_do_nothing)
    _optimizer_step: FusedAdamStep | None = None  # the direct path's, built at a fit's first step

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):  # type: ignore[override]
        """A Chemprop ``TrainingBatch`` (or a list of them) moved field by field; one
        gathered on the device already (:mod:`admet.data.packed`) passes as is. Lightning's
        generic transfer walks the batch's dataclasses recursively, milliseconds per step."""
        if isinstance(batch, list) and all(isinstance(b, TrainingBatch) for b in batch):
            return [self._to(b, device) for b in batch]
        if isinstance(batch, TrainingBatch):
            return self._to(batch, device)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    @staticmethod
    def _to(batch: TrainingBatch, device: torch.device) -> TrainingBatch:
        if batch.bmg.V.device == device:
            return batch
        batch.bmg.to(device)  # in place
        moved = TrainingBatch(batch.bmg, *(None if t is None else t.to(device) for t in batch[1:]))
        if isinstance(batch, LabelledBatch):
            return LabelledBatch.of(moved, batch.mask.to(device), batch.filled.to(device))
        return moved

    def configure_optimizers(self):  # type: ignore[override]
        """Chemprop's Adam and Noam-like schedule, counted in optimiser steps (a loader item
        may hold several of them)."""
        # fused: the same Adam update as one kernel over all parameters (foreach, the default,
        # is a kernel per operation and took 8% of a small model's CPU step more); foreach
        # where the parameters' device has no fused kernel
        params = list(self.parameters())
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype in _FUSED_DTYPES for p in params)
        opt = torch.optim.Adam(params, self.init_lr, fused=fused, foreach=not fused)
        steps = self.steps_per_epoch or self.trainer.num_training_batches
        schedule = self.schedule or NoamSchedule(
            self.warmup_epochs, self.trainer.max_epochs, self.init_lr, self.max_lr, self.final_lr
        )
        sched = schedule.scheduler(opt, steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_train_start(self) -> None:
        # decided once per fit: the callbacks are all known by now
        self._direct_steps = wrappers_do_nothing(self.trainer, self)

    def on_train_end(self) -> None:
        # let go of the optimiser's state (Lightning's teardown moves it off the device)
        self._optimizer_step = None

    def on_train_epoch_start(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._label_count = torch.zeros((), device=self.device)

    def _loss(self, batch: TrainingBatch) -> torch.Tensor:
        """Chemprop's criterion on one batch (masked, weighted mean over its labels)."""
        bmg, V_d, X_d, targets, weights, lt_mask, gt_mask = batch
        mask, targets = _labels(batch)
        preds = self.predictor.train_step(self.fingerprint(bmg, V_d, X_d))
        total, count = _criterion_sums(self.criterion, preds, targets, mask, weights, lt_mask, gt_mask)
        # in place: an attribute assignment would go through nn.Module.__setattr__ twice a step
        self._loss_sum.add_(total.detach())
        self._label_count.add_(count)
        return total / count

    def training_step(self, batch, batch_idx: int = 0) -> None:  # type: ignore[override]
        opt = self.optimizers()
        sched = self.lr_schedulers()
        params = [p for group in opt.param_groups for p in group["params"]]
        for one in batch if isinstance(batch, list) else [batch]:
            loss = self._loss(one)
            # what opt.zero_grad() does (set_to_none), without its profiler scope: about
            # 40 us per step, 2% of a small model's step (no hook runs on it here)
            for p in params:
                p.grad = None
            if self._direct_steps:
                # Lightning's wrappers, minus the hook calls that would find nothing to run
                # (wrappers_do_nothing): 0.5-0.6 ms of a small model's 4-5 ms CPU step. The
                # counters are Lightning's own, so trainer.global_step stays right; the
                # optimiser's fused kernel is called without Optimizer.step's bookkeeping
                loss.backward()
                lightning_private.before_optimizer_step(opt)
                step = self._optimizer_step
                if step is None or step.optimizer is not opt.optimizer:  # a fit's first, or swapped
                    step = self._optimizer_step = FusedAdamStep(opt.optimizer)
                step()
                lightning_private.after_optimizer_step(opt)
            else:
                self.manual_backward(loss)
                opt.step()
            sched.step()

    def on_train_epoch_end(self) -> None:
        self.log("train_loss_epoch", self._loss_sum / self._label_count.clamp(min=1))
        # after the callbacks' hook of the same name, so EpochHistory has read the recorded
        # scalars; what validation did not send already (it does, for a pruned epoch's sake)
        self._send_recorded()
        self.epoch_scalars = {}

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
        self._val_loss_sum = torch.zeros((), device=self.device)
        self._val_label_count = torch.zeros((), device=self.device)
        self._val_row = 0  # rows come in order (the loader does not shuffle)

    def _scope_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """``mask`` of the validation batch that starts at ``_val_row``, restricted to the
        scope's rows and scored columns (unchanged without a restriction)."""
        scope = getattr(self, "val_scope", None)
        n = mask.shape[0]
        start, self._val_row = self._val_row, self._val_row + n
        if scope is None or (scope.rows is None and scope.n_scored >= mask.shape[1]):
            return mask
        keep = getattr(self, "_val_keep", None)
        if keep is None or keep[1].device != mask.device:  # once per fit, on its device
            rows = None if scope.rows is None else torch.as_tensor(scope.rows, device=mask.device)
            cols = torch.arange(mask.shape[1], device=mask.device) < scope.n_scored
            keep = self._val_keep = (rows, cols)
        rows, cols = keep
        mask = mask & cols
        return mask if rows is None else mask & rows[start : start + n, None]

    def validation_step(self, batch, batch_idx: int = 0) -> None:  # type: ignore[override]
        bmg, V_d, X_d, targets, weights, lt_mask, gt_mask = batch
        mask, filled = _labels(batch)
        mask = self._scope_mask(mask)
        preds = self.predictor.train_step(self.fingerprint(bmg, V_d, X_d))
        # Chemprop's val_loss: the training criterion (its clone in metrics[-1])
        total, count = _criterion_sums(self.metrics[-1], preds, filled, mask, weights, lt_mask, gt_mask)
        self._val_loss_sum.add_(total)
        self._val_label_count.add_(count)
        self._val_preds.append(preds.detach())
        self._val_targets.append(targets.detach())

    def on_validation_epoch_end(self) -> None:
        if not self._val_preds:
            return
        self.log("val_loss", self._val_loss_sum / self._val_label_count.clamp(min=1), prog_bar=True)
        P = self._unscale(torch.cat(self._val_preds))
        Y = self._unscale(torch.cat(self._val_targets))
        metrics, scalars = validation_metrics(Y, P, self.task_names, self.val_quality, self.val_scope)
        self.last_val_metrics = metrics
        self.log(MONITOR, metrics["macro"]["mae"], prog_bar=True)
        self.record(scalars)
        self._send_recorded()  # now: a pruning callback may end the fit before the epoch ends


def validation_metrics(
    Y: np.ndarray,
    P: np.ndarray,
    task_names: Sequence[str],
    quality: np.ndarray | None,
    scope: ValidationScope | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """The validation errors in the targets' units (per scored task and macro, over the
    labels ``scope`` keeps: all of them without one), and the epoch scalars besides
    ``MONITOR``: ``val/rmse_macro``, ``val/mae/<task>`` and, with quality labels,
    ``val/mae/<quality>`` for every tier (on the scored columns, whatever the scope's rows).

    Example:
        Low-tier rows with huge errors move the macro MAE only when their tier counts:

        >>> import numpy as np
        >>> Y, P = np.array([[1.0], [2.0], [3.0], [4.0]]), np.array([[1.5], [2.5], [103.0], [104.0]])
        >>> quality = np.array(["high", "high", "low", "low"], dtype=object)
        >>> high = ValidationScope(np.array([True, True, False, False]), 1)
        >>> validation_metrics(Y, P, ["HLM"], quality)[0]["macro"]["mae"]
        50.25
        >>> metrics, scalars = validation_metrics(Y, P, ["HLM"], quality, high)
        >>> metrics["macro"]["mae"], scalars["val/mae/high"], scalars["val/mae/low"]
        (0.5, 0.5, 100.0)
    """
    scope = scope if scope is not None else ValidationScope.everything(len(task_names))
    tasks = list(task_names)[: scope.n_scored]
    k = len(tasks)
    metrics = error_metrics(scope.scored(Y), P[:, :k], tasks)
    scalars = {"val/rmse_macro": metrics["macro"]["rmse"]}
    for task in tasks:
        if metrics[task]["n"]:
            scalars[f"val/mae/{task}"] = metrics[task]["mae"]
    if quality is not None and len(quality) == len(Y):
        for tier in dict.fromkeys(quality):
            rows = quality == tier
            per_quality = error_metrics(Y[rows, :k], P[rows, :k], tasks)["macro"]
            if np.isfinite(per_quality["mae"]):
                scalars[f"val/mae/{tier}"] = per_quality["mae"]
    return metrics, scalars
