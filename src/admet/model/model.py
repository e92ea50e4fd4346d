"""ChempropModel: one multi-task Chemprop v2 model trained on the joint sampler.

Built from Chemprop's own parts (its featurizer through the shared cache, its
``BatchMolGraph`` and ``TrainingBatch``, ``BondMessagePassing``, aggregation,
``RegressionFFN`` with its target ``UnscaleTransform``, the Noam-like LR schedule of
``MPNN``) and Lightning's ``Trainer``, ``EarlyStopping`` and ``ModelCheckpoint``. Batches
are gathered from the training set packed once into flat tensors on the training device
(:mod:`admet.data.packed`), the same batches ``collate_batch`` would build, without its
per-molecule Python work on every step.

Targets are standardised on the training split only; the loss is masked for missing
labels (Chemprop's criterion), optionally weighted per task. Early stopping and the best
checkpoint follow ``val/mae_macro`` (original units, mean over tasks). The training
DataLoader's sampler is the one registered in :data:`admet.config.registry.SAMPLERS`
under ``joint_sampling.sampler``: by default a :class:`JointSampler` when
``joint_sampling.enabled`` (legacy ``task_sampling_alpha`` configs arrive here as
two-stage joint sampling), otherwise Chemprop's seeded shuffle.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import os
import signal
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from chemprop import nn as cnn
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from sklearn.preprocessing import StandardScaler

from admet.config import ChempropConfig, CurriculumPhaseConfig, config_to_dict, load_config, save_config
from admet.config.registry import AGGREGATIONS, SAMPLERS, sampler_name
from admet.data import MultitaskDataset, canonical_smiles, default_cache
from admet.data.packed import PackedGraphs, PackedMoleculeDataset, packed_dataloader
from admet.errors import ConfigError, DataError, TrainingDivergedError
from admet.model.calibration import (
    Calibration,
    add_uncertainty_metrics,
    fit_residual_calibration,
    prediction_frame,
)
from admet.model.callbacks import CurriculumCallback, DeliverCtrlC, EpochHistory, SamplerStatsCallback
from admet.model.folder import check_complete, writing
from admet.model.heads import build_predictor
from admet.model.layers import BondMessagePassing
from admet.model.metrics import regression_metrics
from admet.model.mpnn import MONITOR, MultitaskMPNN
from admet.model.schedule import noam_schedule
from admet.sampling import CurriculumState, JointSampler
from admet.tracking import RunTracker, flatten

__all__ = ["ChempropModel"]

logger = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"
_CRITERIA = {"mae": cnn.metrics.MAE, "mse": cnn.metrics.MSE}
PREDICT_BATCH_SIZE = 256
# Optimiser steps per training-loader item: Lightning's per-item hooks are paid once per
# this many batches (each batch is still its own optimiser and scheduler step).
STEPS_PER_LOADER_ITEM = 16

# Lightning's chatter about workers and devices is noise for CPU training of small models;
# silenced for the duration of a fit only (importing this module changes no global filter).
_QUIET_WARNINGS = (
    ".*does not have many workers.*",
    ".*GPU available but not used.*",
    r".*isinstance\(treespec, LeafSpec\).*",
)
_QUIET_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda")


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning's worker/device warnings and info lines off, restored afterwards."""
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        for message in _QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        for lg in loggers:
            lg.setLevel(max(lg.level, logging.WARNING))
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _curriculum_state(cfg: ChempropConfig) -> CurriculumState | None:
    js = cfg.joint_sampling
    cur = js.curriculum
    if not (js.enabled and cur.enabled):
        return None
    return CurriculumState(
        qualities=list(cur.qualities),
        patience=cur.patience,
        min_delta=cur.min_delta,
        config=CurriculumPhaseConfig(
            phase_proportions=None if cur.phase_proportions is None else dict(cur.phase_proportions),
            min_high_quality_proportion=cur.min_high_quality_proportion,
        ),
    )


@SAMPLERS.register("shuffle")
def _shuffle(model: ChempropModel, train: MultitaskDataset) -> None:
    """Chemprop's seeded shuffle: no sampler object (the loaders shuffle by ``optimization.seed``)."""
    return None


