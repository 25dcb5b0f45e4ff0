"""Stop accepting for a while when refused connections pour in.

One address (or a few) opening connections as fast as the kernel accepts them takes a
whole core even when every one is refused cheaply, and the sessions already open wait
behind that work. When more than ``refusals_per_second`` connections are refused within
a tenth of a second, the live listeners stop accepting (`IPushProducer.pauseProducing`
of the listening ports) for a pause that doubles while the flood lasts, up to
``max_pause``; the kernel's accept queue holds or drops the waiting connections meanwhile,
at no cost to the daemon. Open sessions are served throughout; new sessions (of every
address) wait up to one pause: the price of the defence, paid only under a flood.
``max_pause`` 0 turns it off. A flood is better dropped before the daemon
(docs/operations.rst: an nftables rule); this bounds what reaches it.

`FloodGuard` is the pure state (an injected clock); `ListenerPause` applies it to ports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.interfaces import IListeningPort, IPushProducer, IReactorTime
from twisted.logger import Logger

from rendezvous.loglimit import LogLimiter
from rendezvous.metrics import Metrics

WINDOW = 0.1
"""Seconds over which refusals are counted."""
FIRST_PAUSE = 0.05
"""Seconds of the first pause of a flood; each further one doubles."""


class FloodGuard:
    """Counts refused connections; says when, and for how long, to stop accepting."""

    def __init__(
        self,
        now: Callable[[], float],
        refusals_per_second: int = 1000,
        max_pause: float = 1.0,
    ) -> None:
        self._now = now
        self.budget = max(1, round(refusals_per_second * WINDOW))
        """Refusals allowed in one window before a pause."""
        self.max_pause = max_pause
        self._window_start = float("-inf")
        self._count = 0
        self._last_pause = 0.0
        self._paused_until = float("-inf")
        self.pauses = 0
        """Pauses asked for so far."""

    def refused(self) -> float | None:
        """Count a refused connection; the seconds to stop accepting for, when this one
        spends the window's budget (and accepting is not paused already)."""
        if self.max_pause <= 0:
            return None
        now = self._now()
        if now - self._window_start >= WINDOW:
            self._window_start = now
            self._count = 0
        self._count += 1
        if self._count <= self.budget or now < self._paused_until:
            return None
        # A flood that comes back within its last pause's length is the same flood.
        recent = now - self._paused_until < max(self._last_pause, WINDOW)
        pause = min(self.max_pause, self._last_pause * 2 if recent else FIRST_PAUSE)
        self._last_pause = pause
        self._paused_until = now + pause
        self._count = 0
        self.pauses += 1
        return pause


class ListenerPause:
    """Pauses accepting on ``ports`` (the live listeners on IP addresses; UNIX sockets
    are never refused, so never paused) for what the guard asks, then resumes."""

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        ports: Sequence[IListeningPort],
        guard: FloodGuard,
        metrics: Metrics | None = None,
    ) -> None:
        self.clock = clock
        self.ports = ports
        self.guard = guard
        self.metrics = metrics
        self._limiter = LogLimiter(clock.seconds, burst=1, interval=10.0)
        self._paused: list[IPushProducer] = []

    def refused(self) -> None:
        """A connection of a live listener was refused."""
        pause = self.guard.refused()
        if pause is None or self._paused:
            return
        for port in self.ports:
            if IPushProducer.providedBy(port) and hasattr(port.getHost(), "host"):
                producer = IPushProducer(port)
                producer.pauseProducing()
                self._paused.append(producer)
        if not self._paused:
            return
        self.clock.callLater(pause, self._resume)
        if self.metrics is not None:
            self.metrics.listener_pauses += 1
        allowed, suppressed = self._limiter.allow()
        if allowed:
            self.log.warn(
                "flood: {budget} connections refused within {window} s; not accepting "
                "new sessions for {pause} s ({pauses} pauses so far)",
                budget=self.guard.budget,
                window=WINDOW,
                pause=pause,
                pauses=self.guard.pauses,
                event="listener.paused",
                count=suppressed + 1,
            )

    def _resume(self) -> None:
        paused, self._paused = self._paused, []
        for producer in paused:
            producer.resumeProducing()
