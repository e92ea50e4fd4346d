"""Importing the model layer changes no process-wide warning filter or logger level: a
notebook or an application that imports admet keeps its own settings (Lightning's noise is
silenced inside a fit only, and restored after it)."""

from __future__ import annotations

import json
import subprocess
import sys

CODE = """
import json, logging, warnings
names = ["lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"]
def state():
    return [repr(f) for f in warnings.filters], [logging.getLogger(n).level for n in names]
before = state()
import admet.model
from admet.model import ChempropEnsemble, ChempropModel  # the lazy names, loaded
import admet.model.model, admet.model.ensemble, admet.benchmark.fang2023, admet.hpo.objective
after = state()
print(json.dumps({"before": before, "after": after}))
"""

# Every module of the model package, imported after the third-party libraries it uses (their
# own import-time settings are theirs, not ours): the filters and every logger's level,
# the root's included, must be exactly as before.
EVERY_MODULE = """
import importlib, json, logging, pkgutil, warnings
import torch, lightning.pytorch, chemprop.nn, chemprop.models, mlflow.pyfunc
import sklearn.preprocessing, rdkit.Chem, pandas, scipy.stats
def state():
    levels = {n: logging.getLogger(n).level for n in sorted(logging.root.manager.loggerDict)}
    return [repr(f) for f in warnings.filters], levels, logging.root.level
before = state()
import admet.model
modules = [m.name for m in pkgutil.walk_packages(admet.model.__path__, "admet.model.")]
for name in modules:
    importlib.import_module(name)
after = state()
print(json.dumps({"modules": modules, "before": before, "after": after}))
"""


def test_importing_admet_model_changes_no_warning_filter_or_logger_level():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["after"][1] == seen["before"][1]
    added = [f for f in seen["after"][0] if f not in seen["before"][0]]
    assert not [f for f in added if "admet" in f or "many workers" in f or "GPU available" in f], added


def test_importing_every_model_module_leaves_filters_and_levels_exactly_as_they_were():
    done = subprocess.run([sys.executable, "-c", EVERY_MODULE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"admet.model.model", "admet.model.training", "admet.model.runtime"} <= set(seen["modules"])
    (filters, levels, root), (filters_after, levels_after, root_after) = seen["before"], seen["after"]
    assert filters_after == filters, [f for f in filters_after if f not in filters]
    changed = {n: (levels.get(n, 0), level) for n, level in levels_after.items() if levels.get(n, 0) != level}
    assert not changed and root_after == root, changed


def test_a_fit_restores_the_filters_and_levels_it_quietened():
    import logging
    import warnings

    from admet.model.runtime import QUIET_LOGGERS as _QUIET_LOGGERS
    from admet.model.runtime import quiet_lightning as _quiet_lightning

    lg = logging.getLogger(_QUIET_LOGGERS[0])
    lg.setLevel(logging.DEBUG)
    filters = list(warnings.filters)
    with _quiet_lightning():
        assert lg.level == logging.WARNING
        assert len(warnings.filters) > len(filters)
    assert lg.level == logging.DEBUG and list(warnings.filters) == filters
    lg.setLevel(logging.NOTSET)
