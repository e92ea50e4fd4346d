"""Ensemble members as one stacked model: one forward, one backward and one optimiser
call per step for all M members.

A member of an ensemble is a :class:`~admet.model.mpnn.MultitaskMPNN`; every member has
the same architecture and its own weights, training fold, sampler stream and target
scaler. Trained one process per member, each small step pays its own Python and kernel
launches M times. Here the members' weights are stacked along a leading member dimension
(:func:`torch.func.stack_module_state`) and every step handles all members' batches at
once:

* **graphs**: each member's batch is padded to a common atom, bond and molecule count
  and the members are laid side by side (:class:`StackedGraphs`): member ``m``'s atom
  ``i`` is row ``m * n_atoms + i``. Padding rows are zero features; padding bonds join a
  padding atom to itself and padding atoms sum into a padding molecule that no loss,
  batch-norm statistic or metric reads, so they add nothing to any gradient. Every
  member gets at least one padding atom and molecule; the padding is the spread of the
  members' atom counts: on the fang2023 training table, 5 members x 32 molecules, 6.1%
  more atom and bond rows than the real ones on average (14% at most in 200 batches).
  Padding rather than one packed graph with a member index per atom: a per-member weight is then
  a batched matrix product (``bmm``) over ``(M, rows, features)``, for which there is a
  single kernel; a packed layout would need a grouped product that PyTorch lacks on CPU.
* **message passing**: :class:`_StackedReluBondMessagePassing`, the single-member
  autograd node of :mod:`admet.model.layers` with ``bmm`` for every product (same
  arithmetic per member, one node per step for all members);
* **aggregation**: the members' molecules are distinct rows, so the single-member
  aggregation modules apply unchanged to the flat rows;
* **batch norm**: per member, over that member's real molecules only (masked);
* **prediction head**: any head (Chemprop's FFN, branched, mixture of experts) through
  :func:`torch.func.vmap` over :func:`torch.func.functional_call`, so a head added to the
  registry needs no stacked twin;
* **loss**: each member's criterion mean over its own labels; their sum is
  differentiated once, and as members share no parameter each member's gradient is the
  one its own step would take;
* **optimiser**: :class:`StackedAdam`, Adam's fused kernel on per-member views of the
  stacked tensors, one call per distinct learning rate (members whose folds differ in
  size run different step counts per epoch and so different Noam schedules).

A member that stops early leaves the stack (:meth:`StackedMembers.keep`): the remaining
members' tensors are copied into a smaller stack, so it costs nothing further.

Over 350 lines because the batch layout, the vmapped forward and the hand-written message
passing backward must agree index for index; the loop that drives them is
:mod:`admet.model.stacked_fit`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, stack_module_state, vmap

from admet._compat import chemprop_private, torch_private
from admet.data.packed import PackedGraphs, _ranges
from admet.model.fused_adam import adam_kernel
from admet.model.layers import SIZED_AGGREGATIONS, _sum_into
from admet.model.mpnn import MultitaskMPNN

__all__ = ["StackedAdam", "StackedBatch", "StackedGraphs", "StackedMembers", "stackable"]

_MP = "message_passing."
_HEAD = "predictor.ffn."
_BN = "bn."


@dataclass
class StackedBatch:
    """M members' batches side by side (see the module docstring for the layout).

    ``V``/``E`` are flat ``(M * n_atoms, d_v)``/``(M * n_bonds, d_e)``; ``src``/``dst``/
    ``rev`` index those flat rows; ``mol`` gives each atom's molecule slot in
    ``M * n_slots``; ``Y`` is ``(M, n_slots, T)`` raw targets (NaN where unlabelled or
    padding) when targets were given; ``sizes`` are the members' real molecule counts.
    """

    V: Tensor
    E: Tensor
    src: Tensor
    dst: Tensor
    rev: Tensor
    mol: Tensor
    n_members: int
    n_atoms: int
    n_bonds: int
    n_slots: int
    sizes: list[int]
    Y: Tensor | None = None
    # (M, n_slots, d) molecule descriptors, scaled by each member's training-fold scaler
    # (zero in padding slots), when the members have data.molecule_features
    X_d: Tensor | None = None

    @property
    def slot_mask(self) -> Tensor:
        """``(M, n_slots)``: True where a slot holds a real molecule."""
        slots = torch.arange(self.n_slots, device=self.V.device)
        return slots.unsqueeze(0) < torch.tensor(self.sizes, device=self.V.device).unsqueeze(1)


class StackedGraphs:
    """Packed graphs (and raw targets) from which batches of M members are gathered.

    One table holds every molecule any member trains or validates on; a member's batch is
    a set of row numbers in it. The index arithmetic runs on the host; a stacked batch is
    then two row gathers on the device whatever M is.
    """

    def __init__(
        self, graphs: PackedGraphs, Y: np.ndarray | None = None, X_d: np.ndarray | None = None
    ) -> None:
        device = graphs.device
        # a zero row at the end of each table: padding atoms and bonds gather it
        self.V = torch.cat([graphs.V, graphs.V.new_zeros(1, graphs.V.shape[1])])
        self.E = torch.cat([graphs.E, graphs.E.new_zeros(1, graphs.E.shape[1])])
        self.edge_index = graphs.edge_index.cpu().numpy()
        self.rev_edge_index = graphs.rev_edge_index.cpu().numpy()
        self.atom_offsets = graphs.atom_offsets
        self.bond_offsets = graphs.bond_offsets
        self.device = device
        self.Y = None
        if Y is not None:
            Y = np.asarray(Y, dtype=np.float32)
            pad = np.full((1, Y.shape[1]), np.nan, dtype=np.float32)
            self.Y = torch.from_numpy(np.concatenate([Y, pad])).to(device)
        # descriptors row-aligned with the target table (each member's own scaling), a
        # zero row at the end for padding slots
        self.X_d = None
        if X_d is not None:
            X_d = np.asarray(X_d, dtype=np.float32)
            self.X_d = torch.from_numpy(np.concatenate([X_d, np.zeros((1, X_d.shape[1]), np.float32)])).to(
                device
            )

    def __len__(self) -> int:
        return len(self.atom_offsets) - 1

    def batch(
        self,
        sets: Sequence[np.ndarray | Tensor | Sequence[int]],
        target_sets: Sequence[np.ndarray] | None = None,
    ) -> StackedBatch:
        """The stacked batch of the members' index sets (one per member, any sizes);
        ``target_sets``: the rows of the target table for those molecules, when they are
        not the same numbers (members with their own scaled targets)."""
        sets = [np.asarray(s.cpu() if isinstance(s, Tensor) else s, dtype=np.int64) for s in sets]
        M = len(sets)
        sizes = np.array([len(s) for s in sets], dtype=np.int64)
        idx = np.concatenate(sets) if sizes.sum() else np.zeros(0, dtype=np.int64)
        member = np.repeat(np.arange(M), sizes)
        a0 = self.atom_offsets[idx]
        n_at = self.atom_offsets[idx + 1] - a0
        b0 = self.bond_offsets[idx]
        n_bd = self.bond_offsets[idx + 1] - b0
        atoms_m = np.bincount(member, weights=n_at, minlength=M).astype(np.int64)
        bonds_m = np.bincount(member, weights=n_bd, minlength=M).astype(np.int64)
        Na = int(atoms_m.max(initial=0)) + 1  # at least one padding atom per member
        Nb = max(int(bonds_m.max(initial=0)), 1)
        S = int(sizes.max(initial=0)) + 1  # and one padding molecule
        first = np.cumsum(sizes) - sizes
        place = np.arange(len(idx), dtype=np.int64) - first[member]
        # each molecule's first atom and bond within its member's block
        atom_src, atom_start = _ranges(a0, n_at)
        bond_src, bond_start = _ranges(b0, n_bd)
        atom_start = atom_start - (np.cumsum(atoms_m) - atoms_m)[member]
        bond_start = bond_start - (np.cumsum(bonds_m) - bonds_m)[member]
        atom_row = np.repeat(member * Na + atom_start, n_at) + _within(n_at)
        bond_row = np.repeat(member * Nb + bond_start, n_bd) + _within(n_bd)

        zero_atom, zero_bond = len(self.V) - 1, len(self.E) - 1
        atom_index = np.full(M * Na, zero_atom, dtype=np.int64)
        atom_index[atom_row] = atom_src
        bond_index = np.full(M * Nb, zero_bond, dtype=np.int64)
        bond_index[bond_row] = bond_src
        pad_atom = np.repeat(np.arange(M) * Na + Na - 1, Nb)
        src, dst = pad_atom.copy(), pad_atom.copy()
        shift = np.repeat(member * Na + atom_start, n_bd)
        src[bond_row] = self.edge_index[0, bond_src] + shift
        dst[bond_row] = self.edge_index[1, bond_src] + shift
        rev = np.arange(M * Nb, dtype=np.int64)
        rev[bond_row] = self.rev_edge_index[bond_src] + np.repeat(member * Nb + bond_start, n_bd)
        mol = np.repeat(np.arange(M) * S + S - 1, Na)
        mol[atom_row] = np.repeat(member * S + place, n_at)

        def dev(a: np.ndarray) -> Tensor:
            return torch.from_numpy(a).to(self.device, non_blocking=self.device.type == "cuda")

        out = StackedBatch(
            V=self.V.index_select(0, dev(atom_index)),
            E=self.E.index_select(0, dev(bond_index)),
            src=dev(src),
            dst=dev(dst),
            rev=dev(rev),
            mol=dev(mol),
            n_members=M,
            n_atoms=Na,
            n_bonds=Nb,
            n_slots=S,
            sizes=sizes.tolist(),
        )
        for name in ("Y", "X_d"):
            table = getattr(self, name)
            if table is not None:
                slot_index = np.full(M * S, len(table) - 1, dtype=np.int64)
                slot_index[member * S + place] = idx if target_sets is None else _concat(target_sets)
                setattr(out, name, table.index_select(0, dev(slot_index)).view(M, S, -1))
        return out


def _concat(sets: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(s, dtype=np.int64) for s in sets])


def _within(counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(n) for n in counts])``, vectorised."""
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)


