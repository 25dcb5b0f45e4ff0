"""What a daemon counts, exported as Prometheus metrics when scraped.

Counting is a plain integer increment on the request path; the Prometheus
families are built only at scrape time, and the gauges are read from the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypedDict

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rendezvous.store.base import StoreStats

MESSAGE_TYPES = ("register", "unregister", "rendezvous", "discover", "error")


class Counts(TypedDict):
    """What a `Metrics` has counted: what a worker process reports to the main one."""

    received: dict[str, int]
    sent: dict[str, int]
    refusals: dict[str, int]
    slow_subscribers_dropped: int
    sessions_opened: int


def empty_counts() -> Counts:
    return Counts(
        received=dict.fromkeys(MESSAGE_TYPES, 0),
        sent=dict.fromkeys(MESSAGE_TYPES, 0),
        refusals={},
        slow_subscribers_dropped=0,
        sessions_opened=0,
    )


def add_counts(total: Counts, more: Counts) -> None:
    """Add ``more`` into ``total``."""
    for name in ("received", "sent", "refusals"):
        into: dict[str, int] = total[name]
        for key, value in more[name].items():
            into[key] = into.get(key, 0) + value
    total["slow_subscribers_dropped"] += more["slow_subscribers_dropped"]
    total["sessions_opened"] += more["sessions_opened"]


class Metrics(Collector):
    """Everything the daemon counts, in its own `CollectorRegistry`."""

    def __init__(self, stats: Callable[[], StoreStats]) -> None:
        self._stats = stats
        self.received = dict.fromkeys(MESSAGE_TYPES, 0)
        """Live-dialect messages received, by type."""
        self.sent = dict.fromkeys(MESSAGE_TYPES, 0)
        """Live-dialect messages sent, by type."""
        self.refusals: dict[str, int] = {}
        """Requests refused and connections closed, by reason."""
        self.slow_subscribers_dropped = 0
        self.sessions_opened = 0
        self.listener_pauses = 0
        """Times the live listeners stopped accepting under a flood (this process)."""
        self._included: Callable[[], Iterable[Counts]] = tuple
        """Counters of other processes (workers), added to ours when scraped."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self)

    def include(self, source: Callable[[], Iterable[Counts]]) -> None:
        """Add the counters ``source`` gives to ours when scraped."""
        self._included = source

    def counts(self) -> Counts:
        return Counts(
            received=dict(self.received),
            sent=dict(self.sent),
            refusals=dict(self.refusals),
            slow_subscribers_dropped=self.slow_subscribers_dropped,
            sessions_opened=self.sessions_opened,
        )

    def refused(self, reason: str) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        total = self.counts()
        for more in self._included():
            add_counts(total, more)
        for name, help, value in [
            ("rendezvous_sessions", "Open client sessions.", stats.sessions),
            ("rendezvous_registrations", "Registrations held.", stats.registrations),
            (
                "rendezvous_namespaces",
                "Namespaces with registrations or subscribers.",
                stats.namespaces,
            ),
            ("rendezvous_subscriptions", "Live subscriptions (RENDEZVOUS).", stats.subscriptions),
        ]:
            yield GaugeMetricFamily(name, help, value)
        for name, help, counts, label in [
            (
                "rendezvous_messages_received",
                "Live-dialect messages received, by type.",
                total["received"],
                "type",
            ),
            (
                "rendezvous_messages_sent",
                "Live-dialect messages sent, by type.",
                total["sent"],
                "type",
            ),
            (
                "rendezvous_refusals",
                "Requests refused and connections closed, by reason.",
                total["refusals"],
                "reason",
            ),
        ]:
            family = CounterMetricFamily(name, help, labels=[label])
            for key, value in counts.items():
                family.add_metric([key], value)
            yield family
        yield CounterMetricFamily(
            "rendezvous_slow_subscribers_dropped",
            "Sessions dropped because their unsent pushes passed the bound.",
            total["slow_subscribers_dropped"],
        )
        yield CounterMetricFamily(
            "rendezvous_sessions_opened", "Client sessions opened.", total["sessions_opened"]
        )
        yield CounterMetricFamily(
            "rendezvous_listener_pauses",
            "Times the live listeners stopped accepting because refused connections poured in.",
            self.listener_pauses,
        )
