"""Something held for a while and renewed: attempted now, again when the holder says,
and after a failure with backoff (the reservation keeper and the relay announcer)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IReactorTime

RETRY_DELAYS: Final = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
"""Seconds before the next attempt after 1, 2, … consecutive failures."""


class Renewal:
    """Runs `attempt` from `start` until `stop`: after a success `succeeded` says when
    to renew, after a failure `retrying` is told and the next delay of `RETRY_DELAYS`."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.failures = 0
        """Consecutive failures."""
        self._timer: IDelayedCall | None = None
        self._running = False
        self._in_flight = False
        self._again = False
        """`renew_now` was called while an attempt was in flight."""

    def attempt(self) -> Deferred[Any]:
        raise NotImplementedError

    def succeeded(self, result: Any) -> float:
        """Record ``result``; the seconds until the next attempt."""
        raise NotImplementedError

    def retrying(self, why: str, delay: float) -> None:
        """An attempt failed for ``why``; the next comes in ``delay`` seconds."""
        raise NotImplementedError

    def start(self) -> None:
        self._running = True
        self._attempt()

    def stop(self) -> None:
        self._running = False
        self._again = False
        self._cancel()

    def renew_now(self) -> None:
        """What is held changed: attempt at once (after the attempt in flight, if any)."""
        if not self._running:
            return
        if self._in_flight:
            self._again = True
            return
        self._cancel()
        self._attempt()

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _attempt(self) -> None:
        self._timer = None
        self._in_flight = True
        self.attempt().addCallbacks(self._succeeded, self._failed)

    def _succeeded(self, result: Any) -> None:
        self._in_flight = False
        if not self._running:
            return
        self.failures = 0
        delay = self.succeeded(result)
        if self._again:
            self._again = False
            self._attempt()
            return
        self._timer = self.clock.callLater(delay, self._attempt)

    def _failed(self, failure: Failure) -> None:
        self._in_flight = False
        self._again = False
        if not self._running:
            return
        delay = RETRY_DELAYS[min(self.failures, len(RETRY_DELAYS) - 1)]
        self.failures += 1
        self.retrying(failure.getErrorMessage(), delay)
        self._timer = self.clock.callLater(delay, self._attempt)
