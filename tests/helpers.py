"""Shared test fixtures: peer ids, addresses and frame helpers."""

from __future__ import annotations

import hashlib

from twisted.internet.defer import Deferred

from rendezvous.model import Peer
from rendezvous.p2p.stream import StreamProtocol
from rendezvous.pb.live_pb2 import Message
from rendezvous.peerid import parse_peer_id, peer_id_to_text
from rendezvous.varint import decode_uvarint, encode_uvarint


def peer_id(name: str) -> str:
    """A valid sha2-256 peer id (``Qm…``) derived from ``name``."""
    return peer_id_to_text(b"\x12\x20" + hashlib.sha256(name.encode()).digest())


def tcp_addr(last_octet: int, port: int = 4001) -> bytes:
    """The binary multiaddr ``/ip4/10.0.0.N/tcp/PORT``."""
    return bytes([0x04, 10, 0, 0, last_octet, 0x06]) + port.to_bytes(2, "big")


def peer(name: str, *addrs: bytes) -> Peer:
    text = peer_id(name)
    return Peer(text, parse_peer_id(text), tuple(addrs))


def framed(message: Message) -> bytes:
    payload = message.SerializeToString()
    return encode_uvarint(len(payload)) + payload


def unframe_all(data: bytes) -> list[Message]:
    """Every message in ``data``, which must end on a frame boundary."""
    messages = []
    offset = 0
    while offset < len(data):
        decoded = decode_uvarint(data, offset)
        assert decoded is not None
        length, start = decoded
        message = Message()
        message.ParseFromString(data[start : start + length])
        messages.append(message)
        offset = start + length
    assert offset == len(data)
    return messages


def register(namespace: str, name: str, *addrs: bytes, request_id: int | None = None) -> Message:
    message = Message(type=Message.REGISTER)
    entry = message.register.add(ns=namespace)
    entry.peer.id = peer_id(name)
    entry.peer.addrs.extend(addrs)
    if request_id is not None:
        message.request_id = request_id
    return message


def unregister(namespace: str, name: str, request_id: int | None = None) -> Message:
    message = Message(type=Message.UNREGISTER)
    message.unregister.add(ns=namespace).peer.id = peer_id(name)
    if request_id is not None:
        message.request_id = request_id
    return message


def rendezvous(namespace: str) -> Message:
    message = Message(type=Message.RENDEZVOUS)
    message.rendezvous.add(ns=namespace)
    return message


def discover(namespace: str, limit: int | None = None, request_id: int | None = None) -> Message:
    message = Message(type=Message.DISCOVER)
    entry = message.discovery.add(ns=namespace)
    if limit is not None:
        entry.limit = limit
    if request_id is not None:
        message.request_id = request_id
    return message


def expected_register(
    namespace: str, *peers: tuple[str, tuple[bytes, ...]], request_id: int | None = None
) -> Message:
    """The REGISTER message the server sends listing ``peers`` (name, addrs)."""
    message = Message(type=Message.REGISTER)
    for name, addrs in peers:
        entry = message.register.add(ns=namespace)
        entry.peer.id = peer_id(name)
        entry.peer.addrs.extend(addrs)
    if request_id is not None:
        message.request_id = request_id
    return message


def expected_unregister(namespace: str, name: str, *addrs: bytes) -> Message:
    message = Message(type=Message.UNREGISTER)
    entry = message.unregister.add(ns=namespace)
    entry.peer.id = peer_id(name)
    entry.peer.addrs.extend(addrs)
    return message


class Collect(StreamProtocol):
    """Fires ``done`` with what was received once the peer half-closes; answers ``reply``."""

    def __init__(self, reply: bytes = b"") -> None:
        self.reply = reply
        self.received = b""
        self.done: Deferred[bytes] = Deferred()

    def data_received(self, data: bytes) -> None:
        self.received += data

    def end_received(self) -> None:
        assert self.stream is not None
        if self.reply:
            self.stream.write(self.reply)
        self.stream.close()
        self.done.callback(self.received)
