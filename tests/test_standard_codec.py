"""The standard dialect's codec and cookies: recorded bytes, both layouts, every refusal."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.entry import entry_bytes
from rendezvous.limits import Limits
from rendezvous.model import Peer, Refused, Registration, Status
from rendezvous.p2p.envelope import (
    ROUTING_STATE_DOMAIN,
    ROUTING_STATE_PAYLOAD_TYPE,
    PeerRecord,
    seal,
    seal_peer_record,
)
from rendezvous.p2p.keys import PrivateKey
from rendezvous.pb.prespec_pb2 import Message as OldMessage
from rendezvous.pb.rendezvous_pb2 import Message
from rendezvous.standard import codec as codec_module
from rendezvous.standard.codec import (
    DiscoverRequest,
    Invalid,
    Layout,
    RegisterRequest,
    StandardCodec,
    UnregisterRequest,
    is_peer_info,
)
from rendezvous.standard.cookie import decode_cookie, encode_cookie

from .helpers import tcp_addr

KEY = PrivateKey.from_seed(b"k" * 32)
OTHER = PrivateKey.from_seed(b"o" * 32)
EPOCH = b"E" * 8


def record(key: PrivateKey = KEY, *addrs: bytes) -> bytes:
    return seal_peer_record(key, PeerRecord(key.peer_id(), 1, addrs or (tcp_addr(1),)))


def register(ns: str, signed: bytes, ttl: int | None = None) -> bytes:
    message = Message(type=Message.REGISTER)
    message.register.ns = ns
    message.register.signedPeerRecord = signed
    if ttl is not None:
        message.register.ttl = ttl
    return message.SerializeToString()


class CodecTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.codec = StandardCodec(Limits(ttl_min=60, ttl_max=3600, ttl_default=600))

    def parse(self, data: bytes) -> tuple[Layout | None, object]:
        return self.codec.parse(data, KEY.peer_id())

    def refusal(self, data: bytes) -> tuple[int | None, Status]:
        _, request = self.parse(data)
        assert isinstance(request, Invalid), request
        return request.kind, request.refusal.status

    def test_register_go_js_record(self) -> None:
        signed = record()
        layout, request = self.parse(register("app", signed, 120))
        self.assertEqual(layout, Layout.SPEC)
        assert isinstance(request, RegisterRequest)
        self.assertEqual((request.namespace, request.ttl), ("app", 120))
        self.assertEqual(request.peer.key, KEY.peer_id())
        self.assertEqual(request.peer.addrs, (tcp_addr(1),))
        self.assertEqual(request.peer.signed_peer_record, signed)

    def test_register_rust_record(self) -> None:
        payload = PeerRecord(KEY.peer_id(), 5, (tcp_addr(2),)).encode()
        signed = seal(KEY, ROUTING_STATE_DOMAIN, ROUTING_STATE_PAYLOAD_TYPE, payload)
        _, request = self.parse(register("app", signed))
        assert isinstance(request, RegisterRequest)
        self.assertEqual(request.ttl, 600)
        self.assertEqual(request.peer.signed_peer_record, signed)

    def test_register_refusals(self) -> None:
        good = record()
        cases = [
            (register("", good), Status.INVALID_NAMESPACE),
            (register("x" * 256, good), Status.INVALID_NAMESPACE),
            (register("app", good, 59), Status.INVALID_TTL),
            (register("app", good, 3601), Status.INVALID_TTL),
            (register("app", b""), Status.INVALID_SIGNED_PEER_RECORD),
            (register("app", good[:-1] + bytes([good[-1] ^ 1])), Status.INVALID_SIGNED_PEER_RECORD),
            (register("app", record(OTHER)), Status.NOT_AUTHORIZED),
            (register("app", record(KEY, b"\x04\x01\x02")), Status.INVALID_SIGNED_PEER_RECORD),
        ]
        for data, status in cases:
            self.assertEqual(self.refusal(data), (Message.REGISTER, status))
        self.assertEqual(self.refusal(b"\xff"), (None, Status.INVALID_MESSAGE))
        self.assertEqual(
            self.refusal(bytes.fromhex("0801")), (None, Status.INVALID_MESSAGE)
        )  # a response is no request

    def test_namespace_of_255_bytes_is_fine(self) -> None:
        _, request = self.parse(register("é" * 127 + "x", record()))
        self.assertIsInstance(request, RegisterRequest)

    def test_unregister_and_discover(self) -> None:
        unregister = bytes.fromhex("080222050a03") + b"app"
        self.assertEqual(self.parse(unregister), (None, UnregisterRequest("app")))
        # DISCOVER{limit=15624, cookie="c1"}: every namespace, limit clamped
        discover = bytes.fromhex("08032a0710887a1a02") + b"c1"
        self.assertEqual(self.parse(discover), (None, DiscoverRequest("", 1000, b"c1")))
        self.assertEqual(
            self.parse(bytes.fromhex("0803 2a00")), (None, DiscoverRequest("", 100, None))
        )

    def test_prespec_register(self) -> None:
        """py-libp2p's proto3 REGISTER: type 0 omitted, PeerInfo in field 2."""
        peer_id = KEY.peer_id()
        info = b"\x0a" + bytes([len(peer_id)]) + peer_id + b"\x12\x08" + tcp_addr(3)
        body = b"\x0a\x03app" + b"\x12" + bytes([len(info)]) + info + b"\x18\xb0\x09"
        data = b"\x12" + bytes([len(body)]) + body
        self.assertTrue(is_peer_info(info))
        self.assertFalse(is_peer_info(record()))
        layout, request = self.parse(data)
        self.assertEqual(layout, Layout.PRESPEC)
        assert isinstance(request, RegisterRequest)
        self.assertEqual(request.ttl, 1200)
        self.assertEqual(request.peer, Peer(KEY.peer_id_text(), peer_id, (tcp_addr(3),)))
        other = OldMessage(register=OldMessage.Register(ns="app"))
        other.register.peer.id = OTHER.peer_id()
        layout, request = self.parse(other.SerializeToString())
        self.assertEqual(layout, Layout.PRESPEC)
        assert isinstance(request, Invalid)
        self.assertEqual(request.refusal.status, Status.NOT_AUTHORIZED)

    def test_recorded_responses(self) -> None:
        self.assertEqual(
            self.codec.register_response(Layout.SPEC, 7200), bytes.fromhex("0801 1a05 0800 18a038")
        )
        refused = self.codec.refusal(
            Layout.SPEC, Message.REGISTER, Refused(Status.INVALID_TTL, "no")
        )
        self.assertEqual(refused, bytes.fromhex("0801 1a06 0866 12026e6f"))
        refused = self.codec.refusal(
            Layout.SPEC, Message.DISCOVER, Refused(Status.LIMIT_EXCEEDED, "x")
        )
        self.assertEqual(refused, bytes.fromhex("0804 3206 189003 220178"))
        self.assertIsNone(
            self.codec.refusal(Layout.SPEC, Message.UNREGISTER, Refused(Status.NOT_AUTHORIZED, ""))
        )
        # proto3 layout leaves OK (0) out
        self.assertEqual(
            self.codec.register_response(Layout.PRESPEC, 7200), bytes.fromhex("0801 1a03 18a038")
        )

    def test_discover_response_returns_records_byte_for_byte(self) -> None:
        signed = record()
        peer = Peer(KEY.peer_id_text(), KEY.peer_id(), (tcp_addr(1),), signed)
        registrations = [Registration("app", peer, 1000.4, seq=7), Registration("b", peer, seq=9)]
        data = self.codec.discover_response(
            Layout.SPEC, registrations, 900.0, 3, lambda n: bytes([n])
        )
        message = Message()
        message.ParseFromString(data)
        response = message.discoverResponse
        self.assertEqual(message.type, Message.DISCOVER_RESPONSE)
        self.assertTrue(response.HasField("status"))
        self.assertEqual(response.cookie, b"\x09")
        self.assertEqual([r.signedPeerRecord for r in response.registrations], [signed] * 2)
        self.assertEqual([r.ttl for r in response.registrations], [101, 600])
        old = OldMessage()
        old.ParseFromString(
            self.codec.discover_response(Layout.PRESPEC, registrations[:1], 900.0, 3, bytes)
        )
        [entry] = old.discoverResponse.registrations
        self.assertEqual((entry.peer.id, list(entry.peer.addrs)), (KEY.peer_id(), [tcp_addr(1)]))

    def test_empty_discover_response_keeps_the_position(self) -> None:
        data = self.codec.discover_response(Layout.SPEC, [], 0.0, 42, lambda n: b"%d" % n)
        self.assertEqual(data, bytes.fromhex("0804 3206 12023432 1800"))

    @given(st.binary(max_size=300))
    def test_parse_never_raises(self, data: bytes) -> None:
        layout, _ = self.parse(data)
        self.assertIn(layout, (None, Layout.SPEC, Layout.PRESPEC))

    @given(
        st.text(min_size=1, max_size=60),
        st.integers(min_value=0, max_value=2**64 - 1),
        st.binary(min_size=1, max_size=40),
    )
    def test_discover_round_trip(self, ns: str, limit: int, cookie: bytes) -> None:
        message = Message(type=Message.DISCOVER)
        message.discover.ns = ns
        message.discover.limit = limit
        message.discover.cookie = cookie
        _, request = self.parse(message.SerializeToString())
        expected = min(limit or 100, 1000)
        self.assertEqual(request, DiscoverRequest(ns, expected, cookie))

    @given(st.text(min_size=1, max_size=80), st.integers(min_value=60, max_value=3600))
    def test_register_round_trip(self, ns: str, ttl: int) -> None:
        _, request = self.parse(register(ns, record(), ttl))
        assert isinstance(request, RegisterRequest)
        self.assertEqual((request.namespace, request.ttl), (ns, ttl))

    @given(
        st.binary(min_size=32, max_size=32),
        st.lists(st.integers(min_value=0, max_value=255), max_size=4),
        st.integers(min_value=0, max_value=3600),
    )
    def test_prespec_round_trip(self, seed: bytes, octets: list[int], ttl: int) -> None:
        """A pre-spec REGISTER of any key and addresses is told apart from an envelope."""
        key = PrivateKey.from_seed(seed)
        message = OldMessage(type=OldMessage.REGISTER)
        message.register.ns = "ns"
        message.register.peer.id = key.peer_id()
        message.register.peer.addrs.extend(tcp_addr(n) for n in octets)
        message.register.ttl = ttl
        layout, request = self.codec.parse(message.SerializeToString(), key.peer_id())
        self.assertEqual(layout, Layout.PRESPEC)
        if 0 < ttl < 60:
            assert isinstance(request, Invalid)
            self.assertEqual(request.refusal.status, Status.INVALID_TTL)
        else:
            assert isinstance(request, RegisterRequest)
            self.assertEqual(request.peer.addrs, tuple(tcp_addr(n) for n in octets))
            self.assertEqual(request.ttl, ttl or 600)
        envelope = record(key)
        self.assertFalse(is_peer_info(envelope))
        self.assertEqual(self.codec.parse(register("ns", envelope), key.peer_id())[0], Layout.SPEC)


