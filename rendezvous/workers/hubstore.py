"""A worker's `Store`: every request goes to the hub, every answer and push comes back.

Sessions live in the worker (their connections are here); the registry lives in the
hub. Each session has a number (sid) that the two sides share; sids are never reused,
so a record for a session that has meanwhile ended is simply dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, cast

from twisted.internet.defer import Deferred, succeed

from rendezvous.model import Announcement, Peer, Refused, Status
from rendezvous.pb import workers_pb2 as pb
from rendezvous.registry import Session
from rendezvous.store.base import Client, StoreStats, TTLClient
from rendezvous.workers.wire import (
    ChannelError,
    Kind,
    RecordDecoder,
    announcement_of,
    check_hello,
    fill_peer,
    hello_record,
    message_record,
    parse,
    refusal_of,
    registration_of,
    sids_of,
)


class Droppable(Client, Protocol):
    """A worker session's client (`rendezvous.live.session.LiveSession`): the hub may
    refuse a session after the worker admitted it."""

    def drop(self, refusal: Refused) -> None:
        """End the session, telling the client why."""


class HubSession(Session):
    """A `Session` as a worker knows it: its number and client; what it holds is in the
    hub (its lists stay empty)."""

    __slots__ = ("sid",)

    def __init__(self, client: Client, identity: bytes | None, sid: int) -> None:
        super().__init__(client, identity)
        self.sid = sid


class HubStore:
    """A `Store` whose registry is in the hub, reached through ``send``."""

    def __init__(self, max_sessions: int, send: Callable[[bytes], None] | None = None) -> None:
        self.send: Callable[[bytes], None] = _unconnected
        """Where records for the hub go (the channel's ``transport.write``)."""
        self.max_sessions = max_sessions
        """This worker's share of the daemon's ``--max-sessions``."""
        self.sessions: dict[int, HubSession] = {}
        self._next_sid = 0
        self._announcement: Announcement | None = None
        self._decoder = RecordDecoder()
        self._greeted = False
        if send is not None:
            self.attach(send)

    def attach(self, send: Callable[[bytes], None]) -> None:
        """The channel to the hub is open: say hello on it, then send there."""
        self.send = send
        send(hello_record())

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
        self.send(message_record(Kind.OPEN, pb.Open(sid=session.sid, identity=identity)))
        return session

    def close_session(self, session: Session) -> None:
        assert isinstance(session, HubSession)
        if not session.open:
            return
        session.open = False
        del self.sessions[session.sid]
        self.send(message_record(Kind.CLOSE, pb.Close(sid=session.sid)))

    def register(
        self, session: Session, namespace: str, peer: Peer, request_id: int | None
    ) -> None:
        request = self._request(session, request_id)
        if request is not None:
            request.register.namespace = namespace
            fill_peer(request.register.peer, peer)
            self._send(request)

    def unregister(
        self, session: Session, namespace: str, key: bytes, request_id: int | None
    ) -> None:
        request = self._request(session, request_id)
        if request is not None:
            request.unregister.namespace = namespace
            request.unregister.key = key
            self._send(request)

    def subscribe(self, session: Session, namespace: str, request_id: int | None) -> None:
        request = self._request(session, request_id)
        if request is not None:
            request.subscribe.namespace = namespace
            self._send(request)

    def discover(
        self, session: Session, namespace: str, limit: int, request_id: int | None
    ) -> None:
        request = self._request(session, request_id)
        if request is not None:
            request.discover.namespace = namespace
            request.discover.limit = limit
            self._send(request)

    def register_ttl(
        self, session: Session, namespace: str, peer: Peer, ttl: int, request_id: int | None
    ) -> None:
        request = self._request(session, request_id)
        if request is not None:
            request.register_ttl.namespace = namespace
            fill_peer(request.register_ttl.peer, peer)
            request.register_ttl.ttl = ttl
            self._send(request)

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
        request = self._request(session, request_id)
        if request is not None:
            since = request.discover_since
            if namespace is not None:
                since.namespace = namespace
            since.after = after
            since.limit = limit
            since.signed_only = signed_only
            self._send(request)

    def stats(self) -> StoreStats:
        return StoreStats(
            sessions=len(self.sessions), registrations=0, namespaces=0, subscriptions=0
        )

    @staticmethod
    def _request(session: Session, request_id: int | None) -> pb.Request | None:
        """A request of ``session`` to fill in, or None when it has ended."""
        assert isinstance(session, HubSession)
        if not session.open:
            return None
        return pb.Request(sid=session.sid, request_id=request_id)

    def _send(self, request: pb.Request) -> None:
        self.send(message_record(Kind.REQUEST, request))

    # -- from the hub ----------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes from the hub (raises `rendezvous.workers.wire.ChannelError`)."""
        for kind, body in self._decoder.feed(data):
            if not self._greeted:
                check_hello(kind, body, "the main process")
                self._greeted = True
            elif kind == Kind.PUSH:
                self._push(body)
            elif kind == Kind.DEFINE:
                self._announcement = announcement_of(body)
            elif kind == Kind.ANSWER:
                self._answer(parse(pb.Answer, body))
            elif kind == Kind.DROP:
                drop = parse(pb.Drop, body)
                self._drop(drop.sid, refusal_of(drop.refusal))
            else:
                raise ChannelError(f"unknown record kind {kind}")

    def _push(self, body: bytes) -> None:
        announcement = self._announcement
        if announcement is None:
            raise ChannelError("a push before any announcement")
        get = self.sessions.get
        for sid in sids_of(body):
            session = get(sid)
            if session is not None:
                session.subscriber.announce(announcement)

    def _answer(self, answer: pb.Answer) -> None:
        kind = answer.WhichOneof("answer")
        if kind is None:
            raise ChannelError("an answer without an answer")
        session = self.sessions.get(answer.sid)
        if session is None:
            return  # ended meanwhile
        client = cast(Client, session.subscriber)
        request_id = answer.request_id if answer.HasField("request_id") else None
        if kind == "snapshot":
            found = answer.snapshot
            client.snapshot(found.namespace, [registration_of(r) for r in found.registrations])
        elif kind == "discovered":
            found = answer.discovered
            registrations = [registration_of(r) for r in found.registrations]
            client.discovered(request_id, found.namespace, registrations)
        elif kind == "refused":
            client.refused(request_id, refusal_of(answer.refused))
        else:
            standard = cast(TTLClient, client)
            standard.registered(request_id, registration_of(answer.registered))

    def _drop(self, sid: int, refusal: Refused) -> None:
        session = self.sessions.get(sid)
        if session is None:
            return
        cast(Droppable, session.subscriber).drop(refusal)


def _unconnected(data: bytes) -> None:
    raise RuntimeError("the hub channel is not connected")
