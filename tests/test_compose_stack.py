"""docker-compose.yml exercised for real, without Docker: every service's ``command`` runs as
a plain process with that service's ``environment``, interpolated the way compose does.

No image can be pulled or built here, so the test stands in for the container runtime:

* **Interpolation**: ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?msg}``,
  ``${VAR?msg}``, ``${VAR:+alt}``, ``$VAR`` and ``$$`` are resolved from a test-provided
  environment (what ``.env`` would hold), as ``docker compose config`` resolves them.
* **The postgres service** is the local PostgreSQL of ``ADMET_TEST_POSTGRES_URL``: the test
  creates the study database (``POSTGRES_DB``, which the postgres image creates) and runs
  ``docker/initdb/*.sh`` against it (which creates ``MLFLOW_DB``), then drops both.
* **Hostnames**: we cannot edit /etc/hosts, so in every interpolated string a service's
  network address is substituted: ``postgres:5432`` (after ``//`` or ``@``) becomes the
  local server's ``host:port``, and ``<service>:<container port>`` of a service that
  publishes ports (``mlflow:5000``, ``dashboard:8080``) becomes ``127.0.0.1:<published
  port>``; in that service's own command ``--port <container port>`` becomes the published
  port (a free one, given through ``MLFLOW_PORT`` / ``DASHBOARD_PORT``) and ``--host
  0.0.0.0`` becomes ``127.0.0.1``. Requests to MLflow are also made with the ``Host:
  mlflow:5000`` header a worker container sends, which MLflow's host check must accept.
* **Volumes**: a named volume is a fresh folder, a bind mount its host folder; a container
  path (``/work``, ``/data``, ``/mlartifacts``) in a command, an environment value (also
  the image's ``ENV`` from the Dockerfile) or a healthcheck becomes that folder. An
  absolute path in an environment value that no volume of the service mounts is private
  to the container: a folder of its own per service.
* **depends_on**: services start in dependency order; ``condition: service_healthy`` waits
  for the dependency's own ``healthcheck`` command (run with the same substitutions).
* ``python`` and ``mlflow`` are this virtual env's; ``--scale worker=2`` is two processes;
  services of a profile (the CUDA workers) are not started, as by ``docker compose up``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from admet.paths import project_root

ROOT = project_root()
BIN = Path(sys.executable).parent

# The workers' command plus what makes the run tiny (tests/hpo/test_hpo_service.py's TINY).
TINY_RUN = [
    "--quiet",
    "data.train_file=/data/train.csv",  # a container path: the data bind mount
    "data.target_cols=[logP, TPSA, MW]",
    "optimization.max_epochs=1",
    "ensemble.n_members=2",
    "ensemble.split=random",
    "model.depth=2",
    "model.message_hidden_dim=16",
    "model.hidden_dim=16",
    "model.num_layers=1",
    "n_trials=2",
]


# -- compose semantics --------------------------------------------------------------------


class InterpolationError(ValueError):
    pass


def interpolate(value: object, env: dict[str, str]) -> object:
    """Resolve compose variables in every string of a loaded compose file."""
    if isinstance(value, str):
        return _interpolate_str(value, env)
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    return value


def _interpolate_str(text: str, env: dict[str, str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "$":
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            depth, j = 1, i + 2
            while j < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            if depth:
                raise InterpolationError(f"unterminated variable in {text!r}")
            out.append(_expand(text[i + 2 : j - 1], env))
            i = j
        else:
            m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[i + 1 :])
            if not m:
                raise InterpolationError(f"invalid interpolation format in {text!r}")
            out.append(env.get(m.group(0), ""))
            i += 1 + m.end()
    return "".join(out)


def _expand(expr: str, env: dict[str, str]) -> str:
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", expr, flags=re.S)
    if not m:
        raise InterpolationError(f"invalid interpolation format: ${{{expr}}}")
    name, op, arg = m.group(1), m.group(2), m.group(3) or ""
    value = env.get(name)
    unset_or_empty = not value if op and op.startswith(":") else value is None
    if op is None:
        return value or ""
    if op.endswith("-"):
        return _interpolate_str(arg, env) if unset_or_empty else str(value)
    if op.endswith("?"):
        if unset_or_empty:
            raise InterpolationError(f"required variable {name} is missing a value: {arg}")
        return str(value)
    return "" if unset_or_empty else _interpolate_str(arg, env)  # :+ and +


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _argv(command: object) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command or []]


def _image_env() -> dict[str, str]:
    """The ``ENV`` lines of the Dockerfile (every service runs that image)."""
    env: dict[str, str] = {}
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("ENV "):
            env.update(item.split("=", 1) for item in shlex.split(line[4:]))
    return env


def test_interpolation_follows_compose():
    env = {"SET": "x", "EMPTY": ""}
    cases = {
        "${SET}": "x",
        "$SET/y": "x/y",
        "${UNSET:-d}": "d",
        "${EMPTY:-d}": "d",
        "${EMPTY-d}": "",
        "${UNSET-d}": "d",
        "${SET:+alt}": "alt",
        "${UNSET:+alt}": "",
        "${UNSET:-${SET}}": "x",
        "$${SET}": "${SET}",
        "a:${SET:?need it}@b": "a:x@b",
    }
    for text, expected in cases.items():
        assert _interpolate_str(text, env) == expected, text
    for text in ("${UNSET:?set it}", "${EMPTY:?set it}", "${UNSET?set it}"):
        with pytest.raises(InterpolationError, match="set it"):
            _interpolate_str(text, env)
    assert _interpolate_str("${EMPTY?fine}", env) == ""


def test_compose_file_needs_only_the_password():
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    with pytest.raises(InterpolationError, match="POSTGRES_PASSWORD"):
        interpolate(raw, {})
    resolved = interpolate(raw, {"POSTGRES_PASSWORD": "dummy"})
    worker = resolved["services"]["worker"]
    assert _environment(worker)["ADMET_HPO_STORAGE"] == "postgresql://admet:dummy@postgres:5432/admet"
    assert _environment(worker)["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_a_tracking_server_keeps_the_artifacts(monkeypatch, tmp_path):
    """New experiments get no client-side artifact folder when MLflow is a server (its
    --serve-artifacts proxy places them); beside an embedded store they go to mlartifacts/."""
    from admet.tracking import _artifact_location

    monkeypatch.setenv("ADMET_HOME", str(tmp_path))
    assert _artifact_location("http://mlflow:5000", "e") is None
    assert _artifact_location("https://mlflow.example", "e") is None
    local = _artifact_location(f"sqlite:///{tmp_path / 'mlflow.db'}", "e")
    assert local == (tmp_path / "mlartifacts" / "e").as_uri()


# -- the stack ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """The compose services as processes (see the module docstring for the substitutions)."""

    def __init__(self, compose: dict, tmp: Path, pg_host: str, pg_port: int) -> None:
        self.services: dict[str, dict] = compose["services"]
        self.volumes_root = tmp / "volumes"
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True)
        self.procs: dict[str, subprocess.Popen] = {}
        # network stand-ins: service -> (container port, host, host port)
        self.addresses: dict[str, tuple[str, str, str]] = {"postgres": ("5432", pg_host, str(pg_port))}
        for name, service in self.services.items():
            for spec in service.get("ports", []):
                parts = str(spec).split(":")
                host_ip, host_port, container_port = (["0.0.0.0", *parts] if len(parts) == 2 else parts)[-3:]
                assert host_ip == "127.0.0.1", f"{name} publishes {spec} beyond loopback"
                self.addresses[name] = (container_port, "127.0.0.1", host_port)

    # substitutions

    def mounts(self, name: str) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for spec in self.services[name].get("volumes", []):
            source, target = str(spec).split(":")[:2]
            if source.startswith((".", "/", "~")):
                host = (ROOT / Path(source).expanduser()).resolve()
            else:
                host = self.volumes_root / source
            host.mkdir(parents=True, exist_ok=True)
            out[target] = host
        return out

    def translate(self, name: str, text: str) -> str:
        for service, (cport, host, hport) in self.addresses.items():
            text = re.sub(rf"(?<=[/@]){re.escape(service)}:{cport}(?=[/\s'\"]|$)", f"{host}:{hport}", text)
        if name in self.addresses and name != "postgres":
            cport, _, hport = self.addresses[name]
            text = re.sub(
                rf"(?<=//)(127\.0\.0\.1|localhost):{cport}(?=[/\s'\"]|$)", f"127.0.0.1:{hport}", text
            )
        for target, host in sorted(self.mounts(name).items(), key=lambda kv: -len(kv[0])):
            text = re.sub(rf"(^|[=\s'\"]){re.escape(target)}(?=/|$|[\s'\"])", rf"\g<1>{host}", text)
        return text

    def argv(self, name: str, argv: list[str]) -> list[str]:
        out = [self.translate(name, a) for a in argv]
        if name in self.addresses and name != "postgres":
            cport, _, hport = self.addresses[name]
            out = [hport if a == cport and i and out[i - 1] == "--port" else a for i, a in enumerate(out)]
        out = [
            "127.0.0.1" if a == "0.0.0.0" and i and out[i - 1] == "--host" else a for i, a in enumerate(out)
        ]
        if out and out[0] in ("python", "python3"):
            out[0] = sys.executable
        elif out and (BIN / out[0]).exists():
            out[0] = str(BIN / out[0])
        return out

    def env(self, name: str) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "CI")}
        image = {**_image_env(), **_environment(self.services[name])}
        own = self.volumes_root.parent / "containers" / name  # the container's own filesystem
        resolved = {}
        for key, value in image.items():
            value = self.translate(name, value)
            if value.startswith("/") and not Path(value).is_relative_to(self.volumes_root.parent):
                value = str(own / value.lstrip("/"))  # a path in the container, not mounted
            resolved[key] = value
        return {**keep, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1", **resolved}

    # processes

    def start(self, name: str, extra: list[str] = (), replica: int = 1) -> subprocess.Popen:
        argv = self.argv(name, _argv(self.services[name].get("command")) + list(extra))
        env = self.env(name)
        cwd = self.volumes_root.parent / "app"  # the image's WORKDIR: nothing is written there
        cwd.mkdir(exist_ok=True)
        key = f"{name}-{replica}"
        log = self.logs / f"{key}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs[key] = proc
        return proc

    def healthy(self, name: str) -> bool:
        if "healthcheck" not in self.services[name]:  # no healthcheck: its port accepts connections
            _, host, port = self.addresses[name]
            try:
                socket.create_connection((host, int(port)), timeout=2).close()
                return True
            except OSError:
                return False
        test = self.services[name]["healthcheck"]["test"]
        test = [test] if isinstance(test, str) else list(test)
        if test[0] == "CMD-SHELL":
            argv = ["sh", "-c", self.translate(name, test[1])]
        else:
            argv = self.argv(name, test[1:] if test[0] == "CMD" else test)
        env = self.env(name)
        if name == "postgres":  # pg_isready inside the container talks to its own server
            _, env["PGHOST"], env["PGPORT"] = self.addresses["postgres"]
        timeout = _seconds(self.services[name]["healthcheck"].get("timeout", "30s")) + 10
        try:
            return subprocess.run(argv, env=env, capture_output=True, timeout=timeout).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def wait_healthy(self, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for key, proc in self.procs.items():
                if key.startswith(f"{name}-") and proc.poll() is not None:
                    raise AssertionError(f"{key} exited ({proc.returncode}) before it was healthy")
            if self.healthy(name):
                return
            time.sleep(1)
        raise AssertionError(f"{name} not healthy after {timeout:.0f} s")

    def order(self) -> list[str]:
        done: list[str] = []

        def visit(name: str, path: tuple[str, ...] = ()) -> None:
            assert name not in path, f"depends_on cycle: {path}"
            for dep in self.services[name].get("depends_on", {}):
                visit(dep, (*path, name))
            if name not in done:
                done.append(name)

        for name, service in self.services.items():
            if not service.get("profiles"):  # a profile's services start only when asked for
                visit(name)
        return done

    def dump_logs(self, chars: int | None = 6000) -> str:
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            text = log.read_text(errors="replace")
            parts.append(f"===== {log.stem} =====\n{text[-chars:] if chars else text}")
        return "\n".join(parts)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)


def _seconds(duration: str | int) -> float:
    text = str(duration)
    return float(text[:-1]) * {"s": 1, "m": 60, "h": 3600}[text[-1]] if text[-1] in "smh" else float(text)


def _get(url: str, host: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def databases(postgres_url: str):
    """(user, host, port, study db, mlflow db) on the local PostgreSQL; dropped afterwards."""
    import sqlalchemy

    url = sqlalchemy.engine.make_url(postgres_url)
    tag = uuid.uuid4().hex[:8]
    names = (f"admet_compose_{tag}", f"admet_compose_mlflow_{tag}")
    engine = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{names[0]}"'))
    try:
        yield url.username or "postgres", url.host or "127.0.0.1", url.port or 5432, *names
    finally:
        with engine.connect() as conn:
            for name in names:
                conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_compose_stack_runs_a_two_worker_study(databases, synthetic_csv, tmp_path):
    import optuna
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    user, pg_host, pg_port, study_db, mlflow_db = databases
    password = f"pw-{uuid.uuid4().hex}"  # trust authentication: never checked, must never be printed
    data_dir = tmp_path / "shared-data"
    data_dir.mkdir()
    (data_dir / "train.csv").write_bytes(synthetic_csv.read_bytes())
    dot_env = {
        "POSTGRES_USER": user,
        "POSTGRES_PASSWORD": password,
        "POSTGRES_DB": study_db,
        "MLFLOW_DB": mlflow_db,
        "ADMET_DATA_HOST_DIR": str(data_dir),
        "MLFLOW_PORT": str(_free_port()),
        "DASHBOARD_PORT": str(_free_port()),
    }
    compose = interpolate(yaml.safe_load((ROOT / "docker-compose.yml").read_text()), dot_env)
    stack = Stack(compose, tmp_path, pg_host, pg_port)

    # the postgres image's first start: POSTGRES_DB exists (fixture), then docker/initdb/*.sh
    pg_env = {**stack.env("postgres"), "PGHOST": pg_host, "PGPORT": str(pg_port)}
    for script in sorted((ROOT / "docker" / "initdb").glob("*.sh")):
        done = subprocess.run(["bash", str(script)], env=pg_env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    assert stack.healthy("postgres")

    mlflow_url = f"http://127.0.0.1:{dot_env['MLFLOW_PORT']}"
    dashboard_url = f"http://127.0.0.1:{dot_env['DASHBOARD_PORT']}"
    home = stack.volumes_root / "work"  # ADMET_HOME=/work of the workers
    failed = True
    try:
        for name in stack.order():
            if name == "postgres":
                continue
            for dep, how in (stack.services[name].get("depends_on") or {}).items():
                if (how or {}).get("condition") == "service_healthy" and dep != "postgres":
                    stack.wait_healthy(dep, timeout=240)
            if name == "worker":
                workers = [stack.start("worker", TINY_RUN, replica=k) for k in (1, 2)]
            else:
                stack.start(name)
        for name in ("mlflow", "dashboard"):
            stack.wait_healthy(name, timeout=240)

        deadline = time.monotonic() + 600
        for proc in workers:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        assert [p.returncode for p in workers] == [0, 0]

        # the study database
        storage = _environment(stack.services["worker"])["ADMET_HPO_STORAGE"]
        study = optuna.load_study(study_name="joint_sampling", storage=stack.translate("worker", storage))
        finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len(finished) == 2 and len(study.trials) == 2
        assert {k for k in study.user_attrs if k.startswith("worker:")} == {"worker:0", "worker:1"}

        # the MLflow server: a worker container reaches it as mlflow:5000
        status, body = _get(f"{mlflow_url}/api/2.0/mlflow/experiments/search?max_results=5", "mlflow:5000")
        assert status == 200, body[:300]
        client = MlflowClient(mlflow_url)
        exp = client.get_experiment_by_name("optuna-joint_sampling")
        assert exp is not None and exp.artifact_location.startswith("mlflow-artifacts:")
        runs = [r for r in client.search_runs([exp.experiment_id]) if "optuna.trial_number" in r.data.tags]
        assert sorted(int(r.data.tags["optuna.trial_number"]) for r in runs) == [0, 1]
        artifacts = stack.volumes_root / "mlartifacts"  # the server's --artifacts-destination
        for run in runs:
            assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
            names = {a.path for a in client.list_artifacts(run.info.run_id)}
            assert {"config.yaml", "user_attrs.json"} <= names
            assert list(artifacts.rglob(f"{run.info.run_id}/artifacts/config.yaml"))
        for where in (home, tmp_path / "app"):  # nothing of MLflow's in the workers' folders
            leftovers = [p.name for p in where.iterdir() if p.name in ("mlartifacts", "mlruns", "mlflow.db")]
            assert not leftovers, f"{where}: {leftovers}"

        # optuna-dashboard's JSON API
        status, body = _get(f"{dashboard_url}/api/studies")
        assert status == 200
        summaries = json.loads(body)["study_summaries"]
        assert [s["study_name"] for s in summaries] == ["joint_sampling"]
        study_id = summaries[0]["study_id"]
        status, body = _get(f"{dashboard_url}/api/studies/{study_id}?after=0")
        assert status == 200
        trials = json.loads(body)["trials"]
        assert len(trials) == 2
        # the workers' per-trial files (Optuna's artifact store) reach the dashboard's container
        for trial in trials:
            if trial["state"] != "Complete":
                continue
            assert trial["artifacts"], f"trial {trial['number']}: no artifacts on the dashboard"
            first = trial["artifacts"][0]["artifact_id"]
            status, _ = _get(f"{dashboard_url}/artifacts/{study_id}/{trial['trial_id']}/{first}")
            assert status == 200

        logs = stack.dump_logs(chars=None)
        assert password not in logs, "a process printed the database password"
        failed = False
    finally:
        stack.stop()
        if failed:
            print(stack.dump_logs())
