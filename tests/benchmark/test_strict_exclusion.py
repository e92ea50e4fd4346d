"""The strict protocol excludes an endpoint's test molecules by structure: a test molecule
planted in the training table in another SMILES form never trains the cell scored on it."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from rdkit import Chem
from test_benchmark_cli import TINY

from admet.benchmark.fang2023 import run_benchmark
from admet.benchmark.strict import strict_rows, structure_keys, training_fingerprint
from admet.data import canonical_smiles
from admet.paths import project_root

CONFIG = project_root() / "configs" / "0-experiment" / "ensemble.yaml"


def _other_forms(smiles: str) -> list[str]:
    """The same structure written as RDKit would not canonicalise it: explicit hydrogens,
    Kekulé bonds, and another atom order."""
    mol = Chem.MolFromSmiles(smiles)
    kekule = Chem.Mol(mol)
    Chem.Kekulize(kekule, clearAromaticFlags=True)
    order = list(range(mol.GetNumAtoms()))[::-1]
    return [
        Chem.MolToSmiles(Chem.AddHs(mol)),
        Chem.MolToSmiles(kekule, kekuleSmiles=True),
        Chem.MolToSmiles(Chem.RenumberAtoms(mol, order), canonical=False),
    ]


def test_exclusion_matches_structures_not_strings():
    caffeine = "Cn1c(=O)c2c(ncn2C)n(C)c1=O"
    forms = _other_forms(caffeine)
    assert all(f != caffeine for f in forms) and len(set(forms)) == 3
    train = ["CC(=O)Oc1ccccc1C(=O)O", *forms, "CCO"]
    rows = strict_rows(structure_keys(train), [caffeine])
    assert rows.tolist() == [0, 4]  # every form of caffeine left out, nothing else
    assert structure_keys(["not a smiles"]) == ["invalid:not a smiles"]


def test_training_fingerprint_is_the_set_not_the_order():
    a = training_fingerprint(["CCO", "c1ccccc1", "CC"])
    assert a == training_fingerprint(["CC", "CCO", "c1ccccc1"])
    assert a != training_fingerprint(["CC", "CCO"]) and len(a) == 16


@pytest.mark.slow
def test_strict_cell_never_trains_on_a_planted_test_molecule(fang2023_raw, fang2023_processed, tmp_path):
    folder = tmp_path / "processed"
    shutil.copytree(fang2023_processed, folder)
    train = pd.read_csv(folder / "train.csv").head(150)
    test = pd.read_csv(folder / "test_rPPB.csv")
    in_train = set(structure_keys(train["SMILES"]))
    planted = next(
        s for s, k in zip(test["SMILES"], structure_keys(test["SMILES"]), strict=True) if k not in in_train
    )
    form = _other_forms(planted)[1]
    assert canonical_smiles(form) == canonical_smiles(planted) and form != planted
    row = {c: float("nan") for c in train.columns} | {"SMILES": form, "rPPB": 1.0, "HLM": 1.0}
    row |= {c: train[c].iloc[0] for c in ("Quality", "Source") if c in train.columns}
    pd.concat([train, pd.DataFrame([row])]).to_csv(folder / "train.csv", index=False)

    overrides = [o for o in TINY if not o.startswith("data.max_molecules")] + ["ensemble.n_members=1"]
    result, _ = run_benchmark(
        CONFIG, overrides, variants=["baseline"], processed=folder, raw=fang2023_raw,
        out=tmp_path / "run", endpoints=["rPPB", "HLM"], progress=False,
    )  # fmt: skip
    cells = {c["endpoint"]: c for c in result.rows}

    def inchikey(smiles: str) -> str:  # independent of admet.benchmark.strict
        return Chem.MolToInchiKey(Chem.MolFromSmiles(smiles))

    def expected(endpoint: str) -> list[str]:
        """Canonical SMILES of the table's rows (the planted one included) whose structure is
        not in the endpoint's test split."""
        held_out = {inchikey(s) for s in pd.read_csv(folder / f"test_{endpoint}.csv")["SMILES"]}
        rows = [*train["SMILES"], form]
        return [canonical_smiles(s) for s in rows if inchikey(s) not in held_out]

    # rPPB: the planted molecule is one of its test molecules in another form: left out
    rppb = expected("rPPB")
    assert canonical_smiles(planted) not in rppb and len(rppb) < 151
    assert cells["rPPB"]["train_molecules"] == len(rppb)
    assert cells["rPPB"]["train_fingerprint"] == training_fingerprint(rppb)
    # HLM: whatever HLM's own test split holds is left out instead
    hlm = expected("HLM")
    assert cells["HLM"]["train_molecules"] == len(hlm)
    assert cells["HLM"]["train_fingerprint"] == training_fingerprint(hlm)
