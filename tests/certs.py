"""Test certificates: a private CA and server certificates it signs, as PEM files."""

from __future__ import annotations

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class TestCA:
    """A CA that writes ``ca.pem`` in ``folder`` and issues server certificates."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name("rendezvous test CA"))
            .issuer_name(_name("rendezvous test CA"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.certificate.public_bytes(serialization.Encoding.PEM)
        self.path = os.path.join(folder, "ca.pem")
        with open(self.path, "wb") as f:
            f.write(self.pem)

    def issue(self, name: str, serial: int | None = None) -> tuple[str, str, int]:
        """A certificate for 127.0.0.1 and localhost: (cert path, key path, serial)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        serial = serial or x509.random_serial_number()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name("localhost"))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_path = os.path.join(self.folder, f"{name}.pem")
        key_path = os.path.join(self.folder, f"{name}.key")
        with open(cert_path, "wb") as f:
            # the chain follows the certificate, as operators' files have it
            f.write(certificate.public_bytes(serialization.Encoding.PEM) + self.pem)
        with open(key_path, "wb") as f:
            f.write(_key_pem(key))
        return cert_path, key_path, serial


def hand_made(
    cert_key: ec.EllipticCurvePrivateKey,
    extension: bytes | None,
    *,
    signer: ec.EllipticCurvePrivateKey | None = None,
    issuer: str = "x",
    critical: list[x509.ExtensionType] | None = None,
    now: float,
    lifetime: float = 60,
) -> x509.Certificate:
    """A client certificate made by hand (for subject ``x``), valid from a minute
    before ``now`` for ``lifetime`` seconds after it, carrying ``extension`` as the
    libp2p TLS extension when given: to break one rule of the libp2p TLS spec at a time."""
    from rendezvous.peercert import EXTENSION_OID

    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("x"))
        .issuer_name(_name(issuer))
        .public_key(cert_key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime.fromtimestamp(now - 60, datetime.UTC))
        .not_valid_after(datetime.datetime.fromtimestamp(now + lifetime, datetime.UTC))
    )
    if extension is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(EXTENSION_OID, extension), critical=False
        )
    for value in critical or []:
        builder = builder.add_extension(value, critical=True)
    return builder.sign(signer or cert_key, hashes.SHA256())
