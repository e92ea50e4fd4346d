"""``report``: Optuna's visualisations of a study as HTML (plotly, its JavaScript in
``plotly.min.js`` beside the pages, so they open offline) and PNG (matplotlib), plus a
markdown summary."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import TrialState

from admet.errors import AdmetError

__all__ = ["write_report"]

logger = logging.getLogger(__name__)

ALPHA = "joint_sampling.task_oversampling.alpha"
MODE = "joint_sampling.composition_mode"


def _subset(study: optuna.Study, mode: str) -> optuna.Study:
    """An in-memory study holding the completed trials of one composition mode."""
    sub = optuna.create_study(directions=study.directions)
    sub.add_trials([t for t in study.get_trials(states=(TrialState.COMPLETE,)) if t.params.get(MODE) == mode])
    return sub


def write_report(study: optuna.Study, out: str | Path) -> list[Path]:
    """Write plots and ``summary.md`` into ``out``; returns the written files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna import visualization as vis
    from optuna.visualization import matplotlib as mvis

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    if not complete:
        raise AdmetError(f"study {study.study_name!r} has no completed trial to report on")
    target = None if len(study.directions) == 1 else (lambda t: t.values[0])
    target_name = (study.metric_names or ["objective"])[0]
    phase_params = sorted({p for t in complete for p in t.params if p.startswith("curriculum.")})
    written: list[Path] = []
    importances: dict[str, float] = {}

    def save(name: str, plotly_fn: Callable, mpl_fn: Callable, **kw) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = plotly_fn(**kw)
                # plotly.min.js written once beside the pages: they open without internet
                fig.write_html(out_dir / f"{name}.html", include_plotlyjs="directory")
                written.append(out_dir / f"{name}.html")
                ax = mpl_fn(**kw)
                figure = ax.flat[0].figure if hasattr(ax, "flat") else ax.figure
                figure.set_size_inches(9, 6)
                figure.tight_layout()
                figure.savefig(out_dir / f"{name}.png", dpi=90)
                plt.close(figure)
                written.append(out_dir / f"{name}.png")
        except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as exc:
            logger.warning("report: %s skipped (%s)", name, exc)

    kw = {"study": study, "target": target, "target_name": target_name}
    save("history", vis.plot_optimization_history, mvis.plot_optimization_history, **kw)
    if len(complete) >= 2:
        try:
            importances = optuna.importance.get_param_importances(study, target=target)
        except (ValueError, RuntimeError) as exc:
            logger.warning("report: importances skipped (%s)", exc)
        save("importances", vis.plot_param_importances, mvis.plot_param_importances, **kw)
    save("parallel_coordinate", vis.plot_parallel_coordinate, mvis.plot_parallel_coordinate, **kw)
    for mode in sorted({t.params.get(MODE) for t in complete if MODE in t.params}):
        sub = _subset(study, mode)
        if sub.trials and all(ALPHA in t.params for t in sub.trials):
            save(
                f"slice_alpha_{mode}",
                vis.plot_slice,
                mvis.plot_slice,
                study=sub,
                params=[ALPHA],
                target=target,
                target_name=target_name,
            )
    contour_with = [p for p in phase_params if p.endswith(".high") or p.count(".") == 2]
    if contour_with and any(ALPHA in t.params and contour_with[0] in t.params for t in complete):
        save(
            "contour_alpha_phase", vis.plot_contour, mvis.plot_contour, params=[ALPHA, contour_with[0]], **kw
        )

    counts = {s.name: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] += 1
    lines = [f"# Study `{study.study_name}`", "", "| state | trials |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in counts.items() if v]
    best = complete if len(study.directions) > 1 else [study.best_trial]
    lines += ["", f"## Best trial(s) ({target_name})", ""]
    for t in best:
        lines.append(f"- trial {t.number}: values {[round(v, 4) for v in t.values]}")
        lines += [f"  - `{k}` = {v}" for k, v in t.params.items()]
        if "phase_proportions" in t.user_attrs:
            lines.append(f"  - phase proportions: {t.user_attrs['phase_proportions']}")
        if len(study.directions) > 1:
            break
    if importances:
        lines += [
            "",
            "## Parameter importances (Optuna's default evaluator)",
            "",
            "| parameter | importance |",
            "| --- | --- |",
        ]
        lines += [f"| `{k}` | {v:.3f} |" for k, v in importances.items()]
    lines += ["", "## Figures", ""] + [f"- [{p.name}]({p.name})" for p in written]
    summary = out_dir / "summary.md"
    summary.write_text("\n".join(lines) + "\n")
    return [*written, summary]
