"""A session with any server the client library speaks to, named as people write it.

``host:port`` or a Twisted client strport (``tls:host=H:port=P``, ``unix:path=…``) is
the live dialect on a raw stream; a multiaddr ``/ip4/H/tcp/P[/ws]/p2p/ID`` is libp2p,
with the live dialect (default) or the standard one (``dialect="standard"``).
`connector` makes the ``connect`` function `ReconnectingClient` takes::

    client = ReconnectingClient(reactor, ["rdv1:4001", "rdv2:4001"], connector(reactor))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred

from rendezvous.client.live import connect, endpoint_description
from rendezvous.client.peertls import is_tls_target
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.transport import TCPAddress

DIALECTS = ("live", "standard")


async def connect_to(
    reactor: Any, server: str, *, dialect: str = "live", identity: PrivateKey | None = None
) -> Any:
    """A `LiveClient` (or, with ``dialect="standard"``, a `StandardClient`) connected
    to ``server``; over libp2p as ``identity`` (a fresh Ed25519 key when None). On a
    ``tls:``/``ssl:`` server an ``identity`` is presented as a libp2p TLS certificate,
    which authenticates the session as its peer id (a plain TCP or UNIX session has
    no way to prove one: it goes without)."""
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {', '.join(DIALECTS)}")
    if not server.startswith("/"):
        if dialect == "standard":
            raise ValueError("the standard dialect runs over libp2p: give a multiaddr")
        tls = is_tls_target(endpoint_description(server))
        return await connect(reactor, server, identity if tls else None)
    address = TCPAddress.parse(server)
    key = identity or PrivateKey.generate()
    if dialect == "standard":
        from rendezvous.client.standard import connect_standard

        return await connect_standard(reactor, address, key)
    from rendezvous.client.p2p import connect_p2p

    return await connect_p2p(reactor, address, key)


def connector(
    reactor: Any, *, dialect: str = "live", identity: PrivateKey | None = None
) -> Callable[[str], Deferred[Any]]:
    """`connect_to` for every server, as one identity (so a libp2p client keeps its
    peer id across reconnections; a raw ``tls:``/``ssl:`` session presents only an
    ``identity`` given)."""
    key = identity or PrivateKey.generate()

    def connect_one(server: str) -> Deferred[Any]:
        own = key if server.startswith("/") else identity
        return ensureDeferred(connect_to(reactor, server, dialect=dialect, identity=own))

    return connect_one


__all__ = ["DIALECTS", "connect_to", "connector"]
