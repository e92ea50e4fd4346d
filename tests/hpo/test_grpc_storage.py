"""Many workers through Optuna's gRPC storage proxy (``serve-storage``, ``grpc://`` URLs),
and the command lines of ``run --gpus`` (no GPU needed)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pytest
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState
from sqlalchemy.engine import make_url
from test_hpo_service import hpo, pg_storage, run_args, spawn  # noqa: F401  (pg_storage: fixture)

from admet.errors import AdmetError, StorageError
from admet.hpo import gpus
from admet.hpo.storage import (
    HEARTBEAT_ATTR,
    HeartbeatGrpcStorage,
    open_grpc_storage,
    open_storage,
    parse_grpc_url,
    serve_storage,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- fast: URLs, refusals, heartbeat through an in-process proxy -------------------------


def test_grpc_urls():
    assert parse_grpc_url("grpc://127.0.0.1:13001") == ("127.0.0.1", 13001)
    assert parse_grpc_url("grpc://proxy.local") == ("proxy.local", 13000)
    for bad in ("grpc://host:port", "grpc://:13000", "grpc://u:secret@host:1"):
        with pytest.raises(StorageError) as err:
            parse_grpc_url(bad)
        assert "secret" not in str(err.value)


def test_unreachable_proxy_is_one_line_error(tmp_path):
    with pytest.raises(StorageError, match="no storage proxy answers"):
        open_grpc_storage(f"grpc://127.0.0.1:{free_port()}", connect_seconds=0.5)
    with pytest.raises(StorageError, match="needs a database URL"):
        serve_storage("grpc://127.0.0.1:13000")


@pytest.fixture
def proxy(tmp_path):
    """Optuna's proxy server, in this process, over a SQLite file: (grpc URL, db URL)."""
    from optuna.storages import get_storage
    from optuna.storages._grpc.server import make_server

    db = f"sqlite:///{tmp_path / 'studies.db'}"
    port = free_port()
    server = make_server(get_storage(open_storage(db)), "127.0.0.1", port, ThreadPoolExecutor(4))
    server.start()
    yield f"grpc://127.0.0.1:{port}", db
    server.stop(grace=None)


class _AnswerLost:
    """A gRPC server interceptor that applies the first call of each named method and then
    answers ``code`` (UNAVAILABLE), as when the proxy dies after the commit, before its
    answer (CANCELLED: a proxy stopping under the call)."""

    def __init__(self, *methods: str, code: str = "UNAVAILABLE") -> None:
        import grpc

        self.left, self.lost, status = set(methods), [], getattr(grpc.StatusCode, code)

        class Interceptor(grpc.ServerInterceptor):
            def intercept_service(inner, continuation, details):
                handler = continuation(details)
                name = details.method.rsplit("/", 1)[-1]
                if handler is None or name not in self.left:
                    return handler

                def behaviour(request, context):
                    answer = handler.unary_unary(request, context)
                    if name in self.left:
                        self.left.discard(name)
                        self.lost.append(name)
                        context.abort(status, "injected: answer lost after the commit")
                    return answer

                return grpc.unary_unary_rpc_method_handler(
                    behaviour,
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )

        self.interceptor = Interceptor()


