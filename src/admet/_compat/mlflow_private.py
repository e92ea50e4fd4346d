"""MLflow's private API used by ``admet``: a tracking URI set for a ``with`` block only.

Used by :mod:`admet.model.pyfunc_logging`. Pinned by ``tests/test_compat_mlflow.py``.
MLflow is imported inside the function, so importing this module does not import MLflow.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["use_tracking_uri"]


@contextmanager
def use_tracking_uri(uri: str) -> Iterator[None]:
    """``mlflow.tracking._tracking_service.utils._use_tracking_uri``: ``uri`` is the
    process's tracking URI inside the block (fluent calls such as ``start_run`` use it) and
    the previous setting is back after it, also on an error. MLflow's ``set_tracking_uri``
    also writes (and on restoring None deletes) ``MLFLOW_TRACKING_URI`` in the environment,
    so the variable the user set is put back too."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before
