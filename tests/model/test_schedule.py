"""One learning-rate schedule: the Lightning fit, the stacked fit and the Chemprop export
all follow :func:`admet.model.schedule.noam_schedule` of the run config (no training here)."""

from __future__ import annotations

import tomllib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from chemprop.schedulers import build_NoamLike_LRSched

from admet.model.chemprop_export import chemprop_train_config, to_chemprop
from admet.model.model import ChempropModel
from admet.model.schedule import NoamSchedule, clamped_warmup, noam_schedule

STEPS_PER_EPOCH = 3


def _model(max_epochs: int, warmup_epochs: int) -> ChempropModel:
    overrides = [
        "data.target_cols=[a, b]",
        "model.depth=2",
        "model.message_hidden_dim=8",
        "model.hidden_dim=8",
        "model.num_layers=1",
        f"optimization.max_epochs={max_epochs}",
        f"optimization.warmup_epochs={warmup_epochs}",
        "optimization.init_lr=0.0002",
        "optimization.max_lr=0.003",
        "optimization.final_lr=0.0001",
        "mlflow.enabled=false",
    ]
    model = ChempropModel.from_config({}, overrides)
    model.mpnn = model._build_mpnn(np.zeros(2), np.ones(2))
    return model


def _lrs(sched: torch.optim.lr_scheduler.LRScheduler, n: int) -> list[float]:
    out = []
    for _ in range(n):
        out.append(sched.optimizer.param_groups[0]["lr"])
        sched.optimizer.step()
        sched.step()
    return out


def test_warmup_is_clamped_to_leave_one_cooldown_epoch():
    assert clamped_warmup(2, 10) == 2
    assert clamped_warmup(5, 3) == 2
    assert clamped_warmup(1, 1) == 0
    assert clamped_warmup(1, 0) == 0


@pytest.mark.parametrize(("max_epochs", "warmup_epochs"), [(4, 1), (3, 5)])
def test_training_and_export_follow_the_same_schedule(max_epochs, warmup_epochs):
    model = _model(max_epochs, warmup_epochs)
    schedule = noam_schedule(model.config.optimization)
    assert schedule.warmup_epochs == clamped_warmup(warmup_epochs, max_epochs)
    mpnn = model.mpnn
    assert mpnn.schedule == schedule  # what the Lightning fit's configure_optimizers uses

    # the TOML `chemprop train` reads says the same schedule
    toml = tomllib.loads(chemprop_train_config(model.config))
    told = NoamSchedule(
        toml["warmup-epochs"], toml["epochs"], toml["init-lr"], toml["max-lr"], toml["final-lr"]
    )
    assert told == schedule
    # and so does the exported Chemprop checkpoint's hyperparameters
    plain = to_chemprop(model)
    assert (plain.warmup_epochs, plain.init_lr, plain.max_lr, plain.final_lr) == (
        schedule.warmup_epochs,
        schedule.init_lr,
        schedule.max_lr,
        schedule.final_lr,
    )

    # step by step: the MPNN's scheduler, the stacked fit's lr_at and Chemprop's CLI
    # (warmup and cooldown steps from the TOML's epochs) give the same learning rates
    mpnn._trainer = SimpleNamespace(max_epochs=max_epochs, num_training_batches=STEPS_PER_EPOCH)
    mpnn.steps_per_epoch = STEPS_PER_EPOCH
    ours = mpnn.configure_optimizers()["lr_scheduler"]["scheduler"]
    mpnn._trainer = None
    n = (max_epochs + 1) * STEPS_PER_EPOCH
    trained = _lrs(ours, n)
    cli_opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=told.init_lr)
    cli = build_NoamLike_LRSched(
        cli_opt,
        told.warmup_epochs * STEPS_PER_EPOCH,
        (told.max_epochs - told.warmup_epochs) * STEPS_PER_EPOCH,
        told.init_lr,
        told.max_lr,
        told.final_lr,
    )
    assert np.allclose(trained, _lrs(cli, n), rtol=1e-12, atol=0)
    lr_at = schedule.lr_at(STEPS_PER_EPOCH)
    assert np.allclose(trained, [lr_at(i) for i in range(n)], rtol=1e-12, atol=0)
    assert trained[0] == pytest.approx(schedule.init_lr)
    assert trained[-1] == pytest.approx(schedule.final_lr)