class OpenedRecordTests(SynchronousTestCase):
    """Records that opened are remembered by their bytes; every check still applies."""

    def setUp(self) -> None:
        self.codec = StandardCodec(Limits())

    def test_the_same_bytes_again_give_the_same_peer(self) -> None:
        signed = record()
        _, first = self.codec.parse(register("app", signed), KEY.peer_id())
        _, again = self.codec.parse(register("other", signed), KEY.peer_id())
        assert isinstance(first, RegisterRequest) and isinstance(again, RegisterRequest)
        self.assertEqual(again.namespace, "other")
        # The registrations share the peer, and with it the record's bytes.
        self.assertIs(again.peer, first.peer)

    def test_a_signed_peer_is_read_from_its_record(self) -> None:
        signed = record(KEY, tcp_addr(1), tcp_addr(2))
        identity = KEY.peer_id()
        _, request = self.codec.parse(register("app", signed), identity)
        assert isinstance(request, RegisterRequest)
        peer = request.peer
        self.assertIs(peer.key, identity)  # the connection's bytes, not a copy of the record's
        self.assertEqual(peer.id, KEY.peer_id_text())
        self.assertEqual(peer.addrs, (tcp_addr(1), tcp_addr(2)))
        self.assertEqual(peer, Peer(KEY.peer_id_text(), identity, peer.addrs, signed))
        self.assertNotEqual(peer, Peer(KEY.peer_id_text(), identity, (tcp_addr(1),), signed))
        # What a live subscriber is told of it: the same entry as an explicit peer's.
        explicit = Peer(KEY.peer_id_text(), identity, (tcp_addr(1), tcp_addr(2)), signed)
        self.assertEqual(
            entry_bytes(Registration("app", peer)), entry_bytes(Registration("app", explicit))
        )
        # What the pre-spec layout sends of it: the addresses, read from the record.
        old = OldMessage()
        old.ParseFromString(
            self.codec.discover_response(
                Layout.PRESPEC, [Registration("app", peer, 1000.0, seq=1)], 900.0, 0, bytes
            )
        )
        [entry] = old.discoverResponse.registrations
        self.assertEqual((entry.peer.id, list(entry.peer.addrs)), (identity, list(peer.addrs)))

    def test_a_remembered_record_is_still_only_its_peers(self) -> None:
        signed = record()
        self.codec.parse(register("app", signed), KEY.peer_id())
        _, request = self.codec.parse(register("app", signed), OTHER.peer_id())
        assert isinstance(request, Invalid)
        self.assertEqual(request.refusal.status, Status.NOT_AUTHORIZED)

    def test_other_bytes_are_opened_and_checked(self) -> None:
        signed = record()
        self.codec.parse(register("app", signed), KEY.peer_id())
        tampered = signed[:-1] + bytes([signed[-1] ^ 1])
        for data, status in [
            (register("app", tampered), Status.INVALID_SIGNED_PEER_RECORD),
            (register("", signed), Status.INVALID_NAMESPACE),
            (register("app", signed, 1), Status.INVALID_TTL),
        ]:
            _, request = self.codec.parse(data, KEY.peer_id())
            assert isinstance(request, Invalid)
            self.assertEqual(request.refusal.status, status)

    def test_refused_records_are_not_remembered(self) -> None:
        bad = record(KEY, b"\x04\x01\x02")
        for _ in range(2):
            _, request = self.codec.parse(register("app", bad), KEY.peer_id())
            assert isinstance(request, Invalid)
            self.assertEqual(request.refusal.status, Status.INVALID_SIGNED_PEER_RECORD)
        self.assertEqual(len(self.codec._opened), 0)

    def test_bounded(self) -> None:
        self.patch(codec_module, "OPENED_RECORDS", 3)
        records = [record(KEY, tcp_addr(n)) for n in range(1, 6)]
        for signed in records:
            self.codec.parse(register("app", signed), KEY.peer_id())
        self.assertEqual(list(self.codec._opened), records[2:])


