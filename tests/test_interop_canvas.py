"""Interop of the standard dialect with js-libp2p 2.x and @canvas-js/libp2p-rendezvous
(`npm ci` in interop/js-canvas first): js clients against our daemon, our client against
a js server, and a raw-TCP live subscriber told of a js registration and its expiry."""

from __future__ import annotations

import json
import os
import shutil

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from rendezvous.client.standard import open_point
from rendezvous.framing import FrameDecoder
from rendezvous.p2p.envelope import PeerRecord, open_peer_record, seal_peer_record
from rendezvous.p2p.host import Host
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.transport import TCPAddress
from rendezvous.pb.live_pb2 import Message as LiveMessage
from rendezvous.pb.rendezvous_pb2 import Message
from rendezvous.standard.stream import CANVAS_PROTOCOL_ID, PROTOCOL_ID

from .helpers import framed, rendezvous, tcp_addr
from .processes import P2P_LISTENING, ROOT, ProcessTestCase, node_missing

JS = os.path.join(ROOT, "interop", "js-canvas")
NODE = shutil.which("node")
LIVE_LISTENING = r"live dialect listening on tcp 127\.0\.0\.1:(\d+)"


class LiveWatcher(Protocol):
    """A raw-TCP live-dialect subscriber whose messages can be awaited one by one."""

    def __init__(self) -> None:
        self.decoder = FrameDecoder(1 << 20)
        self.messages: list[LiveMessage] = []
        self.waiting: list[Deferred[LiveMessage]] = []

    def dataReceived(self, data: bytes) -> None:
        for payload in self.decoder.feed(data):
            message = LiveMessage()
            message.ParseFromString(payload)
            if self.waiting:
                self.waiting.pop(0).callback(message)
            else:
                self.messages.append(message)

    def next(self) -> Deferred[LiveMessage]:
        if self.messages:
            d: Deferred[LiveMessage] = Deferred()
            d.callback(self.messages.pop(0))
            return d
        d = Deferred()
        self.waiting.append(d)
        return d


