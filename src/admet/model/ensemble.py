"""ChempropEnsemble: K cross-validation members, mean prediction, member spread as uncertainty.

Member k trains on every fold but k and validates (early stopping, best checkpoint) on
fold k, with its own derived seed. Folds are scaffold folds by default. All members use
the same process-wide featurisation cache, filled once before the first member trains;
members trained in parallel processes (``ensemble.n_jobs``) receive the parent's graphs
instead of featurising again. The mean over members of the fold
validation macro MAE is the ensemble's cross-validated score (the HPO objective).

With ``checkpoint_dir``, every finished member is saved there at once; a later ``fit``
with the same config reloads finished members instead of training them again (this is
how a retried HPO trial resumes).

Over 350 lines because the member fits (in turn, stacked or in worker processes), their
resumption, CV+ calibration and MLflow logging share one fold plan and one member loop;
the folder format is :mod:`admet.model.persistence`'s.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from lightning.pytorch.callbacks import Callback

from admet.config import EnsembleConfig, config_to_dict, load_config, save_config
from admet.config.tiers import output_tasks
from admet.data import (
    MultitaskDataset,
    apply_tier_use,
    default_cache,
    fold_assignment,
    load_training_data,
    pack_graphs,
    predefined_folds,
    unpack_graphs,
)
from admet.errors import DataError
from admet.model.calibration import (
    GAUSSIAN_Z90,
    Calibration,
    add_uncertainty_metrics,
    fit_cv_plus,
    prediction_frame,
)
from admet.model.folder import check_complete, writing
from admet.model.metrics import labelled_arrays, regression_metrics
from admet.model.model import ChempropModel, table_of
from admet.model.persistence import read_ensemble, write_ensemble
from admet.model.plots import parity_plots
from admet.model.progress import ConsoleStatus, EpochProgressCallback, FitProgress
from admet.model.pyfunc_logging import try_log_pyfunc
from admet.model.stacked_fit import fit_stacked, stacking_refusal
from admet.model.validation_scope import ValidationScope
from admet.tracking import RunTracker, flatten

__all__ = ["ChempropEnsemble", "load_saved", "member_seed"]


logger = logging.getLogger(__name__)

MemberCallbacks = Callable[[int], Sequence[Callback]]


def _with_progress(member_callbacks: MemberCallbacks | None, status: FitProgress) -> MemberCallbacks:
    """The members' Lightning callbacks plus the one that reports their epochs to ``status``."""

    def callbacks(m: int) -> list[Callback]:
        extra = list(member_callbacks(m)) if member_callbacks is not None else []
        return [*extra, EpochProgressCallback(status, m)]

    return callbacks


def member_seed(base: int, member: int) -> int:
    """A distinct, reproducible seed for ensemble member ``member``."""
    return int(np.random.SeedSequence([int(base), int(member)]).generate_state(1)[0] % (2**31 - 1))


