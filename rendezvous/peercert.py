"""libp2p TLS certificates (libp2p/specs tls/tls.md): make one for an identity, verify one.

The certificate is self-signed by a fresh key of its own. A non-critical extension
(`EXTENSION_OID`) holds the DER ``SEQUENCE { publicKey OCTET STRING, signature OCTET
STRING }``: the host's serialized libp2p ``PublicKey`` and its signature over
`SIGNATURE_PREFIX` followed by the DER SubjectPublicKeyInfo of the certificate's key.
A peer that completes a TLS handshake with such a certificate has shown it holds the
certificate's key, which the host key vouches for: the session is that host's peer id.

Pure code: the time is a parameter (Unix seconds), nothing reads a clock.
"""

from __future__ import annotations

import datetime
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtensionOID, NameOID

from rendezvous.p2p.envelope import Signer
from rendezvous.p2p.keys import InvalidKeyError, PublicKey, peer_id_from_public_key_bytes
from rendezvous.peerid import peer_id_to_text

__all__ = [
    "EXTENSION_OID",
    "SIGNATURE_PREFIX",
    "PeerCertificateError",
    "decode_signed_key",
    "encode_signed_key",
    "make_certificate",
    "verify_certificate",
]

EXTENSION_OID: Final = x509.ObjectIdentifier("1.3.6.1.4.1.53594.1.1")
SIGNATURE_PREFIX: Final = b"libp2p-tls-handshake:"
CLOCK_SKEW: Final = 3600.0
"""A new certificate is valid from this many seconds before it is made."""
DEFAULT_LIFETIME: Final = 7 * 86400.0
MAX_SIGNED_KEY_BYTES: Final = 8192

_SEQUENCE: Final = 0x30
_OCTET_STRING: Final = 0x04
_UNDERSTOOD_CRITICAL: Final = frozenset(
    (EXTENSION_OID, ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE)
)
"""Critical extensions a certificate may carry; any other refuses it (tls.md)."""


class PeerCertificateError(ValueError):
    """A certificate that does not prove a libp2p identity; ``reason`` is a short
    label (for metrics) and the message says what is wrong."""

    MALFORMED: Final = "malformed"
    NOT_YET_VALID: Final = "not_yet_valid"
    EXPIRED: Final = "expired"
    NOT_SELF_SIGNED: Final = "not_self_signed"
    NO_EXTENSION: Final = "no_extension"
    CRITICAL_EXTENSION: Final = "critical_extension"
    BAD_KEY: Final = "bad_key"
    BAD_SIGNATURE: Final = "bad_signature"

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


