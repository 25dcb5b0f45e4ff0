"""Circuit relay v2 pure layers: codec byte vectors, hop/stop machines, vouchers, resources."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.p2p.envelope import InvalidEnvelope, open_envelope
from rendezvous.p2p.keys import PrivateKey
from rendezvous.pb.circuit_pb2 import HopMessage, Limit, StopMessage
from rendezvous.relay import codec, hop, stop
from rendezvous.relay.codec import MalformedMessage, MessageReader
from rendezvous.relay.resources import Acl, HopRefused, RelayLimits, Resources
from rendezvous.relay.voucher import (
    VOUCHER_DOMAIN,
    Voucher,
    open_voucher,
    seal_voucher,
)

RELAY = PrivateKey.from_seed(b"r" * 32)
ALICE = PrivateKey.from_seed(b"a" * 32).peer_id()
BOB = PrivateKey.from_seed(b"b" * 32).peer_id()


class CodecVectors(SynchronousTestCase):
    def test_reserve_writes_the_zero_type(self) -> None:
        """WIRE trap 3: RESERVE=0 is on the wire (proto2 peers require it)."""
        self.assertEqual(hop.reserve_request(), b"\x02\x08\x00")

    def test_stop_connect_writes_the_zero_type(self) -> None:
        limit = Limit(duration=120, data=131072)
        data = stop.connect_message(ALICE, limit)
        body = b"\x08\x00" + b"\x12" + bytes([len(ALICE) + 2, 0x0A, len(ALICE)]) + ALICE
        body += b"\x1a\x06\x08\x78\x10\x80\x80\x08"
        self.assertEqual(data, bytes([len(body)]) + body)

    def test_connect_request(self) -> None:
        body = b"\x08\x01\x12" + bytes([len(BOB) + 2, 0x0A, len(BOB)]) + BOB
        self.assertEqual(hop.connect_request(BOB), bytes([len(body)]) + body)

    def test_status_vectors(self) -> None:
        self.assertEqual(codec.hop_status(codec.OK), b"\x04\x08\x02\x28\x64")
        self.assertEqual(codec.hop_status(codec.NO_RESERVATION), b"\x05\x08\x02\x28\xcc\x01")
        self.assertEqual(codec.stop_status(codec.OK), b"\x04\x08\x01\x20\x64")

    def test_status_names(self) -> None:
        self.assertEqual(codec.status_name(204), "NO_RESERVATION")
        self.assertEqual(codec.status_name(999), "UNKNOWN_999")

    def test_reader_waits_for_a_whole_message_then_leaves_the_rest(self) -> None:
        reader = MessageReader()
        reader.feed(b"\x04\x08\x02")
        self.assertIsNone(reader.next_frame())
        reader.feed(b"\x28\x64rest")
        self.assertEqual(reader.next_frame(), b"\x08\x02\x28\x64")
        self.assertEqual(reader.leftover(), b"rest")

    def test_oversized_length_refused_at_once(self) -> None:
        reader = MessageReader()
        reader.feed(b"\x81\x20")  # 4097
        self.assertRaises(MalformedMessage, reader.next_frame)
        reader = MessageReader()
        reader.feed(b"\x80\x20")  # 4096: allowed, waits
        self.assertIsNone(reader.next_frame())

    def test_bad_varint(self) -> None:
        reader = MessageReader()
        reader.feed(b"\xff" * 11)
        self.assertRaises(MalformedMessage, reader.next_frame)

    @given(st.binary(max_size=200), st.lists(st.integers(1, 20), max_size=10))
    def test_hop_server_never_raises(self, data: bytes, cuts: list[int]) -> None:
        """Any bytes, in any chunks: a request, a refusal with its reply, or waiting."""
        machine = hop.HopServer()
        results = []
        position = 0
        for cut in [*cuts, len(data)]:
            results.append(machine.feed(data[position : position + cut]))
            position += cut
        requests = [r for r in results if r is not None]
        self.assertLessEqual(len(requests), 1)
        for request in requests:
            if isinstance(request, hop.BadRequest):
                self.assertIn(request.status, (codec.MALFORMED_MESSAGE, codec.UNEXPECTED_MESSAGE))

    @given(st.binary(max_size=200))
    def test_stop_listener_never_raises(self, data: bytes) -> None:
        stop.StopListener().feed(data)

    @given(st.sampled_from([0, 1, 2]), st.binary(min_size=0, max_size=40))
    def test_hop_roundtrip(self, kind: int, tail: bytes) -> None:
        message = HopMessage(type=kind)  # type: ignore[arg-type]
        machine = hop.HopServer()
        if kind == HopMessage.CONNECT:
            request = machine.feed(hop.connect_request(BOB) + tail)
            self.assertEqual(request, hop.ConnectRequest(BOB))
        else:
            request = machine.feed(codec.frame(message) + tail)
            if kind == HopMessage.RESERVE:
                self.assertEqual(request, hop.ReserveRequest())
            else:
                assert isinstance(request, hop.BadRequest)
                self.assertEqual(request.status, codec.UNEXPECTED_MESSAGE)
                self.assertEqual(request.reply, codec.hop_status(codec.UNEXPECTED_MESSAGE))
        self.assertEqual(machine.leftover(), tail)


class HopMachines(SynchronousTestCase):
    def test_request_without_type_is_malformed(self) -> None:
        request = hop.HopServer().feed(b"\x00")
        assert isinstance(request, hop.BadRequest)
        self.assertEqual(request.reply, b"\x05\x08\x02\x28\x90\x03")  # 400

    def test_connect_without_peer_is_malformed(self) -> None:
        request = hop.HopServer().feed(b"\x02\x08\x01")
        assert isinstance(request, hop.BadRequest)
        self.assertEqual(request.status, codec.MALFORMED_MESSAGE)

    def test_connect_to_a_bad_peer_id_is_malformed(self) -> None:
        request = hop.HopServer().feed(b"\x07\x08\x01\x12\x03\x0a\x01\x05")
        assert isinstance(request, hop.BadRequest)
        self.assertIn("bad peer id", request.reason)

    def test_undecodable(self) -> None:
        request = hop.HopServer().feed(b"\x02\x0a\x05")
        assert isinstance(request, hop.BadRequest)
        self.assertEqual(request.status, codec.MALFORMED_MESSAGE)

    def test_reservation_ok(self) -> None:
        data = hop.reservation_ok(1700000000, [b"\x04\x7f\x00\x00\x01"], b"v", Limit(duration=2))
        client = hop.HopClient()
        response = client.feed(data[:3])
        self.assertIsNone(response)
        response = client.feed(data[3:])
        assert response is not None
        self.assertEqual(response.status, codec.OK)
        self.assertEqual(response.reservation.expire, 1700000000)
        self.assertEqual(list(response.reservation.addrs), [b"\x04\x7f\x00\x00\x01"])
        self.assertEqual(response.limit.duration, 2)

    def test_client_refuses_a_non_status(self) -> None:
        self.assertRaises(MalformedMessage, hop.HopClient().feed, hop.reserve_request())

    def test_connect_ok_then_bytes(self) -> None:
        client = hop.HopClient()
        response = client.feed(hop.connect_ok(Limit(duration=1, data=2)) + b"/multistream")
        assert response is not None
        self.assertEqual((response.limit.duration, response.limit.data), (1, 2))
        self.assertEqual(client.leftover(), b"/multistream")


class StopMachines(SynchronousTestCase):
    def test_dialer_reads_status_and_leftover(self) -> None:
        dialer = stop.StopDialer()
        self.assertEqual(dialer.feed(codec.stop_status(codec.OK) + b"hello"), codec.OK)
        self.assertEqual(dialer.leftover(), b"hello")

    def test_dialer_refuses_a_connect(self) -> None:
        self.assertRaises(
            MalformedMessage, stop.StopDialer().feed, stop.connect_message(ALICE, None)
        )

    def test_listener_accepts_connect(self) -> None:
        request = stop.StopListener().feed(stop.connect_message(ALICE, Limit(duration=5)))
        assert isinstance(request, stop.StopConnect)
        self.assertEqual(request.source, ALICE)
        assert request.limit is not None
        self.assertEqual(request.limit.duration, 5)

    def test_listener_refuses_status_and_bad_peers(self) -> None:
        request = stop.StopListener().feed(codec.stop_status(codec.OK))
        assert isinstance(request, stop.StopRefusal)
        self.assertEqual(request.reply, codec.stop_status(codec.UNEXPECTED_MESSAGE))
        request = stop.StopListener().feed(codec.frame(StopMessage(type=StopMessage.CONNECT)))
        assert isinstance(request, stop.StopRefusal)
        self.assertEqual(request.status, codec.MALFORMED_MESSAGE)


class Vouchers(SynchronousTestCase):
    def test_roundtrip_and_domain(self) -> None:
        sealed = seal_voucher(RELAY, Voucher(RELAY.peer_id(), ALICE, 1700000000))
        self.assertEqual(open_voucher(sealed), Voucher(RELAY.peer_id(), ALICE, 1700000000))
        envelope = open_envelope(sealed, VOUCHER_DOMAIN)
        self.assertEqual(envelope.payload_type, b"\x03\x02")
        body = b"\x0a" + bytes([len(RELAY.peer_id())]) + RELAY.peer_id()
        body += b"\x12" + bytes([len(ALICE)]) + ALICE + b"\x18\x80\xe2\xcf\xaa\x06"
        self.assertEqual(envelope.payload, body)
        self.assertRaises(InvalidEnvelope, open_envelope, sealed, "libp2p-peer-record")

    def test_relay_must_be_the_signer(self) -> None:
        sealed = seal_voucher(RELAY, Voucher(BOB, ALICE, 1))
        self.assertRaises(InvalidEnvelope, open_voucher, sealed)


class ResourceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.now = 1000.0

    def resources(self, acl: Acl | None = None, **limits: int) -> Resources:
        return Resources(RelayLimits(**limits), acl or Acl(), lambda: self.now)

    def test_reserve_renew_expire(self) -> None:
        resources = self.resources(reservation_ttl=60)
        reservation, renewed = resources.reserve(ALICE, "10.0.0.1", relayed=False)
        self.assertEqual((reservation.expire, renewed), (1060, False))
        self.now = 1030
        reservation, renewed = resources.reserve(ALICE, "10.0.0.1", relayed=False)
        self.assertEqual((reservation.expire, renewed), (1090, True))
        self.now = 1090
        self.assertIsNone(resources.reservation(ALICE))
        self.assertEqual(resources.reservations, {})

    def test_limits(self) -> None:
        resources = self.resources(max_reservations=2, max_reservations_per_ip=1)
        resources.reserve(ALICE, "10.0.0.1", relayed=False)
        with self.assertRaises(HopRefused) as caught:
            resources.reserve(BOB, "10.0.0.1", relayed=False)
        self.assertEqual(
            (caught.exception.status, caught.exception.reason), (200, "reservations per ip")
        )
        resources.reserve(BOB, "10.0.0.2", relayed=False)
        with self.assertRaises(HopRefused) as caught:
            resources.reserve(RELAY.peer_id(), "10.0.0.3", relayed=False)
        self.assertEqual(caught.exception.reason, "reservations")
        resources.drop(ALICE)
        resources.reserve(RELAY.peer_id(), "10.0.0.1", relayed=False)

    def test_relayed_and_acl(self) -> None:
        acl = Acl(frozenset([ALICE]), Acl.parse_subnets(["10.0.0.0/24"]))
        resources = self.resources(acl)
        for peer, ip, relayed, reason in [
            (ALICE, "10.0.0.1", True, "relayed connection"),
            (BOB, "10.0.0.1", False, "acl"),
            (ALICE, "10.0.1.1", False, "acl"),
            (ALICE, None, False, "acl"),
        ]:
            with self.assertRaises(HopRefused) as caught:
                resources.reserve(peer, ip, relayed=relayed)
            self.assertEqual((caught.exception.status, caught.exception.reason), (202, reason))
        resources.reserve(ALICE, "10.0.0.9", relayed=False)

    def test_circuits(self) -> None:
        carol = RELAY.peer_id()
        resources = self.resources(max_circuits_per_peer=1, max_circuits=2)
        with self.assertRaises(HopRefused) as caught:
            resources.open_circuit(ALICE, BOB, relayed=False)
        self.assertEqual(caught.exception.status, codec.NO_RESERVATION)
        resources.reserve(BOB, None, relayed=False)
        resources.reserve(carol, None, relayed=False)
        with self.assertRaises(HopRefused) as caught:
            resources.open_circuit(ALICE, BOB, relayed=True)
        self.assertEqual(caught.exception.status, codec.PERMISSION_DENIED)
        resources.open_circuit(ALICE, BOB, relayed=False)
        with self.assertRaises(HopRefused) as caught:
            resources.open_circuit(ALICE, carol, relayed=False)
        self.assertEqual(
            (caught.exception.status, caught.exception.reason),
            (codec.RESOURCE_LIMIT_EXCEEDED, "circuits per peer"),
        )
        resources.close_circuit(ALICE, BOB)
        self.assertEqual((resources.circuits, resources.circuits_of(ALICE)), (0, 0))
        resources.open_circuit(ALICE, carol, relayed=False)

    def test_disconnect_releases_at_once(self) -> None:
        """Sixteen peers from one address, one after another, each reserving and leaving:
        all served with the default cap of 8 per IP, nothing held after."""
        clock = Clock()
        resources = Resources(RelayLimits(), Acl(), clock.seconds)
        for n in range(16):
            peer, connection = PrivateKey.from_seed(bytes([n]) * 32).peer_id(), object()
            reservation, renewed = resources.reserve(
                peer, "127.0.0.1", relayed=False, holder=connection
            )
            self.assertEqual((reservation.holder, renewed), (connection, False))
            resources.open_circuit(ALICE, peer, relayed=False)
            resources.close_circuit(ALICE, peer)
            self.assertTrue(resources.disconnected(peer, connection))
            self.assertEqual((resources.reservations, resources._per_ip), ({}, {}))
            clock.advance(1)
        self.assertFalse(resources.disconnected(ALICE, object()))

    def test_disconnect_of_an_older_connection(self) -> None:
        """A reservation renewed over a new connection outlives the old one; the per-IP
        count follows it to its new address."""
        resources = self.resources(max_reservations_per_ip=1)
        old, new = object(), object()
        resources.reserve(ALICE, "10.0.0.1", relayed=False, holder=old)
        reservation, renewed = resources.reserve(ALICE, "10.0.0.2", relayed=False, holder=new)
        self.assertEqual((reservation.holder, renewed), (new, True))
        self.assertFalse(resources.disconnected(ALICE, old))
        self.assertIs(resources.reservation(ALICE), reservation)
        self.assertEqual(resources._per_ip, {"10.0.0.2": 1})
        resources.reserve(BOB, "10.0.0.1", relayed=False, holder=object())
        self.assertTrue(resources.disconnected(ALICE, new))
        self.assertEqual(resources._per_ip, {"10.0.0.1": 1})

    def test_limits_are_validated(self) -> None:
        self.assertRaises(ValueError, RelayLimits, max_reservations=0)
        self.assertRaises(ValueError, RelayLimits, circuit_duration=2**32)


class Fuzz(SynchronousTestCase):
    """Whatever a stranger sends, the parsers answer, wait, or raise their one error."""

    @given(st.lists(st.binary(max_size=100), max_size=5))
    def test_clients(self, chunks: list[bytes]) -> None:
        for machine in (hop.HopClient(), stop.StopDialer()):
            with contextlib.suppress(MalformedMessage):
                for chunk in chunks:
                    machine.feed(chunk)

    @given(st.binary(max_size=300))
    def test_voucher(self, data: bytes) -> None:
        with contextlib.suppress(InvalidEnvelope):
            open_voucher(data)
