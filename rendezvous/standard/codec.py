"""Standard-dialect messages to domain requests and back, with every validation.

Two layouts share the message numbers: the final spec's (``Register.signedPeerRecord``,
a signed envelope, in field 2) and the pre-spec one py-libp2p and berty still send
(``Register.peer``, a ``PeerInfo{bytes id; repeated bytes addrs}``, in field 2). They
differ only inside a REGISTER: an envelope opens with a ``PublicKey`` message, a
PeerInfo with a peer id multihash, so the first bytes tell them apart.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from rendezvous.addrs import InvalidMultiaddr, validate_multiaddr
from rendezvous.limits import Limits
from rendezvous.model import Peer, RecordRegistration, Refused, Registration, Status
from rendezvous.p2p.envelope import InvalidEnvelope, open_peer_record
from rendezvous.pb import prespec_pb2, rendezvous_pb2
from rendezvous.peerid import InvalidPeerId, peer_id_to_text, validate_peer_id
from rendezvous.varint import encode_uvarint

Message = rendezvous_pb2.Message
OldMessage = prespec_pb2.Message

MAX_RESPONSE_BYTES = 1024 * 1024
"""A DISCOVER_RESPONSE is cut to fit (its cookie then points at the last one sent)."""

OPENED_RECORDS = 1024
"""How many signed peer records, by their exact bytes, are remembered as opened and
valid: a refresh sending the same bytes again skips the parsing and the signature."""


class Layout(enum.Enum):
    SPEC = "spec"
    PRESPEC = "prespec"


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    namespace: str
    peer: Peer
    ttl: int
    """The TTL to grant, in seconds (validated against the limits)."""


@dataclass(frozen=True, slots=True)
class UnregisterRequest:
    namespace: str


@dataclass(frozen=True, slots=True)
class DiscoverRequest:
    namespace: str
    """Empty: every namespace."""
    limit: int
    cookie: bytes | None


@dataclass(frozen=True, slots=True)
class Invalid:
    """A request refused while decoding; ``kind`` is its MessageType (None: unknown)."""

    kind: int | None
    refusal: Refused


Request = RegisterRequest | UnregisterRequest | DiscoverRequest | Invalid

_STATUSES = {
    Status.INVALID_NAMESPACE: Message.E_INVALID_NAMESPACE,
    Status.INVALID_SIGNED_PEER_RECORD: Message.E_INVALID_SIGNED_PEER_RECORD,
    Status.INVALID_PEER: Message.E_INVALID_SIGNED_PEER_RECORD,
    Status.INVALID_TTL: Message.E_INVALID_TTL,
    Status.INVALID_COOKIE: Message.E_INVALID_COOKIE,
    Status.NOT_AUTHORIZED: Message.E_NOT_AUTHORIZED,
    Status.INTERNAL_ERROR: Message.E_INTERNAL_ERROR,
    Status.UNAVAILABLE: Message.E_UNAVAILABLE,
    Status.LIMIT_EXCEEDED: Message.E_UNAVAILABLE,
}


def response_status(status: Status) -> int:
    """The ResponseStatus a refusal is sent as (ours above 1000 fold into the spec's)."""
    return _STATUSES.get(status, Message.E_INTERNAL_ERROR)


def is_peer_info(field: bytes) -> bool:
    """Whether REGISTER field 2 holds a pre-spec PeerInfo rather than an envelope."""
    # PeerInfo: 0a len <multihash: 00 or 12 ...>; Envelope: 0a len <PublicKey: 08 type ...>
    if len(field) < 3 or field[0] != 0x0A or field[1] >= 0x80:
        return False
    return field[2] in (0x00, 0x12)


class StandardCodec:
    """Parses requests for one authenticated peer and encodes the answers."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._opened: OrderedDict[bytes, Peer] = OrderedDict()
        """Records that opened and passed every check, and their peer (which the
        registrations made from the same bytes then share)."""
        self._register_responses: dict[tuple[Layout, int], bytes] = {}

    # -- decoding ---------------------------------------------------------

    def parse(self, data: bytes, identity: bytes) -> tuple[Layout | None, Request]:
        """One message from ``identity``; the layout is known only from a REGISTER."""
        message = Message()
        try:
            message.ParseFromString(data)
        except DecodeError:
            return None, Invalid(None, Refused(Status.INVALID_MESSAGE, "malformed message"))
        kind = message.type
        try:
            if kind == Message.REGISTER:
                return self._register(message, identity)
            if kind == Message.UNREGISTER:
                namespace = self._namespace(message.unregister.ns)
                return None, UnregisterRequest(namespace)
            if kind == Message.DISCOVER:
                return None, self._discover(message)
        except Refused as refusal:
            return None, Invalid(kind, refusal)
        return None, Invalid(None, Refused(Status.INVALID_MESSAGE, f"unexpected type {kind}"))

    def _register(self, message: Message, identity: bytes) -> tuple[Layout, Request]:
        register = message.register
        field = register.signedPeerRecord
        if is_peer_info(field):
            try:
                return Layout.PRESPEC, self._old_register(field, register, identity)
            except Refused as refusal:
                return Layout.PRESPEC, Invalid(Message.REGISTER, refusal)
        try:
            namespace = self._namespace(register.ns)
            ttl = self._ttl(register.ttl or None)  # 0 (canvas, go): the default
            peer = self._signed_peer(field, identity)
        except Refused as refusal:
            return Layout.SPEC, Invalid(Message.REGISTER, refusal)
        return Layout.SPEC, RegisterRequest(namespace, peer, ttl)

    def _old_register(
        self, field: bytes, register: Message.Register, identity: bytes
    ) -> RegisterRequest:
        namespace = self._namespace(register.ns)
        ttl = self._ttl(register.ttl or None)
        info = OldMessage.PeerInfo()
        try:
            info.ParseFromString(field)
            validate_peer_id(info.id)
        except (DecodeError, InvalidPeerId):
            raise Refused(Status.INVALID_SIGNED_PEER_RECORD, "invalid peer info") from None
        if info.id != identity:
            raise Refused(Status.NOT_AUTHORIZED, "peer id differs from the authenticated one")
        addrs = tuple(info.addrs)
        self._check_addrs(addrs)
        return RegisterRequest(namespace, Peer(peer_id_to_text(info.id), info.id, addrs), ttl)

    def _signed_peer(self, record: bytes, identity: bytes) -> Peer:
        if not record:
            raise Refused(Status.INVALID_SIGNED_PEER_RECORD, "no signed peer record")
        if len(record) > self.limits.max_signed_record_bytes:
            raise Refused(Status.INVALID_SIGNED_PEER_RECORD, "signed peer record too large")
        cache = self._opened
        peer = cache.get(record)
        if peer is not None:
            cache.move_to_end(record)
            if peer.key != identity:
                raise Refused(Status.NOT_AUTHORIZED, "signed peer record is another peer's")
            return peer
        try:
            opened, _ = open_peer_record(record, self.limits.max_addrs_per_peer)
        except InvalidEnvelope as e:
            raise Refused(Status.INVALID_SIGNED_PEER_RECORD, str(e)) from None
        if opened.peer_id != identity:
            raise Refused(Status.NOT_AUTHORIZED, "signed peer record is another peer's")
        self._check_addrs(opened.addrs)
        # The id is the connection's bytes (equal to the record's), the text and the
        # addresses are read from the record when asked: a registration keeps no copies.
        peer = cache[record] = Peer.from_record(identity, record)
        if len(cache) > OPENED_RECORDS:
            cache.popitem(last=False)
        return peer

    def _check_addrs(self, addrs: Sequence[bytes]) -> None:
        limits = self.limits
        if len(addrs) > limits.max_addrs_per_peer:
            raise Refused(
                Status.INVALID_SIGNED_PEER_RECORD,
                f"more than {limits.max_addrs_per_peer} addresses",
            )
        for addr in addrs:
            if len(addr) > limits.max_addr_bytes:
                raise Refused(Status.INVALID_SIGNED_PEER_RECORD, "address too long")
            try:
                validate_multiaddr(addr)
            except InvalidMultiaddr as e:
                raise Refused(Status.INVALID_SIGNED_PEER_RECORD, f"invalid address: {e}") from None

    def _discover(self, message: Message) -> DiscoverRequest:
        discover = message.discover
        namespace = discover.ns
        if namespace:
            namespace = self._namespace(namespace)
        elif not isinstance(namespace, str):
            raise Refused(Status.INVALID_NAMESPACE, "namespace is not UTF-8")
        limits = self.limits
        limit = min(discover.limit or limits.discover_default_limit, limits.discover_max_limit)
        cookie = discover.cookie if discover.HasField("cookie") and discover.cookie else None
        return DiscoverRequest(namespace, limit, cookie)

    def _namespace(self, namespace: str | bytes) -> str:
        # upb hands out a proto2 string field that is not UTF-8 as bytes.
        if not isinstance(namespace, str):
            raise Refused(Status.INVALID_NAMESPACE, "namespace is not UTF-8")
        if not namespace:
            raise Refused(Status.INVALID_NAMESPACE, "namespace is empty")
        if len(namespace.encode()) > self.limits.max_namespace_bytes:
            raise Refused(
                Status.INVALID_NAMESPACE,
                f"namespace is over {self.limits.max_namespace_bytes} bytes",
            )
        return namespace

    def _ttl(self, ttl: int | None) -> int:
        limits = self.limits
        if ttl is None:
            return limits.ttl_default
        if not limits.ttl_min <= ttl <= limits.ttl_max:
            raise Refused(
                Status.INVALID_TTL,
                f"TTL must be between {limits.ttl_min} and {limits.ttl_max} seconds",
            )
        return ttl

    # -- encoding ---------------------------------------------------------

    def register_response(self, layout: Layout, ttl: int) -> bytes:
        """REGISTER_RESPONSE OK granting ``ttl`` seconds."""
        answers = self._register_responses
        data = answers.get((layout, ttl))
        if data is None:
            message = _message(layout, Message.REGISTER_RESPONSE)
            response = message.registerResponse
            response.status = Message.OK
            response.ttl = ttl
            data = bytes(message.SerializeToString())
            if len(answers) < 256:  # one per TTL clients ask for: a handful
                answers[(layout, ttl)] = data
        return data

    def refusal(self, layout: Layout, kind: int, refusal: Refused) -> bytes | None:
        """The response carrying a refusal of a ``kind`` request (None: UNREGISTER has none)."""
        status = response_status(refusal.status)
        if kind == Message.REGISTER:
            message = _message(layout, Message.REGISTER_RESPONSE)
            message.registerResponse.status = status
            message.registerResponse.statusText = refusal.text
        elif kind == Message.DISCOVER:
            message = _message(layout, Message.DISCOVER_RESPONSE)
            message.discoverResponse.status = status
            message.discoverResponse.statusText = refusal.text
        else:
            return None
        return bytes(message.SerializeToString())

    def discover_response(
        self,
        layout: Layout,
        registrations: Sequence[Registration],
        now: float,
        after: int,
        cookie_for: Callable[[int], bytes],
    ) -> bytes:
        """DISCOVER_RESPONSE OK with the registrations that fit in `MAX_RESPONSE_BYTES`,
        and the cookie for the last of them (for ``after`` when there is none)."""
        if layout is Layout.SPEC:
            return self._spec_discover_response(registrations, now, after, cookie_for)
        return self._built_discover_response(layout, registrations, now, after, cookie_for)

    def _built_discover_response(
        self,
        layout: Layout,
        registrations: Sequence[Registration],
        now: float,
        after: int,
        cookie_for: Callable[[int], bytes],
    ) -> bytes:
        """`discover_response` through protobuf messages (either layout)."""
        message = _message(layout, Message.DISCOVER_RESPONSE)
        response = message.discoverResponse
        response.status = Message.OK
        position = after
        size = 64 + len(cookie_for(after))
        for registration in registrations:
            peer = registration.peer
            entry = response.registrations.add(
                ns=registration.namespace, ttl=self._left(registration, now)
            )
            if layout is Layout.SPEC:
                assert peer.signed_peer_record is not None
                entry.signedPeerRecord = peer.signed_peer_record
            else:
                entry.peer.id = peer.key
                entry.peer.addrs.extend(peer.addrs)
            size += entry.ByteSize() + 8
            if size > MAX_RESPONSE_BYTES:
                del response.registrations[-1]
                break
            position = max(position, registration.seq)
        response.cookie = cookie_for(position)
        return bytes(message.SerializeToString())

    def _spec_discover_response(
        self,
        registrations: Sequence[Registration],
        now: float,
        after: int,
        cookie_for: Callable[[int], bytes],
    ) -> bytes:
        """`discover_response` in the spec's layout, written field by field: the bytes
        protobuf would write (fields in order), without a message object per entry."""
        position = after
        size = 64 + len(cookie_for(after))
        parts: list[bytes] = []
        namespace = None
        ns_field = b""
        ttl_default = self.limits.ttl_default
        ceil = math.ceil
        # Entries mostly share a namespace, a record length and a TTL: their bytes are
        # made once per response. heads: record length and TTL size -> bytes up to the
        # record, Register length.
        heads: dict[int, tuple[bytes, int]] = {}
        tails: dict[int, bytes] = {}
        for registration in registrations:
            record = registration.record
            assert record is not None
            if registration.namespace != namespace:
                namespace = registration.namespace
                encoded = namespace.encode()
                ns_field = b"\x0a" + _uvarint(len(encoded)) + encoded  # Register.ns
                heads = {}
            if type(registration) is RecordRegistration:
                ttl = ceil(registration - now)  # (it is its expiry time)
                if ttl < 1:
                    ttl = 1
            else:
                expires = registration.expires
                if expires is None:
                    ttl = ttl_default
                else:
                    ttl = ceil(expires - now)
                    if ttl < 1:
                        ttl = 1
            tail = tails.get(ttl)
            if tail is None:
                tail = tails[ttl] = b"\x18" + _uvarint(ttl)  # Register.ttl
            n = len(record)
            key = n * 16 + len(tail)
            known = heads.get(key)
            if known is None:
                head = ns_field + b"\x12" + _uvarint(n)  # Register.signedPeerRecord
                length = len(head) + n + len(tail)
                # DiscoverResponse.registrations
                known = heads[key] = (b"\x0a" + _uvarint(length) + head, length)
            size += known[1] + 8
            if size > MAX_RESPONSE_BYTES:
                break
            parts += (known[0], record, tail)
            if registration.seq > position:
                position = registration.seq
        cookie = cookie_for(position)
        parts += (b"\x12" + _uvarint(len(cookie)), cookie, b"\x18\x00")  # cookie, status OK
        body = b"".join(parts)
        # Message.type DISCOVER_RESPONSE, then Message.discoverResponse.
        return b"\x08\x04\x32" + _uvarint(len(body)) + body

    def _left(self, registration: Registration, now: float) -> int:
        """Seconds a registration has left (a live one: the default TTL)."""
        if registration.expires is None:
            return self.limits.ttl_default
        return max(1, math.ceil(registration.expires - now))


_SHORT_VARINTS = [bytes((n,)) for n in range(0x80)]


def _uvarint(value: int) -> bytes:
    """`encode_uvarint`, quicker for the lengths and TTLs of a DISCOVER_RESPONSE."""
    if value < 0x80:
        return _SHORT_VARINTS[value]
    if value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    return encode_uvarint(value)


def _message(layout: Layout, kind: int) -> Any:
    """A message of either layout (the encoders touch only fields both share, or ``peer``)."""
    message = Message() if layout is Layout.SPEC else OldMessage()
    message.type = kind  # type: ignore[assignment]
    return message
