"""What the relay counts: plain integers bumped on the request path, exported when scraped."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class RelayStats(Collector):
    """Reservations and circuits opened, refused by reason, closed, and bytes relayed."""

    def __init__(self) -> None:
        self.reservations_opened = 0
        self.reservations_renewed = 0
        self.reservations_refused: dict[str, int] = {}
        self.circuits_opened = 0
        self.circuits_refused: dict[str, int] = {}
        self.connections_refused: dict[str, int] = {}
        """Connections closed before libp2p saw them (a missing PROXY header…), by why."""
        self.circuits_closed: dict[str, int] = {}
        """Circuits ended, by why (``end``, ``duration limit``, ``data limit``, ``reset``…)."""
        self.bytes_relayed = {"to target": 0, "to initiator": 0}
        self.gauges: Callable[[], tuple[int, int]] = lambda: (0, 0)
        """Reservations and circuits held now (set by the relay service)."""

    def refused_reservation(self, reason: str) -> None:
        self.reservations_refused[reason] = self.reservations_refused.get(reason, 0) + 1

    def refused_circuit(self, reason: str) -> None:
        self.circuits_refused[reason] = self.circuits_refused.get(reason, 0) + 1

    def refused_connection(self, reason: str) -> None:
        self.connections_refused[reason] = self.connections_refused.get(reason, 0) + 1

    def closed_circuit(self, reason: str) -> None:
        self.circuits_closed[reason] = self.circuits_closed.get(reason, 0) + 1

    def collect(self) -> Iterator[Metric]:
        reservations, circuits = self.gauges()
        yield GaugeMetricFamily("relay_reservations", "Reservations held.", reservations)
        yield GaugeMetricFamily("relay_circuits", "Circuits open or opening.", circuits)
        yield CounterMetricFamily(
            "relay_reservations_opened", "Reservations made.", self.reservations_opened
        )
        yield CounterMetricFamily(
            "relay_reservations_renewed", "Reservations renewed.", self.reservations_renewed
        )
        yield CounterMetricFamily("relay_circuits_opened", "Circuits opened.", self.circuits_opened)
        for name, help, counts, label in [
            (
                "relay_reservations_refused",
                "Reservations refused, by reason.",
                self.reservations_refused,
                "reason",
            ),
            (
                "relay_circuits_refused",
                "Circuits refused, by reason.",
                self.circuits_refused,
                "reason",
            ),
            ("relay_circuits_closed", "Circuits ended, by reason.", self.circuits_closed, "reason"),
            (
                "relay_connections_refused",
                "Connections refused before libp2p (a missing or bad PROXY header), by reason.",
                self.connections_refused,
                "reason",
            ),
            (
                "relay_bytes_relayed",
                "Bytes relayed, by direction.",
                self.bytes_relayed,
                "direction",
            ),
        ]:
            family = CounterMetricFamily(name, help, labels=[label])
            for key, value in counts.items():
                family.add_metric([key], value)
            yield family
