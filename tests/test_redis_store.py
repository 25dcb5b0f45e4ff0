"""`RedisStore`'s logic on a fake link and a `Clock`: order, joins, outages, resyncs."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from rendezvous.entry import entry_bytes
from rendezvous.model import Announcement, Refused, Registration, Status
from rendezvous.store.redis.link import Encoded, LinkDown
from rendezvous.store.redis.store import RedisStore
from rendezvous.store.redis.target import RedisTarget

from .helpers import peer, tcp_addr


class FakeLink:
    """Records script runs and subscriptions; the test answers them."""

    partitions = 1
    claims = False
    prefix = "rendezvous:"

    def __init__(self) -> None:
        self.target = RedisTarget("fake")
        self.up = True
        self.runs: list[tuple[str, tuple[Any, ...], Deferred[Any]]] = []
        self.subscriptions: list[tuple[str, Deferred[None]]] = []
        self.on_up: Any = None
        self.on_down: Any = None
        self.on_message: Any = None
        self.on_eviction: Any = None
        self.on_moved: Any = None
        self.daemon_subscriptions = 0

    def start(self) -> None:
        pass

    def stop(self) -> Deferred[None]:
        return succeed(None)

    def reset(self) -> None:
        pass

    def partition_of(self, namespace: str) -> int:
        return 0

    def home_of(self, key: bytes) -> int:
        return 0

    def key(self, name: str, partition: int = 0) -> str:
        return self.prefix + name

    def run(self, script: Any, *args: Any, partition: int = 0) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.runs.append((script.name, args, d))
        return d

    def subscribe(self, namespace: str) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.subscriptions.append((namespace, d))
        return d

    def unsubscribe(self, namespace: str) -> None:
        pass

    def subscribe_daemon(self, daemon: str) -> Deferred[None]:
        self.daemon_subscriptions += 1
        return succeed(None)

    def take(self, name: str) -> tuple[tuple[Any, ...], Deferred[Any]]:
        for i, (script, args, d) in enumerate(self.runs):
            if script == name:
                del self.runs[i]
                return args, d
        raise AssertionError(f"no {name} run among {[r[0] for r in self.runs]}")


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def announce(self, announcement: Announcement) -> None:
        self.seen.append((announcement.change.value, announcement.registration.peer.id))

    def snapshot(self, namespace: str, registrations: list[Registration]) -> None:
        self.seen.append(("snapshot", [r.peer.id for r in registrations]))

    def discovered(
        self, request_id: int | None, namespace: str, registrations: list[Registration]
    ) -> None:
        self.seen.append(("discovered", request_id, [r.peer.id for r in registrations]))

    def refused(self, request_id: int | None, refusal: Refused) -> None:
        self.seen.append(("refused", request_id, refusal.status))


def published(seq: int, change: str, registration: Registration, origin: str = "") -> bytes:
    key = registration.peer.key
    entry = entry_bytes(registration)
    return (
        f"{seq}:{origin}:{change}".encode()
        + len(key).to_bytes(2, "big")
        + key
        + len(entry).to_bytes(4, "big")
        + entry
    )


def snapshot_reply(seq: int, *registrations: Registration) -> list[bytes]:
    reply = [str(seq).encode()]
    for registration in registrations:
        reply += [registration.peer.key, entry_bytes(registration)]
    return reply


def expanded(encoded: Encoded) -> list[bytes]:
    """The arguments in ``encoded`` (RESP bulk strings), checked against its count."""
    out, data = [], encoded.data
    while data:
        head, _, data = data.partition(b"\r\n")
        size = int(head[1:])
        out.append(data[:size])
        data = data[size + 2 :]
    assert len(out) == encoded.count, (out, encoded.count)
    return out


def discovered_reply(version: int, *registrations: Registration) -> list[bytes]:
    blob = b""
    for registration in registrations:
        stored = b"d/1|" + entry_bytes(registration)
        blob += len(stored).to_bytes(4, "big") + stored
    return [str(version).encode(), blob]


A = Registration("ns", peer("A", tcp_addr(1)))
B = Registration("ns", peer("B", tcp_addr(2)))
C = Registration("ns", peer("C", tcp_addr(3)))


class StoreTestCase(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.link = FakeLink()
        self.store = RedisStore(self.link, self.clock, lease=10.0)  # type: ignore[arg-type]

    def session(self, identity: bytes | None = None) -> tuple[Any, Recorder]:
        client = Recorder()
        return self.store.open_session(client, identity), client

    def subscribed(self, seq: int, *registrations: Registration) -> tuple[Any, Recorder]:
        session, client = self.session()
        self.store.subscribe(session, "ns", None)
        _, d = self.link.subscriptions.pop()
        d.callback(None)
        _, snap = self.link.take("snapshot")
        snap.callback(snapshot_reply(seq, *registrations))
        return session, client

    def answer_registers(self, *results: bytes) -> tuple[Any, ...]:
        """The REGISTERs of this turn go in one script run, answered with ``results``."""
        self.clock.advance(0)
        args, d = self.link.take("register_many")
        d.callback(b",".join(results))
        return args

    def recover(self, seq: int, *registrations: Registration) -> None:
        """The link comes back: lease, prune, re-assertions, then each namespace's resync."""
        self.link.up = True
        self.link.on_up()
        self.link.take("lease")[1].callback(1)
        self.link.take("prune")[1].callback(1)
        while any(run[0] == "sync_session" for run in self.link.runs):
            self.link.take("sync_session")[1].callback([b"OK"])
        for _, d in self.link.subscriptions:
            d.callback(None)
        self.link.subscriptions.clear()
        if any(run[0] == "snapshot" for run in self.link.runs):
            self.link.take("snapshot")[1].callback(snapshot_reply(seq, *registrations))


