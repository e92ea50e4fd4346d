"""The ``admet`` console script: ``admet <area> ...`` runs ``python -m admet.<area> ...``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

AREAS: dict[str, str] = {
    "data": "prepare and fetch benchmark datasets",
    "config": "validate and migrate run configurations",
    "model": "train, predict with and evaluate Chemprop models and ensembles",
    "hpo": "run and inspect Optuna studies",
    "benchmark": "score an ensemble on the fang2023 benchmark",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or args[0] not in AREAS:
        width = max(map(len, AREAS))
        lines = [f"  {name.ljust(width)}  {text}" for name, text in AREAS.items()]
        print("usage: admet <area> [args...]\n\nareas:\n" + "\n".join(lines))
        if args and args[0] not in ("-h", "--help"):
            print(f"error: unknown area {args[0]!r}", file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(f"admet.{args[0]}.__main__")
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
