"""The status snapshot: counts, namespace names and peer ids, bounded, from the store."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from rendezvous.limits import Limits
from rendezvous.live.stream import LiveStream
from rendezvous.model import Announcement, Peer, Registration
from rendezvous.peerid import parse_peer_id
from rendezvous.registry import Registry
from rendezvous.relay.announce import DEFAULT_NAMESPACE
from rendezvous.standard.stream import StandardStream
from rendezvous.web.sessions import count_sessions
from rendezvous.web.status import (
    RELAY_NAMESPACE,
    MirrorView,
    RegistryView,
    Sessions,
    peer_text,
    snapshot,
)

from .helpers import peer, peer_id, tcp_addr

NO_SESSIONS = Sessions(live_raw=0, live_p2p=0, standard=0)


class Nobody:
    def announce(self, announcement: Announcement) -> None:
        pass


def fill(registry: Registry, sizes: dict[str, int]) -> None:
    """``sizes[namespace]`` peers registered in each namespace, one session each."""
    for namespace, size in sizes.items():
        for i in range(size):
            session = registry.open_session(Nobody())
            registry.register(session, namespace, peer(f"{namespace}/{i}", tcp_addr(1)))


def status(registry: Registry, **kwargs: Any) -> Any:
    kwargs.setdefault("relay_namespace", RELAY_NAMESPACE)
    return snapshot(RegistryView(registry), NO_SESSIONS, version="1.2.3", **kwargs)


class SnapshotTests(SynchronousTestCase):
    def test_empty(self) -> None:
        self.assertEqual(
            status(Registry()),
            {
                "version": "1.2.3",
                "scope": RegistryView.scope,
                "sessions": {"live_raw": 0, "live_p2p": 0, "standard": 0, "total": 0},
                "namespaces": {"total": 0, "registrations": 0, "listed": []},
                "relays": {"namespace": "rendezvous/relays", "total": 0, "listed": []},
            },
        )

    def test_namespaces_largest_first_with_subscribers(self) -> None:
        registry = Registry()
        fill(registry, {"small": 1, "big": 3, "middle": 2})
        watcher = registry.open_session(Nobody())
        registry.subscribe(watcher, "middle")
        registry.subscribe(watcher, "watched-only")
        namespaces = status(registry)["namespaces"]
        self.assertEqual(namespaces["total"], 4)
        self.assertEqual(namespaces["registrations"], 6)
        self.assertEqual(
            namespaces["listed"],
            [
                {"name": "big", "registrations": 3, "subscribers": 0},
                {"name": "middle", "registrations": 2, "subscribers": 1},
                {"name": "small", "registrations": 1, "subscribers": 0},
                {"name": "watched-only", "registrations": 0, "subscribers": 1},
            ],
        )

    def test_at_most_max_namespaces_listed_and_the_total_given(self) -> None:
        registry = Registry()
        fill(registry, {f"ns{i:02}": 1 + i % 7 for i in range(30)})
        namespaces = status(registry, max_namespaces=5)["namespaces"]
        self.assertEqual(namespaces["total"], 30)
        self.assertEqual(namespaces["registrations"], sum(1 + i % 7 for i in range(30)))
        listed = namespaces["listed"]
        self.assertEqual([row["registrations"] for row in listed], [7] * 4 + [6])
        # Ties in size are listed by name.
        self.assertEqual([row["name"] for row in listed[:4]], ["ns06", "ns13", "ns20", "ns27"])

    def test_names_are_given_as_they_are(self) -> None:
        registry = Registry()
        name = '<img src=x onerror="alert(1)">\u202e'
        fill(registry, {name: 1})
        self.assertEqual(status(registry)["namespaces"]["listed"][0]["name"], name)

    def test_relays_of_the_fleet_namespace_by_peer_id(self) -> None:
        registry = Registry()
        fill(registry, {"rendezvous/relays": 3, "elsewhere": 1})
        relays = status(registry)["relays"]
        self.assertEqual(relays["total"], 3)
        expected = sorted(peer_id(f"rendezvous/relays/{i}") for i in range(3))
        self.assertEqual(relays["listed"], expected)

    def test_relays_bounded_and_namespace_configurable(self) -> None:
        registry = Registry()
        fill(registry, {"my/fleet": 8, "rendezvous/relays": 1})
        relays = status(registry, relay_namespace="my/fleet", max_relays=3)["relays"]
        self.assertEqual(relays["namespace"], "my/fleet")
        self.assertEqual(relays["total"], 8)
        self.assertEqual(len(relays["listed"]), 3)

    def test_nothing_but_counts_names_and_ids(self) -> None:
        registry = Registry()
        fill(registry, {"rendezvous/relays": 1, "app": 2})
        text = repr(status(registry))
        self.assertNotIn("10.0.0.1", text)
        self.assertNotIn(repr(tcp_addr(1)), text)

    def test_sessions_and_their_total(self) -> None:
        sessions = snapshot(
            RegistryView(Registry()),
            Sessions(live_raw=3, live_p2p=2, standard=1),
            version="v",
            relay_namespace=RELAY_NAMESPACE,
        )["sessions"]
        self.assertEqual(sessions, {"live_raw": 3, "live_p2p": 2, "standard": 1, "total": 6})

    def test_relay_namespace_is_the_relays_default(self) -> None:
        self.assertEqual(RELAY_NAMESPACE, DEFAULT_NAMESPACE)

    def test_hundred_thousand_registrations(self) -> None:
        """O(namespaces): 100,000 registrations in 20,000 namespaces, listed 100."""
        registry = Registry(Limits(max_registrations=100_000, max_sessions=100_000))
        fill(registry, {f"n{i}": 5 for i in range(20_000)})
        namespaces = status(registry)["namespaces"]
        self.assertEqual((namespaces["total"], namespaces["registrations"]), (20_000, 100_000))
        self.assertEqual(len(namespaces["listed"]), 100)


class PeerTextTests(SynchronousTestCase):
    def test_libp2p_ids_in_base58(self) -> None:
        text = peer_id("a")
        self.assertEqual(peer_text(parse_peer_id(text)), text)

    def test_other_ids_in_hex(self) -> None:
        self.assertEqual(peer_text(b"\x01\x02not-a-multihash"), "0x0102" + b"not-a-multihash".hex())


class Mirror:
    def __init__(self, keys: list[bytes], subscribers: int) -> None:
        self.registrations = {
            key: Registration("ns", Peer(peer_text(key), key, (tcp_addr(1),)), seq=i)
            for i, key in enumerate(keys)
        }
        self.subscribers: dict[object, None] = {object(): None for _ in range(subscribers)}


class FakeShared:
    def __init__(self, watched: dict[str, Mirror]) -> None:
        self._watched = watched

    def watched(self) -> dict[str, Mirror]:
        return self._watched


def key(name: str) -> bytes:
    return b"\x12\x20" + hashlib.sha256(name.encode()).digest()


class MirrorViewTests(SynchronousTestCase):
    def test_watched_namespaces_and_relays(self) -> None:
        store = FakeShared(
            {
                "app": Mirror([key("a"), key("b")], subscribers=1),
                "rendezvous/relays": Mirror([key(f"r{i}") for i in range(5)], subscribers=2),
            }
        )
        result = snapshot(
            MirrorView(store),
            NO_SESSIONS,
            version="v",
            relay_namespace=RELAY_NAMESPACE,
            max_relays=2,
        )
        self.assertEqual(result["scope"], MirrorView.scope)
        self.assertEqual(
            result["namespaces"]["listed"],
            [
                {"name": "rendezvous/relays", "registrations": 5, "subscribers": 2},
                {"name": "app", "registrations": 2, "subscribers": 1},
            ],
        )
        self.assertEqual(result["relays"]["total"], 5)
        self.assertEqual(
            result["relays"]["listed"], sorted([peer_text(key("r0")), peer_text(key("r1"))])
        )

    def test_relays_unknown_when_unwatched(self) -> None:
        view = MirrorView(FakeShared({}))
        self.assertEqual(view.members(RELAY_NAMESPACE, 10), [])


def stream(protocol: object) -> SimpleNamespace:
    return SimpleNamespace(protocol=protocol)


def live_stream(open: bool) -> LiveStream:
    protocol = LiveStream.__new__(LiveStream)
    protocol.session = object() if open else None  # type: ignore[assignment]
    return protocol


def standard_stream(open: bool) -> StandardStream:
    protocol = StandardStream.__new__(StandardStream)
    protocol.session = object() if open else None  # type: ignore[assignment]
    return protocol


class CountSessionsTests(SynchronousTestCase):
    def test_without_libp2p_every_session_is_raw(self) -> None:
        self.assertEqual(count_sessions(4, None), Sessions(live_raw=4, live_p2p=0, standard=0))

    def test_streams_by_protocol(self) -> None:
        host = SimpleNamespace(
            connections=[
                SimpleNamespace(
                    streams=[
                        stream(live_stream(True)),
                        stream(standard_stream(True)),
                        stream(standard_stream(False)),  # refused: no session
                        stream(None),  # identify, ping and the like
                    ]
                ),
                SimpleNamespace(streams=[stream(live_stream(True)), stream(live_stream(False))]),
            ]
        )
        self.assertEqual(
            count_sessions(10, host),  # type: ignore[arg-type]
            Sessions(live_raw=7, live_p2p=2, standard=1),
        )
