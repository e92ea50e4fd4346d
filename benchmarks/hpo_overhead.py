"""Share of a real trial's wall time spent outside model training.

One worker runs two trials of the joint_sampling study on the fang2023 training data
with the study's base model (3 members, 300-wide MPNN; only the epochs are capped and the
pruner is off so both trials train the same number of epochs), on a fresh SQLite study
and a fresh MLflow store. Time is split into:

- training: Lightning fits of the members (``ChempropModel.fit``);
- evaluation: predicting and scoring each member's held-out fold (the objective value);
- overhead: everything else: worker start (data loading, featurisation, study and MLflow
  set-up), config building, study I/O between trials, the MLflow mirror.

Worker start-up is paid once per worker, so the second trial is the steady state of a
long study. Target: overhead <= 5% of a trial.

    python benchmarks/hpo_overhead.py [--max-molecules N] [--epochs 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import optuna
from _hpo_common import small_spec

from admet.hpo.objective import Objective
from admet.hpo.runner import run_worker


class _TimedObjective(Objective):
    """Records when each trial starts and how much of it was training and evaluation."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.starts: list[float] = []
        self.fits: list[tuple[float, float]] = []

    def __call__(self, trial: optuna.Trial):
        self.starts.append(time.perf_counter())
        fit, ev = self.member_fit_seconds, self.evaluation_seconds
        try:
            return super().__call__(trial)
        finally:
            self.fits.append((self.member_fit_seconds - fit, self.evaluation_seconds - ev))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-molecules", type=int, default=None, help="default: all training data")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ADMET_HOME"] = tmp
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        spec = small_spec(
            2,
            [
                "mlflow.enabled=true",
                "ensemble.n_members=3",
                "model.message_hidden_dim=300",
                "model.hidden_dim=300",
                f"data.featurization_cache_dir={Path(tmp) / 'featurization'}",
            ],
            max_molecules=args.max_molecules,
            epochs=args.epochs,
        )
        spec.pruner = {"type": "none"}
        t0 = time.perf_counter()
        objective = _TimedObjective(spec, spec.base_run_config())
        run_worker(
            spec,
            f"sqlite:///{Path(tmp) / 'study.db'}",
            mlflow_enabled=True,
            worker_index=0,
            progress=False,
            objective=objective,
        )
        end = time.perf_counter()
    n_mol = len(objective.data)
    print(f"{n_mol} molecules, 3 members x {args.epochs} epochs per trial, {objective.epochs_trained} epochs")
    start_up = objective.starts[0] - t0
    print(f"worker start (data, featurisation, study set-up): {start_up:.1f} s, once per worker")
    bounds = [*objective.starts[1:], end]
    rows = []
    for k, (begin, stop, (fit, ev)) in enumerate(zip(objective.starts, bounds, objective.fits, strict=True)):
        wall = stop - begin  # the trial, its study I/O and its MLflow mirror
        rows.append((f"trial {k}", wall, fit, ev))
    total = end - t0
    fit_all = sum(r[2] for r in rows)
    ev_all = sum(r[3] for r in rows)
    rows.append(("worker total", total, fit_all, ev_all))
    print("| | wall s | training s | evaluation s | overhead s | overhead share |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, wall, fit, ev in rows:
        over = wall - fit - ev
        print(f"| {name} | {wall:.1f} | {fit:.1f} | {ev:.1f} | {over:.1f} | {100 * over / wall:.1f}% |")
    steady = rows[1]
    share = 100 * (steady[1] - steady[2] - steady[3]) / steady[1]
    print(f"steady-state overhead per trial: {share:.1f}% (target <= 5%)")


if __name__ == "__main__":
    main()
