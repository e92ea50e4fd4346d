"""The same small study with and without the pruner (same seed, same budget).

Prints epochs trained, wall time and best value of each; the pruned study should train
fewer epochs for a similar best value.

    python benchmarks/hpo_pruning.py [--trials 12]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _hpo_common import small_spec

from admet.hpo.budget import budget
from admet.hpo.objective import Objective
from admet.hpo.runner import create_or_load_study, run_worker


def run(pruner: str, trials: int, tmp: Path) -> tuple[int, float, float, int]:
    spec = small_spec(trials, ["seed=3"])
    spec.pruner = (
        {"type": pruner, "n_startup_trials": 3, "n_warmup_steps": 2} if pruner != "none" else {"type": "none"}
    )
    url = f"sqlite:///{tmp / f'{pruner}.db'}"
    objective = Objective(spec, spec.base_run_config())
    t0 = time.perf_counter()
    run_worker(spec, url, mlflow_enabled=False, worker_index=0, progress=False, objective=objective)
    wall = time.perf_counter() - t0
    study = create_or_load_study(spec, url)
    return objective.epochs_trained, wall, study.best_value, budget(study)["PRUNED"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = {name: run(name, args.trials, Path(tmp)) for name in ("none", "median")}
    print(f"{'pruner':>8} {'epochs':>7} {'wall s':>8} {'best':>8} {'pruned':>7}")
    for name, (epochs, wall, best, pruned) in rows.items():
        print(f"{name:>8} {epochs:>7} {wall:8.1f} {best:8.4f} {pruned:>7}")
    (e0, w0, b0, _), (e1, w1, b1, _) = rows["none"], rows["median"]
    print(
        f"median pruner: {e1 / e0:.2f}x the epochs, {w1 / w0:.2f}x the wall time, "
        f"best value {b1 - b0:+.4f} vs no pruning"
    )


if __name__ == "__main__":
    main()
