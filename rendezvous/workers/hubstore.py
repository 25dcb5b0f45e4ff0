"""A worker's `Store`: every request goes to the hub, every answer and push comes back.

Sessions live in the worker (their connections are here); the registry lives in the
hub. Each session has a number (sid) that the two sides share; sids are never reused,
so a record for a session that has meanwhile ended is simply dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from rendezvous.model import Announcement, Peer, Refused, Status
from rendezvous.registry import Session
from rendezvous.store.base import Client, StoreStats
from rendezvous.workers.wire import Kind, RecordDecoder, pickled, sids_of, unpickle

_ANSWERS = frozenset({"snapshot", "discovered", "refused", "registered"})


class Droppable(Client, Protocol):
    """A worker session's client (`rendezvous.live.session.LiveSession`): the hub may
    refuse a session after the worker admitted it."""

    def drop(self, refusal: Refused) -> None:
        """End the session, telling the client why."""


class HubSession(Session):
    """A `Session` as a worker knows it: its number and client, nothing it holds (that
    is in the hub, so its lists are never made)."""

    __slots__ = ("sid",)

    def __init__(self, client: Client, identity: bytes | None, sid: int) -> None:
        # Not Session.__init__: the registry's lists would only ever be empty here.
        self.subscriber = client
        self.identity = identity
        self.open = True
        self.sid = sid


class HubStore:
    """A `Store` whose registry is in the hub, reached through ``send``."""

    log = Logger()

    def __init__(self, max_sessions: int, send: Callable[[bytes], None] | None = None) -> None:
        self.send: Callable[[bytes], None] = send or _unconnected
        """Where records for the hub go (the channel's ``transport.write``)."""
        self.max_sessions = max_sessions
        """This worker's share of the daemon's ``--max-sessions``."""
        self.sessions: dict[int, HubSession] = {}
        self._next_sid = 0
        self._announcement: Announcement | None = None
        self._decoder = RecordDecoder()

    def start(self) -> None:
        pass

    def stop(self) -> Deferred[None]:
        return succeed(None)

    def open_session(self, client: Client, identity: bytes | None = None) -> Session:
        if len(self.sessions) >= self.max_sessions:
            raise Refused(Status.UNAVAILABLE, "too many sessions")
        self._next_sid += 1
        session = HubSession(client, identity, self._next_sid)
        self.sessions[session.sid] = session
        self.send(pickled(Kind.OPEN, (session.sid, identity)))
        return session

    def close_session(self, session: Session) -> None:
        assert isinstance(session, HubSession)
        if not session.open:
            return
        session.open = False
        del self.sessions[session.sid]
        self.send(pickled(Kind.CLOSE, (session.sid,)))

    def register(
        self, session: Session, namespace: str, peer: Peer, request_id: int | None
    ) -> None:
        self._request("register", session, (namespace, peer, request_id))

    def unregister(
        self, session: Session, namespace: str, key: bytes, request_id: int | None
    ) -> None:
        self._request("unregister", session, (namespace, key, request_id))

    def subscribe(self, session: Session, namespace: str, request_id: int | None) -> None:
        self._request("subscribe", session, (namespace, request_id))

    def discover(
        self, session: Session, namespace: str, limit: int, request_id: int | None
    ) -> None:
        self._request("discover", session, (namespace, limit, request_id))

    def register_ttl(
        self, session: Session, namespace: str, peer: Peer, ttl: int, request_id: int | None
    ) -> None:
        self._request("register_ttl", session, (namespace, peer, ttl, request_id))

    def discover_since(
        self,
        session: Session,
        namespace: str | None,
        after: int,
        limit: int,
        request_id: int | None,
        *,
        signed_only: bool = True,
    ) -> None:
        args = (namespace, after, limit, request_id)
        self._request("discover_since", session, args, {"signed_only": signed_only})

    def stats(self) -> StoreStats:
        return StoreStats(
            sessions=len(self.sessions), registrations=0, namespaces=0, subscriptions=0
        )

    def _request(
        self,
        method: str,
        session: Session,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        assert isinstance(session, HubSession)
        if session.open:
            self.send(pickled(Kind.REQUEST, (method, session.sid, args, kwargs or {})))

    # -- from the hub ----------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes from the hub (raises `rendezvous.workers.wire.ChannelError`)."""
        for kind, body in self._decoder.feed(data):
            if kind == Kind.PUSH:
                self._push(body)
            elif kind == Kind.DEFINE:
                self._announcement = unpickle(body)
            elif kind == Kind.ANSWER:
                self._answer(*unpickle(body))
            elif kind == Kind.DROP:
                self._drop(*unpickle(body))
            else:
                self.log.error("unknown record kind {kind} from the hub", kind=kind)

    def _push(self, body: bytes) -> None:
        announcement = self._announcement
        if announcement is None:
            self.log.error("a push before any announcement")
            return
        get = self.sessions.get
        for sid in sids_of(body):
            session = get(sid)
            if session is not None:
                session.subscriber.announce(announcement)

    def _answer(self, method: str, sid: int, args: tuple[Any, ...]) -> None:
        session = self.sessions.get(sid)
        if session is None:
            return
        client = session.subscriber
        if method == "refused":
            request_id, status, text = args
            client.refused(request_id, Refused(Status(status), text))  # type: ignore[attr-defined]
        elif method in _ANSWERS:
            getattr(client, method)(*args)
        else:
            self.log.error("unknown answer {method!r} from the hub", method=method)

    def _drop(self, sid: int, status: int, text: str) -> None:
        session = self.sessions.get(sid)
        if session is None:
            return
        client = cast(Droppable, session.subscriber)
        client.drop(Refused(Status(status), text))


def _unconnected(data: bytes) -> None:
    raise RuntimeError("the hub channel is not connected")


def counters_record(counts: dict[str, Any]) -> bytes:
    """A COUNTERS record (`rendezvous.workers.hub.WorkerLink` keeps the latest)."""
    return pickled(Kind.COUNTERS, counts)
