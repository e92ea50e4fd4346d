"""Training throughput: ChempropModel (packed batches, joint sampling) vs Chemprop's own path.

In one run, on the same fang2023 training molecules, architecture, batch size and epochs:
(a) Chemprop's path as ``chemprop train`` runs it: ``MoleculeDataset`` with cached graphs,
    ``build_dataloader`` + ``collate_batch``, its ``MPNN`` under a Lightning ``Trainer`` with
    ``ModelCheckpoint`` and ``EarlyStopping`` on ``val_loss``;
(b) ``ChempropModel`` with joint sampling (alpha 0.5, quality curriculum on) and all of its
    callbacks (sampler statistics, curriculum, per-task/per-quality validation, checkpoint).
Each (arm, model, batch size) cell runs in a fresh process, so that peak RSS and timings do
not leak between cells; every process loads the same featurised graphs from a disk cache
first (featurisation is not part of either fit).

Printed per cell, in molecules per second: the in-epoch rate (training epochs only) and
the whole-fit rate (set-up, validation, checkpointing included), the ratios (b)/(a), and
peak RSS. The arms alternate ``--repeats`` times per cell (3 by default) and the medians
are printed, with the lowest and highest in-epoch ratio of a pair run back to back: a
2-core machine's timings of a small model vary by tens of percent within minutes, so one
pair decides nothing.
Targets (issue 14): CPU tiny model >= 3x, CPU default model >= 1.2x; GPU >= 3x
at batch 64 and >= 10,000 molecules/s in-epoch at batch 64; whole-fit >= 70% of in-epoch;
peak RSS of (b) <= 1.2x (a).

    python benchmarks/train_throughput.py [--device cpu|cuda] [--epochs 3]
        [--max-molecules 2000] [--batch-sizes 32,128] [--models tiny,default] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

MODELS = {
    # Chemprop's defaults: depth 3, 300/300, one FFN layer, MSE; "tiny" shrinks the widths
    "tiny": {"depth": 3, "message_hidden_dim": 32, "hidden_dim": 32, "num_layers": 1},
    "default": {"depth": 3, "message_hidden_dim": 300, "hidden_dim": 300, "num_layers": 1},
}


def _timer_callback():
    import lightning.pytorch as pl

    class EpochTimer(pl.Callback):
        """Wall time inside training epochs, validation excluded (Lightning runs the
        epoch's validation before the training epoch ends)."""

        def __init__(self) -> None:
            self.seconds = 0.0
            self.epochs = 0
            self._t = 0.0
            self._v = 0.0

        def on_validation_start(self, trainer, pl_module) -> None:
            self._sync(pl_module)
            self._v = time.perf_counter()

        def on_validation_end(self, trainer, pl_module) -> None:
            self._sync(pl_module)
            if not trainer.sanity_checking:
                self.seconds -= time.perf_counter() - self._v

        def _sync(self, module) -> None:
            if module.device.type == "cuda":
                import torch

                torch.cuda.synchronize(module.device)

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self._sync(pl_module)
            self._t = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self._sync(pl_module)
            self.seconds += time.perf_counter() - self._t
            self.epochs += 1

    return EpochTimer()


def _config(args: dict, model: str, batch: int):
    from admet.config import load_config

    arch = MODELS[model]
    return load_config(
        {},
        [
            f"data.train_file={args['train_file']}",
            f"data.max_molecules={args['max_molecules']}",
            f"data.featurization_cache_dir={args['cache_dir']}",
            *(f"model.{k}={v}" for k, v in arch.items()),
            "model.dropout=0.0",
            "optimization.criterion=mse",
            f"optimization.batch_size={batch}",
            f"optimization.max_epochs={args['epochs']}",
            "optimization.warmup_epochs=1",
            f"optimization.patience={args['epochs']}",
            f"optimization.accelerator={args['device']}",
            "joint_sampling.enabled=true",
            "joint_sampling.task_oversampling.alpha=0.5",
            "joint_sampling.curriculum.enabled=true",
            "joint_sampling.log_weight_stats=false",
        ],
    )


def _chemprop_fit(cfg, train, val, timer) -> None:
    """Chemprop's own training path, as ``chemprop train`` builds it."""
    import lightning.pytorch as pl
    from chemprop import nn as cnn
    from chemprop.data import build_dataloader
    from chemprop.models import MPNN
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from admet.data import build_molecule_dataset, default_cache

    cache = default_cache(cfg.data.featurization_cache_dir)
    m, opt = cfg.model, cfg.optimization
    pl.seed_everything(opt.seed, verbose=False)
    tr = build_molecule_dataset(train.smiles, train.Y, cache)
    va = build_molecule_dataset(val.smiles, val.Y, cache)
    scaler = tr.normalize_targets()
    va.normalize_targets(scaler)
    mp_ = cnn.BondMessagePassing(
        d_v=cache.featurizer.atom_fdim,
        d_e=cache.featurizer.bond_fdim,
        d_h=m.message_hidden_dim,
        depth=m.depth,
    )
    ffn = cnn.RegressionFFN(
        n_tasks=train.Y.shape[1],
        input_dim=mp_.output_dim,
        hidden_dim=m.hidden_dim,
        n_layers=m.num_layers,
        output_transform=cnn.UnscaleTransform.from_standard_scaler(scaler),
    )
    model = MPNN(mp_, cnn.MeanAggregation(), ffn, warmup_epochs=opt.warmup_epochs)
    with tempfile.TemporaryDirectory() as ckpt:
        trainer = pl.Trainer(
            max_epochs=opt.max_epochs,
            accelerator="gpu" if opt.accelerator.startswith("cuda") else opt.accelerator,
            devices=1,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[
                ModelCheckpoint(ckpt, "best", "val_loss", mode="min", save_top_k=1),
                EarlyStopping("val_loss", patience=opt.patience, mode="min"),
                timer,
            ],
        )
        trainer.fit(
            model,
            build_dataloader(tr, opt.batch_size, seed=opt.seed),
            build_dataloader(va, opt.batch_size, shuffle=False),
        )


def prepare_cell(args: dict, model: str, batch: int):
    """A cell's config and its training and validation split (Chemprop's 90/10 random),
    with the graphs loaded from the disk cache (featurisation is not part of either fit)."""
    from admet.data import default_cache, holdout_split, load_training_data

    cfg = _config(args, model, batch)
    data = load_training_data(cfg)
    tr, va = holdout_split(data, 10, "random", 0)
    default_cache(cfg.data.featurization_cache_dir).graphs(data.smiles)
    return cfg, data.subset(tr), data.subset(va)


def _cell(args: dict, arm: str, model: str, batch: int, queue) -> None:
    """One measurement in a fresh process; puts a result dict on ``queue``."""
    warnings.filterwarnings("ignore")
    import logging

    logging.disable(logging.WARNING)
    import torch

    torch.set_num_threads(args["threads"])
    from admet.model import ChempropModel

    cfg, train, val = prepare_cell(args, model, batch)
    timer = _timer_callback()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if arm == "chemprop":
        _chemprop_fit(cfg, train, val, timer)
    else:
        ChempropModel(cfg).fit(train, val, callbacks=[timer])
    wall = time.perf_counter() - start
    molecules = len(train) * timer.epochs
    queue.put(
        {
            "arm": arm,
            "model": model,
            "batch": batch,
            "train": len(train),
            "epochs": timer.epochs,
            "in_epoch": molecules / timer.seconds,
            "whole_fit": molecules / wall,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_fit_mb": rss0 / 1024,
        }
    )


def _median(rows: list[dict]) -> dict:
    """Per-key median of the rates; the peak RSS is the largest seen."""
    import statistics

    out = dict(rows[0])
    for key in ("in_epoch", "whole_fit"):
        out[key] = statistics.median(r[key] for r in rows)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rows)
    return out


