"""Proven identities on the live dialect's ssl: listeners: libp2p TLS certificates
checked by a real daemon on loopback, presented by the client library."""

from __future__ import annotations

import os
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL, crypto
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, inlineCallbacks
from twisted.internet.endpoints import SSL4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.ssl import CertificateOptions, PrivateCertificate
from twisted.python import usage
from twisted.trial.unittest import TestCase

from rendezvous._tap import Options as TapOptions
from rendezvous.client import cli
from rendezvous.client.connect import connect_to, connector
from rendezvous.client.errors import NotAuthorized
from rendezvous.client.live import LiveClientProtocol, connect
from rendezvous.client.peertls import identity_endpoint, is_tls_target, parse_tls_target
from rendezvous.limits import Limits
from rendezvous.live.peertls import MISSING, PeerCertificates, RequestPeerCertificates
from rendezvous.p2p.keys import PrivateKey, load_or_create_identity
from rendezvous.peercert import (
    EXTENSION_OID,
    SIGNATURE_PREFIX,
    PeerCertificateError,
    encode_signed_key,
    make_certificate,
)
from rendezvous.service import Daemon, DaemonConfig

from .certs import TestCA, hand_made
from .test_integration import Watcher

NOW = 1_800_000_000.0


class FakeTLSTransport:
    def __init__(self, certificate: x509.Certificate | None) -> None:
        self.certificate = certificate

    def getPeerCertificate(self) -> crypto.X509 | None:
        if self.certificate is None:
            return None
        return crypto.X509.from_cryptography(self.certificate)


def plain_certificate(now: float) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed client certificate without the libp2p extension."""
    key = ec.generate_private_key(ec.SECP256R1())
    return hand_made(key, None, now=now, lifetime=3600), key


def forged_certificate(
    victim: PrivateKey, stranger: PrivateKey, now: float
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate naming ``victim``'s key, signed by ``stranger``'s."""
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    value = encode_signed_key(victim.public_key_bytes(), stranger.sign(SIGNATURE_PREFIX + spki))
    return hand_made(key, value, now=now, lifetime=3600), key


class PeerCertificatesTests(TestCase):
    def test_proven_identity(self) -> None:
        identity = PrivateKey.generate()
        certificate, _ = make_certificate(identity, NOW)
        for required in (False, True):
            checker = PeerCertificates(lambda: NOW, required)
            key = checker.identity(FakeTLSTransport(certificate))  # type: ignore[arg-type]
            self.assertEqual(key, identity.public_key())

    def test_no_certificate(self) -> None:
        transport: Any = FakeTLSTransport(None)
        self.assertIsNone(PeerCertificates(lambda: NOW).identity(transport))
        with self.assertRaises(PeerCertificateError) as raised:
            PeerCertificates(lambda: NOW, required=True).identity(transport)
        self.assertEqual(raised.exception.reason, MISSING)

    def test_certificate_without_the_extension(self) -> None:
        transport: Any = FakeTLSTransport(plain_certificate(NOW)[0])
        self.assertIsNone(PeerCertificates(lambda: NOW).identity(transport))
        with self.assertRaises(PeerCertificateError) as raised:
            PeerCertificates(lambda: NOW, required=True).identity(transport)
        self.assertEqual(raised.exception.reason, PeerCertificateError.NO_EXTENSION)

    def test_invalid_certificates_are_refused_even_when_optional(self) -> None:
        identity = PrivateKey.generate()
        certificate, _ = make_certificate(identity, NOW, lifetime=60)
        checker = PeerCertificates(lambda: NOW + 61)
        with self.assertRaises(PeerCertificateError) as raised:
            checker.identity(FakeTLSTransport(certificate))  # type: ignore[arg-type]
        self.assertEqual(raised.exception.reason, PeerCertificateError.EXPIRED)
        forged, _ = forged_certificate(identity, PrivateKey.generate(), NOW)
        with self.assertRaises(PeerCertificateError) as raised:
            PeerCertificates(lambda: NOW).identity(FakeTLSTransport(forged))  # type: ignore[arg-type]
        self.assertEqual(raised.exception.reason, PeerCertificateError.BAD_SIGNATURE)

    def test_not_a_certificate(self) -> None:
        class Odd:
            def getPeerCertificate(self) -> object:
                return "certificate"

        with self.assertRaises(PeerCertificateError) as raised:
            PeerCertificates(lambda: NOW).identity(Odd())  # type: ignore[arg-type]
        self.assertEqual(raised.exception.reason, PeerCertificateError.MALFORMED)


