"""A worker process: ``python -m rendezvous.workers.run`` (started by the daemon only).

File descriptor 3 is the channel to the hub, 4 the door connections arrive through.
The worker logs to its standard output, which the daemon copies into its own log, and
ends when its channel does.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel, eventAsText, globalLogBeginner
from twisted.python.failure import Failure
from zope.interface import implementer

from rendezvous.limits import Limits
from rendezvous.live.goodbye import say_goodbye
from rendezvous.live.protocol import LiveFactory
from rendezvous.logs import show_addresses
from rendezvous.workers.hubstore import HubStore, counters_record
from rendezvous.workers.wire import ChannelError

CHANNEL_FD = 3
DOOR_FD = 4
_FAMILIES = {b"4": socket.AF_INET, b"6": socket.AF_INET6, b"u": socket.AF_UNIX}
COUNTERS_EVERY = 1.0
"""Seconds between the counters a worker reports to the main process."""


class _HubChannel(Protocol):
    log = Logger()

    def __init__(self, reactor: Any, store: HubStore, farewell: Callable[[], Deferred[None]]):
        self.reactor = reactor
        self.store = store
        self.farewell = farewell
        """Tells the worker's sessions the server goes away, before the worker ends."""

    def connectionMade(self) -> None:
        self.store.send = self.transport.write  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        try:
            self.store.feed(data)
        except ChannelError as e:
            self.log.error("bad data from the main process: {e}", e=e)
            self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        def stop(_: object) -> None:
            if self.reactor.running:
                self.reactor.stop()

        self.farewell().addBoth(stop)


@implementer(IReadDescriptor)
class _Door:
    """Connections handed over by the main process, adopted one by one."""

    log = Logger()

    def __init__(self, reactor: Any, factory: Factory) -> None:
        self.reactor = reactor
        self.factory = factory
        self.sock = socket.socket(fileno=DOOR_FD)
        self.sock.setblocking(False)
        self.adopted = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "door"

    def doRead(self) -> None:
        for _ in range(256):
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, 16, 4)
            except (BlockingIOError, InterruptedError):
                return
            if not data and not fds:
                self.reactor.removeReader(self)
                return
            family = _FAMILIES.get(data[:1])
            for fd in fds:
                self.adopted += 1
                try:
                    if family is None:
                        raise OSError(f"unknown address family {data[:1]!r}")
                    self.reactor.adoptStreamConnection(fd, family, self.factory)
                except OSError as e:  # gone before we got it
                    self.log.debug("could not adopt a connection: {e}", e=e)
                finally:
                    os.close(fd)

    def connectionLost(self, reason: Failure) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--limits", required=True, help="JSON of rendezvous.limits.Limits")
    parser.add_argument("--log-addresses", action="store_true", help="as the daemon's")
    args = parser.parse_args(argv)
    show_addresses(args.log_addresses)
    limits = Limits(**json.loads(args.limits))
    # The terminal's ^C reaches the whole process group: the main process decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def to_stdout(event: dict[str, Any]) -> None:
        if event.get("log_level", LogLevel.info) >= LogLevel.info:
            text = eventAsText(event, includeTimestamp=False, includeSystem=False)
            sys.stdout.write(text.replace("\n", "\n  ") + "\n")
            sys.stdout.flush()

    globalLogBeginner.beginLoggingTo([to_stdout], redirectStandardIO=False)  # type: ignore[list-item]

    from twisted.internet import reactor

    from rendezvous.service import live_dialect

    store = HubStore(limits.max_sessions)
    dialect = live_dialect(store, limits, reactor)
    factory = LiveFactory(dialect, reactor)
    farewell = functools.partial(say_goodbye, dialect, factory, reactor, 2.0)
    channel = Factory.forProtocol(functools.partial(_HubChannel, reactor, store, farewell))
    reactor.adoptStreamConnection(CHANNEL_FD, socket.AF_UNIX, channel)  # type: ignore[attr-defined]
    os.close(CHANNEL_FD)
    door = _Door(reactor, factory)
    reactor.addReader(door)

    def report() -> None:
        figures = {"counts": dialect.metrics.counts(), "adopted": door.adopted}
        store.send(counters_record(figures))

    LoopingCall(report).start(COUNTERS_EVERY)
    reactor.run()


if __name__ == "__main__":
    main()
