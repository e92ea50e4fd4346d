"""Score ensembles on the fang2023 test splits next to the paper's published table.

Protocols (see the shared README):

``strict`` (default)
    for each endpoint E, an ensemble is trained on the training table minus E's test
    molecules (matched by structure, InChIKey: :mod:`admet.benchmark.strict`) and scored on
    E's test split; nothing it was scored on was seen in training. Each cell records the
    count and a fingerprint of the molecules it trained on.
``imputation``
    one ensemble trained on the whole training table scores every test split. Most test
    molecules of one endpoint are training molecules of another, so this is optimistic and
    is labelled so in every output.

Variants, side by side in one run: ``baseline`` (the config with a plain shuffle),
``joint`` (the config's joint sampling) and ``chemprop`` (Chemprop's own CLI, ``chemprop
train`` then ``chemprop predict`` as subprocesses, with its default hyperparameters and
the config's number of models and epochs, on exactly the same training table and test
split). Every (variant, endpoint, seed) cell is appended to ``cells.jsonl`` in the run
folder as soon as it finishes; running the same ``--run`` again skips finished cells, so a
long table fills over several sittings, and ``budget_minutes`` stops cleanly after the
cell in progress. ``table.md``, ``table.json`` and ``figure.png`` summarise the cells: mean
and sample standard deviation (ddof 1) over seeds of Pearson r and MAE, the paper's MPNN2
(variant 0) and best-in-table r, and the paired difference joint minus baseline per
endpoint, computed seed by seed before averaging.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from admet.benchmark.strict import strict_rows, structure_keys, training_fingerprint
from admet.config import EnsembleConfig, config_to_dict, load_config
from admet.data import fang2023, load_training_data
from admet.errors import ConfigError, DataError
from admet.model import ChempropEnsemble, ConsoleStatus, add_uncertainty_metrics, task_metrics
from admet.paths import home, project_root, raw_dataset_dir

__all__ = [
    "PAIRS",
    "PROTOCOLS",
    "VARIANTS",
    "BenchmarkResult",
    "aggregate",
    "all_paired",
    "code_version",
    "head_to_head",
    "paired_differences",
    "paper_table",
    "run_benchmark",
]

logger = logging.getLogger(__name__)

PROTOCOLS = ("strict", "imputation")
# admet variants: overrides of the benchmark config; None: Chemprop's own CLI (chemprop: its
# defaults; chemprop-hpopt: the best config of a budgeted `chemprop hpopt` on the training
# table; chemprop-tuned: the benchmark config's hyperparameters where Chemprop can express them)
VARIANTS: dict[str, list[str] | None] = {
    "joint": [],
    "chemprop-hpopt": None,
    "baseline": ["joint_sampling.enabled=false", "joint_sampling.curriculum.enabled=false"],
    "chemprop-tuned": None,
    "chemprop": None,
}
# our study's budget for the published table (fang2023.md section 1): 1 hour, 15 epochs a trial
HPOPT_MINUTES = 60.0
HPOPT_EPOCHS = 15
HPOPT_DIR = "chemprop-hpopt"
TUNED_TOML = "chemprop-tuned.toml"
CELLS_FILE = "cells.jsonl"
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


def _uncertainty(y: np.ndarray, frame: pd.DataFrame, endpoint: str) -> dict[str, float]:
    """The calibrated and the raw-spread uncertainty metrics of one endpoint's predictions."""
    metrics: dict[str, dict[str, float]] = {endpoint: {}, "macro": {}}
    add_uncertainty_metrics(metrics, y[:, None], frame, [endpoint])
    return metrics[endpoint]


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for fewer than two values)."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(arr) == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else math.nan


def _order(variant: str, endpoint: str) -> tuple[int, int, str, str]:
    """Table order: variants as in ``VARIANTS``, endpoints as in the paper; others last."""
    v = list(VARIANTS).index(variant) if variant in VARIANTS else len(VARIANTS)
    e = fang2023.ENDPOINTS.index(endpoint) if endpoint in fang2023.ENDPOINTS else len(fang2023.ENDPOINTS)
    return v, e, variant, endpoint