@SAMPLERS.register("joint")
def _joint_sampler(model: ChempropModel, train: MultitaskDataset) -> JointSampler:
    """A :class:`JointSampler` with the ``joint_sampling`` settings (task oversampling and,
    when enabled, the quality curriculum)."""
    cfg = model.config
    js = cfg.joint_sampling
    state = _curriculum_state(cfg)
    return JointSampler(
        train.Y,
        quality_labels=train.quality if state is not None else None,
        curriculum_state=state,
        task_alpha=js.task_oversampling.alpha,
        composition_mode=js.composition_mode,
        num_samples=js.num_samples,
        seed=js.seed if js.seed is not None else cfg.optimization.seed,
        increment_seed_per_epoch=js.increment_seed_per_epoch,
        log_weight_stats=js.log_weight_stats,
        count_normalize=js.curriculum.count_normalize,
        task_names=model.task_names,
    )


@contextlib.contextmanager
def _no_nan_fill() -> Iterator[None]:
    """Torch's deterministic mode (Lightning's ``deterministic=True``) without its debugging
    aid of filling every new uninitialised tensor with NaN: that fill is a kernel per
    ``torch.empty`` (about 40 per training step of a small model, 5% of its time) and no
    result depends on it, since nothing here reads memory it has not written. The
    deterministic algorithms themselves stay on; the previous setting comes back after."""
    flags = torch.utils.deterministic
    previous = flags.fill_uninitialized_memory
    flags.fill_uninitialized_memory = False
    try:
        yield
    finally:
        flags.fill_uninitialized_memory = previous


def freeze_startup_heap() -> bool:
    """Move every object the garbage collector tracks now out of its future scans, once
    per process; True when this call did it.

    A fresh process holds about half a million tracked objects after importing torch,
    Lightning, Chemprop, RDKit and MLflow, nearly all alive until it exits. The first full
    collection that a fit's allocations trigger scans them all: 0.6 s on a 2-core machine,
    as long as the three epochs of a small model. :func:`gc.freeze` (CPython's own remedy,
    one list splice) leaves later collections to the objects made afterwards. What is
    frozen is never collected, so garbage cycles alive at the first fit (none to speak of
    in a process that has only imported and loaded data) stay in memory.
    """
    global _STARTUP_HEAP_FROZEN
    if _STARTUP_HEAP_FROZEN:
        return False
    gc.freeze()
    _STARTUP_HEAP_FROZEN = True
    return True


_STARTUP_HEAP_FROZEN = False


