"""CV folds (no scaffold leakage, balance, determinism) and the featurisation cache."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DRUGS

from admet.data import (
    FeaturizationCache,
    build_molecule_dataset,
    murcko_scaffold,
    random_kfold,
    scaffold_kfold,
)

SMILES = [
    *list(DRUGS.values()),
    "c1ccccc1CCN",
    "c1ccccc1CCO",
    "c1ccccc1CCC",
    "C1CCCCC1N",
    "C1CCCCC1O",
    "CCCCCC",
    "CCO",
    "c1ccncc1C",
    "c1ccncc1O",
    "c1ccc2ccccc2c1",
    "c1ccc2ccccc2c1O",
    "O=C1CCCN1",
    "O=C1CCCN1C",
]


def test_scaffold_kfold_keeps_scaffolds_in_one_fold_and_covers_all():
    folds = scaffold_kfold(SMILES, k=3, seed=0)
    seen = np.concatenate([val for _, val in folds])
    assert sorted(seen) == list(range(len(SMILES)))
    fold_of = {}
    for f, (train, val) in enumerate(folds):
        assert set(train).isdisjoint(val)
        for i in val:
            scaffold = murcko_scaffold(SMILES[i])
            assert fold_of.setdefault(scaffold, f) == f, f"scaffold {scaffold!r} leaks"


def test_scaffold_kfold_balanced_and_deterministic():
    a = scaffold_kfold(SMILES, k=3, seed=1)
    b = scaffold_kfold(SMILES, k=3, seed=1)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    sizes = [len(v) for _, v in a]
    largest_group = max(np.unique([murcko_scaffold(s) for s in SMILES], return_counts=True)[1])
    assert max(sizes) - min(sizes) <= largest_group


def test_random_kfold_sizes_determinism_and_duplicates_kept_together():
    smiles = [*SMILES, SMILES[0], SMILES[0]]
    folds = random_kfold(smiles, k=4, seed=0)
    sizes = [len(v) for _, v in folds]
    assert sum(sizes) == len(smiles) and max(sizes) - min(sizes) <= 3
    dup_folds = {f for f, (_, v) in enumerate(folds) for i in v if smiles[i] == SMILES[0]}
    assert len(dup_folds) == 1
    other = random_kfold(smiles, k=4, seed=1)
    assert any(not np.array_equal(x[1], y[1]) for x, y in zip(folds, other, strict=True))


def test_kfold_rejects_too_few_groups():
    with pytest.raises(ValueError, match="cannot make 5 folds"):
        scaffold_kfold(["CCO", "CCC"], k=5)
    with pytest.raises(ValueError, match="at least 2"):
        random_kfold(SMILES, k=1)


def test_cache_featurises_each_molecule_once(tmp_path):
    cache = FeaturizationCache()
    first = cache.graphs(SMILES[:5])
    assert cache.misses == 5 and cache.hits == 0
    again = cache.graphs(SMILES[:5])
    assert cache.misses == 5 and cache.hits == 5
    assert all(a is b for a, b in zip(first, again, strict=True))


def test_disk_cache_is_reused_by_a_new_process_cache(tmp_path):
    a = FeaturizationCache(cache_dir=tmp_path)
    graphs = a.graphs(SMILES)
    files = list(tmp_path.glob("molgraphs-*.npz"))
    assert len(files) == 1
    b = FeaturizationCache(cache_dir=tmp_path)
    loaded = b.graphs(SMILES)
    assert b.misses == 0
    np.testing.assert_array_equal(loaded[3].V, graphs[3].V)
    # a different SMILES set is a different key
    assert a.disk_key(SMILES) != a.disk_key(SMILES[:-1])


def test_built_dataset_uses_cached_graphs():
    cache = FeaturizationCache()
    Y = np.arange(len(SMILES) * 2, dtype=float).reshape(-1, 2)
    ds = build_molecule_dataset(SMILES, Y, cache)
    assert len(ds) == len(SMILES)
    datum = ds[2]
    assert datum.mg is cache.graphs([SMILES[2]])[0]
    np.testing.assert_allclose(datum.y, Y[2])
