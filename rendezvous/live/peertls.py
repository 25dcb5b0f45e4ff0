"""Proven identities on the live dialect's ``ssl:`` listeners (libp2p TLS certificates).

Every ``ssl:`` listener asks its clients for a certificate and takes whatever they
present through the handshake (OpenSSL would refuse a self-signed one); once the
handshake is done, `PeerCertificates` checks it as `rendezvous.peercert` says and
names the peer id it proves, which the session is then authenticated as, exactly as
over libp2p. A client without a certificate (or with one that is no libp2p
certificate) stays anonymous unless certificates are required.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cryptography import x509
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLContextFactory,
    IReactorSSL,
    ISSLTransport,
    IStreamServerEndpoint,
)
from zope.interface import implementer

from rendezvous.p2p.keys import PublicKey
from rendezvous.peercert import PeerCertificateError, verify_certificate

if TYPE_CHECKING:  # pyOpenSSL is needed only where ssl: listeners are
    from OpenSSL import SSL, crypto

MISSING = "missing"
"""`PeerCertificateError.reason` of a client without a certificate where one is required."""


def _accept_any(
    connection: SSL.Connection, certificate: crypto.X509, error: int, depth: int, ok: int
) -> bool:
    """Let every certificate through the handshake: it is checked once done."""
    return True


@implementer(IOpenSSLContextFactory)
class RequestPeerCertificates:
    """An ``ssl:`` listener's context factory, made to ask the client for a certificate
    (optional: a client may send none) and to accept any it sends."""

    def __init__(self, wrapped: IOpenSSLContextFactory) -> None:
        self._wrapped = wrapped
        self._configured: SSL.Context | None = None

    def getContext(self) -> SSL.Context:
        from OpenSSL import SSL

        context = self._wrapped.getContext()
        if context is not self._configured:
            context.set_verify(SSL.VERIFY_PEER, _accept_any)
            self._configured = context
        return context


@implementer(IReactorSSL)
class _RequestingReactor:
    """Gives ``listenSSL`` a context factory that asks clients for certificates."""

    def __init__(self, reactor: IReactorSSL) -> None:
        self._reactor = reactor

    def listenSSL(
        self,
        port: int,
        factory: Any,
        contextFactory: IOpenSSLContextFactory,  # noqa: N803 (IReactorSSL's name)
        backlog: int = 50,
        interface: str = "",
    ) -> IListeningPort:
        return self._reactor.listenSSL(
            port, factory, RequestPeerCertificates(contextFactory), backlog, interface
        )

    def connectSSL(self, *args: Any, **kwargs: Any) -> Any:
        return self._reactor.connectSSL(*args, **kwargs)


def requesting_endpoint(reactor: IReactorSSL, description: str) -> IStreamServerEndpoint:
    """The server endpoint of the ``ssl:`` strport ``description``, asking clients
    for certificates."""
    endpoint: IStreamServerEndpoint = serverFromString(_RequestingReactor(reactor), description)
    return endpoint


class PeerCertificates:
    """What a TLS session's peer certificate proves: checked at ``now()``; with
    ``required``, a session without one is refused."""

    def __init__(self, now: Callable[[], float], required: bool = False) -> None:
        self.now = now
        self.required = required

    def identity(self, transport: ISSLTransport) -> PublicKey | None:
        """The libp2p key the client's certificate proves; None for a client without
        one (or with a certificate that is no libp2p one) where none is required.
        Raises `PeerCertificateError`."""
        from OpenSSL import crypto

        presented = transport.getPeerCertificate()
        if presented is None:
            if self.required:
                raise PeerCertificateError(MISSING, "a libp2p peer certificate is required")
            return None
        if not isinstance(presented, crypto.X509):
            raise PeerCertificateError(PeerCertificateError.MALFORMED, "not an X.509 certificate")
        try:
            certificate = presented.to_cryptography()
        except (ValueError, x509.InvalidVersion) as e:
            raise PeerCertificateError(
                PeerCertificateError.MALFORMED, f"unreadable certificate: {e}"
            ) from None
        try:
            return verify_certificate(certificate, self.now())
        except PeerCertificateError as e:
            if e.reason == PeerCertificateError.NO_EXTENSION and not self.required:
                return None
            raise
