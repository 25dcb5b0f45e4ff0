"""Keep a relay registered in a namespace on a rendezvous daemon (the standard dialect,
``/rendezvous/1.0.0``), so clients find the fleet by DISCOVER."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger

from rendezvous.client.standard import RendezvousPoint, open_point
from rendezvous.p2p.transport import TCPAddress
from rendezvous.pb.rendezvous_pb2 import Message
from rendezvous.relay.relayed import relay_connection
from rendezvous.relay.renewal import Renewal

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTCP, IReactorTime

    from rendezvous.p2p.host import Host

DEFAULT_NAMESPACE: Final = "rendezvous/relays"
DEFAULT_TTL: Final = 7200


class AnnounceRefused(Exception):
    """The rendezvous daemon answered the announcement's REGISTER with a status other than OK."""


class NothingToRegister(Exception):
    """There is no address to register yet."""


class Announcer(Renewal):
    """Registers ``host`` (its signed peer record, or what ``record`` makes: a signed
    peer record of the host's, or `NothingToRegister` raised) in ``namespace`` at
    ``target`` and renews at 3/4 of the TTL granted; retries with backoff after failures."""

    log = Logger()

    def __init__(
        self,
        host: Host,
        target: TCPAddress,
        reactor: IReactorTCP,
        clock: IReactorTime,
        namespace: str = DEFAULT_NAMESPACE,
        ttl: int = DEFAULT_TTL,
        record: Callable[[], bytes] | None = None,
    ) -> None:
        if target.peer_id is None:
            raise ValueError("the rendezvous address must end in /p2p/<peer-id>")
        super().__init__(clock)
        self.host = host
        self.target = target
        self.reactor = reactor
        self.namespace = namespace
        self.ttl = ttl
        self.record = record if record is not None else host.signed_peer_record
        self.registrations = 0
        self.granted_ttl: int | None = None

    def attempt(self) -> Deferred[int]:
        try:
            self.record()
        except NothingToRegister as error:
            return fail(error)
        connected = relay_connection(self.host, self.target, self.reactor)
        return (
            connected.addCallback(open_point).addCallback(self._register).addCallback(self._check)
        )

    def _register(self, point: RendezvousPoint) -> Deferred[Message]:
        try:
            record = self.record()
        except NothingToRegister:
            point.close()
            raise
        answer = point.register(self.namespace, record, self.ttl)

        def done(message: Message) -> Message:
            point.close()
            return message

        return answer.addCallback(done)

    def _check(self, message: Message) -> int:
        """The TTL granted; raises `AnnounceRefused`."""
        response = message.registerResponse
        if message.type != Message.REGISTER_RESPONSE or response.status != Message.OK:
            raise AnnounceRefused(f"status {response.status} {response.statusText}".strip())
        return response.ttl or self.ttl

    def succeeded(self, granted: int) -> float:
        self.granted_ttl = granted
        self.registrations += 1
        delay = max(1.0, granted * 0.75)
        self.log.info(
            "registered in {namespace} at {target} for {ttl} s; renewing in {delay:.0f} s",
            namespace=self.namespace,
            target=self.target.text(),
            ttl=granted,
            delay=delay,
            event="announce.registered",
        )
        return delay

    def retrying(self, why: str, delay: float) -> None:
        self.log.info(
            "registering in {namespace} at {target} failed ({why}); retrying in {delay:.0f} s",
            namespace=self.namespace,
            target=self.target.text(),
            why=why,
            delay=delay,
            event="announce.failed",
            reason=why,
        )


class AnnouncerService(Service):
    """Runs an `Announcer` while the service runs."""

    def __init__(self, announcer: Announcer) -> None:
        self.announcer = announcer

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # Twisted's is untyped
        self.announcer.start()

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        self.announcer.stop()