def aggregate(cells: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (variant, endpoint), in table order whatever order the cells finished in: seeds,
    mean and sd of Pearson r and MAE."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in cells:
        groups.setdefault((c["variant"], c["endpoint"]), []).append(c)
    out = []
    for (variant, endpoint), rows in sorted(groups.items(), key=lambda kv: _order(*kv[0])):
        r_mean, r_sd = _mean_sd([c["pearson_r"] for c in rows])
        mae_mean, mae_sd = _mean_sd([c["mae"] for c in rows])
        out.append(
            {
                "variant": variant,
                "endpoint": endpoint,
                "seeds": sorted(c["seed"] for c in rows),
                "n": rows[0]["n"],
                "pearson_r": r_mean,
                "pearson_r_sd": r_sd,
                "mae": mae_mean,
                "mae_sd": mae_sd,
            }
        )
    return out


def paired_differences(
    cells: Iterable[dict[str, Any]], a: str = "joint", b: str = "baseline"
) -> list[dict[str, Any]]:
    """Per endpoint, ``a`` minus ``b`` seed by seed (only seeds both have), then mean and
    sd of those differences: the spread of a paired comparison, not of two independent
    means. ``helps`` is true only when the mean r gain exceeds its sd."""
    by_key = {(c["variant"], c["endpoint"], c["seed"]): c for c in cells}
    endpoints = sorted({e for (_, e, _) in by_key}, key=lambda e: _order("", e)[1:])
    out = []
    for endpoint in endpoints:
        seeds = sorted(s for (v, e, s) in by_key if v == a and e == endpoint and (b, endpoint, s) in by_key)
        if not seeds:
            continue
        dr = [by_key[(a, endpoint, s)]["pearson_r"] - by_key[(b, endpoint, s)]["pearson_r"] for s in seeds]
        dm = [by_key[(a, endpoint, s)]["mae"] - by_key[(b, endpoint, s)]["mae"] for s in seeds]
        r_mean, r_sd = _mean_sd(dr)
        mae_mean, mae_sd = _mean_sd(dm)
        out.append(
            {
                "endpoint": endpoint,
                "seeds": seeds,
                "delta_r_per_seed": dr,
                "delta_mae_per_seed": dm,
                "delta_r": r_mean,
                "delta_r_sd": r_sd,
                "delta_mae": mae_mean,
                "delta_mae_sd": mae_sd,
                "helps": bool(math.isfinite(r_sd) and r_mean > r_sd),
            }
        )
    return out


def head_to_head(
    summary: Sequence[dict[str, Any]], paper: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The decision the table is read for: each admet variant against every other variant,
    and every variant against the best r anywhere in the paper's table (``paper``), on the
    endpoints both sides have (seed means): the mean Pearson r of each side over those
    endpoints and the endpoints it wins."""
    best = "paper's best"
    by = {(r["variant"], r["endpoint"]): r["pearson_r"] for r in summary}
    variants = sorted({v for v, _ in by}, key=lambda v: _order(v, "")[0])
    by.update({(best, e): p["best_r"] for e, p in (paper or {}).items() if p.get("best_r") is not None})
    out = []
    for a in variants:
        # Chemprop's CLI variants are references: set against the paper only, not contenders
        rivals = [best] if VARIANTS.get(a, []) is None else [*(v for v in variants if v != a), best]
        for b in rivals:
            common = [e for e in fang2023.ENDPOINTS if (a, e) in by and (b, e) in by]
            if common:
                out.append(
                    {
                        "variant": a,
                        "versus": b,
                        "endpoints": common,
                        "mean_r": float(np.mean([by[(a, e)] for e in common])),
                        "versus_mean_r": float(np.mean([by[(b, e)] for e in common])),
                        "won": [e for e in common if by[(a, e)] > by[(b, e)]],
                    }
                )
    return out


# the paired comparisons the table reports, when both sides have cells: our study's config
# against Chemprop's own HPO first (the decision a user takes), then against Chemprop's
# defaults, our tuned settings in Chemprop's training, and plain shuffling
PAIRS = (
    ("joint", "chemprop-hpopt"),
    ("joint", "chemprop"),
    ("joint", "chemprop-tuned"),
    ("joint", "baseline"),
)


def all_paired(cells: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """:func:`paired_differences` for every pair in ``PAIRS`` that has paired cells, keyed
    ``"a - b"``."""
    out = {}
    for a, b in PAIRS:
        diffs = paired_differences(cells, a, b)
        if diffs:
            out[f"{a} - {b}"] = diffs
    return out


@dataclass
class BenchmarkResult:
    """Finished cells (one per variant, endpoint and seed) and what produced them."""

    protocol: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0
    chemprop_version: str = ""
    paper: dict[str, dict[str, Any]] = field(default_factory=dict)
    complete: bool = True
    peers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> list[dict[str, Any]]:
        rows = aggregate(self.rows)
        for r in rows:
            p = self.paper.get(r["endpoint"], {})
            r.update(
                paper_mpnn2_r=p.get("mpnn2_r"),
                paper_best_r=p.get("best_r"),
                paper_best_model=p.get("best_model"),
            )
        return rows

    def to_markdown(self) -> str:
        label = "per-endpoint strict" if self.protocol == "strict" else "IMPUTATION (optimistic)"
        lines = [
            f"# fang2023 benchmark: {label}",
            "",
            f"Protocol: {label}. Chemprop {self.chemprop_version}. {len(self.rows)} cells, "
            f"{sum(c.get('seconds', 0.0) for c in self.rows) / 3600:.1f} h of training and scoring "
            f"in all (this invocation: {self.wall_seconds:.0f} s).",
        ]
        codes = sorted({c["code"] for c in self.rows if c.get("code")})
        if codes:
            lines.append(f"Code of the cells: {', '.join(codes)}.")
        unversioned = [
            f"{c['variant']} {c['endpoint']} seed {c['seed']}" for c in self.rows if not c.get("code")
        ]
        if unversioned:
            lines.append(
                f"{len(unversioned)} cell(s) carry no code version (computed before cells recorded it): "
                f"{', '.join(unversioned)}."
            )
        if not self.complete:
            lines.append("**Incomplete**: cells are missing; run it again (without --report) to fill them.")
        if self.protocol == "imputation":
            lines.append(
                "**Optimistic**: test molecules of one endpoint were training molecules "
                "of others; not comparable with the paper's single-task models."
            )
        lines += [
            "",
            "Pearson r and MAE: mean ± sample sd over seeds.",
            "",
            "| variant | endpoint | seeds | n test | Pearson r | MAE | paper MPNN2 r | best r in paper |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        summary = self.summary()
        for r in summary:
            best = (
                "n/a" if r["paper_best_r"] is None else f"{r['paper_best_r']:.3f} ({r['paper_best_model']})"
            )
            lines.append(
                f"| {r['variant']} | {r['endpoint']} | {len(r['seeds'])} | {r['n']} | "
                f"{_pm(r['pearson_r'], r['pearson_r_sd'])} | {_pm(r['mae'], r['mae_sd'])} | "
                f"{_fmt(r['paper_mpnn2_r'])} | {best} |"
            )
        for variant in dict.fromkeys(r["variant"] for r in summary):
            sub = [r for r in summary if r["variant"] == variant]
            paper = [r["paper_mpnn2_r"] for r in sub if r["paper_mpnn2_r"] is not None]
            lines.append(
                f"| {variant} | **mean of {len(sub)}** | | | {np.mean([r['pearson_r'] for r in sub]):.3f} | "
                f"{np.mean([r['mae'] for r in sub]):.3f} | {np.mean(paper) if paper else math.nan:.3f} | |"
            )
        duels = head_to_head(summary, self.paper)
        if duels:
            lines += [
                "",
                "## Head to head (seed means, on the endpoints both sides have)",
                "",
                "| variant | versus | endpoints | mean r | mean r of the other | endpoints won |",
                "| --- | --- | --- | --- | --- | --- |",
            ]
            for d in duels:
                lines.append(
                    f"| {d['variant']} | {d['versus']} | {len(d['endpoints'])} | {d['mean_r']:.3f} | "
                    f"{d['versus_mean_r']:.3f} | {len(d['won'])} of {len(d['endpoints'])}"
                    f"{' (' + ', '.join(d['won']) + ')' if d['won'] else ''} |"
                )
        lines += self._peer_lines()
        lines += self._uncertainty_lines()
        for pair, paired in all_paired(self.rows).items():
            a, b = pair.split(" - ")
            lines += [
                "",
                f"## {a} minus {b}, paired by seed",
                "",
                "| endpoint | seeds | Δr per seed | Δ Pearson r | ΔMAE per seed | Δ MAE "
                "| helps (Δr > its sd) |",
                "| --- | --- | --- | --- | --- | --- | --- |",
            ]
            for d in paired:
                lines.append(
                    f"| {d['endpoint']} | {len(d['seeds'])} | {_seeds(d['delta_r_per_seed'])} | "
                    f"{_pm(d['delta_r'], d['delta_r_sd'], '+.3f')} | {_seeds(d['delta_mae_per_seed'])} | "
                    f"{_pm(d['delta_mae'], d['delta_mae_sd'], '+.3f')} | {'yes' if d['helps'] else 'no'} |"
                )
        return "\n".join(lines) + "\n"

    def _peer_lines(self) -> list[str]:
        """What Chemprop's own HPO did (its budget, trials and best config) and what the
        ``chemprop-tuned`` cells could not express."""
        lines = []
        hp = self.peers.get("chemprop-hpopt")
        if hp:
            best = ", ".join(f"{k} {_short(v)}" for k, v in hp["best_config"].items())
            reported = sorted({t["results_reported"] for t in hp["trials"]})
            lines += [
                "",
                "## chemprop hpopt (the peer HPO, once on the training table)",
                "",
                f"Chemprop {hp['versions'].get('chemprop')}, Ray {hp['versions'].get('ray')}, hyperopt "
                f"{hp['versions'].get('hyperopt')}: {hp['trials_finished']} trials finished in "
                f"{hp['wall_seconds'] / 60:.1f} min of wall clock (budget {hp['budget_seconds'] / 60:g} min, "
                f"{hp['epochs_per_trial']} epochs a trial, one trial at a time on {hp['rows']} molecules); "
                f"best validation loss {hp['best_val_loss']:.4f} (MSE on standardised targets). "
                f"Results each trial reported to Tune: {', '.join(map(str, reported)) or 'none'}.",
                "",
                f"Best config: {best}.",
            ]
        notes = sorted({n for c in self.rows for n in c.get("not_expressed", [])})
        if notes:
            lines += ["", "## chemprop-tuned: what Chemprop's training could not express", ""]
            lines += [f"- {n}" for n in notes]
        return lines

    def _uncertainty_lines(self) -> list[str]:
        """Calibrated uncertainty of our ensembles against their raw member spread."""
        rows = [c for c in self.rows if "coverage90" in c]
        if not rows:
            return []
        lines = [
            "",
            "## Uncertainty of the ensembles (calibrated on out-of-fold predictions; raw = member spread)",
            "",
            "| variant | endpoint | coverage of 90% interval (raw) | miscalibration area (raw) | "
            "NLL (raw) | Spearman abs error vs sd |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for c in rows:
            groups.setdefault((c["variant"], c["endpoint"]), []).append(c)
        for (variant, endpoint), cells in sorted(groups.items(), key=lambda kv: _order(*kv[0])):

            def avg(key: str, cells: list[dict[str, Any]] = cells) -> str:
                return _fmt(_mean_sd([c.get(key) for c in cells])[0])

            lines.append(
                f"| {variant} | {endpoint} | {avg('coverage90')} ({avg('coverage90_uncalibrated')}) | "
                f"{avg('miscalibration_area')} ({avg('miscalibration_area_uncalibrated')}) | "
                f"{avg('nll')} ({avg('nll_uncalibrated')}) | {avg('spearman_err_std')} |"
            )
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "optimistic": self.protocol == "imputation",
            "complete": self.complete,
            "wall_seconds": self.wall_seconds,
            "chemprop_version": self.chemprop_version,
            "summary": self.summary(),
            "paired": paired_differences(self.rows),
            "paired_all": all_paired(self.rows),
            "peers": self.peers,
            "head_to_head": head_to_head(self.summary(), self.paper),
            "cells": self.rows,
            "config": self.config,
        }

    def write_figure(self, path: Path) -> Path:
        """Per endpoint, Pearson r of each variant with its sd as an error bar, and the best
        r in the paper's table as a line."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        summary = self.summary()
        endpoints = sorted({r["endpoint"] for r in summary}, key=lambda e: _order("", e)[1:])
        variants = list(dict.fromkeys(r["variant"] for r in summary))  # summary is in table order
        width = 0.8 / max(len(variants), 1)
        fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(endpoints), 4))
        for k, variant in enumerate(variants):
            xs, ys, es = [], [], []
            for i, endpoint in enumerate(endpoints):
                r = next((r for r in summary if r["variant"] == variant and r["endpoint"] == endpoint), None)
                if r is not None:
                    xs.append(i - 0.4 + width * (k + 0.5))
                    ys.append(r["pearson_r"])
                    es.append(0.0 if not math.isfinite(r["pearson_r_sd"]) else r["pearson_r_sd"])
            ax.bar(xs, ys, width, yerr=es, capsize=3, label=variant)
        for i, endpoint in enumerate(endpoints):
            best = self.paper.get(endpoint, {}).get("best_r")
            if best is not None:
                ax.hlines(
                    best,
                    i - 0.45,
                    i + 0.45,
                    colors="black",
                    linestyles="--",
                    label="best in paper" if i == 0 else None,
                )
        ax.set_xticks(range(len(endpoints)), endpoints)
        ax.set_ylabel("Pearson r (test)")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8, loc="upper left", ncol=len(variants) + 1)  # above the bars
        ax.set_title(f"fang2023, {self.protocol} protocol")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _seeds(values: Sequence[float]) -> str:
    return ", ".join(f"{v:+.4f}" for v in values)


