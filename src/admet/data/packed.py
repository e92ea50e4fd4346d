"""Training batches gathered from packed graphs: no per-molecule Python on the hot path.

Chemprop's ``collate_batch`` builds every batch from a list of per-molecule ``MolGraph``
objects (a Python loop over molecules, a NumPy concatenate per field and a host-to-device
copy per step). For a fixed training set the same batches are a few index gathers over
the graphs packed once into flat arrays (the layout :func:`~admet.data.featurize.pack_graphs`
already stores on disk):

* :class:`PackedGraphs` holds every molecule's atom and bond features back to back, with
  per-molecule offsets, as tensors that may live on the training device for the whole fit;
  :meth:`PackedGraphs.batch` returns the same ``BatchMolGraph`` that ``collate_batch``
  builds for the same molecules (same ``V``, ``E``, ``edge_index``, ``rev_edge_index`` and
  ``batch``, exactly);
* :class:`PackedMoleculeDataset` adds the targets and answers a whole batch of indices at
  once with Chemprop's ``TrainingBatch``;
* :class:`EpochBatches` cuts one epoch of indices, drawn at once by the sampler, into
  batches; :class:`SeededShuffle` is the seeded reshuffle for runs without a sampler;
* :func:`packed_dataloader` puts them into a ``DataLoader`` that Lightning drives as usual.

Index arithmetic runs on the host (the offsets are small), so a step needs no host
synchronisation; the gathers run where the packed tensors live.

Example:
    >>> from admet.data import default_cache
    >>> smiles = ["CCO", "c1ccccc1O", "CC(=O)O"]
    >>> packed = PackedGraphs.from_graphs(default_cache().graphs(smiles))
    >>> bmg = packed.batch(torch.tensor([2, 0]))
    >>> len(bmg), bmg.V.shape[0], bmg.batch.tolist()
    (2, 7, [0, 0, 0, 0, 1, 1, 1])

Over 350 lines because packing, the batch gather and its descriptor rows are one layout
(offsets that the gather, the labels and X_d all index); splitting it would spread them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from chemprop.data import BatchMolGraph, TrainingBatch
from chemprop.data.molgraph import MolGraph
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from admet.data.featurize import pack_graphs

__all__ = [
    "EpochBatches",
    "LabelledBatch",
    "PackedGraphs",
    "PackedMoleculeDataset",
    "SeededShuffle",
    "packed_dataloader",
]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ``arange(s, s + n)`` for every (s, n), and each range's start in the
    concatenation; vectorised (no loop over ranges)."""
    new_starts = np.cumsum(lengths) - lengths
    total = int(lengths.sum())
    index = np.arange(total, dtype=np.int64) + np.repeat(starts - new_starts, lengths)
    return index, new_starts


