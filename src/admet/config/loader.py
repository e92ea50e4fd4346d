"""Loading run configurations: YAML or mapping, ``key=value`` overrides, the legacy schema,
and validation with messages that name the offending key.

Files of the original project load too (:mod:`admet.config.legacy` maps them): its
sampling keys (``optimization.task_sampling_alpha``, a top-level ``curriculum:`` block)
move under ``joint_sampling`` with a :class:`~admet.errors.LegacyConfigWarning` (run
``python -m admet.config migrate`` to rewrite the files), its other keys map onto ours,
and keys with no effect here each give one warning; conflicting old and new values are
an error.
"""

from __future__ import annotations

import copy
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from admet.config.keys import get_dotted, schema_fields, set_dotted, unknown_key
from admet.config.legacy import apply_legacy, translate_legacy
from admet.config.molecule_features import check_molecule_features, features_as_list
from admet.config.phases import CurriculumPhaseConfig
from admet.config.registry import AGGREGATIONS, HEADS, SAMPLERS
from admet.config.schema import (
    COMPOSITION_MODES,
    ChempropConfig,
    EnsembleConfig,
    InvalidValue,
    check_num_samples,
    check_task_alpha,
    schema_for,
)
from admet.config.tiers import check_tiers
from admet.errors import ConfigError, LegacyConfigWarning
from admet.paths import home

__all__ = [
    "apply_legacy",
    "config_to_dict",
    "get_dotted",
    "load_config",
    "parse_overrides",
    "read_yaml",
    "save_config",
    "set_dotted",
    "translate_legacy",
]


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Safely load a YAML mapping; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, Any]]:
    """``["a.b=1", "c=[x, y]"]`` -> ``[("a.b", 1), ("c", ["x", "y"])]`` (YAML values)."""
    parsed = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value")
        parsed.append((key.strip(), _parse_value(value)))
    return parsed


def _check_keys(data: Mapping[str, Any], schema: type, prefix: str = "") -> None:
    """Unknown keys are an error naming the full key and suggesting the closest valid one."""
    known = schema_fields(schema)
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in known:
            raise unknown_key(path, known, prefix)
        sub = known[key]
        if is_dataclass(sub) and isinstance(sub, type):
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key {path!r} must be a section (mapping), got {value!r}")
            _check_keys(value, sub, prefix=f"{path}.")


