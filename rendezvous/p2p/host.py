"""A libp2p host: our identity, the stream handlers we serve, limits, and connections."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from weakref import WeakKeyDictionary

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from rendezvous import __version__
from rendezvous.addrs import InvalidMultiaddr, multiaddr_to_text
from rendezvous.loglimit import LogLimiter
from rendezvous.p2p import identify, ping
from rendezvous.p2p.advertise import is_unspecified
from rendezvous.p2p.connection import Connection
from rendezvous.p2p.envelope import PeerRecord, seal_peer_record
from rendezvous.p2p.interfaces import StreamHandler
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.noise import StaticKey
from rendezvous.p2p.stream import PeerConnection
from rendezvous.pb.identify_pb2 import Identify

Expander = Callable[[Sequence[bytes]], list[bytes]]
"""Turns the addresses a host is bound to into those it can be dialled at."""


def without_unspecified(bound: Sequence[bytes]) -> list[bytes]:
    """``bound`` less its ``/ip4/0.0.0.0`` and ``/ip6/::`` addresses (no peer can dial them)."""
    return [addr for addr in bound if not is_unspecified(addr)]


PROTOCOL_VERSION = "ipfs/0.1.0"
AGENT_VERSION = f"rendezvous/{__version__}"


@dataclass(frozen=True, slots=True)
class HostLimits:
    max_connections: int = 10_000
    max_connections_per_ip: int = 64
    max_streams_per_connection: int = 128
    negotiation_timeout: float = 15.0
    """Seconds to secure and multiplex a connection, and to agree on each stream's protocol."""
    max_upgrade_bytes: int = 256 * 1024
    """Bytes a peer may send before its connection is secured and multiplexed."""

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


