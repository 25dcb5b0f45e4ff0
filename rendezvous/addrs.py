"""Strict, cheap validation of untrusted binary multiaddrs, and their text form.

A binary multiaddr is a sequence of components: a uvarint protocol code, then
the value, whose size the protocol fixes (possibly zero) or which carries a
uvarint length prefix. Codes and sizes are those of multiformats/multiaddr
``protocols.csv``. ``memory`` (777) is left out on purpose: the table says
variable size where go and rust write 8 fixed bytes, and it never leaves a
process.
"""

from __future__ import annotations

from typing import Final

import multiaddr

from rendezvous.peerid import InvalidPeerId, validate_peer_id
from rendezvous.varint import VarintError, decode_uvarint, encode_uvarint

__all__ = [
    "MAX_COMPONENTS",
    "MAX_MULTIADDR_BYTES",
    "MAX_MULTIADDR_TEXT",
    "PROTOCOLS",
    "InvalidMultiaddr",
    "multiaddr_from_text",
    "multiaddr_to_text",
    "validate_multiaddr",
]

MAX_MULTIADDR_BYTES: Final = 1024
MAX_MULTIADDR_TEXT: Final = 2048
MAX_COMPONENTS: Final = 32

# Value kinds of variable-size protocols (fixed sizes are plain ints, in bytes).
_TEXT: Final = -1  # non-empty UTF-8 without "/"
_PATH: Final = -2  # non-empty UTF-8 (unix socket path)
_PEER: Final = -3  # a peer id multihash
_BYTES: Final = -4  # non-empty opaque bytes

PROTOCOLS: Final[dict[int, tuple[str, int]]] = {
    4: ("ip4", 4),
    6: ("tcp", 2),
    273: ("udp", 2),
    33: ("dccp", 2),
    41: ("ip6", 16),
    42: ("ip6zone", _TEXT),
    43: ("ipcidr", 1),
    53: ("dns", _TEXT),
    54: ("dns4", _TEXT),
    55: ("dns6", _TEXT),
    56: ("dnsaddr", _TEXT),
    132: ("sctp", 2),
    301: ("udt", 0),
    302: ("utp", 0),
    400: ("unix", _PATH),
    421: ("p2p", _PEER),
    444: ("onion", 12),
    445: ("onion3", 37),
    446: ("garlic64", _BYTES),
    447: ("garlic32", _BYTES),
    448: ("tls", 0),
    449: ("sni", _TEXT),
    454: ("noise", 0),
    460: ("quic", 0),
    461: ("quic-v1", 0),
    465: ("webtransport", 0),
    466: ("certhash", _BYTES),
    480: ("http", 0),
    481: ("http-path", _PATH),
    443: ("https", 0),
    477: ("ws", 0),
    478: ("wss", 0),
    479: ("p2p-websocket-star", 0),
    277: ("p2p-stardust", 0),
    275: ("p2p-webrtc-star", 0),
    276: ("p2p-webrtc-direct", 0),
    280: ("webrtc-direct", 0),
    281: ("webrtc", 0),
    290: ("p2p-circuit", 0),
}
"""code -> (name, value size in bytes, or a negative variable-size kind)."""

_UNIX: Final = 400
_SIZES_BY_NAME: Final = {name: size for name, size in PROTOCOLS.values()} | {"ipfs": _PEER}


class InvalidMultiaddr(ValueError):
    """The bytes or text are not a multiaddr this daemon accepts."""


def validate_multiaddr(data: bytes) -> None:
    """Raise `InvalidMultiaddr` unless ``data`` is a well-formed binary multiaddr."""
    end = len(data)
    if not end:
        raise InvalidMultiaddr("empty multiaddr")
    if end > MAX_MULTIADDR_BYTES:
        raise InvalidMultiaddr(f"multiaddr longer than {MAX_MULTIADDR_BYTES} bytes")
    offset = 0
    components = 0
    while offset < end:
        components += 1
        if components > MAX_COMPONENTS:
            raise InvalidMultiaddr(f"multiaddr has more than {MAX_COMPONENTS} components")
        code, offset = _read_uvarint(data, offset, "protocol code")
        spec = PROTOCOLS.get(code)
        if spec is None:
            raise InvalidMultiaddr(f"unknown multiaddr protocol code {code}")
        name, size = spec
        if size >= 0:
            offset += size
            if offset > end:
                raise InvalidMultiaddr(f"truncated /{name} value")
            continue
        length, offset = _read_uvarint(data, offset, f"/{name} length")
        start, offset = offset, offset + length
        if offset > end:
            raise InvalidMultiaddr(f"truncated /{name} value")
        _check_value(name, size, data[start:offset])


