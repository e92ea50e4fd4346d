"""RunTracker: two workers creating the same MLflow experiment at once both keep tracking."""

from __future__ import annotations

import pytest

from admet.tracking import RunTracker


@pytest.mark.slow
def test_an_experiment_created_by_another_worker_meanwhile_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("ADMET_HOME", str(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first, second = RunTracker(True, uri, "race"), RunTracker(True, uri, "race")
    lookup = second.client.get_experiment_by_name
    seen: list[str] = []

    def stale_lookup(name: str):  # the second worker looked before the first created it
        seen.append(name)
        return None if len(seen) == 1 else lookup(name)

    monkeypatch.setattr(second.client, "get_experiment_by_name", stale_lookup)
    assert first.experiment_id() is not None
    assert second.experiment_id() == first.experiment_id()
    assert second.enabled and second.start_run("trial") is not None  # tracking stayed on
    assert len(seen) == 2
