"""The storage proxy behind TLS: ``serve-storage --tls-cert/--tls-key`` serves ``grpcs://``
to clients that trust its CA (``ADMET_GRPC_CA``) and nobody else; with ``--tls-client-ca``
only clients with a certificate that CA signed get in; a non-loopback address without TLS is
refused unless ``--insecure``. Certificates are made by the test."""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from pathlib import Path

import optuna
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from test_grpc_storage import _stop, free_port
from test_hpo_service import hpo, spawn

from admet.errors import StorageError
from admet.hpo.storage import open_grpc_storage

pytestmark = pytest.mark.slow


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(
    folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[str, str]:
    crt, pem = folder / f"{stem}.crt", folder / f"{stem}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(crt), str(pem)


def _ca(folder: Path, stem: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(stem))
        .issuer_name(_name(stem))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key, _write(folder, stem, cert, key)[0]


def _leaf(folder: Path, stem: str, ca: x509.Certificate, ca_key, server: bool) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost" if server else stem))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return _write(folder, stem, builder.sign(ca_key, hashes.SHA256()), key)


@pytest.fixture
def pki(tmp_path):
    """A CA with a server and a client certificate, and a second CA nobody uses."""
    ca, ca_key, ca_file = _ca(tmp_path, "ca")
    server = _leaf(tmp_path, "server", ca, ca_key, server=True)
    client = _leaf(tmp_path, "client", ca, ca_key, server=False)
    _, _, other_ca = _ca(tmp_path, "other-ca")
    return {"ca": ca_file, "server": server, "client": client, "other_ca": other_ca}


def _serve(home: Path, *extra: str) -> tuple[object, int]:
    port = free_port()
    db = f"sqlite:///{home / 'studies.db'}"
    proc = spawn(home, "serve-storage", "--storage", db, "--host", "127.0.0.1", "--port", str(port), *extra)
    deadline = time.monotonic() + 60
    while "storage proxy on" not in proc.log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, proc.log.read_text()
        time.sleep(0.1)
    return proc, port


def _runs_a_trial(url: str) -> float:
    storage = open_grpc_storage(url, connect_seconds=10)
    study = optuna.create_study(study_name=f"tls-{time.monotonic_ns()}", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=1)
    value = study.best_value
    storage.close()
    return value


def test_tls_proxy_serves_clients_that_trust_its_ca_and_refuses_the_rest(pki, tmp_path, monkeypatch):
    cert, key = pki["server"]
    proc, port = _serve(tmp_path, "--tls-cert", cert, "--tls-key", key)
    try:
        assert f"storage proxy on grpcs://127.0.0.1:{port}" in proc.log.read_text()
        monkeypatch.setenv("ADMET_GRPC_CA", pki["ca"])
        assert 0 <= _runs_a_trial(f"grpcs://localhost:{port}") <= 1
        # a client that trusts another CA, and a plain client, never get an answer
        monkeypatch.setenv("ADMET_GRPC_CA", pki["other_ca"])
        with pytest.raises(StorageError, match="refused this client's TLS"):
            open_grpc_storage(f"grpcs://localhost:{port}", connect_seconds=3)
        with pytest.raises(StorageError, match="no storage proxy answers at grpc://"):
            open_grpc_storage(f"grpc://localhost:{port}", connect_seconds=3)
        monkeypatch.delenv("ADMET_GRPC_CA")
        with pytest.raises(StorageError, match="set ADMET_GRPC_CA"):
            open_grpc_storage(f"grpcs://localhost:{port}", connect_seconds=3)
    finally:
        assert _stop(proc) is not None, proc.log.read_text()


def test_mutual_tls_requires_a_client_certificate(pki, tmp_path, monkeypatch):
    cert, key = pki["server"]
    proc, port = _serve(tmp_path, "--tls-cert", cert, "--tls-key", key, "--tls-client-ca", pki["ca"])
    try:
        assert "(mutual TLS)" in proc.log.read_text()
        monkeypatch.setenv("ADMET_GRPC_CA", pki["ca"])
        with pytest.raises(StorageError, match="refused this client's TLS"):
            open_grpc_storage(f"grpcs://localhost:{port}", connect_seconds=3)
        client_cert, client_key = pki["client"]
        monkeypatch.setenv("ADMET_GRPC_CLIENT_CERT", client_cert)
        with pytest.raises(StorageError, match="needs both ADMET_GRPC_CLIENT_CERT and ADMET_GRPC_CLIENT_KEY"):
            open_grpc_storage(f"grpcs://localhost:{port}", connect_seconds=3)
        monkeypatch.setenv("ADMET_GRPC_CLIENT_KEY", client_key)
        assert 0 <= _runs_a_trial(f"grpcs://localhost:{port}") <= 1
    finally:
        _stop(proc)


def test_a_public_address_without_tls_is_refused_unless_insecure(tmp_path):
    db = f"sqlite:///{tmp_path / 'studies.db'}"
    port = str(free_port())
    refused = hpo(tmp_path, "serve-storage", "--storage", db, "--host", "0.0.0.0", "--port", port)
    assert refused.returncode != 0 and "refusing to listen on 0.0.0.0 without TLS" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    half = hpo(tmp_path, "serve-storage", "--storage", db, "--tls-cert", "x.crt", "--port", port)
    assert half.returncode != 0 and "needs both --tls-cert and --tls-key" in half.stderr
    proc = spawn(
        tmp_path, "serve-storage", "--storage", db, "--host", "0.0.0.0", "--port", port, "--insecure"
    )
    try:
        deadline = time.monotonic() + 60
        while "storage proxy on grpc://0.0.0.0" not in proc.log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, proc.log.read_text()
            time.sleep(0.1)
    finally:
        _stop(proc)
