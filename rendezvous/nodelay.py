"""Small messages go out at once: no Nagle delay on our TCP connections."""

from __future__ import annotations

import contextlib


def no_delay(transport: object) -> None:
    """Set TCP_NODELAY where ``transport`` is TCP (or wraps TCP, as TLS and WebSocket do).

    Without it a small write waits for the peer's delayed ACK (tens of milliseconds)
    whenever an earlier one is unacknowledged: pushes, replies and relayed handshakes
    would all pay that.
    """
    for _ in range(4):
        if transport is None:
            return
        set_no_delay = getattr(transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            # OSError: not a TCP socket after all (UNIX), or already closed.
            with contextlib.suppress(OSError):
                set_no_delay(True)
            return
        transport = getattr(transport, "transport", None)
