"""Every call ``admet`` makes into a private API of torch, Lightning, Chemprop or MLflow.

One small adapter module per library (:mod:`.torch_private`, :mod:`.lightning_private`,
:mod:`.chemprop_private`, :mod:`.mlflow_private`); each function's docstring says what it
relies on, and ``tests/test_compat_<library>.py`` pins each of those behaviours against the
installed version, so an upgrade that changes one fails a test instead of a fit.
``pyproject.toml`` bounds these libraries below their next minor release for the same
reason. Optuna's private API has its own adapter, ``admet.hpo.storage._optuna_private``.

A foundation package: it imports nothing from ``admet``, and nothing here imports a
library at package import (each module imports only its own library, MLflow's lazily).
"""
