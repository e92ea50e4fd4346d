"""The trial heartbeat: Optuna's settings for it, and a beat that never raises.

Optuna's heartbeat thread has no error handling: one exception (an outage longer than the
retry window, SQLite's 'database is locked') ends it for good while training goes on, and
other workers then fail the live trial as stale. :func:`beating` wraps an RDB storage's
``record_heartbeat`` so a failed beat is logged once per outage and the next beat tries
again. (The gRPC client's heartbeat does the same in its own ``record_heartbeat``.)
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from optuna.storages import RetryHeartbeatStaleTrialCallback

from admet.hpo.storage._retry import STORAGE_ERRORS, connection_lost
from admet.redact import scrub

__all__ = ["beating", "heartbeat_kwargs"]

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def beating(record_heartbeat: F) -> F:
    """``record_heartbeat`` that never raises (module docstring). The storage needs ``url``
    and ``_heartbeat_failing``; one with ``connection_lost_at`` is told of a lost connection."""

    @functools.wraps(record_heartbeat)
    def wrapper(self: Any, trial_id: int) -> None:
        try:
            record_heartbeat(self, trial_id)
        except Exception as exc:
            if connection_lost(exc) if isinstance(exc, STORAGE_ERRORS) else False:
                self.connection_lost_at = time.monotonic()
            if not self._heartbeat_failing:
                logger.warning(
                    "heartbeat of trial %d not recorded (%s); retrying at the next beat",
                    trial_id,
                    scrub(str(exc).splitlines()[0][:200], self.url),
                )
            self._heartbeat_failing = True
        else:
            if self._heartbeat_failing:
                self._heartbeat_failing = False
                logger.warning("heartbeat of trial %d recorded again", trial_id)

    return wrapper  # type: ignore[return-value]


def heartbeat_kwargs(
    heartbeat_interval: int | None, grace_period: int | None, max_retry: int
) -> dict[str, Any]:
    """Optuna's heartbeat settings for a storage (none without an interval): stale trials
    are failed and retried with their parameters up to ``max_retry`` times."""
    if not heartbeat_interval:
        return {}
    return {
        "heartbeat_interval": heartbeat_interval,
        "grace_period": grace_period,
        "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
    }
