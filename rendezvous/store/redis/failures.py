"""What a script that refused or failed means for the request, the log and the link.

A script's refusal (``AUTH``, ``LIMIT``, ``FULL``, ``LEASE``) is told to the client;
``LEASE`` (this daemon's lease ran out) also has the lease taken again. A failure is
logged, a few lines a second at most, unless it is a plain outage, which the link
handles; Redis without the scripts (``NOSCRIPT``) or a demoted master (``READONLY``)
has the link reconnect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import txredisapi
from twisted.internet.defer import FirstError
from twisted.python.failure import Failure

from rendezvous.loglimit import LogLimiter
from rendezvous.model import Status
from rendezvous.store.redis.link import LinkDown
from rendezvous.store.redis.replies import ReplyPlace
from rendezvous.store.redis.session import UNREACHABLE, RedisSession, refuse

if TYPE_CHECKING:
    from rendezvous.store.redis.store import RedisStore

_REFUSALS = {
    b"AUTH": Status.NOT_AUTHORIZED,
    b"LIMIT": Status.LIMIT_EXCEEDED,
    b"FULL": Status.UNAVAILABLE,
    b"LEASE": Status.UNAVAILABLE,
}


class Failures:
    """The store's answers to refusals and failures, and its rate-limited error log."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.limiter = LogLimiter(store.clock.seconds)

    def refused_by_script(
        self, session: RedisSession, place: ReplyPlace, request_id: int | None, reply: list[bytes]
    ) -> None:
        status = _REFUSALS.get(reply[0], Status.INTERNAL_ERROR)
        text = reply[1].decode(errors="replace") if len(reply) > 1 else "refused"
        if reply[0] == b"LEASE":
            text = UNREACHABLE
            self.store.recovery.lease_lost()
        refuse(session, place, request_id, status, text)

    def request_failed(
        self, session: RedisSession, place: ReplyPlace, request_id: int | None, failure: Failure
    ) -> None:
        self.failed(failure, "a request")
        refuse(session, place, request_id, Status.UNAVAILABLE, UNREACHABLE)

    def failed(self, failure: Failure, what: str) -> bool:
        """Log what is not a plain outage (and say so); scripts gone reset the link."""
        while isinstance(failure.value, FirstError):  # of several runs (partitions)
            failure = failure.value.subFailure
        error = failure.value
        if isinstance(error, LinkDown | txredisapi.ConnectionError):
            return False  # lost or timed out: the link knows, and recovery follows
        store = self.store
        allowed, suppressed = self.limiter.allow()
        if allowed and isinstance(error, txredisapi.ResponseError):
            # Redis said no (out of memory, read-only replica, ACL…): one line says why.
            store.log.error(
                "redis store: {what} failed: {error} ({suppressed} more not logged)",
                what=what,
                error=error,
                suppressed=suppressed,
            )
        elif allowed:
            store.log.failure("redis store: {what} failed", failure, what=what)
        if isinstance(error, txredisapi.ResponseError) and "NOSCRIPT" in str(error):
            store.link.reset()  # SCRIPT FLUSH: reconnecting loads them again
        elif (
            isinstance(error, txredisapi.ResponseError)
            and "READONLY" in str(error)
            and store.link.target.sentinels
        ):
            store.link.reset()  # a master demoted: the sentinels name the new one
        return True
