"""Data layer: validated multi-task tables, benchmark preparation, CV folds, featurisation."""

from admet.data.dataset import LoadReport, MultitaskDataset, canonical_smiles, load_multitask_csv
from admet.data.featurize import FeaturizationCache, build_molecule_dataset, default_cache
from admet.data.splits import fold_assignment, murcko_scaffold, random_kfold, scaffold_kfold

__all__ = [
    "FeaturizationCache",
    "LoadReport",
    "MultitaskDataset",
    "build_molecule_dataset",
    "canonical_smiles",
    "default_cache",
    "fold_assignment",
    "load_multitask_csv",
    "murcko_scaffold",
    "random_kfold",
    "scaffold_kfold",
]
