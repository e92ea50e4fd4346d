"""Parity plots (predicted vs measured) written as PNG files for MLflow and reports."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["parity_plots"]


def parity_plots(
    Y_true: np.ndarray, Y_pred: np.ndarray, task_names: Sequence[str], out_dir: Path, title: str = ""
) -> list[Path]:
    """One ``parity_<task>.png`` per task with labels; returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from admet.model.metrics import task_metrics

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for j, task in enumerate(task_names):
        mask = np.isfinite(Y_true[:, j]) & np.isfinite(Y_pred[:, j])
        if mask.sum() < 2:
            continue
        t, p = Y_true[mask, j], Y_pred[mask, j]
        m = task_metrics(t, p)
        fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
        ax.scatter(t, p, s=6, alpha=0.5)
        lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
        ax.set_xlabel(f"measured {task}")
        ax.set_ylabel(f"predicted {task}")
        ax.set_title(f"{title}{task}: MAE {m['mae']:.3f}, r {m['pearson_r']:.3f}, n {m['n']}", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"parity_{task}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths
