"""Ray Tune HPO files of the original project, converted into study files of :mod:`admet.hpo`.

The original project searched hyperparameters with Ray Tune, from a flat YAML file: the
data (``data_path``, ``val_data_path``, ``smiles_column``, ``target_columns``,
``target_weights``, ``seed``), a ``search_space`` of Ray Tune distributions (``choice``,
``uniform``, ``loguniform``, ``quniform``, ``randint``, ``qrandint``, optionally
``conditional_on``/``conditional_values``), the ASHA scheduler (``asha``), the trial count
and per-trial resources (``resources``) and a refit of the best configurations
(``transfer_learning``). :func:`convert_ray_tune` maps such a file onto a study mapping
(see ``studies/joint_sampling.yaml``) with an inline ``base_config``, and explains every
key it mapped or ignored in one note each; ``python -m admet.hpo run --study-file F``
converts a Ray Tune file on the fly. :func:`is_ray_tune_file` recognises one.

The search space is mapped by :mod:`._ray_tune_space`, whose docstring lists how.

Example:
    >>> study, notes = convert_ray_tune(
    ...     {
    ...         "experiment_name": "legacy",
    ...         "data_path": "train.csv",
    ...         "target_columns": ["LogD"],
    ...         "search_space": {"depth": {"type": "randint", "low": 2, "high": 6}},
    ...         "asha": {"max_t": 40, "grace_period": 5, "reduction_factor": 3, "brackets": 1},
    ...         "resources": {"num_samples": 25, "gpus_per_trial": 0.5},
    ...     },
    ...     "hpo.yaml",
    ... )
    >>> study["search_space"]["model.depth"]
    {'type': 'int', 'low': 2, 'high': 5}
    >>> study["pruner"], study["n_trials"]
    ({'type': 'successive_halving', 'min_resource': 5, 'reduction_factor': 3}, 25)
    >>> is_ray_tune_file({"search_space": {"depth": {"type": "randint", "low": 2, "high": 6}}})
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from admet.config.legacy._ray_tune_space import RAY_TUNE_TYPES, convert_space, flatten_space
from admet.errors import ConfigError

__all__ = ["convert_ray_tune", "is_ray_tune_file"]

# Top-level keys only a Ray Tune file has (a study file of admet.hpo refuses them).
_RAY_KEYS = ("asha", "resources", "ray_storage_path", "transfer_learning", "search_algorithm")

_IGNORED_TOP = {
    "output_dir": "trials keep their models in the study storage and under ADMET_HOME",
    "ray_storage_path": "Optuna stores the study (--storage URL)",
    "base_config_path": "the base run config is inline; merge that file into base_config by hand",
    "curriculum": "the curriculum of a study comes from base_config/search_space (joint_sampling.curriculum)",
    "report_every_n_epochs": "every epoch is reported to the pruner",
    "logging": "no equivalent",
    "profiling": "no equivalent",
}
_DEFAULT_MEMBERS = 3


def _flatten_space(space: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{a: {b: {type: ...}}}`` -> ``{"a.b": {type: ...}}`` (an entry is a mapping with a type)."""
    out: dict[str, Any] = {}
    for key, value in space.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and "type" not in value:
            out.update(_flatten_space(value, f"{name}."))
        else:
            out[name] = value
    return out


def is_ray_tune_file(data: Mapping[str, Any]) -> bool:
    """Whether ``data`` is a Ray Tune HPO file of the original project.

    True for a flat file whose ``search_space`` holds Ray Tune distribution types
    (``choice``, ``uniform``, ...) or which has a Ray-specific key (``asha``,
    ``resources``, ``ray_storage_path``, ``transfer_learning``, ``search_algorithm``);
    a study file of :mod:`admet.hpo` (``type: float/int/categorical``) is not one.

    Example:
        >>> is_ray_tune_file({"search_space": {"depth": {"type": "int", "low": 2, "high": 5}}})
        False
        >>> is_ray_tune_file({"experiment_name": "x", "asha": {"max_t": 10}})
        True
    """
    if not isinstance(data, Mapping):
        return False
    if any(key in data for key in _RAY_KEYS):
        return True
    space = data.get("search_space")
    if not isinstance(space, Mapping):
        return False
    return any(
        isinstance(entry, Mapping) and entry.get("type") in RAY_TUNE_TYPES
        for entry in flatten_space(space).values()
    )


