"""Keep a reservation on a relay: reserve, renew before it expires, retry after failures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from rendezvous.p2p.transport import TCPAddress
from rendezvous.peerid import peer_id_to_text
from rendezvous.relay import client
from rendezvous.relay.relayed import relay_connection

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTCP, IReactorTime

    from rendezvous.p2p.host import Host

RENEW_MARGIN: Final = 60.0
"""Renew at 3/4 of a reservation's life, and at least this many seconds before it expires."""
RETRY_DELAYS: Final = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class ReservationKeeper:
    """Holds ``host``'s reservation on the relay at ``relay`` (a TCP multiaddr with /p2p)."""

    log = Logger()

    def __init__(
        self, host: Host, relay: TCPAddress, reactor: IReactorTCP, clock: IReactorTime
    ) -> None:
        if relay.peer_id is None:
            raise ValueError("the relay address must end in /p2p/<relay-id>")
        self.host = host
        self.relay = relay
        self.reactor = reactor
        self.clock = clock
        self.reservation: client.ReservationInfo | None = None
        self.renewals = 0
        self.failures = 0
        self._timer: IDelayedCall | None = None
        self._running = False

    def start(self) -> None:
        self._running = True
        self._attempt()

    def stop(self) -> None:
        self._running = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _attempt(self) -> None:
        self._timer = None
        connected = relay_connection(self.host, self.relay, self.reactor)
        connected.addCallback(client.reserve).addCallbacks(self._reserved, self._failed)

    def _reserved(self, info: client.ReservationInfo) -> None:
        if not self._running:
            return
        if self.reservation is not None:
            self.renewals += 1
        self.reservation = info
        self.failures = 0
        left = info.expire - self.clock.seconds()
        delay = max(1.0, min(left - RENEW_MARGIN, left * 0.75))
        self.log.info(
            "reserved on relay {relay} until {expire}; renewing in {delay:.0f} s",
            relay=peer_id_to_text(self.relay.peer_id or b""),
            expire=info.expire,
            delay=delay,
        )
        self._timer = self.clock.callLater(delay, self._attempt)

    def _failed(self, failure: Failure) -> None:
        if not self._running:
            return
        delay = RETRY_DELAYS[min(self.failures, len(RETRY_DELAYS) - 1)]
        self.failures += 1
        self.log.info(
            "reservation on relay {relay} failed ({why}); retrying in {delay:.0f} s",
            relay=peer_id_to_text(self.relay.peer_id or b""),
            why=failure.getErrorMessage(),
            delay=delay,
        )
        self._timer = self.clock.callLater(delay, self._attempt)
