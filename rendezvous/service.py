"""Assemble a daemon: store, dialects, listeners and metrics as one Twisted service."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client.twisted import MetricsResource
from twisted.application import strports
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorSSL,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.web.resource import Resource
from zope.interface import implementer

from rendezvous import __version__
from rendezvous.limits import Limits
from rendezvous.live.codec import LiveCodec
from rendezvous.live.fanout import LiveFanOut
from rendezvous.live.flood import FloodGuard, ListenerPause
from rendezvous.live.goodbye import Goodbye
from rendezvous.live.peertls import PeerCertificates, requesting_endpoint
from rendezvous.live.protocol import LiveFactory, WrappedLiveFactory, describe
from rendezvous.live.session import LiveDialect
from rendezvous.live.stream import PROTOCOL_ID as LIVE_PROTOCOL_ID
from rendezvous.live.stream import live_stream_handler
from rendezvous.loglimit import LogLimiter
from rendezvous.malloctrim import MallocTrim, glibc_malloc_trim
from rendezvous.metrics import Metrics
from rendezvous.p2p.connection import Connection
from rendezvous.p2p.host import Host, HostLimits
from rendezvous.p2p.identify import identify
from rendezvous.p2p.keys import PrivateKey, load_or_create_identity
from rendezvous.p2p.listen import advertising, p2p_listeners
from rendezvous.standard.codec import StandardCodec
from rendezvous.standard.session import StandardDialect
from rendezvous.standard.stream import CANVAS_PROTOCOL_ID, standard_stream_handler
from rendezvous.standard.stream import PROTOCOL_ID as STANDARD_PROTOCOL_ID
from rendezvous.store.base import Store
from rendezvous.store.memory import MemoryStore
from rendezvous.web.site import QuietSite, web_site
from rendezvous.web.status import RELAY_NAMESPACE
from rendezvous.workers.hub import Hub
from rendezvous.workers.pool import WorkerPool


@dataclass(frozen=True)
class DaemonConfig:
    listen: Sequence[str] = ("tcp:4001",)
    metrics: str | None = None
    limits: Limits = field(default_factory=Limits)
    store: str = "memory"
    """``memory`` or ``redis://HOST:PORT/DB`` / ``rediss://…`` (see `rendezvous.store.redis`)."""
    store_password_file: str | None = None
    store_ca_file: str | None = None
    lease: float = 10.0
    """Redis store: seconds after which a silent daemon's registrations are reaped."""
    shutdown_grace: float = 5.0
    """Seconds a stop may take: live sessions are told and given half of it to close,
    and whatever has not finished by then is left behind."""
    flood_refusals: int = 1000
    """Refused live connections per second above which the live listeners pause."""
    fanout_threads: int = 2
    """Threads that write one push to many live subscribers at once (1: the reactor's
    thread alone); see `rendezvous.live.fanout`."""
    flood_pause_max: float = 1.0
    """Longest pause of the live listeners under a flood (0: never pause); see
    `rendezvous.live.flood`."""
    p2p_listen: Sequence[str] = ()
    """libp2p multiaddrs, e.g. ``/ip4/127.0.0.1/tcp/4002``, ``…/tcp/4003/ws`` (port 0 picks one)."""
    identity: str | None = None
    """libp2p private key file, created (mode 0600) if missing; None: a new key per run."""
    p2p_limits: HostLimits = field(default_factory=HostLimits)
    p2p_announce: Sequence[str] = ()
    """Multiaddrs to advertise instead of the libp2p listen addresses (``--p2p-announce``)."""
    p2p_tls_cert: str | None = None
    """PEM certificate (and chain) of the ``/tls/ws`` and ``/wss`` listeners."""
    p2p_tls_key: str | None = None
    p2p_proxy_protocol: bool = False
    """Every libp2p connection starts with a PROXY protocol header."""
    workers: int = 0
    """Worker processes serving the live dialect's plain tcp: and unix: listeners; 0:
    this process serves them (see `rendezvous.workers`)."""
    web: str | None = None
    """strport of the status page (and of `web_root` under /app/); None: no web server."""
    web_root: str | None = None
    web_relay_namespace: str = RELAY_NAMESPACE
    """The fleet's namespace, whose relays the status page lists."""
    require_peer_certificates: bool = False
    """``ssl:`` listeners refuse clients without a libp2p peer certificate (every
    ``ssl:`` listener asks for one, and authenticates the session as its peer id)."""


