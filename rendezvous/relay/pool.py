"""Hold reservations on the ``k`` best relays of a fleet, and replace the ones lost.

`RelayPool` is the policy of `rendezvous.relay.fleet.join`, apart from the network: it is
given functions that DISCOVER the relays, resolve a relay's address, dial it (measuring
the round trip), reserve on it and publish our circuit addresses, and a clock. A *round*
DISCOVERs the relays, dials those not held (their addresses resolved; a few at once),
and reserves on them best first, ranked by round trip (then by the load a relay reports,
if any) until ``k`` are held; the relays that refused or were not needed are hung up. A
reservation is renewed before it expires; when its renewal fails or its connection
closes the relay is dropped, the remaining addresses are published at once and a round
looks for a replacement. Rounds that leave fewer than ``k`` relays are run again after a
capped, jittered backoff (`rendezvous.client.reconnect.Backoff`, its window bounded by
how long we have been short). Every change is told to ``on_state`` as a `PoolEvent`;
`describe_event` makes one line of each for people.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from twisted.internet.defer import Deferred, DeferredList, DeferredLock, succeed
from twisted.logger import Logger

from rendezvous.client.reconnect import Backoff
from rendezvous.relay.client import RelayRefused, ReservationInfo
from rendezvous.relay.codec import status_name
from rendezvous.relay.keeper import renew_delay
from rendezvous.relay.resolve import Target

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from rendezvous.client.live import PeerEntry

DEFAULT_K: Final = 2
MAX_PROBES: Final = 8
"""Relays dialled at once in a round (the first the daemon lists)."""
RTT_BUCKET: Final = 0.010
"""Round trips within the same 10 ms count as equal; the reported load decides then."""


class Link(Protocol):
    """A connection to a relay, as the pool needs it."""

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Dialled:
    """What dialling a relay gave: the connection, the round trip it measured, and
    whether the dial opened it (the pool closes only those)."""

    connection: Link
    rtt: float
    opened: bool = True


@dataclass(frozen=True, slots=True)
class Candidate:
    peer_id: str
    target: Target
    dialled: Dialled
    load: float | None = None

    def rank(self) -> tuple[int, float, float]:
        load = self.load if self.load is not None else 0.0
        return (math.floor(self.dialled.rtt / RTT_BUCKET), load, self.dialled.rtt)


@dataclass(eq=False, slots=True)
class HeldRelay:
    """A relay we hold a reservation on."""

    peer_id: str
    target: Target
    dialled: Dialled
    reservation: ReservationInfo
    load: float | None = None
    renewals: int = 0
    timer: IDelayedCall | None = field(default=None, repr=False)

    @property
    def connection(self) -> Link:
        return self.dialled.connection

    def rank(self) -> tuple[int, float, float]:
        return Candidate(self.peer_id, self.target, self.dialled, self.load).rank()


# -- what on_state is told -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelayAdded:
    relay: str
    address: str
    """The relay's multiaddr we dialled, without ``/p2p``."""
    rtt: float


@dataclass(frozen=True, slots=True)
class RelayLost:
    relay: str
    reason: str


@dataclass(frozen=True, slots=True)
class RelayDeclined:
    relay: str
    status: int


@dataclass(frozen=True, slots=True)
class RelayUnreachable:
    relay: str
    reason: str
    """The dial failed, or the relay's DNS name does not resolve."""


@dataclass(frozen=True, slots=True)
class AddressesChanged:
    addresses: tuple[str, ...]
    """Our circuit addresses now registered, best first; empty: unregistered."""


@dataclass(frozen=True, slots=True)
class Retrying:
    held: int
    wanted: int
    reason: str
    retry_in: float


PoolEvent = RelayAdded | RelayLost | RelayDeclined | RelayUnreachable | AddressesChanged | Retrying


