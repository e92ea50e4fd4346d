"""Many workers through Optuna's gRPC storage proxy: ``serve-storage`` and ``grpc://`` URLs.

``python -m admet.hpo serve-storage --storage URL`` runs Optuna's
:func:`~optuna.storages.run_grpc_proxy_server` in front of the RDB storage (the
:class:`~admet.hpo.storage.ResilientRDBStorage` of ``URL``, in Optuna's cache as its docs
advise); workers and the inspecting commands then take ``--storage grpc://HOST:PORT``.
The proxy holds the database connections (its pool), not every worker.

What works through the proxy, and how:

* studies, trials, parameters, attributes, ``status``/``best``/``report``/``refit``/
  ``sync-mlflow``/``dashboard``: Optuna's :class:`~optuna.storages.GrpcStorageProxy`;
* a lost *database* connection: retried inside the proxy by ``ResilientRDBStorage``;
  a restarted *proxy*: calls not yet sent wait for it (gRPC ``wait_for_ready``); a call
  in flight when it goes down fails, and the worker exits (its trial goes stale and is
  retried by another worker);
* heartbeat and the retry of killed trials: Optuna's ``GrpcStorageProxy`` is not a
  ``BaseHeartbeat`` (the proxy's API has no heartbeat call), so Optuna runs no heartbeat
  thread and ``fail_stale_trials`` does nothing through it. :class:`HeartbeatGrpcStorage`
  adds one on top of the proxy's API: each beat writes a new token into the trial's system
  attribute ``admet:heartbeat``; a RUNNING trial whose token this process has seen
  unchanged for the grace period (on its own monotonic clock, so clocks of other machines
  do not matter) is stale, failed and re-queued by ``RetryHeartbeatStaleTrialCallback``;
* the worker index: there is no lock through the proxy; the index is registered
  best-effort (read the highest, claim the next, read back), with a warning: pass
  ``--worker-index`` for guaranteed distinct sampler seeds.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import GrpcStorageProxy
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

from admet.errors import StorageError
from admet.redact import mask_url

__all__ = [
    "HEARTBEAT_ATTR",
    "HeartbeatGrpcStorage",
    "is_grpc_url",
    "open_grpc_storage",
    "parse_grpc_url",
    "register_worker_best_effort",
    "serve_storage",
]

logger = logging.getLogger(__name__)

HEARTBEAT_ATTR = "admet:heartbeat"  # trial system attribute: the last beat's token
CONNECT_SECONDS = 10.0


def is_grpc_url(url: str | None) -> bool:
    """``grpc://`` (plain) or ``grpcs://`` (TLS) proxy URL."""
    return bool(url) and str(url).lower().startswith(("grpc://", "grpcs://"))


def parse_grpc_url(url: str) -> tuple[str, int]:
    """``grpc://host:port`` or ``grpcs://host:port`` -> (host, port); the port defaults to
    Optuna's 13000.

    Raises:
        StorageError: not of that form.
    """
    rest = url.split("://", 1)[1].rstrip("/") if "://" in url else url
    host, sep, port = rest.rpartition(":")
    if not sep:
        host, port = rest, "13000"
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host or "@" in host:
        raise StorageError(
            f"invalid storage URL {mask_url(url)!r}; expected grpc://HOST:PORT or grpcs://HOST:PORT"
        )
    return host, int(port)


