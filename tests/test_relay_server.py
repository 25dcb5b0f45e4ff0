"""The hop service on a Host, in memory: reservations, circuits, limits, refusals, counters."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.test.iosim import FakeTransport, IOPump, connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.addrs import InvalidMultiaddr, multiaddr_from_text, multiaddr_to_text
from rendezvous.p2p import ping
from rendezvous.p2p.connection import Connection, StreamFailed
from rendezvous.p2p.host import Host
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.multistream import PROTOCOL_ID, encode_message
from rendezvous.p2p.stream import Stream, StreamProtocol
from rendezvous.p2p.transport import TCPAddress
from rendezvous.pb.circuit_pb2 import Limit
from rendezvous.relay import client, codec, hop, relayed, stop
from rendezvous.relay.client import RelayRefused, StopHandler
from rendezvous.relay.keeper import ReservationKeeper
from rendezvous.relay.resources import Acl, RelayLimits
from rendezvous.relay.server import (
    LOGGED_CIRCUITS,
    LOGGED_CIRCUITS_INTERVAL,
    REQUEST_TIMEOUT,
    SWEEP_INTERVAL,
    RelayServer,
)

from .test_p2p_connection import Echo, Recorder, stream_data

RELAY_KEY = PrivateKey.from_seed(b"R" * 32)
ALICE_KEY = PrivateKey.from_seed(b"A" * 32)
BOB_KEY = PrivateKey.from_seed(b"B" * 32)


class Silent(StreamProtocol):
    """A stop handler that never answers."""


class Writer(StreamProtocol):
    """Writes ``payload`` in 16 KiB pieces, honouring pause_writing."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.paused = False

    def stream_started(self, stream: Stream) -> None:
        super().stream_started(stream)
        self.resume_writing()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        assert self.stream is not None
        while self.payload and not self.paused:
            piece, self.payload = self.payload[: 16 * 1024], self.payload[16 * 1024 :]
            self.stream.write(piece)


