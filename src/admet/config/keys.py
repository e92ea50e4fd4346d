"""Dotted config keys (``"joint_sampling.task_oversampling.alpha"``): the one walker.

Every layer names a run-config value by its dotted key: ``key=value`` overrides, a study's
search space and conditions, ``scale_by``, refit's checks, Ray Tune conversion, the
legacy mapping. They all read and write through these functions, so a key means the
same thing everywhere and an unknown key gets the same one-line error, with the closest
valid key suggested, wherever it was typed:

* :func:`get_dotted` reads a key from nested mappings or config dataclasses;
* :func:`set_dotted` writes one into nested mappings, creating sections;
* :func:`schema_field` resolves a key against the schema classes (what the key is, or
  the "did you mean" error), and :func:`unknown_key` is that error, which the loader's
  key check raises too.

This module imports nothing from admet but the errors, so any config module may use it.

Example:
    >>> from admet.config.schema import EnsembleConfig
    >>> tree = {}
    >>> set_dotted(tree, "model.depth", 4)
    >>> tree, get_dotted(tree, "model.depth"), get_dotted(tree, "model.width", "absent")
    ({'model': {'depth': 4}}, 4, 'absent')
    >>> schema_field(EnsembleConfig, "model.depth")
    <class 'int'>
    >>> schema_field(EnsembleConfig, "model.dpeth")
    Traceback (most recent call last):
    ...
    admet.errors.ConfigError: unknown config key 'model.dpeth'; did you mean 'model.depth'? ...
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import fields, is_dataclass
from functools import cache
from typing import Any, get_type_hints

from admet.errors import ConfigError

__all__ = ["get_dotted", "schema_field", "schema_fields", "set_dotted", "split_key", "unknown_key"]

_ABSENT = object()


def split_key(key: str | Sequence[str]) -> list[str]:
    """The parts of a dotted key (``"a.b"`` or already split, ``("a", "b")``)."""
    return key.split(".") if isinstance(key, str) else [str(part) for part in key]


def get_dotted(node: Any, key: str | Sequence[str], default: Any = None) -> Any:
    """The value of ``key = "a.b"`` in nested mappings or config dataclasses, ``default``
    when a part is absent (a present ``None`` stops the walk and is returned as None)."""
    for part in split_key(key):
        if isinstance(node, Mapping):
            node = node.get(part, _ABSENT)
        elif is_dataclass(node) and not isinstance(node, type):
            node = getattr(node, part, _ABSENT)
        else:
            node = _ABSENT
        if node is _ABSENT:
            return default
        if node is None:
            return None
    return node


def set_dotted(data: MutableMapping[str, Any], key: str | Sequence[str], value: Any) -> None:
    """Set ``data[a][b] = value`` for ``key = "a.b"``, creating sections as needed (a
    non-mapping in the way is replaced by a section; the loader's key check then names
    a wrong key)."""
    node = data
    parts = split_key(key)
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, MutableMapping):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


@cache
def schema_fields(schema: type) -> dict[str, Any]:
    """``{field name: type}`` of a schema dataclass (nested sections as their classes)."""
    hints = get_type_hints(schema)
    return {f.name: hints[f.name] for f in fields(schema)}


def unknown_key(path: str, known: Iterable[str], prefix: str = "") -> ConfigError:
    """The error for an unknown key ``path`` among the ``known`` names of its section
    (``prefix``: the section's dotted key with a trailing dot): the closest valid key
    suggested, all valid ones listed."""
    known = sorted(known)
    name = path[len(prefix) :]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f"; did you mean {prefix + close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {path!r}{hint} (valid here: {', '.join(known)})")


def schema_field(schema: type, key: str | Sequence[str]) -> Any:
    """The type of the dotted ``key`` in the config class ``schema`` (a section's class
    for a section).

    Raises:
        ConfigError: a part of the key is not a field, or the key goes on past a value
            (the error of an unknown key, with the closest valid key suggested).
    """
    parts = split_key(key)
    node: Any = schema
    for i, part in enumerate(parts):
        prefix = "".join(f"{p}." for p in parts[:i])
        if not (is_dataclass(node) and isinstance(node, type)):
            raise ConfigError(f"unknown config key {'.'.join(parts)!r}: {prefix[:-1]!r} is not a section")
        known = schema_fields(node)
        if part not in known:
            raise unknown_key(prefix + part, known, prefix)
        node = known[part]
    return node
