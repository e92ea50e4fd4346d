"""Download raw benchmark files from their public origin, verified and written atomically."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tqdm.auto import tqdm

from admet.errors import DataError

__all__ = ["download_verified", "fetch_files", "sha256_file"]


def download_verified(url: str, dest: Path, sha256: str, timeout: float = 10.0) -> None:
    """Download ``url`` to ``dest`` if its SHA-256 is ``sha256``; ``dest`` is only replaced
    by a complete, verified file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            for chunk in iter(lambda: resp.read(1 << 16), b""):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != sha256:
            raise DataError(
                f"{url}: SHA-256 mismatch (expected {sha256[:12]}..., got {h.hexdigest()[:12]}...)"
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fetch_files(
    files: Mapping[str, str],
    checksums: Mapping[str, str],
    dest: Path,
    timeout: float = 10.0,
    progress: bool = True,
) -> list[Path]:
    """Download every {relative path: url} into ``dest``, skipping files already verified.

    Raises:
        DataError: the network is unreachable (the message says where to put the files
            by hand instead) or a download does not match its checksum.
    """
    written = []
    for rel, url in tqdm(files.items(), desc="fetch", disable=not progress, unit="file"):
        target = dest / rel
        expected = checksums[rel]
        if target.is_file() and sha256_file(target) == expected:
            continue
        try:
            download_verified(url, target, expected, timeout=timeout)
        except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as exc:
            if isinstance(exc, DataError):
                raise
            reason = getattr(exc, "reason", exc)
            raise DataError(
                f"cannot download {url} ({reason}); without network access, copy the raw "
                f"files by hand into {dest} (layout as in its README, e.g. {dest / rel})"
            ) from None
        written.append(target)
    return written


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
