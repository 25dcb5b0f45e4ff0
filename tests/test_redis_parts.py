"""The Redis store's parts: URL and password, stored data, ordered answers, options, and
the Redis protocol as the link drives it."""

from __future__ import annotations

import os
from typing import Any

import txredisapi
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python import usage
from twisted.trial.unittest import TestCase

from rendezvous._tap import Options
from rendezvous.entry import entry_bytes
from rendezvous.model import Change, Registration
from rendezvous.store.redis.link import Encoded, _CommandProtocol, _Factory
from rendezvous.store.redis.mirror import Mirror
from rendezvous.store.redis.replies import Replies
from rendezvous.store.redis.target import BadTarget, RedisTarget, parse_target
from rendezvous.store.redis.wire import (
    BadData,
    Published,
    parse_eviction,
    parse_published,
    registration,
    split_member,
)

from .helpers import peer, tcp_addr


class TargetTests(TestCase):
    def test_forms(self) -> None:
        self.assertEqual(
            parse_target("redis://db.internal", environ={}), RedisTarget("db.internal")
        )
        self.assertEqual(
            parse_target("rediss://rv@[::1]:6380/3", environ={}),
            RedisTarget("::1", 6380, 3, tls=True, username="rv"),
        )
        self.assertEqual(parse_target("redis://h:1/2", environ={}).describe(), "redis://h:1/2")

    def test_password_from_environment_or_file(self) -> None:
        target = parse_target("redis://h", environ={"RENDEZVOUS_REDIS_PASSWORD": "s3cret"})
        self.assertEqual(target.password, "s3cret")
        self.assertNotIn("s3cret", repr(target) + target.describe())
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("from-file\n")
        target = parse_target("redis://h", path, environ={"RENDEZVOUS_REDIS_PASSWORD": "env"})
        self.assertEqual(target.password, "from-file")

    def test_refused(self) -> None:
        for url in (
            "redis://:pw@h",  # a password on the command line
            "redis://u:pw@h",
            "http://h",
            "redis:///0",
            "redis://h/x",
            "redis://h:99999",
            "redis://h?db=1",
        ):
            with self.assertRaises(BadTarget, msg=url):
                parse_target(url, environ={})
        with self.assertRaises(BadTarget):
            parse_target("redis://h", os.path.join(self.mktemp(), "missing"))


class OptionsTests(TestCase):
    def test_store_flags(self) -> None:
        options = Options()
        options.parseOptions(["--store", "redis://127.0.0.1:6379/1", "--lease", "2.5"])
        self.assertEqual((options["store"], options["lease"]), ("redis://127.0.0.1:6379/1", 2.5))
        for bad in (
            ["--store", "postgres://h"],
            ["--store", "redis://:pw@h"],
            ["--store", "redis://h", "--lease", "0.1"],
        ):
            with self.assertRaises(usage.UsageError, msg=bad):
                Options().parseOptions(bad)


class WireTests(TestCase):
    def test_entry_round_trip(self) -> None:
        original = Registration("ns", peer("a", tcp_addr(1), tcp_addr(2)))
        entry = entry_bytes(original)
        decoded = registration(entry)
        self.assertEqual(decoded, original)
        self.assertEqual(decoded.wire, entry)

    def test_published(self) -> None:
        reg = Registration("ns", peer("a", tcp_addr(1)))
        key, entry = reg.peer.key, entry_bytes(reg)
        tail = len(key).to_bytes(2, "big") + key + len(entry).to_bytes(4, "big") + entry
        (published,) = parse_published(b"42:d1/7:U" + tail)
        self.assertEqual(
            (published.seq, published.change, published.key, published.registration),
            (42, Change.UNREGISTER, key, reg),
        )
        self.assertEqual(published.origin, "d1/7")
        (nobody,) = parse_published(b"43::U" + tail)
        self.assertEqual(nobody.origin, "")
        self.assertEqual(split_member(b"\x00\x02abns"), (b"ab", b"ns"))

    def test_several_in_one_message(self) -> None:
        """A batch of REGISTERs publishes one message per namespace."""
        a = Registration("ns", peer("a", tcp_addr(1)))
        b = Registration("ns", peer("b", tcp_addr(2)))
        data = b""
        for seq, reg in ((7, a), (9, b), (10, a)):
            key, entry = reg.peer.key, entry_bytes(reg)
            data += f"{seq}:d/1:R".encode() + len(key).to_bytes(2, "big") + key
            data += len(entry).to_bytes(4, "big") + entry
        self.assertEqual(
            [(p.seq, p.key, p.registration) for p in parse_published(data)],
            [(7, a.peer.key, a), (9, b.peer.key, b), (10, a.peer.key, a)],
        )
        with self.assertRaises(BadData):
            parse_published(data + b"11:d/1:R")

    def test_malformed(self) -> None:
        for data in (
            b"",
            b"x::R",
            b"1:R\x00\x00",
            b"1::X\x00\x00",
            b"1::R\x00\x09ab",
            b"1::R\x00\x01a",
            b"1::R\x00\x01a\x00\x00\x00\x05ab",
            b"1::R\x00\x01a\x00\x00\x00\x01\xff",
            b"1:\xff:R\x00\x00\x00\x00\x00\x00",
        ):
            with self.assertRaises(BadData, msg=data):
                parse_published(data)

    def test_eviction(self) -> None:
        eviction = parse_eviction(b"12:7:\x00\x02ab" + "é".encode())
        self.assertEqual(
            (eviction.seq, eviction.session, eviction.key, eviction.namespace),
            (12, "7", b"ab", "é"),
        )
        for data in (
            b"",
            b"12:7",
            b"x:7:\x00\x00",
            b"1:s:\x00\x00",
            b"1:2:\x00",
            b"1:2:\x00\x00\xff",
        ):
            with self.assertRaises(BadData, msg=data):
                parse_eviction(data)


