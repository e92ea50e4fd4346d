"""Featurise each molecule once: a SMILES -> Chemprop ``MolGraph`` cache.

HPO trials and ensemble members in one worker process train on the same molecules, so
the graphs come from one process-wide :class:`FeaturizationCache` (optionally persisted
to disk, keyed by a hash of the SMILES and the featurizer settings) instead of being
recomputed per member or per epoch. :func:`build_molecule_dataset` wires the cached graphs
into a regular Chemprop ``MoleculeDataset``.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from chemprop.data import MoleculeDatapoint, MoleculeDataset
from chemprop.data.molgraph import MolGraph
from chemprop.featurizers import SimpleMoleculeMolGraphFeaturizer
from chemprop.featurizers.molgraph.cache import MolGraphCacheFacade
from rdkit import Chem

__all__ = [
    "FeaturizationCache",
    "PrecomputedMolGraphs",
    "build_molecule_dataset",
    "default_cache",
    "pack_graphs",
    "unpack_graphs",
]

logger = logging.getLogger(__name__)


def _featurizer_key(featurizer: SimpleMoleculeMolGraphFeaturizer) -> str:
    """Settings that change the graphs: feature dimensions and featurizer class/mode."""
    atom = featurizer.atom_featurizer
    return "|".join(
        [
            type(featurizer).__name__,
            type(atom).__name__,
            str(len(atom)),
            str(featurizer.bond_fdim),
            str(getattr(featurizer, "extra_atom_fdim", 0)),
            str(getattr(featurizer, "extra_bond_fdim", 0)),
        ]
    )


class FeaturizationCache:
    """In-memory (and optional on-disk) map from canonical SMILES to ``MolGraph``.

    Args:
        featurizer: Chemprop's molecule featurizer; defaults to its standard v2 featurizer.
        cache_dir: if given, a set of SMILES featurised once is pickled there under a key
            that hashes the SMILES and the featurizer settings, and later processes load it.
    """

    def __init__(
        self,
        featurizer: SimpleMoleculeMolGraphFeaturizer | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.featurizer = featurizer or SimpleMoleculeMolGraphFeaturizer()
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._graphs: dict[str, MolGraph] = {}
        self._mols: dict[str, Chem.Mol] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._graphs)

    def __contains__(self, smiles: object) -> bool:
        return smiles in self._graphs

    def disk_key(self, smiles: Sequence[str]) -> str:
        """Hash of the SMILES set and the featurizer settings (the on-disk file name)."""
        h = hashlib.sha256(_featurizer_key(self.featurizer).encode())
        for s in sorted(set(smiles)):
            h.update(s.encode())
            h.update(b"\n")
        return h.hexdigest()[:32]

    def graphs(self, smiles: Sequence[str]) -> list[MolGraph]:
        """The graph of every SMILES in order, featurising only the ones not seen before."""
        todo = [s for s in dict.fromkeys(smiles) if s not in self._graphs]
        if todo and self.cache_dir is not None:
            self._load_from_disk(smiles)
            todo = [s for s in todo if s not in self._graphs]
        self.hits += len(smiles) - len(todo)
        self.misses += len(todo)
        if todo:
            for s in todo:
                self._graphs[s] = self.featurizer(self._mol(s))
            if self.cache_dir is not None:
                self._save_to_disk(smiles)
        return [self._graphs[s] for s in smiles]

    def add(self, graphs: dict[str, MolGraph]) -> None:
        """Adopt graphs featurised elsewhere (another process) with the same featurizer."""
        self._graphs.update(graphs)

    def mols(self, smiles: Sequence[str]) -> list[Chem.Mol]:
        """RDKit molecules of ``smiles``, parsed once per process."""
        return [self._mol(s) for s in smiles]

    def _mol(self, smiles: str) -> Chem.Mol:
        mol = self._mols.get(smiles)
        if mol is None:
            mol = Chem.MolFromSmiles(smiles)
            if mol is None:
                raise ValueError(f"cannot featurise SMILES {smiles!r}")
            self._mols[smiles] = mol
        return mol

    def _path(self, smiles: Sequence[str]) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / f"molgraphs-{self.disk_key(smiles)}.npz"

    def _load_from_disk(self, smiles: Sequence[str]) -> None:
        path = self._path(smiles)
        if not path.is_file():
            return
        try:
            # Thousands of new small objects would trigger several full GC passes over
            # an already large heap; none of them can form reference cycles.
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                self._graphs.update(unpack_graphs(np.load(path, allow_pickle=False)))
            finally:
                if gc_was_enabled:
                    gc.enable()
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("ignoring unreadable featurisation cache %s: %s", path, exc)

    def _save_to_disk(self, smiles: Sequence[str]) -> None:
        path = self._path(smiles)
        path.parent.mkdir(parents=True, exist_ok=True)
        unique = list(dict.fromkeys(smiles))
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **pack_graphs(unique, [self._graphs[s] for s in unique]))
        os.replace(tmp, path)


def pack_graphs(smiles: Sequence[str] | None, graphs: Sequence[MolGraph]) -> dict[str, np.ndarray]:
    """Concatenate many graphs into a few flat arrays: loading them back is a handful of
    array reads and slices instead of unpickling thousands of small objects, and a batch
    is a gather over them (:mod:`admet.data.packed`). ``smiles`` (optional) names them."""
    n_atoms = np.array([len(g.V) for g in graphs], dtype=np.int64)
    n_bonds = np.array([len(g.E) for g in graphs], dtype=np.int64)
    return {
        **({} if smiles is None else {"smiles": np.array(smiles)}),
        "n_atoms": n_atoms,
        "n_bonds": n_bonds,
        "V": np.concatenate([g.V for g in graphs]),
        "E": np.concatenate([g.E for g in graphs]),
        "edge_index": np.concatenate([g.edge_index for g in graphs], axis=1),
        "rev_edge_index": np.concatenate([g.rev_edge_index for g in graphs]),
    }


def unpack_graphs(packed: Mapping[str, np.ndarray]) -> dict[str, MolGraph]:
    atoms = np.concatenate([[0], np.cumsum(packed["n_atoms"])])
    bonds = np.concatenate([[0], np.cumsum(packed["n_bonds"])])
    V, E = packed["V"], packed["E"]
    ei, rei = packed["edge_index"], packed["rev_edge_index"]
    return {
        str(s): MolGraph(
            V=V[atoms[i] : atoms[i + 1]],
            E=E[bonds[i] : bonds[i + 1]],
            edge_index=ei[:, bonds[i] : bonds[i + 1]],
            rev_edge_index=rei[bonds[i] : bonds[i + 1]],
        )
        for i, s in enumerate(packed["smiles"])
    }


class PrecomputedMolGraphs(MolGraphCacheFacade):
    """Chemprop's cache interface over graphs that were featurised elsewhere."""

    def __init__(self, graphs: Sequence[MolGraph]) -> None:
        self._mgs = list(graphs)

    def __len__(self) -> int:
        return len(self._mgs)

    def __getitem__(self, index: int) -> MolGraph:
        return self._mgs[index]


