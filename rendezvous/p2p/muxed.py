"""A secured, multiplexed libp2p connection, sans I/O: Noise transport messages,
the yamux session, and the multistream-select agreement of each stream's protocol.

`ConnectionMachine` takes over from `rendezvous.p2p.upgrade.Upgrade` (its `Upgraded`
gives the Noise session). It is fed the bytes that arrived (`ConnectionMachine.receive`)
and the streams' writes, closes, resets and reading pauses, and answers with events,
in order: yamux's own (`rendezvous.p2p.yamux.DataReceived`, `StreamEnded`,
`StreamReset`, `SendBufferDrained`, `PingAnswered`, `GoAwayReceived`) for streams whose
protocol was agreed, `Negotiated` or `NotNegotiated` when a stream's agreement ends,
and `StreamTimer` when a stream's agreement starts: the negotiation timeout, a timer it
asks for and is told of (`ConnectionMachine.timer_fired`). The bytes to send, each a
whole number of yamux frames per Noise message, are taken with `data_to_send`. It knows
no reactor, no transport and no stream handler:
`rendezvous.p2p.connection.Connection` drives one over TCP and hands each agreed stream
to its handler.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rendezvous.p2p import noise, yamux
from rendezvous.p2p.multistream import Initiator, MultistreamError, Responder
from rendezvous.p2p.noise import NoiseSession
from rendezvous.p2p.yamux import (
    DataReceived,
    StreamEnded,
    StreamOpened,
    StreamReset,
    YamuxEvent,
    YamuxSession,
)

MAX_DATA_FRAME = noise.MAX_PLAINTEXT_LEN - yamux.HEADER_SIZE
"""Largest yamux Data frame we send: with its header, one full Noise message."""
SMALL_WRITE = 4096
"""Up to this many bytes, a Noise message is joined into one piece."""


class StreamTimer:
    """Call `ConnectionMachine.timer_fired` with ``stream_id`` after ``seconds``, unless
    the stream's `Negotiated` or `NotNegotiated` comes first: the timer is then no
    longer wanted."""

    __slots__ = ("seconds", "stream_id")

    def __init__(self, stream_id: int, seconds: float) -> None:
        self.stream_id = stream_id
        self.seconds = seconds


class Negotiated:
    """Stream ``stream_id`` now carries ``protocol_id``; ``leftover``: its first bytes,
    which came with the agreement."""

    __slots__ = ("leftover", "protocol_id", "stream_id")

    def __init__(self, stream_id: int, protocol_id: str, leftover: bytes) -> None:
        self.stream_id = stream_id
        self.protocol_id = protocol_id
        self.leftover = leftover


class NotNegotiated:
    """No protocol was agreed on stream ``stream_id`` (``reason``); it is gone."""

    __slots__ = ("reason", "stream_id")

    def __init__(self, stream_id: int, reason: str) -> None:
        self.stream_id = stream_id
        self.reason = reason


Event = YamuxEvent | StreamTimer | Negotiated | NotNegotiated


class ConnectionMachine:
    """One connection once secured and multiplexed.

    ``noise``: its Noise session, handshake done; ``dialer``: whether we dialled it
    (yamux's stream ids); ``handlers``: the protocol ids an inbound stream may select
    (read at each new stream); ``timeout``: seconds each stream's agreement may take;
    ``max_streams``: streams at once."""

    __slots__ = ("_handlers", "_negotiating", "_noise", "_timeout", "_yamux")

    def __init__(
        self,
        noise: NoiseSession,
        *,
        dialer: bool,
        handlers: Iterable[str],
        timeout: float,
        max_streams: int,
    ) -> None:
        self._noise = noise
        self._handlers = handlers
        self._timeout = timeout
        self._yamux = YamuxSession(
            dialer=dialer, max_streams=max_streams, max_frame_payload=MAX_DATA_FRAME
        )
        self._negotiating: dict[int, Initiator | Responder] = {}

    @property
    def noise(self) -> NoiseSession:
        """The Noise session whose transport messages carry the connection."""
        return self._noise

    @property
    def yamux(self) -> YamuxSession:
        """The yamux session."""
        return self._yamux

    # -- receiving ----------------------------------------------------------

    def receive(self, data: bytes) -> Sequence[Event]:
        """Feed the bytes that arrived; what happened, in order. Raises
        `rendezvous.p2p.noise.NoiseError` or `rendezvous.p2p.yamux.YamuxError` when the
        peer broke the connection (yamux then has a GoAway to send)."""
        chunks = self._noise.decrypt_frames(data)
        if not chunks:
            return []
        return self.receive_plaintext(chunks)

    def receive_plaintext(self, chunks: list[bytes]) -> Sequence[Event]:
        """`receive`, for yamux bytes already decrypted (those that came with the
        upgrade's end)."""
        events: Sequence[Event] = self._yamux.feed_chunks(chunks)
        negotiating = self._negotiating
        if not negotiating:  # the common case: yamux's events, as they are
            for event in events:
                if type(event) is StreamOpened:
                    break
            else:
                return events
        out: list[Event] = []
        for event in events:
            if type(event) is DataReceived:
                negotiator = negotiating.get(event.stream_id) if negotiating else None
                if negotiator is None:
                    out.append(event)
                else:
                    self._negotiate(event.stream_id, negotiator, event.data, out)
            elif type(event) is StreamOpened:
                self._inbound(event.stream_id, out)
            elif type(event) is StreamEnded:
                if event.stream_id in negotiating:
                    self._not_negotiated(event.stream_id, "the peer closed the stream", out)
                else:
                    out.append(event)
            elif type(event) is StreamReset:
                if negotiating.pop(event.stream_id, None) is not None:
                    out.append(NotNegotiated(event.stream_id, "the peer reset the stream"))
                else:
                    out.append(event)
            else:
                out.append(event)
        return out

    def _inbound(self, stream_id: int, out: list[Event]) -> None:
        session = self._yamux
        if not session.has_stream(stream_id):
            return  # reset or refused by a later frame of the same batch
        session.accept(stream_id)
        responder = Responder(self._handlers)
        self._negotiating[stream_id] = responder
        out.append(StreamTimer(stream_id, self._timeout))
        session.write(stream_id, responder.start())

    def _negotiate(
        self, stream_id: int, negotiator: Initiator | Responder, data: bytes, out: list[Event]
    ) -> None:
        try:
            reply = negotiator.feed(data)
        except MultistreamError as error:
            self._not_negotiated(stream_id, str(error), out)
            return
        session = self._yamux
        if reply and session.has_stream(stream_id):
            session.write(stream_id, reply)
        protocol_id = negotiator.selected
        if protocol_id is None:
            return
        del self._negotiating[stream_id]
        out.append(Negotiated(stream_id, protocol_id, negotiator.leftover))

    def _not_negotiated(self, stream_id: int, reason: str, out: list[Event]) -> None:
        self._negotiating.pop(stream_id, None)
        self._yamux.reset(stream_id)
        out.append(NotNegotiated(stream_id, reason))

    def timer_fired(self, stream_id: int) -> list[Event]:
        """The `StreamTimer` of ``stream_id`` expired."""
        out: list[Event] = []
        if stream_id in self._negotiating:
            self._not_negotiated(stream_id, "protocol negotiation timed out", out)
        return out

    # -- our side -------------------------------------------------------------

    def open_stream(self, protocol_id: str, early: bytes = b"") -> StreamTimer:
        """Open a stream and propose ``protocol_id`` on it, ``early`` right after (its
        first bytes, before the peer agrees); the stream's negotiation timer. Raises
        `rendezvous.p2p.yamux.YamuxError` when no stream may be opened."""
        session = self._yamux
        stream_id = session.open_stream()
        initiator = Initiator([protocol_id])
        self._negotiating[stream_id] = initiator
        session.write(stream_id, initiator.start() + early)
        return StreamTimer(stream_id, self._timeout)

    def has_stream(self, stream_id: int) -> bool:
        """True while yamux knows the stream (not both sides closed, nor reset)."""
        return self._yamux.has_stream(stream_id)

    def buffered(self, stream_id: int) -> int:
        """Bytes written on the stream that wait for the peer's window."""
        return self._yamux.buffered(stream_id)

    def write(self, stream_id: int, data: bytes) -> int:
        """Write on an agreed stream; the bytes buffered for lack of window. Raises
        `rendezvous.p2p.yamux.YamuxError` (reset the stream then)."""
        return self._yamux.write(stream_id, data)

    def close(self, stream_id: int) -> None:
        self._yamux.close(stream_id)

    def reset(self, stream_id: int) -> None:
        self._yamux.reset(stream_id)

    def pause_reading(self, stream_id: int) -> None:
        self._yamux.pause_reading(stream_id)

    def resume_reading(self, stream_id: int) -> list[YamuxEvent]:
        """The data and end held while the stream was paused."""
        return self._yamux.resume_reading(stream_id)

    def go_away(self) -> None:
        self._yamux.go_away()

    # -- sending ----------------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        """The Noise messages to send, in pieces to write in order: each carries a whole
        number of yamux frames; a single small one comes as one piece."""
        chunks = self._yamux.chunks_to_send(noise.MAX_PLAINTEXT_LEN)
        if not chunks:
            return chunks
        encrypt_frames = self._noise.encrypt_frames
        if len(chunks) == 1:
            chunk = chunks[0]
            if len(chunk) <= SMALL_WRITE:
                return [b"".join(encrypt_frames(chunk))]
            return encrypt_frames(chunk)
        pieces: list[bytes] = []
        for chunk in chunks:
            pieces += encrypt_frames(chunk)
        return pieces