def client_tls() -> dict[str, bytes]:
    """The PEM files a ``grpcs://`` client presents, from the environment: the CA that signed
    the proxy's certificate (``ADMET_GRPC_CA``, required) and, for mutual TLS, this client's
    certificate and key (``ADMET_GRPC_CLIENT_CERT``, ``ADMET_GRPC_CLIENT_KEY``).

    Raises:
        StorageError: ``ADMET_GRPC_CA`` unset, or a file unreadable.
    """
    import os

    names = {
        "root_certificates": "ADMET_GRPC_CA",
        "certificate_chain": "ADMET_GRPC_CLIENT_CERT",
        "private_key": "ADMET_GRPC_CLIENT_KEY",
    }
    if not os.environ.get(names["root_certificates"]):
        raise StorageError("grpcs:// needs the proxy's CA certificate: set ADMET_GRPC_CA=<PEM file>")
    if bool(os.environ.get(names["certificate_chain"])) != bool(os.environ.get(names["private_key"])):
        raise StorageError("mutual TLS needs both ADMET_GRPC_CLIENT_CERT and ADMET_GRPC_CLIENT_KEY")
    return {key: _pem(os.environ[env], env) for key, env in names.items() if os.environ.get(env)}


def _pem(path: str, what: str) -> bytes:
    try:
        return open(path, "rb").read()
    except OSError as exc:
        raise StorageError(f"{what}={path}: cannot read it ({exc.strerror})") from None


