"""Which new raw-stream sessions an IP address may open: at most so many at once, and
new ones no faster than a rate (a token bucket per address).

Pure state on an injected clock; the table of addresses is bounded (least recently
seen forgotten first), so a stranger cycling through addresses cannot grow it. An
address is told why it is refused (an ERROR) at most once per ``quiet_for`` seconds;
its further attempts meanwhile are dropped before a session is built (`refuse_early`),
which is what keeps a flood from one address cheap. Sessions
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
        quiet_for: float = 1.0,
    ) -> None:
        self._now = now
        self.max_open = max_open
        self.rate = rate
        self.max_addresses = max_addresses
        self.quiet_for = quiet_for
        self._open: dict[str, int] = {}
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """Address -> (tokens, when counted), least recently used first."""
        self._told: OrderedDict[str, float] = OrderedDict()
        """Address -> when it was last refused with an ERROR, oldest first."""

    def admit(self, address: str) -> str | None:
        """Count a new session of ``address``; the reason it is refused, if it is."""
        open_now = self._open.get(address, 0)
        now = self._now()
        if open_now >= self.max_open:
            self._tell(address, now)
            return TOO_MANY
        tokens, then = self._buckets.pop(address, (self.rate, now))
        tokens = min(self.rate, tokens + (now - then) * self.rate)
        if tokens < 1:
            self._buckets[address] = (tokens, now)
            self._tell(address, now)
            return TOO_FAST
        self._buckets[address] = (tokens - 1, now)
        if len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)
        self._open[address] = open_now + 1
        return None

    def refuse_early(self, address: str) -> str | None:
        """Why a new connection of ``address`` is dropped at once, without an ERROR: the
        address is over its limits and was told so less than ``quiet_for`` seconds ago.
        None: let it through to `admit` (which may still refuse it, with an ERROR)."""
        told = self._told.get(address)
        if told is None:
            return None
        now = self._now()
        if now - told >= self.quiet_for:
            return None
        if self._open.get(address, 0) >= self.max_open:
            return TOO_MANY
        tokens, then = self._buckets.get(address, (self.rate, now))
        if tokens + (now - then) * self.rate < 1:
            return TOO_FAST
        return None

    def _tell(self, address: str, now: float) -> None:
        """``address`` is refused with an ERROR now; it is not told again for a while."""
        self._told.pop(address, None)
        self._told[address] = now
        if len(self._told) > self.max_addresses:
            self._told.popitem(last=False)

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
