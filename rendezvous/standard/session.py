"""One standard-dialect stream as pure logic: messages in, store requests, answers out.

A stream may carry any number of requests, each answered in order (REGISTER with a
REGISTER_RESPONSE, DISCOVER with a DISCOVER_RESPONSE, UNREGISTER with nothing); when
the client half-closes, the stream is closed once every answer is written. Its
registrations outlive it: they last their TTL and belong to the authenticated peer id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol
from weakref import WeakKeyDictionary

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from rendezvous.framing import FrameDecoder, FramingError, frame
from rendezvous.loglimit import LogLimiter, log_refusal
from rendezvous.metrics import Metrics
from rendezvous.model import Announcement, Refused, Registration, Status, new_epoch
from rendezvous.peerid import peer_id_to_text
from rendezvous.registry import Session
from rendezvous.standard.codec import (
    DiscoverRequest,
    Invalid,
    Layout,
    Message,
    RegisterRequest,
    StandardCodec,
    UnregisterRequest,
)
from rendezvous.standard.cookie import decode_cookie, encode_cookie
from rendezvous.store.base import Store


class StandardOutput(Protocol):
    """A standard-dialect session's output: what carries its answers to the client."""

    def send(self, data: bytes) -> None: ...

    def finish(self) -> None:
        """Half-close after what was sent."""

    def abort(self) -> None:
        """Reset: the client broke the protocol."""


AgentQuery = Callable[[object], Deferred[str]]
"""Asks the peer of a connection for its agent version (identify)."""
PRESPEC_AGENTS = ("py-libp2p/",)
"""Agent versions whose rendezvous clients read only the pre-spec layout."""
AGENT_TIMEOUT = 3.0
"""Seconds to wait for a peer's agent version before answering in the spec's layout."""


def layout_for_agent(agent: str | None) -> Layout:
    """The layout a client with this agent version reads."""
    if agent is not None and agent.startswith(PRESPEC_AGENTS):
        return Layout.PRESPEC
    return Layout.SPEC


class StandardDialect:
    """What every standard-dialect stream of a daemon shares."""

    log = Logger()

    def __init__(
        self,
        store: Store,
        codec: StandardCodec,
        clock: IReactorTime,
        limiter: LogLimiter,
        epoch: bytes | None = None,
        metrics: Metrics | None = None,
        ask_agent: AgentQuery | None = None,
    ) -> None:
        self.store = store
        self.ask_agent = ask_agent
        """How the layout of a client that has not registered is learnt: py-libp2p's
        client reads only the pre-spec layout, and says who it is in identify."""
        self.agent_layouts: WeakKeyDictionary[object, Deferred[Layout]] = WeakKeyDictionary()
        """Per connection: the layout its agent version reads, once asked."""
        self.metrics = metrics
        """Where refusals are counted (shared with the live dialect)."""
        self.codec = codec
        self.clock = clock
        self.limiter = limiter
        self._epoch = epoch or new_epoch()
        self.prespec: WeakKeyDictionary[object, None] = WeakKeyDictionary()
        """Connections that spoke the pre-spec layout: their later streams are answered in it."""

    @property
    def epoch(self) -> bytes:
        """Names the registry's life in DISCOVER cookies: the fleet's, when the store is
        shared (known once it has connected), else this daemon's."""
        shared: bytes | None = getattr(self.store, "epoch", None)
        return shared or self._epoch

    def session(
        self, output: StandardOutput, label: str, identity: bytes, connection: object
    ) -> StandardSession:
        layout = Layout.PRESPEC if connection in self.prespec else None
        return StandardSession(self, output, label, identity, connection, layout)

    def layout_of(self, connection: object) -> Deferred[Layout]:
        """The layout the peer of ``connection`` reads, from its agent version (asked
        once per connection; the spec's when it does not say within `AGENT_TIMEOUT`)."""
        known = self.agent_layouts.get(connection)
        if known is not None:
            return _copy(known)
        answer: Deferred[Layout] = Deferred()
        self.agent_layouts[connection] = answer
        assert self.ask_agent is not None
        asked = self.ask_agent(connection)

        def settle(agent: object) -> None:
            if timer.active():
                timer.cancel()
            if not answer.called:
                answer.callback(layout_for_agent(agent if isinstance(agent, str) else None))

        timer = self.clock.callLater(AGENT_TIMEOUT, settle, None)
        asked.addCallbacks(settle, lambda _: settle(None))
        return _copy(answer)

    def log_refusal(self, label: str, refusal: Refused, identity: bytes | None = None) -> None:
        if self.metrics is not None:
            self.metrics.refused(refusal.status.name.lower())
        peer_id = peer_id_to_text(identity) if identity else None
        log_refusal(self.log, self.limiter, label, refusal, dialect="standard", peer_id=peer_id)


