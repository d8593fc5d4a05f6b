"""A throwaway PKI for TLS tests: a CA, a server certificate for 127.0.0.1/localhost and
client certificates with a chosen Common Name, written as PEM files."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _builder(cn: str, issuer: x509.Name, key: Any) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
    )  # fmt: skip


def _write(path: Path, cert: x509.Certificate, key: Any) -> tuple[Path, Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    crt, pem = path.with_suffix(".crt"), path.with_suffix(".key")
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))  # fmt: skip
    return crt, pem


@dataclass
class Pki:
    """``ca.crt``, ``server.crt``/``server.key`` under ``root``; :meth:`client` makes more."""

    root: Path

    def __post_init__(self) -> None:
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge-test-ca")])
        ca = (
            _builder("edge-test-ca", name, self._ca_key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._ca_key.public_key()),
                           critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )  # fmt: skip
        self._ca = ca
        self.ca, _ = _write(self.root / "ca", ca, self._ca_key)
        self.ca.with_suffix(".key").unlink()  # nobody needs the CA key on disk
        self.server, self.server_key = self.issue("server", "localhost", server=True)

    def issue(self, filename: str, cn: str, *, server: bool = False) -> tuple[Path, Path]:
        """A certificate signed by the CA (a client one unless ``server``): (crt, key) paths."""
        key = ec.generate_private_key(ec.SECP256R1())
        b = _builder(cn, self._ca.subject, key).add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()), critical=False
        )  # fmt: skip
        if server:
            b = b.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
            ]), critical=False)  # fmt: skip
        return _write(self.root / filename, b.sign(self._ca_key, hashes.SHA256()), key)
