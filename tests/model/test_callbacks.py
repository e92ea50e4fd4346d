"""CurriculumCallback drives a CurriculumState from Lightning's validation metrics."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping
from torch.utils.data import DataLoader, TensorDataset

from admet.model import CurriculumCallback
from admet.sampling import CurriculumState


class _Regressor(pl.LightningModule):
    """A tiny model whose validation loss never improves after epoch 0."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def validation_step(self, batch, _):
        self.log("val_loss", torch.tensor(1.0))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.slow
def test_callback_advances_phase_logs_and_resets_early_stopping(tmp_path):
    state = CurriculumState(["high", "low"], patience=1)
    data = DataLoader(TensorDataset(torch.ones(4, 1), torch.ones(4, 1)), batch_size=2)
    early = EarlyStopping("val_loss", patience=3)
    trainer = pl.Trainer(
        max_epochs=4,
        callbacks=[CurriculumCallback(state, "val_loss", reset_early_stopping=True), early],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )
    trainer.fit(_Regressor(), data, data)
    # epoch 0 sets the best value; with patience 1 each later stalled epoch advances a phase
    assert [p for _, p in state.history] == ["warmup", "expand", "polish"]
    assert trainer.callback_metrics["curriculum/phase"] == 2.0
    assert trainer.callback_metrics["curriculum/p_high"] == pytest.approx(0.75)
    assert not trainer.should_stop  # patience restarted at each phase change
