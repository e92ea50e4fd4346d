"""Shared fixtures. Tests that need PostgreSQL or ../shared/data skip with a reason when
those are absent outside CI, and fail when ``CI=true`` so that CI never hides them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from admet.paths import raw_dataset_dir

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Well-known drugs (public structures) for small, hand-checkable fixtures.
DRUGS: dict[str, str] = {
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "caffeine": "Cn1c(=O)c2c(ncn2C)n(C)c1=O",
    "ibuprofen": "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",
    "naproxen": "COc1ccc2cc(ccc2c1)C(C)C(=O)O",
    "diazepam": "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21",
    "propranolol": "CC(C)NCC(O)COc1cccc2ccccc12",
    "metformin": "CN(C)C(=N)NC(=N)N",
    "warfarin": "CC(=O)CC(c1ccccc1)c1c(O)c2ccccc2oc1=O",
    "atenolol": "CC(C)NCC(O)COc1ccc(CC(N)=O)cc1",
    "nicotine": "CN1CCC[C@H]1c1cccnc1",
    "lidocaine": "CCN(CC)CC(=O)Nc1c(C)cccc1C",
}


def require(condition: bool, reason: str) -> None:
    """Skip with ``reason`` outside CI; fail in CI, where the resource must be present."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def fang2023_raw() -> Path:
    raw = raw_dataset_dir("fang2023")
    require((raw / "SHA256SUMS").is_file(), f"raw fang2023 data not found at {raw}")
    return raw


@pytest.fixture(scope="session")
def fang2023_processed(fang2023_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from admet.data import fang2023

    out = tmp_path_factory.mktemp("fang2023")
    fang2023.prepare(raw=fang2023_raw, out=out, progress=False)
    return out


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("ADMET_TEST_POSTGRES_URL", "")
    require(bool(url), "ADMET_TEST_POSTGRES_URL is not set (no PostgreSQL for tests)")
    import sqlalchemy

    try:
        with sqlalchemy.create_engine(url).connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
    except Exception as exc:
        require(False, f"PostgreSQL at ADMET_TEST_POSTGRES_URL does not answer: {type(exc).__name__}")
    return url


@pytest.fixture
def drug_csv(tmp_path: Path):
    """Write a small multi-task CSV of well-known drugs; returns a writer function."""

    def write(rows: list[dict[str, object]], name: str = "drugs.csv") -> Path:
        import pandas as pd

        path = tmp_path / name
        pd.DataFrame(rows).to_csv(path, index=False)
        return path

    return write


def _synthetic_frame():
    """~150 substituted benzenes with learnable targets computed by RDKit (logP, TPSA,
    molecular weight), sparse labels on the third task and two quality tiers."""
    import numpy as np
    import pandas as pd
    from rdkit import Chem
    from rdkit.Chem import Crippen, Descriptors, rdMolDescriptors

    groups = ["C", "CC", "O", "N", "Cl", "F", "C(=O)O", "OC", "C#N", "CCO", "C(F)(F)F", "S"]
    seen, rows = set(), []
    for i, a in enumerate(groups):
        for j, b in enumerate(groups):
            for ring in ("c1cc({a})ccc1{b}", "n1cc({a})ccc1{b}"):
                smi = Chem.MolToSmiles(Chem.MolFromSmiles(ring.format(a=a, b=b)))
                if smi in seen:
                    continue
                seen.add(smi)
                mol = Chem.MolFromSmiles(smi)
                k = len(rows)
                rows.append(
                    {
                        "SMILES": smi,
                        "logP": Crippen.MolLogP(mol),
                        "TPSA": rdMolDescriptors.CalcTPSA(mol) / 50 if k % 3 else np.nan,
                        "MW": Descriptors.MolWt(mol) / 100 if k % 4 == 0 else np.nan,
                        "Quality": "high" if (i + j) % 3 else "medium",
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synthetic") / "train.csv"
    _synthetic_frame().to_csv(path, index=False)
    return path


def tiny_overrides(train_file: Path, **extra: object) -> list[str]:
    """Overrides for a seconds-long training run on the synthetic table."""
    base = {
        "data.train_file": str(train_file),
        "data.target_cols": "[logP, TPSA, MW]",
        "data.split": "random",
        "model.depth": 2,
        "model.message_hidden_dim": 16,
        "model.hidden_dim": 16,
        "model.num_layers": 1,
        "optimization.max_epochs": 3,
        "optimization.batch_size": 32,
        "optimization.warmup_epochs": 1,
        "joint_sampling.enabled": True,
        "joint_sampling.task_oversampling.alpha": 0.5,
        "joint_sampling.curriculum.enabled": True,
        "joint_sampling.curriculum.qualities": "[high, medium]",
        "joint_sampling.curriculum.patience": 1,
        "mlflow.enabled": False,
    }
    base.update({k.replace("__", "."): v for k, v in extra.items()})
    return [f"{k}={v}" for k, v in base.items()]
