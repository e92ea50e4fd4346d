"""PyTorch's private API used by ``admet``: the foreach and fused-Adam kernels that
``torch.optim`` calls inside ``Optimizer.step``, and the optimiser step-hook registries.

Used by :mod:`admet.model.fused_adam` and :mod:`admet.model.stacked`, which call the
kernels straight to skip ``Optimizer.step``'s per-call Python. Pinned by
``tests/test_compat_torch.py`` (and ``tests/model/test_fused_adam.py``).
"""

from __future__ import annotations

import torch
from torch.optim import optimizer as _optimizer

__all__ = [
    "foreach_add_",
    "foreach_zero_",
    "fused_adam_",
    "fused_adam_available",
    "step_hooks_registered",
]


def foreach_zero_(tensors: list[torch.Tensor]) -> None:
    """``torch._foreach_zero_``: every tensor of the list zeroed in place, in one call."""
    torch._foreach_zero_(tensors)


def foreach_add_(tensors: list[torch.Tensor], scalar: float) -> None:
    """``torch._foreach_add_`` with a scalar: ``scalar`` added to every tensor in place (how
    ``torch.optim`` advances its step counters)."""
    torch._foreach_add_(tensors, scalar)


def fused_adam_available() -> bool:
    """Whether this build has ``torch._fused_adam_`` and ``torch._fused_adamw_``."""
    return hasattr(torch, "_fused_adam_") and hasattr(torch, "_fused_adamw_")


def fused_adam_(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    steps: list[torch.Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    eps: float,
    decoupled: bool = False,
) -> None:
    """``torch._fused_adam_`` (``_fused_adamw_`` when ``decoupled``): Adam's update of
    ``params``, ``exp_avgs`` and ``exp_avg_sqs`` in place, as ``Adam(fused=True).step()``
    computes it, the step counters ``steps`` already advanced (the kernel reads, not
    increments them); no amsgrad, maximize, grad scaling or inf check."""
    kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_
    kernel(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        [],
        steps,
        amsgrad=False,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        weight_decay=weight_decay,
        eps=eps,
        maximize=False,
        grad_scale=None,
        found_inf=None,
    )


def step_hooks_registered(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step()`` would run any step hook: the optimiser's own
    (``_optimizer_step_pre_hooks``/``_optimizer_step_post_hooks``) or a global one
    (``torch.optim.optimizer._global_optimizer_pre_hooks``/``_post_hooks``)."""
    return bool(
        optimizer._optimizer_step_pre_hooks
        or optimizer._optimizer_step_post_hooks
        or _optimizer._global_optimizer_pre_hooks
        or _optimizer._global_optimizer_post_hooks
    )
