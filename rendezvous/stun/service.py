"""The relay's STUN part as one service: the listeners (``--stun``), the responder they
share, and the registrations of their addresses in the STUN namespace."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.application.service import MultiService

from rendezvous.loglimit import LogLimiter
from rendezvous.p2p.host import Host
from rendezvous.p2p.transport import TCPAddress
from rendezvous.relay.announce import Announcer, AnnouncerService
from rendezvous.stun.fleet import DEFAULT_STUN_NAMESPACE, StunAdvertisement, refreshing
from rendezvous.stun.ratelimit import SourceLimiter
from rendezvous.stun.server import (
    StunLimits,
    StunListener,
    StunProtocol,
    StunStats,
    UDPListenAddress,
)


class StunService(MultiService):
    """Answers STUN Binding requests on ``listen`` (``udp:PORT[:interface=ADDR]`` texts;
    raises `ValueError` for a bad one) and keeps the listeners' addresses registered in
    ``namespace`` at each of ``announce_to`` (``…/p2p/<id>`` multiaddrs)."""

    def __init__(
        self,
        host: Host,
        listen: Sequence[str],
        reactor: Any,
        limits: StunLimits | None = None,
        announce_to: Sequence[str] = (),
        namespace: str = DEFAULT_STUN_NAMESPACE,
        ttl: int = 7200,
    ) -> None:
        """``reactor`` provides time, UDP sockets (``adoptDatagramPort``) and TCP."""
        super().__init__()
        limits = limits if limits is not None else StunLimits()
        addresses = [UDPListenAddress.parse(text) for text in listen]
        self.stats = StunStats()
        self.limiter = SourceLimiter(reactor.seconds, limits.rate, limits.burst, limits.max_sources)
        log_limiter = LogLimiter(reactor.seconds)
        self.advertisement = StunAdvertisement(host)
        self.listeners = [
            StunListener(
                address,
                StunProtocol(self.limiter, self.stats, log_limiter),
                reactor,
                self.advertisement.add_listener,
            )
            for address in addresses
        ]
        for listener in self.listeners:
            listener.setServiceParent(self)
        refreshing(self.advertisement, reactor).setServiceParent(self)
        self.announcers = [
            Announcer(
                host,
                TCPAddress.parse(text),
                reactor,
                reactor,
                namespace,
                ttl,
                record=self.advertisement.signed_peer_record,
            )
            for text in announce_to
        ]
        for announcer in self.announcers:
            AnnouncerService(announcer).setServiceParent(self)
        self.advertisement.changed.append(self._changed)

    def _changed(self) -> None:
        for announcer in self.announcers:
            announcer.renew_now()
