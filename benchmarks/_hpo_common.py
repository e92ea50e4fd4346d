"""Shared set-up of the HPO benchmarks: a small real study on a fang2023 subsample."""

from __future__ import annotations

import warnings

from admet.data.fang2023 import ensure_prepared
from admet.hpo.spec import StudySpec, load_study_spec

warnings.filterwarnings("ignore")


def small_spec(
    n_trials: int, extra: list[str] | None = None, max_molecules: int | None = 600, epochs: int = 6
) -> StudySpec:
    folder = ensure_prepared()
    return load_study_spec(
        "joint_sampling",
        [
            f"n_trials={n_trials}",
            f"data.train_file={folder / 'train.csv'}",
            f"data.max_molecules={'null' if max_molecules is None else max_molecules}",
            f"optimization.max_epochs={epochs}",
            "optimization.patience=100",
            "ensemble.n_members=2",
            "model.message_hidden_dim=64",
            "model.hidden_dim=64",
            "mlflow.enabled=false",
            "heartbeat_interval=5",
            "grace_period=30",
            *(extra or []),
        ],
    )
