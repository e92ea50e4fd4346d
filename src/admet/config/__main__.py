"""``python -m admet.config``: validate and migrate run configs."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

import yaml

from admet.config.legacy import migrate_paths
from admet.config.loader import config_to_dict, load_config
from admet.errors import cli_errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m admet.config", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    val = sub.add_parser("validate", help="load a config (with overrides) and print it resolved")
    val.add_argument("config")
    val.add_argument("overrides", nargs="*", metavar="key=value")
    mig = sub.add_parser("migrate", help="rewrite legacy configs to the joint_sampling schema")
    mig.add_argument("paths", nargs="+", help="files or directories (recursive *.yaml, *.yml)")
    mode = mig.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print a diff, write nothing")
    mode.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if any file needs migrating"
    )
    return parser


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "validate":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeprecationWarning)
            cfg = load_config(args.config, args.overrides)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
        return 0
    write = not (args.dry_run or args.check)
    results = migrate_paths(args.paths, write=write)
    failed = needs = 0
    for r in results:
        for warning in r.warnings:
            print(f"{r.path}: warning: {warning}")
        if r.error:
            failed += 1
            print(f"error: {r.error}", file=sys.stderr)
        elif r.changed:
            needs += 1
            if args.dry_run:
                print(r.diff, end="")
            verb = "migrated" if r.written else "needs migration"
            print(f"{r.path}: {verb} ({'; '.join(r.notes)})")
        else:
            print(f"{r.path}: up to date")
    print(f"{len(results)} file(s): {needs} to migrate, {failed} failed")
    if failed:
        return 2
    return 1 if args.check and needs else 0


if __name__ == "__main__":
    sys.exit(main())
