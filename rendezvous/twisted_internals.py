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

One more reaches into a listening port, for the live listeners under a flood
(`rendezvous.live.flood`):

- **Bounded accepts per reactor turn.** A `twisted.internet.tcp.Port` accepts, in one
  ``doRead``, up to its ``numberAccepts`` connections (100 at first, 20 more after each
  turn that used them all): after a pause, the few hundred connections the kernel
  queued would be taken in one turn of some milliseconds, with every open session
  waiting. `bound_accepts` lowers it for the port's next turn. `ACCEPTS_BOUNDED` is
  decided at import (``Port.doRead`` must read ``numberAccepts``); else, or for any
  other port, the port accepts as Twisted does and one line is logged.

``RENDEZVOUS_PUBLIC_TWISTED=1`` in the environment forces the public paths of both (to
measure what the private ones buy: docs/benchmarks.rst, and to test both).
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


def _check_accepts() -> str | None:
    """Why `bound_accepts` cannot be used, or None."""
    if os.environ.get("RENDEZVOUS_PUBLIC_TWISTED") == "1":
        return "RENDEZVOUS_PUBLIC_TWISTED=1"
    code = getattr(getattr(tcp.Port, "doRead", None), "__code__", None)
    if "numberAccepts" not in getattr(code, "co_names", ()):
        return "twisted.internet.tcp.Port.doRead reads no numberAccepts"
    return None


_WHY_NOT_ACCEPTS = _check_accepts()
ACCEPTS_BOUNDED = _WHY_NOT_ACCEPTS is None
"""Whether `bound_accepts` bounds anything in this process."""
if not ACCEPTS_BOUNDED:
    _log.info(
        "listeners accept as many connections per reactor turn as Twisted does ({why})",
        why=_WHY_NOT_ACCEPTS,
        event="daemon.public_twisted_accepts",
    )


def bound_accepts(port: object, most: int) -> bool:
    """Let ``port`` accept at most ``most`` connections in its next ``doRead`` (one
    reactor turn; Twisted raises the number again after it); whether it could be told
    (a listening `twisted.internet.tcp.Port`, the private path in use)."""
    if not ACCEPTS_BOUNDED or not isinstance(port, tcp.Port):
        return False
    current = getattr(port, "numberAccepts", None)
    if not isinstance(current, int):  # not listening yet
        return False
    port.numberAccepts = max(1, min(current, most))
    return True


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
