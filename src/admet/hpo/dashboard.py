"""``dashboard``: optuna-dashboard on the study storage (loopback unless told otherwise), with the
trials' parity plots and configs from the artifact store (:mod:`admet.hpo.artifacts`)."""

from __future__ import annotations

import logging

from admet.hpo.artifacts import artifact_dir, artifact_store
from admet.hpo.storage import open_storage
from admet.redact import mask_url

__all__ = ["serve_dashboard"]

logger = logging.getLogger(__name__)


def serve_dashboard(storage_url: str | None, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve optuna-dashboard until interrupted."""
    from optuna_dashboard import run_server

    storage = open_storage(storage_url)
    store = artifact_store()
    print(
        f"optuna-dashboard on http://{host}:{port} for {mask_url(storage.url)}, trial artifacts in "
        f"{artifact_dir()}",
        flush=True,
    )
    run_server(storage, host=host, port=port, artifact_store=store)
