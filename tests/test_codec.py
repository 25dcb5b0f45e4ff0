"""The live codec: every validation, and encodings that protobuf reads back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.limits import Limits
from rendezvous.live import codec as codec_module
from rendezvous.live.codec import (
    DISCOVER_REPLY_BYTES,
    EntryCache,
    LiveCodec,
    LiveDiscoverRequest,
    LiveRegisterRequest,
    LiveRendezvousRequest,
    LiveUnregisterRequest,
    Parsed,
)
from rendezvous.model import Announcement, Change, Peer, Refused, Registration, Status
from rendezvous.pb.live_pb2 import Message
from rendezvous.peerid import parse_peer_id, peer_id_to_cid
from rendezvous.varint import encode_uvarint

from .helpers import (
    discover,
    peer,
    peer_id,
    register,
    rendezvous,
    tcp_addr,
    unframe_all,
    unregister,
)


class ParseTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.codec = LiveCodec(
            Limits(
                max_addrs_per_peer=2,
                discover_default_limit=7,
                discover_max_limit=50,
                max_signed_record_bytes=10,
            )
        )

    def refusal(self, message: Message | bytes) -> Refused:
        data = message if isinstance(message, bytes) else message.SerializeToString()
        [result] = self.codec.parse(data).requests
        assert isinstance(result, Refused), result
        return result

    def test_requests(self) -> None:
        parsed = self.codec.parse(
            register("app", "A", tcp_addr(1), request_id=9).SerializeToString()
        )
        self.assertEqual(parsed.request_id, 9)
        self.assertEqual(parsed.kind, "register")
        [request] = parsed.requests
        assert isinstance(request, LiveRegisterRequest)
        self.assertEqual(request.peer, peer("A", tcp_addr(1)))
        [request] = self.codec.parse(unregister("app", "A").SerializeToString()).requests
        self.assertEqual(request, LiveUnregisterRequest("app", peer("A").key))
        [request] = self.codec.parse(rendezvous("app").SerializeToString()).requests
        self.assertEqual(request, LiveRendezvousRequest("app"))

    def test_discover_limits(self) -> None:
        for given_limit, expected in [(None, 7), (0, 7), (3, 3), (50, 50), (10**12, 50)]:
            [request] = self.codec.parse(discover("app", given_limit).SerializeToString()).requests
            self.assertEqual(request, LiveDiscoverRequest("app", expected))

    def test_proto3_writer_omitting_register_type(self) -> None:
        message = register("app", "A")
        message.ClearField("type")
        [request] = self.codec.parse(message.SerializeToString()).requests
        self.assertIsInstance(request, LiveRegisterRequest)

    def test_malformed_protobuf(self) -> None:
        self.assertEqual(self.refusal(b"\x0a\xff").status, Status.INVALID_MESSAGE)

    def test_unknown_message_type(self) -> None:
        refusal = self.refusal(b"\x08\x63")
        self.assertEqual(
            (refusal.status, refusal.text), (Status.INVALID_MESSAGE, "unknown message type")
        )

    def test_client_error_message(self) -> None:
        self.assertEqual(self.refusal(Message(type=Message.ERROR)).status, Status.INVALID_MESSAGE)

    def test_message_without_entries(self) -> None:
        self.assertEqual(
            self.refusal(Message(type=Message.DISCOVER)).status, Status.INVALID_MESSAGE
        )

    def test_namespaces(self) -> None:
        self.assertEqual(self.refusal(register("", "A")).status, Status.INVALID_NAMESPACE)
        self.assertEqual(self.refusal(rendezvous("x" * 256)).status, Status.INVALID_NAMESPACE)
        self.assertEqual(self.refusal(discover("é" * 128)).status, Status.INVALID_NAMESPACE)
        [ok] = self.codec.parse(discover("é" * 127).SerializeToString()).requests
        self.assertIsInstance(ok, LiveDiscoverRequest)
        # Message{type=DISCOVER, discovery{ns=ff fe}}: not UTF-8.
        refusal = self.refusal(b"\x08\x03\x2a\x04\x0a\x02\xff\xfe")
        self.assertEqual(
            (refusal.status, refusal.text), (Status.INVALID_NAMESPACE, "namespace is not UTF-8")
        )

    def test_peer_ids(self) -> None:
        for bad in ["", "QmNotAPeerId", "12D3KooW" + "1" * 10]:
            message = register("app", "A")
            message.register[0].peer.id = bad
            self.assertEqual(self.refusal(message).status, Status.INVALID_PEER, bad)
        no_peer = Message(type=Message.REGISTER)
        no_peer.register.add(ns="app")
        self.assertEqual(self.refusal(no_peer).status, Status.INVALID_PEER)

    def test_cid_peer_id_is_the_same_peer(self) -> None:
        from rendezvous.peerid import peer_id_to_cid

        message = register("app", "A")
        message.register[0].peer.id = peer_id_to_cid(parse_peer_id(peer_id("A")))
        [request] = self.codec.parse(message.SerializeToString()).requests
        assert isinstance(request, LiveRegisterRequest)
        self.assertEqual(request.peer.key, peer("A").key)

    def test_addresses(self) -> None:
        self.assertEqual(
            self.refusal(register("app", "A", b"\x04\x01\x02")).status, Status.INVALID_PEER
        )
        self.assertEqual(
            self.refusal(register("app", "A", tcp_addr(1) + b"\x00")).status, Status.INVALID_PEER
        )
        too_many = register("app", "A", tcp_addr(1), tcp_addr(2), tcp_addr(3))
        self.assertEqual(self.refusal(too_many).status, Status.INVALID_PEER)
        huge = register("app", "A", b"\x04" + b"\x00" * 600)
        self.assertEqual(self.refusal(huge).status, Status.INVALID_PEER)

    def test_the_caches_keep_what_is_in_use(self) -> None:
        """The daemon-wide caches of parsed peer ids and checked addresses drop what
        was not used for longest (two generations), not what is in use: an id seen all
        along is parsed once however many new ones pass by."""
        parsed: list[str] = []

        def counting(text: str) -> bytes:
            parsed.append(text)
            return parse_peer_id(text)

        self.patch(codec_module, "parse_peer_id", counting)
        checked: list[bytes] = []

        def checking(addr: bytes) -> None:
            checked.append(addr)

        self.patch(codec_module, "validate_multiaddr", checking)
        for n in range(3 * codec_module._CACHE_SIZE):
            for name, addr in (("busy", tcp_addr(1)), (f"new{n}", tcp_addr(2, port=n + 1))):
                [request] = self.codec.parse(
                    register("app", name, addr).SerializeToString()
                ).requests
                self.assertIsInstance(request, LiveRegisterRequest)
        self.assertEqual(parsed.count(peer_id("busy")), 1)
        self.assertEqual(checked.count(tcp_addr(1)), 1)
        self.assertEqual(len(parsed), 1 + 3 * codec_module._CACHE_SIZE)
        # Bounded: the oldest new ones are gone and parsed again.
        self.codec.parse(register("app", "new0", tcp_addr(1)).SerializeToString())
        self.assertEqual(parsed.count(peer_id("new0")), 2)

    def test_a_session_refreshing_its_peer_does_not_decode_its_id_again(self) -> None:
        """A session's entry cache serves byte-identical re-sends, and knows the ids of
        its entries: a REGISTER of the same peer with other addresses (a refresh) reads
        the id from there, even when the daemon-wide cache has let it go."""
        parsed: list[str] = []

        def counting(text: str) -> bytes:
            parsed.append(text)
            return parse_peer_id(text)

        self.patch(codec_module, "parse_peer_id", counting)
        self.patch(codec_module, "_CACHE_SIZE", 1)
        entries = EntryCache()
        first = register("app", "A", tcp_addr(1)).SerializeToString()
        [request] = self.codec.parse(first, entries).requests
        self.assertIs(self.codec.parse(first, entries).requests[0], request)  # a re-send
        self.codec.parse(register("app", "B").SerializeToString())  # evicts A daemon-wide
        refresh = register("app", "A", tcp_addr(2)).SerializeToString()
        [refreshed] = self.codec.parse(refresh, entries).requests
        self.assertEqual(refreshed, LiveRegisterRequest("app", peer("A", tcp_addr(2))))
        self.assertEqual(parsed, [peer_id("A"), peer_id("B")])
        [other] = self.codec.parse(refresh, EntryCache()).requests  # another session
        self.assertEqual(other, refreshed)
        self.assertEqual(parsed, [peer_id("A"), peer_id("B"), peer_id("A")])

    def test_signed_record_size(self) -> None:
        message = register("app", "A")
        message.register[0].peer.signed_peer_record = b"x" * 11
        self.assertEqual(self.refusal(message).status, Status.INVALID_SIGNED_PEER_RECORD)

    def test_each_entry_judged_alone(self) -> None:
        message = register("app", "A")
        message.register.add(ns="")
        message.register[1].peer.id = peer_id("B")
        good, bad = self.codec.parse(message.SerializeToString()).requests
        self.assertIsInstance(good, LiveRegisterRequest)
        self.assertIsInstance(bad, Refused)

    @given(st.binary(max_size=300))
    def test_garbage_never_raises(self, data: bytes) -> None:
        parsed = self.codec.parse(data)
        self.assertIsInstance(parsed.requests, list)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    return encode_uvarint(number << 3 | wire_type) + encode_uvarint(len(payload)) + payload


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


_odd_texts = (
    st.text(max_size=6).map(_utf8)
    | st.text(min_size=120, max_size=140).map(_utf8)
    | st.binary(max_size=6)
)
"""Short and long text, bytes that may not be UTF-8 (or be surrogates)."""
_usual_ids = st.sampled_from(["A", "B", "C"]).map(lambda name: peer_id(name).encode())
_usual_addrs = st.integers(0, 3).map(tcp_addr)
# Each strategy takes one of its branches about as often as any other: the usual values
# come several times over so most entries are read by hand, and pass every check.
_namespaces = st.one_of(
    *[st.sampled_from([b"app", b"other", "\u00fcn\u00efc\u00f6de".encode()])] * 4, _odd_texts
)
_ids = st.one_of(
    *[_usual_ids] * 4,
    st.sampled_from([peer_id_to_cid(parse_peer_id(peer_id("A"))).encode(), b"Qm"]),
    _odd_texts,
)
_addrs = st.one_of(*[_usual_addrs] * 4, st.binary(max_size=8), st.just(b"\x04" * 130))
_extra_peer_fields = st.tuples(st.sampled_from([1, 2, 3, 4]), _ids | _addrs)


_extra_count = st.sampled_from([0] * 6 + [1, 2])
_one_in_eight = st.sampled_from([False] * 7 + [True])


@st.composite
def _entry_fields(draw: st.DrawFn) -> list[tuple[int, Any]]:
    """A ``register`` entry's fields: mostly as usual, often with a field more (a record,
    an unknown field, one again), out of order or missing."""
    peer: list[tuple[int, Any]] = [(1, draw(_ids))]
    peer += [(2, addr) for addr in draw(st.lists(_addrs, max_size=3))]
    for _ in range(draw(_extra_count)):
        peer.insert(draw(st.integers(0, len(peer))), draw(_extra_peer_fields))
    if draw(_one_in_eight):
        del peer[draw(st.integers(0, len(peer) - 1))]
    fields: list[tuple[int, Any]] = [(1, draw(_namespaces)), (2, peer)]
    for _ in range(draw(_extra_count)):
        extra = draw(
            st.tuples(st.just(1), _namespaces)
            | st.tuples(st.just(2), st.lists(_extra_peer_fields, max_size=2))
            | st.tuples(st.just(3), st.binary(max_size=4))
        )
        fields.insert(draw(st.integers(0, len(fields))), extra)
    if draw(_one_in_eight):
        del fields[draw(st.integers(0, len(fields) - 1))]
    return fields


def _entry(fields: list[tuple[int, Any]]) -> bytes:
    """A ``register`` entry from its fields as listed (a peer as its own list)."""
    out = b""
    for number, value in fields:
        if number == 2:
            value = b"".join(_field(n, 2, v) for n, v in value)
        out += _field(number, 2, value)
    return out


def _peer(id: bytes, addrs: list[bytes], tail: bytes = b"") -> bytes:
    return _field(1, 2, id) + b"".join(_field(2, 2, addr) for addr in addrs) + tail


_ASCII_ADDR = b"\x04\x01\x02\x03\x04\x06\x00\x50"
"""``/ip4/1.2.3.4/tcp/80``: every byte of it (and of its start) is text too."""

_TWISTS: dict[str, Callable[[bytes, bytes, list[bytes], int], bytes]] = {
    "as usual": lambda ns, id, addrs, by: _field(1, 2, ns) + _field(2, 2, _peer(id, addrs)),
    "a record": lambda ns, id, addrs, by: (
        _field(1, 2, ns) + _field(2, 2, _peer(id, addrs, _field(3, 2, bytes(by))))
    ),
    "an unknown peer field": lambda ns, id, addrs, by: (
        _field(1, 2, ns) + _field(2, 2, _peer(id, addrs, _field(4, 2, bytes(by))))
    ),
    "an unknown entry field": lambda ns, id, addrs, by: (
        _field(1, 2, ns) + _field(2, 2, _peer(id, addrs)) + _field(3, 2, bytes(by))
    ),
    "the peer twice": lambda ns, id, addrs, by: (
        _field(1, 2, ns) + _field(2, 2, _peer(id, addrs)) + _field(2, 2, _peer(id, addrs[:by]))
    ),
    "the namespace twice": lambda ns, id, addrs, by: (
        _field(1, 2, ns) + _field(2, 2, _peer(id, addrs)) + _field(1, 2, b"x" * by)
    ),
    "the namespace after the peer": lambda ns, id, addrs, by: (
        _field(2, 2, _peer(id, addrs)) + _field(1, 2, ns)
    ),
    "no namespace": lambda ns, id, addrs, by: _field(2, 2, _peer(id, addrs)),
    "no peer": lambda ns, id, addrs, by: _field(1, 2, ns),
    "an empty peer": lambda ns, id, addrs, by: _field(1, 2, ns) + _field(2, 2, b""),
    "no peer id": lambda ns, id, addrs, by: (
        _field(1, 2, ns)
        + _field(2, 2, b"".join(_field(2, 2, addr) for addr in [_ASCII_ADDR, *addrs]))
    ),
    "an address first": lambda ns, id, addrs, by: (
        _field(1, 2, ns) + _field(2, 2, _field(2, 2, _ASCII_ADDR[:by]) + _peer(id, addrs))
    ),
    "the peer id twice": lambda ns, id, addrs, by: (
        _field(1, 2, ns) + _field(2, 2, _peer(id, addrs) + _field(1, 2, peer_id("B").encode()))
    ),
    "a long peer id": lambda ns, id, addrs, by: (
        _field(1, 2, ns) + _field(2, 2, _peer(id + b"z" * (80 + 20 * by), addrs))
    ),
    "a long namespace": lambda ns, id, addrs, by: (
        _field(1, 2, ns + b"n" * (100 + 20 * by)) + _field(2, 2, _peer(id, addrs))
    ),
    "a long address": lambda ns, id, addrs, by: (
        _field(1, 2, ns) + _field(2, 2, _peer(id, [*addrs, b"\x04" * (100 + 20 * by)]))
    ),
    "a long peer": lambda ns, id, addrs, by: (
        _field(1, 2, ns) + _field(2, 2, _peer(id, [*addrs, *[tcp_addr(1)] * (6 + by)]))
    ),
    "an address running past the peer": lambda ns, id, addrs, by: (
        _field(1, 2, ns) + _field(2, 2, _peer(id, []) + b"\x12" + bytes((8 + by,)) + tcp_addr(1))
    ),
    "a peer id running past the peer": lambda ns, id, addrs, by: (
        _field(1, 2, ns) + _field(2, 2, b"\x0a" + bytes((len(id) + by,)) + id)
    ),
    "a peer running past the entry": lambda ns, id, addrs, by: (
        _field(1, 2, ns) + b"\x12" + encode_uvarint(len(_peer(id, addrs)) + by) + _peer(id, addrs)
    ),
    "a peer ending early": lambda ns, id, addrs, by: (
        _field(1, 2, ns) + b"\x12" + bytes((len(id) + 2,)) + _peer(id, addrs)
    ),
    "a namespace running past the entry": lambda ns, id, addrs, by: (
        b"\x0a" + encode_uvarint(len(ns) + 40 + by) + ns + _field(2, 2, _peer(id, addrs))
    ),
    "a varint tag": lambda ns, id, addrs, by: (
        b"\x8a\x00" + encode_uvarint(len(ns)) + ns + _field(2, 2, _peer(id, addrs))
    ),
    "a two-byte length": lambda ns, id, addrs, by: (
        b"\x0a" + bytes((len(ns) & 0x7F | 0x80, len(ns) >> 7)) + ns + _field(2, 2, _peer(id, addrs))
    ),
    "a peer id that is not UTF-8": lambda ns, id, addrs, by: (
        _field(1, 2, ns) + _field(2, 2, _peer(id[:-by] + b"\xff" * by, addrs))
    ),
    "an empty peer id": lambda ns, id, addrs, by: (
        _field(1, 2, ns) + _field(2, 2, _peer(b"", addrs))
    ),
    "an empty namespace": lambda ns, id, addrs, by: (
        _field(1, 2, b"") + _field(2, 2, _peer(id, addrs))
    ),
    "an empty address": lambda ns, id, addrs, by: (
        _field(1, 2, ns) + _field(2, 2, _peer(id, [*addrs, b""]))
    ),
    "too many addresses": lambda ns, id, addrs, by: (
        _field(1, 2, ns) + _field(2, 2, _peer(id, [tcp_addr(n) for n in range(3 + by)]))
    ),
}
"""An entry as usual (a namespace, a peer of an id and addresses) but for one thing."""


def _plain(parsed: Parsed) -> tuple[object, ...]:
    """What a `Parsed` says, its refusals as status and text (an exception compares as
    itself only)."""
    return (
        parsed.kind,
        parsed.request_id,
        [(r.status, r.text) if isinstance(r, Refused) else r for r in parsed.requests],
    )


class ReadWithoutProtobufTests(SynchronousTestCase):
    """REGISTER entries laid out as usual are read by hand (`_entry_fields`): every
    frame gives what protobuf's reading of it gives, the same requests or the same
    refusals."""

    limits = Limits(max_addrs_per_peer=3, max_signed_record_bytes=10)

    def assertReadAsProtobufDoes(self, frame: bytes) -> None:
        expected = _plain(LiveCodec(self.limits)._parse(frame))
        self.assertEqual(_plain(LiveCodec(self.limits).parse(frame)), expected)
        entries = EntryCache()
        codec = LiveCodec(self.limits)
        self.assertEqual(_plain(codec.parse(frame, entries)), expected)
        self.assertEqual(_plain(codec.parse(frame, entries)), expected)  # from the cache

    @settings(max_examples=500)
    @given(
        st.lists(_entry_fields(), min_size=1, max_size=3),
        st.none() | st.integers(0, 2**64 - 1),
    )
    def test_every_frame_reads_as_protobuf_reads_it(
        self, entries: list[list[tuple[int, Any]]], request_id: int | None
    ) -> None:
        frame = b"\x08\x00" + b"".join(_field(2, 2, _entry(fields)) for fields in entries)
        if request_id is not None:
            frame += b"\x38" + encode_uvarint(request_id)
        self.assertReadAsProtobufDoes(frame)

    @settings(max_examples=500)
    @given(_entry_fields(), st.data())
    def test_damaged_frames_read_as_protobuf_reads_them(
        self, fields: list[tuple[int, Any]], data: st.DataObject
    ) -> None:
        """A byte changed, cut off or added anywhere in a one-entry REGISTER."""
        frame = bytearray(b"\x08\x00" + _field(2, 2, _entry(fields)))
        position = data.draw(st.integers(2, len(frame)))
        change = data.draw(st.sampled_from(["set", "cut", "insert"]))
        if change == "set" and position < len(frame):
            frame[position] = data.draw(st.integers(0, 255))
        elif change == "cut":
            del frame[position:]
        else:
            frame[position:position] = bytes((data.draw(st.integers(0, 255)),))
        self.assertReadAsProtobufDoes(bytes(frame))

    @settings(max_examples=300)
    @given(
        _namespaces,
        _usual_ids,
        st.lists(_usual_addrs, max_size=3),
        st.sampled_from(sorted(_TWISTS)),
        st.integers(1, 3),
    )
    def test_usual_entries_with_one_twist(
        self, ns: bytes, id: bytes, addrs: list[bytes], twist: str, by: int
    ) -> None:
        """An entry as usual but for one thing, each thing the hand reading looks at."""
        self.assertReadAsProtobufDoes(b"\x08\x00" + _field(2, 2, _TWISTS[twist](ns, id, addrs, by)))

    def test_the_usual_register_is_read_without_protobuf(self) -> None:
        """One entry (namespace, peer id, an address) and no request id: the layout that
        goes around protobuf, its result checked as protobuf's (the test above checks
        all others)."""
        frame = register("app", "A", tcp_addr(1)).SerializeToString()
        self.assertEqual(
            codec_module._entry_fields(frame, 4), ("app", peer_id("A"), (tcp_addr(1),))
        )
        self.assertReadAsProtobufDoes(frame)


_peers = st.builds(
    lambda name, addrs, record: Peer(
        peer_id(name), parse_peer_id(peer_id(name)), tuple(tcp_addr(a) for a in addrs), record
    ),
    st.text(max_size=5),
    st.lists(st.integers(0, 255), max_size=4),
    st.none() | st.binary(max_size=40),
)


class EncodeTests(SynchronousTestCase):
    codec = LiveCodec(Limits(max_frame_bytes=400))

    @given(st.text(min_size=1, max_size=20), _peers, st.sampled_from(list(Change)))
    def test_announcement_is_the_protobuf_message(self, ns: str, p: Peer, change: Change) -> None:
        announcement = Announcement(change, Registration(ns, p))
        [message] = unframe_all(self.codec.announcement_frame(announcement))
        entry = message.register[0] if change is Change.REGISTER else message.unregister[0]
        self.assertEqual(
            message.type, Message.REGISTER if change is Change.REGISTER else Message.UNREGISTER
        )
        self.assertEqual((entry.ns, entry.peer.id, tuple(entry.peer.addrs)), (ns, p.id, p.addrs))
        self.assertEqual(
            entry.peer.HasField("signed_peer_record"), p.signed_peer_record is not None
        )
        self.assertIs(self.codec.announcement_frame(announcement), announcement.encoded)

    @given(st.lists(_peers, max_size=20), st.none() | st.integers(0, 2**64 - 1))
    def test_snapshots_split_under_the_frame_limit(
        self, peers: list[Peer], request_id: int | None
    ) -> None:
        frames = list(
            self.codec.registrations_frames(
                [Registration("ns", p) for p in peers], request_id, empty=False
            )
        )
        messages = [m for f in frames for m in unframe_all(f)]
        self.assertTrue(all(len(f) <= 400 for f in frames))
        self.assertEqual([e.peer.id for m in messages for e in m.register], [p.id for p in peers])
        for message in messages:
            self.assertEqual(message.type, Message.REGISTER)
            self.assertEqual(
                message.request_id if message.HasField("request_id") else None, request_id
            )

    @given(st.lists(_peers, max_size=20), st.none() | st.integers(0, 2**64 - 1))
    def test_a_discover_is_answered_in_one_message(
        self, peers: list[Peer], request_id: int | None
    ) -> None:
        [frame] = self.codec.registrations_frames(
            [Registration("ns", p) for p in peers], request_id, empty=True
        )
        [message] = unframe_all(frame)
        self.assertEqual([e.peer.id for e in message.register], [p.id for p in peers])

    def test_a_discover_answer_past_its_bound_leaves_the_rest_out(self) -> None:
        big = peer("big", *(tcp_addr(n) for n in range(16)))
        many = [Registration("ns", big)] * 20_000
        [frame] = self.codec.registrations_frames(many, 7, empty=True)
        [message] = unframe_all(frame)
        self.assertLessEqual(len(frame), DISCOVER_REPLY_BYTES + 16)
        self.assertGreater(len(message.register), 1000)
        self.assertLess(len(message.register), 20_000)

    def test_empty_snapshot_sends_nothing_and_empty_discover_one_message(self) -> None:
        self.assertEqual(list(self.codec.registrations_frames([], None, empty=False)), [])
        [f] = self.codec.registrations_frames([], 5, empty=True)
        [message] = unframe_all(f)
        self.assertEqual(
            (message.type, len(message.register), message.request_id), (Message.REGISTER, 0, 5)
        )

    @given(st.integers(0, 2**32 - 1), st.text(max_size=50), st.none() | st.integers(0, 2**64 - 1))
    def test_error_frame(self, status: int, text: str, request_id: int | None) -> None:
        [message] = unframe_all(LiveCodec.error_frame(status, text, request_id))
        self.assertEqual(
            (message.type, message.error.status, message.error.text), (Message.ERROR, status, text)
        )
        self.assertEqual(message.HasField("request_id"), request_id is not None)


class DocumentedExampleTests(SynchronousTestCase):
    def test_worked_example_of_docs_protocol(self) -> None:
        """The bytes shown in docs/protocol.rst's worked example are what subscribers get."""
        from rendezvous.addrs import multiaddr_from_text

        text = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
        p = Peer(text, parse_peer_id(text), (multiaddr_from_text("/ip4/192.0.2.1/tcp/4001"),))
        frame = LiveCodec(Limits()).announcement_frame(
            Announcement(Change.REGISTER, Registration("my-app", p))
        )
        self.assertEqual(len(frame), 73)
        self.assertEqual(
            frame.hex(" "),
            "48 08 00 12 44 0a 06 6d 79 2d 61 70 70 12 3a 0a 2e "
            + text.encode().hex(" ")
            + " 12 08 04 c0 00 02 01 06 0f a1",
        )
