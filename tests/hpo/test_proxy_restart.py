"""The storage proxy killed and restarted on the same port under two running workers: the
workers ride it out inside their retry window and the study ends exactly as asked.

Real processes throughout: ``python -m admet.hpo serve-storage`` over a SQLite file, and
two workers of the scale benchmark's cheap objective (``benchmarks/hpo_workers.py
--worker``: the real worker loop, TPE sampler, heartbeat and shared budget; a trial draws
its parameters, reports step 0, sleeps, reports step 1, sleeps), so the test takes seconds
rather than minutes. The proxy is SIGKILLed once a trial has finished and both workers are
inside a trial's sleep (their parameters drawn), and started again at once; a call in
flight when it died fails with ``UNAVAILABLE`` and is sent again
(``_grpc_client._retrying_channel``), calls not yet sent wait for the proxy.

A trial created through the old proxy that draws a parameter through the new one is the
second test: the restarted proxy's Optuna cache did not know the trial until something read
the study's trials through it, and the worker died with NOT_FOUND (found by the soak,
``benchmarks/hpo_soak.py --proxy-restarts``); the proxy's cache now reads such a trial in
(``_optuna_private.cached_storage``). The first test kills the proxy after both running
trials have drawn their parameters, so that it checks the rest of the restart and stays
deterministic.

The third test stops the proxy with SIGTERM for three times the workers' retry window: the
proxy ends within its stop grace (it used to serve on until SIGKILL), the workers wait for
it instead of exiting, and a trial the outage cut is failed and queued again once.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from admet.hpo.spec import load_study_spec

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
N_TRIALS = 8
SLEEP = 2.0  # seconds per cheap trial (two halves, each after a report)
RETRY_SECONDS = 60  # the workers' ADMET_STORAGE_RETRY_SECONDS: the proxy is back well inside it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Procs:
    """The test's processes, each with its log file, for starting and for failure messages."""

    def __init__(self, home: Path, retry_seconds: float = RETRY_SECONDS) -> None:
        self.home = home
        self.env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "ADMET_HOME": str(home),
            "ADMET_STORAGE_RETRY_SECONDS": str(retry_seconds),
            "OMP_NUM_THREADS": "1",
            "PYTHONFAULTHANDLER": "1",
        }
        self.env.pop("ADMET_HPO_STORAGE", None)
        self.env.pop("MLFLOW_TRACKING_URI", None)
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = self.home / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, env=self.env, cwd=self.home, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append((name, proc, log))
        return proc

    def start_proxy(self, name: str, db: Path, port: int) -> subprocess.Popen[bytes]:
        """``serve-storage`` over the SQLite file ``db`` on ``port``, once it listens."""
        serve = [sys.executable, "-m", "admet.hpo", "serve-storage", "--storage", f"sqlite:///{db}"]
        proxy = self.start(name, [*serve, "--port", str(port)])
        log = self.home / f"{name}.log"
        _wait(f"{name} ready", lambda: "storage proxy on" in log.read_text(errors="replace"), 60, self)
        return proxy

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} (pid {p.pid}, exit {p.poll()}):\n{log.read_text(errors='replace')[-3000:]}"
            for name, p, log in self.procs
        )

    def stop_all(self) -> None:
        for _, p, _ in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)


