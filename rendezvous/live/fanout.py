"""One push to many live subscribers, its system calls spread over threads.

A push to 10,000 subscribers on one connection each is 10,000 ``send`` system calls;
on loopback most of their time is the kernel's, and ``send`` releases the GIL. So
`LiveFanOut` first picks, in the reactor's thread, the sessions that can take the push
straight on their socket (nothing queued, not paused), then has `ParallelSender` write
the one frame to all those sockets from ``threads`` threads at once (the reactor's
among them), and waits for them: when it returns, every push has been handed to the
kernel or, where a socket took only part, the rest is queued in the reactor's thread as
any write would be. Nothing but ``socket.send`` runs in the other threads; no session,
transport or Twisted object is touched there. A fan-out to fewer than ``threshold``
subscribers, or with ``threads`` 1, is the plain loop.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from rendezvous.live.session import LiveDialect, LiveSession
from rendezvous.model import Announcement, Change
from rendezvous.registry import Subscriber
from rendezvous.registry.ownership import announce_each

THRESHOLD = 256
"""Subscribers from which a push is written from several threads."""


class ParallelSender:
    """Writes one byte string to many non-blocking sockets from ``threads`` threads."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._pool = (
            ThreadPoolExecutor(threads - 1, thread_name_prefix="fan-out") if threads > 1 else None
        )

    def send_all(self, sockets: Sequence[socket.socket], data: bytes) -> list[int]:
        """Bytes of ``data`` each socket took (0 where it took none or failed: the
        transport sees to a socket in error when it next reads or writes)."""
        sent = [0] * len(sockets)

        def send(start: int, stop: int) -> None:
            for i in range(start, stop):
                try:  # noqa: SIM105  (a context manager per send costs more than the send)
                    sent[i] = sockets[i].send(data)
                except OSError:
                    pass

        pool = self._pool
        if pool is None or len(sockets) < 2:
            send(0, len(sockets))
            return sent
        share = -(-len(sockets) // self.threads)
        others: list[Future[None]] = [
            pool.submit(send, start, min(start + share, len(sockets)))
            for start in range(share, len(sockets), share)
        ]
        send(0, min(share, len(sockets)))
        for other in others:
            other.result()
        return sent

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


class LiveFanOut:
    """A registry's fan-out (`rendezvous.registry.FanOut`) for a daemon whose
    subscribers are mostly live sessions on plain sockets."""

    def __init__(self, dialect: LiveDialect, threads: int, threshold: int = THRESHOLD) -> None:
        self.dialect = dialect
        self.sender = ParallelSender(threads)
        self.threshold = threshold

    def __call__(self, subscribers: Sequence[Subscriber], announcement: Announcement) -> None:
        if self.sender.threads < 2 or len(subscribers) < self.threshold:
            announce_each(subscribers, announcement)
            return
        frame = announcement.encoded
        if frame is None:
            frame = self.dialect.codec.announcement_frame(announcement)
        sockets: list[socket.socket] = []
        direct: list[LiveSession] = []
        for subscriber in subscribers:
            if type(subscriber) is LiveSession and not subscriber.closed:
                sock = subscriber.output.idle_socket()
                if sock is not None:
                    sockets.append(sock)
                    direct.append(subscriber)
                    continue
            subscriber.announce(announcement)
        if not direct:
            return
        size = len(frame)
        for session, taken in zip(direct, self.sender.send_all(sockets, frame), strict=True):
            if taken < size and not session.output.send(frame[taken:]):
                session.drop_slow()
        change = "register" if announcement.change is Change.REGISTER else "unregister"
        self.dialect.metrics.sent[change] += len(direct)

    def stop(self) -> None:
        self.sender.stop()
