"""From a study to a production model: retrain a trial's config at full budget.

A study scores each trial with a small, cheap ensemble (few members, few epochs). Its
answer becomes a model people use only when that configuration is trained again with the
budget a production model deserves: :func:`refit` takes the best trial (or a chosen one),
keeps everything it sampled, sets the number of members and epochs, trains the ensemble
on the whole training table (member k validates on fold k for early stopping, so the
members together see every molecule) and saves a folder that ``python -m admet.model
predict/evaluate`` load. With MLflow on, the ensemble is one MLflow run tagged with the
study and the trial it came from.

Example:
    From the command line::

        python -m admet.hpo refit --study joint_sampling --members 5 --max-epochs 60 --out runs/best
        python -m admet.model predict --model runs/best --input molecules.csv --output preds.csv
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from admet.config import EnsembleConfig, load_config, parse_overrides
from admet.errors import AdmetError, ConfigError
from admet.hpo.summary import best_trials, trial_config
from admet.model import ChempropEnsemble, ConsoleStatus

__all__ = ["RefitResult", "pick_trial", "refit", "refit_config"]


@dataclass
class RefitResult:
    """The refitted ensemble, where it was saved and which trial it came from."""

    ensemble: ChempropEnsemble
    out: Path
    trial: optuna.trial.FrozenTrial
    config: EnsembleConfig


def pick_trial(study: optuna.Study, number: int | None = None) -> optuna.trial.FrozenTrial:
    """Trial ``number`` (which must be COMPLETE), or the best trial of a single-objective
    study; a Pareto study has no single best, so it needs ``number``."""
    if number is None:
        trials = best_trials(study)
        if len(trials) > 1:
            numbers = ", ".join(str(t.number) for t in trials)
            raise AdmetError(
                f"study {study.study_name!r} has {len(trials)} Pareto-optimal trials ({numbers}); "
                "choose one with --trial N"
            )
        return trials[0]
    for t in study.get_trials(deepcopy=False):
        if t.number == number:
            if t.state != TrialState.COMPLETE:
                raise AdmetError(
                    f"trial {number} of study {study.study_name!r} is {t.state.name}, not COMPLETE"
                )
            return t
    raise AdmetError(f"study {study.study_name!r} has no trial {number}")


def refit_config(
    study: optuna.Study,
    trial_number: int | None = None,
    members: int = 5,
    max_epochs: int | None = None,
    overrides: Sequence[str] = (),
) -> tuple[optuna.trial.FrozenTrial, EnsembleConfig]:
    """The trial and the ensemble config :func:`refit` trains for these arguments, without
    training it: to benchmark or train the same model elsewhere (``python -m
    admet.benchmark fang2023 --config``, ``python -m admet.model train --config``).

    Raises:
        AdmetError: no such trial, no completed trial, or a Pareto study without a trial.
        ConfigError: an invalid override, or one that changes a sampled parameter.
    """
    if members < 1:
        raise ConfigError(f"--members must be >= 1, got {members}")
    if max_epochs is not None and max_epochs < 1:
        raise ConfigError(f"--max-epochs must be >= 1, got {max_epochs}")
    trial = pick_trial(study, trial_number)
    sampled = {k for k in trial.params if not k.startswith("curriculum.")}
    if any(p.startswith("curriculum.") for p in trial.params):
        sampled.add("joint_sampling.curriculum.phase_proportions")
    for key, _ in parse_overrides(overrides):
        if key in sampled:
            raise ConfigError(f"override {key!r} changes a parameter trial {trial.number} sampled")
    budget = [f"ensemble.n_members={members}", "ensemble.n_folds=null"]
    if max_epochs is not None:
        budget.append(f"optimization.max_epochs={max_epochs}")
    cfg = load_config(trial_config(trial), [*budget, *overrides])
    if not isinstance(cfg, EnsembleConfig):
        raise ConfigError(f"trial {trial.number} has no ensemble config")
    return trial, cfg


def refit(
    study: optuna.Study,
    out: str | os.PathLike[str],
    trial_number: int | None = None,
    members: int = 5,
    max_epochs: int | None = None,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> RefitResult:
    """Train trial ``trial_number``'s (default: the best trial's) config as a
    ``members``-member ensemble for up to ``max_epochs`` epochs (default: the trial's) and
    save it to ``out``.

    Args:
        overrides: further ``key=value`` changes of the run config (e.g.
            ``optimization.patience=15``); a sampled parameter may not be overridden here,
            since the result would no longer be the trial's model.

    Raises:
        AdmetError: no such trial, no completed trial, or a Pareto study without a trial.
        ConfigError: an invalid override, or one that changes a sampled parameter.
    """
    trial, cfg = refit_config(study, trial_number, members, max_epochs, overrides)
    if cfg.mlflow.enabled and not cfg.mlflow.run_name:
        cfg.mlflow.run_name = f"refit {study.study_name} trial {trial.number}"
    tags = {"admet.kind": "refit", "admet.study": study.study_name, "admet.trial": str(trial.number)}
    # a status line on a terminal; one line per member epoch when quiet or logged to a file
    status = ConsoleStatus(f"refit trial {trial.number}", rewrite=None if progress else False)
    ensemble = ChempropEnsemble(cfg).fit(progress=status, run_tags=tags)
    path = ensemble.save(out)
    return RefitResult(ensemble, Path(path), trial, cfg)
