"""libp2p over WebSocket over TLS (``/tls/ws``, ``/wss``): certificates that load or are
refused with a reason, SIGHUP reloads, and real peers (ours, js-libp2p) that trust a
test CA."""

from __future__ import annotations

import json
import os
import shutil

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import SSL4ClientEndpoint
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from rendezvous.client.p2p import LiveClientStream
from rendezvous.live.stream import PROTOCOL_ID
from rendezvous.p2p.host import Host
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.listen import check_tls_options
from rendezvous.p2p.tls import CertificateError, ReloadableCertificate, load_context
from rendezvous.p2p.transport import TCPAddress

from .certs import TestCA
from .processes import ROOT, ProcessTestCase, node_missing

TLS_LISTENING = r"listening on (/ip4/127\.0\.0\.1/tcp/(\d+)/(?:tls/ws|wss)/p2p/(\w+))"


class AddressTests(SynchronousTestCase):
    def test_both_spellings(self) -> None:
        for text in ("/ip4/127.0.0.1/tcp/443/tls/ws", "/ip4/127.0.0.1/tcp/443/wss"):
            address = TCPAddress.parse(text)
            self.assertTrue(address.ws and address.tls)
            self.assertEqual(address.text(), text)
            self.assertEqual(address.with_port(80).text(), text.replace("443", "80"))
        plain = TCPAddress.parse("/ip4/127.0.0.1/tcp/443/ws")
        self.assertFalse(plain.tls)


class CertificateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = self.mktemp()
        os.makedirs(self.folder)
        self.ca = TestCA(self.folder)
        self.cert, self.key, _ = self.ca.issue("server")

    def test_loads_a_chain_and_its_key(self) -> None:
        load_context(self.cert, self.key)

    def test_refusals_say_why(self) -> None:
        other_cert, other_key, _ = self.ca.issue("other")
        garbage = os.path.join(self.folder, "garbage.pem")
        with open(garbage, "w") as f:
            f.write("not a certificate\n")
        cases = [
            (os.path.join(self.folder, "missing.pem"), self.key, "cannot load the certificate"),
            (garbage, self.key, "cannot load the certificate"),
            (self.cert, garbage, "cannot load the key"),
            (self.cert, other_key, "does not match the certificate"),
        ]
        for cert, key, words in cases:
            with self.assertRaises(CertificateError) as caught:
                load_context(cert, key)
            self.assertIn(words, str(caught.exception))
        self.assertIsNone(load_context(other_cert, other_key).get_app_data())

    def test_a_failed_reload_keeps_the_certificate(self) -> None:
        certificate = ReloadableCertificate(self.cert, self.key)
        before = certificate.serverConnectionForTLS(None).get_context()
        with open(self.cert, "w") as f:
            f.write("broken")
        self.assertFalse(certificate.reload())
        self.assertIs(certificate.serverConnectionForTLS(None).get_context(), before)
        renewed_cert, renewed_key, _ = self.ca.issue("renewed")
        shutil.copy(renewed_cert, self.cert)
        shutil.copy(renewed_key, self.key)
        self.assertTrue(certificate.reload())
        self.assertIsNot(certificate.serverConnectionForTLS(None).get_context(), before)

    def test_options(self) -> None:
        listen = ["/ip4/0.0.0.0/tcp/443/tls/ws"]
        check_tls_options(listen, self.cert, self.key)
        check_tls_options(["/ip4/0.0.0.0/tcp/80/ws"], None, None)
        for args, words in [
            ((listen, None, None), "needs --p2p-tls-cert and --p2p-tls-key"),
            ((["/ip4/0.0.0.0/tcp/80/ws"], self.cert, self.key), "need a /tls/ws"),
            ((listen, self.key, self.key), "cannot load the certificate"),
        ]:
            with self.assertRaises(usage.UsageError) as caught:
                check_tls_options(*args)
            self.assertIn(words, str(caught.exception))


@implementer(IHandshakeListener)
class _Probe(Protocol):
    """Reports the serial number of the server's certificate once TLS is up."""

    def __init__(self, serial: Deferred[int]) -> None:
        self.serial = serial

    def handshakeCompleted(self) -> None:
        certificate = self.transport.getPeerCertificate()  # type: ignore[union-attr]
        self.serial.callback(certificate.get_serial_number())
        self.transport.loseConnection()  # type: ignore[union-attr]


