"""Adam's fused update called straight, without ``Optimizer.step``'s per-call Python.

``torch.optim.Adam(fused=True).step()`` runs one fused kernel over all parameters, but
first walks every parameter in Python (lazy state, grad checks, list building), groups the
lists by device and dtype, and wraps the call in a profiler scope and the hook loops. For a
small model on a CPU that bookkeeping costs about 0.2-0.4 ms a step, four times the kernel.
:class:`FusedAdamStep` keeps the optimiser's own state tensors in lists after the first
(ordinary) step and then calls the same two kernels (``_foreach_add_`` on the step
counters, ``_fused_adam_``/``_fused_adamw_``) with the group's current hyperparameters, so
the update, the state and the checkpoints are exactly the optimiser's.

It steps through ``Optimizer.step`` instead whenever the shortcut could differ: an
optimiser other than a plain fused ``Adam``/``AdamW`` with one parameter group, any step
hook (the optimiser's or a global one), a parameter without a gradient, or a state the
optimiser replaced since (``load_state_dict``).

Example::

    opt = torch.optim.Adam(model.parameters(), 1e-3, fused=True)
    step = FusedAdamStep(opt)
    for batch in batches:
        loss_fn(model, batch).backward()
        step()  # the same update as opt.step()
"""

from __future__ import annotations

import torch
from torch.optim import Adam, AdamW

from admet._compat import torch_private

__all__ = ["FusedAdamStep", "adam_kernel"]

_FLAGS_OFF = ("amsgrad", "maximize", "capturable", "differentiable")


def _group_flags_allow(group: dict) -> bool:
    """A group the shortcut computes exactly: fused, none of the flags it does not pass."""
    return bool(group.get("fused")) and not any(group.get(flag) for flag in _FLAGS_OFF)


class FusedAdamStep:
    """``opt.step()`` for a fused ``Adam``/``AdamW``, with the per-call bookkeeping done once.

    Call it where ``opt.step()`` would be called (no closure).
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.applies = self._applies(optimizer)
        self._state: object = None  # the optimiser's state mapping the lists were read from
        self._group_params: object = None  # the group's parameter list they were read for
        self._params: list[torch.Tensor] = []
        self._exp_avgs: list[torch.Tensor] = []
        self._exp_avg_sqs: list[torch.Tensor] = []
        self._steps: list[torch.Tensor] = []

    @staticmethod
    def _applies(opt: torch.optim.Optimizer) -> bool:
        if type(opt) not in (Adam, AdamW) or len(opt.param_groups) != 1:
            return False
        if not torch_private.fused_adam_available():
            return False  # private kernels a later torch may rename: then Optimizer.step
        group = opt.param_groups[0]
        params = group["params"]
        return (
            _group_flags_allow(group)
            and bool(params)
            and len({(p.device, p.dtype) for p in params}) == 1
            and not any(torch.is_complex(p) for p in params)
            and getattr(opt, "grad_scale", None) is None
            and getattr(opt, "found_inf", None) is None
        )

    def _read_state(self) -> bool:
        """Take the state tensors' lists from the optimiser; False while any is missing."""
        opt = self.optimizer
        params = opt.param_groups[0]["params"]
        states = [opt.state.get(p, {}) for p in params]
        if not all({"step", "exp_avg", "exp_avg_sq"} <= state.keys() for state in states):
            return False
        self._params = list(params)
        self._exp_avgs = [s["exp_avg"] for s in states]
        self._exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        self._steps = [s["step"] for s in states]
        self._state, self._group_params = opt.state, params
        return True

    def _shortcut_holds(self, group: dict, grads: list[torch.Tensor | None]) -> bool:
        """Whether the kernels on the lists read last compute exactly what ``opt.step()``
        would now: the same state tensors and parameters, no hook, every gradient there."""
        opt = self.optimizer
        return (
            self._state is opt.state
            and group["params"] is self._group_params
            and len(opt.param_groups) == 1
            and len(grads) == len(group["params"])
            # a state tensor put back into the same mapping (Lightning's teardown moves them)
            and opt.state[self._params[0]]["exp_avg"] is self._exp_avgs[0]
            and _group_flags_allow(group)
            and getattr(opt, "grad_scale", None) is None
            and getattr(opt, "found_inf", None) is None
            and not torch_private.step_hooks_registered(opt)
            and all(g is not None for g in grads)
        )

    def __call__(self) -> None:
        opt = self.optimizer
        group = opt.param_groups[0]
        grads = [p.grad for p in self._params]
        if not self._shortcut_holds(group, grads):
            opt.step()
            if self.applies:
                self._read_state()
            return
        beta1, beta2 = group["betas"]
        torch_private.foreach_add_(self._steps, 1)
        adam_kernel(
            self._params,
            grads,
            self._exp_avgs,
            self._exp_avg_sqs,
            self._steps,
            lr=group["lr"],
            betas=(float(beta1), float(beta2)),
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            decoupled=bool(group.get("decoupled_weight_decay")),
        )


def adam_kernel(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    steps: list[torch.Tensor],
    lr: float,
    betas: tuple[float, float],
    weight_decay: float,
    eps: float,
    decoupled: bool = False,
) -> None:
    """Adam's (or AdamW's) fused update in place, the step counters already advanced: the
    one call into PyTorch's private fused kernels (through :mod:`admet._compat.torch_private`;
    tests/model/test_fused_adam.py and tests/test_compat_torch.py pin it)."""
    torch_private.fused_adam_(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        steps,
        lr=lr,
        beta1=betas[0],
        beta2=betas[1],
        weight_decay=weight_decay,
        eps=eps,
        decoupled=decoupled,
    )
