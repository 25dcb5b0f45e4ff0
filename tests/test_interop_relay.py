"""Interop of circuit relay v2 with js-libp2p 3.x (`npm ci` in interop/js-relay first):
js peers reserve on our relay and reach each other through it; our client reserves on a
js relay and is reached through it."""

from __future__ import annotations

import json
import os
import shutil

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks

from rendezvous.addrs import multiaddr_to_text
from rendezvous.p2p.host import Host
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.stream import StreamProtocol
from rendezvous.p2p.transport import TCPAddress
from rendezvous.pb.circuit_pb2 import Limit
from rendezvous.relay import client, codec, relayed
from rendezvous.relay.client import StopHandler

from .helpers import Collect
from .processes import P2P_LISTENING, ROOT, ProcessTestCase, node_missing

JS = os.path.join(ROOT, "interop", "js-relay")
NODE = shutil.which("node")
ECHO = "/rendezvous-test/echo/1.0.0"


class JsRelayBase(ProcessTestCase):
    """Spawns our relay and js scripts."""

    timeout = 120
    skip = node_missing("js-relay")

    @inlineCallbacks
    def start_relay(self, *flags: str):  # type: ignore[no-untyped-def]
        relay = self.twistd("rendezvous-relay", "--p2p-listen", "/ip4/127.0.0.1/tcp/0", *flags)
        match = yield relay.wait_for(P2P_LISTENING)
        return relay, match.group(1), match.group(2)

    @inlineCallbacks
    def run_script(self, script: str, *args: str):  # type: ignore[no-untyped-def]
        assert NODE is not None
        node = self.spawn([NODE, script, *args], JS)
        code = yield node.ended
        self.assertEqual(code, 0, node.output + node.errors)
        return json.loads(node.output.strip().splitlines()[-1])


class JsRelayInteropTests(JsRelayBase):
    @inlineCallbacks
    def test_js_peers_through_our_relay(self):  # type: ignore[no-untyped-def]
        """Bob (js) reserves on our relay, alice (js) dials his /p2p-circuit address;
        20000 bytes go each way; the js peers see our limit."""
        relay, target, _ = yield self.start_relay()
        result = yield self.run_script("peers.mjs", target, "20000")
        self.assertEqual(result["circuit"], f"{target}/p2p-circuit/p2p/{result['bob']}")
        self.assertTrue(result["replyOk"], result)
        self.assertIn(result["limits"]["seconds"], range(100, 121))
        yield relay.interrupt("TERM")
        log = relay.output + relay.errors
        self.assertNotIn("Traceback", log)
        self.assertIn(f"reservation made for {result['bob']}", log)
        self.assertIn(f"circuit {result['alice']} -> {result['bob']} opened", log)

    @inlineCallbacks
    def test_js_peers_through_our_relay_over_websocket(self):  # type: ignore[no-untyped-def]
        relay = self.twistd("rendezvous-relay", "--p2p-listen", "/ip4/127.0.0.1/tcp/0/ws")
        match = yield relay.wait_for(r"listening on (/ip4/127\.0\.0\.1/tcp/\d+/ws/p2p/\w+)")
        target = match.group(1)
        result = yield self.run_script("peers.mjs", target, "20000")
        self.assertEqual(result["circuit"], f"{target}/p2p-circuit/p2p/{result['bob']}")
        self.assertTrue(result["replyOk"], result)
        yield relay.interrupt("TERM")
        self.assertNotIn("Traceback", relay.output + relay.errors)

    @inlineCallbacks
    def test_data_limit_cuts_js_peers(self):  # type: ignore[no-untyped-def]
        relay, target, _ = yield self.start_relay("--circuit-bytes", "4096")
        result = yield self.run_script("peers.mjs", target, "20000")
        self.assertFalse(result["replyOk"], result)
        self.assertLess(result["replyBytes"], 20000)
        yield relay.interrupt("TERM")
        self.assertIn("data limit reached", relay.output + relay.errors)

    @inlineCallbacks
    def test_our_client_on_a_js_relay(self):  # type: ignore[no-untyped-def]
        """Our bob reserves on a js relay (voucher, addresses), our alice reaches him
        through it, and bytes go both ways."""
        assert NODE is not None
        node = self.spawn([NODE, "relay.mjs"], JS)
        match = yield node.wait_for(P2P_LISTENING)
        address = TCPAddress.parse(match.group(1))
        bob_key, alice_key = PrivateKey.generate(), PrivateKey.generate()
        bob_host = Host(bob_key, reactor)
        bob_side = Collect(reply=b"hello alice")
        sources: list[bytes] = []

        def accept(source: bytes, limit: Limit | None) -> StreamProtocol:
            sources.append(source)
            return bob_side

        bob_host.set_handler(codec.STOP_PROTOCOL_ID, lambda: StopHandler(accept))
        bob = yield bob_host.dial(address.client_endpoint(reactor), address.peer_id)
        self.addCleanup(bob.close)
        info = yield client.reserve(bob)
        self.assertTrue(info.addrs)
        for addr in info.addrs:
            self.assertTrue(multiaddr_to_text(addr).endswith("/p2p/" + match.group(2)))
        self.assertEqual(
            (info.voucher.relay, info.voucher.peer), (address.peer_id, bob_key.peer_id())
        )

        alice_host = Host(alice_key, reactor)
        alice = yield alice_host.dial(address.client_endpoint(reactor), address.peer_id)
        self.addCleanup(alice.close)
        circuit = yield client.connect(alice, bob_key.peer_id())
        alice_side = Collect()
        circuit.attach(alice_side)
        circuit.stream.write(b"hello bob")
        circuit.stream.close()
        self.assertEqual((yield bob_side.done), b"hello bob")
        self.assertEqual((yield alice_side.done), b"hello alice")
        self.assertEqual(sources, [alice_key.peer_id()])
        yield node.interrupt("TERM")


