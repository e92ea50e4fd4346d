"""``python -m admet.benchmark fang2023``: our ensemble vs the paper's table on the test splits."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

from admet.errors import cli_errors
from admet.paths import project_root

DEFAULT_CONFIG = project_root() / "configs" / "0-experiment" / "ensemble.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m admet.benchmark", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    fang = sub.add_parser("fang2023", help="train and score on the fang2023 test splits")
    fang.add_argument(
        "--config",
        default=str(DEFAULT_CONFIG),
        help="ensemble config YAML, or a model folder (hpo refit, model train) holding one",
    )
    fang.add_argument("overrides", nargs="*", metavar="key=value")
    fang.add_argument(
        "--protocol",
        default="strict",
        choices=["strict", "imputation"],
        help="strict: drop E's test molecules before scoring E (default); "
        "imputation: one model for all endpoints (optimistic)",
    )
    fang.add_argument(
        "--variants",
        default="joint",
        help="comma-separated: joint (joint sampling), baseline (plain shuffle), chemprop (Chemprop's "
        "own CLI, its defaults, same models and epochs), chemprop-hpopt (Chemprop's CLI with the best "
        "config of a budgeted 'chemprop hpopt' on the training table; needs pip install -e '.[peers]'), "
        "chemprop-tuned (Chemprop's CLI with the config's hyperparameters where it can express them)",
    )
    fang.add_argument(
        "--hpopt-minutes",
        type=float,
        default=60.0,
        help="chemprop-hpopt: wall-clock budget of its 'chemprop hpopt' run (default 60, the study's)",
    )
    fang.add_argument(
        "--hpopt-search",
        default=None,
        help="chemprop-hpopt: comma-separated --search-parameter-keywords for chemprop hpopt "
        "(default: basic,learning_rate,aggregation,aggregation_norm,batch_size)",
    )
    fang.add_argument(
        "--hpopt-epochs",
        type=int,
        default=15,
        help="chemprop-hpopt: epochs per hpopt trial (default 15, the study's)",
    )
    fang.add_argument("--seeds", type=int, default=1, help="repeat every cell with this many seeds")
    fang.add_argument(
        "--seed-offset",
        type=int,
        default=0,
        help="number the seeds from here (split one table's seeds between processes or machines)",
    )
    fang.add_argument(
        "--report",
        action="store_true",
        help="train nothing: rewrite table.md, table.json and figure.png from the run's finished cells",
    )
    fang.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        help="stop cleanly after the cell in progress once this much time is spent",
    )
    fang.add_argument("--endpoints", default=None, help="comma-separated subset of endpoints")
    fang.add_argument("--processed", default=None, help="processed fang2023 folder")
    fang.add_argument("--raw", default=None, help="raw fang2023 folder")
    fang.add_argument("--out", default=None, help="output folder (default results/fang2023/<run>)")
    fang.add_argument("--run", default=None, help="run name; the same name resumes, skipping finished cells")
    fang.add_argument("--quiet", action="store_true")
    return parser


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=UserWarning)
    from admet.benchmark.fang2023 import run_benchmark

    result, out = run_benchmark(
        args.config,
        args.overrides,
        protocol=args.protocol,
        variants=[v.strip() for v in args.variants.split(",") if v.strip()],
        processed=args.processed,
        raw=args.raw,
        out=args.out,
        run_name=args.run,
        endpoints=None if not args.endpoints else args.endpoints.split(","),
        progress=not args.quiet,
        seeds=args.seeds,
        budget_minutes=args.budget_minutes,
        seed_offset=args.seed_offset,
        report_only=args.report,
        hpopt_minutes=args.hpopt_minutes,
        hpopt_epochs=args.hpopt_epochs,
        hpopt_search=None if not args.hpopt_search else args.hpopt_search.split(","),
    )
    print(result.to_markdown())
    print(f"wrote {out / 'table.md'}, {out / 'table.json'} and {out / 'figure.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
