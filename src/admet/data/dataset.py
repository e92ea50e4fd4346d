"""Loading and validating multi-task training tables.

A multi-task table has one SMILES column, one numeric column per task (an empty cell
means "not measured") and optionally a quality column. :func:`load_multitask_csv`
turns such a file into a :class:`MultitaskDataset`: canonical SMILES, a float target
matrix with NaN for missing labels, and per-row quality labels. Every problem with the
file is reported as a :class:`~admet.errors.DataError` naming the file, the line and the
offending value, so a user can fix the input without reading code.

Over 350 lines because loading is one pass over the table whose every check (columns,
SMILES, targets, quality labels) names file, line and value, and the deduplication of
replicates across quality tiers is part of it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from rdkit import Chem, RDLogger

from admet.errors import DataError

__all__ = ["LoadReport", "MultitaskDataset", "canonical_smiles", "load_multitask_csv", "read_table"]

logger = logging.getLogger(__name__)

DEFAULT_QUALITIES: tuple[str, ...] = ("high", "medium", "low")
_HEADER_LINES = 1  # file line of data row i is i + 1 + _HEADER_LINES


def canonical_smiles(smiles: str) -> str | None:
    """RDKit-canonical SMILES of ``smiles``, or None when RDKit cannot parse it."""
    if not isinstance(smiles, str) or not smiles.strip():
        return None
    RDLogger.DisableLog("rdApp.*")
    try:
        mol = Chem.MolFromSmiles(smiles.strip())
    finally:
        RDLogger.EnableLog("rdApp.*")
    return None if mol is None else Chem.MolToSmiles(mol)


@dataclass(frozen=True)
class LoadReport:
    """What loading did to the rows of a file, for logs and summaries."""

    n_rows: int
    n_invalid_smiles: int = 0
    invalid_smiles_lines: tuple[int, ...] = ()
    n_replicates_averaged: int = 0
    n_labels_dropped_lower_tier: int = 0
    n_rows_dropped_lower_tier: int = 0


@dataclass
class MultitaskDataset:
    """A validated multi-task regression table.

    Attributes:
        smiles: RDKit-canonical SMILES, one per row.
        Y: float array of shape (N, T); NaN marks a missing label.
        task_names: the T target column names, in order.
        quality: per-row quality label, or None when the table has no quality column.
        qualities: the allowed quality labels, best first.
        extra: the remaining source columns, row-aligned with ``smiles``.
        report: counts of what was dropped or merged while loading.
    """

    smiles: list[str]
    Y: np.ndarray
    task_names: list[str]
    quality: list[str] | None = None
    qualities: tuple[str, ...] = DEFAULT_QUALITIES
    extra: pd.DataFrame = field(default_factory=pd.DataFrame)
    report: LoadReport | None = None

    def __post_init__(self) -> None:
        self.Y = np.asarray(self.Y, dtype=float)
        if self.Y.ndim != 2 or self.Y.shape != (len(self.smiles), len(self.task_names)):
            raise ValueError(
                f"Y has shape {self.Y.shape}, expected ({len(self.smiles)}, {len(self.task_names)})"
            )
        if self.quality is not None and len(self.quality) != len(self.smiles):
            raise ValueError("quality must have one label per molecule")

    def __len__(self) -> int:
        return len(self.smiles)

    @property
    def n_tasks(self) -> int:
        return len(self.task_names)

    def label_counts(self) -> dict[str, int]:
        """Number of labels per task."""
        return {t: int(n) for t, n in zip(self.task_names, np.isfinite(self.Y).sum(0), strict=True)}

    def subset(self, index: Sequence[int] | np.ndarray) -> MultitaskDataset:
        """The rows at ``index`` as a new dataset (order kept)."""
        idx = np.asarray(index, dtype=int)
        return MultitaskDataset(
            smiles=[self.smiles[i] for i in idx],
            Y=self.Y[idx],
            task_names=list(self.task_names),
            quality=None if self.quality is None else [self.quality[i] for i in idx],
            qualities=self.qualities,
            # a dataset built without extra columns has an empty frame: nothing to index
            extra=self.extra.iloc[idx].reset_index(drop=True) if len(self.extra) else self.extra,
            report=self.report,
        )

    @classmethod
    def concat(cls, parts: Sequence[MultitaskDataset]) -> MultitaskDataset:
        """The rows of ``parts`` one after another (same tasks; quality kept if all have it)."""
        if not parts:
            raise ValueError("concat needs at least one dataset")
        tasks = list(parts[0].task_names)
        if any(list(p.task_names) != tasks for p in parts):
            raise ValueError("datasets to concatenate must have the same tasks")
        has_quality = all(p.quality is not None for p in parts)
        return cls(
            smiles=[s for p in parts for s in p.smiles],
            Y=np.concatenate([p.Y for p in parts]),
            task_names=tasks,
            quality=[q for p in parts for q in p.quality or []] if has_quality else None,
            qualities=parts[0].qualities,
            extra=pd.concat([p.extra for p in parts], ignore_index=True),
        )

    def to_frame(self, smiles_col: str = "SMILES", quality_col: str = "Quality") -> pd.DataFrame:
        """The dataset as a table in the on-disk layout."""
        frame = pd.DataFrame({smiles_col: self.smiles})
        for j, task in enumerate(self.task_names):
            frame[task] = self.Y[:, j]
        if self.quality is not None:
            frame[quality_col] = self.quality
        for col in self.extra.columns:
            if col not in frame.columns:
                frame[col] = self.extra[col].to_numpy()
        return frame


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A CSV file as strings (empty cells stay ""), with one-line errors for a missing,
    empty, unreadable or header-only file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0]})") from None
    if frame.empty:
        raise DataError(f"{path}: file has a header but no data rows")
    return frame


def load_multitask_csv(
    path: str | os.PathLike[str],
    smiles_col: str,
    target_cols: Sequence[str],
    quality_col: str | None = None,
    *,
    qualities: Sequence[str] = DEFAULT_QUALITIES,
    on_invalid_smiles: Literal["error", "skip"] = "error",
    deduplicate: bool = True,
    max_rows: int | None = None,
    seed: int = 0,
) -> MultitaskDataset:
    """Load, validate and deduplicate a multi-task CSV file.

    Args:
        path: the CSV file.
        smiles_col: the column with SMILES.
        target_cols: the task columns, in the order of ``Y``'s columns.
        quality_col: the column with quality labels, or None.
        qualities: the allowed quality labels, best first (defines "higher tier").
        on_invalid_smiles: ``"error"`` stops at the first unparsable SMILES; ``"skip"``
            drops such rows and reports how many and where.
        deduplicate: average replicate measurements of one molecule within a quality
            tier, and let the higher tier win on labels measured in several tiers.
        max_rows: keep a seeded random subset of at most this many rows (quick runs).
        seed: seed for ``max_rows`` subsampling.

    Raises:
        DataError: the file is missing, empty, lacks a column, has an unparsable SMILES,
            a non-numeric target cell, a task without labels, or an unknown quality.
    """
    path = Path(path)
    name = str(path)
    if on_invalid_smiles not in ("error", "skip"):
        raise ValueError(f"on_invalid_smiles must be 'error' or 'skip', not {on_invalid_smiles!r}")
    frame = read_table(path)

    target_cols = list(target_cols)
    wanted = [smiles_col, *target_cols] + ([quality_col] if quality_col else [])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataError(
            f"{name}: missing column(s) {', '.join(map(repr, missing))}; "
            f"the file has {', '.join(map(repr, frame.columns))}"
        )
    if len(set(target_cols)) != len(target_cols):
        raise DataError(f"{name}: target columns listed twice: {target_cols}")

    lines = np.arange(len(frame)) + 1 + _HEADER_LINES
    Y = _parse_targets(frame, target_cols, lines, name)

    quality: np.ndarray | None = None
    if quality_col:
        quality = frame[quality_col].str.strip().to_numpy()
        bad = ~np.isin(quality, list(qualities))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{name}, line {lines[i]}, column {quality_col!r}: quality {quality[i]!r} "
                f"is not one of {list(qualities)}"
            )

    canon = [canonical_smiles(s) for s in frame[smiles_col]]
    invalid = np.array([c is None for c in canon])
    invalid_lines: tuple[int, ...] = ()
    if invalid.any():
        first = int(np.flatnonzero(invalid)[0])
        if on_invalid_smiles == "error":
            raise DataError(
                f"{name}, line {lines[first]}, column {smiles_col!r}: cannot parse SMILES "
                f"{frame[smiles_col].iloc[first]!r} (use on_invalid_smiles='skip' to drop such rows)"
            )
        invalid_lines = tuple(int(x) for x in lines[invalid])
        logger.warning(
            "%s: skipped %d row(s) with unparsable SMILES (first lines: %s)",
            name,
            int(invalid.sum()),
            ", ".join(map(str, invalid_lines[:5])),
        )
    keep = ~invalid
    smiles = np.array([c for c in canon if c is not None], dtype=object)
    Y = Y[keep]
    quality = None if quality is None else quality[keep]
    extra_cols = [c for c in frame.columns if c not in wanted]
    extra = frame.loc[keep, extra_cols].reset_index(drop=True)

    for j, col in enumerate(target_cols):
        if not np.isfinite(Y[:, j]).any():
            raise DataError(f"{name}, column {col!r}: target column has no labels")

    n_rows = int(keep.sum())
    averaged = dropped_labels = dropped_rows = 0
    if deduplicate:
        smiles, Y, quality, extra, averaged, dropped_labels, dropped_rows = _deduplicate(
            smiles, Y, quality, extra, list(qualities)
        )
        if averaged or dropped_labels:
            logger.info(
                "%s: averaged %d replicate row(s); %d lower-tier label(s) replaced by a "
                "higher tier (%d row(s) left empty and dropped)",
                name,
                averaged,
                dropped_labels,
                dropped_rows,
            )

    if max_rows is not None and len(smiles) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(len(smiles), max_rows, replace=False))
        smiles, Y = smiles[rows], Y[rows]
        quality = None if quality is None else quality[rows]
        extra = extra.iloc[rows].reset_index(drop=True)

    return MultitaskDataset(
        smiles=[str(s) for s in smiles],
        Y=Y,
        task_names=target_cols,
        quality=None if quality is None else [str(q) for q in quality],
        qualities=tuple(qualities),
        extra=extra,
        report=LoadReport(
            n_rows=n_rows,
            n_invalid_smiles=len(invalid_lines),
            invalid_smiles_lines=invalid_lines[:20],
            n_replicates_averaged=averaged,
            n_labels_dropped_lower_tier=dropped_labels,
            n_rows_dropped_lower_tier=dropped_rows,
        ),
    )


def _parse_targets(frame: pd.DataFrame, cols: list[str], lines: np.ndarray, name: str) -> np.ndarray:
    """Target cells as floats (empty = NaN); the first non-numeric cell is an error."""
    Y = np.empty((len(frame), len(cols)), dtype=float)
    for j, col in enumerate(cols):
        raw = frame[col].str.strip()
        values = pd.to_numeric(raw.replace({"": None, "NA": None, "NaN": None, "nan": None}), errors="coerce")
        bad = values.isna().to_numpy() & ~raw.isin(["", "NA", "NaN", "nan"]).to_numpy()
        bad |= np.isinf(values.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{name}, line {lines[i]}, column {col!r}: target value {raw.iloc[i]!r} "
                "is not a finite number"
            )
        Y[:, j] = values.to_numpy(dtype=float, na_value=np.nan)
    return Y


def _deduplicate(
    smiles: np.ndarray,
    Y: np.ndarray,
    quality: np.ndarray | None,
    extra: pd.DataFrame,
    qualities: list[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, pd.DataFrame, int, int, int]:
    """Merge rows of the same molecule: replicates within a tier are averaged (NaN-aware);
    a label measured in several tiers keeps only the best tier's value."""
    tier = (
        np.zeros(len(smiles), dtype=int)
        if quality is None
        else np.array([qualities.index(q) for q in quality])
    )
    key = pd.DataFrame({"smiles": smiles, "tier": tier})
    groups = key.groupby(["smiles", "tier"], sort=False).indices
    n_groups = len(groups)
    averaged = len(smiles) - n_groups
    first_rows = np.array([idx[0] for idx in groups.values()], dtype=int)
    Yg = np.full((n_groups, Y.shape[1]), np.nan)
    for g, idx in enumerate(groups.values()):
        block = Y[idx]
        has = np.isfinite(block).any(0)
        if has.any():
            Yg[g, has] = np.nanmean(block[:, has], axis=0)
    gs = smiles[first_rows]
    gt = tier[first_rows]

    # Higher tier wins: blank lower-tier labels that a better tier also measured.
    dropped_labels = 0
    order = np.lexsort((gt, gs))
    best_seen: dict[str, np.ndarray] = {}
    for g in order:
        seen = best_seen.get(gs[g])
        labelled = np.isfinite(Yg[g])
        if seen is None:
            best_seen[gs[g]] = labelled.copy()
            continue
        clash = labelled & seen
        dropped_labels += int(clash.sum())
        Yg[g, clash] = np.nan
        seen |= labelled
    # A lower-tier row whose labels were all superseded disappears; a molecule that was
    # unlabelled from the start keeps its single row.
    nonempty = np.isfinite(Yg).any(1)
    codes = pd.factorize(gs)[0]
    keep = nonempty | (np.bincount(codes)[codes] == 1)
    dropped_rows = int((~keep).sum())
    rows = first_rows[keep]
    return (
        gs[keep],
        Yg[keep],
        None if quality is None else quality[rows],
        extra.iloc[rows].reset_index(drop=True),
        averaged,
        dropped_labels,
        dropped_rows,
    )
