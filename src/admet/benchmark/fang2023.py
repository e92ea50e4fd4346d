"""Score ensembles on the fang2023 test splits next to the paper's published table.

Protocols (see the shared README):

``strict`` (default)
    for each endpoint E, an ensemble is trained on the training table minus E's test
    molecules (matched by structure, InChIKey: :mod:`admet.benchmark.strict`) and scored on
    E's test split; nothing it was scored on was seen in training. Each cell records the
    count and a fingerprint of the molecules it trained on.
``imputation``
    one ensemble trained on the whole training table scores every test split. Most test
    molecules of one endpoint are training molecules of another, so this is optimistic and
    is labelled so in every output.

Variants, side by side in one run: ``baseline`` (the config with a plain shuffle),
``joint`` (the config's joint sampling) and ``chemprop`` (Chemprop's own CLI, ``chemprop
train`` then ``chemprop predict`` as subprocesses, with its default hyperparameters and
the config's number of models and epochs, on exactly the same training table and test
split); ``chemprop-hpopt`` and ``chemprop-tuned`` (:mod:`.chemprop_cli`); and, on the table
``prepare fang2023 --augment low`` writes (``--processed``), the four ways to use its low
quality tier, ``tiers-drop``, ``tiers-train``, ``tiers-curriculum`` and ``tiers-aux``, each
paired with ``tiers-drop`` seed by seed (a strict cell leaves the endpoint's test structures
out of every tier). Every (variant, endpoint, seed) cell is appended to ``cells.jsonl`` in the run
folder as soon as it finishes; running the same ``--run`` again skips finished cells, so a
long table fills over several sittings, and ``budget_minutes`` stops cleanly after the
cell in progress. ``table.md``, ``table.json`` and ``figure.png`` summarise the cells: mean
and sample standard deviation (ddof 1) over seeds of Pearson r and MAE, the paper's MPNN2
(variant 0) and best-in-table r, and the paired difference joint minus baseline per
endpoint, computed seed by seed before averaging.

Modules: :mod:`.cells` (variants, the cell store), :mod:`.stats` (seed statistics, the
paper's table), :mod:`.report` (``table.md``, ``table.json``, ``figure.png``),
:mod:`.provenance` (code version), :mod:`.chemprop_cli` (Chemprop's CLI as the peer); this
module runs the cells (:func:`run_benchmark`) and re-exports the public names.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from admet.benchmark.cells import CELLS_FILE, PROTOCOLS, VARIANTS, check_run, load_cells
from admet.benchmark.chemprop_cli import (
    HPOPT_DIR,
    HPOPT_EPOCHS,
    HPOPT_MINUTES,
    chemprop_table,
    hpopt_record,
    run_chemprop,
    tuned_config,
)
from admet.benchmark.provenance import chemprop_version, code_version
from admet.benchmark.report import BenchmarkResult
from admet.benchmark.stats import (
    PAIRS,
    aggregate,
    all_paired,
    endpoint_uncertainty,
    head_to_head,
    paired_differences,
    paper_table,
)
from admet.benchmark.strict import strict_rows, structure_keys, training_fingerprint
from admet.config import EnsembleConfig, config_to_dict, load_config
from admet.data import apply_tier_use, fang2023, load_training_data
from admet.errors import ConfigError, DataError
from admet.model import ChempropEnsemble, ConsoleStatus, task_metrics
from admet.paths import home, raw_dataset_dir

__all__ = [
    "PAIRS",
    "PROTOCOLS",
    "VARIANTS",
    "BenchmarkResult",
    "aggregate",
    "all_paired",
    "code_version",
    "head_to_head",
    "paired_differences",
    "paper_table",
    "run_benchmark",
]


def resolve_config(config: str | Path) -> Path:
    """A config YAML, or a model folder (``hpo refit``, ``model train``) holding one."""
    path = Path(config)
    if path.is_dir():
        if not (path / "config.yaml").is_file():
            raise ConfigError(f"{path}: a model folder needs a config.yaml")
        return path / "config.yaml"
    return path


def test_split(folder: Path, endpoint: str) -> pd.DataFrame:
    """The benchmark's test split of ``endpoint`` (only the benchmark reads one)."""
    path = folder / f"test_{endpoint}.csv"
    if not path.is_file():
        raise DataError(
            f"{path}: the {endpoint} test split is missing; run python -m admet.data prepare fang2023 "
            f"--out {folder}"
        )
    return pd.read_csv(path)


