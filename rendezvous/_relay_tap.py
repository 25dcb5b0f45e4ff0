"""`twistd rendezvous-relay`: command-line options and the service they make."""

from __future__ import annotations

from twisted.application.service import IService
from twisted.python import usage

from rendezvous.addrs import InvalidMultiaddr
from rendezvous.collector import CollectorPolicy
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
from rendezvous.peerid import InvalidPeerId, parse_peer_id
from rendezvous.relay.announce import DEFAULT_NAMESPACE, DEFAULT_TTL
from rendezvous.relay.resources import Acl, RelayLimits
from rendezvous.relay.service import RelayConfig, RelayDaemon
from rendezvous.stun.fleet import DEFAULT_STUN_NAMESPACE
from rendezvous.stun.server import StunLimits, UDPListenAddress

_LIMIT_FLAGS: list[tuple[str, str, str]] = [
    ("reservation-ttl", "reservation_ttl", "seconds a reservation lasts unless renewed"),
    ("max-reservations", "max_reservations", "reservations held in all"),
    ("max-reservations-per-ip", "max_reservations_per_ip", "reservations from one IP address"),
    ("max-circuits", "max_circuits", "circuits relayed at once"),
    ("max-circuits-per-peer", "max_circuits_per_peer", "circuits one peer takes part in"),
    ("circuit-duration", "circuit_duration", "seconds before a circuit is cut"),
    ("circuit-bytes", "circuit_bytes", "bytes relayed in each direction before a circuit is cut"),
]
_DEFAULTS = RelayLimits()
_HOST_DEFAULTS = HostLimits()
_STUN_DEFAULTS = StunLimits()


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run a libp2p circuit relay v2 node: peers reserve a slot (hop RESERVE) and others "
        "reach them through it (hop CONNECT, stop). Listens on /ip4/0.0.0.0/tcp/4010 unless "
        "--p2p-listen is given."
    )
    optParameters = [
        [
            "identity",
            None,
            None,
            "libp2p private key file, created (mode 0600) if missing; without it, "
            "a new peer id each run",
        ],
        ["metrics", None, None, "strport serving Prometheus text at /metrics, e.g. tcp:9091"],
        [
            "namespace",
            None,
            DEFAULT_NAMESPACE,
            "rendezvous namespace the relay registers in (with --announce-to)",
        ],
        [
            "announce-ttl",
            None,
            DEFAULT_TTL,
            "seconds of registration asked for; renewed at 3/4 of the TTL granted",
            int,
        ],
        [
            "p2p-max-connections",
            None,
            _HOST_DEFAULTS.max_connections,
            "libp2p connections open at once",
            int,
        ],
        [
            "p2p-max-connections-per-ip",
            None,
            _HOST_DEFAULTS.max_connections_per_ip,
            "libp2p connections from one IP address",
            int,
        ],
        [
            "stun-namespace",
            None,
            DEFAULT_STUN_NAMESPACE,
            "rendezvous namespace the STUN listeners are registered in (with --announce-to)",
        ],
        [
            "stun-rate",
            None,
            _STUN_DEFAULTS.rate,
            "STUN requests answered per second from one IPv4 address or IPv6 /64",
            float,
        ],
        [
            "stun-burst",
            None,
            _STUN_DEFAULTS.burst,
            "STUN requests answered at once from one source",
            int,
        ],
        [
            "stun-max-sources",
            None,
            _STUN_DEFAULTS.max_sources,
            "sources whose STUN request rate is tracked at once",
            int,
        ],
    ] + [[flag, None, getattr(_DEFAULTS, field), help, int] for flag, field, help in _LIMIT_FLAGS]
    optParameters += TLS_OPTIONS
    optFlags = [PROXY_PROTOCOL_FLAG, LOG_ADDRESSES_FLAG]

    def __init__(self) -> None:
        super().__init__()
        self["p2p-listen"] = []
        self["p2p-announce"] = []
        self["allow-peer"] = []
        self["allow-subnet"] = []
        self["announce-to"] = []
        self["stun"] = []

    def opt_announce_to(self, multiaddr: str) -> None:
        """rendezvous daemon to stay registered at, standard dialect (repeatable):
        /ip4/10.0.0.5/tcp/4002/p2p/12D3KooW…"""
        try:
            address = TCPAddress.parse(multiaddr)
        except InvalidMultiaddr as e:
            raise usage.UsageError(f"--announce-to: {e}") from None
        if address.peer_id is None:
            raise usage.UsageError("--announce-to: the address must end in /p2p/<peer-id>")
        self["announce-to"].append(multiaddr)

    def opt_stun(self, address: str) -> None:
        """answer STUN Binding requests (repeatable): udp:3478, udp:3478:interface=\\:\\:"""
        try:
            UDPListenAddress.parse(address)
        except ValueError as e:
            raise usage.UsageError(f"--stun: {e}") from None
        self["stun"].append(address)

    def opt_p2p_listen(self, multiaddr: str) -> None:
        """libp2p multiaddr (repeatable): /ip4/0.0.0.0/tcp/4010, /ip6/::/tcp/4010,
        /ip4/0.0.0.0/tcp/4011/ws, /ip4/0.0.0.0/tcp/443/tls/ws (see --p2p-tls-cert)"""
        try:
            TCPAddress.parse(multiaddr)
        except InvalidMultiaddr as e:
            raise usage.UsageError(f"--p2p-listen: {e}") from None
        self["p2p-listen"].append(multiaddr)

    def opt_p2p_announce(self, multiaddr: str) -> None:
        """multiaddr to advertise instead of the listen addresses (repeatable; identify,
        peer record, reservations, fleet): /dns4/relay.example.org/tcp/443/tls/ws"""
        self["p2p-announce"].append(parse_announce_option(multiaddr))

    def opt_allow_peer(self, peer_id: str) -> None:
        """only this peer id may reserve (repeatable; default: anyone)"""
        try:
            self["allow-peer"].append(parse_peer_id(peer_id))
        except InvalidPeerId as e:
            raise usage.UsageError(f"--allow-peer: {e}") from None

    def opt_allow_subnet(self, subnet: str) -> None:
        """only peers connected from this subnet may reserve (repeatable, e.g. 10.0.0.0/8;
        default: any address)"""
        try:
            self["allow-subnet"].extend(Acl.parse_subnets([subnet]))
        except ValueError as e:
            raise usage.UsageError(f"--allow-subnet: {e}") from None

    def postOptions(self) -> None:
        if self["identity"] is not None:
            try:
                load_or_create_identity(self["identity"])
            except IdentityFileError as e:
                raise usage.UsageError(f"--identity: {e}") from None
        try:
            self["limits"] = RelayLimits(**{field: self[flag] for flag, field, _ in _LIMIT_FLAGS})
            self["p2p-limits"] = HostLimits(
                max_connections=self["p2p-max-connections"],
                max_connections_per_ip=self["p2p-max-connections-per-ip"],
            )
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        for flag in ("namespace", "stun-namespace"):
            if not self[flag] or len(self[flag].encode()) > 255:
                raise usage.UsageError(f"--{flag} must be 1 to 255 bytes")
        try:
            self["stun-limits"] = StunLimits(
                self["stun-rate"], self["stun-burst"], self["stun-max-sources"]
            )
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        if not 1 <= self["announce-ttl"] <= 72 * 3600:
            raise usage.UsageError("--announce-ttl must be between 1 and 259200 seconds")
        self["acl"] = Acl(frozenset(self["allow-peer"]), tuple(self["allow-subnet"]))
        check_tls_options(
            self["p2p-listen"] or RelayConfig.p2p_listen, self["p2p-tls-cert"], self["p2p-tls-key"]
        )


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    show_addresses(bool(options["log-addresses"]))
    config = RelayConfig(
        p2p_listen=tuple(options["p2p-listen"]) or RelayConfig.p2p_listen,
        identity=options["identity"],
        p2p_limits=options["p2p-limits"],
        limits=options["limits"],
        acl=options["acl"],
        metrics=options["metrics"],
        p2p_announce=tuple(options["p2p-announce"]),
        p2p_tls_cert=options["p2p-tls-cert"],
        p2p_tls_key=options["p2p-tls-key"],
        p2p_proxy_protocol=bool(options["p2p-proxy-protocol"]),
        announce_to=tuple(options["announce-to"]),
        namespace=options["namespace"],
        announce_ttl=options["announce-ttl"],
        stun=tuple(options["stun"]),
        stun_limits=options["stun-limits"],
        stun_namespace=options["stun-namespace"],
    )
    relay = RelayDaemon(config, reactor)
    CollectorPolicy(reactor).setServiceParent(relay)
    return relay
