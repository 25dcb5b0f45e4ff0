"""libp2p peer ids: parse and print their text forms (peer-ids/peer-ids.md).

A peer id is a multihash of a serialized ``PublicKey``: the identity multihash
(``00 len key``) when the key serializes to at most 42 bytes, else sha2-256
(``12 20 digest``). Its text is either the legacy base58btc multihash
(``Qm…``, ``12D3KooW…``, ``16Uiu2…``) or a CIDv1 with codec ``libp2p-key`` in a
multibase (``b…`` base32, ``z…`` base58btc, ``f…`` base16).
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable

__all__ = [
    "MAX_INLINE_KEY_LENGTH",
    "MAX_PEER_ID_TEXT",
    "Base58Error",
    "InvalidPeerId",
    "base58_decode",
    "base58_decode_portable",
    "base58_encode",
    "parse_peer_id",
    "peer_id_to_cid",
    "peer_id_to_text",
    "validate_peer_id",
]

MAX_INLINE_KEY_LENGTH = 42
"""A serialized public key up to this size is inlined with the identity multihash."""

MAX_PEER_ID_TEXT = 128
"""Longer text is refused before any decoding (the longest valid form is 93 chars)."""

_IDENTITY = 0x00
_SHA2_256 = 0x12
_SHA2_256_LENGTH = 32
_CID_V1 = 0x01
_LIBP2P_KEY = 0x72
_CID_PREFIX = bytes((_CID_V1, _LIBP2P_KEY))

# PublicKey protobuf: field 1 (KeyType) tag 0x08, field 2 (bytes) tag 0x12.
_KEY_TYPE_TAG = 0x08
_KEY_DATA_TAG = 0x12
# Key types that fit the identity multihash, and the size of their raw key.
_INLINE_KEY_SIZES = {1: 32, 2: 33}  # Ed25519, Secp256k1 (compressed)

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {char: index for index, char in enumerate(_B58_ALPHABET)}
_B58_DIGITS = bytes(_B58_INDEX.get(chr(byte), 0xFF) for byte in range(256))
"""ASCII byte to digit value (0xFF: not base58btc), for `bytes.translate`."""
_B58_ENCODE_GROUP = 58**10
_B58_PAIRS = tuple(a + b for a in _B58_ALPHABET for b in _B58_ALPHABET)
"""The two digits of each value below 58 * 58 (3364)."""
_B32_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz234567")
_B32_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
_B16_LOWER = frozenset("0123456789abcdef")
_B16_UPPER = frozenset("0123456789ABCDEF")


class InvalidPeerId(ValueError):
    """The text or bytes are not a valid libp2p peer id."""


class Base58Error(ValueError):
    """The text is not base58btc."""


def base58_encode(data: bytes) -> str:
    """Encode bytes as base58btc; each leading zero byte becomes ``1``."""
    zeros = len(data) - len(data.lstrip(b"\x00"))
    number = int.from_bytes(data, "big")
    groups: list[int] = []
    while number:  # one big-number step per ten digits
        number, group = divmod(number, _B58_ENCODE_GROUP)
        groups.append(group)
    pairs = _B58_PAIRS
    parts: list[str] = []
    for group in reversed(groups):  # ten digits from small integers, two at a time
        group, e = divmod(group, 3364)
        group, d = divmod(group, 3364)
        group, c = divmod(group, 3364)
        a, b = divmod(group, 3364)
        parts.append(pairs[a] + pairs[b] + pairs[c] + pairs[d] + pairs[e])
    # The first group's leading zero digits ("1") are padding, not leading zero bytes.
    return "1" * zeros + "".join(parts).lstrip("1")


def base58_decode(text: str) -> bytes:
    """Decode base58btc text; each leading ``1`` becomes a zero byte.

    Raises `Base58Error` on a character outside the alphabet. The cost grows faster
    than the length: callers bound untrusted input first. Decoded natively by
    ``based58`` (a peer id in about half the time) where it is installed, else by
    `base58_decode_portable`, which also words every refusal.
    """
    try:
        return _decode_ascii(text.encode())
    except ValueError:  # not base58btc: decoded again, to say why
        return base58_decode_portable(text)


def base58_decode_portable(text: str) -> bytes:
    """`base58_decode` in Python alone."""
    digits = text.encode("ascii", "replace").translate(_B58_DIGITS)
    if 0xFF in digits:
        bad = next(char for char in text if char not in _B58_INDEX)
        raise Base58Error(f"not a base58btc character: {bad!r}")
    # One byte per digit, read as one big integer in base 256; each step then makes
    # lanes twice as wide, turning "high * 256**k + low" into "high * 58**k + low"
    # in every lane at once (see `_b58_steps`).
    number = int.from_bytes(digits, "big")
    if 32 < len(digits) <= 64:  # every legacy peer id: the six steps written out
        number -= (number >> 8 & _B58_MASK_0) * _B58_FACTOR_0
        number -= (number >> 16 & _B58_MASK_1) * _B58_FACTOR_1
        number -= (number >> 32 & _B58_MASK_2) * _B58_FACTOR_2
        number -= (number >> 64 & _B58_MASK_3) * _B58_FACTOR_3
        number -= (number >> 128 & _B58_MASK_4) * _B58_FACTOR_4
        number -= (number >> 256 & _B58_MASK_5) * _B58_FACTOR_5
    else:
        for half, mask, factor in _b58_steps(len(digits)):
            number -= (number >> half & mask) * factor
    data = number.to_bytes((number.bit_length() + 7) // 8, "big")
    if text.startswith("1"):
        return b"\x00" * (len(text) - len(text.lstrip("1"))) + data
    return data


def _b58_steps(count: int) -> tuple[tuple[int, int, int], ...]:
    """The steps that turn ``count`` digits, one a byte, into the number they write.

    Step ``k`` sees lanes of ``2 * 8 * 2**k`` bits, each holding two values below
    ``58 ** 2**k`` (which fits ``8 * 2**k`` bits), ``high`` in its upper half and
    ``low`` in its lower one: subtracting ``high * (2**half - 58 ** 2**k)`` leaves
    ``high * 58 ** 2**k + low`` in the lane. The product fits the lane and the result
    is not negative, so lanes never carry or borrow into each other. Missing leading
    digits are zeros. After ``log2(count)`` steps one lane holds the whole number.
    """
    levels = (count - 1).bit_length() if count > 1 else 0
    if levels < len(_B58_STEPS):
        return _B58_STEPS[levels]
    return _b58_make_steps(levels)


def _b58_make_steps(levels: int) -> tuple[tuple[int, int, int], ...]:
    """`_b58_steps` for ``2**levels`` digits: (half lane bits, mask of the lanes' upper
    halves moved down, factor) per step."""
    width = 8 << levels
    steps = []
    for level in range(levels):
        half = 8 << level
        lanes_ones = ((1 << width) - 1) // ((1 << 2 * half) - 1)
        mask = lanes_ones * ((1 << half) - 1)
        steps.append((half, mask, (1 << half) - 58 ** (1 << level)))
    return tuple(steps)


_B58_STEPS = tuple(_b58_make_steps(levels) for levels in range(8))
"""The steps for up to 128 digits, every peer id text's size (`MAX_PEER_ID_TEXT`)."""
(
    (_, _B58_MASK_0, _B58_FACTOR_0),
    (_, _B58_MASK_1, _B58_FACTOR_1),
    (_, _B58_MASK_2, _B58_FACTOR_2),
    (_, _B58_MASK_3, _B58_FACTOR_3),
    (_, _B58_MASK_4, _B58_FACTOR_4),
    (_, _B58_MASK_5, _B58_FACTOR_5),
) = _B58_STEPS[6]


