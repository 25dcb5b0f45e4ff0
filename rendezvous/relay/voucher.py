"""Reservation vouchers: a `Voucher` in a signed envelope (domain ``libp2p-relay-rsvp``,
payload type ``03 02``), testifying the relay serves the reserving peer until expiration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from google.protobuf.message import DecodeError

from rendezvous.p2p.envelope import InvalidEnvelope, Signer, open_envelope, seal
from rendezvous.pb.circuit_pb2 import ReservationVoucher

VOUCHER_DOMAIN: Final = "libp2p-relay-rsvp"
VOUCHER_PAYLOAD_TYPE: Final = b"\x03\x02"


@dataclass(frozen=True, slots=True)
class Voucher:
    relay: bytes
    """The relay's peer id (multihash bytes)."""
    peer: bytes
    """The reserving peer's id."""
    expiration: int
    """Unix time, seconds."""

    def encode(self) -> bytes:
        return ReservationVoucher(
            relay=self.relay, peer=self.peer, expiration=self.expiration
        ).SerializeToString(deterministic=True)


def seal_voucher(signer: Signer, voucher: Voucher) -> bytes:
    """The voucher signed by the relay's key, as envelope bytes."""
    return seal(signer, VOUCHER_DOMAIN, VOUCHER_PAYLOAD_TYPE, voucher.encode())


def open_voucher(data: bytes) -> Voucher:
    """Verify a voucher envelope; its relay must be the signer. Raises `InvalidEnvelope`."""
    envelope = open_envelope(data, VOUCHER_DOMAIN)
    if envelope.payload_type != VOUCHER_PAYLOAD_TYPE:
        raise InvalidEnvelope("not a relay voucher")
    message = ReservationVoucher()
    try:
        message.ParseFromString(envelope.payload)
    except DecodeError:
        raise InvalidEnvelope("malformed voucher") from None
    for field in ("relay", "peer", "expiration"):
        if not message.HasField(field):
            raise InvalidEnvelope(f"voucher without {field}")
    if message.relay != envelope.peer_id():
        raise InvalidEnvelope("voucher not signed by its relay")
    return Voucher(message.relay, message.peer, message.expiration)
