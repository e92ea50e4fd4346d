"""Many workers on one PostgreSQL study: through the gRPC storage proxy vs direct.

For each arm a fresh database is created on the server, 8 workers (separate processes,
as in production) run the real worker loop (``admet.hpo.runner.run_worker``: the study's
TPE sampler and search space, heartbeat, stale-trial checks, the shared budget) with a
CHEAP objective: the trial samples its parameters, reports two intermediate values, sets
a user attribute and sleeps ``--sleep`` seconds instead of training (8 Chemprop trainings
do not fit on a 2-core machine; the objective stands in for the GPU time of a real trial).

Measured per arm, over ``--minutes`` after all workers have registered:

* database connections: ``SELECT count(*) FROM pg_stat_activity WHERE datname = <db>``,
  sampled every 0.5 s (the sampler's own connection excluded): the maximum;
* finished trials per minute.

Direct, each worker holds its own SQLAlchemy pool; through the proxy only the proxy does.
Every wait is bounded; the databases are dropped at the end (also on Ctrl-C).

    nice -n 10 python benchmarks/hpo_workers.py --minutes 3
    python benchmarks/hpo_workers.py --server postgresql://postgres@127.0.0.1:5432 --workers 8
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import sqlalchemy
from sqlalchemy.engine import make_url

from admet.redact import mask_url

STUDY_ARGS = ["n_trials=1000000", "mlflow.enabled=false", "heartbeat_interval=5", "grace_period=30"]


# -- worker mode: one worker with the cheap objective ------------------------------------


def worker(storage: str, sleep: float) -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    import optuna

    from admet.hpo.objective import worker_id
    from admet.hpo.runner import run_worker
    from admet.hpo.search_space import suggest_params
    from admet.hpo.spec import load_study_spec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_study_spec("joint_sampling", STUDY_ARGS)
    base = spec.base_run_config()

    class Cheap:
        def __init__(self) -> None:
            self.worker = worker_id()
            self.current_trial: int | None = None

        def __call__(self, trial: optuna.Trial) -> float:
            self.current_trial = trial.number
            trial.set_user_attr("worker", self.worker)
            params = suggest_params(trial, spec, base)
            value = float(sum(hash(str(v)) % 997 for v in params.values())) / 997
            for step in range(2):
                trial.report(value + 1 - step, step)
                time.sleep(sleep / 2)
            trial.set_user_attr("wall_seconds", sleep)
            return value

    with contextlib.suppress(KeyboardInterrupt):
        run_worker(spec, storage, mlflow_enabled=False, progress=False, objective=Cheap())  # type: ignore[arg-type]


# -- driver -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sampler(threading.Thread):
    """The maximum number of connections to ``db`` seen while it runs."""

    def __init__(self, admin: sqlalchemy.Engine, db: str) -> None:
        super().__init__(daemon=True)
        self.admin, self.db, self.max, self.stop = admin, db, 0, threading.Event()

    def run(self) -> None:
        q = sqlalchemy.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"
        )
        with self.admin.connect() as conn:
            while not self.stop.wait(0.5):
                self.max = max(self.max, int(conn.execute(q, {"db": self.db}).scalar_one()))


def _finished_and_workers(url: str) -> tuple[int, int]:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            finished = conn.execute(
                sqlalchemy.text("SELECT count(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')")
            ).scalar_one()
            workers = conn.execute(
                sqlalchemy.text("SELECT count(*) FROM study_user_attributes WHERE key LIKE 'worker:%'")
            ).scalar_one()
        return int(finished), int(workers)
    except sqlalchemy.exc.ProgrammingError:  # no tables yet
        return 0, 0
    finally:
        engine.dispose()


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 60
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def arm(server: str, proxy: bool, workers: int, minutes: float, sleep: float, logs: Path) -> dict:
    db = f"admet_bench_{os.getpid()}_{'proxy' if proxy else 'direct'}"
    admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{db}"'))
    url = make_url(server).set(database=db).render_as_string(hide_password=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ADMET_HOME": str(logs)}
    env.pop("ADMET_HPO_STORAGE", None)
    procs: list[subprocess.Popen] = []
    sampler = Sampler(admin, db)
    sampler.start()
    try:
        storage = url
        if proxy:
            port = free_port()
            out = (logs / "proxy.log").open("w")
            cmd = [sys.executable, "-m", "admet.hpo", "serve-storage", "--storage", url]
            procs.append(
                subprocess.Popen(
                    [*cmd, "--port", str(port)],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
            storage = f"grpc://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while "storage proxy on" not in (logs / "proxy.log").read_text():
                if procs[0].poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the storage proxy did not start:\n" + (logs / "proxy.log").read_text())
                time.sleep(0.2)
        for i in range(workers):
            out = (logs / f"{'proxy' if proxy else 'direct'}-worker-{i}.log").open("w")
            procs.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--worker", storage, "--sleep", str(sleep)],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + 300
        while _finished_and_workers(url)[1] < workers:  # all registered: the window starts
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(f"workers did not all start; logs in {logs}")
            time.sleep(1)
        start_trials, t0 = _finished_and_workers(url)[0], time.perf_counter()
        time.sleep(minutes * 60)
        end_trials, t1 = _finished_and_workers(url)[0], time.perf_counter()
        crashed = [p.args for p in procs if p.poll() is not None]
        if crashed:
            raise SystemExit(f"{len(crashed)} process(es) exited during the measurement; logs in {logs}")
        return {
            "max_connections": sampler.max,
            "trials_per_min": (end_trials - start_trials) / ((t1 - t0) / 60),
            "trials": end_trials - start_trials,
        }
    finally:
        _stop(procs)
        sampler.stop.set()
        sampler.join(timeout=10)
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--server",
        default=None,
        help="PostgreSQL server URL with a user that may create databases "
        "(default: ADMET_TEST_POSTGRES_URL's server, else postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=3.0, help="measurement window per arm")
    parser.add_argument("--sleep", type=float, default=2.0, help="seconds per cheap trial")
    parser.add_argument("--logs", default=None, help="folder for worker logs (default: a temp folder)")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.sleep)
        return
    server = (
        args.server or os.environ.get("ADMET_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432"
    )
    server = make_url(server).set(database="postgres").render_as_string(hide_password=False)
    import tempfile

    logs = Path(args.logs or tempfile.mkdtemp(prefix="hpo-workers-"))
    logs.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, proxy in (("direct", False), ("proxy", True)):
        print(f"{name}: {args.workers} workers, {args.minutes:g} min window ...", flush=True)
        results[name] = arm(server, proxy, args.workers, args.minutes, args.sleep, logs)
    d, p = results["direct"], results["proxy"]
    print(
        f"server {mask_url(server)}, {args.workers} workers, cheap objective ({args.sleep:g} s sleep, "
        f"real worker loop and TPE sampler), {args.minutes:g} min per arm, {os.cpu_count()} CPUs"
    )
    print(f"{'':24}{'direct':>12}{'proxy':>12}{'proxy/direct':>14}")
    print(
        f"{'max DB connections':24}{d['max_connections']:>12d}{p['max_connections']:>12d}"
        f"{p['max_connections'] / max(d['max_connections'], 1):>14.2f}"
    )
    print(
        f"{'finished trials/min':24}{d['trials_per_min']:>12.1f}{p['trials_per_min']:>12.1f}"
        f"{p['trials_per_min'] / max(d['trials_per_min'], 1e-9):>14.2f}"
    )
    print(f"(ideal trials/min: {args.workers * 60 / args.sleep:.0f}; logs in {logs})")


if __name__ == "__main__":
    main()