def validate_peer_id(multihash: bytes) -> None:
    """Check that bytes are a peer id multihash, raising `InvalidPeerId` if not.

    Accepts ``12 20 <32 bytes>`` (sha2-256) and ``00 <len> <PublicKey>``
    (identity) whose digest is a deterministically serialized Ed25519 or
    secp256k1 ``PublicKey``: RSA and ECDSA keys never fit in 42 bytes.
    """
    if len(multihash) < 2:
        raise InvalidPeerId("peer id multihash too short")
    code, length = multihash[0], multihash[1]
    if code == _SHA2_256:
        if length != _SHA2_256_LENGTH:
            raise InvalidPeerId(f"sha2-256 peer id with a {length}-byte digest")
        if len(multihash) != 2 + _SHA2_256_LENGTH:
            raise InvalidPeerId("sha2-256 peer id digest length mismatch")
        return
    if code != _IDENTITY:
        raise InvalidPeerId(f"peer id multihash code {code:#x} is neither identity nor sha2-256")
    if length > MAX_INLINE_KEY_LENGTH:
        raise InvalidPeerId(f"identity peer id longer than {MAX_INLINE_KEY_LENGTH} bytes")
    if len(multihash) != 2 + length:
        raise InvalidPeerId("identity peer id digest length mismatch")
    key = multihash[2:]
    if len(key) < 4 or key[0] != _KEY_TYPE_TAG or key[2] != _KEY_DATA_TAG:
        raise InvalidPeerId("identity peer id does not hold a serialized PublicKey")
    size = _INLINE_KEY_SIZES.get(key[1])
    if size is None:
        raise InvalidPeerId(f"identity peer id with unsupported key type {key[1]}")
    if key[3] != size or len(key) != 4 + size:
        raise InvalidPeerId("identity peer id key data has the wrong length")