def _wait(what: str, done: Callable[[], bool], seconds: float, procs: _Procs) -> None:
    """Poll ``done`` until true; fail with every log after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds:g} s\n{procs.logs()}")
        time.sleep(0.2)


def _states(db: Path) -> Counter[str]:
    """Trial states, read straight from the SQLite file (not through the proxy); a RUNNING
    trial that has reported a step (its parameters are drawn, it sleeps) counts as
    ``RUNNING+reported`` too."""
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            states = Counter(state for (state,) in conn.execute("SELECT state FROM trials"))
            states["RUNNING+reported"] = conn.execute(
                "SELECT count(DISTINCT t.trial_id) FROM trials t "
                "JOIN trial_intermediate_values v ON v.trial_id = t.trial_id WHERE t.state = 'RUNNING'"
            ).fetchone()[0]
            return states
    except sqlite3.OperationalError:  # no tables yet
        return Counter()


def _two_workers_through_a_proxy_outage(
    tmp_path: Path, procs: _Procs, outage: Callable[[subprocess.Popen[bytes]], None]
) -> tuple[Counter[str], list[tuple[int, int, str]], dict[int, dict[str, float]], list[str]]:
    """Two cheap workers on a study through the proxy; once a trial has finished and both
    workers are inside a trial whose parameters are drawn, ``outage(proxy)`` stops it, and
    the proxy is started again on its port. Returns the states at the stop, the study's
    trials (id, number, state), their parameters and their retry histories' last entries."""
    db = tmp_path / "studies.db"
    port = _free_port()
    spec = load_study_spec(
        "joint_sampling",
        [f"n_trials={N_TRIALS}", "mlflow.enabled=false", "heartbeat_interval=2", "grace_period=30"],
    )
    (tmp_path / "spec.pkl").write_bytes(pickle.dumps(spec))
    try:
        proxy = procs.start_proxy("proxy-1", db, port)
        workers = []
        for i in range(2):
            cmd = [sys.executable, str(ROOT / "benchmarks" / "hpo_workers.py"), "--worker"]
            cmd += [f"grpc://127.0.0.1:{port}", "--sleep", str(SLEEP), "--spec", str(tmp_path / "spec.pkl")]
            cmd += ["--result", str(tmp_path / f"worker-{i}.json")]
            workers.append(procs.start(f"worker-{i}", cmd))

        # the event, not a sleep: a trial finished, and both workers are inside a trial
        # whose parameters are drawn (module docstring: why not while one draws them)
        def both_sleeping() -> bool:
            states = _states(db)
            return states["COMPLETE"] >= 1 and states["RUNNING+reported"] == 2

        _wait("a COMPLETE trial and two trials running past their draw", both_sleeping, 90, procs)
        assert all(w.poll() is None for w in workers), (
            "a worker ended before the proxy was stopped\n" + procs.logs()
        )
        outage(proxy)
        stopped_at = _states(db)
        procs.start_proxy("proxy-2", db, port)  # the same port
        for w in workers:
            try:
                w.wait(timeout=120)
            except subprocess.TimeoutExpired:
                pytest.fail("a worker did not finish within 120 s of the restart\n" + procs.logs())
        assert [w.returncode for w in workers] == [0, 0], procs.logs()
        assert stopped_at["COMPLETE"] < N_TRIALS, f"the study ended before the stop ({stopped_at})"
    finally:
        procs.stop_all()

    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT t.trial_id, t.number, t.state FROM trials t JOIN studies s ON s.study_id = t.study_id "
            "WHERE s.study_name = 'joint_sampling'"
        ).fetchall()
        params: dict[int, dict[str, float]] = {}
        for trial_id, name, value in conn.execute(
            "SELECT trial_id, param_name, param_value FROM trial_params"
        ):
            params.setdefault(trial_id, {})[name] = value
        origins = [
            json.loads(v)[-1]
            for (v,) in conn.execute(
                "SELECT value_json FROM trial_system_attributes WHERE key = 'retry_history'"
            )
        ]
    return stopped_at, rows, params, origins


