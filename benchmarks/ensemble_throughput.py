"""Ensemble throughput: one 5-member ensemble fit three ways, side by side in one run.

(a) ``batched``: ``ensemble.batched=true``, the members as one stacked model in one process
    (:mod:`admet.model.stacked`);
(b) ``processes``: today's path, one Lightning fit per member in ``ensemble.n_jobs`` worker
    processes (2 by default, one per core here);
(c) ``chemprop``: Chemprop's CLI, ``chemprop train --ensemble-size 5`` on the same molecules,
    architecture, batch size and epochs (its members share one split; ours have folds).

Every arm runs as its own process tree with the same molecules (the strict HLM table of
fang2023 by default: the training rows minus HLM's test molecules), architecture, batch
size and fixed epochs (patience = epochs, so nobody stops early). Printed per arm:
member-molecules per second over the whole fit (training molecules x epochs x members /
wall seconds), the in-epoch rate (over the seconds in training steps only: validation,
set-up and saving excluded; member processes run ``n_jobs`` at a time; Chemprop's CLI is
timed from outside, so it has none), wall seconds, the peak resident memory of the whole process tree (sampled
every 0.1 s over /proc: the sum over the parent and its member processes), and the
ratios (a)/(b) and (a)/(c). Targets (issue 29, 2-core CPU, batch 32): tiny model (a)/(b)
>= 1.3x, Chemprop's default size (a)/(b) >= 1.0x, peak RSS (a) <= (b).

    python benchmarks/ensemble_throughput.py [--models tiny,default] [--epochs 3]
        [--members 5] [--batch-size 32] [--endpoint HLM] [--max-molecules 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MODELS = {
    "tiny": {"depth": 3, "message_hidden_dim": 32, "hidden_dim": 32, "num_layers": 1},
    "default": {"depth": 3, "message_hidden_dim": 300, "hidden_dim": 300, "num_layers": 1},
}


def _tree_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and all its descendants, in MB (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total / 2**20


def _run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``cmd``; its wall seconds, the peak RSS of its process tree and its stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss_mb(proc.pid))
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate(timeout=7200)
    done.set()
    sampler.join()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{err[-3000:]}")
    return wall, peak[0], out


def _overrides(args: argparse.Namespace, model: str, train_file: Path, cache: Path) -> list[str]:
    return [
        f"data.train_file={train_file}",
        f"data.featurization_cache_dir={cache}",
        *(f"model.{k}={v}" for k, v in MODELS[model].items()),
        "model.dropout=0.0",
        "model.aggregation=mean",
        "optimization.criterion=mse",
        f"optimization.batch_size={args.batch_size}",
        f"optimization.max_epochs={args.epochs}",
        "optimization.warmup_epochs=1",
        f"optimization.patience={args.epochs}",
        "optimization.accelerator=cpu",
        "joint_sampling.enabled=true",
        "joint_sampling.task_oversampling.alpha=0.5",
        "joint_sampling.log_weight_stats=false",
        "mlflow.enabled=false",
    ]


def _member_fit(arm: str, overrides: list[str], members: int, n_jobs: int) -> None:
    """Child process of arms (a) and (b): fit the ensemble, print its figures as JSON."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from admet.data import default_cache, load_training_data
    from admet.model.ensemble import ChempropEnsemble

    extra = (
        ["ensemble.batched=true"]
        if arm == "batched"
        else ["ensemble.batched=false", f"ensemble.n_jobs={n_jobs}"]
    )
    ens = ChempropEnsemble.from_config(
        {"ensemble": {"n_members": members, "split": "random"}}, overrides + extra
    )
    data = load_training_data(ens.config)
    default_cache(ens.config.data.featurization_cache_dir).graphs(data.smiles)  # not part of the fit
    start = time.perf_counter()
    ens.fit(data, calibrate=False)
    seconds = time.perf_counter() - start
    member_molecules = sum((len(data) - len(data) // ens.n_folds) * m.epochs_trained for m in ens.members)
    # in-epoch: the members' seconds in training steps (validation, set-up and saving
    # excluded); the stacked members' shares add up to the stack's, member processes run
    # n_jobs at a time
    steps = sum(m.step_seconds for m in ens.members) / (1 if arm == "batched" else n_jobs)
    print(json.dumps({"fit_seconds": seconds, "member_molecules": member_molecules, "step_seconds": steps}))


def render(data: dict) -> str:
    """The results table of a run (its ``--json`` file), as the results page shows it."""
    rows = data["rows"]
    out = [
        "| model | arm | member-molecules/s | in-epoch | fit s | peak RSS MB | vs processes | "
        "in-epoch vs processes | vs chemprop |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        by = {x["arm"]: x for x in rows if x["model"] == r["model"]}
        vs = [f"{r['rate'] / by[o]['rate']:.2f}x" if o in by else "" for o in ("processes", "chemprop")]
        # older runs (and Chemprop's CLI, timed from outside) have no in-epoch figure
        in_epoch = r.get("in_epoch_rate")
        base = by.get("processes", {}).get("in_epoch_rate")
        vs_in = f"{in_epoch / base:.2f}x" if in_epoch and base else ""
        out.append(
            f"| {r['model']} | {r['arm']} | {r['rate']:.0f} | {f'{in_epoch:.0f}' if in_epoch else '-'} | "
            f"{r['fit_seconds']:.1f} | {r['peak_rss_mb']:.0f} | {vs[0]} | {vs_in} | {vs[1]} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="tiny,default")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-jobs", type=int, default=2, help="member processes of arm (b)")
    parser.add_argument("--endpoint", default="HLM", help="the strict table of this endpoint")
    parser.add_argument("--max-molecules", type=int, default=0, help="first N rows only (0: all)")
    parser.add_argument("--arms", default="batched,processes,chemprop")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help="measure nothing: print the table of this --json file")
    args = parser.parse_args()
    if args.report:
        print(render(json.loads(args.report.read_text())), end="")
        return
    if args._child:
        arm, model, table = args._child
        cache = Path(tempfile.gettempdir()) / "admet-ensemble-throughput-cache"
        _member_fit(arm, _overrides(args, model, Path(table), cache), args.members, args.n_jobs)
        return

    import pandas as pd

    from admet.benchmark.strict import strict_rows, structure_keys
    from admet.data import fang2023

    folder = fang2023.ensure_prepared(None)
    with tempfile.TemporaryDirectory(prefix="admet-ens-tp-") as tmp:
        table = Path(tmp) / "train.csv"
        frame = pd.read_csv(folder / "train.csv")
        test = pd.read_csv(folder / f"test_{args.endpoint}.csv")  # read to leave it out, as the benchmark
        frame = frame.iloc[strict_rows(structure_keys(frame["SMILES"]), test["SMILES"])]
        if args.max_molecules:
            frame = frame.head(args.max_molecules)
        frame.to_csv(table, index=False)
        targets = [c for c in frame.columns if c not in ("SMILES", "Quality", "Source")]
        n = len(frame)
        print(
            f"{args.endpoint} strict table: {n} molecules, {len(targets)} tasks; {args.members} members, "
            f"{args.epochs} epochs, batch {args.batch_size}, {os.cpu_count()} cores",
            flush=True,
        )
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        rows = []
        for model in args.models.split(","):
            for arm in args.arms.split(","):
                if arm == "chemprop":
                    arch = MODELS[model]
                    cmd = [
                        str(Path(sys.executable).parent / "chemprop"),
                        "train",
                        "--data-path",
                        str(table),
                        "--task-type",
                        "regression",
                        "--smiles-columns",
                        "SMILES",
                        "--target-columns",
                        *targets,
                        "--epochs",
                        str(args.epochs),
                        "--patience",
                        str(args.epochs),
                        "--warmup-epochs",
                        str(min(1, args.epochs - 1)),
                        "--ensemble-size",
                        str(args.members),
                        "--batch-size",
                        str(args.batch_size),
                        "--message-hidden-dim",
                        str(arch["message_hidden_dim"]),
                        "--ffn-hidden-dim",
                        str(arch["hidden_dim"]),
                        "--depth",
                        str(arch["depth"]),
                        "--ffn-num-layers",
                        str(arch["num_layers"]),
                        "--aggregation",
                        "mean",
                        "--split-sizes",
                        "0.8",
                        "0.2",
                        "0.0",
                        "--num-workers",
                        "0",
                        "--accelerator",
                        "cpu",
                        "--save-dir",
                        str(Path(tmp) / f"cp-{model}"),
                    ]
                    wall, peak, _ = _run_measured(cmd, env)
                    member_molecules = int(0.8 * n) * args.epochs * args.members
                    fit, in_epoch = wall, None
                else:
                    cmd = [
                        sys.executable,
                        __file__,
                        "--members",
                        str(args.members),
                        "--epochs",
                        str(args.epochs),
                        "--batch-size",
                        str(args.batch_size),
                        "--n-jobs",
                        str(args.n_jobs),
                        "--_child",
                        arm,
                        model,
                        str(table),
                    ]
                    wall, peak, out = _run_measured(cmd, env)
                    result = json.loads(out.strip().splitlines()[-1])
                    fit, member_molecules = result["fit_seconds"], result["member_molecules"]
                    in_epoch = member_molecules / result["step_seconds"] if result["step_seconds"] else None
                row = {
                    "model": model,
                    "arm": arm,
                    "wall_seconds": wall,
                    "fit_seconds": fit,
                    "member_molecules": member_molecules,
                    "rate": member_molecules / fit,
                    "in_epoch_rate": in_epoch,
                    "peak_rss_mb": peak,
                }
                rows.append(row)
                print(
                    f"{model:8} {arm:10} {row['rate']:>9.0f} member-molecules/s "
                    f"({f'{in_epoch:.0f}' if in_epoch else '-'} in-epoch)  fit {fit:>7.1f} s  "
                    f"(process {wall:.1f} s)  peak RSS {peak:>6.0f} MB",
                    flush=True,
                )
        for model in args.models.split(","):
            by = {r["arm"]: r for r in rows if r["model"] == model}
            if "batched" in by and "processes" in by:
                a, b = by["batched"], by["processes"]
                line = (
                    f"{model}: batched/processes {a['rate'] / b['rate']:.2f}x, "
                    f"peak RSS {a['peak_rss_mb'] / b['peak_rss_mb']:.2f}x"
                )
                if "chemprop" in by:
                    line += f"; batched/chemprop {a['rate'] / by['chemprop']['rate']:.2f}x"
                print(line)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {"rows": rows, "molecules": n, "args": vars(args) | {"json": str(args.json)}},
                    indent=1,
                    default=str,
                )
            )


if __name__ == "__main__":
    main()
