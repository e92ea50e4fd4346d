"""The examples in the main public entry points' docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

LIGHT = [
    "admet.interrupt",
    "admet.config",
    "admet.config.keys",
    "admet.config.loader",
    "admet.config.phases",
    "admet.config.registry",
    "admet.sampling.curriculum",
    "admet.sampling.joint",
    "admet.data.packed",
    "admet.config.legacy._keys",
    "admet.config.legacy._ray_tune_space",
    "admet.model.heads",
    "admet.model.calibration",
    "admet.config.tiers",
    "admet.data.tiers",
    "admet.model.mpnn",
]
# these train real (tiny) models
HEAVY = ["admet.model.ensemble", "admet.hpo.runner"]


def _run(module_name: str, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ADMET_HOME", str(tmp_path))
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module_name} has no example"
    assert result.failed == 0, f"{result.failed} failing example(s) in {module_name} (see output above)"


@pytest.mark.parametrize("module_name", LIGHT)
def test_light_examples(module_name, monkeypatch, tmp_path):
    _run(module_name, monkeypatch, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("module_name", HEAVY)
def test_training_examples(module_name, monkeypatch, tmp_path):
    _run(module_name, monkeypatch, tmp_path)
