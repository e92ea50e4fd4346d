"""Study definitions (``studies/*.yaml``): objectives, budget, sampler, pruner, base run
config and a small declarative search space, validated with errors that name the key.
Sampling the space for a trial is :mod:`admet.hpo.search_space`'s job.

A search-space entry is ``<config key>: {type, ...}`` with ``type`` one of ``float``
(``low``, ``high``, ``log``, ``step``), ``int`` (``low``, ``high``, ``log``, ``step``),
``categorical`` (``choices``) or ``phase_proportions`` (curriculum proportions on the
simplex, see :func:`admet.hpo.search_space.suggest_phase_proportions`); any entry may have a ``condition``
``{other key: value}`` and is then only sampled when that parameter took that value.
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import optuna

from admet.config import load_config, parse_overrides, read_yaml, set_dotted
from admet.config.schema import EnsembleConfig
from admet.errors import ConfigError
from admet.paths import project_root
from admet.tracking import flatten

__all__ = [
    "OBJECTIVES",
    "ParamSpec",
    "StudySpec",
    "available_studies",
    "load_study_spec",
    "studies_dir",
]

OBJECTIVES = ("cv_mae_macro", "sparse_tasks_mae")
PARAM_TYPES = ("float", "int", "categorical", "phase_proportions")
PRUNERS = ("median", "percentile", "hyperband", "none")


@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter of the run config."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    condition: tuple[tuple[str, Any], ...] = ()


@dataclass
class StudySpec:
    """A validated study definition (see ``studies/joint_sampling.yaml``)."""

    name: str
    base_config: str
    search_space: dict[str, ParamSpec]
    objectives: list[str] = field(default_factory=lambda: ["cv_mae_macro"])
    directions: list[str] = field(default_factory=lambda: ["minimize"])
    n_trials: int = 20
    seed: int = 42
    heartbeat_interval: int = 60
    grace_period: int = 180
    max_retry: int = 2
    sampler: dict[str, Any] = field(default_factory=lambda: {"type": "tpe"})
    pruner: dict[str, Any] = field(default_factory=lambda: {"type": "median"})
    config_overrides: list[str] = field(default_factory=list)
    source: str = ""

    def base_run_config(self, extra: Sequence[str] = ()) -> EnsembleConfig:
        """The base run config with the study's fixed overrides (validated)."""
        cfg = load_config(_resolve(self.base_config), [*self.config_overrides, *extra])
        if not isinstance(cfg, EnsembleConfig):
            raise ConfigError(f"{self.base_config}: the study's base config needs an 'ensemble' section")
        return cfg

    def space_record(self) -> dict[str, dict[str, Any]]:
        """The search space as JSON-safe data, stored in the study to detect edits."""
        return {
            key: {
                "type": p.type,
                "low": p.low,
                "high": p.high,
                "log": p.log,
                "step": p.step,
                "choices": list(p.choices),
                "condition": [list(c) for c in p.condition],
            }
            for key, p in sorted(self.search_space.items())
        }

    def make_sampler(self, worker_index: int = 0) -> optuna.samplers.BaseSampler:
        """Optuna 5's TPE sampler, seeded with ``seed + worker_index``."""
        opts = {k: v for k, v in self.sampler.items() if k != "type"}
        return optuna.samplers.TPESampler(seed=self.seed + worker_index, **opts)

    @property
    def prunes(self) -> bool:
        """Whether trials report per-epoch values to a pruner: not with ``type: none``, and
        never in a multi-objective study (Optuna's ``trial.report`` refuses those)."""
        return len(self.objectives) == 1 and self.pruner.get("type", "median") != "none"

    def make_pruner(self) -> optuna.pruners.BasePruner:
        """The configured pruner; a multi-objective study gets Optuna's ``NopPruner``."""
        if not self.prunes:
            return optuna.pruners.NopPruner()
        opts = {k: v for k, v in self.pruner.items() if k != "type"}
        kind = self.pruner.get("type", "median")
        if kind == "median":
            return optuna.pruners.MedianPruner(**opts)
        if kind == "percentile":
            return optuna.pruners.PercentilePruner(**opts)
        if kind == "hyperband":
            return optuna.pruners.HyperbandPruner(**opts)
        return optuna.pruners.NopPruner()


