"""`twistd rendezvous`: command-line options and the service they make."""

from __future__ import annotations

import dataclasses

from twisted.application.service import IService
from twisted.python import usage

from rendezvous.limits import Limits
from rendezvous.service import Daemon, DaemonConfig

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
    ("discover-default-limit", "discover_default_limit", "DISCOVER limit when none is given"),
    ("discover-max-limit", "discover_max_limit", "larger DISCOVER limits are clamped to this"),
    ("max-pending-bytes", "max_pending_bytes", "unsent bytes before a slow client is dropped"),
]
_DEFAULTS = Limits()


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the rendezvous service: peers REGISTER in namespaces, DISCOVER them, and "
        "enter RENDEZVOUS to be pushed every REGISTER and UNREGISTER as it happens. "
        "Registrations last until their peer unregisters or disconnects. "
        "Listens on tcp:4001 unless --listen is given."
    )
    optParameters = [
        ["store", None, "memory", "where registrations live: memory (the only store so far)"],
        ["metrics", None, None, "strport serving Prometheus text at /metrics, e.g. tcp:9090"],
    ] + [[flag, None, getattr(_DEFAULTS, field), help, int] for flag, field, help in _LIMIT_FLAGS]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """strport for the live dialect (repeatable): tcp:4001, ssl:4443:privateKey=key.pem:
        certKey=cert.pem, unix:/run/rendezvous.sock, systemd:domain=INET:index=0"""
        self["listen"].append(description)

    def postOptions(self) -> None:
        if self["store"] != "memory":
            raise usage.UsageError(f"unknown --store {self['store']!r}: use memory")
        try:
            self["limits"] = dataclasses.replace(
                _DEFAULTS, **{field: self[flag] for flag, field, _ in _LIMIT_FLAGS}
            )
        except ValueError as e:
            raise usage.UsageError(str(e)) from None


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    config = DaemonConfig(
        listen=tuple(options["listen"]) or ("tcp:4001",),
        metrics=options["metrics"],
        limits=options["limits"],
    )
    return Daemon(config, reactor)
