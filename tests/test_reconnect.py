"""`rendezvous.client.reconnect`: backoff, the view difference, and the reconnecting
client driven by a `Clock` and fake sessions."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rendezvous.client.errors import ConnectionClosed, InvalidNamespace, NotAuthorized
from rendezvous.client.live import Event, PeerEntry
from rendezvous.client.reconnect import (
    Backoff,
    Connected,
    Lost,
    ReconnectingClient,
    RegistrationRefused,
    StateEvent,
    Stopped,
    View,
    describe_state,
)


def entry(peer_id: str, *addrs: bytes, namespace: str = "app") -> PeerEntry:
    return PeerEntry(namespace, peer_id, addrs)


class BackoffTests(SynchronousTestCase):
    def test_window_doubles_up_to_the_cap(self) -> None:
        backoff = Backoff(initial=0.5, cap=4.0, random=lambda: 1.0)
        self.assertEqual([backoff.next_delay() for _ in range(6)], [0.5, 1, 2, 4, 4, 4])

    def test_full_jitter_spans_zero_to_the_window(self) -> None:
        draws = iter([0.0, 0.25, 0.5])
        backoff = Backoff(initial=1.0, cap=30.0, random=lambda: next(draws))
        self.assertEqual([backoff.next_delay() for _ in range(3)], [0.0, 0.5, 2.0])

    def test_reset_starts_over(self) -> None:
        backoff = Backoff(initial=1.0, cap=30.0, random=lambda: 1.0)
        backoff.next_delay()
        backoff.next_delay()
        backoff.reset()
        self.assertEqual(backoff.next_delay(), 1.0)

    def test_window_never_longer_than_the_outage(self) -> None:
        backoff = Backoff(initial=0.5, cap=30.0, random=lambda: 1.0)
        backoff.attempts = 6  # a window of 30 s, drawn short six times in a row
        self.assertEqual(backoff.window(), 30.0)
        self.assertEqual(backoff.next_delay(outage=1.2), 1.2)
        self.assertEqual(backoff.next_delay(outage=0.1), 0.5)  # never below the first
        self.assertEqual(backoff.next_delay(outage=600), 30.0)

    @given(st.lists(st.floats(min_value=0.01, max_value=1), min_size=1, max_size=40))
    def test_back_within_the_outage(self, draws: list[float]) -> None:
        """However the draws fall, a client that keeps retrying through an outage of
        D seconds tries again at most max(D, initial) after the server is back."""
        down = 7.0
        feed = itertools.cycle(draws)
        backoff = Backoff(initial=0.5, cap=30.0, random=lambda: next(feed))
        t = 0.0
        while t < down:
            t += backoff.next_delay(outage=t)
        self.assertLessEqual(t - down, down)

    def test_bad_bounds_refused(self) -> None:
        self.assertRaises(ValueError, Backoff, initial=0)
        self.assertRaises(ValueError, Backoff, initial=5, cap=1)

    @given(st.integers(min_value=0, max_value=10_000), st.floats(min_value=0, max_value=1))
    def test_never_beyond_the_cap(self, attempts: int, draw: float) -> None:
        backoff = Backoff(initial=0.5, cap=30.0, random=lambda: draw)
        backoff.attempts = attempts
        self.assertLessEqual(backoff.next_delay(), 30.0)


class ViewTests(SynchronousTestCase):
    def test_reconcile_gives_only_the_difference(self) -> None:
        view = View()
        view.reconcile([entry("a", b"1"), entry("b", b"2"), entry("c", b"3")])
        changes = view.reconcile([entry("a", b"1"), entry("c", b"9"), entry("d", b"4")])
        self.assertEqual(
            changes,
            [
                Event("unregister", entry("b", b"2")),
                Event("register", entry("c", b"9")),
                Event("register", entry("d", b"4")),
            ],
        )
        self.assertEqual(set(view.entries), {"a", "c", "d"})

    def test_apply_drops_duplicates(self) -> None:
        view = View()
        self.assertTrue(view.apply(Event("register", entry("a"))))
        self.assertFalse(view.apply(Event("register", entry("a"))))
        self.assertTrue(view.apply(Event("unregister", entry("a"))))
        self.assertFalse(view.apply(Event("unregister", entry("a"))))

    @given(
        st.dictionaries(st.sampled_from("abcdef"), st.binary(max_size=2)),
        st.dictionaries(st.sampled_from("abcdef"), st.binary(max_size=2)),
    )
    def test_old_view_plus_changes_is_the_snapshot(
        self, before: dict[str, bytes], after: dict[str, bytes]
    ) -> None:
        view = View()
        view.reconcile([entry(k, v) for k, v in before.items()])
        replay = View()
        replay.entries = dict(view.entries)
        for change in view.reconcile([entry(k, v) for k, v in after.items()]):
            self.assertTrue(replay.apply(change))
        self.assertEqual(replay.entries, view.entries)
        self.assertEqual(
            {k: e.addrs for k, e in view.entries.items()}, {k: (v,) for k, v in after.items()}
        )


class StandardSession:
    """A session whose answers the test gives; standard dialect: no push."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.closed: Deferred[None] = Deferred()
        self.registered: list[tuple[str, str, tuple[bytes, ...]]] = []
        self.register_answers: list[Deferred[None]] = []
        self.handlers: dict[str, Any] = {}
        self.subscribed: dict[str, Deferred[None]] = {}
        self.unregistered: list[tuple[str, str]] = []
        self.going_away: str | None = None
        self.close_reason: str | None = None
        self.disconnected = False

    def register(self, namespace: str, peer_id: str, addrs: Any = ()) -> Deferred[None]:
        self.registered.append((namespace, peer_id, tuple(addrs)))
        d: Deferred[None] = Deferred()
        self.register_answers.append(d)
        return d

    def unregister(self, namespace: str, peer_id: str) -> Deferred[None]:
        self.unregistered.append((namespace, peer_id))
        return succeed(None)

    def discover(self, namespace: str, limit: int = 0) -> Deferred[list[PeerEntry]]:
        return succeed([])

    def disconnect(self) -> None:
        self.disconnected = True
        self.lose("closed by us")

    def lose(self, reason: str = "connection lost") -> None:
        if not self.closed.called:
            self.close_reason = self.close_reason or reason  # as LiveClient keeps the first
            self.closed.callback(None)