@implementer(IStreamServerEndpoint)
class _LoggedEndpoint:
    """An endpoint that logs the address it listens on."""

    log = Logger()

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        what: str,
        description: str,
        ports: list[IListeningPort],
    ) -> None:
        self._endpoint = endpoint
        self._what = what
        self._description = description
        self._ports = ports

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        def listening(port: IListeningPort) -> IListeningPort:
            self.log.info(
                "{what} listening on {address} ({description})",
                what=self._what,
                address=describe(port.getHost()),
                description=self._description,
                event="listener.started",
            )
            self._ports.append(port)
            return port

        d: Deferred[IListeningPort] = self._endpoint.listen(factory)
        return d.addCallback(listening)


LISTEN_BACKLOG = 4096
"""Accept queue of the live listeners unless their strport names one: Twisted's 50
overflows when thousands of clients reconnect after a restart, and the handshakes it
drops strand clients for many seconds (docs/benchmarks.rst, restart drill). The
kernel caps it at ``net.core.somaxconn``."""
_QUEUED_TYPES = ("tcp:", "tcp6:", "ssl:", "unix:", "haproxy:")


def with_backlog(description: str, backlog: int = LISTEN_BACKLOG) -> str:
    """``description`` with ``backlog`` added, for a listening strport that queues
    connections and names no backlog of its own."""
    if description.startswith(_QUEUED_TYPES) and "backlog=" not in description:
        return f"{description}:backlog={backlog}"
    return description


def _listener(
    description: str,
    factory: IProtocolFactory,
    what: str,
    ports: list[IListeningPort],
    endpoint: IStreamServerEndpoint | None = None,
) -> Service:
    """A strports service (bind errors fail start-up) that logs where it listens;
    on ``endpoint`` if given, else on the one ``description`` names."""
    service = strports.service(description, factory)
    service.endpoint = _LoggedEndpoint(endpoint or service.endpoint, what, description, ports)
    return service


def _live_endpoint(description: str, clock: IReactorTime) -> IStreamServerEndpoint | None:
    """An ``ssl:`` listener's endpoint that asks clients for peer certificates; None
    (the strport's own endpoint) for other listeners."""
    if not description.startswith("ssl:"):
        return None
    if IReactorSSL.providedBy(clock):
        return requesting_endpoint(clock, description)
    from twisted.internet import reactor

    return requesting_endpoint(reactor, description)  # type: ignore[arg-type]


class _Banner(Service):
    log = Logger()

    def __init__(self, store: str) -> None:
        self.store = store

    def startService(self) -> None:
        super().startService()
        self.log.info(
            "rendezvous {version} starting, {store}",
            version=__version__,
            store=self.store,
            event="daemon.starting",
        )


class _OnStop(Service):
    """Calls ``stop`` when the daemon stops."""

    def __init__(self, stop: Callable[[], None]) -> None:
        self._stop = stop

    def stopService(self) -> None:
        super().stopService()
        self._stop()


