"""Quality tiers applied to a table: the uses of ``data.tier_use`` and the validation rows of
``optimization.validation_qualities``.

What: :func:`apply_tier_use` turns a loaded table into the one a config trains on (rows of
a ``drop`` tier left out; labels of an ``auxiliary_task`` tier moved to their own
``<task>_<tier>`` columns after the target columns); :func:`validation_rows` says which
rows of a validation table the monitored metrics read.

Why here: the rules live in the config layer (:mod:`admet.config.tiers`); this is where
they meet the rows. The training table is loaded without them (:func:`load_training_data`),
and the model applies them when a fit starts, so that one table loaded by an HPO worker
serves every trial's tier use.
"""

from __future__ import annotations

import numpy as np

from admet.config.tiers import auxiliary_tasks, output_tasks, tier_names, tier_use
from admet.data.dataset import MultitaskDataset
from admet.errors import DataError

__all__ = ["apply_tier_use", "validation_rows"]


def _quality(ds: MultitaskDataset, key: str) -> np.ndarray:
    if ds.quality is None:
        raise DataError(
            f"{key} needs the table's quality column (joint_sampling.curriculum.quality_col), "
            "but the table has none"
        )
    return np.asarray(ds.quality, dtype=object)


def apply_tier_use(ds: MultitaskDataset, cfg: object) -> MultitaskDataset:
    """The table ``cfg`` trains on: ``drop`` tiers' rows removed and ``auxiliary_task``
    tiers' labels moved from each target column to ``<task>_<tier>`` (the row keeps its
    tier, so a curriculum still phases it in). A table that has the config's output
    columns already is returned as it is, and so is every table when all tiers train.

    Example:
        >>> import numpy as np
        >>> from admet.config import load_config
        >>> uses = "data.tier_use={low: auxiliary_task, medium: drop}"
        >>> cfg = load_config({}, ["data.target_cols=[HLM]", uses])
        >>> ds = MultitaskDataset(["C", "CC", "CCC"], np.array([[1.0], [2.0], [3.0]]), ["HLM"],
        ...                       quality=["high", "medium", "low"])
        >>> out = apply_tier_use(ds, cfg)
        >>> out.task_names, out.Y.tolist(), out.quality
        (['HLM', 'HLM_low'], [[1.0, nan], [nan, 3.0]], ['high', 'low'])

    Raises:
        DataError: the config uses tiers and the table has no quality column, or the table's
            columns are neither the target columns nor the output columns.
    """
    targets = list(cfg.data.target_cols)  # type: ignore[attr-defined]
    tiers = tier_names(cfg)
    dropped = [t for t in tiers if tier_use(cfg, t) == "drop"]
    auxiliary = [t for t in tiers if tier_use(cfg, t) == "auxiliary_task"]
    if not dropped and not auxiliary:
        return ds
    if auxiliary and list(ds.task_names) == output_tasks(cfg):
        return ds  # applied already (dropping again would change nothing either)
    if list(ds.task_names) != targets:
        raise DataError(f"tier use needs a table with columns {targets}, got {list(ds.task_names)}")
    quality = _quality(ds, "data.tier_use")
    if dropped:
        ds = ds.subset(np.flatnonzero(~np.isin(quality, dropped)))
        quality = np.asarray(ds.quality, dtype=object)
    Y = ds.Y.copy()
    blocks = [Y]
    for tier in auxiliary:
        rows = quality == tier
        block = np.full_like(Y, np.nan)
        block[rows] = ds.Y[rows]
        Y[rows] = np.nan
        blocks.append(block)
    names = [*targets, *auxiliary_tasks(cfg)]
    return MultitaskDataset(
        smiles=list(ds.smiles),
        Y=np.hstack(blocks),
        task_names=names,
        quality=list(ds.quality) if ds.quality is not None else None,
        qualities=ds.qualities,
        extra=ds.extra,
        report=ds.report,
    )


def validation_rows(ds: MultitaskDataset, cfg: object) -> np.ndarray | None:
    """Per row of the validation table ``ds``, whether its tier is one of
    ``optimization.validation_qualities`` (None: that key is unset, every row counts).

    Raises:
        DataError: the key is set and the table has no quality column.
    """
    wanted = cfg.optimization.validation_qualities  # type: ignore[attr-defined]
    if wanted is None:
        return None
    return np.isin(_quality(ds, "optimization.validation_qualities"), list(wanted))