class Host:
    """Shared by every connection, listening or dialled; serves identify and ping."""

    log = Logger()

    def __init__(
        self,
        identity: PrivateKey,
        clock: IReactorTime,
        limits: HostLimits | None = None,
        agent_version: str = AGENT_VERSION,
    ) -> None:
        self.identity = identity
        self.peer_id = identity.peer_id()
        self.clock = clock
        self.limits = limits if limits is not None else HostLimits()
        self.agent_version = agent_version
        self.protocol_version = PROTOCOL_VERSION
        self.handlers: dict[str, StreamHandler] = {
            identify.PROTOCOL_ID: lambda: identify.IdentifyResponder(self),
            identify.PUSH_PROTOCOL_ID: lambda: identify.IdentifyPushReceiver(self),
            ping.PROTOCOL_ID: ping.PingResponder,
        }
        self.connections: set[Connection] = set()
        self.pushed: WeakKeyDictionary[PeerConnection, Identify] = WeakKeyDictionary()
        """What each connected peer last told us by identify push."""
        self.limiter = LogLimiter(clock.seconds)
        """Rate-limits the log lines a stranger's connections can cause."""
        self._per_ip: Counter[str] = Counter()
        self._bound: list[bytes] = []
        self._listen_addrs: list[bytes] = []
        self._signed_record: bytes | None = None
        self._noise_static: StaticKey | None = None
        self.announce: tuple[bytes, ...] = ()
        """What to advertise instead of our bound addresses (``--p2p-announce``)."""
        self.expand: Expander = without_unspecified
        """How bound addresses become advertised ones (`rendezvous.p2p.advertise`)."""
        self.addrs_changed: list[Callable[[], None]] = []
        """Called whenever what we advertise changed."""
        self.connection_closed: list[Callable[[Connection], None]] = []
        """Called with each admitted connection once it has closed."""

    # -- what we serve --------------------------------------------------------

    def set_handler(self, protocol_id: str, handler: StreamHandler) -> None:
        self.handlers[protocol_id] = handler

    @property
    def listen_addrs(self) -> list[bytes]:
        """Binary multiaddrs (without ``/p2p``) we can be reached at: what we advertise
        (identify, our signed peer record), never an unspecified address."""
        return list(self._listen_addrs)

    @property
    def bound_addrs(self) -> list[bytes]:
        """Binary multiaddrs our listeners are bound to (``/ip4/0.0.0.0/…`` included)."""
        return list(self._bound)

    def add_listen_addr(self, addr: bytes) -> None:
        """A listener is bound to ``addr``."""
        if addr not in self._bound:
            self._bound.append(addr)
            self.update_addrs()

    def update_addrs(self) -> bool:
        """Work out again what we advertise (a listener bound, the interfaces changed):
        on a change, a new signed peer record, an identify push to every peer, a log line
        per address newly advertised that is not bound as such, and `addrs_changed` told.
        True if it changed."""
        previous = self._listen_addrs
        advertised = list(self.announce) if self.announce else self.expand(self._bound)
        if advertised == previous:
            return False
        self._listen_addrs = advertised
        self._signed_record = None
        peer_id = self.identity.peer_id_text()
        for addr in advertised:
            if addr not in previous and addr not in self._bound:
                self.log.info(
                    "advertising {multiaddr}/p2p/{peer_id}",
                    multiaddr=_text(addr),
                    peer_id=peer_id,
                    event="p2p.advertising",
                )
        for addr in previous:
            if addr not in advertised:
                self.log.info(
                    "no longer advertising {multiaddr}/p2p/{peer_id}",
                    multiaddr=_text(addr),
                    peer_id=peer_id,
                    event="p2p.advertising_stopped",
                )
        for connection in list(self.connections):
            if connection.is_ready:
                identify.push_identify(self, connection).addErrback(self._push_failed)
        for observer in list(self.addrs_changed):
            observer()
        return True

    def _push_failed(self, failure: Failure) -> None:
        self.log.debug(
            "identify push failed: {error}",
            error=failure.getErrorMessage(),
            event="identify.push_failed",
        )

    @property
    def noise_static(self) -> StaticKey:
        """Our static Noise key and its signed payload, for every handshake (made once)."""
        if self._noise_static is None:
            self._noise_static = StaticKey(self.identity)
        return self._noise_static

    def signed_peer_record(self) -> bytes:
        """Our listen addresses in a signed peer record (a new seq whenever they change)."""
        if self._signed_record is None:
            seq = int(self.clock.seconds() * 1_000_000)
            record = PeerRecord(self.peer_id, seq, tuple(self._listen_addrs))
            self._signed_record = seal_peer_record(self.identity, record)
        return self._signed_record

    # -- connections ----------------------------------------------------------

    def admit(self, connection: Connection, ip: str | None) -> bool:
        """Count a new connection, or refuse it when a limit is reached."""
        limits = self.limits
        if len(self.connections) >= limits.max_connections:
            return False
        if ip is not None and self._per_ip[ip] >= limits.max_connections_per_ip:
            return False
        self.connections.add(connection)
        if ip is not None:
            self._per_ip[ip] += 1
        return True

    def release(self, connection: Connection, ip: str | None) -> None:
        if connection not in self.connections:
            return
        self.connections.discard(connection)
        if ip is not None:
            self._per_ip[ip] -= 1
            if not self._per_ip[ip]:
                del self._per_ip[ip]
        for observer in self.connection_closed:
            observer(connection)

    def factory(self) -> HostFactory:
        """The factory to listen with."""
        return HostFactory(self)

    def dial(
        self, endpoint: IStreamClientEndpoint, peer_id: bytes | None = None
    ) -> Deferred[Connection]:
        """Connect, secure and multiplex; fires with the connection once streams can open.

        With ``peer_id``, the handshake fails unless the peer proves that identity.
        """
        connection = Connection(self, dialer=True, expected_peer_id=peer_id)
        factory = Factory()
        factory.buildProtocol = lambda addr: connection  # type: ignore[method-assign]
        connected = endpoint.connect(factory)

        def upgraded(_: object) -> Deferred[Connection]:
            return connection.ready

        return connected.addCallback(upgraded)


def _text(addr: bytes) -> str:
    try:
        return multiaddr_to_text(addr)
    except InvalidMultiaddr:
        return addr.hex()


class HostFactory(Factory):
    """Builds a listening-side `Connection` per accepted TCP connection."""

    noisy = False

    def __init__(self, host: Host) -> None:
        self.host = host

    def buildProtocol(self, addr: IAddress | None) -> Connection:
        connection = Connection(self.host, dialer=False)
        connection.factory = self
        return connection
