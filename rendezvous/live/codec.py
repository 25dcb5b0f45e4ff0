"""Live-dialect messages to domain requests and back, with every validation.

Decoding uses the generated protobuf classes, but for REGISTER entries laid out as
protobuf writers lay out the usual one (a namespace, a peer id, addresses: what every
client sends), which are read by hand into the same fields (`_entry_fields`): reading
fields out of protobuf's objects cost more than the rest of a new registration's checks.
Encoding of registrations is done by hand from cached entry bytes, so one registration
is serialised once however many announcements, snapshots and DISCOVER replies carry it.

A session that registers again and again (to refresh or move its peers) may keep an
entry cache: the exact bytes of a ``Message.register`` entry (or of a whole REGISTER of
one short entry and no request id, the usual one) to the request protobuf and
validation made of them. A REGISTER laid out as protobuf writers do
(``08 00``, then ``12 len entry`` fields and at most a ``request_id``) whose entries are
all cached is then answered without protobuf; anything else takes the protobuf path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from rendezvous.addrs import InvalidMultiaddr, validate_multiaddr
from rendezvous.entry import entry_bytes, field
from rendezvous.limits import Limits
from rendezvous.model import Announcement, Change, Peer, Refused, Registration, Status
from rendezvous.pb.live_pb2 import Message
from rendezvous.peerid import InvalidPeerId, parse_peer_id
from rendezvous.registry import Session
from rendezvous.store.base import Store
from rendezvous.varint import VarintError, decode_uvarint, encode_uvarint

REGISTER = Message.REGISTER
UNREGISTER = Message.UNREGISTER
RENDEZVOUS = Message.RENDEZVOUS
DISCOVER = Message.DISCOVER
ERROR = Message.ERROR

_CACHE_SIZE = 4096
"""Peer ids and addresses parsed recently: enough for the ids a busy daemon sees again
and again, small beside what its sessions hold (each session caches its own entries).

