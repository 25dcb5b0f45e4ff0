"""The one module that reaches past Twisted's public interfaces, what for, and the
public path taken when it cannot.

Two hot paths write more cheaply than `ITransport.write` lets them:

- **Sending at once** (live sessions on plain TCP and UNIX sockets). `write` on a
  Twisted socket transport queues the bytes and registers the socket for writing; the
  reactor sends them after its next poll, which costs two poller changes per push. When
  the transport has nothing queued, `send_now` hands the bytes to the socket itself and
  queues only what the kernel did not take. That needs the transport's ``socket``,
  ``TLS``, ``dataBuffer`` and ``_tempDataBuffer`` (the last is private).
- **One flush per reactor turn** (libp2p connections). A connection's frames of one
  turn are written through `writeSequence`; `flush` then calls the transport's
  ``doWrite`` (an `IWriteDescriptor` method, but the reactor's to call) so they leave
  at the end of this turn rather than after one more poll, and `enlarge_buffer` raises
  the transport's ``bufferSize`` so a stream of frames is not split into small sends.

`AVAILABLE` is decided once, at import: every attribute these need must exist on
`twisted.internet.tcp.Connection`, else the public paths are used (`send_now` sends
nothing itself, `flush` and `enlarge_buffer` do nothing) and one line is logged.
``RENDEZVOUS_PUBLIC_TWISTED=1`` in the environment forces the public paths (to measure
what the private ones buy: docs/benchmarks.rst, and to test both).
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet import tcp
from twisted.logger import Logger

_log = Logger(namespace="rendezvous.twisted_internals")

_NEEDED = ("socket", "TLS", "dataBuffer", "_tempDataBuffer", "bufferSize", "doWrite")


def _check() -> str | None:
    """Why the private paths cannot be used, or None."""
    if os.environ.get("RENDEZVOUS_PUBLIC_TWISTED") == "1":
        return "RENDEZVOUS_PUBLIC_TWISTED=1"
    ours, theirs = socket.socketpair()
    try:
        # A transport over a socket pair, never connected to a reactor (``reactor`` is
        # only stored), to see the attributes an instance has.
        probe = tcp.Connection(ours, None, reactor=object())  # type: ignore[arg-type]
        missing = [name for name in _NEEDED if not hasattr(probe, name)]
    except Exception as e:  # a Twisted whose Connection is built otherwise
        return f"cannot make a twisted.internet.tcp.Connection: {e}"
    finally:
        ours.close()
        theirs.close()
    if missing:
        return f"twisted.internet.tcp.Connection has no {', '.join(missing)}"
    return None


_WHY_NOT = _check()
AVAILABLE = _WHY_NOT is None
"""Whether the private paths are used in this process."""
if not AVAILABLE:
    _log.info(
        "writing through Twisted's public interfaces only ({why})",
        why=_WHY_NOT,
        event="daemon.public_twisted",
    )


def direct_socket(transport: object) -> socket.socket | None:
    """The socket of a plain (not TLS) TCP or UNIX transport, which `send_now` may write
    to while the transport has nothing queued; None for any other transport, or when
    the private paths are not used."""
    if AVAILABLE and isinstance(transport, tcp.Connection) and not transport.TLS:
        sock: socket.socket = transport.socket
        return sock
    return None


def nothing_queued(transport: Any) -> bool:
    """Whether ``transport`` (one `direct_socket` gave a socket of) holds no bytes."""
    return not transport.dataBuffer and not transport._tempDataBuffer


def send_now(transport: Any, sock: socket.socket, data: bytes) -> bytes:
    """Send what the kernel takes of ``data`` at once, if ``transport`` (whose socket is
    ``sock``, from `direct_socket`) has nothing queued; the rest, to be written through
    the transport."""
    if transport.dataBuffer or transport._tempDataBuffer:
        return data
    try:
        sent = sock.send(data)
    except OSError:  # EAGAIN, or an error Twisted will find on its own
        return data
    return data[sent:]


def enlarge_buffer(transport: Any, size: int) -> None:
    """Let ``transport`` hand the kernel up to ``size`` bytes per send."""
    if AVAILABLE and isinstance(getattr(transport, "bufferSize", None), int):
        transport.bufferSize = size


def sends_itself(transport: object) -> bool:
    """Whether ``transport`` sends what it is given without `flush` (any transport but a
    Twisted socket, or every transport when the private paths are not used)."""
    return not (AVAILABLE and isinstance(transport, tcp.Connection))


def flush(transport: Any) -> None:
    """Send what ``transport`` (a Twisted socket transport) holds now; should the socket
    be full or gone, the bytes stay queued and the reactor, which still watches the
    socket for writing, sees to them."""
    transport.doWrite()
