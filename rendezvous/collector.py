"""The daemons' policy for CPython's cycle collector: start-up frozen, full collections rarer.

A full collection walks every object the collector tracks, and stops everything else
while it does: in a daemon just started that is some 69,000 objects of modules, classes
and options (12 ms on the benchmark machine), and then every session and registration
held (three objects each). By default CPython makes a full collection after ten
collections of the middle generation, once the objects that reached the oldest
generation since the last full one are a quarter of those there: while a registry grows
every registration is walked five times or so (3.0 of the 9.6 µs a new registration
cost in process, docs/benchmarks.rst), and a daemon holding 10,000 sessions paused up to
95 ms at a time while they came and went.

Once the reactor runs, `CollectorPolicy`:

- collects once and freezes what start-up made (`gc.freeze`): it lives as long as the
  process, and no later collection walks it again;
- sets the oldest generation's threshold to `FULL_EVERY` middle collections (at most one
  full collection every 700 x 10 x 100 allocations of tracked objects, not 70,000).

What the collector is needed for is rare here: a closed session is freed by reference
counting (``tests/test_sessions_freed.py``), so garbage cycles that wait longer for a
full collection are few and small. Both steps are process-wide, so only the twistd
plugins (``rendezvous._tap``, ``rendezvous._relay_tap``) and the ``--workers``
processes apply it: a test process that builds a daemon keeps CPython's defaults.
"""

from __future__ import annotations

import gc
from typing import Protocol

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

FULL_EVERY = 100
"""Collections of the middle generation between two full collections (CPython: 10)."""


class Collector(Protocol):
    """What the policy uses of the `gc` module."""

    def collect(self) -> int: ...

    def freeze(self) -> None: ...

    def get_freeze_count(self) -> int: ...

    def get_threshold(self) -> tuple[int, int, int]: ...

    def set_threshold(self, threshold0: int, threshold1: int, threshold2: int) -> None: ...


class CollectorPolicy(Service):
    """Applies the policy in the first reactor turn after start-up (`clock`), once."""

    log = Logger()

    def __init__(self, clock: IReactorTime, collector: Collector = gc) -> None:
        self._clock = clock
        self._collector = collector
        self._pending: IDelayedCall | None = None
        self.applied = False

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # Twisted's is untyped
        if not self.applied and self._pending is None:
            self._pending = self._clock.callLater(0, self._apply)

    def stopService(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and pending.active():
            pending.cancel()
        super().stopService()  # type: ignore[no-untyped-call]

    def _apply(self) -> None:
        self._pending = None
        collector = self._collector
        freed = collector.collect()
        collector.freeze()
        young, middle, _ = collector.get_threshold()
        collector.set_threshold(young, middle, FULL_EVERY)
        self.applied = True
        self.log.info(
            "collector: {frozen} start-up objects frozen ({freed} freed first), a full"
            " collection after {full_every} middle ones",
            frozen=collector.get_freeze_count(),
            freed=freed,
            full_every=FULL_EVERY,
            event="daemon.collector",
        )