_STUDY_KEYS = {f.name for f in fields(StudySpec)} - {"config_overrides", "source"}
_OVERRIDABLE = ("n_trials", "seed", "heartbeat_interval", "grace_period", "max_retry", "name")


def _resolve(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else project_root() / p


def studies_dir() -> Path:
    return project_root() / "studies"


def available_studies() -> list[str]:
    return sorted(p.stem for p in studies_dir().glob("*.yaml"))


def _find(study: str) -> Path:
    p = Path(study)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"{p}: study file not found")
        return p
    candidate = studies_dir() / f"{study}.yaml"
    if not candidate.is_file():
        raise ConfigError(
            f"unknown study {study!r}; available: {', '.join(available_studies()) or 'none'} "
            f"(in {studies_dir()}), or pass a path to a YAML file"
        )
    return candidate


def _param(key: str, raw: Any, where: str) -> ParamSpec:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: search_space.{key} must be a mapping with a 'type'")
    known = {"type", "low", "high", "log", "step", "choices", "condition"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: search_space.{key}: unknown field(s) {unknown}")
    kind = raw.get("type")
    if kind not in PARAM_TYPES:
        raise ConfigError(f"{where}: search_space.{key}: type {kind!r} is not one of {list(PARAM_TYPES)}")
    cond = raw.get("condition") or {}
    if not isinstance(cond, Mapping):
        raise ConfigError(f"{where}: search_space.{key}: condition must map a parameter to a value")
    spec = ParamSpec(key=key, type=kind, condition=tuple(cond.items()))
    if kind in ("float", "int"):
        low, high = raw.get("low"), raw.get("high")
        if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
            raise ConfigError(f"{where}: search_space.{key}: {kind} needs numeric 'low' and 'high'")
        if not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise ConfigError(f"{where}: search_space.{key}: needs low <= high, got [{low}, {high}]")
        log = bool(raw.get("log", False))
        if log and low <= 0:
            raise ConfigError(f"{where}: search_space.{key}: log scale needs low > 0, got {low}")
        if kind == "int" and (int(low) != low or int(high) != high):
            raise ConfigError(f"{where}: search_space.{key}: int bounds must be integers")
        step = raw.get("step")
        if step is not None:
            # Optuna accepts these only at the first suggest; refuse them at load instead
            if log:
                raise ConfigError(f"{where}: search_space.{key}: 'step' cannot be combined with 'log'")
            if not isinstance(step, (int, float)) or not math.isfinite(step) or step <= 0:
                raise ConfigError(
                    f"{where}: search_space.{key}: step must be a positive number, got {step!r}"
                )
            if kind == "int" and int(step) != step:
                raise ConfigError(
                    f"{where}: search_space.{key}: an int parameter needs an integer step, got {step}"
                )
        spec = ParamSpec(
            key=key, type=kind, low=low, high=high, log=log, step=raw.get("step"), condition=spec.condition
        )
    elif kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: search_space.{key}: categorical needs a non-empty 'choices' list")
        spec = ParamSpec(key=key, type=kind, choices=tuple(choices), condition=spec.condition)
    return spec


def load_study_spec(study: str, overrides: Sequence[str] = ()) -> StudySpec:
    """Load and validate a study by name (``studies/<name>.yaml``) or path.

    ``overrides``: ``key=value``; top-level study keys (``n_trials``, ``seed``,
    ``heartbeat_interval``, ``grace_period``, ``max_retry``, ``name``) change the study,
    anything else is a base run-config override, and an override of a searched parameter
    removes it from the search space.

    Raises:
        ConfigError: unknown study (lists the available ones), invalid YAML, an unknown
            key, an invalid search-space entry (names the parameter), a bad override.
    """
    path = _find(study)
    where = str(path)
    raw = read_yaml(path)
    unknown = sorted(set(raw) - _STUDY_KEYS)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(_STUDY_KEYS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where}: unknown study key {unknown[0]!r}{hint}")
    for required in ("name", "base_config", "search_space"):
        if required not in raw:
            raise ConfigError(f"{where}: missing required key {required!r}")
    raw = copy.deepcopy(raw)
    config_overrides: list[str] = []
    for item, (key, value) in zip(overrides, parse_overrides(overrides), strict=True):
        if key in _OVERRIDABLE:
            raw[key] = value
        elif key in _STUDY_KEYS:
            raise ConfigError(f"study key {key!r} cannot be overridden on the command line")
        else:
            config_overrides.append(item)
    space_raw = raw.pop("search_space")
    if not isinstance(space_raw, Mapping) or not space_raw:
        raise ConfigError(f"{where}: search_space must be a non-empty mapping")
    fixed = {k.split("=", 1)[0] for k in config_overrides}
    space = {k: _param(str(k), v, where) for k, v in space_raw.items() if k not in fixed}
    for p in space.values():
        for cond_key, _ in p.condition:
            if cond_key not in space and cond_key not in fixed:
                raise ConfigError(
                    f"{where}: search_space.{p.key}: condition on unknown parameter {cond_key!r}"
                )
    try:
        spec = StudySpec(
            search_space=space,
            config_overrides=config_overrides,
            source=where,
            **{k: v for k, v in raw.items()},
        )
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    _validate(spec, where)
    return spec


def _validate(spec: StudySpec, where: str) -> None:
    if not isinstance(spec.n_trials, int) or spec.n_trials < 1:
        raise ConfigError(f"{where}: n_trials must be a positive integer, got {spec.n_trials!r}")
    for name in ("seed", "heartbeat_interval", "grace_period", "max_retry"):
        if not isinstance(getattr(spec, name), int) or getattr(spec, name) < 0:
            raise ConfigError(f"{where}: {name} must be a non-negative integer")
    if spec.heartbeat_interval < 1 or spec.grace_period <= spec.heartbeat_interval:
        raise ConfigError(f"{where}: need heartbeat_interval >= 1 and grace_period > heartbeat_interval")
    if len(spec.objectives) != len(spec.directions):
        raise ConfigError(f"{where}: {len(spec.objectives)} objectives but {len(spec.directions)} directions")
    for obj in spec.objectives:
        if obj not in OBJECTIVES:
            raise ConfigError(f"{where}: unknown objective {obj!r}; valid: {', '.join(OBJECTIVES)}")
    for d in spec.directions:
        if d not in ("minimize", "maximize"):
            raise ConfigError(f"{where}: direction {d!r} must be minimize or maximize")
    if spec.sampler.get("type", "tpe") != "tpe":
        raise ConfigError(f"{where}: sampler.type must be 'tpe'")
    if spec.pruner.get("type", "median") not in PRUNERS:
        raise ConfigError(f"{where}: pruner.type must be one of {', '.join(PRUNERS)}")
    try:
        spec.make_sampler()
        spec.make_pruner()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: invalid sampler/pruner settings: {exc}") from None
    base = spec.base_run_config()
    # every searched key must exist in the run config schema
    probe = {}
    for p in spec.search_space.values():
        if p.type == "phase_proportions":
            continue
        value = p.choices[0] if p.type == "categorical" else (int(p.low) if p.type == "int" else p.low)
        set_dotted(probe, p.key, value)
    from admet.config import config_to_dict

    merged = config_to_dict(base)
    for key, value in flatten(probe).items():
        set_dotted(merged, key, value)
    try:
        load_config(merged)
    except ConfigError as exc:
        raise ConfigError(f"{where}: search_space: {exc}") from None
    for p in spec.search_space.values():
        if p.type == "phase_proportions" and p.key != "joint_sampling.curriculum.phase_proportions":
            raise ConfigError(
                f"{where}: search_space.{p.key}: phase_proportions only applies to "
                "joint_sampling.curriculum.phase_proportions"
            )
