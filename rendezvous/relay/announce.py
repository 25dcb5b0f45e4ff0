"""Keep a relay registered in a namespace on a rendezvous daemon (the standard dialect,
``/rendezvous/1.0.0``), so clients find the fleet by DISCOVER."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from rendezvous.p2p.transport import TCPAddress
from rendezvous.pb.rendezvous_pb2 import Message
from rendezvous.relay.keeper import RETRY_DELAYS
from rendezvous.relay.relayed import relay_connection
from rendezvous.standard.client import RendezvousPoint, open_point

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTCP, IReactorTime

    from rendezvous.p2p.host import Host

DEFAULT_NAMESPACE: Final = "rendezvous/relays"
DEFAULT_TTL: Final = 7200


class RegistrationRefused(Exception):
    """The rendezvous daemon answered REGISTER with a status other than OK."""


class Announcer:
    """Registers ``host`` (its signed peer record) in ``namespace`` at ``target`` and
    renews at 3/4 of the TTL granted; retries with backoff after failures."""

    log = Logger()

    def __init__(
        self,
        host: Host,
        target: TCPAddress,
        reactor: IReactorTCP,
        clock: IReactorTime,
        namespace: str = DEFAULT_NAMESPACE,
        ttl: int = DEFAULT_TTL,
    ) -> None:
        if target.peer_id is None:
            raise ValueError("the rendezvous address must end in /p2p/<peer-id>")
        self.host = host
        self.target = target
        self.reactor = reactor
        self.clock = clock
        self.namespace = namespace
        self.ttl = ttl
        self.registrations = 0
        self.failures = 0
        self.granted_ttl: int | None = None
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
        connected = relay_connection(self.host, self.target, self.reactor)
        registered = connected.addCallback(open_point).addCallback(self._register)
        registered.addCallback(self._check).addCallbacks(self._registered, self._failed)

    def _register(self, point: RendezvousPoint) -> Deferred[Message]:
        answer = point.register(self.namespace, self.host.signed_peer_record(), self.ttl)

        def done(message: Message) -> Message:
            point.close()
            return message

        return answer.addCallback(done)

    def _check(self, message: Message) -> int:
        """The TTL granted; raises `RegistrationRefused`."""
        response = message.registerResponse
        if message.type != Message.REGISTER_RESPONSE or response.status != Message.OK:
            raise RegistrationRefused(f"status {response.status} {response.statusText}".strip())
        return response.ttl or self.ttl

    def _registered(self, granted: int) -> None:
        if not self._running:
            return
        self.granted_ttl = granted
        self.registrations += 1
        self.failures = 0
        delay = max(1.0, granted * 0.75)
        self.log.info(
            "registered in {namespace} at {target} for {ttl} s; renewing in {delay:.0f} s",
            namespace=self.namespace,
            target=self.target.text(),
            ttl=granted,
            delay=delay,
        )
        self._timer = self.clock.callLater(delay, self._attempt)

    def _failed(self, failure: Failure) -> None:
        if not self._running:
            return
        delay = RETRY_DELAYS[min(self.failures, len(RETRY_DELAYS) - 1)]
        self.failures += 1
        self.log.info(
            "registering in {namespace} at {target} failed ({why}); retrying in {delay:.0f} s",
            namespace=self.namespace,
            target=self.target.text(),
            why=failure.getErrorMessage(),
            delay=delay,
        )
        self._timer = self.clock.callLater(delay, self._attempt)
