"""Which study database: the storage URL, and how messages name it without its password.

The URL comes from ``--storage``, then ``ADMET_HPO_STORAGE``, then the embedded default
``sqlite:///<working dir>/admet-studies.db``. For PostgreSQL the password belongs in the
URL from the environment (or ``~/.pgpass``); it is never printed or logged: messages use
:func:`where` or :func:`~admet.redact.mask_url`. ``grpc://``/``grpcs://`` URLs name a
storage proxy (``serve-storage``) instead of a database.
"""

from __future__ import annotations

import os

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from admet.errors import StorageError
from admet.paths import home
from admet.redact import mask_url

__all__ = [
    "DEFAULT_DB_NAME",
    "default_storage_url",
    "is_grpc_url",
    "parse_grpc_url",
    "resolve_storage_url",
    "scheme",
    "where",
]

DEFAULT_DB_NAME = "admet-studies.db"


def default_storage_url() -> str:
    return f"sqlite:///{home() / DEFAULT_DB_NAME}"


def resolve_storage_url(explicit: str | None = None) -> str:
    """``--storage``, then ``ADMET_HPO_STORAGE``, then the embedded SQLite file."""
    return explicit or os.environ.get("ADMET_HPO_STORAGE") or default_storage_url()


def scheme(url: str) -> str:
    """The URL's scheme without a driver (``postgresql+psycopg2://`` -> ``postgresql``),
    lower case; "" without one."""
    head, sep, _ = url.partition("://")
    return head.split("+", 1)[0].lower() if sep else ""


def where(url: str) -> str:
    """The database of ``url`` for a message: the SQLite file, or backend, host, port and
    database; never the password."""
    try:
        u = make_url(url)
    except (ArgumentError, ValueError):
        return mask_url(url)
    if u.get_backend_name() == "sqlite":
        return f"SQLite file {u.database}"
    return f"{u.get_backend_name()} at {u.host or 'localhost'}:{u.port or 'default port'}/{u.database}"


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
