"""The standard dialect on libp2p streams: `/rendezvous/1.0.0` and `/canvas/rendezvous/1.0.0`.

Moves bytes between a stream and a `StandardSession`; the session's identity is the
peer id Noise authenticated. Output is small and request-driven, so a client that
stops reading is simply not read from until it does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from twisted.logger import Logger

from rendezvous.p2p.stream import Stream, StreamProtocol
from rendezvous.peerid import peer_id_to_text
from rendezvous.standard.session import StandardDialect, StandardSession

PROTOCOL_ID: Final = "/rendezvous/1.0.0"
CANVAS_PROTOCOL_ID: Final = "/canvas/rendezvous/1.0.0"
"""@canvas-js/libp2p-rendezvous: the same messages under its own id."""


class StandardStream(StreamProtocol):
    """One stream of standard-dialect requests; the session's `StandardOutput`."""

    log = Logger()

    def __init__(self, dialect: StandardDialect) -> None:
        self.dialect = dialect
        self.session: StandardSession | None = None
        self._finished = False

    def stream_started(self, stream: Stream) -> None:
        super().stream_started(stream)
        label = f"p2p {peer_id_to_text(stream.remote_peer_id)} {stream.protocol_id}"
        session = self.dialect.session(self, label, stream.remote_peer_id, stream.connection)
        if session.start():
            self.session = session
        else:
            stream.reset()

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.feed(data)

    def end_received(self) -> None:
        if self.session is not None:
            self.session.input_ended()
        else:
            self.finish()

    def stream_closed(self, reason: str | None) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.end()

    def pause_writing(self) -> None:
        if self.stream is not None:
            self.stream.pause_reading()

    def resume_writing(self) -> None:
        if self.stream is not None:
            self.stream.resume_reading()

    # -- StandardOutput -----------------------------------------------------

    def send(self, data: bytes) -> None:
        assert self.stream is not None
        self.stream.write(data)

    def finish(self) -> None:
        if not self._finished and self.stream is not None:
            self._finished = True
            self.stream.close()

    def abort(self) -> None:
        if self.stream is not None:
            self.stream.reset()


def standard_stream_handler(dialect: StandardDialect) -> Callable[[], StandardStream]:
    """The host handler for `PROTOCOL_ID` and `CANVAS_PROTOCOL_ID`."""
    return lambda: StandardStream(dialect)