def test_proxy_killed_and_restarted_under_two_workers(tmp_path):
    t0 = time.monotonic()
    procs = _Procs(tmp_path)

    def kill(proxy: subprocess.Popen[bytes]) -> None:  # restarted at once: inside the window
        proxy.send_signal(signal.SIGKILL)
        proxy.wait(timeout=30)

    killed_at, rows, params, _ = _two_workers_through_a_proxy_outage(tmp_path, procs, kill)
    states = Counter(state for _, _, state in rows)  # rows: the study's trials only
    assert states == Counter({"COMPLETE": N_TRIALS}), (
        f"{dict(states)}\n{procs.logs()}"
    )  # none RUNNING or FAIL
    numbers = [number for _, number, _ in rows]
    assert sorted(numbers) == list(range(N_TRIALS)), numbers  # no number twice, none skipped
    drawn = [json.dumps(params.get(trial_id, {}), sort_keys=True) for trial_id, _, _ in rows]
    assert all(params.get(trial_id) for trial_id, _, _ in rows), "a trial without parameters"
    assert len(set(drawn)) == N_TRIALS, "two trials with the same parameters (one trial created twice)"
    told = [len(json.loads((tmp_path / f"worker-{i}.json").read_text())["tell"]) for i in range(2)]
    assert sum(told) == N_TRIALS, told  # each trial told once, by one worker
    print(f"proxy killed at {dict(killed_at)}; {time.monotonic() - t0:.1f} s")


def test_a_proxy_away_longer_than_the_retry_window(tmp_path):
    """SIGTERM ends the proxy within its stop grace (Optuna's ``run_grpc_proxy_server`` kept
    serving until SIGKILL: 30 s in the soak), and two workers whose retry window is 3 s wait
    out a 9 s outage instead of exiting: the study ends as asked, and a trial the outage
    cut is failed and queued again exactly once."""
    procs = _Procs(tmp_path, retry_seconds=3)
    took: list[float] = []

    def stop(proxy: subprocess.Popen[bytes]) -> None:
        t = time.monotonic()
        proxy.send_signal(signal.SIGTERM)
        try:
            proxy.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("the proxy did not stop within 20 s of SIGTERM\n" + procs.logs())
        took.append(time.monotonic() - t)
        time.sleep(9.0)  # the outage itself: three retry windows

    _, rows, params, origins = _two_workers_through_a_proxy_outage(tmp_path, procs, stop)
    assert took[0] < 10, f"SIGTERM took {took[0]:.1f} s to stop the proxy"
    states = Counter(state for _, _, state in rows)
    assert states["COMPLETE"] == N_TRIALS and not states["RUNNING"] and not states["WAITING"], (
        f"{dict(states)}\n{procs.logs()}"
    )
    numbers = [number for _, number, _ in rows]
    assert len(set(numbers)) == len(numbers), numbers
    assert all(params.get(trial_id) for trial_id, _, _ in rows), "a trial without parameters"
    failed = sorted(number for _, number, state in rows if state == "FAIL")
    assert sorted(origins) == failed, f"failed {failed}, queued again from {origins}\n{procs.logs()}"
    print(f"proxy stopped in {took[0]:.1f} s; failed and retried once: {failed}")


def test_a_trial_created_before_a_proxy_restart_draws_a_parameter_after_it(tmp_path, monkeypatch):
    """Define-by-run: a trial asked and given one parameter through the proxy, which is then
    killed and started again on its port, draws its next parameter and is told (the new
    proxy's cache did not know the trial: NOT_FOUND, raised as KeyError, ended the worker)."""
    import optuna

    from admet.hpo.storage import open_grpc_storage

    monkeypatch.setenv("ADMET_STORAGE_RETRY_SECONDS", str(RETRY_SECONDS))
    port = _free_port()
    procs = _Procs(tmp_path)
    db = tmp_path / "s.db"

    storage = None
    try:
        proxy = procs.start_proxy("proxy-1", db, port)
        storage = open_grpc_storage(f"grpc://127.0.0.1:{port}")
        # a random sampler reads no trials, so nothing warms the new proxy's cache
        study = optuna.create_study(study_name="s", storage=storage, sampler=optuna.samplers.RandomSampler(0))
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        proxy.send_signal(signal.SIGKILL)
        proxy.wait(timeout=30)
        procs.start_proxy("proxy-2", db, port)
        trial.suggest_float("y", 0, 1)
        study.tell(trial, 1.0)
        done = study.trials[0]
        assert done.state.name == "COMPLETE" and set(done.params) == {"x", "y"}
    finally:
        if storage is not None:
            storage.close()
        procs.stop_all()