class RequestPeerCertificatesTests(TestCase):
    def test_asks_for_an_optional_certificate_once(self) -> None:
        folder = self.mktemp()
        os.makedirs(folder)
        cert_path, key_path, _ = TestCA(folder).issue("server")
        with open(cert_path, "rb") as c, open(key_path, "rb") as k:
            own = PrivateCertificate.loadPEM(c.read() + k.read())
        options = CertificateOptions(privateKey=own.privateKey.original, certificate=own.original)
        requesting = RequestPeerCertificates(options)
        context = requesting.getContext()
        self.assertIs(context, options.getContext())
        self.assertEqual(context.get_verify_mode(), SSL.VERIFY_PEER)
        self.assertIs(requesting.getContext(), context)


class TargetTests(TestCase):
    def test_tls_and_ssl(self) -> None:
        self.assertTrue(is_tls_target("tls:host=a:port=1"))
        self.assertTrue(is_tls_target("ssl:a:1"))
        self.assertFalse(is_tls_target("tcp:host=a:port=1"))
        target = parse_tls_target("tls:host=rdv.example.org:port=4443:timeout=5")
        self.assertEqual(
            (target.kind, target.host, target.port, target.timeout, target.trust_roots),
            ("tls", "rdv.example.org", 4443, 5, None),
        )
        target = parse_tls_target("ssl:127.0.0.1:4443:hostname=localhost:bindAddress=127.0.0.2")
        self.assertEqual(
            (target.kind, target.host, target.port, target.hostname, target.bind_address),
            ("ssl", "127.0.0.1", 4443, "localhost", "127.0.0.2"),
        )
        target = parse_tls_target(r"tls:host=\:\:1:port=1")
        self.assertEqual(target.host, "::1")

    def test_trust_roots(self) -> None:
        folder = self.mktemp()
        os.makedirs(folder)
        target = parse_tls_target(f"ssl:host=a:port=1:caCertsDir={folder}")
        self.assertEqual(target.trust_roots, folder)
        self.assertRaises(ValueError, parse_tls_target, "tls:host=a:port=1:trustRoots=/nowhere")

    def test_refused(self) -> None:
        for description, words in [
            ("tcp:host=a:port=1", "not a tls: or ssl:"),
            ("tls:host=a:port=1:certificate=c.pem", "conflicts with the identity"),
            ("ssl:host=a:port=1:certKey=c.pem", "conflicts with the identity"),
            ("ssl:host=a:port=1:privateKey=k.pem", "conflicts with the identity"),
            ("tls:host=a:port=1:caCertsDir=x", "unknown tls: parameter"),
            ("tls:host=a", "needs host and port"),
            ("tls:a:1:2", "too many"),
            ("tls:a:port=1:host=b", "given twice"),
            ("tls:host=a:port=x", "must be integers"),
            ("tls:host=a:port=70000", "out of range"),
        ]:
            with self.assertRaises(ValueError, msg=description) as raised:
                parse_tls_target(description)
            self.assertIn(words, str(raised.exception), description)

    def test_plain_target_with_identity(self) -> None:
        self.assertRaises(ValueError, connect, reactor, "127.0.0.1:1", PrivateKey.generate())