class StoreLogicTests(StoreTestCase):
    def test_answers_keep_request_order(self) -> None:
        """A refusal decided here waits for the answer Redis has not given yet."""
        session, client = self.session(identity=A.peer.key)
        self.store.discover(session, "ns", 10, 1)
        self.store.register(session, "ns", B.peer, 2)  # not the authenticated id
        self.assertEqual(client.seen, [])
        _, d = self.link.take("discover")
        d.callback(discovered_reply(5, A))
        self.assertEqual(
            client.seen,
            [("discovered", 1, [A.peer.id]), ("refused", 2, Status.NOT_AUTHORIZED)],
        )

    def test_snapshot_joined_to_pushes_by_sequence(self) -> None:
        session, client = self.session()
        self.store.subscribe(session, "ns", None)
        _, subscribed = self.link.subscriptions.pop()
        subscribed.callback(None)
        # Published before and after the snapshot was read, arriving before its reply.
        self.link.on_message("ns", published(7, "R", B))
        self.link.on_message("ns", published(8, "R", C))
        _, snap = self.link.take("snapshot")
        snap.callback(snapshot_reply(7, A, B))
        self.link.on_message("ns", published(8, "R", C))  # a duplicate is dropped
        self.link.on_message("ns", published(9, "U", A))
        # C, buffered while the snapshot was read, is in it: told once, nothing missed.
        self.assertEqual(
            client.seen,
            [("snapshot", [A.peer.id, B.peer.id, C.peer.id]), ("unregister", A.peer.id)],
        )

    def test_own_change_never_pushed_back_to_its_maker(self) -> None:
        """Filtered by the session that made the change, not by what it holds when the
        announcement comes back: its own UNREGISTER is not echoed."""
        maker, maker_seen = self.subscribed(3, A)
        other, other_seen = self.session()
        self.store.subscribe(other, "ns", None)  # the namespace is mirrored already
        origin = f"{self.store.daemon}/{maker.sid}"
        self.link.on_message("ns", published(4, "U", A, origin))
        self.link.on_message("ns", published(5, "R", B, "elsewhere/1"))
        self.assertEqual(maker_seen.seen[1:], [("register", B.peer.id)])
        self.assertEqual(other_seen.seen[1:], [("unregister", A.peer.id), ("register", B.peer.id)])

    def test_own_registration_not_pushed_even_before_the_reply(self) -> None:
        session, client = self.subscribed(3)
        self.store.register(session, "ns", A.peer, None)
        origin = f"{self.store.daemon}/{session.sid}"  # as REGISTER_MANY names its maker
        self.link.on_message("ns", published(4, "R", A, origin))  # pub/sub beats the reply
        self.answer_registers(b"4")
        self.assertEqual(client.seen, [("snapshot", [])])
        self.assertEqual(self.store.stats().registrations, 1)

    def test_a_change_made_before_a_session_held_the_key_is_pushed_to_it(self) -> None:
        """A session that takes over an id (its holder's daemon was lost) is told the
        old registration ended: that change was not its own, although the same script
        made both and the reply may come first."""
        session, client = self.subscribed(3, A)
        self.store.register(session, "ns", A.peer, None)
        self.answer_registers(b"5")  # the reply first: it holds A from change 5 on
        self.link.on_message("ns", published(4, "U", A))  # the lost daemon's, ended
        origin = f"{self.store.daemon}/{session.sid}"
        self.link.on_message("ns", published(5, "R", A, origin))  # its own: not told
        self.link.on_message("ns", published(6, "U", A))  # held then: not told either
        self.assertEqual(client.seen, [("snapshot", [A.peer.id]), ("unregister", A.peer.id)])

    def test_outage_refuses_quickly_and_keeps_sessions(self) -> None:
        watcher, _ = self.subscribed(3, A)
        other, other_client = self.session()
        self.store.register(other, "ns", B.peer, 1)
        self.link.up = False
        self.clock.advance(0)
        _, d = self.link.take("register_many")
        d.errback(LinkDown("gone"))
        self.link.on_down()
        self.store.discover(other, "ns", 10, 2)
        self.link.take("discover")[1].errback(LinkDown("gone"))
        self.store.subscribe(other, "ns", 3)
        self.assertEqual(
            other_client.seen,
            [
                ("refused", 1, Status.UNAVAILABLE),
                ("refused", 2, Status.UNAVAILABLE),
                ("refused", 3, Status.UNAVAILABLE),
            ],
        )
        self.assertTrue(watcher.open)
        self.assertFalse(self.store.ready)

    def test_a_refused_subscription_is_forgotten(self) -> None:
        """A namespace that could not be read is no subscription of the session waiting
        for it; asking again (twice) makes it one, once."""
        session, client = self.session()
        self.store.subscribe(session, "ns", 1)
        self.link.subscriptions.pop()[1].callback(None)
        self.link.take("snapshot")[1].errback(LinkDown("gone"))
        self.assertEqual(client.seen, [("refused", None, Status.UNAVAILABLE)])
        self.assertEqual(session.subscriptions, [])
        self.store.subscribe(session, "ns", 2)
        self.store.subscribe(session, "ns", 3)
        self.assertEqual(session.subscriptions, ["ns"])

    def test_resync_tells_what_was_missed(self) -> None:
        _, client = self.subscribed(10, A, B)
        self.link.on_down()
        self.recover(12, A, C)  # Redis kept its data: B left and C came meanwhile
        self.assertEqual(client.seen[1:], [("unregister", B.peer.id), ("register", C.peer.id)])
        self.assertTrue(self.store.ready)
        self.link.on_message("ns", published(12, "R", C))  # already told
        self.assertEqual(len(client.seen), 3)

    def test_redis_lost_its_data(self) -> None:
        """Re-asserted registrations are not announced; the rest are, after a lease."""
        _, client = self.subscribed(10, A, B)
        self.link.on_down()
        self.recover(0)  # empty: the daemons have not re-asserted yet
        self.assertEqual(client.seen, [("snapshot", [A.peer.id, B.peer.id])])
        self.link.on_message("ns", published(1, "R", A))  # A's daemon re-asserts it
        self.clock.advance(9.9)
        self.assertEqual(len(client.seen), 1)
        self.clock.advance(0.1)  # B's daemon did not come back within a lease
        self.assertEqual(client.seen[1:], [("unregister", B.peer.id)])
        self.clock.advance(100)
        self.assertEqual(len(client.seen), 2)

    def test_clean_stop_drops_the_daemon(self) -> None:
        session, _ = self.session()
        self.store.register(session, "ns", A.peer, None)
        self.answer_registers(b"1")
        self.store.stop()
        args, _ = self.link.take("drop_daemon")
        self.assertEqual(args, (self.store.daemon,))


