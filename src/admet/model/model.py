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

This module holds the model object and its fit and inference; the rest lives by concept
and is imported one way: the network and samplers in :mod:`admet.model.builders`, the
Trainer run in :mod:`admet.model.training`, the scoped process settings in
:mod:`admet.model.runtime`, the LR schedule in :mod:`admet.model.schedule`, the folder
format in :mod:`admet.model.persistence` (which asks :mod:`admet.model.chemprop_export`
for the Chemprop copy), and MLflow pyfunc logging in :mod:`admet.model.pyfunc_logging`.
None of them imports this module, so a fit's MLflow logging and ``save``'s Chemprop copy
need no function-local import back.

Over 350 lines because one member's fit, its inference and its descriptor and tier
handling share the network's state; builders, training and persistence are already apart.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback
from sklearn.preprocessing import StandardScaler

from admet.config import ChempropConfig, config_to_dict, load_config
from admet.config.registry import SAMPLERS, sampler_name
from admet.config.tiers import output_tasks
from admet.data import MultitaskDataset, apply_tier_use, canonical_smiles, default_cache
from admet.data.molecule_features import MoleculeFeatures, feature_spec
from admet.data.packed import PackedGraphs, PackedMoleculeDataset, packed_dataloader
from admet.errors import DataError, TrainingDivergedError
from admet.model.builders import build_mpnn
from admet.model.calibration import (
    Calibration,
    add_uncertainty_metrics,
    fit_residual_calibration,
    prediction_frame,
)
from admet.model.folder import check_complete, writing
from admet.model.metrics import labelled_arrays, regression_metrics
from admet.model.mpnn import MONITOR, MultitaskMPNN
from admet.model.persistence import read_model, write_model
from admet.model.pyfunc_logging import try_log_pyfunc
from admet.model.runtime import freeze_startup_heap, resolve_device
from admet.model.training import train_mpnn
from admet.model.validation_scope import ValidationScope
from admet.sampling import JointSampler
from admet.tracking import RunTracker, flatten

# also re-exported from their new homes, for code that imported them from this module
__all__ = ["ChempropModel", "TrainingDivergedError", "freeze_startup_heap", "resolve_device"]

PREDICT_BATCH_SIZE = 256
# Optimiser steps per training-loader item: Lightning's per-item hooks are paid once per
# this many batches (each batch is still its own optimiser and scheduler step).
STEPS_PER_LOADER_ITEM = 16


def table_of(data: MultitaskDataset | pd.DataFrame) -> pd.DataFrame:
    """The table whose columns a ``columns:`` molecule feature reads: a dataset's extra
    columns, or the frame itself."""
    return data.extra if isinstance(data, MultitaskDataset) else data


