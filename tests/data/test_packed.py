"""Packed-graph batches are exactly Chemprop's collated batches, for any index order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from chemprop.data import collate_batch
from conftest import DRUGS

from admet.data import build_molecule_dataset, default_cache
from admet.data.packed import (
    EpochBatches,
    LabelledBatch,
    PackedGraphs,
    PackedMoleculeDataset,
    SeededShuffle,
    packed_dataloader,
)

SMILES = [*DRUGS.values(), "C", "[Na+].[Cl-]", "O=C=O"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(len(SMILES), 3)).astype(np.float32)
    Y[rng.random(Y.shape) < 0.3] = np.nan
    chem = build_molecule_dataset(SMILES, Y, default_cache())
    packed = PackedMoleculeDataset(PackedGraphs.from_graphs(default_cache().graphs(SMILES)), Y)
    return chem, packed


@pytest.mark.parametrize(
    "index",
    [list(range(len(SMILES))), [3, 0, 3, 14, 12, 7], [13], [12, 13, 14]],
    ids=["all", "shuffled-with-repeats", "one-atom", "ions-and-tiny"],
)
def test_batch_equals_chemprop_collate(data, index):
    chem, packed = data
    ref = collate_batch([chem[i] for i in index])
    got = packed[torch.tensor(index)]
    assert len(got.bmg) == len(index)
    _assert_same_batch(ref, got)
    assert got.V_d is None and got.X_d is None and got.lt_mask is None and got.gt_mask is None


def _assert_same_batch(ref, got) -> None:
    assert len(got.bmg) == len(ref.bmg)
    for field in ("V", "E", "edge_index", "rev_edge_index", "batch"):
        a, b = getattr(ref.bmg, field), getattr(got.bmg, field)
        assert a.dtype == b.dtype and a.shape == b.shape, field
        assert torch.equal(a, b), field
    assert torch.equal(ref.Y.isnan(), got.Y.isnan())
    assert torch.equal(ref.Y.nan_to_num(), got.Y.nan_to_num())
    assert torch.equal(ref.w, got.w)
    # the criterion's inputs, as Chemprop's training step derives them from Y
    assert isinstance(got, LabelledBatch)
    assert torch.equal(got.mask, ref.Y.isfinite())
    assert torch.equal(got.filled, ref.Y.nan_to_num(nan=0.0))


def test_a_group_of_batches_is_each_batch_collated_on_its_own(data):
    """A loader item of several batches is gathered at once and cut into per-batch views;
    every view must equal Chemprop's collate of its own indices (local atom and bond
    numbers, molecule numbers starting at 0 in each batch)."""
    chem, packed = data
    sets = [[3, 0, 3, 14], [13], [12, 7, 1, 2, 5], [14, 14]]
    got = packed[[torch.tensor(s) for s in sets]]
    assert isinstance(got, list) and len(got) == len(sets)
    for index, one in zip(sets, got, strict=True):
        _assert_same_batch(collate_batch([chem[i] for i in index]), one)


def test_epoch_batches_cover_the_draw_and_follow_drop_last(data):
    _, packed = data
    n = len(packed)
    loader = packed_dataloader(packed, 4, shuffle=True, seed=3)
    assert len(loader) == -(-n // 4) and n % 4 != 1
    seen = torch.cat([b.bmg.batch.unique_consecutive().numel() * torch.ones(1) for b in loader])
    assert seen.sum().item() == n
    # a last batch of one molecule is dropped (batch norm cannot take it)
    assert len(packed_dataloader(packed, n - 1, shuffle=True)) == 1
    # no sampler, no shuffle: the dataset order
    order = torch.cat(list(EpochBatches(None, 4, n=n)))
    assert torch.equal(order, torch.arange(n))


def test_seeded_shuffle_is_reproducible_and_varies_by_epoch():
    a, b = SeededShuffle(50, seed=1), SeededShuffle(50, seed=1)
    e0, e1 = a.draw_epoch(), a.draw_epoch()
    assert torch.equal(e0, b.draw_epoch()) and not torch.equal(e0, e1)
    assert sorted(e0.tolist()) == list(range(50))
    b.set_epoch(0)
    assert torch.equal(b.draw_epoch(), e0)


def test_graphs_move_to_another_device_as_a_copy(data):
    _, packed = data
    moved = packed.graphs.to("cpu")
    assert moved.V.data_ptr() == packed.graphs.V.data_ptr()  # no copy on the same device
    assert moved.nbytes() == packed.graphs.nbytes() > 0
