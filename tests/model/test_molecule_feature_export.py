"""What Chemprop's CLI needs to reproduce a model with molecule descriptors: the flags of
the note beside the export and the TOML of ``best --chemprop-config`` (no training)."""

from __future__ import annotations

from admet.config import load_config
from admet.model.chemprop_export import chemprop_train_config, descriptor_flags


def test_no_descriptors_no_note():
    assert descriptor_flags([]) is None


def test_chemprop_featurizers_alone_are_named_by_flag():
    note = descriptor_flags(["rdkit_2d", "morgan_binary"])
    assert note is not None
    lines = note.splitlines()
    assert lines[0].endswith("chemprop predict needs --molecule-featurizers to reproduce its predictions.")
    assert lines[1] == "  --molecule-featurizers rdkit_2d morgan_binary"
    assert "--descriptors-path" not in note


def test_file_first_then_chemprop_featurizers_as_chemprop_orders_them():
    note = descriptor_flags(["columns:a,b", "minimol", "rdkit_2d"])
    assert note is not None
    assert "needs --descriptors-path and --molecule-featurizers" in note
    assert "  --molecule-featurizers rdkit_2d" in note
    assert "columns a, b, then minimol side by side" in note


def test_a_chemprop_featurizer_before_a_file_entry_puts_everything_in_the_file():
    note = descriptor_flags(["rdkit_2d", "columns:a"])
    assert note is not None
    assert "needs --descriptors-path to reproduce" in note
    assert "rdkit_2d, then columns a side by side" in note


def test_train_config_names_chemprop_featurizers_or_says_what_it_cannot():
    cfg = load_config({}, ["data.molecule_features=[rdkit_2d, morgan_count]"])
    assert 'molecule-featurizers = ["rdkit_2d", "morgan_count"]' in chemprop_train_config(cfg)
    cfg = load_config({}, ["data.molecule_features=[minimol]"])
    text = chemprop_train_config(cfg)
    assert "molecule-featurizers =" not in text
    assert "#   data.molecule_features=['minimol']: give --descriptors-path" in text