def _wait_for_ready_channel(channel: Any) -> Any:
    """``channel`` whose calls wait for the proxy instead of failing at once while it is
    (re)starting: a call that was never sent is safe to delay, writes included."""
    import grpc

    class WaitForReady(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
            return continuation(client_call_details._replace(wait_for_ready=True), request)

    return grpc.intercept_channel(channel, WaitForReady())


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
        from optuna.storages._grpc.auto_generated import api_pb2_grpc
        from optuna.storages._grpc.client import GrpcClientCache

        self._stub = api_pb2_grpc.StorageServiceStub(_wait_for_ready_channel(self._channel))
        self._cache = GrpcClientCache(self._stub)

    def wait_server_ready(self, timeout: float | None = None) -> None:
        """Wait until the proxy answers on this client's own channel (plain or TLS; a TLS
        handshake that fails never becomes ready)."""
        import grpc

        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError as exc:
            raise ConnectionError("GRPC connection timeout") from exc

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
            alive = {t._trial_id for t in running}
            for trial_id in list(self._seen):
                if trial_id not in alive:
                    del self._seen[trial_id]
            for t in running:
                token = t.system_attrs.get(HEARTBEAT_ATTR)
                seen = self._seen.get(t._trial_id)
                if seen is None or seen[0] != token:
                    self._seen[t._trial_id] = (token, now)
                elif now - seen[1] > grace:
                    stale.append(t._trial_id)
        return stale

    def _trials_without_heartbeat(self, study_id: int) -> list[int]:
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return [t._trial_id for t in running if HEARTBEAT_ATTR not in t.system_attrs]

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
    from admet.hpo.storage import heartbeat_kwargs  # storage.py imports this module lazily

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


def register_worker_best_effort(storage: optuna.storages.BaseStorage, study_id: int, worker: str) -> int:
    """A worker index through a storage without locks (the gRPC proxy): the next free
    ``worker:<index>`` study attribute, claimed and read back. Two workers starting in the
    same instant may get the same index (same sampler seed); a warning says so."""
    logger.warning(
        "through the storage proxy the worker index is registered without a lock; "
        "pass --worker-index N for guaranteed distinct sampler seeds"
    )
    for _ in range(20):
        attrs = storage.get_study_user_attrs(study_id)
        taken = [int(k.split(":", 1)[1]) for k in attrs if k.startswith("worker:") and k[7:].isdigit()]
        index = max(taken, default=-1) + 1
        key = f"worker:{index}"
        claim = f"{worker}#{uuid.uuid4().hex[:8]}"
        storage.set_study_user_attr(study_id, key, claim)
        time.sleep(0.2)  # let a racing claim of the same key land, then read back
        if storage.get_study_user_attrs(study_id).get(key) == claim:
            return index
    raise StorageError("could not register a worker index through the storage proxy; pass --worker-index")


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _secure_server(storage: Any, host: str, port: int, credentials: Any) -> Any:
    """Optuna's proxy service on a TLS port. Optuna's ``make_server`` only opens an insecure
    port, so the server is assembled here from the same service and registration call."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    from optuna.storages._grpc import servicer
    from optuna.storages._grpc.auto_generated import api_pb2_grpc

    server = grpc.server(ThreadPoolExecutor(max_workers=10))
    api_pb2_grpc.add_StorageServiceServicer_to_server(servicer.OptunaStorageProxyService(storage), server)
    server.add_secure_port(f"{host}:{port}", credentials)
    return server


def serve_storage(
    url: str | None,
    host: str = "127.0.0.1",
    port: int = 13000,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    client_ca: str | None = None,
    insecure: bool = False,
) -> None:
    """Run Optuna's gRPC storage proxy in front of the RDB storage ``url`` until Ctrl-C
    (or SIGTERM), which ends it with KeyboardInterrupt.

    TLS: ``tls_cert``/``tls_key`` (PEM) serve ``grpcs://``; ``client_ca`` also requires every
    client to present a certificate that CA signed (mutual TLS). A non-loopback ``host``
    without TLS is refused unless ``insecure``: anyone who reaches the port could read,
    rewrite or delete every study.

    Raises:
        StorageError: ``url`` is itself a proxy, the database cannot be used, or the TLS
            settings are incomplete or missing for a non-loopback address.
    """
    from optuna.storages import get_storage, run_grpc_proxy_server

    from admet.hpo.storage import _where, open_storage, resolve_storage_url

    url = resolve_storage_url(url)
    if is_grpc_url(url):
        raise StorageError("serve-storage needs a database URL (sqlite:// or postgresql://), not grpc://")
    try:
        import grpc
    except ModuleNotFoundError:
        raise StorageError("serve-storage needs grpcio: pip install grpcio protobuf") from None
    if bool(tls_cert) != bool(tls_key):
        raise StorageError("serve-storage: TLS needs both --tls-cert and --tls-key")
    if client_ca and not tls_cert:
        raise StorageError("serve-storage: --tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
    if not tls_cert and not insecure and not _loopback(host):
        raise StorageError(
            f"serve-storage: refusing to listen on {host} without TLS (anyone who reaches the port "
            "could read, rewrite or delete every study); pass --tls-cert/--tls-key, or --insecure "
            "on a private network"
        )
    credentials = None
    if tls_cert and tls_key:
        import grpc

        credentials = grpc.ssl_server_credentials(
            [(_pem(tls_key, "--tls-key"), _pem(tls_cert, "--tls-cert"))],
            root_certificates=_pem(client_ca, "--tls-client-ca") if client_ca else None,
            require_client_auth=bool(client_ca),
        )
    backend = open_storage(url)
    storage = get_storage(backend)  # Optuna's cache in front of RDBStorage, as its docs advise

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("storage proxy stopped")

    signal.signal(signal.SIGTERM, terminate)
    scheme = "grpcs" if credentials else "grpc"
    tls_note = " (mutual TLS)" if client_ca else ""
    serving = f"for {mask_url(url)} ({_where(url)})"
    try:
        if credentials is None:
            print(
                f"storage proxy on {scheme}://{host}:{port} for {mask_url(url)} ({_where(url)})", flush=True
            )
            run_grpc_proxy_server(storage, host=host, port=port)
        else:
            server = _secure_server(storage, host, port, credentials)
            server.start()
            print(
                f"storage proxy on {scheme}://{host}:{port}{tls_note} {serving}",
                flush=True,
            )
            try:
                server.wait_for_termination()
            finally:
                server.stop(grace=1)
    except RuntimeError as exc:  # grpc: "Failed to bind to address"
        raise StorageError(f"cannot listen on {host}:{port}: {exc}") from None
    except KeyboardInterrupt as exc:
        raise KeyboardInterrupt(str(exc) or "storage proxy stopped") from None
    finally:
        backend.engine.dispose()
