"""libp2p TLS certificates: made for an identity, verified, and every way one is refused."""

from __future__ import annotations

import contextlib
import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from rendezvous.p2p.keys import KeyType, PrivateKey, PublicKey
from rendezvous.peercert import (
    CLOCK_SKEW,
    DEFAULT_LIFETIME,
    EXTENSION_OID,
    SIGNATURE_PREFIX,
    PeerCertificateError,
    decode_signed_key,
    encode_signed_key,
    make_certificate,
    verify_certificate,
)

from .certs import hand_made

NOW = 1_800_000_000.0

PY_LIBP2P_SECP256K1 = (
    "16Uiu2HAmUJbk8i87GNx2zEfXzk2yEJ9iHAKgwDAd228CEGNt6Hxr",
    b"""\
-----BEGIN CERTIFICATE-----
MIIBuDCCAV+gAwIBAgIIXZTxmHauakQwCgYIKoZIzj0EAwIwETEPMA0GA1UEAwwG
bGlicDJwMCAXDTI2MTIwNDE3NTMwOVoYDzIxMjYxMTEwMTc1MzA5WjARMQ8wDQYD
VQQDDAZsaWJwMnAwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAT94NGjGpatAx2T
GT+kAeccgNohTMk3Wb4T0WeUVDt/mQAyPbDN0PdDXiOUW8HWrcJq4c40Z5K7f7KU
o6s0EmILo4GeMIGbMAkGA1UdEwQCMAAwCwYDVR0PBAQDAgeAMIGABgorBgEEAYOi
WgEBBHIwcAQlCAISIQPogdBU6WLa9/zGM+zjZKgx0FG8pjE2kuQsSZBureN1PwRH
MEUCIQCagSRTW7zhWgBEULllBshPXnigHhxshny3dq1zuOi+wwIgHD3ikZTupxme
kfyp/euGSz2XZ01fVRBPKFdnBBjn+dEwCgYIKoZIzj0EAwIDRwAwRAIhALuAtM+3
Tde+P4N8atWygxAEioAFd3QKCjb02j0OtnKqAh8LVAqNM0cD6+XZN0fNuzbqZR85
bI9t/KD8/0GUib5d
-----END CERTIFICATE-----
""",
)
"""A certificate py-libp2p 0.8 made for a secp256k1 identity (valid 2026-12-04 to 2126)."""


class OtherSigner:
    """A libp2p identity of another key type (the project signs with Ed25519 only)."""

    def __init__(self, key_type: KeyType) -> None:
        self.key_type = key_type
        if key_type is KeyType.SECP256K1:
            self.key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = ec.generate_private_key(
                ec.SECP256K1()
            )
            data = self.key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
            )
        else:
            self.key = (
                ec.generate_private_key(ec.SECP256R1())
                if key_type is KeyType.ECDSA
                else rsa.generate_private_key(65537, 2048)
            )
            data = self.key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        self.public = PublicKey(key_type, data)

    def public_key_bytes(self) -> bytes:
        return self.public.to_bytes()

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))


def _spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def build(
    cert_key: ec.EllipticCurvePrivateKey,
    extension: bytes | None,
    *,
    signer: ec.EllipticCurvePrivateKey | None = None,
    issuer: str = "x",
    critical: list[x509.ExtensionType] | None = None,
    now: float = NOW,
) -> x509.Certificate:
    """A certificate made by hand, to break one rule at a time."""
    return hand_made(cert_key, extension, signer=signer, issuer=issuer, critical=critical, now=now)