class RelayFixture(SynchronousTestCase):
    """A relay host and peers connected to it in memory."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.pumps: list[IOPump] = []
        self.relay_host = Host(RELAY_KEY, self.clock)
        self.relay_host.add_listen_addr(multiaddr_from_text("/ip4/10.0.0.1/tcp/4010"))
        self.relay_host.add_listen_addr(multiaddr_from_text("/ip4/0.0.0.0/tcp/4011"))
        self.accepted: list[bytes] = []
        self.bob_side: list[StreamProtocol] = []

    def relay(self, acl: Acl | None = None, **limits: int) -> RelayServer:
        self.server = RelayServer(self.relay_host, self.clock, RelayLimits(**limits), acl)
        self.server.install()
        return self.server

    def peer(self, key: PrivateKey, octet: int) -> tuple[Host, Connection, Connection]:
        """A host connected to the relay from 10.0.0.<octet>: (host, its end, relay's end)."""
        host = Host(key, self.clock)

        def client_transport(protocol: Connection) -> FakeTransport:
            return FakeTransport(
                protocol,
                isServer=False,
                hostAddress=IPv4Address("TCP", f"10.0.0.{octet}", 50000),
                peerAddress=IPv4Address("TCP", "10.0.0.1", 4010),
            )

        def server_transport(protocol: Connection) -> FakeTransport:
            return FakeTransport(
                protocol,
                isServer=True,
                hostAddress=IPv4Address("TCP", "10.0.0.1", 4010),
                peerAddress=IPv4Address("TCP", f"10.0.0.{octet}", 50000),
            )

        end, relay_end, pump = connectedServerAndClient(
            lambda: self.relay_host.factory().buildProtocol(None),
            lambda: Connection(host, dialer=True),
            clientTransportFactory=client_transport,  # type: ignore[arg-type]
            serverTransportFactory=server_transport,  # type: ignore[arg-type]
            clock=self.clock,
        )
        self.pumps.append(pump)
        self.flush()
        return host, end, relay_end

    def flush(self) -> None:
        for _ in range(10_000):
            if not any([pump.pump() for pump in self.pumps]):
                return
        raise AssertionError("the pumps never went quiet")

    def bob(self, protocol: type[StreamProtocol] = Echo) -> tuple[Host, Connection, Connection]:
        host, end, relay_end = self.peer(BOB_KEY, 3)

        def accept(source: bytes, limit: Limit | None) -> StreamProtocol:
            self.accepted.append(source)
            side = protocol()
            self.bob_side.append(side)
            return side

        host.set_handler(codec.STOP_PROTOCOL_ID, lambda: StopHandler(accept))
        reserved = client.reserve(end)
        self.flush()
        self.successResultOf(reserved)
        return host, end, relay_end


class RelayTests(RelayFixture):
    def test_reservation(self) -> None:
        self.relay(reservation_ttl=600, circuit_duration=60, circuit_bytes=1000)
        _, bob, _ = self.peer(BOB_KEY, 3)
        reserved = client.reserve(bob)
        self.flush()
        info = self.successResultOf(reserved)
        self.assertEqual(info.expire, 1_700_000_600)
        relay_id = RELAY_KEY.peer_id_text()
        self.assertEqual(
            [multiaddr_to_text(a) for a in info.addrs],
            [f"/ip4/10.0.0.1/tcp/4010/p2p/{relay_id}"],
        )
        assert info.voucher is not None and info.limit is not None
        self.assertEqual(
            (info.voucher.relay, info.voucher.peer, info.voucher.expiration),
            (RELAY_KEY.peer_id(), BOB_KEY.peer_id(), 1_700_000_600),
        )
        self.assertEqual((info.limit.duration, info.limit.data), (60, 1000))
        self.assertEqual(self.server.stats.reservations_opened, 1)
        self.assertEqual(bob.streams, [])
        self.clock.advance(300)
        renewed = client.reserve(bob)
        self.flush()
        self.assertEqual(self.successResultOf(renewed).expire, 1_700_000_900)
        self.assertEqual(self.server.stats.reservations_renewed, 1)

    def test_reservation_addrs_announced(self) -> None:
        """With --p2p-announce, the reservation names those addresses only."""
        self.relay_host.announce = (
            multiaddr_from_text("/dns4/relay1.example.org/tcp/443/tls/ws"),
            multiaddr_from_text("/ip4/203.0.113.9/tcp/4010"),
        )
        self.relay_host.update_addrs()
        self.relay()
        _, bob, _ = self.peer(BOB_KEY, 3)
        info = self.successResultOf(_flushed(self, client.reserve(bob)))
        relay_id = RELAY_KEY.peer_id_text()
        self.assertEqual(
            [multiaddr_to_text(a) for a in info.addrs],
            [
                f"/dns4/relay1.example.org/tcp/443/tls/ws/p2p/{relay_id}",
                f"/ip4/203.0.113.9/tcp/4010/p2p/{relay_id}",
            ],
        )

    def test_circuit_both_ways(self) -> None:
        server = self.relay()
        self.bob(Echo)
        _, alice, _ = self.peer(ALICE_KEY, 2)
        opened = client.connect(alice, BOB_KEY.peer_id())
        self.flush()
        circuit = self.successResultOf(opened)
        self.assertEqual(self.accepted, [ALICE_KEY.peer_id()])
        recorder = Recorder()
        circuit.attach(recorder)
        circuit.stream.write(b"hello through the relay")
        self.flush()
        self.assertEqual(recorder.received, b"hello through the relay")
        self.assertEqual(server.stats.circuits_opened, 1)
        self.assertEqual(server.stats.bytes_relayed, {"to target": 23, "to initiator": 23})
        self.assertEqual(server.resources.circuits, 1)
        circuit.stream.close()
        self.flush()
        self.assertTrue(recorder.ended)
        self.assertEqual(recorder.closed, [None])
        self.assertEqual(server.resources.circuits, 0)
        self.assertEqual(server.stats.circuits_closed, {"end": 1})
        registry = CollectorRegistry()
        registry.register(server.stats)
        text = generate_latest(registry).decode()
        for line in [
            "relay_reservations 1.0",
            "relay_circuits 0.0",
            "relay_reservations_opened_total 1.0",
            "relay_circuits_opened_total 1.0",
            'relay_circuits_closed_total{reason="end"} 1.0',
            'relay_bytes_relayed_total{direction="to target"} 23.0',
        ]:
            self.assertIn(line + "\n", text)

    def test_no_reservation(self) -> None:
        server = self.relay()
        _, alice, _ = self.peer(ALICE_KEY, 2)
        opened = client.connect(alice, BOB_KEY.peer_id())
        self.flush()
        failure = self.failureResultOf(opened, RelayRefused)
        self.assertEqual(failure.value.status, codec.NO_RESERVATION)
        self.assertEqual(server.stats.circuits_refused, {"no reservation": 1})

    def test_reservation_ends_with_its_connection(self) -> None:
        """At once, with no sweep: the reservation, its slot and its IP's count."""
        server = self.relay()
        _, bob, _ = self.bob()
        self.assertEqual(server.resources._per_ip, {"10.0.0.3": 1})
        with capturedLogs() as events:
            bob.close()
            self.flush()
        self.assertEqual(server.resources.reservations, {})
        self.assertEqual(server.resources._per_ip, {})
        self.assertEqual(
            [e["peer"] for e in events if "ended: disconnected" in e["log_format"]],
            [BOB_KEY.peer_id_text()],
        )
        _, alice, _ = self.peer(ALICE_KEY, 2)
        opened = client.connect(alice, BOB_KEY.peer_id())
        self.flush()
        self.assertEqual(self.failureResultOf(opened, RelayRefused).value.status, 204)
        self.assertEqual(server.resources.circuits, 0)

    def test_peers_come_and_go_from_one_address(self) -> None:
        """With one reservation per IP, peer after peer from that IP reserves, is
        reached, and leaves: each is served (a browser tab reloading behind a NAT)."""
        server = self.relay(max_reservations_per_ip=1)
        _, alice, _ = self.peer(ALICE_KEY, 2)
        for seed in range(5):
            key = PrivateKey.from_seed(bytes([seed]) * 32)
            host, end, _ = self.peer(key, 3)
            host.set_handler(
                codec.STOP_PROTOCOL_ID, lambda: StopHandler(lambda source, limit: Echo())
            )
            self.successResultOf(_flushed(self, client.reserve(end)))
            opened = client.connect(alice, key.peer_id())
            self.flush()
            circuit = self.successResultOf(opened)
            circuit.stream.close()
            end.close()
            self.flush()
            self.assertEqual(server.resources.reservations, {})
        self.assertEqual(server.stats.reservations_opened, 5)
        self.assertEqual(server.stats.reservations_refused, {})
        self.assertEqual(server.stats.circuits_opened, 5)

    def test_reconnected_peer_reserves_again(self) -> None:
        server = self.relay(max_reservations_per_ip=1)
        _, bob, _ = self.bob()
        bob.close()
        self.flush()
        self.bob()
        self.assertEqual(list(server.resources.reservations), [BOB_KEY.peer_id()])
        self.assertEqual(server.stats.reservations_opened, 2)

    def test_old_connection_closing_leaves_the_new_reservation(self) -> None:
        """A peer that reserved again over a second connection keeps its reservation
        when the first closes, and is reached over the second."""
        server = self.relay()
        _, first, _ = self.bob()
        _, second, _ = self.bob()
        first.close()
        self.flush()
        self.assertEqual(list(server.resources.reservations), [BOB_KEY.peer_id()])
        _, alice, _ = self.peer(ALICE_KEY, 2)
        opened = client.connect(alice, BOB_KEY.peer_id())
        self.flush()
        self.successResultOf(opened)
        self.assertEqual(len(second.streams), 1)

    def test_sweep_forgets_expired(self) -> None:
        """Reservations whose TTL ran out while their peer stays connected."""
        server = self.relay(reservation_ttl=40)
        server.start()
        self.addCleanup(server.stop)
        _, bob, _ = self.bob()
        self.assertEqual(len(server.resources.reservations), 1)
        self.clock.advance(SWEEP_INTERVAL)
        self.assertEqual(len(server.resources.reservations), 1)
        with capturedLogs() as events:
            self.clock.advance(SWEEP_INTERVAL)
        self.assertEqual(server.resources.reservations, {})
        self.assertEqual([e["log_format"] for e in events], ["reservation of {peer} expired"])
        self.assertTrue(bob.is_ready)

    def test_refused_over_a_relayed_connection(self) -> None:
        server = self.relay()
        self.bob()
        _, alice, relay_end = self.peer(ALICE_KEY, 2)
        relay_end.relayed = True
        reserved = client.reserve(alice)
        opened = client.connect(alice, BOB_KEY.peer_id())
        self.flush()
        self.assertEqual(self.failureResultOf(reserved, RelayRefused).value.status, 202)
        self.assertEqual(self.failureResultOf(opened, RelayRefused).value.status, 202)
        self.assertEqual(server.stats.reservations_refused, {"relayed connection": 1})
        self.assertEqual(server.stats.circuits_refused, {"relayed connection": 1})

    def test_acl(self) -> None:
        server = self.relay(Acl(frozenset([BOB_KEY.peer_id()])))
        self.bob()
        _, alice, _ = self.peer(ALICE_KEY, 2)
        reserved = client.reserve(alice)
        self.flush()
        self.assertEqual(self.failureResultOf(reserved, RelayRefused).value.status, 202)
        self.assertEqual(server.stats.reservations_refused, {"acl": 1})

    def test_reservation_limit_per_ip(self) -> None:
        server = self.relay(max_reservations_per_ip=1)
        self.bob()
        _, alice, _ = self.peer(ALICE_KEY, 3)  # same IP as bob
        reserved = client.reserve(alice)
        self.flush()
        self.assertEqual(self.failureResultOf(reserved, RelayRefused).value.status, 200)
        self.assertEqual(server.stats.reservations_refused, {"reservations per ip": 1})

    def test_data_limit_cuts_the_circuit(self) -> None:
        server = self.relay(circuit_bytes=10)
        self.bob(Recorder)
        _, alice, _ = self.peer(ALICE_KEY, 2)
        opened = client.connect(alice, BOB_KEY.peer_id())
        self.flush()
        circuit = self.successResultOf(opened)
        recorder = Recorder()
        circuit.attach(recorder)
        circuit.stream.write(b"0123456789abcdef")
        self.flush()
        bob_side = self.bob_side[0]
        assert isinstance(bob_side, Recorder)
        self.assertEqual(bob_side.received, b"0123456789")
        self.assertEqual(recorder.closed, ["reset by the peer"])
        self.assertEqual(server.stats.circuits_closed, {"data limit": 1})
        self.assertEqual(server.resources.circuits, 0)

    def test_duration_limit(self) -> None:
        server = self.relay(circuit_duration=30)
        self.bob(Recorder)
        _, alice, _ = self.peer(ALICE_KEY, 2)
        opened = client.connect(alice, BOB_KEY.peer_id())
        self.flush()
        circuit = self.successResultOf(opened)
        assert circuit.limit is not None
        self.assertEqual(circuit.limit.duration, 30)
        recorder = Recorder()
        circuit.attach(recorder)
        self.clock.advance(30)
        self.flush()
        self.assertEqual(recorder.closed, ["reset by the peer"])
        self.assertEqual(server.stats.circuits_closed, {"duration limit": 1})

    def test_backpressure(self) -> None:
        """A target that stops reading stops the relay reading the initiator: nothing piles
        up in the relay, and nothing is lost once it reads again."""
        server = self.relay(circuit_bytes=10_000_000)
        self.bob(Recorder)
        _, alice, _ = self.peer(ALICE_KEY, 2)
        opened = client.connect(alice, BOB_KEY.peer_id())
        self.flush()
        circuit = self.successResultOf(opened)
        bob_side = self.bob_side[0]
        assert isinstance(bob_side, Recorder) and bob_side.stream is not None
        bob_side.stream.pause_reading()
        payload = bytes(range(256)) * 8 * 1024  # 2 MiB
        writer = Writer(payload)
        circuit.attach(writer)
        self.flush()
        self.assertTrue(writer.paused)
        (relayed,) = server.circuits
        self.assertTrue(relayed._reading_paused[0])
        self.assertLess(relayed.relayed[0], 1024 * 1024)
        bob_side.stream.resume_reading()
        self.flush()
        self.assertEqual(bob_side.received, payload)
        self.assertFalse(relayed._reading_paused[0])

    def test_flood_is_answered_not_queued(self) -> None:
        """CONNECTs past the per-peer circuit limit are refused at once, while the first
        ones wait for a target that never answers; those fail after the timeout."""
        server = self.relay(max_circuits_per_peer=3)
        _, bob, _ = self.peer(BOB_KEY, 3)
        self.bob_host = bob.host
        bob.host.set_handler(codec.STOP_PROTOCOL_ID, Silent)
        self.successResultOf(_flushed(self, client.reserve(bob)))
        _, alice, _ = self.peer(ALICE_KEY, 2)
        attempts = [client.connect(alice, BOB_KEY.peer_id()) for _ in range(20)]
        self.flush()
        refused = [self.failureResultOf(d, RelayRefused) for d in attempts[3:]]
        self.assertEqual({f.value.status for f in refused}, {codec.RESOURCE_LIMIT_EXCEEDED})
        self.assertEqual(server.resources.circuits, 3)
        self.assertNoResult(attempts[0])
        self.clock.advance(REQUEST_TIMEOUT)
        self.flush()
        for attempt in attempts[:3]:
            self.assertEqual(self.failureResultOf(attempt, RelayRefused).value.status, 203)
        self.assertEqual(server.resources.circuits, 0)
        self.assertEqual(
            server.stats.circuits_refused, {"circuits per peer": 17, "connection failed": 3}
        )

    def test_target_refuses(self) -> None:
        server = self.relay()
        _, bob, _ = self.peer(BOB_KEY, 3)
        bob.host.set_handler(
            codec.STOP_PROTOCOL_ID, lambda: StopHandler(lambda source, limit: None)
        )
        self.successResultOf(_flushed(self, client.reserve(bob)))
        _, alice, _ = self.peer(ALICE_KEY, 2)
        opened = client.connect(alice, BOB_KEY.peer_id())
        self.flush()
        self.assertEqual(self.failureResultOf(opened, RelayRefused).value.status, 203)
        self.assertEqual(server.resources.circuits, 0)

    def test_stop_connect_goes_with_the_proposal(self) -> None:
        """The target reserved, so it speaks stop: the relay's CONNECT does not wait for
        its protocol echo, and its echo and STATUS, read together, open the circuit."""
        server = self.relay()
        _, bob, _ = self.bob()
        seen = stream_data(bob)
        _, alice, _ = self.peer(ALICE_KEY, 2)
        opened = client.connect(alice, BOB_KEY.peer_id())
        self.flush()
        self.successResultOf(opened)
        connect = stop.connect_message(ALICE_KEY.peer_id(), server.limit)
        self.assertEqual(seen[0], _proposed(codec.STOP_PROTOCOL_ID, connect))
        self.assertEqual(server.stats.circuits_opened, 1)

    def test_hop_connect_goes_with_the_proposal(self) -> None:
        """The client's CONNECT does not wait for the relay's hop echo either."""
        self.relay()
        self.bob()
        _, alice, relay_end = self.peer(ALICE_KEY, 2)
        seen = stream_data(relay_end)
        opened = client.connect(alice, BOB_KEY.peer_id())
        self.flush()
        self.successResultOf(opened)
        connect = hop.connect_request(BOB_KEY.peer_id())
        self.assertEqual(seen[0], _proposed(codec.HOP_PROTOCOL_ID, connect))

    def test_connect_to_a_peer_without_hop(self) -> None:
        """A peer that is no relay refuses the proposal and the CONNECT sent with it."""
        _, alice, _ = self.peer(ALICE_KEY, 2)  # no relay installed
        opened = client.connect(alice, BOB_KEY.peer_id())
        self.flush()
        self.failureResultOf(opened, StreamFailed)
        self.assertEqual(alice.streams, [])
        self.assertTrue(alice.is_ready)

    def test_target_without_stop_is_connection_failed(self) -> None:
        """A target that reserved but refuses the stop protocol (and our CONNECT sent with
        the proposal): CONNECTION_FAILED, nothing held."""
        server = self.relay()
        _, bob, _ = self.peer(BOB_KEY, 3)
        self.successResultOf(_flushed(self, client.reserve(bob)))
        _, alice, _ = self.peer(ALICE_KEY, 2)
        opened = client.connect(alice, BOB_KEY.peer_id())
        self.flush()
        failure = self.failureResultOf(opened, RelayRefused)
        self.assertEqual(failure.value.status, codec.CONNECTION_FAILED)
        self.assertEqual(server.resources.circuits, 0)
        self.assertEqual(server.stats.circuits_refused, {"connection failed": 1})
        self.assertEqual(bob.streams, [])

    def test_circuit_lines_are_rate_limited(self) -> None:
        """Anyone may open circuits back to back: LOGGED_CIRCUITS per interval are
        logged (opened and closed), the others counted and their number logged."""
        self.relay()
        self.bob(Echo)
        _, alice, _ = self.peer(ALICE_KEY, 2)

        def circuit() -> None:
            opened = client.connect(alice, BOB_KEY.peer_id())
            self.flush()
            self.successResultOf(opened).stream.close()
            self.flush()

        with capturedLogs() as events:
            for _ in range(LOGGED_CIRCUITS + 2):
                circuit()
            self.clock.advance(LOGGED_CIRCUITS_INTERVAL)
            circuit()
        formats = [e["log_format"] for e in events]
        self.assertEqual(formats.count("{circuit} opened"), LOGGED_CIRCUITS + 1)
        self.assertEqual(sum("closed" in f for f in formats), LOGGED_CIRCUITS + 1)
        skipped = [e for e in events if e["log_format"] == "{count} circuits were not logged"]
        self.assertEqual([e["count"] for e in skipped], [2])
        self.assertEqual(formats[-3:-1], [skipped[0]["log_format"], "{circuit} opened"])

    def test_malformed_request_answered(self) -> None:
        server = self.relay()
        _, alice, _ = self.peer(ALICE_KEY, 2)
        recorder = Recorder()
        opened = alice.open_stream(codec.HOP_PROTOCOL_ID, recorder)
        self.flush()
        self.successResultOf(opened).write(b"\x02\x08\x02")  # a STATUS as a request
        self.flush()
        self.assertEqual(recorder.received, codec.hop_status(codec.UNEXPECTED_MESSAGE))
        self.assertTrue(recorder.ended)
        self.assertEqual(server.stats.circuits_refused, {"unexpected message": 1})

    def test_silent_hop_stream_times_out(self) -> None:
        self.relay()
        _, alice, _ = self.peer(ALICE_KEY, 2)
        recorder = Recorder()
        alice.open_stream(codec.HOP_PROTOCOL_ID, recorder)
        self.flush()
        self.clock.advance(REQUEST_TIMEOUT)
        self.flush()
        self.assertEqual(recorder.closed, ["reset by the peer"])


def _flushed(test: RelayFixture, deferred):  # type: ignore[no-untyped-def]
    test.flush()
    return deferred


class RelayedConnectionTests(RelayFixture):
    """A libp2p connection (Noise, yamux) over a circuit, and what it may not do."""

    def test_ping_over_a_circuit(self) -> None:
        server = self.relay()
        bob_host, bob, _ = self.peer(BOB_KEY, 3)
        relayed.accept_relayed(bob_host)
        bob_relay = RelayServer(bob_host, self.clock)  # bob is a relay too
        bob_relay.install()
        self.successResultOf(_flushed(self, client.reserve(bob)))
        alice_host, alice, _ = self.peer(ALICE_KEY, 2)
        dialled = relayed.dial_through(alice_host, succeed(alice), BOB_KEY.peer_id())
        self.flush()
        connection = self.successResultOf(dialled)
        self.assertTrue(connection.relayed)
        self.assertEqual(connection.remote_peer_id, BOB_KEY.peer_id())
        (bob_end,) = [c for c in bob_host.connections if c.relayed]
        self.assertEqual(bob_end.remote_peer_id, ALICE_KEY.peer_id())
        self.assertIn("/p2p-circuit/p2p/" + ALICE_KEY.peer_id_text(), bob_end.label)
        rtt = ping.ping(connection, self.clock)
        self.flush()
        self.assertEqual(self.successResultOf(rtt), 0.0)
        # Over the relayed connection, bob's relay refuses RESERVE and CONNECT.
        reserved = client.reserve(connection)
        opened = client.connect(connection, RELAY_KEY.peer_id())
        self.flush()
        self.assertEqual(self.failureResultOf(reserved, RelayRefused).value.status, 202)
        self.assertEqual(self.failureResultOf(opened, RelayRefused).value.status, 202)
        self.assertEqual(server.resources.circuits, 1)
        connection.close()
        self.flush()
        self.assertEqual(server.resources.circuits, 0)
        self.assertEqual([c for c in bob_host.connections if c.relayed], [])

    def test_circuit_multiaddr(self) -> None:
        relay_id, bob_id = RELAY_KEY.peer_id_text(), BOB_KEY.peer_id_text()
        parsed = relayed.CircuitMultiaddr.parse(
            f"/ip4/10.0.0.1/tcp/4010/p2p/{relay_id}/p2p-circuit/p2p/{bob_id}"
        )
        self.assertEqual(
            (parsed.relay.port, parsed.relay_id, parsed.target),
            (4010, RELAY_KEY.peer_id(), BOB_KEY.peer_id()),
        )
        for bad in [
            f"/ip4/10.0.0.1/tcp/4010/p2p/{relay_id}",
            f"/ip4/10.0.0.1/tcp/4010/p2p-circuit/p2p/{bob_id}",
            f"/ip4/10.0.0.1/tcp/4010/p2p/{relay_id}/p2p-circuit/p2p/nope",
        ]:
            self.assertRaises(InvalidMultiaddr, relayed.CircuitMultiaddr.parse, bad)


class KeeperTests(RelayFixture):
    def keeper(self) -> ReservationKeeper:
        host, _, _ = self.peer(BOB_KEY, 3)
        address = TCPAddress.parse(f"/ip4/10.0.0.1/tcp/4010/p2p/{RELAY_KEY.peer_id_text()}")
        keeper = ReservationKeeper(host, address, self.clock, self.clock)  # type: ignore[arg-type]
        keeper.start()
        self.addCleanup(keeper.stop)
        self.flush()
        return keeper

    def test_renews_before_expiry(self) -> None:
        server = self.relay(reservation_ttl=600)
        keeper = self.keeper()
        assert keeper.reservation is not None
        self.assertEqual(keeper.reservation.expire, 1_700_000_600)
        self.clock.advance(449)
        self.flush()
        self.assertEqual(keeper.renewals, 0)
        self.clock.advance(1)
        self.flush()
        self.assertEqual((keeper.renewals, keeper.reservation.expire), (1, 1_700_001_050))
        self.assertEqual(server.stats.reservations_renewed, 1)

    def test_retries_after_a_refusal(self) -> None:
        server = self.relay(Acl(frozenset([ALICE_KEY.peer_id()])))
        keeper = self.keeper()
        self.assertIsNone(keeper.reservation)
        self.assertEqual(keeper.failures, 1)
        self.clock.advance(1)
        self.flush()
        self.assertEqual(keeper.failures, 2)
        server.resources.acl = Acl()
        self.clock.advance(2)
        self.flush()
        self.assertIsNotNone(keeper.reservation)
        self.assertEqual(keeper.failures, 0)


class SpliceProperties(SynchronousTestCase):
    @settings(max_examples=20, deadline=None)
    @given(
        steps=st.lists(
            st.tuples(st.binary(min_size=1, max_size=100_000), st.booleans()), max_size=6
        )
    )
    def test_bytes_arrive_whole_and_in_order(self, steps: list[tuple[bytes, bool]]) -> None:
        """Any writes, with the target pausing and resuming its reading at any point:
        the target gets every byte once, in order, and the relay stays within bounds."""
        fixture = RelayTests("test_reservation")
        fixture.setUp()
        server = fixture.relay(circuit_bytes=10_000_000)
        fixture.bob(Recorder)
        _, alice, _ = fixture.peer(ALICE_KEY, 2)
        opened = client.connect(alice, BOB_KEY.peer_id())
        fixture.flush()
        circuit = self.successResultOf(opened)
        writer = Writer(b"")
        circuit.attach(writer)
        bob_side = fixture.bob_side[0]
        assert isinstance(bob_side, Recorder) and bob_side.stream is not None
        for data, pause in steps:
            if pause:
                bob_side.stream.pause_reading()
            else:
                bob_side.stream.resume_reading()
            writer.payload += data
            if not writer.paused:
                writer.resume_writing()
            fixture.flush()
            (relayed,) = server.circuits
            self.assertLessEqual(relayed.relayed[0] - len(bob_side.received), 2 * 256 * 1024)
        bob_side.stream.resume_reading()
        fixture.flush()
        self.assertEqual(bob_side.received, b"".join(data for data, _ in steps))


def _proposed(protocol_id: str, first: bytes) -> bytes:
    """A stream's first bytes when ``first`` goes with the proposal of ``protocol_id``."""
    return encode_message(PROTOCOL_ID) + encode_message(protocol_id) + first
