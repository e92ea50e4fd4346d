"""The admet pyfunc model as MLflow "models from code": the file :func:`log_pyfunc` logs.

Why: MLflow 3 recommends logging a ``PythonModel`` as the source file that builds it rather
than as a CloudPickle of the object. A pickle ties the logged model to the class layout and
the CloudPickle/Python versions of the process that logged it, and MLflow refuses to load
one when ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is off; a code file is read afresh.

What: :func:`admet.model.pyfunc.log_pyfunc` passes this file's path as ``python_model``.
MLflow copies it into the logged model's ``code/`` folder and runs it when the model is
logged and whenever it is loaded, after putting the model's ``code_paths`` (the ``admet``
package logged with it) on ``sys.path``; it hands MLflow the model with
:func:`mlflow.models.set_model`. The weights and config stay the ``model`` artifact that
:meth:`AdmetPyfuncModel.load_context` loads.
"""

from __future__ import annotations

from mlflow.models import set_model

from admet.model.pyfunc import AdmetPyfuncModel

set_model(AdmetPyfuncModel())
