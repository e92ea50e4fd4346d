"""``data.tier_use`` and ``optimization.validation_qualities``: one-line errors naming the key
and the bad value, the auxiliary column names, and config hashes unchanged by the new keys."""

from __future__ import annotations

import pytest

from admet.config import config_hash, load_config
from admet.config.tiers import auxiliary_tasks, output_tasks, uses_tiers
from admet.errors import ConfigError


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["data.tier_use={lowest: drop}"],
            "data.tier_use: unknown tier 'lowest'; tiers are high, medium, low",
        ),
        (
            ["data.tier_use={low: aux}"],
            "data.tier_use.low: unknown use 'aux'; valid: train, drop, auxiliary_task",
        ),
        (
            ["optimization.validation_qualities=[hihg]"],
            "optimization.validation_qualities: unknown tier 'hihg'; tiers are high, medium, low",
        ),
        (
            ["optimization.validation_qualities=[]"],
            "optimization.validation_qualities must list at least one",
        ),
        (
            ["optimization.validation_qualities=[low]", "data.tier_use={low: auxiliary_task}"],
            "tier 'low' has no scored labels (data.tier_use.low=auxiliary_task)",
        ),
        (["data.tier_use={high: drop, medium: drop, low: drop}"], "data.tier_use: no tier left to train on"),
        (
            ["data.tier_use={low: drop}", "joint_sampling.curriculum.quality_col=null"],
            "need a quality column",
        ),
        (
            ["data.target_cols=[HLM, HLM_low]", "data.tier_use={low: auxiliary_task}"],
            "auxiliary column 'HLM_low' is a target column already",
        ),
    ],
)
def test_bad_tier_settings_give_one_line_errors_naming_key_and_value(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config({}, overrides)
    text = str(err.value)
    assert message in text and "\n" not in text


def test_tiers_are_the_curriculum_qualities_and_auxiliary_columns_follow_the_targets():
    cfg = load_config(
        {},
        [
            "data.target_cols=[HLM, Sol]",
            "joint_sampling.curriculum.qualities=[gold, silver, bronze]",
            "data.tier_use={bronze: auxiliary_task, silver: auxiliary_task}",
            "optimization.validation_qualities=[gold]",
        ],
    )
    assert auxiliary_tasks(cfg) == ["HLM_silver", "Sol_silver", "HLM_bronze", "Sol_bronze"]
    assert output_tasks(cfg)[:2] == ["HLM", "Sol"] and uses_tiers(cfg)
    default = load_config({})
    assert output_tasks(default) == list(default.data.target_cols) and not uses_tiers(default)
    # "train" everywhere is today's behaviour, spelled out
    assert not uses_tiers(load_config({}, ["data.tier_use={low: train}"]))


def test_the_new_keys_at_their_defaults_leave_config_hashes_as_they_were():
    base = load_config({"ensemble": {"n_members": 3}})
    assert config_hash(base) == "1bf75fc9e806e326"  # pinned in tests/hpo/test_hpo_units.py
    spelled = load_config(base, {"data.tier_use": {}, "optimization.validation_qualities": None})
    assert config_hash(spelled) == config_hash(base)
    assert config_hash(load_config(base, {"data.tier_use": {"low": "drop"}})) != config_hash(base)
    assert config_hash(load_config(base, {"optimization.validation_qualities": ["high"]})) != config_hash(
        base
    )