def _short(value: Any) -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _pm(mean: float, sd: float, spec: str = ".3f") -> str:
    return f"{mean:{spec}}" + ("" if not math.isfinite(sd) else f" ± {sd:.3f}")


def resolve_config(config: str | Path) -> Path:
    """A config YAML, or a model folder (``hpo refit``, ``model train``) holding one."""
    path = Path(config)
    if path.is_dir():
        if not (path / "config.yaml").is_file():
            raise ConfigError(f"{path}: a model folder needs a config.yaml")
        return path / "config.yaml"
    return path


def code_version() -> str:
    """The code that trains a cell: the last commit that changed ``src/`` (results and docs
    committed since do not count), with ``+dirty`` when ``src/`` has uncommitted changes, or
    the installed package's version outside a git checkout. Stored with every cell, so that
    cells computed over several sittings say which code produced them."""
    from importlib.metadata import PackageNotFoundError, version

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=project_root(), capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("log", "-1", "--format=%h", "--", "src")
    if commit:
        return commit + (
            "+dirty" if git("status", "--porcelain", "--untracked-files=no", "--", "src") else ""
        )
    try:
        return version("admet")
    except PackageNotFoundError:
        return "unknown"


def _chemprop_version() -> str:
    import chemprop

    return str(chemprop.__version__)


