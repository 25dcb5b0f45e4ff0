"""DISCOVER cookies: opaque to clients, self-contained, so the daemon keeps no state.

A cookie is ``01 || epoch (8 bytes) || position (8 bytes, big-endian) || namespace``:
the registry change a client has seen up to, in one namespace (empty: all of them).
The epoch names one registry's life; a cookie from an earlier one restarts at 0, as
everything held now was registered since.
"""

from __future__ import annotations

from typing import Final

from rendezvous.model import Refused, Status

_VERSION: Final = b"\x01"
_HEADER: Final = 17
MAX_COOKIE_BYTES: Final = _HEADER + 1024


def encode_cookie(epoch: bytes, position: int, namespace: str) -> bytes:
    """The cookie for having seen every change up to ``position`` in ``namespace``."""
    return _VERSION + epoch + position.to_bytes(8, "big") + namespace.encode()


def decode_cookie(cookie: bytes, epoch: bytes, namespace: str) -> int:
    """The position a cookie carries; `Refused` (E_INVALID_COOKIE) if it is not ours
    or was issued for another namespace."""
    if len(cookie) < _HEADER or len(cookie) > MAX_COOKIE_BYTES or cookie[:1] != _VERSION:
        raise Refused(Status.INVALID_COOKIE, "not a cookie of this daemon")
    if cookie[_HEADER:] != namespace.encode():
        raise Refused(Status.INVALID_COOKIE, "cookie was issued for another namespace")
    if cookie[1:9] != epoch:
        return 0
    return int.from_bytes(cookie[9:_HEADER], "big")