class LiveSession(StandardSession):
    """A live-dialect session: subscriptions and pushes."""

    def rendezvous(self, namespace: str, handler: Any) -> Deferred[None]:
        self.handlers[namespace] = handler
        d: Deferred[None] = Deferred()
        self.subscribed[namespace] = d
        return d

    def push(self, namespace: str, kind: str, item: PeerEntry) -> None:
        self.handlers[namespace](Event(kind, item))


class Dialer:
    """``connect`` for the client: each attempt waits for the test to answer it."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, Deferred[LiveSession]]] = []
        self.cancelled: list[str] = []

    def __call__(self, server: str) -> Deferred[LiveSession]:
        d: Deferred[LiveSession] = Deferred(lambda _: self.cancelled.append(server))
        self.attempts.append((server, d))
        return d

    def accept(self) -> LiveSession:
        server, d = self.attempts[-1]
        session = LiveSession(server)
        d.callback(session)
        return session

    def refuse(self) -> None:
        self.attempts[-1][1].errback(ConnectionRefusedError())


class ReconnectingClientTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.dialer = Dialer()
        self.states: list[StateEvent] = []
        self.events: list[Event] = []
        self.client = ReconnectingClient(
            self.clock,
            ["a:1", "b:2"],
            self.dialer,
            on_state=self.states.append,
            backoff=Backoff(initial=0.5, cap=4.0, random=lambda: 1.0),
            random=lambda: 1.0,
        )

    def connect_and_subscribe(self) -> LiveSession:
        self.client.start()
        session = self.dialer.accept()
        self.ready = self.client.rendezvous("app", self.events.append)
        session.push("app", "register", entry("a", b"1"))
        session.push("app", "register", entry("b", b"2"))
        session.subscribed["app"].callback(None)
        return session

    def test_first_snapshot_then_pushes(self) -> None:
        session = self.connect_and_subscribe()
        self.assertIsNone(self.successResultOf(self.ready))
        session.push("app", "unregister", entry("a", b"1"))
        self.assertEqual(
            self.events,
            [
                Event("register", entry("a", b"1")),
                Event("register", entry("b", b"2")),
                Event("unregister", entry("a", b"1")),
            ],
        )
        self.assertEqual(self.states, [Connected("a:1")])

    def test_reconnects_to_the_next_server_and_hands_over_the_difference(self) -> None:
        session = self.connect_and_subscribe()
        self.clock.advance(5)  # a session that served: the first retry is immediate
        session.lose("connection reset")
        self.assertEqual(self.states[-1], Lost("a:1", "connection reset", 0.0, "b:2", True))
        self.assertEqual(self.dialer.attempts[-1][0], "a:1")
        self.clock.advance(0)
        self.assertEqual(self.dialer.attempts[-1][0], "b:2")
        again = self.dialer.accept()
        self.assertEqual(list(again.subscribed), ["app"])
        del self.events[:]
        again.push("app", "register", entry("b", b"2"))
        again.push("app", "register", entry("c", b"3"))
        self.assertEqual(self.events, [])  # nothing until the snapshot is whole
        again.subscribed["app"].callback(None)
        self.assertEqual(
            self.events,
            [Event("unregister", entry("a", b"1")), Event("register", entry("c", b"3"))],
        )
        self.assertEqual(set(self.client.view("app")), {"b", "c"})
        self.assertEqual(self.states[-1], Connected("b:2"))

    def test_registrations_are_made_again(self) -> None:
        self.client.start()
        session = self.dialer.accept()
        accepted = self.client.register("app", "me", [b"addr"])
        session.register_answers[0].callback(None)
        self.successResultOf(accepted)
        self.clock.advance(5)
        session.lose()
        self.clock.advance(0)
        again = self.dialer.accept()
        self.assertEqual(again.registered, [("app", "me", (b"addr",))])
        self.client.unregister("app", "me")
        self.assertEqual(again.unregistered, [("app", "me")])
        self.clock.advance(5)
        again.lose()
        self.clock.advance(0)
        third = self.dialer.accept()
        self.assertEqual(third.registered, [])

    def test_a_registration_made_while_away_is_sent_on_connection(self) -> None:
        self.client.start()
        accepted = self.client.register("app", "me")
        self.assertNoResult(accepted)
        session = self.dialer.accept()
        session.register_answers[0].callback(None)
        self.successResultOf(accepted)

    def reconnected_with(self, refusal: Exception) -> LiveSession:
        """A registration accepted, the session lost, and the next one refusing it."""
        self.client.start()
        session = self.dialer.accept()
        self.accepted = self.client.register("app", "me")
        session.register_answers[0].callback(None)
        self.clock.advance(5)
        session.lose()
        self.clock.advance(0)
        again = self.dialer.accept()
        again.register_answers[0].errback(refusal)
        return again

    def test_a_refusal_other_than_ownership_is_reported_and_not_retried(self) -> None:
        refusal = InvalidNamespace(100, "no such namespace any more")
        again = self.reconnected_with(refusal)
        self.successResultOf(self.accepted)
        self.assertEqual(self.states[-1], RegistrationRefused("app", "me", refusal))
        self.assertIn("refused: me in app", describe_state(self.states[-1]))
        self.clock.advance(60)
        self.assertEqual(len(again.registered), 1)
        self.clock.advance(5)
        again.lose()
        self.clock.advance(0)
        self.assertEqual(self.dialer.accept().registered, [])

    def test_held_by_another_session_is_asked_again_for_a_while(self) -> None:
        """Its own session on a daemon that died may hold the id until the fleet's
        lease runs out: asked again with a growing pause, then given up."""
        refusal = NotAuthorized(200, "peer id is registered by another session")
        again = self.reconnected_with(refusal)
        retrying = self.states[-1]
        assert isinstance(retrying, RegistrationRefused)
        self.assertEqual(retrying.retry_in, 0.75)
        self.assertIn("asking again in 0.8 s", describe_state(retrying))
        self.clock.advance(0.75)
        self.assertEqual(len(again.registered), 2)
        again.register_answers[1].callback(None)  # the lease ran out: ours again
        self.assertEqual(self.client._registrations[("app", "me")].contests, 0)
        # refused for longer than contest_for: given up
        self.clock.advance(5)
        again.lose()
        self.clock.advance(0)
        third = self.dialer.accept()
        third.register_answers[0].errback(refusal)
        for n in range(1, 100):
            delay = self.states[-1].retry_in  # type: ignore[union-attr]
            if delay is None:
                break
            self.clock.advance(delay)
            third.register_answers[n].errback(refusal)
        self.assertEqual(self.states[-1], RegistrationRefused("app", "me", refusal))
        self.assertLess(len(third.registered), 20)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_session_that_does_not_answer_is_made_again(self) -> None:
        self.client.start()
        session = self.dialer.accept()
        self.client.register("app", "me")
        self.clock.advance(9.9)
        self.assertFalse(session.disconnected)
        self.clock.advance(0.1)
        self.assertTrue(session.disconnected)
        lost = self.states[-1]
        assert isinstance(lost, Lost)
        self.assertEqual(lost.reason, "no answer within 10 s")

    def test_an_answered_session_is_left_alone(self) -> None:
        self.client.start()
        session = self.dialer.accept()
        self.client.register("app", "me")
        session.register_answers[0].callback(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_first_refusal_fails_the_registration(self) -> None:
        self.client.start()
        session = self.dialer.accept()
        accepted = self.client.register("app", "me")
        session.register_answers[0].errback(NotAuthorized(200, "no"))
        self.failureResultOf(accepted, NotAuthorized)

    def test_unreachable_servers_back_off_in_turn(self) -> None:
        self.client.start()
        delays = []
        for _ in range(5):
            self.dialer.refuse()
            lost = self.states[-1]
            assert isinstance(lost, Lost)
            self.assertFalse(lost.was_connected)
            self.assertEqual(lost.reason, "connection refused")
            delays.append(lost.retry_in)
            attempts = len(self.dialer.attempts)
            self.clock.advance(lost.retry_in - 0.01)
            self.assertEqual(len(self.dialer.attempts), attempts)  # no busy loop
            self.clock.advance(0.01)
        # The window doubles, and is never longer than the outage so far (0.5 s at 0.5 s).
        self.assertEqual(delays, [0.5, 0.5, 1.0, 2.0, 4.0])
        self.assertEqual([s for s, _ in self.dialer.attempts], ["a:1", "b:2"] * 3)
        self.assertEqual(
            describe_state(self.states[0]),
            "cannot reach a:1: connection refused; retrying b:2 in 0.5 s",
        )

    def test_a_session_lost_at_once_backs_off(self) -> None:
        self.client.start()
        delays = []
        for _ in range(3):
            self.dialer.accept().lose()
            lost = self.states[-1]
            assert isinstance(lost, Lost)
            delays.append(lost.retry_in)
            self.clock.advance(lost.retry_in)
        self.assertEqual(delays, [0.5, 0.5, 1.0])

    def test_server_going_away_means_retry_elsewhere_at_once_but_only_once(self) -> None:
        self.client.start()
        session = self.dialer.accept()
        session.going_away = "shutting down"
        session.lose()
        lost = self.states[-1]
        self.assertEqual(lost, Lost("a:1", "shutting down", 0.0, "b:2", True))
        self.clock.advance(0)
        again = self.dialer.accept()
        again.going_away = "shutting down"
        again.lose()
        lost = self.states[-1]
        assert isinstance(lost, Lost)
        self.assertGreater(lost.retry_in, 0)

    def test_backoff_resets_after_a_session_that_served(self) -> None:
        self.client.start()
        for _ in range(3):
            self.dialer.refuse()
            self.clock.advance(self.states[-1].retry_in)  # type: ignore[union-attr]
        session = self.dialer.accept()
        self.clock.advance(2)
        session.lose()
        self.assertEqual(self.states[-1].retry_in, 0.0)  # type: ignore[union-attr]
        self.clock.advance(0)
        self.dialer.refuse()  # the second attempt's window: 1 s, but the outage is new
        self.assertEqual(self.states[-1].retry_in, 0.5)  # type: ignore[union-attr]

    def test_stop_during_a_backoff_wait_ends_at_once(self) -> None:
        self.client.start()
        self.client.register("app", "me")
        self.dialer.refuse()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.successResultOf(self.client.stop())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.states[-1], Stopped())
        self.assertEqual(len(self.dialer.attempts), 1)

    def test_stop_while_connecting_cancels_the_attempt(self) -> None:
        self.client.start()
        self.client.stop()
        self.assertEqual(self.dialer.cancelled, ["a:1"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_closes_the_session(self) -> None:
        session = self.connect_and_subscribe()
        self.client.stop()
        self.assertTrue(session.disconnected)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.states[-1], Stopped())

    def test_stop_unregisters_ttl_registrations(self) -> None:
        self.client.start()
        server, attempt = self.dialer.attempts[-1]
        session = StandardSession(server)
        attempt.callback(session)
        self.client.register("app", "me")
        self.client.stop()
        self.assertEqual(session.unregistered, [("app", "me")])
        self.assertTrue(session.disconnected)

    def test_pushes_from_a_lost_session_are_ignored(self) -> None:
        session = self.connect_and_subscribe()
        handler = session.handlers["app"]
        session.lose()
        handler(Event("register", entry("z")))
        self.assertNotIn("z", self.client.view("app"))

    def test_discover_without_a_session_fails(self) -> None:
        self.failureResultOf(self.client.discover("app"), ConnectionClosed)

    def test_no_servers_refused(self) -> None:
        self.assertRaises(ValueError, ReconnectingClient, self.clock, [], self.dialer)

    def test_a_second_handler_gets_the_current_view(self) -> None:
        self.connect_and_subscribe()
        seen: list[Event] = []
        self.successResultOf(self.client.rendezvous("app", seen.append))
        self.assertEqual([e.entry.peer_id for e in seen], ["a", "b"])

    def test_a_session_that_arrives_after_stop_is_closed(self) -> None:
        self.client.start()
        self.client.stop()
        late = LiveSession("a:1")
        self.client._opened(late)
        self.assertTrue(late.disconnected)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_describe_lost(self) -> None:
        lost = Lost("localhost:4001", "connection refused", 1.6, "localhost:4001", True)
        self.assertEqual(
            describe_state(lost), "lost localhost:4001: connection refused; retrying in 1.6 s"
        )
        self.assertEqual(describe_state(Connected("x")), "connected to x")
