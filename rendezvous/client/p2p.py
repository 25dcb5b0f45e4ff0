"""The live-dialect client over libp2p: dial a daemon, open `/rendezvous/live/1.0.0`.

The daemon knows us by the peer id Noise authenticates, so a client registers its own
id (a fresh Ed25519 key per run unless one is loaded).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTCP
from twisted.python.failure import Failure

from rendezvous.client.live import LiveClient
from rendezvous.live.stream import PROTOCOL_ID
from rendezvous.p2p.connection import Connection
from rendezvous.p2p.host import Host
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.stream import Stream, StreamProtocol
from rendezvous.p2p.transport import TCPAddress


class LiveClientStream(LiveClient, StreamProtocol):
    """A session on one libp2p stream; with ``owns_connection``, `disconnect` also
    closes the connection the stream runs on."""

    def __init__(self, owns_connection: bool = False, max_frame: int = 16 * 1024 * 1024) -> None:
        super().__init__(max_frame)
        self.owns_connection = owns_connection

    def stream_started(self, stream: Stream) -> None:
        StreamProtocol.stream_started(self, stream)
        self._opened()

    def data_received(self, data: bytes) -> None:
        self._bytes_received(data)

    def end_received(self) -> None:
        """The server ended the session: end ours too."""
        self.disconnect()

    def stream_closed(self, reason: str | None) -> None:
        self._lost(reason or "the server closed the stream")
        if self.owns_connection and self.stream is not None:
            self.stream.connection.close()

    def _write(self, data: bytes) -> None:
        if self.stream is not None:
            self.stream.write(data)

    def disconnect(self) -> None:
        stream = self.stream
        if stream is None:
            return
        stream.close()
        if self.owns_connection:
            stream.connection.close()


def dial(reactor: IReactorTCP, address: TCPAddress, identity: PrivateKey) -> Deferred[Connection]:
    """Connect to ``address`` as ``identity``, checking its ``/p2p`` id when it names one."""
    host = Host(identity, reactor)  # type: ignore[arg-type]
    return host.dial(address.client_endpoint(reactor), address.peer_id)


def connect_p2p(
    reactor: IReactorTCP, address: TCPAddress, identity: PrivateKey
) -> Deferred[LiveClientStream]:
    """Dial ``address`` as ``identity`` and open a live-dialect stream;
    `LiveClientStream.disconnect` closes the connection."""
    client = LiveClientStream(owns_connection=True)
    dialled = dial(reactor, address, identity)

    def connected(connection: Connection) -> Deferred[Stream]:
        opened = connection.open_stream(PROTOCOL_ID, client)

        def failed(failure: Failure) -> Failure:
            connection.close()
            return failure

        return opened.addErrback(failed)

    return dialled.addCallback(connected).addCallback(lambda _: client)


__all__ = ["LiveClientStream", "connect_p2p", "dial"]
