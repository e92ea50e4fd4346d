"""Operators dispatched per training step: ChempropModel against Chemprop's own path.

A machine-independent overhead figure (issue 29): on a GPU every dispatched operator is at
least one kernel launch, and at small widths a step's time follows the launch count, not
the arithmetic. Each arm trains the same molecules, architecture and batch size as in
``train_throughput.py`` in a fresh process; ``torch.profiler`` records the CPU operators of
one whole training epoch after a warm-up epoch (validation excluded) and the count is
divided by the optimiser steps taken in it. Printed per arm: ``aten`` operators per step
(every dispatch, nested ones included), top-level ``aten`` operators per step (those a
Python call dispatched directly), optimiser steps profiled, and the ratio ours/Chemprop's.
The ``stacked`` arm trains ``--members`` members as one stacked model
(``ensemble.batched``, :mod:`admet.model.stacked`) and its counts are per member per
step: a step there is one step of every member. Counts repeat exactly for the same code,
data and versions, whatever the machine's load.

    python benchmarks/train_dispatch.py [--models tiny,default] [--batch-sizes 32]
        [--max-molecules 1000] [--members 5]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import warnings
from pathlib import Path

from train_throughput import _chemprop_fit, _config, prepare_cell


def _counting_callback():
    import lightning.pytorch as pl
    import torch
    from torch.profiler import ProfilerActivity, profile

    class Count(pl.Callback):
        """Profile the second training epoch, from its start to its validation."""

        def __init__(self) -> None:
            self.prof = None
            self.steps0 = 0
            self.result: dict | None = None
            self.epochs = 0
            self.seconds = 0.0  # train_throughput's timer interface, unused here

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            if trainer.current_epoch == 1 and self.result is None:
                self.steps0 = trainer.global_step
                self.prof = profile(activities=[ProfilerActivity.CPU])
                self.prof.__enter__()

        def _stop(self, trainer) -> None:
            if self.prof is None:
                return
            torch.set_grad_enabled(True)
            self.prof.__exit__(None, None, None)
            events = [e for e in self.prof.events() if e.name.startswith("aten::")]
            top = [e for e in events if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
            steps = trainer.global_step - self.steps0
            self.result = {"steps": steps, "aten": len(events) / steps, "aten_top": len(top) / steps}
            self.prof = None

        def on_validation_start(self, trainer, pl_module) -> None:
            self._stop(trainer)

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self._stop(trainer)

    return Count()


def _events(prof) -> tuple[int, int]:
    events = [e for e in prof.events() if e.name.startswith("aten::")]
    top = [e for e in events if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
    return len(events), len(top)


def _stacked_counts(cfg, train, val, members: int) -> dict:
    """Profile the stacked members' second epoch (after the first validation, up to the
    second); the members share one fold here, so their epochs end together."""
    import copy

    import torch
    from torch.profiler import ProfilerActivity, profile

    from admet.model import ChempropModel, stacked_fit
    from admet.model.ensemble import member_seed
    from admet.model.stacked import StackedAdam

    state: dict = {"validations": 0, "prof": None, "steps": 0, "result": None}
    validate, step = stacked_fit._validate, StackedAdam.step

    def profiled_validate(*args):
        if state["prof"] is not None and state["result"] is None:
            state["prof"].__exit__(None, None, None)
            n_all, n_top = _events(state["prof"])
            k = state["steps"] * members
            state["result"] = {"steps": state["steps"], "aten": n_all / k, "aten_top": n_top / k}
        validate(*args)
        state["validations"] += 1
        if state["validations"] == 1:
            state["steps"] = 0
            state["prof"] = profile(activities=[ProfilerActivity.CPU])
            state["prof"].__enter__()

    def counted_step(self, lrs):
        state["steps"] += 1
        return step(self, lrs)

    stacked_fit._validate = profiled_validate
    StackedAdam.step = counted_step  # type: ignore[method-assign]
    models = []
    for m in range(members):
        c = copy.deepcopy(cfg)
        c.optimization.seed = member_seed(cfg.optimization.seed, m)
        models.append(ChempropModel(c))
    with torch.autograd.set_grad_enabled(True):
        stacked_fit.fit_stacked(models, [(train, val)] * members)
    return state["result"] or {}


def _cell(args: dict, arm: str, model: str, batch: int, queue) -> None:
    warnings.filterwarnings("ignore")
    import logging

    logging.disable(logging.WARNING)
    import torch

    torch.set_num_threads(args["threads"])
    from admet.model import ChempropModel

    cfg, train, val = prepare_cell(args, model, batch)
    counter = _counting_callback()
    if arm == "chemprop":
        _chemprop_fit(cfg, train, val, counter)
    elif arm == "stacked":
        counter.result = _stacked_counts(cfg, train, val, args["members"])
    else:
        ChempropModel(cfg).fit(train, val, callbacks=[counter])
    queue.put({"arm": arm, "model": model, "batch": batch, **(counter.result or {})})


def render(data: dict) -> str:
    """The results table of a run (its ``--json`` file), as the results page shows it."""
    rows, members = data["rows"], data["members"]
    out = [
        "| model | batch | arm | steps profiled | aten ops per member-step | top-level per member-step |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        arm = f"stacked x{members}" if r["arm"] == "stacked" else r["arm"]
        out.append(
            f"| {r['model']} | {r['batch']} | {arm} | {r['steps']} | {r['aten']:.1f} | {r['aten_top']:.1f} |"
        )
    out += [
        "",
        "| model | batch | ours / Chemprop | stacked / ours (per member) |",
        "| --- | --- | --- | --- |",
    ]
    for model, batch in dict.fromkeys((r["model"], r["batch"]) for r in rows):
        arm = {r["arm"]: r for r in rows if (r["model"], r["batch"]) == (model, batch)}
        a, c, st = arm["admet"], arm["chemprop"], arm["stacked"]
        out.append(
            f"| {model} | {batch} | {a['aten'] / c['aten']:.2f}x all, {a['aten_top'] / c['aten_top']:.2f}x "
            f"top-level | {st['aten'] / a['aten']:.2f}x all, "
            f"{st['aten_top'] / a['aten_top']:.2f}x top-level |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="tiny,default")
    parser.add_argument("--batch-sizes", default="32")
    parser.add_argument("--max-molecules", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--members", type=int, default=5, help="members of the stacked arm")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--data", default=None, help="processed fang2023 folder")
    parser.add_argument("--report", type=Path, help="measure nothing: print the table of this --json file")
    args = parser.parse_args()
    if args.report:
        print(render(json.loads(args.report.read_text())), end="")
        return
    from admet.data import default_cache, fang2023, load_training_data

    folder = fang2023.ensure_prepared(args.data)
    with tempfile.TemporaryDirectory() as cache_dir:
        common = {
            "train_file": str(folder / "train.csv"),
            "max_molecules": args.max_molecules,
            "cache_dir": cache_dir,
            "epochs": 3,
            "device": "cpu",
            "threads": args.threads,
            "members": args.members,
        }
        cfg = _config(common, "tiny", 32)
        default_cache(cache_dir).graphs(load_training_data(cfg).smiles)  # featurise once, on disk
        ctx = mp.get_context("spawn")
        rows = []
        for model in args.models.split(","):
            for batch in (int(b) for b in args.batch_sizes.split(",")):
                for arm in ("chemprop", "admet", "stacked"):
                    queue = ctx.Queue()
                    proc = ctx.Process(target=_cell, args=(common, arm, model, batch, queue))
                    proc.start()
                    rows.append(queue.get(timeout=1800))
                    proc.join()
    print(f"{'model':>8} {'batch':>5} {'arm':>9} {'steps':>6} {'aten/step':>10} {'top-level/step':>15}")
    for r in rows:
        print(
            f"{r['model']:>8} {r['batch']:>5} {r['arm']:>9} {r['steps']:>6} "
            f"{r['aten']:>10.1f} {r['aten_top']:>15.1f}"
        )
    for model in args.models.split(","):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            a = next(r for r in rows if (r["model"], r["batch"], r["arm"]) == (model, batch, "admet"))
            c = next(r for r in rows if (r["model"], r["batch"], r["arm"]) == (model, batch, "chemprop"))
            st = next(r for r in rows if (r["model"], r["batch"], r["arm"]) == (model, batch, "stacked"))
            print(
                f"{model} b{batch}: ours/Chemprop {a['aten'] / c['aten']:.2f}x all operators, "
                f"{a['aten_top'] / c['aten_top']:.2f}x top-level; stacked x{args.members} per member / "
                f"ours single {st['aten'] / a['aten']:.2f}x all, "
                f"{st['aten_top'] / a['aten_top']:.2f}x top-level"
            )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": rows,
                    "members": args.members,
                    "max_molecules": args.max_molecules,
                    "threads": args.threads,
                    "torch": __import__("torch").__version__,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
