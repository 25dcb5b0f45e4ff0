"""The one module that touches private Twisted attributes: its check, its fast paths and
the public paths it falls back to, both serving real sessions."""

from __future__ import annotations

import socket
import subprocess
import sys

from twisted.internet import reactor, tcp
from twisted.internet.defer import ensureDeferred, inlineCallbacks
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from rendezvous import twisted_internals
from rendezvous.client.connect import connect_to
from rendezvous.client.live import Event
from rendezvous.p2p.keys import PrivateKey

from .processes import TWISTD, ProcessTestCase, environment


def _connection() -> tuple[tcp.Connection, socket.socket]:
    ours, theirs = socket.socketpair()
    transport = tcp.Connection(ours, None, reactor=object())  # type: ignore[arg-type]
    return transport, theirs


class PrivatePathTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.transport, self.peer = _connection()
        self.addCleanup(self.transport.socket.close)
        self.addCleanup(self.peer.close)

    def test_this_twisted_has_what_the_private_paths_need(self) -> None:
        self.assertTrue(twisted_internals.AVAILABLE)

    def test_nothing_queued_sends_at_once(self) -> None:
        sock = twisted_internals.direct_socket(self.transport)
        assert sock is not None
        rest = twisted_internals.send_now(self.transport, sock, b"push")
        self.assertEqual(rest, b"")
        self.assertEqual(self.peer.recv(10), b"push")

    def test_something_queued_goes_behind_it(self) -> None:
        sock = twisted_internals.direct_socket(self.transport)
        assert sock is not None
        self.transport.dataBuffer = b"earlier"
        self.assertEqual(twisted_internals.send_now(self.transport, sock, b"later"), b"later")

    def test_what_the_kernel_does_not_take_is_returned(self) -> None:
        sock = twisted_internals.direct_socket(self.transport)
        assert sock is not None
        sock.setblocking(False)
        big = b"x" * (8 * 1024 * 1024)
        rest = twisted_internals.send_now(self.transport, sock, big)
        self.assertTrue(0 < len(rest) < len(big))
        self.assertEqual(twisted_internals.send_now(self.transport, sock, rest), rest)  # full

    def test_only_plain_socket_transports(self) -> None:
        self.assertIsNone(twisted_internals.direct_socket(StringTransport()))
        self.assertTrue(twisted_internals.sends_itself(StringTransport()))
        self.assertFalse(twisted_internals.sends_itself(self.transport))
        twisted_internals.enlarge_buffer(self.transport, 127 * 1024)
        self.assertEqual(self.transport.bufferSize, 127 * 1024)


class PublicPathTests(SynchronousTestCase):
    """With the private paths off, every write goes through the transport."""

    def setUp(self) -> None:
        self.patch(twisted_internals, "AVAILABLE", False)
        self.transport, self.peer = _connection()
        self.addCleanup(self.transport.socket.close)
        self.addCleanup(self.peer.close)

    def test_no_socket_is_handed_out(self) -> None:
        self.assertIsNone(twisted_internals.direct_socket(self.transport))
        self.assertTrue(twisted_internals.sends_itself(self.transport))
        size = self.transport.bufferSize
        twisted_internals.enlarge_buffer(self.transport, size * 2)
        self.assertEqual(self.transport.bufferSize, size)

    def test_the_environment_turns_them_off_with_a_reason(self) -> None:
        code = "import rendezvous.twisted_internals as t; print(t.AVAILABLE, t._WHY_NOT)"
        for value, expected in (("1", "False RENDEZVOUS_PUBLIC_TWISTED=1"), ("0", "True None")):
            done = subprocess.run(
                [sys.executable, "-c", code],
                env={**environment(), "RENDEZVOUS_PUBLIC_TWISTED": value},
                capture_output=True,
                text=True,
                check=True,
            )
            self.assertEqual(done.stdout.strip(), expected)


class BothPathsServeTests(ProcessTestCase):
    """A real daemon with each path: a subscriber on raw TCP is pushed the REGISTER of a
    peer on libp2p (whose connection uses `flush` and `enlarge_buffer`), and the other
    way round."""

    timeout = 60

    @inlineCallbacks
    def serve(self, public: str):  # type: ignore[no-untyped-def]
        daemon = self.spawn(
            [
                *TWISTD,
                "-n",
                "--pidfile=",
                "rendezvous",
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--p2p-listen",
                "/ip4/127.0.0.1/tcp/0",
            ],
            env={"RENDEZVOUS_PUBLIC_TWISTED": public},
        )
        raw = yield daemon.wait_for(r"live dialect listening on tcp (127\.0\.0\.1:\d+)")
        p2p = yield daemon.wait_for(r"listening on (/ip4/127\.0\.0\.1/tcp/\d+/p2p/\w+)")
        servers = [raw.group(1), p2p.group(1)]
        for watching, registering in (servers, servers[::-1]):
            key = PrivateKey.generate()
            watcher = yield ensureDeferred(
                connect_to(reactor, watching, identity=PrivateKey.generate())
            )
            self.addCleanup(watcher.disconnect)
            seen: list[Event] = []
            yield watcher.rendezvous("app", seen.append)
            peer = yield ensureDeferred(connect_to(reactor, registering, identity=key))
            yield peer.register("app", key.peer_id_text())
            yield watcher.discover("app")  # a barrier: the push came before its answer
            self.assertEqual([e.entry.peer_id for e in seen], [key.peer_id_text()])
            peer.disconnect()
        said = "writing through Twisted's public interfaces only" in daemon.output
        self.assertEqual(said, public == "1")

    def test_private_paths(self):  # type: ignore[no-untyped-def]
        return self.serve("0")

    def test_public_paths(self):  # type: ignore[no-untyped-def]
        return self.serve("1")
