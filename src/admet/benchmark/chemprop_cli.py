"""Chemprop's own CLI as the benchmark's peer: ``chemprop train`` / ``chemprop predict`` as
subprocesses on a cell's training table and test SMILES, the run's one ``chemprop hpopt``,
and the benchmark config written as a Chemprop TOML (``chemprop-tuned``).

Why here: everything that runs or configures Chemprop's command line, apart from the
cells' orchestration in :mod:`.fang2023`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from admet.config import EnsembleConfig
from admet.errors import DataError
from admet.model.schedule import clamped_warmup

__all__ = [
    "HPOPT_DIR",
    "HPOPT_EPOCHS",
    "HPOPT_MINUTES",
    "TUNED_TOML",
    "chemprop_cli",
    "chemprop_table",
    "hpopt_record",
    "run_chemprop",
    "tuned_config",
]

# our study's budget for the published table (fang2023.md section 1): 1 hour, 15 epochs a trial
HPOPT_MINUTES = 60.0
HPOPT_EPOCHS = 15
HPOPT_DIR = "chemprop-hpopt"
TUNED_TOML = "chemprop-tuned.toml"


def chemprop_cli(bin_dir: Path | None = None) -> list[str]:
    """Chemprop's console script beside this interpreter, else its entry point run by this
    interpreter (``python -m chemprop.cli.main`` would do nothing: the module has no
    ``__main__`` guard, so a package installed without its scripts would "succeed" empty)."""
    exe = (bin_dir or Path(sys.executable).parent) / "chemprop"
    if exe.is_file():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from chemprop.cli.main import main; sys.exit(main())"]


def run_chemprop(
    cfg: EnsembleConfig,
    train: pd.DataFrame,
    test_smiles: Sequence[str],
    endpoint: str,
    seed: int,
    quiet: bool,
    config_path: Path | None = None,
) -> np.ndarray:
    """``chemprop train`` (its defaults, or the hyperparameters in ``config_path``, a
    ``--config-path`` TOML; our models and epochs either way) on ``train`` (multi-task, NaN =
    missing), then ``chemprop predict`` on the test SMILES; returns ``endpoint``'s
    predictions."""
    targets = list(cfg.data.target_cols)
    with tempfile.TemporaryDirectory(prefix="admet-chemprop-") as tmp:
        work = Path(tmp)
        train.to_csv(work / "train.csv", index=False)
        pd.DataFrame({"SMILES": list(test_smiles)}).to_csv(work / "test.csv", index=False)
        common = {"stdout": subprocess.DEVNULL if quiet else None, "stderr": subprocess.PIPE, "text": True}
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        train_cmd = [
            *chemprop_cli(),
            "train",
            "--data-path", str(work / "train.csv"),
            "--task-type", "regression",
            "--smiles-columns", "SMILES",
            "--target-columns", *targets,
            "--epochs", str(cfg.optimization.max_epochs),
            "--ensemble-size", str(cfg.ensemble.n_members),
            # Chemprop's default split holds out 10% as a test set; the benchmark's test
            # split is separate, so train/validation only (90/10, random, as chemprop does)
            "--split-sizes", "0.9", "0.1", "0.0",
            "--data-seed", str(seed),
            "--pytorch-seed", str(seed),
            "--num-workers", "0",
            "--save-dir", str(work / "model"),
        ]  # fmt: skip
        if config_path is None:
            # Chemprop's default 2 warmup epochs, clamped as our models clamp it for short runs
            train_cmd += ["--warmup-epochs", str(clamped_warmup(2, cfg.optimization.max_epochs))]
        else:  # the command line overrides the file's data, epochs, split and seeds only
            train_cmd += ["--config-path", str(config_path)]
        done = subprocess.run(train_cmd, env=env, **common)  # type: ignore[call-overload]
        if done.returncode != 0:
            raise DataError(f"chemprop train failed for {endpoint}: {_last_line(done.stderr)}")
        predict_cmd = [
            *chemprop_cli(),
            "predict",
            "--test-path", str(work / "test.csv"),
            "--smiles-columns", "SMILES",
            "--model-paths", str(work / "model"),
            "--preds-path", str(work / "preds.csv"),
            "--num-workers", "0",
        ]  # fmt: skip
        done = subprocess.run(predict_cmd, env=env, **common)  # type: ignore[call-overload]
        if done.returncode != 0:
            raise DataError(f"chemprop predict failed for {endpoint}: {_last_line(done.stderr)}")
        if not (work / "preds.csv").is_file():
            raise DataError(f"chemprop predict wrote no predictions for {endpoint} (exit 0, no preds.csv)")
        preds = pd.read_csv(work / "preds.csv")
        if endpoint not in preds.columns:
            raise DataError(f"chemprop predict wrote no {endpoint!r} column (columns: {list(preds.columns)})")
        return preds[endpoint].to_numpy(dtype=float)


def chemprop_table(data: Any, rows: Sequence[int] | np.ndarray, targets: Sequence[str]) -> pd.DataFrame:
    """The training rows as the CSV Chemprop's CLI reads: SMILES, then one column per task."""
    table = pd.DataFrame(data.Y[rows], columns=list(targets))
    table.insert(0, "SMILES", [data.smiles[r] for r in rows])
    return table


def hpopt_record(
    out_dir: Path,
    cfg: EnsembleConfig,
    data: Any,
    minutes: float,
    epochs: int,
    search: Sequence[str] | None,
    progress: bool,
    max_trials: int = 10_000,
) -> dict[str, Any]:
    """The run's one ``chemprop hpopt`` (run now, or read back): on the whole training table,
    which the study also searched on; the benchmark's test splits are separate files."""
    from admet.benchmark.chemprop_hpopt import SEARCH_KEYWORDS, run_hpopt

    folder = out_dir / HPOPT_DIR
    if progress and not (folder / "hpopt.json").is_file():
        print(f"[chemprop-hpopt] chemprop hpopt: {minutes:g} min, {epochs} epochs a trial", flush=True)
    table = chemprop_table(data, np.arange(len(data)), cfg.data.target_cols)
    return run_hpopt(
        table,
        list(cfg.data.target_cols),
        folder,
        epochs=epochs,
        budget_minutes=minutes,
        seed=cfg.optimization.seed,
        keywords=list(search or SEARCH_KEYWORDS),
        quiet=not progress,
        max_trials=max_trials,
    )


def tuned_config(out_dir: Path, cfg: EnsembleConfig) -> tuple[Path, list[str]]:
    """The benchmark config's hyperparameters as a Chemprop ``--config-path`` TOML (its
    head substituted where Chemprop has none) and the one-line list of what Chemprop's
    training cannot express (sampling, curriculum, early-stopping metric, folds)."""
    from admet.model import chemprop_train_config, head_substitution

    text = chemprop_train_config(cfg, substitute_head=True)
    path = out_dir / TUNED_TOML
    path.write_text(text)
    notes = [ln.removeprefix("#   ").strip() for ln in text.splitlines() if ln.startswith("#   ")]
    substitution = head_substitution(cfg)
    notes = [n for n in notes if not n.startswith("substituted")]
    return path, ([substitution] if substitution else []) + notes


def _last_line(text: str | None) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no message"
