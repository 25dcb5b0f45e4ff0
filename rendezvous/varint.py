"""Unsigned LEB128 varints, as multiformats and protobuf write them."""

from __future__ import annotations

MAX_VARINT_BYTES = 10
"""A uint64 never needs more; a longer varint is malformed."""


class VarintError(ValueError):
    """The bytes do not hold a well-formed unsigned varint."""


def encode_uvarint(value: int) -> bytes:
    """Encode a non-negative integer below 2**64."""
    if value < 0x80:
        if value < 0:
            raise ValueError("a uvarint cannot be negative")
        return bytes((value,))
    if value >= 1 << 64:
        raise ValueError("a uvarint holds at most 64 bits")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int] | None:
    """Decode the varint at ``offset``: ``(value, offset after it)``.

    Returns ``None`` when ``data`` ends before the varint does; raises
    `VarintError` for a varint longer than `MAX_VARINT_BYTES` or above 2**64-1.
    """
    first = data[offset] if offset < len(data) else None
    if first is None:
        return None
    if first < 0x80:
        return first, offset + 1
    value = 0
    shift = 0
    position = offset
    end = len(data)
    while True:
        if position >= end:
            if position - offset >= MAX_VARINT_BYTES:
                raise VarintError("varint longer than 10 bytes")
            return None
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value >= 1 << 64:
                raise VarintError("varint above 2**64-1")
            return value, position
        shift += 7
        if position - offset >= MAX_VARINT_BYTES:
            raise VarintError("varint longer than 10 bytes")
