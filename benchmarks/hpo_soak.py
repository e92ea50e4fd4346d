"""Soak run of the HPO service: several workers share one PostgreSQL study while the
database restarts, the gRPC storage proxy restarts, MLflow goes away and workers are
SIGKILLed; then checks the invariants and prints figures.

The script creates its own PostgreSQL cluster (``initdb`` into a temporary folder, as the
``postgres`` user when run as root; trust auth on 127.0.0.1; port ``--port``), so its
restarts disturb nobody, and always removes it at the end. Workers are
``python -m admet.hpo run`` processes started as the service tests start them
(tests/hpo/test_hpo_service.py), on a small synthetic table (tests/conftest.py) with a
tiny model; with ``--objective sleep`` they are the scale benchmark's cheap workers
(``benchmarks/hpo_workers.py --worker``: the real worker loop, sampler, heartbeat, budget
and MLflow mirror, a trial that sleeps ``--sleep`` seconds instead of training), so that 16
of them fit on 2 cores.

Faults, spread over ``--minutes``:

* database restarts (``--db-restarts``): alternately a fast shutdown and a crash-like
  immediate one, each followed by ``--outage-seconds`` down;
* with ``--proxy``, the workers reach the database through ``python -m admet.hpo
  serve-storage`` (``grpc://127.0.0.1:PORT``); ``--proxy-restarts`` stops it (alternately
  SIGTERM and SIGKILL), keeps it down ``--proxy-outage-seconds`` and starts it again on the
  same port (the workers' retry window, ``--retry-seconds``, must cover the outage plus its
  start-up: the time it was unavailable is logged);
* kills (``--kills``) of a worker that is running a trial; a replacement worker is started;
* ``--mlflow-outage-minutes M``: a real ``mlflow server`` (SQLite backend, local artifact
  folder, free port) is started first and the workers mirror their trials to it; it is
  stopped for M minutes around the middle of ``--minutes`` and started again. After the
  study, ``python -m admet.hpo sync-mlflow`` fills in what the outage missed.

The schedule's clock starts when the workers do. An event is also due, ahead of its time,
once the budget is spent as far as its place in the schedule (fast trials would otherwise
end the study first); MLflow comes back M minutes after it stopped, whatever the budget.
Then the workers get a bounded time to finish the budget. Every event is logged with its
time (seconds since the script started).

Invariants (exit status 1 when one fails): the finished trials (COMPLETE + PRUNED) equal
``n_trials``; no trial is left RUNNING; no duplicate trial (two trials queued from the same
failed trial with the same retry history: a duplicated ``add_trial`` or a stale trial
retried twice); each failed trial re-queued at most once, and every killed trial exactly
once; every worker not killed by the soak exits 0; with MLflow, every finished trial has
exactly one MLflow run after the sync (none missing, none twice, none for a trial that did
not finish, each in its trial's state; one parent run for the study).

    nice -n 10 python benchmarks/hpo_soak.py --minutes 30 --db-restarts 3 --kills 2 [--json out.json]
    nice -n 10 python benchmarks/hpo_soak.py --proxy --proxy-restarts 2 --db-restarts 1 --workers 16 \\
        --objective sleep --minutes 12 --mlflow-outage-minutes 3 --n-trials 300 --json out.json
    python benchmarks/hpo_soak.py --report out.json   # the results page's tables, nothing run
    python benchmarks/hpo_soak.py --report out.json --page benchmarks/results/hpo_soak.md
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import json
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "hpo")]

from conftest import _synthetic_frame  # noqa: E402  (tests/ is not a package)
from test_hpo_service import _env, run_args  # noqa: E402

PG_BIN = Path(os.environ.get("ADMET_SOAK_PG_BIN", "/usr/lib/postgresql/15/bin"))


class Cluster:
    """A throw-away PostgreSQL cluster in a temporary folder."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="admet-soak-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.as_postgres = os.geteuid() == 0  # PostgreSQL refuses to run as root
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self.url = f"postgresql://postgres@127.0.0.1:{port}/soak"

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(PG_BIN / tool), *args]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, cwd=self.dir)

    def create(self) -> None:
        self._pg("initdb", "-D", str(self.data), "--auth=trust", "--username=postgres", "--no-sync")
        self.start()
        engine = sqlalchemy.create_engine(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", isolation_level="AUTOCOMMIT"
        )
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("CREATE DATABASE soak"))
        engine.dispose()

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def remove(self) -> None:
        if self.data.exists():
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Workers:
    """The worker processes, started and stopped; each worker's exit code and whether the
    soak killed it. ``command(i)`` is the command line of the i-th worker started."""

    def __init__(self, home: Path, command: Callable[[int], list[str]], env: dict[str, str]) -> None:
        self.home, self.command, self.env = home, command, env
        self.procs: list[subprocess.Popen[str]] = []
        self.killed: set[int] = set()  # pids

    def start(self) -> subprocess.Popen[str]:
        log = self.home / f"worker-{len(self.procs)}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                self.command(len(self.procs)),
                env=self.env,
                cwd=self.home,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        proc.log = log  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def alive(self) -> list[subprocess.Popen[str]]:
        return [p for p in self.procs if p.poll() is None]

    def kill(self, proc: subprocess.Popen[str]) -> None:
        self.killed.add(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.alive():
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def log_lines(self, needle: str) -> int:
        """How many lines of all the worker logs contain ``needle``."""
        return sum(
            line.count(needle) > 0
            for proc in self.procs
            for line in proc.log.read_text(errors="replace").splitlines()  # type: ignore[attr-defined]
        )

    def raised(self) -> set[int]:
        """The trials whose objective raised, from Optuna's warning in the worker logs."""
        found = re.compile(r"Trial (\d+) failed with parameters: .* because of the following error")
        return {
            int(m[1])
            for proc in self.procs
            for m in found.finditer(proc.log.read_text(errors="replace"))  # type: ignore[attr-defined]
        }


class Proxy:
    """``python -m admet.hpo serve-storage`` in front of the soak's database on a fixed
    port, stopped and started again there (each start logs to its own file)."""

    def __init__(self, home: Path, db_url: str, port: int, env: dict[str, str]) -> None:
        self.home, self.db_url, self.port, self.env = home, db_url, port, env
        self.url = f"grpc://127.0.0.1:{port}"
        self.proc: subprocess.Popen[str] | None = None
        self.logs: list[Path] = []

    def start(self, timeout: float = 180.0) -> float:
        """Start it and wait (bounded) until it listens; the seconds that took."""
        t0 = time.monotonic()
        log = self.home / f"proxy-{len(self.logs)}.log"
        self.logs.append(log)
        cmd = [sys.executable, "-m", "admet.hpo", "serve-storage", "--storage", self.db_url]
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [*cmd, "--port", str(self.port)],
                env=self.env,
                cwd=self.home,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        while "storage proxy on" not in log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() - t0 > timeout:
                raise RuntimeError(f"the storage proxy did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        return time.monotonic() - t0

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_lines(self, needle: str) -> int:
        return sum(
            needle in line for log in self.logs for line in log.read_text(errors="replace").splitlines()
        )


class MlflowServer:
    """A real ``mlflow server`` (SQLite backend store, artifacts in a local folder) on a free
    port, in its own process group (its web server forks), stopped and started again."""

    def __init__(self, home: Path) -> None:
        self.dir = home / "mlflow"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0

    def start(self, timeout: float = 240.0) -> float:
        """Start it and wait (bounded) until ``/health`` answers; the seconds that took."""
        t0 = time.monotonic()
        log = self.dir / f"server-{self.starts}.log"
        self.starts += 1
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--backend-store-uri", f"sqlite:///{self.dir / 'mlflow.db'}"]
        cmd += ["--artifacts-destination", str(self.dir / "artifacts"), "--workers", "1"]
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=self.dir, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True
            )
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return time.monotonic() - t0
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() - t0 > timeout:
                raise RuntimeError(f"mlflow server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # the server and the workers it forked
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        # a forked web worker may outlive its parent for a moment: the port must be closed
        until = time.monotonic() + 30
        while not _port_free(self.port) and time.monotonic() < until:
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    @property
    def up(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    try:
        return optuna.load_study(study_name="joint_sampling", storage=storage).get_trials(deepcopy=False)
    finally:
        storage.engine.dispose()


def _running_trial_of(url: str, pid: int) -> int | None:
    """The number of the RUNNING trial of the worker with this PID, if any."""
    try:
        trials = _trials(url)
    except Exception:  # the study or the database is not there yet
        return None
    for t in trials:
        worker = str(t.user_attrs.get("worker", ""))
        if t.state == TrialState.RUNNING and worker.endswith(f"-{pid}"):
            return t.number
    return None


def _trial_state(url: str, number: int) -> TrialState | None:
    """The state of trial ``number`` now (read straight from the database)."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            state = conn.execute(
                sqlalchemy.text(
                    "SELECT t.state FROM trials t JOIN studies s ON s.study_id = t.study_id "
                    "WHERE s.study_name = 'joint_sampling' AND t.number = :n"
                ),
                {"n": number},
            ).scalar()
    finally:
        engine.dispose()
    return None if state is None else TrialState[str(state)]


def _finished(url: str) -> int | None:
    """COMPLETE + PRUNED trials; None while the study or the database is not there."""
    try:
        trials = _trials(url)
    except Exception:
        return None
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)


def _schedule(
    minutes: float, restarts: int, kills: int, proxy_restarts: int = 0, mlflow_outage: float | None = None
) -> list[tuple[float, str]]:
    """The events (seconds since start, kind): database restarts, proxy restarts and kills
    taken in turn while any is left, evenly spread; the MLflow outage (``mlflow-stop``,
    ``mlflow-start``) centred on the middle of the run. Sorted by time."""
    left = {"restart": restarts, "proxy": proxy_restarts, "kill": kills}
    order: list[str] = []
    while any(left.values()):
        for kind in left:
            if left[kind]:
                order.append(kind)
                left[kind] -= 1
    span = minutes * 60
    events = [(span * (i + 1) / (len(order) + 1), e) for i, e in enumerate(order)]
    if mlflow_outage:
        down = min(mlflow_outage * 60, span)
        events += [((span - down) / 2, "mlflow-stop"), ((span + down) / 2, "mlflow-start")]
    return sorted(events, key=lambda e: e[0])


def _mlflow_back_due(events: list[tuple[float, str]], t_chaos: float) -> bool:
    """Whether MLflow's return (an ``mlflow-start`` event) is due now."""
    return any(what == "mlflow-start" and time.monotonic() - t_chaos >= at for at, what in events)


def _figures(
    url: str, n_trials: int, max_retry: int, killed_trials: list[int], raised: set[int] | None = None
) -> tuple[list[str], list[str], dict]:
    """The printed lines, the failed invariants and the figures (for ``--json``). ``raised``:
    the trials whose objective raised (their worker's log says so); a FAIL trial with no
    ``fail_reason`` that is not one of them was failed as stale."""
    raised = raised or set()
    trials = _trials(url)
    states = Counter(t.state.name for t in trials)
    finished = states["COMPLETE"] + states["PRUNED"]
    lines = [
        f"trials in study:        {len(trials)}  " + "  ".join(f"{k}={v}" for k, v in sorted(states.items())),
        f"finished vs n_trials:   {finished} / {n_trials}",
        f"RUNNING left:           {states['RUNNING']}",
        f"WAITING left:           {states['WAITING']}",
    ]
    failed: list[str] = []
    if finished != n_trials:
        failed.append(f"finished trials {finished} != n_trials {n_trials}")
    if states["RUNNING"]:
        failed.append(f"{states['RUNNING']} trial(s) left RUNNING")
    # a retry is identified by the failed trial it copies and its retry history: two
    # trials with the same origin and the same parameters are one retry queued twice
    origins = Counter(
        (
            t.system_attrs["failed_trial"],
            tuple(t.system_attrs.get("retry_history", [])),
            json.dumps(t.params, sort_keys=True, default=str),
        )
        for t in trials
        if "failed_trial" in t.system_attrs
    )
    duplicates = sum(n - 1 for n in origins.values() if n > 1)
    no_params = [t.number for t in trials if not t.params]
    lines.append(f"duplicate trials:       {duplicates}")
    lines.append(f"trials without params:  {len(no_params)} {no_params if no_params else ''}".rstrip())
    if duplicates:
        failed.append(f"{duplicates} duplicate trial(s)")
    stale = [
        t
        for t in trials
        if t.state == TrialState.FAIL and "fail_reason" not in t.user_attrs and t.number not in raised
    ]
    lines.append(f"failed in the objective: {sorted(raised)}")
    lines.append(f"failed as stale:        {len(stale)} {[t.number for t in stale] or ''}".rstrip())
    figures: dict = {
        "trials": len(trials),
        "states": dict(states),
        "finished": finished,
        "n_trials": n_trials,
        "duplicates": duplicates,
        "trials_without_params": no_params,
        "stale": [t.number for t in stale],
        "raised": sorted(raised),
        "killed": [],
    }
    for number in killed_trials:
        retries = [t for t in trials if number in t.system_attrs.get("retry_history", [])]
        direct = [t for t in retries if t.system_attrs["retry_history"][-1] == number]
        own = next((t for t in trials if t.number == number), None)
        final = own.state.name if own else "?"
        # a trial that is itself a last allowed retry is not retried again
        want = 1 if own is None or len(own.system_attrs.get("retry_history", [])) < max_retry else 0
        chain = ", ".join(f"#{t.number} {t.state.name}" for t in retries)
        lines.append(
            f"killed trial {number:3d}:       {final}, retried {len(retries)}x "
            f"(direct {len(direct)}){': ' + chain if chain else ''}"
        )
        figures["killed"].append(
            {
                "trial": number,
                "state": final,
                "retries": [{"trial": t.number, "state": t.state.name} for t in retries],
                "direct": len(direct),
            }
        )
        if len(direct) != want:
            failed.append(f"killed trial {number} was retried {len(direct)} times directly (want {want})")
    # every failed trial (killed, stale after an outage, or failed by its objective): how
    # many trials were queued straight from it (the last entry of their retry history)
    requeues = Counter((t.system_attrs.get("retry_history") or [None])[-1] for t in trials)
    fails = [t.number for t in trials if t.state == TrialState.FAIL]
    more = [n for n in fails if requeues[n] > 1]
    once = sum(requeues[n] == 1 for n in fails)
    lines.append(
        f"failed trials re-queued: {once} of {len(fails)} once, {len(more)} more than once {more or ''}"
    )
    if more:
        failed.append(f"failed trial(s) {more} re-queued more than once")
    figures["failed_requeued"] = {"failed": len(fails), "once": once, "more_than_once": more}
    ends = sorted(t.datetime_complete for t in trials if t.state.is_finished() and t.datetime_complete)
    gap = max(((b - a).total_seconds() for a, b in itertools.pairwise(ends)), default=0.0)
    lines.append(f"longest gap between finished trials: {gap:.0f} s")
    figures["longest_gap_seconds"] = gap
    return lines, failed, figures


def _mlflow_runs(uri: str, study: str = "joint_sampling") -> list:
    """Every run of the study's MLflow experiment (all pages)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(f"optuna-{study}")
    if exp is None:
        return []
    runs: list = []
    token = None
    while True:
        page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _mlflow_figures(trials: list[optuna.trial.FrozenTrial], runs: list) -> dict:
    """The trial runs against the finished trials: how many trials have exactly one complete
    run in their state, and the trial numbers missing, twice, without a finished trial, or
    in another state (or not completed by the mirror)."""
    finished = {t.number: t.state.name for t in trials if t.state.is_finished()}
    tagged = [
        r
        for r in runs
        if r.data.tags.get("optuna.study_name") == "joint_sampling" and "optuna.trial_number" in r.data.tags
    ]
    per_trial = Counter(int(r.data.tags["optuna.trial_number"]) for r in tagged)
    wrong = sorted(
        {
            int(r.data.tags["optuna.trial_number"])
            for r in tagged
            if int(r.data.tags["optuna.trial_number"]) in finished
            and (
                r.data.tags.get("optuna.state") != finished[int(r.data.tags["optuna.trial_number"])]
                or r.data.tags.get("admet.mirrored") != "complete"
            )
        }
    )
    missing = sorted(n for n in finished if per_trial[n] == 0)
    twice = sorted(n for n, c in per_trial.items() if c > 1)
    return {
        "finished_trials": len(finished),
        "trial_runs": len(tagged),
        "exactly_once": sum(per_trial[n] == 1 and n not in wrong for n in finished),
        "missing": missing,
        "twice": twice,
        "without_finished_trial": sorted(n for n in per_trial if n not in finished),
        "wrong_state_or_incomplete": wrong,
        "study_runs": sum(r.data.tags.get("admet.kind") == "study" for r in runs),
    }


def _mlflow_failures(m: dict) -> list[str]:
    """The MLflow invariant: every finished trial has exactly one complete run in its state."""
    out = []
    for key, what in (
        ("missing", "finished trial(s) without an MLflow run"),
        ("twice", "trial(s) with more than one MLflow run"),
        ("without_finished_trial", "MLflow run(s) of trials that did not finish"),
        ("wrong_state_or_incomplete", "MLflow run(s) not completed in their trial's state"),
    ):
        if m[key]:
            out.append(f"{len(m[key])} {what}: {m[key][:20]}")
    if m["study_runs"] != 1:
        out.append(f"{m['study_runs']} MLflow study runs (want 1)")
    return out


def _last_line(log: Path) -> str:
    """The last unindented line of a log (a worker's error, when it failed), shortened; for a
    gRPC error (whose last line is its closing ``>``), that error's line and its status."""
    lines = [x.rstrip() for x in log.read_text(errors="replace").splitlines() if x.strip()]
    top = [i for i, x in enumerate(lines) if not x[0].isspace() and x != ">"]
    if not top:
        return "(no output)"
    status = next((x.strip() for x in lines[top[-1] + 1 :] if x.strip().startswith("status = ")), "")
    return f"{lines[top[-1]]} {status}".strip()[:200]


def _times(n: int) -> str:
    return {0: "never", 1: "once", 2: "twice"}.get(n, f"{n} times")


def _event_text(e: dict | str) -> str:
    return e if isinstance(e, str) else f"{e['t']:.0f} s: {e['event']}"


def render(data: dict) -> str:
    """The results tables of a run (its ``--json`` file), as the results page shows them."""
    f = data["figures"]
    s = data.get("settings", {})
    states = dict(f["states"])
    ordered = [k for k in ("COMPLETE", "PRUNED", "FAIL") if k in states] + sorted(
        k for k in states if k not in ("COMPLETE", "PRUNED", "FAIL")
    )
    killed = [k["trial"] for k in f["killed"]]
    stale = f"{len(f['stale'])}"
    if f["stale"]:
        *head, last = map(str, f["stale"])
        numbers = f"{', '.join(head)} and {last}" if head else last
        exact = sorted(f["stale"]) == sorted(killed)
        stale += f", {'exactly the killed trials' if exact else 'trials'} {numbers}"
    spared = [w for w in data["workers"] if not w["killed"]]
    exits = {w["returncode"] for w in spared}
    out = ["| | value |", "| --- | --- |"]
    if "objective" in s:
        objective = s["objective"] + (f" ({s['sleep']:g} s a trial)" if s["objective"] == "sleep" else "")
        through = f"the storage proxy (retry window {s['retry_seconds']} s)" if s["proxy"] else "PostgreSQL"
        out.append(
            f"| run | {s['workers']} workers through {through}, objective {objective}, "
            f"{s['minutes']:g} min of faults |"
        )
        mlflow = data.get("mlflow")
        down = f", MLflow down {sum(d['seconds'] for d in mlflow['down']):.0f} s" if mlflow else ""
        out.append(
            f"| faults done | {data['restarts']} database restarts, {data.get('proxy_restarts', 0)} proxy "
            f"restarts, {data['kills']} kills{down} |"
        )
    out += [
        f"| wall time (study budget spent) | {data['wall_seconds']:.0f} s |",
        f"| trials in study | {f['trials']}: " + ", ".join(f"{states[k]} {k}" for k in ordered) + " |",
        f"| finished / n_trials | {f['finished']} / {f['n_trials']} |",
        f"| RUNNING / WAITING left | {states.get('RUNNING', 0)} / {states.get('WAITING', 0)} |",
        f"| duplicate trials | {f['duplicates']} |",
        f"| trials without parameters | {len(f['trials_without_params'])} |",
        f"| failed as stale | {stale} |",
    ]
    if f.get("raised"):
        out.append(f"| failed in the objective (worker log) | {', '.join(map(str, f['raised']))} |")
    for k in f["killed"]:
        chain = ", ".join(f"#{r['trial']} {r['state']}" for r in k["retries"])
        retried = f"retried {_times(len(k['retries']))}" + (f": {chain}" if chain else "")
        out.append(f"| killed trial {k['trial']} | {retried} |")
    if "failed_requeued" in f:
        r = f["failed_requeued"]
        out.append(
            f"| failed trials re-queued | {r['once']} of {r['failed']} once, "
            f"{len(r['more_than_once'])} more than once |"
        )
    if "longest_gap_seconds" in f:
        out.append(f"| longest gap between finished trials | {f['longest_gap_seconds']:.0f} s |")
    proxy = data.get("proxy")
    if proxy:
        outages = ", ".join(f"{o['seconds']:.1f} s ({o['signal']})" for o in proxy["outages"]) or "none"
        out.append(f"| proxy unavailable per restart (stop to listening) | {outages} |")
        out.append(f"| worker calls re-sent after UNAVAILABLE (log lines) | {proxy['resent_calls']} |")
    mlflow = data.get("mlflow")
    if mlflow:
        during = ", ".join(
            f"{d['seconds']:.0f} s down: {d['finished_meanwhile']} trials finished" for d in mlflow["down"]
        )
        out.append(f"| MLflow outage | {during or 'none'} |")
        out.append(f"| 'MLflow unavailable' warnings in worker logs | {mlflow['unavailable_warnings']} |")
        b, a = mlflow["before_sync"], mlflow["after_sync"]
        out.append(
            f"| trials mirrored by the workers (before sync) | "
            f"{b['exactly_once']} of {b['finished_trials']} |"
        )
        out.append(
            f"| sync-mlflow | exit {mlflow['sync']['returncode']}, {mlflow['sync']['seconds']:.0f} s |"
        )
        out.append(
            f"| MLflow runs after sync | {a['trial_runs']} for {a['finished_trials']} finished trials: "
            f"{a['exactly_once']} exactly once, {len(a['missing'])} missing, {len(a['twice'])} twice, "
            f"{len(a['without_finished_trial'])} of unfinished trials, "
            f"{len(a['wrong_state_or_incomplete'])} in a wrong state; {a['study_runs']} study run |"
        )
    if exits == {0}:
        out.append(f"| workers not killed | all {len(spared)} exited 0 |")
    else:
        out.append(
            "| workers not killed | "
            + ", ".join(
                f"pid {w['pid']} exited {w['returncode']}"
                + (f" (`{w['last_line']}`)" if w["returncode"] and w.get("last_line") else "")
                for w in spared
            )
            + " |"
        )
    events = [e for e in data.get("events", []) if isinstance(e, dict)]
    if events:
        out += ["", "| seconds since start | event |", "| --- | --- |"]
        out += [f"| {e['t']:.0f} | {e['event']} |" for e in events]
    out += [
        "",
        "Invariants: " + ("OK." if not data["failed"] else "FAILED: " + "; ".join(data["failed"]) + "."),
    ]
    return "\n".join(out) + "\n"


def write_page(page: Path, data_file: Path) -> None:
    """Put ``render`` of ``data_file`` into the page's generated block that names it (the
    block's two marker lines must be there already: where the tables go is the page's)."""
    rel = data_file.resolve().relative_to(ROOT)
    head = f"<!-- generated by benchmarks/hpo_soak.py --report {rel} -->\n"
    block = re.compile(re.escape(head) + r".*?<!-- end generated -->", re.S)
    text = page.read_text()
    if not block.search(text):
        raise SystemExit(f"{page}: no block '{head.strip()}' ... '<!-- end generated -->' to fill")
    body = render(json.loads(data_file.read_text()))
    page.write_text(block.sub(lambda _: head + body + "<!-- end generated -->", text, count=1))


def main() -> int:
    # stopped with SIGTERM, or SIGINT when a non-interactive shell started it in the
    # background with SIGINT ignored: clean up (workers, proxy, MLflow, the cluster) all the same
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="chaos phase length (default 30)")
    ap.add_argument("--db-restarts", type=int, default=3)
    ap.add_argument("--kills", type=int, default=2)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument(
        "--objective",
        choices=("train", "sleep"),
        default="train",
        help="train: tiny models (python -m admet.hpo run); sleep: hpo_workers.py's cheap workers",
    )
    ap.add_argument("--sleep", type=float, default=5.0, help="seconds per trial with --objective sleep")
    ap.add_argument(
        "--n-trials",
        type=int,
        default=None,
        help="budget (default: train 8 a minute; sleep 5 a worker-minute)",
    )
    ap.add_argument("--port", type=int, default=5499)
    ap.add_argument("--outage-seconds", type=float, default=5.0, help="database down per restart")
    ap.add_argument("--retry-seconds", type=int, default=20, help="ADMET_STORAGE_RETRY_SECONDS")
    ap.add_argument(
        "--proxy", action="store_true", help="workers go through python -m admet.hpo serve-storage"
    )
    ap.add_argument("--proxy-port", type=int, default=None, help="the proxy's port (default: a free one)")
    ap.add_argument("--proxy-restarts", type=int, default=0, help="proxy stops and starts (implies --proxy)")
    ap.add_argument("--proxy-outage-seconds", type=float, default=3.0, help="proxy down per restart")
    ap.add_argument(
        "--mlflow-outage-minutes",
        type=float,
        default=None,
        help="start an mlflow server the workers mirror to, down this long mid-run (0: never down)",
    )
    ap.add_argument("--drain-minutes", type=float, default=None, help="after the chaos (default max(5, M/2))")
    ap.add_argument("--epochs", type=int, default=8, help="epochs per trial (trial length)")
    ap.add_argument("--keep", action="store_true", help="keep the worker logs folder")
    ap.add_argument("--json", type=Path, help="also write every figure and event here")
    ap.add_argument("--report", type=Path, help="measure nothing: print the tables of this --json file")
    ap.add_argument("--page", type=Path, help="with --report: write them into this page's generated block")
    opts = ap.parse_args()
    if opts.report:
        if opts.page:
            write_page(opts.page, opts.report)
        else:
            print(render(json.loads(opts.report.read_text())), end="")
        return 0
    opts.proxy = opts.proxy or opts.proxy_restarts > 0
    if opts.objective == "sleep":
        n_trials = opts.n_trials or max(8, round(5 * opts.workers * opts.minutes))
    else:
        n_trials = opts.n_trials or max(8, round(8 * opts.minutes))
    drain = opts.drain_minutes if opts.drain_minutes is not None else max(5.0, opts.minutes / 2)
    max_retry = 2
    proxy_port = opts.proxy_port or _free_port()
    for port in (opts.port, proxy_port) if opts.proxy else (opts.port,):
        if not _port_free(port):
            print(f"port {port} is taken; pass --port / --proxy-port", file=sys.stderr)
            return 2

    start = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="admet-soak-"))
    cluster = Cluster(opts.port)
    workers: Workers | None = None
    proxy: Proxy | None = None
    mlflow: MlflowServer | None = None
    killed_trials: list[int] = []
    log: list[dict] = []

    def note(msg: str) -> None:
        t = time.monotonic() - start
        log.append(
            {"t": round(t, 1), "wall": datetime.datetime.now().isoformat(timespec="seconds"), "event": msg}
        )
        print(f"[{t:7.1f} s] {msg}", flush=True)

    try:
        cluster.create()
        note(
            f"cluster up on port {opts.port}; n_trials={n_trials}, {opts.workers} workers ({opts.objective})"
        )
        env = _env(home, ADMET_STORAGE_RETRY_SECONDS=str(opts.retry_seconds))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
        storage = cluster.url
        if opts.proxy:
            proxy = Proxy(home, cluster.url, proxy_port, env)
            took = proxy.start()
            storage = proxy.url
            note(f"storage proxy up on {proxy.url} ({took:.1f} s)")
        tracking = ["mlflow.enabled=false"]
        if opts.mlflow_outage_minutes is not None:
            mlflow = MlflowServer(home)
            took = mlflow.start()
            tracking = ["mlflow.enabled=true", f"mlflow.tracking_uri={mlflow.uri}"]
            note(f"mlflow server up on {mlflow.uri} ({took:.1f} s)")
        study = ["heartbeat_interval=2", "grace_period=10", f"max_retry={max_retry}", f"n_trials={n_trials}"]
        if opts.objective == "sleep":
            from admet.hpo.spec import load_study_spec

            (home / "spec.pkl").write_bytes(
                pickle.dumps(load_study_spec("joint_sampling", [*study, *tracking]))
            )

            def command(i: int) -> list[str]:
                cmd = [sys.executable, str(ROOT / "benchmarks" / "hpo_workers.py"), "--worker", storage]
                cmd += ["--sleep", str(opts.sleep), "--spec", str(home / "spec.pkl")]
                return [*cmd, "--result", str(home / f"worker-{i}.json")]

        else:
            csv = home / "train.csv"
            _synthetic_frame().to_csv(csv, index=False)
            args = run_args(csv, storage, *study, *tracking, f"optimization.max_epochs={opts.epochs}")

            def command(i: int) -> list[str]:
                return [sys.executable, "-m", "admet.hpo", *args]

        workers = Workers(home, command, env)
        for _ in range(opts.workers):
            workers.start()
        # the schedule's clock starts with the workers (the set-up before, an mlflow server
        # starting on a loaded machine included, may take a minute)
        t_chaos = time.monotonic()
        note(f"{opts.workers} workers started; the schedule's clock starts")
        events = _schedule(
            opts.minutes, opts.db_restarts, opts.kills, opts.proxy_restarts, opts.mlflow_outage_minutes
        )
        done_restarts = done_kills = done_proxy = 0
        proxy_outages: list[dict] = []
        mlflow_down: list[dict] = []
        down_since: tuple[float, datetime.datetime] | None = None
        chaos_end = t_chaos + opts.minutes * 60
        span = opts.minutes * 60
        while events and workers.alive():
            # the first event due: at its time, or earlier when the budget is that far spent
            # (fast trials); MLflow comes back only at its time, M minutes after it stopped
            now = time.monotonic() - t_chaos
            finished = _finished(cluster.url)
            due = [
                i
                for i, (at, what) in enumerate(events)
                if now >= at
                or (what != "mlflow-start" and finished is not None and finished >= at / span * n_trials)
            ]
            if not due:
                time.sleep(1)
                continue
            # MLflow's return first: a kill waiting for a running trial must not prolong the outage
            first = next((i for i in due if events[i][1] == "mlflow-start"), due[0])
            _, what = events.pop(first)
            if what == "restart":
                mode = "fast" if done_restarts % 2 == 0 else "immediate"
                note(f"database stop ({mode}), down for {opts.outage_seconds:g} s")
                cluster.stop(mode)
                time.sleep(opts.outage_seconds)
                cluster.start()
                done_restarts += 1
                note("database up again")
            elif what == "proxy":
                assert proxy is not None
                sig = signal.SIGTERM if done_proxy % 2 == 0 else signal.SIGKILL
                t0 = time.monotonic()
                note(f"proxy stop ({sig.name}), down for {opts.proxy_outage_seconds:g} s")
                proxy.stop(sig)
                time.sleep(opts.proxy_outage_seconds)
                took = proxy.start()
                unavailable = time.monotonic() - t0
                done_proxy += 1
                proxy_outages.append({"signal": sig.name, "seconds": round(unavailable, 1)})
                note(
                    f"proxy up again on the same port ({took:.1f} s to start; "
                    f"unavailable {unavailable:.1f} s)"
                )
                if unavailable > opts.retry_seconds:
                    note(f"the proxy was away longer than the workers' retry window ({opts.retry_seconds} s)")
            elif what == "mlflow-stop":
                assert mlflow is not None
                mlflow.stop()
                down_since = (time.monotonic(), datetime.datetime.now())
                back = time.monotonic() - t_chaos + (opts.mlflow_outage_minutes or 0) * 60
                events = sorted(
                    [e for e in events if e[1] != "mlflow-start"] + [(back, "mlflow-start")],
                    key=lambda e: e[0],
                )
                note(f"mlflow server stopped, for {opts.mlflow_outage_minutes:g} min")
            elif what == "mlflow-start":
                assert mlflow is not None and down_since is not None
                took = mlflow.start()
                mlflow_down.append(
                    {
                        "from": down_since[1].isoformat(),
                        "to": datetime.datetime.now().isoformat(),
                        "seconds": round(time.monotonic() - down_since[0], 1),
                    }
                )
                down_since = None
                note(f"mlflow server up again ({took:.1f} s to start)")
            else:
                # kill a worker in the middle of a trial (wait up to 60 s for one)
                victim, number, until = None, None, time.monotonic() + 60
                while (
                    victim is None
                    and time.monotonic() < until
                    and workers.alive()
                    and not _mlflow_back_due(events, t_chaos)
                ):
                    for proc in workers.alive():
                        number = _running_trial_of(cluster.url, proc.pid)
                        if number is not None:
                            victim = proc
                            break
                    else:
                        time.sleep(1)
                if victim is None and _mlflow_back_due(events, t_chaos):
                    note("no worker is running a trial yet; the kill waits until MLflow is back")
                    events.insert(0, (0.0, "kill"))
                    continue
                if victim is None:
                    note("no worker is running a trial; kill skipped")
                    continue
                workers.kill(victim)
                replacement = workers.start()
                state = _trial_state(cluster.url, number)  # type: ignore[arg-type]
                if state != TrialState.RUNNING:
                    # the trial ended between the look-up and the SIGKILL: nothing to
                    # retry; this kill does not count, another one follows at once
                    note(
                        f"SIGKILL worker pid {victim.pid} landed after its trial {number} ended "
                        f"({state.name if state else '?'}); replacement pid {replacement.pid}; kill again"
                    )
                    events.insert(0, (0.0, "kill"))
                    continue
                killed_trials.append(number)  # type: ignore[arg-type]
                done_kills += 1
                note(f"SIGKILL worker pid {victim.pid} in trial {number}; replacement pid {replacement.pid}")
        if mlflow is not None and down_since is not None:  # the workers finished during the outage
            took = mlflow.start()
            mlflow_down.append(
                {
                    "from": down_since[1].isoformat(),
                    "to": datetime.datetime.now().isoformat(),
                    "seconds": round(time.monotonic() - down_since[0], 1),
                }
            )
            note(f"mlflow server up again after the workers finished ({took:.1f} s to start)")
        while workers.alive() and time.monotonic() < chaos_end:
            time.sleep(2)
        deadline = time.monotonic() + drain * 60
        while workers.alive() and time.monotonic() < deadline:
            time.sleep(2)
        unfinished = workers.alive()
        if unfinished:
            note(f"{len(unfinished)} worker(s) still running after the drain time; stopping them")
        else:
            note("every worker has exited")
        workers.stop_all()
        wall = time.monotonic() - start
        lines, failed, figures = _figures(cluster.url, n_trials, max_retry, killed_trials, workers.raised())
        if unfinished:
            failed.append(f"{len(unfinished)} worker(s) did not finish within {drain:.0f} min")
        mlflow_data = None
        if mlflow is not None:
            trials = _trials(cluster.url)
            before = _mlflow_figures(trials, _mlflow_runs(mlflow.uri))
            t0 = time.monotonic()
            sync_cmd = [sys.executable, "-m", "admet.hpo", "sync-mlflow", "--quiet", "--storage", storage]
            sync = subprocess.run(
                [*sync_cmd, "--tracking-uri", mlflow.uri],
                env=env,
                cwd=home,
                capture_output=True,
                text=True,
                timeout=1800,
            )
            said = (sync.stdout.strip().splitlines() or sync.stderr.strip().splitlines() or [""])[-1]
            note(f"sync-mlflow exit {sync.returncode} ({time.monotonic() - t0:.0f} s): {said}")
            after = _mlflow_figures(trials, _mlflow_runs(mlflow.uri))
            for d in mlflow_down:
                since, until = (
                    datetime.datetime.fromisoformat(d["from"]),
                    datetime.datetime.fromisoformat(d["to"]),
                )
                d["finished_meanwhile"] = sum(
                    t.state.is_finished()
                    and t.datetime_complete is not None
                    and since <= t.datetime_complete <= until
                    for t in trials
                )
            mlflow_data = {
                "down": mlflow_down,
                "unavailable_warnings": workers.log_lines("MLflow unavailable"),
                "before_sync": before,
                "sync": {
                    "returncode": sync.returncode,
                    "seconds": round(time.monotonic() - t0, 1),
                    "said": said,
                },
                "after_sync": after,
            }
            if sync.returncode != 0:
                failed.append(f"sync-mlflow exited {sync.returncode}: {sync.stderr.strip()[-500:]}")
            failed += _mlflow_failures(after)
            lines += [
                "MLflow down:            "
                + (
                    ", ".join(
                        f"{d['seconds']:.0f} s ({d['finished_meanwhile']} trials finished)"
                        for d in mlflow_down
                    )
                    or "never"
                ),
                f"MLflow warnings:        {mlflow_data['unavailable_warnings']} "
                "'MLflow unavailable' lines in worker logs",
                f"mirrored before sync:   {before['exactly_once']} of {before['finished_trials']} "
                "finished trials",
                f"MLflow after sync:      {after['trial_runs']} trial runs, {after['exactly_once']} of "
                f"{after['finished_trials']} finished trials exactly once; missing {after['missing']}, twice "
                f"{after['twice']}, of unfinished trials {after['without_finished_trial']}, wrong state "
                f"{after['wrong_state_or_incomplete']}; {after['study_runs']} study run(s)",
            ]
        proxy_data = None
        if proxy is not None:
            proxy_data = {
                "outages": proxy_outages,
                "resent_calls": workers.log_lines("unavailable during"),
            }
            lines.append(
                "proxy unavailable:      "
                + (", ".join(f"{o['seconds']:.1f} s ({o['signal']})" for o in proxy_outages) or "never")
            )
            lines.append(
                f"calls re-sent:          {proxy_data['resent_calls']} (UNAVAILABLE, worker log lines)"
            )
        print("\n== hpo soak ==")
        print(
            f"events done:            {done_restarts} database restarts, {done_proxy} proxy restarts, "
            f"{done_kills} kills, {len(mlflow_down)} MLflow outage(s)"
        )
        for line in lines:
            print(line)
        print(f"wall time:              {wall:.0f} s")
        for proc in workers.procs:
            tag = " (killed by the soak)" if proc.pid in workers.killed else ""
            print(f"worker pid {proc.pid}: exit {proc.returncode}{tag}")
            if proc.pid not in workers.killed and proc.returncode != 0:
                failed.append(f"worker {proc.pid} exited {proc.returncode} ({_last_line(proc.log)})")  # type: ignore[attr-defined]
                print("  " + proc.log.read_text()[-1500:].replace("\n", "\n  "))  # type: ignore[attr-defined]
        if events:
            print(f"note: the workers finished before these events ran (raise --n-trials): {events}")
        print("invariants:", "OK" if not failed else "FAILED")
        for f in failed:
            print(f"  - {f}")
        if opts.json:
            run = {
                "settings": {k: v for k, v in vars(opts).items() if k not in ("json", "report", "page")},
                "n_trials": n_trials,
                "events": log,
                "restarts": done_restarts,
                "kills": done_kills,
                "proxy_restarts": done_proxy,
                "not_run": [what for _, what in events],
                "wall_seconds": wall,
                "figures": figures,
                "proxy": proxy_data,
                "mlflow": mlflow_data,
                "workers": [
                    {
                        "pid": p.pid,
                        "returncode": p.returncode,
                        "killed": p.pid in workers.killed,
                        "last_line": _last_line(p.log),  # type: ignore[attr-defined]
                    }
                    for p in workers.procs
                ],
                "failed": failed,
            }
            opts.json.write_text(json.dumps(run, indent=1, default=str) + "\n")
        return 1 if failed else 0
    finally:
        if workers is not None:
            workers.stop_all()
        if proxy is not None:
            proxy.stop()
        if mlflow is not None:
            mlflow.stop()
        cluster.remove()
        if opts.keep:
            print(f"logs kept in {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