def _chemprop_cli(bin_dir: Path | None = None) -> list[str]:
    """Chemprop's console script beside this interpreter, else its entry point run by this
    interpreter (``python -m chemprop.cli.main`` would do nothing: the module has no
    ``__main__`` guard, so a package installed without its scripts would "succeed" empty)."""
    exe = (bin_dir or Path(sys.executable).parent) / "chemprop"
    if exe.is_file():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from chemprop.cli.main import main; sys.exit(main())"]


def _run_chemprop(
    cfg: EnsembleConfig,
    train: pd.DataFrame,
    test_smiles: Sequence[str],
    endpoint: str,
    seed: int,
    quiet: bool,
    config_path: Path | None = None,
) -> np.ndarray:
    """``chemprop train`` (its defaults, or the hyperparameters in ``config_path``, a
    ``--config-path`` TOML; our models and epochs either way) on ``train`` (multi-task, NaN =
    missing), then ``chemprop predict`` on the test SMILES; returns ``endpoint``'s
    predictions."""
    targets = list(cfg.data.target_cols)
    with tempfile.TemporaryDirectory(prefix="admet-chemprop-") as tmp:
        work = Path(tmp)
        train.to_csv(work / "train.csv", index=False)
        pd.DataFrame({"SMILES": list(test_smiles)}).to_csv(work / "test.csv", index=False)
        common = {"stdout": subprocess.DEVNULL if quiet else None, "stderr": subprocess.PIPE, "text": True}
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        train_cmd = [
            *_chemprop_cli(),
            "train",
            "--data-path", str(work / "train.csv"),
            "--task-type", "regression",
            "--smiles-columns", "SMILES",
            "--target-columns", *targets,
            "--epochs", str(cfg.optimization.max_epochs),
            "--ensemble-size", str(cfg.ensemble.n_members),
            # Chemprop's default split holds out 10% as a test set; the benchmark's test
            # split is separate, so train/validation only (90/10, random, as chemprop does)
            "--split-sizes", "0.9", "0.1", "0.0",
            "--data-seed", str(seed),
            "--pytorch-seed", str(seed),
            "--num-workers", "0",
            "--save-dir", str(work / "model"),
        ]  # fmt: skip
        if config_path is None:
            # Chemprop's default 2 warmup epochs, clamped as our models clamp it for short runs
            train_cmd += ["--warmup-epochs", str(min(2, cfg.optimization.max_epochs - 1))]
        else:  # the command line overrides the file's data, epochs, split and seeds only
            train_cmd += ["--config-path", str(config_path)]
        done = subprocess.run(train_cmd, env=env, **common)  # type: ignore[call-overload]
        if done.returncode != 0:
            raise DataError(f"chemprop train failed for {endpoint}: {_last_line(done.stderr)}")
        predict_cmd = [
            *_chemprop_cli(),
            "predict",
            "--test-path", str(work / "test.csv"),
            "--smiles-columns", "SMILES",
            "--model-paths", str(work / "model"),
            "--preds-path", str(work / "preds.csv"),
            "--num-workers", "0",
        ]  # fmt: skip
        done = subprocess.run(predict_cmd, env=env, **common)  # type: ignore[call-overload]
        if done.returncode != 0:
            raise DataError(f"chemprop predict failed for {endpoint}: {_last_line(done.stderr)}")
        if not (work / "preds.csv").is_file():
            raise DataError(f"chemprop predict wrote no predictions for {endpoint} (exit 0, no preds.csv)")
        preds = pd.read_csv(work / "preds.csv")
        if endpoint not in preds.columns:
            raise DataError(f"chemprop predict wrote no {endpoint!r} column (columns: {list(preds.columns)})")
        return preds[endpoint].to_numpy(dtype=float)