class _StoreService(Service):
    """Starts the store with the daemon; stopping waits for the store to let go."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def startService(self) -> None:
        super().startService()
        self.store.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.store.stop()


def make_store(config: DaemonConfig, clock: IReactorTime) -> tuple[Store, str]:
    """The store ``config`` names, and words for the start-up banner."""
    if config.store == "memory":
        return MemoryStore(config.limits, clock), "in-memory store"
    from rendezvous.store.redis import RedisLink, RedisStore, parse_target
    from rendezvous.store.redis.cluster import ClusterLink

    target = parse_target(config.store, config.store_password_file, ca_file=config.store_ca_file)
    link: RedisLink | ClusterLink
    if target.cluster:
        link = ClusterLink(clock, target, "rendezvous:")
    else:
        link = RedisLink(clock, target, "rendezvous:")
    store = RedisStore(link, clock, config.limits, lease=config.lease)
    return store, f"redis store {target.describe()}"


def live_dialect(store: Store, limits: Limits, clock: IReactorTime) -> LiveDialect:
    """The live dialect over ``store``, with its metrics and log limiter."""
    return LiveDialect(store, LiveCodec(limits), Metrics(store.stats), LogLimiter(clock.seconds))


def p2p_host(config: DaemonConfig, clock: IReactorTime, dialect: LiveDialect) -> Host:
    """The libp2p host: identify, ping, the live dialect on `LIVE_PROTOCOL_ID` and the
    standard dialect on `STANDARD_PROTOCOL_ID` and `CANVAS_PROTOCOL_ID`."""
    if config.identity is not None:
        identity = load_or_create_identity(config.identity)
    else:
        identity = PrivateKey.generate()
    host = Host(identity, clock, config.p2p_limits)
    host.set_handler(LIVE_PROTOCOL_ID, live_stream_handler(dialect, clock))
    standard = StandardDialect(
        dialect.store,
        StandardCodec(config.limits),
        clock,
        LogLimiter(clock.seconds),
        metrics=dialect.metrics,
        ask_agent=_agent_version,
    )
    for protocol_id in (STANDARD_PROTOCOL_ID, CANVAS_PROTOCOL_ID):
        host.set_handler(protocol_id, standard_stream_handler(standard))
    return host


def _agent_version(connection: object) -> Deferred[str]:
    """The agent version the peer of a libp2p ``connection`` gives in identify."""
    assert isinstance(connection, Connection)
    return identify(connection).addCallback(lambda message: message.agentVersion)


class Daemon(MultiService):
    """The `twistd rendezvous` service tree."""

    log = Logger()

    def __init__(self, config: DaemonConfig, clock: IReactorTime) -> None:
        super().__init__()
        self.clock = clock
        self.shutdown_grace = config.shutdown_grace
        self.store, banner = make_store(config, clock)
        self.dialect = live_dialect(self.store, config.limits, clock)
        self.metrics = self.dialect.metrics
        use_fan_out = getattr(self.store, "use_fan_out", None)
        if config.fanout_threads > 1 and use_fan_out is not None:
            fan_out = LiveFanOut(self.dialect, config.fanout_threads)
            use_fan_out(fan_out)
            _OnStop(fan_out.stop).setServiceParent(self)
        self.live_factory = LiveFactory(
            self.dialect,
            clock,
            peer_certificates=PeerCertificates(clock.seconds, config.require_peer_certificates),
        )
        self.live_ports: list[IListeningPort] = []
        self.live_factory.flood = ListenerPause(
            clock,
            self.live_ports,
            FloodGuard(clock.seconds, config.flood_refusals, config.flood_pause_max),
            self.metrics,
        )
        self.metrics_ports: list[IListeningPort] = []
        _StoreService(self.store).setServiceParent(self)
        _Banner(banner).setServiceParent(self)
        # Free pages in the middle of glibc's heap back to the system now and then: RSS
        # stays flat under churn (see `rendezvous.malloctrim`).
        self.malloc_trim = MallocTrim(clock, glibc_malloc_trim())
        self.malloc_trim.setServiceParent(self)
        # Stopped after the listeners (services stop in reverse order), before the store.
        goodbye = Goodbye(self.dialect, self.live_factory, clock, config.shutdown_grace / 2)
        goodbye.setServiceParent(self)
        for description in config.listen:
            description = with_backlog(description)
            plain = description.startswith(("tcp:", "tcp6:", "unix:"))
            _listener(
                description,
                self.live_factory if plain else WrappedLiveFactory(self.live_factory),
                "live dialect",
                self.live_ports,
                _live_endpoint(description, clock),
            ).setServiceParent(self)
        self.p2p_host: Host | None = None
        self.p2p_ports: list[IListeningPort] = []
        if config.p2p_listen:
            self.p2p_host = p2p_host(config, clock, self.dialect)
            for listener in p2p_listeners(
                config.p2p_listen,
                self.p2p_host,
                self.p2p_ports,
                config.p2p_tls_cert,
                config.p2p_tls_key,
                config.p2p_proxy_protocol,
                lambda reason: self.metrics.refused("proxy_protocol_header"),
            ):
                listener.setServiceParent(self)
            advertising(self.p2p_host, config.p2p_announce, clock).setServiceParent(self)
        self.hub: Hub | None = None
        if config.workers:
            # ``clock`` is then the reactor: the pool spawns processes and adopts sockets.
            self.hub = Hub(self.store, clock)
            self.metrics.include(self.hub.worker_counts)
            pool = WorkerPool(
                config.workers, self.hub, self.live_ports, self.live_factory, config.limits, clock
            )
            pool.setServiceParent(self)
            self.metrics.registry.register(pool)
        if config.metrics is not None:
            root = Resource()
            root.putChild(b"metrics", MetricsResource(registry=self.metrics.registry))
            # No line per scrape: it would name the scraper's address at info level.
            site = QuietSite(root)
            _listener(config.metrics, site, "metrics", self.metrics_ports).setServiceParent(self)
        self.web_ports: list[IListeningPort] = []
        if config.web is not None:
            web = web_site(
                self.store, self.p2p_host, clock, config.web_root, config.web_relay_namespace
            )
            _listener(config.web, web, "web", self.web_ports).setServiceParent(self)

    def stopService(self) -> Deferred[None]:
        """Stop every part, within ``shutdown_grace`` seconds whatever happens (a part
        still busy then is left to the reactor's shutdown)."""
        done: Deferred[None] = Deferred()

        def finish(_: object = None) -> None:
            if timer.active():
                timer.cancel()
            if not done.called:
                done.callback(None)

        def late() -> None:
            self.log.warn(
                "stopping after {grace} s with parts still busy",
                grace=self.shutdown_grace,
                event="daemon.stop_overdue",
            )
            finish()

        timer = self.clock.callLater(self.shutdown_grace, late)
        super().stopService().addBoth(finish)
        return done