def _per_set(counts: np.ndarray, first: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Sum of ``counts`` over each run ``first[i] : first[i] + sizes[i]`` (empty runs give 0)."""
    total = np.concatenate([[0], np.cumsum(counts)])
    return total[first + sizes] - total[first]


@dataclass
class PackedGraphs:
    """Many molecular graphs as flat tensors plus per-molecule offsets.

    ``edge_index`` and ``rev_edge_index`` are stored local to their molecule (atom and
    bond numbers start at 0 for each molecule); :meth:`batch` shifts them for the batch.
    The offsets stay on the host (NumPy) whatever the device of the features.
    """

    V: Tensor
    E: Tensor
    edge_index: Tensor
    rev_edge_index: Tensor
    atom_offsets: np.ndarray
    bond_offsets: np.ndarray

    @classmethod
    def from_graphs(cls, graphs: Sequence[MolGraph]) -> PackedGraphs:
        """Pack Chemprop ``MolGraph`` objects (features as float32, indices as int64)."""
        if not graphs:
            raise ValueError("no graphs to pack")
        return cls.from_packed(pack_graphs(None, graphs))

    @classmethod
    def from_packed(cls, packed: Mapping[str, np.ndarray]) -> PackedGraphs:
        """From :func:`~admet.data.featurize.pack_graphs`'s arrays (also its disk format)."""
        return cls(
            V=torch.from_numpy(np.asarray(packed["V"], dtype=np.float32)),
            E=torch.from_numpy(np.asarray(packed["E"], dtype=np.float32)),
            edge_index=torch.from_numpy(np.asarray(packed["edge_index"], dtype=np.int64)),
            rev_edge_index=torch.from_numpy(np.asarray(packed["rev_edge_index"], dtype=np.int64)),
            atom_offsets=np.concatenate([[0], np.cumsum(packed["n_atoms"])]).astype(np.int64),
            bond_offsets=np.concatenate([[0], np.cumsum(packed["n_bonds"])]).astype(np.int64),
        )

    def __len__(self) -> int:
        return len(self.atom_offsets) - 1

    @property
    def device(self) -> torch.device:
        return self.V.device

    def to(self, device: str | torch.device) -> PackedGraphs:
        """A copy whose feature tensors live on ``device`` (offsets stay on the host)."""
        return PackedGraphs(
            self.V.to(device),
            self.E.to(device),
            self.edge_index.to(device),
            self.rev_edge_index.to(device),
            self.atom_offsets,
            self.bond_offsets,
        )

    def nbytes(self) -> int:
        """Bytes held by the feature and index tensors."""
        return sum(
            t.element_size() * t.nelement() for t in (self.V, self.E, self.edge_index, self.rev_edge_index)
        )

    def batch(self, index: Tensor | np.ndarray | Sequence[int]) -> BatchMolGraph:
        """The ``BatchMolGraph`` of molecules ``index`` (in that order, repeats allowed)."""
        return self.batches([index])[0]

    def batches(self, indices: Sequence[Tensor | np.ndarray | Sequence[int]]) -> list[BatchMolGraph]:
        """One ``BatchMolGraph`` per index set, each equal to :meth:`batch` of that set.

        The sets are gathered together (one gather per field for all of them) and the
        result is cut into per-batch views, so a group of batches pays the fixed cost of
        a gather once.
        """
        sets = [np.asarray(i.cpu() if isinstance(i, Tensor) else i, dtype=np.int64) for i in indices]
        sizes = np.array([len(s) for s in sets], dtype=np.int64)
        idx = np.concatenate(sets)
        a0 = self.atom_offsets[idx]
        n_atoms = self.atom_offsets[idx + 1] - a0
        b0 = self.bond_offsets[idx]
        n_bonds = self.bond_offsets[idx + 1] - b0
        atom_index, atom_starts = _ranges(a0, n_atoms)
        bond_index, bond_starts = _ranges(b0, n_bonds)
        # each molecule's batch, its place in that batch, and where the batch starts
        first = np.cumsum(sizes) - sizes
        which = np.repeat(np.arange(len(sets)), sizes)
        place = np.arange(len(idx), dtype=np.int64) - first[which]
        atoms_per_set = _per_set(n_atoms, first, sizes)
        bonds_per_set = _per_set(n_bonds, first, sizes)
        atom_starts = atom_starts - (np.cumsum(atoms_per_set) - atoms_per_set)[which]
        bond_starts = bond_starts - (np.cumsum(bonds_per_set) - bonds_per_set)[which]
        device = self.device
        non_blocking = device.type == "cuda"

        def dev(a: np.ndarray) -> Tensor:
            return torch.from_numpy(a).to(device, non_blocking=non_blocking)

        bond_t = dev(bond_index)
        shift = dev(np.stack([np.repeat(atom_starts, n_bonds), np.repeat(bond_starts, n_bonds)]))
        atom_sizes, bond_sizes = atoms_per_set.tolist(), bonds_per_set.tolist()
        V = self.V.index_select(0, dev(atom_index)).split(atom_sizes)
        E = self.E.index_select(0, bond_t).split(bond_sizes)
        edge_index = (self.edge_index.index_select(1, bond_t) + shift[0]).split(bond_sizes, 1)
        rev_edge_index = (self.rev_edge_index.index_select(0, bond_t) + shift[1]).split(bond_sizes)
        batch = dev(np.repeat(place, n_atoms)).split(atom_sizes)
        out = []
        for i, size in enumerate(sizes.tolist()):
            bmg = BatchMolGraph.__new__(BatchMolGraph)  # fields set here; its __init__ collates MolGraphs
            bmg.V, bmg.E, bmg.edge_index = V[i], E[i], edge_index[i]
            bmg.rev_edge_index, bmg.batch = rev_edge_index[i], batch[i]
            bmg._BatchMolGraph__size = size  # type: ignore[attr-defined]  # slots field of BatchMolGraph
            out.append(bmg)
        return out


class PackedMoleculeDataset(Dataset):
    """Packed graphs and their (already scaled) targets; indexed by a whole batch.

    ``dataset[indices]`` is Chemprop's ``TrainingBatch`` for those molecules, with unit
    sample weights and the molecule descriptors ``X_d`` when given (else None), as
    ``collate_batch`` gives for a ``MoleculeDataset``. Targets and descriptors live on the
    same device as the graphs.
    """

    def __init__(
        self, graphs: PackedGraphs, Y: np.ndarray | Tensor | None = None, X_d: np.ndarray | None = None
    ) -> None:
        self.graphs = graphs
        # molecule descriptors (data.molecule_features), as Chemprop's batch X_d, or None
        self.X_d = (
            None if X_d is None else torch.as_tensor(np.asarray(X_d, dtype=np.float32)).to(graphs.device)
        )
        if self.X_d is not None and len(self.X_d) != len(graphs):
            raise ValueError(f"{len(self.X_d)} descriptor rows for {len(graphs)} molecules")
        if Y is not None:
            Y = torch.as_tensor(np.asarray(Y, dtype=np.float32)).to(graphs.device)
            if len(Y) != len(graphs):
                raise ValueError(f"{len(Y)} target rows for {len(graphs)} molecules")
        self.Y = Y

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: Any) -> Any:
        """The ``TrainingBatch`` of one index tensor, or a list of them for a list of
        index tensors (a group of batches, see :class:`EpochBatches`)."""
        if isinstance(index, list) and index and isinstance(index[0], Tensor):
            return self._batches(index)
        return self._batches([index])[0]

    def _batches(self, indices: Sequence[Tensor | np.ndarray | Sequence[int]]) -> list[TrainingBatch]:
        sets = [np.asarray(i, dtype=np.int64) for i in indices]
        sizes = [len(s) for s in sets]
        bmgs = self.graphs.batches(sets)
        device = self.graphs.device
        ws = torch.ones((sum(sizes), 1), device=device).split(sizes)
        idx = torch.from_numpy(np.concatenate(sets)).to(device, non_blocking=device.type == "cuda")
        xs = [None] * len(sets) if self.X_d is None else self.X_d.index_select(0, idx).split(sizes)
        if self.Y is None:
            return [
                TrainingBatch(b, None, x, None, w, None, None) for b, x, w in zip(bmgs, xs, ws, strict=True)
            ]
        Y = self.Y.index_select(0, idx)
        # the criterion's label mask and NaN-free targets for the whole group at once
        parts = zip(Y.split(sizes), Y.isfinite().split(sizes), Y.nan_to_num(0.0).split(sizes), strict=True)
        return [
            LabelledBatch.of(TrainingBatch(b, None, x, y, w, None, None), mask, filled)
            for b, x, w, (y, mask, filled) in zip(bmgs, xs, ws, parts, strict=True)
        ]