class MakeAndVerifyTests(TestCase):
    def test_ed25519_identity(self) -> None:
        identity = PrivateKey.generate()
        certificate, key = make_certificate(identity, NOW)
        self.assertEqual(verify_certificate(certificate, NOW), identity.public_key())
        self.assertEqual(verify_certificate(certificate, NOW).peer_id(), identity.peer_id())
        self.assertIsInstance(key.curve, ec.SECP256R1)
        self.assertEqual(certificate.public_key(), key.public_key())
        (name,) = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        self.assertEqual(name.value, identity.peer_id_text())
        extension = certificate.extensions.get_extension_for_oid(EXTENSION_OID)
        self.assertFalse(extension.critical)

    def test_other_key_types(self) -> None:
        for key_type in (KeyType.SECP256K1, KeyType.ECDSA, KeyType.RSA):
            identity = OtherSigner(key_type)
            certificate, _ = make_certificate(identity, NOW)
            self.assertEqual(verify_certificate(certificate, NOW), identity.public, key_type)

    def test_a_certificate_key_of_another_type(self) -> None:
        identity = PrivateKey.generate()
        cert_key = Ed25519PrivateKey.generate()
        spki = cert_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        value = encode_signed_key(
            identity.public_key_bytes(), identity.sign(SIGNATURE_PREFIX + spki)
        )
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(cert_key.public_key())
            .serial_number(1)
            .not_valid_before(datetime.datetime.fromtimestamp(NOW - 60, datetime.UTC))
            .not_valid_after(datetime.datetime.fromtimestamp(NOW + 60, datetime.UTC))
            .add_extension(x509.UnrecognizedExtension(EXTENSION_OID, value), critical=True)
            .sign(cert_key, None)
        )
        self.assertEqual(verify_certificate(certificate, NOW), identity.public_key())

    def test_made_by_py_libp2p(self) -> None:
        peer_id, pem = PY_LIBP2P_SECP256K1
        certificate = x509.load_pem_x509_certificate(pem)
        self.assertEqual(verify_certificate(certificate, NOW).peer_id_text(), peer_id)

    def test_validity_window(self) -> None:
        certificate, _ = make_certificate(PrivateKey.generate(), NOW, lifetime=600)
        verify_certificate(certificate, NOW - CLOCK_SKEW)  # clock skew allowed
        verify_certificate(certificate, NOW + 600)
        with self.assertRaises(PeerCertificateError) as raised:
            verify_certificate(certificate, NOW + 601)
        self.assertEqual(raised.exception.reason, PeerCertificateError.EXPIRED)
        self.assertIn("expired at", str(raised.exception))
        with self.assertRaises(PeerCertificateError) as raised:
            verify_certificate(certificate, NOW - CLOCK_SKEW - 1)
        self.assertEqual(raised.exception.reason, PeerCertificateError.NOT_YET_VALID)

    def test_default_lifetime(self) -> None:
        certificate, _ = make_certificate(PrivateKey.generate(), NOW)
        verify_certificate(certificate, NOW + DEFAULT_LIFETIME)
        self.assertRaises(
            PeerCertificateError, verify_certificate, certificate, NOW + DEFAULT_LIFETIME + 1
        )

    def test_given_certificate_key(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate, same = make_certificate(PrivateKey.generate(), NOW, key=key)
        self.assertIs(same, key)
        self.assertEqual(certificate.public_key(), key.public_key())


class RefusalTests(TestCase):
    def assertRefused(self, certificate: x509.Certificate, reason: str) -> str:
        with self.assertRaises(PeerCertificateError) as raised:
            verify_certificate(certificate, NOW)
        self.assertEqual(raised.exception.reason, reason, str(raised.exception))
        return str(raised.exception)

    def test_wrong_signature(self) -> None:
        identity = PrivateKey.generate()
        key = ec.generate_private_key(ec.SECP256R1())
        signature = bytearray(identity.sign(SIGNATURE_PREFIX + _spki(key)))
        signature[0] ^= 1
        value = encode_signed_key(identity.public_key_bytes(), bytes(signature))
        text = self.assertRefused(build(key, value), PeerCertificateError.BAD_SIGNATURE)
        self.assertIn("does not match", text)

    def test_signature_without_the_prefix(self) -> None:
        identity = PrivateKey.generate()
        key = ec.generate_private_key(ec.SECP256R1())
        value = encode_signed_key(identity.public_key_bytes(), identity.sign(_spki(key)))
        self.assertRefused(build(key, value), PeerCertificateError.BAD_SIGNATURE)

    def test_signed_by_another_identity(self) -> None:
        """The extension names one peer's key but another peer signed it."""
        victim, stranger = PrivateKey.generate(), PrivateKey.generate()
        key = ec.generate_private_key(ec.SECP256R1())
        value = encode_signed_key(
            victim.public_key_bytes(), stranger.sign(SIGNATURE_PREFIX + _spki(key))
        )
        self.assertRefused(build(key, value), PeerCertificateError.BAD_SIGNATURE)

    def test_extension_of_a_certificate_for_another_key(self) -> None:
        """A peer's genuine extension, copied into a certificate with a stranger's key."""
        victim = PrivateKey.generate()
        genuine, _ = make_certificate(victim, NOW)
        copied = genuine.extensions.get_extension_for_oid(EXTENSION_OID).value
        assert isinstance(copied, x509.UnrecognizedExtension)
        stolen = build(ec.generate_private_key(ec.SECP256R1()), copied.value)
        self.assertRefused(stolen, PeerCertificateError.BAD_SIGNATURE)

    def test_no_extension(self) -> None:
        text = self.assertRefused(
            build(ec.generate_private_key(ec.SECP256R1()), None),
            PeerCertificateError.NO_EXTENSION,
        )
        self.assertIn("1.3.6.1.4.1.53594.1.1", text)

    def test_not_self_signed(self) -> None:
        identity = PrivateKey.generate()
        key = ec.generate_private_key(ec.SECP256R1())
        value = encode_signed_key(
            identity.public_key_bytes(), identity.sign(SIGNATURE_PREFIX + _spki(key))
        )
        other = ec.generate_private_key(ec.SECP256R1())
        self.assertRefused(build(key, value, signer=other), PeerCertificateError.NOT_SELF_SIGNED)
        self.assertRefused(build(key, value, issuer="a CA"), PeerCertificateError.NOT_SELF_SIGNED)

    def test_unknown_critical_extension(self) -> None:
        identity = PrivateKey.generate()
        key = ec.generate_private_key(ec.SECP256R1())
        value = encode_signed_key(
            identity.public_key_bytes(), identity.sign(SIGNATURE_PREFIX + _spki(key))
        )
        odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4"), b"\x05\x00")
        self.assertRefused(
            build(key, value, critical=[odd]), PeerCertificateError.CRITICAL_EXTENSION
        )
        # understood critical extensions are fine
        constraints = x509.BasicConstraints(ca=False, path_length=None)
        self.assertEqual(
            verify_certificate(build(key, value, critical=[constraints]), NOW),
            identity.public_key(),
        )

    def test_bad_libp2p_key(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        for public_key in (b"", b"\x08\x01\x12\x03abc", b"\x08\x09\x12\x00"):
            value = encode_signed_key(public_key, b"sig")
            self.assertRefused(build(key, value), PeerCertificateError.BAD_KEY)

    def test_malformed_extension(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        for value in (b"", b"\x30\x00", b"\x04\x00", b"\x30\x02\x04\x00", b"garbage"):
            self.assertRefused(build(key, value), PeerCertificateError.MALFORMED)


class SignedKeyTests(TestCase):
    def test_round_trip(self) -> None:
        for sizes in [(0, 0), (36, 64), (127, 128), (300, 256), (1000, 70)]:
            public_key, signature = b"k" * sizes[0], b"s" * sizes[1]
            der = encode_signed_key(public_key, signature)
            self.assertEqual(decode_signed_key(der), (public_key, signature))

    def test_known_encoding(self) -> None:
        self.assertEqual(encode_signed_key(b"ab", b"c"), b"\x30\x07\x04\x02ab\x04\x01c")
        self.assertEqual(encode_signed_key(b"k" * 200, b"")[:6], b"\x30\x81\xcd\x04\x81\xc8")

    def test_strict(self) -> None:
        good = encode_signed_key(b"ab", b"c")
        for bad in [
            good + b"\x00",  # trailing bytes
            good[:-1],  # truncated
            b"\x31" + good[1:],  # a SET
            b"\x30\x0a\x04\x02ab\x04\x01c\x04\x01d",  # three items (length adjusted)
            b"\x30\x04\x04\x02ab",  # one item
            b"\x30\x81\x07\x04\x02ab\x04\x01c",  # long form for a short length
            b"\x30\x80\x04\x02ab\x04\x01c\x00\x00",  # indefinite length
            b"\x30\x07\x04\x02ab\x02\x01c",  # an INTEGER
            b"\x30\x83\x00\x00\x07\x04\x02ab\x04\x01c",  # three length bytes
            b"\x30",
            b"",
        ]:
            self.assertRaises(ValueError, decode_signed_key, bad)

    def test_size_limit(self) -> None:
        self.assertRaises(ValueError, decode_signed_key, encode_signed_key(b"k" * 9000, b""))

    @given(st.binary(max_size=300))
    def test_any_bytes(self, data: bytes) -> None:
        """Any bytes decode or raise ValueError, and what decodes encodes back to them."""
        try:
            public_key, signature = decode_signed_key(data)
        except ValueError:
            return
        self.assertEqual(encode_signed_key(public_key, signature), data)


_SEED_CERTIFICATE = make_certificate(PrivateKey.from_seed(bytes(32)), NOW)[0].public_bytes(
    serialization.Encoding.DER
)


class MutatedCertificateTests(TestCase):
    """Whatever a stranger's certificate holds, checking it gives a key or a
    `PeerCertificateError`: nothing else escapes."""

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.tuples(st.integers(0, len(_SEED_CERTIFICATE) - 1), st.integers(0, 255)),
            min_size=1,
            max_size=4,
        ),
        st.floats(NOW - 1e9, NOW + 1e9),
    )
    def test_flipped_bytes(self, changes: list[tuple[int, int]], now: float) -> None:
        data = bytearray(_SEED_CERTIFICATE)
        for offset, value in changes:
            data[offset] = value
        try:
            certificate = x509.load_der_x509_certificate(bytes(data))
        except (ValueError, x509.InvalidVersion):
            return  # refused as malformed (see `rendezvous.live.peertls`)
        with contextlib.suppress(PeerCertificateError):
            verify_certificate(certificate, now)
