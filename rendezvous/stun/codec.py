"""STUN Binding messages (RFC 8489), pure: bytes in, a parsed request or a reason out;
response bytes out.

A STUN message is a 20-byte header - two zero bits, a 14-bit message type (method and
class bits interleaved), a 16-bit length of what follows the header (a multiple of 4),
the magic cookie ``0x2112A442`` and a 96-bit transaction id - then attributes, each a
16-bit type, a 16-bit value length and the value padded to a multiple of 4 bytes.
Types below ``0x8000`` are comprehension-required: a server that does not understand one
must not answer as if it did. ``FINGERPRINT`` (``0x8028``), when present, is the last
attribute: the CRC-32 of the message before it (with the header's length counting it)
XOR ``0x5354554E``.

We answer only a well-formed Binding request (type ``0x0001``) that carries no
comprehension-required attribute (we implement none: no credentials, no CHANGE-REQUEST)
and whose FINGERPRINT, if any, is right; optional attributes (``SOFTWARE``…) are
ignored. The answer is a Binding success response (``0x0101``) with the same transaction
id, one XOR-MAPPED-ADDRESS (``0x0020``), and a FINGERPRINT when the request had one.
"""

from __future__ import annotations

import ipaddress
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAGIC_COOKIE: Final = 0x2112A442
HEADER_SIZE: Final = 20
TRANSACTION_ID_SIZE: Final = 12
MAX_MESSAGE_SIZE: Final = 1280
"""Longest datagram parsed (RFC 8489 keeps messages within the path MTU; 1280 is the
IPv6 minimum). Browsers' Binding requests are 20 to about 100 bytes."""

BINDING_REQUEST: Final = 0x0001
BINDING_SUCCESS: Final = 0x0101

XOR_MAPPED_ADDRESS: Final = 0x0020
FINGERPRINT: Final = 0x8028
FINGERPRINT_XOR: Final = 0x5354554E
COMPREHENSION_OPTIONAL: Final = 0x8000
"""Attribute types from here up may be ignored by a receiver that does not know them."""

_FAMILY_IPV4: Final = 0x01
_FAMILY_IPV6: Final = 0x02
_HEADER: Final = struct.Struct("!HHI12s")
_ATTRIBUTE: Final = struct.Struct("!HH")
_FINGERPRINT_SIZE: Final = 8
_COOKIE_BYTES: Final = MAGIC_COOKIE.to_bytes(4, "big")


class Reason(StrEnum):
    """Why a datagram is not answered (also the ``reason`` label of its counter)."""

    SHORT = "short"
    """Fewer than 20 bytes: no STUN header."""
    TOO_LONG = "too long"
    """More than `MAX_MESSAGE_SIZE` bytes."""
    NOT_STUN = "not stun"
    """The first two bits are not zero."""
    MAGIC_COOKIE = "magic cookie"
    """Not ``0x2112A442`` (RFC 3489 clients, other protocols)."""
    LENGTH = "length"
    """The header's length is not a multiple of 4 or not what follows the header."""
    NOT_BINDING_REQUEST = "not a binding request"
    """Another class (indication, response) or another method."""
    TRUNCATED_ATTRIBUTE = "truncated attribute"
    """An attribute runs past the end of the message."""
    UNKNOWN_ATTRIBUTE = "comprehension-required attribute"
    """An attribute below ``0x8000``: we implement none of them."""
    FINGERPRINT = "fingerprint"
    """A FINGERPRINT that is wrong, not 4 bytes, or not the last attribute."""


