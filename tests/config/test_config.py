"""load_config: schema, overrides, unknown keys, invalid combinations, legacy keys; shipped configs."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml

from admet.config import load_config, save_config
from admet.config.schema import ChempropConfig, EnsembleConfig
from admet.errors import ConfigError
from admet.paths import project_root

CONFIGS = sorted((project_root() / "configs").rglob("*.yaml"))


def test_configs_directory_is_not_empty():
    assert len(CONFIGS) >= 4


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(project_root())))
def test_every_shipped_config_loads_in_new_schema_without_warnings(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        cfg = load_config(path)
    assert cfg.joint_sampling.enabled
    assert "task_sampling_alpha" not in path.read_text()


def test_defaults_and_schema_choice():
    single = load_config({})
    assert isinstance(single, ChempropConfig) and not isinstance(single, EnsembleConfig)
    assert single.joint_sampling.composition_mode == "two_stage"
    assert single.joint_sampling.curriculum.monitor_metric == "val_loss"
    ens = load_config({"ensemble": {"n_members": 3}})
    assert isinstance(ens, EnsembleConfig) and ens.ensemble.split == "scaffold"


def test_overrides_are_typed_and_applied():
    cfg = load_config(
        {"ensemble": {}},
        [
            "optimization.max_epochs=2",
            "data.max_molecules=300",
            "joint_sampling.task_oversampling.alpha=0.25",
            "data.target_cols=[HLM, Sol]",
            "mlflow.enabled=false",
        ],
    )
    assert cfg.optimization.max_epochs == 2 and cfg.data.max_molecules == 300
    assert cfg.joint_sampling.task_oversampling.alpha == 0.25
    assert cfg.data.target_cols == ["HLM", "Sol"]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["optimisation.max_epochs=2"], r"unknown config key 'optimisation'; did you mean 'optimization'"),
        (["model.dept=2"], r"unknown config key 'model.dept'; did you mean 'model.depth'"),
        (["joint_sampling.curriculum.patiance=2"], "did you mean 'joint_sampling.curriculum.patience'"),
        (["optimization.max_epochs=many"], "optimization.max_epochs"),
        (["max_epochs"], "expected key=value"),
    ],
)
def test_bad_keys_and_values_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config({}, overrides)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (
            {"joint_sampling": {"enabled": True, "curriculum": {"enabled": True, "quality_col": None}}},
            "quality_col is not set",
        ),
        (
            {"joint_sampling": {"enabled": False, "curriculum": {"enabled": True}}},
            "curriculum.enabled is true but joint_sampling.enabled is false",
        ),
        ({"joint_sampling": {"num_samples": 0}}, "num_samples must be positive"),
        ({"joint_sampling": {"composition_mode": "sum"}}, "valid: two_stage, multiplicative"),
        (
            {
                "joint_sampling": {
                    "enabled": True,
                    "curriculum": {
                        "enabled": True,
                        "qualities": ["high", "low"],
                        "phase_proportions": {
                            "warmup": [0.9, 0.2],
                            "expand": [0.5, 0.5],
                            "polish": [0.5, 0.5],
                        },
                    },
                }
            },
            "phase_proportions.warmup: proportions must sum to 1",
        ),
        ({"model": {"dropout": 1.5}}, "model.dropout"),
        ({"ensemble": {"n_members": 6, "n_folds": 5}}, "exceeds n_folds"),
        ({"optimization": {"task_weights": [1.0]}}, "task_weights has 1 values for 6"),
    ],
)
def test_invalid_combinations_rejected(raw, match):
    with pytest.raises(ConfigError, match=match):
        load_config(raw)


def test_legacy_alpha_maps_to_two_stage_joint_sampling_with_warning():
    with pytest.warns(DeprecationWarning, match="task_sampling_alpha"):
        cfg = load_config({"optimization": {"task_sampling_alpha": 0.3, "max_epochs": 4}})
    js = cfg.joint_sampling
    assert js.enabled and js.task_oversampling.alpha == 0.3 and js.composition_mode == "two_stage"
    assert not js.curriculum.enabled and cfg.optimization.max_epochs == 4
    assert not hasattr(cfg.optimization, "task_sampling_alpha")


def test_legacy_curriculum_block_maps_with_warning():
    with pytest.warns(DeprecationWarning, match="curriculum -> joint_sampling.curriculum"):
        cfg = load_config({"curriculum": {"enabled": True, "patience": 7, "qualities": ["high", "medium"]}})
    assert cfg.joint_sampling.curriculum.patience == 7 and cfg.joint_sampling.enabled


def test_legacy_override_key_also_maps():
    with pytest.warns(DeprecationWarning):
        cfg = load_config({}, ["optimization.task_sampling_alpha=0.9"])
    assert cfg.joint_sampling.task_oversampling.alpha == 0.9


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (
            {
                "optimization": {"task_sampling_alpha": 0.3},
                "joint_sampling": {"task_oversampling": {"alpha": 0.5}},
            },
            "conflicts with",
        ),
        (
            {
                "optimization": {"task_sampling_alpha": 0.3},
                "joint_sampling": {"composition_mode": "multiplicative"},
            },
            "implies two_stage",
        ),
        ({"curriculum": {"patience": 2}, "joint_sampling": {"curriculum": {"patience": 3}}}, "conflicts"),
    ],
)
def test_conflicting_old_and_new_keys(raw, match):
    with pytest.raises(ConfigError, match=match):
        load_config(raw)


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config({"ensemble": {"n_members": 2}}, ["model.depth=4"])
    path = save_config(cfg, tmp_path / "cfg.yaml")
    assert load_config(path) == cfg
    assert yaml.safe_load(path.read_text())["model"]["depth"] == 4


def test_invalid_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  depth: 3\n  hidden_dim: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml, line \d+: invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_one_dotted_key_walker_reads_mappings_and_dataclasses():
    from admet.config import get_dotted, load_config, set_dotted
    from admet.paths import project_root

    tree: dict = {}
    set_dotted(tree, "model.depth", 4)
    set_dotted(tree, "model.dropout", 0.1)
    assert tree == {"model": {"depth": 4, "dropout": 0.1}}
    assert get_dotted(tree, "model.depth") == 4 and get_dotted(tree, "model.width") is None
    cfg = load_config(project_root() / "configs" / "0-experiment" / "ensemble.yaml", ["model.depth=4"])
    assert get_dotted(cfg, "model.depth") == 4 and get_dotted(cfg, "nope.depth") is None