class SSLListenerTests(TestCase):
    """A daemon with an ssl: listener, on loopback."""

    required = False

    def setUp(self) -> None:
        folder = self.mktemp()
        os.makedirs(folder)
        cert_path, key_path, _ = TestCA(folder).issue("server")
        self.daemon = Daemon(
            DaemonConfig(
                listen=(f"ssl:0:interface=127.0.0.1:privateKey={key_path}:certKey={cert_path}",),
                limits=Limits(),
                require_peer_certificates=self.required,
            ),
            reactor,
        )
        self.daemon.privilegedStartService()
        self.daemon.startService()
        self.addCleanup(self.daemon.stopService)
        port = self.daemon.live_ports[0].getHost().port  # type: ignore[attr-defined]
        self.server = f"ssl:host=127.0.0.1:port={port}"
        self.port = port

    @inlineCallbacks
    def client(self, identity: PrivateKey | None = None):  # type: ignore[no-untyped-def]
        client = yield connect(reactor, self.server, identity)
        self.addCleanup(self.disconnect, client)
        return client

    @inlineCallbacks
    def client_with(self, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey):  # type: ignore[no-untyped-def]
        """A session presenting ``certificate`` as it is."""
        own = PrivateCertificate.loadPEM(
            certificate.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        options = CertificateOptions(privateKey=own.privateKey.original, certificate=own.original)
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", self.port, options)
        client = yield endpoint.connect(Factory.forProtocol(LiveClientProtocol))
        self.addCleanup(self.disconnect, client)
        return client

    def disconnect(self, client: LiveClientProtocol) -> Deferred[None] | None:
        if client.connected and client.transport is not None:
            client.transport.loseConnection()
            return client.closed
        return None

    @inlineCallbacks
    def assertCertificateRefused(self, client: LiveClientProtocol, reason: str, words: str):  # type: ignore[no-untyped-def]
        """The first request fails with ERROR 200 saying ``words``, the session is
        closed and counted as refused for ``reason``."""
        error = yield self.assertFailure(client.discover("ns"), NotAuthorized)
        self.assertEqual(error.status, 200)
        self.assertIn(words, str(error))
        yield client.closed
        self.assertEqual(self.daemon.metrics.refusals.get(f"peer_certificate_{reason}"), 1)
        self.assertEqual(self.daemon.metrics.sessions_opened, 0)
        return error


class OptionalCertificateTests(SSLListenerTests):
    @inlineCallbacks
    def test_authenticated_session(self):  # type: ignore[no-untyped-def]
        me, other = PrivateKey.generate(), PrivateKey.generate()
        watcher = Watcher()
        anonymous = yield self.client()
        yield anonymous.rendezvous("ns", watcher)
        client = yield self.client(me)
        yield client.register("ns", me.peer_id_text())
        yield watcher.until(1)
        self.assertEqual(watcher.events, [("register", me.peer_id_text())])
        error = yield self.assertFailure(client.register("ns", other.peer_id_text()), NotAuthorized)
        self.assertEqual(error.status, 200)
        self.assertIn("differs from the authenticated one", str(error))
        # a stranger can neither take nor remove the proven id
        yield self.assertFailure(anonymous.register("ns", me.peer_id_text()), NotAuthorized)
        yield anonymous.unregister("ns", me.peer_id_text())  # not its own: nothing happens
        self.assertEqual([e.peer_id for e in (yield anonymous.discover("ns"))], [me.peer_id_text()])
        self.assertEqual(watcher.events, [("register", me.peer_id_text())])
        self.assertEqual(self.daemon.metrics.refusals.get("not_authorized"), 2)

    @inlineCallbacks
    def test_a_squatted_id_is_not_proven(self):  # type: ignore[no-untyped-def]
        """Anonymous sessions keep the raw rule: the first to register an id owns it,
        and the authenticated peer cannot register an id it does not hold."""
        me = PrivateKey.generate()
        anonymous = yield self.client()
        yield anonymous.register("ns", me.peer_id_text())
        client = yield self.client(me)
        yield client.register("other-ns", me.peer_id_text())
        error = yield self.assertFailure(client.register("ns", me.peer_id_text()), NotAuthorized)
        self.assertIn("another session", str(error))

    @inlineCallbacks
    def test_without_certificate_anonymous(self):  # type: ignore[no-untyped-def]
        client = yield self.client()
        yield client.register("ns", PrivateKey.generate().peer_id_text())
        self.assertEqual(self.daemon.metrics.refusals, {})

    @inlineCallbacks
    def test_certificate_without_extension_anonymous(self):  # type: ignore[no-untyped-def]
        client = yield self.client_with(*plain_certificate(time.time()))
        yield client.register("ns", PrivateKey.generate().peer_id_text())
        self.assertEqual(self.daemon.metrics.refusals, {})

    @inlineCallbacks
    def test_expired_certificate(self):  # type: ignore[no-untyped-def]
        me = PrivateKey.generate()
        certificate, key = make_certificate(me, time.time() - 7200, lifetime=60)
        client = yield self.client_with(certificate, key)
        yield self.assertCertificateRefused(client, "expired", "certificate expired at")

    @inlineCallbacks
    def test_not_yet_valid_certificate(self):  # type: ignore[no-untyped-def]
        certificate, key = make_certificate(PrivateKey.generate(), time.time() + 86400)
        client = yield self.client_with(certificate, key)
        yield self.assertCertificateRefused(client, "not_yet_valid", "not valid before")

    @inlineCallbacks
    def test_expired_by_the_library(self):  # type: ignore[no-untyped-def]
        endpoint = identity_endpoint(
            reactor, self.server, PrivateKey.generate(), time.time() - 30 * 86400
        )
        client = yield endpoint.connect(Factory.forProtocol(LiveClientProtocol))
        self.addCleanup(self.disconnect, client)
        yield self.assertCertificateRefused(client, "expired", "expired")

    @inlineCallbacks
    def test_wrong_signature(self):  # type: ignore[no-untyped-def]
        victim = PrivateKey.generate()
        client = yield self.client_with(
            *forged_certificate(victim, PrivateKey.generate(), time.time())
        )
        yield self.assertCertificateRefused(client, "bad_signature", "does not match")

    @inlineCallbacks
    def test_certificate_for_another_key(self):  # type: ignore[no-untyped-def]
        """A peer's genuine extension in a certificate of the stranger's own key."""
        victim = PrivateKey.generate()
        genuine, _ = make_certificate(victim, time.time())
        copied = genuine.extensions.get_extension_for_oid(EXTENSION_OID).value
        assert isinstance(copied, x509.UnrecognizedExtension)
        key = ec.generate_private_key(ec.SECP256R1())
        stolen = hand_made(key, copied.value, now=time.time(), lifetime=3600)
        client = yield self.client_with(stolen, key)
        yield self.assertCertificateRefused(client, "bad_signature", "does not match")


class RequiredCertificateTests(SSLListenerTests):
    required = True

    @inlineCallbacks
    def test_without_certificate_refused(self):  # type: ignore[no-untyped-def]
        client = yield self.client()
        yield self.assertCertificateRefused(client, "missing", "certificate is required")

    @inlineCallbacks
    def test_certificate_without_extension_refused(self):  # type: ignore[no-untyped-def]
        client = yield self.client_with(*plain_certificate(time.time()))
        yield self.assertCertificateRefused(client, "no_extension", "no libp2p public key")

    @inlineCallbacks
    def test_authenticated_session(self):  # type: ignore[no-untyped-def]
        me = PrivateKey.generate()
        client = yield self.client(me)
        yield client.register("ns", me.peer_id_text())
        entries = yield client.discover("ns")
        self.assertEqual([entry.peer_id for entry in entries], [me.peer_id_text()])
        yield self.assertFailure(
            client.register("ns", PrivateKey.generate().peer_id_text()), NotAuthorized
        )
        self.assertEqual(self.daemon.metrics.sessions_opened, 1)


class ConnectorTests(SSLListenerTests):
    @inlineCallbacks
    def test_connector_presents_only_an_identity_given(self):  # type: ignore[no-untyped-def]
        me = PrivateKey.generate()
        client = yield connector(reactor, identity=me)(self.server)
        self.addCleanup(self.disconnect, client)
        yield client.register("ns", me.peer_id_text())
        yield self.assertFailure(
            client.register("ns", PrivateKey.generate().peer_id_text()), NotAuthorized
        )
        anonymous = yield connector(reactor)(self.server)
        self.addCleanup(self.disconnect, anonymous)
        yield anonymous.register("ns", PrivateKey.generate().peer_id_text())

    @inlineCallbacks
    def test_connect_to(self):  # type: ignore[no-untyped-def]
        me = PrivateKey.generate()
        client = yield ensureDeferred(connect_to(reactor, self.server, identity=me))
        self.addCleanup(self.disconnect, client)
        yield client.register("ns", me.peer_id_text())


class OptionTests(TestCase):
    def test_cli_identity_endpoints(self) -> None:
        key = os.path.join(self.mktemp())
        options = cli.Options()
        options.parseOptions(["register", "ssl:host=h:port=1", "ns", "--identity", key])
        sub = options.subOptions
        identity = load_or_create_identity(key)
        self.assertEqual(sub["id"], identity.peer_id_text())
        self.assertEqual(sub["tls_key"].peer_id(), identity.peer_id())
        for argv, words in [
            (["discover", "127.0.0.1:1", "ns", "--identity", key], "not 127.0.0.1:1"),
            (["discover", "tcp:host=h:port=1", "ns", "--identity", key], "tls:/ssl:"),
            (["discover", "tls:host=h:port=1:certificate=c", "ns", "--identity", key], "conflicts"),
            (["register", "tls:host=h:port=1", "ns"], "--id is required"),
        ]:
            with self.assertRaises(usage.UsageError, msg=argv) as raised:
                cli.Options().parseOptions(argv)
            self.assertIn(words, str(raised.exception))

    def test_cli_libp2p_key_is_not_shown_over_tls(self) -> None:
        """A fresh libp2p key (no --identity) is never presented on a tls: endpoint."""
        options = cli.Options()
        options.parseOptions(
            [
                "discover",
                f"/ip4/127.0.0.1/tcp/1/p2p/{PrivateKey.generate().peer_id_text()}",
                "tls:host=h:port=1",
                "ns",
            ]
        )
        self.assertIsNotNone(options.subOptions["key"])
        self.assertIsNone(options.subOptions["tls_key"])

    def test_daemon_flag(self) -> None:
        folder = self.mktemp()
        os.makedirs(folder)
        cert_path, key_path, _ = TestCA(folder).issue("server")
        options = TapOptions()
        ssl = f"ssl:0:privateKey={key_path}:certKey={cert_path}"
        options.parseOptions(["--listen", ssl, "--require-peer-certificates"])
        self.assertTrue(options["require-peer-certificates"])
        with self.assertRaises(usage.UsageError) as raised:
            TapOptions().parseOptions(["--listen", "tcp:0", "--require-peer-certificates"])
        self.assertIn("needs an ssl: --listen", str(raised.exception))
        self.assertIn("--require-peer-certificates", str(TapOptions()))
