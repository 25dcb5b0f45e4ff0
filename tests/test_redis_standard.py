"""The standard dialect on the Redis store: TTLs, expiry and cookies across a fleet.

Unit tests drive `RedisStore` on the fake link and a `Clock`; fleet tests run daemons
on a real redis-server and speak the standard dialect through `StandardSession`.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks

from rendezvous.client.errors import NotAuthorized
from rendezvous.entry import entry_bytes
from rendezvous.limits import Limits
from rendezvous.loglimit import LogLimiter
from rendezvous.model import Peer, Registration, Status
from rendezvous.p2p.envelope import PeerRecord, seal_peer_record
from rendezvous.p2p.keys import PrivateKey
from rendezvous.pb.rendezvous_pb2 import Message
from rendezvous.peerid import peer_id_to_text
from rendezvous.service import Daemon, DaemonConfig
from rendezvous.standard.codec import StandardCodec
from rendezvous.standard.session import StandardDialect, StandardSession
from rendezvous.varint import encode_uvarint

from .helpers import peer, tcp_addr
from .test_integration import Watcher
from .test_redis_fleet import Answers, FleetTestCase
from .test_redis_store import Recorder, StoreTestCase
from .test_standard_stream import parse

# -- on the fake link -------------------------------------------------------------------


class StandardRecorder(Recorder):
    def registered(self, request_id: int | None, registration: Registration) -> None:
        self.seen.append(("registered", request_id, registration.seq, registration.expires))


def signed(name: str) -> Peer:
    p = peer(name, tcp_addr(1))
    p.signed_peer_record = b"record of " + name.encode()
    return p


class TTLLogicTests(StoreTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.clock.advance(1000)

    def standard(self, identity: bytes | None) -> tuple[Any, StandardRecorder]:
        client = StandardRecorder()
        return self.store.open_session(client, identity), client

    def test_only_the_authenticated_id_and_in_order(self) -> None:
        a = signed("A")
        raw, raw_client = self.standard(None)
        self.store.register_ttl(raw, "ns", a, 60, 1)
        other, other_client = self.standard(b"someone else")
        self.store.discover_since(other, "ns", 0, 10, 2)
        self.store.register_ttl(other, "ns", a, 60, 3)  # waits for the DISCOVER's answer
        self.assertEqual(raw_client.seen, [("refused", 1, Status.NOT_AUTHORIZED)])
        self.assertEqual(other_client.seen, [])
        self.link.take("discover_since")[1].callback([b"E" * 8])
        self.assertEqual(
            other_client.seen, [("discovered", 2, []), ("refused", 3, Status.NOT_AUTHORIZED)]
        )
        self.assertEqual([run[0] for run in self.link.runs], [])

    def test_registered_with_sequence_and_expiry_then_expired_when_due(self) -> None:
        a = signed("A")
        session, client = self.standard(a.key)
        self.store.register_ttl(session, "ns", a, 60, 1)
        args, d = self.link.take("register_ttl")
        self.assertEqual(args[:2], ("ns", a.key))
        self.assertEqual(args[3:5], ("1", 1060_000))  # signed, expires (ms)
        d.callback([b"OK", 7, b"1060000"])
        self.assertEqual(client.seen, [("registered", 1, 7, 1060.0)])
        self.clock.advance(59.9)
        self.assertEqual(self.link.runs, [])
        self.clock.advance(0.1)
        args, expire = self.link.take("expire")
        self.assertEqual(args[0], 1060_000)
        expire.callback([1, b"1090000"])  # another registration ends later
        self.clock.advance(29.9)
        self.assertEqual(self.link.runs, [])
        self.clock.advance(0.1)
        self.link.take("expire")[1].callback([1, b""])
        self.clock.advance(1000)
        self.assertEqual(self.link.runs, [])

    def test_an_earlier_expiry_moves_the_call_and_a_full_batch_runs_again(self) -> None:
        a, b = signed("A"), signed("B")
        first, _ = self.standard(a.key)
        second, _ = self.standard(b.key)
        self.store.register_ttl(first, "ns", a, 60, None)
        self.link.take("register_ttl")[1].callback([b"OK", 1, b"1060000"])
        self.store.register_ttl(second, "ns", b, 10, None)
        self.link.take("register_ttl")[1].callback([b"OK", 2, b"1010000"])
        self.clock.advance(10)
        self.link.take("expire")[1].callback([100, b"1010000"])  # a full batch: more due
        self.link.take("expire")[1].callback([3, b"1060000"])
        self.clock.advance(49.9)
        self.assertEqual(self.link.runs, [])
        self.clock.advance(0.1)
        self.link.take("expire")

    def test_not_elected_follows_only_its_own_registrations(self) -> None:
        a, b = signed("A"), signed("B")
        first, _ = self.standard(a.key)
        second, _ = self.standard(b.key)
        self.store.register_ttl(first, "ns", a, 10, None)
        self.link.take("register_ttl")[1].callback([b"OK", 1])
        self.store.register_ttl(second, "ns", b, 30, None)
        self.link.take("register_ttl")[1].callback([b"OK", 2])
        self.clock.advance(10)
        args, d = self.link.take("expire")
        self.assertEqual(args[2:], (self.store.daemon, 10_000))  # takes the election if free
        d.callback([1, b""])  # another daemon is elected: no hint of the fleet's next
        self.clock.advance(19.9)
        self.assertEqual(self.link.runs, [])
        self.clock.advance(0.1)
        self.link.take("expire")[1].callback([1, b""])
        self.clock.advance(1000)
        self.assertEqual(self.link.runs, [])

    def test_renewal_expires_what_other_daemons_registered(self) -> None:
        self.recover(0)
        self.clock.advance(10 / 3)
        self.link.take("lease")[1].callback(1)
        self.link.take("reap")[1].callback(0)
        self.link.take("expire")[1].callback([0, b"1020000"])  # learnt from Redis
        self.clock.advance(1020 - self.clock.seconds())
        self.link.take("expire")

    def test_discover_since_reads_sequence_expiry_and_the_fleet_epoch(self) -> None:
        a, b = signed("A"), peer("B", tcp_addr(2))
        session, client = self.standard(a.key)
        self.store.discover_since(session, None, 4, 10, 1, signed_only=False)
        args, d = self.link.take("discover_since")
        self.assertEqual(args, ("1", "", 4, 10, "0", 1000_000))
        entry_a = Registration("ns", a)
        entry_b = Registration("other", b)
        found: list[Registration] = []
        client.discovered = lambda request_id, ns, regs: found.extend(regs)  # type: ignore[method-assign]
        d.callback(
            [b"F" * 8, b"5", b"1060000", entry_bytes(entry_a), b"9", b"", entry_bytes(entry_b)]
        )
        self.assertEqual(
            [(r.namespace, r.peer.id, r.seq, r.expires) for r in found],
            [("ns", a.id, 5, 1060.0), ("other", b.id, 9, None)],
        )
        self.assertEqual(found[0].peer.signed_peer_record, a.signed_peer_record)
        self.assertEqual(self.store.epoch, b"F" * 8)

    def test_recovery_takes_the_fleet_epoch(self) -> None:
        self.link.on_up()
        args, d = self.link.take("lease")
        self.assertEqual((args[2], len(args[3])), ("0", 8))  # a candidate, kept if first
        d.callback(b"G" * 8)
        self.assertEqual(self.store.epoch, b"G" * 8)

    def test_refusals_from_the_script(self) -> None:
        a = signed("A")
        session, client = self.standard(a.key)
        self.store.register_ttl(session, "ns", a, 60, 1)
        self.link.take("register_ttl")[1].callback([b"LIMIT", b"too many registrations"])
        self.assertEqual(client.seen, [("refused", 1, Status.LIMIT_EXCEEDED)])
        self.assertEqual(self.link.runs, [])


# -- on a real redis-server ---------------------------------------------------------------


class Channel:
    """A standard stream's server side, without a stream: frames out, one waiter."""

    def __init__(self) -> None:
        self.received: list[Message] = []
        self._waiting: list[tuple[int, Deferred[None]]] = []

    def send(self, data: bytes) -> None:
        self.received += parse(data)
        for waiter in [w for w in self._waiting if w[0] <= len(self.received)]:
            self._waiting.remove(waiter)
            waiter[1].callback(None)

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        raise AssertionError("the session aborted")

    def until(self, count: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if len(self.received) >= count:
            d.callback(None)
        else:
            self._waiting.append((count, d))
        return d


class StandardPeer:
    """A libp2p peer speaking the standard dialect to one daemon's store."""

    def __init__(self, dialect: StandardDialect, seed: bytes) -> None:
        self.key = PrivateKey.from_seed(seed * 32)
        self.id = self.key.peer_id()
        self.text = peer_id_to_text(self.id)
        self.record = seal_peer_record(self.key, PeerRecord(self.id, 1, (tcp_addr(seed[0]),)))
        self.channel = Channel()
        self.session = StandardSession(dialect, self.channel, self.text, self.id, self, None)
        assert self.session.start()

    @inlineCallbacks
    def ask(self, message: Message):  # type: ignore[no-untyped-def]
        payload = message.SerializeToString()
        count = len(self.channel.received) + 1
        self.session.feed(encode_uvarint(len(payload)) + payload)
        yield self.channel.until(count)
        return self.channel.received[count - 1]

    def register(self, ns: str, ttl: int) -> Deferred[Message]:
        message = Message(type=Message.REGISTER)
        message.register.ns = ns
        message.register.signedPeerRecord = self.record
        message.register.ttl = ttl
        return self.ask(message)  # type: ignore[no-any-return]

    def unregister(self, ns: str) -> None:
        """Sent without waiting: UNREGISTER has no answer."""
        message = Message(type=Message.UNREGISTER, unregister=Message.Unregister(ns=ns))
        payload = message.SerializeToString()
        self.session.feed(encode_uvarint(len(payload)) + payload)

    def discover(self, ns: str, limit: int = 0, cookie: bytes = b"") -> Deferred[Message]:
        message = Message(type=Message.DISCOVER)
        message.discover.ns = ns
        if limit:
            message.discover.limit = limit
        if cookie:
            message.discover.cookie = cookie
        return self.ask(message)  # type: ignore[no-any-return]


LIMITS = Limits(ttl_min=1, ttl_default=60, ttl_max=600)


class StandardFleetTests(FleetTestCase):
    lease = 3.0  # renewals (and expiry runs) every second on every daemon

    @inlineCallbacks
    def daemon(self, lease: float | None = None, limits: Limits = LIMITS):  # type: ignore[no-untyped-def]
        daemon = Daemon(
            DaemonConfig(
                listen=("tcp:0:interface=127.0.0.1",),
                store=self.redis.url,
                lease=lease or self.lease,
                limits=limits,
            ),
            reactor,
        )
        daemon.startService()
        self.addCleanup(self.stop_daemon, daemon)
        yield self.store(daemon).when(ready=True)
        return daemon

    def dialect(self, daemon: Daemon) -> StandardDialect:
        store = self.store(daemon)
        assert store.epoch is not None
        return StandardDialect(
            store, StandardCodec(LIMITS), reactor, LogLimiter(reactor.seconds), epoch=store.epoch
        )

    @inlineCallbacks
    def test_ttl_cookies_and_expiry_announced_once(self):  # type: ignore[no-untyped-def]
        one = yield self.daemon()
        two = yield self.daemon()
        three = yield self.daemon()
        stores = [self.store(d) for d in (one, two, three)]
        self.assertEqual(len({s.epoch for s in stores}), 1)  # the fleet's epoch
        dialect_one, dialect_two = self.dialect(one), self.dialect(two)

        watcher = yield self.client(three)
        seen = Watcher()
        yield watcher.rendezvous("app", seen)

        alice = StandardPeer(dialect_one, b"a")
        bob = StandardPeer(dialect_one, b"b")
        answers = yield gatherResults([alice.register("app", 60), bob.register("app", 600)])
        self.assertEqual(
            [(m.registerResponse.status, m.registerResponse.ttl) for m in answers],
            [(Message.OK, 60), (Message.OK, 600)],
        )
        yield seen.until(2)
        self.assertEqual(seen.events, [("register", alice.text), ("register", bob.text)])

        # DISCOVER pages through daemon two, goes on with its cookie through daemon one.
        reader = StandardPeer(dialect_two, b"r")
        elsewhere = StandardPeer(dialect_one, b"s")
        page = yield reader.discover("app", limit=1)
        self.assertEqual(
            [r.signedPeerRecord for r in page.discoverResponse.registrations], [alice.record]
        )
        rest = yield elsewhere.discover("app", cookie=page.discoverResponse.cookie)
        self.assertEqual(
            [(r.signedPeerRecord, r.ttl) for r in rest.discoverResponse.registrations],
            [(bob.record, 600)],
        )
        nothing = yield reader.discover("app", cookie=rest.discoverResponse.cookie)
        self.assertEqual(list(nothing.discoverResponse.registrations), [])

        # Alice re-registers for one second: replaced, new since the cookie, then expired.
        answer = yield alice.register("app", 1)
        self.assertEqual(answer.registerResponse.ttl, 1)
        again = yield elsewhere.discover("app", cookie=nothing.discoverResponse.cookie)
        self.assertEqual(
            [r.signedPeerRecord for r in again.discoverResponse.registrations], [alice.record]
        )
        yield seen.until(4)
        self.assertEqual(seen.events[2:], [("register", alice.text), ("unregister", alice.text)])

        # Every daemon runs expiry once more; then a marker shows nothing else was published.
        yield gatherResults([store._run_expiry() for store in stores])
        marker = StandardPeer(dialect_two, b"m")
        yield marker.register("app", 60)
        yield seen.until(5)
        self.assertEqual(seen.events[4:], [("register", marker.text)])
        found = yield reader.discover("app")
        self.assertEqual(
            [r.signedPeerRecord for r in found.discoverResponse.registrations],
            [bob.record, marker.record],
        )
        live = yield self.client(two)
        entries = yield live.discover("app")
        self.assertEqual([e.peer_id for e in entries], [bob.text, marker.text])

    @inlineCallbacks
    def test_ownership_between_dialects(self):  # type: ignore[no-untyped-def]
        """A raw session cannot take over a TTL registration; its own id's session can."""
        one = yield self.daemon()
        two = yield self.daemon()
        alice = StandardPeer(self.dialect(one), b"a")
        yield alice.register("app", 60)
        raw = yield self.client(two)
        yield self.assertFailure(raw.register("app", alice.text), NotAuthorized)
        store = self.store(two)
        holder = Recorder()
        session = store.open_session(holder, alice.id)  # authenticated as alice (libp2p)
        registration = Registration("app", Peer(alice.text, alice.id, (tcp_addr(9),)))
        done: Deferred[None] = Deferred()
        holder.discovered = lambda *_: done.callback(None)  # type: ignore[method-assign]
        store.register(session, "app", registration.peer, 1)
        store.discover(session, "app", 10, 2)
        yield done
        self.assertEqual(holder.seen, [])  # no refusal
        found = yield raw.discover("app")
        self.assertEqual([(e.peer_id, e.addrs) for e in found], [(alice.text, (tcp_addr(9),))])
        store.close_session(session)  # the live one ends: gone, not back to the TTL one
        reader = StandardPeer(self.dialect(two), b"r")  # after the drop, on one connection
        later = yield reader.discover("app")
        self.assertEqual(list(later.discoverResponse.registrations), [])

    @inlineCallbacks
    def test_ttl_registration_takes_over_a_live_one_held_elsewhere(self):  # type: ignore[no-untyped-def]
        """The raw session on daemon one loses the id, as on one daemon: it is pushed
        alice's registration (no longer its own) and cannot take the id back."""
        one = yield self.daemon()
        two = yield self.daemon()
        alice = StandardPeer(self.dialect(two), b"a")
        raw = yield self.client(one)
        yield raw.register("app", alice.text, [tcp_addr(9)])
        seen = Watcher()
        yield raw.rendezvous("app", seen)
        self.assertEqual(self.store(one).stats().registrations, 1)
        yield alice.register("app", 60)
        yield seen.until(1)
        self.assertEqual(seen.events, [("register", alice.text)])
        self.assertEqual(self.store(one).stats().registrations, 0)
        yield self.assertFailure(raw.register("app", alice.text, [tcp_addr(9)]), NotAuthorized)

    @inlineCallbacks
    def test_authenticated_unregister_ends_the_ids_live_registration_elsewhere(self):  # type: ignore[no-untyped-def]
        one = yield self.daemon()
        two = yield self.daemon()
        alice = StandardPeer(self.dialect(two), b"a")
        store = self.store(one)
        holder = Recorder()
        session = store.open_session(holder, alice.id)  # alice over libp2p, live dialect
        live = Peer(alice.text, alice.id, (tcp_addr(9),))
        done: Deferred[None] = Deferred()
        holder.discovered = lambda *_: done.callback(None)  # type: ignore[method-assign]
        store.register(session, "app", live, 1)
        store.discover(session, "app", 10, 2)
        yield done
        watcher = yield self.client(one)
        seen = Watcher()
        yield watcher.rendezvous("app", seen)
        self.assertEqual(seen.events, [("register", alice.text)])

        alice.unregister("app")  # the same peer, through daemon two
        yield seen.until(2)
        self.assertEqual(seen.events[1:], [("unregister", alice.text)])
        self.assertEqual(store.stats().registrations, 0)
        self.assertEqual(holder.seen, [])

        again: Deferred[None] = Deferred()
        holder.discovered = lambda *_: again.callback(None)  # type: ignore[method-assign]
        store.register(session, "app", live, 3)
        store.discover(session, "app", 10, 4)
        yield again
        yield seen.until(3)
        self.assertEqual(seen.events[2:], [("register", alice.text)])
        self.assertEqual(store.stats().registrations, 1)

    @inlineCallbacks
    def test_all_namespaces_signed_only_and_unregister_elsewhere(self):  # type: ignore[no-untyped-def]
        one = yield self.daemon()
        two = yield self.daemon()
        alice = StandardPeer(self.dialect(one), b"a")
        bob = StandardPeer(self.dialect(two), b"b")
        yield alice.register("app", 60)
        yield bob.register("other", 60)
        live = yield self.client(two)
        yield live.register("app", peer("C").id, [tcp_addr(3)])  # no signed record

        reader = StandardPeer(self.dialect(two), b"r")
        page = yield reader.discover("")
        self.assertEqual(
            [(r.ns, r.signedPeerRecord) for r in page.discoverResponse.registrations],
            [("app", alice.record), ("other", bob.record)],
        )
        more = yield StandardPeer(self.dialect(one), b"s").discover(
            "", cookie=page.discoverResponse.cookie
        )
        self.assertEqual(list(more.discoverResponse.registrations), [])

        # The pre-spec layout (signed_only=False) sees the live registration too.
        store = self.store(one)
        answers = Answers()
        session = store.open_session(answers, None)
        d = answers.expect()
        store.discover_since(session, None, 0, 10, 1, signed_only=False)
        _, found = yield d
        self.assertEqual(
            [(r.peer.id, r.expires is None) for r in found],
            [(alice.text, False), (bob.text, False), (peer("C").id, True)],
        )
        self.assertEqual(sorted(r.seq for r in found), [r.seq for r in found])

        # Alice's UNREGISTER through daemon two removes it: announced once, on every daemon.
        watcher = yield self.client(one)
        seen = Watcher()
        yield watcher.rendezvous("app", seen)
        self.assertEqual(seen.events, [("register", alice.text), ("register", peer("C").id)])
        StandardPeer(self.dialect(two), b"a").unregister("app")
        yield seen.until(3)
        self.assertEqual(seen.events[2:], [("unregister", alice.text)])
        found = yield reader.discover("app")
        self.assertEqual(list(found.discoverResponse.registrations), [])

    @inlineCallbacks
    def test_per_peer_limit_and_reregistration_order(self):  # type: ignore[no-untyped-def]
        one = yield self.daemon(limits=Limits(ttl_min=1, max_registrations_per_peer=1))
        two = yield self.daemon()
        alice = StandardPeer(self.dialect(one), b"a")
        first = yield alice.register("a", 60)
        self.assertEqual(first.registerResponse.status, Message.OK)
        refused = yield alice.register("b", 60)  # one TTL registration per peer, fleet-wide
        self.assertEqual(refused.registerResponse.status, Message.E_UNAVAILABLE)
        again = yield alice.register("a", 120)  # a replacement adds none
        self.assertEqual(again.registerResponse.status, Message.OK)

        # A live re-registration is a change: it moves past a cookie's position.
        live = yield self.client(two)
        yield live.register("a", peer("C").id, [tcp_addr(3)])
        store = self.store(two)
        answers = Answers()
        session = store.open_session(answers, None)
        d = answers.expect()
        store.discover_since(session, "a", 0, 10, 1, signed_only=False)
        _, found = yield d
        self.assertEqual([r.peer.id for r in found], [alice.text, peer("C").id])
        position = found[0].seq
        yield live.register("a", peer("C").id, [tcp_addr(4)])
        d = answers.expect()
        store.discover_since(session, "a", position, 10, 2, signed_only=False)
        _, found = yield d
        self.assertEqual(
            [(r.peer.id, r.peer.addrs) for r in found], [(peer("C").id, (tcp_addr(4),))]
        )
        d = answers.expect()
        store.discover_since(session, "a", position, 10, 3)  # signed only: not the live one
        _, found = yield d
        self.assertEqual(found, [])

    @inlineCallbacks
    def test_expired_by_the_fleet_when_its_daemon_is_gone(self):  # type: ignore[no-untyped-def]
        one = yield self.daemon()
        two = yield self.daemon()
        watcher = yield self.client(two)
        seen = Watcher()
        yield watcher.rendezvous("app", seen)
        alice = StandardPeer(self.dialect(one), b"a")
        yield alice.register("app", 1)
        yield seen.until(1)
        first, other = self.store(one), self.store(two)
        elected = yield other.link.call("GET", other.link.prefix + "expirer")
        if elected is None:  # no renewal ran yet: daemon one takes the election now
            yield first._run_expiry()
            elected = yield other.link.call("GET", other.link.prefix + "expirer")
        yield one.stopService()  # its sessions' registrations go; TTL ones stay
        after = yield other.link.call("GET", other.link.prefix + "expirer")
        if elected == first.daemon.encode():
            self.assertIsNone(after)  # a stopping daemon leaves the election free
        found = yield StandardPeer(self.dialect(two), b"r").discover("app")
        self.assertEqual(
            [r.signedPeerRecord for r in found.discoverResponse.registrations], [alice.record]
        )
        yield seen.until(2)  # expired by daemon two, learnt at a lease renewal
        self.assertEqual(seen.events, [("register", alice.text), ("unregister", alice.text)])
