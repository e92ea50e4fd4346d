"""Files of the original project (fixtures/legacy, written here in its schema) migrate,
load with every key mapped, sample as the original did, and train end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import DRUGS

from admet.config import load_config
from admet.config.legacy import LEGACY_PHASE_PROPORTIONS
from admet.config.schema import EnsembleConfig
from admet.data.training import load_training_data, predefined_folds
from admet.errors import ConfigError, LegacyConfigWarning

FIXTURES = Path(__file__).parent / "fixtures" / "legacy"
EXTRA = ["CCO", "CCN", "CCC", "CCCl", "c1ccccc1", "c1ccccc1O", "c1ccncc1", "CC(=O)O", "CCOC", "OCCO"]
SMILES = list(DRUGS.values()) + EXTRA  # 22 molecules
QUALITY = ["high", "medium", "low"]


def _table(rows: list[int], rng: np.random.Generator, sparse: bool = True) -> pd.DataFrame:
    frame = pd.DataFrame({"SMILES": [SMILES[i] for i in rows]})
    frame["LogD"] = rng.normal(2.0, 1.0, len(rows)).round(3)
    ksol = rng.normal(-4.0, 0.5, len(rows)).round(3)
    if sparse:  # the rarer task: every other molecule unlabelled
        ksol[::2] = np.nan
    frame["Log KSOL"] = ksol
    frame["Quality"] = [QUALITY[i % 3] for i in rows]
    return frame


@pytest.fixture
def legacy_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding the fixture configs and the data they name: a
    split_*/fold_* tree (split_0 with folds 0 and 1, split_1 with fold 0, and an incomplete
    split_0/fold_2), a data_dir with train.csv/validation.csv, test and blind tables."""
    rng = np.random.default_rng(0)
    shutil.copytree(FIXTURES, tmp_path / "configs")
    data = tmp_path / "data"
    for split in (0, 1):
        for fold in (0, 1) if split == 0 else (0,):
            folder = data / "folds" / f"split_{split}" / f"fold_{fold}"
            folder.mkdir(parents=True)
            val = list(range(fold * 6, fold * 6 + 6))
            _table([i for i in range(18) if i not in val], rng).to_csv(folder / "train.csv", index=False)
            _table(val, rng).to_csv(folder / "validation.csv", index=False)
    incomplete = data / "folds" / "split_0" / "fold_2"
    incomplete.mkdir()
    _table(list(range(10)), rng).to_csv(incomplete / "train.csv", index=False)
    (data / "single").mkdir()
    _table(list(range(14)), rng).to_csv(data / "single" / "train.csv", index=False)
    _table(list(range(14, 18)), rng).to_csv(data / "single" / "validation.csv", index=False)
    _table(list(range(18, 22)), rng, sparse=False).to_csv(data / "test.csv", index=False)
    _table(list(range(18, 22)), rng).drop(columns=["LogD", "Log KSOL"]).to_csv(
        data / "blind.csv", index=False
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ADMET_HOME", str(tmp_path))
    return tmp_path


def _cli(module: str, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )
    return proc


def _load(path: Path, *overrides: str):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LegacyConfigWarning)
        cfg = load_config(path, list(overrides))
    return cfg, [str(w.message) for w in caught if issubclass(w.category, LegacyConfigWarning)]


def test_every_legacy_key_maps_onto_the_schema(legacy_home):
    cfg, notes = _load(legacy_home / "configs" / "ensemble_curriculum.yaml")
    assert isinstance(cfg, EnsembleConfig)  # a split_*/fold_* data_dir makes an ensemble
    d, m, o, js = cfg.data, cfg.model, cfg.optimization, cfg.joint_sampling
    assert (d.data_dir, d.test_file, d.blind_file) == ("data/folds", "data/test.csv", "data/blind.csv")
    assert (d.output_dir, d.splits, d.folds) == ("runs/legacy_ensemble", [0], None)
    assert d.target_cols == ["LogD", "Log KSOL"] and o.task_weights == [1.0, 2.5]
    assert (m.aggregation, m.batch_norm, m.ffn_type, m.trunk_hidden_dim) == ("norm", True, "regression", 600)
    assert (o.criterion, o.seed, o.progress_bar, o.num_workers) == ("mse", 12345, False, 0)
    assert cfg.mlflow.enabled is False and cfg.mlflow.experiment_name == "ensemble_curriculum"
    assert cfg.ensemble.n_jobs == 1  # max_parallel
    assert js.enabled and js.task_oversampling.alpha == 0.5 and js.composition_mode == "two_stage"
    cur = js.curriculum
    assert cur.enabled and cur.quality_col == "Quality" and cur.qualities == QUALITY
    assert (cur.patience, cur.count_normalize, js.seed) == (5, False, 42)
    assert cur.phase_proportions == LEGACY_PHASE_PROPORTIONS[3]
    assert cur.reset_early_stopping_on_phase_change is True
    ignored = sorted(n.split(": ")[1] for n in notes if "ignored" in n)
    assert ignored == [
        "curriculum.strategy",
        "inter_task_affinity",
        "joint_sampling.curriculum.log_per_quality_metrics",
        "mlflow.nested",
        "ray_num_cpus",
        "ray_num_gpus",
        "task_affinity",
    ]


