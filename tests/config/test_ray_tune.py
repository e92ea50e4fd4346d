"""Ray Tune HPO files of the original project: recognised, converted into study files and
run by ``python -m admet.hpo run --study-file``."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from admet.config.legacy import _ray_tune as ray_tune
from admet.config.legacy import convert_ray_tune, is_ray_tune_file
from admet.errors import ConfigError
from admet.hpo.search_space import suggest_params
from admet.hpo.spec import load_study_spec, studies_dir

# A flat Ray Tune HPO file in the original project's format, every distribution type once.
RAY_TUNE_YAML = """\
experiment_name: legacy_chemprop_hpo
output_dir: /data/models/chemprop-hpo
ray_storage_path: /data/ray/chemprop
mlflow_tracking_uri: http://127.0.0.1:8084
data_path: data/legacy/train.csv
val_data_path: data/legacy/validation.csv
smiles_column: SMILES
target_columns: [LogD, KSOL]
target_weights: [1.0, 2.0]
seed: 7
patience: 4
search_space:
  learning_rate: {type: loguniform, low: 1.0e-4, high: 1.0e-2}
  lr_warmup_ratio: {type: uniform, low: 0.05, high: 0.5}
  lr_final_ratio: {type: loguniform, low: 0.01, high: 1.0}
  dropout: {type: uniform, low: 0.0, high: 0.3}
  batch_size: {type: choice, values: [8, 16]}
  task_sampling_alpha: {type: uniform, low: 0.0, high: 1.0}
  depth: {type: randint, low: 2, high: 6}
  message_hidden_dim: {type: quniform, low: 100, high: 400, q: 100}
  aggregation: {type: choice, values: [mean, sum, norm]}
  ffn_type: {type: choice, values: [mlp, moe, branched]}
  ffn_num_layers: {type: randint, low: 0, high: 3}
  ffn_hidden_dim: {type: qrandint, low: 64, high: 256, q: 64}
  n_experts:
    type: qrandint
    low: 2
    high: 8
    q: 2
    conditional_on: ffn_type
    conditional_values: [moe]
  trunk_depth:
    type: randint
    low: 1
    high: 4
    conditional_on: ffn_type
    conditional_values: [branched]
  trunk_hidden_dim:
    type: choice
    values: [64, 128]
    conditional_on: ffn_type
    conditional_values: [branched]
  weight_decay: {type: loguniform, low: 1.0e-6, high: 1.0e-3}
asha:
  metric: val_mae
  mode: min
  max_t: 40
  grace_period: 5
  reduction_factor: 3
  brackets: 1
resources:
  num_samples: 30
  cpus_per_trial: 4
  gpus_per_trial: 0.25
transfer_learning:
  top_k: 3
  full_epochs: 60
  ensemble_size: 5
