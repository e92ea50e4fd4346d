"""Every use of Optuna's private API in ``admet``, in one place.

Optuna offers no public way to do some things the storage needs: query its schema (a
trial by its idempotency token, trials without a heartbeat row, an atomic worker index),
write a trial's state and a token in one transaction, build a TLS gRPC channel or server
around its proxy, or reach the storage behind a ``Study``. Those calls are made through
this module only (``grep optuna\\.[a-z_.]*\\._`` finds nothing else in ``src/``), and
``tests/hpo/test_optuna_private.py`` pins each behaviour relied on here against the
installed Optuna, so an upgrade that changes one fails a test instead of a study.
``pyproject.toml`` bounds Optuna below its next minor release for the same reason.

Besides the names below, the storages override these private hooks of Optuna's classes
(:data:`RDB_HOOKS`, :data:`GRPC_HOOKS`, also pinned by the tests): ``RDBStorage``'s
``_create_new_trial``, ``_get_prepared_new_trial`` and ``_get_stale_trial_ids``, and
``GrpcStorageProxy``'s ``_setup`` (with its ``_host``, ``_port``, ``_channel``, ``_stub``
and ``_cache`` attributes).

gRPC modules of Optuna import ``grpc``; they are imported inside the functions that need
them, so importing the storage does not need grpcio.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.storages._base import DEFAULT_STUDY_NAME_PREFIX
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial

__all__ = [
    "DEFAULT_STUDY_NAME_PREFIX",
    "GRPC_HOOKS",
    "OPTIMIZE_LOGGER",
    "RDB_HOOKS",
    "BaseHeartbeat",
    "add_proxy_service",
    "backend_of",
    "grpc_stub_and_cache",
    "models",
    "rdb_create_new_trial",
    "rdb_prepared_new_trial",
    "rdb_stale_trial_ids",
    "scoped_session",
    "set_trial_system_attr_without_commit",
    "set_trial_value_without_commit",
    "storage_of",
    "study_id_of",
    "trial_id_of",
]

# Optuna's private hooks the storages override (names pinned by the tests)
RDB_HOOKS = ("_create_new_trial", "_get_prepared_new_trial", "_get_stale_trial_ids")
GRPC_HOOKS = ("_setup",)
# the logger of Optuna's optimize loop (its per-trial messages)
OPTIMIZE_LOGGER = "optuna.study._optimize"


@contextlib.contextmanager
def scoped_session(storage: RDBStorage) -> Iterator[Any]:
    """A session of ``storage`` committed on leaving (rolled back on an error), with
    Optuna's translation of driver errors into ``StorageInternalError``."""
    with _create_scoped_session(storage.scoped_session) as session:
        yield session


def set_trial_value_without_commit(
    storage: RDBStorage, session: Any, trial: Any, objective: int, value: float
) -> None:
    """Optuna's write of one objective value of the trial row ``trial`` in ``session``."""
    storage._set_trial_value_without_commit(session, trial, objective, value)


def set_trial_system_attr_without_commit(
    storage: RDBStorage, session: Any, trial_id: int, key: str, value: Any
) -> None:
    """Optuna's upsert of a trial system attribute in ``session`` (value JSON-encoded)."""
    storage._set_trial_attr_without_commit(session, models.TrialSystemAttributeModel, trial_id, key, value)


def rdb_create_new_trial(storage: RDBStorage, study_id: int, template: FrozenTrial | None) -> FrozenTrial:
    """Optuna's own trial creation (``create_new_trial``, ``ask`` and ``add_trial`` come
    here), bypassing a subclass's override of it: one transaction that locks the study row,
    builds the row by ``_get_prepared_new_trial`` and commits."""
    return RDBStorage._create_new_trial(storage, study_id, template)


def rdb_prepared_new_trial(
    storage: RDBStorage, study_id: int, template: FrozenTrial | None, session: Any
) -> Any:
    """Optuna's own new trial row (a ``models.TrialModel`` added to ``session``), bypassing
    a subclass's override of it."""
    return RDBStorage._get_prepared_new_trial(storage, study_id, template, session)


def rdb_stale_trial_ids(storage: RDBStorage, study_id: int) -> list[int]:
    """Optuna's own stale check: RUNNING trials whose heartbeat row is older than the grace
    period (trials without a heartbeat row are not among them)."""
    return RDBStorage._get_stale_trial_ids(storage, study_id)


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study calls (Optuna's cache in front of an RDB storage)."""
    return study._storage


def backend_of(storage: optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """The storage behind Optuna's cache (``storage`` itself when not cached)."""
    return getattr(storage, "_backend", storage)


def study_id_of(study: optuna.Study) -> int:
    return study._study_id


def trial_id_of(trial: FrozenTrial | optuna.Trial) -> int:
    """The storage's id of a trial (``number`` counts within the study, this across all)."""
    return trial._trial_id


def grpc_stub_and_cache(channel: Any) -> tuple[Any, Any]:
    """Optuna's proxy client stub on ``channel`` and the trial cache its client keeps."""
    from optuna.storages._grpc.auto_generated import api_pb2_grpc
    from optuna.storages._grpc.client import GrpcClientCache

    stub = api_pb2_grpc.StorageServiceStub(channel)
    return stub, GrpcClientCache(stub)


def add_proxy_service(storage: optuna.storages.BaseStorage, server: Any) -> None:
    """Optuna's proxy service for ``storage`` on the gRPC ``server``."""
    from optuna.storages._grpc import servicer
    from optuna.storages._grpc.auto_generated import api_pb2_grpc

    api_pb2_grpc.add_StorageServiceServicer_to_server(servicer.OptunaStorageProxyService(storage), server)
