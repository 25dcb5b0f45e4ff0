"""`twistd rendezvous --require-peer-certificates` on an ssl: listener, and the
`rendezvous` client proving its --identity with a libp2p TLS certificate."""

from __future__ import annotations

import os
import sys

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.web.client import Agent, readBody

from rendezvous.p2p.keys import PrivateKey, load_or_create_identity

from .certs import TestCA
from .processes import CLI, ProcessTestCase

LIVE_LISTENING = r"live dialect listening on tcp 127\.0\.0\.1:(\d+) \(ssl:"
METRICS_LISTENING = r"metrics listening on tcp 127\.0\.0\.1:(\d+)"


class RequiredPeerCertificateProcessTests(ProcessTestCase):
    timeout = 60

    @inlineCallbacks
    def test_proven_identity_over_ssl(self):  # type: ignore[no-untyped-def]
        cert_path, key_path, _ = TestCA(self.cwd).issue("server")
        daemon = self.twistd(
            "rendezvous",
            "--listen",
            f"ssl:0:interface=127.0.0.1:privateKey={key_path}:certKey={cert_path}",
            "--require-peer-certificates",
            "--metrics",
            "tcp:0:interface=127.0.0.1",
        )
        port = (yield daemon.wait_for(LIVE_LISTENING)).group(1)
        metrics = (yield daemon.wait_for(METRICS_LISTENING)).group(1)
        server = f"ssl:host=127.0.0.1:port={port}"
        # trustRoots names the test CA: the client checks the server as well
        verified = f"tls:host=127.0.0.1:port={port}:trustRoots={self.cwd}"
        identity_path = os.path.join(self.cwd, "client.key")

        registered = self.spawn([*CLI, "register", verified, "app", "--identity", identity_path])
        yield registered.wait_for(r"registered .*\n")
        me = load_or_create_identity(identity_path).peer_id_text()
        self.assertEqual(registered.output, f"registered {me} in app\n")

        stranger = PrivateKey.generate().peer_id_text()
        other = self.spawn(
            [*CLI, "register", server, "app", "--once", "--identity", identity_path,
             "--id", stranger]
        )  # fmt: skip
        self.assertEqual((yield other.ended), 1, other.output + other.errors)
        self.assertIn("peer id differs from the authenticated one", other.errors)

        anonymous = self.spawn([*CLI, "discover", server, "app"])
        self.assertEqual((yield anonymous.ended), 1, anonymous.output + anonymous.errors)
        self.assertIn("a libp2p peer certificate is required", anonymous.errors)
        yield daemon.wait_for(
            r"refused [^\n]*NOT_AUTHORIZED \(200\) peer certificate refused: "
            r"a libp2p peer certificate is required"
        )

        discover = self.spawn([*CLI, "discover", server, "app", "--identity", identity_path])
        self.assertEqual((yield discover.ended), 0, discover.errors)
        self.assertEqual(discover.output, f"{me}\n")

        response = yield Agent(reactor).request(
            b"GET", f"http://127.0.0.1:{metrics}/metrics".encode()
        )
        text = (yield readBody(response)).decode()
        self.assertIn('rendezvous_refusals_total{reason="peer_certificate_missing"} 1.0', text)
        self.assertIn('rendezvous_refusals_total{reason="not_authorized"} 1.0', text)

        self.assertEqual((yield registered.interrupt()), 0, registered.errors)
        yield daemon.interrupt("TERM")
        self.assertNotIn("Traceback", daemon.output + daemon.errors)


class WithoutPyOpenSSLTests(ProcessTestCase):
    timeout = 60

    @inlineCallbacks
    def test_importable(self):  # type: ignore[no-untyped-def]
        """pyOpenSSL is an extra: plain listeners and clients do without it."""
        check = self.spawn(
            [
                sys.executable,
                "-c",
                "import sys; sys.modules['OpenSSL'] = None; "
                "import rendezvous.service, rendezvous.client.cli, rendezvous.client.connect; "
                "print('imported')",
            ]
        )
        self.assertEqual((yield check.ended), 0, check.errors)
        self.assertEqual(check.output, "imported\n")