class TLSDaemonTests(ProcessTestCase):
    timeout = 90

    def setUp(self) -> None:
        super().setUp()
        self.ca = TestCA(self.cwd)
        self.cert, self.key, self.serial = self.ca.issue("server")
        self.trust = optionsForClientTLS("127.0.0.1", trustRoot=Certificate.loadPEM(self.ca.pem))

    @inlineCallbacks
    def start(self, spelling: str = "tls/ws"):  # type: ignore[no-untyped-def]
        daemon = self.twistd(
            "rendezvous",
            "--p2p-listen",
            f"/ip4/127.0.0.1/tcp/0/{spelling}",
            "--p2p-tls-cert",
            self.cert,
            "--p2p-tls-key",
            self.key,
        )
        match = yield daemon.wait_for(TLS_LISTENING)
        return daemon, match.group(1), int(match.group(2))

    def served_serial(self, port: int) -> Deferred[int]:
        serial: Deferred[int] = Deferred()
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", port, self.trust)
        endpoint.connect(Factory.forProtocol(lambda: _Probe(serial)))
        return serial

    @inlineCallbacks
    def session(self, address: str):  # type: ignore[no-untyped-def]
        """A live-dialect session over libp2p over wss, checked against the test CA."""
        target = TCPAddress.parse(address)
        self.identity = PrivateKey.generate()
        host = Host(self.identity, reactor)  # type: ignore[arg-type]
        endpoint = target.client_endpoint(reactor, tls_options=self.trust)  # type: ignore[arg-type]
        connection = yield host.dial(endpoint, target.peer_id)
        self.addCleanup(connection.close)
        client = LiveClientStream()
        yield connection.open_stream(PROTOCOL_ID, client)
        return client

    @inlineCallbacks
    def test_sighup_reloads_for_new_connections_and_keeps_open_ones(self):  # type: ignore[no-untyped-def]
        daemon, address, port = yield self.start()
        self.assertEqual((yield self.served_serial(port)), self.serial)
        client = yield self.session(address)
        yield client.register("app", self.identity.peer_id_text())

        renewed_cert, renewed_key, renewed = self.ca.issue("renewed")
        shutil.copy(renewed_cert, self.cert)
        shutil.copy(renewed_key, self.key)
        daemon.transport.signalProcess("HUP")
        yield daemon.wait_for("reloaded the TLS certificate")
        self.assertEqual((yield self.served_serial(port)), renewed)
        # The session opened before the reload goes on.
        found = yield client.discover("app")
        self.assertEqual(len(found), 1)

        with open(self.cert, "w") as f:
            f.write("half-written renewal")
        daemon.transport.signalProcess("HUP")
        yield daemon.wait_for("keeping the TLS certificate in use: cannot load the certificate")
        self.assertEqual((yield self.served_serial(port)), renewed)

    @inlineCallbacks
    def test_wss_spelling_and_a_bad_certificate_at_start_up(self):  # type: ignore[no-untyped-def]
        _, address, _ = yield self.start("wss")
        self.assertIn("/wss/p2p/", address)
        client = yield self.session(address)
        self.assertEqual((yield client.discover("app")), [])
        _, other_key, _ = self.ca.issue("other")
        bad = self.twistd(
            "rendezvous",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0/tls/ws",
            "--p2p-tls-cert",
            self.cert,
            "--p2p-tls-key",
            other_key,
        )
        self.assertNotEqual((yield bad.ended), 0)
        self.assertIn("does not match the certificate", bad.output + bad.errors)

    @inlineCallbacks
    def test_js_libp2p_peer_that_trusts_the_ca(self):  # type: ignore[no-untyped-def]
        reason = node_missing("js")
        if reason:
            self.skipTest(reason)
        node = shutil.which("node")
        assert node is not None
        _, address, _ = yield self.start()
        js = self.spawn(
            [node, "ping.mjs", address],
            os.path.join(ROOT, "interop", "js"),
            env={"NODE_EXTRA_CA_CERTS": self.ca.path},
        )
        code = yield js.ended
        self.assertEqual(code, 0, js.output + js.errors)
        report = json.loads(js.output.strip().splitlines()[-1])
        self.assertEqual(report["peerId"], address.rsplit("/", 1)[1])
