"""Time to quality: our study against ``chemprop hpopt``, best validation value so far
against wall clock, one figure, each service on its own objective.

    python benchmarks/hpo_time_to_quality.py --storage sqlite:///admet-studies.db \
        --study js-cpu-20261126b --hpopt benchmarks/results/fang2023/run/chemprop-hpopt/hpopt.json \
        --out benchmarks/results/hpo_time_to_quality

Writes OUT.json (both series) and OUT.png, and prints each service's trials, wall time and
best value.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import optuna

from admet.benchmark.time_to_quality import hpopt_series, optuna_series, write

LABELS = {
    "ours": "admet study (Optuna TPE, median pruner)",
    "ours_axis": "admet: CV macro MAE (original units)",
    "chemprop_hpopt": "chemprop hpopt (hyperopt, ASHA)",
    "chemprop_hpopt_axis": "chemprop hpopt: val loss (MSE, standardised)",
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--storage", required=True, help="our study's storage URL")
    parser.add_argument("--study", required=True, help="our study's name")
    parser.add_argument("--hpopt", required=True, type=Path, help="the chemprop-hpopt hpopt.json")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/hpo_time_to_quality"))
    args = parser.parse_args()
    study = optuna.load_study(study_name=args.study, storage=args.storage)
    ours = optuna_series(study)
    peer = hpopt_series(json.loads(args.hpopt.read_text()))
    png = write(ours, peer, args.out, LABELS)
    for name, s in (("admet study", ours), ("chemprop hpopt", peer)):
        best = s["points"][-1][1] if s["points"] else float("nan")
        print(f"{name}: {s['trials_finished']} trials in {s['wall_minutes']:.1f} min, best {best:.4f}")
    print(f"wrote {png} and {png.with_suffix('.json')}")


if __name__ == "__main__":
    main()
