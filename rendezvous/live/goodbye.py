"""Telling live sessions that the server is going away, so their clients move at once."""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from rendezvous.live.protocol import LiveFactory
from rendezvous.live.session import LiveDialect

GOING_AWAY = "the server is shutting down: connect again, here or elsewhere"
FLUSH = 0.1
"""Seconds for the goodbyes on libp2p streams, which share connections that outlive
them, to leave before the reactor stops."""


class Goodbye(Service):
    """On stop (after the listeners have stopped accepting), every live session is sent
    ERROR 400 with `GOING_AWAY` and closed; the stop waits, at most ``grace`` seconds,
    for raw connections to finish sending it."""

    log = Logger()

    def __init__(
        self, dialect: LiveDialect, factory: LiveFactory, clock: IReactorTime, grace: float = 2.0
    ) -> None:
        self.dialect = dialect
        self.factory = factory
        self.clock = clock
        self.grace = grace

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)  # type: ignore[no-untyped-call]  # Twisted's is untyped
        return say_goodbye(self.dialect, self.factory, self.clock, self.grace)


def say_goodbye(
    dialect: LiveDialect, factory: LiveFactory, clock: IReactorTime, grace: float
) -> Deferred[None]:
    """Tell every live session of ``dialect`` that the server goes away; fires once they
    have been sent it (at most ``grace`` seconds for raw connections to close)."""
    told = dialect.goodbye(GOING_AWAY)
    done = factory.drained(grace)
    if told:
        Goodbye.log.info(
            "told {count} live sessions the server is going away",
            count=told,
            event="daemon.goodbye",
        )
        done.addCallback(lambda _: deferLater(clock, FLUSH, lambda: None))
    return done
