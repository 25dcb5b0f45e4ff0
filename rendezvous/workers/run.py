"""A worker process: ``python -m rendezvous.workers.run`` (started by the daemon only).

File descriptor 3 is the channel to the hub, 4 the hand-over socket: connections arrive
through it as descriptors, each answered with one byte once adopted.
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
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IFileDescriptorReceiver, IReactorSocket, ITCPTransport
from twisted.internet.protocol import Factory, Protocol, ServerFactory, connectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel, eventAsText, globalLogBeginner
from twisted.python.failure import Failure
from zope.interface import implementer

from rendezvous.collector import CollectorPolicy
from rendezvous.limits import Limits
from rendezvous.live.goodbye import say_goodbye
from rendezvous.live.protocol import LiveFactory
from rendezvous.logs import show_addresses
from rendezvous.workers.hubstore import HubStore
from rendezvous.workers.wire import ChannelError, counters_record

CHANNEL_FD = 3
HAND_OVER_FD = 4
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
        assert self.transport is not None
        self.store.attach(self.transport.write)

    def dataReceived(self, data: bytes) -> None:
        try:
            self.store.feed(data)
        except ChannelError as e:
            self.log.error("bad data from the main process: {e}", e=e)
            ITCPTransport(self.transport).abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        def stop(_: object) -> None:
            if self.reactor.running:
                self.reactor.stop()

        self.farewell().addBoth(stop)


@implementer(IFileDescriptorReceiver)
class _HandOverReceiver(Protocol):
    """Connections handed over by the main process, adopted one by one; each is
    answered with one byte, after which the main process closes its copy."""

    log = Logger()

    def __init__(self, reactor: Any, live: Factory) -> None:
        self.reactor = reactor
        self.live = live
        """The factory of the connections' protocol (``factory`` is the hand-over
        socket's)."""

    def fileDescriptorReceived(self, descriptor: int) -> None:
        try:
            conn = socket.socket(fileno=descriptor)
        except OSError as e:
            os.close(descriptor)
            self.log.error("the main process passed a descriptor that is no socket: {e}", e=e)
        else:
            with conn:
                try:
                    self.reactor.adoptStreamConnection(conn.fileno(), conn.family, self.live)
                except OSError as e:  # gone before we got it
                    self.log.debug("could not adopt a connection: {e}", e=e)
        if self.transport is not None:
            self.transport.write(b"\1")

    def dataReceived(self, data: bytes) -> None:
        pass  # one byte with each descriptor, nothing to it


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
    sockets = cast(IReactorSocket, reactor)
    channel: ServerFactory = ServerFactory()
    channel.protocol = functools.partial(_HubChannel, reactor, store, farewell)
    sockets.adoptStreamConnection(CHANNEL_FD, socket.AF_UNIX, channel)
    os.close(CHANNEL_FD)
    hand_over: ServerFactory = ServerFactory()
    hand_over.protocol = functools.partial(_HandOverReceiver, sockets, factory)
    sockets.adoptStreamConnection(HAND_OVER_FD, socket.AF_UNIX, hand_over)
    os.close(HAND_OVER_FD)

    def report() -> None:
        store.send(counters_record(dialect.metrics.counts()))

    LoopingCall(report).start(COUNTERS_EVERY)
    CollectorPolicy(reactor).startService()  # as the main process's
    reactor.run()


if __name__ == "__main__":
    main()
