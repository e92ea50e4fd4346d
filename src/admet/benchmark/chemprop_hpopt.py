"""Chemprop's own HPO, ``chemprop hpopt``, as the peer our study is measured against.

What: :func:`run_hpopt` runs ``chemprop hpopt`` (Ray Tune, hyperopt search, the ASHA
scheduler, Chemprop's own search space) on a training table under a wall-clock budget and
returns a record of what it did: every finished trial with its validation loss and when it
finished, the wall time, the exact command and the best config as the TOML that ``chemprop
train --config-path`` reads. The record is written to ``hpopt.json`` in its folder and read
back instead of re-running, so a benchmark run that stops after the HPO resumes with its
cells.

Why these settings (``HPOPT_SETTINGS``; measured on a 2-core CPU machine with Ray 2.60):
Chemprop sizes each trial's Ray Train worker from ``--raytune-num-cpus /
--raytune-max-concurrent-trials`` and each trial also holds one CPU of its own, so with Ray
started on the machine's 2 cores no trial is ever placed (Ray Train v2 times out waiting
for its worker group). Ray is told of 4 logical CPUs with 2 per worker, which places one
trial's worker at a time with 2 torch threads, the two real cores; the adapter
(:mod:`admet.benchmark._hpopt_adapter`) adds Ray Tune's own ``max_concurrent_trials=1``
and ``time_budget_s``, which Chemprop's CLI cannot set. Chemprop 2.3 reports to Tune once
per trial (after its inner trainer finishes), so ASHA sees one result per trial and stops
none early; the record counts the results each trial reported, so this shows in it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from admet.errors import ConfigError, DataError

__all__ = [
    "HPOPT_SETTINGS",
    "INSTALL_HINT",
    "SEARCH_KEYWORDS",
    "best_so_far",
    "hpopt_command",
    "read_trials",
    "require_hpopt",
    "run_hpopt",
]

INSTALL_HINT = "chemprop-hpopt needs Ray Tune and hyperopt: pip install -e '.[peers]'"
RECORD = "hpopt.json"
# What our study searches, where Chemprop can: depth, hidden sizes, FFN layers, dropout
# ("basic"), max LR with init/final LR ratios and warmup epochs ("learning_rate"),
# aggregation (with its norm) and batch size.
SEARCH_KEYWORDS = ("basic", "learning_rate", "aggregation", "aggregation_norm", "batch_size")
# Ray settings that make hpopt place trials on a 2-core machine (module docstring).
HPOPT_SETTINGS = {
    "--raytune-num-cpus": "4",
    "--raytune-max-concurrent-trials": "2",
    "--raytune-search-algorithm": "hyperopt",
    "--raytune-trial-scheduler": "AsyncHyperBand",
    "--num-workers": "0",
}


def require_hpopt() -> None:
    """Fail at once, in one line, when Ray Tune or hyperopt is missing."""
    import importlib.util

    missing = [m for m in ("ray.tune", "hyperopt") if _find(m, importlib.util.find_spec) is None]
    if missing:
        raise ConfigError(f"{INSTALL_HINT} (missing: {', '.join(missing)})")


def _find(module: str, find_spec: Any) -> Any:
    try:
        return find_spec(module)
    except (ImportError, ValueError):
        return None


def hpopt_command(
    train_csv: Path,
    targets: Sequence[str],
    out_dir: Path,
    *,
    epochs: int,
    budget_seconds: float,
    seed: int = 0,
    keywords: Sequence[str] = SEARCH_KEYWORDS,
    num_samples: int = 10_000,
    initial_points: int = 8,
    grace_period: int = 1,
) -> list[str]:
    """The command line of one budgeted ``chemprop hpopt`` run (train/validation 90/10,
    random, as the ``chemprop`` variant splits; no test split: the benchmark's is separate).
    Chemprop searches warmup epochs only for runs of 6 epochs or more; shorter runs search
    the learning rates without it."""
    if epochs < 6 and "learning_rate" in keywords:
        lr = ["max_lr", "init_lr_ratio", "final_lr_ratio"]
        keywords = [k for k in keywords if k != "learning_rate"] + lr
    args = [
        "--data-path", str(train_csv),
        "--task-type", "regression",
        "--smiles-columns", "SMILES",
        "--target-columns", *targets,
        "--epochs", str(epochs),
        "--split-sizes", "0.9", "0.1", "0.0",
        "--data-seed", str(seed),
        "--pytorch-seed", str(seed),
        "--search-parameter-keywords", *keywords,
        "--raytune-num-samples", str(num_samples),
        "--raytune-grace-period", str(grace_period),
        "--hyperopt-n-initial-points", str(initial_points),
        "--hyperopt-random-state-seed", str(seed),
        "--raytune-temp-dir", str(out_dir / "ray"),
        "--hpopt-save-dir", str(out_dir),
    ]  # fmt: skip
    # Chemprop's default 2 warmup epochs, clamped as the chemprop variant clamps it (a
    # searched warmup overrides it per trial)
    args += ["--warmup-epochs", str(min(2, epochs - 1))]
    for key, value in HPOPT_SETTINGS.items():
        args += [key, value]
    return [
        sys.executable, "-m", "admet.benchmark._hpopt_adapter",
        "--budget-seconds", f"{budget_seconds:g}", "--", *args,
    ]  # fmt: skip


def read_trials(progress_csv: Path) -> list[dict[str, Any]]:
    """Chemprop's ``all_progress.csv`` as one dict per trial: id, validation loss (its
    tracking metric: MSE on standardised targets), when it finished (UNIX seconds), its
    seconds of training, the results it reported to Tune, and its sampled config."""
    if not progress_csv.is_file():
        return []
    frame = pd.read_csv(progress_csv)
    trials = []
    for row in frame.to_dict("records"):
        loss = row.get("val_loss")
        if loss is None or not math.isfinite(float(loss)):
            continue  # stopped by the budget before it reported
        config = {k.split("/", 1)[1]: _plain(v) for k, v in row.items() if k.startswith("config/")}
        trials.append(
            {
                "trial_id": str(row["trial_id"]),
                "val_loss": float(loss),
                "finished_at": float(row["timestamp"]),
                "seconds": float(row.get("time_total_s", math.nan)),
                "results_reported": int(row.get("training_iteration", 1)),
                "epochs": int(row.get("epoch", -1)) + 1,
                "config": config,
            }
        )
    return sorted(trials, key=lambda t: t["finished_at"])


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def best_so_far(trials: Sequence[dict[str, Any]], started_at: float) -> list[tuple[float, float]]:
    """(seconds since the start, best validation loss so far) at each trial that finished."""
    out, best = [], math.inf
    for t in sorted(trials, key=lambda t: t["finished_at"]):
        best = min(best, t["val_loss"])
        out.append((t["finished_at"] - started_at, best))
    return out


def run_hpopt(
    table: pd.DataFrame,
    targets: Sequence[str],
    out_dir: Path,
    *,
    epochs: int,
    budget_minutes: float,
    seed: int = 0,
    keywords: Sequence[str] = SEARCH_KEYWORDS,
    quiet: bool = True,
    max_trials: int = 10_000,
) -> dict[str, Any]:
    """Run (or read back) one budgeted ``chemprop hpopt`` on ``table`` (``SMILES`` and the
    target columns); returns the record (module docstring). Its log is ``hpopt.log``."""
    record_path = out_dir / RECORD
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        asked = {"keywords": sorted(keywords), "epochs_per_trial": epochs}
        had = {"keywords": sorted(record.get("keywords", [])), "epochs_per_trial": record["epochs_per_trial"]}
        if asked != had:
            raise ConfigError(
                f"{record_path}: this run's chemprop hpopt searched {had}, not {asked}; use a new --run"
            )
        return record
    require_hpopt()
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / "hpopt.log"
    # the table (built from the shared data), Ray's sockets (a path of at most 107 bytes)
    # and hpopt's checkpoints stay in a scratch folder; its small outputs are kept
    with tempfile.TemporaryDirectory(prefix="admet-hpopt-") as tmp:
        work = Path(tmp)
        train_csv = work / "train.csv"
        table.to_csv(train_csv, index=False)
        cmd = hpopt_command(
            train_csv,
            targets,
            work,
            epochs=epochs,
            budget_seconds=budget_minutes * 60,
            seed=seed,
            keywords=keywords,
            num_samples=max_trials,  # the budget ends the run long before the default
        )
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "RAY_DEDUP_LOGS": "0"}
        started = time.time()
        with log.open("w") as fh:
            done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=work)
        wall = time.time() - started
        for name in ("best_config.toml", "all_progress.csv"):
            if (work / name).is_file():
                shutil.copy2(work / name, out_dir / name)
    best_toml = out_dir / "best_config.toml"
    trials = read_trials(out_dir / "all_progress.csv")
    if not best_toml.is_file() and not trials and wall >= budget_minutes * 60:
        raise DataError(
            f"chemprop hpopt finished no trial in {budget_minutes:g} min ({epochs} epochs a trial); give it "
            f"more time (--hpopt-minutes) or a smaller search space (--hpopt-search); see {log}"
        )
    if done.returncode != 0 or not best_toml.is_file():
        raise DataError(f"chemprop hpopt failed (exit {done.returncode}); see {log}: {_tail(log)}")
    best = tomllib.loads(_toml_text(best_toml))
    record = {
        "command": ["chemprop", "hpopt", *(a.replace(tmp, "$WORK") for a in cmd[cmd.index("--") + 1 :])],
        "budget_seconds": budget_minutes * 60,
        "wall_seconds": wall,
        "started_at": started,
        "epochs_per_trial": epochs,
        "keywords": list(keywords),
        "trials_finished": len(trials),
        "best_val_loss": min((t["val_loss"] for t in trials), default=math.nan),
        "best_config": {k: best[k] for k in _SEARCHED_KEYS if k in best},
        "trials": trials,
        "versions": _versions(),
        "rows": len(table),
    }
    record_path.write_text(json.dumps(record, indent=1, default=float))
    return record


# The best_config.toml keys that hpopt's search sets (the rest are the run's own settings).
_SEARCHED_KEYS = (
    "depth",
    "message-hidden-dim",
    "ffn-hidden-dim",
    "ffn-num-layers",
    "dropout",
    "aggregation",
    "aggregation-norm",
    "batch-size",
    "init-lr",
    "max-lr",
    "final-lr",
    "warmup-epochs",
    "activation",
)


def _toml_text(path: Path) -> str:
    """Chemprop writes bare strings in its TOML lists (``[SMILES]``); quote them so that a
    strict TOML reader accepts the file."""
    import re

    def quote(match: re.Match[str]) -> str:
        items = [s.strip() for s in match.group(1).split(",")]
        return "[" + ", ".join(s if _is_toml_value(s) else json.dumps(s) for s in items) + "]"

    lines = []
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        value = value.strip()
        if sep and value.startswith("["):
            value = re.sub(r"\[(.*)\]", quote, value)
        elif sep and not _is_toml_value(value):
            value = json.dumps(value)
        lines.append(f"{key.strip()} = {value}" if sep else line)
    return "\n".join(lines) + "\n"


def _is_toml_value(text: str) -> bool:
    if text in ("true", "false") or text.startswith(('"', "'", "[")):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("chemprop", "ray", "hyperopt"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


def _tail(path: Path) -> str:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"
