"""One live-dialect session as pure logic: bytes in, requests to the store, frames out.

The same class serves a raw stream (TCP, TLS, UNIX) and a libp2p stream; what carries
its frames to the client is its output, a `LiveOutput`.
"""

from __future__ import annotations

import socket
from typing import Protocol

from twisted.logger import Logger

from rendezvous.framing import FrameDecoder, FramingError
from rendezvous.live.codec import EntryCache, LiveCodec, Parsed
from rendezvous.loglimit import LogLimiter, log_refusal
from rendezvous.metrics import Metrics
from rendezvous.model import Announcement, Change, Refused, Registration, Status
from rendezvous.peerid import peer_id_to_text
from rendezvous.registry import Session
from rendezvous.store.base import Store

_REGISTER = Change.REGISTER


class LiveOutput(Protocol):
    """A live session's output: what carries its frames to the client."""

    def send(self, data: bytes) -> bool:
        """Queue ``data``; False when the unsent bytes would pass the bound (nothing queued)."""

    def close(self, last: bytes | None = None, *, discard_pending: bool = False) -> None:
        """Send ``last`` (after, or instead of, what is pending) and end the connection."""

    def idle_socket(self) -> socket.socket | None:
        """The socket a push may be written to directly now (nothing queued before it
        anywhere), or None (`rendezvous.live.fanout`)."""


class LiveDialect:
    """What every live session of a daemon shares."""

    log = Logger()

    def __init__(self, store: Store, codec: LiveCodec, metrics: Metrics, limiter: LogLimiter):
        self.store = store
        self.codec = codec
        self.metrics = metrics
        self.limiter = limiter
        self.sessions: set[LiveSession] = set()
        """The sessions open now, to be told when the server goes away."""

    def session(
        self, output: LiveOutput, label: object, identity: bytes | None = None
    ) -> LiveSession:
        return LiveSession(self, output, label, identity)

    def log_refusal(self, label: object, refusal: Refused, identity: bytes | None = None) -> None:
        self.metrics.refused(refusal.status.name.lower())
        peer_id = peer_id_to_text(identity) if identity else None
        log_refusal(self.log, self.limiter, label, refusal, dialect="live", peer_id=peer_id)

    def goodbye(self, text: str) -> int:
        """Send every open session ERROR 400 (UNAVAILABLE) with ``text`` and close it, so
        its client reconnects elsewhere at once; how many were told."""
        sessions, self.sessions = self.sessions, set()
        frame = self.codec.error_frame(Status.UNAVAILABLE, text, None)
        for session in sessions:
            # First all fall silent: the UNREGISTERs that each one's end announces
            # would otherwise reach the others before their goodbye.
            session.closed = True
        for session in sessions:
            session.output.close(frame)
            session.end()
        return len(sessions)


