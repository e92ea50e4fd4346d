"""The client of the gRPC storage proxy (``grpc://``/``grpcs://`` URLs), with a heartbeat.

``python -m admet.hpo serve-storage --storage URL`` (:mod:`._grpc_server`) runs Optuna's
proxy in front of the RDB storage; workers and the inspecting commands then take
``--storage grpc://HOST:PORT`` (``grpcs://`` with TLS). The proxy holds the database
connections (its pool), not every worker.

What works through the proxy, and how:

* studies, trials, parameters, attributes, ``status``/``best``/``report``/``refit``/
  ``sync-mlflow``/``dashboard``: Optuna's :class:`~optuna.storages.GrpcStorageProxy`;
* a lost *database* connection: retried inside the proxy by ``ResilientRDBStorage``;
  a restarted *proxy*: calls not yet sent wait for it (gRPC ``wait_for_ready``); one that
  fails ``UNAVAILABLE`` or ``CANCELLED`` (in flight as the proxy went, or its answer lost)
  is sent again with backoff within ``ADMET_STORAGE_RETRY_SECONDS``, like a database blip.
  A repeat is safe: reads and Optuna's upserts repeat as they are; a new trial carries
  this client's token (``CLIENT_TOKEN``), so the proxy returns the trial a first request
  created; a repeated ``tell``, study creation or deletion that finds its own first attempt
  applied reports success. A repeated pop of a WAITING trial cannot tell whose pop landed:
  the trial it may leave RUNNING without a heartbeat goes stale and is re-queued once;
* heartbeat and the retry of killed trials: Optuna's ``GrpcStorageProxy`` is not a
  ``BaseHeartbeat`` (the proxy's API has no heartbeat call), so Optuna runs no heartbeat
  thread and ``fail_stale_trials`` does nothing through it. :class:`HeartbeatGrpcStorage`
  adds one on top of the proxy's API: each beat writes a new token into the trial's system
  attribute ``admet:heartbeat``; a RUNNING trial whose token this process has seen
  unchanged for the grace period (on its own monotonic clock, so clocks of other machines
  do not matter) is stale, failed and re-queued by ``RetryHeartbeatStaleTrialCallback``;
* the worker index: no lock through the proxy, so it is claimed and read back, best
  effort, with a warning: pass ``--worker-index`` for guaranteed distinct sampler seeds.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.storages import GrpcStorageProxy
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from admet.errors import StorageError
from admet.hpo.storage._heartbeat import heartbeat_kwargs
from admet.hpo.storage._optuna_private import BaseHeartbeat, grpc_stub_and_cache, trial_id_of
from admet.hpo.storage._retry import CLIENT_TOKEN, retry_seconds, tagged_template
from admet.hpo.storage._urls import parse_grpc_url

__all__ = [
    "HEARTBEAT_ATTR",
    "HeartbeatGrpcStorage",
    "open_grpc_storage",
    "read_pem",
    "register_worker_best_effort",
]

logger = logging.getLogger(__name__)

HEARTBEAT_ATTR = "admet:heartbeat"  # trial system attribute: the last beat's token
CONNECT_SECONDS = 10.0


def client_tls() -> dict[str, bytes]:
    """The PEM files a ``grpcs://`` client presents, from the environment: the CA that signed
    the proxy's certificate (``ADMET_GRPC_CA``, required) and, for mutual TLS, this client's
    certificate and key (``ADMET_GRPC_CLIENT_CERT``, ``ADMET_GRPC_CLIENT_KEY``).

    Raises:
        StorageError: ``ADMET_GRPC_CA`` unset, or a file unreadable.
    """
    names = {
        "root_certificates": "ADMET_GRPC_CA",
        "certificate_chain": "ADMET_GRPC_CLIENT_CERT",
        "private_key": "ADMET_GRPC_CLIENT_KEY",
    }
    if not os.environ.get(names["root_certificates"]):
        raise StorageError("grpcs:// needs the proxy's CA certificate: set ADMET_GRPC_CA=<PEM file>")
    if bool(os.environ.get(names["certificate_chain"])) != bool(os.environ.get(names["private_key"])):
        raise StorageError("mutual TLS needs both ADMET_GRPC_CLIENT_CERT and ADMET_GRPC_CLIENT_KEY")
    return {key: read_pem(os.environ[env], env) for key, env in names.items() if os.environ.get(env)}


def read_pem(path: str, what: str) -> bytes:
    """The bytes of a PEM file named by ``what`` (a flag or a variable), for messages."""
    try:
        return open(path, "rb").read()
    except OSError as exc:
        raise StorageError(f"{what}={path}: cannot read it ({exc.strerror})") from None


_calls = threading.local()  # .repeated: this thread's last call was sent more than once


def _retrying_channel(channel: Any, url: str) -> Any:
    """``channel`` whose calls wait for the proxy instead of failing at once while it is
    (re)starting (a call never sent is safe to delay, writes included), and are sent again
    after ``UNAVAILABLE`` or ``CANCELLED`` within the retry window (module docstring: why).
    gRPC's own retry policy is not used: it never repeats a call the server may have
    applied, which is the case this has to cover."""
    import grpc

    retried = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)

    class RetryUnavailable(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
            details = client_call_details._replace(wait_for_ready=True)
            _calls.repeated = False
            delay, deadline = 0.5, time.monotonic() + retry_seconds()
            while True:
                outcome = continuation(details, request)
                left = deadline - time.monotonic()
                # CANCELLED: this client cancels nothing, so the stopping proxy cancelled it
                if outcome.code() not in retried or left <= 0:
                    return outcome
                logger.warning(
                    "storage proxy %s unavailable during %s (%s); sending it again in %.1f s",
                    url,
                    details.method.rsplit("/", 1)[-1],
                    outcome.details(),
                    delay,
                )
                time.sleep(min(delay, left))
                delay = min(delay * 2, 10.0)
                # bounded: a proxy that never comes back fails the call after the window
                details = details._replace(timeout=max(deadline - time.monotonic(), 0.1))
                _calls.repeated = True

    return grpc.intercept_channel(channel, RetryUnavailable())


def _repeated() -> bool:
    return bool(getattr(_calls, "repeated", False))


class HeartbeatGrpcStorage(GrpcStorageProxy, BaseHeartbeat):
    """Optuna's gRPC proxy client, plus a heartbeat kept in a trial system attribute
    (module docstring), and ``url`` for messages."""

    def __init__(
        self,
        *,
        host: str = "localhost",
        port: int = 13000,
        heartbeat_interval: int | None = None,
        grace_period: int | None = None,
        heartbeat_stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
        tls: dict[str, bytes] | None = None,
    ) -> None:
        self._tls = tls  # PEM bytes (picklable); None: a plain channel
        self.url = f"{'grpcs' if tls else 'grpc'}://{host}:{port}"
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.heartbeat_stale_trial_callback = heartbeat_stale_trial_callback
        self._beat_prefix = uuid.uuid4().hex[:12]
        self._beats = 0
        self._seen: dict[int, tuple[Any, float]] = {}  # trial id -> (token, first seen)
        self._heartbeat_failing = False
        self._lock = threading.Lock()
        super().__init__(host=host, port=port)

    def _setup(self) -> None:
        # Optuna's client has no TLS option (it always opens an insecure channel): with TLS
        # the channel is built here, with the same options, and the stub put on top of it
        if self._tls:
            import grpc

            self._channel = grpc.secure_channel(
                f"{self._host}:{self._port}",
                grpc.ssl_channel_credentials(**self._tls),
                options=[("grpc.max_receive_message_length", -1)],
            )
        else:
            super()._setup()
        self._stub, self._cache = grpc_stub_and_cache(_retrying_channel(self._channel, self.url))

    def wait_server_ready(self, timeout: float | None = None) -> None:
        """Wait until the proxy answers on this client's own channel (plain or TLS; a TLS
        handshake that fails never becomes ready)."""
        import grpc

        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError as exc:
            raise ConnectionError("GRPC connection timeout") from exc

    # -- writes whose repeat must find its first attempt --------------------------------

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        """Optuna's call, with this request's own token in the template (a retried request
        returns the trial the first one created; a copied trial's old token is dropped)."""
        template = tagged_template(template_trial, CLIENT_TOKEN, uuid.uuid4().hex)
        return super().create_new_trial(study_id, template)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        try:
            return super().set_trial_state_values(trial_id, state, values)
        except optuna.exceptions.UpdateFinishedTrialError:
            if not _repeated():
                raise
            # sent twice: finished already may mean the first attempt finished it
            trial = self.get_trial(trial_id)
            if trial.state == state and (values is None or list(trial.values or []) == list(values)):
                return True
            raise

    def create_new_study(self, directions: Sequence[StudyDirection], study_name: str | None = None) -> int:
        try:
            return super().create_new_study(directions, study_name)
        except optuna.exceptions.DuplicatedStudyError:
            if not _repeated() or study_name is None:
                raise
            return self.get_study_id_from_name(study_name)  # the first attempt created it

    def delete_study(self, study_id: int) -> None:
        try:
            super().delete_study(study_id)
        except KeyError:
            if not _repeated():
                raise  # sent twice, gone already: the first attempt deleted it

    # -- BaseHeartbeat ----------------------------------------------------------------

    def record_heartbeat(self, trial_id: int) -> None:
        """Write a new token; never raises (Optuna's heartbeat thread would end for good):
        a failed beat is logged once and the next one tries again."""
        with self._lock:
            self._beats += 1
            token = f"{self._beat_prefix}:{self._beats}"
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, token)
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # another worker failed the trial as stale; the worker notices at tell
        except Exception as exc:
            if not self._heartbeat_failing:
                logger.warning(
                    "heartbeat of trial %d not recorded through %s (%s); retrying at the next beat",
                    trial_id,
                    self.url,
                    str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
                )
            self._heartbeat_failing = True
        else:
            if self._heartbeat_failing:
                self._heartbeat_failing = False
                logger.warning("heartbeat of trial %d recorded again", trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        grace = self.grace_period if self.grace_period is not None else 2 * (self.heartbeat_interval or 60)
        now = time.monotonic()
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        stale = []
        with self._lock:
            alive = {trial_id_of(t) for t in running}
            for trial_id in list(self._seen):
                if trial_id not in alive:
                    del self._seen[trial_id]
            for t in running:
                token = t.system_attrs.get(HEARTBEAT_ATTR)
                seen = self._seen.get(trial_id_of(t))
                if seen is None or seen[0] != token:
                    self._seen[trial_id_of(t)] = (token, now)
                elif now - seen[1] > grace:
                    stale.append(trial_id_of(t))
        return stale

    def _trials_without_heartbeat(self, study_id: int) -> list[int]:
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return [trial_id_of(t) for t in running if HEARTBEAT_ATTR not in t.system_attrs]

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self.heartbeat_stale_trial_callback


def open_grpc_storage(
    url: str,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    max_retry: int = 2,
    connect_seconds: float = CONNECT_SECONDS,
) -> HeartbeatGrpcStorage:
    """A client of the storage proxy at ``grpc://host:port``, with heartbeat and stale-trial
    retry when ``heartbeat_interval`` is given.

    Raises:
        StorageError: bad URL, grpcio missing, or no proxy answers within ``connect_seconds``.
    """
    host, port = parse_grpc_url(url)
    try:
        import grpc  # noqa: F401
    except ModuleNotFoundError:
        raise StorageError("grpc:// storage needs grpcio: pip install grpcio protobuf") from None
    kwargs = heartbeat_kwargs(heartbeat_interval, grace_period, max_retry)
    tls = client_tls() if url.lower().startswith("grpcs://") else None
    storage = HeartbeatGrpcStorage(host=host, port=port, tls=tls, **kwargs)
    try:
        storage.wait_server_ready(timeout=connect_seconds)
    except ConnectionError:
        storage.close()
        hint = (
            " or it refused this client's TLS (CA in ADMET_GRPC_CA, client certificate for mutual TLS)"
            if tls
            else " (a proxy with TLS needs grpcs://)"
        )
        raise StorageError(
            f"no storage proxy answers at {storage.url}{hint}; start one with "
            f"'python -m admet.hpo serve-storage --storage URL --port {port}'"
        ) from None
    return storage


def register_worker_best_effort(
    storage: optuna.storages.BaseStorage, study_id: int, worker: str, give_up_after: float = 300.0
) -> int:
    """A worker index through a storage without locks (the gRPC proxy): a free
    ``worker:<index>`` study attribute, claimed and read back; two workers starting in the
    same instant may share one (same sampler seed; a warning says so). A herd (a Job, an
    array) sees the same free index first: each failed round draws from a range twice as
    wide, so about log2(N) rounds place N workers (gaps in the indices only seed samplers)."""
    logger.warning(
        "through the storage proxy the worker index is registered without a lock; "
        "pass --worker-index N for guaranteed distinct sampler seeds"
    )
    rng, deadline, spread = random.Random(uuid.uuid4().hex), time.monotonic() + give_up_after, 1
    while True:
        attrs = storage.get_study_user_attrs(study_id)
        taken = {int(k.split(":", 1)[1]) for k in attrs if k.startswith("worker:") and k[7:].isdigit()}
        index = max(taken, default=-1) + 1 + rng.randrange(spread)
        key, claim, t0 = f"worker:{index}", f"{worker}#{uuid.uuid4().hex[:8]}", time.monotonic()
        storage.set_study_user_attr(study_id, key, claim)
        # a racing claim of the same key is as slow as this one: let it land, then read back
        time.sleep(max(0.2, 3 * (time.monotonic() - t0)) * (1 + rng.random()))
        if storage.get_study_user_attrs(study_id).get(key) == claim:
            return index
        if time.monotonic() > deadline:
            raise StorageError(
                f"could not register a worker index through the storage proxy in {give_up_after:g} s; "
                "pass --worker-index"
            )
        spread = min(spread * 2, 4096)
