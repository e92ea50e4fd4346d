"""The same small study with no pruner, the median pruner and Optuna's HyperbandPruner
(multi-fidelity over epochs), same seed and same budget.

Prints epochs trained, wall time, best value and pruned trials of each; a pruner should
train fewer epochs for a similar best value.

    python benchmarks/hpo_pruning.py [--trials 12] [--epochs 6] [--json out.json]
    python benchmarks/hpo_pruning.py --report out.json   # the results page's table, nothing run
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _hpo_common import small_spec

from admet.hpo.budget import budget
from admet.hpo.objective import Objective
from admet.hpo.runner import create_or_load_study, run_worker

PRUNERS = {
    "none": lambda epochs: {"type": "none"},
    "median": lambda epochs: {"type": "median", "n_startup_trials": 3, "n_warmup_steps": 2},
    # successive halving brackets over epochs: a trial is first judged after 1 epoch
    "hyperband": lambda epochs: {
        "type": "hyperband",
        "min_resource": 1,
        "max_resource": epochs,
        "reduction_factor": 3,
    },
}


def run(pruner: str, trials: int, epochs: int, tmp: Path) -> tuple[int, float, float, int]:
    spec = small_spec(trials, ["seed=3"], epochs=epochs)
    spec.pruner = PRUNERS[pruner](epochs)
    url = f"sqlite:///{tmp / f'{pruner}.db'}"
    objective = Objective(spec, spec.base_run_config())
    t0 = time.perf_counter()
    run_worker(spec, url, mlflow_enabled=False, worker_index=0, progress=False, objective=objective)
    wall = time.perf_counter() - t0
    study = create_or_load_study(spec, url)
    return objective.epochs_trained, wall, study.best_value, budget(study)["PRUNED"]


LABELS = {"none": "none", "median": "median", "hyperband": "Hyperband"}


def render(data: dict) -> str:
    """The results table of a run (its ``--json`` file), as the results page shows it."""
    rows = {r["pruner"]: r for r in data["rows"]}
    base = rows.get("none")
    out = [
        "| pruner | member epochs trained | wall | best value (CV macro MAE) | trials pruned |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, r in rows.items():
        epochs, wall = f"{r['epochs_trained']}", f"{r['wall_seconds']:.1f} s"
        if base is not None and name != "none":
            epochs += f" ({r['epochs_trained'] / base['epochs_trained']:.2f}x)"
            wall += f" ({r['wall_seconds'] / base['wall_seconds']:.2f}x)"
        out.append(
            f"| {LABELS.get(name, name)} | {epochs} | {wall} | {r['best_value']:.4f} | "
            f"{r['pruned']} of {data['trials']} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--json", type=Path, help="also write every figure of the table here")
    parser.add_argument("--report", type=Path, help="measure nothing: print the table of this --json file")
    args = parser.parse_args()
    if args.report:
        print(render(json.loads(args.report.read_text())), end="")
        return
    with tempfile.TemporaryDirectory() as tmp:
        rows = {name: run(name, args.trials, args.epochs, Path(tmp)) for name in PRUNERS}
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "trials": args.trials,
                    "epochs": args.epochs,
                    "rows": [
                        {"pruner": n, "epochs_trained": e, "wall_seconds": w, "best_value": b, "pruned": p}
                        for n, (e, w, b, p) in rows.items()
                    ],
                },
                indent=1,
            )
            + "\n"
        )
    print(f"{'pruner':>9} {'epochs':>7} {'wall s':>8} {'best':>8} {'pruned':>7}")
    for name, (epochs, wall, best, pruned) in rows.items():
        print(f"{name:>9} {epochs:>7} {wall:8.1f} {best:8.4f} {pruned:>7}")
    e0, w0, b0, _ = rows["none"]
    for name in ("median", "hyperband"):
        e1, w1, b1, _ = rows[name]
        print(
            f"{name} pruner: {e1 / e0:.2f}x the epochs, {w1 / w0:.2f}x the wall time, "
            f"best value {b1 - b0:+.4f} vs no pruning"
        )


if __name__ == "__main__":
    main()
