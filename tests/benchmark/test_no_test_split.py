"""The study, the refit and ``model train`` never open a test split: they run on a processed
fang2023 folder whose ``test_*.csv`` files are gone, and do not bring them back; only the
benchmark needs one, and it says which in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TINY = [
    "n_trials=1",
    "optimization.max_epochs=1",
    "ensemble.n_members=2",
    "ensemble.split=random",
    "data.max_molecules=150",
    "model.depth=2",
    "model.message_hidden_dim=16",
    "model.hidden_dim=16",
    "mlflow.enabled=false",
]


def _run(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ADMET_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("ADMET_HPO_STORAGE", None)
    return subprocess.run(
        [sys.executable, "-m", *argv], capture_output=True, text=True, cwd=home, env=env, timeout=900
    )


def test_study_refit_and_train_run_without_test_splits(fang2023_processed, tmp_path):
    folder = tmp_path / "data" / "fang2023"
    shutil.copytree(fang2023_processed, folder)
    removed = sorted(p.name for p in folder.glob("test_*.csv"))
    assert len(removed) == 6
    for name in removed:
        (folder / name).unlink()

    study = _run(tmp_path, "admet.hpo", "run", "--study", "joint_sampling", "--quiet", *TINY)
    assert study.returncode == 0, study.stderr[-3000:]
    refit = _run(
        tmp_path, "admet.hpo", "refit", "--members", "2", "--max-epochs", "1", "--out", "runs/best",
        "mlflow.enabled=false",
    )  # fmt: skip
    assert refit.returncode == 0, refit.stderr[-3000:]
    export = _run(tmp_path, "admet.hpo", "best", "--export", "best.yaml")
    assert export.returncode == 0, export.stderr[-3000:]
    train = _run(
        tmp_path, "admet.model", "train", "--config", "best.yaml", "--out", "runs/trained",
        "mlflow.enabled=false", "ensemble.n_members=2",
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    assert (tmp_path / "runs" / "best" / "ensemble.json").is_file()
    assert (tmp_path / "runs" / "trained" / "ensemble.json").is_file()
    assert sorted(p.name for p in folder.glob("test_*.csv")) == []  # nothing re-created them

    bench = _run(
        tmp_path, "admet.benchmark", "fang2023", "--config", "runs/best", "--endpoints", "rPPB",
        "--processed", str(folder), "--quiet", "mlflow.enabled=false",
    )  # fmt: skip
    assert bench.returncode != 0
    assert "the rPPB test split is missing" in bench.stderr and "Traceback" not in bench.stderr
    assert len(bench.stderr.strip().splitlines()) == 1, bench.stderr
