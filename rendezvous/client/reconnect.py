"""Clients that survive restarts: reconnect, register again, subscribe again.

Live registrations end with their connection, so a client must make a daemon restart
invisible to its application. `ReconnectingClient` holds what the application asked
for (registrations, subscriptions), keeps one session with one of several servers,
and when that session is lost it connects again (the next server in the list, after a
capped, fully jittered exponential backoff), registers everything again, enters
rendezvous again and hands each subscription only the difference between what it
knew and the fresh snapshot.

`Backoff` and `View` are pure; the client itself runs on an injected clock and a
``connect`` function (`rendezvous.client.connect.connector` makes one for server
names as people write them), so tests drive it with a ``Clock`` and fakes.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rendezvous.client.errors import ConnectionClosed, RendezvousError
from rendezvous.client.live import Event, EventHandler, PeerEntry
from rendezvous.model import Status


class Backoff:
    """Capped exponential backoff with full jitter, bounded by the outage.

    The n-th delay in a row (from 0) is uniform in ``[0, min(cap, initial * 2**n)]``:
    a crowd of clients that lost one server spreads its attempts over the window
    instead of arriving together. Given how long the server has been unreachable
    (``outage``), the window is also at most that long (and at least ``initial``):
    the attempts still thin out as the outage goes on, but a client whose early draws
    were short, and so refused more often, does not end up waiting several times the
    outage once the server is back.
    """

    def __init__(
        self,
        initial: float = 0.5,
        cap: float = 30.0,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if initial <= 0 or cap < initial:
            raise ValueError("backoff needs 0 < initial <= cap")
        self.initial = initial
        self.cap = cap
        self._random = random
        self.attempts = 0

    def window(self, outage: float | None = None) -> float:
        """The longest the next delay can be, ``outage`` seconds into an outage."""
        window = min(self.cap, self.initial * 2.0 ** min(self.attempts, 64))
        if outage is not None:
            window = min(window, max(self.initial, outage))
        return window

    def next_delay(self, outage: float | None = None) -> float:
        delay = self._random() * self.window(outage)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0


class View:
    """What a subscriber knows of one namespace: the registrations by peer id."""

    def __init__(self) -> None:
        self.entries: dict[str, PeerEntry] = {}

    def apply(self, event: Event) -> bool:
        """Take in a pushed change; False when it changes nothing (a duplicate)."""
        peer_id = event.entry.peer_id
        if event.kind == "register":
            if self.entries.get(peer_id) == event.entry:
                return False
            self.entries[peer_id] = event.entry
            return True
        return self.entries.pop(peer_id, None) is not None

    def reconcile(self, snapshot: Sequence[PeerEntry]) -> list[Event]:
        """Become ``snapshot``; the changes that turn the old view into it: those that
        left as unregistrations, then the new and the changed as registrations."""
        fresh = {entry.peer_id: entry for entry in snapshot}
        changes = [
            Event("unregister", entry)
            for peer_id, entry in self.entries.items()
            if peer_id not in fresh
        ]
        changes += [
            Event("register", entry)
            for peer_id, entry in fresh.items()
            if self.entries.get(peer_id) != entry
        ]
        self.entries = fresh
        return changes


# -- what the application is told --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    """A session with ``server`` is up and everything held is registered again."""

    server: str


@dataclass(frozen=True, slots=True)
class Lost:
    """The session with ``server`` ended (or could not be made); the next attempt,
    to ``next_server``, starts in ``retry_in`` seconds."""

    server: str
    reason: str
    retry_in: float
    next_server: str
    was_connected: bool


@dataclass(frozen=True, slots=True)
class RegistrationRefused:
    """A server refused a registration the client held. With ``retry_in``, it is
    asked again then (the id may still be held by this client's own session on a
    daemon that is gone, until the fleet notices); without, it is no longer held."""

    namespace: str
    peer_id: str
    error: RendezvousError
    retry_in: float | None = None


@dataclass(frozen=True, slots=True)
class Stopped:
    """`ReconnectingClient.stop` was called: nothing more will happen."""


StateEvent = Connected | Lost | RegistrationRefused | Stopped


def describe_state(event: StateEvent) -> str:
    """One line for people, e.g. ``lost localhost:4001: connection refused; retrying in
    1.6 s``."""
    if isinstance(event, Connected):
        return f"connected to {event.server}"
    if isinstance(event, Lost):
        verb = "lost" if event.was_connected else "cannot reach"
        target = "" if event.next_server == event.server else f" {event.next_server}"
        return f"{verb} {event.server}: {event.reason}; retrying{target} in {event.retry_in:.1f} s"
    if isinstance(event, RegistrationRefused):
        text = f"refused: {event.peer_id} in {event.namespace}: {event.error}"
        if event.retry_in is not None:
            text += f"; asking again in {event.retry_in:.1f} s"
        return text
    return "stopped"


@dataclass(slots=True)
class _Held:
    addrs: tuple[bytes, ...]
    signed_peer_record: bytes | None
    accepted: Deferred[None] | None
    """Fires when a server first accepts it; None afterwards."""
    contested_since: float | None = None
    """When a server first refused it as another session's, since it last held."""
    contests: int = 0
    retry: IDelayedCall | None = None


