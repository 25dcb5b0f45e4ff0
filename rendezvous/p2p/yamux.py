"""yamux `/yamux/1.0.0`: many flow-controlled streams over one secure connection.

`YamuxSession` is pure: `feed` takes received bytes and returns events, the
methods called by the application queue frames, and the caller sends whatever
`data_to_send` returns after each call. A protocol violation by the peer queues
a GoAway (protocol error) and raises `YamuxError`; the caller then sends the
queued bytes and closes the connection.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, NoReturn, TypeAlias

PROTOCOL_ID = "/yamux/1.0.0"
VERSION: Final = 0
HEADER = struct.Struct(">BBHII")
HEADER_SIZE: Final = 12

TYPE_DATA: Final = 0
TYPE_WINDOW_UPDATE: Final = 1
TYPE_PING: Final = 2
TYPE_GO_AWAY: Final = 3

FLAG_SYN: Final = 1
FLAG_ACK: Final = 2
FLAG_FIN: Final = 4
FLAG_RST: Final = 8

GO_AWAY_NORMAL: Final = 0
GO_AWAY_PROTOCOL_ERROR: Final = 1
GO_AWAY_INTERNAL_ERROR: Final = 2

INITIAL_WINDOW: Final = 256 * 1024
"""Receive window of every stream at its creation; only Data frames count."""
WINDOW_UPDATE_THRESHOLD: Final = INITIAL_WINDOW // 2
MAX_FRAME_PAYLOAD: Final = 64 * 1024
"""Largest Data frame we send (go-yamux and js-yamux use the same)."""
MAX_STREAM_ID: Final = 2**32 - 1
DEFAULT_ACCEPT_BACKLOG: Final = 256
DEFAULT_MAX_STREAMS: Final = 1024
DEFAULT_MAX_SEND_BUFFER: Final = 1024 * 1024


class YamuxError(Exception):
    """The peer broke the protocol, or a call was invalid for the session's state."""


