"""CurriculumState and curriculum phases: proportions, advancement, resume."""

from __future__ import annotations

import pytest

from admet.config.phases import CurriculumPhaseConfig, phases_for
from admet.sampling import CurriculumState


@pytest.mark.parametrize(
    ("n", "phases"),
    [
        (1, ("warmup", "polish")),
        (2, ("warmup", "expand", "polish")),
        (3, ("warmup", "expand", "robust", "polish")),
        (4, ("warmup", "expand", "robust", "polish")),
    ],
)
def test_phases_adapt_to_number_of_qualities(n, phases):
    assert phases_for(n) == phases


def test_default_proportions():
    two = CurriculumState(["high", "medium"])
    assert two.sampling_probs() == {"high": 0.85, "medium": 0.15}
    three = CurriculumState(["high", "medium", "low"])
    assert three.proportions["robust"] == [0.50, 0.35, 0.15]
    assert three.proportions["polish"] == [0.70, 0.20, 0.10]
    assert CurriculumState(["only"]).sampling_probs() == {"only": 1.0}


@pytest.mark.parametrize(
    ("props", "match"),
    [
        ({"warmup": [0.9, 0.2], "expand": [0.5, 0.5], "polish": [0.5, 0.5]}, "sum to 1"),
        ({"warmup": [1.1, -0.1], "expand": [0.5, 0.5], "polish": [0.5, 0.5]}, "non-negative"),
        ({"warmup": [0.2, 0.8], "expand": [0.5, 0.5], "polish": [0.5, 0.5]}, "below min_high"),
        ({"warmup": [0.5, 0.5], "polish": [0.5, 0.5]}, r"missing phase\(s\) \['expand'\]"),
        ({"warmup": [1.0], "expand": [0.5, 0.5], "polish": [0.5, 0.5]}, "1 value"),
        (
            {"warmup": [0.5, 0.5], "expand": [0.5, 0.5], "robust": [0.5, 0.5], "polish": [0.5, 0.5]},
            "unknown phase",
        ),
    ],
)
def test_invalid_proportions_are_clear_errors(props, match):
    with pytest.raises(ValueError, match=match):
        CurriculumState(["high", "low"], config=CurriculumPhaseConfig(phase_proportions=props))


def test_sum_tolerance_is_1e_6():
    ok = {"warmup": [0.5, 0.5000005], "expand": [0.5, 0.5], "polish": [0.5, 0.5]}
    CurriculumState(["high", "low"], config=CurriculumPhaseConfig(phase_proportions=ok))
    bad = {"warmup": [0.5, 0.500002], "expand": [0.5, 0.5], "polish": [0.5, 0.5]}
    with pytest.raises(ValueError, match="sum to 1"):
        CurriculumState(["high", "low"], config=CurriculumPhaseConfig(phase_proportions=bad))


def test_no_defaults_for_four_qualities():
    with pytest.raises(ValueError, match="no default phase proportions for 4"):
        CurriculumState(["a", "b", "c", "d"])


def test_phase_advances_after_patience_without_improvement_by_min_delta():
    s = CurriculumState(["high", "medium", "low"], patience=2, min_delta=0.1)
    assert s.update_from_val_top(0, 1.0)
    assert not s.maybe_advance_phase(0)
    assert not s.update_from_val_top(1, 0.95)  # improvement 0.05 <= min_delta
    assert not s.maybe_advance_phase(1)
    assert not s.update_from_val_top(2, 0.99)
    assert s.maybe_advance_phase(2) and s.phase == "expand"
    assert s.update_from_val_top(3, 0.5)  # improvement 0.5 > min_delta
    for epoch in (4, 5):
        s.update_from_val_top(epoch, 0.6)
    assert s.maybe_advance_phase(5) and s.phase == "robust"
    for epoch in (6, 7, 8, 9, 10, 11):
        s.update_from_val_top(epoch, 0.6)
        s.maybe_advance_phase(epoch)
    assert s.phase == "polish" and s.is_last_phase
    assert [p for _, p in s.history] == ["warmup", "expand", "robust", "polish"]


def test_state_dict_round_trip_resumes():
    s = CurriculumState(["high", "low"], patience=1)
    s.update_from_val_top(0, 1.0)
    s.update_from_val_top(1, 1.0)
    s.maybe_advance_phase(1)
    fresh = CurriculumState(["high", "low"], patience=1)
    fresh.load_state_dict(s.state_dict())
    assert fresh.phase == "expand" and fresh.best == 1.0 and fresh.history == s.history
    with pytest.raises(ValueError, match="qualities"):
        CurriculumState(["a", "b"]).load_state_dict(s.state_dict())