class _Subscription:
    __slots__ = ("handlers", "ready", "restoring", "view")

    def __init__(self) -> None:
        self.view = View()
        self.handlers: list[EventHandler] = []
        self.ready: list[Deferred[None]] = []
        """Fire once the first snapshot is delivered."""
        self.restoring: dict[str, PeerEntry] | None = None
        """While a fresh snapshot comes in, the registrations it holds so far."""


class ReconnectingClient:
    """One rendezvous session at a time, with any of ``servers``, kept up until `stop`.

    ``connect(server)`` makes a session (a `LiveClient`, or a `StandardClient`, which
    has no subscriptions). ``on_state`` is told of every `StateEvent`.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        servers: Sequence[str],
        connect: Callable[[str], Deferred[Any]],
        *,
        on_state: Callable[[StateEvent], None] | None = None,
        backoff: Backoff | None = None,
        min_uptime: float = 1.0,
        answer_timeout: float = 10.0,
        contest_for: float = 30.0,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if not servers:
            raise ValueError("at least one server is needed")
        self._clock = clock
        self.servers = list(servers)
        self._connect = connect
        self._on_state = on_state or (lambda event: None)
        self.backoff = backoff or Backoff()
        self.min_uptime = min_uptime
        """A session that lasted this long earns an immediate first retry."""
        self.answer_timeout = answer_timeout
        """A session that leaves a REGISTER or RENDEZVOUS unanswered this long is
        closed and made again (a handshake the server dropped under load)."""
        self.contest_for = contest_for
        """How long a registration this client held is asked again after a server
        refuses it as another session's (its own, on a daemon that died, until the
        fleet's lease runs out)."""
        self._awaiting = 0
        self._answer_timer: IDelayedCall | None = None
        self._random = random
        self._index = 0
        self._session: Any = None
        self._session_started = 0.0
        self._outage_since = 0.0
        """When the servers became unreachable (the last loss of a session that
        served, or the start): what bounds the backoff's window."""
        self._attempt: Deferred[Any] | None = None
        self._retry: IDelayedCall | None = None
        self._registrations: dict[tuple[str, str], _Held] = {}
        self._subscriptions: dict[str, _Subscription] = {}
        self.running = False

    # -- the application's side -----------------------------------------------

    @property
    def server(self) -> str | None:
        """The server of the session that is up, if any."""
        return self.servers[self._index] if self._session is not None else None

    def start(self) -> None:
        if not self.running:
            self.running = True
            self._outage_since = self._clock.seconds()
            self._dial()

    def stop(self) -> Deferred[None]:
        """End at once: no retry; the session (and so every live registration) closes.

        Registrations with a TTL (standard dialect) are unregistered first, when a
        session is up; the Deferred fires once that is done."""
        if not self.running:
            return succeed(None)
        self.running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._attempt is not None:
            attempt, self._attempt = self._attempt, None
            attempt.cancel()
        self._cancel_answer_timer()
        for registration in self._registrations.values():
            if registration.retry is not None and registration.retry.active():
                registration.retry.cancel()
        session, self._session = self._session, None
        held = list(self._registrations)
        self._registrations.clear()
        for subscription in self._subscriptions.values():
            for d in subscription.ready:
                d.errback(ConnectionClosed("stopped"))
            subscription.ready.clear()
        done: Deferred[None] = succeed(None)
        if session is not None:
            if not hasattr(session, "rendezvous") and held:
                # TTL registrations outlive the connection: end them explicitly.
                for namespace, peer_id in held:
                    session.unregister(namespace, peer_id).addErrback(lambda _: None)
                done = session.discover(held[-1][0], 1).addBoth(lambda _: None)
            done.addBoth(lambda _: session.disconnect())
        self._on_state(Stopped())
        return done

    def register(
        self,
        namespace: str,
        peer_id: str,
        addrs: Sequence[bytes] = (),
        signed_peer_record: bytes | None = None,
    ) -> Deferred[None]:
        """Hold a registration, in every session from now on until `unregister`.

        Fires when a server has accepted it (now or after a reconnection); fails with
        the `RendezvousError` of a refusal, and the registration is then not held."""
        key = (namespace, peer_id)
        accepted: Deferred[None] = Deferred()
        self._registrations[key] = _Held(tuple(addrs), signed_peer_record, accepted)
        if self._session is not None:
            self._send_register(self._session, key)
        return accepted

    def unregister(self, namespace: str, peer_id: str) -> Deferred[None]:
        """Stop holding a registration and remove it from the server when connected."""
        self._registrations.pop((namespace, peer_id), None)
        if self._session is None:
            return succeed(None)
        done: Deferred[None] = self._session.unregister(namespace, peer_id)
        return done

    def rendezvous(self, namespace: str, handler: EventHandler) -> Deferred[None]:
        """Subscribe ``handler`` to ``namespace``, in every session from now on.

        It gets the current registrations, then every change; after a reconnection,
        only the difference between what it was told and the fresh snapshot. Fires
        once the first snapshot has been handed over."""
        subscription = self._subscriptions.get(namespace)
        fresh = subscription is None
        if subscription is None:
            subscription = self._subscriptions[namespace] = _Subscription()
        subscription.handlers.append(handler)
        if not fresh:
            for entry in subscription.view.entries.values():
                handler(Event("register", entry))
            return succeed(None)
        ready: Deferred[None] = Deferred()
        subscription.ready.append(ready)
        if self._session is not None:
            self._subscribe(self._session, namespace)
        return ready

    def view(self, namespace: str) -> dict[str, PeerEntry]:
        """What the subscription to ``namespace`` knows now, by peer id."""
        subscription = self._subscriptions.get(namespace)
        return dict(subscription.view.entries) if subscription else {}

    def discover(self, namespace: str, limit: int = 0) -> Deferred[list[PeerEntry]]:
        """DISCOVER on the current session; fails with `ConnectionClosed` when none is up."""
        if self._session is None:
            return fail(ConnectionClosed("not connected to any server"))
        found: Deferred[list[PeerEntry]] = self._session.discover(namespace, limit)
        return found

    # -- sessions ---------------------------------------------------------------

    def _dial(self) -> None:
        self._retry = None
        server = self.servers[self._index]
        attempt = self._attempt = self._connect(server)
        attempt.addCallbacks(self._opened, self._failed, errbackArgs=(server,))

    def _opened(self, session: Any) -> None:
        self._attempt = None
        if not self.running:
            session.disconnect()
            return
        self._session = session
        self._session_started = self._clock.seconds()
        session.closed.addCallback(lambda _: self._closed(session))
        for key in list(self._registrations):
            self._send_register(session, key)
        for namespace in list(self._subscriptions):
            self._subscribe(session, namespace)
        self._on_state(Connected(self.servers[self._index]))

    def _failed(self, failure: Failure, server: str) -> None:
        self._attempt = None
        if not self.running:
            return
        delay = self.backoff.next_delay(self._clock.seconds() - self._outage_since)
        self._schedule(server, _reason(failure), delay, was_connected=False)

    def _closed(self, session: Any) -> None:
        if session is not self._session:
            return
        self._session = None
        self._cancel_answer_timer()
        up_for = self._clock.seconds() - self._session_started
        going_away = getattr(session, "going_away", None)
        now = self._clock.seconds()
        if up_for >= self.min_uptime:
            self.backoff.reset()
            self._outage_since = now
        if self.backoff.attempts == 0 and (up_for >= self.min_uptime or going_away):
            # The first retry after a session that served (or a server that said it
            # is leaving) is immediate; one that fails again backs off.
            self.backoff.attempts = 1
            self._outage_since = now
            delay = 0.0
        else:
            delay = self.backoff.next_delay(now - self._outage_since)
        for subscription in self._subscriptions.values():
            subscription.restoring = None
        reason = going_away or getattr(session, "close_reason", None) or "connection closed"
        self._schedule(self.servers[self._index], reason, delay, was_connected=True)

    def _schedule(self, server: str, reason: str, delay: float, *, was_connected: bool) -> None:
        self._index = (self._index + 1) % len(self.servers)
        next_server = self.servers[self._index]
        self._on_state(Lost(server, reason, delay, next_server, was_connected))
        self._retry = self._clock.callLater(delay, self._dial)

    # -- restoring what is held -----------------------------------------------

    def _send_register(self, session: Any, key: tuple[str, str]) -> None:
        held = self._registrations[key]
        namespace, peer_id = key
        if held.retry is not None and held.retry.active():
            held.retry.cancel()
        held.retry = None
        if held.signed_peer_record is not None:
            d = session.register(namespace, peer_id, held.addrs, held.signed_peer_record)
        else:
            d = session.register(namespace, peer_id, held.addrs)
        self._await_answer(session)

        def accepted(_: object) -> None:
            self._answered(session)
            current = self._registrations.get(key)
            if current is held:
                held.contested_since, held.contests = None, 0
                if held.accepted is not None:
                    first, held.accepted = held.accepted, None
                    first.callback(None)

        def refused(failure: Failure) -> None:
            self._answered(session)
            if not failure.check(RendezvousError) or self._registrations.get(key) is not held:
                return  # a lost session is handled by `_closed`
            error = failure.value
            assert isinstance(error, RendezvousError)
            if self._contested(held, error):
                delay = min(2.0, 0.5 * 2.0 ** min(held.contests, 8)) * (0.5 + self._random())
                held.contests += 1
                held.retry = self._clock.callLater(delay, self._register_again, session, key)
                self._on_state(RegistrationRefused(namespace, peer_id, error, delay))
                return
            del self._registrations[key]
            if held.accepted is not None:
                first, held.accepted = held.accepted, None
                first.errback(error)
            self._on_state(RegistrationRefused(namespace, peer_id, error))

        d.addCallbacks(accepted, refused)

    def _contested(self, held: _Held, error: RendezvousError) -> bool:
        """Whether to ask again: a registration this client held before, refused as
        another session's, within `contest_for` of the first such refusal."""
        if held.accepted is not None or error.status != Status.NOT_AUTHORIZED:
            return False
        now = self._clock.seconds()
        if held.contested_since is None:
            held.contested_since = now
        return now - held.contested_since < self.contest_for

    def _register_again(self, session: Any, key: tuple[str, str]) -> None:
        held = self._registrations.get(key)
        if held is not None:
            held.retry = None
            if session is self._session:
                self._send_register(session, key)

    def _await_answer(self, session: Any) -> None:
        self._awaiting += 1
        if self._answer_timer is None:
            self._answer_timer = self._clock.callLater(
                self.answer_timeout, self._unanswered, session
            )

    def _answered(self, session: Any) -> None:
        if session is not self._session:
            return
        self._awaiting = max(0, self._awaiting - 1)
        if not self._awaiting:
            self._cancel_answer_timer()

    def _unanswered(self, session: Any) -> None:
        self._answer_timer = None
        if session is self._session and self._awaiting:
            session.close_reason = f"no answer within {self.answer_timeout:g} s"
            session.disconnect()

    def _cancel_answer_timer(self) -> None:
        self._awaiting = 0
        if self._answer_timer is not None and self._answer_timer.active():
            self._answer_timer.cancel()
        self._answer_timer = None

    def _subscribe(self, session: Any, namespace: str) -> None:
        subscription = self._subscriptions[namespace]
        subscription.restoring = {}

        def pushed(event: Event) -> None:
            if session is not self._session:
                return
            restoring = subscription.restoring
            if restoring is None:
                if subscription.view.apply(event):
                    for handler in list(subscription.handlers):
                        handler(event)
            elif event.kind == "register":
                restoring[event.entry.peer_id] = event.entry
            else:
                restoring.pop(event.entry.peer_id, None)

        def delivered(_: object) -> None:
            restoring, subscription.restoring = subscription.restoring, None
            if session is not self._session or restoring is None:
                return
            for event in subscription.view.reconcile(list(restoring.values())):
                for handler in list(subscription.handlers):
                    handler(event)
            ready, subscription.ready = subscription.ready, []
            for d in ready:
                d.callback(None)

        def refused(failure: Failure) -> None:
            if failure.check(RendezvousError) and session is self._session:
                self.log.warn(
                    "rendezvous in {namespace} refused: {error}",
                    namespace=namespace,
                    error=failure.value,
                )
                ready, subscription.ready = subscription.ready, []
                for d in ready:
                    d.errback(failure)

        self._await_answer(session)

        def answered(result: object) -> object:
            self._answered(session)
            return result

        session.rendezvous(namespace, pushed).addBoth(answered).addCallbacks(delivered, refused)


def _reason(failure: Failure) -> str:
    """Why a connection attempt failed, in a few words."""
    error = failure.value
    text = failure.getErrorMessage()
    name = type(error).__name__
    if "Refused" in name:
        return "connection refused"
    if "DNS" in name or "lookup" in text.lower():
        return f"name does not resolve ({text})"
    if "Timeout" in name:
        return "timed out"
    return text or name


__all__ = [
    "Backoff",
    "Connected",
    "Lost",
    "ReconnectingClient",
    "RegistrationRefused",
    "StateEvent",
    "Stopped",
    "View",
    "describe_state",
]
