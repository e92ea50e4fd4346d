"""Curriculum phases and their quality proportions: defaults and validation.

A curriculum over Q quality tiers (best first) runs through ``phases_for(Q)``: two phases
for one tier, three for two, ``warmup -> expand -> robust -> polish`` for three or more.
Each phase gives every tier a share of the draws; :class:`CurriculumPhaseConfig` checks
that the shares are complete, non-negative, sum to 1 and keep the best tier above a floor.
Pure Python: the config loader validates curricula without importing torch.

Example:
    >>> CurriculumPhaseConfig().resolve(["high", "medium"])["warmup"]
    [0.85, 0.15]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ALL_PHASES",
    "DEFAULT_PHASE_PROPORTIONS",
    "CurriculumPhaseConfig",
    "phases_for",
]

ALL_PHASES: tuple[str, ...] = ("warmup", "expand", "robust", "polish")
DEFAULT_PHASE_PROPORTIONS: dict[int, dict[str, list[float]]] = {
    1: {"warmup": [1.0], "polish": [1.0]},
    2: {"warmup": [0.85, 0.15], "expand": [0.65, 0.35], "polish": [0.75, 0.25]},
    3: {
        "warmup": [0.80, 0.15, 0.05],
        "expand": [0.60, 0.30, 0.10],
        "robust": [0.50, 0.35, 0.15],
        "polish": [0.70, 0.20, 0.10],
    },
}
SUM_TOLERANCE = 1e-6


def phases_for(n_qualities: int) -> tuple[str, ...]:
    """The phase sequence for a number of quality tiers (1: 2 phases, 2: 3, 3+: 4)."""
    if n_qualities < 1:
        raise ValueError("a curriculum needs at least one quality")
    if n_qualities == 1:
        return ("warmup", "polish")
    if n_qualities == 2:
        return ("warmup", "expand", "polish")
    return ALL_PHASES


@dataclass
class CurriculumPhaseConfig:
    """Target proportions per phase (one value per quality, best first) and the floor on
    the best quality.

    Attributes:
        phase_proportions: phase name -> proportions; None means the defaults for the
            number of qualities (defined for 1, 2 and 3 qualities).
        min_high_quality_proportion: every phase must give the top quality at least this.
    """

    phase_proportions: dict[str, list[float]] | None = None
    min_high_quality_proportion: float = 0.25

    def resolve(self, qualities: Sequence[str]) -> dict[str, list[float]]:
        """Validated proportions for every phase of ``qualities``.

        Raises:
            ValueError: a phase is missing or unknown, or its proportions have the wrong
                length, are negative, do not sum to 1 (within 1e-6), or give the top
                quality less than ``min_high_quality_proportion``.
        """
        n = len(qualities)
        phases = phases_for(n)
        given = self.phase_proportions
        if given is None:
            if n not in DEFAULT_PHASE_PROPORTIONS:
                raise ValueError(
                    f"no default phase proportions for {n} qualities; set phase_proportions "
                    f"for phases {list(phases)}"
                )
            given = DEFAULT_PHASE_PROPORTIONS[n]
        unknown = sorted(set(given) - set(phases))
        if unknown:
            raise ValueError(
                f"phase_proportions: unknown phase(s) {unknown} for {n} qualities; expected {list(phases)}"
            )
        missing = [p for p in phases if p not in given]
        if missing:
            raise ValueError(f"phase_proportions: missing phase(s) {missing}")
        floor = self.min_high_quality_proportion
        if not 0.0 <= floor <= 1.0:
            raise ValueError(f"min_high_quality_proportion must be in [0, 1], got {floor}")
        resolved = {}
        for phase in phases:
            props = [float(x) for x in given[phase]]
            where = f"phase_proportions.{phase}"
            if len(props) != n:
                raise ValueError(f"{where}: {len(props)} value(s) for {n} qualities {list(qualities)}")
            if any(not math.isfinite(x) or x < 0 for x in props):
                raise ValueError(f"{where}: proportions must be non-negative numbers, got {props}")
            total = sum(props)
            if abs(total - 1.0) > SUM_TOLERANCE:
                raise ValueError(f"{where}: proportions must sum to 1, got {props} (sum {total:.6g})")
            if props[0] < floor - SUM_TOLERANCE:
                raise ValueError(
                    f"{where}: top quality {qualities[0]!r} gets {props[0]:.6g}, below "
                    f"min_high_quality_proportion {floor}"
                )
            resolved[phase] = props
        return resolved
