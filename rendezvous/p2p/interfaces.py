"""What the parts of a libp2p host may ask of the host: narrow views, so that none of
them imports `rendezvous.p2p.host.Host` (which imports them all).

A stream handler gets its `Stream`, and through it the `PeerConnection` it is on
(`rendezvous.p2p.stream`); a handler the host serves on its own behalf (identify)
also gets a `LocalHost`; a `rendezvous.p2p.connection.Connection` gets a
`ConnectionHost`. `Host` is all of these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from typing import Protocol, TypeVar

from twisted.internet.interfaces import IReactorTime

from rendezvous.loglimit import LogLimiter
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.noise import StaticKey
from rendezvous.p2p.stream import PeerConnection, StreamProtocol
from rendezvous.pb.identify_pb2 import Identify

StreamHandler = Callable[[], StreamProtocol]
"""Makes the protocol object of one inbound stream."""

C = TypeVar("C", contravariant=True)


class LocalHost(Protocol):
    """Who we are, where we can be reached and what we serve: what identify tells."""

    @property
    def identity(self) -> PrivateKey: ...

    @property
    def listen_addrs(self) -> list[bytes]:
        """Binary multiaddrs (without ``/p2p``) we advertise."""

    @property
    def handlers(self) -> Mapping[str, StreamHandler]:
        """The stream handlers we serve, by protocol id."""

    @property
    def protocol_version(self) -> str: ...

    @property
    def agent_version(self) -> str: ...

    def signed_peer_record(self) -> bytes:
        """Our listen addresses in a signed peer record."""

    @property
    def pushed(self) -> MutableMapping[PeerConnection, Identify]:
        """What each connected peer last told us by identify push."""


class ConnectionLimits(Protocol):
    """The bounds a connection keeps (`rendezvous.p2p.host.HostLimits`)."""

    @property
    def max_streams_per_connection(self) -> int: ...

    @property
    def negotiation_timeout(self) -> float: ...

    @property
    def max_upgrade_bytes(self) -> int: ...


class ConnectionHost(LocalHost, Protocol[C]):
    """What a connection (of type ``C``) asks of the host it belongs to."""

    @property
    def clock(self) -> IReactorTime: ...

    @property
    def limits(self) -> ConnectionLimits: ...

    @property
    def limiter(self) -> LogLimiter:
        """Rate-limits the log lines a stranger's connections can cause."""

    @property
    def noise_static(self) -> StaticKey:
        """The static Noise key (and its signed payload) of every handshake."""

    def admit(self, connection: C, ip: str | None) -> bool:
        """Count a new connection, or refuse it when a limit is reached."""

    def release(self, connection: C, ip: str | None) -> None:
        """A connection that was admitted has closed."""
