"""The main process's side of ``--workers``: worker processes and the connections
handed to them.

The main process binds every listener (so bind errors fail start-up) and keeps the
live dialect's plain ``tcp:`` and ``unix:`` listeners, but accepts on them itself and
passes each connection's descriptor to the least loaded worker over a SOCK_SEQPACKET
socketpair (SCM_RIGHTS). Each worker also has a stream socketpair to the hub for its
sessions' requests (`rendezvous.workers.wire`). A worker that ends is started again,
after a pause that grows while it keeps dying young; its sessions end with it.
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
    IDelayedCall,
    IListeningPort,
    IPushProducer,
    IReadDescriptor,
)
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from rendezvous.limits import Limits
from rendezvous.live.protocol import describe
from rendezvous.logs import addresses_shown
from rendezvous.workers.hub import Hub, WorkerLink
from rendezvous.workers.wire import ChannelError

FAMILY_CODES = {socket.AF_INET: b"4", socket.AF_INET6: b"6", socket.AF_UNIX: b"u"}
_MAX_PENDING = 1024
"""Accepted connections waiting for a worker's door before accepting pauses."""
_RETRY = 0.005
MAX_UNREAD = 256 * 1024 * 1024
"""Bytes for a worker that does not read, beyond the transport's own buffer, before it is
stopped."""
_STOP_GRACE = 10.0


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

    def __init__(self, slot: _Slot) -> None:
        self.slot = slot
        self.unread: int | None = None
        """Bytes written since the transport pushed back; None while it does not."""

    def connectionMade(self) -> None:
        self.slot.channel = self
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        if self.unread is not None:
            self.unread += len(data)
            if self.unread > self.max_unread:
                self.log.error(
                    "worker {index} has not read {size} bytes of answers and pushes: stopping it",
                    index=self.slot.index,
                    size=self.unread,
                )
                self.unread = None
                transport.abortConnection()  # type: ignore[attr-defined]
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
        link = self.slot.link
        if link is None:
            return
        try:
            link.feed(data)
        except ChannelError as e:
            self.log.error("worker {name}: {error}; stopping it", name=link.name, error=e)
            self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.slot.channel_lost()


class _WorkerProcess(ProcessProtocol):
    log = Logger()

    def __init__(self, slot: _Slot) -> None:
        self.slot = slot
        self._partial = {1: b"", 2: b""}

    def childDataReceived(self, childFD: int, data: bytes) -> None:  # noqa: N803
        lines = (self._partial.get(childFD, b"") + data).split(b"\n")
        self._partial[childFD] = lines.pop()
        for line in lines:
            if line.strip():
                self.log.info(
                    "worker {index}: {line}",
                    index=self.slot.index,
                    line=line.decode(errors="replace"),
                    event="worker.output",
                )

    def processEnded(self, reason: Failure) -> None:
        self.slot.ended(reason)


class _Slot:
    """One worker: its process, channel and door, started again when it ends."""

    log = Logger()

    def __init__(self, pool: WorkerPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.link: WorkerLink | None = None
        self.door: socket.socket | None = None
        self.process: Any = None
        self.channel: _Channel | None = None
        self.handed = 0
        """Connections handed over to the current process."""
        self.started_at = 0.0
        self.pause = 1.0
        self.restart: IDelayedCall | None = None
        self.done: Deferred[None] | None = None

    @property
    def load(self) -> int:
        """Sessions the worker holds, counting connections handed over since it last said."""
        link = self.link
        if link is None:
            return 1 << 62
        return len(link.sessions) + self.handed - link.adopted

    def start(self) -> None:
        pool = self.pool
        reactor = pool.reactor
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        door, door_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        door.setblocking(False)
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
                childFDs={0: "w", 1: "r", 2: "r", 3: child.fileno(), 4: door_child.fileno()},
            )
        except BaseException:
            parent.close()
            door.close()
            raise
        finally:
            child.close()
            door_child.close()
        self.done = Deferred()
        self.door = door
        self.link = pool.hub.link(f"{self.index}", self._write)
        reactor.adoptStreamConnection(
            parent.fileno(), socket.AF_UNIX, Factory.forProtocol(functools.partial(_Channel, self))
        )
        parent.close()
        self.log.info(
            "worker {index} started (pid {pid})",
            index=self.index,
            pid=self.process.pid,
            event="worker.started",
        )

    def _write(self, data: bytes) -> None:
        if self.channel is not None:
            self.channel.write(data)

    def hand(self, conn: socket.socket, family: bytes) -> bool:
        """Pass ``conn`` to the worker; False when its door is full (or it is gone)."""
        door = self.door
        if door is None:
            return False
        try:
            socket.send_fds(door, [family], [conn.fileno()])
        except BlockingIOError:
            return False
        except OSError as e:
            self.log.error(
                "worker {index}: cannot hand a connection over: {e}", index=self.index, e=e
            )
            return False
        self.handed += 1
        return True

    def channel_lost(self) -> None:
        self.channel = None
        if self.link is not None:
            self.pool.hub.unlink(self.link)
            self.link = None
        if self.door is not None:
            self.door.close()
            self.door = None
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


