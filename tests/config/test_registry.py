"""The registries of heads, aggregations and samplers at the config layer (no model
imported): names and aliases, the one-line errors for unknown names, and a part
registered here being accepted by every config-level reader without editing their files."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from admet.config import load_config
from admet.config.legacy import convert_ray_tune
from admet.config.registry import AGGREGATIONS, HEADS, SAMPLERS, Registry, sampler_name
from admet.errors import ConfigError


@pytest.fixture
def tiny_head() -> Iterator[str]:
    """A head declared for this test only, with a legacy alias; no builder (config layer)."""
    HEADS.declare("tiny", aliases=("tiny_v0",))
    yield "tiny"
    HEADS.unregister("tiny")


def test_built_in_parts_and_their_chemprop_counterparts():
    assert HEADS.names()[:3] == ("regression", "branched", "moe")
    assert AGGREGATIONS.names()[:3] == ("mean", "sum", "norm")
    assert SAMPLERS.names()[:2] == ("shuffle", "joint")
    assert [HEADS.part(n).chemprop for n in ("regression", "branched", "moe")] == ["regression", None, None]
    assert [AGGREGATIONS.part(n).chemprop for n in ("mean", "sum", "norm")] == ["mean", "sum", "norm"]
    assert HEADS.canonical("MLP") == "regression" and HEADS.canonical("Mixture_Of_Experts") == "moe"
    assert HEADS.resolve("mlp") == "regression" and HEADS.resolve(3) == 3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.ffn_type=nope", "model.ffn_type must be one of regression, branched, moe, got 'nope'"),
        ("model.aggregation=max", "model.aggregation must be mean, sum or norm, got 'max'"),
        ("joint_sampling.sampler=nope", "joint_sampling.sampler must be one of shuffle, joint, got 'nope'"),
    ],
)
def test_unknown_names_are_one_line_errors_naming_key_and_allowed_values(override, message):
    with pytest.raises(ConfigError) as err:
        load_config({}, [override])
    assert str(err.value) == message


def test_a_declared_head_is_accepted_and_its_alias_maps_everywhere(tiny_head):
    assert load_config({}, ["model.ffn_type=tiny"]).model.ffn_type == "tiny"
    assert load_config({"model": {"ffn_type": "TINY_V0"}}).model.ffn_type == "tiny"  # legacy alias
    with pytest.raises(ConfigError, match=r"one of regression, branched, moe, tiny, got 'nope'$"):
        load_config({}, ["model.ffn_type=nope"])
    study, _ = convert_ray_tune(
        {
            "data_path": "t.csv",
            "search_space": {"ffn_type": {"type": "choice", "values": ["tiny_v0", "mlp"]}},
        },
        "x.yaml",
    )
    assert study["search_space"]["model.ffn_type"]["choices"] == ["tiny", "regression"]


def test_registration_refuses_taken_names_and_keeps_declared_metadata():
    reg = Registry("model.widget")
    reg.declare("a", aliases=("old_a",), chemprop="a")
    with pytest.raises(ValueError, match="already registered"):
        reg.declare("old_a")
    with pytest.raises(ValueError, match="declared already"):
        reg.register("a", chemprop=None)(object)
    reg.register("b", aliases=("old_b",))(dict)
    assert reg.part("b").builder is dict and reg.part("b").chemprop is None and reg.canonical("OLD_B") == "b"
    with pytest.raises(LookupError, match="no builder"):
        reg.builder("a")
    reg.unregister("b")
    assert reg.names() == ("a",) and reg.resolve("old_b") == "old_b"


def test_the_sampler_name_defaults_to_joint_sampling_enabled():
    assert sampler_name(load_config({})) == "shuffle"
    assert sampler_name(load_config({}, ["joint_sampling.enabled=true"])) == "joint"
    explicit = load_config({}, ["joint_sampling.sampler=shuffle", "joint_sampling.enabled=true"])
    assert sampler_name(explicit) == "shuffle"  # a set sampler wins
