"""Trials per minute with 1 and 2 workers on one PostgreSQL study (cheap configuration).

Needs a PostgreSQL URL: --storage or ADMET_TEST_POSTGRES_URL (the tables of that database
are dropped before each measurement). Workers are separate processes, as in production.

    python benchmarks/hpo_workers.py --storage postgresql+psycopg2://postgres@127.0.0.1/bench
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import sqlalchemy

from admet.data.fang2023 import ensure_prepared
from admet.redact import mask_url


def reset(url: str) -> None:
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


def measure(url: str, workers: int, trials: int) -> float:
    reset(url)
    folder = ensure_prepared()
    args = [
        sys.executable,
        "-m",
        "admet.hpo",
        "run",
        "--study",
        "joint_sampling",
        "--storage",
        url,
        "--quiet",
        f"n_trials={trials}",
        f"data.train_file={folder / 'train.csv'}",
        "data.max_molecules=300",
        "optimization.max_epochs=2",
        "ensemble.n_members=2",
        "model.message_hidden_dim=32",
        "model.hidden_dim=32",
        "mlflow.enabled=false",
        "heartbeat_interval=5",
        "grace_period=30",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    procs = [subprocess.Popen(args, env=env) for _ in range(workers)]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"worker failed with {p.returncode}")
    return trials / ((time.perf_counter() - t0) / 60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--storage", default=os.environ.get("ADMET_TEST_POSTGRES_URL"))
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()
    if not args.storage:
        raise SystemExit("give --storage or set ADMET_TEST_POSTGRES_URL")
    one = measure(args.storage, 1, args.trials)
    two = measure(args.storage, 2, args.trials)
    print(f"storage {mask_url(args.storage)}, {args.trials} trials, {os.cpu_count()} CPUs")
    print(f"1 worker:  {one:6.2f} trials/min")
    print(f"2 workers: {two:6.2f} trials/min")
    print(f"scaling ratio: {two / one:.2f}x (ideal 2.00x on >= 2 free cores)")


if __name__ == "__main__":
    main()
