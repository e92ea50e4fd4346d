"""The fang2023 benchmark (tiny settings) and the ``admet`` console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from admet.benchmark.fang2023 import paper_table, run_benchmark
from admet.errors import ConfigError
from admet.paths import project_root

TINY = [
    "data.max_molecules=250",
    "optimization.max_epochs=1",
    "model.message_hidden_dim=16",
    "model.hidden_dim=16",
    "model.depth=2",
    "ensemble.n_members=2",
    "ensemble.split=random",
]


def test_paper_table_matches_shared_readme(fang2023_raw):
    table = paper_table(fang2023_raw)
    assert table["HLM"]["best_r"] == pytest.approx(0.719, abs=5e-4)
    assert table["MDR1_ER"]["best_r"] == pytest.approx(0.786, abs=5e-4)
    assert table["Sol"]["mpnn2_r"] == pytest.approx(0.651, abs=5e-4)


@pytest.mark.slow
def test_strict_and_imputation_runs_write_tables(fang2023_raw, fang2023_processed, tmp_path):
    config = project_root() / "configs" / "0-experiment" / "ensemble.yaml"
    result, out = run_benchmark(
        config,
        TINY,
        protocol="strict",
        variants=["baseline", "joint"],
        processed=fang2023_processed,
        raw=fang2023_raw,
        out=tmp_path / "s",
        endpoints=["rPPB"],
        progress=False,
    )
    assert [(r["variant"], r["endpoint"]) for r in result.rows] == [("baseline", "rPPB"), ("joint", "rPPB")]
    table = (out / "table.md").read_text()
    assert "per-endpoint strict" in table and "0.680" in table  # the paper's MPNN2 rPPB r
    data = json.loads((out / "table.json").read_text())
    assert data["cells"][0]["n"] == 177 and not data["optimistic"]
    assert data["config"]["baseline"]["joint_sampling"]["enabled"] is False

    result, out = run_benchmark(
        config,
        TINY,
        protocol="imputation",
        processed=fang2023_processed,
        raw=fang2023_raw,
        out=tmp_path / "i",
        endpoints=["Sol", "rPPB"],
        progress=False,
    )
    assert all(r["optimistic"] for r in result.rows)
    assert "IMPUTATION (optimistic)" in (out / "table.md").read_text()


def test_benchmark_rejects_unknown_variant_and_protocol(fang2023_raw):
    with pytest.raises(ConfigError, match="unknown variant"):
        run_benchmark("x.yaml", variants=["fancy"], raw=fang2023_raw)
    with pytest.raises(ConfigError, match="--protocol"):
        run_benchmark("x.yaml", protocol="loose", raw=fang2023_raw)


@pytest.mark.slow
def test_console_script_dispatches_to_areas():
    exe = shutil.which("admet", path=str(project_root() / ".venv" / "bin")) or shutil.which("admet")
    cmd = [exe] if exe else [sys.executable, "-m", "admet.cli"]
    config = project_root() / "configs" / "0-experiment" / "single_model.yaml"
    proc = subprocess.run(
        [*cmd, "config", "validate", str(config)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "joint_sampling:" in proc.stdout
    bad = subprocess.run([*cmd, "nope"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown area 'nope'" in bad.stderr
    for area in ("data", "config", "model", "hpo", "benchmark"):
        help_ = subprocess.run(
            [sys.executable, "-m", f"admet.{area}", "--help"], capture_output=True, text=True, timeout=120
        )
        assert help_.returncode == 0 and "usage:" in help_.stdout