class RecoveryTests(StoreTestCase):
    def test_lost_lease_is_taken_again_and_registrations_reasserted(self) -> None:
        session, _ = self.session()
        self.store.register(session, "ns", A.peer, None)
        self.answer_registers(b"1")
        self.recover(3)
        self.clock.advance(10 / 3)  # the lease is renewed every third of it
        args, renew = self.link.take("lease")
        self.assertEqual(args[-1], "1")
        renew.callback(0)  # it had expired: reaped by the fleet meanwhile
        self.assertEqual(self.link.take("lease")[0][2], "0")

    def test_reassertion_conflict_drops_the_registration(self) -> None:
        """Another session took the peer id while this daemon was away."""
        elsewhere = Registration("other", B.peer)
        session, _ = self.session()
        self.store.register(session, "ns", A.peer, None)
        self.answer_registers(b"1")
        self.store.register(session, "other", B.peer, None)
        self.answer_registers(b"1")
        self.link.on_down()
        self.link.up = True
        self.link.on_up()
        self.link.take("lease")[1].callback(1)
        self.link.take("prune")[1].callback(1)
        args, sync = self.link.take("sync_session")
        self.assertEqual(
            args[3:],
            (
                *("ns", A.peer.key, entry_bytes(A), "0"),
                *("other", B.peer.key, entry_bytes(elsewhere), "0"),
            ),
        )
        key = A.peer.key
        sync.callback([b"OK", len(key).to_bytes(2, "big") + key + b"ns"])
        self.assertEqual(self.store.stats().registrations, 1)
        self.assertNotIn(key, session.own_keys)
        self.assertTrue(self.store.ready)