"""


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(RAY_TUNE_YAML)


@pytest.fixture
def converted(raw) -> tuple[dict, list[str]]:
    return convert_ray_tune(raw, "configs/hpo_ray_tune.yaml")


def test_recognises_ray_tune_files_but_not_study_files(raw):
    assert is_ray_tune_file(raw)
    assert is_ray_tune_file({"search_space": {"depth": {"type": "qrandint", "low": 2, "high": 8, "q": 2}}})
    assert is_ray_tune_file(
        {"search_space": {"joint_sampling": {"enabled": {"type": "choice", "values": [1]}}}}
    )
    assert is_ray_tune_file({"experiment_name": "x", "asha": {"max_t": 3}})
    study = yaml.safe_load((studies_dir() / "joint_sampling.yaml").read_text())
    assert not is_ray_tune_file(study)
    assert not is_ray_tune_file({"search_space": {"model.depth": {"type": "int", "low": 1, "high": 2}}})
    assert not is_ray_tune_file([])  # type: ignore[arg-type]


def test_search_space_mapping(converted):
    study, notes = converted
    space = study["search_space"]
    assert space["optimization.max_lr"] == {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}
    assert space["optimization.init_lr"] == {
        "type": "float",
        "low": 0.05,
        "high": 0.5,
        "scale_by": "optimization.max_lr",
    }
    assert space["optimization.final_lr"]["log"] is True
    assert space["optimization.final_lr"]["scale_by"] == "optimization.max_lr"
    assert space["model.dropout"] == {"type": "float", "low": 0.0, "high": 0.3}
    assert space["optimization.batch_size"] == {"type": "categorical", "choices": [8, 16]}
    assert space["joint_sampling.task_oversampling.alpha"]["type"] == "float"
    # randint's exclusive high becomes inclusive
    assert space["model.depth"] == {"type": "int", "low": 2, "high": 5}
    # quniform with integral bounds and step: an int with step q
    assert space["model.message_hidden_dim"] == {"type": "int", "low": 100, "high": 400, "step": 100}
    assert space["model.aggregation"]["choices"] == ["mean", "sum", "norm"]
    assert space["model.ffn_type"] == {"type": "categorical", "choices": ["regression", "moe", "branched"]}
    # num_layers must be >= 1: the legacy low of 0 is raised, randint high made inclusive
    assert space["model.num_layers"] == {"type": "int", "low": 1, "high": 2}
    assert space["model.hidden_dim"] == {"type": "int", "low": 64, "high": 256, "step": 64}
    assert space["model.n_experts"] == {
        "type": "int",
        "low": 2,
        "high": 8,
        "step": 2,
        "condition": {"model.ffn_type": ["moe"]},
    }
    assert space["model.trunk_n_layers"] == {
        "type": "int",
        "low": 1,
        "high": 3,
        "condition": {"model.ffn_type": ["branched"]},
    }
    assert space["model.trunk_hidden_dim"]["condition"] == {"model.ffn_type": ["branched"]}
    assert "weight_decay" not in json.dumps(space)
    assert any(n.startswith("search_space.weight_decay: ignored") for n in notes)


def test_mlp_maps_to_regression_in_choices_and_conditions():
    study, _ = convert_ray_tune(
        {
            "data_path": "t.csv",
            "search_space": {
                "ffn_type": {"type": "choice", "values": ["mlp", "mixture_of_experts"]},
                "ffn_hidden_dim": {
                    "type": "choice",
                    "values": [64],
                    "conditional_on": "ffn_type",
                    "conditional_values": ["mlp", "mixture_of_experts"],
                },
            },
        },
        "x.yaml",
    )
    space = study["search_space"]
    assert space["model.ffn_type"]["choices"] == ["regression", "moe"]
    assert space["model.hidden_dim"]["condition"] == {"model.ffn_type": ["regression", "moe"]}


def test_study_level_mapping(converted):
    study, notes = converted
    assert study["name"] == "legacy_chemprop_hpo"
    assert study["n_trials"] == 30 and study["seed"] == 7
    assert study["objectives"] == ["cv_mae_macro"] and study["directions"] == ["minimize"]
    assert study["pruner"] == {"type": "successive_halving", "min_resource": 5, "reduction_factor": 3}
    assert study["refit"] == {"top_k": 3, "members": 5, "max_epochs": 60}
    base = study["base_config"]
    assert base["data"] == {
        "train_file": "data/legacy/train.csv",
        "val_file": "data/legacy/validation.csv",
        "smiles_col": "SMILES",
        "target_cols": ["LogD", "KSOL"],
    }
    assert base["optimization"] == {"task_weights": [1.0, 2.0], "seed": 7, "patience": 4, "max_epochs": 40}
    assert base["mlflow"] == {
        "enabled": True,
        "tracking_uri": "http://127.0.0.1:8084",
        "experiment_name": "legacy_chemprop_hpo",
    }
    assert base["ensemble"]["n_members"] >= 1
    assert base["joint_sampling"] == {"enabled": True}
    # every ignored Ray key is explained in a note
    for key in ("ray_storage_path", "output_dir", "resources.cpus_per_trial", "resources.gpus_per_trial"):
        assert any(n.startswith(f"{key}: ignored") for n in notes), key
    assert any(n.startswith("resources.num_samples -> n_trials") for n in notes)
    assert any(n.startswith("transfer_learning.ensemble_size -> refit.members") for n in notes)
    json.dumps(study)  # plain data


def test_hyperband_when_several_brackets_and_maximize(raw):
    raw["asha"].update(brackets=3, mode="max")
    study, _ = convert_ray_tune(raw, "x.yaml")
    assert study["pruner"] == {
        "type": "hyperband",
        "min_resource": 5,
        "reduction_factor": 3,
        "max_resource": 40,
    }
    assert study["directions"] == ["maximize"]


def test_bad_files_name_the_key(raw):
    with pytest.raises(ConfigError, match="data_path"):
        convert_ray_tune({k: v for k, v in raw.items() if k != "data_path"}, "x.yaml")
    raw["search_space"]["depth"]["type"] = "lognormal"
    with pytest.raises(ConfigError, match=r"search_space\.depth.*lognormal"):
        convert_ray_tune(raw, "x.yaml")


def _write(tmp_path: Path, study: dict) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def test_load_study_spec_accepts_converted_and_raw_files(converted, raw, tmp_path):
    spec = load_study_spec(str(_write(tmp_path, converted[0])))
    assert isinstance(spec.make_pruner(), optuna.pruners.SuccessiveHalvingPruner)
    assert spec.refit == {"top_k": 3, "members": 5, "max_epochs": 60}
    assert spec.search_space["model.n_experts"].condition == (("model.ffn_type", ("moe",)),)
    assert spec.search_space["optimization.init_lr"].scale_by == "optimization.max_lr"
    base = spec.base_run_config()
    assert base.data.train_file == "data/legacy/train.csv" and base.optimization.max_epochs == 40
    record = json.loads(json.dumps(spec.space_record()))
    assert record["model.n_experts"]["condition"] == [["model.ffn_type", ["moe"]]]
    assert record["optimization.init_lr"]["scale_by"] == "optimization.max_lr"
    assert "scale_by" not in record["model.depth"]  # records of older studies are unchanged
    # the Ray Tune file itself is converted on load
    legacy = tmp_path / "hpo_ray_tune.yaml"
    legacy.write_text(RAY_TUNE_YAML)
    direct = load_study_spec(str(legacy), ["n_trials=2"])
    assert direct.name == "legacy_chemprop_hpo" and direct.n_trials == 2
    assert direct.space_record() == spec.space_record()


def test_spec_validation_of_new_fields(converted, tmp_path):
    study = converted[0]
    bad = json.loads(json.dumps(study))
    bad["search_space"]["optimization.init_lr"]["scale_by"] = "optimization.no_such_lr"
    with pytest.raises(ConfigError, match=r"search_space\.optimization\.init_lr: scale_by"):
        load_study_spec(str(_write(tmp_path, bad)))
    bad = json.loads(json.dumps(study))
    bad["refit"]["members"] = 0
    with pytest.raises(ConfigError, match=r"refit\.members"):
        load_study_spec(str(_write(tmp_path, bad)))
    bad = json.loads(json.dumps(study))
    bad["base_config"]["model"] = {"dpeth": 2}
    with pytest.raises(ConfigError, match=r"model\.dpeth") as exc:
        load_study_spec(str(_write(tmp_path, bad)))
    assert "\n" not in str(exc.value)


def test_scale_by_and_list_conditions_when_sampling(converted, tmp_path):
    spec = load_study_spec(str(_write(tmp_path, converted[0])))
    base = spec.base_run_config()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        params = suggest_params(trial, spec, base)
        ratio = trial.params["optimization.init_lr/optimization.max_lr"]
        assert params["optimization.init_lr"] == pytest.approx(params["optimization.max_lr"] * ratio)
        assert params["optimization.final_lr"] == pytest.approx(
            params["optimization.max_lr"] * trial.params["optimization.final_lr/optimization.max_lr"]
        )
        ffn = params["model.ffn_type"]
        seen.add(ffn)
        assert ("model.n_experts" in params) == (ffn == "moe")
        assert ("model.trunk_n_layers" in params) == (ffn == "branched")
        assert ("model.trunk_hidden_dim" in params) == (ffn == "branched")
        if ffn == "moe":
            assert params["model.n_experts"] in (2, 4, 6, 8)
        study.tell(trial, 1.0)
    assert seen == {"regression", "moe", "branched"}
    # scaled by a base-config value when the other key is not searched
    fixed = load_study_spec(str(_write(tmp_path, converted[0])), ["optimization.max_lr=0.002"])
    trial = optuna.create_study().ask()
    params = suggest_params(trial, fixed, fixed.base_run_config())
    ratio = trial.params["optimization.init_lr/optimization.max_lr"]
    assert params["optimization.init_lr"] == pytest.approx(0.002 * ratio)


def test_list_condition_honoured_for_several_values(converted, tmp_path):
    study = json.loads(json.dumps(converted[0]))
    study["search_space"]["model.n_experts"]["condition"] = {"model.ffn_type": ["moe", "branched"]}
    spec = load_study_spec(str(_write(tmp_path, study)))
    base = spec.base_run_config()
    opt = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(30):
        trial = opt.ask()
        params = suggest_params(trial, spec, base)
        assert ("model.n_experts" in params) == (params["model.ffn_type"] in ("moe", "branched"))
        opt.tell(trial, 1.0)


def test_module_examples_run():
    result = doctest.testmod(ray_tune, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


SMILES = [
    "CC(=O)Oc1ccccc1C(=O)O",
    "Cn1c(=O)c2c(ncn2C)n(C)c1=O",
    "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
    "CC(=O)Nc1ccc(O)cc1",
    "COc1ccc2cc(ccc2c1)C(C)C(=O)O",
    "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21",
    "CC(C)NCC(O)COc1cccc2ccccc12",
    "CN(C)C(=N)NC(=N)N",
    "CC(=O)CC(c1ccccc1)c1c(O)c2ccccc2oc1=O",
    "CC(C)NCC(O)COc1ccc(CC(N)=O)cc1",
    "CN1CCC[C@H]1c1cccnc1",
    "CCN(CC)CC(=O)Nc1c(C)cccc1C",
    "c1ccccc1O",
    "c1ccccc1N",
    "Cc1ccccc1C",
    "OCc1ccccc1",
]


@pytest.mark.slow
def test_converted_study_runs_end_to_end(converted, tmp_path):
    csv = tmp_path / "train.csv"
    lines = ["SMILES,LogD,KSOL"] + [
        f"{s},{(i % 5) * 0.3:.2f},{(i % 3) * 0.7 - 1:.2f}" for i, s in enumerate(SMILES)
    ]
    csv.write_text("\n".join(lines) + "\n")
    study = json.loads(json.dumps(converted[0]))
    study["n_trials"] = 2
    base = study["base_config"]
    base["data"].update(train_file=str(csv), val_file=str(csv))
    base["optimization"]["max_epochs"] = 1
    base["mlflow"]["enabled"] = False
    base["ensemble"] = {"n_members": 2, "split": "random"}
    path = _write(tmp_path, study)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    tiny = [
        "model.depth=1",
        "model.message_hidden_dim=8",
        "model.hidden_dim=8",
        "model.num_layers=1",
        "model.n_experts=2",
        "model.trunk_n_layers=1",
        "model.trunk_hidden_dim=8",
        "heartbeat_interval=2",
        "grace_period=6",
    ]
    env = {**os.environ, "ADMET_HOME": str(tmp_path), "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    env.pop("ADMET_HPO_STORAGE", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "admet.hpo",
            "run",
            "--study-file",
            str(path),
            "--storage",
            storage,
            "--quiet",
            *tiny,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    done = optuna.load_study(study_name="legacy_chemprop_hpo", storage=storage)
    finished = [t for t in done.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 2, [t.state.name for t in done.trials]
    for t in finished:
        cfg = t.user_attrs.get("config")
        if cfg:
            ratio = t.params["optimization.init_lr/optimization.max_lr"]
            assert cfg["optimization"]["init_lr"] == pytest.approx(cfg["optimization"]["max_lr"] * ratio)