class Echo(StreamProtocol):
    def data_received(self, data: bytes) -> None:
        assert self.stream is not None
        self.stream.write(data)


class Expect(StreamProtocol):
    """Fires ``done`` once ``size`` bytes came back."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.received = b""
        self.done: Deferred[bytes] = Deferred()

    def data_received(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= self.size and not self.done.called:
            self.done.callback(self.received)


class RelayedConnectionInteropTests(JsRelayBase):
    """Whole libp2p connections (Noise, yamux) over circuits, between us and js."""

    @inlineCallbacks
    def test_js_dials_us_through_our_relay(self):  # type: ignore[no-untyped-def]
        relay, target, _ = yield self.start_relay()
        address = TCPAddress.parse(target)
        bob_host = Host(PrivateKey.generate(), reactor)
        relayed.accept_relayed(bob_host)
        bob_host.set_handler(ECHO, Echo)
        bob = yield bob_host.dial(address.client_endpoint(reactor), address.peer_id)
        self.addCleanup(bob.close)
        yield client.reserve(bob)
        circuit = f"{target}/p2p-circuit/p2p/{bob_host.identity.peer_id_text()}"
        result = yield self.run_script("echo.mjs", "dial", circuit, "50000")
        self.assertTrue(result["echoedOk"], result)
        self.assertEqual(result["remote"], bob_host.identity.peer_id_text())
        yield relay.interrupt("TERM")

    @inlineCallbacks
    def test_we_dial_js_through_a_js_relay(self):  # type: ignore[no-untyped-def]
        assert NODE is not None
        js_relay = self.spawn([NODE, "relay.mjs"], JS)
        match = yield js_relay.wait_for(P2P_LISTENING)
        listener = self.spawn([NODE, "echo.mjs", "listen", match.group(1)], JS)
        circuit = yield listener.wait_for(r"listening on (\S+/p2p-circuit/p2p/\w+)")
        alice_host = Host(PrivateKey.generate(), reactor)
        connection = yield relayed.dial_circuit(alice_host, circuit.group(1), reactor)
        self.addCleanup(connection.close)
        self.assertTrue(connection.relayed)
        expect = Expect(50000)
        stream = yield connection.open_stream(ECHO, expect)
        payload = bytes(i % 251 for i in range(50000))
        stream.write(payload)
        self.assertEqual((yield expect.done), payload)
        yield listener.interrupt("TERM")
        yield js_relay.interrupt("TERM")
