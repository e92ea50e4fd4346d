"""Chemprop's bond message passing and graph aggregations with scatter-free kernels.

Same modules, same parameters (state dicts load into Chemprop's own classes and back),
same outputs up to float summation order; only the kernels differ. Chemprop sums
messages with ``scatter_reduce_`` over an index repeated to the hidden width and gathers
with advanced indexing, whose backward passes are ``scatter``/``gather`` over that repeated
index and an accumulating ``index_put_``: on a CPU these index kernels took about half of a
training step of a small model. Here sums are ``index_add_`` and gathers ``index_select``,
whose backward passes are each other; nothing is repeated to the hidden width. The two
layers that read a concatenation (``W_i`` of atom and bond features, ``W_o`` of atom
features and messages) apply their weight's two column blocks separately: the atom block
of ``W_i`` then runs once per atom instead of once per bond, and ``W_o``'s backward pass
computes no gradient for the atom features, which need none. Kept as subclasses so
that everything else (initialisation, update, dropout, hparams) stays Chemprop's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from chemprop import nn as cnn
from chemprop.data import BatchMolGraph
from torch import Tensor

__all__ = [
    "AGGREGATIONS",
    "SIZED_AGGREGATIONS",
    "BondMessagePassing",
    "MeanAggregation",
    "NormAggregation",
    "SumAggregation",
]


class BondMessagePassing(cnn.BondMessagePassing):
    """:class:`chemprop.nn.BondMessagePassing` with ``index_add_``/``index_select`` kernels."""

    def initialize(self, bmg: BatchMolGraph) -> Tensor:
        # W_i(V[src] ‖ E) as (V W_i,V)[src] + E W_i,E: the atom half of the product is taken
        # once per atom instead of once per bond (a bond table is about twice the atoms)
        return _split_linear(self.W_i, bmg.V, bmg.E, rows_of_first=bmg.edge_index[0])

    def message(self, H: Tensor, bmg: BatchMolGraph) -> Tensor:
        src, dst = bmg.edge_index
        M_all = H.new_zeros(bmg.V.shape[0], H.shape[1]).index_add_(0, dst, H)
        return M_all.index_select(0, src) - H.index_select(0, bmg.rev_edge_index)

    def finalize(self, M: Tensor, V: Tensor, V_d: Tensor | None) -> Tensor:
        if V_d is not None:
            return super().finalize(M, V, V_d)
        # W_o(V ‖ M) as V W_o,V + M W_o,M: backward then takes the input gradient of M alone,
        # not of the atom features beside it (which need none)
        return self.dropout(self.tau(_split_linear(self.W_o, V, M)))

    def forward(self, bmg: BatchMolGraph, V_d: Tensor | None = None) -> Tensor:
        bmg = self.graph_transform(bmg)
        H_0 = self.initialize(bmg)
        H = self.tau(H_0)
        for _ in range(1, self.depth):
            if self.undirected:
                H = (H + H.index_select(0, bmg.rev_edge_index)) / 2
            H = self.update(self.message(H, bmg), H_0)
        M = H.new_zeros(bmg.V.shape[0], H.shape[1]).index_add_(0, bmg.edge_index[1], H)
        return self.finalize(M, bmg.V, V_d)


def _split_linear(
    layer: torch.nn.Linear, A: Tensor, B: Tensor, rows_of_first: Tensor | None = None
) -> Tensor:
    """``layer(cat(A[rows_of_first], B))`` without the concatenation: the weight's columns
    for ``A`` and for ``B`` are applied separately and the products added (the same
    parameters; equal up to float summation order)."""
    W = layer.weight
    left = F.linear(A, W[:, : A.shape[1]])
    if rows_of_first is not None:
        left = left.index_select(0, rows_of_first)
    return left + F.linear(B, W[:, A.shape[1] :], layer.bias)


def _sum_by_molecule(H: Tensor, batch: Tensor, size: int | None) -> Tensor:
    # size known from the batch avoids Chemprop's batch.max() (a host sync on a GPU)
    n = int(batch.max()) + 1 if size is None else size
    return H.new_zeros(n, H.shape[1]).index_add_(0, batch, H)


class SumAggregation(cnn.SumAggregation):
    """:class:`chemprop.nn.SumAggregation` with ``index_add_``."""

    def forward(self, H: Tensor, batch: Tensor, size: int | None = None) -> Tensor:
        return _sum_by_molecule(H, batch, size)


class NormAggregation(cnn.NormAggregation):
    """:class:`chemprop.nn.NormAggregation` (sum / ``norm``) with ``index_add_``."""

    def forward(self, H: Tensor, batch: Tensor, size: int | None = None) -> Tensor:
        return _sum_by_molecule(H, batch, size) / self.norm


class MeanAggregation(cnn.MeanAggregation):
    """:class:`chemprop.nn.MeanAggregation` with ``index_add_`` and atom counts."""

    def forward(self, H: Tensor, batch: Tensor, size: int | None = None) -> Tensor:
        sums = _sum_by_molecule(H, batch, size)
        counts = torch.bincount(batch, minlength=sums.shape[0]).clamp_(min=1)
        return sums / counts.unsqueeze(1).to(sums.dtype)


AGGREGATIONS: dict[str, type[cnn.Aggregation]] = {
    "mean": MeanAggregation,
    "sum": SumAggregation,
    "norm": NormAggregation,
}
SIZED_AGGREGATIONS = (MeanAggregation, SumAggregation, NormAggregation)
