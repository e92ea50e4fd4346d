"""The original project's config schema, mapped onto ours.

Teams bring YAML files written for the Chemprop codebase this service replaces. Two
functions turn such a mapping into one :func:`admet.config.load_config` validates:

* :func:`apply_legacy` moves the sampling keys (``optimization.task_sampling_alpha`` and
  the top-level ``curriculum:`` block) under ``joint_sampling``. It works on plain dicts
  and on ruamel's round-trip maps, keeping comments and key order, because
  ``python -m admet.config migrate`` writes its result back to the user's file. A
  legacy curriculum keeps its original behaviour explicitly (per-molecule weights without
  count normalisation, the original phase proportions, patience 5, its seed), so a
  migrated file samples exactly as it did.
* :func:`translate_legacy` maps the rest at load time and never rewrites files: renamed
  keys (``data.target_weights``, ``mlflow.tracking``, ``max_parallel``), case-insensitive
  criteria, keys that have no effect here (each returned as a deprecation note), and the
  optional feature sections this project does not implement (refused when enabled).

Example:
    >>> raw, moved = apply_legacy({"optimization": {"task_sampling_alpha": 0.3}})
    >>> raw["joint_sampling"]["task_oversampling"]["alpha"], moved
    (0.3, ['optimization.task_sampling_alpha -> joint_sampling.task_oversampling.alpha'])
    >>> raw, notes = translate_legacy({"mlflow": {"tracking": True, "nested": True}})
    >>> raw["mlflow"], notes[0].split(":")[0]
    ({'enabled': True}, 'mlflow.nested')
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from admet.config.keys import get_dotted
from admet.config.registry import REGISTRIES
from admet.errors import ConfigError

__all__ = [
    "LEGACY_PHASE_PROPORTIONS",
    "UNIMPLEMENTED_SECTIONS",
    "apply_legacy",
    "is_fold_tree",
    "translate_legacy",
]

LEGACY_ALPHA_KEY = ("optimization", "task_sampling_alpha")
LEGACY_CURRICULUM_KEY = "curriculum"
# The original project's curriculum (its curriculum.py up to v1.1.0): phase proportions
# per number of quality tiers, read as per-molecule weights (no count normalisation), a
# phase ends after 5 epochs without a val_loss improvement of more than 1e-4, seed 42.
LEGACY_PHASE_PROPORTIONS: dict[int, dict[str, list[float]]] = {
    2: {"warmup": [0.9, 0.1], "expand": [0.6, 0.4], "polish": [1.0, 0.0]},
    3: {
        "warmup": [0.9, 0.1, 0.0],
        "expand": [0.6, 0.35, 0.05],
        "robust": [0.4, 0.4, 0.2],
        "polish": [1.0, 0.0, 0.0],
    },
}
LEGACY_CURRICULUM_PATIENCE = 5
LEGACY_CURRICULUM_MIN_DELTA = 1e-4
LEGACY_CURRICULUM_SEED = 42
LEGACY_TRUNK_N_LAYERS = 2
LEGACY_QUALITIES = ["high", "medium", "low"]
# The original project's names of the prediction heads (its HPO files said mlp) are
# aliases declared with the heads' registration (admet.config.registry).
# Sections of the original project for features this one does not implement.
UNIMPLEMENTED_SECTIONS = ("inter_task_affinity", "task_affinity")
# Keys accepted for old files that change nothing here: key -> why.
NO_EFFECT = {
    ("ray_num_cpus",): "Ray is not used; run more workers with `python -m admet.hpo run`",
    ("ray_num_gpus",): "Ray is not used; pick the device with optimization.accelerator",
    ("mlflow", "nested"): "runs of an ensemble are always nested",
    ("mlflow", "run_id"): "every training run starts its own MLflow run",
    ("mlflow", "parent_run_id"): "an ensemble nests its members' runs itself",
    ("joint_sampling", "curriculum", "save_plots"): "curriculum phases are logged as metrics",
    ("joint_sampling", "curriculum", "plot_dpi"): "curriculum phases are logged as metrics",
    ("ray", "num_cpus"): "Ray is not used; run more workers with `python -m admet.hpo run`",
    ("ray", "num_gpus"): "Ray is not used; pick the device with optimization.accelerator",
    ("joint_sampling", "curriculum", "log_per_quality_metrics"): "per-quality metrics are always logged",
}


def _get(data: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    """``data[k1][k2]...`` or ``default`` when absent (:func:`admet.config.keys.get_dotted`)."""
    return get_dotted(data, keys, default)


def _section(parent: Any, key: str, after: str | None = None) -> Any:
    """``parent[key]`` as a mapping of the parent's own type, created if absent (placed
    after ``after`` when the mapping keeps order and supports insertion, as ruamel's does)."""
    child = parent.get(key)
    if isinstance(child, Mapping):
        return child
    child = type(parent)()
    keys = list(parent)
    if hasattr(parent, "insert") and after in keys:
        parent.insert(keys.index(after) + 1, key, child)
    else:
        parent[key] = child
    return child


