"""Telemetry over TLS with client certificates: a real Mosquitto TLS listener, a real agent
(paho) and a real collector (its own MQTT client) — the certificates are made here."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge_sdk.fleet.net import free_port
from tests.fleet.conftest import sqlite_rows, wait_for


def _cert(name: str, key: Any, issuer: tuple[x509.Name, Any] | None, *, ca: bool = False) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = dt.datetime.now(dt.timezone.utc)
    b = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )  # fmt: skip
    if ca:
        b = b.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                          key_agreement=False, encipher_only=False, decipher_only=False),
            critical=True,
        )  # fmt: skip
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    return b.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    out: dict[str, Path] = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("edge-test-ca", ca_key, None, ca=True)
    items = {"ca": (ca_key, ca)}
    for name in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        items[name] = (key, _cert(f"edge-test-{name}", key, (ca.subject, ca_key)))
    for name, (key, cert) in items.items():
        out[f"{name}.crt"] = tmp_path / f"{name}.crt"
        out[f"{name}.crt"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{name}.key"] = tmp_path / f"{name}.key"
        out[f"{name}.key"].write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ))  # fmt: skip
    return out


def test_agent_and_collector_over_tls_with_client_certificates(broker, procs, tiny_model, pki, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    broker(
        f"listener {port} 127.0.0.1\ncafile {pki['ca.crt']}\ncertfile {pki['server.crt']}\n"
        f"keyfile {pki['server.key']}\nrequire_certificate true\n"
    )
    url = f"mqtts://127.0.0.1:{port}"
    tls = ("--tls-ca", str(pki["ca.crt"]), "--tls-cert", str(pki["client.crt"]),
           "--tls-key", str(pki["client.key"]))  # fmt: skip
    db = tmp_path / "fleet.db"

    # Without a client certificate the broker refuses the handshake: logged, retried, no data.
    procs.collector(url, str(db), client_id="nocert", extra=("--tls-ca", str(pki["ca.crt"])))
    nocert = procs.root / "collector-nocert.log"
    wait_for(lambda: "retrying" in nocert.read_text(), 20, "the refused handshake to be logged")
    assert "collector: subscribed" not in nocert.read_text()

    procs.collector(url, str(db), client_id="c1", extra=tls)
    log = procs.root / "collector-c1.log"
    wait_for(lambda: "collector: subscribed" in log.read_text(), 30, "collector SUBACK over TLS")
    procs.agent(tiny_model, url, "pi-tls", outbox=tmp_path / "ob.db", extra=tls)
    sql = "SELECT seq FROM telemetry WHERE device='pi-tls' ORDER BY seq"
    wait_for(lambda: len(sqlite_rows(db, sql)) >= 3, 60, "three windows over TLS")
    assert [r[0] for r in sqlite_rows(db, sql)[:3]] == [0, 1, 2]
    assert sqlite_rows(db, "SELECT status FROM devices WHERE device='pi-tls'") == [("online",)]
