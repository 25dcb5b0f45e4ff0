"""Rate-limit log lines a stranger can trigger, so bad input cannot flood the log."""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import Logger, LogLevel

from rendezvous.logs import emit
from rendezvous.model import Refused


class LogLimiter:
    """Allow at most ``burst`` lines per ``interval`` seconds; count the rest."""

    def __init__(self, now: Callable[[], float], burst: int = 20, interval: float = 10.0) -> None:
        self._now = now
        self.burst = burst
        self.interval = interval
        self._window_start = -interval
        self._used = 0
        self.suppressed = 0

    def allow(self) -> tuple[bool, int]:
        """Whether to log this line, and how many were suppressed since the last one logged."""
        now = self._now()
        if now - self._window_start >= self.interval:
            self._window_start = now
            self._used = 0
        if self._used < self.burst:
            self._used += 1
            suppressed, self.suppressed = self.suppressed, 0
            return True, suppressed
        self.suppressed += 1
        return False, 0


def log_refusal(
    log: Logger, limiter: LogLimiter, label: object, refusal: Refused, **fields: object
) -> None:
    """One line for a refused request of ``label``'s (a `ClientAddress` is hidden unless
    addresses are logged), unless ``limiter`` holds it back; ``fields`` go with it."""
    allowed, suppressed = limiter.allow()
    if not allowed:
        return
    if suppressed:
        log.warn(
            "{suppressed} refusals were not logged",
            suppressed=suppressed,
            event="refusals.suppressed",
            count=suppressed,
        )
    emit(
        log,
        LogLevel.info,
        "refused {peer}: {status} ({code}) {reason}",
        peer=label,
        status=refusal.status.name,
        code=int(refusal.status),
        reason=refusal.text,
        event="request.refused",
        **fields,
    )