class StunParseError(ValueError):
    """A datagram that is not a Binding request we answer: ``reason``, and ``detail``."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class BindingRequest:
    transaction_id: bytes
    """12 bytes, copied into the answer."""
    fingerprint: bool = False
    """The request ended in a valid FINGERPRINT (so the answer carries one too)."""


def parse_binding_request(data: bytes) -> BindingRequest:
    """The Binding request in ``data``; raises `StunParseError` (and nothing else) when
    ``data`` is anything else."""
    message_type, _, transaction_id = _parse_header(data)
    if message_type != BINDING_REQUEST:
        raise StunParseError(
            Reason.NOT_BINDING_REQUEST,
            f"message type 0x{message_type:04x} ({_describe(message_type)})",
        )
    fingerprint = False
    for attribute_type, value, position in _attributes(data):
        if attribute_type == FINGERPRINT:
            _check_fingerprint(data, value, position)  # (so it is the last one)
            fingerprint = True
        elif attribute_type < COMPREHENSION_OPTIONAL:
            raise StunParseError(Reason.UNKNOWN_ATTRIBUTE, f"attribute 0x{attribute_type:04x}")
    return BindingRequest(transaction_id, fingerprint)


def parse_binding_success(data: bytes) -> tuple[bytes, IPAddress, int]:
    """The transaction id and the XOR-MAPPED-ADDRESS (ip, port) of a Binding success
    response (what a client reads); raises `StunParseError`."""
    message_type, _, transaction_id = _parse_header(data)
    if message_type != BINDING_SUCCESS:
        raise StunParseError(Reason.NOT_BINDING_REQUEST, f"message type 0x{message_type:04x}")
    mapped: tuple[IPAddress, int] | None = None
    for attribute_type, value, position in _attributes(data):
        if attribute_type == FINGERPRINT:
            _check_fingerprint(data, value, position)
        elif attribute_type == XOR_MAPPED_ADDRESS and mapped is None:
            mapped = _unxor_address(value, transaction_id)
    if mapped is None:
        raise StunParseError(Reason.TRUNCATED_ATTRIBUTE, "no valid XOR-MAPPED-ADDRESS")
    return transaction_id, mapped[0], mapped[1]


def binding_request(
    transaction_id: bytes,
    attributes: Sequence[tuple[int, bytes]] = (),
    fingerprint: bool = False,
) -> bytes:
    """A Binding request with ``attributes`` (type, unpadded value) and, if asked, a
    FINGERPRINT."""
    return _message(BINDING_REQUEST, transaction_id, attributes, fingerprint)


def binding_success(
    transaction_id: bytes, ip: IPAddress, port: int, fingerprint: bool = False
) -> bytes:
    """The answer to a Binding request from ``ip``:``port``."""
    attribute = (XOR_MAPPED_ADDRESS, _xor_address(ip, port, transaction_id))
    return _message(BINDING_SUCCESS, transaction_id, (attribute,), fingerprint)


def source_ip(host: str) -> IPAddress:
    """The address to report for a datagram's source host as the socket gives it: an
    IPv4-mapped IPv6 address (a dual-stack socket's IPv4 peer) as IPv4, a zone dropped.
    Raises `ValueError` for what is not an IP address."""
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


# -- internals --------------------------------------------------------------------


def _parse_header(data: bytes) -> tuple[int, int, bytes]:
    size = len(data)
    if size < HEADER_SIZE:
        raise StunParseError(Reason.SHORT, f"{size} bytes")
    if size > MAX_MESSAGE_SIZE:
        raise StunParseError(Reason.TOO_LONG, f"{size} bytes")
    message_type, length, cookie, transaction_id = _HEADER.unpack_from(data)
    if message_type & 0xC000:
        raise StunParseError(Reason.NOT_STUN, "the first two bits are not zero")
    if cookie != MAGIC_COOKIE:
        raise StunParseError(Reason.MAGIC_COOKIE, f"0x{cookie:08x}")
    if length % 4 or length != size - HEADER_SIZE:
        raise StunParseError(
            Reason.LENGTH, f"length {length} with {size - HEADER_SIZE} bytes after the header"
        )
    return message_type, length, transaction_id


def _attributes(data: bytes) -> list[tuple[int, bytes, int]]:
    """Each attribute's type, value and offset (of its type); raises `StunParseError`."""
    found: list[tuple[int, bytes, int]] = []
    position = HEADER_SIZE
    end = len(data)
    while position < end:
        if end - position < _ATTRIBUTE.size:
            raise StunParseError(Reason.TRUNCATED_ATTRIBUTE, f"{end - position} bytes left")
        attribute_type, length = _ATTRIBUTE.unpack_from(data, position)
        start = position + _ATTRIBUTE.size
        following = start + _padded(length)
        if following > end:
            raise StunParseError(
                Reason.TRUNCATED_ATTRIBUTE,
                f"attribute 0x{attribute_type:04x} of {length} bytes at offset {position}",
            )
        found.append((attribute_type, bytes(data[start : start + length]), position))
        position = following
    return found


def _check_fingerprint(data: bytes, value: bytes, position: int) -> None:
    if len(value) != 4:
        raise StunParseError(Reason.FINGERPRINT, f"FINGERPRINT of {len(value)} bytes")
    if position + _FINGERPRINT_SIZE != len(data):
        raise StunParseError(Reason.FINGERPRINT, "an attribute follows FINGERPRINT")
    if int.from_bytes(value, "big") != _crc(data[:position]):
        raise StunParseError(Reason.FINGERPRINT, "FINGERPRINT does not match")


def _crc(data: bytes) -> int:
    return (zlib.crc32(data) ^ FINGERPRINT_XOR) & 0xFFFFFFFF


def _padded(length: int) -> int:
    return (length + 3) & ~3


def _message(
    message_type: int,
    transaction_id: bytes,
    attributes: Sequence[tuple[int, bytes]],
    fingerprint: bool,
) -> bytes:
    if len(transaction_id) != TRANSACTION_ID_SIZE:
        raise ValueError("a transaction id is 12 bytes")
    body = bytearray()
    for attribute_type, value in attributes:
        if not 0 <= attribute_type <= 0xFFFF or len(value) > 0xFFFF:
            raise ValueError(f"attribute 0x{attribute_type:x} of {len(value)} bytes")
        body += _ATTRIBUTE.pack(attribute_type, len(value))
        body += value
        body += bytes(_padded(len(value)) - len(value))
    length = len(body) + (_FINGERPRINT_SIZE if fingerprint else 0)
    message = bytearray(_HEADER.pack(message_type, length, MAGIC_COOKIE, transaction_id))
    message += body
    if fingerprint:
        crc = _crc(bytes(message))
        message += _ATTRIBUTE.pack(FINGERPRINT, 4) + crc.to_bytes(4, "big")
    return bytes(message)


def _xor_address(ip: IPAddress, port: int, transaction_id: bytes) -> bytes:
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port {port}")
    x_port = port ^ (MAGIC_COOKIE >> 16)
    if isinstance(ip, ipaddress.IPv4Address):
        family, key = _FAMILY_IPV4, _COOKIE_BYTES
    else:
        family, key = _FAMILY_IPV6, _COOKIE_BYTES + transaction_id
    return struct.pack("!BBH", 0, family, x_port) + _xor(ip.packed, key)


def _xor(data: bytes, key: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, key, strict=True))


def _unxor_address(value: bytes, transaction_id: bytes) -> tuple[IPAddress, int]:
    if len(value) < 4:
        raise StunParseError(Reason.TRUNCATED_ATTRIBUTE, "XOR-MAPPED-ADDRESS too short")
    _, family, x_port = struct.unpack_from("!BBH", value)
    port = x_port ^ (MAGIC_COOKIE >> 16)
    if family == _FAMILY_IPV4 and len(value) == 8:
        return ipaddress.IPv4Address(_xor(value[4:], _COOKIE_BYTES)), port
    if family == _FAMILY_IPV6 and len(value) == 20:
        return ipaddress.IPv6Address(_xor(value[4:], _COOKIE_BYTES + transaction_id)), port
    raise StunParseError(
        Reason.TRUNCATED_ATTRIBUTE, f"XOR-MAPPED-ADDRESS family {family}, {len(value)} bytes"
    )


def _describe(message_type: int) -> str:
    """Method and class of a message type, e.g. ``method 0x001 indication``."""
    t = message_type
    method = (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2)
    kind = ((t & 0x0010) >> 4) | ((t & 0x0100) >> 7)
    classes = ("request", "indication", "success response", "error response")
    return f"method 0x{method:03x} {classes[kind]}"