class DiscoverResponseBytesTests(SynchronousTestCase):
    """The spec layout's DISCOVER_RESPONSE, written by hand, is protobuf's byte for byte."""

    def setUp(self) -> None:
        self.codec = StandardCodec(Limits(ttl_default=600))

    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["app", "b", "ünï", "x" * 200]),
                st.binary(min_size=0, max_size=300),
                st.one_of(st.none(), st.floats(min_value=0, max_value=1e6)),
                st.integers(min_value=1, max_value=2**40),
            ),
            max_size=12,
        ),
        st.integers(min_value=0, max_value=2**40),
        st.floats(min_value=0, max_value=1e6),
        st.sampled_from([10**9, 900, 400, 100]),
    )
    def test_same_bytes_as_protobuf(
        self,
        entries: list[tuple[str, bytes, float | None, int]],
        after: int,
        now: float,
        cap: int,
    ) -> None:
        self.patch(codec_module, "MAX_RESPONSE_BYTES", cap)
        registrations = [
            Registration(ns, Peer("id", b"key", (), signed), expires, seq=seq)
            for ns, signed, expires, seq in entries
        ]

        def cookie(position: int) -> bytes:
            return b"c%d" % position

        self.assertEqual(
            self.codec.discover_response(Layout.SPEC, registrations, now, after, cookie),
            self.codec._built_discover_response(Layout.SPEC, registrations, now, after, cookie),
        )


