"""Score ensembles on the fang2023 test splits next to the paper's published table.

Protocols (see the shared README):

``strict`` (default)
    for each endpoint E, an ensemble is trained on the training table minus E's test
    molecules and scored on E's test split; nothing it was scored on was seen in training.
``imputation``
    one ensemble trained on the whole training table scores every test split. Most test
    molecules of one endpoint are training molecules of another, so this is optimistic and
    is labelled so in every output.

Several sampling variants can be compared in one run (``baseline``: plain shuffle,
``joint``: the config's joint sampling). Results go to ``results/fang2023/<run>/table.md``
and ``table.json`` with the paper's MPNN2 (variant 0) and best-in-table Pearson r.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from admet.config import EnsembleConfig, config_to_dict, load_config
from admet.data import fang2023, load_training_data
from admet.errors import ConfigError, DataError
from admet.model import ChempropEnsemble, task_metrics
from admet.paths import home, raw_dataset_dir

__all__ = ["PROTOCOLS", "VARIANTS", "BenchmarkResult", "paper_table", "run_benchmark"]

logger = logging.getLogger(__name__)

PROTOCOLS = ("strict", "imputation")
VARIANTS: dict[str, list[str]] = {
    "baseline": ["joint_sampling.enabled=false"],
    "joint": [],
}
# paper_pearson_r.csv column names -> our endpoint names
PAPER_COLUMNS = {
    "HLM": "HLM",
    "MDR1-MDCK ER": "MDR1_ER",
    "Solubility": "Sol",
    "RLM": "RLM",
    "hPPB": "hPPB",
    "rPPB": "rPPB",
}


def paper_table(raw: Path) -> dict[str, dict[str, Any]]:
    """Per endpoint: the paper's MPNN2 (variant 0) Pearson r and the best r in its table."""
    path = raw / "paper_pearson_r.csv"
    if not path.is_file():
        raise DataError(f"{path}: the paper's results table is missing")
    frame = pd.read_csv(path)
    frame = frame[frame["row"] != "Compounds"]
    out: dict[str, dict[str, Any]] = {}
    for col, endpoint in PAPER_COLUMNS.items():
        values = pd.to_numeric(frame[col], errors="coerce")
        mpnn2 = frame[(frame["row"] == "R_MPNN2") & (frame["variant"] == 0)][col]
        best = int(values.idxmax())
        best_name = str(frame.loc[best, "row"]).removeprefix("R_")
        out[endpoint] = {
            "mpnn2_r": float(mpnn2.iloc[0]) if len(mpnn2) else None,
            "best_r": float(values.max()),
            "best_model": f"{best_name} (variant {frame.loc[best, 'variant']})",
        }
    return out