def run_benchmark(
    config: str | Path,
    overrides: Sequence[str] = (),
    protocol: str = "strict",
    variants: Sequence[str] = ("joint",),
    processed: str | Path | None = None,
    raw: str | Path | None = None,
    out: str | Path | None = None,
    run_name: str | None = None,
    endpoints: Sequence[str] | None = None,
    progress: bool = True,
    seeds: int = 1,
    budget_minutes: float | None = None,
    seed_offset: int = 0,
    report_only: bool = False,
    hpopt_minutes: float = HPOPT_MINUTES,
    hpopt_epochs: int = HPOPT_EPOCHS,
    hpopt_search: Sequence[str] | None = None,
    hpopt_max_trials: int = 10_000,
) -> tuple[BenchmarkResult, Path]:
    """Train and score every (variant, endpoint, seed) cell not yet in the run folder;
    returns the result over all finished cells and the folder.

    Seeds are numbered ``seed_offset .. seed_offset + seeds - 1`` (seed k adds k to the
    config's seeds), so the cells of one table can be computed by several processes or
    machines and their ``cells.jsonl`` lines appended to one run folder. ``report_only``
    trains nothing and rewrites the table, JSON and figure from the finished cells.

    ``chemprop-hpopt`` first runs ``chemprop hpopt`` once per run folder on the whole
    training table (``hpopt_minutes`` of wall clock, ``hpopt_epochs`` a trial; never a test
    split; ``hpopt_max_trials`` ends it sooner), then trains each cell with its best
    config; ``chemprop-tuned`` trains each cell with the benchmark config's hyperparameters
    written as a Chemprop config, with the substitutions that needs recorded in the cells.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variant(s) {unknown}; valid: {', '.join(VARIANTS)}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if seed_offset < 0:
        raise ConfigError(f"--seed-offset must be >= 0, got {seed_offset}")
    if "chemprop-hpopt" in variants and not report_only:
        from admet.benchmark.chemprop_hpopt import require_hpopt

        require_hpopt()  # before any training: fail at once without Ray Tune
    endpoints = list(endpoints or fang2023.ENDPOINTS)
    bad = [e for e in endpoints if e not in fang2023.ENDPOINTS]
    if bad:
        raise ConfigError(f"unknown endpoint(s) {bad}; valid: {', '.join(fang2023.ENDPOINTS)}")
    config = resolve_config(config)
    raw_dir = raw_dataset_dir("fang2023", raw)
    folder = fang2023.ensure_prepared(processed, raw_dir)
    result = BenchmarkResult(
        protocol=protocol, paper=paper_table(raw_dir), chemprop_version=chemprop_version()
    )
    start = time.perf_counter()
    base_overrides = [f"data.train_file={folder / 'train.csv'}", *overrides]
    configs: dict[str, EnsembleConfig] = {}
    for variant in variants:
        cfg = load_config(config, [*base_overrides, *(VARIANTS[variant] or [])])
        if not isinstance(cfg, EnsembleConfig):
            raise ConfigError(f"{config}: the benchmark needs an ensemble config (an 'ensemble' section)")
        configs[variant] = cfg
        result.config[variant] = config_to_dict(cfg)
    run = run_name or time.strftime("%Y%m%d-%H%M%S") + f"-{protocol}"
    out_dir = Path(out) if out else home() / "results" / "fang2023" / run
    out_dir.mkdir(parents=True, exist_ok=True)
    check_run(out_dir, protocol, result.config)
    cells_path = out_dir / CELLS_FILE
    result.rows = load_cells(cells_path)
    done = {(c["variant"], c["endpoint"], c["seed"]) for c in result.rows}
    exclusions = pd.read_csv(folder / "strict_exclusions.csv")
    data_cache: dict[Any, Any] = {}
    structure_cache: dict[Any, list[str]] = {}
    shared: dict[tuple[str, int], ChempropEnsemble] = {}
    seed_range = range(seed_offset, seed_offset + seeds)
    code = code_version()
    import torch

    torch_version = torch.__version__
    todo = [(v, e, k) for k in seed_range for v in variants for e in endpoints if (v, e, k) not in done]
    result.complete = not (report_only and todo)
    if report_only:
        todo = []
    for i, (variant, endpoint, k) in enumerate(todo):
        if budget_minutes is not None and i > 0 and time.perf_counter() - start >= budget_minutes * 60:
            result.complete = False
            if progress:
                print(
                    f"time budget of {budget_minutes:g} min spent; {len(todo) - i} cell(s) left", flush=True
                )
            break
        base = configs[variant]
        seed = base.optimization.seed + k
        cfg = load_config(base, [f"optimization.seed={seed}", f"ensemble.seed={base.ensemble.seed + k}"])
        key = (tuple(cfg.data.target_cols), cfg.data.max_molecules, seed)
        if key not in data_cache:
            data_cache[key] = load_training_data(cfg)
        data = data_cache[key]
        test = test_split(folder, endpoint)
        if protocol == "strict":
            if key not in structure_cache:
                structure_cache[key] = structure_keys(data.smiles)
            held_out = [*test["SMILES"], *exclusions.loc[exclusions["Endpoint"] == endpoint, "SMILES"]]
            rows = strict_rows(structure_cache[key], held_out)
        else:
            rows = np.arange(len(data))
        train_set = data.subset(rows)
        if VARIANTS[variant] is not None:
            # the rows the config trains on: a dropped quality tier's rows are not counted
            # in, or fingerprinted as, the cell's training molecules (the fit leaves it as is)
            train_set = apply_tier_use(train_set, cfg)
        peer: dict[str, Any] = {}
        config_path = None
        if variant == "chemprop-hpopt":
            record = hpopt_record(
                out_dir,
                configs[variant],
                data,
                hpopt_minutes,
                hpopt_epochs,
                hpopt_search,
                progress=progress,
                max_trials=hpopt_max_trials,
            )
            config_path = out_dir / HPOPT_DIR / "best_config.toml"
            peer = {"hpopt_trials": record["trials_finished"], "hpopt_wall_seconds": record["wall_seconds"]}
        elif variant == "chemprop-tuned":
            config_path, substituted = tuned_config(out_dir, cfg)
            peer = {"not_expressed": substituted}
        if progress:
            print(f"[{variant} seed {k}] {endpoint}: training on {len(train_set)} molecules", flush=True)
        t0 = time.perf_counter()
        uncertainty = {}
        if VARIANTS[variant] is None:
            table = chemprop_table(data, rows, cfg.data.target_cols)
            preds = run_chemprop(
                cfg, table, list(test["SMILES"]), endpoint, seed, quiet=not progress, config_path=config_path
            )
        else:
            # one status line per cell on a terminal, one line per member epoch with --quiet
            status = ConsoleStatus(f"[{variant} seed {k}] {endpoint}", rewrite=None if progress else False)
            if protocol == "strict":
                model = ChempropEnsemble(cfg).fit(train_set, progress=status)
            else:
                if (variant, k) not in shared:
                    shared[(variant, k)] = ChempropEnsemble(cfg).fit(train_set, progress=status)
                model = shared[(variant, k)]
            frame = model.predict(list(test["SMILES"]), include_spread=True)
            preds = frame[f"{endpoint}_pred"].to_numpy()
            uncertainty = endpoint_uncertainty(test[endpoint].to_numpy(dtype=float), frame, endpoint)
        m = task_metrics(test[endpoint].to_numpy(dtype=float), preds)
        cell = {
            "variant": variant,
            "endpoint": endpoint,
            "seed": k,
            "n": m["n"],
            "pearson_r": m["pearson_r"],
            "mae": m["mae"],
            "spearman_rho": m["spearman_rho"],
            "r2": m["r2"],
            "train_molecules": len(train_set),
            "train_fingerprint": training_fingerprint(train_set.smiles),
            "seconds": time.perf_counter() - t0,
            "optimistic": protocol == "imputation",
            "code": code,
            "torch": torch_version,
            **peer,
            **uncertainty,
        }
        with cells_path.open("a") as fh:  # one line per finished cell: the resume point
            fh.write(json.dumps(cell, default=float) + "\n")
        result.rows.append(cell)
    result.wall_seconds = time.perf_counter() - start
    hpopt_json = out_dir / HPOPT_DIR / "hpopt.json"
    if hpopt_json.is_file():
        result.peers["chemprop-hpopt"] = json.loads(hpopt_json.read_text())
    (out_dir / "table.md").write_text(result.to_markdown())
    (out_dir / "table.json").write_text(json.dumps(result.to_json(), indent=1, default=float))
    if result.rows:
        result.write_figure(out_dir / "figure.png")
    return result, out_dir
