"""Rewrite legacy run configs to the ``joint_sampling`` schema, keeping comments and order.

Used by ``python -m admet.config migrate``. A file is read with ruamel's round-trip loader;
a Ray Tune HPO file of the original project is converted into a study file for
:mod:`admet.hpo`, written beside it (:func:`study_file_for`); a run config's sampling keys
are moved with the same :func:`~admet.config.legacy.apply_legacy` that
:func:`load_config` uses, and the file is written back whenever something moved, whatever
else it holds: every other key, comment and the key order survive. What the runtime will
then do with the rest (keys it maps, ignores or refuses, sections it does not know, data
that is missing) is reported as warnings, never as a failure. A file fails only when it is
not YAML or its sampling keys contradict each other; it is then left untouched.
"""

from __future__ import annotations

import copy
import difflib
import io
import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from admet.config.legacy._keys import apply_legacy
from admet.config.legacy._ray_tune import convert_ray_tune, is_ray_tune_file
from admet.config.legacy._yaml_layout import dump_like
from admet.config.loader import load_config
from admet.errors import ConfigError

KeyPath = tuple[Any, ...]

__all__ = [
    "MigrationResult",
    "iter_config_files",
    "migrate_file",
    "migrate_paths",
    "runtime_warnings",
    "study_file_for",
]


@dataclass
class MigrationResult:
    """The outcome for one file: ``notes`` are the keys moved, ``warnings`` what the runtime
    will map, ignore or refuse in the migrated file."""

    path: Path
    changed: bool = False
    written: bool = False
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
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
    if "search_space" in data and "base_config" in data:
        return result  # an admet.hpo study file: nothing to migrate
    if is_ray_tune_file(data):
        return _convert_hpo_file(path, data, result, write)
    try:
        migrated, result.notes = apply_legacy(data, str(path))
    except ConfigError as exc:
        result.error = f"{exc}; file left untouched"
        return result
    if result.notes and _uses_anchors(data):
        result.error = (
            f"{path}: uses YAML anchors/aliases, which a rewrite would expand; "
            "file left untouched, move the keys by hand"
        )
        return result
    result.changed = bool(result.notes)
    result.warnings = runtime_warnings(migrated)
    if result.changed:
        try:
            new_text = dump_like(text, data, copy.deepcopy(migrated), *_key_moves(data, result.notes))
        except Exception as exc:  # a layout this module cannot follow (anchors, merge keys, ...)
            out = io.StringIO()
            y.dump(migrated, out)  # ruamel's own placement of the comments
            new_text = out.getvalue()
            result.warnings.append(
                f"comments placed by ruamel, not next to their keys ({type(exc).__name__})"
            )
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


def _uses_anchors(node: Any) -> bool:
    """Whether ``node`` (a round-trip load) holds an anchor or a merge key; rewriting it
    after :func:`apply_legacy`'s deep copy would expand them into copies."""
    if getattr(getattr(node, "anchor", None), "value", None) or getattr(node, "merge", None):
        return True
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    return any(_uses_anchors(child) for child in children)


def _key_moves(data: Any, notes: list[str]) -> tuple[Callable[[KeyPath], KeyPath], Callable[[KeyPath], str]]:
    """Where each key path of the legacy file went, read off :func:`apply_legacy`'s notes
    (``old.key -> new.key``; the longest moved prefix wins), and what to say where a key
    that is gone was."""
    moves = sorted(
        (tuple(old.split(".")), tuple(new.split(".")))
        for old, sep, new in (note.partition(" -> ") for note in notes)
        if sep
    )
    moves.sort(key=lambda m: len(m[0]), reverse=True)

    def moved(path: KeyPath) -> KeyPath:
        for old, new in moves:
            if path[: len(old)] == old:
                return new + path[len(old) :]
        return path

    def note(path: KeyPath) -> str:
        node: Any = data
        for key in path:
            node = node[key]
        new = moved(path)
        where = "removed" if new == path else f"moved to {'.'.join(map(str, new))}"
        unset = ", which null leaves unset" if node is None else ""
        return f"{where} by `python -m admet.config migrate`{unset}"

    return moved, note


def study_file_for(path: Path) -> Path:
    """Where the study converted from the Ray Tune file ``path`` is written: beside it."""
    return path.with_name(f"{path.stem}.study.yaml")


def _convert_hpo_file(path: Path, data: dict, result: MigrationResult, write: bool) -> MigrationResult:
    """A Ray Tune HPO file stays as it is; its study file for admet.hpo is (re)written
    beside it when missing or different."""
    import yaml

    try:
        study, notes = convert_ray_tune(json.loads(json.dumps(data, default=str)), str(path))
    except ConfigError as exc:
        result.error = f"{exc}; nothing written"
        return result
    target = study_file_for(path)
    header = [
        f"Converted from the Ray Tune HPO file {path.name} by `python -m admet.config migrate`.",
        f"Run it with: python -m admet.hpo run --study-file {target}",
        "How each key was mapped:",
        *(f"  {note}" for note in notes),
    ]
    text = "".join(f"# {line}\n" for line in header) + yaml.safe_dump(study, sort_keys=False)
    result.warnings = [n for n in notes if "ignored" in n or "dropped" in n]
    if target.is_file() and target.read_text() == text:
        return result
    result.changed = True
    result.notes = [f"Ray Tune HPO file -> study file {target.name}, {len(notes)} keys mapped"]
    result.diff = "".join(difflib.unified_diff([], text.splitlines(keepends=True), tofile=str(target)))
    if write:
        tmp = target.with_name(f".{target.name}.migrate.tmp")
        tmp.write_text(text)
        os.replace(tmp, target)
        result.written = True
    return result


def runtime_warnings(migrated: object) -> list[str]:
    """What loading the migrated mapping will report: deprecation notes for keys that have
    no effect, and the error that stops it (an unknown section, an enabled feature this
    project lacks, an invalid value)."""
    plain = json.loads(json.dumps(migrated, default=str))
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecationWarning)
        try:
            load_config(plain)
        except ConfigError as exc:
            found.append(f"will not load as is: {str(exc).removeprefix('config: ')}")
    prefix = "config: "
    found[:0] = [
        str(w.message).removeprefix(prefix) for w in caught if issubclass(w.category, DeprecationWarning)
    ]
    return found


def migrate_paths(paths: Iterable[str | os.PathLike[str]], write: bool = True) -> list[MigrationResult]:
    """Migrate every config file under ``paths``; one failure does not stop the others."""
    return [migrate_file(p, write=write) for p in iter_config_files(paths)]