def describe_event(event: PoolEvent) -> str:
    """One line for people, e.g. ``lost relay 12D3KooW…: connection lost``."""
    if isinstance(event, RelayAdded):
        ms = event.rtt * 1000
        return f"reserved on relay {event.relay} at {event.address} (round trip {ms:.0f} ms)"
    if isinstance(event, RelayLost):
        return f"lost relay {event.relay}: {event.reason}"
    if isinstance(event, RelayDeclined):
        return f"relay {event.relay} refused the reservation: {status_name(event.status)}"
    if isinstance(event, RelayUnreachable):
        return f"cannot use relay {event.relay}: {event.reason}"
    if isinstance(event, AddressesChanged):
        if not event.addresses:
            return "unregistered: no relay holds a reservation for us"
        return "registered at " + " ".join(event.addresses)
    head = f"holding {event.held} of {event.wanted} relays" if event.held else "no relay"
    return f"{head}: {event.reason}; retrying in {event.retry_in:.1f} s"


# -- the pool ----------------------------------------------------------------------


class RoundFailed(Exception):
    """A round ended with no relay held: why, relay by relay."""

    def __init__(self, attempts: Sequence[str], refusals: Sequence[tuple[str, int]]) -> None:
        self.attempts = tuple(attempts)
        self.refusals = tuple(refusals)
        parts = [*attempts, *(f"{relay}: {status_name(s)}" for relay, s in refusals)]
        super().__init__("; ".join(parts) or "none registered")