@implementer(IReadDescriptor)
class _Acceptor:
    """Accepts on a listener the main process keeps, handing each connection over."""

    log = Logger()

    def __init__(self, pool: WorkerPool, port: IListeningPort) -> None:
        self.pool = pool
        self.port = port
        self.where = describe(port.getHost())
        self.sock = socket.socket(fileno=os.dup(port.fileno()))  # type: ignore[attr-defined]
        self.sock.setblocking(False)
        self.family = FAMILY_CODES[self.sock.family]

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "workers"

    def doRead(self) -> None:
        pool = self.pool
        for _ in range(100):
            if pool.paused:
                return
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.log.error("accepting on {where}: {e}", where=self.where, e=e)
                return
            pool.hand(conn, self.family)
            conn.close()

    def connectionLost(self, reason: Failure) -> None:
        pass

    def close(self) -> None:
        self.sock.close()


class WorkerPool(Service):
    """``count`` worker processes serving the connections of ``ports``."""

    log = Logger()
    max_pending = _MAX_PENDING

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
        share = max(1, -(-limits.max_sessions // count))
        self.worker_limits = dataclasses.replace(limits, max_sessions=share)
        self.slots = [_Slot(self, index) for index in range(1, count + 1)]
        self._acceptors: list[_Acceptor] = []
        self._pending: collections.deque[tuple[socket.socket, bytes]] = collections.deque()
        self._retry: IDelayedCall | None = None
        self.paused = False
        self.stopping = False
        self.restarts = 0
        """Workers that ended unasked (each is started again)."""

    @property
    def workers_up(self) -> int:
        """Workers whose process is up with its channel open."""
        return sum(1 for slot in self.slots if slot.link is not None)

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
            port.stopReading()  # type: ignore[attr-defined]
            acceptor = _Acceptor(self, port)
            self._acceptors.append(acceptor)
            self.reactor.addReader(acceptor)
            self.log.info(
                "connections on {where} go to {count} worker processes",
                where=acceptor.where,
                count=self.count,
                event="workers.accepting",
            )
        for slot in self.slots:
            slot.start()

    def hand(self, conn: socket.socket, family: bytes) -> None:
        """Give ``conn`` to the least loaded worker, or keep it until one can take it."""
        if self._pending or not self._hand_now(conn, family):
            self._pending.append((socket.socket(fileno=os.dup(conn.fileno())), family))
            if len(self._pending) >= self.max_pending:
                self._pause(True)
            if self._retry is None:
                self._retry = self.reactor.callLater(_RETRY, self._hand_pending)

    def _hand_now(self, conn: socket.socket, family: bytes) -> bool:
        return any(slot.hand(conn, family) for slot in sorted(self.slots, key=_load))

    def _hand_pending(self) -> None:
        self._retry = None
        pending = self._pending
        while pending:
            conn, family = pending[0]
            if not self._hand_now(conn, family):
                break
            pending.popleft()
            conn.close()
        if pending:
            self._retry = self.reactor.callLater(_RETRY, self._hand_pending)
        elif self.paused:
            self._pause(False)

    def _pause(self, paused: bool) -> None:
        self.paused = paused
        if paused:
            self.log.warn("workers are behind: accepting paused")
        for acceptor in self._acceptors:
            if paused:
                self.reactor.removeReader(acceptor)
            else:
                self.reactor.addReader(acceptor)

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        self.stopping = True
        for acceptor in self._acceptors:
            self.reactor.removeReader(acceptor)
            acceptor.close()
        self._acceptors.clear()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        while self._pending:
            self._pending.popleft()[0].close()
        waits = [d for d in (slot.stop() for slot in self.slots) if d is not None]
        return DeferredList(waits)


def _environment() -> dict[str, str]:
    """Ours, with this process's copy of the package first on the workers' path."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
    return env


def _load(slot: _Slot) -> int:
    return slot.load
