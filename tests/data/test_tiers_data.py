"""Tier use applied to a table (drop, train, auxiliary_task) and the validation rows of
``optimization.validation_qualities``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from admet.config import load_config
from admet.data import MultitaskDataset, apply_tier_use, load_training_data, validation_rows
from admet.errors import DataError


def _table() -> MultitaskDataset:
    return MultitaskDataset(
        smiles=["C", "CC", "CCC", "CCCC"],
        Y=np.array([[1.0, 10.0], [2.0, np.nan], [3.0, 30.0], [np.nan, 40.0]]),
        task_names=["HLM", "Sol"],
        quality=["high", "medium", "low", "low"],
        extra=pd.DataFrame({"id": ["a", "b", "c", "d"]}),
    )


def _cfg(*overrides: str):
    return load_config({}, ["data.target_cols=[HLM, Sol]", *overrides])


def test_train_is_todays_table():
    ds = _table()
    assert apply_tier_use(ds, _cfg()) is ds
    assert apply_tier_use(ds, _cfg("data.tier_use={low: train}")) is ds


def test_drop_leaves_the_tiers_rows_out():
    out = apply_tier_use(_table(), _cfg("data.tier_use={low: drop}"))
    assert out.smiles == ["C", "CC"] and out.quality == ["high", "medium"]
    assert out.task_names == ["HLM", "Sol"] and list(out.extra["id"]) == ["a", "b"]


def test_auxiliary_task_moves_the_tiers_labels_to_their_own_columns():
    cfg = _cfg("data.tier_use={low: auxiliary_task}")
    out = apply_tier_use(_table(), cfg)
    assert out.task_names == ["HLM", "Sol", "HLM_low", "Sol_low"]
    np.testing.assert_array_equal(
        out.Y,
        [
            [1.0, 10.0, np.nan, np.nan],
            [2.0, np.nan, np.nan, np.nan],
            [np.nan, np.nan, 3.0, 30.0],
            [np.nan, np.nan, np.nan, 40.0],
        ],
    )
    assert out.quality == ["high", "medium", "low", "low"]  # a curriculum still phases them in
    assert apply_tier_use(out, cfg) is out  # applied once, whoever calls it again


def test_validation_rows_are_the_named_tiers():
    ds = _table()
    assert validation_rows(ds, _cfg()) is None
    rows = validation_rows(ds, _cfg("optimization.validation_qualities=[high, medium]"))
    assert rows.tolist() == [True, True, False, False]


def test_tier_settings_on_a_table_without_quality_column_name_the_key(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"SMILES": ["CCO", "CCN"], "HLM": [1.0, 2.0]}).to_csv(path, index=False)
    cfg = load_config({}, [f"data.train_file={path}", "data.target_cols=[HLM]", "data.tier_use={low: drop}"])
    with pytest.raises(
        DataError, match=r"data.tier_use / optimization.validation_qualities need quality column"
    ):
        load_training_data(cfg)
    bare = MultitaskDataset(["C"], np.array([[1.0]]), ["HLM"])
    with pytest.raises(
        DataError, match=r"optimization.validation_qualities needs the table's quality column"
    ):
        validation_rows(
            bare, load_config({}, ["data.target_cols=[HLM]", "optimization.validation_qualities=[high]"])
        )
