"""What an ensemble fit is doing: which member, which epoch, the latest validation value.

An ensemble of the default study takes many minutes on a CPU, and a trial counter or a
"saved to" line says nothing for that long. :class:`FitProgress` turns member and epoch
events into one status text (``trial 3 · member 2/5 · epoch 4/30 · val/mae_macro 0.4123``)
and hands it to ``show``. The same text serves every command that trains an ensemble: an
HPO worker (``show`` puts it on the worker's trial bar), ``model train``, ``hpo refit`` and
benchmark cells (:class:`ConsoleStatus`: one line rewritten in place on a terminal, one
line per epoch otherwise or with ``--quiet``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import TextIO

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from admet.model.callbacks import epoch_metrics
from admet.model.mpnn import MONITOR

__all__ = ["ConsoleStatus", "EpochProgressCallback", "FitProgress"]


class ConsoleStatus:
    """A command's status output: one line rewritten in place on a terminal (``rewrite``),
    else one line per call, so a log file or ``--quiet`` run keeps every epoch."""

    def __init__(
        self, label: str = "ensemble", stream: TextIO | None = None, rewrite: bool | None = None
    ) -> None:
        self.label = label  # what the status lines call the fit: "refit", "HLM seed 0 joint"
        self.stream = stream if stream is not None else sys.stderr
        self.rewrite = self.stream.isatty() if rewrite is None else rewrite
        self._open = False  # a rewritable line is on screen without its newline

    def __call__(self, text: str) -> None:
        """Show ``text`` as the current status."""
        if self.rewrite:
            self.stream.write("\r\033[K" + text)
            self._open = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def say(self, text: str) -> None:
        """A line that stays (a member's result), printed below the status."""
        if self._open:
            self.stream.write("\r\033[K")
            self._open = False
        print(text, flush=True)


class FitProgress:
    """One ensemble fit's status, rebuilt on every event and shown with ``show``.

    ``label`` names the fit (``trial 3``, ``refit``, ``HLM seed 0 joint``); ``stacked``
    says the members train together (``ensemble.batched``), so several are in flight.
    """

    def __init__(
        self,
        show: Callable[[str], None],
        label: str,
        n_members: int,
        max_epochs: int,
        stacked: bool = False,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.show, self.label = show, label
        self.n_members, self.max_epochs, self.stacked = n_members, max_epochs, stacked
        self.say = say if say is not None else getattr(show, "say", None)
        self.done: set[int] = set()

    def start(self, reused: int = 0) -> None:
        how = f"{self.n_members} members stacked" if self.stacked else f"member 1/{self.n_members}"
        self.show(f"{self.label} · {how} · starting" + (f" ({reused} reused)" if reused else ""))

    def epoch(self, member: int, epoch: int, scalars: dict[str, float]) -> None:
        """Member ``member`` finished validating epoch ``epoch`` (0-based)."""
        value = scalars.get(MONITOR)
        shown = f"{MONITOR} {value:.4f}" if value is not None and math.isfinite(value) else f"{MONITOR} -"
        if self.stacked:
            who = f"members done {len(self.done)}/{self.n_members} · member {member + 1}"
        else:
            who = f"member {member + 1}/{self.n_members}"
        self.show(f"{self.label} · {who} · epoch {epoch + 1}/{self.max_epochs} · {shown}")

    def member_done(self, member: int, summary: str | None = None) -> None:
        """Member ``member`` is trained (or reused); ``summary`` is its result line."""
        self.done.add(member)
        if summary is None:
            return
        line = f"{self.label} · member {member + 1}/{self.n_members}: {summary}"
        if self.say is not None:
            self.say(line)
        else:
            self.show(line)


class EpochProgressCallback(Callback):
    """Lightning's side of :class:`FitProgress` for a member trained on its own."""

    def __init__(self, progress: FitProgress, member: int) -> None:
        self.progress = progress
        self.member = member

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.progress.epoch(self.member, trainer.current_epoch, epoch_metrics(trainer))
