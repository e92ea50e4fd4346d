"""The scale envelope of one PostgreSQL study: N workers, through the gRPC proxy vs direct.

For each worker count of ``--workers`` (e.g. ``16,64,128``) and each arm (``direct``: every
worker has its own SQLAlchemy pool; ``proxy``: the workers talk to one
``python -m admet.hpo serve-storage``, which alone holds database connections), a fresh
database is created and N workers (separate processes, as in production) run the real
worker loop (``admet.hpo.runner.run_worker``: the study's TPE sampler and search space,
heartbeat, stale-trial checks, the shared budget) with a CHEAP objective: the trial samples
its parameters, reports two intermediate values, sets a user attribute and sleeps
``--sleep`` seconds instead of training (the objective stands in for the GPU time of a real
trial). The cheap objective imports neither torch nor Chemprop, and neither does the worker.

The window of ``--minutes`` starts once every worker has registered in the study or exited
(bounded wait). Measured per arm:

* connections held: ``pg_stat_activity`` rows of the arm's database, sampled every 0.5 s
  (the benchmark's own connections excluded): the maximum;
* finished trials per minute over the window;
* ask and tell latency as the workers see them: each worker times ``Study.ask`` (the trial's
  creation and the sampler's relative sampling) and Optuna's tell of a finished trial, and
  writes the timings to its result file at exit; p50/p95 over the calls in the window;
* failures: workers that exited non-zero, with the first line of their error (a direct
  worker the server has no slot for stops with the one-line ``max_connections`` error of
  ``admet.hpo.db_connections`` after ``--full-wait`` seconds);
* each worker's peak resident memory (``VmHWM`` of ``/proc/self/status`` at exit), and the
  proxy's.

Direct, surplus workers failing with that one line is the expected outcome once N times the
per-worker pool exceeds the server's free slots; the proxy arm must run its whole window.
Every wait is bounded; databases are dropped at the end (also on Ctrl-C); worker logs and
result files stay in the folder printed at the end.

    nice -n 19 python benchmarks/hpo_workers.py --workers 2,4 --minutes 0.5 --json out.json
    python benchmarks/hpo_workers.py --report benchmarks/results/hpo_scale.json
    python benchmarks/hpo_workers.py --private --workers 16,64,128 --minutes 2 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

STUDY_ARGS = ["mlflow.enabled=false", "heartbeat_interval=5", "grace_period=30"]
HEAVY = ("torch", "chemprop", "lightning")


# -- worker mode: one worker with the cheap objective ------------------------------------


def _peak_rss_mb() -> float | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def write_spec(path: Path, n_trials: int = 1_000_000) -> None:
    """The study definition the workers run, pickled: ``load_study_spec`` imports the model
    layer (torch, Chemprop) to know its registered heads and aggregations, which a worker
    with the cheap objective does not need; the driver pays that once."""
    import pickle

    from admet.hpo.spec import load_study_spec

    path.write_bytes(pickle.dumps(load_study_spec("joint_sampling", [f"n_trials={n_trials}", *STUDY_ARGS])))


def worker(storage: str, sleep: float, result: Path, spec_path: Path) -> int:
    """One worker until interrupted (or the spec's ``n_trials`` finished in the study);
    writes its timings, peak memory, heavy modules loaded and error (if any) to ``result``."""
    import logging
    import warnings

    # the driver stops its workers with SIGINT; one started in the background (nohup, `&`)
    # hands them SIGINT ignored, and then nothing but the stop timeout's SIGKILL ends them,
    # before they write their result files
    signal.signal(signal.SIGINT, signal.default_int_handler)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    import optuna
    import optuna.study._optimize as optimize_module

    from admet.hpo.runner import run_worker, worker_id
    from admet.hpo.search_space import suggest_params

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    timings: dict[str, list[tuple[float, float]]] = {"ask": [], "tell": []}

    def timed(kind: str, fn):
        def wrapper(*args, **kwargs):
            start, t = time.time(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timings[kind].append((start, time.perf_counter() - t))

        return wrapper

    # what study.optimize calls: Study.ask, then optuna.study._optimize._tell_with_warning
    optuna.study.Study.ask = timed("ask", optuna.study.Study.ask)  # type: ignore[method-assign]
    optimize_module._tell_with_warning = timed("tell", optimize_module._tell_with_warning)

    error, rc = None, 0
    try:
        import pickle

        spec = pickle.loads(spec_path.read_bytes())
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
            # the MLflow mirror as the spec says (off in this benchmark's spec; the soak turns it on)
            mlflow = base.mlflow.enabled
            run_worker(spec, storage, mlflow_enabled=mlflow, progress=False, objective=Cheap())  # type: ignore[arg-type]
    except BaseException as exc:  # recorded, then the worker exits non-zero
        lines = str(exc).strip().splitlines()
        error, rc = f"{type(exc).__name__}: {lines[0] if lines else ''}", 1
        import traceback

        traceback.print_exc()
    finally:
        result.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "error": error,
                    "peak_rss_mb": _peak_rss_mb(),
                    "heavy_modules": [m for m in HEAVY if m in sys.modules],
                    **timings,
                }
            )
        )
    return rc


# -- a private PostgreSQL ------------------------------------------------------------------


class PrivatePostgres:
    """``initdb`` + ``pg_ctl start`` in a temp folder on a free port, trust auth, the given
    ``max_connections``; stopped and removed by :meth:`stop`. As root, PostgreSQL's tools
    run as the ``postgres`` user (initdb refuses root)."""

    def __init__(self, max_connections: int) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        found = shutil.which("initdb")
        initdb = Path(found) if found else (bins[-1] if bins else None)
        if initdb is None:
            raise SystemExit("--private: no initdb on PATH or under /usr/lib/postgresql/*/bin")
        self.bin = initdb.parent
        self.dir = Path(tempfile.mkdtemp(prefix="hpo-scale-pg-"))
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        self._run([str(self.bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"])
        opts = (
            f"-p {self.port} -c max_connections={max_connections} -c listen_addresses=127.0.0.1 -k {self.dir}"
        )
        log = str(self.dir / "server.log")
        self._run(
            [str(self.bin / "pg_ctl"), "-D", str(data), "-l", log, "-w", "-t", "60", "-o", opts, "start"]
        )
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, cmd: list[str]) -> None:
        out = subprocess.run([*self.as_user, *cmd], capture_output=True, text=True, timeout=120)
        if out.returncode:
            raise SystemExit(f"--private: {' '.join(cmd[:1])} failed:\n{out.stdout}{out.stderr}")

    def stop(self) -> None:
        with contextlib.suppress(SystemExit, subprocess.TimeoutExpired):
            data = str(self.dir / "data")
            self._run([str(self.bin / "pg_ctl"), "-D", data, "-m", "fast", "-w", "-t", "60", "stop"])
        shutil.rmtree(self.dir, ignore_errors=True)


# -- driver -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_settings(server: str) -> dict:
    import sqlalchemy

    engine = sqlalchemy.create_engine(server)
    try:
        with engine.connect() as conn:
            show = lambda name: conn.execute(sqlalchemy.text(f"SHOW {name}")).scalar_one()  # noqa: E731
            return {
                "version": show("server_version"),
                "max_connections": int(show("max_connections")),
                "superuser_reserved_connections": int(show("superuser_reserved_connections")),
                "shared_buffers": show("shared_buffers"),
                "other_connections_at_start": int(
                    conn.execute(
                        sqlalchemy.text(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
                        )
                    ).scalar_one()
                ),
            }
    finally:
        engine.dispose()


def machine() -> dict:
    import optuna

    mem = next(
        (
            int(line.split()[1]) // 1024**2
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        ),
        None,
    )
    return {
        "cpus": os.cpu_count(),
        "memory_gib": mem,
        "python": platform.python_version(),
        "optuna": optuna.__version__,
    }


class Sampler(threading.Thread):
    """The maximum number of connections to ``db`` seen while it runs, on a connection
    opened before any worker (so a full server cannot refuse it)."""

    def __init__(self, engine, db: str, own: list[int]) -> None:
        super().__init__(daemon=True)
        self.conn = engine.connect()
        self.db, self.own, self.max, self.stop = db, own, 0, threading.Event()

    def run(self) -> None:
        import sqlalchemy

        q = sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND pid <> ALL(:own)")
        self.own = [*self.own, self.conn.execute(sqlalchemy.text("SELECT pg_backend_pid()")).scalar_one()]
        while not self.stop.wait(0.5):
            with contextlib.suppress(Exception):
                self.max = max(
                    self.max, int(self.conn.execute(q, {"db": self.db, "own": self.own}).scalar_one())
                )
        self.conn.close()


def _counts(conn) -> tuple[int, int]:
    """Finished trials and registered workers, on the benchmark's own connection."""
    import sqlalchemy

    try:
        finished = conn.execute(
            sqlalchemy.text("SELECT count(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')")
        ).scalar_one()
        workers = conn.execute(
            sqlalchemy.text("SELECT count(*) FROM study_user_attributes WHERE key LIKE 'worker:%'")
        ).scalar_one()
        return int(finished), int(workers)
    except sqlalchemy.exc.ProgrammingError:  # no tables yet
        return 0, 0


def _stop(procs: list[subprocess.Popen], wait: float) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + wait
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _vmhwm_mb(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def _first_error_line(log: Path) -> str:
    lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()] if log.exists() else []
    return lines[-1].strip() if lines else "(no output)"


def arm(server: str, proxy: bool, workers: int, args: argparse.Namespace, logs: Path) -> dict:
    import sqlalchemy
    from sqlalchemy.engine import make_url

    name = "proxy" if proxy else "direct"
    tag = f"{name}-{workers}"
    db = f"admet_bench_{os.getpid()}_{workers}_{name}"
    admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{db}"'))
    url = make_url(server).set(database=db).render_as_string(hide_password=False)
    bench = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "ADMET_HOME": str(logs),
        "ADMET_DB_FULL_WAIT_SECONDS": str(args.full_wait),
    }
    env.pop("ADMET_HPO_STORAGE", None)
    if args.max_db_connections:
        env["ADMET_MAX_DB_CONNECTIONS"] = str(args.max_db_connections)
    procs: list[subprocess.Popen] = []
    files: list = []  # the logs' handles, closed at the end (128 workers x arms of them)
    workers_procs: list[tuple[int, subprocess.Popen]] = []
    counter = bench.connect()
    sampler = Sampler(bench, db, [counter.execute(sqlalchemy.text("SELECT pg_backend_pid()")).scalar_one()])
    sampler.start()
    proxy_proc = None
    proxy_rss = None
    try:
        storage = url
        if proxy:
            port = free_port()
            out = (logs / f"{tag}-proxy.log").open("w")
            files.append(out)
            cmd = [sys.executable, "-m", "admet.hpo", "serve-storage", "--storage", url, "--port", str(port)]
            proxy_proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
            procs.append(proxy_proc)
            storage = f"grpc://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while "storage proxy on" not in (logs / f"{tag}-proxy.log").read_text():
                if proxy_proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        "the storage proxy did not start:\n" + (logs / f"{tag}-proxy.log").read_text()
                    )
                time.sleep(0.2)
        for i in range(workers):
            out = (logs / f"{tag}-worker-{i}.log").open("w")
            files.append(out)
            cmd = [sys.executable, __file__, "--worker", storage, "--sleep", str(args.sleep)]
            cmd += ["--spec", str(logs / "spec.pkl"), "--result", str(logs / f"{tag}-worker-{i}.json")]
            p = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
            procs.append(p)
            workers_procs.append((i, p))
        # the window starts once every worker registered or exited (a direct worker the
        # server has no slot for gives up after --full-wait seconds)
        deadline = time.monotonic() + args.start_timeout
        while True:
            registered = _counts(counter)[1]
            exited = sum(p.poll() is not None for _, p in workers_procs)
            if registered + exited >= workers:
                break
            if proxy_proc is not None and proxy_proc.poll() is not None:
                raise SystemExit(f"the storage proxy exited; logs in {logs}")
            if time.monotonic() > deadline:
                print(
                    f"  {tag}: {registered} of {workers} registered after {args.start_timeout:g} s; measuring"
                )
                break
            time.sleep(1)
        start_trials, t0, wall0 = _counts(counter)[0], time.perf_counter(), time.time()
        time.sleep(args.minutes * 60)
        (end_trials, registered), t1, wall1 = _counts(counter), time.perf_counter(), time.time()
        proxy_ok = proxy_proc is None or proxy_proc.poll() is None
        if proxy_proc is not None:
            proxy_rss = _vmhwm_mb(proxy_proc.pid)
        exited_in_window = [i for i, p in workers_procs if p.poll() is not None]
    finally:
        # workers first: a proxy stopped under them would leave them retrying
        _stop([p for _, p in workers_procs], args.stop_timeout)
        _stop(procs, 60)
        for f in files:
            f.close()
        sampler.stop.set()
        sampler.join(timeout=10)
        counter.close()
        bench.dispose()
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()
    ask, tell, rss, heavy, failures = [], [], [], set(), []
    for i, p in workers_procs:
        path = logs / f"{tag}-worker-{i}.json"
        res = json.loads(path.read_text()) if path.exists() else {}
        ask += [d for t, d in res.get("ask", []) if wall0 <= t <= wall1]
        tell += [d for t, d in res.get("tell", []) if wall0 <= t <= wall1]
        if res.get("peak_rss_mb"):
            rss.append(res["peak_rss_mb"])
        heavy.update(res.get("heavy_modules", []))
        # interrupted at the end is the normal way out; non-zero before that is a failure
        if i in exited_in_window and (p.returncode != 0 or res.get("error")):
            failures.append(
                {
                    "worker": i,
                    "returncode": p.returncode,
                    "error": res.get("error") or _first_error_line(logs / f"{tag}-worker-{i}.log"),
                }
            )
    ms = lambda v: None if v is None else round(v * 1000, 1)  # noqa: E731
    return {
        "workers": workers,
        "arm": name,
        "registered": registered,
        "failed": len(failures),
        "completed_window": proxy_ok and not (proxy and failures),
        "max_connections": sampler.max,
        "trials": end_trials - start_trials,
        "window_s": round(t1 - t0, 1),
        "trials_per_min": round((end_trials - start_trials) / ((t1 - t0) / 60), 1),
        "ask_p50_ms": ms(_pct(ask, 0.5)),
        "ask_p95_ms": ms(_pct(ask, 0.95)),
        "tell_p50_ms": ms(_pct(tell, 0.5)),
        "tell_p95_ms": ms(_pct(tell, 0.95)),
        "calls": {"ask": len(ask), "tell": len(tell)},
        "worker_peak_rss_mb": {
            "median": round(statistics.median(rss), 1) if rss else None,
            "max": round(max(rss), 1) if rss else None,
            "sum": round(sum(rss), 1) if rss else None,
        },
        "proxy_peak_rss_mb": None if proxy_rss is None else round(proxy_rss, 1),
        "heavy_modules_in_workers": sorted(heavy),
        "failures": failures,
    }