class LiveSession:
    """A client's session: frames requests, answers them, pushes announcements."""

    __slots__ = (
        "_decoder",
        "_entries",
        "_registered",
        "_session",
        "closed",
        "dialect",
        "identity",
        "label",
        "output",
    )

    def __init__(
        self, dialect: LiveDialect, output: LiveOutput, label: object, identity: bytes | None
    ) -> None:
        self.dialect = dialect
        self.output = output
        self.label = label
        """Names the client in logs, as its ``str``."""
        self.identity = identity
        self._decoder = FrameDecoder(dialect.codec.limits.max_frame_bytes)
        self._session: Session | None = None
        self._entries: EntryCache | None = None
        """Made by a session's second REGISTER: only sessions that register again and
        again pay for it (see `rendezvous.live.codec`)."""
        self._registered = False
        self.closed = False

    def start(self) -> bool:
        """Join the store; a refused session is told why and closed."""
        try:
            self._session = self.dialect.store.open_session(self, self.identity)
        except Refused as refusal:
            self._fail(refusal, None)
            return False
        self.dialect.metrics.sessions_opened += 1
        self.dialect.sessions.add(self)
        return True

    def feed(self, data: bytes) -> None:
        """Bytes from the client."""
        if self.closed:
            return
        try:
            frames = self._decoder.feed(data)
        except FramingError as e:
            self._fail(Refused(Status.INVALID_MESSAGE, f"unframeable input: {e}"), None)
            return
        if not frames:
            return
        # One frame after another, with what every frame needs looked up once.
        dialect = self.dialect
        codec = dialect.codec
        parse_register = codec.parse_register
        received = dialect.metrics.received
        store = dialect.store
        session = self._session
        assert session is not None
        registers = 0
        try:
            for frame in frames:
                entries = self._entries
                if entries is None and frame.startswith(b"\x08\x00"):
                    if self._registered:
                        entries = self._entries = EntryCache()
                    else:
                        self._registered = True
                # The usual REGISTER (one entry, no request id) without a `Parsed`.
                request = parse_register(frame, entries)
                if request is None:
                    self._handle(codec.parse_general(frame, entries))
                else:
                    registers += 1
                    if isinstance(request, Refused):
                        self.refused(None, request)
                    else:
                        store.register(session, request.namespace, request.peer, None)
                if self.closed:
                    return
        finally:
            received["register"] += registers

    def _handle(self, parsed: Parsed) -> None:
        """Hand each request of a frame to the store, or answer its refusal."""
        if parsed.kind is not None:
            self.dialect.metrics.received[parsed.kind] += 1
        store = self.dialect.store
        session = self._session
        assert session is not None
        request_id = parsed.request_id
        for request in parsed.requests:
            # One way to the store for every request: its own `submit`.
            if isinstance(request, Refused):
                self.refused(request_id, request)
            else:
                request.submit(store, session, request_id)
            if self.closed:
                return

    def end(self) -> None:
        """The connection is gone."""
        self.closed = True
        self.dialect.sessions.discard(self)
        session, self._session = self._session, None
        if session is not None:
            self.dialect.store.close_session(session)

    # -- Client: answers and pushes from the store ---------------------------

    def announce(self, announcement: Announcement) -> None:
        # Once per subscriber of a namespace: the frame is encoded for the first only.
        if self.closed:
            return
        frame = announcement.encoded
        if frame is None:
            frame = self.dialect.codec.announcement_frame(announcement)
        if self.output.send(frame):
            # `Change.value` is a Python-level property: identity is much cheaper.
            change = "register" if announcement.change is _REGISTER else "unregister"
            self.dialect.metrics.sent[change] += 1
        else:
            self.drop_slow()

    def snapshot(self, namespace: str, registrations: list[Registration]) -> None:
        self._send_registrations(registrations, None, empty=False)

    def discovered(
        self, request_id: int | None, namespace: str, registrations: list[Registration]
    ) -> None:
        self._send_registrations(registrations, request_id, empty=True)

    def refused(self, request_id: int | None, refusal: Refused) -> None:
        if self.closed:
            return
        self.dialect.log_refusal(self.label, refusal, self.identity)
        frame = self.dialect.codec.error_frame(refusal.status, refusal.text, request_id)
        if self.output.send(frame):
            self.dialect.metrics.sent["error"] += 1
        else:
            self.drop_slow()

    def _send_registrations(
        self, registrations: list[Registration], request_id: int | None, *, empty: bool
    ) -> None:
        if self.closed:
            return
        codec = self.dialect.codec
        sent = self.dialect.metrics.sent
        for frame in codec.registrations_frames(registrations, request_id, empty=empty):
            if not self.output.send(frame):
                self.drop_slow()
                return
            sent["register"] += 1

    def leave(self, frame: bytes) -> None:
        """The server is going away: send ``frame`` (its ERROR) after what is pending
        and close."""
        if not self.closed:
            self.output.close(frame)
            self.end()

    def drop(self, refusal: Refused) -> None:
        """The store ends the session: tell the client why and close."""
        if not self.closed:
            self._fail(refusal, None)

    def drop_slow(self) -> None:
        self.dialect.metrics.slow_subscribers_dropped += 1
        refusal = Refused(Status.UNAVAILABLE, "too slow: unsent messages passed the limit")
        self._fail(refusal, None, discard_pending=True)

    def _fail(
        self, refusal: Refused, request_id: int | None, *, discard_pending: bool = False
    ) -> None:
        self.dialect.log_refusal(self.label, refusal, self.identity)
        frame = self.dialect.codec.error_frame(refusal.status, refusal.text, request_id)
        self.output.close(frame, discard_pending=discard_pending)
        self.end()
