"""Study definitions: loading, validation, overrides and the stick-breaking curriculum space."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from admet.config.phases import CurriculumPhaseConfig, phases_for
from admet.errors import ConfigError
from admet.hpo.search_space import suggest_params
from admet.hpo.spec import available_studies, load_study_spec
from admet.paths import project_root

BASE = project_root() / "configs" / "2-hpo-ensemble" / "base.yaml"


def test_joint_sampling_study_declares_the_required_space():
    spec = load_study_spec("joint_sampling")
    assert "joint_sampling" in available_studies()
    space = spec.search_space
    alpha = space["joint_sampling.task_oversampling.alpha"]
    assert (alpha.type, alpha.low, alpha.high) == ("float", 0.0, 1.0)
    assert set(space["joint_sampling.composition_mode"].choices) == {"two_stage", "multiplicative"}
    assert set(space["joint_sampling.curriculum.enabled"].choices) == {True, False}
    assert space["joint_sampling.curriculum.phase_proportions"].condition == (
        ("joint_sampling.curriculum.enabled", True),
    )
    for key in (
        "model.depth",
        "model.message_hidden_dim",
        "model.hidden_dim",
        "model.num_layers",
        "model.dropout",
        "optimization.max_lr",
        "optimization.batch_size",
    ):
        assert key in space
    assert spec.directions == ["minimize"] and isinstance(spec.make_sampler(), optuna.samplers.TPESampler)
    assert isinstance(spec.make_pruner(), optuna.pruners.MedianPruner)


def test_overrides_split_between_study_and_base_config_and_fix_parameters():
    spec = load_study_spec(
        "joint_sampling",
        [
            "n_trials=4",
            "seed=7",
            "heartbeat_interval=5",
            "grace_period=20",
            "optimization.max_epochs=2",
            "model.depth=3",
        ],
    )
    assert (spec.n_trials, spec.seed, spec.heartbeat_interval, spec.grace_period) == (4, 7, 5, 20)
    assert "model.depth" not in spec.search_space  # fixed by the override
    base = spec.base_run_config()
    assert base.optimization.max_epochs == 2 and base.model.depth == 3

    def first(sampler):
        return optuna.create_study(sampler=sampler).ask().suggest_float("x", 0, 1)

    other = load_study_spec("joint_sampling", ["seed=10"])
    assert first(spec.make_sampler(worker_index=3)) == first(other.make_sampler(0))  # seed + index
    assert first(spec.make_sampler(0)) != first(spec.make_sampler(1))


def test_stick_breaking_proportions_are_always_valid():
    spec = load_study_spec("joint_sampling", ["joint_sampling.curriculum.qualities=[high, medium, low]"])
    base = spec.base_run_config()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_enabled = 0
    for _ in range(60):
        trial = study.ask()
        params = suggest_params(trial, spec, base)
        props = params.get("joint_sampling.curriculum.phase_proportions")
        if params["joint_sampling.curriculum.enabled"]:
            seen_enabled += 1
            assert set(props) == set(phases_for(3))
            CurriculumPhaseConfig(props, 0.25).resolve(["high", "medium", "low"])  # raises if invalid
            assert trial.params["curriculum.warmup.high"] == pytest.approx(props["warmup"][0])
            assert "curriculum.robust.medium_of_rest" in trial.params
        else:
            assert props is None and not any(k.startswith("curriculum.") for k in trial.params)
        study.tell(trial, 0.0)
    assert 10 < seen_enabled < 50


def _write_study(tmp_path: Path, space: str, extra: str = "") -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\nbase_config: {BASE}\n{extra}search_space:\n{space}")
    return path


@pytest.mark.parametrize(
    ("space", "match"),
    [
        ("  model.depth: {type: int, low: 5, high: 2}\n", r"search_space\.model\.depth: needs low <= high"),
        (
            "  optimization.max_lr: {type: float, low: 0.0, high: 1.0, log: true}\n",
            r"search_space\.optimization\.max_lr: log scale needs low > 0",
        ),
        ("  model.depth: {type: integer, low: 1, high: 2}\n", r"search_space\.model\.depth: type 'integer'"),
        ("  model.widht: {type: int, low: 1, high: 2}\n", r"unknown config key 'model\.widht'"),
        ("  model.aggregation: {type: categorical, choices: []}\n", r"search_space\.model\.aggregation"),
        (
            "  model.depth: {type: int, low: 1, high: 3, condition: {nope: 1}}\n",
            r"search_space\.model\.depth: condition on unknown parameter 'nope'",
        ),
        (
            "  optimization.max_lr: {type: float, low: 0.001, high: 0.01, log: true, step: 0.001}\n",
            r"search_space\.optimization\.max_lr: 'step' cannot be combined with 'log'",
        ),
        (
            "  model.depth: {type: int, low: 1, high: 5, step: 1.5}\n",
            r"search_space\.model\.depth: an int parameter needs an integer step",
        ),
        ("  model.dropout: {type: float, low: 0.0, high: 0.3, step: 0}\n", r"step must be a positive number"),
    ],
)
def test_invalid_search_space_names_the_parameter(tmp_path, space, match):
    with pytest.raises(ConfigError, match=match):
        load_study_spec(str(_write_study(tmp_path, space)))


def test_unknown_study_lists_available_ones():
    with pytest.raises(ConfigError, match=r"unknown study 'nope'; available: .*joint_sampling"):
        load_study_spec("nope")


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["model.dept=3"], "did you mean 'model.depth'"),
        (["n_trials=0"], "n_trials must be a positive integer"),
        (["directions=[maximize]"], "cannot be overridden"),
    ],
)
def test_bad_overrides(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_study_spec("joint_sampling", overrides).base_run_config()


def test_unknown_study_key_and_objective(tmp_path):
    space = "  model.depth: {type: int, low: 1, high: 3}\n"
    with pytest.raises(ConfigError, match="unknown study key 'n_trails'; did you mean 'n_trials'"):
        load_study_spec(str(_write_study(tmp_path, space, "n_trails: 3\n")))
    with pytest.raises(ConfigError, match="unknown objective 'auc'"):
        load_study_spec(str(_write_study(tmp_path, space, "objectives: [auc]\ndirections: [maximize]\n")))


def test_every_sample_of_the_study_space_is_a_valid_config():
    """The search space is valid by construction: 60 random draws all load."""
    from admet.config import config_to_dict, load_config, set_dotted

    spec = load_study_spec("joint_sampling")
    base = spec.base_run_config()
    new = ("model.aggregation", "model.batch_norm", "optimization.criterion", "optimization.warmup_epochs")
    for key in new:
        assert key in spec.search_space
    assert set(spec.search_space["model.aggregation"].choices) == {"mean", "sum", "norm"}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        params = suggest_params(trial, spec, base)
        tree = config_to_dict(base)
        for key, value in params.items():
            set_dotted(tree, key, value)
        cfg = load_config(tree)
        seen.add((cfg.model.aggregation, cfg.optimization.criterion))
        study.tell(trial, 1.0)
    assert len(seen) == 6  # every aggregation with both losses was drawn


def test_an_edited_search_space_is_refused_before_any_trial(tmp_path):
    from admet.hpo.runner import create_or_load_study

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    space = (
        "  model.depth: {type: int, low: 2, high: 4}\n"
        "  model.hidden_dim: {type: categorical, choices: [64]}\n"
    )
    first = load_study_spec(str(_write_study(tmp_path, space)))
    study = create_or_load_study(first, url, with_heartbeat=False)
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=1.0))
    same = create_or_load_study(
        load_study_spec(str(_write_study(tmp_path, space))), url, with_heartbeat=False
    )
    assert len(same.trials) == 1

    edited = load_study_spec(str(_write_study(tmp_path, space.replace("[64]", "[64, 128]"))))
    with pytest.raises(
        ConfigError, match=r"parameter 'model\.hidden_dim' changed.*name=s_2.*--allow-space-change"
    ):
        create_or_load_study(edited, url, with_heartbeat=False)
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 1  # nothing was created
    mixed = create_or_load_study(edited, url, with_heartbeat=False, allow_space_change=True)
    assert mixed.user_attrs["search_space"]["model.hidden_dim"]["choices"] == [64, 128]
    create_or_load_study(edited, url, with_heartbeat=False)  # the edit is now the study's space


def test_the_tiers_study_samples_every_tier_use_as_a_valid_config():
    """studies/tiers.yaml: drop, train, train with the curriculum and auxiliary_task for the
    low tier, each a valid run config scored on the high tier only."""
    from admet.config import load_config
    from admet.config.tiers import output_tasks

    spec = load_study_spec("tiers")
    base = spec.base_run_config()
    assert base.optimization.validation_qualities == ["high"]
    assert list(base.joint_sampling.curriculum.qualities) == ["high", "medium", "low"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        params = suggest_params(trial, spec, base)
        cfg = load_config(base, params)  # as the objective builds a trial's config
        use = cfg.data.tier_use["low"]
        curriculum = cfg.joint_sampling.curriculum.enabled
        assert use == "train" or not curriculum  # the curriculum is searched with train only
        assert (len(output_tasks(cfg)) > 6) == (use == "auxiliary_task")
        if curriculum:
            assert len(cfg.joint_sampling.curriculum.phase_proportions["warmup"]) == 3
        seen.add((use, curriculum))
        study.tell(trial, 1.0)
    assert seen == {("drop", False), ("train", False), ("train", True), ("auxiliary_task", False)}