def eviction(seq: int, session: Any, registration: Registration) -> bytes:
    key = registration.peer.key
    member = len(key).to_bytes(2, "big") + key + registration.namespace.encode()
    return f"{seq}:{session.sid}:".encode() + member


class EvictionTests(StoreTestCase):
    """Another session (on any daemon) took or removed a registration of ours."""

    def registered(self, session: Any, registration: Registration, seq: int) -> None:
        self.store.register(session, registration.namespace, registration.peer, None)
        self.answer_registers(str(seq).encode())

    def test_forgotten_and_its_successor_pushed(self) -> None:
        session, client = self.subscribed(3)
        self.registered(session, A, 4)
        self.link.on_eviction(eviction(5, session, A))  # a TTL registration of A's id
        self.link.on_message("ns", published(6, "R", A))
        self.assertEqual(self.store.stats().registrations, 0)
        self.assertNotIn(A.peer.key, session.own_keys)
        self.assertEqual(client.seen, [("snapshot", []), ("register", A.peer.id)])
        self.store.close_session(session)
        self.assertEqual([run[0] for run in self.link.runs], ["drop_session"])

    def test_an_eviction_older_than_the_registration_is_ignored(self) -> None:
        """Re-registered after the eviction; its notice came after the reply."""
        session, _ = self.session()
        self.registered(session, A, 9)
        self.link.on_eviction(eviction(8, session, A))
        self.assertEqual(self.store.stats().registrations, 1)
        self.assertIn(A.peer.key, session.own_keys)

    def test_unknown_sessions_and_bad_notices_change_nothing(self) -> None:
        session, _ = self.session()
        self.registered(session, A, 2)
        other, _ = self.session()
        self.store.close_session(other)
        self.link.runs.clear()
        self.link.on_eviction(eviction(5, other, A))
        self.link.on_eviction(eviction(5, session, B))
        self.link.on_eviction(b"5:x:" + eviction(5, session, A))
        self.link.on_eviction(b"5:1:\x00")
        self.assertEqual(self.store.stats().registrations, 1)

    def test_recovery_listens_for_evictions_first(self) -> None:
        self.recover(0)
        self.assertEqual(self.link.daemon_subscriptions, 1)
        self.assertTrue(self.store.ready)


