"""Fuzz what the Redis store reads: RESP replies (txredisapi's parser inside our
`_LeanProtocol`, on both the command and the pub/sub connection) and the payloads of
our scripts and channels (`rendezvous.store.redis.wire`).

``data[0] % 3``: 0, the reads go to a command connection with three commands waiting;
1, to a pub/sub connection, whose messages are parsed as announcements or evictions;
2, the bytes are a published payload, an eviction, a script's results or an entry,
parsed directly (only `BadData` may escape). ``data[1]`` picks the read size.

A reply that breaks RESP so that txredisapi's parser raises is logged and drops the
connection (documented); an exception from our own code there (the link's pub/sub
dispatch, the wire parsers) is a crash. Every command that waits gets an answer or an
error, and none is answered twice.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any

from _harness import chunks, instrumented, main, whole
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger

with instrumented("rendezvous", "txredisapi"):
    from rendezvous.store.redis import wire
    from rendezvous.store.redis.link import (
        RedisLink,
        _CommandProtocol,
        _LeanProtocol,
        _SubscriberProtocol,
    )

_failures: list[Any] = []
_LeanProtocol.log = Logger(observer=_failures.append)


class _Link:
    """What the protocols call on their link (its pub/sub dispatch is the real one)."""

    channel_prefix = "p:0:c:"

    def __init__(self) -> None:
        self.clock = Clock()
        self.timeout = 5.0

    def _message(self, channel: bytes, data: bytes) -> None:
        RedisLink._message(self, channel, data)  # type: ignore[arg-type]

    def on_message(self, namespace: str, data: bytes) -> None:
        assert isinstance(namespace, str)
        _payload(data)

    def on_eviction(self, data: bytes) -> None:
        _payload(data)

    def _subscribed(self, channel: bytes) -> None:
        pass

    def _lost(self, protocol: object) -> None:
        pass


def _payload(data: Any) -> None:
    if not isinstance(data, bytes):
        return
    for parse in (wire.parse_published, wire.parse_eviction, wire.registration):
        with contextlib.suppress(wire.BadData):
            parse(data)
    with contextlib.suppress(wire.BadData):
        wire.parse_results(data, 1 + data.count(b","))


def _protocol(kind: type[_LeanProtocol]) -> tuple[_LeanProtocol, _Link]:
    link = _Link()
    protocol = kind(charset=None, replyTimeout=0, convertNumbers=False)
    protocol.link = link
    protocol._rest = deque()
    protocol.callLater = link.clock.callLater
    protocol.makeConnection(StringTransport())
    return protocol, link


def _connection(kind: type[_LeanProtocol], stream: bytes) -> None:
    protocol, link = _protocol(kind)
    replies: list[object] = []
    for _ in range(3):
        d = protocol.execute_command("EVALSHA", b"0" * 40, 0, "p:")
        d.addBoth(replies.append)
    _failures.clear()
    for piece in chunks(stream):
        protocol.dataReceived(piece)
        for event in _failures:
            failure = event.get("log_failure")
            # Raised by txredisapi's own parser: documented. Anything else: ours.
            if failure is not None and not failure.frames[-1][1].endswith("txredisapi.py"):
                failure.raiseException()
        if protocol.transport.disconnecting:
            break
    link.clock.advance(protocol.timeout + 1)  # the watchdog fails what is left
    protocol.connectionLost(None)
    assert len(replies) == 3, "a command was never answered, or twice"


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    mode = data[0] % 3
    if mode == 0:
        _connection(_CommandProtocol, data[1:])
    elif mode == 1:
        _connection(_SubscriberProtocol, data[1:])
    else:
        _payload(data[1:])


def seeds() -> list[bytes]:
    entry = b"\x0a\x03app\x12\x00"
    published = b"12:d1/3:R\x00\x02ab" + entry
    message = b"*3\r\n$7\r\nmessage\r\n$9\r\np:0:c:app\r\n$%d\r\n%s\r\n" % (
        len(published),
        published,
    )
    return [
        b"\x00" + whole(b"+OK\r\n:12\r\n$3\r\nabc\r\n"),
        b"\x00\x03-ERR no script\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n$-1\r\n",
        b"\x01" + whole(b"*3\r\n$9\r\nsubscribe\r\n$5\r\np:0:c\r\n:1\r\n" + message),
        b"\x01\x07" + message + message,
        b"\x02" + published,
        b"\x02" + b"7:42:\x00\x02abapp",
    ]


if __name__ == "__main__":
    main(test_one_input, seeds)
