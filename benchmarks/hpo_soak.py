"""Soak run of the HPO service: several workers share one PostgreSQL study while the
database restarts and workers are SIGKILLed; then checks the invariants and prints figures.

The script creates its own PostgreSQL cluster (``initdb`` into a temporary folder, as the
``postgres`` user when run as root; trust auth on 127.0.0.1; port ``--port``), so its
restarts disturb nobody, and always removes it at the end. Workers are
``python -m admet.hpo run`` processes started as the service tests start them
(tests/hpo/test_hpo_service.py), on a small synthetic table (tests/conftest.py) with a
tiny model. Database restarts (alternately a fast shutdown and a crash-like immediate one,
each followed by an outage) and kills (of a worker that is running a trial; a replacement
worker is started) are spread over ``--minutes``; then the workers get a bounded time to
finish the budget. An event is also due, ahead of its time, once the budget is spent as
far as its place in the schedule (fast trials would otherwise end the study first).

Invariants (exit status 1 when one fails): the finished trials (COMPLETE + PRUNED) equal
``n_trials``; no trial is left RUNNING; no duplicate trial (two trials queued from the same
failed trial with the same retry history: a duplicated ``add_trial`` or a stale trial
retried twice); every killed trial was retried; every worker not killed by the soak exits 0.

    nice -n 10 python benchmarks/hpo_soak.py --minutes 30 --db-restarts 3 --kills 2 [--json out.json]
    python benchmarks/hpo_soak.py --report out.json   # the results page's table, nothing run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
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


class Workers:
    """The worker processes, started and stopped; each worker's exit code and whether the
    soak killed it."""

    def __init__(self, home: Path, url: str, args: list[str], retry_seconds: int) -> None:
        self.home, self.url, self.args = home, url, args
        self.env = _env(home, ADMET_STORAGE_RETRY_SECONDS=str(retry_seconds))
        self.procs: list[subprocess.Popen[str]] = []
        self.killed: set[int] = set()  # pids

    def start(self) -> subprocess.Popen[str]:
        log = self.home / f"worker-{len(self.procs)}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "admet.hpo", *self.args],
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


def _schedule(minutes: float, restarts: int, kills: int) -> list[tuple[float, str]]:
    """The events, alternately restart and kill while both are left, evenly spread."""
    events: list[str] = []
    r, k = restarts, kills
    while r or k:
        if r and (r >= k or not k):
            events.append("restart")
            r -= 1
        if k:
            events.append("kill")
            k -= 1
    span = minutes * 60
    return [(span * (i + 1) / (len(events) + 1), e) for i, e in enumerate(events)]


def _figures(
    url: str, n_trials: int, max_retry: int, killed_trials: list[int]
) -> tuple[list[str], list[str], dict]:
    """The printed lines, the failed invariants and the figures (for ``--json``)."""
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
    stale = [t for t in trials if t.state == TrialState.FAIL and "fail_reason" not in t.user_attrs]
    lines.append(f"failed as stale:        {len(stale)} {[t.number for t in stale] or ''}".rstrip())
    figures: dict = {
        "trials": len(trials),
        "states": dict(states),
        "finished": finished,
        "n_trials": n_trials,
        "duplicates": duplicates,
        "trials_without_params": no_params,
        "stale": [t.number for t in stale],
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
    return lines, failed, figures


def _times(n: int) -> str:
    return {0: "never", 1: "once", 2: "twice"}.get(n, f"{n} times")


def render(data: dict) -> str:
    """The results table of a run (its ``--json`` file), as the results page shows it."""
    f = data["figures"]
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
    out = [
        "| | value |",
        "| --- | --- |",
        f"| wall time (study budget spent) | {data['wall_seconds']:.0f} s |",
        f"| trials in study | {f['trials']}: " + ", ".join(f"{states[k]} {k}" for k in ordered) + " |",
        f"| finished / n_trials | {f['finished']} / {f['n_trials']} |",
        f"| RUNNING / WAITING left | {states.get('RUNNING', 0)} / {states.get('WAITING', 0)} |",
        f"| duplicate trials | {f['duplicates']} |",
        f"| trials without parameters | {len(f['trials_without_params'])} |",
        f"| failed as stale | {stale} |",
    ]
    for k in f["killed"]:
        chain = ", ".join(f"#{r['trial']} {r['state']}" for r in k["retries"])
        retried = f"retried {_times(len(k['retries']))}" + (f": {chain}" if chain else "")
        out.append(f"| killed trial {k['trial']} | {retried} |")
    if exits == {0}:
        out.append(f"| workers not killed | all {len(spared)} exited 0 |")
    else:
        out.append(
            "| workers not killed | "
            + ", ".join(f"pid {w['pid']} exited {w['returncode']}" for w in spared)
            + " |"
        )
    out += [
        "",
        "Invariants: " + ("OK." if not data["failed"] else "FAILED: " + "; ".join(data["failed"]) + "."),
    ]
    return "\n".join(out) + "\n"


def main() -> int:
    # stopped with SIGTERM, or SIGINT when a non-interactive shell started it in the
    # background with SIGINT ignored: clean up (workers, the cluster) all the same
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="chaos phase length (default 30)")
    ap.add_argument("--db-restarts", type=int, default=3)
    ap.add_argument("--kills", type=int, default=2)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--n-trials", type=int, default=None, help="budget (default: 8 a minute, >= 8)")
    ap.add_argument("--port", type=int, default=5499)
    ap.add_argument("--outage-seconds", type=float, default=5.0, help="database down per restart")
    ap.add_argument("--retry-seconds", type=int, default=20, help="ADMET_STORAGE_RETRY_SECONDS")
    ap.add_argument("--drain-minutes", type=float, default=None, help="after the chaos (default max(5, M/2))")
    ap.add_argument("--epochs", type=int, default=8, help="epochs per trial (trial length)")
    ap.add_argument("--keep", action="store_true", help="keep the worker logs folder")
    ap.add_argument("--json", type=Path, help="also write every figure of the table here")
    ap.add_argument("--report", type=Path, help="measure nothing: print the table of this --json file")
    opts = ap.parse_args()
    if opts.report:
        print(render(json.loads(opts.report.read_text())), end="")
        return 0
    n_trials = opts.n_trials or max(8, round(8 * opts.minutes))
    drain = opts.drain_minutes if opts.drain_minutes is not None else max(5.0, opts.minutes / 2)
    max_retry = 2
    if not _port_free(opts.port):
        print(f"port {opts.port} is taken; pass --port", file=sys.stderr)
        return 2

    start = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="admet-soak-"))
    csv = home / "train.csv"
    _synthetic_frame().to_csv(csv, index=False)
    cluster = Cluster(opts.port)
    workers: Workers | None = None
    killed_trials: list[int] = []
    log: list[str] = []

    def note(msg: str) -> None:
        line = f"[{time.monotonic() - start:7.1f} s] {msg}"
        log.append(line)
        print(line, flush=True)

    try:
        cluster.create()
        note(f"cluster up on port {opts.port} ({cluster.dir}); n_trials={n_trials}, {opts.workers} workers")
        args = run_args(
            csv,
            cluster.url,
            f"n_trials={n_trials}",
            "mlflow.enabled=false",
            f"optimization.max_epochs={opts.epochs}",
            "heartbeat_interval=2",
            "grace_period=10",
            f"max_retry={max_retry}",
        )
        workers = Workers(home, cluster.url, args, opts.retry_seconds)
        for _ in range(opts.workers):
            workers.start()
        events = _schedule(opts.minutes, opts.db_restarts, opts.kills)
        done_restarts = done_kills = 0
        chaos_end = start + opts.minutes * 60
        planned = len(events)
        while events and workers.alive():
            at, what = events[0]
            # due at its time, or earlier when the budget is that far spent (fast trials)
            share = (planned - len(events) + 1) / (planned + 1)
            finished = _finished(cluster.url)
            if time.monotonic() - start < at and (finished is None or finished < share * n_trials):
                time.sleep(1)
                continue
            events.pop(0)
            if what == "restart":
                mode = "fast" if done_restarts % 2 == 0 else "immediate"
                note(f"database stop ({mode}), down for {opts.outage_seconds:.0f} s")
                cluster.stop(mode)
                time.sleep(opts.outage_seconds)
                cluster.start()
                done_restarts += 1
                note("database up again")
            else:
                # kill a worker in the middle of a trial (wait up to 60 s for one)
                victim, number, until = None, None, time.monotonic() + 60
                while victim is None and time.monotonic() < until and workers.alive():
                    for proc in workers.alive():
                        number = _running_trial_of(cluster.url, proc.pid)
                        if number is not None:
                            victim = proc
                            break
                    else:
                        time.sleep(1)
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
        while workers.alive() and time.monotonic() < chaos_end:
            time.sleep(2)
        deadline = time.monotonic() + drain * 60
        while workers.alive() and time.monotonic() < deadline:
            time.sleep(2)
        unfinished = workers.alive()
        if unfinished:
            note(f"{len(unfinished)} worker(s) still running after the drain time; stopping them")
        workers.stop_all()
        wall = time.monotonic() - start
        lines, failed, figures = _figures(cluster.url, n_trials, max_retry, killed_trials)
        if unfinished:
            failed.append(f"{len(unfinished)} worker(s) did not finish within {drain:.0f} min")
        print("\n== hpo soak ==")
        print(f"events done:            {done_restarts} database restarts, {done_kills} kills")
        for line in lines:
            print(line)
        print(f"wall time:              {wall:.0f} s")
        for proc in workers.procs:
            tag = " (killed by the soak)" if proc.pid in workers.killed else ""
            print(f"worker pid {proc.pid}: exit {proc.returncode}{tag}")
            if proc.pid not in workers.killed and proc.returncode != 0:
                failed.append(f"worker {proc.pid} exited {proc.returncode}")
                print("  " + proc.log.read_text()[-1500:].replace("\n", "\n  "))  # type: ignore[attr-defined]
        if done_restarts < opts.db_restarts or done_kills < opts.kills:
            print("note: the workers finished before all events ran (raise --n-trials)")
        print("invariants:", "OK" if not failed else "FAILED")
        for f in failed:
            print(f"  - {f}")
        if opts.json:
            run = {
                "settings": {k: v for k, v in vars(opts).items() if k not in ("json", "report")},
                "n_trials": n_trials,
                "events": log,
                "restarts": done_restarts,
                "kills": done_kills,
                "wall_seconds": wall,
                "figures": figures,
                "workers": [
                    {"pid": p.pid, "returncode": p.returncode, "killed": p.pid in workers.killed}
                    for p in workers.procs
                ],
                "failed": failed,
            }
            opts.json.write_text(json.dumps(run, indent=1, default=str) + "\n")
        return 1 if failed else 0
    finally:
        if workers is not None:
            workers.stop_all()
        cluster.remove()
        if opts.keep:
            print(f"worker logs kept in {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