class LabelledBatch(TrainingBatch):
    """Chemprop's ``TrainingBatch`` (the same seven fields, unpacked the same way) that also
    carries its labels' mask (``Y.isfinite()``) and ``Y`` with unlabelled entries set to 0,
    as a training step's criterion needs them: computed once per group of batches instead
    of twice a step (a few tiny kernels each, about 1% of a small model's CPU step)."""

    mask: Tensor
    filled: Tensor

    @classmethod
    def of(cls, batch: TrainingBatch, mask: Tensor, filled: Tensor) -> LabelledBatch:
        out = cls(*batch)
        out.mask, out.filled = mask, filled
        return out


class SeededShuffle(Sampler[int]):
    """A fresh permutation of ``range(n)`` every epoch, seeded with ``seed + epoch``."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n = int(n)
        self.seed = int(seed)
        self._epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self._epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def draw_epoch(self) -> Tensor:
        generator = torch.Generator().manual_seed(self.seed + self._epoch)
        self._epoch += 1
        return torch.randperm(self.n, generator=generator)

    def __iter__(self) -> Iterator[int]:
        return iter(self.draw_epoch().tolist())


class EpochBatches(Sampler[Any]):
    """Batches of indices cut from one epoch drawn at once.

    ``sampler`` is any index sampler; one with ``draw_epoch()`` (``JointSampler``,
    :class:`SeededShuffle`) hands over the whole epoch as a tensor, others are listed.
    ``sampler=None`` walks ``range(n)`` in order (validation, prediction). With
    ``group > 1`` each item is a list of up to ``group`` consecutive batches, for a loop
    that takes several optimiser steps per call (``n_batches`` counts the batches).
    """

    def __init__(
        self,
        sampler: Sampler[int] | None,
        batch_size: int,
        drop_last: bool = False,
        n: int | None = None,
        group: int = 1,
    ) -> None:
        if sampler is None and n is None:
            raise ValueError("EpochBatches needs a sampler or n")
        if group < 1:
            raise ValueError(f"group must be >= 1, got {group}")
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.drop_last = drop_last
        self.group = int(group)
        self.n = len(sampler) if sampler is not None else int(n)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)  # type: ignore[union-attr]

    @property
    def n_batches(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __len__(self) -> int:
        return -(-self.n_batches // self.group)

    def _epoch(self) -> Tensor:
        if self.sampler is None:
            return torch.arange(self.n)
        draw = getattr(self.sampler, "draw_epoch", None)
        return draw() if draw is not None else torch.as_tensor(list(self.sampler), dtype=torch.long)

    def __iter__(self) -> Iterator[Any]:
        indices = self._epoch()
        batches = [indices[i * self.batch_size : (i + 1) * self.batch_size] for i in range(self.n_batches)]
        if self.group == 1:
            yield from batches
            return
        for i in range(0, len(batches), self.group):
            yield batches[i : i + self.group]


def _whole_batch(batch: Any) -> Any:
    """The dataset already returns a collated batch."""
    return batch


def packed_dataloader(
    dataset: PackedMoleculeDataset,
    batch_size: int,
    sampler: Sampler[int] | None = None,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool | None = None,
    group: int = 1,
) -> DataLoader:
    """A ``DataLoader`` of ``TrainingBatch`` es gathered from ``dataset``.

    ``sampler`` draws the training epoch (e.g. ``JointSampler``); without one, ``shuffle``
    reshuffles every epoch (seeded) or the order is kept. ``drop_last`` defaults to
    Chemprop's rule: drop a last batch of one molecule, which batch norm cannot take.
    ``group > 1`` yields lists of up to ``group`` batches (see :class:`EpochBatches`).
    """
    if sampler is None and shuffle:
        sampler = SeededShuffle(len(dataset), seed)
    n = len(sampler) if sampler is not None else len(dataset)  # type: ignore[arg-type]
    if drop_last is None:
        drop_last = n % batch_size == 1
    batches = EpochBatches(sampler, batch_size, drop_last, n=n, group=group)
    # batch_size=None: each item the sampler yields is already a whole batch of indices
    return DataLoader(dataset, batch_size=None, sampler=batches, collate_fn=_whole_batch, num_workers=0)