@dataclass
class BenchmarkResult:
    """Rows of (variant, endpoint) scores plus what produced them."""

    protocol: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0

    def to_markdown(self) -> str:
        label = "per-endpoint strict" if self.protocol == "strict" else "IMPUTATION (optimistic)"
        lines = [
            f"# fang2023 benchmark: {label}",
            "",
            f"Protocol: {label}. Wall time: {self.wall_seconds:.0f} s.",
        ]
        if self.protocol == "imputation":
            lines.append(
                "**Optimistic**: test molecules of one endpoint were training molecules "
                "of others; not comparable with the paper's single-task models."
            )
        lines += [
            "",
            "| variant | endpoint | n test | our Pearson r | our MAE | paper MPNN2 r | best r in paper |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in self.rows:
            lines.append(
                f"| {r['variant']} | {r['endpoint']} | {r['n']} | {r['pearson_r']:.3f} | "
                f"{r['mae']:.3f} | {_fmt(r['paper_mpnn2_r'])} | {r['paper_best_r']:.3f} "
                f"({r['paper_best_model']}) |"
            )
        for variant in dict.fromkeys(r["variant"] for r in self.rows):
            sub = [r for r in self.rows if r["variant"] == variant]
            lines.append(
                f"| {variant} | **mean** | | {np.mean([r['pearson_r'] for r in sub]):.3f} | "
                f"{np.mean([r['mae'] for r in sub]):.3f} | "
                f"{np.mean([r['paper_mpnn2_r'] for r in sub if r['paper_mpnn2_r'] is not None]):.3f} | |"
            )
        return "\n".join(lines) + "\n"


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def run_benchmark(
    config: str | Path,
    overrides: Sequence[str] = (),
    protocol: str = "strict",
    variants: Sequence[str] = ("joint",),
    processed: str | Path | None = None,
    raw: str | Path | None = None,
    out: str | Path | None = None,
    run_name: str | None = None,
    endpoints: Sequence[str] | None = None,
    progress: bool = True,
) -> tuple[BenchmarkResult, Path]:
    """Train and score; returns the result and the output folder."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variant(s) {unknown}; valid: {', '.join(VARIANTS)}")
    endpoints = list(endpoints or fang2023.ENDPOINTS)
    bad = [e for e in endpoints if e not in fang2023.ENDPOINTS]
    if bad:
        raise ConfigError(f"unknown endpoint(s) {bad}; valid: {', '.join(fang2023.ENDPOINTS)}")
    raw_dir = raw_dataset_dir("fang2023", raw)
    folder = fang2023.ensure_prepared(processed, raw_dir)
    paper = paper_table(raw_dir)
    start = time.perf_counter()
    base_overrides = [f"data.train_file={folder / 'train.csv'}", *overrides]
    result = BenchmarkResult(protocol=protocol)
    exclusions = pd.read_csv(folder / "strict_exclusions.csv")
    for variant in variants:
        cfg = load_config(config, [*base_overrides, *VARIANTS[variant]])
        if not isinstance(cfg, EnsembleConfig):
            raise ConfigError(f"{config}: the benchmark needs an ensemble config (an 'ensemble' section)")
        result.config[variant] = config_to_dict(cfg)
        data = load_training_data(cfg)
        shared: ChempropEnsemble | None = None
        for endpoint in endpoints:
            test = pd.read_csv(folder / f"test_{endpoint}.csv")
            if protocol == "strict":
                drop = set(exclusions.loc[exclusions["Endpoint"] == endpoint, "SMILES"])
                keep = np.array([s not in drop for s in data.smiles])
                if progress:
                    print(
                        f"[{variant}] {endpoint}: training without its {len(drop)} test molecules", flush=True
                    )
                model = ChempropEnsemble(cfg).fit(data.subset(np.flatnonzero(keep)), progress=progress)
            else:
                if shared is None:
                    shared = ChempropEnsemble(cfg).fit(data, progress=progress)
                model = shared
            j = model.task_names.index(endpoint)
            preds = model.predict(list(test["SMILES"]))[model.task_names[j]].to_numpy()
            m = task_metrics(test[endpoint].to_numpy(dtype=float), preds)
            result.rows.append(
                {
                    "variant": variant,
                    "endpoint": endpoint,
                    "n": m["n"],
                    "pearson_r": m["pearson_r"],
                    "mae": m["mae"],
                    "spearman_rho": m["spearman_rho"],
                    "r2": m["r2"],
                    "paper_mpnn2_r": paper[endpoint]["mpnn2_r"],
                    "paper_best_r": paper[endpoint]["best_r"],
                    "paper_best_model": paper[endpoint]["best_model"],
                    "optimistic": protocol == "imputation",
                }
            )
    result.wall_seconds = time.perf_counter() - start
    run = run_name or time.strftime("%Y%m%d-%H%M%S") + f"-{protocol}"
    out_dir = Path(out) if out else home() / "results" / "fang2023" / run
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "table.md").write_text(result.to_markdown())
    (out_dir / "table.json").write_text(
        json.dumps(
            {
                "protocol": protocol,
                "optimistic": protocol == "imputation",
                "wall_seconds": result.wall_seconds,
                "rows": result.rows,
                "config": result.config,
            },
            indent=1,
            default=float,
        )
    )
    return result, out_dir
