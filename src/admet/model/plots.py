"""Parity plots (predicted vs measured) written as PNG files for MLflow and reports."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["parity_grid", "parity_plots"]


def _parity(ax, t: np.ndarray, p: np.ndarray, task: str, title: str) -> None:
    from admet.model.metrics import task_metrics

    m = task_metrics(t, p)
    ax.scatter(t, p, s=6, alpha=0.5)
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
    ax.set_xlabel(f"measured {task}")
    ax.set_ylabel(f"predicted {task}")
    ax.set_title(f"{title}{task}: MAE {m['mae']:.3f}, r {m['pearson_r']:.3f}, n {m['n']}", fontsize=9)


def _labelled(Y_true: np.ndarray, Y_pred: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray] | None:
    mask = np.isfinite(Y_true[:, j]) & np.isfinite(Y_pred[:, j])
    return (Y_true[mask, j], Y_pred[mask, j]) if mask.sum() >= 2 else None


def parity_plots(
    Y_true: np.ndarray, Y_pred: np.ndarray, task_names: Sequence[str], out_dir: Path, title: str = ""
) -> list[Path]:
    """One ``parity_<task>.png`` per task with labels; returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for j, task in enumerate(task_names):
        pair = _labelled(Y_true, Y_pred, j)
        if pair is None:
            continue
        fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
        _parity(ax, *pair, task, title)
        fig.tight_layout()
        path = out_dir / f"parity_{task}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def parity_grid(
    Y_true: np.ndarray, Y_pred: np.ndarray, task_names: Sequence[str], path: Path, title: str = ""
) -> Path:
    """Every task's parity plot in one PNG (a grid of up to three columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(task_names)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), dpi=80, squeeze=False)
    for j, (task, ax) in enumerate(zip(task_names, axes.flat, strict=False)):
        pair = _labelled(Y_true, Y_pred, j)
        if pair is None:
            ax.set_axis_off()
            ax.set_title(f"{task}: fewer than 2 labels", fontsize=9)
            continue
        _parity(ax, *pair, task, title)
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
