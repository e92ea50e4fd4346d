"""The parts a fit is built from, read off the run config.

What: :func:`build_mpnn` (message passing, the registered aggregation and head, Chemprop's
criterion with the task weights, the target ``UnscaleTransform`` and the LR schedule of
:func:`admet.model.schedule.noam_schedule`), and the training samplers registered in
:data:`admet.config.registry.SAMPLERS` (``shuffle``: Chemprop's seeded shuffle, ``joint``:
a :class:`JointSampler` with the ``joint_sampling`` settings and, when enabled, the quality
curriculum).

Why here: building is the same for a fit, the stacked fit and a model loaded from its
folder; kept apart from the Trainer orchestration so each reads on its own. Importing this
module registers the samplers (importing :mod:`admet.model.model` imports it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from chemprop import nn as cnn

from admet.config import ChempropConfig, CurriculumPhaseConfig
from admet.config.registry import AGGREGATIONS, SAMPLERS
from admet.data import MultitaskDataset
from admet.model.heads import build_predictor
from admet.model.layers import BondMessagePassing
from admet.model.mpnn import MultitaskMPNN
from admet.model.schedule import noam_schedule
from admet.sampling import CurriculumState, JointSampler

if TYPE_CHECKING:
    from chemprop.featurizers import SimpleMoleculeMolGraphFeaturizer

__all__ = ["CRITERIA", "build_mpnn", "curriculum_state"]

CRITERIA = {"mae": cnn.metrics.MAE, "mse": cnn.metrics.MSE}


def build_mpnn(
    config: ChempropConfig,
    featurizer: SimpleMoleculeMolGraphFeaturizer,
    task_names: Sequence[str],
    mean: np.ndarray,
    scale: np.ndarray,
    descriptor_scaler: tuple[np.ndarray, np.ndarray] | None = None,
) -> MultitaskMPNN:
    """A freshly initialised :class:`MultitaskMPNN` for ``config``: ``featurizer`` gives the
    atom and bond feature sizes, ``mean``/``scale`` the target scaling its output undoes.

    ``descriptor_scaler``: the (mean, scale) of the molecule descriptors
    (``data.molecule_features``) on the training fold, as Chemprop does it: a
    ``ScaleTransform`` (``X_d_transform``, applied in eval mode to raw descriptors; training
    and validation batches come scaled already), the descriptors concatenated to the
    aggregated embedding and the head's input grown by their count."""
    m, opt = config.model, config.optimization
    mp = BondMessagePassing(
        d_v=featurizer.atom_fdim,
        d_e=featurizer.bond_fdim,
        d_h=m.message_hidden_dim,
        depth=m.depth,
        dropout=m.dropout,
        activation=m.activation,
    )
    task_weights = None if opt.task_weights is None else torch.tensor(opt.task_weights)
    weights = torch.ones(len(task_names)) if task_weights is None else task_weights
    ffn = build_predictor(
        m,
        n_tasks=len(task_names),
        input_dim=mp.output_dim + (0 if descriptor_scaler is None else len(descriptor_scaler[0])),
        criterion=CRITERIA[opt.criterion](task_weights=weights),
        output_transform=cnn.UnscaleTransform(mean, scale),
    )
    schedule = noam_schedule(opt)  # warmup clamped: Chemprop's needs a cooldown epoch
    mpnn = MultitaskMPNN(
        mp,
        AGGREGATIONS.builder(m.aggregation)(),
        ffn,
        batch_norm=m.batch_norm,
        warmup_epochs=schedule.warmup_epochs,
        init_lr=schedule.init_lr,
        max_lr=schedule.max_lr,
        final_lr=schedule.final_lr,
        X_d_transform=None if descriptor_scaler is None else cnn.ScaleTransform(*descriptor_scaler),
    )
    mpnn.schedule = schedule
    return mpnn


def curriculum_state(cfg: ChempropConfig) -> CurriculumState | None:
    """The quality curriculum's starting state, or None when it is off."""
    js = cfg.joint_sampling
    cur = js.curriculum
    if not (js.enabled and cur.enabled):
        return None
    return CurriculumState(
        qualities=list(cur.qualities),
        patience=cur.patience,
        min_delta=cur.min_delta,
        config=CurriculumPhaseConfig(
            phase_proportions=None if cur.phase_proportions is None else dict(cur.phase_proportions),
            min_high_quality_proportion=cur.min_high_quality_proportion,
        ),
    )


@SAMPLERS.register("shuffle")
def _shuffle(model: Any, train: MultitaskDataset) -> None:
    """Chemprop's seeded shuffle: no sampler object (the loaders shuffle by ``optimization.seed``)."""
    return None


@SAMPLERS.register("joint")
def _joint_sampler(model: Any, train: MultitaskDataset) -> JointSampler:
    """A :class:`JointSampler` with the ``joint_sampling`` settings (task oversampling and,
    when enabled, the quality curriculum). ``model``: the :class:`ChempropModel` to fit."""
    cfg = model.config
    js = cfg.joint_sampling
    state = curriculum_state(cfg)
    return JointSampler(
        train.Y,
        quality_labels=train.quality if state is not None else None,
        curriculum_state=state,
        task_alpha=js.task_oversampling.alpha,
        composition_mode=js.composition_mode,
        num_samples=js.num_samples,
        seed=js.seed if js.seed is not None else cfg.optimization.seed,
        increment_seed_per_epoch=js.increment_seed_per_epoch,
        log_weight_stats=js.log_weight_stats,
        count_normalize=js.curriculum.count_normalize,
        task_names=model.output_tasks,
    )
