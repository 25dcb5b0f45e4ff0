"""libp2p over WebSocket (``…/tcp/PORT/ws``): a byte stream inside binary messages.

Any stream `IProtocol` (here the libp2p `Connection`) runs unchanged over a WebSocket:
`WebSocketServerEndpoint` and `WebSocketClientEndpoint` wrap a TCP endpoint, and once
the opening handshake is done the wrapped protocol gets a `_ByteTransport` whose
``write`` sends one binary message and whose producer calls reach the TCP transport.
Text messages, compression and oversized messages close the WebSocket.

A server holds what it writes until the client's first message: a client (Node's ``ws``,
browsers) that reads the handshake response and a message in one read delivers the
message before it can listen for it, and js-libp2p would lose our multistream header.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from autobahn.exception import Disconnected
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

MAX_MESSAGE_BYTES = 1024 * 1024
"""Largest WebSocket message (and frame) accepted; a Noise frame is at most 65537 bytes."""
MAX_HANDSHAKE_BYTES = 16 * 1024
"""Largest HTTP upgrade request or response accepted."""
HANDSHAKE_TIMEOUT = 10.0
"""Seconds for the HTTP upgrade (the libp2p negotiation timeout applies after it)."""
CLOSE_TIMEOUT = 2.0
"""Seconds to wait for the peer's close frame before dropping the TCP connection."""


@implementer(IAddress)
@dataclass(frozen=True, slots=True)
class WebSocketPeer:
    """The TCP address of a WebSocket end; `TCPAddress.from_address` adds ``/ws``."""

    host: str
    port: int
    type: str = "TCP"
    websocket: bool = True


def _peer(address: Any) -> Any:
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if isinstance(host, str) and isinstance(port, int):
        return WebSocketPeer(host, port)
    return address


class _ByteTransport:
    """What the wrapped protocol sees as its transport: bytes in binary messages."""

    def __init__(self, websocket: Any, hold: bool) -> None:
        self._websocket = websocket
        self._held: list[bytes] | None = [] if hold else None

    def release(self) -> None:
        """Send what was held, and everything from now on."""
        held, self._held = self._held, None
        if held:
            self.write(b"".join(held))

    @property
    def _tcp(self) -> Any:
        return self._websocket.transport

    def write(self, data: bytes) -> None:
        if data and self._held is not None:
            self._held.append(bytes(data))
        elif data:
            # Once closing, the wrapped protocol learns it from connectionLost.
            with suppress(Disconnected):
                self._websocket.sendMessage(bytes(data), isBinary=True)

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """Close the WebSocket (a close frame after what was written)."""
        if self._websocket.state == WebSocketProtocol.STATE_OPEN:
            self._websocket.sendClose(WebSocketProtocol.CLOSE_STATUS_CODE_NORMAL)

    def abortConnection(self) -> None:
        self._tcp.abortConnection()

    def getPeer(self) -> Any:
        return _peer(self._tcp.getPeer())

    def getHost(self) -> Any:
        return _peer(self._tcp.getHost())

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._tcp.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._tcp.unregisterProducer()

    def pauseProducing(self) -> None:
        self._tcp.pauseProducing()

    def resumeProducing(self) -> None:
        self._tcp.resumeProducing()

    def stopProducing(self) -> None:
        self._tcp.stopProducing()