class ChempropEnsemble:
    """An ensemble of :class:`ChempropModel` members on K folds of the training data.

    After :meth:`fit`: ``members``, ``member_val_metrics`` (each member on its own fold),
    ``cv_score`` (mean fold macro MAE, over the labels of
    ``optimization.validation_qualities``), ``oof_predictions`` (out-of-fold predictions of
    the target columns) and ``oof_labels`` (the training table's labels beside them),
    ``reused_members`` (indices loaded from ``checkpoint_dir``), ``fit_seconds`` and
    ``evaluation_seconds`` (the part of it spent predicting and scoring the folds).

    Example:
        Two members, one epoch each, on a small table (a real run reads
        ``data.train_file`` from its YAML config):

        >>> import tempfile, pandas as pd
        >>> from pathlib import Path
        >>> from admet.config import load_config
        >>> smiles = ["CCO", "CCN", "CCC", "CCCl", "c1ccccc1", "c1ccccc1O", "c1ccncc1",
        ...           "CC(=O)O", "CCOC", "CCCC", "OCCO", "NCCN"]
        >>> folder = Path(tempfile.mkdtemp())
        >>> pd.DataFrame({"SMILES": smiles, "logS": [0.1 * i for i in range(12)]}).to_csv(
        ...     folder / "train.csv", index=False)
        >>> cfg = load_config({"ensemble": {"n_members": 2, "split": "random"}}, [
        ...     f"data.train_file={folder / 'train.csv'}", "data.target_cols=[logS]",
        ...     "model.message_hidden_dim=16", "model.hidden_dim=16",
        ...     "optimization.max_epochs=1", "optimization.batch_size=4"])
        >>> ensemble = ChempropEnsemble(cfg).fit()
        >>> len(ensemble.members), list(ensemble.predict(["CCO"]).columns)
        (2, ['logS_pred', 'logS_std', 'logS_lo90', 'logS_hi90'])
        >>> ensemble.save(folder / "model").name
        'model'
    """

    def __init__(self, config: EnsembleConfig) -> None:
        if not isinstance(config, EnsembleConfig):
            raise TypeError("ChempropEnsemble needs an EnsembleConfig (a config with 'ensemble')")
        self.config = config
        self.task_names = list(config.data.target_cols)  # scored; predict's columns
        self.output_tasks = output_tasks(config)  # and the auxiliary ones (data.tier_use)
        self.members: list[ChempropModel] = []
        self.member_val_metrics: list[dict[str, dict[str, float]]] = []
        self.cv_score: float | None = None
        self.oof_predictions: pd.DataFrame | None = None
        self.oof_labels: np.ndarray | None = None
        self.reused_members: list[int] = []
        self.fit_seconds = 0.0
        self.evaluation_seconds = 0.0
        self.mlflow_run_id: str | None = None
        self.calibration: Calibration | None = None

    @classmethod
    def from_config(
        cls, config: EnsembleConfig | str | os.PathLike[str] | dict, overrides: Sequence[str] = ()
    ) -> ChempropEnsemble:
        if not isinstance(config, EnsembleConfig) or overrides:
            config = load_config(config, overrides)  # type: ignore[assignment]
        return cls(config)  # type: ignore[arg-type]

    @property
    def n_folds(self) -> int:
        ens = self.config.ensemble
        return ens.n_folds or max(ens.n_members, 2)

    def member_config(self, member: int) -> EnsembleConfig:
        """The config member ``member`` trains with (its own derived seed)."""
        cfg = copy.deepcopy(self.config)
        cfg.optimization.seed = member_seed(self.config.optimization.seed, member)
        cfg.mlflow.enabled = False  # the ensemble does the tracking
        return cfg

    # -- training -------------------------------------------------------------------------

    def fit(self, *args: Any, **kwargs: Any) -> ChempropEnsemble:
        """Train (or reload) every member; see :meth:`_fit` for the arguments. MLflow runs
        that an exception interrupts are ended as FAILED instead of left RUNNING."""
        self._open_runs: list[tuple[RunTracker, str | None]] = []
        try:
            return self._fit(*args, **kwargs)
        except BaseException:
            for tracker, run in reversed(self._open_runs):
                tracker.end_run(run, "FAILED")
            raise

    def _fit(
        self,
        dataset: MultitaskDataset | None = None,
        member_callbacks: MemberCallbacks | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        progress: bool | ConsoleStatus | FitProgress = False,
        on_member_done: Callable[[int, ChempropModel, dict], None] | None = None,
        run_tags: dict[str, str] | None = None,
        calibrate: bool = True,
        on_member_epoch: Callable[[int, int, dict[str, float]], None] | None = None,
    ) -> ChempropEnsemble:
        """Train (or reload) every member; returns self.

        Args:
            dataset: training data (default: ``data.train_file`` of the config).
            member_callbacks: extra Lightning callbacks per member index (e.g. pruning);
                only with ``n_jobs == 1``.
            checkpoint_dir: save finished members here and reuse them on a later call.
            progress: a status line (member, epoch e/E, latest validation value; see
                :mod:`admet.model.progress`): True for the console, a
                :class:`ConsoleStatus` to name the fit or keep one line per epoch, a
                :class:`FitProgress` to show it elsewhere (an HPO worker's trial bar).
            on_member_done: called with (index, member, fold metrics) after each member.
            run_tags: extra tags of the ensemble's MLflow run (e.g. the study it refits).
            calibrate: fit the uncertainty calibration (CV+) on the out-of-fold errors.
            on_member_epoch: with ``ensemble.batched``, called with (member, epoch, that
                epoch's scalars) after every member epoch (HPO pruning; what
                ``member_callbacks`` are to members trained one by one).
        """
        start = time.perf_counter()
        cfg = self.config
        folds = predefined_folds(cfg)
        if folds is None:
            dataset = dataset if dataset is not None else load_training_data(cfg)
            dataset = apply_tier_use(dataset, cfg)  # before the folds: a dropped tier has no rows
            try:
                assignment = fold_assignment(
                    dataset.smiles, self.n_folds, cfg.ensemble.seed, cfg.ensemble.split
                )
            except ValueError as exc:
                raise DataError(f"ensemble.split={cfg.ensemble.split!r}: {exc}") from None
            rows = [np.flatnonzero(assignment == m) for m in range(cfg.ensemble.n_members)]
            member_data = [
                (dataset.subset(np.flatnonzero(assignment != m)), dataset.subset(r))
                for m, r in enumerate(rows)
            ]
        else:
            # the original project's split_<i>/fold_<j> folders: one member per fold
            cfg.ensemble.n_members = len(folds)
            member_data = [
                (
                    apply_tier_use(load_training_data(cfg, f.train_file), cfg),
                    apply_tier_use(load_training_data(cfg, f.val_file), cfg),
                )
                for f in folds
            ]
            dataset = MultitaskDataset.concat([val for _, val in member_data])
            offsets = np.cumsum([0] + [len(val) for _, val in member_data])
            rows = [np.arange(offsets[m], offsets[m + 1]) for m in range(len(folds))]
        self.member_folds = None if folds is None else [f.name for f in folds]
        every = list(dict.fromkeys(s for pair in member_data for part in pair for s in part.smiles))
        default_cache(cfg.data.featurization_cache_dir).graphs(every)  # featurise once
        ChempropModel(cfg).features.warm(every)  # and the molecule descriptors, when any

        tracker = RunTracker(cfg.mlflow.enabled, cfg.mlflow.tracking_uri, cfg.mlflow.experiment_name)
        parent = tracker.start_run(
            cfg.mlflow.run_name or "ensemble", tags={"admet.kind": "ensemble", **(run_tags or {})}
        )
        self._open_runs.append((tracker, parent))
        self.mlflow_run_id = parent
        tracker.log_params(parent, flatten(config_to_dict(cfg)))

        n = cfg.ensemble.n_members
        ckpt = None if checkpoint_dir is None else Path(checkpoint_dir)
        members: list[ChempropModel | None] = [None] * n
        self.reused_members = []
        self.evaluation_seconds = 0.0
        for m in range(n):
            reused = self._reuse(ckpt, m)
            if reused is not None:
                members[m] = reused
                self.reused_members.append(m)
        todo = [m for m in range(n) if members[m] is None]
        status = progress if isinstance(progress, FitProgress) else None
        if progress is True or isinstance(progress, ConsoleStatus):
            console = (
                progress
                if isinstance(progress, ConsoleStatus)
                else ConsoleStatus(cfg.mlflow.run_name or "ensemble")
            )
            status = FitProgress(console, console.label, n, cfg.optimization.max_epochs)
        n_jobs = min(cfg.ensemble.n_jobs, os.cpu_count() or 1, max(len(todo), 1))
        if n_jobs > 1 and member_callbacks is not None:
            raise ValueError("member_callbacks need n_jobs == 1 (callbacks cannot cross processes)")

        oof = np.full((len(dataset), len(self.output_tasks)), np.nan)
        k = len(self.task_names)
        fold_metrics: dict[int, dict] = {}

        def finish(m: int, model: ChempropModel, child: str | None) -> None:
            members[m] = model
            t0 = time.perf_counter()
            val = member_data[m][1]
            oof[rows[m]] = model.predict_canonical(val.smiles, val.extra)
            # the fold score (the CV score, the study objective) reads the scope's labels
            labels = ValidationScope.of(cfg, val).scored(val.Y)
            metrics = fold_metrics[m] = regression_metrics(labels, oof[rows[m], :k], self.task_names)
            self.evaluation_seconds += time.perf_counter() - t0
            self._log_member(tracker, child, m, model, metrics)
            if on_member_done is not None:
                on_member_done(m, model, metrics)
            if status is not None:
                status.member_done(
                    m,
                    f"fold MAE {metrics['macro']['mae']:.4f} ({model.epochs_trained} epochs, "
                    f"{model.fit_seconds:.1f} s{', reused' if m in self.reused_members else ''})",
                )

        stacked = self._stacked_plan(todo, member_callbacks)
        if status is not None:
            status.stacked = stacked is not None
            status.start(reused=len(self.reused_members))
        for m in self.reused_members:
            finish(m, members[m], None)  # type: ignore[arg-type]
        if status is not None and stacked is None and n_jobs == 1:
            member_callbacks = _with_progress(member_callbacks, status)
        if stacked is not None:
            children = {m: tracker.start_run(f"member_{m}", parent, {"admet.member": str(m)}) for m in todo}
            self._open_runs += [(tracker, run) for run in children.values()]

            def on_epoch(i: int, epoch: int, scalars: dict[str, float]) -> None:
                tracker.log_metrics(children[todo[i]], scalars, step=epoch)
                if status is not None:
                    status.epoch(todo[i], epoch, scalars)
                if on_member_epoch is not None:
                    on_member_epoch(todo[i], epoch, scalars)

            def done(i: int, model: ChempropModel) -> None:
                if ckpt is not None:  # at once: a fit killed later keeps it
                    model.save(ckpt / f"member_{todo[i]}", chemprop_copy=False)
                finish(todo[i], model, children[todo[i]])

            fit_stacked(stacked, [member_data[m] for m in todo], on_epoch=on_epoch, on_done=done)
        elif n_jobs > 1:
            self._fit_parallel(member_data, every, todo, ckpt, tracker, parent, n_jobs, finish)
        else:
            for m in todo:
                child = tracker.start_run(f"member_{m}", parent, {"admet.member": str(m)})
                self._open_runs.append((tracker, child))
                model = self._fit_member(
                    *member_data[m], m, member_callbacks, tracker.lightning_logger(child)
                )
                if ckpt is not None:
                    model.save(ckpt / f"member_{m}", chemprop_copy=False)
                finish(m, model, child)
        self.members = [m for m in members if m is not None]
        self.member_val_metrics = [fold_metrics[m] for m in range(n)]
        self.oof_predictions = pd.DataFrame(oof[:, :k], columns=self.task_names)
        self.oof_labels = dataset.Y[:, :k]
        self.oof_predictions.insert(0, "SMILES", dataset.smiles)
        if folds is not None:
            self.oof_predictions.insert(1, "fold", np.repeat([f.name for f in folds], np.diff(offsets)))
        self.cv_score = float(np.mean([mv["macro"]["mae"] for mv in self.member_val_metrics]))
        if calibrate:
            t0 = time.perf_counter()
            self.calibration = self._calibrate(dataset, oof, rows)
            self.evaluation_seconds += time.perf_counter() - t0
        self.fit_seconds = time.perf_counter() - start
        self._log_ensemble(tracker, parent, dataset)
        return self

    def _calibrate(self, dataset: MultitaskDataset, oof: np.ndarray, rows: list[np.ndarray]) -> Calibration:
        """Per task, CV+: each member's errors on the fold it did not train on (the
        members' spread there is not honest, see :mod:`admet.model.calibration`)."""
        errors = oof - dataset.Y
        return Calibration(
            {t: fit_cv_plus([errors[r, j] for r in rows]) for j, t in enumerate(self.output_tasks)}
        )

    def _reuse(self, ckpt: Path | None, m: int) -> ChempropModel | None:
        """A finished member saved by an earlier fit with the same member config."""
        if ckpt is None or not (ckpt / f"member_{m}" / "training.json").is_file():
            return None
        try:
            model = ChempropModel.load(ckpt / f"member_{m}")
        except Exception as exc:
            logger.warning("cannot reuse member %d from %s (%s); retraining", m, ckpt, exc)
            return None
        if config_to_dict(model.config) != config_to_dict(self.member_config(m)):
            return None
        logger.info("reusing finished member %d from %s", m, ckpt)
        return model

    def _stacked_plan(
        self, todo: list[int], member_callbacks: MemberCallbacks | None
    ) -> list[ChempropModel] | None:
        """The members to train stacked (``ensemble.batched``), or None for one fit each:
        fewer than two to train, per-member Lightning callbacks (HPO pruning), or an
        architecture the stacked model does not take (said in the log)."""
        if not self.config.ensemble.batched or len(todo) < 2:
            return None
        if member_callbacks is not None:
            logger.info("ensemble.batched: members take Lightning callbacks; training them one by one")
            return None
        models = [ChempropModel(self.member_config(m)) for m in todo]
        refusal = stacking_refusal(models)
        if refusal is not None:
            logger.warning("ensemble.batched: %s; training the members one by one", refusal)
            return None
        return models

    def _fit_member(
        self,
        train: MultitaskDataset,
        val: MultitaskDataset,
        m: int,
        member_callbacks: MemberCallbacks | None,
        lightning_logger: Any,
    ) -> ChempropModel:
        model = ChempropModel(self.member_config(m))
        callbacks = list(member_callbacks(m)) if member_callbacks is not None else []
        # the ensemble's status line (FitProgress) says the epoch; no per-batch bar under it
        return model.fit(
            train, val, callbacks=callbacks, logger=lightning_logger, progress=False, calibrate=False
        )

    def _fit_parallel(self, member_data, smiles, todo, ckpt, tracker, parent, n_jobs, finish) -> None:
        """Train members in worker processes. Workers are spawned (forking a process whose
        torch thread pools are running can deadlock) and receive the already featurised
        graphs as a few packed arrays, so no worker featurises again."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="admet-members-") as scratch:
            out_root = ckpt or Path(scratch)
            children = {m: tracker.start_run(f"member_{m}", parent, {"admet.member": str(m)}) for m in todo}
            self._open_runs += [(tracker, run) for run in children.values()]
            uri = tracker.tracking_uri if tracker.enabled else None
            cache = default_cache(self.config.data.featurization_cache_dir)
            packed = pack_graphs(smiles, cache.graphs(smiles))
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                max_workers=n_jobs,
                mp_context=ctx,
                initializer=_receive_graphs,
                # split the cores between the workers instead of each taking all of them
                initargs=(packed, self.config.data.featurization_cache_dir, max(1, _cpus() // n_jobs)),
            ) as pool:
                futures = {
                    m: pool.submit(
                        _train_member_process,
                        self,
                        *member_data[m],
                        m,
                        str(out_root / f"member_{m}"),
                        uri,
                        children[m],
                    )
                    for m in todo
                }
                try:
                    for m, future in futures.items():
                        finish(m, ChempropModel.load(future.result()), children[m])
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)  # do not train the rest
                    raise

    # -- tracking -------------------------------------------------------------------------

    def _log_member(
        self, tracker: RunTracker, run: str | None, m: int, model: ChempropModel, metrics: dict
    ) -> None:
        if run is None:
            return
        final = {f"final/{task}/{k}": v for task, ms in metrics.items() for k, v in ms.items()}
        tracker.log_metrics(
            run,
            {
                **final,
                "best_epoch": model.best_epoch or 0,
                "epochs_trained": model.epochs_trained,
                "fit_seconds": model.fit_seconds,
            },
        )
        for epoch, phase in model.curriculum_history:
            tracker.log_metrics(
                run,
                {"curriculum/phase_change": float(("warmup", "expand", "robust", "polish").index(phase))},
                step=epoch,
            )
        with tracker.artifact_dir() as tmp:
            if model.sampler_history:
                pd.DataFrame(model.sampler_history).to_csv(tmp / "sampler_stats.csv", index=False)
                tracker.log_artifact(run, tmp / "sampler_stats.csv")
        tracker.end_run(run)

    def _log_ensemble(self, tracker: RunTracker, run: str | None, dataset: MultitaskDataset) -> None:
        if run is None:
            return
        summary = {"cv/mae_macro": self.cv_score, "fit_seconds": self.fit_seconds}
        for task in [*self.task_names, "macro"]:
            for key in ("mae", "rmse", "r2", "pearson_r", "spearman_rho"):
                vals = [mv[task][key] for mv in self.member_val_metrics if np.isfinite(mv[task][key])]
                if vals:
                    summary[f"cv/{task}/{key}"] = float(np.mean(vals))
        tracker.log_metrics(run, summary)
        with tracker.artifact_dir() as tmp:
            save_config(self.config, tmp / "config.yaml")
            tracker.log_artifact(run, tmp / "config.yaml")
            assert self.oof_predictions is not None
            oof = self.oof_predictions[self.task_names].to_numpy()
            for path in parity_plots(self.oof_labels, oof, self.task_names, tmp / "plots", "CV "):
                tracker.log_artifact(run, path, "parity")
            if self.config.mlflow.log_model:
                self.save(tmp / "model")
                tracker.log_artifact(run, tmp / "model", "model")
                try_log_pyfunc(
                    self, tracker, run, self.config.mlflow.registered_model_name, saved_dir=tmp / "model"
                )
        tracker.end_run(run)

    # -- inference ------------------------------------------------------------------------

    def predict(
        self,
        smiles: Sequence[str],
        include_spread: bool = False,
        auxiliary_tasks: bool = False,
        table: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Per task: the mean over members ``<task>_pred``, the calibrated standard deviation
        ``<task>_std`` and the 90% interval ``<task>_lo90``/``<task>_hi90``; with
        ``include_spread`` also the raw member spread ``<task>_spread``. Without a
        calibration (an ensemble saved before it existed) the spread is the sd and the
        interval Gaussian. The auxiliary tasks of ``data.tier_use`` are left out unless
        ``auxiliary_tasks``. ``table``: the descriptor columns of a ``columns:`` molecule
        feature, row-aligned with ``smiles``."""
        if not self.members:
            raise RuntimeError("the ensemble is not trained or loaded yet")
        stack = np.stack([m.predict_array(smiles, table) for m in self.members])
        mean, spread = stack.mean(0), stack.std(0, ddof=0)
        if self.calibration is not None:
            std, lo, hi = self.calibration.apply(mean, spread, self.output_tasks, stack)
        else:
            std, lo, hi = spread, mean - GAUSSIAN_Z90 * spread, mean + GAUSSIAN_Z90 * spread
        tasks = self.output_tasks if auxiliary_tasks else self.task_names
        k = len(tasks)
        columns = [a[:, :k] for a in (mean, std, lo, hi)]
        return prediction_frame(tasks, *columns, spread[:, :k] if include_spread else None)

    def evaluate(self, data: MultitaskDataset | pd.DataFrame) -> dict[str, dict[str, float]]:
        """Per-task and macro metrics of the ensemble mean, and of its uncertainty (Gaussian
        NLL, miscalibration area, 90% coverage, Spearman |error| vs std; calibrated and raw)."""
        smiles, Y = labelled_arrays(data, self.config.data.smiles_col, self.task_names)
        predictions = self.predict(smiles, include_spread=True, table=table_of(data))
        means = predictions[[f"{t}_pred" for t in self.task_names]].to_numpy()
        metrics = regression_metrics(Y, means, self.task_names)
        return add_uncertainty_metrics(metrics, Y, predictions, self.task_names)

    # -- persistence ----------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``config.yaml``, ``member_<k>/`` per member, ``ensemble.json`` and, for a
        ``regression`` head, ``chemprop/member_<k>.pt`` (each member as Chemprop saves it:
        ``chemprop predict --model-paths DIR/chemprop/*.pt`` averages them as we do)."""
        with writing(directory) as tmp:  # whole or absent; a second writer is refused
            self._write(tmp)
        return Path(directory)

    def _write(self, out: Path) -> None:
        write_ensemble(out, self)  # the format is admet.model.persistence's

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ChempropEnsemble:
        src = check_complete(directory)
        info_path = src / "ensemble.json"
        if not info_path.is_file():
            raise DataError(f"{src}: not a saved ensemble (ensemble.json missing)")
        return read_ensemble(src, cls, ChempropModel.load)


def load_saved(directory: str | os.PathLike[str]) -> ChempropEnsemble | ChempropModel:
    """The ensemble or single model saved in ``directory`` by ``save``."""
    path = check_complete(directory)
    if (path / "ensemble.json").is_file():
        return ChempropEnsemble.load(path)
    if (path / "weights.pt").is_file():
        return ChempropModel.load(path)
    raise DataError(f"{path}: no trained model or ensemble there")


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _receive_graphs(packed: dict[str, np.ndarray], cache_dir: str | None, threads: int) -> None:
    """Worker initializer: fill this process's featurisation cache from the parent's graphs
    and take its share of the CPU threads (members on one GPU share the host's cores too)."""
    import torch

    torch.set_num_threads(threads)
    default_cache(cache_dir).add(unpack_graphs(packed))


def _train_member_process(
    ensemble: ChempropEnsemble,
    train: MultitaskDataset,
    val: MultitaskDataset,
    m: int,
    out: str,
    tracking_uri: str | None,
    run_id: str | None,
) -> str:
    """Worker process body: train one member (graphs come from the forked cache), save it."""
    lightning_logger = None
    if tracking_uri and run_id:
        tracker = RunTracker(True, tracking_uri, ensemble.config.mlflow.experiment_name)
        lightning_logger = tracker.lightning_logger(run_id)
    model = ensemble._fit_member(train, val, m, None, lightning_logger)
    model.save(out, chemprop_copy=False)
    return out
