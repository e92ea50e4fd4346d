"""Time to quality of two HPO services: the best validation value found so far against wall
clock, our Optuna study beside a ``chemprop hpopt`` run.

Why two axes: each service optimises its own objective (our study the cross-validated macro
MAE in original units, Chemprop's hpopt its validation loss, MSE on standardised targets), so
the curves share the time axis only; the figure says so on each value axis. The series are
written as JSON beside the figure, so the plot can be regenerated and checked.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from admet.benchmark.chemprop_hpopt import best_so_far

__all__ = ["optuna_series", "plot", "write"]


def optuna_series(study: Any) -> dict[str, Any]:
    """Best COMPLETE value so far (minutes since the study's first trial started) at each
    finished trial of a single-objective, minimised Optuna study; pruned trials count as
    finished work but set no value."""
    import optuna

    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_start is not None]
    if not trials:
        return {"points": [], "trials_finished": 0, "wall_minutes": 0.0}
    start = min(t.datetime_start for t in trials)
    done = sorted(
        (t for t in trials if t.state.is_finished() and t.datetime_complete is not None),
        key=lambda t: t.datetime_complete,
    )
    points, best = [], math.inf
    for t in done:
        if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None:
            best = min(best, float(t.value))
        if math.isfinite(best):
            points.append(((t.datetime_complete - start).total_seconds() / 60, best))
    end = max((t.datetime_complete for t in done), default=start)
    return {
        "points": points,
        "trials_finished": len(done),
        "wall_minutes": (end - start).total_seconds() / 60,
    }


def hpopt_series(record: dict[str, Any]) -> dict[str, Any]:
    """The same series from a :func:`~admet.benchmark.chemprop_hpopt.run_hpopt` record."""
    points = [(s / 60, v) for s, v in best_so_far(record["trials"], record["started_at"])]
    return {
        "points": points,
        "trials_finished": record["trials_finished"],
        "wall_minutes": record["wall_seconds"] / 60,
    }


def write(ours: dict[str, Any], peer: dict[str, Any], out: Path, labels: dict[str, str]) -> Path:
    """``out``.json (both series and their labels) and ``out``.png."""
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {"ours": ours, "chemprop_hpopt": peer, "labels": labels}
    out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    return plot(data, out.with_suffix(".png"))


def plot(data: dict[str, Any], path: Path) -> Path:
    """Step curves of both series on one time axis, each on its own value axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, left = plt.subplots(figsize=(7, 4))
    right = left.twinx()
    for ax, key, colour in ((left, "ours", "tab:blue"), (right, "chemprop_hpopt", "tab:orange")):
        series = data[key]
        xs = [p[0] for p in series["points"]]
        ys = [p[1] for p in series["points"]]
        if xs:
            xs.append(series["wall_minutes"])
            ys.append(ys[-1])
        label = f"{data['labels'][key]} ({series['trials_finished']} trials)"
        ax.step(xs, ys, where="post", color=colour, label=label, marker="o", markersize=3)
        ax.set_ylabel(data["labels"][f"{key}_axis"], color=colour)
        ax.tick_params(axis="y", colors=colour)
    left.set_xlabel("wall clock since the first trial started (min)")
    handles = [h for ax in (left, right) for h in ax.get_legend_handles_labels()[0]]
    left.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper right")
    left.set_title("Best validation value so far (lower is better; each on its own objective)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
