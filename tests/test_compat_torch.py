"""Each behaviour of PyTorch's private API that ``admet._compat.torch_private`` relies on,
pinned against the installed torch: an upgrade that renames or changes one fails here.
(``tests/model/test_fused_adam.py`` checks the optimiser built on them, step by step.)"""

from __future__ import annotations

import pytest
import torch
from torch.optim import Adam, AdamW
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from admet._compat import torch_private


def test_torch_is_the_version_the_adapter_was_checked_against():
    major, minor = (int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
    assert (major, minor) == (2, 13), "re-check every pin in this file, then widen pyproject's bound"


def test_foreach_zero_zeroes_every_tensor_in_place():
    a, b = torch.ones(3), torch.full((2, 2), 5.0)
    views = [a, b]
    torch_private.foreach_zero_(views)
    assert views[0] is a and views[1] is b
    assert not a.any() and not b.any()


def test_foreach_add_advances_step_counters_in_place():
    steps = [torch.tensor(0.0), torch.tensor(3.0)]
    same = list(steps)
    torch_private.foreach_add_(steps, 1)
    assert all(s is t for s, t in zip(steps, same, strict=True))
    assert [float(s) for s in steps] == [1.0, 4.0]


@pytest.mark.parametrize("cls", [Adam, AdamW])
def test_the_fused_kernel_is_adams_fused_step(cls):
    """After one ordinary step (the state exists), the kernel on the state's lists, the
    counters advanced first, gives exactly what a second ``opt.step()`` gives."""
    assert torch_private.fused_adam_available()
    torch.manual_seed(0)
    ref = [torch.randn(4, 3, requires_grad=True), torch.randn(3, requires_grad=True)]
    ours = [p.detach().clone().requires_grad_(True) for p in ref]
    kw = dict(lr=1e-2, betas=(0.8, 0.95), eps=1e-7, weight_decay=0.1, fused=True)
    opt_ref, opt_ours = cls(ref, **kw), cls(ours, **kw)
    grads = [[torch.randn_like(p) for p in ref] for _ in range(2)]
    for params, opt in ((ref, opt_ref), (ours, opt_ours)):
        for p, g in zip(params, grads[0], strict=True):
            p.grad = g.clone()
        opt.step()
    for p, g in zip(ref, grads[1], strict=True):
        p.grad = g.clone()
    opt_ref.step()
    states = [opt_ours.state[p] for p in ours]
    steps = [s["step"] for s in states]
    torch_private.foreach_add_(steps, 1)
    group = opt_ours.param_groups[0]
    with torch.no_grad():
        torch_private.fused_adam_(
            ours,
            [g.clone() for g in grads[1]],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            steps,
            lr=group["lr"],
            beta1=group["betas"][0],
            beta2=group["betas"][1],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            decoupled=cls is AdamW,
        )
    for p, q in zip(ref, ours, strict=True):
        assert torch.equal(p, q)
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(opt_ref.state[p][key], opt_ours.state[q][key])


def test_step_hooks_registered_sees_the_optimisers_and_the_global_hooks():
    opt = Adam([torch.zeros(1, requires_grad=True)])
    assert not torch_private.step_hooks_registered(opt)
    for register in (opt.register_step_pre_hook, opt.register_step_post_hook):
        handle = register(lambda *a, **k: None)
        assert torch_private.step_hooks_registered(opt)
        handle.remove()
        assert not torch_private.step_hooks_registered(opt)
    for register in (register_optimizer_step_pre_hook, register_optimizer_step_post_hook):
        handle = register(lambda *a, **k: None)
        try:
            assert torch_private.step_hooks_registered(opt)
        finally:
            handle.remove()
        assert not torch_private.step_hooks_registered(opt)
