"""Which validation labels the monitored metrics read: the rows of the tiers in
``optimization.validation_qualities`` and the target (not auxiliary) columns.

What: a :class:`ValidationScope` per validation table. Every metric a fit or a study
decides by reads the labels it keeps: ``val_loss`` and ``val/mae_macro`` (early stopping,
the best checkpoint, the curriculum's monitor; in :mod:`admet.model.mpnn` for a Lightning
fit and :mod:`admet.model.stacked_fit` for stacked members), and the fold metrics behind
an ensemble's CV score (the study objective). The per-tier ``val/mae/<tier>`` scalars are
logged for every tier, outside the scope, as before.

Why its own module: the two training paths and the ensemble apply the same restriction;
one object says it once, from the config (:mod:`admet.config.tiers`) and the table
(:func:`admet.data.validation_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from admet.data import MultitaskDataset, validation_rows
from admet.errors import DataError

__all__ = ["ValidationScope"]


@dataclass(frozen=True)
class ValidationScope:
    """The validation labels that count.

    Attributes:
        rows: per validation row, whether its tier counts (None: every row).
        n_scored: the leading columns that are scored (the target columns); the columns
            after them are auxiliary tasks, predicted but never scored.
    """

    rows: np.ndarray | None
    n_scored: int

    @classmethod
    def of(cls, cfg: object, val: MultitaskDataset) -> ValidationScope:
        """The scope of the validation table ``val`` under the run config ``cfg``.

        Raises:
            DataError: ``optimization.validation_qualities`` keeps no row of ``val`` (a fold
                without those tiers would otherwise fail as a diverged fit).
        """
        rows = validation_rows(val, cfg)
        if rows is not None and len(rows) and not rows.any():
            wanted = list(cfg.optimization.validation_qualities)  # type: ignore[attr-defined]
            raise DataError(
                f"optimization.validation_qualities={wanted}: the validation table "
                f"({len(rows)} rows) has no row of these tiers"
            )
        return cls(rows, len(cfg.data.target_cols))  # type: ignore[attr-defined]

    @classmethod
    def everything(cls, n_tasks: int) -> ValidationScope:
        """Every row and every one of ``n_tasks`` columns (a fit without tier settings)."""
        return cls(None, n_tasks)

    def targets(self, Y: np.ndarray) -> np.ndarray:
        """``Y`` (rows x all output columns) with the labels outside the scope set to NaN:
        what a loss or metric over all columns then reads."""
        out = np.array(Y, dtype=float, copy=True)
        out[:, self.n_scored :] = np.nan
        if self.rows is not None:
            out[~self.rows] = np.nan
        return out

    def scored(self, Y: np.ndarray) -> np.ndarray:
        """:meth:`targets` of the scored columns only (rows x target columns)."""
        return self.targets(Y)[:, : self.n_scored]