class ChempropModel:
    """A multi-task Chemprop regression model with configurable sampling.

    After :meth:`fit`: ``history`` (per-epoch logged metrics), ``sampler_history``
    (per-epoch sampler statistics), ``curriculum_history`` (phase changes),
    ``best_score`` / ``best_epoch`` (``val/mae_macro``), ``epochs_trained`` and
    ``fit_seconds``.
    """

    def __init__(self, config: ChempropConfig) -> None:
        self.config = config
        self.task_names = list(config.data.target_cols)
        self.mpnn: MultitaskMPNN | None = None
        self.history: list[dict[str, float]] = []
        self.sampler_history: list[dict[str, Any]] = []
        self.curriculum_history: list[tuple[int, str]] = []
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.epochs_trained = 0
        self.fit_seconds = 0.0
        self.mlflow_run_id: str | None = None
        self.calibration: Calibration | None = None

    @classmethod
    def from_config(
        cls, config: ChempropConfig | str | os.PathLike[str] | dict, overrides: Sequence[str] = ()
    ) -> ChempropModel:
        """A model from a config object, YAML file or mapping (validated)."""
        if not isinstance(config, ChempropConfig) or overrides:
            config = load_config(config, overrides)
        return cls(config)

    # -- building -------------------------------------------------------------------------

    @property
    def cache(self):
        return default_cache(self.config.data.featurization_cache_dir)

    def build_sampler(self, train: MultitaskDataset) -> JointSampler | None:
        """The training sampler the config asks for (None: Chemprop's seeded shuffle).

        The builder registered in :data:`admet.config.registry.SAMPLERS` under
        :func:`~admet.config.registry.sampler_name` is called as ``builder(model, train)``;
        it returns a sampler with :class:`JointSampler`'s interface (iteration over training
        rows, ``len``, ``set_epoch``, ``curriculum_state``, ``get_weight_statistics``), or
        None for the seeded shuffle. The stacked fit calls this too.
        """
        return SAMPLERS.builder(sampler_name(self.config))(self, train)

    def _packed(
        self, smiles: Sequence[str], Y: np.ndarray | None, device: torch.device
    ) -> PackedMoleculeDataset:
        """The molecules' cached graphs packed into flat tensors on ``device``."""
        graphs = PackedGraphs.from_graphs(self.cache.graphs(list(smiles)))
        return PackedMoleculeDataset(graphs.to(device), Y)

    def _build_mpnn(self, mean: np.ndarray, scale: np.ndarray) -> MultitaskMPNN:
        m, opt = self.config.model, self.config.optimization
        featurizer = self.cache.featurizer
        mp = BondMessagePassing(
            d_v=featurizer.atom_fdim,
            d_e=featurizer.bond_fdim,
            d_h=m.message_hidden_dim,
            depth=m.depth,
            dropout=m.dropout,
            activation=m.activation,
        )
        task_weights = None if opt.task_weights is None else torch.tensor(opt.task_weights)
        weights = torch.ones(len(self.task_names)) if task_weights is None else task_weights
        ffn = build_predictor(
            m,
            n_tasks=len(self.task_names),
            input_dim=mp.output_dim,
            criterion=_CRITERIA[opt.criterion](task_weights=weights),
            output_transform=cnn.UnscaleTransform(mean, scale),
        )
        schedule = noam_schedule(opt)  # warmup clamped: Chemprop's needs a cooldown epoch
        mpnn = MultitaskMPNN(
            mp,
            AGGREGATIONS.builder(m.aggregation)(),
            ffn,
            batch_norm=m.batch_norm,
            warmup_epochs=schedule.warmup_epochs,
            init_lr=schedule.init_lr,
            max_lr=schedule.max_lr,
            final_lr=schedule.final_lr,
        )
        mpnn.schedule = schedule
        return mpnn

    # -- training -------------------------------------------------------------------------

    def fit(
        self,
        train: MultitaskDataset,
        val: MultitaskDataset,
        callbacks: Sequence[Callback] = (),
        logger: Any = None,
        progress: bool = False,
        calibrate: bool = True,
    ) -> ChempropModel:
        """Train on ``train``, early-stop and keep the best epoch on ``val``; with
        ``calibrate``, the validation residuals give every task a standard deviation and a
        conformal 90% interval (an ensemble uses CV+ over its members instead).

        With ``mlflow.enabled`` and no ``logger`` given, the fit is its own MLflow run: the
        config as parameters, every epoch's metrics (losses, validation MAE per task and
        quality, sampler statistics) through Lightning's ``MLFlowLogger``, the best score
        and the model's folder at the end. (An ensemble passes each member its own run.)

        Raises:
            TrainingDivergedError: no finite validation metric was ever reached.
        """
        cfg = self.config
        if logger is not None or not cfg.mlflow.enabled:
            return self._fit(train, val, callbacks, logger, progress, calibrate)
        tracker = RunTracker(True, cfg.mlflow.tracking_uri, cfg.mlflow.experiment_name)
        run = tracker.start_run(cfg.mlflow.run_name or "model", tags={"admet.kind": "model"})
        self.mlflow_run_id = run
        tracker.log_params(run, flatten(config_to_dict(cfg)))
        try:
            self._fit(train, val, callbacks, tracker.lightning_logger(run), progress, calibrate)
        except BaseException:
            tracker.end_run(run, "FAILED")
            raise
        summary = {"best/" + MONITOR: self.best_score, "best_epoch": self.best_epoch or 0}
        tracker.log_metrics(
            run, {**summary, "epochs_trained": self.epochs_trained, "fit_seconds": self.fit_seconds}
        )
        if cfg.mlflow.log_model:
            with tracker.artifact_dir() as tmp:
                tracker.log_artifact(run, self.save(tmp / "model"), "model")
                from admet.model.pyfunc import try_log_pyfunc

                try_log_pyfunc(self, tracker, run, cfg.mlflow.registered_model_name, saved_dir=tmp / "model")
        tracker.end_run(run)
        return self

    def _fit(
        self,
        train: MultitaskDataset,
        val: MultitaskDataset,
        callbacks: Sequence[Callback],
        logger: Any,
        progress: bool,
        calibrate: bool = False,
    ) -> ChempropModel:
        if list(train.task_names) != self.task_names or list(val.task_names) != self.task_names:
            raise DataError(f"training/validation tasks must be {self.task_names}")
        cfg, opt = self.config, self.config.optimization
        start = time.perf_counter()
        freeze_startup_heap()
        pl.seed_everything(opt.seed, workers=True, verbose=False)
        device = resolve_device(opt.accelerator)
        # Chemprop's target scaling: sklearn's StandardScaler fitted on the training split
        # (NaN-aware), the inverse applied by the model's UnscaleTransform.
        scaler = StandardScaler().fit(train.Y)
        mean = np.nan_to_num(scaler.mean_, nan=0.0)
        scale = np.nan_to_num(scaler.scale_, nan=1.0)
        train_ds = self._packed(train.smiles, (train.Y - mean) / scale, device)
        val_ds = self._packed(val.smiles, (val.Y - mean) / scale, device)

        sampler = self.build_sampler(train)
        bs = opt.batch_size
        train_loader = packed_dataloader(
            train_ds, bs, sampler=sampler, shuffle=True, seed=opt.seed, group=STEPS_PER_LOADER_ITEM
        )
        # validation takes no gradient: its batch size changes no metric, only the number of
        # steps (seven of about 30 ms for 200 molecules at batch 32, one at 256)
        val_loader = packed_dataloader(val_ds, max(bs, PREDICT_BATCH_SIZE), drop_last=False)

        self.mpnn = mpnn = self._build_mpnn(mean, scale)
        mpnn.set_validation_info(self.task_names, val.quality)
        mpnn.steps_per_epoch = train_loader.sampler.n_batches
        history = EpochHistory()
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
            all_callbacks: list[Callback] = []
            stats_cb = None
            if sampler is not None:
                stats_cb = SamplerStatsCallback(sampler)
                all_callbacks.append(stats_cb)
                if sampler.curriculum_state is not None:
                    cur = cfg.joint_sampling.curriculum
                    all_callbacks.append(  # before EarlyStopping: a phase change resets it first
                        CurriculumCallback(
                            sampler.curriculum_state,
                            monitor=cur.monitor_metric,
                            reset_early_stopping=cur.reset_early_stopping_on_phase_change,
                        )
                    )
            all_callbacks += [
                DeliverCtrlC(),
                EarlyStopping(MONITOR, patience=opt.patience, mode="min", check_finite=True),
                checkpoint,
                history,
            ]
            all_callbacks.extend(callbacks)
            with _quiet_lightning():
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
                    with _no_nan_fill():
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
        self.history = history.rows
        self.sampler_history = [] if stats_cb is None else stats_cb.rows
        state_ = None if sampler is None else sampler.curriculum_state
        self.curriculum_history = [] if state_ is None else list(state_.history)
        self.best_score = float(best)
        scores = [r.get(MONITOR, math.inf) for r in self.history]
        self.best_epoch = int(np.nanargmin(scores)) if scores else None
        self.epochs_trained = len(self.history)
        if calibrate:
            errors = self.predict_canonical(val.smiles) - val.Y
            self.calibration = Calibration(
                {t: fit_residual_calibration(errors[:, j]) for j, t in enumerate(self.task_names)}
            )
        self.fit_seconds = time.perf_counter() - start
        return self

    # -- inference ------------------------------------------------------------------------

    def _require_trained(self) -> MultitaskMPNN:
        if self.mpnn is None:
            raise RuntimeError("the model is not trained or loaded yet")
        return self.mpnn

    def predict_array(self, smiles: Sequence[str]) -> np.ndarray:
        """Predictions in original units, shape (len(smiles), n_tasks)."""
        self._require_trained()
        canon = []
        for i, s in enumerate(smiles):
            c = canonical_smiles(s)
            if c is None:
                raise DataError(f"row {i + 1}: cannot parse SMILES {s!r}")
            canon.append(c)
        return self.predict_canonical(canon)

    def predict_canonical(self, smiles: Sequence[str]) -> np.ndarray:
        """:meth:`predict_array` for SMILES that are already RDKit-canonical (those of a
        :class:`MultitaskDataset`), skipping the second parse."""
        mpnn = self._require_trained()
        if not smiles:
            return np.empty((0, len(self.task_names)))
        ds = self._packed(smiles, None, mpnn.device)
        mpnn.eval()
        out = []
        with torch.inference_mode():
            for batch in packed_dataloader(ds, PREDICT_BATCH_SIZE, drop_last=False):
                out.append(mpnn(batch.bmg, batch.V_d, batch.X_d).cpu())
        return torch.cat(out).double().numpy()

    def predict(self, smiles: Sequence[str]) -> pd.DataFrame:
        """Per task ``<task>_pred`` (original units), ``<task>_std`` and the 90% interval
        ``<task>_lo90``/``<task>_hi90`` from the validation residuals (NaN for a model saved
        before calibration existed)."""
        mean = self.predict_array(smiles)
        if self.calibration is not None:
            std, lo, hi = self.calibration.apply(mean, None, self.task_names)
        else:
            std = lo = hi = np.full_like(mean, np.nan)
        return prediction_frame(self.task_names, mean, std, lo, hi)

    def evaluate(self, data: MultitaskDataset | pd.DataFrame) -> dict[str, dict[str, float]]:
        """Per-task and macro metrics on labelled data (a dataset, or a frame with the SMILES
        column and any of the task columns)."""
        smiles, Y = _labelled(data, self.config.data.smiles_col, self.task_names)
        predictions = self.predict(smiles)
        means = predictions[[f"{t}_pred" for t in self.task_names]].to_numpy()
        metrics = regression_metrics(Y, means, self.task_names)
        return add_uncertainty_metrics(metrics, Y, predictions, self.task_names)

    # -- persistence ----------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str], chemprop_copy: bool = True) -> Path:
        """Write ``config.yaml``, ``weights.pt`` (state dict), ``training.json`` and, for a
        ``regression`` head with ``chemprop_copy``, ``chemprop/model.pt`` (the same model as
        Chemprop saves it, for ``chemprop predict --model-paths``; see
        :mod:`admet.model.chemprop_export`; an ensemble writes its members' copies itself)."""
        mpnn = self._require_trained()
        with writing(directory) as tmp:  # whole or absent; a second writer is refused
            self._write(tmp, mpnn, chemprop_copy)
        return Path(directory)

    def _write(self, out: Path, mpnn: torch.nn.Module, chemprop_copy: bool) -> None:
        from admet.model.chemprop_export import NotExportableError, save_chemprop

        save_config(self.config, out / "config.yaml")
        torch.save(mpnn.state_dict(), out / "weights.pt")
        try:
            if chemprop_copy:
                save_chemprop(self, out / "chemprop" / "model.pt")
        except NotExportableError as exc:
            logger.info("no Chemprop copy in %s: %s", out, exc)
        info = {
            "task_names": self.task_names,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "epochs_trained": self.epochs_trained,
            "fit_seconds": self.fit_seconds,
            "curriculum_history": self.curriculum_history,
            "history": self.history,
            "sampler_history": self.sampler_history,
        }
        (out / "training.json").write_text(json.dumps(info, indent=1, default=_json_default))
        if self.calibration is not None:
            (out / CALIBRATION_FILE).write_text(json.dumps(self.calibration.to_dict(), indent=1))

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ChempropModel:
        """A model saved by :meth:`save` (weights loaded with ``weights_only=True``)."""
        src = check_complete(directory)
        if not (src / "weights.pt").is_file():
            raise DataError(f"{src}: not a saved model (weights.pt missing)")
        model = cls(load_config(src / "config.yaml"))
        n = len(model.task_names)
        model.mpnn = model._build_mpnn(np.zeros(n), np.ones(n))
        model.mpnn.load_state_dict(torch.load(src / "weights.pt", map_location="cpu", weights_only=True))
        model.mpnn.eval()
        if (src / CALIBRATION_FILE).is_file():
            model.calibration = Calibration.from_dict(json.loads((src / CALIBRATION_FILE).read_text()))
        info_path = src / "training.json"
        if info_path.is_file():
            info = json.loads(info_path.read_text())
            model.best_score = info.get("best_score")
            model.best_epoch = info.get("best_epoch")
            model.epochs_trained = info.get("epochs_trained", 0)
            model.fit_seconds = info.get("fit_seconds", 0.0)
            model.history = info.get("history", [])
            model.sampler_history = info.get("sampler_history", [])
            model.curriculum_history = [tuple(h) for h in info.get("curriculum_history", [])]
        return model


