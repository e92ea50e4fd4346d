"""The peer HPO variants: ``chemprop hpopt`` under a wall-clock budget, one trial at a time,
then Chemprop's CLI with its best config; our tuned settings through Chemprop's CLI; and the
paired per-seed comparisons the table reports."""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import json
import math
import subprocess
import sys

import pytest
from conftest import require
from test_benchmark_cli import TINY

from admet.benchmark.chemprop_hpopt import best_so_far, read_trials, run_hpopt
from admet.benchmark.fang2023 import all_paired, run_benchmark
from admet.config import load_config
from admet.model.chemprop_export import chemprop_train_config, head_substitution
from admet.paths import project_root

CONFIG = project_root() / "configs" / "0-experiment" / "ensemble.yaml"
REFIT = project_root() / "benchmarks" / "results" / "fang2023" / "refit-js-cpu-20261126b-trial37.yaml"


def _have_peers() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("ray", "hyperopt"))


def _require_peers() -> None:
    require(_have_peers(), "Ray Tune / hyperopt not installed (pip install -e '.[peers]')")


def _cell(variant: str, endpoint: str, seed: int, r: float, mae: float) -> dict:
    return {"variant": variant, "endpoint": endpoint, "seed": seed, "n": 10, "pearson_r": r, "mae": mae}


def test_every_pair_is_differenced_seed_by_seed_with_the_per_seed_values_kept():
    cells = [
        _cell("joint", "HLM", 0, 0.75, 0.30),
        _cell("joint", "HLM", 1, 0.74, 0.31),
        _cell("joint", "HLM", 2, 0.76, 0.29),
        _cell("chemprop-hpopt", "HLM", 0, 0.70, 0.35),
        _cell("chemprop-hpopt", "HLM", 1, 0.73, 0.33),
        _cell("chemprop-hpopt", "HLM", 2, 0.72, 0.34),
        _cell("chemprop", "HLM", 0, 0.65, 0.37),
    ]
    pairs = all_paired(cells)
    assert list(pairs) == ["joint - chemprop-hpopt", "joint - chemprop"]  # no baseline cells
    (d,) = pairs["joint - chemprop-hpopt"]
    assert d["delta_r_per_seed"] == pytest.approx([0.05, 0.01, 0.04])
    assert d["delta_r"] == pytest.approx(0.1 / 3)
    # sd of (0.05, 0.01, 0.04) with ddof 1: deviations 1/60, -14/600... computed by hand
    mean = 0.1 / 3
    sd = math.sqrt(((0.05 - mean) ** 2 + (0.01 - mean) ** 2 + (0.04 - mean) ** 2) / 2)
    assert d["delta_r_sd"] == pytest.approx(sd) and sd == pytest.approx(0.02082, abs=1e-5)
    assert d["delta_mae_per_seed"] == pytest.approx([-0.05, -0.02, -0.05])
    assert d["helps"] is True  # 0.0333 > 0.0208
    (one,) = pairs["joint - chemprop"]
    assert one["seeds"] == [0] and one["delta_r"] == pytest.approx(0.10) and not one["helps"]


def test_best_so_far_is_a_running_minimum_over_finish_times():
    trials = [
        {"val_loss": 0.9, "finished_at": 110.0},
        {"val_loss": 0.7, "finished_at": 130.0},
        {"val_loss": 0.8, "finished_at": 120.0},
        {"val_loss": 0.75, "finished_at": 140.0},
    ]
    assert best_so_far(trials, started_at=100.0) == [(10.0, 0.9), (20.0, 0.8), (30.0, 0.7), (40.0, 0.7)]


def test_tuned_config_substitutes_the_branched_head_and_says_so():
    cfg = load_config(REFIT)
    assert cfg.model.ffn_type == "branched"
    line = head_substitution(cfg)
    assert line is not None and "'branched'" in line and "3 hidden layer(s) x 256" in line
    text = chemprop_train_config(cfg, substitute_head=True)
    assert "ffn-num-layers = 3" in text and "ffn-hidden-dim = [256]" in text
    assert "#   substituted: model.ffn_type='branched'" in text and "joint sampling" in text
    plain = load_config(CONFIG)
    assert plain.model.ffn_type == "regression" and head_substitution(plain) is None


