"""Quality tiers in a run config: which tiers the validation metrics read and how each
tier's labels take part in training.

What: the rules of ``optimization.validation_qualities`` (the tiers whose validation labels
every monitored metric reads) and ``data.tier_use`` (tier -> ``train``, ``drop`` or
``auxiliary_task``), checked by :func:`check_tiers` with one-line
:class:`~admet.errors.ConfigError` messages naming the key and the bad value, and the names
of the auxiliary task columns a config adds (:func:`auxiliary_tasks`,
:func:`output_tasks`).

Why here: the names of a model's output columns must be known from the config alone (a
saved model rebuilds its network from ``config.yaml``; an ensemble's members and a study's
trials must agree on them), and validating a config must not import the data layer. The
tiers are the names in ``joint_sampling.curriculum.qualities`` (best first), read from the
table's ``joint_sampling.curriculum.quality_col``; the data layer applies the uses
(:mod:`admet.data.tiers`).
"""

from __future__ import annotations

from typing import Any

from admet.errors import ConfigError

__all__ = [
    "TIER_USES",
    "auxiliary_tasks",
    "check_tiers",
    "output_tasks",
    "tier_names",
    "tier_use",
    "uses_tiers",
]

# train: the tier's labels in the endpoint's column (the JointSampler's curriculum, when
# enabled, phases the tier in); drop: the tier's rows are left out; auxiliary_task: the
# tier's labels in a column of their own, <task>_<tier>, trained on but never scored.
TIER_USES: tuple[str, ...] = ("train", "drop", "auxiliary_task")


def tier_names(cfg: Any) -> list[str]:
    """The quality tiers a config knows, best first (``joint_sampling.curriculum.qualities``)."""
    return [str(q) for q in cfg.joint_sampling.curriculum.qualities]


def tier_use(cfg: Any, tier: str) -> str:
    """What ``tier``'s labels are used for (``train`` unless ``data.tier_use`` says otherwise)."""
    return str((cfg.data.tier_use or {}).get(tier, "train"))


def uses_tiers(cfg: Any) -> bool:
    """Whether the config reads the quality column for validation or tier use (then the
    training table must have it)."""
    return cfg.optimization.validation_qualities is not None or any(
        use != "train" for use in (cfg.data.tier_use or {}).values()
    )


def auxiliary_tasks(cfg: Any) -> list[str]:
    """The auxiliary task columns, ``<task>_<tier>`` for every target column and every tier
    used as ``auxiliary_task`` (tiers best first, then tasks in ``data.target_cols`` order).

    Example:
        >>> from admet.config import load_config
        >>> cfg = load_config({}, ["data.target_cols=[HLM, Sol]", "data.tier_use={low: auxiliary_task}"])
        >>> auxiliary_tasks(cfg), output_tasks(cfg)
        (['HLM_low', 'Sol_low'], ['HLM', 'Sol', 'HLM_low', 'Sol_low'])
    """
    return [
        f"{task}_{tier}"
        for tier in tier_names(cfg)
        if tier_use(cfg, tier) == "auxiliary_task"
        for task in cfg.data.target_cols
    ]


def output_tasks(cfg: Any) -> list[str]:
    """Every column the model predicts: the target columns (scored), then the auxiliary ones."""
    return [*cfg.data.target_cols, *auxiliary_tasks(cfg)]


def _one_of(values: Any) -> str:
    return ", ".join(str(v) for v in values)


def check_tiers(cfg: Any) -> None:
    """Validate ``optimization.validation_qualities`` and ``data.tier_use``.

    Raises:
        ConfigError: one line naming the key and the bad value: an unknown tier, an unknown
            use, an empty list, a validation tier whose labels are dropped or auxiliary, no
            tier left to train on, a tier setting without a quality column, or an
            auxiliary column that clashes with a target column.
    """
    tiers = tier_names(cfg)
    known = f"tiers are {_one_of(tiers)} (joint_sampling.curriculum.qualities)"
    uses = dict(cfg.data.tier_use or {})
    for tier, use in uses.items():
        if tier not in tiers:
            raise ConfigError(f"data.tier_use: unknown tier {tier!r}; {known}")
        if use not in TIER_USES:
            raise ConfigError(f"data.tier_use.{tier}: unknown use {use!r}; valid: {_one_of(TIER_USES)}")
    if uses and all(tier_use(cfg, t) != "train" for t in tiers):
        raise ConfigError(f"data.tier_use: no tier left to train on ({uses})")
    wanted = cfg.optimization.validation_qualities
    if wanted is not None:
        if not wanted:
            raise ConfigError(
                "optimization.validation_qualities must list at least one tier (or be null: all)"
            )
        for tier in wanted:
            if tier not in tiers:
                raise ConfigError(f"optimization.validation_qualities: unknown tier {tier!r}; {known}")
            if tier_use(cfg, tier) != "train":
                raise ConfigError(
                    f"optimization.validation_qualities: tier {tier!r} has no scored labels "
                    f"(data.tier_use.{tier}={tier_use(cfg, tier)})"
                )
    if uses_tiers(cfg) and not cfg.joint_sampling.curriculum.quality_col:
        raise ConfigError(
            "data.tier_use / optimization.validation_qualities need a quality column "
            "(joint_sampling.curriculum.quality_col is not set)"
        )
    clash = sorted(set(auxiliary_tasks(cfg)) & set(cfg.data.target_cols))
    if clash:
        raise ConfigError(f"data.tier_use: auxiliary column {clash[0]!r} is a target column already")
