"""TLS for libp2p WebSocket listeners (``…/tls/ws``, ``…/wss``), as web pages need.

The certificate (PEM, chain allowed) and key come from files and are read again on
SIGHUP: new connections get the new certificate, open ones keep theirs, and a reload
that fails keeps the old one and says why. TLS 1.2 and 1.3, through pyOpenSSL and
Twisted's TLS (`TLSMemoryBIOFactory`).
"""

from __future__ import annotations

import signal
from typing import Any

from OpenSSL import SSL
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer


class CertificateError(Exception):
    """A certificate or key that does not load, or a key that does not match."""


def load_context(cert_file: str, key_file: str) -> SSL.Context:
    """A server context for ``cert_file`` (PEM: the certificate, then its chain) and
    ``key_file`` (PEM private key); raises `CertificateError` saying what is wrong."""
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    try:
        context.use_certificate_chain_file(cert_file)
    except (OSError, SSL.Error) as e:
        raise CertificateError(f"cannot load the certificate {cert_file}: {_why(e)}") from None
    try:
        context.use_privatekey_file(key_file)
    except (OSError, SSL.Error) as e:
        if "mismatch" in _why(e):
            raise CertificateError(
                f"the key {key_file} does not match the certificate {cert_file}"
            ) from None
        raise CertificateError(f"cannot load the key {key_file}: {_why(e)}") from None
    try:
        context.check_privatekey()
    except SSL.Error:
        raise CertificateError(
            f"the key {key_file} does not match the certificate {cert_file}"
        ) from None
    return context


def _why(error: Exception) -> str:
    if isinstance(error, SSL.Error) and error.args and isinstance(error.args[0], list):
        reasons = [item[-1] for item in error.args[0] if isinstance(item, tuple) and item]
        if reasons:
            return ", ".join(str(reason) for reason in reasons)
    return str(error) or type(error).__name__


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableCertificate:
    """Makes each new TLS connection with the certificate loaded last."""

    log = Logger()

    def __init__(self, cert_file: str, key_file: str) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self._context = load_context(cert_file, key_file)

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:  # noqa: N803
        return SSL.Connection(self._context, None)

    def reload(self) -> bool:
        """Read the files again; on failure keep the certificate in use and log why."""
        try:
            self._context = load_context(self.cert_file, self.key_file)
        except CertificateError as e:
            self.log.error(
                "keeping the TLS certificate in use: {error}",
                error=str(e),
                event="tls.reload_failed",
                reason=str(e),
            )
            return False
        self.log.info(
            "reloaded the TLS certificate {path}", path=self.cert_file, event="tls.reloaded"
        )
        return True


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """TLS over another stream endpoint (usually TCP)."""

    def __init__(self, endpoint: IStreamServerEndpoint, creator: ReloadableCertificate):
        self._endpoint = endpoint
        self._creator = creator

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        wrapped = TLSMemoryBIOFactory(self._creator, False, factory)
        return self._endpoint.listen(wrapped)


class ReloadOnHangup(Service):
    """Reloads every certificate on SIGHUP while running.

    Python runs the handler in the main thread between two bytecodes; a reload only
    reads files and then replaces one reference, so running it there is safe."""

    def __init__(self, certificates: list[ReloadableCertificate]) -> None:
        self.certificates = certificates
        self._previous: Any = None

    def reload(self) -> None:
        for certificate in self.certificates:
            certificate.reload()

    def startService(self) -> None:
        Service.startService(self)
        self._previous = signal.signal(signal.SIGHUP, lambda signum, frame: self.reload())

    def stopService(self) -> None:
        Service.stopService(self)
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None


__all__ = [
    "CertificateError",
    "ReloadOnHangup",
    "ReloadableCertificate",
    "TLSServerEndpoint",
    "load_context",
]
