"""Tests for rendezvous.p2p.yamux."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.p2p.yamux import (
    FLAG_ACK,
    FLAG_FIN,
    FLAG_RST,
    FLAG_SYN,
    GO_AWAY_PROTOCOL_ERROR,
    HEADER,
    INITIAL_WINDOW,
    MAX_FRAME_PAYLOAD,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    DataReceived,
    GoAwayReceived,
    PingAnswered,
    SendBufferDrained,
    StreamEnded,
    StreamOpened,
    StreamReset,
    YamuxError,
    YamuxEvent,
    YamuxSession,
    encode_header,
)

Frame = tuple[int, int, int, int, bytes]


def frames(wire: bytes) -> list[Frame]:
    """Split our own output into (type, flags, stream id, length, body)."""
    result: list[Frame] = []
    position = 0
    while position < len(wire):
        _, frame_type, flags, stream_id, length = HEADER.unpack_from(wire, position)
        position += 12
        body = b""
        if frame_type == TYPE_DATA:
            body = wire[position : position + length]
            position += length
        result.append((frame_type, flags, stream_id, length, body))
    return result


def received_data(events: list[YamuxEvent], stream_id: int) -> bytes:
    return b"".join(
        event.data
        for event in events
        if isinstance(event, DataReceived) and event.stream_id == stream_id
    )


class Pair:
    """A dialler and a listener wired back to back."""

    def __init__(self, **listener_options: int) -> None:
        self.dialer = YamuxSession(dialer=True)
        self.listener = YamuxSession(dialer=False, **listener_options)
        self.dialer_events: list[YamuxEvent] = []
        self.listener_events: list[YamuxEvent] = []

    def pump(self) -> None:
        while True:
            to_listener = self.dialer.data_to_send()
            to_dialer = self.listener.data_to_send()
            if not to_listener and not to_dialer:
                return
            if to_listener:
                self.listener_events += self.listener.feed(to_listener)
            if to_dialer:
                self.dialer_events += self.dialer.feed(to_dialer)


class HeaderTests(SynchronousTestCase):
    def test_window_update_syn(self) -> None:
        self.assertEqual(
            encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0),
            bytes.fromhex("00 01 0001 00000001 00000000"),
        )

    def test_data_header(self) -> None:
        self.assertEqual(
            encode_header(TYPE_DATA, FLAG_ACK | FLAG_FIN, 0x01020304, 0x0A0B0C0D),
            bytes.fromhex("00 00 0006 01020304 0a0b0c0d"),
        )

    def test_go_away_header(self) -> None:
        self.assertEqual(
            encode_header(TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTOCOL_ERROR),
            bytes.fromhex("00 03 0000 00000000 00000001"),
        )


class StreamIdTests(SynchronousTestCase):
    def test_dialer_uses_odd_ids(self) -> None:
        session = YamuxSession(dialer=True)
        self.assertEqual([session.open_stream() for _ in range(3)], [1, 3, 5])

    def test_listener_uses_even_ids(self) -> None:
        session = YamuxSession(dialer=False)
        self.assertEqual([session.open_stream() for _ in range(3)], [2, 4, 6])

    def test_open_sends_syn(self) -> None:
        session = YamuxSession(dialer=True)
        session.open_stream()
        self.assertEqual(session.data_to_send(), bytes.fromhex("000100010000000100000000"))

    def test_peer_using_our_parity(self) -> None:
        session = YamuxSession(dialer=True)
        self.assertRaises(
            YamuxError, session.feed, encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 3, 0)
        )

    def test_duplicate_syn(self) -> None:
        session = YamuxSession(dialer=False)
        syn = encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0)
        session.feed(syn)
        self.assertRaises(YamuxError, session.feed, syn)

    def test_session_id_zero(self) -> None:
        session = YamuxSession(dialer=False)
        self.assertRaises(YamuxError, session.feed, encode_header(TYPE_DATA, FLAG_SYN, 0, 0))


class ExchangeTests(SynchronousTestCase):
    def test_open_write_echo_close(self) -> None:
        pair = Pair()
        stream_id = pair.dialer.open_stream()
        self.assertEqual(pair.dialer.write(stream_id, b"hello"), 0)
        pair.pump()
        self.assertEqual(
            pair.listener_events, [StreamOpened(stream_id), DataReceived(stream_id, b"hello")]
        )
        pair.listener.write(stream_id, b"olleh")
        pair.listener.close(stream_id)
        pair.pump()
        self.assertEqual(
            pair.dialer_events, [DataReceived(stream_id, b"olleh"), StreamEnded(stream_id)]
        )
        pair.dialer.close(stream_id)
        pair.pump()
        self.assertEqual(pair.listener_events[-1], StreamEnded(stream_id))
        self.assertFalse(pair.dialer.has_stream(stream_id))
        self.assertFalse(pair.listener.has_stream(stream_id))

    def test_first_reply_carries_ack(self) -> None:
        session = YamuxSession(dialer=False)
        session.feed(encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
        session.write(1, b"x")
        session.write(1, b"y")
        self.assertEqual(
            frames(session.data_to_send()),
            [(TYPE_DATA, FLAG_ACK, 1, 1, b"x"), (TYPE_DATA, 0, 1, 1, b"y")],
        )

    def test_accept_sends_ack(self) -> None:
        session = YamuxSession(dialer=False)
        session.feed(encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
        session.accept(1)
        session.accept(1)
        self.assertEqual(session.data_to_send(), encode_header(TYPE_WINDOW_UPDATE, FLAG_ACK, 1, 0))

    def test_syn_with_data(self) -> None:
        session = YamuxSession(dialer=False)
        events = session.feed(encode_header(TYPE_DATA, FLAG_SYN, 1, 3) + b"abc")
        self.assertEqual(events, [StreamOpened(1), DataReceived(1, b"abc")])

    def test_fin_with_data(self) -> None:
        session = YamuxSession(dialer=False)
        events = session.feed(encode_header(TYPE_DATA, FLAG_SYN | FLAG_FIN, 1, 3) + b"abc")
        self.assertEqual(events, [StreamOpened(1), DataReceived(1, b"abc"), StreamEnded(1)])

    def test_byte_by_byte(self) -> None:
        session = YamuxSession(dialer=False)
        wire = encode_header(TYPE_DATA, FLAG_SYN, 1, 3) + b"abc"
        events = [event for byte in wire for event in session.feed(bytes((byte,)))]
        self.assertEqual(events, [StreamOpened(1), DataReceived(1, b"abc")])

    def test_many_streams(self) -> None:
        pair = Pair()
        ids = [pair.dialer.open_stream() for _ in range(10)]
        for stream_id in ids:
            pair.dialer.write(stream_id, str(stream_id).encode())
        pair.pump()
        for stream_id in ids:
            self.assertEqual(
                received_data(pair.listener_events, stream_id), str(stream_id).encode()
            )

    def test_listener_opens_streams_too(self) -> None:
        pair = Pair()
        stream_id = pair.listener.open_stream()
        pair.listener.write(stream_id, b"push")
        pair.pump()
        self.assertEqual(
            pair.dialer_events, [StreamOpened(stream_id), DataReceived(stream_id, b"push")]
        )

    def test_write_after_close(self) -> None:
        session = YamuxSession(dialer=True)
        stream_id = session.open_stream()
        session.close(stream_id)
        self.assertRaises(YamuxError, session.write, stream_id, b"x")

    def test_write_unknown_stream(self) -> None:
        self.assertRaises(YamuxError, YamuxSession(dialer=True).write, 7, b"x")

    def test_close_and_reset_unknown_are_no_ops(self) -> None:
        session = YamuxSession(dialer=True)
        session.close(9)
        session.reset(9)
        self.assertEqual(session.data_to_send(), b"")

    def test_data_after_fin_resets_the_stream(self) -> None:
        session = YamuxSession(dialer=False)
        session.feed(encode_header(TYPE_DATA, FLAG_SYN | FLAG_FIN, 1, 0))
        events = session.feed(encode_header(TYPE_DATA, 0, 1, 1) + b"x")
        self.assertEqual(events, [StreamReset(1, GO_AWAY_PROTOCOL_ERROR)])
        self.assertEqual(
            session.data_to_send(),
            encode_header(TYPE_WINDOW_UPDATE, FLAG_RST, 1, GO_AWAY_PROTOCOL_ERROR),
        )

    def test_double_fin(self) -> None:
        session = YamuxSession(dialer=True)
        stream_id = session.open_stream()
        session.feed(encode_header(TYPE_WINDOW_UPDATE, FLAG_FIN, stream_id, 0))
        self.assertRaises(
            YamuxError, session.feed, encode_header(TYPE_WINDOW_UPDATE, FLAG_FIN, stream_id, 0)
        )

    def test_late_data_for_a_forgotten_stream_is_dropped(self) -> None:
        session = YamuxSession(dialer=True)
        stream_id = session.open_stream()
        session.reset(stream_id)
        self.assertEqual(session.feed(encode_header(TYPE_DATA, 0, stream_id, 2) + b"ab"), [])


class ResetTests(SynchronousTestCase):
    def test_local_reset(self) -> None:
        pair = Pair()
        stream_id = pair.dialer.open_stream()
        pair.pump()
        pair.dialer.reset(stream_id)
        pair.pump()
        self.assertEqual(pair.listener_events, [StreamOpened(stream_id), StreamReset(stream_id, 0)])
        self.assertFalse(pair.listener.has_stream(stream_id))

    def test_go_yamux_rst_code_is_not_a_window(self) -> None:
        session = YamuxSession(dialer=True)
        stream_id = session.open_stream()
        events = session.feed(encode_header(TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 5))
        self.assertEqual(events, [StreamReset(stream_id, 5)])
        self.assertFalse(session.has_stream(stream_id))

    def test_rst_on_data_frame(self) -> None:
        session = YamuxSession(dialer=True)
        stream_id = session.open_stream()
        events = session.feed(encode_header(TYPE_DATA, FLAG_RST, stream_id, 2) + b"zz")
        self.assertEqual(events, [StreamReset(stream_id, 0)])

    def test_reset_with_code(self) -> None:
        session = YamuxSession(dialer=True)
        stream_id = session.open_stream()
        session.data_to_send()
        session.reset(stream_id, 7)
        self.assertEqual(
            session.data_to_send(), encode_header(TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 7)
        )


class PingTests(SynchronousTestCase):
    def test_ping_is_answered(self) -> None:
        pair = Pair()
        opaque = pair.dialer.ping()
        pair.pump()
        self.assertEqual(pair.dialer_events, [PingAnswered(opaque)])

    def test_reply_bytes(self) -> None:
        session = YamuxSession(dialer=False)
        self.assertEqual(session.feed(encode_header(TYPE_PING, FLAG_SYN, 0, 0xDEADBEEF)), [])
        self.assertEqual(session.data_to_send(), bytes.fromhex("00 02 0002 00000000 deadbeef"))

    def test_unsolicited_pong_is_ignored(self) -> None:
        session = YamuxSession(dialer=True)
        self.assertEqual(session.feed(encode_header(TYPE_PING, FLAG_ACK, 0, 1)), [])

    def test_ping_values_differ(self) -> None:
        session = YamuxSession(dialer=True)
        self.assertNotEqual(session.ping(), session.ping())


class GoAwayTests(SynchronousTestCase):
    def test_go_away_is_reported(self) -> None:
        pair = Pair()
        pair.dialer.go_away()
        pair.dialer.go_away()  # sent once
        pair.pump()
        self.assertEqual(pair.listener_events, [GoAwayReceived(0)])
        self.assertEqual(pair.listener.remote_go_away, 0)
        self.assertRaises(YamuxError, pair.listener.open_stream)

    def test_no_new_streams_after_local_go_away(self) -> None:
        session = YamuxSession(dialer=False)
        session.go_away()
        session.data_to_send()
        self.assertEqual(session.feed(encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0)), [])
        self.assertEqual(session.data_to_send(), encode_header(TYPE_WINDOW_UPDATE, FLAG_RST, 1, 0))
        self.assertRaises(YamuxError, session.open_stream)

    def test_existing_streams_continue(self) -> None:
        pair = Pair()
        stream_id = pair.dialer.open_stream()
        pair.pump()
        pair.listener.go_away()
        pair.dialer.write(stream_id, b"still here")
        pair.pump()
        self.assertEqual(received_data(pair.listener_events, stream_id), b"still here")


class LimitTests(SynchronousTestCase):
    def test_max_streams(self) -> None:
        session = YamuxSession(dialer=False, max_streams=2)
        wire = b"".join(encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, i, 0) for i in (1, 3, 5))
        self.assertEqual(session.feed(wire), [StreamOpened(1), StreamOpened(3)])
        self.assertEqual(session.data_to_send(), encode_header(TYPE_WINDOW_UPDATE, FLAG_RST, 5, 0))

    def test_max_streams_when_opening(self) -> None:
        session = YamuxSession(dialer=True, max_streams=1)
        session.open_stream()
        self.assertRaises(YamuxError, session.open_stream)

    def test_accept_backlog(self) -> None:
        session = YamuxSession(dialer=False, accept_backlog=2)
        wire = b"".join(encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, i, 0) for i in (1, 3, 5))
        self.assertEqual(session.feed(wire), [StreamOpened(1), StreamOpened(3)])
        session.accept(1)
        self.assertEqual(
            frames(session.data_to_send()),
            [
                (TYPE_WINDOW_UPDATE, FLAG_RST, 5, 0, b""),
                (TYPE_WINDOW_UPDATE, FLAG_ACK, 1, 0, b""),
            ],
        )
        self.assertEqual(
            session.feed(encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 7, 0)), [StreamOpened(7)]
        )

    def test_default_backlog_is_256(self) -> None:
        session = YamuxSession(dialer=False)
        wire = b"".join(
            encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 2 * i + 1, 0) for i in range(257)
        )
        self.assertEqual(len(session.feed(wire)), 256)

    def test_reset_stream_leaves_the_backlog(self) -> None:
        session = YamuxSession(dialer=False, accept_backlog=1)
        session.feed(encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
        session.feed(encode_header(TYPE_WINDOW_UPDATE, FLAG_RST, 1, 0))
        self.assertEqual(
            session.feed(encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 3, 0)), [StreamOpened(3)]
        )


class ProtocolErrorTests(SynchronousTestCase):
    def assertProtocolError(self, session: YamuxSession, wire: bytes) -> None:
        self.assertRaises(YamuxError, session.feed, wire)
        self.assertTrue(session.data_to_send().endswith(encode_header(TYPE_GO_AWAY, 0, 0, 1)))
        self.assertRaises(YamuxError, session.feed, b"")
        self.assertRaises(YamuxError, session.open_stream)

    def test_bad_version(self) -> None:
        self.assertProtocolError(YamuxSession(dialer=True), b"\x01" + bytes(11))

    def test_unknown_type(self) -> None:
        self.assertProtocolError(YamuxSession(dialer=True), b"\x00\x04" + bytes(10))

    def test_window_exceeded_before_the_body_arrives(self) -> None:
        session = YamuxSession(dialer=False)
        session.feed(encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
        self.assertProtocolError(session, encode_header(TYPE_DATA, 0, 1, INITIAL_WINDOW + 1))

    def test_huge_frame_for_unknown_stream(self) -> None:
        self.assertProtocolError(
            YamuxSession(dialer=False), encode_header(TYPE_DATA, 0, 9, 0xFFFFFFFF)
        )


class FlowControlTests(SynchronousTestCase):
    def test_send_window_limits_and_buffers(self) -> None:
        session = YamuxSession(dialer=True)
        stream_id = session.open_stream()
        session.data_to_send()
        payload = bytes(INITIAL_WINDOW + 1000)
        self.assertEqual(session.write(stream_id, payload), 1000)
        self.assertEqual(session.buffered(stream_id), 1000)
        sent = frames(session.data_to_send())
        self.assertEqual(sum(length for _, _, _, length, _ in sent), INITIAL_WINDOW)
        self.assertTrue(all(length <= MAX_FRAME_PAYLOAD for _, _, _, length, _ in sent))
        events = session.feed(encode_header(TYPE_WINDOW_UPDATE, 0, stream_id, 600))
        self.assertEqual(events, [])
        self.assertEqual(session.buffered(stream_id), 400)
        events = session.feed(encode_header(TYPE_WINDOW_UPDATE, 0, stream_id, 600))
        self.assertEqual(events, [SendBufferDrained(stream_id)])
        self.assertEqual(session.buffered(stream_id), 0)

    def test_fin_waits_for_buffered_data(self) -> None:
        session = YamuxSession(dialer=True)
        stream_id = session.open_stream()
        session.write(stream_id, bytes(INITIAL_WINDOW + 10))
        session.close(stream_id)
        self.assertNotIn(FLAG_FIN, [flags for _, flags, _, _, _ in frames(session.data_to_send())])
        session.feed(encode_header(TYPE_WINDOW_UPDATE, 0, stream_id, 10))
        self.assertEqual(
            frames(session.data_to_send()),
            [
                (TYPE_DATA, 0, stream_id, 10, bytes(10)),
                (TYPE_WINDOW_UPDATE, FLAG_FIN, stream_id, 0, b""),
            ],
        )

    def test_send_buffer_cap(self) -> None:
        session = YamuxSession(dialer=True, max_send_buffer=100)
        stream_id = session.open_stream()
        session.write(stream_id, bytes(INITIAL_WINDOW + 100))
        self.assertRaises(YamuxError, session.write, stream_id, b"x")

    def test_window_update_after_half_the_window(self) -> None:
        session = YamuxSession(dialer=False)
        session.feed(encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
        session.accept(1)
        session.data_to_send()
        half = INITIAL_WINDOW // 2
        session.feed(encode_header(TYPE_DATA, 0, 1, half - 1) + bytes(half - 1))
        self.assertEqual(session.data_to_send(), b"")
        session.feed(encode_header(TYPE_DATA, 0, 1, 1) + b"\x00")
        self.assertEqual(session.data_to_send(), encode_header(TYPE_WINDOW_UPDATE, 0, 1, half))

    def test_large_transfer_between_two_sessions(self) -> None:
        pair = Pair()
        stream_id = pair.dialer.open_stream()
        payload = bytes(range(256)) * 8000  # about 2 MB: several windows
        position = 0
        while position < len(payload):
            room = 256 * 1024 - pair.dialer.buffered(stream_id)
            pair.dialer.write(stream_id, payload[position : position + room])
            position += room
            pair.pump()
        pair.dialer.close(stream_id)
        pair.pump()
        self.assertEqual(received_data(pair.listener_events, stream_id), payload)
        self.assertEqual(pair.listener_events[-1], StreamEnded(stream_id))

    def test_paused_stream_holds_data_and_credit(self) -> None:
        pair = Pair()
        stream_id = pair.dialer.open_stream()
        pair.pump()
        pair.listener.pause_reading(stream_id)
        self.assertEqual(pair.dialer.write(stream_id, bytes(INITIAL_WINDOW + 5)), 5)
        pair.dialer.close(stream_id)
        pair.pump()
        self.assertEqual(pair.listener_events, [StreamOpened(stream_id)])
        self.assertEqual(pair.dialer.buffered(stream_id), 5)
        events = pair.listener.resume_reading(stream_id)
        self.assertEqual(events, [DataReceived(stream_id, bytes(INITIAL_WINDOW))])
        pair.pump()
        self.assertEqual(
            pair.listener_events[1:], [DataReceived(stream_id, bytes(5)), StreamEnded(stream_id)]
        )
        self.assertEqual(pair.dialer_events, [SendBufferDrained(stream_id)])

    def test_fin_while_paused_comes_after_the_data(self) -> None:
        session = YamuxSession(dialer=False)
        session.feed(encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
        session.pause_reading(1)
        self.assertEqual(session.feed(encode_header(TYPE_DATA, FLAG_FIN, 1, 2) + b"ab"), [])
        self.assertEqual(session.resume_reading(1), [DataReceived(1, b"ab"), StreamEnded(1)])

    def test_peer_ignoring_a_paused_window(self) -> None:
        session = YamuxSession(dialer=False)
        session.feed(encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
        session.pause_reading(1)
        session.feed(encode_header(TYPE_DATA, 0, 1, INITIAL_WINDOW) + bytes(INITIAL_WINDOW))
        self.assertRaises(YamuxError, session.feed, encode_header(TYPE_DATA, 0, 1, 1))

    def test_syn_window_delta_grows_the_send_window(self) -> None:
        session = YamuxSession(dialer=False)
        session.feed(encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 1000))
        self.assertEqual(session.write(1, bytes(INITIAL_WINDOW + 1000)), 0)


class GarbageTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.booleans(), st.lists(st.binary(max_size=80), max_size=6))
    def test_random_bytes_raise_only_yamux_error(self, dialer: bool, chunks: list[bytes]) -> None:
        session = YamuxSession(dialer=dialer)
        with contextlib.suppress(YamuxError):
            for chunk in chunks:
                session.feed(chunk)

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.integers(0, 3),
                st.integers(0, 15),
                st.integers(0, 8),
                st.integers(0, 300),
            ),
            max_size=12,
        )
    )
    def test_well_formed_headers_raise_only_yamux_error(
        self, headers: list[tuple[int, int, int, int]]
    ) -> None:
        session = YamuxSession(dialer=True)
        session.open_stream()
        wire = b""
        for frame_type, flags, stream_id, length in headers:
            wire += encode_header(frame_type, flags, stream_id, length)
            if frame_type == TYPE_DATA:
                wire += bytes(length)
        with contextlib.suppress(YamuxError):
            session.feed(wire)
            for stream_id in session.stream_ids:
                session.write(stream_id, b"x")
                session.resume_reading(stream_id)

    @settings(max_examples=100, deadline=None)
    @given(st.integers(min_value=1, max_value=40))
    def test_any_split_gives_the_same_events(self, step: int) -> None:
        wire = (
            encode_header(TYPE_DATA, FLAG_SYN, 1, 5)
            + b"hello"
            + encode_header(TYPE_PING, FLAG_SYN, 0, 9)
            + encode_header(TYPE_DATA, FLAG_FIN, 1, 3)
            + b"bye"
            + encode_header(TYPE_GO_AWAY, 0, 0, 0)
        )
        session = YamuxSession(dialer=False)
        events: list[YamuxEvent] = []
        for start in range(0, len(wire), step):
            events += session.feed(wire[start : start + step])
        self.assertEqual(
            events,
            [
                StreamOpened(1),
                DataReceived(1, b"hello"),
                DataReceived(1, b"bye"),
                StreamEnded(1),
                GoAwayReceived(0),
            ],
        )


class ChunkTests(SynchronousTestCase):
    """`chunks_to_send` packs whole frames into a secure channel's messages."""

    def test_whole_frames_packed_up_to_the_limit(self) -> None:
        session = YamuxSession(dialer=True, max_frame_payload=100)
        stream_id = session.open_stream()
        session.write(stream_id, b"a" * 250)  # frames of 100, 100 and 50 bytes
        session.ping()
        chunks = session.chunks_to_send(130)
        self.assertEqual([len(c) for c in chunks], [12 + 112, 112, 62 + 12])
        self.assertEqual([f[3] for c in chunks for f in frames(c)], [0, 100, 100, 50, 0])
        self.assertEqual(session.chunks_to_send(130), [])

    def test_a_frame_larger_than_the_limit_stands_alone(self) -> None:
        session = YamuxSession(dialer=True)
        stream_id = session.open_stream()
        session.write(stream_id, b"b" * 1000)
        chunks = session.chunks_to_send(500)
        self.assertEqual([len(c) for c in chunks], [12, 1012])

    def test_max_frame_payload(self) -> None:
        pair = Pair()
        pair.dialer = YamuxSession(dialer=True, max_frame_payload=1000)
        stream_id = pair.dialer.open_stream()
        pair.dialer.write(stream_id, b"c" * 2500)
        sent = frames(pair.dialer.data_to_send())
        self.assertEqual([f[3] for f in sent if f[0] == TYPE_DATA], [1000, 1000, 500])
        self.assertEqual(
            YamuxSession(dialer=True, max_frame_payload=10**6).max_frame_payload, MAX_FRAME_PAYLOAD
        )

    def test_feed_chunks(self) -> None:
        wire = (
            encode_header(TYPE_DATA, FLAG_SYN, 1, 5)
            + b"hello"
            + encode_header(TYPE_DATA, FLAG_FIN, 1, 3)
            + b"bye"
        )
        session = YamuxSession(dialer=False)
        events = session.feed_chunks([wire[:7], wire[7:20], wire[20:]])
        self.assertEqual(
            events,
            [StreamOpened(1), DataReceived(1, b"hello"), DataReceived(1, b"bye"), StreamEnded(1)],
        )
