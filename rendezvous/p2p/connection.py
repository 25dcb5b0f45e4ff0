"""One libp2p connection over TCP: the Twisted Protocol that moves bytes through the machines.

Two pure machines do the work. Each read goes first to an `rendezvous.p2p.upgrade.Upgrade`
(multistream-select `/noise`, the Noise XX handshake, multistream-select `/yamux/1.0.0`
inside Noise), then to a `rendezvous.p2p.muxed.ConnectionMachine` (Noise messages, yamux,
each stream's multistream-select among the host's handlers), and each stream it agrees
on is handed to a `StreamProtocol`. This Protocol moves the bytes, keeps the timers both
machines ask for, the streams' handlers and the logs.
Every failure of the peer closes the connection with one log line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from rendezvous.logs import ClientAddress, debug_logged, emit, emit_failure
from rendezvous.nodelay import no_delay
from rendezvous.p2p import yamux
from rendezvous.p2p.interfaces import ConnectionHost
from rendezvous.p2p.multistream import MultistreamError
from rendezvous.p2p.muxed import ConnectionMachine, Event, Negotiated, NotNegotiated, StreamTimer
from rendezvous.p2p.noise import NoiseError, NoiseSession
from rendezvous.p2p.stream import Stream, StreamProtocol
from rendezvous.p2p.transport import TCPAddress
from rendezvous.p2p.upgrade import (
    Failed,
    Output,
    Secured,
    StartTimer,
    Upgrade,
    Upgraded,
    UpgradeFailed,
)
from rendezvous.p2p.yamux import YamuxError, YamuxSession
from rendezvous.peerid import peer_id_to_text
from rendezvous.twisted_internals import (
    direct_socket,
    enlarge_buffer,
    flush,
    send_now,
    sends_itself,
)

_UPGRADING, _MUXED, _CLOSED = range(3)
ABORT_AFTER = 5.0
"""Seconds a closing connection may take to flush before it is aborted."""
TRANSPORT_BUFFER = 127 * 1024
"""Read size and write-buffer mark (where our producer is paused) of a TCP transport:
Twisted's 64 KiB is one byte short of a full Noise message. Below glibc's 128 KiB mmap
threshold, so a short read costs no mmap of its whole buffer."""


class StreamFailed(Exception):
    """An outbound stream could not be opened or its protocol was not agreed."""


class _Negotiation:
    """A stream whose protocol is being agreed: its timer, and what opened it (ours)."""

    __slots__ = ("deferred", "protocol", "stream_id", "timer")

    def __init__(
        self,
        stream_id: int,
        timer: IDelayedCall,
        protocol: StreamProtocol | None = None,
        deferred: Deferred[Stream] | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.timer = timer
        self.protocol = protocol
        self.deferred = deferred


@implementer(IPushProducer)
class Connection(Protocol):
    """A secured, multiplexed connection to one peer (dialled or accepted)."""

    log = Logger()
    relayed = False
    """True when the connection runs over a relay circuit (`rendezvous.relay.relayed`)."""

    def __init__(
        self,
        host: ConnectionHost[Connection],
        *,
        dialer: bool,
        expected_peer_id: bytes | None = None,
    ) -> None:
        self.host = host
        self.dialer = dialer
        self.expected_peer_id = expected_peer_id
        self._waiting: list[Deferred[Connection]] = []
        """What `ready` gave out while the upgrade went on, fired (and let go) with it."""
        self._upgraded = False
        self.remote_peer_id = b""
        self.remote_public_key = b""
        self.remote_address: TCPAddress | None = None
        self.label = "?"
        self._state = _UPGRADING
        self._transport: Any = None
        self._upgrade: Upgrade | None = None
        self._machine: ConnectionMachine | None = None
        self._streams: dict[int, Stream] = {}
        self._negotiating: dict[int, _Negotiation] = {}
        self._upgrade_timer: IDelayedCall | None = None
        self._abort_timer: IDelayedCall | None = None
        self._paused = False
        self._dispatching = False
        """True while yamux events are handled: writes are sent once, after them all."""
        self._admitted = False
        self._ip: str | None = None
        self._failure = "connection lost"
        self._sends_itself = True
        """False for a TCP transport, which sends when the reactor next polls: see `_send_soon`."""
        self._send_pending = False
        """True while a `_send` is scheduled for the end of this reactor turn."""
        self._socket: Any = None
        """The TCP socket the upgrade's replies are sent on at once (`direct_socket`)."""

    @property
    def is_ready(self) -> bool:
        return self._state == _MUXED

    @property
    def ready(self) -> Deferred[Connection]:
        """Fires with this connection once streams can be opened; errbacks with
        `UpgradeFailed` when a dialled connection closes before that (an accepted one
        that never gets there never fires).

        A new Deferred each time, and none kept once fired: one kept here would hold
        this connection as its result, a cycle (connection, Deferred, connection) that
        only the garbage collector's occasional full collection frees, with the
        transport, the Noise and yamux state and the ciphers' native memory of every
        closed connection behind it (bench/soak.py: thousands of closed connections
        between two full collections, the daemon's RSS growing with them)."""
        if self._upgraded:
            return succeed(self)
        if self._state == _CLOSED:
            if self.dialer:
                return fail(UpgradeFailed(f"{self.label}: {self._failure}"))
            return Deferred()
        waiter: Deferred[Connection] = Deferred()
        self._waiting.append(waiter)
        return waiter

    @property
    def streams(self) -> list[Stream]:
        return list(self._streams.values())

    @property
    def _noise(self) -> NoiseSession | None:
        """The secure channel's Noise session once multiplexed (for tests)."""
        return self._machine.noise if self._machine is not None else None

    @property
    def _yamux(self) -> YamuxSession | None:
        """The yamux session once multiplexed (for tests)."""
        return self._machine.yamux if self._machine is not None else None

    # -- Twisted Protocol -----------------------------------------------------

    def connectionMade(self) -> None:
        transport: Any = self.transport
        self._transport = transport
        self._sends_itself = sends_itself(transport)
        self._socket = direct_socket(transport)
        no_delay(transport)
        enlarge_buffer(transport, TRANSPORT_BUFFER)
        peer = transport.getPeer()
        self.remote_address = TCPAddress.from_address(peer)
        self._ip = self.remote_address.host if self.remote_address is not None else None
        self.label = self.remote_address.text() if self.remote_address is not None else str(peer)
        if not self.host.admit(self, self._ip):
            self._state = _CLOSED
            self._failure = "too many connections"
            self._log_closing("refused: too many connections")
            transport.abortConnection()
            return
        self._admitted = True
        transport.registerProducer(self, True)
        host = self.host
        limits = host.limits
        upgrade = Upgrade(
            dialer=self.dialer,
            identity=host.identity,
            static=host.noise_static,
            timeout=limits.negotiation_timeout,
            max_bytes=limits.max_upgrade_bytes,
            expected_peer_id=self.expected_peer_id,
        )
        self._upgrade = upgrade
        self._follow(upgrade.start())

    def dataReceived(self, data: bytes) -> None:
        if self._state == _CLOSED:
            return
        try:
            self._receive(data)
        except (MultistreamError, NoiseError, YamuxError) as error:
            self._fail(str(error))
        except Exception:
            emit_failure(
                self.log,
                "unexpected error on the connection with {peer}",
                event="connection.failed",
                **self._who(),
            )
            self._fail("internal error")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._state = _CLOSED
        for timer in (self._upgrade_timer, self._abort_timer):
            if timer is not None and timer.active():
                timer.cancel()
        if self._admitted:
            self._admitted = False
            self.host.release(self, self._ip)
        negotiating, self._negotiating = self._negotiating, {}
        for negotiation in negotiating.values():
            if negotiation.timer.active():
                negotiation.timer.cancel()
            if negotiation.deferred is not None:
                negotiation.deferred.errback(StreamFailed("the connection closed"))
        for stream in list(self._streams.values()):
            self._lost(stream, "connection lost")
        waiting, self._waiting = self._waiting, []
        if self.dialer:
            for waiter in waiting:
                waiter.errback(UpgradeFailed(f"{self.label}: {self._failure}"))
        if debug_logged():
            emit(
                self.log,
                LogLevel.debug,
                "connection with {peer} closed",
                event="connection.closed",
                **self._who(),
            )

    def close(self) -> None:
        """Say GoAway and close the connection."""
        if self._state == _CLOSED:
            return
        if self._machine is not None:
            self._machine.go_away()
            self._flush()
        self._close_transport()

    # -- upgrade --------------------------------------------------------------

    def _receive(self, data: bytes) -> None:
        if self._state == _MUXED:
            # _MUXED means it is set (no assert on this path: once per read). The events
            # handled, what the read queued (window updates, data they freed) is sent.
            self._handle_events(self._machine.receive(data))  # type: ignore[union-attr]
            return
        upgrade = self._upgrade
        assert upgrade is not None
        self._follow(upgrade.receive(data))

    def _follow(self, outputs: list[Output]) -> None:
        """Do what the upgrade asked: one read's bytes are sent with one write, at once
        (and before anything `ready`'s callbacks write)."""
        out: list[bytes] = []
        upgraded: Upgraded | None = None
        failed: Failed | None = None
        for output in outputs:
            if type(output) is bytes:
                out.append(output)
            elif isinstance(output, Secured):
                self.remote_peer_id = output.peer_id
                self.remote_public_key = output.public_key
                self.label = f"{peer_id_to_text(output.peer_id)} at {self.label}"
            elif isinstance(output, Upgraded):
                upgraded = output
            elif isinstance(output, StartTimer):
                self._upgrade_timer = self.host.clock.callLater(
                    output.seconds, self._upgrade_timed_out
                )
            elif isinstance(output, Failed):
                failed = output
        if out:
            self._write(out[0] if len(out) == 1 else b"".join(out))
        if failed is not None:
            self._fail(failed.reason)
        elif upgraded is not None:
            self._muxed(upgraded.noise)
            if upgraded.chunks and self._state == _MUXED:  # frames that came with it
                assert self._machine is not None
                self._handle_events(self._machine.receive_plaintext(upgraded.chunks))

    def _muxed(self, session: NoiseSession) -> None:
        self._state = _MUXED
        self._upgrade = None
        if self._upgrade_timer is not None and self._upgrade_timer.active():
            self._upgrade_timer.cancel()
        self._upgrade_timer = None
        limits = self.host.limits
        self._machine = ConnectionMachine(
            session,
            dialer=self.dialer,
            handlers=self.host.handlers,
            timeout=limits.negotiation_timeout,
            max_streams=limits.max_streams_per_connection,
        )
        if debug_logged():
            emit(
                self.log,
                LogLevel.debug,
                "connected to {peer}",
                event="connection.ready",
                **self._who(),
            )
        self._upgraded = True
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(self)

    def _upgrade_timed_out(self) -> None:
        self._upgrade_timer = None
        if self._upgrade is not None and self._state == _UPGRADING:
            self._follow(self._upgrade.timer_fired())

    # -- the multiplexed connection's events ---------------------------------------

    def _handle_events(self, events: Sequence[Event]) -> None:
        outermost = not self._dispatching
        self._dispatching = True
        try:
            for event in events:
                if self._state == _CLOSED:
                    return
                try:
                    self._dispatch(event)
                except Exception:
                    emit_failure(
                        self.log,
                        "stream {stream} with {peer} failed",
                        stream=event,
                        event="stream.failed",
                        **self._who(),
                    )
                    stream = self._streams.get(getattr(event, "stream_id", 0))
                    if stream is not None:
                        self.stream_reset(stream)
        finally:
            if outermost:
                self._dispatching = False
        if outermost:
            self._flush(at_once=True)

    def _dispatch(self, event: Event) -> None:
        if type(event) is yamux.DataReceived:
            stream = self._streams.get(event.stream_id)
            if stream is not None and stream.protocol is not None:
                stream.protocol.data_received(event.data)
        elif type(event) is Negotiated:
            self._negotiated(event)
        elif type(event) is StreamTimer:
            self._start_stream_timer(event)
        elif type(event) is NotNegotiated:
            negotiation = self._negotiating.pop(event.stream_id, None)
            if negotiation is not None:
                self._end_negotiation(negotiation, event.reason)
        elif type(event) is yamux.StreamEnded:
            stream = self._streams.get(event.stream_id)
            if stream is not None and stream.protocol is not None:
                stream.protocol.end_received()
                self._reap(stream)
        elif type(event) is yamux.StreamReset:
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                self._lost(stream, "reset by the peer")
        elif type(event) is yamux.SendBufferDrained:
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                self._update_writing(stream)
                self._reap(stream)
        elif type(event) is yamux.GoAwayReceived and debug_logged():
            emit(
                self.log,
                LogLevel.debug,
                "{peer} said GoAway ({code})",
                code=event.code,
                event="connection.goaway",
                **self._who(),
            )

    # -- stream negotiation ---------------------------------------------------

    def _start_stream_timer(
        self,
        request: StreamTimer,
        protocol: StreamProtocol | None = None,
        deferred: Deferred[Stream] | None = None,
    ) -> None:
        stream_id = request.stream_id
        timer = self.host.clock.callLater(request.seconds, self._stream_timed_out, stream_id)
        self._negotiating[stream_id] = _Negotiation(stream_id, timer, protocol, deferred)

    def open_stream(
        self, protocol_id: str, protocol: StreamProtocol, *, early: bytes = b""
    ) -> Deferred[Stream]:
        """Open a stream for ``protocol_id``; fires once the peer agreed, after
        ``protocol.stream_started``; fails with `StreamFailed`.

        ``early``: the protocol's first bytes, sent with the proposal before the peer
        agrees (optimistic select: a round trip saved when the peer surely speaks it).
        Should the peer refuse, it reads them as a proposal at worst; the stream is
        reset and the Deferred fails."""
        machine = self._machine
        if self._state != _MUXED or machine is None:
            return fail(StreamFailed("the connection is not ready"))
        try:
            request = machine.open_stream(protocol_id, early)
        except YamuxError as error:
            return fail(StreamFailed(str(error)))
        deferred: Deferred[Stream] = Deferred()
        self._start_stream_timer(request, protocol, deferred)
        self._flush_soon()
        return deferred

    def _negotiated(self, event: Negotiated) -> None:
        stream_id = event.stream_id
        negotiation = self._negotiating.pop(stream_id, None)
        protocol: StreamProtocol | None = None
        deferred: Deferred[Stream] | None = None
        if negotiation is not None:
            if negotiation.timer.active():
                negotiation.timer.cancel()
            protocol = negotiation.protocol
            deferred = negotiation.deferred
        stream = Stream(self, stream_id, event.protocol_id)
        self._streams[stream_id] = stream
        if protocol is None:
            protocol = self.host.handlers[event.protocol_id]()
        stream.protocol = protocol
        protocol.stream_started(stream)
        self._update_writing(stream)  # the TCP connection may already push back
        if deferred is not None:
            deferred.callback(stream)
        leftover = event.leftover
        if leftover and not stream.closed:
            protocol.data_received(leftover)

    def _stream_timed_out(self, stream_id: int) -> None:
        machine = self._machine
        if stream_id in self._negotiating and machine is not None and self._state == _MUXED:
            self._handle_events(machine.timer_fired(stream_id))

    def _end_negotiation(self, negotiation: _Negotiation, reason: str) -> None:
        if negotiation.timer.active():
            negotiation.timer.cancel()
        emit(
            self.log,
            LogLevel.debug,
            "stream {stream} with {peer} not negotiated: {reason}",
            stream=negotiation.stream_id,
            reason=reason,
            event="stream.not_negotiated",
            **self._who(),
        )
        if negotiation.deferred is not None:
            negotiation.deferred.errback(StreamFailed(reason))

    # -- stream operations (called through `Stream`) ---------------------------

    def stream_write(self, stream: Stream, data: bytes) -> None:
        session = self._machine
        if stream.local_closed or session is None or self._state != _MUXED:
            return
        if not session.has_stream(stream.stream_id):
            return  # the peer reset it: its StreamReset event is on its way
        try:
            buffered = session.write(stream.stream_id, data)
        except YamuxError as error:
            emit(
                self.log,
                LogLevel.info,
                "resetting stream {stream} with {peer}: {reason}",
                stream=stream.stream_id,
                reason=str(error),
                event="stream.reset",
                **self._who(),
            )
            self.stream_reset(stream)
            return
        if not self._dispatching:
            self._flush()
        if buffered or self._paused or stream.writing_paused:
            self._update_writing(stream)

    def stream_close(self, stream: Stream) -> None:
        session = self._machine
        if stream.local_closed or session is None or self._state != _MUXED:
            return
        stream.local_closed = True
        session.close(stream.stream_id)
        self._flush_soon()
        self._reap(stream)

    def stream_reset(self, stream: Stream) -> None:
        if stream.closed:
            return
        stream.local_closed = True
        if self._machine is not None and self._state == _MUXED:
            self._machine.reset(stream.stream_id)
            self._flush_soon()
        self._lost(stream, "reset")

    def stream_pause_reading(self, stream: Stream) -> None:
        if self._machine is not None and self._machine.has_stream(stream.stream_id):
            self._machine.pause_reading(stream.stream_id)

    def stream_resume_reading(self, stream: Stream) -> None:
        if self._machine is not None and self._state == _MUXED:
            self._handle_events(self._machine.resume_reading(stream.stream_id))

    def _update_writing(self, stream: Stream) -> None:
        session = self._machine
        paused = self._paused or (session is not None and session.buffered(stream.stream_id) > 0)
        if paused == stream.writing_paused or stream.closed:
            return
        stream.writing_paused = paused
        protocol = stream.protocol
        if protocol is not None:
            if paused:
                protocol.pause_writing()
            else:
                protocol.resume_writing()

    def _reap(self, stream: Stream) -> None:
        """Forget a stream yamux is done with (both sides closed)."""
        if self._machine is not None and not self._machine.has_stream(stream.stream_id):
            self._lost(stream, None)

    def _lost(self, stream: Stream, reason: str | None) -> None:
        if stream.closed:
            return
        stream.closed = True
        stream.local_closed = True
        self._streams.pop(stream.stream_id, None)
        protocol, stream.protocol = stream.protocol, None  # nothing more to deliver:
        # and no stream <-> handler cycle left for the garbage collector to find
        if protocol is not None:
            try:
                protocol.stream_closed(reason)
            except Exception:
                emit_failure(
                    self.log,
                    "stream handler of {peer} failed on close",
                    event="stream.failed",
                    **self._who(),
                )

    # -- IPushProducer: the TCP transport's write buffer ------------------------

    def pauseProducing(self) -> None:
        if self._paused or self._state == _CLOSED:
            return
        self._paused = True
        self._transport.pauseProducing()
        for stream in list(self._streams.values()):
            self._update_writing(stream)

    def resumeProducing(self) -> None:
        if not self._paused or self._state == _CLOSED:
            return
        self._paused = False
        self._transport.resumeProducing()
        for stream in list(self._streams.values()):
            self._update_writing(stream)

    def stopProducing(self) -> None:
        pass

    # -- writing and closing --------------------------------------------------

    def _write(self, data: bytes) -> None:
        """Write raw bytes: at once where the socket takes them (`send_now`), the rest
        through the transport."""
        if not data:
            return
        sock = self._socket
        if sock is not None:
            data = send_now(self._transport, sock, data)
            if not data:
                return
        self._transport.write(data)

    def _write_secure(self, plaintext: bytes) -> None:
        """Encrypt and write ``plaintext`` as it is, past yamux (for tests)."""
        if plaintext:
            assert self._machine is not None
            self._transport.writeSequence(self._machine.noise.encrypt_frames(plaintext))

    def _flush_soon(self) -> None:
        """`_flush` now, or after the events being handled (one write for all replies)."""
        if not self._dispatching:
            self._flush()

    def _flush(self, at_once: bool = False) -> None:
        """Send what the machine has to send, a whole number of yamux frames per Noise
        message.

        ``at_once``: the replies to a read, all of them: a small write is handed to the
        socket now when nothing is queued before it (`send_now`), rather than at the
        end of the reactor turn."""
        machine = self._machine
        if machine is None or self._state != _MUXED:
            return
        pieces = machine.data_to_send()
        if not pieces:
            return
        if len(pieces) == 1:
            data = pieces[0]
            if at_once and self._socket is not None:
                data = send_now(self._transport, self._socket, data)
                if not data:
                    return
            self._transport.write(data)
        else:
            self._transport.writeSequence(pieces)
        self._send_soon()

    def _send_soon(self) -> None:
        """Have a TCP transport send what it holds once this reactor turn's events are
        handled, with what else they wrote, rather than after one more poll."""
        if self._send_pending or self._sends_itself:
            return
        self._send_pending = True
        self.host.clock.callLater(0, self._send)

    def _send(self) -> None:
        self._send_pending = False
        if self._state == _MUXED and not self._transport.disconnecting:
            # The reactor's own call: should the socket be full or gone, the bytes stay
            # buffered and the transport, still registered for writing, sees to it.
            flush(self._transport)

    def _fail(self, reason: str) -> None:
        if self._state == _CLOSED:
            return
        if self._state == _MUXED and self._machine is not None:
            # A yamux failure queued a GoAway: send it.
            self._transport.writeSequence(self._machine.data_to_send())
        self._failure = reason
        self._log_closing(reason)
        self._close_transport()

    def _log_closing(self, reason: str) -> None:
        allowed, suppressed = self.host.limiter.allow()
        if not allowed:
            return
        if suppressed:
            self.log.warn(
                "{suppressed} connection failures were not logged",
                suppressed=suppressed,
                event="connection.closing_suppressed",
                count=suppressed,
            )
        emit(
            self.log,
            LogLevel.info,
            "closing the connection with {peer}: {reason}",
            reason=reason,
            event="connection.closing",
            **self._who(),
        )

    def _who(self) -> dict[str, Any]:
        """Log fields naming the remote end: its address (shown as the address rule
        allows), and its peer id once the secure channel has proved it."""
        peer_id = self.remote_peer_id
        return {
            "peer": ClientAddress(self.label),
            "peer_id": peer_id_to_text(peer_id) if peer_id else None,
        }

    def _close_transport(self) -> None:
        self._state = _CLOSED
        transport = self._transport
        transport.unregisterProducer()
        transport.loseConnection()
        self._abort_timer = self.host.clock.callLater(ABORT_AFTER, self._abort)

    def _abort(self) -> None:
        self._abort_timer = None
        self._transport.abortConnection()
