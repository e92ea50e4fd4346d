"""Is the MLflow tracking server there, and MLflow's HTTP requests bounded in time.

MLflow's client retries a refused request with backoff for about four minutes and waits
120 s for an answer; a study worker that mirrors to a server that is down must not wait
that long after each trial (``sync-mlflow`` fills the gap afterwards). ``check_reachable``
fails fast before a first client is made, ``HealthProbe`` asks ``/health`` before each
mirror write (cached), and ``bounded_http_requests`` caps MLflow's own retries and timeout
for the calls made inside it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# MLflow's own client retries a refused request 7 times with backoff (about 4 minutes)
# and waits 120 s for a response; a bounded tracker's calls use these instead.
BOUNDED_MAX_RETRIES = 1
BOUNDED_TIMEOUT_S = 5

_limits_lock = threading.Lock()
_limits_depth = 0
_limits_saved: dict[str, str | None] = {}


@contextmanager
def bounded_http_requests(
    max_retries: int = BOUNDED_MAX_RETRIES, timeout: int = BOUNDED_TIMEOUT_S
) -> Iterator[None]:
    """MLflow HTTP requests made inside the block retry at most ``max_retries`` times and
    time out after ``timeout`` s (a lower value the user set is kept). MLflow reads these
    settings only from ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``MLFLOW_HTTP_REQUEST_TIMEOUT``,
    so they are set for the block and the user's values (or their absence) are put back
    when the last block open in the process ends; blocks in several threads share one
    setting instead of restoring each other's."""
    global _limits_depth
    ours = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": max_retries, "MLFLOW_HTTP_REQUEST_TIMEOUT": timeout}
    with _limits_lock:
        if _limits_depth == 0:
            _limits_saved.clear()
            for key, bound in ours.items():
                theirs = os.environ.get(key)
                _limits_saved[key] = theirs
                value = min(int(theirs), bound) if theirs and theirs.strip().isdigit() else bound
                os.environ[key] = str(value)
        _limits_depth += 1
    try:
        yield
    finally:
        with _limits_lock:
            _limits_depth -= 1
            if _limits_depth == 0:
                for key, theirs in _limits_saved.items():
                    if theirs is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = theirs


class HealthProbe:
    """Is the tracking server up? A GET of ``<uri>/health`` with a ``timeout`` s limit.

    ``check()`` returns None when the server answered (or the URI is not ``http(s)``: a
    file or database store needs no probe), else the reason. A failure is remembered for
    ``down_for`` s and a success for ``up_for`` s, so a caller probing before every write
    costs one request per outage or per few seconds."""

    def __init__(self, uri: str, timeout: float = 2.0, down_for: float = 15.0, up_for: float = 5.0) -> None:
        from urllib.parse import urlparse, urlunparse

        parsed = urlparse(uri)
        self.url: str | None = None
        if parsed.scheme in ("http", "https"):
            host = parsed.hostname or "localhost"
            if ":" in host:
                host = f"[{host}]"
            netloc = f"{host}:{parsed.port}" if parsed.port else host  # no credentials
            self.url = urlunparse((parsed.scheme, netloc, parsed.path.rstrip("/") + "/health", "", "", ""))
        self.timeout, self.down_for, self.up_for = timeout, down_for, up_for
        self._until = 0.0
        self._reason: str | None = None

    def check(self) -> str | None:
        if self.url is None:
            return None
        now = time.monotonic()
        if now < self._until:
            return self._reason
        self._reason = self._probe()
        self._until = time.monotonic() + (self.down_for if self._reason else self.up_for)
        return self._reason

    def mark_down(self, reason: str) -> None:
        """A call failed although the probe said up: answer down for ``down_for`` s, so
        the calls after it skip the server too (and no call that needs no server, such
        as a cached experiment id, counts as the outage's end)."""
        if self.url is not None:
            self._reason, self._until = reason, time.monotonic() + self.down_for

    def _probe(self) -> str | None:
        import ssl
        import urllib.error
        import urllib.request

        assert self.url is not None
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout):
                return None
        except urllib.error.HTTPError as exc:
            # the server answered: only a gateway's 5xx says MLflow behind it is down
            return f"{self.url} answered HTTP {exc.code}" if exc.code >= 500 else None
        except Exception as exc:
            if isinstance(getattr(exc, "reason", exc), ssl.SSLError):
                return None  # it answered; TLS settings are MLflow's client's business
            return f"{self.url}: {str(getattr(exc, 'reason', exc)).splitlines()[0][:200]}"


def check_reachable(uri: str, timeout: float = 3.0) -> None:
    """Fail fast on an HTTP tracking server that does not accept connections: MLflow's own
    client would retry with backoff for minutes before giving up."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    with socket.create_connection((parsed.hostname or "localhost", port), timeout=timeout):
        pass
