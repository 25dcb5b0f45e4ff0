"""Present a libp2p identity to a server's ``ssl:`` listener: a TLS client endpoint
with a fresh libp2p TLS certificate for it (see `rendezvous.peercert`).

The server is named by the client strports people already use, ``tls:host=H:port=P``
(its certificate checked against the system's trust roots, or ``trustRoots=DIR``) or
``ssl:host=H:port=P`` (checked only with ``caCertsDir=DIR``, for ``hostname=NAME`` if
given), with the same meaning as in Twisted; a certificate of their own
(``certificate=``, ``privateKey=``, ``certKey=``) is what the identity replaces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from twisted.internet.endpoints import (
    HostnameEndpoint,
    SSL4ClientEndpoint,
    clientFromString,
    wrapClientTLS,
)
from twisted.internet.interfaces import IStreamClientEndpoint

from rendezvous.p2p.envelope import Signer
from rendezvous.peercert import make_certificate

_KEYS = {
    "tls": {"host", "port", "timeout", "bindAddress", "trustRoots", "endpoint"},
    "ssl": {"host", "port", "timeout", "bindAddress", "caCertsDir", "hostname"},
}
_OWN_CERTIFICATE = {"certificate", "privateKey", "certKey"}


@dataclass(frozen=True)
class TLSTarget:
    """A ``tls:`` or ``ssl:`` client strport, parsed."""

    kind: str
    host: str
    port: int
    timeout: int = 30
    bind_address: str | None = None
    trust_roots: str | None = None
    """``trustRoots`` (tls:) or ``caCertsDir`` (ssl:): a folder of PEM CA certificates."""
    hostname: str | None = None
    """ssl: the name the server's certificate must have (checked only then)."""
    endpoint: str | None = None
    """tls: a client strport to run TLS over instead of TCP to host:port."""


def is_tls_target(description: str) -> bool:
    """Whether ``description`` is a ``tls:`` or ``ssl:`` client strport."""
    return description.split(":", 1)[0] in _KEYS


def parse_tls_target(description: str) -> TLSTarget:
    """Parse a ``tls:`` or ``ssl:`` client strport; ValueError says what is wrong."""
    kind, _, rest = description.partition(":")
    if kind not in _KEYS:
        raise ValueError(f"{description!r} is not a tls: or ssl: endpoint")
    positional, named = _arguments(rest)
    for name in named:
        if name in _OWN_CERTIFICATE:
            raise ValueError(f"{name}= conflicts with the identity's own certificate")
        if name not in _KEYS[kind]:
            raise ValueError(f"unknown {kind}: parameter {name!r}")
    if len(positional) > 2:
        raise ValueError(f"too many {kind}: arguments")
    for name, value in zip(("host", "port"), positional, strict=False):
        if name in named:
            raise ValueError(f"{name} given twice")
        named[name] = value
    if "host" not in named or "port" not in named:
        raise ValueError(f"a {kind}: endpoint needs host and port")
    try:
        port = int(named["port"])
        timeout = int(named.get("timeout", "30"))
    except ValueError:
        raise ValueError("port and timeout must be integers") from None
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    trust_roots = named.get("trustRoots", named.get("caCertsDir"))
    if trust_roots is not None and not os.path.isdir(trust_roots):
        raise ValueError(f"{trust_roots!r} is not a folder of CA certificates")
    return TLSTarget(
        kind=kind,
        host=named["host"],
        port=port,
        timeout=timeout,
        bind_address=named.get("bindAddress"),
        trust_roots=trust_roots,
        hostname=named.get("hostname"),
        endpoint=named.get("endpoint"),
    )


def identity_endpoint(
    reactor: Any, description: str, identity: Signer, now: float
) -> IStreamClientEndpoint:
    """The endpoint of the ``tls:``/``ssl:`` strport ``description`` that presents a
    new libp2p certificate for ``identity``, valid from ``now`` (Unix seconds).
    Needs pyOpenSSL (``pip install 'txrendezvous[tls]'``), as Twisted's TLS does."""
    from twisted.internet.ssl import CertificateOptions, PrivateCertificate, optionsForClientTLS

    target = parse_tls_target(description)
    certificate, key = make_certificate(identity, now)
    own = PrivateCertificate.loadPEM(
        certificate.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    trust = _trust_root(target.trust_roots)
    bind = None if target.bind_address is None else (target.bind_address, 0)
    if target.kind == "tls":
        inner = (
            clientFromString(reactor, target.endpoint)
            if target.endpoint is not None
            else HostnameEndpoint(
                reactor, target.host.encode("idna"), target.port, target.timeout, bind
            )
        )
        options = optionsForClientTLS(target.host, trustRoot=trust, clientCertificate=own)
        endpoint: IStreamClientEndpoint = wrapClientTLS(options, inner)
        return endpoint
    if target.hostname is not None:
        creator: Any = optionsForClientTLS(target.hostname, trustRoot=trust, clientCertificate=own)
    else:
        creator = CertificateOptions(
            trustRoot=trust, privateKey=own.privateKey.original, certificate=own.original
        )
    return SSL4ClientEndpoint(reactor, target.host, target.port, creator, target.timeout, bind)


def _trust_root(folder: str | None) -> Any:
    """The CA certificates (``*.pem``) in ``folder``, as Twisted's strports read them."""
    if folder is None:
        return None
    from OpenSSL import SSL, crypto
    from twisted.internet.ssl import Certificate, trustRootFromCertificates

    certificates = {}
    for name in sorted(os.listdir(folder)):
        if not name.lower().endswith(".pem"):
            continue
        try:
            with open(os.path.join(folder, name), "rb") as f:
                certificate = Certificate.loadPEM(f.read())
        except (OSError, ValueError, crypto.Error, SSL.Error):  # skipped, as Twisted does
            continue
        certificates[certificate.digest()] = certificate
    return trustRootFromCertificates(list(certificates.values()))


def _arguments(text: str) -> tuple[list[str], dict[str, str]]:
    """A strport's arguments: ``:`` separates them, ``=`` names one, ``\\`` escapes."""
    positional: list[str] = []
    named: dict[str, str] = {}
    parts: list[list[str]] = [[""]]
    escaped = False
    for char in text:
        if escaped:
            parts[-1][-1] += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append([""])
        elif char == "=" and len(parts[-1]) == 1:
            parts[-1].append("")
        else:
            parts[-1][-1] += char
    for part in parts:
        if len(part) == 1:
            positional.append(part[0])
        else:
            if part[0] in named:
                raise ValueError(f"{part[0]} given twice")
            named[part[0]] = part[1]
    return positional, named
