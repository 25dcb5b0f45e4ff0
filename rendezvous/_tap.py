"""`twistd rendezvous`: command-line options and the service they make."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from twisted.application.service import IService
from twisted.python import usage

from rendezvous.addrs import InvalidMultiaddr
from rendezvous.collector import CollectorPolicy
from rendezvous.limits import Limits
from rendezvous.logs import LOG_ADDRESSES_FLAG, show_addresses
from rendezvous.p2p.host import HostLimits
from rendezvous.p2p.keys import IdentityFileError, load_or_create_identity
from rendezvous.p2p.listen import (
    PROXY_PROTOCOL_FLAG,
    TLS_OPTIONS,
    check_tls_options,
    parse_announce_option,
)
from rendezvous.p2p.transport import TCPAddress
from rendezvous.service import Daemon, DaemonConfig
from rendezvous.store.redis.sentinel import NoMaster, probe
from rendezvous.store.redis.target import (
    CLUSTER_SCHEME,
    PASSWORD_VARIABLE,
    SENTINEL_SCHEME,
    BadTarget,
    RedisTarget,
    is_redis_url,
    parse_target,
)
from rendezvous.web.status import RELAY_NAMESPACE

_LIMIT_FLAGS: list[tuple[str, str, str]] = [
    ("max-frame-bytes", "max_frame_bytes", "largest message accepted, in bytes"),
    ("max-namespace-bytes", "max_namespace_bytes", "longest namespace, in UTF-8 bytes"),
    ("max-addrs", "max_addrs_per_peer", "addresses per registered peer"),
    ("max-addr-bytes", "max_addr_bytes", "longest binary multiaddr"),
    ("max-record-bytes", "max_signed_record_bytes", "largest signed peer record"),
    ("max-registrations-per-session", "max_registrations_per_session", "per client session"),
    ("max-subscriptions-per-session", "max_subscriptions_per_session", "per client session"),
    ("max-registrations", "max_registrations", "registrations held in all"),
    ("max-sessions", "max_sessions", "client sessions open at once"),
    (
        "max-sessions-per-ip",
        "max_sessions_per_ip",
        "live sessions one IP address may hold on --listen ports (unix: exempt)",
    ),
    (
        "session-rate-per-ip",
        "session_rate_per_ip",
        "new live sessions one IP address may open per second on --listen ports",
    ),
    ("discover-default-limit", "discover_default_limit", "DISCOVER limit when none is given"),
    ("discover-max-limit", "discover_max_limit", "larger DISCOVER limits are clamped to this"),
    ("max-pending-bytes", "max_pending_bytes", "unsent bytes before a slow client is dropped"),
    ("ttl-min", "ttl_min", "shortest TTL granted to a /rendezvous/1.0.0 REGISTER, in seconds"),
    ("ttl-max", "ttl_max", "longest TTL granted (at most 259200 s: 72 h)"),
    ("ttl-default", "ttl_default", "TTL granted when a REGISTER names none"),
    ("max-registrations-per-peer", "max_registrations_per_peer", "TTL registrations of one peer"),
]
_DEFAULTS = Limits()
_MAX_WORKERS = 256
_P2P_LIMIT_FLAGS: list[tuple[str, str, str, type]] = [
    ("p2p-max-connections", "max_connections", "libp2p connections open at once", int),
    ("p2p-max-connections-per-ip", "max_connections_per_ip", "from one IP address", int),
    ("p2p-max-streams", "max_streams_per_connection", "streams per libp2p connection", int),
    (
        "p2p-negotiation-timeout",
        "negotiation_timeout",
        "seconds to secure a libp2p connection, and to agree on each stream's protocol",
        float,
    ),
]
_P2P_DEFAULTS = HostLimits()
_PEER_CERTIFICATES_FLAG = [
    "require-peer-certificates",
    None,
    "ssl: --listen listeners refuse clients that present no libp2p TLS certificate "
    "(every ssl: listener asks for one and authenticates the session as its peer id, "
    "so a REGISTER for another id is refused)",
]


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the rendezvous service: peers REGISTER in namespaces, DISCOVER them, and "
        "enter RENDEZVOUS to be pushed every REGISTER and UNREGISTER as it happens. "
        "Registrations last until their peer unregisters or disconnects (over libp2p, "
        "/rendezvous/1.0.0 registrations last their TTL instead). "
        "Listens on tcp:4001 unless --listen or --p2p-listen is given."
    )
    optParameters = [
        [
            "store",
            None,
            "memory",
            "where registrations live: memory, or redis://[USER@]HOST:PORT/DB (rediss:// for "
            "TLS) to share one registry among daemons, or "
            "redis-sentinel://[USER@]HOST:PORT[,HOST:PORT…]/MASTER/DB to find that Redis "
            "through Sentinel and follow its failovers, or "
            "redis-cluster://[USER@]HOST:PORT[,HOST:PORT…] to spread namespaces over the "
            "shards of a Redis Cluster found through those nodes",
        ],
        [
            "store-password-file",
            None,
            None,
            f"file holding the Redis password (else ${PASSWORD_VARIABLE}; never in the URL)",
        ],
        [
            "store-ca-file",
            None,
            None,
            "rediss:// store: PEM certificates to trust instead of the system's",
        ],
        [
            "lease",
            None,
            10.0,
            "redis store: seconds after which a daemon that went silent has its "
            "registrations announced gone by the others",
            float,
        ],
        [
            "shutdown-grace",
            None,
            5.0,
            "seconds a stop (SIGTERM) may take: live sessions are sent ERROR 400 (the "
            "server is going away) and given half of it to close, a Redis store's "
            "registrations are removed at once; then the daemon exits regardless",
            float,
        ],
        [
            "flood-refusals",
            None,
            1000,
            "live connections refused per second (over the per-IP limits) above which "
            "the live listeners stop accepting for a while, then accept a few connections "
            "per reactor turn while the flood lasts, so open sessions keep being served",
            int,
        ],
        [
            "fanout-threads",
            None,
            2,
            "threads that write one push to many (256 or more) live subscribers at once: "
            "the send system calls run in parallel; 1: the reactor's thread alone",
            int,
        ],
        [
            "flood-pause-max",
            None,
            1.0,
            "longest such pause, in seconds (the first is 0.05 s, each next one while "
            "the flood lasts twice as long); 0: never pause",
            float,
        ],
        ["metrics", None, None, "strport serving Prometheus text at /metrics, e.g. tcp:9090"],
        [
            "web",
            None,
            None,
            "strport serving a live status page at / (and --web-root under /app/), "
            "e.g. tcp:8080:interface=127.0.0.1",
        ],
        ["web-root", None, None, "directory served as static files under /app/ by --web"],
        [
            "web-relay-namespace",
            None,
            RELAY_NAMESPACE,
            "namespace whose registered relays the status page lists",
        ],
        [
            "workers",
            None,
            0,
            "worker processes that serve the connections of the plain tcp: and unix: --listen "
            "listeners, so parsing and pushes use every core (this process keeps the "
            "registry; ssl: listeners and libp2p stay here); 0: serve them in this process",
            int,
        ],
        [
            "identity",
            None,
            None,
            "libp2p private key file, created (mode 0600) if missing; without it, "
            "a new peer id each run",
        ],
    ] + [[flag, None, getattr(_DEFAULTS, field), help, int] for flag, field, help in _LIMIT_FLAGS]
    optParameters += [
        [flag, None, getattr(_P2P_DEFAULTS, field), help, kind]
        for flag, field, help, kind in _P2P_LIMIT_FLAGS
    ]
    optParameters += TLS_OPTIONS
    optFlags = [PROXY_PROTOCOL_FLAG, LOG_ADDRESSES_FLAG, _PEER_CERTIFICATES_FLAG]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["p2p-listen"] = []
        self["p2p-announce"] = []

    def opt_listen(self, description: str) -> None:
        """strport for the live dialect (repeatable): tcp:4001, ssl:4443:privateKey=key.pem:
        certKey=cert.pem, unix:/run/rendezvous.sock, systemd:domain=INET:index=0"""
        self["listen"].append(description)

    def opt_p2p_listen(self, multiaddr: str) -> None:
        """libp2p multiaddr (repeatable): /ip4/127.0.0.1/tcp/4002, /ip6/::/tcp/4002,
        /ip4/0.0.0.0/tcp/4003/ws (WebSocket), /ip4/0.0.0.0/tcp/443/tls/ws,
        …/wss (WebSocket over TLS: see --p2p-tls-cert)"""
        try:
            TCPAddress.parse(multiaddr)
        except InvalidMultiaddr as e:
            raise usage.UsageError(f"--p2p-listen: {e}") from None
        self["p2p-listen"].append(multiaddr)

    def opt_p2p_announce(self, multiaddr: str) -> None:
        """multiaddr to advertise instead of the libp2p listen addresses (repeatable;
        identify, signed peer record): /dns4/rdv.example.org/tcp/443/tls/ws"""
        self["p2p-announce"].append(parse_announce_option(multiaddr))

    def postOptions(self) -> None:
        store = self["store"]
        if store != "memory":
            if not is_redis_url(store):
                raise usage.UsageError(
                    f"unknown --store {store!r}: use memory, redis://…, redis-sentinel://… "
                    "or redis-cluster://…"
                )
            try:
                parse_target(store, self["store-password-file"], ca_file=self["store-ca-file"])
            except BadTarget as e:
                raise usage.UsageError(str(e)) from None
        if self["identity"] is not None:
            try:
                load_or_create_identity(self["identity"])
            except IdentityFileError as e:
                raise usage.UsageError(f"--identity: {e}") from None
        if not 0 <= self["workers"] <= _MAX_WORKERS:
            raise usage.UsageError(f"--workers must be between 0 and {_MAX_WORKERS}")
        if not 0.5 <= self["lease"] <= 3600:
            raise usage.UsageError("--lease must be between 0.5 and 3600 seconds")
        if not 0.1 <= self["shutdown-grace"] <= 300:
            raise usage.UsageError("--shutdown-grace must be between 0.1 and 300 seconds")
        if not 1 <= self["fanout-threads"] <= 64:
            raise usage.UsageError("--fanout-threads must be between 1 and 64")
        if self["flood-refusals"] < 1:
            raise usage.UsageError("--flood-refusals must be at least 1")
        if not 0 <= self["flood-pause-max"] <= 60:
            raise usage.UsageError("--flood-pause-max must be between 0 and 60 seconds")
        _check_web(self)
        if self["require-peer-certificates"] and not any(
            listen.startswith("ssl:") for listen in self["listen"]
        ):
            raise usage.UsageError("--require-peer-certificates needs an ssl: --listen listener")
        if self["p2p-announce"] and not self["p2p-listen"]:
            raise usage.UsageError("--p2p-announce needs --p2p-listen")
        check_tls_options(self["p2p-listen"], self["p2p-tls-cert"], self["p2p-tls-key"])
        try:
            self["p2p-limits"] = HostLimits(
                **{field: self[flag] for flag, field, _, _ in _P2P_LIMIT_FLAGS}
            )
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        try:
            self["limits"] = dataclasses.replace(
                _DEFAULTS, **{field: self[flag] for flag, field, _ in _LIMIT_FLAGS}
            )
        except ValueError as e:
            raise usage.UsageError(str(e)) from None


def _check_web(options: Options) -> None:
    """--web-root needs --web, and names a directory."""
    root = options["web-root"]
    if root is None:
        return
    if options["web"] is None:
        raise usage.UsageError("--web-root needs --web")
    if not os.path.isdir(root):
        raise usage.UsageError(f"--web-root: {root!r} is not a directory")
    options["web-root"] = os.path.abspath(root)


def _live_listeners(options: Options) -> tuple[str, ...]:
    """The --listen strports; tcp:4001 when no listener at all was asked for."""
    if options["listen"] or options["p2p-listen"]:
        return tuple(options["listen"])
    return ("tcp:4001",)


def _check_store(options: Options) -> None:
    """A redis-sentinel:// store's sentinels must name its master now, and a
    redis-cluster:// store's nodes must answer with every slot served, or the daemon
    does not start (rather than serve without all of its registry)."""
    store = options["store"]
    if not store.startswith((f"{SENTINEL_SCHEME}://", f"{CLUSTER_SCHEME}://")):
        return
    target = parse_target(store, options["store-password-file"])
    ask: Callable[[RedisTarget], object] = probe
    refusals: tuple[type[Exception], ...] = (NoMaster,)
    if target.cluster:  # imported only here: it loads the Redis client
        from rendezvous.store.redis.cluster import ClusterError
        from rendezvous.store.redis.cluster import probe as ask

        refusals = (ClusterError,)
    try:
        ask(target)
    except refusals as e:
        raise SystemExit(f"twistd rendezvous: --store {target.describe()}: {e}") from None


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    _check_store(options)
    show_addresses(bool(options["log-addresses"]))
    config = DaemonConfig(
        listen=_live_listeners(options),
        metrics=options["metrics"],
        limits=options["limits"],
        store=options["store"],
        store_password_file=options["store-password-file"],
        store_ca_file=options["store-ca-file"],
        lease=options["lease"],
        shutdown_grace=options["shutdown-grace"],
        flood_refusals=options["flood-refusals"],
        fanout_threads=options["fanout-threads"],
        flood_pause_max=options["flood-pause-max"],
        p2p_listen=tuple(options["p2p-listen"]),
        identity=options["identity"],
        p2p_limits=options["p2p-limits"],
        p2p_announce=tuple(options["p2p-announce"]),
        p2p_tls_cert=options["p2p-tls-cert"],
        p2p_tls_key=options["p2p-tls-key"],
        p2p_proxy_protocol=bool(options["p2p-proxy-protocol"]),
        workers=options["workers"],
        web=options["web"],
        web_root=options["web-root"],
        web_relay_namespace=options["web-relay-namespace"],
        require_peer_certificates=bool(options["require-peer-certificates"]),
    )
    daemon = Daemon(config, reactor)
    CollectorPolicy(reactor).setServiceParent(daemon)
    return daemon