def render(data: dict) -> str:
    """The results table of a run (its ``--json`` file: every alternation of every cell), as
    the results page shows it: medians of the alternations, molecules/s in-epoch (whole fit)."""
    cells: dict[tuple[str, int], dict[str, list[dict]]] = {}
    for r in data["results"]:
        cells.setdefault((r["model"], r["batch"]), {"chemprop": [], "admet": []})[r["arm"]].append(r)
    out = [
        "| model | batch | (a) Chemprop in-epoch (fit) | (b) ours in-epoch (fit) | ratio in-epoch "
        "| ratio fit | pair ratios in-epoch | (b) fit / in-epoch | peak RSS b/a |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (model, batch), runs in cells.items():
        a, b = _median(runs["chemprop"]), _median(runs["admet"])
        pairs = [y["in_epoch"] / x["in_epoch"] for x, y in zip(runs["chemprop"], runs["admet"], strict=True)]
        out.append(
            f"| {model} | {batch} | {a['in_epoch']:,.0f} ({a['whole_fit']:,.0f}) | "
            f"{b['in_epoch']:,.0f} ({b['whole_fit']:,.0f}) | {b['in_epoch'] / a['in_epoch']:.2f}x | "
            f"{b['whole_fit'] / a['whole_fit']:.2f}x | {min(pairs):.2f}-{max(pairs):.2f}x | "
            f"{b['whole_fit'] / b['in_epoch']:.0%} | {b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x |"
        )
    return "\n".join(out) + "\n"


def run_cell(args: dict, arm: str, model: str, batch: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_cell, args=(args, arm, model, batch, queue))
    proc.start()
    result = queue.get(timeout=1800)
    proc.join(60)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-molecules", type=int, default=2000)
    parser.add_argument("--batch-sizes", default="32,128")
    parser.add_argument("--models", default="tiny,default")
    parser.add_argument("--threads", type=int, default=min(os.cpu_count() or 1, 16))
    parser.add_argument("--repeats", type=int, default=3, help="alternate the arms this often; medians")
    parser.add_argument("--json", type=Path, help="also write the results here (every alternation)")
    parser.add_argument("--report", type=Path, help="measure nothing: print the table of this --json file")
    args = parser.parse_args()
    if args.report:
        print(render(json.loads(args.report.read_text())), end="")
        return

    from admet.data import default_cache
    from admet.data.fang2023 import ensure_prepared

    folder = ensure_prepared()
    cache_dir = Path(tempfile.gettempdir()) / "admet-throughput-cache"
    shared = {
        "train_file": str(folder / "train.csv"),
        "max_molecules": args.max_molecules,
        "cache_dir": str(cache_dir),
        "epochs": args.epochs,
        "device": args.device,
        "threads": args.threads,
    }
    # featurise once, to the disk cache every cell reads
    from admet.data import load_training_data

    data = load_training_data(_config(shared, "tiny", 32))
    default_cache(str(cache_dir)).graphs(data.smiles)
    import torch

    device_name = (
        torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU ({args.threads} threads)"
    )
    print(
        f"device: {device_name}; {len(data)} molecules (90% train), {args.epochs} epochs per fit", flush=True
    )
    header = (
        f"{'model':8} {'batch':>5} | {'(a) chemprop mol/s':>19} {'(b) admet mol/s':>17} | "
        f"{'ratio in-epoch':>14} {'ratio fit':>9} {'pairs in-epoch':>14} | {'(b) fit/in-epoch':>16} | "
        f"{'RSS MB a/b':>12}"
    )
    print(header)
    print("-" * len(header))
    results = []
    for model in args.models.split(","):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            runs: dict[str, list[dict]] = {"chemprop": [], "admet": []}
            for _ in range(args.repeats):
                for arm in runs:
                    runs[arm].append(run_cell(shared, arm, model, batch))
            results += runs["chemprop"] + runs["admet"]
            a, b = _median(runs["chemprop"]), _median(runs["admet"])
            pairs = [
                y["in_epoch"] / x["in_epoch"] for x, y in zip(runs["chemprop"], runs["admet"], strict=True)
            ]
            print(
                f"{model:8} {batch:>5} | {a['in_epoch']:>8.0f} ({a['whole_fit']:>6.0f} fit) "
                f"{b['in_epoch']:>7.0f} ({b['whole_fit']:>6.0f} fit) | "
                f"{b['in_epoch'] / a['in_epoch']:>13.2f}x {b['whole_fit'] / a['whole_fit']:>8.2f}x "
                f"{f'{min(pairs):.2f}-{max(pairs):.2f}x':>14} | "
                f"{b['whole_fit'] / b['in_epoch']:>15.0%} | "
                f"{a['peak_rss_mb']:>5.0f}/{b['peak_rss_mb']:<5.0f} "
                f"({b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x)",
                flush=True,
            )
    if args.json:
        run = {"device": device_name, "epochs": args.epochs, "repeats": args.repeats, "results": results}
        args.json.write_text(json.dumps(run, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
