"""Tests for rendezvous.p2p.multistream."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.p2p.multistream import (
    MAX_MESSAGE_SIZE,
    PROTOCOL_ID,
    Initiator,
    MultistreamError,
    Responder,
    encode_message,
)
from rendezvous.varint import encode_uvarint

HEADER = b"\x13/multistream/1.0.0\n"
NA = bytes.fromhex("036e610a")


def negotiate(initiator: Initiator, responder: Responder) -> None:
    """Pump bytes between the two until both have agreed."""
    to_responder = initiator.start()
    to_initiator = responder.start()
    while to_responder or to_initiator:
        if to_responder:
            data, to_responder = to_responder, b""
            to_initiator += responder.feed(data)
        if to_initiator:
            data, to_initiator = to_initiator, b""
            if initiator.selected is None:
                to_responder += initiator.feed(data)


class EncodingTests(SynchronousTestCase):
    def test_na(self) -> None:
        self.assertEqual(encode_message("na"), NA)

    def test_header(self) -> None:
        self.assertEqual(encode_message(PROTOCOL_ID), HEADER)

    def test_length_includes_newline(self) -> None:
        self.assertEqual(encode_message("/noise"), b"\x07/noise\n")

    def test_longest_message(self) -> None:
        encoded = encode_message("x" * (MAX_MESSAGE_SIZE - 1))
        self.assertEqual(encoded[:2], encode_uvarint(MAX_MESSAGE_SIZE))
        self.assertRaises(MultistreamError, encode_message, "x" * MAX_MESSAGE_SIZE)


class InitiatorTests(SynchronousTestCase):
    def test_start_pipelines_header_and_first_proposal(self) -> None:
        initiator = Initiator(["/noise", "/tls/1.0.0"])
        self.assertEqual(initiator.start(), HEADER + b"\x07/noise\n")

    def test_echo_selects(self) -> None:
        initiator = Initiator(["/noise"])
        initiator.start()
        self.assertEqual(initiator.feed(HEADER + b"\x07/noise\n" + b"rest"), b"")
        self.assertEqual(initiator.selected, "/noise")
        self.assertEqual(initiator.leftover, b"rest")

    def test_na_moves_to_next_proposal(self) -> None:
        initiator = Initiator(["/tls/1.0.0", "/noise"])
        initiator.start()
        self.assertEqual(initiator.feed(HEADER + NA), b"\x07/noise\n")
        self.assertIsNone(initiator.selected)
        initiator.feed(b"\x07/noise\n")
        self.assertEqual(initiator.selected, "/noise")

    def test_all_refused(self) -> None:
        initiator = Initiator(["/noise"])
        initiator.start()
        self.assertRaises(MultistreamError, initiator.feed, HEADER + NA)

    def test_wrong_header(self) -> None:
        initiator = Initiator(["/noise"])
        initiator.start()
        self.assertRaises(MultistreamError, initiator.feed, encode_message("/multistream/2"))

    def test_unexpected_answer(self) -> None:
        initiator = Initiator(["/noise"])
        initiator.start()
        self.assertRaises(MultistreamError, initiator.feed, HEADER + b"\x07/other\n")

    def test_byte_by_byte(self) -> None:
        initiator = Initiator(["/noise"])
        initiator.start()
        for byte in HEADER + b"\x07/noise\n":
            initiator.feed(bytes((byte,)))
        self.assertEqual(initiator.selected, "/noise")
        self.assertEqual(initiator.leftover, b"")

    def test_feed_after_selection(self) -> None:
        initiator = Initiator(["/noise"])
        initiator.start()
        initiator.feed(HEADER + b"\x07/noise\n")
        self.assertRaises(MultistreamError, initiator.feed, b"x")

    def test_feed_before_start(self) -> None:
        self.assertRaises(MultistreamError, Initiator(["/noise"]).feed, HEADER)

    def test_needs_a_protocol(self) -> None:
        self.assertRaises(ValueError, Initiator, [])


class ResponderTests(SynchronousTestCase):
    def test_echo_and_leftover(self) -> None:
        responder = Responder({"/noise"})
        self.assertEqual(responder.start(), HEADER)
        out = responder.feed(HEADER + b"\x07/noise\n" + b"\x00\x20handshake")
        self.assertEqual(out, b"\x07/noise\n")
        self.assertEqual(responder.selected, "/noise")
        self.assertEqual(responder.leftover, b"\x00\x20handshake")

    def test_refuses_unsupported_then_accepts(self) -> None:
        responder = Responder({"/noise"})
        out = responder.feed(HEADER + encode_message("/tls/1.0.0") + b"\x07/noise\n")
        self.assertEqual(out, NA + b"\x07/noise\n")
        self.assertEqual(responder.selected, "/noise")

    def test_ls_answered_na(self) -> None:
        responder = Responder({"/noise"})
        self.assertEqual(responder.feed(HEADER + encode_message("ls")), NA)

    def test_rejection_limit(self) -> None:
        responder = Responder({"/noise"}, max_rejected=3)
        responder.feed(HEADER + encode_message("/a") * 3)
        self.assertRaises(MultistreamError, responder.feed, encode_message("/a"))

    def test_default_rejection_limit(self) -> None:
        responder = Responder({"/noise"})
        responder.feed(HEADER + encode_message("/a") * 32)
        self.assertRaises(MultistreamError, responder.feed, encode_message("/a"))

    def test_header_required_first(self) -> None:
        self.assertRaises(MultistreamError, Responder({"/noise"}).feed, b"\x07/noise\n")

    def test_oversized_message(self) -> None:
        responder = Responder({"/noise"})
        self.assertRaises(MultistreamError, responder.feed, encode_uvarint(1025))

    def test_empty_message(self) -> None:
        self.assertRaises(MultistreamError, Responder({"/noise"}).feed, b"\x00")

    def test_missing_newline(self) -> None:
        self.assertRaises(MultistreamError, Responder({"/noise"}).feed, b"\x03abc")

    def test_not_utf8(self) -> None:
        self.assertRaises(MultistreamError, Responder({"/noise"}).feed, b"\x03\xff\xfe\n")

    def test_overlong_varint(self) -> None:
        self.assertRaises(MultistreamError, Responder({"/noise"}).feed, b"\x80" * 11)


class TwoPartyTests(SynchronousTestCase):
    def test_go_style_tls_then_noise(self) -> None:
        initiator = Initiator(["/tls/1.0.0", "/noise"])
        responder = Responder({"/noise"})
        negotiate(initiator, responder)
        self.assertEqual(initiator.selected, "/noise")
        self.assertEqual(responder.selected, "/noise")

    def test_first_choice_wins(self) -> None:
        initiator = Initiator(["/yamux/1.0.0", "/mplex/6.7.0"])
        responder = Responder({"/mplex/6.7.0", "/yamux/1.0.0"})
        negotiate(initiator, responder)
        self.assertEqual(initiator.selected, "/yamux/1.0.0")
        self.assertEqual(responder.selected, "/yamux/1.0.0")

    def test_no_common_protocol(self) -> None:
        self.assertRaises(
            MultistreamError, negotiate, Initiator(["/tls/1.0.0"]), Responder({"/noise"})
        )


class GarbageTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.booleans(), st.lists(st.binary(max_size=64), max_size=8))
    def test_responder_raises_only_its_error(self, with_header: bool, chunks: list[bytes]) -> None:
        responder = Responder({"/noise"}, max_rejected=4)
        try:
            if with_header:
                responder.feed(HEADER)
            for chunk in chunks:
                if responder.selected is not None:
                    break
                responder.feed(chunk)
        except MultistreamError:
            pass

    @settings(max_examples=300, deadline=None)
    @given(st.booleans(), st.lists(st.binary(max_size=64), max_size=8))
    def test_initiator_raises_only_its_error(self, with_header: bool, chunks: list[bytes]) -> None:
        initiator = Initiator(["/noise", "/tls/1.0.0"])
        initiator.start()
        try:
            if with_header:
                initiator.feed(HEADER)
            for chunk in chunks:
                if initiator.selected is not None:
                    break
                initiator.feed(chunk)
        except MultistreamError:
            pass

    @settings(max_examples=200, deadline=None)
    @given(
        st.text(min_size=1, max_size=200).filter(lambda text: text not in (PROTOCOL_ID, "na")),
        st.binary(max_size=100),
        st.integers(min_value=1, max_value=16),
    )
    def test_any_protocol_any_split(self, protocol: str, extra: bytes, step: int) -> None:
        responder = Responder({protocol})
        wire = HEADER + encode_message(protocol) + extra
        out = b""
        fed = 0
        while responder.selected is None:
            out += responder.feed(wire[fed : fed + step])
            fed += step
        self.assertEqual(out, encode_message(protocol))
        consumed = len(HEADER) + len(encode_message(protocol))
        self.assertEqual(responder.leftover, wire[consumed:fed])