def multiaddr_to_text(data: bytes) -> str:
    """The text form (``/ip4/1.2.3.4/tcp/4001``) of a binary multiaddr."""
    validate_multiaddr(data)
    unix = _find_unix(data)
    if unix is None:
        return _library_to_text(data)
    start, value, end = unix
    path = data[value:end].decode("utf-8")
    head = _library_to_text(data[:start]) if start else ""
    tail = multiaddr_to_text(data[end:]) if end < len(data) else ""
    return f"{head}/unix/{path.removeprefix('/')}{tail}"


def multiaddr_from_text(text: str) -> bytes:
    """The binary form of a multiaddr in text, validated as `validate_multiaddr` does.

    A ``/unix`` path takes the rest of the text, leading ``/`` included, as go
    writes it (``/unix/tmp/sock`` holds ``/tmp/sock``).
    """
    if len(text) > MAX_MULTIADDR_TEXT:
        raise InvalidMultiaddr(f"multiaddr text longer than {MAX_MULTIADDR_TEXT} characters")
    if not text.startswith("/"):
        raise InvalidMultiaddr("multiaddr text must start with '/'")
    parts = text.split("/")[1:]
    position = 0
    while position < len(parts) and parts[position] != "unix":
        size = _SIZES_BY_NAME.get(parts[position])
        position += 1 if size == 0 else 2
    if position >= len(parts):
        data = _library_from_text(text)
    else:
        head = "/" + "/".join(parts[:position])
        path = ("/" + "/".join(parts[position + 1 :])).encode("utf-8", "surrogatepass")
        if path == b"/":
            raise InvalidMultiaddr("empty /unix path")
        prefix = _library_from_text(head) if position else b""
        data = prefix + encode_uvarint(_UNIX) + encode_uvarint(len(path)) + path
    validate_multiaddr(data)
    return data


def _library_to_text(data: bytes) -> str:
    try:
        return str(multiaddr.Multiaddr(data))
    except Exception as error:  # the library's errors are not all typed
        raise InvalidMultiaddr(f"cannot print multiaddr: {error}") from None


def _library_from_text(text: str) -> bytes:
    try:
        data = multiaddr.Multiaddr(text).to_bytes()
    except Exception as error:  # the library's errors are not all typed
        raise InvalidMultiaddr(f"cannot parse multiaddr {text!r}: {error}") from None
    if not isinstance(data, bytes):
        raise InvalidMultiaddr(f"cannot parse multiaddr {text!r}")
    return data


def _find_unix(data: bytes) -> tuple[int, int, int] | None:
    """(component start, value start, end) of the first /unix in validated bytes."""
    offset = 0
    while offset < len(data):
        start = offset
        code, offset = _read_uvarint(data, offset, "protocol code")
        size = PROTOCOLS[code][1]
        if size >= 0:
            offset += size
            continue
        length, offset = _read_uvarint(data, offset, "length")
        if code == _UNIX:
            return start, offset, offset + length
        offset += length
    return None


def _read_uvarint(data: bytes, offset: int, what: str) -> tuple[int, int]:
    try:
        decoded = decode_uvarint(data, offset)
    except VarintError:
        decoded = None
    if decoded is None:
        raise InvalidMultiaddr(f"truncated or overlong {what}")
    after = decoded[1]
    if after - offset > 1 and data[after - 1] == 0:
        raise InvalidMultiaddr(f"non-minimal varint for {what}")
    return decoded


def _check_value(name: str, kind: int, value: bytes) -> None:
    if not value:
        raise InvalidMultiaddr(f"empty /{name} value")
    if kind == _PEER:
        try:
            validate_peer_id(value)
        except InvalidPeerId as error:
            raise InvalidMultiaddr(f"/{name}: {error}") from None
    elif kind in (_TEXT, _PATH):
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidMultiaddr(f"/{name} value is not UTF-8") from None
        if kind == _TEXT and "/" in text:
            raise InvalidMultiaddr(f"/{name} value contains '/'")
