"""What each molecule-feature set (``data.molecule_features``) costs per 1,000 molecules,
cold and cached, next to the molecular graphs every model needs, measured in one run.

Cold: a fresh :class:`~admet.data.MoleculeFeatures` with an empty cache folder computes
the set for every molecule and writes its cache file. Cached (disk): a new object in the
same process reads that file, as a new trial or a refit does. Cached (memory): the same
object asked again, as each ensemble member's folds are. The graphs (Chemprop's
featurizer, :class:`~admet.data.FeaturizationCache`) are measured the same way, so each
set's cold cost also reads as a ratio to the graphs'. Issue 28's target concerns a cell's
wall time (cached features add at most 10%): the cell's own ``seconds`` say that; this
script says where the time goes.

    python benchmarks/molecule_features_cost.py [--n 1000] [--sets rdkit_2d,morgan_count,minimol]
        [--json benchmarks/results/molecule_features_cost.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from admet.data import FeaturizationCache
from admet.data.fang2023 import ensure_prepared
from admet.data.molecule_features import MoleculeFeatures

DEFAULT_SETS = ("rdkit_2d", "morgan_binary", "morgan_count", "v1_rdkit_2d_normalized", "minimol")


def _seconds(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure_graphs(smiles: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeaturizationCache(cache_dir=tmp)
        cold = _seconds(lambda: cache.graphs(smiles))
        memory = _seconds(lambda: cache.graphs(smiles))
        disk = _seconds(lambda: FeaturizationCache(cache_dir=tmp).graphs(smiles))
    return {"cold": cold, "disk": disk, "memory": memory}


def measure_set(name: str, smiles: list[str]) -> dict[str, float | int]:
    with tempfile.TemporaryDirectory() as tmp:
        features = MoleculeFeatures([name], cache_dir=tmp)
        width = 0

        def cold_run() -> None:
            nonlocal width
            width = features.block(smiles, where="benchmark").shape[1]

        cold = _seconds(cold_run)
        memory = _seconds(lambda: features.block(smiles, where="benchmark"))
        disk = _seconds(lambda: MoleculeFeatures([name], cache_dir=tmp).block(smiles, where="benchmark"))
    return {"cold": cold, "disk": disk, "memory": memory, "width": width}


def render(data: dict) -> str:
    n = data["molecules"]
    per_k = 1000 / n
    graphs = data["graphs"]
    lines = [
        f"{n} molecules of the fang2023 training table; {data['machine']}",
        "",
        "| features | width | cold s / 1,000 mol | cached, disk s / 1,000 | cached, memory s / 1,000 "
        "| cold vs graphs |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| graphs (every model) | - | {graphs['cold'] * per_k:.2f} | {graphs['disk'] * per_k:.3f} | "
        f"{graphs['memory'] * per_k:.4f} | 1.00x |",
    ]
    for name, row in data["sets"].items():
        if "error" in row:
            lines.append(f"| {name} | - | {row['error']} | | | |")
            continue
        lines.append(
            f"| {name} | {row['width']} | {row['cold'] * per_k:.2f} | {row['disk'] * per_k:.3f} | "
            f"{row['memory'] * per_k:.4f} | {row['cold'] / graphs['cold']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processed", default=None, help="processed fang2023 folder")
    parser.add_argument("--n", type=int, default=1000, help="molecules (the first N distinct SMILES)")
    parser.add_argument("--sets", default=",".join(DEFAULT_SETS), help="comma-separated feature names")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--report", type=Path, help="measure nothing: print the table of this --json file")
    args = parser.parse_args()
    if args.report:
        print(render(json.loads(args.report.read_text())), end="")
        return
    folder = ensure_prepared(args.processed)
    smiles = list(dict.fromkeys(pd.read_csv(folder / "train.csv")["SMILES"]))[: args.n]
    data = {
        "molecules": len(smiles),
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "graphs": measure_graphs(smiles),
        "sets": {},
    }
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        try:
            data["sets"][name] = measure_set(name, smiles)
        except Exception as exc:  # a set whose package is missing is reported, not fatal
            data["sets"][name] = {"error": str(exc).splitlines()[0][:120]}
    if args.json:
        args.json.write_text(json.dumps(data, indent=1) + "\n")
    print(render(data), end="")


if __name__ == "__main__":
    main()
