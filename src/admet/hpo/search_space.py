"""Turning a study's declarative search space into one trial's parameters.

:func:`suggest_params` samples every :class:`~admet.hpo.spec.ParamSpec` through Optuna's
``trial.suggest_*`` (conditions honoured, in dependency order) and returns
``{config key: value}``; curriculum proportions are sampled by stick breaking so that
every sample is a valid curriculum by construction. A condition listing several values
holds when the parameter took any of them; an entry with ``scale_by`` is sampled as a
ratio (Optuna parameter ``<key>/<other key>``) and its config value is the ratio times
the other key's value in this trial (sampled, else the base config's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna

from admet.config.phases import phases_for
from admet.config.schema import EnsembleConfig
from admet.hpo.spec import StudySpec, base_value, condition_holds

__all__ = ["suggest_params", "suggest_phase_proportions"]


def suggest_phase_proportions(
    trial: optuna.Trial, qualities: Sequence[str], phases: Sequence[str], floor: float
) -> dict[str, list[float]]:
    """Curriculum proportions that are valid by construction (stick breaking).

    Per phase, the top quality takes ``curriculum.<phase>.<top>`` in [floor, 1]; each
    lower quality but the last takes ``curriculum.<phase>.<q>_of_rest`` in [0, 1] of
    what is left; the last quality gets the remainder. Every sample lies on the simplex
    and respects the floor; the top share reads directly as a proportion.
    """
    out: dict[str, list[float]] = {}
    for phase in phases:
        top = trial.suggest_float(f"curriculum.{phase}.{qualities[0]}", floor, 1.0)
        props, rest = [top], 1.0 - top
        for q in qualities[1:-1]:
            frac = trial.suggest_float(f"curriculum.{phase}.{q}_of_rest", 0.0, 1.0)
            props.append(rest * frac)
            rest -= rest * frac
        if len(qualities) > 1:
            props.append(rest)
        total = sum(props)
        out[phase] = [p / total for p in props]  # exact normalisation against rounding
    return out


def suggest_params(trial: optuna.Trial, spec: StudySpec, base: EnsembleConfig) -> dict[str, Any]:
    """Sample the search space (conditions honoured) as ``{config key: value}``; a
    ``scale_by`` entry's value is already scaled (its ratio is the trial's parameter)."""
    values: dict[str, Any] = {}
    pending = list(spec.search_space.values())
    progress = True
    while pending and progress:  # resolve conditions and scale_by in dependency order
        progress = False
        for p in list(pending):
            deps = [k for k, _ in p.condition if k in spec.search_space]
            if p.scale_by in spec.search_space:
                deps.append(p.scale_by)
            if any(d not in values and any(q.key == d for q in pending) for d in deps):
                continue
            pending.remove(p)
            progress = True
            if not all(condition_holds(v, values.get(k, base_value(base, k))) for k, v in p.condition):
                continue
            name = f"{p.key}/{p.scale_by}" if p.scale_by else p.key
            if p.type == "float":
                values[p.key] = trial.suggest_float(name, p.low, p.high, log=p.log, step=p.step)
            elif p.type == "int":
                values[p.key] = trial.suggest_int(
                    name, int(p.low), int(p.high), log=p.log, step=int(p.step or 1)
                )
            elif p.type == "categorical":
                values[p.key] = trial.suggest_categorical(name, list(p.choices))
            else:
                cur = base.joint_sampling.curriculum
                values[p.key] = suggest_phase_proportions(
                    trial,
                    list(cur.qualities),
                    phases_for(len(cur.qualities)),
                    cur.min_high_quality_proportion,
                )
            if p.scale_by:
                scaled = values[p.key] * values.get(p.scale_by, base_value(base, p.scale_by))
                values[p.key] = round(scaled) if p.type == "int" else float(scaled)
    return values