def _take_comment(mapping: Any, key: str) -> Any:
    """Detach the comment attached to ``mapping[key]`` (ruamel maps only)."""
    ca = getattr(mapping, "ca", None)
    return None if ca is None else ca.items.pop(key, None)


def _put_comment(mapping: Any, key: str, comment: Any) -> None:
    ca = getattr(mapping, "ca", None)
    if ca is not None and comment is not None:
        ca.items[key] = comment


def _move_alpha(data: Any, source: str, notes: list[str]) -> None:
    optimization = data.get("optimization")
    if not (isinstance(optimization, Mapping) and LEGACY_ALPHA_KEY[1] in optimization):
        return
    comment = _take_comment(optimization, LEGACY_ALPHA_KEY[1])
    alpha = optimization.pop(LEGACY_ALPHA_KEY[1])
    js = data.get("joint_sampling")
    new_alpha = _get(js or {}, "task_oversampling", "alpha")
    if new_alpha is not None and alpha is not None and float(new_alpha) != float(alpha):
        raise ConfigError(
            f"{source}: optimization.task_sampling_alpha={alpha} conflicts with "
            f"joint_sampling.task_oversampling.alpha={new_alpha}"
        )
    if alpha is not None:
        if (js or {}).get("enabled") is False:
            raise ConfigError(
                f"{source}: optimization.task_sampling_alpha={alpha} conflicts with "
                "joint_sampling.enabled=false"
            )
        mode = (js or {}).get("composition_mode")
        if mode not in (None, "two_stage"):
            raise ConfigError(
                f"{source}: optimization.task_sampling_alpha implies two_stage sampling but "
                f"joint_sampling.composition_mode={mode!r}"
            )
        js = _section(data, "joint_sampling", after="optimization")
        js["enabled"] = True
        oversampling = _section(js, "task_oversampling")
        oversampling["alpha"] = alpha
        _put_comment(oversampling, "alpha", comment)
        js["composition_mode"] = "two_stage"
    notes.append("optimization.task_sampling_alpha -> joint_sampling.task_oversampling.alpha")


