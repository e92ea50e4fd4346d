"""Deprecated: ``admet.model.chemprop`` moved (one release of grace, then removed).

The package was split into layers: the schema into :mod:`admet.config`, the samplers into
:mod:`admet.sampling`, config-to-data into :mod:`admet.data.training`, MLflow tracking into
:mod:`admet.tracking` and the rest into :mod:`admet.model`. Old imports, of the package or
of its former submodules (``admet.model.chemprop.model`` ...), still resolve, lazily, and
warn once with a :class:`DeprecationWarning` that names the new home.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any

# former submodule -> the modules that now hold its public names (searched in order)
_MOVED: dict[str, tuple[str, ...]] = {
    "callbacks": ("admet.model.callbacks",),
    "config": ("admet.config.schema",),
    "curriculum": ("admet.sampling.curriculum", "admet.config.phases", "admet.model.callbacks"),
    "curriculum_sampler": ("admet.sampling.legacy",),
    "ensemble": ("admet.model.ensemble",),
    "joint_sampler": ("admet.sampling.joint",),
    "metrics": ("admet.model.metrics",),
    "mlflow_tracking": ("admet.tracking", "admet.redact"),
    "model": ("admet.model.model", "admet.errors"),
    "mpnn": ("admet.model.mpnn",),
    "plots": ("admet.model.plots",),
    "task_sampler": ("admet.sampling.legacy",),
    "training_data": ("admet.data.training",),
}
_RENAMED = {"mask_uri": "mask_url"}
_EXPORTS = {
    "ChempropEnsemble": "admet.model.ensemble",
    "ChempropModel": "admet.model.model",
    "CurriculumCallback": "admet.model.callbacks",
    "CurriculumPhaseConfig": "admet.config.phases",
    "CurriculumState": "admet.sampling.curriculum",
    "DynamicCurriculumSampler": "admet.sampling.legacy",
    "JointSampler": "admet.sampling.joint",
    "TaskAwareSampler": "admet.sampling.legacy",
}

__all__ = sorted(_EXPORTS)

_warned = False


def _warn_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            "admet.model.chemprop is deprecated and will be removed in the next release; import "
            "from admet.model, admet.sampling, admet.config, admet.data.training or admet.tracking",
            DeprecationWarning,
            stacklevel=3,
        )


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        _warn_once()
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _MOVED:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _MovedModule(types.ModuleType):
    """A former submodule: attribute access resolves in the modules that hold it now."""

    def __getattr__(self, name: str) -> Any:
        for target in _MOVED[self.__name__.rsplit(".", 1)[1]]:
            module = importlib.import_module(target)
            real = _RENAMED.get(name, name)
            if hasattr(module, real):
                _warn_once()
                return getattr(module, real)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``import admet.model.chemprop.<former submodule>`` to a :class:`_MovedModule`."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        package, _, leaf = fullname.rpartition(".")
        if package == __name__ and leaf in _MOVED:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _MovedModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        _warn_once()


if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _MovedFinder())
