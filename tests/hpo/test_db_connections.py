"""The connection budget on a real PostgreSQL: a worker's pool holds at most its documented
connections, and a server with no free slot is waited for a bounded time, then refused in
one line that names max_connections and the proxy."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import optuna
import psycopg
import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from admet.errors import StorageError
from admet.hpo.db_connections import DEFAULT_WORKER_CONNECTIONS, server_full, worker_connections
from admet.hpo.storage import open_storage

pytestmark = pytest.mark.postgres


@pytest.fixture
def limited_role(postgres_url: str):
    """A role allowed two connections (what a worker's storage set-up needs at once), owning a
    fresh database: (its URL, a psycopg DSN)."""
    admin = make_url(postgres_url)
    name = f"admet_full_{uuid.uuid4().hex[:8]}"
    engine = sqlalchemy.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE ROLE {name} LOGIN CONNECTION LIMIT 2"))
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name} OWNER {name}"))
    url = admin.set(username=name, password=None, database=name)
    dsn = f"host={admin.host} port={admin.port or 5432} user={name} dbname={name}"
    yield url.render_as_string(hide_password=False), dsn
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(sqlalchemy.text(f"DROP ROLE IF EXISTS {name}"))
    engine.dispose()


def test_worker_pool_default_and_knob(monkeypatch):
    monkeypatch.delenv("ADMET_MAX_DB_CONNECTIONS", raising=False)
    assert worker_connections() == DEFAULT_WORKER_CONNECTIONS == 2
    monkeypatch.setenv("ADMET_MAX_DB_CONNECTIONS", "3")
    assert worker_connections() == 3
    for bad in ("1", "0", "many"):
        monkeypatch.setenv("ADMET_MAX_DB_CONNECTIONS", bad)
        with pytest.raises(Exception, match="ADMET_MAX_DB_CONNECTIONS must be a whole number >= 2"):
            worker_connections()


def test_a_full_server_is_refused_in_one_line_after_a_bounded_wait(limited_role, monkeypatch):
    url, dsn = limited_role
    monkeypatch.setenv("ADMET_DB_FULL_WAIT_SECONDS", "2")
    with psycopg.connect(dsn), psycopg.connect(dsn):  # take the role's two slots
        start = time.monotonic()
        with pytest.raises(StorageError) as info:
            open_storage(url, max_connections=2)
        waited = time.monotonic() - start
        message = str(info.value)
        assert 2 <= waited < 20, waited
        assert "max_connections" in message and "serve-storage" in message and "holds up to 2" in message
        assert server_full(info.value.__context__) or "connection slots are taken" in message
        # the command line: exit 2 (a storage error), one line, no traceback
        env = {**os.environ, "ADMET_DB_FULL_WAIT_SECONDS": "1"}
        proc = subprocess.run(
            [sys.executable, "-m", "admet.hpo", "status", "--storage", url],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert proc.returncode != 0 and "connection slots are taken" in proc.stderr, proc.stderr
        lines = proc.stderr.strip().splitlines()  # the wait's one warning, then the error
        assert "Traceback" not in proc.stderr and lines[-1].startswith("error: "), proc.stderr
        assert len(lines) <= 2 and "waiting for one" in lines[0], proc.stderr


def test_a_slot_freed_within_the_wait_is_taken(limited_role, monkeypatch):
    url, dsn = limited_role
    monkeypatch.setenv("ADMET_DB_FULL_WAIT_SECONDS", "60")
    holders = [psycopg.connect(dsn), psycopg.connect(dsn)]
    threading.Timer(1.5, lambda: [h.close() for h in holders]).start()
    start = time.monotonic()
    storage = open_storage(url, max_connections=2)
    assert 1.0 <= time.monotonic() - start < 30
    assert optuna.create_study(storage=storage, study_name="after-wait").study_name == "after-wait"
    storage.engine.dispose()


def test_a_worker_with_heartbeat_holds_at_most_its_pool(postgres_url):
    storage = open_storage(postgres_url, heartbeat_interval=1, grace_period=3, max_connections=2)
    assert storage.engine.pool.size() == 2
    name = f"pool-{uuid.uuid4().hex[:8]}"
    db = make_url(postgres_url).database
    seen: list[int] = []
    stop = threading.Event()
    monitor = sqlalchemy.create_engine(postgres_url, poolclass=sqlalchemy.pool.NullPool)

    def watch() -> None:
        with monitor.connect() as conn:
            while not stop.is_set():
                n = conn.execute(
                    sqlalchemy.text(
                        "select count(*) from pg_stat_activity where application_name = 'admet' "
                        "and datname = :db and pid <> pg_backend_pid()"
                    ),
                    {"db": db},
                ).scalar_one()
                seen.append(int(n))
                time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        study = optuna.create_study(storage=storage, study_name=name)

        def objective(trial: optuna.Trial) -> float:
            x = trial.suggest_float("x", 0, 1)
            for step in range(3):
                trial.report(x, step)
                time.sleep(0.4)  # the heartbeat thread beats meanwhile
            return x

        study.optimize(objective, n_trials=4)
    finally:
        stop.set()
        thread.join(timeout=10)
        monitor.dispose()
    assert len(study.trials) == 4 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert len(seen) > 20 and max(seen) >= 1
    assert max(seen) <= 2, max(seen)
    optuna.delete_study(study_name=name, storage=storage)
    storage.engine.dispose()