_CACHES: dict[str | None, FeaturizationCache] = {}


def default_cache(cache_dir: str | os.PathLike[str] | None = None) -> FeaturizationCache:
    """The process-wide cache (one per ``cache_dir``) shared by all models, ensemble members
    and trials in this process; child processes forked later inherit it."""
    key = None if cache_dir is None else str(Path(cache_dir).resolve())
    cache = _CACHES.get(key)
    if cache is None:
        cache = _CACHES[key] = FeaturizationCache(cache_dir=key)
    return cache


def build_molecule_dataset(
    smiles: Sequence[str],
    Y: np.ndarray | None = None,
    cache: FeaturizationCache | None = None,
) -> MoleculeDataset:
    """A Chemprop ``MoleculeDataset`` whose graphs come from ``cache`` (no re-featurisation)."""
    cache = cache if cache is not None else default_cache()
    smiles = list(smiles)
    graphs = cache.graphs(smiles)
    mols = cache.mols(smiles)
    points = [
        MoleculeDatapoint(mol=mol, y=None if Y is None else Y[i].astype(np.float32))
        for i, mol in enumerate(mols)
    ]
    dataset = MoleculeDataset(points, cache.featurizer)
    dataset.mg_cache = PrecomputedMolGraphs(graphs)
    return dataset
