"""The run configuration schema: OmegaConf structured dataclasses.

One schema drives a single model (:class:`ChempropConfig`) and an ensemble
(:class:`EnsembleConfig`). The sampling fields are grouped under ``joint_sampling``:
task oversampling (``alpha``), the quality curriculum, and how the two compose. The
legacy fields (``optimization.task_sampling_alpha`` and a top-level ``curriculum:`` block)
are not part of these classes; :func:`admet.config.load_config` maps them here.
Loading, overrides and validation live in :mod:`admet.config.loader`; this module imports
nothing from admet (the schema is the root every layer depends on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "COMPOSITION_MODES",
    "ChempropConfig",
    "CurriculumConfig",
    "DataConfig",
    "EnsembleConfig",
    "EnsembleSection",
    "InvalidValue",
    "JointSamplingConfig",
    "MlflowConfig",
    "ModelConfig",
    "OptimizationConfig",
    "TaskOversamplingConfig",
    "check_num_samples",
    "check_task_alpha",
    "schema_for",
]

COMPOSITION_MODES: tuple[str, ...] = ("two_stage", "multiplicative")
FANG2023_TASKS: tuple[str, ...] = ("HLM", "RLM", "MDR1_ER", "Sol", "hPPB", "rPPB")


@dataclass
class DataConfig:
    """Where the training table is and which columns it uses."""

    train_file: str = "data/fang2023/train.csv"
    smiles_col: str = "SMILES"
    target_cols: list[str] = field(default_factory=lambda: list(FANG2023_TASKS))
    # Optional separate validation table; without it a held-out fold of train_file is used.
    val_file: str | None = None
    # Keep a seeded random subset of at most this many rows (quick runs and tests).
    max_molecules: int | None = None
    # Held-out fold for a single model: 1/n_folds of the molecules, split by scaffold or random.
    split: str = "scaffold"
    n_folds: int = 5
    on_invalid_smiles: str = "error"
    # Persist featurised graphs here (None: in-memory cache only).
    featurization_cache_dir: str | None = None
    # A folder of predefined splits, the original project's layout; it replaces train_file
    # and val_file. Either train.csv + validation.csv directly (one model with a fixed
    # validation table) or split_<i>/fold_<j>/ subfolders each holding both (an ensemble:
    # one member per fold, trained on its train.csv, early-stopped on its validation.csv).
    data_dir: str | None = None
    # Indices of the split_<i> / fold_<j> folders to use (None: all of them).
    splits: list[int] | None = None
    folds: list[int] | None = None
    # Predicted after training and written to the model folder (scored where labelled).
    test_file: str | None = None
    blind_file: str | None = None
    # Where `python -m admet.model train` writes when --out is not given.
    output_dir: str | None = None
    # How each quality tier's labels are used (admet.config.tiers): tier -> train (in the
    # endpoint's column, the default), drop (rows left out) or auxiliary_task (in a column
    # of their own, <task>_<tier>, predicted but never scored). Tiers are the names of
    # joint_sampling.curriculum.qualities, read from its quality_col.
    tier_use: dict[str, str] = field(default_factory=dict)
    # Molecule-level descriptors concatenated to the embedding after aggregation, as
    # Chemprop's --molecule-featurizers / --descriptors-path (admet.config.molecule_features):
    # Chemprop featurizer names (rdkit_2d, morgan_binary, ...), minimol, columns:<a>,<b>.
    molecule_features: list[str] = field(default_factory=list)
    # An empty cell of a columns:<a>,<b> descriptor: error (refused) | mean (training mean)
    descriptor_missing: str = "error"


@dataclass
class ModelConfig:
    """Chemprop v2 MPNN architecture."""

    depth: int = 3
    message_hidden_dim: int = 300
    hidden_dim: int = 300
    num_layers: int = 2
    dropout: float = 0.0
    # mean | sum | norm, or another registered aggregation (admet.config.registry)
    aggregation: str = "mean"
    batch_norm: bool = False
    activation: str = "relu"
    # Prediction head: regression (Chemprop's FFN, all tasks from one MLP), branched (a
    # shared trunk, then one MLP head per task) or moe (a softmax-gated mixture of expert
    # FFNs over the molecule embedding), or another registered head (admet.config.registry).
    # hidden_dim/num_layers size each head or expert.
    ffn_type: str = "regression"
    n_experts: int = 4  # moe only
    trunk_n_layers: int = 1  # branched only: layers of the shared trunk
    trunk_hidden_dim: int = 300  # branched only: width of the shared trunk


@dataclass
class OptimizationConfig:
    """Training loop: Noam-style LR schedule, loss, early stopping, seed."""

    max_epochs: int = 50
    batch_size: int = 64
    init_lr: float = 1e-4
    max_lr: float = 1e-3
    final_lr: float = 1e-4
    warmup_epochs: int = 2
    patience: int = 10
    seed: int = 42
    criterion: str = "mae"  # mae | mse
    # Per-task loss weights, aligned with data.target_cols (None: all 1).
    task_weights: list[float] | None = None
    # auto: the first visible GPU when CUDA is available, else the CPU; cuda:K pins GPU K
    # (or run one worker per GPU with CUDA_VISIBLE_DEVICES=K). The training set is packed
    # onto that device once per fit.
    accelerator: str = "auto"
    # Accepted for legacy configs and ignored: batches are gathered in-process from the
    # packed graphs, which is faster than DataLoader worker processes.
    num_workers: int = 0
    # Progress bars of `python -m admet.model train` (--quiet turns them off as well).
    progress_bar: bool = True
    # The quality tiers whose validation labels every monitored metric reads (val_loss,
    # val/mae_macro, early stopping, the curriculum's monitor, the CV score and the study
    # objective); None: all tiers. Per-tier val/mae/<tier> is logged for every tier.
    validation_qualities: list[str] | None = None


@dataclass
class MlflowConfig:
    """MLflow tracking; failures are warnings and never lose a trained model."""

    enabled: bool = False
    # None: MLFLOW_TRACKING_URI, else the SQLite store ./mlflow.db (artifacts in ./mlartifacts/),
    # in ADMET_HOME or the working directory (admet.tracking.default_tracking_uri).
    tracking_uri: str | None = None
    experiment_name: str = "admet"
    run_name: str | None = None
    log_model: bool = True
    # Register the logged model (an MLflow pyfunc) under this name in the model registry.
    registered_model_name: str | None = None


class InvalidValue(ValueError):
    """A config value that breaks its rule; the message says how, without the key, which
    each caller names its own way (the loader's config key, the sampler's argument). A
    value that cannot be converted at all raises the conversion's own error instead."""