def test_heads_aliases_and_quirks_of_the_original(legacy_home):
    moe, _ = _load(legacy_home / "configs" / "single_moe.yaml")
    assert type(moe).__name__ == "ChempropConfig"  # train.csv + validation.csv: one model
    assert (moe.model.ffn_type, moe.model.n_experts, moe.optimization.task_weights) == ("moe", 3, None)
    branched, notes = _load(legacy_home / "configs" / "branched.yaml")
    assert (branched.model.ffn_type, branched.model.trunk_n_layers, branched.optimization.criterion) == (
        "branched",
        2,
        "mse",
    )
    assert any("trunk_n_layers: 0" in n for n in notes)


def test_enabled_feature_section_is_a_one_line_error(legacy_home):
    with pytest.raises(ConfigError, match=r"task_affinity\.enabled is true, but task_affinity is not"):
        load_config(legacy_home / "configs" / "affinity_enabled.yaml")
    proc = _cli("admet.config", "validate", "configs/affinity_enabled.yaml", cwd=legacy_home)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "task_affinity.enabled" in proc.stderr


def test_deprecation_lines_at_the_command_line(legacy_home):
    proc = _cli("admet.config", "validate", "configs/ensemble_curriculum.yaml", cwd=legacy_home)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning:")]
    assert any("mlflow.nested: has no effect here" in ln for ln in lines)
    assert sum("ray_num_cpus" in ln for ln in lines) == 1


