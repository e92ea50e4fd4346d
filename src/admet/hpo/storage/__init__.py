"""Study storage: which database, Optuna's storages with heartbeat and retry, surviving a
database restart, and the gRPC storage proxy.

Laid out as Optuna's ``optuna.storages``: this module is the public API, re-exported from
private modules that hold one concept each:

* :mod:`._urls`: the storage URL (``--storage``, ``ADMET_HPO_STORAGE``, the embedded
  SQLite file) and how messages name it without its password;
* :mod:`._retry`: which errors mean a lost connection, backoff, idempotency tokens;
* :mod:`._heartbeat`: Optuna's heartbeat settings and a beat that never raises;
* :mod:`._rdb`: :class:`ResilientRDBStorage` (retried, idempotent writes, stale trials
  that never beat, atomic worker index);
* :mod:`._grpc_client` and :mod:`._grpc_server`: ``grpc://`` clients with a heartbeat, and
  ``serve-storage``;
* :mod:`._factory`: :func:`open_storage`, backends registered by URL scheme;
* :mod:`._optuna_private`: every call into Optuna's private API, pinned by
  ``tests/hpo/test_optuna_private.py``.

The private modules import each other in that order only (no cycles), never this module.
"""

from __future__ import annotations

from admet.hpo.storage._factory import open_storage, register_backend
from admet.hpo.storage._grpc_client import (
    HEARTBEAT_ATTR,
    HeartbeatGrpcStorage,
    open_grpc_storage,
    register_worker_best_effort,
)
from admet.hpo.storage._grpc_server import serve_storage
from admet.hpo.storage._heartbeat import heartbeat_kwargs
from admet.hpo.storage._optuna_private import (
    OPTIMIZE_LOGGER,
    backend_of,
    storage_of,
    study_id_of,
    trial_id_of,
)
from admet.hpo.storage._rdb import ResilientRDBStorage
from admet.hpo.storage._retry import (
    CREATE_TOKEN,
    OUTAGE_ERRORS,
    STATE_TOKEN,
    STORAGE_ERRORS,
    connection_lost,
    is_outage,
    retry_seconds,
    until_reachable,
)
from admet.hpo.storage._urls import (
    default_storage_url,
    is_grpc_url,
    parse_grpc_url,
    resolve_storage_url,
    where,
)

__all__ = [
    "CREATE_TOKEN",
    "HEARTBEAT_ATTR",
    "OPTIMIZE_LOGGER",
    "OUTAGE_ERRORS",
    "STATE_TOKEN",
    "STORAGE_ERRORS",
    "HeartbeatGrpcStorage",
    "ResilientRDBStorage",
    "backend_of",
    "connection_lost",
    "default_storage_url",
    "heartbeat_kwargs",
    "is_grpc_url",
    "is_outage",
    "open_grpc_storage",
    "open_storage",
    "parse_grpc_url",
    "register_backend",
    "register_worker_best_effort",
    "resolve_storage_url",
    "retry_seconds",
    "serve_storage",
    "storage_of",
    "study_id_of",
    "trial_id_of",
    "until_reachable",
    "where",
]