class RelayPool:
    """Keeps reservations on up to ``k`` relays; see the module's docstring."""

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        me: str,
        *,
        discover: Callable[[], Deferred[list[PeerEntry]]],
        resolve: Callable[[str, str], Deferred[list[Target]]],
        dial: Callable[[Target], Deferred[Dialled]],
        reserve: Callable[[Link], Deferred[ReservationInfo]],
        publish: Callable[[list[HeldRelay]], Deferred[Sequence[str]]],
        on_state: Callable[[PoolEvent], None] | None = None,
        k: int = DEFAULT_K,
        renewal: float | None = None,
        backoff: Backoff | None = None,
        load: Callable[[PeerEntry], float | None] | None = None,
    ) -> None:
        """``me``: our peer id (text; never a relay of ours). ``resolve(address, peer_id)``
        gives a relay address's targets; ``publish(held)`` registers their circuit
        addresses (none: unregisters) and fires with them. ``renewal``: renew at least
        this often (seconds). ``load``: what a relay's registration says of its load."""
        if k < 1:
            raise ValueError("k must be at least 1")
        self.clock = clock
        self.me = me
        self.discover = discover
        self.resolve = resolve
        self.dial = dial
        self.reserve = reserve
        self.publish = publish
        self.observers: list[Callable[[PoolEvent], None]] = (
            [on_state] if on_state is not None else []
        )
        self.k = k
        self.renewal = renewal
        self.backoff = backoff if backoff is not None else Backoff(initial=0.5, cap=30.0)
        self.load = load
        self.held: list[HeldRelay] = []
        """Best first."""
        self.published: tuple[str, ...] | None = None
        """The peer ids of the relays last published (None: nothing yet)."""
        self.running = False
        self.stopped = False
        self._round: Deferred[str] | None = None
        self._again = False
        """Something was lost during a round: another one at once after it."""
        self._retry: IDelayedCall | None = None
        self._short_since: float | None = None
        """When we last fell short of ``k`` relays (None while ``k`` are held)."""
        self._publishing = DeferredLock()
        self._troubles: dict[str, RelayDeclined | RelayUnreachable] = {}
        """What each relay not held last did wrong, told once until it changes."""

    # -- the API -------------------------------------------------------------------

    def first_round(self) -> Deferred[str]:
        """One round before `start`; fails with `RoundFailed` when it holds no relay,
        else fires with why fewer than ``k`` are held ("" when ``k`` are)."""
        return self._run_round()

    def start(self, why: str = "") -> None:
        """Maintain ``k`` reservations from now on (publishing each change); ``why``:
        why fewer are held, if they are (what `first_round` said)."""
        self.running = True
        if len(self.held) < self.k:
            self._short_since = self.clock.seconds()
            self._short(why or "fewer relays than wanted")

    def stop(self) -> None:
        """Stop: no more rounds or renewals; hang up the relays we dialled."""
        self.running = False
        self.stopped = True
        self._cancel_retry()
        held, self.held = self.held, []
        for relay in held:
            self._drop(relay)

    def connection_lost(self, connection: object) -> None:
        """Tell the pool a connection closed; a relay held over it is lost."""
        for relay in list(self.held):
            if relay.connection is connection:
                self._lose(relay, "connection lost")

    def publish_now(self) -> Deferred[None]:
        """Publish what is held when the publications before this one are done."""
        return self._publishing.run(self._publish_current)

    def _publish_current(self) -> Deferred[None]:
        held = list(self.held)
        ids = tuple(relay.peer_id for relay in held)
        if ids == self.published:
            return succeed(None)

        def published(addresses: Sequence[str]) -> None:
            self.published = ids
            self._tell(AddressesChanged(tuple(addresses)))

        return self.publish(held).addCallback(published)

    # -- rounds --------------------------------------------------------------------

    def _run_round(self) -> Deferred[str]:
        self._retry = None
        self._again = False
        self._round = Deferred.fromCoroutine(self._fill())

        def ended(result: Any) -> Any:
            self._round = None
            return result

        return self._round.addBoth(ended)

    def _maintain(self) -> None:
        """A round in maintenance: publish after it, retry later if still short."""
        if not self.running:
            return
        if self._round is not None:
            self._again = True
            return

        def after(result: Any) -> None:
            if not self.running:
                return
            if self._published_differs():
                self.publish_now().addErrback(self._publish_failed)
            if len(self.held) >= self.k:
                self._again = False
                self._short_since = None
                self.backoff.reset()
            elif self._again:
                self._again = False
                self._maintain()
            else:
                why = result if isinstance(result, str) else result.getErrorMessage()
                self._short(why or "no other relay accepted us")

        self._run_round().addBoth(after)

    def _published_differs(self) -> bool:
        return tuple(relay.peer_id for relay in self.held) != self.published

    def _short(self, reason: str) -> None:
        if not self.running or self._retry is not None or self._round is not None:
            return
        now = self.clock.seconds()
        if self._short_since is None:
            self._short_since = now
        delay = self.backoff.next_delay(outage=now - self._short_since)
        self._tell(Retrying(len(self.held), self.k, reason, delay))
        self._retry = self.clock.callLater(delay, self._maintain)

    def _cancel_retry(self) -> None:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    async def _fill(self) -> str:
        """Reserve until ``k`` are held; why fewer are ("" if not), or `RoundFailed`."""
        try:
            entries = await self.discover()
        except Exception as error:
            if not self.held:
                raise RoundFailed([f"DISCOVER failed: {error}"], []) from None
            return f"DISCOVER failed: {error}"
        held = {relay.peer_id for relay in self.held}
        wanted = [e for e in entries if e.peer_id != self.me and e.peer_id not in held]
        wanted = wanted[:MAX_PROBES]
        attempts: list[str] = []
        refusals: list[tuple[str, int]] = []
        probes = [Deferred.fromCoroutine(self._probe(entry, attempts)) for entry in wanted]
        results = await DeferredList(probes, consumeErrors=True)
        candidates = sorted(
            (found for ok, found in results if ok and found is not None),
            key=Candidate.rank,
        )
        for candidate in candidates:
            if not self._wants_more() or candidate.peer_id in {r.peer_id for r in self.held}:
                self._hang_up(candidate.dialled)
                continue
            try:
                info = await self.reserve(candidate.dialled.connection)
            except RelayRefused as refusal:
                refusals.append((candidate.peer_id, refusal.status))
                self._trouble(RelayDeclined(candidate.peer_id, refusal.status))
                self._hang_up(candidate.dialled)
                continue
            except Exception as error:
                attempts.append(f"{candidate.peer_id}: reservation failed: {error}")
                self._trouble(RelayUnreachable(candidate.peer_id, f"reservation failed: {error}"))
                self._hang_up(candidate.dialled)
                continue
            if not self._wants_more():  # stopped, or filled meanwhile
                self._hang_up(candidate.dialled)
                continue
            self._hold(candidate, info)
        if not self.held:
            raise RoundFailed(attempts, refusals)
        if len(self.held) >= self.k:
            return ""
        return str(RoundFailed(attempts, refusals)) if attempts or refusals else "no other relay"

    def _wants_more(self) -> bool:
        return len(self.held) < self.k and not self.stopped

    async def _probe(self, entry: PeerEntry, attempts: list[str]) -> Candidate | None:
        """Resolve and dial ``entry``'s addresses in order; the first that answers."""
        problems: list[str] = []
        for address in entry_addresses(entry):
            try:
                targets = await self.resolve(address, entry.peer_id)
            except Exception as error:
                problems.append(str(error))
                continue
            for target in targets:
                try:
                    dialled = await self.dial(target)
                except Exception as error:
                    problems.append(f"{target.text()}: {error}")
                    continue
                load = self.load(entry) if self.load is not None else None
                return Candidate(entry.peer_id, target, dialled, load)
        why = "; ".join(problems) or "no dialable address"
        attempts.append(f"{entry.peer_id}: {why}")
        self._trouble(RelayUnreachable(entry.peer_id, why))
        return None

    # -- held relays ---------------------------------------------------------------

    def _hold(self, candidate: Candidate, info: ReservationInfo) -> None:
        relay = HeldRelay(
            candidate.peer_id, candidate.target, candidate.dialled, info, candidate.load
        )
        self.held.append(relay)
        self.held.sort(key=HeldRelay.rank)
        self._troubles.pop(relay.peer_id, None)
        self._schedule_renewal(relay)
        self.log.info(
            "reserved on relay {relay} at {address} (round trip {ms:.0f} ms)",
            relay=relay.peer_id,
            address=relay.target.text(),
            ms=relay.dialled.rtt * 1000,
            event="relay_client.relay_added",
        )
        self._tell(RelayAdded(relay.peer_id, relay.target.text(), relay.dialled.rtt))

    def _schedule_renewal(self, relay: HeldRelay) -> None:
        delay = renew_delay(relay.reservation.expire, self.clock.seconds(), self.renewal)
        relay.timer = self.clock.callLater(delay, self._renew, relay)

    def _renew(self, relay: HeldRelay) -> None:
        relay.timer = None

        def renewed(info: ReservationInfo) -> None:
            if relay not in self.held:
                return
            relay.reservation = info
            relay.renewals += 1
            self._schedule_renewal(relay)

        def failed(failure: Any) -> None:
            if relay in self.held:
                self._lose(relay, f"renewal failed: {failure.getErrorMessage()}")

        self.reserve(relay.connection).addCallbacks(renewed, failed)

    def _lose(self, relay: HeldRelay, reason: str) -> None:
        self.held.remove(relay)
        self._drop(relay)
        self.log.info(
            "lost relay {relay}: {reason}",
            relay=relay.peer_id,
            reason=reason,
            event="relay_client.relay_lost",
        )
        self._tell(RelayLost(relay.peer_id, reason))
        if not self.running:
            return
        if self.held:  # still reachable: say so at once, then look for a replacement
            self.publish_now().addErrback(self._publish_failed)
        self._cancel_retry()
        if self._short_since is None:
            self._short_since = self.clock.seconds()
            self.backoff.reset()
        self._maintain()

    def _drop(self, relay: HeldRelay) -> None:
        if relay.timer is not None and relay.timer.active():
            relay.timer.cancel()
        relay.timer = None
        self._hang_up(relay.dialled)

    def _hang_up(self, dialled: Dialled) -> None:
        if dialled.opened:
            dialled.connection.close()

    def _publish_failed(self, failure: Any) -> None:
        self.log.warn(
            "publishing our relay addresses failed: {why}",
            why=failure.getErrorMessage(),
            event="relay_client.publish_failed",
            reason=failure.getErrorMessage(),
        )

    def _trouble(self, event: RelayDeclined | RelayUnreachable) -> None:
        """Tell what a relay did wrong, unless it was told already (rounds repeat)."""
        if self._troubles.get(event.relay) != event:
            self._troubles[event.relay] = event
            self._tell(event)

    def _tell(self, event: PoolEvent) -> None:
        for observer in list(self.observers):
            try:
                observer(event)
            except Exception:
                self.log.failure(
                    "an on_state observer failed", event="relay_client.observer_failed"
                )


def entry_addresses(entry: PeerEntry) -> list[str]:
    """A registration's addresses as text, those that do not decode left out."""
    from rendezvous.addrs import InvalidMultiaddr, multiaddr_to_text

    found = []
    for addr in entry.addrs:
        try:
            found.append(multiaddr_to_text(addr))
        except InvalidMultiaddr:
            continue
    return found
