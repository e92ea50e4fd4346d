"""Private APIs of torch, Lightning, Chemprop, MLflow and Optuna are reached only through
their adapters (``admet._compat`` and ``admet.hpo.storage._optuna_private``): a new call
elsewhere fails here, so that it gets an adapter function and a pinning test."""

from __future__ import annotations

import re
from pathlib import Path

import admet

SRC = Path(admet.__file__).parent
ADAPTERS = {SRC / "_compat", SRC / "hpo" / "storage" / "_optuna_private.py"}
# a private name of one of those libraries: torch._x, from mlflow.a._b import ..., and the
# private attributes of their objects that admet has used
PRIVATE = re.compile(
    r"\b(torch|lightning|chemprop|mlflow|optuna)(\.[A-Za-z0-9_]+)*\._[a-z]"
    r"|\bfrom (torch|lightning|chemprop|mlflow|optuna)[\w.]* import _[a-z]"
    r"|\._(calc_unreduced_loss|logger_connector|on_before_step|on_after_step|optimizer_step_\w+_hooks"
    r"|global_optimizer_\w+_hooks|fused_adamw?_|foreach_\w+)\b"
)


def _outside_adapters() -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py")) if not any(p == a or a in p.parents for a in ADAPTERS)]


def test_no_private_api_call_outside_the_adapters():
    found = []
    for path in _outside_adapters():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if PRIVATE.search(code):
                found.append(f"{path.relative_to(SRC.parent)}:{n}: {line.strip()}")
    assert not found, "private API outside admet._compat:\n" + "\n".join(found)


def test_the_pattern_sees_the_calls_it_guards():
    for line in (
        "torch._foreach_add_(steps, 1)",
        "from mlflow.tracking._tracking_service.utils import _use_tracking_uri",
        "trainer._logger_connector.log_metrics(x)",
        "crit._calc_unreduced_loss(a, b)",
        "from optuna.storages._rdb import models",
    ):
        assert PRIVATE.search(line), line
    assert not PRIVATE.search("self._safe(x)") and not PRIVATE.search("torch.nn.functional.relu(x)")
