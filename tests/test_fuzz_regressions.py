"""Inputs the fuzz targets of tools/fuzz/ found, each handled as it should be now.

Each test feeds the bytes a target reported (reduced by hand where that made them
clearer) to the same code, without atheris: CI keeps them fixed.
"""

from __future__ import annotations

from typing import Any

import txredisapi
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from rendezvous.store.redis.link import _CommandProtocol, _Factory, _SubscriberProtocol


class _LinkStub:
    def __init__(self) -> None:
        self.clock = Clock()
        self.timeout = 5.0
        self.messages: list[tuple[bytes, bytes]] = []
        self.subscribed: list[bytes] = []
        self.refusals: list[Exception] = []

    def on_channel(self, channel: bytes, data: bytes) -> None:
        self.messages.append((channel, data))

    def _subscribed(self, channel: bytes) -> None:
        self.subscribed.append(channel)

    def _lost(self, protocol: object) -> None:
        pass

    def _subscription_refused(self, error: Exception) -> None:
        self.refusals.append(error)


class RedisRepliesTests(TestCase):
    """fuzz_redis: replies that break RESP drop the connection with a logged error
    instead of raising out of ``dataReceived``; pub/sub replies of unexpected shapes are
    replies, not messages."""

    def connect(self, kind: type[_CommandProtocol | _SubscriberProtocol]) -> Any:
        self.link = _LinkStub()
        protocol = _Factory(self.link, kind).buildProtocol(None)  # type: ignore[arg-type]
        self.transport = StringTransport()
        protocol.makeConnection(self.transport)
        self.replies: list[Any] = []
        protocol.execute_command("EVALSHA", b"0" * 40, 0).addBoth(self.replies.append)
        return protocol

    def assertDropped(self, protocol: Any, error: type[Exception]) -> None:
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(error)), 1)
        protocol.dataReceived(b"+OK\r\n")  # nothing is read once the reply broke RESP
        self.assertEqual(self.replies, [])
        protocol.connectionLost(Failure(ConnectionDone()))
        [failure] = self.replies
        self.assertIsInstance(failure, Failure)
        self.assertTrue(failure.check(txredisapi.ConnectionError))

    def test_a_line_not_utf8(self) -> None:
        # Found as b"-ERR no script\r\n*2\r\n$1\r\na\r\n*1\xbc\n:1\r\n$-1\r\n": txredisapi
        # decodes every line as UTF-8 and raised UnicodeDecodeError.
        protocol = self.connect(_CommandProtocol)
        protocol.dataReceived(b"*1\xbc\n:1\r\n")
        self.assertDropped(protocol, UnicodeDecodeError)

    def test_a_count_below_minus_one(self) -> None:
        # Found as b"-ERR no script\r\n*-2\r\n$1\r\na\r\n...*2\r\n...": after a count
        # below -1, txredisapi nests the next array in one whose items are None and
        # raised AttributeError when that array was complete.
        protocol = self.connect(_CommandProtocol)
        protocol.dataReceived(b"*-2\r\n*1\r\n:1\r\n")
        self.assertDropped(protocol, AttributeError)

    def test_a_pubsub_reply_whose_kind_is_an_array(self) -> None:
        # Found as b"*3\r\n*1\r\n:1\r\n..." on the pub/sub connection: the kind was
        # looked up in a set and raised TypeError (a list is unhashable).
        protocol = self.connect(_SubscriberProtocol)
        protocol.dataReceived(b"*3\r\n*1\r\n:1\r\n$1\r\na\r\n$1\r\nb\r\n")
        self.assertEqual(self.replies, [[[1], b"a", b"b"]])
        self.assertEqual(self.link.messages, [])
        self.assertFalse(self.transport.disconnecting)

    def test_a_refused_subscription_is_not_a_reply(self) -> None:
        # A cluster down refuses SSUBSCRIBE: nothing confirms it, so the link is told
        # (it reconnects) rather than the error waiting for a command that is not there.
        protocol = self.connect(_SubscriberProtocol)
        protocol.dataReceived(b"-ERR a command's\r\n")
        self.assertEqual(len(self.replies), 1)  # the command waiting gets its error
        protocol.dataReceived(b"-CLUSTERDOWN The cluster is down\r\n")
        self.assertEqual([str(e) for e in self.link.refusals], ["CLUSTERDOWN The cluster is down"])

    def test_a_pubsub_message_whose_channel_is_not_a_string(self) -> None:
        # The same check: a message's channel and payload must be strings (the link
        # calls bytes methods on them).
        protocol = self.connect(_SubscriberProtocol)
        protocol.dataReceived(b"*3\r\n$7\r\nmessage\r\n:5\r\n$1\r\nx\r\n")
        self.assertEqual(self.replies, [[b"message", 5, b"x"]])
        protocol.dataReceived(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n")
        self.assertEqual(self.link.messages, [(b"ch", b"x")])
