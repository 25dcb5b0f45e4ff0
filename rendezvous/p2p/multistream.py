"""multistream-select 1.0.0: agree on one protocol over a fresh byte stream.

Both negotiators are pure: they are fed the bytes that arrived and return the
bytes to send. Once `selected` is set, `leftover` holds the bytes that arrived
after the negotiation and belong to the selected protocol.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

from rendezvous.varint import VarintError, decode_uvarint, encode_uvarint

PROTOCOL_ID = "/multistream/1.0.0"
NOT_AVAILABLE = "na"
LIST = "ls"
MAX_MESSAGE_SIZE = 1024
"""Largest message, newline included (go-multistream refuses longer ones)."""
DEFAULT_MAX_REJECTED = 32
"""How many unsupported proposals a responder hears before giving up."""


class MultistreamError(Exception):
    """The peer broke multistream-select, or no protocol was agreed."""


@functools.lru_cache(maxsize=256)
def encode_message(text: str) -> bytes:
    """Frame one message: uvarint(length) + UTF-8 text + newline (the header and the
    protocol ids of every connection: remembered)."""
    body = text.encode("utf-8") + b"\n"
    if len(body) > MAX_MESSAGE_SIZE:
        raise MultistreamError(f"message of {len(body)} bytes exceeds {MAX_MESSAGE_SIZE}")
    return encode_uvarint(len(body)) + body


class _MessageReader:
    """Split a byte stream into multistream messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_message(self) -> str | None:
        """The next complete message without its newline, or None if incomplete."""
        try:
            decoded = decode_uvarint(self._buffer)
        except VarintError as exc:
            raise MultistreamError("malformed message length") from exc
        if decoded is None:
            return None
        length, start = decoded
        if length == 0 or length > MAX_MESSAGE_SIZE:
            raise MultistreamError(f"message length {length} out of range")
        end = start + length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[start:end])
        del self._buffer[:end]
        if body[-1:] != b"\n":
            raise MultistreamError("message does not end with a newline")
        try:
            return body[:-1].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MultistreamError("message is not UTF-8") from exc

    def take_rest(self) -> bytes:
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest


class _Negotiator:
    """State shared by both roles."""

    def __init__(self) -> None:
        self._reader = _MessageReader()
        self._header_received = False
        self._selected: str | None = None
        self._leftover = b""

    @property
    def selected(self) -> str | None:
        """The agreed protocol, once negotiation succeeded."""
        return self._selected

    @property
    def leftover(self) -> bytes:
        """Bytes received after the agreement; they belong to `selected`."""
        return self._leftover

    def _check_open(self) -> None:
        if self._selected is not None:
            raise MultistreamError("negotiation already finished")

    def _read_header(self) -> bool:
        """Consume the peer's header if it is complete; True once it has been seen."""
        if self._header_received:
            return True
        message = self._reader.next_message()
        if message is None:
            return False
        if message != PROTOCOL_ID:
            raise MultistreamError(f"unexpected header {message[:64]!r}")
        self._header_received = True
        return True

    def _finish(self, protocol: str) -> None:
        self._selected = protocol
        self._leftover = self._reader.take_rest()


class Initiator(_Negotiator):
    """The dialling side: proposes protocols in order until one is echoed."""

    def __init__(self, protocols: Sequence[str]) -> None:
        super().__init__()
        if not protocols:
            raise ValueError("at least one protocol must be proposed")
        self._proposals = [encode_message(protocol) for protocol in protocols]
        self._protocols = list(protocols)
        self._index = 0
        self._started = False

    @property
    def proposed(self) -> str:
        """The protocol currently awaiting an answer."""
        return self._protocols[self._index]

    def start(self) -> bytes:
        """The header and the first proposal, pipelined."""
        if self._started:
            raise MultistreamError("negotiation already started")
        self._started = True
        return encode_message(PROTOCOL_ID) + self._proposals[0]

    def feed(self, data: bytes) -> bytes:
        """Process received bytes; return the bytes to send next."""
        self._check_open()
        if not self._started:
            raise MultistreamError("start() must be called before feed()")
        self._reader.feed(data)
        out = bytearray()
        while self._selected is None and self._read_header():
            message = self._reader.next_message()
            if message is None:
                break
            if message == self.proposed:
                self._finish(message)
            elif message == NOT_AVAILABLE:
                if self._index + 1 >= len(self._protocols):
                    raise MultistreamError("the peer supports none of the proposed protocols")
                self._index += 1
                out += self._proposals[self._index]
            else:
                raise MultistreamError(f"unexpected answer {message[:64]!r}")
        return bytes(out)


class Responder(_Negotiator):
    """The listening side: echoes the first supported proposal, refuses others."""

    def __init__(
        self, protocols: Iterable[str], *, max_rejected: int = DEFAULT_MAX_REJECTED
    ) -> None:
        super().__init__()
        self._supported = frozenset(protocols)
        self._max_rejected = max_rejected
        self._rejected = 0

    def start(self) -> bytes:
        """Our header, which may be sent before hearing from the peer."""
        return encode_message(PROTOCOL_ID)

    def feed(self, data: bytes) -> bytes:
        """Process received bytes; return the answers to send."""
        self._check_open()
        self._reader.feed(data)
        out = bytearray()
        while self._selected is None and self._read_header():
            message = self._reader.next_message()
            if message is None:
                break
            if message in self._supported:
                out += encode_message(message)
                self._finish(message)
                break
            self._rejected += 1
            if self._rejected > self._max_rejected:
                raise MultistreamError("too many unsupported proposals")
            # "ls" is optional; like go, answer it with "na".
            out += _NA_MESSAGE
        return bytes(out)


_NA_MESSAGE = encode_message(NOT_AVAILABLE)
