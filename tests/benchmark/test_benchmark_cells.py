"""The benchmark table: seeds aggregate by hand-checkable arithmetic, the paired difference
is taken seed by seed, finished cells survive an interruption, and Chemprop's own CLI runs
as a variant on the same strict table."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from test_benchmark_cli import TINY

from admet.benchmark.fang2023 import (
    aggregate,
    code_version,
    head_to_head,
    paired_differences,
    run_benchmark,
)
from admet.errors import ConfigError
from admet.paths import project_root

CONFIG = project_root() / "configs" / "0-experiment" / "ensemble.yaml"


def _cell(variant: str, endpoint: str, seed: int, r: float, mae: float) -> dict:
    return {"variant": variant, "endpoint": endpoint, "seed": seed, "n": 10, "pearson_r": r, "mae": mae}


def test_seeds_aggregate_to_mean_and_sample_sd():
    cells = [_cell("joint", "HLM", s, r, m) for s, (r, m) in enumerate([(0.5, 0.3), (0.7, 0.5), (0.6, 0.4)])]
    (row,) = aggregate(cells)
    assert row["seeds"] == [0, 1, 2]
    assert row["pearson_r"] == pytest.approx(0.6)
    assert row["pearson_r_sd"] == pytest.approx(0.1)  # sqrt(((-.1)^2 + .1^2 + 0) / 2)
    assert row["mae"] == pytest.approx(0.4) and row["mae_sd"] == pytest.approx(0.1)
    (single,) = aggregate(cells[:1])
    assert single["pearson_r"] == 0.5 and math.isnan(single["pearson_r_sd"])


def test_paired_difference_is_taken_per_seed_before_averaging():
    cells = [
        _cell("joint", "rPPB", 0, 0.60, 0.50),
        _cell("joint", "rPPB", 1, 0.70, 0.40),
        _cell("joint", "rPPB", 2, 0.90, 0.10),  # no baseline for seed 2: not paired
        _cell("baseline", "rPPB", 0, 0.50, 0.55),
        _cell("baseline", "rPPB", 1, 0.66, 0.48),
    ]
    (d,) = paired_differences(cells)
    assert d["seeds"] == [0, 1]
    assert d["delta_r"] == pytest.approx(0.07)  # mean of +0.10 and +0.04
    assert d["delta_r_sd"] == pytest.approx(math.sqrt(2 * 0.03**2))  # sd of the paired diffs
    assert d["delta_mae"] == pytest.approx(-0.065)
    assert d["helps"] is True  # 0.07 > 0.042
    # the spread of two independent means would be far larger than the paired spread
    assert aggregate(cells)[0]["pearson_r_sd"] > d["delta_r_sd"]


def test_table_order_follows_variants_and_paper_endpoints_not_finish_order():
    cells = [
        _cell("joint", "rPPB", 0, 0.8, 0.3),
        _cell("chemprop", "HLM", 0, 0.6, 0.4),
        _cell("joint", "HLM", 0, 0.7, 0.4),
    ]
    assert [(r["variant"], r["endpoint"]) for r in aggregate(cells)] == [
        ("joint", "HLM"),
        ("joint", "rPPB"),
        ("chemprop", "HLM"),
    ]


def test_head_to_head_compares_only_shared_endpoints_and_counts_wins():
    cells = [
        _cell("joint", "HLM", 0, 0.70, 0.4),
        _cell("joint", "HLM", 1, 0.60, 0.4),  # seed mean 0.65
        _cell("joint", "Sol", 0, 0.50, 0.4),
        _cell("joint", "rPPB", 0, 0.90, 0.3),  # chemprop has no rPPB: left out of that duel
        _cell("chemprop", "HLM", 0, 0.66, 0.4),
        _cell("chemprop", "Sol", 0, 0.40, 0.4),
    ]
    paper = {"HLM": {"best_r": 0.64}, "Sol": {"best_r": 0.55}, "rPPB": {"best_r": 0.70}}
    duels = {(d["variant"], d["versus"]): d for d in head_to_head(aggregate(cells), paper)}
    d = duels[("joint", "chemprop")]
    assert d["endpoints"] == ["HLM", "Sol"] and d["won"] == ["Sol"]  # 0.65 < 0.66 on HLM
    assert d["mean_r"] == pytest.approx(0.575) and d["versus_mean_r"] == pytest.approx(0.53)
    assert ("chemprop", "joint") not in duels  # the reference is not a contender
    p = duels[("joint", "paper's best")]
    assert p["endpoints"] == ["HLM", "Sol", "rPPB"] and p["won"] == ["HLM", "rPPB"]
    assert duels[("chemprop", "paper's best")]["won"] == ["HLM"]


@pytest.mark.slow
def test_interrupted_run_resumes_without_redoing_finished_cells(fang2023_raw, fang2023_processed, tmp_path):
    kwargs = dict(
        variants=["baseline"],
        processed=fang2023_processed,
        raw=fang2023_raw,
        out=tmp_path / "run",
        endpoints=["rPPB", "hPPB"],
        progress=False,
    )
    first, out = run_benchmark(CONFIG, TINY, budget_minutes=0, **kwargs)  # stops after one cell
    assert not first.complete and len(first.rows) == 1
    assert "Incomplete" in (out / "table.md").read_text()
    line = (out / "cells.jsonl").read_text().splitlines()[0]
    second, _ = run_benchmark(CONFIG, TINY, **kwargs)
    assert second.complete
    lines = (out / "cells.jsonl").read_text().splitlines()
    assert len(lines) == 2 and lines[0] == line  # the finished cell was not trained again
    assert {json.loads(x)["endpoint"] for x in lines} == {"rPPB", "hPPB"}
    # every cell says which code trained it, and the table lists it
    code = json.loads(line)["code"]
    assert code == code_version() and code not in ("", "unknown")
    assert f"Code of the cells: {code}." in (out / "table.md").read_text()
    with pytest.raises(ConfigError, match="different config"):
        run_benchmark(CONFIG, [*TINY, "model.depth=3"], **kwargs)


@pytest.mark.slow
def test_chemprop_cli_variant_scores_the_same_strict_table(fang2023_raw, fang2023_processed, tmp_path):
    result, out = run_benchmark(
        CONFIG,
        [*TINY, "ensemble.n_members=1"],
        variants=["chemprop"],
        processed=fang2023_processed,
        raw=fang2023_raw,
        out=tmp_path / "cp",
        endpoints=["rPPB"],
        progress=False,
    )
    (cell,) = result.rows
    assert cell["variant"] == "chemprop" and cell["n"] == 177
    assert math.isfinite(cell["pearson_r"]) and cell["mae"] > 0
    table = (out / "table.md").read_text()
    assert "Chemprop 2." in table and "| chemprop | rPPB |" in table
    assert (out / "figure.png").stat().st_size > 1000


@pytest.mark.slow
def test_cells_from_other_processes_merge_into_one_table(fang2023_raw, fang2023_processed, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    # seeds 1 and 2 of two variants, as two processes elsewhere wrote them (--seed-offset 1)
    cells = [_cell(v, "rPPB", s, r, 0.5) for v, s, r in [("joint", 1, 0.6), ("joint", 2, 0.7)]]
    cells += [_cell("baseline", "rPPB", s, r, 0.5) for s, r in [(1, 0.55), (2, 0.6)]]
    (out / "cells.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cells))
    kwargs = dict(processed=fang2023_processed, raw=fang2023_raw, out=out, endpoints=["rPPB"], progress=False)
    result, _ = run_benchmark(
        CONFIG, TINY, variants=["joint", "baseline"], seeds=2, seed_offset=1, report_only=True, **kwargs
    )
    assert result.complete and len(result.rows) == 4  # nothing trained, nothing missing
    assert len((out / "cells.jsonl").read_text().splitlines()) == 4
    (d,) = result.to_json()["paired"]
    assert d["seeds"] == [1, 2] and d["delta_r"] == pytest.approx(0.075)
    assert "| joint | rPPB | 2 |" in (out / "table.md").read_text()

    # where the table lies, the device or parallelism of another machine do not change the run
    run = json.loads((out / "run.json").read_text())
    run["config"]["joint"]["data"]["train_file"] = "/elsewhere/fang2023/train.csv"
    run["config"]["joint"]["optimization"]["accelerator"] = "cuda"
    run["config"]["joint"]["ensemble"]["n_jobs"] = 4
    (out / "run.json").write_text(json.dumps(run))
    # a variant new to the run joins it; seed 0 is missing, so the table is incomplete
    more, _ = run_benchmark(CONFIG, TINY, variants=["joint", "chemprop"], seeds=3, report_only=True, **kwargs)
    assert not more.complete and len(more.rows) == 4
    assert set(json.loads((out / "run.json").read_text())["config"]) == {"joint", "baseline", "chemprop"}
    with pytest.raises(ConfigError, match="variant 'joint'"):
        run_benchmark(CONFIG, [*TINY, "model.depth=3"], variants=["joint"], report_only=True, **kwargs)


@pytest.mark.slow
def test_chemprop_cli_runs_without_its_console_script(tmp_path):
    from admet.benchmark.chemprop_cli import chemprop_cli as _chemprop_cli

    cmd = _chemprop_cli(tmp_path)  # no `chemprop` script there, as with pip install --target
    assert cmd[0] == sys.executable
    done = subprocess.run([*cmd, "train", "--help"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "--ensemble-size" in done.stdout


def test_table_names_the_cells_without_a_code_version():
    from admet.benchmark.fang2023 import BenchmarkResult

    rows = [
        {**_cell("joint", "HLM", 0, 0.7, 0.3), "code": "abc1234"},
        _cell("chemprop", "HLM", 0, 0.6, 0.4),
    ]
    text = BenchmarkResult(protocol="strict", rows=rows).to_markdown()
    assert "Code of the cells: abc1234." in text
    assert "1 cell(s) carry no code version (computed before cells recorded it): chemprop HLM seed 0." in text


def test_a_run_started_before_later_config_keys_resumes_and_a_changed_one_does_not(tmp_path):
    """A run folder written before the config gained keys (tier use, validation tiers,
    molecule features, the batch sampler's name) resumes while they hold their defaults;
    the same key set to something else is a different config."""
    from admet.benchmark.cells import check_run
    from admet.config import config_to_dict, load_config

    now = json.loads(json.dumps(config_to_dict(load_config(CONFIG)), default=float))
    before = json.loads(json.dumps(now))
    for section, key in [
        ("data", "tier_use"),
        ("data", "molecule_features"),
        ("data", "descriptor_missing"),
        ("optimization", "validation_qualities"),
        ("joint_sampling", "sampler"),
    ]:
        del before[section][key]
    (tmp_path / "run.json").write_text(json.dumps({"protocol": "strict", "config": {"joint": before}}))
    check_run(tmp_path, "strict", {"joint": now})  # resumes
    changed = json.loads(json.dumps(now))
    changed["data"]["molecule_features"] = ["rdkit_2d"]
    with pytest.raises(ConfigError, match="different config for variant 'joint'"):
        check_run(tmp_path, "strict", {"joint": changed})
