"""Passwords never leave in a printed, logged or stored URL, in any form SQLAlchemy and
libpq accept: userinfo and the ``password=`` query parameter (issue 12, item 11)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from admet.errors import StorageError
from admet.redact import mask_url, scrub

SECRET = "hunter2xyz"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://admet:{SECRET}@db.example:5432/studies",
        f"postgresql+psycopg2://admet:{SECRET}@db.example/studies",
        f"postgresql:///studies?host=db.example&password={SECRET}&user=admet",
        f"postgresql://admet@db.example/studies?sslmode=require&PASSWORD={SECRET}",
        f"http://user:{SECRET}@mlflow.example:5000",
    ],
)
def test_every_credential_form_is_masked(url):
    masked = mask_url(url)
    assert SECRET not in masked and "***" in masked
    assert "db.example" in masked or "mlflow.example" in masked  # still says where
    assert SECRET not in scrub(f"could not connect: password {SECRET} rejected", url)


def test_urls_without_secrets_are_unchanged():
    for url in ("sqlite:///studies.db", "postgresql://admet@db/studies?sslmode=require", "grpc://h:1"):
        assert mask_url(url) == url


@pytest.mark.slow
def test_storage_error_and_cli_never_show_a_query_password(tmp_path):
    from admet.hpo.storage import open_storage

    url = f"postgresql:///studies?host=127.0.0.1&port=1&password={SECRET}&connect_timeout=2"
    with pytest.raises(StorageError) as info:
        open_storage(url)
    assert SECRET not in str(info.value)
    proc = subprocess.run(
        [sys.executable, "-m", "admet.hpo", "status", "--storage", url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and SECRET not in proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def test_mlflow_mirror_tags_the_masked_storage():
    from admet.hpo.mlflow_mirror import MlflowMirror

    mirror = MlflowMirror("s", tracking_uri=None, storage_label=f"postgresql:///s?host=h&password={SECRET}")
    assert SECRET not in mirror.storage_label