@pytest.mark.slow
def test_hpopt_variant_without_ray_fails_at_once_in_one_line(tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None; sys.modules['hyperopt'] = None\n"
        "from admet.benchmark.__main__ import main\n"
        f"sys.exit(main(['fang2023', '--variants', 'chemprop-hpopt', '--out', {str(tmp_path)!r}]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "pip install -e '.[peers]'" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert not (tmp_path / "cells.jsonl").exists()  # nothing trained


def test_adapter_pins_the_chemprop_and_ray_internals_it_relies_on():
    _require_peers()
    import chemprop.cli.hpopt as hpopt
    from ray import tune

    from admet.benchmark._hpopt_adapter import budgeted_tune

    # Chemprop builds its TuneConfig through the module attribute `tune` (ray.tune)
    assert hpopt.NO_RAY is False and hpopt.tune is tune
    assert "tune.TuneConfig(" in inspect.getsource(hpopt.tune_model)
    view = budgeted_tune(tune, 42.0, 1)
    config = view.TuneConfig(metric="val_loss", mode="min", num_samples=3)
    assert isinstance(config, tune.TuneConfig)
    assert config.time_budget_s == 42.0 and config.max_concurrent_trials == 1 and config.num_samples == 3
    assert view.choice is tune.choice and view.Tuner is tune.Tuner


@pytest.mark.slow
def test_hpopt_stops_at_its_budget_one_trial_at_a_time(fang2023_raw, fang2023_processed, tmp_path):
    _require_peers()
    import pandas as pd

    table = pd.read_csv(fang2023_processed / "train.csv").head(150)
    targets = ["HLM", "RLM", "MDR1_ER", "Sol", "hPPB", "rPPB"]
    budget_s = 60.0  # a trial starts a Ray Train worker group (about 20 s idle, a minute loaded)
    record = run_hpopt(
        table[["SMILES", *targets]], targets, tmp_path / "hp", epochs=1, budget_minutes=budget_s / 60,
        keywords=["depth"],
    )  # fmt: skip
    log = (tmp_path / "hp" / "hpopt.log").read_text(errors="replace")[-3000:]
    # 10,000 samples asked for: only the budget can have ended it, within Ray's start and stop
    assert 1 <= record["trials_finished"] < 100, log
    assert record["wall_seconds"] < budget_s + 150, log
    trials = read_trials(tmp_path / "hp" / "all_progress.csv")
    assert len(trials) == record["trials_finished"]
    for before, after in itertools.pairwise(trials):  # never two at once
        assert after["finished_at"] - after["seconds"] >= before["finished_at"] - 2.0, log
    assert all(t["config"]["depth"] in range(2, 7) for t in trials)
    assert record["best_config"]["depth"] in ([d] for d in range(2, 7))
    assert record["versions"]["chemprop"].startswith("2.3")
    # read back, not re-run
    again = run_hpopt(table, targets, tmp_path / "hp", epochs=1, budget_minutes=10, keywords=["depth"])
    assert again == json.loads((tmp_path / "hp" / "hpopt.json").read_text())


@pytest.mark.slow
def test_peer_variants_train_chemprop_on_the_strict_table(fang2023_raw, fang2023_processed, tmp_path):
    _require_peers()
    out = tmp_path / "run"
    overrides = [*TINY, "optimization.batch_size=16", "model.ffn_type=branched", "model.trunk_n_layers=1"]
    result, out = run_benchmark(
        CONFIG,
        overrides,
        variants=["chemprop-hpopt", "chemprop-tuned"],
        processed=fang2023_processed,
        raw=fang2023_raw,
        out=out,
        endpoints=["rPPB"],
        progress=False,
        # one trial, however long a loaded machine takes to start Ray's worker group for
        # it (about 20 s idle; over two minutes beside a training): the run ends with it
        hpopt_minutes=10.0,
        hpopt_max_trials=1,
        hpopt_epochs=1,
        hpopt_search=["depth", "dropout"],  # a small space: short trials on any machine
    )
    hp, tuned = result.rows
    assert (hp["variant"], tuned["variant"]) == ("chemprop-hpopt", "chemprop-tuned")
    assert (
        hp["n"] == tuned["n"] == 177 and math.isfinite(hp["pearson_r"]) and math.isfinite(tuned["pearson_r"])
    )
    record = json.loads((out / "chemprop-hpopt" / "hpopt.json").read_text())
    assert hp["hpopt_trials"] == record["trials_finished"] == 1
    assert sorted(record["keywords"]) == ["depth", "dropout"]
    assert record["rows"] == 250  # the whole training table of the config, not a strict subset
    assert tuned["not_expressed"][0].startswith("model.ffn_type='branched'")
    table = (out / "table.md").read_text()
    assert "## chemprop hpopt" in table and "## chemprop-tuned: what Chemprop" in table
    assert "| chemprop-hpopt | rPPB |" in table


def test_time_to_quality_series_by_hand(tmp_path):
    import datetime as dt

    import optuna

    from admet.benchmark.time_to_quality import hpopt_series, optuna_series, write

    t0 = dt.datetime(2026, 1, 1, 12, 0, 0)
    study = optuna.create_study()
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    state = optuna.trial.TrialState
    for start, end, value, st in [(0, 10, 0.5, state.COMPLETE), (10, 14, None, state.PRUNED),
                                  (14, 30, 0.4, state.COMPLETE), (30, 45, 0.45, state.COMPLETE)]:  # fmt: skip
        trial = optuna.trial.create_trial(
            params={"x": 0.1}, distributions=dist, value=value, state=st,
            intermediate_values={0: 0.6} if st == state.PRUNED else None,
        )  # fmt: skip
        trial.datetime_start = t0 + dt.timedelta(minutes=start)
        trial.datetime_complete = t0 + dt.timedelta(minutes=end)
        study.add_trial(trial)
    ours = optuna_series(study)
    assert ours["points"] == [(10.0, 0.5), (14.0, 0.5), (30.0, 0.4), (45.0, 0.4)]
    assert ours["trials_finished"] == 4 and ours["wall_minutes"] == 45.0
    record = {
        "started_at": 1000.0, "wall_seconds": 3600.0, "trials_finished": 2,
        "trials": [{"val_loss": 0.9, "finished_at": 1600.0}, {"val_loss": 0.95, "finished_at": 2200.0}],
    }  # fmt: skip
    peer = hpopt_series(record)
    assert peer["points"] == [(10.0, 0.9), (20.0, 0.9)] and peer["wall_minutes"] == 60.0
    labels = {"ours": "a", "ours_axis": "MAE", "chemprop_hpopt": "b", "chemprop_hpopt_axis": "MSE"}
    png = write(ours, peer, tmp_path / "ttq", labels)
    assert png.stat().st_size > 5000
    assert json.loads((tmp_path / "ttq.json").read_text())["ours"]["points"][2] == [30.0, 0.4]
