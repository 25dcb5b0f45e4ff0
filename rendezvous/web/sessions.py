"""Open sessions by dialect, counted when asked (nothing is counted on the request path).

The store knows how many sessions are open; the libp2p host knows its streams and what
each carries. Every session that is not on a libp2p stream is a live session on a
--listen strport (served here or by a worker process).
"""

from __future__ import annotations

from rendezvous.live.stream import LiveStream
from rendezvous.p2p.host import Host
from rendezvous.standard.stream import StandardStream
from rendezvous.web.status import Sessions


def count_sessions(open_sessions: int, host: Host | None) -> Sessions:
    """``open_sessions`` (the store's count) by dialect, from ``host``'s streams."""
    live_p2p = standard = 0
    if host is not None:
        for connection in host.connections:
            for stream in connection.streams:
                protocol = stream.protocol
                if isinstance(protocol, LiveStream):
                    live_p2p += protocol.session is not None
                elif isinstance(protocol, StandardStream):
                    standard += protocol.session is not None
    return Sessions(
        live_raw=max(0, open_sessions - live_p2p - standard),
        live_p2p=live_p2p,
        standard=standard,
    )