def _move_curriculum(data: Any, source: str, notes: list[str]) -> None:
    if LEGACY_CURRICULUM_KEY not in data:
        return
    old = data[LEGACY_CURRICULUM_KEY]
    if old is not None and not isinstance(old, Mapping):
        raise ConfigError(f"{source}: legacy 'curriculum' must be a section, got {old!r}")
    old = old if old is not None else type(data)()
    existing = _get(data, "joint_sampling", "curriculum") or {}
    for key, value in old.items():
        if key in existing and existing[key] != value:
            raise ConfigError(
                f"{source}: curriculum.{key}={value!r} conflicts with "
                f"joint_sampling.curriculum.{key}={existing[key]!r}"
            )
    if old.get("enabled") and _get(data, "joint_sampling", "enabled") is False:
        raise ConfigError(f"{source}: curriculum.enabled=true conflicts with joint_sampling.enabled=false")
    had_alpha = _get(data, "joint_sampling", "task_oversampling", "alpha") is not None
    js = _section(data, "joint_sampling", after=LEGACY_CURRICULUM_KEY)
    del data[LEGACY_CURRICULUM_KEY]
    for key, value in existing.items():
        old[key] = value
    if old.get("enabled") and "seed" not in old and js.get("seed") is None:
        js["seed"] = LEGACY_CURRICULUM_SEED
    if "seed" in old:  # the legacy curriculum sampler's seed is the joint sampler's
        seed = old.pop("seed")
        if js.get("seed") is not None and seed is not None and js["seed"] != seed:
            raise ConfigError(
                f"{source}: curriculum.seed={seed!r} conflicts with joint_sampling.seed={js['seed']!r}"
            )
        if seed is not None:
            js["seed"] = seed
        notes.append("curriculum.seed -> joint_sampling.seed")
    # The original sampler's behaviour, written out so a migrated file keeps it.
    qualities = list(old.get("qualities") or LEGACY_QUALITIES)
    old.setdefault("count_normalize", False)
    old.setdefault("patience", LEGACY_CURRICULUM_PATIENCE)
    old.setdefault("min_delta", LEGACY_CURRICULUM_MIN_DELTA)
    if old.get("phase_proportions") is None and len(qualities) in LEGACY_PHASE_PROPORTIONS:
        old["phase_proportions"] = copy.deepcopy(LEGACY_PHASE_PROPORTIONS[len(qualities)])
    js["curriculum"] = old
    if old.get("enabled") and "enabled" not in js:
        js["enabled"] = True
        if not had_alpha and "composition_mode" not in js:
            # The legacy curriculum sampler drew by quality only: exactly the
            # multiplicative mode without task oversampling.
            _section(js, "task_oversampling")["alpha"] = 0.0
            js["composition_mode"] = "multiplicative"
    notes.append("curriculum -> joint_sampling.curriculum")


def apply_legacy(data: Any, source: str = "config") -> tuple[Any, list[str]]:
    """Move the legacy sampling keys under ``joint_sampling`` in a copy of ``data``.

    Returns the new mapping and one note per key moved.

    Raises:
        ConfigError: an old key and its new counterpart disagree.
    """
    data = copy.deepcopy(data)
    notes: list[str] = []
    _move_alpha(data, source, notes)
    _move_curriculum(data, source, notes)
    return data, notes


def is_fold_tree(folder: Path) -> bool:
    """Whether ``folder`` holds the original project's ``split_*/fold_*/`` ensemble layout."""
    return folder.is_dir() and any(p.is_dir() for p in folder.glob("split_*/fold_*"))


def _pop(data: dict[str, Any], *keys: str) -> tuple[bool, Any]:
    node: Any = data
    for key in keys[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict) and keys[-1] in node:
        return True, node.pop(keys[-1])
    return False, None


