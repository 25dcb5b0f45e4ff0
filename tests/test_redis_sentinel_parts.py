"""The Sentinel parts on fakes: the URL, RESP replies, asking the sentinels (blocking at
start-up, and on the reactor at each connection), the ROLE check, and what a failover
changes in a resync."""

from __future__ import annotations

from typing import Any

import txredisapi
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from rendezvous._tap import Options
from rendezvous.entry import entry_bytes
from rendezvous.model import Change, Registration
from rendezvous.store.redis.link import NotMaster, RedisLink
from rendezvous.store.redis.mirror import Mirror
from rendezvous.store.redis.sentinel import (
    BadReply,
    MasterLookup,
    NoMaster,
    RespError,
    SentinelEndpoint,
    SwitchWatch,
    encode,
    parse,
    probe,
)
from rendezvous.store.redis.store import RedisStore
from rendezvous.store.redis.target import BadTarget, RedisTarget, parse_target

from .helpers import peer, tcp_addr
from .test_redis_store import A, B, FakeLink, StoreTestCase, published

URL = "redis-sentinel://10.0.0.1:26379,10.0.0.2,[::1]:5000/rdv/2"
ASK = encode("SENTINEL", "get-master-addr-by-name", "rdv")


class TargetTests(TestCase):
    def test_forms(self) -> None:
        target = parse_target(URL, environ={})
        self.assertEqual(
            (target.sentinels, target.master_name, target.db),
            ((("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 5000)), "rdv", 2),
        )
        self.assertEqual(
            target.describe(),
            "redis-sentinel://10.0.0.1:26379,10.0.0.2:26379,[::1]:5000/rdv/2",
        )
        named = parse_target("redis-sentinel://rv@s1/my%2Dmaster", environ={})
        self.assertEqual((named.username, named.master_name, named.db), ("rv", "my-master", 0))
        with self.assertRaises(BadTarget):
            parse_target("redis-sentinel://s1/my%20master", environ={})

    def test_passwords_from_environment_or_file(self) -> None:
        environ = {
            "RENDEZVOUS_REDIS_PASSWORD": "redis",
            "RENDEZVOUS_SENTINEL_PASSWORD": "sentinel",
        }
        target = parse_target(URL, environ=environ)
        self.assertEqual((target.password, target.sentinel_password), ("redis", "sentinel"))
        self.assertNotIn("redis", repr(target).replace("redis-sentinel", ""))
        self.assertNotIn("sentinel'", repr(target))
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("from-file\n")
        self.assertEqual(parse_target(URL, path, environ=environ).password, "from-file")

    def test_refused(self) -> None:
        for url in (
            "redis-sentinel://s1",  # no master name
            "redis-sentinel://s1/",
            "redis-sentinel://u:pw@s1/rdv",  # a password in the URL
            "redis-sentinel:///rdv",  # no sentinel
            "redis-sentinel://s1,/rdv",
            "redis-sentinel://s1:port/rdv",
            "redis-sentinel://s1:0/rdv",
            "redis-sentinel://s1:70000/rdv",
            "redis-sentinel://s1/rdv/x",
            "redis-sentinel://s1/rdv/0/more",
            "redis-sentinel://s1/rdv?db=1",
        ):
            with self.assertRaises(BadTarget, msg=url):
                parse_target(url, environ={})
        ca = self.mktemp()
        open(ca, "w").close()
        with self.assertRaises(BadTarget):
            parse_target("redis-sentinel://s1/rdv", environ={}, ca_file=ca)

    def test_options(self) -> None:
        options = Options()
        options.parseOptions(["--store", URL])
        self.assertEqual(options["store"], URL)
        with self.assertRaises(usage.UsageError):
            Options().parseOptions(["--store", "redis-sentinel://s1"])
        with self.assertRaises(usage.UsageError) as raised:
            Options().parseOptions(["--store", "sentinel://s1/rdv"])
        self.assertIn("redis-sentinel://", str(raised.exception))


class RespTests(TestCase):
    def test_replies(self) -> None:
        self.assertEqual(parse(b"+OK\r\n"), (b"OK", 5))
        self.assertEqual(parse(b":42\r\n"), (42, 5))
        self.assertEqual(parse(b"$-1\r\n"), (None, 5))
        self.assertEqual(parse(b"*-1\r\n"), (None, 5))
        self.assertEqual(parse(b"$3\r\nabc\r\n"), (b"abc", 9))
        reply = b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n"
        self.assertEqual(parse(reply), ([b"127.0.0.1", b"6380"], len(reply)))
        error, end = parse(b"-NOAUTH Authentication required.\r\n+OK\r\n") or (None, 0)
        self.assertIsInstance(error, RespError)
        self.assertEqual((error, end), ("NOAUTH Authentication required.", 34))
        self.assertEqual(parse(b"+OK\r\n:1\r\n", 5), (1, 9))

    def test_incomplete(self) -> None:
        reply = b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n"
        for cut in range(len(reply)):
            self.assertIsNone(parse(reply[:cut]), cut)

    def test_garbage(self) -> None:
        for data in (b"HTTP/1.1 400\r\n", b"$x\r\n", b"*two\r\n", b"*1\r\n" * 10000):
            with self.assertRaises(BadReply, msg=data):
                parse(data)

    def test_encode(self) -> None:
        self.assertEqual(encode("AUTH", b"pw"), b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n")


class FakeSocket:
    def __init__(self, replies: bytes) -> None:
        self.replies = [replies[i : i + 7] for i in range(0, len(replies), 7)]
        self.sent = b""

    def __enter__(self) -> FakeSocket:
        return self

    def __exit__(self, *args: object) -> None:
        pass

    def settimeout(self, timeout: float) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def recv(self, size: int) -> bytes:
        return self.replies.pop(0) if self.replies else b""


MASTER_REPLY = b"*2\r\n$8\r\n10.0.0.9\r\n$4\r\n6380\r\n"


class ProbeTests(TestCase):
    def probe(self, target: RedisTarget, answers: dict[tuple[str, int], Any]) -> Any:
        self.sockets: dict[tuple[str, int], FakeSocket] = {}

        def connect(address: tuple[str, int], timeout: float) -> Any:
            answer = answers[address]
            if isinstance(answer, Exception):
                raise answer
            sock = self.sockets[address] = FakeSocket(answer)
            return sock

        return probe(target, 1.0, connect)

    def test_the_first_that_answers(self) -> None:
        target = parse_target(URL, environ={})
        address = self.probe(
            target,
            {
                ("10.0.0.1", 26379): ConnectionRefusedError(111, "Connection refused"),
                ("10.0.0.2", 26379): MASTER_REPLY,
            },
        )
        self.assertEqual(address, ("10.0.0.9", 6380))
        self.assertEqual(self.sockets[("10.0.0.2", 26379)].sent, ASK)

    def test_every_reason_is_told(self) -> None:
        target = parse_target(URL, environ={})
        with self.assertRaises(NoMaster) as raised:
            self.probe(
                target,
                {
                    ("10.0.0.1", 26379): ConnectionRefusedError(111, "Connection refused"),
                    ("10.0.0.2", 26379): b"*-1\r\n",
                    ("::1", 5000): TimeoutError("timed out"),
                },
            )
        self.assertEqual(
            str(raised.exception),
            "no sentinel named the master 'rdv': 10.0.0.1:26379 unreachable (Connection "
            "refused); 10.0.0.2:26379 knows no master named 'rdv'; [::1]:5000 unreachable "
            "(no answer in time)",
        )

    def test_sentinel_password(self) -> None:
        target = parse_target(
            "redis-sentinel://s1/rdv", environ={"RENDEZVOUS_SENTINEL_PASSWORD": "pw"}
        )
        address = self.probe(target, {("s1", 26379): b"+OK\r\n" + MASTER_REPLY})
        self.assertEqual(address, ("10.0.0.9", 6380))
        self.assertEqual(self.sockets[("s1", 26379)].sent, encode("AUTH", "pw") + ASK)
        with self.assertRaises(NoMaster) as raised:
            self.probe(target, {("s1", 26379): b"-WRONGPASS invalid password\r\n*-1\r\n"})
        self.assertIn("s1:26379 refused: WRONGPASS invalid password", str(raised.exception))

    def test_answers_that_are_no_address(self) -> None:
        target = parse_target("redis-sentinel://s1/rdv", environ={})
        for reply in (b":1\r\n", b"+OK\r\n", b"*2\r\n:1\r\n:2\r\n", b"*1\r\n$1\r\na\r\n"):
            with self.assertRaises(NoMaster, msg=reply) as raised:
                self.probe(target, {("s1", 26379): reply})
            self.assertIn("s1:26379 gave an unexpected answer", str(raised.exception))

    def test_closed_early_and_nonsense(self) -> None:
        target = parse_target("redis-sentinel://s1,s2/rdv", environ={})
        with self.assertRaises(NoMaster) as raised:
            self.probe(target, {("s1", 26379): b"*2\r\n$8\r\n", ("s2", 26379): b"HTTP/1.0 200\r\n"})
        self.assertIn("s1:26379 unreachable (the server closed", str(raised.exception))
        self.assertIn("s2:26379 unreachable (not a RESP reply", str(raised.exception))


class FakeEndpoint:
    """Connects at once (a `StringTransport`), never, or fails, as told."""

    def __init__(self, outcome: str, peer: tuple[str, int]) -> None:
        self.outcome = outcome
        self.peer = peer
        self.protocols: list[IProtocol] = []

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        if self.outcome == "refuse":
            return Deferred.fromCoroutine(self._refuse())
        if self.outcome == "hang":
            return Deferred()
        protocol = factory.buildProtocol(IPv4Address("TCP", *self.peer))
        assert protocol is not None
        protocol.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", *self.peer)))
        self.protocols.append(protocol)
        return succeed(protocol)

    async def _refuse(self) -> IProtocol:
        raise ConnectionRefusedError("Connection refused")


class LookupTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.target = parse_target("redis-sentinel://s1,s2,s3/rdv", environ={})
        self.endpoints = {
            ("s1", 26379): FakeEndpoint("refuse", ("10.0.0.1", 26379)),
            ("s2", 26379): FakeEndpoint("hang", ("10.0.0.2", 26379)),
            ("s3", 26379): FakeEndpoint("answer", ("10.0.0.3", 26379)),
            ("10.0.0.9", 6380): FakeEndpoint("answer", ("10.0.0.9", 6380)),
        }
        self.lookup = MasterLookup(self.target, self.clock, self.endpoint, 2.0)

    def endpoint(self, host: str, port: int) -> FakeEndpoint:
        return self.endpoints[(host, port)]

    def answer(self, host: str, data: bytes) -> None:
        protocol = self.endpoints[(host, 26379)].protocols[-1]
        transport = protocol.transport  # type: ignore[attr-defined]
        self.assertEqual(transport.value(), ASK)
        protocol.dataReceived(data[:5])
        protocol.dataReceived(data[5:])
        self.assertTrue(transport.disconnecting)

    def test_in_turn_then_the_one_that_answered_first(self) -> None:
        found = Deferred.fromCoroutine(self.lookup.master())
        self.assertNoResult(found)
        self.clock.advance(2.0)  # s2 never connects
        self.answer("s3", MASTER_REPLY)
        self.assertEqual(self.successResultOf(found), ("10.0.0.9", 6380))
        self.assertEqual(self.lookup.order, [("s3", 26379), ("s1", 26379), ("s2", 26379)])
        again = Deferred.fromCoroutine(self.lookup.master())
        self.answer("s3", b"*-1\r\n")  # s3 forgot it: the others are asked
        self.clock.advance(2.0)
        failure = self.failureResultOf(again, NoMaster)
        self.assertEqual(
            failure.getErrorMessage(),
            "no sentinel named the master 'rdv': s3:26379 knows no master named 'rdv'; "
            "s1:26379 unreachable (Connection refused); s2:26379 unreachable (no answer "
            "in time)",
        )

    def test_a_sentinel_that_connects_but_never_answers(self) -> None:
        self.endpoints[("s1", 26379)].outcome = "answer"
        found = Deferred.fromCoroutine(self.lookup.master())
        self.clock.advance(2.0)  # s1 silent
        self.clock.advance(2.0)  # s2 never connects
        self.answer("s3", MASTER_REPLY)
        self.assertEqual(self.successResultOf(found), ("10.0.0.9", 6380))
        self.assertTrue(self.endpoints[("s1", 26379)].protocols[0].transport.disconnecting)  # type: ignore[attr-defined]

    def test_endpoint_connects_to_the_master_named(self) -> None:
        endpoint = SentinelEndpoint(self.target, self.clock, self.endpoint, 2.0)
        factory = _Recording()
        connected = endpoint.connect(factory)
        self.clock.advance(2.0)
        self.answer("s3", MASTER_REPLY)
        protocol = self.successResultOf(connected)
        self.assertIs(protocol, self.endpoints[("10.0.0.9", 6380)].protocols[0])


class _Recording:
    def buildProtocol(self, addr: object) -> IProtocol:
        from twisted.internet.protocol import Protocol

        return Protocol()

    def doStart(self) -> None:
        pass

    def doStop(self) -> None:
        pass


class _FakeRedis:
    """What `RedisLink._login` talks to."""

    def __init__(self, role: list[bytes]) -> None:
        self.role = role
        self.commands: list[tuple[Any, ...]] = []
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.9", 6380))

    def whenConnected(self) -> Deferred[None]:
        return succeed(None)

    def execute_command(self, *args: Any) -> Deferred[Any]:
        self.commands.append(args)
        return succeed(self.role if args[0] == "ROLE" else b"OK")


class RoleTests(TestCase):
    def link(self, url: str) -> RedisLink:
        target = parse_target(url, environ={"RENDEZVOUS_REDIS_PASSWORD": "pw"})
        return RedisLink(Clock(), target, "rendezvous:", endpoint=FakeEndpoint("hang", ("x", 1)))  # type: ignore[arg-type]

    def test_a_master_is_used(self) -> None:
        redis = _FakeRedis([b"master", 0, []])
        link = self.link("redis-sentinel://s1/rdv/3")
        self.successResultOf(Deferred.fromCoroutine(link._login(redis)))  # type: ignore[arg-type]
        self.assertEqual(redis.commands, [("AUTH", "pw"), ("SELECT", 3), ("ROLE",)])

    def test_a_replica_is_not(self) -> None:
        link = self.link("redis-sentinel://s1/rdv")
        redis = _FakeRedis([b"slave", b"10.0.0.1", 6379, b"connected", 0])
        failure = self.failureResultOf(
            Deferred.fromCoroutine(link._login(redis)),  # type: ignore[arg-type]
            NotMaster,
        )
        self.assertEqual(failure.getErrorMessage(), "10.0.0.9:6380 is a slave, not the master")

    def test_no_role_check_without_sentinels(self) -> None:
        redis = _FakeRedis([b"slave"])
        link = self.link("redis://h/0")
        self.successResultOf(Deferred.fromCoroutine(link._login(redis)))  # type: ignore[arg-type]
        self.assertEqual(redis.commands, [("AUTH", "pw")])


class FailoverResyncTests(TestCase):
    A = Registration("ns", peer("A", tcp_addr(1)))
    B = Registration("ns", peer("B", tcp_addr(2)))

    def test_a_failover_leaves_what_is_missing_unconfirmed(self) -> None:
        """After a failover the sequence may have moved on although the replica lacks
        the last changes: what is missing waits for its daemon's re-assertion."""
        a, b = self.A, self.B
        mirror: Mirror[str] = Mirror("ns")
        mirror.begin_sync()
        mirror.synced_with(5, {a.peer.key: a, b.peer.key: b})
        mirror.subscribers["s"] = None
        mirror.begin_sync()
        self.assertEqual(mirror.synced_with(9, {a.peer.key: a}, forgotten=True), [])
        self.assertEqual(list(mirror.unconfirmed), [b.peer.key])
        self.assertEqual(mirror.snapshot({}), [a, b])
        gone = mirror.settle()
        self.assertEqual(
            [(p.change, p.registration) for _, p, *_ in gone], [(Change.UNREGISTER, b)]
        )
        # Without a failover, a sequence that moved on means the snapshot is the truth.
        mirror.begin_sync()
        pushes = mirror.synced_with(12, {})
        self.assertEqual(
            [(p.change, p.registration) for _, p, *_ in pushes], [(Change.UNREGISTER, a)]
        )


class _SentinelLink(FakeLink):
    def __init__(self) -> None:
        super().__init__()
        self.target = parse_target("redis-sentinel://s1/rdv", environ={})
        self.server: str | None = "10.0.0.1:6379"
        self.resets = 0
        self.prefix = "rendezvous:"
        self.seq = b"0"
        self.commands: list[tuple[Any, ...]] = []

    def call(self, *args: Any) -> Deferred[Any]:
        self.commands.append(args)
        return succeed(self.seq if args[0] == "GET" else b"OK")

    def reset(self) -> None:
        self.resets += 1


class FailoverStoreTests(StoreTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.link = _SentinelLink()
        self.store = RedisStore(self.link, self.clock, lease=10.0)  # type: ignore[arg-type]
        self.recover(0)

    def test_a_new_master_leaves_what_it_lacks_unconfirmed(self) -> None:
        _, client = self.subscribed(10, A, B)
        self.link.on_down()
        self.link.server = "10.0.0.2:6379"  # the promoted replica lacks B, seq moved on
        self.recover(12, A)
        self.assertEqual(client.seen, [("snapshot", [A.peer.id, B.peer.id])])
        self.link.on_message("ns", published(13, "R", B))  # B's daemon re-asserts it
        self.clock.advance(10)
        self.assertEqual(len(client.seen), 1)  # nobody was told B left

    def test_a_registration_gone_meanwhile_is_told_within_a_lease(self) -> None:
        _, client = self.subscribed(10, A, B)
        self.link.on_down()
        self.link.server = "10.0.0.2:6379"
        self.recover(12, A)
        self.clock.advance(10)
        self.assertEqual(client.seen[1:], [("unregister", B.peer.id)])

    def test_the_same_master_again_is_believed(self) -> None:
        _, client = self.subscribed(10, A, B)
        self.link.on_down()
        self.recover(12, A)
        self.assertEqual(client.seen[1:], [("unregister", B.peer.id)])

    def test_a_demoted_master_is_left(self) -> None:
        session, _ = self.session()
        self.store.discover(session, "ns", 10, 1)
        self.link.runs[-1][2].errback(
            txredisapi.ResponseError("READONLY You can't write against a read only replica.")
        )
        self.assertEqual(self.link.resets, 1)
        self.flushLoggedErrors()

    def test_cookies_beyond_the_new_master_start_anew(self) -> None:
        session, _ = self.session(peer("A").key)
        self.store.discover_since(session, "ns", 0, 10, None)
        self.link.take("discover_since")[1].callback([b"E1", b"20", b"", entry_bytes(A)])
        self.assertEqual(self.store.epoch, b"E1")
        self.link.on_down()
        self.link.server = "10.0.0.2:6379"
        self.link.seq = b"18"  # changes 19 and 20 did not reach the replica
        self.recover(18)
        self.assertEqual(self.link.commands[0], ("GET", "rendezvous:seq"))
        self.assertEqual(self.link.commands[1][:2], ("SET", "rendezvous:epoch"))
        self.assertEqual(self.store.epoch, self.link.commands[1][2])
        self.assertNotEqual(self.store.epoch, b"E1")

    def test_cookies_within_the_new_master_are_kept(self) -> None:
        session, _ = self.session(peer("A").key)
        self.store.discover_since(session, "ns", 0, 10, None)
        self.link.take("discover_since")[1].callback([b"E1", b"20", b"", entry_bytes(A)])
        self.link.on_down()
        self.link.server = "10.0.0.2:6379"
        self.link.seq = b"20"
        self.recover(20)
        self.assertEqual(self.link.commands, [("GET", "rendezvous:seq")])
        self.assertEqual(self.store.epoch, b"E1")


class WatchTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.target = parse_target("redis-sentinel://s1,s2/rdv", environ={})
        self.endpoints = {
            ("s1", 26379): FakeEndpoint("refuse", ("10.0.0.1", 26379)),
            ("s2", 26379): FakeEndpoint("answer", ("10.0.0.2", 26379)),
        }
        self.switches: list[tuple[str, int]] = []
        self.watch = SwitchWatch(
            self.target,
            self.clock,
            lambda host, port: self.endpoints[(host, port)],  # type: ignore[arg-type,return-value]
            list(self.target.sentinels),
            lambda failures: 0.5,
            self.switches.append,
        )

    def subscribed(self) -> Any:
        self.watch.start()  # s1 refuses
        self.clock.advance(0.5)  # s2 then
        protocol = self.endpoints[("s2", 26379)].protocols[-1]
        transport = protocol.transport  # type: ignore[attr-defined]
        self.assertEqual(transport.value(), encode("SUBSCRIBE", "+switch-master"))
        protocol.dataReceived(b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n")
        return protocol

    def test_a_switch_of_our_master_is_told(self) -> None:
        protocol = self.subscribed()
        protocol.dataReceived(encode("message", "+switch-master", "other 10.0.0.1 1 10.0.0.2 2"))
        message = encode("message", "+switch-master", "rdv 10.0.0.1 6379 10.0.0.2 6380")
        protocol.dataReceived(message[:10])
        self.assertEqual(self.switches, [])
        protocol.dataReceived(message[10:] + encode("message", "+switch-master", "rdv nonsense"))
        self.assertEqual(self.switches, [("10.0.0.2", 6380)])

    def test_lost_then_the_next_sentinel(self) -> None:
        protocol = self.subscribed()
        protocol.connectionLost(Failure(ConnectionDone()))
        self.endpoints[("s1", 26379)].outcome = "answer"
        self.clock.advance(0.5)
        again = self.endpoints[("s1", 26379)].protocols[-1]
        self.assertEqual(again.transport.value(), encode("SUBSCRIBE", "+switch-master"))  # type: ignore[attr-defined]

    def test_refused_is_dropped_and_tried_again(self) -> None:
        self.watch.start()
        self.clock.advance(0.5)
        protocol = self.endpoints[("s2", 26379)].protocols[-1]
        protocol.dataReceived(b"-NOAUTH Authentication required.\r\n")
        self.assertTrue(protocol.transport.disconnecting)  # type: ignore[attr-defined]
        self.flushLoggedErrors()

    def test_the_link_leaves_a_master_no_longer_named(self) -> None:
        endpoints: Any = lambda host, port: self.endpoints[(host, port)]  # noqa: E731
        endpoint = SentinelEndpoint(self.target, self.clock, endpoints, 2.0)
        link = RedisLink(Clock(), self.target, "rendezvous:", endpoint=endpoint)
        self.assertIsNotNone(link._watch)
        command = _FakeRedis([b"master"])
        command.transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 6379))
        link._command = command  # type: ignore[assignment]
        link._switched(("10.0.0.1", 6379))
        self.assertFalse(command.transport.disconnecting)
        link._switched(("10.0.0.2", 6380))
        self.assertTrue(command.transport.disconnecting)