def stackable(mpnn: MultitaskMPNN) -> str | None:
    """Why ``mpnn`` cannot be trained stacked, or None when it can: the stacked message
    passing is the fused ReLU node's (directed bonds, no atom descriptors, no graph
    transform) and the aggregation one of ours."""
    mp = mpnn.message_passing
    if type(mp.tau) is not torch.nn.ReLU:
        return f"activation {type(mp.tau).__name__} (the stacked message passing is ReLU's)"
    if mp.undirected:
        return "undirected message passing"
    if not isinstance(mp.graph_transform, torch.nn.Identity):
        return "a graph transform"
    if mp.V_d_transform is not None and not isinstance(mp.V_d_transform, torch.nn.Identity):
        return "extra atom descriptors"
    if not isinstance(mpnn.agg, SIZED_AGGREGATIONS):
        return f"aggregation {type(mpnn.agg).__name__}"
    if not isinstance(mpnn.bn, torch.nn.BatchNorm1d | torch.nn.Identity):
        return f"normalisation {type(mpnn.bn).__name__}"
    return None


class StackedMembers:
    """The stacked parameters and buffers of M architecture-identical members.

    ``params``/``buffers`` map each member module's state name to a tensor with a
    leading member dimension (``params`` are leaves that take gradients); ``members``
    are the indices (into the ensemble) of the members stacked now.
    """

    def __init__(self, mpnns: Sequence[MultitaskMPNN], members: Sequence[int] | None = None) -> None:
        if not mpnns:
            raise ValueError("no members to stack")
        for mpnn in mpnns:
            reason = stackable(mpnn)
            if reason is not None:
                raise ValueError(f"cannot stack this model: {reason}")
        self.template = mpnns[0]
        self.members = list(range(len(mpnns)) if members is None else members)
        params, buffers = stack_module_state(list(mpnns))
        self.params: dict[str, Tensor] = params
        self.buffers: dict[str, Tensor] = buffers
        self.training = True
        mp = self.template.message_passing
        self.depth = mp.depth
        self.dropout = mp.dropout.p
        self.agg = self.template.agg
        bn = self.template.bn
        self.bn_eps = bn.eps if isinstance(bn, torch.nn.BatchNorm1d) else None
        self.bn_momentum = bn.momentum if isinstance(bn, torch.nn.BatchNorm1d) else None
        self._head = self.template.predictor.ffn
        self.criterion = self.template.predictor.criterion

    def __len__(self) -> int:
        return len(self.members)

    def keep(self, positions: Sequence[int]) -> None:
        """Keep only the members at these positions of the stack (new leaf tensors)."""
        device = next(iter(self.params.values())).device
        index = torch.tensor(list(positions), dtype=torch.long, device=device)
        with torch.no_grad():
            self.params = {
                k: v.index_select(0, index).requires_grad_(v.requires_grad) for k, v in self.params.items()
            }
            self.buffers = {k: v.index_select(0, index) for k, v in self.buffers.items()}
        self.members = [self.members[i] for i in positions]

    def subset(self, positions: Sequence[int]) -> StackedMembers:
        """A stack of these positions' members for inference (copies, no gradients)."""
        out = copy.copy(self)
        device = next(iter(self.params.values())).device
        index = torch.tensor(list(positions), dtype=torch.long, device=device)
        with torch.no_grad():
            out.params = {k: v.index_select(0, index) for k, v in self.params.items()}
            out.buffers = {k: v.index_select(0, index) for k, v in self.buffers.items()}
        out.members = [self.members[i] for i in positions]
        out.training = False
        return out

    def state_dict(self, position: int) -> dict[str, Tensor]:
        """Member ``position``'s own state dict (copies), loadable into a ``MultitaskMPNN``."""
        with torch.no_grad():
            out = {k: v[position].detach().clone() for k, v in self.params.items()}
            out.update({k: v[position].clone() for k, v in self.buffers.items()})
        return out

    def load_member(self, position: int, state: dict[str, Tensor]) -> None:
        """Put a member's state dict back into its slice of the stack."""
        with torch.no_grad():
            for k, v in self.params.items():
                v[position].copy_(state[k])
            for k, v in self.buffers.items():
                v[position].copy_(state[k])

    # -- forward --------------------------------------------------------------------------

    def _p(self, prefix: str, name: str) -> Tensor | None:
        return self.params.get(prefix + name)

    def fingerprints(self, batch: StackedBatch) -> Tensor:
        """``(M, n_slots, d)``: each member's molecule embeddings (after batch norm), with
        the batch's scaled molecule descriptors after them when it has any (as
        ``MPNN.fingerprint`` concatenates ``X_d``)."""
        Z = self._embeddings(batch)
        return Z if batch.X_d is None else torch.cat((Z, batch.X_d.to(Z.dtype)), dim=-1)

    def _embeddings(self, batch: StackedBatch) -> Tensor:
        p, M = self.params, batch.n_members
        p_drop = self.dropout if self.training else 0.0
        H = _StackedReluBondMessagePassing.apply(
            batch.V.view(M, batch.n_atoms, -1),
            batch.E.view(M, batch.n_bonds, -1),
            batch.src,
            batch.dst,
            batch.rev,
            self.depth,
            p_drop,
            p[_MP + "W_i.weight"],
            p.get(_MP + "W_i.bias"),
            p[_MP + "W_h.weight"],
            p.get(_MP + "W_h.bias"),
            p[_MP + "W_o.weight"],
            p.get(_MP + "W_o.bias"),
        )
        Z = self.agg(H, batch.mol, M * batch.n_slots).view(M, batch.n_slots, -1)
        if self.bn_eps is None:
            return Z
        return self._batch_norm(Z, batch)

    def _batch_norm(self, Z: Tensor, batch: StackedBatch) -> Tensor:
        """Each member's ``BatchNorm1d`` over its real molecules (padding slots excluded);
        in training the running statistics move as ``BatchNorm1d``'s would."""
        weight, bias = self.params[_BN + "weight"], self.params[_BN + "bias"]
        mean_buf, var_buf = self.buffers[_BN + "running_mean"], self.buffers[_BN + "running_var"]
        if self.training:
            mask = batch.slot_mask.unsqueeze(-1).to(Z.dtype)  # (M, S, 1)
            n = mask.sum(1, keepdim=True).clamp(min=1)
            mean = (Z * mask).sum(1, keepdim=True) / n
            centred = (Z - mean) * mask
            var = (centred * centred).sum(1, keepdim=True) / n
            with torch.no_grad():
                m = self.bn_momentum
                unbiased = var * (n / (n - 1).clamp(min=1))
                mean_buf.mul_(1 - m).add_(mean.squeeze(1), alpha=m)
                var_buf.mul_(1 - m).add_(unbiased.squeeze(1), alpha=m)
                self.buffers[_BN + "num_batches_tracked"].add_(1)
        else:
            mean, var = mean_buf.unsqueeze(1), var_buf.unsqueeze(1)
        Zn = (Z - mean) * torch.rsqrt(var + self.bn_eps)
        return Zn * weight.unsqueeze(1) + bias.unsqueeze(1)

    def predict_scaled(self, batch: StackedBatch) -> Tensor:
        """``(M, n_slots, T)``: each member's predictions on standardised targets (the
        head's ``train_step``; the output transform is the caller's)."""
        Z = self.fingerprints(batch)
        head = {k[len(_HEAD) :]: v for k, v in self.params.items() if k.startswith(_HEAD)}
        head_buffers = {k[len(_HEAD) :]: v for k, v in self.buffers.items() if k.startswith(_HEAD)}
        module = self._head
        module.train(self.training)

        def one(params: dict[str, Tensor], buffers: dict[str, Tensor], z: Tensor) -> Tensor:
            return functional_call(module, (params, buffers), (z,))

        return vmap(one, randomness="different")(head, head_buffers, Z)

    def losses(self, preds: Tensor, targets: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Each member's criterion sum and label count, ``(M,)`` each (mean = sum / count):
        Chemprop's masked, task-weighted unreduced loss with unit sample weights."""
        crit = self.criterion
        no = torch.zeros_like(mask)
        weights = torch.ones((*preds.shape[:-1], 1), device=preds.device, dtype=preds.dtype)
        L = chemprop_private.unreduced_loss(crit, preds, targets, mask, weights, no, no)
        task_weights = self.buffers["predictor.criterion.task_weights"]  # (M, 1, T)
        return (L * task_weights * mask).sum((1, 2)), mask.sum((1, 2))


class _StackedReluBondMessagePassing(torch.autograd.Function):
    """:class:`admet.model.layers._ReluBondMessagePassing` for M members at once: weights
    ``(M, out, in)``, features ``(M, rows, in)``, indices into the flat ``M * rows``; every
    product a ``bmm`` over the member dimension. Returns the flat ``(M * n_atoms, d_h)``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        V: Tensor,
        E: Tensor,
        src: Tensor,
        dst: Tensor,
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
        M, Na, d_v = V.shape
        Nb = E.shape[1]
        n = M * Na
        left = torch.bmm(V, W_i[:, :, :d_v].transpose(1, 2)).view(n, -1).index_select(0, src)
        X = torch.baddbmm(left.view(M, Nb, -1), E, W_i[:, :, d_v:].transpose(1, 2))
        if b_i is not None:
            X += b_i.unsqueeze(1)
        H = X.relu()
        Hs, Ms = [H], []
        W_hT = W_h.transpose(1, 2)
        for _ in range(1, depth):
            Hf = H.view(M * Nb, -1)
            Mf = _sum_into(Hf, dst, n).index_select(0, src).sub_(Hf.index_select(0, rev))
            Mm = Mf.view(M, Nb, -1)
            Z = torch.baddbmm(X, Mm, W_hT)
            if b_h is not None:
                Z += b_h.unsqueeze(1)
            H = Z.relu_()
            if p:
                H = F.dropout(H, p)
            Hs.append(H)
            Ms.append(Mm)
        S = _sum_into(H.view(M * Nb, -1), dst, n).view(M, Na, -1)
        out = torch.bmm(V, W_o[:, :, :d_v].transpose(1, 2))
        if b_o is not None:
            out += b_o.unsqueeze(1)
        out = out.baddbmm_(S, W_o[:, :, d_v:].transpose(1, 2)).relu_()
        if p:
            out = F.dropout(out, p)
        ctx.depth, ctx.p, ctx.biases = depth, p, (b_i is not None, b_h is not None, b_o is not None)
        ctx.save_for_backward(V, E, src, dst, rev, W_h, W_o, S, out, *Hs, *Ms)
        return out.view(n, -1)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        V, E, src, dst, rev, W_h, W_o, S, out, *saved = ctx.saved_tensors
        Hs, Ms = saved[: ctx.depth], saved[ctx.depth :]
        M, Na, d_v = V.shape
        Nb = E.shape[1]
        n = M * Na
        keep = 1.0 / (1.0 - ctx.p) if ctx.p > 0 else 1.0

        def through_relu(g: Tensor, y: Tensor, dropped: bool = True) -> Tensor:
            g = torch.ops.aten.threshold_backward(g, y, 0)
            return g * keep if dropped and keep != 1.0 else g

        G = through_relu(grad.view(M, Na, -1), out)
        Gt = G.transpose(1, 2)
        dW_o = torch.cat((torch.bmm(Gt, V), torch.bmm(Gt, S)), 2)
        db_o = G.sum(1) if ctx.biases[2] else None
        dH = torch.bmm(G, W_o[:, :, d_v:]).view(n, -1).index_select(0, dst).view(M, Nb, -1)
        dX = db_h = None
        dW_h = torch.zeros_like(W_h) if ctx.depth > 1 else None
        for t in range(ctx.depth - 1, 0, -1):
            dZ = through_relu(dH, Hs[t])
            dX = dZ if dX is None else dX + dZ
            dW_h.baddbmm_(dZ.transpose(1, 2), Ms[t - 1])  # type: ignore[union-attr]
            if ctx.biases[1]:
                db_h = dZ.sum(1) if db_h is None else db_h + dZ.sum(1)
            dM = torch.bmm(dZ, W_h).view(M * Nb, -1)
            dH = _sum_into(dM, src, n).index_select(0, dst).sub_(dM.index_select(0, rev)).view(M, Nb, -1)
        dZ = through_relu(dH, Hs[0], dropped=False)
        dX = dZ if dX is None else dX + dZ
        per_atom = _sum_into(dX.view(M * Nb, -1), src, n).view(M, Na, -1)
        dW_i = torch.cat((torch.bmm(per_atom.transpose(1, 2), V), torch.bmm(dX.transpose(1, 2), E)), 2)
        db_i = dX.sum(1) if ctx.biases[0] else None
        return None, None, None, None, None, None, None, dW_i, db_i, dW_h, db_h, dW_o, db_o


class StackedAdam:
    """Adam (Chemprop's: no weight decay, PyTorch's defaults) on stacked parameters with a
    learning rate per member: the fused kernel on each member's views of the stacked
    tensors, one call per distinct learning rate, the step counters per member.

    Kept instead of ``torch.optim.Adam`` because an optimiser has one learning rate per
    parameter tensor, and here a tensor holds every member."""

    def __init__(
        self, params: dict[str, Tensor], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        self.betas, self.eps = betas, eps
        self.bind(params)

    def bind(self, params: dict[str, Tensor], keep: Sequence[int] | None = None) -> None:
        """(Re)attach to the stack's parameter tensors; ``keep``: the positions of the
        previous stack that these are (their moments and step counts carry over)."""
        old = getattr(self, "_stacked", None)
        self.params = list(params.values())
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if old is None or keep is None:
            self.exp_avg = [torch.zeros_like(p) for p in self.params]
            self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
            M = self.params[0].shape[0]
            self.steps = [torch.zeros((), dtype=torch.float32) for _ in range(M)]
        else:
            index = torch.tensor(list(keep), dtype=torch.long, device=self.params[0].device)
            self.exp_avg = [t.index_select(0, index) for t in old[0]]
            self.exp_avg_sq = [t.index_select(0, index) for t in old[1]]
            self.steps = [old[2][i] for i in keep]
        self._stacked = (self.exp_avg, self.exp_avg_sq, self.steps)
        M = len(self.steps)
        # per-member views, made once: the kernels update the stacked tensors through them
        self._views = [
            (
                [p[m] for p in self.params],
                [p.grad[m] for p in self.params],
                [t[m] for t in self.exp_avg],
                [t[m] for t in self.exp_avg_sq],
                [self.steps[m]] * len(self.params),
            )
            for m in range(M)
        ]

    def zero_grad(self) -> None:
        """Zero the gradients in place (their per-member views stay valid)."""
        torch_private.foreach_zero_([p.grad for p in self.params])

    @torch.no_grad()
    def step(self, lrs: Sequence[float]) -> None:
        """One Adam step of every member, member ``m`` at learning rate ``lrs[m]``."""
        torch_private.foreach_add_(self.steps, 1)
        by_lr: dict[float, list[int]] = {}
        for m, lr in enumerate(lrs):
            by_lr.setdefault(float(lr), []).append(m)
        for lr, members in by_lr.items():
            lists: list[list[Tensor]] = [[], [], [], [], []]
            for m in members:
                for acc, part in zip(lists, self._views[m], strict=True):
                    acc.extend(part)
            adam_kernel(*lists[:4], lists[4], lr=lr, betas=self.betas, weight_decay=0.0, eps=self.eps)
