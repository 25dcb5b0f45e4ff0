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

from rendezvous.client.live import connect
from rendezvous.p2p.keys import PrivateKey
from rendezvous.p2p.transport import TCPAddress

DIALECTS = ("live", "standard")


async def connect_to(
    reactor: Any, server: str, *, dialect: str = "live", identity: PrivateKey | None = None
) -> Any:
    """A `LiveClient` (or, with ``dialect="standard"``, a `StandardClient`) connected
    to ``server``; over libp2p as ``identity`` (a fresh Ed25519 key when None)."""
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {', '.join(DIALECTS)}")
    if not server.startswith("/"):
        if dialect == "standard":
            raise ValueError("the standard dialect runs over libp2p: give a multiaddr")
        return await connect(reactor, server)
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
    peer id across reconnections)."""
    key = identity or PrivateKey.generate()

    def connect_one(server: str) -> Deferred[Any]:
        return ensureDeferred(connect_to(reactor, server, dialect=dialect, identity=key))

    return connect_one


__all__ = ["DIALECTS", "connect_to", "connector"]
