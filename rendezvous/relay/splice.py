"""A circuit: two streams spliced into one byte stream, with backpressure and limits.

Side 0 is the initiator's hop stream, side 1 the target's stop stream. Bytes read on one
side are written to the other; when the other side pushes back (`pause_writing`) this
side stops reading until it resumes, so what the relay holds per direction is bounded by
the stream window. Each direction may carry `max_bytes`; the circuit is reset after that,
or after `duration` seconds. A half-close is passed on; a reset resets the other side.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from rendezvous.p2p.stream import Stream, StreamProtocol
from rendezvous.relay.stats import RelayStats

_DIRECTIONS = ("to target", "to initiator")


class Circuit:
    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        streams: tuple[Stream, Stream],
        *,
        duration: float,
        max_bytes: int,
        stats: RelayStats,
        on_closed: Callable[[str], None],
        label: str | None = "circuit",
    ) -> None:
        """``label`` names the circuit in its log lines; None: it has none (the relay
        rate-limits them)."""
        self.streams = streams
        self.max_bytes = max_bytes
        self.relayed = [0, 0]
        """Bytes read on each side (and written to the other)."""
        self.stats = stats
        self.label = label
        self._on_closed = on_closed
        self._ended = [False, False]
        self._closed = [False, False]
        self._reading_paused = [False, False]
        self.reason: str | None = None
        self._timer: IDelayedCall | None = clock.callLater(duration, self._expired)
        for side in (0, 1):
            _attach(streams[side], _Side(self, side))

    @property
    def done(self) -> bool:
        return self.reason is not None

    # -- events from either side ----------------------------------------------

    def received(self, side: int, data: bytes) -> None:
        if self.done:
            return
        allowed = self.max_bytes - self.relayed[side]
        cut = len(data) > allowed
        if cut:
            data = data[:allowed]
        self.relayed[side] += len(data)
        self.stats.bytes_relayed[_DIRECTIONS[side]] += len(data)
        other = self.streams[1 - side]
        if data:
            other.write(data)
        if cut:
            if self.label is not None:
                self.log.info(
                    "{circuit}: data limit reached, resetting",
                    circuit=self.label,
                    event="circuit.limit_reached",
                    reason="data",
                )
            self._finish("data limit")
            return
        if other.writing_paused and not self._reading_paused[side]:
            self._reading_paused[side] = True
            self.streams[side].pause_reading()

    def ended(self, side: int) -> None:
        if self.done:
            return
        self._ended[side] = True
        self.streams[1 - side].close()

    def closed(self, side: int, reason: str | None) -> None:
        self._closed[side] = True
        if self.done:
            return
        if reason is not None:
            self._finish("reset")
        elif all(self._closed):
            self._finish("end")
        else:
            self.streams[1 - side].close()

    def paused(self, side: int) -> None:
        """``side`` pushes back: stop reading the other side."""
        other = 1 - side
        if not self.done and not self._reading_paused[other]:
            self._reading_paused[other] = True
            self.streams[other].pause_reading()

    def resumed(self, side: int) -> None:
        other = 1 - side
        if not self.done and self._reading_paused[other]:
            self._reading_paused[other] = False
            self.streams[other].resume_reading()

    def reset(self, reason: str) -> None:
        """Cut the circuit now (e.g. the relay shuts down)."""
        if not self.done:
            self._finish(reason)

    # -- internals ------------------------------------------------------------

    def _expired(self) -> None:
        self._timer = None
        if not self.done:
            if self.label is not None:
                self.log.info(
                    "{circuit}: duration limit reached, resetting",
                    circuit=self.label,
                    event="circuit.limit_reached",
                    reason="duration",
                )
            self._finish("duration limit")

    def _finish(self, reason: str) -> None:
        self.reason = reason
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if reason != "end":
            for stream in self.streams:
                stream.reset()
        self.stats.closed_circuit(reason)
        if self.label is not None:
            self.log.info(
                "{circuit} closed ({reason}): {up} bytes to the target, {down} to the initiator",
                circuit=self.label,
                reason=reason,
                up=self.relayed[0],
                down=self.relayed[1],
                event="circuit.closed",
            )
        self._on_closed(reason)


class _Side(StreamProtocol):
    """Hands one stream's events to its circuit."""

    def __init__(self, circuit: Circuit, side: int) -> None:
        self.circuit = circuit
        self.side = side

    def data_received(self, data: bytes) -> None:
        self.circuit.received(self.side, data)

    def end_received(self) -> None:
        self.circuit.ended(self.side)

    def stream_closed(self, reason: str | None) -> None:
        self.circuit.closed(self.side, reason)

    def pause_writing(self) -> None:
        self.circuit.paused(self.side)

    def resume_writing(self) -> None:
        self.circuit.resumed(self.side)


def _attach(stream: Stream, protocol: StreamProtocol) -> None:
    """Make ``protocol`` receive the stream's events from now on."""
    stream.protocol = protocol
    protocol.stream = stream
