"""Certificates and the client's verify= / cert_sha256= options."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from transport_helpers import KINDS, client, echo_handler, read_all, server, shared_certificate

from clutchcall.transport import (
    CertificateError,
    Connection,
    HandshakeError,
    generate_self_signed,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def cafile(tmp_path: Path) -> Path:
    cert_path, _ = shared_certificate().write(tmp_path)
    return cert_path


async def echo_once(conn: Connection) -> bytes:
    stream = await conn.open_bidi_stream()
    await stream.send(b"secure")
    await stream.send_eof()
    return await read_all(stream)


def test_self_signed_certificate_has_san_short_validity_and_p256() -> None:
    cert = generate_self_signed(["localhost", "127.0.0.1", "::1"])
    parsed = x509.load_pem_x509_certificate(cert.cert_pem)
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    public_key = parsed.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    lifetime = parsed.not_valid_after_utc - parsed.not_valid_before_utc
    assert lifetime <= datetime.timedelta(days=11)
    assert len(cert.fingerprint) == 64
    assert cert.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


async def test_default_verification_rejects_a_self_signed_server(kind: str) -> None:
    with anyio.fail_after(10):
        async with server(echo_handler) as srv:
            with pytest.raises(CertificateError):
                async with client(kind, srv.port, cert_sha256=None, verify=True):
                    pass
            # The server keeps serving after the failed handshake.
            async with client(kind, srv.port) as conn:
                assert await echo_once(conn) == b"secure"


async def test_verification_against_the_certificate_as_cafile(kind: str, cafile: Path) -> None:
    with anyio.fail_after(10):
        async with server(echo_handler) as srv:
            for verify in (str(cafile), cafile):
                async with client(kind, srv.port, cert_sha256=None, verify=verify) as conn:
                    assert await echo_once(conn) == b"secure"


def make_ca_and_leaf(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    """A private CA (written to a file) and a localhost leaf it signed (chain PEM, key PEM)."""
    now = datetime.datetime.now(datetime.UTC)
    validity = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1))

    def build(subject: str, issuer: str, key: ec.EllipticCurvePrivateKey, public: Any) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(validity[0])
            .not_valid_after(validity[1])
        )
        if subject == issuer:
            builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        else:
            san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(san), False)
        return builder.sign(key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("test CA", "test CA", ca_key, ca_key.public_key())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = build("localhost", "test CA", ca_key, leaf_key.public_key())
    ca_path = tmp_path / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain = leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(
        serialization.Encoding.PEM
    )
    key = leaf_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return ca_path, chain, key


async def test_verification_with_an_ssl_context(tmp_path: Path) -> None:
    ca_path, chain, key = make_ca_and_leaf(tmp_path)
    context = ssl.create_default_context(cafile=str(ca_path))
    with anyio.fail_after(10):
        async with server(echo_handler, certificate=chain, private_key=key) as srv:
            async with client("quic", srv.port, cert_sha256=None, verify=context) as conn:
                assert await echo_once(conn) == b"secure"
            with pytest.raises(CertificateError):
                async with client("quic", srv.port, cert_sha256=None, verify=True):
                    pass
            unverified = ssl.create_default_context()
            unverified.check_hostname = False
            unverified.verify_mode = ssl.CERT_NONE
            async with client("quic", srv.port, cert_sha256=None, verify=unverified) as conn:
                assert await echo_once(conn) == b"secure"


async def test_hostname_mismatch_is_a_certificate_error(cafile: Path) -> None:
    with anyio.fail_after(10):
        async with server(echo_handler) as srv:
            with pytest.raises(CertificateError, match=r"example\.com"):
                async with client(
                    "quic", srv.port, cert_sha256=None, verify=cafile, server_name="example.com"
                ):
                    pass


async def test_verify_false_and_fingerprint_pinning(kind: str) -> None:
    with anyio.fail_after(10):
        async with server(echo_handler) as srv:
            async with client(kind, srv.port, cert_sha256=None, verify=False) as conn:
                assert await echo_once(conn) == b"secure"
            fingerprint = shared_certificate().fingerprint
            colon_form = ":".join(
                fingerprint[i : i + 2] for i in range(0, len(fingerprint), 2)
            ).upper()
            async with client(kind, srv.port, cert_sha256=[colon_form]) as conn:
                assert await echo_once(conn) == b"secure"
            with pytest.raises(CertificateError, match="not pinned"):
                async with client(kind, srv.port, cert_sha256="00" * 32):
                    pass


async def test_alpn_mismatch_is_a_handshake_error() -> None:
    with anyio.fail_after(10):
        async with server(echo_handler) as srv:
            with pytest.raises(HandshakeError) as info:
                async with client("quic", srv.port, alpn=["something-else"]):
                    pass
    assert not isinstance(info.value, CertificateError)


def test_verify_rejects_a_missing_cafile(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        client("quic", 1, cert_sha256=None, verify=tmp_path / "missing.pem")._configuration()
