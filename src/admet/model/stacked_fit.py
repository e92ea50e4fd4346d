"""Training the members of an ensemble together as one stacked model
(``ensemble.batched``; the stacked arithmetic is :mod:`admet.model.stacked`).

Each member keeps everything its own fit would have: its initial weights (built from its
seed as :meth:`ChempropModel._fit` builds them), its training fold and target scaler, its
sampler stream (a :class:`~admet.sampling.JointSampler` with its seed, curriculum phase and
epoch counter, or the seeded shuffle), its Noam learning-rate schedule counted in its own
steps, its validation fold, early stopping on ``val/mae_macro`` with its patience, and its
best-epoch weights. ``val_loss`` and ``val/mae_macro`` read the labels of the member's
:class:`~admet.model.validation_scope.ValidationScope` (the tiers of
``optimization.validation_qualities``, the target columns), as in a Lightning fit.
Members advance in lock step, one batch each per step; a member whose epoch ends is
validated at that step (members with equal folds end together and are validated together)
while the others train on. A member that stops leaves the stack.

This is a loop of its own rather than a Lightning ``Trainer``: a trainer fits one module
with one epoch counter, and here every member has its own epochs, stopping and
checkpoint. What the single-member path gets from Lightning's ``EarlyStopping``,
``ModelCheckpoint`` and the curriculum callback is done here with the same rules: a
strictly lower monitor value is an improvement, ``patience`` epochs without one stop the
member, a non-finite value stops it, a curriculum phase change may reset the patience.

Over 350 lines because each member's own early stopping, checkpoint, curriculum,
schedule, validation scope and descriptors are the per-member state of one stacked loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from lightning.pytorch import seed_everything
from sklearn.preprocessing import StandardScaler

from admet import interrupt
from admet.data import MultitaskDataset, apply_tier_use
from admet.data.packed import EpochBatches, PackedGraphs, SeededShuffle
from admet.errors import TrainingDivergedError
from admet.model.callbacks import curriculum_scalars, sampler_statistics
from admet.model.model import PREDICT_BATCH_SIZE, ChempropModel
from admet.model.mpnn import MONITOR, MultitaskMPNN, validation_metrics
from admet.model.runtime import freeze_startup_heap, resolve_device
from admet.model.schedule import noam_schedule
from admet.model.stacked import StackedAdam, StackedGraphs, StackedMembers, stackable
from admet.model.validation_scope import ValidationScope

__all__ = ["EpochReport", "fit_stacked", "stacking_refusal"]

EpochReport = Callable[[int, int, dict[str, float]], None]
"""Called with (member index, epoch, that epoch's scalars) after each member epoch."""


def stacking_refusal(models: Sequence[ChempropModel]) -> str | None:
    """Why these members cannot train stacked (None when they can): one architecture,
    one batch size and epoch count, a model :func:`~admet.model.stacked.stackable` takes."""
    keys = {
        (repr(m.config.model), m.config.optimization.batch_size, m.config.optimization.max_epochs)
        for m in models
    }
    if len(keys) != 1:
        return "the members differ in architecture, batch size or epochs"
    scaler = np.zeros((1, len(models[0].output_tasks))), np.ones((1, len(models[0].output_tasks)))
    return stackable(models[0]._build_mpnn(*scaler))


@dataclass
class _Member:
    """One member's training state in the stacked loop."""

    index: int
    model: ChempropModel
    mpnn: MultitaskMPNN
    train_rows: np.ndarray  # graph-table row of each training molecule
    train_targets: np.ndarray  # target-table row of each training molecule
    val_rows: np.ndarray
    val_targets: np.ndarray
    val: MultitaskDataset
    mean: np.ndarray
    scale: np.ndarray
    batches: EpochBatches
    lr_at: Callable[[int], float]
    patience: int
    max_epochs: int
    sampler: Any
    epoch: int = 0
    step: int = 0
    wait: int = 0
    best: float = math.inf
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    sampler_rows: list[dict[str, Any]] = field(default_factory=list)
    pending: Iterator[Any] | None = None
    steps_left: int = 0
    scalars: dict[str, float] = field(default_factory=dict)
    loss_sum: float = 0.0
    label_count: float = 0.0
    seconds: float = 0.0  # this member's share of the stacked fit's wall time
    step_seconds: float = 0.0  # its share of the time in training steps (the in-epoch time)


def fit_stacked(
    models: Sequence[ChempropModel],
    data: Sequence[tuple[MultitaskDataset, MultitaskDataset]],
    on_epoch: EpochReport | None = None,
    on_done: Callable[[int, ChempropModel], None] | None = None,
) -> list[ChempropModel]:
    """Train ``models[m]`` on ``data[m]`` = (train, val), all at once; returns the models,
    each fitted as :meth:`ChempropModel.fit` leaves it (best weights, history, scores).

    ``on_epoch`` hears every member epoch (an exception it raises, such as Optuna's
    ``TrialPruned``, ends the whole fit); ``on_done`` receives each member as soon as it
    has finished (to save it: a fit killed later keeps the members finished before).

    Raises:
        TrainingDivergedError: a member reached no finite validation metric.
    """
    start = time.perf_counter()
    freeze_startup_heap()
    first = models[0]
    device = resolve_device(first.config.optimization.accelerator)
    # each member's tables as its config trains on them (data.tier_use)
    data = [
        (apply_tier_use(tr, m.config), apply_tier_use(va, m.config))
        for m, (tr, va) in zip(models, data, strict=True)
    ]
    cache = first.cache
    # one graph table for every molecule any member sees; targets per member (own scaler)
    smiles = list(dict.fromkeys(s for tr, va in data for part in (tr, va) for s in part.smiles))
    row_of = {s: i for i, s in enumerate(smiles)}
    graphs = PackedGraphs.from_graphs(cache.graphs(smiles)).to(device)
    members: list[_Member] = []
    targets: list[np.ndarray] = []
    descriptors: list[np.ndarray] = []  # scaled per member, row-aligned with targets
    offset = 0
    for m, (model, (train, val)) in enumerate(zip(models, data, strict=True)):
        opt = model.config.optimization
        seed_everything(opt.seed, workers=True, verbose=False)
        scaler = StandardScaler().fit(train.Y)
        mean = np.nan_to_num(scaler.mean_, nan=0.0)
        scale = np.nan_to_num(scaler.scale_, nan=1.0)
        sampler = model.build_sampler(train)
        order = sampler if sampler is not None else SeededShuffle(len(train), opt.seed)
        n = len(order)
        batches = EpochBatches(order, opt.batch_size, drop_last=n % opt.batch_size == 1, n=n)
        # molecule descriptors scaled by this member's training fold, as its own fit does
        X_train, X_val, x_scaler = model.scaled_descriptors(train, val)
        if X_train is not None and X_val is not None:
            descriptors += [X_train, X_val]
        mpnn = model._build_mpnn(mean, scale, x_scaler)  # the weights its own fit would start from
        scope = ValidationScope.of(model.config, val)
        mpnn.set_validation_info(model.output_tasks, val.quality, scope)
        lr_at = noam_schedule(opt).lr_at(batches.n_batches)  # as the Lightning fit's scheduler
        # the validation targets hold the scope's labels only: val_loss reads those
        targets += [(train.Y - mean) / scale, (scope.targets(val.Y) - mean) / scale]
        members.append(
            _Member(
                index=m,
                model=model,
                mpnn=mpnn,
                train_rows=np.array([row_of[s] for s in train.smiles], dtype=np.int64),
                train_targets=offset + np.arange(len(train)),
                val_rows=np.array([row_of[s] for s in val.smiles], dtype=np.int64),
                val_targets=offset + len(train) + np.arange(len(val)),
                val=val,
                mean=mean,
                scale=scale,
                batches=batches,
                lr_at=lr_at,
                patience=opt.patience,
                max_epochs=opt.max_epochs,
                sampler=sampler,
            )
        )
        offset += len(train) + len(val)
    if descriptors and len(descriptors) != len(targets):
        raise ValueError("the members differ in data.molecule_features")
    table = StackedGraphs(
        graphs, np.concatenate(targets), np.concatenate(descriptors) if descriptors else None
    )
    stack = StackedMembers([mb.mpnn for mb in members])
    for mb in members:
        mb.mpnn.to(device)
    adam = StackedAdam(_to(stack, device))
    live = list(members)  # position p in the stack is live[p]
    for mb in live:
        _start_epoch(mb)

    # each member is charged the set-up's and every step's wall time divided by the number
    # of members in the stack then, so the members' fit_seconds add up to the fit's
    setup = (time.perf_counter() - start) / len(live)
    for mb in live:
        mb.seconds = setup
    tick = time.perf_counter()
    loss_acc = torch.zeros(len(live), device=device)
    count_acc = torch.zeros(len(live), device=device)
    while live:
        interrupt.check()
        step_start = time.perf_counter()
        sets = [next(mb.pending) for mb in live]  # type: ignore[arg-type]
        batch = table.batch(
            [mb.train_rows[s] for mb, s in zip(live, sets, strict=True)],
            [mb.train_targets[s] for mb, s in zip(live, sets, strict=True)],
        )
        stack.training = True
        preds = stack.predict_scaled(batch)
        mask = batch.Y.isfinite()
        total, count = stack.losses(preds, batch.Y.nan_to_num(0.0), mask)
        adam.zero_grad()
        (total / count.clamp(min=1)).sum().backward()
        adam.step([mb.lr_at(mb.step) for mb in live])
        # summed on the device, read once per epoch: a step never waits for the device
        loss_acc += total.detach()
        count_acc += count
        for mb in live:
            mb.step += 1
        ended = [p for p, mb in enumerate(live) if mb.steps_left == 0]
        if ended and device.type == "cuda":
            torch.cuda.synchronize(device)  # queued steps belong to the epoch, not to validation
        step_share = (time.perf_counter() - step_start) / len(live)
        for mb in live:
            mb.step_seconds += step_share
        if not ended:
            continue
        for p in ended:
            live[p].loss_sum, live[p].label_count = float(loss_acc[p]), float(count_acc[p])
            loss_acc[p] = 0.0
            count_acc[p] = 0.0
        _validate(stack, table, [live[p] for p in ended], ended)
        done = []
        for p in ended:
            mb = live[p]
            if _end_epoch(mb, stack, p, on_epoch):
                done.append(p)
            else:
                _start_epoch(mb)
        now = time.perf_counter()
        for mb in live:
            mb.seconds += (now - tick) / len(live)
        tick = now
        if done:
            for p in done:
                fitted = _finish(live[p])
                if on_done is not None:
                    on_done(live[p].index, fitted)
            tick = time.perf_counter()  # what on_done spent (saving, scoring) is not training
            keep = [p for p in range(len(live)) if p not in done]
            live = [live[p] for p in keep]
            if keep:
                stack.keep(keep)
                adam.bind(stack.params, keep=keep)
                index = torch.tensor(keep, device=device)
                loss_acc, count_acc = loss_acc[index], count_acc[index]
    return [mb.model for mb in members]


def _to(stack: StackedMembers, device: torch.device) -> dict[str, torch.Tensor]:
    """Move the stack to ``device`` (new leaves there) and return its parameters."""
    with torch.no_grad():
        stack.params = {k: v.detach().to(device).requires_grad_() for k, v in stack.params.items()}
        stack.buffers = {k: v.to(device) for k, v in stack.buffers.items()}
    return stack.params


def _start_epoch(mb: _Member) -> None:
    mb.batches.set_epoch(mb.epoch)
    mb.scalars = {}
    if mb.sampler is not None:
        row, logged = sampler_statistics(mb.sampler, mb.epoch)
        mb.sampler_rows.append(row)
        mb.scalars.update(logged)
        if mb.sampler.curriculum_state is not None:
            mb.scalars.update(curriculum_scalars(mb.sampler.curriculum_state))
    epoch_batches = list(iter(mb.batches))
    mb.steps_left = len(epoch_batches)
    mb.pending = _counting(mb, epoch_batches)


def _counting(mb: _Member, batches: list[Any]) -> Iterator[Any]:
    for b in batches:
        mb.steps_left -= 1
        yield np.asarray(b, dtype=np.int64)


@torch.no_grad()
def _validate(
    stack: StackedMembers, table: StackedGraphs, ended: list[_Member], positions: list[int]
) -> None:
    """Each ended member's validation scalars (``val_loss``, ``MONITOR`` and the rest)."""
    sub = stack.subset(positions)
    chunk = PREDICT_BATCH_SIZE
    n_chunks = max(-(-len(mb.val_rows) // chunk) for mb in ended)
    preds: list[list[np.ndarray]] = [[] for _ in ended]
    loss = np.zeros(len(ended))
    labels = np.zeros(len(ended))
    for c in range(n_chunks):
        part = [slice(c * chunk, (c + 1) * chunk) for _ in ended]
        batch = table.batch(
            [mb.val_rows[s] for mb, s in zip(ended, part, strict=True)],
            [mb.val_targets[s] for mb, s in zip(ended, part, strict=True)],
        )
        P = sub.predict_scaled(batch)
        mask = batch.Y.isfinite()
        total, count = sub.losses(P, batch.Y.nan_to_num(0.0), mask)
        loss += total.cpu().numpy()
        labels += count.cpu().numpy()
        for i, size in enumerate(batch.sizes):
            preds[i].append(P[i, :size].double().cpu().numpy())
    for i, mb in enumerate(ended):
        P = np.concatenate(preds[i]) * mb.scale + mb.mean
        metrics, scalars = validation_metrics(
            mb.val.Y, P, mb.model.output_tasks, mb.mpnn.val_quality, mb.mpnn.val_scope
        )
        mb.scalars.update(scalars)
        mb.scalars["val_loss"] = loss[i] / max(labels[i], 1.0)
        mb.scalars[MONITOR] = metrics["macro"]["mae"]
        mb.mpnn.last_val_metrics = metrics


def _end_epoch(mb: _Member, stack: StackedMembers, position: int, on_epoch: EpochReport | None) -> bool:
    """Record the epoch, keep the best weights, apply early stopping and the curriculum;
    True when the member has finished."""
    mb.scalars["train_loss_epoch"] = mb.loss_sum / max(mb.label_count, 1.0)
    value = mb.scalars[MONITOR]
    row = {"epoch": float(mb.epoch)}
    row.update({k: (v if math.isfinite(v) else math.nan) for k, v in mb.scalars.items()})
    mb.history.append(row)
    if on_epoch is not None:
        on_epoch(mb.index, mb.epoch, dict(mb.scalars))
    finished = not math.isfinite(value)  # EarlyStopping's check_finite
    if math.isfinite(value) and value < mb.best:  # ModelCheckpoint and EarlyStopping: strict
        mb.best, mb.wait = value, 0
        mb.best_state = stack.state_dict(position)
    else:
        mb.wait += 1
    state = None if mb.sampler is None else mb.sampler.curriculum_state
    if state is not None:
        cur = mb.model.config.joint_sampling.curriculum
        monitored = mb.scalars.get(cur.monitor_metric)
        if monitored is not None:
            state.update_from_val_top(mb.epoch, float(monitored))
            if state.maybe_advance_phase(mb.epoch) and cur.reset_early_stopping_on_phase_change:
                mb.wait = 0
    mb.epoch += 1
    return finished or mb.wait >= mb.patience or mb.epoch >= mb.max_epochs


def _finish(mb: _Member) -> ChempropModel:
    model = mb.model
    if mb.best_state is None:
        raise TrainingDivergedError(f"training diverged: no finite {MONITOR} in {mb.epoch} epoch(s)")
    mpnn = mb.mpnn.cpu()
    mpnn.load_state_dict({k: v.cpu() for k, v in mb.best_state.items()})
    model.mpnn = mpnn.eval()
    model.history = mb.history
    model.sampler_history = mb.sampler_rows
    state = None if mb.sampler is None else mb.sampler.curriculum_state
    model.curriculum_history = [] if state is None else list(state.history)
    model.best_score = float(mb.best)
    scores = [r.get(MONITOR, math.inf) for r in mb.history]
    model.best_epoch = int(np.nanargmin(scores)) if scores else None
    model.epochs_trained = len(mb.history)
    model.fit_seconds = mb.seconds
    model.step_seconds = mb.step_seconds
    return model
