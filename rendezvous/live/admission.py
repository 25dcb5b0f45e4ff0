"""Which new raw-stream sessions an IP address may open: at most so many at once, and
new ones no faster than a rate (a token bucket per address).

Pure state on an injected clock; the table of addresses is bounded (least recently
seen forgotten first), so a stranger cycling through addresses cannot grow it. Sessions
from this host itself (loopback, like UNIX sockets) are not limited: a proxy on the
host should pass the clients' addresses on (``haproxy:`` listeners).
"""

from __future__ import annotations

import functools
import ipaddress
from collections import OrderedDict
from collections.abc import Callable
from typing import Final


@functools.lru_cache(maxsize=4096)
def is_loopback(address: str) -> bool:
    """Whether ``address`` (an IP address's text) is this host's loopback."""
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


TOO_MANY: Final = "sessions_per_ip"
TOO_FAST: Final = "session_rate_per_ip"


class AddressAdmission:
    """``max_open`` sessions per address at once; ``rate`` new ones per second, with a
    burst of ``rate``."""

    def __init__(
        self,
        now: Callable[[], float],
        max_open: int,
        rate: float,
        max_addresses: int = 65_536,
    ) -> None:
        self._now = now
        self.max_open = max_open
        self.rate = rate
        self.max_addresses = max_addresses
        self._open: dict[str, int] = {}
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """Address -> (tokens, when counted), least recently used first."""

    def admit(self, address: str) -> str | None:
        """Count a new session of ``address``; the reason it is refused, if it is."""
        open_now = self._open.get(address, 0)
        if open_now >= self.max_open:
            return TOO_MANY
        now = self._now()
        tokens, then = self._buckets.pop(address, (self.rate, now))
        tokens = min(self.rate, tokens + (now - then) * self.rate)
        if tokens < 1:
            self._buckets[address] = (tokens, now)
            return TOO_FAST
        self._buckets[address] = (tokens - 1, now)
        if len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)
        self._open[address] = open_now + 1
        return None

    def release(self, address: str) -> None:
        """A session of ``address`` admitted earlier has closed."""
        left = self._open.get(address, 0) - 1
        if left > 0:
            self._open[address] = left
        else:
            self._open.pop(address, None)

    def open_sessions(self, address: str) -> int:
        return self._open.get(address, 0)

    def tracked(self) -> int:
        """Addresses in the rate table now."""
        return len(self._buckets)
