"""Share of one real trial's wall time spent outside model training.

Outside training: study creation and I/O, config building, data loading and
featurisation, out-of-fold evaluation, MLflow mirroring. Training: Lightning fits of the
ensemble members. Target: overhead <= 5%.

    python benchmarks/hpo_overhead.py [--max-molecules 1500] [--epochs 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _hpo_common import small_spec

from admet.hpo.objective import Objective
from admet.hpo.runner import run_worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-molecules", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ADMET_HOME"] = tmp
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        spec = small_spec(
            1,
            ["mlflow.enabled=true", "model.message_hidden_dim=300", "model.hidden_dim=300"],
            max_molecules=args.max_molecules,
            epochs=args.epochs,
        )
        spec.pruner = {"type": "none"}
        t0 = time.perf_counter()
        objective = Objective(spec, spec.base_run_config())
        run_worker(
            spec,
            f"sqlite:///{Path(tmp) / 'study.db'}",
            mlflow_enabled=True,
            worker_index=0,
            progress=False,
            objective=objective,
        )
        wall = time.perf_counter() - t0
    training = objective.member_fit_seconds
    print(
        f"one trial: wall {wall:.1f} s, member training {training:.1f} s ({objective.epochs_trained} epochs)"
    )
    print(f"outside training: {wall - training:.1f} s = {100 * (wall - training) / wall:.1f}% (target <= 5%)")


if __name__ == "__main__":
    main()