Kept in two generations of plain dicts, newest first: when the newest holds half of
this it becomes the older one and the older is dropped, and what is found in the older
one moves back to the newest, so a stream of new ids does not evict the ones in use
(an insertion costs a third of an `OrderedDict`'s with its eviction)."""
_HEADER_TABLE = 2048
DISCOVER_REPLY_BYTES = 1024 * 1024
"""The largest answer to a DISCOVER, which is one message (about 10,000 typical
registrations; ``--discover-max-limit`` is 1000 by default)."""
_REGISTER_HEADERS = [b"\x12" + encode_uvarint(length) for length in range(_HEADER_TABLE)]
"""The tag and length of a ``Message.register`` entry, for the usual entry sizes."""
_KIND_NAMES = {
    REGISTER: "register",
    UNREGISTER: "unregister",
    RENDEZVOUS: "rendezvous",
    DISCOVER: "discover",
}


@dataclass(slots=True)
class LiveRegisterRequest:
    namespace: str
    peer: Peer

    def submit(self, store: Store, session: Session, request_id: int | None) -> None:
        store.register(session, self.namespace, self.peer, request_id)


@dataclass(slots=True)
class LiveUnregisterRequest:
    namespace: str
    key: bytes

    def submit(self, store: Store, session: Session, request_id: int | None) -> None:
        store.unregister(session, self.namespace, self.key, request_id)


@dataclass(slots=True)
class LiveRendezvousRequest:
    namespace: str

    def submit(self, store: Store, session: Session, request_id: int | None) -> None:
        store.subscribe(session, self.namespace, request_id)


@dataclass(slots=True)
class LiveDiscoverRequest:
    namespace: str
    limit: int

    def submit(self, store: Store, session: Session, request_id: int | None) -> None:
        store.discover(session, self.namespace, self.limit, request_id)


Request = LiveRegisterRequest | LiveUnregisterRequest | LiveRendezvousRequest | LiveDiscoverRequest


@dataclass(slots=True)
class Parsed:
    """One frame's requests, in order, and the request id to copy into replies."""

    kind: str | None
    """The message type's name in lower case, None when the frame is not a known message."""
    request_id: int | None
    requests: list[Request | Refused]


class EntryCache(dict[bytes, LiveRegisterRequest]):
    """A session's ``Message.register`` entries (exact bytes; for the usual REGISTER,
    the whole frame: no entry is cut out of it) and what they were parsed to, and the
    peer ids (text to key) of those entries: a byte-identical re-send is not
    parsed again, and a refresh of the same peer with other addresses (what clients
    send when their addresses change) does not decode its peer id again."""

    __slots__ = ("peer_ids",)

    def __init__(self) -> None:
        super().__init__()
        self.peer_ids: dict[str, bytes] = {}


_REGISTER_START = b"\x08\x00\x12"
"""``type = REGISTER``, then the tag of a ``register`` entry."""


def _cached_registers(frame: bytes, entries: EntryCache) -> Parsed | None:
    """The REGISTER in ``frame`` read from the cache, or None: the layout is not the
    usual one, or an entry is not cached (protobuf and the checks must see it)."""
    get = entries.get
    requests: list[Request | Refused] = []
    request_id = None
    end = len(frame)
    offset = 2
    try:
        while offset < end:
            tag = frame[offset]
            if tag == 0x12:
                length = frame[offset + 1]
                if length < 0x80:
                    offset += 2
                else:
                    decoded = decode_uvarint(frame, offset + 1)
                    if decoded is None:
                        return None
                    length, offset = decoded
                stop = offset + length
                if stop > end:
                    return None
                request = get(frame[offset:stop])
                if request is None:
                    return None
                requests.append(request)
                offset = stop
            elif tag == 0x38:
                decoded = decode_uvarint(frame, offset + 1)
                if decoded is None:
                    return None
                request_id, offset = decoded
            else:
                return None
    except (IndexError, VarintError):
        return None
    return Parsed("register", request_id, requests)


def _scan_entries(frame: bytes) -> tuple[list[bytes], int | None] | None:
    """The ``register`` entries and request id of a REGISTER frame, if laid out as
    `_cached_registers` reads them (protobuf would read the same entries, in order, and
    the last request id)."""
    found: list[bytes] = []
    request_id = None
    end = len(frame)
    offset = 2
    try:
        while offset < end:
            tag = frame[offset]
            decoded = decode_uvarint(frame, offset + 1)
            if decoded is None or tag not in (0x12, 0x38):
                return None
            value, offset = decoded
            if tag == 0x12:
                found.append(frame[offset : offset + value])
                offset += value
            else:
                request_id = value
    except (IndexError, VarintError):
        return None
    return (found, request_id) if offset == end else None


def _entry_fields(data: bytes, start: int = 0) -> tuple[str, str, tuple[bytes, ...]] | None:
    """The namespace, peer id and addresses of the ``register`` entry that is ``data``
    from ``start`` on, laid out as protobuf writers lay out the usual one, or None
    (protobuf must read it): ``ns``, then ``peer`` with its ``id`` and any ``addrs``
    and no record, each field once and in that order, lengths in one byte, text that is
    UTF-8. Protobuf reads the same from such bytes."""
    try:
        ns_length = data[start + 1]
        ns_end = start + 2 + ns_length
        peer_length = data[ns_end + 1]
        peer = ns_end + 2
        id_length = data[peer + 1]
        offset = peer + 2 + id_length
        end = len(data)
        if (
            data[start] != 0x0A
            or ns_length >= 0x80
            or data[ns_end] != 0x12
            or peer_length >= 0x80
            or peer + peer_length != end
            or data[peer] != 0x0A
            or id_length >= 0x80
            or offset > end
        ):
            return None
        text = data[peer + 2 : offset]
        addrs: list[bytes] = []
        while offset < end:
            length = data[offset + 1]
            first = offset + 2
            if data[offset] != 0x12 or length >= 0x80 or first + length > end:
                return None
            offset = first + length
            addrs.append(data[first:offset])
        return data[start + 2 : ns_end].decode(), text.decode(), tuple(addrs)
    except (IndexError, UnicodeDecodeError):
        return None


class LiveCodec:
    """Validates requests against `Limits` and encodes replies and pushes."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._short_namespace = limits.max_namespace_bytes // 4
        """Namespaces this long or shorter fit in the limit whatever their characters."""
        self._peer_ids: dict[str, bytes] = {}
        self._older_peer_ids: dict[str, bytes] = {}
        self._valid_addrs: dict[bytes, None] = {}
        self._older_valid_addrs: dict[bytes, None] = {}
        self._entry_cache_size = limits.max_registrations_per_session
        """A session's entry cache is emptied when it reaches this size."""

    # -- decoding ---------------------------------------------------------

    def parse(self, frame: bytes, entries: EntryCache | None = None) -> Parsed:
        """Decode one frame; a refusal of the whole frame is `Parsed` with one `Refused`.

        With ``entries`` (a session's entry cache), a REGISTER whose entries are all
        there is read from it, and the entries of one that is not are added to it.
        """
        one = self.parse_register(frame, entries)
        if one is not None:
            return Parsed("register", None, [one])
        return self.parse_general(frame, entries)

    def parse_general(self, frame: bytes, entries: EntryCache | None = None) -> Parsed:
        """`parse` of a frame that `parse_register` does not read."""
        if not frame.startswith(_REGISTER_START):
            return self._parse(frame)
        request_id: int | None = None
        length = len(frame) - 4
        if 0 <= length < 0x80 and frame[3] == length:  # one short entry, laid out otherwise
            items = [frame[4:]]
        else:
            if entries is not None:
                cached = _cached_registers(frame, entries)
                if cached is not None:
                    return cached
            scanned = _scan_entries(frame)
            if scanned is None:
                return self._parse(frame, None if entries is None else entries.peer_ids)
            items, request_id = scanned
        known = None if entries is None else entries.peer_ids
        parsed = self._parse_registers(frame, items, request_id, known)
        if entries is not None and parsed.kind == "register":
            for item, result in zip(items, parsed.requests, strict=True):
                if type(result) is LiveRegisterRequest:
                    self._remember(entries, item, result.peer.id, result)
        return parsed

    def parse_register(
        self, frame: bytes, entries: EntryCache | None = None
    ) -> LiveRegisterRequest | Refused | None:
        """The request of a REGISTER of one short entry laid out as usual and no request
        id (what clients send most), read by hand; None for any other frame, which
        `parse` reads. ``entries`` as for `parse`."""
        length = len(frame) - 4
        if not (0 <= length < 0x80 and frame[3] == length and frame.startswith(_REGISTER_START)):
            return None
        if entries is not None:
            request = entries.get(frame)
            if request is not None:
                return request
        fields = _entry_fields(frame, 4)
        if fields is None:
            return None
        namespace, text, addrs = fields
        known = None if entries is None else entries.peer_ids
        read = self._register_request(namespace, text, addrs, None, known)
        if entries is not None and type(read) is LiveRegisterRequest:
            self._remember(entries, frame, text, read)
        return read

    def _remember(
        self, entries: EntryCache, item: bytes, text: str, request: LiveRegisterRequest
    ) -> None:
        """Keep ``item`` (an entry, or a whole frame of one) and its request, whose peer
        id is ``text``, in a session's cache (emptied when full)."""
        if len(entries) >= self._entry_cache_size:
            entries.clear()
            entries.peer_ids.clear()
        entries[item] = request
        entries.peer_ids[text] = request.peer.key

    def _parse_registers(
        self,
        frame: bytes,
        items: list[bytes],
        request_id: int | None,
        known: dict[str, bytes] | None,
    ) -> Parsed:
        """The REGISTER ``frame`` whose entries are ``items``: read here when they are all
        laid out as usual (`_entry_fields`), else by protobuf."""
        requests: list[Request | Refused] = []
        for item in items:
            fields = _entry_fields(item)
            if fields is None:
                return self._parse(frame, known)
            namespace, text, addrs = fields
            requests.append(self._register_request(namespace, text, addrs, None, known))
        return Parsed("register", request_id, requests)

    def _parse(self, frame: bytes, known: dict[str, bytes] | None = None) -> Parsed:
        message = Message()
        try:
            message.ParseFromString(frame)
        except DecodeError:
            return Parsed(
                None, None, [Refused(Status.INVALID_MESSAGE, "malformed protobuf message")]
            )
        request_id = message.request_id if message.HasField("request_id") else None
        kind = message.type
        if kind == REGISTER and not message.HasField("type") and _has_unknown_type(message):
            return Parsed(
                None, request_id, [Refused(Status.INVALID_MESSAGE, "unknown message type")]
            )
        requests: list[Request | Refused]
        if kind == REGISTER:
            requests = [self._register(entry, known) for entry in message.register]
        elif kind == DISCOVER:
            requests = [self._discover(entry) for entry in message.discovery]
        elif kind == RENDEZVOUS:
            requests = [self._rendezvous(entry) for entry in message.rendezvous]
        elif kind == UNREGISTER:
            requests = [self._unregister(entry) for entry in message.unregister]
        else:
            refusal = Refused(Status.INVALID_MESSAGE, "clients cannot send ERROR")
            return Parsed("error", request_id, [refusal])
        name = _KIND_NAMES[kind]
        if not requests:
            requests = [Refused(Status.INVALID_MESSAGE, f"{name.upper()} with no entry")]
        return Parsed(name, request_id, requests)

    def _register(
        self, entry: Message.Register, known: dict[str, bytes] | None = None
    ) -> LiveRegisterRequest | Refused:
        """``known``: peer ids (text to key) the session registered before."""
        if not entry.HasField("peer"):
            try:
                self._namespace(entry.ns)
            except Refused as refusal:
                return refusal
            return Refused(Status.INVALID_PEER, "REGISTER without a peer")
        wire = entry.peer
        record = wire.signed_peer_record if wire.HasField("signed_peer_record") else None
        return self._register_request(entry.ns, wire.id, tuple(wire.addrs), record, known)

    def _register_request(
        self,
        ns: str | bytes,
        text: str | bytes,
        addrs: tuple[bytes, ...],
        record: bytes | None,
        known: dict[str, bytes] | None,
    ) -> LiveRegisterRequest | Refused:
        """A ``register`` entry's request, from its fields as read (a string field that
        is not UTF-8 comes as bytes), or why it is refused: its namespace, then its peer
        id, addresses and record are checked, in that order."""
        try:
            if type(ns) is str and 0 < len(ns) <= self._short_namespace:
                namespace = ns
            else:
                namespace = self._namespace(ns)
            key = None
            if type(text) is str:
                key = self._peer_ids.get(text)
                if key is None and known is not None:
                    key = known.get(text)
            if key is None:
                key = self._new_peer_id(text)
            if addrs:
                limits = self.limits
                if len(addrs) > limits.max_addrs_per_peer:
                    raise Refused(
                        Status.INVALID_PEER, f"more than {limits.max_addrs_per_peer} addresses"
                    )
                valid = self._valid_addrs
                for addr in addrs:
                    if addr not in valid:
                        self._check_addr(addr)
            if record is not None:
                limit = self.limits.max_signed_record_bytes
                if len(record) > limit:
                    raise Refused(
                        Status.INVALID_SIGNED_PEER_RECORD,
                        f"signed peer record over {limit} bytes",
                    )
        except Refused as refusal:
            return refusal
        assert type(text) is str  # (refused above if not)
        return LiveRegisterRequest(namespace, Peer(text, key, addrs, record))

    def _unregister(self, entry: Message.Unregister) -> LiveUnregisterRequest | Refused:
        try:
            namespace = self._namespace(entry.ns)
            if not entry.HasField("peer"):
                raise Refused(Status.INVALID_PEER, "UNREGISTER without a peer")
            key = self._peer_id(entry.peer.id)
        except Refused as refusal:
            return refusal
        return LiveUnregisterRequest(namespace, key)

    def _rendezvous(self, entry: Message.Rendezvous) -> LiveRendezvousRequest | Refused:
        try:
            return LiveRendezvousRequest(self._namespace(entry.ns))
        except Refused as refusal:
            return refusal

    def _discover(self, entry: Message.Discover) -> LiveDiscoverRequest | Refused:
        try:
            namespace = self._namespace(entry.ns)
        except Refused as refusal:
            return refusal
        limits = self.limits
        limit = entry.limit or limits.discover_default_limit
        return LiveDiscoverRequest(namespace, min(limit, limits.discover_max_limit))

    def _namespace(self, namespace: str | bytes) -> str:
        # upb hands out a proto2 string field that is not UTF-8 as bytes.
        if type(namespace) is str and 0 < len(namespace) <= self._short_namespace:
            return namespace
        if not isinstance(namespace, str):
            raise Refused(Status.INVALID_NAMESPACE, "namespace is not UTF-8")
        if not namespace:
            raise Refused(Status.INVALID_NAMESPACE, "namespace is empty")
        limit = self.limits.max_namespace_bytes
        if len(namespace.encode()) > limit:
            raise Refused(Status.INVALID_NAMESPACE, f"namespace is over {limit} bytes")
        return namespace

    def _peer_id(self, text: str | bytes) -> bytes:
        if isinstance(text, str):
            key = self._peer_ids.get(text)
            if key is not None:
                return key
        return self._new_peer_id(text)

    def _new_peer_id(self, text: str | bytes) -> bytes:
        """Parse a peer id the newest generation of the daemon-wide cache does not
        hold (unless the older one does), and remember it."""
        if not isinstance(text, str) or not text:
            raise Refused(Status.INVALID_PEER, "peer id is missing or not UTF-8")
        key = self._older_peer_ids.get(text)
        if key is None:
            try:
                key = parse_peer_id(text)
            except InvalidPeerId as e:
                raise Refused(Status.INVALID_PEER, f"invalid peer id: {e}") from None
        cache = self._peer_ids
        cache[text] = key
        if len(cache) >= _CACHE_SIZE // 2:
            self._older_peer_ids, self._peer_ids = cache, {}
        return key

    def _check_addr(self, addr: bytes) -> None:
        if len(addr) > self.limits.max_addr_bytes:
            raise Refused(Status.INVALID_PEER, f"address over {self.limits.max_addr_bytes} bytes")
        if addr not in self._older_valid_addrs:
            try:
                validate_multiaddr(addr)
            except InvalidMultiaddr as e:
                raise Refused(Status.INVALID_PEER, f"invalid multiaddr: {e}") from None
        valid = self._valid_addrs
        valid[addr] = None
        if len(valid) >= _CACHE_SIZE // 2:
            self._older_valid_addrs, self._valid_addrs = valid, {}

    # -- encoding ---------------------------------------------------------

    def announcement_frame(self, announcement: Announcement) -> bytes:
        """The framed REGISTER or UNREGISTER, encoded once per announcement."""
        frame = announcement.encoded
        if frame is None:
            entry = entry_bytes(announcement.registration)
            if announcement.change is Change.REGISTER:
                body = b"\x08\x00\x12" + encode_uvarint(len(entry)) + entry
            else:
                body = b"\x08\x01\x1a" + encode_uvarint(len(entry)) + entry
            frame = announcement.encoded = encode_uvarint(len(body)) + body
        return frame

    def registrations_frames(
        self, registrations: Iterable[Registration], request_id: int | None, *, empty: bool
    ) -> Iterator[bytes]:
        """REGISTER messages listing ``registrations``, split to stay under the frame limit
        (a RENDEZVOUS snapshot).

        With ``empty`` (a DISCOVER's answer), exactly one message, even when there is
        nothing to list, as the protocol says: up to `DISCOVER_REPLY_BYTES`, and the
        registrations past that are left out.
        """
        budget = DISCOVER_REPLY_BYTES if empty else self.limits.max_frame_bytes - 16
        tail = b"" if request_id is None else b"\x38" + encode_uvarint(request_id)
        parts = [b"\x08\x00"]
        size = 2 + len(tail)
        headers = _REGISTER_HEADERS
        for registration in registrations:
            entry = registration.wire or entry_bytes(registration)
            length = len(entry)
            header = headers[length] if length < _HEADER_TABLE else b"\x12" + encode_uvarint(length)
            item_size = len(header) + length
            if size + item_size > budget and len(parts) > 1:
                if empty:
                    break
                yield self._frame(parts, tail)
                parts = [b"\x08\x00"]
                size = 2 + len(tail)
            parts.append(header)
            parts.append(entry)
            size += item_size
        if len(parts) > 1 or empty:
            yield self._frame(parts, tail)

    @staticmethod
    def _frame(parts: list[bytes], tail: bytes) -> bytes:
        parts.append(tail)
        body = b"".join(parts)
        return encode_uvarint(len(body)) + body

    @staticmethod
    def error_frame(status: int, text: str, request_id: int | None) -> bytes:
        error = b"\x08" + encode_uvarint(status)
        if text:
            error += field(2, 2, text.encode())
        body = b"\x08\x04" + field(6, 2, error)
        if request_id is not None:
            body += b"\x38" + encode_uvarint(request_id)
        return encode_uvarint(len(body)) + body


def _has_unknown_type(message: Message) -> bool:
    fields = UnknownFieldSet(message)
    return any(fields[i].field_number == 1 for i in range(len(fields)))
