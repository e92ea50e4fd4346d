"""The benchmark's cells and their store: which variants and protocols exist, the run
folder's ``cells.jsonl`` (one finished cell a line, the resume point) and ``run.json`` (one
protocol and one config per variant a run).

Why here: resuming a run, adding a variant to it and reading cells computed elsewhere all
go through this store; statistics, rendering and orchestration only read cells.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from admet.config import LATER_KEYS, without_unset_later_keys
from admet.data import fang2023
from admet.errors import ConfigError

__all__ = [
    "CELLS_FILE",
    "PROTOCOLS",
    "TIER_VARIANTS",
    "VARIANTS",
    "check_run",
    "comparable",
    "load_cells",
    "table_order",
]

logger = logging.getLogger(__name__)

PROTOCOLS = ("strict", "imputation")
_LOW_TIER = ["joint_sampling.curriculum.qualities=[high, medium, low]"]  # the augmented table's tiers
# admet variants: overrides of the benchmark config; None: Chemprop's own CLI (chemprop: its
# defaults; chemprop-hpopt: the best config of a budgeted `chemprop hpopt` on the training
# table; chemprop-tuned: the benchmark config's hyperparameters where Chemprop can express them)
VARIANTS: dict[str, list[str] | None] = {
    "joint": [],
    "chemprop-hpopt": None,
    "baseline": ["joint_sampling.enabled=false", "joint_sampling.curriculum.enabled=false"],
    "chemprop-tuned": None,
    "chemprop": None,
    # the four ways to use a low quality tier (issue 27; run on the table of `prepare
    # fang2023 --augment low`, with --processed): left out; trained in the endpoints' own
    # columns, plainly shuffled or phased in by the curriculum; or as auxiliary tasks
    "tiers-drop": [*_LOW_TIER, "data.tier_use.low=drop"],
    "tiers-train": [*_LOW_TIER, "data.tier_use.low=train", "joint_sampling.curriculum.enabled=false"],
    "tiers-curriculum": [
        *_LOW_TIER,
        "data.tier_use.low=train",
        "joint_sampling.enabled=true",
        "joint_sampling.curriculum.enabled=true",
    ],
    "tiers-aux": [*_LOW_TIER, "data.tier_use.low=auxiliary_task"],
}
TIER_VARIANTS = ("tiers-drop", "tiers-train", "tiers-curriculum", "tiers-aux")
CELLS_FILE = "cells.jsonl"


def table_order(variant: str, endpoint: str) -> tuple[int, int, str, str]:
    """Table order: variants as in ``VARIANTS``, endpoints as in the paper; others last."""
    v = list(VARIANTS).index(variant) if variant in VARIANTS else len(VARIANTS)
    e = fang2023.ENDPOINTS.index(endpoint) if endpoint in fang2023.ENDPOINTS else len(fang2023.ENDPOINTS)
    return v, e, variant, endpoint


def load_cells(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    cells = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            cells.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("%s, line %d: unreadable cell (an interrupted write); it will be rerun", path, i)
    return cells


# Settings that say where or how a cell runs, not what it computes: they may differ
# between the machines and processes that fill one table.
_EXECUTION_KEYS = {
    "data": ("train_file", "featurization_cache_dir"),
    "optimization": ("accelerator",),
    "ensemble": ("n_jobs", "batched"),
    "mlflow": None,
}


# Keys the config gained after a run folder may have been started, at their defaults: such
# a run resumes (the config hash's later keys, and the batch sampler's name).
_LATER_DEFAULTS = {**LATER_KEYS, ("joint_sampling", "sampler"): None}


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A variant's config without its execution settings (``_EXECUTION_KEYS``) and without
    keys added since at their defaults (``_LATER_DEFAULTS``)."""
    plain = dict(without_unset_later_keys(json.loads(json.dumps(config, default=float)), _LATER_DEFAULTS))
    for section, keys in _EXECUTION_KEYS.items():
        if keys is None:
            plain.pop(section, None)
        for key in keys or ():
            plain.get(section, {}).pop(key, None)
    return plain


def check_run(out_dir: Path, protocol: str, configs: dict[str, dict[str, Any]]) -> None:
    """A run folder belongs to one protocol and one config per variant; resuming with another
    is an error. A variant new to the run is added, so a table can grow variant by variant,
    or from cells computed on other machines."""
    path = out_dir / "run.json"
    before = json.loads(path.read_text()) if path.is_file() else {"protocol": protocol, "config": {}}
    if before.get("protocol") != protocol:
        raise ConfigError(f"{out_dir}: this run was started with a different protocol; use a new --run")
    stored = before.setdefault("config", {})
    for variant, config in configs.items():
        if variant in stored and comparable(stored[variant]) != comparable(config):
            raise ConfigError(
                f"{out_dir}: this run was started with a different config for variant {variant!r}; "
                "use a new --run to change it"
            )
        stored.setdefault(variant, json.loads(json.dumps(config, default=float)))
    path.write_text(json.dumps(before, indent=1, default=float))