class ChempropModel:
    """A multi-task Chemprop regression model with configurable sampling.

    After :meth:`fit`: ``history`` (per-epoch logged metrics), ``sampler_history``
    (per-epoch sampler statistics), ``curriculum_history`` (phase changes),
    ``best_score`` / ``best_epoch`` (``val/mae_macro``), ``epochs_trained``,
    ``fit_seconds`` and ``step_seconds`` (in training epochs, validation excluded).

    ``task_names`` are the scored tasks (``data.target_cols``), the columns ``predict``
    returns and ``evaluate`` scores; ``output_tasks`` are every column the network
    predicts: the target columns, then the auxiliary ``<task>_<tier>`` columns of
    ``data.tier_use`` (see :mod:`admet.config.tiers`).
    """

    def __init__(self, config: ChempropConfig) -> None:
        self.config = config
        self.task_names = list(config.data.target_cols)
        self.output_tasks = output_tasks(config)
        self.mpnn: MultitaskMPNN | None = None
        self.history: list[dict[str, float]] = []
        self.sampler_history: list[dict[str, Any]] = []
        self.curriculum_history: list[tuple[int, str]] = []
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.epochs_trained = 0
        self.fit_seconds = 0.0
        self.step_seconds = 0.0  # in training epochs, validation excluded (throughput figures)
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

    @property
    def features(self) -> MoleculeFeatures:
        """The molecule descriptors of ``data.molecule_features`` (empty: none), computed
        through the process-wide cache of that featurisation cache folder."""
        data = self.config.data
        return feature_spec(data.molecule_features, data.featurization_cache_dir, data.descriptor_missing)

    def descriptors(
        self,
        smiles: Sequence[str],
        table: pd.DataFrame | None = None,
        where: str = "input",
        first_line: int | None = None,
    ) -> np.ndarray | None:
        """The raw (unscaled) molecule descriptors of ``smiles`` (``table``, row-aligned,
        gives ``columns:`` values), or None when the config has none. An imputed empty cell
        (``data.descriptor_missing: mean``) is NaN here: training leaves it at the scaled
        mean 0, prediction puts the training mean there (:meth:`_raw_descriptors`)."""
        if not self.features:
            return None
        return self.features.block(smiles, table, where, first_line)

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
        self,
        smiles: Sequence[str],
        Y: np.ndarray | None,
        device: torch.device,
        X_d: np.ndarray | None = None,
    ) -> PackedMoleculeDataset:
        """The molecules' cached graphs (and descriptors) packed into flat tensors on ``device``."""
        graphs = PackedGraphs.from_graphs(self.cache.graphs(list(smiles)))
        return PackedMoleculeDataset(graphs.to(device), Y, X_d)

    def _build_mpnn(
        self,
        mean: np.ndarray,
        scale: np.ndarray,
        descriptor_scaler: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> MultitaskMPNN:
        """A fresh network for this config (:func:`admet.model.builders.build_mpnn`)."""
        return build_mpnn(
            self.config, self.cache.featurizer, self.output_tasks, mean, scale, descriptor_scaler
        )

    def _raw_descriptors(self, smiles: Sequence[str], table: pd.DataFrame | None) -> np.ndarray | None:
        """Descriptors for prediction: raw, an imputed empty cell set to the training mean
        that the network's ``X_d_transform`` holds (scaled, that is 0 as in training)."""
        X = self.descriptors(smiles, table)
        if X is None:
            return None
        mpnn = self._require_trained()
        empty = np.isnan(X)
        if empty.any():
            mean = mpnn.X_d_transform.mean[0].detach().cpu().double().numpy()
            X = np.where(empty, mean[np.newaxis, :], X)
        return X

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
        """Train on ``train``, early-stop and keep the best epoch on ``val`` (both tables with
        ``data.target_cols``, or already as :func:`~admet.data.apply_tier_use` makes them;
        the monitored metrics read the labels of ``optimization.validation_qualities``); with
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
        cfg, opt = self.config, self.config.optimization
        for table in (train, val):
            if list(table.task_names) not in (self.task_names, self.output_tasks):
                raise DataError(f"training/validation tasks must be {self.task_names}")
        train, val = apply_tier_use(train, cfg), apply_tier_use(val, cfg)
        start = time.perf_counter()
        freeze_startup_heap()
        pl.seed_everything(opt.seed, workers=True, verbose=False)
        device = resolve_device(opt.accelerator)
        # Chemprop's target scaling: sklearn's StandardScaler fitted on the training split
        # (NaN-aware), the inverse applied by the model's UnscaleTransform.
        scaler = StandardScaler().fit(train.Y)
        mean = np.nan_to_num(scaler.mean_, nan=0.0)
        scale = np.nan_to_num(scaler.scale_, nan=1.0)
        # molecule descriptors: scaled as Chemprop does, by a scaler of the training split
        X_train, X_val, x_scaler = self.scaled_descriptors(train, val)
        train_ds = self._packed(train.smiles, (train.Y - mean) / scale, device, X_train)
        val_ds = self._packed(val.smiles, (val.Y - mean) / scale, device, X_val)

        sampler = self.build_sampler(train)
        bs = opt.batch_size
        train_loader = packed_dataloader(
            train_ds, bs, sampler=sampler, shuffle=True, seed=opt.seed, group=STEPS_PER_LOADER_ITEM
        )
        # validation takes no gradient: its batch size changes no metric, only the number of
        # steps (seven of about 30 ms for 200 molecules at batch 32, one at 256)
        val_loader = packed_dataloader(val_ds, max(bs, PREDICT_BATCH_SIZE), drop_last=False)

        self.mpnn = mpnn = self._build_mpnn(mean, scale, x_scaler)
        mpnn.set_validation_info(self.output_tasks, val.quality, ValidationScope.of(cfg, val))
        mpnn.steps_per_epoch = train_loader.sampler.n_batches
        run = train_mpnn(mpnn, train_loader, val_loader, cfg, device, sampler, callbacks, logger, progress)
        self.history = run.history
        self.sampler_history = run.sampler_history
        self.curriculum_history = run.curriculum_history
        self.best_score = run.best_score
        self.step_seconds = run.step_seconds
        scores = [r.get(MONITOR, np.inf) for r in self.history]
        self.best_epoch = int(np.nanargmin(scores)) if scores else None
        self.epochs_trained = len(self.history)
        if calibrate:
            errors = self.predict_canonical(val.smiles, val.extra) - val.Y
            self.calibration = Calibration(
                {t: fit_residual_calibration(errors[:, j]) for j, t in enumerate(self.output_tasks)}
            )
        self.fit_seconds = time.perf_counter() - start
        return self

    def scaled_descriptors(
        self, train: MultitaskDataset, val: MultitaskDataset
    ) -> tuple[np.ndarray | None, np.ndarray | None, tuple[np.ndarray, np.ndarray] | None]:
        """The training and validation descriptors scaled by a ``StandardScaler`` fitted on
        ``train`` only (Chemprop's ``normalize_inputs("X_d")``; NaN-aware, an imputed empty
        cell becomes 0, the training mean), and that scaler's (mean, scale); all None
        without ``data.molecule_features``. The stacked fit calls this per member."""
        if not self.features:
            return None, None, None
        self.features.warm([*train.smiles, *val.smiles])  # one cache file for both (and memory)
        X_train = self.descriptors(train.smiles, train.extra, "training data")
        assert X_train is not None
        X_val = self.descriptors(val.smiles, val.extra, "validation data")
        scaler = StandardScaler().fit(X_train)
        x_mean = np.nan_to_num(scaler.mean_, nan=0.0)
        x_scale = np.nan_to_num(scaler.scale_, nan=1.0)
        x_scale = np.where(x_scale > 0, x_scale, 1.0)

        def scaled(X: np.ndarray) -> np.ndarray:
            return np.nan_to_num((X - x_mean) / x_scale, nan=0.0)

        return scaled(X_train), scaled(X_val), (x_mean, x_scale)

    # -- inference ------------------------------------------------------------------------

    def _require_trained(self) -> MultitaskMPNN:
        if self.mpnn is None:
            raise RuntimeError("the model is not trained or loaded yet")
        return self.mpnn

    def predict_array(self, smiles: Sequence[str], table: pd.DataFrame | None = None) -> np.ndarray:
        """Predictions in original units, shape (len(smiles), len(output_tasks)): the target
        columns, then any auxiliary ones; ``table`` (row-aligned with ``smiles``) gives the
        descriptor columns a ``columns:`` molecule feature reads."""
        self._require_trained()
        canon = []
        for i, s in enumerate(smiles):
            c = canonical_smiles(s)
            if c is None:
                raise DataError(f"row {i + 1}: cannot parse SMILES {s!r}")
            canon.append(c)
        return self.predict_canonical(canon, table)

    def predict_canonical(self, smiles: Sequence[str], table: pd.DataFrame | None = None) -> np.ndarray:
        """:meth:`predict_array` for SMILES that are already RDKit-canonical (those of a
        :class:`MultitaskDataset`, whose ``extra`` is the ``table``), skipping the second parse."""
        mpnn = self._require_trained()
        if not smiles:
            return np.empty((0, len(self.output_tasks)))
        if table is not None:
            table = table.reset_index(drop=True)
        ds = self._packed(smiles, None, mpnn.device, self._raw_descriptors(smiles, table))
        mpnn.eval()
        out = []
        with torch.inference_mode():
            for batch in packed_dataloader(ds, PREDICT_BATCH_SIZE, drop_last=False):
                out.append(mpnn(batch.bmg, batch.V_d, batch.X_d).cpu())
        return torch.cat(out).double().numpy()

    def predict(
        self, smiles: Sequence[str], table: pd.DataFrame | None = None, auxiliary_tasks: bool = False
    ) -> pd.DataFrame:
        """Per task ``<task>_pred`` (original units), ``<task>_std`` and the 90% interval
        ``<task>_lo90``/``<task>_hi90`` from the validation residuals (NaN for a model saved
        before calibration existed); ``table`` as for :meth:`predict_array`. The auxiliary
        tasks of ``data.tier_use`` are left out unless ``auxiliary_tasks``."""
        mean = self.predict_array(smiles, table)
        if self.calibration is not None:
            std, lo, hi = self.calibration.apply(mean, None, self.output_tasks)
        else:
            std = lo = hi = np.full_like(mean, np.nan)
        tasks = self.output_tasks if auxiliary_tasks else self.task_names
        k = len(tasks)
        return prediction_frame(tasks, mean[:, :k], std[:, :k], lo[:, :k], hi[:, :k])

    def evaluate(self, data: MultitaskDataset | pd.DataFrame) -> dict[str, dict[str, float]]:
        """Per-task and macro metrics on labelled data (a dataset, or a frame with the SMILES
        column and any of the task columns)."""
        smiles, Y = labelled_arrays(data, self.config.data.smiles_col, self.task_names)
        predictions = self.predict(smiles, table_of(data))
        means = predictions[[f"{t}_pred" for t in self.task_names]].to_numpy()
        metrics = regression_metrics(Y, means, self.task_names)
        return add_uncertainty_metrics(metrics, Y, predictions, self.task_names)

    # -- persistence ----------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str], chemprop_copy: bool = True) -> Path:
        """Write ``config.yaml``, ``weights.pt`` (state dict), ``training.json`` and, for a
        ``regression`` head with ``chemprop_copy``, ``chemprop/model.pt`` (the same model as
        Chemprop saves it, for ``chemprop predict --model-paths``; see
        :mod:`admet.model.chemprop_export`; an ensemble writes its members' copies itself).
        The format is :mod:`admet.model.persistence`'s."""
        self._require_trained()
        with writing(directory) as tmp:  # whole or absent; a second writer is refused
            write_model(tmp, self, chemprop_copy)
        return Path(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ChempropModel:
        """A model saved by :meth:`save` (weights loaded with ``weights_only=True``)."""
        src = check_complete(directory)
        if not (src / "weights.pt").is_file():
            raise DataError(f"{src}: not a saved model (weights.pt missing)")
        return read_model(src, cls)
