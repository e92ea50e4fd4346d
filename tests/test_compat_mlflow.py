"""The behaviour of MLflow's private API that ``admet._compat.mlflow_private`` relies on,
pinned against the installed MLflow: an upgrade that moves or changes it fails here."""

from __future__ import annotations

import mlflow
import pytest

from admet._compat import mlflow_private


def test_mlflow_is_the_version_the_adapter_was_checked_against():
    major, minor = (int(p) for p in mlflow.__version__.split(".")[:2])
    assert (major, minor) == (3, 17), "re-check every pin in this file, then widen pyproject's bound"


def test_the_tracking_uri_holds_inside_the_block_only(tmp_path):
    before = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path / 'inside.db'}"
    with mlflow_private.use_tracking_uri(uri):
        assert mlflow.get_tracking_uri() == uri
    assert mlflow.get_tracking_uri() == before
    with pytest.raises(RuntimeError), mlflow_private.use_tracking_uri(uri):
        raise RuntimeError("boom")
    assert mlflow.get_tracking_uri() == before


def test_blocks_nest(tmp_path):
    outer, inner = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    before = mlflow.get_tracking_uri()
    with mlflow_private.use_tracking_uri(outer):
        with mlflow_private.use_tracking_uri(inner):
            assert mlflow.get_tracking_uri() == inner
        assert mlflow.get_tracking_uri() == outer
    assert mlflow.get_tracking_uri() == before


def test_importing_the_adapter_does_not_import_mlflow():
    import subprocess
    import sys

    code = "import sys, admet._compat.mlflow_private; print('mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_users_mlflow_tracking_uri_variable_survives_the_block(tmp_path, monkeypatch):
    """MLflow's set_tracking_uri writes MLFLOW_TRACKING_URI (and deletes it when restoring
    None): after the block the variable the user set, and so the URI, is back."""
    import os

    theirs = f"sqlite:///{tmp_path / 'theirs.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", theirs)
    with mlflow_private.use_tracking_uri(f"sqlite:///{tmp_path / 'ours.db'}"):
        pass
    assert os.environ["MLFLOW_TRACKING_URI"] == theirs and mlflow.get_tracking_uri() == theirs
