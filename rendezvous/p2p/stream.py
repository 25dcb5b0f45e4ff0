"""One negotiated yamux stream as handlers see it, the callbacks they implement, and
the connection as they see it.

A `Stream` is on a `PeerConnection` (a `rendezvous.p2p.connection.Connection`), which
moves its bytes; a `StreamProtocol` is told what happens on it. Writes never block:
`write` hands the bytes to yamux at once, and `pause_writing`/`resume_writing` tell the
protocol when the peer's window or the TCP connection pushes back, so it can hold
further output. Handlers import this module, never the connection's.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.defer import Deferred

from rendezvous.p2p.transport import TCPAddress


class PeerConnection(Protocol):
    """The secured, multiplexed connection a stream is on, as the stream and its handler
    see it."""

    @property
    def remote_peer_id(self) -> bytes:
        """The peer's id (multihash bytes), authenticated by the secure channel."""

    @property
    def remote_public_key(self) -> bytes:
        """The peer's public key (protobuf), as it proved it in the handshake."""

    @property
    def remote_address(self) -> TCPAddress | None:
        """Where the peer's TCP connection comes from, if known."""

    @property
    def label(self) -> str:
        """The peer id and address, for log lines."""

    def open_stream(self, protocol_id: str, protocol: StreamProtocol) -> Deferred[Stream]:
        """Open another stream to the peer for ``protocol_id``, handled by ``protocol``."""

    def close(self) -> None:
        """Close the whole connection (every stream on it)."""

    # What a `Stream` asks of its connection:

    def stream_write(self, stream: Stream, data: bytes) -> None: ...

    def stream_close(self, stream: Stream) -> None: ...

    def stream_reset(self, stream: Stream) -> None: ...

    def stream_pause_reading(self, stream: Stream) -> None: ...

    def stream_resume_reading(self, stream: Stream) -> None: ...


class StreamProtocol:
    """What a stream handler implements; every method has a do-nothing default."""

    stream: Stream | None = None

    def stream_started(self, stream: Stream) -> None:
        """The protocol was agreed; ``stream`` carries it from now on."""
        self.stream = stream

    def data_received(self, data: bytes) -> None:
        """Bytes from the peer."""

    def end_received(self) -> None:
        """The peer half-closed the stream: nothing more will arrive."""

    def stream_closed(self, reason: str | None) -> None:
        """The stream is gone: ``None`` when both sides closed it, else why (once)."""

    def pause_writing(self) -> None:
        """Unsent bytes are piling up: hold further writes until `resume_writing`."""

    def resume_writing(self) -> None:
        """Everything written so far has been handed to the TCP connection."""


class Stream:
    """A yamux stream whose protocol was negotiated."""

    def __init__(self, connection: PeerConnection, stream_id: int, protocol_id: str) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.protocol_id = protocol_id
        self.protocol: StreamProtocol | None = None
        self.writing_paused = False
        self.local_closed = False
        """True once we half-closed (or reset) the stream."""
        self.closed = False
        """True once the stream is gone (both sides closed, reset, or connection lost)."""

    @property
    def remote_peer_id(self) -> bytes:
        """The peer's id (multihash bytes), authenticated by Noise."""
        return self.connection.remote_peer_id

    def write(self, data: bytes) -> None:
        """Send ``data`` (ignored once the stream is closed for writing)."""
        self.connection.stream_write(self, data)

    def close(self) -> None:
        """Half-close: FIN after what was written."""
        self.connection.stream_close(self)

    def reset(self) -> None:
        """Abort the stream in both directions."""
        self.connection.stream_reset(self)

    def pause_reading(self) -> None:
        """Stop delivering data (the peer's window closes once a window is held)."""
        self.connection.stream_pause_reading(self)

    def resume_reading(self) -> None:
        self.connection.stream_resume_reading(self)

    def __repr__(self) -> str:
        return f"<Stream {self.stream_id} {self.protocol_id}>"
