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
and ``_cache`` attributes); the proxy's cache subclasses ``_CachedStorage`` (its
``_lock``, ``_studies``, ``_trial_id_to_study_id_and_number``, ``_add_trials_to_cache``).

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
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
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
    "cached_storage",
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


class _TrialLearningCache(_CachedStorage):
    """Optuna's cache in front of an RDB storage, for the gRPC proxy, that also takes a
    parameter for a trial it has never seen.

    Optuna's ``set_trial_param`` looks the trial's study up in the cache's own map, filled
    only by trials this process created or read. A proxy restarted under running workers
    (or a second proxy on the same database) gets ``suggest_*`` calls for trials created
    through the one before: the lookup raised ``KeyError``, the client got NOT_FOUND and the
    worker died. Here such a trial's study is read from the database into the cache first.
    """

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: optuna.distributions.BaseDistribution,
    ) -> None:
        with self._lock:
            known = trial_id in self._trial_id_to_study_id_and_number
        if not known:  # as create_new_trial caches the trials it makes
            with scoped_session(self._backend) as session:
                study_id = models.TrialModel.find_or_raise_by_id(trial_id, session).study_id
            trial = self._backend.get_trial(trial_id)
            with self._lock:
                self._studies.setdefault(study_id, _StudyInfo())
                self._add_trials_to_cache(study_id, [trial])
        super().set_trial_param(trial_id, param_name, param_value_internal, distribution)


def cached_storage(backend: RDBStorage) -> optuna.storages.BaseStorage:
    """Optuna's cache in front of ``backend`` (what ``optuna.storages.get_storage`` gives an
    ``RDBStorage``), taking parameters of trials created through another process."""
    return _TrialLearningCache(backend)


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
