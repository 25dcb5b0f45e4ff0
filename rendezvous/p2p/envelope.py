"""Signed envelopes (libp2p RFC 0002) and peer records (RFC 0003).

An envelope carries a public key, a payload type, a payload and a signature over
``uvarint(len(domain)) || domain || uvarint(len(type)) || type ||
uvarint(len(payload)) || payload``; the domain is implied by the use and never
sent. A peer record is signed by go and js in domain ``libp2p-peer-record``
with payload type ``03 01``, and by rust in domain ``libp2p-routing-state``
with payload type ``/libp2p/routing-state-record``: both are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from google.protobuf.message import DecodeError

from rendezvous.addrs import InvalidMultiaddr, validate_multiaddr
from rendezvous.p2p.keys import InvalidKeyError, PublicKey
from rendezvous.pb import crypto_pb2, envelope_pb2
from rendezvous.peerid import InvalidPeerId, validate_peer_id
from rendezvous.varint import encode_uvarint

__all__ = [
    "MAX_ENVELOPE_BYTES",
    "MAX_RECORD_ADDRS",
    "PEER_RECORD_DOMAIN",
    "PEER_RECORD_PAYLOAD_TYPE",
    "ROUTING_STATE_DOMAIN",
    "ROUTING_STATE_PAYLOAD_TYPE",
    "Envelope",
    "InvalidEnvelope",
    "PeerRecord",
    "Signer",
    "open_envelope",
    "open_peer_record",
    "seal",
    "seal_peer_record",
    "signed_bytes",
]

MAX_ENVELOPE_BYTES: Final = 8 * 1024
MAX_RECORD_ADDRS: Final = 32
MAX_PAYLOAD_TYPE_BYTES: Final = 64

PEER_RECORD_DOMAIN: Final = "libp2p-peer-record"
PEER_RECORD_PAYLOAD_TYPE: Final = b"\x03\x01"
ROUTING_STATE_DOMAIN: Final = "libp2p-routing-state"
ROUTING_STATE_PAYLOAD_TYPE: Final = b"/libp2p/routing-state-record"

_PEER_RECORD_DOMAINS: Final = {
    PEER_RECORD_PAYLOAD_TYPE: PEER_RECORD_DOMAIN,
    ROUTING_STATE_PAYLOAD_TYPE: ROUTING_STATE_DOMAIN,
}
_MAX_SEQ: Final = 2**64 - 1


class InvalidEnvelope(ValueError):
    """The bytes are not a valid signed envelope or peer record for this use."""


class Signer(Protocol):
    """A private key able to seal envelopes (`rendezvous.p2p.keys.PrivateKey`)."""

    def public_key_bytes(self) -> bytes:
        """The serialized libp2p ``PublicKey`` protobuf."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` with the key."""
        ...


@dataclass(frozen=True, slots=True)
class Envelope:
    """An opened, verified envelope; ``raw`` holds the bytes as received."""

    public_key: PublicKey
    payload_type: bytes
    payload: bytes
    signature: bytes
    raw: bytes

    def peer_id(self) -> bytes:
        """The peer id (multihash bytes) of the signing key."""
        return self.public_key.peer_id()


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """A peer's id, sequence number and binary multiaddrs."""

    peer_id: bytes
    seq: int
    addrs: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.seq <= _MAX_SEQ:
            raise ValueError("a peer record seq is a uint64")

    def encode(self) -> bytes:
        """The ``PeerRecord`` protobuf."""
        message = envelope_pb2.PeerRecord(peer_id=self.peer_id, seq=self.seq)
        for addr in self.addrs:
            message.addresses.add(multiaddr=addr)
        return message.SerializeToString(deterministic=True)

    @classmethod
    def decode(cls, data: bytes, max_addrs: int = MAX_RECORD_ADDRS) -> PeerRecord:
        """Parse and validate a ``PeerRecord`` protobuf; raises `InvalidEnvelope`."""
        message = envelope_pb2.PeerRecord()
        try:
            message.ParseFromString(data)
        except DecodeError:
            raise InvalidEnvelope("malformed peer record") from None
        try:
            validate_peer_id(message.peer_id)
        except InvalidPeerId as error:
            raise InvalidEnvelope(f"peer record with a bad peer id: {error}") from None
        if len(message.addresses) > max_addrs:
            raise InvalidEnvelope(f"peer record with more than {max_addrs} addresses")
        addrs = tuple(info.multiaddr for info in message.addresses)
        for addr in addrs:
            try:
                validate_multiaddr(addr)
            except InvalidMultiaddr as error:
                raise InvalidEnvelope(f"peer record with a bad address: {error}") from None
        return cls(message.peer_id, message.seq, addrs)