class CanvasInteropTests(ProcessTestCase):
    timeout = 120
    skip = node_missing("js-canvas")

    @inlineCallbacks
    def start_daemon(self, *flags: str):  # type: ignore[no-untyped-def]
        daemon = self.twistd(
            "rendezvous",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            *flags,
        )
        match = yield daemon.wait_for(P2P_LISTENING)
        live = yield daemon.wait_for(LIVE_LISTENING)
        return daemon, match.group(1), int(live.group(1))

    @inlineCallbacks
    def run_client(self, *args: str):  # type: ignore[no-untyped-def]
        assert NODE is not None
        node = self.spawn([NODE, "client.mjs", *args], JS)
        code = yield node.ended
        self.assertEqual(code, 0, node.output + node.errors)
        return json.loads(node.output.strip().splitlines()[-1])

    @inlineCallbacks
    def check_js_clients(self, protocol_id: str):  # type: ignore[no-untyped-def]
        daemon, target, _ = yield self.start_daemon()
        result = yield self.run_client(target, protocol_id)
        self.assertEqual((result["aliceTtl"], result["bobTtl"]), (7200, 7200))
        alice_listen = result["aliceAddrs"][0].split("/p2p/")[0]
        discovered = {peer["id"]: peer["addrs"] for peer in result["discovered"]}
        self.assertEqual(discovered, {result["alice"]: [alice_listen]})  # canvas hides bob
        self.assertEqual(result["badTtl"], "E_INVALID_TTL")
        self.assertEqual(result["afterUnregister"], [])
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", daemon.output + daemon.errors)

    def test_js_clients_on_the_standard_id(self):  # type: ignore[no-untyped-def]
        """A js-libp2p peer registers and discovers through /rendezvous/1.0.0."""
        return self.check_js_clients(PROTOCOL_ID)

    def test_js_clients_on_the_canvas_id(self):  # type: ignore[no-untyped-def]
        """@canvas-js/libp2p-rendezvous unchanged, on /canvas/rendezvous/1.0.0."""
        return self.check_js_clients(CANVAS_PROTOCOL_ID)

    @inlineCallbacks
    def check_our_client(self, protocol_id: str):  # type: ignore[no-untyped-def]
        assert NODE is not None
        server = self.spawn([NODE, "server.mjs", protocol_id], JS)
        match = yield server.wait_for(P2P_LISTENING)
        address = TCPAddress.parse(match.group(1))
        records = {}
        points = []
        for seed in (b"a", b"b"):
            key = PrivateKey.from_seed(seed * 32)
            host = Host(key, reactor)
            connection = yield host.dial(address.client_endpoint(reactor), address.peer_id)
            self.addCleanup(connection.close)
            record = seal_peer_record(key, PeerRecord(key.peer_id(), 7, (tcp_addr(seed[0]),)))
            point = yield open_point(connection, protocol_id)
            answer = yield point.register("py-app", record, 3600)
            self.assertEqual(answer.type, Message.REGISTER_RESPONSE)
            self.assertEqual(
                (answer.registerResponse.status, answer.registerResponse.ttl), (Message.OK, 3600)
            )
            records[key.peer_id()] = record
            points.append(point)
        found = yield points[1].discover("py-app")
        self.assertEqual(found.discoverResponse.status, Message.OK)
        returned = {r.signedPeerRecord for r in found.discoverResponse.registrations}
        self.assertEqual(returned, set(records.values()))  # byte for byte
        for entry in found.discoverResponse.registrations:
            peer_record, _ = open_peer_record(entry.signedPeerRecord)
            self.assertEqual(entry.ns, "py-app")
            self.assertIn(peer_record.peer_id, records)
            self.assertLessEqual(entry.ttl, 3600)
        points[0].unregister("py-app")
        after = yield points[0].discover("py-app")
        ids = [
            open_peer_record(r.signedPeerRecord)[0].peer_id
            for r in after.discoverResponse.registrations
        ]
        self.assertEqual(ids, [PrivateKey.from_seed(b"b" * 32).peer_id()])
        for point in points:
            point.close()
        yield server.interrupt("TERM")

    def test_our_client_against_js_server_standard_id(self):  # type: ignore[no-untyped-def]
        """Our client registers and discovers against a js-libp2p rendezvous server."""
        return self.check_our_client(PROTOCOL_ID)

    def test_our_client_against_js_server_canvas_id(self):  # type: ignore[no-untyped-def]
        return self.check_our_client(CANVAS_PROTOCOL_ID)

    @inlineCallbacks
    def test_live_subscriber_sees_js_registration_and_its_expiry(self):  # type: ignore[no-untyped-def]
        """A raw-TCP live subscriber is pushed a js peer's /rendezvous/1.0.0 REGISTER, then
        its UNREGISTER when the (short, configured) TTL ends."""
        daemon, target, live_port = yield self.start_daemon(
            "--ttl-min", "1", "--ttl-default", "2", "--ttl-max", "60"
        )
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", live_port)
        watcher = yield connectProtocol(endpoint, LiveWatcher())
        self.addCleanup(watcher.transport.loseConnection)
        watcher.transport.write(framed(rendezvous("expiring")))
        result = yield self.run_client(target, PROTOCOL_ID, "register", "expiring", "3")
        self.assertEqual(result["aliceTtl"], 3)
        pushed = yield watcher.next()
        self.assertEqual(pushed.type, LiveMessage.REGISTER)
        [entry] = pushed.register
        self.assertEqual((entry.ns, entry.peer.id), ("expiring", result["alice"]))
        record, _ = open_peer_record(entry.peer.signed_peer_record)
        self.assertEqual(list(record.addrs), list(entry.peer.addrs))
        gone = yield watcher.next()
        self.assertEqual(gone.type, LiveMessage.UNREGISTER)
        self.assertEqual(gone.unregister[0].peer.id, result["alice"])
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", daemon.output + daemon.errors)
