"""The ``search_space`` of a Ray Tune HPO file of the original project as the search space
of a study file of :mod:`admet.hpo`; the rest of the file is :mod:`._ray_tune`'s.

The mapping:

* ``choice`` -> ``categorical``; ``uniform`` -> ``float``; ``loguniform`` -> ``float``
  with ``log: true``; ``quniform`` -> ``int`` (integral bounds and step) or ``float``
  with ``step: q``; ``randint`` -> ``int`` with ``high - 1`` (Ray's exclusive upper bound
  made inclusive); ``qrandint`` -> ``int`` with ``step: q`` (bounds rounded onto multiples
  of ``q``, Ray's upper bound is inclusive there).
* ``conditional_on``/``conditional_values`` -> ``condition: {key: [values...]}``.
* Parameter names: ``learning_rate`` -> ``optimization.max_lr``; ``lr_warmup_ratio`` /
  ``lr_final_ratio`` -> ``optimization.init_lr`` / ``optimization.final_lr`` sampled as a
  ratio with ``scale_by: optimization.max_lr``; ``ffn_type`` -> ``model.ffn_type``
  (``mlp`` -> ``regression``, ``mixture_of_experts`` -> ``moe``); ``ffn_num_layers`` ->
  ``model.num_layers``; ``ffn_hidden_dim`` -> ``model.hidden_dim``; ``trunk_depth`` ->
  ``model.trunk_n_layers``; ``task_sampling_alpha`` ->
  ``joint_sampling.task_oversampling.alpha`` (with ``joint_sampling.enabled: true``);
  nested entries (``joint_sampling: {enabled: {type: ...}}``) become dotted run-config keys.

Example:
    >>> space, notes = convert_space({"depth": {"type": "randint", "low": 2, "high": 6}}, "hpo.yaml")
    >>> space
    {'model.depth': {'type': 'int', 'low': 2, 'high': 5}}
    >>> notes
    ['search_space.depth -> model.depth: randint [2, 6) -> int [2, 5]']
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from admet.config.keys import schema_field
from admet.config.registry import REGISTRIES
from admet.config.schema import EnsembleConfig
from admet.errors import ConfigError

__all__ = ["RAY_TUNE_TYPES", "convert_space", "flatten_space"]

RAY_TUNE_TYPES: tuple[str, ...] = ("choice", "uniform", "loguniform", "quniform", "randint", "qrandint")

# Legacy parameter name -> run-config key.
_PARAM_NAMES: dict[str, str] = {
    "learning_rate": "optimization.max_lr",
    "lr_warmup_ratio": "optimization.init_lr",
    "lr_final_ratio": "optimization.final_lr",
    "warmup_epochs": "optimization.warmup_epochs",
    "patience": "optimization.patience",
    "batch_size": "optimization.batch_size",
    "dropout": "model.dropout",
    "depth": "model.depth",
    "message_hidden_dim": "model.message_hidden_dim",
    "aggregation": "model.aggregation",
    "batch_norm": "model.batch_norm",
    "ffn_type": "model.ffn_type",
    "ffn_num_layers": "model.num_layers",
    "ffn_hidden_dim": "model.hidden_dim",
    "n_experts": "model.n_experts",
    "trunk_depth": "model.trunk_n_layers",
    "trunk_hidden_dim": "model.trunk_hidden_dim",
    "task_sampling_alpha": "joint_sampling.task_oversampling.alpha",
}
# Ratios of the maximum learning rate: the config value is the sample x max_lr.
_SCALED = {"lr_warmup_ratio": "optimization.max_lr", "lr_final_ratio": "optimization.max_lr"}
# Run-config keys that must be >= 1 (the legacy spaces sometimes started at 0).
_POSITIVE = {
    "model.depth",
    "model.message_hidden_dim",
    "model.hidden_dim",
    "model.num_layers",
    "model.n_experts",
    "model.trunk_n_layers",
    "model.trunk_hidden_dim",
    "optimization.batch_size",
}
_IGNORED_SEARCH = {
    "hidden_dim": "deprecated in the original project; search message_hidden_dim/ffn_hidden_dim",
    "aggregation_norm": "no equivalent (Chemprop's norm aggregation has a fixed norm)",
    "target_weights": "per-task weights are not searched; set optimization.task_weights",
    "weight_decay": "no weight decay in the run config",
    "weight_decay_enabled": "no weight decay in the run config",
}


def flatten_space(space: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{a: {b: {type: ...}}}`` -> ``{"a.b": {type: ...}}`` (an entry is a mapping with a type)."""
    out: dict[str, Any] = {}
    for key, value in space.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and "type" not in value:
            out.update(flatten_space(value, f"{name}."))
        else:
            out[name] = value
    return out


def _schema_has(key: str) -> bool:
    """Whether ``key`` (dotted) is a field of the ensemble run config."""
    try:
        schema_field(EnsembleConfig, key)
    except ConfigError:
        return False
    return True


