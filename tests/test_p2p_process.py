"""`twistd rendezvous --p2p-listen … --identity …` as a real process, dialled by our host."""

from __future__ import annotations

import os
import socket
import stat

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks

from rendezvous.live.stream import PROTOCOL_ID as LIVE
from rendezvous.p2p import identify, ping
from rendezvous.p2p.host import Host
from rendezvous.p2p.keys import PrivateKey, load_or_create_identity
from rendezvous.p2p.stream import StreamProtocol
from rendezvous.p2p.transport import TCPAddress
from rendezvous.pb.live_pb2 import Message

from .helpers import discover, framed, peer_id, unframe_all
from .processes import TWISTD, ProcessTestCase

P2P_LISTENING = r"listening on (/ip4/127\.0\.0\.1/tcp/(\d+))/p2p/(\w+)"


class Frames(StreamProtocol):
    """Collects live-dialect messages; `next` fires with the next one."""

    def __init__(self) -> None:
        self.buffer = b""
        self.messages: list[Message] = []
        self.waiting: list[Deferred[Message]] = []

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            messages = unframe_all(self.buffer)
        except (AssertionError, IndexError):
            return  # a frame is incomplete
        self.buffer = b""
        self.messages.extend(messages)
        while self.messages and self.waiting:
            self.waiting.pop(0).callback(self.messages.pop(0))

    def next(self) -> Deferred[Message]:
        d: Deferred[Message] = Deferred()
        if self.messages:
            d.callback(self.messages.pop(0))
        else:
            self.waiting.append(d)
        return d


class P2PDaemonTests(ProcessTestCase):
    timeout = 60

    def daemon_args(self, *extra: str) -> list[str]:
        return [
            *TWISTD,
            "-n",
            "--pidfile=",
            "rendezvous",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            *extra,
        ]

    @inlineCallbacks
    def test_identity_listen_ping_identify_live(self):  # type: ignore[no-untyped-def]
        key_path = os.path.join(self.cwd, "identity.key")
        daemon = self.spawn(
            self.daemon_args("--identity", key_path, "--p2p-listen", "/ip4/127.0.0.1/tcp/0")
        )
        match = yield daemon.wait_for(P2P_LISTENING)
        server_key = load_or_create_identity(key_path)
        self.assertEqual(stat.S_IMODE(os.stat(key_path).st_mode), 0o600)
        self.assertEqual(match.group(3), server_key.peer_id_text())
        port = int(match.group(2))
        self.assertNotEqual(port, 0)

        client_key = PrivateKey.generate()
        host = Host(client_key, reactor)
        address = TCPAddress("127.0.0.1", port)
        connection = yield host.dial(address.client_endpoint(reactor), server_key.peer_id())
        self.addCleanup(connection.close)
        rtt = yield ping.ping(connection, reactor)
        self.assertGreaterEqual(rtt, 0)
        info = yield identify.identify(connection)
        self.assertEqual(list(info.listenAddrs), [address.binary()])
        self.assertIn(LIVE, info.protocols)
        self.assertEqual(info.publicKey, server_key.public_key_bytes())

        frames = Frames()
        stream = yield connection.open_stream(LIVE, frames)
        mine = Message(type=Message.REGISTER)
        entry = mine.register.add(ns="ns")
        entry.peer.id = client_key.peer_id_text()
        entry.peer.addrs.append(address.binary())
        theirs = Message(type=Message.REGISTER, request_id=5)
        theirs.register.add(ns="ns").peer.id = peer_id("mallory")
        stream.write(framed(mine) + framed(theirs) + framed(discover("ns", request_id=6)))
        refused = yield frames.next()
        self.assertEqual((refused.type, refused.error.status, refused.request_id), (4, 200, 5))
        found = yield frames.next()
        self.assertEqual(found.request_id, 6)
        self.assertEqual([r.peer.id for r in found.register], [client_key.peer_id_text()])

        yield daemon.interrupt("TERM")
        self.assertEqual(daemon.output.count("listening on /ip4/"), 1)

    @inlineCallbacks
    def test_same_identity_after_restart(self):  # type: ignore[no-untyped-def]
        key_path = os.path.join(self.cwd, "identity.key")
        ids = []
        for _ in range(2):
            daemon = self.spawn(
                self.daemon_args("--identity", key_path, "--p2p-listen", "/ip4/127.0.0.1/tcp/0")
            )
            match = yield daemon.wait_for(P2P_LISTENING)
            ids.append(match.group(3))
            yield daemon.interrupt("TERM")
        self.assertEqual(ids[0], ids[1])

    @inlineCallbacks
    def test_bind_error_fails_start_up(self):  # type: ignore[no-untyped-def]
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            daemon = self.spawn(self.daemon_args("--p2p-listen", f"/ip4/127.0.0.1/tcp/{port}"))
            code = yield daemon.ended
        self.assertNotEqual(code, 0)
        self.assertIn("Address already in use", daemon.output + daemon.errors)

    @inlineCallbacks
    def test_bad_multiaddr_is_a_usage_error(self):  # type: ignore[no-untyped-def]
        daemon = self.spawn(self.daemon_args("--p2p-listen", "/ip4/127.0.0.1/udp/1"))
        code = yield daemon.ended
        self.assertNotEqual(code, 0)
        self.assertIn("--p2p-listen", daemon.output + daemon.errors)

    @inlineCallbacks
    def test_bad_identity_file_is_a_usage_error(self):  # type: ignore[no-untyped-def]
        key_path = os.path.join(self.cwd, "identity.key")
        with open(key_path, "wb") as f:
            f.write(b"not a key")
        daemon = self.spawn(self.daemon_args("--identity", key_path))
        code = yield daemon.ended
        self.assertNotEqual(code, 0)
        self.assertIn("--identity", daemon.output + daemon.errors)

    @inlineCallbacks
    def test_help(self):  # type: ignore[no-untyped-def]
        daemon = self.spawn([*TWISTD, "rendezvous", "--help"])
        self.assertEqual((yield daemon.ended), 0)
        for flag in ("--p2p-listen", "--identity"):
            self.assertIn(flag, daemon.output)
