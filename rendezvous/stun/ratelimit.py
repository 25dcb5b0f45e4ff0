"""A token bucket per source, in a table of bounded size, on an injected clock."""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from rendezvous.stun.codec import IPAddress

IPV6_PREFIX_BYTES: Final = 8
"""IPv6 sources share a bucket per /64: one host commonly holds a whole /64."""


def source_key(ip: IPAddress) -> bytes:
    """The bucket of a source: its IPv4 address, or its IPv6 /64."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip.packed
    return ip.packed[:IPV6_PREFIX_BYTES]


class SourceLimiter:
    """Allows each source ``rate`` requests per second on average and ``burst`` at once.

    At most ``max_sources`` buckets are kept: a new source past that evicts the one seen
    least recently (usually idle, its bucket full again, so nothing is lost; under a flood
    of new sources an evicted one starts again with a full bucket)."""

    def __init__(self, now: Callable[[], float], rate: float, burst: int, max_sources: int) -> None:
        if rate <= 0 or burst < 1 or max_sources < 1:
            raise ValueError("rate, burst and max_sources must be positive")
        self._now = now
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._buckets: OrderedDict[bytes, tuple[float, float]] = OrderedDict()
        """Source -> (tokens, when last updated), least recently seen first."""
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, source: bytes) -> bool:
        """Take a token of ``source``'s bucket if it has one."""
        now = self._now()
        buckets = self._buckets
        held = buckets.get(source)
        if held is None:
            if len(buckets) >= self.max_sources:
                buckets.popitem(last=False)
                self.evicted += 1
            tokens = float(self.burst)
        else:
            buckets.move_to_end(source)
            tokens, last = held
            tokens = min(float(self.burst), tokens + max(0.0, now - last) * self.rate)
        if tokens >= 1.0:
            buckets[source] = (tokens - 1.0, now)
            return True
        buckets[source] = (tokens, now)
        return False
