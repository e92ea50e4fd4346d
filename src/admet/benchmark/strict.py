"""The strict protocol's guarantee, by structure: no molecule of an endpoint's test split
trains the model scored on it.

Why by structure: the exclusion used to match SMILES strings, which holds only while both
sides are canonicalised the same way; an InChIKey names the structure whatever the atom
order, aromaticity form or explicit hydrogens of the SMILES. Each strict cell also records
a fingerprint of the molecules it trained on (count and a hash of their sorted canonical
SMILES), so a reader can check the training set of any published cell.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["strict_rows", "structure_keys", "training_fingerprint"]


def structure_keys(smiles: Iterable[str]) -> list[str]:
    """The standard InChIKey of each SMILES (``"invalid:<smiles>"`` where RDKit cannot
    parse it, so an unparsable string still only matches itself)."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    keys = []
    for s in smiles:
        mol = Chem.MolFromSmiles(s)
        key = Chem.MolToInchiKey(mol) if mol is not None else ""
        keys.append(key or f"invalid:{s}")
    return keys


def strict_rows(train_keys: Sequence[str], held_out_smiles: Iterable[str]) -> np.ndarray:
    """Indices of the training rows whose structure is not among ``held_out_smiles`` (the
    endpoint's test split and its listed exclusions)."""
    drop = set(structure_keys(held_out_smiles))
    return np.flatnonzero([k not in drop for k in train_keys])


def training_fingerprint(smiles: Iterable[str]) -> str:
    """SHA-256 (first 16 hex digits) of the sorted SMILES, one per line: the same set of
    training molecules gives the same value whatever their order."""
    text = "\n".join(sorted(smiles))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