class RepliesTests(TestCase):
    def test_in_order_although_ready_out_of_order(self) -> None:
        replies = Replies()
        done: list[int] = []
        first, second, third = replies.reserve(), replies.reserve(), replies.reserve()
        third.fill(lambda: done.append(3))
        second.fill(lambda: done.append(2))
        self.assertEqual(done, [])
        first.fill(lambda: done.append(1))
        self.assertEqual(done, [1, 2, 3])
        replies.answer(lambda: done.append(4))  # nothing waiting: at once
        self.assertEqual((done, len(replies)), ([1, 2, 3, 4], 0))

    def test_answer_reserving_more_while_running(self) -> None:
        replies = Replies()
        done: list[str] = []
        first = replies.reserve()
        first.fill(lambda: replies.answer(lambda: done.append("nested")))
        self.assertEqual(done, ["nested"])


class MirrorTests(TestCase):
    A = Registration("ns", peer("A", tcp_addr(1)))
    B = Registration("ns", peer("B", tcp_addr(2)))

    def published(self, seq: int, change: str, reg: Registration) -> Published:
        return Published(seq, Change(change), reg.peer.key, reg)

    def test_resync_diff_and_unconfirmed(self) -> None:
        a, b = self.A, self.B
        mirror: Mirror[str] = Mirror("ns")
        mirror.begin_sync()
        self.assertEqual(mirror.receive(self.published(4, "register", b)), [])  # buffered
        pushes = mirror.synced_with(3, {a.peer.key: a})  # then the buffer, after the snapshot
        self.assertEqual(
            [(p.change, p.registration) for _, p, *_ in pushes], [(Change.REGISTER, b)]
        )
        self.assertEqual(mirror.snapshot({}), [a, b])
        mirror.subscribers["s"] = None
        moved = Registration("ns", peer("B", tcp_addr(9)))
        mirror.begin_sync()
        pushes = mirror.synced_with(9, {b.peer.key: moved})  # Redis kept its data
        self.assertEqual(
            [(p.change, p.registration) for _, p, *_ in pushes],
            [(Change.UNREGISTER, a), (Change.REGISTER, moved)],
        )
        mirror.begin_sync()
        self.assertEqual(mirror.synced_with(0, {}), [])  # Redis lost it: unconfirmed
        self.assertEqual(list(mirror.unconfirmed), [b.peer.key])
        self.assertEqual([p.change for _, p, *_ in mirror.settle()], [Change.UNREGISTER])
        self.assertEqual(mirror.snapshot({}), [])


class _LinkStub:
    def __init__(self) -> None:
        self.clock = Clock()
        self.timeout = 5.0


class LeanProtocolTests(TestCase):
    """txredisapi's protocol as the link drives it: encoding, parsing, the watchdog."""

    def setUp(self) -> None:
        self.link = _LinkStub()
        protocol = _Factory(self.link, _CommandProtocol).buildProtocol(None)  # type: ignore[arg-type]
        assert isinstance(protocol, _CommandProtocol)
        self.transport = StringTransport()
        protocol.makeConnection(self.transport)
        self.protocol = protocol

    def test_commands_encoded_in_one_pass(self) -> None:
        self.protocol.execute_command("SET", b"k\r\n", 12, "é")
        self.assertEqual(
            self.transport.value(),
            b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n12\r\n$2\r\n" + "é".encode() + b"\r\n",
        )

    def test_a_pipelined_batch_is_parsed_at_once(self) -> None:
        replies: list[Any] = []
        for _ in range(3):
            self.protocol.execute_command("EVALSHA").addCallback(replies.append)
        self.protocol.dataReceived(b"*2\r\n$2\r\nOK\r\n$1\r\n1\r\n$3\r\nabc\r\n:7\r\n")
        self.assertEqual(replies, [[b"OK", b"1"], b"abc", 7])  # no reactor turn needed
        # Nothing was left for a later turn: the only call pending is the watchdog's.
        self.assertEqual([call.getTime() for call in self.link.clock.getDelayedCalls()], [1.0])
        self.link.clock.advance(1)
        self.assertEqual(self.link.clock.getDelayedCalls(), [])

    def test_no_reply_for_the_timeout_fails_what_is_outstanding(self) -> None:
        failures: list[Any] = []
        self.link.clock.advance(100)  # idle time does not count
        for _ in range(2):
            self.protocol.execute_command("GET", "k").addErrback(failures.append)
        self.assertEqual(len(self.link.clock.getDelayedCalls()), 1)  # one watchdog
        self.link.clock.advance(4)
        self.protocol.dataReceived(b"$1\r\nv\r\n")  # progress: the wait starts again
        self.link.clock.advance(4)
        self.assertEqual(failures, [])
        self.assertFalse(self.transport.disconnecting)
        self.link.clock.advance(1)
        self.assertEqual(
            [f.check(txredisapi.TimeoutError) for f in failures], [txredisapi.TimeoutError]
        )
        self.assertTrue(self.transport.disconnected or self.transport.disconnecting)

    def test_encoded_arguments_sent_as_they_are(self) -> None:
        self.protocol.execute_command("EVALSHA", Encoded(2, b"$1\r\na\r\n$2\r\nbc\r\n"), 7)
        self.assertEqual(
            self.transport.value(),
            b"*4\r\n$7\r\nEVALSHA\r\n$1\r\na\r\n$2\r\nbc\r\n$1\r\n7\r\n",
        )