class CookieTests(SynchronousTestCase):
    def test_recorded_cookie(self) -> None:
        cookie = encode_cookie(EPOCH, 258, "ns")
        self.assertEqual(cookie, b"\x01" + EPOCH + bytes.fromhex("0000000000000102") + b"ns")
        self.assertEqual(decode_cookie(cookie, EPOCH, "ns"), 258)

    def test_invalid_cookies(self) -> None:
        for cookie, ns in [
            (b"junk", "ns"),
            (b"\x02" + EPOCH + bytes(8) + b"ns", "ns"),
            (encode_cookie(EPOCH, 1, "ns"), "other"),
            (encode_cookie(EPOCH, 1, ""), "ns"),
        ]:
            e = self.assertRaises(Refused, decode_cookie, cookie, EPOCH, ns)
            self.assertEqual(e.status, Status.INVALID_COOKIE)

    def test_cookie_of_an_earlier_registry_restarts(self) -> None:
        self.assertEqual(decode_cookie(encode_cookie(b"old-reg!", 99, ""), EPOCH, ""), 0)

    @given(st.integers(min_value=0, max_value=2**64 - 1), st.text(max_size=100))
    def test_round_trip(self, position: int, ns: str) -> None:
        self.assertEqual(decode_cookie(encode_cookie(EPOCH, position, ns), EPOCH, ns), position)

    @given(st.binary(max_size=64), st.text(max_size=5))
    def test_decode_never_raises_anything_else(self, cookie: bytes, ns: str) -> None:
        try:
            decode_cookie(cookie, EPOCH, ns)
        except Refused as e:
            self.assertEqual(e.status, Status.INVALID_COOKIE)