@pytest.mark.parametrize("code", ["UNAVAILABLE", "CANCELLED"])
def test_calls_whose_answer_the_proxy_lost_are_sent_again_and_applied_once(tmp_path, caplog, code):
    """A gRPC UNAVAILABLE (or CANCELLED: a proxy stopping under the call, seen in the proxy
    soak) is retried like a database blip: the study, the trial, its parameter and its
    result each land once although every first answer was lost."""
    import grpc
    from optuna.storages import get_storage

    from admet.hpo.storage._optuna_private import add_proxy_service

    db = f"sqlite:///{tmp_path / 'studies.db'}"
    lost = _AnswerLost(
        "CreateNewStudy", "CreateNewTrial", "SetTrialParameter", "SetTrialStateValues", code=code
    )
    server = grpc.server(ThreadPoolExecutor(4), interceptors=[lost.interceptor])
    add_proxy_service(get_storage(open_storage(db)), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        client = open_grpc_storage(f"grpc://127.0.0.1:{port}")
        study = optuna.create_study(study_name="blip", storage=client)
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        study.tell(trial, 0.25)
        client.close()
    finally:
        server.stop(grace=None)
    assert sorted(lost.lost) == sorted(
        ["CreateNewStudy", "CreateNewTrial", "SetTrialParameter", "SetTrialStateValues"]
    )
    direct = optuna.load_study(study_name="blip", storage=db)
    (only,) = direct.trials
    assert (
        only.state == TrialState.COMPLETE and only.value == 0.25 and only.params == {"x": trial.params["x"]}
    )
    assert len(optuna.get_all_study_names(db)) == 1
    assert "sending it again" in caplog.text


def test_a_retried_trial_copy_gets_its_own_token(tmp_path):
    """A copy of a trial (the retry callback's template) never reuses the token its
    original was created with: it becomes a new trial."""
    from optuna.storages import get_storage
    from optuna.storages._grpc.server import make_server

    db = f"sqlite:///{tmp_path / 'studies.db'}"
    port = free_port()
    server = make_server(get_storage(open_storage(db)), "127.0.0.1", port, ThreadPoolExecutor(2))
    server.start()
    try:
        client = open_grpc_storage(f"grpc://127.0.0.1:{port}")
        study = optuna.create_study(study_name="copy", storage=client)
        first = study.ask()
        study.tell(first, state=TrialState.FAIL)
        failed = client.get_trial(first._trial_id)
        copy_id = client.create_new_trial(study._study_id, template_trial=failed)
        assert copy_id != first._trial_id
        client.close()
    finally:
        server.stop(grace=None)
    assert len(optuna.load_study(study_name="copy", storage=db).trials) == 2


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed:UserWarning")
def test_heartbeat_and_stale_retry_through_the_proxy(proxy):
    url, db = proxy
    # grace period 10x the beat loop's 0.5 s poll: a loaded machine cannot make the beating
    # trial look silent
    storage = open_storage(url, heartbeat_interval=1, grace_period=5, max_retry=1)
    assert isinstance(storage, HeartbeatGrpcStorage)
    study = optuna.create_study(study_name="hb", storage=storage)
    beating = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    silent = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # a killed worker's
    assert set(storage._trials_without_heartbeat(study._study_id)) == {beating._trial_id, silent._trial_id}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        storage.record_heartbeat(beating._trial_id)
        fail_stale_trials(study)
        if storage.get_trial(silent._trial_id).state == TrialState.FAIL:
            break
        time.sleep(0.5)
    assert storage.get_trial(silent._trial_id).state == TrialState.FAIL
    assert storage.get_trial(beating._trial_id).state == TrialState.RUNNING
    assert HEARTBEAT_ATTR in storage.get_trial(beating._trial_id).system_attrs
    # RetryHeartbeatStaleTrialCallback queued the stale trial again, with its parameters
    under = optuna.load_study(study_name="hb", storage=db)  # the database itself
    waiting = [t for t in under.trials if t.state == TrialState.WAITING]
    assert len(waiting) == 1 and waiting[0].params == storage.get_trial(silent._trial_id).params
    # a beat on a finished trial is ignored (Optuna's heartbeat thread must not die)
    storage.record_heartbeat(silent._trial_id)


# -- run --gpus / --device without a GPU --------------------------------------------------


def test_gpu_ids_and_child_commands():
    assert gpus.parse_gpus("all", 4) == [0, 1, 2, 3]
    assert gpus.parse_gpus("2", 4) == [0, 1]
    assert gpus.parse_gpus("1,3", 4) == [1, 3]
    assert gpus.parse_gpus("3,", 4) == [3]
    for bad in ("5", "0,9", "x", "1,1", "0"):
        with pytest.raises(AdmetError):
            gpus.parse_gpus(bad, 4)
    with pytest.raises(AdmetError, match="needs CUDA"):
        gpus.parse_gpus("all", 0)
    with pytest.raises(AdmetError, match="needs CUDA"):
        gpus.check_device("cuda:0", cuda_count=0)
    assert gpus.check_device("cuda:1", cuda_count=2) == "cuda:1"
    assert gpus.check_device("cpu", cuda_count=0) == "cpu"

    run = ["run", "--study", "joint_sampling", "--storage", "grpc://h:13000", "n_trials=8"]
    children = gpus.worker_commands(run, [1, 3], workers_per_gpu=2, env={"CUDA_VISIBLE_DEVICES": "4,5,6,7"})
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in children] == ["5", "5", "7", "7"]
    for cmd, _ in children:
        assert cmd[:3] == [sys.executable, "-m", "admet.hpo"]
        assert cmd[3:-2] == run and cmd[-2:] == ["--device", "cuda"]
    indexed = gpus.worker_commands(run, [0, 1], 1, worker_index=10, env={})
    assert [cmd[-1] for cmd, _ in indexed] == ["10", "11"]
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in indexed] == ["0", "1"]
    # the parent's options a child needs travel with it; the GPU options do not
    from admet.hpo.__main__ import build_parser

    args = build_parser().parse_args(["run", "--gpus", "all", "--timeout", "240", "--quiet", "n_trials=8"])
    assert gpus.child_run_args(args) == [
        "run",
        "--study",
        "joint_sampling",
        "--quiet",
        "--timeout",
        "240.0",
        "n_trials=8",
    ]


