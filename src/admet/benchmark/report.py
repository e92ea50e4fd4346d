"""Rendering of a benchmark run: :class:`BenchmarkResult` (the finished cells and what
produced them) writes ``table.md``, ``table.json`` and ``figure.png``.

Why here: the presentation of the statistics in :mod:`.stats`, apart from computing them
and from running the cells.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from admet.benchmark.cells import table_order
from admet.benchmark.stats import aggregate, all_paired, head_to_head, mean_sd, paired_differences

__all__ = ["BenchmarkResult"]


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
        for (variant, endpoint), cells in sorted(groups.items(), key=lambda kv: table_order(*kv[0])):

            def avg(key: str, cells: list[dict[str, Any]] = cells) -> str:
                return _fmt(mean_sd([c.get(key) for c in cells])[0])

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
        endpoints = sorted({r["endpoint"] for r in summary}, key=lambda e: table_order("", e)[1:])
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