def test_every_file_in_a_legacy_tree_migrates_and_keeps_everything_else(legacy_home):
    tree = legacy_home / "configs"
    before = {p.name: yaml.safe_load(p.read_text()) for p in tree.glob("*.yaml")}
    proc = _cli("admet.config", "migrate", str(tree), cwd=legacy_home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "7 file(s): 5 to migrate, 0 failed" in proc.stdout  # 4 run configs + the HPO file
    assert "affinity_enabled.yaml: warning: will not load as is:" in proc.stdout
    assert "ensemble_curriculum.yaml: warning: mlflow.nested: has no effect here" in proc.stdout
    for name, old in before.items():
        new = yaml.safe_load((tree / name).read_text())
        assert "task_sampling_alpha" not in new.get("optimization", {}) and "curriculum" not in new
        for key in set(old) - {"curriculum", "optimization", "search_space"}:
            assert new[key] == old[key], (name, key)  # nothing else lost
    text = (tree / "ensemble_curriculum.yaml").read_text()
    assert "# split_*/fold_*/{train,validation}.csv" in text and "# rare tasks drawn more often" in text
    assert yaml.safe_load((tree / "hpo_ray_tune.yaml").read_text()) == before["hpo_ray_tune.yaml"]
    study = yaml.safe_load((tree / "hpo_ray_tune.study.yaml").read_text())
    assert study["n_trials"] == 2 and study["pruner"]["type"] == "successive_halving"
    # the migrated files mean what the legacy ones meant
    migrated, _ = _load(tree / "ensemble_curriculum.yaml")
    original, _ = _load(FIXTURES / "ensemble_curriculum.yaml")
    assert migrated == original
    again = _cli("admet.config", "migrate", str(tree), "--check", cwd=legacy_home)
    assert again.returncode == 0 and "8 file(s): 0 to migrate, 0 failed" in again.stdout, again.stdout


def _sampler(cfg_path: Path, *overrides: str):
    from admet.model import ChempropModel

    cfg, _ = _load(cfg_path, *overrides)
    train = load_training_data(cfg)
    return ChempropModel(cfg).build_sampler(train), train


def test_legacy_curriculum_samples_per_molecule_with_the_original_proportions(legacy_home):
    sampler, train = _sampler(legacy_home / "configs" / "curriculum_only.yaml")
    assert sampler.curriculum_state.patience == 5 and sampler.seed == 42
    quality = np.array(train.quality)
    for phase, props in LEGACY_PHASE_PROPORTIONS[3].items():
        sampler.curriculum_state.phase_index = sampler.curriculum_state.phases.index(phase)
        # the original: weight = the phase proportion of the molecule's quality, no counts
        weight = np.array([dict(zip(QUALITY, props, strict=True))[q] for q in quality])
        np.testing.assert_allclose(sampler.probabilities(), weight / weight.sum(), rtol=1e-12)


def test_legacy_alpha_only_samples_two_stage(legacy_home):
    sampler, train = _sampler(legacy_home / "configs" / "alpha_only.yaml")
    labelled = np.isfinite(train.Y)
    n = labelled.sum(0)
    task_p = n**-0.5 / (n**-0.5).sum()
    expected = (labelled / n * task_p).sum(1)  # pick a task, then one of its molecules
    np.testing.assert_allclose(sampler.probabilities(), expected, rtol=1e-12)


def test_new_schema_keeps_todays_defaults():
    cfg = load_config({"joint_sampling": {"enabled": True, "curriculum": {"enabled": True}}})
    cur = cfg.joint_sampling.curriculum
    assert (cur.count_normalize, cur.patience, cur.phase_proportions, cfg.joint_sampling.seed) == (
        True,
        3,
        None,
        None,
    )


def test_predefined_folds_follow_splits_and_folds_and_skip_incomplete_folders(legacy_home):
    cfg, _ = _load(legacy_home / "configs" / "ensemble_curriculum.yaml")
    with pytest.warns(UserWarning, match="fold_2: no validation.csv; folder skipped"):
        folds = predefined_folds(cfg)
    assert [f.name for f in folds] == ["split_0/fold_0", "split_0/fold_1"]
    cfg.data.splits = None
    with pytest.warns(UserWarning):
        assert len(predefined_folds(cfg)) == 3
    cfg.data.splits = [2]
    with pytest.raises(Exception, match=r"data.splits asks for \[2\], but only \[0, 1\] exist"):
        predefined_folds(cfg)


@pytest.mark.slow
def test_legacy_ensemble_trains_on_its_folds_and_predicts_test_and_blind(legacy_home):
    proc = _cli("admet.model", "train", "--config", "configs/ensemble_curriculum.yaml", cwd=legacy_home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = legacy_home / "runs" / "legacy_ensemble"  # data.output_dir
    info = json.loads((out / "ensemble.json").read_text())
    assert info["n_members"] == 2  # split_0/fold_0 and split_0/fold_1
    member_cfg = yaml.safe_load((out / "member_0" / "config.yaml").read_text())
    assert member_cfg["data"]["data_dir"] == "data/folds"
    test = pd.read_csv(out / "test_predictions.csv")
    blind = pd.read_csv(out / "blind_predictions.csv")
    assert len(test) == 4 and len(blind) == 4
    for frame in (test, blind):
        preds = frame[[c for c in frame.columns if c.endswith("_pred") or c in ("LogD", "Log KSOL")]]
        assert np.isfinite(frame["LogD_std"]).all() and np.isfinite(preds.select_dtypes(float)).all().all()
    assert {"LogD_pred", "Log KSOL_pred"} <= set(test.columns)  # labelled test: labels kept, scored
    metrics = pd.read_csv(out / "test_metrics.csv", index_col="task")
    assert np.isfinite(metrics.loc["macro", "mae"])
    # each member validated on its own fold's validation.csv
    for k, member in enumerate(info["member_val_metrics"]):
        val = pd.read_csv(legacy_home / f"data/folds/split_0/fold_{k}/validation.csv")
        for task in ("LogD", "Log KSOL"):
            assert member[task]["n"] == val[task].notna().sum()


@pytest.mark.slow
def test_legacy_single_moe_model_trains_with_its_fixed_validation_table(legacy_home):
    proc = _cli("admet.model", "train", "--config", "configs/single_moe.yaml", cwd=legacy_home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = legacy_home / "runs" / "legacy_moe"
    assert (out / "weights.pt").is_file()
    test = pd.read_csv(out / "test_predictions.csv")
    assert np.isfinite(test[["LogD_pred", "Log KSOL_pred"]].to_numpy()).all()


def test_the_originals_later_ray_section_and_mlflow_run_keys(legacy_home):
    raw = yaml.safe_load((FIXTURES / "single_moe.yaml").read_text())
    raw["ray"] = {"max_parallel": 2, "num_cpus": 8, "num_gpus": 1}
    raw["mlflow"].update(run_id=None, parent_run_id=None)
    with pytest.warns(LegacyConfigWarning) as caught:
        cfg = load_config(raw)
    assert isinstance(cfg, EnsembleConfig) and cfg.ensemble.n_jobs == 2
    ignored = {str(w.message).split(": ")[1] for w in caught}
    assert {"ray.num_cpus", "ray.num_gpus", "mlflow.run_id", "mlflow.parent_run_id"} <= ignored


@pytest.mark.slow
def test_every_migrated_run_config_whose_data_exists_trains(legacy_home):
    from admet.model.__main__ import main as model_cli

    tree = legacy_home / "configs"
    assert _cli("admet.config", "migrate", str(tree), cwd=legacy_home).returncode == 0
    tiny = ["model.depth=1", "model.message_hidden_dim=8", "model.hidden_dim=8", "optimization.max_epochs=1"]
    trained = []
    for path in sorted(tree.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        if "search_space" in raw or path.name == "affinity_enabled.yaml":  # studies; refused by design
            continue
        out = legacy_home / "models" / path.stem
        assert model_cli(["train", "--config", str(path), *tiny, "--out", str(out), "--quiet"]) == 0, path
        assert (out / "config.yaml").is_file()
        trained.append(path.stem)
    assert trained == ["alpha_only", "branched", "curriculum_only", "ensemble_curriculum", "single_moe"]
