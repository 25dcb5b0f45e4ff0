"""DISCOVER cookies: opaque to clients, self-contained, so the daemon keeps no state.

A cookie is ``01 || epoch (8 bytes) || position (8 bytes, big-endian) || namespace``:
the registry change a client has seen up to, in one namespace (empty: all of them).
The epoch names one registry's life; a cookie from an earlier one restarts at 0, as
everything held now was registered since. A position too large for 8 bytes (a Redis
Cluster's, one sequence number per partition) makes the cookie
``02 || epoch || length (2 bytes) || position || namespace``.
"""

from __future__ import annotations

from typing import Final

from rendezvous.model import Refused, Status

_VERSION: Final = b"\x01"
_WIDE: Final = b"\x02"
_HEADER: Final = 17
_MAX_POSITION: Final = 256
"""Bytes of a wide position at most."""
MAX_COOKIE_BYTES: Final = _HEADER + 1024 + _MAX_POSITION


def encode_cookie(epoch: bytes, position: int, namespace: str) -> bytes:
    """The cookie for having seen every change up to ``position`` in ``namespace``."""
    if position < 1 << 64:
        return _VERSION + epoch + position.to_bytes(8, "big") + namespace.encode()
    wide = position.to_bytes((position.bit_length() + 7) // 8, "big")
    return _WIDE + epoch + len(wide).to_bytes(2, "big") + wide + namespace.encode()


def decode_cookie(cookie: bytes, epoch: bytes, namespace: str) -> int:
    """The position a cookie carries; `Refused` (E_INVALID_COOKIE) if it is not ours
    or was issued for another namespace."""
    if len(cookie) < _HEADER or len(cookie) > MAX_COOKIE_BYTES:
        raise Refused(Status.INVALID_COOKIE, "not a cookie of this daemon")
    if cookie[:1] == _WIDE:
        size = int.from_bytes(cookie[9:11], "big")
        start, end = 11, 11 + size
        if not 8 < size <= _MAX_POSITION or len(cookie) < end:
            raise Refused(Status.INVALID_COOKIE, "not a cookie of this daemon")
    elif cookie[:1] == _VERSION:
        start, end = 9, _HEADER
    else:
        raise Refused(Status.INVALID_COOKIE, "not a cookie of this daemon")
    if cookie[end:] != namespace.encode():
        raise Refused(Status.INVALID_COOKIE, "cookie was issued for another namespace")
    if cookie[1:9] != epoch:
        return 0
    return int.from_bytes(cookie[start:end], "big")