def check_task_alpha(alpha: Any) -> float:
    """The task oversampling exponent as a float; the one rule for it, applied by the
    config loader (a :class:`~admet.errors.ConfigError` naming the key) and by
    :class:`~admet.sampling.JointSampler` built directly (a ``ValueError``).

    Raises:
        InvalidValue: NaN or infinite (``"must be finite, got nan"``).
    """
    value = float(alpha)
    if not math.isfinite(value):
        raise InvalidValue(f"must be finite, got {alpha}")
    return value


def check_num_samples(num_samples: Any) -> int | None:
    """Draws per epoch as an int (None: one per training molecule); the one rule for it,
    applied like :func:`check_task_alpha`.

    Raises:
        InvalidValue: zero or negative (``"must be positive, got 0"``).
    """
    if num_samples is None:
        return None
    value = int(num_samples)
    if value <= 0:
        raise InvalidValue(f"must be positive, got {num_samples}")
    return value


@dataclass
class TaskOversamplingConfig:
    """Draw task t with probability proportional to n_t^(-alpha)."""

    alpha: float = 0.5


@dataclass
class CurriculumConfig:
    """Quality curriculum: phase-dependent shares of high/medium/low quality data."""

    enabled: bool = False
    quality_col: str | None = "Quality"
    qualities: list[str] = field(default_factory=lambda: ["high", "medium", "low"])
    # Epochs without improvement of monitor_metric (by more than min_delta) before the
    # next phase starts.
    patience: int = 3
    min_delta: float = 0.0
    # True: weights are divided by each quality's molecule count, so the share of draws
    # per quality follows the phase proportion (exactly without task weighting).
    # False: proportions are per-molecule weights.
    count_normalize: bool = True
    min_high_quality_proportion: float = 0.25
    # Phase name -> proportion per quality (best first); None: built-in defaults.
    phase_proportions: dict[str, list[float]] | None = None
    monitor_metric: str = "val_loss"
    reset_early_stopping_on_phase_change: bool = False


@dataclass
class JointSamplingConfig:
    """How the training DataLoader draws molecules (see JointSampler)."""

    enabled: bool = False
    # The training batch sampler (admet.config.registry.SAMPLERS), whatever enabled says;
    # None: joint when enabled, else shuffle (Chemprop's seeded shuffle).
    sampler: str | None = None
    task_oversampling: TaskOversamplingConfig = field(default_factory=TaskOversamplingConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    # two_stage: pick a task, then a molecule of that task. multiplicative: one weight per
    # molecule = rarest-task weight x curriculum weight.
    composition_mode: str = "two_stage"
    # Draws per epoch (None: number of training molecules).
    num_samples: int | None = None
    # None: optimization.seed.
    seed: int | None = None
    increment_seed_per_epoch: bool = True
    log_weight_stats: bool = True
    log_to_mlflow: bool = True


@dataclass
class ChempropConfig:
    """A single multi-task Chemprop model."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimization: OptimizationConfig = field(default_factory=OptimizationConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    joint_sampling: JointSamplingConfig = field(default_factory=JointSamplingConfig)


@dataclass
class EnsembleSection:
    """Ensemble of members trained on K folds of the training data."""

    n_members: int = 5
    # Number of folds (None: n_members); member k validates on fold k.
    n_folds: int | None = None
    split: str = "scaffold"  # scaffold | random
    seed: int = 0
    # Members trained in parallel processes (bounded by the CPU count).
    n_jobs: int = 1
    # Members trained together in one process as one stacked model (admet.model.stacked):
    # one step for all members instead of one each; n_jobs is then not used. Members the
    # stacked model cannot take (a non-ReLU activation, ...) train one by one.
    batched: bool = True


@dataclass
class EnsembleConfig(ChempropConfig):
    """An ensemble of multi-task Chemprop models."""

    ensemble: EnsembleSection = field(default_factory=EnsembleSection)


def schema_for(raw: dict[str, Any]) -> type[ChempropConfig]:
    """The schema of a raw mapping: an ``ensemble`` section makes it an ensemble config."""
    return EnsembleConfig if "ensemble" in raw else ChempropConfig