class BatchTests(StoreTestCase):
    """The REGISTERs of one reactor turn go to Redis in one script run."""

    def test_one_run_for_the_registers_of_a_turn(self) -> None:
        one, seen_one = self.session()
        two, seen_two = self.session(identity=B.peer.key)
        self.store.register(one, "ns", A.peer, 1)
        self.store.register(two, "ns", B.peer, 2)
        self.store.register(one, "other", C.peer, 3)
        self.assertEqual(self.link.runs, [])  # not before the turn ends
        args = self.answer_registers(b"7", b"8", b"9")
        self.assertEqual(self.link.runs, [])
        limits = self.store.limits
        self.assertEqual(
            args[:3],
            (self.store.daemon, limits.max_registrations_per_session, limits.max_registrations),
        )
        first, second = one.sid.encode(), two.sid.encode()
        self.assertEqual(
            expanded(args[3]),
            [
                *(first, b"ns", A.peer.key, entry_bytes(A), b"1"),
                *(second, b"ns", B.peer.key, entry_bytes(B), b"0"),
                *(first, b"other", C.peer.key, entry_bytes(Registration("other", C.peer)), b"1"),
            ],
        )
        self.assertEqual((seen_one.seen, seen_two.seen), ([], []))
        self.assertEqual(self.store.stats().registrations, 3)
        self.assertEqual(one.entries[("ns", A.peer.key)].seq, 7)
        self.assertEqual(one.entries[("other", C.peer.key)].seq, 9)
        self.assertEqual(two.entries[("ns", B.peer.key)].seq, 8)
        self.assertEqual(one.own_keys, {A.peer.key: 1, C.peer.key: 1})

    def test_refusals_answer_their_own_requests_in_order(self) -> None:
        """One item refused, the others accepted: each request gets its own answer."""
        session, client = self.session()
        self.store.discover(session, "elsewhere", 10, 1)
        for i, registration in enumerate((A, B, C, A), start=2):
            self.store.register(session, "ns", registration.peer, i)
        self.store.register(session, "ns", B.peer, 6)
        self.assertEqual([run[0] for run in self.link.runs], ["discover"])  # not flushed
        self.answer_registers(b"3", b"AUTH", b"4", b"LIMIT", b"FULL")
        self.assertEqual(client.seen, [])  # the DISCOVER before them is not answered yet
        self.link.take("discover")[1].callback(discovered_reply(4))
        self.assertEqual(
            client.seen,
            [
                ("discovered", 1, []),
                ("refused", 3, Status.NOT_AUTHORIZED),
                ("refused", 5, Status.LIMIT_EXCEEDED),
                ("refused", 6, Status.UNAVAILABLE),
            ],
        )
        self.assertEqual(set(session.entries), {("ns", A.peer.key), ("ns", C.peer.key)})
        self.assertEqual(session.own_keys, {A.peer.key: 1, C.peer.key: 1})
        self.assertEqual(self.store.stats().registrations, 2)

    def test_link_down_mid_batch_answers_every_request_unavailable(self) -> None:
        one, seen_one = self.session()
        two, seen_two = self.session()
        self.store.register(one, "ns", A.peer, 1)
        self.store.register(two, "ns", B.peer, 2)
        self.store.register(one, "ns", C.peer, 3)
        self.clock.advance(0)
        _, d = self.link.take("register_many")
        self.link.up = False
        d.errback(LinkDown("gone"))
        self.link.on_down()
        unavailable = Status.UNAVAILABLE
        self.assertEqual(seen_one.seen, [("refused", 1, unavailable), ("refused", 3, unavailable)])
        self.assertEqual(seen_two.seen, [("refused", 2, unavailable)])
        self.assertEqual((one.own_keys, two.own_keys, one.entries), ({}, {}, {}))
        self.assertEqual(self.store.stats().registrations, 0)

    def test_an_error_in_one_item_or_a_bad_reply(self) -> None:
        session, client = self.session()
        self.store.register(session, "ns", A.peer, 1)
        self.store.register(session, "ns", B.peer, 2)
        self.answer_registers(b"EOOM command not allowed", b"5")
        self.store.register(session, "ns", C.peer, 3)
        self.answer_registers(b"6", b"7")  # one item too many: nothing is trusted
        self.assertEqual(
            client.seen, [("refused", 1, Status.UNAVAILABLE), ("refused", 3, Status.UNAVAILABLE)]
        )
        self.assertEqual(set(session.entries), {("ns", B.peer.key)})

    def test_a_lost_lease_refuses_and_recovers(self) -> None:
        session, client = self.session()
        self.store.register(session, "ns", A.peer, 1)
        self.store.register(session, "ns", B.peer, 2)
        self.answer_registers(b"LEASE", b"LEASE")
        self.assertEqual(
            client.seen, [("refused", 1, Status.UNAVAILABLE), ("refused", 2, Status.UNAVAILABLE)]
        )
        self.assertEqual([run[0] for run in self.link.runs], ["lease"])  # recovery, once

    def test_other_requests_go_after_the_registers_before_them(self) -> None:
        session, _ = self.session()
        self.store.register(session, "ns", A.peer, 1)
        self.store.unregister(session, "ns", A.peer.key, 2)
        self.store.register(session, "ns", B.peer, 3)
        self.store.discover(session, "ns", 10, 4)  # reads what the REGISTER before it wrote
        self.store.discover(session, "other", 10, 5)  # nothing of this turn is in it
        self.store.close_session(session)
        self.assertEqual(
            [run[0] for run in self.link.runs],
            [
                "register_many",
                "unregister",
                "register_many",
                "discover",
                "discover",
                "drop_session",
            ],
        )
        self.clock.advance(0)
        self.assertEqual(len(self.link.runs), 6)

    def test_a_full_batch_goes_at_once(self) -> None:
        self.store.batch_size = 2
        session, _ = self.session()
        for registration in (A, B, C):
            self.store.register(session, "ns", registration.peer, None)
        self.assertEqual([run[0] for run in self.link.runs], ["register_many"])
        self.clock.advance(0)
        self.assertEqual([run[0] for run in self.link.runs], ["register_many"] * 2)
        self.assertEqual([len(expanded(run[1][3])) for run in self.link.runs], [2 * 5, 5])

    def test_a_session_closed_before_the_reply(self) -> None:
        session, client = self.session()
        self.store.register(session, "ns", A.peer, 1)
        self.clock.advance(0)
        self.store.close_session(session)
        self.link.take("register_many")[1].callback(b"3")
        self.assertEqual(self.store.stats().registrations, 0)
        self.assertEqual(session.entries, {})
        self.assertEqual([run[0] for run in self.link.runs], ["drop_session"])
        self.assertEqual(client.seen, [])


