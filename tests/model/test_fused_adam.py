"""FusedAdamStep: the optimiser's own update, bit for bit, or the optimiser's step itself."""

from __future__ import annotations

import pytest
import torch

from admet.model.fused_adam import FusedAdamStep


def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def _train(step_with, opt_cls, steps: int = 12, **kwargs) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    net = _net()
    opt = opt_cls(net.parameters(), 1e-2, fused=True, **kwargs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 / (1 + i))  # the lr changes every step
    step = step_with(opt)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 6, generator=gen)
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        step()
        sched.step()
    return net, opt


def _steps(net: torch.nn.Module, step, n: int) -> None:
    """``n`` optimiser steps on one fixed input."""
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
    for _ in range(n):
        net.zero_grad()
        net(x).sum().backward()
        step()


def _same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("opt_cls", "kwargs"),
    [
        (torch.optim.Adam, {}),
        (torch.optim.Adam, {"weight_decay": 0.1}),
        (torch.optim.AdamW, {"weight_decay": 0.1}),
    ],
)
def test_the_update_and_the_state_are_the_optimisers_own(opt_cls, kwargs):
    direct, direct_opt = _train(FusedAdamStep, opt_cls, **kwargs)
    plain, plain_opt = _train(lambda opt: opt.step, opt_cls, **kwargs)
    assert FusedAdamStep(direct_opt).applies
    _same(direct, plain)
    for p, q in zip(direct.parameters(), plain.parameters(), strict=True):
        for key in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(direct_opt.state[p][key], plain_opt.state[q][key], rtol=0, atol=0)


def test_a_step_hook_or_a_reloaded_state_takes_the_optimisers_step():
    net = _net()
    opt = torch.optim.Adam(net.parameters(), 1e-2, fused=True)
    step = FusedAdamStep(opt)
    calls = []
    x = torch.randn(4, 6)

    def one() -> None:
        opt.zero_grad()
        net(x).sum().backward()
        step()

    one()
    one()  # the shortcut: no hook runs
    handle = opt.register_step_post_hook(lambda *args: calls.append(1))
    one()
    one()
    assert len(calls) == 2  # every step went through Optimizer.step while the hook was there
    handle.remove()
    before = {k: v.clone() for k, v in opt.state[net[0].weight].items()}
    opt.load_state_dict(opt.state_dict())  # new state tensors: the old lists are stale
    one()
    after = opt.state[net[0].weight]
    assert after["step"].item() == before["step"].item() + 1
    assert not torch.equal(after["exp_avg"], before["exp_avg"])


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.Adam(ps, 1e-2),  # foreach, not fused
        lambda ps: torch.optim.Adam(ps, 1e-2, fused=True, amsgrad=True),
        lambda ps: torch.optim.SGD(ps, 1e-2),
    ],
)
def test_other_optimisers_step_as_they_would(make):
    a, b = _net(), _net()
    opt_a, opt_b = make(a.parameters()), make(b.parameters())
    step = FusedAdamStep(opt_a)
    assert not step.applies
    _steps(a, step, 3)
    _steps(b, opt_b.step, 3)
    _same(a, b)


def test_only_the_first_step_goes_through_the_optimisers_step():
    net = _net()
    opt = torch.optim.Adam(net.parameters(), 1e-2, fused=True)
    calls = []
    plain_step = opt.step

    def counted(*args, **kwargs):
        calls.append(1)
        return plain_step(*args, **kwargs)

    opt.step = counted  # what the shortcut would fall back to
    step = FusedAdamStep(opt)
    _steps(net, step, 12)
    assert len(calls) == 1  # the first creates the state; the other eleven are the kernel's
    assert opt.state[net[0].weight]["step"].item() == 12


def test_a_parameter_without_a_gradient_steps_as_the_optimiser_would():
    def make() -> torch.nn.Module:
        net = _net()
        net.register_parameter("unused", torch.nn.Parameter(torch.ones(3)))  # never gets a grad
        return net

    a, b = make(), make()
    opt_a = torch.optim.Adam(a.parameters(), 1e-2, fused=True)
    opt_b = torch.optim.Adam(b.parameters(), 1e-2, fused=True)
    step = FusedAdamStep(opt_a)
    _steps(a, step, 4)
    _steps(b, opt_b.step, 4)
    _same(a, b)
    assert a.unused not in opt_a.state or not opt_a.state[a.unused]
