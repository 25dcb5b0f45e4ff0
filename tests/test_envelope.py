"""Tests for rendezvous.p2p.envelope."""

from __future__ import annotations

import contextlib

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.addrs import multiaddr_from_text
from rendezvous.p2p.envelope import (
    MAX_ENVELOPE_BYTES,
    MAX_RECORD_ADDRS,
    PEER_RECORD_DOMAIN,
    PEER_RECORD_PAYLOAD_TYPE,
    ROUTING_STATE_DOMAIN,
    ROUTING_STATE_PAYLOAD_TYPE,
    InvalidEnvelope,
    PeerRecord,
    open_envelope,
    open_peer_record,
    seal,
    seal_peer_record,
    signed_bytes,
)
from rendezvous.p2p.keys import KeyType, PrivateKey, PublicKey
from rendezvous.pb import envelope_pb2

SEED = bytes(range(32))
ADDRS = (
    multiaddr_from_text("/ip4/1.2.3.4/tcp/4001"),
    multiaddr_from_text("/dns4/example.com/tcp/443/wss"),
    multiaddr_from_text("/ip6/::1/udp/4001/quic-v1"),
)


class ECDSASigner:
    """A P-256 signer, to check envelopes by keys other than Ed25519."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        data = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public = PublicKey(KeyType.ECDSA, data)

    def public_key_bytes(self) -> bytes:
        return self.public.to_bytes()

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))


def rewrite(data: bytes, **fields: object) -> bytes:
    """Re-serialize an envelope with some fields replaced (None clears one)."""
    message = envelope_pb2.Envelope()
    message.ParseFromString(data)
    for name, value in fields.items():
        if value is None:
            message.ClearField(name)
        elif name == "public_key":
            assert isinstance(value, bytes)
            message.public_key.ParseFromString(value)
        else:
            setattr(message, name, value)
    return message.SerializePartialToString()


class SignedBytesTests(SynchronousTestCase):
    def test_layout(self) -> None:
        self.assertEqual(signed_bytes("ab", b"\x03\x01", b"xyz"), b"\x02ab\x02\x03\x01\x03xyz")
        long = signed_bytes("d", b"t", bytes(200))
        self.assertEqual(long[:5], b"\x01d\x01t\xc8")
        self.assertEqual(long[5:7], b"\x01" + bytes(1))

    def test_wire_fields(self) -> None:
        """Fields 1, 2, 3 and 5 in order (RFC 0002)."""
        key = PrivateKey.from_seed(SEED)
        data = seal(key, "domain", b"\x03\x01", b"payload")
        public = key.public_key_bytes()
        expected = (
            b"\x0a" + bytes((len(public),)) + public + b"\x12\x02\x03\x01\x1a\x07payload\x2a\x40"
        )
        self.assertEqual(data[: len(expected)], expected)
        self.assertEqual(len(data), len(expected) + 64)


class EnvelopeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.key = PrivateKey.from_seed(SEED)
        self.sealed = seal(self.key, "test-domain", b"\x03\x09", b"hello")

    def test_round_trip(self) -> None:
        envelope = open_envelope(self.sealed, "test-domain")
        self.assertEqual(envelope.payload, b"hello")
        self.assertEqual(envelope.payload_type, b"\x03\x09")
        self.assertEqual(envelope.public_key, self.key.public_key())
        self.assertEqual(envelope.peer_id(), self.key.peer_id())
        self.assertEqual(envelope.raw, self.sealed)

    def test_empty_payload(self) -> None:
        sealed = seal(self.key, "d", b"t", b"")
        self.assertEqual(open_envelope(sealed, "d").payload, b"")

    def test_other_key_types(self) -> None:
        signer = ECDSASigner()
        sealed = seal(signer, "d", b"t", b"payload")
        self.assertEqual(open_envelope(sealed, "d").public_key, signer.public)

    @given(st.text(max_size=20), st.binary(min_size=1, max_size=20), st.binary(max_size=200))
    def test_round_trip_property(self, domain: str, payload_type: bytes, payload: bytes) -> None:
        envelope = open_envelope(seal(self.key, domain, payload_type, payload), domain)
        self.assertEqual((envelope.payload_type, envelope.payload), (payload_type, payload))

    def test_wrong_domain(self) -> None:
        self.assertRaises(InvalidEnvelope, open_envelope, self.sealed, "other-domain")
        self.assertRaises(InvalidEnvelope, open_envelope, self.sealed, "")

    def test_tampered(self) -> None:
        envelope = open_envelope(self.sealed, "test-domain")
        bad_signature = bytes((envelope.signature[0] ^ 1,)) + envelope.signature[1:]
        for data in (
            rewrite(self.sealed, signature=bad_signature),
            rewrite(self.sealed, signature=envelope.signature[:-1]),
            rewrite(self.sealed, payload=b"hellO"),
            rewrite(self.sealed, payload_type=b"\x03\x0a"),
            rewrite(self.sealed, public_key=PrivateKey.generate().public_key_bytes()),
        ):
            self.assertRaises(InvalidEnvelope, open_envelope, data, "test-domain")

    def test_missing_fields(self) -> None:
        for field in ("public_key", "payload_type", "signature"):
            data = rewrite(self.sealed, **{field: None})
            self.assertRaises(InvalidEnvelope, open_envelope, data, "test-domain")

    def test_bad_public_key(self) -> None:
        data = rewrite(self.sealed, public_key=b"\x08\x01\x12\x03abc")
        self.assertRaises(InvalidEnvelope, open_envelope, data, "test-domain")
        data = rewrite(self.sealed, public_key=b"\x12\x20" + bytes(32))  # no Type
        self.assertRaises(InvalidEnvelope, open_envelope, data, "test-domain")

    def test_sizes(self) -> None:
        self.assertRaises(InvalidEnvelope, open_envelope, b"", "d")
        big = seal(self.key, "d", b"t", bytes(MAX_ENVELOPE_BYTES))
        self.assertRaises(InvalidEnvelope, open_envelope, big, "d")
        long_type = seal(self.key, "d", bytes(65), b"")
        self.assertRaises(InvalidEnvelope, open_envelope, long_type, "d")

    @given(st.binary(max_size=300))
    def test_garbage(self, data: bytes) -> None:
        with contextlib.suppress(InvalidEnvelope):
            open_envelope(data, "test-domain")
        with contextlib.suppress(InvalidEnvelope):
            open_peer_record(data)

    @given(st.integers(0, 10_000), st.integers(1, 255))
    def test_mutated(self, position: int, flip: int) -> None:
        mutated = bytearray(self.sealed)
        mutated[position % len(mutated)] ^= flip
        with contextlib.suppress(InvalidEnvelope):
            open_envelope(bytes(mutated), "test-domain")


peer_ids = st.binary(min_size=32, max_size=32).map(lambda digest: b"\x12\x20" + digest)
addr_lists = st.lists(st.sampled_from(ADDRS), max_size=MAX_RECORD_ADDRS).map(tuple)


class PeerRecordTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.key = PrivateKey.from_seed(SEED)
        self.record = PeerRecord(self.key.peer_id(), 7, ADDRS)

    @given(peer_ids, st.integers(0, 2**64 - 1), addr_lists)
    def test_codec_round_trip(self, peer_id: bytes, seq: int, addrs: tuple[bytes, ...]) -> None:
        record = PeerRecord(peer_id, seq, addrs)
        self.assertEqual(PeerRecord.decode(record.encode()), record)

    def test_wire_fields(self) -> None:
        record = PeerRecord(b"\x12\x20" + bytes(32), 300, (ADDRS[0],))
        expected = (
            b"\x0a\x22\x12\x20" + bytes(32) + b"\x10\xac\x02" + b"\x1a\x0a\x0a\x08" + ADDRS[0]
        )
        self.assertEqual(record.encode(), expected)

    def test_go_format(self) -> None:
        sealed = seal_peer_record(self.key, self.record)
        record, envelope = open_peer_record(sealed)
        self.assertEqual(record, self.record)
        self.assertEqual(envelope.payload_type, PEER_RECORD_PAYLOAD_TYPE)
        self.assertEqual(envelope.raw, sealed)
        self.assertEqual(open_envelope(sealed, PEER_RECORD_DOMAIN).payload, record.encode())

    def test_rust_format(self) -> None:
        sealed = seal(
            self.key, ROUTING_STATE_DOMAIN, ROUTING_STATE_PAYLOAD_TYPE, self.record.encode()
        )
        record, envelope = open_peer_record(sealed)
        self.assertEqual(record, self.record)
        self.assertEqual(envelope.payload_type, ROUTING_STATE_PAYLOAD_TYPE)

    def test_domain_must_match_payload_type(self) -> None:
        payload = self.record.encode()
        for domain, payload_type in (
            (PEER_RECORD_DOMAIN, ROUTING_STATE_PAYLOAD_TYPE),
            (ROUTING_STATE_DOMAIN, PEER_RECORD_PAYLOAD_TYPE),
            ("libp2p-relay-rsvp", PEER_RECORD_PAYLOAD_TYPE),
        ):
            sealed = seal(self.key, domain, payload_type, payload)
            self.assertRaises(InvalidEnvelope, open_peer_record, sealed)

    def test_not_a_peer_record(self) -> None:
        for payload_type in (b"\x03\x02", b"\x01", b"/libp2p/other"):
            sealed = seal(self.key, PEER_RECORD_DOMAIN, payload_type, self.record.encode())
            self.assertRaises(InvalidEnvelope, open_peer_record, sealed)

    def test_mismatched_peer_id(self) -> None:
        other = PeerRecord(PrivateKey.generate().peer_id(), 1, ADDRS)
        self.assertRaises(InvalidEnvelope, open_peer_record, seal_peer_record(self.key, other))

    def test_other_key_types(self) -> None:
        signer = ECDSASigner()
        record = PeerRecord(signer.public.peer_id(), 1, ADDRS)
        self.assertEqual(open_peer_record(seal_peer_record(signer, record))[0], record)

    def test_address_limits(self) -> None:
        many = PeerRecord(self.key.peer_id(), 1, (ADDRS[0],) * (MAX_RECORD_ADDRS + 1))
        sealed = seal_peer_record(self.key, many)
        self.assertRaises(InvalidEnvelope, open_peer_record, sealed)
        self.assertEqual(open_peer_record(sealed, max_addrs=64)[0], many)
        self.assertRaises(
            InvalidEnvelope, open_peer_record, seal_peer_record(self.key, self.record), 2
        )

    def test_bad_payloads(self) -> None:
        peer_id = self.key.peer_id()
        for payload in (
            PeerRecord(peer_id, 1, (b"\x04\x01\x02",)).encode(),  # truncated /ip4
            PeerRecord(peer_id, 1, (b"",)).encode(),
            PeerRecord(b"", 1).encode(),
            PeerRecord(b"\x12\x20" + bytes(31), 1).encode(),
            b"\xff\xff",
            b"\x10",
        ):
            sealed = seal(self.key, PEER_RECORD_DOMAIN, PEER_RECORD_PAYLOAD_TYPE, payload)
            self.assertRaises(InvalidEnvelope, open_peer_record, sealed)
            self.assertRaises(InvalidEnvelope, PeerRecord.decode, payload)

    def test_seq_range(self) -> None:
        self.assertRaises(ValueError, PeerRecord, b"", -1)
        self.assertRaises(ValueError, PeerRecord, b"", 2**64)

    @given(st.binary(max_size=200))
    def test_garbage_records(self, payload: bytes) -> None:
        with contextlib.suppress(InvalidEnvelope):
            PeerRecord.decode(payload)
        sealed = seal(self.key, PEER_RECORD_DOMAIN, PEER_RECORD_PAYLOAD_TYPE, payload)
        with contextlib.suppress(InvalidEnvelope):
            open_peer_record(sealed)