def _validate(cfg: ChempropConfig) -> None:
    """Semantic checks OmegaConf's types cannot express."""
    js = cfg.joint_sampling
    cur = js.curriculum
    if js.composition_mode not in COMPOSITION_MODES:
        raise ConfigError(
            f"joint_sampling.composition_mode: unknown mode {js.composition_mode!r}; valid: "
            f"{', '.join(COMPOSITION_MODES)}"
        )
    try:
        check_task_alpha(js.task_oversampling.alpha)
    except InvalidValue:
        raise ConfigError("joint_sampling.task_oversampling.alpha must be a finite number") from None
    try:
        check_num_samples(js.num_samples)
    except InvalidValue as exc:
        raise ConfigError(f"joint_sampling.num_samples {exc}") from None
    if js.sampler is not None:
        SAMPLERS.check(js.sampler)
    if cur.enabled and not js.enabled:
        raise ConfigError(
            "joint_sampling.curriculum.enabled is true but joint_sampling.enabled is false: the "
            "curriculum is part of joint sampling; enable both or disable the curriculum"
        )
    if cur.enabled:
        if not cur.quality_col:
            raise ConfigError(
                "joint_sampling.curriculum.enabled is true but curriculum.quality_col is not set"
            )
        if not cur.qualities:
            raise ConfigError("joint_sampling.curriculum.qualities must list at least one quality")
        try:
            CurriculumPhaseConfig(
                phase_proportions=None if cur.phase_proportions is None else dict(cur.phase_proportions),
                min_high_quality_proportion=cur.min_high_quality_proportion,
            ).resolve(cur.qualities)
        except ValueError as exc:
            raise ConfigError(f"joint_sampling.curriculum.{exc}") from None
        if cur.patience < 0:
            raise ConfigError("joint_sampling.curriculum.patience must be >= 0")
    data = cfg.data
    if not data.target_cols:
        raise ConfigError("data.target_cols must list at least one task column")
    if data.max_molecules is not None and data.max_molecules < 2:
        raise ConfigError(f"data.max_molecules must be at least 2, got {data.max_molecules}")
    if data.n_folds < 2:
        raise ConfigError(f"data.n_folds must be at least 2, got {data.n_folds}")
    if data.split not in ("scaffold", "random"):
        raise ConfigError(f"data.split must be 'scaffold' or 'random', got {data.split!r}")
    if data.on_invalid_smiles not in ("error", "skip"):
        raise ConfigError("data.on_invalid_smiles must be 'error' or 'skip'")
    check_molecule_features(data.molecule_features, data.descriptor_missing)
    model, opt = cfg.model, cfg.optimization
    for name in ("depth", "message_hidden_dim", "hidden_dim", "num_layers"):
        if getattr(model, name) < 1:
            raise ConfigError(f"model.{name} must be >= 1, got {getattr(model, name)}")
    if not 0.0 <= model.dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {model.dropout}")
    if model.activation.lower() not in ("relu", "leakyrelu", "prelu", "tanh", "selu", "elu"):
        raise ConfigError(
            f"model.activation must be relu, leakyrelu, prelu, tanh, selu or elu, got {model.activation!r}"
        )
    HEADS.check(model.ffn_type)
    for name in ("n_experts", "trunk_n_layers", "trunk_hidden_dim"):
        if getattr(model, name) < 1:
            raise ConfigError(f"model.{name} must be >= 1, got {getattr(model, name)}")
    AGGREGATIONS.check(model.aggregation)
    if opt.criterion not in ("mae", "mse"):
        raise ConfigError(f"optimization.criterion must be 'mae' or 'mse', got {opt.criterion!r}")
    for name in ("max_epochs", "batch_size"):
        if getattr(opt, name) < 1:
            raise ConfigError(f"optimization.{name} must be >= 1, got {getattr(opt, name)}")
    for name in ("warmup_epochs", "patience", "num_workers"):
        if getattr(opt, name) < 0:
            raise ConfigError(f"optimization.{name} must be >= 0, got {getattr(opt, name)}")
    if opt.accelerator not in ("auto", "cpu", "gpu", "cuda", "mps") and not re.fullmatch(
        r"cuda:\d+", str(opt.accelerator)
    ):
        raise ConfigError(
            f"optimization.accelerator must be auto, cpu, gpu, cuda, cuda:K or mps, got {opt.accelerator!r}"
        )
    if not (opt.init_lr > 0 and opt.max_lr > 0 and opt.final_lr > 0):
        raise ConfigError("optimization learning rates must be positive")
    if opt.task_weights is not None and len(opt.task_weights) != len(data.target_cols):
        raise ConfigError(
            f"optimization.task_weights has {len(opt.task_weights)} values for "
            f"{len(data.target_cols)} target columns"
        )
    check_tiers(cfg)
    if isinstance(cfg, EnsembleConfig):
        ens = cfg.ensemble
        if ens.n_members < 1:
            raise ConfigError(f"ensemble.n_members must be >= 1, got {ens.n_members}")
        n_folds = ens.n_folds or ens.n_members
        if ens.n_members > 1 and n_folds < 2:
            raise ConfigError("ensemble.n_folds must be at least 2")
        if ens.n_members > max(n_folds, 1):
            raise ConfigError(f"ensemble.n_members ({ens.n_members}) exceeds n_folds ({n_folds})")
        if ens.split not in ("scaffold", "random"):
            raise ConfigError(f"ensemble.split must be 'scaffold' or 'random', got {ens.split!r}")
        if ens.n_jobs < 1:
            raise ConfigError("ensemble.n_jobs must be >= 1")


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | ChempropConfig,
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> ChempropConfig:
    """A validated run config (:class:`ChempropConfig` or :class:`EnsembleConfig`): the
    one way a config is built and changed. The CLI's ``--config`` with ``key=value``
    arguments, a study's base config, each trial's config (the base config plus the
    sampled values), refit and the benchmark all come through here, so a config is
    checked the same way, once, whoever builds it.

    Args:
        source: a YAML file, a mapping, or an existing config object (which is not
            changed; the result is a new object).
        overrides: applied on top, in order: ``key=value`` strings (YAML-typed values), or
            a mapping ``{dotted key: value}`` such as a trial's sampled parameters.

    Raises:
        ConfigError: unreadable file, unknown key (with a suggestion), a wrong type, a
            conflict between legacy and new keys, or an invalid combination.

    Example:
        >>> cfg = load_config({"ensemble": {"n_members": 3}}, ["joint_sampling.enabled=true"])
        >>> type(cfg).__name__, cfg.ensemble.n_members, cfg.joint_sampling.task_oversampling.alpha
        ('EnsembleConfig', 3, 0.5)
        >>> load_config({}, ["model.dpeth=4"])
        Traceback (most recent call last):
        ...
        admet.errors.ConfigError: unknown config key 'model.dpeth'; did you mean 'model.depth'? ...

        A file of the original project (``optimization.task_sampling_alpha``, a top-level
        ``curriculum:``) loads too, with a DeprecationWarning, mapped onto ``joint_sampling``.
    """
    if isinstance(source, ChempropConfig):
        raw = config_to_dict(source)
        where = "config"
    elif isinstance(source, Mapping):
        raw = copy.deepcopy(dict(source))
        where = "config"
    else:
        raw = read_yaml(source)
        where = str(source)
    items = overrides.items() if isinstance(overrides, Mapping) else parse_overrides(overrides)
    for key, value in items:
        set_dotted(raw, key, value)
    raw, notes = apply_legacy(raw, where)
    for note in notes:
        warnings.warn(
            f"{where}: legacy config key {note}; run 'python -m admet.config migrate'",
            LegacyConfigWarning,
            stacklevel=2,
        )
    raw, ignored = translate_legacy(raw, where, resolve_dir=_resolve_dir)
    for note in ignored:
        warnings.warn(f"{where}: {note}", LegacyConfigWarning, stacklevel=2)
    schema = schema_for(raw)
    _check_keys(raw, schema)
    features_as_list(raw)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), raw)
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        msg = str(exc).splitlines()[0]
        raise ConfigError(
            f"{where}: invalid value for {key!r}: {msg}" if key else f"{where}: {msg}"
        ) from None
    assert isinstance(cfg, ChempropConfig)
    _validate(cfg)
    return cfg


def _resolve_dir(path: str) -> Path:
    """A config folder path: absolute as is, else relative to the working directory."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else home() / p


def config_to_dict(cfg: ChempropConfig) -> dict[str, Any]:
    """A plain nested dict of ``cfg`` (for YAML, MLflow params and Optuna attributes).

    A plain copy of the dataclasses' fields: ``cfg`` was validated when
    :func:`load_config` built it, so it is not checked (nor converted) again here."""
    return asdict(cfg)


def save_config(cfg: ChempropConfig, path: str | os.PathLike[str]) -> Path:
    """Write the resolved config as YAML (loadable again with :func:`load_config`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path
