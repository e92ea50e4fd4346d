"""``python -m admet.data``: prepare and fetch benchmark datasets."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from admet.data import fang2023
from admet.errors import cli_errors
from admet.paths import raw_dataset_dir

DATASETS = ("fang2023",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m admet.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="build processed training/test files from raw data")
    prep.add_argument("dataset", choices=DATASETS)
    prep.add_argument("--raw", help="raw dataset folder (default: ADMET_DATA_DIR or ../shared/data)")
    prep.add_argument("--out", help="output folder (default: data/<dataset>)")
    prep.add_argument(
        "--augment",
        action="append",
        default=[],
        choices=["low"],
        help="add an extra quality tier (low: AstraZeneca HLM and solubility)",
    )
    prep.add_argument("--quiet", action="store_true", help="no progress bar")
    fetch = sub.add_parser("fetch", help="download raw files from their public origin")
    fetch.add_argument("dataset", choices=DATASETS)
    fetch.add_argument("--dest", help="destination folder (default: the resolved raw folder)")
    fetch.add_argument("--timeout", type=float, default=10.0, help="seconds per connection")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "prepare":
        out = args.out or fang2023.default_processed_dir()
        summary = fang2023.prepare(raw=args.raw, out=out, augment=args.augment, progress=not args.quiet)
        counts = {e: t["train_labels"] for e, t in summary["tasks"].items()}
        print(f"wrote {out}: {summary['train_rows']} training rows; labels per task {json.dumps(counts)}")
        return 0
    dest = args.dest or raw_dataset_dir(args.dataset)
    fang2023.fetch(dest, timeout=args.timeout, progress=not args.quiet)
    print(f"fetched {args.dataset} into {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
