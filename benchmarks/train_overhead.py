"""Training overhead of ChempropModel with joint sampling vs plain Chemprop.

Same architecture, batch size and data, in the same process, A/B repeated:
(a) Chemprop's ``build_dataloader`` (seeded shuffle) and a plain ``MPNN`` in a Lightning
    ``Trainer``, one epoch;
(b) ``ChempropModel`` with joint sampling (alpha 0.5, curriculum on), one epoch, including
    its callbacks (sampler statistics, curriculum, per-task/per-quality validation).
Both featurise through the same warm cache, so the ratio isolates training overhead.
Target: median ratio (b)/(a) <= 1.05.

    python benchmarks/train_overhead.py [--repeats 5] [--max-molecules 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import lightning.pytorch as pl
import numpy as np
from chemprop import nn as cnn
from chemprop.data import build_dataloader
from chemprop.models import MPNN

from admet.config import load_config
from admet.data import build_molecule_dataset, default_cache
from admet.data.fang2023 import ensure_prepared
from admet.data.training import holdout_split, load_training_data
from admet.model.model import ChempropModel

warnings.filterwarnings("ignore")


def plain_epoch(cfg, train, val) -> float:
    m = cfg.model
    pl.seed_everything(0, verbose=False)
    tr = build_molecule_dataset(train.smiles, train.Y, default_cache())
    va = build_molecule_dataset(val.smiles, val.Y, default_cache())
    scaler = tr.normalize_targets()
    va.normalize_targets(scaler)
    featurizer = default_cache().featurizer
    mp = cnn.BondMessagePassing(
        d_v=featurizer.atom_fdim, d_e=featurizer.bond_fdim, d_h=m.message_hidden_dim, depth=m.depth
    )
    ffn = cnn.RegressionFFN(
        n_tasks=train.Y.shape[1],
        input_dim=mp.output_dim,
        hidden_dim=m.hidden_dim,
        n_layers=m.num_layers,
        output_transform=cnn.UnscaleTransform.from_standard_scaler(scaler),
    )
    model = MPNN(mp, cnn.MeanAggregation(), ffn, warmup_epochs=0)
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    loaders = (
        build_dataloader(tr, cfg.optimization.batch_size, seed=0),
        build_dataloader(va, cfg.optimization.batch_size, shuffle=False),
    )
    t0 = time.perf_counter()
    trainer.fit(model, *loaders)
    return time.perf_counter() - t0


def joint_epoch(cfg, train, val) -> float:
    model = ChempropModel(cfg)
    t0 = time.perf_counter()
    model.fit(train, val)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-molecules", type=int, default=2000)
    args = parser.parse_args()
    folder = ensure_prepared()
    cfg = load_config(
        "configs/0-experiment/single_model.yaml",
        [
            f"data.train_file={folder / 'train.csv'}",
            f"data.max_molecules={args.max_molecules}",
            "optimization.max_epochs=1",
            "optimization.warmup_epochs=0",
            "optimization.accelerator=cpu",
            "joint_sampling.enabled=true",
            "joint_sampling.task_oversampling.alpha=0.5",
            "joint_sampling.curriculum.enabled=true",
            "joint_sampling.log_weight_stats=false",
            "model.dropout=0.0",
        ],
    )
    data = load_training_data(cfg)
    tr, va = holdout_split(data, 5, "scaffold", 0)
    train, val = data.subset(tr), data.subset(va)
    default_cache().graphs(data.smiles)  # both arms start warm
    plain_epoch(cfg, train, val)  # warm-up of both code paths
    joint_epoch(cfg, train, val)
    a, b = [], []
    for _ in range(args.repeats):
        a.append(plain_epoch(cfg, train, val))
        b.append(joint_epoch(cfg, train, val))
    ma, mb = statistics.median(a), statistics.median(b)
    print(
        f"molecules: {len(train)} train / {len(val)} val, batch {cfg.optimization.batch_size}, "
        f"hidden {cfg.model.message_hidden_dim}, {args.repeats} repeats"
    )
    print(f"(a) Chemprop build_dataloader + MPNN:        median {ma:.3f} s  (all: {np.round(a, 3).tolist()})")
    print(f"(b) ChempropModel, joint sampling + curric.: median {mb:.3f} s  (all: {np.round(b, 3).tolist()})")
    print(f"ratio (b)/(a): {mb / ma:.3f}  target <= 1.05: {'met' if mb / ma <= 1.05 else 'NOT met'}")


if __name__ == "__main__":
    main()