def make_certificate(
    identity: Signer,
    now: float,
    lifetime: float = DEFAULT_LIFETIME,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate proving ``identity``, valid from an hour before ``now`` (Unix
    seconds, for clock skew) for ``lifetime`` seconds after it, and its key (a new
    ECDSA P-256 key unless ``key`` is given)."""
    if key is None:
        key = ec.generate_private_key(ec.SECP256R1())
    public_key = identity.public_key_bytes()
    signature = identity.sign(SIGNATURE_PREFIX + _spki(key.public_key()))
    name = x509.Name(
        [
            x509.NameAttribute(
                NameOID.COMMON_NAME, peer_id_to_text(peer_id_from_public_key_bytes(public_key))
            )
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_datetime(now - CLOCK_SKEW))
        .not_valid_after(_datetime(now + lifetime))
        .add_extension(
            x509.UnrecognizedExtension(EXTENSION_OID, encode_signed_key(public_key, signature)),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def verify_certificate(certificate: x509.Certificate, now: float) -> PublicKey:
    """The libp2p public key ``certificate`` proves at ``now`` (Unix seconds); raises
    `PeerCertificateError` saying why it proves none."""
    try:
        not_before = certificate.not_valid_before_utc.timestamp()
        not_after = certificate.not_valid_after_utc.timestamp()
    except ValueError as e:
        raise PeerCertificateError(PeerCertificateError.MALFORMED, f"bad validity: {e}") from None
    if now < not_before:
        raise PeerCertificateError(
            PeerCertificateError.NOT_YET_VALID,
            f"certificate not valid before {_text(not_before)}",
        )
    if now > not_after:
        raise PeerCertificateError(
            PeerCertificateError.EXPIRED, f"certificate expired at {_text(not_after)}"
        )
    try:
        extensions = certificate.extensions
        cert_key = certificate.public_key()
    except Exception as e:  # a stranger's bytes: whatever cryptography cannot parse
        raise PeerCertificateError(PeerCertificateError.MALFORMED, f"unreadable: {e}") from None
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        raise PeerCertificateError(
            PeerCertificateError.NOT_SELF_SIGNED, "certificate is not self-signed by its key"
        ) from None
    value: bytes | None = None
    for extension in extensions:
        if extension.oid == EXTENSION_OID:
            if not isinstance(extension.value, x509.UnrecognizedExtension):
                raise PeerCertificateError(PeerCertificateError.MALFORMED, "odd libp2p extension")
            value = extension.value.value
        elif extension.critical and extension.oid not in _UNDERSTOOD_CRITICAL:
            raise PeerCertificateError(
                PeerCertificateError.CRITICAL_EXTENSION,
                f"unknown critical extension {extension.oid.dotted_string}",
            )
    if value is None:
        raise PeerCertificateError(
            PeerCertificateError.NO_EXTENSION,
            f"no libp2p public key extension ({EXTENSION_OID.dotted_string})",
        )
    try:
        public_key_bytes, signature = decode_signed_key(value)
    except ValueError as e:
        raise PeerCertificateError(
            PeerCertificateError.MALFORMED, f"bad libp2p extension: {e}"
        ) from None
    try:
        public_key = PublicKey.from_bytes(public_key_bytes)
    except InvalidKeyError as e:
        raise PeerCertificateError(PeerCertificateError.BAD_KEY, f"libp2p key: {e}") from None
    if not public_key.verify(SIGNATURE_PREFIX + _spki(cert_key), signature):
        raise PeerCertificateError(
            PeerCertificateError.BAD_SIGNATURE,
            "the libp2p key's signature does not match the certificate's key",
        )
    return public_key


def encode_signed_key(public_key: bytes, signature: bytes) -> bytes:
    """The DER ``SignedKey`` of the libp2p extension."""
    return _tlv(_SEQUENCE, _tlv(_OCTET_STRING, public_key) + _tlv(_OCTET_STRING, signature))


def decode_signed_key(der: bytes) -> tuple[bytes, bytes]:
    """(public key, signature) from a DER ``SignedKey``; raises ValueError unless the
    bytes are exactly one strict DER SEQUENCE of two OCTET STRINGs."""
    if len(der) > MAX_SIGNED_KEY_BYTES:
        raise ValueError(f"longer than {MAX_SIGNED_KEY_BYTES} bytes")
    body, end = _read_tlv(der, 0, _SEQUENCE)
    if end != len(der):
        raise ValueError("bytes after the SEQUENCE")
    public_key, offset = _read_tlv(body, 0, _OCTET_STRING)
    signature, offset = _read_tlv(body, offset, _OCTET_STRING)
    if offset != len(body):
        raise ValueError("more than two items in the SEQUENCE")
    return public_key, signature


def _tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def _read_tlv(data: bytes, offset: int, tag: int) -> tuple[bytes, int]:
    """The content of the DER item of ``tag`` at ``offset``, and the offset after it."""
    if offset + 2 > len(data):
        raise ValueError("truncated")
    if data[offset] != tag:
        raise ValueError(f"expected tag 0x{tag:02x}, found 0x{data[offset]:02x}")
    first = data[offset + 1]
    offset += 2
    if first < 0x80:
        size = first
    else:
        count = first & 0x7F
        if count == 0 or count > 2:
            raise ValueError("unsupported length encoding")
        if offset + count > len(data):
            raise ValueError("truncated")
        size = int.from_bytes(data[offset : offset + count], "big")
        if size < 0x80 or data[offset] == 0:
            raise ValueError("length not minimally encoded")
        offset += count
    end = offset + size
    if end > len(data):
        raise ValueError("truncated")
    return data[offset:end], end


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    """The DER SubjectPublicKeyInfo of a certificate key."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _datetime(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def _text(seconds: float) -> str:
    return _datetime(seconds).strftime("%Y-%m-%d %H:%M:%S UTC")
