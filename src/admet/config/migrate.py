"""Rewrite legacy run configs to the ``joint_sampling`` schema, keeping comments and order.

Used by ``python -m admet.config migrate``. A file is read with ruamel's round-trip loader,
mapped with the same :func:`~admet.config.loader.apply_legacy` that :func:`load_config`
uses, validated, and written back only if something changed and the result is valid.
Sections the schema does not know are reported and kept as they are.
"""

from __future__ import annotations

import difflib
import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from admet.config.loader import _schema_keys, apply_legacy, load_config
from admet.config.schema import schema_for
from admet.errors import ConfigError

__all__ = ["MigrationResult", "iter_config_files", "migrate_file", "migrate_paths"]


@dataclass
class MigrationResult:
    """The outcome for one file."""

    path: Path
    changed: bool = False
    written: bool = False
    notes: list[str] = field(default_factory=list)
    unknown_sections: list[str] = field(default_factory=list)
    error: str | None = None
    diff: str = ""


def _yaml() -> YAML:
    y = YAML()  # round-trip: comments, order and quotes survive
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096
    return y


def iter_config_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Files as given, and every *.yaml / *.yml below a directory, sorted."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml") and q.is_file())
        else:
            yield p


def migrate_file(path: Path, write: bool = True) -> MigrationResult:
    """Migrate one file; never writes an invalid or unchanged config."""
    result = MigrationResult(path=path)
    try:
        text = path.read_text()
    except OSError as exc:
        result.error = f"{path}: cannot read ({exc.strerror})"
        return result
    except UnicodeDecodeError:
        result.error = f"{path}: not a UTF-8 text file; file left untouched"
        return result
    y = _yaml()
    try:
        data = y.load(text)
    except (MarkedYAMLError, YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        result.error = f"{path}{line}: invalid YAML ({problem}); file left untouched"
        return result
    if data is None:
        data = {}
    if not isinstance(data, dict):
        result.error = f"{path}: top level is not a mapping; file left untouched"
        return result
    try:
        migrated, result.notes = apply_legacy(data, str(path))
    except ConfigError as exc:
        result.error = f"{exc}; file left untouched"
        return result
    result.changed = bool(result.notes)
    known = _schema_keys(schema_for(migrated))
    result.unknown_sections = [str(k) for k in migrated if k not in known]
    plain = json.loads(json.dumps(migrated, default=str))
    for key in result.unknown_sections:
        plain.pop(key, None)
    try:
        load_config(plain)
    except ConfigError as exc:
        result.error = f"{path}: migrated config is invalid: {exc}; file left untouched"
        return result
    if result.changed:
        out = io.StringIO()
        y.dump(migrated, out)
        new_text = out.getvalue()
        result.diff = "".join(
            difflib.unified_diff(
                text.splitlines(keepends=True),
                new_text.splitlines(keepends=True),
                fromfile=f"{path} (legacy)",
                tofile=f"{path} (migrated)",
            )
        )
        if write:
            target = path.resolve()  # rewrite a symlink's target, not the link
            tmp = target.with_name(f".{target.name}.migrate.tmp")
            tmp.write_text(new_text)
            os.chmod(tmp, target.stat().st_mode & 0o7777)
            os.replace(tmp, target)
            result.written = True
    return result


def migrate_paths(paths: Iterable[str | os.PathLike[str]], write: bool = True) -> list[MigrationResult]:
    """Migrate every config file under ``paths``; one failure does not stop the others."""
    return [migrate_file(p, write=write) for p in iter_config_files(paths)]
