"""The one place that reaches into ``chemprop hpopt``'s internals: a wall-clock budget and
one trial at a time.

Why: Chemprop 2.3's ``hpopt`` has no option for either. It builds ``ray.tune.TuneConfig``
itself from ``num_samples``, the scheduler and the search algorithm only, so a run is
bounded by a trial count (not by time, which is what an equal-compute comparison fixes), and
Ray starts as many trials at once as the logical CPUs allow, each with its own two-thread
trainer on two real cores. Ray Tune itself has both settings (``TuneConfig.time_budget_s``,
``max_concurrent_trials``); this module runs Chemprop's own CLI in-process with
``chemprop.cli.hpopt.tune`` replaced by a view of ``ray.tune`` whose ``TuneConfig`` adds
them. Everything else (search space, hyperopt, ASHA, data handling, the files it writes) is
Chemprop's. ``tests/benchmark/test_chemprop_hpopt.py`` pins the attributes relied on.

Run as ``python -m admet.benchmark._hpopt_adapter --budget-seconds S -- <chemprop hpopt args>``.
"""

from __future__ import annotations

import argparse
import sys
import types
from collections.abc import Sequence
from typing import Any


def budgeted_tune(tune: types.ModuleType, budget_seconds: float, max_concurrent: int) -> types.ModuleType:
    """A stand-in for the ``ray.tune`` module whose ``TuneConfig`` carries the budget and the
    concurrency limit; every other attribute is ``ray.tune``'s own."""

    def tune_config(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("time_budget_s", budget_seconds)
        kwargs.setdefault("max_concurrent_trials", max_concurrent)
        return tune.TuneConfig(*args, **kwargs)

    view = types.ModuleType("ray.tune (admet budget view)")
    view.__getattr__ = lambda name: getattr(tune, name)  # type: ignore[method-assign]
    view.TuneConfig = tune_config  # type: ignore[attr-defined]
    return view


def install(budget_seconds: float, max_concurrent: int = 1) -> None:
    """Point ``chemprop.cli.hpopt`` at the budgeted ``ray.tune`` view."""
    import chemprop.cli.hpopt as hpopt

    if getattr(hpopt, "NO_RAY", True) or not hasattr(hpopt, "tune"):
        raise ImportError("chemprop.cli.hpopt found no Ray Tune")
    hpopt.tune = budgeted_tune(hpopt.tune, budget_seconds, max_concurrent)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m admet.benchmark._hpopt_adapter")
    parser.add_argument("--budget-seconds", type=float, required=True)
    parser.add_argument("--max-concurrent-trials", type=int, default=1)
    parser.add_argument("chemprop_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    rest = list(args.chemprop_args)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    install(args.budget_seconds, args.max_concurrent_trials)
    from chemprop.cli.main import main as chemprop_main

    sys.argv = ["chemprop", "hpopt", *rest]
    result = chemprop_main()
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
