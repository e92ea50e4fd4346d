"""Model folders that are whole or absent.

Why: ``model train``, ``hpo refit`` and an ensemble's member checkpoints write a folder of
several files (config, weights, training record, Chemprop copies, calibration). Written in
place, a process killed halfway left a folder that ``predict`` could half-read, and two
refits to one ``--out`` interleaved their files. :func:`writing` fills a hidden temporary
sibling, writes a manifest of every file and its size last, then renames the folder into
place (a rename within one directory is atomic), under an advisory lock that refuses a
second writer at once. :func:`check_complete` is what every loader calls first: a folder
whose manifest does not match its files, or a leftover temporary folder, is refused in one
line. Folders saved before manifests existed (no manifest, a normal name) load as before.
A save that fails on a full filesystem is reported as ``ENOSPC`` naming the folder, whatever
error the writer raised (torch's serializer raises a stream ``RuntimeError``).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from admet.errors import AdmetError, DataError

__all__ = ["MANIFEST", "PARTIAL", "FolderBusyError", "check_complete", "writing"]

MANIFEST = "manifest.json"
PARTIAL = ".partial-"  # in the name of a folder still being written (or abandoned by a kill)


class FolderBusyError(AdmetError):
    """Another process is writing the same model folder."""


@contextmanager
def writing(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``dest``; on a clean exit, write its manifest
    and move it to ``dest`` (replacing a previous folder there); on an error, remove it and
    leave ``dest`` as it was.

    Raises:
        FolderBusyError: another process holds ``dest``'s lock.
    """
    target = Path(dest)
    if target.exists() and not target.is_dir():
        raise DataError(f"{target}: exists and is not a folder; choose another --out")
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    # one lock file per target, kept: removing it would let a waiting opener lock a dead inode
    fd = os.open(parent / f".{target.name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusyError(
                f"{target}: another process is writing this model folder; wait for it or choose another --out"
            ) from None
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{PARTIAL}", dir=parent))
        try:
            yield tmp
            _write_manifest(tmp)
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.replaced-", dir=parent))
                os.rmdir(old)  # rename needs the name free
                os.rename(target, old)
                os.rename(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, target)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, Exception) and _out_of_space(parent):
                # torch.save reports a full disk as a RuntimeError of its stream; name it
                raise OSError(errno.ENOSPC, "No space left on device", str(target)) from exc
            raise
    finally:
        os.close(fd)  # releases the lock


def _out_of_space(folder: Path) -> bool:
    """Whether the filesystem of ``folder`` has (next to) no space left for a write."""
    try:
        return shutil.disk_usage(folder).free < 64 * 1024
    except OSError:
        return False


def _write_manifest(folder: Path) -> None:
    files = {
        str(p.relative_to(folder)): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }
    (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=1))


def check_complete(folder: str | os.PathLike[str]) -> Path:
    """``folder`` if it is a whole saved model folder (its manifest matches its files, or
    it predates manifests); else a one-line :class:`~admet.errors.DataError`."""
    path = Path(folder)
    if PARTIAL in path.name:
        raise DataError(
            f"{path}: incomplete model folder (a save that did not finish); use the folder it was for"
        )
    manifest = path / MANIFEST
    if not manifest.is_file():
        return path
    try:
        files = json.loads(manifest.read_text())["files"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise DataError(f"{manifest}: unreadable manifest; the folder is incomplete") from None
    for rel, size in files.items():
        f = path / rel
        if not f.is_file() or f.stat().st_size != size:
            raise DataError(f"{path}: incomplete model folder ({rel} missing or of another size than saved)")
    return path
