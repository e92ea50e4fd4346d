"""What a worker is doing inside a trial: member, epoch and the latest validation value.

A trial of the default study is many minutes on a CPU; the trial counter alone says
nothing for that long. :class:`TrialProgress` turns member and epoch events into one
status text (``trial 3 · member 2/5 · epoch 4/30 · val/mae_macro 0.4123``) and hands it
to ``show``: the worker's progress bar on a terminal, one log line per event otherwise
(``--quiet``, or output to a file).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from admet.model import MONITOR
from admet.model.callbacks import epoch_metrics

__all__ = ["EpochProgressCallback", "TrialProgress"]


class TrialProgress:
    """One trial's status, rebuilt on every event and shown with ``show``."""

    def __init__(
        self, show: Callable[[str], None], trial: int, n_members: int, max_epochs: int, stacked: bool
    ) -> None:
        self.show = show
        self.trial, self.n_members, self.max_epochs, self.stacked = trial, n_members, max_epochs, stacked
        self.done: set[int] = set()
        self.epochs: dict[int, int] = {}

    def start(self, reused: int = 0) -> None:
        how = f"{self.n_members} members stacked" if self.stacked else f"member 1/{self.n_members}"
        self.show(f"trial {self.trial} · {how} · starting" + (f" ({reused} reused)" if reused else ""))

    def epoch(self, member: int, epoch: int, scalars: dict[str, float]) -> None:
        """A member finished validating epoch ``epoch`` (0-based)."""
        self.epochs[member] = epoch + 1
        value = scalars.get(MONITOR)
        shown = f"{MONITOR} {value:.4f}" if value is not None and math.isfinite(value) else f"{MONITOR} -"
        if self.stacked:
            who = f"members done {len(self.done)}/{self.n_members} · member {member + 1}"
        else:
            who = f"member {member + 1}/{self.n_members}"
        self.show(f"trial {self.trial} · {who} · epoch {epoch + 1}/{self.max_epochs} · {shown}")

    def member_done(self, member: int) -> None:
        self.done.add(member)


class EpochProgressCallback(Callback):
    """Lightning's side of :class:`TrialProgress` for a member trained on its own."""

    def __init__(self, progress: TrialProgress, member: int) -> None:
        self.progress = progress
        self.member = member

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.progress.epoch(self.member, trainer.current_epoch, epoch_metrics(trainer))
