"""Provenance recorded with every cell: the code that trained it and Chemprop's version.

Why here: git and package metadata, apart from the statistics and the training they label.
"""

from __future__ import annotations

import subprocess

from admet.paths import project_root

__all__ = ["chemprop_version", "code_version"]


def code_version() -> str:
    """The code that trains a cell: the last commit that changed ``src/`` (results and docs
    committed since do not count), with ``+dirty`` when ``src/`` has uncommitted changes, or
    the installed package's version outside a git checkout. Stored with every cell, so that
    cells computed over several sittings say which code produced them."""
    from importlib.metadata import PackageNotFoundError, version

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=project_root(), capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("log", "-1", "--format=%h", "--", "src")
    if commit:
        return commit + (
            "+dirty" if git("status", "--porcelain", "--untracked-files=no", "--", "src") else ""
        )
    try:
        return version("admet")
    except PackageNotFoundError:
        return "unknown"


def chemprop_version() -> str:
    import chemprop

    return str(chemprop.__version__)
