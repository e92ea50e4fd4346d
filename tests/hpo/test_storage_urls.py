"""Storage URLs as users write them open the same study: ``postgresql://`` (SQLAlchemy
2.1's default driver, psycopg 3), ``postgresql+psycopg://`` and ``postgresql+psycopg2://``."""

from __future__ import annotations

import uuid

import optuna
import pytest
from sqlalchemy.engine import make_url

from admet.errors import StorageError
from admet.hpo.storage import open_storage


@pytest.mark.postgres
@pytest.mark.parametrize("driver", ["postgresql", "postgresql+psycopg", "postgresql+psycopg2"])
def test_every_postgresql_url_form_opens_the_study(postgres_url, driver):
    url = make_url(postgres_url).set(drivername=driver).render_as_string(hide_password=False)
    storage = open_storage(url)
    name = f"url-forms-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=storage)
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=1.0))
    try:
        again = optuna.load_study(study_name=name, storage=open_storage(url))
        assert [t.value for t in again.trials] == [1.0]
    finally:
        optuna.delete_study(study_name=name, storage=storage)


def test_unknown_driver_is_a_one_line_error_without_the_password():
    with pytest.raises(StorageError) as info:
        open_storage("postgresql+nosuchdriver://admet:hunter2@db.example/studies")
    assert "hunter2" not in str(info.value) and "\n" not in str(info.value)
