"""Data layer: validated multi-task tables, benchmark preparation, CV folds, featurisation,
and turning a run config's ``data`` section into training data."""

from admet.data.dataset import LoadReport, MultitaskDataset, canonical_smiles, load_multitask_csv
from admet.data.featurize import (
    FeaturizationCache,
    build_molecule_dataset,
    default_cache,
    pack_graphs,
    unpack_graphs,
)
from admet.data.splits import fold_assignment, murcko_scaffold, random_kfold, scaffold_kfold
from admet.data.tiers import apply_tier_use, validation_rows
from admet.data.training import (
    PredefinedFold,
    holdout_split,
    load_training_data,
    load_validation_data,
    predefined_folds,
    resolve_path,
)

__all__ = [
    "FeaturizationCache",
    "LoadReport",
    "MultitaskDataset",
    "PredefinedFold",
    "apply_tier_use",
    "build_molecule_dataset",
    "canonical_smiles",
    "default_cache",
    "fold_assignment",
    "holdout_split",
    "load_multitask_csv",
    "load_training_data",
    "load_validation_data",
    "murcko_scaffold",
    "pack_graphs",
    "predefined_folds",
    "random_kfold",
    "resolve_path",
    "scaffold_kfold",
    "unpack_graphs",
    "validation_rows",
]
