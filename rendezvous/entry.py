"""A registration's entry: the live dialect's ``Register``/``Unregister`` bytes of it.

The one serialisation of a registration: the live codec writes it into every
announcement, snapshot and DISCOVER reply, and the Redis store keeps and publishes it.
It is made once per registration and cached on it (``Registration.wire``).
"""

from __future__ import annotations

from rendezvous.model import Registration
from rendezvous.varint import encode_uvarint


def field(number: int, wire_type: int, payload: bytes) -> bytes:
    """One protobuf field: its key, then ``payload`` with its length (length-delimited)."""
    return encode_uvarint(number << 3 | wire_type) + encode_uvarint(len(payload)) + payload


def entry_bytes(registration: Registration) -> bytes:
    """The ``Register``/``Unregister`` entry of a registration (both share one layout)."""
    wire = registration.wire
    if wire is None:
        peer = registration.peer
        peer_bytes = field(1, 2, peer.id.encode())
        for addr in peer.addrs:
            peer_bytes += field(2, 2, addr)
        if peer.signed_peer_record is not None:
            peer_bytes += field(3, 2, peer.signed_peer_record)
        wire = registration.wire = field(1, 2, registration.namespace.encode()) + field(
            2, 2, peer_bytes
        )
    return wire
