"""The hub: the main process's end of every worker's channel.

Each worker session is a session of the daemon's store whose client (`_Remote`) turns
answers into records. Pushes are batched: an announcement goes to a worker once
(DEFINE), followed by the numbers of the sessions it is for (PUSH), so a fan-out costs
the hub a few hundred nanoseconds per subscriber and the writes to subscribers happen in
the workers, in parallel. Records reach the channel in the order they were made; the
batch is written at the end of the reactor turn.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from rendezvous.metrics import Counts, add_counts, empty_counts
from rendezvous.model import Announcement, Refused, Registration
from rendezvous.pb import workers_pb2 as pb
from rendezvous.registry import Session
from rendezvous.store.base import Store
from rendezvous.workers.wire import (
    ChannelError,
    Kind,
    RecordDecoder,
    check_hello,
    counts_of,
    define_record,
    fill_registration,
    hello_record,
    message_record,
    parse,
    peer_of,
    push_record,
)


class _Remote:
    """A worker session's `Client`, in the hub."""

    __slots__ = ("link", "sid")

    def __init__(self, link: WorkerLink, sid: int) -> None:
        self.link = link
        self.sid = sid

    def announce(self, announcement: Announcement) -> None:
        link = self.link
        if announcement is not link.defined:
            link.define(announcement)
        link.pushes.append(self.sid)

    def snapshot(self, namespace: str, registrations: list[Registration]) -> None:
        answer = pb.Answer(sid=self.sid)
        _fill_registrations(answer.snapshot, namespace, registrations)
        self.link.answer(answer)

    def discovered(
        self, request_id: int | None, namespace: str, registrations: list[Registration]
    ) -> None:
        answer = pb.Answer(sid=self.sid, request_id=request_id)
        _fill_registrations(answer.discovered, namespace, registrations)
        self.link.answer(answer)

    def refused(self, request_id: int | None, refusal: Refused) -> None:
        answer = pb.Answer(sid=self.sid, request_id=request_id)
        answer.refused.status = refusal.status
        answer.refused.text = refusal.text
        self.link.answer(answer)

    def registered(self, request_id: int | None, registration: Registration) -> None:
        answer = pb.Answer(sid=self.sid, request_id=request_id)
        fill_registration(answer.registered, registration)
        self.link.answer(answer)


def _fill_registrations(
    into: pb.Answer.Registrations, namespace: str, registrations: list[Registration]
) -> None:
    into.namespace = namespace
    for registration in registrations:
        fill_registration(into.registrations.add(), registration)


