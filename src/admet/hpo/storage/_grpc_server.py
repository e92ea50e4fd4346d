"""The gRPC storage proxy: ``python -m admet.hpo serve-storage``.

Runs Optuna's proxy service (the one :func:`~optuna.storages.run_grpc_proxy_server`
serves) in front of the RDB storage of a database URL (the ``ResilientRDBStorage`` of
:func:`._factory.open_storage`, in Optuna's cache as its docs advise), plain on a loopback
address, with TLS (``grpcs://``, optionally mutual) on any other unless told ``--insecure``.
Its clients are in :mod:`._grpc_client`.

The server is assembled here rather than by ``run_grpc_proxy_server`` for two reasons:
Optuna's ``make_server`` opens only an insecure port, and ``run_grpc_proxy_server`` never
stops its server when Ctrl-C or SIGTERM ends the wait, so the process kept serving from its
thread pool until killed (a SIGTERM'd proxy took 30 s, then SIGKILL, in the 16-worker soak).
"""

from __future__ import annotations

import ipaddress
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from admet.errors import StorageError
from admet.hpo.storage._factory import open_storage
from admet.hpo.storage._grpc_client import read_pem
from admet.hpo.storage._optuna_private import add_proxy_service, cached_storage
from admet.hpo.storage._urls import is_grpc_url, resolve_storage_url, where
from admet.redact import mask_url

__all__ = ["serve_storage"]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


STOP_GRACE_SECONDS = 2.0  # in-flight calls may finish; clients retry the rest (UNAVAILABLE)


def _server(storage: Any, host: str, port: int, credentials: Any | None) -> Any:
    """Optuna's proxy service on a plain or TLS port (``credentials`` None: plain)."""
    import grpc

    server = grpc.server(ThreadPoolExecutor(max_workers=10))
    add_proxy_service(storage, server)
    address = f"{host}:{port}"
    if credentials is None:
        server.add_insecure_port(address)
    else:
        server.add_secure_port(address, credentials)
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
            [(read_pem(tls_key, "--tls-key"), read_pem(tls_cert, "--tls-cert"))],
            root_certificates=read_pem(client_ca, "--tls-client-ca") if client_ca else None,
            require_client_auth=bool(client_ca),
        )
    backend = open_storage(url)
    # Optuna's cache in front of RDBStorage, as its docs advise (get_storage), that also knows
    # trials created through a proxy before a restart
    storage = cached_storage(backend)

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("storage proxy stopped")

    signal.signal(signal.SIGTERM, terminate)
    scheme = "grpcs" if credentials else "grpc"
    tls_note = " (mutual TLS)" if client_ca else ""
    serving = f"for {mask_url(url)} ({where(url)})"
    server = None
    try:
        server = _server(storage, host, port, credentials)
        server.start()
        print(f"storage proxy on {scheme}://{host}:{port}{tls_note} {serving}", flush=True)
        server.wait_for_termination()
    except RuntimeError as exc:  # grpc: "Failed to bind to address"
        raise StorageError(f"cannot listen on {host}:{port}: {exc}") from None
    except KeyboardInterrupt as exc:
        raise KeyboardInterrupt(str(exc) or "storage proxy stopped") from None
    finally:
        if server is not None:
            server.stop(grace=STOP_GRACE_SECONDS).wait(STOP_GRACE_SECONDS + 5)
        backend.engine.dispose()
