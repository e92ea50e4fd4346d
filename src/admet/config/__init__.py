"""Configuration layer: the run-config schema (plain dataclasses), curriculum phases,
loading with ``key=value`` overrides and the legacy schema, and migration.

Importing it needs no torch or Lightning, so validating a config is cheap.

Example:
    >>> from admet.config import load_config
    >>> cfg = load_config({"ensemble": {"n_members": 3}}, ["model.depth=4"])
    >>> type(cfg).__name__, cfg.model.depth, cfg.ensemble.n_members
    ('EnsembleConfig', 4, 3)
"""

from admet.config.identity import LATER_KEYS, config_hash, without_unset_later_keys
from admet.config.loader import (
    apply_legacy,
    config_to_dict,
    get_dotted,
    load_config,
    parse_overrides,
    read_yaml,
    save_config,
    set_dotted,
)
from admet.config.phases import CurriculumPhaseConfig, phases_for
from admet.config.schema import (
    COMPOSITION_MODES,
    ChempropConfig,
    CurriculumConfig,
    DataConfig,
    EnsembleConfig,
    EnsembleSection,
    JointSamplingConfig,
    MlflowConfig,
    ModelConfig,
    OptimizationConfig,
    TaskOversamplingConfig,
    schema_for,
)

__all__ = [
    "COMPOSITION_MODES",
    "LATER_KEYS",
    "ChempropConfig",
    "CurriculumConfig",
    "CurriculumPhaseConfig",
    "DataConfig",
    "EnsembleConfig",
    "EnsembleSection",
    "JointSamplingConfig",
    "MlflowConfig",
    "ModelConfig",
    "OptimizationConfig",
    "TaskOversamplingConfig",
    "apply_legacy",
    "config_hash",
    "config_to_dict",
    "get_dotted",
    "load_config",
    "parse_overrides",
    "phases_for",
    "read_yaml",
    "save_config",
    "schema_for",
    "set_dotted",
    "without_unset_later_keys",
]
