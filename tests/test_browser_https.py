"""The browser example served over https, in headless Chromium: the daemon serves the
page with a TLS web listener and speaks libp2p over WebSocket over TLS (``/tls/ws``), a
relay likewise; two pages meet, chat and part, and reserve on the relay's ``/tls/ws``
address. The certificates come from a test CA, which Chromium is told to trust by the
leaf's public key (``--ignore-certificate-errors-spki-list``): nothing is downloaded."""

from __future__ import annotations

import base64
import hashlib
import json
import os

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet.defer import inlineCallbacks

from .certs import TestCA
from .processes import TWISTD, ProcessTestCase
from .test_browser import DIST, EXAMPLE, NODE, browser_missing, check_logs, check_pages_met

TLS_WS_LISTENING = r"listening on (/ip4/127\.0\.0\.1/tcp/\d+/tls/ws/p2p/(\w+))\n"
WEB_LISTENING = r"web listening on tcp 127\.0\.0\.1:(\d+) \(ssl:"
NAMESPACE = "browser-https-test"


def spki_hash(cert_path: str) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of the first certificate in ``cert_path``,
    as Chromium's ``--ignore-certificate-errors-spki-list`` takes it."""
    with open(cert_path, "rb") as f:
        certificate = x509.load_pem_x509_certificate(f.read())
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def _skip() -> str | None:
    """Why these pages cannot run here (a skip reason), or None."""
    reason = browser_missing()
    if reason is None and not os.path.isfile(os.path.join(DIST, "index.html")):
        reason = "examples/browser/dist is not built: run `npm run build` in examples/browser"
    return reason


class BrowserOverHttpsTests(ProcessTestCase):
    timeout = 180
    skip = _skip()

    def setUp(self) -> None:
        super().setUp()
        ca = TestCA(self.cwd)
        self.ca_path = ca.path
        self.cert, self.key, _ = ca.issue("server")

    @inlineCallbacks
    def test_two_pages_over_https_and_tls_websockets(self):  # type: ignore[no-untyped-def]
        tls = ("--p2p-tls-cert", self.cert, "--p2p-tls-key", self.key)
        daemon = self.twistd(
            "rendezvous",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0/tls/ws",
            *tls,
            "--web",
            f"ssl:0:interface=127.0.0.1:privateKey={self.key}:certKey={self.cert}",
            "--web-root",
            DIST,
        )
        listening = yield daemon.wait_for(TLS_WS_LISTENING)
        web = yield daemon.wait_for(WEB_LISTENING)
        rdv = listening.group(1)
        # The relay registers at the daemon's /tls/ws address too: its announcer checks
        # the daemon's certificate against the system's trust roots, which OpenSSL
        # takes from SSL_CERT_FILE (here: the test CA).
        relay = self.spawn(
            [
                *TWISTD,
                "-n",
                "--pidfile=",
                "rendezvous-relay",
                "--p2p-listen",
                "/ip4/127.0.0.1/tcp/0/tls/ws",
                *tls,
                "--announce-to",
                rdv,
            ],
            env={"SSL_CERT_FILE": self.ca_path},
        )
        relay_listening = yield relay.wait_for(TLS_WS_LISTENING)
        yield relay.wait_for(r"registered in rendezvous/relays at /ip4/127\.0\.0\.1/tcp/\d+/tls/ws")
        relay_address = relay_listening.group(1)

        page = f"https://127.0.0.1:{web.group(1)}/app/"
        assert NODE is not None
        # Without being told, Chromium refuses the test CA's certificate.
        untrusting = self.spawn([NODE, "test/two-pages.mjs", page, rdv, NAMESPACE], EXAMPLE)
        self.assertEqual((yield untrusting.ended), 0, untrusting.output + untrusting.errors)
        refused = json.loads(untrusting.output.strip().splitlines()[-1])
        self.assertIn("net::ERR_CERT_AUTHORITY_INVALID", refused.get("error", ""), refused)

        driver = self.spawn(
            [NODE, "test/two-pages.mjs", page, rdv, NAMESPACE],
            EXAMPLE,
            env={"CHROMIUM_ARGS": f"--ignore-certificate-errors-spki-list={spki_hash(self.cert)}"},
        )
        code = yield driver.ended
        self.assertEqual(code, 0, driver.output + driver.errors)
        result = json.loads(driver.output.strip().splitlines()[-1])
        print(f"\nbrowser example over https: {json.dumps(result)}")
        check_pages_met(self, result)
        # both reserved on the relay's /tls/ws address (the only one it has)
        for side in ("a", "b"):
            self.assertIn(f"relay {relay_address} ", result["relay"][side], result)
        self.assertIn("/tls/ws/p2p/", relay_address)
        self.assertIn(result["messageVia"], ("webrtc", "relay"), result)
        yield relay.interrupt("TERM")
        yield daemon.interrupt("TERM")
        check_logs(self, daemon, relay, result)
