"""What identifies a run config: :func:`config_hash`, and the keys added to the schema after
its values were pinned.

Why its own module: an HPO trial's finished members are cached on disk under the hash, and
a benchmark run folder is resumed only with the config it was started with; both must
treat a config written before a key existed like one that holds that key's default.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from admet.config.loader import config_to_dict
from admet.config.schema import ChempropConfig

__all__ = ["LATER_KEYS", "config_hash", "without_unset_later_keys"]


def config_hash(cfg: ChempropConfig | Mapping[str, Any]) -> str:
    """A short stable hash of a run config (16 hex digits of a SHA-256 of its JSON with
    sorted keys); a config's dict from :func:`config_to_dict` gives the same value.

    An HPO trial's finished members are cached on disk under it, so that the retry of a
    killed trial reuses them: the value of a given config must never change (a test pins
    two).
    """
    tree = cfg if isinstance(cfg, Mapping) else config_to_dict(cfg)
    tree = without_unset_later_keys(tree)
    payload = json.dumps(tree, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# Keys added to the schema after config_hash was pinned, with their defaults: left out of
# the hash at their default, so a config that does not use them hashes as before (and a
# retried trial of an older study finds its members).
# (joint_sampling.sampler came before the values were pinned: it stays in the hash.)
LATER_KEYS: dict[tuple[str, str], Any] = {
    ("data", "tier_use"): {},
    ("optimization", "validation_qualities"): None,
    ("data", "molecule_features"): [],
    ("data", "descriptor_missing"): "error",
}


def without_unset_later_keys(
    tree: Mapping[str, Any], later: Mapping[tuple[str, str], Any] = LATER_KEYS
) -> Mapping[str, Any]:
    """``tree`` without the ``later`` keys (default :data:`LATER_KEYS`) that hold their
    default: a config written before those keys existed compares and hashes the same."""
    drop = [
        (section, key)
        for (section, key), default in later.items()
        if isinstance(tree.get(section), Mapping) and key in tree[section] and tree[section][key] == default
    ]
    if not drop:
        return tree
    out = dict(tree)
    for section, key in drop:
        out[section] = {k: v for k, v in out[section].items() if k != key}
    return out