# -- the report ---------------------------------------------------------------------------


def _f(v, fmt: str = "{:g}") -> str:
    return "-" if v is None else fmt.format(v)


def render(data: dict) -> str:
    """The markdown tables of a ``--json`` file (what the results page holds)."""
    s, m, a = data["server"], data["machine"], data["args"]
    lines = [
        f"PostgreSQL {s['version']} ({'private cluster' if data.get('private') else 'shared server'}), "
        f"max_connections {s['max_connections']} ({s['superuser_reserved_connections']} reserved), "
        f"shared_buffers {s['shared_buffers']}, "
        f"{s['other_connections_at_start']} other connections at start; "
        f"{m['cpus']} CPUs, {m['memory_gib']} GiB; Optuna {m['optuna']}; "
        f"{a['minutes']:g} min window per arm, {a['sleep']:g} s cheap trial, "
        f"{a['max_db_connections'] or 'default'} connections per direct worker.",
        "",
        "| workers | arm | registered | failed | max DB conns | trials/min | ideal | "
        "ask p50/p95 ms | tell p50/p95 ms | worker peak RSS MB (median/max) | proxy RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in data["arms"]:
        ideal = r["workers"] * 60 / a["sleep"]
        w = r["worker_peak_rss_mb"]
        lines.append(
            f"| {r['workers']} | {r['arm']} | {r['registered']} | {r['failed']} | {r['max_connections']} | "
            f"{r['trials_per_min']:.1f} | {ideal:.0f} | "
            f"{_f(r['ask_p50_ms'])} / {_f(r['ask_p95_ms'])} | "
            f"{_f(r['tell_p50_ms'])} / {_f(r['tell_p95_ms'])} | "
            f"{_f(w['median'], '{:.0f}')} / {_f(w['max'], '{:.0f}')} | "
            f"{_f(r['proxy_peak_rss_mb'], '{:.0f}')} |"
        )
    notes = []
    for r in data["arms"]:
        if r["failures"]:
            first = r["failures"][0]["error"]
            notes.append(
                f"- {r['arm']}, {r['workers']} workers: {r['failed']} failed; first error: `{first}`"
            )
        if not r.get("completed_window", True):
            why = "the proxy exited or a worker failed"
            notes.append(f"- {r['arm']}, {r['workers']} workers: did not run its window clean ({why})")
        if r["heavy_modules_in_workers"]:
            heavy = ", ".join(r["heavy_modules_in_workers"])
            notes.append(f"- {r['arm']}, {r['workers']} workers: workers loaded {heavy}")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--server",
        default=None,
        help="PostgreSQL server URL with a user that may create databases "
        "(default: ADMET_TEST_POSTGRES_URL's server, else postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    parser.add_argument(
        "--private", action="store_true", help="start a private PostgreSQL for the run (initdb)"
    )
    parser.add_argument("--private-max-connections", type=int, default=100)
    parser.add_argument("--workers", default="8", help="worker counts, comma-separated: 16,64,128")
    parser.add_argument("--arms", default="direct,proxy")
    parser.add_argument("--minutes", type=float, default=3.0, help="measurement window per arm")
    parser.add_argument("--sleep", type=float, default=2.0, help="seconds per cheap trial")
    parser.add_argument(
        "--max-db-connections",
        type=int,
        default=None,
        help="connections per direct worker (ADMET_MAX_DB_CONNECTIONS; default: the worker's default)",
    )
    parser.add_argument(
        "--full-wait", type=float, default=60.0, help="ADMET_DB_FULL_WAIT_SECONDS for workers"
    )
    parser.add_argument(
        "--start-timeout", type=float, default=600.0, help="bound on the wait for workers to register"
    )
    parser.add_argument(
        "--stop-timeout", type=float, default=180.0, help="bound on the wait for workers to stop"
    )
    parser.add_argument("--logs", default=None, help="folder for worker logs (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--report", type=Path, help="measure nothing: print the tables of this --json file")
    args = parser.parse_args()
    if args.worker:
        result = args.result or Path(tempfile.mkstemp(suffix=".json")[1])
        sys.exit(worker(args.worker, args.sleep, result, args.spec))
    if args.report:
        print(render(json.loads(args.report.read_text())), end="")
        return
    from sqlalchemy.engine import make_url

    from admet.redact import mask_url

    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    arms = [x.strip() for x in args.arms.split(",") if x.strip()]
    logs = Path(args.logs or tempfile.mkdtemp(prefix="hpo-workers-"))
    logs.mkdir(parents=True, exist_ok=True)
    write_spec(logs / "spec.pkl")
    private = PrivatePostgres(args.private_max_connections) if args.private else None
    try:
        server = (
            private.url
            if private
            else (
                args.server
                or os.environ.get("ADMET_TEST_POSTGRES_URL")
                or "postgresql://postgres@127.0.0.1:5432"
            )
        )
        server = make_url(server).set(database="postgres").render_as_string(hide_password=False)
        data = {
            "private": bool(private),
            "server": server_settings(server),
            "machine": machine(),
            "args": {
                "workers": counts,
                "arms": arms,
                "minutes": args.minutes,
                "sleep": args.sleep,
                "max_db_connections": args.max_db_connections,
                "full_wait": args.full_wait,
            },
            "arms": [],
        }
        print(f"server {mask_url(server)}: {data['server']}", flush=True)
        for n in counts:
            for name in arms:
                print(f"{name}: {n} workers, {args.minutes:g} min window ...", flush=True)
                r = arm(server, name == "proxy", n, args, logs)
                data["arms"].append(r)
                print(
                    f"  {r['registered']} registered, {r['failed']} failed, "
                    f"max {r['max_connections']} connections, {r['trials_per_min']:.1f} trials/min, "
                    f"ask p50/p95 {r['ask_p50_ms']}/{r['ask_p95_ms']} ms, "
                    f"tell p50/p95 {r['tell_p50_ms']}/{r['tell_p95_ms']} ms, "
                    f"worker peak RSS median {r['worker_peak_rss_mb']['median']} MB",
                    flush=True,
                )
                if r["failures"]:
                    print(f"  first failure: {r['failures'][0]['error']}", flush=True)
                if args.json:  # after every arm: a later crash keeps what was measured
                    args.json.write_text(json.dumps(data, indent=1) + "\n")
    finally:
        if private:
            private.stop()
    print()
    print(render(data), end="")
    print(f"(logs and per-worker result files in {logs})")


if __name__ == "__main__":
    main()