def test_run_gpus_refused_without_cuda(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    from admet.hpo.__main__ import main

    assert main(["run", "--gpus", "all", "--workers-per-gpu", "2", "n_trials=1"]) == 2
    assert main(["run", "--device", "cuda:0", "n_trials=1"]) == 2
    assert main(["run", "--gpus", "all", "--device", "cuda:0"]) == 2


# -- slow: serve-storage and two workers, on SQLite and PostgreSQL ------------------------


def _stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _logs(*procs: subprocess.Popen) -> str:
    return "\n".join(f"--- {' '.join(p.args[3:6])}:\n{p.log.read_text()[-3000:]}" for p in procs)


def _two_workers_through_proxy(csv: Path, home: Path, db: str) -> None:
    port = free_port()
    url = f"grpc://127.0.0.1:{port}"
    server = spawn(home, "serve-storage", "--storage", db, "--port", str(port))
    workers: list[subprocess.Popen] = []
    try:
        deadline = time.monotonic() + 60
        while "storage proxy on" not in server.log.read_text():
            assert server.poll() is None and time.monotonic() < deadline, _logs(server)
            time.sleep(0.2)
        password = make_url(db).password
        assert not password or password not in server.log.read_text()  # the line shows mask_url(db)
        args = run_args(csv, url, "n_trials=3", "mlflow.enabled=false")
        workers = [spawn(home, *args) for _ in range(2)]
        for w in workers:
            try:
                w.wait(timeout=600)
            except subprocess.TimeoutExpired:
                pytest.fail("worker timed out:\n" + _logs(server, *workers))
        assert all(w.returncode == 0 for w in workers), _logs(server, *workers)

        status = hpo(home, "status", "--storage", url, timeout=120)
        assert status.returncode == 0 and "3/3 finished" in status.stdout, status.stdout + status.stderr
        best = hpo(home, "best", "--storage", url, "--export", str(home / "best.yaml"), timeout=120)
        assert best.returncode == 0 and (home / "best.yaml").is_file(), best.stderr
    finally:
        for w in workers:
            _stop(w)
        rc = _stop(server)
    assert rc == 130, _logs(server)  # Ctrl-C: the CLI's interrupted exit code

    under = optuna.load_study(study_name="joint_sampling", storage=db)  # the database itself
    finished = [t for t in under.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3
    assert {t.user_attrs["worker"] for t in under.trials} and all(
        HEARTBEAT_ATTR in t.system_attrs for t in finished
    )


@pytest.mark.slow
def test_two_workers_through_the_proxy_on_sqlite(synthetic_csv, tmp_path):
    _two_workers_through_proxy(synthetic_csv, tmp_path, f"sqlite:///{tmp_path / 'studies.db'}")


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_through_the_proxy_on_postgres(synthetic_csv, tmp_path, pg_storage):  # noqa: F811
    _two_workers_through_proxy(synthetic_csv, tmp_path, pg_storage)


def test_a_herd_of_workers_started_together_all_get_an_index_through_the_proxy(proxy):
    """32 workers registering in the same instant through one proxy (a Kubernetes Job, a
    Slurm array): each gets an index. Claiming ``max + 1`` together placed one worker a
    round, so of 128 at once 53 gave up after their 20 rounds."""
    import threading

    from admet.hpo.storage import register_worker_best_effort

    url, _ = proxy
    study = optuna.create_study(study_name="herd", storage=open_storage(url))
    n, start = 32, threading.Barrier(32)

    def register(i: int) -> int:
        storage = open_storage(url)
        start.wait(timeout=60)
        return register_worker_best_effort(storage, study._study_id, f"worker-{i}", give_up_after=120)

    with ThreadPoolExecutor(n) as pool:
        indices = list(pool.map(register, range(n)))  # a worker that gave up raises here
    claims = {k: v for k, v in study.user_attrs.items() if k.startswith("worker:")}
    assert len(indices) == n
    # best effort, without a lock: a claim overwritten after its read-back would share an
    # index; the wide draws make that rare, never the rule
    assert len(set(indices)) >= n - 2, sorted(indices)
    assert {f"worker:{i}" for i in indices} <= set(claims)
