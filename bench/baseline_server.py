"""The bench's reference point: the least a Twisted server can do and still serve the load.

It splits unsigned-varint frames, parses each into a protobuf ``Message`` (the same upb
backend as the daemon), and keeps plain dicts: namespace -> {peer id -> encoded entry} and
namespace -> set of subscriber transports. It has no limits, no validation beyond protobuf,
no ownership, no metrics, no backpressure, no logging per message. It answers a DISCOVER
with one REGISTER (first ``limit`` entries, ``request_id`` copied) and pushes each REGISTER,
encoded once, to the namespace's subscribers. With ``--idle`` it only holds connections.

    python bench/baseline_server.py --port 0      # logs "listening on tcp 127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import os
import sys
from itertools import islice

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from twisted.internet import epollreactor  # noqa: E402

epollreactor.install()

from twisted.internet import reactor  # noqa: E402
from twisted.internet.protocol import Factory, Protocol  # noqa: E402

from rendezvous.pb.live_pb2 import Message  # noqa: E402

REGISTER, UNREGISTER, RENDEZVOUS, DISCOVER = 0, 1, 2, 3
registrations: dict[str, dict[str, bytes]] = {}
subscribers: dict[str, set[Protocol]] = {}


def uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class Baseline(Protocol):
    def connectionMade(self) -> None:
        self.buf = b""
        self.subscribed: list[str] = []

    def connectionLost(self, reason: object = None) -> None:
        for ns in self.subscribed:
            subscribers.get(ns, set()).discard(self)

    def dataReceived(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        offset, end = 0, len(buf)
        while offset < end:
            length, shift, i = 0, 0, offset
            while True:
                if i >= end:
                    length = -1
                    break
                b = buf[i]
                length |= (b & 0x7F) << shift
                i += 1
                if b < 0x80:
                    break
                shift += 7
            if length < 0 or i + length > end:
                break
            payload = buf[i : i + length]
            message = Message()
            message.ParseFromString(payload)
            self.handle(message, payload)
            offset = i + length
        self.buf = buf[offset:] if offset < end else b""

    def handle(self, message: Message, payload: bytes) -> None:
        kind = message.type
        if kind == REGISTER:
            entries = message.register
            # One entry, encoded as our clients do: reuse its bytes instead of re-encoding.
            single = (
                len(entries) == 1
                and payload[:3] == b"\x08\x00\x12"
                and not message.HasField("request_id")
            )
            for entry in entries:
                ns = entry.ns
                if single:
                    field = payload[2:]
                else:
                    encoded = entry.SerializeToString()
                    field = b"\x12" + uvarint(len(encoded)) + encoded
                # Stored as the bytes of a ``Message.register`` field, ready to concatenate.
                registrations.setdefault(ns, {})[entry.peer.id] = field
                subs = subscribers.get(ns)
                if subs:
                    payload = b"\x08\x00" + field
                    data = uvarint(len(payload)) + payload
                    for sub in subs:
                        if sub is not self:
                            sub.transport.write(data)
        elif kind == DISCOVER:
            parts = [b"\x08\x00"]
            for entry in message.discovery:
                limit = entry.limit or 100
                parts.extend(islice(registrations.get(entry.ns, {}).values(), limit))
            if message.HasField("request_id"):
                parts.append(b"\x38" + uvarint(message.request_id))
            payload = b"".join(parts)
            self.transport.write(uvarint(len(payload)) + payload)
        elif kind == RENDEZVOUS:
            for entry in message.rendezvous:
                subscribers.setdefault(entry.ns, set()).add(self)
                self.subscribed.append(entry.ns)
        elif kind == UNREGISTER:
            for entry in message.unregister:
                registrations.get(entry.ns, {}).pop(entry.peer.id, None)


class Idle(Protocol):
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--idle", action="store_true", help="hold connections, read nothing")
    args = parser.parse_args()
    factory = Factory.forProtocol(Idle if args.idle else Baseline)
    factory.noisy = False
    port = reactor.listenTCP(args.port, factory, backlog=4096, interface="127.0.0.1")
    print(f"baseline listening on tcp 127.0.0.1:{port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
