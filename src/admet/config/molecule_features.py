"""The names ``data.molecule_features`` accepts, checked without importing Chemprop.

What: ``data.molecule_features`` lists molecule-level descriptor sets that are computed
once per molecule and concatenated to the learned embedding after aggregation (Chemprop's
``--molecule-featurizers`` / ``--descriptors-path``). A name is one of Chemprop's molecule
featurizers (:data:`CHEMPROP_FEATURIZERS`), ``minimol`` (pretrained MiniMol fingerprints)
or ``columns:<a>,<b>`` (numeric columns of the training table itself).
:func:`check_molecule_features` is the one rule, applied by the config loader; the data
layer (:mod:`admet.data.molecule_features`) computes them and may :func:`declare` more.

Why here: a config must be validated (``python -m admet.config validate``) without torch
or Chemprop, so the names live in the config layer, like the heads of
:mod:`admet.config.registry`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from admet.errors import ConfigError

__all__ = [
    "CHEMPROP_FEATURIZERS",
    "COLUMNS_PREFIX",
    "DESCRIPTOR_MISSING",
    "check_molecule_features",
    "declare",
    "feature_choice",
    "features_as_list",
    "known_names",
    "parse_columns",
]

# chemprop.featurizers.molecule.MoleculeFeaturizerRegistry's names in Chemprop 2.3
CHEMPROP_FEATURIZERS: tuple[str, ...] = (
    "morgan_binary",
    "morgan_count",
    "rdkit_2d",
    "v1_rdkit_2d",
    "v1_rdkit_2d_normalized",
    "charge",
)
COLUMNS_PREFIX = "columns:"
# data.descriptor_missing: what an empty cell of a `columns:` descriptor means
DESCRIPTOR_MISSING: tuple[str, ...] = ("error", "mean")

_DECLARED: list[str] = [*CHEMPROP_FEATURIZERS, "minimol"]


def declare(name: str) -> None:
    """Make ``name`` a valid ``data.molecule_features`` entry (a featurizer registered in
    the data layer, :func:`admet.data.molecule_features.register_featurizer`)."""
    if name not in _DECLARED:
        _DECLARED.append(name)


def known_names() -> list[str]:
    """Every valid name besides ``columns:<a>,<b>``."""
    return list(_DECLARED)


def parse_columns(name: str) -> list[str] | None:
    """The column names of a ``columns:<a>,<b>`` entry, or None for any other entry."""
    if not name.startswith(COLUMNS_PREFIX):
        return None
    return [c.strip() for c in name[len(COLUMNS_PREFIX) :].split(",")]


def feature_choice(value: Any) -> list[str]:
    """``data.molecule_features`` from one word, as a study's categorical or a command-line
    override gives it: ``none`` (or empty) is no descriptors, ``rdkit_2d+morgan_binary``
    two entries; a list is returned as is.

    Example:
        >>> feature_choice("none"), feature_choice("rdkit_2d+morgan_count")
        ([], ['rdkit_2d', 'morgan_count'])
    """
    if value is None:
        return []
    if isinstance(value, str):
        word = value.strip()
        if word.lower() in ("", "none"):
            return []
        return [word] if word.startswith(COLUMNS_PREFIX) else [w.strip() for w in word.split("+")]
    return [str(v) for v in value]


def features_as_list(raw: dict[str, Any]) -> None:
    """Turn a one-word ``data.molecule_features`` of a raw config mapping (a study's
    categorical choice, ``data.molecule_features=rdkit_2d``) into its list, in place."""
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("molecule_features"), str):
        data["molecule_features"] = feature_choice(data["molecule_features"])


def check_molecule_features(names: Sequence[str] | None, missing: str = "error") -> None:
    """Refuse an unknown featurizer name, an empty or repeated ``columns:`` list, a name
    listed twice, or an unknown ``data.descriptor_missing``; one-line
    :class:`~admet.errors.ConfigError` naming the key.

    Example:
        >>> check_molecule_features(["rdkit_2d", "columns:logP,TPSA"])
        >>> check_molecule_features(["rdkit2d"])
        Traceback (most recent call last):
        ...
        admet.errors.ConfigError: data.molecule_features: unknown featurizer 'rdkit2d'; valid: ...
    """
    if missing not in DESCRIPTOR_MISSING:
        raise ConfigError(
            f"data.descriptor_missing must be one of {list(DESCRIPTOR_MISSING)}, got {missing!r}"
        )
    seen: set[str] = set()
    for raw in names or ():
        name = str(raw).strip()
        columns = parse_columns(name)
        if columns is not None:
            if not all(columns) or len(set(columns)) != len(columns):
                raise ConfigError(
                    f"data.molecule_features: {name!r} must name distinct columns, as 'columns:<a>,<b>'"
                )
        elif name not in _DECLARED:
            valid = ", ".join([*_DECLARED, "columns:<a>,<b>"])
            raise ConfigError(f"data.molecule_features: unknown featurizer {name!r}; valid: {valid}")
        if name in seen:
            raise ConfigError(f"data.molecule_features: {name!r} is listed twice")
        seen.add(name)