class StandardSession:
    """A stream's requests and their answers; the store's `TTLClient` for it."""

    def __init__(
        self,
        dialect: StandardDialect,
        output: StandardOutput,
        label: str,
        identity: bytes,
        connection: object,
        layout: Layout | None,
    ) -> None:
        self.dialect = dialect
        self.output = output
        self.label = label
        self.identity = identity
        self.connection = connection
        self.layout = layout
        """The client's layout, once a REGISTER showed it (None: the spec's)."""
        self._decoder = FrameDecoder(dialect.codec.limits.max_frame_bytes)
        self._session: Session | None = None
        self._pending: dict[int, tuple[int, Layout, str, int]] = {}
        """Unanswered requests by our request id: kind, layout, namespace, cookie position."""
        self._next_id = 0
        self._input_ended = False
        self.closed = False
        self._held: list[bytes] | None = None
        """Messages held while the client's layout is asked (see `StandardDialect.layout_of`)."""

    def start(self) -> bool:
        try:
            self._session = self.dialect.store.open_session(self, self.identity)
        except Refused as refusal:
            self.dialect.log_refusal(self.label, refusal, self.identity)
            return False
        return True

    def feed(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            frames = self._decoder.feed(data)
        except FramingError as e:
            self._abort(Refused(Status.INVALID_MESSAGE, f"unframeable input: {e}"))
            return
        for message in frames:
            if self._held is not None:
                self._held.append(message)
                continue
            try:
                self._handle(message)
            except Exception:
                self.dialect.log.failure(
                    "standard request from {peer} failed",
                    peer=self.label,
                    event="request.failed",
                    dialect="standard",
                    peer_id=peer_id_to_text(self.identity),
                )
                self._internal_error()
            if self.closed:
                return

    def input_ended(self) -> None:
        """The client half-closed: finish once every request is answered."""
        self._input_ended = True
        self._finish_if_done()

    def end(self) -> None:
        """The stream is gone (its registrations stay until their TTL ends)."""
        self.closed = True
        session, self._session = self._session, None
        if session is not None:
            self.dialect.store.close_session(session)

    def _handle(self, data: bytes) -> None:
        dialect = self.dialect
        layout, request = dialect.codec.parse(data, self.identity)
        if layout is not None and layout is not self.layout:
            self.layout = layout
            if layout is Layout.PRESPEC:
                dialect.prespec[self.connection] = None
        if (
            layout is None
            and self.layout is None
            and type(request) is DiscoverRequest
            and dialect.ask_agent is not None
        ):
            # No REGISTER has shown this client's layout: its agent version tells.
            self._held = [data]
            dialect.layout_of(self.connection).addCallback(self._layout_known)
            return
        layout = self.layout or Layout.SPEC
        session = self._session
        assert session is not None
        self._next_id += 1
        request_id = self._next_id
        if type(request) is Invalid:
            if request.kind is None:
                self._abort(request.refusal)
            else:
                self._pending[request_id] = (request.kind, layout, "", 0)
                self.refused(request_id, request.refusal)
        elif type(request) is RegisterRequest:
            self._pending[request_id] = (Message.REGISTER, layout, request.namespace, request.ttl)
            dialect.store.register_ttl(
                session, request.namespace, request.peer, request.ttl, request_id
            )
        elif type(request) is UnregisterRequest:
            dialect.store.unregister(session, request.namespace, self.identity, request_id)
        elif type(request) is DiscoverRequest:
            namespace = request.namespace
            try:
                after = (
                    0
                    if request.cookie is None
                    else decode_cookie(request.cookie, dialect.epoch, namespace)
                )
            except Refused as refusal:
                self._pending[request_id] = (Message.DISCOVER, layout, namespace, 0)
                self.refused(request_id, refusal)
                return
            self._pending[request_id] = (Message.DISCOVER, layout, namespace, after)
            dialect.store.discover_since(
                session,
                namespace or None,
                after,
                request.limit,
                request_id,
                signed_only=layout is Layout.SPEC,
            )

    def _layout_known(self, layout: Layout) -> None:
        held, self._held = self._held or [], None
        if self.layout is None:
            self.layout = layout
            if layout is Layout.PRESPEC:
                self.dialect.prespec[self.connection] = None
        for message in held:  # the layout is known now: none is held again
            if self.closed:
                return
            try:
                self._handle(message)
            except Exception:
                self.dialect.log.failure(
                    "standard request from {peer} failed",
                    peer=self.label,
                    event="request.failed",
                    dialect="standard",
                    peer_id=peer_id_to_text(self.identity),
                )
                self._internal_error()
        self._finish_if_done()

    # -- TTLClient: answers from the store --------------------------------

    def registered(self, request_id: int | None, registration: Registration) -> None:
        answer = self._answer(request_id)
        if answer is None:
            return
        _, layout, _, ttl = answer
        self._send(self.dialect.codec.register_response(layout, ttl))

    def discovered(
        self, request_id: int | None, namespace: str, registrations: list[Registration]
    ) -> None:
        answer = self._answer(request_id)
        if answer is None:
            return
        _, layout, asked, after = answer
        dialect = self.dialect

        def cookie(position: int) -> bytes:
            return encode_cookie(dialect.epoch, position, asked)

        data = dialect.codec.discover_response(
            layout, registrations, dialect.clock.seconds(), after, cookie
        )
        self._send(data)

    def refused(self, request_id: int | None, refusal: Refused) -> None:
        self.dialect.log_refusal(self.label, refusal, self.identity)
        answer = self._answer(request_id)
        if answer is None:
            return  # an UNREGISTER: the spec has no answer for it
        kind, layout, _, _ = answer
        data = self.dialect.codec.refusal(layout, kind, refusal)
        if data is not None:
            self._send(data)

    def announce(self, announcement: Announcement) -> None:
        """Never subscribed: nothing is pushed on the standard dialect."""

    def snapshot(self, namespace: str, registrations: list[Registration]) -> None:
        """Never subscribed."""

    # -- internals --------------------------------------------------------

    def _answer(self, request_id: int | None) -> tuple[int, Layout, str, int] | None:
        if request_id is None:
            return None
        return self._pending.pop(request_id, None)

    def _send(self, data: bytes) -> None:
        if not self.closed:
            self.output.send(frame(data))
            self._finish_if_done()

    def _finish_if_done(self) -> None:
        if self._input_ended and not self._pending and self._held is None and not self.closed:
            self.output.finish()

    def _internal_error(self) -> None:
        """Answer the request that failed (the latest) with E_INTERNAL_ERROR."""
        refusal = Refused(Status.INTERNAL_ERROR, "internal error")
        if self._next_id in self._pending:
            self.refused(self._next_id, refusal)
        else:
            self._abort(refusal)

    def _abort(self, refusal: Refused) -> None:
        self.dialect.log_refusal(self.label, refusal, self.identity)
        self.output.abort()
        self.end()


def _copy(source: Deferred[Layout]) -> Deferred[Layout]:
    """A Deferred that fires with ``source``'s result, leaving ``source`` as it is."""
    copy: Deferred[Layout] = Deferred()

    def relay(layout: Layout) -> Layout:
        copy.callback(layout)
        return layout

    source.addCallback(relay)
    return copy
