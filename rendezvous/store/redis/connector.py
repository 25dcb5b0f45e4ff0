"""Keep one client connection: connect, prepare it, and after a failure or a loss try
again with backoff, on an injected clock.

(Twisted's `ClientService` cannot lose a connection while preparing it: AUTH refused
by the server leaves it stuck, so the link uses this instead.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

P = TypeVar("P", bound=IProtocol)


class Connector(Generic[P]):
    """One connection kept up; the protocol must call `lost` from its connectionLost."""

    log = Logger()

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        factory: IProtocolFactory,
        clock: IReactorTime,
        prepare: Callable[[P], Deferred[None]],
        delay: Callable[[int], float],
        what: str,
    ) -> None:
        self._endpoint = endpoint
        self._factory = factory
        self._clock = clock
        self._prepare = prepare
        self._delay = delay
        self._what = what
        self._failures = 0
        self._stopped = True
        self._retry: IDelayedCall | None = None
        self._connecting: Deferred[P] | None = None
        self._protocol: P | None = None
        self._gone: list[Deferred[None]] = []

    def start(self) -> None:
        self._stopped = False
        self._connect()

    def stop(self) -> Deferred[None]:
        """Stop trying; fires once the connection, if any, is closed."""
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._connecting is not None:
            self._connecting.cancel()
        protocol = self._protocol
        if protocol is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._gone.append(d)
        transport = getattr(protocol, "transport", None)
        if transport is not None:
            transport.loseConnection()
        return d

    def lost(self, protocol: P) -> None:
        if protocol is not self._protocol:
            return
        self._protocol = None
        gone, self._gone = self._gone, []
        for d in gone:
            d.callback(None)
        self._again()

    def _connect(self) -> None:
        self._retry = None
        d: Deferred[P] = self._endpoint.connect(self._factory)  # type: ignore[assignment]
        self._connecting = d
        d.addCallback(self._connected).addErrback(self._failed)

    def _connected(self, protocol: P) -> Deferred[None]:
        self._connecting = None
        self._protocol = protocol
        d = self._prepare(protocol)

        def ready(_: None) -> None:
            self._failures = 0

        def failed(failure: Failure) -> None:
            self._failures += 1
            if self._worth_logging():
                self.log.warn(
                    "redis {what} connection not usable ({count} in a row): {error}",
                    what=self._what,
                    count=self._failures,
                    error=failure.getErrorMessage(),
                    event="redis.unusable",
                )
            transport = getattr(protocol, "transport", None)
            if self._protocol is protocol and transport is not None:
                transport.loseConnection()  # `lost` will try again

        return d.addCallbacks(ready, failed)

    def _failed(self, failure: Failure) -> None:
        self._connecting = None
        self._failures += 1
        if self._worth_logging():
            self.log.warn(
                "redis {what} connection failed ({count} in a row): {error}",
                what=self._what,
                count=self._failures,
                error=failure.getErrorMessage(),
                event="redis.connect_failed",
            )
        self._again()

    def _worth_logging(self) -> bool:
        """The first failures of a series, then one in a hundred."""
        return not self._stopped and (self._failures in (1, 10) or self._failures % 100 == 0)

    def _again(self) -> None:
        if self._stopped or self._retry is not None:
            return
        self._retry = self._clock.callLater(self._delay(self._failures), self._connect)
