"""Turn a run config's ``data`` section into validated training (and validation) data."""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from admet.config.schema import ChempropConfig
from admet.config.tiers import uses_tiers
from admet.data.dataset import MultitaskDataset, load_multitask_csv
from admet.data.molecule_features import check_table_columns
from admet.data.splits import fold_assignment
from admet.errors import DataError
from admet.paths import home

__all__ = [
    "PredefinedFold",
    "holdout_split",
    "load_training_data",
    "load_validation_data",
    "predefined_folds",
    "resolve_path",
]

_TRAIN, _VALIDATION = "train.csv", "validation.csv"


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
    if uses_tiers(cfg):
        raise DataError(
            f"{path}: data.tier_use / optimization.validation_qualities need quality column "
            f"{col!r}, but the file has {', '.join(map(repr, header))}"
        )
    return None


@dataclass(frozen=True)
class PredefinedFold:
    """One ``split_<i>/fold_<j>/`` folder of a ``data.data_dir`` fold tree."""

    split: int
    fold: int
    folder: Path

    @property
    def name(self) -> str:
        return f"split_{self.split}/fold_{self.fold}"

    @property
    def train_file(self) -> Path:
        return self.folder / _TRAIN

    @property
    def val_file(self) -> Path:
        return self.folder / _VALIDATION


def _numbered(folder: Path, prefix: str) -> dict[int, Path]:
    """``<prefix>_<n>*`` sub-folders by their number n (the original project's match)."""
    found = {}
    for child in folder.glob(f"{prefix}_*"):
        match = re.match(rf"{prefix}_(\d+)", child.name)
        if child.is_dir() and match:
            found[int(match.group(1))] = child
    return dict(sorted(found.items()))


def _select(available: dict[int, Path], wanted: list[int] | None, key: str, where: Path) -> list[int]:
    if wanted is None:
        return list(available)
    missing = [i for i in wanted if i not in available]
    if missing:
        raise DataError(
            f"{where}: data.{key} asks for {missing}, but only {list(available)} exist "
            f"({key.rstrip('s')}_<i> folders)"
        )
    return list(wanted)


def predefined_folds(cfg: ChempropConfig) -> list[PredefinedFold] | None:
    """The selected folds of a ``data.data_dir`` holding ``split_<i>/fold_<j>/`` folders
    (each with train.csv and validation.csv); None when the config has no such tree."""
    if not cfg.data.data_dir:
        return None
    root = resolve_path(cfg.data.data_dir)
    splits = _numbered(root, "split")
    if not splits:
        return None
    folds = []
    for i in _select(splits, cfg.data.splits, "splits", root):
        available = _numbered(splits[i], "fold")
        for j in _select(available, cfg.data.folds, "folds", splits[i]):
            fold = PredefinedFold(i, j, available[j])
            missing = [f.name for f in (fold.train_file, fold.val_file) if not f.is_file()]
            if missing:  # as the original project did: such a folder is not a fold
                warnings.warn(f"{fold.folder}: no {' or '.join(missing)}; folder skipped", stacklevel=2)
                continue
            folds.append(fold)
    if not folds:
        raise DataError(f"{root}: no split_<i>/fold_<j> folder selected (data.splits, data.folds)")
    return folds


def _default_files(cfg: ChempropConfig) -> tuple[Path, Path | None]:
    """The training and validation tables: data.data_dir's train.csv / validation.csv when
    set, else data.train_file / data.val_file."""
    if cfg.data.data_dir:
        root = resolve_path(cfg.data.data_dir)
        if not root.is_dir():
            raise DataError(f"{root}: data.data_dir not found")
        return root / _TRAIN, root / _VALIDATION
    val = cfg.data.val_file
    return resolve_path(cfg.data.train_file), None if val is None else resolve_path(val)


def load_training_data(cfg: ChempropConfig, file: str | os.PathLike[str] | None = None) -> MultitaskDataset:
    """Load the training table (``file``, else ``data.data_dir``'s train.csv, else
    ``data.train_file``) as configured, with quality labels if present. ``data.tier_use``
    is not applied here but when a fit starts (:func:`admet.data.tiers.apply_tier_use`), so
    one loaded table serves configs that use the tiers differently."""
    path = resolve_path(str(file)) if file is not None else _default_files(cfg)[0]
    if not path.is_file():
        key = "data.data_dir" if file is None and cfg.data.data_dir else "data.train_file"
        raise DataError(f"{path}: training file not found ({key})")
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
    check_table_columns(cfg.data.molecule_features, path, cfg.data.descriptor_missing)
    return ds


def load_validation_data(cfg: ChempropConfig) -> MultitaskDataset | None:
    """The fixed validation table (``data.data_dir``'s validation.csv or ``data.val_file``),
    or None when validation is a held-out fold of the training table."""
    path = _default_files(cfg)[1]
    if path is None:
        return None
    if not path.is_file():
        raise DataError(f"{path}: validation file not found")
    return load_training_data(cfg, path)


def holdout_split(
    dataset: MultitaskDataset, n_folds: int, split: str, seed: int, fold: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Train/validation row indices: fold ``fold`` of a k-fold split is the validation set."""
    assignment = fold_assignment(dataset.smiles, n_folds, seed, split)
    return np.flatnonzero(assignment != fold), np.flatnonzero(assignment == fold)
