"""Split a byte stream into unsigned-varint length-prefixed frames: the framing of both
dialects (a live session, a standard stream) and of their clients."""

from __future__ import annotations

from rendezvous.varint import VarintError, decode_uvarint, encode_uvarint


class FramingError(ValueError):
    """The stream cannot be framed any further: the connection must end."""


def frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its length."""
    return encode_uvarint(len(payload)) + payload


class FrameDecoder:
    """Feed bytes in, take whole frames out; a frame over ``max_frame`` is an error."""

    __slots__ = ("_buffer", "max_frame")

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buffer = b""

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer + data if self._buffer else data
        frames: list[bytes] = []
        offset = 0
        end = len(buffer)
        max_frame = self.max_frame
        while offset < end:
            first = buffer[offset]
            if first < 0x80:
                length = first
                start = offset + 1
            else:
                try:
                    decoded = decode_uvarint(buffer, offset)
                except VarintError as e:
                    raise FramingError(str(e)) from None
                if decoded is None:
                    break
                length, start = decoded
            if length > max_frame:
                raise FramingError(f"frame of {length} bytes exceeds the limit of {max_frame}")
            stop = start + length
            if stop > end:
                break
            frames.append(buffer[start:stop])
            offset = stop
        self._buffer = buffer[offset:] if offset < end else b""
        return frames