def convert_ray_tune(data: Mapping[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    """A study mapping for :func:`admet.hpo.spec.load_study_spec` from a Ray Tune HPO file.

    Args:
        data: the Ray Tune file's mapping (see the module docstring for the mapping).
        source: where it came from (a path), named in errors and the default study name.

    Returns:
        ``(study, notes)``: the study (``name``, ``objectives``, ``directions``,
        ``n_trials``, ``seed``, ``sampler``, ``pruner``, an inline ``base_config`` run
        config with an ``ensemble`` section, ``search_space`` and ``refit``) and one
        human-readable note per mapped or ignored key.

    Raises:
        ConfigError: no ``data_path``, no ``search_space``, an unknown distribution type or
            a malformed entry; the message names the key.

    Example:
        >>> study, notes = convert_ray_tune(
        ...     {
        ...         "data_path": "train.csv",
        ...         "target_columns": ["LogD", "KSOL"],
        ...         "search_space": {
        ...             "learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
        ...             "lr_warmup_ratio": {"type": "uniform", "low": 0.05, "high": 0.5},
        ...             "ffn_type": {"type": "choice", "values": ["mlp", "moe"]},
        ...             "n_experts": {
        ...                 "type": "qrandint", "low": 2, "high": 8, "q": 2,
        ...                 "conditional_on": "ffn_type", "conditional_values": ["moe"],
        ...             },
        ...         },
        ...         "transfer_learning": {"top_k": 3, "full_epochs": 100, "ensemble_size": 5},
        ...     },
        ...     "configs/hpo.yaml",
        ... )
        >>> study["name"], study["search_space"]["optimization.init_lr"]["scale_by"]
        ('hpo', 'optimization.max_lr')
        >>> study["search_space"]["model.n_experts"]
        {'type': 'int', 'low': 2, 'high': 8, 'step': 2, 'condition': {'model.ffn_type': ['moe']}}
        >>> study["refit"]
        {'top_k': 3, 'members': 5, 'max_epochs': 100}
    """
    where = str(source)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    notes: list[str] = []
    if not data.get("data_path"):
        raise ConfigError(f"{where}: missing required key 'data_path' (the training CSV)")
    space_raw = data.get("search_space")
    if not isinstance(space_raw, Mapping) or not space_raw:
        raise ConfigError(f"{where}: search_space must be a non-empty mapping")

    name = str(data.get("experiment_name") or Path(where).stem)
    seed = data.get("seed", 42)
    base: dict[str, Any] = {"data": {}, "model": {}, "optimization": {}, "mlflow": {}}
    base["data"]["train_file"] = str(data["data_path"])
    notes.append(f"data_path -> base_config data.train_file ({data['data_path']})")
    if data.get("val_data_path"):
        base["data"]["val_file"] = str(data["val_data_path"])
        notes.append(
            "val_data_path -> base_config data.val_file (the study scores cross-validated folds "
            "of the training table)"
        )
    if "smiles_column" in data:
        base["data"]["smiles_col"] = data["smiles_column"]
        notes.append(f"smiles_column -> data.smiles_col ({data['smiles_column']})")
    if "target_columns" in data:
        base["data"]["target_cols"] = list(data["target_columns"])
        notes.append(f"target_columns -> data.target_cols ({len(data['target_columns'])} tasks)")
    if data.get("target_weights") is not None:
        base["optimization"]["task_weights"] = [float(w) for w in data["target_weights"]]
        notes.append("target_weights -> optimization.task_weights")
    base["optimization"]["seed"] = seed
    notes.append(f"seed -> study seed and optimization.seed ({seed})")
    for key in ("patience", "warmup_epochs"):
        if key in data:
            base["optimization"][key] = data[key]
            notes.append(f"{key} -> optimization.{key}")
    uri = data.get("mlflow_tracking_uri")
    base["mlflow"] = {"enabled": bool(uri), "tracking_uri": uri, "experiment_name": name}
    notes.append(
        "mlflow_tracking_uri -> mlflow.tracking_uri (MLflow on)"
        if uri
        else "no mlflow_tracking_uri: MLflow off (mlflow.enabled=true turns it on)"
    )
    notes.append(f"experiment_name -> study name and mlflow.experiment_name ({name})")
    base["ensemble"] = {"n_members": _DEFAULT_MEMBERS}
    notes.append(
        f"each trial is scored as a {_DEFAULT_MEMBERS}-member cross-validated ensemble "
        "(override with ensemble.n_members=N)"
    )

    space, space_notes = convert_space(space_raw, where)
    notes.extend(space_notes)
    if any(k.startswith("joint_sampling.") for k in space) and "joint_sampling.enabled" not in space:
        base["joint_sampling"] = {"enabled": True}
        notes.append("joint_sampling.enabled: true in base_config (task oversampling is searched)")

    study: dict[str, Any] = {
        "name": name,
        "objectives": ["cv_mae_macro"],
        "directions": ["minimize"],
        "seed": seed,
        "sampler": {"type": "tpe"},
    }
    asha = data.get("asha")
    if isinstance(asha, Mapping):
        mode = asha.get("mode", "min")
        if mode not in ("min", "max"):
            raise ConfigError(f"{where}: asha.mode must be min or max, got {mode!r}")
        study["directions"] = ["minimize" if mode == "min" else "maximize"]
        notes.append(f"asha.mode {mode} -> directions [{study['directions'][0]}]")
        if "metric" in asha:
            notes.append(f"asha.metric {asha['metric']!r} -> objective cv_mae_macro (CV MAE of the ensemble)")
        grace = int(asha.get("grace_period", 1))
        factor = asha.get("reduction_factor", 3)
        if int(asha.get("brackets", 1)) > 1:
            study["pruner"] = {"type": "hyperband", "min_resource": grace, "reduction_factor": factor}
            if "max_t" in asha:
                study["pruner"]["max_resource"] = int(asha["max_t"])
            notes.append(
                f"asha with {asha['brackets']} brackets -> pruner hyperband (min_resource {grace}, "
                f"max_resource {asha.get('max_t', 'auto')}, reduction_factor {factor})"
            )
        else:
            study["pruner"] = {
                "type": "successive_halving",
                "min_resource": grace,
                "reduction_factor": factor,
            }
            notes.append(
                f"asha -> pruner successive_halving (min_resource {grace}, reduction_factor {factor})"
            )
        if "max_t" in asha:
            base["optimization"]["max_epochs"] = int(asha["max_t"])
            notes.append(f"asha.max_t -> optimization.max_epochs ({asha['max_t']})")
    resources = data.get("resources")
    if isinstance(resources, Mapping):
        if "num_samples" in resources:
            study["n_trials"] = int(resources["num_samples"])
            notes.append(f"resources.num_samples -> n_trials ({study['n_trials']})")
        for key in resources:
            if key != "num_samples":
                notes.append(
                    f"resources.{key}: ignored (run one worker per GPU/CPU share; workers "
                    "share the study through its storage)"
                )
    search_alg = data.get("search_algorithm")
    if isinstance(search_alg, Mapping):
        for key, value in search_alg.items():
            if key == "n_initial_points":
                study["sampler"]["n_startup_trials"] = int(value)
                notes.append(f"search_algorithm.n_initial_points -> sampler.n_startup_trials ({value})")
            else:
                notes.append(f"search_algorithm.{key}: ignored (Optuna TPE, seeded by seed)")
    transfer = data.get("transfer_learning")
    if isinstance(transfer, Mapping):
        refit: dict[str, Any] = {}
        for old, new in (("top_k", "top_k"), ("ensemble_size", "members"), ("full_epochs", "max_epochs")):
            if old in transfer:
                refit[new] = int(transfer[old])
                notes.append(f"transfer_learning.{old} -> refit.{new} ({refit[new]})")
        study["refit"] = refit
    optimization = data.get("optimization")
    if isinstance(optimization, Mapping):
        for key, value in optimization.items():
            if key == "num_workers":
                base["optimization"]["num_workers"] = value
                notes.append("optimization.num_workers -> optimization.num_workers (accepted, unused)")
            else:
                notes.append(f"optimization.{key}: ignored (no equivalent)")
    handled = {
        "experiment_name",
        "data_path",
        "val_data_path",
        "smiles_column",
        "target_columns",
        "target_weights",
        "seed",
        "patience",
        "warmup_epochs",
        "mlflow_tracking_uri",
        "search_space",
        "asha",
        "resources",
        "search_algorithm",
        "transfer_learning",
        "optimization",
    }
    for key in data:
        if key not in handled:
            notes.append(f"{key}: ignored ({_IGNORED_TOP.get(key, 'no equivalent')})")
    study["base_config"] = {k: v for k, v in base.items() if v}
    study["search_space"] = space
    return study, notes
