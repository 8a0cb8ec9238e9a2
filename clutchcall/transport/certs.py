"""Self-signed certificates for local servers (the dev engine, tests).

The certificate doubles as its own trust anchor: write ``cert_pem`` to a file and
pass that path as ``verify=`` to :func:`clutchcall.transport.connect`, or pin its
``fingerprint`` with ``cert_sha256=``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class SelfSignedCertificate:
    """A PEM certificate, its PEM private key and the certificate's SHA-256."""

    cert_pem: bytes
    key_pem: bytes
    fingerprint: str
    """Lower-case hex SHA-256 of the DER certificate (what browsers and moq-rs pin)."""

    def write(self, directory: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``cert.pem`` and ``key.pem`` into ``directory``; return their paths."""
        base = Path(directory)
        cert_path = base / "cert.pem"
        key_path = base / "key.pem"
        cert_path.write_bytes(self.cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(self.key_pem)
        return cert_path, key_path


def generate_self_signed(
    names: Iterable[str] = DEFAULT_NAMES,
    *,
    valid_for: datetime.timedelta = datetime.timedelta(days=10),
) -> SelfSignedCertificate:
    """Make an ECDSA P-256 certificate whose SAN lists ``names`` (DNS names or IPs).

    The validity is short on purpose (10 days by default, starting an hour ago to
    absorb clock skew): these certificates are for local development only.
    """
    names = list(names)
    if not names:
        raise ValueError("at least one host name or IP address is required")
    san: list[x509.GeneralName] = []
    for name in names:
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            san.append(x509.DNSName(name))

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + valid_for)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return SelfSignedCertificate(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
    )


def fingerprint_sha256(certificate: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of a certificate's DER encoding."""
    return certificate.fingerprint(hashes.SHA256()).hex()


__all__ = ["DEFAULT_NAMES", "SelfSignedCertificate", "fingerprint_sha256", "generate_self_signed"]