class DiscoverTests(StoreTestCase):
    """A DISCOVER of a namespace unchanged since the last one is answered from it."""

    def discover(self, session: Any, limit: int, request_id: int) -> tuple[Any, ...]:
        self.store.discover(session, "ns", limit, request_id)
        args, d = self.link.take("discover")
        self.discovered = d
        return args

    def test_unchanged_namespace_answered_from_the_last_read(self) -> None:
        session, client = self.session()
        self.assertEqual(self.discover(session, 10, 1), ("ns", 10, b""))
        self.discovered.callback(discovered_reply(7, A, B))
        self.assertEqual(self.discover(session, 1, 2), ("ns", 1, b"7"))  # within what it read
        self.discovered.callback([b"7"])
        self.assertEqual(self.discover(session, 20, 3), ("ns", 20, b"7"))  # it read them all
        self.discovered.callback([b"7"])
        self.discover(session, 10, 4)
        self.discovered.callback(discovered_reply(9, B, C))  # changed: read again
        self.assertEqual(
            client.seen,
            [
                ("discovered", 1, [A.peer.id, B.peer.id]),
                ("discovered", 2, [A.peer.id]),
                ("discovered", 3, [A.peer.id, B.peer.id]),
                ("discovered", 4, [B.peer.id, C.peer.id]),
            ],
        )

    def test_a_larger_limit_reads_again(self) -> None:
        session, _ = self.session()
        self.discover(session, 2, 1)
        self.discovered.callback(discovered_reply(7, A, B))
        self.assertEqual(self.discover(session, 3, 2), ("ns", 3, b""))
        self.assertEqual(self.discover(session, 0, 3), ("ns", 0, b""))
        self.discovered.callback(discovered_reply(7, A, B, C))
        self.assertEqual(self.discover(session, 3, 4), ("ns", 3, b"7"))

    def test_forgotten_when_redis_is_lost(self) -> None:
        session, _ = self.session()
        self.discover(session, 10, 1)
        self.discovered.callback(discovered_reply(7, A))
        self.link.on_down()
        self.recover(0)
        self.assertEqual(self.discover(session, 10, 2), ("ns", 10, b""))

    def test_bad_data(self) -> None:
        session, client = self.session()
        self.discover(session, 10, 1)
        self.discovered.callback([b"7", b"\x00\x00\x00\x09d/1|x"])
        self.discover(session, 10, 2)
        self.discovered.callback([b"7", b"\x00\x00\x00\x03abc"])
        self.assertEqual(
            client.seen,
            [("refused", 1, Status.INTERNAL_ERROR), ("refused", 2, Status.INTERNAL_ERROR)],
        )

    def test_one_read_for_the_discovers_of_a_turn(self) -> None:
        one, seen_one = self.session()
        two, seen_two = self.session()
        self.store.discover(one, "ns", 10, 1)
        self.store.discover(two, "ns", 1, 2)  # within the first one's limit
        self.store.discover(two, "ns", 20, 3)  # more: read again
        self.assertEqual(
            [(run[0], run[1][1]) for run in self.link.runs],
            [("discover", 10)] * 1 + [("discover", 20)],
        )
        self.link.take("discover")[1].callback(discovered_reply(7, A, B))
        self.link.take("discover")[1].callback(discovered_reply(7, A, B))
        self.assertEqual(seen_one.seen, [("discovered", 1, [A.peer.id, B.peer.id])])
        self.assertEqual(
            seen_two.seen,
            [("discovered", 2, [A.peer.id]), ("discovered", 3, [A.peer.id, B.peer.id])],
        )

    def test_a_write_between_discovers_is_read(self) -> None:
        """Read your writes: a DISCOVER after a REGISTER or UNREGISTER of the same turn
        does not share the read made before it."""
        session, _ = self.session()
        self.store.discover(session, "ns", 10, 1)
        self.store.register(session, "ns", A.peer, 2)
        self.store.discover(session, "ns", 10, 3)
        self.store.unregister(session, "ns", A.peer.key, 4)
        self.store.discover(session, "ns", 10, 5)
        self.store.discover(session, "ns", 10, 6)  # nothing written since the one before
        self.assertEqual(
            [run[0] for run in self.link.runs],
            ["discover", "register_many", "discover", "unregister", "discover"],
        )
        self.clock.advance(0)  # the next turn reads again
        self.store.discover(session, "ns", 10, 7)
        self.assertEqual(len(self.link.runs), 6)

    def test_a_failed_read_refuses_every_discover_it_answers(self) -> None:
        one, seen_one = self.session()
        two, seen_two = self.session()
        self.store.discover(one, "ns", 10, 1)
        self.store.discover(two, "ns", 10, 2)
        self.link.take("discover")[1].errback(LinkDown("gone"))
        self.assertEqual(seen_one.seen, [("refused", 1, Status.UNAVAILABLE)])
        self.assertEqual(seen_two.seen, [("refused", 2, Status.UNAVAILABLE)])
