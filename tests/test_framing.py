"""Varints and frames: round trips, split points, and what must be refused."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.framing import FrameDecoder, FramingError, frame
from rendezvous.varint import VarintError, decode_uvarint, encode_uvarint


class VarintTests(SynchronousTestCase):
    def test_vectors(self) -> None:
        for value, encoded in [
            (0, b"\x00"),
            (1, b"\x01"),
            (127, b"\x7f"),
            (128, b"\x80\x01"),
            (300, b"\xac\x02"),
            (2**64 - 1, b"\xff" * 9 + b"\x01"),
        ]:
            self.assertEqual(encode_uvarint(value), encoded)
            self.assertEqual(decode_uvarint(encoded), (value, len(encoded)))

    @given(st.integers(min_value=0, max_value=2**64 - 1))
    def test_round_trip(self, value: int) -> None:
        encoded = encode_uvarint(value)
        self.assertEqual(decode_uvarint(b"x" + encoded + b"y", 1), (value, len(encoded) + 1))
        self.assertIsNone(decode_uvarint(encoded[:-1]))

    def test_too_long_or_too_large(self) -> None:
        self.assertRaises(VarintError, decode_uvarint, b"\x80" * 10 + b"\x00")
        self.assertRaises(VarintError, decode_uvarint, b"\xff" * 9 + b"\x02")
        self.assertRaises(ValueError, encode_uvarint, -1)
        self.assertRaises(ValueError, encode_uvarint, 2**64)


class FrameDecoderTests(SynchronousTestCase):
    @given(st.lists(st.binary(max_size=300), max_size=8), st.data())
    def test_any_split_gives_the_same_frames(
        self, payloads: list[bytes], data: st.DataObject
    ) -> None:
        stream = b"".join(frame(p) for p in payloads)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
        decoder = FrameDecoder(300)
        out: list[bytes] = []
        previous = 0
        for cut in [*cuts, len(stream)]:
            out += decoder.feed(stream[previous:cut])
            previous = cut
        self.assertEqual(out, payloads)
        self.assertEqual(decoder.buffered, 0)

    def test_oversized_frame_refused_before_its_body_arrives(self) -> None:
        decoder = FrameDecoder(100)
        self.assertRaises(FramingError, decoder.feed, encode_uvarint(101))

    def test_eleven_byte_varint_refused(self) -> None:
        self.assertRaises(FramingError, FrameDecoder(100).feed, b"\x80" * 11)

    def test_ten_byte_varint_waits_then_refused_when_huge(self) -> None:
        decoder = FrameDecoder(100)
        self.assertEqual(decoder.feed(b"\x80" * 9), [])
        self.assertRaises(FramingError, decoder.feed, b"\x01")

    @given(st.binary(max_size=200))
    def test_garbage_only_raises_framing_error(self, data: bytes) -> None:
        with contextlib.suppress(FramingError):
            FrameDecoder(64).feed(data)
