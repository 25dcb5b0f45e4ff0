"""The live dialect on a libp2p stream `/rendezvous/live/1.0.0`: moves bytes, applies backpressure.

The session's identity is the peer id Noise authenticated, so a REGISTER for any other
id is refused. The stream's end, or its connection's, ends the session: everything it
registered is removed and announced.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Final

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from rendezvous.live.output import OutputQueue
from rendezvous.live.session import LiveDialect, LiveSession
from rendezvous.p2p.stream import Stream, StreamProtocol
from rendezvous.peerid import peer_id_to_text

PROTOCOL_ID: Final = "/rendezvous/live/1.0.0"


class LiveStream(StreamProtocol):
    """One client's live session on one long-lived stream; its output goes through an
    `OutputQueue` whose `OutputTransport` is the stream."""

    log = Logger()

    def __init__(self, dialect: LiveDialect, clock: IReactorTime, abort_after: float) -> None:
        self.dialect = dialect
        self.label = "p2p ?"
        self.output = OutputQueue(self, clock, dialect.codec.limits.max_pending_bytes, abort_after)
        self.session: LiveSession | None = None

    def stream_started(self, stream: Stream) -> None:
        super().stream_started(stream)
        peer_id = peer_id_to_text(stream.remote_peer_id)
        self.label = f"p2p {peer_id}"
        self.log.debug(
            "session opened: {peer}",
            peer=self.label,
            event="session.opened",
            dialect="live",
            peer_id=peer_id,
        )
        session = self.dialect.session(self.output, self.label, stream.remote_peer_id)
        if session.start():
            self.session = session

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.feed(data)

    def end_received(self) -> None:
        """The client half-closed: its session ends, and so does our side."""
        self._end_session()
        self.output.close()

    def stream_closed(self, reason: str | None) -> None:
        self.output.lost()
        self._end_session()
        self.log.debug(
            "session closed: {peer} ({reason})",
            peer=self.label,
            reason=reason or "end",
            event="session.closed",
            dialect="live",
        )

    def _end_session(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.end()

    # -- OutputTransport: what the OutputQueue writes through -----------------

    def write(self, data: bytes) -> None:
        assert self.stream is not None
        self.stream.write(data)

    def pause_reading(self) -> None:
        assert self.stream is not None
        self.stream.pause_reading()

    def resume_reading(self) -> None:
        assert self.stream is not None
        self.stream.resume_reading()

    def finish(self) -> bool:
        stream = self.stream
        assert stream is not None
        stream.close()
        return stream.closed

    def idle_socket(self) -> socket.socket | None:
        return None  # a libp2p stream: its bytes are framed and encrypted first

    def abort(self) -> None:
        self.log.info(
            "resetting {peer} that did not read its last messages",
            peer=self.label,
            event="session.aborted",
            dialect="live",
        )
        assert self.stream is not None
        self.stream.reset()

    # -- backpressure from the stream ----------------------------------------

    def pause_writing(self) -> None:
        self.output.pause()

    def resume_writing(self) -> None:
        self.output.resume()


def live_stream_handler(
    dialect: LiveDialect, clock: IReactorTime, abort_after: float = 10.0
) -> Callable[[], LiveStream]:
    """The host handler for `PROTOCOL_ID`."""
    return lambda: LiveStream(dialect, clock, abort_after)