def _config_key(name: str) -> str | None:
    if name in _PARAM_NAMES:
        return _PARAM_NAMES[name]
    if "." in name and _schema_has(name):
        return name
    return None


def _map_values(key: str, values: list[Any]) -> list[Any]:
    """Legacy names (``mlp``) of registered parts as their names (``regression``)."""
    registry = REGISTRIES.get(key)
    return [registry.resolve(v) for v in values] if registry is not None else list(values)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    return value


def _integral(*values: float) -> bool:
    return all(float(v).is_integer() for v in values)


def _convert_param(name: str, key: str, raw: Mapping[str, Any], where: str) -> tuple[dict[str, Any], str]:
    """One search-space entry; returns it and a note."""
    what = f"{where}: search_space.{name}"
    kind = raw.get("type")
    out: dict[str, Any]
    if kind == "choice":
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{what}: choice needs a non-empty 'values' list")
        out = {"type": "categorical", "choices": _map_values(key, values)}
        note = f"choice -> categorical {out['choices']}"
    elif kind in ("uniform", "loguniform", "quniform", "randint", "qrandint"):
        low = _number(raw.get("low"), f"{what}.low")
        high = _number(raw.get("high"), f"{what}.high")
        q = raw.get("q")
        if kind == "uniform":
            out, note = {"type": "float", "low": low, "high": high}, "uniform -> float"
        elif kind == "loguniform":
            out, note = {"type": "float", "low": low, "high": high, "log": True}, "loguniform -> float log"
        elif kind == "randint":
            out = {"type": "int", "low": int(low), "high": int(high) - 1}
            note = f"randint [{int(low)}, {int(high)}) -> int [{int(low)}, {int(high) - 1}]"
        else:
            q = _number(q, f"{what}.q")
            if q <= 0:
                raise ConfigError(f"{what}.q must be positive, got {q}")
            if kind == "qrandint" or _integral(low, high, q):
                q = int(q)
                lo, hi = int(math.ceil(low / q) * q), int(math.floor(high / q) * q)
                out = {"type": "int", "low": lo, "high": hi, "step": q}
                note = f"{kind} -> int [{lo}, {hi}] step {q}"
            else:
                out = {"type": "float", "low": low, "high": high, "step": q}
                note = f"quniform -> float step {q}"
    else:
        raise ConfigError(f"{what}: type {kind!r} is not one of {list(RAY_TUNE_TYPES)}")
    if key in _POSITIVE:
        if out["type"] == "categorical":
            kept = [v for v in out["choices"] if not isinstance(v, (int, float)) or v >= 1]
            if kept != out["choices"]:
                note += f"; values below 1 dropped ({key} must be >= 1)"
                out["choices"] = kept
        elif out["low"] < 1:
            step = out.get("step") or 1
            out["low"] = int(step if step >= 1 else 1)
            note += f"; low raised to {out['low']} ({key} must be >= 1)"
    if name in _SCALED:
        out["scale_by"] = _SCALED[name]
        note += f", a ratio: {key} = {_SCALED[name]} x sample"
    return out, note


def convert_space(space_raw: Mapping[str, Any], where: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The study search space for a Ray Tune ``search_space`` (nested entries flattened to
    dotted keys) and one note per parameter mapped or ignored.

    Raises:
        ConfigError: an entry is not a mapping, has an unknown type or malformed bounds or
            condition, or no parameter maps onto the run config.
    """
    notes: list[str] = []
    flat = flatten_space(space_raw)
    space: dict[str, dict[str, Any]] = {}
    keys: dict[str, str] = {}
    for pname in flat:
        key = _config_key(pname)
        if key is None:
            reason = _IGNORED_SEARCH.get(pname, "no equivalent run-config key")
            notes.append(f"search_space.{pname}: ignored ({reason})")
            continue
        keys[pname] = key
    for pname, key in keys.items():
        entry = flat[pname]
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: search_space.{pname} must be a mapping with a 'type'")
        converted, note = _convert_param(pname, key, entry, where)
        cond_on = entry.get("conditional_on")
        if cond_on is not None:
            cond_key = keys.get(str(cond_on))
            values = entry.get("conditional_values")
            if cond_key is None:
                note += f"; its condition on {cond_on!r} dropped (not searched here)"
            else:
                if not isinstance(values, list) or not values:
                    raise ConfigError(
                        f"{where}: search_space.{pname}.conditional_values must be a non-empty list"
                    )
                converted["condition"] = {cond_key: _map_values(cond_key, values)}
                note += f", only when {cond_key} in {converted['condition'][cond_key]}"
        space[key] = converted
        notes.append(f"search_space.{pname} -> {key}: {note}")
    if not space:
        raise ConfigError(f"{where}: no parameter of search_space maps onto the run config")
    return space, notes
