"""Keep a reservation on a relay: reserve, renew before it expires, retry after failures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from twisted.logger import Logger

from rendezvous.p2p.transport import TCPAddress
from rendezvous.peerid import peer_id_to_text
from rendezvous.relay import client
from rendezvous.relay.relayed import relay_connection
from rendezvous.relay.renewal import Renewal

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IReactorTCP, IReactorTime

    from rendezvous.p2p.host import Host

RENEW_MARGIN: Final = 60.0
"""Renew at 3/4 of a reservation's life, and at least this many seconds before it expires."""


def renew_delay(expire: float, now: float, every: float | None = None) -> float:
    """Seconds until a reservation expiring at ``expire`` is renewed: at 3/4 of what is
    left and `RENEW_MARGIN` before the end, not sooner than 1 s, nor later than ``every``."""
    left = expire - now
    delay = max(1.0, min(left - RENEW_MARGIN, left * 0.75))
    return delay if every is None else min(delay, every)


class ReservationKeeper(Renewal):
    """Holds ``host``'s reservation on the relay at ``relay`` (a TCP multiaddr with /p2p)."""

    log = Logger()

    def __init__(
        self, host: Host, relay: TCPAddress, reactor: IReactorTCP, clock: IReactorTime
    ) -> None:
        if relay.peer_id is None:
            raise ValueError("the relay address must end in /p2p/<relay-id>")
        super().__init__(clock)
        self.host = host
        self.relay = relay
        self.reactor = reactor
        self.reservation: client.ReservationInfo | None = None
        self.renewals = 0

    def attempt(self) -> Deferred[client.ReservationInfo]:
        connected = relay_connection(self.host, self.relay, self.reactor)
        return connected.addCallback(client.reserve)

    def succeeded(self, info: client.ReservationInfo) -> float:
        if self.reservation is not None:
            self.renewals += 1
        self.reservation = info
        delay = renew_delay(info.expire, self.clock.seconds())
        self.log.info(
            "reserved on relay {relay} until {expire}; renewing in {delay:.0f} s",
            relay=peer_id_to_text(self.relay.peer_id or b""),
            expire=info.expire,
            delay=delay,
            event="relay_client.reserved",
        )
        return delay

    def retrying(self, why: str, delay: float) -> None:
        self.log.info(
            "reservation on relay {relay} failed ({why}); retrying in {delay:.0f} s",
            relay=peer_id_to_text(self.relay.peer_id or b""),
            why=why,
            delay=delay,
            event="relay_client.reservation_failed",
            reason=why,
        )
