"""The saved-folder formats of a model and an ensemble: what is written, and read back.

What: a model folder holds ``config.yaml``, ``weights.pt`` (the state dict, target scaler
and the molecule descriptors' training-fold scaler inside), ``molecule_features.json``
(each ``data.molecule_features`` entry's version and width, when there are any),
``training.json`` (history and scores), ``calibration.json`` when calibrated and, for a head
Chemprop can express, ``chemprop/model.pt``; an ensemble folder holds its
``config.yaml``, ``member_<k>/`` model folders (without Chemprop copies), the members'
copies as ``chemprop/member_<k>.pt``, ``ensemble.json`` and ``calibration.json``.
:func:`write_model` / :func:`read_model` and :func:`write_ensemble` /
:func:`read_ensemble` write into and read from a folder that
:func:`admet.model.folder.writing` / :func:`~admet.model.folder.check_complete` guard.

Why here: ``ChempropModel.save``/``load`` and ``ChempropEnsemble.save``/``load`` stay the
public calls; the formats (which tests/model/test_saved_before_the_move.py pins) are read
in one place, apart from training. This module takes the model objects by what they hold
(config, task names, network, scores), so it imports neither class and the classes import
it one way; the Chemprop copy comes from :mod:`admet.model.chemprop_export`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from admet.config import load_config, save_config
from admet.model.calibration import Calibration
from admet.model.chemprop_export import NotExportableError, save_chemprop

__all__ = ["CALIBRATION_FILE", "read_ensemble", "read_model", "write_ensemble", "write_model"]

logger = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"
FEATURES_FILE = "molecule_features.json"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _read_calibration(src: Path) -> Calibration | None:
    path = src / CALIBRATION_FILE
    return Calibration.from_dict(json.loads(path.read_text())) if path.is_file() else None


def _write_calibration(out: Path, calibration: Calibration | None) -> None:
    if calibration is not None:
        (out / CALIBRATION_FILE).write_text(json.dumps(calibration.to_dict(), indent=1))


def write_model(out: Path, model: Any, chemprop_copy: bool) -> None:
    """Write the trained ``model`` (a :class:`~admet.model.model.ChempropModel`) into the
    folder ``out``; with ``chemprop_copy``, also ``chemprop/model.pt`` when its head and
    aggregation have Chemprop counterparts (otherwise one info line says why not)."""
    mpnn = model._require_trained()
    save_config(model.config, out / "config.yaml")
    torch.save(mpnn.state_dict(), out / "weights.pt")
    try:
        if chemprop_copy:
            save_chemprop(model, out / "chemprop" / "model.pt")
    except NotExportableError as exc:
        logger.info("no Chemprop copy in %s: %s", out, exc)
    info = {
        "task_names": model.task_names,
        "best_score": model.best_score,
        "best_epoch": model.best_epoch,
        "epochs_trained": model.epochs_trained,
        "fit_seconds": model.fit_seconds,
        "curriculum_history": model.curriculum_history,
        "history": model.history,
        "sampler_history": model.sampler_history,
    }
    (out / "training.json").write_text(json.dumps(info, indent=1, default=_json_default))
    _write_calibration(out, model.calibration)
    if model.features:
        (out / FEATURES_FILE).write_text(json.dumps(model.features.describe(), indent=1))


def read_model(src: Path, new: Callable[[Any], Any]) -> Any:
    """The model saved in the checked folder ``src``: ``new(config)`` makes the untrained
    model (``ChempropModel``), whose ``_build_mpnn`` network takes the saved weights
    (``weights_only=True``); scores, history and calibration come back when present."""
    model = new(load_config(src / "config.yaml"))
    n = len(model.output_tasks)
    state = torch.load(src / "weights.pt", map_location="cpu", weights_only=True)
    # molecule descriptors (data.molecule_features): their count and training-fold scaler
    # are the X_d_transform buffers of the state dict
    x_mean = state.get("X_d_transform.mean")
    x_scaler = None if x_mean is None else (np.zeros(x_mean.shape[-1]), np.ones(x_mean.shape[-1]))
    model.mpnn = model._build_mpnn(np.zeros(n), np.ones(n), x_scaler)
    model.mpnn.load_state_dict(state)
    model.mpnn.eval()
    model.calibration = _read_calibration(src)
    _check_feature_versions(src, model)
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


def _check_feature_versions(src: Path, model: Any) -> None:
    """Warn when a molecule featurizer's version differs from the one the model was trained
    with (a new RDKit or Chemprop may compute other numbers for the same molecule)."""
    path = src / FEATURES_FILE
    if not path.is_file() or not model.features:
        return
    saved = {e["name"]: e["version"] for e in json.loads(path.read_text())}
    for entry in model.features.describe():
        was = saved.get(entry["name"])
        if was is not None and was != entry["version"]:
            logger.warning(
                "%s: molecule feature %r was computed by %s at training, now by %s; predictions may differ",
                src,
                entry["name"],
                was,
                entry["version"],
            )


def write_ensemble(out: Path, ensemble: Any) -> None:
    """Write the trained ``ensemble`` (a :class:`~admet.model.ensemble.ChempropEnsemble`)
    into the folder ``out``: its members' folders, then their Chemprop copies (none when
    the head has no Chemprop counterpart: one info line)."""
    save_config(ensemble.config, out / "config.yaml")
    for m, model in enumerate(ensemble.members):
        model.save(out / f"member_{m}", chemprop_copy=False)
    try:
        for m, model in enumerate(ensemble.members):
            save_chemprop(model, out / "chemprop" / f"member_{m}.pt")
    except NotExportableError as exc:
        logger.info("no Chemprop copies in %s: %s", out, exc)
    info = {
        "n_members": len(ensemble.members),
        "cv_score": ensemble.cv_score,
        "member_val_metrics": ensemble.member_val_metrics,
        "fit_seconds": ensemble.fit_seconds,
    }
    (out / "ensemble.json").write_text(json.dumps(info, indent=1, default=float))
    _write_calibration(out, ensemble.calibration)


def read_ensemble(src: Path, new: Callable[[Any], Any], load_member: Callable[[Path], Any]) -> Any:
    """The ensemble saved in the checked folder ``src`` (``ensemble.json`` present):
    ``new(config)`` makes the empty ensemble, ``load_member(folder)`` each member."""
    info = json.loads((src / "ensemble.json").read_text())
    ens = new(load_config(src / "config.yaml"))
    ens.members = [load_member(src / f"member_{m}") for m in range(info["n_members"])]
    ens.cv_score = info.get("cv_score")
    ens.member_val_metrics = info.get("member_val_metrics", [])
    ens.fit_seconds = info.get("fit_seconds", 0.0)
    ens.calibration = _read_calibration(src)
    return ens
