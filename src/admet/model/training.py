"""Lightning's ``Trainer`` around one network: callbacks, the fit, the best epoch back.

What: :func:`train_mpnn` fits a built :class:`MultitaskMPNN` on its loaders with early
stopping and the best checkpoint on ``val/mae_macro``, the sampler's statistics and
curriculum callbacks, Ctrl-C handed back as ``KeyboardInterrupt``, and reloads the best
epoch's weights; it returns what the fit recorded (:class:`TrainedRun`).

Why here: the Trainer orchestration is the one part of a fit that is about Lightning, not
about the data or the model; :meth:`admet.model.model.ChempropModel.fit` prepares data and
network, this module runs them, under the scoped quieting of :mod:`admet.model.runtime`.
"""

from __future__ import annotations

import math
import signal
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from torch.utils.data import DataLoader

from admet.config import ChempropConfig
from admet.errors import TrainingDivergedError
from admet.model.callbacks import (
    CurriculumCallback,
    DeliverCtrlC,
    EpochHistory,
    SamplerStatsCallback,
    StepTimer,
)
from admet.model.mpnn import MONITOR, MultitaskMPNN
from admet.model.runtime import no_nan_fill, quiet_lightning

__all__ = ["TrainedRun", "train_mpnn"]


@dataclass
class TrainedRun:
    """What one fit recorded: per-epoch logged metrics, per-epoch sampler statistics,
    curriculum phase changes, the best ``val/mae_macro`` and the seconds in training
    epochs (validation excluded)."""

    history: list[dict[str, float]]
    sampler_history: list[dict[str, Any]]
    curriculum_history: list[tuple[int, str]]
    best_score: float
    step_seconds: float


def _callbacks(cfg: ChempropConfig, sampler: Any, extra: Sequence[Callback]) -> tuple[list[Callback], Any]:
    """The fit's callbacks before the checkpoint and history (sampler statistics, the
    curriculum before EarlyStopping so a phase change resets it first), and the
    statistics callback (None without a sampler)."""
    out: list[Callback] = []
    stats_cb = None
    if sampler is not None:
        stats_cb = SamplerStatsCallback(sampler)
        out.append(stats_cb)
        if sampler.curriculum_state is not None:
            cur = cfg.joint_sampling.curriculum
            out.append(
                CurriculumCallback(
                    sampler.curriculum_state,
                    monitor=cur.monitor_metric,
                    reset_early_stopping=cur.reset_early_stopping_on_phase_change,
                )
            )
    out += [
        DeliverCtrlC(),
        EarlyStopping(MONITOR, patience=cfg.optimization.patience, mode="min", check_finite=True),
    ]
    return out, stats_cb


def train_mpnn(
    mpnn: MultitaskMPNN,
    train_loader: DataLoader,
    val_loader: DataLoader,
    cfg: ChempropConfig,
    device: torch.device,
    sampler: Any,
    callbacks: Sequence[Callback],
    logger: Any,
    progress: bool,
) -> TrainedRun:
    """Fit ``mpnn`` (on ``device``) and leave it on the CPU in eval mode with the best
    epoch's weights.

    Raises:
        TrainingDivergedError: no finite validation metric was ever reached.
        KeyboardInterrupt: Ctrl-C during the fit (the caller's SIGINT handler restored).
    """
    opt = cfg.optimization
    history = EpochHistory()
    timer = StepTimer()
    with tempfile.TemporaryDirectory(prefix="admet-ckpt-") as ckpt_dir:
        checkpoint = ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="best",
            monitor=MONITOR,
            mode="min",
            save_top_k=1,
            save_weights_only=True,
            save_last=False,
        )
        all_callbacks, stats_cb = _callbacks(cfg, sampler, callbacks)
        all_callbacks += [checkpoint, history, timer]
        all_callbacks.extend(callbacks)
        with quiet_lightning():
            trainer = pl.Trainer(
                max_epochs=opt.max_epochs,
                accelerator=device.type,
                devices=[device.index or 0] if device.type == "cuda" else 1,
                # CPU: bitwise reproducible; CUDA's scatter kernels have no deterministic variant
                deterministic=True if device.type == "cpu" else "warn",
                logger=logger if logger is not None else False,
                callbacks=all_callbacks,
                enable_progress_bar=progress,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                log_every_n_steps=1,  # nothing is logged per step (see MultitaskMPNN)
                default_root_dir=ckpt_dir,
            )
            sigint = signal.getsignal(signal.SIGINT)
            try:
                with no_nan_fill():
                    trainer.fit(mpnn, train_loader, val_loader)
            except SystemExit:
                if not trainer.interrupted:
                    raise
                # Lightning turns Ctrl-C into SystemExit(1) and ignores further Ctrl-Cs;
                # give callers (the HPO worker, the CLIs) their handler and the
                # KeyboardInterrupt back.
                signal.signal(signal.SIGINT, sigint if callable(sigint) else signal.default_int_handler)
                raise KeyboardInterrupt from None
        best = checkpoint.best_model_score
        if not checkpoint.best_model_path or best is None or not math.isfinite(float(best)):
            raise TrainingDivergedError(
                f"training diverged: no finite {MONITOR} in {trainer.current_epoch} epoch(s)"
            )
        state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
        mpnn.load_state_dict(state["state_dict"])
    mpnn.cpu().eval()
    curriculum = None if sampler is None else sampler.curriculum_state
    return TrainedRun(
        history=history.rows,
        sampler_history=[] if stats_cb is None else stats_cb.rows,
        curriculum_history=[] if curriculum is None else list(curriculum.history),
        best_score=float(best),
        step_seconds=timer.seconds,
    )
