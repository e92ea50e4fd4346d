"""Turn a run config's ``data`` section into validated training (and validation) data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from admet.config.schema import ChempropConfig
from admet.data.dataset import MultitaskDataset, load_multitask_csv
from admet.data.splits import fold_assignment
from admet.errors import DataError
from admet.paths import home

__all__ = ["holdout_split", "load_training_data", "resolve_path"]


def resolve_path(path: str) -> Path:
    """A config path: absolute as is, relative to the working directory (ADMET_HOME)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else home() / p


def _quality_col(cfg: ChempropConfig, path: Path) -> str | None:
    """The quality column to read: required with a curriculum, optional otherwise (it
    enables per-tier validation metrics when present)."""
    cur = cfg.joint_sampling.curriculum
    col = cur.quality_col
    if not col:
        return None
    header = pd.read_csv(path, nrows=0).columns
    if col in header:
        return col
    if cfg.joint_sampling.enabled and cur.enabled:
        raise DataError(
            f"{path}: the curriculum needs quality column {col!r}, but the file has "
            f"{', '.join(map(repr, header))}"
        )
    return None


def load_training_data(cfg: ChempropConfig, file: str | None = None) -> MultitaskDataset:
    """Load ``data.train_file`` (or ``file``) as configured, with quality labels if present."""
    path = resolve_path(file or cfg.data.train_file)
    if not path.is_file():
        raise DataError(f"{path}: training file not found (data.train_file)")
    qualities = list(cfg.joint_sampling.curriculum.qualities)
    quality_col = _quality_col(cfg, path)
    ds = load_multitask_csv(
        path,
        cfg.data.smiles_col,
        cfg.data.target_cols,
        quality_col,
        qualities=qualities if quality_col else ("high", "medium", "low"),
        on_invalid_smiles=cfg.data.on_invalid_smiles,  # type: ignore[arg-type]
        max_rows=cfg.data.max_molecules,
        seed=cfg.optimization.seed,
    )
    if quality_col is None:
        ds.quality = None
    return ds


def holdout_split(
    dataset: MultitaskDataset, n_folds: int, split: str, seed: int, fold: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Train/validation row indices: fold ``fold`` of a k-fold split is the validation set."""
    assignment = fold_assignment(dataset.smiles, n_folds, seed, split)
    return np.flatnonzero(assignment != fold), np.flatnonzero(assignment == fold)