class _Wrapping:
    """Mixed into autobahn's protocols: runs ``wrapped`` once the WebSocket is open."""

    _log = Logger()
    """Not ``log``: autobahn's own (txaio, info and above) must stay in place."""
    wrapped: IProtocol | None = None
    opened: Deferred[IProtocol] | None = None
    hold = False
    """Hold our writes until the peer's first message (servers)."""
    _bytes: _ByteTransport | None = None
    transport: Any
    state: int
    data: bytes

    def _build(self) -> IProtocol | None:
        """The protocol to run over this WebSocket (None refuses it)."""
        raise NotImplementedError

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)  # type: ignore[misc]
        if (
            self.state == WebSocketProtocol.STATE_CONNECTING
            and len(self.data) > MAX_HANDSHAKE_BYTES
        ):
            self._log.debug(
                "dropping a WebSocket whose opening handshake is too long",
                event="websocket.handshake_too_long",
            )
            self.transport.abortConnection()

    def onOpen(self) -> None:
        wrapped = self._build()
        if wrapped is None:
            self.transport.abortConnection()
            return
        self.wrapped = wrapped
        self._bytes = _ByteTransport(self, self.hold)
        wrapped.makeConnection(self._bytes)  # type: ignore[arg-type]
        if self.opened is not None:
            self.opened.callback(wrapped)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N803
        if not isBinary:
            # RFC 6455's 1003 (unsupported data): autobahn's public sendClose takes only
            # 1000 and the application's 3000-4999, so its own failing path says it.
            self._fail_connection(  # type: ignore[attr-defined]
                WebSocketProtocol.CLOSE_STATUS_CODE_UNSUPPORTED_DATA, "binary messages only"
            )
            return
        if self.wrapped is not None and self._bytes is not None:
            self._bytes.release()
            self.wrapped.dataReceived(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N803
        timer = getattr(self, "closeHandshakeTimeoutCall", None)  # autobahn leaves it
        if timer is not None and timer.active():
            timer.cancel()
        wrapped, self.wrapped = self.wrapped, None
        if wrapped is not None:
            if wasClean:
                wrapped.connectionLost(Failure(ConnectionDone()))
            else:
                wrapped.connectionLost(Failure(ConnectionLost(reason or "WebSocket lost")))
        elif self.opened is not None and not self.opened.called:
            self.opened.errback(ConnectionLost(f"WebSocket not opened: {reason}"))


class _Timer:
    """autobahn's timers as plain delayed calls on our clock, so they can be cancelled
    (its batched timer leaves a delayed call behind for every bucket)."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock

    def call_later(self, delay: float, func: Any, *args: Any, **kwargs: Any) -> Any:
        return self._clock.callLater(delay, func, *args, **kwargs)


def _configure(
    factory: WebSocketServerFactory | WebSocketClientFactory, clock: IReactorTime
) -> None:
    factory._batched_timer = _Timer(clock)
    factory.setProtocolOptions(
        maxFramePayloadSize=MAX_MESSAGE_BYTES,
        maxMessagePayloadSize=MAX_MESSAGE_BYTES,
        openHandshakeTimeout=HANDSHAKE_TIMEOUT,
        closeHandshakeTimeout=CLOSE_TIMEOUT,
        autoFragmentSize=0,
        failByDrop=False,
    )


class _ServerProtocol(_Wrapping, WebSocketServerProtocol):  # type: ignore[misc]
    factory: _ServerFactory
    hold = True

    def _build(self) -> IProtocol | None:
        return self.factory.wrapped_factory.buildProtocol(self.transport.getPeer())


class _ServerFactory(WebSocketServerFactory):
    noisy = False

    def __init__(
        self, wrapped_factory: IProtocolFactory, clock: IReactorTime, max_connections: int
    ) -> None:
        super().__init__()
        self.wrapped_factory = wrapped_factory
        _configure(self, clock)
        self.setProtocolOptions(maxConnections=max_connections)

    def startFactory(self) -> None:
        self.wrapped_factory.doStart()
        super().startFactory()

    def buildProtocol(self, addr: IAddress | None) -> Any:
        protocol = _ServerProtocol()
        protocol.factory = self
        return protocol

    def stopFactory(self) -> None:
        self.wrapped_factory.doStop()
        super().stopFactory()


class _ClientProtocol(_Wrapping, WebSocketClientProtocol):  # type: ignore[misc]
    factory: _ClientFactory

    def _build(self) -> IProtocol | None:
        return self.factory.wrapped_factory.buildProtocol(self.transport.getPeer())


class _ClientFactory(WebSocketClientFactory):
    noisy = False

    def __init__(self, url: str, wrapped_factory: IProtocolFactory, clock: IReactorTime) -> None:
        super().__init__(url)
        self.wrapped_factory = wrapped_factory
        self.opened: Deferred[IProtocol] = Deferred()
        _configure(self, clock)

    def buildProtocol(self, addr: IAddress | None) -> Any:
        protocol = _ClientProtocol()
        protocol.factory = self
        protocol.opened = self.opened
        return protocol


@implementer(IStreamServerEndpoint)
class WebSocketServerEndpoint:
    """Listens with ``endpoint`` and serves ``factory``'s protocols inside WebSockets;
    beyond ``max_connections`` (0: no limit) an upgrade request is answered 503."""

    def __init__(
        self, endpoint: IStreamServerEndpoint, clock: IReactorTime, max_connections: int = 0
    ) -> None:
        self._endpoint = endpoint
        self._clock = clock
        self._max_connections = max_connections

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        d: Deferred[IListeningPort] = self._endpoint.listen(
            _ServerFactory(factory, self._clock, self._max_connections)
        )
        return d


@implementer(IStreamClientEndpoint)
class WebSocketClientEndpoint:
    """Connects with ``endpoint``, opens a WebSocket to ``url``, then runs the protocol."""

    def __init__(self, endpoint: IStreamClientEndpoint, url: str, clock: IReactorTime) -> None:
        self._endpoint = endpoint
        self._url = url
        self._clock = clock

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        websocket = _ClientFactory(self._url, factory, self._clock)
        connected = self._endpoint.connect(websocket)

        def failed(failure: Failure) -> None:
            websocket.opened.errback(failure)

        connected.addErrback(failed)
        return websocket.opened
