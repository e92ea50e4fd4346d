"""Masking secrets in URLs before they are printed, logged or stored.

Every credential form SQLAlchemy and libpq accept is masked: the userinfo password
(``scheme://user:secret@host``) and the ``password=`` query parameter
(``postgresql:///db?host=h&password=secret``).

Example:
    >>> mask_url("postgresql://admet:hunter2@db:5432/studies")
    'postgresql://admet:***@db:5432/studies'
    >>> mask_url("postgresql:///studies?host=db&password=hunter2")
    'postgresql:///studies?host=db&password=***'
"""

from __future__ import annotations

import re

__all__ = ["mask_url", "scrub"]

_QUERY_SECRET = re.compile(r"([?&](?:password|passwd|pwd)=)[^&#]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``url`` with every password replaced by ``***``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    masked = url
    if "@" in url:
        try:
            masked = make_url(url).render_as_string(hide_password=True)
        except (ArgumentError, ValueError):
            head, _, tail = url.rpartition("@")
            scheme, sep, cred = head.partition("://")
            masked = f"{scheme}{sep}{cred.split(':', 1)[0]}:***@{tail}"
    return _QUERY_SECRET.sub(r"\1***", masked)


def _secrets(url: str) -> list[str]:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    found = [m.group(0).split("=", 1)[1] for m in _QUERY_SECRET.finditer(url)]
    try:
        password = make_url(url).password
    except (ArgumentError, ValueError):
        password = None
    return [str(x) for x in (*found, password) if x]


def scrub(text: str, url: str) -> str:
    """``text`` (an error message about ``url``) with the URL's passwords replaced."""
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text
