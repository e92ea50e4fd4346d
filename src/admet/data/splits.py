"""Cross-validation folds for molecules: scaffold k-fold and random k-fold.

Both are deterministic for a seed and keep every copy of a molecule in one fold, so a
molecule listed twice (for instance once per quality tier) never leaks across folds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from rdkit import Chem, RDLogger
from rdkit.Chem.Scaffolds import MurckoScaffold

__all__ = ["fold_assignment", "murcko_scaffold", "random_kfold", "scaffold_kfold"]

Folds = list[tuple[np.ndarray, np.ndarray]]


def murcko_scaffold(smiles: str) -> str:
    """Bemis-Murcko scaffold SMILES; acyclic molecules get the empty scaffold ``""``."""
    RDLogger.DisableLog("rdApp.*")
    try:
        mol = Chem.MolFromSmiles(smiles)
    finally:
        RDLogger.EnableLog("rdApp.*")
    if mol is None:
        raise ValueError(f"cannot parse SMILES {smiles!r}")
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


def _check_k(k: int, n_groups: int) -> None:
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    if n_groups < k:
        raise ValueError(f"cannot make {k} folds from {n_groups} distinct group(s)")


def _to_folds(assignment: np.ndarray, k: int) -> Folds:
    return [(np.flatnonzero(assignment != f), np.flatnonzero(assignment == f)) for f in range(k)]


def _balanced_assignment(group_of: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Assign whole groups to folds, largest first (ties shuffled), always to the
    currently smallest fold: fold sizes differ by at most the largest group's size."""
    sizes = np.bincount(group_of)
    order = np.lexsort((rng.permutation(len(sizes)), -sizes))
    fold_of_group = np.empty(len(sizes), dtype=int)
    load = np.zeros(k, dtype=int)
    for g in order:
        f = int(np.argmin(load))
        fold_of_group[g] = f
        load[f] += sizes[g]
    return fold_of_group[group_of]


def fold_assignment(smiles: Sequence[str], k: int, seed: int = 0, split: str = "scaffold") -> np.ndarray:
    """Fold index (0..k-1) per molecule, for ``split`` in {"scaffold", "random"}."""
    if split == "scaffold":
        groups = pd.factorize(np.array([murcko_scaffold(s) for s in smiles], dtype=object))[0]
    elif split == "random":
        groups = pd.factorize(np.asarray(smiles, dtype=object))[0]
    else:
        raise ValueError(f"unknown split {split!r}; use 'scaffold' or 'random'")
    _check_k(k, int(groups.max()) + 1 if len(groups) else 0)
    rng = np.random.default_rng(seed)
    if split == "random":
        # Shuffle distinct molecules, then deal them round-robin: sizes differ by <= 1 group.
        perm = rng.permutation(int(groups.max()) + 1)
        fold_of_group = np.empty_like(perm)
        fold_of_group[perm] = np.arange(len(perm)) % k
        return fold_of_group[groups]
    return _balanced_assignment(groups, k, rng)


def scaffold_kfold(smiles: Sequence[str], k: int, seed: int = 0) -> Folds:
    """K (train_index, val_index) pairs with each Bemis-Murcko scaffold in exactly one fold."""
    return _to_folds(fold_assignment(smiles, k, seed, "scaffold"), k)


def random_kfold(smiles: Sequence[str], k: int, seed: int = 0) -> Folds:
    """K (train_index, val_index) pairs of a seeded random partition by molecule."""
    return _to_folds(fold_assignment(smiles, k, seed, "random"), k)