def resolve_device(accelerator: str) -> torch.device:
    """The device a fit runs on: ``auto`` is the first visible GPU when CUDA is available,
    else the CPU; ``cpu``/``gpu``/``cuda``/``cuda:K`` as named."""
    name = str(accelerator).lower()
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if name in ("gpu", "cuda"):
        return torch.device("cuda:0")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"optimization.accelerator: unknown device {accelerator!r}") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _labelled(
    data: MultitaskDataset | pd.DataFrame, smiles_col: str, task_names: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    if isinstance(data, MultitaskDataset):
        index = [data.task_names.index(t) if t in data.task_names else -1 for t in task_names]
        Y = np.column_stack([data.Y[:, j] if j >= 0 else np.full(len(data), np.nan) for j in index])
        return list(data.smiles), Y
    if smiles_col not in data.columns:
        raise DataError(f"missing SMILES column {smiles_col!r}; columns: {list(data.columns)}")
    present = [t for t in task_names if t in data.columns]
    if not present:
        raise DataError(f"no task column among {list(task_names)}; columns: {list(data.columns)}")
    Y = np.column_stack(
        [
            pd.to_numeric(data[t], errors="coerce").to_numpy(dtype=float)
            if t in data.columns
            else np.full(len(data), np.nan)
            for t in task_names
        ]
    )
    return list(data[smiles_col]), Y
