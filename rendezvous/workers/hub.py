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
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from rendezvous.metrics import Counts, add_counts, empty_counts
from rendezvous.model import Announcement, Refused, Registration
from rendezvous.registry import Session
from rendezvous.store.base import Store
from rendezvous.workers.wire import (
    ChannelError,
    Kind,
    RecordDecoder,
    pickled,
    push_record,
    unpickle,
)

REQUESTS = frozenset(
    {"register", "unregister", "subscribe", "discover", "register_ttl", "discover_since"}
)
"""The `Store` methods a worker may call."""


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
        self.link.answer("snapshot", self.sid, (namespace, registrations))

    def discovered(
        self, request_id: int | None, namespace: str, registrations: list[Registration]
    ) -> None:
        self.link.answer("discovered", self.sid, (request_id, namespace, registrations))

    def refused(self, request_id: int | None, refusal: Refused) -> None:
        self.link.answer("refused", self.sid, (request_id, int(refusal.status), refusal.text))

    def registered(self, request_id: int | None, registration: Registration) -> None:
        self.link.answer("registered", self.sid, (request_id, registration))


class WorkerLink:
    """One worker's sessions in the store, and the records on their way to it."""

    def __init__(self, hub: Hub, name: str, write: Callable[[bytes], None]) -> None:
        self.hub = hub
        self.name = name
        self._write = write
        self.sessions: dict[int, Session] = {}
        self.counts: Counts = empty_counts()
        """The worker's latest counters."""
        self.adopted = 0
        """Connections the worker has reported taking over."""
        self.defined: Announcement | None = None
        self.pushes: array[int] = array("Q")
        self._out: list[bytes] = []
        self._decoder = RecordDecoder()
        self.closed = False

    # -- to the worker ---------------------------------------------------------

    def define(self, announcement: Announcement) -> None:
        self._end_pushes()
        self.defined = announcement
        self._out.append(pickled(Kind.DEFINE, announcement))
        self.hub.dirty(self)

    def answer(self, method: str, sid: int, args: tuple[Any, ...]) -> None:
        self._end_pushes()
        self._out.append(pickled(Kind.ANSWER, (method, sid, args)))
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
        """Bytes from the worker (raises `ChannelError` when they make no sense)."""
        for kind, body in self._decoder.feed(data):
            try:
                value = unpickle(body)
            except Exception as e:
                raise ChannelError(f"unreadable record of kind {kind}: {e}") from None
            if kind == Kind.REQUEST:
                self._request(*value)
            elif kind == Kind.OPEN:
                self._open(*value)
            elif kind == Kind.CLOSE:
                self._close(*value)
            elif kind == Kind.COUNTERS:
                self.counts = value["counts"]
                self.adopted = value["adopted"]
            else:
                raise ChannelError(f"unknown record kind {kind}")

    def _open(self, sid: int, identity: bytes | None) -> None:
        try:
            self.sessions[sid] = self.hub.store.open_session(_Remote(self, sid), identity)
        except Refused as refusal:
            self._end_pushes()
            self._out.append(pickled(Kind.DROP, (sid, int(refusal.status), refusal.text)))
            self.hub.dirty(self)

    def _close(self, sid: int) -> None:
        session = self.sessions.pop(sid, None)
        if session is not None:
            self.hub.store.close_session(session)

    def _request(
        self, method: str, sid: int, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        if method not in REQUESTS:
            raise ChannelError(f"unknown request {method!r}")
        session = self.sessions.get(sid)
        if session is not None:
            getattr(self.hub.store, method)(session, *args, **kwargs)

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
