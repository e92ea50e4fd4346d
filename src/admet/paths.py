"""Where the project, its raw data and its working files live.

The raw benchmark data is resolved, in order, from an explicit argument, the
``ADMET_DATA_DIR`` environment variable, then ``../shared/data`` beside the project root.
Working files (processed data, study database, MLflow store) go to ``ADMET_HOME`` or the
current working directory, so that every command run from the same place finds them.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_root", "home", "project_root", "raw_dataset_dir"]


def project_root() -> Path:
    """The repository root (the folder holding ``pyproject.toml``) of this checkout."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    return Path.cwd()


def home() -> Path:
    """The working directory for processed data, studies and MLflow (``ADMET_HOME`` or cwd)."""
    return Path(os.environ.get("ADMET_HOME", Path.cwd())).resolve()


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds raw datasets (one sub-folder per dataset)."""
    if explicit is not None:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("ADMET_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return (project_root().parent / "shared" / "data").resolve()


def raw_dataset_dir(name: str, explicit: str | os.PathLike[str] | None = None) -> Path:
    """The raw folder of dataset ``name``; an explicit path names the dataset folder itself."""
    if explicit is not None:
        return Path(explicit).expanduser().resolve()
    return data_root() / name