def signed_bytes(domain: str, payload_type: bytes, payload: bytes) -> bytes:
    """The bytes an envelope signature covers."""
    encoded_domain = domain.encode("utf-8")
    return b"".join(
        (
            encode_uvarint(len(encoded_domain)),
            encoded_domain,
            encode_uvarint(len(payload_type)),
            payload_type,
            encode_uvarint(len(payload)),
            payload,
        )
    )


def seal(signer: Signer, domain: str, payload_type: bytes, payload: bytes) -> bytes:
    """Sign ``payload`` in ``domain`` and return the serialized envelope."""
    public_key = crypto_pb2.PublicKey()
    public_key.ParseFromString(signer.public_key_bytes())
    signature = signer.sign(signed_bytes(domain, payload_type, payload))
    return envelope_pb2.Envelope(
        public_key=public_key,
        payload_type=payload_type,
        payload=payload,
        signature=signature,
    ).SerializeToString(deterministic=True)


def open_envelope(data: bytes, domain: str) -> Envelope:
    """Parse ``data`` and verify its signature in ``domain``; raises `InvalidEnvelope`."""
    envelope = _parse(data)
    _verify(envelope, domain)
    return envelope


def seal_peer_record(signer: Signer, record: PeerRecord) -> bytes:
    """Seal a peer record the go/js way (``libp2p-peer-record``, type ``03 01``)."""
    return seal(signer, PEER_RECORD_DOMAIN, PEER_RECORD_PAYLOAD_TYPE, record.encode())


def open_peer_record(data: bytes, max_addrs: int = MAX_RECORD_ADDRS) -> tuple[PeerRecord, Envelope]:
    """Open a signed peer record in the go/js or the rust format.

    The record's peer id must be the signing key's. Raises `InvalidEnvelope`.
    """
    envelope = _parse(data)
    domain = _PEER_RECORD_DOMAINS.get(envelope.payload_type)
    if domain is None:
        raise InvalidEnvelope(f"payload type {envelope.payload_type!r} is not a peer record")
    _verify(envelope, domain)
    record = PeerRecord.decode(envelope.payload, max_addrs)
    if record.peer_id != envelope.peer_id():
        raise InvalidEnvelope("peer record peer id differs from the signing key's")
    return record, envelope


def _parse(data: bytes) -> Envelope:
    if not data:
        raise InvalidEnvelope("empty envelope")
    if len(data) > MAX_ENVELOPE_BYTES:
        raise InvalidEnvelope(f"envelope longer than {MAX_ENVELOPE_BYTES} bytes")
    message = envelope_pb2.Envelope()
    try:
        message.ParseFromString(data)
    except DecodeError:
        raise InvalidEnvelope("malformed envelope") from None
    if not message.HasField("public_key"):
        raise InvalidEnvelope("envelope without a public key")
    if not message.payload_type:
        raise InvalidEnvelope("envelope without a payload type")
    if len(message.payload_type) > MAX_PAYLOAD_TYPE_BYTES:
        raise InvalidEnvelope("envelope payload type too long")
    if not message.signature:
        raise InvalidEnvelope("envelope without a signature")
    try:
        public_key = PublicKey(message.public_key.Type, message.public_key.Data)
    except InvalidKeyError as error:
        raise InvalidEnvelope(f"envelope with a bad public key: {error}") from None
    return Envelope(public_key, message.payload_type, message.payload, message.signature, data)


def _verify(envelope: Envelope, domain: str) -> None:
    signed = signed_bytes(domain, envelope.payload_type, envelope.payload)
    if not envelope.public_key.verify(signed, envelope.signature):
        raise InvalidEnvelope(f"envelope signature does not verify in domain {domain!r}")
