"""Masking secrets in URLs before they are printed, logged or stored."""

from __future__ import annotations

__all__ = ["mask_url"]


def mask_url(url: str) -> str:
    """``scheme://user:secret@host/...`` -> ``scheme://user:***@host/...``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if "@" not in url:
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        head, _, tail = url.rpartition("@")
        scheme, sep, cred = head.partition("://")
        return f"{scheme}{sep}{cred.split(':', 1)[0]}:***@{tail}"