def _rename(data: dict[str, Any], old: tuple[str, ...], new: tuple[str, ...], source: str) -> None:
    found, value = _pop(data, *old)
    if not found:
        return
    current = _get(data, *new)
    if current is not None and value is not None and current != value:
        raise ConfigError(f"{source}: {'.'.join(old)}={value!r} conflicts with {'.'.join(new)}={current!r}")
    node = data
    for key in new[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    if current is None:
        node[new[-1]] = value


def _is_legacy_ensemble(raw: dict[str, Any], resolve_dir: Any) -> bool:
    """The original's ensemble configs: keys only its EnsembleConfig had, or a data_dir
    holding split_*/fold_* folders."""
    if any(k in raw for k in ("max_parallel", "ray_num_cpus", "ray_num_gpus", "ray")):
        return True
    if _get(raw, "data", "splits") is not None or _get(raw, "data", "folds") is not None:
        return True
    data_dir = _get(raw, "data", "data_dir")
    return bool(data_dir) and resolve_dir is not None and is_fold_tree(resolve_dir(data_dir))


def translate_legacy(
    raw: dict[str, Any], source: str = "config", resolve_dir: Any = None
) -> tuple[dict[str, Any], list[str]]:
    """Map the non-sampling keys of the original schema onto ours (a plain dict; returns a
    copy and one deprecation note per key that has no effect here).

    Args:
        raw: a config mapping (after :func:`apply_legacy`).
        source: the file name for messages.
        resolve_dir: callable turning ``data.data_dir`` into a path; given, a data_dir
            holding ``split_*/fold_*/`` makes the config an ensemble config.

    Raises:
        ConfigError: a feature section this project does not implement is enabled, or a
            renamed key conflicts with its new name, or ``curriculum.strategy`` is not
            ``sampled``.
    """
    raw = copy.deepcopy(raw)
    notes: list[str] = []
    ensemble = "ensemble" not in raw and _is_legacy_ensemble(raw, resolve_dir)
    _rename(raw, ("mlflow", "tracking"), ("mlflow", "enabled"), source)
    if _get(raw, "model", "trunk_n_layers") == 0:  # the original model code read 0 as "default"
        raw["model"]["trunk_n_layers"] = LEGACY_TRUNK_N_LAYERS
        notes.append(f"model.trunk_n_layers: 0 meant the original default {LEGACY_TRUNK_N_LAYERS}; using it")
    if _get(raw, "data", "target_weights") == []:
        raw["data"]["target_weights"] = None  # the original's "1.0 for every task"
    _rename(raw, ("data", "target_weights"), ("optimization", "task_weights"), source)
    for key, registry in REGISTRIES.items():  # aliases (mlp -> regression), lower-cased
        section, name = key.split(".")
        value = _get(raw, section, name)
        if isinstance(value, str):
            raw[section][name] = registry.canonical(value)
    criterion = _get(raw, "optimization", "criterion")
    if isinstance(criterion, str):
        raw["optimization"]["criterion"] = criterion.lower()
    strategy_found, strategy = _pop(raw, "joint_sampling", "curriculum", "strategy")
    if strategy_found:
        if str(strategy).lower() != "sampled":
            raise ConfigError(
                f"{source}: curriculum.strategy={strategy!r} is not supported; the curriculum "
                "samples by quality ('sampled')"
            )
        notes.append("curriculum.strategy: 'sampled' is the only strategy here; ignored")
    for key, why in NO_EFFECT.items():
        found, _ = _pop(raw, *key)
        if found:
            notes.append(f"{'.'.join(key)}: has no effect here ({why}); ignored")
    for name in UNIMPLEMENTED_SECTIONS:
        if name not in raw:
            continue
        section = raw.pop(name)
        enabled = section.get("enabled", False) if isinstance(section, Mapping) else bool(section)
        if enabled:
            raise ConfigError(
                f"{source}: {name}.enabled is true, but {name} is not implemented here; "
                f"set {name}.enabled: false or remove the section"
            )
        notes.append(f"{name}: not implemented here and disabled; ignored")
    ray = raw.get("ray")  # the original's later spelling of max_parallel / ray_num_*
    if isinstance(ray, dict) and "max_parallel" in ray:
        raw.setdefault("max_parallel", ray.pop("max_parallel"))
    if isinstance(ray, dict) and not ray:
        del raw["ray"]
    if ensemble:
        raw["ensemble"] = {}
    if "max_parallel" in raw:
        parallel = raw.pop("max_parallel")
        if "ensemble" in raw and parallel is not None:
            ensemble = raw["ensemble"] if isinstance(raw["ensemble"], dict) else {}
            raw["ensemble"] = ensemble
            ensemble.setdefault("n_jobs", parallel)
        else:
            notes.append("max_parallel: only ensembles train members in parallel; ignored")
    return raw, notes