def encode_header(frame_type: int, flags: int, stream_id: int, length: int) -> bytes:
    """The 12-byte big-endian frame header."""
    return HEADER.pack(VERSION, frame_type, flags, stream_id, length)


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened a stream; ACK it with `YamuxSession.accept` or by writing."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer half-closed the stream (FIN): no more data will arrive on it."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The stream is gone: reset by the peer, or by us after the peer misbehaved on it."""

    stream_id: int
    error_code: int


@dataclass(frozen=True, slots=True)
class SendBufferDrained:
    """Data buffered for lack of send window has all been sent."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PingAnswered:
    """The peer answered the ping that `YamuxSession.ping` returned ``opaque`` for."""

    opaque: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The peer will accept no new streams."""

    code: int


YamuxEvent: TypeAlias = (
    StreamOpened
    | DataReceived
    | StreamEnded
    | StreamReset
    | SendBufferDrained
    | PingAnswered
    | GoAwayReceived
)


class _Stream:
    __slots__ = (
        "ack_pending",
        "delivered_unacknowledged",
        "end_undelivered",
        "fin_sent",
        "local_closed",
        "paused",
        "receive_buffer",
        "receive_credit",
        "remote_closed",
        "send_buffer",
        "send_window",
        "stream_id",
    )

    def __init__(self, stream_id: int, *, ack_pending: bool) -> None:
        self.stream_id = stream_id
        self.send_window = INITIAL_WINDOW
        self.receive_credit = INITIAL_WINDOW
        self.delivered_unacknowledged = 0
        self.send_buffer = bytearray()
        self.ack_pending = ack_pending
        self.local_closed = False
        self.fin_sent = False
        self.remote_closed = False
        self.paused = False
        self.receive_buffer = bytearray()
        self.end_undelivered = False


class YamuxSession:
    """One side of a yamux connection (the dialler opens odd stream ids)."""

    def __init__(
        self,
        *,
        dialer: bool,
        max_streams: int = DEFAULT_MAX_STREAMS,
        accept_backlog: int = DEFAULT_ACCEPT_BACKLOG,
        max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER,
        max_frame_payload: int = MAX_FRAME_PAYLOAD,
    ) -> None:
        self.dialer = dialer
        self.max_streams = max_streams
        self.accept_backlog = accept_backlog
        self.max_send_buffer = max_send_buffer
        self.max_frame_payload = min(max_frame_payload, MAX_FRAME_PAYLOAD)
        """Largest Data frame we send: a secure channel may ask for frames that fit its own."""
        self._streams: dict[int, _Stream] = {}
        self._next_stream_id = 1 if dialer else 2
        self._unaccepted = 0
        self._outbound: list[bytes] = []
        """Whole frames (header and body), in order."""
        self._inbound = bytearray()
        self._pending_data_header: tuple[int, int, int] | None = None
        self._next_ping = 0
        self._pings_outstanding: set[int] = set()
        self._local_go_away = False
        self.remote_go_away: int | None = None
        """The code of the peer's GoAway, once received."""
        self._failed = False

    # -- inspection ---------------------------------------------------------

    @property
    def stream_ids(self) -> list[int]:
        """Ids of the streams that are not fully closed."""
        return list(self._streams)

    def has_stream(self, stream_id: int) -> bool:
        return stream_id in self._streams

    def buffered(self, stream_id: int) -> int:
        """Bytes written to the stream that wait for send window."""
        stream = self._streams.get(stream_id)
        return len(stream.send_buffer) if stream is not None else 0

    def data_to_send(self) -> bytes:
        """Drain the frames queued since the last call."""
        out = b"".join(self._outbound)
        self._outbound.clear()
        return out

    def chunks_to_send(self, limit: int) -> list[bytes]:
        """`data_to_send` as chunks of at most ``limit`` bytes, packing whole frames:
        only a frame larger than ``limit`` is cut. For a secure channel whose
        messages carry at most ``limit`` bytes."""
        outbound = self._outbound
        if not outbound:
            return []
        if len(outbound) == 1 and len(outbound[0]) <= limit:
            return [outbound.pop()]
        chunks: list[bytes] = []
        group: list[bytes] = []
        size = 0
        for frame in outbound:
            length = len(frame)
            if size + length > limit and group:
                chunks.append(b"".join(group))
                group.clear()
                size = 0
            if length > limit:
                chunks.append(frame)
            else:
                group.append(frame)
                size += length
        if group:
            chunks.append(b"".join(group))
        outbound.clear()
        return chunks

    # -- receiving ----------------------------------------------------------

    def feed(self, data: bytes) -> list[YamuxEvent]:
        """Process received bytes; return what happened, in order."""
        events: list[YamuxEvent] = []
        self._feed(data, events)
        return events

    def feed_chunks(self, chunks: list[bytes]) -> list[YamuxEvent]:
        """`feed` each of ``chunks`` in turn (as a secure channel's messages come)."""
        events: list[YamuxEvent] = []
        for chunk in chunks:
            self._feed(chunk, events)
        return events

    def _feed(self, data: bytes, events: list[YamuxEvent]) -> None:
        if self._failed:
            raise YamuxError("the session failed")
        buffer = self._inbound
        buffered = bool(buffer)
        if buffered:
            buffer += data
            view = memoryview(buffer)
        else:  # whole frames are read in place; only a split frame is copied
            view = memoryview(data)
        position = 0
        available = len(view)
        unpack_header = HEADER.unpack_from
        try:
            while True:
                pending = self._pending_data_header
                if pending is not None:
                    stream_id, flags, length = pending
                    if available - position < length:
                        break
                    body = bytes(view[position : position + length])
                    position += length
                    self._pending_data_header = None
                    self._handle_stream_frame(TYPE_DATA, flags, stream_id, length, body, events)
                    continue
                if available - position < HEADER_SIZE:
                    break
                version, frame_type, flags, stream_id, length = unpack_header(view, position)
                position += HEADER_SIZE
                if version != VERSION:
                    self._protocol_error(f"unsupported version {version}")
                if frame_type == TYPE_DATA:
                    self._check_data_length(stream_id, length)
                    if available - position >= length:  # the body is here too
                        body = bytes(view[position : position + length]) if length else b""
                        position += length
                        self._handle_stream_frame(TYPE_DATA, flags, stream_id, length, body, events)
                    else:
                        self._pending_data_header = (stream_id, flags, length)
                elif frame_type == TYPE_WINDOW_UPDATE:
                    self._handle_stream_frame(frame_type, flags, stream_id, length, b"", events)
                elif frame_type == TYPE_PING:
                    self._handle_ping(flags, length, events)
                elif frame_type == TYPE_GO_AWAY:
                    self.remote_go_away = length
                    events.append(GoAwayReceived(length))
                else:
                    self._protocol_error(f"unknown frame type {frame_type}")
        finally:
            if buffered:
                view.release()
                if position:
                    del buffer[:position]
            elif position < available:
                buffer += view[position:]
                view.release()

    def _protocol_error(self, reason: str) -> NoReturn:
        if not self._failed:
            self._failed = True
            self._queue(encode_header(TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTOCOL_ERROR))
        raise YamuxError(reason)

    def _check_data_length(self, stream_id: int, length: int) -> None:
        """Refuse, before buffering it, a Data frame larger than the window we granted."""
        stream = self._streams.get(stream_id)
        limit = stream.receive_credit if stream is not None else INITIAL_WINDOW
        if length > limit:
            self._protocol_error(f"stream {stream_id} exceeded its receive window")

    def _handle_ping(self, flags: int, opaque: int, events: list[YamuxEvent]) -> None:
        if flags & FLAG_SYN:
            self._queue(encode_header(TYPE_PING, FLAG_ACK, 0, opaque))
        elif flags & FLAG_ACK and opaque in self._pings_outstanding:
            self._pings_outstanding.discard(opaque)
            events.append(PingAnswered(opaque))

    def _handle_stream_frame(
        self,
        frame_type: int,
        flags: int,
        stream_id: int,
        length: int,
        body: bytes,
        events: list[YamuxEvent],
    ) -> None:
        if stream_id == 0:
            self._protocol_error("stream frame on the session id 0")
        stream = self._streams.get(stream_id)
        if flags & FLAG_SYN:
            if stream is not None:
                self._protocol_error(f"stream {stream_id} opened twice")
            stream = self._open_inbound(stream_id, events)
        if stream is None:
            return  # late frame for a stream we closed or refused
        if flags & FLAG_RST:
            code = length if frame_type == TYPE_WINDOW_UPDATE else 0
            self._forget(stream)
            events.append(StreamReset(stream_id, code))
            return
        if frame_type == TYPE_WINDOW_UPDATE:
            if length:
                stream.send_window += length
                if stream.send_buffer:
                    self._flush(stream)
                    if not stream.send_buffer:
                        events.append(SendBufferDrained(stream_id))
        elif body:
            if stream.remote_closed:
                self._reset(stream, GO_AWAY_PROTOCOL_ERROR)
                events.append(StreamReset(stream_id, GO_AWAY_PROTOCOL_ERROR))
                return
            stream.receive_credit -= len(body)
            if stream.paused:
                stream.receive_buffer += body
            else:
                events.append(DataReceived(stream_id, body))
                self._consumed(stream, len(body))
        if flags & FLAG_FIN:
            if stream.remote_closed:
                self._protocol_error(f"stream {stream_id} half-closed twice")
            stream.remote_closed = True
            if stream.receive_buffer:
                stream.end_undelivered = True
            else:
                events.append(StreamEnded(stream_id))
                self._forget_if_closed(stream)

    def _open_inbound(self, stream_id: int, events: list[YamuxEvent]) -> _Stream | None:
        if stream_id % 2 == self._next_stream_id % 2:
            self._protocol_error(f"the peer opened stream {stream_id} with our parity")
        if (
            self._local_go_away
            or len(self._streams) >= self.max_streams
            or self._unaccepted >= self.accept_backlog
        ):
            self._queue(encode_header(TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0))
            return None
        stream = _Stream(stream_id, ack_pending=True)
        self._streams[stream_id] = stream
        self._unaccepted += 1
        events.append(StreamOpened(stream_id))
        return stream

    def _consumed(self, stream: _Stream, count: int) -> None:
        """Credit delivered bytes back to the peer once half a window is due."""
        stream.delivered_unacknowledged += count
        delta = stream.delivered_unacknowledged
        if delta >= WINDOW_UPDATE_THRESHOLD and not stream.remote_closed:
            self._queue(
                encode_header(TYPE_WINDOW_UPDATE, self._ack_flag(stream), stream.stream_id, delta)
            )
            stream.receive_credit += delta
            stream.delivered_unacknowledged = 0

    # -- flow control on the receiving side ---------------------------------

    def pause_reading(self, stream_id: int) -> None:
        """Hold data of this stream (at most one window) and stop crediting the peer."""
        self._stream(stream_id).paused = True

    def resume_reading(self, stream_id: int) -> list[YamuxEvent]:
        """Deliver the data held while paused, and credit it to the peer."""
        stream = self._streams.get(stream_id)
        if stream is None or not stream.paused:
            return []
        stream.paused = False
        events: list[YamuxEvent] = []
        if stream.receive_buffer:
            data = bytes(stream.receive_buffer)
            stream.receive_buffer.clear()
            events.append(DataReceived(stream_id, data))
            self._consumed(stream, len(data))
        if stream.end_undelivered:
            stream.end_undelivered = False
            events.append(StreamEnded(stream_id))
            self._forget_if_closed(stream)
        return events

    # -- local actions ------------------------------------------------------

    def open_stream(self) -> int:
        """Open a stream (SYN now) and return its id."""
        self._check_usable()
        if self._local_go_away or self.remote_go_away is not None:
            raise YamuxError("the session is going away")
        if len(self._streams) >= self.max_streams:
            raise YamuxError("too many streams")
        stream_id = self._next_stream_id
        if stream_id > MAX_STREAM_ID:
            raise YamuxError("stream ids exhausted")
        self._next_stream_id += 2
        self._streams[stream_id] = _Stream(stream_id, ack_pending=False)
        self._queue(encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, stream_id, 0))
        return stream_id

    def accept(self, stream_id: int) -> None:
        """ACK a stream the peer opened, unless a frame already carried the ACK."""
        stream = self._stream(stream_id)
        if stream.ack_pending:
            self._queue(encode_header(TYPE_WINDOW_UPDATE, self._ack_flag(stream), stream_id, 0))

    def write(self, stream_id: int, data: bytes) -> int:
        """Send data as the window allows; return how many bytes remain buffered.

        Raises `YamuxError` if the bytes left waiting would exceed
        `max_send_buffer`: callers pause their producer while `buffered` > 0.
        """
        if self._failed:
            raise YamuxError("the session failed")
        stream = self._streams.get(stream_id)
        if stream is None:
            raise YamuxError(f"no stream {stream_id}")
        if stream.local_closed:
            raise YamuxError(f"stream {stream_id} is closed for writing")
        size = len(data)
        if not stream.send_buffer and size <= stream.send_window:
            limit = self.max_frame_payload
            if size <= limit:
                if size:
                    flags = self._ack_flag(stream) if stream.ack_pending else 0
                    self._outbound.append(
                        HEADER.pack(VERSION, TYPE_DATA, flags, stream_id, size) + data
                    )
                    stream.send_window -= size
                return 0
            view = memoryview(data)  # the window takes it all: frames cut from ``data``
            for start in range(0, size, limit):
                chunk = view[start : start + limit]
                flags = self._ack_flag(stream) if stream.ack_pending else 0
                self._outbound.append(
                    HEADER.pack(VERSION, TYPE_DATA, flags, stream_id, len(chunk)) + chunk
                )
            stream.send_window -= size
            return 0
        if len(stream.send_buffer) + size - stream.send_window > self.max_send_buffer:
            raise YamuxError(f"send buffer of stream {stream_id} is full")
        stream.send_buffer += data
        self._flush(stream)
        return len(stream.send_buffer)

    def close(self, stream_id: int) -> None:
        """Half-close our side (FIN after any buffered data); no-op if already gone."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed or self._failed:
            return
        stream.local_closed = True
        if not stream.send_buffer:
            self._send_fin(stream)

    def reset(self, stream_id: int, error_code: int = 0) -> None:
        """Abort the stream in both directions; no-op if already gone."""
        stream = self._streams.get(stream_id)
        if stream is None or self._failed:
            return
        self._reset(stream, error_code)

    def ping(self) -> int:
        """Send a ping; `PingAnswered` with the returned value reports the answer."""
        self._check_usable()
        opaque = self._next_ping
        self._next_ping = (opaque + 1) & 0xFFFFFFFF
        self._pings_outstanding.add(opaque)
        self._queue(encode_header(TYPE_PING, FLAG_SYN, 0, opaque))
        return opaque

    def go_away(self, code: int = GO_AWAY_NORMAL) -> None:
        """Tell the peer we accept no new streams (once)."""
        if self._local_go_away or self._failed:
            return
        self._local_go_away = True
        self._queue(encode_header(TYPE_GO_AWAY, 0, 0, code))

    # -- helpers ------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failed:
            raise YamuxError("the session failed")

    def _stream(self, stream_id: int) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise YamuxError(f"no stream {stream_id}")
        return stream

    def _queue(self, header: bytes, body: bytes = b"") -> None:
        self._outbound.append(header + body if body else header)

    def _ack_flag(self, stream: _Stream) -> int:
        """FLAG_ACK on the first frame we send on a stream the peer opened."""
        if not stream.ack_pending:
            return 0
        stream.ack_pending = False
        self._unaccepted -= 1
        return FLAG_ACK

    def _flush(self, stream: _Stream) -> None:
        buffer = stream.send_buffer
        limit = self.max_frame_payload
        while buffer and stream.send_window > 0:
            size = min(len(buffer), stream.send_window, limit)
            with memoryview(buffer) as view:
                frame = encode_header(TYPE_DATA, self._ack_flag(stream), stream.stream_id, size)
                frame += view[:size]
            del buffer[:size]
            stream.send_window -= size
            self._outbound.append(frame)
        if not buffer and stream.local_closed and not stream.fin_sent:
            self._send_fin(stream)

    def _send_fin(self, stream: _Stream) -> None:
        flags = FLAG_FIN | self._ack_flag(stream)
        self._queue(encode_header(TYPE_WINDOW_UPDATE, flags, stream.stream_id, 0))
        stream.fin_sent = True
        self._forget_if_closed(stream)

    def _reset(self, stream: _Stream, error_code: int) -> None:
        self._queue(encode_header(TYPE_WINDOW_UPDATE, FLAG_RST, stream.stream_id, error_code))
        self._forget(stream)

    def _forget_if_closed(self, stream: _Stream) -> None:
        if stream.fin_sent and stream.remote_closed and not stream.end_undelivered:
            self._forget(stream)

    def _forget(self, stream: _Stream) -> None:
        if self._streams.pop(stream.stream_id, None) is not None and stream.ack_pending:
            stream.ack_pending = False
            self._unaccepted -= 1