def _test_split(folder: Path, endpoint: str) -> pd.DataFrame:
    """The benchmark's test split of ``endpoint`` (only the benchmark reads one)."""
    path = folder / f"test_{endpoint}.csv"
    if not path.is_file():
        raise DataError(
            f"{path}: the {endpoint} test split is missing; run python -m admet.data prepare fang2023 "
            f"--out {folder}"
        )
    return pd.read_csv(path)


def _table(data: Any, rows: Sequence[int] | np.ndarray, targets: Sequence[str]) -> pd.DataFrame:
    """The training rows as the CSV Chemprop's CLI reads: SMILES, then one column per task."""
    table = pd.DataFrame(data.Y[rows], columns=list(targets))
    table.insert(0, "SMILES", [data.smiles[r] for r in rows])
    return table


def _hpopt_record(
    out_dir: Path,
    cfg: EnsembleConfig,
    data: Any,
    minutes: float,
    epochs: int,
    search: Sequence[str] | None,
    progress: bool,
) -> dict[str, Any]:
    """The run's one ``chemprop hpopt`` (run now, or read back): on the whole training table,
    which the study also searched on; the benchmark's test splits are separate files."""
    from admet.benchmark.chemprop_hpopt import SEARCH_KEYWORDS, run_hpopt

    folder = out_dir / HPOPT_DIR
    if progress and not (folder / "hpopt.json").is_file():
        print(f"[chemprop-hpopt] chemprop hpopt: {minutes:g} min, {epochs} epochs a trial", flush=True)
    table = _table(data, np.arange(len(data)), cfg.data.target_cols)
    return run_hpopt(
        table,
        list(cfg.data.target_cols),
        folder,
        epochs=epochs,
        budget_minutes=minutes,
        seed=cfg.optimization.seed,
        keywords=list(search or SEARCH_KEYWORDS),
        quiet=not progress,
    )