class WorkerLink:
    """One worker's sessions in the store, and the records on their way to it."""

    def __init__(self, hub: Hub, name: str, write: Callable[[bytes], None]) -> None:
        self.hub = hub
        self.name = name
        self._write = write
        self.sessions: dict[int, Session] = {}
        self.counts: Counts = empty_counts()
        """The worker's latest counters."""
        self.defined: Announcement | None = None
        self.pushes: array[int] = array("Q")
        self._out: list[bytes] = [hello_record()]
        self._decoder = RecordDecoder()
        self.greeted = False
        """Whether the worker's hello has come (and was of our version)."""
        self.closed = False
        hub.dirty(self)

    # -- to the worker ---------------------------------------------------------

    def define(self, announcement: Announcement) -> None:
        self._end_pushes()
        self.defined = announcement
        self._out.append(define_record(announcement))
        self.hub.dirty(self)

    def answer(self, answer: pb.Answer) -> None:
        self._end_pushes()
        self._out.append(message_record(Kind.ANSWER, answer))
        self.hub.dirty(self)

    def _end_pushes(self) -> None:
        if self.pushes:
            self._out.append(push_record(self.pushes))
            self.pushes = array("Q")

    def flush(self) -> None:
        """Write what is queued."""
        self._end_pushes()
        self.defined = None
        out, self._out = self._out, []
        if out and not self.closed:
            self._write(b"".join(out))

    # -- from the worker -------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes from the worker (raises `ChannelError` when they make no sense, of
        which `rendezvous.workers.wire.VersionMismatch` when it speaks another version)."""
        for kind, body in self._decoder.feed(data):
            if not self.greeted:
                check_hello(kind, body, f"worker {self.name}")
                self.greeted = True
            elif kind == Kind.REQUEST:
                self._request(parse(pb.Request, body))
            elif kind == Kind.OPEN:
                opened = parse(pb.Open, body)
                identity = opened.identity if opened.HasField("identity") else None
                self._open(opened.sid, identity)
            elif kind == Kind.CLOSE:
                self._close(parse(pb.Close, body).sid)
            elif kind == Kind.COUNTERS:
                self.counts = counts_of(body)
            else:
                raise ChannelError(f"unknown record kind {kind}")

    def _open(self, sid: int, identity: bytes | None) -> None:
        try:
            self.sessions[sid] = self.hub.store.open_session(_Remote(self, sid), identity)
        except Refused as refusal:
            self._end_pushes()
            drop = pb.Drop(sid=sid)
            drop.refusal.status = refusal.status
            drop.refusal.text = refusal.text
            self._out.append(message_record(Kind.DROP, drop))
            self.hub.dirty(self)

    def _close(self, sid: int) -> None:
        session = self.sessions.pop(sid, None)
        if session is not None:
            self.hub.store.close_session(session)

    def _request(self, request: pb.Request) -> None:
        call = request.WhichOneof("call")
        if call is None:
            raise ChannelError("a request without a call")
        session = self.sessions.get(request.sid)
        if session is None:
            return  # ended meanwhile
        rid = request.request_id if request.HasField("request_id") else None
        store = self.hub.store
        if call == "register":
            register = request.register
            store.register(session, register.namespace, peer_of(register.peer), rid)
        elif call == "unregister":
            store.unregister(session, request.unregister.namespace, request.unregister.key, rid)
        elif call == "subscribe":
            store.subscribe(session, request.subscribe.namespace, rid)
        elif call == "discover":
            store.discover(session, request.discover.namespace, request.discover.limit, rid)
        elif call == "register_ttl":
            ttl = request.register_ttl
            store.register_ttl(session, ttl.namespace, peer_of(ttl.peer), ttl.ttl, rid)
        else:
            since = request.discover_since
            namespace = since.namespace if since.HasField("namespace") else None
            store.discover_since(
                session, namespace, since.after, since.limit, rid, signed_only=since.signed_only
            )

    def lost(self) -> None:
        """The worker is gone: so are its sessions (their registrations announced gone)."""
        self.closed = True
        sessions, self.sessions = self.sessions, {}
        for session in sessions.values():
            self.hub.store.close_session(session)
        self._out.clear()
        self.pushes = array("Q")


class Hub:
    """The store's side of every worker channel."""

    def __init__(self, store: Store, clock: IReactorTime) -> None:
        self.store = store
        self.clock = clock
        self.links: list[WorkerLink] = []
        self._retired: Counts = empty_counts()
        """Counters of workers that have ended (counters never go down)."""
        self._dirty: dict[WorkerLink, None] = {}
        self._flush_call: IDelayedCall | None = None

    def link(self, name: str, write: Callable[[bytes], None]) -> WorkerLink:
        link = WorkerLink(self, name, write)
        self.links.append(link)
        return link

    def unlink(self, link: WorkerLink) -> None:
        if link in self.links:
            self.links.remove(link)
            link.lost()
            self._dirty.pop(link, None)
            add_counts(self._retired, link.counts)

    def dirty(self, link: WorkerLink) -> None:
        """``link`` has records to write at the end of this reactor turn."""
        if link not in self._dirty:
            self._dirty[link] = None
            if self._flush_call is None:
                self._flush_call = self.clock.callLater(0, self.flush)

    def flush(self) -> None:
        self._flush_call = None
        dirty, self._dirty = self._dirty, {}
        for link in dirty:
            link.flush()

    def worker_counts(self) -> Iterator[Counts]:
        """Counters of the workers, those that ended included."""
        yield self._retired
        for link in self.links:
            yield link.counts
