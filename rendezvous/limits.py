"""Every limit on what a stranger can make the daemon store or do, with safe defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    max_frame_bytes: int = 64 * 1024
    """Largest live-dialect frame accepted (the length prefix excluded)."""
    max_namespace_bytes: int = 255
    max_addrs_per_peer: int = 16
    max_addr_bytes: int = 512
    max_signed_record_bytes: int = 8 * 1024
    max_registrations_per_session: int = 256
    max_subscriptions_per_session: int = 64
    max_registrations: int = 1_000_000
    """Registrations held by the whole registry."""
    max_sessions: int = 100_000
    max_sessions_per_ip: int = 256
    """Raw-stream sessions one IP address may hold open (UNIX sockets are exempt)."""
    session_rate_per_ip: int = 50
    """New raw-stream sessions one IP address may open per second (in bursts of as many)."""
    discover_default_limit: int = 100
    discover_max_limit: int = 1000
    max_pending_bytes: int = 1024 * 1024
    """Unsent bytes a subscriber may have queued before it is dropped as too slow."""
    max_registrations_per_peer: int = 1000
    """TTL registrations (standard dialect) one peer id may hold across namespaces."""
    ttl_min: int = 120
    """Shortest TTL granted, in seconds (standard dialect)."""
    ttl_max: int = 72 * 3600
    ttl_default: int = 2 * 3600
    """The TTL granted to a REGISTER that names none."""

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.discover_default_limit > self.discover_max_limit:
            raise ValueError("discover_default_limit must not exceed discover_max_limit")
        if not self.ttl_min <= self.ttl_default <= self.ttl_max <= 72 * 3600:
            raise ValueError("TTL bounds need ttl_min <= ttl_default <= ttl_max <= 259200 s")
