"""MLflow tracking for models and ensembles that never loses a trained model.

:class:`RunTracker` wraps ``MlflowClient``: an ensemble parent run, one nested run per
member (with Lightning's ``MLFlowLogger`` attached for per-epoch metrics), params,
final metrics and artifacts. Every MLflow call goes through :meth:`RunTracker._safe`: a
failure (server down, bad URI) is logged once as a warning and tracking is switched off
for the rest of the run, so training always finishes.

A tracker made with ``bounded=True`` (the HPO study's MLflow mirror) never holds its
caller up for long while a tracking server is down: before each call it probes the
server's ``/health`` with a short timeout (a failure is remembered for some seconds, so an
outage costs one probe, not one per call), and its own MLflow calls run with MLflow's
request retries and timeout bounded (:func:`bounded_http_requests`; the user's settings
are back after each call). One warning is logged per outage, not per call.

The tracking URI comes from the config, then ``MLFLOW_TRACKING_URI``, then an embedded
SQLite store ``mlflow.db`` in the working directory (``ADMET_HOME``, default: the current
directory), whose artifacts go to ``mlartifacts/`` beside it. Against a tracking server
(``http(s)://``) the server places the artifacts: with ``mlflow server --serve-artifacts``
they are uploaded to its ``--artifacts-destination`` (``mlflow-artifacts:`` URIs), and
nothing is written to the worker's working directory.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from admet._compat.mlflow_private import use_tracking_uri
from admet.paths import home
from admet.redact import mask_url
from admet.tracking_server import HealthProbe, bounded_http_requests, check_reachable

__all__ = [
    "HealthProbe",
    "RunTracker",
    "bounded_http_requests",
    "default_tracking_uri",
    "flatten",
    "resolve_tracking_uri",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

MAX_PARAM_LENGTH = 500


def default_tracking_uri() -> str:
    """The embedded store: ``sqlite:///<working dir>/mlflow.db``."""
    return f"sqlite:///{home() / 'mlflow.db'}"


