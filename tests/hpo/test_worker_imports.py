"""A worker whose objective trains nothing imports neither torch nor Chemprop: the scale
benchmark runs a hundred such workers on one machine, and torch alone is hundreds of MB of
resident memory per process."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

from admet.hpo.spec import load_study_spec

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


def test_benchmark_worker_with_cheap_objective_loads_no_torch(tmp_path):
    spec = load_study_spec("joint_sampling", ["n_trials=2", "mlflow.enabled=false"])
    (tmp_path / "spec.pkl").write_bytes(pickle.dumps(spec))
    result = tmp_path / "worker.json"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env["ADMET_HOME"] = str(tmp_path)
    env.pop("ADMET_HPO_STORAGE", None)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "hpo_workers.py"), "--worker"]
    cmd += [f"sqlite:///{tmp_path / 'studies.db'}", "--sleep", "0", "--spec", str(tmp_path / "spec.pkl")]
    cmd += ["--result", str(result)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    record = json.loads(result.read_text())
    assert record["error"] is None
    assert len(record["tell"]) == 2  # the budget of two trials ran, each told once
    assert record["heavy_modules"] == []  # torch, chemprop, lightning: none in sys.modules


def test_runner_imports_no_torch_until_an_objective_trains():
    code = "import sys, admet.hpo.runner; print([m for m in ('torch', 'chemprop') if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


def test_runner_and_objective_name_the_worker_alike():
    """failure_streak matches a worker's trials by the name the objective stamps on them."""
    import os
    import socket

    from admet.hpo import objective, runner

    assert runner.worker_id is objective.worker_id
    assert runner.worker_id() == f"{socket.gethostname()}-{os.getpid()}"


def test_catch_has_torch_out_of_memory_once_torch_is_loaded():
    import torch

    from admet.hpo import runner

    assert torch.OutOfMemoryError in runner._catch()
    assert torch.OutOfMemoryError in runner.CATCH
