"""load_multitask_csv: parsing, validation messages and deduplication."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import DRUGS

from admet.data import canonical_smiles, load_multitask_csv
from admet.errors import DataError


def _rows() -> list[dict[str, object]]:
    return [
        {"SMILES": DRUGS["aspirin"], "A": 1.0, "B": "", "Quality": "high", "Lab": "x"},
        {"SMILES": DRUGS["caffeine"], "A": "", "B": 2.0, "Quality": "medium", "Lab": "y"},
        {"SMILES": DRUGS["ibuprofen"], "A": 3.0, "B": 4.0, "Quality": "high", "Lab": "z"},
    ]


def test_loads_canonical_smiles_targets_quality_and_extra_columns(drug_csv):
    ds = load_multitask_csv(drug_csv(_rows()), "SMILES", ["A", "B"], "Quality")
    assert ds.smiles[0] == canonical_smiles(DRUGS["aspirin"])
    assert ds.Y.shape == (3, 2)
    assert np.isnan(ds.Y[0, 1]) and ds.Y[2, 1] == 4.0
    assert ds.quality == ["high", "medium", "high"]
    assert list(ds.extra["Lab"]) == ["x", "y", "z"]
    assert ds.label_counts() == {"A": 2, "B": 2}


def test_missing_column_lists_existing_columns(drug_csv, tmp_path):
    path = drug_csv(_rows())
    with pytest.raises(DataError, match=r"missing column\(s\) 'C'.*'SMILES', 'A', 'B'") as err:
        load_multitask_csv(path, "SMILES", ["A", "C"])
    assert str(path) in str(err.value)


def test_unparsable_smiles_is_an_error_naming_line_and_value(drug_csv):
    rows = _rows()
    rows[1]["SMILES"] = "C1CC(not a smiles"
    with pytest.raises(DataError, match=r"line 3, column 'SMILES': cannot parse SMILES 'C1CC\(not"):
        load_multitask_csv(drug_csv(rows), "SMILES", ["A", "B"])


def test_unparsable_smiles_can_be_skipped_and_reported(drug_csv, caplog):
    rows = _rows()
    rows[1]["SMILES"] = "XYZ"
    with caplog.at_level(logging.WARNING):
        ds = load_multitask_csv(drug_csv(rows), "SMILES", ["A", "B"], on_invalid_smiles="skip")
    assert len(ds) == 2
    assert ds.report.n_invalid_smiles == 1 and ds.report.invalid_smiles_lines == (3,)
    assert "skipped 1 row(s)" in caplog.text


def test_non_numeric_target_names_line_column_and_value(drug_csv):
    rows = _rows()
    rows[2]["B"] = "n.d."
    with pytest.raises(DataError, match=r"line 4, column 'B': target value 'n.d.' is not a finite"):
        load_multitask_csv(drug_csv(rows), "SMILES", ["A", "B"])


def test_infinite_target_is_rejected(drug_csv):
    rows = _rows()
    rows[0]["A"] = "inf"
    with pytest.raises(DataError, match="line 2, column 'A'"):
        load_multitask_csv(drug_csv(rows), "SMILES", ["A", "B"])


def test_target_column_without_labels(drug_csv):
    rows = [{**r, "C": ""} for r in _rows()]
    with pytest.raises(DataError, match="column 'C': target column has no labels"):
        load_multitask_csv(drug_csv(rows), "SMILES", ["A", "C"])


def test_empty_file_and_header_only(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: file is empty"):
        load_multitask_csv(empty, "SMILES", ["A"])
    header = tmp_path / "header.csv"
    header.write_text("SMILES,A\n")
    with pytest.raises(DataError, match="no data rows"):
        load_multitask_csv(header, "SMILES", ["A"])


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_multitask_csv(tmp_path / "nope.csv", "SMILES", ["A"])


def test_unknown_quality_label(drug_csv):
    rows = _rows()
    rows[1]["Quality"] = "excellent"
    with pytest.raises(DataError, match=r"line 3, column 'Quality': quality 'excellent' is not one of"):
        load_multitask_csv(drug_csv(rows), "SMILES", ["A", "B"], "Quality")


def test_replicates_averaged_and_higher_tier_wins(drug_csv):
    asp = DRUGS["aspirin"]
    rows = [
        {"SMILES": asp, "A": 1.0, "B": "", "Quality": "high"},
        # same molecule written differently, same tier: averaged with the row above
        {"SMILES": "OC(=O)c1ccccc1OC(C)=O", "A": 3.0, "B": "", "Quality": "high"},
        # lower tier: its A is superseded, its B (not measured in high) is kept
        {"SMILES": asp, "A": 10.0, "B": 5.0, "Quality": "medium"},
        # lower tier with only superseded labels: the row disappears
        {"SMILES": asp, "A": 20.0, "B": "", "Quality": "low"},
        {"SMILES": DRUGS["caffeine"], "A": 7.0, "B": "", "Quality": "low"},
    ]
    ds = load_multitask_csv(drug_csv(rows), "SMILES", ["A", "B"], "Quality")
    frame = ds.to_frame().set_index(["SMILES", "Quality"])
    can = canonical_smiles(asp)
    assert frame.loc[(can, "high"), "A"] == pytest.approx(2.0)
    assert np.isnan(frame.loc[(can, "medium"), "A"]) and frame.loc[(can, "medium"), "B"] == 5.0
    assert (can, "low") not in frame.index
    assert len(ds) == 3
    assert ds.report.n_replicates_averaged == 1
    assert ds.report.n_labels_dropped_lower_tier == 2
    assert ds.report.n_rows_dropped_lower_tier == 1


def test_max_rows_subsample_is_seeded(drug_csv):
    rows = [{"SMILES": s, "A": float(i)} for i, s in enumerate(DRUGS.values())]
    path = drug_csv(rows)
    a = load_multitask_csv(path, "SMILES", ["A"], max_rows=5, seed=3)
    b = load_multitask_csv(path, "SMILES", ["A"], max_rows=5, seed=3)
    c = load_multitask_csv(path, "SMILES", ["A"], max_rows=5, seed=4)
    assert a.smiles == b.smiles and len(a) == 5
    assert a.smiles != c.smiles
