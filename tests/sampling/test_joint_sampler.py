"""JointSampler and its legacy special cases: exact probabilities, draws, seeding, stats."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils.data import DataLoader, TensorDataset

from admet.config import CurriculumPhaseConfig
from admet.sampling import CurriculumState, DynamicCurriculumSampler, JointSampler, TaskAwareSampler

nan = np.nan
# 6 molecules, 3 tasks; overlapping labels; molecule 5 unlabelled.
Y = np.array(
    [
        [1.0, nan, nan],
        [1.0, 2.0, nan],
        [1.0, nan, nan],
        [nan, 2.0, 3.0],
        [1.0, nan, 3.0],
        [nan, nan, nan],
    ]
)
Q = ["high", "medium", "low", "high", "medium", "high"]


def _two_stage_reference(Y, alpha, c):
    """Literal formula: P(i) = sum_t [i in S_t] p_t c_i / sum_{j in S_t} c_j."""
    L = np.isfinite(Y)
    n = L.sum(0)
    tw = np.array([k**-alpha if k > 0 else 0.0 for k in n])
    denom = np.array([sum(c[j] for j in range(len(c)) if L[j, t]) for t in range(L.shape[1])])
    tw = np.where(denom > 0, tw, 0.0)
    p = tw / tw.sum()
    return np.array(
        [sum(p[t] * c[i] / denom[t] for t in range(L.shape[1]) if L[i, t]) for i in range(len(c))]
    )


def _multiplicative_reference(Y, alpha, c):
    L = np.isfinite(Y)
    n = L.sum(0)
    w = np.array(
        [max((n[t] ** -alpha for t in range(L.shape[1]) if L[i, t]), default=0.0) for i in range(len(c))]
    )
    P = w * c
    return P / P.sum()


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_two_stage_without_curriculum_matches_formula(alpha):
    s = JointSampler(Y, task_alpha=alpha, log_weight_stats=False)
    np.testing.assert_allclose(s.probabilities(), _two_stage_reference(Y, alpha, np.ones(6)), atol=1e-15)
    assert s.probabilities()[5] == 0.0
    assert s.probabilities().sum() == pytest.approx(1.0, abs=1e-12)


def test_two_stage_alpha_one_hand_computed():
    # n = [4, 2, 2]; alpha = 1 -> p = [1/4, 1/2, 1/2] / 1.25 = [0.2, 0.4, 0.4]
    P = JointSampler(Y, task_alpha=1.0, log_weight_stats=False).probabilities()
    expected = [0.2 / 4, 0.2 / 4 + 0.4 / 2, 0.2 / 4, 0.4 / 2 + 0.4 / 2, 0.2 / 4 + 0.4 / 2, 0.0]
    np.testing.assert_allclose(P, expected, atol=1e-15)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_multiplicative_without_curriculum_matches_formula(alpha):
    s = JointSampler(Y, task_alpha=alpha, composition_mode="multiplicative", log_weight_stats=False)
    np.testing.assert_allclose(s.probabilities(), _multiplicative_reference(Y, alpha, np.ones(6)), atol=1e-15)


def _state(qualities=("high", "medium", "low"), **kw):
    return CurriculumState(qualities=list(qualities), **kw)


@pytest.mark.parametrize("mode", ["two_stage", "multiplicative"])
@pytest.mark.parametrize("count_normalize", [True, False])
def test_curriculum_weights_match_formula(mode, count_normalize):
    state = _state()
    pi = state.sampling_probs()  # warmup [0.8, 0.15, 0.05]
    m = {q: Q.count(q) for q in pi}
    c = np.array([pi[q] / m[q] if count_normalize else pi[q] for q in Q])
    s = JointSampler(
        Y,
        Q,
        state,
        task_alpha=0.5,
        composition_mode=mode,
        count_normalize=count_normalize,
        log_weight_stats=False,
    )
    ref = (_two_stage_reference if mode == "two_stage" else _multiplicative_reference)(Y, 0.5, c)
    np.testing.assert_allclose(s.probabilities(), ref, atol=1e-15)


def test_count_normalize_makes_quality_shares_equal_phase_proportions():
    # every molecule labelled for one task, so shares are not distorted by unlabelled rows
    rng = np.random.default_rng(0)
    Yd = rng.normal(size=(300, 1))
    qual = rng.choice(["high", "medium", "low"], size=300, p=[0.2, 0.3, 0.5]).tolist()
    state = _state()
    s = JointSampler(
        Yd, qual, state, composition_mode="multiplicative", num_samples=60_000, log_weight_stats=False
    )
    share = s.get_weight_statistics()["quality_share"]
    for q, p in state.sampling_probs().items():
        assert share[q] == pytest.approx(p, abs=1e-12)
    drawn = np.array(qual)[list(s)]
    for q, p in state.sampling_probs().items():
        assert (drawn == q).mean() == pytest.approx(p, abs=0.01)


def test_quality_missing_from_data_is_renormalised_away():
    qual = ["high", "medium", "high", "medium", "high", "medium"]  # no "low"
    state = _state()
    s = JointSampler(np.ones((6, 1)), qual, state, composition_mode="multiplicative", log_weight_stats=False)
    share = s.get_weight_statistics()["quality_share"]
    assert share["low"] == 0.0
    assert share["high"] == pytest.approx(0.80 / 0.95, abs=1e-12)
    assert share["medium"] == pytest.approx(0.15 / 0.95, abs=1e-12)


def test_zero_weight_phase_drops_tasks_and_renormalises():
    config = CurriculumPhaseConfig(
        phase_proportions={"warmup": [1.0, 0.0], "expand": [0.5, 0.5], "polish": [0.75, 0.25]}
    )
    state = CurriculumState(["high", "low"], config=config)
    Yz = np.array([[1.0, nan], [nan, 2.0], [1.0, nan]])
    # task 1's only molecule is low quality -> weight 0 in warmup -> task dropped
    s = JointSampler(Yz, ["high", "low", "high"], state, task_alpha=1.0, log_weight_stats=False)
    np.testing.assert_allclose(s.probabilities(), [0.5, 0.0, 0.5])


def test_task_without_labels_gets_zero_probability_and_warns(caplog):
    Yt = np.column_stack([Y[:, 0], np.full(6, nan)])
    with caplog.at_level(logging.WARNING):
        s = JointSampler(Yt, task_alpha=1.0, task_names=["A", "B"], log_weight_stats=False)
    assert "task 'B' has no labels" in caplog.text
    assert s.get_weight_statistics()["task_share"]["B"] == 0.0
    labelled = np.isfinite(Yt[:, 0])
    np.testing.assert_allclose(s.probabilities()[labelled], 1 / labelled.sum())


def test_all_zero_probability_is_a_clear_error():
    with pytest.raises(ValueError, match="every molecule has sampling probability 0"):
        JointSampler(np.full((3, 2), nan))
    config = CurriculumPhaseConfig(
        phase_proportions={"warmup": [1.0, 0.0], "expand": [0.5, 0.5], "polish": [0.75, 0.25]}
    )
    with pytest.raises(ValueError, match="probability 0"):
        JointSampler(np.ones((2, 1)), ["low", "low"], CurriculumState(["high", "low"], config=config))


@pytest.mark.parametrize("mode", ["two_stage", "multiplicative"])
def test_draws_follow_probabilities_chi_square(mode):
    state = _state()
    s = JointSampler(
        Y, Q, state, task_alpha=0.7, composition_mode=mode, num_samples=50_000, seed=3, log_weight_stats=False
    )
    P = s.probabilities()
    counts = np.bincount(list(s), minlength=6)
    assert counts[P == 0].sum() == 0
    pos = P > 0
    _, pvalue = stats.chisquare(counts[pos], P[pos] * counts.sum())
    assert pvalue > 1e-3


def test_phase_transition_changes_next_epoch_distribution():
    state = _state(patience=1)
    s = JointSampler(Y, Q, state, task_alpha=0.5, num_samples=20_000, log_weight_stats=False)
    before = s.probabilities().copy()
    first = np.bincount(list(s), minlength=6)
    state.update_from_val_top(0, 1.0)
    state.update_from_val_top(1, 1.0)  # no improvement for patience=1 epoch
    assert state.maybe_advance_phase(1) and state.phase == "expand"
    after = s.probabilities()
    assert not np.allclose(before, after)
    second = np.bincount(list(s), minlength=6)
    low = 2  # the only low-quality labelled molecule gains weight in "expand"
    assert after[low] > before[low] and second[low] > first[low]


def test_seeding_reproducible_varies_by_epoch_and_set_epoch():
    a = JointSampler(Y, task_alpha=0.5, seed=11, log_weight_stats=False)
    b = JointSampler(Y, task_alpha=0.5, seed=11, log_weight_stats=False)
    e0, e1 = list(a), list(a)
    assert e0 == list(b) and e1 == list(b)
    assert e0 != e1 and a.epoch == 2
    a.set_epoch(1)
    assert list(a) == e1
    fixed = JointSampler(Y, task_alpha=0.5, seed=11, increment_seed_per_epoch=False, log_weight_stats=False)
    assert list(fixed) == list(fixed) == e0


def test_num_samples_and_len():
    s = JointSampler(Y, num_samples=17, log_weight_stats=False)
    assert len(s) == 17 and len(list(s)) == 17
    assert len(JointSampler(Y, log_weight_stats=False)) == 6


def test_weight_statistics():
    s = JointSampler(Y, task_alpha=1.0, task_names=["A", "B", "C"], log_weight_stats=False)
    st = s.get_weight_statistics()
    P = s.probabilities()
    pos = P[P > 0]
    H = -(pos * np.log(pos)).sum()
    assert st["entropy"] == pytest.approx(H)
    assert st["normalized_entropy"] == pytest.approx(H / np.log(5))
    assert st["effective_samples"] == pytest.approx(1 / (P**2).sum())
    assert (st["min"], st["max"], st["mean"]) == (0.0, pytest.approx(P.max()), pytest.approx(1 / 6))
    assert st["task_share"]["A"] == pytest.approx(P[[0, 1, 2, 4]].sum())
    assert st["phase"] is None


def test_weight_statistics_logged_each_epoch(caplog):
    s = JointSampler(Y, Q, _state(), log_weight_stats=True)
    with caplog.at_level(logging.INFO, logger="admet.sampling.joint"):
        list(s)
        list(s)
    assert caplog.text.count("sampler epoch") == 2 and "phase=warmup" in caplog.text


def test_dataloader_integration():
    ds = TensorDataset(torch.arange(6))
    s = JointSampler(Y, task_alpha=1.0, num_samples=12, seed=0, log_weight_stats=False)
    loader = DataLoader(ds, batch_size=4, sampler=s)
    batches = [b[0].tolist() for b in loader]
    assert sum(map(len, batches)) == 12
    assert 5 not in {i for b in batches for i in b}
    s.set_epoch(0)
    assert [b[0].tolist() for b in loader] == batches


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"targets": np.ones(5)}, "2-D"),
        ({"targets": np.ones((5, 2), dtype=int)}, "float array"),
        ({"composition_mode": "additive"}, "valid: two_stage, multiplicative"),
        ({"task_alpha": float("nan")}, "finite"),
        ({"task_alpha": float("inf")}, "finite"),
        ({"quality_labels": ["high"] * 5, "curriculum_state": "S"}, "5 entries for 6"),
        ({"quality_labels": [*Q[:-1], "excellent"], "curriculum_state": "S"}, "'excellent'"),
        ({"curriculum_state": "S"}, "needs quality_labels"),
        ({"num_samples": 0}, "positive"),
    ],
)
def test_validation_errors(kwargs, match):
    kwargs = {"targets": Y, **kwargs}
    if kwargs.get("curriculum_state") == "S":
        kwargs["curriculum_state"] = _state()
    with pytest.raises(ValueError, match=match):
        JointSampler(**kwargs)


def test_alpha_outside_unit_interval_warns_but_works(caplog):
    with caplog.at_level(logging.WARNING):
        s = JointSampler(Y, task_alpha=1.5, log_weight_stats=False)
    assert "outside [0, 1]" in caplog.text
    np.testing.assert_allclose(s.probabilities(), _two_stage_reference(Y, 1.5, np.ones(6)))


def test_task_aware_sampler_is_two_stage_joint_sampler():
    legacy = TaskAwareSampler(Y, alpha=0.5, seed=5, log_weight_stats=False)
    joint = JointSampler(Y, task_alpha=0.5, seed=5, log_weight_stats=False)
    np.testing.assert_array_equal(legacy.probabilities(), joint.probabilities())
    assert list(legacy) == list(joint)


def test_dynamic_curriculum_sampler_is_curriculum_only():
    state = _state()
    s = DynamicCurriculumSampler(Q, state, seed=1, log_weight_stats=False)
    pi = state.sampling_probs()
    m = {q: Q.count(q) for q in pi}
    np.testing.assert_allclose(s.probabilities(), [pi[q] / m[q] for q in Q])
    with_targets = DynamicCurriculumSampler(Q, state, targets=Y, log_weight_stats=False)
    assert with_targets.probabilities()[5] == 0.0
