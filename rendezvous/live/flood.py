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

While a flood lasts the listeners also accept at most ``accepts_per_turn`` connections
per reactor turn (`rendezvous.twisted_internals.bound_accepts`): when one resumes, the
connections the kernel queued meanwhile are taken a few at a time, between the open
sessions' work, not all in one turn of some milliseconds during which every push waits;
and those still queued when the next pause starts wait for the one after, not accepted
to be refused.

`FloodGuard` is the pure state (an injected clock); `ListenerPause` applies it to ports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.interfaces import IListeningPort, IPushProducer, IReactorTime
from twisted.logger import Logger

from rendezvous.loglimit import LogLimiter
from rendezvous.metrics import Metrics
from rendezvous.twisted_internals import bound_accepts

WINDOW = 0.1
"""Seconds over which refusals are counted."""
FIRST_PAUSE = 0.05
"""Seconds of the first pause of a flood; each further one doubles."""
ACCEPTS_PER_TURN = 8
"""Connections a live listener accepts per reactor turn while a flood lasts."""


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
        pause = min(self.max_pause, self._last_pause * 2 if self.flooding() else FIRST_PAUSE)
        self._last_pause = pause
        self._paused_until = now + pause
        self._count = 0
        self.pauses += 1
        return pause

    def flooding(self) -> bool:
        """Whether a flood is on: accepting is paused, or resumed less than the last
        pause's length ago (at least a window); a flood that comes back within that
        time is the same flood."""
        return self._now() - self._paused_until < max(self._last_pause, WINDOW)


class ListenerPause:
    """Pauses accepting on ``ports`` (the live listeners on IP addresses; UNIX sockets
    are never refused, so never paused) for what the guard asks, then resumes; while the
    flood lasts, ``bound`` (`bound_accepts`) keeps each port to ``accepts_per_turn``
    connections in the turn after a resume and after every turn with a refusal (Twisted
    raises its own bound after each turn)."""

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        ports: Sequence[IListeningPort],
        guard: FloodGuard,
        metrics: Metrics | None = None,
        accepts_per_turn: int = ACCEPTS_PER_TURN,
        bound: Callable[[object, int], bool] = bound_accepts,
    ) -> None:
        self.clock = clock
        self.ports = ports
        self.guard = guard
        self.metrics = metrics
        self.accepts_per_turn = accepts_per_turn
        self._bound = bound
        self._limiter = LogLimiter(clock.seconds, burst=1, interval=10.0)
        self._paused: list[IPushProducer] = []
        self._bounding = False
        """A bound is due at the start of the next turn."""

    def _ip_ports(self) -> list[IListeningPort]:
        return [port for port in self.ports if hasattr(port.getHost(), "host")]

    def refused(self) -> None:
        """A connection of a live listener was refused."""
        pause = self.guard.refused()
        if pause is None:
            flooding = not self._paused and not self._bounding and self.guard.flooding()
            if flooding and self._ip_ports():
                # This turn's accepts are done when the next turn starts: bound those.
                self._bounding = True
                self.clock.callLater(0, self._bound_accepts)
            return
        if self._paused:
            return
        for port in self._ip_ports():
            if IPushProducer.providedBy(port):
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

    def _bound_accepts(self) -> None:
        self._bounding = False
        for port in self._ip_ports():
            self._bound(port, self.accepts_per_turn)

    def _resume(self) -> None:
        paused, self._paused = self._paused, []
        self._bound_accepts()
        for producer in paused:
            producer.resumeProducing()
