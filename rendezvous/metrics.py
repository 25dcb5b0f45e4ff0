"""Prometheus counters of a daemon, and gauges read from its store when scraped."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from rendezvous.store.base import StoreStats

disable_created_metrics()  # type: ignore[no-untyped-call]

_MESSAGE_TYPES = ("register", "unregister", "rendezvous", "discover", "error")


class _StoreCollector(Collector):
    def __init__(self, stats: Callable[[], StoreStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._stats()
        yield GaugeMetricFamily("rendezvous_sessions", "Open client sessions.", stats.sessions)
        yield GaugeMetricFamily(
            "rendezvous_registrations", "Registrations held.", stats.registrations
        )
        yield GaugeMetricFamily(
            "rendezvous_namespaces",
            "Namespaces with registrations or subscribers.",
            stats.namespaces,
        )
        yield GaugeMetricFamily(
            "rendezvous_subscriptions", "Live subscriptions (RENDEZVOUS).", stats.subscriptions
        )


class Metrics:
    """Everything the daemon counts, in its own `CollectorRegistry`."""

    def __init__(self, stats: Callable[[], StoreStats]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_StoreCollector(stats))
        messages_in = Counter(
            "rendezvous_messages_received",
            "Live-dialect messages received, by type.",
            ["type"],
            registry=self.registry,
        )
        messages_out = Counter(
            "rendezvous_messages_sent",
            "Live-dialect messages sent, by type.",
            ["type"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "rendezvous_refusals",
            "Requests refused and connections closed, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.slow_subscribers_dropped = Counter(
            "rendezvous_slow_subscribers_dropped",
            "Sessions dropped because their unsent pushes passed the bound.",
            registry=self.registry,
        )
        self.sessions_opened = Counter(
            "rendezvous_sessions_opened", "Client sessions opened.", registry=self.registry
        )
        self.messages_in = {name: messages_in.labels(name) for name in _MESSAGE_TYPES}
        self.messages_out = {name: messages_out.labels(name) for name in _MESSAGE_TYPES}

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason).inc()