def parse_peer_id(text: str) -> bytes:
    """Parse a peer id in legacy base58btc or CIDv1 text form to its multihash."""
    if not text:
        raise InvalidPeerId("empty peer id")
    if len(text) > MAX_PEER_ID_TEXT:
        raise InvalidPeerId(f"peer id text longer than {MAX_PEER_ID_TEXT} characters")
    if text[0] == "1" or text.startswith("Qm"):
        multihash = _decode_base58(text)
        if len(multihash) == 34 and multihash.startswith(b"\x12\x20"):
            return multihash  # sha2-256, all that `validate_peer_id` would check
    else:
        cid = _decode_multibase(text)
        if not cid.startswith(_CID_PREFIX):
            raise InvalidPeerId("peer id CID is not version 1 with codec libp2p-key (0x72)")
        multihash = cid[len(_CID_PREFIX) :]
    validate_peer_id(multihash)
    return multihash


def peer_id_to_text(multihash: bytes) -> str:
    """The legacy base58btc text of a peer id multihash."""
    return _peer_id_text(bytes(multihash))


@functools.lru_cache(maxsize=1024)
def _peer_id_text(multihash: bytes) -> str:
    """`peer_id_to_text`, the latest ones remembered: a connection's peer id is written
    in several places (labels, log lines, the registrations it makes)."""
    validate_peer_id(multihash)
    return base58_encode(multihash)


def peer_id_to_cid(multihash: bytes) -> str:
    """The CIDv1 text (multibase base32, ``b…``) of a peer id multihash."""
    validate_peer_id(multihash)
    encoded = base64.b32encode(_CID_PREFIX + multihash).decode("ascii")
    return "b" + encoded.rstrip("=").lower()


def _decode_ascii_portable(data: bytes) -> bytes:
    return base58_decode_portable(data.decode())


_decode_ascii: Callable[[bytes], bytes]
"""Decodes base58btc bytes, raising `ValueError` (unworded) if they are not."""
try:
    from based58 import b58decode as _decode_ascii
except ImportError:  # pragma: no cover - a platform without its wheel
    _decode_ascii = _decode_ascii_portable


def _decode_base58(text: str) -> bytes:
    try:
        return base58_decode(text)
    except Base58Error as error:
        raise InvalidPeerId(str(error)) from None


def _decode_multibase(text: str) -> bytes:
    prefix, body = text[0], text[1:]
    if not body:
        raise InvalidPeerId("empty multibase body")
    if prefix == "z":
        return _decode_base58(body)
    if prefix in "bB":
        alphabet = _B32_LOWER if prefix == "b" else _B32_UPPER
        if not alphabet.issuperset(body) or len(body) % 8 in (1, 3, 6):
            raise InvalidPeerId("invalid base32 peer id")
        padded = body.upper() + "=" * (-len(body) % 8)
        try:
            return base64.b32decode(padded)
        except binascii.Error:  # pragma: no cover - excluded by the checks above
            raise InvalidPeerId("invalid base32 peer id") from None
    if prefix in "fF":
        alphabet = _B16_LOWER if prefix == "f" else _B16_UPPER
        if not alphabet.issuperset(body) or len(body) % 2:
            raise InvalidPeerId("invalid base16 peer id")
        return bytes.fromhex(body)
    raise InvalidPeerId(f"unsupported peer id multibase prefix {prefix!r}")
