"""The benchmark's four ways to use the low quality tier (issue 27), on a slice of the table
``prepare fang2023 --augment low`` writes: each trains, ``tiers-drop`` trains on exactly the
rows without the low tier, every way leaves the scored endpoint's test structures out of
every tier (a test molecule planted as a low-tier row in another SMILES form), and each
way is paired with ``tiers-drop`` seed by seed."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from rdkit import Chem
from test_benchmark_cli import TINY
from test_strict_exclusion import CONFIG, _other_forms

from admet.benchmark.cells import TIER_VARIANTS, VARIANTS
from admet.benchmark.fang2023 import run_benchmark
from admet.benchmark.strict import training_fingerprint
from admet.config import load_config
from admet.data import canonical_smiles

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fang2023_low(fang2023_raw, tmp_path_factory):
    from admet.data import fang2023

    out = tmp_path_factory.mktemp("fang2023_low")
    fang2023.prepare(raw=fang2023_raw, out=out, augment=["low"], progress=False)
    return out


def test_each_variant_is_a_valid_config_with_its_tier_use():
    for variant in TIER_VARIANTS:
        cfg = load_config(CONFIG, ["data.target_cols=[HLM, Sol]", *VARIANTS[variant]])
        assert cfg.data.tier_use["low"] == {"tiers-drop": "drop", "tiers-aux": "auxiliary_task"}.get(
            variant, "train"
        )
        if variant in ("tiers-train", "tiers-curriculum"):
            assert cfg.joint_sampling.curriculum.enabled is (variant == "tiers-curriculum")


def test_four_ways_train_and_never_see_a_test_structure_in_any_tier(fang2023_raw, fang2023_low, tmp_path):
    folder = tmp_path / "processed"
    shutil.copytree(fang2023_low, folder)
    full = pd.read_csv(folder / "train.csv")
    # a slice with every tier, and HLM labels in the high tier to validate on
    train = pd.concat(
        [full[full["Quality"] == q].head(n) for q, n in (("high", 120), ("medium", 30), ("low", 60))]
    )
    test = pd.read_csv(folder / "test_HLM.csv")
    planted = _other_forms(test["SMILES"].iloc[0])[1]
    low_row = train[train["Quality"] == "low"].iloc[0].to_dict() | {"SMILES": planted, "HLM": 1.0}
    train = pd.concat([train, pd.DataFrame([low_row])], ignore_index=True)
    train.to_csv(folder / "train.csv", index=False)

    overrides = [o for o in TINY if not o.startswith("data.max_molecules")]
    overrides += ["ensemble.n_members=1", "optimization.validation_qualities=[high]"]
    result, out = run_benchmark(
        CONFIG, overrides, variants=list(TIER_VARIANTS), processed=folder, raw=fang2023_raw,
        out=tmp_path / "run", endpoints=["HLM"], progress=False,
    )  # fmt: skip
    cells = {c["variant"]: c for c in result.rows}
    assert set(cells) == set(TIER_VARIANTS)
    assert all(0 < c["n"] == len(test) for c in cells.values())

    def key(smiles: str) -> str:  # independent of admet.benchmark.strict
        return Chem.MolToInchiKey(Chem.MolFromSmiles(smiles))

    held_out = {key(s) for s in test["SMILES"]}
    kept = train[[key(s) not in held_out for s in train["SMILES"]]]
    assert key(planted) in held_out and len(kept) < len(train)  # the planted row is left out
    every_tier = [canonical_smiles(s) for s in kept["SMILES"]]
    without_low = [canonical_smiles(s) for s in kept.loc[kept["Quality"] != "low", "SMILES"]]
    assert cells["tiers-drop"]["train_molecules"] == len(without_low) < len(every_tier)
    assert cells["tiers-drop"]["train_fingerprint"] == training_fingerprint(without_low)
    for variant in ("tiers-train", "tiers-curriculum", "tiers-aux"):
        assert cells[variant]["train_molecules"] == len(every_tier)
        assert cells[variant]["train_fingerprint"] == training_fingerprint(every_tier)

    paired = json.loads((out / "table.json").read_text())["paired_all"]
    for variant in ("tiers-train", "tiers-curriculum", "tiers-aux"):
        (d,) = paired[f"{variant} - tiers-drop"]
        assert d["endpoint"] == "HLM"
    assert "tiers-aux minus tiers-drop, paired by seed" in (out / "table.md").read_text()
