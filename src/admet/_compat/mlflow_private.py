"""MLflow's private API used by ``admet``: a tracking URI set for a ``with`` block only.

Used by :mod:`admet.model.pyfunc_logging`. Pinned by ``tests/test_compat_mlflow.py``.
MLflow is imported inside the function, so importing this module does not import MLflow.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

__all__ = ["use_tracking_uri"]


def use_tracking_uri(uri: str) -> AbstractContextManager[None]:
    """``mlflow.tracking._tracking_service.utils._use_tracking_uri``: ``uri`` is the
    process's tracking URI inside the block (fluent calls such as ``start_run`` use it) and
    the previous setting is back after it, also on an error."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    return _use_tracking_uri(uri)
