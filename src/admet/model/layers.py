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

With ReLU (Chemprop's default activation), directed messages, no extra atom descriptors
and no graph transform, a training step runs the whole message passing as one autograd
node (:class:`_ReluBondMessagePassing`) with its backward pass written out: the same
products and sums, without recording about thirty autograd nodes per step and replaying
them one by one, which cost a small model as much as its arithmetic on a CPU (and a kernel
launch each on a GPU).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from chemprop import nn as cnn
from chemprop.data import BatchMolGraph
from torch import Tensor

from admet.config.registry import AGGREGATIONS as AGGREGATION_REGISTRY

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
        M_all = _sum_into(H, dst, bmg.V.shape[0])
        return M_all.index_select(0, src) - H.index_select(0, bmg.rev_edge_index)

    def finalize(self, M: Tensor, V: Tensor, V_d: Tensor | None) -> Tensor:
        if V_d is not None:
            return super().finalize(M, V, V_d)
        # W_o(V ‖ M) as V W_o,V + M W_o,M: backward then takes the input gradient of M alone,
        # not of the atom features beside it (which need none)
        return self.dropout(self.tau(_split_linear(self.W_o, V, M)))

    def forward(self, bmg: BatchMolGraph, V_d: Tensor | None = None) -> Tensor:
        if self._fused(bmg, V_d):
            dropout = self.dropout.p if self.training else 0.0
            return _ReluBondMessagePassing.apply(
                bmg.V,
                bmg.E,
                bmg.edge_index,
                bmg.rev_edge_index,
                self.depth,
                dropout,
                self.W_i.weight,
                self.W_i.bias,
                self.W_h.weight,
                self.W_h.bias,
                self.W_o.weight,
                self.W_o.bias,
            )
        bmg = self.graph_transform(bmg)
        H_0 = self.initialize(bmg)
        H = self.tau(H_0)
        for _ in range(1, self.depth):
            if self.undirected:
                H = (H + H.index_select(0, bmg.rev_edge_index)) / 2
            H = self.update(self.message(H, bmg), H_0)
        return self.finalize(_sum_into(H, bmg.edge_index[1], bmg.V.shape[0]), bmg.V, V_d)

    def _fused(self, bmg: BatchMolGraph, V_d: Tensor | None) -> bool:
        """Whether :class:`_ReluBondMessagePassing` computes exactly this forward pass (and
        a gradient is wanted: inference takes the plain path, which saves nothing)."""
        return (
            torch.is_grad_enabled()
            and V_d is None
            and type(self.tau) is torch.nn.ReLU
            and not self.undirected
            and isinstance(self.graph_transform, torch.nn.Identity)
            and not (bmg.V.requires_grad or bmg.E.requires_grad)
        )


class _ReluBondMessagePassing(torch.autograd.Function):
    """Chemprop's bond message passing with ReLU and dropout ``p`` (0 when not training),
    forward and backward written out; gradients for the weights only (the graph's
    features are data). ``rev_edge_index`` pairs each bond with its reverse, so it is its
    own inverse: the gradient of gathering by it is gathering by it again.

    Forward, with ``X = W_i(V[src] ‖ E)``: ``H = relu(X)``; ``depth - 1`` times
    ``H = dropout(relu(X + W_h(S[src] - H[rev])))`` where ``S`` sums ``H`` into each bond's
    destination atom; then ``dropout(relu(W_o(V ‖ S)))``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        V: Tensor,
        E: Tensor,
        edge_index: Tensor,
        rev: Tensor,
        depth: int,
        p: float,
        W_i: Tensor,
        b_i: Tensor | None,
        W_h: Tensor,
        b_h: Tensor | None,
        W_o: Tensor,
        b_o: Tensor | None,
    ) -> Tensor:
        src, dst = edge_index
        n_atoms, d_v = V.shape
        X = torch.addmm(F.linear(V, W_i[:, :d_v]).index_select(0, src), E, W_i[:, d_v:].t())
        if b_i is not None:
            X += b_i
        H = X.relu()
        Hs, Ms = [H], []
        for _ in range(1, depth):
            M = _sum_into(H, dst, n_atoms).index_select(0, src).sub_(H.index_select(0, rev))
            Z = torch.addmm(X, M, W_h.t())
            if b_h is not None:
                Z += b_h
            H = Z.relu_()
            if p:  # the call costs microseconds even when it returns its input
                H = F.dropout(H, p)
            Hs.append(H)
            Ms.append(M)
        S = _sum_into(H, dst, n_atoms)
        out = torch.addmm(F.linear(V, W_o[:, :d_v], b_o), S, W_o[:, d_v:].t()).relu_()
        if p:
            out = F.dropout(out, p)
        ctx.depth, ctx.p, ctx.biases = depth, p, (b_i is not None, b_h is not None, b_o is not None)
        ctx.save_for_backward(V, E, src, dst, rev, W_h, W_o, S, out, *Hs, *Ms)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        V, E, src, dst, rev, W_h, W_o, S, out, *saved = ctx.saved_tensors
        Hs, Ms = saved[: ctx.depth], saved[ctx.depth :]
        n_atoms, d_v = V.shape
        keep = 1.0 / (1.0 - ctx.p) if ctx.p > 0 else 1.0

        def through_relu(g: Tensor, y: Tensor, dropped: bool = True) -> Tensor:
            # relu then dropout: y > 0 exactly where both let the gradient through
            g = torch.ops.aten.threshold_backward(g, y, 0)
            return g * keep if dropped and keep != 1.0 else g

        G = through_relu(grad, out)
        dW_o = torch.cat((G.t() @ V, G.t() @ S), 1)
        db_o = G.sum(0) if ctx.biases[2] else None
        dH = (G @ W_o[:, d_v:]).index_select(0, dst)
        dX = db_h = None
        dW_h = torch.zeros_like(W_h) if ctx.depth > 1 else None  # unused at depth 1
        for t in range(ctx.depth - 1, 0, -1):
            dZ = through_relu(dH, Hs[t])
            dX = dZ if dX is None else dX + dZ
            dW_h.addmm_(dZ.t(), Ms[t - 1])  # type: ignore[union-attr]
            if ctx.biases[1]:
                db_h = dZ.sum(0) if db_h is None else db_h + dZ.sum(0)
            dM = dZ @ W_h
            dH = _sum_into(dM, src, n_atoms).index_select(0, dst).sub_(dM.index_select(0, rev))
        dZ = through_relu(dH, Hs[0], dropped=False)
        dX = dZ if dX is None else dX + dZ
        dW_i = torch.cat((_sum_into(dX, src, n_atoms).t() @ V, dX.t() @ E), 1)
        db_i = dX.sum(0) if ctx.biases[0] else None
        return None, None, None, None, None, None, dW_i, db_i, dW_h, db_h, dW_o, db_o


def _sum_into(H: Tensor, index: Tensor, n_rows: int) -> Tensor:
    """Rows of ``H`` summed into the ``n_rows`` rows ``index`` names (atoms, or molecules)."""
    return H.new_zeros(n_rows, H.shape[1]).index_add_(0, index, H)


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


def _n_molecules(batch: Tensor, size: int | None) -> int:
    # size known from the batch avoids Chemprop's batch.max() (a host sync on a GPU)
    return int(batch.max()) + 1 if size is None else size


def _sum_by_molecule(H: Tensor, batch: Tensor, size: int | None) -> Tensor:
    return _sum_into(H, batch, _n_molecules(batch, size))


class SumAggregation(cnn.SumAggregation):
    """:class:`chemprop.nn.SumAggregation` with ``index_add_``."""

    def forward(self, H: Tensor, batch: Tensor, size: int | None = None) -> Tensor:
        return _sum_by_molecule(H, batch, size)


class NormAggregation(cnn.NormAggregation):
    """:class:`chemprop.nn.NormAggregation` (sum / ``norm``) with ``index_add_``."""

    def forward(self, H: Tensor, batch: Tensor, size: int | None = None) -> Tensor:
        return _sum_by_molecule(H, batch, size) / self.norm


class MeanAggregation(cnn.MeanAggregation):
    """:class:`chemprop.nn.MeanAggregation` with ``index_add_`` and atom counts; one autograd
    node (:class:`_MeanByMolecule`) where there were three."""

    def forward(self, H: Tensor, batch: Tensor, size: int | None = None) -> Tensor:
        n = _n_molecules(batch, size)
        if torch.is_grad_enabled() and H.requires_grad:
            return _MeanByMolecule.apply(H, batch, n)
        return _sum_into(H, batch, n) / _atom_counts(batch, n, H.dtype)


def _atom_counts(batch: Tensor, n: int, dtype: torch.dtype) -> Tensor:
    """Each molecule's number of rows as a column (at least 1: an atom-less row divides by 1)."""
    return torch.bincount(batch, minlength=n).clamp_(min=1).unsqueeze(1).to(dtype)


class _MeanByMolecule(torch.autograd.Function):
    """Rows of ``H`` averaged per molecule (``batch`` names each row's molecule); backward
    is the same division and gather that autograd would replay from the sum, the count's
    cast and the division, as one node."""

    @staticmethod
    def forward(ctx: Any, H: Tensor, batch: Tensor, n: int) -> Tensor:  # type: ignore[override]
        counts = _atom_counts(batch, n, H.dtype)
        ctx.save_for_backward(batch, counts)
        return _sum_into(H, batch, n) / counts

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        batch, counts = ctx.saved_tensors
        return (grad / counts).index_select(0, batch), None, None


AGGREGATIONS: dict[str, type[cnn.Aggregation]] = {
    "mean": MeanAggregation,
    "sum": SumAggregation,
    "norm": NormAggregation,
}
SIZED_AGGREGATIONS = (MeanAggregation, SumAggregation, NormAggregation)
# Ours under the names Chemprop's AggregationRegistry uses (their Chemprop counterparts are
# declared in admet.config.registry); model.aggregation is built from the registry.
for _name, _cls in AGGREGATIONS.items():
    AGGREGATION_REGISTRY.register(_name)(_cls)
