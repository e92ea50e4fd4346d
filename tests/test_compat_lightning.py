"""Each behaviour of Lightning's private API that ``admet._compat.lightning_private`` relies
on, pinned against the installed Lightning in one tiny manual-optimisation fit on the CPU:
an upgrade that renames or changes one fails here, not in a study."""

from __future__ import annotations

import lightning
import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import Logger

from admet._compat import lightning_private


def test_lightning_is_the_version_the_adapter_was_checked_against():
    major, minor = (int(p) for p in lightning.__version__.split(".")[:2])
    assert (major, minor) == (2, 6), "re-check every pin in this file, then widen pyproject's bound"


class _Keep(Logger):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[dict, int | None]] = []

    @property
    def name(self) -> str:
        return "keep"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.calls.append((dict(metrics), step))


class _Direct(pl.LightningModule):
    """Steps as ``MultitaskMPNN.training_step`` does with direct steps: the optimiser's own
    ``step`` between the wrapper's two callbacks, no ``LightningOptimizer.step``."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.layer = torch.nn.Linear(2, 1)
        self.global_steps: list[int] = []
        self.had_callbacks: list[bool] = []

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        self.had_callbacks.append(lightning_private.has_step_callbacks(opt))
        loss = self.layer(batch[0]).pow(2).mean()
        opt.optimizer.zero_grad()
        loss.backward()
        before = self.trainer.global_step
        lightning_private.before_optimizer_step(opt)
        opt.optimizer.step()
        lightning_private.after_optimizer_step(opt)
        self.global_steps.append(self.trainer.global_step - before)

    def on_train_epoch_end(self) -> None:
        lightning_private.log_metrics(self.trainer, {"recorded": 1.5})

    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.randn(6, 2))
        return torch.utils.data.DataLoader(data, batch_size=2)


def test_the_wrappers_callbacks_count_steps_and_the_connector_reaches_the_loggers(tmp_path):
    module, logger = _Direct(), _Keep()
    trainer = pl.Trainer(
        max_epochs=2,
        log_every_n_steps=1,
        accelerator="cpu",
        devices=1,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module)
    assert module.had_callbacks == [True] * 6
    # each before/after pair counts one optimiser step, as LightningOptimizer.step would
    assert module.global_steps == [1] * 6 and trainer.global_step == 6
    sent = [(m, s) for m, s in logger.calls if "recorded" in m]
    # once per epoch, with the epoch added and at the step self.log's values get
    assert sent == [({"recorded": 1.5, "epoch": 0}, 3), ({"recorded": 1.5, "epoch": 1}, 6)]


def test_without_the_callbacks_the_check_says_so():
    class Bare:
        pass

    assert not lightning_private.has_step_callbacks(Bare())
    assert not lightning_private.has_step_callbacks(torch.optim.SGD([torch.zeros(1, requires_grad=True)]))