def resolve_tracking_uri(configured: str | None) -> str:
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> ``{"a.b.c": value}`` (lists kept as values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Where a new experiment keeps its artifacts: ``mlartifacts/<experiment>`` beside an
    embedded store; the server's own default (its artifact proxy) for a tracking server."""
    from urllib.parse import urlparse

    if urlparse(tracking_uri).scheme in ("http", "https"):
        return None
    return (home() / "mlartifacts" / experiment).as_uri()


class RunTracker:
    """Best-effort MLflow logging for one training job (disabled when ``enabled`` is False).

    ``bounded=True``: probe the server before each call and bound MLflow's request retries
    and timeout for the tracker's own calls (see the module docstring). ``down_hint`` ends
    the warning logged when MLflow is unavailable."""

    def __init__(
        self,
        enabled: bool,
        tracking_uri: str | None,
        experiment_name: str,
        *,
        bounded: bool = False,
        down_hint: str = "continuing without tracking",
    ) -> None:
        self.enabled = enabled
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.experiment_name = experiment_name
        self.bounded = bounded
        self.down_hint = down_hint
        self._probe = HealthProbe(self.tracking_uri) if bounded else None
        self._outage = False  # a failure was warned about and no call succeeded since
        self._client: Any = None
        self._experiment_id: str | None = None
        self._ended: set[str] = set()

    # -- plumbing -------------------------------------------------------------------------

    def _safe(self, what: str, fn: Callable[[], T]) -> T | None:
        if not self.enabled:
            return None
        reason = self._probe.check() if self._probe is not None else None
        if reason is not None:
            self._down(what, reason)
            return None
        try:
            with bounded_http_requests() if self.bounded else nullcontext():
                result = fn()
        except Exception as exc:
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            if self._probe is not None:
                self._probe.mark_down(reason)
            self._down(what, reason)
            return None
        self._outage = False
        return result

    def _down(self, what: str, reason: str) -> None:
        """Switch tracking off; warn on the first failure of an outage only."""
        log = logger.debug if self._outage else logger.warning
        log(
            "MLflow unavailable (%s at %s): %s; %s", what, mask_url(self.tracking_uri), reason, self.down_hint
        )
        self._outage = True
        self.enabled = False

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            check_reachable(self.tracking_uri)

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def experiment_id(self) -> str | None:
        if not self.enabled:  # MLflow need not even be installed then
            return None
        from mlflow.exceptions import MlflowException

        def get() -> str:
            if self._experiment_id is None:
                exp = self.client.get_experiment_by_name(self.experiment_name)
                if exp is None:
                    try:
                        self._experiment_id = self.client.create_experiment(
                            self.experiment_name,
                            artifact_location=_artifact_location(self.tracking_uri, self.experiment_name),
                        )
                    except MlflowException as exc:
                        # another worker created it a moment ago: use theirs
                        exp = self.client.get_experiment_by_name(self.experiment_name)
                        if exc.error_code != "RESOURCE_ALREADY_EXISTS" or exp is None:
                            raise
                if exp is not None:
                    self._experiment_id = exp.experiment_id
            return self._experiment_id

        return self._safe("experiment", get)

    # -- runs -----------------------------------------------------------------------------

    def start_run(
        self, name: str, parent_id: str | None = None, tags: Mapping[str, str] | None = None
    ) -> str | None:
        """Create a run (nested under ``parent_id``); returns its id or None when disabled."""
        exp = self.experiment_id()
        if exp is None:
            return None
        all_tags = dict(tags or {})
        if parent_id:
            all_tags["mlflow.parentRunId"] = parent_id
        run = self._safe("create run", lambda: self.client.create_run(exp, run_name=name, tags=all_tags))
        return None if run is None else run.info.run_id

    def log_params(self, run_id: str | None, params: Mapping[str, Any]) -> None:
        if run_id is None:
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()]
        self._safe("log params", lambda: self.client.log_batch(run_id, params=items))

    def log_metrics(self, run_id: str | None, metrics: Mapping[str, float], step: int | None = None) -> None:
        if run_id is None:
            return

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(_metric_key(k), float(v), now, step or 0)
            for k, v in metrics.items()
            if v is not None and math.isfinite(float(v))
        ]
        self._safe("log metrics", lambda: self.client.log_batch(run_id, metrics=items))

    def log_artifact(
        self, run_id: str | None, path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        if run_id is None:
            return
        path = Path(path)
        if path.is_dir():
            self._safe("log artifacts", lambda: self.client.log_artifacts(run_id, str(path), artifact_path))
        else:
            self._safe("log artifact", lambda: self.client.log_artifact(run_id, str(path), artifact_path))

    def set_tags(self, run_id: str | None, tags: Mapping[str, str]) -> None:
        if run_id is None:
            return
        for k, v in tags.items():
            self._safe("set tag", lambda k=k, v=v: self.client.set_tag(run_id, k, str(v)))

    def end_run(self, run_id: str | None, status: str = "FINISHED") -> None:
        """End a run once (a later call, e.g. error cleanup, leaves its status alone)."""
        if run_id is None or run_id in self._ended:
            return
        self._ended.add(run_id)
        self._safe("end run", lambda: self.client.set_terminated(run_id, status))

    def lightning_logger(self, run_id: str | None) -> Any:
        """Lightning's ``MLFlowLogger`` bound to an existing run (None when disabled)."""
        if run_id is None or not self.enabled:
            return None
        return self._safe(
            "lightning logger",
            lambda: _safe_mlflow_logger_class()(
                experiment_name=self.experiment_name, tracking_uri=self.tracking_uri, run_id=run_id
            ),
        )

    @contextmanager
    def artifact_dir(self) -> Iterator[Path]:
        """A scratch directory for files that are logged as artifacts and then discarded."""
        with tempfile.TemporaryDirectory(prefix="admet-mlflow-") as tmp:
            yield Path(tmp)


def _safe_mlflow_logger_class() -> type:
    """Lightning's ``MLFlowLogger`` whose logging calls turn MLflow errors into one warning
    and then stop logging, so a tracking server going down mid-training never fails the fit."""
    from lightning.pytorch.loggers import MLFlowLogger

    class SafeMLFlowLogger(MLFlowLogger):
        _broken = False

        def _guard(self, what: str, fn: Callable[[], Any]) -> None:
            if self._broken:
                return
            try:
                fn()
            except Exception as exc:
                self._broken = True
                logger.warning("MLflow logging stopped (%s): %s", what, str(exc).splitlines()[0][:200])

        def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
            self._guard("metrics", lambda: MLFlowLogger.log_metrics(self, metrics, step))

        def log_hyperparams(self, params: Any) -> None:
            self._guard("params", lambda: MLFlowLogger.log_hyperparams(self, params))

        def finalize(self, status: str = "success") -> None:
            # the tracker ends the run itself, with the member's final metrics
            self._guard("finalize", lambda: None)

        @property
        def experiment(self) -> Any:
            # Lightning's logger sets the process-wide tracking URI the first time it is
            # used; a fit must not change where later fluent MLflow calls of the process go
            if not self._tracking_uri:
                return MLFlowLogger.experiment.fget(self)  # type: ignore[attr-defined]
            with use_tracking_uri(self._tracking_uri):
                return MLFlowLogger.experiment.fget(self)  # type: ignore[attr-defined]

    return SafeMLFlowLogger


def _metric_key(key: str) -> str:
    """MLflow allows alphanumerics, ``_ - . space : /``; anything else becomes ``_``."""
    return "".join(c if c.isalnum() or c in "_-. :/" else "_" for c in key)
