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


def test_importing_admet_model_changes_no_warning_filter_or_logger_level():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["after"][1] == seen["before"][1]
    added = [f for f in seen["after"][0] if f not in seen["before"][0]]
    assert not [f for f in added if "admet" in f or "many workers" in f or "GPU available" in f], added


def test_a_fit_restores_the_filters_and_levels_it_quietened():
    import logging
    import warnings

    from admet.model.model import _QUIET_LOGGERS, _quiet_lightning

    lg = logging.getLogger(_QUIET_LOGGERS[0])
    lg.setLevel(logging.DEBUG)
    filters = list(warnings.filters)
    with _quiet_lightning():
        assert lg.level == logging.WARNING
        assert len(warnings.filters) > len(filters)
    assert lg.level == logging.DEBUG and list(warnings.filters) == filters
    lg.setLevel(logging.NOTSET)
