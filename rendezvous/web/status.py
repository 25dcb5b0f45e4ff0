"""What the status page shows, as a plain dict made from the store on request.

Counts, namespace names and peer ids only: never an address. Everything is bounded:
the largest namespaces first, at most so many of them, and at most so many relays.
Nothing here touches the request path: a snapshot reads what the store already keeps.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from typing import Protocol, TypedDict

from rendezvous.model import Registration
from rendezvous.peerid import InvalidPeerId, peer_id_to_text
from rendezvous.registry import Registry

MAX_NAMESPACES = 100
"""Namespaces listed (the largest); the total is always given."""
MAX_RELAYS = 100
"""Relays listed; the total is always given."""
RELAY_NAMESPACE = "rendezvous/relays"
"""Where relays announce themselves unless told otherwise (`rendezvous.relay.announce`)."""


class NamespaceView(Protocol):
    """The namespaces a daemon knows."""

    scope: str
    """What the view covers, in words, shown on the page."""

    def namespace_sizes(self) -> Iterable[tuple[str, int, int]]:
        """(name, registrations, subscribers) of every namespace known."""

    def members(self, namespace: str, limit: int) -> list[Registration]:
        """At most ``limit`` registrations of ``namespace``."""


class RegistryView:
    """The whole registry of an in-memory store (this daemon's, its workers' included)."""

    scope = "every registration (in-memory store)"

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def namespace_sizes(self) -> Iterable[tuple[str, int, int]]:
        return self._registry.namespace_sizes()

    def members(self, namespace: str, limit: int) -> list[Registration]:
        return self._registry.discover(namespace, limit)


class Mirrored(Protocol):
    """What a shared store mirrors of one namespace (`rendezvous.store.redis.mirror`)."""

    @property
    def registrations(self) -> Mapping[bytes, Registration]: ...

    @property
    def subscribers(self) -> Mapping[object, None]: ...


class Watching(Protocol):
    def watched(self) -> Mapping[str, Mirrored]: ...


class MirrorView:
    """A shared (Redis) store: only the namespaces this daemon's sessions watch are
    known here, each with the fleet's registrations as mirrored."""

    scope = (
        "shared store: the namespaces this daemon's subscribers watch (with the fleet's "
        "members), and this daemon's sessions"
    )

    def __init__(self, store: Watching) -> None:
        self._store = store

    def namespace_sizes(self) -> Iterable[tuple[str, int, int]]:
        return (
            (name, len(state.registrations), len(state.subscribers))
            for name, state in self._store.watched().items()
        )

    def members(self, namespace: str, limit: int) -> list[Registration]:
        state = self._store.watched().get(namespace)
        if state is None:
            return []
        return list(islice(state.registrations.values(), limit))


@dataclass(frozen=True, slots=True)
class Sessions:
    """Open sessions of this daemon, by dialect."""

    live_raw: int
    """Live dialect on --listen strports (worker processes' sessions included)."""
    live_p2p: int
    """Live dialect over libp2p (/rendezvous/live/1.0.0)."""
    standard: int
    """Standard dialect streams (/rendezvous/1.0.0 and the canvas id)."""


class NamespaceRow(TypedDict):
    name: str
    registrations: int
    subscribers: int


class NamespacesPart(TypedDict):
    total: int
    registrations: int
    listed: list[NamespaceRow]


class RelaysPart(TypedDict):
    namespace: str
    total: int
    listed: list[str]


class Snapshot(TypedDict):
    version: str
    scope: str
    sessions: dict[str, int]
    namespaces: NamespacesPart
    relays: RelaysPart


def peer_text(key: bytes) -> str:
    """A peer id's text; raw-strport ids that are no libp2p multihash show as hex."""
    try:
        return peer_id_to_text(key)
    except InvalidPeerId:
        return "0x" + key.hex()


def snapshot(
    view: NamespaceView,
    sessions: Sessions,
    *,
    version: str,
    relay_namespace: str,
    max_namespaces: int = MAX_NAMESPACES,
    max_relays: int = MAX_RELAYS,
) -> Snapshot:
    """The status as plain data (JSON-ready), bounded by ``max_namespaces`` and
    ``max_relays``; O(namespaces + max_relays)."""
    total = 0
    registrations = 0
    relay_total = 0

    def counted() -> Iterable[tuple[str, int, int]]:
        nonlocal total, registrations, relay_total
        for row in view.namespace_sizes():
            total += 1
            registrations += row[1]
            if row[0] == relay_namespace:
                relay_total = row[1]
            yield row

    largest = heapq.nlargest(max_namespaces, counted(), key=itemgetter(1, 2))
    largest.sort(key=lambda row: (-row[1], -row[2], row[0]))
    relays = view.members(relay_namespace, max_relays) if relay_total else []
    return Snapshot(
        version=version,
        scope=view.scope,
        sessions={
            "live_raw": sessions.live_raw,
            "live_p2p": sessions.live_p2p,
            "standard": sessions.standard,
            "total": sessions.live_raw + sessions.live_p2p + sessions.standard,
        },
        namespaces=NamespacesPart(
            total=total,
            registrations=registrations,
            listed=[
                NamespaceRow(name=name, registrations=count, subscribers=subscribers)
                for name, count, subscribers in largest
            ],
        ),
        relays=RelaysPart(
            namespace=relay_namespace,
            total=relay_total,
            listed=sorted(peer_text(r.peer.key) for r in relays),
        ),
    )