def _tuned_config(out_dir: Path, cfg: EnsembleConfig) -> tuple[Path, list[str]]:
    """The benchmark config's hyperparameters as a Chemprop ``--config-path`` TOML (its
    head substituted where Chemprop has none) and the one-line list of what Chemprop's
    training cannot express (sampling, curriculum, early-stopping metric, folds)."""
    from admet.model import chemprop_train_config, head_substitution

    text = chemprop_train_config(cfg, substitute_head=True)
    path = out_dir / TUNED_TOML
    path.write_text(text)
    notes = [ln.removeprefix("#   ").strip() for ln in text.splitlines() if ln.startswith("#   ")]
    substitution = head_substitution(cfg)
    notes = [n for n in notes if not n.startswith("substituted")]
    return path, ([substitution] if substitution else []) + notes


def _last_line(text: str | None) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no message"


def _load_cells(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    cells = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            cells.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("%s, line %d: unreadable cell (an interrupted write); it will be rerun", path, i)
    return cells


# Settings that say where or how a cell runs, not what it computes: they may differ
# between the machines and processes that fill one table.
_EXECUTION_KEYS = {
    "data": ("train_file", "featurization_cache_dir"),
    "optimization": ("accelerator",),
    "ensemble": ("n_jobs", "batched"),
    "mlflow": None,
}


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A variant's config without its execution settings (``_EXECUTION_KEYS``)."""
    plain = json.loads(json.dumps(config, default=float))
    for section, keys in _EXECUTION_KEYS.items():
        if keys is None:
            plain.pop(section, None)
        for key in keys or ():
            plain.get(section, {}).pop(key, None)
    return plain


def _check_run(out_dir: Path, protocol: str, configs: dict[str, dict[str, Any]]) -> None:
    """A run folder belongs to one protocol and one config per variant; resuming with another
    is an error. A variant new to the run is added, so a table can grow variant by variant,
    or from cells computed on other machines."""
    path = out_dir / "run.json"
    before = json.loads(path.read_text()) if path.is_file() else {"protocol": protocol, "config": {}}
    if before.get("protocol") != protocol:
        raise ConfigError(f"{out_dir}: this run was started with a different protocol; use a new --run")
    stored = before.setdefault("config", {})
    for variant, config in configs.items():
        if variant in stored and _comparable(stored[variant]) != _comparable(config):
            raise ConfigError(
                f"{out_dir}: this run was started with a different config for variant {variant!r}; "
                "use a new --run to change it"
            )
        stored.setdefault(variant, json.loads(json.dumps(config, default=float)))
    path.write_text(json.dumps(before, indent=1, default=float))


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
    seeds: int = 1,
    budget_minutes: float | None = None,
    seed_offset: int = 0,
    report_only: bool = False,
    hpopt_minutes: float = HPOPT_MINUTES,
    hpopt_epochs: int = HPOPT_EPOCHS,
    hpopt_search: Sequence[str] | None = None,
) -> tuple[BenchmarkResult, Path]:
    """Train and score every (variant, endpoint, seed) cell not yet in the run folder;
    returns the result over all finished cells and the folder.

    Seeds are numbered ``seed_offset .. seed_offset + seeds - 1`` (seed k adds k to the
    config's seeds), so the cells of one table can be computed by several processes or
    machines and their ``cells.jsonl`` lines appended to one run folder. ``report_only``
    trains nothing and rewrites the table, JSON and figure from the finished cells.

    ``chemprop-hpopt`` first runs ``chemprop hpopt`` once per run folder on the whole
    training table (``hpopt_minutes`` of wall clock, ``hpopt_epochs`` a trial; never a test
    split), then trains each cell with its best config; ``chemprop-tuned`` trains each cell
    with the benchmark config's hyperparameters written as a Chemprop config, with the
    substitutions that needs recorded in the cells.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variant(s) {unknown}; valid: {', '.join(VARIANTS)}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if seed_offset < 0:
        raise ConfigError(f"--seed-offset must be >= 0, got {seed_offset}")
    if "chemprop-hpopt" in variants and not report_only:
        from admet.benchmark.chemprop_hpopt import require_hpopt

        require_hpopt()  # before any training: fail at once without Ray Tune
    endpoints = list(endpoints or fang2023.ENDPOINTS)
    bad = [e for e in endpoints if e not in fang2023.ENDPOINTS]
    if bad:
        raise ConfigError(f"unknown endpoint(s) {bad}; valid: {', '.join(fang2023.ENDPOINTS)}")
    config = resolve_config(config)
    raw_dir = raw_dataset_dir("fang2023", raw)
    folder = fang2023.ensure_prepared(processed, raw_dir)
    result = BenchmarkResult(
        protocol=protocol, paper=paper_table(raw_dir), chemprop_version=_chemprop_version()
    )
    start = time.perf_counter()
    base_overrides = [f"data.train_file={folder / 'train.csv'}", *overrides]
    configs: dict[str, EnsembleConfig] = {}
    for variant in variants:
        cfg = load_config(config, [*base_overrides, *(VARIANTS[variant] or [])])
        if not isinstance(cfg, EnsembleConfig):
            raise ConfigError(f"{config}: the benchmark needs an ensemble config (an 'ensemble' section)")
        configs[variant] = cfg
        result.config[variant] = config_to_dict(cfg)
    run = run_name or time.strftime("%Y%m%d-%H%M%S") + f"-{protocol}"
    out_dir = Path(out) if out else home() / "results" / "fang2023" / run
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_run(out_dir, protocol, result.config)
    cells_path = out_dir / CELLS_FILE
    result.rows = _load_cells(cells_path)
    done = {(c["variant"], c["endpoint"], c["seed"]) for c in result.rows}
    exclusions = pd.read_csv(folder / "strict_exclusions.csv")
    data_cache: dict[Any, Any] = {}
    structure_cache: dict[Any, list[str]] = {}
    shared: dict[tuple[str, int], ChempropEnsemble] = {}
    seed_range = range(seed_offset, seed_offset + seeds)
    code = code_version()
    import torch

    torch_version = torch.__version__
    todo = [(v, e, k) for k in seed_range for v in variants for e in endpoints if (v, e, k) not in done]
    result.complete = not (report_only and todo)
    if report_only:
        todo = []
    for i, (variant, endpoint, k) in enumerate(todo):
        if budget_minutes is not None and i > 0 and time.perf_counter() - start >= budget_minutes * 60:
            result.complete = False
            if progress:
                print(
                    f"time budget of {budget_minutes:g} min spent; {len(todo) - i} cell(s) left", flush=True
                )
            break
        base = configs[variant]
        seed = base.optimization.seed + k
        cfg = load_config(base, [f"optimization.seed={seed}", f"ensemble.seed={base.ensemble.seed + k}"])
        key = (tuple(cfg.data.target_cols), cfg.data.max_molecules, seed)
        if key not in data_cache:
            data_cache[key] = load_training_data(cfg)
        data = data_cache[key]
        test = _test_split(folder, endpoint)
        if protocol == "strict":
            if key not in structure_cache:
                structure_cache[key] = structure_keys(data.smiles)
            held_out = [*test["SMILES"], *exclusions.loc[exclusions["Endpoint"] == endpoint, "SMILES"]]
            rows = strict_rows(structure_cache[key], held_out)
        else:
            rows = np.arange(len(data))
        peer: dict[str, Any] = {}
        config_path = None
        if variant == "chemprop-hpopt":
            record = _hpopt_record(
                out_dir, configs[variant], data, hpopt_minutes, hpopt_epochs, hpopt_search, progress=progress
            )
            config_path = out_dir / HPOPT_DIR / "best_config.toml"
            peer = {"hpopt_trials": record["trials_finished"], "hpopt_wall_seconds": record["wall_seconds"]}
        elif variant == "chemprop-tuned":
            config_path, substituted = _tuned_config(out_dir, cfg)
            peer = {"not_expressed": substituted}
        if progress:
            print(f"[{variant} seed {k}] {endpoint}: training on {len(rows)} molecules", flush=True)
        t0 = time.perf_counter()
        uncertainty = {}
        if VARIANTS[variant] is None:
            table = _table(data, rows, cfg.data.target_cols)
            preds = _run_chemprop(
                cfg, table, list(test["SMILES"]), endpoint, seed, quiet=not progress, config_path=config_path
            )
        else:
            # one status line per cell on a terminal, one line per member epoch with --quiet
            status = ConsoleStatus(f"[{variant} seed {k}] {endpoint}", rewrite=None if progress else False)
            if protocol == "strict":
                model = ChempropEnsemble(cfg).fit(data.subset(rows), progress=status)
            else:
                if (variant, k) not in shared:
                    shared[(variant, k)] = ChempropEnsemble(cfg).fit(data, progress=status)
                model = shared[(variant, k)]
            frame = model.predict(list(test["SMILES"]), include_spread=True)
            preds = frame[f"{endpoint}_pred"].to_numpy()
            uncertainty = _uncertainty(test[endpoint].to_numpy(dtype=float), frame, endpoint)
        m = task_metrics(test[endpoint].to_numpy(dtype=float), preds)
        cell = {
            "variant": variant,
            "endpoint": endpoint,
            "seed": k,
            "n": m["n"],
            "pearson_r": m["pearson_r"],
            "mae": m["mae"],
            "spearman_rho": m["spearman_rho"],
            "r2": m["r2"],
            "train_molecules": len(rows),
            "train_fingerprint": training_fingerprint(data.smiles[r] for r in rows),
            "seconds": time.perf_counter() - t0,
            "optimistic": protocol == "imputation",
            "code": code,
            "torch": torch_version,
            **peer,
            **uncertainty,
        }
        with cells_path.open("a") as fh:  # one line per finished cell: the resume point
            fh.write(json.dumps(cell, default=float) + "\n")
        result.rows.append(cell)
    result.wall_seconds = time.perf_counter() - start
    hpopt_json = out_dir / HPOPT_DIR / "hpopt.json"
    if hpopt_json.is_file():
        result.peers["chemprop-hpopt"] = json.loads(hpopt_json.read_text())
    (out_dir / "table.md").write_text(result.to_markdown())
    (out_dir / "table.json").write_text(json.dumps(result.to_json(), indent=1, default=float))
    if result.rows:
        result.write_figure(out_dir / "figure.png")
    return result, out_dir
