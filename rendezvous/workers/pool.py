"""The main process's side of ``--workers``: worker processes and the connections
handed to them.

The main process binds every listener (so bind errors fail start-up) and keeps the
live dialect's plain ``tcp:`` and ``unix:`` listeners: the reactor stops reading them for
their port and reads them for an `_Acceptor` instead, which accepts only while a worker
can take a connection and passes each to the least loaded one over its hand-over
socket, a UNIX stream socketpair (`IUNIXTransport.sendFileDescriptor`); the worker
adopts it and answers one byte, and the main process then closes its copy. While no
worker can take one (their hand-over sockets are full, or every worker is starting
again) accepting stops and the kernel's listen queue holds the connections: no polling.
Each worker also has a stream socketpair to the hub for its sessions' requests, its
channel (`rendezvous.workers.wire`). A worker that ends is started again, after a pause
that grows while it keeps dying young; its sessions end with it.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import json
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from twisted.application.service import Service
from twisted.internet import tcp, unix
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IListeningPort,
    IPushProducer,
    IReadDescriptor,
    ITCPTransport,
    IUNIXTransport,
)
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from rendezvous.limits import Limits
from rendezvous.live.protocol import describe
from rendezvous.logs import addresses_shown
from rendezvous.workers.hub import Hub, WorkerLink
from rendezvous.workers.wire import ChannelError

MAX_IN_FLIGHT = 512
"""Connections passed to a worker that it has not yet said it took: beyond that, it is
given no more until it does (the main process holds a descriptor for each)."""
MAX_UNREAD = 256 * 1024 * 1024
"""Bytes for a worker that does not read, beyond the transport's own buffer, before it is
stopped."""
_STOP_GRACE = 10.0
_PAUSE_LOG_EVERY = 60.0
"""Seconds between lines saying accepting paused."""


def can_hand_over(port: IListeningPort, factory: Factory) -> bool:
    """Whether ``port`` is a plain TCP or UNIX listener serving ``factory`` itself
    (a TLS listener's connections stay in the main process)."""
    return type(port) in (tcp.Port, unix.Port) and getattr(port, "factory", None) is factory


@implementer(IPushProducer)
class _Channel(Protocol):
    """The main process's end of a worker's channel: bytes to and from its `WorkerLink`.

    A worker that stops reading is stopped once ``max_unread`` bytes have waited for it
    (its sessions end, it starts again): the main process never holds more for it.
    """

    log = Logger()
    max_unread = MAX_UNREAD

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker
        self.unread: int | None = None
        """Bytes written since the transport pushed back; None while it does not."""

    def connectionMade(self) -> None:
        self.worker.channel = self
        IConsumer(self.transport).registerProducer(self, True)

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        if self.unread is not None:
            self.unread += len(data)
            if self.unread > self.max_unread:
                self.log.error(
                    "worker {index} has not read {size} bytes of answers and pushes: stopping it",
                    index=self.worker.index,
                    size=self.unread,
                )
                self.unread = None
                ITCPTransport(transport).abortConnection()
                return
        transport.write(data)

    def pauseProducing(self) -> None:
        if self.unread is None:
            self.unread = 0

    def resumeProducing(self) -> None:
        self.unread = None

    def stopProducing(self) -> None:
        self.unread = None

    def dataReceived(self, data: bytes) -> None:
        link = self.worker.link
        if link is None:
            return
        try:
            link.feed(data)
        except ChannelError as e:
            self.log.error("worker {name}: {error}; stopping it", name=link.name, error=e)
            ITCPTransport(self.transport).abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.worker.channel_lost()


@implementer(IPushProducer)
class _HandOverSender(Protocol):
    """The main process's end of a worker's hand-over socket: each connection handed
    over goes as a descriptor with one byte; the worker answers one byte per descriptor
    it took, and the main process's copies are closed in that order.

    A hand-over socket whose transport holds too many descriptors unsent (its producer
    is paused) or that has `MAX_IN_FLIGHT` unanswered takes no more until that changes.
    """

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker
        self.in_flight: collections.deque[socket.socket] = collections.deque()
        self.full = False
        self._transport: IUNIXTransport | None = None

    @property
    def can_take(self) -> bool:
        return self._transport is not None and not self.full and len(self.in_flight) < MAX_IN_FLIGHT

    def connectionMade(self) -> None:
        self._transport = IUNIXTransport(self.transport)
        IConsumer(self.transport).registerProducer(self, True)

    def hand(self, conn: socket.socket) -> None:
        """Pass ``conn`` on (`can_take` must be true); it is closed once taken."""
        transport = self._transport
        assert transport is not None
        transport.sendFileDescriptor(conn.fileno())
        transport.write(b"\0")
        self.in_flight.append(conn)

    def pauseProducing(self) -> None:
        self.full = True

    def resumeProducing(self) -> None:
        self.full = False
        self.worker.pool.room()

    def stopProducing(self) -> None:
        self.full = True

    def dataReceived(self, data: bytes) -> None:
        in_flight = self.in_flight
        for _ in range(min(len(data), len(in_flight))):
            in_flight.popleft().close()
        self.worker.pool.room()

    def close(self) -> None:
        """Stop at once, dropping what was not passed on."""
        if self._transport is not None:
            ITCPTransport(self._transport).abortConnection()
        self._forget()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._transport is not None:
            self.worker.hand_over_lost(self, reason)
        self._forget()

    def _forget(self) -> None:
        self._transport = None
        while self.in_flight:
            self.in_flight.popleft().close()


class _WorkerProcess(ProcessProtocol):
    log = Logger()

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker
        self._partial = {1: b"", 2: b""}

    def childDataReceived(self, childFD: int, data: bytes) -> None:  # noqa: N803
        lines = (self._partial.get(childFD, b"") + data).split(b"\n")
        self._partial[childFD] = lines.pop()
        for line in lines:
            if line.strip():
                self.log.info(
                    "worker {index}: {line}",
                    index=self.worker.index,
                    line=line.decode(errors="replace"),
                    event="worker.output",
                )

    def processEnded(self, reason: Failure) -> None:
        self.worker.ended(reason)


class _Worker:
    """One worker: its process, channel and hand-over socket, started again when it ends."""

    log = Logger()

    def __init__(self, pool: WorkerPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.link: WorkerLink | None = None
        self.hand_over: _HandOverSender | None = None
        self.process: Any = None
        self.channel: _Channel | None = None
        self.handed = 0
        """Connections handed over to the current process."""
        self.started_at = 0.0
        self.pause = 1.0
        self.restart: IDelayedCall | None = None
        self.done: Deferred[None] | None = None

    @property
    def can_take(self) -> bool:
        hand_over = self.hand_over
        return self.link is not None and hand_over is not None and hand_over.can_take

    @property
    def load(self) -> int:
        """Sessions the worker holds, counting connections on their way to it."""
        link, hand_over = self.link, self.hand_over
        if link is None or hand_over is None:
            return 1 << 62
        return len(link.sessions) + len(hand_over.in_flight)

    def start(self) -> None:
        pool = self.pool
        reactor = pool.reactor
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        hand_over, hand_over_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [
            sys.executable,
            "-m",
            "rendezvous.workers.run",
            "--index",
            str(self.index),
            "--limits",
            json.dumps(dataclasses.asdict(pool.worker_limits)),
            *(["--log-addresses"] if addresses_shown() else []),
        ]
        self.handed = 0
        self.started_at = reactor.seconds()
        try:
            self.process = reactor.spawnProcess(
                _WorkerProcess(self),
                sys.executable,
                argv,
                env=_environment(),
                childFDs={0: "w", 1: "r", 2: "r", 3: child.fileno(), 4: hand_over_child.fileno()},
            )
        except BaseException:
            parent.close()
            hand_over.close()
            raise
        finally:
            child.close()
            hand_over_child.close()
        self.done = Deferred()
        self.link = pool.hub.link(f"{self.index}", self._write)
        with parent, hand_over:
            reactor.adoptStreamConnection(
                parent.fileno(),
                socket.AF_UNIX,
                Factory.forProtocol(functools.partial(_Channel, self)),
            )
            sender = self.hand_over = _HandOverSender(self)
            reactor.adoptStreamConnection(
                hand_over.fileno(), socket.AF_UNIX, Factory.forProtocol(lambda: sender)
            )
        self.log.info(
            "worker {index} started (pid {pid})",
            index=self.index,
            pid=self.process.pid,
            event="worker.started",
        )
        pool.room()

    def _write(self, data: bytes) -> None:
        if self.channel is not None:
            self.channel.write(data)

    def hand(self, conn: socket.socket) -> None:
        """Pass ``conn`` to the worker (`can_take` must be true)."""
        assert self.hand_over is not None
        self.hand_over.hand(conn)
        self.handed += 1

    def hand_over_lost(self, hand_over: _HandOverSender, reason: Failure) -> None:
        """The hand-over socket closed under a running worker: without it the worker is
        of no use."""
        if hand_over is not self.hand_over:
            return
        self.hand_over = None
        self.log.info(
            "worker {index}: its hand-over socket closed ({reason}); stopping it",
            index=self.index,
            reason=reason.getErrorMessage(),
        )
        if self.channel is not None and self.channel.transport is not None:
            ITCPTransport(self.channel.transport).abortConnection()

    def channel_lost(self) -> None:
        self.channel = None
        if self.link is not None:
            self.pool.hub.unlink(self.link)
            self.link = None
        hand_over, self.hand_over = self.hand_over, None
        if hand_over is not None:
            hand_over.close()
        process = self.process
        if process is not None and process.pid is not None:
            # A worker without its channel is of no use: make sure it goes.
            with contextlib.suppress(ProcessExitedAlready):
                process.signalProcess("TERM")

    def ended(self, reason: Failure) -> None:
        pool = self.pool
        status = getattr(reason.value, "exitCode", None)
        signal = getattr(reason.value, "signal", None)
        if pool.stopping:
            self.log.info("worker {index} stopped", index=self.index)
        else:
            self.log.error(
                "worker {index} ended (exit status {status}, signal {signal}); its sessions "
                "are gone",
                index=self.index,
                status=status,
                signal=signal,
            )
        if self.channel is not None and self.channel.transport is not None:
            self.channel.transport.loseConnection()
        self.channel_lost()
        self.process = None
        done, self.done = self.done, None
        if done is not None:
            done.callback(None)
        if pool.stopping:
            return
        pool.restarts += 1
        reactor = pool.reactor
        if reactor.seconds() - self.started_at < 10:
            self.pause = min(self.pause * 2, 30.0)
        else:
            self.pause = 1.0
        self.log.info("starting worker {index} in {pause:g} s", index=self.index, pause=self.pause)
        self.restart = reactor.callLater(self.pause, self._restart)

    def _restart(self) -> None:
        self.restart = None
        if self.pool.stopping:
            return
        try:
            self.start()
        except Exception as e:  # out of descriptors, processes or memory: try again later
            self.pause = min(self.pause * 2, 30.0)
            self.log.error(
                "cannot start worker {index} ({e}): trying again in {pause:g} s",
                index=self.index,
                e=e,
                pause=self.pause,
            )
            self.restart = self.pool.reactor.callLater(self.pause, self._restart)

    def stop(self) -> Deferred[None] | None:
        if self.restart is not None and self.restart.active():
            self.restart.cancel()
        self.restart = None
        done = self.done
        if self.channel is not None and self.channel.transport is not None:
            self.channel.transport.loseConnection()  # the worker ends when its channel does
        if done is not None:
            process = self.process

            def kill() -> None:
                if self.process is process and process is not None:
                    self.log.warn("worker {index} did not stop: killing it", index=self.index)
                    process.signalProcess("KILL")

            call = self.pool.reactor.callLater(_STOP_GRACE, kill)
            done.addBoth(lambda result: call.cancel() if call.active() else None)
        return done


def worker_limits(limits: Limits, count: int) -> Limits:
    """What each of ``count`` workers enforces: its share of every limit on the whole
    daemon's sessions, so the workers together hold what one process would. A client
    address's sessions are handed to whichever workers are least loaded, so its limits
    are shared out too (rounded up): together at most what one process allows, give or
    take the rounding, and an address may be refused a little early when its sessions
    sit unevenly."""

    def share(total: int) -> int:
        return max(1, -(-total // count))

    return dataclasses.replace(
        limits,
        max_sessions=share(limits.max_sessions),
        max_sessions_per_ip=share(limits.max_sessions_per_ip),
        session_rate_per_ip=share(limits.session_rate_per_ip),
    )


@implementer(IReadDescriptor)
class _Acceptor:
    """Accepts on a listener the main process keeps, handing each connection over.

    It reads the port's own socket, which the reactor then reads for it instead of for
    the port; it accepts only while a worker can take a connection.
    """

    log = Logger()

    def __init__(self, pool: WorkerPool, port: IListeningPort) -> None:
        self.pool = pool
        self.port = IReadDescriptor(port)
        self.where = describe(port.getHost())
        # The port's socket, not a copy: `close` lets go of it without closing it.
        self.sock = socket.socket(fileno=self.port.fileno())

    def fileno(self) -> int:
        return self.port.fileno()

    def logPrefix(self) -> str:
        return "workers"

    def doRead(self) -> None:
        pool = self.pool
        for _ in range(100):
            worker = pool.least_loaded()
            if worker is None:
                pool.pause()
                return
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.log.error("accepting on {where}: {e}", where=self.where, e=e)
                return
            worker.hand(conn)

    def connectionLost(self, reason: Failure) -> None:
        pass

    def close(self) -> None:
        self.sock.detach()


class WorkerPool(Service):
    """``count`` worker processes serving the connections of ``ports``."""

    log = Logger()

    def __init__(
        self,
        count: int,
        hub: Hub,
        ports: list[IListeningPort],
        factory: Factory,
        limits: Limits,
        reactor: Any,
    ) -> None:
        self.count = count
        self.hub = hub
        self.ports = ports
        self.factory = factory
        self.reactor = reactor
        self.worker_limits = worker_limits(limits, count)
        self.workers = [_Worker(self, index) for index in range(1, count + 1)]
        self._acceptors: list[_Acceptor] = []
        self.paused = False
        """Whether accepting waits for a worker that can take a connection."""
        self.pauses = 0
        """Times accepting waited so."""
        self._pause_logged = -_PAUSE_LOG_EVERY
        self.stopping = False
        self.restarts = 0
        """Workers that ended unasked (each is started again)."""

    @property
    def workers_up(self) -> int:
        """Workers whose process is up with its channel open."""
        return sum(1 for worker in self.workers if worker.link is not None)

    def collect(self) -> Iterator[Metric]:
        """Prometheus families of the pool (`prometheus_client` collector protocol)."""
        yield GaugeMetricFamily("rendezvous_workers", "Worker processes running.", self.workers_up)
        yield CounterMetricFamily(
            "rendezvous_worker_restarts",
            "Worker processes that ended unasked and were started again.",
            self.restarts,
        )

    def startService(self) -> None:
        super().startService()
        for port in self.ports:
            if not can_hand_over(port, self.factory):
                continue
            acceptor = _Acceptor(self, port)
            self.reactor.removeReader(acceptor.port)
            self._acceptors.append(acceptor)
            self.log.info(
                "connections on {where} go to {count} worker processes",
                where=acceptor.where,
                count=self.count,
                event="workers.accepting",
            )
        self.paused = True  # until a worker can take connections
        for worker in self.workers:
            worker.start()

    def least_loaded(self) -> _Worker | None:
        """The worker to give the next connection to; None when none can take one."""
        best: _Worker | None = None
        for worker in self.workers:
            if worker.can_take and (best is None or worker.load < best.load):
                best = worker
        return best

    def pause(self) -> None:
        """No worker can take a connection: leave them in the listen queue meanwhile."""
        if self.paused:
            return
        self.paused = True
        self.pauses += 1
        now = self.reactor.seconds()
        if now - self._pause_logged >= _PAUSE_LOG_EVERY:
            self._pause_logged = now
            self.log.warn(
                "no worker can take a connection: accepting paused ({pauses} times so far)",
                pauses=self.pauses,
                event="workers.paused",
            )
        for acceptor in self._acceptors:
            self.reactor.removeReader(acceptor)

    def room(self) -> None:
        """A worker may take connections again: accept again if that waited for it."""
        if not self.paused or self.stopping or self.least_loaded() is None:
            return
        self.paused = False
        for acceptor in self._acceptors:
            self.reactor.addReader(acceptor)

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        self.stopping = True
        for acceptor in self._acceptors:
            self.reactor.removeReader(acceptor)
            acceptor.close()
        self._acceptors.clear()
        waits = [d for d in (worker.stop() for worker in self.workers) if d is not None]
        return DeferredList(waits)


def _environment() -> dict[str, str]:
    """Ours, with this process's copy of the package first on the workers' path."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
    return env


def _load(worker: _Worker) -> int:
    return worker.load
